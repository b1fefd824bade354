//! Profile files: named configurations in TOML, chosen by name or by `REDIS_PROFILE`, from the
//! file given explicitly, by `REDIS_CONFIG`, or `./redis.toml`.
//!
//! Every error names the file, the profile and the key; none shows a secret's value. The keys
//! are the settings table's (`settings.rs`), besides `url`, `nodes` and `sentinels`, which say
//! where the servers are.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value as Toml};

use crate::config::{parse_host_port, Config, Mode};
use crate::redact::{is_secret_key, redact};
use crate::settings::{
    toml_kind, wrong_type, Input, Setting, TlsOptions, Value, SETTINGS, TLS_SETTINGS,
};
use crate::ConfigError;

/// The environment variable naming the profile file.
pub const CONFIG_ENV: &str = "REDIS_CONFIG";
/// The environment variable naming the profile.
pub const PROFILE_ENV: &str = "REDIS_PROFILE";
/// The file used when neither a path nor `REDIS_CONFIG` is given.
pub const DEFAULT_FILE: &str = "redis.toml";

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
                    format!("expected a string, found {}", toml_kind(&other)),
                )))
            }
        };
        let profiles = match root.remove("profiles") {
            Some(Toml::Table(t)) => t,
            None => Table::new(),
            Some(other) => {
                return Err(in_file(ConfigError::key(
                    "profiles",
                    format!("expected a table, found {}", toml_kind(&other)),
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
                    ConfigError::new(format!("expected a table, found {}", toml_kind(value)))
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

impl Config {
    /// The profile `name` (or the one `REDIS_PROFILE` names) from the profile file given by
    /// `REDIS_CONFIG`, or `./redis.toml` (see the [crate docs](crate#profile-files)).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the profile and the key at fault.
    pub fn from_profile(name: Option<&str>) -> Result<Config, ConfigError> {
        crate::profile::load(None, name).map(|(config, _)| config)
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

/// The keys a profile takes besides the settings: where the servers are.
const SERVER_KEYS: &[&str] = &["url", "nodes", "sentinels"];

/// The settings a profile takes (all but those only shown).
fn profile_settings() -> impl Iterator<Item = &'static Setting> {
    SETTINGS
        .iter()
        .filter(|s| !matches!(s.value, Value::Shown(_)))
}

/// Refuses a key no setting has, and a section (`[retry]`, `[pool]`, `[tls]`) that is no table
/// or holds an unknown key.
pub(crate) fn check_keys(table: &Table) -> Result<(), ConfigError> {
    for (key, value) in table {
        let sub_keys: Vec<&str> = if key == "tls" {
            TLS_SETTINGS.iter().map(|s| s.name).collect()
        } else {
            profile_settings()
                .filter_map(|s| s.name.strip_prefix(key.as_str())?.strip_prefix('.'))
                .collect()
        };
        if sub_keys.is_empty() {
            if !is_key(key) {
                return Err(ConfigError::key(key.clone(), "unknown key"));
            }
            continue;
        }
        let Toml::Table(section) = value else {
            return Err(wrong_type(key, "a table", value));
        };
        if let Some(sub) = section.keys().find(|k| !sub_keys.contains(&k.as_str())) {
            return Err(ConfigError::key(format!("{key}.{sub}"), "unknown key"));
        }
    }
    Ok(())
}

/// Whether `key` is a top-level key: a server key, a setting, or `<secret>_env`.
fn is_key(key: &str) -> bool {
    let secret_env = key.strip_suffix("_env").is_some_and(|name| {
        profile_settings().any(|s| s.name == name && matches!(s.value, Value::Secret(..)))
    });
    SERVER_KEYS.contains(&key) || secret_env || profile_settings().any(|s| s.name == key)
}

/// Wraps a parse error of a value (a URL, an address, a name) with its key.
fn at(key: &str) -> impl Fn(ConfigError) -> ConfigError + '_ {
    move |e| ConfigError::key(key, e.message().to_string())
}

fn profile_config(table: &Table) -> Result<Config, ConfigError> {
    check_keys(table)?;
    let (config, tls_from_url) = servers(table)?;
    let mut config = apply_settings(table, config)?;
    if let Some(Toml::Table(tls)) = table.get("tls") {
        // TLS built from a `[tls]` table is off only when the URL left it off: nothing to undo.
        if let Some(tls) = tls_options(tls, tls_from_url)?.build()? {
            config = config.tls(tls);
        }
    }
    config.validate()?;
    Ok(config)
}

fn string<'a>(table: &'a Table, key: &str) -> Result<Option<&'a str>, ConfigError> {
    match table.get(key) {
        None => Ok(None),
        Some(Toml::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong_type(key, "a string", v)),
    }
}

fn strings<'a>(table: &'a Table, key: &str) -> Result<Option<Vec<&'a str>>, ConfigError> {
    match table.get(key) {
        None => Ok(None),
        Some(Toml::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Toml::String(s) => Ok(s.as_str()),
                other => Err(wrong_type(&format!("{key}[{i}]"), "a string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(wrong_type(key, "an array of strings", v)),
    }
}

/// Where the servers are: a URL, a list of nodes (addresses or URLs), sentinels. Returns the
/// configuration so far, and whether a URL turned TLS on.
fn servers(table: &Table) -> Result<(Config, bool), ConfigError> {
    let nodes = strings(table, "nodes")?;
    let mut tls_from_url = false;
    let mut config = match (string(table, "url")?, &nodes) {
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
    if let Some(list) = strings(table, "sentinels")? {
        let addrs = list
            .iter()
            .map(|n| parse_host_port(n, 26379))
            .collect::<Result<Vec<_>, _>>()
            .map_err(at("sentinels"))?;
        config = config.with_mode(Mode::Sentinel).sentinel_addrs(addrs);
    }
    Ok((config, tls_from_url))
}

/// Every setting the profile sets, in table order.
pub(crate) fn apply_settings(table: &Table, mut config: Config) -> Result<Config, ConfigError> {
    for setting in profile_settings() {
        if let Some(value) = value_of(table, setting)? {
            config = setting
                .value
                .apply(config, setting.name, Input::Toml(&value))?;
        }
    }
    Ok(config)
}

/// The value of a setting (`retry.max_attempts` is `max_attempts` in `[retry]`); for a secret,
/// the value of the environment variable that `<name>_env` names, instead.
fn value_of(table: &Table, setting: &Setting) -> Result<Option<Toml>, ConfigError> {
    let name = setting.name;
    let value = match name.split_once('.') {
        Some((section, key)) => table.get(section).and_then(|t| t.get(key)),
        None => table.get(name),
    };
    if !matches!(setting.value, Value::Secret(..)) {
        return Ok(value.cloned());
    }
    let env_key = format!("{name}_env");
    match (value, string(table, &env_key)?) {
        (Some(_), Some(_)) => Err(ConfigError::key(
            name,
            format!("set {name} or {env_key}, not both"),
        )),
        (value, None) => Ok(value.cloned()),
        (None, Some(var)) => std::env::var(var)
            .map(|v| Some(Toml::String(v)))
            .map_err(|_| {
                ConfigError::key(
                    env_key,
                    format!("the environment variable {var} is not set"),
                )
            }),
    }
}

/// The `[tls]` table: TLS is on unless `enabled = false` (and the URL did not turn it on).
pub(crate) fn tls_options(tls: &Table, from_url: bool) -> Result<TlsOptions, ConfigError> {
    let mut options = TlsOptions {
        enabled: true,
        ..TlsOptions::default()
    };
    for setting in TLS_SETTINGS {
        if let Some(value) = tls.get(setting.name) {
            let key = format!("tls.{}", setting.name);
            setting
                .value
                .apply(&mut options, &key, Input::Toml(value))?;
        }
    }
    options.enabled |= from_url;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redis_conn::{Delivery, Protocol, SkippedChecks};

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
        let (conn, backoff) = (&c.connection, c.connection.get_backoff());
        assert_eq!(c.mode(), Mode::Cluster);
        assert_eq!(c.nodes().len(), 2);
        assert_eq!(conn.get_username(), Some("app"));
        assert_eq!(conn.get_password().unwrap().expose(), "S3cr3t-marker");
        assert!(c.read_from_replicas);
        assert_eq!(c.replica_selection.name(), "round_robin");
        assert_eq!(c.topology_refresh, Some(Duration::from_secs(30)));
        assert_eq!(c.min_topology_refresh, Duration::from_millis(500));
        assert_eq!(c.max_redirects, 7);
        assert_eq!(conn.get_connect_timeout(), Duration::from_millis(300));
        assert_eq!(conn.get_response_timeout(), Duration::from_millis(800));
        assert_eq!(conn.get_health_check_interval(), None);
        assert_eq!(conn.get_spin_wait(), Duration::ZERO);
        assert_eq!(local.connection.get_spin_wait(), Duration::from_micros(50));
        assert_eq!(c.connections, 2);
        assert_eq!(conn.get_queue_capacity(), 5000);
        assert_eq!(
            (
                conn.get_limits().get_max_reply_bytes(),
                conn.get_limits().get_max_reply_elements()
            ),
            (2 << 20, 100_000)
        );
        assert_eq!(conn.get_hang_window(), Duration::from_secs(4));
        assert_eq!(conn.get_message_queue_bytes(), 1 << 20);
        assert!(conn.get_fail_fast());
        assert_eq!(conn.get_delivery(), Delivery::AtLeastOnce);
        assert_eq!(conn.get_protocol(), Protocol::Resp2);
        assert_eq!(conn.get_client_name(), Some("billing"));
        assert!(c.log_events);
        let tls = conn.tls_config().unwrap();
        let skipped = tls.skipped_checks();
        assert!(skipped.hostname && !skipped.chain && !skipped.validity_period);
        assert_eq!(conn.get_max_attempts(), 4);
        assert_eq!(backoff.get_base(), Duration::from_millis(20));
        assert_eq!(backoff.get_max_delay(), Duration::from_secs(2));
        assert_eq!(backoff.get_factor(), 3.0);
        assert_eq!(backoff.get_max_attempts(), Some(10));
        assert_eq!(c.pool.get_max_size(), 16);
        assert_eq!(c.pool.get_min_idle(), 2);
        assert_eq!(c.pool.get_acquire_timeout(), Duration::from_millis(250));
        assert_eq!(c.pool.get_idle_timeout(), None);
        assert_eq!(c.pool.get_max_lifetime(), Some(Duration::from_secs(60)));

        let (c, _) = p.config(Some("ha")).unwrap();
        assert_eq!(c.mode(), Mode::Sentinel);
        assert_eq!(c.sentinels().len(), 2);
        assert_eq!(c.master_name.as_deref(), Some("mymaster"));
        assert_eq!(c.connection.get_database(), 2);
        assert_eq!(c.sentinel_username.as_deref(), Some("watcher"));
        assert_eq!(c.sentinel_poll, Duration::from_secs(1));

        let (c, _) = p.config(Some("insecure")).unwrap();
        assert_eq!(
            c.connection.tls_config().unwrap().skipped_checks(),
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
        assert_eq!(c.connection.get_password().unwrap().expose(), "from-env");
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
