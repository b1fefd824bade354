//! Pub/sub across a cluster: channels and patterns on one node, shard channels on the master of
//! their slot, moved when their slot moves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis_conn::{Error, Message, Subscriber, SubscriberEvent, SubscriberHandle, SubscriptionKind};
use tokio::sync::mpsc;

use crate::{slot, ClusterClient, ClusterError, ClusterEvent, NodeAddr};

/// A shard channel and the node it is subscribed on now.
type Placed = (Bytes, Option<NodeAddr>);

/// Shard channels to subscribe on a new home, by that master and their slot.
type Moves = HashMap<(NodeAddr, u16), Vec<Placed>>;

/// How often shard channels are checked against the slot map, besides topology events.
const REHOME_INTERVAL: Duration = Duration::from_secs(1);

struct Shared {
    client: ClusterClient,
    /// Channel and pattern subscriptions: one connection to any master (Redis Cluster forwards
    /// every PUBLISH to every node).
    global: SubscriberHandle,
    /// Shard channels wanted, and the node each is subscribed on (`None`: being moved).
    shards: Mutex<HashMap<Bytes, Option<NodeAddr>>>,
    /// One subscriber per master that serves shard channels.
    nodes: tokio::sync::Mutex<HashMap<NodeAddr, SubscriberHandle>>,
    /// One re-placement at a time.
    rehoming: tokio::sync::Mutex<()>,
    out: mpsc::Sender<SubscriberEvent>,
    closed: AtomicBool,
}

/// A subscriber for a whole cluster, from [`ClusterClient::subscriber`].
///
/// `SUBSCRIBE` and `PSUBSCRIBE` go to one node (any master; another one if it fails): a cluster
/// delivers every `PUBLISH` on every node. `SSUBSCRIBE` (Redis 7 shard channels, published
/// with `SPUBLISH`) goes to the master of each channel's slot; when the slot moves (failover,
/// resharding) the channel is subscribed again on its new master. Messages from every node come
/// out of one stream. Messages published while a connection is down, or while a shard channel is
/// moving, are missed (pub/sub keeps no history): [`SubscriberEvent::Resubscribed`] tells.
///
/// ```no_run
/// # async fn demo(client: redis_cluster::ClusterClient) -> Result<(), redis_cluster::ClusterError> {
/// let mut sub = client.subscriber().await?;
/// sub.ssubscribe(["orders:{eu}", "orders:{us}"]).await?;
/// while let Some(msg) = sub.next_message().await {
///     println!("{:?} {:?}", msg.channel, msg.payload);
/// }
/// # Ok(()) }
/// ```
pub struct ClusterSubscriber {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<SubscriberEvent>,
}

impl std::fmt::Debug for ClusterSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSubscriber")
            .field("global", &self.shared.global)
            .field(
                "shard_channels",
                &self.shared.shards.lock().map(|s| s.len()).unwrap_or(0),
            )
            .finish_non_exhaustive()
    }
}

impl ClusterSubscriber {
    pub(crate) async fn start(client: ClusterClient) -> Result<ClusterSubscriber, ClusterError> {
        let first = client
            .random_master()
            .ok_or_else(|| ClusterError::NoTopology("no master known".into()))?;
        let template = client.config().node_config().connection().clone();
        let locate = {
            let (client, fallback) = (client.clone(), first.clone());
            Arc::new(move || {
                redis_conn::ServerAddr::from(&client.random_master().unwrap_or(fallback.clone()))
            })
        };
        let global = Subscriber::connect_located(template.with_addr(&first), Some(locate)).await?;
        let capacity = template_capacity(&client);
        let (out, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            client,
            global: global.handle(),
            shards: Mutex::new(HashMap::new()),
            nodes: tokio::sync::Mutex::new(HashMap::new()),
            rehoming: tokio::sync::Mutex::new(()),
            out,
            closed: AtomicBool::new(false),
        });
        forward(Arc::downgrade(&shared), global);
        watch_topology(Arc::downgrade(&shared));
        Ok(ClusterSubscriber { shared, rx })
    }

    /// Subscribes to channels (on one node).
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn subscribe<I, N>(&self, channels: I) -> Result<(), ClusterError>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        Ok(self.shared.global.subscribe(channels).await?)
    }

    /// Subscribes to patterns (on one node).
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn psubscribe<I, N>(&self, patterns: I) -> Result<(), ClusterError>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        Ok(self.shared.global.psubscribe(patterns).await?)
    }

    /// Unsubscribes from channels.
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn unsubscribe<I, N>(&self, channels: I) -> Result<(), ClusterError>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        Ok(self.shared.global.unsubscribe(channels).await?)
    }

    /// Unsubscribes from patterns.
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn punsubscribe<I, N>(&self, patterns: I) -> Result<(), ClusterError>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        Ok(self.shared.global.punsubscribe(patterns).await?)
    }

    /// Subscribes to shard channels, each on the master of its slot.
    ///
    /// # Errors
    /// [`ClusterError::Unassigned`] when a channel's slot has no master; the node's error. A
    /// channel that could not be subscribed stays wanted and is tried again with the next
    /// topology check (every second).
    pub async fn ssubscribe<I, N>(&self, channels: I) -> Result<(), ClusterError>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        let names: Vec<Bytes> = channels
            .into_iter()
            .map(|c| Bytes::copy_from_slice(c.as_ref()))
            .collect();
        {
            let mut shards = self.shared.shards.lock().unwrap_or_else(|e| e.into_inner());
            for name in &names {
                shards.entry(name.clone()).or_insert(None);
            }
        }
        self.shared.rehome().await
    }

    /// Unsubscribes from shard channels.
    ///
    /// # Errors
    /// The node's error.
    pub async fn sunsubscribe<I, N>(&self, channels: I) -> Result<(), ClusterError>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        let mut per_node: HashMap<NodeAddr, Vec<Bytes>> = HashMap::new();
        {
            let mut shards = self.shared.shards.lock().unwrap_or_else(|e| e.into_inner());
            for channel in channels {
                if let Some(Some(home)) = shards.remove(channel.as_ref()) {
                    per_node
                        .entry(home)
                        .or_default()
                        .push(Bytes::copy_from_slice(channel.as_ref()));
                }
            }
        }
        let nodes = self.shared.nodes.lock().await.clone();
        for (addr, names) in per_node {
            if let Some(handle) = nodes.get(&addr) {
                handle.sunsubscribe(names).await?;
            }
        }
        Ok(())
    }

    /// The next message; `None` once closed.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            match self.rx.recv().await? {
                SubscriberEvent::Message(m) => return Some(m),
                other => tracing::debug!(event = ?other, "cluster subscriber event"),
            }
        }
    }

    /// The next message or other event; `None` once closed.
    pub async fn next_event(&mut self) -> Option<SubscriberEvent> {
        self.rx.recv().await
    }

    /// Everything subscribed to (or wanted), by kind.
    pub fn subscriptions(&self) -> Vec<(SubscriptionKind, Bytes)> {
        let mut all = self.shared.global.subscriptions();
        let shards = self.shared.shards.lock().unwrap_or_else(|e| e.into_inner());
        all.extend(shards.keys().map(|c| (SubscriptionKind::Shard, c.clone())));
        all
    }

    /// The node each shard channel is subscribed on now (`None`: being moved).
    pub fn shard_homes(&self) -> Vec<(Bytes, Option<NodeAddr>)> {
        let shards = self.shared.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.iter().map(|(c, h)| (c.clone(), h.clone())).collect()
    }

    /// Closes every connection of the subscriber; the stream ends.
    pub fn close(&self) {
        self.shared.close();
    }
}

impl Drop for ClusterSubscriber {
    fn drop(&mut self) {
        self.shared.close();
    }
}

fn template_capacity(client: &ClusterClient) -> usize {
    // Messages from every node share one queue: as deep as one connection's.
    client
        .config()
        .node_config()
        .connection()
        .get_queue_capacity()
}

impl Shared {
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.global.close();
        if let Ok(nodes) = self.nodes.try_lock() {
            for handle in nodes.values() {
                handle.close();
            }
        }
    }

    /// The subscriber on `addr` for shard channels, opened on first use.
    async fn node(self: &Arc<Self>, addr: &NodeAddr) -> Result<SubscriberHandle, Error> {
        let mut nodes = self.nodes.lock().await;
        if let Some(handle) = nodes.get(addr) {
            if !handle.is_closed() {
                return Ok(handle.clone());
            }
        }
        let config = self
            .client
            .config()
            .node_config()
            .connection()
            .with_addr(addr);
        let sub = Subscriber::connect(config).await?;
        let handle = sub.handle();
        nodes.insert(addr.clone(), handle.clone());
        forward(Arc::downgrade(self), sub);
        Ok(handle)
    }

    /// Subscribes every shard channel that is not on the master of its slot there, and closes
    /// the subscribers left with nothing to serve.
    async fn rehome(self: &Arc<Self>) -> Result<(), ClusterError> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.rehoming.lock().await;
        let (moves, mut first_error) = self.moves_to_make();
        for ((owner, _), channels) in moves {
            if let Err(e) = self.move_channels(&owner, channels).await {
                first_error.get_or_insert(ClusterError::Node(e));
            }
        }
        self.close_idle_subscribers().await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The shard channels not on the master of their slot, grouped by that master and slot
    /// (one SSUBSCRIBE per slot); and the first slot found with no master.
    fn moves_to_make(&self) -> (Moves, Option<ClusterError>) {
        let map = self.client.slot_map();
        let mut moves = Moves::new();
        let mut first_error = None;
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        for (channel, home) in shards.iter() {
            let s = slot(channel);
            match map.master(s) {
                Some(owner) if home.as_ref() != Some(owner) => moves
                    .entry((owner.clone(), s))
                    .or_default()
                    .push((channel.clone(), home.clone())),
                Some(_) => {}
                None => {
                    first_error.get_or_insert(ClusterError::Unassigned { slot: s });
                }
            }
        }
        (moves, first_error)
    }

    /// Subscribes `channels` on `owner`, leaving their old homes in the background (one may be
    /// dead, and waiting for it would hold the move up); a channel whose move failed is left
    /// with no home.
    async fn move_channels(
        self: &Arc<Self>,
        owner: &NodeAddr,
        channels: Vec<Placed>,
    ) -> Result<(), redis_conn::Error> {
        let mut leaving: HashMap<NodeAddr, Vec<Bytes>> = HashMap::new();
        for (channel, home) in &channels {
            if let Some(old) = home {
                leaving
                    .entry(old.clone())
                    .or_default()
                    .push(channel.clone());
            }
        }
        for (old, names) in leaving {
            if let Some(handle) = self.nodes.lock().await.get(&old).cloned() {
                tokio::spawn(async move {
                    let _ = handle.sunsubscribe(names).await;
                });
            }
        }
        let names: Vec<Bytes> = channels.iter().map(|(c, _)| c.clone()).collect();
        let result = match self.node(owner).await {
            Ok(handle) => handle.ssubscribe(&names).await,
            Err(e) => Err(e),
        };
        let home = result.as_ref().ok().map(|()| owner);
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            // Still wanted (not unsubscribed meanwhile)?
            if let Some(at) = shards.get_mut(&name) {
                *at = home.cloned();
            }
        }
        result
    }

    /// Closes the subscribers that serve no channel any more.
    async fn close_idle_subscribers(&self) {
        let homes: Vec<NodeAddr> = {
            let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
            shards.values().flatten().cloned().collect()
        };
        let mut nodes = self.nodes.lock().await;
        nodes.retain(|addr, handle| {
            let keep = homes.contains(addr);
            if !keep {
                handle.close();
            }
            keep
        });
    }

    /// A shard channel the server dropped (its slot left that node): wanted still, home unknown.
    fn dropped(&self, channel: &Bytes) {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(home) = shards.get_mut(channel) {
            *home = None;
        }
    }
}

/// Forwards one node subscriber's events into the shared stream; a dropped shard channel is
/// re-placed after a topology refresh.
fn forward(shared: Weak<Shared>, mut sub: Subscriber) {
    tokio::spawn(async move {
        while let Some(event) = sub.next_event().await {
            let Some(strong) = shared.upgrade() else {
                return;
            };
            match event {
                SubscriberEvent::Dropped {
                    kind: SubscriptionKind::Shard,
                    channel,
                } => {
                    strong.dropped(&channel);
                    strong.client.trigger_refresh();
                    let again = Arc::downgrade(&strong);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if let Some(s) = again.upgrade() {
                            let _ = s.rehome().await;
                        }
                    });
                }
                other => {
                    if strong.out.send(other).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Re-places shard channels on every topology change, and every second as a backstop.
fn watch_topology(shared: Weak<Shared>) {
    let Some(strong) = shared.upgrade() else {
        return;
    };
    let mut events = strong.client.events();
    drop(strong);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REHOME_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(ClusterEvent::TopologyChanged { .. })
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {}
            }
            let Some(strong) = shared.upgrade() else {
                return;
            };
            if strong.closed.load(Ordering::Acquire) || strong.out.is_closed() {
                return;
            }
            let _ = strong.rehome().await;
        }
    });
}
