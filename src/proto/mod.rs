//! The wire protocol, sans-IO: bytes in, frames out, and frames encoded into bytes.
//!
//! Nothing here touches a socket, a clock or a thread; the reactor moves bytes between sockets
//! and a [`Connection`](crate::proto::Connection), and tests drive a `Connection` by feeding it bytes. The format is
//! documented byte by byte in `docs/PROTOCOL.md`:
//!
//! ```text
//! client → server, once:  "RMFN" | version: u16 LE
//! then, both ways:         length: u32 LE | type: u8 | body (length - 1 bytes)
//! ```
//!
//! The first frame the client sends is `HELLO`; the server answers `WELCOME` or `REFUSED`.

mod conn;
mod frame;
mod rate;
pub(crate) mod session;

pub use conn::{Connection, Packet, Role};
pub use frame::{
    encode_error, encode_event, encode_goodbye, encode_invoke, encode_result, encode_routed,
    encode_routed_frame, CallFrame, ErrorKind, Frame, FrameType, GoodbyeCode, ProtocolError,
};
pub use rate::{Admission, RateLimit, RateShaper};
pub use session::{
    Event, InboundCalls, Session, SessionConfig, Violation, CLOSING_GRACE, PAUSE_READING_ABOVE,
    READ_CHUNK,
};

/// The stream preface a client sends before its first frame.
pub const MAGIC: [u8; 4] = *b"RMFN";

/// The protocol version this library speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Room on a host link's frames beyond a player's largest frame: the ROUTED header.
pub const LINK_OVERHEAD: u32 = 64;

/// The default largest frame (type byte and body) a peer may send: 4 MiB, as gRPC.
pub const DEFAULT_MAX_FRAME: u32 = 4 * 1024 * 1024;

/// Writes the client's stream preface.
pub fn encode_preface(out: &mut bytes::BytesMut) {
    use bytes::BufMut;
    out.put_slice(&MAGIC);
    out.put_u16_le(PROTOCOL_VERSION);
}
