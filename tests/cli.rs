//! The `remotefn` binary: `serve` with its demo functions, driven by `call`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_remotefn");

/// A `remotefn serve` process, killed when dropped.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start() -> Serve {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--log", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start remotefn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "remotefn serving on 127.0.0.1:PORT (functions: ...)"
        let addr = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Serve { child, addr }
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

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let serve = Serve::start();

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
