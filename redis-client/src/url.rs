//! URLs: `redis://`, `rediss://`, `redis+unix://`, `redis+cluster://`, `redis+sentinel://`.

use std::path::PathBuf;
use std::time::Duration;

use redis_conn::{Protocol, ServerAddr, SkippedChecks, TlsConfig};

use crate::config::{parse_host_port, Config, Mode, ReplicaSelection};
use crate::ConfigError;

/// TLS settings gathered from a URL or a profile, turned into a [`TlsConfig`] at the end.
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
    /// Whether any TLS option was given (which turns TLS on in a profile).
    pub(crate) fn any(&self) -> bool {
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

/// The URL as messages may show it: no user info, no secret query value, and nothing at all
/// after the scheme when the URL cannot be split safely.
///
/// - `redis://user:pw@host/0` shows as `redis://***@host/0` (the whole user info is hidden: a
///   lone `redis://pw@host` is a password, and a malformed URL may put a password in the user).
/// - Query values whose (percent-decoded) key names a secret ([`is_secret_key`]) show as `***`.
/// - When an `@` follows the authority (a password holding an unencoded `/` or `?` cuts the
///   authority short, so its rest lands in the path or the query), only `scheme://***` is shown.
/// - Text without `://` is shown only if it holds no `@`; a scheme made of anything but letters,
///   digits, `+`, `-` and `.` hides the whole text.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = split_scheme(url) else {
        return if url.contains('@') {
            "***".to_string()
        } else {
            redact_query(url)
        };
    };
    let (authority, tail) = split_authority(rest);
    if tail.contains('@') {
        return format!("{scheme}://***");
    }
    let hosts = match authority.rsplit_once('@') {
        Some((_, hosts)) => format!("***@{hosts}"),
        None => authority.to_string(),
    };
    redact_query(&format!("{scheme}://{hosts}{tail}"))
}

/// The URL with every secret hidden, for logs and messages: the user info and secret query
/// values become `***`; a malformed URL (an `@` after the host, as a password holding an
/// unencoded `/` or `?` gives) shows only its scheme.
///
/// ```
/// assert_eq!(
///     redis_client::redact_url("redis://app:pw@cache:6380/2?sentinel_password=sp"),
///     "redis://***@cache:6380/2?sentinel_password=***"
/// );
/// assert_eq!(redis_client::redact_url("redis://app:pw/x@cache"), "redis://***");
/// ```
pub fn redact_url(url: &str) -> String {
    redact(url)
}

/// `(scheme, rest)` when `url` has `://` after a plausible scheme.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let plausible = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    plausible.then_some((scheme, rest))
}

/// The authority (up to the first `/` or `?`, as [`parse`] cuts it) and the rest.
fn split_authority(rest: &str) -> (&str, &str) {
    rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()))
}

/// Whether an `@` follows the authority: the URL cannot be split into its parts with
/// confidence (most likely a password with an unencoded `/` or `?`), so no part of it may be
/// shown.
fn ambiguous(url: &str) -> bool {
    match split_scheme(url) {
        Some((_, rest)) => split_authority(rest).1.contains('@'),
        None => url.contains('@'),
    }
}

/// Whether a query key names a secret: after percent-decoding and ignoring case, it contains
/// `pass` (`password`, `sentinel_password`, `passwd`...), `pwd`, `auth`, `secret` or `token`.
/// A key that cannot be decoded counts as secret.
pub(crate) fn is_secret_key(raw_key: &str) -> bool {
    let Ok(key) = percent_decode(raw_key, "query") else {
        return true;
    };
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "auth", "secret", "token"]
        .iter()
        .any(|word| key.contains(word))
}

/// The values of secret query keys ([`is_secret_key`]), replaced by `***`.
fn redact_query(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{head}?{}", parts.join("&"))
}

fn percent_decode(text: &str, what: &str) -> Result<String, ConfigError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConfigError::new(format!("bad percent-encoding in the {what}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConfigError::new(format!("the {what} is not UTF-8")))
}

pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::key(key, format!("\"{value}\" is not a valid number")))
}

/// Parses one URL.
pub(crate) fn parse(url: &str) -> Result<Config, ConfigError> {
    parse_inner(url).map_err(|e| {
        if ambiguous(url) {
            // The parts the error names (a host, a path segment, a query key) may be pieces of
            // the password: say nothing about them.
            ConfigError::new(format!(
                "URL {}: cannot be split into user info, host, path and query: an '@' follows \
                 the host; percent-encode any '/', '?', '#' or '@' in the user name or password \
                 (%2F, %3F, %23, %40)",
                redact(url)
            ))
        } else {
            ConfigError::new(format!("URL {}: {e}", redact(url)))
        }
    })
}

fn parse_inner(url: &str) -> Result<Config, ConfigError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ConfigError::new("not a URL (expected redis://, rediss://, ...)"))?;
    let (mode, tls, unix) = match scheme {
        "redis" => (Mode::Standalone, false, false),
        "rediss" => (Mode::Standalone, true, false),
        "redis+unix" | "unix" => (Mode::Standalone, false, true),
        "redis+cluster" => (Mode::Cluster, false, false),
        "rediss+cluster" => (Mode::Cluster, true, false),
        "redis+sentinel" => (Mode::Sentinel, false, false),
        "rediss+sentinel" => (Mode::Sentinel, true, false),
        // Not shown: text before `://` that is not a scheme may be anything, a password too.
        _ if split_scheme(url).is_none() => {
            return Err(ConfigError::new(
                "not a URL: what comes before :// is not a scheme (expected redis, rediss, \
                 redis+unix, redis+cluster, rediss+cluster, redis+sentinel or rediss+sentinel)",
            ))
        }
        other => {
            return Err(ConfigError::new(format!(
                "unknown scheme \"{other}\" (expected redis, rediss, redis+unix, redis+cluster, \
                 rediss+cluster, redis+sentinel or rediss+sentinel)"
            )))
        }
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // An `@` here is most likely the end of a password holding a raw `/` (or `?`, for a query
    // key): refused, so that no piece of a password becomes a host, a name or an option.
    if path.contains('@') {
        return Err(ConfigError::new("an '@' in the path"));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut config = Config::new().with_mode(mode);
    if let Some(info) = userinfo {
        match info.split_once(':') {
            Some((user, password)) => {
                if !user.is_empty() {
                    config = config.username(percent_decode(user, "user name")?);
                }
                config = config.password(percent_decode(password, "password")?);
            }
            // `redis://password@host`, as redis-cli and redis-rs read it.
            None if !info.is_empty() => config = config.password(percent_decode(info, "password")?),
            None => {}
        }
    }
    let mut segments: Vec<String> = Vec::new();
    if unix {
        if !hosts.is_empty() {
            return Err(ConfigError::new(
                "a Unix socket URL has no host: redis+unix:///path/to/redis.sock",
            ));
        }
        let socket = percent_decode(path, "socket path")?;
        if socket.is_empty() || socket == "/" {
            return Err(ConfigError::new("no socket path"));
        }
        config = config.nodes_addrs(vec![ServerAddr::Unix(socket.into())]);
    } else {
        if hosts.is_empty() {
            return Err(ConfigError::new("no host"));
        }
        let default_port = if mode == Mode::Sentinel { 26379 } else { 6379 };
        let addrs = hosts
            .split(',')
            .map(|h| parse_host_port(h, default_port))
            .collect::<Result<Vec<_>, _>>()?;
        match mode {
            Mode::Standalone if addrs.len() > 1 => {
                return Err(ConfigError::new(
                    "several hosts need redis+cluster:// (seeds) or redis+sentinel:// (sentinels)",
                ))
            }
            Mode::Sentinel => config = config.sentinel_addrs(addrs),
            _ => config = config.nodes_addrs(addrs),
        }
        segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, "path"))
            .collect::<Result<_, _>>()?;
    }
    // The path: `/db` (standalone, cluster), `/master-name[/db]` (sentinel).
    let mut segments = segments.into_iter();
    if mode == Mode::Sentinel {
        if let Some(name) = segments.next() {
            config = config.master_name(name);
        }
    }
    if let Some(db) = segments.next() {
        config = config.database(parse_num("database", &db)?);
    }
    if segments.next().is_some() {
        return Err(ConfigError::new("unexpected path segments"));
    }
    let mut tls_options = TlsOptions {
        enabled: tls,
        ..TlsOptions::default()
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key.contains('@') {
            return Err(ConfigError::new("an '@' in a query key"));
        }
        let key = percent_decode(key, "query")?;
        let value = percent_decode(value, "query")?;
        let flag = |v: &str| {
            parse_bool(v)
                .ok_or_else(|| ConfigError::key(&key, format!("\"{v}\" is not true or false")))
        };
        let millis = |v: &str| parse_num::<u64>(&key, v).map(Duration::from_millis);
        config = match key.as_str() {
            "db" | "database" => config.database(parse_num(&key, &value)?),
            "protocol" => config.protocol(match value.as_str() {
                "resp2" | "2" => Protocol::Resp2,
                "resp3" | "3" => Protocol::Resp3,
                other => {
                    return Err(ConfigError::key(
                        &key,
                        format!("unknown protocol \"{other}\" (expected resp2 or resp3)"),
                    ))
                }
            }),
            "client_name" => config.client_name(value),
            "timeout_ms" => config.response_timeout(millis(&value)?),
            "connect_timeout_ms" => config.connect_timeout(millis(&value)?),
            "max_attempts" => config.max_attempts(parse_num(&key, &value)?),
            "connections" => config.connections(parse_num(&key, &value)?),
            "hang_window_ms" => config.hang_window(millis(&value)?),
            "message_queue_bytes" => config.message_queue_bytes(parse_num(&key, &value)?),
            "max_reply_bytes" => config.max_reply_bytes(parse_num(&key, &value)?),
            "max_reply_elements" => config.max_reply_elements(parse_num(&key, &value)?),
            "spin_wait_us" => config.spin_wait(Duration::from_micros(parse_num(&key, &value)?)),
            "pool_size" => config.pool_size(parse_num(&key, &value)?),
            "read_from_replicas" => config.read_from_replicas(flag(&value)?),
            "replica_selector" => config.replica_selection(
                value
                    .parse::<ReplicaSelection>()
                    .map_err(|e| ConfigError::key(&key, e.message().to_string()))?,
            ),
            "topology_refresh_ms" => {
                let ms: u64 = parse_num(&key, &value)?;
                config.topology_refresh((ms > 0).then(|| Duration::from_millis(ms)))
            }
            "master_name" if mode == Mode::Sentinel => config.master_name(value),
            "sentinel_username" => {
                config.sentinel_username = Some(value);
                config
            }
            "sentinel_password" => {
                config.sentinel_password = Some(value.into());
                config
            }
            "ca_file" => {
                tls_options.ca_file = Some(value.into());
                config
            }
            "cert_file" => {
                tls_options.cert_file = Some(value.into());
                config
            }
            "key_file" => {
                tls_options.key_file = Some(value.into());
                config
            }
            "server_name" => {
                tls_options.server_name = Some(value);
                config
            }
            "insecure" => {
                if flag(&value)? {
                    tls_options.skip = SkippedChecks::ALL;
                }
                config
            }
            other => {
                return Err(ConfigError::key(
                    other,
                    "unknown URL option (known: db, protocol, client_name, timeout_ms, \
                     connect_timeout_ms, hang_window_ms, max_attempts, connections, max_reply_bytes, \
                     message_queue_bytes, \
                     max_reply_elements, spin_wait_us, pool_size, \
                     read_from_replicas, replica_selector, topology_refresh_ms, master_name, \
                     sentinel_username, sentinel_password, ca_file, cert_file, key_file, \
                     server_name, insecure)",
                ))
            }
        };
    }
    if let Some(tls) = tls_options.build()? {
        config = config.tls(tls);
    }
    if mode == Mode::Sentinel && config.master_name.is_none() {
        return Err(ConfigError::new(
            "a sentinel URL names the master: redis+sentinel://host:26379/mymaster",
        ));
    }
    config.validate()?;
    Ok(config)
}

/// One URL, or several cluster seeds.
pub(crate) fn parse_many<I, S>(urls: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let configs = urls
        .into_iter()
        .map(|u| parse(u.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut it = configs.into_iter();
    let Some(first) = it.next() else {
        return Err(ConfigError::new("no URL given"));
    };
    let rest: Vec<Config> = it.collect();
    if rest.is_empty() {
        return Ok(first);
    }
    if first.mode == Mode::Sentinel || rest.iter().any(|c| c.mode == Mode::Sentinel) {
        return Err(ConfigError::new(
            "several URLs are cluster seeds; for sentinels use one redis+sentinel:// URL",
        ));
    }
    let mut nodes = first.nodes.clone();
    for c in rest {
        nodes.extend(c.nodes);
    }
    let config = first.with_mode(Mode::Cluster).nodes_addrs(nodes);
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_urls_carry_credentials_database_and_options() {
        let c = parse("redis://app:p%40ss@cache.internal:6380/3?protocol=resp2&client_name=web&timeout_ms=250&spin_wait_us=20&max_reply_bytes=1048576&max_reply_elements=1000&hang_window_ms=3500&message_queue_bytes=1000000").unwrap();
        assert_eq!(c.message_queue_bytes, 1_000_000);
        assert_eq!(c.hang_window, Duration::from_millis(3500));
        assert_eq!(c.spin_wait, Duration::from_micros(20));
        assert_eq!((c.max_reply_bytes, c.max_reply_elements), (1 << 20, 1000));
        assert_eq!(c.mode(), Mode::Standalone);
        assert_eq!(c.nodes(), &[ServerAddr::tcp("cache.internal", 6380)]);
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("p@ss"));
        assert_eq!(c.database, 3);
        assert_eq!(c.protocol, Protocol::Resp2);
        assert_eq!(c.client_name.as_deref(), Some("web"));
        assert_eq!(c.response_timeout, Duration::from_millis(250));
        assert!(c.tls.is_none());

        let c = parse("redis://localhost").unwrap();
        assert_eq!(c.nodes(), &[ServerAddr::tcp("localhost", 6379)]);
        assert_eq!(c.database, 0);
        let c = parse("redis://secret@[::1]:7000").unwrap();
        assert_eq!(c.nodes(), &[ServerAddr::tcp("::1", 7000)]);
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("secret"));
        assert!(c.username.is_none());
    }

    #[test]
    fn tls_unix_cluster_and_sentinel_forms() {
        let c = parse("rediss://h:6390?ca_file=/etc/ca.pem&server_name=redis.internal").unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert!(!tls.is_dangerous());
        assert_eq!(tls.server_name(), Some("redis.internal"));
        let c = parse("rediss://h?insecure=true").unwrap();
        assert!(c.tls.as_ref().unwrap().is_dangerous());
        assert!(
            parse("redis://h?insecure=true").is_err(),
            "insecure without TLS"
        );

        let c = parse("redis+unix:///var/run/redis.sock?db=2").unwrap();
        assert_eq!(c.nodes(), &[ServerAddr::Unix("/var/run/redis.sock".into())]);
        assert_eq!(c.database, 2);

        let c = parse(
            "redis+cluster://a:7000,b:7001,c?read_from_replicas=true&replica_selector=round_robin",
        )
        .unwrap();
        assert_eq!(c.mode(), Mode::Cluster);
        assert_eq!(c.nodes().len(), 3);
        assert_eq!(c.nodes()[2], ServerAddr::tcp("c", 6379));
        assert!(c.read_from_replicas);
        assert_eq!(c.replica_selection.name(), "round_robin");
        assert!(parse("rediss+cluster://a:7000").unwrap().tls.is_some());

        let c = parse("redis+sentinel://:pw@s1,s2:26380/mymaster/1?sentinel_password=sp").unwrap();
        assert_eq!(c.mode(), Mode::Sentinel);
        assert_eq!(
            c.sentinels(),
            &[ServerAddr::tcp("s1", 26379), ServerAddr::tcp("s2", 26380)]
        );
        assert_eq!(c.master_name.as_deref(), Some("mymaster"));
        assert_eq!(c.database, 1);
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("pw"));
        assert_eq!(c.sentinel_password.as_ref().map(|p| p.expose()), Some("sp"));
    }

    #[test]
    fn several_urls_are_cluster_seeds() {
        let c = parse_many(["redis://:pw@a:7000", "redis://b:7001"]).unwrap();
        assert_eq!(c.mode(), Mode::Cluster);
        assert_eq!(c.nodes().len(), 2);
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("pw"));
        assert_eq!(parse_many(["redis://a"]).unwrap().mode(), Mode::Standalone);
        assert!(parse_many(Vec::<&str>::new()).is_err());
        assert!(parse_many(["redis+sentinel://s/m", "redis://b"]).is_err());
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        let cases = [
            ("http://h", "unknown scheme"),
            ("h:6379", "not a URL"),
            ("redis://", "no host"),
            ("redis://u:S3cr3t-marker@h:notaport", "port"),
            ("redis://u:S3cr3t-marker@h/x", "not a valid number"),
            ("redis://a,b", "redis+cluster"),
            ("redis://h?colour=blue", "unknown URL option"),
            ("redis://h?timeout_ms=soon", "not a valid number"),
            ("redis://h?protocol=resp9", "unknown protocol"),
            ("redis+sentinel://s1", "names the master"),
            ("redis+unix://", "no socket path"),
            ("redis+cluster://a/2", "only database 0"),
            ("redis://u:S3cr3t-marker%zz@h", "percent-encoding"),
            ("rediss://h?cert_file=/c.pem", "key_file"),
        ];
        for (url, expected) in cases {
            let err = parse(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("S3cr3t-marker"), "{url}: {err}");
        }
        let err = parse("redis://h?colour=blue").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn redaction_hides_every_password() {
        assert_eq!(redact("redis://u:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://pw@h"), "redis://***@h");
        assert_eq!(redact("redis://h"), "redis://h");
        assert_eq!(
            redact("redis+sentinel://s/m?sentinel_password=x&db=1"),
            "redis+sentinel://s/m?sentinel_password=***&db=1"
        );
        // Keys are percent-decoded (and case ignored) before deciding; undecodable ones hide.
        assert_eq!(
            redact("redis://h?sentinel%5Fpassword=x&db=1"),
            "redis://h?sentinel%5Fpassword=***&db=1"
        );
        assert_eq!(
            redact("redis://h?Master_AUTH=x"),
            "redis://h?Master_AUTH=***"
        );
        assert_eq!(redact("redis://h?p%zz=x"), "redis://h?p%zz=***");
        // A raw `/` or `?` in the password cuts the authority short: nothing is shown.
        assert_eq!(redact("redis://app:Secr3t/Pw@host"), "redis://***");
        assert_eq!(redact("redis://app:Secr3t?Pw@host"), "redis://***");
        assert_eq!(redact("redis://h?client_name=a@b"), "redis://***");
        // Not a URL, or not a scheme before `://`: shown only without an `@`.
        assert_eq!(redact("h:6379"), "h:6379");
        assert_eq!(redact("app:Secr3t@host"), "***");
        assert_eq!(redact("u:pw@h/x://y"), "***");
    }

    /// `/ ? # @ : %` and an encoded `%2F`: every character that can break a URL apart.
    const RAW: &str = "M4rk/er?#@:%2Fx";
    const ENCODED: &str = "M4rk%2Fer%3F%23%40%3A%252Fx";

    #[test]
    fn an_encoded_password_with_reserved_characters_round_trips() {
        let c = parse(&format!("redis://u:{ENCODED}@h:1/2")).unwrap();
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some(RAW));
        assert_eq!(c.nodes(), &[ServerAddr::tcp("h", 1)]);
        let c = parse(&format!(
            "redis+sentinel://s/m?sentinel%5Fpassword={ENCODED}"
        ))
        .unwrap();
        assert_eq!(c.sentinel_password.as_ref().map(|p| p.expose()), Some(RAW));
        // An `@` in a query value is no password and still parses.
        let c = parse("redis://h?client_name=a@b").unwrap();
        assert_eq!(c.client_name.as_deref(), Some("a@b"));
    }

    #[test]
    fn no_piece_of_a_password_with_reserved_characters_shows_in_errors() {
        let urls = [
            format!("redis://u:{RAW}@h"),
            format!("redis://{RAW}@h"),
            format!("redis://u:{RAW}@h:notaport"),
            format!("redis+sentinel://u:{RAW}@s/m"),
            format!("rediss://u:{RAW}@h?colour=1"),
            format!("redis://u:{ENCODED}@h?colour=1"),
            format!("redis://u:{ENCODED}@h:x"),
            format!("redis://{ENCODED}@h/x"),
            format!("redis://h?sentinel_password={RAW}&colour=1"),
            format!("redis://h?sentinel%5Fpassword={RAW}&colour=1"),
            format!("redis://h?sentinel%5Fpassword={ENCODED}&colour=1"),
            format!("redis://h?password={ENCODED}&timeout_ms=x"),
            format!("redis://h?sentinel_password={ENCODED}&db=x"),
            format!("redis://h?{RAW}=1"),
            RAW.to_string(),
            format!("u:{RAW}@h"),
            format!("u:{RAW}@h://x"),
            "redis://app:Secr3t/Pw@host".to_string(),
            "redis://app:Secr3t?Pw@host".to_string(),
            "redis://app:Secr3t?Pw=x@host".to_string(),
            "redis://app:Secr3t#Pw@host:x".to_string(),
            // Would parse, a password piece becoming the master name, without the '@' check.
            "redis+sentinel://u:1/Secr3t@s".to_string(),
        ];
        for url in &urls {
            let err = parse(url).unwrap_err();
            let text = format!("{err} {err:?}");
            for piece in ["M4rk", "er?", "2Fx", "Secr3t", "Pw"] {
                assert!(!text.contains(piece), "{url}: {text}");
            }
        }
        let err = parse("redis://app:Secr3t/Pw@host").unwrap_err().to_string();
        assert!(err.contains("percent-encode"), "{err}");
        let err = parse(&format!("redis://h?sentinel%5Fpassword={ENCODED}&colour=1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"colour\": unknown URL option"), "{err}");
        let err = parse("redis://h?x=a@b&colour=1").unwrap_err().to_string();
        assert!(err.contains("percent-encode"), "{err}");
    }
}
