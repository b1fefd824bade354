//! One `redis-server` or `redis-sentinel` process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resp_codec::Value;
use tempfile::TempDir;

use crate::admin::AdminConn;
use crate::process::{free_port, installed, signal, spawn};
use crate::tls::CertFiles;
use crate::{HarnessError, Result};

/// How long a process gets to answer its first `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// TLS settings for a server: its certificate, the CA it trusts for client certificates, and
/// whether clients must present one.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate and key.
    pub cert: CertFiles,
    /// The CA file (`tls-ca-cert-file`), used to verify client certificates.
    pub ca: PathBuf,
    /// `tls-auth-clients yes` when true.
    pub require_client_cert: bool,
}

impl ServerTls {
    /// `cert`, trusting `certs`' CA, with client certificates optional (the common case).
    pub fn new(certs: &crate::TestCerts, cert: &CertFiles) -> ServerTls {
        ServerTls {
            cert: cert.clone(),
            ca: certs.ca.clone(),
            require_client_cert: false,
        }
    }
}

/// What to start. Built with [`RedisServer::builder`].
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    password: Option<String>,
    acl_users: Vec<(String, String)>,
    aof: bool,
    tls: Option<ServerTls>,
    tls_only: bool,
    cluster: bool,
    args: Vec<String>,
    dir: Option<Arc<TempDir>>,
}

impl ServerBuilder {
    /// `requirepass`: clients must `AUTH <password>`.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Adds an ACL user with all permissions (`ACL SETUSER user on >pass ~* &* +@all`).
    #[must_use]
    pub fn acl_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.acl_users.push((user.into(), password.into()));
        self
    }

    /// Persistence that survives `kill -9`: AOF with `appendfsync always`.
    #[must_use]
    pub fn aof(mut self) -> Self {
        self.aof = true;
        self
    }

    /// Also listens for TLS on a second port ([`RedisServer::tls_addr`]); the plain port stays open
    /// for the harness's own administration.
    #[must_use]
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Listens only for TLS: `--port 0` and `--tls-port`, and for a cluster node also
    /// `--tls-cluster yes --tls-replication yes` (the bus, replication and `MIGRATE` speak TLS,
    /// and `CLUSTER SLOTS`/`SHARDS` announce the TLS port). [`RedisServer::addr`] is then the TLS
    /// address, [`RedisServer::url`] a `rediss://` URL, and the harness's own admin connections
    /// speak TLS too ([`AdminConn::connect_tls`], which presents no client certificate: leave
    /// [`ServerTls::require_client_cert`] false).
    #[must_use]
    pub fn tls_only(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self.tls_only = true;
        self
    }

    /// `cluster-enabled yes`, with `cluster-node-timeout 1000` and an explicit bus port.
    #[must_use]
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Any other `--name value` pairs, passed as they are (`["--maxmemory", "10mb"]`).
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the server and waits until it answers `PING`.
    pub fn start(self) -> Result<RedisServer> {
        let dir = match &self.dir {
            Some(dir) => Arc::clone(dir),
            None => Arc::new(temp_dir()?),
        };
        let mut last_err = None;
        // A port checked free can still be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let mut args = vec![
                "--port".to_string(),
                if self.tls_only {
                    "0".to_string()
                } else {
                    port.to_string()
                },
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                String::new(),
                "--dir".into(),
                dir.path().display().to_string(),
                "--logfile".into(),
                dir.path().join("redis.log").display().to_string(),
                "--daemonize".into(),
                "no".into(),
                "--enable-debug-command".into(),
                "yes".into(),
                "--repl-diskless-sync-delay".into(),
                "0".into(),
            ];
            if self.aof {
                args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
            } else {
                args.extend(["--appendonly", "no"].map(String::from));
            }
            if let Some(pw) = &self.password {
                args.extend(["--requirepass".to_string(), pw.clone()]);
            }
            let mut tls_port = None;
            if let Some(tls) = &self.tls {
                // A TLS-only server's one port is its TLS port.
                let p = if self.tls_only { port } else { free_port()? };
                tls_port = Some(p);
                args.extend([
                    "--tls-port".to_string(),
                    p.to_string(),
                    "--tls-cert-file".into(),
                    tls.cert.cert.display().to_string(),
                    "--tls-key-file".into(),
                    tls.cert.key.display().to_string(),
                    "--tls-ca-cert-file".into(),
                    tls.ca.display().to_string(),
                    "--tls-auth-clients".into(),
                    if tls.require_client_cert { "yes" } else { "no" }.into(),
                ]);
                if self.tls_only {
                    args.extend(["--tls-replication", "yes"].map(String::from));
                    if self.cluster {
                        args.extend(["--tls-cluster", "yes"].map(String::from));
                    }
                }
            }
            let mut cluster_port = None;
            if self.cluster {
                let p = free_port()?;
                cluster_port = Some(p);
                args.extend([
                    "--cluster-enabled".to_string(),
                    "yes".into(),
                    "--cluster-port".into(),
                    p.to_string(),
                    "--cluster-config-file".into(),
                    dir.path().join("nodes.conf").display().to_string(),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    "--cluster-allow-replica-migration".into(),
                    "no".into(),
                    // Replicas appear in CLUSTER SLOTS once their replication offset is non-zero,
                    // which the master's replica ping makes so: every 10 s by default.
                    "--repl-ping-replica-period".into(),
                    "1".into(),
                ]);
            }
            args.extend(self.args.iter().cloned());
            let mut server = RedisServer {
                binary: server_binary(),
                child: None,
                port,
                tls_port,
                tls_only: self.tls_only,
                cluster_port,
                dir: Arc::clone(&dir),
                args,
                auth: self.password.clone().map(|p| ("default".to_string(), p)),
            };
            match server.launch() {
                Ok(()) => {
                    for (user, pw) in &self.acl_users {
                        let rule = format!(">{pw}");
                        server
                            .admin()?
                            .cmd(&["ACL", "SETUSER", user, "on", &rule, "~*", "&*", "+@all"])?;
                    }
                    return Ok(server);
                }
                Err(e) if server.log_tail().contains("Address already in use") => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(HarnessError::NoFreePort))
    }
}

/// A running `redis-server` (or `redis-sentinel`), in its own temporary directory, killed when
/// dropped.
///
/// ```no_run
/// use test_support::RedisServer;
///
/// let server = RedisServer::start().unwrap();
/// let mut admin = server.admin().unwrap();
/// admin.cmd(&["SET", "k", "v"]).unwrap();
/// // `server` is killed (SIGKILL) and its directory removed when it goes out of scope.
/// ```
#[derive(Debug)]
pub struct RedisServer {
    binary: String,
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    tls_only: bool,
    cluster_port: Option<u16>,
    dir: Arc<TempDir>,
    args: Vec<String>,
    auth: Option<(String, String)>,
}

/// The variable naming the server binary the harness runs (a path, or a name on PATH).
pub const SERVER_BIN_ENV: &str = "REDIS_SERVER_BIN";

/// The server binary the harness runs: [`SERVER_BIN_ENV`] when set (Valkey's `valkey-server`
/// runs the same tests), else `redis-server`.
pub fn server_binary() -> String {
    std::env::var(SERVER_BIN_ENV).unwrap_or_else(|_| "redis-server".to_string())
}

/// How a sentinel is started: `redis-sentinel <conf>` with the default server, the chosen
/// server binary in sentinel mode (`<bin> <conf> --sentinel`) otherwise.
fn sentinel_command(conf: String) -> (String, Vec<String>) {
    match std::env::var(SERVER_BIN_ENV) {
        Ok(binary) => (binary, vec![conf, "--sentinel".to_string()]),
        Err(_) => ("redis-sentinel".to_string(), vec![conf]),
    }
}

pub(crate) fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("redis-test-")
        .tempdir()
        .map_err(|e| HarnessError::io("creating a temporary directory", e))
}

impl RedisServer {
    /// Starts a plain standalone server.
    pub fn start() -> Result<RedisServer> {
        RedisServer::builder().start()
    }

    /// A builder for a server with options.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts `redis-sentinel` with the given configuration lines (the port, bind address,
    /// directory and log file are added).
    pub(crate) fn start_sentinel(
        config: &str,
        password: Option<&str>,
        tls: Option<&ServerTls>,
    ) -> Result<RedisServer> {
        let dir = Arc::new(temp_dir()?);
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let conf = dir.path().join("sentinel.conf");
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n{config}\n",
                dir.path().display(),
                dir.path().join("redis.log").display()
            );
            if let Some(pw) = password {
                // Sentinels talk to each other with the same password.
                text.push_str(&format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n"));
            }
            let mut tls_port = None;
            if let Some(tls) = tls {
                let p = free_port()?;
                tls_port = Some(p);
                text.push_str(&format!(
                    "tls-port {p}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                     tls-auth-clients {}\n",
                    tls.cert.cert.display(),
                    tls.cert.key.display(),
                    tls.ca.display(),
                    if tls.require_client_cert { "yes" } else { "no" },
                ));
            }
            std::fs::write(&conf, text)
                .map_err(|e| HarnessError::io("writing sentinel.conf", e))?;
            let (binary, args) = sentinel_command(conf.display().to_string());
            let mut server = RedisServer {
                binary,
                child: None,
                port,
                tls_port,
                tls_only: false,
                cluster_port: None,
                dir: Arc::clone(&dir),
                args,
                auth: password.map(|p| ("default".to_string(), p.to_string())),
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) if server.log_tail().contains("Address already in use") => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(HarnessError::NoFreePort))
    }

    fn launch(&mut self) -> Result<()> {
        if !installed(&self.binary) {
            return Err(HarnessError::NotInstalled {
                binary: self.binary.clone(),
            });
        }
        let mut cmd = Command::new(&self.binary);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            spawn(cmd).map_err(|e| HarnessError::io(format!("starting {}", self.binary), e))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls `PING` every 2 ms until the server answers with anything but `LOADING`.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(HarnessError::Exited {
                        what: self.describe(),
                        status: status.to_string(),
                        log: self.log_tail(),
                    });
                }
            }
            if let Ok(mut conn) = self.connect_admin(None) {
                match conn.raw(&["PING"]) {
                    Ok(Value::Error(e)) if e.starts_with(b"LOADING") => {}
                    Ok(_) => return Ok(()),
                    Err(_) => {}
                }
            }
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    what: self.describe(),
                    timeout: READY_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn describe(&self) -> String {
        format!("{} on port {}", self.binary, self.port)
    }

    fn connect_admin(&self, auth: Option<(&str, &str)>) -> Result<AdminConn> {
        if self.tls_only {
            AdminConn::connect_tls_auth(self.addr(), auth)
        } else {
            AdminConn::connect_auth(self.addr(), auth)
        }
    }

    /// The plain TCP address, `127.0.0.1:<port>`; for a server started with
    /// [`ServerBuilder::tls_only`], its only address, the TLS one.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether the server listens only for TLS ([`ServerBuilder::tls_only`]).
    pub fn is_tls_only(&self) -> bool {
        self.tls_only
    }

    /// The plain TCP port; for a TLS-only server, its TLS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS address, when started with [`ServerBuilder::tls`].
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    }

    /// The cluster bus port, for a cluster node.
    pub fn cluster_port(&self) -> Option<u16> {
        self.cluster_port
    }

    /// `redis://127.0.0.1:<port>` (without credentials); `rediss://` for a TLS-only server.
    pub fn url(&self) -> String {
        let scheme = if self.tls_only { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's directory (data, AOF, `nodes.conf`, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new authenticated admin connection.
    pub fn admin(&self) -> Result<AdminConn> {
        self.connect_admin(self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str())))
    }

    /// Runs one command on a fresh admin connection.
    pub fn cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value> {
        self.admin()?.cmd(args)
    }

    /// How many times the server has executed `command` (lowercase name, as in `INFO
    /// commandstats`: `get`, `set`); 0 when never.
    pub fn command_calls(&self, command: &str) -> Result<u64> {
        let info = self.admin()?.cmd_string(&["INFO", "commandstats"])?;
        Ok(crate::info_field(&info, &format!("cmdstat_{command}"))
            .and_then(|v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("calls=").and_then(|n| n.parse().ok()))
            })
            .unwrap_or(0))
    }

    /// The last 40 lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `kill -9`: the process dies at once, without saving or closing connections cleanly.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process freezes with its sockets open (a hung server).
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// SIGCONT: resumes a process frozen by [`RedisServer::pause`].
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| HarnessError::io("signalling", std::io::Error::other("not running")))?;
        signal(pid, sig).map_err(|e| HarnessError::io(format!("signalling pid {pid}"), e))
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process again (after [`RedisServer::kill9`], or kills it first) on the same port,
    /// in the same directory and with the same arguments, so data files and `nodes.conf` are kept.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                // The old socket can linger for a moment after a kill.
                Err(e)
                    if Instant::now() < deadline
                        && self.log_tail().contains("Address already in use") =>
                {
                    let _ = e;
                    self.kill9();
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            // A paused process must not linger as a zombie-in-waiting.
            let _ = signal(child.id(), libc::SIGCONT);
        }
        self.kill9();
    }
}
