//! Errors: one type for every call, with predicates for what code usually needs to know.

use std::fmt;

use redis_cluster::ClusterError;
use redis_conn::{Sent, ServerError};
use redis_sentinel::SentinelError;

/// Everything a call can fail with.
///
/// Match on the variants, or use the predicates: [`Error::sent`] (may the command have run?),
/// [`Error::is_timeout`], [`Error::server_error`] (the server's `-ERR ...` reply),
/// [`Error::is_connection_error`]. Display texts are for people and never contain a password.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error reply (`WRONGTYPE ...`, `ERR ...`). The command ran
    /// and failed, or was refused: it is never retried, except for `LOADING`, `TRYAGAIN`,
    /// `MASTERDOWN`, `CLUSTERDOWN`, `BUSY` and redirects, which the lower layers retry.
    #[error("{0}")]
    Server(ServerError),
    /// Reaching or talking to a server failed: connect, TLS, authentication, a connection lost
    /// or hung, a deadline, a full queue, an exhausted pool, a protocol violation.
    /// [`redis_conn::Error::sent`] says whether the command may have run.
    #[error(transparent)]
    Connection(redis_conn::Error),
    /// A cluster problem: no usable topology, an unassigned slot, keys of one atomic command in
    /// different slots (nothing was sent), too many redirects.
    #[error(transparent)]
    Cluster(ClusterError),
    /// No sentinel led to a reachable master.
    #[error(transparent)]
    Sentinel(SentinelError),
    /// A reply could not be turned into the type asked for.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// The configuration (a URL, a profile file, a builder setting) is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `SCAN`-family stream stopped because its server would not let it end: it answered
    /// with the cursor it was given, or went more round trips in a row without an element
    /// than the scan's cap ([`ScanOptions::max_empty_round_trips`](crate::ScanOptions::max_empty_round_trips)).
    #[error("{0}")]
    EndlessScan(String),
}

impl Error {
    /// For a failed request, whether the command may have been executed: `Some(Sent::No)` (safe
    /// to send again), `Some(Sent::Maybe)` (it may have run), `None` when the error is not about
    /// delivery (an error reply means the server *did* handle it).
    pub fn sent(&self) -> Option<Sent> {
        match self {
            Error::Connection(e) => e.sent(),
            Error::Cluster(e) => e.sent(),
            Error::Sentinel(e) => e.sent(),
            Error::Config(_) => Some(Sent::No),
            Error::Server(_) | Error::Type(_) | Error::EndlessScan(_) => None,
        }
    }

    /// Whether a deadline passed (response, connect, or waiting for a pooled connection).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Connection(e) if e.is_timeout())
    }

    /// Whether the connection failed rather than the command (see
    /// [`redis_conn::Error::is_connection_error`]), or no server could be found.
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::Connection(e) => e.is_connection_error(),
            Error::Cluster(ClusterError::NoTopology(_)) | Error::Sentinel(_) => true,
            _ => false,
        }
    }

    /// A short, stable name of what failed, for counters and logs: `"server"` for an error
    /// reply (its [`code`](Error::code) says which), `"type"`, `"config"`, and otherwise the
    /// layer's own ([`redis_conn::Error::kind`]: `"timeout"`, `"connection_lost"`...;
    /// `"cross_slot"`, `"no_topology"`...; `"no_master"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Server(_) => "server",
            Error::Connection(e) => e.kind(),
            Error::Cluster(e) => e.kind(),
            Error::Sentinel(e) => e.kind(),
            Error::Type(_) => "type",
            Error::Config(_) => "config",
            Error::EndlessScan(_) => "endless_scan",
        }
    }

    /// The server's error reply, if this is one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }

    /// The error reply's code (`WRONGTYPE`, `NOSCRIPT`...), if this is one.
    pub fn code(&self) -> Option<&str> {
        self.server_error().map(ServerError::code)
    }
}

impl From<redis_conn::Error> for Error {
    fn from(e: redis_conn::Error) -> Self {
        match e {
            redis_conn::Error::Server(s) => Error::Server(s),
            other => Error::Connection(other),
        }
    }
}

impl From<ClusterError> for Error {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Node(e) => e.into(),
            other => Error::Cluster(other),
        }
    }
}

impl From<SentinelError> for Error {
    fn from(e: SentinelError) -> Self {
        match e {
            SentinelError::Node(e) => e.into(),
            other => Error::Sentinel(other),
        }
    }
}

/// A reply of one type where another was asked for (or a value out of range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot convert {got} to {expected}")]
pub struct TypeError {
    expected: &'static str,
    got: String,
}

impl TypeError {
    /// A conversion to `expected` that met `got` (a description of the reply's type, never of
    /// its content).
    pub fn new(expected: &'static str, got: impl Into<String>) -> Self {
        TypeError {
            expected,
            got: got.into(),
        }
    }

    /// What was asked for (`"an integer"`).
    pub fn expected(&self) -> &'static str {
        self.expected
    }

    /// What the reply was (`"a bulk string"`, `"an array of 3"`).
    pub fn got(&self) -> &str {
        &self.got
    }
}

/// A configuration that cannot be used, with where it came from: the file, the profile and the
/// key, when it came from a profile file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    file: Option<String>,
    profile: Option<String>,
    key: Option<String>,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            profile: None,
            key: None,
            message: message.into(),
        }
    }

    pub(crate) fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: Some(key.into()),
            ..ConfigError::new(message)
        }
    }

    pub(crate) fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub(crate) fn in_profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// The profile file, when the setting came from one.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The profile, when the setting came from one.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The key (`retry.max_attempts`), or the URL query option, at fault.
    pub fn key_name(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(profile) = &self.profile {
            write!(f, "profile \"{profile}\": ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key \"{key}\": ")?;
        }
        f.write_str(&self.message)
    }
}

/// The result of every call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_says_whether_its_failure_may_have_run() {
        let task = Error::from(ClusterError::TaskFailed {
            reason: "panicked".into(),
        });
        assert_eq!(task.sent(), Some(Sent::Maybe));
        let topology = Error::from(ClusterError::NoTopology("no seed answered".into()));
        assert_eq!(topology.sent(), Some(Sent::No));
        let no_master = Error::from(SentinelError::NoMaster {
            name: "mymaster".into(),
            reason: "no sentinel answered".into(),
        });
        assert_eq!(no_master.sent(), Some(Sent::No));
        assert_eq!(
            Error::Config(ConfigError::new("bad")).sent(),
            Some(Sent::No)
        );
        assert_eq!(Error::EndlessScan("cursor".into()).sent(), None);
        // Met by a pipeline's later command after earlier ones ran: never "not sent".
        let partly = Error::from(ClusterError::Unassigned { slot: 7 }.partly_sent());
        assert_eq!(partly.sent(), Some(Sent::Maybe), "{partly:?}");
    }
}
