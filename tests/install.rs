//! The C library as a game's build takes it: `cmake -P cmake/install.cmake` installs it under a
//! prefix, and a C program (pkg-config) and the CMake example (`find_package`) build against
//! that prefix alone, copied out of the source tree; the CMake example also builds remotefn from
//! source with FetchContent. Each program is run: the C one checks a round trip itself, the game
//! server is called over the network.
//!
//! The library is built once, with cargo's dev profile (the layout and the linking are under
//! test, not the speed), into a cargo target directory of its own that every build here shares.

use remotefn::{Client, ClientConfig, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("install")
}

/// The name (and SONAME) of the installed shared library.
fn shared_file() -> String {
    format!("libremotefn.so.{}", remotefn::ffi::RF_ABI_VERSION)
}

fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cargo_target_dir() -> PathBuf {
    scratch().join("cargo")
}

/// The README's install command, to `prefix`, building in `build` (dev profile, the shared
/// cargo target directory).
fn install_command(prefix: &Path, build: &str) -> Command {
    let mut command = Command::new("cmake");
    command
        .arg(format!("-DPREFIX={}", prefix.display()))
        .arg("-DPROFILE=dev")
        .arg(format!("-DBUILD_DIR={}", scratch().join(build).display()))
        .arg(format!(
            "-DCARGO_TARGET_DIR={}",
            cargo_target_dir().display()
        ))
        .arg("-P")
        .arg(root().join("cmake/install.cmake"));
    command
}

/// The prefix the README's install command installed to, once per test run.
fn installed() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix = scratch().join("prefix");
        let _ = std::fs::remove_dir_all(&prefix);
        run(&mut install_command(&prefix, "build"));
        prefix
    })
}

#[test]
fn destdir_stages_the_install_for_a_package() {
    let stage = scratch().join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    let prefix = Path::new("/opt/remotefn-staged");
    run(install_command(prefix, "build-staged").env("DESTDIR", &stage));
    let staged = stage.join(prefix.strip_prefix("/").unwrap());
    for file in [
        "include/remotefn.h",
        "lib/libremotefn.a",
        "lib/pkgconfig/remotefn.pc",
        "lib/cmake/remotefn/remotefnConfig.cmake",
    ] {
        assert!(staged.join(file).is_file(), "{file} is not staged");
    }
    assert!(staged.join("lib").join(shared_file()).is_file());
    assert!(!prefix.exists(), "nothing is installed outside the stage");
}

/// A fresh directory holding a copy of `files` (paths in the source tree), so that what is
/// built there can reach the source tree by no relative path.
fn copied(name: &str, files: &[&str]) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in files {
        let from = root().join(file);
        std::fs::copy(&from, dir.join(from.file_name().unwrap())).unwrap();
    }
    dir
}

fn readelf_dynamic(file: &Path) -> String {
    let out = run(Command::new("readelf").arg("-d").arg(file));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The libraries `file` needs at load time.
fn needed(file: &Path) -> Vec<String> {
    readelf_dynamic(file)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_owned()))
        .collect()
}

#[test]
fn the_install_command_lays_out_headers_libraries_pkg_config_and_the_cmake_package() {
    let prefix = installed();
    for file in [
        "include/remotefn.h",
        "include/remotefn.hpp",
        "lib/libremotefn.a",
        "lib/pkgconfig/remotefn.pc",
        "lib/pkgconfig/remotefn-static.pc",
        "lib/cmake/remotefn/remotefnConfig.cmake",
        "lib/cmake/remotefn/remotefnConfigVersion.cmake",
        "lib/cmake/remotefn/remotefnTargets.cmake",
    ] {
        assert!(prefix.join(file).is_file(), "{file} is not installed");
    }
    let shared = prefix.join("lib").join(shared_file());
    assert!(shared.is_file(), "{} is not installed", shared.display());
    assert_eq!(
        std::fs::read_link(prefix.join("lib/libremotefn.so")).unwrap(),
        Path::new(&shared_file()),
        "libremotefn.so links to the ABI-versioned library"
    );
    let soname = format!("Library soname: [{}]", shared_file());
    assert!(
        readelf_dynamic(&shared).contains(&soname),
        "the library's SONAME is not {}",
        shared_file()
    );
    // The installed header is the source tree's, and the package says which ABI it is.
    assert_eq!(
        std::fs::read(prefix.join("include/remotefn.h")).unwrap(),
        std::fs::read(root().join("include/remotefn.h")).unwrap()
    );
    let config =
        std::fs::read_to_string(prefix.join("lib/cmake/remotefn/remotefnConfig.cmake")).unwrap();
    assert!(config.contains(&format!(
        "set(remotefn_ABI_VERSION {})",
        remotefn::ffi::RF_ABI_VERSION
    )));
    // Nothing installed points back into the source tree or the build directory.
    for file in [
        "lib/pkgconfig/remotefn.pc",
        "lib/pkgconfig/remotefn-static.pc",
        "lib/cmake/remotefn/remotefnConfig.cmake",
    ] {
        let text = std::fs::read_to_string(prefix.join(file)).unwrap();
        assert!(
            !text.contains(root().to_str().unwrap()),
            "{file} names the source tree"
        );
    }
}

/// `pkg-config` flags of the installed prefix alone.
fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = run(Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", installed().join("lib/pkgconfig"))
        .env_remove("PKG_CONFIG_LIBDIR")
        .args(args));
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_c_program_builds_and_runs_against_the_installed_prefix_alone() {
    let dir = copied("c-program", &["examples/c/echo.c"]);
    for (package, static_link) in [("remotefn", false), ("remotefn-static", true)] {
        let mut args = vec!["--cflags", "--libs", package];
        if static_link {
            args.push("--static");
        }
        let flags = pkg_config(&args);
        let exe = dir.join(format!("echo-{package}"));
        run(Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(dir.join("echo.c"))
            .arg("-o")
            .arg(&exe)
            .args(&flags)
            .current_dir(&dir));
        let libs = needed(&exe);
        assert_eq!(
            libs.contains(&shared_file()),
            !static_link,
            "{package}: the program needs {libs:?}"
        );
        let mut program = Command::new(&exe);
        if !static_link {
            program.env("LD_LIBRARY_PATH", installed().join("lib"));
        }
        let out = run(&mut program);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Echo answered"), "{package}: {stdout}");
    }
}

/// The CMake example (copied out of the tree) configured with `options` and built.
fn build_cmake_example(name: &str, options: &[String]) -> PathBuf {
    let source = copied(
        name,
        &["examples/cmake/CMakeLists.txt", "examples/cmake/main.cpp"],
    );
    let build = source.join("build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(&source)
        .arg("-B")
        .arg(&build)
        .args(options));
    run(Command::new("cmake").arg("--build").arg(&build));
    build.join("game_server")
}

/// The game server, killed when dropped.
struct GameServer(Child);

impl Drop for GameServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the example's game server on a free port and calls its `Greet` as a player would.
fn greet(exe: &Path) {
    let log = exe.with_extension("out");
    let mut server = GameServer(
        Command::new(exe)
            .arg("127.0.0.1:0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the game server"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let mut text = String::new();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        if let Some(addr) = text
            .lines()
            .find_map(|l| l.strip_prefix("serving on "))
            .map(str::to_owned)
        {
            break addr;
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("the game server exited ({status}): {text}");
        }
        assert!(Instant::now() < deadline, "the game server never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    let client = Client::connect(&addr, ClientConfig::default()).expect("connect");
    let answer = client
        .invoke_server(
            "Greet",
            &[Value::from("Ana")],
            Some(Duration::from_secs(10)),
        )
        .expect("Greet");
    assert_eq!(answer.0, vec![Value::from("hello, Ana")]);
}

#[test]
fn the_cmake_example_finds_the_installed_package_shared_and_static() {
    let prefix = format!("-DCMAKE_PREFIX_PATH={}", installed().display());
    let shared = build_cmake_example("cmake-shared", std::slice::from_ref(&prefix));
    assert!(needed(&shared).contains(&shared_file()));
    greet(&shared);
    let linked_static = build_cmake_example(
        "cmake-static",
        &[prefix, "-DREMOTEFN_USE_STATIC_LIBS=ON".into()],
    );
    let libs = needed(&linked_static);
    assert!(
        !libs.iter().any(|l| l.starts_with("libremotefn")),
        "{libs:?}"
    );
    greet(&linked_static);
}

#[test]
fn the_cmake_example_builds_remotefn_from_source_with_fetchcontent() {
    let exe = build_cmake_example(
        "cmake-fetchcontent",
        &[
            "-DREMOTEFN_FROM_SOURCE=ON".into(),
            format!("-DFETCHCONTENT_SOURCE_DIR_REMOTEFN={}", root().display()),
            "-DREMOTEFN_CARGO_PROFILE=dev".into(),
            format!(
                "-DREMOTEFN_CARGO_TARGET_DIR={}",
                cargo_target_dir().display()
            ),
        ],
    );
    assert!(needed(&exe).contains(&shared_file()));
    greet(&exe);
}
