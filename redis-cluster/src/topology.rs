//! Cluster topology: who serves which slots (masters and replicas), read from `CLUSTER SLOTS`,
//! agreed between several nodes, and kept as a slot map.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use redis_conn::{ReplicaSet, ServerAddr, Value};

use crate::SLOTS;

/// A node's address as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl NodeAddr {
    /// An address.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        NodeAddr {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for NodeAddr {
    type Err = TopologyError;

    /// `host:port` or `[v6]:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TopologyError::BadAddress(s.to_string());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(NodeAddr::new(host, port))
    }
}

impl From<std::net::SocketAddr> for NodeAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        NodeAddr::new(addr.ip().to_string(), addr.port())
    }
}

impl From<&NodeAddr> for ServerAddr {
    fn from(addr: &NodeAddr) -> Self {
        ServerAddr::tcp(addr.host.clone(), addr.port)
    }
}

/// How the client reaches nodes, which decides the port it takes from a topology: a node of a
/// TLS cluster (`tls-cluster yes`) announces a `tls-port`, and may also announce a plain `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP: a node's `port` (the default).
    #[default]
    Plain,
    /// TLS: a node's `tls-port`.
    Tls,
}

/// The most nodes (masters and replicas together) a topology may name. Redis recommends at most
/// about 1,000 nodes; a reply naming more than one node per slot is refused as absurd.
pub const MAX_NODES: usize = SLOTS as usize;

/// Why a topology could not be read, or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The reply did not have the shape of `CLUSTER SLOTS` or `CLUSTER SHARDS`.
    #[error("unexpected CLUSTER SLOTS reply: {0}")]
    BadReply(String),
    /// An address could not be parsed.
    #[error("bad node address {0:?}")]
    BadAddress(String),
    /// A slot number outside 0..=16383.
    #[error("slot {0} is outside 0..=16383")]
    SlotOutOfRange(i64),
    /// A range that ends before it starts.
    #[error("slot range {start}-{end} ends before it starts")]
    BackwardRange {
        /// The first slot.
        start: u16,
        /// The last slot.
        end: u16,
    },
    /// More slot ranges than there are slots: no real cluster sends that.
    #[error("{ranges} slot ranges, more than the 16384 slots")]
    TooManyRanges {
        /// How many ranges the reply held (at least).
        ranges: usize,
    },
    /// More shards than there are slots.
    #[error("{shards} shards, more than the 16384 slots")]
    TooManyShards {
        /// How many shards the reply held.
        shards: usize,
    },
    /// More nodes than [`MAX_NODES`].
    #[error("more than {max} nodes")]
    TooManyNodes {
        /// The limit ([`MAX_NODES`]).
        max: usize,
    },
    /// Two shards claim the same slot.
    #[error("slot {slot} is claimed by both {first} and {second}")]
    Overlap {
        /// The first slot claimed twice.
        slot: u16,
        /// The master that claimed it first.
        first: NodeAddr,
        /// The master that claimed it again.
        second: NodeAddr,
    },
}

/// Who owns each slot while a reply is read: refuses a slot claimed twice, in time linear in
/// the slots covered (a claim stops at the first slot already taken).
struct Claims {
    owner: Vec<Option<NodeAddr>>,
    ranges: usize,
}

impl Claims {
    fn new() -> Self {
        Claims {
            owner: vec![None; usize::from(SLOTS)],
            ranges: 0,
        }
    }

    /// Claims `start..=end` for `master`. A master may repeat its own slot (a reply listing
    /// one range twice); another master may not.
    fn claim(&mut self, start: u16, end: u16, master: &NodeAddr) -> Result<(), TopologyError> {
        if start > end {
            return Err(TopologyError::BackwardRange { start, end });
        }
        self.ranges += 1;
        if self.ranges > usize::from(SLOTS) {
            return Err(TopologyError::TooManyRanges {
                ranges: self.ranges,
            });
        }
        for slot in start..=end {
            match &mut self.owner[usize::from(slot)] {
                Some(first) if first != master => {
                    return Err(TopologyError::Overlap {
                        slot,
                        first: first.clone(),
                        second: master.clone(),
                    })
                }
                Some(_) => {
                    return Err(TopologyError::BadReply(format!(
                        "{master} lists slot {slot} twice"
                    )))
                }
                owner @ None => *owner = Some(master.clone()),
            }
        }
        Ok(())
    }
}

/// A slot number from a reply.
fn slot_number(v: &Value) -> Result<u16, TopologyError> {
    let n = int(v).ok_or_else(|| TopologyError::BadReply("a slot that is not a number".into()))?;
    u16::try_from(n)
        .ok()
        .filter(|&s| s < SLOTS)
        .ok_or(TopologyError::SlotOutOfRange(n))
}

/// Counts the nodes a reply names, and refuses past [`MAX_NODES`].
#[derive(Default)]
struct NodeCount(usize);

impl NodeCount {
    fn add(&mut self, n: usize) -> Result<(), TopologyError> {
        self.0 = self.0.saturating_add(n);
        if self.0 > MAX_NODES {
            return Err(TopologyError::TooManyNodes { max: MAX_NODES });
        }
        Ok(())
    }
}

/// One master with its slot ranges and replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Inclusive slot ranges, sorted.
    pub ranges: Vec<(u16, u16)>,
    /// The master.
    pub master: NodeAddr,
    /// The master's node id, when the cluster told it.
    pub master_id: Option<String>,
    /// The replicas, sorted.
    pub replicas: Vec<NodeAddr>,
}

/// The slots and nodes of a cluster, in a canonical order (so that two views compare equal when
/// they describe the same cluster).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    shards: Vec<Shard>,
}

/// A `CLUSTER SHARDS` error naming what was wrong.
fn bad_shards(what: &str) -> TopologyError {
    TopologyError::BadReply(format!("CLUSTER SHARDS: {what}"))
}

/// A shard's `slots` of `CLUSTER SHARDS`: pairs of bounds, as inclusive ranges.
fn shard_ranges(bounds: &[Value]) -> Result<Vec<(u16, u16)>, TopologyError> {
    if bounds.len() / 2 > usize::from(SLOTS) {
        return Err(TopologyError::TooManyRanges {
            ranges: bounds.len() / 2,
        });
    }
    let mut ranges = Vec::new();
    for pair in bounds.chunks(2) {
        let [a, b] = pair else {
            return Err(bad_shards("odd slot bounds"));
        };
        ranges.push((slot_number(a)?, slot_number(b)?));
    }
    Ok(ranges)
}

/// A master and its replicas, as `CLUSTER SHARDS` lists them.
type ShardNodes = (Option<(NodeAddr, Option<String>)>, Vec<NodeAddr>);

/// A shard's `nodes` of `CLUSTER SHARDS`: its master (with its id) and its `online` replicas.
fn shard_nodes(
    nodes: &[Value],
    asked: &NodeAddr,
    transport: Transport,
) -> Result<ShardNodes, TopologyError> {
    let (wanted, other) = match transport {
        Transport::Plain => ("port", "tls-port"),
        Transport::Tls => ("tls-port", "port"),
    };
    let mut master = None;
    let mut master_failing = false;
    let mut replicas = Vec::new();
    for node in nodes {
        let f = fields(node).ok_or_else(|| bad_shards("a node is not a map"))?;
        let text_of = |name: &str| {
            f.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| text(v))
                .unwrap_or_default()
        };
        let port_of = |name: &str| {
            f.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| int(v))
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
        };
        // A node with neither port has no address (`noaddr`: another node answered at its
        // address, as when a node restarts with a fresh identity); Redis lists it without a
        // port until it is forgotten. It cannot be dialled: skipped, and a master skipped so
        // leaves its shard's slots unowned in this view.
        let Some(port) = port_of(wanted).or_else(|| port_of(other)) else {
            continue;
        };
        let endpoint = f
            .iter()
            .find(|(k, _)| k == "endpoint")
            .map(|(_, v)| text(v).unwrap_or_default());
        let host = match endpoint {
            // An empty (or NULL) endpoint: `unknown-endpoint`, or a node that does not know its
            // address; both mean the endpoint that was asked, never the `ip` (behind a load
            // balancer, an address the client cannot reach).
            Some(e) if e.is_empty() => asked.host.clone(),
            Some(e) if e != "?" => e,
            // `?` (hostnames preferred, none set), or no endpoint field: the `ip`.
            _ => Some(text_of("ip"))
                .filter(|ip| !ip.is_empty() && ip != "?")
                .unwrap_or_else(|| asked.host.clone()),
        };
        let addr = NodeAddr::new(host, port);
        match text_of("role").as_str() {
            // Redis 7.2+ and Valkey list a dead master that was replaced in the same shard as
            // its successor, both `master`: a failing one never displaces one that is not,
            // whatever the order (otherwise the last one listed wins).
            "master" => {
                let failing = text_of("health") == "fail";
                if master.is_none() || master_failing || !failing {
                    master = Some((addr, Some(text_of("id"))));
                    master_failing = failing;
                }
            }
            _ if text_of("health") == "online" => replicas.push(addr),
            _ => {}
        }
    }
    Ok((master, replicas))
}

fn text(v: &Value) -> Option<String> {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The fields of a map, given as a RESP3 map or a RESP2 flat array of names and values.
fn fields(v: &Value) -> Option<Vec<(String, &Value)>> {
    match v {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| Some((text(k)?, v))).collect(),
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|kv| Some((text(&kv[0])?, &kv[1])))
            .collect(),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// One node of a `CLUSTER SLOTS` range (`[host, port, id, metadata]`), with the host rules of
/// [`Topology::from_cluster_slots`].
fn slots_node(v: &Value, asked: &NodeAddr) -> Result<(NodeAddr, Option<String>), TopologyError> {
    let bad = |what: &str| TopologyError::BadReply(what.to_string());
    let Value::Array(parts) = v else {
        return Err(bad("a node is not an array"));
    };
    // NULL (`cluster-preferred-endpoint-type unknown-endpoint`) and an empty host both mean
    // "the endpoint you asked on".
    let host = match parts.first() {
        Some(Value::Null) => String::new(),
        Some(v) => text(v).ok_or_else(|| bad("node without host"))?,
        None => return Err(bad("node without host")),
    };
    let port = parts
        .get(1)
        .and_then(int)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| bad("node without a valid port"))?;
    let host = if host.is_empty() {
        asked.host.clone()
    } else if host == "?" {
        parts
            .get(3)
            .and_then(fields)
            .and_then(|meta| {
                meta.iter()
                    .find(|(k, _)| k == "ip")
                    .and_then(|(_, v)| text(v))
            })
            .filter(|ip| !ip.is_empty() && ip != "?")
            .unwrap_or_else(|| asked.host.clone())
    } else {
        host
    };
    Ok((NodeAddr::new(host, port), parts.get(2).and_then(text)))
}

impl Topology {
    /// Reads a `CLUSTER SLOTS` reply. `asked` is the node that sent it: an empty or NULL host in
    /// the reply (NULL is how `cluster-preferred-endpoint-type unknown-endpoint` says it) means
    /// "the address you reached me at". `?` (a node with no hostname while the cluster
    /// prefers hostnames) means the node's `ip` from the entry's metadata, or, without one, the
    /// host of `asked`. The port is the one the server chose for the connection that asked (with
    /// `tls-cluster yes`, the TLS port for a TLS connection), so no [`Transport`] is needed.
    ///
    /// # Errors
    /// [`TopologyError`] when the reply is not shaped like `CLUSTER SLOTS`.
    pub fn from_cluster_slots(reply: &Value, asked: &NodeAddr) -> Result<Topology, TopologyError> {
        let bad = |what: &str| TopologyError::BadReply(what.to_string());
        let Value::Array(ranges) = reply else {
            return Err(bad("not an array"));
        };
        let node = |v: &Value| slots_node(v, asked);
        if ranges.len() > usize::from(SLOTS) {
            return Err(TopologyError::TooManyRanges {
                ranges: ranges.len(),
            });
        }
        let mut claims = Claims::new();
        let mut count = NodeCount::default();
        let mut by_master: BTreeMap<NodeAddr, Shard> = BTreeMap::new();
        for range in ranges {
            let Value::Array(parts) = range else {
                return Err(bad("a range is not an array"));
            };
            let slot = |i: usize| {
                parts
                    .get(i)
                    .ok_or_else(|| bad("a range without valid slots"))
                    .and_then(slot_number)
            };
            let (start, end) = (slot(0)?, slot(1)?);
            let (master, master_id) =
                node(parts.get(2).ok_or_else(|| bad("range without master"))?)?;
            claims.claim(start, end, &master)?;
            count.add(parts.len().saturating_sub(2))?;
            let shard = by_master.entry(master.clone()).or_insert_with(|| Shard {
                ranges: Vec::new(),
                master,
                master_id,
                replicas: Vec::new(),
            });
            shard.ranges.push((start, end));
            for replica in &parts[3..] {
                let (addr, _) = node(replica)?;
                shard.replicas.push(addr);
            }
        }
        let mut shards: Vec<Shard> = by_master.into_values().collect();
        for shard in &mut shards {
            shard.ranges.sort_unstable();
            shard.replicas.sort();
            shard.replicas.dedup();
        }
        Ok(Topology { shards })
    }

    /// Reads a `CLUSTER SHARDS` reply (Redis 7+; RESP2 or RESP3) for a plain-TCP client: see
    /// [`Topology::from_cluster_shards_over`].
    ///
    /// # Errors
    /// [`TopologyError`] when the reply is not shaped like `CLUSTER SHARDS`.
    pub fn from_cluster_shards(reply: &Value, asked: &NodeAddr) -> Result<Topology, TopologyError> {
        Topology::from_cluster_shards_over(reply, asked, Transport::Plain)
    }

    /// Reads a `CLUSTER SHARDS` reply (Redis 7+; RESP2 or RESP3). It reports node health, so
    /// replicas that are not `online` are left out, and lists replicas as soon as they are attached.
    ///
    /// Each node's address is its `endpoint` (the hostname when the cluster prefers hostnames);
    /// an empty endpoint (`cluster-preferred-endpoint-type unknown-endpoint`) means the host of
    /// `asked`, as Redis documents; `?` (or no endpoint field) means the node's `ip`, and `asked`
    /// when that is empty or `?` too. Its port
    /// is the one for `transport`: `tls-port` for [`Transport::Tls`], `port` for
    /// [`Transport::Plain`]; a node announcing only the other one is given that one (its
    /// connection then fails with the transport's own error).
    ///
    /// A node with neither a valid `port` nor a valid `tls-port` (one Redis flags `noaddr`) is
    /// left out; when it is a shard's master, that shard's slots have no owner in this view. A
    /// shard listing two masters (Redis 7.2+ and Valkey keep a dead master beside the replica
    /// promoted in its place) is served by the one whose health is not `fail`.
    ///
    /// # Errors
    /// [`TopologyError`] when the reply is not shaped like `CLUSTER SHARDS`.
    pub fn from_cluster_shards_over(
        reply: &Value,
        asked: &NodeAddr,
        transport: Transport,
    ) -> Result<Topology, TopologyError> {
        let bad = bad_shards;
        let Value::Array(entries) = reply else {
            return Err(bad("not an array"));
        };
        if entries.len() > usize::from(SLOTS) {
            return Err(TopologyError::TooManyShards {
                shards: entries.len(),
            });
        }
        let mut claims = Claims::new();
        let mut count = NodeCount::default();
        let mut shards = Vec::new();
        for entry in entries {
            let shard_fields = fields(entry).ok_or_else(|| bad("a shard is not a map"))?;
            let get = |name: &str| {
                shard_fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| *v)
            };
            let Some(Value::Array(bounds)) = get("slots") else {
                return Err(bad("a shard without slots"));
            };
            let mut ranges = shard_ranges(bounds)?;
            if ranges.is_empty() {
                continue;
            }
            let Some(Value::Array(nodes)) = get("nodes") else {
                return Err(bad("a shard without nodes"));
            };
            count.add(nodes.len())?;
            let (master, mut replicas) = shard_nodes(nodes, asked, transport)?;
            let Some((master, master_id)) = master else {
                // A shard whose master is gone from the view: its slots stay unowned here.
                continue;
            };
            for &(a, b) in &ranges {
                claims.claim(a, b, &master)?;
            }
            ranges.sort_unstable();
            replicas.sort();
            replicas.dedup();
            shards.push(Shard {
                ranges,
                master,
                master_id: master_id.filter(|id| !id.is_empty()),
                replicas,
            });
        }
        shards.sort_by(|a, b| a.master.cmp(&b.master));
        Ok(Topology { shards })
    }

    /// The shards, ordered by master address.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// How many slots have an owner.
    pub fn covered_slots(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| &s.ranges)
            .map(|&(a, b)| usize::from(b - a) + 1)
            .sum()
    }

    /// The slot map.
    pub fn slot_map(&self) -> SlotMap {
        let mut owner = vec![NO_OWNER; usize::from(SLOTS)];
        // A parsed topology has at most one shard per slot, so every index fits below NO_OWNER;
        // shards past it (only a hand-built topology can have them) own nothing.
        for (i, shard) in self.shards.iter().enumerate() {
            let Some(index) = u16::try_from(i).ok().filter(|&i| i < NO_OWNER) else {
                break;
            };
            for &(a, b) in &shard.ranges {
                for slot in a..=b.min(SLOTS - 1) {
                    owner[usize::from(slot)] = index;
                }
            }
        }
        SlotMap {
            owner,
            replicas: self.shards.iter().map(replica_set).collect(),
            shards: self.shards.clone(),
        }
    }
}

/// The view most nodes agree on, with how many agree; ties go to the view covering more slots.
/// A node that disagrees is not trusted alone.
pub fn agreed_view(views: Vec<Topology>) -> Option<(Topology, usize)> {
    let mut counts: Vec<(Topology, usize)> = Vec::new();
    for view in views {
        match counts.iter_mut().find(|(t, _)| *t == view) {
            Some((_, n)) => *n += 1,
            None => counts.push((view, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(t, n)| (*n, t.covered_slots()))
}

const NO_OWNER: u16 = u16::MAX;

/// Slot to shard, for routing.
#[derive(Debug, Clone)]
pub struct SlotMap {
    owner: Vec<u16>,
    shards: Vec<Shard>,
    /// `replicas[i]` is `shards[i]`'s replicas as reads pick them: built with the map, so that
    /// a read from a replica builds nothing.
    replicas: Vec<ReplicaSet<NodeAddr>>,
}

/// A shard's replicas for reads: each one's address, which is also what the client's
/// connection to it is found by (it dials replicas on first use).
fn replica_set(shard: &Shard) -> ReplicaSet<NodeAddr> {
    shard
        .replicas
        .iter()
        .map(|addr| (ServerAddr::from(addr), addr.clone()))
        .collect()
}

impl SlotMap {
    /// The shard that serves `slot`.
    pub fn shard(&self, slot: u16) -> Option<&Shard> {
        let i = *self.owner.get(usize::from(slot))?;
        self.shards.get(usize::from(i))
    }

    /// The replicas of `slot`'s shard, for reads.
    pub(crate) fn replicas(&self, slot: u16) -> Option<&ReplicaSet<NodeAddr>> {
        let i = *self.owner.get(usize::from(slot))?;
        self.replicas.get(usize::from(i))
    }

    /// The master of `slot`.
    pub fn master(&self, slot: u16) -> Option<&NodeAddr> {
        self.shard(slot).map(|s| &s.master)
    }

    /// The shards.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Slots without an owner.
    pub fn uncovered(&self) -> usize {
        self.owner.iter().filter(|&&o| o == NO_OWNER).count()
    }

    /// Applies a `MOVED`: `slot` now lives on `addr` (a known master, or a new one). Returns
    /// false, changing nothing, for a slot past 16383 or when the map already has one shard per
    /// slot (MOVED to ever new addresses; a refresh rebuilds the map).
    pub fn patch_moved(&mut self, slot: u16, addr: &NodeAddr) -> bool {
        if slot >= SLOTS {
            return false;
        }
        let index = match self.shards.iter().position(|s| &s.master == addr) {
            Some(i) => i,
            None if self.shards.len() < usize::from(SLOTS) => {
                self.shards.push(Shard {
                    ranges: vec![(slot, slot)],
                    master: addr.clone(),
                    master_id: None,
                    replicas: Vec::new(),
                });
                self.replicas.push(ReplicaSet::default());
                self.shards.len() - 1
            }
            None => return false,
        };
        match (u16::try_from(index), self.owner.get_mut(usize::from(slot))) {
            (Ok(index), Some(o)) => {
                *o = index;
                true
            }
            _ => false,
        }
    }

    /// Every node address (masters and replicas), without repeats.
    pub fn nodes(&self) -> Vec<NodeAddr> {
        let mut seen: HashSet<&NodeAddr> = HashSet::new();
        let mut out = Vec::new();
        for shard in &self.shards {
            for addr in std::iter::once(&shard.master).chain(&shard.replicas) {
                if seen.insert(addr) {
                    out.push(addr.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec().into())
    }

    fn node(host: &str, port: i64, id: &str) -> Value {
        Value::Array(vec![b(host), Value::Integer(port), b(id)])
    }

    fn reply() -> Value {
        Value::Array(vec![
            Value::Array(vec![
                Value::Integer(5461),
                Value::Integer(10922),
                node("127.0.0.1", 7001, "b"),
                node("127.0.0.1", 7004, "e"),
            ]),
            Value::Array(vec![
                Value::Integer(0),
                Value::Integer(5460),
                node("", 7000, "a"),
                node("127.0.0.1", 7003, "d"),
            ]),
            Value::Array(vec![
                Value::Integer(10923),
                Value::Integer(16383),
                node("127.0.0.1", 7002, "c"),
            ]),
        ])
    }

    /// The slot map of [`reply`], as the node at 127.0.0.1:7000 gave it.
    fn reply_map() -> SlotMap {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        Topology::from_cluster_slots(&reply(), &asked)
            .unwrap()
            .slot_map()
    }

    #[test]
    fn cluster_slots_parse_into_a_canonical_topology() {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let t = Topology::from_cluster_slots(&reply(), &asked).unwrap();
        assert_eq!(t.covered_slots(), 16384);
        assert_eq!(t.shards().len(), 3);
        assert_eq!(t.shards()[0].master, NodeAddr::new("127.0.0.1", 7000));
        assert_eq!(
            t.shards()[0].replicas,
            vec![NodeAddr::new("127.0.0.1", 7003)]
        );
        assert_eq!(t.shards()[0].master_id.as_deref(), Some("a"));
        let map = t.slot_map();
        assert_eq!(map.uncovered(), 0);
        assert_eq!(map.master(0).unwrap().port, 7000);
        assert_eq!(map.master(5461).unwrap().port, 7001);
        assert_eq!(map.master(16383).unwrap().port, 7002);
        assert_eq!(map.nodes().len(), 5);
        // Order in the reply does not matter.
        let Value::Array(mut ranges) = reply() else {
            unreachable!()
        };
        ranges.reverse();
        assert_eq!(
            Topology::from_cluster_slots(&Value::Array(ranges), &asked).unwrap(),
            t
        );
    }

    #[test]
    fn cluster_shards_parse_in_resp2_and_resp3_and_skip_unhealthy_replicas() {
        let node = |id: &str, port: i64, role: &str, health: &str| {
            vec![
                b("id"),
                b(id),
                b("port"),
                Value::Integer(port),
                b("ip"),
                b("127.0.0.1"),
                b("endpoint"),
                b("127.0.0.1"),
                b("role"),
                b(role),
                b("replication-offset"),
                Value::Integer(1),
                b("health"),
                b(health),
            ]
        };
        let shard = |lo: i64, hi: i64, nodes: Vec<Vec<Value>>| {
            vec![
                b("slots"),
                Value::Array(vec![Value::Integer(lo), Value::Integer(hi)]),
                b("nodes"),
                Value::Array(nodes.into_iter().map(Value::Array).collect()),
            ]
        };
        let resp2 = Value::Array(vec![
            Value::Array(shard(
                0,
                8191,
                vec![
                    node("a", 7000, "master", "online"),
                    node("c", 7002, "replica", "online"),
                ],
            )),
            Value::Array(shard(
                8192,
                16383,
                vec![
                    node("b", 7001, "master", "online"),
                    node("d", 7003, "replica", "loading"),
                ],
            )),
        ]);
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let t = Topology::from_cluster_shards(&resp2, &asked).unwrap();
        assert_eq!(t.covered_slots(), 16384);
        assert_eq!(
            t.shards()[0].replicas,
            vec![NodeAddr::new("127.0.0.1", 7002)]
        );
        assert!(
            t.shards()[1].replicas.is_empty(),
            "a loading replica was kept"
        );
        // The same as RESP3 maps.
        let resp3 = shards_as_resp3(&resp2);
        assert_eq!(Topology::from_cluster_shards(&resp3, &asked).unwrap(), t);
        assert!(Topology::from_cluster_shards(&Value::Integer(1), &asked).is_err());
    }

    /// A RESP2 `CLUSTER SHARDS` reply (flat arrays of names and values) as RESP3 maps.
    fn shards_as_resp3(resp2: &Value) -> Value {
        let to_map = |flat: &Value| match flat {
            Value::Array(items) => Value::Map(
                items
                    .chunks(2)
                    .map(|kv| (kv[0].clone(), kv[1].clone()))
                    .collect(),
            ),
            other => other.clone(),
        };
        let Value::Array(entries) = resp2 else {
            unreachable!()
        };
        Value::Array(
            entries
                .iter()
                .map(|e| {
                    let Value::Map(pairs) = to_map(e) else {
                        unreachable!()
                    };
                    Value::Map(
                        pairs
                            .into_iter()
                            .map(|(k, v)| match v {
                                Value::Array(nodes) if k == b("nodes") => {
                                    (k, Value::Array(nodes.iter().map(to_map).collect()))
                                }
                                v => (k, v),
                            })
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    /// One `CLUSTER SHARDS` entry covering every slot, its nodes given as (field, value) lists.
    fn one_shard(nodes: Vec<Vec<(&str, Value)>>) -> Value {
        let nodes = nodes
            .into_iter()
            .map(|f| Value::Array(f.into_iter().flat_map(|(k, v)| [b(k), v]).collect()))
            .collect();
        Value::Array(vec![Value::Array(vec![
            b("slots"),
            Value::Array(vec![Value::Integer(0), Value::Integer(16383)]),
            b("nodes"),
            Value::Array(nodes),
        ])])
    }

    #[test]
    fn cluster_shards_give_each_node_the_port_of_the_clients_transport() {
        let asked = NodeAddr::new("127.0.0.1", 8000);
        let (i, s) = (Value::Integer, b);
        // A master with both ports, a replica with only a TLS port (`port 0` servers announce no
        // `port`), a replica with only a plain one.
        let reply = one_shard(vec![
            vec![("id", s("a")), ("port", i(7000)), ("tls-port", i(8000))]
                .into_iter()
                .chain([("ip", s("127.0.0.1")), ("role", s("master"))])
                .collect(),
            vec![
                ("id", s("b")),
                ("tls-port", i(8001)),
                ("ip", s("127.0.0.1")),
            ]
            .into_iter()
            .chain([("role", s("replica")), ("health", s("online"))])
            .collect(),
            vec![("id", s("c")), ("port", i(7002)), ("ip", s("127.0.0.1"))]
                .into_iter()
                .chain([("role", s("replica")), ("health", s("online"))])
                .collect(),
        ]);
        let tls = Topology::from_cluster_shards_over(&reply, &asked, Transport::Tls).unwrap();
        assert_eq!(tls.shards()[0].master, NodeAddr::new("127.0.0.1", 8000));
        assert_eq!(
            tls.shards()[0].replicas,
            vec![
                NodeAddr::new("127.0.0.1", 7002),
                NodeAddr::new("127.0.0.1", 8001)
            ]
        );
        let plain = Topology::from_cluster_shards_over(&reply, &asked, Transport::Plain).unwrap();
        assert_eq!(plain.shards()[0].master, NodeAddr::new("127.0.0.1", 7000));
        assert_eq!(
            Topology::from_cluster_shards(&reply, &asked).unwrap(),
            plain
        );

        // Neither port (or only zeros): a node that cannot be dialled, left out for either
        // transport (Redis lists a `noaddr` node so); its shard then has no owner here.
        let portless = one_shard(vec![vec![
            ("id", s("a")),
            ("port", i(0)),
            ("ip", s("127.0.0.1")),
            ("role", s("master")),
        ]]);
        for transport in [Transport::Tls, Transport::Plain] {
            let t = Topology::from_cluster_shards_over(&portless, &asked, transport).unwrap();
            assert_eq!(t.covered_slots(), 0);
        }
    }

    #[test]
    fn announced_hostnames_are_used_and_unknown_endpoints_fall_back_to_the_ip() {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let (i, s) = (Value::Integer, b);
        let shards = one_shard(vec![
            vec![
                ("id", s("a")),
                ("tls-port", i(7000)),
                ("ip", s("127.0.0.1")),
            ]
            .into_iter()
            .chain([("endpoint", s("localhost")), ("hostname", s("localhost"))])
            .chain([("role", s("master"))])
            .collect(),
            vec![("id", s("b")), ("tls-port", i(7001)), ("ip", s("10.0.0.2"))]
                .into_iter()
                .chain([("endpoint", s("?")), ("role", s("replica"))])
                .chain([("health", s("online"))])
                .collect(),
        ]);
        let t = Topology::from_cluster_shards_over(&shards, &asked, Transport::Tls).unwrap();
        assert_eq!(t.shards()[0].master, NodeAddr::new("localhost", 7000));
        assert_eq!(
            t.shards()[0].replicas,
            vec![NodeAddr::new("10.0.0.2", 7001)]
        );

        // CLUSTER SLOTS: the hostname first, `?` resolved through the metadata's `ip`, or to
        // the node that was asked when there is none.
        let with_meta = |host: &str, port: i64, meta: Vec<Value>| {
            Value::Array(vec![b(host), i(port), b("id"), Value::Array(meta)])
        };
        let slots = Value::Array(vec![Value::Array(vec![
            i(0),
            i(16383),
            with_meta("localhost", 7000, vec![b("ip"), b("127.0.0.1")]),
            with_meta("?", 7001, vec![b("ip"), b("10.0.0.2")]),
            with_meta("?", 7002, vec![]),
        ])]);
        let t = Topology::from_cluster_slots(&slots, &asked).unwrap();
        assert_eq!(t.shards()[0].master, NodeAddr::new("localhost", 7000));
        assert_eq!(
            t.shards()[0].replicas,
            vec![
                NodeAddr::new("10.0.0.2", 7001),
                NodeAddr::new("127.0.0.1", 7002)
            ]
        );
    }

    #[test]
    fn unknown_endpoints_mean_the_host_that_was_asked_not_the_ip() {
        // `cluster-preferred-endpoint-type unknown-endpoint`, as Redis 7 sends it: an empty
        // `endpoint` beside the node's (internal) `ip` in CLUSTER SHARDS, a NULL host in CLUSTER
        // SLOTS. Both mean the endpoint the client asked on.
        let asked = NodeAddr::new("lb.example.com", 7000);
        let (i, s) = (Value::Integer, b);
        let shards = one_shard(vec![
            vec![("id", s("a")), ("port", i(7000)), ("ip", s("10.0.0.1"))]
                .into_iter()
                .chain([("endpoint", s("")), ("role", s("master"))])
                .collect(),
            vec![("id", s("b")), ("port", i(7001)), ("ip", s("10.0.0.2"))]
                .into_iter()
                .chain([("endpoint", s("")), ("role", s("replica"))])
                .chain([("health", s("online"))])
                .collect(),
        ]);
        let t = Topology::from_cluster_shards_over(&shards, &asked, Transport::Plain).unwrap();
        assert_eq!(t.shards()[0].master, NodeAddr::new("lb.example.com", 7000));
        assert_eq!(
            t.shards()[0].replicas,
            vec![NodeAddr::new("lb.example.com", 7001)]
        );

        let slots = Value::Array(vec![Value::Array(vec![
            i(0),
            i(16383),
            Value::Array(vec![Value::Null, i(7000), b("a")]),
            Value::Array(vec![Value::Null, i(7001), b("b"), Value::Map(vec![])]),
        ])]);
        let t = Topology::from_cluster_slots(&slots, &asked).unwrap();
        assert_eq!(t.shards()[0].master, NodeAddr::new("lb.example.com", 7000));
        assert_eq!(
            t.shards()[0].replicas,
            vec![NodeAddr::new("lb.example.com", 7001)]
        );
        // Anything else that is not text is still refused.
        let bad = Value::Array(vec![Value::Array(vec![
            i(0),
            i(16383),
            Value::Array(vec![i(5), i(7000)]),
        ])]);
        assert!(Topology::from_cluster_slots(&bad, &asked).is_err());
    }

    #[test]
    fn nodes_without_an_address_are_left_out_not_fatal() {
        // What Redis 7 lists for a `noaddr` node: no port, empty ip and endpoint.
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let (i, s) = (Value::Integer, b);
        let noaddr = |role: &str| {
            vec![("id", s("gone")), ("ip", s("")), ("endpoint", s(""))]
                .into_iter()
                .chain([("role", s(role)), ("health", s("loading"))])
                .collect::<Vec<_>>()
        };
        let master = vec![("id", s("a")), ("port", i(7000)), ("ip", s("127.0.0.1"))]
            .into_iter()
            .chain([("role", s("master")), ("health", s("online"))])
            .collect::<Vec<_>>();
        let t = Topology::from_cluster_shards(&one_shard(vec![master, noaddr("replica")]), &asked)
            .unwrap();
        assert_eq!(t.covered_slots(), 16384);
        assert_eq!(t.shards()[0].master, NodeAddr::new("127.0.0.1", 7000));
        assert!(t.shards()[0].replicas.is_empty());
        // A master without an address: its shard has no owner in this view, nothing fails.
        let replica = vec![("id", s("b")), ("port", i(7001)), ("ip", s("127.0.0.1"))]
            .into_iter()
            .chain([("role", s("replica")), ("health", s("online"))])
            .collect::<Vec<_>>();
        let t = Topology::from_cluster_shards(&one_shard(vec![noaddr("master"), replica]), &asked)
            .unwrap();
        assert_eq!(t.covered_slots(), 0);
    }

    #[test]
    fn a_failed_master_listed_beside_its_successor_is_not_the_shards_master() {
        // Valkey 8.1 (and Redis 7.2+) after a failover whose old master is still down: both in
        // one shard, both `role master`, the old one `health fail`. The order depends on when
        // the answering node learned each of them, so both orders must give the live one.
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let (i, s) = (Value::Integer, b);
        let node = |port: i64, health: &str| {
            vec![("id", s("x")), ("port", i(port)), ("ip", s("127.0.0.1"))]
                .into_iter()
                .chain([("role", s("master")), ("health", s(health))])
                .collect::<Vec<_>>()
        };
        for nodes in [
            vec![node(7000, "fail"), node(7003, "online")],
            vec![node(7003, "online"), node(7000, "fail")],
        ] {
            let t = Topology::from_cluster_shards(&one_shard(nodes), &asked).unwrap();
            assert_eq!(t.shards()[0].master, NodeAddr::new("127.0.0.1", 7003));
        }
        // A master that is failing and alone is still the shard's master.
        let t =
            Topology::from_cluster_shards(&one_shard(vec![node(7000, "fail")]), &asked).unwrap();
        assert_eq!(t.shards()[0].master, NodeAddr::new("127.0.0.1", 7000));
    }

    #[test]
    fn malformed_replies_are_errors() {
        let asked = NodeAddr::new("h", 1);
        for bad in [
            Value::Integer(1),
            Value::Array(vec![Value::Integer(1)]),
            Value::Array(vec![Value::Array(vec![
                Value::Integer(5),
                Value::Integer(1),
                node("h", 1, "x"),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Integer(0),
                Value::Integer(99999),
                node("h", 1, "x"),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Integer(0),
                Value::Integer(1),
                node("h", 70000, "x"),
            ])]),
        ] {
            assert!(
                Topology::from_cluster_slots(&bad, &asked).is_err(),
                "{bad:?}"
            );
        }
    }

    fn range(lo: i64, hi: i64, port: i64) -> Value {
        Value::Array(vec![
            Value::Integer(lo),
            Value::Integer(hi),
            node("127.0.0.1", port, "x"),
        ])
    }

    /// A `CLUSTER SHARDS` entry (RESP2 form) with one master and `replicas` online replicas.
    fn shard_entry(bounds: Vec<i64>, port: i64, replicas: usize) -> Value {
        let node = |port: i64, role: &str| {
            Value::Array(vec![
                b("port"),
                Value::Integer(port),
                b("ip"),
                b("127.0.0.1"),
                b("role"),
                b(role),
                b("health"),
                b("online"),
            ])
        };
        let mut nodes = vec![node(port, "master")];
        nodes.extend((0..replicas).map(|i| node(20000 + i as i64, "replica")));
        Value::Array(vec![
            b("slots"),
            Value::Array(bounds.into_iter().map(Value::Integer).collect()),
            b("nodes"),
            Value::Array(nodes),
        ])
    }

    #[test]
    fn cluster_slots_with_two_masters_claiming_a_slot_are_refused_naming_both() {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let reply = Value::Array(vec![range(0, 100, 7000), range(100, 16383, 7001)]);
        let err = Topology::from_cluster_slots(&reply, &asked).unwrap_err();
        assert_eq!(
            err,
            TopologyError::Overlap {
                slot: 100,
                first: NodeAddr::new("127.0.0.1", 7000),
                second: NodeAddr::new("127.0.0.1", 7001),
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("slot 100") && text.contains(":7000") && text.contains(":7001"),
            "{text}"
        );
        // The same master listing a slot twice is no valid reply either.
        let twice = Value::Array(vec![range(0, 10, 7000), range(5, 20, 7000)]);
        assert!(Topology::from_cluster_slots(&twice, &asked).is_err());
    }

    #[test]
    fn cluster_slots_with_more_ranges_than_slots_are_refused_at_once() {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        // 100,000 one-slot ranges of one master: each one fine, the whole absurd.
        let reply = Value::Array(
            (0..100_000)
                .map(|i| range(i % 16384, i % 16384, 7000))
                .collect(),
        );
        let started = std::time::Instant::now();
        let err = Topology::from_cluster_slots(&reply, &asked).unwrap_err();
        assert_eq!(err, TopologyError::TooManyRanges { ranges: 100_000 });
        assert!(err.to_string().contains("100000 slot ranges"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn slots_past_16383_and_backward_ranges_are_refused_naming_the_slot() {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        for (reply, want) in [
            (range(0, 16384, 7000), TopologyError::SlotOutOfRange(16384)),
            (range(-1, 5, 7000), TopologyError::SlotOutOfRange(-1)),
            (
                range(70000, 70001, 7000),
                TopologyError::SlotOutOfRange(70000),
            ),
            (
                range(9, 3, 7000),
                TopologyError::BackwardRange { start: 9, end: 3 },
            ),
        ] {
            let reply = Value::Array(vec![reply]);
            assert_eq!(
                Topology::from_cluster_slots(&reply, &asked).unwrap_err(),
                want
            );
        }
        let shards = Value::Array(vec![shard_entry(vec![0, 16384], 7000, 0)]);
        assert_eq!(
            Topology::from_cluster_shards(&shards, &asked).unwrap_err(),
            TopologyError::SlotOutOfRange(16384)
        );
    }

    #[test]
    fn cluster_shards_with_overlapping_shards_are_refused() {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let reply = Value::Array(vec![
            shard_entry(vec![0, 8191], 7000, 1),
            shard_entry(vec![8000, 16383], 7001, 1),
        ]);
        assert_eq!(
            Topology::from_cluster_shards(&reply, &asked).unwrap_err(),
            TopologyError::Overlap {
                slot: 8000,
                first: NodeAddr::new("127.0.0.1", 7000),
                second: NodeAddr::new("127.0.0.1", 7001),
            }
        );
        // Split across ranges of one shard's list, too.
        let reply = Value::Array(vec![
            shard_entry(vec![0, 10, 20, 30], 7000, 0),
            shard_entry(vec![31, 40, 5, 5], 7001, 0),
        ]);
        assert!(matches!(
            Topology::from_cluster_shards(&reply, &asked),
            Err(TopologyError::Overlap { slot: 5, .. })
        ));
    }

    #[test]
    fn cluster_shards_with_absurd_sizes_are_refused() {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        // More shards than slots.
        let many = Value::Array(
            (0..16_385)
                .map(|i| shard_entry(vec![], 7000 + i, 0))
                .collect(),
        );
        assert_eq!(
            Topology::from_cluster_shards(&many, &asked).unwrap_err(),
            TopologyError::TooManyShards { shards: 16_385 }
        );
        // One shard with 100,000 ranges.
        let bounds: Vec<i64> = (0..100_000).flat_map(|i| [i % 16384, i % 16384]).collect();
        let reply = Value::Array(vec![shard_entry(bounds, 7000, 0)]);
        let started = std::time::Instant::now();
        assert_eq!(
            Topology::from_cluster_shards(&reply, &asked).unwrap_err(),
            TopologyError::TooManyRanges { ranges: 100_000 }
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Ranges that are fine one by one but more than the slots across shards.
        let a: Vec<i64> = (0..8192).flat_map(|i| [i, i]).collect();
        let b2: Vec<i64> = (8192..16384).flat_map(|i| [i, i]).collect();
        let full = Value::Array(vec![shard_entry(a, 7000, 0), shard_entry(b2, 7001, 0)]);
        assert_eq!(
            Topology::from_cluster_shards(&full, &asked)
                .unwrap()
                .covered_slots(),
            16384,
            "one range per slot is still a valid cluster"
        );
        // A shard naming more nodes than MAX_NODES.
        let crowded = Value::Array(vec![shard_entry(vec![0, 16383], 7000, MAX_NODES)]);
        assert_eq!(
            Topology::from_cluster_shards(&crowded, &asked).unwrap_err(),
            TopologyError::TooManyNodes { max: MAX_NODES }
        );
    }

    #[test]
    fn a_slot_map_never_wraps_its_shard_index() {
        let mut map = reply_map();
        // MOVED to ever new addresses: the map grows to one shard per slot, then stops.
        for i in 0..u32::from(SLOTS) + 100 {
            let before = map.shards().len();
            let addr = NodeAddr::new(format!("10.0.{}.{}", i / 250, i % 250), 7000);
            let slot = (i % u32::from(SLOTS)) as u16;
            assert_eq!(
                map.patch_moved(slot, &addr),
                before < usize::from(SLOTS),
                "MOVED number {i}"
            );
        }
        assert_eq!(map.shards().len(), usize::from(SLOTS));
        assert!((0..SLOTS).all(|slot| map.master(slot).is_some()));
        assert!(!map.patch_moved(SLOTS, &NodeAddr::new("127.0.0.1", 7000)));
    }

    #[test]
    fn the_majority_view_wins_and_a_lone_dissenter_is_ignored() {
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let good = Topology::from_cluster_slots(&reply(), &asked).unwrap();
        let mut stale = good.clone();
        stale.shards[1].master = NodeAddr::new("127.0.0.1", 7004);
        let (view, n) = agreed_view(vec![good.clone(), stale, good.clone()]).unwrap();
        assert_eq!((view, n), (good, 2));
        assert!(agreed_view(Vec::new()).is_none());
    }

    #[test]
    fn moved_patches_one_slot() {
        let mut map = reply_map();
        map.patch_moved(42, &NodeAddr::new("127.0.0.1", 7002));
        assert_eq!(map.master(42).unwrap().port, 7002);
        assert_eq!(map.master(43).unwrap().port, 7000);
        map.patch_moved(43, &NodeAddr::new("127.0.0.1", 7009));
        assert_eq!(map.master(43).unwrap().port, 7009);
        assert_eq!(map.shards().len(), 4);
    }

    #[test]
    fn a_slot_reads_from_its_shards_replicas_and_a_patched_in_master_has_none() {
        let mut map = reply_map();
        let replicas = map.replicas(42).unwrap();
        assert_eq!(replicas.addrs(), &[ServerAddr::tcp("127.0.0.1", 7003)]);
        let by_addr: Vec<&NodeAddr> = replicas.connections().collect();
        assert_eq!(by_addr, vec![&NodeAddr::new("127.0.0.1", 7003)]);
        assert!(map.replicas(16000).unwrap().is_empty(), "7002 has none");
        map.patch_moved(42, &NodeAddr::new("127.0.0.1", 7009));
        assert!(map.replicas(42).unwrap().is_empty());
        assert_eq!(map.replicas(43).unwrap().len(), 1);
    }

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(
            "127.0.0.1:7000".parse::<NodeAddr>().unwrap(),
            NodeAddr::new("127.0.0.1", 7000)
        );
        let v6: NodeAddr = "[::1]:7000".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:7000");
        assert!("nope".parse::<NodeAddr>().is_err());
        assert!("h:99999".parse::<NodeAddr>().is_err());
    }
}
