//! Profiles: the configuration from a TOML file, chosen by name or REDIS_PROFILE.
//!
//! `REDIS_CONFIG=redis.toml cargo run -p redis-client --example profile -- local`

use redis_client::prelude::*;

#[tokio::main]
async fn main() -> redis_client::Result<()> {
    let name = std::env::args().nth(1);
    let (config, source) = redis_client::load_profile(None, name.as_deref())?;
    println!(
        "profile {} ({}) from {} ({})",
        source.profile,
        source.profile_from,
        source.file.display(),
        source.file_from
    );
    for (key, value) in config.settings() {
        println!("  {key} = {value}");
    }
    let client = Client::connect(config).await?;
    println!("{}", client.ping().await?);
    Ok(())
}
