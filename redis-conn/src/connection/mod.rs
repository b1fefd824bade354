//! The multiplexed connection: a cloneable handle ([`Connection`]), and the driver task that
//! owns the socket: implicit pipelining of concurrent callers, in-order reply routing, reconnect
//! with backoff, honest retries.
//!
//! # Layout
//! - this file: the handle (what a caller sees: `send`, pipelines, transactions, stats) and
//!   the queueing of a request;
//! - `call`: one call with its retries, and the decision on an attempt's outcome;
//! - `request`: what goes to the driver and what comes back;
//! - `driver`: the task, a short loop over the parts below, and its reconnects;
//! - `inflight`: requests written and waiting for replies (routing, expiry, hang check, what a
//!   break requeues);
//! - `writes`: the write buffer; `deadlines`: the one timer; `keepalive`: the idle health
//!   check; `spin`: polling for replies before sleeping.

mod call;
mod deadlines;
mod driver;
mod inflight;
mod keepalive;
mod request;
mod spin;
mod writes;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp_codec::{Decoder, Value};
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use self::driver::Driver;
use self::request::{Answer, Payload, Reply, Request};
use crate::events::{Event, EventSink};
use crate::handoff::{self, QueueTx, SlotRx};
use crate::handshake::{handshake, Spoken};
use crate::table::{Blocking, Effect};
use crate::transport::{self, Stream};
use crate::{Batch, Cmd, ConnectionConfig, Error, Sent, ServerError, TlsConfig};

/// Reads are made into at least this much free buffer space.
const READ_CHUNK: usize = 16 * 1024;

/// Counters a user can read, from [`Connection::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls made (a pipeline counts once).
    pub requests: u64,
    /// Calls that ended in an error (server error replies included).
    pub errors: u64,
    /// Resends after a broken connection or a transient server error.
    pub retries: u64,
    /// Successful reconnects.
    pub reconnects: u64,
    /// Failed connection attempts (initial and reconnects).
    pub connect_failures: u64,
    /// Write calls made on the socket (a measure of batching: requests / writes).
    pub writes: u64,
    /// Read calls that returned data.
    pub reads: u64,
    /// Requests waiting to be written right now.
    pub queued: usize,
    /// Whether the connection is up right now.
    pub connected: bool,
}

impl Stats {
    /// Two connections' counters added up (`connected` if either is).
    pub fn merged(&self, other: &Stats) -> Stats {
        Stats {
            requests: self.requests + other.requests,
            errors: self.errors + other.errors,
            retries: self.retries + other.retries,
            reconnects: self.reconnects + other.reconnects,
            connect_failures: self.connect_failures + other.connect_failures,
            writes: self.writes + other.writes,
            reads: self.reads + other.reads,
            queued: self.queued + other.queued,
            connected: self.connected || other.connected,
        }
    }
}

#[derive(Debug)]
struct Shared {
    addr: String,
    config: ConnectionConfig,
    queued: AtomicUsize,
    connected: AtomicBool,
    closed: AtomicBool,
    events: EventSink,
    requests: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    writes: AtomicU64,
    reads: AtomicU64,
    /// A WATCH is in force on this (exclusive) connection: set by WATCH, cleared by EXEC,
    /// DISCARD and UNWATCH, so that a pool only recycles when there is something to undo.
    watching: AtomicBool,
    /// The live socket, to peek at (see `is_broken`); `None` while disconnected.
    peek: std::sync::Mutex<Option<transport::PeekHandle>>,
}

/// A multiplexed connection to one server: cheap to clone, shared by any number of tasks.
///
/// Concurrent callers' commands are queued, written together (everything queued when the driver
/// wakes goes out in one write) and their replies routed back in order, a share of the callers
/// at a time, so that what those send next is written while the server still works on the rest
/// (several writes stay in flight instead of client and server taking turns). The connection is
/// kept alive: when it breaks it reconnects in the background with backoff, and calls wait for it
/// within their deadline. The backoff starts over only once a connection proved healthy (it
/// served a reply, or stayed up for [`BackoffConfig::healthy_after`](crate::BackoffConfig::healthy_after)), never
/// after a handshake alone; the first reconnect after losing a healthy connection is immediate.
///
/// # Delivery and retries
/// A command that was never written is sent after the reconnect. A command that may have been
/// written and got no reply is resent only when it is a read or retry-safe: a second run leaves
/// the same data and returns the same reply, judged with its arguments by the
/// [`table`](crate::table) (or the caller said so, or [`Delivery::AtLeastOnce`](crate::Delivery::AtLeastOnce) is set), up to
/// `max_attempts`; otherwise the caller gets [`Error::ConnectionLost`] with [`Sent::Maybe`].
/// Once an attempt may have run, every later error of the call says [`Sent::Maybe`].
///
/// # Slow replies
/// A call fails at its own deadline and its late reply is read and dropped; the connection is
/// replaced only when the server stays silent for the
/// [`hang window`](ConnectionConfig::hang_window) while calls wait, or on a socket error. Server error replies are returned as they are,
/// except `LOADING`, `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN` and `BUSY`, which are retried with
/// backoff within the deadline.
///
/// # Cancel safety
/// Dropping a call's future is safe: a request not yet written is never sent, and the reply to
/// one already written is read and thrown away, so no other caller ever receives it.
///
/// # Example
/// ```no_run
/// # async fn demo() -> Result<(), redis_conn::Error> {
/// use redis_conn::{Cmd, Connection, ConnectionConfig, ServerAddr};
///
/// let conn = Connection::connect(ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 6379))).await?;
/// conn.send(Cmd::new("SET").arg("k").arg("v")).await?;
/// let replies = conn
///     .send_pipeline(&[Cmd::new("INCR").arg("n"), Cmd::new("GET").arg("k")])
///     .await?;
/// assert_eq!(replies.len(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    tx: QueueTx<Request>,
    shared: Arc<Shared>,
}

pub(crate) type TlsPair = (TlsConfig, Arc<rustls::ClientConfig>);

/// Opens transport and runs the handshake, within the connect timeout.
pub(crate) async fn open(
    config: &ConnectionConfig,
    tls: Option<&TlsPair>,
    addr: &str,
) -> Result<(Stream, BytesMut, Decoder), Error> {
    let attempt = async {
        let mut stream = transport::connect(&config.addr, config.address_map.as_ref(), tls).await?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut decoder = Decoder::with_limits(config.limits);
        let spoken = handshake(&mut stream, config, addr, &mut buf, &mut decoder).await?;
        tracing::debug!(addr, resp3 = (spoken == Spoken::Resp3), "connected");
        Ok((stream, buf, decoder))
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::ConnectTimeout {
            addr: addr.to_string(),
            timeout: config.connect_timeout,
        }),
    }
}

/// Builds the rustls configuration, and logs the warning of a dangerous TLS configuration once
/// per client (every connection made from clones of one configuration counts as one client).
pub(crate) fn prepare_tls(config: &ConnectionConfig, addr: &str) -> Result<Option<TlsPair>, Error> {
    let Some(t) = &config.tls else {
        return Ok(None);
    };
    let client = t.client_config()?;
    if t.is_dangerous() && t.first_warning() {
        tracing::warn!(
            addr = %addr,
            skipped = ?t.skipped_checks(),
            "TLS certificate verification is disabled in part or in whole for this \
             client: its connections are open to man-in-the-middle attacks"
        );
    }
    Ok(Some((t.clone(), client)))
}

impl Connection {
    /// Connects (TCP or Unix socket, TLS, handshake) and starts the driver task. The first
    /// connection is not retried: its error is returned, typed, so that a wrong address or wrong
    /// credentials show at once.
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::ConnectTimeout`], [`Error::Tls`], [`Error::Auth`],
    /// [`Error::Handshake`], [`Error::Config`].
    pub async fn connect(config: ConnectionConfig) -> Result<Connection, Error> {
        let addr = config.addr.to_string();
        let tls = prepare_tls(&config, &addr)?;
        let events = EventSink::new(&config.callbacks);
        let (stream, buf, decoder) = open(&config, tls.as_ref(), &addr).await?;
        let shared = Arc::new(Shared {
            addr: addr.clone(),
            config,
            queued: AtomicUsize::new(0),
            connected: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            events,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            peek: std::sync::Mutex::new(None),
            watching: AtomicBool::new(false),
        });
        shared.events.emit(Event::Connected { addr });
        let (tx, rx) = handoff::queue();
        let (ready_tx, ready_rx) = oneshot::channel();
        let driver = Driver::new(Arc::clone(&shared), rx, decoder, tls, ready_tx);
        tokio::spawn(driver.run(stream, buf));
        // Hand the connection out only once its driver serves it (so that `is_broken` can already
        // see the socket).
        let _ = ready_rx.await;
        Ok(Connection { tx, shared })
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// A stream of this connection's events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The connection's counters.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            requests: s.requests.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            connect_failures: s.connect_failures.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            reads: s.reads.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Closes the connection for every clone: queued calls fail with [`Error::Closed`], calls in
    /// flight get their replies if they arrive before the socket closes.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        // Wake the driver so that it notices.
        let _ = self.tx.send(Request::wake_up());
    }

    /// Sends one command and returns its reply. An error reply is [`Error::Server`].
    ///
    /// # Errors
    /// [`Error::Server`] for an error reply; [`Error::Timeout`], [`Error::ConnectionLost`] (with
    /// whether the command may have been executed), [`Error::QueueFull`], [`Error::Closed`],
    /// [`Error::Unsupported`] for commands that need a dedicated connection (SUBSCRIBE, WATCH...).
    pub async fn send(&self, cmd: Cmd) -> Result<Value, Error> {
        // Checked and queued by a plain function: the future keeps no more than the call's.
        let call = self.start(cmd)?;
        match call.await? {
            Reply::One(Value::Error(e)) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                Err(Error::Server(ServerError::new(e)))
            }
            Reply::One(v) => Ok(v),
            Reply::Many(mut v) => Ok(v.pop().unwrap_or(Value::Null)),
        }
    }

    /// Checks that `cmd` can run here and queues it.
    fn start(
        &self,
        cmd: Cmd,
    ) -> Result<impl Future<Output = Result<Reply, Error>> + Send + '_, Error> {
        let (info, effect, blocking) = cmd.traits();
        if self.refuses(&info) {
            return Err(unsupported(cmd.name(), &info));
        }
        if info.needs_dedicated_connection {
            self.track_watch(cmd.name());
        }
        Ok(self.call(Payload::Cmd(cmd), 1, effect, blocking))
    }

    /// Sends commands as one pipeline (one write, replies in order). An error reply stays in
    /// its place as [`Value::Error`]; the other commands' replies are unaffected. A pipeline
    /// wrapped in `MULTI` ... `EXEC` is written as one unit, so it is atomic here too.
    ///
    /// # Errors
    /// As [`Connection::send`], for the pipeline as a whole.
    pub async fn send_pipeline(&self, cmds: &[Cmd]) -> Result<Vec<Value>, Error> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let batch = Batch::from(cmds);
        let (effect, blocking) = self.admit(&batch)?;
        self.call_batch(batch.len(), batch.into_bytes(), effect, blocking)
            .await
    }

    /// Sends a [`Batch`] as one pipeline, as [`Connection::send_pipeline`] does (its encoding is
    /// written as it is, copied once).
    ///
    /// # Errors
    /// As [`Connection::send_pipeline`].
    pub async fn send_batch(&self, batch: &Batch) -> Result<Vec<Value>, Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (effect, blocking) = self.admit(batch)?;
        let bytes = Bytes::copy_from_slice(batch.as_bytes());
        self.call_batch(batch.len(), bytes, effect, blocking).await
    }

    /// Checks that every command of a pipeline can run here, and tells how the pipeline as a
    /// whole may be retried and how long it may block.
    fn admit(&self, batch: &Batch) -> Result<(Effect, Blocking), Error> {
        if let Some(effect) = batch.ordinary_effect() {
            return Ok((effect, Blocking::No));
        }
        let n = batch.len();
        let is = |i: usize, name: &[u8]| {
            batch
                .get(i)
                .is_some_and(|c| c.name().eq_ignore_ascii_case(name))
        };
        let transaction = n >= 2 && is(0, b"MULTI") && is(n - 1, b"EXEC");
        let mut effect = Effect::ReadOnly;
        let mut blocking = Blocking::No;
        for (i, cmd) in batch.iter().enumerate() {
            let info = cmd.info();
            let edge = transaction && (i == 0 || i == n - 1);
            if self.refuses(&info) && !edge {
                return Err(unsupported(cmd.name(), &info));
            }
            if info.needs_dedicated_connection {
                self.track_watch(cmd.name());
            }
            effect = effect.worst(cmd.effect());
            blocking = longest_block(blocking, cmd.blocking());
        }
        Ok((effect, blocking))
    }

    async fn call_batch(
        &self,
        n: usize,
        bytes: Bytes,
        effect: Effect,
        blocking: Blocking,
    ) -> Result<Vec<Value>, Error> {
        match self
            .call(Payload::Encoded(bytes), n, effect, blocking)
            .await?
        {
            Reply::Many(values) => Ok(values),
            Reply::One(value) => Ok(vec![value]),
        }
    }

    /// Runs `cmds` as one transaction: `MULTI`, the commands, `EXEC`, written as one unit (so no
    /// other caller's command can come in between, even on a shared connection). Returns the
    /// commands' replies (error replies in their place), or `None` when a key watched on this
    /// (exclusive) connection changed and the server discarded the transaction.
    ///
    /// A transaction is never resent once it may have been written, whatever its commands
    /// (unless the delivery mode is at least once).
    ///
    /// # Errors
    /// As [`Connection::send_pipeline`]; [`Error::Server`] with `EXECABORT` when the server
    /// refused a command while queueing it (the message says which error), in which case nothing
    /// ran.
    pub async fn send_transaction(&self, cmds: &[Cmd]) -> Result<Option<Vec<Value>>, Error> {
        let mut all = Vec::with_capacity(cmds.len() + 2);
        all.push(Cmd::new("MULTI"));
        all.extend(cmds.iter().cloned());
        all.push(Cmd::new("EXEC"));
        let replies = self.send_pipeline(&all).await?;
        transaction_outcome(replies)
    }

    /// Whether this connection cannot run a command: streaming commands never, connection-state
    /// commands unless the connection is exclusive.
    fn refuses(&self, info: &crate::table::CommandInfo) -> bool {
        info.streams_replies || (info.needs_dedicated_connection && !self.shared.config.exclusive)
    }

    /// Notes WATCH state changes (only connection-state commands get here).
    fn track_watch(&self, name: &[u8]) {
        if name.eq_ignore_ascii_case(b"WATCH") {
            self.shared.watching.store(true, Ordering::Release);
        } else if name.eq_ignore_ascii_case(b"UNWATCH")
            || name.eq_ignore_ascii_case(b"EXEC")
            || name.eq_ignore_ascii_case(b"DISCARD")
        {
            self.shared.watching.store(false, Ordering::Release);
        }
    }

    /// Whether a WATCH sent on this connection may still be in force (no EXEC, DISCARD or
    /// UNWATCH since).
    pub fn is_watching(&self) -> bool {
        self.shared.watching.load(Ordering::Acquire)
    }

    /// Whether the connection is closed for good (closed by the application, gave up
    /// reconnecting, or broke with reconnect off).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// A cheap, synchronous liveness test for pools: true when the connection is closed for good,
    /// or when its peer has already closed or reset the socket (seen with a non-blocking peek,
    /// before the driver has even noticed). No round trip.
    pub fn is_broken(&self) -> bool {
        if self.is_closed() {
            return true;
        }
        let peek = self.shared.peek.lock().unwrap_or_else(|e| e.into_inner());
        match peek.as_ref() {
            Some(handle) => !handle.alive(),
            // Disconnected: reconnecting (broken for now), or a transport that cannot be peeked.
            None => !self.is_connected(),
        }
    }

    /// `PING <nonce>` and a check that the reply echoes it: catches a dead connection and a
    /// desynchronised one. Returns the round-trip time.
    ///
    /// # Errors
    /// Any error of [`Connection::send`], or [`Error::Protocol`]-like desync reported as
    /// [`Error::ConnectionLost`] when the echo does not match.
    pub async fn health_check(&self) -> Result<Duration, Error> {
        let nonce = format!("health-{}", rand::random::<u64>());
        let started = Instant::now();
        let reply = self.send(Cmd::new("PING").arg(&nonce)).await?;
        if reply.as_bytes().map(|b| &b[..]) == Some(nonce.as_bytes()) {
            Ok(started.elapsed())
        } else {
            Err(Error::ConnectionLost {
                addr: self.shared.addr.clone(),
                reason: format!("health check got {reply:?} instead of its nonce"),
                sent: Sent::Maybe,
            })
        }
    }

    /// Queues one request (synchronously: the caller's future then only waits), to be answered
    /// by the driver: replies, an error, or a timeout at `deadline` (the driver keeps the time,
    /// so a call costs no timer of its own).
    fn enqueue(
        &self,
        payload: Payload,
        replies: usize,
        patience: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<SlotRx<Answer>, Error> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                reason: "the connection was closed".into(),
            });
        }
        if shared.config.fail_fast && !shared.connected.load(Ordering::Acquire) {
            return Err(Error::ConnectionLost {
                addr: shared.addr.clone(),
                reason: "disconnected, and fail-fast is set".into(),
                sent: Sent::No,
            });
        }
        let capacity = shared.config.queue_capacity;
        if shared.queued.fetch_add(1, Ordering::AcqRel) >= capacity {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::QueueFull { capacity });
        }
        let (tx, rx) = handoff::slot();
        let request = Request {
            payload,
            replies,
            tx: Some(tx),
            deadline,
            patience,
            expect: None,
        };
        if self.tx.send(request).is_err() {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Closed {
                reason: "the connection's driver has stopped".into(),
            });
        }
        Ok(rx)
    }
}
fn unsupported(name: &[u8], info: &crate::table::CommandInfo) -> Error {
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    if info.streams_replies {
        Error::Unsupported(format!(
            "{name} turns the connection into a message stream; use the pub/sub API"
        ))
    } else {
        Error::Unsupported(format!(
            "{name} changes the connection's state and cannot run on a shared connection; \
             use an exclusive (pooled) connection, or MULTI ... EXEC inside one pipeline"
        ))
    }
}

fn longest_block(a: Blocking, b: Blocking) -> Blocking {
    match (a, b) {
        (Blocking::Forever, _) | (_, Blocking::Forever) => Blocking::Forever,
        (Blocking::For(x), Blocking::For(y)) => Blocking::For(x.max(y)),
        (Blocking::For(x), _) | (_, Blocking::For(x)) => Blocking::For(x),
        _ => Blocking::No,
    }
}

/// The outcome of a `MULTI`, commands, `EXEC` pipeline, from its replies: the commands' replies,
/// `None` when a watched key changed, or the `EXECABORT` error naming what was refused. For
/// layers that send the pipeline themselves (a cluster client following a `MOVED`).
///
/// # Errors
/// [`Error::Server`] with `EXECABORT`; [`Error::Unsupported`] for a reply that is not EXEC's.
pub fn transaction_outcome(mut replies: Vec<Value>) -> Result<Option<Vec<Value>>, Error> {
    let exec = replies.pop().unwrap_or(Value::Null);
    match exec {
        Value::Array(results) => Ok(Some(results)),
        Value::Null => Ok(None),
        Value::Error(e) => {
            // EXECABORT says only that something was refused: name what it was.
            let refused = replies.iter().skip(1).find_map(|r| match r {
                Value::Error(q) => Some(String::from_utf8_lossy(q).into_owned()),
                _ => None,
            });
            let message = match refused {
                Some(q) => format!("{} ({q})", String::from_utf8_lossy(&e)),
                None => String::from_utf8_lossy(&e).into_owned(),
            };
            Err(Error::Server(ServerError::new(Bytes::from(message))))
        }
        other => Err(Error::Unsupported(format!(
            "EXEC answered {} instead of an array",
            other.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a call on a `&'static Connection` makes.
    fn future_size<R>(_: fn(&'static Connection) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// What every call moves several times on its way (caller, queue, driver, reply slot) and
    /// what it keeps while waiting stays small: a guard against a field or a local that would
    /// quietly make every call carry more.
    #[test]
    fn a_call_carries_little() {
        assert!(std::mem::size_of::<Request>() <= 128);
        assert!(std::mem::size_of::<Answer>() <= 128);
        assert!(std::mem::size_of::<Cmd>() <= 64);
        let send = future_size(|c| c.send(Cmd::new("GET")));
        assert!(send <= 256, "Connection::send's future is {send} bytes");
        let call = future_size(|c| {
            c.call(
                Payload::Encoded(Bytes::new()),
                1,
                Effect::ReadOnly,
                Blocking::No,
            )
        });
        assert!(call <= 160, "a call's future is {call} bytes");
    }
}
