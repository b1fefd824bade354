//! A Redis Cluster of real nodes, formed by hand in about two seconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use resp_codec::Value;

use crate::admin::info_field;
use crate::{HarnessError, RedisServer, Result, ServerTls};

/// Options for [`Cluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    masters: usize,
    replicas_per_master: usize,
    args: Vec<String>,
    tls: Option<ServerTls>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            masters: 3,
            replicas_per_master: 1,
            args: Vec::new(),
            tls: None,
        }
    }
}

impl ClusterBuilder {
    /// Number of masters (default 3). Slots are split evenly between them.
    #[must_use]
    pub fn masters(mut self, n: usize) -> Self {
        self.masters = n.max(1);
        self
    }

    /// Replicas per master (default 1).
    #[must_use]
    pub fn replicas_per_master(mut self, n: usize) -> Self {
        self.replicas_per_master = n;
        self
    }

    /// Extra arguments for every node (`["--cluster-require-full-coverage", "no"]`).
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// A TLS-only cluster (default: plain TCP): every node runs with `--port 0`, `--tls-port`,
    /// `--tls-cluster yes` and `--tls-replication yes` and this certificate
    /// ([`crate::ServerBuilder::tls_only`]), so clients, the cluster bus, replication and
    /// `MIGRATE` all speak TLS, and `CLUSTER SHARDS` reports only `tls-port`. [`Cluster::seeds`]
    /// are then the TLS addresses; the harness forms and inspects the cluster over TLS itself.
    #[must_use]
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Starts the nodes and forms the cluster: `CLUSTER ADDSLOTSRANGE` on the masters, `CLUSTER
    /// MEET` from the first node, `CLUSTER REPLICATE` on the replicas, then waits until every node
    /// reports `cluster_state:ok`, every replica's link is up, and `CLUSTER SLOTS` lists every
    /// replica on every node.
    pub fn start(self) -> Result<Cluster> {
        let total = self.masters * (1 + self.replicas_per_master);
        let mut nodes = Vec::with_capacity(total);
        for _ in 0..total {
            let mut builder = RedisServer::builder().cluster();
            if let Some(tls) = &self.tls {
                builder = builder.tls_only(tls.clone());
            }
            nodes.push(builder.args(self.args.iter().cloned()).start()?);
        }
        let cluster = Cluster {
            nodes,
            masters: self.masters,
            replicas_per_master: self.replicas_per_master,
        };
        cluster.form()?;
        Ok(cluster)
    }
}

/// A running cluster: nodes `0..masters` start as masters, the rest as their replicas (replica
/// `masters + i * masters + m` follows master `m`). Every node is killed on drop.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<RedisServer>,
    masters: usize,
    replicas_per_master: usize,
}

/// Slot count of Redis Cluster.
pub const SLOTS: u16 = 16384;

impl Cluster {
    /// 3 masters and 3 replicas.
    pub fn start() -> Result<Cluster> {
        ClusterBuilder::default().start()
    }

    /// A builder for other shapes.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    fn form(&self) -> Result<()> {
        let m = self.masters;
        for (i, node) in self.nodes[..m].iter().enumerate() {
            let start = i * usize::from(SLOTS) / m;
            let end = (i + 1) * usize::from(SLOTS) / m - 1;
            node.cmd(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &start.to_string(),
                &end.to_string(),
            ])?;
        }
        let first = &self.nodes[0];
        let mut admin = first.admin()?;
        for node in &self.nodes[1..] {
            let bus = node.cluster_port().unwrap_or(node.port() + 10_000);
            admin.cmd(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &node.port().to_string(),
                &bus.to_string(),
            ])?;
        }
        let n = self.nodes.len();
        wait_until("every node to know every other node", || {
            for node in &self.nodes {
                let text = node.admin()?.cmd_string(&["CLUSTER", "NODES"])?;
                let known = text
                    .lines()
                    .filter(|l| !l.contains("handshake") && !l.contains("noaddr"))
                    .count();
                if known != n {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        let ids: Vec<String> = self.nodes[..m]
            .iter()
            .map(|node| node.admin()?.cmd_string(&["CLUSTER", "MYID"]))
            .collect::<Result<_>>()?;
        for (i, node) in self.nodes[m..].iter().enumerate() {
            node.cmd(&["CLUSTER", "REPLICATE", &ids[i % m]])?;
        }
        self.wait_healthy(Duration::from_secs(60))
    }

    /// Waits until every running node reports `cluster_state:ok`, replicas' links are up, and
    /// `CLUSTER SLOTS` on every node covers all slots and lists the expected replicas.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        wait_until_for("the cluster to be healthy", timeout, || {
            for node in &self.nodes {
                let mut admin = node.admin()?;
                let info = admin.cmd_string(&["CLUSTER", "INFO"])?;
                if info_field(&info, "cluster_state").as_deref() != Some("ok") {
                    return Ok(false);
                }
                let role = admin.info_field("replication", "role")?;
                if role.as_deref() == Some("slave")
                    && admin
                        .info_field("replication", "master_link_status")?
                        .as_deref()
                        != Some("up")
                {
                    return Ok(false);
                }
                let slots = admin.cmd(&["CLUSTER", "SLOTS"])?;
                let Value::Array(ranges) = slots else {
                    return Ok(false);
                };
                let mut covered = 0usize;
                for range in &ranges {
                    let Value::Array(parts) = range else {
                        return Ok(false);
                    };
                    let (Some(Value::Integer(s)), Some(Value::Integer(e))) =
                        (parts.first(), parts.get(1))
                    else {
                        return Ok(false);
                    };
                    covered += usize::try_from(e - s + 1).unwrap_or(0);
                    if parts.len() < 3 + self.replicas_per_master {
                        return Ok(false);
                    }
                }
                if covered != usize::from(SLOTS) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// All nodes, masters first.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// All nodes, for fault injection (kill, pause, restart).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Addresses of every node, to use as seeds (the TLS addresses of a TLS-only cluster).
    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// How many masters the cluster was formed with.
    pub fn master_count(&self) -> usize {
        self.masters
    }

    /// The index in [`Cluster::nodes`] of the node that currently serves `slot` as master,
    /// according to the first node that answers `CLUSTER SLOTS`.
    pub fn master_of_slot(&self, slot: u16) -> Result<usize> {
        let mut last = None;
        for node in &self.nodes {
            let reply = match node.cmd(&["CLUSTER", "SLOTS"]) {
                Ok(reply) => reply,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if let Value::Array(ranges) = reply {
                for range in ranges {
                    let Value::Array(parts) = range else { continue };
                    let (Some(Value::Integer(s)), Some(Value::Integer(e)), Some(Value::Array(m))) =
                        (parts.first(), parts.get(1), parts.get(2))
                    else {
                        continue;
                    };
                    if (*s..=*e).contains(&i64::from(slot)) {
                        if let Some(Value::Integer(port)) = m.get(1) {
                            if let Some(i) =
                                self.nodes.iter().position(|n| i64::from(n.port()) == *port)
                            {
                                return Ok(i);
                            }
                        }
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Unexpected {
            addr: "cluster".into(),
            command: "CLUSTER SLOTS".into(),
            reply: format!("no master for slot {slot}"),
        }))
    }

    /// Moves `slot` from the master at index `from` to the master at index `to`, keys and all,
    /// as `redis-cli --cluster reshard` does: `SETSLOT IMPORTING` / `MIGRATING`, `MIGRATE ...
    /// KEYS` in batches of `batch`, then `SETSLOT NODE` on every master. Clients see `ASK` while
    /// it runs and `MOVED` after. Returns how many keys moved.
    pub fn migrate_slot(&self, slot: u16, from: usize, to: usize, batch: usize) -> Result<usize> {
        self.migrate_slot_paced(slot, from, to, batch, std::time::Duration::ZERO)
    }

    /// [`Cluster::migrate_slot`] with a pause between batches: a migration that lasts long
    /// enough for a load to meet its keys half moved (ASK), whatever the machine's speed.
    pub fn migrate_slot_paced(
        &self,
        slot: u16,
        from: usize,
        to: usize,
        batch: usize,
        pause: std::time::Duration,
    ) -> Result<usize> {
        let id = |i: usize| self.nodes[i].admin()?.cmd_string(&["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from)?, id(to)?);
        let slot_arg = slot.to_string();
        self.nodes[to].cmd(&["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id])?;
        self.nodes[from].cmd(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id])?;
        let to_port = self.nodes[to].port().to_string();
        let mut admin = self.nodes[from].admin()?;
        let count = batch.max(1).to_string();
        let mut moved = 0;
        loop {
            let keys = match admin.cmd(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, &count])? {
                Value::Array(keys) => keys,
                other => {
                    return Err(HarnessError::Unexpected {
                        addr: self.nodes[from].addr().to_string(),
                        command: "CLUSTER GETKEYSINSLOT".into(),
                        reply: format!("{other:?}"),
                    })
                }
            };
            if keys.is_empty() {
                break;
            }
            let mut migrate: Vec<Vec<u8>> =
                ["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"]
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect();
            migrate.extend(keys.iter().filter_map(|k| k.as_bytes().map(|b| b.to_vec())));
            moved += keys.len();
            admin.cmd(&migrate)?;
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        for node in self.nodes.iter().take(self.masters) {
            node.cmd(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id])?;
        }
        Ok(moved)
    }

    /// The index of a replica of the master at index `master` (by `ROLE`).
    pub fn replica_of(&self, master: usize) -> Result<usize> {
        let port = i64::from(self.nodes[master].port());
        self.nodes
            .iter()
            .position(|n| {
                matches!(n.cmd(&["ROLE"]), Ok(Value::Array(role))
                    if role.first().and_then(Value::as_bytes).map(|b| &b[..]) == Some(b"slave")
                        && role.get(2) == Some(&Value::Integer(port)))
            })
            .ok_or_else(|| HarnessError::Unexpected {
                addr: self.nodes[master].addr().to_string(),
                command: "ROLE".into(),
                reply: "no replica found".into(),
            })
    }

    /// `FLUSHALL` on every master that is running.
    pub fn flushall(&self) -> Result<()> {
        for node in &self.nodes {
            let mut admin = match node.admin() {
                Ok(a) => a,
                Err(_) => continue,
            };
            if admin.info_field("replication", "role")?.as_deref() == Some("master") {
                admin.cmd(&["FLUSHALL"])?;
            }
        }
        Ok(())
    }
}

/// Polls `check` every 20 ms for up to 30 s.
pub(crate) fn wait_until(what: &str, check: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_until_for(what, Duration::from_secs(30), check)
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes; errors from `check`
/// count as "not yet" (a node may be restarting).
pub(crate) fn wait_until_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e.to_string()),
        }
        if Instant::now() > deadline {
            return Err(HarnessError::NotReady {
                what: what.to_string(),
                timeout,
                log: last_err.unwrap_or_default(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
