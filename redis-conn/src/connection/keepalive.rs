//! The idle health check: a connection that has carried nothing for the health-check interval
//! sends its own `PING <nonce>`, so that a dead peer is found before a caller needs it.
//!
//! The reply must echo the nonce (see `InFlightList::dispatch`), which also proves the stream in
//! step; the ping waits in the in-flight list like any request, so a silent server is found by
//! the hang check.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::request::{Payload, Request};
use crate::Cmd;

/// When the connection last showed activity, and when to ping.
#[derive(Debug)]
pub(super) struct Keepalive {
    /// `None`: no health checks.
    interval: Option<Duration>,
    /// The last read, or the write of the idle health check (then the only request).
    last_activity: Instant,
}

impl Keepalive {
    /// A connection that came up at `now`, checked every `interval` when idle.
    pub(super) fn new(interval: Option<Duration>, now: Instant) -> Keepalive {
        Keepalive {
            interval,
            last_activity: now,
        }
    }

    /// The last read (or idle health check): a server that answers slowly but answers is not
    /// hung, so the hang check counts silence from here.
    pub(super) fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Bytes arrived at `now`.
    pub(super) fn heard(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// Whether to send a health check at `now`: the connection is `idle` (nothing in flight,
    /// queued or buffered), not `closing`, and quiet for the whole interval.
    pub(super) fn ping_due(&self, now: Instant, idle: bool, closing: bool) -> bool {
        self.interval
            .is_some_and(|interval| idle && !closing && now >= self.last_activity + interval)
    }

    /// A health check was queued at `now`.
    pub(super) fn pinged(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// When to look again whether a health check is due.
    pub(super) fn next_check(&self) -> Option<Instant> {
        self.interval.map(|interval| self.last_activity + interval)
    }
}

/// The driver's own `PING <nonce>` for an idle connection, which may wait `patience` for its
/// reply.
pub(super) fn health_ping(patience: Duration) -> Request {
    let nonce = Bytes::from(format!("idle-{}", rand::random::<u64>()));
    let mut out = BytesMut::new();
    Cmd::new("PING").arg(&nonce).write_to(&mut out);
    Request {
        payload: Payload::Encoded(out.freeze()),
        replies: 1,
        tx: None,
        deadline: None,
        patience: Some(patience),
        expect: Some(Box::new(nonce)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_pinged_once_quiet_for_the_interval() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(Some(SECOND), start);
        assert_eq!(keepalive.next_check(), Some(start + SECOND));
        assert!(!keepalive.ping_due(start + SECOND / 2, true, false));
        assert!(keepalive.ping_due(start + SECOND, true, false));
        assert!(!keepalive.ping_due(start + SECOND, false, false), "busy");
        assert!(!keepalive.ping_due(start + SECOND, true, true), "closing");
        // A read puts the check off; so does the ping itself.
        keepalive.heard(start + SECOND / 2);
        assert!(!keepalive.ping_due(start + SECOND, true, false));
        assert_eq!(keepalive.next_check(), Some(start + 3 * SECOND / 2));
        keepalive.pinged(start + 2 * SECOND);
        assert_eq!(keepalive.last_activity(), start + 2 * SECOND);
        assert_eq!(keepalive.next_check(), Some(start + 3 * SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_interval_nothing_is_pinged() {
        let start = Instant::now();
        let keepalive = Keepalive::new(None, start);
        assert!(!keepalive.ping_due(start + 3600 * SECOND, true, false));
        assert_eq!(keepalive.next_check(), None);
    }

    #[test]
    fn the_health_ping_waits_for_its_nonce() {
        let ping = health_ping(SECOND);
        assert!(ping.tx.is_none() && !ping.abandoned());
        assert_eq!(ping.patience, Some(SECOND));
        let nonce = ping.expect.as_deref().expect("a nonce");
        assert!(nonce.starts_with(b"idle-"));
        let mut out = BytesMut::new();
        ping.write_to(&mut out);
        assert!(out.ends_with(&[&nonce[..], b"\r\n"].concat()));
    }
}
