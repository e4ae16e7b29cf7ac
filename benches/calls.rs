//! The call-slot path: take a slot, complete it as the reactor would, collect the outcome as
//! the caller would; on one thread, and with the completion coming from another thread.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use remotefn::__bench::CallSlots;
use std::hint::black_box;
use std::sync::Arc;

fn slots(c: &mut Criterion) {
    let slots = CallSlots::new(4096);
    let reply = Bytes::from_static(b"\x01\x03\x00\x00\x00\x00\x00\x00\x45\x40");
    c.bench_function("call_slot/acquire_complete_wait", |b| {
        b.iter(|| {
            let id = slots.acquire().unwrap();
            slots.complete(id, Ok(reply.clone()));
            black_box(slots.wait(id, None).unwrap())
        })
    });

    // A waiter parked on its slot, woken by a completion from another thread: the path of a
    // blocking invoke minus the network.
    let shared = Arc::new(CallSlots::new(4096));
    let (to_completer, ids) = crossbeam_channel::bounded::<remotefn::CallId>(1);
    let completer = {
        let shared = shared.clone();
        let reply = reply.clone();
        std::thread::spawn(move || {
            for id in ids {
                shared.complete(id, Ok(reply.clone()));
            }
        })
    };
    c.bench_function("call_slot/cross_thread_wake", |b| {
        b.iter(|| {
            let id = shared.acquire().unwrap();
            to_completer.send(id).unwrap();
            black_box(shared.wait(id, None).unwrap())
        })
    });
    drop(to_completer);
    completer.join().unwrap();
}

criterion_group!(benches, slots);
criterion_main!(benches);
