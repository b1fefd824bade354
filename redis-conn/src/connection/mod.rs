//! The multiplexed connection: a cloneable handle, a driver task that owns the socket, implicit
//! pipelining of concurrent callers, in-order reply routing, reconnect with backoff, honest retries.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use resp_codec::{Decoder, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use crate::events::{Event, EventSink};
use crate::handoff::{self, QueueRx, QueueTx, SlotRx, SlotTx};
use crate::handshake::{handshake, Spoken};
use crate::reconnect::ReconnectSchedule;
use crate::table::{Blocking, Effect};
use crate::transport::{self, Stream};
use crate::{Backoff, Batch, Cmd, ConnectionConfig, Delivery, Error, Sent, ServerError, TlsConfig};

/// Reads are made into at least this much free buffer space.
const READ_CHUNK: usize = 16 * 1024;
/// The driver stops gathering requests into one write beyond this many bytes.
const MAX_WRITE_BATCH: usize = 1024 * 1024;
/// The driver hands out at most a sixth of the answers in flight, and no fewer than 8, before
/// it lets their callers run and writes what they send next. Replies come back in the batches
/// they were written in; answering a batch of 50 whole and writing the 50 next commands in one go
/// makes client and server take turns, each idle while the other works. Answering a few at a
/// time keeps several smaller writes in flight: the server executes the first commands while the
/// client still hands out the other replies. With thousands of callers the share keeps the writes
/// large enough not to cost a system call for every few commands.
/// (Against whole batches, alternated runs of `rcli bench -t get` on one connection: 50 tasks
/// 1.5-1.8x the throughput, 200 tasks 1.25x, 100, 500 and 1000 tasks within noise; a fixed 8 at
/// a time made 500 tasks 0.6x as fast. B2 of the benchmarks went from 1.2-1.4x redis-rs to
/// 1.7-2.3x.)
const DISPATCH_SHARE: usize = 6;
/// See [`DISPATCH_SHARE`].
const DISPATCH_MIN: usize = 8;

/// The replies to one request: one value for a command, a list for a pipeline.
#[derive(Debug)]
enum Reply {
    One(Value),
    Many(Vec<Value>),
}

/// What the driver answers: the outcome, and the request's payload back when it may be needed
/// for a retry (so that a call never copies its command just in case).
#[derive(Debug)]
struct Answer {
    result: Result<Reply, Error>,
    payload: Option<Payload>,
}

type ReplyTx = SlotTx<Answer>;

/// What a request writes.
#[derive(Debug)]
enum Payload {
    /// One command (its encoded arguments, behind a header written by the driver).
    Cmd(Cmd),
    /// Already encoded commands (a pipeline, a health check).
    Encoded(Bytes),
}

/// One request: one command or a pipeline, and where its replies go.
///
/// The driver owns its fate: it writes it, expires it at its deadline (with `Sent::No` while
/// unwritten, `Sent::Maybe` after), or drops it unsent when its caller went away.
#[derive(Debug)]
struct Request {
    payload: Payload,
    replies: usize,
    /// `None` for the driver's own health checks, and once a timeout has been reported.
    tx: Option<ReplyTx>,
    /// The caller's deadline (`None`: a blocking command that waits forever).
    deadline: Option<Instant>,
    /// How long a written request may wait for its replies before the connection is considered
    /// hung (`None`: blocks forever by design).
    patience: Option<Duration>,
    /// For health checks: the nonce the reply must echo (boxed: every request carries the
    /// field, and is moved several times on its way).
    expect: Option<Box<Bytes>>,
}

impl Request {
    /// Whether nobody waits for this request any more.
    fn abandoned(&self) -> bool {
        match &self.tx {
            Some(tx) => tx.is_closed(),
            None => self.expect.is_none(),
        }
    }

    fn fail(self, error: Error) {
        let Request { tx, payload, .. } = self;
        if let Some(tx) = tx {
            let _ = tx.send(Answer {
                result: Err(error),
                payload: Some(payload),
            });
        }
    }

    fn write_to(&self, dst: &mut BytesMut) {
        match &self.payload {
            Payload::Cmd(cmd) => cmd.write_to(dst),
            Payload::Encoded(bytes) => dst.extend_from_slice(bytes),
        }
    }
}

/// What a call's retries need to know of it.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    replies: usize,
    effect: Effect,
    deadline: Option<Instant>,
    patience: Option<Duration>,
    /// 1 for the first attempt.
    number: u32,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Done,
    Backoff,
    Resend,
}

/// A written request waiting for its replies.
#[derive(Debug)]
struct InFlight {
    req: Request,
    /// Offset of its first byte in the connection's output stream.
    start: u64,
    /// How long the server may stay silent while this request is the oldest unanswered one
    /// (`None`: forever, a blocking command without a timeout); see [`allowance`].
    allowance: Option<Duration>,
    /// When it was written: the connection counts as hung if it is still unanswered its
    /// allowance later and nothing was read for its allowance either.
    written: Instant,
    got: Vec<Value>,
}

impl InFlight {
    /// When the connection counts as hung with this request the oldest unanswered one, given
    /// when bytes last arrived: silent for its whole allowance since it was written and since
    /// the last read. `None`: never.
    ///
    /// A request nobody waits for any more (its caller timed out or went away) while other
    /// callers wait behind it allows no more than the hang window: an abandoned `BLPOP k 0`
    /// keeps the server silent on this connection forever, and would otherwise wedge every
    /// call behind it.
    fn hung_at(
        &self,
        last_read: Instant,
        hang_window: Duration,
        others_wait: bool,
    ) -> Option<Instant> {
        let allowance = if others_wait && self.req.abandoned() {
            self.allowance.map_or(hang_window, |a| a.min(hang_window))
        } else {
            self.allowance?
        };
        let due = self.written.checked_add(allowance)?;
        let quiet_until = last_read.checked_add(allowance)?;
        Some(due.max(quiet_until))
    }
}

/// How long the server may stay silent while `req` waits before the connection counts as hung:
/// a caller's request allows the hang window or its own patience (a blocking command's timeout
/// plus the response timeout), whichever is longer, so a slow reply fails only its caller at
/// its deadline; the driver's idle health check allows its patience alone.
fn allowance(req: &Request, hang_window: Duration) -> Option<Duration> {
    let patience = req.patience?;
    Some(if req.expect.is_some() {
        patience
    } else {
        patience.max(hang_window)
    })
}

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
/// [`table`](crate::table) (or the caller said so, or [`Delivery::AtLeastOnce`] is set), up to
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
        let driver = Driver {
            shared: Arc::clone(&shared),
            rx,
            pending: VecDeque::new(),
            decoder,
            schedule: ReconnectSchedule::new(shared.config.backoff, Instant::now()),
            tls,
            ready: Some(ready_tx),
        };
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
        let _ = self.tx.send(Request {
            payload: Payload::Encoded(Bytes::new()),
            replies: 0,
            tx: None,
            deadline: None,
            patience: None,
            expect: None,
        });
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

    /// One call with its retries, within one deadline.
    ///
    /// The first attempt is made here; retries, rare, in a boxed future of their own, so that
    /// the state every call carries (and moves through the layers above) stays small.
    fn call(
        &self,
        payload: Payload,
        replies: usize,
        effect: Effect,
        blocking: Blocking,
    ) -> impl Future<Output = Result<Reply, Error>> + Send + '_ {
        let shared = &self.shared;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let timeout = shared.config.response_timeout;
        let patience = match blocking {
            Blocking::No => Some(timeout),
            Blocking::For(d) => d.checked_add(timeout),
            Blocking::Forever => None,
        };
        // A wait past what the clock can count (`BLPOP k 1e20`) is a wait without a deadline.
        let deadline = patience.and_then(|p| Instant::now().checked_add(p));
        let patience = deadline.and(patience);
        let attempt = Attempt {
            replies,
            effect,
            deadline,
            patience,
            number: 1,
        };
        // Queued now, by the caller's first poll (every caller awaits this at once): the
        // future keeps no copy of the payload, only the place its answer will arrive.
        // (A failure to queue is boxed: the future carries it until polled.)
        let queued = self
            .enqueue(payload, replies, patience, deadline)
            .map_err(Box::new);
        async move {
            // In a block of its own, so that the future keeps no room for the first answer
            // while retrying.
            let retry = {
                let (result, back) = answer(queued).await;
                let verdict = self.verdict(&result, back.is_some(), &attempt);
                if verdict == Verdict::Done {
                    return result;
                }
                Box::pin(self.retry(verdict, back, attempt))
            };
            retry.await
        }
    }

    /// The attempts after the first, as long as the verdict on the last one allows.
    async fn retry(
        &self,
        mut verdict: Verdict,
        mut payload: Option<Payload>,
        mut attempt: Attempt,
    ) -> Result<Reply, Error> {
        let shared = &self.shared;
        let mut backoff = Backoff::new(shared.config.backoff);
        // Whether an attempt may have run: then every later error of the call says so, even
        // one whose own attempt was never written.
        let mut may_have_run = verdict == Verdict::Resend;
        loop {
            if verdict == Verdict::Backoff {
                let delay = backoff.next_delay(&mut rand::rng()).unwrap_or_default();
                let delay = match attempt.deadline {
                    Some(d) => delay.min(d.saturating_duration_since(Instant::now())),
                    None => delay,
                };
                tokio::time::sleep(delay).await;
            }
            shared.retries.fetch_add(1, Ordering::Relaxed);
            attempt.number += 1;
            let Some(this) = payload.take() else {
                return Err(Error::Closed {
                    reason: "the request was lost by its connection".into(),
                });
            };
            let queued = self
                .enqueue(this, attempt.replies, attempt.patience, attempt.deadline)
                .map_err(Box::new);
            let (result, back) = answer(queued).await;
            payload = back;
            verdict = self.verdict(&result, payload.is_some(), &attempt);
            if verdict == Verdict::Done {
                return match result {
                    Err(e) if may_have_run => Err(e.after_an_attempt_that_may_have_run()),
                    // The last resend was refused as not executed (`LOADING`..., or a redirect:
                    // `MOVED`, `ASK`, `READONLY`), but an earlier attempt may have run: a bare
                    // error reply would read as "did not run", and a layer that follows the
                    // redirect could no longer tell that the call may have run. Reported, not
                    // followed.
                    Ok(Reply::One(Value::Error(e)))
                        if may_have_run && refused_unexecuted(&ServerError::new(e.clone())) =>
                    {
                        self.shared.errors.fetch_add(1, Ordering::Relaxed);
                        Err(Error::ConnectionLost {
                            addr: shared.addr.clone(),
                            reason: format!(
                                "an earlier attempt may have run, and the resend was refused: {}",
                                String::from_utf8_lossy(&e)
                            ),
                            sent: Sent::Maybe,
                        })
                    }
                    other => other,
                };
            }
            may_have_run |= verdict == Verdict::Resend;
        }
    }

    /// What follows an attempt: the end (counted as an error when it failed), a resend after
    /// a backoff (a transient error reply), or a resend at once (the connection was lost with
    /// the request maybe written, and resending it is safe). Asks the clock only when a retry
    /// is possible: a plain success reads none.
    fn verdict(
        &self,
        result: &Result<Reply, Error>,
        has_payload: bool,
        attempt: &Attempt,
    ) -> Verdict {
        let config = &self.shared.config;
        let more = || {
            has_payload
                && attempt.number < config.max_attempts
                && attempt.deadline.is_none_or(|d| Instant::now() < d)
        };
        match result {
            Ok(Reply::One(Value::Error(e)))
                if ServerError::new(e.clone()).is_transient() && more() =>
            {
                Verdict::Backoff
            }
            Ok(_) => Verdict::Done,
            Err(Error::ConnectionLost {
                sent: Sent::Maybe, ..
            }) if (attempt.effect.is_retry_safe() || config.delivery == Delivery::AtLeastOnce)
                && more() =>
            {
                Verdict::Resend
            }
            Err(_) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                Verdict::Done
            }
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

/// Waits for the driver's answer to a queued request (or takes the error that kept it from
/// being queued). The payload comes back with the answer when a retry may need it.
async fn answer(
    queued: Result<SlotRx<Answer>, Box<Error>>,
) -> (Result<Reply, Error>, Option<Payload>) {
    match queued {
        Ok(rx) => match rx.await {
            Ok(answer) => (answer.result, answer.payload),
            Err(()) => {
                let error = Error::Closed {
                    reason: "the connection's driver has stopped".into(),
                };
                (Err(error), None)
            }
        },
        Err(e) => (Err(*e), None),
    }
}

/// Error replies that say the server did not run the command: transient refusals and
/// redirects.
fn refused_unexecuted(e: &ServerError) -> bool {
    e.is_transient() || e.is_moved() || e.is_ask() || e.is_readonly()
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

/// Why `serve` returned.
enum Exit {
    /// Every handle is gone, or `close` was called.
    Closed,
    /// The connection broke.
    Broken(String),
}

/// Lowers `slot` to `t` when `t` is earlier.
fn bump(slot: &mut Option<Instant>, t: Option<Instant>) {
    if let Some(t) = t {
        if slot.is_none_or(|s| t < s) {
            *slot = Some(t);
        }
    }
}

/// The task that owns the socket.
struct Driver {
    shared: Arc<Shared>,
    rx: QueueRx<Request>,
    /// Accepted, not yet written: backlog during a reconnect, and requests put back.
    pending: VecDeque<Request>,
    decoder: Decoder,
    tls: Option<TlsPair>,
    /// Told when serving starts for the first time.
    ready: Option<oneshot::Sender<()>>,
    /// When to reconnect: the backoff, started over only by a connection that proved healthy.
    schedule: ReconnectSchedule,
}

impl Driver {
    async fn run(mut self, mut stream: Stream, mut buf: BytesMut) {
        let addr = self.shared.addr.clone();
        loop {
            let reason = match self.serve(stream, buf).await {
                Exit::Closed => return self.shut("the connection was closed"),
                // Closed by the application while the socket was failing: nothing to report.
                Exit::Broken(_) if self.shared.closed.load(Ordering::Acquire) => {
                    return self.shut("the connection was closed");
                }
                Exit::Broken(reason) if !self.shared.config.reconnect => {
                    self.shared.events.emit(Event::Disconnected {
                        addr: addr.clone(),
                        reason: reason.clone(),
                    });
                    return self.shut_with(
                        &format!("connection lost ({reason}) and reconnect is off"),
                        Some(reason),
                    );
                }
                Exit::Broken(reason) => reason,
            };
            self.shared.connected.store(false, Ordering::Release);
            tracing::info!(addr = %addr, reason = %reason, "connection lost; reconnecting");
            self.shared.events.emit(Event::Disconnected {
                addr: addr.clone(),
                reason,
            });
            let down_since = Instant::now();
            // A connection that never proved healthy (it closed right after the handshake, say)
            // counts as a failed attempt: the first attempt waits, as after a refused connect.
            let Some(first_wait) = self.schedule.lost(down_since, &mut rand::rng()) else {
                return self.shut(
                    "gave up reconnecting: the attempt limit was reached (the last connection was \
                     lost before it proved healthy)",
                );
            };
            if !first_wait.is_zero() {
                tracing::debug!(
                    addr = %addr,
                    wait = ?first_wait,
                    "the connection was lost before it proved healthy; backing off"
                );
                if !self.wait_disconnected(first_wait).await {
                    return self.shut("the connection was closed");
                }
            }
            let mut attempt = 0u32;
            let mut reported: Option<String> = None;
            loop {
                attempt += 1;
                // Keep answering callers (deadlines, fail-fast) while the attempt runs.
                let shared = Arc::clone(&self.shared);
                let tls = self.tls.clone();
                let attempt_fut = open(&shared.config, tls.as_ref(), &addr);
                tokio::pin!(attempt_fut);
                let opened = loop {
                    tokio::select! {
                        r = &mut attempt_fut => break r,
                        alive = self.wait_disconnected(Duration::from_secs(3600)) => {
                            if !alive {
                                return self.shut("the connection was closed");
                            }
                        }
                    }
                };
                match opened {
                    Ok((s, b, decoder)) => {
                        stream = s;
                        buf = b;
                        self.decoder = decoder;
                        self.schedule.connected(Instant::now());
                        self.shared.connected.store(true, Ordering::Release);
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        self.shared.events.emit(Event::Reconnected {
                            addr: addr.clone(),
                            attempts: attempt,
                            downtime: down_since.elapsed(),
                        });
                        break;
                    }
                    Err(error) => {
                        self.shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                        let Some(mut delay) = self.schedule.failed(&mut rand::rng()) else {
                            return self.shut(&format!(
                                "gave up reconnecting after {attempt} attempts: {error}"
                            ));
                        };
                        if error.is_permanent() {
                            // The same attempt will fail the same way: wait the longest delay,
                            // fail what waits, and say it once.
                            delay = self.schedule.longest_delay();
                            for req in self.pending.drain(..) {
                                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                                req.fail(error.clone());
                            }
                            if reported.as_deref() != Some(&error.to_string()) {
                                reported = Some(error.to_string());
                                tracing::error!(addr = %addr, error = %error, "reconnect refused");
                                self.shared.events.emit(Event::Error {
                                    addr: addr.clone(),
                                    error: error.clone(),
                                });
                            }
                        }
                        self.shared.events.emit(Event::ReconnectFailed {
                            addr: addr.clone(),
                            attempt,
                            error,
                            next_delay: delay,
                        });
                        if !self.wait_disconnected(delay).await {
                            return self.shut("the connection was closed");
                        }
                    }
                }
            }
        }
    }

    /// The error for a request whose deadline passed.
    fn timeout_error(&self, req: &Request, sent: Sent) -> Error {
        Error::Timeout {
            timeout: req.patience.unwrap_or(self.shared.config.response_timeout),
            sent,
        }
    }

    /// Takes a request out of the queue for writing: `None` when its caller went away or its
    /// deadline passed (then it is answered with a timeout, `Sent::No`).
    fn take(&self, req: Request, now: Instant) -> Option<Request> {
        self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        if req.abandoned() {
            return None;
        }
        if req.deadline.is_some_and(|d| d <= now) {
            let error = self.timeout_error(&req, Sent::No);
            req.fail(error);
            return None;
        }
        Some(req)
    }

    /// Answers queued requests whose deadline passed and drops abandoned ones; returns the
    /// earliest deadline left.
    fn expire_pending(&mut self, now: Instant) -> Option<Instant> {
        let mut earliest = None;
        let mut kept = VecDeque::with_capacity(self.pending.len());
        while let Some(req) = self.pending.pop_front() {
            if req.abandoned() || req.deadline.is_some_and(|d| d <= now) {
                // `take` answers or drops it, since it is abandoned or expired.
                let _ = self.take(req, now);
            } else {
                bump(&mut earliest, req.deadline);
                kept.push_back(req);
            }
        }
        self.pending = kept;
        earliest
    }

    /// Sleeps through a backoff delay while taking in requests and expiring them at their
    /// deadlines. False when the connection was closed meanwhile.
    async fn wait_disconnected(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.shared.closed.load(Ordering::Acquire) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            let mut wake = Some(until);
            bump(&mut wake, self.expire_pending(now));
            let wake = wake.unwrap_or(until);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                ready = self.rx.ready() => {
                    if !ready {
                        return false;
                    }
                    if self.shared.config.fail_fast {
                        let mut refused = VecDeque::new();
                        self.rx.drain_into(&mut refused);
                        for req in refused {
                            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                            req.fail(Error::ConnectionLost {
                                addr: self.shared.addr.clone(),
                                reason: "disconnected, and fail-fast is set".into(),
                                sent: Sent::No,
                            });
                        }
                    } else {
                        self.rx.drain_into(&mut self.pending);
                    }
                },
            }
        }
    }

    /// Fails everything still waiting and marks the connection closed.
    fn shut(self, reason: &str) {
        self.shut_with(reason, None);
    }

    /// Like `shut`; when the connection broke (`lost`), unwritten requests learn that they
    /// were not sent.
    fn shut_with(mut self, reason: &str, lost: Option<String>) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.connected.store(false, Ordering::Release);
        self.rx.close();
        let error = match lost {
            Some(why) => Error::ConnectionLost {
                addr: self.shared.addr.clone(),
                reason: why,
                sent: Sent::No,
            },
            None => Error::Closed {
                reason: reason.to_string(),
            },
        };
        self.rx.drain_into(&mut self.pending);
        for req in self.pending.drain(..) {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            req.fail(error.clone());
        }
        self.shared.events.emit(Event::Closed {
            addr: self.shared.addr.clone(),
            reason: reason.to_string(),
        });
    }

    /// Serves one live connection until it breaks or the connection is closed.
    async fn serve(&mut self, stream: Stream, rbuf: BytesMut) -> Exit {
        let peek = transport::PeekHandle::of(&stream);
        match stream {
            // Plain TCP splits without a lock between the halves.
            Stream::Tcp(tcp) => {
                let (rd, wr) = tcp.into_split();
                self.serve_halves(rd, wr, peek, rbuf).await
            }
            other => {
                let (rd, wr) = tokio::io::split(other);
                self.serve_halves(rd, wr, peek, rbuf).await
            }
        }
    }

    async fn serve_halves<R, W>(
        &mut self,
        mut rd: R,
        mut wr: W,
        peek: transport::PeekHandle,
        mut rbuf: BytesMut,
    ) -> Exit
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let shared = Arc::clone(&self.shared);
        // A local, so dropped before the halves (parameters drop last) on every return: the
        // descriptor is never peeked at once the stream has closed it.
        let _peek = PeekGuard::set(&shared, peek);
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
        let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut enqueued: u64 = 0;
        let mut written: u64 = 0;
        let mut needs_flush = false;
        let mut last_activity = Instant::now();
        let mut closing = false;
        // Requests gathered into the last batch: more than one means callers are concurrent.
        let mut last_batch = 0usize;
        // Since when the driver has had nothing to write and replies to wait for, and whether it
        // polls in this wait. The wall clock, not tokio's: polling must stay bounded in real time
        // even on a paused test clock, which does not move while a task keeps yielding.
        let mut waiting: Option<(std::time::Instant, bool)> = None;
        let mut gauge = SpinGauge::new(shared.config.spin_wait);
        let health = shared.config.health_check_interval;
        // One timer for every deadline: armed at the earliest moment something may be due
        // (a caller's deadline, a hung connection, an idle health check), so that calls cost no
        // timer of their own.
        let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
        let mut armed: Option<Instant> = None;
        // The armed moment has passed though the timer has not fired: the select below prefers
        // reads, and a socket that never runs dry (a server flooding replies or pushes) would
        // keep its timer from ever being polled, so calls would outlive their deadlines. Set
        // after a read, it makes the next select skip reading until the timer has fired.
        let mut overdue = false;
        let mut next_check: Option<Instant> = health.map(|i| last_activity + i);
        for req in &self.pending {
            bump(&mut next_check, req.deadline);
        }

        let broken = |reason: String,
                      inflight: &mut VecDeque<InFlight>,
                      written: u64,
                      pending: &mut VecDeque<Request>| {
            // Unwritten requests go back to the queue in order; the others may have run.
            while let Some(entry) = inflight.pop_back() {
                if entry.req.abandoned() {
                    continue;
                }
                if entry.start >= written {
                    shared.queued.fetch_add(1, Ordering::AcqRel);
                    pending.push_front(entry.req);
                } else {
                    entry.req.fail(Error::ConnectionLost {
                        addr: shared.addr.clone(),
                        reason: reason.clone(),
                        sent: Sent::Maybe,
                    });
                }
            }
            Exit::Broken(reason)
        };

        loop {
            // Route the complete replies in the read buffer, a share of the requests in flight at
            // a time (see `DISPATCH_SHARE`): `more` says that some are left for the next pass.
            let mut answered = 0usize;
            let mut woken = 0usize;
            let mut more = false;
            let chunk = (inflight.len() / DISPATCH_SHARE).max(DISPATCH_MIN);
            loop {
                // A pipeline's replies are read in a run, straight into its list (all but the
                // last one, which completes it through `dispatch`).
                let mut failed = None;
                if let Some(front) = inflight.front_mut() {
                    let left = front.req.replies.saturating_sub(front.got.len() + 1);
                    if left > 0 {
                        let before = front.got.len();
                        let read = self.decoder.decode_into(&mut rbuf, &mut front.got, left);
                        let n = front.got.len() - before;
                        answered += n;
                        // Push messages are not replies (see `dispatch`).
                        if front.got[before..].iter().any(Value::is_push) {
                            front.got.retain(|v| !v.is_push());
                        }
                        match read {
                            Ok(_) if n > 0 => continue,
                            Ok(_) => {}
                            Err(source) => failed = Some(source),
                        }
                    }
                }
                let decoded = match failed {
                    Some(source) => Err(source),
                    None => self.decoder.decode(&mut rbuf),
                };
                match decoded {
                    Ok(Some(value)) => {
                        answered += 1;
                        match dispatch(value, &mut inflight) {
                            Ok(true) => {
                                // A whole reply to a request: the connection is healthy.
                                self.schedule.served();
                                woken += 1;
                                if woken >= chunk && !inflight.is_empty() {
                                    more = true;
                                    break;
                                }
                            }
                            Ok(false) => {}
                            Err(reason) => {
                                return broken(reason, &mut inflight, written, &mut self.pending);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(source) => {
                        let error = Error::Protocol {
                            addr: shared.addr.clone(),
                            source,
                        };
                        shared.events.emit(Event::Error {
                            addr: shared.addr.clone(),
                            error: error.clone(),
                        });
                        return broken(
                            error.to_string(),
                            &mut inflight,
                            written,
                            &mut self.pending,
                        );
                    }
                }
            }
            // A wait for replies ends with a whole reply, not with any bytes: a reply trickling
            // in (a slow link, a 1-byte-slicing proxy) is a long wait, which turns polling off.
            if answered > 0 {
                if let Some((since, true)) = waiting.take() {
                    gauge.waited(since.elapsed());
                }
            }
            if shared.closed.load(Ordering::Acquire) {
                closing = true;
            }
            if answered > 1 {
                // The callers just answered usually send their next command at once: let them
                // run first (one scheduler pass), so that those commands leave together in the
                // next write instead of one write each.
                tokio::task::yield_now().await;
            }
            // Gather everything waiting into one write.
            if !closing && wbuf.len() < MAX_WRITE_BATCH {
                let now = Instant::now();
                let mut gathered = 0usize;
                if !self.rx.drain_into(&mut self.pending) {
                    closing = true;
                }
                while wbuf.len() < MAX_WRITE_BATCH {
                    let Some(req) = self.pending.pop_front() else {
                        break;
                    };
                    let Some(req) = self.take(req, now) else {
                        continue;
                    };
                    let before = wbuf.len();
                    req.write_to(&mut wbuf);
                    let start = enqueued;
                    enqueued += (wbuf.len() - before) as u64;
                    let allowance = allowance(&req, shared.config.hang_window);
                    let due = allowance.and_then(|a| now.checked_add(a));
                    bump(&mut next_check, req.deadline);
                    bump(&mut next_check, due);
                    if inflight
                        .front()
                        .is_some_and(|f: &InFlight| f.allowance.is_none())
                    {
                        // Behind a request that may block forever: check on it once the hang
                        // window has passed (see `InFlight::hung_at`).
                        bump(&mut next_check, now.checked_add(shared.config.hang_window));
                    }
                    let got = if req.replies > 1 {
                        Vec::with_capacity(req.replies.min(1024))
                    } else {
                        Vec::new()
                    };
                    inflight.push_back(InFlight {
                        req,
                        start,
                        allowance,
                        written: now,
                        got,
                    });
                    gathered += 1;
                }
                if gathered > 0 {
                    last_batch = gathered;
                }
            }
            // Closing waits for the replies somebody still waits for, not for abandoned ones (a
            // blocking command whose caller gave up would hold the socket open forever).
            if closing && wbuf.is_empty() && inflight.iter().all(|e| e.req.abandoned()) {
                return Exit::Closed;
            }
            if next_check != armed {
                if let Some(at) = next_check {
                    timer.as_mut().reset(at);
                }
                armed = next_check;
            }
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 2 {
                rbuf.reserve(READ_CHUNK);
            }
            // Replies still to hand out: no wait before they are.
            if more && wbuf.is_empty() {
                continue;
            }
            // Waiting for replies: note since when, and poll for them a little before sleeping
            // when they have lately come that soon (see `SpinGauge`).
            let mut spun = None;
            if wbuf.is_empty() && !inflight.is_empty() && !closing && !overdue {
                let (since, polled) =
                    *waiting.get_or_insert_with(|| (std::time::Instant::now(), gauge.begin()));
                if polled {
                    let until = since + gauge.budget;
                    while spun.is_none() && std::time::Instant::now() < until && self.rx.len() == 0
                    {
                        spun = tokio::select! {
                            biased;
                            r = rd.read_buf(&mut rbuf) => Some(r),
                            () = tokio::task::yield_now() => None,
                        };
                    }
                }
            }
            // Every branch but the read goes round the loop again; a read (polled for above, or
            // waited for here) is handled below.
            let read = if let Some(read) = spun {
                read
            } else {
                tokio::select! {
                    biased;
                    read = rd.read_buf(&mut rbuf), if !overdue || armed.is_none() => read,
                    io = write_or_flush(&mut wr, &wbuf), if !wbuf.is_empty() || needs_flush => {
                        match io {
                            Ok(Some(0)) => {
                                return broken(
                                    "write returned 0".into(),
                                    &mut inflight,
                                    written,
                                    &mut self.pending,
                                );
                            }
                            Ok(Some(n)) => {
                                shared.writes.fetch_add(1, Ordering::Relaxed);
                                wbuf.advance(n);
                                written += n as u64;
                                needs_flush = true;
                                // A new wait for replies starts from the last write.
                                waiting = None;
                            }
                            Ok(None) => needs_flush = false,
                            Err(e) => {
                                return broken(
                                    format!("write failed: {e}"),
                                    &mut inflight,
                                    written,
                                    &mut self.pending,
                                );
                            }
                        }
                        continue;
                    },
                    ready = self.rx.ready(), if wbuf.is_empty() && !closing => {
                        if ready {
                            // Woken by one caller while others are about to send (tokio runs a
                            // task woken from a worker right after its waker): with concurrent
                            // callers, let them run first, so that their commands share this
                            // write. A lone sequential caller pays no such pass. (The requests
                            // are taken, and their deadlines armed, when the loop gathers them.)
                            let concurrent = last_batch > 1 || !inflight.is_empty();
                            if concurrent && self.rx.len() <= 1 {
                                tokio::task::yield_now().await;
                            }
                        } else {
                            closing = true;
                        }
                        continue;
                    },
                    () = &mut timer, if armed.is_some() => {
                        let now = Instant::now();
                        armed = None;
                        overdue = false;
                        next_check = None;
                        // Callers whose deadline passed get their answer now; their replies will be
                        // read and dropped when they come.
                        for entry in inflight.iter_mut() {
                            if entry.req.tx.is_none() {
                                continue;
                            }
                            match entry.req.deadline {
                                Some(d) if d <= now => {
                                    let error = self.timeout_error(&entry.req, Sent::Maybe);
                                    if let Some(tx) = entry.req.tx.take() {
                                        let _ = tx.send(Answer {
                                            result: Err(error),
                                            payload: None,
                                        });
                                    }
                                }
                                other => bump(&mut next_check, other),
                            }
                        }
                        // Reads move the moment on: a server that answers slowly but answers is
                        // not hung (`last_activity` is the last read, or the write of the idle
                        // health check, which is then the only request).
                        if let Some(front) = inflight.front() {
                            let others_wait =
                                inflight.iter().skip(1).any(|e| !e.req.abandoned());
                            let hung_at = front.hung_at(
                                last_activity,
                                shared.config.hang_window,
                                others_wait,
                            );
                            if hung_at.is_some_and(|t| t <= now) {
                                let reason = format!(
                                    "silent for {:?} while a call waited: the connection is considered hung",
                                    front.allowance.unwrap_or_default()
                                );
                                return broken(reason, &mut inflight, written, &mut self.pending);
                            }
                            bump(&mut next_check, hung_at);
                        }
                        let earliest = self.expire_pending(now);
                        bump(&mut next_check, earliest);
                        if let Some(interval) = health {
                            let idle = inflight.is_empty() && self.pending.is_empty() && wbuf.is_empty();
                            if idle && now >= last_activity + interval && !closing {
                                self.pending.push_back(health_ping(shared.config.response_timeout));
                                shared.queued.fetch_add(1, Ordering::AcqRel);
                                last_activity = now;
                            }
                            bump(&mut next_check, Some(last_activity + interval));
                        }
                        continue;
                    },
                }
            };
            match read {
                Ok(0) => {
                    return broken(
                        "closed by the server".into(),
                        &mut inflight,
                        written,
                        &mut self.pending,
                    );
                }
                Ok(_) => {
                    shared.reads.fetch_add(1, Ordering::Relaxed);
                    last_activity = Instant::now();
                    overdue = armed.is_some_and(|at| at <= last_activity);
                }
                Err(e) => {
                    return broken(
                        format!("read failed: {e}"),
                        &mut inflight,
                        written,
                        &mut self.pending,
                    );
                }
            }
        }
    }
}

/// Publishes the live socket for `Connection::is_broken`, and withdraws it when dropped.
struct PeekGuard<'a>(&'a Shared);

impl<'a> PeekGuard<'a> {
    fn set(shared: &'a Shared, handle: transport::PeekHandle) -> PeekGuard<'a> {
        *shared.peek.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        PeekGuard(shared)
    }
}

impl Drop for PeekGuard<'_> {
    fn drop(&mut self) {
        // Serving ends only when the connection broke or closes: say so before the socket can
        // no longer be peeked at, so that `is_broken` never sees a gap.
        self.0.connected.store(false, Ordering::Release);
        *self.0.peek.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The driver's own `PING <nonce>` for an idle connection.
fn health_ping(patience: Duration) -> Request {
    let nonce = Bytes::from(format!("idle-{}", rand::random::<u64>()));
    let mut out = BytesMut::new();
    Cmd::new("PING").arg(&nonce).write_to(&mut out);
    Request {
        payload: Payload::Encoded(out.freeze()),
        replies: 1,
        tx: None,
        deadline: None,
        patience: Some(patience),
        expect: Some(Box::new(nonce)),
    }
}

/// Writes what the buffer holds (one call), or flushes once it is empty. Cancel-safe: a write
/// either happened (and its count is returned) or did not.
async fn write_or_flush<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
) -> std::io::Result<Option<usize>> {
    if buf.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write(buf).await.map(Some)
    }
}

/// Gives a reply to the oldest request waiting, and says whether that completed it (a pipeline
/// waits for all its replies). RESP3 pushes are out of band and skipped.
fn dispatch(value: Value, inflight: &mut VecDeque<InFlight>) -> Result<bool, String> {
    if value.is_push() {
        return Ok(false);
    }
    let Some(front) = inflight.front_mut() else {
        return Err(format!(
            "unexpected reply with no request waiting ({}): the stream is out of step",
            value.kind()
        ));
    };
    let reply = if front.req.replies == 1 {
        Reply::One(value)
    } else {
        front.got.push(value);
        if front.got.len() < front.req.replies {
            return Ok(false);
        }
        Reply::Many(std::mem::take(&mut front.got))
    };
    let Some(done) = inflight.pop_front() else {
        return Ok(false);
    };
    let Request {
        tx,
        expect,
        payload,
        ..
    } = done.req;
    match (tx, &expect) {
        (Some(tx), _) => {
            let _ = tx.send(Answer {
                result: Ok(reply),
                payload: Some(payload),
            });
        }
        (None, Some(nonce)) => {
            let echoed = match &reply {
                Reply::One(v) => v.as_bytes(),
                Reply::Many(v) => v.first().and_then(Value::as_bytes),
            };
            if echoed != Some(&**nonce) {
                return Err(format!(
                    "health check PING got {reply:?} instead of its nonce: the stream is out of \
                     step"
                ));
            }
        }
        (None, None) => {}
    }
    Ok(true)
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

/// Decides whether to poll for replies before sleeping.
///
/// A thread that sleeps in the kernel and is woken by the reply pays the wake-up: tens of
/// microseconds on a virtual machine, longer than a local server takes to answer many commands.
/// Polling instead (yielding to the runtime's other tasks in between) picks the reply up as it
/// lands. That is only worth it when replies come within the budget, so the gauge polls while most
/// recent polled waits ended within it, and stops after a run of waits that outlasted it: a server
/// further away (round trips of a few hundred microseconds and more) costs one budget of polling
/// per [`SpinGauge::PROBE_EVERY`] waits, the probe that notices when replies come quickly again
/// (and turns polling back on for the next waits to confirm).
///
/// Only polled waits count: a wait that slept lasts the wake-up longer than the same wait polled,
/// and judging polling by slept waits would keep it off for exactly the replies it would catch.
#[derive(Debug)]
struct SpinGauge {
    budget: Duration,
    /// Share of recent polled waits that ended within the budget, out of [`SpinGauge::FULL`]
    /// (a moving average, 1/8 weight for the newest).
    caught: u32,
    /// Waits skipped while off since the last probe.
    skipped: u32,
}

impl SpinGauge {
    const FULL: u32 = 256;
    /// While off, one wait in this many is polled anyway.
    const PROBE_EVERY: u32 = 64;

    fn new(budget: Duration) -> SpinGauge {
        SpinGauge {
            budget,
            caught: Self::FULL,
            skipped: 0,
        }
    }

    /// Decides, as a wait for replies starts, whether it polls.
    fn begin(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        if self.caught >= Self::FULL / 2 {
            return true;
        }
        self.skipped += 1;
        if self.skipped >= Self::PROBE_EVERY {
            self.skipped = 0;
            return true;
        }
        false
    }

    /// Records how long a polled wait lasted.
    fn waited(&mut self, wait: Duration) {
        if wait > self.budget {
            self.caught = self.caught * 7 / 8;
        } else if self.caught < Self::FULL / 2 {
            // A probe caught its reply: polling is on again, for the next waits to confirm.
            self.caught = Self::FULL / 2;
        } else {
            self.caught = (self.caught * 7 + Self::FULL) / 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `waits` waits of `wait` each through the gauge; returns how many it polled.
    fn polled(gauge: &mut SpinGauge, waits: u32, wait: Duration) -> u32 {
        let mut polled = 0;
        for _ in 0..waits {
            if gauge.begin() {
                gauge.waited(wait);
                polled += 1;
            }
        }
        polled
    }

    #[test]
    fn the_spin_gauge_polls_only_while_replies_come_within_its_budget() {
        let budget = Duration::from_micros(50);
        let mut gauge = SpinGauge::new(budget);
        assert_eq!(
            polled(&mut gauge, 100, Duration::from_micros(40)),
            100,
            "a near server keeps it on"
        );
        // One stall among fast replies does not turn it off.
        assert!(gauge.begin());
        gauge.waited(Duration::from_secs(2));
        assert_eq!(polled(&mut gauge, 100, Duration::from_micros(40)), 100);
        // A distant server (300 us round trips) turns it off within a few waits...
        let mut misses = 0;
        while gauge.begin() {
            gauge.waited(Duration::from_micros(300));
            misses += 1;
        }
        assert!(misses <= 8, "{misses} waits to notice");
        // ...and then polls only one wait in PROBE_EVERY.
        let waits = SpinGauge::PROBE_EVERY * 100;
        let probes = polled(&mut gauge, waits, Duration::from_micros(300));
        assert_eq!(probes, 100, "{probes} polled waits out of {waits}");
        // Replies coming fast again are noticed by the next probe.
        let mut waits = 0;
        while !gauge.begin() {
            waits += 1;
        }
        gauge.waited(Duration::from_micros(20));
        assert!(waits < SpinGauge::PROBE_EVERY, "{waits} waits to the probe");
        assert_eq!(polled(&mut gauge, 100, Duration::from_micros(20)), 100);
        // Two replies in three within the budget keep it polling; one in three does not.
        for (within, least, most) in [(2, 990, 1000), (1, 0, 100)] {
            let mut gauge = SpinGauge::new(budget);
            let mut polled_waits = 0;
            for i in 0..1000 {
                if gauge.begin() {
                    polled_waits += 1;
                    let us = if i % 3 < within { 30 } else { 70 };
                    gauge.waited(Duration::from_micros(us));
                }
            }
            assert!(
                (least..=most).contains(&polled_waits),
                "{within} in 3 within: {polled_waits} of 1,000 polled"
            );
        }
        assert!(!SpinGauge::new(Duration::ZERO).begin(), "zero is off");
    }

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
