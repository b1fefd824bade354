//! The workload checker: an open-loop, rate-limited load whose every operation's outcome is
//! recorded, and the checks made at the end (RELIABILITY.md C2).
//!
//! Each task cycles through `SET` of a unique key, `ECHO` of a unique token, `INCR` of its own
//! counter, `GET` of a key it wrote, and a pipeline of the three kinds of writes and checks in one
//! write (so that faults also land mid-pipeline). Afterwards: `ECHO` replies that were not their token are
//! misrouted; acknowledged `SET`s missing are lost; each counter must lie within `acked ..=
//! acked + unknown` (below: a lost increment; above: one ran twice); a call that took longer
//! than its deadline plus slack exceeded it; a `GET` of a key the task wrote that does not return
//! the acknowledged value is a stale read.
//!
//! Each call's start and end are kept with its outcome and its keys' slots, so that a scenario
//! can tell errors inside its fault windows from errors outside them, and recovery on the keys
//! of one cluster shard from recovery on any.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_client::prelude::*;
use redis_client::{Cmd, Sent, Value};

/// Scheduling slack on top of a call's deadline before it counts as exceeded (2 busy cores).
const SLACK: Duration = Duration::from_millis(250);

/// A failed call: when it ran, whether it timed out or may have run, and the slots of its keys (none for `ECHO`).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    pub(crate) slots: Vec<u16>,
    /// The call held a keyless command (`ECHO`, alone or in a pipeline), which a cluster
    /// sends to any master: it cannot be told to one shard.
    pub(crate) keyless: bool,
    pub(crate) timeout: bool,
    pub(crate) maybe: bool,
}

/// What the operations of a run came to.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    pub(crate) ops: u64,
    pub(crate) ok: u64,
    /// Every failed call, with its time span.
    pub(crate) failures: Vec<Failure>,
    /// Every SET (plain or in a pipeline): when it started and whether it was acknowledged.
    pub(crate) sets: Vec<(Instant, bool)>,
    /// GETs of a key the task had written that did not return its acknowledged value.
    pub(crate) stale_reads: u64,
    /// Successful calls on keys: when they ended and their key's slot (one entry per key).
    pub(crate) ok_slots: Vec<(Instant, u16)>,
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

    /// Calls that failed by a deadline passing.
    pub(crate) fn timeouts(&self) -> u64 {
        self.failures.iter().filter(|f| f.timeout).count() as u64
    }

    /// Calls that failed with `Sent::Maybe` (timeouts included).
    pub(crate) fn maybe(&self) -> u64 {
        self.failures.iter().filter(|f| f.maybe).count() as u64
    }

    /// Failed calls that overlap none of `windows` (each stretched by `grace` after its end).
    pub(crate) fn errors_outside(&self, windows: &[(Instant, Instant)], grace: Duration) -> u64 {
        self.failures
            .iter()
            .filter(|f| {
                !windows
                    .iter()
                    .any(|(from, to)| f.end >= *from && f.start <= *to + grace)
            })
            .count() as u64
    }

    /// (SETs started outside `windows`, how many of them were acknowledged).
    pub(crate) fn sets_outside(&self, windows: &[(Instant, Instant)]) -> (u64, u64) {
        let outside: Vec<bool> = self
            .sets
            .iter()
            .filter(|(t, _)| !windows.iter().any(|(from, to)| t >= from && t <= to))
            .map(|(_, acked)| *acked)
            .collect();
        (
            outside.len() as u64,
            outside.iter().filter(|a| **a).count() as u64,
        )
    }

    /// The first success on a key whose slot `on` accepts after each of `times`, in ms.
    pub(crate) fn recovery_on_ms(&self, healed: &[Instant], on: impl Fn(u16) -> bool) -> Vec<f64> {
        let mut ok: Vec<Instant> = self
            .ok_slots
            .iter()
            .filter(|(_, s)| on(*s))
            .map(|(t, _)| *t)
            .collect();
        ok.sort_unstable();
        healed
            .iter()
            .filter_map(|h| {
                let i = ok.partition_point(|t| t < h);
                ok.get(i).map(|t| (*t - *h).as_secs_f64() * 1000.0)
            })
            .collect()
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
/// `deadline` is the client's response timeout (what a call may take). Keys carry `prefix`; with
/// `hot_tag`, every other task puts all its keys under that hash tag (one cluster slot).
pub(crate) fn start(
    client: &Client,
    rate: f64,
    tasks: usize,
    deadline: Duration,
    prefix: &str,
    hot_tag: Option<&str>,
) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(tasks as f64 / rate);
    let started = Instant::now();
    let handles = (0..tasks)
        .map(|t| {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            let prefix = match hot_tag {
                Some(tag) if t % 2 == 0 => format!("{tag}:{prefix}:{t}"),
                _ => format!("{prefix}:{t}"),
            };
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
            all.failures.extend(o.failures);
            all.sets.extend(o.sets);
            all.stale_reads += o.stale_reads;
            all.ok_slots.extend(o.ok_slots);
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
    let counter_slot = slot(&counter);
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
            let slots = vec![slot(&key), counter_slot];
            out.ops += 1;
            if took > deadline + SLACK {
                out.deadline_exceeded += 1;
            }
            match result {
                Ok(values) if values.len() == 3 => {
                    out.ok += 1;
                    let now = Instant::now();
                    out.ok_at.push(now);
                    out.latency_us.push(took.as_micros() as u64);
                    match &values[0] {
                        Value::Error(e) => {
                            let kind = format!(
                                "server:{}",
                                redis_client::ServerError::new(e.clone()).code()
                            );
                            out.failures.push(Failure {
                                start: started,
                                end: now,
                                slots: slots.clone(),
                                keyless: true,
                                timeout: false,
                                maybe: false,
                            });
                            *out.errors_by_kind.entry(kind).or_default() += 1;
                            out.sets.push((started, false));
                        }
                        _ => {
                            out.ok_slots.extend(slots.iter().map(|s| (now, *s)));
                            out.acked.push((key, value));
                            out.sets.push((started, true));
                        }
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
                    out.sets.push((started, false));
                    let kind = format!("pipeline:{}", kind(&e));
                    out.failures.push(Failure {
                        start: started,
                        end: Instant::now(),
                        slots,
                        keyless: true,
                        timeout: e.is_timeout(),
                        maybe: e.sent() == Some(Sent::Maybe),
                    });
                    *out.errors_by_kind.entry(kind).or_default() += 1;
                    if e.sent() == Some(Sent::Maybe) {
                        out.unknown += 2;
                        incr_unknown += 1;
                    }
                }
            }
            continue;
        }
        let (cmd, token, slots) = match step {
            0 => {
                let key = format!("{prefix}:k{i}");
                let value = format!("v{i}");
                let slots = vec![slot(&key)];
                (
                    Cmd::new("SET").arg(&key).arg(&value),
                    Some((key, value)),
                    slots,
                )
            }
            1 => {
                let token = format!("{prefix}:echo{i}");
                (
                    Cmd::new("ECHO").arg(&token),
                    Some((token, String::new())),
                    Vec::new(),
                )
            }
            2 => (Cmd::new("INCR").arg(&counter), None, vec![counter_slot]),
            _ => {
                let (key, value) = out
                    .acked
                    .last()
                    .cloned()
                    .unwrap_or_else(|| (format!("{prefix}:none"), String::new()));
                let slots = vec![slot(&key)];
                (Cmd::new("GET").arg(&key), Some((key, value)), slots)
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
                let now = Instant::now();
                out.ok_at.push(now);
                out.ok_slots.extend(slots.iter().map(|s| (now, *s)));
                out.latency_us.push(took.as_micros() as u64);
                match (step, token) {
                    (0, Some(kv)) => {
                        out.acked.push(kv);
                        out.sets.push((started, true));
                    }
                    (1, Some((token, _)))
                        if value.as_bytes().map(|b| &b[..]) != Some(token.as_bytes()) =>
                    {
                        out.misrouted += 1;
                    }
                    (2, _) => incr_acked += 1,
                    (3, Some((_, expected)))
                        if !expected.is_empty() && text(&value) != expected =>
                    {
                        out.stale_reads += 1;
                    }
                    _ => {}
                }
            }
            Err(e) => {
                if step == 0 {
                    out.sets.push((started, false));
                }
                out.failures.push(Failure {
                    start: started,
                    end: Instant::now(),
                    keyless: step == 1,
                    slots,
                    timeout: e.is_timeout(),
                    maybe: e.sent() == Some(Sent::Maybe),
                });
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

/// The cluster slot of `key` (computed for every deployment; only a cluster uses it).
pub(crate) fn slot(key: &str) -> u16 {
    redis_client::layers::cluster::slot(key.as_bytes())
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
