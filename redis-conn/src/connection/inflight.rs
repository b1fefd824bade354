//! The in-flight list: requests written and waiting for their replies, oldest first.
//!
//! It owns what happens to them: replies are handed out in order (a share of the callers at a
//! time), callers whose deadline passed are answered with `Sent::Maybe` (their replies are read
//! and dropped when they come), the connection counts as hung when the oldest request waited too
//! long in silence, and when the connection breaks the requests that never left go back to the
//! queue while the others fail with `Sent::Maybe`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use resp_codec::{DecodeError, Decoder, Value};
use tokio::time::Instant;

use super::deadlines::keep_earliest;
use super::request::{Answer, Reply, Request};
use crate::{Error, Sent};

/// The driver hands out at most a sixth of the answers in flight, and no fewer than 8, before
/// it lets their callers run and writes what they send next. Replies come back in the batches
/// they were written in; answering a batch of 50 whole and writing the 50 next commands in one go
/// makes client and server take turns, each idle while the other works. Answering a few at a
/// time keeps several smaller writes in flight: the server executes the first commands while the
/// client still hands out the other replies. With thousands of callers the share keeps the writes
/// large enough not to cost a system call for every few commands. (Measured against answering
/// whole batches, and against a fixed 8, with alternated `rcli bench -t get` runs of 50 to 1,000
/// tasks on one connection.)
const DISPATCH_SHARE: usize = 6;
/// See [`DISPATCH_SHARE`].
const DISPATCH_MIN: usize = 8;

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

/// What one pass of [`InFlightList::route_replies`] did.
#[derive(Debug, Default)]
pub(super) struct Routed {
    /// Values read (replies, parts of pipelines' replies, pushes).
    pub(super) answered: usize,
    /// Requests completed (callers answered, health checks confirmed).
    pub(super) completed: usize,
    /// It stopped at its share: complete replies may be left in the buffer.
    pub(super) more: bool,
    /// The stream cannot be read on: the connection must go.
    pub(super) failure: Option<RouteFailure>,
}

/// Why replies cannot be routed any more.
#[derive(Debug)]
pub(super) enum RouteFailure {
    /// The bytes are not RESP, or break the reply limits.
    Decode(DecodeError),
    /// A reply that belongs to no request, or a health check's wrong echo.
    OutOfStep(String),
}

/// The requests written on the live connection and not yet answered, oldest first.
#[derive(Debug, Default)]
pub(super) struct InFlightList {
    entries: VecDeque<InFlight>,
}

impl InFlightList {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether nobody waits for any of them (closing need not wait for their replies: a
    /// blocking command whose caller gave up would hold the socket open forever).
    pub(super) fn all_abandoned(&self) -> bool {
        self.entries.iter().all(|e| e.req.abandoned())
    }

    /// Adds a request written at `now` from offset `start`; returns the earliest moment the
    /// driver must look at it (its deadline, when it would make the connection hung, and when
    /// it waits behind a request that may block forever, the end of the hang window).
    pub(super) fn push(
        &mut self,
        req: Request,
        start: u64,
        now: Instant,
        hang_window: Duration,
    ) -> Option<Instant> {
        let allowance = allowance(&req, hang_window);
        let mut check = req.deadline;
        keep_earliest(&mut check, allowance.and_then(|a| now.checked_add(a)));
        if self.entries.front().is_some_and(|f| f.allowance.is_none()) {
            // Behind a request that may block forever: check on it once the hang window has
            // passed (see `InFlight::hung_at`).
            keep_earliest(&mut check, now.checked_add(hang_window));
        }
        let got = if req.replies > 1 {
            Vec::with_capacity(req.replies.min(1024))
        } else {
            Vec::new()
        };
        self.entries.push_back(InFlight {
            req,
            start,
            allowance,
            written: now,
            got,
        });
        check
    }

    /// Routes the complete replies in `rbuf`, a share of the requests in flight at a time (see
    /// [`DISPATCH_SHARE`]): [`Routed::more`] says that some are left for the next pass.
    pub(super) fn route_replies(&mut self, decoder: &mut Decoder, rbuf: &mut BytesMut) -> Routed {
        let mut routed = Routed::default();
        let share = (self.entries.len() / DISPATCH_SHARE).max(DISPATCH_MIN);
        loop {
            // A pipeline's replies are read in a run, straight into its list (all but the
            // last one, which completes it through `dispatch`).
            let mut failed = None;
            if let Some(front) = self.entries.front_mut() {
                let left = front.req.replies.saturating_sub(front.got.len() + 1);
                if left > 0 {
                    let before = front.got.len();
                    let read = decoder.decode_into(rbuf, &mut front.got, left);
                    let n = front.got.len() - before;
                    routed.answered += n;
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
                None => decoder.decode(rbuf),
            };
            match decoded {
                Ok(Some(value)) => {
                    routed.answered += 1;
                    match self.dispatch(value) {
                        Ok(true) => {
                            routed.completed += 1;
                            if routed.completed >= share && !self.entries.is_empty() {
                                routed.more = true;
                                return routed;
                            }
                        }
                        Ok(false) => {}
                        Err(reason) => {
                            routed.failure = Some(RouteFailure::OutOfStep(reason));
                            return routed;
                        }
                    }
                }
                Ok(None) => return routed,
                Err(source) => {
                    routed.failure = Some(RouteFailure::Decode(source));
                    return routed;
                }
            }
        }
    }

    /// Gives a reply to the oldest request waiting, and says whether that completed it (a
    /// pipeline waits for all its replies). RESP3 pushes are out of band and skipped. `Err`:
    /// the stream is out of step (a reply with no request, a health check's wrong echo).
    fn dispatch(&mut self, value: Value) -> Result<bool, String> {
        if value.is_push() {
            return Ok(false);
        }
        let Some(front) = self.entries.front_mut() else {
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
        let Some(done) = self.entries.pop_front() else {
            return Ok(false);
        };
        deliver(done.req, reply)?;
        Ok(true)
    }

    /// Answers the callers whose deadline passed at `now` with a timeout (`Sent::Maybe`: they
    /// were written); their replies will be read and dropped when they come. Returns the
    /// earliest deadline left.
    pub(super) fn expire_callers(
        &mut self,
        now: Instant,
        response_timeout: Duration,
    ) -> Option<Instant> {
        let mut earliest = None;
        for entry in self.entries.iter_mut() {
            if entry.req.tx.is_none() {
                continue;
            }
            if entry.req.is_expired(now) {
                let error = entry.req.timeout_error(Sent::Maybe, response_timeout);
                if let Some(tx) = entry.req.tx.take() {
                    let _ = tx.send(Answer {
                        result: Err(error),
                        payload: None,
                    });
                }
            } else {
                keep_earliest(&mut earliest, entry.req.deadline);
            }
        }
        earliest
    }

    /// Whether the connection is hung at `now`, bytes having last arrived at `last_read`:
    /// `Err` with the reason when the oldest request has waited its whole allowance in silence
    /// (see `InFlight::hung_at`), otherwise when to look again (`None`: nothing to look at).
    pub(super) fn check_hung(
        &self,
        now: Instant,
        last_read: Instant,
        hang_window: Duration,
    ) -> Result<Option<Instant>, String> {
        let Some(front) = self.entries.front() else {
            return Ok(None);
        };
        let others_wait = self.entries.iter().skip(1).any(|e| !e.req.abandoned());
        let hung_at = front.hung_at(last_read, hang_window, others_wait);
        if hung_at.is_some_and(|t| t <= now) {
            return Err(format!(
                "silent for {:?} while a call waited: the connection is considered hung",
                front.allowance.unwrap_or_default()
            ));
        }
        Ok(hung_at)
    }

    /// The connection broke after `written` bytes of its output stream: requests that start
    /// at or after it never left and go back to the front of `pending`, in order; the others
    /// may have run and fail with `Sent::Maybe`; abandoned ones are dropped. Returns how many
    /// went back.
    pub(super) fn break_off(
        &mut self,
        written: u64,
        addr: &str,
        reason: &str,
        pending: &mut VecDeque<Request>,
    ) -> usize {
        let mut requeued = 0;
        while let Some(entry) = self.entries.pop_back() {
            if entry.req.abandoned() {
                continue;
            }
            if entry.start >= written {
                requeued += 1;
                pending.push_front(entry.req);
            } else {
                entry.req.fail(Error::ConnectionLost {
                    addr: addr.to_string(),
                    reason: reason.to_string(),
                    sent: Sent::Maybe,
                });
            }
        }
        requeued
    }
}

/// Hands a completed request its reply: to its caller, or for a health check, a check that the
/// reply echoes its nonce (`Err` when not: the stream is out of step).
fn deliver(req: Request, reply: Reply) -> Result<(), String> {
    let Request {
        tx,
        expect,
        payload,
        ..
    } = req;
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::keepalive::health_ping;
    use crate::connection::request::tests::{answered, caller_request};
    use crate::handoff::SlotRx;

    const SECOND: Duration = Duration::from_secs(1);
    const WINDOW: Duration = Duration::from_secs(5);

    /// A list of `n` one-reply requests written at `now`, one byte each, and their answers.
    fn written(n: usize, now: Instant) -> (InFlightList, Vec<SlotRx<Answer>>) {
        let mut list = InFlightList::default();
        let mut answers = Vec::new();
        for start in 0..n {
            let (req, rx) = caller_request(1, Some(now + SECOND), Some(SECOND));
            list.push(req, start as u64, now, WINDOW);
            answers.push(rx);
        }
        (list, answers)
    }

    fn reply(answer: Option<Answer>) -> Option<Value> {
        match answer?.result {
            Ok(Reply::One(v)) => Some(v),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn replies_go_in_order_a_share_at_a_time_and_pushes_are_skipped() {
        let (mut list, answers) = written(10, Instant::now());
        let mut rbuf = BytesMut::from(&b">2\r\n+push\r\n+x\r\n"[..]);
        for i in 0..10 {
            rbuf.extend_from_slice(format!(":{i}\r\n").as_bytes());
        }
        let mut decoder = Decoder::new();
        let routed = list.route_replies(&mut decoder, &mut rbuf);
        assert_eq!(
            (routed.completed, routed.answered),
            (DISPATCH_MIN, DISPATCH_MIN + 1)
        );
        assert!(routed.more && routed.failure.is_none());
        let routed = list.route_replies(&mut decoder, &mut rbuf);
        assert_eq!(routed.completed, 2);
        assert!(!routed.more && list.is_empty());
        for (i, rx) in answers.into_iter().enumerate() {
            assert_eq!(reply(answered(rx)), Some(Value::Integer(i as i64)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipeline_completes_with_its_last_reply() {
        let now = Instant::now();
        let mut list = InFlightList::default();
        let (req, rx) = caller_request(3, None, Some(SECOND));
        list.push(req, 0, now, WINDOW);
        let mut decoder = Decoder::new();
        let mut rbuf = BytesMut::from(&b":1\r\n:2\r\n"[..]);
        assert_eq!(list.route_replies(&mut decoder, &mut rbuf).completed, 0);
        rbuf.extend_from_slice(b":3\r\n");
        assert_eq!(list.route_replies(&mut decoder, &mut rbuf).completed, 1);
        let Some(Answer {
            result: Ok(Reply::Many(values)),
            ..
        }) = answered(rx)
        else {
            panic!("no replies");
        };
        assert_eq!(values, [1, 2, 3].map(Value::Integer));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_nobody_asked_for_or_a_wrong_echo_puts_the_stream_out_of_step() {
        let mut decoder = Decoder::new();
        let mut list = InFlightList::default();
        let mut rbuf = BytesMut::from(&b"+OK\r\n"[..]);
        let routed = list.route_replies(&mut decoder, &mut rbuf);
        assert!(matches!(routed.failure, Some(RouteFailure::OutOfStep(_))));
        list.push(health_ping(SECOND), 0, Instant::now(), WINDOW);
        let mut rbuf = BytesMut::from(&b"$4\r\nidle\r\n"[..]);
        let routed = list.route_replies(&mut decoder, &mut rbuf);
        assert!(matches!(routed.failure, Some(RouteFailure::OutOfStep(r)) if r.contains("nonce")));
        let mut rbuf = BytesMut::from(&b"?\r\n"[..]);
        let routed = list.route_replies(&mut decoder, &mut rbuf);
        assert!(matches!(routed.failure, Some(RouteFailure::Decode(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn callers_past_their_deadline_get_a_timeout_that_may_have_run() {
        let now = Instant::now();
        let mut list = InFlightList::default();
        let (early, early_rx) = caller_request(1, Some(now + SECOND), Some(SECOND));
        let (late, late_rx) = caller_request(1, Some(now + 3 * SECOND), Some(3 * SECOND));
        list.push(early, 0, now, WINDOW);
        list.push(late, 1, now, WINDOW);
        assert_eq!(
            list.expire_callers(now + SECOND, SECOND),
            Some(now + 3 * SECOND)
        );
        let Some(Answer {
            result: Err(Error::Timeout { sent, .. }),
            payload: None,
        }) = answered(early_rx)
        else {
            panic!("no timeout");
        };
        assert_eq!(sent, Sent::Maybe);
        // Its entry stays, for its reply to be read and dropped; nobody waits for it.
        assert!(!list.is_empty() && !list.all_abandoned());
        drop(late_rx);
        assert!(list.all_abandoned());
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_is_hung_after_the_oldest_request_waited_its_allowance_in_silence() {
        let now = Instant::now();
        let (list, _answers) = written(2, now);
        // A caller's request allows the hang window (longer than its patience here).
        assert_eq!(list.check_hung(now, now, WINDOW), Ok(Some(now + WINDOW)));
        assert!(list.check_hung(now + WINDOW, now, WINDOW).is_err());
        // A read moves the moment on.
        let read = now + 2 * SECOND;
        assert_eq!(
            list.check_hung(now + WINDOW, read, WINDOW),
            Ok(Some(read + WINDOW))
        );
        assert_eq!(
            InFlightList::default().check_hung(now, now, WINDOW),
            Ok(None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_blocking_request_may_not_hold_up_the_callers_behind_it() {
        let now = Instant::now();
        let mut list = InFlightList::default();
        let (blocking, blocking_rx) = caller_request(1, None, None);
        assert_eq!(list.push(blocking, 0, now, WINDOW), None, "waits forever");
        let (behind, _behind_rx) = caller_request(1, Some(now + SECOND), Some(SECOND));
        let check = list.push(behind, 1, now, WINDOW);
        assert_eq!(check, Some(now + SECOND));
        // While its caller waits, it may block forever.
        assert_eq!(list.check_hung(now + 2 * WINDOW, now, WINDOW), Ok(None));
        // Abandoned, it allows the hang window.
        drop(blocking_rx);
        assert!(list.check_hung(now + WINDOW, now, WINDOW).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_break_requeues_what_never_left_and_fails_the_rest_as_maybe_sent() {
        let (mut list, mut answers) = written(4, Instant::now());
        answers.remove(1); // Its caller went away: dropped.
        let mut pending = VecDeque::new();
        let (queued, _queued_rx) = caller_request(1, None, None);
        pending.push_back(queued);
        assert_eq!(list.break_off(2, "addr", "read failed", &mut pending), 2);
        assert_eq!(
            pending.len(),
            3,
            "the unwritten two, in front of what was queued"
        );
        assert!(list.is_empty());
        let first = answers.remove(0);
        match answered(first).map(|a| a.result) {
            Some(Err(Error::ConnectionLost { sent, reason, .. })) => {
                assert_eq!(sent, Sent::Maybe);
                assert_eq!(reason, "read failed");
            }
            other => panic!("{other:?}"),
        }
        for rx in answers {
            assert!(answered(rx).is_none(), "requeued, not answered");
        }
    }
}
