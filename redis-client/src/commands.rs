//! Typed commands, written once: each becomes a method of [`Commands`] (implemented by
//! [`Client`](crate::Client) and [`Transaction`](crate::Transaction)) and of
//! [`Pipeline`].
//!
//! A command whose reply shape is fixed returns its type (`incr` an `i64`, `del` a `u64`,
//! `expire` a `bool`). A command that returns stored data is generic over the type you ask for
//! (`get::<Option<String>>`, `hgetall::<HashMap<String, String>>`), converted by [`FromValue`].

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use redis_conn::{Cmd, Value};

use crate::options::{
    BlockSeconds, ExpireCondition, Expiry, SetOptions, Side, StreamAddOptions, StreamReadOptions,
    ZAddOptions,
};
use crate::{FromValue, Pipeline, Result, ToArgs, TypeError};

pub(crate) mod sealed {
    /// Only this crate's types run commands.
    pub trait Sealed {}
}

/// A command from its name and arguments.
fn cmd(name: &str) -> Cmd {
    Cmd::new(name)
}

/// Appends one value's arguments: `cmd("SET").with(key).with(value)`.
trait WithArgs {
    fn with(self, value: impl ToArgs) -> Self;
}

impl WithArgs for Cmd {
    fn with(mut self, value: impl ToArgs) -> Cmd {
        value.push_to(&mut self);
        self
    }
}

/// `numkeys key... arg...` (EVAL, EVALSHA, FCALL).
pub(crate) fn with_keys(mut cmd: Cmd, keys: impl ToArgs, args: impl ToArgs) -> Cmd {
    let mut scratch = Cmd::new("");
    keys.push_to(&mut scratch);
    cmd.push_int((scratch.len() - 1) as i64);
    for key in scratch.args().skip(1) {
        cmd.push_arg(key);
    }
    args.push_to(&mut cmd);
    cmd
}

/// `STREAMS key... id...` after the read options.
fn streams(options: &StreamReadOptions, keys: impl ToArgs, ids: impl ToArgs) -> Cmd {
    options.command().with(keys).with(ids)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

macro_rules! commands {
    (@munch [$($t:tt)*] [$($p:tt)*]
        $(#[$m:meta])* fn $name:ident($($a:ident: $ty:ty),* $(,)?) -> R { $($build:tt)* }
        $($rest:tt)*
    ) => {
        commands!(@munch
            [$($t)*
                $(#[$m])*
                fn $name<R: FromValue>(
                    &self, $($a: $ty),*
                ) -> impl Future<Output = Result<R>> + Send {
                    let command: Cmd = { $($build)* };
                    // A combinator, not an async block: awaiting a captured future would store
                    // it twice, and building it inside would store the command twice.
                    self.query_cmd(command).map(|r| r.and_then(R::from_value))
                }
            ]
            [$($p)*
                $(#[$m])*
                pub fn $name(&mut self, $($a: $ty),*) -> &mut Self {
                    commands!(@queue self { $($build)* })
                }
            ]
            $($rest)*
        );
    };
    (@munch [$($t:tt)*] [$($p:tt)*]
        $(#[$m:meta])* fn $name:ident($($a:ident: $ty:ty),* $(,)?) -> $ret:ty { $($build:tt)* }
        $($rest:tt)*
    ) => {
        commands!(@munch
            [$($t)*
                $(#[$m])*
                fn $name(&self, $($a: $ty),*) -> impl Future<Output = Result<$ret>> + Send {
                    let command: Cmd = { $($build)* };
                    self.query_cmd(command).map(|r| r.and_then(<$ret as FromValue>::from_value))
                }
            ]
            [$($p)*
                $(#[$m])*
                pub fn $name(&mut self, $($a: $ty),*) -> &mut Self {
                    commands!(@queue self { $($build)* })
                }
            ]
            $($rest)*
        );
    };
    // A pipeline method's body. A command that is its name and its arguments in order (most of
    // them) is encoded straight into the batch, with no `Cmd` of its own; any other is built as
    // a `Cmd`, which the pipeline copies.
    (@queue $pipeline:tt { cmd($cname:literal) $(.with($arg:expr))* }) => {{
        // Unused by the commands without arguments.
        let _batch = $pipeline.start_command($cname);
        $(ToArgs::push_to(&$arg, _batch);)*
        $pipeline
    }};
    (@queue $pipeline:tt { $($build:tt)* }) => {{
        let command: Cmd = { $($build)* };
        $pipeline.add(command)
    }};
    (@munch [$($t:tt)*] [$($p:tt)*]) => {
        /// The typed commands. Implemented by [`Client`](crate::Client) (any mode) and
        /// [`Transaction`](crate::Transaction); [`Pipeline`](crate::Pipeline) has the same
        /// methods, which queue the command instead.
        ///
        /// ```no_run
        /// # async fn demo(client: redis_client::Client) -> redis_client::Result<()> {
        /// use std::collections::HashMap;
        /// use redis_client::Commands;
        ///
        /// client.set("user:1:name", "Ada").await?;
        /// let name: Option<String> = client.get("user:1:name").await?;
        /// let visits = client.incr("user:1:visits").await?;
        /// client.hset_multiple("user:1", &[("lang", "Rust"), ("city", "London")]).await?;
        /// let user: HashMap<String, String> = client.hgetall("user:1").await?;
        /// # let _ = (name, visits, user);
        /// # Ok(()) }
        /// ```
        pub trait Commands: sealed::Sealed + Sync {
            /// Sends one command and returns its reply (an error reply is
            /// [`Error::Server`](crate::Error::Server)).
            fn query_cmd(&self, cmd: Cmd) -> impl Future<Output = Result<Value>> + Send;

            $($t)*
        }

        /// The typed commands, queued (see [`Commands`] for each one's meaning).
        impl Pipeline {
            $($p)*
        }
    };
    // The entry: last, so that the `@munch` steps never match it.
    ($($body:tt)*) => {
        commands!(@munch [] [] $($body)*);
    };
}

commands! {
    // Strings.

    /// `GET key`: the value, or nil.
    fn get(key: impl ToArgs) -> R { cmd("GET").with(key) }
    /// `SET key value`.
    fn set(key: impl ToArgs, value: impl ToArgs) -> () { cmd("SET").with(key).with(value) }
    /// `SET key value PX ms`: with a time to live.
    fn set_ex(key: impl ToArgs, value: impl ToArgs, ttl: Duration) -> () {
        cmd("SET").with(key).with(value).with(Expiry::after(ttl))
    }
    /// `SET key value NX`: true when it was set (the key did not exist).
    fn set_nx(key: impl ToArgs, value: impl ToArgs) -> bool { cmd("SET").with(key).with(value).with("NX") }
    /// `SET key value [NX|XX] [EX|PX|EXAT|PXAT|KEEPTTL] [GET]`: `OK` or nil, or the old value
    /// with `GET`.
    fn set_options(key: impl ToArgs, value: impl ToArgs, options: SetOptions) -> R {
        cmd("SET").with(key).with(value).with(options)
    }
    /// `GETDEL key`: the value, deleting the key.
    fn getdel(key: impl ToArgs) -> R { cmd("GETDEL").with(key) }
    /// `GETEX key EX|PX|EXAT|PXAT|PERSIST`: the value, changing its expiry.
    fn getex(key: impl ToArgs, expiry: Expiry) -> R { cmd("GETEX").with(key).with(expiry) }
    /// `GETRANGE key start end`.
    fn getrange(key: impl ToArgs, start: i64, end: i64) -> R {
        cmd("GETRANGE").with(key).with(start).with(end)
    }
    /// `SETRANGE key offset value`: the new length.
    fn setrange(key: impl ToArgs, offset: u64, value: impl ToArgs) -> u64 {
        cmd("SETRANGE").with(key).with(offset).with(value)
    }
    /// `MGET key...`: values in the keys' order (split by slot in a cluster).
    fn mget(keys: impl ToArgs) -> R { cmd("MGET").with(keys) }
    /// `MSET key value ...` from pairs (split by slot in a cluster: not atomic across slots).
    fn mset(pairs: impl ToArgs) -> () { cmd("MSET").with(pairs) }
    /// `MSETNX key value ...`: true when all were set (atomic: one slot in a cluster).
    fn msetnx(pairs: impl ToArgs) -> bool { cmd("MSETNX").with(pairs) }
    /// `INCR key`.
    fn incr(key: impl ToArgs) -> i64 { cmd("INCR").with(key) }
    /// `INCRBY key by`.
    fn incr_by(key: impl ToArgs, by: i64) -> i64 { cmd("INCRBY").with(key).with(by) }
    /// `DECR key`.
    fn decr(key: impl ToArgs) -> i64 { cmd("DECR").with(key) }
    /// `DECRBY key by`.
    fn decr_by(key: impl ToArgs, by: i64) -> i64 { cmd("DECRBY").with(key).with(by) }
    /// `INCRBYFLOAT key by`.
    fn incr_by_float(key: impl ToArgs, by: f64) -> f64 { cmd("INCRBYFLOAT").with(key).with(by) }
    /// `APPEND key value`: the new length.
    fn append(key: impl ToArgs, value: impl ToArgs) -> u64 { cmd("APPEND").with(key).with(value) }
    /// `STRLEN key`.
    fn strlen(key: impl ToArgs) -> u64 { cmd("STRLEN").with(key) }

    // Keys and expiry.

    /// `DEL key...`: how many existed (summed over slots in a cluster).
    fn del(keys: impl ToArgs) -> u64 { cmd("DEL").with(keys) }
    /// `UNLINK key...`: like DEL, freeing memory in the background.
    fn unlink(keys: impl ToArgs) -> u64 { cmd("UNLINK").with(keys) }
    /// `EXISTS key...`: how many exist.
    fn exists(keys: impl ToArgs) -> u64 { cmd("EXISTS").with(keys) }
    /// `TOUCH key...`: how many exist.
    fn touch(keys: impl ToArgs) -> u64 { cmd("TOUCH").with(keys) }
    /// `EXPIRE key seconds`: true when the key exists.
    fn expire(key: impl ToArgs, seconds: i64) -> bool { cmd("EXPIRE").with(key).with(seconds) }
    /// `EXPIRE key seconds NX|XX|GT|LT`.
    fn expire_if(key: impl ToArgs, seconds: i64, condition: ExpireCondition) -> bool {
        cmd("EXPIRE").with(key).with(seconds).with(condition)
    }
    /// `PEXPIRE key ms`.
    fn pexpire(key: impl ToArgs, ms: i64) -> bool { cmd("PEXPIRE").with(key).with(ms) }
    /// `EXPIREAT key unix-seconds`.
    fn expire_at(key: impl ToArgs, unix_seconds: i64) -> bool {
        cmd("EXPIREAT").with(key).with(unix_seconds)
    }
    /// `PEXPIREAT key unix-ms`.
    fn pexpire_at(key: impl ToArgs, unix_ms: i64) -> bool { cmd("PEXPIREAT").with(key).with(unix_ms) }
    /// `PERSIST key`: true when an expiry was removed.
    fn persist(key: impl ToArgs) -> bool { cmd("PERSIST").with(key) }
    /// `TTL key`: seconds left; -1 without expiry, -2 without key.
    fn ttl(key: impl ToArgs) -> i64 { cmd("TTL").with(key) }
    /// `PTTL key`: milliseconds left; -1 without expiry, -2 without key.
    fn pttl(key: impl ToArgs) -> i64 { cmd("PTTL").with(key) }
    /// `EXPIRETIME key`: the expiry as unix seconds; -1, -2 as TTL.
    fn expire_time(key: impl ToArgs) -> i64 { cmd("EXPIRETIME").with(key) }
    /// `TYPE key`: `string`, `list`, `set`, `zset`, `hash`, `stream`, or `none`.
    fn key_type(key: impl ToArgs) -> String { cmd("TYPE").with(key) }
    /// `RENAME key new_key` (one slot in a cluster).
    fn rename(key: impl ToArgs, new_key: impl ToArgs) -> () { cmd("RENAME").with(key).with(new_key) }
    /// `RENAMENX key new_key`: true when renamed.
    fn rename_nx(key: impl ToArgs, new_key: impl ToArgs) -> bool {
        cmd("RENAMENX").with(key).with(new_key)
    }
    /// `KEYS pattern` (every master in a cluster). Prefer `scan` on a busy server.
    fn keys(pattern: impl ToArgs) -> R { cmd("KEYS").with(pattern) }
    /// `DBSIZE` (summed over masters in a cluster).
    fn dbsize() -> u64 { cmd("DBSIZE") }
    /// `OBJECT ENCODING key`.
    fn object_encoding(key: impl ToArgs) -> Option<String> {
        cmd("OBJECT").with("ENCODING").with(key)
    }

    // Hashes.

    /// `HGET key field`.
    fn hget(key: impl ToArgs, field: impl ToArgs) -> R { cmd("HGET").with(key).with(field) }
    /// `HSET key field value`: how many fields were added.
    fn hset(key: impl ToArgs, field: impl ToArgs, value: impl ToArgs) -> u64 {
        cmd("HSET").with(key).with(field).with(value)
    }
    /// `HSET key field value ...` from pairs.
    fn hset_multiple(key: impl ToArgs, pairs: impl ToArgs) -> u64 { cmd("HSET").with(key).with(pairs) }
    /// `HSETNX key field value`: true when set.
    fn hsetnx(key: impl ToArgs, field: impl ToArgs, value: impl ToArgs) -> bool {
        cmd("HSETNX").with(key).with(field).with(value)
    }
    /// `HMGET key field...`.
    fn hmget(key: impl ToArgs, fields: impl ToArgs) -> R { cmd("HMGET").with(key).with(fields) }
    /// `HGETALL key`: into a map, or a list of pairs.
    fn hgetall(key: impl ToArgs) -> R { cmd("HGETALL").with(key) }
    /// `HDEL key field...`: how many were removed.
    fn hdel(key: impl ToArgs, fields: impl ToArgs) -> u64 { cmd("HDEL").with(key).with(fields) }
    /// `HEXISTS key field`.
    fn hexists(key: impl ToArgs, field: impl ToArgs) -> bool { cmd("HEXISTS").with(key).with(field) }
    /// `HLEN key`.
    fn hlen(key: impl ToArgs) -> u64 { cmd("HLEN").with(key) }
    /// `HKEYS key`.
    fn hkeys(key: impl ToArgs) -> R { cmd("HKEYS").with(key) }
    /// `HVALS key`.
    fn hvals(key: impl ToArgs) -> R { cmd("HVALS").with(key) }
    /// `HINCRBY key field by`.
    fn hincr_by(key: impl ToArgs, field: impl ToArgs, by: i64) -> i64 {
        cmd("HINCRBY").with(key).with(field).with(by)
    }
    /// `HINCRBYFLOAT key field by`.
    fn hincr_by_float(key: impl ToArgs, field: impl ToArgs, by: f64) -> f64 {
        cmd("HINCRBYFLOAT").with(key).with(field).with(by)
    }
    /// `HSTRLEN key field`.
    fn hstrlen(key: impl ToArgs, field: impl ToArgs) -> u64 { cmd("HSTRLEN").with(key).with(field) }

    // Lists.

    /// `LPUSH key value...`: the new length.
    fn lpush(key: impl ToArgs, values: impl ToArgs) -> u64 { cmd("LPUSH").with(key).with(values) }
    /// `RPUSH key value...`: the new length.
    fn rpush(key: impl ToArgs, values: impl ToArgs) -> u64 { cmd("RPUSH").with(key).with(values) }
    /// `LPUSHX key value...`: push only onto an existing list.
    fn lpushx(key: impl ToArgs, values: impl ToArgs) -> u64 { cmd("LPUSHX").with(key).with(values) }
    /// `RPUSHX key value...`.
    fn rpushx(key: impl ToArgs, values: impl ToArgs) -> u64 { cmd("RPUSHX").with(key).with(values) }
    /// `LPOP key`: the head, or nil.
    fn lpop(key: impl ToArgs) -> R { cmd("LPOP").with(key) }
    /// `RPOP key`: the tail, or nil.
    fn rpop(key: impl ToArgs) -> R { cmd("RPOP").with(key) }
    /// `LPOP key count`.
    fn lpop_count(key: impl ToArgs, count: u64) -> R { cmd("LPOP").with(key).with(count) }
    /// `RPOP key count`.
    fn rpop_count(key: impl ToArgs, count: u64) -> R { cmd("RPOP").with(key).with(count) }
    /// `LRANGE key start stop` (inclusive; -1 is the last).
    fn lrange(key: impl ToArgs, start: i64, stop: i64) -> R {
        cmd("LRANGE").with(key).with(start).with(stop)
    }
    /// `LLEN key`.
    fn llen(key: impl ToArgs) -> u64 { cmd("LLEN").with(key) }
    /// `LINDEX key index`.
    fn lindex(key: impl ToArgs, index: i64) -> R { cmd("LINDEX").with(key).with(index) }
    /// `LSET key index value`.
    fn lset(key: impl ToArgs, index: i64, value: impl ToArgs) -> () {
        cmd("LSET").with(key).with(index).with(value)
    }
    /// `LREM key count value`: how many were removed.
    fn lrem(key: impl ToArgs, count: i64, value: impl ToArgs) -> u64 {
        cmd("LREM").with(key).with(count).with(value)
    }
    /// `LTRIM key start stop`.
    fn ltrim(key: impl ToArgs, start: i64, stop: i64) -> () {
        cmd("LTRIM").with(key).with(start).with(stop)
    }
    /// `LINSERT key BEFORE pivot value`: the new length, -1 without the pivot.
    fn linsert_before(key: impl ToArgs, pivot: impl ToArgs, value: impl ToArgs) -> i64 {
        cmd("LINSERT").with(key).with("BEFORE").with(pivot).with(value)
    }
    /// `LINSERT key AFTER pivot value`.
    fn linsert_after(key: impl ToArgs, pivot: impl ToArgs, value: impl ToArgs) -> i64 {
        cmd("LINSERT").with(key).with("AFTER").with(pivot).with(value)
    }
    /// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`: the element moved, or nil.
    fn lmove(source: impl ToArgs, destination: impl ToArgs, from: Side, to: Side) -> R {
        cmd("LMOVE").with(source).with(destination).with(from).with(to)
    }
    /// `BLPOP key... timeout`: `(key, element)`, or nil after `timeout` (`ZERO`: forever).
    /// Waits on an exclusive connection: other callers are never held up.
    fn blpop(keys: impl ToArgs, timeout: Duration) -> R {
        cmd("BLPOP").with(keys).with(BlockSeconds(timeout))
    }
    /// `BRPOP key... timeout`.
    fn brpop(keys: impl ToArgs, timeout: Duration) -> R {
        cmd("BRPOP").with(keys).with(BlockSeconds(timeout))
    }
    /// `BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout`.
    fn blmove(
        source: impl ToArgs,
        destination: impl ToArgs,
        from: Side,
        to: Side,
        timeout: Duration,
    ) -> R {
        cmd("BLMOVE").with(source).with(destination).with(from).with(to).with(BlockSeconds(timeout))
    }

    // Sets.

    /// `SADD key member...`: how many were added.
    fn sadd(key: impl ToArgs, members: impl ToArgs) -> u64 { cmd("SADD").with(key).with(members) }
    /// `SREM key member...`: how many were removed.
    fn srem(key: impl ToArgs, members: impl ToArgs) -> u64 { cmd("SREM").with(key).with(members) }
    /// `SMEMBERS key`.
    fn smembers(key: impl ToArgs) -> R { cmd("SMEMBERS").with(key) }
    /// `SISMEMBER key member`.
    fn sismember(key: impl ToArgs, member: impl ToArgs) -> bool {
        cmd("SISMEMBER").with(key).with(member)
    }
    /// `SMISMEMBER key member...`: one answer per member.
    fn smismember(key: impl ToArgs, members: impl ToArgs) -> Vec<bool> {
        cmd("SMISMEMBER").with(key).with(members)
    }
    /// `SCARD key`.
    fn scard(key: impl ToArgs) -> u64 { cmd("SCARD").with(key) }
    /// `SPOP key`: a random member, removed.
    fn spop(key: impl ToArgs) -> R { cmd("SPOP").with(key) }
    /// `SRANDMEMBER key`.
    fn srandmember(key: impl ToArgs) -> R { cmd("SRANDMEMBER").with(key) }
    /// `SINTER key...` (one slot in a cluster).
    fn sinter(keys: impl ToArgs) -> R { cmd("SINTER").with(keys) }
    /// `SUNION key...`.
    fn sunion(keys: impl ToArgs) -> R { cmd("SUNION").with(keys) }
    /// `SDIFF key...`.
    fn sdiff(keys: impl ToArgs) -> R { cmd("SDIFF").with(keys) }
    /// `SINTERSTORE destination key...`: the result's size.
    fn sinterstore(destination: impl ToArgs, keys: impl ToArgs) -> u64 {
        cmd("SINTERSTORE").with(destination).with(keys)
    }
    /// `SUNIONSTORE destination key...`.
    fn sunionstore(destination: impl ToArgs, keys: impl ToArgs) -> u64 {
        cmd("SUNIONSTORE").with(destination).with(keys)
    }
    /// `SDIFFSTORE destination key...`.
    fn sdiffstore(destination: impl ToArgs, keys: impl ToArgs) -> u64 {
        cmd("SDIFFSTORE").with(destination).with(keys)
    }
    /// `SMOVE source destination member`: true when moved.
    fn smove(source: impl ToArgs, destination: impl ToArgs, member: impl ToArgs) -> bool {
        cmd("SMOVE").with(source).with(destination).with(member)
    }

    // Sorted sets.

    /// `ZADD key score member`: how many were added.
    fn zadd(key: impl ToArgs, member: impl ToArgs, score: f64) -> u64 {
        cmd("ZADD").with(key).with(score).with(member)
    }
    /// `ZADD key score member ...` from `(score, member)` pairs.
    fn zadd_multiple(key: impl ToArgs, items: impl ToArgs) -> u64 { cmd("ZADD").with(key).with(items) }
    /// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ...`: a count, or the new score with
    /// `INCR` (nil when a condition stopped it).
    fn zadd_options(key: impl ToArgs, options: ZAddOptions, items: impl ToArgs) -> R {
        cmd("ZADD").with(key).with(options).with(items)
    }
    /// `ZREM key member...`.
    fn zrem(key: impl ToArgs, members: impl ToArgs) -> u64 { cmd("ZREM").with(key).with(members) }
    /// `ZSCORE key member`.
    fn zscore(key: impl ToArgs, member: impl ToArgs) -> Option<f64> {
        cmd("ZSCORE").with(key).with(member)
    }
    /// `ZMSCORE key member...`.
    fn zmscore(key: impl ToArgs, members: impl ToArgs) -> Vec<Option<f64>> {
        cmd("ZMSCORE").with(key).with(members)
    }
    /// `ZINCRBY key by member`: the new score.
    fn zincr_by(key: impl ToArgs, member: impl ToArgs, by: f64) -> f64 {
        cmd("ZINCRBY").with(key).with(by).with(member)
    }
    /// `ZCARD key`.
    fn zcard(key: impl ToArgs) -> u64 { cmd("ZCARD").with(key) }
    /// `ZCOUNT key min max` (`"-inf"`, `"(1.5"` are valid bounds).
    fn zcount(key: impl ToArgs, min: impl ToArgs, max: impl ToArgs) -> u64 {
        cmd("ZCOUNT").with(key).with(min).with(max)
    }
    /// `ZRANK key member`.
    fn zrank(key: impl ToArgs, member: impl ToArgs) -> Option<u64> {
        cmd("ZRANK").with(key).with(member)
    }
    /// `ZREVRANK key member`.
    fn zrevrank(key: impl ToArgs, member: impl ToArgs) -> Option<u64> {
        cmd("ZREVRANK").with(key).with(member)
    }
    /// `ZRANGE key start stop`.
    fn zrange(key: impl ToArgs, start: i64, stop: i64) -> R {
        cmd("ZRANGE").with(key).with(start).with(stop)
    }
    /// `ZRANGE key start stop WITHSCORES`: `(member, score)` pairs.
    fn zrange_withscores(key: impl ToArgs, start: i64, stop: i64) -> R {
        cmd("ZRANGE").with(key).with(start).with(stop).with("WITHSCORES")
    }
    /// `ZRANGE key start stop REV`.
    fn zrevrange(key: impl ToArgs, start: i64, stop: i64) -> R {
        cmd("ZRANGE").with(key).with(start).with(stop).with("REV")
    }
    /// `ZRANGE key min max BYSCORE`.
    fn zrangebyscore(key: impl ToArgs, min: impl ToArgs, max: impl ToArgs) -> R {
        cmd("ZRANGE").with(key).with(min).with(max).with("BYSCORE")
    }
    /// `ZRANGE key min max BYSCORE WITHSCORES`.
    fn zrangebyscore_withscores(key: impl ToArgs, min: impl ToArgs, max: impl ToArgs) -> R {
        cmd("ZRANGE").with(key).with(min).with(max).with("BYSCORE").with("WITHSCORES")
    }
    /// `ZPOPMIN key count`: `(member, score)` pairs.
    fn zpopmin(key: impl ToArgs, count: u64) -> R { cmd("ZPOPMIN").with(key).with(count) }
    /// `ZPOPMAX key count`.
    fn zpopmax(key: impl ToArgs, count: u64) -> R { cmd("ZPOPMAX").with(key).with(count) }
    /// `BZPOPMIN key... timeout`: `(key, member, score)`, or nil.
    fn bzpopmin(keys: impl ToArgs, timeout: Duration) -> R {
        cmd("BZPOPMIN").with(keys).with(BlockSeconds(timeout))
    }
    /// `BZPOPMAX key... timeout`.
    fn bzpopmax(keys: impl ToArgs, timeout: Duration) -> R {
        cmd("BZPOPMAX").with(keys).with(BlockSeconds(timeout))
    }
    /// `ZREMRANGEBYSCORE key min max`.
    fn zremrangebyscore(key: impl ToArgs, min: impl ToArgs, max: impl ToArgs) -> u64 {
        cmd("ZREMRANGEBYSCORE").with(key).with(min).with(max)
    }
    /// `ZREMRANGEBYRANK key start stop`.
    fn zremrangebyrank(key: impl ToArgs, start: i64, stop: i64) -> u64 {
        cmd("ZREMRANGEBYRANK").with(key).with(start).with(stop)
    }

    // Streams.

    /// `XADD key id field value ...`: the entry's id (`"*"` lets the server choose it).
    fn xadd(key: impl ToArgs, id: impl ToArgs, fields: impl ToArgs) -> R {
        cmd("XADD").with(key).with(id).with(fields)
    }
    /// `XADD key [NOMKSTREAM] [MAXLEN|MINID ...] id field value ...`.
    fn xadd_options(
        key: impl ToArgs,
        options: StreamAddOptions,
        id: impl ToArgs,
        fields: impl ToArgs,
    ) -> R {
        cmd("XADD").with(key).with(options).with(id).with(fields)
    }
    /// `XLEN key`.
    fn xlen(key: impl ToArgs) -> u64 { cmd("XLEN").with(key) }
    /// `XRANGE key start end` (`"-"`, `"+"`): into `Vec<StreamEntry>`.
    fn xrange(key: impl ToArgs, start: impl ToArgs, end: impl ToArgs) -> R {
        cmd("XRANGE").with(key).with(start).with(end)
    }
    /// `XRANGE key start end COUNT count`.
    fn xrange_count(key: impl ToArgs, start: impl ToArgs, end: impl ToArgs, count: u64) -> R {
        cmd("XRANGE").with(key).with(start).with(end).with("COUNT").with(count)
    }
    /// `XREVRANGE key end start`.
    fn xrevrange(key: impl ToArgs, end: impl ToArgs, start: impl ToArgs) -> R {
        cmd("XREVRANGE").with(key).with(end).with(start)
    }
    /// `XDEL key id...`.
    fn xdel(key: impl ToArgs, ids: impl ToArgs) -> u64 { cmd("XDEL").with(key).with(ids) }
    /// `XTRIM key MAXLEN n`: how many entries were removed.
    fn xtrim_maxlen(key: impl ToArgs, max_len: u64) -> u64 {
        cmd("XTRIM").with(key).with("MAXLEN").with(max_len)
    }
    /// `XREAD STREAMS key... id...`: into `Vec<(String, Vec<StreamEntry>)>` (empty when nothing
    /// is new).
    fn xread(keys: impl ToArgs, ids: impl ToArgs) -> R {
        streams(&StreamReadOptions::default(), keys, ids)
    }
    /// `XREAD`/`XREADGROUP` with options (`COUNT`, `BLOCK`, `GROUP`, `NOACK`). With `BLOCK` it
    /// waits on an exclusive connection.
    fn xread_options(options: &StreamReadOptions, keys: impl ToArgs, ids: impl ToArgs) -> R {
        streams(options, keys, ids)
    }
    /// `XREADGROUP GROUP group consumer STREAMS key... id...` (`">"`: new entries).
    fn xreadgroup(
        group: impl ToArgs,
        consumer: impl ToArgs,
        keys: impl ToArgs,
        ids: impl ToArgs,
    ) -> R {
        cmd("XREADGROUP").with("GROUP").with(group).with(consumer).with("STREAMS").with(keys).with(ids)
    }
    /// `XGROUP CREATE key group id`.
    fn xgroup_create(key: impl ToArgs, group: impl ToArgs, id: impl ToArgs) -> () {
        cmd("XGROUP").with("CREATE").with(key).with(group).with(id)
    }
    /// `XGROUP CREATE key group id MKSTREAM`: creating the stream if needed.
    fn xgroup_create_mkstream(key: impl ToArgs, group: impl ToArgs, id: impl ToArgs) -> () {
        cmd("XGROUP").with("CREATE").with(key).with(group).with(id).with("MKSTREAM")
    }
    /// `XGROUP DESTROY key group`.
    fn xgroup_destroy(key: impl ToArgs, group: impl ToArgs) -> bool {
        cmd("XGROUP").with("DESTROY").with(key).with(group)
    }
    /// `XGROUP DELCONSUMER key group consumer`: its pending entries.
    fn xgroup_delconsumer(key: impl ToArgs, group: impl ToArgs, consumer: impl ToArgs) -> u64 {
        cmd("XGROUP").with("DELCONSUMER").with(key).with(group).with(consumer)
    }
    /// `XACK key group id...`: how many were acknowledged.
    fn xack(key: impl ToArgs, group: impl ToArgs, ids: impl ToArgs) -> u64 {
        cmd("XACK").with(key).with(group).with(ids)
    }
    /// `XPENDING key group`: the summary.
    fn xpending(key: impl ToArgs, group: impl ToArgs) -> R { cmd("XPENDING").with(key).with(group) }
    /// `XCLAIM key group consumer min-idle-ms id...`.
    fn xclaim(
        key: impl ToArgs,
        group: impl ToArgs,
        consumer: impl ToArgs,
        min_idle: Duration,
        ids: impl ToArgs,
    ) -> R {
        cmd("XCLAIM").with(key).with(group).with(consumer).with(millis(min_idle)).with(ids)
    }

    // Scripting.

    /// `EVAL script numkeys key... arg...` (prefer [`Script`](crate::Script), which sends the
    /// SHA-1 only).
    fn eval(script: impl ToArgs, keys: impl ToArgs, args: impl ToArgs) -> R {
        with_keys(cmd("EVAL").with(script), keys, args)
    }
    /// `EVALSHA sha1 numkeys key... arg...`.
    fn evalsha(sha1: impl ToArgs, keys: impl ToArgs, args: impl ToArgs) -> R {
        with_keys(cmd("EVALSHA").with(sha1), keys, args)
    }
    /// `SCRIPT LOAD script`: its SHA-1 (every master in a cluster).
    fn script_load(script: impl ToArgs) -> String { cmd("SCRIPT").with("LOAD").with(script) }
    /// `SCRIPT EXISTS sha1...`.
    fn script_exists(sha1s: impl ToArgs) -> Vec<bool> { cmd("SCRIPT").with("EXISTS").with(sha1s) }
    /// `SCRIPT FLUSH`.
    fn script_flush() -> () { cmd("SCRIPT").with("FLUSH") }
    /// `FCALL function numkeys key... arg...`.
    fn fcall(function: impl ToArgs, keys: impl ToArgs, args: impl ToArgs) -> R {
        with_keys(cmd("FCALL").with(function), keys, args)
    }
    /// `FCALL_RO function numkeys key... arg...`.
    fn fcall_ro(function: impl ToArgs, keys: impl ToArgs, args: impl ToArgs) -> R {
        with_keys(cmd("FCALL_RO").with(function), keys, args)
    }

    // Pub/sub (publishing; subscribe with `Client::subscriber`).

    /// `PUBLISH channel message`: how many subscribers got it (on the node that ran it). In a
    /// cluster it goes to the master of the channel's slot (as if the channel were a key), so
    /// the messages one task publishes to one channel take one path through the cluster bus
    /// and every subscriber, on any node, sees them in the order they were published.
    fn publish(channel: impl ToArgs, message: impl ToArgs) -> u64 {
        cmd("PUBLISH").with(channel).with(message)
    }
    /// `SPUBLISH channel message`: to a shard channel (routed to its slot in a cluster).
    fn spublish(channel: impl ToArgs, message: impl ToArgs) -> u64 {
        cmd("SPUBLISH").with(channel).with(message)
    }

    // HyperLogLog.

    /// `PFADD key element...`: true when the estimate changed.
    fn pfadd(key: impl ToArgs, elements: impl ToArgs) -> bool { cmd("PFADD").with(key).with(elements) }
    /// `PFCOUNT key...`.
    fn pfcount(keys: impl ToArgs) -> u64 { cmd("PFCOUNT").with(keys) }
    /// `PFMERGE destination source...`.
    fn pfmerge(destination: impl ToArgs, sources: impl ToArgs) -> () {
        cmd("PFMERGE").with(destination).with(sources)
    }

    // Server.

    /// `PING`: `PONG`.
    fn ping() -> String { cmd("PING") }
    /// `ECHO message`.
    fn echo(message: impl ToArgs) -> R { cmd("ECHO").with(message) }
    /// `INFO`.
    fn info() -> String { cmd("INFO") }
    /// `INFO section`.
    fn info_section(section: impl ToArgs) -> String { cmd("INFO").with(section) }
    /// `TIME`: `(unix seconds, microseconds)`.
    fn time() -> (u64, u64) { cmd("TIME") }
    /// `CONFIG GET parameter`: into a map.
    fn config_get(parameter: impl ToArgs) -> R { cmd("CONFIG").with("GET").with(parameter) }
    /// `CONFIG SET parameter value`.
    fn config_set(parameter: impl ToArgs, value: impl ToArgs) -> () {
        cmd("CONFIG").with("SET").with(parameter).with(value)
    }
    /// `FLUSHDB` (every master in a cluster).
    fn flushdb() -> () { cmd("FLUSHDB") }
    /// `FLUSHALL` (every master in a cluster).
    fn flushall() -> () { cmd("FLUSHALL") }
    /// `WAIT replicas timeout`: how many replicas acknowledged the writes before it.
    fn wait(replicas: u64, timeout: Duration) -> u64 {
        cmd("WAIT").with(replicas).with(millis(timeout))
    }
}

/// One stream entry: its id and its fields, in order.
///
/// ```
/// use redis_client::{FromValue, StreamEntry, Value};
///
/// let reply = Value::Array(vec![
///     Value::BulkString("1-0".into()),
///     Value::Array(vec![Value::BulkString("temp".into()), Value::BulkString("21".into())]),
/// ]);
/// let entry = StreamEntry::from_value(reply).unwrap();
/// assert_eq!(entry.id, "1-0");
/// assert_eq!(entry.field("temp").map(|v| &v[..]), Some(&b"21"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry's id (`1700000000000-0`).
    pub id: String,
    /// Field names and values.
    pub fields: Vec<(String, Bytes)>,
}

impl StreamEntry {
    /// The first value of the field `name`.
    pub fn field(&self, name: &str) -> Option<&Bytes> {
        self.fields.iter().find(|(f, _)| f == name).map(|(_, v)| v)
    }
}

impl FromValue for StreamEntry {
    fn from_value(value: Value) -> Result<Self> {
        let (id, fields): (String, Option<Vec<(String, Bytes)>>) = FromValue::from_value(value)
            .map_err(|e| match e {
                crate::Error::Type(_) => TypeError::new("a stream entry", "another shape").into(),
                other => other,
            })?;
        Ok(StreamEntry {
            id,
            fields: fields.unwrap_or_default(),
        })
    }
}
