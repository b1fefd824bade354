//! Memory a server can make the client hold, and deadlines that hold while data keeps coming
//! (RELIABILITY.md C1.3): fake servers that answer with an endless aggregate of the smallest
//! elements, or flood the connection with push messages, as the HELLO reply and as a command's
//! reply. Its own test binary, and one test at a time, so that the process's peak RSS is this
//! test's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis_conn::{Cmd, Connection, ConnectionConfig, Error, Protocol, ServerAddr};
use resp_codec::{DecodeError, ReplyLimit, DEFAULT_MAX_REPLY_ELEMENTS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The deadline used for connects and calls here.
const DEADLINE: Duration = Duration::from_millis(1500);

/// Scheduling slack allowed past a deadline: generous for 2 busy cores (the measured figure is
/// printed; the target is 100 ms).
const SLACK: Duration = Duration::from_millis(300);

/// What memory the client may come to hold with the default limits.
const MAX_GROWTH_KIB: u64 = 200 * 1024;

/// One test at a time: the peak RSS is process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `VmRSS`/`VmHWM` field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the peak RSS (`VmHWM`) to the current RSS and returns the latter, so that what
/// `VmHWM` says next is the peak since now.
fn reset_peak_rss() -> u64 {
    // "5" resets the peak resident set size (Linux 4.0+, proc(5)).
    std::fs::write("/proc/self/clear_refs", "5").expect("cannot reset VmHWM");
    status_kib("VmRSS:")
}

/// A fake server that, on each connection, reads the first request and answers it with
/// `preamble` followed by `element` repeated until the client goes away.
async fn flooding_server(preamble: &'static [u8], element: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let chunk = element.repeat(64 * 1024 / element.len());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                if sock.read(&mut request).await.unwrap_or(0) == 0 {
                    return;
                }
                if sock.write_all(preamble).await.is_err() {
                    return;
                }
                while sock.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

fn config(addr: SocketAddr) -> ConnectionConfig {
    ConnectionConfig::new(ServerAddr::from(addr))
        .connect_timeout(DEADLINE)
        .response_timeout(DEADLINE)
        .health_check_interval(None)
        .max_attempts(1)
}

/// The error of an endless reply: the element limit, named.
fn assert_element_limit(source: &DecodeError) {
    assert_eq!(
        *source,
        DecodeError::ReplyTooLarge {
            limit: ReplyLimit::Elements,
            max: DEFAULT_MAX_REPLY_ELEMENTS
        }
    );
}

const ENDLESS: &[u8] = b"*4294967295\r\n";
const TINY: [&[u8]; 2] = [b"_\r\n", b"$0\r\n\r\n"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_hello_reply_of_tiny_elements_fails_typed_before_the_connect_timeout_within_200_mib(
) {
    let _serial = SERIAL.lock().await;
    for element in TINY {
        let addr = flooding_server(ENDLESS, element).await;
        let before = reset_peak_rss();
        let started = Instant::now();
        let err = Connection::connect(config(addr)).await.unwrap_err();
        let took = started.elapsed();
        let growth = status_kib("VmHWM:").saturating_sub(before);
        eprintln!(
            "figure: HELLO answered by an endless aggregate of {element:?}: {err} after {took:?}, \
             peak RSS growth {} MiB",
            growth / 1024
        );
        match &err {
            Error::Protocol { source, .. } => assert_element_limit(source),
            other => panic!("{other:?}"),
        }
        assert!(took < DEADLINE + SLACK, "{took:?}");
        assert!(growth < MAX_GROWTH_KIB, "{} MiB", growth / 1024);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_command_reply_of_tiny_elements_fails_typed_before_the_call_deadline_within_200_mib(
) {
    let _serial = SERIAL.lock().await;
    for element in TINY {
        let addr = flooding_server(ENDLESS, element).await;
        // RESP2 without options: no handshake, the first request the server reads is the GET.
        let conn = Connection::connect(config(addr).protocol(Protocol::Resp2).reconnect(false))
            .await
            .unwrap();
        let before = reset_peak_rss();
        let started = Instant::now();
        let err = conn.send(Cmd::new("GET").arg("k")).await.unwrap_err();
        let took = started.elapsed();
        let growth = status_kib("VmHWM:").saturating_sub(before);
        eprintln!(
            "figure: GET answered by an endless aggregate of {element:?}: {err} after {took:?}, \
             peak RSS growth {} MiB",
            growth / 1024
        );
        // The caller learns the connection broke (its command ran, maybe) and why: the limit.
        match &err {
            Error::ConnectionLost { reason, .. } => {
                assert!(reason.contains("max_reply_elements"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(took < DEADLINE + SLACK, "{took:?}");
        assert!(growth < MAX_GROWTH_KIB, "{} MiB", growth / 1024);
    }
}

/// A push message (which is never a reply): a server flooding these keeps the socket readable
/// all the time, while neither the HELLO nor the command is ever answered.
const PUSH: &[u8] = b">2\r\n$7\r\nmessage\r\n_\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flooded_with_pushes_still_ends_at_the_connect_timeout() {
    let _serial = SERIAL.lock().await;
    let addr = flooding_server(b"", PUSH).await;
    let started = Instant::now();
    let err = Connection::connect(config(addr)).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("figure: HELLO flooded with pushes: {err} after {took:?}");
    assert!(matches!(err, Error::ConnectTimeout { .. }), "{err:?}");
    assert!(took < DEADLINE + SLACK, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_flooded_with_pushes_still_ends_at_its_deadline() {
    let _serial = SERIAL.lock().await;
    let addr = flooding_server(b"", PUSH).await;
    let conn = Connection::connect(config(addr).protocol(Protocol::Resp2).reconnect(false))
        .await
        .unwrap();
    let started = Instant::now();
    let err = conn.send(Cmd::new("GET").arg("k")).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("figure: GET flooded with pushes: {err} after {took:?}");
    assert!(err.is_timeout(), "{err:?}");
    assert!(took < DEADLINE + SLACK, "{took:?}");
}
