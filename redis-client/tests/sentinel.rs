//! The facade against real sentinels: one URL, the same code, a failover followed with its
//! event, pipelines and a subscriber on the new master.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_client::prelude::*;
use redis_client::{Mode, ServerAddr};
use test_support::{SentinelSet, MASTER_NAME};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_url_finds_the_master_and_follows_a_failover() {
    let set = SentinelSet::start().unwrap();
    let sentinels: Vec<String> = set
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let failovers: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&failovers);
    let c = Client::connect(
        Config::from_url(&format!(
            "redis+sentinel://{}/{MASTER_NAME}",
            sentinels.join(",")
        ))
        .unwrap()
        .on_failover(move |e| seen.lock().unwrap().push(e.to_string())),
    )
    .await
    .unwrap();
    assert_eq!(c.mode(), Mode::Sentinel);
    let old = set.master_addr().unwrap();
    assert_eq!(c.sentinel().unwrap().master(), ServerAddr::from(old));
    c.set("k", "v").await.unwrap();
    let (v, n): (String, i64) = c.pipeline().get("k").incr("n").query().await.unwrap();
    assert_eq!((v.as_str(), n), ("v", 1));
    let mut sub = c.subscriber().await.unwrap();
    sub.subscribe(["jobs"]).await.unwrap();

    set.sentinels()[0]
        .cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])
        .unwrap();
    let new = set
        .wait_for_new_master(old, Duration::from_secs(30))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while failovers.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no failover event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let event = failovers.lock().unwrap()[0].clone();
    assert!(
        event.starts_with("failover") && event.ends_with(&new.to_string()),
        "{event}"
    );
    assert_eq!(c.stats().failovers, 1);
    // Writes land on the new master; the subscriber hears what is published there.
    c.set("after", "x").await.unwrap();
    let index = set.master_index().unwrap();
    assert_eq!(
        set.servers()[index].cmd(&["GET", "after"]).unwrap(),
        redis_client::Value::BulkString("x".into())
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match c.publish("jobs", "on-new-master").await {
            Ok(1) => break,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "subscriber not on the new master"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"on-new-master");
}
