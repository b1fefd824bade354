//! Why a sentinel client could not serve a call, and whether the command may have run.

use redis_conn::Error;

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
