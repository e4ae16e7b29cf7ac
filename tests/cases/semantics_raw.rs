// Cases of tests/semantics.rs that speak the protocol on a raw socket, so are plaintext only:
// included once per event loop count (`REACTORS`).

use super::raw;

#[test]
fn a_killed_connection_fails_the_pending_invoke_client() {
    // The peer vanishes without a goodbye (as a crashed process would).
    let (server, addr) = echo_server(server_config());
    let (raw, _) = raw::RawPlayer::handshake(addr);
    let player = server.players()[0];
    let handle = server.handle();
    let pending = std::thread::spawn(move || handle.invoke_client(player, "Anything", &[], None));
    wait_until("the call is in flight", || server.calls_in_flight() == 1);
    raw.socket.shutdown(std::net::Shutdown::Both).unwrap();
    let result = pending.join().unwrap();
    assert!(matches!(result, Err(Error::Disconnected(_))), "{result:?}");
}

/// What a handler sends a player reaches it after the answers to the player's earlier calls:
/// a worker's replies and events go out in the order it made them, however the hand-off to the
/// loop is batched. One worker, so the calls run in order; the handler of call n tells the
/// player that call n - 1 is answered.
#[test]
fn an_event_a_handler_fires_comes_after_the_answers_to_earlier_calls() {
    const CALLS: u64 = 48;
    let (server, addr) = echo_server(ServerConfig {
        workers: 1,
        ..server_config()
    });
    server
        .bind("Step", |s, player, args| {
            let n = args[0].as_number().unwrap();
            if n > 1.0 {
                let event = format!("Answered {}", n - 1.0);
                s.fire_client(player, &event, &[]).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(tuple![n])
        })
        .unwrap();
    let (mut raw, _) = raw::RawPlayer::handshake(addr);
    let mut calls = bytes::BytesMut::new();
    for call in 1..=CALLS {
        proto::encode_invoke(&mut calls, call, "Step", &tuple![call as f64], 64).unwrap();
    }
    raw.send(&calls);
    let (mut answered, mut events) = (std::collections::HashSet::new(), 0);
    while answered.len() < CALLS as usize || events < CALLS - 1 {
        match raw.next_frame().expect("the server answers every call") {
            proto::Frame::Result { call, .. } => {
                answered.insert(call);
            }
            proto::Frame::Event { name, .. } => {
                let name = String::from_utf8(name.to_vec()).unwrap();
                let call: u64 = name.strip_prefix("Answered ").unwrap().parse().unwrap();
                assert!(
                    answered.contains(&call),
                    "{name:?} came before the answer to call {call}"
                );
                events += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A handler that waits on the player (a nested `invoke_client`) holds back no earlier answer of
/// its worker: the player gets the answer to its earlier call while the server waits, even when
/// it answers the server only after that.

#[test]
fn a_handler_that_waits_on_the_player_first_sends_the_answers_it_gathered() {
    let (server, addr) = echo_server(ServerConfig {
        workers: 1,
        ..server_config()
    });
    server
        .bind("AskBack", |s, player, _| {
            s.invoke_client(player, "Ping", &[], Some(PATIENCE))
                .map_err(|e| e.to_string())
        })
        .unwrap();
    let (mut raw, _) = raw::RawPlayer::handshake(addr);
    raw.socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut calls = bytes::BytesMut::new();
    proto::encode_invoke(&mut calls, 1, "Echo", &tuple!["first"], 64).unwrap();
    proto::encode_invoke(&mut calls, 2, "AskBack", &[], 64).unwrap();
    raw.send(&calls);
    let (mut first_answered, mut ping) = (false, None);
    while !first_answered || ping.is_none() {
        match raw.next_frame() {
            Some(proto::Frame::Result { call: 1, .. }) => first_answered = true,
            Some(proto::Frame::Invoke { call, .. }) => ping = Some(call),
            None => panic!("no answer to call 1 while the server waits on the player"),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut answer = bytes::BytesMut::new();
    proto::encode_result(&mut answer, ping.unwrap(), &tuple!["pong"], 64).unwrap();
    raw.send(&answer);
    match raw.next_frame() {
        Some(proto::Frame::Result { call: 2, .. }) => {}
        other => panic!("expected the answer to call 2, got {other:?}"),
    }
}
