//! One configuration type for every mode, built in code, from a URL, or from a profile file.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use redis_cluster::{ClusterConfig, NodeAddr};
use redis_conn::{
    AddressMap, BackoffConfig, ConnectionConfig, Delivery, NodeConfig, Protocol, RandomSelector,
    ReplicaSelector, RoundRobinSelector, Secret, ServerAddr, TlsConfig,
};
use redis_pool::PoolConfig;
use redis_sentinel::SentinelConfig;

use crate::events::{Event, EventCallback, EventHub};
use crate::ConfigError;

/// Which kind of deployment the client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// One server (with its replicas, if any, unused).
    #[default]
    Standalone,
    /// A Redis Cluster, learned from seed nodes.
    Cluster,
    /// A master found (and followed) through Sentinel.
    Sentinel,
}

impl Mode {
    /// The mode's name in profiles and URLs: `standalone`, `cluster`, `sentinel`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Cluster => "cluster",
            Mode::Sentinel => "sentinel",
        }
    }
}

impl FromStr for Mode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "standalone" => Ok(Mode::Standalone),
            "cluster" => Ok(Mode::Cluster),
            "sentinel" => Ok(Mode::Sentinel),
            other => Err(ConfigError::new(format!(
                "unknown mode \"{other}\" (expected standalone, cluster or sentinel)"
            ))),
        }
    }
}

/// How a replica is picked for a read, with reads from replicas on.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum ReplicaSelection {
    /// A replica at random for each read (the default).
    #[default]
    Random,
    /// Replicas in turn.
    RoundRobin,
    /// Your own choice (latency, zone...).
    Custom(Arc<dyn ReplicaSelector>),
}

impl ReplicaSelection {
    /// The name in profiles: `random`, `round_robin` (`custom` for your own).
    pub fn name(&self) -> &'static str {
        match self {
            ReplicaSelection::Random => "random",
            ReplicaSelection::RoundRobin => "round_robin",
            ReplicaSelection::Custom(_) => "custom",
        }
    }

    fn selector(&self) -> Arc<dyn ReplicaSelector> {
        match self {
            ReplicaSelection::Random => Arc::new(RandomSelector),
            ReplicaSelection::RoundRobin => Arc::new(RoundRobinSelector::default()),
            ReplicaSelection::Custom(s) => Arc::clone(s),
        }
    }
}

impl FromStr for ReplicaSelection {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "random" => Ok(ReplicaSelection::Random),
            "round_robin" | "round-robin" => Ok(ReplicaSelection::RoundRobin),
            other => Err(ConfigError::new(format!(
                "unknown replica selector \"{other}\" (expected random or round_robin)"
            ))),
        }
    }
}

/// Delegates to a shared selector (the lower layers take selectors by value).
#[derive(Debug)]
struct SharedSelector(Arc<dyn ReplicaSelector>);

impl ReplicaSelector for SharedSelector {
    fn select(&self, candidates: &[ServerAddr]) -> usize {
        self.0.select(candidates)
    }
}

/// Everything about how a [`Client`](crate::Client) connects and behaves, for every mode.
///
/// Build it in code (every setter documents its default), from a URL ([`Config::from_url`]), or
/// from a profile file ([`Config::from_profile`]); the [settings table](crate#settings) names
/// each setting's profile key and URL option. `Debug` never shows a password.
///
/// ```
/// use std::time::Duration;
/// use redis_client::{Config, Mode};
///
/// let config = Config::from_url("redis://app:S3cr3t@127.0.0.1:6379/2")?
///     .client_name("billing")
///     .response_timeout(Duration::from_millis(500))
///     .max_attempts(5);
/// assert_eq!(config.mode(), Mode::Standalone);
/// assert_eq!(config.database_index(), 2);
/// assert!(!format!("{config:?}").contains("S3cr3t"));
///
/// let cluster = Config::cluster(["10.0.0.1:6379", "10.0.0.2:6379"])?.read_from_replicas(true);
/// assert_eq!(cluster.mode(), Mode::Cluster);
/// # Ok::<(), redis_client::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) mode: Mode,
    pub(crate) nodes: Vec<ServerAddr>,
    pub(crate) sentinels: Vec<ServerAddr>,
    pub(crate) master_name: Option<String>,
    /// Every data connection's settings, defaults included: each connection is this template
    /// for its own address (the template's is a placeholder). The sentinel connections take
    /// their timeouts, limits, backoff, TLS and address map from it too.
    pub(crate) connection: ConnectionConfig,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<Secret>,
    pub(crate) sentinel_tls: Option<bool>,
    pub(crate) connections: usize,
    /// Every node's pool of exclusive connections.
    pub(crate) pool: PoolConfig,
    pub(crate) read_from_replicas: bool,
    pub(crate) replica_selection: ReplicaSelection,
    pub(crate) topology_refresh: Option<Duration>,
    pub(crate) min_topology_refresh: Duration,
    pub(crate) max_redirects: u32,
    pub(crate) sentinel_poll: Duration,
    pub(crate) log_events: bool,
    pub(crate) callbacks: Vec<(Option<&'static str>, EventCallback)>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// Standalone at `127.0.0.1:6379`, with every default (see each setter).
    pub fn new() -> Config {
        // The connections' and the pools' defaults are the layers' own: `Config` holds their
        // configs. The node's (`connections`), the cluster's and the sentinel's are written out,
        // since their configs are built from seeds and a node config, which `Config` only has
        // at connect time (`defaults_are_the_layers_defaults` holds those equal to the layers').
        let server = ServerAddr::tcp("127.0.0.1", 6379);
        Config {
            mode: Mode::Standalone,
            nodes: vec![server.clone()],
            sentinels: Vec::new(),
            master_name: None,
            connection: ConnectionConfig::new(server),
            sentinel_username: None,
            sentinel_password: None,
            sentinel_tls: None,
            connections: 1,
            pool: PoolConfig::default(),
            read_from_replicas: false,
            replica_selection: ReplicaSelection::Random,
            topology_refresh: Some(Duration::from_secs(30)),
            min_topology_refresh: Duration::from_millis(250),
            max_redirects: 5,
            sentinel_poll: Duration::from_secs(5),
            log_events: false,
            callbacks: Vec::new(),
        }
    }

    /// One server, given as `host:port` (IPv6 as `[::1]:6379`).
    ///
    /// # Errors
    /// [`ConfigError`] for an address that does not parse.
    pub fn standalone(addr: &str) -> Result<Config, ConfigError> {
        Ok(Config::new().nodes_addrs(vec![parse_host_port(addr, 6379)?]))
    }

    /// A cluster, learned from these seeds (`host:port` each; a few are enough).
    ///
    /// # Errors
    /// [`ConfigError`] for an address that does not parse, or no seed at all.
    pub fn cluster<I, S>(seeds: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = seeds
            .into_iter()
            .map(|s| parse_host_port(s.as_ref(), 6379))
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(ConfigError::new("a cluster needs at least one seed node"));
        }
        Ok(Config::new().with_mode(Mode::Cluster).nodes_addrs(nodes))
    }

    /// A Sentinel deployment: the sentinels (`host:port`, port 26379 by default) and the name of
    /// the master they monitor.
    ///
    /// # Errors
    /// [`ConfigError`] for an address that does not parse, or no sentinel at all.
    pub fn sentinel<I, S>(sentinels: I, master_name: &str) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let sentinels = sentinels
            .into_iter()
            .map(|s| parse_host_port(s.as_ref(), 26379))
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(ConfigError::new(
                "a sentinel deployment needs at least one sentinel",
            ));
        }
        Ok(Config::new()
            .with_mode(Mode::Sentinel)
            .sentinel_addrs(sentinels)
            .master_name(master_name))
    }

    /// Sets the mode (the constructors and URLs set it already).
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The data nodes: the server (standalone) or the seeds (cluster).
    #[must_use]
    pub fn nodes_addrs(mut self, nodes: Vec<ServerAddr>) -> Self {
        self.nodes = nodes;
        self
    }

    /// The sentinels.
    #[must_use]
    pub fn sentinel_addrs(mut self, sentinels: Vec<ServerAddr>) -> Self {
        self.sentinels = sentinels;
        self
    }

    /// The master's name, as the sentinels know it.
    #[must_use]
    pub fn master_name(mut self, name: impl Into<String>) -> Self {
        self.master_name = Some(name.into());
        self
    }

    /// The ACL user (with a password). Without it, `default`.
    #[must_use]
    pub fn username(self, user: impl Into<String>) -> Self {
        self.with_connection(|c| c.username(user))
    }

    /// The password of the data nodes (`requirepass`, or the ACL user's). Never printed.
    #[must_use]
    pub fn password(self, password: impl Into<Secret>) -> Self {
        self.with_connection(|c| c.password(password))
    }

    /// The database to `SELECT` (default 0; a cluster has only 0).
    #[must_use]
    pub fn database(self, db: i64) -> Self {
        self.with_connection(|c| c.database(db))
    }

    /// A name shown in `CLIENT LIST` (default none).
    #[must_use]
    pub fn client_name(self, name: impl Into<String>) -> Self {
        self.with_connection(|c| c.client_name(name))
    }

    /// RESP3 (the default, with fallback to RESP2 on old servers) or RESP2.
    #[must_use]
    pub fn protocol(self, protocol: Protocol) -> Self {
        self.with_connection(|c| c.protocol(protocol))
    }

    /// Connect over TLS with these settings (default: no TLS). Verification is on unless the
    /// settings were built with [`redis_conn::TlsConfigBuilder::dangerous`].
    #[must_use]
    pub fn tls(self, tls: TlsConfig) -> Self {
        self.with_connection(|c| c.tls(tls))
    }

    /// Dial `map(host, port)` instead of each `host:port` (default: none, every address is
    /// dialed as given): for NAT, Docker and Kubernetes, where the addresses a cluster's nodes
    /// or the sentinels announce are not the ones the client can reach. Code only (no profile
    /// key or URL option); `rcli config` and `Debug` show `address_map = set`.
    ///
    /// Every TCP address the client dials goes through it, on every connect and reconnect:
    /// cluster nodes from the topology, `MOVED` and `ASK`, sentinels, and the masters and
    /// replicas sentinels name, but also the seeds, the sentinels and the server you configure;
    /// return the addresses that need no mapping unchanged. The client keeps the announced
    /// addresses everywhere else (slot map, redirects, events, errors: a connect error names
    /// the announced address and the one it dialed), and TLS verifies the server's certificate
    /// against the announced host unless [`TlsConfig`] sets a server name (or the map is built
    /// with [`AddressMap::verify_mapped_host`] and given to [`Config::address_map`]).
    ///
    /// ```
    /// use redis_client::Config;
    ///
    /// // The nodes announce 10.0.0.x:6379; the NAT forwards 203.0.113.7:700x to node x.
    /// let config = Config::cluster(["203.0.113.7:7001"])?.map_address(|host, port| {
    ///     match host.strip_prefix("10.0.0.").and_then(|x| x.parse::<u16>().ok()) {
    ///         Some(x) if port == 6379 => ("203.0.113.7".to_string(), 7000 + x),
    ///         _ => (host.to_string(), port),
    ///     }
    /// });
    /// assert!(config.settings().contains(&("address_map", "set".to_string())));
    /// # Ok::<(), redis_client::ConfigError>(())
    /// ```
    #[must_use]
    pub fn map_address(
        self,
        map: impl Fn(&str, u16) -> (String, u16) + Send + Sync + 'static,
    ) -> Self {
        self.address_map(AddressMap::new(map))
    }

    /// [`map_address`](Config::map_address) with a map built beforehand, e.g. one whose TLS
    /// verification checks the mapped hosts: `rcli config` then shows `address_map = set,
    /// TLS verifies the mapped host`.
    ///
    /// ```
    /// use redis_client::{AddressMap, Config};
    ///
    /// // Node x announces 10.0.0.x; it is published as nodeX.redis.example.com, whose
    /// // certificate names that public host.
    /// let map = AddressMap::new(|host, port| match host.strip_prefix("10.0.0.") {
    ///     Some(x) => (format!("node{x}.redis.example.com"), port),
    ///     None => (host.to_string(), port),
    /// })
    /// .verify_mapped_host();
    /// let config = Config::from_url("rediss+cluster://node1.redis.example.com:6379")?.address_map(map);
    /// assert!(config
    ///     .settings()
    ///     .contains(&("address_map", "set, TLS verifies the mapped host".to_string())));
    /// # Ok::<(), redis_client::ConfigError>(())
    /// ```
    #[must_use]
    pub fn address_map(self, map: AddressMap) -> Self {
        self.with_connection(|c| c.address_map(map))
    }

    /// Credentials for the sentinels themselves (a sentinel's `requirepass`).
    #[must_use]
    pub fn sentinel_credentials(
        mut self,
        username: Option<String>,
        password: impl Into<Secret>,
    ) -> Self {
        self.sentinel_username = username;
        self.sentinel_password = Some(password.into());
        self
    }

    /// Whether sentinels are reached over TLS (default: as the data nodes).
    #[must_use]
    pub fn sentinel_tls(mut self, on: bool) -> Self {
        self.sentinel_tls = Some(on);
        self
    }

    /// Bound on opening one connection: TCP, TLS and handshake (default 500 ms).
    #[must_use]
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.with_connection(|c| c.connect_timeout(timeout))
    }

    /// Deadline of one call, retries included (default 1 s). Blocking commands get their own
    /// timeout on top.
    #[must_use]
    pub fn response_timeout(self, timeout: Duration) -> Self {
        self.with_connection(|c| c.response_timeout(timeout))
    }

    /// Attempts per command, the first included (default 3). Only commands safe to resend are
    /// resent (see the [crate docs](crate#retries-and-delivery)).
    #[must_use]
    pub fn max_attempts(self, attempts: u32) -> Self {
        self.with_connection(|c| c.max_attempts(attempts))
    }

    /// First reconnect backoff ceiling (default 10 ms; full jitter below it).
    #[must_use]
    pub fn backoff_base(self, base: Duration) -> Self {
        self.with_backoff(|b| b.base(base))
    }

    /// Largest reconnect delay (default 1 s).
    #[must_use]
    pub fn backoff_max(self, max: Duration) -> Self {
        self.with_backoff(|b| b.max_delay(max))
    }

    /// Growth of the backoff ceiling per attempt (default 2).
    #[must_use]
    pub fn backoff_factor(self, factor: f64) -> Self {
        self.with_backoff(|b| b.factor(factor))
    }

    /// Reconnect attempts before a connection gives up (default `None`: never).
    #[must_use]
    pub fn reconnect_attempts(self, attempts: Option<u32>) -> Self {
        self.with_backoff(|b| b.max_attempts(attempts))
    }

    /// What may be resent once its outcome is unknown (default at most once).
    #[must_use]
    pub fn delivery(self, delivery: Delivery) -> Self {
        self.with_connection(|c| c.delivery(delivery))
    }

    /// Requests that may wait per connection (default 10,000); beyond, `QueueFull` at once.
    #[must_use]
    pub fn queue_capacity(self, capacity: usize) -> Self {
        self.with_connection(|c| c.queue_capacity(capacity))
    }

    /// How long a server may stay silent while calls wait before their connection counts as
    /// hung and is replaced (default 2 s). A slow reply is not a dead connection: a call fails at
    /// its own deadline ([`Config::response_timeout`]) and the connection carries on, so a 1.5 s
    /// script costs errors only to the calls that waited past theirs. URL option and profile
    /// key `hang_window_ms`. See [`ConnectionConfig::hang_window`].
    #[must_use]
    pub fn hang_window(self, window: Duration) -> Self {
        self.with_connection(|c| c.hang_window(window))
    }

    /// How many bytes of pub/sub messages may wait for the application to read them (default
    /// 64 MiB), besides the queue capacity in messages: past either, a subscriber stops reading
    /// its socket until the application catches up. URL option and profile key
    /// `message_queue_bytes`. See [`ConnectionConfig::message_queue_bytes`].
    #[must_use]
    pub fn message_queue_bytes(self, bytes: usize) -> Self {
        self.with_connection(|c| c.message_queue_bytes(bytes))
    }

    /// The most bytes one reply may span, counted as they arrive (default 513 MiB: one bulk of
    /// Redis's largest size, 512 MiB, with room around it). A reply that passes it closes its
    /// connection and fails its call with an error naming `max_reply_bytes`. URL option and
    /// profile key `max_reply_bytes`.
    #[must_use]
    pub fn max_reply_bytes(self, bytes: usize) -> Self {
        self.with_connection(|c| c.max_reply_bytes(bytes))
    }

    /// The most values one reply may hold, at every level of nesting, counted as they arrive
    /// (default 4 Mi = 4,194,304; an `HGETALL` of `n` fields is `2n + 1` values). The default
    /// keeps what a server can make the client hold with an endless reply of tiny elements
    /// under 200 MiB; raise it for larger replies (a complete reply costs about 56 bytes per
    /// value while it is built). A reply that passes it fails like
    /// [`Config::max_reply_bytes`]. URL option and profile key `max_reply_elements`.
    #[must_use]
    pub fn max_reply_elements(self, elements: usize) -> Self {
        self.with_connection(|c| c.max_reply_elements(elements))
    }

    /// While disconnected, fail calls at once instead of waiting for the reconnect (default
    /// false).
    #[must_use]
    pub fn fail_fast(self, on: bool) -> Self {
        self.with_connection(|c| c.fail_fast(on))
    }

    /// `PING` connections idle this long (default 1 s; `None` turns it off).
    #[must_use]
    pub fn health_check_interval(self, interval: Option<Duration>) -> Self {
        self.with_connection(|c| c.health_check_interval(interval))
    }

    /// How long a connection may poll for the replies it waits for before its task sleeps
    /// (default 50 us; zero turns it off). Adaptive: it polls while most recent replies came
    /// within this and stops after a run of replies that came later, so a distant server costs
    /// one budget of polling per 64 waits and an idle connection none; with a server on the same
    /// host it saves the thread wake-up per round trip (see [`ConnectionConfig::spin_wait`]).
    #[must_use]
    pub fn spin_wait(self, budget: Duration) -> Self {
        self.with_connection(|c| c.spin_wait(budget))
    }

    /// Shared (multiplexed) connections per node, used in turn (default 1: one connection
    /// pipelines every caller's commands, the fastest for most loads).
    #[must_use]
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// Most exclusive connections per node, for blocking commands and WATCH transactions
    /// (default 10).
    #[must_use]
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool = self.pool.max_size(n.max(1));
        self
    }

    /// Exclusive connections kept open per node (default 0).
    #[must_use]
    pub fn pool_min_idle(mut self, n: usize) -> Self {
        self.pool = self.pool.min_idle(n);
        self
    }

    /// How long to wait for an exclusive connection (default 1 s).
    #[must_use]
    pub fn pool_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.acquire_timeout(timeout);
        self
    }

    /// Idle exclusive connections are closed after this long (default 10 min).
    #[must_use]
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pool = self.pool.idle_timeout(timeout);
        self
    }

    /// Exclusive connections are replaced after this long (default 30 min).
    #[must_use]
    pub fn pool_max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.pool = self.pool.max_lifetime(lifetime);
        self
    }

    /// Send read-only commands to replicas (cluster and sentinel; default false). Replicas lag:
    /// a read may not see a write just made.
    #[must_use]
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.read_from_replicas = on;
        self
    }

    /// How a replica is chosen (default random).
    #[must_use]
    pub fn replica_selection(mut self, selection: ReplicaSelection) -> Self {
        self.replica_selection = selection;
        self
    }

    /// Periodic cluster topology refresh (default 30 s with jitter; `None`: only on triggers).
    #[must_use]
    pub fn topology_refresh(mut self, interval: Option<Duration>) -> Self {
        self.topology_refresh = interval;
        self
    }

    /// The least time between two topology refreshes (default 250 ms).
    #[must_use]
    pub fn min_topology_refresh(mut self, interval: Duration) -> Self {
        self.min_topology_refresh = interval;
        self
    }

    /// Cluster redirects followed per command (default 5).
    #[must_use]
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    /// How often sentinels are polled as a backstop (default 5 s).
    #[must_use]
    pub fn sentinel_poll_interval(mut self, interval: Duration) -> Self {
        self.sentinel_poll = interval;
        self
    }

    /// Log every event through `tracing` at INFO (default false).
    #[must_use]
    pub fn log_events(mut self, on: bool) -> Self {
        self.log_events = on;
        self
    }

    /// Calls `f` for every event (see [`Event`]).
    #[must_use]
    pub fn on_event(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callback(None, f)
    }

    /// Calls `f` when a connection is first made.
    #[must_use]
    pub fn on_connect(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callback(Some("connect"), f)
    }

    /// Calls `f` when a connection breaks.
    #[must_use]
    pub fn on_disconnect(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callback(Some("disconnect"), f)
    }

    /// Calls `f` when a connection is back after a break.
    #[must_use]
    pub fn on_reconnect(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callback(Some("reconnect"), f)
    }

    /// Calls `f` for errors no caller sees (a failed health check, a refused reconnect).
    #[must_use]
    pub fn on_error(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callback(Some("error"), f)
    }

    /// Calls `f` when a sentinel failover is followed.
    #[must_use]
    pub fn on_failover(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callback(Some("failover"), f)
    }

    /// Calls `f` when the cluster topology changes.
    #[must_use]
    pub fn on_topology_change(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callback(Some("topology_changed"), f)
    }

    fn callback(
        mut self,
        filter: Option<&'static str>,
        f: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.push((filter, Arc::new(f)));
        self
    }

    /// Sets a connection setting on the template every connection is made from.
    fn with_connection(mut self, set: impl FnOnce(ConnectionConfig) -> ConnectionConfig) -> Self {
        self.connection = set(self.connection);
        self
    }

    /// Sets a reconnect backoff setting, keeping the others.
    fn with_backoff(self, set: impl FnOnce(BackoffConfig) -> BackoffConfig) -> Self {
        self.with_connection(|c| {
            let backoff = set(*c.get_backoff());
            c.backoff(backoff)
        })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The data nodes (standalone: the server; cluster: the seeds).
    pub fn nodes(&self) -> &[ServerAddr] {
        &self.nodes
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[ServerAddr] {
        &self.sentinels
    }

    /// The database index.
    pub fn database_index(&self) -> i64 {
        self.connection.get_database()
    }

    /// The TLS settings, when TLS is on.
    pub fn tls_config(&self) -> Option<&TlsConfig> {
        self.connection.tls_config()
    }

    /// The response timeout.
    pub fn get_response_timeout(&self) -> Duration {
        self.connection.get_response_timeout()
    }

    /// Checks that the settings fit the mode.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self.mode {
            Mode::Standalone if self.nodes.len() != 1 => Err(ConfigError::new(format!(
                "standalone mode needs exactly one server, got {} (several URLs are cluster \
                 seeds: set mode = \"cluster\")",
                self.nodes.len()
            ))),
            Mode::Cluster if self.nodes.is_empty() => Err(ConfigError::new(
                "cluster mode needs at least one seed node",
            )),
            Mode::Cluster if self.connection.get_database() != 0 => Err(ConfigError::key(
                "database",
                "a cluster has only database 0",
            )),
            Mode::Cluster if self.nodes.iter().any(|n| matches!(n, ServerAddr::Unix(_))) => {
                Err(ConfigError::new("cluster seeds must be TCP addresses"))
            }
            Mode::Sentinel if self.sentinels.is_empty() => Err(ConfigError::key(
                "sentinels",
                "sentinel mode needs at least one sentinel",
            )),
            Mode::Sentinel if self.master_name.is_none() => Err(ConfigError::key(
                "master_name",
                "sentinel mode needs the master's name",
            )),
            _ if self.sentinel_username.is_some() && self.sentinel_password.is_none() => {
                Err(ConfigError::key(
                    "sentinel_username",
                    "a sentinel user needs sentinel_password",
                ))
            }
            _ => Ok(()),
        }
    }

    /// The settings of one connection to `addr`, its events going to `hub`.
    pub(crate) fn connection_config(
        &self,
        addr: ServerAddr,
        hub: &Arc<EventHub>,
    ) -> ConnectionConfig {
        let hub = Arc::clone(hub);
        self.connection
            .with_addr(addr)
            .on_event(move |e| hub.emit(Event::Connection(e.clone())))
    }

    /// The settings of one node (shared connections and exclusive pool).
    pub(crate) fn node_config(&self, addr: ServerAddr, hub: &Arc<EventHub>) -> NodeConfig {
        NodeConfig::new(self.connection_config(addr, hub))
            .pool(self.pool.clone())
            .shared_connections(self.connections)
    }

    pub(crate) fn cluster_config(&self, hub: &Arc<EventHub>) -> Result<ClusterConfig, ConfigError> {
        let seeds = self
            .nodes
            .iter()
            .map(|n| match n {
                ServerAddr::Tcp { host, port } => Ok(NodeAddr::new(host.clone(), *port)),
                ServerAddr::Unix(_) => Err(ConfigError::new("cluster seeds must be TCP addresses")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = self.nodes[0].clone();
        Ok(ClusterConfig::new(seeds, self.node_config(first, hub))
            .read_from_replicas(self.read_from_replicas)
            .replica_selector(SharedSelector(self.replica_selection.selector()))
            .refresh_interval(self.topology_refresh)
            .min_refresh_interval(self.min_topology_refresh)
            .max_redirects(self.max_redirects))
    }

    pub(crate) fn sentinel_config(
        &self,
        hub: &Arc<EventHub>,
    ) -> Result<SentinelConfig, ConfigError> {
        let name = self.master_name.clone().ok_or_else(|| {
            ConfigError::key("master_name", "sentinel mode needs the master's name")
        })?;
        // The data node's address is found by discovery; this one is replaced.
        let placeholder = self.sentinels[0].clone();
        Ok(SentinelConfig::new(
            self.sentinels.clone(),
            name,
            self.node_config(placeholder, hub),
        )
        .sentinel_connection(self.sentinel_connection_config())
        .read_from_replicas(self.read_from_replicas)
        .replica_selector(SharedSelector(self.replica_selection.selector()))
        .poll_interval(self.sentinel_poll))
    }

    /// The settings of the connections to the sentinels: the data connections' timeouts,
    /// limits, backoff and address map, the sentinels' own credentials, and TLS as the data
    /// nodes unless [`Config::sentinel_tls`] says otherwise.
    fn sentinel_connection_config(&self) -> ConnectionConfig {
        let data = &self.connection;
        let mut sentinel = ConnectionConfig::new(self.sentinels[0].clone())
            .connect_timeout(data.get_connect_timeout())
            .response_timeout(data.get_response_timeout())
            .hang_window(data.get_hang_window())
            .limits(*data.get_limits())
            .backoff(*data.get_backoff());
        if let Some(password) = &self.sentinel_password {
            sentinel = sentinel.password(password.clone());
            if let Some(user) = &self.sentinel_username {
                sentinel = sentinel.username(user.clone());
            }
        }
        if self.sentinel_tls.unwrap_or(data.tls_config().is_some()) {
            sentinel = sentinel.tls(data.tls_config().cloned().unwrap_or_default());
        }
        if let Some(map) = data.get_address_map() {
            sentinel = sentinel.address_map(map.clone());
        }
        sentinel
    }
}

/// `host:port`, `host` (default port), `[v6]:port`, or `/path` (a Unix socket).
pub(crate) fn parse_host_port(text: &str, default_port: u16) -> Result<ServerAddr, ConfigError> {
    let text = text.trim();
    if text.starts_with('/') {
        return Ok(ServerAddr::Unix(text.into()));
    }
    // An address with an `@` carries credentials (`user:pw@host`): only the host is shown.
    let shown = match text.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => text.to_string(),
    };
    let bad = |why: &str| ConfigError::new(format!("bad address \"{shown}\": {why}"));
    if text.contains('@') {
        return Err(bad(
            "an address holds no credentials (set them with username and password, or use a URL)",
        ));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(bad("unexpected text after ]")),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(bad(
                    "an IPv6 address must be written in brackets: [::1]:6379",
                ))
            }
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        None => default_port,
    };
    Ok(ServerAddr::tcp(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_in_every_form() {
        assert_eq!(
            parse_host_port("h:7000", 6379).unwrap(),
            ServerAddr::tcp("h", 7000)
        );
        assert_eq!(
            parse_host_port("h", 6379).unwrap(),
            ServerAddr::tcp("h", 6379)
        );
        assert_eq!(
            parse_host_port("[::1]:7000", 6379).unwrap(),
            ServerAddr::tcp("::1", 7000)
        );
        assert_eq!(
            parse_host_port("[::1]", 26379).unwrap(),
            ServerAddr::tcp("::1", 26379)
        );
        assert_eq!(
            parse_host_port("/tmp/r.sock", 6379).unwrap(),
            ServerAddr::Unix("/tmp/r.sock".into())
        );
        for bad in ["h:", "h:0", "h:99999", ":1", "::1:6379", "[::1", "[::1]x"] {
            let err = parse_host_port(bad, 6379).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        // Credentials in an address are refused, and not shown.
        for bad in ["pw@h:1", "u:M4rk/er?#@:%2Fx@h", "[u:pw@::1]:1"] {
            let err = parse_host_port(bad, 6379).unwrap_err().to_string();
            assert!(err.contains("no credentials"), "{err}");
            assert!(!err.contains("pw") && !err.contains("M4rk"), "{err}");
        }
    }

    #[test]
    fn an_address_map_reaches_every_connection_and_shows_as_set_not_as_a_closure() {
        let plain = Config::sentinel(["s:1"], "m").unwrap();
        assert!(plain
            .settings()
            .contains(&("address_map", "(none)".to_string())));
        let config = plain.map_address(|host, port| (format!("reach-{host}"), port + 1));
        let hub = Arc::new(EventHub::new(&[], false));
        let node = config.connection_config(ServerAddr::tcp("h", 1), &hub);
        let map = node
            .get_address_map()
            .expect("data connections carry the map");
        assert_eq!(map.map("h", 1), ("reach-h".to_string(), 2));
        let sentinel = config.sentinel_config(&hub).unwrap();
        let sentinel_map = sentinel.sentinel_connection_config().get_address_map();
        assert!(sentinel_map.is_some(), "sentinel connections carry the map");
        assert!(config
            .settings()
            .contains(&("address_map", "set".to_string())));
        let debug = format!("{config:?}");
        assert!(debug.contains("address_map: \"set\""), "{debug}");
        assert!(!debug.contains("reach-"), "{debug}");
    }

    #[test]
    fn reply_limits_reach_every_connection_and_show_in_the_settings() {
        let defaults = Config::new();
        let codec = redis_conn::Limits::default();
        assert_eq!(
            defaults.connection.get_limits().get_max_reply_bytes(),
            codec.get_max_reply_bytes()
        );
        assert_eq!(
            defaults.connection.get_limits().get_max_reply_elements(),
            codec.get_max_reply_elements()
        );
        let config = Config::sentinel(["s:1"], "m")
            .unwrap()
            .max_reply_bytes(1 << 20)
            .max_reply_elements(1000);
        let hub = Arc::new(EventHub::new(&[], false));
        let limits = *config
            .connection_config(ServerAddr::tcp("h", 1), &hub)
            .get_limits();
        assert_eq!(limits.get_max_reply_bytes(), 1 << 20);
        assert_eq!(limits.get_max_reply_elements(), 1000);
        let settings = config.settings();
        assert!(settings.contains(&("max_reply_bytes", "1048576".to_string())));
        assert!(settings.contains(&("max_reply_elements", "1000".to_string())));
    }

    #[test]
    fn modes_check_their_settings() {
        assert!(Config::new().validate().is_ok());
        assert!(Config::cluster(Vec::<&str>::new()).is_err());
        let err = Config::cluster(["a:1"])
            .unwrap()
            .database(2)
            .validate()
            .unwrap_err();
        assert_eq!(err.key_name(), Some("database"));
        let err = Config::new()
            .with_mode(Mode::Sentinel)
            .validate()
            .unwrap_err();
        assert_eq!(err.key_name(), Some("sentinels"));
        let err = Config::sentinel(["s:1"], "m")
            .unwrap()
            .validate()
            .map(|_| ());
        assert!(err.is_ok());
        let two = Config::new().nodes_addrs(vec![ServerAddr::tcp("a", 1), ServerAddr::tcp("b", 1)]);
        assert!(two.validate().unwrap_err().to_string().contains("cluster"));
    }

    /// The defaults `Config::new` writes out are the layers' own: every layer's configuration
    /// built from a default `Config` is the one the layer builds by default.
    #[test]
    fn defaults_are_the_layers_defaults() {
        let hub = Arc::new(EventHub::new(&[], false));
        let events = |c: ConnectionConfig| c.on_event(|_| {});
        let addr = ServerAddr::tcp("h", 1);
        let config = Config::new();
        let connection = events(ConnectionConfig::new(addr.clone()));
        assert_eq!(
            format!("{:?}", config.connection_config(addr.clone(), &hub)),
            format!("{connection:?}")
        );
        let node = NodeConfig::new(connection).pool(PoolConfig::default());
        assert_eq!(
            format!("{:?}", config.node_config(addr.clone(), &hub)),
            format!("{node:?}")
        );
        let selector = || SharedSelector(ReplicaSelection::default().selector());
        let cluster = Config::cluster(["h:1"]).unwrap();
        let layer = ClusterConfig::new([NodeAddr::new("h", 1)], node.clone());
        assert_eq!(
            format!("{:?}", cluster.cluster_config(&hub).unwrap()),
            format!("{:?}", layer.replica_selector(selector()))
        );
        let sentinel = Config::sentinel(["h:1"], "m").unwrap();
        let layer = SentinelConfig::new([addr], "m", node);
        assert_eq!(
            format!("{:?}", sentinel.sentinel_config(&hub).unwrap()),
            format!("{:?}", layer.replica_selector(selector()))
        );
    }

    /// What `Config` holds reaches every layer: the data connections (through its template),
    /// the pools, and the sentinel connections (the template's timeouts and backoff).
    #[test]
    fn settings_reach_the_connections_the_pools_and_the_sentinels() {
        let ms = Duration::from_millis;
        let config = Config::sentinel(["s:1"], "m")
            .unwrap()
            .username("u")
            .password("pw")
            .database(3)
            .client_name("n")
            .connect_timeout(ms(1))
            .response_timeout(ms(2))
            .hang_window(ms(3))
            .backoff_base(ms(4))
            .backoff_max(ms(5))
            .backoff_factor(0.5)
            .reconnect_attempts(Some(6))
            .max_attempts(7)
            .pool_size(8)
            .pool_min_idle(2);
        let backoff = BackoffConfig::default()
            .base(ms(4))
            .max_delay(ms(5))
            .factor(0.5)
            .max_attempts(Some(6));
        // The sentinels' connections share the timeouts and the backoff; the data connections
        // add the credentials, the database, the name and the attempts per command.
        let sentinel = ConnectionConfig::new(ServerAddr::tcp("s", 1))
            .connect_timeout(ms(1))
            .response_timeout(ms(2))
            .hang_window(ms(3))
            .backoff(backoff);
        assert_eq!(
            format!("{:?}", config.sentinel_connection_config()),
            format!("{sentinel:?}")
        );
        let addr = ServerAddr::tcp("h", 1);
        let connection = sentinel
            .with_addr(addr.clone())
            .username("u")
            .password("pw")
            .database(3)
            .client_name("n")
            .max_attempts(7)
            .on_event(|_| {});
        let pool = PoolConfig::default().max_size(8).min_idle(2);
        let hub = Arc::new(EventHub::new(&[], false));
        assert_eq!(
            format!("{:?}", config.node_config(addr, &hub)),
            format!("{:?}", NodeConfig::new(connection).pool(pool))
        );
        // A factor below 1 set in code shows as given; the schedule takes it as 1.
        assert!(config
            .settings()
            .contains(&("retry.backoff_factor", "0.5".to_string())));
    }

    #[test]
    fn debug_and_settings_hide_passwords() {
        let config = Config::new()
            .password("S3cr3t-marker")
            .sentinel_credentials(Some("s".into()), "S3cr3t-marker");
        let text = format!("{config:?}");
        assert!(!text.contains("S3cr3t-marker"), "{text}");
        assert!(text.contains("***"));
        let settings = config.settings();
        assert!(settings.iter().all(|(_, v)| !v.contains("S3cr3t")));
        assert!(settings.iter().any(|(k, v)| *k == "password" && v == "***"));
    }
}
