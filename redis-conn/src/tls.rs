//! TLS settings: trust roots, client certificates, server name, and the explicit, dangerous
//! switches that turn certificate checks off.
//!
//! Verification is on by default: the server's chain must lead to a trusted root (the webpki
//! roots, or the CA file you give), its name must match the host you connect to, and it must be
//! within its validity period. The only way to turn a check off is through
//! [`TlsConfigBuilder::dangerous`], which is a runtime setting (so a profile file can carry it) and
//! logs one warning per client. Each fine-grained switch turns off only the check it names.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::Error;

/// Which certificate checks are switched off. All `false` (every check on) by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedChecks {
    /// Accept a chain that does not lead to a trusted root (self-signed, unknown CA).
    pub chain: bool,
    /// Accept a certificate issued for another host name.
    pub hostname: bool,
    /// Accept a certificate outside its validity period (expired, not yet valid).
    pub validity_period: bool,
}

impl SkippedChecks {
    /// Every check off.
    pub const ALL: SkippedChecks = SkippedChecks {
        chain: true,
        hostname: true,
        validity_period: true,
    };

    /// Whether any check is off.
    pub fn any(&self) -> bool {
        self.chain || self.hostname || self.validity_period
    }
}

#[derive(Clone)]
enum Roots {
    WebPki,
    CaFile(PathBuf),
    CaPem(Vec<u8>),
}

/// TLS settings for connections to one deployment. Build with [`TlsConfig::builder`].
///
/// ```
/// use redis_conn::TlsConfig;
///
/// // Verified against a private CA, with a client certificate (mTLS):
/// let tls = TlsConfig::builder()
///     .ca_file("/etc/redis/ca.pem")
///     .client_cert("/etc/redis/client.pem", "/etc/redis/client-key.pem")
///     .build();
/// assert!(!tls.is_dangerous());
///
/// // For a test server with a self-signed certificate only: vulnerable to man-in-the-middle
/// // attacks, but convenient for testing.
/// let insecure = TlsConfig::builder().dangerous().skip_certificate_verification().build();
/// assert!(insecure.is_dangerous());
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    roots: Roots,
    client_cert: Option<(PathBuf, PathBuf)>,
    server_name: Option<String>,
    skipped: SkippedChecks,
    /// Whether the dangerous-mode warning was logged, shared by the clones (one client).
    warned: Arc<AtomicBool>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roots = match &self.roots {
            Roots::WebPki => "webpki-roots".to_string(),
            Roots::CaFile(p) => format!("CA file {}", p.display()),
            Roots::CaPem(_) => "CA PEM in memory".to_string(),
        };
        f.debug_struct("TlsConfig")
            .field("roots", &roots)
            .field(
                "client_cert",
                &self
                    .client_cert
                    .as_ref()
                    .map(|(c, _)| c.display().to_string()),
            )
            .field("server_name", &self.server_name)
            .field("skipped_checks", &self.skipped)
            .finish()
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig::builder().build()
    }
}

impl TlsConfig {
    /// A builder, with every check on and the webpki (Mozilla) roots trusted.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder {
            config: TlsConfig {
                roots: Roots::WebPki,
                client_cert: None,
                server_name: None,
                skipped: SkippedChecks::default(),
                warned: Arc::default(),
            },
        }
    }

    /// Whether any certificate check is switched off.
    pub fn is_dangerous(&self) -> bool {
        self.skipped.any()
    }

    /// The checks that are switched off.
    pub fn skipped_checks(&self) -> SkippedChecks {
        self.skipped
    }

    /// The name to verify the server's certificate against, when it differs from the host.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// True the first time it is asked, for this configuration and its clones.
    pub(crate) fn first_warning(&self) -> bool {
        !self.warned.swap(true, Ordering::AcqRel)
    }

    /// Loads the files and builds the rustls configuration.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &self.roots {
            Roots::WebPki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Roots::CaFile(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        Error::Config(format!("cannot read CA file {}: {e}", path.display()))
                    })?;
                add_roots(&mut roots, certs, &path.display().to_string())?;
            }
            Roots::CaPem(pem) => {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Error::Config(format!("cannot parse CA PEM: {e}")))?;
                add_roots(&mut roots, certs, "the CA PEM")?;
            }
        }
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS protocol versions: {e}")))?;
        let builder = if self.skipped.any() {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(danger::SelectiveVerifier {
                    roots: Arc::new(roots),
                    skipped: self.skipped,
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else {
            builder.with_root_certificates(roots)
        };
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        Error::Config(format!(
                            "cannot read client certificate {}: {e}",
                            cert.display()
                        ))
                    })?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    Error::Config(format!("cannot read client key {}: {e}", key.display()))
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::Config(format!("client certificate rejected: {e}")))?
            }
        };
        Ok(Arc::new(config))
    }
}

fn add_roots(
    roots: &mut RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    what: &str,
) -> Result<(), Error> {
    if certs.is_empty() {
        return Err(Error::Config(format!("no certificate found in {what}")));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("bad CA certificate in {what}: {e}")))?;
    }
    Ok(())
}

/// Builds a [`TlsConfig`].
#[derive(Debug, Clone)]
pub struct TlsConfigBuilder {
    config: TlsConfig,
}

impl TlsConfigBuilder {
    /// Trusts the CA certificates in this PEM file instead of the webpki roots.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.roots = Roots::CaFile(path.into());
        self
    }

    /// Trusts the CA certificates in this PEM text instead of the webpki roots.
    #[must_use]
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.config.roots = Roots::CaPem(pem.into());
        self
    }

    /// Presents this certificate chain and private key (PEM files) to servers that ask for one
    /// (`tls-auth-clients yes`).
    #[must_use]
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.config.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Verifies the server's certificate against this name (and sends it as SNI) instead of the
    /// host connected to.
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.config.server_name = Some(name.into());
        self
    }

    /// The switches that weaken verification. Every client built with one of them logs a
    /// warning once.
    pub fn dangerous(self) -> DangerousTlsConfigBuilder {
        DangerousTlsConfigBuilder { inner: self }
    }

    /// The configuration.
    pub fn build(self) -> TlsConfig {
        self.config
    }
}

/// Switches that weaken certificate verification, reached through [`TlsConfigBuilder::dangerous`].
///
/// A connection that skips a check is open to man-in-the-middle attacks. Use these for test
/// servers and self-signed development set-ups, never to make a production error go away.
#[derive(Debug, Clone)]
pub struct DangerousTlsConfigBuilder {
    inner: TlsConfigBuilder,
}

impl DangerousTlsConfigBuilder {
    /// Turns off all three checks: chain (CA), host name and validity period. The TLS handshake
    /// still proves the server holds the key of the certificate it shows.
    #[must_use]
    pub fn skip_certificate_verification(mut self) -> Self {
        self.inner.config.skipped = SkippedChecks::ALL;
        self
    }

    /// Accepts a chain that does not lead to a trusted root; host name and validity period are
    /// still checked.
    #[must_use]
    pub fn skip_chain_verification(mut self) -> Self {
        self.inner.config.skipped.chain = true;
        self
    }

    /// Accepts a certificate for another host name; chain and validity period are still checked.
    #[must_use]
    pub fn skip_hostname_verification(mut self) -> Self {
        self.inner.config.skipped.hostname = true;
        self
    }

    /// Accepts an expired or not-yet-valid certificate; chain and host name are still checked.
    #[must_use]
    pub fn skip_validity_period_check(mut self) -> Self {
        self.inner.config.skipped.validity_period = true;
        self
    }

    /// Sets exactly these skipped checks (for configuration read from a file).
    #[must_use]
    pub fn skip(mut self, checks: SkippedChecks) -> Self {
        self.inner.config.skipped = checks;
        self
    }

    /// The configuration.
    pub fn build(self) -> TlsConfig {
        self.inner.build()
    }
}

/// The verifier behind the dangerous switches: runs the checks that are still on.
pub mod danger {
    use super::*;

    /// A certificate verifier that performs only the checks not listed in [`SkippedChecks`].
    /// Reached only through [`TlsConfigBuilder::dangerous`].
    #[derive(Debug)]
    pub(crate) struct SelectiveVerifier {
        pub(crate) roots: Arc<RootCertStore>,
        pub(crate) skipped: SkippedChecks,
        pub(crate) algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for SelectiveVerifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
            let validity = der::validity(end_entity.as_ref());
            if !self.skipped.chain {
                // With the validity check off, verify the chain at a moment when the leaf is
                // valid, so that only the period is ignored.
                let at = match (self.skipped.validity_period, validity) {
                    (true, Some((not_before, not_after))) => {
                        if now.as_secs() > not_after {
                            UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_after))
                        } else if now.as_secs() < not_before {
                            UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_before))
                        } else {
                            now
                        }
                    }
                    _ => now,
                };
                cert.verify_for_usage(
                    self.algorithms.all,
                    &self.roots.roots,
                    intermediates,
                    at,
                    webpki::KeyUsage::server_auth(),
                    None,
                    None,
                )
                .map_err(pki_error)?;
            } else if !self.skipped.validity_period {
                let (not_before, not_after) = validity.ok_or(rustls::Error::InvalidCertificate(
                    CertificateError::BadEncoding,
                ))?;
                if now.as_secs() > not_after {
                    return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
                }
                if now.as_secs() < not_before {
                    return Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidYet,
                    ));
                }
            }
            if !self.skipped.hostname {
                cert.verify_is_valid_for_subject_name(server_name)
                    .map_err(pki_error)?;
            }
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }

    fn pki_error(e: webpki::Error) -> rustls::Error {
        use webpki::Error as E;
        let cert = match e {
            E::BadDer | E::BadDerTime => CertificateError::BadEncoding,
            E::CertExpired { .. } => CertificateError::Expired,
            E::CertNotValidYet { .. } => CertificateError::NotValidYet,
            E::UnknownIssuer => CertificateError::UnknownIssuer,
            E::CertNotValidForName(_) => CertificateError::NotValidForName,
            E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
            other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
        };
        rustls::Error::InvalidCertificate(cert)
    }
}

/// Just enough DER to read a certificate's validity period.
mod der {
    /// Reads one TLV: (tag, contents, rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    /// `(not_before, not_after)` as Unix seconds.
    pub(super) fn validity(cert: &[u8]) -> Option<(u64, u64)> {
        let (0x30, cert, _) = tlv(cert)? else {
            return None;
        };
        let (0x30, tbs, _) = tlv(cert)? else {
            return None;
        };
        let mut rest = tbs;
        // Optional [0] version.
        if rest.first() == Some(&0xa0) {
            rest = tlv(rest)?.2;
        }
        rest = tlv(rest)?.2; // serial number
        rest = tlv(rest)?.2; // signature algorithm
        rest = tlv(rest)?.2; // issuer
        let (0x30, validity, _) = tlv(rest)? else {
            return None;
        };
        let (t1, before, after_rest) = tlv(validity)?;
        let (t2, after, _) = tlv(after_rest)?;
        Some((time(t1, before)?, time(t2, after)?))
    }

    /// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
    fn time(tag: u8, text: &[u8]) -> Option<u64> {
        let digits = |s: &[u8]| -> Option<i64> {
            s.iter().try_fold(0i64, |acc, &b| {
                b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
            })
        };
        let (year, rest) = match tag {
            0x17 if text.len() == 13 => {
                let yy = digits(&text[..2])?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
            }
            0x18 if text.len() == 15 => (digits(&text[..4])?, &text[4..]),
            _ => return None,
        };
        if rest.last() != Some(&b'Z') {
            return None;
        }
        let (month, day) = (digits(&rest[0..2])?, digits(&rest[2..4])?);
        let (h, m, s) = (
            digits(&rest[4..6])?,
            digits(&rest[6..8])?,
            digits(&rest[8..10])?,
        );
        // Days from civil (Howard Hinnant's algorithm).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn times_convert_to_unix_seconds() {
            assert_eq!(super::time(0x17, b"700101000000Z"), Some(0));
            assert_eq!(super::time(0x17, b"000301000000Z"), Some(951_868_800));
            assert_eq!(super::time(0x18, b"20261125171900Z"), Some(1_795_627_140));
            assert_eq!(super::time(0x18, b"2026112517190Z"), None);
            assert_eq!(super::validity(b"\x30\x01"), None);
            assert_eq!(super::validity(b""), None);
        }
    }
}
