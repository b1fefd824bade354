//! The decoded form of a RESP2 or RESP3 reply.

use bytes::Bytes;

/// One RESP2 or RESP3 value.
///
/// Every byte payload ([`Bytes`]) is a slice of the buffer the value was decoded from: decoding
/// copies no payload bytes. Cloning a `Value` clones reference counts, not payloads.
///
/// RESP2's null bulk string (`$-1`) and null array (`*-1`) and RESP3's null (`_`) all decode to
/// [`Value::Null`]. RESP3's simple error (`-`) and bulk error (`!`) both decode to
/// [`Value::Error`]: callers care about the message, not about how it was framed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// `+OK`: a short status line with no CR or LF in it.
    SimpleString(Bytes),
    /// `-ERR message` or `!<len>`: an error reply; the bytes are the whole message, prefix included
    /// (`MOVED 3999 127.0.0.1:6381`).
    Error(Bytes),
    /// `:42`: a signed 64-bit integer.
    Integer(i64),
    /// `$<len>`: a binary-safe string.
    BulkString(Bytes),
    /// `*<len>`: an ordered list of values.
    Array(Vec<Value>),
    /// `$-1`, `*-1` (RESP2) or `_` (RESP3).
    Null,
    /// `%<len>`: key-value pairs, in the order the server sent them.
    Map(Vec<(Value, Value)>),
    /// `~<len>`: an unordered collection, in the order the server sent it.
    Set(Vec<Value>),
    /// `,1.5`: a double, including `inf`, `-inf` and `nan`.
    Double(f64),
    /// `#t` / `#f`.
    Boolean(bool),
    /// `(3492890328409238509324850943850943825024385`: an integer of any size, as its decimal digits
    /// (an optional leading `-`, then at least one digit).
    BigNumber(Bytes),
    /// `=<len>`: a string with a three-byte format hint (`txt`, `mkd`).
    VerbatimString {
        /// The format, for instance `*b"txt"`.
        format: [u8; 3],
        /// The text after the `xxx:` prefix.
        text: Bytes,
    },
    /// `><len>`: an out-of-band message (pub/sub, client tracking invalidation).
    Push(Vec<Value>),
    /// `|<len>`: attributes attached to the value that follows them on the wire.
    Attribute {
        /// The attribute pairs.
        attributes: Vec<(Value, Value)>,
        /// The value the attributes describe.
        value: Box<Value>,
    },
}

impl Value {
    /// `true` for [`Value::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// `true` for [`Value::Push`] (out-of-band messages on a RESP3 connection).
    pub fn is_push(&self) -> bool {
        matches!(self, Value::Push(_))
    }

    /// The payload of a string-like value (simple, bulk, verbatim, error, big number), if it is one.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::SimpleString(b)
            | Value::BulkString(b)
            | Value::Error(b)
            | Value::BigNumber(b)
            | Value::VerbatimString { text: b, .. } => Some(b),
            _ => None,
        }
    }

    /// The value's RESP type as a short lowercase name (`"bulk string"`, `"map"`), for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::SimpleString(_) => "simple string",
            Value::Error(_) => "error",
            Value::Integer(_) => "integer",
            Value::BulkString(_) => "bulk string",
            Value::Array(_) => "array",
            Value::Null => "null",
            Value::Map(_) => "map",
            Value::Set(_) => "set",
            Value::Double(_) => "double",
            Value::Boolean(_) => "boolean",
            Value::BigNumber(_) => "big number",
            Value::VerbatimString { .. } => "verbatim string",
            Value::Push(_) => "push",
            Value::Attribute { .. } => "attribute",
        }
    }
}
