//! The facade against a real 3+3 cluster: the same code as standalone, multi-key commands split
//! by slot, pipelines across the cluster, single-slot transactions, cluster-wide scans, scripts
//! and pub/sub, replica reads, topology events.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use redis_client::prelude::*;
use redis_client::{ClusterError, Mode, Script, ServerError, SubscriptionKind, Value};
use test_support::Cluster;

fn url(cluster: &Cluster) -> String {
    let seeds: Vec<String> = cluster.seeds().iter().map(ToString::to_string).collect();
    format!("redis+cluster://{}", seeds.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_spans_every_slot() {
    let cluster = Cluster::start().unwrap();
    let topology: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&topology);
    let c = Client::connect(
        Config::from_url(&url(&cluster))
            .unwrap()
            .on_topology_change(move |e| seen.lock().unwrap().push(e.to_string())),
    )
    .await
    .unwrap();
    assert_eq!(c.mode(), Mode::Cluster);

    // Multi-key commands over keys in many slots: split, sent per node, merged in order.
    let pairs: Vec<(String, String)> = (0..200)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    c.mset(&pairs).await.unwrap();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let values: Vec<Option<String>> = c.mget(&keys).await.unwrap();
    assert_eq!(values.len(), 200);
    assert!(values
        .iter()
        .enumerate()
        .all(|(i, v)| v.as_deref() == Some(format!("v{i}").as_str())));
    assert_eq!(c.exists(&keys).await.unwrap(), 200);
    assert_eq!(c.dbsize().await.unwrap(), 200);
    // An atomic command across slots is refused before anything is sent.
    let err = c.msetnx(&[("a", "1"), ("b", "2")]).await.unwrap_err();
    assert!(
        matches!(err, Error::Cluster(ClusterError::CrossSlot { .. })),
        "{err:?}"
    );
    assert_eq!(err.sent(), Some(redis_client::Sent::No));
    assert_eq!(err.kind(), "cross_slot");
    assert!(c.msetnx(&[("{t}a", "1"), ("{t}b", "2")]).await.unwrap());

    // A pipeline over every slot keeps the caller's order, error replies in place.
    let mut p = c.pipeline();
    for i in 0..100 {
        p.get(format!("k{i}"));
    }
    p.incr("k5");
    let (gets, wrong): (Vec<String>, Result<i64, ServerError>) = {
        let mut all: Vec<Value> = p.query().await.unwrap();
        let last = all.pop().unwrap();
        (
            all.into_iter()
                .map(|v| redis_client::FromValue::from_value(v).unwrap())
                .collect(),
            redis_client::FromValue::from_value(last).unwrap(),
        )
    };
    assert!(gets.iter().enumerate().all(|(i, v)| *v == format!("v{i}")));
    assert!(wrong.is_err());
    // Atomic pipelines on one slot; across slots they are refused.
    let (a, b): (i64, i64) = c
        .pipeline()
        .atomic()
        .incr("{user:7}visits")
        .incr("{user:7}clicks")
        .query()
        .await
        .unwrap();
    assert_eq!((a, b), (1, 1));
    let err = c
        .pipeline()
        .atomic()
        .incr("x1")
        .incr("x2")
        .query::<Value>()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Cluster(ClusterError::CrossSlot { .. })),
        "{err:?}"
    );

    // WATCH on one slot.
    let tx = c.watch("{acct}balance").await.unwrap();
    let balance: Option<i64> = tx.get("{acct}balance").await.unwrap();
    assert_eq!(balance, None);
    // Reading a key of another slot inside the transaction is refused before sending.
    let err = tx.get::<Option<String>>("k1").await.unwrap_err();
    assert!(
        matches!(err, Error::Cluster(ClusterError::CrossSlot { .. })),
        "{err:?}"
    );
    let mut writes = c.pipeline();
    writes.set("{acct}balance", 10).incr("{acct}ops");
    assert_eq!(tx.exec::<((), i64)>(&writes).await.unwrap(), Some(((), 1)));

    // Scan over every master.
    let scanned: HashSet<String> = c
        .scan(
            redis_client::ScanOptions::default()
                .pattern("k*")
                .count(100),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(scanned.len(), 200);
    // DEL across slots, summed.
    assert_eq!(c.del(&keys).await.unwrap(), 200);

    // Scripts: loaded on the node of their keys' slot when it did not know them.
    let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    for key in ["s1", "s2", "s3", "s4", "s5", "s6"] {
        let n: i64 = script.invoke(&c, key, 5).await.unwrap();
        assert_eq!(n, 5);
    }

    // A blocking command waits on its own connection while the rest flows.
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.blpop::<Option<(String, String)>>("q", Duration::from_secs(3))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    for i in 0..100 {
        c.set(format!("other{i}"), 1).await.unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    c.rpush("q", "job").await.unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        Some(("q".to_string(), "job".to_string()))
    );

    // A slot moved behind the client's back: MOVED is followed and counted, the topology event
    // reaches the callback.
    let cluster_client = c.cluster().unwrap();
    let s = redis_client::layers::cluster::slot(b"moving");
    let map = cluster_client.slot_map();
    let old = map.master(s).unwrap().clone();
    let new = map
        .shards()
        .iter()
        .map(|sh| sh.master.clone())
        .find(|m| *m != old)
        .unwrap();
    let to = cluster
        .nodes()
        .iter()
        .find(|n| redis_client::NodeAddr::from(n.addr()) == new)
        .unwrap();
    let to_id = to
        .admin()
        .unwrap()
        .cmd_string(&["CLUSTER", "MYID"])
        .unwrap();
    for node in cluster.nodes().iter().take(cluster.master_count()) {
        node.cmd(&["CLUSTER", "SETSLOT", &s.to_string(), "NODE", &to_id])
            .unwrap();
    }
    // Until every master agrees (their epochs settle by gossip, and a master may for a moment
    // send the slot back where it was), a client can be bounced between two of them; what is
    // tested here is following a MOVED, not the cluster's convergence.
    let agreed = Instant::now() + Duration::from_secs(5);
    let moved_to = format!(":{} ", to.port());
    while !cluster
        .nodes()
        .iter()
        .take(cluster.master_count())
        .all(|n| match n.cmd(&["GET", "moving"]) {
            Ok(_) => n.port() == to.port(),
            Err(e) => format!("{e} ").contains(&moved_to),
        })
    {
        assert!(
            Instant::now() < agreed,
            "the masters never agreed on slot {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.set("moving", "v").await.unwrap();
    assert!(c.stats().moved >= 1);

    // A graceful failover of the first shard: the refresh that follows finds the shard's slots
    // under a new master, and the event reaches the callback.
    let first_master = cluster.nodes()[0].addr();
    let replica = cluster
        .nodes()
        .iter()
        .skip(cluster.master_count())
        .find(|n| match n.cmd(&["ROLE"]) {
            Ok(Value::Array(role)) => {
                role.get(2) == Some(&Value::Integer(i64::from(first_master.port())))
            }
            _ => false,
        })
        .expect("a replica of the first master");
    replica.cmd(&["CLUSTER", "FAILOVER"]).unwrap();
    let key = (0..)
        .map(|i| format!("shard0-{i}"))
        .find(|k| {
            cluster_client
                .slot_map()
                .master(redis_client::layers::cluster::slot(k.as_bytes()))
                == Some(&redis_client::NodeAddr::from(first_master))
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while topology.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no topology_changed event");
        // Writes to the old master's shard meet MOVED once it has stepped down.
        let _ = c.set(&key, "v").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(topology.lock().unwrap()[0].starts_with("topology_changed"));
    assert!(c.stats().topology_refreshes >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_and_replica_reads_through_the_facade() {
    let cluster = Cluster::start().unwrap();
    let c = Client::connect(
        Config::from_url(&format!(
            "{}?read_from_replicas=true&replica_selector=round_robin",
            url(&cluster)
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let mut sub = c.subscriber().await.unwrap();
    sub.subscribe(["news"]).await.unwrap();
    let channels: Vec<String> = (0..10).map(|i| format!("orders:{i}")).collect();
    sub.ssubscribe(&channels).await.unwrap();
    // PUBLISH from the client reaches the subscriber whatever node each lands on (the count
    // it answers is the node's own subscribers, so the arrival below is what proves it).
    c.publish("news", "hello").await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.kind, &m.payload[..]),
        (SubscriptionKind::Channel, &b"hello"[..])
    );
    // SPUBLISH is routed by its channel's slot, to the shard that serves the subscription.
    for channel in &channels {
        assert_eq!(c.spublish(channel, "o").await.unwrap(), 1, "{channel}");
    }
    for _ in &channels {
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.kind, SubscriptionKind::Shard);
    }

    // Reads from replicas: the value written is read back (replication is quick on loopback).
    c.set("r", "v").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if c.get::<Option<String>>("r").await.unwrap().as_deref() == Some("v") {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let replicas: u64 = cluster
        .nodes()
        .iter()
        .skip(cluster.master_count())
        .map(|n| n.command_calls("get").unwrap_or(0))
        .sum();
    assert!(replicas >= 1, "no GET reached a replica");
}
