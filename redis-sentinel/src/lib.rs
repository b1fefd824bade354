//! Sentinel-managed Redis: find the master through the sentinels, check it really is the master,
//! and follow failovers.
//!
//! [`SentinelClient::connect`] asks the sentinels in order (`SENTINEL GET-MASTER-ADDR-BY-NAME`),
//! moves the first that answers to the front, connects to the address it gives and checks with
//! `ROLE` that it is a master (a sentinel with a stale view is skipped). It then follows failovers:
//! it subscribes to `+switch-master` on every sentinel, polls them every few seconds as a
//! backstop, and rediscovers at once when a command meets `READONLY` or a lost connection. On a
//! switch the connection to the old master is closed (it stays writable for seconds after a
//! failover, and writes sent there would be lost).
//!
//! On each poll it also learns the sentinels that joined (`SENTINEL SENTINELS`), so that losing
//! the ones it was configured with does not leave it blind; it knows at most [`MAX_SENTINELS`]
//! sentinels, configured and learned together.
//!
//! With [`SentinelConfig::read_from_replicas`], read-only commands go to a replica from
//! `SENTINEL REPLICAS` chosen by a [`ReplicaSelector`] (the cluster's selectors), falling back to
//! the master. At most [`MAX_REPLICAS`] replicas are kept; they are dialled all at once, in a
//! task of their own, so that a slow or dead replica never delays following a failover.
//!
//! Sentinels are reached with their own connection settings
//! ([`SentinelConfig::sentinel_connection`]): a password or ACL user for the sentinels
//! (`requirepass` on a sentinel), and TLS, which the `+switch-master` subscription uses too.
//!
//! The master is a `redis_conn::Node`: ordinary commands share its multiplexed connection,
//! blocking commands wait on exclusive connections from its pool, [`SentinelClient::lease`] hands
//! one out for WATCH, and [`SentinelClient::subscriber`] gives a pub/sub connection that moves
//! to the new master after a failover.
//!
//! Behind NAT, Docker or Kubernetes, where the addresses sentinels answer (masters, replicas,
//! other sentinels) are not reachable as they are, give the data node template and
//! [`SentinelConfig::sentinel_connection`] a `redis_conn::AddressMap`
//! (`ConnectionConfig::address_map`): every connection dials the mapped address, while the
//! client keeps and reports the announced one.
//!
//! It builds on `redis-conn` for every connection.

#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis_conn::pool::RedisLease;
use redis_conn::table::{Blocking, Effect};
use redis_conn::{
    Batch, Cmd, Connection, ConnectionConfig, Error, Node, NodeConfig, Protocol, RandomSelector,
    ReplicaSelector, ServerAddr, Stats, Subscriber, SubscriberHandle, TlsConfig, Value,
};
use tokio::sync::{broadcast, Notify};

/// The most sentinels a client knows, configured and learned together: sentinels learned past
/// it are left out (configured ones are always kept). A deployment has 3 or 5.
pub const MAX_SENTINELS: usize = 64;

/// The most replicas a client keeps for reads; a longer `SENTINEL REPLICAS` list is cut there.
pub const MAX_REPLICAS: usize = 64;

/// Settings of a sentinel client.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    sentinels: Vec<ServerAddr>,
    master_name: String,
    node: NodeConfig,
    sentinel_connection: ConnectionConfig,
    poll_interval: Duration,
    read_from_replicas: bool,
    selector: Arc<dyn ReplicaSelector>,
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
            read_from_replicas: false,
            selector: Arc::new(RandomSelector),
        }
    }

    /// Send read-only commands to a replica (from `SENTINEL REPLICAS`, skipping those flagged
    /// down or disconnected), falling back to the master (default false). Replicas lag their
    /// master: a read may not see a write just made.
    #[must_use]
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.read_from_replicas = on;
        self
    }

    /// How a replica is chosen (default random).
    #[must_use]
    pub fn replica_selector(mut self, selector: impl ReplicaSelector + 'static) -> Self {
        self.selector = Arc::new(selector);
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
    fn query_config(&self, sentinel: &ServerAddr) -> ConnectionConfig {
        self.sentinel_connection
            .with_addr(sentinel.clone())
            .protocol(Protocol::Resp2)
            .health_check_interval(None)
            .reconnect(false)
    }

    /// The settings of the data node at `addr`.
    fn node_at(&self, addr: &ServerAddr) -> NodeConfig {
        self.node
            .clone()
            .map_connection(|c| c.with_addr(addr.clone()))
    }
}

/// Counters of a sentinel client, from [`SentinelClient::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelStats {
    /// Failovers followed.
    pub failovers: u64,
    /// The shared connections to the master and the replicas, added up.
    pub connections: Stats,
}

/// Why the master could not be found or reached.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SentinelError {
    /// No sentinel gave the address of a reachable master.
    #[error("no master for {name}: {reason}")]
    NoMaster {
        /// The master name.
        name: String,
        /// The last reason.
        reason: String,
    },
    /// The master's connection failed or it answered with an error.
    #[error(transparent)]
    Node(#[from] Error),
}

impl SentinelError {
    /// Whether the command may have run (see `redis_conn::Error::sent`). `Sent::No` when no
    /// master was found, and when the connection could not be opened (refused, timed out, TLS or
    /// the handshake refused): the command never reached a server.
    pub fn sent(&self) -> Option<redis_conn::Sent> {
        match self {
            SentinelError::NoMaster { .. } => Some(redis_conn::Sent::No),
            SentinelError::Node(
                Error::Connect { .. }
                | Error::ConnectTimeout { .. }
                | Error::Tls { .. }
                | Error::Auth { .. }
                | Error::Handshake { .. },
            ) => Some(redis_conn::Sent::No),
            SentinelError::Node(e) => e.sent(),
        }
    }

    /// A short, stable name of the variant; the master's error gives its own
    /// (`redis_conn::Error::kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            SentinelError::NoMaster { .. } => "no_master",
            SentinelError::Node(e) => e.kind(),
        }
    }
}

/// Something the client did about the topology.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SentinelEvent {
    /// The client now writes to another master.
    Failover {
        /// The master it left.
        old: String,
        /// The master it now uses.
        new: String,
    },
}

/// What the watchers saw of a failover in progress.
#[derive(Debug, Default)]
struct Promotion {
    /// The replica selected for promotion.
    candidate: Option<ServerAddr>,
    /// The failover was aborted.
    aborted: bool,
}

/// How long a failover may take from the replica's selection to its promotion before the
/// client stops waiting for it (and goes on with the master it has).
const PROMOTION_WAIT: Duration = Duration::from_secs(3);
/// How often the selected replica is asked for its role while it is being promoted.
const PROMOTION_POLL: Duration = Duration::from_millis(5);

#[derive(Debug)]
struct Inner {
    config: SentinelConfig,
    sentinels: Mutex<Vec<ServerAddr>>,
    current: RwLock<(ServerAddr, Node)>,
    replicas: RwLock<Vec<(ServerAddr, Node)>>,
    /// Subscribers that follow the master: moved after every failover.
    subscribers: Mutex<Vec<SubscriberHandle>>,
    wake: Notify,
    /// A failover has begun: the replica the leader sentinel is promoting, and whether it
    /// aborted. Set by the watchers, handled by the follower.
    promotion: Mutex<Promotion>,
    promote: Notify,
    /// Open (true) unless a promotion is under way: commands wait for it (within their
    /// deadline) rather than reach a master about to be demoted.
    gate: tokio::sync::watch::Sender<bool>,
    /// The master left for a promoted replica before the sentinels agreed, and when: their
    /// answers naming it are stale for a while, not a reason to switch back.
    left: Mutex<Option<(ServerAddr, Instant)>>,
    /// Set by `close`: the watchers and the follower stop (and when the client is dropped, the
    /// sender goes, which stops them too).
    shutdown: tokio::sync::watch::Sender<bool>,
    events: broadcast::Sender<SentinelEvent>,
    failovers: AtomicU64,
    /// A replica refresh is running (in its own task): at most one at a time.
    replicas_refreshing: AtomicBool,
}

/// A client of a Sentinel-managed deployment: cheap to clone, follows failovers by itself.
///
/// ```no_run
/// # async fn demo() -> Result<(), redis_sentinel::SentinelError> {
/// use redis_conn::{Cmd, ConnectionConfig, ServerAddr};
/// use redis_sentinel::{SentinelClient, SentinelConfig};
///
/// let sentinels = vec![ServerAddr::tcp("127.0.0.1", 26379), ServerAddr::tcp("127.0.0.1", 26380)];
/// let template = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 6379));
/// let client = SentinelClient::connect(SentinelConfig::new(sentinels, "mymaster", template)).await?;
/// client.send(Cmd::new("SET").arg("k").arg("v")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SentinelClient {
    inner: Arc<Inner>,
}

impl SentinelClient {
    /// Discovers the master and starts following failovers.
    ///
    /// # Errors
    /// [`SentinelError::NoMaster`] when no sentinel leads to a reachable master.
    pub async fn connect(config: SentinelConfig) -> Result<SentinelClient, SentinelError> {
        let sentinels = Mutex::new(config.sentinels.clone());
        let (addr, conn) = discover(&config, &sentinels).await?;
        let (events, _) = broadcast::channel(64);
        let client = SentinelClient {
            inner: Arc::new(Inner {
                config,
                sentinels,
                current: RwLock::new((addr, conn)),
                replicas: RwLock::new(Vec::new()),
                subscribers: Mutex::new(Vec::new()),
                promotion: Mutex::new(Promotion::default()),
                promote: Notify::new(),
                gate: tokio::sync::watch::channel(true).0,
                left: Mutex::new(None),
                shutdown: tokio::sync::watch::channel(false).0,
                wake: Notify::new(),
                events,
                failovers: AtomicU64::new(0),
                replicas_refreshing: AtomicBool::new(false),
            }),
        };
        if client.inner.config.read_from_replicas {
            refresh_replicas(&client.inner).await;
        }
        client.start_following();
        Ok(client)
    }

    /// The master in use.
    pub fn master(&self) -> ServerAddr {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The sentinels known right now, in the order they are asked (learned ones included).
    pub fn sentinels(&self) -> Vec<ServerAddr> {
        self.inner
            .sentinels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Failovers followed so far.
    pub fn failovers(&self) -> u64 {
        self.inner.failovers.load(Ordering::Relaxed)
    }

    /// A stream of failover events.
    pub fn events(&self) -> broadcast::Receiver<SentinelEvent> {
        self.inner.events.subscribe()
    }

    /// Waits while a promotion is under way (at most a response timeout), so that commands go
    /// to the new master rather than to one about to be demoted.
    async fn pass_gate(&self) {
        let mut open = self.inner.gate.subscribe();
        if *open.borrow() {
            return;
        }
        let wait = self.inner.config.node.connection().get_response_timeout();
        let _ = tokio::time::timeout(wait, open.wait_for(|o| *o)).await;
    }

    /// The master's node: its shared connection(s) and pool.
    fn master_node(&self) -> Node {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Rediscovers at once when an error says the master may have changed: `READONLY` (the
    /// master was demoted), or a connection that failed.
    fn note<T>(&self, result: &Result<T, Error>) {
        if let Err(e) = result {
            let stale = match e {
                Error::Server(s) => s.is_readonly(),
                other => other.is_connection_error(),
            };
            if stale {
                self.inner.wake.notify_one();
            }
        }
    }

    /// Sends a command to the master (read-only ones to a replica when reads from replicas are
    /// on). `READONLY` or a lost connection make the client rediscover at once; the error is
    /// returned as it is (redis-conn's honest `Sent` information included).
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send(&self, cmd: Cmd) -> Result<Value, SentinelError> {
        if self.inner.config.read_from_replicas
            && cmd.effect() == Effect::ReadOnly
            && cmd.blocking() == Blocking::No
        {
            if let Some(value) = self.read_from_replica(&cmd).await {
                return Ok(value);
            }
        }
        let cmd = &cmd;
        self.on_master(|node| async move { node.send(cmd.clone()).await })
            .await
    }

    /// Runs `call` on the master's node, after any promotion under way. A call that met the
    /// old master's connection closing under it was not sent: it runs again on the new master.
    /// Errors that say the master may have changed wake the follower.
    async fn on_master<T, F, Fut>(&self, call: F) -> Result<T, SentinelError>
    where
        F: Fn(Node) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        self.pass_gate().await;
        let mut attempts = 0;
        loop {
            let node = self.master_node();
            let addr = node.addr().to_string();
            let result = call(node).await;
            attempts += 1;
            let moved_on = self.master_node().addr() != addr;
            if matches!(result, Err(Error::Closed { .. })) && moved_on && attempts < 3 {
                continue;
            }
            self.note(&result);
            return Ok(result?);
        }
    }

    /// Sends a pipeline to the master (one write, replies in order, error replies in place).
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send_pipeline(&self, cmds: &[Cmd]) -> Result<Vec<Value>, SentinelError> {
        self.send_batch(&Batch::from(cmds)).await
    }

    /// Sends a [`Batch`] to the master as a pipeline, as [`SentinelClient::send_pipeline`] does.
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send_batch(&self, batch: &Batch) -> Result<Vec<Value>, SentinelError> {
        self.on_master(|node| async move { node.send_batch(batch).await })
            .await
    }

    /// Runs `MULTI`, `cmds`, `EXEC` on the master as one unit (see
    /// `redis_conn::Connection::send_transaction`).
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send_transaction(
        &self,
        cmds: &[Cmd],
    ) -> Result<Option<Vec<Value>>, SentinelError> {
        self.on_master(|node| async move { node.send_transaction(cmds).await })
            .await
    }

    /// An exclusive connection to the master from its pool, for WATCH ... MULTI ... EXEC. After
    /// a failover a lease still held points at the old master: its commands fail with
    /// `READONLY` or a closed connection, never silently succeed there.
    ///
    /// # Errors
    /// [`SentinelError::Node`] (`PoolTimeout` when the pool is exhausted).
    pub async fn lease(&self) -> Result<RedisLease, SentinelError> {
        self.on_master(|node| async move { node.lease().await })
            .await
    }

    /// A pub/sub connection to the master that moves to the new master after every failover
    /// (publishers write to the master, so that is where messages are).
    ///
    /// # Errors
    /// [`SentinelError::Node`] when the master cannot be reached.
    pub async fn subscriber(&self) -> Result<Subscriber, SentinelError> {
        let weak = Arc::downgrade(&self.inner);
        let fallback = self.master();
        let locate = Arc::new(move || match weak.upgrade() {
            Some(inner) => inner
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .clone(),
            None => fallback.clone(),
        });
        let template = self.inner.config.node.connection().clone();
        let sub = Subscriber::connect_located(template, Some(locate)).await?;
        let mut subs = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| !s.is_closed());
        subs.push(sub.handle());
        Ok(sub)
    }

    /// The client's counters.
    pub fn stats(&self) -> SentinelStats {
        let mut connections = self.master_node().stats();
        for (_, node) in self
            .inner
            .replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            connections = connections.merged(&node.stats());
        }
        SentinelStats {
            failovers: self.failovers(),
            connections,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SentinelConfig {
        &self.inner.config
    }

    /// Closes the connections to the master and the replicas, the subscribers, and the watches
    /// on the sentinels.
    pub fn close(&self) {
        self.inner.shutdown.send_replace(true);
        self.master_node().close();
        for (_, node) in self
            .inner
            .replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            node.close();
        }
        for sub in self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            sub.close();
        }
    }

    /// A read on a healthy replica; `None` (read from the master) when there is none or it failed.
    async fn read_from_replica(&self, cmd: &Cmd) -> Option<Value> {
        let healthy: Vec<(ServerAddr, Node)> = self
            .inner
            .replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, c)| c.is_connected() && !c.is_broken())
            .cloned()
            .collect();
        if healthy.is_empty() {
            return None;
        }
        let offered: Vec<ServerAddr> = healthy.iter().map(|(a, _)| a.clone()).collect();
        let (_, conn) = &healthy[self.inner.config.selector.select(&offered) % healthy.len()];
        match conn.send(cmd.clone()).await {
            Ok(v) => Some(v),
            Err(_) => {
                self.inner.wake.notify_one();
                None
            }
        }
    }

    fn start_following(&self) {
        // One watcher per sentinel for +switch-master, and one task that rediscovers when woken
        // (an event, a stale reply) or when the poll interval passes.
        let sentinels = self
            .inner
            .sentinels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for sentinel in sentinels {
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(watch_switches(weak, sentinel));
        }
        let weak = Arc::downgrade(&self.inner);
        let poll = self.inner.config.poll_interval;
        let mut down = self.inner.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let woken = tokio::select! {
                    () = inner.promote.notified() => {
                        follow_promotion(&inner).await;
                        continue;
                    }
                    woken = tokio::time::timeout(poll, inner.wake.notified()) => woken,
                    () = closed(&mut down) => return,
                };
                follow(&inner).await;
                if inner.config.read_from_replicas {
                    spawn_replica_refresh(&inner);
                }
                if woken.is_err() {
                    // On the poll (not on every event): learn sentinels that joined.
                    for learned in learn_sentinels(&inner).await {
                        tokio::spawn(watch_switches(Arc::downgrade(&inner), learned));
                    }
                }
            }
        });
    }
}

/// Makes `addr` the master in use: the old master's connections are closed (it may stay
/// writable for seconds, and writes sent there would be lost), subscribers move, the failover
/// is counted and announced.
fn switch_to(inner: &Inner, addr: ServerAddr, node: Node) {
    let old = {
        let mut slot = inner.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *slot, (addr.clone(), node))
    };
    old.1.close();
    {
        let mut subs = inner.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| !s.is_closed());
        for sub in subs.iter() {
            sub.relocate();
        }
    }
    inner.failovers.fetch_add(1, Ordering::Relaxed);
    tracing::info!(old = %old.0, new = %addr, "followed a failover");
    let _ = inner.events.send(SentinelEvent::Failover {
        old: old.0.to_string(),
        new: addr.to_string(),
    });
    *inner.left.lock().unwrap_or_else(|e| e.into_inner()) = Some((old.0, Instant::now()));
}

/// Whether `node` says it is a master.
async fn is_master(node: &Node) -> bool {
    matches!(
        node.send(Cmd::new("ROLE")).await,
        Ok(Value::Array(parts))
            if parts.first().and_then(Value::as_bytes).map(|b| &b[..]) == Some(b"master")
    )
}

/// A failover began (a sentinel selected a replica to promote): commands are held, the replica
/// is watched, and the client switches to it the moment it reports itself master, a second or
/// more before the sentinels publish `+switch-master` (writes the old master takes meanwhile
/// are lost when it is demoted). Gives up after `PROMOTION_WAIT`, or when the failover aborts.
async fn follow_promotion(inner: &Inner) {
    let candidate = {
        let mut p = inner.promotion.lock().unwrap_or_else(|e| e.into_inner());
        p.aborted = false;
        p.candidate.take()
    };
    let current = inner
        .current
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .clone();
    let Some(candidate) = candidate.filter(|c| *c != current) else {
        return;
    };
    inner.gate.send_replace(false);
    let started = Instant::now();
    let mut node: Option<Node> = None;
    while started.elapsed() < PROMOTION_WAIT {
        if inner
            .promotion
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .aborted
        {
            tracing::info!(candidate = %candidate, "the failover was aborted");
            break;
        }
        if node.is_none() {
            node = Node::connect(inner.config.node_at(&candidate)).await.ok();
        }
        if let Some(n) = &node {
            if is_master(n).await {
                tracing::info!(
                    new = %candidate,
                    after = ?started.elapsed(),
                    "the selected replica is master: switching before +switch-master"
                );
                if let Some(n) = node.take() {
                    switch_to(inner, candidate, n);
                }
                break;
            }
        }
        tokio::time::sleep(PROMOTION_POLL).await;
    }
    if let Some(n) = node {
        n.close();
    }
    inner.gate.send_replace(true);
}

/// Rediscovers; switches when the sentinels name another master.
async fn follow(inner: &Inner) {
    let current = inner
        .current
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .clone();
    // The usual case: the first sentinel that answers still names the master in use.
    let first = inner
        .sentinels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .cloned();
    if let Some(sentinel) = first {
        if ask_sentinel(&inner.config, &sentinel).await.ok().as_ref() == Some(&current) {
            *inner.left.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return;
        }
    }
    match discover(&inner.config, &inner.sentinels).await {
        Ok((addr, conn)) if addr != current => {
            // Right after following a promotion, sentinels may still name the master we left
            // (it keeps saying it is a master until they demote it): not a reason to go back
            // while the one in use still is a master.
            let stale = inner
                .left
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|(left, at)| *left == addr && at.elapsed() < Duration::from_secs(30));
            let current_node = inner
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .clone();
            if stale && is_master(&current_node).await {
                conn.close();
                return;
            }
            switch_to(inner, addr, conn);
        }
        Ok((_, conn)) => conn.close(),
        Err(e) => tracing::warn!(error = %e, "sentinel discovery failed"),
    }
}

/// Asks the sentinels in order for a list of nodes (`SENTINEL <subcommand> <master>`: SENTINELS,
/// REPLICAS) and returns the addresses of the entries flagged with none of `skip`, from the first
/// sentinel that answers: the first `cap` of them, without repeats.
async fn listed_nodes(
    inner: &Inner,
    subcommand: &str,
    skip: &[&str],
    cap: usize,
) -> Option<Vec<ServerAddr>> {
    let known = inner
        .sentinels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for sentinel in &known {
        let config = inner.config.query_config(sentinel);
        let Ok(conn) = Connection::connect(config).await else {
            continue;
        };
        let reply = conn
            .send(
                Cmd::new("SENTINEL")
                    .arg(subcommand)
                    .arg(&inner.config.master_name),
            )
            .await;
        conn.close();
        let Ok(Value::Array(entries)) = reply else {
            continue;
        };
        let mut addrs: Vec<ServerAddr> = Vec::new();
        for entry in &entries {
            if addrs.len() >= cap {
                break;
            }
            let fields = field_map(entry);
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let flags = get("flags");
            if skip.iter().any(|f| flags.contains(f)) {
                continue;
            }
            if let Ok(port) = get("port").parse::<u16>() {
                let addr = ServerAddr::tcp(get("ip"), port);
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
        }
        return Some(addrs);
    }
    None
}

/// Learns the sentinels not known yet (`SENTINEL SENTINELS`, skipping those flagged down), adds
/// them at the end of the list while it holds fewer than [`MAX_SENTINELS`], and returns them.
async fn learn_sentinels(inner: &Inner) -> Vec<ServerAddr> {
    let listed = listed_nodes(inner, "SENTINELS", &["s_down", "o_down"], MAX_SENTINELS)
        .await
        .unwrap_or_default();
    let mut list = inner.sentinels.lock().unwrap_or_else(|e| e.into_inner());
    let room = MAX_SENTINELS.saturating_sub(list.len());
    let learned: Vec<ServerAddr> = listed
        .into_iter()
        .filter(|addr| !list.contains(addr))
        .take(room)
        .collect();
    list.extend(learned.iter().cloned());
    if !learned.is_empty() {
        tracing::info!(count = learned.len(), "learned sentinels");
    }
    learned
}

/// Starts a replica refresh in a task of its own, unless one is running: the follower never
/// waits for replicas to answer.
fn spawn_replica_refresh(inner: &Arc<Inner>) {
    if inner.replicas_refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        refresh_replicas(&inner).await;
        inner.replicas_refreshing.store(false, Ordering::Release);
    });
}

/// Reloads the replicas (`SENTINEL REPLICAS`, skipping those flagged down or disconnected, at
/// most [`MAX_REPLICAS`]), keeping the connections of those that stay, dialling the new ones all
/// at once (so it takes one connect timeout however many are dead), and closing the others.
async fn refresh_replicas(inner: &Inner) {
    let Some(addrs) = listed_nodes(
        inner,
        "REPLICAS",
        &["s_down", "o_down", "disconnected"],
        MAX_REPLICAS,
    )
    .await
    else {
        return;
    };
    let old: Vec<(ServerAddr, Node)> = inner
        .replicas
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut dials = tokio::task::JoinSet::new();
    let mut next: Vec<(ServerAddr, Option<Node>)> = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.into_iter().enumerate() {
        let kept = old
            .iter()
            .find(|(a, c)| *a == addr && !c.is_closed())
            .map(|(_, c)| c.clone());
        if kept.is_none() {
            let config = inner.config.node_at(&addr);
            dials.spawn(async move { (i, Node::connect(config).await) });
        }
        next.push((addr, kept));
    }
    while let Some(joined) = dials.join_next().await {
        match joined {
            Ok((i, Ok(node))) => next[i].1 = Some(node),
            Ok((i, Err(e))) => {
                tracing::debug!(replica = %next[i].0, error = %e, "cannot reach a replica");
            }
            Err(e) => tracing::debug!(error = %e, "a replica dial failed"),
        }
    }
    let next: Vec<(ServerAddr, Node)> = next
        .into_iter()
        .filter_map(|(addr, node)| Some((addr, node?)))
        .collect();
    let closed = *inner.shutdown.borrow();
    let previous = {
        let mut slot = inner.replicas.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *slot, if closed { Vec::new() } else { next.clone() })
    };
    for (addr, conn) in &previous {
        if closed || !next.iter().any(|(a, _)| a == addr) {
            conn.close();
        }
    }
    if closed {
        for (_, conn) in &next {
            conn.close();
        }
    }
}

/// Field names and values of a sentinel reply entry (RESP2 flat array or RESP3 map).
fn field_map(entry: &Value) -> Vec<(String, String)> {
    match entry {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text(k), text(v))),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => Vec::new(),
    }
}

fn text(v: &Value) -> String {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Asks the sentinels in order; the first that names a master that answers ROLE as master wins
/// and moves to the front of the list.
async fn discover(
    config: &SentinelConfig,
    list: &Mutex<Vec<ServerAddr>>,
) -> Result<(ServerAddr, Node), SentinelError> {
    let name = &config.master_name;
    let sentinels = list.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut reason = String::from("no sentinel configured");
    for (i, sentinel) in sentinels.iter().enumerate() {
        let addr = match ask_sentinel(config, sentinel).await {
            Ok(addr) => addr,
            Err(e) => {
                reason = format!("sentinel {sentinel}: {e}");
                continue;
            }
        };
        let conn = match Node::connect(config.node_at(&addr)).await {
            Ok(conn) => conn,
            Err(e) => {
                reason = format!("master {addr} from sentinel {sentinel}: {e}");
                continue;
            }
        };
        match conn.send(Cmd::new("ROLE")).await {
            Ok(Value::Array(parts))
                if parts.first().and_then(Value::as_bytes).map(|b| &b[..]) == Some(b"master") =>
            {
                if i > 0 {
                    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(pos) = list.iter().position(|s| s == sentinel) {
                        let s = list.remove(pos);
                        list.insert(0, s);
                    }
                }
                return Ok((addr, conn));
            }
            Ok(other) => {
                conn.close();
                reason = format!(
                    "sentinel {sentinel} named {addr}, which is not a master (ROLE: {other:?})"
                );
            }
            Err(e) => {
                conn.close();
                reason = format!("ROLE on {addr}: {e}");
            }
        }
    }
    Err(SentinelError::NoMaster {
        name: name.clone(),
        reason,
    })
}

async fn ask_sentinel(
    config: &SentinelConfig,
    sentinel: &ServerAddr,
) -> Result<ServerAddr, String> {
    let conn = Connection::connect(config.query_config(sentinel))
        .await
        .map_err(|e| e.to_string())?;
    let reply = conn
        .send(
            Cmd::new("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&config.master_name),
        )
        .await;
    conn.close();
    match reply.map_err(|e| e.to_string())? {
        Value::Array(parts) if parts.len() == 2 => {
            let text = |v: &Value| {
                v.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let port = text(&parts[1])
                .parse()
                .map_err(|_| format!("bad port in {parts:?}"))?;
            Ok(ServerAddr::tcp(text(&parts[0]), port))
        }
        Value::Null => Err(format!("does not know {}", config.master_name)),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// The sentinel events the client follows: the switch itself, the start of a failover (the
/// replica selected for promotion), its promotion, and aborted failovers.
async fn subscribe_failover_events(sub: &Subscriber) -> Result<(), Error> {
    sub.subscribe(["+switch-master", "+selected-slave", "+promoted-slave"])
        .await?;
    sub.psubscribe(["-failover-abort-*"]).await
}

/// Acts on one sentinel event about `name`.
fn on_sentinel_event(inner: &Inner, name: &str, channel: &[u8], payload: &[u8]) {
    let words: Vec<&[u8]> = payload.split(|&b| b == b' ').collect();
    let text = |w: &[u8]| String::from_utf8_lossy(w).into_owned();
    match channel {
        // `<master-name> <old-ip> <old-port> <new-ip> <new-port>`
        b"+switch-master" if words.first() == Some(&name.as_bytes()) => inner.wake.notify_one(),
        // `slave <name> <ip> <port> @ <master-name> <master-ip> <master-port>`
        b"+selected-slave" | b"+promoted-slave" => {
            let Some(at) = words.iter().position(|w| *w == b"@") else {
                return;
            };
            if words.get(at + 1) != Some(&name.as_bytes()) {
                return;
            }
            let port = words.get(3).and_then(|p| text(p).parse::<u16>().ok());
            if let (Some(ip), Some(port)) = (words.get(2), port) {
                inner
                    .promotion
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .candidate = Some(ServerAddr::tcp(text(ip), port));
                inner.promote.notify_one();
            }
        }
        // `-failover-abort-...`: `master <master-name> <ip> <port>`
        c if c.starts_with(b"-failover-abort") && words.get(1) == Some(&name.as_bytes()) => {
            inner
                .promotion
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .aborted = true;
            inner.wake.notify_one();
        }
        _ => {}
    }
}

/// Resolves once the client is closed (or gone).
async fn closed(down: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *down.borrow_and_update() {
            return;
        }
        if down.changed().await.is_err() {
            return;
        }
    }
}

/// Subscribes to `+switch-master` on one sentinel (with the sentinels' credentials and TLS) and
/// wakes the follower on every switch of our master. The subscriber reconnects and subscribes
/// again by itself; the first connection is retried every 500 ms. Ends when the client is gone.
async fn watch_switches(inner: std::sync::Weak<Inner>, sentinel: ServerAddr) {
    let (config, name, poll, mut down) = {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let down = strong.shutdown.subscribe();
        let config = strong
            .config
            .sentinel_connection
            .with_addr(sentinel.clone())
            .protocol(Protocol::Resp2);
        let name = strong.config.master_name.clone();
        (config, name, strong.config.poll_interval, down)
    };
    let mut sub = loop {
        if inner.strong_count() == 0 || *down.borrow() {
            return;
        }
        match Subscriber::connect(config.clone()).await {
            Ok(sub) => match subscribe_failover_events(&sub).await {
                Ok(()) => break sub,
                Err(e) => {
                    tracing::debug!(sentinel = %sentinel, error = %e, "cannot watch a sentinel");
                    sub.close();
                }
            },
            Err(e) => tracing::debug!(sentinel = %sentinel, error = %e, "cannot watch a sentinel"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = closed(&mut down) => return,
        }
    };
    loop {
        tokio::select! {
            message = sub.next_message() => {
                let Some(message) = message else { return };
                let Some(strong) = inner.upgrade() else { break };
                on_sentinel_event(&strong, &name, &message.channel, &message.payload);
            }
            () = tokio::time::sleep(poll) => {
                if inner.strong_count() == 0 {
                    break;
                }
            }
            () = closed(&mut down) => break,
        }
    }
    sub.close();
}
