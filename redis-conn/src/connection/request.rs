//! What travels between a caller and the driver: a [`Request`] one way (a command or a pipeline,
//! and where its replies go), an [`Answer`] the other (the outcome, and the payload back when a
//! retry may need it).
//!
//! Every call moves these several times (caller, queue, driver, reply slot): they stay small
//! (see the `a_call_carries_little` test).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp_codec::Value;
use tokio::time::Instant;

use crate::handoff::SlotTx;
use crate::{Cmd, Error, Sent};

/// The replies to one request: one value for a command, a list for a pipeline.
#[derive(Debug)]
pub(super) enum Reply {
    One(Value),
    Many(Vec<Value>),
}

/// What the driver answers: the outcome, and the request's payload back when it may be needed
/// for a retry (so that a call never copies its command just in case).
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) result: Result<Reply, Error>,
    pub(super) payload: Option<Payload>,
}

pub(super) type ReplyTx = SlotTx<Answer>;

/// What a request writes.
#[derive(Debug)]
pub(super) enum Payload {
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
pub(super) struct Request {
    pub(super) payload: Payload,
    pub(super) replies: usize,
    /// `None` for the driver's own health checks, and once a timeout has been reported.
    pub(super) tx: Option<ReplyTx>,
    /// The caller's deadline (`None`: a blocking command that waits forever).
    pub(super) deadline: Option<Instant>,
    /// How long a written request may wait for its replies before the connection is considered
    /// hung (`None`: blocks forever by design).
    pub(super) patience: Option<Duration>,
    /// For health checks: the nonce the reply must echo (boxed: every request carries the
    /// field, and is moved several times on its way).
    pub(super) expect: Option<Box<Bytes>>,
}

impl Request {
    /// The request `Connection::close` sends to wake the driver: it writes nothing and nobody
    /// waits for it.
    pub(super) fn wake_up() -> Request {
        Request {
            payload: Payload::Encoded(Bytes::new()),
            replies: 0,
            tx: None,
            deadline: None,
            patience: None,
            expect: None,
        }
    }

    /// Whether nobody waits for this request any more.
    pub(super) fn abandoned(&self) -> bool {
        match &self.tx {
            Some(tx) => tx.is_closed(),
            None => self.expect.is_none(),
        }
    }

    /// Whether its deadline has passed at `now`.
    pub(super) fn is_expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }

    /// Answers its caller with `error`, handing the payload back for a retry.
    pub(super) fn fail(self, error: Error) {
        let Request { tx, payload, .. } = self;
        if let Some(tx) = tx {
            let _ = tx.send(Answer {
                result: Err(error),
                payload: Some(payload),
            });
        }
    }

    /// The error for this request once its deadline passed (`sent`: whether it was written).
    pub(super) fn timeout_error(&self, sent: Sent, response_timeout: Duration) -> Error {
        Error::Timeout {
            timeout: self.patience.unwrap_or(response_timeout),
            sent,
        }
    }

    /// Appends what it writes to `dst`.
    pub(super) fn write_to(&self, dst: &mut BytesMut) {
        match &self.payload {
            Payload::Cmd(cmd) => cmd.write_to(dst),
            Payload::Encoded(bytes) => dst.extend_from_slice(bytes),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::handoff::{self, SlotRx};

    /// A caller's request for `replies` replies, and where its answer arrives.
    pub(crate) fn caller_request(
        replies: usize,
        deadline: Option<Instant>,
        patience: Option<Duration>,
    ) -> (Request, SlotRx<Answer>) {
        let (tx, rx) = handoff::slot();
        let request = Request {
            payload: Payload::Encoded(Bytes::from_static(b"*1\r\n$4\r\nPING\r\n")),
            replies,
            tx: Some(tx),
            deadline,
            patience,
            expect: None,
        };
        (request, rx)
    }

    /// The answer waiting in `rx`, if any (without waiting).
    pub(crate) fn answered(rx: SlotRx<Answer>) -> Option<Answer> {
        use futures::FutureExt;
        rx.now_or_never().and_then(Result::ok)
    }

    #[test]
    fn a_request_is_abandoned_when_its_caller_went_away() {
        let (request, rx) = caller_request(1, None, None);
        assert!(!request.abandoned());
        drop(rx);
        assert!(request.abandoned());
        assert!(Request::wake_up().abandoned(), "nobody waits for a wake-up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_names_the_request_patience_or_the_response_timeout() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let (request, _rx) = caller_request(1, Some(now + second), Some(3 * second));
        assert!(!request.is_expired(now));
        assert!(request.is_expired(now + second));
        let error = request.timeout_error(Sent::No, second);
        assert!(
            matches!(error, Error::Timeout { timeout, sent: Sent::No } if timeout == 3 * second)
        );
        let (request, _rx) = caller_request(1, None, None);
        let error = request.timeout_error(Sent::Maybe, second);
        assert!(
            matches!(error, Error::Timeout { timeout, sent: Sent::Maybe } if timeout == second)
        );
    }
}
