//! The incremental decoder.
//!
//! Decoding is done in two passes over the buffered bytes:
//!
//! 1. A *check* pass walks the frame's headers: it validates every header, skips bulk payloads
//!    by their length, keeps a stack of element counts for the aggregates that are still open, and
//!    notes each header it read (its kind and where its payload is) in a list the decoder keeps
//!    from frame to frame. When the frame is incomplete it returns `Ok(None)` and keeps its place
//!    (offset, open aggregates, the headers read, where the unfinished line search stopped, how
//!    many bytes are needed), so the next call resumes where this one stopped: a large reply that
//!    arrives in many reads is scanned once, not once per read.
//! 2. Once the whole frame is present, it is split off the buffer and frozen, and a *build* pass
//!    turns the noted headers into a [`Value`] whose payloads are slices of that frozen frame (no
//!    payload copy, and no second parse of the headers).
//!
//! The check pass is also the guard against hostile peers: it enforces the [`Limits`] before anything
//! is allocated, so an element count or a length a peer merely claims never reserves memory. It
//! also charges what actually arrives: the offset it reached is the reply's bytes so far and its
//! list of noted headers the reply's values so far, both checked on every header, so a reply that
//! never completes (an endless aggregate of tiny elements) fails as soon as it passes
//! `max_reply_bytes` or `max_reply_elements`, and the list stays within the latter.

use bytes::{Buf, Bytes, BytesMut};

use crate::Value;

/// Limits that bound what a peer can make the decoder accept.
///
/// The defaults match what Redis itself allows and are safe for untrusted peers:
///
/// | limit | default |
/// |---|---|
/// | [`max_bulk_len`](Limits::max_bulk_len) | 512 MiB (Redis's `proto-max-bulk-len`) |
/// | [`max_aggregate_len`](Limits::max_aggregate_len) | 4,294,967,295 elements |
/// | [`max_depth`](Limits::max_depth) | 128 nested aggregates |
/// | [`max_line_len`](Limits::max_line_len) | 1 MiB for a simple string, error, number or header line |
/// | [`max_reply_bytes`](Limits::max_reply_bytes) | 513 MiB in one reply, counted as it arrives |
/// | [`max_reply_elements`](Limits::max_reply_elements) | 4 Mi (4,194,304) values in one reply, counted as they arrive |
///
/// Counts and lengths are only checked against these limits, never used to reserve memory before
/// the bytes they describe have arrived. The first four bound what a peer *declares*; the last two
/// bound what it actually *sends*: a reply of an endless stream of tiny elements (`_\r\n`, three
/// bytes each) declares nothing wrong, yet each element costs the decoder a noted header (24 bytes)
/// until the reply completes. Both are charged while the reply arrives, so such a reply fails as
/// soon as it passes either limit, not when (if ever) it completes; what the decoder holds for an
/// incomplete reply is then at most `max_reply_bytes` of buffer plus 24 bytes per element.
///
/// ```
/// use resp_codec::{Decoder, Limits};
///
/// let decoder = Decoder::with_limits(Limits::default().max_depth(16).max_bulk_len(1 << 20));
/// assert_eq!(decoder.limits().get_max_depth(), 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_bulk_len: usize,
    max_aggregate_len: usize,
    max_depth: usize,
    max_line_len: usize,
    max_reply_bytes: usize,
    max_reply_elements: usize,
}

/// The default of [`Limits::max_reply_bytes`]: 513 MiB, one bulk of Redis's largest size
/// (`proto-max-bulk-len`, 512 MiB) with 1 MiB of room for its header and its siblings.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 513 * 1024 * 1024;

/// The default of [`Limits::max_reply_elements`]: 4 Mi (4,194,304) values.
///
/// Why this many: the decoder notes 24 bytes per value until its reply completes, so an endless
/// aggregate of the smallest elements (`_\r\n`, 3 bytes; `$0\r\n\r\n`, 6 bytes) is cut off
/// with about 96 MiB of notes and 12-24 MiB of buffer: under the client's promise of 200 MiB.
/// It still admits an `LRANGE` of 4 million elements or an `HGETALL` of 2 million fields; raise
/// it for larger replies (a complete reply costs about 24 + 32 bytes per value while it is built).
pub const DEFAULT_MAX_REPLY_ELEMENTS: usize = 4 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_aggregate_len: u32::MAX as usize,
            max_depth: 128,
            max_line_len: 1024 * 1024,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            max_reply_elements: DEFAULT_MAX_REPLY_ELEMENTS,
        }
    }
}

impl Limits {
    /// The largest bulk string, bulk error or verbatim string accepted, in bytes. Defaults to 512 MiB.
    #[must_use]
    pub fn max_bulk_len(mut self, bytes: usize) -> Self {
        self.max_bulk_len = bytes;
        self
    }

    /// The most elements an array, set or push may declare (pairs, for a map or an attribute).
    /// Defaults to 4,294,967,295.
    #[must_use]
    pub fn max_aggregate_len(mut self, elements: usize) -> Self {
        self.max_aggregate_len = elements;
        self
    }

    /// How many aggregates may be nested inside one another. Defaults to 128. The decoder uses no
    /// recursion, so a large value is safe for the stack; it only bounds the decoder's memory.
    #[must_use]
    pub fn max_depth(mut self, levels: usize) -> Self {
        self.max_depth = levels;
        self
    }

    /// The longest line (simple string, error, integer, double, big number, or a header) accepted,
    /// without its CRLF. Defaults to 1 MiB.
    #[must_use]
    pub fn max_line_len(mut self, bytes: usize) -> Self {
        self.max_line_len = bytes;
        self
    }

    /// The most bytes one reply may span, headers, payloads and CRLFs included, counted as they
    /// arrive (and, for a bulk, as soon as its declared length would pass the limit). Defaults to
    /// [`DEFAULT_MAX_REPLY_BYTES`] (513 MiB). Breaking it is [`DecodeError::ReplyTooLarge`] with
    /// [`ReplyLimit::Bytes`]. Values below 16 count as 16.
    #[must_use]
    pub fn max_reply_bytes(mut self, bytes: usize) -> Self {
        self.max_reply_bytes = bytes.max(16);
        self
    }

    /// The most values one reply may hold, counted as they arrive: every value at every level of
    /// nesting, aggregates included (an `HGETALL` reply of `n` fields is `2n + 1` values; a
    /// scalar reply is 1). Defaults to [`DEFAULT_MAX_REPLY_ELEMENTS`] (4 Mi, see there why);
    /// values below 1 count as 1. Breaking it is [`DecodeError::ReplyTooLarge`] with
    /// [`ReplyLimit::Elements`].
    #[must_use]
    pub fn max_reply_elements(mut self, elements: usize) -> Self {
        self.max_reply_elements = elements.max(1);
        self
    }

    /// See [`Limits::max_reply_bytes`].
    pub fn get_max_reply_bytes(&self) -> usize {
        self.max_reply_bytes
    }

    /// See [`Limits::max_reply_elements`].
    pub fn get_max_reply_elements(&self) -> usize {
        self.max_reply_elements
    }

    /// See [`Limits::max_bulk_len`].
    pub fn get_max_bulk_len(&self) -> usize {
        self.max_bulk_len
    }

    /// See [`Limits::max_aggregate_len`].
    pub fn get_max_aggregate_len(&self) -> usize {
        self.max_aggregate_len
    }

    /// See [`Limits::max_depth`].
    pub fn get_max_depth(&self) -> usize {
        self.max_depth
    }

    /// See [`Limits::max_line_len`].
    pub fn get_max_line_len(&self) -> usize {
        self.max_line_len
    }
}

/// Which part of a frame was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// A length or element count that is not a number, or negative other than the RESP2 null `-1`.
    #[error("length")]
    Length,
    /// An integer (`:`) that is not a decimal `i64`.
    #[error("integer")]
    Integer,
    /// A double (`,`) that is not a decimal number, `inf`, `-inf` or `nan`.
    #[error("double")]
    Double,
    /// A boolean (`#`) other than `t` or `f`.
    #[error("boolean")]
    Boolean,
    /// A big number (`(`) that is not an optional `-` followed by decimal digits.
    #[error("big number")]
    BigNumber,
    /// A verbatim string (`=`) without its `xxx:` format prefix.
    #[error("verbatim string")]
    Verbatim,
    /// A RESP3 null (`_`) with something between `_` and CRLF.
    #[error("null")]
    Null,
}

/// Which of a reply's running totals passed its limit (see [`DecodeError::ReplyTooLarge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyLimit {
    /// [`Limits::max_reply_bytes`].
    #[error("bytes (max_reply_bytes)")]
    Bytes,
    /// [`Limits::max_reply_elements`].
    #[error("elements (max_reply_elements)")]
    Elements,
}

/// The byte stream is not valid RESP, or breaks a [`Limits`] bound. The stream cannot be
/// resynchronised: the connection it came from must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A frame starts with a byte that is no RESP2/RESP3 type.
    #[error("invalid RESP type byte 0x{0:02x}")]
    InvalidTypeByte(u8),
    /// A line ends with a lone `\n` or a `\r` not followed by `\n`, or a payload is not followed
    /// by CRLF.
    #[error("RESP line or payload not terminated by CRLF")]
    MissingCrlf,
    /// A header or a scalar could not be parsed.
    #[error("malformed RESP {0}")]
    Malformed(Malformed),
    /// A bulk string, bulk error or verbatim string declared more bytes than allowed.
    #[error("RESP bulk of {len} bytes exceeds the limit of {max} bytes")]
    BulkTooLarge {
        /// The declared length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// An aggregate declared more elements than allowed.
    #[error("RESP aggregate of {len} elements exceeds the limit of {max}")]
    AggregateTooLarge {
        /// The declared element (or pair) count.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// Aggregates are nested deeper than allowed.
    #[error("RESP aggregates nested deeper than {max} levels")]
    TooDeep {
        /// The limit in force.
        max: usize,
    },
    /// One reply passed [`Limits::max_reply_bytes`] or [`Limits::max_reply_elements`], counted as
    /// it arrived: raised as soon as the limit is passed, even by a reply that never completes.
    #[error("RESP reply exceeds the limit of {max} {limit}")]
    ReplyTooLarge {
        /// Which limit.
        limit: ReplyLimit,
        /// The limit in force.
        max: usize,
    },
    /// A line is longer than allowed.
    #[error("RESP line longer than {max} bytes")]
    LineTooLong {
        /// The limit in force.
        max: usize,
    },
    /// The stream ended in the middle of a frame (returned by [`Decoder::decode_eof`]).
    #[error("RESP stream ended in the middle of a frame")]
    Truncated,
}

impl Limits {
    /// The error for a reply that passed `max_reply_bytes`.
    #[cold]
    fn too_many_bytes(&self) -> DecodeError {
        DecodeError::ReplyTooLarge {
            limit: ReplyLimit::Bytes,
            max: self.max_reply_bytes,
        }
    }

    /// The error for a reply that passed `max_reply_elements`.
    #[cold]
    fn too_many_elements(&self) -> DecodeError {
        DecodeError::ReplyTooLarge {
            limit: ReplyLimit::Elements,
            max: self.max_reply_elements,
        }
    }
}

impl From<Malformed> for DecodeError {
    fn from(m: Malformed) -> Self {
        DecodeError::Malformed(m)
    }
}

/// The kinds of aggregate, with how many values each declared unit stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKind {
    Array,
    Set,
    Push,
    Map,
    Attribute,
}

impl AggKind {
    /// Values that follow the header: `n` for lists, `2n` for maps, `2n + 1` for attributes
    /// (their pairs, then the value they are attached to).
    fn values(self, n: u64) -> u64 {
        match self {
            AggKind::Array | AggKind::Set | AggKind::Push => n,
            AggKind::Map => 2 * n,
            AggKind::Attribute => 2 * n + 1,
        }
    }
}

/// One header, with the ranges of its payload in the buffer.
#[derive(Debug, Clone, Copy)]
enum Head {
    Simple(usize, usize),
    Error(usize, usize),
    Integer(i64),
    Double(f64),
    Boolean(bool),
    BigNumber(usize, usize),
    Null,
    Bulk(usize, usize),
    Verbatim([u8; 3], usize, usize),
    Aggregate(AggKind, u64),
}

/// The outcome of reading one header.
#[derive(Debug)]
enum Step {
    /// The header (and its payload, for bulks) is complete; the next frame starts at `.1`.
    Done(Head, usize),
    /// More bytes are needed: at least `need` bytes in all; an unfinished line search may resume
    /// at `scan_from`.
    Need { need: usize, scan_from: usize },
}

/// Where the check pass stopped inside an incomplete frame.
#[derive(Debug, Default, Clone)]
struct Progress {
    /// Offset of the next header to read.
    pos: usize,
    /// For each open aggregate, how many values it still expects.
    open: Vec<u64>,
    /// Buffer length below which no progress is possible.
    need: usize,
    /// Where to resume the search for the CR of the header at `pos` (0: from its start).
    scan_from: usize,
    /// The headers of the frame read so far, in order, for the build pass. Only as long as what
    /// the peer actually sent (one per header present in the buffer), never what it declared.
    heads: Vec<Head>,
}

impl Progress {
    /// Forgets the frame being checked; the memory is kept unless a huge frame grew it.
    fn clear(&mut self) {
        self.pos = 0;
        self.open.clear();
        self.need = 0;
        self.scan_from = 0;
        self.heads.clear();
        if self.heads.capacity() > MAX_KEPT_HEADS {
            self.heads = Vec::new();
        }
    }
}

/// Headers whose room the decoder keeps between frames (a reply of this many elements or fewer
/// allocates no list of its own); a larger frame's list is freed after it.
const MAX_KEPT_HEADS: usize = 4096;

/// An incremental RESP2/RESP3 decoder.
///
/// [`decode`](Decoder::decode) follows tokio-util's `Decoder` contract: `Ok(Some(value))` consumes
/// one whole frame from the front of the buffer; `Ok(None)` consumes nothing and means "read more
/// bytes, append them, call again"; `Err` means the stream is corrupt and the connection must be
/// dropped. Between an `Ok(None)` and the next call the caller may only *append* to the buffer
/// (or call [`reset`](Decoder::reset) before decoding from a different buffer): the decoder
/// remembers how far it has checked so that a large frame is not scanned again on every read.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::{Decoder, Value};
///
/// let mut decoder = Decoder::new();
/// let mut buf = BytesMut::from(&b"*2\r\n$3\r\nfoo\r\n:4"[..]);
/// assert_eq!(decoder.decode(&mut buf).unwrap(), None); // incomplete: nothing consumed
/// buf.extend_from_slice(b"2\r\n+OK\r\n");
/// let value = decoder.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(
///     value,
///     Value::Array(vec![Value::BulkString("foo".into()), Value::Integer(42)])
/// );
/// assert_eq!(&buf[..], b"+OK\r\n"); // the next frame is left in place
/// ```
#[derive(Debug, Default, Clone)]
pub struct Decoder {
    limits: Limits,
    progress: Progress,
}

impl Decoder {
    /// A decoder with the default [`Limits`].
    pub fn new() -> Self {
        Decoder::default()
    }

    /// A decoder with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        Decoder {
            limits,
            progress: Progress::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forgets any partially checked frame, for instance before reusing the decoder on a new
    /// connection.
    pub fn reset(&mut self) {
        self.progress.clear();
    }

    /// How many bytes the buffer must hold in all before the next call can make progress, when
    /// the decoder knows (inside a bulk payload). An I/O layer may use it to size its next read;
    /// it is only ever a number of bytes the peer has already started to send, and callers should
    /// still cap any reservation they make with it.
    pub fn bytes_needed(&self) -> Option<usize> {
        (self.progress.need > self.progress.pos + 1).then_some(self.progress.need)
    }

    /// Decodes one frame from the front of `src`.
    ///
    /// # Errors
    /// A [`DecodeError`] when the bytes are not valid RESP or exceed the [`Limits`]. The decoder is
    /// reset; the buffer content is unspecified and the stream must not be decoded further.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Value>, DecodeError> {
        // Fast path for a frame that is a single scalar (most replies: +OK, :1, $<bulk>, $-1):
        // one pass, and no frame-wide `Bytes` to slice from.
        if self.progress.pos == 0 && self.progress.open.is_empty() {
            if src.len() < self.progress.need {
                return Ok(None);
            }
            match src.first() {
                None => return Ok(None),
                Some(b'*' | b'%' | b'~' | b'>' | b'|') => {}
                // The reply of every write, often by the hundred in a row: checked whole.
                Some(b'+') if src.starts_with(b"+OK\r\n") => {
                    self.progress.need = 0;
                    self.progress.scan_from = 0;
                    src.advance(5);
                    return Ok(Some(Value::SimpleString(Bytes::from_static(b"OK"))));
                }
                // A bulk string of fewer than 10,000 bytes (a GET's reply): its header read in
                // place. Anything else (a null, a longer header, a frame not complete yet, an
                // error) takes the general path.
                Some(b'$') => {
                    if let Some(value) = self.short_bulk(src) {
                        return Ok(Some(value));
                    }
                    return self.decode_scalar(src);
                }
                Some(_) => return self.decode_scalar(src),
            }
        }
        match self.check(src) {
            Ok(Some(len)) => {
                let frame = src.split_to(len).freeze();
                let value = build(&frame, &self.progress.heads);
                self.reset();
                value.map(Some)
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    /// Decodes up to `max` frames from the front of `src`, appending them to `out`, and returns
    /// how many it decoded: the replies of a pipeline read in one call. A run of `+OK` frames
    /// (the replies of a pipeline of writes) is taken in one step.
    ///
    /// It stops early, as [`decode`](Decoder::decode) returns `Ok(None)`, when the next frame
    /// is not complete yet; frames decoded before an error stay in `out`.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use resp_codec::{Decoder, Value};
    ///
    /// let mut decoder = Decoder::new();
    /// let mut buf = BytesMut::from(&b"+OK\r\n+OK\r\n:3\r\n$1\r\nx\r\n$4\r\nne"[..]);
    /// let mut replies = Vec::new();
    /// assert_eq!(decoder.decode_into(&mut buf, &mut replies, 3).unwrap(), 3);
    /// assert_eq!(replies[2], Value::Integer(3));
    /// // The rest: one complete frame, then one that is not.
    /// assert_eq!(decoder.decode_into(&mut buf, &mut replies, 10).unwrap(), 1);
    /// assert_eq!(&buf[..], b"$4\r\nne");
    /// ```
    ///
    /// # Errors
    /// As [`decode`](Decoder::decode).
    pub fn decode_into(
        &mut self,
        src: &mut BytesMut,
        out: &mut Vec<Value>,
        max: usize,
    ) -> Result<usize, DecodeError> {
        let mut done = 0;
        while done < max {
            if self.progress.pos == 0 && self.progress.open.is_empty() {
                // Count the `+OK`s in a row and take them with one advance.
                let run = src
                    .chunks_exact(5)
                    .take(max - done)
                    .take_while(|frame| *frame == b"+OK\r\n")
                    .count();
                if run > 0 {
                    self.progress.need = 0;
                    self.progress.scan_from = 0;
                    src.advance(run * 5);
                    out.extend(
                        std::iter::repeat_with(|| Value::SimpleString(Bytes::from_static(b"OK")))
                            .take(run),
                    );
                    done += run;
                    continue;
                }
            }
            match self.decode(src)? {
                Some(value) => {
                    out.push(value);
                    done += 1;
                }
                None => break,
            }
        }
        Ok(done)
    }

    /// Like [`decode`](Decoder::decode), for when the peer has closed the stream: an incomplete
    /// frame left in the buffer is an error rather than a reason to wait.
    ///
    /// # Errors
    /// As `decode`, plus [`DecodeError::Truncated`] when `src` holds part of a frame.
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Value>, DecodeError> {
        match self.decode(src)? {
            Some(v) => Ok(Some(v)),
            None if src.is_empty() => Ok(None),
            None => {
                self.reset();
                Err(DecodeError::Truncated)
            }
        }
    }

    /// A complete `$<1-4 digits>\r\n<data>\r\n` frame at the front of `src`, taken; `None`
    /// (nothing consumed) for anything else.
    #[inline]
    fn short_bulk(&mut self, src: &mut BytesMut) -> Option<Value> {
        let (start, end) = short_bulk_at(src, 0, &self.limits)?;
        self.progress.need = 0;
        self.progress.scan_from = 0;
        Some(Value::BulkString(cut(src, end + 2, start, end)))
    }

    /// Decodes a frame that is one scalar, in one pass.
    fn decode_scalar(&mut self, src: &mut BytesMut) -> Result<Option<Value>, DecodeError> {
        let (head, next) = match read_head(src, 0, self.progress.scan_from, &self.limits) {
            // (A bulk's length was checked against `max_reply_bytes` by `read_head`; a line's is
            // checked here, as it arrives.)
            Ok(Step::Done(_, next)) | Ok(Step::Need { need: next, .. })
                if next > self.limits.max_reply_bytes =>
            {
                self.reset();
                return Err(self.limits.too_many_bytes());
            }
            Ok(Step::Done(head, next)) => (head, next),
            Ok(Step::Need { need, scan_from }) => {
                self.progress.need = need;
                self.progress.scan_from = scan_from;
                return Ok(None);
            }
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        self.progress.need = 0;
        self.progress.scan_from = 0;
        let payload = |src: &mut BytesMut, start: usize, end: usize| cut(src, next, start, end);
        let value = match head {
            // The most common replies of all are shared statics: no reference count to touch.
            Head::Simple(s, e) if e - s <= 6 => match &src[s..e] {
                b"OK" => static_simple(src, next, b"OK"),
                b"PONG" => static_simple(src, next, b"PONG"),
                b"QUEUED" => static_simple(src, next, b"QUEUED"),
                _ => Value::SimpleString(payload(src, s, e)),
            },
            Head::Simple(s, e) => Value::SimpleString(payload(src, s, e)),
            Head::Error(s, e) => Value::Error(payload(src, s, e)),
            Head::BigNumber(s, e) => Value::BigNumber(payload(src, s, e)),
            Head::Bulk(s, e) => Value::BulkString(payload(src, s, e)),
            Head::Verbatim(format, s, e) => Value::VerbatimString {
                format,
                text: payload(src, s, e),
            },
            head => {
                src.advance(next);
                match head {
                    Head::Integer(i) => Value::Integer(i),
                    Head::Double(d) => Value::Double(d),
                    Head::Boolean(b) => Value::Boolean(b),
                    // Null, and an empty aggregate never reaches here (aggregates take the
                    // general path).
                    _ => Value::Null,
                }
            }
        };
        Ok(Some(value))
    }

    /// The check pass: returns the length of the first frame once it is complete.
    fn check(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        let p = &mut self.progress;
        if buf.len() < p.pos {
            // The caller broke the append-only contract; start over rather than trust old offsets.
            p.clear();
        }
        if buf.len() < p.need {
            return Ok(None);
        }
        // What the reply may still grow by before it breaks a limit: its offsets are its bytes so
        // far, its noted headers its values so far (see `Limits::max_reply_bytes`).
        let max_bytes = self.limits.max_reply_bytes;
        let max_elements = self.limits.max_reply_elements;
        loop {
            if p.pos >= buf.len() {
                p.need = p.pos + 1;
                if p.need > max_bytes {
                    return Err(self.limits.too_many_bytes());
                }
                return Ok(None);
            }
            // Most elements of an aggregate are short bulks (MGET, LRANGE, HGETALL): read in place
            // here, without the general header reader's call.
            let short = match buf[p.pos] {
                b'$' => short_bulk_at(buf, p.pos, &self.limits),
                _ => None,
            };
            let head = match short {
                Some((start, end)) => {
                    p.pos = end + 2;
                    p.scan_from = 0;
                    Head::Bulk(start, end)
                }
                None => match read_head(buf, p.pos, p.scan_from, &self.limits)? {
                    Step::Need { need, .. } if need > max_bytes => {
                        return Err(self.limits.too_many_bytes());
                    }
                    Step::Need { need, scan_from } => {
                        p.need = need;
                        p.scan_from = scan_from;
                        return Ok(None);
                    }
                    Step::Done(head, next) => {
                        p.pos = next;
                        p.scan_from = 0;
                        head
                    }
                },
            };
            if p.pos > max_bytes {
                return Err(self.limits.too_many_bytes());
            }
            if p.heads.len() >= max_elements {
                return Err(self.limits.too_many_elements());
            }
            p.heads.push(head);
            if let Head::Aggregate(kind, n) = head {
                let values = kind.values(n);
                if values > 0 {
                    if p.open.len() >= self.limits.max_depth {
                        return Err(DecodeError::TooDeep {
                            max: self.limits.max_depth,
                        });
                    }
                    p.open.push(values);
                    // The short bulks that follow (the elements of an MGET, LRANGE, HGETALL
                    // reply), all but the aggregate's last value, in a tight loop.
                    // (`short_bulk_at` takes none that would pass `max_reply_bytes`, and `room`
                    // keeps the headers noted within `max_reply_elements`.)
                    let mut left = values;
                    let mut room = max_elements - p.heads.len();
                    while left > 1 && room > 0 && buf.get(p.pos) == Some(&b'$') {
                        let Some((start, end)) = short_bulk_at(buf, p.pos, &self.limits) else {
                            break;
                        };
                        p.heads.push(Head::Bulk(start, end));
                        p.pos = end + 2;
                        left -= 1;
                        room -= 1;
                    }
                    if let Some(top) = p.open.last_mut() {
                        *top = left;
                    }
                    continue;
                }
            }
            // One value is complete: close every aggregate it completes.
            loop {
                match p.open.last_mut() {
                    None => return Ok(Some(p.pos)),
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        p.open.pop();
                    }
                }
            }
        }
    }
}

/// Consumes the frame `src[..next]` and returns its payload `start..end` without copying: the
/// frame is split off, trimmed of its header and CRLF, and frozen.
fn cut(src: &mut BytesMut, next: usize, start: usize, end: usize) -> Bytes {
    let mut frame = src.split_to(next);
    frame.truncate(end);
    frame.advance(start);
    frame.freeze()
}

/// Consumes a frame whose payload equals `text`, returning it as a static simple string.
fn static_simple(src: &mut BytesMut, next: usize, text: &'static [u8]) -> Value {
    src.advance(next);
    Value::SimpleString(Bytes::from_static(text))
}

/// An aggregate being built by the build pass.
struct Partial {
    kind: AggKind,
    left: u64,
    items: Vec<Value>,
    pairs: Vec<(Value, Value)>,
    key: Option<Value>,
}

impl Partial {
    /// An aggregate of `n` declared units, of which at most `room` values follow in the frame.
    fn new(kind: AggKind, n: u64, room: usize) -> Partial {
        // `n` was checked against the limits and the frame is complete, so its values are all
        // there; the reservation is capped by the values the frame holds all the same.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let (items, pairs) = match kind {
            AggKind::Array | AggKind::Set | AggKind::Push => {
                (Vec::with_capacity(n.min(room)), Vec::new())
            }
            AggKind::Map | AggKind::Attribute => (Vec::new(), Vec::with_capacity(n.min(room / 2))),
        };
        Partial {
            kind,
            left: kind.values(n as u64),
            items,
            pairs,
            key: None,
        }
    }

    /// Adds one value; returns the finished aggregate when it was the last one.
    #[inline]
    fn push(&mut self, v: Value) -> Option<Value> {
        self.left -= 1;
        match self.kind {
            AggKind::Array | AggKind::Set | AggKind::Push => self.items.push(v),
            AggKind::Attribute if self.left == 0 => {
                return Some(Value::Attribute {
                    attributes: std::mem::take(&mut self.pairs),
                    value: Box::new(v),
                });
            }
            AggKind::Map | AggKind::Attribute => match self.key.take() {
                Some(k) => self.pairs.push((k, v)),
                None => self.key = Some(v),
            },
        }
        if self.left > 0 {
            return None;
        }
        let items = std::mem::take(&mut self.items);
        Some(match self.kind {
            AggKind::Array => Value::Array(items),
            AggKind::Set => Value::Set(items),
            AggKind::Push => Value::Push(items),
            AggKind::Map | AggKind::Attribute => Value::Map(std::mem::take(&mut self.pairs)),
        })
    }
}

fn empty_aggregate(kind: AggKind) -> Value {
    match kind {
        AggKind::Array => Value::Array(Vec::new()),
        AggKind::Set => Value::Set(Vec::new()),
        AggKind::Push => Value::Push(Vec::new()),
        // An attribute always has a value after it, so it is never empty.
        AggKind::Map | AggKind::Attribute => Value::Map(Vec::new()),
    }
}

/// The build pass over one complete frame, from the headers its check pass noted.
fn build(frame: &Bytes, heads: &[Head]) -> Result<Value, DecodeError> {
    let mut open: Vec<Partial> = Vec::new();
    let mut next = 0;
    while let Some(&head) = heads.get(next) {
        next += 1;
        let mut value = match head {
            Head::Bulk(s, e) => Value::BulkString(frame.slice(s..e)),
            Head::Simple(s, e) => Value::SimpleString(frame.slice(s..e)),
            Head::Error(s, e) => Value::Error(frame.slice(s..e)),
            Head::Integer(i) => Value::Integer(i),
            Head::Double(d) => Value::Double(d),
            Head::Boolean(b) => Value::Boolean(b),
            Head::BigNumber(s, e) => Value::BigNumber(frame.slice(s..e)),
            Head::Null => Value::Null,
            Head::Verbatim(format, s, e) => Value::VerbatimString {
                format,
                text: frame.slice(s..e),
            },
            Head::Aggregate(kind, n) => {
                if kind.values(n) == 0 {
                    empty_aggregate(kind)
                } else {
                    let mut list = Partial::new(kind, n, heads.len() - next);
                    if matches!(kind, AggKind::Array | AggKind::Set | AggKind::Push) {
                        // The bulk strings of a list (MGET, LRANGE, SMEMBERS) go straight in,
                        // all but its last element, which closes it below like any value.
                        while list.left > 1 {
                            let Some(&Head::Bulk(s, e)) = heads.get(next) else {
                                break;
                            };
                            list.items.push(Value::BulkString(frame.slice(s..e)));
                            list.left -= 1;
                            next += 1;
                        }
                    }
                    open.push(list);
                    continue;
                }
            }
        };
        loop {
            let Some(top) = open.last_mut() else {
                return Ok(value);
            };
            match top.push(value) {
                None => break,
                Some(done) => {
                    open.pop();
                    value = done;
                }
            }
        }
    }
    // The check pass saw this frame complete, so its headers close every aggregate they open.
    Err(DecodeError::Truncated)
}

/// Finds the CRLF that ends the line starting at `start`, searching from `scan_from`.
/// Returns the offset of the CR, or `Need` with where to resume.
#[inline]
fn find_crlf(
    buf: &[u8],
    start: usize,
    scan_from: usize,
    max: usize,
) -> Result<Result<usize, Step>, DecodeError> {
    let from = scan_from.max(start);
    // Most RESP lines are a few bytes long (`+OK`, `$100`, `:42`): a plain loop finds their end
    // before a vectorised search would have finished its set-up. Longer lines go to memchr.
    let rest = &buf[from..];
    let short = rest.len().min(16);
    let found = match rest[..short].iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) => Some(i),
        None => memchr::memchr2(b'\r', b'\n', &rest[short..]).map(|i| i + short),
    };
    match found {
        Some(i) => {
            let cr = from + i;
            if cr - start > max {
                return Err(DecodeError::LineTooLong { max });
            }
            if buf[cr] != b'\r' {
                return Err(DecodeError::MissingCrlf);
            }
            match buf.get(cr + 1) {
                Some(b'\n') => Ok(Ok(cr)),
                Some(_) => Err(DecodeError::MissingCrlf),
                None => Ok(Err(Step::Need {
                    need: cr + 2,
                    scan_from: cr,
                })),
            }
        }
        None => {
            if buf.len() - start > max {
                return Err(DecodeError::LineTooLong { max });
            }
            Ok(Err(Step::Need {
                need: buf.len() + 1,
                scan_from: buf.len(),
            }))
        }
    }
}

/// The payload's bounds of a complete bulk string with a 1-4 digit header (`$100\r\n`, 100
/// bytes, `\r\n`) at `pos`, read in place; `None` for anything else (a null, a longer header,
/// an incomplete or malformed frame), which the general path then reads or rejects.
#[inline]
fn short_bulk_at(buf: &[u8], pos: usize, limits: &Limits) -> Option<(usize, usize)> {
    let mut len = 0usize;
    let mut at = pos + 1;
    while let Some(&d) = buf.get(at) {
        if !d.is_ascii_digit() || at > pos + 4 {
            break;
        }
        len = len * 10 + usize::from(d - b'0');
        at += 1;
    }
    let digits = at - pos - 1;
    if digits == 0
        || digits > limits.max_line_len
        || buf.get(at..at + 2) != Some(b"\r\n")
        || len > limits.max_bulk_len
    {
        return None;
    }
    let start = at + 2;
    let end = start + len;
    // Offsets are from the start of the reply, so `end + 2` is the reply's length so far.
    if buf.get(end..end + 2) != Some(b"\r\n") || end + 2 > limits.max_reply_bytes {
        return None;
    }
    Some((start, end))
}

/// Reads the header (and, for bulks, the payload) that starts at `pos`, which must be in bounds.
#[inline]
fn read_head(
    buf: &[u8],
    pos: usize,
    scan_from: usize,
    limits: &Limits,
) -> Result<Step, DecodeError> {
    let ty = buf[pos];
    let start = pos + 1;
    let cr = match find_crlf(buf, start, scan_from, limits.max_line_len)? {
        Ok(cr) => cr,
        Err(need) => return Ok(need),
    };
    let line = &buf[start..cr];
    let next = cr + 2;
    let head = match ty {
        b'+' => Head::Simple(start, cr),
        b'-' => Head::Error(start, cr),
        b':' => Head::Integer(parse_i64(line).ok_or(Malformed::Integer)?),
        b'$' | b'!' | b'=' => {
            let Some(len) = parse_len(line, ty == b'$')? else {
                return Ok(Step::Done(Head::Null, next));
            };
            if len > limits.max_bulk_len as u64 {
                return Err(DecodeError::BulkTooLarge {
                    len,
                    max: limits.max_bulk_len,
                });
            }
            // `len` fits in usize: it is at most `max_bulk_len`.
            let end = next.saturating_add(len as usize);
            // `pos` is an offset from the start of the reply: a bulk that would take the reply
            // past `max_reply_bytes` is refused on its header, before its bytes arrive.
            if end.saturating_add(2) > limits.max_reply_bytes {
                return Err(limits.too_many_bytes());
            }
            if buf.len() < end.saturating_add(2) {
                return Ok(Step::Need {
                    need: end.saturating_add(2),
                    scan_from: 0,
                });
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(DecodeError::MissingCrlf);
            }
            let head = match ty {
                b'$' => Head::Bulk(next, end),
                b'!' => Head::Error(next, end),
                _ => {
                    if len < 4 || buf[next + 3] != b':' {
                        return Err(Malformed::Verbatim.into());
                    }
                    let format = [buf[next], buf[next + 1], buf[next + 2]];
                    Head::Verbatim(format, next + 4, end)
                }
            };
            return Ok(Step::Done(head, end + 2));
        }
        b'*' | b'~' | b'%' | b'>' | b'|' => {
            let kind = match ty {
                b'*' => AggKind::Array,
                b'~' => AggKind::Set,
                b'%' => AggKind::Map,
                b'>' => AggKind::Push,
                _ => AggKind::Attribute,
            };
            let Some(n) = parse_len(line, ty == b'*')? else {
                return Ok(Step::Done(Head::Null, next));
            };
            if n > limits.max_aggregate_len as u64 {
                return Err(DecodeError::AggregateTooLarge {
                    len: n,
                    max: limits.max_aggregate_len,
                });
            }
            Head::Aggregate(kind, n)
        }
        b'_' => {
            if !line.is_empty() {
                return Err(Malformed::Null.into());
            }
            Head::Null
        }
        b'#' => match line {
            b"t" => Head::Boolean(true),
            b"f" => Head::Boolean(false),
            _ => return Err(Malformed::Boolean.into()),
        },
        b',' => Head::Double(parse_double(line).ok_or(Malformed::Double)?),
        b'(' => {
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(Malformed::BigNumber.into());
            }
            Head::BigNumber(start, cr)
        }
        other => return Err(DecodeError::InvalidTypeByte(other)),
    };
    Ok(Step::Done(head, next))
}

/// Parses a decimal `i64` (optional `-`, at least one digit), rejecting overflow.
#[inline]
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(i64::from(d))?
        } else {
            v.checked_add(i64::from(d))?
        };
    }
    Some(v)
}

/// Parses a length: `Ok(None)` for `-1` when `null_ok`, an error for any other negative or
/// non-numeric length.
#[inline]
fn parse_len(s: &[u8], null_ok: bool) -> Result<Option<u64>, DecodeError> {
    if null_ok && s == b"-1" {
        return Ok(None);
    }
    if s.is_empty() {
        return Err(Malformed::Length.into());
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(Malformed::Length.into());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or(Malformed::Length)?;
    }
    Ok(Some(v))
}

/// Parses a RESP3 double: a decimal number with optional exponent, or `inf`, `-inf`, `nan`.
fn parse_double(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("nan") {
        return text.parse().ok();
    }
    // Rust's parser also accepts "infinity" and the like; RESP allows only the forms above.
    if unsigned.is_empty()
        || !unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_to_the_edges_of_i64() {
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"+1"), None);
    }

    #[test]
    fn ok_replies_take_the_short_way_and_only_they() {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"+O"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"K\r\n+OKAY\r\n+OK\r");
        let simple = |s: &'static [u8]| Some(Value::SimpleString(Bytes::from_static(s)));
        assert_eq!(d.decode(&mut buf), Ok(simple(b"OK")));
        assert_eq!(d.decode(&mut buf), Ok(simple(b"OKAY")));
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n*1\r\n+OK\r\n");
        assert_eq!(d.decode(&mut buf), Ok(simple(b"OK")));
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Value::Array(vec![simple(b"OK").unwrap()])))
        );
        assert!(buf.is_empty());
    }

    /// Feeds `frame` to `d` in pieces of `piece` bytes, decoding after each one.
    fn decode_in_pieces(d: &mut Decoder, frame: &[u8], piece: usize) -> Vec<Value> {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for part in frame.chunks(piece) {
            buf.extend_from_slice(part);
            while let Some(v) = d.decode(&mut buf).unwrap() {
                got.push(v);
            }
        }
        got
    }

    #[test]
    fn short_bulks_take_the_short_way_and_the_rest_the_general_one() {
        let bulk = |s: &[u8]| Ok(Some(Value::BulkString(Bytes::copy_from_slice(s))));
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"$5\r\nhello\r\n$0\r\n\r\n$-1\r\n$007\r\nleading\r\n"[..]);
        assert_eq!(d.decode(&mut buf), bulk(b"hello"));
        assert_eq!(d.decode(&mut buf), bulk(b""));
        assert_eq!(d.decode(&mut buf), Ok(Some(Value::Null)));
        assert_eq!(d.decode(&mut buf), bulk(b"leading"));
        // Five digits, and a frame arriving in pieces.
        let big = vec![b'x'; 10_000];
        let mut frame = b"$10000\r\n".to_vec();
        frame.extend_from_slice(&big);
        frame.extend_from_slice(b"\r\n$3\r\nabc\r\n");
        assert_eq!(
            decode_in_pieces(&mut d, &frame, 7),
            vec![
                Value::BulkString(Bytes::from(big)),
                Value::BulkString(Bytes::from_static(b"abc"))
            ]
        );
        // Errors are the general path's.
        let mut buf = BytesMut::from(&b"$3\r\nabcX\r\n"[..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::MissingCrlf));
        let mut small = Decoder::with_limits(Limits::default().max_bulk_len(4));
        let mut buf = BytesMut::from(&b"$5\r\nhello\r\n"[..]);
        assert!(matches!(
            small.decode(&mut buf),
            Err(DecodeError::BulkTooLarge { len: 5, max: 4 })
        ));
        let mut buf = BytesMut::from(&b"$1x\r\n"[..]);
        assert!(d.decode(&mut buf).is_err());
    }

    #[test]
    fn short_bulks_inside_aggregates_read_like_the_general_path() {
        let bulk = |s: &'static [u8]| Value::BulkString(Bytes::from_static(s));
        let mut frame = b"*5\r\n$2\r\nab\r\n$-1\r\n$10000\r\n".to_vec();
        frame.extend_from_slice(&[b'y'; 10_000]);
        frame.extend_from_slice(b"\r\n%1\r\n$1\r\nk\r\n$0\r\n\r\n$0003\r\nxyz\r\n");
        let want = Value::Array(vec![
            bulk(b"ab"),
            Value::Null,
            Value::BulkString(Bytes::from(vec![b'y'; 10_000])),
            Value::Map(vec![(bulk(b"k"), bulk(b""))]),
            bulk(b"xyz"),
        ]);
        // Whole, and in pieces of every size up to 12 bytes.
        for piece in [frame.len(), 1, 2, 5, 12] {
            let got = decode_in_pieces(&mut Decoder::new(), &frame, piece);
            assert_eq!(got, vec![want.clone()], "pieces of {piece}");
        }
        // A payload not ended by CRLF, or over the limit, inside an array: the general path's
        // errors.
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"*2\r\n$1\r\na\r\n$3\r\nabcX\r\n"[..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::MissingCrlf));
        let mut small = Decoder::with_limits(Limits::default().max_bulk_len(4));
        let mut buf = BytesMut::from(&b"*1\r\n$5\r\nhello\r\n"[..]);
        assert!(matches!(
            small.decode(&mut buf),
            Err(DecodeError::BulkTooLarge { len: 5, max: 4 })
        ));
    }

    #[test]
    fn decode_into_reads_what_decode_reads_and_no_more_than_asked() {
        let mut frames = Vec::new();
        for i in 0..50 {
            frames.extend_from_slice(b"+OK\r\n");
            if i % 7 == 0 {
                frames.extend_from_slice(format!(":{i}\r\n$2\r\nab\r\n*1\r\n+OK\r\n").as_bytes());
            }
        }
        let want = decode_in_pieces(&mut Decoder::new(), &frames, frames.len());
        // Whole, and in pieces, asking for a few frames at a time: the same frames in order.
        for (piece, max) in [
            (frames.len(), usize::MAX),
            (frames.len(), 3),
            (1, 4),
            (7, 1),
            (13, 9),
        ] {
            let mut d = Decoder::new();
            let (mut buf, mut got) = (BytesMut::new(), Vec::new());
            for chunk in frames.chunks(piece) {
                buf.extend_from_slice(chunk);
                loop {
                    let before = got.len();
                    let n = d.decode_into(&mut buf, &mut got, max).unwrap();
                    assert!(n <= max);
                    assert_eq!(got.len() - before, n);
                    if n == 0 {
                        break;
                    }
                }
            }
            assert!(buf.is_empty());
            assert_eq!(got, want, "pieces of {piece}, {max} at a time");
        }
        // A run of +OK stops at the limit, and at the first frame that is not one.
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"+OK\r\n+OK\r\n+OK\r\n+OKAY\r\n+OK\r"[..]);
        let mut got = Vec::new();
        assert_eq!(d.decode_into(&mut buf, &mut got, 2), Ok(2));
        assert_eq!(d.decode_into(&mut buf, &mut got, 10), Ok(2));
        assert_eq!(got[3], Value::SimpleString(Bytes::from_static(b"OKAY")));
        assert_eq!(&buf[..], b"+OK\r");
        // Frames before an error stay decoded.
        let mut buf = BytesMut::from(&b"+OK\r\n:1\r\n?\r\n"[..]);
        let mut got = Vec::new();
        assert_eq!(
            d.decode_into(&mut buf, &mut got, 10),
            Err(DecodeError::InvalidTypeByte(b'?'))
        );
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn the_headers_noted_for_the_build_are_forgotten_with_the_frame() {
        let mut d = Decoder::new();
        // A huge frame, in pieces: its list of headers grows with what arrived, and is freed once
        // the frame is built.
        let n = MAX_KEPT_HEADS * 3;
        let mut frame = format!("*{n}\r\n").into_bytes();
        for i in 0..n {
            frame.extend_from_slice(format!(":{i}\r\n").as_bytes());
        }
        let half = frame.len() / 2;
        let mut buf = BytesMut::from(&frame[..half]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        let noted = d.progress.heads.len();
        assert!(noted > MAX_KEPT_HEADS && noted < n, "{noted} headers noted");
        buf.extend_from_slice(&frame[half..]);
        let Ok(Some(Value::Array(items))) = d.decode(&mut buf) else {
            panic!("the frame is complete");
        };
        assert_eq!(items.len(), n);
        assert_eq!(items[n - 1], Value::Integer(n as i64 - 1));
        assert!(d.progress.heads.capacity() <= MAX_KEPT_HEADS);
        // A small frame keeps its room for the next one; an error forgets what was noted.
        let mut buf = BytesMut::from(&b"*2\r\n:1\r\n:2\r\n*2\r\n:1\r\n"[..]);
        assert!(d.decode(&mut buf).unwrap().is_some());
        assert!(d.progress.heads.capacity() >= 3);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(d.progress.heads.len(), 2);
        buf.extend_from_slice(b"?\r\n");
        assert_eq!(d.decode(&mut buf), Err(DecodeError::InvalidTypeByte(b'?')));
        assert!(d.progress.heads.is_empty());
    }

    #[test]
    fn lengths_reject_negatives_other_than_null() {
        assert_eq!(parse_len(b"-1", true), Ok(None));
        assert!(parse_len(b"-1", false).is_err());
        assert!(parse_len(b"-2", true).is_err());
        assert!(parse_len(b"18446744073709551616", true).is_err());
        assert_eq!(parse_len(b"007", true), Ok(Some(7)));
    }

    #[test]
    fn doubles_accept_only_resp_forms() {
        assert_eq!(parse_double(b"1.5"), Some(1.5));
        assert_eq!(parse_double(b"-inf"), Some(f64::NEG_INFINITY));
        assert!(parse_double(b"nan").unwrap().is_nan());
        assert_eq!(parse_double(b"1e3"), Some(1000.0));
        assert_eq!(parse_double(b"infinity"), None);
        assert_eq!(parse_double(b"1,5"), None);
        assert_eq!(parse_double(b""), None);
    }
}
