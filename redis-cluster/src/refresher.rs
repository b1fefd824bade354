//! Keeping the slot map current: a refresh on a timer (with jitter) and on triggers (a
//! `MOVED`, a node that failed, a failover's `CLUSTERDOWN` or `READONLY`), at most one in flight
//! and at most one per `min_refresh_interval`; which nodes are asked, in which order; and how
//! their views become the map (the view most agree on, nodes that left closed, an event).
//!
//! [`TopologyRefresher`] holds the state; the logic is `ClusterClient`'s, here, since a refresh
//! uses the client's connections (one dial per address, shared with the commands).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_conn::{Cmd, Error};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::fan_out::FanOut;
use crate::{agreed_view, ClusterClient, ClusterError, ClusterEvent, NodeAddr, SlotMap, Topology};

/// How many nodes are asked for their view at once at each refresh.
const VIEWS_PER_REFRESH: usize = 3;

/// How many failed nodes a `NoTopology` message names before it summarizes the rest.
const FAILURES_NAMED: usize = 16;

/// The state of the refreshes of one client.
#[derive(Debug)]
pub(crate) struct TopologyRefresher {
    /// A refresh is scheduled or running: triggers meanwhile are folded into it.
    pending: AtomicBool,
    /// When the last refresh started.
    last: Mutex<Instant>,
    /// Refreshes done (the initial load included).
    done: AtomicU64,
    /// Wakes the periodic refresh on `close` (or when the client is dropped), so that it ends.
    shutdown: Arc<Notify>,
}

impl TopologyRefresher {
    /// No refresh yet.
    pub(crate) fn new() -> TopologyRefresher {
        TopologyRefresher {
            pending: AtomicBool::new(false),
            last: Mutex::new(Instant::now()),
            done: AtomicU64::new(0),
            shutdown: Arc::new(Notify::new()),
        }
    }

    /// Refreshes done so far.
    pub(crate) fn refreshes(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Ends the periodic refresh.
    pub(crate) fn stop(&self) {
        self.shutdown.notify_one();
    }

    /// Claims the one refresh in flight: false when one is already scheduled or running.
    fn claim(&self) -> bool {
        !self.pending.swap(true, Ordering::AcqRel)
    }

    /// Lets the next trigger schedule a refresh.
    fn release(&self) {
        self.pending.store(false, Ordering::Release);
    }

    /// Holds the claim until dropped: a refresh that panicked (or was cancelled) still lets
    /// the next trigger schedule one, where a release at its end would never run and stop
    /// every later refresh.
    fn held(&self) -> Claimed<'_> {
        Claimed(self)
    }

    /// The earliest a refresh may start, `min_interval` after the last one started.
    fn next_allowed(&self, min_interval: Duration) -> Instant {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) + min_interval
    }

    /// Notes that a refresh starts now.
    fn starting(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

/// The claim of the one refresh in flight, released when dropped.
struct Claimed<'a>(&'a TopologyRefresher);

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl ClusterClient {
    /// Schedules a refresh: at most one in flight, and at most one per `min_refresh_interval`;
    /// the triggers that arrive meanwhile are folded into it.
    pub fn trigger_refresh(&self) {
        let refresher = &self.inner.refresher;
        if !refresher.claim() {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            let refresher = &client.inner.refresher;
            let _claimed = refresher.held();
            let min_interval = client.inner.config.min_refresh_interval;
            tokio::time::sleep_until(refresher.next_allowed(min_interval)).await;
            let candidates = client.refresh_candidates();
            if let Err(e) = client.refresh_from(candidates).await {
                tracing::warn!(error = %e, "cluster topology refresh failed");
                let _ = client.inner.events.send(ClusterEvent::RefreshFailed {
                    error: e.to_string(),
                });
            }
        });
    }

    /// Triggers a refresh every `interval` (+-10% jitter) until the client is closed or dropped.
    pub(crate) fn start_periodic_refresh(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let shutdown = Arc::clone(&self.inner.refresher.shutdown);
        tokio::spawn(async move {
            loop {
                let jitter = interval.mul_f64(0.9 + rand::random::<f64>() * 0.2);
                tokio::select! {
                    () = tokio::time::sleep(jitter) => {}
                    () = shutdown.notified() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                ClusterClient { inner }.trigger_refresh();
            }
        });
    }

    /// The nodes asked at a refresh, in order (see [`candidates_in_order`]).
    fn refresh_candidates(&self) -> Vec<NodeAddr> {
        let map = self.slot_map();
        let conns = self.inner.conns.lock();
        candidates_in_order(&map, &self.inner.config.seeds, |addr| {
            conns.get(addr).is_some_and(|c| !c.is_connected())
        })
    }

    /// One node's view: `CLUSTER SHARDS` (Redis 7+, it tells node health), or `CLUSTER SLOTS`
    /// on older servers (or where `CLUSTER SHARDS` is refused). Nodes are given the port for the
    /// client's transport (`tls-port` when the settings carry a TLS configuration). A reply that
    /// is not a valid topology is an error naming what was wrong.
    async fn view_of(&self, addr: &NodeAddr) -> Result<Topology, ClusterError> {
        let conn = self.connection(addr).await?;
        let transport = if self.inner.config.node.connection().tls_config().is_some() {
            crate::Transport::Tls
        } else {
            crate::Transport::Plain
        };
        let view = match conn.send(Cmd::new("CLUSTER").arg("SHARDS")).await {
            Ok(reply) => Topology::from_cluster_shards_over(&reply, addr, transport),
            Err(Error::Server(_)) => {
                let reply = conn.send(Cmd::new("CLUSTER").arg("SLOTS")).await?;
                Topology::from_cluster_slots(&reply, addr)
            }
            Err(e) => return Err(e.into()),
        };
        view.map_err(|e| ClusterError::BadTopology {
            node: addr.clone(),
            error: e,
        })
    }

    /// Asks a few nodes for their view, keeps the one most agree on, and closes the connections
    /// of nodes that left.
    pub(crate) async fn refresh_from(&self, candidates: Vec<NodeAddr>) -> Result<(), ClusterError> {
        self.inner.refresher.starting();
        let mut views = Vec::new();
        let mut failures = ViewFailures::default();
        for batch in candidates.chunks(VIEWS_PER_REFRESH) {
            let mut asks = FanOut::new();
            for addr in batch {
                let (client, addr) = (self.clone(), addr.clone());
                asks.spawn(async move {
                    let view = client.view_of(&addr).await;
                    Ok((addr, view))
                });
            }
            while let Some(asked) = asks.next().await {
                match asked {
                    Ok((_, Ok(view))) if view.covered_slots() > 0 => views.push(view),
                    Ok((addr, Ok(_))) => failures.knows_no_slots(&addr),
                    Ok((addr, Err(e))) => failures.failed(&addr, e),
                    Err(e) => failures.task_failed(&e),
                }
            }
            if !views.is_empty() {
                break;
            }
        }
        let Some((view, _agreeing)) = agreed_view(views) else {
            return Err(failures.into_error());
        };
        self.install(view.slot_map());
        Ok(())
    }

    /// Makes `map` the client's map, tells what changed, and closes the connections of nodes
    /// that left (seeds stay).
    fn install(&self, map: SlotMap) {
        let keep: HashSet<NodeAddr> = map.nodes().into_iter().collect();
        let previous = std::mem::replace(
            &mut *self.inner.map.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(map.clone()),
        );
        self.inner.refresher.done.fetch_add(1, Ordering::Relaxed);
        if let Some(event) = change_between(&previous, &map) {
            if let ClusterEvent::TopologyChanged {
                added,
                removed,
                moved_slots,
                ..
            } = &event
            {
                tracing::info!(
                    added = added.len(),
                    removed = removed.len(),
                    moved_slots,
                    "cluster topology changed"
                );
            }
            let _ = self.inner.events.send(event);
        }
        let seeds = &self.inner.config.seeds;
        for conns in [&self.inner.conns, &self.inner.replica_conns] {
            conns.lock().retain(|addr, conn| {
                let stays = keep.contains(addr) || seeds.contains(addr);
                if !stays {
                    conn.close();
                }
                stays
            });
        }
    }
}

/// The nodes to ask for their view: masters first, then replicas, then the seeds, each once;
/// nodes whose connection is down right now (`is_down`) last, so that a dead node does not hold
/// a refresh up for its whole timeout.
fn candidates_in_order(
    map: &SlotMap,
    seeds: &[NodeAddr],
    is_down: impl Fn(&NodeAddr) -> bool,
) -> Vec<NodeAddr> {
    let mut seen: HashSet<NodeAddr> = HashSet::new();
    let mut out: Vec<NodeAddr> = Vec::new();
    for node in map
        .shards()
        .iter()
        .map(|s| s.master.clone())
        .chain(map.nodes())
        .chain(seeds.iter().cloned())
    {
        if seen.insert(node.clone()) {
            out.push(node);
        }
    }
    let (up, down): (Vec<_>, Vec<_>) = out.into_iter().partition(|a| !is_down(a));
    up.into_iter().chain(down).collect()
}

/// What changed from `previous` to `next`, as an event; `None` when nothing did.
fn change_between(previous: &SlotMap, next: &SlotMap) -> Option<ClusterEvent> {
    let before: HashSet<NodeAddr> = previous.nodes().into_iter().collect();
    let after: HashSet<NodeAddr> = next.nodes().into_iter().collect();
    let added: Vec<NodeAddr> = after.difference(&before).cloned().collect();
    let removed: Vec<NodeAddr> = before.difference(&after).cloned().collect();
    let moved_slots = (0..crate::SLOTS)
        .filter(|&s| previous.master(s) != next.master(s))
        .count();
    if added.is_empty() && removed.is_empty() && moved_slots == 0 {
        return None;
    }
    Some(ClusterEvent::TopologyChanged {
        added,
        removed,
        moved_slots,
        uncovered_slots: next.uncovered(),
    })
}

/// Why the nodes asked at a refresh gave no view.
#[derive(Debug)]
struct ViewFailures {
    /// Every node tried and why it gave no view, so that a failure names them all.
    failures: Vec<String>,
    /// The first TLS failure, while every node tried failed TLS: certificates that do not
    /// verify are a setting to fix, reported as the typed error rather than as text.
    tls: Option<Error>,
    only_tls: bool,
}

impl Default for ViewFailures {
    fn default() -> Self {
        ViewFailures {
            failures: Vec::new(),
            tls: None,
            only_tls: true,
        }
    }
}

impl ViewFailures {
    fn knows_no_slots(&mut self, addr: &NodeAddr) {
        self.only_tls = false;
        self.failures.push(format!("{addr}: knows no slots"));
    }

    fn failed(&mut self, addr: &NodeAddr, error: ClusterError) {
        match &error {
            ClusterError::Node(tls @ Error::Tls { .. }) => {
                self.tls.get_or_insert_with(|| tls.clone());
            }
            _ => self.only_tls = false,
        }
        self.failures.push(format!("{addr}: {error}"));
    }

    fn task_failed(&mut self, error: &ClusterError) {
        self.only_tls = false;
        match error {
            ClusterError::TaskFailed { reason } => {
                self.failures.push(format!("a view task failed: {reason}"));
            }
            other => self.failures.push(format!("a view task failed: {other}")),
        }
    }

    /// The refresh's error: the TLS failure when every node failed TLS, else every failure.
    fn into_error(self) -> ClusterError {
        match self.tls {
            Some(tls) if self.only_tls => ClusterError::Node(tls),
            _ => ClusterError::NoTopology(describe_failures(&self.failures)),
        }
    }
}

/// Every node tried and why it failed, in one line (the first [`FAILURES_NAMED`]).
fn describe_failures(failures: &[String]) -> String {
    if failures.is_empty() {
        return "no node to ask".into();
    }
    let mut text = failures
        .iter()
        .take(FAILURES_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if failures.len() > FAILURES_NAMED {
        text.push_str(&format!("; and {} more", failures.len() - FAILURES_NAMED));
    }
    format!("tried {}: {text}", failures.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeAddr {
        NodeAddr::new("127.0.0.1", port)
    }

    /// Two shards: 7000 (replica 7003) serves slots 0-8191, `second_master` (replica 7004)
    /// the rest.
    fn map(second_master: u16) -> SlotMap {
        use redis_conn::Value;
        let endpoint = |port: u16| {
            Value::Array(vec![
                Value::BulkString("127.0.0.1".into()),
                Value::Integer(i64::from(port)),
            ])
        };
        let range = |first: i64, last: i64, master: u16, replica: u16| {
            Value::Array(vec![
                Value::Integer(first),
                Value::Integer(last),
                endpoint(master),
                endpoint(replica),
            ])
        };
        let reply = Value::Array(vec![
            range(0, 8191, 7000, 7003),
            range(8192, 16383, second_master, 7004),
        ]);
        Topology::from_cluster_slots(&reply, &node(7000))
            .unwrap()
            .slot_map()
    }

    #[test]
    fn a_refresh_that_panics_still_lets_the_next_one_be_scheduled() {
        let refresher = std::sync::Arc::new(TopologyRefresher::new());
        assert!(refresher.claim());
        let shared = std::sync::Arc::clone(&refresher);
        let panicked = std::thread::spawn(move || {
            let _claimed = shared.held();
            panic!("a refresh that panics");
        })
        .join();
        assert!(panicked.is_err());
        assert!(refresher.claim(), "the claim outlived the panicked refresh");
        assert!(!refresher.claim(), "one refresh at a time");
    }

    #[test]
    fn masters_are_asked_first_then_replicas_then_seeds_and_nodes_that_are_down_last() {
        let seeds = [node(7000), node(9000)];
        let order = candidates_in_order(&map(7001), &seeds, |a| *a == node(7001));
        assert_eq!(order[0], node(7000));
        assert_eq!(order.last(), Some(&node(7001)), "{order:?}");
        assert_eq!(order[order.len() - 2], node(9000), "{order:?}");
        assert_eq!(order.len(), 5, "each node once: {order:?}");
    }

    #[test]
    fn a_change_names_the_nodes_that_came_and_went_and_the_slots_that_moved() {
        assert!(change_between(&map(7001), &map(7001)).is_none());
        let Some(ClusterEvent::TopologyChanged {
            added,
            removed,
            moved_slots,
            uncovered_slots,
        }) = change_between(&map(7001), &map(7005))
        else {
            panic!("no change seen");
        };
        assert_eq!(added, [node(7005)]);
        assert_eq!(removed, [node(7001)]);
        assert_eq!(moved_slots, 8192);
        assert_eq!(uncovered_slots, 0);
    }

    #[test]
    fn a_failed_refresh_names_every_node_or_the_tls_failure_they_all_had() {
        let tls = || {
            ClusterError::Node(Error::Tls {
                addr: "a".into(),
                reason: "unknown CA".into(),
            })
        };
        let mut all_tls = ViewFailures::default();
        all_tls.failed(&node(1), tls());
        all_tls.failed(&node(2), tls());
        assert!(matches!(
            all_tls.into_error(),
            ClusterError::Node(Error::Tls { .. })
        ));

        let mut mixed = ViewFailures::default();
        mixed.failed(&node(1), tls());
        mixed.knows_no_slots(&node(2));
        let ClusterError::NoTopology(text) = mixed.into_error() else {
            panic!("not NoTopology");
        };
        assert!(text.starts_with("tried 2: "), "{text}");
        assert!(text.contains("127.0.0.1:2: knows no slots"), "{text}");

        let many: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
        assert!(describe_failures(&many).ends_with("; and 4 more"));
        assert_eq!(describe_failures(&[]), "no node to ask");
    }
}
