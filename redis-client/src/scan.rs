//! SCAN, HSCAN, SSCAN and ZSCAN as async streams.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::Stream;
use redis_cluster::ClusterScan;
use redis_conn::{Cmd, Value};

use crate::client::Backend;
use crate::convert::describe;
use crate::{Client, Error, FromValue, Result, ScanOptions, ToArgs, TypeError};

/// Where the next batch comes from.
enum Source {
    /// A cursor loop over one node (or a key's node): the command without its cursor, and the
    /// options that follow the cursor.
    Cursor {
        client: Client,
        head: Cmd,
        options: ScanOptions,
        cursor: Option<Bytes>,
    },
    /// Every master of a cluster in turn.
    Cluster(ClusterScan),
}

struct State {
    source: Source,
    /// Elements per item: 1 (keys, members) or 2 (field and value, member and score).
    group: usize,
    buffered: VecDeque<Value>,
    done: bool,
    /// Round trips in a row that brought no element, and how many may.
    empty_round_trips: u64,
    max_empty_round_trips: u64,
}

impl State {
    /// `max_empty_round_trips`: the caller's cap ([`ScanOptions::max_empty_round_trips`]).
    fn new(source: Source, group: usize, max_empty_round_trips: Option<u64>) -> State {
        let max_empty_round_trips =
            max_empty_round_trips.unwrap_or(ScanOptions::DEFAULT_MAX_EMPTY_ROUND_TRIPS);
        State {
            source,
            group,
            buffered: VecDeque::new(),
            done: false,
            empty_round_trips: 0,
            max_empty_round_trips,
        }
    }
}

impl State {
    /// Fetches the next batch into `buffered`; false when the scan is over.
    async fn refill(&mut self) -> Result<bool> {
        match &mut self.source {
            Source::Cluster(scan) => match scan.next_batch().await? {
                Some(keys) => {
                    self.buffered
                        .extend(keys.into_iter().map(Value::BulkString));
                    Ok(true)
                }
                None => Ok(false),
            },
            Source::Cursor {
                client,
                head,
                options,
                cursor,
            } => {
                let Some(at) = cursor.take() else {
                    return Ok(false);
                };
                let mut cmd = head.clone();
                cmd.push_arg(&at);
                options.push_to(&mut cmd);
                let reply = client.send(cmd).await?;
                let (next, items): (Bytes, Vec<Value>) = FromValue::from_value(reply)
                    .map_err(|_| Error::from(TypeError::new("a SCAN reply", "another shape")))?;
                if next == at && &next[..] != b"0" {
                    // A cursor moves on at every call, or the scan would never end.
                    return Err(Error::EndlessScan(format!(
                        "the server answered {} with the cursor it was given ({})",
                        String::from_utf8_lossy(head.name()),
                        String::from_utf8_lossy(&at),
                    )));
                }
                if &next[..] != b"0" {
                    *cursor = Some(next);
                }
                self.buffered.extend(items);
                Ok(true)
            }
        }
    }

    /// The next item, fetching batches as needed.
    async fn next<T: FromValue>(&mut self) -> Option<Result<T>> {
        loop {
            if self.buffered.len() >= self.group {
                let value = if self.group == 1 {
                    self.buffered.pop_front()?
                } else {
                    Value::Array(self.buffered.drain(..self.group).collect())
                };
                return Some(T::from_value(value));
            }
            if self.done {
                if let Some(left) = self.buffered.pop_front() {
                    // A reply with an odd number of elements for pairs.
                    return Some(Err(TypeError::new("a pair", describe(&left)).into()));
                }
                return None;
            }
            let before = self.buffered.len();
            match self.refill().await {
                Ok(more) => {
                    self.done = !more;
                    if self.buffered.len() > before {
                        self.empty_round_trips = 0;
                    } else if more {
                        self.empty_round_trips += 1;
                        if self.empty_round_trips >= self.max_empty_round_trips {
                            self.done = true;
                            self.buffered.clear();
                            return Some(Err(Error::EndlessScan(format!(
                                "{} round trips in a row brought no element and the cursor \
                                 has not come back to 0; giving up (ScanOptions::max_empty_round_trips)",
                                self.empty_round_trips
                            ))));
                        }
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn stream<T: FromValue + Send + 'static>(state: State) -> impl Stream<Item = Result<T>> + Send {
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next::<T>().await?;
        Some((item, state))
    })
}

impl Client {
    /// Every key (matching the options), as a stream: `SCAN` with its cursor, over every master
    /// in a cluster. Like SCAN itself, a key present for the whole scan comes at least once; one
    /// that changes meanwhile may come twice or not at all.
    ///
    /// ```no_run
    /// # async fn demo(client: redis_client::Client) -> redis_client::Result<()> {
    /// use futures::TryStreamExt;
    /// use redis_client::ScanOptions;
    ///
    /// let keys: Vec<String> = client
    ///     .scan(ScanOptions::default().pattern("session:*").count(500))
    ///     .try_collect()
    ///     .await?;
    /// # let _ = keys;
    /// # Ok(()) }
    /// ```
    pub fn scan<T: FromValue + Send + 'static>(
        &self,
        options: ScanOptions,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        let cap = options.max_empty_round_trips;
        let source = match self.backend() {
            Backend::Cluster(cluster) => Source::Cluster(cluster.scan_type(
                options.pattern.as_deref(),
                options.count.unwrap_or(10),
                options.key_type.as_deref(),
            )),
            _ => Source::Cursor {
                client: self.clone(),
                head: Cmd::new("SCAN"),
                options,
                cursor: Some(Bytes::from_static(b"0")),
            },
        };
        stream(State::new(source, 1, cap))
    }

    fn key_scan<T: FromValue + Send + 'static>(
        &self,
        name: &str,
        key: impl ToArgs,
        mut options: ScanOptions,
        group: usize,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        options.key_type = None;
        let mut head = Cmd::new(name);
        key.push_to(&mut head);
        let cap = options.max_empty_round_trips;
        let source = Source::Cursor {
            client: self.clone(),
            head,
            options,
            cursor: Some(Bytes::from_static(b"0")),
        };
        stream(State::new(source, group, cap))
    }

    /// The fields of a hash as `(field, value)` pairs, as a stream (`HSCAN`).
    pub fn hscan<T: FromValue + Send + 'static>(
        &self,
        key: impl ToArgs,
        options: ScanOptions,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        self.key_scan("HSCAN", key, options, 2)
    }

    /// The members of a set, as a stream (`SSCAN`).
    pub fn sscan<T: FromValue + Send + 'static>(
        &self,
        key: impl ToArgs,
        options: ScanOptions,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        self.key_scan("SSCAN", key, options, 1)
    }

    /// The members of a sorted set as `(member, score)` pairs, as a stream (`ZSCAN`).
    pub fn zscan<T: FromValue + Send + 'static>(
        &self,
        key: impl ToArgs,
        options: ScanOptions,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        self.key_scan("ZSCAN", key, options, 2)
    }
}
