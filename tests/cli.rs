//! The `remotefn` binary: `serve` with its demo functions, driven by `call`.

mod common;

use common::RELAY_ON_EPHEMERAL_PORTS;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_remotefn");

/// A `remotefn serve` process, killed when dropped.
struct Serve {
    process: Running,
    addr: String,
    /// Where its metrics are served, with --metrics.
    metrics: Option<String>,
}

impl Serve {
    fn start() -> Serve {
        Serve::start_with("warn", Stdio::null())
    }

    /// `serve` logging at `log` to `stderr`.
    fn start_with(log: &str, stderr: Stdio) -> Serve {
        Serve::start_flags(&[], log, stderr)
    }

    /// `serve` with `flags`, logging at `log` to `stderr`.
    fn start_flags(flags: &[&str], log: &str, stderr: Stdio) -> Serve {
        let args = [&["serve", "--listen", "127.0.0.1:0"][..], flags].concat();
        let (process, line) = start_logging(&args, log, stderr);
        // "remotefn serving on 127.0.0.1:PORT (functions: ...)"
        let addr = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        // "..., metrics on http://127.0.0.1:PORT/metrics; Ctrl-C stops"
        let metrics = line
            .split_once("metrics on http://")
            .and_then(|(_, rest)| rest.split_once("/metrics"))
            .map(|(addr, _)| addr.to_owned());
        Serve {
            process,
            addr,
            metrics,
        }
    }

    fn call(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["call", &self.addr])
            .args(args)
            .args(["--timeout-ms", "10000", "--log", "warn"])
            .output()
            .expect("run remotefn call")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

#[test]
fn call_prints_results_as_json_and_errors_with_a_failing_exit_code() {
    demo_functions_answer(Serve::start());
}

#[test]
fn the_demo_functions_answer_the_same_when_run_inline_on_two_loops() {
    let flags = ["--inline", "--reactors", "2"];
    demo_functions_answer(Serve::start_flags(&flags, "warn", Stdio::null()));
}

fn demo_functions_answer(serve: Serve) {
    let echo = serve.call(&[
        "Echo",
        "hello",
        "42",
        r#"{"$vector3":[1,2.5,3]}"#,
        r#"{"hp":100}"#,
    ]);
    assert!(echo.status.success(), "{}", stderr(&echo));
    assert_eq!(
        stdout(&echo),
        r#"["hello",42,{"$vector3":[1.0,2.5,3.0]},{"hp":100}]"#
    );

    let add = serve.call(&["Add", "1", "2", "3.5"]);
    assert_eq!(stdout(&add), "[6.5]");

    let fail = serve.call(&["Fail", "no luck"]);
    assert!(!fail.status.success());
    assert!(stderr(&fail).contains("no luck"), "{}", stderr(&fail));

    let bad_add = serve.call(&["Add", "1", "x"]);
    assert!(!bad_add.status.success());
    assert!(stderr(&bad_add).contains("not a number"));

    let back = serve.call(&["CallMeBack", r#"{"$color3":[1,0,0]}"#]);
    assert!(back.status.success(), "{}", stderr(&back));
    assert_eq!(stdout(&back), r#"[{"$color3":[1.0,0.0,0.0]}]"#);
    assert!(stderr(&back).contains("server called back Echo"));
}

#[test]
fn serve_serves_its_metrics_over_http() {
    let serve = Serve::start_flags(&["--metrics", "127.0.0.1:0"], "warn", Stdio::null());
    for _ in 0..2 {
        let echo = serve.call(&["Echo", "hi"]);
        assert!(echo.status.success(), "{}", stderr(&echo));
    }
    assert!(!serve.call(&["Fail", "no"]).status.success());
    let addr = serve
        .metrics
        .as_deref()
        .expect("serve says where its metrics are");
    let (status, body) = common::http_get(addr.parse().unwrap(), "/metrics");
    assert!(status.contains("200"), "{status}");
    for line in [
        r#"remotefn_server_calls_total{function="Echo",outcome="ok"} 2"#,
        r#"remotefn_server_calls_total{function="Fail",outcome="error"} 1"#,
        r#"remotefn_server_handler_seconds_count{function="Echo"} 2"#,
        "remotefn_server_connections_total 3",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in:\n{body}");
    }
}

fn probe(target: &str) -> Output {
    Command::new(BIN)
        .args(["probe", target, "--timeout-ms", "5000", "--log", "warn"])
        .output()
        .expect("run remotefn probe")
}

#[test]
fn probe_says_alive_when_the_event_loop_answers_and_fails_when_nothing_does() {
    let serve = Serve::start_flags(&["--metrics", "127.0.0.1:0"], "warn", Stdio::null());
    let welcomed = probe(&serve.addr);
    assert!(welcomed.status.success(), "{}", stderr(&welcomed));
    assert!(
        stdout(&welcomed).contains("welcomed"),
        "{}",
        stdout(&welcomed)
    );
    let metrics = format!("http://{}/metrics", serve.metrics.as_deref().unwrap());
    assert!(probe(&metrics).status.success());
    let missing = probe(&metrics.replace("/metrics", "/nothing"));
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("404"), "{}", stderr(&missing));
    // A relay with no game server refuses the probe's handshake: its loop answered, so alive.
    let (_relay, line) = start(&RELAY_ON_EPHEMERAL_PORTS);
    let refused = probe(&addresses(&line)[0]);
    assert!(refused.status.success(), "{}", stderr(&refused));
    assert!(stdout(&refused).contains("refusal"), "{}", stdout(&refused));
    // Nothing listening: not alive, and why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let dead = probe(&addr);
    assert!(!dead.status.success());
    assert!(stderr(&dead).contains("not alive"), "{}", stderr(&dead));
}

#[test]
fn call_to_nowhere_fails_cleanly() {
    // Port 1 on loopback: nothing listens there.
    let out = Command::new(BIN)
        .args(["call", "127.0.0.1:1", "Echo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .arg("bench")
        .args(["--duration", "0.5", "--warmup", "0.2", "--json"])
        .args(args)
        .output()
        .expect("run remotefn bench");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn bench_loads_its_own_server_and_the_baseline() {
    for protocol in ["remotefn", "echo"] {
        let runs = bench_json(&["--protocol", protocol, "--players", "20", "--inflight", "2"]);
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(run["protocol"], protocol);
        assert_eq!(run["errors"], 0, "{run}");
        assert!(run["calls"].as_u64().unwrap() > 0, "{run}");
        assert!(run["p99_us"].as_u64().unwrap() >= run["p50_us"].as_u64().unwrap());
        assert!(run["idle_bytes_per_player"].is_number(), "{run}");
    }
}

#[test]
fn bench_sweeps_player_counts_into_a_chart() {
    let chart = std::env::temp_dir().join(format!("remotefn-sweep-{}.svg", std::process::id()));
    let runs = bench_json(&["--sweep", "1,5", "--plot", chart.to_str().unwrap()]);
    assert_eq!(
        runs.iter()
            .map(|r| r["players"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 5]
    );
    let svg = std::fs::read_to_string(&chart).unwrap();
    std::fs::remove_file(&chart).unwrap();
    assert!(svg.contains("<svg") && svg.contains("calls/s"));
}

#[test]
fn bench_against_a_running_server() {
    let serve = Serve::start();
    let runs = bench_json(&["--target", &serve.addr, "--players", "10"]);
    assert_eq!(runs[0]["errors"], 0);
    assert!(runs[0]["calls"].as_u64().unwrap() > 0);
    // Not our child: its memory is not ours to read.
    assert!(runs[0]["idle_bytes_per_player"].is_null());
}

/// A stand-in for redis-server on an ephemeral port: answers each line with `answer`, in
/// order, like Redis answers PING, until the test ends.
fn fake_redis(answer: &'static [u8]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = socket.try_clone().unwrap();
                let mut lines = BufReader::new(socket);
                let mut line = Vec::new();
                while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    assert_eq!(line, b"PING\r\n");
                    line.clear();
                    if out.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn bench_loads_a_redis_server_with_ping_and_counts_its_errors() {
    let redis = fake_redis(b"+PONG\r\n");
    let args = ["--protocol", "resp", "--target", &redis, "--players", "5"];
    let runs = bench_json(&[&args[..], &["--inflight", "4"]].concat());
    assert_eq!(runs[0]["protocol"], "resp");
    assert_eq!(runs[0]["errors"], 0, "{}", runs[0]);
    assert!(runs[0]["calls"].as_u64().unwrap() > 0);
    let failing = fake_redis(b"-ERR unknown command\r\n");
    let runs = bench_json(&["--protocol", "resp", "--target", &failing, "--players", "2"]);
    assert_eq!(runs[0]["calls"], 0, "{}", runs[0]);
    assert!(runs[0]["errors"].as_u64().unwrap() > 0, "{}", runs[0]);
    // Without a target there is no Redis to start: a clear error, not a hang.
    let out = Command::new(BIN)
        .args(["bench", "--protocol", "resp", "--duration", "0.2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--target"), "{}", stderr(&out));
}

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `remotefn ARGS` and returns it with its first line of output.
fn start(args: &[&str]) -> (Running, String) {
    start_logging(args, "warn", Stdio::null())
}

/// Starts `remotefn ARGS` logging at `log` to `stderr`; returns it with its first line of
/// output.
fn start_logging(args: &[&str], log: &str, stderr: Stdio) -> (Running, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--log", log])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start remotefn");
    let line = common::first_line(child.stdout.take().unwrap());
    (Running(child), line)
}

/// The addresses in a line such as "players on A, hosts on B, metrics on http://C/metrics".
fn addresses(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || c == ',' || c == '/')
        .filter(|w| w.parse::<std::net::SocketAddr>().is_ok())
        .map(str::to_owned)
        .collect()
}

#[test]
fn relay_serves_a_game_server_attached_from_the_command_line_and_stops_on_sigterm() {
    let config = std::env::temp_dir().join(format!("remotefn-relay-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "players = \"127.0.0.1:0\"\nhosts = \"127.0.0.1:0\"\ndrain_timeout = 2.5\n",
    )
    .unwrap();
    let (mut relay, line) = start(&[
        "relay",
        "--config",
        config.to_str().unwrap(),
        "--secret",
        "s3",
        "--metrics",
        "127.0.0.1:0",
    ]);
    std::fs::remove_file(&config).unwrap();
    let addrs = addresses(&line);
    assert_eq!(addrs.len(), 3, "{line}");
    let (players, hosts, metrics) = (&addrs[0], &addrs[1], &addrs[2]);

    let (_game, line) = start(&[
        "serve", "--attach", hosts, "--place", "arena", "--secret", "s3",
    ]);
    assert!(line.contains("through the relay"), "{line}");
    let out = Command::new(BIN)
        .args([
            "call", players, "Add", "2", "40", "--place", "arena", "--log", "warn",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "[42]");

    // Prometheus text over HTTP.
    use std::io::{Read, Write};
    let mut http = std::net::TcpStream::connect(metrics.as_str()).unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    http.read_to_string(&mut text).unwrap();
    assert!(
        text.contains("200 OK") && text.contains("remotefn_relay_hosts 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"remotefn_relay_calls_total{direction="to_host"} 1"#),
        "{text}"
    );

    // SIGTERM: a graceful stop, exit 0.
    let status = terminate(&mut relay.0);
    assert!(status.success(), "{status}");
}

/// Sends SIGTERM and waits (10 s at most) for the process to exit.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the process did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn serve_stops_on_sigterm_and_tells_its_players() {
    let mut serve = Serve::start();
    let client =
        remotefn::Client::connect(serve.addr.as_str(), remotefn::ClientConfig::default()).unwrap();
    assert_eq!(
        client
            .invoke_server("Echo", &remotefn::tuple![1], None)
            .unwrap(),
        remotefn::tuple![1]
    );
    let status = terminate(&mut serve.process.0);
    assert!(status.success(), "{status}");
    // The player was told (a goodbye), not left to find out from a dead socket.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while client.is_connected() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let err = client
        .invoke_server("Echo", &remotefn::tuple![2], None)
        .unwrap_err();
    assert!(err.to_string().contains("shutting down"), "{err}");
}

#[test]
fn a_call_to_an_unbound_function_says_why_it_waited() {
    let serve = Serve::start();
    let out = Command::new(BIN)
        .args([
            "call",
            &serve.addr,
            "Nope",
            "--timeout-ms",
            "300",
            "--log",
            "warn",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("timed out after 300ms"), "{err}");
    assert!(err.contains("no handler answered `Nope`"), "{err}");
    assert!(err.contains("nobody has bound wait for one"), "{err}");
    assert!(err.contains("--timeout-ms"), "{err}");
}

#[test]
fn timeout_ms_bounds_the_connection_and_handshake_too() {
    // Accepts, then never answers the handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args([
            "call",
            &addr,
            "Echo",
            "--timeout-ms",
            "700",
            "--log",
            "warn",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("timed out after 700ms connecting to"), "{err}");
    assert!(err.contains("handshake"), "{err}");
    // The default connect timeout is 10 s: finishing well before it shows the flag bounded it.
    assert!(took < std::time::Duration::from_secs(6), "took {took:?}");
    drop(silent);
}

/// `n` connections that each send a few bytes of garbage and close.
fn garbage_storm(addr: &str, n: usize) {
    use std::io::Write;
    for _ in 0..n {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.write_all(b"\xff\xff\xff\xffGARBAGE");
        }
    }
}

#[test]
fn a_log_sink_that_does_not_read_never_stalls_the_server() {
    // Debug level: every connection of the storm is several lines, far more than a pipe holds.
    let mut serve = Serve::start_with("debug", Stdio::piped());
    let unread_stderr = serve.process.0.stderr.take();
    garbage_storm(&serve.addr, 3000);
    let out = serve.call(&["Echo", "ping"]);
    drop(serve);
    drop(unread_stderr);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), r#"["ping"]"#);
}

#[test]
fn a_log_sink_that_does_not_read_never_stalls_the_relay() {
    let (mut relay, line) = start_logging(&RELAY_ON_EPHEMERAL_PORTS, "debug", Stdio::piped());
    let unread_stderr = relay.0.stderr.take();
    let addrs = addresses(&line);
    let (players, hosts) = (&addrs[0], &addrs[1]);
    let (_game, line) = start(&[
        "serve", "--attach", hosts, "--place", "arena", "--secret", "s3",
    ]);
    assert!(line.contains("through the relay"), "{line}");
    garbage_storm(players, 3000);
    let out = Command::new(BIN)
        .args([
            "call", players, "Echo", "ping", "--place", "arena", "--log", "warn",
        ])
        .output()
        .unwrap();
    drop(relay);
    drop(unread_stderr);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), r#"["ping"]"#);
}

#[test]
fn an_attack_decides_little_of_the_log_volume() {
    let path = std::env::temp_dir().join(format!("remotefn-log-volume-{}.log", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let serve = Serve::start_with("info", Stdio::from(file));
    garbage_storm(&serve.addr, 3000);
    // The server has handled the storm once a call behind it is answered.
    let out = serve.call(&["Echo", "after"]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(serve);
    let log = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let cut_lines = log.lines().filter(|l| l.contains("connection cut")).count();
    // The first few cuts of a window are logged one by one, the rest summarised every 10 s.
    assert!(cut_lines >= 1, "the cuts are logged at all:\n{log}");
    assert!(
        log.lines().count() < 40,
        "{} lines for 3,000 cut connections:\n{log}",
        log.lines().count()
    );
}

/// `remotefn call` over TLS, trusting the CA in `ca`.
fn call_tls(addr: &str, ca: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["call", addr])
        .args(args)
        .args(["--tls", "--tls-ca", ca.to_str().unwrap()])
        .args(["--timeout-ms", "10000", "--log", "warn"])
        .output()
        .expect("run remotefn call")
}

/// Sends `signal` to `child`.
fn signal(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
}

#[test]
fn serve_over_tls_reloads_its_certificate_on_sighup_without_losing_a_call() {
    use common::{test_pki, Validity};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let pki = test_pki();
    let dir = pki.dir.join("cli-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("live.pem"), dir.join("live.key"));
    std::fs::copy(&pki.cert, &cert).unwrap();
    std::fs::copy(&pki.key, &key).unwrap();
    let flags = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let serve = Serve::start_flags(&flags, "warn", Stdio::null());
    let add = call_tls(&serve.addr, &pki.ca, &["Add", "2", "40"]);
    assert!(add.status.success(), "{}", stderr(&add));
    assert_eq!(stdout(&add), "[42]");
    // Plaintext to the TLS port: told what to do.
    let plain = serve.call(&["Echo", "x"]);
    assert!(!plain.status.success());
    assert!(
        stderr(&plain).contains("connect with TLS"),
        "{}",
        stderr(&plain)
    );

    let player = remotefn::Client::connect(
        serve.addr.as_str(),
        remotefn::ClientConfig {
            tls: Some(pki.client_tls()),
            ..remotefn::ClientConfig::default()
        },
    )
    .unwrap();
    let (stop, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let caller = common::steady_caller(player.handle(), stop.clone(), ok.clone());
    common::wait_until("calls flow", || ok.load(Ordering::Relaxed) > 10);

    // Rotate to a certificate for "localhost" only: clients of 127.0.0.1 must now name it.
    let (new_cert, new_key) = pki.issue("cli-rotated", &["localhost"], Validity::Current, false);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    signal(&serve.process.0, "-HUP");
    common::wait_until("new players get the new certificate", || {
        let out = call_tls(&serve.addr, &pki.ca, &["Echo", "1"]);
        stderr(&out).contains("does not name the host")
    });
    let named = call_tls(
        &serve.addr,
        &pki.ca,
        &["Echo", "1", "--server-name", "localhost"],
    );
    assert!(named.status.success(), "{}", stderr(&named));
    let after = ok.load(Ordering::Relaxed);
    common::wait_until("calls go on", || ok.load(Ordering::Relaxed) > after + 10);
    stop.store(true, Ordering::Relaxed);
    caller.join().expect("no call failed across the reload");
}

#[test]
fn a_relay_over_tls_admits_a_game_server_by_its_certificate_from_the_command_line() {
    use common::{test_pki, Validity};
    let pki = test_pki();
    let (host_cert, host_key) = pki.issue("cli-host", &["game"], Validity::Current, true);
    let p = |path: &std::path::Path| path.to_str().unwrap().to_owned();
    let (cert, key, ca) = (p(&pki.cert), p(&pki.key), p(&pki.ca));
    let (_relay, line) = start(&[
        "relay",
        "--players",
        "127.0.0.1:0",
        "--hosts",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--hosts-tls-cert",
        &cert,
        "--hosts-tls-key",
        &key,
        "--hosts-client-ca",
        &ca,
    ]);
    let addrs = addresses(&line);
    let (players, hosts) = (&addrs[0], &addrs[1]);
    let (_game, line) = start(&[
        "serve",
        "--attach",
        hosts,
        "--place",
        "arena",
        "--relay-tls",
        "--relay-ca",
        &ca,
        "--relay-cert",
        &p(&host_cert),
        "--relay-key",
        &p(&host_key),
    ]);
    assert!(line.contains("through the relay"), "{line}");
    let out = call_tls(players, &pki.ca, &["Add", "2", "40", "--place", "arena"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "[42]");
    // Without a certificate the game server is refused, and says why.
    let refused = Command::new(BIN)
        .args(["serve", "--attach", hosts, "--relay-tls", "--relay-ca", &ca])
        .args(["--log", "warn"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("certificate"),
        "{}",
        stderr(&refused)
    );
}

fn example_script(sample: &str, side: &str) -> String {
    format!(
        "{}/examples/luau/{sample}/{side}.luau",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `remotefn client ADDR --script SCRIPT`, killed if it has not exited within the tests'
/// patience; its output goes to files, read once it exited.
fn scripted_client(addr: &str, script: &str) -> Output {
    let dir = std::env::temp_dir();
    let tag = format!(
        "remotefn-client-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    );
    let (out_path, err_path) = (
        dir.join(format!("{tag}.out")),
        dir.join(format!("{tag}.err")),
    );
    let mut child = Command::new(BIN)
        .args(["client", "--script", script, addr, "--log", "warn"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run remotefn client");
    let deadline = std::time::Instant::now() + common::PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "remotefn client did not exit: {}",
                std::fs::read_to_string(&err_path).unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let output = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    };
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    output
}

#[test]
fn serve_and_client_run_luau_scripts_against_each_other() {
    let sample = "remote_function_client_to_server";
    let serve = Serve::start_flags(
        &["--script", &example_script(sample, "server")],
        "warn",
        Stdio::null(),
    );
    // The scripted player invokes the scripted server, prints, and exits once idle.
    let out = scripted_client(&serve.addr, &example_script(sample, "client"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("The server created the requested part: Part1"),
        "{}",
        stdout(&out)
    );
    // The demo functions still answer beside the script's remote.
    assert_eq!(stdout(&serve.call(&["Echo", "1"])).trim(), "[1]");
    let remote = serve.call(&["RemoteFunctionTest", "{\"$color3\":[1,0,0]}", "2"]);
    assert!(stdout(&remote).contains("Part2"), "{}", stdout(&remote));

    // A script error is the client's failing exit status, with the message on stderr.
    let dir = std::env::temp_dir().join(format!("remotefn-cli-luau-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let failing = dir.join("fails.luau");
    std::fs::write(
        &failing,
        "local f = game:GetService('ReplicatedStorage'):WaitForChild('Fail')\nprint(f:InvokeServer('scripted failure'))",
    )
    .unwrap();
    let out = scripted_client(&serve.addr, failing.to_str().unwrap());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("scripted failure"),
        "{}",
        stderr(&out)
    );
    let broken = dir.join("broken.luau");
    std::fs::write(&broken, "local = 1").unwrap();
    let out = scripted_client(&serve.addr, broken.to_str().unwrap());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("broken.luau"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}
