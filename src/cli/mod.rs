//! Command-line parsing and the subcommands.

mod call;
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
    /// Run an embedded game server with demo functions (Echo, Add, Fail, CallMeBack).
    Serve(serve::ServeArgs),
    /// Connect, invoke one function, print its results as JSON.
    Call(call::CallArgs),
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
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Call(args) => call::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("remotefn: {e}");
            ExitCode::FAILURE
        }
    }
}
