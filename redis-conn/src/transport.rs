//! The byte stream under a connection: TCP, TLS over TCP, or a Unix socket.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::{AddressMap, Error, TlsConfig};

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    /// A host name or IP address and a port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix domain socket.
    Unix(PathBuf),
}

impl ServerAddr {
    /// A TCP address.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        ServerAddr::Tcp {
            host: host.into(),
            port,
        }
    }
}

impl From<std::net::SocketAddr> for ServerAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        ServerAddr::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            ServerAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// An open stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

/// Opens the transport (no timeout here: the caller bounds the whole connect). A TCP address
/// is dialed where `map` sends it; errors name the announced address (and the dialed one), and
/// TLS verifies the announced host unless the TLS settings name a server or the map verifies
/// mapped hosts.
pub(crate) async fn connect(
    addr: &ServerAddr,
    map: Option<&AddressMap>,
    tls: Option<&(TlsConfig, Arc<rustls::ClientConfig>)>,
) -> Result<Stream, Error> {
    let text = addr.to_string();
    match addr {
        ServerAddr::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await.map_err(
            |e| Error::Connect {
                addr: text.clone(),
                reason: e.to_string(),
            },
        )?)),
        ServerAddr::Tcp { host, port } => {
            let (dial_host, dial_port) = match map {
                Some(map) => map
                    .map_for_dial(host, *port)
                    .map_err(|reason| Error::Connect {
                        addr: text.clone(),
                        reason,
                    })?,
                None => (host.clone(), *port),
            };
            // Said in every error when the dialed address is not the announced one.
            let via = if map.is_some() {
                format!(
                    " (dialed {}, mapped)",
                    ServerAddr::tcp(dial_host.clone(), dial_port)
                )
            } else {
                String::new()
            };
            let io_err = |e: io::Error| Error::Connect {
                addr: text.clone(),
                reason: format!("{e}{via}"),
            };
            let tcp = TcpStream::connect((dial_host.trim_matches(['[', ']']), dial_port))
                .await
                .map_err(io_err)?;
            tcp.set_nodelay(true).map_err(io_err)?;
            let sock = socket2::SockRef::from(&tcp);
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(std::time::Duration::from_secs(60))
                .with_interval(std::time::Duration::from_secs(10));
            sock.set_tcp_keepalive(&keepalive).map_err(io_err)?;
            let Some((config, client)) = tls else {
                return Ok(Stream::Tcp(tcp));
            };
            // The announced host, not the mapped one, unless the map says otherwise: the
            // certificate names the server as it announces itself.
            let verified = map.map_or(host.as_str(), |m| m.tls_name(host, &dial_host));
            let name = config
                .server_name()
                .unwrap_or(verified)
                .trim_matches(['[', ']']);
            let server_name = ServerName::try_from(name.to_string())
                .map_err(|e| Error::Config(format!("invalid TLS server name {name:?}: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(client));
            let stream = connector
                .connect(server_name, tcp)
                .await
                .map_err(|e| Error::Tls {
                    addr: text.clone(),
                    reason: format!("{}{via}", tls_reason(&e)),
                })?;
            Ok(Stream::Tls(Box::new(stream)))
        }
    }
}

/// The descriptor of a connection's socket, used only to peek: it tells from outside the driver
/// whether the peer has closed the connection, without a round trip and without a second
/// descriptor.
///
/// Invariant: a `PeekHandle` is only used while the stream it was taken from is open. The
/// connection keeps it in a mutex and clears it (under that mutex) before the stream is dropped,
/// and peeks while holding the mutex.
#[derive(Debug)]
pub(crate) struct PeekHandle(std::os::fd::RawFd);

impl PeekHandle {
    pub(crate) fn of(stream: &Stream) -> PeekHandle {
        use std::os::fd::AsRawFd;
        PeekHandle(match stream {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.get_ref().0.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        })
    }

    /// False when the peer closed or reset the connection. The socket is non-blocking (tokio set
    /// it so), so this never waits.
    #[allow(unsafe_code)]
    pub(crate) fn alive(&self) -> bool {
        // SAFETY: by the type's invariant the descriptor is open for the whole call (the stream
        // that owns it is only dropped after the handle is cleared under the same mutex).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) };
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&fd).peek(&mut byte) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        }
    }
}

/// rustls puts its error inside the io::Error; say what it is.
fn tls_reason(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
