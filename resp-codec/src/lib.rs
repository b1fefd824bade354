//! A sans-IO codec for RESP2 and RESP3, the Redis serialization protocol.
//!
//! This crate turns bytes into [`Value`]s and commands into bytes. It knows nothing of sockets,
//! runtimes or clocks: the connection layer (`redis-conn`) reads from the network into a
//! [`bytes::BytesMut`], hands it to a [`Decoder`], and writes what the encoder appended to its
//! output buffer. Its only dependencies are `bytes`, `memchr` and `thiserror`.
//!
//! # Layout
//! - [`Value`]: every RESP2 and RESP3 type. Payloads are [`bytes::Bytes`] sliced out of the read
//!   buffer: decoding copies no payload bytes.
//! - [`Decoder`]: incremental decoding with tokio-util's contract (`Ok(None)`: need more bytes,
//!   nothing consumed; `Err`: the stream is corrupt). Resumes where it stopped, so a reply that
//!   arrives in many reads is scanned once. Bounded by [`Limits`]: nothing a peer merely claims is
//!   allocated, and no input makes it panic.
//! - Encoding: [`encode_command`], [`write_array_header`], [`write_bulk`], [`write_bulk_int`] append
//!   commands to one buffer (a pipeline is many commands in one buffer); [`encode_value`] writes any
//!   value in its RESP3 form, for test servers and proxies.
//!
//! # Example
//! ```
//! use bytes::BytesMut;
//! use resp_codec::{encode_command, Decoder, Value};
//!
//! let mut out = BytesMut::new();
//! encode_command(&mut out, ["PING"]);
//! assert_eq!(&out[..], b"*1\r\n$4\r\nPING\r\n");
//!
//! let mut decoder = Decoder::new();
//! let mut input = BytesMut::from(&b"+PONG\r\n"[..]);
//! assert_eq!(
//!     decoder.decode(&mut input).unwrap(),
//!     Some(Value::SimpleString("PONG".into()))
//! );
//! ```
//!
//! # What it does not do
//! No I/O, no timeouts, no command semantics (which reply belongs to which command is the
//! connection's business). RESP3 streamed strings and aggregates (`$?`, `*?`), which Redis does not
//! send, are rejected as malformed.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decode;
mod encode;
mod value;

pub use decode::{
    DecodeError, Decoder, Limits, Malformed, ReplyLimit, DEFAULT_MAX_REPLY_BYTES,
    DEFAULT_MAX_REPLY_ELEMENTS,
};
pub use encode::{
    array_header, encode_command, encode_value, write_array_header, write_bulk, write_bulk_int,
    ArrayHeader,
};
pub use value::Value;
