//! The per-connection protocol state machine.

use super::frame::{CallFrame, Frame, FrameType, ProtocolError};
use super::{MAGIC, PROTOCOL_VERSION};
use bytes::{Buf, BytesMut};

/// Which end of the connection this state machine plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The player's end: sends the preface and `HELLO`, expects `WELCOME`.
    Client,
    /// The game server's end: expects the preface and `HELLO`, answers after deciding.
    Server,
}

/// What [`Connection::poll_packet`] yields: a frame, or a call's frame left undecoded.
#[derive(Debug)]
pub enum Packet {
    /// A decoded frame.
    Frame(Frame),
    /// A call's frame (bare or routed) read only as far as a relay needs.
    Call(CallFrame),
}

impl Packet {
    /// The frame, decoded if it came as a call's frame.
    pub fn into_frame(self) -> Result<Frame, ProtocolError> {
        match self {
            Packet::Frame(frame) => Ok(frame),
            Packet::Call(call) => call.into_frame(),
        }
    }

    fn frame_type(&self) -> FrameType {
        match self {
            Packet::Frame(frame) => frame.frame_type(),
            Packet::Call(call) => call.frame_type(),
        }
    }
}

/// The first byte of a TLS ClientHello (the record type of a handshake message).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Server: waiting for the 6-byte preface.
    Preface,
    /// Server: waiting for `HELLO`.
    Hello,
    /// Server: `HELLO` handed out, waiting for [`Connection::accept`]; input is held back.
    Deciding,
    /// Client: waiting for `WELCOME` or `REFUSED`.
    AwaitWelcome,
    /// Handshake done: calls and events flow both ways.
    Open,
    /// Goodbye, refusal or protocol error seen: nothing more is read.
    Closed,
}

/// Protocol state and logic for a single connection, without I/O.
///
/// Methods by direction, as the reactor uses them:
/// - getters: [`is_open`](Self::is_open), [`buffered`](Self::buffered);
/// - input from the network: [`handle_bytes`](Self::handle_bytes);
/// - commands from the application: [`accept`](Self::accept), [`close`](Self::close);
/// - output: [`poll_frame`](Self::poll_frame) yields each complete frame in order.
///
/// Frames are cut from the input buffer without copying: a frame's payload is a [`bytes::Bytes`]
/// view of the bytes that were read. A length prefix is checked against the frame limit before
/// any memory is reserved for the frame.
#[derive(Debug)]
pub struct Connection {
    state: State,
    input: BytesMut,
    max_frame: u32,
}

impl Connection {
    /// A connection in its initial state. `max_frame` bounds every frame the peer may send.
    pub fn new(role: Role, max_frame: u32) -> Connection {
        Connection {
            state: match role {
                Role::Server => State::Preface,
                Role::Client => State::AwaitWelcome,
            },
            input: BytesMut::new(),
            max_frame,
        }
    }

    /// Whether the handshake is done and the connection not closed.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Bytes received but not yet cut into frames.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Whether the next frame [`poll_frame`](Self::poll_frame) would yield is a call or an
    /// event, complete in the buffer (what a rate limit charges for).
    pub fn next_frame_is_request(&self) -> bool {
        if self.state != State::Open || self.input.len() < 5 {
            return false;
        }
        let len = u32::from_le_bytes(self.input[..4].try_into().expect("4 bytes")) as usize;
        self.input.len() >= 4 + len
            && matches!(self.input[4], t if t == FrameType::Invoke as u8 || t == FrameType::Event as u8)
    }

    /// A connection whose handshake is done (tests drive it past the handshake at once).
    #[cfg(test)]
    pub(crate) fn open(role: Role, max_frame: u32) -> Connection {
        Connection {
            state: State::Open,
            ..Connection::new(role, max_frame)
        }
    }

    /// Appends received bytes.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    /// Gives back the input buffer's memory when nothing is buffered, so an idle connection
    /// costs no buffer at all.
    pub fn release_idle_buffer(&mut self) {
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = BytesMut::new();
        }
    }

    /// Server: the `HELLO` was accepted; frames that followed it are released.
    pub fn accept(&mut self) {
        if self.state == State::Deciding {
            self.state = State::Open;
        }
    }

    /// Marks the connection closed: nothing more is yielded.
    pub fn close(&mut self) {
        self.state = State::Closed;
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed (or the connection is
    /// closed or deciding), or the protocol violation that must close the connection.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.poll_packet(false)?.map(Packet::into_frame).transpose()
    }

    /// As [`poll_frame`](Self::poll_frame); with `pass_calls`, a call's frame is yielded as a
    /// [`CallFrame`], its payload not decoded (what a relay forwards).
    #[inline]
    pub fn poll_packet(&mut self, pass_calls: bool) -> Result<Option<Packet>, ProtocolError> {
        match self.state {
            State::Closed | State::Deciding => return Ok(None),
            State::Preface => {
                if self.input.first() == Some(&TLS_HANDSHAKE_RECORD) {
                    return self.fail(ProtocolError::TlsOnPlaintextPort);
                }
                if self.input.len() < MAGIC.len() + 2 {
                    // Refuse a wrong magic as soon as its first bytes are in.
                    let n = self.input.len().min(MAGIC.len());
                    if self.input[..n] != MAGIC[..n] {
                        return self.fail(ProtocolError::BadMagic);
                    }
                    return Ok(None);
                }
                if self.input[..MAGIC.len()] != MAGIC {
                    return self.fail(ProtocolError::BadMagic);
                }
                let version = u16::from_le_bytes([self.input[4], self.input[5]]);
                if version != PROTOCOL_VERSION {
                    return self.fail(ProtocolError::UnsupportedVersion(version));
                }
                self.input.advance(MAGIC.len() + 2);
                self.state = State::Hello;
            }
            _ => {}
        }
        let frame = match self.cut_frame(pass_calls) {
            Ok(Some(frame)) => frame,
            other => return other,
        };
        let ty = frame.frame_type();
        let next = match (self.state, ty) {
            (_, FrameType::Goodbye) => State::Closed,
            (State::Hello, FrameType::Hello | FrameType::HostHello) => State::Deciding,
            (State::Hello, _) => return self.unexpected(ty, "before HELLO"),
            (State::AwaitWelcome, FrameType::Welcome | FrameType::HostWelcome) => State::Open,
            (State::AwaitWelcome, FrameType::Refused) => State::Closed,
            (State::AwaitWelcome, _) => return self.unexpected(ty, "before WELCOME"),
            (
                State::Open,
                FrameType::Hello
                | FrameType::Welcome
                | FrameType::Refused
                | FrameType::HostHello
                | FrameType::HostWelcome,
            ) => return self.unexpected(ty, "after the handshake"),
            (state, _) => state,
        };
        self.state = next;
        Ok(Some(frame))
    }

    #[inline]
    fn cut_frame(&mut self, pass_calls: bool) -> Result<Option<Packet>, ProtocolError> {
        if self.input.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.input[..4].try_into().expect("4 bytes"));
        if len == 0 {
            return self.fail(ProtocolError::EmptyFrame);
        }
        if len > self.max_frame {
            return self.fail(ProtocolError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        let total = 4 + len as usize;
        if self.input.len() < total {
            self.input.reserve(total - self.input.len());
            return Ok(None);
        }
        self.input.advance(4);
        let mut body = self.input.split_to(len as usize).freeze();
        if pass_calls {
            match CallFrame::parse(body) {
                Ok(call) => return Ok(Some(Packet::Call(call))),
                Err(other) => body = other,
            }
        }
        match Frame::decode(body) {
            Ok(frame) => Ok(Some(Packet::Frame(frame))),
            Err(e) => self.fail(e),
        }
    }

    fn unexpected<T>(
        &mut self,
        frame: FrameType,
        state: &'static str,
    ) -> Result<Option<T>, ProtocolError> {
        self.fail(ProtocolError::Unexpected { frame, state })
    }

    fn fail<T>(&mut self, e: ProtocolError) -> Result<Option<T>, ProtocolError> {
        self.state = State::Closed;
        self.input.clear();
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{encode_invoke, encode_preface, ErrorKind, GoodbyeCode, DEFAULT_MAX_FRAME};
    use crate::tuple;
    use bytes::Bytes;

    fn hello() -> Frame {
        Frame::Hello {
            place: "lobby".into(),
            token: Bytes::from_static(b"secret\0token"),
        }
    }

    /// The bytes a client sends: preface, HELLO, then `frames`.
    fn client_stream(frames: &[Frame]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_preface(&mut out);
        hello().encode(&mut out);
        for f in frames {
            f.encode(&mut out);
        }
        out.to_vec()
    }

    fn sample_frames() -> Vec<Frame> {
        let args = crate::value::codec::encode_tuple_to_bytes(&tuple![1, "two", true], 64).unwrap();
        vec![
            Frame::Invoke {
                call: 7,
                name: Bytes::from_static(b"Echo"),
                args: args.clone(),
            },
            Frame::Result {
                call: 9,
                values: args.clone(),
            },
            Frame::Error {
                call: 3,
                kind: ErrorKind::Handler,
                message: "boom".into(),
            },
            Frame::Event {
                name: Bytes::from_static(b"Chat"),
                args,
            },
            Frame::Ping(42),
            Frame::Pong(43),
            Frame::Goodbye {
                code: GoodbyeCode::Normal,
                reason: "bye".into(),
            },
        ]
    }

    /// Feeds `stream` in chunks of `chunk` bytes, accepting the HELLO, and collects the frames.
    fn server_reads(stream: &[u8], chunk: usize) -> Result<Vec<Frame>, ProtocolError> {
        let mut conn = Connection::new(Role::Server, DEFAULT_MAX_FRAME);
        let mut frames = Vec::new();
        for piece in stream.chunks(chunk) {
            conn.handle_bytes(piece);
            while let Some(f) = conn.poll_frame()? {
                if matches!(f, Frame::Hello { .. }) {
                    conn.accept();
                }
                frames.push(f);
            }
        }
        Ok(frames)
    }

    #[test]
    fn frames_split_at_every_byte_boundary_decode_the_same() {
        let stream = client_stream(&sample_frames());
        let mut expected = vec![hello()];
        expected.extend(sample_frames());
        for chunk in 1..=stream.len() {
            assert_eq!(
                server_reads(&stream, chunk).unwrap(),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn many_frames_in_one_read() {
        let frames: Vec<Frame> = (0..1000).map(Frame::Ping).collect();
        let stream = client_stream(&frames);
        let got = server_reads(&stream, stream.len()).unwrap();
        assert_eq!(got.len(), 1001);
        assert_eq!(got[1000], Frame::Ping(999));
    }

    #[test]
    fn frame_exactly_at_the_limit_is_accepted_and_one_byte_over_refused() {
        let max = 1024u32;
        // INVOKE overhead: type 1 + call 8 + name len 2 + name 1 = 12 bytes before the args.
        let at_limit = Frame::Invoke {
            call: 1,
            name: Bytes::from_static(b"f"),
            args: Bytes::from(vec![0u8; max as usize - 12]),
        };
        let mut conn = Connection::new(Role::Server, max);
        conn.handle_bytes(&client_stream(std::slice::from_ref(&at_limit)));
        assert_eq!(conn.poll_frame().unwrap(), Some(hello()));
        conn.accept();
        assert_eq!(conn.poll_frame().unwrap(), Some(at_limit));

        let mut conn = Connection::new(Role::Server, max);
        let mut stream = client_stream(&[]);
        stream.extend_from_slice(&(max + 1).to_le_bytes());
        conn.handle_bytes(&stream);
        assert_eq!(conn.poll_frame().unwrap(), Some(hello()));
        conn.accept();
        assert_eq!(
            conn.poll_frame(),
            Err(ProtocolError::FrameTooLarge { len: max + 1, max })
        );
    }

    #[test]
    fn a_4gib_length_prefix_is_refused_before_any_allocation() {
        let mut conn = Connection::new(Role::Server, DEFAULT_MAX_FRAME);
        let mut stream = client_stream(&[]);
        stream.extend_from_slice(&u32::MAX.to_le_bytes());
        conn.handle_bytes(&stream);
        conn.poll_frame().unwrap();
        conn.accept();
        let before = conn.input.capacity();
        assert!(matches!(
            conn.poll_frame(),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert!(conn.input.capacity() <= before);
    }

    #[test]
    fn unknown_frame_types_are_refused() {
        let mut stream = client_stream(&[]);
        stream.extend_from_slice(&[1, 0, 0, 0, 0x7e]);
        assert_eq!(
            server_reads(&stream, stream.len()),
            Err(ProtocolError::UnknownFrameType(0x7e))
        );
    }

    #[test]
    fn bad_magic_and_bad_version_are_refused() {
        let mut conn = Connection::new(Role::Server, DEFAULT_MAX_FRAME);
        conn.handle_bytes(b"GET / HTTP/1.1\r\n");
        assert_eq!(conn.poll_frame(), Err(ProtocolError::BadMagic));
        let mut conn = Connection::new(Role::Server, DEFAULT_MAX_FRAME);
        conn.handle_bytes(&[0x16, 0x03, 0x01, 0x00, 0xf4]);
        assert_eq!(conn.poll_frame(), Err(ProtocolError::TlsOnPlaintextPort));

        let mut conn = Connection::new(Role::Server, DEFAULT_MAX_FRAME);
        conn.handle_bytes(b"RMFN\x07\x00");
        assert_eq!(conn.poll_frame(), Err(ProtocolError::UnsupportedVersion(7)));
        // Closed: nothing more comes out.
        assert_eq!(conn.poll_frame(), Ok(None));
    }

    #[test]
    fn invalid_utf8_names_are_malformed() {
        let mut out = BytesMut::new();
        encode_invoke(&mut out, 1, "ok", &[], 64).unwrap();
        // The name "ok" sits after the 5-byte header, 8-byte call id and 2-byte length.
        out[15] = 0xff;
        let mut stream = client_stream(&[]);
        stream.extend_from_slice(&out);
        assert!(matches!(
            server_reads(&stream, stream.len()),
            Err(ProtocolError::Malformed {
                frame: FrameType::Invoke,
                ..
            })
        ));
    }

    #[test]
    fn calls_before_hello_and_hello_twice_are_unexpected() {
        let mut out = BytesMut::new();
        encode_preface(&mut out);
        Frame::Ping(1).encode(&mut out);
        assert!(matches!(
            server_reads(&out, out.len()),
            Err(ProtocolError::Unexpected {
                frame: FrameType::Ping,
                ..
            })
        ));
        let stream = client_stream(&[hello()]);
        assert!(matches!(
            server_reads(&stream, stream.len()),
            Err(ProtocolError::Unexpected {
                frame: FrameType::Hello,
                ..
            })
        ));
    }

    #[test]
    fn frames_after_hello_wait_until_accepted() {
        let mut conn = Connection::new(Role::Server, DEFAULT_MAX_FRAME);
        conn.handle_bytes(&client_stream(&[Frame::Ping(5)]));
        assert_eq!(conn.poll_frame().unwrap(), Some(hello()));
        assert_eq!(conn.poll_frame().unwrap(), None);
        conn.accept();
        assert_eq!(conn.poll_frame().unwrap(), Some(Frame::Ping(5)));
    }

    #[test]
    fn client_sees_welcome_or_refusal() {
        let mut conn = Connection::new(Role::Client, DEFAULT_MAX_FRAME);
        let mut out = BytesMut::new();
        Frame::Welcome {
            player: 77,
            max_frame: 1 << 20,
        }
        .encode(&mut out);
        Frame::Ping(1).encode(&mut out);
        conn.handle_bytes(&out);
        assert_eq!(
            conn.poll_frame().unwrap(),
            Some(Frame::Welcome {
                player: 77,
                max_frame: 1 << 20
            })
        );
        assert!(conn.is_open());
        assert_eq!(conn.poll_frame().unwrap(), Some(Frame::Ping(1)));

        let mut conn = Connection::new(Role::Client, DEFAULT_MAX_FRAME);
        let mut out = BytesMut::new();
        Frame::Refused {
            reason: "banned".into(),
        }
        .encode(&mut out);
        conn.handle_bytes(&out);
        assert_eq!(
            conn.poll_frame().unwrap(),
            Some(Frame::Refused {
                reason: "banned".into()
            })
        );
        assert!(!conn.is_open());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut stream = client_stream(&[]);
            stream.extend_from_slice(&bytes);
            let _ = server_reads(&stream, 7);
        }
    }
}
