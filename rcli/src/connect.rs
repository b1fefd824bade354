//! The connection options shared by every subcommand, and the configuration they resolve to.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use redis_client::{
    redact_url, Client, Config, Mode, ProfileSource, ReplicaSelection, Secret, ServerAddr,
    TlsConfig,
};

use crate::Failure;

/// How replicas are chosen for reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Selector {
    /// A replica at random for each read.
    Random,
    /// Replicas in turn.
    RoundRobin,
}

/// A `--url` or `--sentinel` value: it may carry credentials, so its `Debug` shows it as
/// [`redact_url`] does.
#[derive(Clone)]
pub(crate) struct Location(String);

impl From<String> for Location {
    fn from(text: String) -> Self {
        Location(text)
    }
}

impl AsRef<str> for Location {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

/// Connection options (the same for every subcommand).
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectionArgs {
    /// Server URL (redis://, rediss://, redis+unix://, redis+cluster://, redis+sentinel://);
    /// repeat it for cluster seeds.
    #[arg(long = "url", value_name = "URL", global = true)]
    urls: Vec<Location>,
    /// Treat the URLs as seeds of a Redis Cluster.
    #[arg(long, global = true)]
    cluster: bool,
    /// A sentinel (repeatable); needs --master.
    #[arg(long = "sentinel", value_name = "HOST:PORT", global = true)]
    sentinels: Vec<Location>,
    /// The master's name, as the sentinels know it.
    #[arg(long, value_name = "NAME", global = true)]
    master: Option<String>,
    /// Profile file (else REDIS_CONFIG, else ./redis.toml).
    #[arg(long = "config", value_name = "FILE", global = true)]
    config_file: Option<PathBuf>,
    /// Profile name (else REDIS_PROFILE, else the file's default).
    #[arg(long, value_name = "NAME", global = true)]
    profile: Option<String>,
    /// ACL user.
    #[arg(long, value_name = "USER", global = true)]
    user: Option<String>,
    /// Password (or REDIS_PASSWORD).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "REDIS_PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true,
        global = true
    )]
    password: Option<Secret>,
    /// Database number.
    #[arg(long, value_name = "N", global = true)]
    db: Option<i64>,
    /// Speak RESP2 instead of RESP3.
    #[arg(long, global = true)]
    resp2: bool,
    /// Use TLS (verified against the webpki roots, or --cacert).
    #[arg(long, global = true)]
    tls: bool,
    /// CA certificate file (PEM) to verify the server with.
    #[arg(long, value_name = "FILE", global = true)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM), for mTLS; needs --key.
    #[arg(long, value_name = "FILE", global = true)]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    key: Option<PathBuf>,
    /// Disable certificate verification (CA, hostname and validity period). Dangerous: for
    /// test servers only.
    #[arg(long = "tls-insecure", global = true)]
    tls_insecure: bool,
    /// Send read-only commands to replicas (cluster, sentinel).
    #[arg(long = "read-from-replicas", global = true)]
    read_from_replicas: bool,
    /// How a replica is chosen.
    #[arg(
        long = "replica-selector",
        value_enum,
        value_name = "SELECTOR",
        global = true
    )]
    replica_selector: Option<Selector>,
    /// Retries per command after the first attempt (only commands safe to resend are resent).
    #[arg(long, value_name = "N", global = true)]
    retries: Option<u32>,
    /// First reconnect backoff ceiling, in milliseconds.
    #[arg(long = "backoff-base-ms", value_name = "N", global = true)]
    backoff_base_ms: Option<u64>,
    /// Largest reconnect backoff, in milliseconds.
    #[arg(long = "backoff-max-ms", value_name = "N", global = true)]
    backoff_max_ms: Option<u64>,
    /// Connect timeout, in milliseconds.
    #[arg(long = "connect-timeout-ms", value_name = "N", global = true)]
    connect_timeout_ms: Option<u64>,
    /// Deadline per command, in milliseconds (retries included).
    #[arg(long = "timeout-ms", value_name = "N", global = true)]
    timeout_ms: Option<u64>,
    /// Connections per node (shared and multiplexed; exclusive ones for blocking commands come
    /// from a pool of the same size).
    #[arg(long, value_name = "N", global = true)]
    connections: Option<usize>,
    /// Periodic cluster topology refresh, in milliseconds (0: only on triggers).
    #[arg(long = "topology-refresh-ms", value_name = "N", global = true)]
    topology_refresh_ms: Option<u64>,
    /// Print every client event on stderr as it happens (`event: <name> ...`).
    #[arg(long, global = true)]
    events: bool,
}

impl ConnectionArgs {
    fn uses_profile(&self) -> bool {
        self.config_file.is_some() || self.profile.is_some()
    }

    fn tls_flags(&self) -> bool {
        self.tls
            || self.cacert.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.tls_insecure
    }
}

/// Where the configuration came from, for `rcli config`.
enum Source {
    Profile(ProfileSource),
    Flags,
    Default,
}

/// The servers: from --url/--sentinel, else from a profile, else redis://127.0.0.1:6379.
fn base(args: &ConnectionArgs) -> Result<(Config, Source), Failure> {
    let flags = !args.urls.is_empty() || !args.sentinels.is_empty();
    if flags && args.uses_profile() {
        return Err(Failure::Fatal("choose the servers with --url/--sentinel or with a profile (--config/--profile), not both".into()));
    }
    if !args.sentinels.is_empty() {
        if !args.urls.is_empty() {
            return Err(Failure::Fatal(
                "--sentinel and --url do not go together".into(),
            ));
        }
        let master = args
            .master
            .as_deref()
            .ok_or_else(|| Failure::Fatal("--sentinel needs --master NAME".into()))?;
        return Ok((Config::sentinel(&args.sentinels, master)?, Source::Flags));
    }
    if !args.urls.is_empty() {
        let mut config = Config::from_urls(&args.urls)?;
        if args.cluster {
            config = config.with_mode(Mode::Cluster);
        }
        return Ok((config, Source::Flags));
    }
    let env_says = std::env::var_os(redis_client::CONFIG_ENV).is_some_and(|v| !v.is_empty())
        || std::env::var_os(redis_client::PROFILE_ENV).is_some_and(|v| !v.is_empty())
        || std::path::Path::new(redis_client::DEFAULT_FILE).exists();
    if args.uses_profile() || env_says {
        let (config, source) =
            redis_client::load_profile(args.config_file.as_deref(), args.profile.as_deref())?;
        let config = if args.cluster {
            config.with_mode(Mode::Cluster)
        } else {
            config
        };
        return Ok((config, Source::Profile(source)));
    }
    let mut config = Config::new();
    if args.cluster {
        config = config.with_mode(Mode::Cluster);
    }
    Ok((config, Source::Default))
}

/// The configuration the flags resolve to.
fn resolve(args: &ConnectionArgs) -> Result<(Config, Source), Failure> {
    let (mut config, source) = base(args)?;
    if let Some(user) = &args.user {
        config = config.username(user.clone());
    }
    if let Some(password) = &args.password {
        config = config.password(password.clone());
    }
    if let Some(db) = args.db {
        config = config.database(db);
    }
    if args.resp2 {
        config = config.protocol(redis_client::Protocol::Resp2);
    }
    if args.tls_flags() {
        let mut builder = TlsConfig::builder();
        if let Some(ca) = &args.cacert {
            builder = builder.ca_file(ca);
        }
        match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => builder = builder.client_cert(cert, key),
            (None, None) => {}
            _ => return Err(Failure::Fatal("--cert and --key go together".into())),
        }
        let tls = if args.tls_insecure {
            eprintln!(
                "rcli: warning: --tls-insecure disables certificate verification (CA, hostname \
                 and validity period): the connection is open to man-in-the-middle attacks"
            );
            builder.dangerous().skip_certificate_verification().build()
        } else {
            builder.build()
        };
        config = config.tls(tls);
    }
    if args.read_from_replicas {
        config = config.read_from_replicas(true);
    }
    if let Some(selector) = args.replica_selector {
        config = config.replica_selection(match selector {
            Selector::Random => ReplicaSelection::Random,
            Selector::RoundRobin => ReplicaSelection::RoundRobin,
        });
    }
    if let Some(n) = args.retries {
        config = config.max_attempts(n.saturating_add(1));
    }
    if let Some(ms) = args.backoff_base_ms {
        config = config.backoff_base(Duration::from_millis(ms));
    }
    if let Some(ms) = args.backoff_max_ms {
        config = config.backoff_max(Duration::from_millis(ms));
    }
    if let Some(ms) = args.connect_timeout_ms {
        config = config.connect_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = args.timeout_ms {
        config = config.response_timeout(Duration::from_millis(ms));
    }
    if let Some(n) = args.connections {
        config = config.connections(n).pool_size(n.max(1));
    }
    if let Some(ms) = args.topology_refresh_ms {
        config = config.topology_refresh((ms > 0).then(|| Duration::from_millis(ms)));
    }
    if args.events {
        config = config.on_event(|e| eprintln!("event: {e}"));
    }
    Ok((config, source))
}

/// Connects as the flags say.
pub(crate) async fn connect(args: &ConnectionArgs) -> Result<Client, Failure> {
    let (config, _) = resolve(args)?;
    Ok(Client::connect(config).await?)
}

/// The address a prompt shows.
pub(crate) fn prompt_name(client: &Client) -> String {
    let config = client.config();
    match config.mode() {
        Mode::Sentinel => format!(
            "sentinel:{}",
            client
                .sentinel()
                .map(|s| s.master().to_string())
                .unwrap_or_default()
        ),
        Mode::Cluster => format!(
            "cluster:{}",
            config
                .nodes()
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
        _ => match config.nodes().first() {
            Some(ServerAddr::Unix(path)) => path.display().to_string(),
            Some(addr) => addr.to_string(),
            None => String::new(),
        },
    }
}

/// `rcli config`: which file and profile, then every option (passwords as `***`).
pub(crate) fn print_config(args: &ConnectionArgs) -> Result<(), Failure> {
    let (config, source) = resolve(args)?;
    match source {
        Source::Profile(p) => {
            say!("file: {} (from {})", p.file.display(), p.file_from);
            say!("profile: {} (from {})", p.profile, p.profile_from);
        }
        Source::Flags => say!("source: command-line flags"),
        Source::Default => say!("source: defaults (no --url, no profile)"),
    }
    for (key, value) in config.settings() {
        say!("{key} = {value}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ConnectionArgs;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        conn: ConnectionArgs,
    }

    #[test]
    fn debug_of_the_options_hides_the_password_and_url_credentials() {
        let probe = Probe::try_parse_from([
            "rcli",
            "--password",
            "-M4rk/er?#@:%2Fx",
            "--url",
            "redis://u:M4rk%2Fer@h:1",
            "--url",
            "redis://u:M4rk/er?#@:%2Fx@h:2",
            "--sentinel",
            "u:M4rk@s:1",
        ])
        .unwrap();
        let text = format!("{probe:?}");
        assert!(!text.contains("M4rk"), "{text}");
        // A password that starts with '-' is a value, not a flag clap would quote back.
        let password = probe.conn.password.as_ref().map(|p| p.expose());
        assert_eq!(password, Some("-M4rk/er?#@:%2Fx"));
    }
}
