//! The value codec: encode and decode of typical tuples.
//!
//! The target (issue: performance) is at least 5 million encode + decode round trips per second
//! of a 5-value tuple on one core, i.e. under 200 ns for `encode_decode/five_values`. On a
//! shared machine whose neighbours come and go, `cargo bench --bench codec_batches` gives the
//! same round trip as the best and the median of many short batches.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use remotefn::value::codec::{decode_tuple, encode_tuple, DecodeLimits, DEFAULT_MAX_DEPTH};
use remotefn::{tuple, Value};

mod common;
use common::five_values;
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_decode");
    group.throughput(Throughput::Elements(1));
    for (name, values) in [
        ("five_values", five_values()),
        ("echo_32_bytes", tuple![Value::string(vec![b'x'; 32])]),
        ("empty", tuple![]),
    ] {
        let mut buf = BytesMut::with_capacity(256);
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                encode_tuple(black_box(&values), DEFAULT_MAX_DEPTH, &mut buf).unwrap();
                let bytes = buf.split().freeze();
                black_box(decode_tuple(&bytes, DecodeLimits::default()).unwrap())
            })
        });
    }
    group.finish();

    let values = five_values();
    let mut buf = BytesMut::with_capacity(256);
    c.bench_function("encode/five_values", |b| {
        b.iter(|| {
            buf.clear();
            encode_tuple(black_box(&values), DEFAULT_MAX_DEPTH, &mut buf).unwrap();
        })
    });
    buf.clear();
    encode_tuple(&values, DEFAULT_MAX_DEPTH, &mut buf).unwrap();
    let encoded = buf.freeze();
    c.bench_function("decode/five_values", |b| {
        b.iter(|| black_box(decode_tuple(black_box(&encoded), DecodeLimits::default()).unwrap()))
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
