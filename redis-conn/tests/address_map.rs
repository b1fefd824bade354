//! Address mapping: a connection dials where its `AddressMap` sends the announced address, keeps
//! the announced address as its name, and verifies TLS against the announced host (or the
//! mapped one when the map says so).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use redis_conn::{
    AddressMap, Cmd, Connection, ConnectionConfig, Error, ServerAddr, TlsConfig, Value,
};
use test_support::{RedisServer, ServerTls, TestCerts};

/// Port 1 on loopback: nothing listens there, so dialing it as announced is refused.
const UNREACHABLE: u16 = 1;

/// A map sending `announced_port` to `target` and counting its calls; other addresses unchanged.
fn map_port(announced_port: u16, target: (String, u16), calls: Arc<AtomicUsize>) -> AddressMap {
    AddressMap::new(move |host, port| {
        calls.fetch_add(1, Ordering::SeqCst);
        if port == announced_port {
            target.clone()
        } else {
            (host.to_string(), port)
        }
    })
}

#[tokio::test]
async fn an_announced_address_only_the_map_reaches_connects_and_keeps_its_name() {
    let server = RedisServer::start().unwrap();
    let announced = ServerAddr::tcp("127.0.0.1", UNREACHABLE);
    let config = ConnectionConfig::new(announced.clone()).fail_fast(true);

    let err = Connection::connect(config.clone()).await.unwrap_err();
    match &err {
        Error::Connect { addr, .. } => assert_eq!(addr, "127.0.0.1:1"),
        other => panic!("expected a connect error naming 127.0.0.1:1, got {other:?}"),
    }

    let calls = Arc::new(AtomicUsize::new(0));
    let target = ("127.0.0.1".to_string(), server.port());
    let mapped = config.address_map(map_port(UNREACHABLE, target, Arc::clone(&calls)));
    assert!(format!("{mapped:?}").contains("AddressMap(set)"));
    let conn = Connection::connect(mapped).await.unwrap();
    assert_eq!(
        conn.send(Cmd::new("PING")).await.unwrap(),
        Value::SimpleString("PONG".into())
    );
    assert_eq!(conn.addr(), "127.0.0.1:1");
    assert!(calls.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn a_failed_mapped_dial_names_the_announced_and_the_dialed_address() {
    let calls = Arc::new(AtomicUsize::new(0));
    // Mapped to another port nothing listens on.
    let map = map_port(
        UNREACHABLE,
        ("127.0.0.1".to_string(), 2),
        Arc::clone(&calls),
    );
    let config = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", UNREACHABLE)).address_map(map);
    match Connection::connect(config).await.unwrap_err() {
        Error::Connect { addr, reason } => {
            assert_eq!(addr, "127.0.0.1:1");
            assert!(reason.contains("dialed 127.0.0.1:2"), "{reason}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_through_a_map_verifies_the_announced_host_unless_a_server_name_is_set() {
    let certs = TestCerts::generate().unwrap();
    // The certificate names localhost.example.com only, not the 127.0.0.1 the map dials.
    let server = RedisServer::builder()
        .tls(ServerTls::new(&certs, &certs.wrong_host))
        .start()
        .unwrap();
    let tls_port = server.tls_addr().unwrap().port();
    let announced = ServerAddr::tcp("localhost.example.com", 6379);
    let map = || {
        map_port(
            6379,
            ("127.0.0.1".to_string(), tls_port),
            Arc::new(AtomicUsize::new(0)),
        )
    };
    let tls = TlsConfig::builder().ca_file(&certs.ca).build();
    let config = ConnectionConfig::new(announced).address_map(map()).tls(tls);
    let conn = Connection::connect(config.clone()).await.unwrap();
    assert_eq!(
        conn.send(Cmd::new("PING")).await.unwrap(),
        Value::SimpleString("PONG".into())
    );

    // A server name configured in the TLS settings wins over the announced host.
    let other = TlsConfig::builder()
        .ca_file(&certs.ca)
        .server_name("other.example.com")
        .build();
    match Connection::connect(config.tls(other)).await.unwrap_err() {
        Error::Tls { addr, reason } => {
            assert_eq!(addr, "localhost.example.com:6379");
            assert!(reason.contains("mapped"), "{reason}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_map_that_verifies_mapped_hosts_checks_the_certificate_against_the_dialed_name() {
    let certs = TestCerts::generate().unwrap();
    // The certificate names `localhost` only: not the address the server is announced at.
    let server = RedisServer::builder()
        .tls(ServerTls::new(&certs, &certs.localhost_only))
        .start()
        .unwrap();
    let tls_port = server.tls_addr().unwrap().port();
    let map = || {
        map_port(
            6379,
            ("localhost".to_string(), tls_port),
            Arc::new(AtomicUsize::new(0)),
        )
    };
    let config = ConnectionConfig::new(ServerAddr::tcp("10.255.255.1", 6379))
        .tls(TlsConfig::builder().ca_file(&certs.ca).build())
        .fail_fast(true);

    // By default the announced host is verified, and the certificate does not name it.
    match Connection::connect(config.clone().address_map(map()))
        .await
        .unwrap_err()
    {
        Error::Tls { addr, reason } => {
            assert_eq!(addr, "10.255.255.1:6379");
            assert!(reason.contains("dialed localhost"), "{reason}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }

    // Verifying the mapped host: the certificate names it, and the chain is still checked.
    let verified = config.clone().address_map(map().verify_mapped_host());
    assert!(format!("{verified:?}").contains("TLS verifies the mapped host"));
    let conn = Connection::connect(verified).await.unwrap();
    assert_eq!(
        conn.send(Cmd::new("PING")).await.unwrap(),
        Value::SimpleString("PONG".into())
    );
    assert_eq!(conn.addr(), "10.255.255.1:6379");
    // A server name set in the TLS settings still wins over the mapped host.
    let named = config.clone().address_map(map().verify_mapped_host()).tls(
        TlsConfig::builder()
            .ca_file(&certs.ca)
            .server_name("other.example.com")
            .build(),
    );
    match Connection::connect(named).await.unwrap_err() {
        Error::Tls { reason, .. } => assert!(reason.contains("other.example.com"), "{reason}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    let untrusted = config
        .tls(TlsConfig::default())
        .address_map(map().verify_mapped_host());
    assert!(matches!(
        Connection::connect(untrusted).await.unwrap_err(),
        Error::Tls { .. }
    ));
}

/// A map that panics on the calls listed in `panics` (1-based), and otherwise sends
/// `announced_port` to `target`.
fn panicking_map(
    announced_port: u16,
    target: (String, u16),
    calls: Arc<AtomicUsize>,
    panics: &'static [usize],
) -> AddressMap {
    AddressMap::new(move |host, port| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(!panics.contains(&n), "the user's map failed on call {n}");
        if port == announced_port {
            target.clone()
        } else {
            (host.to_string(), port)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_that_panics_fails_that_dial_only() {
    let server = RedisServer::start().unwrap();
    let target = ("127.0.0.1".to_string(), server.port());
    let calls = Arc::new(AtomicUsize::new(0));
    // Calls 1 (the first connect) and 3 (the first reconnect) panic.
    let map = panicking_map(UNREACHABLE, target, Arc::clone(&calls), &[1, 3]);
    let config = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", UNREACHABLE))
        .address_map(map)
        .backoff(
            redis_conn::BackoffConfig::default()
                .base(std::time::Duration::from_millis(10))
                .max_delay(std::time::Duration::from_millis(50)),
        );

    // The first connect: a typed error naming the announced address, not a panic in the caller.
    let first = tokio::spawn(Connection::connect(config.clone())).await;
    match first {
        Ok(Err(Error::Connect { addr, reason })) => {
            assert_eq!(addr, "127.0.0.1:1");
            assert!(reason.contains("address map panicked"), "{reason}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    let conn = Connection::connect(config).await.unwrap();
    assert_eq!(
        conn.send(Cmd::new("PING")).await.unwrap(),
        Value::SimpleString("PONG".into())
    );

    // The reconnect after a kill meets the panic once, then reconnects: the driver survives.
    server
        .admin()
        .unwrap()
        .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn.send(Cmd::new("PING")).await {
            Ok(v) if calls.load(Ordering::SeqCst) >= 4 => {
                assert_eq!(v, Value::SimpleString("PONG".into()));
                break;
            }
            Ok(_) => {}
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the connection never came back after the map panicked: {e}"
            ),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the map was never called again ({} calls)",
            calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
