//! Cluster: multi-key commands split by slot, a pipeline over every node, topology events.
//!
//! `cargo run -p redis-client --example cluster -- redis+cluster://127.0.0.1:7000,127.0.0.1:7001`

use redis_client::prelude::*;

#[tokio::main]
async fn main() -> redis_client::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis+cluster://127.0.0.1:7000".into());
    let client =
        Client::connect(Config::from_url(&url)?.on_topology_change(|e| eprintln!("event: {e}")))
            .await?;
    // Keys in many slots: one MSET and one MGET for the caller, one round trip per node.
    let pairs: Vec<(String, usize)> = (0..100).map(|i| (format!("example:{i}"), i)).collect();
    client.mset(&pairs).await?;
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let values: Vec<Option<usize>> = client.mget(&keys).await?;
    println!(
        "read back {} values across the cluster",
        values.iter().flatten().count()
    );
    // A pipeline over every node, replies in order.
    let mut p = client.pipeline();
    for key in &keys[..10] {
        p.incr(*key);
    }
    let incremented: Vec<i64> = p.query().await?;
    println!("incremented: {incremented:?}");
    // Keys of one transaction share a slot through a hash tag.
    let (a, b): (i64, i64) = client
        .pipeline()
        .atomic()
        .incr("{example}a")
        .incr("{example}b")
        .query()
        .await?;
    println!("atomic on one slot: {a} {b}");
    println!("deleted {}", client.del(&keys).await?);
    Ok(())
}
