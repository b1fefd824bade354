//! The [`SentinelClient`] handle: commands go to the master the follower publishes (read-only
//! ones to a replica when asked), wait while a promotion is under way, and wake the follower when
//! an error says the master may have changed.

use std::sync::Arc;

use redis_conn::pool::RedisLease;
use redis_conn::{Batch, Cmd, Error, Node, ReplicaSet, ServerAddr, Stats, Subscriber, Value};
use tokio::sync::broadcast;

use crate::discovery::discover;
use crate::follower::{self, Following, View};
use crate::replicas::fetch_replicas;
use crate::{SentinelConfig, SentinelError};

/// Counters of a sentinel client, from [`SentinelClient::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelStats {
    /// Failovers followed.
    pub failovers: u64,
    /// The shared connections to the master and the replicas, added up.
    pub connections: Stats,
}

/// Something the client did about the topology.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SentinelEvent {
    /// The client now writes to another master.
    Failover {
        /// The master it left.
        old: String,
        /// The master it now uses.
        new: String,
    },
}

#[derive(Debug)]
struct Inner {
    config: Arc<SentinelConfig>,
    following: Following,
}

/// A client of a Sentinel-managed deployment: cheap to clone, follows failovers by itself.
///
/// ```no_run
/// # async fn demo() -> Result<(), redis_sentinel::SentinelError> {
/// use redis_conn::{Cmd, ConnectionConfig, ServerAddr};
/// use redis_sentinel::{SentinelClient, SentinelConfig};
///
/// let sentinels = vec![ServerAddr::tcp("127.0.0.1", 26379), ServerAddr::tcp("127.0.0.1", 26380)];
/// let template = ConnectionConfig::new(ServerAddr::tcp("127.0.0.1", 6379));
/// let client = SentinelClient::connect(SentinelConfig::new(sentinels, "mymaster", template)).await?;
/// client.send(Cmd::new("SET").arg("k").arg("v")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SentinelClient {
    inner: Arc<Inner>,
}

impl SentinelClient {
    /// Discovers the master and starts following failovers.
    ///
    /// # Errors
    /// [`SentinelError::NoMaster`] when no sentinel leads to a reachable master.
    pub async fn connect(config: SentinelConfig) -> Result<SentinelClient, SentinelError> {
        let config = Arc::new(config);
        let mut sentinels = config.sentinels.clone();
        let (master, node) = discover(&config, &mut sentinels).await?;
        let mut replicas = ReplicaSet::default();
        if config.replica_reads.is_on() {
            let found = fetch_replicas(&config, &sentinels, &replicas).await;
            replicas = found.unwrap_or_default();
        }
        let view = View {
            master,
            node,
            promoting: false,
            failovers: 0,
            sentinels,
            replicas: Arc::new(replicas),
        };
        let following = follower::start(Arc::clone(&config), view);
        Ok(SentinelClient {
            inner: Arc::new(Inner { config, following }),
        })
    }

    /// What the follower publishes.
    fn view(&self) -> tokio::sync::watch::Ref<'_, View> {
        self.inner.following.view.borrow()
    }

    /// The master in use.
    pub fn master(&self) -> ServerAddr {
        self.view().master.clone()
    }

    /// The sentinels known right now, in the order they are asked (learned ones included).
    pub fn sentinels(&self) -> Vec<ServerAddr> {
        self.view().sentinels.clone()
    }

    /// Failovers followed so far.
    pub fn failovers(&self) -> u64 {
        self.view().failovers
    }

    /// A stream of failover events.
    pub fn events(&self) -> broadcast::Receiver<SentinelEvent> {
        self.inner.following.events.subscribe()
    }

    /// Waits while a promotion is under way (at most a response timeout), so that commands go
    /// to the new master rather than to one about to be demoted.
    async fn pass_gate(&self) {
        if !self.view().promoting {
            return;
        }
        let mut view = self.inner.following.view.clone();
        let wait = self.inner.config.node.connection().get_response_timeout();
        let _ = tokio::time::timeout(wait, view.wait_for(|v| !v.promoting)).await;
    }

    /// Rediscovers at once when an error says the master may have changed: `READONLY` (the
    /// master was demoted), or a connection that failed.
    fn note<T>(&self, result: &Result<T, Error>) {
        if let Err(e) = result {
            let stale = match e {
                Error::Server(s) => s.is_readonly(),
                other => other.is_connection_error(),
            };
            if stale {
                self.inner.following.rediscover.notify_one();
            }
        }
    }

    /// Sends a command to the master (read-only ones to a replica when reads from replicas are
    /// on). `READONLY` or a lost connection make the client rediscover at once; the error is
    /// returned as it is (redis-conn's honest `Sent` information included).
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send(&self, cmd: Cmd) -> Result<Value, SentinelError> {
        if self.inner.config.replica_reads.wants(&cmd) {
            if let Some(value) = self.read_from_replica(&cmd).await {
                return Ok(value);
            }
        }
        let cmd = &cmd;
        self.on_master(|node| async move { node.send(cmd.clone()).await })
            .await
    }

    /// Runs `call` on the master's node, after any promotion under way. A call that met the
    /// old master's connection closing under it was not sent: it runs again on the new master.
    /// Errors that say the master may have changed wake the follower.
    async fn on_master<T, F, Fut>(&self, call: F) -> Result<T, SentinelError>
    where
        F: Fn(Node) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        self.pass_gate().await;
        let mut attempts = 0;
        loop {
            let (node, failovers) = {
                let view = self.view();
                (view.node.clone(), view.failovers)
            };
            let result = call(node).await;
            attempts += 1;
            let moved_on = self.view().failovers != failovers;
            if matches!(result, Err(Error::Closed { .. })) && moved_on && attempts < 3 {
                continue;
            }
            self.note(&result);
            return Ok(result?);
        }
    }

    /// Sends a pipeline to the master (one write, replies in order, error replies in place).
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send_pipeline(&self, cmds: &[Cmd]) -> Result<Vec<Value>, SentinelError> {
        self.send_batch(&Batch::from(cmds)).await
    }

    /// Sends a [`Batch`] to the master as a pipeline, as [`SentinelClient::send_pipeline`] does.
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send_batch(&self, batch: &Batch) -> Result<Vec<Value>, SentinelError> {
        self.on_master(|node| async move { node.send_batch(batch).await })
            .await
    }

    /// Runs `MULTI`, `cmds`, `EXEC` on the master as one unit (see
    /// `redis_conn::Connection::send_transaction`).
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send_transaction(
        &self,
        cmds: &[Cmd],
    ) -> Result<Option<Vec<Value>>, SentinelError> {
        self.on_master(|node| async move { node.send_transaction(cmds).await })
            .await
    }

    /// An exclusive connection to the master from its pool, for WATCH ... MULTI ... EXEC. After
    /// a failover a lease still held points at the old master: its commands fail with
    /// `READONLY` or a closed connection, never silently succeed there.
    ///
    /// # Errors
    /// [`SentinelError::Node`] (`PoolTimeout` when the pool is exhausted).
    pub async fn lease(&self) -> Result<RedisLease, SentinelError> {
        self.on_master(|node| async move { node.lease().await })
            .await
    }

    /// A pub/sub connection to the master that moves to the new master after every failover
    /// (publishers write to the master, so that is where messages are).
    ///
    /// # Errors
    /// [`SentinelError::Node`] when the master cannot be reached.
    pub async fn subscriber(&self) -> Result<Subscriber, SentinelError> {
        let weak = Arc::downgrade(&self.inner);
        let fallback = self.master();
        let locate = Arc::new(move || match weak.upgrade() {
            Some(inner) => inner.following.view.borrow().master.clone(),
            None => fallback.clone(),
        });
        let template = self.inner.config.node.connection().clone();
        let sub = Subscriber::connect_located(template, Some(locate)).await?;
        let mut subs = self
            .inner
            .following
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| !s.is_closed());
        subs.push(sub.handle());
        Ok(sub)
    }

    /// The client's counters.
    pub fn stats(&self) -> SentinelStats {
        let view = self.view();
        let mut connections = view.node.stats();
        for node in view.replicas.connections() {
            connections = connections.merged(&node.stats());
        }
        SentinelStats {
            failovers: view.failovers,
            connections,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SentinelConfig {
        &self.inner.config
    }

    /// Closes the connections to the master and the replicas, the subscribers, and the watches
    /// on the sentinels.
    pub fn close(&self) {
        let following = &self.inner.following;
        following.shutdown.send_replace(true);
        {
            let view = self.view();
            view.node.close();
            for node in view.replicas.connections() {
                node.close();
            }
        }
        let mut subs = following
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for sub in subs.drain(..) {
            sub.close();
        }
    }

    /// A read on a healthy replica; `None` (read from the master) when there is none or it failed.
    async fn read_from_replica(&self, cmd: &Cmd) -> Option<Value> {
        let replicas = Arc::clone(&self.view().replicas);
        let node = replicas.pick(self.inner.config.replica_reads.selector())?;
        match node.send(cmd.clone()).await {
            Ok(v) => Some(v),
            Err(_) => {
                self.inner.following.rediscover.notify_one();
                None
            }
        }
    }
}
