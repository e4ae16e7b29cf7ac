//! Per-connection limits and timers: a peer that stalls the handshake, goes silent, floods, or
//! piles up calls is cut off with a reason, while a well-behaved player keeps being served.

mod common;
mod raw;

use bytes::{Bytes, BytesMut};
use common::*;
use raw::RawPlayer;
use remotefn::proto::{self, Frame, GoodbyeCode};
use remotefn::*;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn a_stalled_handshake_is_closed_with_a_timeout() {
    let config = ServerConfig {
        limits: Limits {
            handshake_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let (server, addr) = echo_server(config);
    let good = connect(addr);
    let started = Instant::now();
    // Nothing at all, and half a preface (slowloris).
    let mut silent = RawPlayer::connect(addr);
    let mut partial = RawPlayer::connect(addr);
    partial.send(b"RM");
    for p in [&mut silent, &mut partial] {
        let (code, reason) = p.goodbye().expect("a goodbye");
        assert_eq!(code, GoodbyeCode::Timeout);
        assert!(reason.contains("handshake"), "{reason}");
    }
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(
        good.invoke_server("Echo", &tuple![1], Some(PATIENCE))
            .unwrap(),
        tuple![1]
    );
    assert_eq!(server.player_count(), 1);
    let stats = server.stats();
    assert_eq!(stats.disconnects_timeout, 2, "{stats:?}");
    assert_eq!(stats.connections, 3);
    assert_eq!(stats.calls_in, 1);
}

/// Connections in the handshake wait behind players within each loop turn; a burst of them
/// must all be admitted, in the handshake timeout, while a player keeps calling. (This shows
/// admission under load, not its speed: housekeeping starved on every turn with player work
/// would still pass here, more slowly, as the caller leaves idle turns.)
#[test]
fn a_connection_storm_while_a_player_keeps_calling_admits_every_newcomer() {
    let config = ServerConfig {
        limits: Limits {
            handshake_timeout: Duration::from_secs(10),
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let (server, addr) = echo_server(config);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = {
        let stop = stop.clone();
        let good = connect(addr);
        std::thread::spawn(move || {
            let (mut calls, mut failed) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match good.invoke_server("Echo", &tuple![calls], Some(PATIENCE)) {
                    Ok(v) if v == tuple![calls] => {}
                    _ => failed += 1,
                }
                calls += 1;
            }
            (good, calls, failed)
        })
    };
    let started = Instant::now();
    let mut newcomers: Vec<RawPlayer> = (0..1000).map(|_| RawPlayer::connect(addr)).collect();
    for p in &mut newcomers {
        p.hello();
    }
    let mut ids: Vec<u64> = newcomers.iter_mut().map(|p| p.welcome()).collect();
    let admitted_in = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_good, calls, failed) = caller.join().unwrap();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "every newcomer has its own player id");
    assert_eq!(
        failed, 0,
        "{failed} of {calls} calls failed during the storm"
    );
    assert!(calls > 0);
    assert!(admitted_in < 2 * PATIENCE, "admitted in {admitted_in:?}");
    assert_eq!(server.player_count(), 1001);
}

#[test]
fn heartbeats_keep_a_quiet_player_and_cut_a_silent_one() {
    let config = ServerConfig {
        limits: Limits {
            idle_timeout: Duration::from_millis(600),
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let (server, addr) = echo_server(config);
    // A real client answers the server's pings by itself.
    let quiet = connect(addr);
    // A raw player that handshakes and then never sends a byte, pongs included.
    let (mut silent, _) = RawPlayer::handshake(addr);
    let (code, reason) = silent.goodbye().expect("a goodbye");
    assert_eq!(code, GoodbyeCode::Timeout);
    assert!(reason.contains("nothing heard"), "{reason}");
    std::thread::sleep(Duration::from_millis(700));
    assert!(quiet.is_connected());
    assert_eq!(
        quiet
            .invoke_server("Echo", &tuple!["still here"], Some(PATIENCE))
            .unwrap(),
        tuple!["still here"]
    );
    assert_eq!(server.player_count(), 1);
}

#[test]
fn a_client_gives_up_on_a_silent_server() {
    // A "server" that completes the handshake by hand, then never says anything again.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut out = BytesMut::new();
        Frame::Welcome {
            player: 7,
            max_frame: 1 << 20,
        }
        .encode(&mut out);
        socket.write_all(&out).unwrap();
        std::thread::sleep(Duration::from_secs(3));
    });
    let config = ClientConfig {
        limits: Limits {
            idle_timeout: Duration::from_millis(500),
            ..Limits::client()
        },
        ..ClientConfig::default()
    };
    let client = Client::connect(addr, config).unwrap();
    let started = Instant::now();
    let err = client.invoke_server("Echo", &[], None).unwrap_err();
    assert!(
        matches!(err, Error::Disconnected(ref why) if why.contains("nothing heard")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    fake.join().unwrap();
}

#[test]
fn a_flood_past_the_rate_limit_disconnects_only_the_flooder() {
    // 500 events at 100 a second: over the rate for 4.5 s, past the 1 s it may stay over.
    let config = ServerConfig {
        limits: Limits {
            rate_per_sec: 100,
            rate_burst: 50,
            rate_cut_after: Duration::from_secs(1),
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let (server, addr) = echo_server(config);
    server.bind_event("Spam", |_, _, _| {}).unwrap();
    let good = connect(addr);
    let (mut flooder, _) = RawPlayer::handshake(addr);
    let mut burst = BytesMut::new();
    for _ in 0..500 {
        Frame::Event {
            name: Bytes::from_static(b"Spam"),
            args: Bytes::from_static(&[0]),
        }
        .encode(&mut burst);
    }
    flooder.send(&burst);
    let (code, reason) = flooder.goodbye().expect("a goodbye");
    assert_eq!(code, GoodbyeCode::Limit);
    assert!(reason.contains("rate limit"), "{reason}");
    assert_eq!(server.stats().disconnects_limit, 1);
    for i in 0..20 {
        assert_eq!(
            good.invoke_server("Echo", &tuple![i], Some(PATIENCE))
                .unwrap(),
            tuple![i]
        );
    }
}

#[test]
fn too_many_calls_in_flight_disconnects_the_player() {
    let config = ServerConfig {
        limits: Limits {
            max_inflight_per_player: 8,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let (server, addr) = echo_server(config);
    server.bind_with_call_id("Hang", |_, _, _, _| {}).unwrap();
    let (mut greedy, _) = RawPlayer::handshake(addr);
    let mut calls = BytesMut::new();
    for call in 1..=9u64 {
        Frame::Invoke {
            call,
            name: Bytes::from_static(b"Hang"),
            args: Bytes::from_static(&[0]),
        }
        .encode(&mut calls);
    }
    greedy.send(&calls);
    let (code, reason) = greedy.goodbye().expect("a goodbye");
    assert_eq!(code, GoodbyeCode::Limit);
    assert!(reason.contains("in flight"), "{reason}");

    // Answered calls free their place: a player at the bound, answered, may call again.
    let (mut steady, _) = RawPlayer::handshake(addr);
    for round in 0..3u64 {
        let mut batch = BytesMut::new();
        for i in 0..8u64 {
            Frame::Invoke {
                call: round * 8 + i + 1,
                name: Bytes::from_static(b"Echo"),
                args: Bytes::from_static(&[0]),
            }
            .encode(&mut batch);
        }
        steady.send(&batch);
        for _ in 0..8 {
            assert!(matches!(steady.next_frame(), Some(Frame::Result { .. })));
        }
    }
}

#[test]
fn a_player_that_never_reads_is_cut_at_the_output_bound() {
    let config = ServerConfig {
        limits: Limits {
            max_output_buffer: 256 * 1024,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let (server, addr) = echo_server(config);
    let good = connect(addr);
    let (stubborn, id) = RawPlayer::handshake(addr);
    let id = PlayerId::from_raw(id);
    // Events to a player that never reads pile up in the kernel's buffers, then in ours.
    let big = tuple![Value::buffer(vec![0u8; 64 * 1024])];
    let deadline = Instant::now() + PATIENCE;
    while server.player_info(id).is_some() && Instant::now() < deadline {
        let _ = server.fire_client(id, "Big", &big);
    }
    assert!(
        server.player_info(id).is_none(),
        "the non-reading player is still connected"
    );
    assert_eq!(
        good.invoke_server("Echo", &tuple![1], Some(PATIENCE))
            .unwrap(),
        tuple![1]
    );
    drop(stubborn);
}

#[test]
fn a_caller_that_never_reads_its_answers_gets_no_more_served_and_is_cut_after_the_idle_timeout() {
    let config = ServerConfig {
        limits: Limits {
            idle_timeout: Duration::from_secs(2),
            rate_per_sec: 0,
            max_inflight_per_player: 100_000,
            // Room for every answer: without the pause, all 1,600 calls would be served.
            max_output_buffer: 256 * 1024 * 1024,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let (server, addr) = echo_server(config);
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let served = served.clone();
        server
            .bind("Count", move |_, _, args| {
                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, String>(args)
            })
            .unwrap();
    }
    let good = connect(addr);
    let (mut deaf, id) = RawPlayer::handshake(addr);
    let id = PlayerId::from_raw(id);
    // 100 MiB of calls whose 64 KiB answers it never reads. Once the answers back up past the
    // kernel's buffers and a little of ours, the server leaves its calls unread instead of
    // serving them, so TCP stops the sender: it cannot make the server work for nothing.
    let big = [Value::buffer(vec![5u8; 64 * 1024])];
    deaf.call_without_reading(1600, "Count", &big, Duration::from_millis(500));
    let after_pause = served.load(std::sync::atomic::Ordering::Relaxed);
    assert!(after_pause < 800, "{after_pause} calls served");
    // Still connected and costing nothing while the idle timeout runs...
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        served.load(std::sync::atomic::Ordering::Relaxed),
        after_pause
    );
    assert_eq!(
        good.invoke_server("Echo", &tuple![2], Some(PATIENCE))
            .unwrap(),
        tuple![2]
    );
    // ...then cut and counted, and the reason is the next thing it would read: its unsent
    // answers were dropped in favour of the goodbye.
    wait_until("the deaf caller is cut", || {
        server.player_info(id).is_none()
    });
    let stats = server.stats();
    assert!(stats.disconnects_limit >= 1, "{stats:?}");
    let (code, reason) = deaf.goodbye().expect("a goodbye");
    assert_eq!(code, GoodbyeCode::Limit);
    assert!(reason.contains("not reading"), "{reason}");
}

#[test]
fn a_client_keeps_reading_its_server_while_its_own_output_is_backed_up() {
    use std::io::Read;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    // A server by hand that welcomes the client, then never reads from it again but sends it
    // events. The client's own output backs up far past 256 KiB (the point at which a *server*
    // stops reading a player); a client must keep reading its server regardless, or two peers
    // that both did so would each wait for the other forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut hello = [0u8; 6];
        socket.read_exact(&mut hello).unwrap(); // the preface; the HELLO follows unread
        let mut out = BytesMut::new();
        Frame::Welcome {
            player: 1,
            max_frame: 1 << 20,
        }
        .encode(&mut out);
        socket.write_all(&out).unwrap();
        socket
    });
    let client = Client::connect(addr, ClientConfig::default()).unwrap();
    let mut socket = server.join().unwrap();
    let heard = Arc::new(AtomicU64::new(0));
    {
        let heard = heard.clone();
        client
            .bind_event("Tick", move |_, _| {
                heard.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    }
    let big = tuple![Value::buffer(vec![1u8; 256 * 1024])];
    for _ in 0..64 {
        client.fire_server("Big", &big).unwrap();
    }
    // 16 MiB queued toward a server that reads nothing: the kernel holds a few, the client
    // the rest. The server's events must still get through.
    let mut tick = BytesMut::new();
    proto::encode_event(&mut tick, "Tick", &[], 64).unwrap();
    for _ in 0..100 {
        socket.write_all(&tick).unwrap();
    }
    wait_until("the client heard every event", || {
        heard.load(Ordering::Relaxed) == 100
    });
    assert!(client.is_connected());
}
