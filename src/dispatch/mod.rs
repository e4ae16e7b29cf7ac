//! Dispatch: what runs user code, and where.
//!
//! The reactor runs no handler of the game's but those bound inline (declared non-blocking:
//! [`inline`]). It turns the other inbound frames into [`Job`]s and hands them to the
//! [`Pool`]: either worker threads, or (manual mode) a queue the engine pumps from its own
//! thread with `dispatch`. Handlers are looked up by name in a [`Registry`], which also holds
//! the bounded queue of calls made to a name no handler is bound to yet.

pub(crate) mod inline;
mod pool;
mod registry;

pub(crate) use inline::{in_inline_handler, InlineAnswer, InlineTable, InlineView};
pub(crate) use pool::{blocking_section, Pool};
pub(crate) use registry::{Lookup, Registry};

use crate::ids::{ConnId, PlayerId};
use bytes::Bytes;

/// How handlers are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DispatchMode {
    /// A pool of library threads runs handlers as calls arrive.
    #[default]
    Workers,
    /// Handlers run only inside `dispatch()`, on the thread that calls it (often the engine's
    /// main thread).
    Manual,
}

/// One unit of user work, produced by the reactor.
#[derive(Debug)]
pub(crate) enum Job {
    /// A call to a named function; `call` is the peer's id for it.
    Invoke {
        conn: ConnId,
        call: u64,
        name: Bytes,
        args: Bytes,
    },
    /// A fire-and-forget event.
    Event {
        conn: ConnId,
        name: Bytes,
        args: Bytes,
    },
    /// A player finished the handshake.
    PlayerAdded(PlayerId),
    /// A player is gone.
    PlayerRemoving(PlayerId),
    /// A handshake to decide.
    Authenticate {
        conn: ConnId,
        place: String,
        token: Bytes,
    },
}

impl Job {
    /// The connection whose jobs must run in order (events and player lifecycle), if any.
    pub(crate) fn ordering_key(&self) -> Option<u64> {
        match self {
            Job::Event { conn, .. } => Some(conn.0),
            Job::PlayerAdded(p) | Job::PlayerRemoving(p) => Some(p.get()),
            Job::Invoke { .. } | Job::Authenticate { .. } => None,
        }
    }
}

/// Validated UTF-8 name of a job (checked by the protocol decoder).
pub(crate) fn name_str(name: &Bytes) -> &str {
    std::str::from_utf8(name).unwrap_or("")
}
