//! Redis Cluster topology: which node serves which key.
//!
//! This crate turns keys into slots (CRC16 of the key or its `{hash tag}`, modulo 16384), reads
//! `CLUSTER SLOTS` into a [`Topology`] of masters and replicas, picks the view most nodes agree on
//! ([`agreed_view`]), keeps it as a [`SlotMap`] for routing, and parses `MOVED`/`ASK`
//! redirections. It builds on `redis-conn` for connections and leaves typed commands to
//! `redis-client`.
//!
//! # Layout
//! - [`slot()`]: key to slot.
//! - [`Topology`], [`SlotMap`], [`NodeAddr`], [`agreed_view`]: who serves what.
//! - [`Redirect`]: `MOVED` and `ASK`.
//!
//! Status: the topology layer. The routing client (connections per node, refresh on triggers
//! and on a timer, redirects, multi-key splitting, replica reads) is the next increment.

#![deny(missing_docs)]

mod redirect;
mod slot;
mod topology;

pub use redirect::{Redirect, RedirectKind};
pub use slot::{slot, SLOTS};
pub use topology::{agreed_view, NodeAddr, Shard, SlotMap, Topology, TopologyError};
