//! A server's metrics: every outcome of a call counted under its function, the handler-time
//! histogram, the gauges; served over HTTP and scraped while players call; named like the
//! relay's.

mod common;
mod raw;

use common::{connect, http_get, wait_until};
use raw::RawPlayer;
use remotefn::{Limits, Server, ServerConfig, Tuple, Value};
use std::time::Duration;

const PATIENCE: Option<Duration> = Some(Duration::from_secs(10));

/// The value of the series `series` (name and labels, as written in the text), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn calls(text: &str, function: &str, outcome: &str) -> f64 {
    let series =
        format!(r#"remotefn_server_calls_total{{function="{function}",outcome="{outcome}"}}"#);
    value(text, &series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn handled(text: &str, function: &str) -> f64 {
    let series = format!(r#"remotefn_server_handler_seconds_count{{function="{function}"}}"#);
    value(text, &series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[test]
fn every_call_is_counted_under_its_function_by_outcome_with_its_handler_time() {
    let server = Server::new(ServerConfig {
        limits: Limits {
            queue_per_function: 1,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .unwrap();
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    server
        .bind("Fail", |_, _, _| Err::<Tuple, _>("no luck"))
        .unwrap();
    server
        .bind_inline("Add", |_, args| {
            let sum: f64 = args.iter().filter_map(Value::as_number).sum();
            Ok::<_, String>(Tuple(vec![Value::Number(sum)]))
        })
        .unwrap();
    server
        .bind_deferred("Later", |_, _, _, responder| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                let _ = responder.reply(Ok::<_, String>(Tuple::new()));
            });
        })
        .unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let player = connect(addr);
    for _ in 0..5 {
        player
            .invoke_server("Echo", &[Value::from("hi")], PATIENCE)
            .unwrap();
    }
    for _ in 0..2 {
        player
            .invoke_server("Add", &[Value::Number(1.0), Value::Number(2.0)], PATIENCE)
            .unwrap();
    }
    player.invoke_server("Fail", &[], PATIENCE).unwrap_err();
    player.invoke_server("Later", &[], PATIENCE).unwrap();
    // One call to an unbound name waits in its queue (of one); the next is refused.
    let waiting = player.handle();
    let waiter = std::thread::spawn(move || waiting.invoke_server("Nope", &[], PATIENCE));
    wait_until("a call waits for Nope", || {
        server.calls_waiting_for_handler() == 1
    });
    player.invoke_server("Nope", &[], PATIENCE).unwrap_err();
    // Undecodable arguments to Echo: refused before the handler, and the liar cut.
    let (mut liar, _) = RawPlayer::handshake(addr);
    liar.call_with_undecodable_args("Echo");
    while liar.next_frame().is_some() {}

    wait_until("the liar is cut", || {
        server.stats().disconnects_protocol == 1
    });
    let text = server.metrics();
    assert_eq!(calls(&text, "Echo", "ok"), 5.0);
    assert_eq!(calls(&text, "Echo", "invalid"), 1.0);
    assert_eq!(calls(&text, "Echo", "error"), 0.0);
    assert_eq!(handled(&text, "Echo"), 5.0, "a refused call ran no handler");
    assert_eq!(
        calls(&text, "Add", "ok"),
        2.0,
        "inline calls are counted too"
    );
    assert_eq!(handled(&text, "Add"), 2.0);
    assert_eq!(calls(&text, "Fail", "error"), 1.0);
    assert_eq!(handled(&text, "Fail"), 1.0);
    assert_eq!(calls(&text, "Later", "ok"), 1.0);
    // A deferred reply's time runs until the reply: at least the 30 ms it slept.
    let later = r#"remotefn_server_handler_seconds_sum{function="Later"}"#;
    assert!(value(&text, later).unwrap() >= 0.03, "{text}");
    let fast = r#"remotefn_server_handler_seconds_bucket{function="Later",le="0.0256"}"#;
    assert_eq!(value(&text, fast), Some(0.0), "{text}");
    assert_eq!(calls(&text, "(unbound)", "limit"), 1.0);
    assert!(
        !text.contains(r#"function="Nope""#),
        "names of unbound calls are not labels"
    );
    assert_eq!(
        value(&text, "remotefn_server_calls_waiting_for_handler"),
        Some(1.0)
    );
    assert_eq!(value(&text, "remotefn_server_players"), Some(1.0));
    assert_eq!(value(&text, "remotefn_server_connections_total"), Some(2.0));
    assert_eq!(
        value(
            &text,
            r#"remotefn_server_disconnects_total{reason="protocol"}"#
        ),
        Some(1.0)
    );
    assert!(value(&text, "remotefn_server_bytes_in_total").unwrap() > 0.0);

    // Binding Nope runs the call that waited, under Nope's own name from now on.
    server
        .bind("Nope", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    waiter.join().unwrap().unwrap();
    let text = server.metrics();
    assert_eq!(calls(&text, "Nope", "ok"), 1.0);
    assert_eq!(
        value(&text, "remotefn_server_calls_waiting_for_handler"),
        Some(0.0)
    );
}

#[test]
fn a_call_refused_because_every_reply_slot_is_taken_counts_as_limit() {
    let server = Server::new(ServerConfig {
        limits: Limits {
            max_pending_replies: 1,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let holding = held.clone();
    server
        .bind_deferred("Hold", move |_, _, _, responder| {
            holding.lock().unwrap().push(responder)
        })
        .unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let player = connect(addr);
    let first = player.handle();
    let waiting = std::thread::spawn(move || first.invoke_server("Hold", &[], PATIENCE));
    wait_until("the first call holds the slot", || {
        server.replies_pending() == 1
    });
    let refused = player.invoke_server("Hold", &[], PATIENCE).unwrap_err();
    assert!(refused.to_string().contains("await a reply"), "{refused}");
    let text = server.metrics();
    assert_eq!(calls(&text, "Hold", "limit"), 1.0);
    assert_eq!(handled(&text, "Hold"), 0.0, "neither has been answered");
    for responder in held.lock().unwrap().drain(..) {
        responder.reply(Ok::<_, String>(Tuple::new())).unwrap();
    }
    waiting.join().unwrap().unwrap();
    let text = server.metrics();
    assert_eq!(calls(&text, "Hold", "ok"), 1.0);
    assert_eq!(handled(&text, "Hold"), 1.0);
}

#[test]
fn the_metrics_endpoint_is_scraped_while_players_call() {
    const PLAYERS: usize = 8;
    const CALLS: usize = 300;
    let server = Server::new(ServerConfig::default()).unwrap();
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let endpoint = server.serve_metrics("127.0.0.1:0").unwrap();
    let players: Vec<_> = (0..PLAYERS).map(|_| connect(addr)).collect();
    let callers: Vec<_> = players
        .iter()
        .map(|p| {
            let p = p.handle();
            std::thread::spawn(move || {
                for i in 0..CALLS {
                    p.invoke_server("Echo", &[Value::Number(i as f64)], PATIENCE)
                        .unwrap();
                }
            })
        })
        .collect();
    // Scrape while they call: every scrape answers, and the count never goes back.
    let mut seen = 0.0;
    let mut scrapes = 0;
    while !callers.iter().all(|c| c.is_finished()) || scrapes < 3 {
        let (status, body) = http_get(endpoint.addr(), "/metrics");
        assert!(status.contains("200"), "{status}");
        let now = calls(&body, "Echo", "ok");
        assert!(now >= seen, "the count went from {seen} to {now}");
        assert_eq!(
            value(&body, "remotefn_server_players"),
            Some(PLAYERS as f64)
        );
        seen = now;
        scrapes += 1;
    }
    for c in callers {
        c.join().unwrap();
    }
    let (_, body) = http_get(endpoint.addr(), "/metrics");
    let total = (PLAYERS * CALLS) as f64;
    assert_eq!(calls(&body, "Echo", "ok"), total);
    assert_eq!(handled(&body, "Echo"), total);
    let inf = r#"remotefn_server_handler_seconds_bucket{function="Echo",le="+Inf"}"#;
    assert_eq!(value(&body, inf), Some(total));
    let (status, _) = http_get(endpoint.addr(), "/elsewhere");
    assert!(status.contains("404"), "{status}");

    drop(players);
    wait_until("the players are gone", || server.player_count() == 0);
    let (_, body) = http_get(endpoint.addr(), "/metrics");
    assert_eq!(value(&body, "remotefn_server_players"), Some(0.0));
    assert_eq!(
        value(
            &body,
            r#"remotefn_server_disconnects_total{reason="other"}"#
        ),
        Some(PLAYERS as f64)
    );
}

/// The names a dashboard reads from both: `remotefn_server_X` and `remotefn_relay_X` alike.
#[test]
fn the_server_and_the_relay_name_their_common_metrics_alike() {
    let relay = common::relay_for_tests();
    let server = Server::new(ServerConfig::default()).unwrap();
    let server_text = server.metrics();
    let relay_text = relay.metrics().render();
    let reasons = |text: &str, side: &str| -> Vec<String> {
        let prefix = format!("remotefn_{side}_disconnects_total{{reason=\"");
        text.lines()
            .filter_map(|l| Some(l.strip_prefix(&prefix)?.split('"').next()?.to_owned()))
            .collect()
    };
    let server_reasons = reasons(&server_text, "server");
    for reason in reasons(&relay_text, "relay") {
        assert!(
            server_reasons.contains(&reason),
            "the server has no reason {reason:?}"
        );
    }
    for common in [
        "players",
        "disconnects_total",
        "bytes_in_total",
        "bytes_out_total",
        "tls_handshakes_total",
    ] {
        for (text, side) in [(&server_text, "server"), (&relay_text, "relay")] {
            let family = format!("# TYPE remotefn_{side}_{common} ");
            assert!(text.contains(&family), "{side} has no {common}:\n{text}");
        }
    }
}
