//! Players that break the protocol are cut off, alone, with a reason.

mod common;
mod raw;

use bytes::{Bytes, BytesMut};
use common::*;
use remotefn::proto::{Frame, GoodbyeCode};
use remotefn::*;

use raw::RawPlayer;

#[test]
fn a_malformed_frame_disconnects_only_its_sender_with_a_reason() {
    let (server, addr) = echo_server(ServerConfig::default());
    let good = connect(addr);

    // Garbage after the handshake: a frame of unknown type.
    let (mut bad, _) = RawPlayer::handshake(addr);
    bad.send(&[1, 0, 0, 0, 0x7e]);
    match bad.next_frame() {
        Some(Frame::Goodbye { code, reason }) => {
            assert_eq!(code, GoodbyeCode::ProtocolError);
            assert!(reason.contains("unknown frame type"), "{reason}");
        }
        other => panic!("expected a goodbye, got {other:?}"),
    }
    assert_eq!(bad.next_frame(), None);

    // Not the protocol at all: refused with a reason before any handshake.
    let mut http = RawPlayer::connect(addr);
    http.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    match http.next_frame() {
        Some(Frame::Refused { reason }) => assert!(reason.contains("magic"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A length prefix of 4 GiB: refused before anything is allocated.
    let (mut huge, _) = RawPlayer::handshake(addr);
    huge.send(&u32::MAX.to_le_bytes());
    match huge.next_frame() {
        Some(Frame::Goodbye { code, reason }) => {
            assert_eq!(code, GoodbyeCode::ProtocolError);
            assert!(reason.contains("exceeds the limit"), "{reason}");
        }
        other => panic!("expected a goodbye, got {other:?}"),
    }

    // Undecodable arguments inside a well-formed frame.
    let (mut liar, _) = RawPlayer::handshake(addr);
    liar.call_with_undecodable_args("Echo");
    let mut saw_goodbye = false;
    while let Some(frame) = liar.next_frame() {
        if let Frame::Goodbye { code, reason } = frame {
            assert_eq!(code, GoodbyeCode::ProtocolError);
            assert!(reason.contains("malformed arguments"), "{reason}");
            saw_goodbye = true;
        }
    }
    assert!(saw_goodbye);

    // A forger answers, with guessed ids, a call the server made to another player: dropped.
    good.bind_with_call_id("Hang", |_, _, _| {}).unwrap();
    let handle = server.handle();
    let target = good.player_id();
    let pending =
        std::thread::spawn(move || handle.invoke_client(target, "Hang", &[], Some(PATIENCE / 5)));
    wait_until("the server's call is in flight", || {
        server.calls_in_flight() == 1
    });
    let (mut forger, _) = RawPlayer::handshake(addr);
    let mut forged = BytesMut::new();
    for slot in 0..8u64 {
        for generation in 1..4u64 {
            Frame::Result {
                call: (generation << 32) | slot,
                values: Bytes::from_static(&[0]),
            }
            .encode(&mut forged);
        }
    }
    forger.send(&forged);
    assert!(
        matches!(pending.join().unwrap(), Err(Error::Timeout(_))),
        "a forged reply completed the call"
    );

    // Through all of it, the well-behaved player is served.
    for i in 0..100 {
        assert_eq!(
            good.invoke_server("Echo", &tuple![i], Some(PATIENCE))
                .unwrap(),
            tuple![i]
        );
    }
    wait_until("the offenders are gone", || server.player_count() == 2); // good and the forger
}
