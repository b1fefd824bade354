//! The sentinel client against a fake sentinel (a few lines of tokio) that lists hundreds of
//! replicas that never answer and hundreds of sentinels that are dead: the lists are capped, the
//! replicas are dialled at once, and following a failover does not wait for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_conn::{ConnectionConfig, Sent, ServerAddr};
use redis_sentinel::{SentinelClient, SentinelConfig, SentinelError, MAX_REPLICAS, MAX_SENTINELS};
use test_support::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// A `SENTINEL REPLICAS` / `SENTINEL SENTINELS` reply: one entry per port, on 127.0.0.1.
fn entries(ports: &[u16], flags: &str) -> String {
    let mut out = format!("*{}\r\n", ports.len());
    for port in ports {
        out.push_str("*6\r\n");
        for part in ["ip", "127.0.0.1", "port", &port.to_string(), "flags", flags] {
            out.push_str(&bulk(part));
        }
    }
    out
}

/// A fake sentinel: names `master` (which the test may change), lists `replicas` and `sentinels`,
/// and confirms subscriptions.
async fn fake_sentinel(
    master: Arc<Mutex<u16>>,
    replicas: Vec<u16>,
    sentinels: Vec<u16>,
) -> ServerAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = listener.local_addr().unwrap();
    let (replicas, sentinels) = (
        Arc::new(entries(&replicas, "slave")),
        Arc::new(entries(&sentinels, "sentinel")),
    );
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (master, replicas, sentinels) = (
                Arc::clone(&master),
                Arc::clone(&replicas),
                Arc::clone(&sentinels),
            );
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some((args, used)) = test_support::parse_command(&buf) {
                        buf.drain(..used);
                        let words: Vec<&str> = args.iter().map(String::as_str).collect();
                        let reply = match words.as_slice() {
                            ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", _] => {
                                let port = *master.lock().unwrap();
                                format!("*2\r\n{}{}", bulk("127.0.0.1"), bulk(&port.to_string()))
                            }
                            ["SENTINEL", "REPLICAS", _] => replicas.to_string(),
                            ["SENTINEL", "SENTINELS", _] => sentinels.to_string(),
                            [kind @ ("SUBSCRIBE" | "PSUBSCRIBE"), ..] => args[1..]
                                .iter()
                                .enumerate()
                                .map(|(i, channel)| {
                                    format!(
                                        "*3\r\n{}{}:{}\r\n",
                                        bulk(&kind.to_lowercase()),
                                        bulk(channel),
                                        i + 1
                                    )
                                })
                                .collect(),
                            _ => "-ERR unknown command\r\n".to_string(),
                        };
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    ServerAddr::from(me)
}

/// `n` listeners that accept connections and never answer; the total of accepts.
async fn silent_listeners(n: usize) -> (Vec<u16>, Arc<AtomicU64>) {
    let accepted = Arc::new(AtomicU64::new(0));
    let mut ports = Vec::new();
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(sock);
            }
        });
    }
    (ports, accepted)
}

/// Ports where nothing listens (free a moment ago).
fn dead_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_replicas_are_capped_dialled_at_once_and_never_delay_following_a_failover() {
    let first = RedisServer::start().unwrap();
    let second = RedisServer::start().unwrap();
    let (silent, accepted) = silent_listeners(200).await;
    let master = Arc::new(Mutex::new(first.port()));
    let sentinel = fake_sentinel(Arc::clone(&master), silent, dead_ports(200)).await;
    // A dial to a silent replica lasts this long: longer than following a failover may take.
    let connect_timeout = Duration::from_secs(2);
    let template =
        ConnectionConfig::new(ServerAddr::from(first.addr())).connect_timeout(connect_timeout);
    let sentinel_template =
        ConnectionConfig::new(sentinel.clone()).connect_timeout(Duration::from_millis(500));
    let config = SentinelConfig::new(vec![sentinel], "mymaster", template)
        .sentinel_connection(sentinel_template)
        .poll_interval(Duration::from_millis(200))
        .read_from_replicas(true);
    let started = Instant::now();
    let client = SentinelClient::connect(config).await.unwrap();
    let connected_in = started.elapsed();
    // 200 silent replicas, one by one, would take 400 s; at once, capped, one connect timeout.
    assert!(
        connected_in < connect_timeout + Duration::from_secs(2),
        "connecting took {connected_in:?}"
    );
    let dials = accepted.load(Ordering::SeqCst);
    assert!(
        dials as usize <= MAX_REPLICAS,
        "{dials} replica dials, more than the cap"
    );

    // A failover, while every poll redials the silent replicas.
    tokio::time::sleep(Duration::from_millis(300)).await;
    *master.lock().unwrap() = second.port();
    let switched = Instant::now();
    let deadline = switched + Duration::from_secs(5);
    while client.master() != ServerAddr::from(second.addr()) {
        assert!(Instant::now() < deadline, "the failover was not followed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let followed_in = switched.elapsed();
    eprintln!("connected in {connected_in:?}; followed the failover in {followed_in:?}");
    // The poll interval (200 ms) plus a ROLE check, never a replica's connect timeout (2 s).
    assert!(
        followed_in < Duration::from_secs(1),
        "followed after {followed_in:?}"
    );

    // The fake lists 200 sentinels: the client learns up to the cap and no further.
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.sentinels().len() < MAX_SENTINELS {
        assert!(
            Instant::now() < deadline,
            "learned only {} sentinels",
            client.sentinels().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.sentinels().len(), MAX_SENTINELS);
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_cannot_be_reached_says_nothing_was_sent() {
    let master = Arc::new(Mutex::new(dead_ports(1)[0]));
    let sentinel = fake_sentinel(master, Vec::new(), Vec::new()).await;
    let template = ConnectionConfig::new(sentinel.clone());
    let err = SentinelClient::connect(SentinelConfig::new(vec![sentinel], "mymaster", template))
        .await
        .expect_err("connected to a dead master");
    assert!(matches!(err, SentinelError::NoMaster { .. }), "{err}");
    assert_eq!(err.sent(), Some(Sent::No));
    let refused = SentinelError::Node(redis_conn::Error::Connect {
        addr: "127.0.0.1:1".into(),
        reason: "refused".into(),
    });
    assert_eq!(refused.sent(), Some(Sent::No));
}
