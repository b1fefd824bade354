//! The nodes a client keeps, by address, opened on first use, with one dial per address
//! however many callers ask at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_conn::{Error, Node, NodeConfig};

use crate::NodeAddr;

/// The nodes a client keeps, by address, opened on first use: one `Node` per address, however
/// many tasks ask for it at once. The first caller starts one dial (a task of its own, so that a
/// caller that gives up does not cancel it for the others); every caller waits for that dial's
/// outcome, success or error, bounded by the connect timeout and the call's deadline, so that
/// a burst of redirects to a new master opens one set of connections, and a burst sent to a dead
/// address fails once, together, instead of dialling again caller after caller. A dial's entry
/// is removed when it ends, so the map of dials in progress holds only dials in progress.
#[derive(Debug, Default)]
pub(crate) struct NodeSet {
    state: Arc<NodeSetState>,
}

/// What [`NodeSet`] shares with its dialling tasks.
#[derive(Debug, Default)]
struct NodeSetState {
    nodes: Mutex<HashMap<NodeAddr, Node>>,
    /// Dials in progress: each one's outcome, `None` until it ends.
    dialing: Mutex<HashMap<NodeAddr, DialOutcome>>,
    /// Set by `close`: a dial that ends afterwards closes its node instead of keeping it.
    closed: AtomicBool,
}

/// The outcome of one dial, shared by everyone waiting for it.
type DialOutcome = tokio::sync::watch::Receiver<Option<Result<Node, Error>>>;

/// Scheduling slack given to a dial's waiters on top of the dial's own bound.
const DIAL_SLACK: Duration = Duration::from_millis(100);

impl NodeSet {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeAddr, Node>> {
        self.state.lock_nodes()
    }

    pub(crate) fn cached(&self, addr: &NodeAddr) -> Option<Node> {
        self.state.cached(addr)
    }

    /// Closes every node, and those whose dial ends later.
    pub(crate) fn close(&self) {
        self.state.closed.store(true, Ordering::Release);
        for (_, node) in self.lock().drain() {
            node.close();
        }
    }

    /// Dials in progress (for tests).
    #[cfg(test)]
    fn dials_in_progress(&self) -> usize {
        self.state.lock_dialing().len()
    }

    pub(crate) async fn get_or_connect(
        &self,
        addr: &NodeAddr,
        config: NodeConfig,
    ) -> Result<Node, Error> {
        if let Some(node) = self.cached(addr) {
            return Ok(node);
        }
        // One dial of `shared_count` connections, each bounded by the connect timeout; a waiter
        // also stops at the call's own deadline.
        let connect = config.connection().get_connect_timeout();
        let dial_bound =
            connect.saturating_mul(u32::try_from(config.shared_count()).unwrap_or(u32::MAX));
        let wait = (dial_bound + DIAL_SLACK).min(config.connection().get_response_timeout());
        let mut outcome = {
            let mut dialing = self.state.lock_dialing();
            match dialing.get(addr) {
                Some(outcome) => outcome.clone(),
                None => {
                    // A dial that ended between the first look and now left its node behind.
                    if let Some(node) = self.cached(addr) {
                        return Ok(node);
                    }
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    dialing.insert(addr.clone(), rx.clone());
                    let (state, addr) = (Arc::clone(&self.state), addr.clone());
                    tokio::spawn(async move {
                        let result = Node::connect(config).await;
                        state.dial_ended(&addr, &result);
                        tx.send_replace(Some(result));
                    });
                    rx
                }
            }
        };
        let waited = tokio::time::timeout(wait, outcome.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(done)) => match &*done {
                Some(result) => result.clone(),
                None => Err(dial_gone(addr)),
            },
            // The dialling task ended without a word (the runtime is shutting down).
            Ok(Err(_)) => Err(dial_gone(addr)),
            Err(_) => Err(Error::ConnectTimeout {
                addr: addr.to_string(),
                timeout: wait,
            }),
        }
    }
}

fn dial_gone(addr: &NodeAddr) -> Error {
    Error::Closed {
        reason: format!("the dial to {addr} was abandoned"),
    }
}

impl NodeSetState {
    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, HashMap<NodeAddr, Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_dialing(&self) -> std::sync::MutexGuard<'_, HashMap<NodeAddr, DialOutcome>> {
        self.dialing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, addr: &NodeAddr) -> Option<Node> {
        self.lock_nodes()
            .get(addr)
            .filter(|n| !n.is_closed())
            .cloned()
    }

    /// Keeps the node a dial opened (unless the set was closed meanwhile), then forgets the
    /// dial: in this order, so that a caller who finds no dial in progress finds the node.
    fn dial_ended(&self, addr: &NodeAddr, result: &Result<Node, Error>) {
        if let Ok(node) = result {
            let mut nodes = self.lock_nodes();
            if self.closed.load(Ordering::Acquire) {
                node.close();
            } else {
                nodes.insert(addr.clone(), node.clone());
            }
        }
        self.lock_dialing().remove(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    use redis_conn::ServerAddr;
    use tokio::time::Instant;

    /// An address that refuses connections: a port that was free a moment ago.
    fn dead_addr() -> NodeAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        NodeAddr::from(listener.local_addr().unwrap())
    }

    fn node_config(addr: &NodeAddr, connect_timeout: Duration) -> NodeConfig {
        redis_conn::ConnectionConfig::new(ServerAddr::from(addr))
            .connect_timeout(connect_timeout)
            .into()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_map_of_dials_forgets_each_dial_when_it_ends() {
        let set = NodeSet::default();
        for _ in 0..50 {
            let addr = dead_addr();
            let result = set
                .get_or_connect(&addr, node_config(&addr, Duration::from_millis(500)))
                .await;
            assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");
            assert_eq!(
                set.dials_in_progress(),
                0,
                "a finished dial stayed in the map"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_of_an_address_that_never_answers_share_one_dial_and_its_error() {
        // Accepts TCP connections and never answers the handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = NodeAddr::from(listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(sock);
            }
        });
        let set = Arc::new(NodeSet::default());
        let connect_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let (set, addr) = (Arc::clone(&set), addr.clone());
                tokio::spawn(async move {
                    let config = node_config(&addr, connect_timeout);
                    let result = set.get_or_connect(&addr, config).await;
                    (result, Instant::now())
                })
            })
            .collect();
        for caller in callers {
            let (result, ended) = tokio::time::timeout(Duration::from_secs(10), caller)
                .await
                .expect("a caller still waits 10 s later")
                .unwrap();
            match result {
                Err(Error::ConnectTimeout { addr: a, timeout }) => {
                    assert_eq!(a, addr.to_string());
                    assert_eq!(timeout, connect_timeout, "not the dial's own error");
                }
                other => panic!("expected the dial's timeout, got {other:?}"),
            }
            let waited = ended - started;
            assert!(
                waited < connect_timeout + Duration::from_millis(700),
                "a caller waited {waited:?}"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "more than one dial");
        assert_eq!(set.dials_in_progress(), 0);
        silent.abort();
    }
}
