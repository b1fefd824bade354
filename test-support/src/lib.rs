//! Real Redis processes for tests, examples and benches: standalone servers (with password, ACL
//! users, AOF, TLS), a Redis Cluster formed in seconds, a Sentinel deployment, certificates made at
//! test time, and a fault-injecting TCP proxy.
//!
//! Everything listens on 127.0.0.1, on ports from 20000..32000 checked free, each process in its
//! own temporary directory. Every process is killed when its handle is dropped (a panicking test
//! included), and also when the test process itself dies: children are forked by one long-lived
//! thread with a parent-death signal, so no `redis-server` outlives the binary that started it.
//!
//! The server binary is `redis-server` (sentinels: `redis-sentinel`), or the one named by the
//! `REDIS_SERVER_BIN` environment variable ([`SERVER_BIN_ENV`]): a path to Valkey's
//! `valkey-server`, say, which then also runs the sentinels (`--sentinel`). `cargo xtask chaos
//! --server valkey` fetches Valkey 8.1 and runs the fault scenarios against it.
//!
//! This crate is `publish = false`: it is the project's test harness, not part of the client.
//! It drives servers with its own small blocking client ([`AdminConn`]), never with the client
//! under test.
//!
//! # Layout
//! - [`RedisServer`] / [`ServerBuilder`]: one process; `kill9`, `pause` (SIGSTOP), `resume`,
//!   `restart` on the same port and directory.
//! - [`Cluster`]: 3 masters + 3 replicas (or another shape), formed with `ADDSLOTSRANGE` / `MEET` /
//!   `REPLICATE`. [`ClusterBuilder::tls`] makes it TLS-only (see below).
//! - [`SentinelSet`]: a master, replicas and sentinels (quorum 2, down-after 1000 ms).
//! - [`TestCerts`]: a CA and good/self-signed/wrong-host/expired/client certificates, and
//!   certificates naming only `localhost` or only `127.0.0.1`.
//!
//! # TLS-only clusters
//! `Cluster::builder().tls(ServerTls { .. })` starts every node with `--port 0 --tls-port P
//! --tls-cluster yes --tls-replication yes` and the given certificate and CA
//! ([`ServerBuilder::tls_only`]): no plain port is open, the bus, replication and `MIGRATE` speak
//! TLS, `CLUSTER SHARDS` reports only `tls-port`, and [`Cluster::seeds`] are the TLS addresses.
//! The harness forms and inspects the cluster over TLS itself ([`AdminConn::connect_tls`], which
//! trusts any certificate, so a test can give the nodes certificates its client must refuse).
//! Add `.args(["--cluster-announce-hostname", "localhost", "--cluster-preferred-endpoint-type",
//! "hostname"])` for nodes that announce a hostname.
//! ```no_run
//! use test_support::{Cluster, ServerTls, TestCerts};
//!
//! let certs = TestCerts::generate().unwrap();
//! let cluster = Cluster::builder()
//!     .tls(ServerTls::new(&certs, &certs.server))
//!     .start()
//!     .unwrap();
//! // Seeds for a client that trusts `certs.ca`, e.g. `rediss+cluster://<seeds>?ca_file=...`.
//! let seeds = cluster.seeds();
//! # let _ = seeds;
//! ```
//! - [`FaultProxy`] / [`Fault`]: pass, delay, slice, blackhole, close-after, refuse-new, reset.

mod admin;
mod cli;
mod cluster;
mod error;
mod fake;
mod process;
mod proxy;
mod sentinel;
mod server;
mod tls;

pub use admin::{info_field, AdminConn};
pub use cli::{cli_binary, redis_cli, wait_cluster_agrees, CLI_BIN_ENV};
pub use cluster::{Cluster, ClusterBuilder, SLOTS};
pub use error::{HarnessError, Result};
pub use fake::parse_command;
pub use process::free_port;
pub use proxy::{Fault, FaultProxy};
pub use sentinel::{SentinelBuilder, SentinelSet, MASTER_NAME};
pub use server::{server_binary, RedisServer, ServerBuilder, ServerTls, SERVER_BIN_ENV};
pub use tls::{CertFiles, TestCerts};

/// Polls `check` every 50 ms until it says true; panics naming `what` once `timeout` has
/// passed. For async tests that wait on a client and a server at once.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let mut polls = 0;
/// test_support::eventually("the third poll", std::time::Duration::from_secs(1), || {
///     polls += 1;
///     std::future::ready(polls == 3)
/// })
/// .await;
/// # });
/// ```
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// An in-memory, cloneable `Write` sink, for capturing log output in tests (give a clone of it
/// to a log subscriber's writer, read it back with [`SharedBuf::contents`]).
#[derive(Debug, Clone, Default)]
pub struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// How many bytes were written so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
