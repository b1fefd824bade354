//! The routing client: one multiplexed connection per node, commands sent to the master of their
//! slot, `MOVED`/`ASK` followed, topology refreshed on triggers and on a timer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redis_conn::pool::RedisLease;
use redis_conn::table::{ClusterPolicy, CommandInfo};
use redis_conn::{Args, Batch, BatchCmd, Cmd, Error, Node, ReplicaHealth, Stats, Value};

use crate::decision::{decide, needs_refresh, reply_error, Attempt, Rules, Sender, Step};
use crate::fan_out::FanOut;
use crate::node_set::NodeSet;
use crate::refresher::TopologyRefresher;
use crate::split::{Combined, SplitPlan};
use crate::{
    slot, ClusterConfig, ClusterError, ClusterScan, NodeAddr, Redirect, SlotMap, Topology,
};

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
pub(crate) struct Inner {
    pub(crate) config: ClusterConfig,
    pub(crate) events: tokio::sync::broadcast::Sender<ClusterEvent>,
    pub(crate) map: RwLock<Arc<SlotMap>>,
    pub(crate) conns: NodeSet,
    /// Connections to replicas for reads (they send READONLY).
    pub(crate) replica_conns: NodeSet,
    pub(crate) refresher: TopologyRefresher,
    pub(crate) moved: AtomicU64,
    pub(crate) ask: AtomicU64,
    /// Set by `close`: no connection is opened any more.
    pub(crate) closed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.refresher.stop();
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
    pub(crate) inner: Arc<Inner>,
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
                refresher: TopologyRefresher::new(),
                moved: AtomicU64::new(0),
                ask: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            }),
        };
        client.refresh_from(seeds).await?;
        if let Some(interval) = interval {
            client.start_periodic_refresh(interval);
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
        ClusterScan::new(self.clone(), masters, pattern, count, key_type)
    }

    /// A stream of topology events.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<ClusterEvent> {
        self.inner.events.subscribe()
    }

    /// Topology refreshes done so far (the initial load included).
    pub fn refreshes(&self) -> u64 {
        self.inner.refresher.refreshes()
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
        self.inner.refresher.stop();
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
        let rules = self.rules(Sender::Transaction);
        let mut attempt = Attempt::default();
        loop {
            let node = self.connection(&target).await?;
            let (error, step) = match node.send_pipeline(&all).await {
                // A MOVED met while queueing: nothing ran.
                Ok(replies) => match first_moved(&replies, &target, attempt, rules) {
                    Some(moved) => moved,
                    None => return Ok(redis_conn::transaction_outcome(replies)?),
                },
                Err(e) => {
                    let step = decide(&e, &target, attempt, rules);
                    (e, step)
                }
            };
            match self.resolve_unknown_endpoint(&error, step) {
                Step::Moved(redirect) => {
                    self.follow_moved(&redirect);
                    attempt = attempt.redirected(false);
                    target = redirect.addr;
                }
                Step::TooManyRedirects {
                    redirect,
                    redirects,
                } => {
                    // The slot did move: the map learns it all the same.
                    self.follow_moved(&redirect);
                    return Err(ClusterError::TooManyRedirects {
                        slot: slot.unwrap_or(0),
                        redirects,
                    });
                }
                other => return Err(self.fail(error, &other)),
            }
        }
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
            Err(ClusterError::CrossSlot { .. }) if splits_by_slot(&cmd.info(), cmd.args()) => {
                return self.send_split(&cmd).await;
            }
            other => other?,
        };
        if slot.is_none() {
            if let ClusterPolicy::AllMasters(combine) = cmd.info().cluster_policy(cmd.args()) {
                return self.send_to_all_masters(&cmd, combine).await;
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
                Err(ClusterError::CrossSlot { .. }) if splits_by_slot(&cmd.info(), cmd.args()) => {
                    None
                }
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
    /// the ones that did not run (redirected, or refused by a settling cluster) again, in order;
    /// appends the replies in the caller's order.
    async fn flush_segment(
        &self,
        batch: &Batch,
        segment: &mut Vec<(usize, NodeAddr)>,
        replies: &mut Vec<Value>,
    ) -> Result<(), ClusterError> {
        let Some(&(base, _)) = segment.first() else {
            return Ok(());
        };
        let mut placed = SegmentReplies::after(base);
        let mut resend = Vec::new();
        let rules = self.rules(Sender::PipelinePart);
        let shares = self.send_shares(batch, segment);
        // Every node's share is awaited; a failure of one is reported for the whole, as a
        // pipeline that may have run if anything else of it ran (an earlier part, another
        // node's share).
        shares
            .gather(!replies.is_empty(), |(addr, indexes, values)| {
                for (i, value) in indexes.into_iter().zip(values) {
                    if did_not_run(&value, &addr, rules) {
                        resend.push(i);
                    } else {
                        placed.put(i, value);
                    }
                }
            })
            .await?;
        self.resend_in_order(batch, resend, &mut placed).await?;
        replies.extend(placed.into_values());
        Ok(())
    }

    /// Starts sending each node its share of `segment` (emptied), as one sub-pipeline.
    fn send_shares(
        &self,
        batch: &Batch,
        segment: &mut Vec<(usize, NodeAddr)>,
    ) -> FanOut<(NodeAddr, Vec<usize>, Vec<Value>)> {
        let mut per_node: HashMap<NodeAddr, Vec<usize>> = HashMap::new();
        for (i, addr) in segment.drain(..) {
            per_node.entry(addr).or_default().push(i);
        }
        let mut shares = FanOut::new();
        for (addr, indexes) in per_node {
            let client = self.clone();
            let mut sub = Batch::with_capacity(indexes.len(), 0);
            for &i in &indexes {
                if let Some(cmd) = batch.get(i) {
                    sub.push_batched(cmd);
                }
            }
            shares.spawn(async move {
                let conn = client.connection(&addr).await?;
                let values = conn.send_batch(&sub).await.inspect_err(|e| {
                    if needs_refresh(e) {
                        client.trigger_refresh();
                    }
                })?;
                Ok((addr, indexes, values))
            });
        }
        shares
    }

    /// Sends the commands of a segment that did not run, one by one and in order, through the
    /// usual routing, which follows the redirect or waits the cluster out.
    async fn resend_in_order(
        &self,
        batch: &Batch,
        mut resend: Vec<usize>,
        placed: &mut SegmentReplies,
    ) -> Result<(), ClusterError> {
        resend.sort_unstable();
        for i in resend {
            let Some(cmd) = batch.get(i) else { continue };
            let slot = batched_slot(&cmd).ok().flatten();
            let value = match self.route(cmd.to_cmd(), slot).await {
                Ok(v) => v,
                Err(ClusterError::Node(Error::Server(e))) => Value::Error(e.as_bytes().clone()),
                // The rest of the segment ran.
                Err(e) => return Err(e.partly_sent()),
            };
            placed.put(i, value);
        }
        Ok(())
    }

    /// Keyless commands every master must run (FLUSHALL, SCRIPT LOAD) or whose answer is the
    /// sum over masters (DBSIZE), sent to all masters at once; the answers combine as the
    /// command table says.
    async fn send_to_all_masters(
        &self,
        cmd: &Cmd,
        combine: redis_conn::table::Combine,
    ) -> Result<Value, ClusterError> {
        let mut masters = FanOut::new();
        for shard in self.slot_map().shards() {
            let (client, addr, cmd) = (self.clone(), shard.master.clone(), cmd.clone());
            masters.spawn(async move {
                let conn = client.connection(&addr).await?;
                Ok(conn.send(cmd).await?)
            });
        }
        let mut answer = Combined::new(combine);
        // Some masters ran it: the command as a whole may have run.
        masters.gather(false, |value| answer.add(value)).await?;
        Ok(answer.finish())
    }

    /// Tries a read on a healthy replica of `slot`. `None` when there is none, or when it failed
    /// in a way that the master may not (the caller then reads from the master).
    async fn read_from_replica(&self, cmd: &Cmd, slot: u16) -> Option<Result<Value, ClusterError>> {
        let map = self.slot_map();
        let pick = {
            let conns = self.inner.replica_conns.lock();
            let selector = self.inner.config.replica_reads.selector();
            map.replicas(slot)?
                .pick_where(selector, |addr| may_serve_a_read(&conns, addr))?
        };
        let conn = match self.replica_connection(pick).await {
            Ok(conn) => conn,
            Err(_) => {
                self.trigger_refresh();
                return None;
            }
        };
        let error = match conn.send(cmd.clone()).await {
            Ok(v) => return Some(Ok(v)),
            Err(e) => e,
        };
        match decide(
            &error,
            pick,
            Attempt::default(),
            self.rules(Sender::ReplicaRead),
        ) {
            Step::ReadFromMaster => {
                self.trigger_refresh();
                None
            }
            step => Some(Err(self.fail(error, &step))),
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
            if self.inner.config.replica_reads.wants(&cmd) {
                if let Some(result) = self.read_from_replica(&cmd, s).await {
                    return result;
                }
            }
        }
        let mut target = self.master_for(slot)?;
        let mut attempt = Attempt::default();
        loop {
            let conn = self.connection(&target).await?;
            let error = match send_once(&conn, &cmd, attempt.asking).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let step = decide(&error, &target, attempt, self.rules(Sender::Command));
            match self.resolve_unknown_endpoint(&error, step) {
                Step::Moved(redirect) => {
                    self.follow_moved(&redirect);
                    attempt = attempt.redirected(false);
                    target = redirect.addr;
                }
                Step::Ask { redirect, refresh } => {
                    self.inner.ask.fetch_add(1, Ordering::Relaxed);
                    if refresh {
                        self.trigger_refresh();
                    }
                    attempt = attempt.redirected(true);
                    target = redirect.addr;
                }
                Step::Reroute => {
                    attempt = attempt.redirected(false);
                    target = self.master_for(slot)?;
                }
                Step::Retry { after } => {
                    self.trigger_refresh();
                    tokio::time::sleep(after).await;
                    attempt = attempt.redirected(false);
                    target = self.master_for(slot)?;
                }
                Step::TooManyRedirects {
                    redirect,
                    redirects,
                } => {
                    return Err(ClusterError::TooManyRedirects {
                        slot: redirect.slot,
                        redirects,
                    })
                }
                other => return Err(self.fail(error, &other)),
            }
        }
    }

    /// The rules of the decision after a failure, for `sender`.
    fn rules(&self, sender: Sender) -> Rules {
        Rules {
            sender,
            max_redirects: self.inner.config.max_redirects,
            client_closed: self.inner.closed.load(Ordering::Acquire),
        }
    }

    /// Follows a `MOVED`: counts it, patches the map, refreshes.
    fn follow_moved(&self, redirect: &Redirect) {
        self.inner.moved.fetch_add(1, Ordering::Relaxed);
        self.patch_moved(redirect.slot, &redirect.addr);
        self.trigger_refresh();
    }

    /// The error as the answer, after the refresh the step asks for.
    fn fail(&self, error: Error, step: &Step) -> ClusterError {
        if matches!(step, Step::Fail { refresh: true }) {
            self.trigger_refresh();
        }
        error.into()
    }

    /// A command the table splits by slot (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH) whose keys
    /// span slots: one command per slot, all sent at once (commands for the same node leave in
    /// one write on its multiplexed connection), results merged in the caller's key order (MGET)
    /// or summed. Not atomic across slots: a failure can leave some slots written.
    async fn send_split(&self, cmd: &Cmd) -> Result<Value, ClusterError> {
        let ClusterPolicy::SplitBySlot(merge) = cmd.info().cluster_policy(cmd.args()) else {
            return Err(ClusterError::CrossSlot {
                command: String::from_utf8_lossy(cmd.name()).into_owned(),
            });
        };
        let plan = SplitPlan::new(cmd, merge);
        // One command per slot; the commands for one node then travel as one sub-pipeline.
        let map = self.slot_map();
        let mut segment = Vec::with_capacity(plan.slots().len());
        for (j, &part_slot) in plan.slots().iter().enumerate() {
            let addr = map
                .master(part_slot)
                .cloned()
                .ok_or(ClusterError::Unassigned { slot: part_slot })?;
            segment.push((j, addr));
        }
        let mut replies = Vec::with_capacity(segment.len());
        self.flush_segment(plan.parts(), &mut segment, &mut replies)
            .await?;
        plan.merge(replies)
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

    /// A redirection to `?:<port>` (see [`Redirect::names_unknown_endpoint`]) goes to the one
    /// node the slot map knows on that port, when there is exactly one; otherwise it keeps the
    /// replying node's host that [`Redirect::parse`] put there.
    fn resolve_unknown_endpoint(&self, error: &Error, step: Step) -> Step {
        let Error::Server(server) = error else {
            return step;
        };
        if !Redirect::names_unknown_endpoint(server) {
            return step;
        }
        let map = self.slot_map();
        let resolve = |mut redirect: Redirect| {
            let port = redirect.addr.port;
            let on_port: Vec<NodeAddr> =
                map.nodes().into_iter().filter(|n| n.port == port).collect();
            if let [only] = &on_port[..] {
                redirect.addr = only.clone();
            }
            redirect
        };
        match step {
            Step::Moved(redirect) => Step::Moved(resolve(redirect)),
            Step::Ask { redirect, refresh } => Step::Ask {
                redirect: resolve(redirect),
                refresh,
            },
            Step::TooManyRedirects {
                redirect,
                redirects,
            } => Step::TooManyRedirects {
                redirect: resolve(redirect),
                redirects,
            },
            other => other,
        }
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
}

/// Whether the replica at `addr` may serve a read: one the client has not dialled yet counts as
/// healthy (it is dialled on first use), one it has must be connected and not broken.
fn may_serve_a_read(conns: &HashMap<NodeAddr, Node>, addr: &NodeAddr) -> bool {
    conns.get(addr).is_none_or(ReplicaHealth::is_healthy)
}

/// Whether a command whose keys span slots may be split by slot (the command table says).
fn splits_by_slot(info: &CommandInfo, args: Args<'_>) -> bool {
    matches!(info.cluster_policy(args), ClusterPolicy::SplitBySlot(_))
}

/// Sends `cmd` on `conn`, after `ASKING` when `asking`.
async fn send_once(conn: &Node, cmd: &Cmd, asking: bool) -> Result<Value, Error> {
    if !asking {
        return conn.send(cmd.clone()).await;
    }
    match conn.send_pipeline(&[Cmd::new("ASKING"), cmd.clone()]).await {
        Ok(mut replies) => match replies.pop() {
            Some(Value::Error(e)) => Err(reply_error(&e)),
            Some(v) => Ok(v),
            None => Ok(Value::Null),
        },
        Err(e) => Err(e),
    }
}

/// The first `MOVED` among a transaction's replies (a command refused while queueing), with
/// the step it calls for.
fn first_moved(
    replies: &[Value],
    replied_by: &NodeAddr,
    attempt: Attempt,
    rules: Rules,
) -> Option<(Error, Step)> {
    replies.iter().find_map(|reply| {
        let Value::Error(message) = reply else {
            return None;
        };
        let error = reply_error(message);
        match decide(&error, replied_by, attempt, rules) {
            step @ (Step::Moved(_) | Step::TooManyRedirects { .. }) => Some((error, step)),
            _ => None,
        }
    })
}

/// Whether a reply of a node's share of a pipeline says its command did not run there (so it
/// is resent on its own).
fn did_not_run(reply: &Value, replied_by: &NodeAddr, rules: Rules) -> bool {
    match reply {
        Value::Error(message) => {
            decide(&reply_error(message), replied_by, Attempt::default(), rules) == Step::Resend
        }
        _ => false,
    }
}

/// The replies of a pipeline segment, put in the caller's order as they arrive.
#[derive(Debug)]
struct SegmentReplies {
    /// The index of the segment's first command in the pipeline.
    base: usize,
    slots: Vec<Option<Value>>,
}

impl SegmentReplies {
    fn after(base: usize) -> SegmentReplies {
        SegmentReplies {
            base,
            slots: Vec::new(),
        }
    }

    /// The reply of the pipeline's command `i`.
    fn put(&mut self, i: usize, value: Value) {
        let at = i - self.base;
        if self.slots.len() <= at {
            self.slots.resize(at + 1, None);
        }
        self.slots[at] = Some(value);
    }

    /// The replies in order (`Null` where none came).
    fn into_values(self) -> impl Iterator<Item = Value> {
        self.slots.into_iter().map(|v| v.unwrap_or(Value::Null))
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
    }

    #[test]
    fn a_batchs_commands_route_as_the_commands_themselves_do() {
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
