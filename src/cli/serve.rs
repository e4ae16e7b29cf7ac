//! `remotefn serve`: an embedded server with a few demo functions.

use super::limits::{CallLimitArgs, PlayerLimitArgs};
use super::tls::{ServerTlsArgs, Signals};
use clap::Args;
use remotefn::luau::{ScriptConfig, ScriptHost};
use remotefn::{tuple, ClientTlsConfig, Limits, Server, ServerConfig, Tuple, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on for players [default: 127.0.0.1:7878, unless --attach is given].
    #[arg(long)]
    listen: Option<String>,
    /// Serve players through the relay whose host address this is (repeatable).
    #[arg(long)]
    attach: Vec<String>,
    /// With --attach: the place this server serves.
    #[arg(long, default_value = "lobby")]
    place: String,
    /// With --attach: the relay's secret (or REMOTEFN_RELAY_SECRET).
    #[arg(long, env = "REMOTEFN_RELAY_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Handler worker threads.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Event loop threads, each serving its share of the players (1 to 128).
    #[arg(long, default_value_t = 1)]
    reactors: usize,
    /// Run Echo, Add and Fail on the event loop as calls arrive (inline handlers: no hand-off
    /// to a worker thread); CallMeBack, which waits on the client, stays on the workers.
    #[arg(long)]
    inline: bool,
    #[command(flatten)]
    tls: ServerTlsArgs,
    /// With --attach: speak TLS to the relay (verified against the system's trust store, or
    /// --relay-ca; the name is the relay address's host).
    #[arg(long)]
    relay_tls: bool,
    /// With --relay-tls: trust the CAs in this PEM file.
    #[arg(long, value_name = "FILE", requires = "relay_tls")]
    relay_ca: Option<PathBuf>,
    /// With --relay-tls: present this certificate chain (PEM) to relays that require one.
    #[arg(long, value_name = "FILE", requires_all = ["relay_tls", "relay_key"])]
    relay_cert: Option<PathBuf>,
    /// The private key of --relay-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "relay_cert")]
    relay_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9186).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Luau server scripts to run beside the demo functions, in order (repeatable); their
    /// remotes are served by name, their `print` goes to stdout. The first one's folder is
    /// where `require` looks.
    #[arg(long, num_args = 1..)]
    script: Vec<PathBuf>,
    /// CPU time one resumption of a script may take, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    script_cpu_ms: u64,
    /// Memory the scripts may allocate, in MiB.
    #[arg(long, default_value_t = 64)]
    script_memory_mib: usize,
    #[command(flatten)]
    player_limits: PlayerLimitArgs,
    #[command(flatten)]
    call_limits: CallLimitArgs,
}

/// How long `CallMeBack` waits for the client's answer.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let signals = Signals::register()?;
    let mut limits = Limits::default();
    args.player_limits.apply(&mut limits)?;
    args.call_limits.apply(&mut limits);
    let server = Server::new(ServerConfig {
        workers: args.workers,
        reactors: args.reactors,
        limits,
        tls: args.tls.config(),
        relay_tls: args.relay_tls.then(|| ClientTlsConfig {
            ca_file: args.relay_ca.clone(),
            client_cert: args.relay_cert.clone(),
            client_key: args.relay_key.clone(),
            ..ClientTlsConfig::default()
        }),
        ..ServerConfig::default()
    })?;
    bind_demo_functions(&server, args.inline)?;
    server.on_player_added(|srv, player| {
        tracing::info!(%player, players = srv.player_count(), "player added");
    });
    server.on_player_removing(|srv, player| {
        tracing::info!(%player, players = srv.player_count(), "player removing");
    });
    let scripts = start_scripts(&server, &args)?;
    let metrics = args
        .metrics
        .as_deref()
        .map(|addr| server.serve_metrics(addr))
        .transpose()?;
    let metrics_note = metrics
        .as_ref()
        .map(|m| format!(", metrics on http://{}/metrics", m.addr()))
        .unwrap_or_default();
    for relay in &args.attach {
        server.attach(relay, &args.place, args.secret.as_deref())?;
        println!(
            "remotefn serving place {:?} through the relay at {relay}{metrics_note}",
            args.place
        );
    }
    let listen = match (args.listen, args.attach.is_empty()) {
        (Some(addr), _) => Some(addr),
        (None, true) => Some("127.0.0.1:7878".to_owned()),
        (None, false) => None,
    };
    if let Some(listen) = listen {
        let addr = server.listen(listen.as_str())?;
        let tls = if args.tls.config().is_some() {
            " over TLS"
        } else {
            ""
        };
        println!(
            "remotefn serving on {addr}{tls} (functions: Echo, Add, Fail, CallMeBack){metrics_note}; Ctrl-C stops"
        );
    }
    signals.wait(|| server.reload_tls());
    // Players get a goodbye; pending calls fail with a clear error.
    drop(scripts);
    server.shutdown();
    drop(metrics);
    Ok(())
}

/// Runs `--script` files on a script host of the server (none without them).
fn start_scripts(
    server: &Server,
    args: &ServeArgs,
) -> Result<Option<ScriptHost>, Box<dyn std::error::Error>> {
    if args.script.is_empty() {
        return Ok(None);
    }
    let host = ScriptHost::server(
        &server.handle(),
        ScriptConfig {
            cpu_budget: Duration::from_millis(args.script_cpu_ms),
            memory_limit: args.script_memory_mib << 20,
            output: Some(super::client::script_output(Default::default())),
            ..ScriptConfig::default()
        },
    )?;
    for script in &args.script {
        host.load_file(script)
            .map_err(|e| format!("{}: {e}", script.display()))?;
        tracing::info!(script = %script.display(), "script loaded");
    }
    Ok(Some(host))
}

/// Binds a handler that only computes: inline, or on the workers.
fn bind_computing<F>(server: &Server, inline: bool, name: &str, f: F) -> Result<(), remotefn::Error>
where
    F: Fn(Tuple) -> Result<Tuple, String> + Send + Sync + 'static,
{
    if inline {
        server.bind_inline(name, move |_, args| f(args))
    } else {
        server.bind(name, move |_, _, args| f(args))
    }
}

/// The demo functions: enough to try every semantic from `remotefn call`.
fn bind_demo_functions(server: &Server, inline: bool) -> Result<(), remotefn::Error> {
    // Echo(...) returns its arguments.
    bind_computing(server, inline, "Echo", Ok)?;
    // Add(a, b, ...) returns the sum of numbers.
    bind_computing(server, inline, "Add", |args| {
        args.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_number().ok_or_else(|| {
                    format!("argument {} is a {}, not a number", i + 1, v.type_name())
                })
            })
            .sum::<Result<f64, String>>()
            .map(|sum| tuple![sum])
    })?;
    // Fail(message?) raises an error at the caller.
    bind_computing(server, inline, "Fail", |args| {
        let message = args
            .first()
            .and_then(Value::as_str)
            .unwrap_or("Fail was called");
        Err(message.to_owned())
    })?;
    // CallMeBack(...) invokes the calling client's Echo with the same arguments and returns
    // what the client answered: a nested call across the boundary.
    server.bind("CallMeBack", |srv, player, args| {
        srv.invoke_client(player, "Echo", &args, Some(CALLBACK_TIMEOUT))
            .map_err(|e| format!("calling the client back failed: {e}"))
    })?;
    Ok(())
}
