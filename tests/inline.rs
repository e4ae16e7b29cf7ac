//! Handlers bound inline: run on the event loop as calls arrive, with the same semantics as
//! handlers on workers (results, errors, the invoking player), and refusing to block.

mod common;
mod raw;

use common::*;
use parking_lot::Mutex;
use remotefn::*;
use std::sync::Arc;
use std::time::Duration;

fn patient() -> Option<Duration> {
    Some(PATIENCE)
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

#[test]
fn an_inline_handler_answers_on_the_event_loop_with_the_players_id_and_its_errors() {
    let (server, addr) = echo_server(ServerConfig::default());
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    let seen = ran_on.clone();
    server
        .bind_inline("Add", move |player, args| {
            seen.lock().push(thread_name());
            let number = |i: usize| args.get(i).and_then(Value::as_number);
            let (a, b) = (number(0), number(1));
            match (a, b) {
                (Some(a), Some(b)) => Ok(tuple![a + b, player.get() as f64]),
                _ => Err("Add takes two numbers"),
            }
        })
        .unwrap();
    server
        .bind_inline("Panic", |_, _| -> Result<Tuple, String> {
            panic!("inline boom")
        })
        .unwrap();
    let client = connect(addr);
    let got = client
        .invoke_server("Add", &tuple![2.0, 3.5], patient())
        .unwrap();
    assert_eq!(got, tuple![5.5, client.player_id().get() as f64]);
    let err = client
        .invoke_server("Add", &tuple!["x"], patient())
        .unwrap_err();
    assert_eq!(err, Error::Remote("Add takes two numbers".into()));
    let err = client.invoke_server("Panic", &[], patient()).unwrap_err();
    assert!(
        matches!(&err, Error::Remote(m) if m.contains("inline boom")),
        "{err:?}"
    );
    // The loop survived the panic and still serves, inline and on workers.
    assert_eq!(
        client
            .invoke_server("Add", &tuple![1.0, 1.0], patient())
            .unwrap(),
        tuple![2.0, client.player_id().get() as f64]
    );
    assert_eq!(
        client
            .invoke_server("Echo", &tuple!["w"], patient())
            .unwrap(),
        tuple!["w"]
    );
    let names = ran_on.lock().clone();
    assert_eq!(names.len(), 3);
    assert!(
        names.iter().all(|n| n == "rf-server-reactor"),
        "inline handlers ran on {names:?}"
    );
}

#[test]
fn an_inline_handler_cannot_block_on_a_call_but_may_fire_events() {
    let (server, addr) = echo_server(ServerConfig::default());
    let handle = server.handle();
    let outcome = Arc::new(Mutex::new(None));
    let record = outcome.clone();
    server
        .bind_inline("CallBack", move |player, _| {
            let err = handle
                .invoke_client(player, "Anything", &[], Some(Duration::from_secs(5)))
                .unwrap_err();
            *record.lock() = Some(err);
            handle
                .fire_client(player, "Told", &tuple!["hi"])
                .map(|()| Tuple::new())
        })
        .unwrap();
    let client = connect(addr);
    let (tx, rx) = crossbeam_channel::unbounded();
    client
        .bind_event("Told", move |_, args| {
            let _ = tx.send(args);
        })
        .unwrap();
    assert_eq!(
        client.invoke_server("CallBack", &[], patient()).unwrap(),
        Tuple::new()
    );
    let err = outcome.lock().take().expect("the handler ran");
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("inline handler")),
        "{err:?}"
    );
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), tuple!["hi"]);
}

#[test]
fn calls_waiting_for_a_name_run_once_it_is_bound_inline_and_rebinding_moves_it() {
    let server = Server::new(ServerConfig::default()).unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let client = connect(addr);
    let early = {
        let c = client.handle();
        std::thread::spawn(move || c.invoke_server("Late", &tuple![1.0], patient()))
    };
    wait_until("the call waits for a handler", || {
        server.calls_waiting_for_handler() == 1
    });
    server
        .bind_inline("Late", |_, _| Ok::<_, String>(tuple!["inline"]))
        .unwrap();
    assert_eq!(early.join().unwrap().unwrap(), tuple!["inline"]);
    assert_eq!(
        client.invoke_server("Late", &[], patient()).unwrap(),
        tuple!["inline"]
    );
    server
        .bind("Late", |_, _, _| Ok::<_, String>(tuple![thread_name()]))
        .unwrap();
    let got = client.invoke_server("Late", &[], patient()).unwrap();
    let on = got[0].as_str().unwrap().to_owned();
    assert!(on.contains("worker"), "after bind() it runs on {on}");
    server.unbind("Late").unwrap();
    server
        .bind_inline("Late", |_, _| Ok::<_, String>(tuple!["again"]))
        .unwrap();
    server.unbind("Late").unwrap();
    assert!(server.unbind("Late").is_err(), "nothing bound any more");
    let err = client
        .invoke_server("Late", &[], Some(Duration::from_millis(200)))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[test]
fn inline_handlers_run_in_manual_dispatch_mode_without_dispatch_being_called() {
    let config = ServerConfig {
        dispatch: DispatchMode::Manual,
        ..ServerConfig::default()
    };
    let server = Server::new(config).unwrap();
    server
        .bind_inline("Now", |_, args| Ok::<_, String>(args))
        .unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let client = connect(addr);
    assert_eq!(
        client
            .invoke_server("Now", &tuple![7.0], patient())
            .unwrap(),
        tuple![7.0]
    );
}

#[test]
fn results_too_large_for_the_player_fail_the_call_with_the_reason() {
    let (server, addr) = echo_server(ServerConfig::default());
    let limit = Limits::client().max_payload as usize;
    server
        .bind_inline("Huge", move |_, _| {
            Ok::<_, String>(tuple![Value::Buffer(vec![0u8; limit + 1].into())])
        })
        .unwrap();
    let client = connect(addr);
    let err = client.invoke_server("Huge", &[], patient()).unwrap_err();
    assert!(
        matches!(&err, Error::Remote(m) if m.contains("exceeds the peer's limit")),
        "{err:?}"
    );
    assert_eq!(
        client
            .invoke_server("Echo", &tuple![1.0], patient())
            .unwrap(),
        tuple![1.0]
    );
}

#[test]
fn a_client_can_answer_the_servers_calls_inline() {
    let (server, addr) = echo_server(ServerConfig::default());
    let client = connect(addr);
    client
        .bind_inline("Ask", |args| {
            Ok::<_, String>(tuple![thread_name(), args[0].clone()])
        })
        .unwrap();
    let got = server
        .invoke_client(client.player_id(), "Ask", &tuple![3.0], patient())
        .unwrap();
    assert_eq!(got, tuple!["rf-client-reactor", 3.0]);
}

#[test]
fn a_game_server_behind_a_relay_answers_relayed_players_inline() {
    let relay = relay_for_tests();
    let server = Server::new(ServerConfig::default()).unwrap();
    server
        .bind_inline("Who", |player, args| {
            Ok::<_, String>(tuple![player.get() as f64, args[0].clone(), thread_name()])
        })
        .unwrap();
    server
        .attach(&relay.hosts_addr().to_string(), "inline", Some("s3cret"))
        .unwrap();
    let config = ClientConfig {
        place: "inline".into(),
        ..ClientConfig::default()
    };
    let player = Client::connect(relay.players_addr(), config).unwrap();
    for i in 0..50 {
        let got = player
            .invoke_server("Who", &tuple![i as f64], patient())
            .unwrap();
        let id = player.player_id().get() as f64;
        assert_eq!(got, tuple![id, i as f64, "rf-server-reactor"]);
    }
}

#[test]
fn malformed_arguments_to_an_inline_function_cut_only_their_sender() {
    use remotefn::proto::{Frame, GoodbyeCode};
    let (server, addr) = echo_server(ServerConfig::default());
    server
        .bind_inline("Now", |_, args| Ok::<_, String>(args))
        .unwrap();
    let (mut raw, _) = raw::RawPlayer::handshake(addr);
    let mut bad = bytes::BytesMut::new();
    Frame::Invoke {
        call: 1,
        name: bytes::Bytes::from_static(b"Now"),
        // A tuple of one value of a type that does not exist.
        args: bytes::Bytes::from_static(&[1, 0xEE]),
    }
    .encode(&mut bad);
    raw.send(&bad);
    let (code, reason) = raw.goodbye().expect("a goodbye");
    assert_eq!(code, GoodbyeCode::ProtocolError);
    assert!(
        reason.contains("malformed arguments to \"Now\""),
        "{reason}"
    );
    let client = connect(addr);
    assert_eq!(
        client
            .invoke_server("Now", &tuple![1.0], patient())
            .unwrap(),
        tuple![1.0]
    );
}
