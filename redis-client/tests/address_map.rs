//! Address mapping against a real 3+3 cluster whose nodes announce addresses nothing listens on
//! (127.0.0.1:1 to :6), with a fault proxy in front of each node: only `Config::map_address`
//! (announced port -> that node's proxy) makes the cluster reachable.
//! Sentinels too: a master a sentinel names, and sentinels learned at announced addresses.

use std::time::{Duration, Instant};

use redis_client::layers::cluster::slot;
use redis_client::prelude::*;
use redis_client::Value;
use test_support::{Cluster, FaultProxy, SentinelSet, SLOTS};

/// The port node `i` announces: 1 + i on loopback, where nothing listens.
fn announced_port(i: usize) -> u16 {
    u16::try_from(i + 1).unwrap()
}

/// The ports every node lists (masters and replicas) in its `CLUSTER SLOTS`.
fn listed_ports(reply: &Value) -> Vec<i64> {
    let mut ports = Vec::new();
    if let Value::Array(ranges) = reply {
        for range in ranges {
            if let Value::Array(parts) = range {
                for node in parts.iter().skip(2) {
                    if let Value::Array(fields) = node {
                        if let Some(Value::Integer(port)) = fields.get(1) {
                            ports.push(*port);
                        }
                    }
                }
            }
        }
    }
    ports
}

/// Puts a proxy in front of every node and makes every node announce an unreachable port;
/// returns once every node's `CLUSTER SLOTS` shows only announced ports.
fn announce_unreachable(cluster: &Cluster) -> Vec<FaultProxy> {
    let proxies: Vec<FaultProxy> = cluster
        .nodes()
        .iter()
        .map(|n| FaultProxy::start(n.addr()).unwrap())
        .collect();
    for (i, node) in cluster.nodes().iter().enumerate() {
        node.cmd(&[
            "CONFIG",
            "SET",
            "cluster-announce-port",
            &announced_port(i).to_string(),
        ])
        .unwrap();
    }
    let announced: Vec<i64> = (0..cluster.nodes().len())
        .map(|i| i64::from(announced_port(i)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let settled = cluster.nodes().iter().all(|node| {
            node.cmd(&["CLUSTER", "SLOTS"]).is_ok_and(|reply| {
                let ports = listed_ports(&reply);
                !ports.is_empty() && ports.iter().all(|p| announced.contains(p))
            })
        });
        if settled {
            return proxies;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never announced their new ports"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The master index that serves `slot` in the fixture's layout (3 equal ranges).
fn fixture_master_of(slot: u16, masters: usize) -> usize {
    (0..masters)
        .find(|&i| usize::from(slot) < (i + 1) * usize::from(SLOTS) / masters)
        .unwrap()
}

fn seeds_url(proxies: &[FaultProxy]) -> String {
    let seeds: Vec<String> = proxies.iter().map(|p| p.addr().to_string()).collect();
    format!("redis+cluster://{}", seeds.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_announcing_unreachable_addresses_is_routed_through_the_map() {
    let cluster = Cluster::start().unwrap();
    let proxies = announce_unreachable(&cluster);
    let masters = cluster.master_count();
    let config = || {
        Config::from_url(&seeds_url(&proxies))
            .unwrap()
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_secs(2))
    };

    // Without the map: the seeds (the proxies) answer, but the nodes they announce do not.
    let key_slot = slot(b"unmapped");
    let owner = fixture_master_of(key_slot, masters);
    let err = match Client::connect(config()).await {
        Err(e) => e,
        Ok(plain) => plain.set("unmapped", "v").await.unwrap_err(),
    };
    assert_eq!(err.kind(), "connect", "{err:?}");
    let unreachable = format!("127.0.0.1:{}", announced_port(owner));
    assert!(err.to_string().contains(&unreachable), "{err}");

    // With it: every announced port is dialed at its node's proxy.
    let ports: Vec<u16> = proxies.iter().map(|p| p.addr().port()).collect();
    let mapped = config().map_address(move |host, port| {
        match usize::from(port).checked_sub(1).and_then(|i| ports.get(i)) {
            Some(&proxy) => ("127.0.0.1".to_string(), proxy),
            None => (host.to_string(), port),
        }
    });
    let c = Client::connect(mapped).await.unwrap();
    let before: Vec<u64> = proxies.iter().map(FaultProxy::writes).collect();
    let pairs: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("key:{i}"), format!("value:{i}")))
        .collect();
    for (k, v) in &pairs {
        c.set(k.as_str(), v.as_str()).await.unwrap();
    }
    for (k, v) in &pairs {
        let got: Option<String> = c.get(k.as_str()).await.unwrap();
        assert_eq!(got.as_deref(), Some(v.as_str()));
    }
    // The keys are spread over the masters, and each master's traffic went through its proxy.
    let mut stored = 0;
    for (i, node) in cluster.nodes()[..masters].iter().enumerate() {
        let Value::Integer(n) = node.cmd(&["DBSIZE"]).unwrap() else {
            panic!("DBSIZE is an integer")
        };
        assert!(n > 0, "master {i} holds none of the keys");
        stored += n;
        assert!(
            proxies[i].writes() > before[i] + 100,
            "master {i}'s traffic bypassed its proxy"
        );
    }
    assert_eq!(stored, 1000);

    // A slot moved by CLUSTER SETSLOT: MOVED names the new owner's announced address, which
    // the client maps to that node's proxy, over the connection it already holds.
    let moving = slot(b"key:0");
    let from = fixture_master_of(moving, masters);
    let to = (from + 1) % masters;
    let accepted = proxies[to].accepted();
    let moved_before = c.stats().moved;
    cluster.migrate_slot(moving, from, to, 100).unwrap();
    let got: Option<String> = c.get("key:0").await.unwrap();
    assert_eq!(got.as_deref(), Some("value:0"));
    assert!(c.stats().moved > moved_before, "the read met no MOVED");
    c.set("key:0", "after").await.unwrap();
    let Value::BulkString(direct) = cluster.nodes()[to].cmd(&["GET", "key:0"]).unwrap() else {
        panic!("the new owner holds key:0")
    };
    assert_eq!(&direct[..], b"after");
    assert_eq!(
        proxies[to].accepted(),
        accepted,
        "the announced address was dialed again instead of reusing its mapped connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_the_sentinel_names_at_an_unreachable_address_is_reached_through_the_map() {
    let set = SentinelSet::builder()
        .replicas(0)
        .sentinels(1)
        .quorum(1)
        .start()
        .unwrap();
    let master = &set.servers()[0];
    let proxy = FaultProxy::start(master.addr()).unwrap();
    // The sentinel names the master as 127.0.0.1:1, where nothing listens.
    let sentinel = &set.sentinels()[0];
    sentinel
        .cmd(&["SENTINEL", "REMOVE", test_support::MASTER_NAME])
        .unwrap();
    sentinel
        .cmd(&[
            "SENTINEL",
            "MONITOR",
            test_support::MASTER_NAME,
            "127.0.0.1",
            "1",
            "1",
        ])
        .unwrap();
    let url = format!(
        "redis+sentinel://{}/{}",
        sentinel.addr(),
        test_support::MASTER_NAME
    );
    let config = || {
        Config::from_url(&url)
            .unwrap()
            .connect_timeout(Duration::from_millis(300))
    };

    let err = Client::connect(config()).await.unwrap_err();
    assert!(
        matches!(err, redis_client::Error::Sentinel(_)),
        "expected a sentinel error, got {err:?}"
    );
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");

    let proxy_port = proxy.addr().port();
    let mapped = config().map_address(move |host, port| match port {
        1 => ("127.0.0.1".to_string(), proxy_port),
        _ => (host.to_string(), port),
    });
    let c = Client::connect(mapped).await.unwrap();
    assert_eq!(
        c.sentinel().unwrap().master(),
        redis_client::ServerAddr::tcp("127.0.0.1", 1),
        "the client keeps the address the sentinel announced"
    );
    let before = proxy.writes();
    c.set("through", "the map").await.unwrap();
    let got: Option<String> = c.get("through").await.unwrap();
    assert_eq!(got.as_deref(), Some("the map"));
    assert!(
        proxy.writes() > before,
        "the master's traffic bypassed the proxy"
    );
    let Value::BulkString(direct) = master.cmd(&["GET", "through"]).unwrap() else {
        panic!("the master holds the key")
    };
    assert_eq!(&direct[..], b"the map");
}

/// The ports `SENTINEL SENTINELS` lists for the other sentinels.
fn listed_sentinel_ports(sentinel: &test_support::RedisServer) -> Vec<u16> {
    let Ok(Value::Array(entries)) =
        sentinel.cmd(&["SENTINEL", "SENTINELS", test_support::MASTER_NAME])
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let fields = match entry {
                Value::Array(fields) => fields.clone(),
                Value::Map(pairs) => pairs
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect(),
                _ => return None,
            };
            let port = fields
                .chunks(2)
                .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == b"port"))?;
            std::str::from_utf8(port.get(1)?.as_bytes()?)
                .ok()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_learned_at_addresses_only_the_map_reaches_keep_the_client_following() {
    // Sentinel 0 cannot reach the others at the ports they announce either: with the default
    // down-after (1 s) it would flag them down, and a client skips sentinels flagged down.
    let mut set = SentinelSet::builder()
        .down_after_ms(60_000)
        .start()
        .unwrap();
    // Sentinels 1 and 2 announce ports 1 and 2, where nothing listens; a proxy stands in front
    // of each, and only the map leads there.
    let proxies: Vec<FaultProxy> = set.sentinels()[1..]
        .iter()
        .map(|s| FaultProxy::start(s.addr()).unwrap())
        .collect();
    for (i, sentinel) in set.sentinels()[1..].iter().enumerate() {
        sentinel
            .cmd(&[
                "SENTINEL",
                "CONFIG",
                "SET",
                "announce-port",
                &(i + 1).to_string(),
            ])
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ports = listed_sentinel_ports(&set.sentinels()[0]);
        ports.sort_unstable();
        if ports == [1, 2] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first sentinel never listed the announced ports: {ports:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The client is told of the first sentinel only, and learns the others as announced.
    let proxy_ports: Vec<u16> = proxies.iter().map(|p| p.addr().port()).collect();
    let url = format!(
        "redis+sentinel://{}/{}",
        set.sentinels()[0].addr(),
        test_support::MASTER_NAME
    );
    let config = Config::from_url(&url)
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .sentinel_poll_interval(Duration::from_millis(200))
        .map_address(move |host, port| match port {
            1 | 2 => ("127.0.0.1".to_string(), proxy_ports[usize::from(port) - 1]),
            _ => (host.to_string(), port),
        });
    let c = Client::connect(config).await.unwrap();
    let sentinel = c.sentinel().unwrap();
    let announced = [
        redis_client::ServerAddr::tcp("127.0.0.1", 1),
        redis_client::ServerAddr::tcp("127.0.0.1", 2),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !announced.iter().all(|a| sentinel.sentinels().contains(a)) {
        assert!(
            Instant::now() < deadline,
            "the client never learned the announced sentinels: {:?}",
            sentinel.sentinels()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The sentinel it was told of dies; a failover is forced through another. Only the learned
    // sentinels, reached through the map, can tell the client.
    set.sentinels_mut()[0].kill9();
    let (_, new) = set.force_failover(1).unwrap();
    let (c, set) = (&c, &set);
    test_support::eventually(
        "the client to follow the failover",
        Duration::from_secs(15),
        || async move {
            c.set("after", "failover").await.is_ok() && set.holds(new, "after", "failover")
        },
    )
    .await;
    assert!(
        proxies.iter().any(|p| p.accepted() > 0),
        "no learned sentinel was reached through its proxy"
    );
}
