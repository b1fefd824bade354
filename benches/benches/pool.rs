//! Pool benchmark: checkout + PING + return with 1, 16 and 256 concurrent tasks, for redis-pool
//! and, behind `--features peers`, bb8 and deadpool holding the same exclusive connections.
//!
//! ```text
//! cargo bench -p benches --bench pool --features peers
//! ```
//!
//! Each pool runs as its Redis adapter usually does: redis-pool checks a connection only when it
//! has been idle a while and sends UNWATCH in the background on return; bb8 (as bb8-redis) pings
//! on every checkout; deadpool (as deadpool-redis) pings on every recycle, that is on checkout.

use std::time::{Duration, Instant};

use benches::{median, ratio};
use redis_conn::pool::RedisManager;
use redis_conn::{Cmd, ConnectionConfig, ServerAddr};
use redis_pool::PoolConfig;
use test_support::RedisServer;

const POOL_SIZE: usize = 16;

fn config(addr: std::net::SocketAddr) -> ConnectionConfig {
    ConnectionConfig::new(ServerAddr::from(addr))
        .exclusive(true)
        .reconnect(false)
}

/// Runs `ops` checkout + PING + return cycles over `tasks` tasks; returns ops/s.
async fn drive<F, Fut>(tasks: usize, ops: usize, one: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let one = one.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..ops / tasks {
                one().await;
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

async fn ours(addr: std::net::SocketAddr, tasks: usize, ops: usize) -> f64 {
    let pool = RedisManager::exclusive(config(addr)).into_pool(
        PoolConfig::default()
            .max_size(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30)),
    );
    drive(tasks, ops, move || {
        let pool = pool.clone();
        async move {
            let conn = pool.get().await.expect("checkout");
            conn.send(Cmd::new("PING")).await.expect("PING");
        }
    })
    .await
}

#[cfg(feature = "peers")]
mod peers {
    use super::*;
    use redis_conn::Connection;

    pub(crate) struct Bb8(pub(crate) ConnectionConfig);

    impl bb8::ManageConnection for Bb8 {
        type Connection = Connection;
        type Error = redis_conn::Error;

        async fn connect(&self) -> Result<Connection, redis_conn::Error> {
            Connection::connect(self.0.clone()).await
        }

        async fn is_valid(&self, conn: &mut Connection) -> Result<(), redis_conn::Error> {
            conn.health_check().await.map(|_| ())
        }

        fn has_broken(&self, conn: &mut Connection) -> bool {
            conn.is_broken()
        }
    }

    pub(crate) struct Deadpool(pub(crate) ConnectionConfig);

    impl deadpool::managed::Manager for Deadpool {
        type Type = Connection;
        type Error = redis_conn::Error;

        async fn create(&self) -> Result<Connection, redis_conn::Error> {
            Connection::connect(self.0.clone()).await
        }

        async fn recycle(
            &self,
            conn: &mut Connection,
            _: &deadpool::managed::Metrics,
        ) -> deadpool::managed::RecycleResult<redis_conn::Error> {
            conn.health_check()
                .await
                .map(|_| ())
                .map_err(deadpool::managed::RecycleError::Backend)
        }
    }

    pub(crate) async fn bb8(addr: std::net::SocketAddr, tasks: usize, ops: usize) -> f64 {
        let pool = bb8::Pool::builder()
            .max_size(POOL_SIZE as u32)
            .connection_timeout(Duration::from_secs(30))
            .build(Bb8(config(addr)))
            .await
            .expect("bb8");
        drive(tasks, ops, move || {
            let pool = pool.clone();
            async move {
                let conn = pool.get().await.expect("checkout");
                conn.send(Cmd::new("PING")).await.expect("PING");
            }
        })
        .await
    }

    pub(crate) async fn deadpool(addr: std::net::SocketAddr, tasks: usize, ops: usize) -> f64 {
        let pool: deadpool::managed::Pool<Deadpool> =
            deadpool::managed::Pool::builder(Deadpool(config(addr)))
                .max_size(POOL_SIZE)
                .build()
                .expect("deadpool");
        drive(tasks, ops, move || {
            let pool = pool.clone();
            async move {
                let conn = pool.get().await.expect("checkout");
                conn.send(Cmd::new("PING")).await.expect("PING");
            }
        })
        .await
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (ops, rounds) = if full { (20_000, 3) } else { (512, 1) };
    let server = RedisServer::start().expect("redis-server");
    let addr = server.addr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>9} {:>9}",
        "tasks", "redis-pool", "bb8", "deadpool", "vs bb8", "vs dp"
    );
    for tasks in [1usize, 16, 256] {
        #[allow(unused_mut)]
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(runtime.block_on(ours(addr, tasks, ops)));
            #[cfg(feature = "peers")]
            {
                b.push(runtime.block_on(peers::bb8(addr, tasks, ops)));
                c.push(runtime.block_on(peers::deadpool(addr, tasks, ops)));
            }
        }
        let (a, b, c) = (median(a), median(b), median(c));
        println!(
            "{:<10} {:>14.0} {:>14.0} {:>14.0} {:>9} {:>9}",
            tasks,
            a,
            b,
            c,
            ratio(a, b),
            ratio(a, c)
        );
    }
    println!(
        "(checkout + PING + return per second, pool of {POOL_SIZE}, median of {rounds} rounds)"
    );
}
