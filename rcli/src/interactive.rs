//! One command, the prompt, commands from stdin as one pipeline, and subscriptions.

use std::io::Write;

use redis_client::{Client, Cmd, Error, SubscriberEvent, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{format, Failure};

/// Splits a line into arguments as redis-cli does: spaces separate, `"..."` allows escapes
/// (`\n`, `\t`, `\"`, `\\`, `\xHH`), `'...'` is literal but for `\'`.
pub(crate) fn split_args(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(args);
        };
        let mut arg: Vec<u8> = Vec::new();
        let mut utf8 = [0u8; 4];
        match first {
            '"' => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("unbalanced quotes".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => arg.push(b'\n'),
                            Some('r') => arg.push(b'\r'),
                            Some('t') => arg.push(b'\t'),
                            Some('a') => arg.push(0x07),
                            Some('b') => arg.push(0x08),
                            Some('x') => {
                                let hex: String = (0..2).filter_map(|_| chars.next()).collect();
                                let byte = u8::from_str_radix(&hex, 16)
                                    .map_err(|_| format!("bad escape \\x{hex}"))?;
                                arg.push(byte);
                            }
                            Some(c) => arg.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
                            None => return Err("unbalanced quotes".into()),
                        },
                        Some(c) => arg.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
                    }
                }
                if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                    return Err("closing quote must be followed by a space".into());
                }
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("unbalanced quotes".into()),
                        Some('\'') => break,
                        Some('\\') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            arg.push(b'\'');
                        }
                        Some(c) => arg.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
                    }
                }
                if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                    return Err("closing quote must be followed by a space".into());
                }
            }
            _ => {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    arg.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        args.push(arg);
    }
}

fn command<A: AsRef<[u8]>>(args: &[A]) -> Option<Cmd> {
    let (name, rest) = args.split_first()?;
    let mut cmd = Cmd::new(name);
    for arg in rest {
        cmd.push_arg(arg);
    }
    Some(cmd)
}

fn render(value: &Value, raw: bool) -> String {
    if raw {
        format::raw(value)
    } else {
        format::pretty(value)
    }
}

fn is_subscribe(name: &[u8]) -> bool {
    [&b"SUBSCRIBE"[..], b"PSUBSCRIBE", b"SSUBSCRIBE"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// `rcli COMMAND ARGS...`: the reply on stdout; an error reply as `(error) ...` and exit 1.
pub(crate) async fn one_command(
    client: &Client,
    args: &[String],
    raw: bool,
) -> Result<(), Failure> {
    let Some(cmd) = command(args) else {
        return Ok(());
    };
    if is_subscribe(cmd.name()) {
        return subscribe(client, args).await;
    }
    match client.send(cmd).await {
        Ok(value) => {
            say!("{}", render(&value, raw));
            Ok(())
        }
        Err(Error::Server(e)) => {
            say!("(error) {e}");
            Err(Failure::Reply)
        }
        Err(other) => Err(other.into()),
    }
}

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: messages printed as they come, until interrupted.
async fn subscribe(client: &Client, args: &[String]) -> Result<(), Failure> {
    let mut sub = client.subscriber().await?;
    let names = &args[1..];
    let kind = args[0].to_ascii_lowercase();
    match kind.as_str() {
        "subscribe" => sub.subscribe(names).await?,
        "psubscribe" => sub.psubscribe(names).await?,
        _ => sub.ssubscribe(names).await?,
    }
    for (i, name) in names.iter().enumerate() {
        let confirm = Value::Array(vec![
            Value::BulkString(kind.clone().into()),
            Value::BulkString(name.clone().into()),
            Value::Integer(i as i64 + 1),
        ]);
        say!("{}", format::pretty(&confirm));
    }
    while let Some(event) = sub.next_event().await {
        match event {
            SubscriberEvent::Message(m) => {
                let mut items = vec![Value::BulkString(
                    match m.kind {
                        redis_client::SubscriptionKind::Channel => "message",
                        redis_client::SubscriptionKind::Pattern => "pmessage",
                        redis_client::SubscriptionKind::Shard => "smessage",
                    }
                    .into(),
                )];
                if let Some(pattern) = m.pattern {
                    items.push(Value::BulkString(pattern));
                }
                items.push(Value::BulkString(m.channel));
                items.push(Value::BulkString(m.payload));
                say!("{}", format::pretty(&Value::Array(items)));
            }
            SubscriberEvent::Resubscribed { addr, downtime } => {
                eprintln!("rcli: subscribed again on {addr} after {downtime:?}; messages meanwhile were missed");
            }
            _ => {}
        }
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// The prompt: one command per line; `quit` or `exit` (or end of input) ends it.
pub(crate) async fn prompt(client: &Client, raw: bool) -> Result<(), Failure> {
    let name = crate::connect::prompt_name(client);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        {
            let mut out = std::io::stdout().lock();
            if write!(out, "{name}> ").and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
        let Ok(Some(line)) = lines.next_line().await else {
            say!();
            return Ok(());
        };
        let args = match split_args(&line) {
            Ok(args) => args,
            Err(e) => {
                say!("(error) ERR {e}");
                continue;
            }
        };
        let Some(cmd) = command(&args) else {
            continue;
        };
        if cmd.name().eq_ignore_ascii_case(b"quit") || cmd.name().eq_ignore_ascii_case(b"exit") {
            return Ok(());
        }
        match client.send(cmd).await {
            Ok(value) => say!("{}", render(&value, raw)),
            Err(Error::Server(e)) => say!("(error) {e}"),
            Err(e) => say!("(error) {e}"),
        }
    }
}

/// Commands from a non-terminal stdin, one per line, sent as one pipeline (one write per
/// node); replies printed in order. Exit 1 if any reply is an error.
pub(crate) async fn pipeline_from_stdin(client: &Client, raw: bool) -> Result<(), Failure> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut cmds = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let args = split_args(&line).map_err(|e| Failure::Fatal(format!("stdin: {e}: {line}")))?;
        if let Some(cmd) = command(&args) {
            cmds.push(cmd);
        }
    }
    if cmds.is_empty() {
        return Ok(());
    }
    let replies = client.send_pipeline(&cmds).await?;
    let mut failed = false;
    for reply in &replies {
        failed |= reply.is_error();
        say!("{}", render(reply, raw));
    }
    if failed {
        Err(Failure::Reply)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_args(s)
            .unwrap()
            .into_iter()
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .collect()
    }

    #[test]
    fn lines_split_like_redis_cli() {
        assert_eq!(split("SET k v"), ["SET", "k", "v"]);
        assert_eq!(split("  GET   k  "), ["GET", "k"]);
        assert_eq!(split(r#"SET k "a b\n\"c\"""#), ["SET", "k", "a b\n\"c\""]);
        assert_eq!(split(r"SET k 'it\'s'"), ["SET", "k", "it's"]);
        assert_eq!(
            split_args(r#"SET k "\x00\xff""#).unwrap()[2],
            vec![0u8, 0xff]
        );
        assert_eq!(split(""), Vec::<String>::new());
        assert!(split_args("SET k \"open").is_err());
        assert!(split_args("SET k \"a\"b").is_err());
    }
}
