//! The driver's one timer, for every deadline of a live connection.
//!
//! Calls cost no timer of their own: the driver keeps the earliest moment something may be due
//! (a caller's deadline, a hung connection, an idle health check) and arms one timer at it. When
//! it fires, the driver looks at everything and gathers the next moment again.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// Lowers `slot` to `t` when `t` is earlier (a `None` `t` changes nothing).
pub(super) fn keep_earliest(slot: &mut Option<Instant>, t: Option<Instant>) {
    if let Some(t) = t {
        if slot.is_none_or(|s| t < s) {
            *slot = Some(t);
        }
    }
}

/// The timer and the moments it should wake the driver at.
#[derive(Debug)]
pub(super) struct Deadlines {
    timer: Pin<Box<Sleep>>,
    /// What the timer is set to now (`None`: disarmed).
    armed: Option<Instant>,
    /// The earliest moment gathered since the timer last fired: what it should be set to.
    next_check: Option<Instant>,
    /// The armed moment has passed though the timer has not fired: the driver prefers reads,
    /// and a socket that never runs dry (a server flooding replies or pushes) would keep its
    /// timer from ever being polled, so calls would outlive their deadlines. Set after a read,
    /// it makes the driver skip reading until the timer has fired.
    overdue: bool,
}

impl Deadlines {
    /// A disarmed timer, to be armed at `first` (or later, at what is included meanwhile).
    pub(super) fn new(first: Option<Instant>) -> Deadlines {
        Deadlines {
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
            next_check: first,
            overdue: false,
        }
    }

    /// Something may be due at `t`: wake up then at the latest.
    pub(super) fn include(&mut self, t: Option<Instant>) {
        keep_earliest(&mut self.next_check, t);
    }

    /// Sets the timer to the earliest moment included, if that changed.
    pub(super) fn arm(&mut self) {
        if self.next_check != self.armed {
            if let Some(at) = self.next_check {
                self.timer.as_mut().reset(at);
            }
            self.armed = self.next_check;
        }
    }

    /// Whether the timer is set.
    pub(super) fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// The timer, to wait on while it is armed.
    pub(super) fn timer(&mut self) -> &mut Pin<Box<Sleep>> {
        &mut self.timer
    }

    /// The timer fired: everything is looked at now, and the moments gathered again.
    pub(super) fn fired(&mut self) {
        self.armed = None;
        self.overdue = false;
        self.next_check = None;
    }

    /// Bytes were read at `now`: if the timer is overdue, the next wait lets it fire first.
    pub(super) fn note_read(&mut self, now: Instant) {
        self.overdue = self.armed.is_some_and(|at| at <= now);
    }

    /// Whether the timer is overdue (see the field).
    pub(super) fn is_overdue(&self) -> bool {
        self.overdue
    }

    /// Whether the next wait may read: not while an armed timer is overdue.
    pub(super) fn reads_allowed(&self) -> bool {
        !self.overdue || self.armed.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn keep_earliest_keeps_the_earliest_moment() {
        let t = Instant::now();
        let mut slot = None;
        keep_earliest(&mut slot, None);
        assert_eq!(slot, None);
        keep_earliest(&mut slot, Some(t + 5 * MS));
        keep_earliest(&mut slot, Some(t + 9 * MS));
        assert_eq!(slot, Some(t + 5 * MS));
        keep_earliest(&mut slot, Some(t + MS));
        keep_earliest(&mut slot, None);
        assert_eq!(slot, Some(t + MS));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_fires_at_the_earliest_moment_included() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(Some(start + 50 * MS));
        deadlines.include(Some(start + 20 * MS));
        deadlines.include(None);
        deadlines.arm();
        assert!(deadlines.is_armed());
        deadlines.timer().await;
        assert_eq!(Instant::now(), start + 20 * MS);
        deadlines.fired();
        deadlines.arm();
        assert!(!deadlines.is_armed(), "nothing included since it fired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_after_the_armed_moment_holds_reads_until_the_timer_fired() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(Some(start + 10 * MS));
        deadlines.arm();
        deadlines.note_read(start + 5 * MS);
        assert!(deadlines.reads_allowed() && !deadlines.is_overdue());
        deadlines.note_read(start + 10 * MS);
        assert!(!deadlines.reads_allowed() && deadlines.is_overdue());
        deadlines.fired();
        assert!(deadlines.reads_allowed() && !deadlines.is_overdue());
    }
}
