//! `Node` against a real server: blocking commands on exclusive pooled connections, cancelled
//! waits, pool exhaustion, transactions, several shared connections.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_conn::{Cmd, ConnectionConfig, Error, Event, Node, NodeConfig, Sent, ServerAddr, Value};
use redis_pool::{PoolConfig, TimeoutPhase};
use test_support::RedisServer;

fn config(server: &RedisServer) -> ConnectionConfig {
    ConnectionConfig::new(ServerAddr::from(server.addr()))
}

fn bulk(s: &str) -> Value {
    Value::BulkString(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn client_count(server: &RedisServer) -> usize {
    server
        .admin()
        .and_then(|mut a| a.cmd_string(&["CLIENT", "LIST"]))
        .map(|list| list.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_command_waits_on_its_own_connection_and_holds_nobody_up() {
    let server = RedisServer::start().unwrap();
    let node = Node::connect(config(&server).into()).await.unwrap();
    let waiter = {
        let node = node.clone();
        tokio::spawn(async move { node.send(Cmd::new("BLPOP").arg("jobs").arg_int(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Ordinary commands keep flowing on the shared connection while BLPOP waits.
    let started = Instant::now();
    for i in 0..200 {
        node.send(Cmd::new("SET").arg(format!("k{i}")).arg("v"))
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ordinary commands waited behind BLPOP: {:?}",
        started.elapsed()
    );
    assert_eq!(node.pool_status().map(|s| s.in_use), Some(1));
    // The shared connection, the exclusive one, and the admin connection counting.
    assert_eq!(client_count(&server), 3);
    node.send(Cmd::new("RPUSH").arg("jobs").arg("j1"))
        .await
        .unwrap();
    let popped = waiter.await.unwrap().unwrap();
    assert_eq!(popped, Value::Array(vec![bulk("jobs"), bulk("j1")]));
    // The exclusive connection went back to the pool, clean.
    let deadline = Instant::now() + Duration::from_secs(2);
    while node.pool_status().map(|s| s.idle) != Some(1) {
        assert!(Instant::now() < deadline, "{:?}", node.pool_status());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_call_dropped_mid_wait_closes_its_connection_and_steals_nothing() {
    let server = RedisServer::start().unwrap();
    let node = Node::connect(config(&server).into()).await.unwrap();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        node.send(Cmd::new("BLPOP").arg("q").arg_int(0)),
    )
    .await;
    assert!(gave_up.is_err(), "BLPOP on an empty list returned");
    // The abandoned connection is closed, not returned: the server sees it go.
    let deadline = Instant::now() + Duration::from_secs(2);
    while client_count(&server) != 2 {
        assert!(
            Instant::now() < deadline,
            "{} clients",
            client_count(&server)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        node.pool_status().map(|s| s.size),
        Some(0),
        "{:?}",
        node.pool_status()
    );
    // So nothing pushed now is popped by the abandoned BLPOP.
    node.send(Cmd::new("RPUSH").arg("q").arg("x"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        node.send(Cmd::new("LLEN").arg("q")).await.unwrap(),
        Value::Integer(1)
    );
    let popped = node
        .send(Cmd::new("BLPOP").arg("q").arg_int(1))
        .await
        .unwrap();
    assert_eq!(popped, Value::Array(vec![bulk("q"), bulk("x")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_a_typed_unsent_error_and_an_event() {
    let server = RedisServer::start().unwrap();
    let exhausted: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen = Arc::clone(&exhausted);
    let node_config = NodeConfig::new(config(&server).on_event(move |e| {
        if let Event::PoolExhausted { waiting, .. } = e {
            seen.lock().unwrap().push(*waiting);
        }
    }))
    .pool(
        PoolConfig::default()
            .max_size(1)
            .acquire_timeout(Duration::from_millis(200)),
    );
    let node = Node::connect(node_config).await.unwrap();
    let holder = {
        let node = node.clone();
        tokio::spawn(async move { node.send(Cmd::new("BLPOP").arg("none").arg_int(2)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let err = node
        .send(Cmd::new("BRPOP").arg("none").arg_int(1))
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &err {
        Error::PoolTimeout { phase, timeout, .. } => {
            assert_eq!(*phase, TimeoutPhase::Wait);
            assert_eq!(*timeout, Duration::from_millis(200));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.sent(), Some(Sent::No));
    assert!(err.is_timeout());
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(700),
        "{took:?}"
    );
    assert!(err.to_string().contains("not sent"), "{err}");
    // The shared connection is not part of the pool: ordinary commands are unaffected.
    node.send(Cmd::new("PING")).await.unwrap();
    assert_eq!(holder.await.unwrap().unwrap(), Value::Null);
    let deadline = Instant::now() + Duration::from_secs(2);
    while exhausted.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no pool_exhausted event");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(exhausted.lock().unwrap()[0], 1);
}

#[tokio::test]
async fn transactions_run_as_one_unit_and_report_refusals_and_watch_aborts() {
    let server = RedisServer::start().unwrap();
    let node = Node::connect(config(&server).into()).await.unwrap();
    let results = node
        .send_transaction(&[
            Cmd::new("SET").arg("a").arg("1"),
            Cmd::new("INCR").arg("a"),
            Cmd::new("LPUSH").arg("a").arg("x"),
            Cmd::new("GET").arg("a"),
        ])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[1], Value::Integer(2));
    assert!(
        matches!(&results[2], Value::Error(e) if e.starts_with(b"WRONGTYPE")),
        "{results:?}"
    );
    assert_eq!(results[3], bulk("2"));

    // A command refused while queueing aborts everything, and the error says which.
    let err = node
        .send_transaction(&[
            Cmd::new("SET").arg("b").arg("1"),
            Cmd::new("GET"), // wrong number of arguments
        ])
        .await
        .unwrap_err();
    let server_error = err.server_error().expect("a server error").clone();
    assert_eq!(server_error.code(), "EXECABORT");
    assert!(server_error.message().contains("wrong number"), "{err}");
    assert_eq!(
        node.send(Cmd::new("EXISTS").arg("b")).await.unwrap(),
        Value::Integer(0)
    );

    // WATCH on an exclusive lease: a change by someone else makes EXEC return nothing.
    let lease = node.lease().await.unwrap();
    lease.send(Cmd::new("WATCH").arg("a")).await.unwrap();
    server.cmd(&["SET", "a", "changed"]).unwrap();
    let aborted = lease
        .send_transaction(&[Cmd::new("SET").arg("a").arg("mine")])
        .await
        .unwrap();
    assert_eq!(aborted, None);
    assert_eq!(
        node.send(Cmd::new("GET").arg("a")).await.unwrap(),
        bulk("changed")
    );
    // Unchanged, it commits.
    lease.send(Cmd::new("WATCH").arg("a")).await.unwrap();
    let done = lease
        .send_transaction(&[Cmd::new("SET").arg("a").arg("mine")])
        .await
        .unwrap();
    assert_eq!(done, Some(vec![Value::SimpleString("OK".into())]));
}

#[tokio::test]
async fn commands_are_spread_over_the_shared_connections_in_turn() {
    let server = RedisServer::start().unwrap();
    let node = Node::connect(NodeConfig::new(config(&server)).shared_connections(3))
        .await
        .unwrap();
    assert_eq!(client_count(&server), 4);
    for i in 0..300 {
        node.send(Cmd::new("SET").arg(format!("k{i}")).arg("v"))
            .await
            .unwrap();
    }
    assert_eq!(node.stats().requests, 300);
    let list = server
        .admin()
        .unwrap()
        .cmd_string(&["CLIENT", "LIST"])
        .unwrap();
    // Each shared connection carried about a third (cmd=set on each of them).
    let setters = list.lines().filter(|l| l.contains("cmd=set")).count();
    assert_eq!(setters, 3, "{list}");
    node.close();
    assert!(node.is_closed());
    assert!(matches!(
        node.send(Cmd::new("PING")).await,
        Err(Error::Closed { .. })
    ));
}

fn replicas_of(master: &RedisServer, n: usize) -> Vec<RedisServer> {
    let port = master.port().to_string();
    (0..n)
        .map(|_| {
            RedisServer::builder()
                .args(["--replicaof", "127.0.0.1", port.as_str()])
                .start()
                .unwrap()
        })
        .collect()
}

fn waited(reply: Result<Value, Error>) -> i64 {
    match reply {
        Ok(Value::Integer(n)) => n,
        other => panic!("WAIT answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_counts_the_replicas_that_have_the_callers_own_writes() {
    let master = RedisServer::start().unwrap();
    let replicas = replicas_of(&master, 2);
    let wait = |ms: i64| Cmd::new("WAIT").arg_int(2).arg_int(ms);
    for shared in [1, 2] {
        let node = Node::connect(NodeConfig::new(config(&master)).shared_connections(shared))
            .await
            .unwrap();
        // Both replicas linked and caught up.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            node.send(Cmd::new("SET").arg("k").arg("v")).await.unwrap();
            if waited(node.send(wait(500)).await) == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the replicas never caught up");
        }
        // The node's pool keeps an exclusive connection from before the write, whose own writes
        // (none) the replicas have: where WAIT ran when it was taken for a blocking command.
        let lease = node.lease().await.unwrap();
        while waited(lease.send(wait(500)).await) < 2 {
            assert!(Instant::now() < deadline, "the replicas never caught up");
        }
        drop(lease);
        for replica in &replicas {
            replica.pause().unwrap();
        }
        // A write the replicas cannot acknowledge, then WAIT as a separate call: it must count
        // this write, on the connection that carried it (on the pooled one it would answer 2
        // at once: none of its own writes is missing).
        node.send(Cmd::new("SET").arg("k").arg("unacknowledged"))
            .await
            .unwrap();
        let started = Instant::now();
        assert_eq!(waited(node.send(wait(300)).await), 0, "{shared} shared");
        assert!(started.elapsed() >= Duration::from_millis(250));
        // Without a timeout it would hold the shared connection forever: refused.
        let forever = node.send(Cmd::new("WAIT").arg_int(1).arg_int(0)).await;
        assert!(matches!(forever, Err(Error::Unsupported(_))), "{forever:?}");
        for replica in &replicas {
            replica.resume().unwrap();
        }
        assert_eq!(waited(node.send(wait(5_000)).await), 2);
        node.close();
    }
}
