//! Sentinel-managed Redis: find the master through the sentinels, check it really is the master,
//! and follow failovers.
//!
//! [`SentinelClient::connect`] asks the sentinels in order (`SENTINEL GET-MASTER-ADDR-BY-NAME`),
//! moves the first that answers to the front, connects to the address it gives and checks with
//! `ROLE` that it is a master (a sentinel with a stale view is skipped). It then follows failovers:
//! it subscribes to `+switch-master` on every sentinel, polls them every few seconds as a
//! backstop, and rediscovers at once when a command meets `READONLY` or a lost connection. On a
//! switch the connection to the old master is closed (it stays writable for seconds after a
//! failover, and writes sent there would be lost).
//!
//! On each poll it also learns the sentinels that joined (`SENTINEL SENTINELS`), so that losing
//! the ones it was configured with does not leave it blind.
//!
//! With [`SentinelConfig::read_from_replicas`], read-only commands go to a replica from
//! `SENTINEL REPLICAS` chosen by a [`ReplicaSelector`] (the cluster's selectors), falling back to
//! the master.
//!
//! It builds on `redis-conn` for the data connection. Not yet here: sentinel TLS and auth for the
//! `+switch-master` subscription.

#![deny(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use redis_conn::table::{Blocking, Effect};
use redis_conn::{
    Cmd, Connection, ConnectionConfig, Error, Protocol, RandomSelector, ReplicaSelector,
    ServerAddr, Value,
};
use resp_codec::Decoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, Notify};

/// Settings of a sentinel client.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    sentinels: Vec<ServerAddr>,
    master_name: String,
    connection: ConnectionConfig,
    sentinel_connection: ConnectionConfig,
    poll_interval: Duration,
    read_from_replicas: bool,
    selector: Arc<dyn ReplicaSelector>,
}

impl SentinelConfig {
    /// The sentinels, the monitored master's name, and the settings of the data connection (its
    /// address is replaced by the master's). Sentinels are queried over plain RESP2 with the same
    /// timeouts; the backstop poll runs every 5 s.
    pub fn new(
        sentinels: impl IntoIterator<Item = ServerAddr>,
        master_name: impl Into<String>,
        connection: ConnectionConfig,
    ) -> Self {
        let sentinels: Vec<ServerAddr> = sentinels.into_iter().collect();
        let first = sentinels
            .first()
            .cloned()
            .unwrap_or_else(|| ServerAddr::tcp("127.0.0.1", 26379));
        let sentinel_connection = ConnectionConfig::new(first)
            .protocol(Protocol::Resp2)
            .health_check_interval(None)
            .reconnect(false);
        SentinelConfig {
            sentinels,
            master_name: master_name.into(),
            connection,
            sentinel_connection,
            poll_interval: Duration::from_secs(5),
            read_from_replicas: false,
            selector: Arc::new(RandomSelector),
        }
    }

    /// Send read-only commands to a replica (from `SENTINEL REPLICAS`, skipping those flagged
    /// down or disconnected), falling back to the master (default false). Replicas lag their
    /// master: a read may not see a write just made.
    #[must_use]
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.read_from_replicas = on;
        self
    }

    /// How a replica is chosen (default random).
    #[must_use]
    pub fn replica_selector(mut self, selector: impl ReplicaSelector + 'static) -> Self {
        self.selector = Arc::new(selector);
        self
    }

    /// How often the sentinels are polled as a backstop for missed events (default 5 s).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// Why the master could not be found or reached.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SentinelError {
    /// No sentinel gave the address of a reachable master.
    #[error("no master for {name}: {reason}")]
    NoMaster {
        /// The master name.
        name: String,
        /// The last reason.
        reason: String,
    },
    /// The master's connection failed or it answered with an error.
    #[error(transparent)]
    Node(#[from] Error),
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
    config: SentinelConfig,
    sentinels: Mutex<Vec<ServerAddr>>,
    current: RwLock<(ServerAddr, Connection)>,
    replicas: RwLock<Vec<(ServerAddr, Connection)>>,
    wake: Notify,
    events: broadcast::Sender<SentinelEvent>,
    failovers: AtomicU64,
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
        let sentinels = Mutex::new(config.sentinels.clone());
        let (addr, conn) = discover(&config, &sentinels).await?;
        let (events, _) = broadcast::channel(64);
        let client = SentinelClient {
            inner: Arc::new(Inner {
                config,
                sentinels,
                current: RwLock::new((addr, conn)),
                replicas: RwLock::new(Vec::new()),
                wake: Notify::new(),
                events,
                failovers: AtomicU64::new(0),
            }),
        };
        if client.inner.config.read_from_replicas {
            refresh_replicas(&client.inner).await;
        }
        client.start_following();
        Ok(client)
    }

    /// The master in use.
    pub fn master(&self) -> ServerAddr {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The sentinels known right now, in the order they are asked (learned ones included).
    pub fn sentinels(&self) -> Vec<ServerAddr> {
        self.inner
            .sentinels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Failovers followed so far.
    pub fn failovers(&self) -> u64 {
        self.inner.failovers.load(Ordering::Relaxed)
    }

    /// A stream of failover events.
    pub fn events(&self) -> broadcast::Receiver<SentinelEvent> {
        self.inner.events.subscribe()
    }

    /// Sends a command to the master. `READONLY` (the master was demoted) or a lost connection
    /// make the client rediscover at once; the error is returned as it is (redis-conn's honest
    /// `Sent` information included).
    ///
    /// # Errors
    /// [`SentinelError::Node`].
    pub async fn send(&self, cmd: Cmd) -> Result<Value, SentinelError> {
        if self.inner.config.read_from_replicas
            && cmd.effect() == Effect::ReadOnly
            && cmd.blocking() == Blocking::No
        {
            if let Some(value) = self.read_from_replica(&cmd).await {
                return Ok(value);
            }
        }
        let conn = self
            .inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        let result = conn.send(cmd).await;
        if let Err(e) = &result {
            let stale = match e {
                Error::Server(s) => s.is_readonly(),
                Error::ConnectionLost { .. }
                | Error::Timeout { .. }
                | Error::Closed { .. }
                | Error::Connect { .. } => true,
                _ => false,
            };
            if stale {
                self.inner.wake.notify_one();
            }
        }
        Ok(result?)
    }

    /// A read on a healthy replica; `None` (read from the master) when there is none or it failed.
    async fn read_from_replica(&self, cmd: &Cmd) -> Option<Value> {
        let healthy: Vec<(ServerAddr, Connection)> = self
            .inner
            .replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, c)| c.is_connected() && !c.is_broken())
            .cloned()
            .collect();
        if healthy.is_empty() {
            return None;
        }
        let offered: Vec<ServerAddr> = healthy.iter().map(|(a, _)| a.clone()).collect();
        let (_, conn) = &healthy[self.inner.config.selector.select(&offered) % healthy.len()];
        match conn.send(cmd.clone()).await {
            Ok(v) => Some(v),
            Err(_) => {
                self.inner.wake.notify_one();
                None
            }
        }
    }

    fn start_following(&self) {
        // One watcher per sentinel for +switch-master, and one task that rediscovers when woken
        // (an event, a stale reply) or when the poll interval passes.
        let sentinels = self
            .inner
            .sentinels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for sentinel in sentinels {
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(watch_switches(weak, sentinel));
        }
        let weak = Arc::downgrade(&self.inner);
        let poll = self.inner.config.poll_interval;
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let woken = tokio::time::timeout(poll, inner.wake.notified()).await;
                follow(&inner).await;
                if inner.config.read_from_replicas {
                    refresh_replicas(&inner).await;
                }
                if woken.is_err() {
                    // On the poll (not on every event): learn sentinels that joined.
                    for learned in learn_sentinels(&inner).await {
                        tokio::spawn(watch_switches(Arc::downgrade(&inner), learned));
                    }
                }
            }
        });
    }
}

/// Rediscovers; switches when the sentinels name another master.
async fn follow(inner: &Inner) {
    let current = inner
        .current
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .clone();
    // The usual case: the first sentinel that answers still names the master in use.
    let first = inner
        .sentinels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .cloned();
    if let Some(sentinel) = first {
        if ask_sentinel(&inner.config, &sentinel).await.ok().as_ref() == Some(&current) {
            return;
        }
    }
    match discover(&inner.config, &inner.sentinels).await {
        Ok((addr, conn)) if addr != current => {
            let old = {
                let mut slot = inner.current.write().unwrap_or_else(|e| e.into_inner());
                std::mem::replace(&mut *slot, (addr.clone(), conn))
            };
            // The old master may stay writable for seconds: nothing more goes there.
            old.1.close();
            inner.failovers.fetch_add(1, Ordering::Relaxed);
            tracing::info!(old = %old.0, new = %addr, "followed a failover");
            let _ = inner.events.send(SentinelEvent::Failover {
                old: old.0.to_string(),
                new: addr.to_string(),
            });
        }
        Ok((_, conn)) => conn.close(),
        Err(e) => tracing::warn!(error = %e, "sentinel discovery failed"),
    }
}

/// Asks the sentinels in order for a list of nodes (`SENTINEL <subcommand> <master>`: SENTINELS,
/// REPLICAS) and returns the addresses of the entries flagged with none of `skip`, from the first
/// sentinel that answers.
async fn listed_nodes(inner: &Inner, subcommand: &str, skip: &[&str]) -> Option<Vec<ServerAddr>> {
    let known = inner
        .sentinels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for sentinel in &known {
        let config = inner.config.sentinel_connection.with_addr(sentinel.clone());
        let Ok(conn) = Connection::connect(config).await else {
            continue;
        };
        let reply = conn
            .send(
                Cmd::new("SENTINEL")
                    .arg(subcommand)
                    .arg(&inner.config.master_name),
            )
            .await;
        conn.close();
        let Ok(Value::Array(entries)) = reply else {
            continue;
        };
        let mut addrs = Vec::new();
        for entry in &entries {
            let fields = field_map(entry);
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let flags = get("flags");
            if skip.iter().any(|f| flags.contains(f)) {
                continue;
            }
            if let Ok(port) = get("port").parse::<u16>() {
                addrs.push(ServerAddr::tcp(get("ip"), port));
            }
        }
        return Some(addrs);
    }
    None
}

/// Learns the sentinels not known yet (`SENTINEL SENTINELS`, skipping those flagged down), adds
/// them at the end of the list, and returns them.
async fn learn_sentinels(inner: &Inner) -> Vec<ServerAddr> {
    let listed = listed_nodes(inner, "SENTINELS", &["s_down", "o_down"])
        .await
        .unwrap_or_default();
    let mut list = inner.sentinels.lock().unwrap_or_else(|e| e.into_inner());
    let learned: Vec<ServerAddr> = listed
        .into_iter()
        .filter(|addr| !list.contains(addr))
        .collect();
    list.extend(learned.iter().cloned());
    if !learned.is_empty() {
        tracing::info!(count = learned.len(), "learned sentinels");
    }
    learned
}

/// Reloads the replicas (`SENTINEL REPLICAS`, skipping those flagged down or disconnected),
/// keeping the connections of those that stay and closing the others.
async fn refresh_replicas(inner: &Inner) {
    let Some(addrs) = listed_nodes(inner, "REPLICAS", &["s_down", "o_down", "disconnected"]).await
    else {
        return;
    };
    let old: Vec<(ServerAddr, Connection)> =
        std::mem::take(&mut *inner.replicas.write().unwrap_or_else(|e| e.into_inner()));
    let mut next = Vec::new();
    for addr in addrs {
        let kept = old
            .iter()
            .find(|(a, c)| *a == addr && !c.is_closed())
            .map(|(_, c)| c.clone());
        let conn = match kept {
            Some(c) => c,
            None => {
                match Connection::connect(inner.config.connection.with_addr(addr.clone())).await {
                    Ok(c) => c,
                    Err(_) => continue,
                }
            }
        };
        next.push((addr, conn));
    }
    for (addr, conn) in &old {
        if !next.iter().any(|(a, _)| a == addr) {
            conn.close();
        }
    }
    *inner.replicas.write().unwrap_or_else(|e| e.into_inner()) = next;
}

/// Field names and values of a sentinel reply entry (RESP2 flat array or RESP3 map).
fn field_map(entry: &Value) -> Vec<(String, String)> {
    match entry {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text(k), text(v))),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => Vec::new(),
    }
}

fn text(v: &Value) -> String {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Asks the sentinels in order; the first that names a master that answers ROLE as master wins
/// and moves to the front of the list.
async fn discover(
    config: &SentinelConfig,
    list: &Mutex<Vec<ServerAddr>>,
) -> Result<(ServerAddr, Connection), SentinelError> {
    let name = &config.master_name;
    let sentinels = list.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut reason = String::from("no sentinel configured");
    for (i, sentinel) in sentinels.iter().enumerate() {
        let addr = match ask_sentinel(config, sentinel).await {
            Ok(addr) => addr,
            Err(e) => {
                reason = format!("sentinel {sentinel}: {e}");
                continue;
            }
        };
        let conn = match Connection::connect(config.connection.with_addr(addr.clone())).await {
            Ok(conn) => conn,
            Err(e) => {
                reason = format!("master {addr} from sentinel {sentinel}: {e}");
                continue;
            }
        };
        match conn.send(Cmd::new("ROLE")).await {
            Ok(Value::Array(parts))
                if parts.first().and_then(Value::as_bytes).map(|b| &b[..]) == Some(b"master") =>
            {
                if i > 0 {
                    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(pos) = list.iter().position(|s| s == sentinel) {
                        let s = list.remove(pos);
                        list.insert(0, s);
                    }
                }
                return Ok((addr, conn));
            }
            Ok(other) => {
                conn.close();
                reason = format!(
                    "sentinel {sentinel} named {addr}, which is not a master (ROLE: {other:?})"
                );
            }
            Err(e) => {
                conn.close();
                reason = format!("ROLE on {addr}: {e}");
            }
        }
    }
    Err(SentinelError::NoMaster {
        name: name.clone(),
        reason,
    })
}

async fn ask_sentinel(
    config: &SentinelConfig,
    sentinel: &ServerAddr,
) -> Result<ServerAddr, String> {
    let conn = Connection::connect(config.sentinel_connection.with_addr(sentinel.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let reply = conn
        .send(
            Cmd::new("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&config.master_name),
        )
        .await;
    conn.close();
    match reply.map_err(|e| e.to_string())? {
        Value::Array(parts) if parts.len() == 2 => {
            let text = |v: &Value| {
                v.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let port = text(&parts[1])
                .parse()
                .map_err(|_| format!("bad port in {parts:?}"))?;
            Ok(ServerAddr::tcp(text(&parts[0]), port))
        }
        Value::Null => Err(format!("does not know {}", config.master_name)),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// Subscribes to `+switch-master` on one sentinel (plain TCP, RESP2) and wakes the follower on
/// every switch of our master; reconnects after a pause when the sentinel goes away.
async fn watch_switches(inner: std::sync::Weak<Inner>, sentinel: ServerAddr) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let name = strong.config.master_name.clone();
        drop(strong);
        let ServerAddr::Tcp { host, port } = &sentinel else {
            return;
        };
        if let Ok(mut stream) = tokio::net::TcpStream::connect((host.as_str(), *port)).await {
            let mut out = BytesMut::new();
            resp_codec::encode_command(&mut out, ["SUBSCRIBE", "+switch-master"]);
            if stream.write_all(&out).await.is_ok() {
                let mut buf = BytesMut::with_capacity(4096);
                let mut decoder = Decoder::new();
                'read: loop {
                    loop {
                        match decoder.decode(&mut buf) {
                            Ok(Some(Value::Array(parts))) | Ok(Some(Value::Push(parts))) => {
                                let payload = parts.get(2).and_then(Value::as_bytes);
                                let is_ours = payload.is_some_and(|p| {
                                    p.split(|&b| b == b' ').next() == Some(name.as_bytes())
                                });
                                if is_ours {
                                    match inner.upgrade() {
                                        Some(strong) => strong.wake.notify_one(),
                                        None => return,
                                    }
                                }
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(_) => break 'read,
                        }
                    }
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break 'read,
                        Ok(_) => {}
                    }
                    if inner.strong_count() == 0 {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
