//! End-to-end throughput against one local redis-server: this client (through the facade,
//! `redis-client`, as applications use it), redis-rs's multiplexed connection and fred (behind
//! `--features peers`), and redis-benchmark, alternated in rounds within one run. Allocations
//! are counted by a counting global allocator.
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
//! | B4 | one task, sequential MGET of 100 keys, in keys/s (`redis-benchmark -c 1 MGET ...`) |
//!
//! Each run is a task of a 2-worker runtime, as application code is. `E2E_RUNTIME=current-thread`
//! measures on a single-threaded runtime, `E2E_ON_MAIN=1` runs on the thread that blocks on the
//! runtime (the 50 tasks of B2 are then spawned from outside it), `E2E_ONLY=B2` runs one
//! workload, `E2E_OURS_ONLY=1` only this client and `E2E_OPS=N` sets the requests per run, `E2E_ROUNDS=N` the rounds, `E2E_SPIN_US=N` this client's `spin_wait` (for
//! profiling: instruction counts per request are the difference of two runs' counts under
//! `valgrind --tool=callgrind`, divided by the difference of their `E2E_OPS`). Under `cargo test --benches` it
//! runs a tiny smoke version, so that it keeps working.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use benches::{median, process_cpu, ratio};
use redis_client::prelude::*;
use redis_client::Bytes;
use test_support::RedisServer;

/// Counts allocations, to report them per operation.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Sizes {
    b1: usize,
    b2: usize,
    b3: usize,
    b4: usize,
    rounds: usize,
}

const FULL: Sizes = Sizes {
    b1: 30_000,
    b2: 300_000,
    b3: 500_000,
    b4: 10_000,
    rounds: 5,
};
const SMOKE: Sizes = Sizes {
    b1: 200,
    b2: 1_000,
    b3: 1_000,
    b4: 20,
    rounds: 1,
};

const TASKS: usize = 50;
const PIPELINE: usize = 100;
const MGET_KEYS: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    B1,
    B2,
    B3,
    B4,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::B1 => "B1 sequential GET",
            Workload::B2 => "B2 50 tasks, 1 conn, GET",
            Workload::B3 => "B3 pipelines of 100 SET",
            Workload::B4 => "B4 MGET 100 keys (keys/s)",
        }
    }

    /// Requests made (MGETs for B4).
    fn ops(self, s: Sizes) -> usize {
        match self {
            Workload::B1 => s.b1,
            Workload::B2 => s.b2,
            Workload::B3 => s.b3,
            Workload::B4 => s.b4,
        }
    }

    /// What a request counts as in the reported rate (keys for B4).
    fn weight(self) -> usize {
        if self == Workload::B4 {
            MGET_KEYS
        } else {
            1
        }
    }
}

fn mget_keys() -> Vec<String> {
    (0..MGET_KEYS).map(|i| format!("bench:mget:{i}")).collect()
}

async fn ours(addr: std::net::SocketAddr, w: Workload, ops: usize) -> f64 {
    let mut config = Config::standalone(&addr.to_string())
        .expect("address")
        .response_timeout(Duration::from_secs(30));
    if let Some(us) = std::env::var("E2E_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config = config.spin_wait(Duration::from_micros(us));
    }
    let client = Client::connect(config).await.expect("connect");
    let keys = mget_keys();
    let started = Instant::now();
    match w {
        Workload::B1 => {
            for _ in 0..ops {
                let _: Option<Bytes> = client.get("bench:key").await.expect("GET");
            }
        }
        Workload::B2 => {
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let client = client.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..ops / TASKS {
                        let _: Option<Bytes> = client.get("bench:key").await.expect("GET");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        }
        Workload::B3 => {
            let value = [b'v'; 100];
            for _ in 0..ops / PIPELINE {
                let mut p = client.pipeline();
                for _ in 0..PIPELINE {
                    p.set("bench:set", &value[..]).ignore();
                }
                p.exec().await.expect("pipeline");
            }
        }
        Workload::B4 => {
            for _ in 0..ops {
                let _: Vec<Option<Bytes>> = client.mget(&keys).await.expect("MGET");
            }
        }
    }
    let rate = (ops * w.weight()) as f64 / started.elapsed().as_secs_f64();
    let stats = client.stats();
    BATCHING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(stats.commands as f64 / stats.writes.max(1) as f64);
    rate
}

/// This client's requests per socket write in each run (how well callers were batched).
static BATCHING: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

#[cfg(feature = "peers")]
async fn redis_rs(addr: std::net::SocketAddr, w: Workload, ops: usize) -> f64 {
    let client = redis::Client::open(format!("redis://{addr}")).expect("client");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys = mget_keys();
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
        Workload::B4 => {
            let mut c = conn.clone();
            for _ in 0..ops {
                let _: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut c)
                    .await
                    .expect("MGET");
            }
        }
    }
    (ops * w.weight()) as f64 / started.elapsed().as_secs_f64()
}

#[cfg(feature = "peers")]
async fn fred(addr: std::net::SocketAddr, w: Workload, ops: usize) -> f64 {
    use fred::prelude::{ClientLike, KeysInterface};

    let config = fred::prelude::Config::from_url(&format!("redis://{addr}")).expect("config");
    let client = fred::prelude::Builder::from_config(config)
        .build()
        .expect("client");
    client.init().await.expect("connect");
    let keys = mget_keys();
    let started = Instant::now();
    match w {
        Workload::B1 => {
            for _ in 0..ops {
                let _: Option<Vec<u8>> = client.get("bench:key").await.expect("GET");
            }
        }
        Workload::B2 => {
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let client = client.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..ops / TASKS {
                        let _: Option<Vec<u8>> = client.get("bench:key").await.expect("GET");
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
                let pipe = client.pipeline();
                for _ in 0..PIPELINE {
                    let _: () = pipe
                        .set("bench:set", value.as_slice(), None, None, false)
                        .await
                        .expect("queue");
                }
                let _: Vec<fred::prelude::Value> = pipe.all().await.expect("pipeline");
            }
        }
        Workload::B4 => {
            for _ in 0..ops {
                let _: Vec<Option<Vec<u8>>> = client.mget(keys.clone()).await.expect("MGET");
            }
        }
    }
    let rate = (ops * w.weight()) as f64 / started.elapsed().as_secs_f64();
    let _ = client.quit().await;
    rate
}

fn redis_benchmark(port: u16, w: Workload, ops: usize) -> Option<f64> {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-c",
        "1",
        "-d",
        "100",
    ])
    .args(["-n", &ops.to_string(), "--csv"]);
    match w {
        Workload::B1 => cmd.args(["-P", "1", "-t", "get"]),
        Workload::B2 => cmd.args(["-P", "50", "-t", "get"]),
        Workload::B3 => cmd.args(["-P", "100", "-t", "set"]),
        Workload::B4 => cmd.arg("MGET").args(mget_keys()),
    };
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps",... then "GET","29154.52",...
    text.lines()
        .find(|l| !l.starts_with("\"test\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
        .map(|rps| rps * w.weight() as f64)
}

/// One contender's figures for a workload: rate, client CPU per request, allocations per
/// request.
#[derive(Default)]
struct Figures {
    rate: Vec<f64>,
    cpu: Vec<f64>,
    allocs: Vec<f64>,
}

impl Figures {
    /// Runs `run` as a task of the runtime (where application code runs, not on the thread
    /// that blocks on the runtime), and records its figures.
    fn measure<F: std::future::Future<Output = f64> + Send + 'static>(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        requests: usize,
        run: F,
    ) {
        let cpu = process_cpu();
        let allocs = ALLOCATIONS.load(Ordering::Relaxed);
        self.rate
            .push(if std::env::var_os("E2E_ON_MAIN").is_some() {
                runtime.block_on(run)
            } else {
                runtime
                    .block_on(runtime.spawn(run))
                    .expect("the run panicked")
            });
        let per = |x: f64| x / requests as f64;
        self.cpu
            .push(per(process_cpu().saturating_sub(cpu).as_secs_f64() * 1e6));
        self.allocs
            .push(per((ALLOCATIONS.load(Ordering::Relaxed) - allocs) as f64));
    }

    fn medians(self) -> (f64, f64, f64) {
        (median(self.rate), median(self.cpu), median(self.allocs))
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mut sizes = if full { FULL } else { SMOKE };
    if let Some(rounds) = std::env::var("E2E_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        sizes.rounds = rounds;
    }
    let server = RedisServer::start().expect("redis-server");
    let addr = server.addr();
    server
        .cmd(&["SET", "bench:key", &"v".repeat(100)])
        .expect("SET");
    for key in mget_keys() {
        server
            .cmd(&["SET", key.as_str(), &"v".repeat(100)])
            .expect("SET");
    }
    // The default is a 2-worker multi-thread runtime, what most services run.
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
        "{:<27} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "workload",
        "ours",
        "redis-rs",
        "fred",
        "redis-b",
        "vs rs",
        "vs fred",
        "vs r-b",
        "us/req",
        "rs",
        "fred",
        "allocs",
        "rs",
        "call/wr"
    );
    let only = std::env::var("E2E_ONLY").ok();
    let ours_only = std::env::var_os("E2E_OURS_ONLY").is_some();
    for w in [Workload::B1, Workload::B2, Workload::B3, Workload::B4] {
        if only.as_deref().is_some_and(|o| !w.name().starts_with(o)) {
            continue;
        }
        let ops = std::env::var("E2E_OPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| w.ops(sizes));
        let mut a = Figures::default();
        #[allow(unused_mut)]
        let (mut b, mut f) = (Figures::default(), Figures::default());
        let mut c = Vec::new();
        for _ in 0..sizes.rounds {
            a.measure(&runtime, ops, ours(addr, w, ops));
            if ours_only {
                continue;
            }
            #[cfg(feature = "peers")]
            {
                b.measure(&runtime, ops, redis_rs(addr, w, ops));
                f.measure(&runtime, ops, fred(addr, w, ops));
            }
            if has_redis_benchmark {
                if let Some(r) = redis_benchmark(server.port(), w, ops) {
                    c.push(r);
                }
            }
        }
        let (a, cpu_a, alloc_a) = a.medians();
        let (b, cpu_b, alloc_b) = b.medians();
        let (f, cpu_f, _) = f.medians();
        let c = median(c);
        let batching = median(std::mem::take(
            &mut *BATCHING.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        println!(
            "{:<27} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>7} {:>7} {:>7} {:>7.2} {:>7.2} {:>7.2} {:>7.1} {:>7.1} {:>7.1}",
            w.name(),
            a,
            b,
            f,
            c,
            ratio(a, b),
            ratio(a, f),
            ratio(a, c),
            cpu_a,
            cpu_b,
            cpu_f,
            alloc_a,
            alloc_b,
            batching
        );
    }
    println!(
        "(ops/s (B4: keys/s), median of {} rounds, contenders alternated; this process and \
         redis-server share the machine's cores; us/req: client CPU time per request, user + \
         system; allocs: allocations per request, this client and redis-rs; req/wr: this client's \
         calls per socket write, a pipeline counting once)",
        sizes.rounds
    );
}
