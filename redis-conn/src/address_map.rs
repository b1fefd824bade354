//! Address mapping: dial another address than the one a server announced (NAT, Docker,
//! Kubernetes), while the announced address stays the server's identity.

use std::fmt;
use std::sync::Arc;

/// The function behind an [`AddressMap`].
type MapFn = dyn Fn(&str, u16) -> (String, u16) + Send + Sync;

/// Maps an announced `host:port` to the `host:port` the client can reach.
///
/// Set on a [`ConnectionConfig`](crate::ConnectionConfig) with
/// [`ConnectionConfig::address_map`](crate::ConnectionConfig::address_map), it is called on
/// every dial (reconnects included) of a TCP address; Unix sockets are not mapped. The
/// connection keeps the announced address as its own: events, errors and
/// [`Connection::addr`](crate::Connection::addr) name it (a connect error also names the mapped
/// address it dialed), and TLS verifies the server's certificate against the announced host
/// unless [`TlsConfigBuilder::server_name`](crate::TlsConfigBuilder::server_name) names another,
/// or [`verify_mapped_host`](AddressMap::verify_mapped_host) says the certificates name the
/// mapped hosts (a NAT or ingress whose certificates carry the public names).
///
/// A cluster client dials every node through its template's map, the seeds included: return
/// addresses that need no mapping unchanged. A map that panics fails only the dial that called
/// it, with an [`Error::Connect`](crate::Error::Connect) saying so (a reconnect tries again).
///
/// ```
/// use redis_conn::{AddressMap, ConnectionConfig, ServerAddr};
///
/// // Nodes announce 10.0.0.x:6379; a NAT publishes node x on 203.0.113.7:700x.
/// let map = AddressMap::new(|host, port| match host.strip_prefix("10.0.0.") {
///     Some(x) => ("203.0.113.7".to_string(), 7000 + x.parse::<u16>().unwrap_or(0)),
///     None => (host.to_string(), port),
/// });
/// assert_eq!(map.map("10.0.0.2", 6379), ("203.0.113.7".to_string(), 7002));
/// let config = ConnectionConfig::new(ServerAddr::tcp("10.0.0.2", 6379)).address_map(map);
/// assert!(format!("{config:?}").contains("AddressMap(set)"));
/// ```
#[derive(Clone)]
pub struct AddressMap {
    map: Arc<MapFn>,
    verify_mapped_host: bool,
}

impl AddressMap {
    /// A map calling `f(announced_host, announced_port)`, which returns the address to dial.
    pub fn new(f: impl Fn(&str, u16) -> (String, u16) + Send + Sync + 'static) -> Self {
        AddressMap {
            map: Arc::new(f),
            verify_mapped_host: false,
        }
    }

    /// TLS verifies each server's certificate against the host the map returned instead of the
    /// announced one (an explicit
    /// [`TlsConfigBuilder::server_name`](crate::TlsConfigBuilder::server_name) still wins).
    ///
    /// ```
    /// use redis_conn::AddressMap;
    ///
    /// // Nodes announce 10.0.0.x; each is published as nodeX.redis.example.com, whose
    /// // certificate names that public host.
    /// let map = AddressMap::new(|host, port| match host.strip_prefix("10.0.0.") {
    ///     Some(x) => (format!("node{x}.redis.example.com"), port),
    ///     None => (host.to_string(), port),
    /// })
    /// .verify_mapped_host();
    /// assert_eq!(map.tls_name("10.0.0.3", "node3.redis.example.com"), "node3.redis.example.com");
    /// ```
    #[must_use]
    pub fn verify_mapped_host(mut self) -> Self {
        self.verify_mapped_host = true;
        self
    }

    /// Whether TLS verifies the mapped hosts ([`verify_mapped_host`](AddressMap::verify_mapped_host)).
    pub fn verifies_mapped_host(&self) -> bool {
        self.verify_mapped_host
    }

    /// The address to dial for the announced `host:port`.
    pub fn map(&self, host: &str, port: u16) -> (String, u16) {
        (self.map)(host, port)
    }

    /// [`map`](AddressMap::map) for a dial: a map that panics fails that one dial (its message
    /// is the error), instead of unwinding through the caller or a connection's driver task
    /// (which would end the connection for good, or leave a cluster's dial unfinished).
    pub(crate) fn map_for_dial(&self, host: &str, port: u16) -> Result<(String, u16), String> {
        let call = std::panic::AssertUnwindSafe(|| (self.map)(host, port));
        std::panic::catch_unwind(call).map_err(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic".to_string());
            format!("the address map panicked: {message}")
        })
    }

    /// The host TLS verifies for a server announced as `announced` and dialed at `mapped`.
    pub fn tls_name<'a>(&self, announced: &'a str, mapped: &'a str) -> &'a str {
        if self.verify_mapped_host {
            mapped
        } else {
            announced
        }
    }
}

impl fmt::Debug for AddressMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.verify_mapped_host {
            f.write_str("AddressMap(set, TLS verifies the mapped host)")
        } else {
            f.write_str("AddressMap(set)")
        }
    }
}
