//! The Redis manager for `redis-pool`: pooled connections, created with the full configuration
//! and checked with `PING <nonce>`.

use redis_pool::{Manager, Pool, PoolConfig};

use crate::{Cmd, Connection, ConnectionConfig, Error, Value};

/// Creates and checks Redis connections for a [`redis_pool::Pool`].
///
/// Two kinds of pool are natural:
/// - **exclusive leases** ([`RedisManager::exclusive`]): one caller at a time per connection, for
///   blocking commands and transactions with WATCH. Such a connection does not reconnect (its
///   state could not survive); when it breaks it is dropped and replaced. On return it is sent
///   `UNWATCH`, so a WATCH left by one caller never reaches the next.
/// - **shared connections** ([`RedisManager::shared`]): multiplexed connections handed out for
///   throughput; they reconnect on their own and need no recycling.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use redis_conn::pool::RedisManager;
/// use redis_conn::{Cmd, ConnectionConfig, ServerAddr};
/// use redis_pool::PoolConfig;
///
/// let config = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 6379));
/// let pool = RedisManager::exclusive(config).into_pool(PoolConfig::default().max_size(8));
/// let conn = pool.get().await?;
/// conn.send(Cmd::new("WATCH").arg("balance")).await?;
/// // ... MULTI / EXEC on the same connection, nobody else's commands in between.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisManager {
    config: ConnectionConfig,
}

/// A pool of Redis connections.
pub type RedisPool = Pool<RedisManager>;

/// A connection leased from a [`RedisPool`]; it derefs to [`Connection`] and goes back to the
/// pool when dropped.
pub type RedisLease = redis_pool::Lease<RedisManager>;

impl RedisManager {
    /// A manager of exclusive connections (see the type's docs).
    pub fn exclusive(config: ConnectionConfig) -> RedisManager {
        RedisManager {
            config: config.exclusive(true).reconnect(false),
        }
    }

    /// A manager of shared, multiplexed connections.
    pub fn shared(config: ConnectionConfig) -> RedisManager {
        RedisManager {
            config: config.exclusive(false),
        }
    }

    /// The pool.
    pub fn into_pool(self, config: PoolConfig) -> RedisPool {
        Pool::new(self, config)
    }

    /// The connection configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }
}

impl Manager for RedisManager {
    type Resource = Connection;
    type Error = Error;

    async fn create(&self) -> Result<Connection, Error> {
        Connection::connect(self.config.clone()).await
    }

    async fn check(&self, conn: &mut Connection) -> Result<(), Error> {
        // PING with a nonce: catches a connection out of step as well as a dead one.
        conn.health_check().await.map(|_| ())
    }

    fn needs_recycle(&self, conn: &Connection) -> bool {
        // Only when a caller left a WATCH behind: the common path costs no round trip.
        self.config.exclusive && conn.is_watching()
    }

    async fn recycle(&self, conn: &mut Connection) -> Result<(), Error> {
        match conn.send(Cmd::new("UNWATCH")).await? {
            Value::SimpleString(_) => Ok(()),
            other => Err(Error::Unsupported(format!(
                "UNWATCH answered {other:?} while recycling"
            ))),
        }
    }

    fn is_broken(&self, conn: &Connection) -> bool {
        // For a shared connection, a break is temporary (it reconnects by itself); only a
        // connection closed for good is broken. An exclusive one is broken as soon as its peer
        // has closed the socket, even before its driver has noticed.
        if self.config.exclusive {
            conn.is_broken()
        } else {
            conn.is_closed()
        }
    }
}
