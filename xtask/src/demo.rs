//! The main job: a throwaway local Redis, and the client at work on it: a pipeline in one write,
//! many tasks sharing one connection, a server killed and restarted under load with the
//! reconnect visible as events, and the codec's answer to hostile input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use redis_conn::{Cmd, Connection, ConnectionConfig, Error, Sent, ServerAddr, Value};
use resp_codec::Decoder;
use test_support::RedisServer;

pub(crate) fn run() -> Result<(), String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(demo())
}

async fn demo() -> Result<(), String> {
    let started = Instant::now();
    let mut server = RedisServer::builder()
        .aof()
        .start()
        .map_err(|e| e.to_string())?;
    println!(
        "started a throwaway redis-server on {} (pid {}, AOF fsync always) in {:?}",
        server.addr(),
        server.pid().unwrap_or(0),
        started.elapsed()
    );

    let config = ConnectionConfig::new(ServerAddr::from(server.addr()))
        .client_name("xtask-demo")
        .on_event(|e| eprintln!("event: {} {}", e.name(), describe(e)));
    let conn = Connection::connect(config)
        .await
        .map_err(|e| e.to_string())?;

    // One pipeline: one buffer, one write, replies in order, an error reply in its place.
    let pipeline = vec![
        Cmd::new("SET").arg("greeting").arg("hello from redis-conn"),
        Cmd::new("GET").arg("greeting"),
        Cmd::new("INCRBY").arg("counter").arg_int(41),
        Cmd::new("INCR").arg("counter"),
        Cmd::new("LPUSH").arg("greeting").arg("x"),
        Cmd::new("HSET")
            .arg("user:1")
            .arg("name")
            .arg("Ada")
            .arg("lang")
            .arg("Rust"),
        Cmd::new("HGETALL").arg("user:1"),
        Cmd::new("ZADD").arg("scores").arg("1.5").arg("ada"),
        Cmd::new("ZSCORE").arg("scores").arg("ada"),
        Cmd::new("GET").arg("missing"),
    ];
    let before = conn.stats();
    let replies = conn
        .send_pipeline(&pipeline)
        .await
        .map_err(|e| e.to_string())?;
    let after = conn.stats();
    println!(
        "\npipeline of {} commands: {} write call(s), replies in order:",
        pipeline.len(),
        after.writes - before.writes
    );
    for (cmd, reply) in pipeline.iter().zip(&replies) {
        println!("  {:<48} -> {}", format!("{cmd:?}"), show(reply));
    }

    // Fifty tasks share the one connection: their commands are coalesced into shared writes
    // and every reply reaches its own caller.
    let before = conn.stats();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..50 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..400 {
                let token = format!("{task}-{i}");
                match conn.send(Cmd::new("ECHO").arg(&token)).await {
                    Ok(Value::BulkString(b)) if b == token.as_bytes() => {}
                    other => return Err(format!("misrouted or failed reply: {other:?}")),
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let after = conn.stats();
    let n = after.requests - before.requests;
    println!(
        "\n50 tasks, one connection: {n} ECHOs, every reply to its own caller, in {:?} \
         ({:.0} ops/s), {} writes ({:.1} commands per write)",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64(),
        after.writes - before.writes,
        n as f64 / (after.writes - before.writes).max(1) as f64
    );

    // kill -9 under load: the connection reconnects with backoff; writes acknowledged before the
    // kill survive (AOF); INCRs whose outcome is unknown are reported as such, never resent.
    println!("\nkill -9 of the server under a write load, restart after 500 ms:");
    let acked = Arc::new(AtomicU64::new(0));
    let unknown = Arc::new(AtomicU64::new(0));
    let load = {
        let (conn, acked, unknown) = (conn.clone(), Arc::clone(&acked), Arc::clone(&unknown));
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_millis(2000);
            while Instant::now() < until {
                match conn.send(Cmd::new("INCR").arg("kill-counter")).await {
                    Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                    Err(e) if e.sent() == Some(Sent::Maybe) => {
                        unknown.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => 0,
                };
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().map_err(|e| e.to_string())?;
    load.await.map_err(|e| e.to_string())?;
    let value = match conn.send(Cmd::new("GET").arg("kill-counter")).await {
        Ok(Value::BulkString(b)) => String::from_utf8_lossy(&b).parse::<u64>().unwrap_or(0),
        other => return Err(format!("GET after the restart: {other:?}")),
    };
    let (acked, unknown) = (
        acked.load(Ordering::Relaxed),
        unknown.load(Ordering::Relaxed),
    );
    println!(
        "  INCR acknowledged {acked}, outcome unknown {unknown}, counter now {value} \
         (acknowledged <= counter <= acknowledged + unknown: {})",
        acked <= value && value <= acked + unknown
    );
    let stats = conn.stats();
    println!(
        "  reconnects {}, failed connection attempts {}, retries {}",
        stats.reconnects, stats.connect_failures, stats.retries
    );

    // Typed errors.
    match conn.send(Cmd::new("SUBSCRIBE").arg("news")).await {
        Err(e @ Error::Unsupported(_)) => println!("\nSUBSCRIBE on a shared connection: {e}"),
        other => println!("\nSUBSCRIBE: {other:?}"),
    }

    println!("\nthe codec on hostile input: typed errors, no panic, no allocation of claims:");
    for bad in [
        &b"$536870913\r\n"[..],
        b"*1\r\n*1\r\n*1\r\n:x\r\n",
        b"+OK\n",
        b"?\r\n",
    ] {
        let mut input = BytesMut::from(bad);
        let outcome = match Decoder::new().decode(&mut input) {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {e}"),
        };
        println!(
            "  {:<28} -> {outcome}",
            format!("{:?}", String::from_utf8_lossy(bad))
        );
    }
    conn.close();
    drop(server);
    println!("\nserver stopped; demo done in {:?}", started.elapsed());
    Ok(())
}

fn describe(e: &redis_conn::Event) -> String {
    use redis_conn::Event::*;
    match e {
        Connected { addr } => addr.clone(),
        Disconnected { addr, reason } => format!("{addr}: {reason}"),
        ReconnectFailed {
            attempt,
            error,
            next_delay,
            ..
        } => format!("attempt {attempt}: {error}; next in {next_delay:?}"),
        Reconnected {
            attempts, downtime, ..
        } => format!("after {attempts} attempt(s), down {downtime:?}"),
        Error { error, .. } => error.to_string(),
        Closed { reason, .. } => reason.clone(),
        _ => format!("{e:?}"),
    }
}

/// A compact redis-cli-like rendering.
fn show(v: &Value) -> String {
    let text = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    let list = |items: &[Value]| items.iter().map(show).collect::<Vec<_>>().join(", ");
    match v {
        Value::SimpleString(s) => String::from_utf8_lossy(s).into_owned(),
        Value::Error(e) => format!("(error) {}", String::from_utf8_lossy(e)),
        Value::Integer(i) => format!("(integer) {i}"),
        Value::BulkString(b) => text(b),
        Value::Null => "(nil)".into(),
        Value::Double(d) => format!("(double) {d}"),
        Value::Boolean(b) => format!("(boolean) {b}"),
        Value::Array(items) => format!("[{}]", list(items)),
        Value::Set(items) => format!("set{{{}}}", list(items)),
        Value::Push(items) => format!("push>[{}]", list(items)),
        Value::Map(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}
