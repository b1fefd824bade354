//! The `rcli` binary against real servers: reply formatting for every RESP type, exit codes,
//! TLS flags, profile selection, bench JSON, `--verify` catching a write removed behind its
//! back, events on a server restart, cluster and sentinel modes, stdin pipelines.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use test_support::{Cluster, RedisServer, SentinelSet, ServerTls, TestCerts, MASTER_NAME};

fn rcli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rcli"));
    // The environment of the test run must not choose a profile for these commands.
    cmd.env_remove("REDIS_CONFIG")
        .env_remove("REDIS_PROFILE")
        .env_remove("REDIS_PASSWORD");
    cmd
}

fn run(args: &[&str]) -> Output {
    rcli().args(args).output().expect("rcli runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn url(server: &RedisServer) -> String {
    format!("redis://{}", server.addr())
}

/// Runs a command against `server`; returns stdout (trimmed) and the exit code.
fn on(server: &RedisServer, args: &[&str]) -> (String, i32) {
    let u = url(server);
    let mut all = vec!["--url", u.as_str()];
    all.extend_from_slice(args);
    let o = run(&all);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    (
        stdout(&o).trim_end().to_string(),
        o.status.code().unwrap_or(-1),
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(o).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

#[test]
fn replies_print_as_redis_cli_prints_them() {
    let server = RedisServer::start().unwrap();
    assert_eq!(on(&server, &["PING"]), ("PONG".into(), 0));
    assert_eq!(on(&server, &["SET", "k", "-1"]), ("OK".into(), 0));
    assert_eq!(on(&server, &["GET", "k"]), ("\"-1\"".into(), 0));
    assert_eq!(on(&server, &["INCR", "n"]), ("(integer) 1".into(), 0));
    assert_eq!(on(&server, &["GET", "missing"]), ("(nil)".into(), 0));
    assert_eq!(on(&server, &["SET", "bin", "a\"b\nc"]), ("OK".into(), 0));
    assert_eq!(on(&server, &["GET", "bin"]), ("\"a\\\"b\\nc\"".into(), 0));
    on(&server, &["RPUSH", "l", "a", "b"]);
    assert_eq!(
        on(&server, &["LRANGE", "l", "0", "-1"]),
        ("1) \"a\"\n2) \"b\"".into(), 0)
    );
    assert_eq!(
        on(&server, &["LRANGE", "none", "0", "-1"]),
        ("(empty array)".into(), 0)
    );
    on(&server, &["SADD", "s", "m"]);
    assert_eq!(on(&server, &["SMEMBERS", "s"]), ("1~ \"m\"".into(), 0));
    on(&server, &["HSET", "h", "f", "v"]);
    assert_eq!(
        on(&server, &["HGETALL", "h"]),
        ("1# \"f\" => \"v\"".into(), 0)
    );
    assert_eq!(
        on(&server, &["--resp2", "HGETALL", "h"]),
        ("1) \"f\"\n2) \"v\"".into(), 0)
    );
    on(&server, &["ZADD", "z", "1.5", "m"]);
    assert_eq!(
        on(&server, &["ZSCORE", "z", "m"]),
        ("(double) 1.5".into(), 0)
    );
    assert_eq!(
        on(&server, &["EVAL", "redis.setresp(3); return true", "0"]),
        ("(true)".into(), 0)
    );
    assert_eq!(
        on(
            &server,
            &["EVAL", "return {big_number='12345678901234567890123'}", "0"]
        ),
        ("(big number) 12345678901234567890123".into(), 0)
    );
    let (info, code) = on(&server, &["INFO", "server"]);
    assert_eq!(code, 0);
    assert!(
        info.starts_with("# Server") && info.contains("redis_version:"),
        "{info}"
    );
    let (nested, _) = on(&server, &["EVAL", "return {1, {2, 'x'}}", "0"]);
    assert_eq!(nested, "1) (integer) 1\n2) 1) (integer) 2\n   2) \"x\"");
    assert_eq!(
        on(&server, &["--raw", "LRANGE", "l", "0", "-1"]),
        ("a\nb".into(), 0)
    );
    // An error reply: printed, exit 1.
    let (err, code) = on(&server, &["LPUSH", "k", "x"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("(error) WRONGTYPE"), "{err}");
    // `config` with arguments is the Redis command.
    let (maxmemory, code) = on(&server, &["config", "get", "maxmemory"]);
    assert_eq!(code, 0);
    assert!(maxmemory.contains("\"maxmemory\""), "{maxmemory}");
}

#[test]
fn connection_and_configuration_errors_are_one_line_and_exit_2() {
    let dead = format!("redis://127.0.0.1:{}", test_support::free_port().unwrap());
    for args in [
        vec!["--url", dead.as_str(), "PING"],
        vec!["--url", "http://x", "PING"],
        vec!["--url", "redis://h?colour=1", "PING"],
        vec!["--sentinel", "127.0.0.1:1", "PING"],
        vec![
            "--url",
            dead.as_str(),
            "--config",
            "/no/such/file.toml",
            "PING",
        ],
        vec!["--no-such-flag"],
    ] {
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    }
    let o = run(&["--url", dead.as_str(), "PING"]);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("rcli: cannot connect to"), "{err}");
    // A closed stdout ends rcli quietly.
    let server = RedisServer::start().unwrap();
    let u = url(&server);
    let mut child = rcli()
        .args(["--url", u.as_str(), "config"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn tls_flags_verify_by_default_and_the_insecure_switch_warns() {
    let certs = TestCerts::generate().unwrap();
    let tls = |cert: &test_support::CertFiles, mtls: bool| {
        RedisServer::builder()
            .tls(ServerTls {
                cert: cert.clone(),
                ca: certs.ca.clone(),
                require_client_cert: mtls,
            })
            .start()
            .unwrap()
    };
    let good = tls(&certs.server, false);
    let self_signed = tls(&certs.self_signed, false);
    let mtls = tls(&certs.server, true);
    let addr = |s: &RedisServer| format!("redis://{}", s.tls_addr().unwrap());
    let ca = certs.ca.display().to_string();
    let o = run(&["--url", &addr(&good), "--tls", "--cacert", &ca, "PING"]);
    assert_eq!(
        (stdout(&o).trim(), o.status.code()),
        ("PONG", Some(0)),
        "{}",
        stderr(&o)
    );
    // Without the CA: refused, exit 2, a TLS error.
    let o = run(&["--url", &addr(&good), "--tls", "PING"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("TLS"), "{}", stderr(&o));
    // The self-signed one needs the insecure switch, which warns.
    let o = run(&[
        "--url",
        &addr(&self_signed),
        "--tls",
        "--cacert",
        &ca,
        "PING",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["--url", &addr(&self_signed), "--tls-insecure", "PING"]);
    assert_eq!((stdout(&o).trim(), o.status.code()), ("PONG", Some(0)));
    assert!(stderr(&o).contains("man-in-the-middle"), "{}", stderr(&o));
    // mTLS: the client certificate from --cert/--key.
    let o = run(&["--url", &addr(&mtls), "--tls", "--cacert", &ca, "PING"]);
    assert_eq!(o.status.code(), Some(2));
    let (cert, key) = (
        certs.client.cert.display().to_string(),
        certs.client.key.display().to_string(),
    );
    let o = run(&[
        "--url",
        &addr(&mtls),
        "--tls",
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "PING",
    ]);
    assert_eq!(
        (stdout(&o).trim(), o.status.code()),
        ("PONG", Some(0)),
        "{}",
        stderr(&o)
    );
    // rediss:// turns TLS on by itself.
    let rediss = format!("rediss://{}", good.tls_addr().unwrap());
    let o = run(&["--url", &rediss, "--cacert", &ca, "PING"]);
    assert_eq!(stdout(&o).trim(), "PONG", "{}", stderr(&o));
}

#[test]
fn profiles_are_chosen_by_flag_and_environment_and_config_hides_passwords() {
    let a = RedisServer::start().unwrap();
    let b = RedisServer::builder()
        .password("S3cr3t-rcli")
        .start()
        .unwrap();
    a.cmd(&["SET", "who", "a"]).unwrap();
    b.cmd(&["SET", "who", "b"]).unwrap();
    let dir = tempfile_dir();
    let file = dir.join("profiles.toml");
    std::fs::write(
        &file,
        format!(
            "default_profile = \"a\"\n[profiles.a]\nurl = \"redis://{}\"\n[profiles.b]\nurl = \"redis://{}\"\npassword = \"S3cr3t-rcli\"\nread_from_replicas = true\n[profiles.b.retry]\nmax_attempts = 7\n",
            a.addr(),
            b.addr()
        ),
    )
    .unwrap();
    let f = file.display().to_string();
    let get = |cmd: &mut Command| {
        let o = cmd.args(["GET", "who"]).output().unwrap();
        (stdout(&o).trim().to_string(), stderr(&o))
    };
    assert_eq!(get(rcli().args(["--config", &f])).0, "\"a\"");
    assert_eq!(
        get(rcli().args(["--config", &f, "--profile", "b"])).0,
        "\"b\""
    );
    assert_eq!(
        get(rcli().env("REDIS_CONFIG", &f).env("REDIS_PROFILE", "b")).0,
        "\"b\""
    );
    // The flag beats the environment.
    assert_eq!(
        get(rcli()
            .env("REDIS_CONFIG", &f)
            .env("REDIS_PROFILE", "b")
            .args(["--profile", "a"]))
        .0,
        "\"a\""
    );
    // ./redis.toml in the working directory.
    std::fs::copy(&file, dir.join("redis.toml")).unwrap();
    assert_eq!(get(rcli().current_dir(&dir)).0, "\"a\"");
    // `rcli config`: the file, the profile, every option, no password.
    let o = rcli()
        .args(["--config", &f, "--profile", "b", "config"])
        .output()
        .unwrap();
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        text.contains(&format!("file: {f} (from argument)")),
        "{text}"
    );
    assert!(text.contains("profile: b (from argument)"), "{text}");
    assert!(text.contains("password = ***"), "{text}");
    assert!(text.contains("read_from_replicas = true"), "{text}");
    assert!(text.contains("retry.max_attempts = 7"), "{text}");
    assert!(!text.contains("S3cr3t-rcli"), "{text}");
    // A missing profile and a bad key are exit 2 with the file, profile and key named.
    let o = rcli()
        .args(["--config", &f, "--profile", "nope", "PING"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no profile \"nope\""), "{}", stderr(&o));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[profiles.x]\ntimeout_ms = \"soon\"\n").unwrap();
    let o = rcli()
        .args(["--config", &bad.display().to_string(), "PING"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml") && err.contains("profile \"x\"") && err.contains("timeout_ms"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_output_or_exit_message_holds_the_password() {
    // `/ ? # @ : %` break a URL apart when raw; the encoded form must not leak either.
    let marker = format!("M4rk/er?#@:%2Fx-S3cr3t-{}", std::process::id());
    let enc: String = marker
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    // One server whose password is the marker, one where the marker is the wrong password.
    let right = RedisServer::builder()
        .password(marker.clone())
        .start()
        .unwrap();
    let wrong = RedisServer::builder()
        .password("not-the-marker")
        .start()
        .unwrap();
    let dead = format!("127.0.0.1:{}", test_support::free_port().unwrap());
    let good_url = format!("redis://:{enc}@{}", right.addr());
    let plain = url(&wrong);
    let dir = tempfile_dir();
    let profile = dir.join("p.toml");
    std::fs::write(
        &profile,
        format!(
            "[profiles.a]\nurl = \"redis://{}\"\npassword = \"{marker}\"\n\
             [profiles.b]\npassword = \"{marker}\"\ntimeout_ms = \"{marker}\"\n\
             [profiles.c]\nsentinel_password = \"{marker}\"\ncolour = 1\n\
             [profiles.d]\nurl = \"redis://:{marker}@{}\"\n",
            wrong.addr(),
            wrong.addr()
        ),
    )
    .unwrap();
    let f = profile.display().to_string();
    let raw_user = format!("redis://u:{marker}@{dead}");
    let raw_lone = format!("redis://{marker}@{dead}");
    let raw_query = format!("redis+sentinel://{dead}/m?sentinel_password={marker}&x=1");
    let enc_key = format!("redis+sentinel://{dead}/m?sentinel%5Fpassword={enc}&x=1");
    let enc_dead = format!("redis://u:{enc}@{dead}");
    let sentinel = format!("app:{marker}@{dead}");
    let pw_flag = format!("--password={marker}");
    // (arguments, REDIS_PASSWORD, the exit code expected)
    let cases: Vec<(Vec<&str>, Option<&str>, i32)> = vec![
        (vec!["--url", &good_url, "PING"], None, 0),
        (vec!["--url", &good_url, "config"], None, 0),
        (vec!["--url", &good_url, "--events", "PING"], None, 0),
        (
            vec!["--url", &plain, "--password", &marker, "PING"],
            None,
            2,
        ),
        (vec!["--url", &plain, &pw_flag, "--events", "PING"], None, 2),
        (vec!["--url", &plain, "PING"], Some(&marker), 2),
        (vec!["--url", &plain, "config"], Some(&marker), 0),
        (
            vec!["--url", &plain, "--password", &marker, "config"],
            None,
            0,
        ),
        (vec!["--url", &raw_user, "PING"], None, 2),
        (vec!["--url", &raw_user, "config"], None, 2),
        (vec!["--url", &raw_lone, "PING"], None, 2),
        (vec!["--url", &raw_query, "PING"], None, 2),
        (vec!["--url", &enc_key, "PING"], None, 2),
        (vec!["--url", &enc_dead, "PING"], None, 2),
        (
            vec!["--url", &enc_dead, "--url", &raw_user, "PING"],
            None,
            2,
        ),
        (
            vec!["--url", "redis://u:M4rk/er?x@127.0.0.1:1", "PING"],
            None,
            2,
        ),
        (
            vec!["--sentinel", &sentinel, "--master", "m", "PING"],
            None,
            2,
        ),
        (
            vec!["--url", &plain, "--password", &marker, "--db", "x", "PING"],
            None,
            2,
        ),
        (vec!["--password", &marker, "--no-such-flag"], None, 2),
        (vec!["--config", &f, "--profile", "a", "PING"], None, 2),
        (vec!["--config", &f, "--profile", "a", "config"], None, 0),
        (vec!["--config", &f, "--profile", "b", "PING"], None, 2),
        (vec!["--config", &f, "--profile", "c", "PING"], None, 2),
        (vec!["--config", &f, "--profile", "d", "PING"], None, 2),
    ];
    for (args, env, code) in cases {
        let mut cmd = rcli();
        if let Some(pw) = env {
            cmd.env("REDIS_PASSWORD", pw);
        }
        let o = cmd.args(&args).output().unwrap();
        let all = format!("{}{}", stdout(&o), stderr(&o));
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.replace(&marker, "<marker>"))
            .collect();
        assert_eq!(o.status.code(), Some(code), "{shown:?}: {all}");
        assert!(!all.contains("panicked"), "{shown:?}: {all}");
        for piece in [marker.as_str(), enc.as_str(), "M4rk", "S3cr3t", "2Fx"] {
            assert!(!all.contains(piece), "{shown:?} leaked {piece}: {all}");
        }
    }
    let o = rcli().args(["--url", &good_url, "PING"]).output().unwrap();
    assert_eq!(stdout(&o).trim(), "PONG", "{}", stderr(&o));
    let o = rcli()
        .args(["--url", &plain, "--password", &marker, "PING"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("WRONGPASS"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rcli-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bench_json_has_every_field_and_adds_up() {
    let server = RedisServer::start().unwrap();
    let u = url(&server);
    let o = run(&[
        "--url",
        &u,
        "bench",
        "-c",
        "8",
        "-n",
        "6000",
        "-P",
        "4",
        "-d",
        "64",
        "-t",
        "get,set,incr,mget,mset,del",
        "--keys",
        "500",
        "--mget-keys",
        "5",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    for key in [
        "ops",
        "errors",
        "ops_per_sec",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "retries",
        "reconnects",
        "moved",
        "ask",
        "topology_refreshes",
        "failovers",
        "verified",
        "lost",
        "unknown_outcome",
    ] {
        assert!(j.get(key).is_some(), "{key} missing from {j}");
    }
    assert_eq!(j["ops"], 6000);
    assert_eq!(j["errors"], 0);
    assert!(j["ops_per_sec"].as_f64().unwrap() > 0.0);
    let (p50, p99, max) = (
        j["p50_us"].as_u64().unwrap(),
        j["p99_us"].as_u64().unwrap(),
        j["max_us"].as_u64().unwrap(),
    );
    assert!(p50 > 0 && p50 <= p99 && p99 <= max, "{j}");
    // Every command of the mix ran: the server counted them.
    for command in ["get", "set", "incr", "mget", "mset", "del"] {
        assert!(server.command_calls(command).unwrap() >= 900, "{command}");
    }
    // A duration and a rate: about rate x duration operations, open loop.
    let o = run(&[
        "--url",
        &u,
        "bench",
        "-c",
        "4",
        "--duration",
        "1",
        "--rate",
        "2000",
        "--json",
    ]);
    let j = json(&o);
    let ops = j["ops"].as_u64().unwrap();
    assert!((1200..=2400).contains(&ops), "{j}");
    // The human summary.
    let o = run(&["--url", &u, "bench", "-c", "2", "-n", "100"]);
    assert!(stdout(&o).contains("ops 100 in"), "{}", stdout(&o));
}

#[test]
fn verify_finds_an_acknowledged_write_removed_behind_its_back() {
    let server = RedisServer::start().unwrap();
    let u = url(&server);
    let child = rcli()
        .args([
            "--url",
            &u,
            "bench",
            "-c",
            "4",
            "--duration",
            "2",
            "--rate",
            "2000",
            "-t",
            "set",
            "--verify",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once some verified keys exist, delete a few of them.
    let mut admin = server.admin().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let removed = loop {
        let reply = admin
            .cmd(&["SCAN", "0", "MATCH", "rcli:v:*", "COUNT", "1000"])
            .unwrap();
        let keys: Vec<String> = match reply {
            redis_client::Value::Array(parts) => match parts.get(1) {
                Some(redis_client::Value::Array(keys)) => keys
                    .iter()
                    .filter_map(|k| {
                        k.as_bytes()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                    })
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        if keys.len() >= 5 {
            let mut del = vec!["DEL".to_string()];
            del.extend(keys.into_iter().take(5));
            break admin.cmd_int(&del).unwrap();
        }
        assert!(Instant::now() < deadline, "no verified keys written");
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().unwrap();
    let j = json(&o);
    assert_eq!(j["lost"].as_i64(), Some(removed), "{j}");
    assert!(j["verified"].as_u64().unwrap() > 100, "{j}");
    assert_eq!(j["errors"], 0);
}

#[test]
fn events_are_printed_through_a_restart_and_the_bench_keeps_going() {
    let mut server = RedisServer::start().unwrap();
    let u = url(&server);
    let child = rcli()
        .args([
            "--url",
            &u,
            "--events",
            "--timeout-ms",
            "300",
            "bench",
            "-c",
            "4",
            "--duration",
            "3",
            "--rate",
            "1000",
            "-t",
            "set,get",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    server.kill9();
    std::thread::sleep(Duration::from_millis(400));
    server.restart().unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events = stderr(&o);
    for name in ["event: connect", "event: disconnect", "event: reconnect"] {
        assert!(
            events.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{events}"
        );
    }
    let j = json(&o);
    assert!(j["reconnects"].as_u64().unwrap() >= 1, "{j}");
    assert!(
        j["errors"].as_u64().unwrap() > 0,
        "an outage without errors? {j}"
    );
    let ops = j["ops"].as_u64().unwrap();
    assert!(ops > 1000, "{j}");
    let kinds: u64 = j["errors_by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(kinds, j["errors"].as_u64().unwrap(), "{j}");
}

#[test]
fn cluster_and_sentinel_modes() {
    let cluster = Cluster::start().unwrap();
    let seeds: Vec<String> = cluster
        .seeds()
        .iter()
        .map(|s| format!("redis://{s}"))
        .collect();
    let mut args = Vec::new();
    for s in &seeds {
        args.push("--url");
        args.push(s.as_str());
    }
    let with = |extra: &[&str]| {
        let mut all = args.clone();
        all.extend_from_slice(extra);
        let o = run(&all);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", stderr(&o));
        stdout(&o).trim_end().to_string()
    };
    assert_eq!(
        with(&["MSET", "a", "1", "b", "2", "c", "3", "d", "4"]),
        "OK"
    );
    assert_eq!(
        with(&["MGET", "a", "b", "c", "d", "nope"]),
        "1) \"1\"\n2) \"2\"\n3) \"3\"\n4) \"4\"\n5) (nil)"
    );
    assert_eq!(with(&["DEL", "a", "b", "c", "d"]), "(integer) 4");
    let o = run(&[
        &args[..],
        &[
            "bench",
            "-c",
            "8",
            "-n",
            "4000",
            "-t",
            "set,get,mget",
            "--json",
        ],
    ]
    .concat());
    let j = json(&o);
    assert_eq!(
        (j["ops"].as_u64(), j["errors"].as_u64()),
        (Some(4000), Some(0)),
        "{j}"
    );
    // A stable cluster: no redirect, no refresh beyond the initial one (counted before the run).
    assert_eq!(
        (j["moved"].as_u64(), j["ask"].as_u64()),
        (Some(0), Some(0)),
        "{j}"
    );
    let replicas = with(&[
        "--read-from-replicas",
        "--replica-selector",
        "round-robin",
        "GET",
        "missing",
    ]);
    assert_eq!(replicas, "(nil)");
    drop(cluster);

    let set = SentinelSet::start().unwrap();
    let mut args = Vec::new();
    let sentinels: Vec<String> = set
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    for s in &sentinels {
        args.push("--sentinel");
        args.push(s.as_str());
    }
    args.extend(["--master", MASTER_NAME]);
    let o = run(&[&args[..], &["SET", "k", "via-sentinel"]].concat());
    assert_eq!(stdout(&o).trim(), "OK", "{}", stderr(&o));
    let index = set.master_index().unwrap();
    assert_eq!(
        set.servers()[index].cmd(&["GET", "k"]).unwrap(),
        redis_client::Value::BulkString("via-sentinel".into())
    );
    let o = run(&[&args[..], &["--master", "nosuch", "PING"]].concat());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn commands_on_stdin_are_one_pipeline_and_the_prompt_answers_each_line() {
    let server = RedisServer::start().unwrap();
    let u = url(&server);
    let feed = |args: &[&str], input: &str| {
        let mut child = rcli()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = feed(&["--url", &u], "SET a 1\nINCR a\nGET a\n\nLPUSH a x\n");
    assert_eq!(o.status.code(), Some(1), "an error reply among them");
    assert_eq!(
        stdout(&o),
        "OK\n(integer) 2\n\"2\"\n(error) WRONGTYPE Operation against a key holding the wrong kind of value\n"
    );
    let o = feed(
        &["--url", &u, "-i"],
        "SET \"spaced key\" 'it\\'s'\nGET \"spaced key\"\nSET k \"open\nquit\nPING\n",
    );
    let text = stdout(&o);
    assert!(
        text.contains("> OK") && text.contains("> \"it's\""),
        "{text}"
    );
    assert!(text.contains("> (error) ERR unbalanced quotes"), "{text}");
    assert!(
        !text.contains("PONG"),
        "quit did not end the prompt: {text}"
    );
}

/// The command of issue 20, against a TLS-only cluster: `--url rediss://... --cluster --cacert`.
#[test]
fn a_tls_only_cluster_is_reached_with_the_ca_and_refused_without_it() {
    let certs = TestCerts::generate().unwrap();
    let cluster = Cluster::builder()
        .replicas_per_master(0)
        .tls(ServerTls {
            cert: certs.server.clone(),
            ca: certs.ca.clone(),
            require_client_cert: false,
        })
        .start()
        .unwrap();
    let url = format!("rediss://{}", cluster.seeds()[0]);
    let ca = certs.ca.display().to_string();
    let o = run(&["--url", &url, "--cluster", "--cacert", &ca, "SET", "a", "1"]);
    assert_eq!(stdout(&o).trim(), "OK", "{}", stderr(&o));
    // Keys on every master: each node is dialled on its TLS port and verified.
    for key in ["a", "b", "c", "d", "e", "f"] {
        let o = run(&["--url", &url, "--cluster", "--cacert", &ca, "SET", key, key]);
        assert_eq!(stdout(&o).trim(), "OK", "{key}: {}", stderr(&o));
    }
    let o = run(&[
        "--url",
        &url,
        "--cluster",
        "--cacert",
        &ca,
        "MGET",
        "a",
        "b",
        "f",
    ]);
    assert!(
        stdout(&o).contains("\"f\""),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
    // Without the CA: a TLS error, exit 1, no retry loop.
    let o = run(&["--url", &url, "--cluster", "SET", "a", "1"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).to_ascii_lowercase().contains("tls")
            || stderr(&o).to_ascii_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
}
