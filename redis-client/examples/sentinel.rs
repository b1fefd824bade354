//! Sentinel: the master found and followed through failovers.
//!
//! `cargo run -p redis-client --example sentinel -- redis+sentinel://127.0.0.1:26379/mymaster`

use std::time::Duration;

use redis_client::prelude::*;

#[tokio::main]
async fn main() -> redis_client::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis+sentinel://127.0.0.1:26379/mymaster".into());
    let client =
        Client::connect(Config::from_url(&url)?.on_failover(|e| eprintln!("event: {e}"))).await?;
    println!(
        "master: {}",
        client
            .sentinel()
            .map(|s| s.master().to_string())
            .unwrap_or_default()
    );
    // Writes keep going through a failover: a few fail while there is no master, then they
    // land on the new one.
    for i in 0..20 {
        match client.incr("example:counter").await {
            Ok(n) => println!("counter {n}"),
            Err(e) => println!("write {i} failed ({e}); may it have run? {:?}", e.sent()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}
