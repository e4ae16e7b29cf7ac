//! The relay (`remotefn relay`): players connect to it, game servers ("hosts") attach to it and
//! serve a named place, and it multiplexes all of a place's players onto its host's one
//! connection.
//!
//! The relay runs no user code. A player's handshake names a place; the relay forwards it to
//! that place's host, whose authenticator decides, and holds the player meanwhile. Every call
//! crossing the relay gets a route in its slab of in-flight routes and travels under the route's
//! id, so replies find their way back and no player can answer, or forge an answer to, a call
//! that was not sent to it. A host that goes away fails its players' pending calls, and new calls
//! fail fast, until a host attaches for the place again (the players stay connected and are
//! announced to it). Several relays in front of one host scale the connection tier out.

mod metrics;
mod routes;
mod service;

pub use metrics::Metrics;

use crate::driver::Mailbox;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::metrics::MetricsServer;
use crate::tls::{Acceptor, ServerTlsConfig};
use service::{RelayCommand, Service};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How a relay runs. `RelayConfig::default()` listens on the embedded defaults.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Where players connect. Default: 127.0.0.1:7878.
    pub players: String,
    /// Where game servers attach. Default: 127.0.0.1:7879.
    pub hosts: String,
    /// The secret hosts must present to attach. Default: none (any host may attach; keep the
    /// host address private then, or require host certificates with `hosts_tls.client_ca`).
    pub secret: Option<String>,
    /// Serve players over TLS (in the TOML file: a `[players_tls]` table with `cert_chain`,
    /// `private_key`, optionally `allow_tls12`). Default: plaintext.
    pub players_tls: Option<ServerTlsConfig>,
    /// Serve game servers over TLS (a `[hosts_tls]` table). With `client_ca`, every host must
    /// present a certificate signed by that CA (mutual TLS), on top of the secret if one is
    /// set, or instead of it. Default: plaintext.
    pub hosts_tls: Option<ServerTlsConfig>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`. Default: off.
    pub metrics: Option<String>,
    /// On shutdown, how long in-flight calls may take to finish. Default: 5 s.
    #[serde(with = "crate::limits::secs")]
    pub drain_timeout: Duration,
    /// What the relay allows its players (in the TOML file: a `[limits]` table). Default:
    /// [`Limits::default`], as a server's.
    pub limits: Limits,
    /// Bytes queued for one host before it is cut as not reading (its players' calls then
    /// fail as when a host goes away), so a stalled game server cannot grow the relay's memory
    /// without bound. Default: 256 MiB.
    pub max_host_output_buffer: usize,
    /// Event loop threads (1 to 128). Default: 1. A place is served whole by one loop (the one
    /// its name hashes to): its host and its players move there at their handshake, so a call
    /// never crosses loops. Places, not players, are what several loops spread.
    pub reactors: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            players: "127.0.0.1:7878".into(),
            hosts: "127.0.0.1:7879".into(),
            secret: None,
            players_tls: None,
            hosts_tls: None,
            metrics: None,
            drain_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            max_host_output_buffer: 256 * 1024 * 1024,
            reactors: 1,
        }
    }
}

/// A running relay. Dropping it shuts it down (gracefully, see [`Relay::shutdown`]).
pub struct Relay {
    players: SocketAddr,
    hosts: SocketAddr,
    metrics_server: Option<MetricsServer>,
    metrics: Arc<Metrics>,
    loops: Arc<Loops>,
    drain_timeout: Duration,
    threads: Vec<JoinHandle<()>>,
    /// TLS of the player port and of the host port, if they speak it.
    tls: [Option<Arc<Acceptor>>; 2],
}

/// What the relay's loops share: a way to reach each (hand-offs, shutdown), and the count of
/// players over all of them (for `max_players`). Nothing on a call's path.
pub(crate) struct Loops {
    loops: Vec<Mailbox<RelayCommand>>,
    /// Players that said HELLO, on every loop.
    pub(crate) players: AtomicUsize,
}

impl Loops {
    /// How many loops there are.
    pub(crate) fn count(&self) -> usize {
        self.loops.len()
    }

    /// The loop that serves place `place`: its name's FNV-1a hash, so that every loop agrees
    /// with no table to share, and a place keeps its loop for the life of the relay.
    pub(crate) fn loop_of(&self, place: &str) -> usize {
        place_loop(place, self.loops.len())
    }

    /// Sends loop `to` a command.
    pub(crate) fn send(&self, to: usize, cmd: RelayCommand) {
        self.loops[to].send(cmd);
    }

    /// Loop `at`'s inbox, for that loop to drain.
    pub(crate) fn inbox(&self, at: usize) -> &Mailbox<RelayCommand> {
        &self.loops[at]
    }
}

impl Relay {
    /// Binds both listeners (and the metrics endpoint, if configured) and starts serving.
    pub fn start(config: RelayConfig) -> Result<Relay> {
        config.limits.validate()?;
        crate::limits::check_output_buffer(
            "max_host_output_buffer",
            config.max_host_output_buffer,
        )?;
        let players_tls = config
            .players_tls
            .as_ref()
            .map(Acceptor::load)
            .transpose()?;
        let hosts_tls = config.hosts_tls.as_ref().map(Acceptor::load).transpose()?;
        let players = crate::driver::socket::bind_listener(&config.players).map_err(|e| {
            Error::io_from(
                format!("cannot listen for players on {}", config.players),
                e,
            )
        })?;
        let hosts = crate::driver::socket::bind_listener(&config.hosts).map_err(|e| {
            Error::io_from(format!("cannot listen for hosts on {}", config.hosts), e)
        })?;
        let (players_addr, hosts_addr) = (players.local_addr()?, hosts.local_addr()?);
        let metrics = Arc::new(Metrics::new());
        let metrics_server = match &config.metrics {
            Some(addr) => Some(
                MetricsServer::start(addr, "relay", {
                    let metrics = metrics.clone();
                    Arc::new(move || metrics.render())
                })
                .map_err(|e| Error::io_from(format!("cannot serve metrics on {addr}"), e))?,
            ),
            None => None,
        };
        let drain_timeout = config.drain_timeout;
        let count = crate::ids::check_loops(config.reactors)?;
        // Each loop's driver first (the first accepts on both listeners), so that every loop
        // can be given every other's waker.
        let mut listeners = Some([(players, &players_tls), (hosts, &hosts_tls)]);
        let mut drivers = Vec::with_capacity(count);
        let mut inboxes = Vec::with_capacity(count);
        for event_loop in 0..count {
            let mut io = crate::driver::Io::new(event_loop, Vec::new())?;
            // Listener 0 is the players', 1 the hosts'.
            for (listener, tls) in listeners.take().into_iter().flatten() {
                io.listen_tls(listener, tls.clone())?;
            }
            let inbox = Mailbox::default();
            inbox.set_waker(io.waker()?);
            drivers.push(io);
            inboxes.push(inbox);
        }
        let loops = Arc::new(Loops {
            loops: inboxes,
            players: AtomicUsize::new(0),
        });
        let mut threads = Vec::with_capacity(count);
        for (event_loop, io) in drivers.into_iter().enumerate() {
            let service = Service::new(config.clone(), metrics.clone(), loops.clone(), event_loop);
            let name = match event_loop {
                0 => "rf-relay".to_owned(),
                n => format!("rf-relay-{n}"),
            };
            let run = service::run(io, service);
            match std::thread::Builder::new().name(name).spawn(run) {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop_loops(&loops, &mut threads, Duration::ZERO);
                    return Err(e.into());
                }
            }
        }
        tracing::info!(
            players = %players_addr,
            hosts = %hosts_addr,
            loops = count,
            players_tls = players_tls.is_some(),
            hosts_tls = hosts_tls.is_some(),
            host_certificates = hosts_tls.as_ref().is_some_and(|t| t.requires_client_certs()),
            "relay listening"
        );
        Ok(Relay {
            players: players_addr,
            hosts: hosts_addr,
            metrics_server,
            metrics,
            loops,
            drain_timeout,
            threads,
            tls: [players_tls, hosts_tls],
        })
    }

    /// Reads the TLS certificates and keys of both ports again (those that speak TLS) and
    /// serves new connections with them; connected players and hosts keep their sessions.
    /// On failure the port keeps its current certificate and the error says why.
    pub fn reload_tls(&self) -> Result<()> {
        let mut any = false;
        for acceptor in self.tls.iter().flatten() {
            acceptor.reload()?;
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err(Error::InvalidArgument("this relay serves no TLS".into()))
        }
    }

    /// Where players connect.
    pub fn players_addr(&self) -> SocketAddr {
        self.players
    }

    /// Where game servers attach.
    pub fn hosts_addr(&self) -> SocketAddr {
        self.hosts
    }

    /// Where the metrics endpoint listens, if it was configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::addr)
    }

    /// The relay's counters and histograms.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting, lets in-flight calls finish for up to the drain timeout, fails the
    /// rest, says goodbye to every player and host, and returns when the relay has stopped.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        stop_loops(&self.loops, &mut self.threads, self.drain_timeout);
        self.metrics_server.take();
        tracing::info!("relay stopped");
    }
}

/// The loop of `loops` that serves `place` (FNV-1a of its name).
fn place_loop(place: &str, loops: usize) -> usize {
    (crate::ids::fnv1a(place.as_bytes()) % loops as u64) as usize
}

/// Tells every loop to drain for up to `drain` and joins their threads.
fn stop_loops(loops: &Loops, threads: &mut Vec<JoinHandle<()>>, drain: Duration) {
    for event_loop in 0..loops.count() {
        loops.send(event_loop, RelayCommand::Shutdown(drain));
    }
    for thread in threads.drain(..) {
        let _ = thread.join();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example config in DEPLOY.md is one the relay accepts, and means what it says.
    #[test]
    fn the_deploy_guides_config_file_parses() {
        let guide = include_str!("../../docs/DEPLOY.md");
        let start = guide.find("```toml\n").expect("a toml example") + 8;
        let text = &guide[start..start + guide[start..].find("```").unwrap()];
        let config: RelayConfig = toml::from_str(text).unwrap();
        assert_eq!(config.limits.rate_per_sec, 200);
        assert_eq!(config.limits.max_payload, 65536);
        assert_eq!(config.max_host_output_buffer, 256 << 20);
        assert_eq!(config.limits.max_players, Limits::default().max_players);
        config.limits.validate().unwrap();
        let typo = toml::from_str::<RelayConfig>("[limits]\nmax_player = 5\n");
        assert!(typo.unwrap_err().to_string().contains("max_player"));
    }

    /// Bad bounds are refused, by name, before anything is bound.
    #[test]
    fn places_spread_over_the_loops_and_keep_theirs() {
        let spread: Vec<usize> = (0..8).map(|i| place_loop(&format!("p{i}"), 4)).collect();
        let used: std::collections::BTreeSet<_> = spread.iter().collect();
        assert!(used.len() >= 3, "p0..p7 over 4 loops: {spread:?}");
        assert_eq!(
            place_loop("lobby", 2),
            1,
            "the relay tests' place crosses loops"
        );
        assert!((0..100).all(|n| place_loop("anything", n + 1) < n + 1));
        assert_eq!(place_loop("lobby", 1), 0);
    }

    #[test]
    fn a_relay_with_bad_limits_does_not_start() {
        // Ephemeral ports: were a check missing, the relay would start, not take a fixed port.
        let base = RelayConfig {
            players: "127.0.0.1:0".into(),
            hosts: "127.0.0.1:0".into(),
            ..RelayConfig::default()
        };
        let tiny_host_buffer = RelayConfig {
            max_host_output_buffer: 1000,
            ..base.clone()
        };
        let tiny_player_buffer = RelayConfig {
            limits: Limits {
                max_output_buffer: 1000,
                ..Limits::default()
            },
            ..base
        };
        for (config, name) in [
            (tiny_host_buffer, "max_host_output_buffer"),
            (tiny_player_buffer, "max_output_buffer"),
        ] {
            match Relay::start(config) {
                Err(Error::InvalidArgument(why)) => assert!(why.starts_with(name), "{why}"),
                Err(other) => panic!("{name}: {other}"),
                Ok(_) => panic!("{name}: the relay started"),
            }
        }
    }
}
