//! The settings of a cluster client.

use std::time::Duration;

use redis_conn::{NodeConfig, ReplicaReads, ReplicaSelector};

use crate::NodeAddr;

/// Settings of a cluster client.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) seeds: Vec<NodeAddr>,
    pub(crate) node: NodeConfig,
    pub(crate) refresh_interval: Option<Duration>,
    pub(crate) min_refresh_interval: Duration,
    pub(crate) max_redirects: u32,
    /// Whether reads go to replicas, and how one is chosen.
    pub(crate) replica_reads: ReplicaReads,
}

impl ClusterConfig {
    /// Seeds to learn the topology from, and the settings every node uses (connection settings,
    /// whose address is replaced per node, and the node's pool of exclusive connections; a
    /// `ConnectionConfig` converts). Defaults: refresh every 30 s (with jitter), at most one
    /// refresh per 250 ms, 5 redirects per command.
    ///
    /// Behind NAT, Docker or Kubernetes, give the connection settings a `redis_conn::AddressMap`
    /// (`ConnectionConfig::address_map`): every node named by the topology, `MOVED` or `ASK`
    /// (and every seed) is then dialed at its mapped address, while the slot map, redirects and
    /// errors keep the addresses the nodes announce.
    pub fn new(seeds: impl IntoIterator<Item = NodeAddr>, node: impl Into<NodeConfig>) -> Self {
        ClusterConfig {
            seeds: seeds.into_iter().collect(),
            node: node.into(),
            refresh_interval: Some(Duration::from_secs(30)),
            min_refresh_interval: Duration::from_millis(250),
            max_redirects: 5,
            replica_reads: ReplicaReads::default(),
        }
    }

    /// Send read-only commands to a replica of their slot (default false). Replica connections
    /// send `READONLY`; a read falls back to the master when no replica of the slot is healthy or
    /// the replica fails. Replicas lag their master: a read may not see a write just made.
    #[must_use]
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.replica_reads.set_on(on);
        self
    }

    /// How a replica is chosen (default [`RandomSelector`](redis_conn::RandomSelector)): among
    /// the healthy replicas of the slot, a replica not dialled yet counting as healthy.
    #[must_use]
    pub fn replica_selector(mut self, selector: impl ReplicaSelector + 'static) -> Self {
        self.replica_reads.set_selector(selector);
        self
    }

    /// Periodic refresh, with +-10% jitter (default 30 s; `None` turns it off, leaving only
    /// refreshes on triggers).
    #[must_use]
    pub fn refresh_interval(mut self, interval: Option<Duration>) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The least time between two refreshes, however many triggers arrive (default 250 ms).
    #[must_use]
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// Redirects followed per command before giving up (default 5).
    #[must_use]
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    /// The seeds.
    pub fn seeds(&self) -> &[NodeAddr] {
        &self.seeds
    }

    /// The settings every node uses.
    pub fn node_config(&self) -> &NodeConfig {
        &self.node
    }

    /// The same settings for the node at `addr`.
    pub(crate) fn node_at(&self, addr: &NodeAddr) -> NodeConfig {
        self.node.clone().map_connection(|c| c.with_addr(addr))
    }
}
