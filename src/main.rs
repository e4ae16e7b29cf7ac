//! The `remotefn` command: run a demo server, call a function, and (later) relay and bench.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
