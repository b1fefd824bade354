//! Events: what happened to a connection, as callbacks and as a stream.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::Error;

/// Something that happened to a connection. Delivered to the callbacks in the configuration and
/// to every [`broadcast::Receiver`] from `Connection::events`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The first connection (TCP, TLS and handshake) succeeded.
    Connected {
        /// The endpoint.
        addr: String,
    },
    /// The connection broke; a reconnect loop starts.
    Disconnected {
        /// The endpoint.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A reconnect attempt failed; the next one comes after `next_delay`.
    ReconnectFailed {
        /// The endpoint.
        addr: String,
        /// Attempts made so far in this outage.
        attempt: u32,
        /// What went wrong.
        error: Error,
        /// The wait before the next attempt.
        next_delay: Duration,
    },
    /// The connection is back.
    Reconnected {
        /// The endpoint.
        addr: String,
        /// Attempts it took.
        attempts: u32,
        /// How long the connection was down.
        downtime: Duration,
    },
    /// An error worth reporting that no caller sees (a failed health check, a protocol error, a
    /// permanent error while reconnecting).
    Error {
        /// The endpoint.
        addr: String,
        /// The error.
        error: Error,
    },
    /// The connection gave up (attempt limit reached) or was closed.
    Closed {
        /// The endpoint.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Every exclusive connection to the node was in use and the pool at its cap: a caller had to
    /// wait (blocking commands, transactions).
    PoolExhausted {
        /// The endpoint.
        addr: String,
        /// Callers waiting, this one included.
        waiting: usize,
    },
    /// A subscriber connection came back and subscribed again to everything it had; messages
    /// published while it was down were missed.
    Resubscribed {
        /// The endpoint.
        addr: String,
        /// Channels, patterns and shard channels subscribed again.
        subscriptions: usize,
    },
}

impl Event {
    /// The event's name, as monitoring and `rcli --events` print it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Connected { .. } => "connect",
            Event::Disconnected { .. } => "disconnect",
            Event::ReconnectFailed { .. } => "reconnect_failed",
            Event::Reconnected { .. } => "reconnect",
            Event::Error { .. } => "error",
            Event::Closed { .. } => "closed",
            Event::PoolExhausted { .. } => "pool_exhausted",
            Event::Resubscribed { .. } => "resubscribed",
        }
    }
}

/// An event callback with its filter: called for every event when `None`, else for the events of
/// that name.
pub type Handler<E> = (Option<&'static str>, Arc<dyn Fn(&E) + Send + Sync>);

/// A callback for events. Callbacks run on a thread of their own, one event after another, so a
/// slow (even blocking) callback delays other callbacks, never I/O.
pub type EventCallback = Arc<dyn Fn(&Event) + Send + Sync>;

/// The callbacks set in a configuration, and the one thread that runs them for every connection
/// made from it (a cluster client's many connections share one thread, not one each).
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    handlers: Vec<(Option<&'static str>, EventCallback)>,
    /// Started on first use; shared by the clones of the configuration. A new handler starts a
    /// new one, so that a thread always runs the complete list.
    dispatcher: Arc<OnceLock<Option<std::sync::mpsc::SyncSender<Event>>>>,
}

impl Callbacks {
    pub(crate) fn push(&mut self, filter: Option<&'static str>, handler: EventCallback) {
        self.handlers.push((filter, handler));
        self.dispatcher = Arc::default();
    }

    /// The queue into the callback thread, started now if it is not yet; `None` without handlers.
    fn sender(&self) -> Option<std::sync::mpsc::SyncSender<Event>> {
        if self.handlers.is_empty() {
            return None;
        }
        self.dispatcher
            .get_or_init(|| {
                callback_thread(
                    "redis-conn-events",
                    self.handlers.clone(),
                    Event::name,
                    CALLBACK_QUEUE,
                )
            })
            .clone()
    }
}

/// Starts a thread that runs `handlers` for every event sent to the returned queue, one event
/// after another (a handler is called when its filter is `None` or names the event). A thread,
/// not a task: a handler that blocks must not block a runtime worker, and I/O never waits for
/// one. A panicking handler is logged and the others still run. The thread ends when every
/// sender is dropped. `None` when the thread cannot start (logged). The layers above run
/// their own events the same way.
pub fn callback_thread<E: Send + 'static>(
    thread: &str,
    handlers: Vec<Handler<E>>,
    name_of: fn(&E) -> &'static str,
    queue: usize,
) -> Option<std::sync::mpsc::SyncSender<E>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<E>(queue);
    let spawned = std::thread::Builder::new()
        .name(thread.to_string())
        .spawn(move || {
            for event in rx {
                for (filter, handler) in &handlers {
                    if filter.is_none_or(|name| name == name_of(&event)) {
                        let call = std::panic::AssertUnwindSafe(|| handler(&event));
                        if std::panic::catch_unwind(call).is_err() {
                            tracing::error!(event = name_of(&event), "event callback panicked");
                        }
                    }
                }
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the event callback thread");
            None
        }
    }
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} callback(s)", self.handlers.len())
    }
}

/// Where a connection's events go.
#[derive(Debug)]
pub(crate) struct EventSink {
    stream: broadcast::Sender<Event>,
    callbacks: Option<std::sync::mpsc::SyncSender<Event>>,
}

/// Events queued for callbacks beyond this are dropped: a callback that far behind is already
/// missing its purpose, and the connection must not wait for it.
const CALLBACK_QUEUE: usize = 1024;

impl EventSink {
    pub(crate) fn new(callbacks: &Callbacks) -> EventSink {
        let (stream, _) = broadcast::channel(256);
        EventSink {
            stream,
            callbacks: callbacks.sender(),
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        tracing::debug!(event = event.name(), detail = ?event, "redis connection event");
        if let Some(tx) = &self.callbacks {
            let _ = tx.try_send(event.clone());
        }
        let _ = self.stream.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.stream.subscribe()
    }
}
