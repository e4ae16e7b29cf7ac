//! A tonic gRPC unary echo server and a closed-loop load generator for it: the comparison
//! point for `remotefn bench` (same shape: N players each with its own connection and one call
//! in flight, a 32-byte echo, p50/p99/p99.9 from an hdrhistogram).
//!
//! `remotefn-compare` starts the server as a child process (`remotefn-compare serve`), on a
//! tokio runtime with 2 worker threads, then loads it from a single-threaded runtime, as
//! `remotefn bench` loads its server from one generator thread.

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

pub mod pb {
    tonic::include_proto!("echo");
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Connected players, each with its own HTTP/2 connection.
    #[arg(long, default_value_t = 1000)]
    players: usize,
    /// Bytes echoed per call.
    #[arg(long, default_value_t = 32)]
    payload: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Server runtime worker threads.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Load generator runtime threads (1: a current-thread runtime, like `remotefn bench`'s
    /// single generator thread; more gives the gRPC client more CPU than remotefn's gets).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gRPC echo server (prints its address first).
    Serve {
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

struct EchoService;

#[tonic::async_trait]
impl pb::echo_server::Echo for EchoService {
    async fn echo(&self, request: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

fn serve(threads: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("grpc echo serving on {}", listener.local_addr().expect("addr"));
        let incoming = async_stream_accept(listener);
        tonic::transport::Server::builder()
            .add_service(pb::echo_server::EchoServer::new(EchoService))
            .serve_with_incoming(incoming)
            .await
            .expect("serve");
    });
}

/// Accepted connections as the stream tonic serves, with TCP_NODELAY as remotefn sets it.
fn async_stream_accept(
    listener: tokio::net::TcpListener,
) -> impl tonic::codegen::tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                s
            });
            if tx.send(accepted).is_err() {
                return;
            }
        }
    });
    tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
}

fn main() {
    let cli = Cli::parse();
    if let Some(Cmd::Serve { threads }) = cli.command {
        return serve(threads);
    }
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .args(["serve", "--threads", &cli.server_threads.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the gRPC server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address");
    let addr = line.split_whitespace().last().expect("address").to_owned();

    let rt = if cli.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.client_threads)
            .enable_all()
            .build()
    }
    .expect("runtime");
    let (calls, elapsed, hist, errors) = rt.block_on(load(&cli, &addr));
    let _ = child.kill();
    let _ = child.wait();
    let rate = calls as f64 / elapsed.as_secs_f64();
    let (p50, p99, p999) = (
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
    );
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"protocol": "grpc", "players": cli.players, "inflight": 1, "payload": cli.payload,
                "calls_per_sec": rate.round(), "calls": calls, "p50_us": p50, "p99_us": p99, "p999_us": p999,
                "errors": errors})
        );
    } else {
        println!(
            "grpc: {} players x 1, {} B: {rate:.0} calls/s, p50 {p50}us, p99 {p99}us, p99.9 {p999}us, {errors} errors",
            cli.players, cli.payload
        );
    }
}

async fn load(cli: &Cli, addr: &str) -> (u64, Duration, Histogram<u64>, u64) {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..cli.players {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect");
        let mut client = pb::echo_client::EchoClient::new(channel);
        let (measuring, stop) = (measuring.clone(), stop.clone());
        let payload = vec![b'x'; cli.payload];
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let (mut calls, mut errors) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let ok = client.echo(pb::Payload { data: payload.clone() }).await.is_ok();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        calls += 1;
                        let _ = hist.record(sent.elapsed().as_micros().max(1) as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (calls, hist, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(cli.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(cli.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut calls, mut errors) = (0, 0);
    for t in tasks {
        let (c, h, e) = t.await.expect("task");
        calls += c;
        errors += e;
        total.add(&h).expect("same bounds");
    }
    (calls, elapsed, total, errors)
}
