//! Pipelines and transactions: one write, replies in order, errors in place; WATCH.
//!
//! `cargo run -p redis-client --example pipeline -- redis://127.0.0.1:6379`

use redis_client::prelude::*;
use redis_client::ServerError;

#[tokio::main]
async fn main() -> redis_client::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let client = Client::open(&url).await?;
    let (old, n, wrong): (Option<String>, i64, Result<i64, ServerError>) = client
        .pipeline()
        .set("example:k", "v")
        .ignore()
        .getdel("example:k")
        .incr("example:n")
        .set("example:text", "abc")
        .ignore()
        .incr("example:text")
        .query()
        .await?;
    // INCR on text failed in its place; the other commands ran.
    println!("old={old:?} n={n} wrong={wrong:?}");

    // Optimistic transaction: retried while someone else changes the key in between.
    client.set("example:balance", 100).await?;
    loop {
        let tx = client.watch("example:balance").await?;
        let balance: i64 = tx.get("example:balance").await?;
        let mut writes = client.pipeline();
        writes.set("example:balance", balance - 10);
        if tx.exec::<((),)>(&writes).await?.is_some() {
            break;
        }
    }
    println!(
        "balance now {}",
        client.get::<i64>("example:balance").await?
    );
    client
        .del(["example:n", "example:balance", "example:text"])
        .await?;
    Ok(())
}
