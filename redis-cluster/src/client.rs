//! The routing client: one multiplexed connection per node, commands sent to the master of their
//! slot, `MOVED`/`ASK` followed, topology refreshed on triggers and on a timer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis_conn::pool::RedisLease;
use redis_conn::table::CommandInfo;
use redis_conn::{
    Args, Batch, BatchCmd, Cmd, Error, Node, NodeConfig, RandomSelector, ReplicaSelector,
    ServerAddr, ServerError, Stats, Value,
};
use tokio::time::Instant;

use crate::{agreed_view, slot, NodeAddr, Redirect, RedirectKind, SlotMap, Topology};

/// How many nodes are asked for their view at each refresh.
const VIEWS_PER_REFRESH: usize = 3;

/// Settings of a cluster client.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    seeds: Vec<NodeAddr>,
    node: NodeConfig,
    refresh_interval: Option<Duration>,
    min_refresh_interval: Duration,
    max_redirects: u32,
    read_from_replicas: bool,
    selector: Arc<dyn ReplicaSelector>,
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
            read_from_replicas: false,
            selector: Arc::new(RandomSelector),
        }
    }

    /// Send read-only commands to a replica of their slot (default false). Replica connections
    /// send `READONLY`; a read falls back to the master when no replica of the slot is healthy or
    /// the replica fails. Replicas lag their master: a read may not see a write just made.
    #[must_use]
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.read_from_replicas = on;
        self
    }

    /// How a replica is chosen (default [`RandomSelector`]).
    #[must_use]
    pub fn replica_selector(mut self, selector: impl ReplicaSelector + 'static) -> Self {
        self.selector = Arc::new(selector);
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
    fn node_at(&self, addr: &NodeAddr) -> NodeConfig {
        self.node.clone().map_connection(|c| c.with_addr(addr))
    }
}

impl ClusterError {
    /// Whether the command may have run (see `redis_conn::Error::sent`). Errors found before
    /// anything was sent say `Sent::No`: a key spanning slots, a slot nobody serves, no usable
    /// topology, and a connection that could not be opened (refused, timed out, TLS or the
    /// handshake refused: the command never reached a server).
    pub fn sent(&self) -> Option<redis_conn::Sent> {
        match self {
            ClusterError::Node(e) if never_reached_a_server(e) => Some(redis_conn::Sent::No),
            ClusterError::Node(e) => e.sent(),
            ClusterError::CrossSlot { .. }
            | ClusterError::Unassigned { .. }
            | ClusterError::NoTopology(_) => Some(redis_conn::Sent::No),
            ClusterError::TooManyRedirects { .. } | ClusterError::BadTopology { .. } => None,
        }
    }

    /// A short, stable name of the variant; a node's error gives its own
    /// (`redis_conn::Error::kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterError::Node(e) => e.kind(),
            ClusterError::NoTopology(_) => "no_topology",
            ClusterError::BadTopology { .. } => "bad_topology",
            ClusterError::Unassigned { .. } => "unassigned",
            ClusterError::CrossSlot { .. } => "cross_slot",
            ClusterError::TooManyRedirects { .. } => "too_many_redirects",
        }
    }

    /// The same failure for a request of which other parts may have run (see
    /// `redis_conn::Error::partly_sent`).
    #[must_use]
    pub fn partly_sent(self) -> ClusterError {
        match self {
            ClusterError::Node(e) => ClusterError::Node(e.partly_sent()),
            other => other,
        }
    }
}

/// Counters of a cluster client, from [`ClusterClient::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Topology refreshes done (the initial load included).
    pub refreshes: u64,
    /// `MOVED` redirects followed.
    pub moved: u64,
    /// `ASK` redirects followed.
    pub ask: u64,
    /// The shared connections of every node, added up.
    pub connections: Stats,
}

/// What a cluster call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node's connection failed or the node answered with an error.
    #[error(transparent)]
    Node(#[from] Error),
    /// No node gave a usable view of the cluster.
    #[error("no usable cluster topology: {0}")]
    NoTopology(String),
    /// No node serves the slot.
    #[error("no node serves slot {slot}")]
    Unassigned {
        /// The slot.
        slot: u16,
    },
    /// The keys of one command live in different slots; nothing was sent.
    #[error("the keys of {command} live in different slots; nothing was sent")]
    CrossSlot {
        /// The command's name.
        command: String,
    },
    /// A node's view of the cluster was refused: it broke a rule no real cluster breaks
    /// (overlapping ranges, slots past 16383, more ranges or shards than slots...). The map in
    /// force stays.
    #[error("refused the topology from {node}: {error}")]
    BadTopology {
        /// The node that sent it.
        node: NodeAddr,
        /// What was wrong.
        error: crate::TopologyError,
    },
    /// Redirects went on past the limit.
    #[error("gave up after {redirects} redirects for slot {slot}")]
    TooManyRedirects {
        /// The slot.
        slot: u16,
        /// How many were followed.
        redirects: u32,
    },
}

/// Something that happened to the cluster as this client sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A refresh brought a different topology.
    TopologyChanged {
        /// Nodes that appeared.
        added: Vec<NodeAddr>,
        /// Nodes that left (their connections were closed).
        removed: Vec<NodeAddr>,
        /// Slots whose master changed (a failover, a reshard).
        moved_slots: usize,
        /// Slots without an owner now.
        uncovered_slots: usize,
    },
    /// A refresh found no usable view; the previous map stays.
    RefreshFailed {
        /// Why.
        error: String,
    },
}

impl ClusterEvent {
    /// The event's name, as monitoring prints it.
    pub fn name(&self) -> &'static str {
        match self {
            ClusterEvent::TopologyChanged { .. } => "topology_changed",
            ClusterEvent::RefreshFailed { .. } => "topology_refresh_failed",
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: ClusterConfig,
    events: tokio::sync::broadcast::Sender<ClusterEvent>,
    map: RwLock<Arc<SlotMap>>,
    conns: NodeSet,
    /// Connections to replicas for reads (they send READONLY).
    replica_conns: NodeSet,
    refresh_pending: AtomicBool,
    last_refresh: Mutex<Instant>,
    refreshes: AtomicU64,
    moved: AtomicU64,
    ask: AtomicU64,
    /// Set by `close`: no connection is opened any more.
    closed: AtomicBool,
    /// Wakes the periodic refresh on `close` (or when the client is dropped), so that it ends.
    shutdown: Arc<tokio::sync::Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.notify_one();
    }
}

/// A Redis Cluster client: cheap to clone, shared by any number of tasks.
///
/// ```no_run
/// # async fn demo() -> Result<(), redis_cluster::ClusterError> {
/// use redis_cluster::{ClusterClient, ClusterConfig, NodeAddr};
/// use redis_conn::{Cmd, ConnectionConfig, ServerAddr};
///
/// let seeds = vec![NodeAddr::new("127.0.0.1", 7000), NodeAddr::new("127.0.0.1", 7001)];
/// let template = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 7000));
/// let client = ClusterClient::connect(ClusterConfig::new(seeds, template)).await?;
/// client.send(Cmd::new("SET").arg("user:1").arg("Ada")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterClient {
    inner: Arc<Inner>,
}

impl ClusterClient {
    /// Learns the topology from the seeds (the view most of them agree on) and starts the
    /// periodic refresh.
    ///
    /// # Errors
    /// [`ClusterError::NoTopology`] when no seed answers `CLUSTER SHARDS`/`CLUSTER SLOTS`
    /// usably; [`ClusterError::Node`] with `redis_conn::Error::Tls` when every seed failed its
    /// TLS handshake (an unknown CA, a certificate that does not name the host).
    pub async fn connect(config: ClusterConfig) -> Result<ClusterClient, ClusterError> {
        let seeds = config.seeds.clone();
        let interval = config.refresh_interval;
        let (events, _) = tokio::sync::broadcast::channel(256);
        let client = ClusterClient {
            inner: Arc::new(Inner {
                config,
                events,
                map: RwLock::new(Arc::new(Topology::default().slot_map())),
                conns: NodeSet::default(),
                replica_conns: NodeSet::default(),
                refresh_pending: AtomicBool::new(false),
                last_refresh: Mutex::new(Instant::now()),
                refreshes: AtomicU64::new(0),
                moved: AtomicU64::new(0),
                ask: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                shutdown: Arc::new(tokio::sync::Notify::new()),
            }),
        };
        client.refresh_from(seeds).await?;
        if let Some(interval) = interval {
            let weak = Arc::downgrade(&client.inner);
            let shutdown = Arc::clone(&client.inner.shutdown);
            tokio::spawn(async move {
                loop {
                    let jitter = interval.mul_f64(0.9 + rand::random::<f64>() * 0.2);
                    tokio::select! {
                        () = tokio::time::sleep(jitter) => {}
                        () = shutdown.notified() => return,
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    ClusterClient { inner }.trigger_refresh();
                }
            });
        }
        Ok(client)
    }

    /// The current slot map.
    pub fn slot_map(&self) -> Arc<SlotMap> {
        Arc::clone(&self.inner.map.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A SCAN over the whole cluster: each master in turn, each with its own cursor.
    ///
    /// ```no_run
    /// # async fn demo(client: redis_cluster::ClusterClient) -> Result<(), redis_cluster::ClusterError> {
    /// let mut scan = client.scan(Some("user:*"), 500);
    /// while let Some(keys) = scan.next_batch().await? {
    ///     for key in keys {
    ///         println!("{}", String::from_utf8_lossy(&key));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn scan(&self, pattern: Option<&str>, count: usize) -> ClusterScan {
        self.scan_type(pattern, count, None)
    }

    /// Like [`ClusterClient::scan`], with only keys of one type (`TYPE`: `string`, `hash`...).
    pub fn scan_type(
        &self,
        pattern: Option<&str>,
        count: usize,
        key_type: Option<&str>,
    ) -> ClusterScan {
        let masters = self
            .slot_map()
            .shards()
            .iter()
            .map(|s| s.master.clone())
            .collect();
        ClusterScan {
            client: self.clone(),
            masters,
            node: 0,
            cursor: b"0".to_vec(),
            pattern: pattern.map(str::to_string),
            count: count.max(1),
            key_type: key_type.map(str::to_string),
        }
    }

    /// A stream of topology events.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<ClusterEvent> {
        self.inner.events.subscribe()
    }

    /// Topology refreshes done so far (the initial load included).
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    /// The client's counters: refreshes, redirects, and the nodes' connection counters.
    pub fn stats(&self) -> ClusterStats {
        let mut connections = Stats::default();
        for conns in [&self.inner.conns, &self.inner.replica_conns] {
            let conns = conns.lock();
            for node in conns.values() {
                connections = connections.merged(&node.stats());
            }
        }
        ClusterStats {
            refreshes: self.refreshes(),
            moved: self.inner.moved.load(Ordering::Relaxed),
            ask: self.inner.ask.load(Ordering::Relaxed),
            connections,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// Closes every node's connections. Calls made afterwards fail with a closed connection.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.shutdown.notify_one();
        self.inner.conns.close();
        self.inner.replica_conns.close();
    }

    /// An exclusive connection to the master of `slot` (any master for `None`), from that node's
    /// pool: for WATCH ... MULTI ... EXEC on keys of one slot. Returned to the pool when dropped.
    ///
    /// # Errors
    /// [`ClusterError::Unassigned`], [`ClusterError::NoTopology`], or the node's error
    /// ([`Error::PoolTimeout`] when its pool is exhausted).
    pub async fn lease(&self, slot: Option<u16>) -> Result<RedisLease, ClusterError> {
        let addr = self.master_for(slot)?;
        Ok(self.connection(&addr).await?.lease().await?)
    }

    /// The master of `slot` (any master for a keyless command). A slot with no owner means the
    /// map may be stale: it triggers a refresh.
    fn master_for(&self, slot: Option<u16>) -> Result<NodeAddr, ClusterError> {
        match slot {
            Some(s) => self.slot_map().master(s).cloned().ok_or_else(|| {
                self.trigger_refresh();
                ClusterError::Unassigned { slot: s }
            }),
            None => self.any_master(),
        }
    }

    /// The slot of the keys of `cmds` together: `None` when they have none.
    ///
    /// # Errors
    /// [`ClusterError::CrossSlot`] when they span slots.
    pub fn slot_of(cmds: &[Cmd]) -> Result<Option<u16>, ClusterError> {
        let mut found: Option<u16> = None;
        for cmd in cmds {
            if let Some(s) = command_slot(cmd)? {
                match found {
                    Some(f) if f != s => {
                        return Err(ClusterError::CrossSlot {
                            command: "the transaction".into(),
                        })
                    }
                    _ => found = Some(s),
                }
            }
        }
        Ok(found)
    }

    /// Runs `cmds` as `MULTI` ... `EXEC` on the master of their slot (all their keys must share
    /// one slot). A `MOVED` met while queueing (the slot moved: nothing ran) is followed to the
    /// new owner. `None` never happens here (nothing is watched); for WATCH, take a
    /// [`ClusterClient::lease`].
    ///
    /// # Errors
    /// [`ClusterError::CrossSlot`] before sending when the keys span slots; the node's errors,
    /// `EXECABORT` when a command was refused.
    pub async fn send_transaction(&self, cmds: &[Cmd]) -> Result<Option<Vec<Value>>, ClusterError> {
        let slot = ClusterClient::slot_of(cmds)?;
        let mut target = self.master_for(slot)?;
        let mut all = Vec::with_capacity(cmds.len() + 2);
        all.push(Cmd::new("MULTI"));
        all.extend(cmds.iter().cloned());
        all.push(Cmd::new("EXEC"));
        for _ in 0..=self.inner.config.max_redirects {
            let node = self.connection(&target).await?;
            let replies = node.send_pipeline(&all).await.inspect_err(|e| {
                if needs_refresh(e) {
                    self.trigger_refresh();
                }
            })?;
            let moved = replies.iter().find_map(|r| match r {
                Value::Error(e) => Redirect::parse(&ServerError::new(e.clone()), &target)
                    .filter(|r| r.kind == RedirectKind::Moved),
                _ => None,
            });
            match moved {
                Some(redirect) => {
                    self.inner.moved.fetch_add(1, Ordering::Relaxed);
                    self.patch_moved(redirect.slot, &redirect.addr);
                    self.trigger_refresh();
                    target = redirect.addr;
                }
                None => return Ok(redis_conn::transaction_outcome(replies)?),
            }
        }
        Err(ClusterError::TooManyRedirects {
            slot: slot.unwrap_or(0),
            redirects: self.inner.config.max_redirects,
        })
    }

    /// A subscriber for the whole cluster: channel and pattern subscriptions on one node (a
    /// message published on any node reaches every node), shard channels on the master of
    /// their slot, moved when the slot moves.
    ///
    /// # Errors
    /// The node's connection error.
    pub async fn subscriber(&self) -> Result<crate::ClusterSubscriber, ClusterError> {
        crate::ClusterSubscriber::start(self.clone()).await
    }

    /// A master of the current map, at random.
    pub fn random_master(&self) -> Option<NodeAddr> {
        self.any_master().ok()
    }

    /// Sends a command to the master of its keys' slot (any master for a keyless command),
    /// following `MOVED` (and updating the slot map) and `ASK`.
    ///
    /// # Errors
    /// [`ClusterError::CrossSlot`] before sending when the keys span slots;
    /// [`ClusterError::Node`] for connection errors and error replies (with redis-conn's honest
    /// `Sent` information); [`ClusterError::TooManyRedirects`], [`ClusterError::Unassigned`].
    pub async fn send(&self, cmd: Cmd) -> Result<Value, ClusterError> {
        let slot = match command_slot(&cmd) {
            Err(ClusterError::CrossSlot { .. }) if split_kind(cmd.name()).is_some() => {
                return self.send_split(&cmd).await;
            }
            other => other?,
        };
        if slot.is_none() {
            if let Some(fanout) = fanout_kind(&cmd) {
                return self.send_to_all_masters(&cmd, fanout).await;
            }
        }
        self.route(cmd, slot).await
    }

    /// Sends commands as a pipeline: each node gets its share as one sub-pipeline, all nodes at
    /// once, and the replies come back in the caller's order. A `MOVED` or `ASK` for one command
    /// is followed for that command alone; a multi-key command whose keys span slots is split as
    /// [`ClusterClient::send`] does. Every command sees the effects of the ones before it (the
    /// commands that cannot join a node's share, keyless or split ones, wait for what precedes
    /// them). Error replies stay in their place as [`Value::Error`].
    ///
    /// # Errors
    /// A connection error of any node fails the whole call (commands for other nodes may have
    /// run); [`ClusterError::CrossSlot`] before sending for an atomic command spanning slots.
    pub async fn send_pipeline(&self, cmds: &[Cmd]) -> Result<Vec<Value>, ClusterError> {
        self.send_batch(&Batch::from(cmds)).await
    }

    /// Sends a [`Batch`] as a pipeline, as [`ClusterClient::send_pipeline`] does: each
    /// command is routed from the batch's buffer and copied into its node's share, itself a
    /// batch.
    ///
    /// # Errors
    /// As [`ClusterClient::send_pipeline`].
    pub async fn send_batch(&self, batch: &Batch) -> Result<Vec<Value>, ClusterError> {
        let map = self.slot_map();
        let mut replies: Vec<Value> = Vec::with_capacity(batch.len());
        // Commands that cannot join a node's sub-pipeline (keyless, split, unassigned) are
        // barriers: what comes before them is answered first, what comes after starts after, so
        // that every command sees the effects of the commands before it.
        let mut segment: Vec<(usize, NodeAddr)> = Vec::new();
        for (i, cmd) in batch.iter().enumerate() {
            let routed = match batched_slot(&cmd) {
                Ok(Some(s)) => map.master(s).cloned(),
                Ok(None) => None,
                Err(ClusterError::CrossSlot { .. }) if split_kind(cmd.name()).is_some() => None,
                Err(e) => return Err(e),
            };
            match routed {
                Some(addr) => segment.push((i, addr)),
                None => {
                    self.flush_segment(batch, &mut segment, &mut replies)
                        .await?;
                    let value = self.send_in_pipeline(cmd.to_cmd()).await;
                    // What came before it ran: a failure now is a pipeline that partly ran.
                    replies.push(value.map_err(|e| {
                        if replies.is_empty() {
                            e
                        } else {
                            e.partly_sent()
                        }
                    })?);
                }
            }
        }
        self.flush_segment(batch, &mut segment, &mut replies)
            .await?;
        Ok(replies)
    }

    /// A command of a pipeline sent on its own: error replies become values in place.
    async fn send_in_pipeline(&self, cmd: Cmd) -> Result<Value, ClusterError> {
        match self.send(cmd).await {
            Ok(v) => Ok(v),
            Err(ClusterError::Node(Error::Server(e))) => Ok(Value::Error(e.as_bytes().clone())),
            Err(e) => Err(e),
        }
    }

    /// Sends a run of routable pipeline commands: one sub-pipeline per node, all at once; then
    /// the redirected ones again, in order; appends the replies in the caller's order.
    async fn flush_segment(
        &self,
        batch: &Batch,
        segment: &mut Vec<(usize, NodeAddr)>,
        replies: &mut Vec<Value>,
    ) -> Result<(), ClusterError> {
        if segment.is_empty() {
            return Ok(());
        }
        let base = segment[0].0;
        let mut per_node: HashMap<NodeAddr, Vec<usize>> = HashMap::new();
        for (i, addr) in segment.drain(..) {
            per_node.entry(addr).or_default().push(i);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (addr, indexes) in per_node {
            let client = self.clone();
            let mut sub = Batch::with_capacity(indexes.len(), 0);
            for &i in &indexes {
                if let Some(cmd) = batch.get(i) {
                    sub.push_batched(cmd);
                }
            }
            tasks.spawn(async move {
                let conn = client.connection(&addr).await?;
                let values = conn.send_batch(&sub).await.inspect_err(|e| {
                    if needs_refresh(e) {
                        client.trigger_refresh();
                    }
                })?;
                Ok::<_, ClusterError>((addr, indexes, values))
            });
        }
        let mut slots: Vec<Option<Value>> = Vec::new();
        let mut redirected = Vec::new();
        // Every node's part is awaited, and a failure of one part is reported for the whole:
        // if anything else of the pipeline ran (an earlier part, another node's), it says the
        // pipeline may have run, whatever the failed part's own delivery.
        let mut ran = !replies.is_empty();
        let mut failure: Option<ClusterError> = None;
        while let Some(joined) = tasks.join_next().await {
            let (addr, indexes, values) = match joined {
                Ok(Ok(done)) => done,
                Ok(Err(e)) => {
                    ran |= e.sent() != Some(redis_conn::Sent::No);
                    failure.get_or_insert(e);
                    continue;
                }
                Err(e) => {
                    failure.get_or_insert(ClusterError::NoTopology(e.to_string()));
                    continue;
                }
            };
            ran = true;
            for (i, value) in indexes.into_iter().zip(values) {
                let at = i - base;
                if slots.len() <= at {
                    slots.resize(at + 1, None);
                }
                if let Value::Error(message) = &value {
                    let error = ServerError::new(message.clone());
                    // Redirects, TRYAGAIN (a multi-key command caught in a migration) and
                    // CLUSTERDOWN (a cluster settling after a failover) did not run: they are
                    // resent on their own, through the usual routing, which follows the
                    // redirect or waits the cluster out.
                    if Redirect::parse(&error, &addr).is_some()
                        || matches!(error.code(), "TRYAGAIN" | "CLUSTERDOWN")
                    {
                        redirected.push(i);
                        continue;
                    }
                }
                slots[at] = Some(value);
            }
        }
        if let Some(e) = failure {
            return Err(if ran { e.partly_sent() } else { e });
        }
        // Redirected commands (not executed where they went), one by one and in order, through
        // the usual routing, which follows the redirect.
        redirected.sort_unstable();
        for i in redirected {
            let Some(cmd) = batch.get(i) else { continue };
            let slot = batched_slot(&cmd).ok().flatten();
            let value = match self.route(cmd.to_cmd(), slot).await {
                Ok(v) => v,
                Err(ClusterError::Node(Error::Server(e))) => Value::Error(e.as_bytes().clone()),
                // The rest of the segment ran.
                Err(e) => return Err(e.partly_sent()),
            };
            let at = i - base;
            if slots.len() <= at {
                slots.resize(at + 1, None);
            }
            slots[at] = Some(value);
        }
        replies.extend(slots.into_iter().map(|v| v.unwrap_or(Value::Null)));
        Ok(())
    }

    /// Keyless commands every master must run (FLUSHALL, SCRIPT LOAD) or whose answer is the
    /// sum over masters (DBSIZE), sent to all masters at once.
    async fn send_to_all_masters(&self, cmd: &Cmd, fanout: Fanout) -> Result<Value, ClusterError> {
        let map = self.slot_map();
        let mut tasks = tokio::task::JoinSet::new();
        for shard in map.shards() {
            let (client, addr, cmd) = (self.clone(), shard.master.clone(), cmd.clone());
            tasks.spawn(async move {
                let conn = client.connection(&addr).await?;
                Ok::<_, ClusterError>(conn.send(cmd).await?)
            });
        }
        let mut sum = 0i64;
        let mut all = Vec::new();
        let mut first = None;
        let mut ran = false;
        let mut failure: Option<ClusterError> = None;
        while let Some(joined) = tasks.join_next().await {
            let value = match joined {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    ran |= e.sent() != Some(redis_conn::Sent::No);
                    failure.get_or_insert(e);
                    continue;
                }
                Err(e) => {
                    failure.get_or_insert(ClusterError::NoTopology(e.to_string()));
                    continue;
                }
            };
            ran = true;
            match (fanout, value) {
                (Fanout::Sum, Value::Integer(n)) => sum += n,
                (Fanout::Concat, Value::Array(items)) => all.extend(items),
                (Fanout::Fewest, v) => {
                    first = Some(match first.take() {
                        Some(so_far) => redis_conn::node::fewer_acknowledgements(so_far, v),
                        None => v,
                    });
                }
                (_, v) => {
                    first.get_or_insert(v);
                }
            }
        }
        if let Some(e) = failure {
            // Some masters ran it: the command as a whole may have run.
            return Err(if ran { e.partly_sent() } else { e });
        }
        Ok(match fanout {
            Fanout::Sum => Value::Integer(sum),
            Fanout::Concat => Value::Array(all),
            Fanout::Same | Fanout::Fewest => first.unwrap_or(Value::Null),
        })
    }

    /// Tries a read on a healthy replica of `slot`. `None` when there is none, or when it failed
    /// in a way that the master may not (the caller then reads from the master).
    async fn read_from_replica(&self, cmd: &Cmd, slot: u16) -> Option<Result<Value, ClusterError>> {
        let map = self.slot_map();
        let replicas = &map.shard(slot)?.replicas;
        let healthy: Vec<NodeAddr> = {
            let conns = self.inner.replica_conns.lock();
            replicas
                .iter()
                .filter(|r| {
                    conns
                        .get(*r)
                        .is_none_or(|c| c.is_connected() && !c.is_broken())
                })
                .cloned()
                .collect()
        };
        if healthy.is_empty() {
            return None;
        }
        let offered: Vec<ServerAddr> = healthy.iter().map(ServerAddr::from).collect();
        let pick = &healthy[self.inner.config.selector.select(&offered) % healthy.len()];
        let conn = match self.replica_connection(pick).await {
            Ok(conn) => conn,
            Err(_) => {
                self.trigger_refresh();
                return None;
            }
        };
        match conn.send(cmd.clone()).await {
            Ok(v) => Some(Ok(v)),
            // A redirect (the slot moved) or a broken replica: let the master answer.
            Err(Error::Server(e)) if e.is_moved() || e.is_ask() => {
                self.trigger_refresh();
                None
            }
            Err(e) if needs_refresh(&e) => {
                self.trigger_refresh();
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    /// The READONLY connection to a replica, opened on first use.
    async fn replica_connection(&self, addr: &NodeAddr) -> Result<Node, Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                reason: "the cluster client was closed".into(),
            });
        }
        let config = self
            .inner
            .config
            .node_at(addr)
            .map_connection(|c| c.readonly(true));
        self.inner.replica_conns.get_or_connect(addr, config).await
    }

    /// Sends a command whose keys (if any) are all in `slot`, following redirects.
    async fn route(&self, cmd: Cmd, slot: Option<u16>) -> Result<Value, ClusterError> {
        if let Some(s) = slot {
            if self.inner.config.read_from_replicas
                && cmd.effect() == redis_conn::table::Effect::ReadOnly
                && cmd.blocking() == redis_conn::table::Blocking::No
            {
                if let Some(result) = self.read_from_replica(&cmd, s).await {
                    return result;
                }
            }
        }
        let mut target = self.master_for(slot)?;
        let mut asking = false;
        let mut redirects = 0;
        loop {
            let conn = self.connection(&target).await?;
            let result = if asking {
                match conn.send_pipeline(&[Cmd::new("ASKING"), cmd.clone()]).await {
                    Ok(mut replies) => match replies.pop() {
                        Some(Value::Error(e)) => Err(Error::Server(ServerError::new(e))),
                        Some(v) => Ok(v),
                        None => Ok(Value::Null),
                    },
                    Err(e) => Err(e),
                }
            } else {
                conn.send(cmd.clone()).await
            };
            let error = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // A node closed under the command (a refresh found it gone): nothing was sent, so
            // it goes to whoever serves the slot now.
            if matches!(error, Error::Closed { .. })
                && !self.inner.closed.load(Ordering::Acquire)
                && redirects < self.inner.config.max_redirects
            {
                redirects += 1;
                asking = false;
                target = self.master_for(slot)?;
                continue;
            }
            let redirect = match &error {
                Error::Server(server) => Redirect::parse(server, &target),
                _ => None,
            };
            let Some(redirect) = redirect else {
                if needs_refresh(&error) {
                    self.trigger_refresh();
                }
                // CLUSTERDOWN or TRYAGAIN that outlasted the connection's own retries (a
                // failover or a migration settling): the command did not run, so it is tried
                // again through a fresh map after a pause, within the redirect budget.
                if is_settling(&error) && redirects < self.inner.config.max_redirects {
                    redirects += 1;
                    self.trigger_refresh();
                    tokio::time::sleep(SETTLE_PAUSE * redirects).await;
                    asking = false;
                    target = self.master_for(slot)?;
                    continue;
                }
                return Err(error.into());
            };
            redirects += 1;
            if redirects > self.inner.config.max_redirects {
                return Err(ClusterError::TooManyRedirects {
                    slot: redirect.slot,
                    redirects: redirects - 1,
                });
            }
            match redirect.kind {
                RedirectKind::Moved => {
                    self.inner.moved.fetch_add(1, Ordering::Relaxed);
                    self.patch_moved(redirect.slot, &redirect.addr);
                    self.trigger_refresh();
                    asking = false;
                }
                RedirectKind::Ask => {
                    self.inner.ask.fetch_add(1, Ordering::Relaxed);
                    // One ASK is a migration in progress; a second one for the same command
                    // means the map is likely behind.
                    if asking {
                        self.trigger_refresh();
                    }
                    asking = true;
                }
            }
            target = redirect.addr;
        }
    }

    /// MGET, MSET, DEL, UNLINK, EXISTS and TOUCH whose keys span slots: one command per slot,
    /// all sent at once (commands for the same node leave in one write on its multiplexed
    /// connection), results merged in the caller's key order (MGET) or summed. Not atomic across
    /// slots: a failure can leave some slots written.
    async fn send_split(&self, cmd: &Cmd) -> Result<Value, ClusterError> {
        let Some(kind) = split_kind(cmd.name()) else {
            return Err(ClusterError::CrossSlot {
                command: String::from_utf8_lossy(cmd.name()).into_owned(),
            });
        };
        let args: Vec<&[u8]> = cmd.args().collect();
        let width = if kind == Merge::Mset { 2 } else { 1 };
        let items: Vec<&[&[u8]]> = args[1..].chunks(width).collect();
        let mut groups: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, item) in items.iter().enumerate() {
            groups.entry(slot(item[0])).or_default().push(i);
        }
        // One command per slot; the commands for one node then travel as one sub-pipeline.
        let map = self.slot_map();
        let mut subs = Batch::with_capacity(groups.len(), 0);
        let mut positions = Vec::with_capacity(groups.len());
        let mut segment = Vec::with_capacity(groups.len());
        for (j, (group_slot, indexes)) in groups.into_iter().enumerate() {
            let addr = map
                .master(group_slot)
                .cloned()
                .ok_or(ClusterError::Unassigned { slot: group_slot })?;
            subs.start(args[0]);
            for &i in &indexes {
                for part in items[i] {
                    subs.push_arg(part);
                }
            }
            segment.push((j, addr));
            positions.push(indexes);
        }
        let mut replies = Vec::with_capacity(subs.len());
        self.flush_segment(&subs, &mut segment, &mut replies)
            .await?;
        let mut values = vec![Value::Null; if kind == Merge::Mget { items.len() } else { 0 }];
        let mut sum = 0i64;
        for (indexes, reply) in positions.into_iter().zip(replies) {
            match (kind, reply) {
                (_, Value::Error(e)) => {
                    return Err(ClusterError::Node(Error::Server(ServerError::new(e))));
                }
                (Merge::Mget, Value::Array(found)) => {
                    for (pos, value) in indexes.into_iter().zip(found) {
                        values[pos] = value;
                    }
                }
                (Merge::Sum, Value::Integer(n)) => sum += n,
                (Merge::Mset, _) => {}
                (_, other) => {
                    return Err(ClusterError::Node(Error::Unsupported(format!(
                        "unexpected reply to a split command: {other:?}"
                    ))));
                }
            }
        }
        Ok(match kind {
            Merge::Mget => Value::Array(values),
            Merge::Sum => Value::Integer(sum),
            Merge::Mset => Value::SimpleString("OK".into()),
        })
    }

    fn any_master(&self) -> Result<NodeAddr, ClusterError> {
        let map = self.slot_map();
        let shards = map.shards();
        if shards.is_empty() {
            return Err(ClusterError::NoTopology("no master known".into()));
        }
        // A keyless command goes to a master at random, but not to one whose connection is
        // known to be down (a master killed a moment ago) while another is up: it would wait out
        // its deadline there for nothing.
        // Nor to a master that serves no slot: one joining, or leaving (`del-node` resets it,
        // and a reset node answers CLUSTERDOWN).
        let serving: Vec<&crate::topology::Shard> =
            shards.iter().filter(|s| !s.ranges.is_empty()).collect();
        let shards: Vec<&crate::topology::Shard> = if serving.is_empty() {
            shards.iter().collect()
        } else {
            serving
        };
        let start = rand::random_range(0..shards.len());
        let up = (0..shards.len())
            .map(|k| &shards[(start + k) % shards.len()].master)
            .find(|addr| {
                self.inner
                    .conns
                    .cached(addr)
                    .is_none_or(|node| node.connection().is_connected())
            });
        Ok(up.unwrap_or(&shards[start].master).clone())
    }

    fn patch_moved(&self, slot: u16, addr: &NodeAddr) {
        let mut map = self.inner.map.write().unwrap_or_else(|e| e.into_inner());
        let mut patched = (**map).clone();
        patched.patch_moved(slot, addr);
        *map = Arc::new(patched);
    }

    /// The connections to a node, opened on first use.
    pub(crate) async fn connection(&self, addr: &NodeAddr) -> Result<Node, Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                reason: "the cluster client was closed".into(),
            });
        }
        let config = self.inner.config.node_at(addr);
        self.inner.conns.get_or_connect(addr, config).await
    }

    /// Schedules a refresh: at most one in flight, and at most one per `min_refresh_interval`;
    /// the triggers that arrive meanwhile are folded into it.
    pub fn trigger_refresh(&self) {
        if self.inner.refresh_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            let last = *client
                .inner
                .last_refresh
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let allowed = last + client.inner.config.min_refresh_interval;
            tokio::time::sleep_until(allowed).await;
            let candidates = client.refresh_candidates();
            if let Err(e) = client.refresh_from(candidates).await {
                tracing::warn!(error = %e, "cluster topology refresh failed");
                let _ = client.inner.events.send(ClusterEvent::RefreshFailed {
                    error: e.to_string(),
                });
            }
            client.inner.refresh_pending.store(false, Ordering::Release);
        });
    }

    /// Masters first, then replicas, then the seeds (nodes that are down last).
    fn refresh_candidates(&self) -> Vec<NodeAddr> {
        let map = self.slot_map();
        let mut seen: HashSet<NodeAddr> = HashSet::new();
        let mut out: Vec<NodeAddr> = Vec::new();
        for node in map
            .shards()
            .iter()
            .map(|s| s.master.clone())
            .chain(map.nodes())
            .chain(self.inner.config.seeds.iter().cloned())
        {
            if seen.insert(node.clone()) {
                out.push(node);
            }
        }
        // Nodes whose connection is down right now go last, so that a dead node does not hold
        // a refresh up for its whole timeout.
        let conns = self.inner.conns.lock();
        let down = |addr: &NodeAddr| conns.get(addr).is_some_and(|c| !c.is_connected());
        let (up, down): (Vec<_>, Vec<_>) = out.into_iter().partition(|a| !down(a));
        up.into_iter().chain(down).collect()
    }

    /// One node's view: `CLUSTER SHARDS` (Redis 7+, it tells node health), or `CLUSTER SLOTS`
    /// on older servers (or where `CLUSTER SHARDS` is refused). Nodes are given the port for the
    /// client's transport (`tls-port` when the settings carry a TLS configuration). A reply that
    /// is not a valid topology is an error naming what was wrong.
    async fn view_of(&self, addr: &NodeAddr) -> Result<Topology, ClusterError> {
        let conn = self.connection(addr).await?;
        let transport = if self.inner.config.node.connection().tls_config().is_some() {
            crate::Transport::Tls
        } else {
            crate::Transport::Plain
        };
        let view = match conn.send(Cmd::new("CLUSTER").arg("SHARDS")).await {
            Ok(reply) => Topology::from_cluster_shards_over(&reply, addr, transport),
            Err(Error::Server(_)) => {
                let reply = conn.send(Cmd::new("CLUSTER").arg("SLOTS")).await?;
                Topology::from_cluster_slots(&reply, addr)
            }
            Err(e) => return Err(e.into()),
        };
        view.map_err(|e| ClusterError::BadTopology {
            node: addr.clone(),
            error: e,
        })
    }

    /// Asks a few nodes for their view, keeps the one most agree on, and closes the connections
    /// of nodes that left.
    async fn refresh_from(&self, candidates: Vec<NodeAddr>) -> Result<(), ClusterError> {
        *self
            .inner
            .last_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let mut views = Vec::new();
        // Every node tried and why it gave no view, so that a failure names them all.
        let mut failures: Vec<String> = Vec::new();
        // The first TLS failure, while every node tried failed TLS: certificates that do not
        // verify are a setting to fix, reported as the typed error rather than as text.
        let mut tls_failure: Option<Error> = None;
        let mut only_tls = true;
        for batch in candidates.chunks(VIEWS_PER_REFRESH) {
            let mut asks = tokio::task::JoinSet::new();
            for addr in batch {
                let (client, addr) = (self.clone(), addr.clone());
                asks.spawn(async move {
                    let view = client.view_of(&addr).await;
                    (addr, view)
                });
            }
            while let Some(joined) = asks.join_next().await {
                match joined {
                    Ok((_, Ok(view))) if view.covered_slots() > 0 => views.push(view),
                    Ok((addr, Ok(_))) => {
                        only_tls = false;
                        failures.push(format!("{addr}: knows no slots"));
                    }
                    Ok((addr, Err(e))) => {
                        match &e {
                            ClusterError::Node(tls @ Error::Tls { .. }) => {
                                tls_failure.get_or_insert_with(|| tls.clone());
                            }
                            _ => only_tls = false,
                        }
                        failures.push(format!("{addr}: {e}"));
                    }
                    Err(e) => {
                        only_tls = false;
                        failures.push(format!("a view task failed: {e}"));
                    }
                }
            }
            if !views.is_empty() {
                break;
            }
        }
        let Some((view, _agreeing)) = agreed_view(views) else {
            return Err(match tls_failure {
                Some(tls) if only_tls => ClusterError::Node(tls),
                _ => ClusterError::NoTopology(describe_failures(&failures)),
            });
        };
        let map = view.slot_map();
        let keep: HashSet<NodeAddr> = map.nodes().into_iter().collect();
        let previous = std::mem::replace(
            &mut *self.inner.map.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(map.clone()),
        );
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        let before: HashSet<NodeAddr> = previous.nodes().into_iter().collect();
        let added: Vec<NodeAddr> = keep
            .iter()
            .filter(|n| !before.contains(*n))
            .cloned()
            .collect();
        let removed: Vec<NodeAddr> = before
            .iter()
            .filter(|n| !keep.contains(*n))
            .cloned()
            .collect();
        let moved_slots = (0..crate::SLOTS)
            .filter(|&s| previous.master(s) != map.master(s))
            .count();
        if !added.is_empty() || !removed.is_empty() || moved_slots > 0 {
            tracing::info!(
                added = added.len(),
                removed = removed.len(),
                moved_slots,
                "cluster topology changed"
            );
            let _ = self.inner.events.send(ClusterEvent::TopologyChanged {
                added,
                removed,
                moved_slots,
                uncovered_slots: map.uncovered(),
            });
        }
        let seeds = &self.inner.config.seeds;
        for conns in [&self.inner.conns, &self.inner.replica_conns] {
            let mut conns = conns.lock();
            conns.retain(|addr, conn| {
                let stays = keep.contains(addr) || seeds.contains(addr);
                if !stays {
                    conn.close();
                }
                stays
            });
        }
        Ok(())
    }
}

/// The pause before routing again after a `CLUSTERDOWN` or `TRYAGAIN` (times the attempt):
/// 50, 100, 150... ms, so that a cluster settling after a failover (about a second at most)
/// is waited out within the default 5 redirects.
const SETTLE_PAUSE: Duration = Duration::from_millis(50);

/// A server error that says the cluster is settling and the command did not run.
fn is_settling(error: &Error) -> bool {
    matches!(error, Error::Server(e) if matches!(e.code(), "CLUSTERDOWN" | "TRYAGAIN"))
}

/// How many failed nodes a `NoTopology` message names before it summarizes the rest.
const FAILURES_NAMED: usize = 16;

/// Every node tried and why it failed, in one line (the first [`FAILURES_NAMED`]).
fn describe_failures(failures: &[String]) -> String {
    if failures.is_empty() {
        return "no node to ask".into();
    }
    let mut text = failures
        .iter()
        .take(FAILURES_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if failures.len() > FAILURES_NAMED {
        text.push_str(&format!("; and {} more", failures.len() - FAILURES_NAMED));
    }
    format!("tried {}: {text}", failures.len())
}

/// How the replies of a split multi-key command are put back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// Values in the caller's key order.
    Mget,
    /// All OK.
    Mset,
    /// Integers added up.
    Sum,
}

/// Multi-key commands that may be split by slot (their effect per key is independent).
fn split_kind(name: &[u8]) -> Option<Merge> {
    let name = name.to_ascii_uppercase();
    match name.as_slice() {
        b"MGET" => Some(Merge::Mget),
        b"MSET" => Some(Merge::Mset),
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => Some(Merge::Sum),
        _ => None,
    }
}

/// A cluster-wide SCAN, from [`ClusterClient::scan`]. Like SCAN itself it guarantees that a key
/// present for the whole scan is returned at least once (a key may come twice); keys that move
/// between masters during the scan (resharding) may be missed or repeated.
#[derive(Debug)]
pub struct ClusterScan {
    client: ClusterClient,
    masters: Vec<NodeAddr>,
    node: usize,
    cursor: Vec<u8>,
    pattern: Option<String>,
    count: usize,
    key_type: Option<String>,
}

impl ClusterScan {
    /// The next batch of keys (possibly empty), or `None` when every master has been scanned.
    ///
    /// # Errors
    /// The node's error; the scan can be resumed by calling again.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<bytes::Bytes>>, ClusterError> {
        let Some(addr) = self.masters.get(self.node) else {
            return Ok(None);
        };
        let mut cmd = Cmd::new("SCAN").arg(&self.cursor);
        if let Some(pattern) = &self.pattern {
            cmd = cmd.arg("MATCH").arg(pattern);
        }
        cmd = cmd.arg("COUNT").arg_int(self.count as i64);
        if let Some(t) = &self.key_type {
            cmd = cmd.arg("TYPE").arg(t);
        }
        let conn = self.client.connection(addr).await?;
        let reply = conn.send(cmd).await?;
        let bad = || {
            ClusterError::Node(Error::Unsupported(format!(
                "unexpected SCAN reply from {addr}"
            )))
        };
        let Value::Array(mut parts) = reply else {
            return Err(bad());
        };
        if parts.len() != 2 {
            return Err(bad());
        }
        let keys = parts.pop().ok_or_else(bad)?;
        let cursor = parts
            .pop()
            .and_then(|c| c.as_bytes().cloned())
            .ok_or_else(bad)?;
        let Value::Array(keys) = keys else {
            return Err(bad());
        };
        if &cursor[..] == b"0" {
            self.node += 1;
            self.cursor = b"0".to_vec();
        } else {
            self.cursor = cursor.to_vec();
        }
        Ok(Some(
            keys.into_iter()
                .filter_map(|k| k.as_bytes().cloned())
                .collect(),
        ))
    }
}

/// How a keyless command sent to every master is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fanout {
    /// Integers added up (DBSIZE).
    Sum,
    /// Arrays concatenated (KEYS).
    Concat,
    /// Every master answers the same (FLUSHALL, SCRIPT LOAD): one answer.
    Same,
    /// The fewest acknowledgements (WAIT, WAITAOF): the caller's writes went to any master,
    /// and what holds for all of them holds for each.
    Fewest,
}

fn fanout_kind(cmd: &Cmd) -> Option<Fanout> {
    let name = cmd.name().to_ascii_uppercase();
    let sub = cmd.arg_at(1).map(<[u8]>::to_ascii_uppercase);
    match (name.as_slice(), sub.as_deref()) {
        (b"DBSIZE", _) => Some(Fanout::Sum),
        (b"WAIT" | b"WAITAOF", _) => Some(Fanout::Fewest),
        (b"KEYS", _) => Some(Fanout::Concat),
        (b"FLUSHALL" | b"FLUSHDB", _) => Some(Fanout::Same),
        (b"SCRIPT", Some(b"LOAD" | b"FLUSH")) => Some(Fanout::Same),
        (b"FUNCTION", Some(b"LOAD" | b"FLUSH" | b"DELETE")) => Some(Fanout::Same),
        _ => None,
    }
}

/// The nodes a client keeps, by address, opened on first use: one `Node` per address, however
/// many tasks ask for it at once. The first caller starts one dial (a task of its own, so that a
/// caller that gives up does not cancel it for the others); every caller waits for that dial's
/// outcome, success or error, bounded by the connect timeout and the call's deadline, so that
/// a burst of redirects to a new master opens one set of connections, and a burst sent to a dead
/// address fails once, together, instead of dialling again caller after caller. A dial's entry
/// is removed when it ends, so the map of dials in progress holds only dials in progress.
#[derive(Debug, Default)]
struct NodeSet {
    state: Arc<NodeSetState>,
}

/// What [`NodeSet`] shares with its dialling tasks.
#[derive(Debug, Default)]
struct NodeSetState {
    nodes: Mutex<HashMap<NodeAddr, Node>>,
    /// Dials in progress: each one's outcome, `None` until it ends.
    dialing: Mutex<HashMap<NodeAddr, DialOutcome>>,
    /// Set by `close`: a dial that ends afterwards closes its node instead of keeping it.
    closed: AtomicBool,
}

/// The outcome of one dial, shared by everyone waiting for it.
type DialOutcome = tokio::sync::watch::Receiver<Option<Result<Node, Error>>>;

/// Scheduling slack given to a dial's waiters on top of the dial's own bound.
const DIAL_SLACK: Duration = Duration::from_millis(100);

impl NodeSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeAddr, Node>> {
        self.state.lock_nodes()
    }

    fn cached(&self, addr: &NodeAddr) -> Option<Node> {
        self.state.cached(addr)
    }

    /// Closes every node, and those whose dial ends later.
    fn close(&self) {
        self.state.closed.store(true, Ordering::Release);
        for (_, node) in self.lock().drain() {
            node.close();
        }
    }

    /// Dials in progress (for tests).
    #[cfg(test)]
    fn dials_in_progress(&self) -> usize {
        self.state.lock_dialing().len()
    }

    async fn get_or_connect(&self, addr: &NodeAddr, config: NodeConfig) -> Result<Node, Error> {
        if let Some(node) = self.cached(addr) {
            return Ok(node);
        }
        // One dial of `shared_count` connections, each bounded by the connect timeout; a waiter
        // also stops at the call's own deadline.
        let connect = config.connection().get_connect_timeout();
        let dial_bound =
            connect.saturating_mul(u32::try_from(config.shared_count()).unwrap_or(u32::MAX));
        let wait = (dial_bound + DIAL_SLACK).min(config.connection().get_response_timeout());
        let mut outcome = {
            let mut dialing = self.state.lock_dialing();
            match dialing.get(addr) {
                Some(outcome) => outcome.clone(),
                None => {
                    // A dial that ended between the first look and now left its node behind.
                    if let Some(node) = self.cached(addr) {
                        return Ok(node);
                    }
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    dialing.insert(addr.clone(), rx.clone());
                    let (state, addr) = (Arc::clone(&self.state), addr.clone());
                    tokio::spawn(async move {
                        let result = Node::connect(config).await;
                        state.dial_ended(&addr, &result);
                        tx.send_replace(Some(result));
                    });
                    rx
                }
            }
        };
        let waited = tokio::time::timeout(wait, outcome.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(done)) => match &*done {
                Some(result) => result.clone(),
                None => Err(dial_gone(addr)),
            },
            // The dialling task ended without a word (the runtime is shutting down).
            Ok(Err(_)) => Err(dial_gone(addr)),
            Err(_) => Err(Error::ConnectTimeout {
                addr: addr.to_string(),
                timeout: wait,
            }),
        }
    }
}

fn dial_gone(addr: &NodeAddr) -> Error {
    Error::Closed {
        reason: format!("the dial to {addr} was abandoned"),
    }
}

impl NodeSetState {
    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, HashMap<NodeAddr, Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_dialing(&self) -> std::sync::MutexGuard<'_, HashMap<NodeAddr, DialOutcome>> {
        self.dialing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, addr: &NodeAddr) -> Option<Node> {
        self.lock_nodes()
            .get(addr)
            .filter(|n| !n.is_closed())
            .cloned()
    }

    /// Keeps the node a dial opened (unless the set was closed meanwhile), then forgets the
    /// dial: in this order, so that a caller who finds no dial in progress finds the node.
    fn dial_ended(&self, addr: &NodeAddr, result: &Result<Node, Error>) {
        if let Ok(node) = result {
            let mut nodes = self.lock_nodes();
            if self.closed.load(Ordering::Acquire) {
                node.close();
            } else {
                nodes.insert(addr.clone(), node.clone());
            }
        }
        self.lock_dialing().remove(addr);
    }
}

/// Errors of a connection that could not be opened: the command was never written.
pub(crate) fn never_reached_a_server(error: &Error) -> bool {
    matches!(
        error,
        Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Tls { .. }
            | Error::Auth { .. }
            | Error::Handshake { .. }
    )
}

/// Errors after which the topology may have changed.
fn needs_refresh(error: &Error) -> bool {
    match error {
        Error::Server(e) => e.is_readonly() || e.code() == "CLUSTERDOWN",
        Error::ConnectionLost { .. }
        | Error::Connect { .. }
        | Error::ConnectTimeout { .. }
        | Error::Timeout { .. }
        | Error::Closed { .. } => true,
        _ => false,
    }
}

/// The slot of a command's keys; `None` for a keyless command.
fn command_slot(cmd: &Cmd) -> Result<Option<u16>, ClusterError> {
    keys_slot(cmd.name(), &cmd.info(), cmd.args())
}

/// The slot of a batched command's keys.
fn batched_slot(cmd: &BatchCmd<'_>) -> Result<Option<u16>, ClusterError> {
    keys_slot(cmd.name(), &cmd.info(), cmd.args())
}

/// The slot of the keys among `args` (the name first), read where the table says they are.
fn keys_slot(name: &[u8], info: &CommandInfo, args: Args<'_>) -> Result<Option<u16>, ClusterError> {
    let mut slots = info.keys_in(args).map(slot);
    let Some(first) = slots.next() else {
        return Ok(None);
    };
    if slots.any(|s| s != first) {
        return Err(ClusterError::CrossSlot {
            command: String::from_utf8_lossy(name).to_ascii_uppercase(),
        });
    }
    Ok(Some(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address that refuses connections: a port that was free a moment ago.
    fn dead_addr() -> NodeAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        NodeAddr::from(listener.local_addr().unwrap())
    }

    fn node_config(addr: &NodeAddr, connect_timeout: Duration) -> NodeConfig {
        redis_conn::ConnectionConfig::new(ServerAddr::from(addr))
            .connect_timeout(connect_timeout)
            .into()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_map_of_dials_forgets_each_dial_when_it_ends() {
        let set = NodeSet::default();
        for _ in 0..50 {
            let addr = dead_addr();
            let result = set
                .get_or_connect(&addr, node_config(&addr, Duration::from_millis(500)))
                .await;
            assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");
            assert_eq!(
                set.dials_in_progress(),
                0,
                "a finished dial stayed in the map"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_of_an_address_that_never_answers_share_one_dial_and_its_error() {
        // Accepts TCP connections and never answers the handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = NodeAddr::from(listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(sock);
            }
        });
        let set = Arc::new(NodeSet::default());
        let connect_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let (set, addr) = (Arc::clone(&set), addr.clone());
                tokio::spawn(async move {
                    let config = node_config(&addr, connect_timeout);
                    let result = set.get_or_connect(&addr, config).await;
                    (result, Instant::now())
                })
            })
            .collect();
        for caller in callers {
            let (result, ended) = tokio::time::timeout(Duration::from_secs(10), caller)
                .await
                .expect("a caller still waits 10 s later")
                .unwrap();
            match result {
                Err(Error::ConnectTimeout { addr: a, timeout }) => {
                    assert_eq!(a, addr.to_string());
                    assert_eq!(timeout, connect_timeout, "not the dial's own error");
                }
                other => panic!("expected the dial's timeout, got {other:?}"),
            }
            let waited = ended - started;
            assert!(
                waited < connect_timeout + Duration::from_millis(700),
                "a caller waited {waited:?}"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "more than one dial");
        assert_eq!(set.dials_in_progress(), 0);
        silent.abort();
    }

    #[test]
    fn commands_map_to_the_slot_of_their_keys() {
        let s = |c: Cmd| command_slot(&c);
        assert_eq!(s(Cmd::new("GET").arg("foo")).unwrap(), Some(12182));
        assert_eq!(s(Cmd::new("PING")).unwrap(), None);
        assert_eq!(
            s(Cmd::new("MSET").arg("{a}1").arg("v").arg("{a}2").arg("v")).unwrap(),
            Some(slot(b"a"))
        );
        assert!(matches!(
            s(Cmd::new("MGET").arg("foo").arg("bar")),
            Err(ClusterError::CrossSlot { .. })
        ));
        assert_eq!(
            s(Cmd::new("EVAL")
                .arg("return 1")
                .arg("1")
                .arg("foo")
                .arg("arg"))
            .unwrap(),
            Some(12182)
        );
        assert_eq!(s(Cmd::new("EVAL").arg("return 1").arg("0")).unwrap(), None);
        assert_eq!(
            s(Cmd::new("XREAD")
                .arg("COUNT")
                .arg("1")
                .arg("STREAMS")
                .arg("foo")
                .arg("0"))
            .unwrap(),
            Some(12182)
        );
        assert_eq!(
            s(Cmd::new("BLPOP").arg("foo").arg("{foo}x").arg("0")).unwrap(),
            Some(12182)
        );
        // Values are not keys; keys past the end, or none at all, are no slot.
        assert_eq!(
            s(Cmd::new("MSET")
                .arg("{a}1")
                .arg("foo")
                .arg("{a}2")
                .arg("bar"))
            .unwrap(),
            Some(slot(b"a"))
        );
        assert_eq!(s(Cmd::new("GET")).unwrap(), None);
        assert_eq!(
            s(Cmd::new("EVAL").arg("return 1").arg("5").arg("foo")).unwrap(),
            Some(12182)
        );
        assert!(matches!(
            s(Cmd::new("XREAD")
                .arg("STREAMS")
                .arg("foo")
                .arg("bar")
                .arg("0")
                .arg("0")),
            Err(ClusterError::CrossSlot { .. })
        ));
        // A batch's commands route as the commands themselves do.
        let cmds = [
            Cmd::new("GET").arg("foo"),
            Cmd::new("PING"),
            Cmd::new("MSET").arg("{a}1").arg("v").arg("{a}2").arg("v"),
            Cmd::new("MGET").arg("foo").arg("bar"),
            Cmd::new("XREAD")
                .arg("COUNT")
                .arg("1")
                .arg("STREAMS")
                .arg("foo")
                .arg("0"),
        ];
        let batch = Batch::from(&cmds[..]);
        for (cmd, batched) in cmds.iter().zip(batch.iter()) {
            assert_eq!(
                format!("{:?}", command_slot(cmd)),
                format!("{:?}", batched_slot(&batched))
            );
        }
    }
}
