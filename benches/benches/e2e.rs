//! End-to-end throughput against one local redis-server: this client, redis-rs (multiplexed
//! connection, behind `--features peers`) and redis-benchmark, alternated in rounds within one run.
//!
//! ```text
//! cargo bench -p benches --bench e2e --features peers
//! ```
//!
//! | workload | shape |
//! |---|---|
//! | B1 | one task, sequential GET, 100-byte value (`redis-benchmark -c 1`) |
//! | B2 | 50 tasks sharing one connection, GET (`redis-benchmark -c 1 -P 50`) |
//! | B3 | pipelines of 100 SET on one connection (`redis-benchmark -c 1 -P 100`) |
//!
//! Under `cargo test --benches` it runs a tiny smoke version, so that it keeps working.

use std::process::Command;
use std::time::{Duration, Instant};

use benches::{median, process_cpu, ratio};
use redis_conn::{Cmd, Connection, ConnectionConfig, ServerAddr};
use test_support::RedisServer;

#[derive(Clone, Copy)]
struct Sizes {
    b1: usize,
    b2: usize,
    b3: usize,
    rounds: usize,
}

const FULL: Sizes = Sizes {
    b1: 30_000,
    b2: 300_000,
    b3: 500_000,
    rounds: 5,
};
const SMOKE: Sizes = Sizes {
    b1: 200,
    b2: 1_000,
    b3: 1_000,
    rounds: 1,
};

const TASKS: usize = 50;
const PIPELINE: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    B1,
    B2,
    B3,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::B1 => "B1 sequential GET",
            Workload::B2 => "B2 50 tasks, 1 conn, GET",
            Workload::B3 => "B3 pipelines of 100 SET",
        }
    }

    fn ops(self, s: Sizes) -> usize {
        match self {
            Workload::B1 => s.b1,
            Workload::B2 => s.b2,
            Workload::B3 => s.b3,
        }
    }
}

async fn ours(addr: std::net::SocketAddr, w: Workload, ops: usize) -> f64 {
    let conn = Connection::connect(
        ConnectionConfig::new(ServerAddr::from(addr)).response_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect");
    let started = Instant::now();
    match w {
        Workload::B1 => {
            for _ in 0..ops {
                conn.send(Cmd::new("GET").arg("bench:key"))
                    .await
                    .expect("GET");
            }
        }
        Workload::B2 => {
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let conn = conn.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..ops / TASKS {
                        conn.send(Cmd::new("GET").arg("bench:key"))
                            .await
                            .expect("GET");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        }
        Workload::B3 => {
            let value = vec![b'v'; 100];
            for _ in 0..ops / PIPELINE {
                let cmds: Vec<Cmd> = (0..PIPELINE)
                    .map(|_| Cmd::new("SET").arg("bench:set").arg(&value))
                    .collect();
                conn.send_pipeline(&cmds).await.expect("pipeline");
            }
        }
    }
    let rate = ops as f64 / started.elapsed().as_secs_f64();
    if std::env::var_os("E2E_VERBOSE").is_some() {
        let stats = conn.stats();
        eprintln!(
            "  {}: {} requests, {} writes, {} reads",
            w.name(),
            stats.requests,
            stats.writes,
            stats.reads
        );
    }
    rate
}

#[cfg(feature = "peers")]
async fn redis_rs(addr: std::net::SocketAddr, w: Workload, ops: usize) -> f64 {
    let client = redis::Client::open(format!("redis://{addr}")).expect("client");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let started = Instant::now();
    match w {
        Workload::B1 => {
            let mut c = conn.clone();
            for _ in 0..ops {
                let _: Option<Vec<u8>> = redis::cmd("GET")
                    .arg("bench:key")
                    .query_async(&mut c)
                    .await
                    .expect("GET");
            }
        }
        Workload::B2 => {
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let mut c = conn.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..ops / TASKS {
                        let _: Option<Vec<u8>> = redis::cmd("GET")
                            .arg("bench:key")
                            .query_async(&mut c)
                            .await
                            .expect("GET");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        }
        Workload::B3 => {
            let value = [b'v'; 100];
            let mut c = conn.clone();
            for _ in 0..ops / PIPELINE {
                let mut pipe = redis::pipe();
                for _ in 0..PIPELINE {
                    pipe.cmd("SET").arg("bench:set").arg(&value[..]).ignore();
                }
                let _: () = pipe.query_async(&mut c).await.expect("pipeline");
            }
        }
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

fn redis_benchmark(port: u16, w: Workload, ops: usize) -> Option<f64> {
    let (test, pipeline) = match w {
        Workload::B1 => ("get", 1),
        Workload::B2 => ("get", 50),
        Workload::B3 => ("set", 100),
    };
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "1",
            "-d",
            "100",
        ])
        .args([
            "-n",
            &ops.to_string(),
            "-P",
            &pipeline.to_string(),
            "-t",
            test,
            "--csv",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps",... then "GET","29154.52",...
    text.lines()
        .find(|l| !l.starts_with("\"test\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    let server = RedisServer::start().expect("redis-server");
    let addr = server.addr();
    server
        .cmd(&["SET", "bench:key", &"v".repeat(100)])
        .expect("SET");
    // E2E_RUNTIME=current-thread measures on a single-threaded runtime (no cross-thread wake-ups);
    // the default is a 2-worker multi-thread runtime, what most services run.
    let runtime = match std::env::var("E2E_RUNTIME").as_deref() {
        Ok("current-thread") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    }
    .expect("runtime");
    let has_redis_benchmark = redis_benchmark(server.port(), Workload::B1, 10).is_some();
    println!(
        "{:<28} {:>14} {:>14} {:>14} {:>10} {:>10} {:>9} {:>9}",
        "workload", "resp-conn", "redis-rs", "redis-bench", "vs rs", "vs r-b", "us/op", "rs us/op"
    );
    // E2E_ONLY=B2 runs one workload; E2E_OURS_ONLY=1 skips the others (for profiling).
    let only = std::env::var("E2E_ONLY").ok();
    let ours_only = std::env::var_os("E2E_OURS_ONLY").is_some();
    for w in [Workload::B1, Workload::B2, Workload::B3] {
        if only.as_deref().is_some_and(|o| !w.name().starts_with(o)) {
            continue;
        }
        let ops = w.ops(sizes);
        #[allow(unused_mut)]
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        #[allow(unused_mut)]
        let (mut cpu_a, mut cpu_b) = (Vec::new(), Vec::new());
        let cpu_per_op = |before: Duration| {
            (process_cpu().saturating_sub(before)).as_secs_f64() * 1e6 / ops as f64
        };
        for _ in 0..sizes.rounds {
            let before = process_cpu();
            a.push(runtime.block_on(ours(addr, w, ops)));
            cpu_a.push(cpu_per_op(before));
            if ours_only {
                continue;
            }
            #[cfg(feature = "peers")]
            {
                let before = process_cpu();
                b.push(runtime.block_on(redis_rs(addr, w, ops)));
                cpu_b.push(cpu_per_op(before));
            }
            if has_redis_benchmark {
                if let Some(r) = redis_benchmark(server.port(), w, ops) {
                    c.push(r);
                }
            }
        }
        let (a, b, c) = (median(a), median(b), median(c));
        let (cpu_a, cpu_b) = (median(cpu_a), median(cpu_b));
        println!(
            "{:<28} {:>14.0} {:>14.0} {:>14.0} {:>10} {:>10} {:>9.2} {:>9.2}",
            w.name(),
            a,
            b,
            c,
            ratio(a, b),
            ratio(a, c),
            cpu_a,
            cpu_b
        );
    }
    println!(
        "(ops/s, median of {} rounds, contenders alternated; this process and redis-server share \
         the machine's cores; us/op: client CPU time per operation, user + system)",
        sizes.rounds
    );
}
