//! Sentinel-managed Redis: find the master through the sentinels, check it really is the master,
//! and follow failovers.
//!
//! [`SentinelClient::connect`] asks the sentinels in order (`SENTINEL GET-MASTER-ADDR-BY-NAME`),
//! moves the first that answers to the front, connects to the address it gives and checks with
//! `ROLE` that it is a master (a sentinel with a stale view is skipped). It then follows failovers:
//! it subscribes to `+switch-master` on every sentinel, polls them every few seconds as a
//! backstop, and rediscovers at once when a command meets `READONLY` or a lost connection. On a
//! switch the connection to the old master is closed (it stays writable for seconds after a
//! failover, and writes sent there would be lost).
//!
//! On each poll it also learns the sentinels that joined (`SENTINEL SENTINELS`), so that losing
//! the ones it was configured with does not leave it blind; it knows at most [`MAX_SENTINELS`]
//! sentinels, configured and learned together.
//!
//! With [`SentinelConfig::read_from_replicas`], read-only commands go to a replica from
//! `SENTINEL REPLICAS` chosen by a [`ReplicaSelector`](redis_conn::ReplicaSelector) (the
//! cluster's selectors), falling back to the master; the replicas are a
//! [`ReplicaSet`](redis_conn::ReplicaSet), as a cluster shard's can be. At most
//! [`MAX_REPLICAS`] replicas are kept; they are dialled all at once, in a task of their own, so
//! that a slow or dead replica never delays following a failover.
//!
//! Sentinels are reached with their own connection settings
//! ([`SentinelConfig::sentinel_connection`]): a password or ACL user for the sentinels
//! (`requirepass` on a sentinel), and TLS, which the `+switch-master` subscription uses too.
//!
//! The master is a `redis_conn::Node`: ordinary commands share its multiplexed connection,
//! blocking commands wait on exclusive connections from its pool, [`SentinelClient::lease`] hands
//! one out for WATCH, and [`SentinelClient::subscriber`] gives a pub/sub connection that moves
//! to the new master after a failover.
//!
//! Behind NAT, Docker or Kubernetes, where the addresses sentinels answer (masters, replicas,
//! other sentinels) are not reachable as they are, give the data node template and
//! [`SentinelConfig::sentinel_connection`] a `redis_conn::AddressMap`
//! (`ConnectionConfig::address_map`): every connection dials the mapped address, while the
//! client keeps and reports the announced one.
//!
//! It builds on `redis-conn` for every connection.
//!
//! # Layout
//! - `config.rs`: [`SentinelConfig`]. `error.rs`: [`SentinelError`].
//! - `discovery.rs`: asking the sentinels (the master's address and its `ROLE` check, the
//!   replicas and sentinels they list, learning sentinels).
//! - `follower.rs`: following failovers, one task owning one state (`Failover`: steady,
//!   promoting, settling) that publishes what the handles read through a watch channel.
//! - `watcher.rs`: one task per sentinel reading its failover events for the follower.
//! - `replicas.rs`: the replicas for reads, a `redis_conn::ReplicaSet` refreshed in a task of
//!   its own.
//! - `client.rs`: the [`SentinelClient`] handle.

#![deny(missing_docs)]

mod client;
mod config;
mod discovery;
mod error;
mod follower;
mod replicas;
mod watcher;

pub use client::{SentinelClient, SentinelEvent, SentinelStats};
pub use config::SentinelConfig;
pub use discovery::{MAX_REPLICAS, MAX_SENTINELS};
pub use error::SentinelError;
