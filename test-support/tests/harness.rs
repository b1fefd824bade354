//! The harness itself: processes start, answer, fail on demand and always die with their handle.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use resp_codec::Value;
use test_support::{Cluster, Fault, FaultProxy, RedisServer, SentinelSet, ServerTls, TestCerts};

fn pid_alive(pid: u32) -> bool {
    // A killed child is reaped by `kill9`, so its /proc entry disappears.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_server_answers_and_dies_with_its_handle() {
    let server = RedisServer::start().unwrap();
    let pid = server.pid().unwrap();
    let mut admin = server.admin().unwrap();
    assert_eq!(
        admin.cmd(&["PING"]).unwrap(),
        Value::SimpleString("PONG".into())
    );
    admin.cmd(&["SET", "k", "v"]).unwrap();
    assert_eq!(
        admin.cmd(&["GET", "k"]).unwrap(),
        Value::BulkString("v".into())
    );
    let dir = server.dir().to_path_buf();
    assert!(dir.exists());
    drop(server);
    assert!(!pid_alive(pid), "redis-server {pid} survived its handle");
    assert!(!dir.exists(), "temporary directory left behind");
}

#[test]
fn a_server_dies_even_when_the_test_panics() {
    let pid = std::sync::Arc::new(std::sync::Mutex::new(0));
    let inner = std::sync::Arc::clone(&pid);
    let result = std::thread::spawn(move || {
        let server = RedisServer::start().unwrap();
        *inner.lock().unwrap() = server.pid().unwrap();
        panic!("test failure while a server runs");
    })
    .join();
    assert!(result.is_err());
    let pid = *pid.lock().unwrap();
    assert!(pid != 0 && !pid_alive(pid));
}

#[test]
fn kill9_and_restart_keep_aof_data_and_the_port() {
    let mut server = RedisServer::builder().aof().start().unwrap();
    let port = server.port();
    server.cmd(&["SET", "durable", "yes"]).unwrap();
    server.kill9();
    assert!(!server.is_running());
    assert!(server.admin().is_err(), "a killed server still answers");
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    assert_eq!(
        server.cmd(&["GET", "durable"]).unwrap(),
        Value::BulkString("yes".into())
    );
}

#[test]
fn a_paused_server_keeps_connections_open_but_answers_nothing() {
    let server = RedisServer::start().unwrap();
    let mut admin = server.admin().unwrap();
    admin.set_read_timeout(Duration::from_millis(300)).unwrap();
    server.pause().unwrap();
    let started = Instant::now();
    assert!(admin.cmd(&["PING"]).is_err());
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.resume().unwrap();
    // The PING sent while paused is answered first; then the stream is in step again.
    admin.set_read_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        admin.read_value().unwrap(),
        Value::SimpleString("PONG".into())
    );
    assert_eq!(admin.cmd_int(&["DBSIZE"]).unwrap(), 0);
}

#[test]
fn password_and_acl_users_are_enforced() {
    let server = RedisServer::builder()
        .password("S3cr3t-harness")
        .acl_user("app", "app-pass")
        .start()
        .unwrap();
    let mut anonymous = test_support::AdminConn::connect(server.addr()).unwrap();
    let err = anonymous.cmd(&["GET", "k"]).unwrap_err().to_string();
    assert!(err.contains("NOAUTH"), "{err}");
    assert!(!err.contains("S3cr3t"), "error message leaks the password");
    server.cmd(&["SET", "k", "v"]).unwrap();
    let mut app =
        test_support::AdminConn::connect_auth(server.addr(), Some(("app", "app-pass"))).unwrap();
    assert_eq!(
        app.cmd(&["GET", "k"]).unwrap(),
        Value::BulkString("v".into())
    );
    let wrong = test_support::AdminConn::connect_auth(server.addr(), Some(("app", "nope")));
    let msg = wrong.unwrap_err().to_string();
    assert!(msg.contains("WRONGPASS") && !msg.contains("nope"), "{msg}");
}

/// `redis-cli` (from redis-tools) as an independent TLS client, to prove the certificates are what
/// they claim to be.
fn redis_cli_tls(port: u16, ca: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .arg("PING")
        .output()
        .expect("redis-cli is installed with redis-tools");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("PONG"), text)
}

#[test]
fn tls_servers_present_the_certificates_they_are_given() {
    let certs = TestCerts::generate().unwrap();
    let tls = |cert: &test_support::CertFiles, mtls: bool| ServerTls {
        cert: cert.clone(),
        ca: certs.ca.clone(),
        require_client_cert: mtls,
    };
    let good = RedisServer::builder()
        .tls(tls(&certs.server, false))
        .start()
        .unwrap();
    let port = good.tls_addr().unwrap().port();
    let (ok, out) = redis_cli_tls(port, &certs.ca, &[]);
    assert!(ok, "valid certificate rejected: {out}");

    let self_signed = RedisServer::builder()
        .tls(tls(&certs.self_signed, false))
        .start()
        .unwrap();
    let (ok, out) = redis_cli_tls(self_signed.tls_addr().unwrap().port(), &certs.ca, &[]);
    assert!(!ok, "self-signed certificate accepted: {out}");

    let expired = RedisServer::builder()
        .tls(tls(&certs.expired, false))
        .start()
        .unwrap();
    let (ok, out) = redis_cli_tls(expired.tls_addr().unwrap().port(), &certs.ca, &[]);
    assert!(!ok, "expired certificate accepted: {out}");

    let mtls = RedisServer::builder()
        .tls(tls(&certs.server, true))
        .start()
        .unwrap();
    let port = mtls.tls_addr().unwrap().port();
    let (ok, _) = redis_cli_tls(port, &certs.ca, &[]);
    assert!(!ok, "mTLS server accepted a client without a certificate");
    let cert = certs.client.cert.to_str().unwrap();
    let key = certs.client.key.to_str().unwrap();
    let (ok, out) = redis_cli_tls(port, &certs.ca, &["--cert", cert, "--key", key]);
    assert!(ok, "mTLS server rejected the client certificate: {out}");

    // The wrong-host certificate is CA-signed and only fails a hostname check; redis-cli does not
    // check hostnames, so here it only has to be loadable. The client's own tests check the name.
    let wrong = RedisServer::builder()
        .tls(tls(&certs.wrong_host, false))
        .start()
        .unwrap();
    assert!(wrong.tls_addr().is_some());
}

#[test]
fn a_cluster_forms_with_replicas_and_routes_by_slot() {
    let started = Instant::now();
    let cluster = Cluster::start().unwrap();
    eprintln!("cluster of 6 formed in {:?}", started.elapsed());
    assert_eq!(cluster.nodes().len(), 6);
    let mut masters = std::collections::HashSet::new();
    for slot in [0u16, 5000, 5461, 10922, 10923, 16383] {
        let m = cluster.master_of_slot(slot).unwrap();
        assert!(m < 3, "slot {slot} served by node {m}, not a master");
        masters.insert(m);
    }
    assert_eq!(masters.len(), 3);
    // A key sent to the wrong node is redirected.
    let slot_of_foo = 12182; // CLUSTER KEYSLOT foo
    assert_eq!(
        cluster.nodes()[0].cmd_int_helper(&["CLUSTER", "KEYSLOT", "foo"]),
        slot_of_foo
    );
    let owner = cluster.master_of_slot(slot_of_foo as u16).unwrap();
    let other = (owner + 1) % 3;
    let err = cluster.nodes()[other]
        .cmd(&["SET", "foo", "1"])
        .unwrap_err();
    assert!(err.to_string().contains("MOVED 12182"), "{err}");
    cluster.nodes()[owner].cmd(&["SET", "foo", "1"]).unwrap();
    cluster.flushall().unwrap();
    assert_eq!(
        cluster.nodes()[owner].cmd(&["GET", "foo"]).unwrap(),
        Value::Null
    );
}

trait IntHelper {
    fn cmd_int_helper(&self, args: &[&str]) -> i64;
}

impl IntHelper for RedisServer {
    fn cmd_int_helper(&self, args: &[&str]) -> i64 {
        self.admin().unwrap().cmd_int(args).unwrap()
    }
}

#[test]
fn sentinels_watch_the_master_and_fail_over() {
    let started = Instant::now();
    let set = SentinelSet::start().unwrap();
    eprintln!("sentinel set formed in {:?}", started.elapsed());
    let old = set.master_addr().unwrap();
    assert_eq!(old, set.servers()[0].addr());
    set.sentinels()[0]
        .cmd(&["SENTINEL", "FAILOVER", test_support::MASTER_NAME])
        .unwrap();
    let new = set
        .wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    assert_ne!(new, old);
    let idx = set.master_index().unwrap();
    assert!(idx == 1 || idx == 2);
}

fn roundtrip(stream: &mut TcpStream, cmd: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(cmd)?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf)?;
    Ok(buf[..n].to_vec())
}

#[test]
fn the_proxy_forwards_delays_blackholes_and_cuts() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(roundtrip(&mut c, b"PING\r\n").unwrap(), b"+PONG\r\n");
    assert_eq!(proxy.open_connections(), 1);

    proxy.set(Fault::Delay(Duration::from_millis(100)));
    let t = Instant::now();
    assert_eq!(roundtrip(&mut c, b"PING\r\n").unwrap(), b"+PONG\r\n");
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );

    proxy.set(Fault::Slice(1));
    let writes_before = proxy.writes();
    c.write_all(b"PING\r\n").unwrap();
    let mut got = Vec::new();
    while got.len() < 7 {
        let mut b = [0u8; 64];
        let n = c.read(&mut b).unwrap();
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(got, b"+PONG\r\n");
    // 6 request bytes and 7 reply bytes, one write each.
    assert_eq!(proxy.writes() - writes_before, 13);

    proxy.set(Fault::Blackhole);
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        roundtrip(&mut c, b"PING\r\n").is_err(),
        "blackhole answered"
    );
    assert!(proxy.dropped() >= 1, "the blackhole dropped nothing");
    assert_eq!(proxy.resets_applied(), 0);

    proxy.set(Fault::Pass);
    proxy.reset_all();
    let mut b = [0u8; 8];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = c.read(&mut b);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "expected a reset, got {r:?}"
    );
    assert_eq!(proxy.resets_applied(), 1);

    let mut c2 = TcpStream::connect(proxy.addr()).unwrap();
    c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    proxy.set(Fault::CloseAfter(10));
    c2.write_all(b"PING\r\nPING\r\n").unwrap();
    let mut all = Vec::new();
    let _ = c2.read_to_end(&mut all);
    assert!(all.len() <= 10, "forwarded past the budget: {all:?}");

    proxy.set(Fault::RefuseNew);
    let mut c3 = TcpStream::connect(proxy.addr()).unwrap();
    c3.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = roundtrip(&mut c3, b"PING\r\n");
    assert!(
        r.is_err() || r.as_ref().is_ok_and(|v| v.is_empty()),
        "a refused connection answered: {r:?}"
    );
    assert!(proxy.accepted() >= 3);
}

#[test]
fn a_tls_only_cluster_forms_and_announces_only_tls_ports() {
    let certs = TestCerts::generate().unwrap();
    let cluster = Cluster::builder()
        .tls(ServerTls {
            cert: certs.server.clone(),
            ca: certs.ca.clone(),
            require_client_cert: false,
        })
        .start()
        .unwrap();
    for node in cluster.nodes() {
        assert!(node.is_tls_only());
        assert_eq!(node.tls_addr(), Some(node.addr()));
        assert!(node.url().starts_with("rediss://"), "{}", node.url());
        // Plain RESP on the only port meets a TLS listener: no PONG comes back.
        let mut plain = TcpStream::connect(node.addr()).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let reply = roundtrip(&mut plain, b"PING\r\n").unwrap_or_default();
        assert!(!reply.starts_with(b"+PONG"), "plain TCP answered");
        // An independent TLS client trusting the CA gets in.
        let (ok, out) = redis_cli_tls(node.port(), &certs.ca, &[]);
        assert!(ok, "{out}");
        let port_fields = node.admin().unwrap().cmd(&["CLUSTER", "SHARDS"]).unwrap();
        let text = format!("{port_fields:?}");
        assert!(text.contains("tls-port"), "{text}");
        assert!(
            !text.contains("\"port\""),
            "a plain port is announced: {text}"
        );
    }
    // The slot owner is found by the TLS port CLUSTER SLOTS announces.
    assert!(cluster.master_of_slot(0).unwrap() < 3);
}
