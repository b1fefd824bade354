//! `Node`: what the client keeps for one server: shared multiplexed connections for ordinary
//! commands, and a pool of exclusive connections for the commands that must not share one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures::future::Either;
use redis_pool::{PoolConfig, PoolError, PoolEvent};

use crate::events::{Event, EventSink};
use crate::pool::{RedisLease, RedisManager, RedisPool};
use crate::table::Blocking;
use crate::{Batch, Cmd, Connection, ConnectionConfig, Error, Stats, Value};

/// Settings of a [`Node`]: the connection settings, the pool of exclusive connections, and how
/// many shared connections to keep.
///
/// ```
/// use std::time::Duration;
/// use redis_conn::{ConnectionConfig, NodeConfig, ServerAddr};
/// use redis_pool::PoolConfig;
///
/// let node = NodeConfig::new(ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 6379)))
///     .pool(PoolConfig::default().max_size(4).acquire_timeout(Duration::from_millis(200)))
///     .shared_connections(2);
/// assert_eq!(node.shared_count(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct NodeConfig {
    connection: ConnectionConfig,
    pool: PoolConfig,
    shared: usize,
}

impl NodeConfig {
    /// One shared connection, and a pool of up to 10 exclusive connections opened on demand
    /// (`redis-pool`'s defaults: acquire timeout 1 s).
    pub fn new(connection: ConnectionConfig) -> Self {
        NodeConfig {
            connection,
            pool: PoolConfig::default(),
            shared: 1,
        }
    }

    /// The pool of exclusive connections (blocking commands, transactions with WATCH).
    #[must_use]
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// How many multiplexed connections ordinary commands are spread over, in turn (default 1,
    /// which is the fastest for most loads: one connection pipelines every caller's commands).
    #[must_use]
    pub fn shared_connections(mut self, n: usize) -> Self {
        self.shared = n.max(1);
        self
    }

    /// The connection settings.
    pub fn connection(&self) -> &ConnectionConfig {
        &self.connection
    }

    /// The pool settings.
    pub fn pool_config(&self) -> &PoolConfig {
        &self.pool
    }

    /// The number of shared connections.
    pub fn shared_count(&self) -> usize {
        self.shared
    }

    /// The same settings with the connection settings changed by `f` (another address for a
    /// cluster node, `READONLY` for a replica).
    #[must_use]
    pub fn map_connection(mut self, f: impl FnOnce(ConnectionConfig) -> ConnectionConfig) -> Self {
        self.connection = f(self.connection);
        self
    }
}

impl From<ConnectionConfig> for NodeConfig {
    fn from(connection: ConnectionConfig) -> Self {
        NodeConfig::new(connection)
    }
}

#[derive(Debug)]
struct Inner {
    addr: String,
    config: NodeConfig,
    shared: Vec<Connection>,
    next: AtomicUsize,
    exclusive: OnceLock<RedisPool>,
    events: EventSink,
}

/// One server as the client uses it: cheap to clone, shared by any number of tasks.
///
/// Ordinary commands and pipelines go over the shared multiplexed connection(s). Blocking
/// commands (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD BLOCK, WAIT...) go to an exclusive connection
/// from the node's pool, so that a long wait never holds up the commands of other callers (a
/// server answers one connection's commands in order: a BLPOP on a shared connection would stall
/// everything queued behind it). [`Node::lease`] hands out an exclusive connection for WATCH and
/// MULTI/EXEC.
///
/// # Cancel safety
/// As [`Connection`]'s. A blocking command whose future is dropped while it waits closes its
/// exclusive connection (the server then ends the wait), so the connection never goes back to
/// the pool with a reply still to come.
///
/// ```no_run
/// # async fn demo() -> Result<(), redis_conn::Error> {
/// use redis_conn::{Cmd, ConnectionConfig, Node, ServerAddr};
///
/// let node = Node::connect(ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 6379)).into()).await?;
/// node.send(Cmd::new("LPUSH").arg("jobs").arg("j1")).await?;
/// // Waits on a pooled connection of its own; other callers' commands are not held up.
/// let job = node.send(Cmd::new("BLPOP").arg("jobs").arg_int(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl Node {
    /// Opens the shared connection(s). Exclusive connections are opened when first needed.
    ///
    /// # Errors
    /// As [`Connection::connect`].
    pub async fn connect(config: NodeConfig) -> Result<Node, Error> {
        let addr = config.connection.addr().to_string();
        let mut shared = Vec::with_capacity(config.shared);
        for _ in 0..config.shared {
            match Connection::connect(config.connection.clone()).await {
                Ok(conn) => shared.push(conn),
                Err(e) => {
                    for conn in &shared {
                        conn.close();
                    }
                    return Err(e);
                }
            }
        }
        let events = EventSink::new(&config.connection.callbacks);
        Ok(Node {
            inner: Arc::new(Inner {
                addr,
                config,
                shared,
                next: AtomicUsize::new(0),
                exclusive: OnceLock::new(),
                events,
            }),
        })
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The settings.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// A shared connection: the next one in turn that is up (or the next one, when none is).
    pub fn connection(&self) -> &Connection {
        let shared = &self.inner.shared;
        if shared.len() == 1 {
            return &shared[0];
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        (0..shared.len())
            .map(|i| &shared[(start + i) % shared.len()])
            .find(|c| c.is_connected())
            .unwrap_or(&shared[start % shared.len()])
    }

    /// Sends one command: blocking ones on an exclusive connection, the others on a shared one;
    /// `WAIT` and `WAITAOF` on the shared connections, since they count the replicas that have
    /// the writes of the connection they run on (see [`CommandInfo::counts_this_connections_writes`](crate::table::CommandInfo::counts_this_connections_writes)).
    ///
    /// # Errors
    /// As [`Connection::send`]; [`Error::PoolTimeout`] when a blocking command finds no free
    /// exclusive connection in time.
    pub fn send(&self, cmd: Cmd) -> impl Future<Output = Result<Value, Error>> + Send + '_ {
        // The shared connection's own future (nothing runs before it is polled): ordinary
        // calls carry no layer of this one's.
        if cmd.blocking() == Blocking::No {
            return Either::Left(self.connection().send(cmd));
        }
        // Boxed: the pool's future is large, and ordinary calls should not carry its size.
        let rare: Pin<Box<dyn Future<Output = Result<Value, Error>> + Send + '_>> =
            if cmd.info().counts_this_connections_writes() {
                Box::pin(self.wait_for_replicas(cmd))
            } else {
                Box::pin(async move {
                    let mut guarded = Guarded::new(self.lease().await?);
                    let result = guarded.lease.send(cmd).await;
                    guarded.finish(&result);
                    result
                })
            };
        Either::Right(rare)
    }

    /// `WAIT` / `WAITAOF` on the shared connections, which carried the caller's writes (on a
    /// connection of their own they would count that connection's writes: none). With several
    /// shared connections it runs on each and answers the fewest acknowledgements: a count that
    /// holds for the caller's writes whichever connection carried them. While it waits, the
    /// commands behind it on the same connection wait too (the server answers in order); a
    /// `WAIT` without a timeout, which could hold them forever, is refused here (run it on a
    /// [`Node::lease`] after the writes it is about).
    async fn wait_for_replicas(&self, cmd: Cmd) -> Result<Value, Error> {
        let wants_replicas = cmd
            .arg_at(1)
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| a.parse::<i64>().ok())
            .is_none_or(|n| n > 0);
        if cmd.blocking() == Blocking::Forever && wants_replicas {
            return Err(Error::Unsupported(format!(
                "{} without a timeout would hold up every command behind it on the shared \
                 connection; give it a timeout, or run it on a lease after the writes",
                String::from_utf8_lossy(cmd.name()).to_ascii_uppercase()
            )));
        }
        let shared = &self.inner.shared;
        if shared.len() == 1 {
            return shared[0].send(cmd).await;
        }
        let replies = futures::future::join_all(shared.iter().map(|c| c.send(cmd.clone()))).await;
        let mut fewest: Option<Value> = None;
        for reply in replies {
            let reply = reply?;
            fewest = Some(match fewest {
                Some(so_far) => fewer_acknowledgements(so_far, reply),
                None => reply,
            });
        }
        Ok(fewest.unwrap_or(Value::Null))
    }

    /// Sends a pipeline (one write, replies in order, error replies in place); on an exclusive
    /// connection when it holds a blocking command.
    ///
    /// # Errors
    /// As [`Node::send`].
    pub async fn send_pipeline(&self, cmds: &[Cmd]) -> Result<Vec<Value>, Error> {
        self.send_batch(&Batch::from(cmds)).await
    }

    /// Sends a [`Batch`] as a pipeline, as [`Node::send_pipeline`] does.
    ///
    /// # Errors
    /// As [`Node::send`].
    pub async fn send_batch(&self, batch: &Batch) -> Result<Vec<Value>, Error> {
        if batch.ordinary_effect().is_some() || batch.iter().all(|c| c.blocking() == Blocking::No) {
            return self.connection().send_batch(batch).await;
        }
        Box::pin(async move {
            let mut guarded = Guarded::new(self.lease().await?);
            let result = guarded.lease.send_batch(batch).await;
            guarded.finish(&result);
            result
        })
        .await
    }

    /// Runs `MULTI`, `cmds`, `EXEC` as one unit on a shared connection (see
    /// [`Connection::send_transaction`]); `None` never happens here, since nothing is watched on a
    /// shared connection. For WATCH, take a [`Node::lease`].
    ///
    /// # Errors
    /// As [`Connection::send_transaction`].
    pub async fn send_transaction(&self, cmds: &[Cmd]) -> Result<Option<Vec<Value>>, Error> {
        self.connection().send_transaction(cmds).await
    }

    /// An exclusive connection from the node's pool, for WATCH ... MULTI ... EXEC and other
    /// commands that change a connection's state. It goes back to the pool when dropped (with
    /// `UNWATCH` first if a WATCH was left).
    ///
    /// # Errors
    /// [`Error::PoolTimeout`] when none is free within the pool's acquire timeout; the
    /// connection's error when a new one cannot be opened; [`Error::Closed`] after
    /// [`Node::close`].
    pub async fn lease(&self) -> Result<RedisLease, Error> {
        let pool = self.pool();
        pool.get().await.map_err(|e| match e {
            PoolError::Timeout { phase, timeout } => Error::PoolTimeout {
                addr: self.inner.addr.clone(),
                phase,
                timeout,
            },
            PoolError::Backend(e) => e,
            _ => Error::Closed {
                reason: format!("the pool of {} was closed", self.inner.addr),
            },
        })
    }

    /// The pool of exclusive connections, made on first use.
    fn pool(&self) -> &RedisPool {
        self.inner.exclusive.get_or_init(|| {
            let manager = RedisManager::exclusive(self.inner.config.connection.clone());
            let pool = manager.into_pool(self.inner.config.pool.clone());
            // Exhaustion is worth an event: callers are waiting for blocking connections.
            let mut events = pool.events();
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(PoolEvent::Exhausted { waiting }) => {
                            let Some(inner) = weak.upgrade() else { return };
                            inner.events.emit(Event::PoolExhausted {
                                addr: inner.addr.clone(),
                                waiting,
                            });
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            pool
        })
    }

    /// The pool's state (size, idle, in use, waiting), once it exists.
    pub fn pool_status(&self) -> Option<redis_pool::Status> {
        self.inner.exclusive.get().map(RedisPool::status)
    }

    /// Whether a shared connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.shared.iter().any(Connection::is_connected)
    }

    /// Whether every shared connection is broken (see [`Connection::is_broken`]).
    pub fn is_broken(&self) -> bool {
        self.inner.shared.iter().all(Connection::is_broken)
    }

    /// Whether the node was closed, or every shared connection gave up.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.iter().all(Connection::is_closed)
    }

    /// Closes the shared connections and the pool, for every clone.
    pub fn close(&self) {
        for conn in &self.inner.shared {
            conn.close();
        }
        if let Some(pool) = self.inner.exclusive.get() {
            pool.close();
        }
    }

    /// The shared connections' counters, added up (`connected`: any of them).
    pub fn stats(&self) -> Stats {
        self.inner
            .shared
            .iter()
            .map(Connection::stats)
            .fold(Stats::default(), |a, b| a.merged(&b))
    }
}

/// An exclusive lease that is closed rather than returned when its call did not finish cleanly
/// (dropped mid-wait, timed out, broke): a reply may still be on its way, and the next user must
/// never see it.
struct Guarded {
    lease: RedisLease,
    clean: bool,
}

impl Guarded {
    fn new(lease: RedisLease) -> Self {
        Guarded {
            lease,
            clean: false,
        }
    }

    fn finish<T>(&mut self, result: &Result<T, Error>) {
        self.clean = matches!(result, Ok(_) | Err(Error::Server(_)));
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.clean {
            self.lease.close();
            self.lease.mark_broken();
        }
    }
}
/// Of two answers of `WAIT` (a count) or `WAITAOF` (two counts), the one that promises less:
/// what holds for writes made on either connection, or on either node of a cluster.
///
/// ```
/// use redis_conn::{node::fewer_acknowledgements, Value};
///
/// assert_eq!(fewer_acknowledgements(Value::Integer(2), Value::Integer(1)), Value::Integer(1));
/// let waitaof = |local, replicas| Value::Array(vec![Value::Integer(local), Value::Integer(replicas)]);
/// assert_eq!(fewer_acknowledgements(waitaof(1, 0), waitaof(0, 2)), waitaof(0, 0));
/// ```
pub fn fewer_acknowledgements(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => Value::Integer(x.min(y)),
        (Value::Array(xs), Value::Array(ys)) if xs.len() == ys.len() => Value::Array(
            xs.into_iter()
                .zip(ys)
                .map(|(x, y)| fewer_acknowledgements(x, y))
                .collect(),
        ),
        // An error reply, or a shape that is not a count: the first one that is not a count.
        (a @ (Value::Integer(_) | Value::Array(_)), b) => match b {
            Value::Integer(_) | Value::Array(_) => a,
            other => other,
        },
        (a, _) => a,
    }
}
