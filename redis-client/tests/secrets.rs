//! A marker password never appears in Debug or Display of the public types, in errors (wrong
//! password, URL and profile mistakes), in events, or in any log line at TRACE. The marker holds
//! `/ ? # @ : %` (and a `%2F`), which break a URL apart when written raw; it goes in through
//! every way: URL (encoded and raw), query options, profile files, the builder, and the wire.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_client::prelude::*;
use redis_client::Profiles;
use test_support::{RedisServer, SharedBuf};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_leaks() {
    let marker = format!("M4rk/er?#@:%2Fx-S3cr3t-{}", std::process::id());
    let enc = encode(&marker);
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
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&events);
    let url = format!("redis://app:{enc}@{}", server.addr());
    let config = Config::from_url(&url)
        .unwrap()
        .username("default")
        .log_events(true)
        .on_event(move |e| sink.lock().unwrap().push(format!("{e} {e:?}")));
    texts.push(format!("{config:?}"));
    // The builder, with every secret it takes.
    let built = Config::new()
        .username("app")
        .password(marker.as_str())
        .sentinel_credentials(Some("watcher".into()), marker.as_str());
    texts.push(format!("{built:?}"));
    texts.extend(
        built
            .settings()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
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

    // Errors: a wrong password (the right one is the marker), and the marker as the wrong
    // password of another server (so it goes on the wire and comes back as WRONGPASS).
    let wrong = Client::open(&format!("redis://:not-it@{}", server.addr()))
        .await
        .unwrap_err();
    texts.push(format!("{wrong} {wrong:?}"));
    let other = RedisServer::builder()
        .password("not-the-marker")
        .start()
        .unwrap();
    let sink = Arc::clone(&events);
    let refused = Config::from_url(&format!("redis://app:{enc}@{}", other.addr()))
        .unwrap()
        .username("default")
        .max_attempts(1)
        .log_events(true)
        .on_event(move |e| sink.lock().unwrap().push(format!("{e} {e:?}")));
    let wrongpass = Client::connect(refused).await.unwrap_err();
    assert!(wrongpass.to_string().contains("WRONGPASS"), "{wrongpass}");
    texts.push(format!("{wrongpass} {wrongpass:?}"));
    // Bad URLs: the marker encoded next to another mistake, and raw (which breaks the URL
    // apart) in the user info, as the lone password, and in query options.
    for bad in [
        format!("redis://:{enc}@{}:notaport", server.addr().ip()),
        format!("redis://:{enc}@host/notadb"),
        format!("redis://:{enc}@host?nope=1"),
        format!("redis+sentinel://:{enc}@s1"),
        format!("redis://{enc}@host:x"),
        format!("redis://app:{marker}@{}", server.addr()),
        format!("redis://{marker}@{}", server.addr()),
        format!("rediss+cluster://app:{marker}@a:1,b:2?read_from_replicas=maybe"),
        format!("redis+sentinel://app:{marker}@s1/m"),
        format!("redis://host?password={marker}&nope=1"),
        format!("redis://host?password={enc}&nope=1"),
        format!("redis+sentinel://s/m?sentinel_password={marker}&nope=1"),
        format!("redis+sentinel://s/m?sentinel_password={enc}&nope=1"),
        format!("redis+sentinel://s/m?sentinel%5Fpassword={marker}&nope=1"),
        format!("redis+sentinel://s/m?sentinel%5Fpassword={enc}&nope=1"),
        format!("redis+sentinel://s/m?sentinel%5Fpassword={enc}&db=x"),
        format!("redis://host?{marker}=1"),
        format!("app:{marker}@host"),
        marker.clone(),
    ] {
        let err = Config::from_url(&bad).unwrap_err();
        texts.push(format!("{err} {err:?}"));
        let err = Client::open(&bad).await.unwrap_err();
        texts.push(format!("{err} {err:?}"));
    }
    let err = Config::from_urls([
        format!("redis://a:{enc}@a:1"),
        format!("redis://b:{marker}@b:2"),
    ])
    .unwrap_err();
    texts.push(format!("{err} {err:?}"));
    let err = Config::sentinel([format!("app:{marker}@s1:26379")], "m").unwrap_err();
    texts.push(format!("{err} {err:?}"));
    // Profiles: valid (its Debug), and with a wrong type, an unknown key or broken TOML next to
    // the marker.
    let valid = format!(
        "[profiles.p]\nurl = \"redis://app:{enc}@h:1\"\npassword = \"{marker}\"\n\
         [profiles.s]\nsentinels = [\"s1:26379\"]\nmaster_name = \"m\"\n\
         sentinel_password = \"{marker}\"\nnodes = [\"redis://app:{enc}@h:1\"]\n"
    );
    let profiles = Profiles::parse(&valid, "f.toml").unwrap();
    texts.push(format!("{profiles:?} {profiles:#?}"));
    let (from_profile, _) = profiles.config(Some("p")).unwrap();
    texts.push(format!("{from_profile:?}"));
    for bad in [
        format!("[profiles.p]\npassword = \"{marker}\"\ntimeout_ms = \"x\""),
        format!("[profiles.p]\npassword = \"{marker}\"\ntimeout_ms = \"{marker}\""),
        format!("[profiles.p]\nurl = \"redis://:{enc}@h:x\""),
        format!("[profiles.p]\nurl = \"redis://:{marker}@h\""),
        format!("[profiles.p]\nsentinel_password = \"{marker}\"\nbad_key = 1"),
        format!("[profiles.p]\nsentinel_password = \"{marker}\"\n{enc} = 1"),
        format!("[profiles.p]\nsentinels = [\"app:{marker}@s:1\"]\nmaster_name = \"m\""),
        format!("[profiles.p]\npassword = \"{marker}"),
        format!("[profiles.p]\npassword = {marker}"),
    ] {
        let err = Profiles::parse(&bad, "f.toml")
            .and_then(|p| p.config(Some("p")).map(|_| ()))
            .unwrap_err();
        texts.push(format!("{err} {err:?}"));
    }
    client.close();
    tokio::time::sleep(Duration::from_millis(100)).await;
    texts.push(captured.contents());
    let events = events.lock().unwrap().join("\n");
    assert!(
        events.contains("connect"),
        "no events were captured: {events}"
    );
    texts.push(events);
    assert!(captured.contents().contains("AUTH") || captured.contents().contains("reconnect"));
    for text in &texts {
        for piece in [marker.as_str(), enc.as_str(), "M4rk", "S3cr3t", "2Fx"] {
            assert!(
                !text.contains(piece),
                "the password leaked ({piece}): {text}"
            );
        }
    }
}

/// Percent-encodes everything but letters, digits, `-` and `.`.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
