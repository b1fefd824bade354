//! A Sentinel-managed deployment: one master, replicas, and sentinels watching them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use resp_codec::Value;

use crate::cluster::{wait_until, wait_until_for};
use crate::{HarnessError, RedisServer, Result, ServerTls};

/// The master name the sentinels monitor.
pub const MASTER_NAME: &str = "mymaster";

/// Options for [`SentinelSet::builder`].
#[derive(Debug, Clone)]
pub struct SentinelBuilder {
    replicas: usize,
    sentinels: usize,
    quorum: usize,
    down_after_ms: u64,
    failover_timeout_ms: u64,
    password: Option<String>,
    sentinel_password: Option<String>,
    sentinel_tls: Option<ServerTls>,
    hostnames: bool,
}

impl Default for SentinelBuilder {
    fn default() -> Self {
        SentinelBuilder {
            replicas: 2,
            sentinels: 3,
            quorum: 2,
            down_after_ms: 1000,
            failover_timeout_ms: 2000,
            password: None,
            sentinel_password: None,
            sentinel_tls: None,
            hostnames: false,
        }
    }
}

impl SentinelBuilder {
    /// Replicas of the master (default 2).
    #[must_use]
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// Sentinels (default 3).
    #[must_use]
    pub fn sentinels(mut self, n: usize) -> Self {
        self.sentinels = n.max(1);
        self
    }

    /// Quorum (default 2).
    #[must_use]
    pub fn quorum(mut self, n: usize) -> Self {
        self.quorum = n.max(1);
        self
    }

    /// `down-after-milliseconds` (default 1000).
    #[must_use]
    pub fn down_after_ms(mut self, ms: u64) -> Self {
        self.down_after_ms = ms;
        self
    }

    /// A password on the data servers (`requirepass` and `masterauth` on each, `auth-pass` in
    /// the sentinels), so clients and replicas must authenticate.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// A password on the sentinels themselves (`requirepass`, and `sentinel-pass` between them).
    #[must_use]
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// Sentinels also listen for TLS on a second port ([`RedisServer::tls_addr`]).
    #[must_use]
    pub fn sentinel_tls(mut self, tls: ServerTls) -> Self {
        self.sentinel_tls = Some(tls);
        self
    }

    /// Every address by name: replicas announce `localhost` (`replica-announce-ip`), the
    /// sentinels monitor `localhost` with `resolve-hostnames yes` and `announce-hostnames yes`,
    /// so what they answer (`SENTINEL get-master-addr-by-name`, replicas, sentinels) is
    /// `localhost:<port>`.
    #[must_use]
    pub fn hostnames(mut self, on: bool) -> Self {
        self.hostnames = on;
        self
    }

    /// Starts the master, the replicas (waiting until they are in sync), then the sentinels, and
    /// waits until every sentinel sees every replica and every other sentinel.
    pub fn start(self) -> Result<SentinelSet> {
        let host = if self.hostnames {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let data = || {
            let builder = if self.hostnames {
                RedisServer::builder().args(["--replica-announce-ip", "localhost"])
            } else {
                RedisServer::builder()
            };
            match &self.password {
                Some(pw) => builder
                    .password(pw.clone())
                    .args(["--masterauth".to_string(), pw.clone()]),
                None => builder,
            }
        };
        let master = data().start()?;
        let mut servers = vec![master];
        for _ in 0..self.replicas {
            let port = servers[0].port().to_string();
            servers.push(data().args(["--replicaof", host, port.as_str()]).start()?);
        }
        wait_until("replicas to sync with the master", || {
            for replica in &servers[1..] {
                let status = replica
                    .admin()?
                    .info_field("replication", "master_link_status")?;
                if status.as_deref() != Some("up") {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        let mut config = format!(
            "sentinel monitor {MASTER_NAME} {host} {port} {quorum}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
             sentinel failover-timeout {MASTER_NAME} {failover}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = servers[0].port(),
            quorum = self.quorum,
            down = self.down_after_ms,
            failover = self.failover_timeout_ms,
        );
        if let Some(pw) = &self.password {
            config.push_str(&format!("sentinel auth-pass {MASTER_NAME} {pw}\n"));
        }
        if self.hostnames {
            // resolve-hostnames must come before the monitor line names a host.
            config = format!(
                "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n\
                 sentinel announce-ip localhost\n{config}"
            );
        }
        let sentinels = (0..self.sentinels)
            .map(|_| {
                RedisServer::start_sentinel(
                    &config,
                    self.sentinel_password.as_deref(),
                    self.sentinel_tls.as_ref(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let set = SentinelSet { servers, sentinels };
        let (want_replicas, want_others) = (self.replicas, self.sentinels - 1);
        wait_until("sentinels to discover replicas and each other", || {
            for s in &set.sentinels {
                let info = set.sentinel_master_info(s)?;
                let count = |k: &str| info.get(k).and_then(|v| v.parse::<usize>().ok());
                if count("num-slaves") != Some(want_replicas)
                    || count("num-other-sentinels") != Some(want_others)
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        Ok(set)
    }
}

/// A running sentinel deployment. Server 0 is the initial master; every process is killed on drop.
#[derive(Debug)]
pub struct SentinelSet {
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl SentinelSet {
    /// One master, two replicas, three sentinels, quorum 2, down-after 1000 ms.
    pub fn start() -> Result<SentinelSet> {
        SentinelBuilder::default().start()
    }

    /// A builder for other shapes.
    pub fn builder() -> SentinelBuilder {
        SentinelBuilder::default()
    }

    /// The data servers (master and replicas, in start order).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The data servers, for fault injection.
    pub fn servers_mut(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The sentinels, for fault injection.
    pub fn sentinels_mut(&mut self) -> &mut [RedisServer] {
        &mut self.sentinels
    }

    /// The sentinels' addresses.
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(RedisServer::addr).collect()
    }

    /// `SENTINEL MASTER mymaster` from one sentinel, as a field map.
    fn sentinel_master_info(&self, sentinel: &RedisServer) -> Result<HashMap<String, String>> {
        let reply = sentinel.cmd(&["SENTINEL", "MASTER", MASTER_NAME])?;
        let fields = match reply {
            Value::Array(items) => items,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => {
                return Err(HarnessError::Unexpected {
                    addr: sentinel.addr().to_string(),
                    command: "SENTINEL MASTER".into(),
                    reply: format!("{other:?}"),
                })
            }
        };
        let text = |v: &Value| {
            v.as_bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        Ok(fields
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text(k), text(v))),
                _ => None,
            })
            .collect())
    }

    /// The master's address according to the first sentinel that answers
    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`.
    pub fn master_addr(&self) -> Result<SocketAddr> {
        let mut last = None;
        for s in &self.sentinels {
            match s.cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]) {
                Ok(Value::Array(parts)) if parts.len() == 2 => {
                    let text = |v: &Value| {
                        v.as_bytes()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default()
                    };
                    // A host name when the sentinels announce hostnames (`localhost`).
                    let addr = format!("{}:{}", text(&parts[0]), text(&parts[1]));
                    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&addr)
                        .ok()
                        .and_then(|mut all| all.find(SocketAddr::is_ipv4));
                    if let Some(addr) = resolved {
                        return Ok(addr);
                    }
                }
                Ok(other) => {
                    last = Some(HarnessError::Unexpected {
                        addr: s.addr().to_string(),
                        command: "SENTINEL GET-MASTER-ADDR-BY-NAME".into(),
                        reply: format!("{other:?}"),
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Unexpected {
            addr: "sentinels".into(),
            command: "SENTINEL GET-MASTER-ADDR-BY-NAME".into(),
            reply: "no sentinel configured".into(),
        }))
    }

    /// The index in [`SentinelSet::servers`] of the current master.
    pub fn master_index(&self) -> Result<usize> {
        let addr = self.master_addr()?;
        self.servers
            .iter()
            .position(|s| s.addr() == addr)
            .ok_or_else(|| HarnessError::Unexpected {
                addr: addr.to_string(),
                command: "SENTINEL GET-MASTER-ADDR-BY-NAME".into(),
                reply: "an address the set did not start".into(),
            })
    }

    /// The data server (master or replica) listening at `addr`.
    ///
    /// # Panics
    /// When the set started no server there.
    pub fn server_at(&self, addr: SocketAddr) -> &RedisServer {
        self.servers
            .iter()
            .find(|s| s.addr() == addr)
            .unwrap_or_else(|| panic!("the set started no server at {addr}"))
    }

    /// Whether the data server at `addr` holds `value` at `key`.
    pub fn holds(&self, addr: SocketAddr, key: &str, value: &str) -> bool {
        self.server_at(addr)
            .cmd(&["GET", key])
            .is_ok_and(|v| v.as_bytes().is_some_and(|b| &b[..] == value.as_bytes()))
    }

    /// Forces a failover through sentinel `via` (`SENTINEL FAILOVER`) and waits until the
    /// sentinels name a new master (30 s at most); returns the old and the new master.
    pub fn force_failover(&self, via: usize) -> Result<(SocketAddr, SocketAddr)> {
        let old = self.master_addr()?;
        self.sentinels[via].cmd(&["SENTINEL", "FAILOVER", MASTER_NAME])?;
        let new = self.wait_for_new_master(old, Duration::from_secs(30))?;
        Ok((old, new))
    }

    /// Waits until the sentinels report a master other than `old`, and returns it.
    pub fn wait_for_new_master(&self, old: SocketAddr, timeout: Duration) -> Result<SocketAddr> {
        let mut new = None;
        wait_until_for("the sentinels to elect a new master", timeout, || {
            let addr = self.master_addr()?;
            new = Some(addr);
            Ok(addr != old)
        })?;
        new.ok_or_else(|| HarnessError::Unexpected {
            addr: "sentinels".into(),
            command: "SENTINEL GET-MASTER-ADDR-BY-NAME".into(),
            reply: "no answer".into(),
        })
    }
}
