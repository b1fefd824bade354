//! The fault scenarios (RELIABILITY.md T1-T9, T11): each starts its own servers, runs the
//! workload, injects faults from this thread while the load runs on the runtime, checks the
//! data, and says which criteria held.

use std::time::{Duration, Instant};

use redis_client::prelude::*;
use redis_client::Value;
use test_support::{
    redis_cli, wait_cluster_agrees, Cluster, Fault, FaultProxy, RedisServer, SentinelSet,
    ServerTls, TestCerts, MASTER_NAME,
};

use super::workload::{self, open_fds, rss_kib, Outcomes, Verdict};
use super::{Mode, Report};

/// The load every scenario holds (RELIABILITY.md C2: about 5% of capacity on 2 cores).
const RATE: f64 = 2000.0;
const TASKS: usize = 32;
/// The deadline of a call (Tc).
const TC: Duration = Duration::from_secs(1);

type Outcome = Result<Report, String>;

fn harness(e: test_support::HarnessError) -> String {
    e.to_string()
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn base(url: &str) -> Result<Config, String> {
    Ok(Config::from_url(url)
        .map_err(|e| e.to_string())?
        .response_timeout(TC))
}

fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// Polls `ready` every 10 ms until it holds; `Err` naming `what` after `within`. Returns how
/// long it took.
fn wait_for(
    what: &str,
    within: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        if ready() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(format!("{what}: not within {within:?}"));
        }
        sleep(Duration::from_millis(10));
    }
}

/// A fault window: from when the fault was injected to when it was healed.
type Window = (Instant, Instant);

/// Which errors a scenario allows.
#[derive(Clone, Copy)]
enum Errors {
    /// None at all (graceful changes, slicing, resharding).
    Zero,
    /// Only in calls that overlap a fault window stretched by this much after the heal (what a
    /// call in flight at the heal, or the reconnect after it, may still take).
    InWindows(Duration),
}

/// The share of the offered rate, and of the SETs started outside the fault windows that must
/// be acknowledged, for the load to count as held.
const HELD: f64 = 0.8;

/// The client, its runtime, and what was measured before the load.
struct Run {
    rt: tokio::runtime::Runtime,
    client: Client,
    fds_before: usize,
    /// Median idle round trip of a `PING`, measured before the load.
    idle_rtt: Duration,
}

/// What a load with faults came to.
struct Data {
    outcomes: Outcomes,
    verdict: Verdict,
    windows: Vec<Window>,
    /// The client's counters when the load started and when it stopped.
    before: redis_client::ClientStats,
    after: redis_client::ClientStats,
}

impl Data {
    fn healed(&self) -> Vec<Instant> {
        self.windows.iter().map(|w| w.1).collect()
    }
    fn reconnects(&self) -> u64 {
        self.after.reconnects - self.before.reconnects
    }
}

/// Tasks alive on the runtime.
fn tasks(rt: &tokio::runtime::Runtime) -> usize {
    rt.metrics().num_alive_tasks()
}

impl Run {
    fn new(config: Config) -> Result<Run, String> {
        let rt = runtime()?;
        let fds_before = open_fds();
        let client = rt
            .block_on(Client::connect(config))
            .map_err(|e| format!("connect: {e}"))?;
        let idle_rtt = rt.block_on(async {
            let mut rtts = Vec::new();
            for _ in 0..100 {
                let t = Instant::now();
                client
                    .send(redis_client::Cmd::new("PING"))
                    .await
                    .map_err(|e| format!("idle PING: {e}"))?;
                rtts.push(t.elapsed().as_secs_f64());
            }
            Ok::<_, String>(Duration::from_secs_f64(workload::percentile(&rtts, 0.5)))
        })?;
        Ok(Run {
            rt,
            client,
            fds_before,
            idle_rtt,
        })
    }

    /// `n` idle round trips (a latency bound's slack, measured rather than assumed).
    fn rtts(&self, n: u32) -> Duration {
        self.idle_rtt * n
    }

    /// Load + faults (`faults` returns its windows); then verifies the data.
    fn load(
        &self,
        name: &str,
        hot_tag: Option<&str>,
        faults: impl FnOnce(&Client) -> Result<Vec<Window>, String>,
    ) -> Result<Data, String> {
        let before = self.client.stats();
        let running = {
            let _enter = self.rt.enter();
            workload::start(
                &self.client,
                RATE,
                TASKS,
                TC,
                &format!("chaos:{name}"),
                hot_tag,
            )
        };
        sleep(Duration::from_millis(500));
        let windows = faults(&self.client);
        sleep(Duration::from_millis(1500));
        let outcomes = self.rt.block_on(running.stop());
        let after = self.client.stats();
        let windows = windows?;
        let verdict = self.rt.block_on(workload::verify(&self.client, &outcomes));
        Ok(Data {
            outcomes,
            verdict,
            windows,
            before,
            after,
        })
    }

    /// The report of a run, with the criteria every scenario shares: the load held, errors
    /// within the scenario's bound, no panic, no misrouted reply, no call past its deadline, no
    /// increment run twice, no leaked fd or task.
    fn report(self, name: &'static str, faults: u64, data: &Data, errors: Errors) -> Report {
        let Data {
            outcomes,
            verdict,
            windows,
            after: stats,
            ..
        } = data;
        let idle_rtt = self.idle_rtt;
        self.client.close();
        drop(self.client);
        // Connections close in the background: poll until they are gone (or 2 s).
        let (mut fds_after, mut tasks_after) = (open_fds(), tasks(&self.rt));
        let _ = wait_for("fds and tasks back", Duration::from_secs(2), || {
            fds_after = open_fds();
            tasks_after = tasks(&self.rt);
            fds_after <= self.fds_before + 2 && tasks_after == 0
        });
        drop(self.rt);
        let recovery = outcomes.recovery_ms(&data.healed());
        let mut r = Report::new(name);
        r.idle_rtt_ms = idle_rtt.as_secs_f64() * 1000.0;
        r.ops = outcomes.ops;
        r.ops_per_sec = outcomes.ops as f64 / outcomes.elapsed.as_secs_f64().max(1e-9);
        r.faults = faults;
        r.errors = outcomes.errors();
        r.errors_by_kind = outcomes.errors_by_kind.clone();
        r.timeouts = outcomes.timeouts();
        r.unknown_outcome = outcomes.unknown;
        r.lost = verdict.lost;
        r.stale_reads = outcomes.stale_reads;
        r.misrouted = outcomes.misrouted;
        r.deadline_exceeded = outcomes.deadline_exceeded;
        r.counters_low = verdict.counters_low;
        r.counters_high = verdict.counters_high;
        r.recovery_p50_ms = workload::percentile(&recovery, 0.5);
        r.recovery_p99_ms = workload::percentile(&recovery, 0.99);
        r.p99_latency_ms = outcomes.latency_ms(0.99);
        r.reconnect_attempts = stats.reconnects + stats.connect_failures;
        r.topology_refreshes = stats.topology_refreshes;
        r.failovers = stats.failovers;
        r.moved = stats.moved - data.before.moved;
        r.ask = stats.ask - data.before.ask;
        r.fd_delta = fds_after as i64 - self.fds_before as i64;
        let panics = outcomes.errors_by_kind.get("panic").copied().unwrap_or(0);
        r.measure("zero panics", format!("{panics}"), panics == 0);
        r.measure(
            &format!(
                "the load was held: >= {:.0} % of the offered {RATE:.0} ops/s",
                HELD * 100.0
            ),
            format!("{:.0} ops/s", r.ops_per_sec),
            r.ops_per_sec >= HELD * RATE,
        );
        let (sets, acked) = outcomes.sets_outside(windows);
        let all_acked = outcomes.sets.iter().filter(|(_, a)| *a).count();
        r.measure(
            &format!(
                ">= {:.0} % of the SETs started outside the fault windows acknowledged",
                HELD * 100.0
            ),
            format!(
                "{acked} of {sets} ({:.1} %); {all_acked} of {} over the whole run",
                acked as f64 * 100.0 / sets.max(1) as f64,
                outcomes.sets.len()
            ),
            sets > 0 && acked as f64 >= HELD * sets as f64,
        );
        match errors {
            Errors::Zero => r.measure("zero errors", format!("{}", r.errors), r.errors == 0),
            Errors::InWindows(grace) => {
                let outside = outcomes.errors_outside(windows, grace);
                r.measure(
                    &format!("errors only in calls overlapping a fault window + {grace:?}"),
                    format!("{outside} outside, of {} errors", r.errors),
                    outside == 0,
                );
            }
        }
        r.measure(
            "zero misrouted replies",
            format!("{}", r.misrouted),
            r.misrouted == 0,
        );
        r.measure(
            "every call resolved within its deadline + 250 ms",
            format!("{} past it", r.deadline_exceeded),
            r.deadline_exceeded == 0,
        );
        r.measure(
            "no increment ran twice (counter <= acked + unknown)",
            format!("{} counters above", r.counters_high),
            r.counters_high == 0,
        );
        r.measure(
            "file descriptors back to baseline (+2)",
            format!("{:+}", r.fd_delta),
            r.fd_delta <= 2,
        );
        r.measure(
            "tasks back to baseline",
            format!("{tasks_after} left"),
            tasks_after == 0,
        );
        r
    }
}

impl Report {
    /// The data criteria of a scenario whose every acknowledged write must survive: no
    /// acknowledged SET lost, no acknowledged increment lost, no GET older than its last
    /// acknowledged SET.
    fn data_intact(&mut self) {
        self.measure(
            "no acknowledged write lost",
            format!("{} lost", self.lost),
            self.lost == 0,
        );
        self.measure(
            "no acknowledged increment lost",
            format!("{} counters below", self.counters_low),
            self.counters_low == 0,
        );
        self.measure(
            "each GET returns the key's last acknowledged value",
            format!("{} stale", self.stale_reads),
            self.stale_reads == 0,
        );
    }
}

/// "Bounded" in RELIABILITY.md C3: within Tc + 100 ms of scheduling slack.
const BOUNDED: Duration = Duration::from_millis(1100);

/// Waits until the client has reconnected since `before` (a state, so polled, not slept).
fn wait_reconnected(client: &Client, before: u64) -> Result<Duration, String> {
    wait_for("the client reconnected", Duration::from_secs(5), || {
        client.stats().reconnects > before
    })
}

/// The criterion that the client reconnected after every fault.
fn reconnected_each(r: &mut Report, data: &Data, cycles: u64) {
    r.effect(
        "the client reconnected after every fault (reconnects >= faults)",
        format!("{} reconnects / {cycles} faults", data.reconnects()),
        data.reconnects() >= cycles,
    );
}

/// T1: kill -9 and restart with AOF fsync always, downtimes of 0, 200 ms and 2 s.
pub(crate) fn standalone_kill9_restart(mode: Mode) -> Outcome {
    let mut server = RedisServer::builder().aof().start().map_err(harness)?;
    let run = Run::new(base(&format!("redis://{}", server.addr()))?)?;
    let cycles = if mode.quick { 3 } else { 20 };
    let mut attempts_2s = 0;
    let data = run.load("t1", None, |client| {
        let mut windows = Vec::new();
        for i in 0..cycles {
            let down = [
                Duration::ZERO,
                Duration::from_millis(200),
                Duration::from_secs(2),
            ][i % 3];
            let before = client.stats();
            let killed = Instant::now();
            server.kill9();
            sleep(down);
            server.restart().map_err(harness)?;
            windows.push((killed, Instant::now()));
            wait_reconnected(client, before.reconnects)?;
            if down == Duration::from_secs(2) {
                attempts_2s =
                    attempts_2s.max(client.stats().connect_failures - before.connect_failures);
            }
            sleep(Duration::from_millis(300));
        }
        Ok(windows)
    })?;
    let bound = Duration::from_millis(1100) + run.rtts(20);
    let mut r = run.report(
        "standalone kill -9 / restart (AOF)",
        cycles as u64,
        &data,
        Errors::InWindows(BOUNDED),
    );
    reconnected_each(&mut r, &data, cycles as u64);
    r.data_intact();
    r.measure(
        "reconnect attempts in a 2 s outage <= 15",
        format!("{attempts_2s}"),
        attempts_2s <= 15,
    );
    r.measure(
        &format!("recovery p99 <= 1.1 s (backoff cap + 100 ms) + 20 idle RTTs = {bound:?}"),
        format!("{:.0} ms", r.recovery_p99_ms),
        r.recovery_p99_ms <= bound.as_secs_f64() * 1000.0,
    );
    Ok(r)
}

/// T2: CLIENT KILL of every client connection, repeatedly, under load.
pub(crate) fn client_kill(mode: Mode) -> Outcome {
    let server = RedisServer::start().map_err(harness)?;
    let run = Run::new(base(&format!("redis://{}", server.addr()))?)?;
    let cycles = if mode.quick { 8 } else { 100 };
    let mut killed_per_kill = Vec::new();
    let data = run.load("t2kill", None, |client| {
        let mut admin = server.admin().map_err(harness)?;
        let mut windows = Vec::new();
        for _ in 0..cycles {
            let before = client.stats().reconnects;
            let at = Instant::now();
            let killed = admin
                .cmd_int(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
                .map_err(harness)?;
            killed_per_kill.push(killed);
            windows.push((at, Instant::now()));
            wait_reconnected(client, before)?;
            sleep(Duration::from_millis(150));
        }
        Ok(windows)
    })?;
    let bound = Duration::from_millis(100) + run.rtts(50);
    let mut r = run.report(
        "CLIENT KILL under load",
        cycles as u64,
        &data,
        Errors::InWindows(BOUNDED),
    );
    let fewest = killed_per_kill.iter().copied().min().unwrap_or(0);
    r.effect(
        "every CLIENT KILL killed >= 1 connection",
        format!("fewest killed by one CLIENT KILL: {fewest}"),
        fewest >= 1 && killed_per_kill.len() == cycles,
    );
    reconnected_each(&mut r, &data, cycles as u64);
    r.data_intact();
    r.measure(
        &format!("recovery p99 <= 100 ms + 50 idle RTTs = {bound:?}"),
        format!("{:.0} ms", r.recovery_p99_ms),
        r.recovery_p99_ms <= bound.as_secs_f64() * 1000.0,
    );
    Ok(r)
}

/// T2: connections reset (RST) by a proxy, repeatedly, under load.
pub(crate) fn proxy_reset(mode: Mode) -> Outcome {
    let server = RedisServer::start().map_err(harness)?;
    let proxy = FaultProxy::start(server.addr()).map_err(harness)?;
    let run = Run::new(base(&format!("redis://{}", proxy.addr()))?)?;
    let cycles = if mode.quick { 8 } else { 100 };
    let mut ineffective = 0;
    let data = run.load("t2reset", None, |client| {
        let mut windows = Vec::new();
        for _ in 0..cycles {
            let before = client.stats().reconnects;
            let applied = proxy.resets_applied();
            let at = Instant::now();
            proxy.reset_all();
            // The proxy's connections set up their RST on their own thread: poll for it.
            if wait_for("a reset applied", Duration::from_secs(1), || {
                proxy.resets_applied() > applied
            })
            .is_err()
            {
                ineffective += 1;
            }
            windows.push((at, Instant::now()));
            wait_reconnected(client, before)?;
            sleep(Duration::from_millis(150));
        }
        Ok(windows)
    })?;
    let bound = Duration::from_millis(100) + run.rtts(50);
    let mut r = run.report(
        "proxy reset (RST) under load",
        cycles as u64,
        &data,
        Errors::InWindows(BOUNDED),
    );
    r.effect(
        "every reset_all reset >= 1 open connection (the proxy's count)",
        format!(
            "{} connections reset, {ineffective} of {cycles} resets reset nothing",
            proxy.resets_applied()
        ),
        ineffective == 0,
    );
    reconnected_each(&mut r, &data, cycles as u64);
    r.data_intact();
    r.measure(
        &format!("recovery p99 <= 100 ms + 50 idle RTTs = {bound:?}"),
        format!("{:.0} ms", r.recovery_p99_ms),
        r.recovery_p99_ms <= bound.as_secs_f64() * 1000.0,
    );
    Ok(r)
}

/// The criterion that a stall showed as timeouts (`Sent::Maybe`): at least one per fault.
fn timed_out_each(r: &mut Report, data: &Data, cycles: u64) {
    let (timeouts, maybe) = (data.outcomes.timeouts(), data.outcomes.maybe());
    r.effect(
        "calls in flight timed out (Sent::Maybe) in every stall",
        format!("{timeouts} timeouts, {maybe} Sent::Maybe / {cycles} stalls"),
        timeouts >= cycles && maybe >= cycles,
    );
}

/// T2: a blackholed connection (the peer silently stops answering) for 1.5 s.
pub(crate) fn blackhole(mode: Mode) -> Outcome {
    let server = RedisServer::start().map_err(harness)?;
    let proxy = FaultProxy::start(server.addr()).map_err(harness)?;
    let run = Run::new(base(&format!("redis://{}", proxy.addr()))?)?;
    let cycles = if mode.quick { 2 } else { 10 };
    let mut dropped = Vec::new();
    let data = run.load("t2hole", None, |_| {
        let mut windows = Vec::new();
        for _ in 0..cycles {
            let before = proxy.dropped();
            let at = Instant::now();
            proxy.set(Fault::Blackhole);
            sleep(Duration::from_millis(1500));
            proxy.set(Fault::Pass);
            dropped.push(proxy.dropped() - before);
            windows.push((at, Instant::now()));
            sleep(Duration::from_millis(1500));
        }
        Ok(windows)
    })?;
    let mut r = run.report(
        "blackholed connection (1.5 s)",
        cycles as u64,
        &data,
        Errors::InWindows(BOUNDED),
    );
    let fewest = dropped.iter().copied().min().unwrap_or(0);
    r.effect(
        "the proxy dropped traffic in every blackhole",
        format!("fewest chunks dropped in one blackhole: {fewest}"),
        fewest >= 1,
    );
    timed_out_each(&mut r, &data, cycles as u64);
    r.data_intact();
    r.measure(
        "recovery p99 <= 2.5 s (hung detection + reconnect)",
        format!("{:.0} ms", r.recovery_p99_ms),
        r.recovery_p99_ms <= 2500.0,
    );
    Ok(r)
}

/// T2/T3: the server stopped with SIGSTOP for 1.5 s, then SIGCONT.
pub(crate) fn sigstop(mode: Mode) -> Outcome {
    let server = RedisServer::start().map_err(harness)?;
    let run = Run::new(base(&format!("redis://{}", server.addr()))?)?;
    let cycles = if mode.quick { 2 } else { 10 };
    let data = run.load("t3stop", None, |_| {
        let mut windows = Vec::new();
        for _ in 0..cycles {
            let at = Instant::now();
            server.pause().map_err(harness)?;
            sleep(Duration::from_millis(1500));
            server.resume().map_err(harness)?;
            windows.push((at, Instant::now()));
            sleep(Duration::from_millis(1500));
        }
        Ok(windows)
    })?;
    let mut r = run.report(
        "SIGSTOP / SIGCONT (1.5 s)",
        cycles as u64,
        &data,
        Errors::InWindows(BOUNDED),
    );
    timed_out_each(&mut r, &data, cycles as u64);
    r.data_intact();
    Ok(r)
}

/// T3: DEBUG SLEEP 1.5 (the server busy, the connection open).
pub(crate) fn debug_sleep(mode: Mode) -> Outcome {
    let server = RedisServer::start().map_err(harness)?;
    let run = Run::new(base(&format!("redis://{}", server.addr()))?)?;
    let cycles = if mode.quick { 2 } else { 10 };
    let mut slept = Vec::new();
    let data = run.load("t3sleep", None, |_| {
        let mut admin = server.admin().map_err(harness)?;
        admin
            .set_read_timeout(Duration::from_secs(5))
            .map_err(harness)?;
        let mut windows = Vec::new();
        for _ in 0..cycles {
            let at = Instant::now();
            admin.cmd(&["DEBUG", "SLEEP", "1.5"]).map_err(harness)?;
            slept.push(at.elapsed());
            windows.push((at, Instant::now()));
            sleep(Duration::from_millis(1500));
        }
        Ok(windows)
    })?;
    let mut r = run.report(
        "DEBUG SLEEP 1.5 s",
        cycles as u64,
        &data,
        Errors::InWindows(BOUNDED),
    );
    let shortest = slept.iter().min().copied().unwrap_or_default();
    r.effect(
        "the server was busy: each DEBUG SLEEP took >= 1.4 s",
        format!("shortest {shortest:?}"),
        slept.len() == cycles && shortest >= Duration::from_millis(1400),
    );
    timed_out_each(&mut r, &data, cycles as u64);
    r.data_intact();
    Ok(r)
}

/// T2: replies sliced into 1-byte writes for 2 s (incremental parsing).
pub(crate) fn one_byte_slices(mode: Mode) -> Outcome {
    let server = RedisServer::start().map_err(harness)?;
    let proxy = FaultProxy::start(server.addr()).map_err(harness)?;
    // The proxy pauses after every byte, on a thread of its own: on two busy cores its pauses
    // stretch to scheduler ticks and a few hundred bytes in flight can take a second to pass
    // (seen in CI with a build beside it; with two busy loops beside it, 1 run of 4 failed with
    // whole-batch dispatch and 3 of 4 with the share-at-a-time one). What is tested is the
    // parsing of sliced replies, not the proxy's speed: the response timeout gets room, and the
    // criterion stays zero errors.
    let run = Run::new(
        base(&format!("redis://{}", proxy.addr()))?.response_timeout(Duration::from_secs(5)),
    )?;
    let cycles = if mode.quick { 1 } else { 5 };
    // Proxy writes per call forwarded, while slicing and while passing.
    let (mut sliced, mut passed) = ((0u64, 0u64), (0u64, 0u64));
    let data = run.load("t2slice", None, |client| {
        let mut windows = Vec::new();
        let calls = || client.stats().commands;
        for _ in 0..cycles {
            let (w, c) = (proxy.writes(), calls());
            let at = Instant::now();
            proxy.set(Fault::Slice(1));
            sleep(Duration::from_secs(2));
            proxy.set(Fault::Pass);
            windows.push((at, Instant::now()));
            sliced.0 += proxy.writes() - w;
            sliced.1 += calls() - c;
            let (w, c) = (proxy.writes(), calls());
            sleep(Duration::from_millis(500));
            passed.0 += proxy.writes() - w;
            passed.1 += calls() - c;
        }
        Ok(windows)
    })?;
    let mut r = run.report("1-byte slicing (2 s)", cycles as u64, &data, Errors::Zero);
    let per = |(w, c): (u64, u64)| w as f64 / c.max(1) as f64;
    r.effect(
        "the proxy sliced: >= 10 writes per call while slicing (a call is >= 14 bytes)",
        format!(
            "{:.1} writes per call sliced ({} calls), {:.1} passing",
            per(sliced),
            sliced.1,
            per(passed)
        ),
        sliced.1 > 0 && per(sliced) >= 10.0,
    );
    r.data_intact();
    Ok(r)
}

/// T9: a long outage with a bounded queue: overflow fails at once, memory stays bounded, the
/// rest resolves by its deadline.
pub(crate) fn long_outage(mode: Mode) -> Outcome {
    let mut server = RedisServer::builder().aof().start().map_err(harness)?;
    let run = Run::new(base(&format!("redis://{}", server.addr()))?.queue_capacity(500))?;
    let outage = if mode.quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(5)
    };
    let rss_before = rss_kib();
    let mut rss_peak = rss_before;
    // A burst far over the queue's bound, offered while the server is down: what does not fit
    // must fail at once.
    let mut overflow = (0u64, 0u64, Duration::ZERO);
    let data = run.load("t9", None, |client| {
        let before = client.stats().reconnects;
        let at = Instant::now();
        server.kill9();
        sleep(Duration::from_millis(200));
        let burst = run.rt.block_on(async {
            let calls: Vec<_> = (0..2000)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let result = client.get::<Option<String>>(format!("chaos:t9:b{i}")).await;
                        (result, started.elapsed())
                    })
                })
                .collect();
            let mut out = Vec::new();
            for c in calls {
                if let Ok(r) = c.await {
                    out.push(r);
                }
            }
            out
        });
        for (result, took) in burst {
            if let Err(redis_client::Error::Connection(
                redis_client::layers::conn::Error::QueueFull { .. },
            )) = result
            {
                overflow.0 += 1;
                overflow.2 = overflow.2.max(took);
            } else {
                overflow.1 += 1;
            }
        }
        let until = at + outage;
        while Instant::now() < until {
            rss_peak = rss_peak.max(rss_kib());
            sleep(Duration::from_millis(100));
        }
        server.restart().map_err(harness)?;
        let healed = Instant::now();
        wait_reconnected(client, before)?;
        Ok(vec![(at, healed)])
    })?;
    let mut r = run.report(
        "outage with a bounded queue (500)",
        1,
        &data,
        Errors::InWindows(BOUNDED),
    );
    let growth_mb = (rss_peak.saturating_sub(rss_before)) as f64 / 1024.0;
    let (full, waited, slowest) = overflow;
    r.effect(
        "the queue bound was hit: overflow refused with QueueFull",
        format!("{full} of 2,000 refused, {waited} queued until their deadline"),
        full > 0,
    );
    reconnected_each(&mut r, &data, 1);
    r.measure(
        "a refusal is immediate (< 20 ms)",
        format!("slowest {slowest:?}"),
        slowest < Duration::from_millis(20),
    );
    r.measure(
        "RSS growth <= 50 MB",
        format!("{growth_mb:.1} MB"),
        growth_mb <= 50.0,
    );
    r.data_intact();
    Ok(r)
}

/// T11 + T1: kill -9 and restart of a TLS server (verified against its CA).
pub(crate) fn tls_kill9_restart(mode: Mode) -> Outcome {
    let certs = TestCerts::generate().map_err(harness)?;
    let mut server = RedisServer::builder()
        .aof()
        .tls(ServerTls {
            cert: certs.server.clone(),
            ca: certs.ca.clone(),
            require_client_cert: false,
        })
        .start()
        .map_err(harness)?;
    let addr = server.tls_addr().ok_or("no TLS port")?;
    let run = Run::new(base(&format!(
        "rediss://{addr}?ca_file={}",
        certs.ca.display()
    ))?)?;
    let cycles = if mode.quick { 2 } else { 10 };
    let data = run.load("t11", None, |client| {
        let mut windows = Vec::new();
        for _ in 0..cycles {
            let before = client.stats().reconnects;
            let at = Instant::now();
            server.kill9();
            sleep(Duration::from_millis(200));
            server.restart().map_err(harness)?;
            windows.push((at, Instant::now()));
            wait_reconnected(client, before)?;
            sleep(Duration::from_millis(300));
        }
        Ok(windows)
    })?;
    let bound = Duration::from_millis(1100) + run.rtts(20);
    let mut r = run.report(
        "TLS kill -9 / restart",
        cycles as u64,
        &data,
        Errors::InWindows(BOUNDED),
    );
    reconnected_each(&mut r, &data, cycles as u64);
    r.data_intact();
    r.measure(
        &format!("recovery p99 <= 1.1 s + 20 idle RTTs = {bound:?}"),
        format!("{:.0} ms", r.recovery_p99_ms),
        r.recovery_p99_ms <= bound.as_secs_f64() * 1000.0,
    );
    Ok(r)
}

fn cluster_url(cluster: &Cluster) -> String {
    let seeds: Vec<String> = cluster.seeds().iter().map(ToString::to_string).collect();
    format!("redis+cluster://{}", seeds.join(","))
}

/// Waits until node `i` reports itself master.
fn wait_master(cluster: &Cluster, i: usize, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let role = cluster.nodes()[i].cmd(&["ROLE"]).ok();
        if matches!(&role, Some(Value::Array(r)) if workload::text(&r[0]) == "master") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("node {i} did not become master"));
        }
        sleep(Duration::from_millis(20));
    }
}

/// Waits until node `i` is a replica whose link to its master is up (a restarted or demoted
/// node has rejoined).
fn wait_replica_synced(node: &RedisServer, within: Duration) -> Result<Duration, String> {
    wait_for("the node rejoined as a synced replica", within, || {
        matches!(node.cmd(&["ROLE"]), Ok(Value::Array(r))
            if workload::text(&r[0]) == "slave"
                && r.get(3).map(workload::text).as_deref() == Some("connected"))
    })
}

/// The slots node `i` serves as master, by its own `CLUSTER SLOTS`.
fn slots_of(cluster: &Cluster, i: usize) -> Result<Vec<std::ops::RangeInclusive<u16>>, String> {
    let port = i64::from(cluster.nodes()[i].port());
    let Value::Array(ranges) = cluster.nodes()[i]
        .cmd(&["CLUSTER", "SLOTS"])
        .map_err(harness)?
    else {
        return Err("CLUSTER SLOTS: not an array".into());
    };
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        if let (Some(Value::Integer(s)), Some(Value::Integer(e)), Some(Value::Array(m))) =
            (parts.first(), parts.get(1), parts.get(2))
        {
            if m.get(1) == Some(&Value::Integer(port)) {
                out.push(*s as u16..=*e as u16);
            }
        }
    }
    Ok(out)
}

/// T4: graceful CLUSTER FAILOVER rounds under load.
pub(crate) fn cluster_failover(mode: Mode) -> Outcome {
    let cluster = Cluster::start().map_err(harness)?;
    let run = Run::new(base(&cluster_url(&cluster))?)?;
    let cycles = if mode.quick { 2 } else { 10 };
    let data = run.load("t4graceful", None, |_| {
        let mut windows = Vec::new();
        for c in 0..cycles {
            let master = (0..cluster.nodes().len())
                .find(|&i| {
                    matches!(cluster.nodes()[i].cmd(&["ROLE"]), Ok(Value::Array(r))
                        if workload::text(&r[0]) == "master" && i % cluster.master_count() == c % cluster.master_count())
                })
                .ok_or("no master")?;
            let replica = cluster.replica_of(master).map_err(harness)?;
            let at = Instant::now();
            cluster.nodes()[replica]
                .cmd(&["CLUSTER", "FAILOVER"])
                .map_err(harness)?;
            wait_master(&cluster, replica, Duration::from_secs(10))?;
            windows.push((at, Instant::now()));
            wait_replica_synced(&cluster.nodes()[master], Duration::from_secs(10))?;
            sleep(Duration::from_millis(500));
        }
        Ok(windows)
    })?;
    let mut r = run.report(
        "cluster graceful failover",
        cycles as u64,
        &data,
        Errors::Zero,
    );
    let refreshes = data.after.topology_refreshes - data.before.topology_refreshes;
    r.effect(
        "the client saw the slots change hands (MOVED >= 1, a refresh per failover)",
        format!(
            "{} MOVED, {refreshes} refreshes / {cycles} failovers",
            r.moved
        ),
        r.moved >= 1 && refreshes >= cycles as u64,
    );
    r.data_intact();
    Ok(r)
}

/// T4: kill -9 of a cluster master; its replica is promoted; the old one comes back.
/// Measured on the victim shard's keys: the healthy shards must not notice.
pub(crate) fn cluster_kill9_master(mode: Mode) -> Outcome {
    let mut cluster = Cluster::builder()
        .args(["--cluster-require-full-coverage", "no"])
        .start()
        .map_err(harness)?;
    let run = Run::new(base(&cluster_url(&cluster))?)?;
    let cycles = if mode.quick { 1 } else { 5 };
    let mut promotions = Vec::new();
    let mut victim_slots = Vec::new();
    let data = run.load("t4kill", None, |_| {
        let mut windows = Vec::new();
        for c in 0..cycles {
            let master = (0..cluster.nodes().len())
                .filter(|&i| {
                    matches!(cluster.nodes()[i].cmd(&["ROLE"]), Ok(Value::Array(r))
                        if workload::text(&r[0]) == "master")
                })
                .nth(c % cluster.master_count())
                .ok_or("no master")?;
            let replica = cluster.replica_of(master).map_err(harness)?;
            victim_slots.push(slots_of(&cluster, master)?);
            let killed = Instant::now();
            cluster.nodes_mut()[master].kill9();
            wait_master(&cluster, replica, Duration::from_secs(15))?;
            promotions.push(killed.elapsed());
            windows.push((killed, Instant::now()));
            cluster.nodes_mut()[master].restart().map_err(harness)?;
            wait_replica_synced(&cluster.nodes()[master], Duration::from_secs(15))?;
            sleep(Duration::from_millis(500));
        }
        Ok(windows)
    })?;
    let on_victim = |cycle: usize, slot: u16| victim_slots[cycle].iter().any(|r| r.contains(&slot));
    let in_any_victim = |slot: u16| (0..victim_slots.len()).any(|c| on_victim(c, slot));
    // Recovery per cycle, on that cycle's victim keys only.
    let recovery: Vec<f64> = data
        .windows
        .iter()
        .enumerate()
        .filter_map(|(c, w)| {
            data.outcomes
                .recovery_on_ms(&[w.1], |s| on_victim(c, s))
                .first()
                .copied()
        })
        .collect();
    let failures = &data.outcomes.failures;
    let healthy: Vec<&workload::Failure> = failures
        .iter()
        .filter(|f| !f.keyless && !f.slots.iter().any(|s| in_any_victim(*s)))
        .collect();
    let healthy_errors = healthy.len();
    let healthy_text =
        match (data.windows.first(), healthy.first(), healthy.last()) {
            (Some(w), Some(first), Some(last)) => {
                format!(
            "{healthy_errors} ({} timeouts, {} Sent::Maybe; calls started {:.0} to {:.0} ms \
             after the kill, slots {:?})",
            healthy.iter().filter(|f| f.timeout).count(),
            healthy.iter().filter(|f| f.maybe).count(),
            (first.start.max(w.0) - w.0).as_secs_f64() * 1000.0,
            (last.start.max(w.0) - w.0).as_secs_f64() * 1000.0,
            healthy.iter().flat_map(|f| f.slots.iter()).take(6).collect::<Vec<_>>()
        )
            }
            _ => format!("{healthy_errors}"),
        };
    let victim_errors = failures
        .iter()
        .filter(|f| f.slots.iter().any(|s| in_any_victim(*s)))
        .count();
    let connects = (data.after.connect_failures - data.before.connect_failures) + data.reconnects();
    let bound = Duration::from_secs(1) + run.rtts(20);
    let promotions_text = format!("{promotions:?}");
    // A call with a keyless command (ECHO alone or in the pipeline) may have gone to the dead
    // master: it counts on neither side, but its errors must still lie in the fault window.
    let mut r = run.report(
        "cluster kill -9 of a master",
        cycles as u64,
        &data,
        Errors::InWindows(Duration::from_secs(1)),
    );
    r.recovery_p50_ms = workload::percentile(&recovery, 0.5);
    r.recovery_p99_ms = workload::percentile(&recovery, 0.99);
    r.notes.push(format!(
        "promotion took {promotions_text}; {} acknowledged writes lost, {} stale reads \
         (replication is asynchronous: reported, not a criterion)",
        r.lost, r.stale_reads
    ));
    r.effect(
        "calls on the victim's slots failed and the client dialled the dead node",
        format!("{victim_errors} errors on the victim's slots, {connects} connect attempts"),
        victim_errors >= 1 && connects >= 1,
    );
    r.measure(
        "zero errors on keys of the healthy shards (full coverage off)",
        healthy_text,
        healthy_errors == 0,
    );
    r.measure(
        &format!("the victim's keys are written again <= 1 s + 20 idle RTTs = {bound:?} after the promotion"),
        format!("{recovery:.0?} ms"),
        recovery.len() == cycles && recovery.iter().all(|ms| *ms <= bound.as_secs_f64() * 1000.0),
    );
    Ok(r)
}

/// T5: a slot holding 1,000 keys migrated with MIGRATE under load; half the load's tasks write
/// and read keys in that slot, so they meet ASK during the move and MOVED after it.
pub(crate) fn cluster_resharding(mode: Mode) -> Outcome {
    let cluster = Cluster::start().map_err(harness)?;
    let run = Run::new(base(&cluster_url(&cluster))?)?;
    let tag = "{chaos-reshard}";
    let slot = redis_client::layers::cluster::slot(tag.as_bytes());
    let keys: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("{tag}:{i}"), format!("v{i}")))
        .collect();
    run.rt
        .block_on(run.client.mset(&keys))
        .map_err(|e| e.to_string())?;
    let rounds = if mode.quick { 1 } else { 4 };
    let mut migrated = Vec::new();
    let data = run.load("t5", Some(tag), |_| {
        let mut windows = Vec::new();
        for _ in 0..rounds {
            let from = cluster.master_of_slot(slot).map_err(harness)?;
            let to = (0..cluster.master_count())
                .find(|&i| i != from)
                .ok_or("no other master")?;
            let at = Instant::now();
            // 20 keys per MIGRATE, 5 ms apart: about 300 ms of a slot half moved, so the load
            // meets ASK on any machine (unpaced, 1,000 keys moved in ~20 ms and a run could
            // see none).
            let pause = Duration::from_millis(5);
            migrated.push(
                cluster
                    .migrate_slot_paced(slot, from, to, 20, pause)
                    .map_err(harness)?,
            );
            windows.push((at, Instant::now()));
            sleep(Duration::from_millis(1000));
        }
        Ok(windows)
    })?;
    // The keys moved with the slot must all be there.
    let moved = Outcomes {
        acked: keys,
        ..Outcomes::default()
    };
    let moved_lost = run.rt.block_on(workload::verify(&run.client, &moved)).lost;
    let hot_ops = data
        .outcomes
        .ok_slots
        .iter()
        .filter(|(t, s)| {
            *s == slot
                && data
                    .windows
                    .iter()
                    .any(|w| *t >= w.0 && *t <= w.1 + Duration::from_secs(1))
        })
        .count();
    let mut r = run.report(
        "cluster resharding under load",
        rounds as u64,
        &data,
        Errors::Zero,
    );
    r.effect(
        "the load met the move: ASK during it and MOVED after it",
        format!(
            "{} ASK, {} MOVED; {migrated:?} keys migrated; {hot_ops} calls on the slot from the \
             move to 1 s after",
            r.ask, r.moved
        ),
        r.ask >= 1 && r.moved >= 1,
    );
    r.data_intact();
    r.measure(
        "the 1,000 pre-loaded keys of the slot are all there",
        format!("{moved_lost} missing"),
        moved_lost == 0,
    );
    Ok(r)
}

/// Live scale-out and scale-in with Redis's own tools under a verified load (issue 20): a new
/// master joins with `redis-cli --cluster add-node` and takes slots from every master with
/// `reshard`, a replica joins it with `--cluster-slave`, the new master serves its share; then
/// its slots go back with `reshard`, both nodes leave with `del-node`, and `rebalance` evens the
/// three masters out. Zero errors, no acknowledged write lost, and no connection of the client
/// left on a departed node.
pub(crate) fn cluster_scale_out_and_in(mode: Mode) -> Outcome {
    let cluster = Cluster::start().map_err(harness)?;
    let run = Run::new(base(&cluster_url(&cluster))?)?;
    let slots = if mode.quick { 1000 } else { 4096 };
    let slots_arg = slots.to_string();
    let seed = cluster.nodes()[0].addr().to_string();
    let newcomer = RedisServer::builder().cluster().start().map_err(harness)?;
    let newcomer_replica = RedisServer::builder().cluster().start().map_err(harness)?;
    let (new_addr, replica_addr) = (
        newcomer.addr().to_string(),
        newcomer_replica.addr().to_string(),
    );
    let new_id = newcomer.node_id().map_err(harness)?;
    let replica_id = newcomer_replica.node_id().map_err(harness)?;
    let first_id = cluster.nodes()[0].node_id().map_err(harness)?;
    let mut served = 0;
    let data = run.load("scale", None, |_| {
        let at = Instant::now();
        wait_cluster_agrees(&seed, Duration::from_secs(20)).map_err(harness)?;
        redis_cli(&["--cluster", "add-node", &new_addr, &seed]).map_err(harness)?;
        cluster
            .wait_all_know(&new_id, Duration::from_secs(20))
            .map_err(harness)?;
        newcomer
            .wait_cluster_ok(Duration::from_secs(20))
            .map_err(harness)?;
        wait_cluster_agrees(&seed, Duration::from_secs(20)).map_err(harness)?;
        redis_cli(&[
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            "all",
            "--cluster-to",
            &new_id,
            "--cluster-slots",
            &slots_arg,
            "--cluster-yes",
        ])
        .map_err(harness)?;
        wait_cluster_agrees(&seed, Duration::from_secs(20)).map_err(harness)?;
        redis_cli(&[
            "--cluster",
            "add-node",
            &replica_addr,
            &seed,
            "--cluster-slave",
            "--cluster-master-id",
            &new_id,
        ])
        .map_err(harness)?;
        cluster
            .wait_all_know(&replica_id, Duration::from_secs(20))
            .map_err(harness)?;
        newcomer_replica
            .wait_cluster_ok(Duration::from_secs(20))
            .map_err(harness)?;
        wait_cluster_agrees(&seed, Duration::from_secs(20)).map_err(harness)?;
        // The new master serves its share of the load for a while.
        let before = newcomer.command_calls("set").map_err(harness)?;
        sleep(Duration::from_secs(1));
        served = newcomer.command_calls("set").map_err(harness)? - before;
        redis_cli(&[
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &new_id,
            "--cluster-to",
            &first_id,
            "--cluster-slots",
            &slots_arg,
            "--cluster-yes",
        ])
        .map_err(harness)?;
        wait_cluster_agrees(&seed, Duration::from_secs(20)).map_err(harness)?;
        redis_cli(&["--cluster", "del-node", &seed, &replica_id]).map_err(harness)?;
        wait_cluster_agrees(&seed, Duration::from_secs(20)).map_err(harness)?;
        redis_cli(&["--cluster", "del-node", &seed, &new_id]).map_err(harness)?;
        wait_cluster_agrees(&seed, Duration::from_secs(20)).map_err(harness)?;
        redis_cli(&["--cluster", "rebalance", &seed]).map_err(harness)?;
        wait_cluster_agrees(&seed, Duration::from_secs(20)).map_err(harness)?;
        Ok(vec![(at, Instant::now())])
    })?;
    // No connection of the client stays on a node that left (the admin's own is the one left).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lingering = Vec::new();
    while Instant::now() < deadline {
        lingering = [&newcomer, &newcomer_replica]
            .iter()
            .flat_map(|n| {
                n.admin()
                    .and_then(|mut a| a.cmd_string(&["CLIENT", "LIST"]))
                    .map(|list| {
                        list.lines()
                            // Redis's own: the admin asking, other nodes' cached MIGRATE
                            // connections, replication links.
                            .filter(|l| {
                                !l.contains("cmd=client|list")
                                    && !l.contains("cmd=restore-asking")
                                    && !l.contains("flags=S")
                            })
                            .map(|l| format!("{}: {l}", n.addr()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        if lingering.is_empty() {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    let mut r = run.report(
        "cluster scale-out and scale-in (redis-cli)",
        1,
        &data,
        Errors::Zero,
    );
    r.effect(
        "the new master served its share, the load met the moves",
        format!(
            "{slots} slots there and back; {served} SETs on the new master in 1 s; {} MOVED, \
             {} ASK",
            r.moved, r.ask
        ),
        served > 0 && r.moved >= 1,
    );
    r.data_intact();
    r.measure(
        "no connection left on the departed nodes",
        format!("{} left {lingering:?}", lingering.len()),
        lingering.is_empty(),
    );
    Ok(r)
}

/// T7: a replica killed under reads from replicas: reads fall back to the master.
pub(crate) fn replica_killed_under_reads(mode: Mode) -> Outcome {
    let mut cluster = Cluster::start().map_err(harness)?;
    let run = Run::new(base(&cluster_url(&cluster))?.read_from_replicas(true))?;
    let cycles = if mode.quick { 1 } else { 3 };
    let mut gets_served = Vec::new();
    let data = run.load("t7", None, |_| {
        let mut windows = Vec::new();
        for c in 0..cycles {
            let replica = cluster
                .replica_of(c % cluster.master_count())
                .map_err(harness)?;
            gets_served.push(
                cluster.nodes()[replica]
                    .command_calls("get")
                    .map_err(harness)?,
            );
            let at = Instant::now();
            cluster.nodes_mut()[replica].kill9();
            sleep(Duration::from_secs(2));
            cluster.nodes_mut()[replica].restart().map_err(harness)?;
            windows.push((at, Instant::now()));
            wait_replica_synced(&cluster.nodes()[replica], Duration::from_secs(10))?;
            sleep(Duration::from_millis(500));
        }
        Ok(windows)
    })?;
    let mut r = run.report(
        "replica killed under replica reads",
        cycles as u64,
        &data,
        Errors::Zero,
    );
    let fewest = gets_served.iter().copied().min().unwrap_or(0);
    r.effect(
        "each killed replica was serving the load's reads",
        format!("fewest GETs served by a replica before its kill: {fewest}"),
        gets_served.len() == cycles && fewest >= 1,
    );
    r.data_intact();
    Ok(r)
}

fn sentinel_url(set: &SentinelSet) -> String {
    let s: Vec<String> = set
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    format!("redis+sentinel://{}/{MASTER_NAME}", s.join(","))
}

/// The criterion that the client followed every switch.
fn followed_each(r: &mut Report, data: &Data, cycles: u64) {
    let followed = data.after.failovers - data.before.failovers;
    r.effect(
        "the client followed every switch (failovers followed >= switches)",
        format!("{followed} followed / {cycles} switches"),
        followed >= cycles,
    );
}

/// T6: SENTINEL FAILOVER rounds under load.
pub(crate) fn sentinel_failover(mode: Mode) -> Outcome {
    let set = SentinelSet::start().map_err(harness)?;
    let run = Run::new(base(&sentinel_url(&set))?)?;
    let cycles = if mode.quick { 2 } else { 5 };
    let data = run.load("t6failover", None, |_| {
        let mut windows = Vec::new();
        for _ in 0..cycles {
            let old = set.master_addr().map_err(harness)?;
            let old_i = set.master_index().map_err(harness)?;
            let at = Instant::now();
            set.sentinels()[0]
                .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
                .map_err(harness)?;
            set.wait_for_new_master(old, Duration::from_secs(30))
                .map_err(harness)?;
            windows.push((at, Instant::now()));
            // The old master is demoted and resynced; the next failover needs it settled.
            wait_replica_synced(&set.servers()[old_i], Duration::from_secs(20))?;
            sleep(Duration::from_millis(500));
        }
        Ok(windows)
    })?;
    let mut r = run.report(
        "sentinel failover",
        cycles as u64,
        &data,
        Errors::InWindows(Duration::from_secs(1)),
    );
    followed_each(&mut r, &data, cycles as u64);
    r.data_intact();
    Ok(r)
}

/// T6: kill -9 of the sentinel-managed master; the old one restarted after the switch.
pub(crate) fn sentinel_kill9_master(mode: Mode) -> Outcome {
    let mut set = SentinelSet::start().map_err(harness)?;
    let run = Run::new(base(&sentinel_url(&set))?)?;
    let cycles = if mode.quick { 1 } else { 3 };
    let mut switches = Vec::new();
    let data = run.load("t6kill", None, |_| {
        let mut windows = Vec::new();
        for c in 0..cycles {
            let old = set.master_addr().map_err(harness)?;
            let i = set.master_index().map_err(harness)?;
            let killed = Instant::now();
            set.servers_mut()[i].kill9();
            set.wait_for_new_master(old, Duration::from_secs(30))
                .map_err(harness)?;
            switches.push(killed.elapsed());
            windows.push((killed, Instant::now()));
            set.servers_mut()[i].restart().map_err(harness)?;
            if c + 1 < cycles {
                // The restarted stale master is converted to a replica about 10 s later.
                wait_replica_synced(&set.servers()[i], Duration::from_secs(30))?;
            }
        }
        Ok(windows)
    })?;
    let bound = Duration::from_secs(1) + run.rtts(20);
    let mut r = run.report(
        "sentinel kill -9 of the master",
        cycles as u64,
        &data,
        Errors::InWindows(Duration::from_secs(1)),
    );
    r.notes.push(format!(
        "the sentinels switched {switches:?} after the kill; {} acknowledged writes lost, {} \
         stale reads (asynchronous replication: reported, not a criterion)",
        r.lost, r.stale_reads
    ));
    followed_each(&mut r, &data, cycles as u64);
    r.measure(
        &format!("writes succeed within 1 s + 20 idle RTTs = {bound:?} of the switch"),
        format!("p99 {:.0} ms", r.recovery_p99_ms),
        r.recovery_p99_ms <= bound.as_secs_f64() * 1000.0,
    );
    Ok(r)
}

/// T6: one of three sentinels down, then a failover.
pub(crate) fn sentinel_one_down(_mode: Mode) -> Outcome {
    let mut set = SentinelSet::start().map_err(harness)?;
    let run = Run::new(base(&sentinel_url(&set))?)?;
    let mut down = false;
    let data = run.load("t6down", None, |_| {
        set.sentinels_mut()[0].kill9();
        down = !set.sentinels_mut()[0].is_running();
        let old = set.master_addr().map_err(harness)?;
        let at = Instant::now();
        set.sentinels()[1]
            .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
            .map_err(harness)?;
        set.wait_for_new_master(old, Duration::from_secs(30))
            .map_err(harness)?;
        Ok(vec![(at, Instant::now())])
    })?;
    let mut r = run.report(
        "one sentinel down, then a failover",
        2,
        &data,
        Errors::InWindows(Duration::from_secs(1)),
    );
    r.effect("the first sentinel was down", format!("down: {down}"), down);
    followed_each(&mut r, &data, 1);
    r.data_intact();
    Ok(r)
}

/// T8: blocking commands from 200 tasks over an exclusive pool of 8, with cancellations.
pub(crate) fn pool_oversubscription(mode: Mode) -> Outcome {
    let server = RedisServer::start().map_err(harness)?;
    let run = Run::new(
        base(&format!("redis://{}", server.addr()))?
            .pool_size(8)
            .pool_acquire_timeout(Duration::from_millis(200)),
    )?;
    let seconds = if mode.quick { 3 } else { 20 };
    let mut peak_clients = 0;
    let mut peak_fds = 0;
    let fds_before = run.fds_before;
    let cancelled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let data = run.load("t8", None, |client| {
        let _enter = run.rt.enter();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let blockers: Vec<_> = (0..200)
            .map(|t| {
                let (client, stop) = (client.clone(), std::sync::Arc::clone(&stop));
                let cancelled = std::sync::Arc::clone(&cancelled);
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        i += 1;
                        let wait = client.blpop::<Option<(String, String)>>(
                            format!("chaos:t8:q{}", t % 10),
                            Duration::from_millis(20),
                        );
                        // Every third call is abandoned before its reply.
                        if i % 3 == 0 {
                            if tokio::time::timeout(Duration::from_millis(2), wait)
                                .await
                                .is_err()
                            {
                                cancelled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        } else {
                            let _ = wait.await;
                        }
                    }
                })
            })
            .collect();
        let at = Instant::now();
        let until = at + Duration::from_secs(seconds);
        let mut admin = server.admin().map_err(harness)?;
        while Instant::now() < until {
            let list = admin.cmd_string(&["CLIENT", "LIST"]).map_err(harness)?;
            peak_clients = peak_clients.max(list.lines().count());
            peak_fds = peak_fds.max(open_fds());
            sleep(Duration::from_millis(10));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        run.rt.block_on(async {
            for b in blockers {
                let _ = b.await;
            }
        });
        Ok(vec![(at, Instant::now())])
    })?;
    let mut r = run.report(
        "pool oversubscription with cancellations",
        1,
        &data,
        Errors::Zero,
    );
    let cancelled = cancelled.load(std::sync::atomic::Ordering::Relaxed);
    r.effect(
        "the pool was oversubscribed and calls were cancelled mid-flight",
        format!("peak {peak_clients} server connections, {cancelled} calls cancelled"),
        peak_clients >= 10 && cancelled >= 1,
    );
    r.notes.push(format!(
        "peak server connections {peak_clients} (8 pooled + 1 shared + the admin), peak fds \
         baseline + {}",
        peak_fds.saturating_sub(fds_before)
    ));
    r.measure(
        "server connections <= 8 pooled + 1 shared + admin",
        format!("{peak_clients}"),
        peak_clients <= 10,
    );
    r.measure(
        "process fds <= baseline + 8 + 1 + 2",
        format!("baseline + {}", peak_fds.saturating_sub(fds_before)),
        peak_fds <= fds_before + 11,
    );
    Ok(r)
}
