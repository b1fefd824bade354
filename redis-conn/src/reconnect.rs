//! When to reconnect: one schedule, shared by the connection's driver and the subscriber.
//!
//! A [`Backoff`] spaces the attempts; [`ReconnectSchedule`] decides when that backoff starts
//! over. A handshake alone proves little: a server that accepts, answers `HELLO` and closes would
//! otherwise be reconnected to in a tight loop (a review measured 2,565 connections in 4 s from
//! one client). So the delay resets only after a connection **proved healthy**:
//! - it served a reply: a caller's (or the connection's own health check, whose echoed nonce
//!   shows the server executing commands in step); for a subscriber, a message or a `PONG` (not
//!   a subscription confirmation: every connection starts by subscribing again, so confirming
//!   is part of setting it up, as the handshake is); or
//! - it stayed up for [`BackoffConfig::healthy_after`] (1 s by default, the backoff's cap).
//!
//! A connection lost before either counts as one more failed attempt: the next connect waits
//! the next delay of the schedule, exactly as after a refused connect, and it counts towards the
//! attempt limit. A connection lost after proving healthy is reconnected to at once (the first
//! attempt of an outage does not wait), so a restarted server is not punished.
//!
//! [`reconnect`] is the loop both run after a loss: it waits as the schedule says, tries,
//! reports every failure as an event (an error that will not go away by itself, such as wrong
//! credentials, once, and then waits the longest delay), and stops when the schedule gives up or
//! the owner was closed. What differs between the two (where to connect, what to do with the
//! callers waiting meanwhile) is their [`Reconnecting`] implementation.
//!
//! The decisions take the time as an argument and keep no clock of their own: they are tested
//! with explicit instants and on tokio's paused clock.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::events::{Event, EventSink};
use crate::{Backoff, BackoffConfig, Error};

/// The reconnect state of one connection: the backoff, and whether the connection now up has
/// proved healthy (see the [module docs](self)).
///
/// Call order: [`ReconnectSchedule::connected`] when a connect and handshake succeeded,
/// [`ReconnectSchedule::served`] whenever the connection serves a reply,
/// [`ReconnectSchedule::lost`] when it breaks (it says how long to wait before the first attempt),
/// and [`ReconnectSchedule::failed`] after every failed attempt (it says how long to wait before
/// the next one).
#[derive(Debug, Clone)]
pub(crate) struct ReconnectSchedule {
    backoff: Backoff,
    healthy_after: Duration,
    /// When the connection now up completed its handshake; `None` while down.
    up_since: Option<Instant>,
    /// Whether the connection now up has served a reply.
    served: bool,
}

impl ReconnectSchedule {
    /// The schedule of a connection that came up at `now` (the first connect).
    pub(crate) fn new(config: BackoffConfig, now: Instant) -> Self {
        ReconnectSchedule {
            backoff: Backoff::new(config),
            healthy_after: config.get_healthy_after(),
            up_since: Some(now),
            served: false,
        }
    }

    /// A connect and handshake succeeded at `now`. This does *not* reset the backoff: the new
    /// connection has proved nothing yet.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.up_since = Some(now);
        self.served = false;
    }

    /// The connection now up served a reply: it is healthy, and its loss starts the schedule
    /// over. Cheap enough to call for every reply.
    pub(crate) fn served(&mut self) {
        self.served = true;
    }

    /// Whether the connection now up has proved healthy by `now`.
    pub(crate) fn is_proven(&self, now: Instant) -> bool {
        self.served
            || self
                .up_since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.healthy_after)
    }

    /// The connection broke at `now`: the wait before the first reconnect attempt. Zero when it
    /// had proved healthy (the backoff starts over); otherwise its loss counts as a failed
    /// attempt and the wait is the backoff's next delay. `None` when the attempt limit is
    /// reached: give up.
    pub(crate) fn lost(&mut self, now: Instant, rng: &mut impl Rng) -> Option<Duration> {
        let proven = self.is_proven(now);
        self.up_since = None;
        self.served = false;
        if proven {
            self.backoff.reset();
            Some(Duration::ZERO)
        } else {
            self.backoff.next_delay(rng)
        }
    }

    /// An attempt failed: the wait before the next one, or `None` when the attempt limit is
    /// reached.
    pub(crate) fn failed(&mut self, rng: &mut impl Rng) -> Option<Duration> {
        self.backoff.next_delay(rng)
    }

    /// The longest delay of the schedule (its cap), for errors that will not go away by
    /// themselves (wrong credentials).
    pub(crate) fn longest_delay(&self) -> Duration {
        self.backoff.config().ceiling(u32::MAX)
    }
}

/// What [`reconnect`] needs of the connection or subscriber it brings back.
pub(crate) trait Reconnecting {
    /// A new connection: transport, read buffer, decoder.
    type Opened;
    /// What is reconnecting, for logs ("connection", "subscriber").
    const WHAT: &'static str;

    /// Its reconnect schedule.
    fn schedule(&mut self) -> &mut ReconnectSchedule;

    /// Where its events go.
    fn events(&self) -> &EventSink;

    /// The address it connects to (or last did).
    fn addr(&self) -> String;

    /// One attempt to connect and hand shake: to where, and how it went; `None` when closed
    /// meanwhile.
    async fn attempt(&mut self) -> Option<(String, Result<Self::Opened, Error>)>;

    /// Waits out `delay` while disconnected (answering what comes meanwhile); false when closed
    /// meanwhile.
    async fn wait(&mut self, delay: Duration) -> bool;

    /// An attempt failed (before the schedule is asked whether to go on).
    fn attempt_failed(&mut self) {}

    /// An attempt failed with an error that will fail the next attempts the same way: what
    /// waits for the connection may fail now.
    fn refused_for_good(&mut self, _error: &Error) {}

    /// An attempt succeeded (before [`Event::Reconnected`] is emitted).
    fn reconnected(&mut self) {}
}

/// How [`reconnect`] ended.
#[derive(Debug)]
pub(crate) enum Reconnected<O> {
    /// Connected again.
    Up(O),
    /// The attempt limit was reached: why, for the close.
    GaveUp(String),
    /// Closed meanwhile.
    Closed,
}

/// Reconnects `side`, whose connection went down at `down_since`: waits as its schedule says
/// (at once after losing a healthy connection), tries until an attempt succeeds, reporting each
/// failure as [`Event::ReconnectFailed`] and a permanent error once as [`Event::Error`] (then
/// waiting the longest delay).
pub(crate) async fn reconnect<S: Reconnecting>(
    side: &mut S,
    down_since: Instant,
) -> Reconnected<S::Opened> {
    // A connection that never proved healthy (it closed right after the handshake, say) counts
    // as a failed attempt: the first attempt waits, as after a refused connect.
    let Some(first_wait) = side.schedule().lost(down_since, &mut rand::rng()) else {
        return Reconnected::GaveUp(
            "gave up reconnecting: the attempt limit was reached (the last connection was lost \
             before it proved healthy)"
                .into(),
        );
    };
    if !first_wait.is_zero() {
        tracing::debug!(
            addr = %side.addr(),
            wait = ?first_wait,
            "the {} was lost before it proved healthy; backing off",
            S::WHAT
        );
        if !side.wait(first_wait).await {
            return Reconnected::Closed;
        }
    }
    let mut attempt = 0u32;
    let mut reported: Option<String> = None;
    loop {
        attempt += 1;
        let Some((addr, opened)) = side.attempt().await else {
            return Reconnected::Closed;
        };
        let error = match opened {
            Ok(opened) => {
                side.schedule().connected(Instant::now());
                side.reconnected();
                side.events().emit(Event::Reconnected {
                    addr,
                    attempts: attempt,
                    downtime: down_since.elapsed(),
                });
                return Reconnected::Up(opened);
            }
            Err(error) => error,
        };
        let delay = match after_failure(side, addr, attempt, error, &mut reported) {
            Ok(delay) => delay,
            Err(reason) => return Reconnected::GaveUp(reason),
        };
        if !side.wait(delay).await {
            return Reconnected::Closed;
        }
    }
}

/// Reports the failed attempt number `attempt` to `addr`: the wait before the next one, or
/// `Err` with why the schedule gives up. An error that will fail the next attempts the same way
/// (wrong credentials) waits the longest delay, fails what waits, and is reported once
/// (`reported` keeps what was).
fn after_failure<S: Reconnecting>(
    side: &mut S,
    addr: String,
    attempt: u32,
    error: Error,
    reported: &mut Option<String>,
) -> Result<Duration, String> {
    side.attempt_failed();
    let Some(mut delay) = side.schedule().failed(&mut rand::rng()) else {
        return Err(format!(
            "gave up reconnecting after {attempt} attempts: {error}"
        ));
    };
    if error.is_permanent() {
        delay = side.schedule().longest_delay();
        side.refused_for_good(&error);
        if reported.as_deref() != Some(&error.to_string()) {
            *reported = Some(error.to_string());
            tracing::error!(addr = %addr, error = %error, "{} reconnect refused", S::WHAT);
            side.events().emit(Event::Error {
                addr: addr.clone(),
                error: error.clone(),
            });
        }
    }
    side.events().emit(Event::ReconnectFailed {
        addr,
        attempt,
        error,
        next_delay: delay,
    });
    Ok(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_handshake_alone_does_not_reset_the_backoff() {
        let t0 = Instant::now();
        let mut schedule = ReconnectSchedule::new(BackoffConfig::default(), t0);
        let mut rng = rand::rng();
        // Up, then lost at once, eight times: every loss is a failed attempt.
        for _ in 0..8 {
            schedule.connected(t0);
            assert!(!schedule.is_proven(t0 + MS));
            schedule.lost(t0 + MS, &mut rng).unwrap();
        }
        assert_eq!(schedule.backoff.attempts(), 8);
        // The ninth wait may be as long as the cap.
        let config = BackoffConfig::default();
        assert_eq!(config.ceiling(8), Duration::from_secs(1));
    }

    #[test]
    fn a_served_reply_resets_the_backoff_and_the_first_attempt_is_immediate() {
        let t0 = Instant::now();
        let mut schedule = ReconnectSchedule::new(BackoffConfig::default(), t0);
        let mut rng = rand::rng();
        for _ in 0..5 {
            schedule.failed(&mut rng).unwrap();
        }
        schedule.connected(t0);
        schedule.served();
        assert!(schedule.is_proven(t0));
        assert_eq!(schedule.lost(t0 + MS, &mut rng), Some(Duration::ZERO));
        assert_eq!(schedule.backoff.attempts(), 0);
        // The next failure waits the first, short delay again.
        assert!(schedule.failed(&mut rng).unwrap() <= 10 * MS);
    }

    #[test]
    fn staying_up_for_healthy_after_resets_the_backoff() {
        let config = BackoffConfig::default().healthy_after(Duration::from_millis(500));
        let t0 = Instant::now();
        let mut schedule = ReconnectSchedule::new(config, t0);
        let mut rng = rand::rng();
        for _ in 0..5 {
            schedule.failed(&mut rng).unwrap();
        }
        schedule.connected(t0);
        assert!(!schedule.is_proven(t0 + 499 * MS));
        assert!(schedule.is_proven(t0 + 500 * MS));
        assert_eq!(schedule.lost(t0 + 500 * MS, &mut rng), Some(Duration::ZERO));
        assert_eq!(schedule.backoff.attempts(), 0);
    }

    #[test]
    fn being_served_on_an_earlier_connection_does_not_prove_the_next_one() {
        let t0 = Instant::now();
        let mut schedule = ReconnectSchedule::new(BackoffConfig::default(), t0);
        let mut rng = rand::rng();
        schedule.served();
        assert_eq!(schedule.lost(t0, &mut rng), Some(Duration::ZERO));
        schedule.connected(t0 + MS);
        let wait = schedule.lost(t0 + 2 * MS, &mut rng).unwrap();
        assert!(wait <= 10 * MS);
        assert_eq!(schedule.backoff.attempts(), 1);
    }

    #[test]
    fn unproven_losses_count_towards_the_attempt_limit() {
        let config = BackoffConfig::default().max_attempts(Some(3));
        let t0 = Instant::now();
        let mut schedule = ReconnectSchedule::new(config, t0);
        let mut rng = rand::rng();
        for _ in 0..3 {
            schedule.connected(t0);
            assert!(schedule.lost(t0, &mut rng).is_some());
        }
        schedule.connected(t0);
        assert_eq!(schedule.lost(t0, &mut rng), None, "the limit is reached");
    }

    /// A side whose attempts fail with `errors`, in order, then succeed.
    struct Scripted {
        schedule: ReconnectSchedule,
        events: EventSink,
        errors: Vec<Error>,
        failed: u32,
        refused: u32,
        waited: Vec<Duration>,
    }

    impl Scripted {
        fn new(config: BackoffConfig, errors: Vec<Error>) -> Scripted {
            Scripted {
                schedule: ReconnectSchedule::new(config, Instant::now()),
                events: EventSink::new(&Default::default()),
                errors,
                failed: 0,
                refused: 0,
                waited: Vec::new(),
            }
        }
    }

    impl Reconnecting for Scripted {
        type Opened = ();
        const WHAT: &'static str = "test";

        fn schedule(&mut self) -> &mut ReconnectSchedule {
            &mut self.schedule
        }

        fn events(&self) -> &EventSink {
            &self.events
        }

        fn addr(&self) -> String {
            "test:1".into()
        }

        async fn attempt(&mut self) -> Option<(String, Result<(), Error>)> {
            let result = if self.errors.is_empty() {
                Ok(())
            } else {
                Err(self.errors.remove(0))
            };
            Some((self.addr(), result))
        }

        async fn wait(&mut self, delay: Duration) -> bool {
            self.waited.push(delay);
            tokio::time::sleep(delay).await;
            true
        }

        fn attempt_failed(&mut self) {
            self.failed += 1;
        }

        fn refused_for_good(&mut self, _error: &Error) {
            self.refused += 1;
        }
    }

    fn refused() -> Error {
        Error::Connect {
            addr: "test:1".into(),
            reason: "connection refused".into(),
        }
    }

    fn wrong_password() -> Error {
        Error::Auth {
            addr: "test:1".into(),
            message: "WRONGPASS".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reconnect_tries_until_up_and_reports_a_permanent_error_once() {
        let mut side = Scripted::new(
            BackoffConfig::default(),
            vec![refused(), wrong_password(), wrong_password()],
        );
        let mut events = side.events.subscribe();
        side.schedule.served();
        let outcome = reconnect(&mut side, Instant::now()).await;
        assert!(matches!(outcome, Reconnected::Up(())));
        assert_eq!((side.failed, side.refused), (3, 2));
        // No wait before the first attempt (the connection had proved healthy); the permanent
        // errors wait the longest delay.
        let longest = BackoffConfig::default().ceiling(u32::MAX);
        assert_eq!(side.waited.len(), 3);
        assert_eq!(side.waited[1..], [longest, longest]);
        let mut errors = 0;
        let mut failures = 0;
        while let Ok(event) = events.try_recv() {
            match event {
                Event::Error { .. } => errors += 1,
                Event::ReconnectFailed { .. } => failures += 1,
                Event::Reconnected { attempts, .. } => assert_eq!(attempts, 4),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((errors, failures), (1, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn reconnect_gives_up_at_the_attempt_limit() {
        let config = BackoffConfig::default().max_attempts(Some(2));
        let mut side = Scripted::new(config, vec![refused(), refused(), refused()]);
        side.schedule.served();
        let outcome = reconnect(&mut side, Instant::now()).await;
        assert!(
            matches!(outcome, Reconnected::GaveUp(reason) if reason.contains("after 3 attempts"))
        );
        assert_eq!(side.failed, 3);
        // An unproven connection's loss counts: with the limit reached, no attempt is made.
        let mut side = Scripted::new(BackoffConfig::default().max_attempts(Some(0)), vec![]);
        let outcome = reconnect(&mut side, Instant::now()).await;
        assert!(matches!(outcome, Reconnected::GaveUp(reason) if reason.contains("limit")));
    }

    /// Drives a schedule against a server for `window` of paused time and counts connections:
    /// `accepts` says whether the server completes the handshake (and closes at once).
    async fn connections_in(window: Duration, accepts: bool) -> u32 {
        let start = Instant::now();
        let mut schedule = ReconnectSchedule::new(BackoffConfig::default(), start);
        let mut rng = rand::rng();
        let mut count = 0;
        // The first connection is lost at once; the loop is the driver's.
        let mut wait = schedule.lost(Instant::now(), &mut rng).unwrap();
        loop {
            tokio::time::sleep(wait).await;
            if Instant::now() >= start + window {
                return count;
            }
            count += 1;
            wait = if accepts {
                schedule.connected(Instant::now());
                schedule.lost(Instant::now(), &mut rng).unwrap()
            } else {
                schedule.failed(&mut rng).unwrap()
            };
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_closes_after_the_handshake_gets_as_few_connections_as_one_that_refuses()
    {
        // Full jitter averages half the ceiling: ~0.64 s to reach the cap, then ~0.5 s a wait,
        // so about 14 connections in 4 s either way. 30 leaves room for unlucky draws.
        let window = Duration::from_secs(4);
        let mut closing = 0;
        let mut refusing = 0;
        for _ in 0..20 {
            let c = connections_in(window, true).await;
            let r = connections_in(window, false).await;
            assert!(c <= 30, "{c} connections in 4 s to a server that closes");
            assert!(r <= 30, "{r} connections in 4 s to a server that refuses");
            closing += c;
            refusing += r;
        }
        let (closing, refusing) = (closing / 20, refusing / 20);
        assert!((8..=20).contains(&closing), "mean {closing}");
        assert!((8..=20).contains(&refusing), "mean {refusing}");
    }
}
