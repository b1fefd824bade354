//! The spin wait: polling for replies a little before sleeping, when they have lately come that
//! soon. A performance trick, fenced here with its reason and its tests ([`SpinGauge`]).

use std::time::Duration;

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
pub(super) struct SpinGauge {
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

    pub(super) fn new(budget: Duration) -> SpinGauge {
        SpinGauge {
            budget,
            caught: Self::FULL,
            skipped: 0,
        }
    }

    /// Decides, as a wait for replies starts, whether it polls.
    pub(super) fn begin(&mut self) -> bool {
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
    pub(super) fn waited(&mut self, wait: Duration) {
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

/// The driver's current wait for replies, and the gauge that decides whether it polls.
///
/// Waits are timed on the wall clock, not tokio's: polling must stay bounded in real time even
/// on a paused test clock, which does not move while a task keeps yielding.
#[derive(Debug)]
pub(super) struct SpinWait {
    gauge: SpinGauge,
    /// Since when the driver has had nothing to write and replies to wait for, and whether it
    /// polls in this wait.
    waiting: Option<(std::time::Instant, bool)>,
}

impl SpinWait {
    /// Polls for up to `budget` (zero: never).
    pub(super) fn new(budget: Duration) -> SpinWait {
        SpinWait {
            gauge: SpinGauge::new(budget),
            waiting: None,
        }
    }

    /// The driver waits for replies (nothing to write): until when it polls, `None` when this
    /// wait sleeps. The first call of a wait decides; later ones keep to it.
    pub(super) fn poll_until(&mut self) -> Option<std::time::Instant> {
        let gauge = &mut self.gauge;
        let (since, polled) = *self
            .waiting
            .get_or_insert_with(|| (std::time::Instant::now(), gauge.begin()));
        polled.then(|| since + gauge.budget)
    }

    /// Whole replies arrived: a polled wait ends, and the gauge learns how long it took. (Bytes
    /// alone do not end it: a reply trickling in is a long wait, which turns polling off.)
    pub(super) fn replies_arrived(&mut self) {
        if let Some((since, true)) = self.waiting.take() {
            self.gauge.waited(since.elapsed());
        }
    }

    /// A write went out: a new wait for replies starts from it.
    pub(super) fn wrote(&mut self) {
        self.waiting = None;
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

    #[test]
    fn a_wait_decides_once_and_ends_with_replies_or_a_write() {
        let mut spin = SpinWait::new(Duration::from_secs(60));
        let until = spin.poll_until().expect("a fresh gauge polls");
        assert_eq!(spin.poll_until(), Some(until), "the same wait");
        spin.replies_arrived();
        assert!(spin.waiting.is_none());
        spin.poll_until();
        spin.wrote();
        assert!(spin.waiting.is_none());
        let mut off = SpinWait::new(Duration::ZERO);
        assert_eq!(off.poll_until(), None);
        off.replies_arrived();
        assert!(off.waiting.is_none());
    }
}
