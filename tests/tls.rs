//! TLS: the errors a user can act on, relay routing over TLS with host certificates,
//! certificate reload under load, resumption, and hostile connections to a TLS port. (The
//! semantic suite also runs over TLS: tests/semantics.rs, `over_tls`.)

mod common;
mod raw;

use common::*;
use remotefn::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tls_server(tls: ServerTlsConfig) -> (Server, SocketAddr) {
    echo_server(ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    })
}

fn tls_client(tls: ClientTlsConfig) -> ClientConfig {
    ClientConfig {
        tls: Some(tls),
        connect_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

/// The TLS error of a connection that must fail, checked to come well within its timeout.
fn tls_failure(addr: impl std::fmt::Display, config: ClientConfig) -> TlsError {
    let started = Instant::now();
    let err = Client::connect(addr, config)
        .err()
        .expect("the connection must fail");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    match err {
        Error::Tls(tls) => tls,
        other => panic!("not a TLS error: {other:?}"),
    }
}

#[test]
fn a_server_whose_ca_is_not_trusted_is_refused_with_a_reason() {
    let (server, addr) = tls_server(test_pki().server_tls());
    // The server's own certificate is not a CA: nothing signed by a trusted CA.
    let err = tls_failure(
        addr,
        tls_client(ClientTlsConfig::with_ca_file(&test_pki().cert)),
    );
    assert_eq!(err.kind(), TlsErrorKind::UntrustedCertificate, "{err}");
    assert!(
        err.to_string().contains("not signed by a trusted CA"),
        "{err}"
    );
    // The server counts the handshake its player abandoned, and keeps serving.
    wait_until("the failure is counted", || {
        server.stats().tls_failures == 1
    });
    let good = Client::connect(addr, tls_client(test_pki().client_tls())).unwrap();
    assert_eq!(
        good.invoke_server("Echo", &tuple![1.0], Some(PATIENCE))
            .unwrap(),
        tuple![1.0]
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_with_a_reason() {
    let (_server, addr) = tls_server(test_pki().server_tls());
    let config = ClientTlsConfig {
        server_name: Some("game.example.com".into()),
        ..test_pki().client_tls()
    };
    let err = tls_failure(addr, tls_client(config));
    assert_eq!(err.kind(), TlsErrorKind::WrongServerName, "{err}");
    // The name is taken from the address when not given: "localhost" is on the certificate.
    let by_name = format!("localhost:{}", addr.port());
    Client::connect(by_name, tls_client(test_pki().client_tls())).expect("localhost verifies");
}

#[test]
fn an_expired_certificate_is_refused_with_a_reason() {
    let (cert, key) = test_pki().issue("expired", &["127.0.0.1"], Validity::Expired, false);
    let (_server, addr) = tls_server(ServerTlsConfig::new(cert, key));
    let err = tls_failure(addr, tls_client(test_pki().client_tls()));
    assert_eq!(err.kind(), TlsErrorKind::ExpiredCertificate, "{err}");
}

#[test]
fn a_plaintext_client_on_a_tls_port_is_told_to_use_tls_and_counted() {
    let (server, addr) = tls_server(test_pki().server_tls());
    let plain = ClientConfig {
        connect_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let err = tls_failure(addr, plain);
    assert_eq!(err.kind(), TlsErrorKind::TlsRequired, "{err}");
    wait_until("the failure is counted", || {
        server.stats().tls_failures == 1
    });
}

#[test]
fn a_tls_client_on_a_plaintext_port_is_told_the_port_does_not_speak_tls() {
    let (server, addr) = echo_server(ServerConfig::default());
    let err = tls_failure(addr, tls_client(test_pki().client_tls()));
    assert_eq!(err.kind(), TlsErrorKind::NotTls, "{err}");
    // The server refuses the handshake (it logs "a TLS client on a plaintext port").
    wait_until("the server cut it", || server.stats().refused == 1);
}

#[test]
fn unreadable_certificate_files_fail_at_creation_naming_the_file() {
    let missing = ServerTlsConfig::new("/nonexistent/cert.pem", &test_pki().key);
    let Err(Error::Tls(err)) = Server::new(ServerConfig {
        tls: Some(missing),
        ..ServerConfig::default()
    }) else {
        panic!("a missing certificate must fail");
    };
    assert_eq!(err.kind(), TlsErrorKind::BadConfig);
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    // A key that belongs to another certificate.
    let (_, other_key) = test_pki().issue("other", &["127.0.0.1"], Validity::Current, false);
    let Err(Error::Tls(err)) = Server::new(ServerConfig {
        tls: Some(ServerTlsConfig::new(&test_pki().cert, other_key)),
        ..ServerConfig::default()
    }) else {
        panic!("a key that does not fit must fail");
    };
    assert_eq!(err.kind(), TlsErrorKind::BadConfig);
    // A CA file that does not exist fails the client before it connects.
    let err = tls_failure(
        "127.0.0.1:1",
        tls_client(ClientTlsConfig::with_ca_file("/nonexistent/ca.pem")),
    );
    assert_eq!(err.kind(), TlsErrorKind::BadConfig);
}

#[test]
fn a_reconnecting_player_resumes_its_session() {
    let (server, addr) = tls_server(test_pki().server_tls());
    // A setting of its own, so no other test's sessions are in its store.
    let config = tls_client(ClientTlsConfig {
        server_name: Some("localhost".into()),
        ..test_pki().client_tls()
    });
    for i in 0..3 {
        let client = Client::connect(addr, config.clone()).unwrap();
        client
            .invoke_server("Echo", &tuple![i as f64], Some(PATIENCE))
            .unwrap();
        client.close();
    }
    wait_until("three handshakes", || {
        let s = server.stats();
        s.tls_handshakes + s.tls_resumed == 3
    });
    let stats = server.stats();
    assert_eq!(
        (stats.tls_handshakes, stats.tls_resumed),
        (1, 2),
        "{stats:?}"
    );
}

/// A second CA's PKI, for a rotation to certificates a client of the first does not trust.
fn rotated_pki() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let dir = &test_pki().dir;
    let files = (
        dir.join("rotated-ca.pem"),
        dir.join("rotated.pem"),
        dir.join("rotated.key"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

#[test]
fn reloading_the_certificate_under_load_loses_no_call_and_serves_new_players_with_it() {
    let dir = test_pki().dir.join("reload");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("live.pem"), dir.join("live.key"));
    std::fs::copy(&test_pki().cert, &cert).unwrap();
    std::fs::copy(&test_pki().key, &key).unwrap();
    let (server, addr) = tls_server(ServerTlsConfig::new(&cert, &key));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let players: Vec<Client> = (0..4)
        .map(|_| Client::connect(addr, tls_client(test_pki().client_tls())).unwrap())
        .collect();
    let callers: Vec<_> = players
        .iter()
        .map(|p| steady_caller(p.handle(), stop.clone(), ok.clone()))
        .collect();
    wait_until("calls flow", || ok.load(Ordering::Relaxed) > 20);

    // A broken file is refused, and the server keeps its certificate.
    std::fs::write(&cert, "not a certificate").unwrap();
    let Err(Error::Tls(err)) = server.reload_tls() else {
        panic!("a broken certificate file must not load");
    };
    assert_eq!(err.kind(), TlsErrorKind::BadConfig, "{err}");
    Client::connect(addr, tls_client(test_pki().client_tls())).expect("old certificate kept");

    let (new_ca, new_cert, new_key) = rotated_pki();
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let trusts_new = tls_client(ClientTlsConfig::with_ca_file(&new_ca));
    let before = tls_failure(addr, trusts_new.clone());
    assert_eq!(before.kind(), TlsErrorKind::UntrustedCertificate);
    server.reload_tls().unwrap();
    let after = ok.load(Ordering::Relaxed);
    Client::connect(addr, trusts_new).expect("new players get the new certificate");
    wait_until("calls go on after the reload", || {
        ok.load(Ordering::Relaxed) > after + 20
    });
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().expect("no call of a connected player failed");
    }
    assert_eq!(server.player_count(), 4);
}

#[test]
fn a_server_without_tls_cannot_reload_it() {
    let (server, _) = echo_server(ServerConfig::default());
    assert!(matches!(
        server.reload_tls(),
        Err(Error::InvalidArgument(_))
    ));
}

fn tls_relay(secret: Option<&str>) -> Relay {
    let hosts_tls = ServerTlsConfig {
        client_ca: Some(test_pki().ca.clone()),
        ..test_pki().server_tls()
    };
    Relay::start(RelayConfig {
        players: "127.0.0.1:0".into(),
        hosts: "127.0.0.1:0".into(),
        secret: secret.map(str::to_owned),
        players_tls: Some(test_pki().server_tls()),
        hosts_tls: Some(hosts_tls),
        // Two loops: place "lobby" is the second's, so its host and players are handed over
        // at their handshake, TLS state and all.
        reactors: 2,
        ..RelayConfig::default()
    })
    .expect("relay")
}

/// A game server whose links to relays present a certificate of the test CA, made as `file`.
fn certified_host(file: &str) -> Server {
    let (cert, key) = test_pki().issue(file, &["game-server"], Validity::Current, true);
    Server::new(ServerConfig {
        relay_tls: Some(ClientTlsConfig {
            client_cert: Some(cert),
            client_key: Some(key),
            ..test_pki().client_tls()
        }),
        ..ServerConfig::default()
    })
    .unwrap()
}

#[test]
fn the_relay_routes_calls_both_ways_over_tls_and_admits_hosts_by_certificate() {
    // No secret: the host's certificate is what admits it.
    let relay = tls_relay(None);
    let host = certified_host("host");
    host.bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    host.attach(&relay.hosts_addr().to_string(), "lobby", None)
        .unwrap();

    let player = Client::connect(
        relay.players_addr(),
        ClientConfig {
            place: "lobby".into(),
            ..tls_client(test_pki().client_tls())
        },
    )
    .unwrap();
    let got = player
        .invoke_server("Echo", &tuple!["over tls"], Some(PATIENCE))
        .unwrap();
    assert_eq!(got, tuple!["over tls"]);
    player
        .bind("Name", |_, _| Ok::<_, String>(tuple!["p1"]))
        .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    player
        .bind_event("News", move |_, args| {
            let _ = tx.send(args);
        })
        .unwrap();
    wait_until("the host sees its player", || host.player_count() == 1);
    let id = host.players()[0];
    assert_eq!(
        host.invoke_client(id, "Name", &[], Some(PATIENCE)).unwrap(),
        tuple!["p1"]
    );
    host.fire_client(id, "News", &tuple!["hello"]).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), tuple!["hello"]);

    // A host with no certificate is refused by the relay, with a reason it can act on.
    let anonymous = Server::new(ServerConfig {
        relay_tls: Some(test_pki().client_tls()),
        ..ServerConfig::default()
    })
    .unwrap();
    let err = anonymous
        .attach(&relay.hosts_addr().to_string(), "other", None)
        .unwrap_err();
    let Error::Tls(tls) = &err else {
        panic!("not a TLS error: {err:?}")
    };
    assert_eq!(tls.kind(), TlsErrorKind::CertificateRejected, "{err}");
    // A player leaving fails nothing else: the first is still served.
    assert_eq!(
        player
            .invoke_server("Echo", &tuple![2.0], Some(PATIENCE))
            .unwrap(),
        tuple![2.0]
    );
}

#[test]
fn a_relay_with_host_certificates_and_a_secret_wants_both() {
    let relay = tls_relay(Some("s3cret"));
    let host = certified_host("host2");
    let hosts = relay.hosts_addr().to_string();
    assert!(matches!(
        host.attach(&hosts, "a", Some("guess")),
        Err(Error::Rejected(_))
    ));
    host.attach(&hosts, "a", Some("s3cret")).unwrap();
}

/// Hostile connections to a TLS port: garbage, a slowloris that never finishes its TLS
/// handshake, and a TLS player that never reads its answers. Each is cut (garbage at once,
/// the slowloris at the handshake timeout, the non-reader at its output bound) and counted,
/// while a well-behaved TLS player keeps being served throughout.
#[test]
fn hostile_connections_to_a_tls_port_are_cut_and_a_good_player_is_served() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(2),
        max_output_buffer: 256 * 1024,
        ..Limits::default()
    };
    let (server, addr) = echo_server(ServerConfig {
        tls: Some(test_pki().server_tls()),
        limits,
        ..ServerConfig::default()
    });
    let good = Client::connect(addr, tls_client(test_pki().client_tls())).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let caller = steady_caller(good.handle(), stop.clone(), ok.clone());

    // Garbage: bytes that are no TLS record.
    let mut garbage: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(&[0x42 ^ i as u8; 64]);
            s
        })
        .collect();
    // Slowloris: the first bytes of a ClientHello, then nothing.
    let slowloris: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
            s
        })
        .collect();
    wait_until("the garbage is cut", || server.stats().tls_failures >= 20);
    for s in &mut garbage {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut rest = Vec::new();
        // Ends (an alert and the close, or a reset): never hangs.
        let _ = s.read_to_end(&mut rest);
    }
    let deadline = Instant::now() + PATIENCE;
    while server.stats().disconnects_timeout < 50 {
        assert!(
            Instant::now() < deadline,
            "slowloris not cut: {:?}",
            server.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(slowloris);

    // A TLS player that floods calls and reads nothing: once its answers back up it is no
    // longer read, and it is cut at its output bound or, taking nothing, at the idle timeout.
    let cut = |s: Stats| s.disconnects_limit + s.disconnects_timeout;
    let cut_before = cut(server.stats());
    let mut deaf = raw::TlsFlooder::connect(addr, &test_pki().ca);
    deaf.flood(1500, Duration::from_secs(3));
    wait_until("the non-reader is cut", || {
        server.player_count() == 1 && cut(server.stats()) == cut_before + 1
    });
    drop(deaf);

    let before = ok.load(Ordering::Relaxed);
    wait_until("the good player is still served", || {
        ok.load(Ordering::Relaxed) > before + 10
    });
    stop.store(true, Ordering::Relaxed);
    caller.join().expect("no call of the good player failed");
    assert_eq!(server.player_count(), 1);
}
