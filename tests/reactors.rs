//! A server on several event loops: players dealt between them, and every operation on a
//! player reaching the loop that owns it. (The semantic suite runs on two loops too:
//! tests/semantics.rs.)

mod common;

use common::*;
use remotefn::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn patient() -> Option<Duration> {
    Some(PATIENCE)
}

fn on_loops(reactors: usize) -> ServerConfig {
    ServerConfig {
        reactors,
        ..ServerConfig::default()
    }
}

#[test]
fn players_are_dealt_to_every_loop_and_reached_on_theirs() {
    let (server, addr) = echo_server(on_loops(3));
    server
        .bind_inline("Where", |player, _| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            Ok::<_, String>(tuple![player.get() as f64, name])
        })
        .unwrap();
    let clients: Vec<Client> = (0..6).map(|_| connect(addr)).collect();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut loops = BTreeSet::new();
    for (i, c) in clients.iter().enumerate() {
        let got = c.invoke_server("Where", &[], patient()).unwrap();
        assert_eq!(got[0], Value::Number(c.player_id().get() as f64));
        loops.insert(got[1].as_str().unwrap().to_owned());
        c.bind("Name", move |_, _| Ok::<_, String>(tuple![i as f64]))
            .unwrap();
        let tx = tx.clone();
        c.bind_event("News", move |_, args| {
            let _ = tx.send((i, args));
        })
        .unwrap();
    }
    let want: BTreeSet<String> = [
        "rf-server-reactor",
        "rf-server-reactor-1",
        "rf-server-reactor-2",
    ]
    .map(String::from)
    .into();
    assert_eq!(loops, want, "six players over three loops");
    for (i, c) in clients.iter().enumerate() {
        let got = server
            .invoke_client(c.player_id(), "Name", &[], patient())
            .unwrap();
        assert_eq!(got, tuple![i as f64]);
        server
            .fire_client(c.player_id(), "News", &tuple!["one"])
            .unwrap();
    }
    server.fire_all_clients("News", &tuple!["all"]).unwrap();
    let mut heard: Vec<(usize, Tuple)> = (0..12)
        .map(|_| rx.recv_timeout(PATIENCE).expect("every event arrives"))
        .collect();
    heard.sort_by_key(|(i, args)| (*i, args[0].as_str().map(str::to_owned)));
    for (i, pair) in heard.chunks(2).enumerate() {
        assert_eq!(pair[0], (i, tuple!["all"]));
        assert_eq!(pair[1], (i, tuple!["one"]));
    }
    assert_eq!(server.player_count(), 6);
    // Kicking a player on each loop: its connection ends, the others keep being served.
    for c in &clients[..3] {
        server.kick(c.player_id(), "bye").unwrap();
    }
    wait_until("three players left", || server.player_count() == 3);
    for c in &clients[3..] {
        assert_eq!(
            c.invoke_server("Echo", &tuple![1.0], patient()).unwrap(),
            tuple![1.0]
        );
    }
    let stats = server.stats();
    assert_eq!(stats.connections, 6);
    assert_eq!(stats.kicks, 3);
    assert_eq!(stats.calls_in, 9, "the counters of every loop are summed");
    assert_eq!(stats.calls_out, 6);
}

#[test]
fn relayed_players_and_direct_ones_share_a_server_on_several_loops() {
    let relay = relay_for_tests();
    let (server, addr) = echo_server(on_loops(2));
    server
        .attach(&relay.hosts_addr().to_string(), "arena", Some("s3cret"))
        .unwrap();
    let config = ClientConfig {
        place: "arena".into(),
        ..ClientConfig::default()
    };
    let relayed: Vec<Client> = (0..3)
        .map(|_| Client::connect(relay.players_addr(), config.clone()).unwrap())
        .collect();
    let direct: Vec<Client> = (0..3).map(|_| connect(addr)).collect();
    for c in relayed.iter().chain(&direct) {
        c.bind("Ping", |_, args| Ok::<_, String>(args)).unwrap();
        assert_eq!(
            c.invoke_server("Echo", &tuple!["x"], patient()).unwrap(),
            tuple!["x"]
        );
        let back = server
            .invoke_client(c.player_id(), "Ping", &tuple![2.0], patient())
            .unwrap();
        assert_eq!(back, tuple![2.0]);
    }
    assert_eq!(server.player_count(), 6);
}

#[test]
fn the_loop_count_is_checked() {
    for bad in [0, 129] {
        let err = Server::new(on_loops(bad)).err().expect("refused");
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("reactors must be 1 to 128")),
            "{err:?}"
        );
    }
    assert!(Server::new(on_loops(128)).is_ok());
}

#[test]
fn a_relay_on_four_loops_serves_each_place_whole() {
    let relay = Relay::start(RelayConfig {
        reactors: 4,
        ..relay_config_for_tests()
    })
    .unwrap();
    let places: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let hosts: Vec<Server> = places
        .iter()
        .map(|place| {
            let server = Server::new(ServerConfig::default()).unwrap();
            let name = place.clone();
            server
                .bind("Place", move |_, _, _| {
                    Ok::<_, String>(tuple![name.clone()])
                })
                .unwrap();
            server
                .attach(&relay.hosts_addr().to_string(), place, Some("s3cret"))
                .unwrap();
            server
        })
        .collect();
    let mut players = Vec::new();
    for place in &places {
        for _ in 0..2 {
            let config = ClientConfig {
                place: place.clone(),
                ..ClientConfig::default()
            };
            let c = Client::connect(relay.players_addr(), config).unwrap();
            c.bind("Back", |_, args| Ok::<_, String>(args)).unwrap();
            players.push((place.clone(), c));
        }
    }
    for (i, (place, c)) in players.iter().enumerate() {
        let got = c.invoke_server("Place", &[], patient()).unwrap();
        assert_eq!(
            got,
            tuple![place.as_str()],
            "player {i} reached its place's host"
        );
        let host = &hosts[i / 2];
        let back = host
            .invoke_client(c.player_id(), "Back", &tuple![i as f64], patient())
            .unwrap();
        assert_eq!(back, tuple![i as f64]);
    }
    for host in &hosts {
        assert_eq!(host.player_count(), 2);
    }
    // A second host for a place is refused on that place's loop, wherever it connected.
    let second = Server::new(ServerConfig::default()).unwrap();
    let err = second
        .attach(&relay.hosts_addr().to_string(), "p3", Some("s3cret"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Rejected(m) if m.contains("already")),
        "{err:?}"
    );
    relay.shutdown();
    for (_, c) in &players {
        wait_until("the relay's goodbye", || !c.is_connected());
    }
}

#[test]
fn a_client_whose_loop_sleeps_at_once_calls_and_is_called() {
    let (server, addr) = echo_server(ServerConfig::default());
    let config = ClientConfig {
        busy_poll: Duration::ZERO,
        ..ClientConfig::default()
    };
    let client = Client::connect(addr, config).unwrap();
    client
        .bind("Twice", |_, args| {
            Ok::<_, String>(tuple![args[0].as_number().unwrap_or(0.0) * 2.0])
        })
        .unwrap();
    for i in 0..20 {
        let echoed = client
            .invoke_server("Echo", &tuple![i as f64], patient())
            .unwrap();
        assert_eq!(echoed, tuple![i as f64]);
        let doubled = server
            .invoke_client(client.player_id(), "Twice", &tuple![i as f64], patient())
            .unwrap();
        assert_eq!(doubled, tuple![2.0 * i as f64]);
    }
}

/// A busy-poll window past the bound is refused before connecting, with the rule the C setter
/// applies; the bound itself is taken.
#[test]
fn a_client_busy_poll_window_past_its_bound_is_refused() {
    let (_server, addr) = echo_server(ServerConfig::default());
    let too_long = ClientConfig {
        busy_poll: MAX_BUSY_POLL + Duration::from_micros(1),
        ..ClientConfig::default()
    };
    match Client::connect(addr, too_long) {
        Err(Error::InvalidArgument(why)) => assert!(why.contains("busy poll"), "{why}"),
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    let longest = ClientConfig {
        busy_poll: MAX_BUSY_POLL,
        ..ClientConfig::default()
    };
    Client::connect(addr, longest).unwrap();
}
