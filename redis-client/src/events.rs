//! Events: what happened to the client's connections and topology, as callbacks and a stream.

use std::fmt;
use std::sync::Arc;

use redis_cluster::ClusterEvent;
use redis_sentinel::SentinelEvent;
use tokio::sync::broadcast;

/// Something that happened to the client: a connection's life (connect, disconnect, reconnect,
/// errors no caller saw, an exhausted pool, a resubscription), a cluster topology change, a
/// sentinel failover followed.
///
/// Delivered to the callbacks of the [`Config`](crate::Config) (on a thread of their own: a
/// slow callback delays other callbacks, never I/O) and to every receiver of
/// [`Client::events`](crate::Client::events).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A connection event (see [`redis_conn::Event`]).
    Connection(redis_conn::Event),
    /// A cluster topology event.
    Cluster(ClusterEvent),
    /// A sentinel event.
    Sentinel(SentinelEvent),
}

impl Event {
    /// The event's name, as `rcli --events` prints it: `connect`, `disconnect`, `reconnect`,
    /// `reconnect_failed`, `error`, `closed`, `pool_exhausted`, `resubscribed`,
    /// `topology_changed`, `topology_refresh_failed`, `failover`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Connection(e) => e.name(),
            Event::Cluster(e) => e.name(),
            Event::Sentinel(SentinelEvent::Failover { .. }) => "failover",
            Event::Sentinel(_) => "sentinel",
        }
    }

    /// The server the event is about, when it is about one.
    pub fn addr(&self) -> Option<&str> {
        use redis_conn::Event as C;
        match self {
            Event::Connection(
                C::Connected { addr }
                | C::Disconnected { addr, .. }
                | C::ReconnectFailed { addr, .. }
                | C::Reconnected { addr, .. }
                | C::Error { addr, .. }
                | C::Closed { addr, .. }
                | C::PoolExhausted { addr, .. }
                | C::Resubscribed { addr, .. },
            ) => Some(addr),
            Event::Sentinel(SentinelEvent::Failover { new, .. }) => Some(new),
            _ => None,
        }
    }
}

impl fmt::Display for Event {
    /// One line: the name, then what it is about.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use redis_conn::Event as C;
        f.write_str(self.name())?;
        match self {
            Event::Connection(C::Connected { addr }) => write!(f, " {addr}"),
            Event::Connection(C::Disconnected { addr, reason }) => write!(f, " {addr}: {reason}"),
            Event::Connection(C::ReconnectFailed {
                addr,
                attempt,
                error,
                next_delay,
            }) => write!(
                f,
                " {addr}: attempt {attempt} failed ({error}); next in {next_delay:?}"
            ),
            Event::Connection(C::Reconnected {
                addr,
                attempts,
                downtime,
            }) => write!(
                f,
                " {addr}: back after {attempts} attempt(s), down {downtime:?}"
            ),
            Event::Connection(C::Error { addr, error }) => write!(f, " {addr}: {error}"),
            Event::Connection(C::Closed { addr, reason }) => write!(f, " {addr}: {reason}"),
            Event::Connection(C::PoolExhausted { addr, waiting }) => {
                write!(f, " {addr}: {waiting} caller(s) waiting")
            }
            Event::Connection(C::Resubscribed {
                addr,
                subscriptions,
            }) => write!(f, " {addr}: {subscriptions} subscription(s)"),
            Event::Cluster(ClusterEvent::TopologyChanged {
                added,
                removed,
                moved_slots,
                uncovered_slots,
            }) => write!(
                f,
                " {} node(s) added, {} removed, {moved_slots} slot(s) moved, {uncovered_slots} \
                 uncovered",
                added.len(),
                removed.len()
            ),
            Event::Cluster(ClusterEvent::RefreshFailed { error }) => write!(f, " {error}"),
            Event::Sentinel(SentinelEvent::Failover { old, new }) => write!(f, " {old} -> {new}"),
            other => write!(f, " {other:?}"),
        }
    }
}

/// A callback for events.
pub type EventCallback = Arc<dyn Fn(&Event) + Send + Sync>;

/// Where a client's events go: callbacks (on their own thread), a broadcast stream, the log.
pub(crate) struct EventHub {
    stream: broadcast::Sender<Event>,
    callbacks: Option<std::sync::mpsc::SyncSender<Event>>,
    log: bool,
}

impl fmt::Debug for EventHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHub")
            .field("callbacks", &self.callbacks.is_some())
            .field("log", &self.log)
            .finish()
    }
}

/// Events waiting for slow callbacks beyond this are dropped rather than stall anything.
const CALLBACK_QUEUE: usize = 4096;

impl EventHub {
    pub(crate) fn new(handlers: &[(Option<&'static str>, EventCallback)], log: bool) -> EventHub {
        let (stream, _) = broadcast::channel(1024);
        let callbacks = if handlers.is_empty() {
            None
        } else {
            redis_conn::callback_thread(
                "redis-client-events",
                handlers.to_vec(),
                Event::name,
                CALLBACK_QUEUE,
            )
        };
        EventHub {
            stream,
            callbacks,
            log,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        if self.log {
            tracing::info!(event = event.name(), "{event}");
        }
        if let Some(tx) = &self.callbacks {
            let _ = tx.try_send(event.clone());
        }
        let _ = self.stream.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.stream.subscribe()
    }
}
