//! Redis Cluster topology: which node serves which key.
//!
//! This crate turns keys into slots (CRC16 of the key or its `{hash tag}`, modulo 16384), reads
//! `CLUSTER SHARDS` (Redis 7+, with node health) or `CLUSTER SLOTS` into a [`Topology`] of masters
//! and replicas, picks the view most nodes agree on
//! ([`agreed_view`]), keeps it as a [`SlotMap`] for routing, and parses `MOVED`/`ASK`
//! redirections. It builds on `redis-conn` for connections and leaves typed commands to
//! `redis-client`.
//!
//! # Layout
//! - [`slot()`]: key to slot.
//! - [`Topology`], [`SlotMap`], [`NodeAddr`], [`agreed_view`]: who serves what.
//! - [`Redirect`]: `MOVED` and `ASK`.
//! - [`ClusterClient`]: one multiplexed connection per node; commands go to the master of their
//!   slot; `MOVED` is followed and patches the map, `ASK` is followed with `ASKING`; the topology
//!   is refreshed on triggers (MOVED, connection failures, CLUSTERDOWN, READONLY), single-flight
//!   and at most once per 250 ms, and periodically (30 s with jitter).
//!
//! Multi-key commands whose keys span slots: MGET, MSET, DEL, UNLINK, EXISTS and TOUCH are split
//! by slot, sent at once, and merged in the caller's order (or summed); they are not atomic across
//! slots. Any other command whose keys span slots (MSETNX, RENAME, SUNIONSTORE...) is refused
//! before sending with [`ClusterError::CrossSlot`]. Which commands are split, and which go to
//! every master (below), is declared in redis-conn's command table
//! (`redis_conn::table::ClusterPolicy`).
//!
//! Reads from replicas ([`ClusterConfig::read_from_replicas`]) go to a replica picked by a
//! [`ReplicaSelector`] (random, round-robin, or your own), falling back to the master.
//!
//! [`ClusterClient::send_pipeline`] splits a pipeline per node, sends the parts at once and puts
//! replies back in order; DBSIZE (summed), KEYS (concatenated), FLUSHALL/FLUSHDB and SCRIPT or
//! FUNCTION LOAD/FLUSH go to every master.
//!
//! [`ClusterClient::scan`] walks every master with its own cursor.
//!
//! Inside, one pure decision says what follows a refusal or a failure (`MOVED`, `ASK`,
//! `TRYAGAIN`, `CLUSTERDOWN`, a closed node) for single commands, transactions and pipelines
//! alike; a `TopologyRefresher` keeps the refresh state (single-flight, rate limit, timer).
//!
//! Each node is a `redis_conn::Node`: ordinary commands share its multiplexed connection;
//! blocking commands (BLPOP, XREAD BLOCK...) wait on an exclusive connection from its pool.
//! [`ClusterClient::send_transaction`] runs MULTI/EXEC on the master of the commands' one slot
//! (following a `MOVED` met while queueing), and [`ClusterClient::lease`] hands out an exclusive
//! connection for WATCH.
//!
//! [`ClusterClient::subscriber`] gives a [`ClusterSubscriber`]: channels and patterns on one
//! node, shard channels (`SSUBSCRIBE`) on the master of their slot, moved when the slot moves.

#![deny(missing_docs)]

mod client;
mod config;
mod decision;
mod error;
mod fan_out;
mod node_set;
mod pubsub;
mod redirect;
mod refresher;
mod scan;
mod slot;
mod split;
mod topology;

pub use client::{ClusterClient, ClusterEvent, ClusterStats};
pub use config::ClusterConfig;
pub use error::ClusterError;
pub use pubsub::ClusterSubscriber;
pub use redirect::{Redirect, RedirectKind};
pub use redis_conn::{RandomSelector, ReplicaSelector, RoundRobinSelector};
pub use scan::ClusterScan;
pub use slot::{slot, SLOTS};
pub use topology::{
    agreed_view, NodeAddr, Shard, SlotMap, Topology, TopologyError, Transport, MAX_NODES,
};
