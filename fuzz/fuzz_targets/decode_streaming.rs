//! The first byte picks a chunk size; the rest is fed in chunks of that size. The values decoded
//! must be the same as when the whole input is decoded at once (hiredis's streaming pattern).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use resp_codec::{Decoder, Value};

fn decode_all(chunks: &mut dyn Iterator<Item = &[u8]>) -> (Vec<Value>, bool) {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let size = usize::from(first % 64) + 1;
    let (whole, whole_err) = decode_all(&mut std::iter::once(rest));
    let (chunked, chunked_err) = decode_all(&mut rest.chunks(size));
    // NaN never equals itself: compare debug forms.
    assert_eq!(format!("{whole:?}"), format!("{chunked:?}"));
    assert_eq!(whole_err, chunked_err);
});
