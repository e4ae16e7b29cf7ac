//! What `cargo add remotefn` and `libremotefn.a` bring: the library alone, none of the code of
//! the command line, the relay, the metrics' HTTP server or JSON (each behind a feature). The
//! library renders its metrics itself (`prometheus`, the text format), whatever the build.

use std::process::Command;

/// The crates the library depends on (normal dependencies) with `features`.
fn dependencies(features: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(["--no-default-features", "--features", &features.join(",")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut crates: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    crates.sort();
    crates.dedup();
    crates
}

const CLI_ONLY: &[&str] = &[
    "clap",
    "tracing-subscriber",
    "tracing-appender",
    "signal-hook",
    "hdrhistogram",
    "indicatif",
    "plotters",
];
const HTTP_ONLY: &[&str] = &["tiny_http"];
const RELAY_ONLY: &[&str] = &["toml", "serde"];
const JSON_ONLY: &[&str] = &["serde_json"];

#[test]
fn the_library_alone_brings_no_command_line_metrics_http_or_json_code() {
    let lib = dependencies(&[]);
    for name in CLI_ONLY
        .iter()
        .chain(HTTP_ONLY)
        .chain(RELAY_ONLY)
        .chain(JSON_ONLY)
    {
        assert!(!lib.iter().any(|c| c == name), "{name} in {lib:?}");
    }
    for name in [
        "mio",
        "crossbeam-channel",
        "bytes",
        "slab",
        "parking_lot",
        "prometheus",
    ] {
        assert!(lib.iter().any(|c| c == name), "{name} missing from {lib:?}");
    }
    eprintln!("the library alone: {} crates", lib.len());
}

#[test]
fn each_feature_brings_its_own_dependencies_only() {
    let http = dependencies(&["metrics-http"]);
    assert!(http.iter().any(|c| c == "tiny_http"), "{http:?}");
    assert!(
        !RELAY_ONLY.iter().any(|n| http.iter().any(|c| c == n)),
        "{http:?}"
    );
    let relay = dependencies(&["relay"]);
    assert!(
        RELAY_ONLY
            .iter()
            .chain(HTTP_ONLY)
            .all(|n| relay.iter().any(|c| c == n)),
        "{relay:?}"
    );
    assert!(
        !CLI_ONLY.iter().any(|n| relay.iter().any(|c| c == n)),
        "{relay:?}"
    );
    let json = dependencies(&["json"]);
    assert!(json.iter().any(|c| c == "serde_json"), "{json:?}");
    assert!(
        !RELAY_ONLY
            .iter()
            .chain(HTTP_ONLY)
            .any(|n| json.iter().any(|c| c == n)),
        "{json:?}"
    );
    let cli = dependencies(&["cli"]);
    for name in CLI_ONLY
        .iter()
        .chain(HTTP_ONLY)
        .chain(RELAY_ONLY)
        .chain(JSON_ONLY)
    {
        assert!(cli.iter().any(|c| c == name), "{name} missing from {cli:?}");
    }
}
