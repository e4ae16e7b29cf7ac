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
