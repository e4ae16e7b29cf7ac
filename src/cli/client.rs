//! `remotefn client --script FILE... ADDR`: a scripted player. Its Luau scripts run as a
//! Roblox LocalScript does, against the server at ADDR.

use super::tls::ClientTlsArgs;
use clap::Args;
use remotefn::luau::{OutputKind, OutputSink, ScriptConfig, ScriptHost};
use remotefn::{Client, ClientConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Server or relay address, e.g. 127.0.0.1:7878.
    addr: String,
    /// A Luau script to run (repeat for more, run in order). The first one's folder is where
    /// `require` looks.
    #[arg(long, required = true)]
    script: Vec<PathBuf>,
    /// Handshake token for the server's authenticator.
    #[arg(long, default_value = "")]
    token: String,
    /// Place to join (relay deployments).
    #[arg(long, default_value = "")]
    place: String,
    /// CPU time one resumption of a script may take, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    script_cpu_ms: u64,
    /// Memory the scripts may allocate, in MiB.
    #[arg(long, default_value_t = 64)]
    script_memory_mib: usize,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

/// Where a CLI host's script output goes: `print` to stdout, the rest to stderr, counting
/// errors (the exit status reports them).
pub fn script_output(errors: Arc<AtomicUsize>) -> OutputSink {
    Arc::new(move |kind, line| match kind {
        OutputKind::Print => println!("{line}"),
        OutputKind::Warn => eprintln!("warning: {line}"),
        OutputKind::Error => {
            errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("error: {line}");
        }
    })
}

/// Exits when the scripts are idle (nothing waits, nothing is bound: a script that listens
/// to an event runs until stopped), when the server disconnects, or on SIGTERM/SIGINT.
/// The status is 1 if a script raised an error or the server went away first.
pub fn run(args: ClientArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let config = ClientConfig {
        token: args.token.into_bytes().into(),
        place: args.place,
        tls: args.tls.config(),
        ..ClientConfig::default()
    };
    let client = Client::connect(args.addr.as_str(), config)?;
    let errors = Arc::new(AtomicUsize::new(0));
    let host = ScriptHost::client(
        &client.handle(),
        ScriptConfig {
            cpu_budget: Duration::from_millis(args.script_cpu_ms),
            memory_limit: args.script_memory_mib << 20,
            output: Some(script_output(errors.clone())),
            ..ScriptConfig::default()
        },
    )?;
    for script in &args.script {
        host.load_file(script)
            .map_err(|e| format!("{}: {e}", script.display()))?;
    }
    let disconnected = loop {
        if host.is_idle() {
            break false;
        }
        if !client.is_connected() {
            break true;
        }
        if signals.pending().next().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    host.stop();
    client.close();
    if disconnected {
        eprintln!("remotefn: the server closed the connection before the scripts finished");
    }
    let failed = disconnected || errors.load(Ordering::Relaxed) > 0;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
