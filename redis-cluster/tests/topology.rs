//! The topology layer against a real 3+3 cluster: slots agree with the server, every node's view
//! agrees, the map routes every key to its master, and MOVED/ASK from a real migration parse.

use redis_cluster::{agreed_view, slot, NodeAddr, Redirect, RedirectKind, Topology};
use redis_conn::{ServerError, Value};
use test_support::{Cluster, HarnessError};

fn view_of(node: &test_support::RedisServer) -> Topology {
    let reply = node.cmd(&["CLUSTER", "SLOTS"]).unwrap();
    Topology::from_cluster_slots(&reply, &NodeAddr::from(node.addr())).unwrap()
}

fn redirect_of(err: HarnessError, replied_by: &NodeAddr) -> Redirect {
    match err {
        HarnessError::Reply { message, .. } => {
            Redirect::parse(&ServerError::new(message.into_bytes().into()), replied_by)
                .expect("a redirect")
        }
        other => panic!("{other}"),
    }
}

#[test]
fn the_topology_layer_routes_every_key_of_a_real_cluster() {
    let cluster = Cluster::start().unwrap();
    let views: Vec<Topology> = cluster.nodes().iter().map(view_of).collect();
    let (topology, agreeing) = agreed_view(views).unwrap();
    assert_eq!(agreeing, 6, "nodes disagree on a freshly formed cluster");
    assert_eq!(topology.covered_slots(), 16384);
    assert_eq!(topology.shards().len(), 3);
    assert!(topology.shards().iter().all(|s| s.replicas.len() == 1));
    let mut map = topology.slot_map();

    // Our slot function agrees with the server's, hash tags included.
    let mut admin = cluster.nodes()[0].admin().unwrap();
    for i in 0..300 {
        let key = match i % 3 {
            0 => format!("key:{i}"),
            1 => format!("{{user{i}}}.profile"),
            _ => format!("x{{}}{{y{i}}}"),
        };
        let server_slot = admin.cmd_int(&["CLUSTER", "KEYSLOT", &key]).unwrap();
        assert_eq!(i64::from(slot(key.as_bytes())), server_slot, "{key}");
    }

    // Every key goes to the master that owns it: no MOVED.
    let node_by_addr = |addr: &NodeAddr| {
        cluster
            .nodes()
            .iter()
            .find(|n| NodeAddr::from(n.addr()) == *addr)
            .expect("a known node")
    };
    for i in 0..1000 {
        let key = format!("k{i}");
        let master = map.master(slot(key.as_bytes())).unwrap().clone();
        node_by_addr(&master).cmd(&["SET", &key, "v"]).unwrap();
    }

    // Move one slot by hand; its old master answers MOVED, which patches the map.
    let key = "moving-key";
    let s = slot(key.as_bytes());
    let old = map.master(s).unwrap().clone();
    let new = map
        .shards()
        .iter()
        .map(|sh| sh.master.clone())
        .find(|m| *m != old)
        .unwrap();
    let new_id = node_by_addr(&new)
        .admin()
        .unwrap()
        .cmd_string(&["CLUSTER", "MYID"])
        .unwrap();
    for node in cluster.nodes().iter().take(3) {
        node.cmd(&["CLUSTER", "SETSLOT", &s.to_string(), "NODE", &new_id])
            .unwrap();
    }
    let err = node_by_addr(&old).cmd(&["SET", key, "v"]).unwrap_err();
    let redirect = redirect_of(err, &old);
    assert_eq!(redirect.kind, RedirectKind::Moved);
    assert_eq!(redirect.slot, s);
    assert_eq!(redirect.addr, new);
    map.patch_moved(redirect.slot, &redirect.addr);
    assert_eq!(map.master(s), Some(&new));
    node_by_addr(&new).cmd(&["SET", key, "v"]).unwrap();

    // A slot in migration answers ASK for a key the source no longer has.
    let key = "asked-key";
    let s = slot(key.as_bytes());
    let source = map.master(s).unwrap().clone();
    let target = map
        .shards()
        .iter()
        .map(|sh| sh.master.clone())
        .find(|m| *m != source)
        .unwrap();
    let id = |a: &NodeAddr| {
        node_by_addr(a)
            .admin()
            .unwrap()
            .cmd_string(&["CLUSTER", "MYID"])
            .unwrap()
    };
    let (source_id, target_id) = (id(&source), id(&target));
    node_by_addr(&target)
        .cmd(&[
            "CLUSTER",
            "SETSLOT",
            &s.to_string(),
            "IMPORTING",
            &source_id,
        ])
        .unwrap();
    node_by_addr(&source)
        .cmd(&[
            "CLUSTER",
            "SETSLOT",
            &s.to_string(),
            "MIGRATING",
            &target_id,
        ])
        .unwrap();
    let err = node_by_addr(&source).cmd(&["GET", key]).unwrap_err();
    let redirect = redirect_of(err, &source);
    assert_eq!(redirect.kind, RedirectKind::Ask);
    assert_eq!(redirect.addr, target);
    // ASKING then the command on the target works; the map is not changed by an ASK.
    let mut conn = node_by_addr(&target).admin().unwrap();
    conn.cmd(&["ASKING"]).unwrap();
    assert_eq!(conn.cmd(&["GET", key]).unwrap(), Value::Null);
    assert_eq!(map.master(s), Some(&source));
}

/// A replica replaced by a fresh node at its address (a pod restarted without its `nodes.conf`):
/// the old entry turns `noaddr` on every node, and Redis 7 lists it in `CLUSTER SHARDS` with no
/// `port` at all (`ip` and `endpoint` empty, health `loading`) until someone runs CLUSTER FORGET.
/// That one dead replica must not cost the client its topology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_left_without_an_address_does_not_cost_the_topology() {
    use redis_cluster::{ClusterClient, ClusterConfig};
    use redis_conn::{Cmd, ConnectionConfig, ServerAddr};
    use std::time::{Duration, Instant};

    let mut cluster = Cluster::start().unwrap();
    let masters = cluster.master_count();
    let replica = masters;
    let old_id = cluster.nodes()[replica]
        .admin()
        .unwrap()
        .cmd_string(&["CLUSTER", "MYID"])
        .unwrap();
    let node = &mut cluster.nodes_mut()[replica];
    node.kill9();
    std::fs::remove_file(node.dir().join("nodes.conf")).unwrap();
    node.restart().unwrap();
    // The masters ping the old address, meet another node id there, and drop the address.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let noaddr = cluster.nodes()[..masters].iter().all(|m| {
            m.admin()
                .and_then(|mut a| a.cmd_string(&["CLUSTER", "NODES"]))
                .is_ok_and(|text| {
                    text.lines()
                        .any(|l| l.starts_with(&old_id) && l.contains("noaddr"))
                })
        });
        if noaddr {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old replica never lost its address"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let seeds: Vec<NodeAddr> = cluster.nodes()[..masters]
        .iter()
        .map(|n| NodeAddr::from(n.addr()))
        .collect();
    let template = ConnectionConfig::new(ServerAddr::from(&seeds[0]));
    let client = ClusterClient::connect(ClusterConfig::new(seeds, template).refresh_interval(None))
        .await
        .unwrap();
    assert_eq!(client.slot_map().uncovered(), 0);
    for i in 0..300 {
        client
            .send(Cmd::new("SET").arg(format!("k{i}")).arg("v"))
            .await
            .unwrap();
    }
    for (i, m) in cluster.nodes()[..masters].iter().enumerate() {
        let Value::Integer(n) = m.cmd(&["DBSIZE"]).unwrap() else {
            panic!("DBSIZE is an integer")
        };
        assert!(n > 0, "master {i} got none of the keys");
    }
}

/// `MOVED <slot> ?:<port>`: the cluster prefers hostnames and the new owner has none. Redis
/// documents `?` as an unknown node, "not necessarily the same node as the one serving the
/// current command", so the client must not send the command to the replying node's host on
/// that port. Here that host on that port is unreachable (the map sends it nowhere), while the
/// slot map knows the one node listening on that port by its `ip`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_to_an_unknown_endpoint_goes_to_the_node_on_that_port() {
    use redis_cluster::{ClusterClient, ClusterConfig};
    use redis_conn::{AddressMap, Cmd, ConnectionConfig, ServerAddr};
    use std::time::{Duration, Instant};

    let cluster = Cluster::builder()
        .replicas_per_master(0)
        .args([
            "--cluster-announce-hostname",
            "localhost",
            "--cluster-preferred-endpoint-type",
            "hostname",
        ])
        .start()
        .unwrap();
    let port = |i: usize| cluster.nodes()[i].port();
    let (p0, p2) = (port(0), port(2));
    cluster.nodes()[2]
        .cmd(&["CONFIG", "SET", "cluster-announce-hostname", ""])
        .unwrap();
    // Wait until node 0 names node 2 `?` in CLUSTER SLOTS.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = format!(
            "{:?}",
            cluster.nodes()[0].cmd(&["CLUSTER", "SLOTS"]).unwrap()
        );
        if text.contains("\"?\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never lost its hostname: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `localhost` on node 2's port leads nowhere: only 127.0.0.1 reaches node 2.
    let map = AddressMap::new(move |host, port| {
        if host == "localhost" && port == p2 {
            ("127.0.0.1".to_string(), 1)
        } else {
            (host.to_string(), port)
        }
    });
    let seed = NodeAddr::new("localhost", p0);
    let template = ConnectionConfig::new(ServerAddr::from(&seed))
        .address_map(map)
        .connect_timeout(Duration::from_millis(500));
    let client =
        ClusterClient::connect(ClusterConfig::new(vec![seed], template).refresh_interval(None))
            .await
            .unwrap();
    assert!(
        client
            .slot_map()
            .nodes()
            .contains(&NodeAddr::new("127.0.0.1", p2)),
        "{:?}",
        client.slot_map().nodes()
    );

    // A key of node 0 whose slot moves to node 2 behind the client's back.
    let key = (0..)
        .map(|i| format!("q:{i}"))
        .find(|k| cluster.master_of_slot(slot(k.as_bytes())).unwrap() == 0)
        .unwrap();
    let s = slot(key.as_bytes()).to_string();
    let id2 = cluster.nodes()[2]
        .admin()
        .unwrap()
        .cmd_string(&["CLUSTER", "MYID"])
        .unwrap();
    for node in cluster.nodes() {
        node.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &id2]).unwrap();
    }
    let moved = format!("{:?}", cluster.nodes()[0].cmd(&["GET", &key]).unwrap_err());
    assert!(moved.contains(&format!("?:{p2}")), "{moved}");

    client
        .send(Cmd::new("SET").arg(&key).arg("v"))
        .await
        .unwrap();
    assert_eq!(
        cluster.nodes()[2].cmd(&["GET", &key]).unwrap(),
        Value::BulkString("v".into())
    );
}
