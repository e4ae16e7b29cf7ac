//! The error type of every fallible operation.

use std::time::Duration;

/// Why an operation failed. Each variant corresponds to one `rf_status` of the C ABI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A bad argument: unknown or stale call id, bad name, value that cannot be encoded, ...
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The callee's handler raised an error; the message is the callee's.
    #[error("{0}")]
    Remote(String),
    /// The peer went away before replying.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// The caller's timeout elapsed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// This server or client was shut down.
    #[error("closed: {0}")]
    Closed(String),
    /// A configured limit was hit.
    #[error("limit: {0}")]
    Limit(String),
    /// A socket operation failed, or the peer broke the protocol.
    #[error("I/O error: {0}")]
    Io(String),
    /// No connected player has this id.
    #[error("no player with id {0}")]
    NotFound(u64),
    /// The handshake was refused.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
