//! The cluster client against TLS-only clusters (`port 0`, `tls-port`, `tls-cluster yes`): nodes
//! are reached on the TLS port the topology announces, verified against the configured CA, and by
//! the hostname they announce when the cluster prefers hostnames.

use std::time::{Duration, Instant};

use redis_cluster::{slot, ClusterClient, ClusterConfig, ClusterError, NodeAddr};
use redis_conn::{Cmd, ConnectionConfig, Error, ServerAddr, TlsConfig, Value};
use test_support::{Cluster, ServerTls, TestCerts};

mod common;
use common::{bulk, move_slot, node_index, other_master};

/// A 3+3 cluster on TLS ports only, with certificates for the loopback names.
fn tls_cluster(certs: &TestCerts) -> Cluster {
    Cluster::builder()
        .tls(ServerTls::new(certs, &certs.server))
        .start()
        .unwrap()
}

/// Seeds on `host` (with the cluster's TLS ports), every node verified against `ca`.
fn config(cluster: &Cluster, host: &str, ca: &std::path::Path) -> ClusterConfig {
    let seeds: Vec<NodeAddr> = cluster
        .seeds()
        .iter()
        .map(|a| NodeAddr::new(host, a.port()))
        .collect();
    let template = ConnectionConfig::new(ServerAddr::tcp(host, seeds[0].port))
        .tls(TlsConfig::builder().ca_file(ca).build());
    ClusterConfig::new(seeds, template).refresh_interval(None)
}

fn hostname_args() -> [&'static str; 4] {
    [
        "--cluster-announce-hostname",
        "localhost",
        "--cluster-preferred-endpoint-type",
        "hostname",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_cluster_routes_1000_keys_and_follows_a_moved_slot() {
    let certs = TestCerts::generate().unwrap();
    let cluster = tls_cluster(&certs);
    let client = ClusterClient::connect(config(&cluster, "127.0.0.1", &certs.ca))
        .await
        .unwrap();
    // Every node the topology names is a TLS port of the cluster.
    let map = client.slot_map();
    assert_eq!(map.uncovered(), 0);
    for addr in map.nodes() {
        assert!(cluster.nodes()[node_index(&cluster, &addr)].is_tls_only());
    }
    common::set_and_read_back(&client, 1000).await;
    // Move an empty slot to another master behind the client's back: MOVED names its TLS port.
    let key = "moved-key";
    let s = slot(key.as_bytes());
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
        "MOVED not followed"
    );
    assert_eq!(
        client.send(Cmd::new("GET").arg(key)).await.unwrap(),
        bulk("v")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_failover_on_a_tls_cluster_is_followed() {
    let certs = TestCerts::generate().unwrap();
    let cluster = tls_cluster(&certs);
    let client = ClusterClient::connect(config(&cluster, "127.0.0.1", &certs.ca))
        .await
        .unwrap();
    let key = "failover-key";
    let s = slot(key.as_bytes());
    client
        .send(Cmd::new("SET").arg(key).arg("before"))
        .await
        .unwrap();
    let shard = client.slot_map().shard(s).unwrap().clone();
    let replica = node_index(&cluster, &shard.replicas[0]);
    cluster.nodes()[replica]
        .cmd(&["CLUSTER", "FAILOVER"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.master_of_slot(s).unwrap() != replica {
        assert!(Instant::now() < deadline, "the failover did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No periodic refresh: only the old master's MOVED (over TLS) can tell the client.
    assert_eq!(
        client.send(Cmd::new("GET").arg(key)).await.unwrap(),
        bulk("before")
    );
    client
        .send(Cmd::new("SET").arg(key).arg("after"))
        .await
        .unwrap();
    assert_eq!(
        client.slot_map().master(s),
        Some(&shard.replicas[0]),
        "the client still routes to the old master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reads_on_a_tls_cluster_reach_only_replicas() {
    let certs = TestCerts::generate().unwrap();
    let cluster = tls_cluster(&certs);
    let client =
        ClusterClient::connect(config(&cluster, "127.0.0.1", &certs.ca).read_from_replicas(true))
            .await
            .unwrap();
    for i in 0..100 {
        let key = format!("r:{i}");
        client
            .send(Cmd::new("SET").arg(&key).arg("v"))
            .await
            .unwrap();
    }
    // Wait (to a deadline) until the replicas, replicating over TLS, hold every key.
    let replicas = &cluster.nodes()[cluster.master_count()..];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys: i64 = replicas
            .iter()
            .map(|n| n.admin().unwrap().cmd_int(&["DBSIZE"]).unwrap())
            .sum();
        if keys == 100 {
            break;
        }
        assert!(Instant::now() < deadline, "replicas hold {keys} keys");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..100 {
        let key = format!("r:{i}");
        assert_eq!(
            client.send(Cmd::new("GET").arg(&key)).await.unwrap(),
            bulk("v")
        );
    }
    let gets = |nodes: &[test_support::RedisServer]| -> u64 {
        nodes.iter().map(|n| n.command_calls("get").unwrap()).sum()
    };
    assert_eq!(gets(&cluster.nodes()[..cluster.master_count()]), 0);
    assert_eq!(gets(replicas), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_slots_fallback_reads_tls_ports_over_tls() {
    let certs = TestCerts::generate().unwrap();
    let cluster = Cluster::builder()
        .replicas_per_master(0)
        .tls(ServerTls::new(&certs, &certs.server))
        .start()
        .unwrap();
    // As on a server without CLUSTER SHARDS: the client must use CLUSTER SLOTS.
    for node in cluster.nodes() {
        node.cmd(&["ACL", "SETUSER", "default", "-cluster|shards"])
            .unwrap();
    }
    // The harness itself asks CLUSTER SLOTS while forming the cluster: count from here.
    let slots_calls = || -> u64 {
        cluster
            .nodes()
            .iter()
            .map(|n| n.command_calls("cluster|slots").unwrap())
            .sum()
    };
    let before = slots_calls();
    let client = ClusterClient::connect(config(&cluster, "127.0.0.1", &certs.ca))
        .await
        .unwrap();
    assert!(
        slots_calls() > before,
        "the view did not come from CLUSTER SLOTS"
    );
    assert_eq!(client.slot_map().uncovered(), 0);
    for i in 0..100 {
        let key = format!("s:{i}");
        client
            .send(Cmd::new("SET").arg(&key).arg("v"))
            .await
            .unwrap();
    }
    let sets: u64 = cluster
        .nodes()
        .iter()
        .map(|n| n.command_calls("set").unwrap())
        .sum();
    assert_eq!(sets, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_another_ca_fails_with_a_typed_tls_error() {
    let certs = TestCerts::generate().unwrap();
    let other = TestCerts::generate().unwrap();
    let cluster = Cluster::builder()
        .replicas_per_master(0)
        .tls(ServerTls::new(&certs, &certs.server))
        .start()
        .unwrap();
    let err = ClusterClient::connect(config(&cluster, "127.0.0.1", &other.ca))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::Node(Error::Tls { .. })),
        "{err:?}"
    );
    assert_eq!(err.kind(), "tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_hostnames_are_dialled_and_verified_by_name() {
    let certs = TestCerts::generate().unwrap();
    // The certificates name only `localhost`: a connection to 127.0.0.1 would fail verification.
    let cluster = Cluster::builder()
        .replicas_per_master(0)
        .tls(ServerTls::new(&certs, &certs.localhost_only))
        .args(hostname_args())
        .start()
        .unwrap();
    let client = ClusterClient::connect(config(&cluster, "localhost", &certs.ca))
        .await
        .unwrap();
    let map = client.slot_map();
    assert_eq!(map.uncovered(), 0);
    assert!(map.nodes().iter().all(|n| n.host == "localhost"), "{map:?}");
    for i in 0..100 {
        let key = format!("h:{i}");
        client
            .send(Cmd::new("SET").arg(&key).arg("v"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_certificate_does_not_name_its_announced_host_fails_verification() {
    let certs = TestCerts::generate().unwrap();
    // Certificates for 127.0.0.1 only, while the nodes announce `localhost`: the seeds (by IP)
    // verify, the nodes the topology names do not.
    let cluster = Cluster::builder()
        .replicas_per_master(0)
        .tls(ServerTls::new(&certs, &certs.ip_only))
        .args(hostname_args())
        .start()
        .unwrap();
    let client = ClusterClient::connect(config(&cluster, "127.0.0.1", &certs.ca))
        .await
        .unwrap();
    assert!(client
        .slot_map()
        .nodes()
        .iter()
        .all(|n| n.host == "localhost"));
    let err = client
        .send(Cmd::new("SET").arg("k").arg("v"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Node(Error::Tls { reason, .. }) if reason.contains("name")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_refresh_and_shard_channels_follow_a_failover_on_a_tls_cluster() {
    let certs = TestCerts::generate().unwrap();
    let cluster = tls_cluster(&certs);
    let client = ClusterClient::connect(
        config(&cluster, "127.0.0.1", &certs.ca).refresh_interval(Some(Duration::from_millis(500))),
    )
    .await
    .unwrap();
    let mut sub = client.subscriber().await.unwrap();
    let channels: Vec<String> = (0..20).map(|i| format!("orders:{i}")).collect();
    sub.ssubscribe(&channels).await.unwrap();
    let spublish = |channel: &str, payload: &str| {
        let owner = cluster.master_of_slot(slot(channel.as_bytes())).unwrap();
        cluster.nodes()[owner]
            .cmd(&["SPUBLISH", channel, payload])
            .unwrap()
    };
    for channel in &channels {
        assert_eq!(spublish(channel, "before"), Value::Integer(1), "{channel}");
    }
    for _ in &channels {
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
            .await
            .expect("a shard message over TLS")
            .unwrap();
        assert_eq!(&m.payload[..], b"before");
    }

    // A failover no command sees: only the periodic refresh (over TLS) can tell the client.
    let promoted = common::fail_over_unseen(&cluster, &client).await;
    let promoted_shard = client.slot_map().shard(16383).unwrap().clone();
    assert_eq!(promoted_shard.master, promoted);

    // The shard channels of the promoted replica's slots are subscribed on it now.
    let moved: Vec<&String> = channels
        .iter()
        .filter(|c| {
            let s = slot(c.as_bytes());
            promoted_shard
                .ranges
                .iter()
                .any(|&(a, b)| (a..=b).contains(&s))
        })
        .collect();
    assert!(!moved.is_empty(), "no channel in the failed-over shard");
    for channel in &moved {
        let deadline = Instant::now() + Duration::from_secs(5);
        while spublish(channel, "after") != Value::Integer(1) {
            assert!(
                Instant::now() < deadline,
                "{channel} did not follow its slot: {:?}",
                sub.shard_homes()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut heard = 0;
    while heard < moved.len() {
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
            .await
            .expect("the messages after the failover")
            .unwrap();
        if &m.payload[..] == b"after" {
            heard += 1;
        }
    }
}

/// `cluster-preferred-endpoint-type unknown-endpoint` (nodes behind a load balancer they do not
/// know): `CLUSTER SHARDS` gives each node an empty `endpoint` and `CLUSTER SLOTS` a NULL host,
/// which mean "the endpoint you asked on, with this port". The certificates name only
/// `localhost` and the seeds are `localhost`: a client that falls back to each node's `ip`
/// (127.0.0.1) fails verification, and one that refuses the NULL host has no topology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoints_are_reached_on_the_host_that_was_asked() {
    let certs = TestCerts::generate().unwrap();
    let cluster = Cluster::builder()
        .replicas_per_master(0)
        .tls(ServerTls::new(&certs, &certs.localhost_only))
        .args(["--cluster-preferred-endpoint-type", "unknown-endpoint"])
        .start()
        .unwrap();
    let check = |client: &ClusterClient| {
        let map = client.slot_map();
        assert_eq!(map.uncovered(), 0);
        let nodes = map.nodes();
        assert!(nodes.iter().all(|n| n.host == "localhost"), "{nodes:?}");
    };
    let client = ClusterClient::connect(config(&cluster, "localhost", &certs.ca))
        .await
        .unwrap();
    check(&client);
    for i in 0..100 {
        let key = format!("u:{i}");
        client
            .send(Cmd::new("SET").arg(&key).arg("v"))
            .await
            .unwrap();
    }
    client.close();

    // The CLUSTER SLOTS fallback: NULL hosts.
    for node in cluster.nodes() {
        node.cmd(&["ACL", "SETUSER", "default", "-cluster|shards"])
            .unwrap();
    }
    let client = ClusterClient::connect(config(&cluster, "localhost", &certs.ca))
        .await
        .unwrap();
    check(&client);
    for i in 0..100 {
        let key = format!("u:{i}");
        assert_eq!(
            client.send(Cmd::new("GET").arg(&key)).await.unwrap(),
            bulk("v")
        );
    }
}
