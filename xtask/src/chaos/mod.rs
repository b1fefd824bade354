//! `cargo xtask chaos [--quick]`: the reliability contract (RELIABILITY.md C1, C3) proved under
//! faults, against real servers, one scenario at a time, with no retry of a failed scenario.
//! Writes `target/chaos/report.md` and `target/chaos/report.json` and fails when a criterion
//! does not hold.
//!
//! Every scenario must show that its fault took effect (reconnects per kill, CLIENT KILL's count,
//! the proxy's own counts, timeouts in a stall, MOVED/ASK where slots move, a followed
//! failover), that the load was held (>= 80 % of the offered rate, >= 80 % of the SETs started
//! outside the fault windows acknowledged, no panic), and that errors stayed within its bound
//! (none, or only in calls overlapping a fault window plus a documented grace). Each criterion
//! is reported with the value it was judged on.
//!
//! `--quick` (CI) runs a few fault cycles per scenario; the long mode runs many, and the decoder
//! fuzz targets for a bounded time when a nightly toolchain with cargo-fuzz is there.

mod scenarios;
mod workload;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How much to run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    pub(crate) quick: bool,
}

/// What one scenario measured, and whether each of its criteria held.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub(crate) name: &'static str,
    pub(crate) ops: u64,
    pub(crate) ops_per_sec: f64,
    pub(crate) faults: u64,
    pub(crate) errors: u64,
    pub(crate) errors_by_kind: BTreeMap<String, u64>,
    pub(crate) unknown_outcome: u64,
    pub(crate) lost: u64,
    pub(crate) misrouted: u64,
    pub(crate) deadline_exceeded: u64,
    pub(crate) counters_low: u64,
    pub(crate) counters_high: u64,
    pub(crate) recovery_p50_ms: f64,
    pub(crate) recovery_p99_ms: f64,
    pub(crate) p99_latency_ms: f64,
    pub(crate) reconnect_attempts: u64,
    pub(crate) topology_refreshes: u64,
    pub(crate) failovers: u64,
    pub(crate) fd_delta: i64,
    pub(crate) seconds: f64,
    /// What the fault measurably did (the scenario's effect criterion, in short).
    pub(crate) effect: String,
    /// Median round trip of an idle `PING` before the load, in ms: latency bounds are set
    /// relative to it.
    pub(crate) idle_rtt_ms: f64,
    pub(crate) timeouts: u64,
    pub(crate) stale_reads: u64,
    pub(crate) moved: u64,
    pub(crate) ask: u64,
    /// Each criterion: what must hold, the measured value, whether it held.
    pub(crate) criteria: Vec<(String, String, bool)>,
    pub(crate) notes: Vec<String>,
    /// The step could not run here (a missing tool): neither a pass nor a failure.
    pub(crate) skipped: bool,
}

impl Report {
    pub(crate) fn new(name: &'static str) -> Report {
        Report {
            name,
            ..Report::default()
        }
    }

    pub(crate) fn check(&mut self, what: &str, held: bool) {
        self.criteria.push((what.to_string(), String::new(), held));
    }

    /// A criterion with the value it was judged on.
    pub(crate) fn measure(&mut self, what: &str, measured: impl Into<String>, held: bool) {
        self.criteria
            .push((what.to_string(), measured.into(), held));
    }

    /// The criterion that the fault took effect; it fails with a message saying it took none.
    pub(crate) fn effect(&mut self, what: &str, measured: impl Into<String>, held: bool) {
        let measured = measured.into();
        self.effect = if self.effect.is_empty() {
            measured.clone()
        } else {
            format!("{}; {measured}", self.effect)
        };
        let what = if held {
            format!("the fault took effect: {what}")
        } else {
            format!("the fault took NO effect (the scenario proves nothing): {what}")
        };
        self.criteria.push((what, measured, held));
    }

    pub(crate) fn pass(&self) -> bool {
        !self.criteria.is_empty() && self.criteria.iter().all(|(_, _, held)| *held)
    }

    fn json(&self) -> serde_json::Value {
        let criteria: Vec<serde_json::Value> = self
            .criteria
            .iter()
            .map(|(what, measured, held)| {
                serde_json::json!({ "criterion": what, "measured": measured, "held": held })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "ops": self.ops,
            "ops_per_sec": (self.ops_per_sec * 10.0).round() / 10.0,
            "faults": self.faults,
            "errors": self.errors,
            "errors_by_kind": self.errors_by_kind,
            "unknown_outcome": self.unknown_outcome,
            "lost": self.lost,
            "misrouted": self.misrouted,
            "deadline_exceeded": self.deadline_exceeded,
            "counters_below_acked": self.counters_low,
            "counters_above_acked_plus_unknown": self.counters_high,
            "recovery_p50_ms": (self.recovery_p50_ms * 10.0).round() / 10.0,
            "recovery_p99_ms": (self.recovery_p99_ms * 10.0).round() / 10.0,
            "p99_latency_ms": (self.p99_latency_ms * 10.0).round() / 10.0,
            "reconnect_attempts": self.reconnect_attempts,
            "topology_refreshes": self.topology_refreshes,
            "failovers": self.failovers,
            "fd_delta": self.fd_delta,
            "effect": self.effect,
            "idle_rtt_ms": (self.idle_rtt_ms * 1000.0).round() / 1000.0,
            "timeouts": self.timeouts,
            "stale_reads": self.stale_reads,
            "moved": self.moved,
            "ask": self.ask,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "criteria": criteria,
            "notes": self.notes,
            "skipped": self.skipped,
            "pass": self.pass(),
        })
    }
}

type Scenario = fn(Mode) -> Result<Report, String>;

const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "standalone kill -9 / restart (AOF)",
        scenarios::standalone_kill9_restart,
    ),
    ("CLIENT KILL under load", scenarios::client_kill),
    ("proxy reset (RST) under load", scenarios::proxy_reset),
    ("blackholed connection (1.5 s)", scenarios::blackhole),
    ("SIGSTOP / SIGCONT (1.5 s)", scenarios::sigstop),
    ("DEBUG SLEEP 1.5 s", scenarios::debug_sleep),
    ("1-byte slicing (2 s)", scenarios::one_byte_slices),
    ("outage with a bounded queue (500)", scenarios::long_outage),
    ("TLS kill -9 / restart", scenarios::tls_kill9_restart),
    ("cluster graceful failover", scenarios::cluster_failover),
    (
        "cluster kill -9 of a master",
        scenarios::cluster_kill9_master,
    ),
    (
        "cluster resharding under load",
        scenarios::cluster_resharding,
    ),
    (
        "cluster scale-out and scale-in (redis-cli)",
        scenarios::cluster_scale_out_and_in,
    ),
    (
        "replica killed under replica reads",
        scenarios::replica_killed_under_reads,
    ),
    ("sentinel failover", scenarios::sentinel_failover),
    (
        "sentinel kill -9 of the master",
        scenarios::sentinel_kill9_master,
    ),
    (
        "one sentinel down, then a failover",
        scenarios::sentinel_one_down,
    ),
    (
        "pool oversubscription with cancellations",
        scenarios::pool_oversubscription,
    ),
];

/// Runs the suite; `Err` when a scenario failed (the report is written either way).
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mode = Mode {
        quick: args.iter().any(|a| a == "--quick"),
    };
    let only: Option<&String> = args.iter().find(|a| !a.starts_with("--"));
    // `--server=valkey`: the same scenarios against Valkey 8.1 (fetched once), whose build has
    // no TLS: the TLS scenario is left out.
    let valkey = args.iter().any(|a| a == "--server=valkey");
    if valkey {
        let (binary, cli) = crate::deps::valkey()?;
        std::env::set_var(test_support::SERVER_BIN_ENV, &binary);
        std::env::set_var(test_support::CLI_BIN_ENV, &cli);
    }
    let server = server_version();
    println!("chaos against {server}");
    let started = Instant::now();
    let mut reports = Vec::new();
    for (name, scenario) in SCENARIOS {
        if only.is_some_and(|o| !name.contains(o.as_str())) || (valkey && name.contains("TLS")) {
            continue;
        }
        println!("== {name}");
        let t = Instant::now();
        // A panic in a scenario is a failure of that scenario, not of the suite.
        let result = std::panic::catch_unwind(|| scenario(mode))
            .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))));
        let mut report = match result {
            Ok(r) => r,
            Err(e) => {
                let mut r = Report::new(name);
                r.notes.push(format!("the scenario could not run: {e}"));
                r.check("the scenario ran", false);
                r
            }
        };
        report.seconds = t.elapsed().as_secs_f64();
        print_report(&report);
        reports.push(report);
    }
    if mode.quick {
        println!("(fuzzing runs in the long mode only)");
    } else {
        reports.push(fuzz());
    }
    let dir = write_reports(&reports, mode, started.elapsed(), valkey, &server)?;
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.skipped && !r.pass())
        .map(|r| r.name)
        .collect();
    let skipped = reports.iter().filter(|r| r.skipped).count();
    println!(
        "\n{} scenario(s), {} passed, {skipped} skipped, in {:.0} s; report in {}",
        reports.len(),
        reports.len() - failed.len() - skipped,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join("; ")))
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "?".into())
}

fn print_report(r: &Report) {
    println!(
        "  {} ops at {:.0}/s, {} faults, {} errors {:?}, {} unknown outcome, {} lost, {} \
         misrouted, {} past deadline, recovery p50 {:.0} ms p99 {:.0} ms, {} reconnect attempts, \
         {} topology refreshes, {} failovers, fds {:+}",
        r.ops,
        r.ops_per_sec,
        r.faults,
        r.errors,
        r.errors_by_kind,
        r.unknown_outcome,
        r.lost,
        r.misrouted,
        r.deadline_exceeded,
        r.recovery_p50_ms,
        r.recovery_p99_ms,
        r.reconnect_attempts,
        r.topology_refreshes,
        r.failovers,
        r.fd_delta
    );
    for note in &r.notes {
        println!("  note: {note}");
    }
    for (what, measured, held) in &r.criteria {
        println!(
            "  [{}] {what}{}",
            if *held { "ok" } else { "FAIL" },
            if measured.is_empty() {
                String::new()
            } else {
                format!(" -- measured: {measured}")
            }
        );
    }
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join("target")
        })
}

/// The first line of the server binary's `--version`.
fn server_version() -> String {
    let binary = test_support::server_binary();
    std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or(binary)
}

fn write_reports(
    reports: &[Report],
    mode: Mode,
    took: Duration,
    valkey: bool,
    server: &str,
) -> Result<PathBuf, String> {
    let dir = target_dir().join(if valkey { "chaos-valkey" } else { "chaos" });
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let json: Vec<serde_json::Value> = reports.iter().map(Report::json).collect();
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("report.json"), text).map_err(|e| e.to_string())?;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Chaos report ({} mode, {:.0} s, {server})\n\nLoad: 2,000 ops/s from 32 tasks (SET of unique keys, \
         ECHO tokens, INCR counters, GET), response timeout 1 s. Lost: acknowledged SETs missing \
         at the end. Misrouted: ECHO replies that were not their token. Past deadline: calls \
         longer than 1 s + 250 ms. Recovery: fault healed to the next successful call (on the killed \
         shard's keys for the cluster kill). Load held: >= 80 % of the offered rate and of the \
         SETs started outside the fault windows acknowledged. Effect: \
         what the fault measurably did (a scenario whose fault took no effect fails). Each \
         criterion below carries the value it was judged on.\n",
        if mode.quick { "quick" } else { "long" },
        took.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| scenario | ops/s | faults | effect | errors | timeouts | unknown | lost | misrouted | \
         past deadline | recovery p50 / p99 ms | reconnect attempts | refreshes | pass |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in reports {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} / {:.0} | {} | {} | {} |",
            r.name,
            r.ops_per_sec,
            r.faults,
            r.effect,
            r.errors,
            r.timeouts,
            r.unknown_outcome,
            r.lost,
            r.misrouted,
            r.deadline_exceeded,
            r.recovery_p50_ms,
            r.recovery_p99_ms,
            r.reconnect_attempts,
            r.topology_refreshes,
            if r.skipped {
                "skipped"
            } else if r.pass() {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    let _ = writeln!(md, "\n## Criteria and notes\n");
    for r in reports {
        let _ = writeln!(md, "**{}** ({:.0} s)", r.name, r.seconds);
        for (what, measured, held) in &r.criteria {
            let _ = write!(md, "- [{}] {what}", if *held { "x" } else { " " });
            if !measured.is_empty() {
                let _ = write!(md, " (measured: {measured})");
            }
            let _ = writeln!(md);
        }
        for note in &r.notes {
            let _ = writeln!(md, "- note: {note}");
        }
        if !r.errors_by_kind.is_empty() {
            let _ = writeln!(md, "- errors by kind: {:?}", r.errors_by_kind);
        }
        let _ = writeln!(md);
    }
    std::fs::write(dir.join("report.md"), md).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The decoder's fuzz targets for a bounded time each (long mode). They need a nightly
/// toolchain and cargo-fuzz; without them the report says so instead of failing.
fn fuzz() -> Report {
    let mut r = Report::new("fuzzing the decoder (cargo fuzz, 60 s per target)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("fuzz");
    let started = Instant::now();
    let available = std::process::Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .current_dir(&root)
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        r.notes.push(
            "not run: needs a nightly toolchain and cargo-fuzz (`rustup toolchain install \
             nightly`, `cargo install cargo-fuzz`)"
                .into(),
        );
        r.skipped = true;
        return r;
    }
    for target in ["decode_oneshot", "decode_streaming"] {
        let status = std::process::Command::new("cargo")
            .args([
                "+nightly",
                "fuzz",
                "run",
                target,
                "--",
                "-max_total_time=60",
            ])
            .current_dir(&root)
            .status();
        match status {
            Ok(s) if s.success() => r.check(&format!("{target}: no crash in 60 s"), true),
            Ok(s) => r.check(
                &format!("{target}: a crash (exit {s}); its input is in fuzz/artifacts/{target}/"),
                false,
            ),
            Err(e) => r.check(&format!("{target}: could not run ({e})"), false),
        }
    }
    r.seconds = started.elapsed().as_secs_f64();
    r
}
