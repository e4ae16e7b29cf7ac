//! One thread calling `invoke_server` in a loop through the client API: the round trip a
//! game's own code pays, measured by `benches/client_api.py` beside the raw-socket generator.
//!
//! `cargo run --release --example client_loop -- ADDR [SECONDS]` (the server must bind
//! `Echo`, as `remotefn serve` does). Prints `round_trips_per_sec N p50_us N`.

use remotefn::{tuple, Client, ClientConfig};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().ok_or("usage: client_loop ADDR [SECONDS]")?;
    let seconds: f64 = args.next().map_or(Ok(4.0), |s| s.parse())?;
    let client = Client::connect(addr.as_str(), ClientConfig::default())?;
    let payload = tuple!["x".repeat(32)];
    let timeout = Some(Duration::from_secs(10));
    let warm_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < warm_until {
        client.invoke_server("Echo", &payload, timeout)?;
    }
    let mut latencies = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        client.invoke_server("Echo", &payload, timeout)?;
        latencies.push(sent.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    println!(
        "round_trips_per_sec {:.0} p50_us {}",
        latencies.len() as f64 / elapsed,
        p50.as_micros()
    );
    Ok(())
}
