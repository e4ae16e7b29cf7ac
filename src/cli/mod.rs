//! Command-line parsing and the subcommands.

mod bench;
mod call;
mod client;
mod limits;
mod probe;
mod relay;
mod serve;
mod tls;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Log lines waiting for the log thread, at most; past them lines are dropped and counted.
const LOG_LINES_BUFFERED: usize = 16 * 1024;
/// How often dropped log lines are reported.
const DROPPED_LINES_REPORT: Duration = Duration::from_secs(10);

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
    /// Run Luau scripts as a player (a Roblox LocalScript's surface), until they are idle.
    Client(client::ClientArgs),
    /// Run a relay between players and game servers, until SIGTERM or SIGINT.
    Relay(relay::RelayArgs),
    /// Load a server with many players and report calls/s and latency percentiles.
    Bench(bench::BenchArgs),
    /// Health check: exit 0 if a server or relay answers a handshake (or a metrics URL
    /// answers 200), 1 if not.
    Probe(probe::ProbeArgs),
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
    let _log_flushed_at_exit = init_logging(&cli.log);
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Client(args) => {
            return client::run(args).unwrap_or_else(|e| {
                eprintln!("remotefn: {e}");
                ExitCode::FAILURE
            })
        }
        Command::Serve(args) => serve::run(args),
        Command::Call(args) => call::run(args),
        Command::Bench(args) => bench::run(args).map_err(Into::into),
        Command::Relay(args) => relay::run(args),
        Command::Probe(args) => probe::run(args),
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

/// Logs to stderr through a thread of its own: the threads that log (the event loops among
/// them) only queue a line, and drop it when the queue is full, so a log sink that stops
/// reading never stalls them. Dropped lines are counted and reported every
/// [`DROPPED_LINES_REPORT`] (through the same queue, so a report dropped too is in the next).
fn init_logging(level: &str) -> WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .thread_name("rf-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer)
        .init();
    let _ = std::thread::Builder::new()
        .name("rf-log-drops".into())
        .spawn(move || report_dropped_lines(&dropped));
    guard
}

fn report_dropped_lines(dropped: &ErrorCounter) {
    let mut reported = 0;
    loop {
        std::thread::sleep(DROPPED_LINES_REPORT);
        let total = dropped.dropped_lines();
        if total > reported {
            tracing::warn!(
                "{} log lines dropped in the last {} s ({total} since start): the log output \
                 is not keeping up",
                total - reported,
                DROPPED_LINES_REPORT.as_secs()
            );
            reported = total;
        }
    }
}
