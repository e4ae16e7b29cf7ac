//! What one end allows its peers: the limits shared by [`ServerConfig`](crate::ServerConfig),
//! [`ClientConfig`](crate::ClientConfig) and the relay's config, by the C setters
//! (`rf_server_config_set_*`) and by the command line's flags, so that each limit has one name,
//! one default and one rule for what is valid, wherever it is set.

use crate::error::{Error, Result};
use crate::proto::{RateLimit, SessionConfig, DEFAULT_MAX_FRAME, LINK_OVERHEAD};
use crate::value::codec::DEFAULT_MAX_DEPTH;
use std::time::Duration;

/// The smallest `max_payload`: a frame must at least hold a call's header and a short name.
const MIN_PAYLOAD: u32 = 64;
/// The smallest `max_output_buffer`: below it, one ordinary answer could cut a player.
const MIN_OUTPUT_BUFFER: usize = 64 * 1024;

/// The limits one end enforces on its peers. `Limits::default()` is a server's (and a relay's)
/// embedded defaults; [`Limits::client`] is a client's.
///
/// Every field applies to a server. A client applies the frame, value, queue, call-table and
/// idle limits to its server (it trusts it with the rest, and its handshake is bounded by
/// `ClientConfig::connect_timeout`). A relay decodes no values and runs no handlers: it applies
/// the frame, output, player, handshake, idle, in-flight and rate limits.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "relay",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Limits {
    /// Largest frame a peer may send, and this end will send: type byte plus body, so a call's
    /// arguments get slightly less. At least 64. Default: 4 MiB.
    pub max_payload: u32,
    /// Deepest table nesting accepted in values. At least 1. Default: 64.
    pub max_depth: usize,
    /// Calls (and events) queued per name while no handler is bound. Default: 256.
    pub queue_per_function: usize,
    /// Outbound calls (`invoke_client`, `invoke_server`) in flight at once, over all peers.
    /// At least 1. Default: 65,536 (a client's: 4,096).
    pub max_calls_in_flight: usize,
    /// Inbound calls handed to handlers and not yet answered. At least 1. Default: 65,536 (a
    /// client's: 4,096).
    pub max_pending_replies: usize,
    /// Bytes queued for one peer before it is disconnected as not reading. At least 64 KiB.
    /// Default: 8 MiB (a client's: 64 MiB).
    pub max_output_buffer: usize,
    /// Connected players at once; the next handshake is refused. At least 1. Default: 100,000.
    pub max_players: usize,
    /// A connection that has not completed the handshake by then is closed. Not zero.
    /// Default: 10 s.
    #[cfg_attr(feature = "relay", serde(with = "secs"))]
    pub handshake_timeout: Duration,
    /// A peer not heard from for this long is disconnected; a peer idle for a third of it is
    /// pinged, and answers by itself. Zero disables. Default: 60 s.
    #[cfg_attr(feature = "relay", serde(with = "secs"))]
    pub idle_timeout: Duration,
    /// Calls one player may have unanswered at once; one more disconnects it. At least 1.
    /// Default: 64 (handlers serve calls in arrival order, so this also bounds how long one
    /// player can make everyone else wait). A client's: unlimited (it trusts its server).
    pub max_inflight_per_player: u32,
    /// Calls and events one player may send per second, on average (token bucket). A faster
    /// player is slowed down, not cut: past the bucket its input is left unread until tokens
    /// refill (TCP pushes back on it), so it loses nothing. 0 is unlimited. Default: 10,000 (a
    /// client's: unlimited).
    pub rate_per_sec: u32,
    /// The bucket: how many calls and events may arrive in one burst. At least 1.
    /// Default: 10,000.
    pub rate_burst: u32,
    /// A player that stays over its rate this long without a break is disconnected ("rate
    /// limit"). Zero never disconnects. Default: 30 s.
    #[cfg_attr(feature = "relay", serde(with = "secs"))]
    pub rate_cut_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: DEFAULT_MAX_FRAME,
            max_depth: DEFAULT_MAX_DEPTH,
            queue_per_function: 256,
            max_calls_in_flight: 65_536,
            max_pending_replies: 65_536,
            max_output_buffer: 8 * 1024 * 1024,
            max_players: 100_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_inflight_per_player: 64,
            rate_per_sec: 10_000,
            rate_burst: 10_000,
            rate_cut_after: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// A client's defaults: one server, trusted not to flood its players, and answers that may
    /// be large (a client always reads them, so they never pile up for long).
    pub fn client() -> Limits {
        Limits {
            max_calls_in_flight: 4096,
            max_pending_replies: 4096,
            max_output_buffer: 64 * 1024 * 1024,
            max_players: 1,
            max_inflight_per_player: u32::MAX,
            rate_per_sec: 0,
            ..Limits::default()
        }
    }

    /// Checks every limit against its rule; the error names the first that breaks one.
    pub fn validate(&self) -> Result<()> {
        let rule = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidArgument(what.to_owned()))
            }
        };
        rule(
            self.max_payload >= MIN_PAYLOAD,
            &format!("max_payload must be at least {MIN_PAYLOAD} bytes"),
        )?;
        rule(self.max_depth >= 1, "max_depth must be at least 1")?;
        rule(
            self.max_calls_in_flight >= 1,
            "max_calls_in_flight must be at least 1",
        )?;
        rule(
            self.max_pending_replies >= 1,
            "max_pending_replies must be at least 1",
        )?;
        check_output_buffer("max_output_buffer", self.max_output_buffer)?;
        rule(self.max_players >= 1, "max_players must be at least 1")?;
        rule(
            !self.handshake_timeout.is_zero(),
            "handshake_timeout must not be zero",
        )?;
        rule(
            self.max_inflight_per_player >= 1,
            "max_inflight_per_player must be at least 1",
        )?;
        rule(self.rate_burst >= 1, "rate_burst must be at least 1")
    }

    /// The per-player rate, as the session shapes it (of limits that passed `validate`).
    pub(crate) fn rate(&self) -> RateLimit {
        RateLimit {
            per_sec: self.rate_per_sec,
            burst: self.rate_burst,
            cut_after: self.rate_cut_after,
        }
    }

    /// The session of one player (or, on a client, of its server). `pause_reading` leaves a
    /// peer's input unread while its answers pile up; a client never sets it, since it always
    /// reads its server and the two must never both wait for the other to read.
    pub(crate) fn player_session(&self, pause_reading: bool) -> SessionConfig {
        SessionConfig {
            max_frame: self.max_payload,
            max_output: self.max_output_buffer,
            pause_reading_above: pause_reading.then_some(crate::proto::PAUSE_READING_ABOVE),
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            rate: self.rate(),
            max_inflight: self.max_inflight_per_player,
        }
    }

    /// The session of a link between a relay and a game server, which carries a whole place:
    /// its frames are a player's wrapped in ROUTED, its players are shaped and counted one by
    /// one, and a link that stops reading is cut at `max_output` rather than paused.
    pub(crate) fn link_session(&self, max_output: usize) -> SessionConfig {
        SessionConfig {
            max_frame: self.max_payload + LINK_OVERHEAD,
            max_output,
            pause_reading_above: None,
            rate: RateLimit::UNLIMITED,
            max_inflight: u32::MAX,
            ..self.player_session(false)
        }
    }
}

/// The rule of an output bound (a player's, or the relay's for its hosts), named `what`.
pub(crate) fn check_output_buffer(what: &str, bytes: usize) -> Result<()> {
    if bytes < MIN_OUTPUT_BUFFER {
        return Err(Error::InvalidArgument(format!(
            "{what} must be at least {MIN_OUTPUT_BUFFER} bytes"
        )));
    }
    Ok(())
}

/// Durations in a TOML config are seconds (integer or fractional).
#[cfg(feature = "relay")]
pub(crate) mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_rule_names_its_limit() {
        Limits::default().validate().unwrap();
        Limits::client().validate().unwrap();
        type Break = fn(&mut Limits);
        let broken: [(&str, Break); 9] = [
            ("max_payload", |l| l.max_payload = 63),
            ("max_depth", |l| l.max_depth = 0),
            ("max_calls_in_flight", |l| l.max_calls_in_flight = 0),
            ("max_pending_replies", |l| l.max_pending_replies = 0),
            ("max_output_buffer", |l| l.max_output_buffer = 1000),
            ("max_players", |l| l.max_players = 0),
            ("handshake_timeout", |l| {
                l.handshake_timeout = Duration::ZERO
            }),
            ("max_inflight_per_player", |l| l.max_inflight_per_player = 0),
            ("rate_burst", |l| l.rate_burst = 0),
        ];
        for (name, breaks) in broken {
            let mut limits = Limits::default();
            breaks(&mut limits);
            match limits.validate() {
                Err(Error::InvalidArgument(why)) => assert!(why.starts_with(name), "{why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_link_carries_a_players_largest_frame_wrapped() {
        let limits = Limits::default();
        let link = limits.link_session(1 << 28);
        assert_eq!(link.max_frame, limits.max_payload + LINK_OVERHEAD);
        assert_eq!(link.rate, RateLimit::UNLIMITED);
        assert_eq!(link.pause_reading_above, None);
        assert_eq!(link.idle_timeout, limits.idle_timeout);
    }
}
