//! The table of settings: every option of a [`Config`] named once, with how it reads from a URL
//! query value and from a profile's TOML value, how it applies to the `Config`, how it shows
//! (secrets as `***`) and its line in the reference.
//!
//! It drives the URL query options (`url.rs`), the profile keys (`profile.rs`),
//! [`Config::settings`] (what `rcli config` prints, and `Debug`), the unknown-key errors and the
//! settings reference in the crate docs, so that a setting cannot be taken by one of them and
//! refused by another. The unit tests walk the table: every setting must round-trip through a URL
//! and a profile and show in `settings()`, and the crate docs must hold [`reference`].
//!
//! What differs between a URL and a profile, on purpose:
//! - Value syntax. A URL value is text: a flag is `true`/`1`/`yes`/`on` or
//!   `false`/`0`/`no`/`off`, a number is digits. A profile value has its TOML type (`true`,
//!   `800`, `2.5`), and a wrong type is an error that names the type expected. A choice
//!   (`protocol`, `delivery`...) is text in both; a profile may write a numeric choice as a
//!   number (`protocol = 2`).
//! - Names. A profile groups keys in `[retry]` and `[pool]` tables (`retry.max_attempts`); a URL
//!   query is flat, and names each setting as its `url` list says (`max_attempts`, `pool_size`;
//!   `db` and `database` both).
//! - What the URL's form says. The scheme (mode, TLS), the hosts, the user info (username,
//!   password) and the path (master name, database) are no query options; a profile says them
//!   with `url`, `nodes`, `sentinels`, `mode`, `username` and `password`.
//! - Secrets. A profile may name an environment variable instead of the value (`password_env`).
//! - Code only: `address_map` and the event callbacks have no text form, and only show.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis_conn::{Delivery, Protocol, Secret, ServerAddr, SkippedChecks, TlsConfig};
use toml::Value as Toml;

use crate::config::{Config, Mode, ReplicaSelection};
use crate::ConfigError;

/// One setting: of a [`Config`] ([`Value`]), or of TLS ([`TlsValue`], a key of `[tls]`).
pub(crate) struct Setting<V = Value> {
    /// Its key in profile files (`retry.max_attempts` is `max_attempts` in `[retry]`; a TLS
    /// setting's is in `[tls]`) and in [`Config::settings`].
    pub(crate) name: &'static str,
    /// The URL query options that set it; none when the URL's form says it or only code can.
    pub(crate) url: &'static [&'static str],
    /// Its type: how it reads, applies and shows.
    pub(crate) value: V,
    /// Its line in the reference (read by the test that keeps the crate docs in step).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) doc: &'static str,
}

/// The type of a setting, with the functions that read it from a [`Config`] and set it.
pub(crate) enum Value {
    /// A duration in milliseconds.
    Millis(fn(&Config) -> Duration, fn(Config, Duration) -> Config),
    /// A duration in milliseconds, 0 turning the feature off (shown as `off`).
    MillisOrOff(
        fn(&Config) -> Option<Duration>,
        fn(Config, Option<Duration>) -> Config,
    ),
    /// A duration in microseconds.
    Micros(fn(&Config) -> Duration, fn(Config, Duration) -> Config),
    /// A count; one below `min` is refused, not raised.
    Count {
        min: usize,
        get: fn(&Config) -> usize,
        set: fn(Config, usize) -> Config,
    },
    /// A small count; one below `min` is refused, not raised.
    Count32 {
        min: u32,
        get: fn(&Config) -> u32,
        set: fn(Config, u32) -> Config,
    },
    /// A count where 0 means unlimited (shown as `unlimited`).
    CountOrUnlimited(
        fn(&Config) -> Option<u32>,
        fn(Config, Option<u32>) -> Config,
    ),
    /// A signed integer.
    Integer(fn(&Config) -> i64, fn(Config, i64) -> Config),
    /// A growth factor, at least 1.
    Factor(fn(&Config) -> f64, fn(Config, f64) -> Config),
    /// On or off.
    Flag(fn(&Config) -> bool, fn(Config, bool) -> Config),
    /// Text (shown as `(none)` when unset).
    Text(fn(&Config) -> Option<&str>, fn(Config, String) -> Config),
    /// A secret: never shown (`***` when set, `(none)` when not); a profile may name an
    /// environment variable that holds it instead (`<key>_env`).
    Secret(fn(&Config) -> bool, fn(Config, Secret) -> Config),
    /// One of a few names (aliases may be accepted too).
    Choice {
        /// The names the reference lists (read by its test).
        #[cfg_attr(not(test), allow(dead_code))]
        choices: &'static [&'static str],
        get: fn(&Config) -> &'static str,
        set: fn(Config, &str) -> Result<Config, ConfigError>,
    },
    /// Set by the URL's form, by `url`, `nodes`, `sentinels` or `[tls]` in a profile, or by code
    /// only: the table only shows it.
    Shown(fn(&Config) -> String),
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

fn ms_or_off(d: Option<Duration>) -> String {
    d.map_or_else(|| "off".to_string(), ms)
}

fn or_none(text: Option<&str>) -> String {
    text.unwrap_or("(none)").to_string()
}

fn addr_list(addrs: &[ServerAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Value {
    /// The value as `rcli config` shows it; a secret as `***`.
    pub(crate) fn show(&self, config: &Config) -> String {
        match self {
            Value::Millis(get, _) => ms(get(config)),
            Value::MillisOrOff(get, _) => ms_or_off(get(config)),
            Value::Micros(get, _) => get(config).as_micros().to_string(),
            Value::Count { get, .. } => get(config).to_string(),
            Value::Count32 { get, .. } => get(config).to_string(),
            Value::CountOrUnlimited(get, _) => {
                get(config).map_or_else(|| "unlimited".to_string(), |n| n.to_string())
            }
            Value::Integer(get, _) => get(config).to_string(),
            Value::Factor(get, _) => get(config).to_string(),
            Value::Flag(get, _) => get(config).to_string(),
            Value::Text(get, _) => or_none(get(config)),
            Value::Secret(is_set, _) => if is_set(config) { "***" } else { "(none)" }.to_string(),
            Value::Choice { get, .. } => get(config).to_string(),
            Value::Shown(show) => show(config),
        }
    }

    /// Reads the value from `input` and applies it; errors name `key` as the user wrote it.
    pub(crate) fn apply(
        &self,
        config: Config,
        key: &str,
        input: Input<'_>,
    ) -> Result<Config, ConfigError> {
        Ok(match self {
            Value::Millis(_, set) => set(config, Duration::from_millis(input.uint(key)?)),
            Value::MillisOrOff(_, set) => {
                let ms = input.uint(key)?;
                set(config, (ms > 0).then(|| Duration::from_millis(ms)))
            }
            Value::Micros(_, set) => set(config, Duration::from_micros(input.uint(key)?)),
            Value::Count { min, set, .. } => {
                let n = usize::try_from(input.uint(key)?)
                    .map_err(|_| ConfigError::key(key, "too large"))?;
                set(config, at_least(key, n, *min)?)
            }
            Value::Count32 { min, set, .. } => set(config, at_least(key, input.u32(key)?, *min)?),
            Value::CountOrUnlimited(_, set) => {
                let n = input.u32(key)?;
                set(config, (n > 0).then_some(n))
            }
            Value::Integer(_, set) => set(config, input.int(key)?),
            Value::Factor(_, set) => {
                let f = input.float(key)?;
                if !(f.is_finite() && f >= 1.0) {
                    return Err(ConfigError::key(key, "must be a number >= 1"));
                }
                set(config, f)
            }
            Value::Flag(_, set) => set(config, input.flag(key)?),
            Value::Text(_, set) => set(config, input.text(key)?),
            Value::Secret(_, set) => set(config, Secret::from(input.text(key)?)),
            Value::Choice { set, .. } => set(config, &input.choice(key)?)
                .map_err(|e| ConfigError::key(key, e.message().to_string()))?,
            Value::Shown(_) => return Err(ConfigError::key(key, "not settable here")),
        })
    }

    /// What the reference says the value is.
    #[cfg(test)]
    fn describe(&self) -> String {
        match self {
            Value::Millis(..) => "milliseconds".to_string(),
            Value::MillisOrOff(..) => "milliseconds, 0: off".to_string(),
            Value::Micros(..) => "microseconds, 0: off".to_string(),
            Value::Count { min: 0, .. } | Value::Count32 { min: 0, .. } => "count".to_string(),
            Value::Count { min, .. } => format!("count, at least {min}"),
            Value::Count32 { min, .. } => format!("count, at least {min}"),
            Value::CountOrUnlimited(..) => "count, 0: unlimited".to_string(),
            Value::Integer(..) => "integer".to_string(),
            Value::Factor(..) => "number, at least 1".to_string(),
            Value::Flag(..) => "true or false".to_string(),
            Value::Text(..) => "text".to_string(),
            Value::Secret(..) => "secret (or `<key>_env` in a profile)".to_string(),
            Value::Choice { choices, .. } => choices
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(" or "),
            Value::Shown(..) => String::new(),
        }
    }
}

fn at_least<T: PartialOrd + fmt::Display>(key: &str, n: T, min: T) -> Result<T, ConfigError> {
    if n < min {
        return Err(ConfigError::key(key, format!("must be at least {min}")));
    }
    Ok(n)
}

/// A value as written: URL query text, or a TOML value from a profile file. The two differ only
/// here, in how a type is read and what a mistake is called.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    /// A percent-decoded URL query value.
    Url(&'a str),
    /// A profile file's value.
    Toml(&'a Toml),
}

impl Input<'_> {
    fn not_a_number(key: &str, text: &str) -> ConfigError {
        ConfigError::key(key, format!("\"{text}\" is not a valid number"))
    }

    fn uint(self, key: &str) -> Result<u64, ConfigError> {
        match self {
            Input::Url(text) => text.parse().map_err(|_| Self::not_a_number(key, text)),
            Input::Toml(Toml::Integer(n)) => u64::try_from(*n)
                .map_err(|_| ConfigError::key(key, "expected a number >= 0, found a negative one")),
            Input::Toml(other) => Err(wrong_type(key, "an integer", other)),
        }
    }

    fn u32(self, key: &str) -> Result<u32, ConfigError> {
        match self {
            Input::Url(text) => text.parse().map_err(|_| Self::not_a_number(key, text)),
            Input::Toml(_) => {
                u32::try_from(self.uint(key)?).map_err(|_| ConfigError::key(key, "too large"))
            }
        }
    }

    pub(crate) fn int(self, key: &str) -> Result<i64, ConfigError> {
        match self {
            Input::Url(text) => text.parse().map_err(|_| Self::not_a_number(key, text)),
            Input::Toml(Toml::Integer(n)) => Ok(*n),
            Input::Toml(other) => Err(wrong_type(key, "an integer", other)),
        }
    }

    fn float(self, key: &str) -> Result<f64, ConfigError> {
        match self {
            Input::Url(text) => text.parse().map_err(|_| Self::not_a_number(key, text)),
            Input::Toml(Toml::Float(f)) => Ok(*f),
            Input::Toml(Toml::Integer(n)) => Ok(*n as f64),
            Input::Toml(other) => Err(wrong_type(key, "a number", other)),
        }
    }

    fn flag(self, key: &str) -> Result<bool, ConfigError> {
        match self {
            Input::Url(text) => parse_bool(text)
                .ok_or_else(|| ConfigError::key(key, format!("\"{text}\" is not true or false"))),
            Input::Toml(Toml::Boolean(b)) => Ok(*b),
            Input::Toml(other) => Err(wrong_type(key, "true or false", other)),
        }
    }

    fn text(self, key: &str) -> Result<String, ConfigError> {
        match self {
            Input::Url(text) => Ok(text.to_string()),
            Input::Toml(Toml::String(s)) => Ok(s.clone()),
            Input::Toml(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    /// A choice: text, or in a profile a string or an integer (`protocol = 2`).
    fn choice(self, key: &str) -> Result<String, ConfigError> {
        match self {
            Input::Toml(Toml::Integer(n)) => Ok(n.to_string()),
            _ => self.text(key),
        }
    }
}

/// A URL flag: `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A profile value of the wrong type: the error names the type expected and the type found.
pub(crate) fn wrong_type(key: &str, expected: &str, found: &Toml) -> ConfigError {
    ConfigError::key(
        key,
        format!("expected {expected}, found {}", toml_kind(found)),
    )
}

/// What a TOML value is, for errors (never its content: it may be a secret).
pub(crate) fn toml_kind(v: &Toml) -> &'static str {
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

fn protocol(config: Config, text: &str) -> Result<Config, ConfigError> {
    Ok(config.protocol(match text {
        "resp2" | "2" => Protocol::Resp2,
        "resp3" | "3" => Protocol::Resp3,
        other => {
            return Err(ConfigError::new(format!(
                "unknown protocol \"{other}\" (expected resp2 or resp3)"
            )))
        }
    }))
}

fn protocol_name(config: &Config) -> &'static str {
    match config.connection.get_protocol() {
        Protocol::Resp2 => "resp2",
        _ => "resp3",
    }
}

fn delivery(config: Config, text: &str) -> Result<Config, ConfigError> {
    Ok(config.delivery(match text {
        "at_most_once" => Delivery::AtMostOnce,
        "at_least_once" => Delivery::AtLeastOnce,
        other => {
            return Err(ConfigError::new(format!(
                "unknown delivery \"{other}\" (expected at_most_once or at_least_once)"
            )))
        }
    }))
}

fn delivery_name(config: &Config) -> &'static str {
    match config.connection.get_delivery() {
        Delivery::AtLeastOnce => "at_least_once",
        _ => "at_most_once",
    }
}

/// Every setting, in the order [`Config::settings`] shows them.
pub(crate) static SETTINGS: &[Setting] = &[
    Setting {
        name: "mode",
        url: &[],
        value: Value::Choice {
            choices: &["standalone", "cluster", "sentinel"],
            get: |c| c.mode.name(),
            set: |c, text| Ok(c.with_mode(text.parse::<Mode>()?)),
        },
        doc: "the deployment (a URL's scheme says it; a profile's `sentinels` imply sentinel)",
    },
    Setting {
        name: "nodes",
        url: &[],
        value: Value::Shown(|c| addr_list(&c.nodes)),
        doc: "the server or the cluster seeds: a URL's hosts, or a profile's list of addresses \
              or URLs",
    },
    Setting {
        name: "sentinels",
        url: &[],
        value: Value::Shown(|c| addr_list(&c.sentinels)),
        doc: "the sentinels: a `redis+sentinel://` URL's hosts, or a profile's list",
    },
    Setting {
        name: "master_name",
        url: &["master_name"],
        value: Value::Text(|c| c.master_name.as_deref(), |c, v| c.master_name(v)),
        doc: "the master's name, as the sentinels know it (also a sentinel URL's path)",
    },
    Setting {
        name: "username",
        url: &[],
        value: Value::Text(|c| c.connection.get_username(), |c, v| c.username(v)),
        doc: "the ACL user (a URL's user info)",
    },
    Setting {
        name: "password",
        url: &[],
        value: Value::Secret(
            |c| c.connection.get_password().is_some(),
            |c, v| c.password(v),
        ),
        doc: "the data nodes' password (a URL's user info)",
    },
    Setting {
        name: "database",
        url: &["db", "database"],
        value: Value::Integer(|c| c.connection.get_database(), Config::database),
        doc: "the database to `SELECT` (also a URL's path)",
    },
    Setting {
        name: "client_name",
        url: &["client_name"],
        value: Value::Text(|c| c.connection.get_client_name(), |c, v| c.client_name(v)),
        doc: "the name `CLIENT LIST` shows",
    },
    Setting {
        name: "protocol",
        url: &["protocol"],
        value: Value::Choice {
            choices: &["resp2", "resp3"],
            get: protocol_name,
            set: protocol,
        },
        doc: "RESP version (`2` and `3` are taken too)",
    },
    Setting {
        name: "tls",
        url: &[],
        value: Value::Shown(|c| match c.connection.tls_config() {
            None => "off".to_string(),
            Some(t) => format!("{t:?}"),
        }),
        doc: "TLS: `rediss` schemes and the TLS options below",
    },
    Setting {
        name: "address_map",
        url: &[],
        value: Value::Shown(|c| {
            match c.connection.get_address_map() {
                Some(map) if map.verifies_mapped_host() => "set, TLS verifies the mapped host",
                Some(_) => "set",
                None => "(none)",
            }
            .to_string()
        }),
        doc: "code only: `Config::map_address`, `Config::address_map`",
    },
    Setting {
        name: "sentinel_username",
        url: &["sentinel_username"],
        value: Value::Text(
            |c| c.sentinel_username.as_deref(),
            |mut c, v| {
                c.sentinel_username = Some(v);
                c
            },
        ),
        doc: "the sentinels' ACL user (needs `sentinel_password`)",
    },
    Setting {
        name: "sentinel_password",
        url: &["sentinel_password"],
        value: Value::Secret(
            |c| c.sentinel_password.is_some(),
            |mut c, v| {
                c.sentinel_password = Some(v);
                c
            },
        ),
        doc: "the sentinels' password",
    },
    Setting {
        name: "sentinel_tls",
        url: &["sentinel_tls"],
        value: Value::Flag(
            |c| {
                c.sentinel_tls
                    .unwrap_or(c.connection.tls_config().is_some())
            },
            Config::sentinel_tls,
        ),
        doc: "reach the sentinels over TLS (default: as the data nodes)",
    },
    Setting {
        name: "connect_timeout_ms",
        url: &["connect_timeout_ms"],
        value: Value::Millis(
            |c| c.connection.get_connect_timeout(),
            Config::connect_timeout,
        ),
        doc: "bound on opening one connection",
    },
    Setting {
        name: "timeout_ms",
        url: &["timeout_ms"],
        value: Value::Millis(
            |c| c.connection.get_response_timeout(),
            Config::response_timeout,
        ),
        doc: "deadline of one call, retries included",
    },
    Setting {
        name: "retry.max_attempts",
        url: &["max_attempts"],
        value: Value::Count32 {
            min: 1,
            get: |c| c.connection.get_max_attempts(),
            set: Config::max_attempts,
        },
        doc: "attempts per command, the first included",
    },
    Setting {
        name: "retry.backoff_base_ms",
        url: &["backoff_base_ms"],
        value: Value::Millis(
            |c| c.connection.get_backoff().get_base(),
            Config::backoff_base,
        ),
        doc: "first reconnect backoff ceiling",
    },
    Setting {
        name: "retry.backoff_max_ms",
        url: &["backoff_max_ms"],
        value: Value::Millis(
            |c| c.connection.get_backoff().get_max_delay(),
            Config::backoff_max,
        ),
        doc: "largest reconnect delay",
    },
    Setting {
        name: "retry.backoff_factor",
        url: &["backoff_factor"],
        value: Value::Factor(
            |c| c.connection.get_backoff().get_factor(),
            Config::backoff_factor,
        ),
        doc: "growth of the backoff ceiling per attempt",
    },
    Setting {
        name: "retry.reconnect_attempts",
        url: &["reconnect_attempts"],
        value: Value::CountOrUnlimited(
            |c| c.connection.get_backoff().get_max_attempts(),
            Config::reconnect_attempts,
        ),
        doc: "reconnect attempts before a connection gives up",
    },
    Setting {
        name: "delivery",
        url: &["delivery"],
        value: Value::Choice {
            choices: &["at_most_once", "at_least_once"],
            get: delivery_name,
            set: delivery,
        },
        doc: "what may be resent once its outcome is unknown",
    },
    Setting {
        name: "queue_capacity",
        url: &["queue_capacity"],
        value: Value::Count {
            min: 0,
            get: |c| c.connection.get_queue_capacity(),
            set: Config::queue_capacity,
        },
        doc: "requests that may wait per connection",
    },
    Setting {
        name: "hang_window_ms",
        url: &["hang_window_ms"],
        value: Value::Millis(|c| c.connection.get_hang_window(), Config::hang_window),
        doc: "silence, while calls wait, after which a connection is replaced",
    },
    Setting {
        name: "message_queue_bytes",
        url: &["message_queue_bytes"],
        value: Value::Count {
            min: 0,
            get: |c| c.connection.get_message_queue_bytes(),
            set: Config::message_queue_bytes,
        },
        doc: "bytes of pub/sub messages that may wait to be read",
    },
    Setting {
        name: "max_reply_bytes",
        url: &["max_reply_bytes"],
        value: Value::Count {
            min: 0,
            get: |c| c.connection.get_limits().get_max_reply_bytes(),
            set: Config::max_reply_bytes,
        },
        doc: "the most bytes one reply may span",
    },
    Setting {
        name: "max_reply_elements",
        url: &["max_reply_elements"],
        value: Value::Count {
            min: 0,
            get: |c| c.connection.get_limits().get_max_reply_elements(),
            set: Config::max_reply_elements,
        },
        doc: "the most values one reply may hold",
    },
    Setting {
        name: "fail_fast",
        url: &["fail_fast"],
        value: Value::Flag(|c| c.connection.get_fail_fast(), Config::fail_fast),
        doc: "while disconnected, fail calls at once",
    },
    Setting {
        name: "health_check_interval_ms",
        url: &["health_check_interval_ms"],
        value: Value::MillisOrOff(
            |c| c.connection.get_health_check_interval(),
            Config::health_check_interval,
        ),
        doc: "`PING` connections idle this long",
    },
    Setting {
        name: "spin_wait_us",
        url: &["spin_wait_us"],
        value: Value::Micros(|c| c.connection.get_spin_wait(), Config::spin_wait),
        doc: "how long a connection polls for replies before it sleeps",
    },
    Setting {
        name: "connections",
        url: &["connections"],
        value: Value::Count {
            min: 0,
            get: |c| c.connections,
            set: Config::connections,
        },
        doc: "shared (multiplexed) connections per node",
    },
    Setting {
        name: "pool.max_size",
        url: &["pool_size"],
        value: Value::Count {
            min: 1,
            get: |c| c.pool.get_max_size(),
            set: Config::pool_size,
        },
        doc: "most exclusive connections per node (blocking commands, WATCH)",
    },
    Setting {
        name: "pool.min_idle",
        url: &["pool_min_idle"],
        value: Value::Count {
            min: 0,
            get: |c| c.pool.get_min_idle(),
            set: Config::pool_min_idle,
        },
        doc: "exclusive connections kept open per node",
    },
    Setting {
        name: "pool.acquire_timeout_ms",
        url: &["pool_acquire_timeout_ms"],
        value: Value::Millis(
            |c| c.pool.get_acquire_timeout(),
            Config::pool_acquire_timeout,
        ),
        doc: "how long to wait for an exclusive connection",
    },
    Setting {
        name: "pool.idle_timeout_ms",
        url: &["pool_idle_timeout_ms"],
        value: Value::MillisOrOff(|c| c.pool.get_idle_timeout(), Config::pool_idle_timeout),
        doc: "idle exclusive connections are closed after this long",
    },
    Setting {
        name: "pool.max_lifetime_ms",
        url: &["pool_max_lifetime_ms"],
        value: Value::MillisOrOff(|c| c.pool.get_max_lifetime(), Config::pool_max_lifetime),
        doc: "exclusive connections are replaced after this long",
    },
    Setting {
        name: "read_from_replicas",
        url: &["read_from_replicas"],
        value: Value::Flag(|c| c.read_from_replicas, Config::read_from_replicas),
        doc: "send read-only commands to replicas (cluster, sentinel)",
    },
    Setting {
        name: "replica_selector",
        url: &["replica_selector"],
        value: Value::Choice {
            choices: &["random", "round_robin"],
            get: |c| c.replica_selection.name(),
            set: |c, text| Ok(c.replica_selection(text.parse::<ReplicaSelection>()?)),
        },
        doc: "how a replica is chosen for a read",
    },
    Setting {
        name: "topology_refresh_ms",
        url: &["topology_refresh_ms"],
        value: Value::MillisOrOff(|c| c.topology_refresh, Config::topology_refresh),
        doc: "periodic cluster topology refresh",
    },
    Setting {
        name: "min_topology_refresh_ms",
        url: &["min_topology_refresh_ms"],
        value: Value::Millis(|c| c.min_topology_refresh, Config::min_topology_refresh),
        doc: "the least time between two topology refreshes",
    },
    Setting {
        name: "max_redirects",
        url: &["max_redirects"],
        value: Value::Count32 {
            min: 0,
            get: |c| c.max_redirects,
            set: Config::max_redirects,
        },
        doc: "cluster redirects followed per command",
    },
    Setting {
        name: "sentinel_poll_ms",
        url: &["sentinel_poll_ms"],
        value: Value::Millis(|c| c.sentinel_poll, Config::sentinel_poll_interval),
        doc: "how often sentinels are polled as a backstop",
    },
    Setting {
        name: "events",
        url: &["events"],
        value: Value::Flag(|c| c.log_events, Config::log_events),
        doc: "log every event through `tracing`",
    },
    Setting {
        name: "callbacks",
        url: &[],
        value: Value::Shown(|c| c.callbacks.len().to_string()),
        doc: "code only: `Config::on_event` and the other `on_*` callbacks",
    },
];

/// TLS settings gathered from a URL or a profile's `[tls]`, turned into a [`TlsConfig`] at the
/// end.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    pub(crate) enabled: bool,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) server_name: Option<String>,
    pub(crate) skip: SkippedChecks,
}

impl TlsOptions {
    /// Whether any TLS option was given.
    fn any(&self) -> bool {
        self.enabled
            || self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.server_name.is_some()
            || self.skip.any()
    }

    /// The TLS configuration; `None` when TLS is off. The dangerous switches go through
    /// `dangerous()`, so that every client made with them logs its warning.
    pub(crate) fn build(&self) -> Result<Option<TlsConfig>, ConfigError> {
        if !self.enabled {
            if self.any() {
                return Err(ConfigError::new(
                    "TLS options are set but TLS is off (use rediss://, or tls.enabled = true)",
                ));
            }
            return Ok(None);
        }
        let mut builder = TlsConfig::builder();
        if let Some(ca) = &self.ca_file {
            builder = builder.ca_file(ca);
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => builder = builder.client_cert(cert, key),
            (None, None) => {}
            _ => {
                return Err(ConfigError::key(
                    "tls.cert_file",
                    "a client certificate needs both cert_file and key_file",
                ))
            }
        }
        if let Some(name) = &self.server_name {
            builder = builder.server_name(name.clone());
        }
        Ok(Some(if self.skip.any() {
            builder.dangerous().skip(self.skip).build()
        } else {
            builder.build()
        }))
    }
}

/// A TLS setting: a key of a profile's `[tls]` table.
pub(crate) type TlsSetting = Setting<TlsValue>;

/// The type of a TLS setting, with the function that sets it.
pub(crate) enum TlsValue {
    /// On or off.
    Flag(fn(&mut TlsOptions, bool)),
    /// Text (a file path, a name).
    Text(fn(&mut TlsOptions, String)),
}

impl TlsValue {
    /// Reads the value from `input` and applies it; errors name `key` as the user wrote it.
    pub(crate) fn apply(
        &self,
        options: &mut TlsOptions,
        key: &str,
        input: Input<'_>,
    ) -> Result<(), ConfigError> {
        match self {
            TlsValue::Flag(set) => set(options, input.flag(key)?),
            TlsValue::Text(set) => set(options, input.text(key)?),
        }
        Ok(())
    }
}

/// Every TLS setting. A switch that turns a check off only turns it off: `false` changes nothing.
pub(crate) static TLS_SETTINGS: &[TlsSetting] = &[
    TlsSetting {
        name: "enabled",
        url: &[],
        value: TlsValue::Flag(|o, on| o.enabled = on),
        doc: "TLS on (default true in a `[tls]` table; a URL's `rediss` scheme)",
    },
    TlsSetting {
        name: "ca_file",
        url: &["ca_file"],
        value: TlsValue::Text(|o, v| o.ca_file = Some(v.into())),
        doc: "the CA certificates to trust (default: the webpki roots)",
    },
    TlsSetting {
        name: "cert_file",
        url: &["cert_file"],
        value: TlsValue::Text(|o, v| o.cert_file = Some(v.into())),
        doc: "the client certificate (with `key_file`)",
    },
    TlsSetting {
        name: "key_file",
        url: &["key_file"],
        value: TlsValue::Text(|o, v| o.key_file = Some(v.into())),
        doc: "the client certificate's key (with `cert_file`)",
    },
    TlsSetting {
        name: "server_name",
        url: &["server_name"],
        value: TlsValue::Text(|o, v| o.server_name = Some(v)),
        doc: "the name to verify the certificate against (default: the host)",
    },
    TlsSetting {
        name: "insecure",
        url: &["insecure"],
        value: TlsValue::Flag(|o, on| {
            if on {
                o.skip = SkippedChecks::ALL;
            }
        }),
        doc: "dangerous: turn off every certificate check (CA, hostname, validity period)",
    },
    TlsSetting {
        name: "skip_chain_verification",
        url: &["skip_chain_verification"],
        value: TlsValue::Flag(|o, on| o.skip.chain |= on),
        doc: "dangerous: do not verify the certificate chain",
    },
    TlsSetting {
        name: "skip_hostname_verification",
        url: &["skip_hostname_verification"],
        value: TlsValue::Flag(|o, on| o.skip.hostname |= on),
        doc: "dangerous: do not verify the host name",
    },
    TlsSetting {
        name: "skip_validity_period_check",
        url: &["skip_validity_period_check"],
        value: TlsValue::Flag(|o, on| o.skip.validity_period |= on),
        doc: "dangerous: accept expired or not yet valid certificates",
    },
];

/// What a URL query option sets.
pub(crate) enum UrlOption {
    /// A setting of the `Config`.
    Config(&'static Setting),
    /// A TLS setting.
    Tls(&'static TlsSetting),
}

/// The setting a URL query option names.
///
/// # Errors
/// [`ConfigError`] naming the option, with every option a URL takes.
pub(crate) fn url_option(key: &str) -> Result<UrlOption, ConfigError> {
    if let Some(s) = SETTINGS.iter().find(|s| s.url.contains(&key)) {
        return Ok(UrlOption::Config(s));
    }
    if let Some(s) = TLS_SETTINGS.iter().find(|s| s.url.contains(&key)) {
        return Ok(UrlOption::Tls(s));
    }
    let known = url_options().collect::<Vec<_>>().join(", ");
    Err(ConfigError::key(
        key,
        format!("unknown URL option (known: {known})"),
    ))
}

/// Every URL query option, in table order.
fn url_options() -> impl Iterator<Item = &'static str> {
    let config = SETTINGS.iter().flat_map(|s| s.url.iter().copied());
    config.chain(TLS_SETTINGS.iter().flat_map(|s| s.url.iter().copied()))
}

/// The settings reference, a Markdown table of every setting a URL or a profile sets: what the
/// crate docs hold under "Settings" (a unit test keeps the two the same).
#[cfg(test)]
pub(crate) fn reference() -> String {
    let mut out =
        String::from("| profile key | URL option | value | what it sets |\n|---|---|---|---|\n");
    let code = |names: &[&str]| {
        if names.is_empty() {
            "-".to_string()
        } else {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for s in SETTINGS {
        if matches!(s.value, Value::Shown(_)) {
            continue;
        }
        let (url, value) = (code(s.url), s.value.describe());
        out += &format!("| `{}` | {url} | {value} | {} |\n", s.name, s.doc);
    }
    for s in TLS_SETTINGS {
        let value = match s.value {
            TlsValue::Flag(_) => "true or false",
            TlsValue::Text(_) => "text",
        };
        let url = code(s.url);
        out += &format!("| `tls.{}` | {url} | {value} | {} |\n", s.name, s.doc);
    }
    out
}

impl Config {
    /// Every setting as `(key, value)`, with the keys of the profile file and passwords as
    /// `***`: what `rcli config` prints.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        SETTINGS
            .iter()
            .map(|s| (s.name, s.value.show(self)))
            .collect()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Config");
        for setting in SETTINGS {
            s.field(setting.name, &setting.value.show(self));
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use toml::Table;

    use super::*;
    use crate::profile::{apply_settings, check_keys, tls_options};
    use crate::url::apply_query;

    /// The settings no URL query option sets: the URL's form says them (scheme, hosts, user
    /// info), or only code can.
    const NOT_IN_THE_QUERY: &[&str] = &[
        "mode",
        "nodes",
        "sentinels",
        "username",
        "password",
        "tls",
        "address_map",
        "callbacks",
    ];

    /// A value for the setting that is not its default: as URL text, as a TOML value, and as
    /// [`Config::settings`] shows it. `None` for a setting that only shows.
    fn sample(value: &Value, defaults: &Config) -> Option<(String, Toml, String)> {
        let number = |n: i64| Some((n.to_string(), Toml::Integer(n), n.to_string()));
        match value {
            Value::Millis(..) | Value::MillisOrOff(..) => number(1234),
            Value::Micros(..) => number(77),
            Value::Count { .. } | Value::Count32 { .. } | Value::CountOrUnlimited(..) => number(42),
            Value::Integer(..) => number(3),
            Value::Factor(..) => Some(("3.5".into(), Toml::Float(3.5), "3.5".into())),
            Value::Flag(get, _) => {
                let on = !get(defaults);
                Some((on.to_string(), Toml::Boolean(on), on.to_string()))
            }
            Value::Text(..) => {
                let text = "sample-text".to_string();
                Some((text.clone(), Toml::String(text.clone()), text))
            }
            Value::Secret(..) => {
                let text = "sample-secret".to_string();
                Some((text.clone(), Toml::String(text), "***".into()))
            }
            Value::Choice { choices, get, .. } => {
                let choice = choices.iter().find(|c| **c != get(defaults))?.to_string();
                Some((choice.clone(), Toml::String(choice.clone()), choice))
            }
            Value::Shown(_) => None,
        }
    }

    /// A profile table that sets `name` (`retry.max_attempts` in `[retry]`) to `value`.
    fn profile_with(name: &str, value: Toml) -> Table {
        let mut table = Table::new();
        match name.split_once('.') {
            Some((section, key)) => {
                let mut inner = Table::new();
                inner.insert(key.to_string(), value);
                table.insert(section.to_string(), Toml::Table(inner));
            }
            None => {
                table.insert(name.to_string(), value);
            }
        }
        table
    }

    #[test]
    fn every_setting_round_trips_through_a_url_and_a_profile_and_shows() {
        let defaults = Config::new();
        let shown: Vec<&str> = defaults.settings().into_iter().map(|(k, _)| k).collect();
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        assert_eq!(
            shown, names,
            "settings() shows every setting, in table order"
        );
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "{name} is in the table twice");
        }
        for s in SETTINGS {
            assert_eq!(
                s.url.is_empty(),
                NOT_IN_THE_QUERY.contains(&s.name),
                "{}: every setting is a URL query option unless the URL's form says it",
                s.name
            );
            let Some((text, toml, expected)) = sample(&s.value, &defaults) else {
                assert!(s.url.is_empty(), "{} only shows: no URL option", s.name);
                continue;
            };
            assert_ne!(expected, s.value.show(&defaults), "{}: a default", s.name);
            for key in s.url {
                let query = format!("{key}={text}");
                let config = apply_query(Config::new(), &mut TlsOptions::default(), &query)
                    .unwrap_or_else(|e| panic!("{query}: {e}"));
                assert_eq!(s.value.show(&config), expected, "URL option {key}");
                assert!(config.settings().contains(&(s.name, expected.clone())));
            }
            let profile = profile_with(s.name, toml);
            check_keys(&profile).unwrap_or_else(|e| panic!("profile key {}: {e}", s.name));
            let config = apply_settings(&profile, Config::new())
                .unwrap_or_else(|e| panic!("profile key {}: {e}", s.name));
            assert_eq!(s.value.show(&config), expected, "profile key {}", s.name);
            assert!(config.settings().contains(&(s.name, expected.clone())));
        }
    }

    #[test]
    fn every_tls_setting_reads_the_same_from_a_url_and_a_profile() {
        let base = TlsOptions {
            enabled: true,
            ..TlsOptions::default()
        };
        for s in TLS_SETTINGS {
            let (text, toml) = match s.value {
                TlsValue::Flag(_) => ("true", Toml::Boolean(true)),
                TlsValue::Text(_) => ("/sample/file.pem", Toml::String("/sample/file.pem".into())),
            };
            let mut table = Table::new();
            table.insert(s.name.to_string(), toml);
            let from_profile = format!("{:?}", tls_options(&table, false).unwrap());
            if s.url.is_empty() {
                assert_eq!(s.name, "enabled", "only the scheme turns TLS on in a URL");
                continue;
            }
            assert_ne!(from_profile, format!("{base:?}"), "{}", s.name);
            for key in s.url {
                let mut from_url = base.clone();
                apply_query(Config::new(), &mut from_url, &format!("{key}={text}")).unwrap();
                assert_eq!(format!("{from_url:?}"), from_profile, "URL option {key}");
            }
        }
    }

    #[test]
    fn the_crate_docs_hold_the_settings_reference() {
        let docs: Vec<&str> = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        let expected = reference();
        assert!(
            docs.join("\n").contains(expected.trim_end()),
            "the settings reference in lib.rs is out of date; it reads now:\n{expected}"
        );
    }

    #[test]
    fn a_url_and_a_profile_take_the_same_values() {
        // `protocol=2` was taken by a URL and refused by a profile.
        for profile in ["protocol = \"2\"", "protocol = 2", "protocol = \"resp2\""] {
            let table: Table = profile.parse().unwrap();
            let config = apply_settings(&table, Config::new()).unwrap();
            assert_eq!(
                config.connection.get_protocol(),
                Protocol::Resp2,
                "{profile}"
            );
        }
        // A value a profile refuses, a URL refuses too (a URL raised it to 1 before).
        let err = crate::url::parse("redis://h?max_attempts=0").unwrap_err();
        assert!(err.to_string().contains("must be at least 1"), "{err}");
        let err = crate::url::parse("redis://h?pool_size=0").unwrap_err();
        assert!(err.to_string().contains("must be at least 1"), "{err}");
        // A sentinel user without a password was refused by a profile, ignored from a URL.
        let err = crate::url::parse("redis+sentinel://s/m?sentinel_username=u").unwrap_err();
        assert!(err.to_string().contains("sentinel_password"), "{err}");
    }

    #[test]
    fn an_unknown_url_option_lists_every_option() {
        let Err(err) = url_option("colour") else {
            panic!("colour is no option");
        };
        assert_eq!(err.key_name(), Some("colour"));
        for option in url_options() {
            assert!(err.message().contains(option), "{option}: {err}");
        }
    }
}
