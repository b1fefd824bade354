//! Configuration of one server connection.

use std::sync::Arc;
use std::time::Duration;

use resp_codec::Limits;

use crate::events::{Callbacks, Event};
use crate::{AddressMap, BackoffConfig, Secret, ServerAddr, TlsConfig};

/// Which RESP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `HELLO 3`, falling back to RESP2 when the server does not know HELLO (Redis < 6).
    #[default]
    Resp3,
    /// RESP2 only (`AUTH`, `CLIENT SETNAME`).
    Resp2,
}

/// What the client may do with a command whose outcome became unknown (written, no reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// Resend only reads and retry-safe commands (a second run answers and leaves what one
    /// run did: see [`table`](crate::table)); report the others with
    /// [`Sent::Maybe`](crate::Sent::Maybe). The default: nothing runs twice behind your back.
    #[default]
    AtMostOnce,
    /// Resend every command, accepting that one that is not retry-safe (INCR, LPUSH, SET NX)
    /// may run twice.
    AtLeastOnce,
}

/// Everything about connecting to one server and keeping the connection alive.
///
/// ```
/// use std::time::Duration;
/// use redis_conn::{ConnectionConfig, ServerAddr};
///
/// let config = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 6379))
///     .password("S3cr3t")
///     .database(2)
///     .client_name("billing")
///     .response_timeout(Duration::from_millis(500))
///     .on_reconnect(|event| eprintln!("{event:?}"));
/// assert!(!format!("{config:?}").contains("S3cr3t"));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub(crate) addr: ServerAddr,
    pub(crate) address_map: Option<AddressMap>,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) database: i64,
    pub(crate) client_name: Option<String>,
    pub(crate) protocol: Protocol,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) hang_window: Duration,
    pub(crate) backoff: BackoffConfig,
    pub(crate) max_attempts: u32,
    pub(crate) delivery: Delivery,
    pub(crate) queue_capacity: usize,
    pub(crate) message_queue_bytes: usize,
    pub(crate) fail_fast: bool,
    pub(crate) health_check_interval: Option<Duration>,
    pub(crate) limits: Limits,
    pub(crate) readonly: bool,
    pub(crate) reconnect: bool,
    pub(crate) exclusive: bool,
    pub(crate) spin_wait: Duration,
    pub(crate) callbacks: Callbacks,
}

impl ConnectionConfig {
    /// Defaults for `addr`: no TLS, no credentials, database 0, RESP3 with fallback, connect
    /// timeout 500 ms, response timeout 1 s, backoff 10 ms x2 up to 1 s with full jitter and no
    /// attempt limit (starting over only after a connection proved healthy), 3 attempts per
    /// command, at-most-once delivery, a queue of 10,000 requests, a hang window of 2 s, an
    /// idle health check every second, replies polled for up to 50 us before sleeping, and
    /// resp-codec's default [`Limits`] (among them a reply of at most 513 MiB and 4 Mi values,
    /// see [`ConnectionConfig::max_reply_bytes`]).
    pub fn new(addr: impl Into<ServerAddr>) -> Self {
        ConnectionConfig {
            addr: addr.into(),
            address_map: None,
            tls: None,
            username: None,
            password: None,
            database: 0,
            client_name: None,
            protocol: Protocol::default(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            hang_window: Self::DEFAULT_HANG_WINDOW,
            backoff: BackoffConfig::default(),
            max_attempts: 3,
            delivery: Delivery::default(),
            queue_capacity: 10_000,
            message_queue_bytes: Self::DEFAULT_MESSAGE_QUEUE_BYTES,
            fail_fast: false,
            health_check_interval: Some(Duration::from_secs(1)),
            limits: Limits::default(),
            readonly: false,
            reconnect: true,
            exclusive: false,
            spin_wait: Duration::from_micros(50),
            callbacks: Callbacks::default(),
        }
    }

    /// The default of [`ConnectionConfig::hang_window`]: longer than the slow commands a
    /// healthy server runs now and then (a 1.5 s script, a large `KEYS`), short enough that a
    /// connection to a vanished peer is replaced within a few seconds.
    pub const DEFAULT_HANG_WINDOW: Duration = Duration::from_secs(2);

    /// The server's address.
    pub fn addr(&self) -> &ServerAddr {
        &self.addr
    }

    /// The same settings for another server (cluster nodes share one configuration).
    #[must_use]
    pub fn with_addr(&self, addr: impl Into<ServerAddr>) -> Self {
        ConnectionConfig {
            addr: addr.into(),
            ..self.clone()
        }
    }

    /// Dials the address `map` gives for the configured (announced) one, on every connect and
    /// reconnect (default: none, the address is dialed as it is). The announced address stays
    /// the connection's name, and the name TLS verifies (see [`AddressMap`]). It is kept by
    /// [`ConnectionConfig::with_addr`]: a cluster's or sentinel's template maps every node.
    #[must_use]
    pub fn address_map(mut self, map: AddressMap) -> Self {
        self.address_map = Some(map);
        self
    }

    /// Connects over TLS with these settings.
    #[must_use]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The ACL user name (with [`ConnectionConfig::password`]). Without it, `default`.
    #[must_use]
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.username = Some(user.into());
        self
    }

    /// The password (`requirepass`, or the ACL user's).
    #[must_use]
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The database to `SELECT` (default 0).
    #[must_use]
    pub fn database(mut self, db: i64) -> Self {
        self.database = db;
        self
    }

    /// A name set with `CLIENT SETNAME` on every connect (shows in `CLIENT LIST`).
    #[must_use]
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// The protocol (default RESP3 with fallback to RESP2).
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Bound on TCP connect, TLS handshake and the Redis handshake together (default 500 ms).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of one call, retries and queueing included (default 1 s). A written request
    /// unanswered this long also marks the connection hung, which makes it reconnect. Blocking
    /// commands get their own timeout argument on top.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The reconnect schedule, and when it starts over (see [`BackoffConfig`]).
    #[must_use]
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// Attempts per command, the first included (default 3). Only commands that may be resent
    /// are (see [`Delivery`]).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// What may be resent when a command's outcome became unknown (default at most once).
    #[must_use]
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// How many requests may wait to be written (default 10,000). Beyond it a call fails at once
    /// with `QueueFull`.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// The default of [`ConnectionConfig::message_queue_bytes`]: 64 MiB.
    pub const DEFAULT_MESSAGE_QUEUE_BYTES: usize = 64 << 20;

    /// How many bytes of pub/sub messages (payload, channel and pattern) may wait for the
    /// application to read them (default 64 MiB), besides the queue capacity in messages. When
    /// either is reached, a [`Subscriber`](crate::pubsub::Subscriber) stops reading its socket
    /// until the application catches up: memory stays bounded, and a server whose pub/sub
    /// output buffer limit is reached closes the connection (the subscriber then reconnects
    /// and subscribes again, and says that messages may have been missed). One message larger
    /// than the budget is still delivered, alone.
    #[must_use]
    pub fn message_queue_bytes(mut self, bytes: usize) -> Self {
        self.message_queue_bytes = bytes.max(1);
        self
    }

    /// While disconnected, fail calls at once instead of letting them wait (within their
    /// deadline) for the reconnect. Default false.
    #[must_use]
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }

    /// How long the server may stay silent while calls wait before the connection counts as
    /// hung and is replaced (default [`ConnectionConfig::DEFAULT_HANG_WINDOW`], 2 s; never less
    /// than the waiting call's own allowance, so a blocking command's timeout counts too).
    ///
    /// A slow reply is not a dead connection: a call fails at its own deadline (the response
    /// timeout) and its late reply is read and dropped, while the connection and the calls
    /// behind it carry on. Only silence past this window, or a socket error, replaces the
    /// connection. An idle connection's health-check `PING` is held to the response timeout
    /// alone: nobody waits behind it, and a peer that cannot answer it is found that much
    /// sooner.
    #[must_use]
    pub fn hang_window(mut self, window: Duration) -> Self {
        self.hang_window = window;
        self
    }

    /// `PING` a connection that has been idle this long, to find a silently dead peer
    /// (default 1 s; `None` turns it off).
    #[must_use]
    pub fn health_check_interval(mut self, interval: Option<Duration>) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// Decoder limits for replies (default: resp-codec's).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The most bytes one reply (or one handshake reply) may span, counted as they arrive
    /// (default 513 MiB: one bulk of Redis's largest size, 512 MiB, and room around it). A reply
    /// that passes it fails with a [`DecodeError::ReplyTooLarge`](resp_codec::DecodeError) and
    /// closes the connection: [`Error::Protocol`](crate::Error::Protocol) from `connect`,
    /// [`Error::ConnectionLost`](crate::Error::ConnectionLost) naming the limit for a call.
    /// Shorthand for [`Limits::max_reply_bytes`] through [`ConnectionConfig::limits`].
    #[must_use]
    pub fn max_reply_bytes(mut self, bytes: usize) -> Self {
        self.limits = self.limits.max_reply_bytes(bytes);
        self
    }

    /// The most values one reply may hold, at every level of nesting, counted as they arrive
    /// (default 4 Mi = 4,194,304: an endless reply of the smallest elements is cut off with less
    /// than 200 MiB held, see [`resp_codec::DEFAULT_MAX_REPLY_ELEMENTS`]). Fails like
    /// [`ConnectionConfig::max_reply_bytes`]. Shorthand for [`Limits::max_reply_elements`].
    #[must_use]
    pub fn max_reply_elements(mut self, elements: usize) -> Self {
        self.limits = self.limits.max_reply_elements(elements);
        self
    }

    /// Sends `READONLY` on every connect (cluster replica connections).
    #[must_use]
    pub fn readonly(mut self, readonly: bool) -> Self {
        self.readonly = readonly;
        self
    }

    /// Reconnect after the connection breaks (default true). When false, a broken connection
    /// closes for good: what a pool of exclusive connections wants, since connection state (WATCH,
    /// MULTI) cannot survive a reconnect.
    #[must_use]
    pub fn reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Declares the connection used by one caller at a time (a pooled lease), which allows the
    /// commands that change connection state: WATCH, UNWATCH, MULTI, EXEC, DISCARD. Default
    /// false. Pub/sub and MONITOR still need their own API.
    #[must_use]
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// How long the connection may poll for replies it waits for before its task sleeps (default
    /// 50 us; zero turns it off). Waking a sleeping thread costs tens of microseconds (more on
    /// virtual machines), longer than a server on the same host takes to answer a pipeline: with
    /// a near server, polling raises throughput by a quarter or more. It is adaptive: it polls
    /// while most recent polled waits ended within the budget and stops after a run of waits
    /// that outlasted it, so a server further away costs one budget of polling per 64 waits (the
    /// probe that notices when replies come quickly again); an idle connection costs nothing, and
    /// the runtime's other tasks run between polls.
    #[must_use]
    pub fn spin_wait(mut self, budget: Duration) -> Self {
        self.spin_wait = budget;
        self
    }

    /// Calls `f` for every event.
    #[must_use]
    pub fn on_event(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.with_callback(None, f)
    }

    /// Calls `f` when the first connection succeeds.
    #[must_use]
    pub fn on_connect(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.with_callback(Some("connect"), f)
    }

    /// Calls `f` when the connection breaks.
    #[must_use]
    pub fn on_disconnect(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.with_callback(Some("disconnect"), f)
    }

    /// Calls `f` when the connection is back after a break.
    #[must_use]
    pub fn on_reconnect(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.with_callback(Some("reconnect"), f)
    }

    /// Calls `f` for errors no caller sees.
    #[must_use]
    pub fn on_error(self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.with_callback(Some("error"), f)
    }

    fn with_callback(
        mut self,
        filter: Option<&'static str>,
        f: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.push(filter, Arc::new(f));
        self
    }
}

/// Reading the settings back, each getter named as its setter: what a layer above needs to
/// hold a `ConnectionConfig` as its template instead of copying its fields (redis-client's
/// `Config` does), and to show the settings in force.
impl ConnectionConfig {
    /// The address map, if one is set.
    #[must_use]
    pub fn get_address_map(&self) -> Option<&AddressMap> {
        self.address_map.as_ref()
    }

    /// The TLS settings, if any.
    #[must_use]
    pub fn tls_config(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// The ACL user name, if one is set.
    #[must_use]
    pub fn get_username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if one is set (its `Debug` and `Display` show `***`).
    #[must_use]
    pub fn get_password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The database to `SELECT`.
    #[must_use]
    pub fn get_database(&self) -> i64 {
        self.database
    }

    /// The name set with `CLIENT SETNAME`, if one is set.
    #[must_use]
    pub fn get_client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    /// The protocol.
    #[must_use]
    pub fn get_protocol(&self) -> Protocol {
        self.protocol
    }

    /// The connect timeout in force (TCP, TLS and the Redis handshake together).
    #[must_use]
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The response timeout in force.
    #[must_use]
    pub fn get_response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The reconnect schedule.
    #[must_use]
    pub fn get_backoff(&self) -> &BackoffConfig {
        &self.backoff
    }

    /// Attempts per command, the first included.
    #[must_use]
    pub fn get_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// What may be resent when a command's outcome became unknown.
    #[must_use]
    pub fn get_delivery(&self) -> Delivery {
        self.delivery
    }

    /// The queue capacity in force.
    #[must_use]
    pub fn get_queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// How many bytes of pub/sub messages may wait for the application.
    #[must_use]
    pub fn get_message_queue_bytes(&self) -> usize {
        self.message_queue_bytes
    }

    /// Whether calls fail at once while disconnected.
    #[must_use]
    pub fn get_fail_fast(&self) -> bool {
        self.fail_fast
    }

    /// The hang window in force.
    #[must_use]
    pub fn get_hang_window(&self) -> Duration {
        self.hang_window
    }

    /// The idle time after which a connection is `PING`ed (`None`: never).
    #[must_use]
    pub fn get_health_check_interval(&self) -> Option<Duration> {
        self.health_check_interval
    }

    /// The decoder limits in force.
    #[must_use]
    pub fn get_limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether `READONLY` is sent on every connect.
    #[must_use]
    pub fn get_readonly(&self) -> bool {
        self.readonly
    }

    /// Whether the connection reconnects after it breaks.
    #[must_use]
    pub fn get_reconnect(&self) -> bool {
        self.reconnect
    }

    /// Whether the connection is declared exclusive.
    #[must_use]
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// How long the connection may poll for replies before its task sleeps.
    #[must_use]
    pub fn get_spin_wait(&self) -> Duration {
        self.spin_wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_reads_back_as_set() {
        let backoff = BackoffConfig::default().base(Duration::from_millis(7));
        let config = ConnectionConfig::new(ServerAddr::tcp("h", 1))
            .username("u")
            .password("pw")
            .database(4)
            .client_name("n")
            .protocol(Protocol::Resp2)
            .connect_timeout(Duration::from_millis(1))
            .response_timeout(Duration::from_millis(2))
            .hang_window(Duration::from_millis(3))
            .backoff(backoff)
            .max_attempts(0)
            .delivery(Delivery::AtLeastOnce)
            .queue_capacity(5)
            .message_queue_bytes(6)
            .fail_fast(true)
            .health_check_interval(None)
            .max_reply_elements(8)
            .readonly(true)
            .reconnect(false)
            .exclusive(true)
            .spin_wait(Duration::from_micros(9));
        assert_eq!(config.get_username(), Some("u"));
        assert_eq!(config.get_password().map(Secret::expose), Some("pw"));
        assert_eq!(config.get_database(), 4);
        assert_eq!(config.get_client_name(), Some("n"));
        assert_eq!(config.get_protocol(), Protocol::Resp2);
        assert_eq!(config.get_connect_timeout(), Duration::from_millis(1));
        assert_eq!(config.get_response_timeout(), Duration::from_millis(2));
        assert_eq!(config.get_hang_window(), Duration::from_millis(3));
        assert_eq!(*config.get_backoff(), backoff);
        assert_eq!(config.get_max_attempts(), 1, "raised to 1 by the setter");
        assert_eq!(config.get_delivery(), Delivery::AtLeastOnce);
        assert_eq!(config.get_queue_capacity(), 5);
        assert_eq!(config.get_message_queue_bytes(), 6);
        assert!(config.get_fail_fast());
        assert_eq!(config.get_health_check_interval(), None);
        assert_eq!(config.get_limits().get_max_reply_elements(), 8);
        assert!(config.get_readonly() && !config.get_reconnect() && config.is_exclusive());
        assert_eq!(config.get_spin_wait(), Duration::from_micros(9));
    }
}
