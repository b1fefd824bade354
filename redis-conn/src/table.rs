//! The command table: what running a command twice does (read, retry-safe write, other
//! write), judged with its arguments; whether it blocks and for how long; and where its keys
//! are. Retry decisions and cluster routing are built on it.
//!
//! # Retry-safe
//!
//! A command is *retry-safe* when a second run leaves the same data **and** returns the same
//! reply as one run (`../shared/RELIABILITY.md`, C1.1): after a connection broke with the
//! command maybe executed, the resend's reply is then the answer the caller would have had.
//! "The same data" alone is not enough: a lock taken by a first `SET lock me NX` and answered
//! nil by the resend would be a lie. So the table judges with the arguments: `SET k v` and
//! `SET k v XX EX 10` are retry-safe, `SET k v NX` and `SET k v GET` are not; `ZADD z XX 1 m`
//! is, `ZADD z 1 m` (answers 1, then 0) and `ZADD z INCR 1 m` are not; `EXPIRE k 10` is,
//! `EXPIRE k 10 NX` and `EXPIRE k 0` are not. Every entry the table calls retry-safe is run
//! twice against a real server by the `retry_safety` test, which fails when a second run
//! answers or leaves anything different.

use std::time::Duration;

use crate::Args;

/// What running a command a second time does, judged with its arguments
/// ([`CommandInfo::effect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only: safe to send again (a second run is a fresh look at the same data).
    ReadOnly,
    /// Writes, and a second run leaves the same data and returns the same reply as one run
    /// (`SET k v`, `MSET`, `HMSET`, `LSET`, `ZADD z XX ...`, `EXPIRE k 10`): safe to send again.
    RetrySafe,
    /// Writes, and a second run changes the data again or answers differently (`INCR`,
    /// `SET k v NX`, `DEL`, `SADD`, `ZADD ... INCR`, `EVAL`, unknown commands): never resent
    /// once it may have been executed, unless the caller opts in.
    NotRetrySafe,
}

impl Effect {
    /// Whether a command with this effect may be resent after its outcome became unknown.
    pub fn is_retry_safe(self) -> bool {
        !matches!(self, Effect::NotRetrySafe)
    }

    /// The least resendable of two effects (a pipeline's is its least resendable command's).
    pub fn worst(self, other: Effect) -> Effect {
        use Effect::*;
        match (self, other) {
            (NotRetrySafe, _) | (_, NotRetrySafe) => NotRetrySafe,
            (RetrySafe, _) | (_, RetrySafe) => RetrySafe,
            _ => ReadOnly,
        }
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
    /// What a second run does when the arguments do not say otherwise; see
    /// [`CommandInfo::effect`] for the judgement with the arguments.
    effect: Effect,
    /// Which arguments can make the command less resendable than `effect`.
    options: Options,
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
    /// How a cluster client sends it beyond routing by slot; see [`CommandInfo::cluster_policy`].
    cluster: ClusterSpec,
}

/// How a cluster client sends a command, besides routing it to the node of its keys' slot.
/// Declared with each command's entry ([`CommandInfo::cluster_policy`]), so that splitting and
/// fanning out are decided where the rest of what a command is, is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterPolicy {
    /// To the node of its keys' slot (any master for a keyless command); keys that span slots
    /// are refused before sending.
    BySlot,
    /// Keys that span slots are split by slot (each key's effect is independent of the
    /// others'): one command per slot, replies merged. Not atomic across slots.
    SplitBySlot(Merge),
    /// A keyless command sent to every master, their answers combined.
    AllMasters(Combine),
}

/// How the replies of a command split by slot are merged ([`ClusterPolicy::SplitBySlot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Values put back in the caller's key order (MGET).
    InKeyOrder,
    /// Every part answers OK: one OK (MSET).
    AllOk,
    /// Integers added up (DEL, UNLINK, EXISTS, TOUCH).
    Sum,
}

/// How the answers of a command sent to every master combine ([`ClusterPolicy::AllMasters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Integers added up (DBSIZE).
    Sum,
    /// Arrays concatenated (KEYS).
    Concat,
    /// Every master answers the same (FLUSHALL, SCRIPT LOAD): one answer.
    Same,
    /// The fewest acknowledgements (WAIT, WAITAOF): the caller's writes went to any master,
    /// and what holds for all of them holds for each.
    Fewest,
}

/// A command's cluster policy as its entry declares it: fixed, or set by its subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClusterSpec {
    /// The policy, whatever the arguments.
    Fixed(ClusterPolicy),
    /// Sent to every master when the subcommand is one of these, else by slot.
    AllMastersFor(Subcommands, Combine),
}

/// Subcommands that change what every master holds, so that each must run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subcommands {
    /// `SCRIPT LOAD` and `SCRIPT FLUSH`: the script cache.
    ScriptCacheWrites,
    /// `FUNCTION LOAD`, `FUNCTION FLUSH` and `FUNCTION DELETE`: the function libraries.
    FunctionLibraryWrites,
}

impl Subcommands {
    fn contains(self, sub: &[u8]) -> bool {
        let words: &[&[u8]] = match self {
            Subcommands::ScriptCacheWrites => &[b"LOAD", b"FLUSH"],
            Subcommands::FunctionLibraryWrites => &[b"LOAD", b"FLUSH", b"DELETE"],
        };
        words.iter().any(|w| sub.eq_ignore_ascii_case(w))
    }
}

/// The arguments that decide whether a command is retry-safe, for the commands whose options
/// change the answer to "what does a second run do".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Options {
    /// The name decides.
    None,
    /// `SET k v [NX|XX] [GET] [EX..]`: not with `NX` or `GET`.
    Set,
    /// `EXPIRE k secs [NX|XX|GT|LT]` (`PEXPIRE` in milliseconds when `millis`): a time of at
    /// least [`MIN_RESENDABLE_TTL`], and no option but `XX` (`NX` answers 0 the second time;
    /// `GT` against the first run's own expiry does; a time of 0 or less deletes the key, and
    /// a short one lets it expire before the resend, so the second run answers 0).
    Expire { millis: bool },
    /// `ZADD`/`GEOADD k [NX|XX] [GT|LT] [CH] [INCR] ...`: only with `XX` and neither `CH` nor
    /// `INCR` (the reply then counts added members, none both times).
    AddExisting,
    /// `RESTORE`, `COPY`, `FUNCTION LOAD|RESTORE`: only with `REPLACE` (or `FLUSH`); without
    /// it the second run fails on what the first created.
    Replace,
    /// A command that stores into a destination at this argument (`SINTERSTORE`, `BITOP`,
    /// `ZRANGESTORE`...): only when no other argument names the destination (`BITOP XOR d d x`
    /// flips `d` again).
    Destination(u8),
    /// `LTRIM k start stop`: only a trim that keeps its own result (`0 N`, `0 -1`, `-N -1`);
    /// `LTRIM q 100 -1` drops 100 more each run.
    Ltrim,
    /// `SORT`: reads unless it `STORE`s.
    Sort,
    /// `GETEX k [EX|PX|PERSIST]`: not with an absolute `EXAT`/`PXAT` (one in the past deletes
    /// the key: the second run answers nil), nor with an `EX`/`PX` shorter than
    /// [`MIN_RESENDABLE_TTL`] (the key may be gone by the resend).
    GetEx,
    /// A container command (`CLUSTER`, `CLIENT`, `SCRIPT`...): its subcommand decides.
    Subcommand,
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
        options: Options::None,
        keys,
        blocking: BlockingArg::None,
        needs_dedicated_connection: false,
        streams_replies: false,
        cluster: ClusterSpec::Fixed(ClusterPolicy::BySlot),
    }
}

/// An entry whose keys may be split by slot in a cluster, the parts' replies merged by `merge`.
const fn split(merge: Merge, entry: CommandInfo) -> CommandInfo {
    CommandInfo {
        cluster: ClusterSpec::Fixed(ClusterPolicy::SplitBySlot(merge)),
        ..entry
    }
}

/// An entry sent to every master in a cluster, the answers combined by `combine`.
const fn all_masters(combine: Combine, entry: CommandInfo) -> CommandInfo {
    CommandInfo {
        cluster: ClusterSpec::Fixed(ClusterPolicy::AllMasters(combine)),
        ..entry
    }
}

/// A container command (`SCRIPT`, `FUNCTION`) whose subcommand decides; `subs` go to every
/// master in a cluster, their answers combined by `combine`.
const fn container(subs: Subcommands, combine: Combine) -> CommandInfo {
    CommandInfo {
        options: Options::Subcommand,
        cluster: ClusterSpec::AllMastersFor(subs, combine),
        ..info(R, NONE)
    }
}

/// A write whose arguments decide whether it is retry-safe: retry-safe unless `options` say
/// otherwise.
const fn safe_unless(options: Options, keys: KeySpec) -> CommandInfo {
    CommandInfo {
        options,
        ..info(RetrySafe, keys)
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

const fn counted(count_at: u8) -> KeySpec {
    KeySpec::Counted { count_at }
}

const NONE: KeySpec = KeySpec::None;
const ALL_FROM_1: KeySpec = KeySpec::Range {
    first: 1,
    last: -1,
    step: 1,
};
const ALL_FROM_2: KeySpec = KeySpec::Range {
    first: 2,
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

use Effect::{NotRetrySafe as W, ReadOnly as R, RetrySafe};

/// What an unknown command is taken to be: a write that is not retry-safe, with no known keys.
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

/// The entries, written once: the lookup (a `match` on the name in capitals) and [`NAMES`]
/// (every name, for the tests that walk the table) are both made from this list.
macro_rules! command_table {
    ($( $($name:literal)|+ => $info:expr, )*) => {
        /// The table's entry for a name in capitals, if it has one.
        fn lookup_upper(key: &[u8]) -> Option<CommandInfo> {
            Some(match key {
                $( $($name)|+ => $info, )*
                _ => return None,
            })
        }

        /// Every command name the table knows, in capitals.
        pub const NAMES: &[&[u8]] = &[$($($name),+),*];
    };
}

command_table! {
    // Strings.
    b"GET" | b"STRLEN" | b"GETRANGE" | b"SUBSTR" | b"GETBIT" | b"BITCOUNT" | b"BITPOS"
    | b"TTL" | b"PTTL" | b"EXPIRETIME" | b"PEXPIRETIME" | b"TYPE" | b"DUMP" | b"PFCOUNT" => {
        info(R, one(1))
    },
    b"MGET" => split(Merge::InKeyOrder, info(R, ALL_FROM_1)),
    b"EXISTS" | b"TOUCH" => split(Merge::Sum, info(R, ALL_FROM_1)),
    b"LCS" => info(R, FIRST_TWO),
    b"SET" => safe_unless(Options::Set, one(1)),
    // SETRANGE answers the string's length, the same after a second run.
    b"SETEX" | b"PSETEX" | b"SETRANGE" => info(RetrySafe, one(1)),
    b"EXPIRE" => safe_unless(Options::Expire { millis: false }, one(1)),
    b"PEXPIRE" => safe_unless(Options::Expire { millis: true }, one(1)),
    b"GETEX" => safe_unless(Options::GetEx, one(1)),
    b"RESTORE" => safe_unless(Options::Replace, one(1)),
    // SETNX and GETSET answer what the first run changed; SETBIT the bit it set; PERSIST and
    // PFADD 0 the second time; an EXPIREAT in the past deletes the key (whose past, the
    // client's clock cannot tell).
    b"SETNX" | b"GETSET" | b"SETBIT" | b"PERSIST" | b"PFADD" | b"EXPIREAT" | b"PEXPIREAT"
    | b"INCR" | b"INCRBY" | b"INCRBYFLOAT" | b"DECR" | b"DECRBY" | b"APPEND" | b"GETDEL"
    | b"BITFIELD" | b"MOVE" => info(W, one(1)),
    b"MSET" => split(Merge::AllOk, info(RetrySafe, PAIRS_FROM_1)),
    b"MSETNX" => info(W, PAIRS_FROM_1),
    b"DEL" | b"UNLINK" => split(Merge::Sum, info(W, ALL_FROM_1)),
    b"SORT" => safe_unless(Options::Sort, one(1)),
    b"BITFIELD_RO" | b"SORT_RO" => info(R, one(1)),
    b"BITOP" => safe_unless(Options::Destination(2), ALL_FROM_2),
    // A union of HyperLogLogs is the same however often it is taken.
    b"PFMERGE" => info(RetrySafe, ALL_FROM_1),
    b"RENAME" | b"RENAMENX" => info(W, FIRST_TWO),
    b"COPY" => safe_unless(Options::Replace, FIRST_TWO),
    b"OBJECT" | b"MEMORY" => CommandInfo {
        options: Options::Subcommand,
        ..info(R, one(2))
    },
    // Hashes.
    b"HGET" | b"HMGET" | b"HGETALL" | b"HKEYS" | b"HVALS" | b"HLEN" | b"HEXISTS"
    | b"HSTRLEN" | b"HSCAN" | b"HRANDFIELD" | b"HTTL" | b"HPTTL" => info(R, one(1)),
    // HMSET answers OK; HSET the number of fields it added (0 the second time).
    b"HMSET" => info(RetrySafe, one(1)),
    // (HEXPIRE and HPEXPIRE would be retry-safe with a positive time and no NX/GT/LT, as
    // EXPIRE is; kept out until the retry-safety test can run them.)
    b"HSET" | b"HSETNX" | b"HDEL" | b"HEXPIRE" | b"HPEXPIRE" | b"HPERSIST" | b"HINCRBY"
    | b"HINCRBYFLOAT" | b"HGETDEL" | b"HGETEX" => info(W, one(1)),
    // Lists.
    b"LRANGE" | b"LLEN" | b"LINDEX" | b"LPOS" => info(R, one(1)),
    b"LSET" => info(RetrySafe, one(1)),
    b"LTRIM" => safe_unless(Options::Ltrim, one(1)),
    b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LINSERT" | b"LREM" => {
        info(W, one(1))
    },
    b"LMOVE" | b"RPOPLPUSH" => info(W, FIRST_TWO),
    b"LMPOP" => info(W, counted(1)),
    b"BLPOP" | b"BRPOP" => blocking(W, ALL_BUT_LAST, BlockingArg::LastSeconds),
    b"BLMOVE" | b"BRPOPLPUSH" => blocking(W, FIRST_TWO, BlockingArg::LastSeconds),
    b"BLMPOP" => blocking(W, counted(2), BlockingArg::FirstSeconds),
    // Sets.
    b"SMEMBERS" | b"SISMEMBER" | b"SMISMEMBER" | b"SCARD" | b"SRANDMEMBER" | b"SSCAN" => {
        info(R, one(1))
    },
    b"SINTER" | b"SUNION" | b"SDIFF" => info(R, ALL_FROM_1),
    b"SINTERCARD" => info(R, counted(1)),
    b"SADD" | b"SREM" | b"SPOP" => info(W, one(1)),
    b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE" => {
        safe_unless(Options::Destination(1), ALL_FROM_1)
    },
    b"SMOVE" => info(W, FIRST_TWO),
    // Sorted sets.
    b"ZRANGE" | b"ZRANGEBYSCORE" | b"ZREVRANGE" | b"ZREVRANGEBYSCORE" | b"ZRANGEBYLEX"
    | b"ZREVRANGEBYLEX" | b"ZSCORE" | b"ZMSCORE" | b"ZRANK" | b"ZREVRANK" | b"ZCARD"
    | b"ZCOUNT" | b"ZLEXCOUNT" | b"ZSCAN" | b"ZRANDMEMBER" => info(R, one(1)),
    b"ZUNION" | b"ZINTER" | b"ZDIFF" | b"ZINTERCARD" => info(R, counted(1)),
    b"ZADD" => safe_unless(Options::AddExisting, one(1)),
    b"ZREM" | b"ZREMRANGEBYSCORE" | b"ZREMRANGEBYRANK" | b"ZREMRANGEBYLEX" | b"ZINCRBY"
    | b"ZPOPMIN" | b"ZPOPMAX" => info(W, one(1)),
    b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => {
        safe_unless(Options::Destination(1), one(1))
    },
    b"ZRANGESTORE" => safe_unless(Options::Destination(1), FIRST_TWO),
    b"ZMPOP" => info(W, counted(1)),
    b"BZPOPMIN" | b"BZPOPMAX" => blocking(W, ALL_BUT_LAST, BlockingArg::LastSeconds),
    b"BZMPOP" => blocking(W, counted(2), BlockingArg::FirstSeconds),
    // Geo.
    b"GEODIST" | b"GEOPOS" | b"GEOHASH" | b"GEOSEARCH" | b"GEORADIUS_RO"
    | b"GEORADIUSBYMEMBER_RO" => info(R, one(1)),
    b"GEOADD" => safe_unless(Options::AddExisting, one(1)),
    b"GEOSEARCHSTORE" => safe_unless(Options::Destination(1), FIRST_TWO),
    // Streams.
    b"XRANGE" | b"XREVRANGE" | b"XLEN" | b"XPENDING" => info(R, one(1)),
    b"XINFO" => info(R, one(2)),
    b"XREAD" => blocking(R, KeySpec::Streams, BlockingArg::BlockOption),
    b"XREADGROUP" => blocking(W, KeySpec::Streams, BlockingArg::BlockOption),
    // XSETID to the same ID again answers OK; XACK, XDEL and XTRIM count what they removed.
    b"XSETID" => info(RetrySafe, one(1)),
    b"XACK" | b"XDEL" | b"XTRIM" | b"XADD" | b"XCLAIM" | b"XAUTOCLAIM" => info(W, one(1)),
    b"XGROUP" => info(W, one(2)),
    // Scripting and functions.
    b"EVAL" | b"EVALSHA" | b"FCALL" => info(W, counted(2)),
    b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL_RO" => info(R, counted(2)),
    b"SCRIPT" => container(Subcommands::ScriptCacheWrites, Combine::Same),
    b"FUNCTION" => container(Subcommands::FunctionLibraryWrites, Combine::Same),
    b"CONFIG" | b"CLIENT" | b"CLUSTER" | b"LATENCY" | b"SLOWLOG" => CommandInfo {
        options: Options::Subcommand,
        ..info(R, NONE)
    },
    // Keyspace and server.
    b"SCAN" | b"RANDOMKEY" | b"PING" | b"ECHO" | b"INFO" | b"TIME" | b"LASTSAVE" | b"ROLE"
    | b"COMMAND" | b"LOLWUT" | b"READONLY" | b"READWRITE" | b"ASKING" => info(R, NONE),
    b"DBSIZE" => all_masters(Combine::Sum, info(R, NONE)),
    b"KEYS" => all_masters(Combine::Concat, info(R, NONE)),
    b"SELECT" | b"HELLO" | b"AUTH" => info(RetrySafe, NONE),
    b"FLUSHDB" | b"FLUSHALL" => all_masters(Combine::Same, info(RetrySafe, NONE)),
    // SWAPDB a second time swaps back.
    b"SWAPDB" => info(W, NONE),
    b"WAIT" | b"WAITAOF" => all_masters(Combine::Fewest, blocking(R, NONE, BlockingArg::LastMillis)),
    // Routed by its channel's slot in a cluster, so that one publisher's messages to one
    // channel keep their order (they all take the same path through the cluster bus).
    b"PUBLISH" => info(W, one(1)),
    // A shard channel is routed like a key (its slot's shard serves it).
    b"SPUBLISH" => info(W, one(1)),
    b"MIGRATE" | b"DEBUG" | b"SHUTDOWN" | b"FAILOVER" | b"REPLICAOF" | b"SLAVEOF" | b"SAVE"
    | b"BGSAVE" | b"BGREWRITEAOF" => info(W, NONE),
    // Connection modes and transactions: not for a shared connection.
    b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
    | b"SUNSUBSCRIBE" | b"MONITOR" | b"SYNC" | b"PSYNC" => streaming(W, NONE),
    b"RESET" => dedicated(W, NONE),
    b"WATCH" => dedicated(R, ALL_FROM_1),
    b"UNWATCH" => dedicated(R, NONE),
    b"MULTI" | b"EXEC" | b"DISCARD" => dedicated(W, NONE),
}

/// What a container command's subcommand does when run twice (`CLUSTER FAILOVER` is no read).
fn subcommand_effect(name: &[u8], sub: &[u8], args: Args<'_>) -> Effect {
    let sub = sub.to_ascii_uppercase();
    let has = |word: &[u8]| args.clone().any(|a| a.eq_ignore_ascii_case(word));
    match (name.to_ascii_uppercase().as_slice(), sub.as_slice()) {
        (
            b"CLUSTER",
            b"INFO"
            | b"NODES"
            | b"SLOTS"
            | b"SHARDS"
            | b"MYID"
            | b"MYSHARDID"
            | b"KEYSLOT"
            | b"COUNTKEYSINSLOT"
            | b"GETKEYSINSLOT"
            | b"LINKS"
            | b"REPLICAS"
            | b"SLAVES"
            | b"COUNT-FAILURE-REPORTS"
            | b"HELP",
        ) => R,
        (
            b"CLIENT",
            b"LIST" | b"INFO" | b"GETNAME" | b"ID" | b"GETREDIR" | b"TRACKINGINFO" | b"HELP",
        ) => R,
        (
            b"CLIENT",
            b"SETNAME" | b"SETINFO" | b"NO-EVICT" | b"NO-TOUCH" | b"PAUSE" | b"UNPAUSE",
        ) => RetrySafe,
        (b"SCRIPT", b"EXISTS" | b"HELP") => R,
        (b"SCRIPT", b"LOAD" | b"FLUSH") => RetrySafe,
        (b"FUNCTION", b"LIST" | b"DUMP" | b"STATS" | b"HELP") => R,
        (b"FUNCTION", b"FLUSH") => RetrySafe,
        (b"FUNCTION", b"LOAD") if has(b"REPLACE") => RetrySafe,
        (b"FUNCTION", b"RESTORE") if has(b"REPLACE") || has(b"FLUSH") => RetrySafe,
        (b"CONFIG", b"GET" | b"HELP") => R,
        (b"CONFIG", b"SET" | b"RESETSTAT" | b"REWRITE") => RetrySafe,
        // LATENCY RESET answers how many it reset.
        (b"LATENCY", b"RESET") => W,
        (b"LATENCY", _) => R,
        (b"SLOWLOG", b"RESET") => RetrySafe,
        (b"SLOWLOG", _) => R,
        (b"MEMORY", b"PURGE") => RetrySafe,
        (b"MEMORY", _) | (b"OBJECT", _) => R,
        _ => W,
    }
}

/// The shortest relative expiry (`EXPIRE k 10`, `GETEX k PX 10000`) with which a command is
/// retry-safe: a resend comes within its call's deadline, normally well under this; with a
/// shorter time the key may have expired by then, and the resend answers 0 (or nil).
pub const MIN_RESENDABLE_TTL: Duration = Duration::from_secs(10);

/// Whether a relative expiry of `t` seconds (milliseconds when `millis`) is at least
/// [`MIN_RESENDABLE_TTL`].
fn lasts_past_a_resend(t: i64, millis: bool) -> bool {
    let min = MIN_RESENDABLE_TTL.as_millis() as i64;
    if millis {
        t >= min
    } else {
        t >= min / 1000
    }
}

/// An argument as a decimal integer, if it is one.
fn integer(arg: Option<&[u8]>) -> Option<i64> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

impl CommandInfo {
    /// What running the command a second time does, judged with its arguments (argument 0 is
    /// the name): [`Effect::RetrySafe`] only when a second run leaves the same data and returns
    /// the same reply as one run (see the [module docs](self)).
    ///
    /// ```
    /// use redis_conn::{table::{self, Effect}, Cmd};
    ///
    /// let effect = |cmd: Cmd| cmd.info().effect(cmd.args());
    /// assert_eq!(effect(Cmd::new("SET").arg("k").arg("v").arg("EX").arg("10")), Effect::RetrySafe);
    /// assert_eq!(effect(Cmd::new("SET").arg("lock").arg("me").arg("NX")), Effect::NotRetrySafe);
    /// assert_eq!(effect(Cmd::new("ZADD").arg("z").arg("INCR").arg("1").arg("m")), Effect::NotRetrySafe);
    /// assert_eq!(effect(Cmd::new("CLUSTER").arg("FAILOVER")), Effect::NotRetrySafe);
    /// assert_eq!(effect(Cmd::new("CLUSTER").arg("SLOTS")), Effect::ReadOnly);
    /// ```
    #[inline]
    pub fn effect(&self, args: Args<'_>) -> Effect {
        // The name decides, or (`SET k v`, most pipelines' bulk) no option follows.
        if self.options == Options::None || (self.options == Options::Set && args.len() <= 3) {
            return self.effect;
        }
        self.effect_with_options(args)
    }

    /// Whether some arguments make the command retry-safe (or a read): false for commands that
    /// are never resent once they may have run, whatever their arguments.
    pub fn can_be_retry_safe(&self) -> bool {
        // Arguments only ever make a command less resendable than its name does.
        self.effect.is_retry_safe()
    }

    /// The effect of a command whose arguments do not decide it (see
    /// [`CommandInfo::judged_by_arguments`]).
    pub(crate) fn effect_by_name(&self) -> Effect {
        self.effect
    }

    /// Whether [`CommandInfo::effect`] reads the arguments (the name alone does not decide).
    pub(crate) fn judged_by_arguments(&self) -> bool {
        self.options != Options::None
    }

    fn effect_with_options(&self, args: Args<'_>) -> Effect {
        let arg = |i: usize| args.clone().nth(i);
        let has_from =
            |i: usize, word: &[u8]| args.clone().skip(i).any(|a| a.eq_ignore_ascii_case(word));
        let safe = match self.options {
            Options::None => true,
            Options::Set => !args
                .clone()
                .skip(3)
                .any(|a| a.eq_ignore_ascii_case(b"NX") || a.eq_ignore_ascii_case(b"GET")),
            Options::Expire { millis } => {
                integer(arg(2)).is_some_and(|t| lasts_past_a_resend(t, millis))
                    && args.clone().skip(3).all(|a| a.eq_ignore_ascii_case(b"XX"))
            }
            Options::AddExisting => {
                let mut xx = false;
                for a in args.clone().skip(2) {
                    match a.to_ascii_uppercase().as_slice() {
                        b"XX" => xx = true,
                        b"GT" | b"LT" => {}
                        b"NX" | b"CH" | b"INCR" => return W,
                        _ => break,
                    }
                }
                xx
            }
            Options::Replace => has_from(3, b"REPLACE"),
            Options::Destination(at) => {
                let at = usize::from(at);
                match arg(at) {
                    Some(dest) => !args
                        .clone()
                        .enumerate()
                        .any(|(i, a)| i != 0 && i != at && a == dest),
                    None => false,
                }
            }
            Options::Ltrim => match (integer(arg(2)), integer(arg(3))) {
                (Some(0), Some(stop)) => stop >= -1,
                (Some(start), Some(-1)) => start < 0,
                _ => false,
            },
            Options::Sort => !has_from(2, b"STORE"),
            Options::GetEx => {
                let mut rest = args.clone().skip(2);
                let mut safe = true;
                while let Some(a) = rest.next() {
                    let millis = match a.to_ascii_uppercase().as_slice() {
                        b"EX" => false,
                        b"PX" => true,
                        b"PERSIST" => continue,
                        _ => {
                            safe = false;
                            break;
                        }
                    };
                    if !integer(rest.next()).is_some_and(|t| lasts_past_a_resend(t, millis)) {
                        safe = false;
                        break;
                    }
                }
                safe
            }
            Options::Subcommand => {
                return subcommand_effect(
                    arg(0).unwrap_or_default(),
                    arg(1).unwrap_or_default(),
                    args,
                );
            }
        };
        if safe {
            self.effect
        } else {
            W
        }
    }

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

    /// How a cluster client sends the command, given its arguments (argument 0 is the name):
    /// split by slot when its keys span slots, to every master, or by slot.
    ///
    /// ```
    /// use redis_conn::{table::{ClusterPolicy, Combine, Merge}, Cmd};
    ///
    /// let policy = |cmd: Cmd| cmd.info().cluster_policy(cmd.args());
    /// assert_eq!(policy(Cmd::new("MGET").arg("a").arg("b")), ClusterPolicy::SplitBySlot(Merge::InKeyOrder));
    /// assert_eq!(policy(Cmd::new("DBSIZE")), ClusterPolicy::AllMasters(Combine::Sum));
    /// assert_eq!(policy(Cmd::new("SCRIPT").arg("LOAD").arg("return 1")), ClusterPolicy::AllMasters(Combine::Same));
    /// assert_eq!(policy(Cmd::new("SCRIPT").arg("EXISTS").arg("sha")), ClusterPolicy::BySlot);
    /// assert_eq!(policy(Cmd::new("GET").arg("a")), ClusterPolicy::BySlot);
    /// ```
    pub fn cluster_policy(&self, args: Args<'_>) -> ClusterPolicy {
        match self.cluster {
            ClusterSpec::Fixed(policy) => policy,
            ClusterSpec::AllMastersFor(subs, combine) => match args.clone().nth(1) {
                Some(sub) if subs.contains(sub) => ClusterPolicy::AllMasters(combine),
                _ => ClusterPolicy::BySlot,
            },
        }
    }

    /// `WAIT` and `WAITAOF`: they count the replicas that acknowledged the writes of the
    /// connection they run on, so they must run where the caller's writes went (the shared
    /// connection, or the caller's lease), not on a connection of their own.
    pub fn counts_this_connections_writes(&self) -> bool {
        self.blocking == BlockingArg::LastMillis
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
            // A timeout past what a Duration holds saturates (a BLPOP of 1e20 s waits forever
            // in all but name); it never panics.
            (secs.is_finite() && secs >= 0.0)
                .then(|| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
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

    fn cmd(args: &[&str]) -> crate::Cmd {
        args[1..]
            .iter()
            .fold(crate::Cmd::new(args[0]), |cmd, a| cmd.arg(a))
    }

    fn effect(args: &[&str]) -> Effect {
        let cmd = cmd(args);
        cmd.info().effect(cmd.args())
    }

    #[test]
    fn options_that_change_a_second_run_make_a_write_unsafe_to_resend() {
        use Effect::{NotRetrySafe as No, ReadOnly as Read, RetrySafe as Yes};
        let cases: &[(&[&str], Effect)] = &[
            (&["SET", "k", "v"], Yes),
            (&["SET", "k", "NX"], Yes), // "NX" is the value here
            (&["SET", "k", "v", "XX", "EX", "10"], Yes),
            (&["SET", "k", "v", "nx"], No),
            (&["SET", "k", "v", "XX", "GET"], No),
            (&["EXPIRE", "k", "10"], Yes),
            (&["EXPIRE", "k", "1"], No),
            (&["PEXPIRE", "k", "10000", "xx"], Yes),
            (&["PEXPIRE", "k", "10", "xx"], No),
            (&["GETEX", "k", "px", "5"], No),
            (&["GETEX", "k", "EX", "1"], No),
            (&["GETEX", "k", "PERSIST"], Yes),
            (&["GETEX", "k"], Yes),
            (&["EXPIRE", "k", "10", "NX"], No),
            (&["EXPIRE", "k", "10", "GT"], No),
            (&["EXPIRE", "k", "0"], No),
            (&["EXPIRE", "k", "-5"], No),
            (&["EXPIRE", "k", "soon"], No),
            (&["ZADD", "z", "XX", "1", "m"], Yes),
            (&["ZADD", "z", "XX", "GT", "1", "m"], Yes),
            (&["ZADD", "z", "1", "m"], No),
            (&["ZADD", "z", "XX", "CH", "1", "m"], No),
            (&["ZADD", "z", "XX", "INCR", "1", "m"], No),
            (&["ZADD", "z", "NX", "1", "m"], No),
            (&["GEOADD", "g", "XX", "13.36", "38.11", "p"], Yes),
            (&["GEOADD", "g", "13.36", "38.11", "p"], No),
            (&["RESTORE", "k", "0", "payload", "REPLACE"], Yes),
            (&["RESTORE", "k", "0", "payload"], No),
            (&["COPY", "a", "b", "REPLACE"], Yes),
            (&["COPY", "a", "b"], No),
            (&["BITOP", "AND", "d", "a", "b"], Yes),
            (&["BITOP", "XOR", "d", "d", "x"], No),
            (&["SINTERSTORE", "d", "a", "b"], Yes),
            (&["SDIFFSTORE", "d", "x", "d"], No),
            (&["ZUNIONSTORE", "d", "2", "a", "b"], Yes),
            (&["ZUNIONSTORE", "d", "2", "d", "b"], No),
            (&["LTRIM", "q", "0", "99"], Yes),
            (&["LTRIM", "q", "0", "-1"], Yes),
            (&["LTRIM", "q", "-100", "-1"], Yes),
            (&["LTRIM", "q", "100", "-1"], No),
            (&["LTRIM", "q", "0", "-2"], No),
            (&["SORT", "l"], Yes),
            (&["SORT", "l", "STORE", "d"], No),
            (&["GETEX", "k", "EX", "10"], Yes),
            (&["GETEX", "k", "EXAT", "10"], No),
            (&["CLUSTER", "SLOTS"], Read),
            (&["cluster", "failover"], No),
            (&["CLUSTER", "RESET"], No),
            (&["CLIENT", "KILL", "ID", "7"], No),
            (&["CLIENT", "SETNAME", "n"], Yes),
            (&["CLIENT", "LIST"], Read),
            (&["SCRIPT", "LOAD", "return 1"], Yes),
            (&["SCRIPT", "KILL"], No),
            (&["FUNCTION", "LOAD", "code"], No),
            (&["FUNCTION", "LOAD", "REPLACE", "code"], Yes),
            (&["FUNCTION", "DELETE", "lib"], No),
            (&["CONFIG", "SET", "maxmemory", "0"], Yes),
            (&["CONFIG", "GET", "maxmemory"], Read),
            (&["LATENCY", "RESET"], No),
            (&["MEMORY", "USAGE", "k"], Read),
            (&["DEL", "k"], No),
            (&["SADD", "s", "m"], No),
            (&["HSET", "h", "f", "v"], No),
            (&["HMSET", "h", "f", "v"], Yes),
            (&["GETSET", "k", "v"], No),
            (&["SETBIT", "k", "1", "1"], No),
            (&["PFADD", "h", "a"], No),
            (&["SWAPDB", "0", "1"], No),
            (&["ZREMRANGEBYRANK", "z", "0", "0"], No),
        ];
        for (args, want) in cases {
            assert_eq!(effect(args), *want, "{args:?}");
        }
    }

    #[test]
    fn the_cluster_splits_and_fans_out_what_the_entries_declare() {
        use ClusterPolicy::{AllMasters, BySlot, SplitBySlot};
        let policy = |args: &[&str]| {
            let cmd = cmd(args);
            cmd.info().cluster_policy(cmd.args())
        };
        let cases: &[(&[&str], ClusterPolicy)] = &[
            (&["MGET", "a", "b"], SplitBySlot(Merge::InKeyOrder)),
            (&["mset", "a", "1"], SplitBySlot(Merge::AllOk)),
            (&["DEL", "a"], SplitBySlot(Merge::Sum)),
            (&["UNLINK", "a"], SplitBySlot(Merge::Sum)),
            (&["EXISTS", "a"], SplitBySlot(Merge::Sum)),
            (&["TOUCH", "a"], SplitBySlot(Merge::Sum)),
            (&["MSETNX", "a", "1"], BySlot),
            (&["SUNIONSTORE", "d", "a"], BySlot),
            (&["DBSIZE"], AllMasters(Combine::Sum)),
            (&["KEYS", "*"], AllMasters(Combine::Concat)),
            (&["FLUSHALL"], AllMasters(Combine::Same)),
            (&["FLUSHDB", "ASYNC"], AllMasters(Combine::Same)),
            (&["WAIT", "1", "0"], AllMasters(Combine::Fewest)),
            (&["WAITAOF", "1", "0", "0"], AllMasters(Combine::Fewest)),
            (&["SCRIPT", "load", "return 1"], AllMasters(Combine::Same)),
            (&["SCRIPT", "FLUSH"], AllMasters(Combine::Same)),
            (&["SCRIPT", "EXISTS", "sha"], BySlot),
            (&["SCRIPT", "KILL"], BySlot),
            (&["SCRIPT"], BySlot),
            (&["FUNCTION", "LOAD", "code"], AllMasters(Combine::Same)),
            (&["FUNCTION", "flush"], AllMasters(Combine::Same)),
            (&["FUNCTION", "DELETE", "lib"], AllMasters(Combine::Same)),
            (&["FUNCTION", "LIST"], BySlot),
            (&["FUNCTION", "RESTORE", "x"], BySlot),
            (&["CONFIG", "SET", "a", "b"], BySlot),
            (&["PING"], BySlot),
            (&["GET", "a"], BySlot),
            (&["NOSUCHCOMMAND"], BySlot),
        ];
        for (args, want) in cases {
            assert_eq!(policy(args), *want, "{args:?}");
        }
    }

    #[test]
    fn the_table_lists_every_name_it_knows_once() {
        let mut seen = std::collections::HashSet::new();
        for name in NAMES {
            assert!(
                seen.insert(*name),
                "{} twice",
                String::from_utf8_lossy(name)
            );
            assert!(
                lookup_upper(name).is_some(),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        assert!(NAMES.len() > 200, "{}", NAMES.len());
    }

    #[test]
    fn absurd_blocking_timeouts_saturate_instead_of_panicking() {
        assert_eq!(block(&["BLPOP", "k", "1e20"]), Blocking::For(Duration::MAX));
        assert_eq!(block(&["BLPOP", "k", "inf"]), Blocking::No);
        assert_eq!(block(&["BLPOP", "k", "-1"]), Blocking::No);
        assert_eq!(
            block(&["WAIT", "1", "18446744073709551615"]),
            Blocking::For(Duration::from_millis(u64::MAX))
        );
    }

    fn block(args: &[&str]) -> Blocking {
        let info = lookup(args[0].as_bytes());
        info.blocking(|i| args.get(i).map(|s| s.as_bytes()), args.len())
    }

    #[test]
    fn classifies_common_commands_case_insensitively() {
        assert_eq!(effect(&["get", "k"]), Effect::ReadOnly);
        assert_eq!(effect(&["Set", "k", "v"]), Effect::RetrySafe);
        assert_eq!(effect(&["INCR", "k"]), Effect::NotRetrySafe);
        assert_eq!(effect(&["LPUSH", "k", "v"]), Effect::NotRetrySafe);
        assert_eq!(effect(&["XADD", "s", "*", "f", "v"]), Effect::NotRetrySafe);
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
