//! `remotefn relay`: the relay as a service, until SIGTERM or SIGINT.

use clap::Args;
use remotefn::{Relay, RelayConfig};
use std::path::PathBuf;
use std::time::Duration;

/// Flags override the config file, which overrides the defaults.
#[derive(Args, Debug)]
pub struct RelayArgs {
    /// A TOML file with any of the settings below (same names, with underscores; durations in
    /// seconds), e.g. `players = "0.0.0.0:7878"` and `secret = "..."`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where players connect [default: 127.0.0.1:7878].
    #[arg(long)]
    players: Option<String>,
    /// Where game servers attach [default: 127.0.0.1:7879].
    #[arg(long)]
    hosts: Option<String>,
    /// The secret game servers must present to attach (or REMOTEFN_RELAY_SECRET).
    #[arg(long, env = "REMOTEFN_RELAY_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<String>,
    /// Seconds in-flight calls may take to finish on shutdown [default: 5].
    #[arg(long)]
    drain_timeout: Option<f64>,
    /// Largest frame a player may send, in bytes [default: 4 MiB].
    #[arg(long)]
    max_payload: Option<u32>,
    /// Players at once [default: 100,000].
    #[arg(long)]
    max_players: Option<usize>,
    /// Calls and events per second per player, 0 for unlimited [default: 10,000].
    #[arg(long)]
    rate_per_sec: Option<u32>,
    /// Burst size of the per-player rate limit [default: 10,000].
    #[arg(long)]
    rate_burst: Option<u32>,
    /// Seconds a player may stay over its rate (slowed down meanwhile) before it is cut, 0 for
    /// never [default: 30].
    #[arg(long)]
    rate_cut_after: Option<f64>,
    /// Calls a player may have unanswered at once [default: 64].
    #[arg(long)]
    max_inflight_per_player: Option<u32>,
    /// Bytes queued for one player before it is cut as not reading [default: 8 MiB].
    #[arg(long)]
    max_output_buffer: Option<usize>,
    /// Bytes queued for one host before it is cut as not reading [default: 256 MiB].
    #[arg(long)]
    max_host_output_buffer: Option<usize>,
    /// Seconds allowed for a handshake [default: 10].
    #[arg(long)]
    handshake_timeout: Option<f64>,
    /// Seconds of silence before a peer is disconnected, pinged at a third [default: 60].
    #[arg(long)]
    idle_timeout: Option<f64>,
}

fn config(args: RelayArgs) -> Result<RelayConfig, Box<dyn std::error::Error>> {
    let mut c = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => RelayConfig::default(),
    };
    let secs =
        |s: f64| Duration::try_from_secs_f64(s).map_err(|e| format!("bad duration {s}: {e}"));
    if let Some(v) = args.players {
        c.players = v;
    }
    if let Some(v) = args.hosts {
        c.hosts = v;
    }
    if args.secret.is_some() {
        c.secret = args.secret;
    }
    if args.metrics.is_some() {
        c.metrics = args.metrics;
    }
    if let Some(v) = args.drain_timeout {
        c.drain_timeout = secs(v)?;
    }
    if let Some(v) = args.max_payload {
        c.max_payload = v;
    }
    if let Some(v) = args.max_players {
        c.max_players = v;
    }
    if let Some(v) = args.rate_per_sec {
        c.rate_per_sec = v;
    }
    if let Some(v) = args.rate_burst {
        c.rate_burst = v.max(1);
    }
    if let Some(v) = args.rate_cut_after {
        c.rate_cut_after = secs(v)?;
    }
    if let Some(v) = args.max_inflight_per_player {
        c.max_inflight_per_player = v;
    }
    if let Some(v) = args.max_output_buffer {
        c.max_output_buffer = v;
    }
    if let Some(v) = args.max_host_output_buffer {
        c.max_host_output_buffer = v;
    }
    if let Some(v) = args.handshake_timeout {
        c.handshake_timeout = secs(v)?;
    }
    if let Some(v) = args.idle_timeout {
        c.idle_timeout = secs(v)?;
    }
    Ok(c)
}

pub fn run(args: RelayArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = config(args)?;
    if config.secret.is_none() {
        tracing::warn!("no --secret: any game server that reaches the host address can attach");
    }
    // Registered before the relay starts, so a signal can never be missed.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    let relay = Relay::start(config)?;
    let metrics = relay
        .metrics_addr()
        .map(|a| format!(", metrics on http://{a}/metrics"))
        .unwrap_or_default();
    println!(
        "remotefn relay: players on {}, hosts on {}{metrics}",
        relay.players_addr(),
        relay.hosts_addr()
    );
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    relay.shutdown();
    Ok(())
}
