//! TLS through the facade: rediss:// URLs and profile files, verification on by default, each
//! profile switch accepting exactly its defect (on a server and on every node of a TLS-only
//! cluster), one warning per client, mTLS.

use redis_client::prelude::*;
use redis_client::{Error, Profiles};
use test_support::{CertFiles, RedisServer, ServerTls, SharedBuf, TestCerts};

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

fn port(server: &RedisServer) -> u16 {
    server.tls_addr().unwrap().port()
}

async fn profile_client(text: &str) -> Result<Client> {
    let profiles = Profiles::parse(text, "test.toml")?;
    let (config, _) = profiles.config(Some("p"))?;
    Client::connect(config).await
}

fn is_tls_error(result: &Result<Client>) -> bool {
    matches!(
        result,
        Err(Error::Connection(
            redis_client::layers::conn::Error::Tls { .. }
        ))
    )
}

#[tokio::test]
async fn verification_is_on_by_default_and_each_switch_accepts_only_its_defect() {
    let certs = TestCerts::generate().unwrap();
    let good = tls_server(&certs, &certs.server, false);
    let self_signed = tls_server(&certs, &certs.self_signed, false);
    let wrong_host = tls_server(&certs, &certs.wrong_host, false);
    let expired = tls_server(&certs, &certs.expired, false);
    let ca = certs.ca.display().to_string();

    // A URL with the CA verifies and connects; without it the webpki roots refuse.
    let c = Client::open(&format!("rediss://127.0.0.1:{}?ca_file={ca}", port(&good)))
        .await
        .unwrap();
    assert_eq!(c.ping().await.unwrap(), "PONG");
    let refused = Client::open(&format!("rediss://127.0.0.1:{}", port(&good))).await;
    assert!(is_tls_error(&refused), "{refused:?}");

    // Profiles: the CA from the file; each defect refused by default.
    for server in [&self_signed, &wrong_host, &expired] {
        let result = profile_client(&format!(
            "[profiles.p]\nurl = \"rediss://127.0.0.1:{}\"\n[profiles.p.tls]\nca_file = \"{ca}\"",
            port(server)
        ))
        .await;
        assert!(is_tls_error(&result), "{result:?}");
    }
    // Each finer switch accepts its own defect and nothing else.
    let with = |server: &RedisServer, switch: &str| {
        format!(
            "[profiles.p]\nurl = \"rediss://127.0.0.1:{}\"\n[profiles.p.tls]\nca_file = \"{ca}\"\n{switch} = true",
            port(server)
        )
    };
    assert!(
        profile_client(&with(&wrong_host, "skip_hostname_verification"))
            .await
            .is_ok()
    );
    assert!(is_tls_error(
        &profile_client(&with(&expired, "skip_hostname_verification")).await
    ));
    assert!(
        profile_client(&with(&expired, "skip_validity_period_check"))
            .await
            .is_ok()
    );
    assert!(is_tls_error(
        &profile_client(&with(&self_signed, "skip_validity_period_check")).await
    ));
    assert!(
        profile_client(&with(&self_signed, "skip_chain_verification"))
            .await
            .is_ok()
    );
    assert!(is_tls_error(
        &profile_client(&with(&wrong_host, "skip_chain_verification")).await
    ));
    // insecure = true turns off all three.
    for server in [&self_signed, &wrong_host, &expired] {
        let c = profile_client(&with(server, "insecure")).await.unwrap();
        assert_eq!(c.ping().await.unwrap(), "PONG");
    }
}

#[tokio::test]
async fn the_insecure_switch_warns_once_per_client_and_mtls_works_from_a_profile() {
    let certs = TestCerts::generate().unwrap();
    let self_signed = tls_server(&certs, &certs.self_signed, false);
    let captured = SharedBuf::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let c = profile_client(&format!(
        "[profiles.p]\nurl = \"rediss://127.0.0.1:{}\"\nconnections = 3\n[profiles.p.tls]\ninsecure = true",
        port(&self_signed)
    ))
    .await
    .unwrap();
    // Three connections and a blocking command's pooled one: still one client, one warning.
    c.blpop::<Option<(String, String)>>("none", std::time::Duration::from_millis(50))
        .await
        .unwrap();
    let warnings = captured
        .contents()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("man-in-the-middle"))
        .count();
    assert_eq!(warnings, 1, "{}", captured.contents());

    let mtls = tls_server(&certs, &certs.server, true);
    let ca = certs.ca.display();
    let base = format!(
        "[profiles.p]\nurl = \"rediss://127.0.0.1:{}\"\n[profiles.p.tls]\nca_file = \"{ca}\"",
        port(&mtls)
    );
    let without = profile_client(&base).await;
    assert!(
        without.is_err(),
        "mTLS server accepted a client without a certificate"
    );
    let with = profile_client(&format!(
        "{base}\ncert_file = \"{}\"\nkey_file = \"{}\"",
        certs.client.cert.display(),
        certs.client.key.display()
    ))
    .await
    .unwrap();
    assert_eq!(with.ping().await.unwrap(), "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_cluster_url_reaches_a_tls_only_cluster_and_a_wrong_ca_is_a_tls_error() {
    let certs = TestCerts::generate().unwrap();
    let cluster = test_support::Cluster::builder()
        .replicas_per_master(0)
        .tls(ServerTls::new(&certs, &certs.server))
        .start()
        .unwrap();
    let seeds: Vec<String> = cluster.seeds().iter().map(|a| a.to_string()).collect();
    let ca = certs.ca.display().to_string();
    let url = format!("rediss+cluster://{}?ca_file={ca}", seeds.join(","));
    let client = Client::open(&url).await.unwrap();
    for i in 0..100 {
        let key = format!("tls:{i}");
        client.set(&key, i).await.unwrap();
    }
    for i in 0..100 {
        let key = format!("tls:{i}");
        assert_eq!(client.get::<Option<i64>>(&key).await.unwrap(), Some(i));
    }

    // The same seeds, trusting another CA: the typed TLS error, not a topology complaint.
    let other = TestCerts::generate().unwrap();
    let url = format!(
        "rediss+cluster://{}?ca_file={}",
        seeds.join(","),
        other.ca.display()
    );
    let refused = Client::open(&url).await;
    assert!(is_tls_error(&refused), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_switches_of_a_profile_apply_to_every_node_of_a_tls_only_cluster() {
    let certs = TestCerts::generate().unwrap();
    // Every node's certificate is signed by the CA but names localhost.example.com only.
    let cluster = test_support::Cluster::builder()
        .replicas_per_master(0)
        .tls(ServerTls::new(&certs, &certs.wrong_host))
        .start()
        .unwrap();
    // One seed: the other masters are reached only because the topology names them, so each
    // switch is shown to apply to nodes the client was not configured with.
    let seed = cluster.seeds()[0].to_string();
    let ca = certs.ca.display().to_string();
    let profile = |tls: &str| {
        format!(
            "[profiles.p]\nurl = \"rediss+cluster://{seed}\"\nconnect_timeout_ms = 500\n[profiles.p.tls]\n{tls}"
        )
    };

    // The CA alone: the name does not match.
    let refused = profile_client(&profile(&format!("ca_file = \"{ca}\""))).await;
    assert!(is_tls_error(&refused), "{refused:?}");
    // Skipping the chain check does not excuse the wrong name.
    let refused = profile_client(&profile("skip_chain_verification = true")).await;
    assert!(is_tls_error(&refused), "{refused:?}");

    // Each switch that excuses the defect reaches every master the topology names.
    for tls in [
        format!("ca_file = \"{ca}\"\nskip_hostname_verification = true"),
        "insecure = true".to_string(),
    ] {
        let client = profile_client(&profile(&tls)).await.unwrap();
        for i in 0..300 {
            client.set(format!("switch:{i}"), i).await.unwrap();
        }
        for node in cluster.nodes() {
            let redis_client::Value::Integer(n) = node.cmd(&["DBSIZE"]).unwrap() else {
                panic!("DBSIZE is an integer")
            };
            assert!(n > 0, "{tls}: a master got none of the keys");
        }
        for i in 0..300 {
            let got: Option<i64> = client.get(format!("switch:{i}")).await.unwrap();
            assert_eq!(got, Some(i));
        }
        for node in cluster.nodes() {
            node.cmd(&["FLUSHALL"]).unwrap();
        }
    }
}
