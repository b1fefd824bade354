//! Keeping the master's replicas for reads: the list from `SENTINEL REPLICAS` (capped at
//! [`MAX_REPLICAS`]), dialled all at once, as a [`ReplicaSet`] the follower installs.
//!
//! A refresh runs in a task of its own (see `follower.rs`), so that a slow or dead replica never
//! delays following a failover: however many replicas are dead, it takes one connect timeout.

use redis_conn::{Node, ReplicaSet, ServerAddr};

use crate::discovery::{listed_nodes, REPLICA_DOWN};
use crate::{SentinelConfig, MAX_REPLICAS};

/// The replicas the sentinels list now (skipping those flagged down or disconnected), keeping
/// the connections of `old` that are still open and dialling the others all at once. A replica
/// that cannot be reached is left out. `None` when no sentinel answered.
pub(crate) async fn fetch_replicas(
    config: &SentinelConfig,
    sentinels: &[ServerAddr],
    old: &ReplicaSet,
) -> Option<ReplicaSet> {
    let addrs = listed_nodes(config, sentinels, "REPLICAS", REPLICA_DOWN, MAX_REPLICAS).await?;
    let mut dials = tokio::task::JoinSet::new();
    let mut next: Vec<(ServerAddr, Option<Node>)> = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.into_iter().enumerate() {
        let kept = old.get(&addr).filter(|node| !node.is_closed()).cloned();
        if kept.is_none() {
            let config = config.node_at(&addr);
            dials.spawn(async move { (i, Node::connect(config).await) });
        }
        next.push((addr, kept));
    }
    while let Some(joined) = dials.join_next().await {
        match joined {
            Ok((i, Ok(node))) => next[i].1 = Some(node),
            Ok((i, Err(e))) => {
                tracing::debug!(replica = %next[i].0, error = %e, "cannot reach a replica");
            }
            Err(e) => tracing::debug!(error = %e, "a replica dial failed"),
        }
    }
    Some(
        next.into_iter()
            .filter_map(|(addr, node)| Some((addr, node?)))
            .collect(),
    )
}

/// Closes every connection of `set`.
pub(crate) fn close_all(set: &ReplicaSet) {
    for node in set.connections() {
        node.close();
    }
}
