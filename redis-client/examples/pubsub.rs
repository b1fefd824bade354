//! Pub/sub: subscriptions restored after reconnects and failovers.
//!
//! `cargo run -p redis-client --example pubsub -- redis://127.0.0.1:6379`

use redis_client::prelude::*;
use redis_client::SubscriberEvent;

#[tokio::main]
async fn main() -> redis_client::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let client = Client::open(&url).await?;
    let mut sub = client.subscriber().await?;
    sub.subscribe(["example:news"]).await?;
    sub.psubscribe(["example:user:*"]).await?;
    let publisher = client.clone();
    tokio::spawn(async move {
        for i in 0..3 {
            let _ = publisher.publish("example:news", format!("item {i}")).await;
            let _ = publisher
                .publish(format!("example:user:{i}"), "login")
                .await;
        }
    });
    let mut seen = 0;
    while seen < 6 {
        match sub.next_event().await {
            Some(SubscriberEvent::Message(m)) => {
                seen += 1;
                println!(
                    "{} {}",
                    String::from_utf8_lossy(&m.channel),
                    String::from_utf8_lossy(&m.payload)
                );
            }
            Some(SubscriberEvent::Resubscribed { downtime, .. }) => {
                println!("back after {downtime:?}; messages meanwhile were missed");
            }
            Some(_) => {}
            None => break,
        }
    }
    Ok(())
}
