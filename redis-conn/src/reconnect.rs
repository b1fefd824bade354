//! When to reconnect: one schedule, shared by the connection's driver and the subscriber.
//!
//! A [`Backoff`] spaces the attempts; [`ReconnectSchedule`] decides when that backoff starts
//! over. A handshake alone proves little: a server that accepts, answers `HELLO` and closes would
//! otherwise be reconnected to in a tight loop (a review measured 2,565 connections in 4 s from
//! one client). So the delay resets only after a connection **proved healthy**:
//! - it served a reply: a caller's (or the connection's own health check, whose echoed nonce
//!   shows the server executing commands in step); for a subscriber, a message, a subscription
//!   confirmation or a `PONG`; or
//! - it stayed up for [`BackoffConfig::healthy_after`] (1 s by default, the backoff's cap).
//!
//! A connection lost before either counts as one more failed attempt: the next connect waits
//! the next delay of the schedule, exactly as after a refused connect, and it counts towards the
//! attempt limit. A connection lost after proving healthy is reconnected to at once (the first
//! attempt of an outage does not wait), so a restarted server is not punished.
//!
//! The decisions take the time as an argument and keep no clock of their own: they are tested
//! with explicit instants and on tokio's paused clock.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::{Backoff, BackoffConfig};

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
