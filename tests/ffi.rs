//! Builds the C and C++ programs in `ffi-tests/` against the library (shared and static), runs
//! them, runs the C program under valgrind memcheck, and checks the exported symbols.
//!
//! The programs are compiled with the system `cc` (C11) and `c++` (C++17) and
//! `-Wall -Wextra -Werror -pedantic`, which also proves the headers compile cleanly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

struct Built {
    /// Directory holding libremotefn.so and libremotefn.a as a C engine gets them (no
    /// optional feature).
    lib_dir: PathBuf,
    /// The same with Luau scripts (feature `luau`: it links the C++ runtime).
    luau_lib_dir: PathBuf,
    /// Directory for the compiled test programs.
    out_dir: PathBuf,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo test` builds the library only as an rlib; the C programs need the cdylib and the
/// staticlib, built once per test run into the same target directory (once as shipped, once
/// with the `luau` feature for the program that loads scripts) and copied aside, since both
/// builds write the same file names.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        // target/<profile>/deps/ffi-<hash> → target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let build = |features: &str, into: &str| {
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args(["build", "--lib", "--quiet", "--features", features])
                .current_dir(root());
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo build --lib");
            assert!(
                status.success(),
                "cargo build --lib --features {features:?} failed"
            );
            let dir = profile_dir.join(into);
            std::fs::create_dir_all(&dir).unwrap();
            for lib in ["libremotefn.so", "libremotefn.a"] {
                std::fs::copy(profile_dir.join(lib), dir.join(lib))
                    .unwrap_or_else(|e| panic!("no {lib} in {}: {e}", profile_dir.display()));
            }
            dir
        };
        let lib_dir = build("", "ffi-lib");
        let luau_lib_dir = build("luau", "ffi-lib-luau");
        let out_dir = profile_dir.join("ffi-tests");
        std::fs::create_dir_all(&out_dir).unwrap();
        Built {
            lib_dir,
            luau_lib_dir,
            out_dir,
        }
    })
}

#[derive(Clone, Copy)]
enum Link {
    Shared,
    Static,
}

/// Compiles `source` (C when it ends in `.c`, else C++) into a program linked as `link`, once
/// per test run (tests share programs, and must not rewrite one while another runs it).
fn compile(source: &str, link: Link) -> PathBuf {
    static PROGRAMS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let key = format!("{source}-{}", link as u8);
    let mut programs = PROGRAMS.lock().unwrap();
    if let Some((_, exe)) = programs.iter().find(|(k, _)| *k == key) {
        return exe.clone();
    }
    let exe = compile_now(source, link);
    programs.push((key, exe.clone()));
    exe
}

fn compile_now(source: &str, link: Link) -> PathBuf {
    let b = built();
    let is_c = source.ends_with(".c");
    let stem = Path::new(source)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let exe = b.out_dir.join(format!(
        "{stem}-{}",
        if matches!(link, Link::Shared) {
            "shared"
        } else {
            "static"
        }
    ));
    let mut cmd = Command::new(if is_c { "cc" } else { "c++" });
    cmd.arg(if is_c { "-std=c11" } else { "-std=c++17" })
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-O1"])
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("ffi-tests"))
        .arg(root().join("ffi-tests").join(source))
        .arg("-o")
        .arg(&exe);
    let lib_dir = if stem.starts_with("luau") {
        &b.luau_lib_dir
    } else {
        &b.lib_dir
    };
    match link {
        Link::Shared => {
            cmd.arg("-L").arg(lib_dir).arg("-lremotefn");
            cmd.arg(format!("-Wl,-rpath,{}", lib_dir.display()));
        }
        Link::Static => {
            cmd.arg(lib_dir.join("libremotefn.a"));
            if stem.starts_with("luau") {
                // Luau is C++: a static link brings its runtime.
                cmd.arg("-lstdc++");
            }
        }
    }
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let out = cmd.output().expect("run the C/C++ compiler");
    assert!(
        out.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// A relay for the C program's relay tests; its addresses go on the command line.
fn relay() -> remotefn::Relay {
    remotefn::Relay::start(remotefn::RelayConfig {
        players: "127.0.0.1:0".into(),
        hosts: "127.0.0.1:0".into(),
        secret: Some("s3cret".into()),
        ..remotefn::RelayConfig::default()
    })
    .expect("relay")
}

/// Runs a test program (under `wrapper`, e.g. valgrind, if given) with a relay's host and
/// player addresses as its arguments.
fn run(exe: &Path, wrapper: &[&str]) {
    let relay = relay();
    let relay_args = [
        relay.hosts_addr().to_string(),
        relay.players_addr().to_string(),
    ];
    let mut command: Vec<&str> = wrapper.to_vec();
    command.push(exe.to_str().unwrap());
    command.extend(relay_args.iter().map(String::as_str));
    let (program, args) = command.split_first().expect("a program");
    // The certificates of the programs' TLS tests.
    let pki = common::test_pki();
    let out = Command::new(program)
        .args(args)
        // cargo points LD_LIBRARY_PATH at target/<profile>, which would win over the
        // program's run path and load whichever library was built last.
        .env_remove("LD_LIBRARY_PATH")
        .env("RF_TEST_TLS_CERT", &pki.cert)
        .env("RF_TEST_TLS_KEY", &pki.key)
        .env("RF_TEST_TLS_CA", &pki.ca)
        .env("RF_TEST_LUAU_DIR", root().join("ffi-tests/luau"))
        .output()
        .expect("run the test program");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        program,
        args,
        out.status
    );
    assert!(stdout.contains("all checks passed"), "stdout:\n{stdout}");
    assert!(
        !stderr.contains("skipping"),
        "a test was skipped:\n{stderr}"
    );
}

#[test]
fn c_program_against_the_shared_library() {
    run(&compile("abi_test.c", Link::Shared), &[]);
}

#[test]
fn c_program_against_the_static_library() {
    run(&compile("abi_test.c", Link::Static), &[]);
}

#[test]
fn cpp_wrapper_against_the_shared_library() {
    run(&compile("wrapper_test.cpp", Link::Shared), &[]);
}

#[test]
fn cpp_wrapper_against_the_static_library() {
    run(&compile("wrapper_test.cpp", Link::Static), &[]);
}

/// A C++ client calls a Luau server and a Luau client calls a C++ server.
#[test]
fn cpp_and_luau_call_each_other() {
    run(&compile("luau_test.cpp", Link::Shared), &[]);
}

#[test]
fn cpp_and_luau_against_the_static_library() {
    run(&compile("luau_test.cpp", Link::Static), &[]);
}

/// Zero memcheck errors and no definite leaks (the exit code is 99 on either).
#[test]
fn c_program_under_valgrind_memcheck() {
    let exe = compile("abi_test.c", Link::Shared);
    let suppressions = format!(
        "--suppressions={}",
        root().join("ffi-tests/valgrind.supp").display()
    );
    run(
        &exe,
        &[
            "valgrind",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
            "--quiet",
            &suppressions,
        ],
    );
}

#[test]
fn only_rf_symbols_are_exported_from_the_shared_library() {
    let lib = built().lib_dir.join("libremotefn.so");
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("run nm");
    assert!(out.status.success());
    let symbols: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    let foreign: Vec<&String> = symbols.iter().filter(|s| !s.starts_with("rf_")).collect();
    assert!(foreign.is_empty(), "non-rf_ symbols exported: {foreign:?}");
    for name in [
        "rf_last_error",
        "rf_abi_version",
        "rf_server_invoke_client",
        "rf_client_invoke_server",
    ] {
        assert!(symbols.iter().any(|s| s == name), "{name} is not exported");
    }
}
