//! Codec benchmarks: decoding five corpora and encoding commands, with the peers' parsers
//! (redis-rs's `ValueCodec`, fred's redis-protocol) measured in the same run under `--features peers`.
//!
//! ```text
//! cargo bench -p benches --bench codec                   # this codec only
//! cargo bench -p benches --bench codec --features peers  # side by side
//! ```

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use resp_codec::{encode_command, encode_value, Decoder, Value};

/// A named corpus: the wire bytes, how many top-level frames, and the element count reported as
/// throughput.
struct Corpus {
    name: &'static str,
    wire: Vec<u8>,
    frames: usize,
    throughput: Throughput,
}

fn corpora() -> Vec<Corpus> {
    let value_100 = vec![b'v'; 100];
    let mut out = Vec::new();

    let ok = b"+OK\r\n".repeat(10_000);
    out.push(Corpus {
        name: "ok_10k",
        wire: ok,
        frames: 10_000,
        throughput: Throughput::Elements(10_000),
    });

    let mut ints = BytesMut::new();
    for i in 0..10_000i64 {
        encode_value(&mut ints, &Value::Integer(i * 7919 - 5_000_000));
    }
    out.push(Corpus {
        name: "int_10k",
        wire: ints.to_vec(),
        frames: 10_000,
        throughput: Throughput::Elements(10_000),
    });

    let mut array = BytesMut::new();
    let items = (0..1000)
        .map(|_| Value::BulkString(value_100.clone().into()))
        .collect();
    encode_value(&mut array, &Value::Array(items));
    out.push(Corpus {
        name: "array_1000x100b",
        wire: array.to_vec(),
        frames: 1,
        throughput: Throughput::Elements(1000),
    });

    let mut big = BytesMut::new();
    encode_value(&mut big, &Value::BulkString(vec![b'x'; 1 << 20].into()));
    out.push(Corpus {
        name: "bulk_1mib",
        wire: big.to_vec(),
        frames: 1,
        throughput: Throughput::Bytes(1 << 20),
    });

    // A realistic mix of what a cache workload reads back.
    let mut mix = BytesMut::new();
    let mut frames = 0;
    for i in 0..1000 {
        let v = match i % 6 {
            0 => Value::SimpleString("OK".into()),
            1 => Value::Integer(i),
            2 => Value::BulkString(value_100.clone().into()),
            3 => Value::Null,
            4 => Value::Array(
                (0..10)
                    .map(|_| Value::BulkString(value_100[..20].to_vec().into()))
                    .collect(),
            ),
            _ => Value::Error(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            ),
        };
        // RESP2 framing for null, so every parser reads the same bytes.
        if v == Value::Null {
            mix.extend_from_slice(b"$-1\r\n");
        } else {
            encode_value(&mut mix, &v);
        }
        frames += 1;
    }
    out.push(Corpus {
        name: "mix_1000",
        wire: mix.to_vec(),
        frames,
        throughput: Throughput::Elements(frames as u64),
    });
    out
}

fn decode_ours(buf: &mut BytesMut) -> usize {
    let mut dec = Decoder::new();
    let mut n = 0;
    while let Some(v) = dec.decode(buf).expect("valid corpus") {
        black_box(v);
        n += 1;
    }
    n
}

#[cfg(feature = "peers")]
fn decode_redis_rs(buf: &mut BytesMut) -> usize {
    use tokio_util::codec::Decoder as _;
    let mut codec = redis::ValueCodec::default();
    let mut n = 0;
    while let Some(v) = codec.decode(buf).expect("valid corpus") {
        black_box(v);
        n += 1;
    }
    n
}

#[cfg(feature = "peers")]
fn decode_redis_protocol(buf: &mut BytesMut) -> usize {
    use redis_protocol::resp2::decode::decode_bytes_mut;
    let mut n = 0;
    while let Some((frame, _, _)) = decode_bytes_mut(buf).expect("valid corpus") {
        black_box(frame);
        n += 1;
    }
    n
}

fn decode(c: &mut Criterion) {
    type DecodeFn = fn(&mut BytesMut) -> usize;
    let ours: (&str, DecodeFn) = ("resp-codec", decode_ours);
    #[cfg(not(feature = "peers"))]
    let contenders = [ours];
    #[cfg(feature = "peers")]
    let contenders = [
        ours,
        ("redis-rs", decode_redis_rs as DecodeFn),
        ("redis-protocol", decode_redis_protocol as DecodeFn),
    ];
    for corpus in corpora() {
        let mut group = c.benchmark_group(format!("decode/{}", corpus.name));
        group.throughput(corpus.throughput.clone());
        for (name, f) in &contenders {
            group.bench_function(*name, |b| {
                b.iter_batched(
                    || BytesMut::from(&corpus.wire[..]),
                    |mut buf| {
                        let n = f(&mut buf);
                        assert_eq!(n, corpus.frames);
                        // Returned, so that freeing the input buffer is not timed.
                        buf
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

fn encode(c: &mut Criterion) {
    let value = vec![b'v'; 100];
    let mut group = c.benchmark_group("encode/set_100b");
    group.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("resp-codec", |b| {
        b.iter(|| {
            buf.clear();
            encode_command(&mut buf, [&b"SET"[..], b"key:000123", &value]);
            black_box(&buf);
        })
    });
    #[cfg(feature = "peers")]
    group.bench_function("redis-rs", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            redis::cmd("SET")
                .arg("key:000123")
                .arg(&value[..])
                .write_packed_command(&mut out);
            black_box(&out);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("encode/pipeline_100_set");
    group.throughput(Throughput::Elements(100));
    group.bench_function("resp-codec", |b| {
        b.iter(|| {
            buf.clear();
            for i in 0..100 {
                let key = [b'k', b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
                encode_command(&mut buf, [&b"SET"[..], &key, &value]);
            }
            black_box(&buf);
        })
    });
    #[cfg(feature = "peers")]
    group.bench_function("redis-rs", |b| {
        b.iter(|| {
            let mut pipe = redis::pipe();
            for i in 0..100 {
                let key = [b'k', b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
                pipe.cmd("SET").arg(&key[..]).arg(&value[..]);
            }
            black_box(pipe.get_packed_pipeline());
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
