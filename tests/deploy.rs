//! The container files (`Dockerfile`, `examples/deploy/`): no container runtime is on these
//! machines, so what can be checked without one is. Every command line they give the binary
//! parses (`remotefn ARGS --help` exits 0 only once every flag before `--help` exists and every
//! value parses); the ports and names they wire together agree (HAProxy's backends are the
//! relays' player ports, the game server attaches to the relays' host ports, Prometheus scrapes
//! the metrics ports); the Grafana dashboard is valid JSON and reads only metrics the server and
//! the relay export; and the compose file's commands, run here as processes on loopback, make a
//! working deployment: a player's call through either relay reaches the game server.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_remotefn");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    root().join("examples/deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Yaml {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        .remove(0)
}

/// `${NAME:-default}` as compose interpolates it with NAME unset.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out + rest
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .expect("a list")
        .iter()
        .map(|v| interpolate(v.as_str().expect("a string")))
        .collect()
}

/// `remotefn ARGS` parses: every flag exists, every value is of its type.
fn assert_parses(args: &[String], from: &str) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .output()
        .expect("run remotefn");
    assert!(
        out.status.success(),
        "{from}: `remotefn {}` does not parse:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value after `flag` in a command line (every one, for a repeated flag).
fn flag_values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The compose file's services running the remotefn image: name → command.
fn remotefn_services(compose: &Yaml) -> BTreeMap<String, Vec<String>> {
    let services = compose["services"].as_hash().expect("services");
    services
        .iter()
        .filter(|(_, s)| s["image"].as_str() == Some("remotefn:local"))
        .map(|(name, s)| (name.as_str().unwrap().to_owned(), strings(&s["command"])))
        .collect()
}

/// The JSON array of a Dockerfile instruction (`CMD [...]`; for `HEALTHCHECK`, its `CMD`'s),
/// continuation lines joined.
fn dockerfile_exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    let array = &line[line.find('[').expect("exec form")..];
    serde_json::from_str(array).expect("a JSON array")
}

#[test]
fn the_dockerfile_builds_the_binary_and_runs_it_as_a_user_with_a_health_check() {
    let dockerfile = read(&root().join("Dockerfile"));
    assert!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count()
            >= 2,
        "multi-stage"
    );
    assert!(dockerfile.contains("cargo build --release --locked --features cli --bin remotefn"));
    assert!(
        dockerfile.contains("COPY --from=build /usr/local/bin/remotefn /usr/local/bin/remotefn")
    );
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert_ne!(user.trim(), "root");
    assert!(dockerfile.contains(&format!(
        "useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin {}",
        user.trim()
    )));
    // The Rust it builds with is at least the manifest's.
    let manifest = read(&root().join("Cargo.toml"));
    let wanted = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version");
    let given = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(version(given) >= version(wanted), "Rust {given} < {wanted}");
    // What it copies exists, and .dockerignore lets it through.
    let ignore = read(&root().join(".dockerignore"));
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                root().join(source).exists(),
                "COPY {source}: not in the repository"
            );
            assert!(
                ignore.lines().any(|l| l == format!("!{source}")),
                ".dockerignore drops {source}"
            );
        }
    }
    // Its entry point is the binary, and its command and health check parse.
    assert_eq!(
        dockerfile_exec_form(&dockerfile, "ENTRYPOINT"),
        ["remotefn"]
    );
    let command = dockerfile_exec_form(&dockerfile, "CMD");
    assert_parses(&command, "Dockerfile CMD");
    let health = dockerfile_exec_form(&dockerfile, "HEALTHCHECK");
    assert_eq!(health[0], "remotefn");
    assert_parses(&health[1..], "Dockerfile HEALTHCHECK");
    // The health check probes the player port the default command listens on; every port the
    // default command opens is exposed.
    let exposed: Vec<u16> = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let players = flag_values(&command, "--players")[0];
    assert_eq!(port_of(&health[2]), port_of(players));
    for flag in ["--players", "--hosts", "--metrics"] {
        for addr in flag_values(&command, flag) {
            assert!(
                exposed.contains(&port_of(addr)),
                "{flag} {addr} is not exposed"
            );
        }
    }
}

#[test]
fn the_compose_file_wires_relays_haproxy_game_server_and_prometheus_by_ports_that_exist() {
    let compose = yaml(&deploy().join("compose.yaml"));
    let services = remotefn_services(&compose);
    let relays: BTreeMap<&String, &Vec<String>> =
        services.iter().filter(|(_, c)| c[0] == "relay").collect();
    assert_eq!(relays.len(), 2, "two relays");
    for (name, command) in &services {
        assert_parses(command, &format!("compose service {name}"));
        let service = &compose["services"][name.as_str()];
        let build = &service["build"];
        let context = deploy().join(build["context"].as_str().expect("a build context"));
        assert!(context
            .join(build["dockerfile"].as_str().unwrap())
            .is_file());
        if !service["healthcheck"].is_badvalue() {
            let test = strings(&service["healthcheck"]["test"]);
            assert_eq!(test[..2], ["CMD", "remotefn"]);
            assert_parses(&test[2..], &format!("{name}'s health check"));
        }
    }

    // The game server attaches to every relay, at its host port.
    let (_, game) = services
        .iter()
        .find(|(_, c)| c[0] == "serve")
        .expect("a game server");
    let attached = flag_values(game, "--attach");
    assert_eq!(attached.len(), relays.len());
    for (relay, command) in &relays {
        let hosts = flag_values(command, "--hosts")[0];
        assert!(
            attached.contains(&format!("{relay}:{}", port_of(hosts)).as_str()),
            "the game server does not attach to {relay}'s host port ({attached:?})"
        );
    }

    // HAProxy balances over every relay's player port, and publishes the port it binds.
    let haproxy = read(&deploy().join("haproxy.cfg"));
    let servers: Vec<&str> = haproxy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let mut players: Vec<String> = relays
        .iter()
        .map(|(relay, c)| format!("{relay}:{}", port_of(flag_values(c, "--players")[0])))
        .collect();
    players.sort();
    let mut backends: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    backends.sort();
    assert_eq!(backends, players);
    let bind = haproxy
        .lines()
        .find_map(|l| l.trim().strip_prefix("bind :"))
        .expect("a bind");
    let published = strings(&compose["services"]["haproxy"]["ports"]);
    assert!(
        published.contains(&format!("{bind}:{bind}")),
        "{published:?}"
    );
    let mounts = strings(&compose["services"]["haproxy"]["volumes"]);
    assert!(mounts[0].starts_with("./haproxy.cfg:"));

    // Prometheus scrapes each metrics port, and only those.
    let prometheus = yaml(&deploy().join("prometheus.yml"));
    let mut targets: Vec<String> = prometheus["scrape_configs"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|job| strings(&job["static_configs"][0]["targets"]))
        .collect();
    targets.sort();
    let mut metrics: Vec<String> = services
        .iter()
        .flat_map(|(name, c)| {
            flag_values(c, "--metrics")
                .into_iter()
                .map(move |addr| format!("{name}:{}", port_of(addr)))
        })
        .collect();
    metrics.sort();
    assert_eq!(targets, metrics);
    assert!(
        strings(&compose["services"]["prometheus"]["volumes"])[0].starts_with("./prometheus.yml:")
    );
}

/// DEPLOY.md shows the Prometheus config and names the dashboard as they are in the files.
#[test]
fn deploy_md_carries_the_scrape_config_and_the_dashboard() {
    let guide = read(&root().join("docs/DEPLOY.md"));
    let scrape = read(&deploy().join("prometheus.yml"));
    assert!(
        guide.contains(&scrape),
        "DEPLOY.md's Prometheus config is not examples/deploy/prometheus.yml"
    );
    assert!(guide.contains("examples/deploy/grafana-dashboard.json"));
    assert!(guide.contains("examples/deploy/compose.yaml"));
}

#[test]
fn the_grafana_dashboard_reads_only_metrics_the_server_and_the_relay_export() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&deploy().join("grafana-dashboard.json")))
            .expect("the dashboard is valid JSON");
    // Every family, from a server with a function bound (so its histogram exists) and a relay.
    let server = remotefn::Server::new(remotefn::ServerConfig::default()).unwrap();
    server
        .bind("Echo", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    let relay = common::relay_for_tests();
    let exported: Vec<String> = [server.metrics(), relay.metrics().render()]
        .iter()
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| Some(l.strip_prefix("# TYPE ")?.split(' ').next()?.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut read_metrics = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("an expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !word.starts_with("remotefn_") {
                    continue;
                }
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .filter(|f| exported.iter().any(|e| e == f))
                    .unwrap_or(word);
                assert!(
                    exported.iter().any(|e| e == family),
                    "panel {}: {word} is not exported",
                    panel["title"]
                );
                read_metrics += 1;
            }
        }
    }
    assert!(
        read_metrics >= 20,
        "the dashboard reads {read_metrics} metrics"
    );
}

/// A process of the deployment, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `remotefn ARGS` and returns it with its first line of output.
fn start(args: &[String]) -> (Process, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--log", "warn"])
        .env("REMOTEFN_RELAY_SECRET", "change-me")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start remotefn");
    let line = common::first_line(child.stdout.take().unwrap());
    (Process(child), line)
}

/// The `http://ADDR/metrics` address in a first line.
fn metrics_addr(line: &str) -> std::net::SocketAddr {
    let (_, rest) = line
        .split_once("metrics on http://")
        .expect("a metrics address");
    rest.split_once("/metrics").unwrap().0.parse().unwrap()
}

#[test]
fn the_compose_commands_make_a_working_deployment_on_loopback() {
    let compose = yaml(&deploy().join("compose.yaml"));
    let services = remotefn_services(&compose);
    // Each listening address moves to an ephemeral loopback port; the names that refer to it
    // are rewritten to where it landed.
    let on_loopback = |args: &[String]| -> Vec<String> {
        args.iter()
            .map(|a| {
                if a.starts_with("0.0.0.0:") {
                    "127.0.0.1:0".to_owned()
                } else {
                    a.clone()
                }
            })
            .collect()
    };
    let mut relays = Vec::new();
    let mut hosts_addr = BTreeMap::new();
    for (name, command) in services.iter().filter(|(_, c)| c[0] == "relay") {
        let (process, line) = start(&on_loopback(command));
        // "remotefn relay: players on A, hosts on B, metrics on http://C/metrics"
        let words: Vec<&str> = line.split_whitespace().collect();
        let players = words[4].trim_end_matches(',').to_owned();
        let hosts = words[7].trim_end_matches(',').to_owned();
        let hosts_port = port_of(flag_values(command, "--hosts")[0]);
        hosts_addr.insert(format!("{name}:{hosts_port}"), hosts);
        relays.push((process, players, metrics_addr(&line)));
    }
    let (_, game) = services.iter().find(|(_, c)| c[0] == "serve").unwrap();
    let game: Vec<String> = on_loopback(game)
        .into_iter()
        .map(|a| hosts_addr.get(&a).cloned().unwrap_or(a))
        .collect();
    let (_game, line) = start(&game);
    let game_metrics = metrics_addr(&line);
    let place = flag_values(&game, "--place")[0].to_owned();
    for (_, players, metrics) in &relays {
        common::wait_until("the game server attached", || {
            let (_, body) = common::http_get(*metrics, "/metrics");
            body.lines().any(|l| l == "remotefn_relay_hosts 1")
        });
        let player = remotefn::Client::connect(
            players.as_str(),
            remotefn::ClientConfig {
                place: place.clone(),
                ..remotefn::ClientConfig::default()
            },
        )
        .expect("a player joins through the relay");
        let answer = player
            .invoke_server(
                "Echo",
                &[remotefn::Value::from("hi")],
                Some(common::PATIENCE),
            )
            .expect("Echo through the relay");
        assert_eq!(answer.0, vec![remotefn::Value::from("hi")]);
    }
    let (_, body) = common::http_get(game_metrics, "/metrics");
    let echoed = r#"remotefn_server_calls_total{function="Echo",outcome="ok"} 2"#;
    assert!(body.lines().any(|l| l == echoed), "{body}");
    // The game server's health check, against the game server.
    let health = strings(&compose["services"]["game"]["healthcheck"]["test"]);
    let probe: Vec<String> = health[2..]
        .iter()
        .map(|a| a.replace("127.0.0.1:9186", &game_metrics.to_string()))
        .collect();
    let out = Command::new(BIN).args(&probe).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
