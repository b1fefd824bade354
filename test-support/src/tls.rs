//! Certificates generated at test time: a CA and the good and bad server certificates TLS tests need.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

use crate::server::temp_dir;
use crate::{HarnessError, Result};

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A test PKI written to a temporary directory (removed on drop).
///
/// | file | what it is |
/// |---|---|
/// | [`ca`](TestCerts::ca) | the CA certificate clients should trust |
/// | [`server`](TestCerts::server) | valid, signed by the CA, for `127.0.0.1`, `::1` and `localhost` |
/// | [`self_signed`](TestCerts::self_signed) | valid dates and names, but signed by nobody the client knows |
/// | [`wrong_host`](TestCerts::wrong_host) | signed by the CA, for `localhost.example.com` only |
/// | [`expired`](TestCerts::expired) | signed by the CA, right names, expired yesterday |
/// | [`client`](TestCerts::client) | a client certificate signed by the CA, for mTLS |
/// | [`localhost_only`](TestCerts::localhost_only) | signed by the CA, for the name `localhost` only (no IP address) |
/// | [`ip_only`](TestCerts::ip_only) | signed by the CA, for `127.0.0.1` only (no name) |
#[derive(Debug)]
pub struct TestCerts {
    dir: TempDir,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// A valid server certificate for the loopback names.
    pub server: CertFiles,
    /// A self-signed server certificate (unknown CA).
    pub self_signed: CertFiles,
    /// A CA-signed certificate for `localhost.example.com` (hostname mismatch on 127.0.0.1).
    pub wrong_host: CertFiles,
    /// A CA-signed certificate for the right names whose validity period has ended.
    pub expired: CertFiles,
    /// A CA-signed client certificate.
    pub client: CertFiles,
    /// A CA-signed server certificate naming only `localhost`: verified by name, refused on an IP.
    pub localhost_only: CertFiles,
    /// A CA-signed server certificate naming only `127.0.0.1`: refused for the name `localhost`.
    pub ip_only: CertFiles,
}

const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

impl TestCerts {
    /// Generates the whole set (ECDSA P-256 keys).
    pub fn generate() -> Result<TestCerts> {
        let dir = temp_dir()?;
        let now = OffsetDateTime::now_utc();

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "redis-client test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = now - Duration::days(1);
        ca_params.not_after = now + Duration::days(365);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let ca_path = write(dir.path(), "ca.pem", &ca.pem())?;

        let leaf = |names: &[&str], not_after: OffsetDateTime, client: bool| {
            let mut params =
                CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
            params.distinguished_name.push(
                DnType::CommonName,
                names.first().copied().unwrap_or("client"),
            );
            params.not_before = not_after - Duration::days(30);
            params.not_after = not_after;
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            // Server certificates also serve as client certificates: a TLS cluster node presents
            // its own on the cluster bus and to its master, where they are always verified.
            params.extended_key_usages = if client {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            } else {
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            };
            Ok::<_, rcgen::Error>(params)
        };
        let valid_until = now + Duration::days(30);
        let files = |name: &str, params: CertificateParams, self_signed: bool| {
            let key = KeyPair::generate()?;
            let cert = if self_signed {
                params.self_signed(&key)?
            } else {
                params.signed_by(&key, &ca)?
            };
            Ok::<_, HarnessError>(CertFiles {
                cert: write(dir.path(), &format!("{name}.pem"), &cert.pem())?,
                key: write(dir.path(), &format!("{name}-key.pem"), &key.serialize_pem())?,
            })
        };
        let server = files("server", leaf(&LOOPBACK_NAMES, valid_until, false)?, false)?;
        let self_signed = files(
            "self-signed",
            leaf(&LOOPBACK_NAMES, valid_until, false)?,
            true,
        )?;
        let wrong_host = files(
            "wrong-host",
            leaf(&["localhost.example.com"], valid_until, false)?,
            false,
        )?;
        let expired = files(
            "expired",
            leaf(&LOOPBACK_NAMES, now - Duration::days(1), false)?,
            false,
        )?;
        let client = files("client", leaf(&["client"], valid_until, true)?, false)?;
        let localhost_only = files(
            "localhost-only",
            leaf(&["localhost"], valid_until, false)?,
            false,
        )?;
        let ip_only = files("ip-only", leaf(&["127.0.0.1"], valid_until, false)?, false)?;
        Ok(TestCerts {
            dir,
            ca: ca_path,
            server,
            self_signed,
            wrong_host,
            expired,
            client,
            localhost_only,
            ip_only,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, pem).map_err(|e| HarnessError::io(format!("writing {name}"), e))?;
    Ok(path)
}
