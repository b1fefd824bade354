//! Pool oversubscription (RELIABILITY.md T8): 10x and 100x more tasks than connections, with the
//! process's file descriptors and the server's connections sampled throughout. Alone in its test
//! binary, so that no other test's descriptors are counted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_conn::pool::RedisManager;
use redis_conn::{Cmd, ConnectionConfig, ServerAddr};
use redis_pool::PoolConfig;
use test_support::RedisServer;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Samples the process's open descriptors every 10 ms until stopped; returns the maximum.
fn sample_fds(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(open_fds());
            std::thread::sleep(Duration::from_millis(10));
        }
        max
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversubscription_never_exceeds_the_pool_size() {
    let server = RedisServer::start().unwrap();
    let pool = RedisManager::exclusive(ConnectionConfig::new(ServerAddr::from(server.addr())))
        .into_pool(
            PoolConfig::default()
                .max_size(8)
                .acquire_timeout(Duration::from_secs(30)),
        );
    // Warm up the runtime's own descriptors before taking the baseline.
    drop(pool.get().await.unwrap());
    let baseline = open_fds() - 1;
    let mut max_clients = 0;
    for tasks in [80usize, 800] {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_fds(Arc::clone(&stop));
        let done = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        let per_task = 100_000 / tasks;
        for t in 0..tasks {
            let (pool, done) = (pool.clone(), Arc::clone(&done));
            handles.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let conn = pool.get().await.unwrap();
                    let token = format!("{t}-{i}");
                    let reply = conn.send(Cmd::new("ECHO").arg(&token)).await.unwrap();
                    assert_eq!(reply.as_bytes().map(|b| &b[..]), Some(token.as_bytes()));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let watcher = {
            let done = Arc::clone(&done);
            let total = per_task * tasks;
            let server_addr = server.addr();
            std::thread::spawn(move || {
                let mut admin = test_support::AdminConn::connect(server_addr).unwrap();
                let mut max = 0;
                while done.load(Ordering::Relaxed) < total {
                    let n = admin
                        .cmd_string(&["CLIENT", "LIST"])
                        .map(|l| l.lines().count())
                        .unwrap_or(0);
                    max = max.max(n);
                    std::thread::sleep(Duration::from_millis(20));
                }
                max
            })
        };
        for h in handles {
            h.await.unwrap();
        }
        max_clients = max_clients.max(watcher.join().unwrap());
        stop.store(true, Ordering::Relaxed);
        let max_fds = sampler.join().unwrap();
        assert!(
            max_fds <= baseline + 8 + 4,
            "{tasks} tasks: {max_fds} descriptors open, baseline {baseline}"
        );
        let status = pool.status();
        assert!(status.size <= 8 && status.in_use == 0, "{status:?}");
    }
    // The pool's 8 plus the watcher's own admin connection.
    assert!(max_clients <= 8 + 1, "{max_clients} server connections");
}
