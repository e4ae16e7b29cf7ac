//! # remotefn
//!
//! Roblox's `RemoteFunction` semantics for any C, C++ or Rust game: synchronous, two-way calls
//! across the client-server boundary. A player calls [`ClientHandle::invoke_server`] and blocks until
//! the server's handler for that name returns; the server calls [`ServerHandle::invoke_client`]
//! and blocks until that player's handler returns. Callee errors re-raise at the caller, and a
//! disconnect fails the calls pending on it. Fire-and-forget events (`RemoteEvent`) share the
//! same connections.
//!
//! The architecture reads from the module tree:
//! - [`value`]: the Luau value set and its binary encoding;
//! - [`proto`]: the wire protocol, sans-IO (bytes in, frames out);
//! - `reactor`: the mio event loop that owns every socket;
//! - [`Limits`]: what an end allows its peers, shared by every config, the C setters and the CLI;
//! - `calls`: preallocated slots for calls in flight, where callers park;
//! - `dispatch`: handler registries, worker pool and manual dispatch;
//! - [`tls`]: TLS settings and errors (the TLS layer itself lives in the driver);
//! - [`server`] and [`client`]: the two ends, built from the pieces above;
//! - `relay` (feature `relay`): the relay service between players and game servers;
//! - `luau` (feature `luau`): Roblox-style Luau scripts on a server or client;
//! - [`ffi`]: the C ABI (`include/remotefn.h`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// Every module but `ffi` is hidden from cbindgen: only `ffi` makes up the C header.
/// cbindgen:ignore
pub mod proto;
/// cbindgen:ignore
pub mod value;

pub use value::{ByteStr, CFrame, Color3, InstanceRef, Tuple, Value, Vector2, Vector3};

/// cbindgen:ignore
mod calls;
/// cbindgen:ignore
mod chains;
/// cbindgen:ignore
pub mod client;
/// cbindgen:ignore
mod dispatch;
/// cbindgen:ignore
mod driver;
/// cbindgen:ignore
mod endpoint;
/// cbindgen:ignore
mod error;
pub mod ffi;
/// cbindgen:ignore
mod ids;
/// cbindgen:ignore
mod limits;
/// cbindgen:ignore
#[cfg(feature = "luau")]
pub mod luau;
/// cbindgen:ignore
mod metrics;
/// cbindgen:ignore
mod reactor;
/// cbindgen:ignore
#[cfg(feature = "relay")]
pub mod relay;
/// cbindgen:ignore
pub mod server;
/// cbindgen:ignore
mod stats;
/// cbindgen:ignore
pub mod tls;

pub use client::{Client, ClientConfig, ClientHandle, MAX_BUSY_POLL};
pub use dispatch::DispatchMode;
pub use endpoint::{AuthRequest, Identity, PlayerInfo, Responder};
pub use error::{Error, Result};
pub use ids::{CallId, PlayerId};
pub use limits::Limits;
#[cfg(feature = "metrics-http")]
pub use metrics::MetricsServer;
#[cfg(feature = "relay")]
pub use relay::{Relay, RelayConfig};
pub use server::{Server, ServerConfig, ServerHandle};
pub use stats::Stats;
pub use tls::{ClientTlsConfig, ServerTlsConfig, TlsError, TlsErrorKind};

/// Internals exposed for `benches/` only: not part of the API, no stability promise.
#[doc(hidden)]
pub mod __bench {
    pub use crate::calls::CallSlots;
    /// The baseline echo server of `remotefn bench` listens as the server does.
    pub use crate::driver::socket::bind_listener;

    /// The rustls configuration a client of these TLS settings gets (the generator of
    /// `remotefn bench` speaks TLS as a client does).
    pub fn tls_client_config(
        settings: &crate::ClientTlsConfig,
    ) -> crate::Result<rustls::ClientConfig> {
        crate::tls::client_config(settings)
    }
}

#[doc(hidden)]
/// cbindgen:ignore
pub mod fuzzing;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
