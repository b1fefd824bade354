//! URLs: `redis://`, `rediss://`, `redis+unix://`, `redis+cluster://`, `redis+sentinel://`.
//!
//! The URL's form says the mode, TLS, the servers, the credentials, the master name and the
//! database; its query options are the settings table's (`settings.rs`).

use redis_conn::ServerAddr;

use crate::config::{parse_host_port, Config, Mode};
use crate::redact::{ambiguous, percent_decode, redact, split_scheme};
use crate::settings::{url_option, Input, TlsOptions, UrlOption};
use crate::ConfigError;

impl Config {
    /// Parses a URL (see the [crate docs](crate#urls) for every form).
    ///
    /// # Errors
    /// [`ConfigError`] naming what is wrong (the URL is shown without its password).
    pub fn from_url(url: &str) -> Result<Config, ConfigError> {
        crate::url::parse(url)
    }

    /// Several URLs: one is the same as [`Config::from_url`]; more are cluster seeds (mode,
    /// credentials and options from the first).
    ///
    /// # Errors
    /// As [`Config::from_url`]; no URL at all.
    pub fn from_urls<I, S>(urls: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        crate::url::parse_many(urls)
    }
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
    let (mode, tls, unix) = scheme(url)?;
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
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
    let mut config = user_info(Config::new().with_mode(mode), userinfo)?;
    config = if unix {
        unix_socket(config, hosts, path)?
    } else {
        servers(config, hosts, path)?
    };
    let mut tls_options = TlsOptions {
        enabled: tls,
        ..TlsOptions::default()
    };
    config = apply_query(config, &mut tls_options, query)?;
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

/// The mode, whether TLS is on, and whether it is a Unix socket, from the scheme.
fn scheme(url: &str) -> Result<(Mode, bool, bool), ConfigError> {
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| ConfigError::new("not a URL (expected redis://, rediss://, ...)"))?;
    Ok(match scheme {
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
    })
}

/// `user:password`, `:password`, or a lone `password` (as redis-cli and redis-rs read it).
fn user_info(mut config: Config, info: Option<&str>) -> Result<Config, ConfigError> {
    let Some(info) = info else {
        return Ok(config);
    };
    match info.split_once(':') {
        Some((user, password)) => {
            if !user.is_empty() {
                config = config.username(percent_decode(user, "user name")?);
            }
            config = config.password(percent_decode(password, "password")?);
        }
        None if !info.is_empty() => config = config.password(percent_decode(info, "password")?),
        None => {}
    }
    Ok(config)
}

/// `redis+unix:///path/to/redis.sock`: no host, the path is the socket.
fn unix_socket(config: Config, hosts: &str, path: &str) -> Result<Config, ConfigError> {
    if !hosts.is_empty() {
        return Err(ConfigError::new(
            "a Unix socket URL has no host: redis+unix:///path/to/redis.sock",
        ));
    }
    let socket = percent_decode(path, "socket path")?;
    if socket.is_empty() || socket == "/" {
        return Err(ConfigError::new("no socket path"));
    }
    Ok(config.nodes_addrs(vec![ServerAddr::Unix(socket.into())]))
}

/// The hosts (the server, the seeds or the sentinels) and the path: `/db` (standalone,
/// cluster), `/master-name[/db]` (sentinel).
fn servers(mut config: Config, hosts: &str, path: &str) -> Result<Config, ConfigError> {
    if hosts.is_empty() {
        return Err(ConfigError::new("no host"));
    }
    let mode = config.mode;
    let default_port = if mode == Mode::Sentinel { 26379 } else { 6379 };
    let addrs = hosts
        .split(',')
        .map(|h| parse_host_port(h, default_port))
        .collect::<Result<Vec<_>, _>>()?;
    config = match mode {
        Mode::Standalone if addrs.len() > 1 => {
            return Err(ConfigError::new(
                "several hosts need redis+cluster:// (seeds) or redis+sentinel:// (sentinels)",
            ))
        }
        Mode::Sentinel => config.sentinel_addrs(addrs),
        _ => config.nodes_addrs(addrs),
    };
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, "path"))
        .collect::<Result<_, _>>()?;
    let mut segments = segments.into_iter();
    if mode == Mode::Sentinel {
        if let Some(name) = segments.next() {
            config = config.master_name(name);
        }
    }
    if let Some(db) = segments.next() {
        config = config.database(Input::Url(&db).int("database")?);
    }
    if segments.next().is_some() {
        return Err(ConfigError::new("unexpected path segments"));
    }
    Ok(config)
}

/// The query options, each a setting of the table (`settings.rs`); TLS ones go to `tls`.
pub(crate) fn apply_query(
    mut config: Config,
    tls: &mut TlsOptions,
    query: &str,
) -> Result<Config, ConfigError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key.contains('@') {
            return Err(ConfigError::new("an '@' in a query key"));
        }
        let key = percent_decode(key, "query")?;
        let value = percent_decode(value, "query")?;
        let input = Input::Url(&value);
        match url_option(&key)? {
            UrlOption::Config(setting) => config = setting.value.apply(config, &key, input)?,
            UrlOption::Tls(setting) => setting.value.apply(tls, &key, input)?,
        }
    }
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
    use std::time::Duration;

    use redis_conn::Protocol;

    use super::*;

    #[test]
    fn standalone_urls_carry_credentials_database_and_options() {
        let c = parse("redis://app:p%40ss@cache.internal:6380/3?protocol=resp2&client_name=web&timeout_ms=250&spin_wait_us=20&max_reply_bytes=1048576&max_reply_elements=1000&hang_window_ms=3500&message_queue_bytes=1000000").unwrap();
        assert_eq!(c.connection.get_message_queue_bytes(), 1_000_000);
        assert_eq!(c.connection.get_hang_window(), Duration::from_millis(3500));
        assert_eq!(c.connection.get_spin_wait(), Duration::from_micros(20));
        assert_eq!(
            (
                c.connection.get_limits().get_max_reply_bytes(),
                c.connection.get_limits().get_max_reply_elements()
            ),
            (1 << 20, 1000)
        );
        assert_eq!(c.mode(), Mode::Standalone);
        assert_eq!(c.nodes(), &[ServerAddr::tcp("cache.internal", 6380)]);
        assert_eq!(c.connection.get_username(), Some("app"));
        assert_eq!(
            c.connection.get_password().map(|p| p.expose()),
            Some("p@ss")
        );
        assert_eq!(c.connection.get_database(), 3);
        assert_eq!(c.connection.get_protocol(), Protocol::Resp2);
        assert_eq!(c.connection.get_client_name(), Some("web"));
        assert_eq!(
            c.connection.get_response_timeout(),
            Duration::from_millis(250)
        );
        assert!(c.connection.tls_config().is_none());

        let c = parse("redis://localhost").unwrap();
        assert_eq!(c.nodes(), &[ServerAddr::tcp("localhost", 6379)]);
        assert_eq!(c.connection.get_database(), 0);
        let c = parse("redis://secret@[::1]:7000").unwrap();
        assert_eq!(c.nodes(), &[ServerAddr::tcp("::1", 7000)]);
        assert_eq!(
            c.connection.get_password().map(|p| p.expose()),
            Some("secret")
        );
        assert!(c.connection.get_username().is_none());
    }

    #[test]
    fn tls_unix_cluster_and_sentinel_forms() {
        let c = parse("rediss://h:6390?ca_file=/etc/ca.pem&server_name=redis.internal").unwrap();
        let tls = c.connection.tls_config().unwrap();
        assert!(!tls.is_dangerous());
        assert_eq!(tls.server_name(), Some("redis.internal"));
        let c = parse("rediss://h?insecure=true").unwrap();
        assert!(c.connection.tls_config().unwrap().is_dangerous());
        assert!(
            parse("redis://h?insecure=true").is_err(),
            "insecure without TLS"
        );

        let c = parse("redis+unix:///var/run/redis.sock?db=2").unwrap();
        assert_eq!(c.nodes(), &[ServerAddr::Unix("/var/run/redis.sock".into())]);
        assert_eq!(c.connection.get_database(), 2);

        let c = parse(
            "redis+cluster://a:7000,b:7001,c?read_from_replicas=true&replica_selector=round_robin",
        )
        .unwrap();
        assert_eq!(c.mode(), Mode::Cluster);
        assert_eq!(c.nodes().len(), 3);
        assert_eq!(c.nodes()[2], ServerAddr::tcp("c", 6379));
        assert!(c.read_from_replicas);
        assert_eq!(c.replica_selection.name(), "round_robin");
        assert!(parse("rediss+cluster://a:7000")
            .unwrap()
            .connection
            .tls_config()
            .is_some());

        let c = parse("redis+sentinel://:pw@s1,s2:26380/mymaster/1?sentinel_password=sp").unwrap();
        assert_eq!(c.mode(), Mode::Sentinel);
        assert_eq!(
            c.sentinels(),
            &[ServerAddr::tcp("s1", 26379), ServerAddr::tcp("s2", 26380)]
        );
        assert_eq!(c.master_name.as_deref(), Some("mymaster"));
        assert_eq!(c.connection.get_database(), 1);
        assert_eq!(c.connection.get_password().map(|p| p.expose()), Some("pw"));
        assert_eq!(c.sentinel_password.as_ref().map(|p| p.expose()), Some("sp"));
    }

    #[test]
    fn several_urls_are_cluster_seeds() {
        let c = parse_many(["redis://:pw@a:7000", "redis://b:7001"]).unwrap();
        assert_eq!(c.mode(), Mode::Cluster);
        assert_eq!(c.nodes().len(), 2);
        assert_eq!(c.connection.get_password().map(|p| p.expose()), Some("pw"));
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

    /// `/ ? # @ : %` and an encoded `%2F`: every character that can break a URL apart.
    const RAW: &str = "M4rk/er?#@:%2Fx";
    const ENCODED: &str = "M4rk%2Fer%3F%23%40%3A%252Fx";

    #[test]
    fn an_encoded_password_with_reserved_characters_round_trips() {
        let c = parse(&format!("redis://u:{ENCODED}@h:1/2")).unwrap();
        assert_eq!(c.connection.get_password().map(|p| p.expose()), Some(RAW));
        assert_eq!(c.nodes(), &[ServerAddr::tcp("h", 1)]);
        let c = parse(&format!(
            "redis+sentinel://s/m?sentinel%5Fpassword={ENCODED}"
        ))
        .unwrap();
        assert_eq!(c.sentinel_password.as_ref().map(|p| p.expose()), Some(RAW));
        // An `@` in a query value is no password and still parses.
        let c = parse("redis://h?client_name=a@b").unwrap();
        assert_eq!(c.connection.get_client_name(), Some("a@b"));
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
