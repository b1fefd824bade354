//! A fault-injecting TCP proxy, for the failures a real server cannot produce on demand.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::{HarnessError, Result};

/// How the proxy treats traffic. Applies to every connection, open or new, from the moment it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Forward everything as it comes.
    #[default]
    Pass,
    /// Forward every chunk after this delay (in both directions, order kept).
    Delay(Duration),
    /// Forward in pieces of at most this many bytes, one write each (exercises incremental parsing).
    Slice(usize),
    /// Keep the sockets open but forward nothing (a silently dead peer); what arrives is dropped.
    Blackhole,
    /// Close both sides of a connection once it has forwarded this many bytes (both directions
    /// together).
    CloseAfter(u64),
    /// Accept new connections and reset them at once; open connections are untouched.
    RefuseNew,
}

struct Shared {
    fault: Mutex<Fault>,
    /// Bumped by `reset_all`; each connection resets when it changes.
    resets: watch::Sender<u64>,
    open: AtomicUsize,
    accepted: AtomicU64,
    writes: AtomicU64,
    /// Connections reset by `reset_all` (counted when the RST is set up, not when it is asked).
    resets_applied: AtomicU64,
    /// Chunks dropped by [`Fault::Blackhole`].
    dropped: AtomicU64,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A proxy on a free loopback port that forwards to `upstream`, with a switchable [`Fault`].
/// It runs on its own thread and runtime, so it works from sync and async tests alike; dropping it
/// closes every connection.
///
/// ```no_run
/// use test_support::{Fault, FaultProxy, RedisServer};
///
/// let server = RedisServer::start().unwrap();
/// let proxy = FaultProxy::start(server.addr()).unwrap();
/// // point the client at proxy.addr(), then:
/// proxy.set(Fault::Blackhole);
/// proxy.reset_all();
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("fault", &self.shared.fault())
            .field("open", &self.open_connections())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` in [`Fault::Pass`] mode.
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let std_listener = crate::process::bind_free_port()?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| HarnessError::io("making the proxy's listener non-blocking", e))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| HarnessError::io("reading the proxy address", e))?;
        let (resets, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            resets,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            resets_applied: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HarnessError::io("building the proxy runtime", e))?;
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, upstream, task_shared) => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task and closes their sockets.
            })
            .map_err(|e| HarnessError::io("starting the proxy thread", e))?;
        Ok(FaultProxy {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the fault mode.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Resets every open connection (TCP RST on both sides, through `SO_LINGER 0`).
    pub fn reset_all(&self) {
        self.shared.resets.send_modify(|n| *n += 1);
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Write calls made towards either side since the start (a sliced chunk counts once per slice).
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections actually reset by [`reset_all`](Self::reset_all) since the start: a reset
    /// asked while no connection is open counts nothing, so a test can tell that its fault took
    /// effect. A connection counts once it has set up its RST, a moment after the call.
    pub fn resets_applied(&self) -> u64 {
        self.shared.resets_applied.load(Ordering::SeqCst)
    }

    /// Chunks of traffic (either direction) that [`Fault::Blackhole`] dropped since the start:
    /// zero means the blackhole swallowed nothing.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.fault() == Fault::RefuseNew {
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                let _ = client.set_zero_linger();
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            shared.open.fetch_add(1, Ordering::SeqCst);
            connection(client, server, &shared).await;
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Forwards both directions until both sides close, the connection is reset, or a `CloseAfter`
/// budget runs out.
async fn connection(mut client: TcpStream, mut server: TcpStream, shared: &Shared) {
    let mut resets = shared.resets.subscribe();
    resets.borrow_and_update();
    let forwarded = AtomicU64::new(0);
    let kill = Notify::new();
    let reset = {
        let (c_read, c_write) = client.split();
        let (s_read, s_write) = server.split();
        let up = pump(c_read, s_write, shared, &forwarded, &kill);
        let down = pump(s_read, c_write, shared, &forwarded, &kill);
        tokio::select! {
            _ = async { tokio::join!(up, down) } => false,
            () = kill.notified() => false,
            _ = resets.changed() => true,
        }
    };
    if reset {
        // Closing with a zero linger sends RST instead of FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
        shared.resets_applied.fetch_add(1, Ordering::SeqCst);
    }
}

/// One direction: a reader that stamps chunks with when they are due, and a writer that delivers
/// them then, applying the fault in force at delivery time.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    shared: &Shared,
    forwarded: &AtomicU64,
    kill: &Notify,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let due = match shared.fault() {
                Fault::Blackhole => {
                    shared.dropped.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                Fault::Delay(d) => Instant::now() + d,
                _ => Instant::now(),
            };
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        // Dropping `tx` ends the writer once it has delivered what is queued.
    };
    let writer = async {
        while let Some((due, data)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let mut data = &data[..];
            let fault = shared.fault();
            if fault == Fault::Blackhole {
                shared.dropped.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let mut close = false;
            if let Fault::CloseAfter(limit) = fault {
                let room = limit.saturating_sub(forwarded.load(Ordering::SeqCst));
                if data.len() as u64 >= room {
                    data = &data[..usize::try_from(room).unwrap_or(data.len())];
                    close = true;
                }
            }
            let piece = match fault {
                Fault::Slice(n) => n.max(1),
                _ => data.len().max(1),
            };
            for part in data.chunks(piece) {
                // Counted before the write, so that a peer that has received a piece always sees
                // it counted.
                shared.writes.fetch_add(1, Ordering::SeqCst);
                if to.write_all(part).await.is_err() {
                    kill.notify_one();
                    return;
                }
                forwarded.fetch_add(part.len() as u64, Ordering::SeqCst);
                if piece < data.len() {
                    // Give the peer a chance to read each slice on its own. The proxy has its own
                    // thread, so a short blocking pause only slows this proxy.
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
            if close {
                kill.notify_one();
                return;
            }
        }
        // The reader saw EOF: pass it on.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
