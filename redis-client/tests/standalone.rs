//! The facade against a real standalone server: every typed command family (RESP3 and RESP2
//! give the same Rust values), conversions, pipelines, transactions, scripts, scans, blocking
//! commands beside other traffic, pub/sub through a restart, events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use redis_client::prelude::*;
use redis_client::{
    Bytes, Cmd, ExpireCondition, Expiry, Protocol, Script, ServerError, SetOptions, Side,
    StreamAddOptions, StreamEntry, StreamReadOptions, SubscriberEvent, Value, ZAddOptions,
};
use test_support::RedisServer;

fn config(server: &RedisServer, protocol: Protocol) -> Config {
    Config::from_url(&format!("redis://{}", server.addr()))
        .unwrap()
        .protocol(protocol)
}

async fn client(server: &RedisServer, protocol: Protocol) -> Client {
    Client::connect(config(server, protocol)).await.unwrap()
}

async fn strings_and_keys(c: &Client) {
    c.set("s", "v").await.unwrap();
    assert_eq!(
        c.get::<Option<String>>("s").await.unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(c.get::<Option<String>>("missing").await.unwrap(), None);
    assert_eq!(c.get::<Vec<u8>>("s").await.unwrap(), b"v".to_vec());
    assert_eq!(c.get::<Bytes>("s").await.unwrap(), Bytes::from("v"));
    // SET options: NX refuses an existing key, GET returns the old value, XX needs one.
    let refused: bool = c
        .set_options("s", "w", SetOptions::default().only_if_absent())
        .await
        .unwrap();
    assert!(!refused);
    let old: Option<String> = c
        .set_options(
            "s",
            "w",
            SetOptions::default().get().expiry(Expiry::Seconds(100)),
        )
        .await
        .unwrap();
    assert_eq!(old.as_deref(), Some("v"));
    assert!((90..=100).contains(&c.ttl("s").await.unwrap()));
    let set: bool = c
        .set_options("absent", "x", SetOptions::default().only_if_present())
        .await
        .unwrap();
    assert!(!set);
    assert!(c.set_nx("fresh", 1).await.unwrap());
    assert!(!c.set_nx("fresh", 2).await.unwrap());
    c.set_ex("ex", "v", Duration::from_millis(1500))
        .await
        .unwrap();
    assert!((1..=1500).contains(&c.pttl("ex").await.unwrap()));
    assert_eq!(
        c.getdel::<Option<String>>("ex").await.unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(c.exists("ex").await.unwrap(), 0);
    c.set("gx", "v").await.unwrap();
    let _: String = c.getex("gx", Expiry::Millis(5000)).await.unwrap();
    assert!(c.pttl("gx").await.unwrap() > 0);
    let _: String = c.getex("gx", Expiry::Persist).await.unwrap();
    assert_eq!(c.ttl("gx").await.unwrap(), -1);

    c.mset(&[("a", "1"), ("b", "2")]).await.unwrap();
    let values: Vec<Option<i64>> = c.mget(["a", "b", "nope"]).await.unwrap();
    assert_eq!(values, vec![Some(1), Some(2), None]);
    assert!(!c.msetnx(&[("a", "x"), ("c", "3")]).await.unwrap());
    assert_eq!(c.incr("n").await.unwrap(), 1);
    assert_eq!(c.incr_by("n", 41).await.unwrap(), 42);
    assert_eq!(c.decr("n").await.unwrap(), 41);
    assert_eq!(c.decr_by("n", 40).await.unwrap(), 1);
    assert_eq!(c.incr_by_float("f", 1.5).await.unwrap(), 1.5);
    assert_eq!(c.append("app", "ab").await.unwrap(), 2);
    assert_eq!(c.append("app", "cd").await.unwrap(), 4);
    assert_eq!(c.strlen("app").await.unwrap(), 4);
    assert_eq!(c.getrange::<String>("app", 1, 2).await.unwrap(), "bc");
    assert_eq!(c.setrange("app", 1, "XY").await.unwrap(), 4);
    assert_eq!(c.get::<String>("app").await.unwrap(), "aXYd");
    // A wrong type is the server's error, typed.
    let err = c.incr("app").await.unwrap_err();
    assert_eq!(err.code(), Some("ERR"));
    let err = c.lpush("app", "x").await.unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
    assert_eq!(err.kind(), "server");
    // A reply of the wrong shape is a conversion error naming both types.
    let err = c.get::<i64>("app").await.unwrap_err();
    assert!(matches!(err, Error::Type(_)), "{err:?}");
    assert_eq!(err.kind(), "type");
    assert!(err.to_string().contains("i64"), "{err}");

    // Keys and expiry.
    assert_eq!(c.exists(["a", "b", "zz"]).await.unwrap(), 2);
    assert_eq!(c.touch(["a", "zz"]).await.unwrap(), 1);
    assert!(c.expire("a", 100).await.unwrap());
    assert!(!c
        .expire_if("a", 200, ExpireCondition::NoExpiry)
        .await
        .unwrap());
    assert!(c.expire_if("a", 200, ExpireCondition::Later).await.unwrap());
    assert!(c.expire_time("a").await.unwrap() > 1_700_000_000);
    assert!(c.pexpire("b", 100_000).await.unwrap());
    assert!(c.persist("b").await.unwrap());
    assert_eq!(c.ttl("b").await.unwrap(), -1);
    assert_eq!(c.ttl("zz").await.unwrap(), -2);
    assert!(c.expire_at("b", 4_000_000_000).await.unwrap());
    assert!(c.pexpire_at("b", 4_000_000_000_000).await.unwrap());
    assert_eq!(c.key_type("b").await.unwrap(), "string");
    assert_eq!(c.key_type("zz").await.unwrap(), "none");
    c.rename("b", "b2").await.unwrap();
    assert!(!c.rename_nx("b2", "a").await.unwrap());
    let keys: HashSet<String> = c.keys("b*").await.unwrap();
    assert_eq!(keys, HashSet::from(["b2".to_string()]));
    assert!(c.dbsize().await.unwrap() >= 5);
    assert_eq!(
        c.object_encoding("n").await.unwrap().as_deref(),
        Some("int")
    );
    assert_eq!(c.object_encoding("zz").await.unwrap(), None);
    assert_eq!(c.del(["a", "b2", "zz"]).await.unwrap(), 2);
    assert_eq!(c.unlink("n").await.unwrap(), 1);
}

async fn hashes_lists_sets(c: &Client) {
    assert_eq!(c.hset("h", "name", "Ada").await.unwrap(), 1);
    assert_eq!(
        c.hset_multiple("h", &[("lang", "Rust"), ("year", "1815")])
            .await
            .unwrap(),
        2
    );
    assert!(!c.hsetnx("h", "name", "x").await.unwrap());
    assert_eq!(
        c.hget::<Option<String>>("h", "lang")
            .await
            .unwrap()
            .as_deref(),
        Some("Rust")
    );
    let all: HashMap<String, String> = c.hgetall("h").await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all["year"], "1815");
    let sorted: BTreeMap<String, String> = c.hgetall("h").await.unwrap();
    assert_eq!(sorted.keys().next().map(String::as_str), Some("lang"));
    let pairs: Vec<(String, String)> = c.hgetall("h").await.unwrap();
    assert_eq!(pairs.len(), 3);
    let some: (Option<String>, Option<String>) = c.hmget("h", ["name", "none"]).await.unwrap();
    assert_eq!(some, (Some("Ada".into()), None));
    assert!(c.hexists("h", "name").await.unwrap());
    assert_eq!(c.hlen("h").await.unwrap(), 3);
    assert_eq!(c.hkeys::<HashSet<String>>("h").await.unwrap().len(), 3);
    assert_eq!(c.hvals::<Vec<String>>("h").await.unwrap().len(), 3);
    assert_eq!(c.hincr_by("h", "year", 1).await.unwrap(), 1816);
    assert_eq!(c.hincr_by_float("h", "score", 0.5).await.unwrap(), 0.5);
    assert_eq!(c.hstrlen("h", "name").await.unwrap(), 3);
    assert_eq!(c.hdel("h", ["score", "none"]).await.unwrap(), 1);

    assert_eq!(c.rpush("l", ["a", "b", "c"]).await.unwrap(), 3);
    assert_eq!(c.lpush("l", "z").await.unwrap(), 4);
    assert_eq!(c.lpushx("nolist", "x").await.unwrap(), 0);
    assert_eq!(c.rpushx("l", "d").await.unwrap(), 5);
    assert_eq!(
        c.lrange::<Vec<String>>("l", 0, -1).await.unwrap(),
        ["z", "a", "b", "c", "d"]
    );
    assert_eq!(c.llen("l").await.unwrap(), 5);
    assert_eq!(c.lindex::<String>("l", 1).await.unwrap(), "a");
    c.lset("l", 1, "A").await.unwrap();
    assert_eq!(c.linsert_before("l", "A", "before").await.unwrap(), 6);
    assert_eq!(c.linsert_after("l", "nope", "x").await.unwrap(), -1);
    assert_eq!(c.lrem("l", 0, "before").await.unwrap(), 1);
    assert_eq!(
        c.lpop::<Option<String>>("l").await.unwrap().as_deref(),
        Some("z")
    );
    assert_eq!(c.rpop::<String>("l").await.unwrap(), "d");
    assert_eq!(
        c.lpop_count::<Vec<String>>("l", 2).await.unwrap(),
        ["A", "b"]
    );
    c.rpush("l", ["1", "2", "3"]).await.unwrap();
    assert_eq!(
        c.rpop_count::<Vec<String>>("l", 2).await.unwrap(),
        ["3", "2"]
    );
    c.ltrim("l", 0, 0).await.unwrap();
    assert_eq!(c.lrange::<Vec<String>>("l", 0, -1).await.unwrap(), ["c"]);
    let moved: Option<String> = c.lmove("l", "l2", Side::Left, Side::Right).await.unwrap();
    assert_eq!(moved.as_deref(), Some("c"));
    assert_eq!(c.lpop::<Option<String>>("l").await.unwrap(), None);

    assert_eq!(c.sadd("s1", ["a", "b", "c"]).await.unwrap(), 3);
    assert_eq!(c.sadd("s2", ["b", "c", "d"]).await.unwrap(), 3);
    assert_eq!(c.srem("s1", ["x"]).await.unwrap(), 0);
    assert!(c.sismember("s1", "a").await.unwrap());
    assert_eq!(c.smismember("s1", ["a", "z"]).await.unwrap(), [true, false]);
    assert_eq!(c.scard("s1").await.unwrap(), 3);
    let members: HashSet<String> = c.smembers("s1").await.unwrap();
    assert_eq!(members.len(), 3);
    let inter: HashSet<String> = c.sinter(["s1", "s2"]).await.unwrap();
    assert_eq!(inter, HashSet::from(["b".into(), "c".into()]));
    assert_eq!(
        c.sunion::<HashSet<String>>(["s1", "s2"])
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(c.sdiff::<Vec<String>>(["s1", "s2"]).await.unwrap(), ["a"]);
    assert_eq!(c.sinterstore("s3", ["s1", "s2"]).await.unwrap(), 2);
    assert_eq!(c.sunionstore("s4", ["s1", "s2"]).await.unwrap(), 4);
    assert_eq!(c.sdiffstore("s5", ["s1", "s2"]).await.unwrap(), 1);
    assert!(c.smove("s1", "s5", "b").await.unwrap());
    let one: Option<String> = c.srandmember("s1").await.unwrap();
    assert!(one.is_some());
    let popped: Option<String> = c.spop("s5").await.unwrap();
    assert!(popped.is_some());
}

async fn sorted_sets_streams_hll(c: &Client) {
    assert_eq!(c.zadd("z", "ada", 3.0).await.unwrap(), 1);
    assert_eq!(
        c.zadd_multiple("z", &[(1.0, "bob"), (2.0, "cy")])
            .await
            .unwrap(),
        2
    );
    let changed: u64 = c
        .zadd_options(
            "z",
            ZAddOptions::default().greater().changed(),
            (10.0, "ada"),
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let new_score: Option<f64> = c
        .zadd_options("z", ZAddOptions::default().incr(), (0.5, "bob"))
        .await
        .unwrap();
    assert_eq!(new_score, Some(1.5));
    assert_eq!(c.zscore("z", "ada").await.unwrap(), Some(10.0));
    assert_eq!(c.zscore("z", "none").await.unwrap(), None);
    assert_eq!(
        c.zmscore("z", ["cy", "none"]).await.unwrap(),
        [Some(2.0), None]
    );
    assert_eq!(c.zincr_by("z", "cy", 1.0).await.unwrap(), 3.0);
    assert_eq!(c.zcard("z").await.unwrap(), 3);
    assert_eq!(c.zcount("z", "-inf", "(10").await.unwrap(), 2);
    assert_eq!(c.zrank("z", "bob").await.unwrap(), Some(0));
    assert_eq!(c.zrevrank("z", "bob").await.unwrap(), Some(2));
    assert_eq!(c.zrank("z", "none").await.unwrap(), None);
    assert_eq!(
        c.zrange::<Vec<String>>("z", 0, -1).await.unwrap(),
        ["bob", "cy", "ada"]
    );
    assert_eq!(
        c.zrevrange::<Vec<String>>("z", 0, 0).await.unwrap(),
        ["ada"]
    );
    let scored: Vec<(String, f64)> = c.zrange_withscores("z", 0, -1).await.unwrap();
    assert_eq!(scored[0], ("bob".to_string(), 1.5));
    let by_score: Vec<String> = c.zrangebyscore("z", 2, "+inf").await.unwrap();
    assert_eq!(by_score, ["cy", "ada"]);
    let by_score: Vec<(String, f64)> = c.zrangebyscore_withscores("z", 2, 3).await.unwrap();
    assert_eq!(by_score, [("cy".to_string(), 3.0)]);
    let low: Vec<(String, f64)> = c.zpopmin("z", 1).await.unwrap();
    assert_eq!(low, [("bob".to_string(), 1.5)]);
    let high: Vec<(String, f64)> = c.zpopmax("z", 1).await.unwrap();
    assert_eq!(high, [("ada".to_string(), 10.0)]);
    c.zadd_multiple("z", &[(5.0, "e"), (6.0, "f")])
        .await
        .unwrap();
    assert_eq!(c.zremrangebyscore("z", 5, 5).await.unwrap(), 1);
    assert_eq!(c.zremrangebyrank("z", 0, 0).await.unwrap(), 1);
    assert_eq!(c.zrem("z", ["f", "none"]).await.unwrap(), 1);

    // Streams.
    let id1: String = c
        .xadd("st", "*", &[("temp", "21"), ("room", "a")])
        .await
        .unwrap();
    let id2: String = c.xadd("st", "*", &[("temp", "22")]).await.unwrap();
    assert!(id1 < id2);
    let none: Option<String> = c
        .xadd_options(
            "nostream",
            StreamAddOptions::default().no_create(),
            "*",
            ("k", "v"),
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(c.xlen("st").await.unwrap(), 2);
    let entries: Vec<StreamEntry> = c.xrange("st", "-", "+").await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].id, id1);
    assert_eq!(entries[0].field("room").map(|v| &v[..]), Some(&b"a"[..]));
    assert_eq!(
        c.xrange_count::<Vec<StreamEntry>>("st", "-", "+", 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.xrevrange::<Vec<StreamEntry>>("st", "+", "-")
            .await
            .unwrap()[0]
            .id,
        id2
    );
    let read: Vec<(String, Vec<StreamEntry>)> = c.xread("st", "0").await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].0, "st");
    assert_eq!(read[0].1.len(), 2);
    let nothing: Vec<(String, Vec<StreamEntry>)> = c.xread("st", &id2).await.unwrap();
    assert!(nothing.is_empty());
    c.xgroup_create("st", "g", "0").await.unwrap();
    c.xgroup_create_mkstream("st2", "g", "$").await.unwrap();
    let got: Vec<(String, Vec<StreamEntry>)> =
        c.xreadgroup("g", "worker-1", "st", ">").await.unwrap();
    assert_eq!(got[0].1.len(), 2);
    let pending: (u64, Option<String>, Option<String>, Value) =
        c.xpending("st", "g").await.unwrap();
    assert_eq!(pending.0, 2);
    let claimed: Vec<StreamEntry> = c
        .xclaim("st", "g", "worker-2", Duration::ZERO, [&id1])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(c.xack("st", "g", [&id1, &id2]).await.unwrap(), 2);
    assert!(c.xgroup_delconsumer("st", "g", "worker-1").await.unwrap() <= 2);
    assert!(c.xgroup_destroy("st2", "g").await.unwrap());
    assert_eq!(c.xdel("st", [&id1]).await.unwrap(), 1);
    assert_eq!(c.xtrim_maxlen("st", 0).await.unwrap(), 1);

    // HyperLogLog.
    assert!(c.pfadd("hll", ["a", "b", "c"]).await.unwrap());
    assert!(!c.pfadd("hll", ["a"]).await.unwrap());
    c.pfadd("hll2", ["d"]).await.unwrap();
    c.pfmerge("hll3", ["hll", "hll2"]).await.unwrap();
    assert_eq!(c.pfcount("hll3").await.unwrap(), 4);
}

async fn server_commands(c: &Client) {
    assert_eq!(c.ping().await.unwrap(), "PONG");
    assert_eq!(c.echo::<String>("hi").await.unwrap(), "hi");
    assert!(c.info().await.unwrap().contains("redis_version"));
    assert!(c
        .info_section("server")
        .await
        .unwrap()
        .contains("redis_version"));
    let (secs, _micros) = c.time().await.unwrap();
    assert!(secs > 1_700_000_000);
    let maxmemory: HashMap<String, String> = c.config_get("maxmemory").await.unwrap();
    assert!(maxmemory.contains_key("maxmemory"));
    c.config_set("maxmemory-policy", "noeviction")
        .await
        .unwrap();
    assert_eq!(c.publish("nobody", "x").await.unwrap(), 0);
    assert_eq!(c.wait(0, Duration::from_millis(10)).await.unwrap(), 0);
    // The generic command, with a reply of any shape.
    let freq: String = c
        .cmd("OBJECT")
        .arg("HELP")
        .query::<Vec<String>>()
        .await
        .unwrap()
        .join(" ");
    assert!(freq.contains("ENCODING"));
    let v: Value = c.cmd("LOLWUT").arg("VERSION").arg(5).query().await.unwrap();
    assert!(!matches!(v, Value::Error(_)));
}

async fn every_family(protocol: Protocol) {
    let server = RedisServer::start().unwrap();
    let c = client(&server, protocol).await;
    strings_and_keys(&c).await;
    hashes_lists_sets(&c).await;
    sorted_sets_streams_hll(&c).await;
    server_commands(&c).await;
    c.flushdb().await.unwrap();
    assert_eq!(c.dbsize().await.unwrap(), 0);
}

#[tokio::test]
async fn every_command_family_works_over_resp3() {
    every_family(Protocol::Resp3).await;
}

#[tokio::test]
async fn every_command_family_gives_the_same_values_over_resp2() {
    every_family(Protocol::Resp2).await;
}

#[tokio::test]
async fn pipelines_keep_order_errors_in_place_and_can_be_atomic() {
    let server = RedisServer::start().unwrap();
    let c = client(&server, Protocol::Resp3).await;
    let (old, n, missing): (Option<String>, i64, Option<String>) = c
        .pipeline()
        .set("k", "v")
        .ignore()
        .getdel("k")
        .incr("n")
        .get("k")
        .query()
        .await
        .unwrap();
    assert_eq!((old.as_deref(), n, missing), (Some("v"), 1, None));
    // The error reply of one command is in its place; the others ran.
    let ((), wrong, after): ((), Result<i64, ServerError>, i64) = c
        .pipeline()
        .set("text", "abc")
        .incr("text")
        .incr("n")
        .query()
        .await
        .unwrap();
    assert_eq!(wrong.unwrap_err().code(), "ERR");
    assert_eq!(after, 2);
    // Typed without room for it, the error fails the conversion with the server's error.
    let err = c
        .pipeline()
        .incr("text")
        .incr("n")
        .query::<(i64, i64)>()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ERR"));
    assert_eq!(
        c.get::<i64>("n").await.unwrap(),
        3,
        "the pipeline ran whole"
    );
    let raw = c.pipeline().incr("text").ping().query_raw().await.unwrap();
    assert!(matches!(raw[0], Value::Error(_)));
    assert!(c.pipeline().incr("text").exec().await.is_err());
    // Generic commands in a pipeline, and a big one: one write, every reply in order.
    let mut p = c.pipeline();
    p.cmd("SET").arg("g").arg(7).cmd("GET").arg("g");
    assert_eq!(p.query::<((), i64)>().await.unwrap(), ((), 7));
    // Arguments added to a typed command, several at once, and a pipeline reused after clear.
    p.clear();
    p.set("g", 8)
        .arg("NX")
        .cmd("RPUSH")
        .arg("l")
        .arg(&["a", "b", "c"][..]);
    assert_eq!(p.len(), 2);
    assert_eq!(p.commands().get(0).unwrap().arg_at(3), Some(&b"NX"[..]));
    assert_eq!(p.commands().get(1).unwrap().len(), 5);
    let (not_set, pushed): (Option<String>, i64) = p.query().await.unwrap();
    assert_eq!((not_set, pushed), (None, 3), "NX kept the old value");
    assert_eq!(c.get::<i64>("g").await.unwrap(), 7);
    let mut big = c.pipeline();
    for i in 0..1000 {
        big.echo(format!("e{i}"));
    }
    let echoes: Vec<String> = big.query().await.unwrap();
    assert_eq!(echoes.len(), 1000);
    assert!(echoes
        .iter()
        .enumerate()
        .all(|(i, e)| *e == format!("e{i}")));
    // Atomic: MULTI ... EXEC, results as one.
    let (a, b): (i64, i64) = c
        .pipeline()
        .atomic()
        .incr("t")
        .incr("t")
        .query()
        .await
        .unwrap();
    assert_eq!((a, b), (1, 2));
    let empty: Vec<Value> = c.pipeline().query().await.unwrap();
    assert!(empty.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_transaction_commits_or_returns_none_when_a_key_changed() {
    let server = RedisServer::start().unwrap();
    let c = client(&server, Protocol::Resp3).await;
    c.set("balance", 100).await.unwrap();
    // Nobody interferes: it commits.
    let tx = c.watch("balance").await.unwrap();
    let balance: i64 = tx.get("balance").await.unwrap();
    let mut writes = c.pipeline();
    writes.set("balance", balance - 30).incr("log");
    let done: Option<((), i64)> = tx.exec(&writes).await.unwrap();
    assert_eq!(done, Some(((), 1)));
    assert_eq!(c.get::<i64>("balance").await.unwrap(), 70);
    // Someone writes between the read and EXEC: nothing runs, the answer is None.
    let tx = c.watch("balance").await.unwrap();
    let balance: i64 = tx.get("balance").await.unwrap();
    c.set("balance", 500).await.unwrap();
    let mut writes = c.pipeline();
    writes.set("balance", balance - 30).incr("log");
    let aborted: Option<((), i64)> = tx.exec(&writes).await.unwrap();
    assert_eq!(aborted, None);
    assert_eq!(c.get::<i64>("balance").await.unwrap(), 500);
    assert_eq!(c.get::<i64>("log").await.unwrap(), 1);
    // A dropped transaction leaves no WATCH on the connection the next one gets.
    let tx = c.watch("balance").await.unwrap();
    drop(tx);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tx = c.watch("other").await.unwrap();
    c.set("balance", 1).await.unwrap();
    let mut writes = c.pipeline();
    writes.set("other", 1);
    assert!(tx.exec::<((),)>(&writes).await.unwrap().is_some());
    // A command refused while queueing aborts it all.
    let tx = c.watch("x").await.unwrap();
    let mut writes = c.pipeline();
    writes.set("x", 1).cmd("GET");
    let err = tx.exec::<Value>(&writes).await.unwrap_err();
    assert_eq!(err.code(), Some("EXECABORT"));
    assert_eq!(c.exists("x").await.unwrap(), 0);
}

#[tokio::test]
async fn scripts_run_by_sha_and_load_themselves_after_a_flush() {
    let server = RedisServer::start().unwrap();
    let c = client(&server, Protocol::Resp3).await;
    let script =
        Script::new("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])");
    let before = server.command_calls("eval").unwrap_or(0);
    let n: i64 = script.invoke(&c, ["sk", "counter"], "v").await.unwrap();
    assert_eq!(n, 1);
    // Unknown at first: one EVAL loaded it; from then on EVALSHA only.
    assert_eq!(server.command_calls("eval").unwrap(), before + 1);
    let n: i64 = script.invoke(&c, ["sk", "counter"], "v").await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(server.command_calls("eval").unwrap(), before + 1);
    assert!(server.command_calls("evalsha").unwrap() >= 2);
    c.script_flush().await.unwrap();
    let n: i64 = script.invoke(&c, ["sk", "counter"], "v").await.unwrap();
    assert_eq!(n, 3, "after SCRIPT FLUSH the script ran exactly once more");
    script.load(&c).await.unwrap();
    assert_eq!(c.script_exists([script.sha1()]).await.unwrap(), [true]);
    // A script's own error is the server's error.
    let bad = Script::new("return redis.call('INCR', KEYS[1])");
    c.set("str", "abc").await.unwrap();
    let err = bad.invoke::<i64>(&c, "str", ()).await.unwrap_err();
    assert!(err.server_error().is_some(), "{err:?}");
    // Plain EVAL and FCALL.
    let v: i64 = c
        .eval("return #KEYS + #ARGV", ["a", "b"], [1, 2, 3])
        .await
        .unwrap();
    assert_eq!(v, 5);
    c.cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=lib\nredis.register_function('double', function(keys, args) return args[1] * 2 end)")
        .query::<String>()
        .await
        .unwrap();
    assert_eq!(c.fcall::<i64>("double", (), 21).await.unwrap(), 42);
}

#[tokio::test]
async fn scans_are_streams_over_every_key() {
    let server = RedisServer::start().unwrap();
    let c = client(&server, Protocol::Resp3).await;
    let mut p = c.pipeline();
    for i in 0..500 {
        p.set(format!("user:{i}"), i).ignore();
    }
    p.hset_multiple(
        "h",
        (0..300).map(|i| (format!("f{i}"), i)).collect::<Vec<_>>(),
    )
    .sadd("set", (0..300).collect::<Vec<_>>())
    .zadd_multiple(
        "zs",
        (0..300)
            .map(|i| (i as f64, format!("m{i}")))
            .collect::<Vec<_>>(),
    );
    p.exec().await.unwrap();
    let keys: HashSet<String> = c
        .scan(
            redis_client::ScanOptions::default()
                .pattern("user:*")
                .count(50),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys.len(), 500);
    let hashes: Vec<String> = c
        .scan(redis_client::ScanOptions::default().key_type("hash"))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(hashes, ["h"]);
    let fields: HashMap<String, i64> = c
        .hscan::<(String, i64)>("h", redis_client::ScanOptions::default().count(20))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(fields.len(), 300);
    assert_eq!(fields["f7"], 7);
    let members: HashSet<i64> = c
        .sscan::<i64>("set", Default::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(members.len(), 300);
    let scored: Vec<(String, f64)> = c
        .zscan("zs", Default::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(scored.len(), 300);
    // A conversion error ends the stream with that error.
    c.set("notaset", "x").await.unwrap();
    let mut wrong = Box::pin(c.sscan::<String>("notaset", Default::default()));
    let first = wrong.next().await.unwrap();
    assert_eq!(first.unwrap_err().code(), Some("WRONGTYPE"));
    assert!(wrong.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_and_other_traffic_do_not_disturb_each_other() {
    let server = RedisServer::start().unwrap();
    let c = Client::connect(
        config(&server, Protocol::Resp3).response_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    // A BLPOP far longer than the response timeout, next to a stream of ordinary commands.
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.blpop::<Option<(String, String)>>("jobs", Duration::from_secs(3))
                .await
        })
    };
    let stream_reader = {
        let c = c.clone();
        tokio::spawn(async move {
            c.xread_options::<Vec<(String, Vec<StreamEntry>)>>(
                &StreamReadOptions::default().block(Duration::from_secs(3)),
                "events",
                "$",
            )
            .await
        })
    };
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..500 {
        let t = Instant::now();
        c.set(format!("k{i}"), i).await.unwrap();
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(200),
        "an ordinary command waited {slowest:?} behind blocking ones"
    );
    // Past the response timeout the waits are still going: their deadline is their own.
    tokio::time::sleep(Duration::from_millis(700).saturating_sub(started.elapsed())).await;
    assert!(!waiter.is_finished() && !stream_reader.is_finished());
    c.rpush("jobs", "job-1").await.unwrap();
    let id: String = c.xadd("events", "*", ("kind", "signup")).await.unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        Some(("jobs".to_string(), "job-1".to_string()))
    );
    let read = stream_reader.await.unwrap().unwrap();
    assert_eq!(read[0].1[0].id, id);
    // A blocking pop that times out is nil, not an error; BRPOP and BLMOVE likewise.
    let t = Instant::now();
    let none = c
        .brpop::<Option<(String, String)>>("empty", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(none, None);
    assert!(t.elapsed() >= Duration::from_millis(290));
    c.rpush("src", "x").await.unwrap();
    let moved: Option<String> = c
        .blmove(
            "src",
            "dst",
            Side::Right,
            Side::Left,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(moved.as_deref(), Some("x"));
    c.zadd("zq", "m", 1.0).await.unwrap();
    let z: Option<(String, String, f64)> = c.bzpopmin("zq", Duration::from_secs(1)).await.unwrap();
    assert_eq!(z, Some(("zq".into(), "m".into(), 1.0)));
    let _: Option<Value> = c.bzpopmax("zq", Duration::from_millis(50)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_restored_after_a_server_restart_and_events_tell() {
    let mut server = RedisServer::start().unwrap();
    let names: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&names);
    let c = Client::connect(
        config(&server, Protocol::Resp3)
            .on_event(move |e| seen.lock().unwrap().push(e.name().to_string())),
    )
    .await
    .unwrap();
    let mut events = c.events();
    let mut sub = c.subscriber().await.unwrap();
    sub.subscribe(["news"]).await.unwrap();
    sub.psubscribe(["user:*"]).await.unwrap();
    c.publish("news", "first").await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"first");

    server.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), sub.next_event())
            .await
            .expect("no resubscription")
            .unwrap();
        if matches!(event, SubscriberEvent::Resubscribed { .. }) {
            break;
        }
    }
    // The data connection is back too; publish until the server counts our subscriber.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match c.publish("user:1", "back").await {
            Ok(1) => break,
            _ => {
                assert!(Instant::now() < deadline, "not subscribed again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let m = tokio::time::timeout(Duration::from_secs(2), sub.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&m.channel[..], &m.payload[..]),
        (&b"user:1"[..], &b"back"[..])
    );
    // Events: as callbacks, and as a stream. The callbacks run on their own thread, after the
    // subscriber has seen the event: wait for them a little.
    let deadline = Instant::now() + Duration::from_secs(3);
    for expected in ["connect", "disconnect", "reconnect", "resubscribed"] {
        loop {
            let names = names.lock().unwrap().clone();
            if names.iter().any(|n| n == expected) {
                break;
            }
            assert!(Instant::now() < deadline, "{expected} not in {names:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut streamed = Vec::new();
    while let Ok(e) = events.try_recv() {
        streamed.push(e.name());
    }
    assert!(streamed.contains(&"reconnect"), "{streamed:?}");
    assert!(c.stats().reconnects >= 1);
    // The stream form.
    let stream = sub.into_stream();
    futures::pin_mut!(stream);
    c.publish("news", "via-stream").await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"via-stream");
}

#[tokio::test]
async fn commands_on_a_closed_client_and_raw_commands_are_typed() {
    let server = RedisServer::start().unwrap();
    let c = client(&server, Protocol::Resp3).await;
    let v = c.send(Cmd::new("SET").arg("a").arg("1")).await.unwrap();
    assert_eq!(v, Value::SimpleString("OK".into()));
    let replies = c
        .send_pipeline(&[Cmd::new("INCR").arg("a"), Cmd::new("GET").arg("a")])
        .await
        .unwrap();
    assert_eq!(replies[0], Value::Integer(2));
    let stats = c.stats();
    assert!(stats.commands >= 2);
    c.close();
    let err = c.get::<Option<String>>("a").await.unwrap_err();
    assert!(err.is_connection_error(), "{err:?}");
    assert!(matches!(err, Error::Connection(_)));
    assert_eq!(err.kind(), "closed");
}

#[tokio::test]
async fn typed_commands_whose_options_change_a_second_run_are_never_resent() {
    use redis_client::layers::conn::table::Effect;
    let server = RedisServer::start().unwrap();
    let c = client(&server, Protocol::Resp3).await;
    let mut unsafe_ones = c.pipeline();
    unsafe_ones
        .set_nx("k", "v")
        .set_options("k", "v", SetOptions::default().only_if_absent())
        .set_options("k", "v", SetOptions::default().get())
        .set_options("k", "v", SetOptions::default().only_if_present().get())
        .getex("k", Expiry::AtSeconds(1))
        .getex("k", Expiry::AtMillis(1))
        .expire("k", 0)
        .expire("k", -1)
        .expire_if("k", 10, ExpireCondition::NoExpiry)
        .expire_if("k", 10, ExpireCondition::Later)
        .expire_if("k", 10, ExpireCondition::Sooner)
        .expire_at("k", 4_102_444_800)
        .persist("k")
        .del(["a", "b"])
        .unlink("a")
        .rename("a", "b")
        .msetnx([("a", "1")])
        .hset("h", "f", "v")
        .hsetnx("h", "f", "v")
        .sadd("s", "m")
        .srem("s", "m")
        .sdiffstore("d", ["d", "x"])
        .sinterstore("d", ["x", "d"])
        .zadd("z", "m", 1.0)
        .zadd_options("z", ZAddOptions::default().only_new(), [(1.0, "m")])
        .zadd_options(
            "z",
            ZAddOptions::default().only_existing().changed(),
            [(1.0, "m")],
        )
        .zadd_options(
            "z",
            ZAddOptions::default().only_existing().incr(),
            [(1.0, "m")],
        )
        .zadd_options("z", ZAddOptions::default().greater(), [(1.0, "m")])
        .zrem("z", "m")
        .zremrangebyrank("z", 0, 0)
        .ltrim("l", 100, -1)
        .ltrim("l", 0, -2)
        .pfadd("p", "e")
        .xtrim_maxlen("x", 10)
        .xack("x", "g", "1-1")
        .publish("c", "m");
    let mut safe_ones = c.pipeline();
    safe_ones
        .set("k", "v")
        .set_ex("k", "v", Duration::from_secs(10))
        .set_options(
            "k",
            "v",
            SetOptions::default()
                .only_if_present()
                .expiry(Expiry::Seconds(10)),
        )
        .getex("k", Expiry::Seconds(10))
        .expire("k", 10)
        .expire_if("k", 10, ExpireCondition::HasExpiry)
        .mset([("a", "1")])
        .sinterstore("d", ["x", "y"])
        .zadd_options("z", ZAddOptions::default().only_existing(), [(1.0, "m")])
        .ltrim("l", 0, 99)
        .ltrim("l", -100, -1);
    let effects = |p: &Pipeline| -> Vec<(String, Effect)> {
        p.commands()
            .iter()
            .map(|c| (format!("{c:?}"), c.effect()))
            .collect()
    };
    for (cmd, effect) in effects(&unsafe_ones) {
        assert_eq!(effect, Effect::NotRetrySafe, "{cmd}");
    }
    for (cmd, effect) in effects(&safe_ones) {
        assert_eq!(effect, Effect::RetrySafe, "{cmd}");
    }
    // What a pipeline as a whole may be resent as: its least resendable command.
    assert_eq!(
        safe_ones
            .commands()
            .iter()
            .fold(Effect::ReadOnly, |e, c| e.worst(c.effect())),
        Effect::RetrySafe
    );
}

/// A fake server answering every SCAN with no element and a cursor that never comes back to 0:
/// the one it was given when `stuck`, a new one each time otherwise. Anything else gets `+OK`.
async fn endless_scan_server(stuck: bool) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut cursor = 1u64;
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let scans = buf[..n].windows(4).filter(|w| *w == b"SCAN").count();
                    let mut out = Vec::new();
                    if scans == 0 {
                        out.extend_from_slice(b"+OK\r\n");
                    }
                    for _ in 0..scans {
                        if !stuck || cursor == 1 {
                            cursor += 1;
                        }
                        let c = cursor.to_string();
                        out.extend_from_slice(
                            format!("*2\r\n${}\r\n{c}\r\n*0\r\n", c.len()).as_bytes(),
                        );
                    }
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_scan_whose_cursor_never_ends_stops_with_an_error() {
    for stuck in [true, false] {
        let addr = endless_scan_server(stuck).await;
        let client = Client::connect(
            Config::from_url(&format!("redis://{addr}"))
                .unwrap()
                .protocol(Protocol::Resp2)
                .health_check_interval(None),
        )
        .await
        .unwrap();
        let options = ScanOptions::default().max_empty_round_trips(50);
        let started = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            client
                .scan::<String>(options.clone())
                .try_collect::<Vec<_>>(),
        )
        .await
        .expect("the scan never ended");
        let error = result.expect_err("an endless scan cannot succeed");
        assert!(
            matches!(error, redis_client::Error::EndlessScan(_)),
            "{error}"
        );
        assert_eq!(error.kind(), "endless_scan");
        let hscan = client
            .hscan::<(String, String)>("h", options)
            .try_collect::<Vec<_>>();
        let error = tokio::time::timeout(Duration::from_secs(10), hscan)
            .await
            .expect("the HSCAN never ended")
            .expect_err("an endless scan cannot succeed");
        assert!(
            matches!(error, redis_client::Error::EndlessScan(_)),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
