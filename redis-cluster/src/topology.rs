//! Cluster topology: who serves which slots (masters and replicas), read from `CLUSTER SLOTS`,
//! agreed between several nodes, and kept as a slot map.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use redis_conn::{ServerAddr, Value};

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

/// Why a topology could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The reply did not have the shape of `CLUSTER SLOTS`.
    #[error("unexpected CLUSTER SLOTS reply: {0}")]
    BadReply(String),
    /// An address could not be parsed.
    #[error("bad node address {0:?}")]
    BadAddress(String),
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

impl Topology {
    /// Reads a `CLUSTER SLOTS` reply. `asked` is the node that sent it: an empty host in the reply
    /// means "the address you reached me at".
    ///
    /// # Errors
    /// [`TopologyError`] when the reply is not shaped like `CLUSTER SLOTS`.
    pub fn from_cluster_slots(reply: &Value, asked: &NodeAddr) -> Result<Topology, TopologyError> {
        let bad = |what: &str| TopologyError::BadReply(what.to_string());
        let Value::Array(ranges) = reply else {
            return Err(bad("not an array"));
        };
        let node = |v: &Value| -> Result<(NodeAddr, Option<String>), TopologyError> {
            let Value::Array(parts) = v else {
                return Err(bad("a node is not an array"));
            };
            let host = parts
                .first()
                .and_then(text)
                .ok_or_else(|| bad("node without host"))?;
            let port = parts
                .get(1)
                .and_then(int)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad("node without a valid port"))?;
            let host = if host.is_empty() || host == "?" {
                asked.host.clone()
            } else {
                host
            };
            Ok((NodeAddr::new(host, port), parts.get(2).and_then(text)))
        };
        let mut by_master: BTreeMap<NodeAddr, Shard> = BTreeMap::new();
        for range in ranges {
            let Value::Array(parts) = range else {
                return Err(bad("a range is not an array"));
            };
            let slot = |i: usize| {
                parts
                    .get(i)
                    .and_then(int)
                    .and_then(|s| u16::try_from(s).ok())
                    .filter(|&s| s < SLOTS)
                    .ok_or_else(|| bad("a range without valid slots"))
            };
            let (start, end) = (slot(0)?, slot(1)?);
            if start > end {
                return Err(bad("a range that ends before it starts"));
            }
            let (master, master_id) =
                node(parts.get(2).ok_or_else(|| bad("range without master"))?)?;
            let shard = by_master.entry(master.clone()).or_insert_with(|| Shard {
                ranges: Vec::new(),
                master,
                master_id,
                replicas: Vec::new(),
            });
            shard.ranges.push((start, end));
            for replica in &parts[3..] {
                let (addr, _) = node(replica)?;
                if !shard.replicas.contains(&addr) {
                    shard.replicas.push(addr);
                }
            }
        }
        let mut shards: Vec<Shard> = by_master.into_values().collect();
        for shard in &mut shards {
            shard.ranges.sort_unstable();
            shard.replicas.sort();
        }
        Ok(Topology { shards })
    }

    /// Reads a `CLUSTER SHARDS` reply (Redis 7+; RESP2 or RESP3). It reports node health, so
    /// replicas that are not `online` are left out, and lists replicas as soon as they are attached.
    /// `asked` stands in for nodes that announce no address.
    ///
    /// # Errors
    /// [`TopologyError`] when the reply is not shaped like `CLUSTER SHARDS`.
    pub fn from_cluster_shards(reply: &Value, asked: &NodeAddr) -> Result<Topology, TopologyError> {
        let bad = |what: &str| TopologyError::BadReply(format!("CLUSTER SHARDS: {what}"));
        let Value::Array(entries) = reply else {
            return Err(bad("not an array"));
        };
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
            let mut ranges = Vec::new();
            for pair in bounds.chunks(2) {
                let [a, b] = pair else {
                    return Err(bad("odd slot bounds"));
                };
                let slot = |v: &Value| {
                    int(v)
                        .and_then(|s| u16::try_from(s).ok())
                        .filter(|&s| s < SLOTS)
                        .ok_or_else(|| bad("a bad slot"))
                };
                let (a, b) = (slot(a)?, slot(b)?);
                if a > b {
                    return Err(bad("a range that ends before it starts"));
                }
                ranges.push((a, b));
            }
            if ranges.is_empty() {
                continue;
            }
            let Some(Value::Array(nodes)) = get("nodes") else {
                return Err(bad("a shard without nodes"));
            };
            let mut master = None;
            let mut replicas = Vec::new();
            for node in nodes {
                let f = fields(node).ok_or_else(|| bad("a node is not a map"))?;
                let text_of = |name: &str| {
                    f.iter()
                        .find(|(k, _)| k == name)
                        .and_then(|(_, v)| text(v))
                        .unwrap_or_default()
                };
                let port = f
                    .iter()
                    .find(|(k, _)| k == "port")
                    .and_then(|(_, v)| int(v))
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| bad("a node without a valid port"))?;
                let host = [text_of("endpoint"), text_of("ip")]
                    .into_iter()
                    .find(|h| !h.is_empty() && h != "?")
                    .unwrap_or_else(|| asked.host.clone());
                let addr = NodeAddr::new(host, port);
                match text_of("role").as_str() {
                    "master" => master = Some((addr, Some(text_of("id")))),
                    _ if text_of("health") == "online" => replicas.push(addr),
                    _ => {}
                }
            }
            let Some((master, master_id)) = master else {
                // A shard whose master is gone from the view: its slots stay unowned here.
                continue;
            };
            ranges.sort_unstable();
            replicas.sort();
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
        for (i, shard) in self.shards.iter().enumerate() {
            for &(a, b) in &shard.ranges {
                for slot in a..=b {
                    owner[usize::from(slot)] = i as u16;
                }
            }
        }
        SlotMap {
            owner,
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
}

impl SlotMap {
    /// The shard that serves `slot`.
    pub fn shard(&self, slot: u16) -> Option<&Shard> {
        let i = *self.owner.get(usize::from(slot))?;
        self.shards.get(usize::from(i))
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

    /// Applies a `MOVED`: `slot` now lives on `addr` (a known master, or a new one).
    pub fn patch_moved(&mut self, slot: u16, addr: &NodeAddr) {
        let index = match self.shards.iter().position(|s| &s.master == addr) {
            Some(i) => i,
            None => {
                self.shards.push(Shard {
                    ranges: vec![(slot, slot)],
                    master: addr.clone(),
                    master_id: None,
                    replicas: Vec::new(),
                });
                self.shards.len() - 1
            }
        };
        if let Some(o) = self.owner.get_mut(usize::from(slot)) {
            *o = index as u16;
        }
    }

    /// Every node address (masters and replicas), without repeats.
    pub fn nodes(&self) -> Vec<NodeAddr> {
        let mut seen: HashMap<&NodeAddr, ()> = HashMap::new();
        let mut out = Vec::new();
        for shard in &self.shards {
            for addr in std::iter::once(&shard.master).chain(&shard.replicas) {
                if seen.insert(addr, ()).is_none() {
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
        let to_map = |flat: &Value| match flat {
            Value::Array(items) => Value::Map(
                items
                    .chunks(2)
                    .map(|kv| (kv[0].clone(), kv[1].clone()))
                    .collect(),
            ),
            other => other.clone(),
        };
        let Value::Array(entries) = &resp2 else {
            unreachable!()
        };
        let resp3 = Value::Array(
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
        );
        assert_eq!(Topology::from_cluster_shards(&resp3, &asked).unwrap(), t);
        assert!(Topology::from_cluster_shards(&Value::Integer(1), &asked).is_err());
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
        let asked = NodeAddr::new("127.0.0.1", 7000);
        let mut map = Topology::from_cluster_slots(&reply(), &asked)
            .unwrap()
            .slot_map();
        map.patch_moved(42, &NodeAddr::new("127.0.0.1", 7002));
        assert_eq!(map.master(42).unwrap().port, 7002);
        assert_eq!(map.master(43).unwrap().port, 7000);
        map.patch_moved(43, &NodeAddr::new("127.0.0.1", 7009));
        assert_eq!(map.master(43).unwrap().port, 7009);
        assert_eq!(map.shards().len(), 4);
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
