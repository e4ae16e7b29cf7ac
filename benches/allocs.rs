//! Heap allocations per call, server and client in one process: `cargo bench --bench allocs`.
//!
//! A counting allocator wraps the system's. A server (one worker) binds an echo handler; a
//! client pipelines calls from several threads, each calling `invoke_server` in a loop with a
//! 32-byte string. After a warm-up, the allocations made by every thread of the process over a
//! fixed number of calls are divided by the calls: what one call costs the heap on both ends
//! together, the handler's returned tuple included.

use remotefn::{Client, ClientConfig, Server, ServerConfig, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded caller contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded caller contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const THREADS: usize = 16;
const CALLS_PER_THREAD: usize = 20_000;

/// Runs `calls` calls per thread and returns (allocations, bytes) per call.
fn measure(client: &Arc<Client>, calls: usize) -> (f64, f64) {
    let run = |n: usize| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let client = client.clone();
                std::thread::spawn(move || {
                    let arg = [Value::string(vec![b'x'; 32])];
                    for _ in 0..n {
                        client.invoke_server("Echo", &arg, None).expect("echo");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    run(calls / 10); // warm-up: pools, buffers and channels reach their size
    let (a0, b0) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    run(calls);
    let elapsed = started.elapsed();
    let total = (THREADS * calls) as f64;
    let allocs = (ALLOCATIONS.load(Ordering::Relaxed) - a0) as f64 / total;
    let bytes = (BYTES.load(Ordering::Relaxed) - b0) as f64 / total;
    eprintln!(
        "  ({} calls in {:.2?}: {:.0} calls/s, allocation counting included)",
        total,
        elapsed,
        total / elapsed.as_secs_f64()
    );
    (allocs, bytes)
}

fn main() {
    let server = Server::new(ServerConfig {
        workers: 1,
        limits: remotefn::Limits {
            rate_per_sec: 0,
            ..remotefn::Limits::default()
        },
        ..ServerConfig::default()
    })
    .unwrap();
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let client = Arc::new(Client::connect(addr, ClientConfig::default()).unwrap());
    // Fewer under a profiler (e.g. `valgrind --tool=dhat`): REMOTEFN_ALLOCS_CALLS per thread.
    let calls = std::env::var("REMOTEFN_ALLOCS_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CALLS_PER_THREAD);
    let (allocs, bytes) = measure(&client, calls);
    println!(
        "allocations per call, server + client: {allocs:.2} ({bytes:.0} bytes), \
         {THREADS} threads x {calls} calls, 32-byte echo"
    );
}
