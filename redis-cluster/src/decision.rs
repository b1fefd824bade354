//! What to do after a node refused or failed a command: one pure decision for single commands,
//! reads sent to replicas, transactions and the parts of a pipeline, so that `MOVED`, `ASK`,
//! `TRYAGAIN`, `CLUSTERDOWN`, `READONLY` and a closed node mean the same thing everywhere.
//!
//! The decision reads the error, the attempt (how many redirects so far, whether it went after
//! `ASKING`) and the sender's rules; it touches no socket, no map and no clock: the caller does
//! what the [`Step`] says (patches the map, triggers a refresh, waits, sends again).

use std::time::Duration;

use redis_conn::{Error, ServerError};

use crate::{NodeAddr, Redirect, RedirectKind};

/// The pause before routing again after a `CLUSTERDOWN` or `TRYAGAIN` (times the attempt):
/// 50, 100, 150... ms, so that a cluster settling after a failover (about a second at most)
/// is waited out within the default 5 redirects.
pub(crate) const SETTLE_PAUSE: Duration = Duration::from_millis(50);

/// Who sends, which says what it can do again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// A single command: follows `MOVED` and `ASK`, goes again to the slot's owner after its
    /// node was closed under it (nothing was sent), waits out a settling cluster; all within
    /// the redirect budget.
    Command,
    /// `MULTI` ... `EXEC`: follows a `MOVED` met while queueing (nothing ran), within the
    /// budget; any other failure is the answer.
    Transaction,
    /// One reply of a node's share of a pipeline: a command that did not run (a redirect, a
    /// settling cluster) is resent on its own, as a single command (which then spends its own
    /// budget); any other error reply stays in its place.
    PipelinePart,
    /// A read sent to a replica: after a redirect (the slot moved) or an error that says the
    /// topology may have changed, the master answers instead; other errors are the answer.
    ReplicaRead,
}

/// The sender's rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Who sends.
    pub(crate) sender: Sender,
    /// Redirects (and settle retries) followed per command before giving up.
    pub(crate) max_redirects: u32,
    /// The client was closed: a closed node is then final, not a reason to go elsewhere.
    pub(crate) client_closed: bool,
}

/// Where a command stands after the attempts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// Redirects, reroutes and settle retries followed.
    pub(crate) redirects: u32,
    /// The last attempt went after `ASKING`.
    pub(crate) asking: bool,
}

impl Attempt {
    /// The next attempt, after one more redirect, sent after `ASKING` or not.
    #[must_use]
    pub(crate) fn redirected(self, asking: bool) -> Attempt {
        Attempt {
            redirects: self.redirects + 1,
            asking,
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The slot moved: patch the map with its new owner, refresh, send there.
    Moved(Redirect),
    /// The slot is migrating: send there after `ASKING`; refresh first when `refresh` (a
    /// second `ASK` in a row says the map is likely behind).
    Ask {
        /// Where to go.
        redirect: Redirect,
        /// Whether to refresh the topology.
        refresh: bool,
    },
    /// The node was closed under the command (a refresh retired it) before it was sent: send
    /// again, at once, to whoever serves the slot now.
    Reroute,
    /// The cluster is settling (`CLUSTERDOWN`, `TRYAGAIN`) and the command did not run:
    /// refresh, wait `after`, send again to whoever serves the slot then.
    Retry {
        /// The pause.
        after: Duration,
    },
    /// A pipeline's command that did not run: resend it on its own, through the routing.
    Resend,
    /// A read the replica could not serve: refresh, and read from the master.
    ReadFromMaster,
    /// Redirects went on past the budget.
    TooManyRedirects {
        /// The redirect that was one too many.
        redirect: Redirect,
        /// How many were followed.
        redirects: u32,
    },
    /// The error is the answer; refresh first when `refresh` (it says the topology may have
    /// changed).
    Fail {
        /// Whether to refresh the topology.
        refresh: bool,
    },
}

/// What to do after `error` came from the node at `replied_by` on `attempt`.
pub(crate) fn decide(error: &Error, replied_by: &NodeAddr, attempt: Attempt, rules: Rules) -> Step {
    let budget_left = attempt.redirects < rules.max_redirects;
    let redirect = match error {
        Error::Server(server) => Redirect::parse(server, replied_by),
        _ => None,
    };
    match rules.sender {
        Sender::PipelinePart if redirect.is_some() || is_settling(error) => Step::Resend,
        Sender::PipelinePart => Step::Fail { refresh: false },
        Sender::ReplicaRead if is_redirect(error) || needs_refresh(error) => Step::ReadFromMaster,
        Sender::ReplicaRead => Step::Fail { refresh: false },
        Sender::Transaction => match redirect {
            Some(r) if r.kind == RedirectKind::Moved => follow(r, attempt, rules),
            _ => Step::Fail {
                refresh: needs_refresh(error),
            },
        },
        Sender::Command => match redirect {
            Some(r) => follow(r, attempt, rules),
            None if matches!(error, Error::Closed { .. })
                && !rules.client_closed
                && budget_left =>
            {
                Step::Reroute
            }
            None if is_settling(error) && budget_left => Step::Retry {
                after: SETTLE_PAUSE * (attempt.redirects + 1),
            },
            None => Step::Fail {
                refresh: needs_refresh(error),
            },
        },
    }
}

/// Follows a redirect, within the budget.
fn follow(redirect: Redirect, attempt: Attempt, rules: Rules) -> Step {
    if attempt.redirects >= rules.max_redirects {
        return Step::TooManyRedirects {
            redirect,
            redirects: attempt.redirects,
        };
    }
    match redirect.kind {
        RedirectKind::Moved => Step::Moved(redirect),
        RedirectKind::Ask => Step::Ask {
            redirect,
            refresh: attempt.asking,
        },
    }
}

/// A `MOVED` or `ASK` reply, well formed or not.
fn is_redirect(error: &Error) -> bool {
    matches!(error, Error::Server(e) if e.is_moved() || e.is_ask())
}

/// A server error that says the cluster is settling and the command did not run.
fn is_settling(error: &Error) -> bool {
    matches!(error, Error::Server(e) if matches!(e.code(), "CLUSTERDOWN" | "TRYAGAIN"))
}

/// Errors after which the topology may have changed.
pub(crate) fn needs_refresh(error: &Error) -> bool {
    match error {
        Error::Server(e) => e.is_readonly() || e.code() == "CLUSTERDOWN",
        Error::ConnectionLost { .. }
        | Error::Connect { .. }
        | Error::ConnectTimeout { .. }
        | Error::Timeout { .. }
        | Error::Closed { .. } => true,
        _ => false,
    }
}

/// An error reply as the error it stands for.
pub(crate) fn reply_error(message: &bytes::Bytes) -> Error {
    Error::Server(ServerError::new(message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_conn::Sent;

    fn server(text: &str) -> Error {
        reply_error(&bytes::Bytes::copy_from_slice(text.as_bytes()))
    }

    fn rules(sender: Sender) -> Rules {
        Rules {
            sender,
            max_redirects: 2,
            client_closed: false,
        }
    }

    fn me() -> NodeAddr {
        NodeAddr::new("10.0.0.1", 7000)
    }

    fn at(redirects: u32, asking: bool) -> Attempt {
        Attempt { redirects, asking }
    }

    fn redirect(kind: RedirectKind, port: u16) -> Redirect {
        Redirect {
            kind,
            slot: 12,
            addr: NodeAddr::new("10.0.0.2", port),
        }
    }

    fn closed() -> Error {
        Error::Closed {
            reason: "retired".into(),
        }
    }

    fn lost() -> Error {
        Error::ConnectionLost {
            addr: "10.0.0.1:7000".into(),
            reason: "reset".into(),
            sent: Sent::Maybe,
        }
    }

    #[test]
    fn a_command_follows_moved_and_ask_within_the_budget() {
        let command = rules(Sender::Command);
        let moved = server("MOVED 12 10.0.0.2:7001");
        assert_eq!(
            decide(&moved, &me(), at(0, false), command),
            Step::Moved(redirect(RedirectKind::Moved, 7001))
        );
        let ask = server("ASK 12 10.0.0.2:7002");
        assert_eq!(
            decide(&ask, &me(), at(1, false), command),
            Step::Ask {
                redirect: redirect(RedirectKind::Ask, 7002),
                refresh: false
            }
        );
        // A second ASK in a row: the map is likely behind.
        assert_eq!(
            decide(&ask, &me(), at(1, true), command),
            Step::Ask {
                redirect: redirect(RedirectKind::Ask, 7002),
                refresh: true
            }
        );
        for (error, kind, port) in [
            (moved, RedirectKind::Moved, 7001),
            (ask, RedirectKind::Ask, 7002),
        ] {
            assert_eq!(
                decide(&error, &me(), at(2, false), command),
                Step::TooManyRedirects {
                    redirect: redirect(kind, port),
                    redirects: 2
                }
            );
        }
    }

    #[test]
    fn a_command_goes_again_after_a_closed_node_unless_the_client_closed() {
        let command = rules(Sender::Command);
        assert_eq!(
            decide(&closed(), &me(), at(1, true), command),
            Step::Reroute
        );
        // Out of budget, or the caller closed the client: the error is the answer.
        assert_eq!(
            decide(&closed(), &me(), at(2, false), command),
            Step::Fail { refresh: true }
        );
        let closing = Rules {
            client_closed: true,
            ..command
        };
        assert_eq!(
            decide(&closed(), &me(), at(0, false), closing),
            Step::Fail { refresh: true }
        );
    }

    #[test]
    fn a_command_waits_out_a_settling_cluster_longer_each_time() {
        let command = rules(Sender::Command);
        for code in ["CLUSTERDOWN The cluster is down", "TRYAGAIN Multiple keys"] {
            let error = server(code);
            assert_eq!(
                decide(&error, &me(), at(0, false), command),
                Step::Retry {
                    after: SETTLE_PAUSE
                }
            );
            assert_eq!(
                decide(&error, &me(), at(1, true), command),
                Step::Retry {
                    after: SETTLE_PAUSE * 2
                }
            );
        }
        // Out of budget: CLUSTERDOWN asks for a refresh, TRYAGAIN (a migration) does not.
        assert_eq!(
            decide(&server("CLUSTERDOWN down"), &me(), at(2, false), command),
            Step::Fail { refresh: true }
        );
        assert_eq!(
            decide(&server("TRYAGAIN keys"), &me(), at(2, false), command),
            Step::Fail { refresh: false }
        );
    }

    #[test]
    fn other_failures_are_the_answer_and_some_ask_for_a_refresh() {
        let command = rules(Sender::Command);
        let cases = [
            (
                server("READONLY You can't write against a read only replica."),
                true,
            ),
            (server("ERR wrong number of arguments"), false),
            (server("MOVED nonsense"), false),
            (lost(), true),
            (
                Error::Timeout {
                    timeout: Duration::from_secs(1),
                    sent: Sent::Maybe,
                },
                true,
            ),
            (Error::Unsupported("no".into()), false),
        ];
        each_fails(cases, command);
    }

    /// Each error, on a first attempt, is the answer, with a refresh or not.
    fn each_fails(cases: impl IntoIterator<Item = (Error, bool)>, rules: Rules) {
        for (error, refresh) in cases {
            assert_eq!(
                decide(&error, &me(), at(0, false), rules),
                Step::Fail { refresh },
                "{error}"
            );
        }
    }

    #[test]
    fn a_refusal_after_an_attempt_that_may_have_run_is_the_answer_not_followed() {
        // The connection reports a MOVED (or TRYAGAIN...) met by a resend, after an attempt
        // that may have run, as a lost connection that may have run (`Sent::Maybe` sticks):
        // following it could run the command twice.
        let refused_after_maybe = Error::ConnectionLost {
            addr: "10.0.0.1:7000".into(),
            reason: "an earlier attempt may have run, and the resend was refused: MOVED 12 :7001"
                .into(),
            sent: Sent::Maybe,
        };
        for sender in [Sender::Command, Sender::Transaction] {
            assert_eq!(
                decide(&refused_after_maybe, &me(), at(0, false), rules(sender)),
                Step::Fail { refresh: true },
                "{sender:?}"
            );
        }
    }

    #[test]
    fn a_transaction_follows_moved_only() {
        let transaction = rules(Sender::Transaction);
        assert_eq!(
            decide(&server("MOVED 12 :7001"), &me(), at(0, false), transaction),
            Step::Moved(Redirect {
                kind: RedirectKind::Moved,
                slot: 12,
                addr: NodeAddr::new("10.0.0.1", 7001)
            })
        );
        assert_eq!(
            decide(&server("MOVED 12 :7001"), &me(), at(2, false), transaction),
            Step::TooManyRedirects {
                redirect: Redirect {
                    kind: RedirectKind::Moved,
                    slot: 12,
                    addr: NodeAddr::new("10.0.0.1", 7001)
                },
                redirects: 2
            }
        );
        let cases = [
            (server("ASK 12 :7001"), false),
            (server("CLUSTERDOWN down"), true),
            (server("TRYAGAIN keys"), false),
            (closed(), true),
            (lost(), true),
        ];
        each_fails(cases, transaction);
    }

    #[test]
    fn a_replica_read_falls_back_to_the_master_when_the_replica_cannot_serve_it() {
        let read = rules(Sender::ReplicaRead);
        for error in [
            server("MOVED 12 :7001"),
            server("ASK 12 :7001"),
            server("MOVED garbled"),
            server("CLUSTERDOWN down"),
            server("READONLY replica"),
            closed(),
            lost(),
        ] {
            assert_eq!(
                decide(&error, &me(), at(0, false), read),
                Step::ReadFromMaster,
                "{error}"
            );
        }
        let answers = ["TRYAGAIN keys", "ERR no", "WRONGTYPE no"].map(|text| (server(text), false));
        each_fails(answers, read);
    }

    #[test]
    fn a_pipeline_resends_what_did_not_run_whatever_the_budget() {
        let part = Rules {
            max_redirects: 0,
            ..rules(Sender::PipelinePart)
        };
        for text in [
            "MOVED 12 :7001",
            "ASK 12 :7001",
            "CLUSTERDOWN down",
            "TRYAGAIN keys",
        ] {
            assert_eq!(
                decide(&server(text), &me(), at(0, false), part),
                Step::Resend,
                "{text}"
            );
        }
        // Other error replies stay in their place, with no refresh.
        let kept = ["READONLY replica", "ERR no", "WRONGTYPE no"].map(|text| (server(text), false));
        each_fails(kept, part);
    }
}
