//! What several of the cluster client's test files do alike.

// Each test file uses some of these, none uses all.
#![allow(dead_code)]

use std::time::Duration;

use redis_cluster::{ClusterClient, NodeAddr, SlotMap};
use redis_conn::{Cmd, Value};
use test_support::Cluster;

/// A bulk string reply.
pub(crate) fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec().into())
}

/// A master of `map` other than `than`.
pub(crate) fn other_master(map: &SlotMap, than: &NodeAddr) -> NodeAddr {
    map.shards()
        .iter()
        .map(|s| s.master.clone())
        .find(|m| m != than)
        .expect("another master")
}

/// Gives an (empty) slot to the master at `to`, on every master, behind the client's back.
pub(crate) fn move_slot(cluster: &Cluster, slot: u16, to: &NodeAddr) {
    let to_id = cluster.nodes()[node_index(cluster, to)]
        .admin()
        .unwrap()
        .cmd_string(&["CLUSTER", "MYID"])
        .unwrap();
    for node in cluster.nodes().iter().take(cluster.master_count()) {
        node.cmd(&["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &to_id])
            .unwrap();
    }
}

/// Sets `key:0` .. `key:{n-1}` to their own names, then reads every one back.
pub(crate) async fn set_and_read_back(client: &ClusterClient, n: usize) {
    for i in 0..n {
        let key = format!("key:{i}");
        client
            .send(Cmd::new("SET").arg(&key).arg(&key))
            .await
            .unwrap();
    }
    for i in 0..n {
        let key = format!("key:{i}");
        assert_eq!(
            client.send(Cmd::new("GET").arg(&key)).await.unwrap(),
            bulk(&key)
        );
    }
}

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
