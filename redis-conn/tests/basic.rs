//! The connection against a real server: commands, pipelines, concurrency, handshake options,
//! typed errors.

use std::sync::Arc;
use std::time::Duration;

use redis_conn::{
    Batch, Cmd, Connection, ConnectionConfig, Error, Protocol, Sent, ServerAddr, Value,
};
use test_support::RedisServer;

fn config(server: &RedisServer) -> ConnectionConfig {
    ConnectionConfig::new(ServerAddr::from(server.addr()))
}

fn bulk(s: &str) -> Value {
    Value::BulkString(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

#[tokio::test]
async fn commands_and_pipelines_round_trip_with_errors_in_place() {
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(config(&server)).await.unwrap();
    conn.send(Cmd::new("SET").arg("k").arg("v")).await.unwrap();
    assert_eq!(
        conn.send(Cmd::new("GET").arg("k")).await.unwrap(),
        bulk("v")
    );
    assert_eq!(
        conn.send(Cmd::new("GET").arg("missing")).await.unwrap(),
        Value::Null
    );
    let err = conn.send(Cmd::new("NOSUCHCOMMAND")).await.unwrap_err();
    match &err {
        Error::Server(e) => assert_eq!(e.code(), "ERR"),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.sent(), None);

    let replies = conn
        .send_pipeline(&[
            Cmd::new("INCR").arg("n"),
            Cmd::new("LPUSH").arg("k").arg("x"), // WRONGTYPE in the middle
            Cmd::new("INCR").arg("n"),
            Cmd::new("GET").arg("k"),
        ])
        .await
        .unwrap();
    assert_eq!(replies[0], Value::Integer(1));
    assert!(matches!(&replies[1], Value::Error(e) if e.starts_with(b"WRONGTYPE")));
    assert_eq!(replies[2], Value::Integer(2));
    assert_eq!(replies[3], bulk("v"));

    // RESP3 is spoken by default: HGETALL is a map.
    conn.send(Cmd::new("HSET").arg("h").arg("f").arg("1"))
        .await
        .unwrap();
    assert!(matches!(
        conn.send(Cmd::new("HGETALL").arg("h")).await.unwrap(),
        Value::Map(_)
    ));
    // A transaction inside a pipeline is one unit.
    let tx = conn
        .send_pipeline(&[
            Cmd::new("MULTI"),
            Cmd::new("INCR").arg("t"),
            Cmd::new("INCR").arg("t"),
            Cmd::new("EXEC"),
        ])
        .await
        .unwrap();
    assert_eq!(
        tx[3],
        Value::Array(vec![Value::Integer(1), Value::Integer(2)])
    );
    // A batch built in place: arguments added after the name, one command growing past nine
    // arguments (its header gains a digit), an error in its place, reusable after a send.
    let mut batch = Batch::new();
    batch.start("RPUSH");
    batch.push_arg("list");
    for i in 0..12 {
        batch.push_int(i);
    }
    batch.push(&Cmd::new("LPUSH").arg("k").arg("x"));
    batch.start("LRANGE");
    batch.push_arg("list");
    batch.push_int(0);
    batch.push_int(-1);
    let replies = conn.send_batch(&batch).await.unwrap();
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[0], Value::Integer(12));
    assert!(matches!(&replies[1], Value::Error(e) if e.starts_with(b"WRONGTYPE")));
    let items: Vec<Value> = (0..12).map(|i| bulk(&i.to_string())).collect();
    assert_eq!(replies[2], Value::Array(items));
    assert_eq!(
        conn.send_batch(&batch).await.unwrap()[0],
        Value::Integer(24)
    );
    assert!(conn.send_batch(&Batch::new()).await.unwrap().is_empty());
    // What a shared connection refuses alone, it refuses in a batch, before sending anything.
    let mut refused = Batch::new();
    refused.push(&Cmd::new("INCR").arg("n"));
    refused.push(&Cmd::new("WATCH").arg("k"));
    assert!(matches!(
        conn.send_batch(&refused).await,
        Err(Error::Unsupported(_))
    ));
    assert!(conn.health_check().await.unwrap() < Duration::from_secs(1));
    let stats = conn.stats();
    assert!(stats.connected && stats.requests >= 10 && stats.errors == 1);
    assert_eq!(
        conn.send(Cmd::new("GET").arg("n")).await.unwrap(),
        bulk("2"),
        "nothing of the refused batch ran"
    );
}

#[tokio::test]
async fn fifty_tasks_share_one_connection_and_every_reply_reaches_its_caller() {
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(config(&server)).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..50 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let token = format!("task-{t}-{i}");
                let reply = conn.send(Cmd::new("ECHO").arg(&token)).await.unwrap();
                assert_eq!(reply, bulk(&token), "misrouted reply");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // One connection only, besides the ones this test opens for checking.
    let clients = server
        .admin()
        .unwrap()
        .cmd_string(&["CLIENT", "LIST"])
        .unwrap();
    assert_eq!(clients.lines().count(), 2, "{clients}");
}

#[tokio::test]
async fn resp2_auth_acl_user_database_and_client_name_are_applied() {
    let server = RedisServer::builder()
        .password("S3cr3t-basic")
        .acl_user("app", "app-pass")
        .start()
        .unwrap();
    for protocol in [Protocol::Resp3, Protocol::Resp2] {
        let conn = Connection::connect(
            config(&server)
                .username("app")
                .password("app-pass")
                .database(3)
                .client_name("billing")
                .protocol(protocol),
        )
        .await
        .unwrap();
        conn.send(Cmd::new("SET").arg("in-db-3").arg("1"))
            .await
            .unwrap();
        let info = conn.send(Cmd::new("CLIENT").arg("INFO")).await.unwrap();
        let text = String::from_utf8_lossy(info.as_bytes().unwrap()).into_owned();
        assert!(text.contains("name=billing"), "{text}");
        assert!(text.contains("db=3"), "{text}");
        assert!(text.contains("user=app"), "{text}");
        let resp = if protocol == Protocol::Resp3 {
            "resp=3"
        } else {
            "resp=2"
        };
        assert!(text.contains(resp), "{text}");
        // RESP2 turns a map into a flat array.
        let hello = conn.send(Cmd::new("HGETALL").arg("none")).await.unwrap();
        match protocol {
            Protocol::Resp2 => assert_eq!(hello, Value::Array(vec![])),
            _ => assert_eq!(hello, Value::Map(vec![])),
        }
    }
    let mut admin = server.admin().unwrap();
    admin.cmd(&["SELECT", "3"]).unwrap();
    assert_eq!(admin.cmd_int(&["EXISTS", "in-db-3"]).unwrap(), 1);
}

#[tokio::test]
async fn wrong_credentials_are_a_typed_permanent_error() {
    let server = RedisServer::builder()
        .password("S3cr3t-right")
        .start()
        .unwrap();
    for protocol in [Protocol::Resp3, Protocol::Resp2] {
        let err = Connection::connect(config(&server).password("wrong").protocol(protocol))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err:?}");
        assert!(err.is_permanent());
        assert!(!err.to_string().contains("wrong"), "{err}");
    }
    let err = Connection::connect(config(&server)).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "no password: {err:?}");
}

#[tokio::test]
async fn connection_errors_are_typed() {
    // Nothing listens on this port.
    let port = test_support::free_port().unwrap();
    let err = Connection::connect(ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", port)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let server = RedisServer::start().unwrap();
    let err = Connection::connect(config(&server).database(99999))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err:?}");
}

#[tokio::test]
async fn commands_that_need_their_own_connection_are_refused() {
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(config(&server)).await.unwrap();
    for cmd in [
        Cmd::new("SUBSCRIBE").arg("ch"),
        Cmd::new("WATCH").arg("k"),
        Cmd::new("MULTI"),
        Cmd::new("monitor"),
    ] {
        let err = conn.send(cmd).await.unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    }
    // The connection is still fine.
    assert!(conn.health_check().await.is_ok());
}

#[tokio::test]
async fn a_full_queue_fails_at_once_with_nothing_sent() {
    let server = RedisServer::start().unwrap();
    let conn = Arc::new(
        Connection::connect(
            config(&server)
                .queue_capacity(4)
                .response_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap(),
    );
    // A frozen server stops reading: once the socket buffers fill, the driver cannot write and
    // requests pile up in the queue until it is full.
    server.pause().unwrap();
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let conn = Arc::clone(&conn);
        tasks.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = conn
                .send(Cmd::new("SET").arg(format!("k{i}")).arg(vec![b'x'; 4096]))
                .await;
            (r, started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.resume().unwrap();
    let mut full = 0;
    for t in tasks {
        let (r, elapsed) = t.await.unwrap();
        if let Err(e @ Error::QueueFull { .. }) = &r {
            assert_eq!(e.sent(), Some(Sent::No));
            assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
            full += 1;
        }
    }
    assert!(full > 0, "the queue never filled");
}

#[tokio::test]
async fn a_unix_socket_works_like_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("redis.sock");
    let server = RedisServer::builder()
        .args([
            "--unixsocket",
            sock.to_str().unwrap(),
            "--unixsocketperm",
            "700",
        ])
        .start()
        .unwrap();
    let conn = Connection::connect(ConnectionConfig::new(ServerAddr::Unix(sock)))
        .await
        .unwrap();
    assert_eq!(
        conn.send(Cmd::new("PING")).await.unwrap(),
        Value::SimpleString("PONG".into())
    );
    drop(server);
}

#[tokio::test]
async fn a_pipeline_of_1000_commands_is_one_write_and_about_one_read_per_16_kib() {
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(config(&server).health_check_interval(None))
        .await
        .unwrap();
    let value = "v".repeat(100);
    conn.send(Cmd::new("SET").arg("k").arg(&value))
        .await
        .unwrap();
    let cmds: Vec<Cmd> = (0..1000).map(|_| Cmd::new("GET").arg("k")).collect();
    let before = conn.stats();
    let replies = conn.send_pipeline(&cmds).await.unwrap();
    let after = conn.stats();
    assert_eq!(replies.len(), 1000);
    assert!(replies.iter().all(|r| *r == bulk(&value)));
    assert_eq!(
        after.writes - before.writes,
        1,
        "a pipeline must go out in one write"
    );
    // 1000 replies of 107 bytes = 107 KB: 7 reads of 16 KiB at best. Allow for the kernel handing
    // over smaller pieces on a busy machine, but not for anything like a read per reply.
    let reads = after.reads - before.reads;
    assert!(
        (1..=40).contains(&reads),
        "{reads} reads for 107 KB of replies"
    );
}

#[tokio::test]
async fn a_slow_event_callback_never_stalls_io() {
    let server = RedisServer::start().unwrap();
    // A callback that blocks its thread for a long time on every event.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let conn = Connection::connect(config(&server).on_event(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(2));
    }))
    .await
    .unwrap();
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    // The connection is killed under the load: its disconnect and reconnect events reach the
    // slow callback while the commands run (SET is retry-safe, so none of them fails).
    server
        .admin()
        .unwrap()
        .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .unwrap();
    for i in 0..200 {
        conn.send(Cmd::new("SET").arg(format!("k{i}")).arg("v"))
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "commands waited for the callback: {:?}",
        started.elapsed()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while calls.load(std::sync::atomic::Ordering::SeqCst) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no event reached the callback during the load: the test proved nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(conn.stats().reconnects >= 1);
}

#[tokio::test]
async fn connecting_to_a_server_that_never_answers_times_out() {
    let server = RedisServer::start().unwrap();
    let proxy = test_support::FaultProxy::start(server.addr()).unwrap();
    proxy.set(test_support::Fault::Blackhole);
    let started = std::time::Instant::now();
    let err = Connection::connect(
        ConnectionConfig::new(ServerAddr::from(proxy.addr()))
            .connect_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::ConnectTimeout { .. }), "{err:?}");
    assert_eq!(
        err.sent(),
        Some(redis_conn::Sent::No),
        "a connect carries no command"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(800),
        "{took:?}"
    );
}
