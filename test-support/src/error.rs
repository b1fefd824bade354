//! The harness's error type.

use std::time::Duration;

/// Why the harness could not start, reach or drive a Redis process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The binary is missing.
    #[error(
        "`{binary}` is not installed or not on PATH: install Debian's packages with \
         `apt-get install redis-server redis-sentinel redis-tools`, or run `cargo xtask test`, \
         which installs them when it can"
    )]
    NotInstalled {
        /// The binary that was looked for.
        binary: String,
    },
    /// The process started but never answered.
    #[error("{what} did not become ready within {timeout:?}; its log ends with:\n{log}")]
    NotReady {
        /// Which process, and what was waited for.
        what: String,
        /// How long the harness waited.
        timeout: Duration,
        /// The last lines of its log file.
        log: String,
    },
    /// The process exited during start-up.
    #[error("{what} exited during start-up ({status}); its log ends with:\n{log}")]
    Exited {
        /// Which process.
        what: String,
        /// Its exit status.
        status: String,
        /// The last lines of its log file.
        log: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A server sent bytes that are not valid RESP.
    #[error("invalid reply from {addr}: {source}")]
    Protocol {
        /// The server.
        addr: String,
        /// The decoder's error.
        #[source]
        source: resp_codec::DecodeError,
    },
    /// A server answered a command with an error reply.
    #[error("{addr} answered `{command}` with an error: {message}")]
    Reply {
        /// The server.
        addr: String,
        /// The command's name.
        command: String,
        /// The error message.
        message: String,
    },
    /// A tool the harness ran (`redis-cli --cluster ...`) failed.
    #[error("`{command}` failed: {output}")]
    Tool {
        /// The command line.
        command: String,
        /// The end of its output, its exit status and its error output.
        output: String,
    },
    /// A server's reply did not have the expected shape.
    #[error("unexpected reply from {addr} to `{command}`: {reply}")]
    Unexpected {
        /// The server.
        addr: String,
        /// The command's name.
        command: String,
        /// The reply, formatted.
        reply: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// No free port was found.
    #[error("no free loopback port found in 20000..32000")]
    NoFreePort,
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The harness's result type.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
