//! Profile files: named configurations in TOML, chosen by name or by `REDIS_PROFILE`, from the
//! file given explicitly, by `REDIS_CONFIG`, or `./redis.toml`.
//!
//! Every error names the file, the profile and the key; none shows a secret's value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis_conn::{Delivery, Protocol, SkippedChecks};
use toml::{Table, Value as Toml};

use crate::config::{parse_host_port, Config, Mode, ReplicaSelection};
use crate::url::{is_secret_key, redact, TlsOptions};
use crate::ConfigError;

/// The environment variable naming the profile file.
pub const CONFIG_ENV: &str = "REDIS_CONFIG";
/// The environment variable naming the profile.
pub const PROFILE_ENV: &str = "REDIS_PROFILE";
/// The file used when neither a path nor `REDIS_CONFIG` is given.
pub const DEFAULT_FILE: &str = "redis.toml";

const PROFILE_KEYS: &[&str] = &[
    "url",
    "mode",
    "nodes",
    "sentinels",
    "master_name",
    "username",
    "password",
    "password_env",
    "database",
    "client_name",
    "protocol",
    "connect_timeout_ms",
    "timeout_ms",
    "health_check_interval_ms",
    "spin_wait_us",
    "connections",
    "queue_capacity",
    "hang_window_ms",
    "message_queue_bytes",
    "max_reply_bytes",
    "max_reply_elements",
    "fail_fast",
    "delivery",
    "read_from_replicas",
    "replica_selector",
    "topology_refresh_ms",
    "min_topology_refresh_ms",
    "max_redirects",
    "sentinel_username",
    "sentinel_password",
    "sentinel_password_env",
    "sentinel_tls",
    "sentinel_poll_ms",
    "events",
    "tls",
    "retry",
    "pool",
];
const TLS_KEYS: &[&str] = &[
    "enabled",
    "ca_file",
    "cert_file",
    "key_file",
    "server_name",
    "insecure",
    "skip_chain_verification",
    "skip_hostname_verification",
    "skip_validity_period_check",
];
const RETRY_KEYS: &[&str] = &[
    "max_attempts",
    "backoff_base_ms",
    "backoff_max_ms",
    "backoff_factor",
    "reconnect_attempts",
];
const POOL_KEYS: &[&str] = &[
    "max_size",
    "min_idle",
    "acquire_timeout_ms",
    "idle_timeout_ms",
    "max_lifetime_ms",
];

/// A parsed profile file.
///
/// ```
/// use redis_client::Profiles;
///
/// let profiles = Profiles::parse(r#"
///     [profiles.local]
///     url = "redis://127.0.0.1:6379/0"
///
///     [profiles.ha]
///     mode = "sentinel"
///     sentinels = ["127.0.0.1:26379", "127.0.0.1:26380"]
///     master_name = "mymaster"
/// "#, "inline")?;
/// assert_eq!(profiles.names(), vec!["ha", "local"]);
/// let (config, name) = profiles.config(Some("ha"))?;
/// assert_eq!(name, "ha");
/// assert_eq!(config.sentinels().len(), 2);
/// # Ok::<(), redis_client::ConfigError>(())
/// ```
///
/// `Debug` shows every profile with its secrets as `***`: the values of keys that name one
/// (`password`, `sentinel_password`, anything with `pass`, `auth`, `secret` or `token`), and the
/// user info and secret query values of URLs (see [`redact_url`](crate::redact_url)).
#[derive(Clone)]
pub struct Profiles {
    file: String,
    profiles: Table,
    default: Option<String>,
}

impl fmt::Debug for Profiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiles")
            .field("file", &self.file)
            .field("default", &self.default)
            .field("profiles", &RedactedTable(&self.profiles))
            .finish()
    }
}

/// A TOML table for `Debug`, secrets hidden.
struct RedactedTable<'a>(&'a Table);

impl fmt::Debug for RedactedTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let value = RedactedValue {
                    secret: is_secret_key(key),
                    value,
                };
                (key, value)
            }))
            .finish()
    }
}

/// A TOML value for `Debug`: `***` under a secret key; strings as [`redact`] shows them (a URL
/// or an address may carry credentials).
struct RedactedValue<'a> {
    secret: bool,
    value: &'a Toml,
}

impl fmt::Debug for RedactedValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            return f.write_str("***");
        }
        match self.value {
            Toml::String(s) => fmt::Debug::fmt(&redact(s), f),
            Toml::Array(items) => f
                .debug_list()
                .entries(items.iter().map(|value| RedactedValue {
                    secret: false,
                    value,
                }))
                .finish(),
            Toml::Table(table) => fmt::Debug::fmt(&RedactedTable(table), f),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

/// Where a configuration came from: what `rcli config` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSource {
    /// The file.
    pub file: PathBuf,
    /// The profile.
    pub profile: String,
    /// How the file was chosen: `"argument"`, `"REDIS_CONFIG"` or `"./redis.toml"`.
    pub file_from: &'static str,
    /// How the profile was chosen: `"argument"`, `"REDIS_PROFILE"`, `"default_profile"`,
    /// `"the profile named default"` or `"the only profile"`.
    pub profile_from: &'static str,
}

impl Profiles {
    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`ConfigError`] when the file cannot be read or is not a valid profile file.
    pub fn from_file(path: &Path) -> Result<Profiles, ConfigError> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!("cannot read the profile file: {e}")).in_file(label.clone())
        })?;
        Profiles::parse(&text, &label)
    }

    /// Finds the file: `explicit`, else `$REDIS_CONFIG`, else `./redis.toml`. Returns it with
    /// how it was chosen.
    ///
    /// # Errors
    /// [`ConfigError`] when none is found or it cannot be read.
    pub fn discover(
        explicit: Option<&Path>,
    ) -> Result<(Profiles, PathBuf, &'static str), ConfigError> {
        let (path, from) = match explicit {
            Some(p) => (p.to_path_buf(), "argument"),
            None => match std::env::var_os(CONFIG_ENV) {
                Some(p) if !p.is_empty() => (PathBuf::from(p), CONFIG_ENV),
                _ => {
                    let local = PathBuf::from(DEFAULT_FILE);
                    if !local.exists() {
                        return Err(ConfigError::new(format!(
                            "no profile file: pass one (--config FILE), set {CONFIG_ENV}, or \
                             create ./{DEFAULT_FILE}"
                        )));
                    }
                    (local, "./redis.toml")
                }
            },
        };
        Ok((Profiles::from_file(&path)?, path, from))
    }

    /// Parses profile text; `label` names it in errors (a file name).
    ///
    /// # Errors
    /// [`ConfigError`] for TOML syntax errors, unknown top-level keys, or profiles that are not
    /// tables.
    pub fn parse(text: &str, label: &str) -> Result<Profiles, ConfigError> {
        let in_file = |e: ConfigError| e.in_file(label.to_string());
        let mut root: Table = text.parse().map_err(|e: toml::de::Error| {
            // toml's message shows the offending line; a secret on a broken line would show,
            // so only the position and the reason are kept.
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" at line {line}")
                })
                .unwrap_or_default();
            in_file(ConfigError::new(format!(
                "not valid TOML{at}: {}",
                e.message()
            )))
        })?;
        let default = match root.remove("default_profile") {
            None => None,
            Some(Toml::String(s)) => Some(s),
            Some(other) => {
                return Err(in_file(ConfigError::key(
                    "default_profile",
                    format!("expected a string, found {}", kind(&other)),
                )))
            }
        };
        let profiles = match root.remove("profiles") {
            Some(Toml::Table(t)) => t,
            None => Table::new(),
            Some(other) => {
                return Err(in_file(ConfigError::key(
                    "profiles",
                    format!("expected a table, found {}", kind(&other)),
                )))
            }
        };
        if let Some(key) = root.keys().next() {
            return Err(in_file(ConfigError::key(
                key.clone(),
                "unknown key (a profile file holds [profiles.<name>] tables and default_profile)",
            )));
        }
        for (name, value) in &profiles {
            if !value.is_table() {
                return Err(in_file(
                    ConfigError::new(format!("expected a table, found {}", kind(value)))
                        .in_profile(name.clone()),
                ));
            }
        }
        Ok(Profiles {
            file: label.to_string(),
            profiles,
            default,
        })
    }

    /// The profile names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The configuration of profile `name`; without a name, the one `REDIS_PROFILE` names, else
    /// `default_profile`, else the profile called `default`, else the only profile. Returns the
    /// profile's name too.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the profile and the key at fault.
    pub fn config(&self, name: Option<&str>) -> Result<(Config, String), ConfigError> {
        self.config_from(name).map(|(c, n, _)| (c, n))
    }

    fn config_from(
        &self,
        name: Option<&str>,
    ) -> Result<(Config, String, &'static str), ConfigError> {
        let env = std::env::var(PROFILE_ENV).ok().filter(|s| !s.is_empty());
        let (name, from) = match (name, env, &self.default) {
            (Some(n), _, _) => (n.to_string(), "argument"),
            (None, Some(n), _) => (n, PROFILE_ENV),
            (None, None, Some(n)) => (n.clone(), "default_profile"),
            (None, None, None) if self.profiles.contains_key("default") => {
                ("default".to_string(), "the profile named default")
            }
            (None, None, None) if self.profiles.len() == 1 => (
                self.profiles.keys().next().cloned().unwrap_or_default(),
                "the only profile",
            ),
            (None, None, None) => {
                return Err(ConfigError::new(format!(
                    "no profile chosen: pass one (--profile NAME) or set {PROFILE_ENV}; the file \
                     has {}",
                    list_names(&self.names())
                ))
                .in_file(self.file.clone()))
            }
        };
        let Some(Toml::Table(table)) = self.profiles.get(&name) else {
            return Err(ConfigError::new(format!(
                "no profile \"{name}\" in the file, which has {}",
                list_names(&self.names())
            ))
            .in_file(self.file.clone()));
        };
        let config = profile_config(table)
            .map_err(|e| e.in_profile(name.clone()).in_file(self.file.clone()))?;
        Ok((config, name, from))
    }
}

fn list_names(names: &[&str]) -> String {
    if names.is_empty() {
        "no profile".to_string()
    } else {
        format!("profiles {}", names.join(", "))
    }
}

/// Loads a profile as `Config::from_profile` does, with where it came from.
pub(crate) fn load(
    file: Option<&Path>,
    name: Option<&str>,
) -> Result<(Config, ProfileSource), ConfigError> {
    let (profiles, path, file_from) = Profiles::discover(file)?;
    let (config, profile, profile_from) = profiles.config_from(name)?;
    Ok((
        config,
        ProfileSource {
            file: path,
            profile,
            file_from,
            profile_from,
        },
    ))
}

/// Loads a profile from `file` (or the usual places) and says where it came from.
///
/// # Errors
/// As [`Profiles::config`].
pub fn load_profile(
    file: Option<&Path>,
    name: Option<&str>,
) -> Result<(Config, ProfileSource), ConfigError> {
    load(file, name)
}

fn kind(v: &Toml) -> &'static str {
    match v {
        Toml::String(_) => "a string",
        Toml::Integer(_) => "an integer",
        Toml::Float(_) => "a float",
        Toml::Boolean(_) => "a boolean",
        Toml::Datetime(_) => "a date",
        Toml::Array(_) => "an array",
        Toml::Table(_) => "a table",
    }
}

/// Typed access to one table's keys, with errors naming the key.
struct Keys<'a> {
    table: &'a Table,
}

impl<'a> Keys<'a> {
    fn check(table: &'a Table, known: &[&str]) -> Result<Keys<'a>, ConfigError> {
        if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ConfigError::key(key.clone(), "unknown key"));
        }
        Ok(Keys { table })
    }

    fn wrong(&self, key: &str, expected: &str, v: &Toml) -> ConfigError {
        ConfigError::key(key, format!("expected {expected}, found {}", kind(v)))
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Toml::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Toml::Boolean(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "true or false", v)),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Toml::Integer(n)) => u64::try_from(*n)
                .map(Some)
                .map_err(|_| ConfigError::key(key, "expected a number >= 0, found a negative one")),
            Some(v) => Err(self.wrong(key, "an integer", v)),
        }
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Toml::Integer(n)) => Ok(Some(*n)),
            Some(v) => Err(self.wrong(key, "an integer", v)),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Toml::Float(f)) => Ok(Some(*f)),
            Some(Toml::Integer(n)) => Ok(Some(*n as f64)),
            Some(v) => Err(self.wrong(key, "a number", v)),
        }
    }

    fn usize(&self, key: &str) -> Result<Option<usize>, ConfigError> {
        self.uint(key)?
            .map(|n| usize::try_from(n).map_err(|_| ConfigError::key(key, "too large")))
            .transpose()
    }

    fn u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        self.uint(key)?
            .map(|n| u32::try_from(n).map_err(|_| ConfigError::key(key, "too large")))
            .transpose()
    }

    fn millis(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.uint(key)?.map(Duration::from_millis))
    }

    /// Milliseconds where 0 turns the feature off.
    fn millis_or_off(&self, key: &str) -> Result<Option<Option<Duration>>, ConfigError> {
        Ok(self
            .uint(key)?
            .map(|ms| (ms > 0).then(|| Duration::from_millis(ms))))
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Toml::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Toml::String(s) => Ok(s.as_str()),
                    other => Err(ConfigError::key(
                        format!("{key}[{i}]"),
                        format!("expected a string, found {}", kind(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.wrong(key, "an array of strings", v)),
        }
    }

    fn table(&self, key: &str, known: &[&str]) -> Result<Option<Keys<'a>>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Toml::Table(t)) => Keys::check(t, known).map(Some).map_err(|e| e.under(key)),
            Some(v) => Err(self.wrong(key, "a table", v)),
        }
    }

    /// A secret: the value, or the environment variable that `<key>_env` names.
    fn secret(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let env_key = format!("{key}_env");
        match (self.str(key)?, self.str(&env_key)?) {
            (Some(_), Some(_)) => Err(ConfigError::key(
                key,
                format!("set {key} or {env_key}, not both"),
            )),
            (Some(v), None) => Ok(Some(v.to_string())),
            (None, Some(var)) => std::env::var(var).map(Some).map_err(|_| {
                ConfigError::key(
                    env_key,
                    format!("the environment variable {var} is not set"),
                )
            }),
            (None, None) => Ok(None),
        }
    }
}

/// Wraps a parse error of a value (a URL, an address, a name) with its key.
fn at(key: &str) -> impl Fn(ConfigError) -> ConfigError + '_ {
    move |e| ConfigError::key(key, e.message().to_string())
}

fn profile_config(table: &Table) -> Result<Config, ConfigError> {
    let k = Keys::check(table, PROFILE_KEYS)?;
    // Where the servers are: a URL, a list of nodes, sentinels.
    let url = k.str("url")?;
    let nodes = k.strings("nodes")?;
    let sentinels = k.strings("sentinels")?;
    let mut tls_from_url = false;
    let mut config = match (url, &nodes) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::key("nodes", "set url or nodes, not both"));
        }
        (Some(u), None) => {
            tls_from_url = u.starts_with("rediss");
            Config::from_url(u).map_err(at("url"))?
        }
        (None, Some(list)) if list.is_empty() => {
            return Err(ConfigError::key("nodes", "the list is empty"));
        }
        (None, Some(list)) if list.iter().all(|n| n.contains("://")) => {
            tls_from_url = list.iter().any(|u| u.starts_with("rediss"));
            Config::from_urls(list).map_err(at("nodes"))?
        }
        (None, Some(list)) => {
            let addrs = list
                .iter()
                .map(|n| parse_host_port(n, 6379))
                .collect::<Result<Vec<_>, _>>()
                .map_err(at("nodes"))?;
            let mode = if addrs.len() > 1 {
                Mode::Cluster
            } else {
                Mode::Standalone
            };
            Config::new().with_mode(mode).nodes_addrs(addrs)
        }
        (None, None) => Config::new(),
    };
    if let Some(list) = sentinels {
        let addrs = list
            .iter()
            .map(|n| parse_host_port(n, 26379))
            .collect::<Result<Vec<_>, _>>()
            .map_err(at("sentinels"))?;
        config = config.with_mode(Mode::Sentinel).sentinel_addrs(addrs);
    }
    if let Some(mode) = k.str("mode")? {
        config = config.with_mode(mode.parse::<Mode>().map_err(at("mode"))?);
    }
    if let Some(name) = k.str("master_name")? {
        config = config.master_name(name);
    }
    if let Some(user) = k.str("username")? {
        config = config.username(user);
    }
    if let Some(password) = k.secret("password")? {
        config = config.password(password);
    }
    if let Some(db) = k.int("database")? {
        config = config.database(db);
    }
    if let Some(name) = k.str("client_name")? {
        config = config.client_name(name);
    }
    if let Some(p) = k.str("protocol")? {
        config = config.protocol(match p {
            "resp2" => Protocol::Resp2,
            "resp3" => Protocol::Resp3,
            other => {
                return Err(ConfigError::key(
                    "protocol",
                    format!("unknown protocol \"{other}\" (expected resp2 or resp3)"),
                ))
            }
        });
    }
    if let Some(d) = k.millis("connect_timeout_ms")? {
        config = config.connect_timeout(d);
    }
    if let Some(d) = k.millis("timeout_ms")? {
        config = config.response_timeout(d);
    }
    if let Some(d) = k.millis_or_off("health_check_interval_ms")? {
        config = config.health_check_interval(d);
    }
    if let Some(us) = k.uint("spin_wait_us")? {
        config = config.spin_wait(Duration::from_micros(us));
    }
    if let Some(n) = k.usize("connections")? {
        config = config.connections(n);
    }
    if let Some(n) = k.usize("queue_capacity")? {
        config = config.queue_capacity(n);
    }
    if let Some(ms) = k.millis("hang_window_ms")? {
        config = config.hang_window(ms);
    }
    if let Some(n) = k.usize("message_queue_bytes")? {
        config = config.message_queue_bytes(n);
    }
    if let Some(n) = k.usize("max_reply_bytes")? {
        config = config.max_reply_bytes(n);
    }
    if let Some(n) = k.usize("max_reply_elements")? {
        config = config.max_reply_elements(n);
    }
    if let Some(b) = k.bool("fail_fast")? {
        config = config.fail_fast(b);
    }
    if let Some(d) = k.str("delivery")? {
        config = config.delivery(match d {
            "at_most_once" => Delivery::AtMostOnce,
            "at_least_once" => Delivery::AtLeastOnce,
            other => {
                return Err(ConfigError::key(
                    "delivery",
                    format!(
                        "unknown delivery \"{other}\" (expected at_most_once or at_least_once)"
                    ),
                ))
            }
        });
    }
    if let Some(b) = k.bool("read_from_replicas")? {
        config = config.read_from_replicas(b);
    }
    if let Some(s) = k.str("replica_selector")? {
        config = config.replica_selection(
            s.parse::<ReplicaSelection>()
                .map_err(at("replica_selector"))?,
        );
    }
    if let Some(d) = k.millis_or_off("topology_refresh_ms")? {
        config = config.topology_refresh(d);
    }
    if let Some(d) = k.millis("min_topology_refresh_ms")? {
        config = config.min_topology_refresh(d);
    }
    if let Some(n) = k.u32("max_redirects")? {
        config = config.max_redirects(n);
    }
    let sentinel_user = k.str("sentinel_username")?.map(str::to_string);
    match k.secret("sentinel_password")? {
        Some(password) => config = config.sentinel_credentials(sentinel_user, password),
        None if sentinel_user.is_some() => {
            return Err(ConfigError::key(
                "sentinel_username",
                "a sentinel user needs sentinel_password",
            ))
        }
        None => {}
    }
    if let Some(b) = k.bool("sentinel_tls")? {
        config = config.sentinel_tls(b);
    }
    if let Some(d) = k.millis("sentinel_poll_ms")? {
        config = config.sentinel_poll_interval(d);
    }
    if let Some(b) = k.bool("events")? {
        config = config.log_events(b);
    }
    if let Some(retry) = k.table("retry", RETRY_KEYS)? {
        let under = |e: ConfigError| e.under("retry");
        if let Some(n) = retry.u32("max_attempts").map_err(under)? {
            if n == 0 {
                return Err(ConfigError::key("retry.max_attempts", "must be at least 1"));
            }
            config = config.max_attempts(n);
        }
        if let Some(d) = retry.millis("backoff_base_ms").map_err(under)? {
            config = config.backoff_base(d);
        }
        if let Some(d) = retry.millis("backoff_max_ms").map_err(under)? {
            config = config.backoff_max(d);
        }
        if let Some(f) = retry.float("backoff_factor").map_err(under)? {
            if !(f.is_finite() && f >= 1.0) {
                return Err(ConfigError::key(
                    "retry.backoff_factor",
                    "must be a number >= 1",
                ));
            }
            config = config.backoff_factor(f);
        }
        if let Some(n) = retry.u32("reconnect_attempts").map_err(under)? {
            config = config.reconnect_attempts((n > 0).then_some(n));
        }
    }
    if let Some(pool) = k.table("pool", POOL_KEYS)? {
        let under = |e: ConfigError| e.under("pool");
        if let Some(n) = pool.usize("max_size").map_err(under)? {
            if n == 0 {
                return Err(ConfigError::key("pool.max_size", "must be at least 1"));
            }
            config = config.pool_size(n);
        }
        if let Some(n) = pool.usize("min_idle").map_err(under)? {
            config = config.pool_min_idle(n);
        }
        if let Some(d) = pool.millis("acquire_timeout_ms").map_err(under)? {
            config = config.pool_acquire_timeout(d);
        }
        if let Some(d) = pool.millis_or_off("idle_timeout_ms").map_err(under)? {
            config = config.pool_idle_timeout(d);
        }
        if let Some(d) = pool.millis_or_off("max_lifetime_ms").map_err(under)? {
            config = config.pool_max_lifetime(d);
        }
    }
    if let Some(tls) = k.table("tls", TLS_KEYS)? {
        let under = |e: ConfigError| e.under("tls");
        let mut options = TlsOptions {
            enabled: tls.bool("enabled").map_err(under)?.unwrap_or(true) || tls_from_url,
            ca_file: tls.str("ca_file").map_err(under)?.map(PathBuf::from),
            cert_file: tls.str("cert_file").map_err(under)?.map(PathBuf::from),
            key_file: tls.str("key_file").map_err(under)?.map(PathBuf::from),
            server_name: tls.str("server_name").map_err(under)?.map(str::to_string),
            skip: SkippedChecks::default(),
        };
        if tls.bool("insecure").map_err(under)? == Some(true) {
            options.skip = SkippedChecks::ALL;
        }
        if tls.bool("skip_chain_verification").map_err(under)? == Some(true) {
            options.skip.chain = true;
        }
        if tls.bool("skip_hostname_verification").map_err(under)? == Some(true) {
            options.skip.hostname = true;
        }
        if tls.bool("skip_validity_period_check").map_err(under)? == Some(true) {
            options.skip.validity_period = true;
        }
        config.tls = options.build()?;
    }
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
        default_profile = "local"

        [profiles.local]
        url = "redis://127.0.0.1:6379/0"

        [profiles.prod]
        mode = "cluster"
        nodes = ["rediss://10.0.0.1:6379", "rediss://10.0.0.2:6379"]
        username = "app"
        password = "S3cr3t-marker"
        read_from_replicas = true
        replica_selector = "round_robin"
        topology_refresh_ms = 30000
        min_topology_refresh_ms = 500
        max_redirects = 7
        connect_timeout_ms = 300
        timeout_ms = 800
        health_check_interval_ms = 0
        spin_wait_us = 0
        connections = 2
        queue_capacity = 5000
        max_reply_bytes = 2097152
        hang_window_ms = 4000
        message_queue_bytes = 1048576
        max_reply_elements = 100000
        fail_fast = true
        delivery = "at_least_once"
        protocol = "resp2"
        client_name = "billing"
        events = true

        [profiles.prod.tls]
        ca_file = "/etc/ssl/redis-ca.pem"
        insecure = false
        skip_hostname_verification = true

        [profiles.prod.retry]
        max_attempts = 4
        backoff_base_ms = 20
        backoff_max_ms = 2000
        backoff_factor = 3
        reconnect_attempts = 10

        [profiles.prod.pool]
        max_size = 16
        min_idle = 2
        acquire_timeout_ms = 250
        idle_timeout_ms = 0
        max_lifetime_ms = 60000

        [profiles.ha]
        mode = "sentinel"
        sentinels = ["127.0.0.1:26379", "127.0.0.1:26380"]
        master_name = "mymaster"
        database = 2
        sentinel_username = "watcher"
        sentinel_password = "sp"
        sentinel_poll_ms = 1000

        [profiles.insecure]
        url = "rediss://127.0.0.1:6390"
        [profiles.insecure.tls]
        insecure = true
    "#;

    #[test]
    fn every_key_reaches_the_configuration() {
        let p = Profiles::parse(FULL, "redis.toml").unwrap();
        assert_eq!(p.names(), vec!["ha", "insecure", "local", "prod"]);
        let (local, name, from) = p.config_from(None).unwrap();
        assert_eq!((name.as_str(), from), ("local", "default_profile"));
        assert_eq!(local.mode(), Mode::Standalone);

        let (c, _) = p.config(Some("prod")).unwrap();
        assert_eq!(c.mode(), Mode::Cluster);
        assert_eq!(c.nodes().len(), 2);
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_ref().unwrap().expose(), "S3cr3t-marker");
        assert!(c.read_from_replicas);
        assert_eq!(c.replica_selection.name(), "round_robin");
        assert_eq!(c.topology_refresh, Some(Duration::from_secs(30)));
        assert_eq!(c.min_topology_refresh, Duration::from_millis(500));
        assert_eq!(c.max_redirects, 7);
        assert_eq!(c.connect_timeout, Duration::from_millis(300));
        assert_eq!(c.response_timeout, Duration::from_millis(800));
        assert_eq!(c.health_check_interval, None);
        assert_eq!(c.spin_wait, Duration::ZERO);
        assert_eq!(local.spin_wait, Duration::from_micros(50));
        assert_eq!(c.connections, 2);
        assert_eq!(c.queue_capacity, 5000);
        assert_eq!(
            (c.max_reply_bytes, c.max_reply_elements),
            (2 << 20, 100_000)
        );
        assert_eq!(c.hang_window, Duration::from_secs(4));
        assert_eq!(c.message_queue_bytes, 1 << 20);
        assert!(c.fail_fast);
        assert_eq!(c.delivery, Delivery::AtLeastOnce);
        assert_eq!(c.protocol, Protocol::Resp2);
        assert_eq!(c.client_name.as_deref(), Some("billing"));
        assert!(c.log_events);
        let tls = c.tls.as_ref().unwrap();
        let skipped = tls.skipped_checks();
        assert!(skipped.hostname && !skipped.chain && !skipped.validity_period);
        assert_eq!(c.max_attempts, 4);
        assert_eq!(c.backoff_base, Duration::from_millis(20));
        assert_eq!(c.backoff_max, Duration::from_secs(2));
        assert_eq!(c.backoff_factor, 3.0);
        assert_eq!(c.reconnect_attempts, Some(10));
        assert_eq!(c.pool_size, 16);
        assert_eq!(c.pool_min_idle, 2);
        assert_eq!(c.pool_acquire_timeout, Duration::from_millis(250));
        assert_eq!(c.pool_idle_timeout, None);
        assert_eq!(c.pool_max_lifetime, Some(Duration::from_secs(60)));

        let (c, _) = p.config(Some("ha")).unwrap();
        assert_eq!(c.mode(), Mode::Sentinel);
        assert_eq!(c.sentinels().len(), 2);
        assert_eq!(c.master_name.as_deref(), Some("mymaster"));
        assert_eq!(c.database, 2);
        assert_eq!(c.sentinel_username.as_deref(), Some("watcher"));
        assert_eq!(c.sentinel_poll, Duration::from_secs(1));

        let (c, _) = p.config(Some("insecure")).unwrap();
        assert_eq!(
            c.tls.as_ref().unwrap().skipped_checks(),
            SkippedChecks::ALL,
            "insecure = true turns off all three checks"
        );
    }

    fn error(text: &str, profile: Option<&str>) -> ConfigError {
        match Profiles::parse(text, "bad.toml") {
            Err(e) => e,
            Ok(p) => p.config(profile).unwrap_err(),
        }
    }

    #[test]
    fn every_error_names_the_file_the_profile_and_the_key() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                "[profiles.a]\ncolour = 1",
                Some("a"),
                "bad.toml: profile \"a\": key \"colour\": unknown key",
            ),
            (
                "[profiles.a]\ntimeout_ms = \"soon\"",
                Some("a"),
                "key \"timeout_ms\": expected an integer, found a string",
            ),
            (
                "[profiles.a]\ntimeout_ms = -5",
                Some("a"),
                "key \"timeout_ms\": expected a number >= 0",
            ),
            (
                "[profiles.a]\nread_from_replicas = \"yes\"",
                Some("a"),
                "key \"read_from_replicas\": expected true or false",
            ),
            (
                "[profiles.a]\nmode = \"clustr\"",
                Some("a"),
                "key \"mode\": unknown mode \"clustr\"",
            ),
            (
                "[profiles.a]\nreplica_selector = \"fastest\"",
                Some("a"),
                "key \"replica_selector\"",
            ),
            (
                "[profiles.a]\nurl = \"http://x\"",
                Some("a"),
                "key \"url\": URL http://x: unknown scheme",
            ),
            (
                "[profiles.a]\nnodes = [\"a:1\", 2]",
                Some("a"),
                "key \"nodes[1]\": expected a string, found an integer",
            ),
            (
                "[profiles.a]\nsentinels = [\"s:x\"]",
                Some("a"),
                "key \"sentinels\": bad address",
            ),
            (
                "[profiles.a]\n[profiles.a.tls]\ninsecur = true",
                Some("a"),
                "key \"tls.insecur\": unknown key",
            ),
            (
                "[profiles.a]\n[profiles.a.retry]\nmax_attempts = 0",
                Some("a"),
                "key \"retry.max_attempts\": must be at least 1",
            ),
            (
                "[profiles.a]\n[profiles.a.retry]\nbackoff_base_ms = 1.5",
                Some("a"),
                "key \"retry.backoff_base_ms\": expected an integer, found a float",
            ),
            (
                "[profiles.a]\n[profiles.a.pool]\nmax_size = \"big\"",
                Some("a"),
                "key \"pool.max_size\"",
            ),
            (
                "[profiles.a]\nmode = \"sentinel\"",
                Some("a"),
                "key \"sentinels\"",
            ),
            (
                "[profiles.a]\ndelivery = \"twice\"",
                Some("a"),
                "key \"delivery\"",
            ),
            (
                "[profiles.a]\ntls = 1",
                Some("a"),
                "key \"tls\": expected a table, found an integer",
            ),
            (
                "[profiles.a]\npassword_env = \"NO_SUCH_VARIABLE_FOR_THE_TEST\"",
                Some("a"),
                "key \"password_env\": the environment variable",
            ),
            (
                "[profiles.a]\nurl = \"redis://h\"",
                Some("b"),
                "bad.toml: no profile \"b\" in the file, which has profiles a",
            ),
            ("[profiles.a]\n[profiles.b]", None, "no profile chosen"),
            ("colour = 1", None, "bad.toml: key \"colour\": unknown key"),
            (
                "[profiles.a\nurl = 1",
                None,
                "bad.toml: not valid TOML at line",
            ),
            ("profiles = 3", None, "key \"profiles\": expected a table"),
        ];
        for (text, profile, expected) in cases {
            let err = error(text, *profile).to_string();
            assert!(
                err.contains(expected),
                "{text:?}\n got: {err}\nwant: {expected}"
            );
        }
        let err = error("[profiles.a]\ntimeout_ms = \"soon\"", Some("a"));
        assert_eq!(err.file(), Some("bad.toml"));
        assert_eq!(err.profile(), Some("a"));
        assert_eq!(err.key_name(), Some("timeout_ms"));
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        // `/ ? # @ : %`: a password that breaks a URL apart when written raw.
        for (marker, piece) in [("S3cr3t-marker", "S3cr3t"), ("M4rk/er?#@:%2Fx", "M4rk")] {
            let encoded = "M4rk%2Fer%3F%23%40%3A%252Fx";
            for text in [
                format!("[profiles.a]\npassword = 5\nurl = \"redis://u:{marker}@h:x\""),
                format!("[profiles.a]\nurl = \"redis://u:{marker}@h:x\""),
                format!("[profiles.a]\nurl = \"redis://u:{marker}@h\"\npassword = \"{marker}\n"),
                format!("[profiles.a]\nsentinel_password = \"{marker}\"\nsentinel_tls = 3"),
                format!("[profiles.a]\npassword = \"{marker}\"\ntimeout_ms = \"{marker}\""),
                format!("[profiles.a]\npassword = \"{marker}\"\ncolour = \"{marker}\""),
                format!("[profiles.a]\nnodes = [\"redis://:{marker}@a:1\", \"b:x\"]"),
                format!("[profiles.a]\nnodes = [\"u:{marker}@a:1\"]"),
                format!("[profiles.a]\nsentinels = [\"u:{marker}@s:1\"]\nmaster_name = \"m\""),
                format!("[profiles.a]\nurl = \"redis://h?sentinel%5Fpassword={encoded}&x=1\""),
                format!("[profiles.a]\npassword = \"{marker}\"\npassword = \"{marker}\""),
            ] {
                let err = error(&text, Some("a"));
                let shown = format!("{err} {err:?}");
                assert!(!shown.contains(piece), "{text}\n{shown}");
            }
        }
    }

    #[test]
    fn debug_of_profiles_shows_every_secret_as_stars() {
        let marker = "M4rk/er?#@:%2Fx";
        let encoded = "M4rk%2Fer%3F%23%40%3A%252Fx";
        let text = format!(
            "[profiles.a]\nurl = \"redis://u:{encoded}@h:1/0\"\npassword = \"{marker}\"\n\
             client_name = \"billing\"\n\
             [profiles.b]\nnodes = [\"redis://:{encoded}@a:1\", \"redis://b:2?x_auth={marker}\"]\n\
             sentinel_password = \"{marker}\"\n[profiles.b.tls]\nca_file = \"/ca.pem\"\n"
        );
        let p = Profiles::parse(&text, "f.toml").unwrap();
        let debug = format!("{p:?} {p:#?}");
        for piece in ["M4rk", "2Fx"] {
            assert!(!debug.contains(piece), "{debug}");
        }
        assert!(debug.contains("\"password\": ***"), "{debug}");
        assert!(debug.contains("\"sentinel_password\": ***"), "{debug}");
        assert!(debug.contains("redis://***@h:1/0"), "{debug}");
        // What is not secret stays readable.
        assert!(debug.contains("\"client_name\": \"billing\""), "{debug}");
        assert!(debug.contains("\"ca_file\": \"/ca.pem\""), "{debug}");
    }

    #[test]
    fn a_password_can_come_from_the_environment() {
        let var = "REDIS_CLIENT_PROFILE_TEST_PASSWORD";
        // Only this test reads the variable.
        set_env(var, "from-env");
        let p = Profiles::parse(
            &format!("[profiles.a]\nurl = \"redis://h\"\npassword_env = \"{var}\""),
            "f",
        )
        .unwrap();
        let (c, _) = p.config(Some("a")).unwrap();
        assert_eq!(c.password.as_ref().unwrap().expose(), "from-env");
        let both = Profiles::parse(
            &format!("[profiles.a]\npassword = \"x\"\npassword_env = \"{var}\""),
            "f",
        )
        .unwrap();
        assert!(both.config(Some("a")).is_err());
    }

    /// Sets a variable only this test reads.
    fn set_env(key: &str, value: &str) {
        std::env::set_var(key, value);
    }
}
