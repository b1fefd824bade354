//! The command table's retry-safety claims, proved on a real server: every command the table
//! may call retry-safe (or a read) is run once and, from the same starting state, twice, with
//! representative arguments (every option that keeps it retry-safe); the second run must
//! answer what one run answered and leave the same data (RELIABILITY.md C1.1). And the writes
//! that the table refuses to resend are shown to deserve it: run twice, they answer or leave
//! something different.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use redis_conn::table::{self, Effect};
use redis_conn::{Cmd, Connection, ConnectionConfig, ServerAddr, Value};
use test_support::RedisServer;

/// What every case starts from (after FLUSHALL), on database 0.
const BASE: &str = "SET s hello ; SET s2 help ; RPUSH l a b c ; RPUSH nums 3 1 2 ; \
    SADD set a b c ; SADD set2 b c d ; SADD set1 only ; ZADD z 1 a 2 b 3 c ; ZADD z2 5 a 6 d ; \
    ZADD z1 1 only ; ZADD zl 0 a 0 b 0 c ; HSET h f v g w ; HSET h1 f v ; XADD st 1-1 f v ; \
    XGROUP CREATE st g 0 ; PFADD hll a b ; GEOADD geo 13.361389 38.115556 p1 15.087269 37.502669 p2 ; \
    SETBIT bits 3 1 ; SETBIT bits2 5 1 ; SCRIPT LOAD \"return 1\" ; \
    FUNCTION LOAD \"#!lua name=lib\\nredis.register_function{function_name='ro', callback=function() return 1 end, flags={'no-writes'}}\"";

/// SHA1 of `return 1`, loaded by [`BASE`].
const SHA: &str = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";

/// One command to run twice: extra setup after [`BASE`], and whether its reply legitimately
/// differs between two looks (a clock, a counter, a random pick): then only the data is
/// compared.
struct Case {
    setup: &'static str,
    cmd: &'static str,
    varies: bool,
}

const fn case(cmd: &'static str) -> Case {
    Case {
        setup: "",
        cmd,
        varies: false,
    }
}

const fn after(setup: &'static str, cmd: &'static str) -> Case {
    Case {
        setup,
        cmd,
        varies: false,
    }
}

const fn varies(cmd: &'static str) -> Case {
    Case {
        setup: "",
        cmd,
        varies: true,
    }
}

/// The commands the table may call retry-safe, with the options that keep them so.
const SAFE: &[Case] = &[
    // Strings.
    case("GET s"),
    case("GET nosuch"),
    case("STRLEN s"),
    case("GETRANGE s 0 2"),
    case("SUBSTR s 0 2"),
    case("GETBIT bits 3"),
    case("BITCOUNT bits"),
    case("BITPOS bits 1"),
    case("TTL s"),
    case("PTTL s"),
    case("EXPIRETIME s"),
    case("PEXPIRETIME s"),
    case("TYPE s"),
    case("DUMP s"),
    case("PFCOUNT hll"),
    case("MGET s l nosuch"),
    case("EXISTS s l nosuch"),
    case("TOUCH s nosuch"),
    case("LCS s s2"),
    case("SET k v"),
    case("SET s v"),
    case("SET k NX"),
    case("SET s v XX"),
    case("SET nosuch v XX"),
    case("SET k v EX 100"),
    case("SET k v PX 100000"),
    case("SET s v XX EXAT 4102444800"),
    case("SET s v PXAT 4102444800000"),
    after("EXPIRE s 100", "SET s v KEEPTTL"),
    after("EXPIRE s 100", "SET s v XX KEEPTTL"),
    case("SET s v EXAT 1"),
    case("SETEX k 100 v"),
    case("PSETEX k 100000 v"),
    case("SETRANGE s 2 XY"),
    case("SETRANGE new 3 ab"),
    case("EXPIRE s 100"),
    case("EXPIRE s 100 XX"),
    after("EXPIRE s 50", "EXPIRE s 100 XX"),
    case("EXPIRE nosuch 100"),
    case("PEXPIRE s 100000"),
    case("PEXPIRE s 100000 XX"),
    case("GETEX s"),
    case("GETEX s EX 100"),
    case("GETEX s PX 100000"),
    after("EXPIRE s 100", "GETEX s PERSIST"),
    case("RESTORE k 0 $DUMP:s REPLACE"),
    case("RESTORE s 100000 $DUMP:l REPLACE"),
    case("RESTORE k 0 $DUMP:s REPLACE ABSTTL"),
    case("RESTORE k 0 $DUMP:s REPLACE IDLETIME 100"),
    case("RESTORE k 0 $DUMP:s REPLACE FREQ 5"),
    case("MSET a 1 b 2 s 3"),
    case("MSET s 1 s 2"),
    case("SORT l ALPHA"),
    case("SORT nums"),
    case("SORT nums DESC LIMIT 0 2"),
    case("SORT nums BY nosort"),
    case("SORT l ALPHA GET #"),
    case("SORT l ALPHA LIMIT 0 1 DESC"),
    case("BITFIELD_RO bits GET u4 0"),
    case("SORT_RO nums"),
    case("BITOP AND dest bits bits2"),
    case("BITOP OR dest bits bits2"),
    case("BITOP XOR dest bits bits2"),
    case("BITOP NOT dest bits"),
    case("BITOP AND dest bits"),
    case("PFMERGE hll2 hll"),
    case("PFMERGE hll hll"),
    case("PFMERGE hll2"),
    after("PFADD hll3 z", "PFMERGE hll3 hll"),
    case("COPY s c REPLACE"),
    case("COPY s s2 REPLACE"),
    case("COPY s c DB 1 REPLACE"),
    case("OBJECT ENCODING s"),
    case("OBJECT REFCOUNT s"),
    case("OBJECT FREQ s"),
    varies("OBJECT IDLETIME s"),
    case("OBJECT HELP"),
    case("MEMORY USAGE s"),
    varies("MEMORY STATS"),
    varies("MEMORY DOCTOR"),
    case("MEMORY PURGE"),
    // Hashes.
    case("HGET h f"),
    case("HMGET h f g nosuch"),
    case("HGETALL h"),
    case("HKEYS h"),
    case("HVALS h"),
    case("HLEN h"),
    case("HEXISTS h f"),
    case("HSTRLEN h f"),
    case("HSCAN h 0"),
    case("HRANDFIELD h1"),
    case("HTTL h FIELDS 1 f"),
    case("HPTTL h FIELDS 1 f"),
    case("HMSET h f v2 new 1"),
    case("HMSET h f v f w"),
    // Lists.
    case("LRANGE l 0 -1"),
    case("LLEN l"),
    case("LINDEX l 1"),
    case("LPOS l b"),
    case("LSET l 0 z"),
    case("LTRIM l 0 1"),
    case("LTRIM l 0 -1"),
    case("LTRIM l 0 99"),
    case("LTRIM l -2 -1"),
    case("LSET l -1 z"),
    // Sets.
    case("SMEMBERS set"),
    case("SISMEMBER set a"),
    case("SMISMEMBER set a z"),
    case("SCARD set"),
    case("SRANDMEMBER set1"),
    case("SSCAN set 0"),
    case("SINTER set set2"),
    case("SUNION set set2"),
    case("SDIFF set set2"),
    case("SINTERCARD 2 set set2"),
    case("SINTERSTORE d set set2"),
    case("SUNIONSTORE d set set2"),
    case("SDIFFSTORE d set set2"),
    case("SDIFFSTORE set1 set set2"),
    case("SINTERSTORE d set"),
    // Sorted sets.
    case("ZRANGE z 0 -1 WITHSCORES"),
    case("ZRANGEBYSCORE z 1 2"),
    case("ZREVRANGE z 0 -1"),
    case("ZREVRANGEBYSCORE z 3 1"),
    case("ZRANGEBYLEX zl - +"),
    case("ZREVRANGEBYLEX zl + -"),
    case("ZSCORE z a"),
    case("ZMSCORE z a nosuch"),
    case("ZRANK z b"),
    case("ZREVRANK z b"),
    case("ZCARD z"),
    case("ZCOUNT z 1 2"),
    case("ZLEXCOUNT zl - +"),
    case("ZSCAN z 0"),
    case("ZRANDMEMBER z1"),
    case("ZUNION 2 z z2 WITHSCORES"),
    case("ZINTER 2 z z2"),
    case("ZDIFF 2 z z2"),
    case("ZINTERCARD 2 z z2"),
    case("ZADD z XX 5 a"),
    case("ZADD z XX GT 5 a"),
    case("ZADD z XX LT 0 a"),
    case("ZADD z XX 5 nosuch"),
    case("ZADD z xx gt 5 a"),
    case("ZUNIONSTORE d 2 z z2"),
    case("ZINTERSTORE d 2 z z2 WEIGHTS 1 2 AGGREGATE MAX"),
    case("ZDIFFSTORE d 2 z z2"),
    case("ZRANGESTORE d z 0 1"),
    case("ZUNIONSTORE d 2 z z2 WEIGHTS 2 3 AGGREGATE MIN"),
    case("ZDIFFSTORE d 1 z"),
    case("ZRANGESTORE d z 1 2 BYSCORE"),
    case("ZRANGESTORE d z 3 1 BYSCORE REV LIMIT 0 2"),
    case("ZRANGESTORE d zl [a [b BYLEX"),
    // Geo.
    case("GEODIST geo p1 p2"),
    case("GEOPOS geo p1"),
    case("GEOHASH geo p1"),
    case("GEOSEARCH geo FROMMEMBER p1 BYRADIUS 200 km ASC"),
    case("GEORADIUS_RO geo 15 37 200 km ASC"),
    case("GEORADIUSBYMEMBER_RO geo p1 200 km ASC"),
    case("GEOADD geo XX 13.4 38.2 p1"),
    case("GEOADD geo XX 13.4 38.2 nosuch"),
    case("GEOSEARCHSTORE d geo FROMMEMBER p1 BYRADIUS 200 km"),
    case("GEOSEARCHSTORE d geo FROMLONLAT 15 37 BYBOX 400 400 km ASC COUNT 1 STOREDIST"),
    // Streams.
    case("XRANGE st - +"),
    case("XREVRANGE st + -"),
    case("XLEN st"),
    case("XPENDING st g"),
    case("XINFO STREAM st"),
    case("XINFO GROUPS st"),
    case("XREAD STREAMS st 0"),
    case("XREAD COUNT 1 STREAMS st 0"),
    case("XSETID st 5-0"),
    case("XSETID st 1-1"),
    case("XSETID st 5-0 ENTRIESADDED 10 MAXDELETEDID 1-1"),
    // Scripting and functions.
    case("EVAL_RO \"return redis.call('GET', KEYS[1])\" 1 s"),
    case("EVALSHA_RO $SHA 0"),
    case("FCALL_RO ro 0"),
    case("SCRIPT LOAD \"return 2\""),
    case("SCRIPT EXISTS $SHA"),
    case("SCRIPT FLUSH"),
    case("SCRIPT FLUSH ASYNC"),
    case("SCRIPT FLUSH SYNC"),
    case("SCRIPT HELP"),
    case("FUNCTION LIST"),
    case("FUNCTION DUMP"),
    case("FUNCTION STATS"),
    case("FUNCTION HELP"),
    case("FUNCTION FLUSH"),
    case("FUNCTION FLUSH ASYNC"),
    case("FUNCTION LOAD REPLACE \"#!lua name=lib\\nredis.register_function('w', function() return 2 end)\""),
    case("FUNCTION RESTORE $FDUMP REPLACE"),
    case("FUNCTION RESTORE $FDUMP FLUSH"),
    // Server.
    case("CONFIG GET maxmemory-samples"),
    case("CONFIG SET maxmemory-samples 7"),
    case("CONFIG RESETSTAT"),
    case("CONFIG REWRITE"),
    case("CONFIG HELP"),
    varies("CLIENT LIST"),
    varies("CLIENT INFO"),
    case("CLIENT GETNAME"),
    case("CLIENT ID"),
    case("CLIENT GETREDIR"),
    case("CLIENT TRACKINGINFO"),
    case("CLIENT HELP"),
    case("CLIENT SETNAME retry-safety"),
    case("CLIENT SETINFO LIB-NAME retry-safety"),
    case("CLIENT NO-EVICT on"),
    case("CLIENT NO-TOUCH on"),
    case("CLIENT PAUSE 1 WRITE"),
    case("CLIENT PAUSE 1 ALL"),
    case("CLIENT UNPAUSE"),
    case("LATENCY LATEST"),
    case("LATENCY HISTORY command"),
    case("LATENCY GRAPH command"),
    varies("LATENCY DOCTOR"),
    varies("LATENCY HISTOGRAM"),
    case("LATENCY HELP"),
    case("SLOWLOG LEN"),
    case("SLOWLOG RESET"),
    case("SLOWLOG HELP"),
    case("SCAN 0"),
    case("KEYS *"),
    case("DBSIZE"),
    varies("RANDOMKEY"),
    case("PING"),
    case("ECHO hi"),
    varies("INFO"),
    varies("TIME"),
    case("LASTSAVE"),
    case("ROLE"),
    case("COMMAND COUNT"),
    case("COMMAND INFO get"),
    varies("LOLWUT"),
    case("READONLY"),
    case("READWRITE"),
    case("ASKING"),
    case("SELECT 1"),
    case("FLUSHDB"),
    case("FLUSHALL"),
    case("FLUSHALL ASYNC"),
    case("FLUSHDB SYNC"),
    case("HELLO 3"),
    case("HELLO 3 SETNAME retry-safety"),
    case("AUTH default whatever"),
    case("WAIT 0 0"),
    case("WAITAOF 0 0 0"),
    case("WATCH s"),
    case("UNWATCH"),
];

/// Cluster subcommands the table calls reads, run on a node started with cluster support.
const CLUSTER_SAFE: &[Case] = &[
    varies("CLUSTER INFO"),
    varies("CLUSTER NODES"),
    case("CLUSTER SLOTS"),
    case("CLUSTER SHARDS"),
    case("CLUSTER MYID"),
    case("CLUSTER MYSHARDID"),
    case("CLUSTER KEYSLOT somekey"),
    case("CLUSTER COUNTKEYSINSLOT 7"),
    case("CLUSTER GETKEYSINSLOT 7 10"),
    varies("CLUSTER LINKS"),
    case("CLUSTER REPLICAS $MYID"),
    case("CLUSTER SLAVES $MYID"),
    case("CLUSTER COUNT-FAILURE-REPORTS $MYID"),
    case("CLUSTER HELP"),
];

/// Writes the table refuses to resend, with arguments that show why: a second run answers or
/// leaves something different.
const UNSAFE: &[Case] = &[
    case("SET lock me NX"),
    case("SET s new GET"),
    case("DEL s"),
    case("UNLINK s"),
    case("SADD set z"),
    case("SREM set a"),
    case("HSET h n v"),
    case("HDEL h f"),
    case("GETSET s new"),
    case("SETNX k v"),
    case("ZADD z INCR 1 a"),
    case("ZADD z 1 new"),
    case("ZADD z XX CH 9 a"),
    case("ZREM z a"),
    case("LTRIM l 1 -1"),
    case("LTRIM l 0 -2"),
    case("ZREMRANGEBYRANK z 0 0"),
    case("ZREMRANGEBYSCORE z 1 1"),
    case("SWAPDB 0 1"),
    case("SETBIT bits 0 1"),
    case("PFADD hll zz"),
    case("EXPIRE s 100 NX"),
    case("EXPIRE s 0"),
    after("EXPIRE s 100", "PERSIST s"),
    case("GETEX s EXAT 1"),
    case("RESTORE k 0 $DUMP:s"),
    case("COPY s c"),
    case("RENAME s s3"),
    case("BITOP XOR bits bits bits2"),
    case("SDIFFSTORE set2 set set2"),
    case("ZUNIONSTORE z 2 z z2"),
    case("GEOADD geo 1 1 p3"),
    case("INCR n"),
    case("APPEND s x"),
    case("RPUSH l d"),
    case(
        "FUNCTION LOAD \"#!lua name=lib2\\nredis.register_function('x', function() return 2 end)\"",
    ),
    case("FUNCTION DELETE lib"),
    case("XDEL st 1-1"),
    after("XREADGROUP GROUP g c STREAMS st >", "XACK st g 1-1"),
    case("MSETNX fresh 1"),
    case("HSETNX h n v"),
];

/// The command line split into arguments: words, or `"..."` with `\n` for a newline.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut word = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' if chars.peek() == Some(&'n') => {
                        chars.next();
                        word.push('\n');
                    }
                    c => word.push(c),
                }
            }
            out.push(word);
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| !c.is_whitespace()) {
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    out
}

fn split_lines(setup: &str) -> Vec<&str> {
    setup
        .split(" ; ")
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

struct Bench {
    /// The connection under test (exclusive, so that WATCH and SELECT may run on it).
    conn: Connection,
    /// Reads and resets the state, on database 0 whatever `conn` selected.
    admin: Connection,
    /// Database 1, on a server that has more than one.
    db1: Option<Connection>,
    /// Placeholders: `$SHA`, `$MYID`.
    myid: Option<String>,
}

fn config(addr: std::net::SocketAddr) -> ConnectionConfig {
    ConnectionConfig::new(ServerAddr::from(addr)).response_timeout(Duration::from_secs(5))
}

impl Bench {
    async fn new(addr: std::net::SocketAddr, cluster: bool) -> Bench {
        let conn = Connection::connect(config(addr).exclusive(true))
            .await
            .unwrap();
        let admin = Connection::connect(config(addr)).await.unwrap();
        let db1 = match cluster {
            true => None,
            false => Some(Connection::connect(config(addr).database(1)).await.unwrap()),
        };
        Bench {
            conn,
            admin,
            db1,
            myid: None,
        }
    }

    async fn admin(&self, args: &[&str]) -> Value {
        let cmd = args[1..].iter().fold(Cmd::new(args[0]), |c, a| c.arg(a));
        self.admin.send(cmd).await.unwrap()
    }

    /// The command with its placeholders filled in from the current state.
    async fn command(&self, line: &str) -> Cmd {
        let args = words(line);
        let mut cmd = Cmd::new(&args[0]);
        for arg in &args[1..] {
            cmd = match arg.as_str() {
                "$SHA" => cmd.arg(SHA),
                "$MYID" => cmd.arg(self.myid.as_deref().unwrap_or("none")),
                "$FDUMP" => cmd.arg(self.admin(&["FUNCTION", "DUMP"]).await.as_bytes().unwrap()),
                a if a.starts_with("$DUMP:") => {
                    let dump = self.admin(&["DUMP", &a["$DUMP:".len()..]]).await;
                    cmd.arg(dump.as_bytes().unwrap())
                }
                a => cmd.arg(a),
            };
        }
        cmd
    }

    /// Back to the starting state: empty databases, no scripts or functions, the default
    /// settings that cases change, then `BASE` and the case's setup.
    async fn reset(&self, base: &str, setup: &str) {
        for line in [
            "CLIENT UNPAUSE",
            "FLUSHALL",
            "SCRIPT FLUSH",
            "FUNCTION FLUSH",
            "CONFIG SET maxmemory-samples 5",
        ] {
            self.admin(&words(line).iter().map(String::as_str).collect::<Vec<_>>())
                .await;
        }
        self.conn.send(Cmd::new("UNWATCH")).await.unwrap();
        if self.db1.is_some() {
            self.conn.send(Cmd::new("SELECT").arg("0")).await.unwrap();
        }
        for line in split_lines(base).into_iter().chain(split_lines(setup)) {
            if let Err(e) = self.conn.send(self.command(line).await).await {
                panic!("setup {line}: {e}");
            }
        }
    }

    /// Everything a command could have changed that a second run could change again: every
    /// key of database 0 with its value and whether it expires, database 1's size, the
    /// functions, whether `return 1` is cached, a setting.
    async fn snapshot(&self) -> BTreeMap<String, String> {
        let mut state = BTreeMap::new();
        let keys = match self.admin(&["KEYS", "*"]).await {
            Value::Array(keys) => keys,
            other => panic!("KEYS: {other:?}"),
        };
        for key in keys {
            let key = String::from_utf8_lossy(key.as_bytes().unwrap()).into_owned();
            let kind = self.admin(&["TYPE", &key]).await;
            let kind = String::from_utf8_lossy(kind.as_bytes().unwrap()).into_owned();
            let value = match kind.as_str() {
                "string" => self.admin(&["GET", &key]).await,
                "list" => self.admin(&["LRANGE", &key, "0", "-1"]).await,
                "zset" => self.admin(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]).await,
                "set" => sorted(self.admin(&["SMEMBERS", &key]).await),
                "hash" => sorted(self.admin(&["HGETALL", &key]).await),
                "stream" => Value::Array(vec![
                    self.admin(&["XRANGE", &key, "-", "+"]).await,
                    self.admin(&["XINFO", "STREAM", &key]).await,
                ]),
                _ => Value::Null,
            };
            let expires = matches!(self.admin(&["PTTL", &key]).await, Value::Integer(t) if t > 0);
            state.insert(
                format!("key {key}"),
                format!("{kind} {value:?} expires={expires}"),
            );
        }
        if let Some(db1) = &self.db1 {
            let size = db1.send(Cmd::new("DBSIZE")).await.unwrap();
            state.insert("db1".into(), format!("{size:?}"));
        }
        let functions = self.admin(&["FUNCTION", "LIST", "WITHCODE"]).await;
        state.insert("functions".into(), format!("{functions:?}"));
        let scripts = self.admin(&["SCRIPT", "EXISTS", SHA]).await;
        state.insert("scripts".into(), format!("{scripts:?}"));
        let samples = self.admin(&["CONFIG", "GET", "maxmemory-samples"]).await;
        state.insert("config".into(), format!("{samples:?}"));
        state
    }

    /// One run and two runs of `case`, each from a fresh start: (reply of the one run, its
    /// state), (replies of the two runs, their state).
    async fn once_and_twice(&self, base: &str, case: &Case) -> (Outcome, Outcome) {
        self.reset(base, case.setup).await;
        let cmd = self.command(case.cmd).await;
        let one = reply(self.conn.send(cmd).await);
        let once = Outcome {
            replies: vec![one],
            state: self.snapshot().await,
        };
        self.reset(base, case.setup).await;
        let mut replies = Vec::new();
        for _ in 0..2 {
            let cmd = self.command(case.cmd).await;
            replies.push(reply(self.conn.send(cmd).await));
        }
        let twice = Outcome {
            replies,
            state: self.snapshot().await,
        };
        (once, twice)
    }
}

/// A reply, an error reply as its message; no other error is expected.
fn reply(result: Result<Value, redis_conn::Error>) -> Result<Value, String> {
    match result {
        Ok(value) => Ok(value),
        Err(redis_conn::Error::Server(e)) => Err(e.message()),
        Err(e) => panic!("{e}"),
    }
}

struct Outcome {
    replies: Vec<Result<Value, String>>,
    state: BTreeMap<String, String>,
}

/// A set's members (or a hash's pairs) in a stable order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Array(mut items) | Value::Set(mut items) => {
            items.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            Value::Array(items)
        }
        Value::Map(mut pairs) => {
            pairs.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            Value::Map(pairs)
        }
        other => other,
    }
}

fn effect_of(bench_line: &str) -> Effect {
    let args = words(bench_line);
    let cmd = args[1..].iter().fold(Cmd::new(&args[0]), |c, a| c.arg(a));
    cmd.effect()
}

fn name_of(line: &str) -> String {
    words(line)[0].to_ascii_uppercase()
}

/// Names the server does not know (an older server than the command): such cases are skipped
/// and listed.
async fn unknown_to(admin: &Connection, cases: &[Case]) -> HashSet<String> {
    let mut unknown = HashSet::new();
    for case in cases {
        let name = name_of(case.cmd);
        let info = admin
            .send(Cmd::new("COMMAND").arg("INFO").arg(&name))
            .await
            .unwrap();
        if matches!(&info, Value::Array(items) if items.iter().all(|i| *i == Value::Null)) {
            unknown.insert(name);
        }
    }
    unknown
}

#[test]
fn every_command_the_table_may_resend_has_a_case_here() {
    let covered: HashSet<String> = SAFE
        .iter()
        .chain(CLUSTER_SAFE)
        .filter(|c| effect_of(c.cmd).is_retry_safe())
        .map(|c| name_of(c.cmd))
        .collect();
    let missing: Vec<String> = table::NAMES
        .iter()
        .filter(|name| table::lookup(name).can_be_retry_safe())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .filter(|name| !covered.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "commands the table may resend without a case that runs them twice: {missing:?}"
    );
    for case in SAFE.iter().chain(CLUSTER_SAFE) {
        assert!(
            effect_of(case.cmd).is_retry_safe(),
            "{} is listed as retry-safe, the table says otherwise",
            case.cmd
        );
    }
    for case in UNSAFE {
        assert_eq!(effect_of(case.cmd), Effect::NotRetrySafe, "{}", case.cmd);
    }
}

#[tokio::test]
async fn a_second_run_of_a_retry_safe_command_answers_and_leaves_what_one_run_did() {
    let server = RedisServer::start().unwrap();
    let bench = Bench::new(server.addr(), false).await;
    let unknown = unknown_to(&bench.admin, SAFE).await;
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in SAFE {
        if unknown.contains(&name_of(case.cmd)) {
            continue;
        }
        let (once, twice) = bench.once_and_twice(BASE, case).await;
        ran += 1;
        if !case.varies && twice.replies.iter().any(|r| *r != once.replies[0]) {
            failures.push(format!(
                "{}: one run answered {:?}, two runs {:?}",
                case.cmd, once.replies[0], twice.replies
            ));
        }
        if once.state != twice.state {
            let differ: Vec<_> = once
                .state
                .iter()
                .filter(|(k, v)| twice.state.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: {v} vs {:?}", twice.state.get(k)))
                .chain(
                    twice
                        .state
                        .keys()
                        .filter(|k| !once.state.contains_key(*k))
                        .map(|k| format!("{k} only after two runs")),
                )
                .collect();
            failures.push(format!("{}: the data differs: {differ:?}", case.cmd));
        }
    }
    assert!(
        failures.is_empty(),
        "not retry-safe:\n{}",
        failures.join("\n")
    );
    // Only commands newer than the server may be skipped (7.0 lacks these).
    let allowed: HashSet<&str> = ["HTTL", "HPTTL", "WAITAOF"].into();
    assert!(
        unknown.iter().all(|n| allowed.contains(n.as_str())),
        "the server does not know {unknown:?}"
    );
    assert!(ran >= SAFE.len() - 3, "ran {ran} of {}", SAFE.len());
}

#[tokio::test]
async fn cluster_subcommands_called_reads_answer_the_same_twice() {
    let server = RedisServer::builder().cluster().start().unwrap();
    let mut bench = Bench::new(server.addr(), true).await;
    let myid = bench.admin(&["CLUSTER", "MYID"]).await;
    bench.myid = Some(String::from_utf8_lossy(myid.as_bytes().unwrap()).into_owned());
    let unknown = unknown_to(&bench.admin, CLUSTER_SAFE).await;
    let mut failures = Vec::new();
    for case in CLUSTER_SAFE {
        if unknown.contains(&name_of(case.cmd)) {
            continue;
        }
        // No keys on a node that serves no slots: the state is the node's own.
        let (once, twice) = bench.once_and_twice("", case).await;
        if !case.varies && twice.replies.iter().any(|r| *r != once.replies[0]) {
            failures.push(format!(
                "{}: {:?} then {:?}",
                case.cmd, once.replies, twice.replies
            ));
        }
        assert_eq!(once.state, twice.state, "{}", case.cmd);
    }
    assert!(
        failures.is_empty(),
        "not retry-safe:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_writes_the_table_refuses_to_resend_would_answer_or_change_something_else() {
    let server = RedisServer::start().unwrap();
    let bench = Bench::new(server.addr(), false).await;
    let mut harmless = Vec::new();
    for case in UNSAFE {
        let (once, twice) = bench.once_and_twice(BASE, case).await;
        let same_reply = twice.replies.iter().all(|r| *r == once.replies[0]);
        if same_reply && once.state == twice.state {
            harmless.push(case.cmd);
        }
    }
    assert!(
        harmless.is_empty(),
        "these ran twice with no difference, so they do not show why the table refuses them: {harmless:?}"
    );
}

/// A resend comes some time after the first run (a reconnect, a backoff), not at once as in
/// the cases above: with a short relative expiry the key is gone by then and the resend
/// answers 0 or nil. The table must not call such commands retry-safe.
#[tokio::test]
async fn a_short_expiry_is_not_retry_safe_because_the_resend_comes_later() {
    let server = RedisServer::start().unwrap();
    let bench = Bench::new(server.addr(), false).await;
    for line in [
        "PEXPIRE s 20",
        "EXPIRE s 1",
        "GETEX s PX 20",
        "GETEX s EX 1",
    ] {
        bench.reset(BASE, "").await;
        let first = reply(bench.conn.send(bench.command(line).await).await);
        let wait = if line.contains(" 1") { 1100 } else { 60 };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let resend = reply(bench.conn.send(bench.command(line).await).await);
        assert_ne!(first, resend, "{line}: the case shows nothing");
        assert_eq!(
            effect_of(line),
            Effect::NotRetrySafe,
            "{line}: answered {first:?}, then {resend:?} when resent later"
        );
    }
}
