//! The sentinel client with passwords on the sentinels and the data nodes, with TLS to the
//! sentinels (verified by the host name they announce too), with a subscriber through a
//! failover, and against a stale master restarted after the switch.

use std::time::{Duration, Instant};

use redis_conn::{Cmd, ConnectionConfig, ServerAddr, SubscriberEvent, TlsConfig, Value};
use redis_sentinel::{SentinelClient, SentinelConfig, SentinelError, SentinelEvent};
use test_support::{SentinelSet, ServerTls, TestCerts, MASTER_NAME};

mod common;
use common::Writers;

fn addrs(set: &SentinelSet) -> Vec<ServerAddr> {
    set.sentinel_addrs()
        .into_iter()
        .map(ServerAddr::from)
        .collect()
}

fn config(sentinels: Vec<ServerAddr>, data: ConnectionConfig) -> SentinelConfig {
    SentinelConfig::new(sentinels, MASTER_NAME, data)
}

/// A client of the set's master, with no password or TLS (the data address is a placeholder:
/// the sentinels name the master).
async fn connect(set: &SentinelSet) -> SentinelClient {
    let data = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 1));
    SentinelClient::connect(config(addrs(set), data))
        .await
        .unwrap()
}

/// Waits for the client's next failover event.
async fn followed(events: &mut tokio::sync::broadcast::Receiver<SentinelEvent>) -> String {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(SentinelEvent::Failover { new, .. }) = events.recv().await {
                return new;
            }
        }
    })
    .await
    .expect("the client did not follow the failover")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_on_sentinels_and_data_nodes_are_used_everywhere() {
    let set = SentinelSet::builder()
        .password("data-pw")
        .sentinel_password("sentinel-pw")
        .start()
        .unwrap();
    let data = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 1)).password("data-pw");

    // Without the sentinels' password: a typed error that says why.
    let err = SentinelClient::connect(config(addrs(&set), data.clone()))
        .await
        .unwrap_err();
    match &err {
        SentinelError::NoMaster { reason, .. } => {
            assert!(reason.contains("NOAUTH"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A wrong one: an authentication error, not a hang.
    let err = SentinelClient::connect(
        config(addrs(&set), data.clone()).sentinel_credentials(None, "wrong"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("authentication"), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");

    // The right ones: discovery, writes, and the +switch-master subscription (authenticated)
    // that follows a failover.
    let client = SentinelClient::connect(
        config(addrs(&set), data)
            .sentinel_credentials(None, "sentinel-pw")
            // The backstop poll is far away: only the subscription can be this quick.
            .poll_interval(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let mut events = client.events();
    client
        .send(Cmd::new("SET").arg("k").arg("v"))
        .await
        .unwrap();
    let old = set.master_addr().unwrap();
    set.sentinels()[0]
        .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
        .unwrap();
    let new = set
        .wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    assert_eq!(followed(&mut events).await, new.to_string());
    client
        .send(Cmd::new("SET").arg("after").arg("v"))
        .await
        .unwrap();
    let index = set.master_index().unwrap();
    assert_eq!(
        set.servers()[index].cmd(&["GET", "after"]).unwrap(),
        Value::BulkString("v".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_over_tls_are_verified_and_followed() {
    let certs = TestCerts::generate().unwrap();
    let set = SentinelSet::builder()
        .sentinel_tls(ServerTls::new(&certs, &certs.server))
        .start()
        .unwrap();
    let tls_addrs: Vec<ServerAddr> = set
        .sentinels()
        .iter()
        .map(|s| ServerAddr::from(s.tls_addr().unwrap()))
        .collect();
    let data = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 1));

    // Verification is on: the webpki roots do not know the test CA.
    let err = SentinelClient::connect(
        config(tls_addrs.clone(), data.clone()).sentinel_tls(TlsConfig::default()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");

    let client = SentinelClient::connect(
        config(tls_addrs, data)
            .sentinel_tls(TlsConfig::builder().ca_file(&certs.ca).build())
            .poll_interval(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let mut events = client.events();
    let old = set.master_addr().unwrap();
    assert_eq!(client.master(), ServerAddr::from(old));
    set.sentinels()[1]
        .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
        .unwrap();
    let new = set
        .wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    assert_eq!(followed(&mut events).await, new.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sentinels_announcing_hostnames_are_verified_by_name() {
    let certs = TestCerts::generate().unwrap();
    // The sentinels' certificate names `localhost` only, and they announce `localhost`.
    let set = SentinelSet::builder()
        .hostnames(true)
        .sentinel_tls(ServerTls::new(&certs, &certs.localhost_only))
        .start()
        .unwrap();
    let on = |host: &str| -> Vec<ServerAddr> {
        set.sentinels()
            .iter()
            .map(|s| ServerAddr::tcp(host, s.tls_addr().unwrap().port()))
            .collect()
    };
    let data = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 1));
    let tls = || TlsConfig::builder().ca_file(&certs.ca).build();

    // Reached by IP, the same sentinels fail verification: the certificate does not name it.
    let err = SentinelClient::connect(config(on("127.0.0.1"), data.clone()).sentinel_tls(tls()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("TLS") && err.to_string().contains("name"),
        "{err}"
    );

    // By name, verification passes, and the master is the host name the sentinels announce.
    let client = SentinelClient::connect(
        config(on("localhost"), data)
            .sentinel_tls(tls())
            .poll_interval(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let old = set.master_addr().unwrap();
    assert_eq!(client.master(), ServerAddr::tcp("localhost", old.port()));
    let mut events = client.events();
    let (_, new) = set.force_failover(1).unwrap();
    assert_eq!(
        followed(&mut events).await,
        format!("localhost:{}", new.port())
    );
    client
        .send(Cmd::new("SET").arg("by-name").arg("v"))
        .await
        .unwrap();
    assert!(set.holds(new, "by-name", "v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_moves_to_the_new_master_and_pipelines_follow_too() {
    let set = SentinelSet::start().unwrap();
    let client = connect(&set).await;
    let mut events = client.events();
    let mut sub = client.subscriber().await.unwrap();
    sub.subscribe(["jobs"]).await.unwrap();
    let old = set.master_addr().unwrap();
    let old_index = set.master_index().unwrap();
    set.servers()[old_index]
        .cmd(&["PUBLISH", "jobs", "before"])
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"before");

    set.sentinels()[0]
        .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
        .unwrap();
    let new = set
        .wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    followed(&mut events).await;
    // The subscriber says it moved, and then hears what is published on the new master.
    let moved = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(SubscriberEvent::Resubscribed { addr, .. }) = sub.next_event().await {
                return addr;
            }
        }
    })
    .await
    .expect("the subscriber did not move");
    assert_eq!(moved, new.to_string());
    let new_index = set.master_index().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while set.servers()[new_index]
        .cmd(&["PUBLISH", "jobs", "after"])
        .unwrap()
        != Value::Integer(1)
    {
        assert!(
            Instant::now() < deadline,
            "not subscribed on the new master"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"after");

    // Pipelines and transactions go to the new master as well.
    let replies = client
        .send_pipeline(&[Cmd::new("SET").arg("p").arg("1"), Cmd::new("INCR").arg("p")])
        .await
        .unwrap();
    assert_eq!(replies[1], Value::Integer(2));
    let results = client
        .send_transaction(&[Cmd::new("INCR").arg("p"), Cmd::new("GET").arg("p")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results[1], Value::BulkString("3".into()));
    assert_eq!(
        set.servers()[new_index].cmd(&["GET", "p"]).unwrap(),
        Value::BulkString("3".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_master_restarted_after_the_switch_never_gets_a_write() {
    let mut set = SentinelSet::start().unwrap();
    let client = connect(&set).await;
    let mut events = client.events();
    let writers = Writers::start(&client, 1, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = set.master_addr().unwrap();
    let old_index = set.master_index().unwrap();
    set.servers_mut()[old_index].kill9();
    set.wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    // The old master comes back at once, empty and believing it is a master, until the
    // sentinels turn it into a replica: writes sent to it now would be lost.
    set.servers_mut()[old_index].restart().unwrap();
    let restarted_at = Instant::now();
    followed(&mut events).await;
    let followed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let acked = writers.stop().await;
    eprintln!(
        "client followed {:?} after the stale master restarted",
        followed_at.saturating_duration_since(restarted_at)
    );
    let new_index = set.master_index().unwrap();
    assert_ne!(new_index, old_index);
    let mut admin = set.servers()[new_index].admin().unwrap();
    let after: Vec<String> = acked
        .iter()
        .filter(|(_, at)| *at > followed_at)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(after.len() > 100, "too few writes: {}", after.len());
    for key in &after {
        assert_eq!(
            admin.cmd_int(&["EXISTS", key]).unwrap(),
            1,
            "{key} was acknowledged and lost"
        );
    }
    assert_eq!(
        client.master(),
        ServerAddr::from(set.master_addr().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_is_followed_from_the_promotion_and_loses_no_acknowledged_write() {
    let set = SentinelSet::start().unwrap();
    let client = connect(&set).await;
    let mut events = client.events();
    let writers = Writers::start(&client, 4, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = set.master_addr().unwrap();
    set.sentinels()[0]
        .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
        .unwrap();
    let followed_at = {
        followed(&mut events).await;
        Instant::now()
    };
    let named_at = {
        set.wait_for_new_master(old, Duration::from_secs(30))
            .unwrap();
        Instant::now()
    };
    eprintln!(
        "followed {:?} before the sentinels named the new master",
        named_at.saturating_duration_since(followed_at)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked: Vec<String> = writers.stop().await.into_iter().map(|(k, _)| k).collect();
    // Every write acknowledged, before, during and after the failover, is on the new master.
    let index = set.master_index().unwrap();
    let mut admin = set.servers()[index].admin().unwrap();
    assert!(acked.len() > 1000, "{}", acked.len());
    let mut lost = 0;
    for chunk in acked.chunks(500) {
        let mut cmd = vec!["EXISTS".to_string()];
        cmd.extend(chunk.iter().cloned());
        lost += chunk.len() as i64 - admin.cmd_int(&cmd).unwrap();
    }
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged writes lost",
        acked.len()
    );
}
