//! Redaction: URLs and query keys as messages and `Debug` may show them, every secret hidden.
//!
//! The bottom of the configuration modules: the URL parser, the profile parser and the error
//! paths all show text through here, and it imports none of them.

use crate::ConfigError;

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
pub(crate) fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let plausible = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    plausible.then_some((scheme, rest))
}

/// The authority (up to the first `/` or `?`, as the URL parser cuts it) and the rest.
fn split_authority(rest: &str) -> (&str, &str) {
    rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()))
}

/// Whether an `@` follows the authority: the URL cannot be split into its parts with
/// confidence (most likely a password with an unencoded `/` or `?`), so no part of it may be
/// shown.
pub(crate) fn ambiguous(url: &str) -> bool {
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

pub(crate) fn percent_decode(text: &str, what: &str) -> Result<String, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
