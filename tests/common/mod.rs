//! Helpers shared by the integration tests.
#![allow(dead_code)]

use remotefn::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// Certificates made for the tests: a CA, and what it signed, as PEM files in cargo's
/// per-target scratch directory.
pub struct TestPki {
    pub dir: std::path::PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    /// The CA's certificate (what clients trust).
    pub ca: std::path::PathBuf,
    /// A server certificate for `localhost` and 127.0.0.1, and its key.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The test PKI of this test process, made once.
pub fn test_pki() -> &'static TestPki {
    static PKI: std::sync::OnceLock<TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(TestPki::new)
}

impl TestPki {
    fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "remotefn test CA");
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let mut pki = TestPki {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir,
            ca_cert,
            ca_key,
            ca,
        };
        let (cert, key) = pki.issue(
            "server",
            &["localhost", "127.0.0.1"],
            Validity::Current,
            false,
        );
        pki.cert = cert;
        pki.key = key;
        pki
    }

    /// Issues a certificate for `names` (a server's, or a client's when `client`), written as
    /// `<file>.pem` and `<file>.key`.
    pub fn issue(
        &self,
        file: &str,
        names: &[&str],
        validity: Validity,
        client: bool,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        let (cert_file, key_file) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    /// Serves the `localhost` / 127.0.0.1 certificate.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new(&self.cert, &self.key)
    }

    /// Trusts the test CA.
    pub fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::with_ca_file(&self.ca)
    }
}

/// Whether [`TestPki::issue`] makes a certificate valid now or one that expired in 2021.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Current,
    Expired,
}

/// `GET path` over HTTP/1.0: the status line and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(socket, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// A child's first line of output; the rest is read (and dropped) by a thread of its own, so
/// the child never stalls on a full pipe nor fails on a closed one when it prints again.
pub fn first_line(stdout: std::process::ChildStdout) -> String {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the first line");
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    line
}
