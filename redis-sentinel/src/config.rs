//! The settings of a sentinel client: the sentinels, the master's name, how data nodes and
//! sentinels are reached, the backstop poll, and reads from replicas.

use std::time::Duration;

use redis_conn::{
    ConnectionConfig, NodeConfig, Protocol, ReplicaReads, ReplicaSelector, ServerAddr, TlsConfig,
};

/// Settings of a sentinel client.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    pub(crate) sentinels: Vec<ServerAddr>,
    pub(crate) master_name: String,
    pub(crate) node: NodeConfig,
    pub(crate) sentinel_connection: ConnectionConfig,
    pub(crate) poll_interval: Duration,
    pub(crate) replica_reads: ReplicaReads,
}

impl SentinelConfig {
    /// The sentinels, the monitored master's name, and the settings of the data nodes (their
    /// address is replaced by the master's or a replica's; a `ConnectionConfig` converts).
    /// Sentinels are reached without credentials or TLS unless
    /// [`SentinelConfig::sentinel_connection`] says otherwise; the backstop poll runs every 5 s.
    pub fn new(
        sentinels: impl IntoIterator<Item = ServerAddr>,
        master_name: impl Into<String>,
        node: impl Into<NodeConfig>,
    ) -> Self {
        let sentinels: Vec<ServerAddr> = sentinels.into_iter().collect();
        let first = sentinels
            .first()
            .cloned()
            .unwrap_or_else(|| ServerAddr::tcp("127.0.0.1", 26379));
        SentinelConfig {
            sentinels,
            master_name: master_name.into(),
            node: node.into(),
            sentinel_connection: ConnectionConfig::new(first),
            poll_interval: Duration::from_secs(5),
            replica_reads: ReplicaReads::default(),
        }
    }

    /// Send read-only commands to a replica (from `SENTINEL REPLICAS`, skipping those flagged
    /// down or disconnected), falling back to the master (default false). Replicas lag their
    /// master: a read may not see a write just made.
    #[must_use]
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.replica_reads.set_on(on);
        self
    }

    /// How a replica is chosen (default random).
    #[must_use]
    pub fn replica_selector(mut self, selector: impl ReplicaSelector + 'static) -> Self {
        self.replica_reads.set_selector(selector);
        self
    }

    /// How often the sentinels are polled as a backstop for missed events (default 5 s).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How sentinels are reached: credentials (a sentinel's own `requirepass`, or an ACL user),
    /// TLS, timeouts. The address is replaced per sentinel. Queries speak RESP2 on a short-lived
    /// connection; the `+switch-master` subscription reconnects with this backoff.
    #[must_use]
    pub fn sentinel_connection(mut self, template: ConnectionConfig) -> Self {
        self.sentinel_connection = template;
        self
    }

    /// Shorthand: authenticate to the sentinels (user `None`: the `default` user).
    #[must_use]
    pub fn sentinel_credentials(
        mut self,
        username: Option<String>,
        password: impl Into<redis_conn::Secret>,
    ) -> Self {
        let mut template = self.sentinel_connection.password(password);
        if let Some(user) = username {
            template = template.username(user);
        }
        self.sentinel_connection = template;
        self
    }

    /// Shorthand: reach the sentinels over TLS.
    #[must_use]
    pub fn sentinel_tls(mut self, tls: TlsConfig) -> Self {
        self.sentinel_connection = self.sentinel_connection.tls(tls);
        self
    }

    /// The master name.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The settings of the data nodes.
    pub fn node_config(&self) -> &NodeConfig {
        &self.node
    }

    /// How sentinels are reached (see [`SentinelConfig::sentinel_connection`]).
    pub fn sentinel_connection_config(&self) -> &ConnectionConfig {
        &self.sentinel_connection
    }

    /// The settings of a one-shot query to `sentinel`.
    pub(crate) fn query_config(&self, sentinel: &ServerAddr) -> ConnectionConfig {
        self.subscription_config(sentinel)
            .health_check_interval(None)
            .reconnect(false)
    }

    /// The settings of the `+switch-master` subscription to `sentinel`.
    pub(crate) fn subscription_config(&self, sentinel: &ServerAddr) -> ConnectionConfig {
        self.sentinel_connection
            .with_addr(sentinel.clone())
            .protocol(Protocol::Resp2)
    }

    /// The settings of the data node at `addr`.
    pub(crate) fn node_at(&self, addr: &ServerAddr) -> NodeConfig {
        self.node
            .clone()
            .map_connection(|c| c.with_addr(addr.clone()))
    }
}
