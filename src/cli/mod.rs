//! Command-line parsing and the subcommands.

mod bench;
mod call;
mod relay;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Synchronous two-way calls (Roblox RemoteFunction semantics) for C, C++ and Rust games.
#[derive(Parser, Debug)]
#[command(name = "remotefn", version, about)]
struct Cli {
    /// Log level or filter (error, warn, info, debug, trace; or a RUST_LOG-style filter).
    /// RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an embedded game server with demo functions (Echo, Add, Fail, CallMeBack), until
    /// SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// Connect, invoke one function, print its results as JSON.
    Call(call::CallArgs),
    /// Run a relay between players and game servers, until SIGTERM or SIGINT.
    Relay(relay::RelayArgs),
    /// Load a server with many players and report calls/s and latency percentiles.
    Bench(bench::BenchArgs),
    /// The baseline for `bench --protocol echo`: a bare length-prefixed echo over mio with a
    /// worker hop.
    #[command(hide = true)]
    BenchEchoServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Echo worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Call(args) => call::run(args),
        Command::Bench(args) => bench::run(args).map_err(Into::into),
        Command::Relay(args) => relay::run(args),
        Command::BenchEchoServer { listen, workers } => {
            bench::baseline::serve(&listen, workers).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("remotefn: {e}");
            ExitCode::FAILURE
        }
    }
}
