//! A small blocking RESP client for driving servers from tests (set-up, fault injection, checks).
//! It is deliberately independent of the client under test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use resp_codec::{encode_command, Decoder, Value};

use crate::{HarnessError, Result};

/// A blocking connection to one server, for administration.
#[derive(Debug)]
pub struct AdminConn {
    addr: SocketAddr,
    stream: Stream,
    buf: BytesMut,
    decoder: Decoder,
}

/// Plain TCP, or TLS over it (for servers that listen only for TLS).
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl AdminConn {
    /// Connects with a 2 s connect timeout and a 10 s read timeout.
    pub fn connect(addr: SocketAddr) -> Result<AdminConn> {
        let stream = tcp(addr)?;
        Ok(AdminConn::over(addr, Stream::Plain(stream)))
    }

    /// Connects over TLS (same timeouts as [`AdminConn::connect`]), for a server that listens only
    /// for TLS. The harness is not what a test examines, so it accepts any server certificate and
    /// presents none of its own.
    pub fn connect_tls(addr: SocketAddr) -> Result<AdminConn> {
        let stream = tcp(addr)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| HarnessError::io("configuring TLS", std::io::Error::other(e)))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| HarnessError::io(format!("TLS to {addr}"), std::io::Error::other(e)))?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        // Finish the handshake now, so a failure shows here rather than on the first command.
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| HarnessError::io(format!("TLS handshake with {addr}"), e))?;
        }
        Ok(AdminConn::over(addr, Stream::Tls(Box::new(tls))))
    }

    fn over(addr: SocketAddr, stream: Stream) -> AdminConn {
        AdminConn {
            addr,
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            decoder: Decoder::new(),
        }
    }

    /// Connects and authenticates (`AUTH [user] password`) when a password is given.
    pub fn connect_auth(addr: SocketAddr, auth: Option<(&str, &str)>) -> Result<AdminConn> {
        AdminConn::connect(addr)?.authenticated(auth)
    }

    /// [`AdminConn::connect_auth`] over TLS ([`AdminConn::connect_tls`]).
    pub fn connect_tls_auth(addr: SocketAddr, auth: Option<(&str, &str)>) -> Result<AdminConn> {
        AdminConn::connect_tls(addr)?.authenticated(auth)
    }

    fn authenticated(self, auth: Option<(&str, &str)>) -> Result<AdminConn> {
        let mut conn = self;
        if let Some((user, password)) = auth {
            conn.cmd(&["AUTH", user, password])?;
        }
        Ok(conn)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the read timeout (for commands that block, like `DEBUG SLEEP`).
    pub fn set_read_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.stream
            .tcp()
            .set_read_timeout(Some(timeout))
            .map_err(|e| HarnessError::io("setting the read timeout", e))
    }

    /// Sends a command and returns its reply, error replies included, as a [`Value`].
    pub fn raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        let mut out = BytesMut::new();
        encode_command(&mut out, args);
        self.stream
            .write_all(&out)
            .map_err(|e| HarnessError::io(format!("writing to {}", self.addr), e))?;
        self.read_value()
    }

    /// Reads one more value (a push message, or the reply to a command sent with [`AdminConn::send`]).
    pub fn read_value(&mut self) -> Result<Value> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(source) => {
                    return Err(HarnessError::Protocol {
                        addr: self.addr.to_string(),
                        source,
                    })
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| HarnessError::io(format!("reading from {}", self.addr), e))?;
            if n == 0 {
                return Err(HarnessError::io(
                    format!("reading from {}", self.addr),
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command without waiting for its reply.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<()> {
        let mut out = BytesMut::new();
        encode_command(&mut out, args);
        self.stream
            .write_all(&out)
            .map_err(|e| HarnessError::io(format!("writing to {}", self.addr), e))
    }

    /// Sends a command; an error reply becomes [`HarnessError::Reply`].
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        match self.raw(args)? {
            Value::Error(message) => Err(HarnessError::Reply {
                addr: self.addr.to_string(),
                command: command_name(args),
                message: String::from_utf8_lossy(&message).into_owned(),
            }),
            v => Ok(v),
        }
    }

    /// Sends a command whose reply is a string (`INFO`, `CLUSTER NODES`, `CLUSTER MYID`).
    pub fn cmd_string<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<String> {
        let reply = self.cmd(args)?;
        match reply.as_bytes() {
            Some(b) => Ok(String::from_utf8_lossy(b).into_owned()),
            None => Err(HarnessError::Unexpected {
                addr: self.addr.to_string(),
                command: command_name(args),
                reply: format!("{reply:?}"),
            }),
        }
    }

    /// Sends a command whose reply is an integer.
    pub fn cmd_int<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<i64> {
        match self.cmd(args)? {
            Value::Integer(i) => Ok(i),
            reply => Err(HarnessError::Unexpected {
                addr: self.addr.to_string(),
                command: command_name(args),
                reply: format!("{reply:?}"),
            }),
        }
    }

    /// One field of `INFO <section>` (`master_link_status`), if present.
    pub fn info_field(&mut self, section: &str, field: &str) -> Result<Option<String>> {
        let info = self.cmd_string(&["INFO", section])?;
        Ok(info_field(&info, field))
    }
}

fn tcp(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| HarnessError::io(format!("connecting to {addr}"), e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| HarnessError::io(format!("configuring the socket to {addr}"), e))?;
    Ok(stream)
}

/// The harness's TLS verifier: any certificate is accepted (signatures are still checked, so the
/// handshake itself is real).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The value of `field` in an `INFO` text.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == field).then(|| v.trim().to_string())
    })
}

/// The command's name for messages: its first word, and its subcommand for container commands.
/// Never an argument (it could be a password).
fn command_name<A: AsRef<[u8]>>(args: &[A]) -> String {
    let word = |i: usize| {
        args.get(i)
            .map(|a| String::from_utf8_lossy(a.as_ref()).to_ascii_uppercase())
            .unwrap_or_default()
    };
    let first = word(0);
    match first.as_str() {
        "CLUSTER" | "CONFIG" | "SENTINEL" | "CLIENT" | "DEBUG" | "ACL" | "SCRIPT" => {
            format!("{first} {}", word(1))
        }
        _ => first,
    }
}
