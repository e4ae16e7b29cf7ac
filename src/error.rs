//! The error type of every fallible operation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why an operation failed. The variant is the kind of failure; each corresponds to one
/// `rf_status` of the C ABI (`Protocol` and `Io` both to `RF_ERR_IO`). An I/O failure keeps the
/// operating system's error as its [`source`](std::error::Error::source).
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
    /// A socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[source] IoError),
    /// The peer broke the protocol: a malformed or unexpected frame, a bad handshake.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No connected player has this id.
    #[error("no player with id {0}")]
    NotFound(crate::ids::PlayerId),
    /// The handshake was refused.
    #[error("rejected: {0}")]
    Rejected(String),
    /// TLS failed: an untrusted, expired or misnamed certificate, a peer that does not speak
    /// TLS (or speaks only TLS), an unreadable certificate file. [`TlsError::kind`](crate::tls::TlsError::kind) says which.
    #[error("TLS: {0}")]
    Tls(crate::tls::TlsError),
    /// A script failed to load or run: a syntax error, or an error raised before its first
    /// yield (feature `luau`).
    #[error("script: {0}")]
    Script(String),
}

impl Error {
    /// An I/O failure described by `what` (which names what was being done).
    pub(crate) fn io(what: impl Into<String>) -> Error {
        Error::Io(IoError {
            what: what.into(),
            source: None,
        })
    }

    /// An I/O failure while doing `what`, caused by `source`.
    pub(crate) fn io_from(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io(IoError {
            what: what.into(),
            source: Some(Arc::new(source)),
        })
    }
}

/// What an I/O failure was doing, and the operating system's error behind it, if any (its
/// [`source`](std::error::Error::source)).
#[derive(Debug, Clone)]
pub struct IoError {
    what: String,
    source: Option<Arc<std::io::Error>>,
}

impl IoError {
    /// The operating system's error kind behind the failure, if there was one.
    pub fn kind(&self) -> Option<std::io::ErrorKind> {
        self.source.as_ref().map(|e| e.kind())
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &IoError) -> bool {
        self.what == other.what && self.kind() == other.kind()
    }
}

impl Eq for IoError {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let what = match e.kind() {
            std::io::ErrorKind::Other => "I/O failed",
            _ => "socket operation failed",
        };
        Error::io_from(what, e)
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_io_failure_keeps_the_os_error_as_its_source() {
        let os = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::io_from("cannot connect to the server at 127.0.0.1:1", os);
        assert_eq!(
            e.to_string(),
            "I/O error: cannot connect to the server at 127.0.0.1:1: refused"
        );
        let io = e.source().expect("the I/O failure");
        let os = io.source().expect("the OS error");
        assert_eq!(os.to_string(), "refused");
        let Error::Io(inner) = &e else { panic!() };
        assert_eq!(inner.kind(), Some(std::io::ErrorKind::ConnectionRefused));
        // Without an OS error, the chain ends at the failure.
        assert!(Error::io("poll failed")
            .source()
            .unwrap()
            .source()
            .is_none());
    }
}
