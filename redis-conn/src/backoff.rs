//! Exponential backoff with full jitter, as a small state machine with time passed in by the caller.
//!
//! When the schedule starts over is decided elsewhere, once for every kind of connection: see
//! `reconnect.rs` (a handshake alone never resets it; a connection that proved healthy does).

use std::time::Duration;

use rand::Rng;

/// How reconnect attempts are spaced.
///
/// Attempt `n` (from 0) waits a random delay in `[0, min(max_delay, base * factor^n)]` ("full
/// jitter"), so that many clients that lost the same server do not come back in step. Defaults:
/// base 10 ms, factor 2, max 1 s, unlimited attempts.
///
/// # When the schedule starts over
/// Not when a connect and handshake succeed: a server that accepts, answers `HELLO` and closes
/// gets the same spacing as one that refuses connections (about 15 connections in 4 s with the
/// defaults), and each such loss counts towards `max_attempts`. The schedule starts over only
/// after a connection proved healthy: it served a reply (a caller's, or a health check's; for a
/// subscriber, a message or a confirmation), or stayed up for [`BackoffConfig::healthy_after`].
/// The first reconnect after losing a healthy connection is made at once.
///
/// ```
/// use std::time::Duration;
/// use redis_conn::BackoffConfig;
///
/// let backoff = BackoffConfig::default()
///     .base(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(5))
///     .max_attempts(Some(20))
///     .healthy_after(Duration::from_secs(5));
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(400));
/// assert_eq!(backoff.get_healthy_after(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    base: Duration,
    factor: f64,
    max_delay: Duration,
    max_attempts: Option<u32>,
    healthy_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(10),
            factor: 2.0,
            max_delay: Duration::from_secs(1),
            max_attempts: None,
            healthy_after: BackoffConfig::DEFAULT_HEALTHY_AFTER,
        }
    }
}

impl BackoffConfig {
    /// How long a connection must stay up to count as healthy without serving a reply, by
    /// default: the default cap, so that a server which closes every connection just after
    /// this gets at most about one connection a second.
    pub const DEFAULT_HEALTHY_AFTER: Duration = Duration::from_secs(1);

    /// The first ceiling. Defaults to 10 ms.
    #[must_use]
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// How much the ceiling grows per attempt. Defaults to 2; values below 1 (and values that
    /// are not finite) are taken as 1. [`BackoffConfig::get_factor`] reads it back as given.
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The largest delay. Defaults to 1 s.
    #[must_use]
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// How many attempts before giving up (`None`: never give up, the default).
    #[must_use]
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How long a connection must stay up, without serving a reply, before its loss starts the
    /// schedule over. Defaults to [`BackoffConfig::DEFAULT_HEALTHY_AFTER`] (1 s). A connection
    /// that served a reply is healthy at once; one lost sooner counts as a failed attempt.
    #[must_use]
    pub fn healthy_after(mut self, after: Duration) -> Self {
        self.healthy_after = after;
        self
    }

    /// The configured [`BackoffConfig::base`].
    #[must_use]
    pub fn get_base(&self) -> Duration {
        self.base
    }

    /// The configured [`BackoffConfig::factor`], as given (the schedule takes one below 1 as 1).
    #[must_use]
    pub fn get_factor(&self) -> f64 {
        self.factor
    }

    /// The configured [`BackoffConfig::max_delay`].
    #[must_use]
    pub fn get_max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The configured attempt limit.
    #[must_use]
    pub fn get_max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The configured [`BackoffConfig::healthy_after`].
    #[must_use]
    pub fn get_healthy_after(&self) -> Duration {
        self.healthy_after
    }

    /// The factor the schedule follows: the configured one, at least 1 (1 when not finite).
    ///
    /// Kept as given and clamped here, not in the setter, so that a layer above can show
    /// the factor it was given (redis-client's `rcli config`) by reading it back.
    fn growth(&self) -> f64 {
        if self.factor.is_finite() {
            self.factor.max(1.0)
        } else {
            1.0
        }
    }

    /// The ceiling of attempt `n`: `min(max_delay, base * factor^n)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = self.growth().powi(attempt.min(1000) as i32);
        let nanos = self.base.as_nanos() as f64 * exp;
        if !nanos.is_finite() || nanos >= self.max_delay.as_nanos() as f64 {
            self.max_delay
        } else {
            Duration::from_nanos(nanos as u64)
        }
    }
}

/// The running state: how many attempts have failed since the last success.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A fresh state.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// The settings it follows.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Failed attempts since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt, or `None` when the attempt limit is reached.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Option<Duration> {
        if let Some(max) = self.config.max_attempts {
            if self.attempt >= max {
                return None;
            }
        }
        let ceiling = self.config.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(rng.random_range(0..=nanos)))
    }

    /// Back to the first attempt. The connection and the subscriber call it only once a
    /// connection proved healthy (see [`BackoffConfig`], "When the schedule starts over"), never
    /// after a bare connect or handshake.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_full_jitter_bounds_and_reach_the_cap_by_attempt_7() {
        let config = BackoffConfig::default();
        let mut backoff = Backoff::new(config);
        let mut rng = rand::rng();
        for n in 0..100u32 {
            let d = backoff.next_delay(&mut rng).unwrap();
            let ceiling = Duration::from_millis(10)
                .saturating_mul(2u32.saturating_pow(n.min(31)))
                .min(Duration::from_secs(1));
            assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
            assert_eq!(config.ceiling(n), ceiling);
        }
        assert_eq!(config.ceiling(7), Duration::from_secs(1));
        assert!(config.ceiling(6) < Duration::from_secs(1));
    }

    #[test]
    fn the_delay_resets_after_a_success() {
        let mut backoff = Backoff::new(BackoffConfig::default());
        let mut rng = rand::rng();
        for _ in 0..10 {
            backoff.next_delay(&mut rng);
        }
        assert_eq!(backoff.attempts(), 10);
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert!(backoff.next_delay(&mut rng).unwrap() <= Duration::from_millis(10));
    }

    #[test]
    fn the_tenth_attempt_comes_within_about_three_seconds() {
        // The first reconnect attempt is immediate; nine jittered waits come before the tenth.
        let config = BackoffConfig::default();
        let worst: Duration = (0..9).map(|n| config.ceiling(n)).sum();
        assert_eq!(worst, Duration::from_millis(3270));
        let mut rng = rand::rng();
        let mut total = Duration::ZERO;
        for _ in 0..100 {
            let mut backoff = Backoff::new(config);
            let sum: Duration = (0..9).map(|_| backoff.next_delay(&mut rng).unwrap()).sum();
            assert!(sum <= worst);
            total += sum;
        }
        // Full jitter halves the expected wait: about 1.6 s.
        assert!(total / 100 < Duration::from_secs(2), "{:?}", total / 100);
    }

    #[test]
    fn a_factor_below_one_or_not_finite_grows_like_one_and_reads_back_as_given() {
        let flat = BackoffConfig::default().factor(1.0);
        for factor in [0.5, 0.0, -3.0, f64::NAN, f64::INFINITY] {
            let config = BackoffConfig::default().factor(factor);
            for n in [0, 1, 7, 1000] {
                assert_eq!(config.ceiling(n), flat.ceiling(n), "factor {factor}");
            }
            assert_eq!(config.get_factor().to_bits(), factor.to_bits());
        }
        let config = BackoffConfig::default()
            .base(Duration::from_millis(3))
            .max_delay(Duration::from_secs(9))
            .factor(2.5);
        assert_eq!(config.get_base(), Duration::from_millis(3));
        assert_eq!(config.get_max_delay(), Duration::from_secs(9));
        assert_eq!(config.get_factor(), 2.5);
    }

    #[test]
    fn the_attempt_limit_ends_the_schedule() {
        let mut backoff = Backoff::new(BackoffConfig::default().max_attempts(Some(2)));
        let mut rng = rand::rng();
        assert!(backoff.next_delay(&mut rng).is_some());
        assert!(backoff.next_delay(&mut rng).is_some());
        assert!(backoff.next_delay(&mut rng).is_none());
    }
}
