//! `MOVED` and `ASK` redirections.

use redis_conn::ServerError;

use crate::NodeAddr;

/// Which redirection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// The slot lives elsewhere now: retry there and update the slot map.
    Moved,
    /// The slot is migrating and this key is already on the target: send `ASKING` then the
    /// command there, once; the slot map does not change.
    Ask,
}

/// A parsed redirection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Moved or ask.
    pub kind: RedirectKind,
    /// The slot.
    pub slot: u16,
    /// Where to go.
    pub addr: NodeAddr,
}

impl Redirect {
    /// Reads `MOVED <slot> <host:port>` or `ASK <slot> <host:port>`. An empty host (`:6381`)
    /// means the host of the node that replied, `replied_by`; so does `?` here, for want of
    /// anything better (see [`Redirect::names_unknown_endpoint`]).
    pub fn parse(error: &ServerError, replied_by: &NodeAddr) -> Option<Redirect> {
        let kind = match error.code() {
            "MOVED" => RedirectKind::Moved,
            "ASK" => RedirectKind::Ask,
            _ => return None,
        };
        let message = error.message();
        let mut words = message.split_ascii_whitespace().skip(1);
        let slot = words.next()?.parse().ok()?;
        let endpoint = words.next()?;
        let (host, port) = endpoint.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() || host == "?" {
            replied_by.host.clone()
        } else {
            host.to_string()
        };
        Some(Redirect {
            kind,
            slot,
            addr: NodeAddr::new(host, port.parse().ok()?),
        })
    }
}

impl Redirect {
    /// Whether the redirection names its target `?:<port>`: a cluster that prefers hostnames
    /// redirecting to a node that has none. Redis documents `?` as an unknown node, not
    /// necessarily the one that replied, so [`Redirect::parse`]'s stand-in (the replying node's
    /// host) is only a last resort: the cluster client first looks for the one node its slot
    /// map knows on that port.
    pub fn names_unknown_endpoint(error: &ServerError) -> bool {
        matches!(error.code(), "MOVED" | "ASK")
            && error
                .message()
                .split_ascii_whitespace()
                .nth(2)
                .and_then(|endpoint| endpoint.rsplit_once(':'))
                .is_some_and(|(host, _)| host == "?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> ServerError {
        ServerError::new(s.as_bytes().to_vec().into())
    }

    #[test]
    fn moved_and_ask_parse_with_and_without_a_host() {
        let me = NodeAddr::new("10.0.0.1", 7000);
        assert_eq!(
            Redirect::parse(&err("MOVED 3999 127.0.0.1:6381"), &me),
            Some(Redirect {
                kind: RedirectKind::Moved,
                slot: 3999,
                addr: NodeAddr::new("127.0.0.1", 6381)
            })
        );
        let ask = Redirect::parse(&err("ASK 12 :7002"), &me).unwrap();
        assert_eq!(ask.kind, RedirectKind::Ask);
        assert_eq!(ask.addr, NodeAddr::new("10.0.0.1", 7002));
        assert_eq!(
            Redirect::parse(&err("MOVED 1 [::1]:7003"), &me)
                .unwrap()
                .addr,
            NodeAddr::new("::1", 7003)
        );
        assert!(Redirect::names_unknown_endpoint(&err("MOVED 3 ?:7004")));
        assert!(Redirect::names_unknown_endpoint(&err("ASK 3 ?:7004")));
        for known in ["MOVED 3 h:7004", "MOVED 3 :7004", "ERR ?:1", "MOVED 3"] {
            assert!(!Redirect::names_unknown_endpoint(&err(known)), "{known}");
        }
        for bad in [
            "ERR x",
            "MOVED",
            "MOVED x 1:2",
            "MOVED 1 nohostport",
            "ASK 1 h:port",
        ] {
            assert_eq!(Redirect::parse(&err(bad), &me), None, "{bad}");
        }
    }
}
