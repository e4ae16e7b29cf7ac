//! The reactor holding thousands of connections, each completing calls, with no thread per
//! connection. Alone in its test binary so the thread count is the server's alone.

mod common;
mod raw;

use bytes::BytesMut;
use common::*;
use raw::RawPlayer;
use remotefn::proto::{self, Frame};
use remotefn::value::codec::{decode_tuple, DecodeLimits};
use remotefn::*;

fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[test]
fn two_thousand_concurrent_connections_each_complete_calls() {
    let (server, addr) = echo_server(ServerConfig::default());
    let threads_before = thread_count();
    let mut players: Vec<(RawPlayer, u64)> =
        (0..2000).map(|_| RawPlayer::handshake(addr)).collect();
    wait_until("2000 players", || server.player_count() == 2000);
    // The reactor owns every socket: no thread per connection.
    assert_eq!(thread_count(), threads_before);

    for round in 0..3u64 {
        // Every connection has a call in flight at once, then every answer is read.
        for (i, (p, _)) in players.iter_mut().enumerate() {
            let mut out = BytesMut::new();
            proto::encode_invoke(
                &mut out,
                round * 10_000 + i as u64 + 1,
                "Echo",
                &tuple![i, round],
                64,
            )
            .unwrap();
            p.send(&out);
        }
        for (i, (p, _)) in players.iter_mut().enumerate() {
            match p.next_frame() {
                Some(Frame::Result { call, values }) => {
                    assert_eq!(call, round * 10_000 + i as u64 + 1);
                    let got = decode_tuple(&values, DecodeLimits::default()).unwrap();
                    assert_eq!(got, tuple![i, round]);
                }
                other => panic!("player {i}: expected a result, got {other:?}"),
            }
        }
    }
    // The server can call each of them too (the raw players answer by hand).
    let (p, id) = &mut players[1234];
    let handle = server.handle();
    let target = PlayerId::from_raw(*id);
    let call = std::thread::spawn(move || {
        handle.invoke_client(target, "Ping", &tuple!["hi"], Some(PATIENCE))
    });
    let Some(Frame::Invoke {
        call: call_id,
        name,
        args,
    }) = p.next_frame()
    else {
        panic!("expected an invoke")
    };
    assert_eq!(name.as_ref(), b"Ping");
    p.send(&{
        let mut out = BytesMut::new();
        Frame::Result {
            call: call_id,
            values: args,
        }
        .encode(&mut out);
        out
    });
    assert_eq!(call.join().unwrap().unwrap(), tuple!["hi"]);
    drop(players);
    wait_until("everyone left", || server.player_count() == 0);
}
