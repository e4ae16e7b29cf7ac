// The cases of tests/relay.rs, included once per relay loop count (`REACTORS`).

use bytes::{Bytes, BytesMut};
use super::{common, raw};
use common::*;
use parking_lot::Mutex;
use remotefn::proto::{self, Frame};
use remotefn::value::codec::{decode_tuple, DecodeLimits};
use remotefn::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn relay() -> Relay {
    relay_with(RelayConfig {
        drain_timeout: Duration::from_secs(2),
        ..RelayConfig::default()
    })
}

/// A relay on free loopback ports whose hosts present "s3cret", otherwise as `config`.
fn relay_with(config: RelayConfig) -> Relay {
    Relay::start(RelayConfig {
        players: "127.0.0.1:0".into(),
        hosts: "127.0.0.1:0".into(),
        secret: Some("s3cret".into()),
        reactors: REACTORS,
        ..config
    })
    .expect("relay")
}

/// A game server for `place` attached to `relay`, with Echo and WhoAmI bound.
fn host(relay: &Relay, place: &str) -> Server {
    let server = Server::new(ServerConfig::default()).unwrap();
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    server
        .bind("WhoAmI", |_, player, _| {
            Ok::<_, String>(tuple![player.get() as f64])
        })
        .unwrap();
    server
        .attach(&relay.hosts_addr().to_string(), place, Some("s3cret"))
        .unwrap();
    server
}

fn player(relay: &Relay, place: &str) -> Client {
    let config = ClientConfig {
        place: place.into(),
        ..ClientConfig::default()
    };
    Client::connect(relay.players_addr(), config).expect("connect through the relay")
}

#[test]
fn calls_events_and_lifecycle_work_unchanged_through_the_relay() {
    let relay = relay();
    let server = host(&relay, "lobby");
    let added = Arc::new(AtomicUsize::new(0));
    let removed = Arc::new(AtomicUsize::new(0));
    let (a, r) = (added.clone(), removed.clone());
    server.on_player_added(move |_, _| {
        a.fetch_add(1, Ordering::SeqCst);
    });
    server.on_player_removing(move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    server
        .bind_event("Chat", move |_, player, args| {
            log.lock().push((player, args))
        })
        .unwrap();

    let alice = player(&relay, "lobby");
    let bob = player(&relay, "lobby");
    wait_until("two players added", || added.load(Ordering::SeqCst) == 2);
    assert_eq!(server.player_count(), 2);

    // InvokeServer, with the player id the server sees equal to the client's.
    assert_eq!(
        alice
            .invoke_server("Echo", &tuple!["hi", 1], Some(PATIENCE))
            .unwrap(),
        tuple!["hi", 1]
    );
    assert_eq!(
        bob.invoke_server("WhoAmI", &[], Some(PATIENCE)).unwrap(),
        tuple![bob.player_id().get() as f64]
    );
    // InvokeClient and errors both ways.
    alice
        .bind("Ask", |_, args| {
            Ok::<_, String>(tuple![format!("alice got {}", args[0].as_str().unwrap())])
        })
        .unwrap();
    alice
        .bind("Fail", |_, _| Err::<Tuple, _>("alice refuses"))
        .unwrap();
    assert_eq!(
        server
            .invoke_client(alice.player_id(), "Ask", &tuple!["q"], Some(PATIENCE))
            .unwrap(),
        tuple!["alice got q"]
    );
    assert_eq!(
        server.invoke_client(alice.player_id(), "Fail", &[], Some(PATIENCE)),
        Err(Error::Remote("alice refuses".into()))
    );
    server
        .bind("Boom", |_, _, _| Err::<Tuple, _>("server says no"))
        .unwrap();
    assert_eq!(
        bob.invoke_server("Boom", &[], Some(PATIENCE)),
        Err(Error::Remote("server says no".into()))
    );

    // Events: to the server, to one player, to everyone.
    alice.fire_server("Chat", &tuple!["hello"]).unwrap();
    wait_until("the chat event", || heard.lock().len() == 1);
    assert_eq!(heard.lock()[0], (alice.player_id(), tuple!["hello"]));
    let news: Vec<Arc<Mutex<Vec<f64>>>> = [&alice, &bob]
        .iter()
        .map(|c| {
            let got = Arc::new(Mutex::new(Vec::new()));
            let log = got.clone();
            c.bind_event("News", move |_, args| {
                log.lock().push(args[0].as_number().unwrap())
            })
            .unwrap();
            got
        })
        .collect();
    server.fire_all_clients("News", &tuple![1]).unwrap();
    server
        .fire_client(bob.player_id(), "News", &tuple![2])
        .unwrap();
    wait_until("the news", || {
        *news[0].lock() == [1.0] && *news[1].lock() == [1.0, 2.0]
    });

    // Kick with a reason the player receives.
    server.kick(alice.player_id(), "afk").unwrap();
    wait_until("alice removed", || removed.load(Ordering::SeqCst) == 1);
    let err = alice
        .invoke_server("Echo", &[], Some(PATIENCE))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Disconnected(why) if why.contains("afk")),
        "{err:?}"
    );
    assert_eq!(server.player_count(), 1);

    // The relay counts what it did.
    wait_until("the relay counts one player", || {
        relay
            .metrics()
            .render()
            .contains("remotefn_relay_players 1")
    });
    let text = relay.metrics().render();
    assert!(text.contains("remotefn_relay_hosts 1"), "{text}");
    assert!(
        text.contains(r#"remotefn_relay_calls_total{direction="to_host"}"#),
        "{text}"
    );
}

/// Stalled handshakes time out together; the relay closes them over several turns (64 a turn),
/// each with its reason, and keeps serving its players meanwhile.
#[test]
fn hundreds_of_stalled_handshakes_at_the_relay_all_get_their_timeout() {
    let relay = relay_with(RelayConfig {
        limits: Limits {
            handshake_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        ..RelayConfig::default()
    });
    let _host = host(&relay, "arena");
    let good = player(&relay, "arena");
    let mut stalled: Vec<raw::RawPlayer> = (0..300)
        .map(|_| {
            let mut p = raw::RawPlayer::connect(relay.players_addr());
            p.send(b"RM");
            p
        })
        .collect();
    for (i, p) in stalled.iter_mut().enumerate() {
        let (code, reason) = p
            .goodbye()
            .unwrap_or_else(|| panic!("stalled handshake {i} closed without a reason"));
        assert_eq!(code, proto::GoodbyeCode::Timeout);
        assert!(reason.contains("handshake"), "{reason}");
    }
    assert_eq!(
        good.invoke_server("Echo", &tuple!["still here"], Some(PATIENCE))
            .unwrap(),
        tuple!["still here"]
    );
}

#[test]
fn the_hosts_authenticator_decides_and_unknown_places_are_refused() {
    let relay = relay();
    let server = host(&relay, "arena");
    server.set_authenticator(|req| match req.token.as_ref() {
        b"ok" => Ok(Identity {
            user_id: 11,
            name: "eve".into(),
        }),
        _ => Err("bad token".to_owned()),
    });
    let config = |token: &str, place: &str| ClientConfig {
        token: Bytes::copy_from_slice(token.as_bytes()),
        place: place.into(),
        ..ClientConfig::default()
    };
    let eve = Client::connect(relay.players_addr(), config("ok", "arena")).unwrap();
    assert_eq!(
        server
            .player_info(eve.player_id())
            .unwrap()
            .identity
            .user_id,
        11
    );
    assert_eq!(
        Client::connect(relay.players_addr(), config("nope", "arena")).err(),
        Some(Error::Rejected("bad token".into()))
    );
    let err = Client::connect(relay.players_addr(), config("ok", "nowhere"))
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Rejected(why) if why.contains("nowhere")),
        "{err:?}"
    );
    // A host with the wrong secret is refused too.
    let intruder = Server::new(ServerConfig::default()).unwrap();
    let err = intruder
        .attach(&relay.hosts_addr().to_string(), "arena2", Some("guess"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Rejected(why) if why.contains("secret")),
        "{err:?}"
    );
}

/// Players that speak the protocol by hand, through the relay to place `place`.
fn raw_players(addr: SocketAddr, place: &str, n: usize) -> Vec<(raw::RawPlayer, u64)> {
    (0..n)
        .map(|_| {
            let mut p = raw::RawPlayer::connect(addr);
            let mut out = BytesMut::new();
            proto::encode_preface(&mut out);
            Frame::Hello {
                place: place.into(),
                token: Bytes::new(),
            }
            .encode(&mut out);
            p.send(&out);
            match p.next_frame() {
                Some(Frame::Welcome { player, .. }) => (p, player),
                other => panic!("expected a welcome, got {other:?}"),
            }
        })
        .collect()
}

#[test]
fn a_thousand_players_share_the_hosts_one_connection() {
    let relay = relay();
    let server = host(&relay, "big");
    let mut players = raw_players(relay.players_addr(), "big", 1000);
    wait_until("1000 players", || server.player_count() == 1000);
    for round in 0..2u64 {
        for (i, (p, _)) in players.iter_mut().enumerate() {
            let mut out = BytesMut::new();
            // Every player picks the same call ids: the relay's routes keep them apart.
            proto::encode_invoke(&mut out, round + 1, "WhoAmI", &[], 64).unwrap();
            proto::encode_invoke(&mut out, round + 100, "Echo", &tuple![i, round], 64).unwrap();
            p.send(&out);
        }
        for (i, (p, id)) in players.iter_mut().enumerate() {
            let mut seen = 0;
            while seen < 2 {
                match p.next_frame() {
                    Some(Frame::Result { call, values }) => {
                        let got = decode_tuple(&values, DecodeLimits::default()).unwrap();
                        if call == round + 1 {
                            assert_eq!(
                                got,
                                tuple![*id as f64],
                                "player {i} got another's identity"
                            );
                        } else {
                            assert_eq!(call, round + 100);
                            assert_eq!(got, tuple![i, round]);
                        }
                        seen += 1;
                    }
                    other => panic!("player {i}: expected a result, got {other:?}"),
                }
            }
        }
    }
    drop(players);
    wait_until("everyone left", || server.player_count() == 0);
}

#[test]
fn a_host_that_goes_away_fails_calls_fast_and_a_new_host_takes_the_players() {
    let relay = relay();
    let server = host(&relay, "lobby");
    server.bind_with_call_id("Hang", |_, _, _, _| {}).unwrap();
    let alice = player(&relay, "lobby");
    let c = alice.handle();
    let pending = std::thread::spawn(move || c.invoke_server("Hang", &[], None));
    wait_until("the call reached the host", || {
        server.replies_pending() == 1
    });
    drop(server);
    let err = pending.join().unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Disconnected(why) if why.contains("disconnected")),
        "{err:?}"
    );
    // New calls fail at once with a clear error; the player stays connected.
    let started = Instant::now();
    let err = alice
        .invoke_server("Echo", &[], Some(PATIENCE))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Disconnected(why) if why.contains("no game server")),
        "{err:?}"
    );
    assert!(started.elapsed() < PATIENCE / 2);
    assert!(alice.is_connected());
    // A new host for the place is told about the player, and serves it.
    let replacement = host(&relay, "lobby");
    wait_until("the player is announced", || {
        replacement.player_count() == 1
    });
    assert_eq!(
        alice
            .invoke_server("Echo", &tuple![5], Some(PATIENCE))
            .unwrap(),
        tuple![5]
    );
}

#[test]
fn a_player_that_disconnects_fails_the_hosts_pending_invoke_client() {
    let relay = relay();
    let server = host(&relay, "lobby");
    let alice = player(&relay, "lobby");
    alice.bind_with_call_id("Hang", |_, _, _| {}).unwrap();
    let id = alice.player_id();
    let s = server.handle();
    let pending =
        std::thread::spawn(move || (s.invoke_client(id, "Hang", &[], None), Instant::now()));
    wait_until("the call is in flight", || server.calls_in_flight() == 1);
    let dropped = Instant::now();
    drop(alice);
    let (result, failed) = pending.join().unwrap();
    assert!(matches!(result, Err(Error::Disconnected(_))), "{result:?}");
    assert!(failed - dropped < Duration::from_secs(1));
}

#[test]
fn hosts_reattach_after_a_relay_restart() {
    let relay = relay();
    let (players_addr, hosts_addr) = (relay.players_addr(), relay.hosts_addr());
    let server = host(&relay, "lobby");
    let alice = player(&relay, "lobby");
    wait_until("alice joined", || server.player_count() == 1);
    relay.shutdown();
    // The host loses its players, then reattaches by itself to the relay at the same address.
    wait_until("alice removed", || server.player_count() == 0);
    assert!(matches!(
        alice.invoke_server("Echo", &[], Some(PATIENCE)),
        Err(Error::Disconnected(_))
    ));
    let relay = Relay::start(RelayConfig {
        players: players_addr.to_string(),
        hosts: hosts_addr.to_string(),
        secret: Some("s3cret".into()),
        reactors: REACTORS,
        ..RelayConfig::default()
    })
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let bob = loop {
        match Client::connect(
            relay.players_addr(),
            ClientConfig {
                place: "lobby".into(),
                ..ClientConfig::default()
            },
        ) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(e, Error::Rejected(_)), "{e:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the host never reattached: {e:?}"),
        }
    };
    assert_eq!(
        bob.invoke_server("Echo", &tuple!["back"], Some(PATIENCE))
            .unwrap(),
        tuple!["back"]
    );
}

#[test]
fn two_relays_in_front_of_one_host() {
    let (east, west) = (relay(), relay());
    let server = Server::new(ServerConfig::default()).unwrap();
    server
        .bind("WhoAmI", |_, player, _| {
            Ok::<_, String>(tuple![player.get() as f64])
        })
        .unwrap();
    for r in [&east, &west] {
        server
            .attach(&r.hosts_addr().to_string(), "world", Some("s3cret"))
            .unwrap();
    }
    let players: Vec<Client> = (0..10)
        .map(|i| player(if i % 2 == 0 { &east } else { &west }, "world"))
        .collect();
    wait_until("the host sees the union", || server.player_count() == 10);
    let mut ids: Vec<PlayerId> = players.iter().map(|p| p.player_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "player ids from two relays collide");
    for p in &players {
        assert_eq!(
            p.invoke_server("WhoAmI", &[], Some(PATIENCE)).unwrap(),
            tuple![p.player_id().get() as f64]
        );
        p.bind("Ping", |c, _| {
            Ok::<_, String>(tuple![c.player_id().get() as f64])
        })
        .unwrap();
    }
    for p in &players {
        assert_eq!(
            server
                .invoke_client(p.player_id(), "Ping", &[], Some(PATIENCE))
                .unwrap(),
            tuple![p.player_id().get() as f64]
        );
    }
}

#[test]
fn shutdown_lets_in_flight_calls_finish_within_the_drain_and_fails_the_rest() {
    let relay = relay_with(RelayConfig {
        drain_timeout: Duration::from_millis(800),
        ..RelayConfig::default()
    });
    let server = host(&relay, "lobby");
    let started_handlers = Arc::new(AtomicUsize::new(0));
    let count = started_handlers.clone();
    server
        .bind("Slow", move |_, _, args| {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            Ok::<_, String>(args)
        })
        .unwrap();
    let count = started_handlers.clone();
    server
        .bind_with_call_id("Never", move |_, _, _, _| {
            count.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let alice = player(&relay, "lobby");
    let (a, b) = (alice.handle(), alice.handle());
    let slow = std::thread::spawn(move || a.invoke_server("Slow", &tuple!["done"], None));
    let never = std::thread::spawn(move || b.invoke_server("Never", &[], None));
    wait_until("both calls reached their handlers", || {
        started_handlers.load(Ordering::SeqCst) == 2
    });
    let started = Instant::now();
    relay.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the drain overran: {:?}",
        started.elapsed()
    );
    assert_eq!(slow.join().unwrap().unwrap(), tuple!["done"]);
    let err = never.join().unwrap().unwrap_err();
    assert!(
        matches!(err, Error::Closed(_) | Error::Disconnected(_)),
        "{err:?}"
    );
}

#[test]
fn no_player_can_answer_another_players_call_through_the_relay() {
    let relay = relay();
    let server = host(&relay, "lobby");
    let victim = player(&relay, "lobby");
    victim.bind_with_call_id("Hang", |_, _, _| {}).unwrap();
    let id = victim.player_id();
    let s = server.handle();
    let pending = std::thread::spawn(move || {
        s.invoke_client(id, "Hang", &[], Some(Duration::from_millis(1500)))
    });
    wait_until("the call reached the victim", || {
        server.calls_in_flight() == 1
    });
    // The forger guesses route ids (slot + generation) and answers them all.
    let mut forger = raw_players(relay.players_addr(), "lobby", 1)
        .pop()
        .unwrap()
        .0;
    let mut forged = BytesMut::new();
    for slot in 0..16u64 {
        for generation in 1..4u64 {
            Frame::Result {
                call: (generation << 32) | slot,
                values: Bytes::from_static(&[1, 0x02]),
            }
            .encode(&mut forged);
        }
    }
    forger.send(&forged);
    let result = pending.join().unwrap();
    assert!(
        matches!(result, Err(Error::Timeout(_))),
        "a forged reply completed the call: {result:?}"
    );
    // A player cannot send host-link frames either.
    let mut out = BytesMut::new();
    Frame::Kick {
        player: id.get(),
        reason: "gotcha".into(),
    }
    .encode(&mut out);
    forger.send(&out);
    let mut goodbye = None;
    while let Some(f) = forger.next_frame() {
        if let Frame::Goodbye { code, .. } = f {
            goodbye = Some(code);
        }
    }
    assert_eq!(goodbye, Some(proto::GoodbyeCode::ProtocolError));
    assert!(victim.is_connected());
}

#[test]
fn a_host_that_stops_reading_is_cut_at_its_output_bound_and_its_players_fail_fast() {
    use std::io::{Read, Write};
    let relay = relay_with(RelayConfig {
        max_host_output_buffer: 1024 * 1024,
        limits: Limits {
            rate_per_sec: 0,
            ..Limits::default()
        },
        ..RelayConfig::default()
    });
    // A host by hand: it attaches, accepts one player, then never reads again.
    let mut stalled = std::net::TcpStream::connect(relay.hosts_addr()).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = BytesMut::new();
    proto::encode_preface(&mut out);
    Frame::HostHello {
        place: "lobby".into(),
        secret: Bytes::from_static(b"s3cret"),
    }
    .encode(&mut out);
    stalled.write_all(&out).unwrap();
    let mut link = proto::Connection::new(proto::Role::Client, 1 << 20);
    let mut next_frame = |link: &mut proto::Connection| loop {
        if let Some(frame) = link.poll_frame().unwrap() {
            return frame;
        }
        let mut buf = [0u8; 4096];
        let n = stalled.read(&mut buf).unwrap();
        assert!(n > 0, "the relay closed the link");
        link.handle_bytes(&buf[..n]);
    };
    assert!(matches!(next_frame(&mut link), Frame::HostWelcome { .. }));
    let joining = {
        let addr = relay.players_addr();
        std::thread::spawn(move || {
            Client::connect(
                addr,
                ClientConfig {
                    place: "lobby".into(),
                    ..ClientConfig::default()
                },
            )
        })
    };
    let Frame::PlayerJoin { player, .. } = next_frame(&mut link) else {
        panic!("expected a join")
    };
    let mut accept = BytesMut::new();
    Frame::PlayerAccept {
        player,
        user_id: 7,
        name: "alice".into(),
    }
    .encode(&mut accept);
    let mut writer = stalled.try_clone().unwrap();
    writer.write_all(&accept).unwrap();
    let alice = joining.join().unwrap().expect("the player got in");

    // The player's events pile up at the relay for the host that does not read: past 1 MiB
    // (beyond what the kernel buffers hold) the relay cuts the host.
    let big = tuple![Value::buffer(vec![3u8; 64 * 1024])];
    for _ in 0..400 {
        alice.fire_server("Flood", &big).unwrap();
    }
    wait_until("the stalled host is cut", || {
        matches!(
            alice.invoke_server("Echo", &[], Some(Duration::from_millis(500))),
            Err(Error::Disconnected(why)) if why.contains("no game server")
        )
    });
    // The player stays connected, waiting for a host, and its calls fail fast meanwhile.
    assert!(alice.is_connected());
    drop(stalled);
}

/// A player of place `place` on the relay, speaking the protocol by hand.
fn raw_player(relay: &Relay, place: &str) -> raw::RawPlayer {
    raw::RawPlayer::handshake_to(relay.players_addr(), place).0
}

fn limit_cuts(relay: &Relay) -> u64 {
    relay
        .metrics()
        .disconnects
        .with_label_values(&["limit"])
        .get()
}

#[test]
fn a_player_cut_for_a_violation_gets_its_goodbye_even_with_unread_input() {
    let relay = relay();
    let _server = host(&relay, "lobby");
    let mut p = raw_player(&relay, "lobby");
    // A frame over the limit, then 2 MiB the relay will not have read when it closes: closing
    // the socket with that input unread would send a reset, which can destroy the goodbye.
    let mut bad = (64u32 << 20).to_le_bytes().to_vec();
    bad.resize(2 << 20, 0x5a);
    p.send(&bad);
    let (goodbye, end) = p.goodbye_and_end();
    let (code, reason) = goodbye.expect("the goodbye arrives");
    assert_eq!(code, proto::GoodbyeCode::ProtocolError);
    assert!(reason.contains("exceeds the limit"), "{reason}");
    // The relay sent a FIN after the goodbye, not a reset (which, on a real network, can
    // destroy the goodbye before the player reads it).
    end.expect("the stream ends cleanly");
}

#[test]
fn a_player_that_does_not_read_its_answers_stops_being_served_and_is_cut() {
    let relay = relay_with(RelayConfig {
        limits: Limits {
            idle_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..RelayConfig::default()
    });
    let server = host(&relay, "lobby");
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    server
        .bind("Big", move |_, _, args| {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(args)
        })
        .unwrap();
    let good = player(&relay, "lobby");
    let mut deaf = raw_player(&relay, "lobby");
    let big = [Value::buffer(vec![7u8; 16 * 1024])];
    // 1,500 calls of 16 KiB, 24 MiB of answers, none read.
    deaf.call_without_reading(1500, "Big", &big, Duration::from_secs(3));
    wait_until("the deaf player is cut (not reading)", || {
        limit_cuts(&relay) >= 1
    });
    // Past 256 KiB of unread answers the relay left its calls unread: the host served a few
    // dozen, not the 1,500 it sent (and certainly not the 24 MiB of answers).
    let n = served.load(Ordering::SeqCst);
    eprintln!("the host served {n} of the 1,500 calls of a player that reads nothing");
    assert!(
        n < 500,
        "the host served {n} calls of a player that reads nothing"
    );
    assert_eq!(
        good.invoke_server("Echo", &tuple!["still here"], Some(PATIENCE))
            .unwrap(),
        tuple!["still here"]
    );
}

#[test]
fn a_hostile_crowd_at_the_relay_cannot_hurt_a_well_behaved_player() {
    let relay = relay_with(RelayConfig {
        limits: Limits {
            handshake_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
        ..RelayConfig::default()
    });
    let server = host(&relay, "lobby");
    server.bind_event("Spam", |_, _, _| {}).unwrap();
    let good = player(&relay, "lobby");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let caller = steady_caller(good.handle(), stop.clone(), ok.clone());
    // 500 slowloris handshakes: half a preface each, then nothing.
    let slowloris: Vec<raw::RawPlayer> = (0..500)
        .map(|_| {
            let mut p = raw::RawPlayer::connect(relay.players_addr());
            p.send(b"RM");
            p
        })
        .collect();
    // Garbage instead of a preface: refused.
    for seed in 1..=20u8 {
        let mut p = raw::RawPlayer::connect(relay.players_addr());
        p.send(&[seed; 64]);
        let _ = p.goodbye();
    }
    // A flooder sending events as fast as the relay takes them, for two seconds: shaped to its
    // rate, its input waits in the kernel, and the read budget keeps its bursts short.
    let flooder = {
        let mut f = raw_player(&relay, "lobby");
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut burst = BytesMut::new();
            for _ in 0..1000 {
                Frame::Event {
                    name: Bytes::from_static(b"Spam"),
                    args: Bytes::from_static(&[0]),
                }
                .encode(&mut burst);
            }
            f.socket
                .set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _ = std::io::Write::write_all(&mut f.socket, &burst);
            }
        })
    };
    let before = ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    // The well-behaved player kept being served throughout (a call every 2 ms plus its round
    // trip: hundreds in two seconds), and the slowloris crowd timed out meanwhile.
    let during = ok.load(Ordering::Relaxed) - before;
    wait_until("the slowloris handshakes time out", || {
        relay
            .metrics()
            .disconnects
            .with_label_values(&["timeout"])
            .get()
            >= 500
    });
    stop.store(true, Ordering::Relaxed);
    caller.join().unwrap();
    flooder.join().unwrap();
    drop(slowloris);
    assert!(during >= 100, "only {during} good calls in 2 s of attack");
}

#[test]
fn a_player_that_sends_a_routed_call_or_a_malformed_one_is_cut_and_others_are_served() {
    let relay = relay();
    let server = host(&relay, "lobby");
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    let good = player(&relay, "lobby");
    let invoke = Frame::Invoke {
        call: 1,
        name: Bytes::from_static(b"Echo"),
        args: Bytes::new(),
    };
    let mut routed = BytesMut::new();
    proto::encode_routed_frame(&mut routed, 12345, &invoke);
    // An INVOKE whose name is not UTF-8: its head does not check out.
    let mut bad_name = BytesMut::new();
    bad_name.extend_from_slice(&13u32.to_le_bytes());
    bad_name.extend_from_slice(&[proto::FrameType::Invoke as u8, 1, 0, 0, 0, 0, 0, 0, 0]);
    bad_name.extend_from_slice(&[2, 0, 0xff, 0xfe]);
    for (wire, expected) in [(routed, "may not send Routed"), (bad_name, "UTF-8")] {
        let mut p = raw_player(&relay, "lobby");
        p.send(&wire);
        let (goodbye, _) = p.goodbye_and_end();
        let (code, reason) = goodbye.expect("the goodbye arrives");
        assert_eq!(code, proto::GoodbyeCode::ProtocolError);
        assert!(reason.contains(expected), "{reason}");
        assert_eq!(
            good.invoke_server("Echo", &tuple![7], Some(PATIENCE))
                .unwrap(),
            tuple![7]
        );
    }
}
