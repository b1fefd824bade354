//! Failure is a feature: server killed and restarted, connections cut mid-pipeline, hung peers,
//! slow servers, 1-byte slicing, hostile replies, cancelled callers. Timing bounds are generous
//! (2 busy cores) but every one of them would catch the behaviour it names going wrong.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_conn::{
    BackoffConfig, Cmd, Connection, ConnectionConfig, Error, Event, Protocol, Sent, ServerAddr,
    Value,
};
use test_support::{Fault, FaultProxy, RedisServer};

/// Timing-sensitive: the tests of this file run one at a time, whatever the test threads.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config_for(addr: std::net::SocketAddr) -> ConnectionConfig {
    ConnectionConfig::new(ServerAddr::from(addr))
}

/// For a fake server: RESP2 (no handshake, the first bytes it reads are the command), no health
/// check PINGs in the way, and one attempt per call.
fn fake_server_config(addr: std::net::SocketAddr) -> ConnectionConfig {
    config_for(addr)
        .protocol(Protocol::Resp2)
        .health_check_interval(None)
        .max_attempts(1)
}

fn bulk(s: &str) -> Value {
    Value::BulkString(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

/// Sends `n` ECHOs from 10 tasks and checks that each caller got its own token back.
async fn assert_no_misrouted_replies(conn: &Connection, n: usize) {
    let mut tasks = Vec::new();
    for t in 0..10 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 10 {
                let token = format!("echo-{t}-{i}");
                let reply = conn.send(Cmd::new("ECHO").arg(&token)).await.unwrap();
                assert_eq!(reply, bulk(&token), "a reply reached the wrong caller");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Retries `f` until it succeeds or `within` passes.
async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_server_restart_with_backoff_and_reports_events() {
    let _serial = SERIAL.lock().await;
    let mut server = RedisServer::builder().aof().start().unwrap();
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let (s1, s2, s3) = (Arc::clone(&seen), Arc::clone(&seen), Arc::clone(&seen));
    let conn = Connection::connect(
        config_for(server.addr())
            .on_connect(move |e| s1.lock().unwrap().push(e.name()))
            .on_disconnect(move |e| s2.lock().unwrap().push(e.name()))
            .on_reconnect(move |e| s3.lock().unwrap().push(e.name())),
    )
    .await
    .unwrap();
    let mut events = conn.events();
    conn.send(Cmd::new("SET").arg("before").arg("1"))
        .await
        .unwrap();

    // A caller keeps reading through a 2 s outage: every call resolves within its deadline.
    let reader = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut ok_after_restart = false;
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                let started = Instant::now();
                let r = conn.send(Cmd::new("GET").arg("before")).await;
                slowest = slowest.max(started.elapsed());
                match r {
                    Ok(v) => {
                        assert_eq!(v, bulk("1"));
                        ok_after_restart = true;
                    }
                    Err(e) => {
                        assert!(e.is_timeout() || e.sent().is_some(), "untyped: {e:?}");
                        ok_after_restart = false;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (slowest, ok_after_restart)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let failures_before = conn.stats().connect_failures;
    server.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = conn.stats().connect_failures - failures_before;
    server.restart().unwrap();
    let restarted = Instant::now();
    let v = eventually(Duration::from_secs(3), || {
        conn.send(Cmd::new("GET").arg("before"))
    })
    .await;
    let recovery = restarted.elapsed();
    assert_eq!(v, bulk("1"), "AOF kept the acknowledged write");
    let (slowest, ok_at_end) = reader.await.unwrap();
    assert!(ok_at_end, "reads did not come back");
    assert!(
        slowest < Duration::from_millis(1600),
        "a call took {slowest:?}, past its 1 s deadline"
    );
    assert!(
        attempts <= 15,
        "{attempts} reconnect attempts in a 2 s outage: backoff is not working"
    );
    assert!(
        attempts >= 3,
        "only {attempts} attempts: is it reconnecting at all?"
    );
    assert!(
        recovery < Duration::from_millis(1500),
        "recovery took {recovery:?}"
    );
    assert_eq!(conn.stats().reconnects, 1);

    let mut names = Vec::new();
    while let Ok(e) = events.try_recv() {
        names.push(e.name());
    }
    assert!(
        names.contains(&"disconnect") && names.contains(&"reconnect"),
        "{names:?}"
    );
    assert!(names.contains(&"reconnect_failed"), "{names:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec!["connect", "disconnect", "reconnect"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill9_and_incr_counts_are_honest() {
    let _serial = SERIAL.lock().await;
    let mut server = RedisServer::builder().aof().start().unwrap();
    let conn = Connection::connect(config_for(server.addr()))
        .await
        .unwrap();
    let acked_incr = Arc::new(AtomicU64::new(0));
    let unknown_incr = Arc::new(AtomicU64::new(0));
    let acked_sets: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (conn, acked_incr, unknown_incr, acked_sets, stop) = (
            conn.clone(),
            Arc::clone(&acked_incr),
            Arc::clone(&unknown_incr),
            Arc::clone(&acked_sets),
            Arc::clone(&stop),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("set-{w}-{i}");
                if conn.send(Cmd::new("SET").arg(&key).arg("v")).await.is_ok() {
                    acked_sets.lock().unwrap().push(key);
                }
                match conn.send(Cmd::new("INCR").arg("counter")).await {
                    Ok(_) => {
                        acked_incr.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.sent() == Some(Sent::Maybe) => {
                        unknown_incr.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for cycle in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.kill9();
        tokio::time::sleep(Duration::from_millis(if cycle % 2 == 0 { 0 } else { 200 })).await;
        server.restart().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let mut admin = server.admin().unwrap();
    let sets = acked_sets.lock().unwrap().clone();
    assert!(sets.len() > 100, "too little load: {}", sets.len());
    for key in &sets {
        assert_eq!(
            admin.cmd_int(&["EXISTS", key]).unwrap(),
            1,
            "acknowledged SET {key} lost"
        );
    }
    let value: i64 =
        String::from_utf8_lossy(admin.cmd(&["GET", "counter"]).unwrap().as_bytes().unwrap())
            .parse()
            .unwrap();
    let acked = acked_incr.load(Ordering::Relaxed) as i64;
    let unknown = unknown_incr.load(Ordering::Relaxed) as i64;
    assert!(
        acked <= value && value <= acked + unknown,
        "INCR: acked {acked}, unknown {unknown}, final {value}: a command ran twice or got lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_mid_pipeline_surfaces_maybe_for_incr_and_retries_reads() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(config_for(server.addr()))
        .await
        .unwrap();
    conn.send(Cmd::new("SET").arg("r").arg("x")).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut = Arc::new(AtomicU64::new(0));
    let incr = {
        let (conn, stop, cut) = (conn.clone(), Arc::clone(&stop), Arc::clone(&cut));
        tokio::spawn(async move {
            let (mut ok, mut maybe) = (0u64, 0u64);
            let cmds: Vec<Cmd> = (0..200).map(|_| Cmd::new("INCR").arg("c")).collect();
            while !stop.load(Ordering::Relaxed) {
                match conn.send_pipeline(&cmds).await {
                    Ok(_) => ok += 200,
                    Err(e) => {
                        assert_eq!(e.sent(), Some(Sent::Maybe), "{e:?}");
                        maybe += 200;
                        cut.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (ok, maybe)
        })
    };
    let reads = {
        let (conn, stop) = (conn.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = conn.send(Cmd::new("GET").arg("r")).await {
                    errors.push(e);
                }
            }
            errors
        })
    };
    let mut admin = server.admin().unwrap();
    // Kill until a few pipelines have been cut mid-flight (a kill between two pipelines cuts
    // nothing), within a bound.
    for _ in 0..40 {
        if cut.load(Ordering::Relaxed) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        admin
            .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, maybe) = incr.await.unwrap();
    let read_errors = reads.await.unwrap();
    assert!(
        read_errors.is_empty(),
        "reads are retried transparently, yet: {read_errors:?}"
    );
    assert!(
        maybe > 0,
        "no INCR pipeline was cut: the test did not test anything"
    );
    let value: i64 = String::from_utf8_lossy(admin.cmd(&["GET", "c"]).unwrap().as_bytes().unwrap())
        .parse()
        .unwrap();
    assert!(
        ok as i64 <= value && value <= (ok + maybe) as i64,
        "acked {ok}, unknown {maybe}, final {value}"
    );
    assert!(conn.stats().reconnects >= 3);
}

#[tokio::test]
async fn a_blackholed_connection_times_out_and_is_replaced() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let conn = Connection::connect(
        config_for(proxy.addr())
            .response_timeout(Duration::from_millis(500))
            .hang_window(Duration::from_secs(1))
            .health_check_interval(None),
    )
    .await
    .unwrap();
    let mut events = conn.events();
    conn.send(Cmd::new("SET").arg("k").arg("v")).await.unwrap();
    proxy.set(Fault::Blackhole);
    let started = Instant::now();
    let err = conn.send(Cmd::new("GET").arg("k")).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        err.is_timeout() || err.sent() == Some(Sent::Maybe),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(900),
        "timed out after {took:?}, expected about 500 ms"
    );
    // Silent past the hang window (1 s) with a call waiting: the connection is replaced by
    // itself, not at the call's deadline (500 ms) but at the window's end.
    let disconnected = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(Event::Disconnected { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
    .expect("no disconnect after a hung request");
    let replaced_after = started.elapsed();
    assert!(disconnected.contains("hung"), "{disconnected}");
    assert!(
        replaced_after >= Duration::from_millis(950)
            && replaced_after < Duration::from_millis(2500),
        "replaced {replaced_after:?} after the write, with a hang window of 1 s"
    );
    proxy.set(Fault::Pass);
    let v = eventually(Duration::from_secs(3), || {
        conn.send(Cmd::new("GET").arg("k"))
    })
    .await;
    assert_eq!(v, bulk("v"));
}

#[tokio::test]
async fn an_idle_connection_to_a_silently_dead_peer_is_found_by_the_health_check() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let conn = Connection::connect(
        config_for(proxy.addr())
            .response_timeout(Duration::from_millis(500))
            .health_check_interval(Some(Duration::from_millis(300))),
    )
    .await
    .unwrap();
    let mut events = conn.events();
    proxy.set(Fault::Blackhole);
    let started = Instant::now();
    let found = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(Event::Disconnected { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "the dead peer was never noticed");
    // Interval + timeout = 0.8 s, with slack for two busy cores.
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    proxy.set(Fault::Pass);
    eventually(Duration::from_secs(3), || conn.health_check()).await;
}

#[tokio::test]
async fn a_stalled_server_times_calls_out_and_no_reply_goes_astray_afterwards() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn =
        Connection::connect(config_for(server.addr()).response_timeout(Duration::from_millis(500)))
            .await
            .unwrap();
    // DEBUG SLEEP 2 stalls the server; the call and those behind it time out at ~500 ms.
    let slow = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = conn.send(Cmd::new("DEBUG").arg("SLEEP").arg("2")).await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let behind = conn.send(Cmd::new("GET").arg("x")).await;
    let behind_took = started.elapsed();
    let (r, took) = slow.await.unwrap();
    assert!(r.unwrap_err().is_timeout());
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert!(
        behind.is_err(),
        "a command behind DEBUG SLEEP answered: {behind:?}"
    );
    assert!(behind_took < Duration::from_millis(800), "{behind_took:?}");
    // Afterwards, whatever late replies arrive are never handed to the wrong caller.
    eventually(Duration::from_secs(5), || conn.health_check()).await;
    assert_no_misrouted_replies(&conn, 1000).await;
}

/// The CPU time this thread has run so far (the scheduler's count).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok());
    Duration::from_nanos(ns.expect("schedstat's first field"))
}

/// `spin_wait` polls only for replies that come within its budget: against a server that answers
/// later (10 ms and more behind a delaying proxy), the connection stops polling after a few
/// waits and then polls one wait in 64. Everything runs on this thread (a current-thread
/// runtime), so its CPU time is the connection's.
#[tokio::test]
async fn polling_for_replies_stops_for_a_server_that_answers_later_than_its_budget() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let budget = Duration::from_millis(2);
    let conn = Connection::connect(config_for(proxy.addr()).spin_wait(budget))
        .await
        .unwrap();
    proxy.set(Fault::Delay(Duration::from_millis(5)));
    let calls = 100u32;
    let (cpu, wall) = (thread_cpu(), Instant::now());
    for _ in 0..calls {
        conn.send(Cmd::new("PING")).await.unwrap();
    }
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    assert!(
        wall >= Duration::from_millis(10) * calls,
        "{wall:?}: not delayed"
    );
    // Polling every wait would cost a budget per call.
    assert!(
        cpu < budget * calls / 2,
        "{cpu:?} of CPU for {calls} calls over {wall:?}"
    );
}

#[tokio::test]
async fn a_paused_server_times_calls_out_and_they_recover_after_sigcont() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn =
        Connection::connect(config_for(server.addr()).response_timeout(Duration::from_millis(400)))
            .await
            .unwrap();
    server.pause().unwrap();
    let started = Instant::now();
    let err = conn.send(Cmd::new("PING")).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(700));
    server.resume().unwrap();
    eventually(Duration::from_secs(5), || conn.health_check()).await;
    assert_no_misrouted_replies(&conn, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_sliced_into_single_bytes_decode_without_errors() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let conn =
        Connection::connect(config_for(proxy.addr()).response_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
    proxy.set(Fault::Slice(1));
    let value = "v".repeat(100);
    let mut tasks = Vec::new();
    for t in 0..10 {
        let (conn, value) = (conn.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..30 {
                let key = format!("k{t}-{i}");
                conn.send(Cmd::new("SET").arg(&key).arg(&value))
                    .await
                    .unwrap();
                let got = conn.send(Cmd::new("GET").arg(&key)).await.unwrap();
                assert_eq!(got, bulk(&value));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(conn.stats().reconnects, 0, "slicing caused a reconnect");
}

#[tokio::test]
async fn a_server_that_accepts_and_closes_still_gets_backoff() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let conn = Connection::connect(config_for(proxy.addr())).await.unwrap();
    // Every new connection is accepted, then reset: TCP connects succeed, handshakes do not. The
    // backoff must not reset on a bare TCP connect.
    proxy.set(Fault::RefuseNew);
    let before = proxy.accepted();
    proxy.reset_all();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = proxy.accepted() - before;
    assert!(
        (2..=15).contains(&attempts),
        "{attempts} connection attempts in 2 s"
    );
    proxy.set(Fault::Pass);
    eventually(Duration::from_secs(3), || conn.health_check()).await;
}

#[tokio::test]
async fn unwritten_commands_wait_for_the_reconnect_and_run_once() {
    let _serial = SERIAL.lock().await;
    let mut server = RedisServer::builder().aof().start().unwrap();
    let conn = Connection::connect(
        config_for(server.addr())
            .response_timeout(Duration::from_secs(3))
            .backoff(BackoffConfig::default().max_delay(Duration::from_millis(100))),
    )
    .await
    .unwrap();
    server.kill9();
    // Let the driver notice before the INCR is queued, so that it is never written to the dead
    // socket.
    tokio::time::timeout(Duration::from_secs(2), async {
        while conn.is_connected() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let pending = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(Cmd::new("INCR").arg("once")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), Value::Integer(1));
    let v = server.admin().unwrap().cmd(&["GET", "once"]).unwrap();
    assert_eq!(v, bulk("1"));
}

#[tokio::test]
async fn blocking_commands_wait_past_the_response_timeout_without_marking_the_connection_hung() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn =
        Connection::connect(config_for(server.addr()).response_timeout(Duration::from_millis(300)))
            .await
            .unwrap();
    let started = Instant::now();
    let v = conn
        .send(Cmd::new("BLPOP").arg("empty").arg("1"))
        .await
        .unwrap();
    assert_eq!(v, Value::Null);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(conn.stats().reconnects, 0);
    assert!(conn.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_never_receive_or_cause_wrong_replies() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(config_for(server.addr()))
        .await
        .unwrap();
    let value = "x".repeat(1000);
    let mut tasks = Vec::new();
    for t in 0..20 {
        let (conn, value) = (conn.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                let key = format!("c{t}-{i}");
                let fut = conn.send(Cmd::new("SET").arg(&key).arg(&value));
                let _ = tokio::time::timeout(Duration::from_micros(200), fut).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_no_misrouted_replies(&conn, 1000).await;
    let clients = server
        .admin()
        .unwrap()
        .cmd_string(&["CLIENT", "LIST"])
        .unwrap();
    assert_eq!(clients.lines().count(), 2, "{clients}");
    assert_eq!(
        conn.stats().queued,
        0,
        "cancelled requests still counted as queued"
    );
}

/// A fake server, to choose how replies arrive: it waits for all 40 commands, answers them in
/// one write and then sends nothing more. The driver hands replies out a few callers at a time;
/// the rest, already read, must still reach their callers with no more bytes coming and no
/// caller sending anything after.
#[tokio::test]
async fn replies_read_together_reach_every_caller_though_no_more_bytes_come() {
    let _serial = SERIAL.lock().await;
    const CALLERS: usize = 40;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        // `GET kNN` in RESP2 is 22 bytes; the reply echoes the key.
        let mut commands = vec![0u8; CALLERS * 22];
        if sock.read_exact(&mut commands).await.is_err() {
            return;
        }
        let mut replies = Vec::new();
        for command in commands.chunks(22) {
            assert!(
                command.starts_with(b"*2\r\n$3\r\nGET\r\n$3\r\n"),
                "{command:?}"
            );
            replies.extend_from_slice(b"$3\r\n");
            replies.extend_from_slice(&command[17..]);
        }
        sock.write_all(&replies).await.unwrap();
        // Hold the connection open, silent.
        let _ = sock.read(&mut [0u8; 64]).await;
    });
    let conn =
        Connection::connect(fake_server_config(addr).response_timeout(Duration::from_secs(20)))
            .await
            .unwrap();
    let calls = (0..CALLERS).map(|i| {
        let conn = conn.clone();
        let key = format!("k{i:02}");
        tokio::spawn(async move {
            let reply = conn.send(Cmd::new("GET").arg(&key)).await;
            (key, reply)
        })
    });
    let all = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(calls))
        .await
        .expect("replies already read were left waiting");
    for joined in all {
        let (key, reply) = joined.unwrap();
        assert_eq!(reply.unwrap(), bulk(&key), "misrouted reply");
    }
}

/// A fake server answers a pipeline with a push message among its replies, then a second
/// pipeline with a malformed frame after two good replies. The pipeline's replies are read in a
/// run (`Decoder::decode_into`): the push must not count as a reply, and the malformed frame must
/// break the connection with a protocol error, the replies read before it notwithstanding.
#[tokio::test]
async fn a_pipeline_read_in_a_run_skips_pushes_and_stops_at_a_malformed_frame() {
    let _serial = SERIAL.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        // Five `SET k v` in RESP2: 27 bytes each.
        let mut commands = [0u8; 5 * 27];
        for replies in [
            &b"+OK\r\n+OK\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+OK\r\n:7\r\n+OK\r\n"[..],
            &b"+OK\r\n+OK\r\n?\r\n"[..],
        ] {
            if sock.read_exact(&mut commands).await.is_err() {
                return;
            }
            assert!(commands.starts_with(b"*3\r\n$3\r\nSET\r\n"), "{commands:?}");
            sock.write_all(replies).await.unwrap();
        }
        let _ = sock.read(&mut [0u8; 64]).await;
    });
    let conn = Connection::connect(fake_server_config(addr)).await.unwrap();
    let mut events = conn.events();
    let sets: Vec<Cmd> = (0..5).map(|_| Cmd::new("SET").arg("k").arg("v")).collect();
    let ok = Value::SimpleString(bytes::Bytes::from_static(b"OK"));
    let replies = conn.send_pipeline(&sets).await.unwrap();
    assert_eq!(
        replies,
        vec![
            ok.clone(),
            ok.clone(),
            ok.clone(),
            Value::Integer(7),
            ok.clone()
        ]
    );
    let err = conn.send_pipeline(&sets).await.unwrap_err();
    match &err {
        Error::ConnectionLost { reason, sent, .. } => {
            assert!(reason.contains("invalid RESP type byte"), "{reason}");
            assert_eq!(*sent, Sent::Maybe);
        }
        other => panic!("{other:?}"),
    }
    let mut protocol_errors = 0;
    while let Ok(e) = events.try_recv() {
        if let Event::Error { error, .. } = &e {
            assert!(matches!(error, Error::Protocol { .. }), "{error:?}");
            protocol_errors += 1;
        }
    }
    assert_eq!(protocol_errors, 1);
}

/// A fake server for what a real one never does: claim a 1 GiB bulk and drip bytes.
#[tokio::test]
async fn a_hostile_server_claiming_a_huge_reply_is_cut_off_at_once() {
    let _serial = SERIAL.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                // No handshake with RESP2 and no options: the first bytes are the command.
                if sock.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let _ = sock.write_all(b"$1073741824\r\n").await;
                for _ in 0..100 {
                    if sock.write_all(&[b'x'; 1024]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
    });
    let conn = Connection::connect(fake_server_config(addr)).await.unwrap();
    let mut events = conn.events();
    let started = Instant::now();
    let err = conn.send(Cmd::new("GET").arg("k")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    match &err {
        Error::ConnectionLost { reason, sent, .. } => {
            assert!(reason.contains("exceeds the limit"), "{reason}");
            assert_eq!(*sent, Sent::Maybe);
        }
        other => panic!("{other:?}"),
    }
    let mut kinds = HashSet::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Error { error, .. } = &e {
            assert!(matches!(error, Error::Protocol { .. }), "{error:?}");
        }
        kinds.insert(e.name());
    }
    assert!(
        kinds.contains("error") && kinds.contains("disconnect"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn credentials_refused_on_reconnect_are_reported_once_and_not_hammered() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::builder().password("first").start().unwrap();
    let conn = Connection::connect(
        config_for(server.addr())
            .password("first")
            .response_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let mut events = conn.events();
    let mut admin = server.admin().unwrap();
    admin
        .cmd(&["CONFIG", "SET", "requirepass", "second"])
        .unwrap();
    admin
        .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = conn.send(Cmd::new("PING")).await.unwrap_err();
    assert!(
        matches!(err, Error::Auth { .. } | Error::Timeout { .. }),
        "{err:?}"
    );
    let (mut auth_errors, mut attempts) = (0, 0);
    while let Ok(e) = events.try_recv() {
        match e {
            Event::Error {
                error: Error::Auth { .. },
                ..
            } => auth_errors += 1,
            Event::ReconnectFailed { .. } => attempts += 1,
            _ => {}
        }
    }
    assert_eq!(auth_errors, 1, "a permanent error is reported once");
    // After the first refusal the attempts are spaced by the backoff cap (1 s).
    assert!((1..=4).contains(&attempts), "{attempts} attempts in 2.5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_reset_mid_pipeline_is_handled_like_a_kill() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let conn = Connection::connect(config_for(proxy.addr())).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut = Arc::new(AtomicU64::new(0));
    let load = {
        let (conn, stop, cut) = (conn.clone(), Arc::clone(&stop), Arc::clone(&cut));
        tokio::spawn(async move {
            let (mut ok, mut maybe, mut other) = (0u64, 0u64, Vec::new());
            let cmds: Vec<Cmd> = (0..50).map(|_| Cmd::new("INCR").arg("c")).collect();
            while !stop.load(Ordering::Relaxed) {
                match conn.send_pipeline(&cmds).await {
                    Ok(_) => ok += 50,
                    Err(e) if e.sent() == Some(Sent::Maybe) => {
                        maybe += 50;
                        cut.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => other.push(e),
                }
            }
            (ok, maybe, other)
        })
    };
    // Reset until a few pipelines have been cut mid-flight, within a bound.
    for _ in 0..40 {
        if cut.load(Ordering::Relaxed) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.reset_all();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, maybe, other) = load.await.unwrap();
    assert!(other.is_empty(), "{other:?}");
    assert!(maybe > 0, "no pipeline was cut");
    let value: i64 =
        String::from_utf8_lossy(server.cmd(&["GET", "c"]).unwrap().as_bytes().unwrap())
            .parse()
            .unwrap();
    assert!(ok as i64 <= value && value <= (ok + maybe) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_keeps_the_queue_bounded_and_every_call_resolves() {
    let _serial = SERIAL.lock().await;
    // AOF, so that the restarted server would show any write that arrived late.
    let mut server = RedisServer::builder().aof().start().unwrap();
    let conn = Connection::connect(
        config_for(server.addr())
            .queue_capacity(200)
            .response_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    server.kill9();
    let started = Instant::now();
    // 2,000 calls over the outage; at most 200 may wait at a time.
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = conn
                .send(Cmd::new("SET").arg(format!("k{i}")).arg("v"))
                .await;
            (r, t.elapsed())
        }));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (mut full, mut timeouts) = (0, 0);
    for t in tasks {
        let (r, took) = t.await.unwrap();
        match r {
            Err(Error::QueueFull { .. }) => {
                full += 1;
                assert!(took < Duration::from_millis(20), "QueueFull took {took:?}");
            }
            Err(e) => {
                assert!(e.is_timeout(), "{e:?}");
                assert_eq!(e.sent(), Some(Sent::No), "nothing could be written: {e:?}");
                assert!(took < Duration::from_millis(900), "{took:?}");
                timeouts += 1;
            }
            Ok(v) => panic!("a write succeeded with the server down: {v:?}"),
        }
    }
    assert!(full > 0 && timeouts > 0, "full {full}, timeouts {timeouts}");
    assert_eq!(conn.stats().queued, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    server.restart().unwrap();
    eventually(Duration::from_secs(3), || conn.health_check()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Nothing that timed out unsent was written later.
    assert_eq!(server.admin().unwrap().cmd_int(&["DBSIZE"]).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_delivery_resends_what_may_have_run() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn =
        Connection::connect(config_for(server.addr()).delivery(redis_conn::Delivery::AtLeastOnce))
            .await
            .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (conn, stop) = (conn.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let cmds: Vec<Cmd> = (0..50).map(|_| Cmd::new("INCR").arg("c")).collect();
            while !stop.load(Ordering::Relaxed) {
                match conn.send_pipeline(&cmds).await {
                    Ok(_) => ok += 50,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        })
    };
    let mut admin = server.admin().unwrap();
    // Kill until some pipeline was resent, within a bound.
    for _ in 0..40 {
        if conn.stats().retries >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        admin
            .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "at-least-once resends instead of reporting: {:?}",
        failed.first()
    );
    assert!(conn.stats().retries > 0, "no pipeline was cut");
    let value: i64 = String::from_utf8_lossy(admin.cmd(&["GET", "c"]).unwrap().as_bytes().unwrap())
        .parse()
        .unwrap();
    // Every acknowledged INCR ran; some may have run twice, which is what the mode accepts.
    assert!(value >= ok as i64, "acked {ok}, final {value}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_network_adds_latency_but_no_reconnects() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let conn = Connection::connect(config_for(proxy.addr())).await.unwrap();
    // 100 ms each way: a 200 ms round trip, under the 1 s response timeout.
    proxy.set(Fault::Delay(Duration::from_millis(100)));
    let mut tasks = Vec::new();
    for t in 0..10 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..5 {
                let token = format!("{t}-{i}");
                let started = Instant::now();
                let reply = conn.send(Cmd::new("ECHO").arg(&token)).await.unwrap();
                latencies.push(started.elapsed());
                assert_eq!(reply, bulk(&token));
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let p99 = all[all.len() * 99 / 100];
    assert!(
        all[0] >= Duration::from_millis(195),
        "faster than the network: {:?}",
        all[0]
    );
    assert!(p99 < Duration::from_millis(400), "p99 {p99:?}");
    let stats = conn.stats();
    assert_eq!((stats.reconnects, stats.errors), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn a_call_whose_first_attempt_may_have_run_never_reports_not_sent() {
    let _serial = SERIAL.lock().await;
    // The server reads the SET, closes without answering, and is gone: the resend (SET k v is
    // retry-safe) is never written and times out. The call as a whole may have run.
    assert_a_failed_resend_reports_maybe(None).await;
}

/// `DEBUG SLEEP` on the connection under test: a server busy with one slow command (as with a
/// long script), silent meanwhile.
fn debug_sleep(secs: f64) -> Cmd {
    Cmd::new("DEBUG").arg("SLEEP").arg(secs.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_slower_than_one_callers_deadline_fails_only_the_calls_that_waited_past_theirs() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(
        config_for(server.addr())
            .response_timeout(Duration::from_secs(1))
            .health_check_interval(None),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let spawn_at = |at_ms: u64, cmd: Cmd| {
        let conn = conn.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((started + Duration::from_millis(at_ms)).into()).await;
            let result = conn.send(cmd).await;
            (result, started.elapsed())
        })
    };
    // 1.5 s of silence: the sleeper's own deadline (1 s) passes, and so does that of a call
    // made 0.2 s in (1.2 s); a call made 0.8 s in (deadline 1.8 s) gets its reply at 1.5 s.
    let sleeper = spawn_at(0, debug_sleep(1.5));
    let early = spawn_at(200, Cmd::new("INCR").arg("early"));
    let late = spawn_at(800, Cmd::new("INCR").arg("late"));
    let (sleeper, sleeper_at) = sleeper.await.unwrap();
    let (early, _) = early.await.unwrap();
    let (late, late_at) = late.await.unwrap();
    let error = sleeper.expect_err("the sleeper waited past its deadline");
    assert!(
        error.is_timeout() && error.sent() == Some(Sent::Maybe),
        "{error}"
    );
    assert!(sleeper_at < Duration::from_millis(1400), "{sleeper_at:?}");
    let error = early.expect_err("the early call waited past its deadline");
    assert!(
        error.is_timeout() && error.sent() == Some(Sent::Maybe),
        "{error}"
    );
    assert_eq!(late.unwrap(), Value::Integer(1), "answered at {late_at:?}");
    assert_eq!(
        conn.stats().reconnects,
        0,
        "a slow reply replaced the connection"
    );
    // The late replies were read and dropped in order: every caller still gets its own.
    assert_no_misrouted_replies(&conn, 200).await;
    let early_ran = server.admin().unwrap().cmd(&["GET", "early"]).unwrap();
    assert_eq!(
        early_ran,
        bulk("1"),
        "the timed-out INCR ran once, as Maybe said it might"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reply_within_the_response_timeout_costs_no_caller_anything() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(
        config_for(server.addr())
            .response_timeout(Duration::from_secs(1))
            .health_check_interval(None),
    )
    .await
    .unwrap();
    let sleeper = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(debug_sleep(0.6)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut calls = Vec::new();
    for i in 0..20 {
        let conn = conn.clone();
        calls.push(tokio::spawn(async move {
            conn.send(Cmd::new("ECHO").arg(format!("behind-{i}"))).await
        }));
    }
    assert!(sleeper.await.unwrap().is_ok());
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), bulk(&format!("behind-{i}")));
    }
    assert_eq!(conn.stats().reconnects, 0);
    assert_eq!(conn.stats().errors, 0);
}

/// A fake RESP2 server that answers each command (one per read, as a caller sends them one at a
/// time) with the next of `replies`, then repeats the last one.
async fn scripted_server(replies: Vec<&'static str>) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let commands = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&commands);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (replies, seen) = (replies.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let n = seen.fetch_add(1, Ordering::Relaxed) as usize;
                    let reply = replies[n.min(replies.len() - 1)];
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, commands)
}

#[tokio::test]
async fn transient_error_replies_are_retried_with_backoff_until_the_server_runs_the_command() {
    let _serial = SERIAL.lock().await;
    for code in ["LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "BUSY"] {
        let error: &'static str =
            Box::leak(format!("-{code} not now, try again\r\n").into_boxed_str());
        // Even INCR: the server says it did not run it, so sending it again is no second run.
        let (addr, commands) = scripted_server(vec![error, error, ":1\r\n"]).await;
        let conn = Connection::connect(fake_server_config(addr).max_attempts(3))
            .await
            .unwrap();
        let started = Instant::now();
        let reply = conn.send(Cmd::new("INCR").arg("n")).await;
        assert_eq!(reply.unwrap(), Value::Integer(1), "{code}");
        assert_eq!(commands.load(Ordering::Relaxed), 3, "{code}");
        assert_eq!(conn.stats().retries, 2, "{code}");
        // Two backoff pauses (10 ms, then up to 20 ms with full jitter): not a tight loop,
        // not a long wait either.
        assert!(started.elapsed() < Duration::from_millis(500), "{code}");

        // Attempts run out: the caller gets the server's error, not a success.
        let (addr, commands) = scripted_server(vec![error]).await;
        let conn = Connection::connect(fake_server_config(addr).max_attempts(3))
            .await
            .unwrap();
        let error = conn.send(Cmd::new("GET").arg("k")).await.unwrap_err();
        assert_eq!(
            error.server_error().map(|e| e.code().to_string()),
            Some(code.to_string())
        );
        assert_eq!(commands.load(Ordering::Relaxed), 3, "{code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_script_on_a_real_server_is_waited_out_within_the_deadline() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let mut admin = server.admin().unwrap();
    admin
        .cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"])
        .unwrap();
    let busy =
        Connection::connect(config_for(server.addr()).response_timeout(Duration::from_secs(5)))
            .await
            .unwrap();
    let conn = Connection::connect(
        config_for(server.addr())
            .response_timeout(Duration::from_secs(3))
            .max_attempts(20),
    )
    .await
    .unwrap();
    // A script that keeps the server busy for about 600 ms (past the 100 ms threshold, after
    // which the server answers others with BUSY).
    let script = "local t = redis.call('TIME') local start = t[1] * 1000 + t[2] / 1000 \
                  repeat t = redis.call('TIME') until t[1] * 1000 + t[2] / 1000 - start > 600 \
                  return 1";
    let running = {
        let busy = busy.clone();
        tokio::spawn(async move { busy.send(Cmd::new("EVAL").arg(script).arg("0")).await })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    let reply = conn.send(Cmd::new("INCR").arg("after-busy")).await;
    assert_eq!(reply.unwrap(), Value::Integer(1));
    assert!(
        conn.stats().retries >= 1,
        "no BUSY was met: the test proved nothing"
    );
    assert_eq!(running.await.unwrap().unwrap(), Value::Integer(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pause_write_holds_writes_while_reads_flow() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(config_for(server.addr()))
        .await
        .unwrap();
    conn.send(Cmd::new("SET").arg("k").arg("v")).await.unwrap();
    let mut admin = server.admin().unwrap();
    admin.cmd(&["CLIENT", "PAUSE", "600", "WRITE"]).unwrap();
    let paused_at = Instant::now();
    let writer = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let result = conn.send(Cmd::new("SET").arg("k").arg("w")).await;
            (result, paused_at.elapsed())
        })
    };
    let reader = Connection::connect(config_for(server.addr()))
        .await
        .unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(
            reader.send(Cmd::new("GET").arg("k")).await.unwrap(),
            bulk("v")
        );
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        paused_at.elapsed() < Duration::from_millis(500),
        "the reads were held up"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "a read took {slowest:?}"
    );
    let (result, done_at) = writer.await.unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        done_at >= Duration::from_millis(500),
        "the write was not held: {done_at:?}"
    );
    assert_eq!(conn.stats().reconnects, 0);
    assert_eq!(
        reader.send(Cmd::new("GET").arg("k")).await.unwrap(),
        bulk("w")
    );
}

/// The first attempt of a retry-safe SET is read by the server, which then drops the
/// connection; the resend reaches a server that answers `LOADING` until the call gives up. The
/// call may have run (its first attempt), so its error must say `Sent::Maybe`, not be a bare
/// server error that reads as "not executed".
#[tokio::test]
async fn a_transient_refusal_of_a_resend_still_reports_that_the_call_may_have_run() {
    let _serial = SERIAL.lock().await;
    assert_a_failed_resend_reports_maybe(Some(
        b"-LOADING Redis is loading the dataset in memory\r\n",
    ))
    .await;
}

/// The same with a redirect: the resend is MOVED (or met a demoted master). A cluster layer
/// following it could not tell that the first attempt may have run, so the call ends here with
/// `Sent::Maybe`.
#[tokio::test]
async fn a_redirected_resend_still_reports_that_the_call_may_have_run() {
    let _serial = SERIAL.lock().await;
    for refusal in [
        &b"-MOVED 3999 127.0.0.1:1\r\n"[..],
        b"-ASK 3999 127.0.0.1:1\r\n",
        b"-READONLY You can't write against a read only replica.\r\n",
    ] {
        assert_a_failed_resend_reports_maybe(Some(refusal)).await;
    }
}

/// A server that reads the first SET and closes without answering; then refuses every resend
/// with `refusal`, or, without one, is gone (the resend is never written and times out). The
/// call's error must say `Sent::Maybe`: its first attempt may have run.
async fn assert_a_failed_resend_reports_maybe(refusal: Option<&'static [u8]>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // First connection: read the SET, close without answering.
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.windows(3).any(|w| w == b"SET") {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        drop(socket);
        let Some(refusal) = refusal else {
            // Listener dropped too: the reconnect is refused from now on.
            return;
        };
        // Every later connection: each SET is refused.
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let sets = buf[..n].windows(3).filter(|w| *w == b"SET").count();
                            for _ in 0..sets {
                                if socket.write_all(refusal).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    let conn = Connection::connect(
        fake_server_config(addr)
            .max_attempts(3)
            .response_timeout(Duration::from_millis(800)),
    )
    .await
    .unwrap();
    let error = conn
        .send(Cmd::new("SET").arg("k").arg("v"))
        .await
        .expect_err("the resend fails");
    assert!(conn.stats().retries >= 1, "the SET was not resent: {error}");
    assert_eq!(
        error.sent(),
        Some(Sent::Maybe),
        "the first attempt may have run, yet the call reports {error:?}"
    );
}

/// A `BLPOP k 0` on the shared connection whose caller gave up: the server keeps that client
/// blocked, silent, forever, and every call behind it waits in vain. Nobody waits for the
/// BLPOP any more, so its "forever" no longer holds the connection: silence past the hang
/// window with calls waiting must replace it, as for any other request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_endless_blocking_command_does_not_wedge_the_shared_connection() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(
        config_for(server.addr())
            .response_timeout(Duration::from_millis(300))
            .hang_window(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let blpop = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send(Cmd::new("BLPOP").arg("nosuch").arg("0")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    blpop.abort();
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(5) {
        match conn.send(Cmd::new("PING")).await {
            Ok(_) => {
                eprintln!("served again after {:?}", started.elapsed());
                return;
            }
            Err(e) => last = Some(e),
        }
    }
    panic!("the shared connection stayed wedged behind an abandoned BLPOP 0: {last:?}");
}
