//! The codec round trip of `benches/codec.rs` (`encode_decode/five_values`), timed as 60 batches
//! of 200,000 and reported as the best, first-quartile and median batch.
//!
//! On a shared machine other tenants take the core for stretches of milliseconds, which lifts
//! criterion's mean by a third from one hour to the next; the best batch is the cost of the
//! code when it had the core to itself, and the median shows how much the noise added.
//! `cargo bench --bench codec_batches`

use bytes::BytesMut;
use remotefn::value::codec::{decode_tuple, encode_tuple, DecodeLimits, DEFAULT_MAX_DEPTH};
use std::hint::black_box;
use std::time::Instant;

mod common;

const BATCHES: usize = 60;
const PER_BATCH: u32 = 200_000;

fn main() {
    let values = common::five_values();
    let mut buf = BytesMut::with_capacity(256);
    let mut batches: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..PER_BATCH {
                buf.clear();
                encode_tuple(black_box(&values), DEFAULT_MAX_DEPTH, &mut buf).unwrap();
                let bytes = buf.split().freeze();
                black_box(decode_tuple(&bytes, DecodeLimits::default()).unwrap());
            }
            start.elapsed().as_nanos() as f64 / f64::from(PER_BATCH)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    let (best, quartile, median) = (batches[0], batches[BATCHES / 4], batches[BATCHES / 2]);
    println!(
        "encode_decode/five_values, {BATCHES} batches of {PER_BATCH}: best {best:.1} ns \
         ({:.2} M/s), first quartile {quartile:.1} ns, median {median:.1} ns ({:.2} M/s)",
        1e3 / best,
        1e3 / median
    );
}
