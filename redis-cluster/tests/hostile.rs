//! The cluster client against nodes no real cluster has: fake nodes (a few lines of tokio) that
//! send MOVED to an address that never answers, announce overlapping slot ranges, or are dead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_cluster::{slot, ClusterClient, ClusterConfig, ClusterError, ClusterEvent, NodeAddr};
use redis_conn::{Cmd, ConnectionConfig, Sent, ServerAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A `CLUSTER SLOTS` reply: `(first, last, master port)` ranges, masters on 127.0.0.1.
fn slots_reply(ranges: &[(u16, u16, u16)]) -> String {
    let mut out = format!("*{}\r\n", ranges.len());
    for (lo, hi, port) in ranges {
        out.push_str(&format!(
            "*3\r\n:{lo}\r\n:{hi}\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$2\r\nid\r\n"
        ));
    }
    out
}

/// A fake cluster node speaking RESP2: answers `CLUSTER SLOTS` with whatever `slots` holds at the
/// time, refuses `HELLO` and `CLUSTER SHARDS` (as an old server would), and answers every other
/// command with `other` (where `{self}` stands for the node's own address).
struct FakeNode {
    addr: NodeAddr,
    slots: Arc<Mutex<String>>,
}

impl FakeNode {
    async fn start(other: String) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = NodeAddr::from(listener.local_addr().unwrap());
        let other = other.replace("{self}", &addr.to_string());
        let slots = Arc::new(Mutex::new(String::new()));
        let shared = Arc::clone(&slots);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (slots, other) = (Arc::clone(&shared), other.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some((args, used)) = test_support::parse_command(&buf) {
                            buf.drain(..used);
                            let words: Vec<&str> = args.iter().map(String::as_str).collect();
                            let reply = match words.as_slice() {
                                ["HELLO", ..] => "-ERR unknown command 'HELLO'\r\n".to_string(),
                                ["CLUSTER", "SHARDS"] => "-ERR unknown subcommand\r\n".to_string(),
                                ["CLUSTER", "SLOTS"] => slots.lock().unwrap().clone(),
                                _ => other.clone(),
                            };
                            if sock.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        FakeNode { addr, slots }
    }

    fn announce(&self, ranges: &[(u16, u16, u16)]) {
        *self.slots.lock().unwrap() = slots_reply(ranges);
    }
}

/// A listener that accepts connections, holds them, and never sends a byte; counts accepts.
async fn silent_listener() -> (NodeAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = NodeAddr::from(listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(sock);
        }
    });
    (addr, accepted)
}

fn config(seeds: Vec<NodeAddr>, connect_timeout: Duration) -> ClusterConfig {
    let template =
        ConnectionConfig::new(ServerAddr::from(&seeds[0])).connect_timeout(connect_timeout);
    ClusterConfig::new(seeds, template).refresh_interval(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_moved_to_a_silent_master_fail_together_after_one_dial() {
    let (silent, accepted) = silent_listener().await;
    let key = "foo";
    let seed = FakeNode::start(format!("-MOVED {} {silent}\r\n", slot(key.as_bytes()))).await;
    seed.announce(&[(0, 16383, seed.addr.port)]);
    let connect_timeout = Duration::from_millis(500);
    // No refresh during the test: the only dials to the silent address are the callers'.
    let config = config(vec![seed.addr.clone()], connect_timeout)
        .min_refresh_interval(Duration::from_secs(600));
    let client = ClusterClient::connect(config).await.unwrap();
    let started = Instant::now();
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let result = client.send(Cmd::new("GET").arg(key)).await;
                (result, started.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for caller in callers {
        let (result, waited) = tokio::time::timeout(Duration::from_secs(10), caller)
            .await
            .expect("a caller still waits after 10 s")
            .unwrap();
        let err = result.expect_err("the silent master answered");
        assert!(
            matches!(&err, ClusterError::Node(redis_conn::Error::ConnectTimeout { addr, .. }) if *addr == silent.to_string()),
            "not the dial's error: {err}"
        );
        assert_eq!(err.sent(), Some(Sent::No), "{err}");
        slowest = slowest.max(waited);
    }
    assert!(
        slowest < connect_timeout + Duration::from_secs(1),
        "the last caller failed after {slowest:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "dials to the silent master"
    );
    eprintln!("1000 callers failed within {slowest:?} after one dial");
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_a_reachable_seed_names_every_seed_in_its_error() {
    let dead: Vec<NodeAddr> = (0..3)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            NodeAddr::from(listener.local_addr().unwrap())
        })
        .collect();
    let err = ClusterClient::connect(config(dead.clone(), Duration::from_millis(500)))
        .await
        .expect_err("connected to dead seeds");
    assert!(matches!(err, ClusterError::NoTopology(_)), "{err}");
    let text = err.to_string();
    for seed in &dead {
        assert!(
            text.contains(&seed.to_string()),
            "{seed} missing from: {text}"
        );
    }
    assert_eq!(err.sent(), Some(Sent::No));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_finds_overlapping_ranges_keeps_the_previous_map() {
    let seed = FakeNode::start("+OK\r\n".into()).await;
    let me = seed.addr.port;
    seed.announce(&[(0, 8191, me), (8192, 16383, me)]);
    let config = config(vec![seed.addr.clone()], Duration::from_millis(500))
        .min_refresh_interval(Duration::from_millis(10));
    let client = ClusterClient::connect(config).await.unwrap();
    let mut events = client.events();
    // Now the node claims that another master serves slots it also serves.
    seed.announce(&[(0, 16383, me), (100, 200, 1)]);
    client.trigger_refresh();
    let error = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(ClusterEvent::RefreshFailed { error }) = events.recv().await {
                return error;
            }
        }
    })
    .await
    .expect("no failed refresh within 5 s");
    assert!(error.contains("slot 100 is claimed by both"), "{error}");
    assert_eq!(client.refreshes(), 1, "the bad view was taken");
    let map = client.slot_map();
    assert_eq!(map.uncovered(), 0);
    assert_eq!(map.master(150), Some(&seed.addr));
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_ran_in_part_before_meeting_an_unassigned_slot_may_have_run() {
    let seed = FakeNode::start("+OK\r\n".into()).await;
    // Slots 10000.. are served by nobody.
    seed.announce(&[(0, 9999, seed.addr.port)]);
    let config = config(vec![seed.addr.clone()], Duration::from_millis(500));
    let client = ClusterClient::connect(config).await.unwrap();
    let key = |served: bool| {
        (0..)
            .map(|i| format!("key{i}"))
            .find(|k| (slot(k.as_bytes()) < 10000) == served)
            .unwrap()
    };
    let (ran, nowhere) = (key(true), key(false));
    let err = client
        .send_pipeline(&[
            Cmd::new("SET").arg(&ran).arg("v"),
            Cmd::new("SET").arg(&nowhere).arg("v"),
        ])
        .await
        .expect_err("a slot nobody serves");
    assert!(err.to_string().contains("no node serves slot"), "{err}");
    // The first SET ran: the pipeline as a whole may have run, and must not be resent.
    assert_eq!(err.sent(), Some(Sent::Maybe), "{err:?}");
    // Alone, the unassigned slot is found before anything is sent.
    let alone = client
        .send(Cmd::new("SET").arg(&nowhere).arg("v"))
        .await
        .expect_err("a slot nobody serves");
    assert_eq!(alone.sent(), Some(Sent::No), "{alone:?}");
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_moved_round_and_round_gives_up_saying_it_never_ran() {
    let key = "counter";
    // Every command is refused with a MOVED back to the same node: nothing ever runs.
    let node = FakeNode::start(format!("-MOVED {} {{self}}\r\n", slot(key.as_bytes()))).await;
    node.announce(&[(0, 16383, node.addr.port)]);
    let client =
        ClusterClient::connect(config(vec![node.addr.clone()], Duration::from_millis(500)))
            .await
            .unwrap();
    let err = client.send(Cmd::new("INCR").arg(key)).await.unwrap_err();
    assert!(
        matches!(err, ClusterError::TooManyRedirects { redirects: 5, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.sent(),
        Some(Sent::No),
        "refused every time: safe to send again"
    );
}
