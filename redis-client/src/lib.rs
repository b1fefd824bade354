//! A Redis client for async Rust (tokio) that keeps working through restarts, failovers and
//! resharding: one [`Client`] for a standalone server, a Redis Cluster or a Sentinel deployment,
//! over TCP, TLS or a Unix socket.
//!
//! This is the crate applications depend on. It adds typed commands, conversions, pipelines,
//! transactions, pub/sub, scans, scripts and configuration (code, URLs, profile files) on top of
//! the layers below, which it re-exports: `redis-conn` (one server: connections, reconnect,
//! retries, TLS), `redis-cluster` (slots, redirects, topology), `redis-sentinel` (discovery,
//! failover following), `redis-pool` (bounded pools). It adds no protocol logic of its own.
//!
//! # Quick start
//! ```no_run
//! use redis_client::prelude::*;
//!
//! # async fn demo() -> redis_client::Result<()> {
//! let client = Client::open("redis://127.0.0.1:6379").await?;
//! client.set_ex("session:42", "ada", std::time::Duration::from_secs(3600)).await?;
//! let user: Option<String> = client.get("session:42").await?;
//! let n = client.incr("visits").await?;
//! # let _ = (user, n);
//! # Ok(()) }
//! ```
//!
//! # Modes
//! The same code runs against every deployment; only the configuration differs.
//! - **Standalone**: `redis://host:6379/0`. One multiplexed connection carries every task's
//!   commands (implicit pipelining); blocking commands and WATCH transactions get exclusive
//!   connections from a bounded pool.
//! - **Cluster**: `redis+cluster://seed1:7000,seed2:7001`. Commands go to the master of their
//!   slot; `MOVED` and `ASK` are followed; the topology is refreshed on triggers (MOVED, node
//!   failure, CLUSTERDOWN) and every 30 s; MGET, MSET, DEL, UNLINK, EXISTS and TOUCH whose keys
//!   span slots are split per node and merged in order (not atomic across slots); pipelines span
//!   the cluster. Reads can go to replicas ([`Config::read_from_replicas`]).
//! - **Sentinel**: `redis+sentinel://s1:26379,s2:26379/mymaster`. The master is found with
//!   `SENTINEL GET-MASTER-ADDR-BY-NAME` and checked with `ROLE`; failovers are followed through
//!   `+switch-master` (with a poll as backstop), and nothing is sent to the old master after.
//!
//! # URLs
//! | form | meaning |
//! |---|---|
//! | `redis://[user:password@]host[:port][/db]` | standalone (port 6379) |
//! | `rediss://...` | the same over TLS (verification on) |
//! | `redis+unix:///path/to/redis.sock[?db=N]` | a Unix socket |
//! | `redis+cluster://host:port,host:port` (`rediss+cluster://`) | cluster seeds |
//! | `redis+sentinel://host:port,host:port/master-name[/db]` (`rediss+sentinel://`) | sentinels (port 26379) |
//!
//! Query options: `db`, `protocol=resp2|resp3`, `client_name`, `timeout_ms`,
//! `connect_timeout_ms`, `hang_window_ms`, `max_attempts`, `connections`, `max_reply_bytes`,
//! `message_queue_bytes`,
//! `max_reply_elements`, `pool_size`, `read_from_replicas`,
//! `replica_selector=random|round_robin`, `topology_refresh_ms`, `sentinel_username`,
//! `sentinel_password`, and for TLS `ca_file`, `cert_file`, `key_file`, `server_name`,
//! `insecure=true` (see [TLS](#tls)). Several URLs given together ([`Config::from_urls`]) are
//! cluster seeds. A user name or password with special characters is percent-encoded.
//!
//! # Profile files
//! Named configurations in TOML, chosen by name or by `REDIS_PROFILE` (else `default_profile`,
//! else a profile named `default`, else the only one), from the file given explicitly, by
//! `REDIS_CONFIG`, or `./redis.toml` ([`Config::from_profile`], [`Profiles`]):
//! ```toml
//! [profiles.local]
//! url = "redis://127.0.0.1:6379/0"
//!
//! [profiles.prod]
//! mode = "cluster"                     # standalone | cluster | sentinel
//! nodes = ["rediss://10.0.0.1:6379", "rediss://10.0.0.2:6379"]
//! username = "app"
//! password_env = "REDIS_PASSWORD"      # or password = "..."
//! read_from_replicas = true
//! replica_selector = "round_robin"     # random | round_robin
//! topology_refresh_ms = 30000
//!
//! [profiles.prod.tls]
//! ca_file = "/etc/ssl/redis-ca.pem"
//! insecure = false   # true disables certificate checks: CA, hostname and validity period
//!
//! [profiles.prod.retry]
//! max_attempts = 3
//! backoff_base_ms = 10
//! backoff_max_ms = 1000
//!
//! [profiles.ha]
//! mode = "sentinel"
//! sentinels = ["127.0.0.1:26379", "127.0.0.1:26380"]
//! master_name = "mymaster"
//! ```
//! Every key: `url`, `mode`, `nodes`, `sentinels`, `master_name`, `username`, `password`,
//! `password_env`, `database`, `client_name`, `protocol`, `connect_timeout_ms`, `timeout_ms`,
//! `health_check_interval_ms` (0: off), `spin_wait_us` (0: off), `connections`,
//! `queue_capacity`, `hang_window_ms`, `message_queue_bytes`, `max_reply_bytes`,
//! `max_reply_elements`, `fail_fast`,
//! `delivery` (`at_most_once` | `at_least_once`), `read_from_replicas`, `replica_selector`,
//! `topology_refresh_ms` (0: off), `min_topology_refresh_ms`, `max_redirects`,
//! `sentinel_username`, `sentinel_password`, `sentinel_password_env`, `sentinel_tls`,
//! `sentinel_poll_ms`, `events` (log every event); `[tls]`: `enabled`, `ca_file`, `cert_file`,
//! `key_file`, `server_name`, `insecure`, `skip_chain_verification`,
//! `skip_hostname_verification`, `skip_validity_period_check`; `[retry]`: `max_attempts`,
//! `backoff_base_ms`, `backoff_max_ms`, `backoff_factor`, `reconnect_attempts` (0: unlimited);
//! `[pool]`: `max_size`, `min_idle`, `acquire_timeout_ms`, `idle_timeout_ms`,
//! `max_lifetime_ms`. An unknown key, a wrong type or a bad value is an error that names the
//! file, the profile and the key, and never shows a secret.
//!
//! # Address mapping (NAT, Docker, Kubernetes)
//! When the addresses a cluster's nodes or the sentinels announce are not the ones the client
//! can reach, [`Config::map_address`] (code only) maps each announced `host:port` to a
//! reachable one. Every TCP address the client dials goes through it, on every connect and
//! reconnect (the configured seeds and sentinels too, so leave other addresses unchanged); the
//! slot map, redirects, events and errors keep the announced addresses, and TLS verifies the
//! certificate against the announced host unless [`TlsConfig`] sets a server name.
//! `rcli config` shows `address_map = set`.
//! ```no_run
//! use redis_client::prelude::*;
//!
//! # async fn demo() -> redis_client::Result<()> {
//! // Docker publishes node N (announced as 172.18.0.N:6379) on localhost:700N.
//! let config = Config::cluster(["127.0.0.1:7001"])?.map_address(|host, port| {
//!     match host.strip_prefix("172.18.0.").and_then(|n| n.parse::<u16>().ok()) {
//!         Some(n) if port == 6379 => ("127.0.0.1".to_string(), 7000 + n),
//!         _ => (host.to_string(), port),
//!     }
//! });
//! let client = Client::connect(config).await?;
//! # let _ = client;
//! # Ok(()) }
//! ```
//!
//! # Typed commands and conversions
//! [`Commands`] holds the typed commands (strings, keys and expiry, hashes, lists with blocking
//! pops, sets, sorted sets, streams, scripting, publishing, HyperLogLog, server); [`Client::cmd`]
//! sends anything else. Arguments are anything [`ToArgs`]; replies become anything
//! [`FromValue`], and a mismatch is a [`TypeError`] naming both types. [`Client::scan`],
//! [`Client::hscan`], [`Client::sscan`] and [`Client::zscan`] are streams; [`Script`] runs Lua
//! by SHA-1 and loads it on `NOSCRIPT`.
//!
//! # Pipelines and transactions
//! [`Client::pipeline`] queues commands and sends them together: one write per node, replies in
//! order, converted into a tuple; an error reply stays in its place. [`Pipeline::atomic`] wraps
//! them in `MULTI` ... `EXEC`. [`Client::watch`] starts an optimistic [`Transaction`] on an
//! exclusive connection: `EXEC` returns `None` when a watched key changed.
//!
//! # Pub/sub
//! [`Client::subscriber`] gives a [`PubSub`] connection that subscribes again after reconnects,
//! follows sentinel failovers, and in a cluster serves shard channels (`SSUBSCRIBE`) from their
//! slot's master, moving them when the slot moves.
//!
//! # Errors
//! Every call returns [`Result`]. [`Error::Server`] is the server's error reply;
//! [`Error::Connection`] a transport problem, typed by `redis-conn` (connect, TLS, auth,
//! connection lost, timeout, queue full, pool exhausted); [`Error::Cluster`],
//! [`Error::Sentinel`], [`Error::Type`], [`Error::Config`] the rest. [`Error::sent`] says
//! whether the command may have run. No error, `Debug` output or log line contains a password.
//!
//! # Retries and delivery
//! Default delivery is at most once for anything that may have been written:
//! - a command never written (the connection broke first) is sent after the reconnect;
//! - a command written and unanswered is resent only if it is a read or retry-safe (a second
//!   run leaves the same data and returns the same reply, judged with its arguments: GET,
//!   `SET k v`, MSET, `ZADD k XX ...`), up to `max_attempts` (default 3) within the call's
//!   deadline; otherwise (INCR, `SET k v NX`, DEL, SADD, LPUSH, XADD, scripts...) the call
//!   fails with `ConnectionLost { sent: Sent::Maybe }`: it may have run, and it is not run
//!   twice behind your back. Once an attempt may have run, every later error says so;
//! - a slow reply fails its call at the call's deadline, not the connection: the connection is
//!   replaced only after `hang_window_ms` (default 2 s) of silence while calls wait;
//! - error replies are returned, except `LOADING`, `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`,
//!   `BUSY` (retried with backoff) and cluster redirects (followed).
//!
//! [`Delivery::AtLeastOnce`] resends everything; [`CmdBuilder::idempotent`] marks one command
//! safe to resend. Reconnects use exponential backoff with full jitter (10 ms doubling to 1 s by
//! default) and never hammer a sick server.
//!
//! # Events
//! Callbacks in the [`Config`] ([`Config::on_connect`], [`Config::on_disconnect`],
//! [`Config::on_reconnect`], [`Config::on_error`], [`Config::on_failover`],
//! [`Config::on_topology_change`], [`Config::on_event`]) run on a thread of their own, so a slow
//! callback never stalls I/O; [`Client::events`] gives the same [`Event`]s as a stream;
//! [`Client::stats`] counts commands, errors, retries, reconnects, redirects, refreshes and
//! failovers.
//!
//! # Cancel safety
//! Every future may be dropped at any point. A command not yet written is never sent; the reply
//! to one already written is read and thrown away, so no other caller ever gets it. A blocking
//! command dropped while it waits closes its exclusive connection (the server ends the wait); a
//! dropped [`Transaction`] sends `UNWATCH` before its connection is reused.
//!
//! # TLS
//! With `rediss://` or [`Config::tls`], certificates are verified against the webpki roots or
//! your CA file: chain, host name and validity period. Turning checks off is explicit and named
//! as dangerous: `TlsConfig::builder().dangerous()` in code, `insecure = true` (all three) or a
//! `skip_*` switch (one each) in a profile, `insecure=true` in a URL; each logs one warning per
//! client.
//!
//! ## TLS clusters
//! A cluster whose nodes listen only for TLS (`port 0`, `tls-port 6380`, `tls-cluster yes`,
//! `tls-replication yes`) is reached with `rediss+cluster://`. The TLS settings (CA file,
//! client certificate, `insecure` and each `skip_*` switch) apply to every node the topology
//! names, not only to the seeds; each node is dialled on the `tls-port` it announces in
//! `CLUSTER SHARDS` (or the port `CLUSTER SLOTS` reports to a TLS connection). With
//! `cluster-announce-hostname` and `cluster-preferred-endpoint-type hostname`, nodes are dialled
//! by the hostname they announce and their certificates verified against it (SNI), so
//! certificates must name those hostnames. When every seed fails its TLS handshake, connecting
//! fails with the TLS error itself (`Error::Connection` holding `Tls`).
//! ```no_run
//! # async fn demo() -> redis_client::Result<()> {
//! use redis_client::prelude::*;
//!
//! let client = Client::open(
//!     "rediss+cluster://redis-1.internal:6380,redis-2.internal:6380?ca_file=/etc/redis/ca.pem",
//! )
//! .await?;
//! client.set("user:1", "Ada").await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![recursion_limit = "512"]

mod client;
mod commands;
mod config;
mod convert;
mod error;
mod events;
mod options;
mod pipeline;
mod profile;
mod pubsub;
mod scan;
mod script;
mod transaction;
mod url;

pub use client::{Client, ClientStats, CmdBuilder};
pub use commands::{Commands, StreamEntry};
pub use config::{Config, Mode, ReplicaSelection};
pub use convert::{ArgSink, FromValue, ToArgs};
pub use error::{ConfigError, Error, Result, TypeError};
pub use events::{Event, EventCallback};
pub use options::{
    ExpireCondition, Expiry, ScanOptions, SetOptions, Side, StreamAddOptions, StreamReadOptions,
    ZAddOptions,
};
pub use pipeline::Pipeline;
pub use profile::{load_profile, ProfileSource, Profiles, CONFIG_ENV, DEFAULT_FILE, PROFILE_ENV};
pub use pubsub::PubSub;
pub use script::Script;
pub use transaction::Transaction;
pub use url::redact_url;

pub use bytes::Bytes;
pub use redis_cluster::{ClusterError, ClusterEvent, NodeAddr};
pub use redis_conn::{
    AddressMap, Batch, BatchCmd, Cmd, Delivery, Message, Protocol, ReplicaSelector, Secret, Sent,
    ServerAddr, ServerError, SkippedChecks, SubscriberEvent, SubscriptionKind, TlsConfig, Value,
};
pub use redis_sentinel::{SentinelError, SentinelEvent};

/// The lower layers, for what the facade does not wrap.
pub mod layers {
    pub use redis_cluster as cluster;
    pub use redis_conn as conn;
    pub use redis_pool as pool;
    pub use redis_sentinel as sentinel;
}

/// What most code needs: `use redis_client::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Client, Commands, Config, Error, FromValue, Pipeline, Result, ScanOptions, ToArgs,
    };
}

/// The README's examples, compiled as doc tests so that they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeExamples;
