//! Choosing a replica for a read.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::NodeAddr;

/// Picks the replica that serves a read. Implement it for latency- or zone-aware choices; the
/// client only offers replicas it believes healthy.
pub trait ReplicaSelector: Send + Sync + fmt::Debug {
    /// Returns an index into `candidates`, which is never empty.
    fn select(&self, slot: u16, candidates: &[NodeAddr]) -> usize;
}

/// A replica chosen at random for each read.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomSelector;

impl ReplicaSelector for RandomSelector {
    fn select(&self, _slot: u16, candidates: &[NodeAddr]) -> usize {
        rand::random_range(0..candidates.len())
    }
}

/// Replicas taken in turn.
#[derive(Debug, Default)]
pub struct RoundRobinSelector {
    next: AtomicUsize,
}

impl ReplicaSelector for RoundRobinSelector {
    fn select(&self, _slot: u16, candidates: &[NodeAddr]) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_stay_in_range_and_round_robin_takes_turns() {
        let c = vec![
            NodeAddr::new("a", 1),
            NodeAddr::new("b", 2),
            NodeAddr::new("c", 3),
        ];
        let rr = RoundRobinSelector::default();
        let picks: Vec<usize> = (0..6).map(|_| rr.select(0, &c)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        for _ in 0..100 {
            assert!(RandomSelector.select(0, &c) < 3);
        }
    }
}
