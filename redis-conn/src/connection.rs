//! The multiplexed connection: a cloneable handle, a driver task that owns the socket, implicit
//! pipelining of concurrent callers, in-order reply routing, reconnect with backoff, honest retries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use resp_codec::{Decoder, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::events::{Event, EventSink};
use crate::handshake::{handshake, Spoken};
use crate::table::{Blocking, Effect};
use crate::transport::{self, Stream};
use crate::{Backoff, Cmd, ConnectionConfig, Delivery, Error, Sent, ServerError, TlsConfig};

/// A request waiting to be written.
const QUEUED: u8 = 0;
/// Claimed by the driver: its bytes are (being) written.
const WRITTEN: u8 = 1;
/// Given up by its caller before it was written: it will never be sent.
const CANCELLED: u8 = 2;

/// Reads are made into at least this much free buffer space.
const READ_CHUNK: usize = 16 * 1024;
/// The driver stops gathering requests into one write beyond this many bytes.
const MAX_WRITE_BATCH: usize = 1024 * 1024;

type ReplyTx = oneshot::Sender<Result<Vec<Value>, Error>>;

/// One request: the encoded bytes of one command or a pipeline, and where its replies go.
#[derive(Debug)]
struct Request {
    bytes: Bytes,
    replies: usize,
    state: Arc<AtomicU8>,
    /// `None` for the driver's own health checks.
    tx: Option<ReplyTx>,
    /// How long a written request may wait for its first reply before the connection is
    /// considered hung (`None`: blocks forever by design).
    patience: Option<Duration>,
    /// For health checks: the nonce the reply must echo.
    expect: Option<Bytes>,
}

impl Request {
    /// Takes the request for writing. False when its caller gave up (or went away) first.
    fn claim(&self, shared: &Shared) -> bool {
        let gone = self.tx.as_ref().is_some_and(|tx| tx.is_closed());
        let to = if gone { CANCELLED } else { WRITTEN };
        match self
            .state
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                shared.queued.fetch_sub(1, Ordering::AcqRel);
                !gone
            }
            // Cancelled by its caller, who already took it off the count.
            Err(_) => false,
        }
    }

    /// Puts a written-but-unsent request back in the queue (the connection broke before any of
    /// its bytes left).
    fn requeue(self, shared: &Shared, pending: &mut VecDeque<Request>) {
        if self.tx.as_ref().is_some_and(|tx| tx.is_closed()) {
            return;
        }
        shared.queued.fetch_add(1, Ordering::AcqRel);
        self.state.store(QUEUED, Ordering::Release);
        pending.push_front(self);
    }

    fn fail(self, error: Error) {
        if let Some(tx) = self.tx {
            let _ = tx.send(Err(error));
        }
    }
}

/// A written request waiting for its replies.
#[derive(Debug)]
struct InFlight {
    req: Request,
    /// Offset of its first byte in the connection's output stream.
    start: u64,
    /// When the connection counts as hung if the request is still unanswered.
    due: Option<Instant>,
    got: Vec<Value>,
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
    /// Requests waiting to be written right now.
    pub queued: usize,
    /// Whether the connection is up right now.
    pub connected: bool,
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
}

/// A multiplexed connection to one server: cheap to clone, shared by any number of tasks.
///
/// Concurrent callers' commands are queued, written together (everything queued when the driver
/// wakes goes out in one write) and their replies routed back in order. The connection is kept
/// alive: when it breaks it reconnects in the background with backoff, and calls wait for it
/// within their deadline.
///
/// # Delivery and retries
/// A command that was never written is sent after the reconnect. A command that may have been
/// written and got no reply is resent only when it is read-only or idempotent (or the caller said
/// so, or [`Delivery::AtLeastOnce`] is set), up to `max_attempts`; otherwise the caller gets
/// [`Error::ConnectionLost`] with [`Sent::Maybe`]. Server error replies are returned as they are,
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
    tx: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
}

type TlsPair = (TlsConfig, Arc<rustls::ClientConfig>);

/// Opens transport and runs the handshake, within the connect timeout.
async fn open(
    config: &ConnectionConfig,
    tls: Option<&TlsPair>,
    addr: &str,
) -> Result<(Stream, BytesMut, Decoder), Error> {
    let attempt = async {
        let mut stream = transport::connect(&config.addr, tls).await?;
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
        let tls = match &config.tls {
            Some(t) => Some((t.clone(), t.client_config()?)),
            None => None,
        };
        if let Some((t, _)) = &tls {
            if t.is_dangerous() {
                tracing::warn!(
                    addr = %addr,
                    skipped = ?t.skipped_checks(),
                    "TLS certificate verification is disabled in part or in whole for this \
                     client: its connections are open to man-in-the-middle attacks"
                );
            }
        }
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
        });
        shared.events.emit(Event::Connected { addr });
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            shared: Arc::clone(&shared),
            rx,
            pending: VecDeque::new(),
            decoder,
            tls,
        };
        tokio::spawn(driver.run(stream, buf));
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
            bytes: Bytes::new(),
            replies: 0,
            state: Arc::new(AtomicU8::new(CANCELLED)),
            tx: None,
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
        let info = cmd.info();
        if info.needs_dedicated_connection {
            return Err(unsupported(&cmd));
        }
        let mut out = BytesMut::new();
        cmd.write_to(&mut out);
        let values = self
            .call(out.freeze(), 1, cmd.effect(), cmd.blocking())
            .await?;
        match values.into_iter().next() {
            Some(Value::Error(e)) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                Err(Error::Server(ServerError::new(e)))
            }
            Some(v) => Ok(v),
            None => Err(Error::Closed {
                reason: "no reply".into(),
            }),
        }
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
        let is = |c: &Cmd, name: &[u8]| c.name().eq_ignore_ascii_case(name);
        let transaction =
            cmds.len() >= 2 && is(&cmds[0], b"MULTI") && is(&cmds[cmds.len() - 1], b"EXEC");
        let mut out = BytesMut::new();
        let mut effect = Effect::ReadOnly;
        let mut blocking = Blocking::No;
        for (i, cmd) in cmds.iter().enumerate() {
            let info = cmd.info();
            let edge = transaction && (i == 0 || i == cmds.len() - 1);
            if info.needs_dedicated_connection && !edge {
                return Err(unsupported(cmd));
            }
            effect = worst_effect(effect, cmd.effect());
            blocking = longest_block(blocking, cmd.blocking());
            cmd.write_to(&mut out);
        }
        self.call(out.freeze(), cmds.len(), effect, blocking).await
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
    async fn call(
        &self,
        bytes: Bytes,
        replies: usize,
        effect: Effect,
        blocking: Blocking,
    ) -> Result<Vec<Value>, Error> {
        let shared = &self.shared;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let timeout = shared.config.response_timeout;
        let (deadline, patience) = match blocking {
            Blocking::No => (Some(Instant::now() + timeout), Some(timeout)),
            Blocking::For(d) => (Some(Instant::now() + d + timeout), Some(d + timeout)),
            Blocking::Forever => (None, None),
        };
        let resend_ok = effect.is_retry_safe() || shared.config.delivery == Delivery::AtLeastOnce;
        let mut backoff = Backoff::new(shared.config.backoff);
        let mut attempt = 1;
        loop {
            let result = self
                .submit(bytes.clone(), replies, patience, deadline, timeout)
                .await;
            let more =
                attempt < shared.config.max_attempts && deadline.is_none_or(|d| Instant::now() < d);
            match &result {
                Err(Error::ConnectionLost {
                    sent: Sent::Maybe, ..
                }) if more && resend_ok => {}
                Ok(values)
                    if more
                        && replies == 1
                        && matches!(&values[0], Value::Error(e)
                            if ServerError::new(e.clone()).is_transient()) =>
                {
                    let delay = backoff.next_delay(&mut rand::rng()).unwrap_or_default();
                    let delay = match deadline {
                        Some(d) => delay.min(d.saturating_duration_since(Instant::now())),
                        None => delay,
                    };
                    tokio::time::sleep(delay).await;
                }
                Err(_) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    return result;
                }
                Ok(_) => return result,
            }
            shared.retries.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
        }
    }

    /// Queues one request and waits for its replies until `deadline`.
    async fn submit(
        &self,
        bytes: Bytes,
        replies: usize,
        patience: Option<Duration>,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<Vec<Value>, Error> {
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
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (tx, rx) = oneshot::channel();
        let request = Request {
            bytes,
            replies,
            state: Arc::clone(&state),
            tx: Some(tx),
            patience,
            expect: None,
        };
        if self.tx.send(request).is_err() {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Closed {
                reason: "the connection's driver has stopped".into(),
            });
        }
        let outcome = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // Withdraw it if it is still waiting to be written; then it never will be.
                    let sent = match state.compare_exchange(
                        QUEUED,
                        CANCELLED,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            shared.queued.fetch_sub(1, Ordering::AcqRel);
                            Sent::No
                        }
                        Err(_) => Sent::Maybe,
                    };
                    return Err(Error::Timeout { timeout, sent });
                }
            },
            None => rx.await,
        };
        outcome.unwrap_or_else(|_| {
            Err(Error::Closed {
                reason: "the connection's driver has stopped".into(),
            })
        })
    }
}

fn unsupported(cmd: &Cmd) -> Error {
    Error::Unsupported(format!(
        "{} changes the connection's state and cannot run on a shared connection; \
         use a dedicated connection (pub/sub, WATCH, MULTI outside a pipeline)",
        String::from_utf8_lossy(cmd.name()).to_ascii_uppercase()
    ))
}

fn worst_effect(a: Effect, b: Effect) -> Effect {
    use Effect::*;
    match (a, b) {
        (NonIdempotent, _) | (_, NonIdempotent) => NonIdempotent,
        (Idempotent, _) | (_, Idempotent) => Idempotent,
        _ => ReadOnly,
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

/// The task that owns the socket.
struct Driver {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Request>,
    /// Accepted, not yet written: backlog during a reconnect, and requests put back.
    pending: VecDeque<Request>,
    decoder: Decoder,
    tls: Option<TlsPair>,
}

impl Driver {
    async fn run(mut self, mut stream: Stream, mut buf: BytesMut) {
        let mut backoff = Backoff::new(self.shared.config.backoff);
        let addr = self.shared.addr.clone();
        loop {
            let reason = match self.serve(stream, buf).await {
                Exit::Closed => return self.shut("the connection was closed"),
                Exit::Broken(reason) => reason,
            };
            self.shared.connected.store(false, Ordering::Release);
            tracing::info!(addr = %addr, reason = %reason, "connection lost; reconnecting");
            self.shared.events.emit(Event::Disconnected {
                addr: addr.clone(),
                reason,
            });
            let down_since = Instant::now();
            let mut attempt = 0u32;
            let mut reported: Option<String> = None;
            loop {
                attempt += 1;
                match open(&self.shared.config, self.tls.as_ref(), &addr).await {
                    Ok((s, b, decoder)) => {
                        stream = s;
                        buf = b;
                        self.decoder = decoder;
                        backoff.reset();
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
                        let Some(mut delay) = backoff.next_delay(&mut rand::rng()) else {
                            return self.shut(&format!(
                                "gave up reconnecting after {attempt} attempts: {error}"
                            ));
                        };
                        if error.is_permanent() {
                            // The same attempt will fail the same way: wait the longest delay,
                            // fail what waits, and say it once.
                            delay = self.shared.config.backoff.ceiling(u32::MAX);
                            for req in self.pending.drain(..) {
                                if req.claim(&self.shared) {
                                    req.fail(error.clone());
                                }
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

    /// Sleeps through a backoff delay while taking in requests. False when the connection was
    /// closed meanwhile.
    async fn wait_disconnected(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            self.pending
                .retain(|r| r.state.load(Ordering::Acquire) != CANCELLED);
            if self.shared.closed.load(Ordering::Acquire) {
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                req = self.rx.recv() => match req {
                    None => return false,
                    Some(req) if self.shared.config.fail_fast => {
                        if req.claim(&self.shared) {
                            req.fail(Error::ConnectionLost {
                                addr: self.shared.addr.clone(),
                                reason: "disconnected, and fail-fast is set".into(),
                                sent: Sent::No,
                            });
                        }
                    }
                    Some(req) => self.pending.push_back(req),
                },
            }
        }
    }

    /// Fails everything still waiting and marks the connection closed.
    fn shut(mut self, reason: &str) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.connected.store(false, Ordering::Release);
        self.rx.close();
        let error = Error::Closed {
            reason: reason.to_string(),
        };
        while let Ok(req) = self.rx.try_recv() {
            self.pending.push_back(req);
        }
        for req in self.pending.drain(..) {
            if req.claim(&self.shared) {
                req.fail(error.clone());
            }
        }
        self.shared.events.emit(Event::Closed {
            addr: self.shared.addr.clone(),
            reason: reason.to_string(),
        });
    }

    /// Serves one live connection until it breaks or the connection is closed.
    async fn serve(&mut self, stream: Stream, mut rbuf: BytesMut) -> Exit {
        let shared = Arc::clone(&self.shared);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut enqueued: u64 = 0;
        let mut written: u64 = 0;
        let mut needs_flush = false;
        let mut last_activity = Instant::now();
        let mut closing = false;
        let health = shared.config.health_check_interval;
        let ping_patience = shared.config.response_timeout;

        let broken = |reason: String,
                      inflight: &mut VecDeque<InFlight>,
                      written: u64,
                      pending: &mut VecDeque<Request>| {
            // Unwritten requests go back to the queue in order; the others may have run.
            while let Some(entry) = inflight.pop_back() {
                if entry.start >= written {
                    entry.req.requeue(&shared, pending);
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
            // Route every complete reply in the read buffer.
            loop {
                match self.decoder.decode(&mut rbuf) {
                    Ok(Some(value)) => {
                        if let Err(reason) = dispatch(value, &mut inflight) {
                            return broken(reason, &mut inflight, written, &mut self.pending);
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
            if shared.closed.load(Ordering::Acquire) {
                closing = true;
            }
            // Gather everything waiting into one write.
            if !closing {
                while wbuf.len() < MAX_WRITE_BATCH {
                    let req = match self.pending.pop_front() {
                        Some(req) => req,
                        None => match self.rx.try_recv() {
                            Ok(req) => req,
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                closing = true;
                                break;
                            }
                        },
                    };
                    if !req.claim(&shared) {
                        continue;
                    }
                    wbuf.extend_from_slice(&req.bytes);
                    let start = enqueued;
                    enqueued += req.bytes.len() as u64;
                    let due = req.patience.map(|p| Instant::now() + p);
                    inflight.push_back(InFlight {
                        got: Vec::with_capacity(req.replies.min(64)),
                        req,
                        start,
                        due,
                    });
                }
            }
            if closing && inflight.is_empty() && wbuf.is_empty() {
                return Exit::Closed;
            }
            let hung_at = inflight.front().and_then(|f| f.due);
            let ping_at = match health {
                Some(interval) if inflight.is_empty() && wbuf.is_empty() && !closing => {
                    Some(last_activity + interval)
                }
                _ => None,
            };
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 2 {
                rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                read = rd.read_buf(&mut rbuf) => match read {
                    Ok(0) => {
                        return broken(
                            "closed by the server".into(),
                            &mut inflight,
                            written,
                            &mut self.pending,
                        );
                    }
                    Ok(_) => last_activity = Instant::now(),
                    Err(e) => {
                        return broken(
                            format!("read failed: {e}"),
                            &mut inflight,
                            written,
                            &mut self.pending,
                        );
                    }
                },
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
                            wbuf.advance(n);
                            written += n as u64;
                            needs_flush = true;
                            last_activity = Instant::now();
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
                },
                req = self.rx.recv(), if wbuf.is_empty() && !closing => match req {
                    Some(req) => self.pending.push_back(req),
                    None => closing = true,
                },
                () = sleep_until_opt(hung_at), if hung_at.is_some() => {
                    return broken(
                        format!(
                            "no reply within {:?}: the connection is considered hung",
                            inflight.front().and_then(|f| f.req.patience).unwrap_or_default()
                        ),
                        &mut inflight,
                        written,
                        &mut self.pending,
                    );
                },
                () = sleep_until_opt(ping_at), if ping_at.is_some() => {
                    let nonce = Bytes::from(format!("idle-{}", rand::random::<u64>()));
                    let mut out = BytesMut::new();
                    Cmd::new("PING").arg(&nonce).write_to(&mut out);
                    shared.queued.fetch_add(1, Ordering::AcqRel);
                    self.pending.push_back(Request {
                        bytes: out.freeze(),
                        replies: 1,
                        state: Arc::new(AtomicU8::new(QUEUED)),
                        tx: None,
                        patience: Some(ping_patience),
                        expect: Some(nonce),
                    });
                    last_activity = Instant::now();
                },
            }
        }
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Gives a reply to the oldest request waiting. RESP3 pushes are out of band and skipped.
fn dispatch(value: Value, inflight: &mut VecDeque<InFlight>) -> Result<(), String> {
    if value.is_push() {
        return Ok(());
    }
    let Some(front) = inflight.front_mut() else {
        return Err(format!(
            "unexpected reply with no request waiting ({}): the stream is out of step",
            value.kind()
        ));
    };
    front.got.push(value);
    if front.got.len() < front.req.replies {
        return Ok(());
    }
    let Some(done) = inflight.pop_front() else {
        return Ok(());
    };
    match (done.req.tx, &done.req.expect) {
        (Some(tx), _) => {
            let _ = tx.send(Ok(done.got));
        }
        (None, Some(nonce)) => {
            let echoed = done.got.first().and_then(Value::as_bytes);
            if echoed != Some(nonce) {
                return Err(format!(
                    "health check PING got {:?} instead of its nonce: the stream is out of step",
                    done.got.first()
                ));
            }
        }
        (None, None) => {}
    }
    Ok(())
}
