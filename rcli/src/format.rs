//! Replies printed as redis-cli prints them.

use redis_client::Value;

/// A reply as redis-cli shows it on a terminal: `OK`, `(integer) 3`, `"value"`, `(nil)`,
/// numbered lists, RESP3 maps (`1# "k" => "v"`), sets (`1~ "m"`), doubles, booleans.
pub(crate) fn pretty(value: &Value) -> String {
    let mut out = String::new();
    write_pretty(value, 0, &mut out);
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// A reply raw (as redis-cli prints it to a pipe): strings as they are, one element per line.
pub(crate) fn raw(value: &Value) -> String {
    let mut out = String::new();
    write_raw(value, &mut out);
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// `"..."` with the escapes redis-cli uses: `\"`, `\\`, `\n`, `\r`, `\t`, `\a`, `\b`, `\xHH`.
pub(crate) fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(b as char),
            other => out.push_str(&format!("\\x{other:02x}")),
        }
    }
    out.push('"');
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn double(d: f64) -> String {
    if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if d.is_nan() {
        "nan".to_string()
    } else {
        d.to_string()
    }
}

/// Writes `value` with its continuation lines indented by `indent` spaces.
fn write_pretty(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::SimpleString(s) => out.push_str(&text(s)),
        Value::Error(e) => {
            out.push_str("(error) ");
            out.push_str(&text(e));
        }
        Value::Integer(n) => out.push_str(&format!("(integer) {n}")),
        Value::BulkString(b) => out.push_str(&quoted(b)),
        Value::Null => out.push_str("(nil)"),
        Value::Double(d) => out.push_str(&format!("(double) {}", double(*d))),
        Value::Boolean(b) => out.push_str(if *b { "(true)" } else { "(false)" }),
        Value::BigNumber(n) => out.push_str(&format!("(big number) {}", text(n))),
        Value::VerbatimString { text: t, .. } => out.push_str(&text(t)),
        Value::Array(items) | Value::Push(items) => list(
            items.iter().map(Item::One),
            ")",
            "(empty array)",
            indent,
            out,
        ),
        Value::Set(items) => list(items.iter().map(Item::One), "~", "(empty set)", indent, out),
        Value::Map(pairs) => list(
            pairs.iter().map(|(k, v)| Item::Pair(k, v)),
            "#",
            "(empty hash)",
            indent,
            out,
        ),
        Value::Attribute { value, .. } => write_pretty(value, indent, out),
        other => out.push_str(&format!("{other:?}")),
    }
}

enum Item<'a> {
    One(&'a Value),
    Pair(&'a Value, &'a Value),
}

fn list<'a>(
    items: impl ExactSizeIterator<Item = Item<'a>>,
    mark: &str,
    empty: &str,
    indent: usize,
    out: &mut String,
) {
    let n = items.len();
    if n == 0 {
        out.push_str(empty);
        return;
    }
    let width = n.to_string().len();
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        }
        let prefix = format!("{:>width$}{mark} ", i + 1);
        let inner = indent + prefix.len();
        out.push_str(&prefix);
        match item {
            Item::One(v) => write_pretty(v, inner, out),
            Item::Pair(k, v) => {
                write_pretty(k, inner, out);
                out.push_str(" => ");
                write_pretty(v, inner, out);
            }
        }
    }
}

fn write_raw(value: &Value, out: &mut String) {
    match value {
        Value::SimpleString(b)
        | Value::BulkString(b)
        | Value::Error(b)
        | Value::BigNumber(b)
        | Value::VerbatimString { text: b, .. } => {
            out.push_str(&text(b));
            out.push('\n');
        }
        Value::Integer(n) => out.push_str(&format!("{n}\n")),
        Value::Double(d) => out.push_str(&format!("{}\n", double(*d))),
        Value::Boolean(b) => out.push_str(if *b { "1\n" } else { "0\n" }),
        Value::Null => out.push('\n'),
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            for item in items {
                write_raw(item, out);
            }
        }
        Value::Map(pairs) => {
            for (k, v) in pairs {
                write_raw(k, out);
                write_raw(v, out);
            }
        }
        Value::Attribute { value, .. } => write_raw(value, out),
        other => out.push_str(&format!("{other:?}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec().into())
    }

    #[test]
    fn every_type_prints_as_redis_cli_prints_it() {
        assert_eq!(pretty(&Value::SimpleString("PONG".into())), "PONG");
        assert_eq!(pretty(&Value::Integer(3)), "(integer) 3");
        assert_eq!(pretty(&bulk("value")), "\"value\"");
        assert_eq!(
            pretty(&bulk("a\"b\\c\n\x01é")),
            "\"a\\\"b\\\\c\\n\\x01\\xc3\\xa9\""
        );
        assert_eq!(pretty(&Value::Null), "(nil)");
        assert_eq!(pretty(&Value::Error("ERR bad".into())), "(error) ERR bad");
        assert_eq!(pretty(&Value::Double(1.5)), "(double) 1.5");
        assert_eq!(pretty(&Value::Double(f64::NEG_INFINITY)), "(double) -inf");
        assert_eq!(pretty(&Value::Boolean(true)), "(true)");
        assert_eq!(
            pretty(&Value::BigNumber("12345678901234567890".into())),
            "(big number) 12345678901234567890"
        );
        assert_eq!(pretty(&Value::Array(vec![])), "(empty array)");
        assert_eq!(
            pretty(&Value::Array(vec![
                bulk("a"),
                Value::Array(vec![bulk("b"), Value::Integer(2)]),
                Value::Null
            ])),
            "1) \"a\"\n2) 1) \"b\"\n   2) (integer) 2\n3) (nil)"
        );
        let ten: Vec<Value> = (1..=10).map(Value::Integer).collect();
        let text = pretty(&Value::Array(ten));
        assert!(text.starts_with(" 1) (integer) 1\n 2)"), "{text}");
        assert!(text.ends_with("10) (integer) 10"), "{text}");
        assert_eq!(
            pretty(&Value::Map(vec![
                (bulk("k"), bulk("v")),
                (bulk("n"), Value::Integer(1))
            ])),
            "1# \"k\" => \"v\"\n2# \"n\" => (integer) 1"
        );
        assert_eq!(pretty(&Value::Set(vec![bulk("m")])), "1~ \"m\"");
        assert_eq!(pretty(&Value::Set(vec![])), "(empty set)");
        assert_eq!(
            pretty(&Value::VerbatimString {
                format: *b"txt",
                text: "line1\nline2".into()
            }),
            "line1\nline2"
        );
    }

    #[test]
    fn raw_output_is_plain() {
        assert_eq!(raw(&bulk("v")), "v");
        assert_eq!(raw(&Value::Integer(3)), "3");
        assert_eq!(raw(&Value::Array(vec![bulk("a"), bulk("b")])), "a\nb");
        assert_eq!(raw(&Value::Null), "");
    }
}
