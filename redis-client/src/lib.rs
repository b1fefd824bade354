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
//! Query options: every setting of the [table](#settings) that has a URL option
//! (`?timeout_ms=250&read_from_replicas=true`), the TLS ones included (`ca_file`,
//! `insecure=true`, see [TLS](#tls)). Several URLs given together ([`Config::from_urls`]) are
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
//! Every key: `url` (one URL, as above), `nodes` (addresses or URLs: one is a server, more are
//! cluster seeds), `sentinels` (addresses), and the profile keys of the [table](#settings):
//! `retry.*` in a `[retry]` table, `pool.*` in `[pool]`, `tls.*` in `[tls]` (which turns TLS
//! on unless `enabled = false`). A secret may instead come from the environment variable that
//! `<key>_env` names (`password_env`, `sentinel_password_env`). An unknown key, a wrong type or a
//! bad value is an error that names the file, the profile and the key, and never shows a secret.
//!
//! # Settings
//! Each setting has one name in profile files and in [`Config::settings`] (what `rcli config`
//! prints, passwords as `***`), takes the same values in a URL and in a profile, and has a
//! setter on [`Config`]. A URL value is text (a flag is `true`, `1`, `yes`, `on`, or `false`,
//! `0`, `no`, `off`); a profile value has its TOML type (`true`, `800`), and a choice is a
//! string in both (`protocol = "resp2"`; a profile also takes `protocol = 2`). `mode`, the
//! servers, `username` and `password` are said by a URL's form, not its query;
//! [`Config::map_address`] and the event callbacks are code only.
//!
//! | profile key | URL option | value | what it sets |
//! |---|---|---|---|
//! | `mode` | - | `standalone` or `cluster` or `sentinel` | the deployment (a URL's scheme says it; a profile's `sentinels` imply sentinel) |
//! | `master_name` | `master_name` | text | the master's name, as the sentinels know it (also a sentinel URL's path) |
//! | `username` | - | text | the ACL user (a URL's user info) |
//! | `password` | - | secret (or `<key>_env` in a profile) | the data nodes' password (a URL's user info) |
//! | `database` | `db`, `database` | integer | the database to `SELECT` (also a URL's path) |
//! | `client_name` | `client_name` | text | the name `CLIENT LIST` shows |
//! | `protocol` | `protocol` | `resp2` or `resp3` | RESP version (`2` and `3` are taken too) |
//! | `sentinel_username` | `sentinel_username` | text | the sentinels' ACL user (needs `sentinel_password`) |
//! | `sentinel_password` | `sentinel_password` | secret (or `<key>_env` in a profile) | the sentinels' password |
//! | `sentinel_tls` | `sentinel_tls` | true or false | reach the sentinels over TLS (default: as the data nodes) |
//! | `connect_timeout_ms` | `connect_timeout_ms` | milliseconds | bound on opening one connection |
//! | `timeout_ms` | `timeout_ms` | milliseconds | deadline of one call, retries included |
//! | `retry.max_attempts` | `max_attempts` | count, at least 1 | attempts per command, the first included |
//! | `retry.backoff_base_ms` | `backoff_base_ms` | milliseconds | first reconnect backoff ceiling |
//! | `retry.backoff_max_ms` | `backoff_max_ms` | milliseconds | largest reconnect delay |
//! | `retry.backoff_factor` | `backoff_factor` | number, at least 1 | growth of the backoff ceiling per attempt |
//! | `retry.reconnect_attempts` | `reconnect_attempts` | count, 0: unlimited | reconnect attempts before a connection gives up |
//! | `delivery` | `delivery` | `at_most_once` or `at_least_once` | what may be resent once its outcome is unknown |
//! | `queue_capacity` | `queue_capacity` | count | requests that may wait per connection |
//! | `hang_window_ms` | `hang_window_ms` | milliseconds | silence, while calls wait, after which a connection is replaced |
//! | `message_queue_bytes` | `message_queue_bytes` | count | bytes of pub/sub messages that may wait to be read |
//! | `max_reply_bytes` | `max_reply_bytes` | count | the most bytes one reply may span |
//! | `max_reply_elements` | `max_reply_elements` | count | the most values one reply may hold |
//! | `fail_fast` | `fail_fast` | true or false | while disconnected, fail calls at once |
//! | `health_check_interval_ms` | `health_check_interval_ms` | milliseconds, 0: off | `PING` connections idle this long |
//! | `spin_wait_us` | `spin_wait_us` | microseconds, 0: off | how long a connection polls for replies before it sleeps |
//! | `connections` | `connections` | count | shared (multiplexed) connections per node |
//! | `pool.max_size` | `pool_size` | count, at least 1 | most exclusive connections per node (blocking commands, WATCH) |
//! | `pool.min_idle` | `pool_min_idle` | count | exclusive connections kept open per node |
//! | `pool.acquire_timeout_ms` | `pool_acquire_timeout_ms` | milliseconds | how long to wait for an exclusive connection |
//! | `pool.idle_timeout_ms` | `pool_idle_timeout_ms` | milliseconds, 0: off | idle exclusive connections are closed after this long |
//! | `pool.max_lifetime_ms` | `pool_max_lifetime_ms` | milliseconds, 0: off | exclusive connections are replaced after this long |
//! | `read_from_replicas` | `read_from_replicas` | true or false | send read-only commands to replicas (cluster, sentinel) |
//! | `replica_selector` | `replica_selector` | `random` or `round_robin` | how a replica is chosen for a read |
//! | `topology_refresh_ms` | `topology_refresh_ms` | milliseconds, 0: off | periodic cluster topology refresh |
//! | `min_topology_refresh_ms` | `min_topology_refresh_ms` | milliseconds | the least time between two topology refreshes |
//! | `max_redirects` | `max_redirects` | count | cluster redirects followed per command |
//! | `sentinel_poll_ms` | `sentinel_poll_ms` | milliseconds | how often sentinels are polled as a backstop |
//! | `events` | `events` | true or false | log every event through `tracing` |
//! | `tls.enabled` | - | true or false | TLS on (default true in a `[tls]` table; a URL's `rediss` scheme) |
//! | `tls.ca_file` | `ca_file` | text | the CA certificates to trust (default: the webpki roots) |
//! | `tls.cert_file` | `cert_file` | text | the client certificate (with `key_file`) |
//! | `tls.key_file` | `key_file` | text | the client certificate's key (with `cert_file`) |
//! | `tls.server_name` | `server_name` | text | the name to verify the certificate against (default: the host) |
//! | `tls.insecure` | `insecure` | true or false | dangerous: turn off every certificate check (CA, hostname, validity period) |
//! | `tls.skip_chain_verification` | `skip_chain_verification` | true or false | dangerous: do not verify the certificate chain |
//! | `tls.skip_hostname_verification` | `skip_hostname_verification` | true or false | dangerous: do not verify the host name |
//! | `tls.skip_validity_period_check` | `skip_validity_period_check` | true or false | dangerous: accept expired or not yet valid certificates |
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
mod redact;
mod scan;
mod script;
mod settings;
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
pub use redact::redact_url;
pub use script::Script;
pub use transaction::Transaction;

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
