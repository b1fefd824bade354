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
/// unless [`TlsConfigBuilder::server_name`](crate::TlsConfigBuilder::server_name) names another.
///
/// A cluster client dials every node through its template's map, the seeds included: return
/// addresses that need no mapping unchanged.
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
pub struct AddressMap(Arc<MapFn>);

impl AddressMap {
    /// A map calling `f(announced_host, announced_port)`, which returns the address to dial.
    pub fn new(f: impl Fn(&str, u16) -> (String, u16) + Send + Sync + 'static) -> Self {
        AddressMap(Arc::new(f))
    }

    /// The address to dial for the announced `host:port`.
    pub fn map(&self, host: &str, port: u16) -> (String, u16) {
        (self.0)(host, port)
    }
}

impl fmt::Debug for AddressMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddressMap(set)")
    }
}
