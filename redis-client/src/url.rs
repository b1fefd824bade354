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

/// The URL with its password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, hosts)) = authority.rsplit_once('@') else {
        return redact_query(url);
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let shown = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        // `redis://secret@host`: a lone userinfo is the password.
        "***".to_string()
    };
    redact_query(&format!("{scheme}://{shown}@{hosts}{tail}"))
}

/// `sentinel_password=...` in a query, replaced by `***`.
fn redact_query(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.ends_with("password") => format!("{k}=***"),
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
        if e.file().is_none() {
            ConfigError::new(format!("URL {}: {e}", redact(url)))
        } else {
            e
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
                     connect_timeout_ms, max_attempts, connections, max_reply_bytes, \
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
        let c = parse("redis://app:p%40ss@cache.internal:6380/3?protocol=resp2&client_name=web&timeout_ms=250&spin_wait_us=20&max_reply_bytes=1048576&max_reply_elements=1000").unwrap();
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
        assert_eq!(redact("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://pw@h"), "redis://***@h");
        assert_eq!(redact("redis://h"), "redis://h");
        assert_eq!(
            redact("redis+sentinel://s/m?sentinel_password=x&db=1"),
            "redis+sentinel://s/m?sentinel_password=***&db=1"
        );
    }
}
