//! Transactions with WATCH, on an exclusive connection.

use std::future::Future;

use redis_cluster::ClusterClient;
use redis_conn::pool::RedisLease;
use redis_conn::{Cmd, Value};

use crate::client::Backend;
use crate::commands::sealed::Sealed;
use crate::{Client, Commands, Error, FromValue, Pipeline, Result, ToArgs};

/// An optimistic transaction: keys watched on an exclusive connection, read there, then written
/// with `MULTI` ... `EXEC`, which the server refuses (`None`) when a watched key changed in
/// between. Made by [`Client::watch`].
///
/// Reads go through [`Commands`] on the transaction itself (the same connection); the writes
/// are a [`Pipeline`] given to [`Transaction::exec`]. Dropping the transaction returns the
/// connection to the pool (with `UNWATCH` first). In a cluster, every key must be in the slot of
/// the watched keys (a `{hash tag}` does it); a command for another slot is refused before it is
/// sent.
///
/// ```no_run
/// # async fn demo(client: redis_client::Client) -> redis_client::Result<()> {
/// use redis_client::prelude::*;
///
/// // Move 10 from one balance to another, unless someone else touched them meanwhile.
/// loop {
///     let tx = client.watch(["{acct}:a", "{acct}:b"]).await?;
///     let a: i64 = tx.get::<Option<i64>>("{acct}:a").await?.unwrap_or(0);
///     let mut writes = client.pipeline();
///     writes.set("{acct}:a", a - 10).incr_by("{acct}:b", 10);
///     if tx.exec::<((), i64)>(&writes).await?.is_some() {
///         break;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Transaction {
    lease: RedisLease,
    /// The slot of the watched keys, in a cluster.
    slot: Option<u16>,
    cluster: bool,
}

impl Transaction {
    pub(crate) async fn watch(client: &Client, keys: impl ToArgs) -> Result<Transaction> {
        let mut watch = Cmd::new("WATCH");
        keys.push_to(&mut watch);
        if watch.len() < 2 {
            return Err(crate::ConfigError::new("WATCH needs at least one key").into());
        }
        let (lease, slot, cluster) = match client.backend() {
            Backend::Standalone(node) => (node.lease().await?, None, false),
            Backend::Sentinel(sentinel) => (sentinel.lease().await?, None, false),
            Backend::Cluster(cluster) => {
                let slot = ClusterClient::slot_of(std::slice::from_ref(&watch))?;
                (cluster.lease(slot).await?, slot, true)
            }
        };
        lease.send(watch).await?;
        Ok(Transaction {
            lease,
            slot,
            cluster,
        })
    }

    /// In a cluster, refuses commands for another slot than the watched keys'.
    fn check_slot(&self, cmds: &[Cmd]) -> Result<()> {
        if !self.cluster {
            return Ok(());
        }
        match (ClusterClient::slot_of(cmds)?, self.slot) {
            (Some(theirs), Some(watched)) if theirs != watched => {
                let name = cmds
                    .iter()
                    .map(|c| String::from_utf8_lossy(c.name()).to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(Error::Cluster(redis_cluster::ClusterError::CrossSlot {
                    command: format!("{name} and the watched keys"),
                }))
            }
            _ => Ok(()),
        }
    }

    /// Runs `writes` as `MULTI` ... `EXEC` on the watched connection: `Some` of the replies
    /// (converted as [`Pipeline::query`] does), or `None` when a watched key changed and nothing
    /// ran. The watch ends either way.
    ///
    /// # Errors
    /// As [`Pipeline::query`]; `EXECABORT` when the server refused a command (nothing ran);
    /// [`Error::Cluster`] for a command outside the watched slot.
    pub async fn exec<T: FromValue>(self, writes: &Pipeline) -> Result<Option<T>> {
        let cmds = writes.commands().to_cmds();
        self.check_slot(&cmds)?;
        match self.lease.send_transaction(&cmds).await? {
            Some(values) => writes.convert(values).map(Some),
            None => Ok(None),
        }
    }

    /// Ends the watch without writing.
    ///
    /// # Errors
    /// The connection's error.
    pub async fn unwatch(self) -> Result<()> {
        self.lease.send(Cmd::new("UNWATCH")).await?;
        Ok(())
    }
}

impl Sealed for Transaction {}

impl Commands for Transaction {
    fn query_cmd(&self, cmd: Cmd) -> impl Future<Output = Result<Value>> + Send {
        let checked = self.check_slot(std::slice::from_ref(&cmd));
        async move {
            checked?;
            self.lease.send(cmd).await.map_err(Error::from)
        }
    }
}
