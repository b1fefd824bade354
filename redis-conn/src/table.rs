//! The command table: what each command does to data (read, idempotent write, other write),
//! whether it blocks and for how long, and where its keys are. Retry decisions and cluster
//! routing are built on it.

use std::time::Duration;

use crate::Args;

/// What repeating a command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only: safe to send again.
    ReadOnly,
    /// Writes, but sending it twice leaves the same state as sending it once (SET, DEL, HSET,
    /// EXPIRE, ZADD without INCR): safe to send again.
    Idempotent,
    /// Writes, and a second execution changes the outcome (INCR, LPUSH, XADD, EVAL, unknown
    /// commands): never resent when it may have been executed, unless the caller opts in.
    NonIdempotent,
}

impl Effect {
    /// Whether a command with this effect may be resent after its outcome became unknown.
    pub fn is_retry_safe(self) -> bool {
        !matches!(self, Effect::NonIdempotent)
    }
}

/// Where a command's keys are, counting the command name as argument 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// No keys (PING, INFO, FLUSHALL...).
    None,
    /// Keys at `first`, `first + step`, ... up to `last` (negative: from the end, -1 is the last
    /// argument).
    Range {
        /// Index of the first key.
        first: u8,
        /// Index of the last key; negative counts from the end.
        last: i8,
        /// Distance between keys (2 for MSET's key/value pairs).
        step: u8,
    },
    /// A count of keys at `count_at`, then that many keys (EVAL, ZUNIONSTORE, LMPOP).
    Counted {
        /// Index of the key count.
        count_at: u8,
    },
    /// Keys follow the `STREAMS` keyword and are the first half of what follows it (XREAD).
    Streams,
}

/// How long a blocking command may legitimately wait for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// Not a blocking command: the normal response timeout applies.
    No,
    /// Blocks at most this long (its own timeout argument).
    For(Duration),
    /// Blocks until data arrives (a timeout argument of 0).
    Forever,
}

/// What the table knows of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// What repeating it does.
    pub effect: Effect,
    /// Where its keys are.
    pub keys: KeySpec,
    /// Its kind of blocking timeout argument, if it can block.
    blocking: BlockingArg,
    /// Commands that change the connection's mode (SUBSCRIBE, MONITOR) or need a connection of
    /// their own (WATCH, MULTI): not for a shared, multiplexed connection.
    pub needs_dedicated_connection: bool,
    /// Commands whose replies arrive as a stream of messages (SUBSCRIBE, MONITOR): only the
    /// pub/sub API can carry them, even on an exclusive connection.
    pub streams_replies: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockingArg {
    None,
    /// Seconds (a float) as the last argument: BLPOP, BRPOP, BLMOVE, BZPOPMIN...
    LastSeconds,
    /// Seconds as the first argument: BLMPOP, BZMPOP.
    FirstSeconds,
    /// Milliseconds as the last argument: WAIT, WAITAOF.
    LastMillis,
    /// `BLOCK <ms>` option: XREAD, XREADGROUP.
    BlockOption,
}

const fn info(effect: Effect, keys: KeySpec) -> CommandInfo {
    CommandInfo {
        effect,
        keys,
        blocking: BlockingArg::None,
        needs_dedicated_connection: false,
        streams_replies: false,
    }
}

const fn blocking(effect: Effect, keys: KeySpec, arg: BlockingArg) -> CommandInfo {
    CommandInfo {
        blocking: arg,
        ..info(effect, keys)
    }
}

const fn dedicated(effect: Effect, keys: KeySpec) -> CommandInfo {
    CommandInfo {
        needs_dedicated_connection: true,
        ..info(effect, keys)
    }
}

const fn streaming(effect: Effect, keys: KeySpec) -> CommandInfo {
    CommandInfo {
        needs_dedicated_connection: true,
        streams_replies: true,
        ..info(effect, keys)
    }
}

const fn one(first: u8) -> KeySpec {
    KeySpec::Range {
        first,
        last: first as i8,
        step: 1,
    }
}

const ALL_FROM_1: KeySpec = KeySpec::Range {
    first: 1,
    last: -1,
    step: 1,
};
const PAIRS_FROM_1: KeySpec = KeySpec::Range {
    first: 1,
    last: -1,
    step: 2,
};
const ALL_BUT_LAST: KeySpec = KeySpec::Range {
    first: 1,
    last: -2,
    step: 1,
};
const FIRST_TWO: KeySpec = KeySpec::Range {
    first: 1,
    last: 2,
    step: 1,
};

use Effect::{Idempotent as I, NonIdempotent as W, ReadOnly as R};

/// What an unknown command is taken to be: a non-idempotent write with no known keys.
pub const UNKNOWN: CommandInfo = info(W, KeySpec::None);

/// Looks a command up by name (any case). Unknown commands get [`UNKNOWN`].
pub fn lookup(name: &[u8]) -> CommandInfo {
    // Names are nearly always written in capitals (every typed command's is): looked up as they
    // are first, and upper-cased only when that fails and there is something to upper-case.
    if let Some(info) = lookup_upper(name) {
        return info;
    }
    let mut upper = [0u8; 24];
    if name.len() > upper.len() || !name.iter().any(u8::is_ascii_lowercase) {
        return UNKNOWN;
    }
    for (d, s) in upper.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    lookup_upper(&upper[..name.len()]).unwrap_or(UNKNOWN)
}

/// The table's entry for a name in capitals, if it has one.
fn lookup_upper(key: &[u8]) -> Option<CommandInfo> {
    let none = KeySpec::None;
    let counted = |count_at| KeySpec::Counted { count_at };
    Some(match key {
        // Strings.
        b"GET" | b"STRLEN" | b"GETRANGE" | b"SUBSTR" | b"GETBIT" | b"BITCOUNT" | b"BITPOS"
        | b"TTL" | b"PTTL" | b"EXPIRETIME" | b"PEXPIRETIME" | b"TYPE" | b"DUMP" | b"PFCOUNT" => {
            info(R, one(1))
        }
        b"MGET" | b"EXISTS" | b"TOUCH" => info(R, ALL_FROM_1),
        b"LCS" => info(R, FIRST_TWO),
        b"SET" | b"SETEX" | b"PSETEX" | b"SETNX" | b"GETSET" | b"SETRANGE" | b"SETBIT"
        | b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" | b"PERSIST" | b"PFADD"
        | b"RESTORE" => info(I, one(1)),
        b"MSET" => info(I, PAIRS_FROM_1),
        b"MSETNX" => info(W, PAIRS_FROM_1),
        b"DEL" | b"UNLINK" => info(I, ALL_FROM_1),
        b"INCR" | b"INCRBY" | b"INCRBYFLOAT" | b"DECR" | b"DECRBY" | b"APPEND" | b"GETDEL"
        | b"GETEX" | b"BITFIELD" | b"SORT" => info(W, one(1)),
        b"BITFIELD_RO" | b"SORT_RO" => info(R, one(1)),
        b"BITOP" => info(
            I,
            KeySpec::Range {
                first: 2,
                last: -1,
                step: 1,
            },
        ),
        b"PFMERGE" => info(I, ALL_FROM_1),
        b"RENAME" | b"RENAMENX" | b"COPY" => info(W, FIRST_TWO),
        b"MOVE" => info(W, one(1)),
        b"OBJECT" | b"MEMORY" => info(R, one(2)),
        // Hashes.
        b"HGET" | b"HMGET" | b"HGETALL" | b"HKEYS" | b"HVALS" | b"HLEN" | b"HEXISTS"
        | b"HSTRLEN" | b"HSCAN" | b"HRANDFIELD" | b"HTTL" | b"HPTTL" => info(R, one(1)),
        b"HSET" | b"HMSET" | b"HSETNX" | b"HDEL" | b"HEXPIRE" | b"HPEXPIRE" | b"HPERSIST" => {
            info(I, one(1))
        }
        b"HINCRBY" | b"HINCRBYFLOAT" | b"HGETDEL" | b"HGETEX" => info(W, one(1)),
        // Lists.
        b"LRANGE" | b"LLEN" | b"LINDEX" | b"LPOS" => info(R, one(1)),
        b"LSET" | b"LTRIM" => info(I, one(1)),
        b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LINSERT" | b"LREM" => {
            info(W, one(1))
        }
        b"LMOVE" | b"RPOPLPUSH" => info(W, FIRST_TWO),
        b"LMPOP" => info(W, counted(1)),
        b"BLPOP" | b"BRPOP" => blocking(W, ALL_BUT_LAST, BlockingArg::LastSeconds),
        b"BLMOVE" | b"BRPOPLPUSH" => blocking(W, FIRST_TWO, BlockingArg::LastSeconds),
        b"BLMPOP" => blocking(W, counted(2), BlockingArg::FirstSeconds),
        // Sets.
        b"SMEMBERS" | b"SISMEMBER" | b"SMISMEMBER" | b"SCARD" | b"SRANDMEMBER" | b"SSCAN" => {
            info(R, one(1))
        }
        b"SINTER" | b"SUNION" | b"SDIFF" => info(R, ALL_FROM_1),
        b"SINTERCARD" => info(R, counted(1)),
        b"SADD" | b"SREM" => info(I, one(1)),
        b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE" => info(I, ALL_FROM_1),
        b"SPOP" => info(W, one(1)),
        b"SMOVE" => info(W, FIRST_TWO),
        // Sorted sets.
        b"ZRANGE" | b"ZRANGEBYSCORE" | b"ZREVRANGE" | b"ZREVRANGEBYSCORE" | b"ZRANGEBYLEX"
        | b"ZREVRANGEBYLEX" | b"ZSCORE" | b"ZMSCORE" | b"ZRANK" | b"ZREVRANK" | b"ZCARD"
        | b"ZCOUNT" | b"ZLEXCOUNT" | b"ZSCAN" | b"ZRANDMEMBER" => info(R, one(1)),
        b"ZUNION" | b"ZINTER" | b"ZDIFF" | b"ZINTERCARD" => info(R, counted(1)),
        b"ZADD" | b"ZREM" | b"ZREMRANGEBYSCORE" | b"ZREMRANGEBYRANK" | b"ZREMRANGEBYLEX" => {
            info(I, one(1))
        }
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => info(I, one(1)),
        b"ZRANGESTORE" => info(I, FIRST_TWO),
        b"ZINCRBY" | b"ZPOPMIN" | b"ZPOPMAX" => info(W, one(1)),
        b"ZMPOP" => info(W, counted(1)),
        b"BZPOPMIN" | b"BZPOPMAX" => blocking(W, ALL_BUT_LAST, BlockingArg::LastSeconds),
        b"BZMPOP" => blocking(W, counted(2), BlockingArg::FirstSeconds),
        // Geo.
        b"GEODIST"
        | b"GEOPOS"
        | b"GEOHASH"
        | b"GEOSEARCH"
        | b"GEORADIUS_RO"
        | b"GEORADIUSBYMEMBER_RO" => info(R, one(1)),
        b"GEOADD" => info(I, one(1)),
        b"GEOSEARCHSTORE" => info(I, FIRST_TWO),
        // Streams.
        b"XRANGE" | b"XREVRANGE" | b"XLEN" | b"XPENDING" => info(R, one(1)),
        b"XINFO" => info(R, one(2)),
        b"XREAD" => blocking(R, KeySpec::Streams, BlockingArg::BlockOption),
        b"XREADGROUP" => blocking(W, KeySpec::Streams, BlockingArg::BlockOption),
        b"XACK" | b"XDEL" | b"XTRIM" | b"XSETID" => info(I, one(1)),
        b"XADD" | b"XCLAIM" | b"XAUTOCLAIM" => info(W, one(1)),
        b"XGROUP" => info(W, one(2)),
        // Scripting and functions.
        b"EVAL" | b"EVALSHA" | b"FCALL" => info(W, counted(2)),
        b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL_RO" => info(R, counted(2)),
        b"SCRIPT" | b"FUNCTION" => info(I, none),
        // Keyspace and server.
        b"SCAN" | b"KEYS" | b"DBSIZE" | b"RANDOMKEY" | b"PING" | b"ECHO" | b"INFO" | b"TIME"
        | b"LASTSAVE" | b"ROLE" | b"COMMAND" | b"LOLWUT" | b"CLUSTER" | b"LATENCY" | b"SLOWLOG"
        | b"READONLY" | b"READWRITE" | b"ASKING" => info(R, none),
        b"SELECT" | b"FLUSHDB" | b"FLUSHALL" | b"CONFIG" | b"CLIENT" | b"HELLO" | b"AUTH"
        | b"SWAPDB" => info(I, none),
        b"WAIT" | b"WAITAOF" => blocking(R, none, BlockingArg::LastMillis),
        b"PUBLISH" => info(W, none),
        // A shard channel is routed like a key (its slot's shard serves it).
        b"SPUBLISH" => info(W, one(1)),
        b"MIGRATE" | b"DEBUG" | b"SHUTDOWN" | b"FAILOVER" | b"REPLICAOF" | b"SLAVEOF" | b"SAVE"
        | b"BGSAVE" | b"BGREWRITEAOF" => info(W, none),
        // Connection modes and transactions: not for a shared connection.
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
        | b"SUNSUBSCRIBE" | b"MONITOR" | b"SYNC" | b"PSYNC" => streaming(W, none),
        b"RESET" => dedicated(W, none),
        b"WATCH" => dedicated(R, ALL_FROM_1),
        b"UNWATCH" => dedicated(R, none),
        b"MULTI" | b"EXEC" | b"DISCARD" => dedicated(W, none),
        _ => return None,
    })
}

impl CommandInfo {
    /// The keys among a command's arguments (the name first), where [`CommandInfo::keys`]
    /// says they are; nothing is collected.
    ///
    /// ```
    /// use redis_conn::{table, Cmd};
    ///
    /// let cmd = Cmd::new("MSET").arg("a").arg("1").arg("b").arg("2");
    /// let keys: Vec<&[u8]> = table::lookup(b"MSET").keys_in(cmd.args()).collect();
    /// assert_eq!(keys, [&b"a"[..], b"b"]);
    /// ```
    pub fn keys_in<'a>(&self, args: Args<'a>) -> impl Iterator<Item = &'a [u8]> + 'a {
        let argc = args.len();
        let (skip, take, step) = match self.keys {
            KeySpec::None => (0, 0, 1),
            KeySpec::Range { first, last, step } => {
                let first = usize::from(first);
                let last = if last < 0 {
                    argc.checked_sub(usize::from(last.unsigned_abs()))
                } else {
                    Some(usize::from(last.unsigned_abs()))
                };
                match last {
                    Some(last) if last >= first => {
                        (first, last - first + 1, usize::from(step.max(1)))
                    }
                    _ => (0, 0, 1),
                }
            }
            KeySpec::Counted { count_at } => {
                let count_at = usize::from(count_at);
                let n: usize = args
                    .clone()
                    .nth(count_at)
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                (count_at + 1, n, 1)
            }
            KeySpec::Streams => {
                match args
                    .clone()
                    .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))
                {
                    Some(at) => (at + 1, (argc - at - 1) / 2, 1),
                    None => (0, 0, 1),
                }
            }
        };
        args.skip(skip).take(take).step_by(step)
    }

    /// Whether a shared, multiplexed connection carries the command like any other: it cannot
    /// block, needs no connection of its own and does not stream its replies.
    pub(crate) fn is_ordinary(&self) -> bool {
        self.blocking == BlockingArg::None
            && !self.needs_dedicated_connection
            && !self.streams_replies
    }

    /// How long this command may block, given its arguments (argument 0 is the name).
    #[inline]
    pub fn blocking<'a>(&self, args: impl Fn(usize) -> Option<&'a [u8]>, len: usize) -> Blocking {
        // Every call asks; almost every command is not a blocking one.
        if self.blocking == BlockingArg::None {
            return Blocking::No;
        }
        self.blocking_for(args, len)
    }

    fn blocking_for<'a>(&self, args: impl Fn(usize) -> Option<&'a [u8]>, len: usize) -> Blocking {
        let seconds = |arg: Option<&[u8]>| {
            let secs: f64 = std::str::from_utf8(arg?).ok()?.trim().parse().ok()?;
            (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
        };
        let millis = |arg: Option<&[u8]>| {
            let ms: u64 = std::str::from_utf8(arg?).ok()?.trim().parse().ok()?;
            Some(Duration::from_millis(ms))
        };
        let timeout = match self.blocking {
            BlockingArg::None => return Blocking::No,
            BlockingArg::LastSeconds => seconds(len.checked_sub(1).and_then(&args)),
            BlockingArg::FirstSeconds => seconds(args(1)),
            BlockingArg::LastMillis => millis(len.checked_sub(1).and_then(&args)),
            BlockingArg::BlockOption => {
                let at =
                    (1..len).find(|&i| args(i).is_some_and(|a| a.eq_ignore_ascii_case(b"BLOCK")));
                match at {
                    None => return Blocking::No,
                    Some(i) => millis(args(i + 1)),
                }
            }
        };
        match timeout {
            Some(d) if d.is_zero() => Blocking::Forever,
            Some(d) => Blocking::For(d),
            // An unparsable timeout: the server will reject it, so it will not block.
            None => Blocking::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(args: &[&str]) -> Blocking {
        let info = lookup(args[0].as_bytes());
        info.blocking(|i| args.get(i).map(|s| s.as_bytes()), args.len())
    }

    #[test]
    fn classifies_common_commands_case_insensitively() {
        assert_eq!(lookup(b"get").effect, Effect::ReadOnly);
        assert_eq!(lookup(b"Set").effect, Effect::Idempotent);
        assert_eq!(lookup(b"INCR").effect, Effect::NonIdempotent);
        assert_eq!(lookup(b"LPUSH").effect, Effect::NonIdempotent);
        assert_eq!(lookup(b"XADD").effect, Effect::NonIdempotent);
        assert_eq!(lookup(b"NOSUCHCOMMAND"), UNKNOWN);
        assert_eq!(lookup(&[b'A'; 100]), UNKNOWN);
        assert_eq!(lookup(&[b'a'; 30]), UNKNOWN);
        assert_eq!(lookup(b"nosuchcommand"), UNKNOWN);
        // Capitals are looked up as they are, anything else upper-cased: the same entries.
        for name in [
            "GET",
            "HGETALL",
            "BLPOP",
            "EVALSHA_RO",
            "XREADGROUP",
            "SUBSCRIBE",
            "ZADD",
        ] {
            let lower = name.to_ascii_lowercase();
            let mixed: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            assert_ne!(lookup(name.as_bytes()), UNKNOWN, "{name}");
            assert_eq!(lookup(lower.as_bytes()), lookup(name.as_bytes()), "{lower}");
            assert_eq!(lookup(mixed.as_bytes()), lookup(name.as_bytes()), "{mixed}");
        }
        assert!(lookup(b"subscribe").needs_dedicated_connection);
        assert!(!lookup(b"get").needs_dedicated_connection);
    }

    #[test]
    fn blocking_commands_derive_their_wait_from_their_own_timeout() {
        assert_eq!(block(&["GET", "k"]), Blocking::No);
        assert_eq!(
            block(&["BLPOP", "a", "b", "30"]),
            Blocking::For(Duration::from_secs(30))
        );
        assert_eq!(
            block(&["BRPOP", "a", "0.5"]),
            Blocking::For(Duration::from_millis(500))
        );
        assert_eq!(block(&["BLPOP", "a", "0"]), Blocking::Forever);
        assert_eq!(
            block(&["BLMPOP", "2", "1", "k", "LEFT"]),
            Blocking::For(Duration::from_secs(2))
        );
        assert_eq!(
            block(&["WAIT", "1", "100"]),
            Blocking::For(Duration::from_millis(100))
        );
        assert_eq!(
            block(&["XREAD", "COUNT", "1", "block", "1500", "STREAMS", "s", "$"]),
            Blocking::For(Duration::from_millis(1500))
        );
        assert_eq!(block(&["XREAD", "STREAMS", "s", "0"]), Blocking::No);
        assert_eq!(block(&["BLPOP", "a", "soon"]), Blocking::No);
    }
}
