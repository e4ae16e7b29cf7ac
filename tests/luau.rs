//! Luau scripts on a live server and client: the samples in `examples/luau/` (Roblox's
//! RemoteFunction and RemoteEvent documentation, written afresh) run against scripted and
//! native peers, then errors, yielding, values and the sandbox.

mod common;

use common::{wait_until, PATIENCE};
use parking_lot::Mutex;
use remotefn::luau::{OutputKind, OutputSink, ScriptConfig, ScriptHost};
use remotefn::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a host's scripts printed, as `"print: ..."`, `"warn: ..."`, `"error: ..."`.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn sink(&self) -> OutputSink {
        let lines = self.0.clone();
        Arc::new(move |kind, line| {
            let kind = match kind {
                OutputKind::Print => "print",
                OutputKind::Warn => "warn",
                OutputKind::Error => "error",
            };
            lines.lock().push(format!("{kind}: {line}"));
        })
    }

    fn has(&self, needle: &str) -> bool {
        self.0.lock().iter().any(|l| l.contains(needle))
    }

    fn count(&self, needle: &str) -> usize {
        self.0.lock().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until a line contains `needle`.
    fn wait_for(&self, needle: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !self.has(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "no line with {needle:?}; lines: {:#?}",
                self.0.lock()
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

fn example(name: &str, side: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/luau")
        .join(name)
        .join(format!("{side}.luau"))
}

fn config(lines: &Lines) -> ScriptConfig {
    ScriptConfig {
        output: Some(lines.sink()),
        ..ScriptConfig::default()
    }
}

struct ScriptedServer {
    server: Server,
    addr: SocketAddr,
    host: ScriptHost,
    lines: Lines,
}

fn scripted_server(load: impl FnOnce(&ScriptHost)) -> ScriptedServer {
    let server = Server::new(ServerConfig::default()).expect("server");
    let addr = server.listen("127.0.0.1:0").expect("listen");
    let lines = Lines::default();
    let host = ScriptHost::server(&server.handle(), config(&lines)).expect("script host");
    load(&host);
    ScriptedServer {
        server,
        addr,
        host,
        lines,
    }
}

fn example_server(name: &str) -> ScriptedServer {
    scripted_server(|host| {
        host.load_file(example(name, "server"))
            .expect("server script")
    })
}

fn server_with(source: &str) -> ScriptedServer {
    scripted_server(|host| {
        host.load_source("server.luau", source)
            .expect("server script")
    })
}

struct ScriptedClient {
    client: Client,
    /// Keeps the client's scripts running.
    _host: ScriptHost,
    lines: Lines,
}

fn scripted_client(addr: SocketAddr, load: impl FnOnce(&ScriptHost)) -> ScriptedClient {
    let client = common::connect(addr);
    let lines = Lines::default();
    let host = ScriptHost::client(&client.handle(), config(&lines)).expect("script host");
    load(&host);
    ScriptedClient {
        client,
        _host: host,
        lines,
    }
}

fn example_client(addr: SocketAddr, name: &str) -> ScriptedClient {
    scripted_client(addr, |host| {
        host.load_file(example(name, "client"))
            .expect("client script")
    })
}

fn client_with(addr: SocketAddr, source: &str) -> ScriptedClient {
    scripted_client(addr, |host| {
        host.load_source("client.luau", source)
            .expect("client script")
    })
}

fn player_name(client: &Client) -> String {
    format!("Player{}", client.handle().player_id().get())
}

/// The events named `event` that `client` receives, in order.
fn events_of(client: &Client, event: &str) -> crossbeam_channel::Receiver<Tuple> {
    let (tx, rx) = crossbeam_channel::unbounded();
    client
        .bind_event(event, move |_, args| {
            let _ = tx.send(args);
        })
        .unwrap();
    rx
}

fn dict_get<'a>(value: &'a Value, key: &str) -> &'a Value {
    let Value::Dictionary(entries) = value else {
        panic!("not a dictionary: {value:?}");
    };
    &entries.iter().find(|(k, _)| k == key).expect(key).1
}

// --- the documentation's samples ---

#[test]
fn remote_function_client_to_server_sample() {
    let server = example_server("remote_function_client_to_server");
    let scripted = example_client(server.addr, "remote_function_client_to_server");
    scripted
        .lines
        .wait_for("The server created the requested part: Part1");
    scripted
        .lines
        .wait_for("Its position: 0, 25, -20 its height: 25");
    server.lines.wait_for(&format!(
        "{} requested a new part",
        player_name(&scripted.client)
    ));

    // A native client calls the same remote by its path.
    let native = common::connect(server.addr);
    let color = Value::Color3(Color3 {
        r: 0.0,
        g: 1.0,
        b: 0.0,
    });
    let position = Value::Vector3(Vector3 {
        x: 1.0,
        y: 2.0,
        z: 3.0,
    });
    let part = native
        .invoke_server(
            "RemoteFunctionTest",
            &[color.clone(), position.clone()],
            Some(PATIENCE),
        )
        .expect("the scripted handler answers a native client");
    assert_eq!(dict_get(&part[0], "Name"), &Value::string("Part2"));
    assert_eq!(dict_get(&part[0], "Color"), &color);
    assert_eq!(dict_get(&part[0], "Position"), &position);
    assert_eq!(dict_get(&part[0], "Anchored"), &Value::Boolean(true));
}

#[test]
fn remote_function_server_to_client_sample() {
    let server = example_server("remote_function_server_to_client");
    let scripted = example_client(server.addr, "remote_function_server_to_client");
    // The scripted client binds its answer after it connected; the server's call, made at
    // PlayerAdded, waited for it.
    server.lines.wait_for(&format!(
        "{} runs graphics level 7 at volume 0.5",
        player_name(&scripted.client)
    ));

    // A native client whose callback raises: the server's pcall catches the message.
    let native = common::connect(server.addr);
    native
        .bind("GetClientSettings", |_, _| {
            Err::<Tuple, _>("settings are private")
        })
        .unwrap();
    server.lines.wait_for(&format!(
        "warn: {} could not answer: settings are private",
        player_name(&native)
    ));
}

#[test]
fn remote_event_client_to_server_sample() {
    let server = example_server("remote_event_client_to_server");
    let scripted = example_client(server.addr, "remote_event_client_to_server");
    scripted.lines.wait_for("asked the server for a part");
    server.lines.wait_for(&format!(
        "{} fired the RemoteEvent",
        player_name(&scripted.client)
    ));
    server
        .lines
        .wait_for("made a part at 0, 25, -20 coloured 1, 0, 0");

    let native = common::connect(server.addr);
    native
        .fire_server(
            "RemoteEventTest",
            &[
                Value::Color3(Color3::default()),
                Value::Vector3(Vector3 {
                    x: 5.0,
                    y: 6.0,
                    z: 7.0,
                }),
            ],
        )
        .unwrap();
    server
        .lines
        .wait_for("made a part at 5, 6, 7 coloured 0, 0, 0");
}

#[test]
fn remote_event_server_to_client_sample() {
    let server = example_server("remote_event_server_to_client");
    let scripted = example_client(server.addr, "remote_event_server_to_client");
    let id = scripted.client.handle().player_id().get();
    // The event may arrive before the script connects: it is queued, as Roblox does.
    scripted.lines.wait_for(&format!(
        "[Client] Event received by player Player{id} with user id {id}"
    ));
    scripted
        .lines
        .wait_for("[Client] The server takes inf players");
    server.lines.wait_for("[Server] Firing event to player");

    let native = common::connect(server.addr);
    let rx = events_of(&native, "RemoteEventTest");
    let got = rx.recv_timeout(PATIENCE).expect("the welcome event");
    assert_eq!(
        got[1],
        Value::Number(native.handle().player_id().get() as f64)
    );
}

#[test]
fn remote_event_all_clients_sample() {
    let server = example_server("remote_event_all_clients");
    let native = common::connect(server.addr);
    let rx = events_of(&native, "RemoteEventTest");
    let scripted = example_client(server.addr, "remote_event_all_clients");
    scripted.lines.wait_for("[Client] round started: true");
    let starter = player_name(&scripted.client);
    scripted
        .lines
        .wait_for(&format!("[Client] start {starter}"));
    for line in ["countdown 3", "countdown 2", "countdown 1"] {
        assert!(scripted.lines.has(line), "missing {line}");
    }
    let seen: Vec<Tuple> = (0..4)
        .map(|_| {
            rx.recv_timeout(PATIENCE)
                .expect("every client sees the countdown")
        })
        .collect();
    assert_eq!(seen[0], tuple!["countdown", 3.0]);
    assert_eq!(seen[3], tuple!["start", starter.as_str()]);
    // A new round once that one ended is allowed; a second one while it runs is refused.
    let start = |seconds: f64| {
        native
            .invoke_server("StartRound", &tuple![seconds], Some(PATIENCE))
            .unwrap()
    };
    assert_eq!(start(100.0), tuple![true], "a 5 s countdown");
    assert_eq!(start(1.0), tuple![false], "refused while it counts down");
}

#[test]
fn remote_event_client_to_client_sample() {
    let server = example_server("remote_event_client_to_client");
    let native = common::connect(server.addr);
    let rx = events_of(&native, "Chat");
    let scripted = example_client(server.addr, "remote_event_client_to_client");
    let scripted_id = scripted.client.handle().player_id().get();
    scripted
        .lines
        .wait_for(&format!("[Client] me: hello from {scripted_id}"));
    let heard = rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(heard[0], Value::Instance(InstanceRef(scripted_id)));

    native
        .fire_server("Chat", &tuple!["hi from native"])
        .unwrap();
    let native_id = native.handle().player_id().get();
    scripted
        .lines
        .wait_for(&format!("[Client] player {native_id}: hi from native"));
    // A message the server refuses is not passed on.
    native.fire_server("Chat", &tuple![42.0]).unwrap();
    server
        .lines
        .wait_for(&format!("warn: Player{native_id} sent a bad message"));
}

// --- semantics ---

const ECHO_AND_FRIENDS: &str = r#"
local ReplicatedStorage = game:GetService("ReplicatedStorage")
local function remote(class, name, parent)
	local r = Instance.new(class)
	r.Name = name
	r.Parent = parent or ReplicatedStorage
	return r
end

remote("RemoteFunction", "Echo").OnServerInvoke = function(player, ...)
	return ...
end
remote("RemoteFunction", "Fail").OnServerInvoke = function(player, message)
	error(message, 0)
end
remote("RemoteFunction", "FailAt").OnServerInvoke = function(player)
	error("with a position")
end
remote("RemoteFunction", "Forever").OnServerInvoke = function(player)
	coroutine.yield()
	return "never"
end
remote("RemoteFunction", "Spin").OnServerInvoke = function(player)
	while true do end
end
remote("RemoteFunction", "SpinInPcall").OnServerInvoke = function(player)
	while true do
		pcall(function()
			while true do end
		end)
	end
end
remote("RemoteFunction", "Hog").OnServerInvoke = function(player)
	local t = {}
	for i = 1, 1e9 do
		t[i] = string.rep("x", 1024) .. i
	end
	return #t
end
remote("RemoteFunction", "Function").OnServerInvoke = function(player)
	return function() end
end
remote("RemoteFunction", "Mixed").OnServerInvoke = function(player)
	return { 1, 2, key = "value" }
end
remote("RemoteFunction", "Holes").OnServerInvoke = function(player)
	return { 1, nil, 3 }
end
remote("RemoteFunction", "Math").OnServerInvoke = function(player, v, cf)
	local moved = cf * CFrame.new(v)
	return (v + Vector3.new(1, 1, 1)) * 2, v.Magnitude, v.Unit, moved, cf:Inverse() * moved
end

local active, most = 0, 0
remote("RemoteFunction", "Slow").OnServerInvoke = function(player, seconds)
	active += 1
	most = math.max(most, active)
	task.wait(seconds)
	active -= 1
	return most
end

local folder = remote("Folder", "Nested")
remote("RemoteFunction", "Inside", folder).OnServerInvoke = function()
	return "nested"
end
remote("RemoteFunction", "Sandbox").OnServerInvoke = function(player, what)
	if what == "require" then
		return pcall(require, "../outside")
	elseif what == "globals" then
		return io == nil, os.execute == nil, loadstring == nil, getfenv == nil, os.clock() > 0
	end
end
"#;

#[test]
fn errors_reraise_at_the_caller_with_the_callees_message() {
    let server = server_with(ECHO_AND_FRIENDS);
    let client = common::connect(server.addr);
    let err = client
        .invoke_server("Fail", &tuple!["no such item"], Some(PATIENCE))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote(m) if m == "no such item"),
        "{err:?}"
    );
    let err = client
        .invoke_server("FailAt", &[], Some(PATIENCE))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote(m) if m.starts_with("server.luau:") && m.ends_with("with a position")),
        "{err:?}"
    );

    // A scripted caller: pcall catches the server's error with its message.
    let scripted = client_with(
        server.addr,
        r#"
local ReplicatedStorage = game:GetService("ReplicatedStorage")
local fail = ReplicatedStorage:WaitForChild("Fail")
local ok, message = pcall(function()
	return fail:InvokeServer("out of stock")
end)
print("caught:", ok, message)
print("nested:", ReplicatedStorage:WaitForChild("Nested"):WaitForChild("Inside"):InvokeServer())
"#,
    );
    scripted.lines.wait_for("caught: false out of stock");
    scripted.lines.wait_for("nested: nested");
}

#[test]
fn values_cross_natively_and_what_a_remote_cannot_carry_is_an_error() {
    let server = server_with(ECHO_AND_FRIENDS);
    let client = common::connect(server.addr);
    let values = vec![
        Value::Nil,
        Value::Boolean(true),
        Value::Number(-1.5),
        Value::string("text with \0 a NUL"),
        Value::buffer(vec![0u8, 1, 2, 255]),
        Value::Vector2(Vector2 { x: 1.0, y: -2.0 }),
        Value::Vector3(Vector3 {
            x: 1.0,
            y: 2.0,
            z: 3.0,
        }),
        Value::CFrame(Box::new(CFrame {
            position: [1.0, 2.0, 3.0],
            rotation: [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        })),
        Value::Color3(Color3 {
            r: 0.25,
            g: 0.5,
            b: 1.0,
        }),
        Value::Array(vec![Value::Number(1.0), Value::string("two")]),
        Value::dictionary([("a", Value::Number(1.0)), ("b", Value::Array(vec![]))]),
        Value::Nil,
    ];
    let got = client
        .invoke_server("Echo", &values, Some(PATIENCE))
        .unwrap();
    assert_eq!(
        got.len(),
        values.len(),
        "trailing nils are kept, as in a tuple"
    );
    for (sent, back) in values.iter().zip(got.iter()) {
        match (sent, back) {
            // Dictionary order is a Lua table's, not the sender's.
            (Value::Dictionary(a), Value::Dictionary(b)) => {
                let mut a = a.clone();
                let mut b = b.clone();
                a.sort_by(|x, y| x.0.cmp(&y.0));
                b.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(a, b);
            }
            _ => assert_eq!(sent, back),
        }
    }

    for (function, why) in [
        ("Function", "a function cannot be sent"),
        ("Mixed", "mixing array and string keys"),
        ("Holes", "holes"),
    ] {
        let err = client
            .invoke_server(function, &[], Some(PATIENCE))
            .unwrap_err();
        assert!(
            matches!(&err, Error::Remote(m) if m.contains(why)),
            "{function}: {err:?}"
        );
    }

    let v = Value::Vector3(Vector3 {
        x: 3.0,
        y: 0.0,
        z: 4.0,
    });
    let cf = Value::CFrame(Box::new(CFrame {
        position: [10.0, 0.0, 0.0],
        rotation: [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0],
    }));
    let got = client
        .invoke_server("Math", &[v, cf], Some(PATIENCE))
        .unwrap();
    assert_eq!(
        got[0],
        Value::Vector3(Vector3 {
            x: 8.0,
            y: 2.0,
            z: 10.0
        })
    );
    assert_eq!(got[1], Value::Number(5.0));
    assert_eq!(
        got[2],
        Value::Vector3(Vector3 {
            x: 0.6,
            y: 0.0,
            z: 0.8
        })
    );
    // cf * CFrame.new(v): the position moves by the rotated v; Inverse undoes cf.
    let Value::CFrame(moved) = &got[3] else {
        panic!("{:?}", got[3])
    };
    assert_eq!(moved.position, [14.0, 0.0, -3.0]);
    let Value::CFrame(back) = &got[4] else {
        panic!("{:?}", got[4])
    };
    for (a, b) in back.position.iter().zip([3.0, 0.0, 4.0]) {
        assert!((a - b).abs() < 1e-12, "{:?}", back.position);
    }
}

#[test]
fn calls_yield_their_coroutine_so_others_run_meanwhile() {
    let server = server_with(ECHO_AND_FRIENDS);
    // A callback that yields forever holds nothing up.
    let stuck = common::connect(server.addr);
    let stuck_handle = stuck.handle();
    let forever = std::thread::spawn(move || {
        stuck_handle.invoke_server("Forever", &[], Some(std::time::Duration::from_millis(500)))
    });
    // Ten callers in a callback that waits: all wait at once on one scheduler thread.
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let client = common::connect(server.addr);
            std::thread::spawn(move || {
                client
                    .invoke_server("Slow", &tuple![0.3], Some(PATIENCE))
                    .unwrap()
            })
        })
        .collect();
    let client = common::connect(server.addr);
    assert_eq!(
        client
            .invoke_server("Echo", &tuple![7.0], Some(PATIENCE))
            .unwrap(),
        tuple![7.0]
    );
    let most = callers
        .into_iter()
        .map(|c| c.join().unwrap()[0].as_number().unwrap())
        .fold(0.0, f64::max);
    assert!(most >= 2.0, "the waits overlapped: {most} at once");
    assert!(matches!(forever.join().unwrap(), Err(Error::Timeout(_))));
}

#[test]
fn the_sandbox_stops_runaways_and_keeps_serving() {
    let server = scripted_server(|host| {
        host.load_source("server.luau", ECHO_AND_FRIENDS).unwrap();
    });
    let client = common::connect(server.addr);
    for spin in ["Spin", "SpinInPcall"] {
        let err = client.invoke_server(spin, &[], Some(PATIENCE)).unwrap_err();
        assert!(
            matches!(&err, Error::Remote(m) if m.contains("exhausted its CPU budget")),
            "{spin}: {err:?}"
        );
    }
    let err = client
        .invoke_server("Hog", &[], Some(PATIENCE))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote(m) if m.contains("not enough memory")),
        "{err:?}"
    );
    let got = client
        .invoke_server("Sandbox", &tuple!["globals"], Some(PATIENCE))
        .unwrap();
    assert_eq!(got, tuple![true, true, true, true, true]);
    let got = client
        .invoke_server("Sandbox", &tuple!["require"], Some(PATIENCE))
        .unwrap();
    assert_eq!(got[0], Value::Boolean(false));
    assert!(
        got[1].as_str().unwrap().contains("no script folder"),
        "{got:?}"
    );
    // Still serving.
    assert_eq!(
        client
            .invoke_server("Echo", &tuple!["ok"], Some(PATIENCE))
            .unwrap(),
        tuple!["ok"]
    );
}

#[test]
fn require_loads_modules_from_the_script_folder_only() {
    let dir = std::env::temp_dir().join(format!("remotefn-luau-{}", std::process::id()));
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(scripts.join("shared")).unwrap();
    std::fs::write(dir.join("outside.luau"), "return 'secret'").unwrap();
    std::fs::write(
        scripts.join("shared/config.luau"),
        "print('config loaded') return { greeting = 'hi' }",
    )
    .unwrap();
    std::fs::write(
        scripts.join("server.luau"),
        r#"
local config = require("shared/config")
local again = require("./shared/config")
local r = Instance.new("RemoteFunction")
r.Name = "Require"
r.Parent = game:GetService("ReplicatedStorage")
r.OnServerInvoke = function(player, path)
	local ok, value = pcall(require, path)
	return ok, if ok then value else value, config == again, config.greeting
end
"#,
    )
    .unwrap();
    let server = scripted_server(|host| host.load_file(scripts.join("server.luau")).unwrap());
    assert_eq!(server.lines.count("config loaded"), 1, "modules load once");
    let client = common::connect(server.addr);
    for path in ["../outside", "/etc/passwd", "shared/../../outside"] {
        let got = client
            .invoke_server("Require", &tuple![path], Some(PATIENCE))
            .unwrap();
        assert_eq!(got[0], Value::Boolean(false), "{path}");
        let why = got[1].as_str().unwrap();
        assert!(
            why.contains("only be loaded from the script folder") || why.contains("no such module"),
            "{path}: {why}"
        );
    }
    let got = client
        .invoke_server("Require", &tuple!["shared/config"], Some(PATIENCE))
        .unwrap();
    assert_eq!(got[0], Value::Boolean(true));
    assert_eq!(got[2], Value::Boolean(true));
    assert_eq!(got[3], Value::string("hi"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scripts_and_native_handlers_serve_side_by_side() {
    let server = server_with(ECHO_AND_FRIENDS);
    assert!(!server.host.is_idle(), "it serves remotes");
    server
        .server
        .bind("Native", |_, _, args| Ok::<_, String>(args))
        .unwrap();
    let client = common::connect(server.addr);
    client
        .bind("Ask", |_, args| {
            Ok::<_, String>(tuple![format!(
                "native client got {}",
                args[0].as_number().unwrap()
            )])
        })
        .unwrap();
    assert_eq!(
        client
            .invoke_server("Native", &tuple![1.0], Some(PATIENCE))
            .unwrap(),
        tuple![1.0]
    );
    assert_eq!(
        client
            .invoke_server("Echo", &tuple![2.0], Some(PATIENCE))
            .unwrap(),
        tuple![2.0]
    );
    // A second script on the same host calls the native client, and the native server
    // handler calls nothing of the script's.
    server
        .host
        .load_source(
            "caller.luau",
            r#"
local Players = game:GetService("Players")
local ask = Instance.new("RemoteFunction")
ask.Name = "Ask"
ask.Parent = game:GetService("ReplicatedStorage")
for _, player in Players:GetPlayers() do
	print(ask:InvokeClient(player, 42))
end
"#,
        )
        .unwrap();
    server.lines.wait_for("print: native client got 42");
}

#[test]
fn a_disconnect_fails_the_pending_invoke_client_and_player_removing_fires() {
    let server = server_with(
        r#"
local Players = game:GetService("Players")
local ask = Instance.new("RemoteFunction")
ask.Name = "Never"
ask.Parent = game:GetService("ReplicatedStorage")
Players.PlayerAdded:Connect(function(player)
	local ok, why = pcall(ask.InvokeClient, ask, player)
	print("invoke ended:", ok, why)
end)
Players.PlayerRemoving:Connect(function(player)
	print("removing", player.Name, player.Parent == Players)
end)
"#,
    );
    let client = common::connect(server.addr);
    client
        .bind_deferred("Never", |_, _, responder| std::mem::forget(responder))
        .unwrap();
    let name = player_name(&client);
    wait_until("the server's call is in flight", || {
        server.server.calls_in_flight() == 1
    });
    client.close();
    server.lines.wait_for("invoke ended: false disconnected");
    server.lines.wait_for(&format!("removing {name} true"));
}

#[test]
fn load_errors_and_wait_for_child_timeouts() {
    let server = server_with("print('up')");
    let err = server
        .host
        .load_source("bad.luau", "local x = ")
        .unwrap_err();
    assert!(
        matches!(&err, Error::Script(m) if m.starts_with("bad.luau:")),
        "{err:?}"
    );
    let err = server
        .host
        .load_source("raises.luau", "error('refused to start', 0)")
        .unwrap_err();
    assert!(
        matches!(&err, Error::Script(m) if m == "refused to start"),
        "{err:?}"
    );
    let err = server.host.load_file("/no/such/script.luau").unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    // A script that yields returns from load at once; its rest runs later.
    server
        .host
        .load_source(
            "waits.luau",
            r#"
local found = game:GetService("ReplicatedStorage"):WaitForChild("Missing", 0.05)
print("wait ended with", found)
local e = Instance.new("RemoteEvent")
print(typeof(e), e:IsA("Instance"), e.ClassName, typeof(Vector3.zero), typeof(e.OnServerEvent))
local ok, why = pcall(function() return e.Nonsense end)
print(why)
"#,
        )
        .unwrap();
    server.lines.wait_for("wait ended with nil");
    server
        .lines
        .wait_for("Instance true RemoteEvent Vector3 RBXScriptSignal");
    server
        .lines
        .wait_for("Nonsense is not a valid member of RemoteEvent \"RemoteEvent\"");
    // Nothing waits and nothing is bound: the host is idle.
    wait_until("the host is idle", || server.host.is_idle());
}

#[test]
fn signals_wait_and_queue_as_roblox_does() {
    let server = server_with(
        r#"
local ReplicatedStorage = game:GetService("ReplicatedStorage")
local ping = Instance.new("RemoteEvent")
ping.Name = "Ping"
ping.Parent = ReplicatedStorage
task.spawn(function()
	-- Both events were queued before anything listened; Wait takes them in order.
	task.wait(0.2)
	local _, first = ping.OnServerEvent:Wait()
	local _, second = ping.OnServerEvent:Wait()
	print("waited for", first, second)
	local connection
	connection = ping.OnServerEvent:Connect(function(player, n)
		print("connected got", n)
		connection:Disconnect()
	end)
end)
"#,
    );
    let client = common::connect(server.addr);
    for n in 1..=4 {
        client.fire_server("Ping", &tuple![n as f64]).unwrap();
    }
    server.lines.wait_for("waited for 1 2");
    server.lines.wait_for("connected got 3");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        server.lines.count("connected got"),
        1,
        "disconnected after one"
    );
}

#[test]
fn players_carry_their_identity_and_can_be_kicked() {
    let server = scripted_server(|_| {});
    server.server.set_authenticator(|req| {
        Ok(Identity {
            user_id: 77,
            name: String::from_utf8_lossy(&req.token).into_owned(),
        })
    });
    server
        .host
        .load_source(
            "kicker.luau",
            r#"
local Players = game:GetService("Players")
Players.PlayerAdded:Connect(function(player)
	print("joined", player.Name, player.UserId, Players:GetPlayerByUserId(77) == player)
	task.delay(0.05, function()
		player:Kick("goodbye " .. player.Name)
	end)
end)
Players.PlayerRemoving:Connect(function(player)
	print("left", player.Name)
end)
"#,
        )
        .unwrap();
    let client = Client::connect(
        server.addr,
        ClientConfig {
            token: b"alice".to_vec().into(),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    server.lines.wait_for("joined alice 77 true");
    server.lines.wait_for("left alice");
    wait_until("the kicked player is disconnected", || {
        !client.is_connected()
    });
    let err = client
        .invoke_server("Anything", &[], Some(PATIENCE))
        .unwrap_err();
    assert!(err.to_string().contains("goodbye alice"), "{err}");
}

#[test]
fn task_spawn_defer_delay_and_cancel_run_in_roblox_order() {
    let server = server_with(
        r#"
local order = {}
local function note(what)
	table.insert(order, what)
end
task.defer(note, "deferred")
task.spawn(note, "spawned")
local cancelled = task.delay(0.05, note, "cancelled")
task.delay(0.02, note, "delayed")
task.cancel(cancelled)
note("main")
task.delay(0.2, function()
	print(table.concat(order, ","))
	local elapsed = task.wait(0.01)
	print("waited", elapsed >= 0.01)
end)
"#,
    );
    server.lines.wait_for("spawned,main,deferred,delayed");
    server.lines.wait_for("waited true");
    assert!(!server.lines.has("cancelled"));
}

#[test]
fn a_host_that_cannot_keep_up_refuses_calls_rather_than_queue_them_without_bound() {
    let lines = Lines::default();
    let server = Server::new(ServerConfig::default()).unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let host = ScriptHost::server(
        &server.handle(),
        ScriptConfig {
            max_queued: 2,
            cpu_budget: std::time::Duration::from_secs(5),
            output: Some(lines.sink()),
            ..ScriptConfig::default()
        },
    )
    .unwrap();
    host.load_source(
        "busy.luau",
        r#"
local ReplicatedStorage = game:GetService("ReplicatedStorage")
local busy = Instance.new("RemoteFunction")
busy.Name = "Busy"
busy.Parent = ReplicatedStorage
busy.OnServerInvoke = function(player, seconds)
	print("busy")
	local deadline = os.clock() + seconds
	while os.clock() < deadline do
	end
	return "done"
end
local echo = Instance.new("RemoteFunction")
echo.Name = "Echo"
echo.Parent = ReplicatedStorage
echo.OnServerInvoke = function(player, ...)
	return ...
end
"#,
    )
    .unwrap();
    let busy_client = common::connect(addr);
    let busy_handle = busy_client.handle();
    let busy =
        std::thread::spawn(move || busy_handle.invoke_server("Busy", &tuple![3.0], Some(PATIENCE)));
    lines.wait_for("print: busy");
    // While the scheduler is busy, four calls arrive: two wait in its queue, the rest are
    // refused at once.
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let client = common::connect(addr);
            std::thread::spawn(move || {
                client.invoke_server("Echo", &tuple![i as f64], Some(PATIENCE))
            })
        })
        .collect();
    let results: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Remote(m)) if m.contains("overloaded")))
        .count();
    let answered = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!((answered, refused), (2, 2), "{results:?}");
    assert_eq!(busy.join().unwrap().unwrap(), tuple!["done"]);
    // Once it caught up, it serves again.
    let client = common::connect(addr);
    assert_eq!(
        client
            .invoke_server("Echo", &tuple![9.0], Some(PATIENCE))
            .unwrap(),
        tuple![9.0]
    );
}

#[test]
fn runaway_spawning_is_an_error_not_a_crash() {
    let server = server_with(
        r#"
local ReplicatedStorage = game:GetService("ReplicatedStorage")
local deep = Instance.new("RemoteFunction")
deep.Name = "Deep"
deep.Parent = ReplicatedStorage
deep.OnServerInvoke = function()
	local depth = 0
	local function dive()
		depth += 1
		task.spawn(dive)
	end
	dive()
	return depth
end
local recurse = Instance.new("RemoteFunction")
recurse.Name = "Recurse"
recurse.Parent = ReplicatedStorage
recurse.OnServerInvoke = function()
	local function down(n)
		return down(n + 1) + 1
	end
	return down(1)
end
"#,
    );
    let client = common::connect(server.addr);
    let got = client.invoke_server("Deep", &[], Some(PATIENCE)).unwrap();
    let depth = got[0].as_number().unwrap();
    assert!(depth > 10.0 && depth < 1000.0, "{depth}");
    // Luau bounds nested resumptions; the spawn past the bound fails and is reported.
    server.lines.wait_for("error: C stack overflow");
    let err = client
        .invoke_server("Recurse", &[], Some(PATIENCE))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote(m) if m.contains("stack overflow")),
        "{err:?}"
    );
    // Still serving.
    assert!(client.invoke_server("Deep", &[], Some(PATIENCE)).is_ok());
}

#[test]
fn scripts_serve_and_call_players_behind_a_relay() {
    // The relay deployment: a scripted game server attached to a relay, a scripted player
    // joining its place through it, and a native one beside it.
    let relay = common::relay_for_tests();
    let server = Server::new(ServerConfig::default()).unwrap();
    let lines = Lines::default();
    let host = ScriptHost::server(&server.handle(), config(&lines)).unwrap();
    host.load_file(example("remote_function_server_to_client", "server"))
        .unwrap();
    host.load_file(example("remote_function_client_to_server", "server"))
        .unwrap();
    server
        .attach(&relay.hosts_addr().to_string(), "lobby", Some("s3cret"))
        .unwrap();
    let through_relay = || {
        Client::connect(
            relay.players_addr(),
            ClientConfig {
                place: "lobby".into(),
                ..ClientConfig::default()
            },
        )
        .expect("connect through the relay")
    };
    let client = through_relay();
    let client_lines = Lines::default();
    let client_host = ScriptHost::client(&client.handle(), config(&client_lines)).unwrap();
    client_host
        .load_file(example("remote_function_server_to_client", "client"))
        .unwrap();
    client_host
        .load_file(example("remote_function_client_to_server", "client"))
        .unwrap();
    client_lines.wait_for("The server created the requested part: Part1");
    // The server's InvokeClient reached the scripted player through the relay.
    lines.wait_for(&format!(
        "{} runs graphics level 7 at volume 0.5",
        player_name(&client)
    ));
    let native = through_relay();
    let part = native
        .invoke_server(
            "RemoteFunctionTest",
            &[
                Value::Color3(Color3::default()),
                Value::Vector3(Vector3::default()),
            ],
            Some(PATIENCE),
        )
        .unwrap();
    assert_eq!(dict_get(&part[0], "Name"), &Value::string("Part2"));
}
