//! Frame types, their encoding and their decoding.

use crate::value::codec::{self, Reader, ValueError};
use crate::value::Value;
use bytes::{BufMut, Bytes, BytesMut};

/// The frame type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Client handshake: place and token.
    Hello = 0x01,
    /// Server accepts the handshake: the player id.
    Welcome = 0x02,
    /// Server refuses the handshake: a reason.
    Refused = 0x03,
    /// A call: call id, function name, arguments.
    Invoke = 0x10,
    /// A call's values.
    Result = 0x11,
    /// A call's failure.
    Error = 0x12,
    /// A fire-and-forget event: name and arguments.
    Event = 0x13,
    /// Liveness probe.
    Ping = 0x20,
    /// Answer to a ping.
    Pong = 0x21,
    /// The sender is closing the connection, and why.
    Goodbye = 0x30,
    /// Host → relay, first frame of a host link: the place it serves.
    HostHello = 0x40,
    /// Relay → host: the link is accepted.
    HostWelcome = 0x41,
    /// Relay → host: a player asks to join; the host's authenticator decides.
    PlayerJoin = 0x42,
    /// Host → relay: the player is accepted.
    PlayerAccept = 0x43,
    /// Host → relay: the player is refused.
    PlayerReject = 0x44,
    /// Relay → host: the player is gone.
    PlayerLeft = 0x45,
    /// Either way on a host link: a frame to or from one player.
    Routed = 0x46,
    /// Host → relay: disconnect a player.
    Kick = 0x47,
    /// Host → relay: an event for every player of the place.
    Broadcast = 0x48,
}

impl FrameType {
    fn from_byte(b: u8) -> Option<FrameType> {
        use FrameType::*;
        Some(match b {
            0x01 => Hello,
            0x02 => Welcome,
            0x03 => Refused,
            0x10 => Invoke,
            0x11 => Result,
            0x12 => Error,
            0x13 => Event,
            0x20 => Ping,
            0x21 => Pong,
            0x30 => Goodbye,
            0x40 => HostHello,
            0x41 => HostWelcome,
            0x42 => PlayerJoin,
            0x43 => PlayerAccept,
            0x44 => PlayerReject,
            0x45 => PlayerLeft,
            0x46 => Routed,
            0x47 => Kick,
            0x48 => Broadcast,
            _ => return None,
        })
    }
}

/// Why a call failed, as carried by an `ERROR` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorKind {
    /// The callee's handler raised an error (or panicked).
    Handler = 1,
    /// A limit was hit at the callee (e.g. the queue for an unbound function is full).
    Limit = 2,
    /// The call itself was malformed (e.g. undecodable arguments).
    InvalidArgument = 3,
    /// The callee is shutting down.
    Closed = 4,
    /// No one can answer: behind a relay, no host serves the place right now.
    Unavailable = 5,
}

impl ErrorKind {
    fn from_byte(b: u8) -> ErrorKind {
        match b {
            2 => ErrorKind::Limit,
            3 => ErrorKind::InvalidArgument,
            4 => ErrorKind::Closed,
            5 => ErrorKind::Unavailable,
            // Unknown kinds from newer peers are still errors raised by the callee.
            _ => ErrorKind::Handler,
        }
    }
}

/// Why a connection is being closed, as carried by a `GOODBYE` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GoodbyeCode {
    /// An orderly close requested by the application.
    Normal = 0,
    /// The peer broke the protocol.
    ProtocolError = 1,
    /// The peer exceeded a limit.
    Limit = 2,
    /// The server kicked the player.
    Kicked = 3,
    /// The sender is shutting down.
    Shutdown = 4,
    /// The peer was idle too long.
    Timeout = 5,
}

impl GoodbyeCode {
    fn from_byte(b: u8) -> GoodbyeCode {
        match b {
            1 => GoodbyeCode::ProtocolError,
            2 => GoodbyeCode::Limit,
            3 => GoodbyeCode::Kicked,
            4 => GoodbyeCode::Shutdown,
            5 => GoodbyeCode::Timeout,
            _ => GoodbyeCode::Normal,
        }
    }
}

/// One decoded frame. Argument and result tuples stay encoded ([`Bytes`](bytes::Bytes) views into the read
/// buffer): the reactor routes them without decoding, and the receiving thread decodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// Client handshake.
    Hello {
        /// The place (game) the player wants to join; empty for an embedded server.
        place: String,
        /// Opaque credentials for the server's authenticator.
        token: Bytes,
    },
    /// Handshake accepted.
    Welcome {
        /// The id the server gave this player (never 0).
        player: u64,
        /// The largest frame the server accepts.
        max_frame: u32,
    },
    /// Handshake refused.
    Refused {
        /// Why.
        reason: String,
    },
    /// A call.
    Invoke {
        /// Caller-chosen id echoed by the reply.
        call: u64,
        /// Function name, validated UTF-8.
        name: Bytes,
        /// Encoded argument tuple.
        args: Bytes,
    },
    /// A successful reply.
    Result {
        /// The call being answered.
        call: u64,
        /// Encoded result tuple.
        values: Bytes,
    },
    /// A failed reply.
    Error {
        /// The call being answered.
        call: u64,
        /// What kind of failure.
        kind: ErrorKind,
        /// Human-readable message.
        message: String,
    },
    /// A fire-and-forget event.
    Event {
        /// Event name, validated UTF-8.
        name: Bytes,
        /// Encoded argument tuple.
        args: Bytes,
    },
    /// Liveness probe.
    Ping(u64),
    /// Answer to a probe.
    Pong(u64),
    /// The sender is closing.
    Goodbye {
        /// Why, as a code.
        code: GoodbyeCode,
        /// Why, in words.
        reason: String,
    },
    /// Host link: the place a host serves, and the relay's shared secret.
    HostHello {
        /// The place.
        place: String,
        /// The secret the relay was started with (empty when it has none).
        secret: Bytes,
    },
    /// Host link: accepted.
    HostWelcome {
        /// The largest frame the relay accepts on this link.
        max_frame: u32,
    },
    /// Host link: a player's handshake, for the host's authenticator.
    PlayerJoin {
        /// The player's id, chosen by the relay.
        player: u64,
        /// The player's credentials.
        token: Bytes,
        /// The player's address as the relay sees it.
        peer: String,
    },
    /// Host link: the host accepted the player.
    PlayerAccept {
        /// The player.
        player: u64,
        /// The user id the authenticator gave.
        user_id: u64,
        /// The display name the authenticator gave.
        name: String,
    },
    /// Host link: the host refused the player.
    PlayerReject {
        /// The player.
        player: u64,
        /// Why; the player receives it.
        reason: String,
    },
    /// Host link: the player disconnected.
    PlayerLeft {
        /// The player.
        player: u64,
        /// Why.
        reason: String,
    },
    /// Host link: one frame (type byte and body, without the length) to or from a player.
    Routed {
        /// The player.
        player: u64,
        /// The inner frame.
        frame: Bytes,
    },
    /// Host link: disconnect a player with a reason.
    Kick {
        /// The player.
        player: u64,
        /// Why; the player receives it.
        reason: String,
    },
    /// Host link: an inner EVENT frame for every player of the place.
    Broadcast {
        /// The inner frame (type byte and body).
        frame: Bytes,
    },
}

/// A violation of the protocol by the peer; the connection is closed with this as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The stream did not start with `RMFN`.
    #[error("not a remotefn peer (bad magic)")]
    BadMagic,
    /// The stream started with a TLS handshake record: a TLS client on a plaintext port.
    #[error("a TLS client on a plaintext port (serve TLS here, or connect without it)")]
    TlsOnPlaintextPort,
    /// The client speaks a version this server does not.
    #[error("unsupported protocol version {0} (this side speaks {version})", version = super::PROTOCOL_VERSION)]
    UnsupportedVersion(u16),
    /// A length prefix over the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: u32,
        /// Configured limit.
        max: u32,
    },
    /// A length prefix of zero (no type byte).
    #[error("empty frame")]
    EmptyFrame,
    /// A type byte this version does not know.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// A frame whose body does not parse.
    #[error("malformed {frame:?} frame: {why}")]
    Malformed {
        /// The frame type.
        frame: FrameType,
        /// What was wrong.
        why: String,
    },
    /// A frame that is not allowed in the current state.
    #[error("unexpected {frame:?} frame {state}")]
    Unexpected {
        /// The frame type.
        frame: FrameType,
        /// Where in the session it arrived.
        state: &'static str,
    },
}

impl Frame {
    /// The type byte of this frame.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello { .. } => FrameType::Hello,
            Frame::Welcome { .. } => FrameType::Welcome,
            Frame::Refused { .. } => FrameType::Refused,
            Frame::Invoke { .. } => FrameType::Invoke,
            Frame::Result { .. } => FrameType::Result,
            Frame::Error { .. } => FrameType::Error,
            Frame::Event { .. } => FrameType::Event,
            Frame::Ping(_) => FrameType::Ping,
            Frame::Pong(_) => FrameType::Pong,
            Frame::Goodbye { .. } => FrameType::Goodbye,
            Frame::HostHello { .. } => FrameType::HostHello,
            Frame::HostWelcome { .. } => FrameType::HostWelcome,
            Frame::PlayerJoin { .. } => FrameType::PlayerJoin,
            Frame::PlayerAccept { .. } => FrameType::PlayerAccept,
            Frame::PlayerReject { .. } => FrameType::PlayerReject,
            Frame::PlayerLeft { .. } => FrameType::PlayerLeft,
            Frame::Routed { .. } => FrameType::Routed,
            Frame::Kick { .. } => FrameType::Kick,
            Frame::Broadcast { .. } => FrameType::Broadcast,
        }
    }

    /// Appends this frame, header included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = begin(out, self.frame_type());
        self.encode_body(out);
        finish(out, start);
    }

    /// Appends the frame's body: what follows its type byte.
    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            Frame::Hello { place, token } => {
                put_str16(out, place.as_bytes());
                out.put_u32_le(token.len() as u32);
                out.put_slice(token);
            }
            Frame::Welcome { player, max_frame } => {
                out.put_u64_le(*player);
                out.put_u32_le(*max_frame);
            }
            Frame::Refused { reason } => out.put_slice(reason.as_bytes()),
            Frame::Invoke { call, name, args } => {
                out.put_u64_le(*call);
                put_str16(out, name);
                out.put_slice(args);
            }
            Frame::Result { call, values } => {
                out.put_u64_le(*call);
                out.put_slice(values);
            }
            Frame::Error {
                call,
                kind,
                message,
            } => {
                out.put_u64_le(*call);
                out.put_u8(*kind as u8);
                out.put_slice(message.as_bytes());
            }
            Frame::Event { name, args } => {
                put_str16(out, name);
                out.put_slice(args);
            }
            Frame::Ping(n) | Frame::Pong(n) => out.put_u64_le(*n),
            Frame::Goodbye { code, reason } => {
                out.put_u8(*code as u8);
                out.put_slice(reason.as_bytes());
            }
            Frame::HostHello { place, secret } => {
                put_str16(out, place.as_bytes());
                put_str16(out, secret);
            }
            Frame::HostWelcome { max_frame } => out.put_u32_le(*max_frame),
            Frame::PlayerJoin {
                player,
                token,
                peer,
            } => {
                out.put_u64_le(*player);
                out.put_u32_le(token.len() as u32);
                out.put_slice(token);
                put_str16(out, peer.as_bytes());
            }
            Frame::PlayerAccept {
                player,
                user_id,
                name,
            } => {
                out.put_u64_le(*player);
                out.put_u64_le(*user_id);
                put_str16(out, name.as_bytes());
            }
            Frame::PlayerReject { player, reason }
            | Frame::PlayerLeft { player, reason }
            | Frame::Kick { player, reason } => {
                out.put_u64_le(*player);
                out.put_slice(reason.as_bytes());
            }
            Frame::Routed { player, frame } => {
                out.put_u64_le(*player);
                out.put_slice(frame);
            }
            Frame::Broadcast { frame } => out.put_slice(frame),
        }
    }

    /// Parses a frame body (everything after the length prefix, type byte first).
    pub fn decode(body: Bytes) -> Result<Frame, ProtocolError> {
        let Some(&type_byte) = body.first() else {
            return Err(ProtocolError::EmptyFrame);
        };
        let ty =
            FrameType::from_byte(type_byte).ok_or(ProtocolError::UnknownFrameType(type_byte))?;
        let body = body.slice(1..);
        let mut r = Reader::new(&body);
        let malformed = |why: String| ProtocolError::Malformed { frame: ty, why };
        let frame = (|| -> Result<Frame, BodyError> {
            Ok(match ty {
                FrameType::Hello => {
                    let place = read_name(&mut r, "place")?;
                    let token_len = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
                    let token = r.slice(token_len as usize)?;
                    Frame::Hello {
                        place: String::from_utf8_lossy(&place).into_owned(),
                        token,
                    }
                }
                FrameType::Welcome => Frame::Welcome {
                    player: r.u64()?,
                    max_frame: u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")),
                },
                FrameType::Refused => Frame::Refused {
                    reason: lossy(r.rest()),
                },
                FrameType::Invoke => Frame::Invoke {
                    call: r.u64()?,
                    name: read_name(&mut r, "name")?,
                    args: r.rest(),
                },
                FrameType::Result => Frame::Result {
                    call: r.u64()?,
                    values: r.rest(),
                },
                FrameType::Error => Frame::Error {
                    call: r.u64()?,
                    kind: ErrorKind::from_byte(r.u8()?),
                    message: lossy(r.rest()),
                },
                FrameType::Event => Frame::Event {
                    name: read_name(&mut r, "name")?,
                    args: r.rest(),
                },
                FrameType::Ping => Frame::Ping(r.u64()?),
                FrameType::Pong => Frame::Pong(r.u64()?),
                FrameType::Goodbye => Frame::Goodbye {
                    code: GoodbyeCode::from_byte(r.u8()?),
                    reason: lossy(r.rest()),
                },
                FrameType::HostHello => Frame::HostHello {
                    place: String::from_utf8_lossy(&read_name(&mut r, "place")?).into_owned(),
                    secret: read_str16(&mut r)?,
                },
                FrameType::HostWelcome => Frame::HostWelcome {
                    max_frame: u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")),
                },
                FrameType::PlayerJoin => {
                    let player = r.u64()?;
                    let token_len = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
                    let token = r.slice(token_len as usize)?;
                    let peer = String::from_utf8_lossy(&read_str16(&mut r)?).into_owned();
                    Frame::PlayerJoin {
                        player,
                        token,
                        peer,
                    }
                }
                FrameType::PlayerAccept => Frame::PlayerAccept {
                    player: r.u64()?,
                    user_id: r.u64()?,
                    name: String::from_utf8_lossy(&read_str16(&mut r)?).into_owned(),
                },
                FrameType::PlayerReject => Frame::PlayerReject {
                    player: r.u64()?,
                    reason: lossy(r.rest()),
                },
                FrameType::PlayerLeft => Frame::PlayerLeft {
                    player: r.u64()?,
                    reason: lossy(r.rest()),
                },
                FrameType::Routed => Frame::Routed {
                    player: r.u64()?,
                    frame: r.rest(),
                },
                FrameType::Kick => Frame::Kick {
                    player: r.u64()?,
                    reason: lossy(r.rest()),
                },
                FrameType::Broadcast => Frame::Broadcast { frame: r.rest() },
            })
        })()
        .map_err(|e| malformed(e.to_string()))?;
        if r.remaining() != 0 {
            return Err(malformed(format!("{} trailing bytes", r.remaining())));
        }
        Ok(frame)
    }
}

/// What can be wrong inside a frame body.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
}

/// A u16-length-prefixed string that must be UTF-8 (names and places).
fn read_name(r: &mut Reader<'_>, what: &'static str) -> Result<Bytes, BodyError> {
    let s = read_str16(r)?;
    std::str::from_utf8(&s).map_err(|_| BodyError::NotUtf8(what))?;
    Ok(s)
}

fn lossy(b: Bytes) -> String {
    String::from_utf8_lossy(&b).into_owned()
}

fn read_str16(r: &mut Reader<'_>) -> Result<Bytes, ValueError> {
    let len = r.u16()?;
    r.slice(len as usize)
}

fn put_str16(out: &mut BytesMut, s: &[u8]) {
    let len = s.len().min(u16::MAX as usize);
    out.put_u16_le(len as u16);
    out.put_slice(&s[..len]);
}

/// Writes a header with a placeholder length; returns where the frame starts.
fn begin(out: &mut BytesMut, ty: FrameType) -> usize {
    let start = out.len();
    out.put_u32_le(0);
    out.put_u8(ty as u8);
    start
}

/// Patches the length of the frame that starts at `start`.
fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends an `INVOKE` frame, encoding `args` straight into `out`.
///
/// On error `out` is left as it was.
pub fn encode_invoke(
    out: &mut BytesMut,
    call: u64,
    name: &str,
    args: &[Value],
    max_depth: usize,
) -> Result<(), ValueError> {
    let start = begin(out, FrameType::Invoke);
    out.put_u64_le(call);
    put_str16(out, name.as_bytes());
    codec::encode_tuple(args, max_depth, out).inspect_err(|_| out.truncate(start))?;
    finish(out, start);
    Ok(())
}

/// Appends an `EVENT` frame, encoding `args` straight into `out`.
pub fn encode_event(
    out: &mut BytesMut,
    name: &str,
    args: &[Value],
    max_depth: usize,
) -> Result<(), ValueError> {
    let start = begin(out, FrameType::Event);
    put_str16(out, name.as_bytes());
    codec::encode_tuple(args, max_depth, out).inspect_err(|_| out.truncate(start))?;
    finish(out, start);
    Ok(())
}

/// Appends a `RESULT` frame, encoding `values` straight into `out`.
pub fn encode_result(
    out: &mut BytesMut,
    call: u64,
    values: &[Value],
    max_depth: usize,
) -> Result<(), ValueError> {
    let start = begin(out, FrameType::Result);
    out.put_u64_le(call);
    codec::encode_tuple(values, max_depth, out).inspect_err(|_| out.truncate(start))?;
    finish(out, start);
    Ok(())
}

/// Appends an `ERROR` frame.
pub fn encode_error(out: &mut BytesMut, call: u64, kind: ErrorKind, message: &str) {
    Frame::Error {
        call,
        kind,
        message: message.to_owned(),
    }
    .encode(out)
}

/// Appends a `GOODBYE` frame.
pub fn encode_goodbye(out: &mut BytesMut, code: GoodbyeCode, reason: &str) {
    let start = begin(out, FrameType::Goodbye);
    out.put_u8(code as u8);
    out.put_slice(reason.as_bytes());
    finish(out, start);
}

/// Appends a `ROUTED` frame carrying `frame` for `player`, encoded in place (as
/// [`encode_routed`] of the frame's encoding, without encoding it twice).
pub fn encode_routed_frame(out: &mut BytesMut, player: u64, frame: &Frame) {
    let start = begin(out, FrameType::Routed);
    out.put_u64_le(player);
    out.put_u8(frame.frame_type() as u8);
    frame.encode_body(out);
    finish(out, start);
}

/// Appends a `ROUTED` frame carrying `frame` (one whole encoded frame, length prefix included)
/// for `player`: how a relay and a host wrap a player's frames on the link between them.
pub fn encode_routed(out: &mut BytesMut, player: u64, frame: &[u8]) {
    let inner = &frame[4..];
    out.reserve(13 + inner.len());
    out.put_u32_le((1 + 8 + inner.len()) as u32);
    out.put_u8(FrameType::Routed as u8);
    out.put_u64_le(player);
    out.put_slice(inner);
}

/// A call's frame (INVOKE, RESULT or ERROR, bare or inside a ROUTED one) read only as far as
/// a relay needs: the relay rewrites the call id and copies the rest as it came, with no
/// name, value or message cut into buffers of its own. [`into_frame`](Self::into_frame) decodes
/// it fully for any other use.
#[derive(Debug)]
pub struct CallFrame {
    /// INVOKE, RESULT or ERROR.
    pub ty: FrameType,
    /// The player a ROUTED frame carries it to or from; `None` for a bare frame.
    pub routed: Option<u64>,
    /// The call id.
    pub call: u64,
    body: Bytes,
    tail_at: usize,
}

impl CallFrame {
    /// Reads `body` (a frame body, type byte first) as a call's frame, or gives it back when
    /// it is some other frame, or one whose head does not check out (a full decode then says
    /// what is wrong with it).
    #[inline]
    pub fn parse(body: Bytes) -> Result<CallFrame, Bytes> {
        let (routed, at) = match body.first() {
            Some(&t) if t == FrameType::Routed as u8 && body.len() >= 10 => {
                let player = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
                (Some(player), 9)
            }
            _ => (None, 0),
        };
        let ty = match body.get(at).copied().and_then(FrameType::from_byte) {
            Some(ty @ (FrameType::Invoke | FrameType::Result | FrameType::Error)) => ty,
            _ => return Err(body),
        };
        let tail_at = at + 9;
        let Some(call) = body.get(at + 1..tail_at) else {
            return Err(body);
        };
        let call = u64::from_le_bytes(call.try_into().expect("8 bytes"));
        let tail = &body[tail_at..];
        let head_checks = match ty {
            FrameType::Invoke => {
                tail.len() >= 2 && {
                    let len = u16::from_le_bytes([tail[0], tail[1]]) as usize;
                    tail.get(2..2 + len)
                        .is_some_and(|name| std::str::from_utf8(name).is_ok())
                }
            }
            FrameType::Error => !tail.is_empty(),
            _ => true,
        };
        if !head_checks {
            return Err(body);
        }
        Ok(CallFrame {
            ty,
            routed,
            call,
            body,
            tail_at,
        })
    }

    /// What follows the call id, as it came: name and arguments, values, or kind and message.
    pub fn tail(&self) -> &[u8] {
        &self.body[self.tail_at..]
    }

    /// The frame's type as it came: ROUTED for a routed call.
    pub fn frame_type(&self) -> FrameType {
        if self.routed.is_some() {
            FrameType::Routed
        } else {
            self.ty
        }
    }

    /// The frame as [`Frame::decode`] reads it.
    pub fn into_frame(self) -> Result<Frame, ProtocolError> {
        Frame::decode(self.body)
    }

    /// Appends this call's frame with call id `call`, wrapped in ROUTED for `routed` when that
    /// is `Some`.
    pub fn encode_as(&self, out: &mut BytesMut, routed: Option<u64>, call: u64) {
        let start = match routed {
            Some(player) => {
                let start = begin(out, FrameType::Routed);
                out.put_u64_le(player);
                out.put_u8(self.ty as u8);
                start
            }
            None => begin(out, self.ty),
        };
        out.put_u64_le(call);
        out.put_slice(self.tail());
        finish(out, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One call's frame of each type.
    fn sample_calls() -> [Frame; 3] {
        [
            Frame::Invoke {
                call: 7,
                name: Bytes::from_static(b"Echo"),
                args: Bytes::from_static(b"\x01\x02\x03"),
            },
            Frame::Result {
                call: u64::MAX,
                values: Bytes::new(),
            },
            Frame::Error {
                call: 1,
                kind: ErrorKind::Handler,
                message: "no".into(),
            },
        ]
    }

    #[test]
    fn a_frame_routed_in_place_is_the_routed_encoding_of_the_frame() {
        let event = Frame::Event {
            name: Bytes::from_static(b"E"),
            args: Bytes::from_static(b"x"),
        };
        for frame in sample_calls().into_iter().chain([event]) {
            let mut plain = BytesMut::new();
            frame.encode(&mut plain);
            let (mut twice, mut once) = (BytesMut::new(), BytesMut::new());
            encode_routed(&mut twice, 42, &plain);
            encode_routed_frame(&mut once, 42, &frame);
            assert_eq!(once, twice, "{frame:?}");
        }
    }

    #[test]
    fn a_call_passed_through_encodes_as_the_decoded_frame_would() {
        for frame in sample_calls() {
            for routed in [None, Some(42)] {
                let mut wire = BytesMut::new();
                match routed {
                    Some(player) => encode_routed_frame(&mut wire, player, &frame),
                    None => frame.encode(&mut wire),
                }
                let call = CallFrame::parse(wire.freeze().slice(4..)).expect("a call");
                assert_eq!((call.ty, call.routed), (frame.frame_type(), routed));
                let (mut passed, mut expected) = (BytesMut::new(), BytesMut::new());
                call.encode_as(&mut passed, Some(9), 1234);
                let renumbered = match frame.clone() {
                    Frame::Invoke { name, args, .. } => Frame::Invoke {
                        call: 1234,
                        name,
                        args,
                    },
                    Frame::Result { values, .. } => Frame::Result { call: 1234, values },
                    Frame::Error { kind, message, .. } => Frame::Error {
                        call: 1234,
                        kind,
                        message,
                    },
                    _ => unreachable!(),
                };
                encode_routed_frame(&mut expected, 9, &renumbered);
                assert_eq!(passed, expected, "{frame:?} routed {routed:?}");
                let mut bare = BytesMut::new();
                call.encode_as(&mut bare, None, 1234);
                assert_eq!(Frame::decode(bare.freeze().slice(4..)).unwrap(), renumbered);
            }
        }
    }

    #[test]
    fn only_a_call_whose_head_checks_out_is_passed_through() {
        let body = |bytes: &[u8]| Bytes::copy_from_slice(bytes);
        let mut invoke = vec![FrameType::Invoke as u8];
        invoke.extend_from_slice(&5u64.to_le_bytes());
        let not_calls = [
            body(&[FrameType::Ping as u8, 0, 0, 0, 0, 0, 0, 0, 0]),
            body(&[FrameType::Result as u8, 1, 2]),
            body(&invoke),
            body(&[invoke.as_slice(), &[9, 0, b'a']].concat()),
            body(&[invoke.as_slice(), &[2, 0, 0xff, 0xfe]].concat()),
            body(&[&[FrameType::Error as u8][..], &5u64.to_le_bytes()].concat()),
            body(
                &[
                    &[FrameType::Routed as u8][..],
                    &5u64.to_le_bytes(),
                    &[FrameType::Event as u8, 0, 0],
                ]
                .concat(),
            ),
            Bytes::new(),
        ];
        for frame in not_calls {
            assert!(CallFrame::parse(frame.clone()).is_err(), "{frame:?}");
        }
        let ok = body(&[invoke.as_slice(), &[1, 0, b'a', 7]].concat());
        let call = CallFrame::parse(ok).expect("a call");
        assert_eq!((call.call, call.tail()), (5, &[1, 0, b'a', 7][..]));
    }
}
