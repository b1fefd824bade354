//! Asking the sentinels: which master they name (`SENTINEL GET-MASTER-ADDR-BY-NAME`, checked
//! with `ROLE`), which replicas and sentinels they list (`SENTINEL REPLICAS`, `SENTINEL
//! SENTINELS`), and learning the sentinels the client was not told about.
//!
//! Every query is a short-lived RESP2 connection with the sentinels' own settings
//! ([`SentinelConfig::query_config`]). The functions here own no state: the caller passes the
//! list of sentinels (and owns its order).

use redis_conn::{Cmd, Connection, Error, Node, ServerAddr, Value};

use crate::{SentinelConfig, SentinelError};

/// The most sentinels a client knows, configured and learned together: sentinels learned past
/// it are left out (configured ones are always kept). A deployment has 3 or 5.
pub const MAX_SENTINELS: usize = 64;

/// The most replicas a client keeps for reads; a longer `SENTINEL REPLICAS` list is cut there.
pub const MAX_REPLICAS: usize = 64;

/// Flags of a `SENTINEL SENTINELS` entry that leave it out.
pub(crate) const SENTINEL_DOWN: &[&str] = &["s_down", "o_down"];

/// Flags of a `SENTINEL REPLICAS` entry that leave it out.
pub(crate) const REPLICA_DOWN: &[&str] = &["s_down", "o_down", "disconnected"];

/// Asks the sentinels in order; the first that names a master that answers ROLE as master wins
/// and moves to the front of `sentinels`.
pub(crate) async fn discover(
    config: &SentinelConfig,
    sentinels: &mut Vec<ServerAddr>,
) -> Result<(ServerAddr, Node), SentinelError> {
    let mut reason = String::from("no sentinel configured");
    for i in 0..sentinels.len() {
        let sentinel = &sentinels[i];
        let addr = match ask_sentinel(config, sentinel).await {
            Ok(addr) => addr,
            Err(e) => {
                reason = format!("sentinel {sentinel}: {e}");
                continue;
            }
        };
        match connect_to_master(config, sentinel, &addr).await {
            Ok(node) => {
                let answered = sentinels.remove(i);
                sentinels.insert(0, answered);
                return Ok((addr, node));
            }
            Err(why) => reason = why,
        }
    }
    Err(SentinelError::NoMaster {
        name: config.master_name.clone(),
        reason,
    })
}

/// Connects to `addr`, which `sentinel` named as the master, and checks with ROLE that it is
/// one (a sentinel with a stale view names a demoted master); the reason when it is not.
async fn connect_to_master(
    config: &SentinelConfig,
    sentinel: &ServerAddr,
    addr: &ServerAddr,
) -> Result<Node, String> {
    let node = Node::connect(config.node_at(addr))
        .await
        .map_err(|e| format!("master {addr} from sentinel {sentinel}: {e}"))?;
    match node.send(Cmd::new("ROLE")).await {
        Ok(role) if says_master(&role) => Ok(node),
        Ok(other) => {
            node.close();
            Err(format!(
                "sentinel {sentinel} named {addr}, which is not a master (ROLE: {other:?})"
            ))
        }
        Err(e) => {
            node.close();
            Err(format!("ROLE on {addr}: {e}"))
        }
    }
}

/// Whether `node` says it is a master.
pub(crate) async fn is_master(node: &Node) -> bool {
    node.send(Cmd::new("ROLE"))
        .await
        .is_ok_and(|role| says_master(&role))
}

/// Whether a `ROLE` reply is a master's.
fn says_master(role: &Value) -> bool {
    matches!(role, Value::Array(parts)
        if parts.first().and_then(Value::as_bytes).map(|b| &b[..]) == Some(b"master"))
}

/// The master `sentinel` names (`SENTINEL GET-MASTER-ADDR-BY-NAME`), or why there is none.
pub(crate) async fn ask_sentinel(
    config: &SentinelConfig,
    sentinel: &ServerAddr,
) -> Result<ServerAddr, String> {
    let reply = query(config, sentinel, "GET-MASTER-ADDR-BY-NAME").await;
    match reply.map_err(|e| e.to_string())? {
        Value::Array(parts) if parts.len() == 2 => {
            let port = text(&parts[1])
                .parse()
                .map_err(|_| format!("bad port in {parts:?}"))?;
            Ok(ServerAddr::tcp(text(&parts[0]), port))
        }
        Value::Null => Err(format!("does not know {}", config.master_name)),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// Sends `SENTINEL <subcommand> <master name>` to `sentinel` on a connection of its own.
async fn query(
    config: &SentinelConfig,
    sentinel: &ServerAddr,
    subcommand: &str,
) -> Result<Value, Error> {
    let conn = Connection::connect(config.query_config(sentinel)).await?;
    let reply = conn
        .send(
            Cmd::new("SENTINEL")
                .arg(subcommand)
                .arg(&config.master_name),
        )
        .await;
    conn.close();
    reply
}

/// Asks the sentinels in order for a list of nodes (`SENTINEL <subcommand> <master>`: SENTINELS,
/// REPLICAS) and returns the addresses the first that answers lists (see [`listed_addrs`]).
pub(crate) async fn listed_nodes(
    config: &SentinelConfig,
    sentinels: &[ServerAddr],
    subcommand: &str,
    skip: &[&str],
    cap: usize,
) -> Option<Vec<ServerAddr>> {
    for sentinel in sentinels {
        if let Ok(Value::Array(entries)) = query(config, sentinel, subcommand).await {
            return Some(listed_addrs(&entries, skip, cap));
        }
    }
    None
}

/// The addresses of the entries flagged with none of `skip`: the first `cap` of them, without
/// repeats.
fn listed_addrs(entries: &[Value], skip: &[&str], cap: usize) -> Vec<ServerAddr> {
    let mut addrs: Vec<ServerAddr> = Vec::new();
    for entry in entries {
        if addrs.len() >= cap {
            break;
        }
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
            let addr = ServerAddr::tcp(get("ip"), port);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    addrs
}

/// Learns the sentinels not known yet (`SENTINEL SENTINELS`, skipping those flagged down): adds
/// them to `sentinels` (see [`add_learned`]) and returns them.
pub(crate) async fn learn_sentinels(
    config: &SentinelConfig,
    sentinels: &mut Vec<ServerAddr>,
) -> Vec<ServerAddr> {
    let listed = listed_nodes(config, sentinels, "SENTINELS", SENTINEL_DOWN, MAX_SENTINELS)
        .await
        .unwrap_or_default();
    let learned = add_learned(sentinels, listed);
    if !learned.is_empty() {
        tracing::info!(count = learned.len(), "learned sentinels");
    }
    learned
}

/// Adds the sentinels of `listed` not in `known` at its end, while it holds fewer than
/// [`MAX_SENTINELS`]; returns those added.
fn add_learned(known: &mut Vec<ServerAddr>, listed: Vec<ServerAddr>) -> Vec<ServerAddr> {
    let room = MAX_SENTINELS.saturating_sub(known.len());
    let learned: Vec<ServerAddr> = listed
        .into_iter()
        .filter(|addr| !known.contains(addr))
        .take(room)
        .collect();
    known.extend(learned.iter().cloned());
    learned
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

/// A bulk string as text (lossy); anything else as empty.
fn text(v: &Value) -> String {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Value {
        Value::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// A `SENTINEL REPLICAS`/`SENTINELS` entry as RESP2 gives it (a flat array).
    fn entry(ip: &str, port: &str, flags: &str) -> Value {
        let fields = [("name", "x"), ("ip", ip), ("port", port), ("flags", flags)];
        Value::Array(
            fields
                .iter()
                .flat_map(|(k, v)| [bulk(k), bulk(v)])
                .collect(),
        )
    }

    #[test]
    fn listed_nodes_skip_the_flagged_and_repeated_up_to_the_cap() {
        let entries = vec![
            entry("10.0.0.1", "6379", "slave"),
            entry("10.0.0.2", "6379", "slave,s_down"),
            entry("10.0.0.1", "6379", "slave"),
            entry("10.0.0.3", "nope", "slave"),
            Value::Map(vec![
                (bulk("ip"), bulk("10.0.0.4")),
                (bulk("port"), bulk("6380")),
                (bulk("flags"), bulk("slave")),
            ]),
            entry("10.0.0.5", "6379", "slave"),
        ];
        let listed = listed_addrs(&entries, REPLICA_DOWN, 64);
        assert_eq!(
            listed,
            vec![
                ServerAddr::tcp("10.0.0.1", 6379),
                ServerAddr::tcp("10.0.0.4", 6380),
                ServerAddr::tcp("10.0.0.5", 6379),
            ]
        );
        assert_eq!(listed_addrs(&entries, REPLICA_DOWN, 2).len(), 2);
    }

    #[test]
    fn learned_sentinels_stop_at_the_cap_and_configured_ones_stay() {
        let sentinel = |i: usize| ServerAddr::tcp("10.0.0.1", 26379 + i as u16);
        let mut known: Vec<ServerAddr> = (0..3).map(sentinel).collect();
        let learned = add_learned(&mut known, (1..200).map(sentinel).collect());
        assert_eq!(learned.len(), MAX_SENTINELS - 3);
        assert_eq!(learned[0], sentinel(3), "known ones are not learned again");
        assert_eq!(known.len(), MAX_SENTINELS);
        assert_eq!(&known[..3], &[sentinel(0), sentinel(1), sentinel(2)]);
        assert!(add_learned(&mut known, vec![sentinel(500)]).is_empty());
    }

    #[test]
    fn only_a_master_s_role_reply_says_master() {
        assert!(says_master(&Value::Array(vec![
            bulk("master"),
            Value::Integer(0)
        ])));
        assert!(!says_master(&Value::Array(vec![bulk("slave")])));
        assert!(!says_master(&Value::Array(Vec::new())));
        assert!(!says_master(&bulk("master")));
    }
}
