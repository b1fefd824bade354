//! A marker password never appears in Debug or Display output, errors, events or logs.

use std::sync::{Arc, Mutex};

use redis_conn::{Cmd, Connection, ConnectionConfig, Error, ServerAddr, TlsConfig};
use test_support::{RedisServer, SharedBuf};

#[tokio::test]
async fn the_password_never_leaks() {
    let marker = format!("S3cr3t-{}-{}", std::process::id(), rand_suffix());
    let captured = SharedBuf::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = RedisServer::builder()
        .password(marker.clone())
        .acl_user("app", marker.clone())
        .start()
        .unwrap();
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&events);
    let config = ConnectionConfig::new(ServerAddr::from(server.addr()))
        .username("app")
        .password(marker.as_str())
        .tls(TlsConfig::builder().build())
        .on_event(move |e| sink.lock().unwrap().push(format!("{e:?} {e:?}")));
    let mut outputs = vec![format!("{config:?}")];
    // Without TLS for the real connection (the server above is plain TCP).
    let config = ConnectionConfig::new(ServerAddr::from(server.addr()))
        .username("app")
        .password(marker.as_str())
        .on_event({
            let sink = Arc::clone(&events);
            move |e| sink.lock().unwrap().push(format!("{e:?}"))
        });
    let conn = Connection::connect(config.clone()).await.unwrap();
    outputs.push(format!("{conn:?}"));
    // Commands that carry credentials, formatted.
    for cmd in [
        Cmd::new("AUTH").arg("app").arg(&marker),
        Cmd::new("HELLO")
            .arg("3")
            .arg("AUTH")
            .arg("app")
            .arg(&marker),
        Cmd::new("CONFIG").arg("SET").arg("masterauth").arg(&marker),
        Cmd::new("ACL")
            .arg("SETUSER")
            .arg("u")
            .arg(format!(">{marker}")),
        Cmd::new("MIGRATE")
            .arg("h")
            .arg("1")
            .arg("k")
            .arg("0")
            .arg("10")
            .arg("AUTH2")
            .arg("u")
            .arg(&marker),
    ] {
        outputs.push(format!("{cmd:?}"));
    }
    // Errors: wrong password (the server's message), a reconnect through CLIENT KILL.
    let wrong = Connection::connect(config.clone().password("not-the-marker"))
        .await
        .unwrap_err();
    assert!(matches!(wrong, Error::Auth { .. }));
    outputs.push(format!("{wrong:?} {wrong}"));
    server
        .admin()
        .unwrap()
        .cmd(&["CLIENT", "KILL", "USER", "app"])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while conn.send(Cmd::new("PING")).await.is_err() {
        assert!(std::time::Instant::now() < deadline);
    }
    let err = conn.send(Cmd::new("NOSUCH")).await.unwrap_err();
    outputs.push(format!("{err:?} {err}"));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    outputs.extend(events.lock().unwrap().iter().cloned());
    let logs = captured.contents();
    assert!(
        logs.contains("redis connection event"),
        "TRACE logs were not captured: {logs}"
    );
    outputs.push(logs);
    for text in &outputs {
        assert!(!text.contains(&marker), "the password leaked into: {text}");
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
