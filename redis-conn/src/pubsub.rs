//! Pub/sub: a connection of its own in subscribe mode, which reconnects with backoff and
//! subscribes again to everything it had.
//!
//! A [`Subscriber`] keeps the set of channels, patterns and shard channels it was asked for.
//! After every reconnect (or [`SubscriberHandle::relocate`], which a sentinel client calls after
//! a failover) it sends them all again, reports [`SubscriberEvent::Resubscribed`], and goes on
//! delivering messages. Pub/sub is fire-and-forget in Redis: messages published while the
//! connection was down are missed, which the event says.
//!
//! Reconnects follow the connection's backoff, which starts over only once a connection proved
//! healthy: a message or a `PONG` came (not a subscription confirmation, which every new
//! connection gets as it subscribes again), or it stayed up for
//! [`BackoffConfig::healthy_after`](crate::BackoffConfig::healthy_after). A server that
//! completes the handshake and closes is reconnected to no faster than one that refuses.
//!
//! Messages wait in a queue bounded in messages (the configuration's queue capacity) and in
//! bytes ([`ConnectionConfig::message_queue_bytes`]). When the application reads slower than
//! messages arrive, the subscriber stops reading the socket: memory stays bounded, and the
//! server applies its own output-buffer limit for pub/sub clients (it closes a subscriber too
//! far behind; this one then reconnects and subscribes again).
//!
//! Every write (subscription changes, the health-check `PING`) is bounded by the response
//! timeout, and only whole values from the server (a message, a confirmation, a `PONG`) count
//! as activity: a peer that stops reading, or that trickles bytes without ever completing a
//! value, is found by the health check and the connection replaced.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp_codec::{Decoder, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::connection::{open, prepare_tls, TlsPair};
use crate::events::{Event, EventSink};
use crate::reconnect::{reconnect, ReconnectSchedule, Reconnected, Reconnecting};
use crate::transport::Stream;
use crate::{Cmd, ConnectionConfig, Error, Sent, ServerAddr, ServerError};

/// What a subscription is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubscriptionKind {
    /// A channel (`SUBSCRIBE`).
    Channel,
    /// A glob-style pattern of channels (`PSUBSCRIBE`).
    Pattern,
    /// A shard channel (`SSUBSCRIBE`, Redis 7): in a cluster, served by its slot's shard.
    Shard,
}

impl SubscriptionKind {
    fn command(self, subscribe: bool) -> &'static str {
        match (self, subscribe) {
            (SubscriptionKind::Channel, true) => "SUBSCRIBE",
            (SubscriptionKind::Channel, false) => "UNSUBSCRIBE",
            (SubscriptionKind::Pattern, true) => "PSUBSCRIBE",
            (SubscriptionKind::Pattern, false) => "PUNSUBSCRIBE",
            (SubscriptionKind::Shard, true) => "SSUBSCRIBE",
            (SubscriptionKind::Shard, false) => "SUNSUBSCRIBE",
        }
    }

    /// The kind and direction of a confirmation (`subscribe`, `punsubscribe`...).
    fn of_confirmation(word: &[u8]) -> Option<(SubscriptionKind, bool)> {
        let lower = word.to_ascii_lowercase();
        Some(match lower.as_slice() {
            b"subscribe" => (SubscriptionKind::Channel, true),
            b"unsubscribe" => (SubscriptionKind::Channel, false),
            b"psubscribe" => (SubscriptionKind::Pattern, true),
            b"punsubscribe" => (SubscriptionKind::Pattern, false),
            b"ssubscribe" => (SubscriptionKind::Shard, true),
            b"sunsubscribe" => (SubscriptionKind::Shard, false),
            _ => return None,
        })
    }
}

/// A published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// How it matched: a channel, a pattern, or a shard channel subscription.
    pub kind: SubscriptionKind,
    /// The channel it was published to.
    pub channel: Bytes,
    /// The pattern that matched, for [`SubscriptionKind::Pattern`].
    pub pattern: Option<Bytes>,
    /// The payload.
    pub payload: Bytes,
}

/// What a subscriber delivers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SubscriberEvent {
    /// A message.
    Message(Message),
    /// The server ended a subscription by itself: in a cluster, a shard channel whose slot moved
    /// to another shard (the cluster client subscribes to it there).
    Dropped {
        /// The kind (in practice [`SubscriptionKind::Shard`]).
        kind: SubscriptionKind,
        /// The channel.
        channel: Bytes,
    },
    /// The subscriber reconnected and subscribed again: messages published while it was
    /// disconnected were missed.
    Resubscribed {
        /// The server it is now connected to.
        addr: String,
        /// How long it was disconnected.
        downtime: Duration,
    },
}

/// Where to connect, asked before every connect: a fixed address, or the current master of a
/// sentinel deployment, or a node of the current cluster map.
pub type Locator = Arc<dyn Fn() -> ServerAddr + Send + Sync>;

#[derive(Debug, Default)]
struct Wanted {
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shards: BTreeSet<Bytes>,
}

impl Wanted {
    fn names_of(&mut self, kind: SubscriptionKind) -> &mut BTreeSet<Bytes> {
        match kind {
            SubscriptionKind::Channel => &mut self.channels,
            SubscriptionKind::Pattern => &mut self.patterns,
            SubscriptionKind::Shard => &mut self.shards,
        }
    }

    fn len(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shards.len()
    }
}

struct Shared {
    addr: Mutex<String>,
    wanted: Mutex<Wanted>,
    connected: AtomicBool,
    closed: AtomicBool,
    timeout: Duration,
    /// Bytes of the messages delivered to the queue and not yet read by the application.
    queued: QueuedBytes,
}

/// The byte budget of the message queue: the driver reserves a message's size before queueing
/// it (waiting while the budget is spent), the application's reads give it back.
#[derive(Debug)]
struct QueuedBytes {
    used: std::sync::atomic::AtomicUsize,
    max: usize,
    freed: tokio::sync::Notify,
}

impl QueuedBytes {
    fn new(max: usize) -> QueuedBytes {
        QueuedBytes {
            used: std::sync::atomic::AtomicUsize::new(0),
            max,
            freed: tokio::sync::Notify::new(),
        }
    }

    /// Waits until `size` more bytes fit (or nothing waits: one message larger than the
    /// budget still goes, alone), then counts them. One task reserves: the driver.
    async fn reserve(&self, size: usize) {
        loop {
            let freed = self.freed.notified();
            let used = self.used.load(Ordering::Acquire);
            if used == 0 || used.saturating_add(size) <= self.max {
                self.used.fetch_add(size, Ordering::AcqRel);
                return;
            }
            freed.await;
        }
    }

    fn release(&self, size: usize) {
        self.used.fetch_sub(size, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

/// What a message costs in the queue's byte budget.
fn message_size(m: &Message) -> usize {
    m.payload.len() + m.channel.len() + m.pattern.as_ref().map_or(0, Bytes::len)
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field(
                "addr",
                &*self.addr.lock().unwrap_or_else(|e| e.into_inner()),
            )
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

enum Control {
    Change {
        kind: SubscriptionKind,
        subscribe: bool,
        names: Vec<Bytes>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    Relocate,
    Close,
}

/// The cloneable control side of a [`Subscriber`]: subscribe, unsubscribe, relocate, close.
#[derive(Debug, Clone)]
pub struct SubscriberHandle {
    tx: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared>,
}

/// A pub/sub connection: subscribe through it (it derefs to its [`SubscriberHandle`]) and read
/// what arrives with [`Subscriber::next_message`] or [`Subscriber::next_event`].
///
/// ```no_run
/// # async fn demo() -> Result<(), redis_conn::Error> {
/// use redis_conn::{ConnectionConfig, ServerAddr, Subscriber};
///
/// let mut sub = Subscriber::connect(ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 6379))).await?;
/// sub.subscribe(["news", "alerts"]).await?;
/// sub.psubscribe(["user:*"]).await?;
/// while let Some(msg) = sub.next_message().await {
///     println!("{:?}: {:?}", msg.channel, msg.payload);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscriber {
    handle: SubscriberHandle,
    rx: mpsc::Receiver<SubscriberEvent>,
}

impl std::ops::Deref for Subscriber {
    type Target = SubscriberHandle;

    fn deref(&self) -> &SubscriberHandle {
        &self.handle
    }
}

impl Subscriber {
    /// Connects to the configured server. The first connection is not retried: its error is
    /// returned.
    ///
    /// # Errors
    /// As [`crate::Connection::connect`].
    pub async fn connect(config: ConnectionConfig) -> Result<Subscriber, Error> {
        Subscriber::connect_located(config, None).await
    }

    /// Connects to where `locator` says, asking it again before every reconnect (a sentinel
    /// deployment's current master, a node of the current cluster map).
    ///
    /// # Errors
    /// As [`crate::Connection::connect`].
    pub async fn connect_located(
        config: ConnectionConfig,
        locator: Option<Locator>,
    ) -> Result<Subscriber, Error> {
        let config = match &locator {
            Some(locate) => config.with_addr(locate()),
            None => config,
        };
        let addr = config.addr().to_string();
        let tls = prepare_tls(&config, &addr)?;
        let (stream, buf, decoder) = open(&config, tls.as_ref(), &addr).await?;
        let events = EventSink::new(&config.callbacks);
        events.emit(Event::Connected { addr: addr.clone() });
        let shared = Arc::new(Shared {
            addr: Mutex::new(addr),
            wanted: Mutex::new(Wanted::default()),
            connected: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            timeout: config.response_timeout,
            queued: QueuedBytes::new(config.message_queue_bytes),
        });
        let (tx, ctl) = mpsc::unbounded_channel();
        let (out, rx) = mpsc::channel(config.queue_capacity);
        let driver = Driver {
            schedule: ReconnectSchedule::new(config.backoff, Instant::now()),
            config,
            locator,
            tls,
            shared: Arc::clone(&shared),
            ctl,
            out,
            events,
            waiting: VecDeque::new(),
            deferred: Vec::new(),
        };
        tokio::spawn(driver.run(stream, buf, decoder));
        Ok(Subscriber {
            handle: SubscriberHandle { tx, shared },
            rx,
        })
    }

    /// The next message; `None` once the subscriber is closed (by [`SubscriberHandle::close`],
    /// or after giving up reconnecting). Other events are skipped (reconnects show in the
    /// connection's events as well).
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            match self.next_event().await? {
                SubscriberEvent::Message(m) => return Some(m),
                other => tracing::debug!(event = ?other, "subscriber event"),
            }
        }
    }

    /// The next message or other event; `None` once the subscriber is closed.
    pub async fn next_event(&mut self) -> Option<SubscriberEvent> {
        let event = self.rx.recv().await?;
        if let SubscriberEvent::Message(m) = &event {
            self.handle.shared.queued.release(message_size(m));
        }
        Some(event)
    }

    /// Bytes of messages received and not read yet (at most about
    /// [`ConnectionConfig::message_queue_bytes`]).
    pub fn queued_bytes(&self) -> usize {
        self.handle.shared.queued.used.load(Ordering::Acquire)
    }

    /// A cloneable handle, for subscribing from other tasks while this one reads.
    pub fn handle(&self) -> SubscriberHandle {
        self.handle.clone()
    }
}

impl SubscriberHandle {
    /// Subscribes to channels and waits for the server's confirmation.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the confirmation does not come within the response timeout (the
    /// subscription stays wanted and is made after the reconnect); [`Error::Server`] when the
    /// server refuses; [`Error::Closed`].
    pub async fn subscribe<I, N>(&self, channels: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        self.change(SubscriptionKind::Channel, true, channels).await
    }

    /// Subscribes to channel patterns (`news.*`).
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn psubscribe<I, N>(&self, patterns: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        self.change(SubscriptionKind::Pattern, true, patterns).await
    }

    /// Subscribes to shard channels (Redis 7). In a cluster every channel of one call must hash
    /// to the same slot, and this connection must be to that slot's shard; the cluster client
    /// takes care of both.
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn ssubscribe<I, N>(&self, channels: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        self.change(SubscriptionKind::Shard, true, channels).await
    }

    /// Unsubscribes from channels.
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn unsubscribe<I, N>(&self, channels: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        self.change(SubscriptionKind::Channel, false, channels)
            .await
    }

    /// Unsubscribes from patterns.
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn punsubscribe<I, N>(&self, patterns: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        self.change(SubscriptionKind::Pattern, false, patterns)
            .await
    }

    /// Unsubscribes from shard channels.
    ///
    /// # Errors
    /// As [`SubscriberHandle::subscribe`].
    pub async fn sunsubscribe<I, N>(&self, channels: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        self.change(SubscriptionKind::Shard, false, channels).await
    }

    async fn change<I, N>(
        &self,
        kind: SubscriptionKind,
        subscribe: bool,
        names: I,
    ) -> Result<(), Error>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        let names: Vec<Bytes> = names
            .into_iter()
            .map(|n| Bytes::copy_from_slice(n.as_ref()))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        {
            // The wanted set changes now, so that a reconnect in between still makes it.
            let mut wanted = self.shared.wanted.lock().unwrap_or_else(|e| e.into_inner());
            let set = wanted.names_of(kind);
            for name in &names {
                if subscribe {
                    set.insert(name.clone());
                } else {
                    set.remove(name);
                }
            }
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Control::Change {
                kind,
                subscribe,
                names,
                done,
            })
            .map_err(|_| closed())?;
        match tokio::time::timeout(self.shared.timeout, wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(Error::Timeout {
                timeout: self.shared.timeout,
                sent: Sent::Maybe,
            }),
        }
    }

    /// Everything subscribed to (or wanted, while disconnected), by kind.
    pub fn subscriptions(&self) -> Vec<(SubscriptionKind, Bytes)> {
        let wanted = self.shared.wanted.lock().unwrap_or_else(|e| e.into_inner());
        let tag =
            |kind, set: &BTreeSet<Bytes>| set.iter().map(|n| (kind, n.clone())).collect::<Vec<_>>();
        let mut all = tag(SubscriptionKind::Channel, &wanted.channels);
        all.extend(tag(SubscriptionKind::Pattern, &wanted.patterns));
        all.extend(tag(SubscriptionKind::Shard, &wanted.shards));
        all
    }

    /// Drops the connection and connects again to where the locator now says (or the same
    /// server), subscribing to everything again. A sentinel client calls it after a failover.
    pub fn relocate(&self) {
        let _ = self.tx.send(Control::Relocate);
    }

    /// Closes the subscriber: the message stream ends.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let _ = self.tx.send(Control::Close);
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// Whether the subscriber is closed for good.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The server connected to (or last connected to).
    pub fn addr(&self) -> String {
        self.shared
            .addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn closed() -> Error {
    Error::Closed {
        reason: "the subscriber is closed".into(),
    }
}

/// A command written and waiting for its confirmations (one per name) or an error reply.
struct Waiting {
    kind: SubscriptionKind,
    subscribe: bool,
    left: usize,
    /// Who waits for it: its caller, or (for the resubscription after a reconnect) the callers
    /// whose changes came in while disconnected.
    done: Waiters,
}

/// What arrived on the connection.
enum Incoming {
    Message(Message),
    Confirmation {
        kind: SubscriptionKind,
        subscribe: bool,
        name: Option<Bytes>,
    },
    Pong,
    Error(Bytes),
    Other,
}

fn classify(value: Value) -> Incoming {
    let items = match value {
        Value::Push(items) | Value::Array(items) => items,
        Value::SimpleString(s) if s.eq_ignore_ascii_case(b"PONG") => return Incoming::Pong,
        Value::Error(e) => return Incoming::Error(e),
        _ => return Incoming::Other,
    };
    let bytes = |i: usize| items.get(i).and_then(Value::as_bytes).cloned();
    let Some(word) = bytes(0) else {
        return Incoming::Other;
    };
    let lower = word.to_ascii_lowercase();
    let message =
        |kind, pattern, channel: Option<Bytes>, payload: Option<Bytes>| match (channel, payload) {
            (Some(channel), Some(payload)) => Incoming::Message(Message {
                kind,
                channel,
                pattern,
                payload,
            }),
            _ => Incoming::Other,
        };
    match lower.as_slice() {
        b"message" => message(SubscriptionKind::Channel, None, bytes(1), bytes(2)),
        b"smessage" => message(SubscriptionKind::Shard, None, bytes(1), bytes(2)),
        b"pmessage" => message(SubscriptionKind::Pattern, bytes(1), bytes(2), bytes(3)),
        b"pong" => Incoming::Pong,
        _ => match SubscriptionKind::of_confirmation(&word) {
            Some((kind, subscribe)) => Incoming::Confirmation {
                kind,
                subscribe,
                name: bytes(1),
            },
            None => Incoming::Other,
        },
    }
}

/// A subscription command to write, and who waits for its confirmation.
struct ChangeCmd {
    kind: SubscriptionKind,
    subscribe: bool,
    names: Vec<Bytes>,
    waiters: Waiters,
}

impl ChangeCmd {
    fn new(kind: SubscriptionKind, subscribe: bool, names: Vec<Bytes>, waiters: Waiters) -> Self {
        ChangeCmd {
            kind,
            subscribe,
            names,
            waiters,
        }
    }
}

/// Why serving stopped.
enum Exit {
    Closed,
    Broken(String),
    Relocate,
}

/// A new connection: transport, read buffer, decoder.
type Opened = (Stream, BytesMut, Decoder);

/// Callers waiting for a subscription change to be confirmed.
type Waiters = Vec<oneshot::Sender<Result<(), Error>>>;

struct Driver {
    config: ConnectionConfig,
    locator: Option<Locator>,
    tls: Option<TlsPair>,
    shared: Arc<Shared>,
    ctl: mpsc::UnboundedReceiver<Control>,
    out: mpsc::Sender<SubscriberEvent>,
    events: EventSink,
    /// Commands written, waiting for their confirmations, oldest first.
    waiting: VecDeque<Waiting>,
    /// When to reconnect: the backoff, started over only by a connection that proved healthy
    /// (a message or a `PONG` came, or it stayed up long enough; a confirmation does not count).
    schedule: ReconnectSchedule,
    /// Callers of subscription changes made while disconnected: answered once the next
    /// connection has subscribed again (their changes are already in the wanted set).
    deferred: Waiters,
}

impl Driver {
    async fn run(mut self, stream: Stream, buf: BytesMut, decoder: Decoder) {
        let mut opened = (stream, buf, decoder);
        let mut down_since: Option<Instant> = None;
        loop {
            self.shared.connected.store(true, Ordering::Release);
            let resubscribed = down_since.map(|t| t.elapsed());
            let deferred = std::mem::take(&mut self.deferred);
            let exit = self.serve(opened, resubscribed, deferred).await;
            self.shared.connected.store(false, Ordering::Release);
            self.fail_unconfirmed();
            let reason = match exit {
                Exit::Closed => return self.shut("the subscriber was closed"),
                Exit::Broken(reason) => reason,
                Exit::Relocate => "moving to another server".to_string(),
            };
            tracing::info!(addr = %self.addr(), reason = %reason, "subscriber disconnected; reconnecting");
            self.events.emit(Event::Disconnected {
                addr: self.addr(),
                reason,
            });
            let since = Instant::now();
            // Subscription changes that arrive meanwhile are already in the wanted set; their
            // callers wait in `deferred` for the next connection to subscribe again.
            opened = match reconnect(&mut self, since).await {
                Reconnected::Up(opened) => opened,
                Reconnected::GaveUp(reason) => {
                    tracing::warn!(addr = %self.addr(), reason = %reason, "subscriber gave up reconnecting");
                    return self.shut("the subscriber was closed");
                }
                Reconnected::Closed => return self.shut("the subscriber was closed"),
            };
            down_since = Some(since);
        }
    }

    /// Nothing written on the old connection will be confirmed: its callers learn that it
    /// broke.
    fn fail_unconfirmed(&mut self) {
        let addr = self.addr();
        for w in self.waiting.drain(..) {
            for done in w.done {
                let _ = done.send(Err(Error::ConnectionLost {
                    addr: addr.clone(),
                    reason: "the subscriber's connection broke".into(),
                    sent: Sent::Maybe,
                }));
            }
        }
    }

    fn addr(&self) -> String {
        self.shared
            .addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn shut(mut self, reason: &str) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.connected.store(false, Ordering::Release);
        self.ctl.close();
        while let Ok(control) = self.ctl.try_recv() {
            if let Control::Change { done, .. } = control {
                let _ = done.send(Err(closed()));
            }
        }
        self.events.emit(Event::Closed {
            addr: self.addr(),
            reason: reason.to_string(),
        });
    }

    /// Writes `cmds` and records the confirmations they wait for.
    async fn write(&mut self, stream: &mut Stream, cmds: Vec<ChangeCmd>) -> Result<(), String> {
        let mut out = BytesMut::new();
        for ChangeCmd {
            kind,
            subscribe,
            names,
            waiters: done,
        } in cmds
        {
            let mut cmd = Cmd::new(kind.command(subscribe));
            for name in &names {
                cmd.push_arg(name);
            }
            cmd.write_to(&mut out);
            self.waiting.push_back(Waiting {
                kind,
                subscribe,
                left: names.len(),
                done,
            });
        }
        if out.is_empty() {
            return Ok(());
        }
        write_within(stream, &out, self.config.response_timeout).await
    }

    /// Handles one value from the server; `Err` when the connection must go.
    async fn handle_value(&mut self, value: Value, liveness: &mut Liveness) -> Result<(), Exit> {
        let incoming = classify(value);
        // A message or a PONG (to a health check, sent after an idle interval): the server
        // serves this subscriber. Not a confirmation: every connection starts by
        // re-subscribing, so a confirmation is part of setting it up, as the handshake is, and
        // a server that confirms and closes would otherwise get reconnects without backoff.
        if matches!(incoming, Incoming::Message(_) | Incoming::Pong) {
            self.schedule.served();
        }
        match incoming {
            Incoming::Message(m) => {
                // The byte budget first (the socket is not read meanwhile), then a place in
                // the queue; an application that went away ends both waits.
                let size = message_size(&m);
                tokio::select! {
                    () = self.shared.queued.reserve(size) => {}
                    () = self.out.closed() => return Err(Exit::Closed),
                }
                if self.out.send(SubscriberEvent::Message(m)).await.is_err() {
                    return Err(Exit::Closed);
                }
            }
            Incoming::Confirmation {
                kind,
                subscribe,
                name,
            } => {
                let expected = self
                    .waiting
                    .front()
                    .is_some_and(|w| w.kind == kind && w.subscribe == subscribe);
                if expected {
                    if let Some(front) = self.waiting.front_mut() {
                        front.left = front.left.saturating_sub(1);
                        if front.left == 0 {
                            for done in self.waiting.pop_front().map(|w| w.done).unwrap_or_default()
                            {
                                let _ = done.send(Ok(()));
                            }
                        }
                    }
                } else if !subscribe {
                    // Unasked: the server ended the subscription (a shard channel's slot left
                    // this node).
                    if let Some(channel) = name {
                        self.shared
                            .wanted
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .names_of(kind)
                            .remove(&channel);
                        let dropped = SubscriberEvent::Dropped { kind, channel };
                        if self.out.send(dropped).await.is_err() {
                            return Err(Exit::Closed);
                        }
                    }
                }
            }
            Incoming::Pong => liveness.ponged(),
            Incoming::Error(e) => {
                let error = ServerError::new(e);
                match self.waiting.pop_front() {
                    Some(w) => {
                        for done in w.done {
                            let _ = done.send(Err(Error::Server(error.clone())));
                        }
                    }
                    None => tracing::warn!(error = %error, "unexpected error on a subscriber"),
                }
            }
            Incoming::Other => {}
        }
        Ok(())
    }

    /// Serves one connection: subscribes to the wanted set, then delivers messages and applies
    /// changes until it breaks, is closed or must move.
    async fn serve(
        &mut self,
        opened: Opened,
        resubscribed: Option<Duration>,
        deferred: Waiters,
    ) -> Exit {
        let (mut stream, mut rbuf, mut decoder) = opened;
        let addr = self.addr();
        if let Err(exit) = self
            .subscribe_again(&mut stream, &addr, resubscribed, deferred)
            .await
        {
            return exit;
        }
        let mut liveness = Liveness::new(
            self.config.health_check_interval,
            self.config.response_timeout,
            Instant::now(),
        );
        loop {
            if let Err(exit) = self
                .handle_buffered(&mut decoder, &mut rbuf, &addr, &mut liveness)
                .await
            {
                return exit;
            }
            if rbuf.capacity() - rbuf.len() < 4096 {
                rbuf.reserve(16 * 1024);
            }
            let wake = liveness.wake_at();
            let step = tokio::select! {
                read = stream.read_buf(&mut rbuf) => match read {
                    Ok(0) => Err(Exit::Broken("closed by the server".into())),
                    Ok(_) => Ok(()),
                    Err(e) => Err(Exit::Broken(format!("read failed: {e}"))),
                },
                control = self.ctl.recv() => self.apply(control, &mut stream).await,
                () = sleep_until_opt(wake) => self.check_health(&mut stream, &mut liveness).await,
                () = self.out.closed() => Err(Exit::Closed),
            };
            if let Err(exit) = step {
                return exit;
            }
        }
    }

    /// Subscribes a new connection to everything wanted; `deferred` callers (changes made
    /// while disconnected) wait for the last confirmation. After a reconnect, reports it.
    async fn subscribe_again(
        &mut self,
        stream: &mut Stream,
        addr: &str,
        resubscribed: Option<Duration>,
        deferred: Waiters,
    ) -> Result<(), Exit> {
        let (mut cmds, count) = {
            let wanted = self.shared.wanted.lock().unwrap_or_else(|e| e.into_inner());
            (resubscriptions(&wanted), wanted.len())
        };
        // Changes asked for while disconnected are in the wanted set: their callers wait for the
        // last of these confirmations (or for nothing, when nothing is wanted any more).
        match cmds.last_mut() {
            Some(last) => last.waiters = deferred,
            None => {
                for done in deferred {
                    let _ = done.send(Ok(()));
                }
            }
        }
        self.write(stream, cmds).await.map_err(Exit::Broken)?;
        let Some(downtime) = resubscribed else {
            return Ok(());
        };
        self.events.emit(Event::Resubscribed {
            addr: addr.to_string(),
            subscriptions: count,
        });
        let event = SubscriberEvent::Resubscribed {
            addr: addr.to_string(),
            downtime,
        };
        self.out.send(event).await.map_err(|_| Exit::Closed)
    }

    /// Handles every whole value in the read buffer.
    async fn handle_buffered(
        &mut self,
        decoder: &mut Decoder,
        rbuf: &mut BytesMut,
        addr: &str,
        liveness: &mut Liveness,
    ) -> Result<(), Exit> {
        loop {
            match decoder.decode(rbuf) {
                Ok(Some(value)) => {
                    // Whole values are activity; bytes alone (a value that never ends) do not
                    // put the health check off.
                    liveness.heard(Instant::now());
                    self.handle_value(value, liveness).await?;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    let error = Error::Protocol {
                        addr: addr.to_string(),
                        source: e,
                    };
                    self.events.emit(Event::Error {
                        addr: addr.to_string(),
                        error: error.clone(),
                    });
                    return Err(Exit::Broken(error.to_string()));
                }
            }
        }
    }

    /// Applies what the handle asked for.
    async fn apply(&mut self, control: Option<Control>, stream: &mut Stream) -> Result<(), Exit> {
        match control {
            None | Some(Control::Close) => Err(Exit::Closed),
            Some(Control::Relocate) => Err(Exit::Relocate),
            Some(Control::Change {
                kind,
                subscribe,
                names,
                done,
            }) => {
                let cmds = change_commands(kind, subscribe, names, done);
                self.write(stream, cmds).await.map_err(Exit::Broken)
            }
        }
    }

    /// The health check's timer fired: pings, or finds the connection hung.
    async fn check_health(
        &mut self,
        stream: &mut Stream,
        liveness: &mut Liveness,
    ) -> Result<(), Exit> {
        let now = Instant::now();
        match liveness.on_timer(now) {
            HealthStep::Wait => Ok(()),
            HealthStep::Hung => Err(Exit::Broken(format!(
                "no reply to a health check within {:?}: the connection is considered hung",
                liveness.patience
            ))),
            HealthStep::Ping => {
                let mut out = BytesMut::new();
                Cmd::new("PING").write_to(&mut out);
                write_within(stream, &out, liveness.patience)
                    .await
                    .map_err(Exit::Broken)?;
                liveness.pinged(now);
                Ok(())
            }
        }
    }
}

/// The commands that subscribe a new connection to everything wanted, nobody waiting for them
/// yet. Shard channels one per command: in a cluster, shard channels of one command must share
/// a slot, and this layer knows no slots.
fn resubscriptions(wanted: &Wanted) -> Vec<ChangeCmd> {
    let mut cmds = Vec::new();
    for (kind, set) in [
        (SubscriptionKind::Channel, &wanted.channels),
        (SubscriptionKind::Pattern, &wanted.patterns),
    ] {
        if !set.is_empty() {
            let names = set.iter().cloned().collect();
            cmds.push(ChangeCmd::new(kind, true, names, Vec::new()));
        }
    }
    for name in &wanted.shards {
        let names = vec![name.clone()];
        cmds.push(ChangeCmd::new(
            SubscriptionKind::Shard,
            true,
            names,
            Vec::new(),
        ));
    }
    cmds
}

/// The commands for a change asked for by a caller: shard channels one per command, as on
/// resubscribe, the caller answered when the last is confirmed; other kinds in one command.
fn change_commands(
    kind: SubscriptionKind,
    subscribe: bool,
    names: Vec<Bytes>,
    done: oneshot::Sender<Result<(), Error>>,
) -> Vec<ChangeCmd> {
    if kind != SubscriptionKind::Shard || names.len() <= 1 {
        return vec![ChangeCmd::new(kind, subscribe, names, vec![done])];
    }
    let last = names.len() - 1;
    let mut done = Some(done);
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let d = if i == last { done.take() } else { None };
            ChangeCmd::new(kind, subscribe, vec![n], d.into_iter().collect())
        })
        .collect()
}

/// What the health check does when its timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HealthStep {
    /// Nothing yet (a ping is out, its reply not yet due).
    Wait,
    /// Send a `PING`.
    Ping,
    /// The ping went unanswered for the response timeout.
    Hung,
}

/// The subscriber's health check: after an idle interval without a whole value from the
/// server, a `PING`, whose `PONG` must come within the response timeout.
#[derive(Debug)]
struct Liveness {
    interval: Option<Duration>,
    patience: Duration,
    /// The last whole value from the server, or the last ping.
    last_activity: Instant,
    /// When the `PONG` to the ping out is due.
    pong_due: Option<Instant>,
}

impl Liveness {
    fn new(interval: Option<Duration>, patience: Duration, now: Instant) -> Liveness {
        Liveness {
            interval,
            patience,
            last_activity: now,
            pong_due: None,
        }
    }

    /// When the timer should fire: the due `PONG`, or the end of the idle interval.
    fn wake_at(&self) -> Option<Instant> {
        match (self.pong_due, self.interval) {
            (Some(due), _) => Some(due),
            (None, Some(interval)) => Some(self.last_activity + interval),
            (None, None) => None,
        }
    }

    /// A whole value came at `now`.
    fn heard(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// The `PONG` came.
    fn ponged(&mut self) {
        self.pong_due = None;
    }

    /// The timer fired at `now`.
    fn on_timer(&self, now: Instant) -> HealthStep {
        match self.pong_due {
            Some(due) if due <= now => HealthStep::Hung,
            Some(_) => HealthStep::Wait,
            None => HealthStep::Ping,
        }
    }

    /// A `PING` was written at `now`.
    fn pinged(&mut self, now: Instant) {
        self.pong_due = Some(now + self.patience);
        self.last_activity = now;
    }
}

impl Reconnecting for Driver {
    type Opened = Opened;
    const WHAT: &'static str = "subscriber's connection";

    fn schedule(&mut self) -> &mut ReconnectSchedule {
        &mut self.schedule
    }

    fn events(&self) -> &EventSink {
        &self.events
    }

    fn addr(&self) -> String {
        Driver::addr(self)
    }

    /// Connects to where the locator now says (or the configured server).
    async fn attempt(&mut self) -> Option<(String, Result<Opened, Error>)> {
        let config = match &self.locator {
            Some(locate) => self.config.with_addr(locate()),
            None => self.config.clone(),
        };
        let addr = config.addr().to_string();
        *self.shared.addr.lock().unwrap_or_else(|e| e.into_inner()) = addr.clone();
        let opened = open(&config, self.tls.as_ref(), &addr).await;
        Some((addr, opened))
    }

    /// Waits `delay` while disconnected, keeping the callers of subscription changes that come
    /// meanwhile in `deferred`. False when the subscriber was closed meanwhile.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                control = self.ctl.recv() => match control {
                    None | Some(Control::Close) => return false,
                    Some(Control::Relocate) => {}
                    Some(Control::Change { done, .. }) => self.deferred.push(done),
                },
                () = self.out.closed() => return false,
            }
        }
    }
}

/// Writes `bytes` within `timeout`: a peer that stops reading (its window full) cannot hold
/// the subscriber in a write forever.
async fn write_within(stream: &mut Stream, bytes: &[u8], timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err(format!(
            "a write did not complete within {timeout:?}: the server is not reading"
        )),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_new_connection_subscribes_to_everything_shard_channels_one_by_one() {
        let mut wanted = Wanted::default();
        assert!(resubscriptions(&wanted).is_empty());
        for (kind, name) in [
            (SubscriptionKind::Channel, "a"),
            (SubscriptionKind::Channel, "b"),
            (SubscriptionKind::Pattern, "p*"),
            (SubscriptionKind::Shard, "s1"),
            (SubscriptionKind::Shard, "s2"),
        ] {
            wanted.names_of(kind).insert(Bytes::from(name));
        }
        let cmds: Vec<_> = resubscriptions(&wanted)
            .into_iter()
            .map(|c| (c.kind, c.subscribe, c.names.len(), c.waiters.len()))
            .collect();
        assert_eq!(
            cmds,
            [
                (SubscriptionKind::Channel, true, 2, 0),
                (SubscriptionKind::Pattern, true, 1, 0),
                (SubscriptionKind::Shard, true, 1, 0),
                (SubscriptionKind::Shard, true, 1, 0),
            ]
        );
    }

    #[test]
    fn a_change_of_shard_channels_is_one_command_each_answered_with_the_last() {
        let names = || vec![Bytes::from("x"), Bytes::from("y"), Bytes::from("z")];
        let (done, _wait) = oneshot::channel();
        let cmds = change_commands(SubscriptionKind::Shard, false, names(), done);
        let waiters: Vec<_> = cmds
            .iter()
            .map(|c| (c.names.len(), c.waiters.len()))
            .collect();
        assert_eq!(waiters, [(1, 0), (1, 0), (1, 1)]);
        let (done, _wait) = oneshot::channel();
        let cmds = change_commands(SubscriptionKind::Channel, true, names(), done);
        assert_eq!(cmds.len(), 1);
        assert_eq!((cmds[0].names.len(), cmds[0].waiters.len()), (3, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_health_check_pings_when_idle_and_finds_a_missing_pong() {
        let start = Instant::now();
        let mut liveness = Liveness::new(Some(10 * SECOND), SECOND, start);
        assert_eq!(liveness.wake_at(), Some(start + 10 * SECOND));
        liveness.heard(start + 5 * SECOND);
        assert_eq!(liveness.wake_at(), Some(start + 15 * SECOND));
        let at = start + 15 * SECOND;
        assert_eq!(liveness.on_timer(at), HealthStep::Ping);
        liveness.pinged(at);
        assert_eq!(liveness.wake_at(), Some(at + SECOND));
        // Values other than the PONG do not answer the ping.
        liveness.heard(at + SECOND / 2);
        assert_eq!(liveness.on_timer(at + SECOND / 2), HealthStep::Wait);
        assert_eq!(liveness.on_timer(at + SECOND), HealthStep::Hung);
        liveness.ponged();
        assert_eq!(liveness.wake_at(), Some(at + SECOND / 2 + 10 * SECOND));
        let off = Liveness::new(None, SECOND, start);
        assert_eq!(off.wake_at(), None);
    }
}
