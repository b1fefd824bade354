//! Property tests: encode -> decode is the identity for any value and any chunking, and no input
//! makes the decoder panic or misbehave.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use resp_codec::{encode_command, encode_value, Decoder, Value};

/// Values that survive a round trip: no NaN (NaN != NaN), no CR/LF in simple strings.
fn arb_value() -> impl Strategy<Value = Value> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from);
    let line = "[a-zA-Z0-9 :_.-]{0,20}".prop_map(|s| Bytes::from(s.into_bytes()));
    let leaf = prop_oneof![
        line.clone().prop_map(Value::SimpleString),
        bytes.clone().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        bytes.clone().prop_map(Value::BulkString),
        Just(Value::Null),
        any::<f64>()
            .prop_filter("NaN never equals itself", |d| !d.is_nan())
            .prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        "-?[0-9]{1,60}".prop_map(|s| Value::BigNumber(Bytes::from(s.into_bytes()))),
        (proptest::array::uniform3(b'a'..=b'z'), bytes)
            .prop_map(|(format, text)| Value::VerbatimString { format, text }),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let pairs = proptest::collection::vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Set),
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Push),
            pairs.clone().prop_map(Value::Map),
            (pairs, inner).prop_map(|(attributes, value)| Value::Attribute {
                attributes,
                value: Box::new(value)
            }),
        ]
    })
}

/// Decodes everything from `wire` fed in chunks whose sizes cycle through `sizes`.
fn decode_chunked(wire: &[u8], sizes: &[usize]) -> Vec<Value> {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < wire.len() {
        let n = sizes[i % sizes.len()].max(1).min(wire.len() - pos);
        i += 1;
        buf.extend_from_slice(&wire[pos..pos + n]);
        pos += n;
        while let Some(v) = dec.decode(&mut buf).expect("valid input") {
            out.push(v);
        }
    }
    assert!(buf.is_empty(), "undecoded bytes left");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn encode_then_decode_is_identity(values in proptest::collection::vec(arb_value(), 1..6)) {
        let mut wire = BytesMut::new();
        for v in &values {
            encode_value(&mut wire, v);
        }
        let decoded = decode_chunked(&wire, &[wire.len()]);
        prop_assert_eq!(decoded, values);
    }

    #[test]
    fn chunking_never_changes_the_result(
        values in proptest::collection::vec(arb_value(), 1..6),
        sizes in proptest::collection::vec(1usize..17, 1..8),
    ) {
        let mut wire = BytesMut::new();
        for v in &values {
            encode_value(&mut wire, v);
        }
        prop_assert_eq!(decode_chunked(&wire, &sizes), values);
    }

    #[test]
    fn commands_decode_as_arrays_of_bulk_strings(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 1..10),
    ) {
        let mut wire = BytesMut::new();
        encode_command(&mut wire, &args);
        let decoded = decode_chunked(&wire, &[3, 1, 7]);
        let expected = Value::Array(
            args.iter().map(|a| Value::BulkString(Bytes::copy_from_slice(a))).collect(),
        );
        prop_assert_eq!(decoded, vec![expected]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_ok_none_consumes_nothing(
        input in proptest::collection::vec(any::<u8>(), 0..200),
        split in 0usize..200,
    ) {
        check_no_misbehaviour(&input, split);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        value in arb_value(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        split in 0usize..400,
    ) {
        let mut wire = BytesMut::new();
        encode_value(&mut wire, &value);
        let mut bytes = wire.to_vec();
        for (idx, byte) in flips {
            let i = idx.index(bytes.len());
            bytes[i] = byte;
        }
        check_no_misbehaviour(&bytes, split);
    }
}

/// Feeds `input` in two pieces and checks the decoder contract: `Ok(None)` consumes nothing,
/// `Ok(Some)` consumes something, an error ends the stream, and no call panics.
fn check_no_misbehaviour(input: &[u8], split: usize) {
    let split = split.min(input.len());
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    for chunk in [&input[..split], &input[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(_)) => assert!(buf.len() < before, "a frame consumed no bytes"),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => return,
            }
        }
    }
    let _ = dec.decode_eof(&mut buf);
}

/// A bounded fuzz-style run for CI: a fixed-seed generator throws structured garbage (valid
/// headers with random counts, random type bytes, random splits) at the decoder.
#[test]
fn fuzz_smoke_fixed_seed() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let pieces: &[&[u8]] = &[
        b"*",
        b"$",
        b"%",
        b"~",
        b">",
        b"|",
        b"+",
        b"-",
        b":",
        b",",
        b"#",
        b"(",
        b"=",
        b"!",
        b"_",
        b"\r\n",
        b"\r",
        b"\n",
        b"1",
        b"2",
        b"-1",
        b"0",
        b"4294967295",
        b"99999999999999999999",
        b"txt:",
        b"inf",
        b"nan",
        b"t",
        b"f",
        b"abc",
        b"\0",
    ];
    for _ in 0..50_000 {
        let len = (next() % 24) as usize;
        let mut input = Vec::new();
        for _ in 0..len {
            input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let split = (next() % (input.len() as u64 + 1)) as usize;
        check_no_misbehaviour(&input, split);
    }
}
