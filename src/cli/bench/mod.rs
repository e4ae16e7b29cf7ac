//! `remotefn bench`: a closed-loop load generator with a progress bar and a results table.
//!
//! By default it starts the server under test itself, as a child process (so each side has
//! its own descriptor limit): `remotefn serve` for `--protocol remotefn`, or the in-tree
//! baseline echo server for `--protocol echo`. `--target ADDR` loads a server running
//! elsewhere instead. `--sweep 1,10,100` repeats the run for each player count, and `--plot`
//! draws calls/s and p99 latency against players.

pub mod baseline;
mod handshakes;
mod load;
mod plot;

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use load::{Protocol, Shared, Spec, CONNECTING, MEASURING, STOP, WARMUP};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Load a server running at this address instead of starting one.
    #[arg(long)]
    target: Option<SocketAddr>,
    /// The place to join (a relay routes players to a host by place).
    #[arg(long, default_value = "")]
    place: String,
    /// What the server speaks: remotefn, the baseline bare echo, or Redis's RESP (PING; with
    /// --target, a running redis-server).
    #[arg(long, value_enum, default_value_t = Protocol::Remotefn)]
    protocol: Protocol,
    /// Connected players (1 to 10,000 or more, within the descriptor limit).
    #[arg(long, default_value_t = 1000)]
    players: usize,
    /// Calls each player keeps in flight.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Bytes in the echoed argument (remotefn and echo; a RESP PING carries none).
    #[arg(long, default_value_t = 32)]
    payload: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Generator threads, each with its own mio loop.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Handler workers of the server this command starts.
    #[arg(long, default_value_t = 1)]
    server_workers: usize,
    /// Run once per player count in this list (e.g. 1,10,100,1000,10000) instead of --players.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// With --sweep: write an SVG chart of calls/s and p99 against players to this file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Print results as JSON (one object per run) instead of a table.
    #[arg(long)]
    json: bool,
    /// Speak TLS to the server, trusting the CA in this PEM file (remotefn only). The server
    /// this command starts then serves TLS with --tls-cert and --tls-key.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// The certificate chain (PEM) of the server this command starts, for --tls-ca.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Measure new connections per second instead of calls: each connects, completes the
    /// handshake (plaintext, a full TLS handshake, or a resumed one) up to the WELCOME, and
    /// closes; --threads connect at once, for --duration.
    #[arg(long, value_enum)]
    handshakes: Option<handshakes::Handshakes>,
}

/// The generator's TLS: a client's, trusting the CA in `ca` (it verifies the target's IP
/// address).
fn generator_tls(ca: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    remotefn::__bench::tls_client_config(&remotefn::ClientTlsConfig::with_ca_file(ca))
        .map_err(|e| e.to_string())
}

/// One run's figures.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub players: usize,
    pub inflight: usize,
    pub payload: usize,
    pub calls_per_sec: f64,
    /// Calls answered while measuring.
    pub calls: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub errors: u64,
    /// Server resident memory per connected idle player, when the server is our child.
    pub idle_bytes_per_player: Option<f64>,
}

/// The server under test, when this command started it.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    fn start(protocol: Protocol, workers: usize, tls: &[String]) -> Result<ChildServer, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        match protocol {
            // A load generator is a flood by design: lift the per-player limits.
            Protocol::Remotefn => cmd.args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log",
                "warn",
                "--rate-per-sec",
                "0",
                "--max-inflight-per-player",
                "65535",
                "--workers",
            ]),
            Protocol::Echo => {
                cmd.args(["bench-echo-server", "--listen", "127.0.0.1:0", "--workers"])
            }
            Protocol::Resp => {
                return Err(
                    "--protocol resp loads a Redis server: give its address with \
                     --target (e.g. start `redis-server --port 6390 --save ''` first)"
                        .into(),
                )
            }
        };
        let mut child = cmd
            .arg(workers.to_string())
            .args(tls)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .ok_or_else(|| format!("the server did not say where it listens: {line:?}"))?;
        Ok(ChildServer { child, addr })
    }

    /// Resident memory of the server process, in bytes.
    fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TLS flags of the server this command starts.
fn child_tls_flags(args: &BenchArgs) -> Result<Vec<String>, String> {
    match (&args.tls_cert, &args.tls_key, args.protocol) {
        (None, _, _) => Ok(Vec::new()),
        (Some(cert), Some(key), Protocol::Remotefn) => Ok(vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ]),
        (Some(_), None, _) => Err("--tls-cert needs --tls-key".into()),
        (Some(_), Some(_), _) => Err("TLS is for --protocol remotefn".into()),
    }
}

/// `--handshakes`: new connections per second against the target or a server of our own.
fn run_handshakes(args: &BenchArgs, kind: handshakes::Handshakes) -> Result<(), String> {
    let tls = match (&args.tls_ca, kind) {
        (Some(ca), handshakes::Handshakes::Full | handshakes::Handshakes::Resumed) => {
            Some(generator_tls(ca)?)
        }
        (None, handshakes::Handshakes::Plain) => None,
        (Some(_), handshakes::Handshakes::Plain) => {
            return Err("--handshakes plain is without TLS: drop --tls-ca".into())
        }
        (None, _) => return Err("TLS handshakes need --tls-ca".into()),
    };
    let server = match args.target {
        Some(_) => None,
        None => Some(ChildServer::start(
            Protocol::Remotefn,
            args.server_workers,
            &child_tls_flags(args)?,
        )?),
    };
    let addr = args
        .target
        .or(server.as_ref().map(|s| s.addr))
        .expect("an address");
    let rate = handshakes::measure(
        addr,
        kind,
        tls,
        args.threads,
        Duration::from_secs_f64(args.duration),
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "handshakes": format!("{kind:?}").to_lowercase(),
                "per_sec": rate.per_sec.round(),
                "resumed": rate.resumed,
                "failed": rate.failed,
            })
        );
    } else {
        println!(
            "{kind:?} handshakes: {:.0}/s ({} resumed, {} failed)",
            rate.per_sec, rate.resumed, rate.failed
        );
    }
    Ok(())
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    if let Some(kind) = args.handshakes {
        return run_handshakes(&args, kind);
    }
    if args.inflight == 0 || args.inflight > 65_535 {
        return Err("--inflight must be between 1 and 65,535".into());
    }
    if args.players == 0 || args.sweep.contains(&0) {
        return Err("--players must be at least 1".into());
    }
    let counts = if args.sweep.is_empty() {
        vec![args.players]
    } else {
        args.sweep.clone()
    };
    let mut outcomes = Vec::new();
    if !args.json {
        println!(
            "{:>8} {:>8} {:>8} {:>12} {:>9} {:>9} {:>9} {:>7} {:>12}",
            "players",
            "inflight",
            "payload",
            "calls/s",
            "p50",
            "p99",
            "p99.9",
            "errors",
            "idle B/player"
        );
    }
    for players in counts {
        // A fresh server per run, so memory and state figures belong to this run alone.
        let server = match args.target {
            Some(_) => None,
            None => Some(ChildServer::start(
                args.protocol,
                args.server_workers,
                &child_tls_flags(&args)?,
            )?),
        };
        let addr = args
            .target
            .or(server.as_ref().map(|s| s.addr))
            .expect("an address");
        let outcome = run_once(&args, addr, players, server.as_ref())?;
        if args.json {
            println!("{}", to_json(&args, &outcome));
        } else {
            println!(
                "{:>8} {:>8} {:>8} {:>12.0} {:>9} {:>9} {:>9} {:>7} {:>12}",
                outcome.players,
                outcome.inflight,
                outcome.payload,
                outcome.calls_per_sec,
                micros(outcome.p50_us),
                micros(outcome.p99_us),
                micros(outcome.p999_us),
                outcome.errors,
                outcome
                    .idle_bytes_per_player
                    .map_or("-".to_owned(), |b| format!("{b:.0}")),
            );
        }
        outcomes.push(outcome);
    }
    if let Some(path) = &args.plot {
        plot::write_svg(path, &outcomes, args.protocol)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

fn to_json(args: &BenchArgs, o: &Outcome) -> String {
    serde_json::json!({
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "players": o.players,
        "inflight": o.inflight,
        "payload": o.payload,
        "calls_per_sec": o.calls_per_sec.round(),
        "calls": o.calls,
        "p50_us": o.p50_us,
        "p99_us": o.p99_us,
        "p999_us": o.p999_us,
        "errors": o.errors,
        "idle_bytes_per_player": o.idle_bytes_per_player.map(f64::round),
    })
    .to_string()
}

fn run_once(
    args: &BenchArgs,
    addr: SocketAddr,
    players: usize,
    server: Option<&ChildServer>,
) -> Result<Outcome, String> {
    let shared = Arc::new(Shared::default());
    let threads = args.threads.clamp(1, players);
    let tls = match &args.tls_ca {
        Some(ca) if args.protocol == Protocol::Remotefn => Some(Arc::new(generator_tls(ca)?)),
        Some(_) => return Err("TLS is for --protocol remotefn".into()),
        None => None,
    };
    let empty_rss = server.and_then(ChildServer::rss);
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("template"));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar.set_message(format!("connecting {players} players to {addr}"));

    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let share = players / threads + usize::from(i < players % threads);
            let spec = Spec {
                addr,
                protocol: args.protocol,
                connections: share,
                inflight: args.inflight,
                payload: args.payload,
                place: args.place.clone(),
                tls: tls.clone(),
            };
            let shared = shared.clone();
            std::thread::spawn(move || load::run_thread(&spec, &shared))
        })
        .collect();

    let connect_deadline = Instant::now() + Duration::from_secs(60);
    while shared.connected.load(Ordering::Relaxed) + shared.failed_connects.load(Ordering::Relaxed)
        < players
    {
        if Instant::now() > connect_deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let connected = shared.connected.load(Ordering::Relaxed);
    // Let the server settle before reading its memory with every player idle.
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = server.and_then(ChildServer::rss);
    let idle_bytes_per_player = match (empty_rss, idle_rss) {
        (Some(a), Some(b)) if connected > 0 => Some((b as f64 - a as f64) / connected as f64),
        _ => None,
    };

    debug_assert_eq!(shared.phase.load(Ordering::Relaxed), CONNECTING);
    shared.phase.store(WARMUP, Ordering::Release);
    bar.set_message(format!(
        "warming up for {:.1}s ({connected} players connected)",
        args.warmup
    ));
    let all_gone = || connected > 0 && shared.disconnected.load(Ordering::Relaxed) >= connected;
    let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    while Instant::now() < warmup_end && !all_gone() {
        std::thread::sleep(Duration::from_millis(20).min(warmup_end - Instant::now()));
    }

    shared.completed.store(0, Ordering::Relaxed);
    shared.phase.store(MEASURING, Ordering::Release);
    let started = Instant::now();
    let duration = Duration::from_secs_f64(args.duration);
    while started.elapsed() < duration {
        if all_gone() {
            eprintln!("bench: every player was disconnected; stopping early");
            break;
        }
        std::thread::sleep(
            Duration::from_millis(200).min(duration.saturating_sub(started.elapsed())),
        );
        let rate = shared.completed.load(Ordering::Relaxed) as f64
            / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "measuring {players} players x {} in flight: {rate:.0} calls/s, {:.1}s left",
            args.inflight,
            duration.saturating_sub(started.elapsed()).as_secs_f64()
        ));
    }
    shared.phase.store(STOP, Ordering::Release);
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let (mut calls, mut errors) = (0u64, 0u64);
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "a generator thread panicked".to_owned())?;
        hist.add(&r.latency_us).map_err(|e| e.to_string())?;
        calls += r.calls;
        errors += r.errors;
    }
    errors += (players - connected) as u64;
    Ok(Outcome {
        players,
        inflight: args.inflight,
        // A PING carries nothing.
        payload: if args.protocol == Protocol::Resp {
            0
        } else {
            args.payload
        },
        calls_per_sec: calls as f64 / elapsed.as_secs_f64(),
        calls,
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        errors,
        idle_bytes_per_player,
    })
}
