//! Choosing a replica for a read.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ServerAddr;

/// Picks the replica that serves a read (cluster and sentinel clients alike). Implement it for
/// latency- or zone-aware choices; the clients only offer replicas they believe healthy.
pub trait ReplicaSelector: Send + Sync + fmt::Debug {
    /// Returns an index into `candidates`, which is never empty.
    fn select(&self, candidates: &[ServerAddr]) -> usize;
}

/// A replica chosen at random for each read.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomSelector;

impl ReplicaSelector for RandomSelector {
    fn select(&self, candidates: &[ServerAddr]) -> usize {
        rand::random_range(0..candidates.len())
    }
}

/// Replicas taken in turn.
#[derive(Debug, Default)]
pub struct RoundRobinSelector {
    next: AtomicUsize,
}

impl ReplicaSelector for RoundRobinSelector {
    fn select(&self, candidates: &[ServerAddr]) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_stay_in_range_and_round_robin_takes_turns() {
        let c = vec![
            ServerAddr::tcp("a", 1),
            ServerAddr::tcp("b", 2),
            ServerAddr::tcp("c", 3),
        ];
        let rr = RoundRobinSelector::default();
        let picks: Vec<usize> = (0..6).map(|_| rr.select(&c)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        for _ in 0..100 {
            assert!(RandomSelector.select(&c) < 3);
        }
    }
}
