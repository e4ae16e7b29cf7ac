//! The flags of [`Limits`], shared by `serve` and `relay`: each is optional, and only the ones
//! given change the limits they are applied to (a relay's config file, or the defaults).

use clap::Args;
use remotefn::Limits;
use std::time::Duration;

/// Limits on each player, which both a server and a relay enforce.
#[derive(Args, Debug, Default)]
pub struct PlayerLimitArgs {
    /// Largest frame a player may send, in bytes [default: 4194304].
    #[arg(long)]
    max_payload: Option<u32>,
    /// Connected players at once [default: 100000].
    #[arg(long)]
    max_players: Option<usize>,
    /// Calls and events one player may send per second, 0 for unlimited; a faster player is
    /// slowed down to it, not cut [default: 10000].
    #[arg(long)]
    rate_per_sec: Option<u32>,
    /// Calls and events one player may send in one burst [default: 10000].
    #[arg(long)]
    rate_burst: Option<u32>,
    /// Seconds a player may stay over its rate without a break before it is cut, 0 for never
    /// [default: 30].
    #[arg(long)]
    rate_cut_after: Option<f64>,
    /// Calls one player may have unanswered at once [default: 64].
    #[arg(long)]
    max_inflight_per_player: Option<u32>,
    /// Bytes queued for one player before it is cut as not reading [default: 8388608].
    #[arg(long)]
    max_output_buffer: Option<usize>,
    /// Seconds a connection may take to complete the handshake [default: 10].
    #[arg(long)]
    handshake_timeout: Option<f64>,
    /// Seconds a peer may stay silent (it is pinged after a third of it), 0 to disable
    /// [default: 60].
    #[arg(long)]
    idle_timeout: Option<f64>,
}

/// Limits of a server's calls and handlers (a relay decodes no values and runs no handlers).
#[derive(Args, Debug, Default)]
pub struct CallLimitArgs {
    /// Deepest table nesting accepted in values [default: 64].
    #[arg(long)]
    max_depth: Option<usize>,
    /// Calls and events queued per name while no handler is bound [default: 256].
    #[arg(long)]
    queue_per_function: Option<usize>,
    /// Calls to players in flight at once, over all players [default: 65536].
    #[arg(long)]
    max_calls_in_flight: Option<usize>,
    /// Calls from players handed to handlers and not yet answered [default: 65536].
    #[arg(long)]
    max_pending_replies: Option<usize>,
}

/// A duration flag given in seconds; negative or not finite is an error.
pub fn secs(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|e| format!("{flag} {value}: {e}"))
}

fn set<T: Copy>(field: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *field = value;
    }
}

fn set_secs(field: &mut Duration, name: &str, flag: Option<f64>) -> Result<(), String> {
    if let Some(value) = flag {
        *field = secs(name, value)?;
    }
    Ok(())
}

impl PlayerLimitArgs {
    /// Sets the limits given on the command line.
    pub fn apply(&self, limits: &mut Limits) -> Result<(), String> {
        set(&mut limits.max_payload, self.max_payload);
        set(&mut limits.max_players, self.max_players);
        set(&mut limits.rate_per_sec, self.rate_per_sec);
        set(&mut limits.rate_burst, self.rate_burst);
        set_secs(
            &mut limits.rate_cut_after,
            "--rate-cut-after",
            self.rate_cut_after,
        )?;
        set(
            &mut limits.max_inflight_per_player,
            self.max_inflight_per_player,
        );
        set(&mut limits.max_output_buffer, self.max_output_buffer);
        set_secs(
            &mut limits.handshake_timeout,
            "--handshake-timeout",
            self.handshake_timeout,
        )?;
        set_secs(
            &mut limits.idle_timeout,
            "--idle-timeout",
            self.idle_timeout,
        )
    }
}

impl CallLimitArgs {
    /// Sets the limits given on the command line.
    pub fn apply(&self, limits: &mut Limits) {
        set(&mut limits.max_depth, self.max_depth);
        set(&mut limits.queue_per_function, self.queue_per_function);
        set(&mut limits.max_calls_in_flight, self.max_calls_in_flight);
        set(&mut limits.max_pending_replies, self.max_pending_replies);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        players: PlayerLimitArgs,
        #[command(flatten)]
        calls: CallLimitArgs,
    }

    /// The defaults the help text states are the library's.
    #[test]
    fn the_help_states_the_librarys_defaults() {
        use clap::CommandFactory;
        let help = Flags::command().render_help().to_string();
        let d = Limits::default();
        for (flag, default) in [
            ("--max-payload", d.max_payload.to_string()),
            ("--max-players", d.max_players.to_string()),
            ("--rate-per-sec", d.rate_per_sec.to_string()),
            ("--rate-burst", d.rate_burst.to_string()),
            ("--rate-cut-after", d.rate_cut_after.as_secs().to_string()),
            (
                "--max-inflight-per-player",
                d.max_inflight_per_player.to_string(),
            ),
            ("--max-output-buffer", d.max_output_buffer.to_string()),
            (
                "--handshake-timeout",
                d.handshake_timeout.as_secs().to_string(),
            ),
            ("--idle-timeout", d.idle_timeout.as_secs().to_string()),
            ("--max-depth", d.max_depth.to_string()),
            ("--queue-per-function", d.queue_per_function.to_string()),
            ("--max-calls-in-flight", d.max_calls_in_flight.to_string()),
            ("--max-pending-replies", d.max_pending_replies.to_string()),
        ] {
            let at = help.find(flag).unwrap_or_else(|| panic!("{flag} missing"));
            let text = &help[at..];
            let stated = text.find("[default: ").map(|i| &text[i + 10..]).unwrap();
            let stated = &stated[..stated.find(']').unwrap()];
            assert_eq!(stated, default, "{flag}");
        }
    }

    #[test]
    fn only_the_flags_given_change_the_limits() {
        let flags = Flags::parse_from(["x", "--max-payload", "1024", "--idle-timeout", "0.5"]);
        let mut limits = Limits::client();
        flags.players.apply(&mut limits).unwrap();
        flags.calls.apply(&mut limits);
        assert_eq!(
            limits,
            Limits {
                max_payload: 1024,
                idle_timeout: Duration::from_millis(500),
                ..Limits::client()
            }
        );
        let bad = Flags::parse_from(["x", "--idle-timeout=-1"]);
        assert!(bad.players.apply(&mut limits).is_err());
    }
}
