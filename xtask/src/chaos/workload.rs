//! The workload checker: an open-loop, rate-limited load whose every operation's outcome is
//! recorded, and the checks made at the end (RELIABILITY.md C2).
//!
//! Each task cycles through `SET` of a unique key, `ECHO` of a unique token, `INCR` of its own
//! counter, `GET` of a key it wrote, and a pipeline of the three kinds of writes and checks in one
//! write (so that faults also land mid-pipeline). Afterwards: `ECHO` replies that were not their token are
//! misrouted; acknowledged `SET`s missing are lost; each counter must lie within `acked ..=
//! acked + unknown` (below: a lost increment; above: one ran twice); a call that took longer
//! than its deadline plus slack exceeded it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_client::prelude::*;
use redis_client::{Cmd, Sent, Value};

/// Scheduling slack on top of a call's deadline before it counts as exceeded (2 busy cores).
const SLACK: Duration = Duration::from_millis(250);

/// What the operations of a run came to.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    pub(crate) ops: u64,
    pub(crate) ok: u64,
    pub(crate) errors_by_kind: BTreeMap<String, u64>,
    /// Writes that failed with `Sent::Maybe` (they may have run).
    pub(crate) unknown: u64,
    pub(crate) misrouted: u64,
    pub(crate) deadline_exceeded: u64,
    /// Acknowledged unique SETs: (key, value).
    pub(crate) acked: Vec<(String, String)>,
    /// Per task: (counter key, acknowledged INCRs, INCRs with an unknown outcome).
    pub(crate) counters: Vec<(String, u64, u64)>,
    /// When successful calls ended.
    pub(crate) ok_at: Vec<Instant>,
    /// Latencies of successful calls, in microseconds.
    pub(crate) latency_us: Vec<u64>,
    pub(crate) elapsed: Duration,
}

impl Outcomes {
    pub(crate) fn errors(&self) -> u64 {
        self.errors_by_kind.values().sum()
    }

    /// The first success after each of `times` (recovery after a fault is healed), in ms.
    pub(crate) fn recovery_ms(&self, healed: &[Instant]) -> Vec<f64> {
        let mut ok = self.ok_at.clone();
        ok.sort_unstable();
        healed
            .iter()
            .filter_map(|h| {
                let i = ok.partition_point(|t| t < h);
                ok.get(i).map(|t| (*t - *h).as_secs_f64() * 1000.0)
            })
            .collect()
    }

    /// The `q` quantile of the successful calls' latency, in ms.
    pub(crate) fn latency_ms(&self, q: f64) -> f64 {
        percentile(
            &self
                .latency_us
                .iter()
                .map(|&u| u as f64 / 1000.0)
                .collect::<Vec<_>>(),
            q,
        )
    }
}

/// The `q` quantile of `values` (0 when empty).
pub(crate) fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The kind of an error, for the report: its kind (with an error reply's code) and whether
/// the command may have run.
pub(crate) fn kind(e: &Error) -> String {
    let sent = match e.sent() {
        Some(Sent::No) => "/unsent",
        Some(Sent::Maybe) => "/maybe",
        None => "",
    };
    match e.code() {
        Some(code) => format!("server:{code}{sent}"),
        None => format!("{}{sent}", e.kind()),
    }
}

/// A load running in the background.
pub(crate) struct Running {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Outcomes>>,
    started: Instant,
}

/// Starts `tasks` tasks sending `rate` operations per second in all, through `client`;
/// `deadline` is the client's response timeout (what a call may take). Keys carry `prefix`.
pub(crate) fn start(
    client: &Client,
    rate: f64,
    tasks: usize,
    deadline: Duration,
    prefix: &str,
) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(tasks as f64 / rate);
    let started = Instant::now();
    let handles = (0..tasks)
        .map(|t| {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            let prefix = format!("{prefix}:{t}");
            tokio::spawn(async move { task(client, stop, interval, deadline, prefix).await })
        })
        .collect();
    Running {
        stop,
        tasks: handles,
        started,
    }
}

impl Running {
    /// Stops the load and gathers what every task saw.
    pub(crate) async fn stop(self) -> Outcomes {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Outcomes::default();
        for task in self.tasks {
            let Ok(o) = task.await else {
                // A task that panicked is a failure of the client under test.
                *all.errors_by_kind.entry("panic".into()).or_default() += 1;
                continue;
            };
            all.ops += o.ops;
            all.ok += o.ok;
            for (k, v) in o.errors_by_kind {
                *all.errors_by_kind.entry(k).or_default() += v;
            }
            all.unknown += o.unknown;
            all.misrouted += o.misrouted;
            all.deadline_exceeded += o.deadline_exceeded;
            all.acked.extend(o.acked);
            all.counters.extend(o.counters);
            all.ok_at.extend(o.ok_at);
            all.latency_us.extend(o.latency_us);
        }
        all.elapsed = self.started.elapsed();
        all
    }
}

async fn task(
    client: Client,
    stop: Arc<AtomicBool>,
    interval: Duration,
    deadline: Duration,
    prefix: String,
) -> Outcomes {
    let mut out = Outcomes::default();
    let counter = format!("{prefix}:counter");
    let (mut incr_acked, mut incr_unknown) = (0u64, 0u64);
    let mut due = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        due += interval;
        i += 1;
        let started = Instant::now();
        let step = i % 5;
        if step == 4 {
            // A pipeline: a unique SET, an INCR and an ECHO in one write, replies in order.
            let key = format!("{prefix}:p{i}");
            let value = format!("pv{i}");
            let token = format!("{prefix}:pecho{i}");
            let cmds = [
                Cmd::new("SET").arg(&key).arg(&value),
                Cmd::new("INCR").arg(&counter),
                Cmd::new("ECHO").arg(&token),
            ];
            let result = client.send_pipeline(&cmds).await;
            let took = started.elapsed();
            out.ops += 1;
            if took > deadline + SLACK {
                out.deadline_exceeded += 1;
            }
            match result {
                Ok(values) if values.len() == 3 => {
                    out.ok += 1;
                    out.ok_at.push(Instant::now());
                    out.latency_us.push(took.as_micros() as u64);
                    match &values[0] {
                        Value::Error(e) => {
                            *out.errors_by_kind
                                .entry(format!(
                                    "server:{}",
                                    redis_client::ServerError::new(e.clone()).code()
                                ))
                                .or_default() += 1
                        }
                        _ => out.acked.push((key, value)),
                    }
                    if matches!(values[1], Value::Integer(_)) {
                        incr_acked += 1;
                    }
                    if values[2].as_bytes().map(|b| &b[..]) != Some(token.as_bytes()) {
                        out.misrouted += 1;
                    }
                }
                Ok(_) => out.misrouted += 1,
                Err(e) => {
                    *out.errors_by_kind
                        .entry(format!("pipeline:{}", kind(&e)))
                        .or_default() += 1;
                    if e.sent() == Some(Sent::Maybe) {
                        out.unknown += 2;
                        incr_unknown += 1;
                    }
                }
            }
            continue;
        }
        let (cmd, token) = match step {
            0 => {
                let key = format!("{prefix}:k{i}");
                let value = format!("v{i}");
                (Cmd::new("SET").arg(&key).arg(&value), Some((key, value)))
            }
            1 => {
                let token = format!("{prefix}:echo{i}");
                (Cmd::new("ECHO").arg(&token), Some((token, String::new())))
            }
            2 => (Cmd::new("INCR").arg(&counter), None),
            _ => {
                let key = out
                    .acked
                    .last()
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| format!("{prefix}:none"));
                (Cmd::new("GET").arg(key), None)
            }
        };
        let result = client.send(cmd).await;
        let took = started.elapsed();
        out.ops += 1;
        if took > deadline + SLACK {
            out.deadline_exceeded += 1;
        }
        match result {
            Ok(value) => {
                out.ok += 1;
                out.ok_at.push(Instant::now());
                out.latency_us.push(took.as_micros() as u64);
                match (step, token) {
                    (0, Some(kv)) => out.acked.push(kv),
                    (1, Some((token, _)))
                        if value.as_bytes().map(|b| &b[..]) != Some(token.as_bytes()) =>
                    {
                        out.misrouted += 1;
                    }
                    (2, _) => incr_acked += 1,
                    _ => {}
                }
            }
            Err(e) => {
                *out.errors_by_kind.entry(kind(&e)).or_default() += 1;
                if e.sent() == Some(Sent::Maybe) && (step == 0 || step == 2) {
                    out.unknown += 1;
                    if step == 2 {
                        incr_unknown += 1;
                    }
                }
            }
        }
    }
    out.counters.push((counter, incr_acked, incr_unknown));
    out
}

/// What the data on the servers says at the end.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Acknowledged SETs missing or different.
    pub(crate) lost: u64,
    /// Counters below their acknowledged INCRs (an acknowledged increment lost).
    pub(crate) counters_low: u64,
    /// Counters above acked + unknown (an increment ran twice).
    pub(crate) counters_high: u64,
}

/// Reads back every acknowledged SET and every counter through `client` (retrying reads, which
/// are safe, while the deployment settles).
pub(crate) async fn verify(client: &Client, outcomes: &Outcomes) -> Verdict {
    let mut verdict = Verdict::default();
    for chunk in outcomes.acked.chunks(200) {
        let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<Option<String>> = read(|| client.mget(&keys)).await.unwrap_or_default();
        for ((_, expected), got) in chunk
            .iter()
            .zip(values.iter().chain(std::iter::repeat(&None)))
        {
            if got.as_deref() != Some(expected.as_str()) {
                verdict.lost += 1;
            }
        }
    }
    for (key, acked, unknown) in &outcomes.counters {
        let value: u64 = read(|| client.get::<Option<u64>>(key.as_str()))
            .await
            .flatten()
            .unwrap_or(0);
        if value < *acked {
            verdict.counters_low += 1;
        }
        if value > acked + unknown {
            verdict.counters_high += 1;
        }
    }
    verdict
}

/// `f` until it succeeds (30 tries, 100 ms apart).
async fn read<T, F, Fut>(f: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = redis_client::Result<T>>,
{
    for _ in 0..30 {
        if let Ok(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Open file descriptors of this process.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of this process, in KiB.
pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A reply's text, for checks.
pub(crate) fn text(v: &Value) -> String {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}
