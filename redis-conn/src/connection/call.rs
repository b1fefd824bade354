//! One call with its retries, within one deadline: the first attempt queued at once, the
//! rare retries in a boxed future of their own, and [`verdict`], the decision on an attempt's
//! outcome (the end, a resend after a backoff, or a resend at once), a plain function.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use resp_codec::Value;
use tokio::time::Instant;

use super::request::{Payload, Reply};
use super::{Answer, Connection};
use crate::handoff::SlotRx;
use crate::table::{Blocking, Effect};
use crate::{Backoff, ConnectionConfig, Delivery, Error, Sent, ServerError};

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

impl Connection {
    /// One call with its retries, within one deadline.
    ///
    /// The first attempt is made here; retries, rare, in a boxed future of their own, so that
    /// the state every call carries (and moves through the layers above) stays small.
    pub(super) fn call(
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
                let verdict = self.judge(&result, back.is_some(), &attempt);
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
            verdict = self.judge(&result, payload.is_some(), &attempt);
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

    /// The [`verdict`] on an attempt, counting the call as an error when it ends in one.
    fn judge(
        &self,
        result: &Result<Reply, Error>,
        has_payload: bool,
        attempt: &Attempt,
    ) -> Verdict {
        let verdict = verdict(result, has_payload, attempt, &self.shared.config);
        if verdict == Verdict::Done && result.is_err() {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }
}

/// What follows an attempt: the end, a resend after a backoff (a transient error reply), or a
/// resend at once (the connection was lost with the request maybe written, and resending it is
/// safe: the command is retry-safe, or the delivery mode is at least once). Either resend only
/// while the payload came back, attempts are left and the deadline has not passed. Asks the
/// clock only when a retry is possible: a plain success reads none.
fn verdict(
    result: &Result<Reply, Error>,
    has_payload: bool,
    attempt: &Attempt,
    config: &ConnectionConfig,
) -> Verdict {
    let more = || {
        has_payload
            && attempt.number < config.max_attempts
            && attempt.deadline.is_none_or(|d| Instant::now() < d)
    };
    match result {
        Ok(Reply::One(Value::Error(e))) if ServerError::new(e.clone()).is_transient() && more() => {
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
        Err(_) => Verdict::Done,
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const SECOND: Duration = Duration::from_secs(1);

    fn config() -> ConnectionConfig {
        ConnectionConfig::new(crate::ServerAddr::tcp("127.0.0.1", 6379))
    }

    fn first(effect: Effect, deadline: Option<Instant>) -> Attempt {
        Attempt {
            replies: 1,
            effect,
            deadline,
            patience: Some(SECOND),
            number: 1,
        }
    }

    fn lost(sent: Sent) -> Result<Reply, Error> {
        Err(Error::ConnectionLost {
            addr: "test:1".into(),
            reason: "read failed".into(),
            sent,
        })
    }

    fn error_reply(message: &'static str) -> Result<Reply, Error> {
        Ok(Reply::One(Value::Error(Bytes::from_static(
            message.as_bytes(),
        ))))
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_reply_is_retried_after_a_backoff_while_attempts_are_left() {
        let deadline = Some(Instant::now() + SECOND);
        let attempt = first(Effect::NotRetrySafe, deadline);
        let loading = error_reply("LOADING the dataset is loading");
        assert_eq!(
            verdict(&loading, true, &attempt, &config()),
            Verdict::Backoff
        );
        assert_eq!(verdict(&loading, false, &attempt, &config()), Verdict::Done);
        let last = Attempt {
            number: 3,
            ..attempt
        };
        assert_eq!(verdict(&loading, true, &last, &config()), Verdict::Done);
        let wrong = error_reply("WRONGTYPE not a list");
        assert_eq!(verdict(&wrong, true, &attempt, &config()), Verdict::Done);
        let fine = Ok(Reply::One(Value::Integer(1)));
        assert_eq!(verdict(&fine, true, &attempt, &config()), Verdict::Done);
        tokio::time::advance(SECOND).await;
        assert_eq!(
            verdict(&loading, true, &attempt, &config()),
            Verdict::Done,
            "past the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_request_that_may_have_run_is_resent_only_when_that_is_safe() {
        let safe = first(Effect::RetrySafe, None);
        let unsafe_write = first(Effect::NotRetrySafe, None);
        let maybe = lost(Sent::Maybe);
        assert_eq!(verdict(&maybe, true, &safe, &config()), Verdict::Resend);
        assert_eq!(
            verdict(&maybe, true, &unsafe_write, &config()),
            Verdict::Done
        );
        let at_least_once = config().delivery(Delivery::AtLeastOnce);
        assert_eq!(
            verdict(&maybe, true, &unsafe_write, &at_least_once),
            Verdict::Resend
        );
        assert_eq!(
            verdict(&maybe, false, &safe, &config()),
            Verdict::Done,
            "no payload"
        );
        let one_attempt = config().max_attempts(1);
        assert_eq!(verdict(&maybe, true, &safe, &one_attempt), Verdict::Done);
        // An unsent request fails only when the driver gave up on it (fail-fast, reconnect
        // off): that ends the call.
        assert_eq!(
            verdict(&lost(Sent::No), true, &safe, &config()),
            Verdict::Done
        );
    }
}
