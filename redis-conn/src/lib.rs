//! One Redis server endpoint, kept alive and fast.
//!
//! This layer owns everything about talking to a single server: the transport (TCP with nodelay
//! and keepalive, TLS through rustls, Unix sockets), the handshake on every (re)connect (HELLO 3
//! with RESP2 fallback, AUTH, SELECT, CLIENT SETNAME, READONLY), buffered I/O (reads of 16 KiB
//! into one buffer, every queued request written with one call), a multiplexed [`Connection`]
//! shared by many tasks, reconnect with exponential backoff and full jitter, retries that are
//! honest about whether a command may have run, deadlines, health checks and [`Event`]s.
//!
//! It leaves to others: pooling logic (`redis-pool`, generic; the Redis manager for it is
//! [`pool::RedisManager`], here), topology (`redis-cluster`, `redis-sentinel`), and typed commands (`redis-client`).
//! The wire format is `resp-codec`'s.
//!
//! # Layout
//! - [`Connection`], [`ConnectionConfig`]: the multiplexed connection and its settings.
//! - [`Node`], [`NodeConfig`]: one server as a client uses it: shared connection(s) for
//!   ordinary commands, and a pool of exclusive connections that blocking commands (BLPOP, XREAD
//!   BLOCK, WAIT...) and WATCH transactions use, so that they never hold up other callers.
//! - [`pubsub`]: a [`Subscriber`] connection that subscribes again after every reconnect or
//!   relocation.
//! - [`Cmd`] and [`table`]: commands, and what each one does (a read, retry-safe with these
//!   arguments or not, blocking, key positions), which retries and cluster routing rely on.
//! - [`Batch`]: a pipeline encoded into one buffer as it is built, sent as it is by
//!   [`Connection::send_batch`] (and the layers above), its commands readable for routing.
//! - [`TlsConfig`]: trust roots, client certificates, and the explicit `dangerous()` switches.
//! - [`pool`]: the Redis manager for `redis-pool` (exclusive leases or shared connections).
//! - [`Backoff`]: the reconnect schedule, a small state machine testable without a clock; one
//!   reconnect helper (`reconnect.rs`), shared by [`Connection`] and [`Subscriber`], decides when
//!   it starts over and runs the loop of attempts after a loss.
//! - [`Error`], [`Sent`]: typed failures that say whether a command may have been executed.
//!
//! # Reconnect rate
//! A broken connection or subscriber reconnects with the [`BackoffConfig`] schedule. The delay
//! starts over only after a connection proved healthy (it served a reply, or stayed up for
//! [`BackoffConfig::healthy_after`], 1 s by default), never after a handshake alone: a server
//! that accepts, answers `HELLO` and closes is reconnected to no faster than one that refuses
//! connections (about 15 times in 4 s with the defaults). The first reconnect after losing a
//! healthy connection is made at once.
//!
//! # Cancel safety
//! Every future returned here may be dropped at any point. A dropped call's request is never
//! written if it was not yet, and its reply is discarded if it was: replies never go to the wrong
//! caller.

#![deny(missing_docs)]

mod address_map;
mod backoff;
mod batch;
mod cmd;
mod config;
mod connection;
mod error;
mod events;
mod handoff;
mod handshake;
pub mod node;
pub mod pool;
pub mod pubsub;
mod reconnect;
mod replica;
mod secret;
pub mod table;
pub mod tls;
mod transport;

pub use address_map::AddressMap;
pub use backoff::{Backoff, BackoffConfig};
pub use batch::{Batch, BatchCmd};
pub use cmd::{Args, Cmd};
pub use config::{ConnectionConfig, Delivery, Protocol};
pub use connection::{transaction_outcome, Connection, Stats};
pub use error::{Error, Sent, ServerError};
pub use events::{callback_thread, Event, EventCallback, Handler};
pub use node::{Node, NodeConfig};
pub use pubsub::{Message, Subscriber, SubscriberEvent, SubscriberHandle, SubscriptionKind};
pub use replica::{
    RandomSelector, ReplicaHealth, ReplicaReads, ReplicaSelector, ReplicaSet, RoundRobinSelector,
};
pub use resp_codec::{Limits, Value};
pub use secret::Secret;
pub use tls::{SkippedChecks, TlsConfig, TlsConfigBuilder};
pub use transport::ServerAddr;
