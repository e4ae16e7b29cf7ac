//! Counters an endpoint keeps about its connections and calls, readable at any time.
//!
//! Each is a relaxed atomic, bumped by the reactor (never behind a lock) and read as a
//! snapshot: figures from one snapshot are each exact but not taken at a single instant.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A snapshot of an endpoint's counters (all totals since it started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (a client counts its one connection).
    pub connections: u64,
    /// Handshakes refused (authenticator, protocol, server full, handshake timeout).
    pub refused: u64,
    /// Calls received from peers.
    pub calls_in: u64,
    /// Calls sent to peers (`invoke_client` / `invoke_server`).
    pub calls_out: u64,
    /// Events received from peers.
    pub events_in: u64,
    /// Peers disconnected for breaking the protocol.
    pub disconnects_protocol: u64,
    /// Peers disconnected for exceeding a limit (rate, calls in flight, output buffer).
    pub disconnects_limit: u64,
    /// Peers disconnected for a handshake or idle timeout.
    pub disconnects_timeout: u64,
    /// Players kicked by the game.
    pub kicks: u64,
    /// Connections that ended for any other reason (the peer left, shutdown).
    pub disconnects_other: u64,
    /// Connections to a TLS port cut because TLS failed: plaintext or garbage where a TLS
    /// handshake belongs, a refused client certificate, a bad record (also counted in
    /// `disconnects_other`).
    pub tls_failures: u64,
    /// TLS handshakes completed in full (a resumed one is counted in `tls_resumed` instead).
    pub tls_handshakes: u64,
    /// TLS handshakes that resumed an earlier session with a ticket.
    pub tls_resumed: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
}

macro_rules! counters {
    ($($field:ident),* $(,)?) => {
        /// The live counters behind [`Stats`].
        #[derive(Default)]
        pub(crate) struct Counters {
            $(pub $field: AtomicU64,)*
        }

        impl Counters {
            /// Adds these counts to `total`.
            pub(crate) fn add_to(&self, total: &mut Stats) {
                $(total.$field += self.$field.load(Ordering::Relaxed);)*
            }
        }
    };
}

counters!(
    connections,
    refused,
    calls_in,
    calls_out,
    events_in,
    disconnects_protocol,
    disconnects_limit,
    disconnects_timeout,
    kicks,
    disconnects_other,
    tls_failures,
    tls_handshakes,
    tls_resumed,
    bytes_in,
    bytes_out,
);

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Cuts logged one by one per window; past them, cuts are only counted until the window ends.
const CUTS_LOGGED_PER_WINDOW: u32 = 5;
/// How often the cuts past the first few are summarised.
const CUT_LOG_WINDOW: Duration = Duration::from_secs(10);

/// The log of connections an event loop cut (refused, timed out, over a limit, broke the
/// protocol), with its volume bounded whatever the peers do: under attack every cut connection
/// would otherwise be a line, and the attacker would decide how much is logged. The first few
/// cuts of each window are logged at info with their detail; the rest at debug only, and then
/// summarised in one info line per window ("412 more connections cut in the last 10 s: 400
/// timeout (e.g. ...), 12 protocol error (e.g. ...)").
///
/// Sans-IO: the loop passes the time and calls [`CutLog::poll`] from its timers.
pub(crate) struct CutLog {
    /// What is logged: "server" or "relay".
    who: &'static str,
    window_start: Instant,
    logged: u32,
    /// Cuts past the first few of this window, by cause, each with its first reason.
    unlogged: Vec<(&'static str, u64, String)>,
}

impl CutLog {
    pub(crate) fn new(who: &'static str, now: Instant) -> CutLog {
        CutLog {
            who,
            window_start: now,
            logged: 0,
            unlogged: Vec::new(),
        }
    }

    /// Records one cut connection; `peer` and `reason` are its detail.
    pub(crate) fn record(&mut self, cause: &'static str, peer: &dyn fmt::Debug, reason: &str) {
        if self.logged < CUTS_LOGGED_PER_WINDOW {
            self.logged += 1;
            tracing::info!(who = self.who, ?peer, "connection cut ({cause}): {reason}");
            return;
        }
        tracing::debug!(who = self.who, ?peer, "connection cut ({cause}): {reason}");
        match self.unlogged.iter_mut().find(|(c, ..)| *c == cause) {
            Some((_, n, _)) => *n += 1,
            None => self.unlogged.push((cause, 1, reason.to_owned())),
        }
    }

    /// Ends the window once it has lasted [`CUT_LOG_WINDOW`], logging the summary of what was
    /// only counted; returns the summary line (for tests).
    pub(crate) fn poll(&mut self, now: Instant) -> Option<String> {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < CUT_LOG_WINDOW {
            return None;
        }
        self.window_start = now;
        self.logged = 0;
        if self.unlogged.is_empty() {
            return None;
        }
        let total: u64 = self.unlogged.iter().map(|(_, n, _)| n).sum();
        let causes: Vec<String> = self
            .unlogged
            .drain(..)
            .map(|(cause, n, example)| format!("{n} {cause} (e.g. {example})"))
            .collect();
        let line = format!(
            "{total} more connections cut in the last {} s: {} (each at debug level)",
            elapsed.as_secs(),
            causes.join(", ")
        );
        tracing::info!(who = self.who, "{line}");
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_cuts_is_a_few_lines_and_one_summary_per_window() {
        let start = Instant::now();
        let mut log = CutLog::new("server", start);
        for i in 0..1000 {
            let cause = if i % 4 == 0 {
                "protocol error"
            } else {
                "timeout"
            };
            log.record(cause, &i, &format!("reason {i}"));
        }
        assert_eq!(log.logged, CUTS_LOGGED_PER_WINDOW);
        assert_eq!(
            log.poll(start + Duration::from_secs(9)),
            None,
            "window not over"
        );
        let line = log.poll(start + CUT_LOG_WINDOW).expect("a summary");
        assert!(
            line.starts_with("995 more connections cut in the last 10 s"),
            "{line}"
        );
        // Cuts 0..5 were logged one by one; the first counted ones are 5 (timeout), 8 (protocol).
        assert!(line.contains("747 timeout (e.g. reason 5)"), "{line}");
        assert!(
            line.contains("248 protocol error (e.g. reason 8)"),
            "{line}"
        );
        // A new window logs its first cuts again, and a quiet window says nothing.
        assert_eq!(log.logged, 0);
        log.record("limit", &1, "rate");
        assert_eq!(log.poll(start + 2 * CUT_LOG_WINDOW), None);
    }
}
