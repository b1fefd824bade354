//! Events: what happened to a connection, as callbacks and as a stream.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

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
        }
    }
}

/// A callback for events. It runs on a task of its own, so a slow callback delays other
/// callbacks, never I/O.
pub type EventCallback = Arc<dyn Fn(&Event) + Send + Sync>;

/// The callbacks set in a configuration.
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    pub(crate) handlers: Vec<(Option<&'static str>, EventCallback)>,
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
    callbacks: Option<mpsc::Sender<Event>>,
}

/// Events queued for callbacks beyond this are dropped (and counted as dropped by nobody: a
/// callback that slow is already missing its purpose).
const CALLBACK_QUEUE: usize = 1024;

impl EventSink {
    pub(crate) fn new(callbacks: &Callbacks) -> EventSink {
        let (stream, _) = broadcast::channel(256);
        let callbacks = (!callbacks.handlers.is_empty()).then(|| {
            let (tx, mut rx) = mpsc::channel::<Event>(CALLBACK_QUEUE);
            let handlers = callbacks.handlers.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    for (filter, handler) in &handlers {
                        if filter.is_none_or(|name| name == event.name()) {
                            let call = std::panic::AssertUnwindSafe(|| handler(&event));
                            if std::panic::catch_unwind(call).is_err() {
                                tracing::error!(event = event.name(), "event callback panicked");
                            }
                        }
                    }
                }
            });
            tx
        });
        EventSink { stream, callbacks }
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
