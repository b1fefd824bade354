//! `Client`: one type for standalone, cluster and sentinel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::future::Either;
use futures::TryFutureExt;
use redis_cluster::ClusterClient;
use redis_conn::{Batch, Cmd, Node, Value};
use redis_sentinel::SentinelClient;
use tokio::sync::broadcast;

use crate::commands::sealed::Sealed;
use crate::events::{Event, EventHub};
use crate::{
    Commands, Config, Error, FromValue, Mode, Pipeline, PubSub, Result, ToArgs, Transaction,
};

/// What the client talks to.
#[derive(Debug)]
pub(crate) enum Backend {
    Standalone(Node),
    Cluster(ClusterClient),
    Sentinel(SentinelClient),
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    config: Config,
    hub: Arc<EventHub>,
}

/// A Redis client: cheap to clone, shared by any number of tasks, the same code for a standalone
/// server, a cluster and a sentinel deployment.
///
/// Typed commands come from the [`Commands`] trait (in the [prelude](crate::prelude)); anything
/// else goes through [`Client::cmd`]. See the [crate docs](crate) for modes, retries and events.
///
/// ```no_run
/// # async fn demo() -> redis_client::Result<()> {
/// use redis_client::prelude::*;
///
/// let client = Client::open("redis://127.0.0.1:6379").await?;
/// client.set("greeting", "hello").await?;
/// let greeting: Option<String> = client.get("greeting").await?;
/// let encoding: String = client.cmd("OBJECT").arg("ENCODING").arg("greeting").query().await?;
/// # let _ = (greeting, encoding);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Counters of a client, added up over its connections, from [`Client::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls made on the shared connections (a pipeline counts once per node).
    pub commands: u64,
    /// Calls that ended in an error (server error replies included).
    pub errors: u64,
    /// Resends after a broken connection or a transient server error.
    pub retries: u64,
    /// Successful reconnects.
    pub reconnects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// `MOVED` redirects followed (cluster).
    pub moved: u64,
    /// `ASK` redirects followed (cluster).
    pub ask: u64,
    /// Topology refreshes (cluster; the initial one included).
    pub topology_refreshes: u64,
    /// Failovers followed (sentinel).
    pub failovers: u64,
    /// Write calls made on the sockets: `commands / writes` is how well concurrent callers'
    /// commands were batched together.
    pub writes: u64,
    /// Read calls that returned data.
    pub reads: u64,
}

impl Client {
    /// Connects as the configuration says: to the server, to the cluster (learning its
    /// topology), or to the master the sentinels name. The first connection is not retried, so
    /// a wrong address, wrong credentials or a TLS problem show at once.
    ///
    /// # Errors
    /// [`Error::Config`] for a configuration that does not fit its mode;
    /// the connection's, the cluster's or the sentinels' error otherwise.
    pub async fn connect(config: Config) -> Result<Client> {
        config.validate()?;
        let hub = Arc::new(EventHub::new(&config.callbacks, config.log_events));
        let backend = match config.mode {
            Mode::Standalone => {
                let node = config.node_config(config.nodes[0].clone(), &hub);
                Backend::Standalone(Node::connect(node).await?)
            }
            Mode::Cluster => {
                let cluster = ClusterClient::connect(config.cluster_config(&hub)?).await?;
                forward(cluster.events(), Arc::downgrade(&hub), Event::Cluster);
                Backend::Cluster(cluster)
            }
            Mode::Sentinel => {
                let sentinel = SentinelClient::connect(config.sentinel_config(&hub)?).await?;
                forward(sentinel.events(), Arc::downgrade(&hub), Event::Sentinel);
                Backend::Sentinel(sentinel)
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                backend,
                config,
                hub,
            }),
        })
    }

    /// Connects from a URL (see the [crate docs](crate#urls)).
    ///
    /// # Errors
    /// As [`Config::from_url`] and [`Client::connect`].
    pub async fn open(url: &str) -> Result<Client> {
        Client::connect(Config::from_url(url)?).await
    }

    /// Connects with a profile (see the [crate docs](crate#profile-files)).
    ///
    /// # Errors
    /// As [`Config::from_profile`] and [`Client::connect`].
    pub async fn from_profile(name: Option<&str>) -> Result<Client> {
        Client::connect(Config::from_profile(name)?).await
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.inner.config.mode
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The cluster client underneath, in cluster mode (slot map, topology events).
    pub fn cluster(&self) -> Option<&ClusterClient> {
        match &self.inner.backend {
            Backend::Cluster(c) => Some(c),
            _ => None,
        }
    }

    /// The sentinel client underneath, in sentinel mode (the master in use, failovers).
    pub fn sentinel(&self) -> Option<&SentinelClient> {
        match &self.inner.backend {
            Backend::Sentinel(s) => Some(s),
            _ => None,
        }
    }

    /// Sends one command and returns its reply. Routing, redirects, retries and reconnects are
    /// the lower layers' (see the crate docs).
    ///
    /// # Errors
    /// [`Error::Server`] for an error reply; the typed connection, cluster
    /// or sentinel error otherwise.
    pub fn send(&self, cmd: Cmd) -> impl Future<Output = Result<Value>> + Send + '_ {
        // A standalone call's future is the connection's own (nothing runs before it is
        // polled). The cluster's and the sentinel's are large (redirects, splits, failovers):
        // boxed, they do not make every standalone call carry their size.
        type Boxed<'a> = Pin<Box<dyn Future<Output = Result<Value>> + Send + 'a>>;
        match &self.inner.backend {
            Backend::Standalone(node) => Either::Left(node.send(cmd).map_err(Error::from)),
            Backend::Cluster(cluster) => {
                let boxed: Boxed<'_> = Box::pin(async move { Ok(cluster.send(cmd).await?) });
                Either::Right(boxed)
            }
            Backend::Sentinel(sentinel) => {
                let boxed: Boxed<'_> = Box::pin(async move { Ok(sentinel.send(cmd).await?) });
                Either::Right(boxed)
            }
        }
    }

    /// Sends commands as a pipeline (one write per node, replies in order, error replies in
    /// their place as [`Value::Error`]). [`Client::pipeline`] is the typed way.
    ///
    /// # Errors
    /// As [`Client::send`], for the pipeline as a whole.
    pub async fn send_pipeline(&self, cmds: &[Cmd]) -> Result<Vec<Value>> {
        self.send_batch(&Batch::from(cmds)).await
    }

    /// Sends a [`Batch`] as a pipeline, as [`Client::send_pipeline`] does; what
    /// [`Client::pipeline`] sends.
    ///
    /// # Errors
    /// As [`Client::send_pipeline`].
    pub async fn send_batch(&self, batch: &Batch) -> Result<Vec<Value>> {
        Ok(match &self.inner.backend {
            Backend::Standalone(node) => node.send_batch(batch).await?,
            Backend::Cluster(cluster) => Box::pin(cluster.send_batch(batch)).await?,
            Backend::Sentinel(sentinel) => Box::pin(sentinel.send_batch(batch)).await?,
        })
    }

    /// Runs `cmds` as one `MULTI` ... `EXEC` (in a cluster, their keys must share one slot).
    ///
    /// # Errors
    /// As [`Client::send`]; `EXECABORT` when the server refused a command.
    pub async fn send_transaction(&self, cmds: &[Cmd]) -> Result<Option<Vec<Value>>> {
        Ok(match &self.inner.backend {
            Backend::Standalone(node) => node.send_transaction(cmds).await?,
            Backend::Cluster(cluster) => Box::pin(cluster.send_transaction(cmds)).await?,
            Backend::Sentinel(sentinel) => Box::pin(sentinel.send_transaction(cmds)).await?,
        })
    }

    /// A command by name, for everything the typed commands do not cover.
    ///
    /// ```no_run
    /// # async fn demo(client: redis_client::Client) -> redis_client::Result<()> {
    /// let freq: i64 = client.cmd("OBJECT").arg("FREQ").arg("k").query().await?;
    /// # let _ = freq;
    /// # Ok(()) }
    /// ```
    pub fn cmd(&self, name: &str) -> CmdBuilder<'_> {
        CmdBuilder {
            client: self,
            cmd: Cmd::new(name),
        }
    }

    /// A pipeline: commands queued, then sent together (see [`Pipeline`]).
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.clone())
    }

    /// Watches `keys` on an exclusive connection and returns the [`Transaction`] that reads
    /// them and commits with `MULTI` ... `EXEC` (in a cluster the keys must share one slot).
    ///
    /// # Errors
    /// As [`Client::send`]; [`Error::Cluster`] for keys in several slots.
    pub async fn watch(&self, keys: impl ToArgs) -> Result<Transaction> {
        Transaction::watch(self, keys).await
    }

    /// A pub/sub connection of its own, which subscribes again after reconnects and failovers
    /// (see [`PubSub`]).
    ///
    /// # Errors
    /// The connection's error.
    pub async fn subscriber(&self) -> Result<PubSub> {
        PubSub::connect(self).await
    }

    /// A stream of the client's events (see [`Event`]).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.hub.subscribe()
    }

    pub(crate) fn hub(&self) -> &Arc<EventHub> {
        &self.inner.hub
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        let (conn, moved, ask, refreshes, failovers) = match &self.inner.backend {
            Backend::Standalone(node) => (node.stats(), 0, 0, 0, 0),
            Backend::Cluster(c) => {
                let s = c.stats();
                (s.connections, s.moved, s.ask, s.refreshes, 0)
            }
            Backend::Sentinel(c) => {
                let s = c.stats();
                (s.connections, 0, 0, 0, s.failovers)
            }
        };
        ClientStats {
            commands: conn.requests,
            errors: conn.errors,
            retries: conn.retries,
            reconnects: conn.reconnects,
            connect_failures: conn.connect_failures,
            moved,
            ask,
            topology_refreshes: refreshes,
            failovers,
            writes: conn.writes,
            reads: conn.reads,
        }
    }

    /// Closes every connection (for every clone). Calls made afterwards fail.
    pub fn close(&self) {
        match &self.inner.backend {
            Backend::Standalone(node) => node.close(),
            Backend::Cluster(c) => c.close(),
            Backend::Sentinel(s) => s.close(),
        }
    }
}

impl Sealed for Client {}

impl Commands for Client {
    fn query_cmd(&self, cmd: Cmd) -> impl Future<Output = Result<Value>> + Send {
        self.send(cmd)
    }
}

/// Forwards a lower layer's event stream into the client's events until either side goes.
fn forward<E: Clone + Send + 'static>(
    mut rx: broadcast::Receiver<E>,
    hub: std::sync::Weak<EventHub>,
    wrap: fn(E) -> Event,
) {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(event) => match hub.upgrade() {
                    Some(hub) => hub.emit(wrap(event)),
                    None => return,
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// A command built by name, from [`Client::cmd`].
#[derive(Debug)]
pub struct CmdBuilder<'a> {
    client: &'a Client,
    cmd: Cmd,
}

impl CmdBuilder<'_> {
    /// Appends arguments.
    #[must_use]
    pub fn arg(mut self, value: impl ToArgs) -> Self {
        value.push_to(&mut self.cmd);
        self
    }

    /// Declares the command safe to resend even when it may have run (see the crate docs).
    #[must_use]
    pub fn idempotent(mut self) -> Self {
        self.cmd = self.cmd.idempotent();
        self
    }

    /// The command built so far.
    pub fn as_cmd(&self) -> &Cmd {
        &self.cmd
    }

    /// Sends it and converts the reply.
    ///
    /// # Errors
    /// As [`Client::send`]; a [`TypeError`](crate::TypeError) when the reply does not convert.
    pub async fn query<T: FromValue>(self) -> Result<T> {
        T::from_value(self.client.send(self.cmd).await?)
    }
}
