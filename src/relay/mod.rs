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

use crate::error::{Error, Result};
use crossbeam_channel::{unbounded, Sender};
use metrics::MetricsServer;
use mio::Waker;
use service::{RelayCommand, Service};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// host address private then).
    pub secret: Option<String>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`. Default: off.
    pub metrics: Option<String>,
    /// On shutdown, how long in-flight calls may take to finish. Default: 5 s.
    #[serde(with = "secs")]
    pub drain_timeout: Duration,
    /// Largest frame a player may send. Default: 4 MiB.
    pub max_payload: u32,
    /// Players at once. Default: 100,000.
    pub max_players: usize,
    /// Calls and events per second per player (0: unlimited). Default: 10,000.
    pub rate_per_sec: u32,
    /// Burst size of the rate limit. Default: 10,000. A player over its rate is slowed down
    /// (its input left unread until tokens refill), not cut.
    pub rate_burst: u32,
    /// A player that stays over its rate this long without a break is disconnected ("rate
    /// limit"); zero never disconnects. Default: 30 s.
    #[serde(with = "secs")]
    pub rate_cut_after: Duration,
    /// Calls a player may have unanswered at once. Default: 64.
    pub max_inflight_per_player: u32,
    /// Bytes queued for one player before it is cut as not reading. Default: 8 MiB.
    pub max_output_buffer: usize,
    /// Bytes queued for one host before it is cut as not reading (its players' calls then
    /// fail as when a host goes away), so a stalled game server cannot grow the relay's memory
    /// without bound. Default: 256 MiB.
    pub max_host_output_buffer: usize,
    /// Time allowed to complete a handshake. Default: 10 s.
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    /// Silence before a player or host is disconnected (pinged at a third). Default: 60 s.
    #[serde(with = "secs")]
    pub idle_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            players: "127.0.0.1:7878".into(),
            hosts: "127.0.0.1:7879".into(),
            secret: None,
            metrics: None,
            drain_timeout: Duration::from_secs(5),
            max_payload: crate::proto::DEFAULT_MAX_FRAME,
            max_players: 100_000,
            rate_per_sec: 10_000,
            rate_burst: 10_000,
            rate_cut_after: Duration::from_secs(30),
            max_inflight_per_player: 64,
            max_output_buffer: 8 * 1024 * 1024,
            max_host_output_buffer: 256 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Durations in the TOML config file are seconds (integer or fractional).
mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// A running relay. Dropping it shuts it down (gracefully, see [`Relay::shutdown`]).
pub struct Relay {
    players: SocketAddr,
    hosts: SocketAddr,
    metrics_server: Option<MetricsServer>,
    metrics: Arc<Metrics>,
    commands: Sender<RelayCommand>,
    waker: Arc<Waker>,
    wake_pending: Arc<AtomicBool>,
    drain_timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Binds both listeners (and the metrics endpoint, if configured) and starts serving.
    pub fn start(config: RelayConfig) -> Result<Relay> {
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
                MetricsServer::start(addr, metrics.clone())
                    .map_err(|e| Error::io_from(format!("cannot serve metrics on {addr}"), e))?,
            ),
            None => None,
        };
        let (commands, receiver) = unbounded();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let drain_timeout = config.drain_timeout;
        let service = Service::new(config, metrics.clone(), receiver, wake_pending.clone());
        let (run, waker) = service::start(players, hosts, service)?;
        let waker = Arc::new(waker);
        let thread = std::thread::Builder::new()
            .name("rf-relay".into())
            .spawn(run)?;
        tracing::info!(players = %players_addr, hosts = %hosts_addr, "relay listening");
        Ok(Relay {
            players: players_addr,
            hosts: hosts_addr,
            metrics_server,
            metrics,
            commands,
            waker,
            wake_pending,
            drain_timeout,
            thread: Some(thread),
        })
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
        self.metrics_server.as_ref().map(|m| m.addr)
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
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self
            .commands
            .send(RelayCommand::Shutdown(self.drain_timeout));
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        let _ = thread.join();
        self.metrics_server.take();
        tracing::info!("relay stopped");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}
