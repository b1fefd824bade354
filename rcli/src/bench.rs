//! `rcli bench`: a load generator over the facade, for standalone, cluster and sentinel alike.
//!
//! Tasks send commands (one at a time, or pipelines of `-P`), closed loop or at a fixed rate
//! (`--rate`, open loop: latency counts from when a request was due). Errors are counted, not
//! fatal: the bench keeps going through outages. With `--verify`, SETs write unique keys and
//! values; at the end every acknowledged one is read back, and a missing or different value is
//! `lost` (writes whose outcome is unknown are counted apart).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use redis_client::{ArgSink, Batch, Client, ClientStats, Cmd, Error, Sent, Value};

use crate::Failure;

/// A command of the workload mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Op {
    /// GET of a random key.
    Get,
    /// SET of a random key (a unique one with --verify).
    Set,
    /// INCR of a random counter.
    Incr,
    /// MGET of --mget-keys random keys (split by slot in a cluster).
    Mget,
    /// MSET of --mget-keys random keys.
    Mset,
    /// DEL of a random key.
    Del,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Incr => "incr",
            Op::Mget => "mget",
            Op::Mset => "mset",
            Op::Del => "del",
        }
    }

    /// The command this operation sends.
    fn command(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Set => "SET",
            Op::Incr => "INCR",
            Op::Mget => "MGET",
            Op::Mset => "MSET",
            Op::Del => "DEL",
        }
    }
}

/// Options of `rcli bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// Concurrent tasks.
    #[arg(short = 'c', long = "clients", default_value_t = 50, value_name = "N")]
    clients: usize,
    /// Total requests (ignored with --duration).
    #[arg(
        short = 'n',
        long = "requests",
        default_value_t = 100_000,
        value_name = "N"
    )]
    requests: u64,
    /// Run for this many seconds instead of a number of requests.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Commands per pipeline.
    #[arg(short = 'P', long = "pipeline", default_value_t = 1, value_name = "N")]
    pipeline: usize,
    /// Value size in bytes.
    #[arg(
        short = 'd',
        long = "data-size",
        default_value_t = 100,
        value_name = "BYTES"
    )]
    data_size: usize,
    /// Workload mix, taken in turn.
    #[arg(
        short = 't',
        long = "tests",
        value_enum,
        value_delimiter = ',',
        default_value = "set,get"
    )]
    tests: Vec<Op>,
    /// Key space size.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    keys: u64,
    /// Keys per MGET / MSET.
    #[arg(long = "mget-keys", default_value_t = 10, value_name = "N")]
    mget_keys: usize,
    /// SETs write unique keys; every acknowledged one is read back at the end.
    #[arg(long)]
    verify: bool,
    /// One JSON object on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Cap on operations per second in all (open loop).
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
}

/// A cheap random number generator per task (the keys need spread, not quality).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How often a task adds its counts to the progress line's.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// What one task saw.
struct TaskResult {
    latency: Histogram<u64>,
    ops: u64,
    errors: u64,
    unknown: u64,
    by_kind: BTreeMap<String, u64>,
    /// Acknowledged verified writes: (task, sequence numbers).
    acked: Vec<u64>,
}

impl TaskResult {
    /// Counts one reply of the task's own commands; returns 1 for an error reply.
    fn tally(&mut self, verified: Option<u64>, value: Value) -> u64 {
        match value {
            Value::Error(e) => {
                let code = redis_client::ServerError::new(e).code().to_string();
                *self.by_kind.entry(format!("server:{code}")).or_default() += 1;
                1
            }
            _ => {
                if let Some(seq) = verified {
                    self.acked.push(seq);
                }
                0
            }
        }
    }
}

/// Shared between tasks and the progress line.
#[derive(Default)]
struct Progress {
    ops: AtomicU64,
    errors: AtomicU64,
}

struct Plan {
    mix: Vec<Op>,
    pipeline: usize,
    keys: u64,
    mget_keys: usize,
    verify: bool,
    value: Bytes,
    data_size: usize,
    prefix: String,
    deadline: Option<Instant>,
    interval: Option<Duration>,
    key_names: Vec<Bytes>,
}

impl Plan {
    /// Key `n` of the key space: made up front for key spaces up to a million keys (the bench
    /// must cost the client as little as possible), formatted on the fly beyond.
    fn key(&self, n: u64) -> Bytes {
        match self.key_names.get(n as usize) {
            Some(k) => k.clone(),
            None => Bytes::from(format!("key:{n:012}")),
        }
    }

    /// Appends the arguments of one `op` command (its name is already written); `verified` is
    /// the sequence number of a verified SET.
    fn push_args(
        &self,
        op: Op,
        verified: Option<u64>,
        task: usize,
        rng: &mut Rng,
        out: &mut impl ArgSink,
    ) {
        match op {
            Op::Get | Op::Del => out.push_arg(self.key(rng.below(self.keys))),
            Op::Set => match verified {
                Some(seq) => {
                    out.push_arg(self.verified_key(task, seq));
                    out.push_arg(self.verified_value(task, seq));
                }
                None => {
                    out.push_arg(self.key(rng.below(self.keys)));
                    out.push_arg(&self.value);
                }
            },
            Op::Incr => out.push_arg(format!("counter:{:06}", rng.below(self.keys))),
            Op::Mget => {
                for _ in 0..self.mget_keys {
                    out.push_arg(self.key(rng.below(self.keys)));
                }
            }
            Op::Mset => {
                for _ in 0..self.mget_keys {
                    out.push_arg(self.key(rng.below(self.keys)));
                    out.push_arg(&self.value);
                }
            }
        }
    }

    fn verified_key(&self, task: usize, seq: u64) -> String {
        format!("{}:{task}:{seq}", self.prefix)
    }

    fn verified_value(&self, task: usize, seq: u64) -> Vec<u8> {
        let mut v = format!("{task}:{seq}:").into_bytes();
        v.resize(v.len().max(self.data_size), b'x');
        v
    }
}

/// The key of `errors_by_kind`: the error's kind, with the code of an error reply.
fn kind(e: &Error) -> String {
    match e.code() {
        Some(code) => format!("server:{code}"),
        None => e.kind().to_string(),
    }
}

async fn task(
    client: Client,
    plan: Arc<Plan>,
    id: usize,
    quota: Option<u64>,
    progress: Arc<Progress>,
) -> TaskResult {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) * 0x1000_0001));
    let mut result = TaskResult {
        latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds"),
        ops: 0,
        errors: 0,
        unknown: 0,
        by_kind: BTreeMap::new(),
        acked: Vec::new(),
    };
    let mut seq = 0u64;
    let mut turn = id;
    // Operations and errors not yet added to `progress`, and when it was last updated.
    let mut unshown = (0u64, 0u64);
    let mut shown_at = Instant::now();
    let mut due = Instant::now();
    let mut batch: Vec<(Op, Option<u64>)> = Vec::with_capacity(plan.pipeline);
    // Pipelines are encoded into one buffer, kept from one round to the next.
    let mut pipe = Batch::new();
    let mut single: Option<Cmd> = None;
    loop {
        if plan.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let left = quota.map(|q| q.saturating_sub(result.ops));
        if left == Some(0) {
            break;
        }
        let size = left.map_or(plan.pipeline, |l| plan.pipeline.min(l as usize));
        batch.clear();
        pipe.clear();
        for _ in 0..size {
            let op = plan.mix[turn % plan.mix.len()];
            turn += 1;
            let verified = (op == Op::Set && plan.verify).then(|| {
                seq += 1;
                seq
            });
            batch.push((op, verified));
            // One command is sent on its own; a pipeline's are written straight into its buffer.
            if size == 1 {
                let mut cmd = Cmd::new(op.command());
                plan.push_args(op, verified, id, &mut rng, &mut cmd);
                single = Some(cmd);
            } else {
                pipe.start(op.command());
                plan.push_args(op, verified, id, &mut rng, &mut pipe);
            }
        }
        // Open loop: wait for the slot, and count latency from it.
        let started = match plan.interval {
            Some(interval) => {
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep_until(due.into()).await;
                }
                let slot = due;
                due += interval.saturating_mul(u32::try_from(size).unwrap_or(u32::MAX));
                slot
            }
            None => Instant::now(),
        };
        let outcome = match single.take() {
            Some(cmd) => client
                .send(cmd)
                .await
                .map(|value| result.tally(batch[0].1, value)),
            None => client.send_batch(&pipe).await.map(|values| {
                let mut errors = 0;
                for (&(_, verified), value) in batch.iter().zip(values) {
                    errors += result.tally(verified, value);
                }
                errors
            }),
        };
        let micros = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let errors = match outcome {
            Ok(errors) => errors,
            Err(e) => {
                *result.by_kind.entry(kind(&e)).or_default() += batch.len() as u64;
                if e.sent() == Some(Sent::Maybe) {
                    let writes = batch
                        .iter()
                        .filter(|(op, _)| *op != Op::Get && *op != Op::Mget);
                    result.unknown += writes.count() as u64;
                }
                batch.len() as u64
            }
        };
        let n = batch.len() as u64;
        let _ = result.latency.record_n(micros, n);
        result.ops += n;
        result.errors += errors;
        // The progress line's counters, shared by every task, are updated a few times a second
        // rather than per operation (one cache line that every worker would otherwise pull).
        unshown.0 += n;
        unshown.1 += errors;
        if started >= shown_at + PROGRESS_EVERY || errors > 0 {
            progress.ops.fetch_add(unshown.0, Ordering::Relaxed);
            progress.errors.fetch_add(unshown.1, Ordering::Relaxed);
            unshown = (0, 0);
            shown_at = started;
        }
    }
    progress.ops.fetch_add(unshown.0, Ordering::Relaxed);
    progress.errors.fetch_add(unshown.1, Ordering::Relaxed);
    result
}

fn delta(after: &ClientStats, before: &ClientStats) -> ClientStats {
    let mut d = *after;
    d.commands -= before.commands.min(d.commands);
    d.errors -= before.errors.min(d.errors);
    d.retries -= before.retries.min(d.retries);
    d.reconnects -= before.reconnects.min(d.reconnects);
    d.connect_failures -= before.connect_failures.min(d.connect_failures);
    d.moved -= before.moved.min(d.moved);
    d.ask -= before.ask.min(d.ask);
    d.topology_refreshes -= before.topology_refreshes.min(d.topology_refreshes);
    d.failovers -= before.failovers.min(d.failovers);
    d.writes -= before.writes.min(d.writes);
    d.reads -= before.reads.min(d.reads);
    d
}

/// Reads back every acknowledged verified write; returns (verified, lost).
async fn verify(client: &Client, plan: &Plan, acked: &[(usize, u64)]) -> (u64, u64) {
    let mut verified = 0;
    let mut lost = 0;
    for chunk in acked.chunks(500) {
        let mut cmd = Cmd::new("MGET");
        for (task, seq) in chunk {
            cmd.push_arg(plan.verified_key(*task, *seq));
        }
        // Reading back after an outage may need a few tries; a read is safe to repeat.
        let mut reply = None;
        for _ in 0..50 {
            match client.send(cmd.clone()).await {
                Ok(Value::Array(values)) => {
                    reply = Some(values);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let Some(values) = reply else {
            lost += chunk.len() as u64;
            continue;
        };
        for ((task, seq), value) in chunk.iter().zip(values) {
            let expected = plan.verified_value(*task, *seq);
            match value.as_bytes() {
                Some(v) if v[..] == expected[..] => verified += 1,
                _ => lost += 1,
            }
        }
    }
    (verified, lost)
}

pub(crate) async fn run(client: &Client, args: &BenchArgs) -> Result<(), Failure> {
    if args.tests.is_empty() {
        return Err(Failure::Fatal("-t needs at least one command".into()));
    }
    if args.clients == 0 || args.pipeline == 0 {
        return Err(Failure::Fatal("-c and -P must be at least 1".into()));
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(Failure::Fatal("--rate must be a positive number".into()));
    }
    let nonce = format!(
        "rcli:v:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let started = Instant::now();
    let plan = Arc::new(Plan {
        mix: args.tests.clone(),
        pipeline: args.pipeline,
        keys: args.keys.max(1),
        mget_keys: args.mget_keys.max(1),
        verify: args.verify,
        value: Bytes::from(vec![b'x'; args.data_size]),
        data_size: args.data_size,
        prefix: nonce,
        deadline: args.duration.and_then(|s| started.checked_add(seconds(s))),
        // At most a day between operations: a rate of 1e-300 is a load that never starts,
        // not a clock overflow.
        interval: args
            .rate
            .map(|r| seconds(args.clients as f64 / r).min(Duration::from_secs(86_400))),
        key_names: (0..args.keys.clamp(1, 1_000_000))
            .map(|n| Bytes::from(format!("key:{n:012}")))
            .collect(),
    });
    let before = client.stats();
    let progress = Arc::new(Progress::default());
    let quota = |i: usize| {
        if args.duration.is_some() {
            None
        } else {
            let base = args.requests / args.clients as u64;
            let extra = u64::from((i as u64) < args.requests % args.clients as u64);
            Some(base + extra)
        }
    };
    let mut handles = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        handles.push(tokio::spawn(task(
            client.clone(),
            Arc::clone(&plan),
            i,
            quota(i),
            Arc::clone(&progress),
        )));
    }
    let live = std::io::stderr().is_terminal() && !args.json;
    let ticker = live.then(|| {
        let (progress, client) = (Arc::clone(&progress), client.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let ops = progress.ops.load(Ordering::Relaxed);
                let stats = client.stats();
                eprint!(
                    "\r{ops} ops, {} ops/s, errors {}, reconnects {}   ",
                    ops - last,
                    progress.errors.load(Ordering::Relaxed),
                    stats.reconnects
                );
                last = ops;
            }
        })
    });
    let results = Arc::new(Mutex::new(Vec::new()));
    for handle in handles {
        match handle.await {
            Ok(r) => results.lock().unwrap_or_else(|e| e.into_inner()).push(r),
            Err(e) => return Err(Failure::Fatal(format!("a bench task failed: {e}"))),
        }
    }
    let elapsed = started.elapsed();
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
    let (mut ops, mut errors, mut unknown) = (0u64, 0u64, 0u64);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut acked: Vec<(usize, u64)> = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let _ = latency.add(&r.latency);
        ops += r.ops;
        errors += r.errors;
        unknown += r.unknown;
        for (k, v) in r.by_kind {
            *by_kind.entry(k).or_default() += v;
        }
        acked.extend(r.acked.into_iter().map(|seq| (i, seq)));
    }
    let stats = delta(&client.stats(), &before);
    let (verified, lost) = if args.verify {
        verify(client, &plan, &acked).await
    } else {
        (0, 0)
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ops_per_sec = ops as f64 / secs;
    let q = |p: f64| {
        if ops == 0 {
            0
        } else {
            latency.value_at_quantile(p)
        }
    };
    let workload: Vec<&str> = args.tests.iter().map(|t| t.name()).collect();
    if args.json {
        let summary = serde_json::json!({
            "ops": ops,
            "errors": errors,
            "ops_per_sec": (ops_per_sec * 10.0).round() / 10.0,
            "p50_us": q(0.5),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": if ops == 0 { 0 } else { latency.max() },
            "retries": stats.retries,
            "reconnects": stats.reconnects,
            "moved": stats.moved,
            "ask": stats.ask,
            "topology_refreshes": stats.topology_refreshes,
            "failovers": stats.failovers,
            "verified": verified,
            "lost": lost,
            "unknown_outcome": unknown,
            "errors_by_kind": by_kind,
            "duration_s": (secs * 1000.0).round() / 1000.0,
            "clients": args.clients,
            "pipeline": args.pipeline,
            "data_size": args.data_size,
            "workload": workload,
            "mode": client.mode().name(),
        });
        say!("{summary}");
    } else {
        say!(
            "workload {} | {} tasks | pipeline {} | {} B values | {} keys | {}",
            workload.join(","),
            args.clients,
            args.pipeline,
            args.data_size,
            args.keys,
            client.mode().name()
        );
        say!(
            "ops {ops} in {secs:.2} s: {ops_per_sec:.0} ops/s, errors {errors}{}",
            if by_kind.is_empty() {
                String::new()
            } else {
                format!(" {by_kind:?}")
            }
        );
        say!(
            "latency us: p50 {} p99 {} p99.9 {} max {}",
            q(0.5),
            q(0.99),
            q(0.999),
            if ops == 0 { 0 } else { latency.max() }
        );
        say!(
            "client: retries {} reconnects {} moved {} ask {} topology refreshes {} failovers {}",
            stats.retries,
            stats.reconnects,
            stats.moved,
            stats.ask,
            stats.topology_refreshes,
            stats.failovers
        );
        if args.verify {
            say!(
                "verify: {verified} acknowledged writes read back, {lost} lost, {unknown} with \
                 unknown outcome (not counted as lost)"
            );
        }
    }
    Ok(())
}

/// A number of seconds from the command line as a duration: negative or NaN is none, and
/// anything past what a duration holds (`--rate 0` makes an infinite interval) saturates.
fn seconds(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}
