//! Any bytes, decoded in one go until the decoder stops: no panic, no runaway allocation, and
//! `Ok(None)` never consumes input.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use resp_codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut dec = Decoder::new();
    loop {
        let before = buf.len();
        match dec.decode(&mut buf) {
            Ok(Some(_)) => assert!(buf.len() < before),
            Ok(None) => {
                assert_eq!(buf.len(), before);
                break;
            }
            Err(_) => break,
        }
    }
    let _ = dec.decode_eof(&mut buf);
});
