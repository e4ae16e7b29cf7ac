//! Helpers shared by the integration tests.
#![allow(dead_code)]

use remotefn::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `remotefn relay` on ephemeral loopback ports, with the hosts' secret "s3".
pub const RELAY_ON_EPHEMERAL_PORTS: [&str; 7] = [
    "relay",
    "--players",
    "127.0.0.1:0",
    "--hosts",
    "127.0.0.1:0",
    "--secret",
    "s3",
];

/// Generous bound on any wait in a test: proves "does not hang", never measures speed.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1 with an ephemeral port, `Echo` bound.
pub fn echo_server(config: ServerConfig) -> (Server, SocketAddr) {
    let server = Server::new(config).expect("server");
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    let addr = server.listen("127.0.0.1:0").expect("listen");
    (server, addr)
}

/// A relay on ephemeral loopback ports whose hosts present "s3cret".
pub fn relay_for_tests() -> Relay {
    Relay::start(relay_config_for_tests()).expect("relay")
}

/// The config of [`relay_for_tests`].
pub fn relay_config_for_tests() -> RelayConfig {
    RelayConfig {
        players: "127.0.0.1:0".into(),
        hosts: "127.0.0.1:0".into(),
        secret: Some("s3cret".into()),
        ..RelayConfig::default()
    }
}

pub fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr, ClientConfig::default()).expect("connect")
}

/// Polls `cond` until it holds; panics after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A well-behaved player calling `Echo` every 2 ms (a few hundred calls a second, within any
/// sane rate limit) until `stop`; every call must succeed. `ok` counts them.
pub fn steady_caller(
    client: ClientHandle,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let got = client
                .invoke_server("Echo", &tuple![i as f64], Some(PATIENCE))
                .expect("a good call failed");
            assert_eq!(got, tuple![i as f64]);
            ok.fetch_add(1, Ordering::Relaxed);
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}
