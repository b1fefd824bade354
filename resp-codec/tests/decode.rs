//! Decoder behaviour: every type, every malformed form, limits, chunking, and the cost of a large
//! reply that arrives in many pieces.

use bytes::{Bytes, BytesMut};
use resp_codec::{encode_value, DecodeError, Decoder, Limits, Malformed as M, Value};

fn bulk(s: &str) -> Value {
    Value::BulkString(Bytes::copy_from_slice(s.as_bytes()))
}

fn simple(s: &str) -> Value {
    Value::SimpleString(Bytes::copy_from_slice(s.as_bytes()))
}

/// Decodes exactly one frame from `input`, checking that nothing is left behind.
fn decode_one(input: &[u8]) -> Result<Value, DecodeError> {
    let mut buf = BytesMut::from(input);
    let v = Decoder::new().decode(&mut buf)?;
    let v = v.unwrap_or_else(|| panic!("incomplete: {:?}", String::from_utf8_lossy(input)));
    assert!(buf.is_empty(), "bytes left over after {input:?}");
    Ok(v)
}

fn decode_err(input: &[u8]) -> DecodeError {
    let mut buf = BytesMut::from(input);
    match Decoder::new().decode(&mut buf) {
        Err(e) => e,
        other => panic!("expected an error for {input:?}, got {other:?}"),
    }
}

#[test]
fn decodes_every_resp2_type() {
    assert_eq!(decode_one(b"+OK\r\n").unwrap(), simple("OK"));
    assert_eq!(
        decode_one(b"-ERR unknown command\r\n").unwrap(),
        Value::Error("ERR unknown command".into())
    );
    assert_eq!(decode_one(b":-42\r\n").unwrap(), Value::Integer(-42));
    assert_eq!(decode_one(b"$5\r\nhello\r\n").unwrap(), bulk("hello"));
    assert_eq!(decode_one(b"$0\r\n\r\n").unwrap(), bulk(""));
    assert_eq!(
        decode_one(b"$4\r\na\r\nb\r\n").unwrap(),
        bulk("a\r\nb"),
        "bulk strings are binary safe"
    );
    assert_eq!(decode_one(b"$-1\r\n").unwrap(), Value::Null);
    assert_eq!(decode_one(b"*-1\r\n").unwrap(), Value::Null);
    assert_eq!(decode_one(b"*0\r\n").unwrap(), Value::Array(vec![]));
    assert_eq!(
        decode_one(b"*3\r\n:1\r\n*1\r\n+a\r\n$-1\r\n").unwrap(),
        Value::Array(vec![
            Value::Integer(1),
            Value::Array(vec![simple("a")]),
            Value::Null
        ])
    );
}

#[test]
fn decodes_every_resp3_type() {
    assert_eq!(decode_one(b"_\r\n").unwrap(), Value::Null);
    assert_eq!(decode_one(b",3.25\r\n").unwrap(), Value::Double(3.25));
    assert_eq!(
        decode_one(b",-inf\r\n").unwrap(),
        Value::Double(f64::NEG_INFINITY)
    );
    assert_eq!(decode_one(b",1e300\r\n").unwrap(), Value::Double(1e300));
    match decode_one(b",nan\r\n").unwrap() {
        Value::Double(d) => assert!(d.is_nan()),
        other => panic!("{other:?}"),
    }
    assert_eq!(decode_one(b"#t\r\n").unwrap(), Value::Boolean(true));
    assert_eq!(decode_one(b"#f\r\n").unwrap(), Value::Boolean(false));
    assert_eq!(
        decode_one(b"(-3492890328409238509324850943850943825024385\r\n").unwrap(),
        Value::BigNumber("-3492890328409238509324850943850943825024385".into())
    );
    assert_eq!(
        decode_one(b"!22\r\nSYNTAX invalid\r\nsyntax\r\n").unwrap(),
        Value::Error("SYNTAX invalid\r\nsyntax".into())
    );
    assert_eq!(
        decode_one(b"=15\r\ntxt:Some string\r\n").unwrap(),
        Value::VerbatimString {
            format: *b"txt",
            text: "Some string".into()
        }
    );
    assert_eq!(
        decode_one(b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#f\r\n").unwrap(),
        Value::Map(vec![
            (simple("first"), Value::Integer(1)),
            (bulk("second"), Value::Boolean(false)),
        ])
    );
    assert_eq!(
        decode_one(b"~2\r\n+a\r\n+b\r\n").unwrap(),
        Value::Set(vec![simple("a"), simple("b")])
    );
    assert_eq!(
        decode_one(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n").unwrap(),
        Value::Push(vec![bulk("message"), bulk("ch"), bulk("hi")])
    );
    assert_eq!(decode_one(b"%0\r\n").unwrap(), Value::Map(vec![]));
    assert_eq!(decode_one(b"~0\r\n").unwrap(), Value::Set(vec![]));
}

#[test]
fn attributes_attach_to_the_following_value_even_inside_aggregates() {
    let input = b"*2\r\n|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n:2039123\r\n:9\r\n";
    let expected = Value::Array(vec![
        Value::Attribute {
            attributes: vec![(
                simple("key-popularity"),
                Value::Map(vec![(bulk("a"), Value::Double(0.1923))]),
            )],
            value: Box::new(Value::Integer(2039123)),
        },
        Value::Integer(9),
    ]);
    assert_eq!(decode_one(input).unwrap(), expected);
    assert_eq!(
        decode_one(b"|0\r\n+x\r\n").unwrap(),
        Value::Attribute {
            attributes: vec![],
            value: Box::new(simple("x"))
        }
    );
}

#[test]
fn pushes_nested_inside_aggregates_decode() {
    assert_eq!(
        decode_one(b"*1\r\n>1\r\n:1\r\n").unwrap(),
        Value::Array(vec![Value::Push(vec![Value::Integer(1)])])
    );
}

#[test]
fn bulk_payloads_are_slices_of_the_read_buffer() {
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"[..]);
    let base = buf.as_ptr() as usize;
    let end = base + buf.len();
    let v = Decoder::new().decode(&mut buf).unwrap().unwrap();
    let Value::Array(items) = v else {
        panic!("not an array")
    };
    for item in &items {
        let p = item.as_bytes().unwrap().as_ptr() as usize;
        assert!(
            (base..end).contains(&p),
            "payload was copied out of the buffer"
        );
    }
}

#[test]
fn incomplete_input_consumes_nothing_and_several_frames_decode_in_turn() {
    let whole = b"+OK\r\n:1\r\n$3\r\nabc\r\n";
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in whole.iter() {
        buf.extend_from_slice(&[b]);
        let before = buf.len();
        match dec.decode(&mut buf).unwrap() {
            Some(v) => out.push(v),
            None => assert_eq!(buf.len(), before, "Ok(None) must consume nothing"),
        }
    }
    assert_eq!(out, vec![simple("OK"), Value::Integer(1), bulk("abc")]);
    assert!(buf.is_empty());
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
}

#[test]
fn splitting_at_every_byte_gives_the_same_values() {
    let corpus: &[u8] = b"*3\r\n$5\r\nhello\r\n%1\r\n+k\r\n~2\r\n,1.5\r\n(123\r\n$-1\r\n\
>2\r\n$7\r\nmessage\r\n=7\r\ntxt:abc\r\n|1\r\n+a\r\n#t\r\n:7\r\n!3\r\nERR\r\n_\r\n";
    let mut reference_dec = Decoder::new();
    let mut reference_buf = BytesMut::from(corpus);
    let mut reference = Vec::new();
    while let Some(v) = reference_dec.decode(&mut reference_buf).unwrap() {
        reference.push(v);
    }
    assert_eq!(reference.len(), 5);
    assert!(reference_buf.is_empty());

    for split in 0..=corpus.len() {
        for split2 in split..=corpus.len() {
            let mut dec = Decoder::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [&corpus[..split], &corpus[split..split2], &corpus[split2..]] {
                buf.extend_from_slice(chunk);
                while let Some(v) = dec.decode(&mut buf).unwrap() {
                    got.push(v);
                }
            }
            assert_eq!(got, reference, "split at {split} and {split2}");
        }
    }
}

#[test]
fn malformed_frames_are_typed_errors() {
    use DecodeError::*;
    assert_eq!(decode_err(b"?3\r\n"), InvalidTypeByte(b'?'));
    assert_eq!(decode_err(b"x\r\n"), InvalidTypeByte(b'x'));
    assert_eq!(decode_err(b"+OK\n"), MissingCrlf, "\\n-only line ending");
    assert_eq!(decode_err(b"+O\rK\r\n"), MissingCrlf, "lone CR");
    assert_eq!(decode_err(b"$3\r\nabcd\r\n"), MissingCrlf, "bulk too long");
    assert_eq!(decode_err(b"$3\r\nab\r\n\r\n"), MissingCrlf);
    assert_eq!(decode_err(b"$-2\r\n"), Malformed(M::Length));
    assert_eq!(decode_err(b"*-5\r\n"), Malformed(M::Length));
    assert_eq!(decode_err(b"~-5\r\n"), Malformed(M::Length));
    assert_eq!(decode_err(b"%-1\r\n"), Malformed(M::Length));
    assert_eq!(decode_err(b"!-1\r\n"), Malformed(M::Length));
    assert_eq!(decode_err(b"$\r\n"), Malformed(M::Length));
    assert_eq!(decode_err(b"$1a\r\n"), Malformed(M::Length));
    assert_eq!(decode_err(b"$?\r\n"), Malformed(M::Length));
    assert_eq!(
        decode_err(b"*99999999999999999999999\r\n"),
        Malformed(M::Length)
    );
    assert_eq!(
        decode_err(b":99999999999999999999\r\n"),
        Malformed(M::Integer)
    );
    assert_eq!(decode_err(b":\r\n"), Malformed(M::Integer));
    assert_eq!(decode_err(b":1.5\r\n"), Malformed(M::Integer));
    assert_eq!(decode_err(b":--1\r\n"), Malformed(M::Integer));
    assert_eq!(decode_err(b",\r\n"), Malformed(M::Double));
    assert_eq!(decode_err(b",1.2.3\r\n"), Malformed(M::Double));
    assert_eq!(decode_err(b",infinity\r\n"), Malformed(M::Double));
    assert_eq!(decode_err(b",abc\r\n"), Malformed(M::Double));
    assert_eq!(decode_err(b"#x\r\n"), Malformed(M::Boolean));
    assert_eq!(decode_err(b"#\r\n"), Malformed(M::Boolean));
    assert_eq!(decode_err(b"#tt\r\n"), Malformed(M::Boolean));
    assert_eq!(decode_err(b"(\r\n"), Malformed(M::BigNumber));
    assert_eq!(decode_err(b"(12a\r\n"), Malformed(M::BigNumber));
    assert_eq!(decode_err(b"=2\r\nab\r\n"), Malformed(M::Verbatim));
    assert_eq!(decode_err(b"=5\r\ntxtab\r\n"), Malformed(M::Verbatim));
    assert_eq!(decode_err(b"_x\r\n"), Malformed(M::Null));
    // An error deep inside an aggregate is still found.
    assert_eq!(
        decode_err(b"*2\r\n*1\r\n:1\r\n:x\r\n"),
        Malformed(M::Integer)
    );
}

#[test]
fn an_error_resets_the_decoder() {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(&b"*2\r\n:1\r\n"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"#x\r\n");
    assert!(dec.decode(&mut buf).is_err());
    let mut fresh = BytesMut::from(&b"+OK\r\n"[..]);
    assert_eq!(dec.decode(&mut fresh).unwrap(), Some(simple("OK")));
}

#[test]
fn claimed_sizes_are_not_allocated_and_limits_are_enforced() {
    // Huge declared aggregates are accepted up to the limit but reserve nothing: the decoder
    // just waits for bytes that never come.
    for header in [
        &b"*4294967295\r\n"[..],
        b"%4294967295\r\n",
        b"~4294967295\r\n",
    ] {
        let mut dec = Decoder::new();
        let mut buf = BytesMut::from(header);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.capacity(), header.len(), "no reservation from a claim");
    }
    assert_eq!(
        decode_err(b"*4294967296\r\n"),
        DecodeError::AggregateTooLarge {
            len: 4294967296,
            max: u32::MAX as usize
        }
    );
    assert!(matches!(
        decode_err(b"$9223372036854775807\r\n"),
        DecodeError::BulkTooLarge { .. }
    ));
    assert_eq!(
        decode_err(b"$536870913\r\n"),
        DecodeError::BulkTooLarge {
            len: 536870913,
            max: 512 * 1024 * 1024
        }
    );
    // Exactly at the limit: accepted, waits for the payload.
    let mut buf = BytesMut::from(&b"$536870912\r\n"[..]);
    let mut dec = Decoder::new();
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert_eq!(dec.bytes_needed(), Some(12 + 536870912 + 2));

    let small = Limits::default()
        .max_bulk_len(4)
        .max_aggregate_len(2)
        .max_line_len(8);
    let err = |input: &[u8]| {
        Decoder::with_limits(small)
            .decode(&mut BytesMut::from(input))
            .unwrap_err()
    };
    assert_eq!(
        err(b"$5\r\nhello\r\n"),
        DecodeError::BulkTooLarge { len: 5, max: 4 }
    );
    assert_eq!(
        err(b"=9\r\ntxt:hello\r\n"),
        DecodeError::BulkTooLarge { len: 9, max: 4 }
    );
    assert_eq!(
        err(b"*3\r\n"),
        DecodeError::AggregateTooLarge { len: 3, max: 2 }
    );
    assert_eq!(
        err(b"%3\r\n"),
        DecodeError::AggregateTooLarge { len: 3, max: 2 }
    );
    assert_eq!(err(b"+123456789\r\n"), DecodeError::LineTooLong { max: 8 });
    // A long line without CRLF is refused once it passes the limit, without waiting for the end.
    let mut dec = Decoder::with_limits(small);
    let mut buf = BytesMut::from(&b"+1234"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"56789");
    assert_eq!(
        dec.decode(&mut buf).unwrap_err(),
        DecodeError::LineTooLong { max: 8 }
    );
}

#[test]
fn a_million_nested_arrays_is_a_depth_error_even_on_a_small_stack() {
    let bomb: Vec<u8> = b"*1\r\n".repeat(1_000_000);
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut buf = BytesMut::from(&bomb[..]);
            Decoder::new().decode(&mut buf)
        })
        .unwrap();
    assert_eq!(
        handle.join().unwrap(),
        Err(DecodeError::TooDeep { max: 128 })
    );
    // 128 levels are fine, 129 are not.
    let mut ok = b"*1\r\n".repeat(128);
    ok.extend_from_slice(b":1\r\n");
    assert!(decode_one(&ok).is_ok());
    let mut deep = b"*1\r\n".repeat(129);
    deep.extend_from_slice(b":1\r\n");
    assert_eq!(decode_one(&deep), Err(DecodeError::TooDeep { max: 128 }));
}

#[test]
fn a_large_array_fed_in_small_pieces_is_scanned_in_linear_time() {
    // 100,000 elements arriving 1 KiB at a time: about 1,300 decode calls. A decoder that re-parsed
    // the frame from its start on every call would walk ~850 MB of headers; this one walks each
    // byte about twice. The assertion is a generous wall-clock bound (a quadratic decoder takes
    // tens of seconds even in release mode) so that it never flakes on a busy machine.
    let n = 100_000;
    let mut wire = BytesMut::new();
    let items: Vec<Value> = (0..n).map(|i| bulk(&format!("value-{i:06}"))).collect();
    encode_value(&mut wire, &Value::Array(items));
    let wire = wire.freeze();

    let started = std::time::Instant::now();
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut calls = 0;
    let mut result = None;
    for chunk in wire.chunks(1024) {
        buf.extend_from_slice(chunk);
        calls += 1;
        if let Some(v) = dec.decode(&mut buf).unwrap() {
            result = Some(v);
        }
    }
    let elapsed = started.elapsed();
    let Some(Value::Array(items)) = result else {
        panic!("no array")
    };
    assert_eq!(items.len(), n);
    assert_eq!(items[99_999], bulk("value-099999"));
    assert!(calls > 1000);
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "decoding took {elapsed:?}"
    );
}

#[test]
fn a_large_bulk_fed_in_pieces_is_not_rescanned() {
    let payload = vec![b'x'; 1 << 20];
    let mut wire = BytesMut::new();
    resp_codec::write_bulk(&mut wire, &payload);
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut got = None;
    for chunk in wire.chunks(8192) {
        buf.extend_from_slice(chunk);
        if let Some(v) = dec.decode(&mut buf).unwrap() {
            got = Some(v);
        } else {
            // Inside the payload the decoder knows exactly how many bytes it waits for.
            assert_eq!(dec.bytes_needed(), Some(wire.len()));
        }
    }
    assert_eq!(got.unwrap().as_bytes().unwrap().len(), 1 << 20);
}

#[test]
fn decode_eof_reports_a_truncated_frame() {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(&b"+OK\r\n$5\r\nhel"[..]);
    assert_eq!(dec.decode_eof(&mut buf).unwrap(), Some(simple("OK")));
    assert_eq!(dec.decode_eof(&mut buf), Err(DecodeError::Truncated));
    let mut empty = BytesMut::new();
    assert_eq!(Decoder::new().decode_eof(&mut empty), Ok(None));
}

#[test]
fn a_buffer_that_shrank_behind_the_decoders_back_is_rescanned_not_trusted() {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(&b"*3\r\n:1\r\n:2\r\n"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    // Contract broken: a different, shorter buffer.
    let mut other = BytesMut::from(&b":5\r\n"[..]);
    assert_eq!(dec.decode(&mut other).unwrap(), Some(Value::Integer(5)));
}

/// Feeds `piece` to `dec` until it errs, `rounds` times at most; returns the error and how many
/// pieces went in.
fn feed_until_error(
    dec: &mut Decoder,
    buf: &mut BytesMut,
    piece: &[u8],
    rounds: usize,
) -> Option<(DecodeError, usize)> {
    for fed in 1..=rounds {
        buf.extend_from_slice(piece);
        match dec.decode(buf) {
            Ok(None) => {}
            Ok(Some(v)) => panic!("an endless reply completed: {v:?}"),
            Err(e) => return Some((e, fed)),
        }
    }
    None
}

#[test]
fn an_endless_aggregate_of_tiny_elements_fails_as_its_elements_arrive() {
    use resp_codec::ReplyLimit;
    // Both the smallest RESP3 element and the smallest RESP2 one, fed a few at a time (the check
    // pass resumes, so this is linear) and all at once (the short-bulk run inside an aggregate).
    for (element, at_once) in [
        (&b"_\r\n"[..], 1),
        (b"_\r\n", 7),
        (b"$0\r\n\r\n", 1),
        (b"$0\r\n\r\n", 5000),
    ] {
        let limits = Limits::default().max_reply_elements(1000);
        let mut dec = Decoder::with_limits(limits);
        let mut buf = BytesMut::from(&b"*4294967295\r\n"[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        let piece = element.repeat(at_once);
        let (err, fed) = feed_until_error(&mut dec, &mut buf, &piece, 10_000).unwrap();
        assert_eq!(
            err,
            DecodeError::ReplyTooLarge {
                limit: ReplyLimit::Elements,
                max: 1000
            }
        );
        // The header is one value: the 1000th element is the first one past the limit, and the
        // error comes with the piece that brought it, not later.
        assert_eq!(fed, 1000_usize.div_ceil(at_once), "{element:?} x{at_once}");
    }
    // The same by bytes: 3 bytes an element after a 13-byte header, refused once past 1 KiB.
    let mut dec = Decoder::with_limits(Limits::default().max_reply_bytes(1024));
    let mut buf = BytesMut::from(&b"*4294967295\r\n"[..]);
    let (err, fed) = feed_until_error(&mut dec, &mut buf, b"_\r\n", 10_000).unwrap();
    assert_eq!(
        err,
        DecodeError::ReplyTooLarge {
            limit: ReplyLimit::Bytes,
            max: 1024
        }
    );
    // Refused once the reply is sure to pass the limit (1,024 bytes arrived, the aggregate still
    // open), before a byte past it arrives.
    assert_eq!(13 + 3 * fed, 1024);
    assert!(err.to_string().contains("max_reply_bytes"), "{err}");
}

#[test]
fn replies_within_the_reply_limits_decode_and_larger_ones_are_refused_early() {
    use resp_codec::ReplyLimit;
    let bytes = |max| DecodeError::ReplyTooLarge {
        limit: ReplyLimit::Bytes,
        max,
    };
    // Exactly at the limits: 1 + 3 values, 4 + 3 * 6 = 22 bytes.
    let frame = b"*3\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n";
    let exact = Limits::default().max_reply_elements(4).max_reply_bytes(22);
    let mut buf = BytesMut::from(&frame[..]);
    assert!(matches!(
        Decoder::with_limits(exact).decode(&mut buf),
        Ok(Some(Value::Array(items))) if items.len() == 3
    ));
    let err = |limits: Limits, input: &[u8]| {
        Decoder::with_limits(limits)
            .decode(&mut BytesMut::from(input))
            .unwrap_err()
    };
    assert!(matches!(
        err(exact.max_reply_elements(3), frame),
        DecodeError::ReplyTooLarge {
            limit: ReplyLimit::Elements,
            max: 3
        }
    ));
    assert_eq!(err(exact.max_reply_bytes(21), frame), bytes(21));
    // A bulk that would pass the limit is refused on its header, before its payload arrives,
    // alone or inside an aggregate, short or long.
    let small = Limits::default().max_reply_bytes(100);
    assert_eq!(err(small, b"$95\r\n"), bytes(100));
    assert_eq!(err(small, b"*2\r\n$1\r\nx\r\n$85\r\n"), bytes(100));
    assert_eq!(err(small, b"$200000\r\n"), bytes(100));
    // A whole short bulk of 101 bytes is refused; one of exactly 100 is taken.
    let bulk_of = |len: usize| {
        let mut frame = format!("${len}\r\n").into_bytes();
        frame.extend(std::iter::repeat_n(b'x', len));
        frame.extend_from_slice(b"\r\n");
        frame
    };
    assert_eq!(err(small, &bulk_of(94)), bytes(100));
    let mut buf = BytesMut::from(&bulk_of(93)[..]);
    assert_eq!(buf.len(), 100);
    assert!(Decoder::with_limits(small)
        .decode(&mut buf)
        .unwrap()
        .is_some());
    // A line that keeps coming is refused once the reply passes the limit.
    let mut dec = Decoder::with_limits(small.max_line_len(1 << 20));
    let mut buf = BytesMut::from(&b"+"[..]);
    let (e, fed) = feed_until_error(&mut dec, &mut buf, b"abcdefghij", 1000).unwrap();
    assert_eq!((e, fed), (bytes(100), 10));
}
