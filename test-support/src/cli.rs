//! Redis's own cluster tools (`redis-cli --cluster ...`), for tests that change a live cluster
//! the way operators do: `add-node`, `reshard`, `del-node`, `rebalance`.
//!
//! The binary is `redis-cli`, or the one [`CLI_BIN_ENV`] names (Valkey's `valkey-cli`).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cluster::wait_until_for;
use crate::{Cluster, HarnessError, RedisServer, Result};

/// The variable naming the cli binary (a path, or a name on PATH).
pub const CLI_BIN_ENV: &str = "REDIS_CLI_BIN";

/// The cli binary: [`CLI_BIN_ENV`] when set, else `redis-cli`.
pub fn cli_binary() -> String {
    std::env::var(CLI_BIN_ENV).unwrap_or_else(|_| "redis-cli".to_string())
}

/// Runs the cli with `args`; its output when it succeeds, [`HarnessError::Tool`] with the end
/// of its output when it fails.
///
/// ```no_run
/// let out = test_support::redis_cli(&["--cluster", "check", "127.0.0.1:7000"]).unwrap();
/// assert!(out.contains("All 16384 slots covered"));
/// ```
pub fn redis_cli(args: &[&str]) -> Result<String> {
    let binary = cli_binary();
    let out = Command::new(&binary)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io(format!("running {binary}"), e))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(text);
    }
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    Err(HarnessError::Tool {
        command: format!("{binary} {}", args.join(" ")),
        output: format!(
            "{} ({}) {}",
            tail.join(" | "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Waits until `redis-cli --cluster check <seed>` finds every node agreeing and every slot
/// covered (the state `reshard` and `del-node` insist on).
pub fn wait_cluster_agrees(seed: &str, within: Duration) -> Result<()> {
    wait_until_for("the cluster's nodes to agree", within, || {
        Ok(redis_cli(&["--cluster", "check", seed]).is_ok_and(|out| {
            out.contains("All nodes agree") && out.contains("All 16384 slots covered")
        }))
    })
}

impl Cluster {
    /// Waits until every node of the fixture lists the node `id` (gossip spreads a newcomer in a
    /// few hundred milliseconds).
    pub fn wait_all_know(&self, id: &str, within: Duration) -> Result<()> {
        wait_until_for("every node to know a newcomer", within, || {
            for node in self.nodes() {
                if !node
                    .admin()?
                    .cmd_string(&["CLUSTER", "NODES"])?
                    .contains(id)
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }
}

impl RedisServer {
    /// The node's cluster id (`CLUSTER MYID`).
    pub fn node_id(&self) -> Result<String> {
        self.admin()?.cmd_string(&["CLUSTER", "MYID"])
    }

    /// Waits until the node sees the cluster as up (`cluster_state:ok`): a newcomer refuses
    /// migrations with CLUSTERDOWN until it has learnt every slot's owner.
    pub fn wait_cluster_ok(&self, within: Duration) -> Result<()> {
        wait_until_for("a node to see the cluster up", within, || {
            Ok(self
                .admin()?
                .cmd_string(&["CLUSTER", "INFO"])?
                .contains("cluster_state:ok"))
        })
    }
}
