//! TLS: verified against your CA; the dangerous switch only for test servers.
//!
//! `cargo run -p redis-client --example tls -- 127.0.0.1:6380 /path/to/ca.pem`

use redis_client::prelude::*;
use redis_client::TlsConfig;

#[tokio::main]
async fn main() -> redis_client::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:6380".into());
    let tls = match args.next() {
        // Chain, host name and validity period all checked against this CA.
        Some(ca) => TlsConfig::builder().ca_file(ca).build(),
        // For a self-signed test server only: vulnerable to man-in-the-middle attacks, but
        // convenient for testing. Logs a warning.
        None => TlsConfig::builder()
            .dangerous()
            .skip_certificate_verification()
            .build(),
    };
    let client = Client::connect(Config::standalone(&addr)?.tls(tls)).await?;
    println!("{}", client.ping().await?);
    Ok(())
}
