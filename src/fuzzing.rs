//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the corpus replay in
//! `tests/fuzz_corpus.rs`: each takes arbitrary bytes and must never panic, hang or allocate
//! beyond the configured limits. Not part of the API.

use crate::proto::{Connection, Frame, Role};
use crate::value::codec::{decode_tuple, encode_tuple, DecodeLimits, DEFAULT_MAX_DEPTH};
use bytes::{Bytes, BytesMut};

/// Frame limit for fuzzing: small, so oversized lengths are exercised cheaply.
const MAX_FRAME: u32 = 64 * 1024;

/// A server connection fed a valid preface and HELLO, then `data` as frames.
pub fn frames(data: &[u8]) {
    let mut conn = Connection::new(Role::Server, MAX_FRAME);
    let mut start = BytesMut::new();
    crate::proto::encode_preface(&mut start);
    Frame::Hello {
        place: String::new(),
        token: Bytes::new(),
    }
    .encode(&mut start);
    conn.handle_bytes(&start);
    if let Ok(Some(Frame::Hello { .. })) = conn.poll_frame() {
        conn.accept();
    }
    // Fed in two pieces, so frames split across reads are exercised too.
    let (a, b) = data.split_at(data.len() / 2);
    for piece in [a, b] {
        conn.handle_bytes(piece);
        while let Ok(Some(frame)) = conn.poll_frame() {
            round_trip_frame(&frame);
        }
    }
}

/// Both ends of the handshake fed `data`: a server expecting the preface and HELLO, a client
/// expecting WELCOME or REFUSED.
pub fn handshake(data: &[u8]) {
    for role in [Role::Server, Role::Client] {
        let mut conn = Connection::new(role, MAX_FRAME);
        conn.handle_bytes(data);
        while let Ok(Some(frame)) = conn.poll_frame() {
            if matches!(frame, Frame::Hello { .. }) {
                conn.accept();
            }
        }
    }
}

/// The value decoder fed `data`; whatever decodes must re-encode to an equal tuple.
pub fn values(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(tuple) = decode_tuple(&bytes, DecodeLimits::default()) {
        let mut again = BytesMut::new();
        encode_tuple(&tuple, DEFAULT_MAX_DEPTH, &mut again).expect("a decoded tuple re-encodes");
        let back = decode_tuple(&again.freeze(), DecodeLimits::default()).expect("and decodes");
        assert_eq!(back, tuple, "value round trip changed the tuple");
    }
}

/// A decoded frame re-encodes to bytes that decode to the same frame.
fn round_trip_frame(frame: &Frame) {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    let body = out.freeze().slice(4..);
    let back = Frame::decode(body).expect("an encoded frame decodes");
    assert_eq!(&back, frame, "frame round trip changed the frame");
}
