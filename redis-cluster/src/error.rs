//! What a cluster call can fail with, and whether it may have run.

use redis_conn::Error;

use crate::NodeAddr;

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
    /// A task that carried part of the call (a node's share of a pipeline, one master's copy
    /// of a command sent to every master) panicked or was cancelled: that part may have run.
    #[error("a task of the call failed: {reason}; the command may have been executed")]
    TaskFailed {
        /// What the runtime said.
        reason: String,
    },
}

impl ClusterError {
    /// Whether the command may have run (see `redis_conn::Error::sent`). Errors found before
    /// anything was sent say `Sent::No`: a key spanning slots, a slot nobody serves, no usable
    /// topology, and a connection that could not be opened (refused, timed out, TLS or the
    /// handshake refused: the command never reached a server). So do too many redirects: every
    /// attempt was refused (`MOVED`, `ASK`), and an attempt that may have run ends the call
    /// with its own error instead of being redirected.
    pub fn sent(&self) -> Option<redis_conn::Sent> {
        match self {
            ClusterError::Node(e) if never_reached_a_server(e) => Some(redis_conn::Sent::No),
            ClusterError::Node(e) => e.sent(),
            ClusterError::CrossSlot { .. }
            | ClusterError::Unassigned { .. }
            | ClusterError::NoTopology(_)
            | ClusterError::TooManyRedirects { .. } => Some(redis_conn::Sent::No),
            ClusterError::TaskFailed { .. } => Some(redis_conn::Sent::Maybe),
            ClusterError::BadTopology { .. } => None,
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
            ClusterError::TaskFailed { .. } => "task_failed",
        }
    }

    /// The same failure for a request of which other parts may have run (see
    /// `redis_conn::Error::partly_sent`): whatever this error says of its own part, a
    /// `Sent::No` becomes `Sent::Maybe`. A slot nobody serves, no usable topology or keys
    /// spanning slots, met by a later command of a pipeline whose earlier commands ran, become
    /// the connection error redis-conn gives such a request (`ConnectionLost`, `Sent::Maybe`),
    /// their text kept: left as they are they would say `Sent::No`, safe to send again.
    #[must_use]
    pub fn partly_sent(self) -> ClusterError {
        match self {
            ClusterError::Node(e) => ClusterError::Node(e.partly_sent()),
            other if other.sent() == Some(redis_conn::Sent::No) => {
                ClusterError::Node(Error::ConnectionLost {
                    addr: String::new(),
                    reason: format!("{other}, but other parts went elsewhere and may have run"),
                    sent: redis_conn::Sent::Maybe,
                })
            }
            other => other,
        }
    }
}

/// Errors of a connection that could not be opened: the command was never written.
fn never_reached_a_server(error: &Error) -> bool {
    matches!(
        error,
        Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Tls { .. }
            | Error::Auth { .. }
            | Error::Handshake { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_conn::Sent;

    #[test]
    fn a_failure_beside_parts_that_ran_never_says_it_was_not_sent() {
        let found_before_sending = [
            ClusterError::Unassigned { slot: 7 },
            ClusterError::NoTopology("no node answered".into()),
            ClusterError::CrossSlot {
                command: "MGET".into(),
            },
            ClusterError::Node(Error::Connect {
                addr: "10.0.0.1:7000".into(),
                reason: "refused".into(),
            }),
        ];
        for error in found_before_sending {
            assert_eq!(error.sent(), Some(Sent::No), "{error:?}");
            let text = error.to_string();
            let partly = error.partly_sent();
            assert_eq!(partly.sent(), Some(Sent::Maybe), "{partly:?}");
            assert!(partly.to_string().contains(&text), "{partly}");
        }
        let task = ClusterError::TaskFailed {
            reason: "panicked".into(),
        };
        assert!(matches!(
            task.partly_sent(),
            ClusterError::TaskFailed { .. }
        ));
        let redirects = ClusterError::TooManyRedirects {
            slot: 1,
            redirects: 5,
        };
        assert_eq!(redirects.sent(), Some(Sent::No));
        assert_eq!(redirects.partly_sent().sent(), Some(Sent::Maybe));
    }
}
