//! The Redis manager with `redis-pool` against a real server (RELIABILITY.md T8): bounded file
//! descriptors and server connections under oversubscription, killed idle connections, a stalled
//! server, cancelled acquisitions, an outage, WATCH hygiene.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_conn::pool::{RedisManager, RedisPool};
use redis_conn::{Cmd, ConnectionConfig, ServerAddr, Value};
use redis_pool::{PoolConfig, PoolError, TimeoutPhase};
use test_support::RedisServer;

fn exclusive_pool(server: &RedisServer, config: PoolConfig) -> RedisPool {
    RedisManager::exclusive(ConnectionConfig::new(ServerAddr::from(server.addr())))
        .into_pool(config)
}

fn client_count(server: &RedisServer) -> usize {
    server
        .admin()
        .and_then(|mut a| a.cmd_string(&["CLIENT", "LIST"]))
        .map(|list| list.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn killed_idle_connections_are_never_handed_out() {
    let server = RedisServer::start().unwrap();
    let pool = exclusive_pool(&server, PoolConfig::default().max_size(8));
    let leases: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(pool.get().await.unwrap());
        }
        v
    };
    drop(leases);
    // Returned exclusive connections are recycled (UNWATCH) in the background first.
    let deadline = Instant::now() + Duration::from_secs(2);
    while pool.status().idle < 8 {
        assert!(Instant::now() < deadline, "{:?}", pool.status());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server
        .admin()
        .unwrap()
        .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .unwrap();
    let mut errors = Vec::new();
    for i in 0..100 {
        let conn = pool.get().await.unwrap();
        if let Err(e) = conn
            .send(Cmd::new("SET").arg(format!("k{i}")).arg("v"))
            .await
        {
            errors.push(e);
        }
    }
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        errors.first()
    );
}

#[tokio::test]
async fn waiters_on_a_stalled_server_time_out_at_the_configured_value() {
    let server = RedisServer::start().unwrap();
    let pool = exclusive_pool(
        &server,
        PoolConfig::default()
            .max_size(2)
            .acquire_timeout(Duration::from_millis(200)),
    );
    // Both connections are taken (created first: DEBUG SLEEP stalls the whole server), then
    // busy with a command the server sits on for 2 s.
    let leases = [pool.get().await.unwrap(), pool.get().await.unwrap()];
    let mut sleepers = Vec::new();
    for conn in leases {
        sleepers.push(tokio::spawn(async move {
            let _ = conn.send(Cmd::new("DEBUG").arg("SLEEP").arg("2")).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut waiters = Vec::new();
    for _ in 0..10 {
        let pool = pool.clone();
        waiters.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = pool.get().await.map(|_| ());
            (r, started.elapsed())
        }));
    }
    for w in waiters {
        let (r, took) = w.await.unwrap();
        assert!(
            matches!(
                r,
                Err(PoolError::Timeout {
                    phase: TimeoutPhase::Wait,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(
            took >= Duration::from_millis(190) && took <= Duration::from_millis(400),
            "timed out after {took:?}"
        );
    }
    for s in sleepers {
        s.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_cancelled_acquisitions_leak_no_connection() {
    let server = RedisServer::start().unwrap();
    let pool = exclusive_pool(&server, PoolConfig::default().max_size(8));
    let mut tasks = Vec::new();
    for i in 0..10_000u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let fut = async {
                let conn = pool.get().await?;
                let _ = conn.send(Cmd::new("ECHO").arg(i.to_string())).await;
                Ok::<_, PoolError<redis_conn::Error>>(())
            };
            let _ = tokio::time::timeout(Duration::from_micros(i % 2000), fut).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = pool.status();
    assert!(status.size <= 8 && status.in_use == 0, "{status:?}");
    assert!(client_count(&server) <= 8 + 1);
    // Every connection left answers its own requests.
    for i in 0..100 {
        let conn = pool.get().await.unwrap();
        let token = format!("after-{i}");
        let reply = conn.send(Cmd::new("ECHO").arg(&token)).await.unwrap();
        assert_eq!(reply.as_bytes().map(|b| &b[..]), Some(token.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_dials_never_exceed_the_pool_size() {
    let mut server = RedisServer::start().unwrap();
    let pool = exclusive_pool(
        &server,
        PoolConfig::default()
            .max_size(4)
            .acquire_timeout(Duration::from_millis(300)),
    );
    drop(pool.get().await.unwrap());
    server.kill9();
    let stop = Arc::new(AtomicBool::new(false));
    let max_size = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (pool, stop, max_size) = (pool.clone(), Arc::clone(&stop), Arc::clone(&max_size));
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            while !stop.load(Ordering::Relaxed) {
                max_size.fetch_max(pool.status().size, Ordering::Relaxed);
                if pool.get().await.is_err() {
                    errors += 1;
                }
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap();
    }
    assert!(errors > 0);
    assert!(max_size.load(Ordering::Relaxed) <= 4);
    server.restart().unwrap();
    let conn = pool.get().await.unwrap();
    assert!(conn.health_check().await.is_ok());
}

#[tokio::test]
async fn a_watch_left_behind_never_reaches_the_next_user() {
    let server = RedisServer::start().unwrap();
    let pool = exclusive_pool(&server, PoolConfig::default().max_size(1));
    {
        let conn = pool.get().await.unwrap();
        conn.send(Cmd::new("WATCH").arg("balance")).await.unwrap();
        // Dropped with the WATCH still set.
    }
    // Someone else changes the key.
    server.cmd(&["SET", "balance", "100"]).unwrap();
    // Give the background recycle (UNWATCH) its round trip.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let conn = pool.get().await.unwrap();
    conn.send(Cmd::new("MULTI")).await.unwrap();
    conn.send(Cmd::new("INCR").arg("balance")).await.unwrap();
    let exec = conn.send(Cmd::new("EXEC")).await.unwrap();
    assert_eq!(
        exec,
        Value::Array(vec![Value::Integer(101)]),
        "the previous user's WATCH aborted this transaction"
    );
    // On a shared (multiplexed) connection the same commands are refused.
    let shared = RedisManager::shared(ConnectionConfig::new(ServerAddr::from(server.addr())))
        .into_pool(PoolConfig::default().max_size(1));
    let conn = shared.get().await.unwrap();
    assert!(conn.send(Cmd::new("WATCH").arg("balance")).await.is_err());
}
