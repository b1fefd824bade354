//! The cluster client against a real 3+3 cluster: routing, MOVED after a slot moves, a graceful
//! failover under load with no error visible, and a periodic refresh that finds a failover
//! without any MOVED.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_cluster::{slot, ClusterClient, ClusterConfig, ClusterError, NodeAddr};
use redis_conn::{Cmd, ConnectionConfig, ServerAddr, Value};
use test_support::Cluster;

mod common;
use common::{bulk, move_slot, node_index, other_master};

fn config(cluster: &Cluster) -> ClusterConfig {
    let seeds: Vec<NodeAddr> = cluster.seeds().into_iter().map(NodeAddr::from).collect();
    let template = ConnectionConfig::new(ServerAddr::from(cluster.seeds()[0]));
    ClusterConfig::new(seeds, template)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_every_key_and_follows_a_moved_slot() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster).refresh_interval(None))
        .await
        .unwrap();
    assert_eq!(client.refreshes(), 1);
    common::set_and_read_back(&client, 1000).await;
    // Keyless commands go to some master; atomic cross-slot commands are refused before sending.
    assert_eq!(
        client.send(Cmd::new("PING")).await.unwrap(),
        Value::SimpleString("PONG".into())
    );
    assert!(matches!(
        client
            .send(
                Cmd::new("MSETNX")
                    .arg("key:1")
                    .arg("a")
                    .arg("key:2")
                    .arg("b")
            )
            .await,
        Err(ClusterError::CrossSlot { .. })
    ));
    assert_eq!(client.refreshes(), 1, "refreshes without a reason");

    // Move an empty slot to another master behind the client's back.
    let key = "moved-key";
    let s = slot(key.as_bytes());
    let map = client.slot_map();
    let old = map.master(s).unwrap().clone();
    let new = other_master(&map, &old);
    move_slot(&cluster, s, &new);
    client
        .send(Cmd::new("SET").arg(key).arg("v"))
        .await
        .unwrap();
    assert_eq!(
        client.slot_map().master(s),
        Some(&new),
        "MOVED did not patch the map"
    );
    assert_eq!(
        client.send(Cmd::new("GET").arg(key)).await.unwrap(),
        bulk("v")
    );
    // The MOVED also triggered one refresh (rate-limited, in the background).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        (2..=3).contains(&client.refreshes()),
        "{}",
        client.refreshes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_failover_under_load_shows_no_error() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster)).await.unwrap();
    let mut events = client.events();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("w{w}:{}", i % 500);
                if let Err(e) = client.send(Cmd::new("SET").arg(&key).arg("v")).await {
                    errors.push(e);
                }
                if let Err(e) = client.send(Cmd::new("GET").arg(&key)).await {
                    errors.push(e);
                }
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Promote the replica of the shard that owns slot 0.
    let map = client.slot_map();
    let shard = map.shard(0).unwrap().clone();
    let replica = node_index(&cluster, &shard.replicas[0]);
    cluster.nodes()[replica]
        .cmd(&["CLUSTER", "FAILOVER"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.master_of_slot(0).unwrap() != replica {
        assert!(Instant::now() < deadline, "the failover did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.unwrap());
    }
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(
        client.slot_map().master(0),
        Some(&shard.replicas[0]),
        "the client still routes to the old master"
    );
    assert!(client.refreshes() <= 10, "{} refreshes", client.refreshes());
    // Monitoring saw the change: the shard's slots moved to the promoted replica (part of them
    // may already have been patched by MOVED replies; the demoted master may leave and come back
    // in the views while it re-syncs as a replica).
    let mut moved = 0;
    while let Ok(event) = events.try_recv() {
        if let redis_cluster::ClusterEvent::TopologyChanged { moved_slots, .. } = event {
            moved += moved_slots;
        }
    }
    let shard_slots: usize = shard
        .ranges
        .iter()
        .map(|&(a, b)| usize::from(b - a) + 1)
        .sum();
    assert!(
        moved > 0 && moved <= shard_slots,
        "topology_changed events report {moved} moved slots"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_refresh_finds_a_failover_without_any_moved() {
    let cluster = Cluster::start().unwrap();
    let client =
        ClusterClient::connect(config(&cluster).refresh_interval(Some(Duration::from_millis(500))))
            .await
            .unwrap();
    // No command touches that shard; only the timer can tell the client.
    common::fail_over_unseen(&cluster, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_commands_are_split_by_slot_and_merged_in_order() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster).refresh_interval(None))
        .await
        .unwrap();
    // 1000 keys over (nearly) every master and many slots.
    let keys: Vec<String> = (0..1000).map(|i| format!("multi:{i}")).collect();
    let slots: std::collections::HashSet<u16> = keys.iter().map(|k| slot(k.as_bytes())).collect();
    assert!(slots.len() > 900);
    let mut mset = Cmd::new("MSET");
    for k in &keys {
        mset.push_arg(k);
        mset.push_arg(format!("value-of-{k}"));
    }
    assert_eq!(
        client.send(mset).await.unwrap(),
        Value::SimpleString("OK".into())
    );
    let mut mget = Cmd::new("MGET");
    for k in &keys {
        mget.push_arg(k);
    }
    mget.push_arg("multi:missing");
    let Value::Array(values) = client.send(mget).await.unwrap() else {
        panic!("MGET is an array")
    };
    assert_eq!(values.len(), 1001);
    for (k, v) in keys.iter().zip(&values) {
        assert_eq!(*v, bulk(&format!("value-of-{k}")), "{k} out of order");
    }
    assert_eq!(values[1000], Value::Null);
    let mut exists = Cmd::new("EXISTS");
    for k in &keys[..500] {
        exists.push_arg(k);
    }
    exists.push_arg("multi:missing");
    assert_eq!(client.send(exists).await.unwrap(), Value::Integer(500));
    let mut del = Cmd::new("DEL");
    for k in &keys[..300] {
        del.push_arg(k);
    }
    assert_eq!(client.send(del).await.unwrap(), Value::Integer(300));
    let mut unlink = Cmd::new("UNLINK");
    for k in &keys {
        unlink.push_arg(k);
    }
    assert_eq!(client.send(unlink).await.unwrap(), Value::Integer(700));
    // Every master really holds nothing any more.
    for node in cluster.nodes().iter().take(3) {
        assert_eq!(node.admin().unwrap().cmd_int(&["DBSIZE"]).unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_costs_errors_only_on_its_shard_and_only_until_promotion() {
    let mut cluster = Cluster::builder()
        .args(["--cluster-require-full-coverage", "no"])
        .start()
        .unwrap();
    let client = ClusterClient::connect(config(&cluster)).await.unwrap();
    let map = client.slot_map();
    let victim_shard = map.shard(0).unwrap().clone();
    let victim = node_index(&cluster, &victim_shard.master);
    let heir = node_index(&cluster, &victim_shard.replicas[0]);
    let on_victim = |key: &str| {
        victim_shard.ranges.iter().any(|&(a, b)| {
            let s = slot(key.as_bytes());
            a <= s && s <= b
        })
    };

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..4 {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("k{w}:{}", i % 300);
                if let Err(e) = client.send(Cmd::new("SET").arg(&key).arg("v")).await {
                    errors.push((key, started.elapsed(), e));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nodes_mut()[victim].kill9();
    let killed_at = started.elapsed();
    // Wait for the replica to be promoted (node timeout 1 s: about 2-3 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let promoted = cluster.nodes()[heir]
            .admin()
            .and_then(|mut a| a.info_field("replication", "role"))
            .ok()
            .flatten();
        if promoted.as_deref() == Some("master") {
            break;
        }
        assert!(Instant::now() < deadline, "the replica was never promoted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let promoted_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.unwrap());
    }
    assert!(
        !errors.is_empty(),
        "no write failed while the victim's master was dead: the load never reached its shard"
    );
    for (key, at, e) in &errors {
        assert!(
            on_victim(key),
            "{key} on a healthy shard failed at {at:?}: {e}"
        );
        assert!(
            *at >= killed_at && *at <= promoted_at + Duration::from_millis(2000),
            "{key} failed at {at:?}: killed {killed_at:?}, promoted {promoted_at:?}: {e}"
        );
    }
    // Without any action from us, the shard works again through its new master.
    for i in 0..50 {
        let key = format!("after:{i}");
        client
            .send(Cmd::new("SET").arg(&key).arg("v"))
            .await
            .unwrap();
    }
    assert_eq!(client.slot_map().master(0), Some(&victim_shard.replicas[0]));
    let last_error = errors.iter().map(|(_, at, _)| *at).max();
    eprintln!(
        "killed at {killed_at:?}, promoted at {promoted_at:?}, last error at {last_error:?}, \
         {} errors, {} refreshes",
        errors.len(),
        client.refreshes()
    );
}

fn get_calls(node: &test_support::RedisServer) -> u64 {
    node.command_calls("get").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_fall_back_when_one_dies() {
    let mut cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(
        config(&cluster)
            .read_from_replicas(true)
            .replica_selector(redis_cluster::RoundRobinSelector::default()),
    )
    .await
    .unwrap();
    for i in 0..300 {
        let key = format!("r:{i}");
        client
            .send(Cmd::new("SET").arg(&key).arg("v"))
            .await
            .unwrap();
    }
    // Let the replicas catch up, then read everything.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..300 {
        let key = format!("r:{i}");
        assert_eq!(
            client.send(Cmd::new("GET").arg(&key)).await.unwrap(),
            bulk("v")
        );
    }
    let masters: u64 = cluster.nodes()[..3].iter().map(get_calls).sum();
    let replicas: u64 = cluster.nodes()[3..].iter().map(get_calls).sum();
    assert_eq!(masters, 0, "reads reached masters");
    assert_eq!(replicas, 300);
    // Writes still go to masters (a replica would answer MOVED).
    assert_eq!(
        client
            .send(Cmd::new("INCR").arg("r:counter"))
            .await
            .unwrap(),
        Value::Integer(1)
    );

    // Kill the replica of slot 0's shard: its reads fall back to the master, without errors.
    let map = client.slot_map();
    let shard = map.shard(0).unwrap().clone();
    let replica = node_index(&cluster, &shard.replicas[0]);
    cluster.nodes_mut()[replica].kill9();
    let keys: Vec<String> = (0..300)
        .map(|i| format!("r:{i}"))
        .filter(|k| {
            shard
                .ranges
                .iter()
                .any(|&(a, b)| (a..=b).contains(&slot(k.as_bytes())))
        })
        .collect();
    assert!(!keys.is_empty());
    for key in &keys {
        assert_eq!(
            client.send(Cmd::new("GET").arg(key)).await.unwrap(),
            bulk("v")
        );
    }
    let master = node_index(&cluster, &shard.master);
    assert!(get_calls(&cluster.nodes()[master]) >= keys.len() as u64 - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_and_keyless_commands_span_the_whole_cluster() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster).refresh_interval(None))
        .await
        .unwrap();
    // A pipeline over every shard, replies in the caller's order, an error in its place.
    let mut cmds = Vec::new();
    for i in 0..100 {
        cmds.push(Cmd::new("SET").arg(format!("p:{i}")).arg(format!("v{i}")));
    }
    for i in 0..100 {
        cmds.push(Cmd::new("GET").arg(format!("p:{i}")));
    }
    cmds.push(Cmd::new("LPUSH").arg("p:0").arg("x")); // WRONGTYPE
    cmds.push(Cmd::new("MGET").arg("p:1").arg("p:2").arg("p:3"));
    cmds.push(Cmd::new("DBSIZE"));
    let replies = client.send_pipeline(&cmds).await.unwrap();
    assert_eq!(replies.len(), 203);
    for i in 0..100 {
        assert_eq!(
            replies[100 + i],
            bulk(&format!("v{i}")),
            "reply {i} out of place"
        );
    }
    assert!(matches!(&replies[200], Value::Error(e) if e.starts_with(b"WRONGTYPE")));
    assert_eq!(
        replies[201],
        Value::Array(vec![bulk("v1"), bulk("v2"), bulk("v3")])
    );

    // A slot moved behind the client's back: its commands inside a pipeline follow the MOVED.
    let key = "p:5";
    let s = slot(key.as_bytes());
    let map = client.slot_map();
    let old = map.master(s).unwrap().clone();
    let new = other_master(&map, &old);
    // Move the (emptied) slot: delete the key first, MIGRATE is not what this test is about.
    client.send(Cmd::new("DEL").arg(key)).await.unwrap();
    move_slot(&cluster, s, &new);
    let replies = client
        .send_pipeline(&[
            Cmd::new("SET").arg(key).arg("moved"),
            Cmd::new("GET").arg("p:6"),
            Cmd::new("GET").arg(key),
        ])
        .await
        .unwrap();
    assert_eq!(replies[0], Value::SimpleString("OK".into()));
    assert_eq!(replies[1], bulk("v6"));
    assert_eq!(replies[2], bulk("moved"));

    // Keyless commands that concern every master.
    assert_eq!(
        client.send(Cmd::new("DBSIZE")).await.unwrap(),
        Value::Integer(100)
    );
    let Value::Array(keys) = client.send(Cmd::new("KEYS").arg("p:*")).await.unwrap() else {
        panic!("KEYS is an array")
    };
    assert_eq!(keys.len(), 100);
    // SCAN walks every master: every key at least once, as SCAN promises.
    let mut scan = client.scan(Some("p:*"), 7);
    let mut seen = std::collections::HashSet::new();
    let mut batches = 0;
    while let Some(batch) = scan.next_batch().await.unwrap() {
        batches += 1;
        seen.extend(batch);
    }
    assert_eq!(seen.len(), 100);
    assert!(
        batches > 3,
        "{batches} batches: COUNT was ignored or one node was scanned"
    );
    client.send(Cmd::new("FLUSHALL")).await.unwrap();
    assert_eq!(
        client.send(Cmd::new("DBSIZE")).await.unwrap(),
        Value::Integer(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_shows_no_error_and_loses_no_write() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster).refresh_interval(None))
        .await
        .unwrap();
    let s = slot(b"mig");
    let keys: Vec<String> = (0..300).map(|i| format!("{{mig}}:{i}")).collect();
    for k in &keys {
        client.send(Cmd::new("SET").arg(k).arg("0")).await.unwrap();
    }
    // One writer per key: each key's last acknowledged value must be what is read at the end.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        let mine: Vec<String> = keys.iter().skip(w).step_by(3).cloned().collect();
        writers.push(tokio::spawn(async move {
            let mut acked = std::collections::HashMap::new();
            let mut errors = Vec::new();
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for k in &mine {
                    let v = round.to_string();
                    match client.send(Cmd::new("SET").arg(k).arg(&v)).await {
                        Ok(_) => {
                            acked.insert(k.clone(), v);
                        }
                        Err(e) => errors.push(e),
                    }
                    if let Err(e) = client.send(Cmd::new("GET").arg(k)).await {
                        errors.push(e);
                    }
                }
            }
            (acked, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Migrate the slot from its master to another one, 50 keys at a time.
    let map = client.slot_map();
    let source = node_index(&cluster, map.master(s).unwrap());
    let target = (0..3).find(|&i| i != source).unwrap();
    let id = |i: usize| {
        cluster.nodes()[i]
            .admin()
            .unwrap()
            .cmd_string(&["CLUSTER", "MYID"])
            .unwrap()
    };
    let (source_id, target_id) = (id(source), id(target));
    let slot_arg = s.to_string();
    cluster.nodes()[target]
        .cmd(&["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &source_id])
        .unwrap();
    cluster.nodes()[source]
        .cmd(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &target_id])
        .unwrap();
    let target_port = cluster.nodes()[target].port().to_string();
    let mut admin = cluster.nodes()[source].admin().unwrap();
    loop {
        let batch = admin
            .cmd(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, "50"])
            .unwrap();
        let Value::Array(batch) = batch else {
            panic!("GETKEYSINSLOT is an array")
        };
        if batch.is_empty() {
            break;
        }
        let mut migrate: Vec<Vec<u8>> = [
            "MIGRATE",
            "127.0.0.1",
            &target_port,
            "",
            "0",
            "5000",
            "KEYS",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        migrate.extend(
            batch
                .iter()
                .filter_map(|k| k.as_bytes().map(|b| b.to_vec())),
        );
        admin.cmd(&migrate).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        cluster.nodes()[i]
            .cmd(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &target_id])
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = std::collections::HashMap::new();
    for w in writers {
        let (a, errors) = w.await.unwrap();
        assert!(
            errors.is_empty(),
            "{} errors, first: {:?}",
            errors.len(),
            errors.first()
        );
        acked.extend(a);
    }
    assert_eq!(acked.len(), keys.len());
    for (k, v) in &acked {
        assert_eq!(
            client.send(Cmd::new("GET").arg(k)).await.unwrap(),
            bulk(v),
            "{k} lost its last acknowledged write"
        );
    }
    assert_eq!(
        client.slot_map().master(s),
        Some(&NodeAddr::from(cluster.nodes()[target].addr()))
    );
    assert!(client.refreshes() <= 10, "{} refreshes", client.refreshes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_moved_replies_causes_one_refresh_not_hundreds() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster).refresh_interval(None))
        .await
        .unwrap();
    // Move every slot of one shard to another master behind the client's back.
    let map = client.slot_map();
    let from = map.shards()[0].clone();
    let to = map.shards()[1].master.clone();
    let (lo, _) = from.ranges[0];
    let moved: Vec<u16> = (lo..lo + 50).collect();
    for &s in &moved {
        move_slot(&cluster, s, &to);
    }
    // 500 concurrent commands on the moved slots all meet MOVED at once.
    let keys: Vec<String> = (0..200_000)
        .map(|i| format!("storm:{i}"))
        .filter(|k| moved.contains(&slot(k.as_bytes())))
        .take(500)
        .collect();
    assert_eq!(keys.len(), 500);
    let before = client.refreshes();
    let mut tasks = Vec::new();
    for k in keys {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.send(Cmd::new("SET").arg(&k).arg("v")).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let refreshes = client.refreshes() - before;
    assert!(
        (1..=3).contains(&refreshes),
        "{refreshes} refreshes for one storm of MOVED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_partly_ran_never_says_it_was_not_sent() {
    let mut cluster = Cluster::builder()
        .args(["--cluster-require-full-coverage", "no"])
        .start()
        .unwrap();
    let seeds: Vec<NodeAddr> = cluster.seeds().into_iter().map(NodeAddr::from).collect();
    let template = ConnectionConfig::new(ServerAddr::from(cluster.seeds()[0]))
        .response_timeout(Duration::from_millis(300));
    let client = ClusterClient::connect(ClusterConfig::new(seeds, template).refresh_interval(None))
        .await
        .unwrap();
    // Two keys on different masters; the second's master dies.
    let map = client.slot_map();
    let pick = |master: &NodeAddr| {
        (0..)
            .map(|i| format!("partly{i}"))
            .find(|k| map.master(slot(k.as_bytes())) == Some(master))
            .unwrap()
    };
    let alive = NodeAddr::from(cluster.nodes()[0].addr());
    let doomed = NodeAddr::from(cluster.nodes()[1].addr());
    let (counter, other) = (pick(&alive), pick(&doomed));
    client.send(Cmd::new("GET").arg(&other)).await.unwrap();
    cluster.nodes_mut()[1].kill9();
    let err = client
        .send_pipeline(&[Cmd::new("INCR").arg(&counter), Cmd::new("GET").arg(&other)])
        .await
        .unwrap_err();
    // The dead node's part was never written, but the INCR ran on the other: the pipeline as a
    // whole may have run.
    assert_eq!(err.sent(), Some(redis_conn::Sent::Maybe), "{err:?}");
    assert_eq!(
        client.send(Cmd::new("GET").arg(&counter)).await.unwrap(),
        bulk("1")
    );
    // A split MSET that reached only some slots says the same.
    let mut mset = Cmd::new("MSET");
    for (k, v) in [(&counter, "x"), (&other, "y")] {
        mset.push_arg(k);
        mset.push_arg(v);
    }
    let err = client.send(mset).await.unwrap_err();
    assert_eq!(err.sent(), Some(redis_conn::Sent::Maybe), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_commands_avoid_a_master_whose_connection_is_down() {
    let mut cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster)).await.unwrap();
    // Connections to every master.
    for i in 0..300 {
        client
            .send(Cmd::new("SET").arg(format!("warm:{i}")).arg("v"))
            .await
            .unwrap();
    }
    cluster.nodes_mut()[0].kill9();
    // The client sees the EOF at once; give its driver a moment to notice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    for i in 0..30 {
        let token = format!("keyless-{i}");
        let reply = client.send(Cmd::new("ECHO").arg(&token)).await;
        assert_eq!(reply.unwrap(), bulk(&token), "ECHO {i}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "keyless commands waited on the dead master: {:?}",
        started.elapsed()
    );
}

/// Live scale-out and scale-in the way operators do it, with `redis-cli --cluster`, under
/// writers: a master joins and takes 500 slots, a replica joins it, the slots go back, both
/// leave. No write fails, none is lost, and no connection stays on the nodes that left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_and_in_with_redis_cli_keeps_every_write() {
    use test_support::{redis_cli, wait_cluster_agrees, RedisServer};
    let cluster = Arc::new(Cluster::start().unwrap());
    let client = ClusterClient::connect(config(&cluster)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("scale:{w}:{i}");
                match client.send(Cmd::new("SET").arg(&key).arg(&key)).await {
                    Ok(_) => acked.push(key),
                    Err(e) => failed.push(format!("{key}: {e}")),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acked, failed)
        }));
    }
    let operator = {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            let within = Duration::from_secs(20);
            let seed = cluster.nodes()[0].addr().to_string();
            let newcomer = RedisServer::builder().cluster().start().unwrap();
            let replica = RedisServer::builder().cluster().start().unwrap();
            let (new_id, replica_id) = (newcomer.node_id().unwrap(), replica.node_id().unwrap());
            let first_id = cluster.nodes()[0].node_id().unwrap();
            let new_addr = newcomer.addr().to_string();
            let replica_addr = replica.addr().to_string();
            wait_cluster_agrees(&seed, within).unwrap();
            redis_cli(&["--cluster", "add-node", &new_addr, &seed]).unwrap();
            cluster.wait_all_know(&new_id, within).unwrap();
            newcomer.wait_cluster_ok(within).unwrap();
            wait_cluster_agrees(&seed, within).unwrap();
            let reshard = |from: &str, to: &str| {
                redis_cli(&[
                    "--cluster",
                    "reshard",
                    &seed,
                    "--cluster-from",
                    from,
                    "--cluster-to",
                    to,
                    "--cluster-slots",
                    "500",
                    "--cluster-yes",
                ])
                .unwrap();
                wait_cluster_agrees(&seed, within).unwrap();
            };
            reshard("all", &new_id);
            redis_cli(&[
                "--cluster",
                "add-node",
                &replica_addr,
                &seed,
                "--cluster-slave",
                "--cluster-master-id",
                &new_id,
            ])
            .unwrap();
            cluster.wait_all_know(&replica_id, within).unwrap();
            replica.wait_cluster_ok(within).unwrap();
            wait_cluster_agrees(&seed, within).unwrap();
            let before = newcomer.command_calls("set").unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let served = newcomer.command_calls("set").unwrap() - before;
            reshard(&new_id, &first_id);
            redis_cli(&["--cluster", "del-node", &seed, &replica_id]).unwrap();
            wait_cluster_agrees(&seed, within).unwrap();
            redis_cli(&["--cluster", "del-node", &seed, &new_id]).unwrap();
            wait_cluster_agrees(&seed, within).unwrap();
            (newcomer, replica, served)
        })
    };
    let (newcomer, replica, served) = operator.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    for w in writers {
        let (a, f) = w.await.unwrap();
        acked.extend(a);
        failed.extend(f);
    }
    assert!(
        served > 0,
        "the new master served no SET while it held 500 slots"
    );
    assert!(acked.len() > 1000, "{} writes acknowledged", acked.len());
    assert!(
        failed.is_empty(),
        "{} writes failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    for key in &acked {
        let value = client.send(Cmd::new("GET").arg(key)).await.unwrap();
        assert_eq!(value, bulk(key), "an acknowledged write was lost");
    }
    // The client lets go of the nodes that left (a refresh drops them from its map).
    client.trigger_refresh();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ours: usize = [&newcomer, &replica]
            .iter()
            .map(|n| {
                let list = n.admin().unwrap().cmd_string(&["CLIENT", "LIST"]).unwrap();
                list.lines()
                    .filter(|l| {
                        !l.contains("cmd=client|list")
                            && !l.contains("cmd=restore-asking")
                            && !l.contains("flags=S")
                    })
                    .count()
            })
            .sum();
        if ours == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ours} connections left on departed nodes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A cluster that is down for a moment (here: one slot unassigned with full coverage required,
/// as during a failover's settling) answers CLUSTERDOWN; the call is tried again through a
/// fresh map after a pause, within its redirect budget, and succeeds once the cluster is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_down_for_a_moment_is_waited_out() {
    let cluster = Arc::new(Cluster::start().unwrap());
    let client = ClusterClient::connect(config(&cluster)).await.unwrap();
    client
        .send(Cmd::new("SET").arg("before").arg("v"))
        .await
        .unwrap();
    let gap = 42u16;
    let owner = cluster.master_of_slot(gap).unwrap();
    let owner_id = cluster.nodes()[owner].node_id().unwrap();
    for node in cluster.nodes().iter().take(cluster.master_count()) {
        node.cmd(&["CLUSTER", "DELSLOTS", &gap.to_string()])
            .unwrap();
    }
    // Down everywhere (full coverage is required): wait until a master says so.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cluster.nodes()[0]
        .admin()
        .and_then(|mut a| a.cmd_string(&["CLUSTER", "INFO"]))
        .unwrap()
        .contains("cluster_state:fail")
    {
        assert!(Instant::now() < deadline, "the cluster never went down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let heal = {
        let cluster = Arc::clone(&cluster);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for node in cluster.nodes().iter().take(cluster.master_count()) {
                node.cmd(&["CLUSTER", "SETSLOT", &gap.to_string(), "NODE", &owner_id])
                    .unwrap();
            }
            cluster.nodes()[owner]
                .cmd(&["CLUSTER", "ADDSLOTS", &gap.to_string()])
                .ok();
        })
    };
    let started = Instant::now();
    let reply = client.send(Cmd::new("SET").arg("during").arg("v")).await;
    heal.await.unwrap();
    assert_eq!(
        reply.unwrap(),
        Value::SimpleString("OK".into()),
        "after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}
