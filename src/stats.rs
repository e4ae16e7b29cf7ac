//! Counters an endpoint keeps about its connections and calls, readable at any time.
//!
//! Each is a relaxed atomic, bumped by the reactor (never behind a lock) and read as a
//! snapshot: figures from one snapshot are each exact but not taken at a single instant.

use std::sync::atomic::{AtomicU64, Ordering};

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
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $($field: self.$field.load(Ordering::Relaxed),)* }
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
    bytes_in,
    bytes_out,
);

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
