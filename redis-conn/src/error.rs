//! Errors: who caused them (server reply, transport, peer, caller) and, for requests, whether the
//! command may have been executed.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// Whether a request's bytes may have reached the server when it failed.
///
/// This is what makes retries honest: a command that was never written can always be sent again;
/// one that may have been written and got no reply may have been executed, so a command that is
/// not retry-safe (INCR, LPUSH, SET NX) in that state is reported to the caller, not silently
/// resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Not a byte of the request was written: the server cannot have executed it.
    No,
    /// Some or all of it was written: the server may have executed it.
    Maybe,
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sent::No => "the command was not sent",
            Sent::Maybe => "the command may have been executed",
        })
    }
}

/// An error reply from the server (`-ERR ...`, `-MOVED 3999 127.0.0.1:6381`).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerError {
    message: Bytes,
}

impl ServerError {
    /// Wraps an error reply's message.
    pub fn new(message: Bytes) -> Self {
        ServerError { message }
    }

    /// The first word: `ERR`, `WRONGTYPE`, `MOVED`, `LOADING`...
    pub fn code(&self) -> &str {
        let end = self
            .message
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(self.message.len());
        std::str::from_utf8(&self.message[..end]).unwrap_or("")
    }

    /// The whole message, code included.
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.message).into_owned()
    }

    /// The raw message bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.message
    }

    /// Errors that say the server did not execute the command and that it may be tried again
    /// after a pause: `LOADING`, `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`, `BUSY` (a script is
    /// running).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            "LOADING" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "BUSY"
        )
    }

    /// `NOAUTH`, `WRONGPASS`, `NOPERM`: credentials or permissions, which retrying does not fix.
    pub fn is_auth(&self) -> bool {
        matches!(self.code(), "NOAUTH" | "WRONGPASS" | "NOPERM")
    }

    /// `MOVED <slot> <host:port>`: the slot lives elsewhere (cluster).
    pub fn is_moved(&self) -> bool {
        self.code() == "MOVED"
    }

    /// `ASK <slot> <host:port>`: the slot is migrating (cluster).
    pub fn is_ask(&self) -> bool {
        self.code() == "ASK"
    }

    /// `READONLY`: a write reached a replica (the node was demoted).
    pub fn is_readonly(&self) -> bool {
        self.code() == "READONLY"
    }
}

impl fmt::Debug for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerError({:?})", self.message())
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Everything that can go wrong talking to one server.
///
/// Display texts are for people; match on the variants and use the predicates
/// ([`Error::sent`], [`Error::is_timeout`]) in code.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP (or Unix socket) connection could not be opened.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The endpoint.
        addr: String,
        /// The operating system's reason.
        reason: String,
    },
    /// Opening the connection (TCP, TLS and handshake) took longer than the connect timeout.
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The endpoint.
        addr: String,
        /// The connect timeout in force.
        timeout: Duration,
    },
    /// The TLS handshake failed (unknown CA, wrong host name, expired certificate, rejected client
    /// certificate...).
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// The endpoint.
        addr: String,
        /// rustls's reason.
        reason: String,
    },
    /// The server refused the credentials. Permanent: retrying with the same ones will not help.
    #[error("authentication to {addr} failed: {message}")]
    Auth {
        /// The endpoint.
        addr: String,
        /// The server's message (it never contains the password).
        message: String,
    },
    /// The server refused another part of the connection handshake (`SELECT`, `CLIENT SETNAME`).
    #[error("connection handshake with {addr} failed: {message}")]
    Handshake {
        /// The endpoint.
        addr: String,
        /// The server's message.
        message: String,
    },
    /// The server answered the command with an error reply.
    #[error("{0}")]
    Server(ServerError),
    /// The connection broke before the reply arrived.
    #[error("connection to {addr} lost ({reason}); {sent}")]
    ConnectionLost {
        /// The endpoint.
        addr: String,
        /// Why it broke.
        reason: String,
        /// Whether the command may have been executed.
        sent: Sent,
    },
    /// No reply within the deadline.
    #[error("no reply within {timeout:?}; {sent}")]
    Timeout {
        /// The deadline that passed.
        timeout: Duration,
        /// Whether the command may have been executed.
        sent: Sent,
    },
    /// The request queue is full; nothing was sent.
    #[error("request queue full ({capacity} requests waiting); the command was not sent")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The server sent bytes that are not valid RESP, or broke a decoder limit. The connection
    /// was closed.
    #[error("invalid reply from {addr}: {source}")]
    Protocol {
        /// The endpoint.
        addr: String,
        /// What was wrong.
        source: resp_codec::DecodeError,
    },
    /// No exclusive connection (for a blocking command or a transaction) could be had from the
    /// node's pool within the pool's acquire timeout; nothing was sent.
    #[error("no exclusive connection to {addr} within {timeout:?}: timed out while {phase}; the command was not sent")]
    PoolTimeout {
        /// The endpoint.
        addr: String,
        /// What the pool was doing when time ran out.
        phase: redis_pool::TimeoutPhase,
        /// The pool's acquire timeout.
        timeout: Duration,
    },
    /// The connection was closed by the application (or a layer above, leaving a node that a
    /// failover or resharding retired), or gave up reconnecting. The request was not written:
    /// requests already written when a connection closes get their replies first.
    #[error("connection closed: {reason}; the command was not sent")]
    Closed {
        /// Why.
        reason: String,
    },
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The command cannot run on this kind of connection.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// For a failed request, whether the command may have been executed. `None` when the error
    /// is not about a request's delivery (a server error reply means it *was* executed and failed).
    ///
    /// A connection that was never made (refused, timed out, TLS or the handshake refused)
    /// carried nothing: `Sent::No`.
    pub fn sent(&self) -> Option<Sent> {
        match self {
            Error::ConnectionLost { sent, .. } | Error::Timeout { sent, .. } => Some(*sent),
            Error::QueueFull { .. }
            | Error::PoolTimeout { .. }
            | Error::Closed { .. }
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Tls { .. }
            | Error::Auth { .. }
            | Error::Handshake { .. } => Some(Sent::No),
            _ => None,
        }
    }

    /// The same failure for a request of which other parts may have run (a pipeline whose other
    /// commands went to other servers): whatever this error says of its own part, the request
    /// as a whole may have been executed, so a `Sent::No` becomes `Sent::Maybe`.
    #[must_use]
    pub fn partly_sent(self) -> Error {
        self.maybe_sent_because("other parts went elsewhere and may have run")
    }

    /// The same failure for a call of which an earlier attempt may have run (the connection
    /// broke after writing it, and a resend failed in turn): whatever the last attempt says
    /// of its own delivery, the call may have been executed. `Sent::Maybe` sticks to a call.
    #[must_use]
    pub fn after_an_attempt_that_may_have_run(self) -> Error {
        self.maybe_sent_because("an earlier attempt may have run")
    }

    fn maybe_sent_because(self, why: &str) -> Error {
        match self {
            Error::Timeout { timeout, .. } => Error::Timeout {
                timeout,
                sent: Sent::Maybe,
            },
            Error::ConnectionLost { addr, reason, .. } => Error::ConnectionLost {
                addr,
                reason,
                sent: Sent::Maybe,
            },
            other if other.sent() == Some(Sent::No) => Error::ConnectionLost {
                addr: String::new(),
                reason: format!("{other}, but {why}"),
                sent: Sent::Maybe,
            },
            other => other,
        }
    }

    /// A short, stable name of the variant (`"timeout"`, `"connection_lost"`, `"server"`...),
    /// for counters and logs that group errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Connect { .. } => "connect",
            Error::ConnectTimeout { .. } => "connect_timeout",
            Error::Tls { .. } => "tls",
            Error::Auth { .. } => "auth",
            Error::Handshake { .. } => "handshake",
            Error::Server(_) => "server",
            Error::ConnectionLost { .. } => "connection_lost",
            Error::Timeout { .. } => "timeout",
            Error::QueueFull { .. } => "queue_full",
            Error::Protocol { .. } => "protocol",
            Error::PoolTimeout { .. } => "pool_timeout",
            Error::Closed { .. } => "closed",
            Error::Config(_) => "config",
            Error::Unsupported(_) => "unsupported",
        }
    }

    /// `true` for [`Error::Timeout`], [`Error::ConnectTimeout`] and [`Error::PoolTimeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. } | Error::ConnectTimeout { .. } | Error::PoolTimeout { .. }
        )
    }

    /// `true` for failures of the connection rather than of the command: the server could not
    /// be reached, the connection broke or hung, or the client gave up on it. A retry on another
    /// connection (after a failover, say) may succeed.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::ConnectTimeout { .. }
                | Error::ConnectionLost { .. }
                | Error::Timeout { .. }
                | Error::Protocol { .. }
                | Error::Closed { .. }
        )
    }

    /// Errors that the same attempt will always meet again (bad credentials, TLS verification,
    /// bad configuration): a reconnect loop should back off to its ceiling and report them once.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::Auth { .. } | Error::Tls { .. } | Error::Config(_) | Error::Handshake { .. }
        )
    }

    /// The server error reply, if this is one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }
}
