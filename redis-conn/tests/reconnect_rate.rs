//! The reconnect rate: a handshake alone never resets the backoff, a healthy connection does.
//!
//! A fake server that completes the handshake and closes at once must get no more connections
//! than one that refuses them (about 15 in 4 s with the default backoff; before the backoff
//! reset only on health it got thousands), while a connection or subscriber that served replies
//! and is then killed is reconnected to at once, every time. Counts are printed: run with
//! `--nocapture` to see them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use redis_conn::{
    Cmd, Connection, ConnectionConfig, Event, ServerAddr, Subscriber, SubscriberEvent,
};
use test_support::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Timing-sensitive: the tests of this file run one at a time, whatever the test threads.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the rate is measured.
const WINDOW: Duration = Duration::from_secs(4);
/// About 15 are expected with the default backoff (full jitter: ~0.64 s to reach the 1 s cap,
/// then ~0.5 s a wait); twice that leaves room for unlucky draws and still catches a reset on
/// every handshake (thousands).
const MAX_IN_WINDOW: u32 = 30;

/// Reads the default handshake (`HELLO 3`, no credentials or name) and answers it with a RESP3
/// map, as a server would.
async fn answer_hello(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(256);
    let hello = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
    while !buf.ends_with(hello) {
        if stream.read_buf(&mut buf).await? == 0 || buf.len() > 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    stream
        .write_all(b"%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n")
        .await
}

/// A fake server that completes the handshake on every connection and closes it at once. The
/// counter says how many connections it accepted.
async fn handshake_then_close_server() -> (SocketAddr, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), answer_hello(&mut stream)).await;
            });
        }
    });
    (addr, accepted)
}

/// A fake server that completes one handshake, then stops listening and closes that connection:
/// every reconnect is refused.
async fn serve_once_then_refuse_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            drop(listener);
            let _ = tokio::time::timeout(Duration::from_secs(2), answer_hello(&mut stream)).await;
        }
    });
    addr
}

/// A configuration that counts failed reconnect attempts.
fn counting_failures(addr: SocketAddr) -> (ConnectionConfig, Arc<AtomicU32>) {
    let failures = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&failures);
    let config = ConnectionConfig::new(ServerAddr::from(addr)).on_event(move |e| {
        if matches!(e, Event::ReconnectFailed { .. }) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    (config, failures)
}

/// The connections a handshake-then-close server got and the attempts a refusing one got in
/// [`WINDOW`]: the same order, within [`MAX_IN_WINDOW`], and some (it does reconnect).
fn assert_reconnect_rates(who: &str, accepted: &AtomicU32, failures: &AtomicU32) {
    let closed = accepted.load(Ordering::Relaxed);
    let refused = failures.load(Ordering::Relaxed) + 1;
    eprintln!(
        "{who}, {WINDOW:?}: {closed} connections to a server that closes after the \
         handshake, {refused} attempts on one that refuses"
    );
    assert!(
        closed <= MAX_IN_WINDOW,
        "{closed} connections in {WINDOW:?}: the handshake resets the backoff"
    );
    assert!(
        closed >= 3,
        "only {closed} connections: is it reconnecting at all?"
    );
    assert!(refused <= MAX_IN_WINDOW, "{refused} attempts in {WINDOW:?}");
}

#[tokio::test]
async fn a_connection_gets_no_more_connections_to_a_server_that_closes_after_the_handshake_than_to_one_that_refuses(
) {
    let _serial = SERIAL.lock().await;
    let (closing, accepted) = handshake_then_close_server().await;
    let refusing = serve_once_then_refuse_server().await;
    let (refusing_config, failures) = counting_failures(refusing);
    let started = Instant::now();
    let to_closing = Connection::connect(ConnectionConfig::new(ServerAddr::from(closing)))
        .await
        .unwrap();
    let to_refusing = Connection::connect(refusing_config).await.unwrap();
    tokio::time::sleep(WINDOW.saturating_sub(started.elapsed())).await;
    assert_reconnect_rates("Connection", &accepted, &failures);
    to_closing.close();
    to_refusing.close();
}

#[tokio::test]
async fn a_subscriber_gets_no_more_connections_to_a_server_that_closes_after_the_handshake_than_to_one_that_refuses(
) {
    let _serial = SERIAL.lock().await;
    let (closing, accepted) = handshake_then_close_server().await;
    let refusing = serve_once_then_refuse_server().await;
    let (refusing_config, failures) = counting_failures(refusing);
    let started = Instant::now();
    let to_closing = Subscriber::connect(ConnectionConfig::new(ServerAddr::from(closing)))
        .await
        .unwrap();
    // A subscription wanted: every reconnect writes SUBSCRIBE, which is never confirmed.
    let handle = to_closing.handle();
    tokio::spawn(async move { handle.subscribe(["news"]).await });
    let to_refusing = Subscriber::connect(refusing_config).await.unwrap();
    tokio::time::sleep(WINDOW.saturating_sub(started.elapsed())).await;
    assert_reconnect_rates("Subscriber", &accepted, &failures);
    to_closing.close();
    to_refusing.close();
}

/// Kills a connection this many times in a row.
const KILLS: usize = 10;
/// The downtime of all the kills together. Each reconnect to a healthy server takes a few
/// milliseconds; a backoff that did not start over after a healthy connection would make the
/// later ones wait up to the 1 s cap (about 2 s in all).
const MAX_TOTAL_DOWNTIME: Duration = Duration::from_millis(1000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_served_replies_is_reconnected_at_once_after_every_kill() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let conn = Connection::connect(ConnectionConfig::new(ServerAddr::from(server.addr())))
        .await
        .unwrap();
    let mut events = conn.events();
    let mut total = Duration::ZERO;
    for kill in 0..KILLS {
        let id = match conn.send(Cmd::new("CLIENT").arg("ID")).await.unwrap() {
            redis_conn::Value::Integer(id) => id.to_string(),
            other => panic!("CLIENT ID answered {other:?}"),
        };
        server.cmd(&["CLIENT", "KILL", "ID", &id]).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let event = tokio::time::timeout_at(deadline, events.recv())
                .await
                .unwrap_or_else(|_| panic!("no reconnect within 3 s after kill {kill}"))
                .unwrap();
            match event {
                Event::Reconnected {
                    attempts, downtime, ..
                } => {
                    assert_eq!(attempts, 1, "kill {kill}: the first attempt should succeed");
                    total += downtime;
                    break;
                }
                Event::ReconnectFailed { error, .. } => panic!("kill {kill}: {error}"),
                _ => {}
            }
        }
    }
    eprintln!("Connection: {KILLS} kills of a healthy connection, {total:?} of downtime in all");
    assert!(
        total < MAX_TOTAL_DOWNTIME,
        "{total:?} of downtime over {KILLS} kills: the backoff punishes a healthy server"
    );
    assert_eq!(conn.stats().reconnects, KILLS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_received_messages_is_reconnected_at_once_after_every_kill() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start().unwrap();
    let mut sub = Subscriber::connect(ConnectionConfig::new(ServerAddr::from(server.addr())))
        .await
        .unwrap();
    sub.subscribe(["news"]).await.unwrap();
    let mut total = Duration::ZERO;
    for kill in 0..KILLS {
        // Publish until this round's message arrives on the new connection (after a reconnect,
        // the subscription is confirmed asynchronously); older rounds' copies are skipped.
        let payload = format!("hello-{kill}");
        let deadline = Instant::now() + Duration::from_secs(3);
        'delivered: loop {
            assert!(
                Instant::now() < deadline,
                "kill {kill}: no message within 3 s"
            );
            server.cmd(&["PUBLISH", "news", &payload]).unwrap();
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(50), sub.next_message()).await
            {
                if m.payload[..] == *payload.as_bytes() {
                    break 'delivered;
                }
            }
        }
        server.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let event = tokio::time::timeout_at(deadline, sub.next_event())
                .await
                .unwrap_or_else(|_| panic!("no resubscription within 3 s after kill {kill}"))
                .expect("the subscriber closed");
            if let SubscriberEvent::Resubscribed { downtime, .. } = event {
                total += downtime;
                break;
            }
        }
    }
    eprintln!("Subscriber: {KILLS} kills of a healthy connection, {total:?} of downtime in all");
    assert!(
        total < MAX_TOTAL_DOWNTIME,
        "{total:?} of downtime over {KILLS} kills: the backoff punishes a healthy server"
    );
}

/// A fake server that completes the handshake, confirms the subscriber's (automatic)
/// re-subscription and closes. The confirmation is part of setting the connection up, as the
/// handshake is: it proves nothing, and must not reset the backoff.
#[tokio::test]
async fn a_subscriber_gets_backoff_from_a_server_that_confirms_the_resubscription_and_closes() {
    let _serial = SERIAL.lock().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    answer_hello(&mut stream).await?;
                    let mut buf = BytesMut::with_capacity(256);
                    while !buf.windows(4).any(|w| w == b"news") {
                        if stream.read_buf(&mut buf).await? == 0 {
                            return Ok(());
                        }
                    }
                    stream
                        .write_all(b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n")
                        .await
                })
                .await;
            });
        }
    });
    let started = Instant::now();
    let subscriber = Subscriber::connect(ConnectionConfig::new(ServerAddr::from(addr)))
        .await
        .unwrap();
    let handle = subscriber.handle();
    tokio::spawn(async move { handle.subscribe(["news"]).await });
    tokio::time::sleep(WINDOW.saturating_sub(started.elapsed())).await;
    let closed = accepted.load(Ordering::Relaxed);
    eprintln!("Subscriber, {WINDOW:?}: {closed} connections to a server that confirms and closes");
    assert!(
        closed <= MAX_IN_WINDOW,
        "{closed} connections in {WINDOW:?}: a re-subscription's confirmation resets the backoff"
    );
    assert!(closed >= 3, "only {closed} connections");
    subscriber.close();
}
