//! Process plumbing: free ports, a spawner thread that ties children's lives to this process, signals.

use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;

use crate::{HarnessError, Result};

const PORT_LOW: u32 = 20_000;
const PORT_SPAN: u32 = 12_000;

/// A loopback port that was free a moment ago, from 20000..32000.
///
/// Ports come from a counter offset by the process id, so that test binaries running at the same
/// time start far apart, and each candidate is checked by binding it. The range stays below the
/// ephemeral range (32768+), so the kernel never hands one of them out to an outgoing connection,
/// and cluster bus ports are allocated the same way (explicit `cluster-port`).
pub fn free_port() -> Result<u16> {
    let listener = bind_free_port()?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError::io("reading a listener's address", e))
}

/// A loopback listener on a port from the same range as [`free_port`], kept bound: for a
/// listener of this process (a proxy, a fake server), which then cannot lose its port to
/// another process between the check and the bind.
pub(crate) fn bind_free_port() -> Result<TcpListener> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919) % PORT_SPAN;
    for _ in 0..PORT_SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = PORT_LOW + (base + n) % PORT_SPAN;
        let port = u16::try_from(port).map_err(|_| HarnessError::NoFreePort)?;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener);
        }
    }
    Err(HarnessError::NoFreePort)
}

type Job = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that the child is killed (SIGKILL) when this process dies, however it dies.
///
/// Linux delivers the parent-death signal when the *thread* that forked the child exits, so every
/// child is forked by one spawner thread that lives as long as the process. A test that panics
/// drops its servers (which kills them); a test binary that is killed or aborts takes its servers
/// with it through the parent-death signal.
pub(crate) fn spawn(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("redis-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        tx
    });
    let parent = std::process::id();
    set_parent_death_signal(&mut cmd, parent);
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command, parent: u32) {
    // SAFETY: the closure runs in the forked child before exec and only calls async-signal-safe
    // functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would ever kill us.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Sends `signal` to `pid`.
#[allow(unsafe_code)]
pub(crate) fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `binary` can be found: a path to a file, or a name on PATH.
pub(crate) fn installed(binary: &str) -> bool {
    if binary.contains('/') {
        return std::path::Path::new(binary).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false)
}
