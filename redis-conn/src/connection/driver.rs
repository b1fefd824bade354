//! The driver: the task that owns the socket.
//!
//! [`Driver::run`] serves a live connection until it breaks, then reconnects (the reconnect
//! helper of [`crate::reconnect`], shared with the subscriber) and serves again. Serving is a
//! short loop over parts that each own one concern: the in-flight list (routing replies,
//! expiring callers, the hang check, requeueing on a break), the write buffer (gathering queued
//! requests into one write, flushing), the deadlines (one timer for all), the keepalive (the
//! idle health check) and the spin wait (polling for replies before sleeping). The loop hands
//! out replies, gathers what callers queued, and waits for the next thing to happen: a read, a
//! write, a new request, or the timer.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use resp_codec::Decoder;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::deadlines::{keep_earliest, Deadlines};
use super::inflight::{InFlightList, RouteFailure};
use super::keepalive::{health_ping, Keepalive};
use super::request::Request;
use super::spin::SpinWait;
use super::writes::WriteBuffer;
use super::{open, Shared, TlsPair, READ_CHUNK};
use crate::events::{Event, EventSink};
use crate::handoff::QueueRx;
use crate::reconnect::{reconnect, ReconnectSchedule, Reconnected, Reconnecting};
use crate::transport::{self, Stream};
use crate::{Error, Sent};

/// Why serving a connection ended.
enum Exit {
    /// Every handle is gone, or `close` was called.
    Closed,
    /// The connection broke.
    Broken(String),
}

/// What woke the serving loop.
enum Wake {
    /// A read returned (bytes, end of stream or an error).
    Read(std::io::Result<usize>),
    /// A write (`Some(n)`) or a flush (`None`) returned.
    Wrote(std::io::Result<Option<usize>>),
    /// Requests were queued (`false`: every handle is gone).
    Queued(bool),
    /// The timer fired.
    Timer,
}

/// What the loop does after handling a wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Its next pass at once.
    Go,
    /// One scheduler pass first, so that callers about to send join the next write.
    YieldFirst,
}

/// What a pass of handing out replies did.
#[derive(Debug, Clone, Copy)]
struct Handed {
    /// Complete replies are left for the next pass.
    more: bool,
    /// More than one caller was answered (they usually send again at once).
    answered_several: bool,
}

/// The task that owns the socket.
pub(super) struct Driver {
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

/// The state of one live connection, part by part.
struct Session {
    rbuf: BytesMut,
    writes: WriteBuffer,
    inflight: InFlightList,
    deadlines: Deadlines,
    keepalive: Keepalive,
    spin: SpinWait,
    /// The connection is closing: nothing more is written, replies still awaited are read.
    closing: bool,
    /// Requests gathered into the last batch: more than one means callers are concurrent.
    last_batch: usize,
}

impl Driver {
    pub(super) fn new(
        shared: Arc<Shared>,
        rx: QueueRx<Request>,
        decoder: Decoder,
        tls: Option<TlsPair>,
        ready: oneshot::Sender<()>,
    ) -> Driver {
        Driver {
            schedule: ReconnectSchedule::new(shared.config.backoff, Instant::now()),
            shared,
            rx,
            pending: VecDeque::new(),
            decoder,
            tls,
            ready: Some(ready),
        }
    }

    /// Serves the connection, and every connection that replaces it, until it is closed.
    pub(super) async fn run(mut self, mut stream: Stream, mut buf: BytesMut) {
        loop {
            let reason = match self.serve(stream, buf).await {
                Exit::Closed => return self.shut("the connection was closed"),
                // Closed by the application while the socket was failing: nothing to report.
                Exit::Broken(_) if self.shared.closed.load(Ordering::Acquire) => {
                    return self.shut("the connection was closed");
                }
                Exit::Broken(reason) if !self.shared.config.reconnect => {
                    self.emit_disconnected(reason.clone());
                    return self.shut_with(
                        &format!("connection lost ({reason}) and reconnect is off"),
                        Some(reason),
                    );
                }
                Exit::Broken(reason) => reason,
            };
            self.shared.connected.store(false, Ordering::Release);
            tracing::info!(addr = %self.shared.addr, reason = %reason, "connection lost; reconnecting");
            self.emit_disconnected(reason);
            match reconnect(&mut self, Instant::now()).await {
                Reconnected::Up((s, b, decoder)) => {
                    (stream, buf) = (s, b);
                    self.decoder = decoder;
                }
                Reconnected::GaveUp(reason) => return self.shut(&reason),
                Reconnected::Closed => return self.shut("the connection was closed"),
            }
        }
    }

    fn emit_disconnected(&self, reason: String) {
        self.shared.events.emit(Event::Disconnected {
            addr: self.shared.addr.clone(),
            reason,
        });
    }

    /// Takes a request out of the queue for writing: `None` when its caller went away or its
    /// deadline passed (then it is answered with a timeout, `Sent::No`).
    fn dequeue_if_wanted(&self, req: Request, now: Instant) -> Option<Request> {
        self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        if req.abandoned() {
            return None;
        }
        if req.is_expired(now) {
            let error = req.timeout_error(Sent::No, self.shared.config.response_timeout);
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
            if req.abandoned() || req.is_expired(now) {
                // Answered or dropped, since it is abandoned or expired.
                let _ = self.dequeue_if_wanted(req, now);
            } else {
                keep_earliest(&mut earliest, req.deadline);
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
            keep_earliest(&mut wake, self.expire_pending(now));
            let wake = wake.unwrap_or(until);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                ready = self.rx.ready() => {
                    if !ready {
                        return false;
                    }
                    self.take_in_disconnected();
                },
            }
        }
    }

    /// Takes in what callers queued while disconnected: kept for the reconnect, or refused at
    /// once with fail-fast.
    fn take_in_disconnected(&mut self) {
        if !self.shared.config.fail_fast {
            self.rx.drain_into(&mut self.pending);
            return;
        }
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
    }

    /// Fails every queued request with `error`.
    fn fail_pending(&mut self, error: &Error) {
        for req in self.pending.drain(..) {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            req.fail(error.clone());
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
        self.fail_pending(&error);
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

    /// The serving loop: hand out replies, gather what callers queued into one write, wait for
    /// the next thing to happen and handle it, until the connection breaks or closes.
    async fn serve_halves<R, W>(
        &mut self,
        mut rd: R,
        mut wr: W,
        peek: transport::PeekHandle,
        rbuf: BytesMut,
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
        let mut s = self.start_session(rbuf);
        loop {
            let handed = match self.hand_out_replies(&mut s) {
                Ok(handed) => handed,
                Err(reason) => return self.broken(&mut s, reason),
            };
            if handed.answered_several {
                // The callers just answered usually send their next command at once: let them
                // run first (one scheduler pass), so that those commands leave together in the
                // next write instead of one write each.
                tokio::task::yield_now().await;
            }
            let more = handed.more;
            if !s.closing && !s.writes.is_full() {
                self.gather(&mut s);
            }
            if s.closing && s.writes.is_empty() && s.inflight.all_abandoned() {
                return Exit::Closed;
            }
            s.deadlines.arm();
            if s.rbuf.capacity() - s.rbuf.len() < READ_CHUNK / 2 {
                s.rbuf.reserve(READ_CHUNK);
            }
            // Replies still to hand out: no wait before they are.
            if more && s.writes.is_empty() {
                continue;
            }
            let wake = self.next_wake(&mut rd, &mut wr, &mut s).await;
            match self.handle_wake(wake, &mut s) {
                Ok(Next::Go) => {}
                // See `handle_wake`: concurrent callers get a pass to join this write.
                Ok(Next::YieldFirst) => tokio::task::yield_now().await,
                Err(reason) => return self.broken(&mut s, reason),
            }
        }
    }

    /// The parts' state for a connection that just came up.
    fn start_session(&self, rbuf: BytesMut) -> Session {
        let keepalive = Keepalive::new(self.shared.config.health_check_interval, Instant::now());
        let mut deadlines = Deadlines::new(keepalive.next_check());
        for req in &self.pending {
            deadlines.include(req.deadline);
        }
        Session {
            rbuf,
            writes: WriteBuffer::new(),
            inflight: InFlightList::default(),
            deadlines,
            keepalive,
            spin: SpinWait::new(self.shared.config.spin_wait),
            closing: false,
            last_batch: 0,
        }
    }

    /// Routes the complete replies read (a share of the callers at a time); says whether some
    /// are left for the next pass. `Err`: the stream is unreadable, the connection must go.
    /// (Synchronous, as the other steps the loop takes: a step that must yield says so and the
    /// loop yields, which keeps the loop one state machine.)
    fn hand_out_replies(&mut self, s: &mut Session) -> Result<Handed, String> {
        let routed = s.inflight.route_replies(&mut self.decoder, &mut s.rbuf);
        if routed.completed > 0 {
            // A whole reply to a request: the connection is healthy.
            self.schedule.served();
        }
        match routed.failure {
            None => {}
            Some(RouteFailure::OutOfStep(reason)) => return Err(reason),
            Some(RouteFailure::Decode(source)) => {
                let error = Error::Protocol {
                    addr: self.shared.addr.clone(),
                    source,
                };
                self.shared.events.emit(Event::Error {
                    addr: self.shared.addr.clone(),
                    error: error.clone(),
                });
                return Err(error.to_string());
            }
        }
        // A wait for replies ends with a whole reply, not with any bytes (see `SpinWait`).
        if routed.answered > 0 {
            s.spin.replies_arrived();
        }
        if self.shared.closed.load(Ordering::Acquire) {
            s.closing = true;
        }
        Ok(Handed {
            more: routed.more,
            answered_several: routed.answered > 1,
        })
    }

    /// Gathers everything queued into the write buffer (up to one write's worth), each request
    /// into the in-flight list with its deadlines.
    fn gather(&mut self, s: &mut Session) {
        let now = Instant::now();
        let hang_window = self.shared.config.hang_window;
        let mut gathered = 0usize;
        if !self.rx.drain_into(&mut self.pending) {
            s.closing = true;
        }
        while !s.writes.is_full() {
            let Some(req) = self.pending.pop_front() else {
                break;
            };
            let Some(req) = self.dequeue_if_wanted(req, now) else {
                continue;
            };
            let start = s.writes.append(&req);
            let check = s.inflight.push(req, start, now, hang_window);
            s.deadlines.include(check);
            gathered += 1;
        }
        if gathered > 0 {
            s.last_batch = gathered;
        }
    }

    /// Waits for the next thing to happen: a read (polled for a little first when replies have
    /// lately come that soon, see `SpinWait`), a write, queued requests, or the timer.
    async fn next_wake<R, W>(&mut self, rd: &mut R, wr: &mut W, s: &mut Session) -> Wake
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        if let Some(read) = self.spin_for_reply(rd, s).await {
            return Wake::Read(read);
        }
        let may_read = s.deadlines.reads_allowed();
        let may_write = s.writes.has_work();
        let may_take = s.writes.is_empty() && !s.closing;
        let timer_set = s.deadlines.is_armed();
        tokio::select! {
            biased;
            read = rd.read_buf(&mut s.rbuf), if may_read => Wake::Read(read),
            io = s.writes.write_or_flush(wr), if may_write => Wake::Wrote(io),
            ready = self.rx.ready(), if may_take => Wake::Queued(ready),
            () = s.deadlines.timer(), if timer_set => Wake::Timer,
        }
    }

    /// While waiting for replies with nothing to write, polls for them (yielding to the
    /// runtime's other tasks in between) until the spin wait's budget is spent or a caller
    /// queues something. `None`: nothing read.
    async fn spin_for_reply<R>(
        &mut self,
        rd: &mut R,
        s: &mut Session,
    ) -> Option<std::io::Result<usize>>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        let waiting = s.writes.is_empty() && !s.inflight.is_empty();
        if !waiting || s.closing || s.deadlines.is_overdue() {
            return None;
        }
        let until = s.spin.poll_until()?;
        while std::time::Instant::now() < until && self.rx.len() == 0 {
            let read = tokio::select! {
                biased;
                r = rd.read_buf(&mut s.rbuf) => Some(r),
                () = tokio::task::yield_now() => None,
            };
            if read.is_some() {
                return read;
            }
        }
        None
    }

    /// Handles what woke the loop, and says whether the loop should yield before its next
    /// pass. `Err`: the connection broke, why.
    fn handle_wake(&mut self, wake: Wake, s: &mut Session) -> Result<Next, String> {
        match wake {
            Wake::Read(Ok(0)) => Err("closed by the server".into()),
            Wake::Read(Ok(_)) => {
                self.shared.reads.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                s.keepalive.heard(now);
                s.deadlines.note_read(now);
                Ok(Next::Go)
            }
            Wake::Read(Err(e)) => Err(format!("read failed: {e}")),
            Wake::Wrote(Ok(Some(0))) => Err("write returned 0".into()),
            Wake::Wrote(Ok(written)) => {
                if written.is_some() {
                    self.shared.writes.fetch_add(1, Ordering::Relaxed);
                    // A new wait for replies starts from the last write.
                    s.spin.wrote();
                }
                s.writes.wrote(written);
                Ok(Next::Go)
            }
            Wake::Wrote(Err(e)) => Err(format!("write failed: {e}")),
            Wake::Queued(true) => {
                // Woken by one caller while others are about to send (tokio runs a task woken
                // from a worker right after its waker): with concurrent callers, let them run
                // first, so that their commands share this write. A lone sequential caller
                // pays no such pass. (The requests are taken, and their deadlines armed, when
                // the loop gathers them.)
                let concurrent = s.last_batch > 1 || !s.inflight.is_empty();
                if concurrent && self.rx.len() <= 1 {
                    Ok(Next::YieldFirst)
                } else {
                    Ok(Next::Go)
                }
            }
            Wake::Queued(false) => {
                s.closing = true;
                Ok(Next::Go)
            }
            Wake::Timer => self.check_deadlines(s).map(|()| Next::Go),
        }
    }

    /// The timer fired: answers callers whose deadline passed, checks whether the connection
    /// is hung, queues an idle health check when one is due, and gathers the next moment to
    /// look again. `Err`: the connection is hung, why.
    fn check_deadlines(&mut self, s: &mut Session) -> Result<(), String> {
        let now = Instant::now();
        let config = &self.shared.config;
        s.deadlines.fired();
        // Callers whose deadline passed get their answer now; their replies will be read and
        // dropped when they come.
        let next = s.inflight.expire_callers(now, config.response_timeout);
        s.deadlines.include(next);
        // Reads move the moment on: a server that answers slowly but answers is not hung.
        let last_read = s.keepalive.last_activity();
        let next = s.inflight.check_hung(now, last_read, config.hang_window)?;
        s.deadlines.include(next);
        let next = self.expire_pending(now);
        s.deadlines.include(next);
        let idle = s.inflight.is_empty() && self.pending.is_empty() && s.writes.is_empty();
        if s.keepalive.ping_due(now, idle, s.closing) {
            self.pending
                .push_back(health_ping(self.shared.config.response_timeout));
            self.shared.queued.fetch_add(1, Ordering::AcqRel);
            s.keepalive.pinged(now);
        }
        s.deadlines.include(s.keepalive.next_check());
        Ok(())
    }

    /// The connection broke: requests that never left go back to the queue, the others fail
    /// with `Sent::Maybe` (see `InFlightList::break_off`).
    fn broken(&mut self, s: &mut Session, reason: String) -> Exit {
        let written = s.writes.written();
        let addr = &self.shared.addr;
        let requeued = s
            .inflight
            .break_off(written, addr, &reason, &mut self.pending);
        self.shared.queued.fetch_add(requeued, Ordering::AcqRel);
        Exit::Broken(reason)
    }
}

impl Reconnecting for Driver {
    type Opened = (Stream, BytesMut, Decoder);
    const WHAT: &'static str = "connection";

    fn schedule(&mut self) -> &mut ReconnectSchedule {
        &mut self.schedule
    }

    fn events(&self) -> &EventSink {
        &self.shared.events
    }

    fn addr(&self) -> String {
        self.shared.addr.clone()
    }

    /// Connects, while still answering callers (deadlines, fail-fast) as the attempt runs.
    async fn attempt(&mut self) -> Option<(String, Result<Self::Opened, Error>)> {
        let shared = Arc::clone(&self.shared);
        let tls = self.tls.clone();
        let attempt = open(&shared.config, tls.as_ref(), &shared.addr);
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                opened = &mut attempt => return Some((shared.addr.clone(), opened)),
                alive = self.wait_disconnected(Duration::from_secs(3600)) => {
                    if !alive {
                        return None;
                    }
                }
            }
        }
    }

    async fn wait(&mut self, delay: Duration) -> bool {
        self.wait_disconnected(delay).await
    }

    fn attempt_failed(&mut self) {
        self.shared.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    fn refused_for_good(&mut self, error: &Error) {
        self.fail_pending(error);
    }

    fn reconnected(&mut self) {
        self.shared.connected.store(true, Ordering::Release);
        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
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
