//! Options of the typed commands: expiry, conditions, list sides, sorted-set flags, stream reads,
//! scans. Each becomes the command's own words.

use std::time::Duration;

use redis_conn::Cmd;

use crate::{ArgSink, ToArgs};

/// When a key expires, for `SET` and `GETEX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// `EX seconds`.
    Seconds(u64),
    /// `PX milliseconds`.
    Millis(u64),
    /// `EXAT unix-seconds`.
    AtSeconds(u64),
    /// `PXAT unix-milliseconds`.
    AtMillis(u64),
    /// `KEEPTTL` (SET only): keep the key's current time to live.
    KeepTtl,
    /// `PERSIST` (GETEX only): remove the time to live.
    Persist,
}

impl Expiry {
    /// In `d` from now, to the millisecond.
    pub fn after(d: Duration) -> Expiry {
        Expiry::Millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
    }
}

impl ToArgs for Expiry {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        let (word, n) = match *self {
            Expiry::Seconds(n) => ("EX", n),
            Expiry::Millis(n) => ("PX", n),
            Expiry::AtSeconds(n) => ("EXAT", n),
            Expiry::AtMillis(n) => ("PXAT", n),
            Expiry::KeepTtl => return cmd.push_arg("KEEPTTL"),
            Expiry::Persist => return cmd.push_arg("PERSIST"),
        };
        cmd.push_arg(word);
        n.push_to(cmd);
    }
}

/// Whether a write needs the key to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exists {
    /// `NX`: only if it does not exist.
    No,
    /// `XX`: only if it exists.
    Yes,
}

impl ToArgs for Exists {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(match self {
            Exists::No => "NX",
            Exists::Yes => "XX",
        });
    }
}

/// Options of `SET`.
///
/// ```
/// use std::time::Duration;
/// use redis_client::{Expiry, SetOptions};
///
/// // SET key value NX PX 30000 GET
/// let options = SetOptions::default()
///     .only_if_absent()
///     .expiry(Expiry::after(Duration::from_secs(30)))
///     .get();
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOptions {
    condition: Option<Exists>,
    expiry: Option<Expiry>,
    get: bool,
}

impl SetOptions {
    /// `NX`: set only if the key does not exist (the reply is nil when it did).
    #[must_use]
    pub fn only_if_absent(mut self) -> Self {
        self.condition = Some(Exists::No);
        self
    }

    /// `XX`: set only if the key exists.
    #[must_use]
    pub fn only_if_present(mut self) -> Self {
        self.condition = Some(Exists::Yes);
        self
    }

    /// `EX`/`PX`/`EXAT`/`PXAT`/`KEEPTTL`.
    #[must_use]
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// `GET`: the reply is the old value (nil when there was none).
    #[must_use]
    pub fn get(mut self) -> Self {
        self.get = true;
        self
    }
}

impl ToArgs for SetOptions {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        self.condition.push_to(cmd);
        self.expiry.push_to(cmd);
        if self.get {
            cmd.push_arg("GET");
        }
    }
}

/// Conditions of `EXPIRE` and friends (Redis 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireCondition {
    /// `NX`: only when the key has no expiry.
    NoExpiry,
    /// `XX`: only when it has one.
    HasExpiry,
    /// `GT`: only when the new expiry is later.
    Later,
    /// `LT`: only when the new expiry is sooner.
    Sooner,
}

impl ToArgs for ExpireCondition {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(match self {
            ExpireCondition::NoExpiry => "NX",
            ExpireCondition::HasExpiry => "XX",
            ExpireCondition::Later => "GT",
            ExpireCondition::Sooner => "LT",
        });
    }
}

/// A list's end, for `LMOVE` and `BLMOVE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The head (`LEFT`).
    Left,
    /// The tail (`RIGHT`).
    Right,
}

impl ToArgs for Side {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        cmd.push_arg(match self {
            Side::Left => "LEFT",
            Side::Right => "RIGHT",
        });
    }
}

/// Options of `ZADD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZAddOptions {
    condition: Option<Exists>,
    compare: Option<bool>,
    changed: bool,
    incr: bool,
}

impl ZAddOptions {
    /// `NX`: only add new members.
    #[must_use]
    pub fn only_new(mut self) -> Self {
        self.condition = Some(Exists::No);
        self
    }

    /// `XX`: only update existing members.
    #[must_use]
    pub fn only_existing(mut self) -> Self {
        self.condition = Some(Exists::Yes);
        self
    }

    /// `GT`: only update when the new score is greater.
    #[must_use]
    pub fn greater(mut self) -> Self {
        self.compare = Some(true);
        self
    }

    /// `LT`: only update when the new score is less.
    #[must_use]
    pub fn less(mut self) -> Self {
        self.compare = Some(false);
        self
    }

    /// `CH`: count changed members, not only added ones.
    #[must_use]
    pub fn changed(mut self) -> Self {
        self.changed = true;
        self
    }

    /// `INCR`: add to the score of one member; the reply is the new score.
    #[must_use]
    pub fn incr(mut self) -> Self {
        self.incr = true;
        self
    }
}

impl ToArgs for ZAddOptions {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        self.condition.push_to(cmd);
        match self.compare {
            Some(true) => cmd.push_arg("GT"),
            Some(false) => cmd.push_arg("LT"),
            None => {}
        }
        if self.changed {
            cmd.push_arg("CH");
        }
        if self.incr {
            cmd.push_arg("INCR");
        }
    }
}

/// Options of `XREAD` and `XREADGROUP`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReadOptions {
    count: Option<u64>,
    block: Option<Duration>,
    group: Option<(String, String)>,
    noack: bool,
}

impl StreamReadOptions {
    /// `COUNT n`: at most this many entries per stream.
    #[must_use]
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// `BLOCK ms`: wait this long for entries (`Duration::ZERO`: forever). The read then runs
    /// on an exclusive connection, never holding up others.
    #[must_use]
    pub fn block(mut self, d: Duration) -> Self {
        self.block = Some(d);
        self
    }

    /// `XREADGROUP GROUP group consumer`: read as a consumer of a group.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>, consumer: impl Into<String>) -> Self {
        self.group = Some((group.into(), consumer.into()));
        self
    }

    /// `NOACK` (groups only): entries need no `XACK`.
    #[must_use]
    pub fn noack(mut self) -> Self {
        self.noack = true;
        self
    }

    /// The command: `XREAD`, or `XREADGROUP GROUP g c`, then the options, then `STREAMS`.
    pub(crate) fn command(&self) -> Cmd {
        let mut cmd = match &self.group {
            Some((group, consumer)) => Cmd::new("XREADGROUP").arg("GROUP").arg(group).arg(consumer),
            None => Cmd::new("XREAD"),
        };
        if let Some(n) = self.count {
            cmd.push_arg("COUNT");
            n.push_to(&mut cmd);
        }
        if let Some(d) = self.block {
            cmd.push_arg("BLOCK");
            u64::try_from(d.as_millis())
                .unwrap_or(u64::MAX)
                .push_to(&mut cmd);
        }
        if self.noack && self.group.is_some() {
            cmd.push_arg("NOACK");
        }
        cmd.push_arg("STREAMS");
        cmd
    }
}

/// Options of `XADD`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamAddOptions {
    nomkstream: bool,
    trim: Option<(&'static str, bool, String)>,
}

impl StreamAddOptions {
    /// `NOMKSTREAM`: do not create the stream (the reply is nil when it does not exist).
    #[must_use]
    pub fn no_create(mut self) -> Self {
        self.nomkstream = true;
        self
    }

    /// `MAXLEN [~] n`: trim to about (`approx`) or exactly `n` entries.
    #[must_use]
    pub fn max_len(mut self, n: u64, approx: bool) -> Self {
        self.trim = Some(("MAXLEN", approx, n.to_string()));
        self
    }

    /// `MINID [~] id`: drop entries older than `id`.
    #[must_use]
    pub fn min_id(mut self, id: impl Into<String>, approx: bool) -> Self {
        self.trim = Some(("MINID", approx, id.into()));
        self
    }
}

impl ToArgs for StreamAddOptions {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        if self.nomkstream {
            cmd.push_arg("NOMKSTREAM");
        }
        if let Some((word, approx, n)) = &self.trim {
            cmd.push_arg(word);
            cmd.push_arg(if *approx { "~" } else { "=" });
            cmd.push_arg(n);
        }
    }
}

/// Options of `SCAN`, `HSCAN`, `SSCAN`, `ZSCAN`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOptions {
    pub(crate) pattern: Option<String>,
    pub(crate) count: Option<usize>,
    pub(crate) key_type: Option<String>,
    pub(crate) max_empty_round_trips: Option<u64>,
}

impl ScanOptions {
    /// The default of [`ScanOptions::max_empty_round_trips`]: ten million keys looked at with
    /// no match, at the default `COUNT` of 10.
    pub const DEFAULT_MAX_EMPTY_ROUND_TRIPS: u64 = 1_000_000;
}

impl ScanOptions {
    /// `MATCH pattern`.
    #[must_use]
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// `COUNT n`: a hint of how much work per call (default: the server's, 10).
    #[must_use]
    pub fn count(mut self, n: usize) -> Self {
        self.count = Some(n.max(1));
        self
    }

    /// `TYPE t` (SCAN only): keys of one type (`string`, `hash`, `zset`...).
    #[must_use]
    pub fn key_type(mut self, t: impl Into<String>) -> Self {
        self.key_type = Some(t.into());
        self
    }

    /// How many round trips in a row may bring no element before the stream gives up with
    /// [`Error::EndlessScan`](crate::Error::EndlessScan): a bound on a server whose cursor never
    /// comes back to 0 (default [`ScanOptions::DEFAULT_MAX_EMPTY_ROUND_TRIPS`]). A stream that
    /// yields elements is never cut: the caller decides when it has had enough. A scan with a
    /// pattern that matches little in a very large keyspace may need a larger `COUNT` or cap.
    #[must_use]
    pub fn max_empty_round_trips(mut self, n: u64) -> Self {
        self.max_empty_round_trips = Some(n.max(1));
        self
    }
}

impl ToArgs for ScanOptions {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        if let Some(p) = &self.pattern {
            cmd.push_arg("MATCH");
            cmd.push_arg(p);
        }
        if let Some(n) = self.count {
            cmd.push_arg("COUNT");
            n.push_to(cmd);
        }
        if let Some(t) = &self.key_type {
            cmd.push_arg("TYPE");
            cmd.push_arg(t);
        }
    }
}

/// Seconds as a blocking command's timeout argument (`0`: forever), to the millisecond.
pub(crate) struct BlockSeconds(pub(crate) Duration);

impl ToArgs for BlockSeconds {
    fn push_to<S: ArgSink>(&self, cmd: &mut S) {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            cmd.push_arg((ms / 1000).to_string());
        } else {
            cmd.push_arg(format!("{}.{:03}", ms / 1000, ms % 1000));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(a: impl ToArgs) -> Vec<String> {
        let mut cmd = Cmd::new("X");
        a.push_to(&mut cmd);
        cmd.args()
            .skip(1)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn options_become_the_commands_words() {
        assert_eq!(
            words(
                SetOptions::default()
                    .only_if_absent()
                    .expiry(Expiry::Seconds(5))
                    .get()
            ),
            ["NX", "EX", "5", "GET"]
        );
        assert_eq!(
            words(Expiry::after(Duration::from_millis(1500))),
            ["PX", "1500"]
        );
        assert_eq!(words(Expiry::KeepTtl), ["KEEPTTL"]);
        assert_eq!(
            words(ZAddOptions::default().only_existing().greater().changed()),
            ["XX", "GT", "CH"]
        );
        assert_eq!(
            words(StreamAddOptions::default().no_create().max_len(1000, true)),
            ["NOMKSTREAM", "MAXLEN", "~", "1000"]
        );
        assert_eq!(
            words(
                ScanOptions::default()
                    .pattern("user:*")
                    .count(100)
                    .key_type("hash")
            ),
            ["MATCH", "user:*", "COUNT", "100", "TYPE", "hash"]
        );
        assert_eq!(words(BlockSeconds(Duration::from_millis(2500))), ["2.500"]);
        assert_eq!(words(BlockSeconds(Duration::ZERO)), ["0"]);
        let read = StreamReadOptions::default()
            .group("g", "c")
            .count(10)
            .block(Duration::from_secs(2))
            .noack()
            .command();
        let args: Vec<String> = read
            .args()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "COUNT",
                "10",
                "BLOCK",
                "2000",
                "NOACK",
                "STREAMS"
            ]
        );
    }
}
