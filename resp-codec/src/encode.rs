//! The encoder: commands (arrays of bulk strings) and whole values, appended to one `BytesMut`.
//!
//! Nothing here allocates on its own: integers are formatted on the stack, and every function only
//! appends to the caller's buffer, so a pipeline of many commands is encoded into one buffer and
//! can be written with one call.

use bytes::{BufMut, BytesMut};

use crate::Value;

/// Two-digit lookup table for integer formatting.
const DIGITS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// A formatted integer held on the stack (at most 20 digits and a sign).
struct IntBuf {
    buf: [u8; 21],
    start: usize,
}

impl IntBuf {
    fn unsigned(mut n: u64) -> IntBuf {
        let mut buf = [0u8; 21];
        let mut i = buf.len();
        while n >= 100 {
            let d = (n % 100) as usize * 2;
            n /= 100;
            i -= 2;
            buf[i..i + 2].copy_from_slice(&DIGITS[d..d + 2]);
        }
        if n >= 10 {
            let d = n as usize * 2;
            i -= 2;
            buf[i..i + 2].copy_from_slice(&DIGITS[d..d + 2]);
        } else {
            i -= 1;
            buf[i] = b'0' + n as u8;
        }
        IntBuf { buf, start: i }
    }

    fn signed(n: i64) -> IntBuf {
        let mut out = IntBuf::unsigned(n.unsigned_abs());
        if n < 0 {
            out.start -= 1;
            out.buf[out.start] = b'-';
        }
        out
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Appends a header line: the type byte, a decimal length, CRLF.
#[inline]
fn write_header(dst: &mut BytesMut, ty: u8, len: usize) {
    let n = IntBuf::unsigned(len as u64);
    dst.reserve(n.as_bytes().len() + 3);
    dst.put_u8(ty);
    dst.extend_from_slice(n.as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// Appends an array header `*<len>\r\n`; `len` elements must follow.
#[inline]
pub fn write_array_header(dst: &mut BytesMut, len: usize) {
    if len < 10 {
        // Most commands have fewer than ten arguments: no formatting loop.
        dst.put_slice(&[b'*', b'0' + len as u8, b'\r', b'\n']);
    } else {
        write_header(dst, b'*', len);
    }
}

/// An array header `*<len>\r\n` formatted on the stack, for a caller that rewrites a header in
/// place (a command that gains arguments after it was encoded).
///
/// ```
/// assert_eq!(resp_codec::array_header(12).as_ref(), b"*12\r\n");
/// ```
pub fn array_header(len: usize) -> ArrayHeader {
    let n = IntBuf::unsigned(len as u64);
    let digits = n.as_bytes();
    let mut buf = [0u8; 23];
    buf[0] = b'*';
    buf[1..=digits.len()].copy_from_slice(digits);
    buf[digits.len() + 1..digits.len() + 3].copy_from_slice(b"\r\n");
    ArrayHeader {
        buf,
        len: digits.len() + 3,
    }
}

/// What [`array_header`] formats: at most 20 digits between `*` and CRLF.
#[derive(Debug, Clone, Copy)]
pub struct ArrayHeader {
    buf: [u8; 23],
    len: usize,
}

impl AsRef<[u8]> for ArrayHeader {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Appends one bulk string `$<len>\r\n<data>\r\n`.
#[inline]
pub fn write_bulk(dst: &mut BytesMut, data: &[u8]) {
    let len = data.len();
    if len >= 100 {
        return write_long_bulk(dst, data);
    }
    // Names, keys and small values, most arguments of all: the header in one go, no formatting
    // loop, and a body small enough to inline into the callers that push arguments.
    dst.reserve(len + 7);
    if len < 10 {
        dst.put_slice(&[b'$', b'0' + len as u8, b'\r', b'\n']);
    } else {
        let d = len * 2;
        dst.put_slice(&[b'$', DIGITS[d], DIGITS[d + 1], b'\r', b'\n']);
    }
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// [`write_bulk`] for 100 bytes and more.
#[inline(never)]
fn write_long_bulk(dst: &mut BytesMut, data: &[u8]) {
    let len = data.len();
    if len < 1000 {
        // Values of a few hundred bytes, the most common size after small ones.
        dst.reserve(len + 8);
        let d = (len % 100) * 2;
        dst.put_slice(&[
            b'$',
            b'0' + (len / 100) as u8,
            DIGITS[d],
            DIGITS[d + 1],
            b'\r',
            b'\n',
        ]);
    } else {
        let n = IntBuf::unsigned(len as u64);
        dst.reserve(n.as_bytes().len() + len + 5);
        dst.put_u8(b'$');
        dst.put_slice(n.as_bytes());
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// Appends an integer as a bulk string (`$2\r\n42\r\n`), the form Redis expects for numeric
/// arguments, without allocating.
#[inline]
pub fn write_bulk_int(dst: &mut BytesMut, n: i64) {
    write_bulk(dst, IntBuf::signed(n).as_bytes());
}

/// Appends a whole command: an array of bulk strings.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::encode_command;
///
/// let mut buf = BytesMut::new();
/// encode_command(&mut buf, ["SET", "k", "v"]);
/// encode_command(&mut buf, [&b"GET"[..], b"k"]); // a pipeline: same buffer
/// assert_eq!(&buf[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
/// ```
pub fn encode_command<I>(dst: &mut BytesMut, args: I)
where
    I: IntoIterator,
    I::IntoIter: ExactSizeIterator,
    I::Item: AsRef<[u8]>,
{
    let args = args.into_iter();
    write_array_header(dst, args.len());
    for arg in args {
        write_bulk(dst, arg.as_ref());
    }
}

/// Appends a value in its RESP3 form (what a server sends; used by test servers and proxies).
///
/// [`Value::Null`] is written as RESP3's `_`; [`Value::Error`] as a simple error, or as a bulk error
/// when the message holds CR or LF. A [`Value::SimpleString`] holding CR or LF cannot be framed as
/// a simple string and is written as a bulk string.
pub fn encode_value(dst: &mut BytesMut, value: &Value) {
    match value {
        Value::SimpleString(s) => write_line_or_bulk(dst, b'+', b'$', s),
        Value::Error(s) => write_line_or_bulk(dst, b'-', b'!', s),
        Value::Integer(i) => {
            dst.put_u8(b':');
            dst.extend_from_slice(IntBuf::signed(*i).as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        Value::BulkString(b) => write_bulk(dst, b),
        Value::Array(items) => write_list(dst, b'*', items),
        Value::Set(items) => write_list(dst, b'~', items),
        Value::Push(items) => write_list(dst, b'>', items),
        Value::Null => dst.extend_from_slice(b"_\r\n"),
        Value::Map(pairs) => write_pairs(dst, b'%', pairs),
        Value::Double(d) => {
            dst.put_u8(b',');
            if d.is_nan() {
                dst.extend_from_slice(b"nan");
            } else if d.is_infinite() {
                dst.extend_from_slice(if *d > 0.0 { b"inf" } else { b"-inf" });
            } else {
                // `Debug` prints the shortest form that reads back exactly, with an exponent for
                // very large or small values; `BytesMut`'s `fmt::Write` never fails.
                let _ = std::fmt::Write::write_fmt(dst, format_args!("{d:?}"));
            }
            dst.extend_from_slice(b"\r\n");
        }
        Value::Boolean(b) => dst.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Value::BigNumber(n) => {
            dst.put_u8(b'(');
            dst.extend_from_slice(n);
            dst.extend_from_slice(b"\r\n");
        }
        Value::VerbatimString { format, text } => {
            write_header(dst, b'=', text.len() + 4);
            dst.extend_from_slice(format);
            dst.put_u8(b':');
            dst.extend_from_slice(text);
            dst.extend_from_slice(b"\r\n");
        }
        Value::Attribute { attributes, value } => {
            write_pairs(dst, b'|', attributes);
            encode_value(dst, value);
        }
    }
}

fn write_line_or_bulk(dst: &mut BytesMut, line_ty: u8, bulk_ty: u8, s: &[u8]) {
    if memchr::memchr2(b'\r', b'\n', s).is_some() {
        write_header(dst, bulk_ty, s.len());
        dst.extend_from_slice(s);
    } else {
        dst.reserve(s.len() + 3);
        dst.put_u8(line_ty);
        dst.extend_from_slice(s);
    }
    dst.extend_from_slice(b"\r\n");
}

fn write_list(dst: &mut BytesMut, ty: u8, items: &[Value]) {
    write_header(dst, ty, items.len());
    for item in items {
        encode_value(dst, item);
    }
}

fn write_pairs(dst: &mut BytesMut, ty: u8, pairs: &[(Value, Value)]) {
    write_header(dst, ty, pairs.len());
    for (k, v) in pairs {
        encode_value(dst, k);
        encode_value(dst, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_format_like_std() {
        for n in [
            0i64,
            1,
            9,
            10,
            99,
            100,
            12345,
            -1,
            -10,
            i64::MAX,
            i64::MIN,
            1_000_000_007,
        ] {
            assert_eq!(IntBuf::signed(n).as_bytes(), n.to_string().as_bytes());
        }
        assert_eq!(
            IntBuf::unsigned(u64::MAX).as_bytes(),
            u64::MAX.to_string().as_bytes()
        );
    }

    #[test]
    fn bulk_headers_are_right_at_every_length_boundary() {
        for len in [0usize, 1, 9, 10, 99, 100, 101, 999, 1000, 1001, 65_536] {
            let data = vec![b'x'; len];
            let mut buf = BytesMut::new();
            write_bulk(&mut buf, &data);
            let mut want = format!("${len}\r\n").into_bytes();
            want.extend_from_slice(&data);
            want.extend_from_slice(b"\r\n");
            assert_eq!(&buf[..], &want[..], "length {len}");
        }
    }

    #[test]
    fn array_headers_are_right_at_every_length_boundary() {
        for len in [0usize, 1, 9, 10, 11, 99, 100, 12_345, usize::MAX] {
            let mut buf = BytesMut::new();
            write_array_header(&mut buf, len);
            assert_eq!(&buf[..], format!("*{len}\r\n").as_bytes(), "length {len}");
            assert_eq!(array_header(len).as_ref(), &buf[..], "length {len}");
        }
    }

    #[test]
    fn integer_arguments_are_bulk_strings() {
        let mut buf = BytesMut::new();
        write_bulk_int(&mut buf, -42);
        assert_eq!(&buf[..], b"$3\r\n-42\r\n");
    }
}
