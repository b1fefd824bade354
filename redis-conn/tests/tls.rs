//! TLS against real servers with certificates made at test time: verification on by default,
//! each dangerous switch accepting exactly its own defect, mTLS, one warning per client, reconnects.

use std::time::Duration;

use redis_conn::{Cmd, Connection, ConnectionConfig, Error, ServerAddr, TlsConfig, Value};
use test_support::{CertFiles, RedisServer, ServerTls, SharedBuf, TestCerts};

struct Servers {
    certs: TestCerts,
    good: RedisServer,
    self_signed: RedisServer,
    wrong_host: RedisServer,
    expired: RedisServer,
}

fn tls_server(certs: &TestCerts, cert: &CertFiles, mtls: bool) -> RedisServer {
    RedisServer::builder()
        .tls(ServerTls {
            cert: cert.clone(),
            ca: certs.ca.clone(),
            require_client_cert: mtls,
        })
        .start()
        .unwrap()
}

fn servers() -> Servers {
    let certs = TestCerts::generate().unwrap();
    Servers {
        good: tls_server(&certs, &certs.server, false),
        self_signed: tls_server(&certs, &certs.self_signed, false),
        wrong_host: tls_server(&certs, &certs.wrong_host, false),
        expired: tls_server(&certs, &certs.expired, false),
        certs,
    }
}

async fn try_connect(server: &RedisServer, tls: TlsConfig) -> Result<Connection, Error> {
    let addr = server.tls_addr().unwrap();
    let conn = Connection::connect(ConnectionConfig::new(ServerAddr::from(addr)).tls(tls)).await?;
    assert_eq!(
        conn.send(Cmd::new("PING")).await?,
        Value::SimpleString("PONG".into())
    );
    Ok(conn)
}

fn tls_reason(result: Result<Connection, Error>) -> String {
    match result {
        Err(Error::Tls { reason, .. }) => reason,
        Err(other) => panic!("expected a TLS error, got {other:?}"),
        Ok(_) => panic!("connected where verification should have failed"),
    }
}

#[tokio::test]
async fn verification_is_on_by_default_and_rejects_each_defect() {
    let s = servers();
    // The webpki roots do not know the test CA.
    let reason = tls_reason(try_connect(&s.good, TlsConfig::default()).await);
    assert!(reason.contains("UnknownIssuer"), "{reason}");

    let ca = || TlsConfig::builder().ca_file(&s.certs.ca).build();
    try_connect(&s.good, ca()).await.unwrap();
    let reason = tls_reason(try_connect(&s.self_signed, ca()).await);
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    let reason = tls_reason(try_connect(&s.wrong_host, ca()).await);
    assert!(reason.contains("not valid for name"), "{reason}");
    let reason = tls_reason(try_connect(&s.expired, ca()).await);
    assert!(reason.to_lowercase().contains("expired"), "{reason}");
}

#[tokio::test]
async fn each_dangerous_switch_accepts_exactly_its_own_defect() {
    let s = servers();
    let base = || TlsConfig::builder().ca_file(&s.certs.ca).dangerous();

    let chain = || base().skip_chain_verification().build();
    try_connect(&s.self_signed, chain()).await.unwrap();
    try_connect(&s.good, chain()).await.unwrap();
    tls_reason(try_connect(&s.wrong_host, chain()).await);
    tls_reason(try_connect(&s.expired, chain()).await);

    let host = || base().skip_hostname_verification().build();
    try_connect(&s.wrong_host, host()).await.unwrap();
    try_connect(&s.good, host()).await.unwrap();
    tls_reason(try_connect(&s.self_signed, host()).await);
    tls_reason(try_connect(&s.expired, host()).await);

    let validity = || base().skip_validity_period_check().build();
    try_connect(&s.expired, validity()).await.unwrap();
    try_connect(&s.good, validity()).await.unwrap();
    tls_reason(try_connect(&s.self_signed, validity()).await);
    tls_reason(try_connect(&s.wrong_host, validity()).await);

    // The one switch the user asked for turns all three off, even with no CA configured.
    let all = || {
        TlsConfig::builder()
            .dangerous()
            .skip_certificate_verification()
            .build()
    };
    for server in [&s.good, &s.self_signed, &s.wrong_host, &s.expired] {
        try_connect(server, all()).await.unwrap();
    }
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = TestCerts::generate().unwrap();
    let server = tls_server(&certs, &certs.server, true);
    let without = TlsConfig::builder().ca_file(&certs.ca).build();
    let err = try_connect(&server, without).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    let with = TlsConfig::builder()
        .ca_file(&certs.ca)
        .client_cert(&certs.client.cert, &certs.client.key)
        .build();
    try_connect(&server, with).await.unwrap();
}

#[tokio::test]
async fn bad_tls_files_are_configuration_errors() {
    let certs = TestCerts::generate().unwrap();
    let server = tls_server(&certs, &certs.server, false);
    let missing = TlsConfig::builder().ca_file("/nonexistent/ca.pem").build();
    let err = try_connect(&server, missing).await.unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("/nonexistent/ca.pem")),
        "{err:?}"
    );
    let not_a_cert = TlsConfig::builder().ca_pem(b"garbage".to_vec()).build();
    assert!(matches!(
        try_connect(&server, not_a_cert).await.unwrap_err(),
        Error::Config(_)
    ));
}

#[tokio::test]
async fn the_dangerous_mode_warns_once_per_client_and_reconnects() {
    let certs = TestCerts::generate().unwrap();
    let mut server = tls_server(&certs, &certs.self_signed, false);
    let captured = SharedBuf::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let insecure = TlsConfig::builder()
        .dangerous()
        .skip_certificate_verification()
        .build();
    let conn = Connection::connect(
        ConnectionConfig::new(ServerAddr::from(server.tls_addr().unwrap())).tls(insecure),
    )
    .await
    .unwrap();
    conn.send(Cmd::new("SET").arg("k").arg("v")).await.unwrap();
    // TLS reconnects after a restart (same ports, same certificates).
    server.kill9();
    server.restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match conn.send(Cmd::new("PING")).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no TLS reconnect: {e}"),
        }
    }
    assert_eq!(conn.stats().reconnects, 1);
    let text = captured.contents();
    let warnings = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("man-in-the-middle"))
        .count();
    assert_eq!(warnings, 1, "{text}");

    // A verified client never warns.
    let before = captured.len();
    let strict = TlsConfig::builder().ca_file(&certs.ca).build();
    let good = tls_server(&certs, &certs.server, false);
    try_connect(&good, strict).await.unwrap();
    let after = captured.contents()[before..].to_string();
    assert!(!after.contains("man-in-the-middle"), "{after}");
}

#[tokio::test]
async fn a_server_name_override_verifies_against_that_name() {
    let certs = TestCerts::generate().unwrap();
    // The certificate names localhost.example.com only; we connect to 127.0.0.1.
    let server = tls_server(&certs, &certs.wrong_host, false);
    let named = TlsConfig::builder()
        .ca_file(&certs.ca)
        .server_name("localhost.example.com")
        .build();
    try_connect(&server, named).await.unwrap();
    let other = TlsConfig::builder()
        .ca_file(&certs.ca)
        .server_name("other.example.com")
        .build();
    tls_reason(try_connect(&server, other).await);
}
