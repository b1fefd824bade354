//! Reads from replicas: the [`ReplicaSelector`] that chooses one, and the [`ReplicaSet`] of one
//! master's replicas with their connections, which offers the selector only the healthy ones and
//! says when none is (the read then goes to the master).
//!
//! The sentinel client keeps one `ReplicaSet` of [`Node`]s per master; the cluster client keeps
//! one per shard, of addresses whose connections it dials on first use (and judges their health
//! with [`ReplicaSet::pick_where`]). Both take the setting from [`ReplicaReads`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::table::{Blocking, Effect};
use crate::{Cmd, Node, ServerAddr};

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

/// The setting a client with replicas holds: whether reads go to replicas (off by default), and
/// the [`ReplicaSelector`] that chooses one (random by default).
#[derive(Debug, Clone)]
pub struct ReplicaReads {
    on: bool,
    selector: Arc<dyn ReplicaSelector>,
}

impl Default for ReplicaReads {
    fn default() -> Self {
        ReplicaReads {
            on: false,
            selector: Arc::new(RandomSelector),
        }
    }
}

impl ReplicaReads {
    /// Turns reads from replicas on or off.
    pub fn set_on(&mut self, on: bool) {
        self.on = on;
    }

    /// Chooses replicas with `selector`.
    pub fn set_selector(&mut self, selector: impl ReplicaSelector + 'static) {
        self.selector = Arc::new(selector);
    }

    /// Whether reads go to replicas.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The selector that chooses a replica.
    #[inline]
    pub fn selector(&self) -> &dyn ReplicaSelector {
        self.selector.as_ref()
    }

    /// Whether `cmd` goes to a replica: reads from replicas are on, and it is a read that does
    /// not block (a blocking read waits on the master's exclusive connections).
    #[inline]
    pub fn wants(&self, cmd: &Cmd) -> bool {
        self.on && cmd.effect() == Effect::ReadOnly && cmd.blocking() == Blocking::No
    }
}

/// Whether a replica's connection can serve a read right now.
pub trait ReplicaHealth {
    /// True when a read sent now would reach the replica.
    fn is_healthy(&self) -> bool;
}

impl ReplicaHealth for Node {
    /// Connected, and not broken since.
    fn is_healthy(&self) -> bool {
        self.is_connected() && !self.is_broken()
    }
}

/// The replicas of one master, each with its connection: the ones a read may go to.
///
/// [`ReplicaSet::pick`] offers the [`ReplicaSelector`] the healthy replicas only, and answers
/// `None` when there is none: the read then goes to the master. `C` is what a connection is
/// (a [`Node`] by default; the cluster client's is the address of a connection it dials on first
/// use); the set never dials or closes, its owner does.
#[derive(Debug, Clone)]
pub struct ReplicaSet<C = Node> {
    /// The replicas' addresses, in the order given: what the selector sees.
    addrs: Vec<ServerAddr>,
    /// `conns[i]` is the connection to `addrs[i]`.
    conns: Vec<C>,
}

impl<C> Default for ReplicaSet<C> {
    fn default() -> Self {
        ReplicaSet {
            addrs: Vec::new(),
            conns: Vec::new(),
        }
    }
}

impl<C> FromIterator<(ServerAddr, C)> for ReplicaSet<C> {
    /// The replicas in the order given; a repeated address keeps its first connection.
    fn from_iter<I: IntoIterator<Item = (ServerAddr, C)>>(replicas: I) -> Self {
        let mut set = ReplicaSet::default();
        for (addr, conn) in replicas {
            if !set.addrs.contains(&addr) {
                set.addrs.push(addr);
                set.conns.push(conn);
            }
        }
        set
    }
}

impl<C> ReplicaSet<C> {
    /// How many replicas the set holds.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether the set holds no replica.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The replicas' addresses, in order.
    pub fn addrs(&self) -> &[ServerAddr] {
        &self.addrs
    }

    /// The connections, in the order of [`ReplicaSet::addrs`].
    pub fn connections(&self) -> impl Iterator<Item = &C> {
        self.conns.iter()
    }

    /// Each replica's address with its connection.
    pub fn iter(&self) -> impl Iterator<Item = (&ServerAddr, &C)> {
        self.addrs.iter().zip(&self.conns)
    }

    /// The connection to `addr`, if it is one of the replicas.
    pub fn get(&self, addr: &ServerAddr) -> Option<&C> {
        let i = self.addrs.iter().position(|a| a == addr)?;
        Some(&self.conns[i])
    }

    /// The connections of the replicas that `next` no longer holds: what to close when `next`
    /// replaces this set.
    pub fn dropped_by<'a>(&'a self, next: &'a ReplicaSet<C>) -> impl Iterator<Item = &'a C> {
        self.iter()
            .filter(|(addr, _)| !next.addrs.contains(addr))
            .map(|(_, conn)| conn)
    }
}

impl<C> ReplicaSet<C> {
    /// The replica a read goes to: `selector` chooses among those `is_healthy` accepts. `None`
    /// when it accepts none (or the set is empty): read from the master.
    ///
    /// For an owner whose health rule needs more than the connection (the cluster client counts
    /// a replica it has not dialled yet as healthy, and looks its connection up by address);
    /// [`ReplicaSet::pick`] is this with [`ReplicaHealth`]. When every replica is healthy, as is
    /// usual, this allocates nothing.
    pub fn pick_where(
        &self,
        selector: &dyn ReplicaSelector,
        is_healthy: impl Fn(&C) -> bool,
    ) -> Option<&C> {
        if !self.conns.is_empty() && self.conns.iter().all(&is_healthy) {
            return Some(&self.conns[selector.select(&self.addrs) % self.conns.len()]);
        }
        let (offered, healthy): (Vec<ServerAddr>, Vec<&C>) = self
            .iter()
            .filter(|(_, conn)| is_healthy(conn))
            .map(|(addr, conn)| (addr.clone(), conn))
            .unzip();
        if healthy.is_empty() {
            return None;
        }
        Some(healthy[selector.select(&offered) % healthy.len()])
    }
}

impl<C: ReplicaHealth> ReplicaSet<C> {
    /// The replica a read goes to: `selector` chooses among the healthy ones. `None` when none
    /// is healthy (or the set is empty): read from the master.
    ///
    /// When every replica is healthy, as is usual, this allocates nothing.
    pub fn pick(&self, selector: &dyn ReplicaSelector) -> Option<&C> {
        self.pick_where(selector, ReplicaHealth::is_healthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A connection whose health a test sets.
    #[derive(Debug, Clone)]
    struct Fake {
        name: &'static str,
        healthy: Arc<AtomicBool>,
    }

    impl ReplicaHealth for Fake {
        fn is_healthy(&self) -> bool {
            self.healthy.load(Ordering::Relaxed)
        }
    }

    fn fake(name: &'static str, healthy: bool) -> (ServerAddr, Fake) {
        let conn = Fake {
            name,
            healthy: Arc::new(AtomicBool::new(healthy)),
        };
        (ServerAddr::tcp(name, 1), conn)
    }

    /// Picks the last candidate, and remembers what it was offered.
    #[derive(Debug, Default)]
    struct Last(std::sync::Mutex<Vec<ServerAddr>>);

    impl ReplicaSelector for Last {
        fn select(&self, candidates: &[ServerAddr]) -> usize {
            *self.0.lock().unwrap() = candidates.to_vec();
            candidates.len() - 1
        }
    }

    #[test]
    fn a_read_goes_to_a_healthy_replica_chosen_by_the_selector() {
        let set: ReplicaSet<Fake> = [fake("a", true), fake("b", false), fake("c", true)]
            .into_iter()
            .collect();
        let last = Last::default();
        assert_eq!(set.pick(&last).map(|c| c.name), Some("c"));
        let offered = last.0.lock().unwrap().clone();
        assert_eq!(
            offered,
            vec![ServerAddr::tcp("a", 1), ServerAddr::tcp("c", 1)]
        );

        set.get(&ServerAddr::tcp("c", 1))
            .unwrap()
            .healthy
            .store(false, Ordering::Relaxed);
        assert_eq!(set.pick(&last).map(|c| c.name), Some("a"));
        let all_healthy: ReplicaSet<Fake> =
            [fake("a", true), fake("b", true)].into_iter().collect();
        assert_eq!(all_healthy.pick(&last).map(|c| c.name), Some("b"));
        assert_eq!(last.0.lock().unwrap().len(), 2, "every replica offered");
    }

    #[test]
    fn only_reads_that_do_not_block_go_to_replicas_and_only_when_on() {
        let mut reads = ReplicaReads::default();
        let get = Cmd::new("GET").arg("k");
        assert!(!reads.is_on());
        assert!(!reads.wants(&get));
        reads.set_on(true);
        reads.set_selector(RoundRobinSelector::default());
        assert!(reads.wants(&get));
        assert!(!reads.wants(&Cmd::new("SET").arg("k").arg("v")));
        assert!(!reads.wants(&Cmd::new("BLPOP").arg("k").arg("0")));
        let c = [ServerAddr::tcp("a", 1), ServerAddr::tcp("b", 1)];
        assert_eq!(
            [reads.selector().select(&c), reads.selector().select(&c)],
            [0, 1]
        );
    }

    #[test]
    fn an_owner_can_judge_health_itself() {
        let set: ReplicaSet<&str> = [("a", 1), ("b", 1), ("c", 1)]
            .into_iter()
            .map(|(host, port)| (ServerAddr::tcp(host, port), host))
            .collect();
        let last = Last::default();
        assert_eq!(set.pick_where(&last, |c| *c != "c"), Some(&"b"));
        assert_eq!(last.0.lock().unwrap().len(), 2, "only the healthy offered");
        assert_eq!(set.pick_where(&last, |_| true), Some(&"c"));
        assert_eq!(set.pick_where(&last, |_| false), None);
    }

    #[test]
    fn with_no_healthy_replica_the_read_goes_to_the_master() {
        let none: ReplicaSet<Fake> = ReplicaSet::default();
        assert!(none.pick(&RandomSelector).is_none());
        let down: ReplicaSet<Fake> = [fake("a", false), fake("b", false)].into_iter().collect();
        assert!(down.pick(&RoundRobinSelector::default()).is_none());
    }

    #[test]
    fn a_new_set_says_which_connections_it_dropped() {
        let old: ReplicaSet<Fake> = [fake("a", true), fake("b", true), fake("a", false)]
            .into_iter()
            .collect();
        assert_eq!(old.len(), 2, "a repeated address is kept once");
        assert!(old.get(&ServerAddr::tcp("a", 1)).unwrap().is_healthy());
        let next: ReplicaSet<Fake> = [fake("b", true), fake("c", true)].into_iter().collect();
        let dropped: Vec<&str> = old.dropped_by(&next).map(|c| c.name).collect();
        assert_eq!(dropped, vec!["a"]);
        assert_eq!(
            next.addrs(),
            &[ServerAddr::tcp("b", 1), ServerAddr::tcp("c", 1)]
        );
        assert!(!next.is_empty());
    }

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
