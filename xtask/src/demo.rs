//! The main job: throwaway Redis deployments on loopback (a server, a 3+3 cluster, a sentinel
//! set, a TLS-only cluster), and `rcli` driven through a tour a newcomer can follow: commands, a
//! pipeline, MGET across slots, reads from replicas, and benches with a server killed, a cluster
//! failover (plain and TLS) and a sentinel failover in the middle, with the events and the verified writes on screen. Every
//! process it starts is stopped at the end.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::{Cluster, RedisServer, SentinelSet, ServerTls, TestCerts, MASTER_NAME};

/// Builds rcli (release: the bench figures mean something) and returns its path.
fn build_rcli() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("building rcli (release)...");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "-p", "rcli"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building rcli failed ({status})"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release").join("rcli"))
}

struct Tour {
    rcli: PathBuf,
}

impl Tour {
    fn step(&self, title: &str) {
        println!("\n== {title}");
    }

    /// Runs rcli, shows the command line and what it printed.
    fn show(&self, args: &[&str]) -> Result<String, String> {
        println!("$ rcli {}", args.join(" "));
        let out = Command::new(&self.rcli)
            .args(args)
            .env_remove("REDIS_CONFIG")
            .env_remove("REDIS_PROFILE")
            .output()
            .map_err(|e| format!("cannot run rcli: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in text.lines() {
            println!("  {line}");
        }
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            println!("  {line}");
        }
        Ok(text)
    }

    /// Feeds lines to rcli's stdin (one pipeline) and shows the replies.
    fn pipe(&self, args: &[&str], input: &str) -> Result<(), String> {
        println!(
            "$ printf '{}' | rcli {}",
            input.replace('\n', "\\n"),
            args.join(" ")
        );
        let mut child = Command::new(&self.rcli)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run rcli: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        Ok(())
    }

    /// A graceful `CLUSTER FAILOVER` of the first master of `cluster` in the middle of a
    /// verified write load: nothing acknowledged may be lost (`why` says why not).
    fn failover_under_load(
        &self,
        conn: &[String],
        cluster: &Cluster,
        title: &str,
        why: &str,
    ) -> Result<(), String> {
        self.step(title);
        let first_master = cluster.nodes()[0].addr();
        let summary = self.bench_with_fault(
            conn,
            FAILOVER_BENCH,
            Duration::from_millis(1500),
            &mut || fail_over(cluster, first_master),
        )?;
        expect_no_loss(&summary, why)
    }

    /// Runs a bench in the background with events on, calls `fault` once the bench has run
    /// for `after`, streams the events as they come, and shows the summary.
    fn bench_with_fault(
        &self,
        conn: &[String],
        bench: &[&str],
        after: Duration,
        fault: &mut dyn FnMut() -> Result<String, String>,
    ) -> Result<serde_json::Value, String> {
        let mut args: Vec<String> = conn.to_vec();
        args.push("--events".into());
        args.push("bench".into());
        args.extend(bench.iter().map(|s| s.to_string()));
        args.push("--json".into());
        println!("$ rcli {}", args.join(" "));
        let mut child = Command::new(&self.rcli)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run rcli: {e}"))?;
        let started = Instant::now();
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let events = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                println!("  [{:>5.2}s] {line}", started.elapsed().as_secs_f64());
            }
        });
        std::thread::sleep(after);
        let what = fault()?;
        println!("  [{:>5.2}s] >>> {what}", started.elapsed().as_secs_f64());
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let _ = events.join();
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("the bench printed no JSON summary ({e})"))?;
        println!(
            "  summary: {} ops at {} ops/s, {} errors {}, p99 {} us; retries {}, reconnects {}, \
             moved {}, topology refreshes {}, failovers {}",
            summary["ops"],
            summary["ops_per_sec"],
            summary["errors"],
            summary["errors_by_kind"],
            summary["p99_us"],
            summary["retries"],
            summary["reconnects"],
            summary["moved"],
            summary["topology_refreshes"],
            summary["failovers"],
        );
        println!(
            "  verified: {} acknowledged writes read back, {} lost, {} with an unknown outcome \
             (reported to the caller as 'may have run', never as success)",
            summary["verified"], summary["lost"], summary["unknown_outcome"]
        );
        Ok(summary)
    }
}

pub(crate) fn run() -> Result<(), String> {
    let started = Instant::now();
    let tour = Tour {
        rcli: build_rcli()?,
    };
    let e = |e: test_support::HarnessError| e.to_string();

    // 1. One server.
    let mut server = RedisServer::builder().aof().start().map_err(e)?;
    let url = format!("redis://{}", server.addr());
    tour.step(&format!(
        "a throwaway redis-server on {} (pid {}, AOF fsync always)",
        server.addr(),
        server.pid().unwrap_or(0)
    ));
    tour.show(&["--url", &url, "SET", "greeting", "hello from rcli"])?;
    tour.show(&["--url", &url, "GET", "greeting"])?;
    tour.show(&[
        "--url", &url, "HSET", "user:1", "name", "Ada", "lang", "Rust",
    ])?;
    tour.show(&["--url", &url, "HGETALL", "user:1"])?;
    tour.show(&["--url", &url, "LPUSH", "greeting", "x"])?;
    tour.step("a pipeline: commands on stdin leave in one write, replies come back in order");
    tour.pipe(
        &["--url", &url],
        "INCR counter\nINCRBY counter 41\nGET counter\nGET missing\n",
    )?;
    tour.step("the resolved configuration (a password shows as ***)");
    tour.show(&["--url", &url, "--password", "not-printed", "config"])?;

    tour.step("kill -9 of the server in the middle of a write load, restart 500 ms later");
    let conn = vec!["--url".to_string(), url.clone()];
    let summary = tour.bench_with_fault(
        &conn,
        &[
            "-c",
            "8",
            "--duration",
            "4",
            "--rate",
            "4000",
            "-t",
            "set,get",
            "--verify",
        ],
        Duration::from_millis(1500),
        &mut || {
            server.kill9();
            std::thread::sleep(Duration::from_millis(500));
            server.restart().map_err(e)?;
            Ok("kill -9, 500 ms down, restarted".into())
        },
    )?;
    expect_no_loss(&summary, "with AOF fsync always")?;
    drop(server);

    // 2. A cluster.
    tour.step("a 3+3 Redis Cluster on loopback");
    let cluster = Cluster::start().map_err(e)?;
    let mut conn = Vec::new();
    for seed in cluster.seeds() {
        conn.push("--url".to_string());
        conn.push(format!("redis://{seed}"));
    }
    let with = |extra: &[&str]| -> Vec<String> {
        conn.iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let show = |extra: &[&str]| -> Result<String, String> {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tour.show(&refs)
    };
    println!("keys a..f live in {} different slots", {
        let mut slots: Vec<u16> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|k| redis_cluster::slot(k.as_bytes()))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots.len()
    });
    show(&[
        "MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6",
    ])?;
    show(&["MGET", "a", "b", "c", "d", "e", "f"])?;
    tour.step("a pipeline across the cluster: one sub-pipeline per node, replies in your order");
    {
        let args = with(&[]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tour.pipe(&refs, "INCR a\nINCR b\nINCR c\nGET a\nGET b\nGET c\n")?;
    }
    tour.step("reads from replicas (round robin), counted on the replicas themselves");
    let replica_gets = || -> u64 {
        cluster
            .nodes()
            .iter()
            .skip(cluster.master_count())
            .map(|n| n.command_calls("get").unwrap_or(0))
            .sum()
    };
    let before = replica_gets();
    for key in ["a", "b", "c"] {
        show(&[
            "--read-from-replicas",
            "--replica-selector",
            "round-robin",
            "GET",
            key,
        ])?;
    }
    println!("replicas served {} GETs", replica_gets() - before);

    tour.failover_under_load(
        &conn,
        &cluster,
        "a graceful CLUSTER FAILOVER in the middle of a verified write load",
        "a graceful failover waits for the replica to catch up",
    )?;
    drop(cluster);

    // 2b. A TLS-only cluster.
    tour.step(
        "a TLS-only 3+3 cluster (port 0, tls-port, tls-cluster yes), every node verified \
         against the test CA",
    );
    let certs = TestCerts::generate().map_err(e)?;
    let tls_cluster = Cluster::builder()
        .tls(ServerTls {
            cert: certs.server.clone(),
            ca: certs.ca.clone(),
            require_client_cert: false,
        })
        .start()
        .map_err(e)?;
    let mut tls_conn = vec!["--cluster".to_string()];
    for seed in tls_cluster.seeds() {
        tls_conn.push("--url".to_string());
        tls_conn.push(format!("rediss://{seed}"));
    }
    tls_conn.push("--cacert".to_string());
    tls_conn.push(certs.ca.display().to_string());
    {
        let show_tls = |extra: &[&str]| -> Result<String, String> {
            let args: Vec<String> = tls_conn
                .iter()
                .cloned()
                .chain(extra.iter().map(|s| s.to_string()))
                .collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            tour.show(&refs)
        };
        show_tls(&[
            "MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6",
        ])?;
        show_tls(&["MGET", "a", "b", "c", "d", "e", "f"])?;
    }
    tour.failover_under_load(
        &tls_conn,
        &tls_cluster,
        "a graceful CLUSTER FAILOVER on the TLS cluster in the middle of a verified load",
        "a graceful failover over TLS loses nothing either",
    )?;
    drop(tls_cluster);

    // 3. Sentinel.
    tour.step("a sentinel deployment: a master, 2 replicas, 3 sentinels");
    let set = SentinelSet::start().map_err(e)?;
    let mut conn = Vec::new();
    for s in set.sentinel_addrs() {
        conn.push("--sentinel".to_string());
        conn.push(s.to_string());
    }
    conn.push("--master".into());
    conn.push(MASTER_NAME.into());
    {
        let mut args = conn.clone();
        args.extend([
            "SET".into(),
            "k".into(),
            "via the master the sentinels name".into(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tour.show(&refs)?;
    }
    tour.step("SENTINEL FAILOVER in the middle of a verified write load");
    let summary = tour.bench_with_fault(
        &conn,
        &[
            "-c",
            "8",
            "--duration",
            "5",
            "--rate",
            "3000",
            "-t",
            "set,get",
            "--verify",
        ],
        Duration::from_millis(1500),
        &mut || {
            set.sentinels()[0]
                .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
                .map_err(e)?;
            Ok("SENTINEL FAILOVER".into())
        },
    )?;
    let lost = summary["lost"].as_u64().unwrap_or(0);
    if lost > 0 {
        println!(
            "  ({lost} writes acknowledged by the old master just before the switch did not \
             reach the new one: Redis replication is asynchronous. Writes after the switch \
             all went to the new master.)"
        );
    }
    drop(set);
    println!(
        "\nevery process stopped; demo done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The verified bench a cluster failover happens in the middle of.
const FAILOVER_BENCH: &[&str] = &[
    "-c",
    "8",
    "--duration",
    "4",
    "--rate",
    "4000",
    "-t",
    "set,get,mget",
    "--verify",
];

/// `CLUSTER FAILOVER` on the replica of the master at `master`: what happened, for the tour.
fn fail_over(cluster: &Cluster, master: std::net::SocketAddr) -> Result<String, String> {
    let replica = cluster
        .nodes()
        .iter()
        .skip(cluster.master_count())
        .find(|n| {
            matches!(n.cmd(&["ROLE"]), Ok(resp_codec::Value::Array(role))
                if role.get(2) == Some(&resp_codec::Value::Integer(i64::from(master.port()))))
        })
        .ok_or("no replica of the first master")?;
    replica
        .cmd(&["CLUSTER", "FAILOVER"])
        .map_err(|err| err.to_string())?;
    Ok(format!(
        "CLUSTER FAILOVER: {} takes over from {master}",
        replica.addr()
    ))
}

fn expect_no_loss(summary: &serde_json::Value, why: &str) -> Result<(), String> {
    match summary["lost"].as_u64() {
        Some(0) => {
            println!("  zero acknowledged writes lost ({why})");
            Ok(())
        }
        other => Err(format!("acknowledged writes were lost: {other:?}")),
    }
}
