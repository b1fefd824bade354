//! What several of the cluster client's test files do alike.

use std::time::Duration;

use redis_cluster::{ClusterClient, NodeAddr};
use test_support::Cluster;

/// The index in `cluster.nodes()` of the node at `addr` (plain or TLS port).
pub(crate) fn node_index(cluster: &Cluster, addr: &NodeAddr) -> usize {
    cluster
        .nodes()
        .iter()
        .position(|n| n.port() == addr.port)
        .expect("a node of the cluster")
}

/// Promotes a replica of the shard serving slot 16383 with `CLUSTER FAILOVER`, behind the
/// client's back, and waits (10 s at most) until the client's map names it: with no command
/// sent to that shard, only the periodic refresh can tell the client. Returns the new master.
pub(crate) async fn fail_over_unseen(cluster: &Cluster, client: &ClusterClient) -> NodeAddr {
    let shard = client.slot_map().shard(16383).unwrap().clone();
    let promoted = shard.replicas[0].clone();
    cluster.nodes()[node_index(cluster, &promoted)]
        .cmd(&["CLUSTER", "FAILOVER"])
        .unwrap();
    let promoted_ref = &promoted;
    test_support::eventually(
        "the periodic refresh to learn of the failover",
        Duration::from_secs(10),
        || async move { client.slot_map().master(16383) == Some(promoted_ref) },
    )
    .await;
    promoted
}
