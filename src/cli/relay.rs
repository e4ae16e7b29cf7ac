//! `remotefn relay`: the relay as a service, until SIGTERM or SIGINT.

use super::limits::{secs, PlayerLimitArgs};
use super::tls::{ServerTlsArgs, Signals};
use clap::Args;
use remotefn::{Limits, Relay, RelayConfig, ServerTlsConfig};
use std::path::PathBuf;

/// Flags override the config file, which overrides the defaults.
#[derive(Args, Debug)]
pub struct RelayArgs {
    /// A TOML file with any of the settings below (same names, with underscores; durations in
    /// seconds; the limits in a `[limits]` table), e.g. `players = "0.0.0.0:7878"`,
    /// `secret = "..."` and `[limits] max_players = 20000`.
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
    #[command(flatten)]
    limits: PlayerLimitArgs,
    /// Bytes queued for one host before it is cut as not reading [default: 256 MiB].
    #[arg(long)]
    max_host_output_buffer: Option<usize>,
    /// Event loop threads (1 to 128); a place is served whole by one of them [default: 1].
    #[arg(long)]
    reactors: Option<usize>,
    /// Serve players over TLS (`[players_tls]` in the file). Read again on SIGHUP.
    #[command(flatten)]
    tls: ServerTlsArgs,
    /// Serve game servers over TLS with this certificate chain (PEM; `[hosts_tls]` in the
    /// file); needs --hosts-tls-key. Read again on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "hosts_tls_key")]
    hosts_tls_cert: Option<PathBuf>,
    /// The private key of --hosts-tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "hosts_tls_cert")]
    hosts_tls_key: Option<PathBuf>,
    /// Require every game server to present a certificate signed by a CA in this PEM file
    /// (mutual TLS), with the secret if one is set, or instead of it.
    #[arg(long, value_name = "FILE", requires = "hosts_tls_cert")]
    hosts_client_ca: Option<PathBuf>,
}

fn config(args: RelayArgs) -> Result<RelayConfig, Box<dyn std::error::Error>> {
    let mut c = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => RelayConfig::default(),
    };
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
        c.drain_timeout = secs("--drain-timeout", v)?;
    }
    args.limits.apply(&mut c.limits)?;
    if let Some(v) = args.max_host_output_buffer {
        c.max_host_output_buffer = v;
    }
    if let Some(v) = args.reactors {
        c.reactors = v;
    }
    if let Some(tls) = args.tls.config() {
        c.players_tls = Some(tls);
    }
    if let (Some(cert), Some(key)) = (args.hosts_tls_cert, args.hosts_tls_key) {
        c.hosts_tls = Some(ServerTlsConfig {
            client_ca: args.hosts_client_ca,
            ..ServerTlsConfig::new(cert, key)
        });
    }
    Ok(c)
}

/// Parses a relay config file. The per-player limits were top-level keys before they became a
/// `[limits]` table: a file that still has one there is told where it goes.
fn parse(text: &str) -> Result<RelayConfig, String> {
    toml::from_str(text).map_err(|e| {
        let is_limit = |key: &str| toml::from_str::<Limits>(&format!("{key} = 0")).is_ok();
        let misplaced: Vec<String> = toml::from_str::<toml::Table>(text)
            .map(|table| table.keys().filter(|k| is_limit(k)).cloned().collect())
            .unwrap_or_default();
        match misplaced.as_slice() {
            [] => e.to_string(),
            keys => format!(
                "{e}\nlimits go in the [limits] table: move {} under a `[limits]` line",
                keys.join(", ")
            ),
        }
    })
}

pub fn run(args: RelayArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = config(args)?;
    let host_certificates = config
        .hosts_tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some());
    if config.secret.is_none() && !host_certificates {
        tracing::warn!("no --secret and no --hosts-client-ca: any game server that reaches the host address can attach");
    }
    let signals = Signals::register()?;
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
    signals.wait(|| relay.reload_tls());
    relay.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_limit_outside_the_limits_table_is_pointed_there() {
        let old = "players = \"127.0.0.1:0\"\nmax_players = 5\nidle_timeout = 30\n";
        let why = parse(old).unwrap_err();
        assert!(
            why.contains("move idle_timeout, max_players under a `[limits]` line"),
            "{why}"
        );
        let new = "players = \"127.0.0.1:0\"\n[limits]\nmax_players = 5\nidle_timeout = 30\n";
        assert_eq!(parse(new).unwrap().limits.max_players, 5);
        // Any other unknown key is just unknown.
        let typo = parse("playerz = \"x\"\n").unwrap_err();
        // TLS tables, as DEPLOY.md shows them.
        let tls = "[players_tls]\ncert_chain = \"a.pem\"\nprivate_key = \"a.key\"\n\
                   [hosts_tls]\ncert_chain = \"b.pem\"\nprivate_key = \"b.key\"\nclient_ca = \"ca.pem\"\n";
        let c = parse(tls).unwrap();
        let players = c.players_tls.expect("players_tls");
        assert_eq!(players.cert_chain, std::path::PathBuf::from("a.pem"));
        assert!(!players.allow_tls12 && players.client_ca.is_none());
        let hosts = c.hosts_tls.expect("hosts_tls");
        assert_eq!(hosts.client_ca, Some(std::path::PathBuf::from("ca.pem")));
        assert!(
            parse("[players_tls]\ncert_chain = \"a\"\n").is_err(),
            "a key is required"
        );
        assert!(
            typo.contains("playerz") && !typo.contains("[limits]"),
            "{typo}"
        );
    }
}
