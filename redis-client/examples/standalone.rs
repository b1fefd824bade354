//! Standalone: typed commands, a generic command, events.
//!
//! `cargo run -p redis-client --example standalone -- redis://127.0.0.1:6379`

use std::collections::HashMap;
use std::time::Duration;

use redis_client::prelude::*;

#[tokio::main]
async fn main() -> redis_client::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let config = Config::from_url(&url)?
        .client_name("example-standalone")
        .on_disconnect(|e| eprintln!("event: {e}"))
        .on_reconnect(|e| eprintln!("event: {e}"));
    let client = Client::connect(config).await?;

    client
        .set_ex("example:session", "ada", Duration::from_secs(60))
        .await?;
    let user: Option<String> = client.get("example:session").await?;
    let visits = client.incr("example:visits").await?;
    client
        .hset_multiple("example:user:1", &[("name", "Ada"), ("lang", "Rust")])
        .await?;
    let profile: HashMap<String, String> = client.hgetall("example:user:1").await?;
    let encoding: String = client
        .cmd("OBJECT")
        .arg("ENCODING")
        .arg("example:visits")
        .query()
        .await?;
    println!("user={user:?} visits={visits} profile={profile:?} encoding={encoding}");
    client
        .del(["example:session", "example:visits", "example:user:1"])
        .await?;
    Ok(())
}
