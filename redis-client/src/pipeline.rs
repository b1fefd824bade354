//! Pipelines: commands queued, sent together, replies converted together.

use std::fmt;

use redis_conn::{Batch, Cmd, ServerError, Value};

use crate::{Client, FromValue, Result, ToArgs};

/// Commands sent together: one write per node, replies in order.
///
/// Every typed command of [`Commands`](crate::Commands) has a method here that queues it;
/// [`Pipeline::cmd`] and [`Pipeline::arg`] queue any other. [`Pipeline::query`] converts the
/// replies into one value, usually a tuple with one element per command (ignored commands
/// left out). In a cluster the commands are split per node and sent to every node at once, and
/// the replies come back in the order the commands were queued.
///
/// An error reply stays in its place: typed as `Result<T, ServerError>` it is a value; typed
/// as `T` it fails the conversion with that error. [`Pipeline::atomic`] wraps the commands in
/// `MULTI` ... `EXEC`.
///
/// The commands are encoded as they are queued, back to back into one buffer (a
/// [`Batch`]): the typed commands and [`Pipeline::arg`] write their arguments straight into
/// it, so queueing costs no allocation of its own, and sending is one copy of that buffer.
///
/// ```no_run
/// # async fn demo(client: redis_client::Client) -> redis_client::Result<()> {
/// use redis_client::ServerError;
///
/// let (old, n): (Option<String>, i64) = client
///     .pipeline()
///     .set("k", "v").ignore()
///     .getdel("k")
///     .incr("n")
///     .query()
///     .await?;
///
/// // An error reply in its place; the other commands still ran.
/// let (ok, wrong): ((), Result<i64, ServerError>) = client
///     .pipeline()
///     .set("text", "abc")
///     .incr("text")
///     .query()
///     .await?;
/// # let _ = (old, n, ok, wrong);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pipeline {
    client: Client,
    batch: Batch,
    ignored: Vec<bool>,
    atomic: bool,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The batch's `Debug` redacts credentials.
        f.debug_struct("Pipeline")
            .field("client", &self.client)
            .field("commands", &self.batch)
            .field("ignored", &self.ignored)
            .field("atomic", &self.atomic)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub(crate) fn new(client: Client) -> Pipeline {
        Pipeline {
            client,
            batch: Batch::new(),
            ignored: Vec::new(),
            atomic: false,
        }
    }

    /// Queues a command (its encoding is copied into the pipeline's buffer).
    pub fn add(&mut self, cmd: Cmd) -> &mut Self {
        self.batch.push(&cmd);
        self.queued();
        self
    }

    /// Queues a command by name; [`Pipeline::arg`] adds its arguments.
    pub fn cmd(&mut self, name: &str) -> &mut Self {
        self.batch.start(name);
        self.queued();
        self
    }

    /// Starts a command by name and returns the batch, for its arguments (the typed commands).
    #[inline]
    pub(crate) fn start_command(&mut self, name: &str) -> &mut Batch {
        self.batch.start(name);
        self.queued();
        &mut self.batch
    }

    /// Notes one more command, not ignored (so far).
    fn queued(&mut self) {
        if self.ignored.capacity() == 0 {
            self.ignored.reserve(16);
        }
        self.ignored.push(false);
    }

    /// Adds arguments to the last command queued.
    ///
    /// # Panics
    /// When no command was queued yet (a programming error, not a runtime condition).
    pub fn arg(&mut self, value: impl ToArgs) -> &mut Self {
        assert!(
            !self.batch.is_empty(),
            "Pipeline::arg needs a command queued before it"
        );
        value.push_to(&mut self.batch);
        self
    }

    /// Leaves the last command's reply out of [`Pipeline::query`]'s result.
    pub fn ignore(&mut self) -> &mut Self {
        if let Some(last) = self.ignored.last_mut() {
            *last = true;
        }
        self
    }

    /// Runs the commands as one transaction (`MULTI` ... `EXEC`): all or none, nothing from other
    /// clients in between. In a cluster their keys must share one slot.
    pub fn atomic(&mut self) -> &mut Self {
        self.atomic = true;
        self
    }

    /// The commands queued.
    pub fn commands(&self) -> &Batch {
        &self.batch
    }

    /// How many commands are queued.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Forgets the commands queued (to reuse the pipeline: its buffer is kept).
    pub fn clear(&mut self) -> &mut Self {
        self.batch.clear();
        self.ignored.clear();
        self.atomic = false;
        self
    }

    /// Sends the commands and converts the replies (the ignored ones left out) into `T`, as one
    /// array: a tuple, a `Vec`, or [`Value`].
    ///
    /// # Errors
    /// The connection's error for the pipeline as a whole; the first error reply when `T` does
    /// not take it in its place; a [`TypeError`](crate::TypeError).
    pub async fn query<T: FromValue>(&self) -> Result<T> {
        let values = self.query_raw().await?;
        self.convert(values)
    }

    /// Sends the commands and returns every reply, error replies included as
    /// [`Value::Error`], ignored ones included.
    ///
    /// # Errors
    /// The connection's error for the pipeline as a whole.
    pub async fn query_raw(&self) -> Result<Vec<Value>> {
        if self.batch.is_empty() {
            return Ok(Vec::new());
        }
        if self.atomic {
            // Nothing is watched on the connection a pipeline uses: EXEC always runs it.
            return Ok(self
                .client
                .send_transaction(&self.batch.to_cmds())
                .await?
                .unwrap_or_default());
        }
        self.client.send_batch(&self.batch).await
    }

    /// Sends the commands and fails with the first error reply, if any.
    ///
    /// # Errors
    /// As [`Pipeline::query_raw`], and [`Error::Server`](crate::Error::Server) for the first
    /// command that failed (the others ran).
    pub async fn exec(&self) -> Result<()> {
        for value in self.query_raw().await? {
            if let Value::Error(e) = value {
                return Err(crate::Error::Server(ServerError::new(e)));
            }
        }
        Ok(())
    }

    /// The replies kept (not ignored), as `T`.
    pub(crate) fn convert<T: FromValue>(&self, values: Vec<Value>) -> Result<T> {
        let kept = values
            .into_iter()
            .zip(self.ignored.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, ignored)| !**ignored)
            .map(|(v, _)| v)
            .collect();
        T::from_value(Value::Array(kept))
    }
}
