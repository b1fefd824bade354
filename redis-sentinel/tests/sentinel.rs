//! The sentinel client against real sentinels: discovery (with a dead sentinel and a lying one),
//! and a SENTINEL FAILOVER followed under writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_conn::{Cmd, ConnectionConfig, ServerAddr, Value};
use redis_sentinel::{SentinelClient, SentinelConfig, SentinelEvent};
use test_support::{SentinelSet, MASTER_NAME};

mod common;
use common::Writers;

fn config(sentinels: Vec<ServerAddr>) -> SentinelConfig {
    let template = ConnectionConfig::new(sentinels[0].clone());
    SentinelConfig::new(sentinels, MASTER_NAME, template)
}

fn addrs(set: &SentinelSet) -> Vec<ServerAddr> {
    set.sentinel_addrs()
        .into_iter()
        .map(ServerAddr::from)
        .collect()
}

/// A fake sentinel that names `addr` as the master, whatever it is asked.
async fn lying_sentinel(addr: std::net::SocketAddr) -> ServerAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let reply = format!(
                "*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{}\r\n",
                addr.port().to_string().len(),
                addr.port()
            );
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    ServerAddr::from(me)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_skips_dead_and_lying_sentinels() {
    let mut set = SentinelSet::start().unwrap();
    let master = set.master_addr().unwrap();
    // A sentinel that names a replica as master comes first: the ROLE check catches it.
    let replica = set.servers()[1].addr();
    let liar = lying_sentinel(replica).await;
    let mut sentinels = vec![liar];
    sentinels.extend(addrs(&set));
    // And one real sentinel is dead.
    set.sentinels_mut()[0].kill9();
    let started = Instant::now();
    let client = SentinelClient::connect(config(sentinels)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.master(), ServerAddr::from(master));
    client
        .send(Cmd::new("SET").arg("k").arg("v"))
        .await
        .unwrap();
    assert_eq!(
        set.servers()[0].cmd(&["GET", "k"]).unwrap(),
        Value::BulkString("v".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed_and_no_write_after_the_switch_is_lost() {
    let set = SentinelSet::start().unwrap();
    let old = set.master_addr().unwrap();
    let client = SentinelClient::connect(config(addrs(&set))).await.unwrap();
    let mut events = client.events();
    let writers = Writers::start(&client, 1, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    set.sentinels()[0]
        .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
        .unwrap();
    let new = set
        .wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    let switched_at = Instant::now();
    // The client follows within a second of the sentinels naming the new master.
    let followed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(SentinelEvent::Failover { new: to, .. }) = events.recv().await {
                return to;
            }
        }
    })
    .await
    .expect("the client did not follow the failover");
    let follow_delay = switched_at.elapsed();
    eprintln!("followed {follow_delay:?} after the sentinels named the new master");
    assert_eq!(followed, new.to_string());
    assert!(
        follow_delay < Duration::from_secs(1),
        "followed after {follow_delay:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked = writers.stop().await;
    // Every write acknowledged after the switch is on the new master.
    let new_index = set.master_index().unwrap();
    let mut admin = set.servers()[new_index].admin().unwrap();
    let after: Vec<String> = acked
        .iter()
        .filter(|(_, at)| *at > switched_at + Duration::from_secs(1))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        after.len() > 50,
        "too few writes after the switch: {}",
        after.len()
    );
    for key in &after {
        assert_eq!(admin.cmd_int(&["EXISTS", key]).unwrap(), 1, "{key} lost");
    }
    assert_eq!(client.master(), ServerAddr::from(new));
    assert_eq!(client.failovers(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_costs_errors_only_until_the_switch() {
    let mut set = SentinelSet::start().unwrap();
    let old = set.master_addr().unwrap();
    let client = SentinelClient::connect(config(addrs(&set))).await.unwrap();
    let mut events = client.events();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let errors: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let writer = {
        let (client, stop, errors) = (client.clone(), Arc::clone(&stop), Arc::clone(&errors));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if client
                    .send(Cmd::new("SET").arg(format!("k:{i}")).arg("v"))
                    .await
                    .is_err()
                {
                    errors.lock().unwrap().push(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let master_index = set.master_index().unwrap();
    set.servers_mut()[master_index].kill9();
    let killed_at = started.elapsed();
    set.wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    let switched_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let errors = errors.lock().unwrap().clone();
    assert!(!errors.is_empty(), "no error while the master was dead?");
    for at in &errors {
        assert!(
            *at >= killed_at && *at <= switched_at + Duration::from_secs(1),
            "an error at {at:?}: killed {killed_at:?}, switched {switched_at:?}"
        );
    }
    eprintln!(
        "killed at {killed_at:?}, switched at {switched_at:?}, last error at {:?}, {} errors",
        errors.last(),
        errors.len()
    );
    client
        .send(Cmd::new("SET").arg("after").arg("v"))
        .await
        .unwrap();
    // Usually one switch. Under heavy load the sentinels can run a second failover right after
    // the first (a second leader when the first is slow, failover-timeout being 2 s here): the
    // client follows both; say which.
    let mut switches = Vec::new();
    while let Ok(SentinelEvent::Failover { old, new }) = events.try_recv() {
        switches.push(format!("{old} -> {new}"));
    }
    assert!(client.failovers() >= 1, "{switches:?}");
    eprintln!("switches: {switches:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_it_was_not_told_about_are_learned_and_used() {
    let mut set = SentinelSet::start().unwrap();
    let old = set.master_addr().unwrap();
    let all = addrs(&set);
    // Configured with one sentinel only.
    let client = SentinelClient::connect(
        config(vec![all[0].clone()]).poll_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.sentinels().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "learned {:?}",
            client.sentinels()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for addr in &all {
        assert!(client.sentinels().contains(addr), "{addr} not learned");
    }
    // The one it was configured with dies; a failover is still followed through the others.
    set.sentinels_mut()[0].kill9();
    set.sentinels()[1]
        .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
        .unwrap();
    let new = set
        .wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while client.master() != ServerAddr::from(new) {
        assert!(Instant::now() < deadline, "the failover was not followed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
        .send(Cmd::new("SET").arg("k").arg("v"))
        .await
        .unwrap();
}

fn get_calls(node: &test_support::RedisServer) -> u64 {
    node.command_calls("get").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_fall_back_to_the_master() {
    let mut set = SentinelSet::start().unwrap();
    let client = SentinelClient::connect(
        config(addrs(&set))
            .read_from_replicas(true)
            .replica_selector(redis_conn::RoundRobinSelector::default()),
    )
    .await
    .unwrap();
    client
        .send(Cmd::new("SET").arg("k").arg("v"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..100 {
        assert_eq!(
            client.send(Cmd::new("GET").arg("k")).await.unwrap(),
            Value::BulkString("v".into())
        );
    }
    let master = set.master_index().unwrap();
    assert_eq!(
        get_calls(&set.servers()[master]),
        0,
        "reads reached the master"
    );
    let on_replicas: Vec<u64> = (0..set.servers().len())
        .filter(|&i| i != master)
        .map(|i| get_calls(&set.servers()[i]))
        .collect();
    assert_eq!(on_replicas, vec![50, 50], "round robin over both replicas");
    // Both replicas die: reads fall back to the master without an error.
    for i in 0..set.servers().len() {
        if i != master {
            set.servers_mut()[i].kill9();
        }
    }
    for _ in 0..20 {
        assert_eq!(
            client.send(Cmd::new("GET").arg("k")).await.unwrap(),
            Value::BulkString("v".into())
        );
    }
    assert!(get_calls(&set.servers()[master]) >= 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_that_announce_hostnames_are_followed_by_name() {
    let set = SentinelSet::builder().hostnames(true).start().unwrap();
    // What the sentinels answer is a name, not an address.
    let answer = set.sentinels()[0]
        .cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
        .unwrap();
    let host = match &answer {
        Value::Array(parts) => parts[0].as_bytes().cloned().unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    assert_eq!(&host[..], b"localhost", "{answer:?}");
    let client = SentinelClient::connect(config(addrs(&set))).await.unwrap();
    client
        .send(Cmd::new("SET").arg("by-name").arg("1"))
        .await
        .unwrap();
    let (_, new) = set.force_failover(0).unwrap();
    // The client follows the failover to the master the sentinels name by host name.
    let (client, set) = (&client, &set);
    test_support::eventually(
        "the client to write to the new master",
        Duration::from_secs(15),
        || async move {
            let written = client.send(Cmd::new("SET").arg("after").arg("1")).await;
            written.is_ok() && set.holds(new, "after", "1")
        },
    )
    .await;
}
