//! Per-player rate shaping, on an embedded server and on a relay: a player faster than its rate
//! is slowed down to it and loses nothing, a flooder is throttled without hurting the others or
//! costing the event loop more than the rate, and only a player that stays over its rate for
//! `rate_cut_after` is cut, with reason "rate limit".
//!
//! The scenarios run one at a time (they measure rates and latencies on a 2-core machine).

mod common;
mod raw;

use bytes::{Bytes, BytesMut};
use common::*;
use parking_lot::Mutex;
use raw::RawPlayer;
use remotefn::proto::{Frame, GoodbyeCode};
use remotefn::relay::{Relay, RelayConfig};
use remotefn::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE: u32 = 1000;
const BURST: u32 = 100;
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Where players connect: a server, or a relay in front of one. The game server binds `Echo`
/// and counts `Spam` events.
struct Target {
    players: SocketAddr,
    place: &'static str,
    /// The thread of the event loop players talk to.
    event_loop: &'static str,
    spam: Arc<AtomicU64>,
    _server: Server,
    _relay: Option<Relay>,
}

fn game_server(config: ServerConfig) -> (Server, Arc<AtomicU64>) {
    let server = Server::new(config).unwrap();
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    let spam = Arc::new(AtomicU64::new(0));
    let count = spam.clone();
    server
        .bind_event("Spam", move |_, _, _| {
            count.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    (server, spam)
}

impl Target {
    fn server(cut_after: Duration) -> Target {
        let (server, spam) = game_server(ServerConfig {
            limits: Limits {
                rate_per_sec: RATE,
                rate_burst: BURST,
                rate_cut_after: cut_after,
                ..Limits::default()
            },
            ..ServerConfig::default()
        });
        Target {
            players: server.listen("127.0.0.1:0").unwrap(),
            place: "",
            event_loop: "rf-server-react",
            spam,
            _server: server,
            _relay: None,
        }
    }

    fn relay(cut_after: Duration) -> Target {
        let relay = Relay::start(RelayConfig {
            players: "127.0.0.1:0".into(),
            hosts: "127.0.0.1:0".into(),
            secret: Some("s3cret".into()),
            limits: Limits {
                rate_per_sec: RATE,
                rate_burst: BURST,
                rate_cut_after: cut_after,
                ..Limits::default()
            },
            ..RelayConfig::default()
        })
        .unwrap();
        // The host does not shape relayed players (their relay does): its own limit is off.
        let (server, spam) = game_server(ServerConfig {
            limits: Limits {
                rate_per_sec: 0,
                ..Limits::default()
            },
            ..ServerConfig::default()
        });
        server
            .attach(&relay.hosts_addr().to_string(), "arena", Some("s3cret"))
            .unwrap();
        let players = relay.players_addr();
        let target = Target {
            players,
            place: "arena",
            event_loop: "rf-relay",
            spam,
            _server: server,
            _relay: Some(relay),
        };
        wait_until("the host to attach", || {
            Client::connect(players, target.client_config()).is_ok()
        });
        target
    }

    fn client_config(&self) -> ClientConfig {
        ClientConfig {
            place: self.place.into(),
            ..ClientConfig::default()
        }
    }

    fn player(&self) -> Client {
        Client::connect(self.players, self.client_config()).expect("connect")
    }
}

/// CPU time (user + system) the thread named `name` of this process has used.
fn thread_cpu(name: &str) -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 3rd field, utime the 14th.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() * 99 / 100]
}

/// `calls` sequential echo calls, 250 a second (well within the rate); their round trips.
fn latencies(client: &Client, calls: usize) -> Vec<Duration> {
    (0..calls)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(4));
            let started = Instant::now();
            let got = client
                .invoke_server("Echo", &tuple![i as f64], Some(PATIENCE))
                .expect("a well-behaved player's call failed");
            assert_eq!(got, tuple![i as f64]);
            started.elapsed()
        })
        .collect()
}

/// Four threads of one player, together offering three times its rate for five seconds, each
/// call waiting for its answer (as a game's would). Every call is answered, and from the first
/// second on the player gets its rate, within 10%.
fn fast_player_is_slowed_to_its_rate_and_loses_nothing(target: &Target) {
    const THREADS: u32 = 4;
    const RUN: Duration = Duration::from_secs(5);
    let client = target.player();
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = client.handle();
            std::thread::spawn(move || {
                let per_thread = f64::from(3 * RATE / THREADS);
                let mut done = Vec::new();
                let mut i = 0u64;
                while started.elapsed() < RUN {
                    let due = started + Duration::from_secs_f64(i as f64 / per_thread);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let arg = tuple![f64::from(t), i as f64];
                    let got = c
                        .invoke_server("Echo", &arg, Some(PATIENCE))
                        .expect("a call of the fast player failed");
                    assert_eq!(got, arg);
                    done.push(started.elapsed());
                    i += 1;
                }
                done
            })
        })
        .collect();
    let done: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let steady = done
        .iter()
        .filter(|&&t| t >= Duration::from_secs(1) && t < RUN)
        .count() as f64;
    let expected = f64::from(RATE) * (RUN.as_secs_f64() - 1.0);
    eprintln!(
        "{}: {} calls in {RUN:?}, {steady} in the last 4 s (rate allows {expected})",
        target.event_loop,
        done.len()
    );
    assert!(
        (steady - expected).abs() <= expected * 0.1,
        "{steady} calls answered in the last 4 s; the rate allows {expected}"
    );
    // Still connected: it was slowed, not cut.
    assert!(client.invoke_server("Echo", &[], Some(PATIENCE)).is_ok());
}

/// Sends `Spam` events at a hundred times the rate until `stop`; returns the player.
fn flood(target: &Target, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<RawPlayer> {
    let (mut flooder, _) = RawPlayer::handshake_to(target.players, target.place);
    std::thread::spawn(move || {
        let mut batch = BytesMut::new();
        for _ in 0..RATE {
            Frame::Event {
                name: Bytes::from_static(b"Spam"),
                args: Bytes::from_static(&[0]),
            }
            .encode(&mut batch);
        }
        flooder
            .socket
            .set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let started = Instant::now();
        let mut sent = 0u32;
        while !stop.load(Ordering::Relaxed) {
            // A second's worth every 10 ms, as far as the socket takes it (a write that times
            // out is the server pushing back).
            let due = started + Duration::from_millis(10) * sent;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let _ = std::io::Write::write_all(&mut flooder.socket, &batch);
            sent += 1;
        }
        flooder
    })
}

fn flooder_is_throttled_and_others_keep_their_latency(target: &Target) {
    const FLOOD: Duration = Duration::from_secs(3);
    let good = target.player();
    latencies(&good, 50); // warm up
    let quiet = p99(latencies(&good, 300));

    let stop = Arc::new(AtomicBool::new(false));
    let spam_before = target.spam.load(Ordering::Relaxed);
    let cpu_before = thread_cpu(target.event_loop);
    let started = Instant::now();
    let flooder = flood(target, stop.clone());
    let mut loaded = Vec::new();
    while started.elapsed() < FLOOD {
        loaded.extend(latencies(&good, 25));
    }
    let took = started.elapsed();
    let (spam, cpu) = (
        target.spam.load(Ordering::Relaxed) - spam_before,
        thread_cpu(target.event_loop) - cpu_before,
    );
    stop.store(true, Ordering::Relaxed);
    let mut flooder = flooder.join().unwrap();
    let loaded = p99(loaded);

    eprintln!(
        "{}: {spam} flood events served in {took:?}, event loop CPU {cpu:?}, p99 {loaded:?} \
         (quiet {quiet:?})",
        target.event_loop
    );
    // Served at its rate, no more.
    let allowed = f64::from(RATE) * took.as_secs_f64() + f64::from(BURST);
    assert!(
        spam as f64 <= allowed * 1.1,
        "{spam} events of the flooder served in {took:?}; the rate allows {allowed}"
    );
    assert!(
        spam as f64 >= allowed * 0.5,
        "{spam} events served: throttled far below its rate"
    );
    // The event loop spent little on it: at a hundred times the rate, unthrottled, it would be
    // busy all the time.
    assert!(
        cpu < took / 4,
        "the event loop used {cpu:?} of CPU in {took:?} of flood"
    );
    // Everyone else is served as before. 5 ms are allowed for scheduling noise: on the 2-core
    // test machine, with the other tests of this file running, a p99 of 3-4 ms (a scheduler
    // slice) shows up quiet or flooded, on either target, with or without the flood.
    assert!(
        loaded <= (quiet * 2).max(quiet + Duration::from_millis(5)),
        "p99 {loaded:?} under the flood against {quiet:?} quiet"
    );
    // Throttled, not cut (its cut_after is off).
    flooder.socket.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(std::io::Read::read(&mut flooder.socket, &mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the flooder was disconnected"
    );
}

/// A player sending five seconds' worth at once stays over its rate the whole time: cut after
/// `rate_cut_after` (1 s here), with the reason; another player is unaffected.
fn player_over_its_rate_too_long_is_cut(target: &Target) {
    let good = target.player();
    let (mut flooder, _) = RawPlayer::handshake_to(target.players, target.place);
    let mut burst = BytesMut::new();
    for _ in 0..5 * RATE {
        Frame::Event {
            name: Bytes::from_static(b"Spam"),
            args: Bytes::from_static(&[0]),
        }
        .encode(&mut burst);
    }
    let started = Instant::now();
    flooder.send(&burst);
    let (code, reason) = flooder.goodbye().expect("a goodbye");
    let after = started.elapsed();
    assert_eq!(code, GoodbyeCode::Limit);
    assert!(reason.starts_with("rate limit"), "{reason}");
    assert!(
        after >= Duration::from_millis(900),
        "cut after {after:?}, before rate_cut_after"
    );
    assert_eq!(latencies(&good, 20).len(), 20);
}

#[test]
fn a_fast_player_is_slowed_to_its_rate_and_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock();
    fast_player_is_slowed_to_its_rate_and_loses_nothing(&Target::server(Duration::ZERO));
    fast_player_is_slowed_to_its_rate_and_loses_nothing(&Target::relay(Duration::ZERO));
}

#[test]
fn a_flooder_is_throttled_and_others_keep_their_latency() {
    let _serial = ONE_AT_A_TIME.lock();
    flooder_is_throttled_and_others_keep_their_latency(&Target::server(Duration::ZERO));
    flooder_is_throttled_and_others_keep_their_latency(&Target::relay(Duration::ZERO));
}

#[test]
fn a_player_over_its_rate_for_rate_cut_after_is_cut() {
    let _serial = ONE_AT_A_TIME.lock();
    let cut_after = Duration::from_secs(1);
    player_over_its_rate_too_long_is_cut(&Target::server(cut_after));
    player_over_its_rate_too_long_is_cut(&Target::relay(cut_after));
}
