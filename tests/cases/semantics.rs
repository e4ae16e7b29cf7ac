// The cases of tests/semantics.rs, included once per event loop count (`REACTORS`), and once
// more over TLS (`TLS`).

use super::common;
use common::*;
use parking_lot::Mutex;
use remotefn::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server configuration every case starts from: the defaults, on `REACTORS` loops, over
/// TLS when `TLS`.
fn server_config() -> ServerConfig {
    ServerConfig {
        reactors: REACTORS,
        tls: TLS.then(|| test_pki().server_tls()),
        ..ServerConfig::default()
    }
}

/// The client configuration every case starts from: the defaults, over TLS (trusting the test
/// CA) when `TLS`.
fn client_config() -> ClientConfig {
    ClientConfig {
        tls: TLS.then(|| test_pki().client_tls()),
        ..ClientConfig::default()
    }
}

/// A player with [`client_config`].
fn connect(addr: std::net::SocketAddr) -> Client {
    Client::connect(addr, client_config()).expect("connect")
}

fn patient() -> Option<Duration> {
    Some(PATIENCE)
}

#[test]
fn callee_errors_are_raised_at_the_caller_in_both_directions() {
    let (server, addr) = echo_server(server_config());
    server
        .bind("Fail", |_, _, args| {
            Err(format!("bad input: {:?}", args[0].as_str().unwrap()))
        })
        .unwrap();
    let client = connect(addr);
    let err = client
        .invoke_server("Fail", &tuple!["xyz"], patient())
        .unwrap_err();
    assert_eq!(err, Error::Remote("bad input: \"xyz\"".into()));

    client
        .bind("ClientFail", |_, _| Err::<Tuple, _>("client says no"))
        .unwrap();
    let player = client.player_id();
    let err = server
        .invoke_client(player, "ClientFail", &[], patient())
        .unwrap_err();
    assert_eq!(err, Error::Remote("client says no".into()));
}

#[test]
fn the_handler_gets_the_invoking_player() {
    let (server, addr) = echo_server(server_config());
    server
        .bind("WhoAmI", |_, player, _| {
            Ok::<_, String>(tuple![player.get() as f64])
        })
        .unwrap();
    let a = connect(addr);
    let b = connect(addr);
    assert_ne!(a.player_id(), b.player_id());
    for c in [&a, &b] {
        let got = c.invoke_server("WhoAmI", &[], patient()).unwrap();
        assert_eq!(got, tuple![c.player_id().get() as f64]);
    }
}

#[test]
fn a_client_that_disconnects_fails_the_pending_invoke_client_within_a_second() {
    let (server, addr) = echo_server(server_config());
    let client = connect(addr);
    // The client's handler never answers.
    client.bind_with_call_id("Hang", |_, _, _| {}).unwrap();
    let player = client.player_id();
    let handle = server.handle();
    let pending = std::thread::spawn(move || {
        let result = handle.invoke_client(player, "Hang", &[], None);
        (result, Instant::now())
    });
    wait_until("the call is in flight", || server.calls_in_flight() == 1);
    std::thread::sleep(Duration::from_millis(50));
    let dropped_at = Instant::now();
    drop(client);
    let (result, failed_at) = pending.join().unwrap();
    assert!(matches!(result, Err(Error::Disconnected(_))), "{result:?}");
    assert!(failed_at - dropped_at < Duration::from_secs(1));
    assert_eq!(server.calls_in_flight(), 0);
}

#[test]
fn a_server_that_shuts_down_fails_pending_calls_on_both_sides() {
    let (server, addr) = echo_server(server_config());
    server.bind_with_call_id("Hang", |_, _, _, _| {}).unwrap();
    let client = connect(addr);
    client.bind_with_call_id("HangToo", |_, _, _| {}).unwrap();
    let player = client.player_id();

    let c = client.handle();
    let client_call = std::thread::spawn(move || c.invoke_server("Hang", &[], None));
    let s = server.handle();
    let server_call = std::thread::spawn(move || s.invoke_client(player, "HangToo", &[], None));
    wait_until("both calls are in flight", || {
        server.calls_in_flight() == 1
            && client.calls_in_flight() == 1
            && server.replies_pending() == 1
    });
    server.shutdown();
    assert!(matches!(server_call.join().unwrap(), Err(Error::Closed(_))));
    let client_result = client_call.join().unwrap();
    assert!(
        matches!(client_result, Err(Error::Disconnected(_))),
        "{client_result:?}"
    );
    // Later calls fail fast instead of hanging.
    assert!(matches!(
        client.invoke_server("Echo", &[], None),
        Err(Error::Disconnected(_))
    ));
    assert!(matches!(
        server.invoke_client(player, "X", &[], None),
        Err(Error::Closed(_))
    ));
}

#[test]
fn closing_a_client_fails_its_own_pending_calls_with_closed() {
    let (server, addr) = echo_server(server_config());
    server.bind_with_call_id("Hang", |_, _, _, _| {}).unwrap();
    let client = connect(addr);
    let c = client.handle();
    let call = std::thread::spawn(move || c.invoke_server("Hang", &[], None));
    wait_until("the call is in flight", || client.calls_in_flight() == 1);
    client.close();
    assert!(matches!(call.join().unwrap(), Err(Error::Closed(_))));
}

#[test]
fn timeout_returns_timeout_and_the_late_reply_never_reaches_a_later_call() {
    let (server, addr) = echo_server(server_config());
    // Replies after the given number of milliseconds, from another thread.
    server
        .bind_deferred("Slow", |_, _, args, responder| {
            let ms = args[0].as_number().unwrap() as u64;
            let tag = args[1].clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                let _ = responder.reply(Ok::<_, String>(Tuple(vec![tag])));
            });
        })
        .unwrap();
    // One call slot: the second call reuses the slot the first timed out in.
    let config = ClientConfig {
        limits: Limits {
            max_calls_in_flight: 1,
            ..Limits::client()
        },
        ..client_config()
    };
    let client = Client::connect(addr, config).unwrap();
    let err = client
        .invoke_server(
            "Slow",
            &tuple![300, "first"],
            Some(Duration::from_millis(50)),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)));
    // The late "first" reply lands while this call waits on the same slot.
    let got = client
        .invoke_server("Slow", &tuple![600, "second"], patient())
        .unwrap();
    assert_eq!(got, tuple!["second"]);
    assert_eq!(client.calls_in_flight(), 0);
}

#[test]
fn calls_to_an_unbound_name_wait_for_a_handler_and_overflow_fails_at_once() {
    // 257 calls from one player at once: above the default bound on calls in flight.
    let config = ServerConfig {
        limits: Limits {
            max_inflight_per_player: 1024,
            ..Limits::default()
        },
        ..server_config()
    };
    let (server, addr) = echo_server(config);
    let client = connect(addr);
    let waiting: Vec<_> = (0..256)
        .map(|i| {
            let c = client.handle();
            std::thread::spawn(move || c.invoke_server("Later", &tuple![i], patient()))
        })
        .collect();
    wait_until("256 calls queued", || {
        server.calls_waiting_for_handler() == 256
    });
    let started = Instant::now();
    let err = client
        .invoke_server("Later", &tuple![999], patient())
        .unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err:?}");
    assert!(
        started.elapsed() < PATIENCE / 2,
        "the overflowing call must fail at once"
    );
    server
        .bind("Later", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    for (i, w) in waiting.into_iter().enumerate() {
        assert_eq!(w.join().unwrap().unwrap(), tuple![i]);
    }
    assert_eq!(server.calls_waiting_for_handler(), 0);
}

#[test]
fn nested_calls_complete_with_one_worker_on_each_side() {
    let config = ServerConfig {
        workers: 1,
        ..server_config()
    };
    let (server, addr) = echo_server(config);
    // Server handler invokes the client, whose handler invokes the server again.
    server
        .bind("Outer", |srv, player, args| {
            let middle = srv
                .invoke_client(player, "Middle", &args, Some(PATIENCE))
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(tuple![format!("outer({})", middle[0].as_str().unwrap())])
        })
        .unwrap();
    server
        .bind("Inner", |_, _, args| {
            Ok::<_, String>(tuple![format!("inner({})", args[0].as_str().unwrap())])
        })
        .unwrap();
    let client = Client::connect(
        addr,
        ClientConfig {
            workers: 1,
            ..client_config()
        },
    )
    .unwrap();
    client
        .bind("Middle", |c, args| {
            let inner = c
                .invoke_server("Inner", &args, Some(PATIENCE))
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(tuple![format!("middle({})", inner[0].as_str().unwrap())])
        })
        .unwrap();
    let got = client
        .invoke_server("Outer", &tuple!["x"], patient())
        .unwrap();
    assert_eq!(got, tuple!["outer(middle(inner(x)))"]);
}

#[test]
fn sixty_four_threads_sharing_one_client_each_get_their_own_answers() {
    let (_server, addr) = echo_server(server_config());
    let client = connect(addr);
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let c = client.handle();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let args = tuple![t, i, format!("thread {t} call {i}")];
                    assert_eq!(c.invoke_server("Echo", &args, patient()).unwrap(), args);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_handler_that_panics_is_an_error_at_the_caller_and_the_server_keeps_serving() {
    let (server, addr) = echo_server(ServerConfig {
        workers: 1,
        ..server_config()
    });
    server
        .bind("Boom", |_, _, _| -> Result<Tuple, String> {
            panic!("kaboom")
        })
        .unwrap();
    let client = connect(addr);
    for _ in 0..3 {
        let err = client.invoke_server("Boom", &[], patient()).unwrap_err();
        let Error::Remote(msg) = err else {
            panic!("expected a remote error, got {err:?}")
        };
        assert!(msg.contains("panicked") && msg.contains("kaboom"), "{msg}");
        assert_eq!(
            client.invoke_server("Echo", &tuple![1], patient()).unwrap(),
            tuple![1]
        );
    }
}

#[test]
fn deferred_replies_from_another_thread_and_double_replies_are_refused() {
    let (server, addr) = echo_server(server_config());
    let completed = Arc::new(Mutex::new(Vec::new()));
    let log = completed.clone();
    server
        .bind_with_call_id("Later", move |srv, _, args, call| {
            let srv = srv.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                srv.reply(call, Ok(&args)).unwrap();
                // A second completion changes nothing and says so.
                let again = srv.reply(call, Ok(&[]));
                log.lock().push(again);
            });
        })
        .unwrap();
    let client = connect(addr);
    assert_eq!(
        client
            .invoke_server("Later", &tuple!["v"], patient())
            .unwrap(),
        tuple!["v"]
    );
    wait_until("the second reply was tried", || {
        !completed.lock().is_empty()
    });
    assert!(matches!(
        completed.lock()[0],
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        server.reply(CallId::from_raw(0xdead_beef), Ok(&[])),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_dropped_responder_answers_with_an_error() {
    let (server, addr) = echo_server(server_config());
    server
        .bind_deferred("Forgetful", |_, _, _, _responder| {})
        .unwrap();
    let client = connect(addr);
    let err = client
        .invoke_server("Forgetful", &[], patient())
        .unwrap_err();
    assert!(matches!(err, Error::Remote(_)));
}

#[test]
fn manual_dispatch_runs_handlers_on_the_pumping_thread() {
    let config = ServerConfig {
        dispatch: DispatchMode::Manual,
        ..server_config()
    };
    let server = Server::new(config).unwrap();
    let main_thread = std::thread::current().id();
    server
        .bind("Where", move |_, _, _| {
            Ok::<_, String>(tuple![std::thread::current().id() == main_thread])
        })
        .unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let client = connect(addr);
    // The join is queued before the player is welcomed, but with no hook it calls nothing: a
    // game loop pumping "until n callbacks ran" must not be told one did.
    assert_eq!(server.dispatch(16, Duration::from_millis(200)).unwrap(), 0);
    let c = client.handle();
    let call = std::thread::spawn(move || c.invoke_server("Where", &[], patient()));
    let deadline = Instant::now() + PATIENCE;
    let mut ran = 0;
    while !call.is_finished() && Instant::now() < deadline {
        ran += server.dispatch(16, Duration::from_millis(20)).unwrap();
    }
    assert_eq!(call.join().unwrap().unwrap(), tuple![true]);
    assert_eq!(ran, 1, "exactly the one handler ran");
    drop(client);
    wait_until("the player to leave", || server.players().is_empty());
    assert_eq!(server.dispatch(16, Duration::from_millis(200)).unwrap(), 0);
    // With hooks registered, their runs are counted.
    let joined = Arc::new(AtomicUsize::new(0));
    let seen = joined.clone();
    server.on_player_added(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let _client = connect(addr);
    let deadline = Instant::now() + PATIENCE;
    let mut ran = 0;
    while ran == 0 && Instant::now() < deadline {
        ran += server.dispatch(16, Duration::from_millis(20)).unwrap();
    }
    assert_eq!((ran, joined.load(Ordering::SeqCst)), (1, 1));
    // Worker-mode servers refuse dispatch().
    let (workers, _) = echo_server(server_config());
    assert!(matches!(
        workers.dispatch(1, Duration::ZERO),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn events_arrive_in_order_both_ways_and_fire_all_reaches_everyone() {
    let (server, addr) = echo_server(server_config());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    server
        .bind_event("Tick", move |_, _, args| {
            log.lock().push(args[0].as_number().unwrap() as u32)
        })
        .unwrap();
    let client = connect(addr);
    for i in 0..2000u32 {
        client.fire_server("Tick", &tuple![i]).unwrap();
    }
    wait_until("2000 events", || seen.lock().len() == 2000);
    assert_eq!(*seen.lock(), (0..2000).collect::<Vec<_>>());

    let clients: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    let counters: Vec<_> = clients
        .iter()
        .map(|c| {
            let got = Arc::new(Mutex::new(Vec::new()));
            let log = got.clone();
            c.bind_event("News", move |_, args| {
                log.lock().push(args[0].as_number().unwrap() as u32)
            })
            .unwrap();
            got
        })
        .collect();
    wait_until("all players joined", || server.player_count() == 4);
    for i in 0..500u32 {
        server.fire_all_clients("News", &tuple![i]).unwrap();
    }
    server
        .fire_client(clients[0].player_id(), "News", &tuple![500])
        .unwrap();
    wait_until("every client got every event", || {
        counters[0].lock().len() == 501
            && counters[1].lock().len() == 500
            && counters[2].lock().len() == 500
    });
    for got in &counters {
        let got = got.lock();
        assert!(
            got.windows(2).all(|w| w[0] + 1 == w[1]),
            "out of order: {got:?}"
        );
    }
}

#[test]
fn player_lifecycle_kick_and_counts() {
    let (server, addr) = echo_server(server_config());
    let added = Arc::new(AtomicUsize::new(0));
    let removed = Arc::new(AtomicUsize::new(0));
    let (a, r) = (added.clone(), removed.clone());
    server.on_player_added(move |_, _| {
        a.fetch_add(1, Ordering::SeqCst);
    });
    server.on_player_removing(move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let first = connect(addr);
    let second = connect(addr);
    wait_until("two players added", || added.load(Ordering::SeqCst) == 2);
    assert_eq!(server.player_count(), 2);
    let mut ids = server.players();
    ids.sort();
    let mut expected = vec![first.player_id(), second.player_id()];
    expected.sort();
    assert_eq!(ids, expected);

    server.kick(first.player_id(), "cheating").unwrap();
    wait_until("one player removed", || removed.load(Ordering::SeqCst) == 1);
    assert_eq!(server.player_count(), 1);
    let err = first.invoke_server("Echo", &[], patient()).unwrap_err();
    let Error::Disconnected(why) = err else {
        panic!("expected Disconnected, got {err:?}")
    };
    assert!(why.contains("cheating"), "{why}");
    assert!(!first.is_connected());
    assert_eq!(
        server.kick(first.player_id(), "again"),
        Err(Error::NotFound(first.player_id()))
    );
    let stranger = PlayerId::from_raw(999);
    assert!(matches!(
        server.invoke_client(stranger, "X", &[], None),
        Err(Error::NotFound(p)) if p == stranger
    ));
    // The other player is unaffected.
    assert_eq!(
        second.invoke_server("Echo", &tuple![2], patient()).unwrap(),
        tuple![2]
    );
}

#[test]
fn the_authenticator_accepts_with_an_identity_or_rejects_with_a_reason() {
    let (server, addr) = echo_server(server_config());
    server.set_authenticator(|req| match req.token.as_ref() {
        b"good" => Ok(Identity {
            user_id: 42,
            name: "alice".into(),
        }),
        _ => Err(format!("bad token for place {:?}", req.place)),
    });
    let good = Client::connect(
        addr,
        ClientConfig {
            token: "good".into(),
            ..client_config()
        },
    )
    .unwrap();
    let info = server.player_info(good.player_id()).unwrap();
    assert_eq!(
        info.identity,
        Identity {
            user_id: 42,
            name: "alice".into()
        }
    );
    let bad = Client::connect(
        addr,
        ClientConfig {
            token: "bad".into(),
            place: "arena".into(),
            ..client_config()
        },
    );
    assert_eq!(
        bad.err(),
        Some(Error::Rejected("bad token for place \"arena\"".into()))
    );
    assert_eq!(server.player_count(), 1);
}

#[test]
fn unbinding_makes_later_calls_wait_for_a_new_handler() {
    let (server, addr) = echo_server(server_config());
    let client = connect(addr);
    server.unbind("Echo").unwrap();
    assert!(matches!(
        server.unbind("Echo"),
        Err(Error::InvalidArgument(_))
    ));
    let c = client.handle();
    let call = std::thread::spawn(move || c.invoke_server("Echo", &tuple!["again"], patient()));
    wait_until("the call waits", || server.calls_waiting_for_handler() == 1);
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    assert_eq!(call.join().unwrap().unwrap(), tuple!["again"]);
}

#[test]
fn every_value_type_round_trips_through_a_call() {
    let (_server, addr) = echo_server(server_config());
    let client = connect(addr);
    let mut deep = Value::from("bottom");
    for _ in 0..32 {
        deep = Value::Array(vec![deep]);
    }
    let args = tuple![
        Value::Nil,
        true,
        f64::NAN,
        f64::NEG_INFINITY,
        -0.0,
        Value::string(&b"nul\0inside"[..]),
        Value::buffer(vec![0u8, 1, 255]),
        Vector2 { x: 1.0, y: 2.0 },
        Vector3 {
            x: 1.0,
            y: 2.0,
            z: 3.0
        },
        CFrame::default(),
        Color3 {
            r: 0.1,
            g: 0.2,
            b: 0.3
        },
        InstanceRef(u64::MAX),
        Value::dictionary([
            ("hp", Value::from(100)),
            ("tags", Value::from(vec!["a", "b"]))
        ]),
        Value::Array(vec![]),
        deep,
    ];
    assert_eq!(
        client.invoke_server("Echo", &args, patient()).unwrap(),
        args
    );
    assert_eq!(
        client.invoke_server("Echo", &[], patient()).unwrap(),
        tuple![]
    );
}

#[test]
fn local_misuse_is_an_error_not_a_crash() {
    let (server, addr) = echo_server(ServerConfig {
        limits: Limits {
            max_payload: 1024,
            ..Limits::default()
        },
        ..server_config()
    });
    let client = connect(addr);
    // The client learned the server's limit in the handshake and refuses locally.
    let big = tuple![Value::buffer(vec![0u8; 4096])];
    let err = client.invoke_server("Echo", &big, patient()).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err:?}");
    assert!(matches!(
        client.fire_server("E", &big),
        Err(Error::Limit(_))
    ));
    assert_eq!(
        client.invoke_server("Echo", &tuple![1], patient()).unwrap(),
        tuple![1]
    );
    let too_deep = {
        let mut v = Value::Nil;
        for _ in 0..100 {
            v = Value::Array(vec![v]);
        }
        tuple![v]
    };
    let client = connect(addr);
    assert!(matches!(
        client.invoke_server("Echo", &too_deep, None),
        Err(Error::InvalidArgument(_))
    ));
    let long_name = "x".repeat(70_000);
    assert!(matches!(
        client.invoke_server(&long_name, &[], None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        server.fire_all_clients("E", &too_deep),
        Err(Error::InvalidArgument(_))
    ));
}
