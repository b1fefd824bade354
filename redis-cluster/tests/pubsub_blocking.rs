//! The cluster client's dedicated-connection features against a real 3+3 cluster: blocking
//! commands, transactions and WATCH leases on one slot, and pub/sub (channels on any node, shard
//! channels on their slot's master, following a moved slot).

use std::time::{Duration, Instant};

use redis_cluster::{slot, ClusterClient, ClusterConfig, ClusterError, NodeAddr};
use redis_conn::{Cmd, ConnectionConfig, ServerAddr, SubscriptionKind, Value};
use test_support::Cluster;

mod common;
use common::{bulk, move_slot, other_master};

fn config(cluster: &Cluster) -> ClusterConfig {
    let seeds: Vec<NodeAddr> = cluster.seeds().into_iter().map(NodeAddr::from).collect();
    let template = ConnectionConfig::new(ServerAddr::from(cluster.seeds()[0]));
    ClusterConfig::new(seeds, template)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_transactions_and_watch_each_get_the_right_connection() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster)).await.unwrap();

    // BLPOP waits on an exclusive connection of its slot's master; nothing else waits for it.
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.send(Cmd::new("BLPOP").arg("queue").arg_int(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for i in 0..300 {
        client
            .send(Cmd::new("SET").arg(format!("k{i}")).arg("v"))
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "commands waited behind BLPOP: {:?}",
        started.elapsed()
    );
    client
        .send(Cmd::new("RPUSH").arg("queue").arg("job"))
        .await
        .unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        Value::Array(vec![bulk("queue"), bulk("job")])
    );

    // A transaction on one slot runs on its master; across slots it is refused before sending.
    let results = client
        .send_transaction(&[
            Cmd::new("SET").arg("{user:1}name").arg("Ada"),
            Cmd::new("INCR").arg("{user:1}visits"),
        ])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results[1], Value::Integer(1));
    assert!(matches!(
        client
            .send_transaction(&[
                Cmd::new("SET").arg("a").arg("1"),
                Cmd::new("SET").arg("b").arg("1"),
            ])
            .await,
        Err(ClusterError::CrossSlot { .. })
    ));

    // The slot moves behind the client's back: the MOVED met while queueing is followed (nothing
    // ran on the old owner) and the transaction runs on the new one.
    let tag = "{order:9}";
    let s = slot(tag.as_bytes());
    let old = client.slot_map().master(s).unwrap().clone();
    let new = other_master(&client.slot_map(), &old);
    move_slot(&cluster, s, &new);
    let moved_before = client.stats().moved;
    let results = client
        .send_transaction(&[
            Cmd::new("SET").arg(format!("{tag}a")).arg("1"),
            Cmd::new("SET").arg(format!("{tag}b")).arg("2"),
        ])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results.len(), 2);
    assert!(client.stats().moved > moved_before);
    assert_eq!(client.slot_map().master(s), Some(&new));
    let key = format!("{tag}b");
    let new_node = cluster
        .nodes()
        .iter()
        .find(|n| NodeAddr::from(n.addr()) == new)
        .unwrap();
    assert_eq!(new_node.cmd(&["GET", key.as_str()]).unwrap(), bulk("2"));

    // WATCH on a lease of the slot's master: a change behind its back aborts EXEC.
    let s = slot(b"{acct}");
    let lease = client.lease(Some(s)).await.unwrap();
    lease
        .send(Cmd::new("WATCH").arg("{acct}balance"))
        .await
        .unwrap();
    client
        .send(Cmd::new("SET").arg("{acct}balance").arg("100"))
        .await
        .unwrap();
    let outcome = lease
        .send_transaction(&[Cmd::new("SET").arg("{acct}balance").arg("0")])
        .await
        .unwrap();
    assert_eq!(outcome, None);
    assert_eq!(
        client
            .send(Cmd::new("GET").arg("{acct}balance"))
            .await
            .unwrap(),
        bulk("100")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_shard_channels_deliver_and_a_shard_channel_follows_its_slot() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster)).await.unwrap();
    let mut sub = client.subscriber().await.unwrap();

    // A channel: a PUBLISH on any master reaches the subscriber.
    sub.subscribe(["news"]).await.unwrap();
    for (i, node) in cluster
        .nodes()
        .iter()
        .take(cluster.master_count())
        .enumerate()
    {
        node.cmd(&["PUBLISH", "news", &format!("from-{i}")])
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..cluster.master_count() {
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
            .await
            .expect("a message")
            .unwrap();
        assert_eq!(m.kind, SubscriptionKind::Channel);
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    got.sort();
    assert_eq!(got, vec!["from-0", "from-1", "from-2"]);

    // Shard channels over many slots: each is subscribed on its slot's master.
    let channels: Vec<String> = (0..30).map(|i| format!("orders:{i}")).collect();
    sub.ssubscribe(&channels).await.unwrap();
    for channel in &channels {
        let owner = cluster.master_of_slot(slot(channel.as_bytes())).unwrap();
        let count = cluster.nodes()[owner]
            .cmd(&["SPUBLISH", channel.as_str(), "hi"])
            .unwrap();
        assert_eq!(
            count,
            Value::Integer(1),
            "{channel} not subscribed on its owner"
        );
    }
    for _ in 0..channels.len() {
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
            .await
            .expect("a shard message")
            .unwrap();
        assert_eq!(m.kind, SubscriptionKind::Shard);
    }

    // One channel's slot moves to another master: the old owner drops the subscription, and
    // the subscriber takes it up on the new owner.
    let moving = &channels[0];
    let s = slot(moving.as_bytes());
    let old = client.slot_map().master(s).unwrap().clone();
    let new = other_master(&client.slot_map(), &old);
    move_slot(&cluster, s, &new);
    let new_node = cluster
        .nodes()
        .iter()
        .find(|n| NodeAddr::from(n.addr()) == new)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while new_node
        .cmd(&["SPUBLISH", moving.as_str(), "after-move"])
        .unwrap()
        != Value::Integer(1)
    {
        assert!(
            Instant::now() < deadline,
            "the shard channel did not follow its slot: {:?}",
            sub.shard_homes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
            .await
            .expect("the message after the move")
            .unwrap();
        if &m.payload[..] == b"after-move" {
            assert_eq!(&m.channel[..], moving.as_bytes());
            break;
        }
    }
    let homes = sub.shard_homes();
    let home = homes.iter().find(|(c, _)| c == moving.as_bytes()).unwrap();
    assert_eq!(home.1.as_ref(), Some(&new));

    // Unsubscribed shard channels stop delivering.
    sub.sunsubscribe([moving]).await.unwrap();
    assert_eq!(
        new_node.cmd(&["SPUBLISH", moving.as_str(), "x"]).unwrap(),
        Value::Integer(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_redirects_to_a_new_master_opens_one_connection_to_it() {
    let cluster = Cluster::start().unwrap();
    let connects: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = std::sync::Arc::clone(&connects);
    let seeds: Vec<NodeAddr> = cluster.seeds().into_iter().map(NodeAddr::from).collect();
    let template = ConnectionConfig::new(ServerAddr::from(cluster.seeds()[0])).on_event(move |e| {
        if let redis_conn::Event::Connected { addr } = e {
            seen.lock().unwrap().push(addr.clone());
        }
    });
    let client = ClusterClient::connect(ClusterConfig::new(seeds, template).refresh_interval(None))
        .await
        .unwrap();
    let first_master = NodeAddr::from(cluster.nodes()[0].addr());
    let keys: Vec<String> = (0..)
        .map(|i| format!("burst{i}"))
        .filter(|k| client.slot_map().master(slot(k.as_bytes())) == Some(&first_master))
        .take(64)
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for key in keys {
        let (client, stop) = (client.clone(), std::sync::Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.send(Cmd::new("SET").arg(&key).arg("v")).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let replica = cluster
        .nodes()
        .iter()
        .skip(cluster.master_count())
        .find(|n| match n.cmd(&["ROLE"]) {
            Ok(Value::Array(role)) => {
                role.get(2) == Some(&Value::Integer(i64::from(first_master.port)))
            }
            _ => false,
        })
        .unwrap();
    let new_master = NodeAddr::from(replica.addr());
    replica.cmd(&["CLUSTER", "FAILOVER"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.slot_map().master(slot(b"burst0")) != Some(&new_master)
        && !client
            .slot_map()
            .shards()
            .iter()
            .any(|s| s.master == new_master)
    {
        assert!(Instant::now() < deadline, "the failover was not followed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let to_new = connects
        .lock()
        .unwrap()
        .iter()
        .filter(|a| **a == new_master.to_string())
        .count();
    assert_eq!(
        to_new, 1,
        "64 callers redirected at once opened {to_new} connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publishers_messages_to_a_channel_arrive_in_order_on_every_node() {
    let cluster = Cluster::start().unwrap();
    let client = ClusterClient::connect(config(&cluster)).await.unwrap();
    let channel = "ordered-news";
    // A subscriber on every master: messages reach the other nodes over the cluster bus.
    let mut subscribers = Vec::new();
    for node in cluster.nodes().iter().take(cluster.master_count()) {
        let sub =
            redis_conn::Subscriber::connect(ConnectionConfig::new(ServerAddr::from(node.addr())))
                .await
                .unwrap();
        sub.subscribe([channel]).await.unwrap();
        subscribers.push(sub);
    }
    let before: Vec<u64> = cluster
        .nodes()
        .iter()
        .map(|n| n.command_calls("publish").unwrap())
        .collect();
    const N: usize = 1_000;
    for i in 0..N {
        client
            .send(Cmd::new("PUBLISH").arg(channel).arg(i.to_string()))
            .await
            .unwrap();
    }
    for (n, sub) in subscribers.iter_mut().enumerate() {
        let mut got = Vec::with_capacity(N);
        while got.len() < N {
            let message = tokio::time::timeout(Duration::from_secs(10), sub.next_message())
                .await
                .unwrap_or_else(|_| panic!("subscriber {n} got {} of {N}", got.len()))
                .unwrap();
            got.push(
                String::from_utf8_lossy(&message.payload)
                    .parse::<usize>()
                    .unwrap(),
            );
        }
        let out_of_order = got.windows(2).filter(|w| w[1] != w[0] + 1).count();
        assert_eq!(out_of_order, 0, "subscriber {n}: {:?}", &got[..20]);
        assert_eq!(got[0], 0);
    }
    // Every PUBLISH went to the channel's slot's master.
    let owner = client
        .slot_map()
        .master(slot(channel.as_bytes()))
        .unwrap()
        .clone();
    for (node, before) in cluster.nodes().iter().zip(before) {
        let published = node.command_calls("publish").unwrap() - before;
        let expected = if NodeAddr::from(node.addr()) == owner {
            N as u64
        } else {
            0
        };
        assert_eq!(published, expected, "PUBLISH calls on {}", node.addr());
    }
}
