//! A marker password never appears in Debug or Display of the public types, in errors (wrong
//! password, URL and profile mistakes), or in any log line at TRACE.

use std::time::Duration;

use redis_client::prelude::*;
use redis_client::Profiles;
use test_support::{RedisServer, SharedBuf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_leaks() {
    let marker = format!("S3cr3t-{}", std::process::id());
    let captured = SharedBuf::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_global_default(subscriber);

    let mut server = RedisServer::builder()
        .password(marker.clone())
        .start()
        .unwrap();
    let mut texts: Vec<String> = Vec::new();
    let url = format!("redis://:{marker}@{}", server.addr());
    let config = Config::from_url(&url).unwrap().log_events(true);
    texts.push(format!("{config:?}"));
    texts.extend(
        config
            .settings()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    let client = Client::connect(config.clone()).await.unwrap();
    texts.push(format!("{client:?}"));
    client.set("k", "v").await.unwrap();
    // A reconnect runs the handshake (with AUTH) again.
    server.kill9();
    server.restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while client.ping().await.is_err() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tx = client.watch("k").await.unwrap();
    texts.push(format!("{tx:?}"));
    drop(tx);
    let pipeline = {
        let mut p = client.pipeline();
        p.cmd("CONFIG").arg("SET").arg("requirepass").arg(&marker);
        p.cmd("AUTH").arg(&marker);
        p
    };
    texts.push(format!("{pipeline:?}"));
    let sub = client.subscriber().await.unwrap();
    texts.push(format!("{sub:?}"));

    // Errors: a wrong password (the right one is the marker), bad URLs, bad profiles.
    let wrong = Client::open(&format!("redis://:not-it@{}", server.addr()))
        .await
        .unwrap_err();
    texts.push(format!("{wrong} {wrong:?}"));
    for bad in [
        format!("redis://:{marker}@{}:notaport", server.addr().ip()),
        format!("redis://:{marker}@host/notadb"),
        format!("redis://:{marker}@host?nope=1"),
        format!("redis+sentinel://:{marker}@s1"),
    ] {
        let err = Config::from_url(&bad).unwrap_err();
        texts.push(format!("{err} {err:?}"));
    }
    for bad in [
        format!("[profiles.p]\npassword = \"{marker}\"\ntimeout_ms = \"x\""),
        format!("[profiles.p]\nurl = \"redis://:{marker}@h:x\""),
        format!("[profiles.p]\nsentinel_password = \"{marker}\"\nbad_key = 1"),
        format!("[profiles.p]\npassword = \"{marker}"),
    ] {
        let err = Profiles::parse(&bad, "f.toml")
            .and_then(|p| p.config(Some("p")).map(|_| ()))
            .unwrap_err();
        texts.push(format!("{err} {err:?}"));
    }
    client.close();
    tokio::time::sleep(Duration::from_millis(100)).await;
    texts.push(captured.contents());
    assert!(captured.contents().contains("AUTH") || captured.contents().contains("reconnect"));
    for text in &texts {
        assert!(!text.contains(&marker), "the password leaked: {text}");
    }
}
