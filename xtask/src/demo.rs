//! The main job, for now: a throwaway local Redis and the codec at work on its real replies.
//! Later layers (connection, pool, cluster, client) take this demo over as they land.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use resp_codec::{encode_command, Decoder, Value};
use test_support::RedisServer;

pub(crate) fn run() -> Result<(), String> {
    let started = Instant::now();
    let server = RedisServer::start().map_err(|e| e.to_string())?;
    println!(
        "started a throwaway redis-server on {} (pid {}) in {:?}",
        server.addr(),
        server.pid().unwrap_or(0),
        started.elapsed()
    );

    let mut conn = TcpStream::connect(server.addr()).map_err(|e| e.to_string())?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;

    // One pipeline: every command encoded into one buffer, one write, replies read in order.
    let commands: Vec<Vec<&[u8]>> = vec![
        vec![b"HELLO", b"3"],
        vec![b"SET", b"greeting", b"hello from resp-codec"],
        vec![b"GET", b"greeting"],
        vec![b"INCRBY", b"counter", b"41"],
        vec![b"INCR", b"counter"],
        vec![b"NOSUCHCOMMAND"],
        vec![b"HSET", b"user:1", b"name", b"Ada", b"lang", b"Rust"],
        vec![b"HGETALL", b"user:1"],
        vec![b"ZADD", b"scores", b"1.5", b"ada"],
        vec![b"ZSCORE", b"scores", b"ada"],
        vec![b"SADD", b"tags", b"fast"],
        vec![b"SMEMBERS", b"tags"],
        vec![b"GET", b"missing"],
    ];
    let mut out = BytesMut::new();
    for cmd in &commands {
        encode_command(&mut out, cmd);
    }
    conn.write_all(&out).map_err(|e| e.to_string())?;
    println!(
        "\npipeline: {} commands encoded into one buffer of {} bytes, sent with one write",
        commands.len(),
        out.len()
    );

    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut reads = 0;
    for cmd in &commands {
        let value = next_value(&mut conn, &mut decoder, &mut buf, &mut reads)?;
        let name: Vec<String> = cmd
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        println!("  {:<40} -> {}", name.join(" "), show(&value));
    }
    println!(
        "{} replies decoded from {reads} read call(s)",
        commands.len()
    );

    // RESP3 push messages: pub/sub on the same connection.
    let mut publisher = server.admin().map_err(|e| e.to_string())?;
    let mut sub = BytesMut::new();
    encode_command(&mut sub, ["SUBSCRIBE", "news"]);
    conn.write_all(&sub).map_err(|e| e.to_string())?;
    let confirm = next_value(&mut conn, &mut decoder, &mut buf, &mut reads)?;
    publisher
        .cmd(&["PUBLISH", "news", "resp3 pushes decoded"])
        .map_err(|e| e.to_string())?;
    let message = next_value(&mut conn, &mut decoder, &mut buf, &mut reads)?;
    println!(
        "\npub/sub over RESP3:\n  {}\n  {}",
        show(&confirm),
        show(&message)
    );

    // What a hostile peer gets: typed errors, no allocation of what it claims, no panic.
    println!("\nmalformed input is a typed error, never a panic or a huge allocation:");
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
    drop(server);
    println!("\nserver stopped; demo done in {:?}", started.elapsed());
    Ok(())
}

fn next_value(
    conn: &mut TcpStream,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    reads: &mut usize,
) -> Result<Value, String> {
    loop {
        if let Some(v) = decoder.decode(buf).map_err(|e| e.to_string())? {
            return Ok(v);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = conn.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        *reads += 1;
        buf.extend_from_slice(&chunk[..n]);
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
        Value::Map(pairs) if pairs.len() > 4 => format!("map of {} pairs", pairs.len()),
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
