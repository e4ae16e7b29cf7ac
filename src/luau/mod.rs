//! Luau scripts on a server or a client, with Roblox's networking surface: `RemoteFunction`,
//! `RemoteEvent`, `Players`, `task`, `WaitForChild` (feature `luau`).
//!
//! A [`ScriptHost`](crate::luau::ScriptHost) owns one Luau state on one thread of its own, the scheduler, as Roblox
//! runs a place's scripts: single-threaded, each callback in a coroutine. A script that calls
//! `InvokeServer`, `InvokeClient`, `task.wait` or `WaitForChild` yields its coroutine, not the
//! thread: the scheduler runs other callbacks meanwhile and resumes it when the answer, the
//! timer or the child arrives. The host binds each remote a script serves on the server or
//! client it was made for, beside any native handlers (a call goes to whichever is bound to
//! its name). A remote's name on the wire is its path below `ReplicatedStorage`, so both sides
//! agree without configuration.
//!
//! ```text
//!   reactor / workers ──Job::Invoke/Event/Player/Done──▶ scheduler thread (owns the Lua state)
//!          ▲                                                   │ resumes coroutines
//!          └────────── reply / invoke_*_then / fire ◀──────────┘
//! ```
//!
//! The sandbox: Luau's safe libraries only (no `io`, no `os.execute`, no `load`), `require`
//! of files under the script folder only, a CPU budget per resumption (a loop that never
//! yields is stopped with an error at its caller) and a memory limit for the whole state.
//! `docs/LUAU.md` lists where the surface differs from Roblox's.

mod players;
mod types;
mod values;

use crate::{CallId, ClientHandle, Error, PlayerId, Result, ServerHandle, Tuple, Value};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mlua::thread::ThreadStatus;
use mlua::{
    Function, IntoLuaMulti, Lua, LuaOptions, MultiValue, StdLib, Table, Thread, Value as LuaValue,
    VmState,
};
use parking_lot::Mutex;
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a script's `print` and `warn` go, and the errors of callbacks nobody waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// `print(...)`.
    Print,
    /// `warn(...)`, and the host's own warnings (a full event queue, an infinite yield).
    Warn,
    /// An error in a coroutine whose caller cannot receive it (an event handler, a spawned
    /// task, a script's main chunk after it yielded).
    Error,
}

/// Receives a script's output lines.
pub type OutputSink = Arc<dyn Fn(OutputKind, &str) + Send + Sync>;

/// How a [`ScriptHost`] runs its scripts.
#[derive(Clone)]
pub struct ScriptConfig {
    /// CPU time one resumption of a coroutine may take before it is stopped with an error (a
    /// callback raising at its caller). Yielding (`task.wait`, an invoke) starts a new budget.
    pub cpu_budget: Duration,
    /// Bytes the Luau state may allocate in all; an allocation past it raises "not enough
    /// memory" in the script that made it.
    pub memory_limit: usize,
    /// The folder `require` resolves paths in, and the only one it reads. `None`: the folder
    /// of the first file loaded with [`ScriptHost::load_file`].
    pub root: Option<PathBuf>,
    /// Where output goes. `None`: the `tracing` log (`info` for print, `warn`, `error`).
    pub output: Option<OutputSink>,
    /// Calls and events waiting for the scheduler, at most: past it (the scripts are not
    /// keeping up) a call is refused with an error its caller receives, and an event is
    /// dropped and logged, so a flood cannot grow the queue without bound.
    pub max_queued: usize,
}

impl Default for ScriptConfig {
    fn default() -> Self {
        ScriptConfig {
            cpu_budget: Duration::from_secs(1),
            memory_limit: 64 << 20,
            root: None,
            output: None,
            max_queued: 65_536,
        }
    }
}

impl std::fmt::Debug for ScriptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptConfig")
            .field("cpu_budget", &self.cpu_budget)
            .field("memory_limit", &self.memory_limit)
            .field("root", &self.root)
            .field("output", &self.output.as_ref().map(|_| "custom"))
            .field("max_queued", &self.max_queued)
            .finish()
    }
}

/// Luau scripts running on a server or a client: one Luau state, one scheduler thread.
/// Dropping it stops the scheduler; the remotes its scripts served then answer callers with
/// an error.
pub struct ScriptHost {
    jobs: Sender<Job>,
    idle: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The peer the scripts talk through.
#[derive(Clone)]
enum Peer {
    Server(ServerHandle),
    Client(ClientHandle),
}

/// Work for the scheduler thread.
enum Job {
    Load {
        name: String,
        source: Vec<u8>,
        folder: Option<PathBuf>,
        done: Sender<Result<()>>,
    },
    Invoke {
        name: Arc<str>,
        player: Option<PlayerId>,
        args: Tuple,
        call: CallId,
    },
    Event {
        name: Arc<str>,
        player: Option<PlayerId>,
        args: Tuple,
    },
    Player {
        id: PlayerId,
        added: bool,
    },
    Done {
        op: u64,
        outcome: Result<Tuple>,
    },
    Stop,
}

const STOPPED: &str = "the script host has stopped";
const OVERLOADED: &str =
    "the script host is overloaded (too many calls and events queued for its scripts)";

/// The scheduler's job channel as the forwarding handlers see it: calls and events count
/// against [`ScriptConfig::max_queued`] until the scheduler takes them.
#[derive(Clone)]
struct Inbox {
    jobs: Sender<Job>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    dropped_events: Arc<AtomicU64>,
}

impl Inbox {
    /// Queues a call or an event, or says why not.
    fn offer(&self, job: Job) -> std::result::Result<(), &'static str> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(OVERLOADED);
        }
        self.jobs.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            STOPPED
        })
    }

    /// Queues an event; one the scripts cannot take now is dropped, and logged (the first
    /// and then every 1,000th).
    fn offer_event(&self, job: Job) {
        if let Err(why) = self.offer(job) {
            let dropped = self.dropped_events.fetch_add(1, Ordering::Relaxed);
            if dropped % 1000 == 0 {
                tracing::warn!(
                    dropped = dropped + 1,
                    "an event for a script was dropped: {why}"
                );
            }
        }
    }

    /// The scheduler took a call or an event.
    fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ScriptHost {
    /// Starts a host whose scripts serve and call `server`'s players. Scripts see the players
    /// already connected in `Players:GetPlayers()`.
    pub fn server(server: &ServerHandle, config: ScriptConfig) -> Result<ScriptHost> {
        let host = ScriptHost::start(Peer::Server(server.clone()), config)?;
        for added in [true, false] {
            let jobs = host.jobs.clone();
            let hook = move |_: &ServerHandle, id| {
                let _ = jobs.send(Job::Player { id, added });
            };
            if added {
                server.on_player_added(hook);
            } else {
                server.on_player_removing(hook);
            }
        }
        Ok(host)
    }

    /// Starts a host whose scripts run as `client`'s player (a scripted player, or the
    /// game's client code).
    pub fn client(client: &ClientHandle, config: ScriptConfig) -> Result<ScriptHost> {
        ScriptHost::start(Peer::Client(client.clone()), config)
    }

    fn start(peer: Peer, config: ScriptConfig) -> Result<ScriptHost> {
        let (jobs, inbox) = crossbeam_channel::unbounded();
        let (ready_tx, ready) = crossbeam_channel::bounded(1);
        let idle = Arc::new(AtomicBool::new(true));
        let thread = {
            let jobs = jobs.clone();
            let idle = idle.clone();
            std::thread::Builder::new()
                .name("remotefn-luau".into())
                // Each nested resumption (task.spawn inside a callback, a signal firing
                // handlers) stacks Rust frames too, up to Luau's own bound of 200.
                .stack_size(16 << 20)
                .spawn(move || match Scheduler::new(peer, config, jobs, idle) {
                    Ok(scheduler) => {
                        let _ = ready_tx.send(Ok(()));
                        scheduler.run(&inbox);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                })
                .map_err(|e| Error::io_from("starting the script thread", e))?
        };
        let started = ready
            .recv()
            .unwrap_or_else(|_| Err(Error::Script("the script thread died".into())));
        let host = ScriptHost {
            jobs,
            idle,
            thread: Mutex::new(Some(thread)),
        };
        started.map(|()| host)
    }

    /// Loads and runs a script file; returns once its main chunk finished or yielded (as
    /// Roblox runs a script until it first waits). A syntax error or an error raised before
    /// the first yield is [`Error::Script`]. The file's folder becomes the `require` root if
    /// [`ScriptConfig::root`] is unset and no file was loaded before.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let source = std::fs::read(path)
            .map_err(|e| Error::io_from(format!("reading the script {}", path.display()), e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let folder = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .map(Path::to_path_buf);
        self.load(name, source, folder)
    }

    /// Loads and runs a script from source; `name` is what its error messages call it.
    pub fn load_source(&self, name: &str, source: &str) -> Result<()> {
        self.load(name.to_owned(), source.as_bytes().to_vec(), None)
    }

    fn load(&self, name: String, source: Vec<u8>, folder: Option<PathBuf>) -> Result<()> {
        let (done, result) = crossbeam_channel::bounded(1);
        self.jobs
            .send(Job::Load {
                name,
                source,
                folder,
                done,
            })
            .map_err(|_| Error::Closed(STOPPED.into()))?;
        result
            .recv()
            .unwrap_or_else(|_| Err(Error::Closed(STOPPED.into())))
    }

    /// True when no coroutine waits on a timer or a call, and no script serves a remote or
    /// listens to one: nothing the scripts do will happen again unless they are called.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }

    /// Stops the scheduler and joins it. Calls waiting for a script's answer fail at their
    /// callers; later calls to its remotes are answered with an error. Idempotent.
    pub fn stop(&self) {
        let _ = self.jobs.send(Job::Stop);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ScriptHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A coroutine's wait on the host: for a timer, when it began; for a call, nothing.
struct Wait {
    thread: Thread,
    since: Option<Instant>,
}

/// What the scheduler knows besides the Lua state. Borrowed briefly by the primitives the
/// scripts call, never across a resumption (which may call them again).
struct State {
    peer: Peer,
    inbox: Inbox,
    output: OutputSink,
    root: Option<PathBuf>,
    next_op: u64,
    /// Operations in progress (calls out, timers), by id.
    ops: HashMap<u64, Wait>,
    /// The operation each coroutine waits on, by coroutine: an operation whose coroutine was
    /// since resumed by something else, or cancelled, no longer resumes it.
    waiting: HashMap<usize, u64>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Coroutines serving an inbound call, and the call they answer when they end.
    serving: HashMap<usize, CallId>,
    functions: HashSet<String>,
    events: HashSet<String>,
}

impl State {
    /// A new operation id.
    fn new_op(&mut self) -> u64 {
        let op = self.next_op;
        self.next_op += 1;
        op
    }

    /// Records that `thread` waits on operation `op` (begun at `since`, for a timer).
    fn wait_on(&mut self, op: u64, thread: Thread, since: Option<Instant>) {
        self.waiting.insert(thread_key(&thread), op);
        self.ops.insert(op, Wait { thread, since });
    }

    /// Removes operation `op` and returns its wait if its coroutine still waits on it.
    fn take_wait(&mut self, op: u64) -> Option<Wait> {
        let wait = self.ops.remove(&op)?;
        let key = thread_key(&wait.thread);
        if self.waiting.get(&key) == Some(&op) {
            self.waiting.remove(&key);
            Some(wait)
        } else {
            None
        }
    }
}

/// The CPU budget of the resumption in progress.
struct Budget {
    limit: Duration,
    deadline: Cell<Option<Instant>>,
    ticks: Cell<u32>,
    depth: Cell<u32>,
    exhausted: Cell<bool>,
}

struct Scheduler {
    lua: Lua,
    state: Rc<RefCell<State>>,
    budget: Rc<Budget>,
    entry: Entry,
    idle: Arc<AtomicBool>,
}

/// The prelude's functions the scheduler calls.
#[derive(Clone)]
struct Entry {
    invoke: Function,
    event: Function,
    player: Function,
}

fn thread_key(thread: &Thread) -> usize {
    thread.to_pointer() as usize
}

/// The message of a script error, as a caller receives it (no Rust wrapping, no traceback).
pub(crate) fn message_of(error: &mlua::Error) -> String {
    match error {
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => m
            .split_once("\nstack traceback:")
            .map_or(m.as_str(), |(message, _)| message)
            .to_owned(),
        mlua::Error::MemoryError(_) => "not enough memory (the script host's memory limit)".into(),
        mlua::Error::CallbackError { cause, .. } => message_of(cause),
        mlua::Error::WithContext { cause, .. } => message_of(cause),
        other => other.to_string(),
    }
}

/// Whether `error` is (or wraps) Luau running out of memory.
fn is_out_of_memory(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            is_out_of_memory(cause)
        }
        _ => false,
    }
}

/// A library error raised in a script: a callee's message as it is, others with their kind.
fn lua_error(error: Error) -> mlua::Error {
    mlua::Error::runtime(lua_error_text(error))
}

fn default_output() -> OutputSink {
    Arc::new(|kind, line| match kind {
        OutputKind::Print => tracing::info!(target: "remotefn::script", "{line}"),
        OutputKind::Warn => tracing::warn!(target: "remotefn::script", "{line}"),
        OutputKind::Error => tracing::error!(target: "remotefn::script", "{line}"),
    })
}

impl Scheduler {
    fn new(
        peer: Peer,
        config: ScriptConfig,
        jobs: Sender<Job>,
        idle: Arc<AtomicBool>,
    ) -> Result<Scheduler> {
        let script_error = |e: mlua::Error| Error::Script(message_of(&e));
        let safe = StdLib::COROUTINE
            | StdLib::TABLE
            | StdLib::STRING
            | StdLib::UTF8
            | StdLib::BIT
            | StdLib::MATH
            | StdLib::BUFFER
            | StdLib::OS;
        let lua = Lua::new_with(safe, LuaOptions::default()).map_err(script_error)?;
        // `typeof` knows Instances and the host's types: scripts must call the prelude's,
        // not the compiler's inlined builtin.
        lua.set_compiler(mlua::chunk::Compiler::new().add_disabled_builtin("typeof"));
        let inbox = Inbox {
            jobs,
            queued: Arc::new(AtomicUsize::new(0)),
            limit: config.max_queued,
            dropped_events: Arc::new(AtomicU64::new(0)),
        };
        // The numbers scripts know players by, shared with the value conversion.
        lua.set_app_data(players::Handles::default());
        let state = Rc::new(RefCell::new(State {
            peer,
            inbox,
            output: config.output.clone().unwrap_or_else(default_output),
            root: config.root.clone(),
            next_op: 1,
            ops: HashMap::new(),
            waiting: HashMap::new(),
            timers: BinaryHeap::new(),
            serving: HashMap::new(),
            functions: HashSet::new(),
            events: HashSet::new(),
        }));
        let budget = Rc::new(Budget {
            limit: config.cpu_budget,
            deadline: Cell::new(None),
            ticks: Cell::new(0),
            depth: Cell::new(0),
            exhausted: Cell::new(false),
        });
        {
            let budget = budget.clone();
            lua.set_interrupt(move |_| {
                // Reading the clock at every interrupt would tax tight loops; every 64th is
                // a few microseconds apart at most.
                // Once the budget is spent, every interrupt raises: a `pcall` around the
                // loop cannot keep the coroutine running.
                let ticks = budget.ticks.get().wrapping_add(1);
                budget.ticks.set(ticks);
                if ticks % 64 == 0 || budget.exhausted.get() {
                    if let Some(deadline) = budget.deadline.get() {
                        if Instant::now() > deadline {
                            budget.exhausted.set(true);
                            return Err(mlua::Error::runtime(format!(
                                "script exhausted its CPU budget of {:?} without yielding",
                                budget.limit
                            )));
                        }
                    }
                }
                Ok(VmState::Continue)
            });
        }
        let globals = lua.globals();
        for unsafe_global in ["load", "loadstring", "getfenv", "setfenv", "collectgarbage"] {
            globals
                .raw_set(unsafe_global, LuaValue::Nil)
                .map_err(script_error)?;
        }
        types::install(&lua, &globals).map_err(script_error)?;
        let primitives = primitives(&lua, &state, &budget).map_err(script_error)?;
        let prelude = lua
            .load(include_str!("prelude.luau"))
            .set_name("=remotefn.prelude")
            .into_function()
            .map_err(script_error)?;
        let exports: Table = prelude.call(primitives).map_err(script_error)?;
        let get = |name: &str| exports.get::<Function>(name).map_err(script_error);
        lua.set_named_registry_value(values::PLAYER_ID_OF, get("player_id_of")?)
            .map_err(script_error)?;
        lua.set_named_registry_value(values::PLAYER_OF, get("player_of")?)
            .map_err(script_error)?;
        let entry = Entry {
            invoke: get("invoke")?,
            event: get("event")?,
            player: get("player")?,
        };
        lua.sandbox(true).map_err(script_error)?;
        lua.set_memory_limit(config.memory_limit)
            .map_err(script_error)?;
        Ok(Scheduler {
            lua,
            state,
            budget,
            entry,
            idle,
        })
    }

    fn run(self, inbox: &Receiver<Job>) {
        loop {
            let next_timer = self.state.borrow().timers.peek().map(|t| t.0 .0);
            let job = match next_timer {
                None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => inbox.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match job {
                Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(job) => {
                    self.handle(job);
                    // Take what else is queued before the timers: a busy server's calls
                    // are answered in batches.
                    for _ in 0..256 {
                        match inbox.try_recv() {
                            Ok(Job::Stop) => return self.stop(inbox),
                            Ok(job) => self.handle(job),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.fire_timers();
            self.update_idle();
        }
        self.stop(inbox);
    }

    fn update_idle(&self) {
        let state = self.state.borrow();
        self.idle.store(
            state.ops.is_empty() && state.functions.is_empty() && state.events.is_empty(),
            Ordering::Release,
        );
    }

    fn stop(&self, inbox: &Receiver<Job>) {
        let peer = self.state.borrow().peer.clone();
        let serving: Vec<CallId> = self
            .state
            .borrow_mut()
            .serving
            .drain()
            .map(|(_, c)| c)
            .collect();
        for call in serving {
            let _ = peer.reply(call, Err(STOPPED));
        }
        for job in inbox.try_iter() {
            match job {
                Job::Invoke { call, .. } => {
                    let _ = peer.reply(call, Err(STOPPED));
                }
                Job::Load { done, .. } => {
                    let _ = done.send(Err(Error::Closed(STOPPED.into())));
                }
                _ => {}
            }
        }
        self.idle.store(true, Ordering::Release);
    }

    fn handle(&self, job: Job) {
        let lua = &self.lua;
        if matches!(job, Job::Invoke { .. } | Job::Event { .. }) {
            self.state.borrow().inbox.taken();
        }
        match job {
            Job::Load {
                name,
                source,
                folder,
                done,
            } => {
                if let Some(folder) = folder {
                    let mut state = self.state.borrow_mut();
                    if state.root.is_none() {
                        state.root = Some(folder);
                    }
                }
                let result = lua
                    .load(source)
                    .set_name(format!("={name}"))
                    .into_function()
                    .and_then(|main| lua.create_thread(main))
                    .map_err(|e| Error::Script(message_of(&e)))
                    .and_then(|thread| {
                        resume(
                            lua,
                            &self.state,
                            &self.budget,
                            thread,
                            MultiValue::new(),
                            false,
                        )
                        .map_err(Error::Script)
                    });
                // Whoever waits for the load may ask at once whether the scripts are idle.
                self.update_idle();
                let _ = done.send(result);
            }
            Job::Invoke {
                name,
                player,
                args,
                call,
            } => {
                let started = lua
                    .create_thread(self.entry.invoke.clone())
                    .and_then(|thread| {
                        let args = call_args(lua, &name, player, &args)?;
                        Ok((thread, args))
                    });
                match started {
                    Ok((thread, args)) => {
                        self.state
                            .borrow_mut()
                            .serving
                            .insert(thread_key(&thread), call);
                        let _ = resume(lua, &self.state, &self.budget, thread, args, true);
                    }
                    Err(e) => {
                        let peer = self.state.borrow().peer.clone();
                        let _ = peer.reply(call, Err(&message_of(&e)));
                    }
                }
            }
            Job::Event { name, player, args } => {
                self.spawn_entry(&self.entry.event, |lua| {
                    call_args(lua, &name, player, &args)
                });
            }
            Job::Player { id, added } => {
                let handles = values::handles(lua);
                let handle = handles.handle(id);
                self.spawn_entry(&self.entry.player, |lua| {
                    (handle, added).into_lua_multi(lua)
                });
                if !added {
                    handles.forget(id);
                }
            }
            Job::Done { op, outcome } => {
                let Some(thread) = self.state.borrow_mut().take_wait(op).map(|w| w.thread) else {
                    return;
                };
                let args = match outcome {
                    Ok(values) => values::from_values(lua, &values).map(|mut args| {
                        args.push_front(LuaValue::Boolean(true));
                        args
                    }),
                    Err(e) => (false, lua_error_text(e)).into_lua_multi(lua),
                };
                let args = args.unwrap_or_else(|e| {
                    let text = format!("the answer cannot be read: {}", message_of(&e));
                    (false, text).into_lua_multi(lua).unwrap_or_default()
                });
                let _ = resume(lua, &self.state, &self.budget, thread, args, true);
            }
            Job::Stop => {}
        }
    }

    /// Runs a prelude entry point in a coroutine of its own.
    fn spawn_entry(&self, entry: &Function, args: impl FnOnce(&Lua) -> mlua::Result<MultiValue>) {
        let lua = &self.lua;
        match lua
            .create_thread(entry.clone())
            .and_then(|t| Ok((t, args(lua)?)))
        {
            Ok((thread, args)) => {
                let _ = resume(lua, &self.state, &self.budget, thread, args, true);
            }
            Err(e) => self.report(&message_of(&e)),
        }
    }

    fn report(&self, message: &str) {
        let output = self.state.borrow().output.clone();
        output(OutputKind::Error, message);
    }

    fn fire_timers(&self) {
        let now = Instant::now();
        loop {
            let op = {
                let mut state = self.state.borrow_mut();
                match state.timers.peek() {
                    Some(Reverse((at, op))) if *at <= now => {
                        let op = *op;
                        state.timers.pop();
                        op
                    }
                    _ => return,
                }
            };
            // Not in the `if let`: the borrow would last through the resumption.
            let wait = self.state.borrow_mut().take_wait(op);
            if let Some(wait) = wait {
                let elapsed = wait.since.map_or(0.0, |s| s.elapsed().as_secs_f64());
                let args = MultiValue::from_iter([LuaValue::Number(elapsed)]);
                let _ = resume(
                    &self.lua,
                    &self.state,
                    &self.budget,
                    wait.thread,
                    args,
                    true,
                );
            }
        }
    }
}

/// What a script sees of a library error.
fn lua_error_text(error: Error) -> String {
    match error {
        Error::Remote(message) => message,
        other => other.to_string(),
    }
}

fn call_args(
    lua: &Lua,
    name: &str,
    player: Option<PlayerId>,
    args: &[Value],
) -> mlua::Result<MultiValue> {
    let mut all = values::from_values(lua, args)?;
    let handle = player.map(|p| values::handles(lua).handle(p));
    all.push_front(handle.map_or(LuaValue::Nil, LuaValue::Number));
    all.push_front(LuaValue::String(lua.create_string(name)?));
    Ok(all)
}

/// Resumes `thread` and settles what its end means: the call it serves is answered with its
/// return values or its error; an error nobody waits for is reported (when `report`).
/// Returns the error of this resumption, if it raised one.
fn resume(
    lua: &Lua,
    state: &Rc<RefCell<State>>,
    budget: &Budget,
    thread: Thread,
    args: MultiValue,
    report: bool,
) -> std::result::Result<(), String> {
    let key = thread_key(&thread);
    state.borrow_mut().waiting.remove(&key);
    if thread.status() != ThreadStatus::Resumable {
        return Ok(());
    }
    let outer = budget.depth.get() == 0;
    if outer {
        budget.deadline.set(Some(Instant::now() + budget.limit));
    }
    budget.depth.set(budget.depth.get() + 1);
    let result = thread.resume::<MultiValue>(args);
    budget.depth.set(budget.depth.get() - 1);
    if outer {
        budget.deadline.set(None);
        budget.exhausted.set(false);
        // Luau collects no garbage when an allocation fails: free what a coroutine that
        // ran out of memory left behind, or the next callback fails too.
        if matches!(&result, Err(e) if is_out_of_memory(e)) {
            let _ = lua.gc_collect();
        }
    }
    let finished = match &result {
        Ok(_) => thread.status() == ThreadStatus::Finished,
        Err(_) => true,
    };
    if !finished {
        return Ok(());
    }
    let call = state.borrow_mut().serving.remove(&key);
    // Replying calls nothing of the scripts', so the state may stay borrowed meanwhile.
    let state = state.borrow();
    let peer = &state.peer;
    match (result, call) {
        (Ok(values), Some(call)) => match values::to_values(lua, values) {
            Ok(values) => {
                let _ = peer.reply(call, Ok(&values));
            }
            Err(e) => {
                let message = format!("the callback's return value: {}", message_of(&e));
                let _ = peer.reply(call, Err(&message));
            }
        },
        (Ok(_), None) => {}
        (Err(e), call) => {
            let message = message_of(&e);
            if let Some(call) = call {
                let _ = peer.reply(call, Err(&message));
            } else if report {
                (state.output)(OutputKind::Error, &message);
            }
            return Err(message);
        }
    }
    Ok(())
}

impl Peer {
    fn reply(&self, call: CallId, result: std::result::Result<&[Value], &str>) -> Result<()> {
        match self {
            Peer::Server(s) => s.reply(call, result),
            Peer::Client(c) => c.reply(call, result),
        }
    }

    fn bind_function(&self, name: &str, inbox: Inbox) -> Result<()> {
        let name_arc: Arc<str> = name.into();
        let forward = move |player, args, call| {
            inbox.offer(Job::Invoke {
                name: name_arc.clone(),
                player,
                args,
                call,
            })
        };
        match self {
            Peer::Server(s) => s.bind_with_call_id(name, move |s, player, args, call| {
                if let Err(why) = forward(Some(player), args, call) {
                    let _ = s.reply(call, Err(why));
                }
            }),
            Peer::Client(c) => c.bind_with_call_id(name, move |c, args, call| {
                if let Err(why) = forward(None, args, call) {
                    let _ = c.reply(call, Err(why));
                }
            }),
        }
    }

    fn unbind_function(&self, name: &str) -> Result<()> {
        match self {
            Peer::Server(s) => s.unbind(name),
            Peer::Client(c) => c.unbind(name),
        }
    }

    fn bind_event(&self, name: &str, inbox: Inbox) -> Result<()> {
        let name_arc: Arc<str> = name.into();
        let forward = move |player, args| {
            inbox.offer_event(Job::Event {
                name: name_arc.clone(),
                player,
                args,
            })
        };
        match self {
            Peer::Server(s) => {
                s.bind_event(name, move |_, player, args| forward(Some(player), args))
            }
            Peer::Client(c) => c.bind_event(name, move |_, args| forward(None, args)),
        }
    }
}

/// The player a script's handle names.
fn player_of(lua: &Lua, handle: f64) -> mlua::Result<PlayerId> {
    values::handles(lua)
        .player(handle)
        .ok_or_else(|| mlua::Error::runtime("that player has left"))
}

/// The host's primitives, handed to the prelude as its argument `rf`.
fn primitives(lua: &Lua, state: &Rc<RefCell<State>>, budget: &Rc<Budget>) -> mlua::Result<Table> {
    let rf = lua.create_table()?;
    let side = match state.borrow().peer {
        Peer::Server(_) => "server",
        Peer::Client(_) => "client",
    };
    rf.set("side", side)?;

    let st = state.clone();
    rf.set(
        "output",
        lua.create_function(move |_, (kind, line): (String, String)| {
            let kind = match kind.as_str() {
                "print" => OutputKind::Print,
                "warn" => OutputKind::Warn,
                _ => OutputKind::Error,
            };
            let output = st.borrow().output.clone();
            output(kind, &line);
            Ok(())
        })?,
    )?;

    // bind(name, "function" | "event"): serves a remote's calls or events from now on.
    let st = state.clone();
    rf.set(
        "bind",
        lua.create_function(move |_, (name, kind): (String, String)| {
            let event = kind == "event";
            if event && st.borrow().events.contains(&name) {
                return Ok(());
            }
            let (peer, inbox) = {
                let s = st.borrow();
                (s.peer.clone(), s.inbox.clone())
            };
            if event {
                peer.bind_event(&name, inbox)
            } else {
                peer.bind_function(&name, inbox)
            }
            .map_err(lua_error)?;
            let mut s = st.borrow_mut();
            if event {
                s.events.insert(name);
            } else {
                s.functions.insert(name);
            }
            Ok(())
        })?,
    )?;
    let st = state.clone();
    rf.set(
        "unbind_function",
        lua.create_function(move |_, name: String| {
            let peer = st.borrow().peer.clone();
            if st.borrow_mut().functions.remove(&name) {
                let _ = peer.unbind_function(&name);
            }
            Ok(())
        })?,
    )?;

    let st = state.clone();
    rf.set(
        "invoke",
        lua.create_function(move |lua, mut args: MultiValue| {
            let name: String = lua.unpack(args.pop_front().unwrap_or(LuaValue::Nil))?;
            let player: Option<f64> = lua.unpack(args.pop_front().unwrap_or(LuaValue::Nil))?;
            let values = values::to_values(lua, args)?;
            let thread = lua.current_thread();
            let (peer, jobs, op) = {
                let mut s = st.borrow_mut();
                let op = s.new_op();
                (s.peer.clone(), s.inbox.jobs.clone(), op)
            };
            let on_done = move |outcome| {
                let _ = jobs.send(Job::Done { op, outcome });
            };
            match (&peer, player) {
                (Peer::Server(s), Some(handle)) => {
                    s.invoke_client_then(player_of(lua, handle)?, &name, &values, on_done)
                }
                (Peer::Client(c), None) => c.invoke_server_then(&name, &values, on_done),
                _ => Err(Error::InvalidArgument(
                    "an invoke needs a player on the server only".into(),
                )),
            }
            .map_err(lua_error)?;
            st.borrow_mut().wait_on(op, thread, None);
            Ok(())
        })?,
    )?;

    let st = state.clone();
    rf.set(
        "fire",
        lua.create_function(move |lua, mut args: MultiValue| {
            let name: String = lua.unpack(args.pop_front().unwrap_or(LuaValue::Nil))?;
            let target = args.pop_front().unwrap_or(LuaValue::Nil);
            let values = values::to_values(lua, args)?;
            let peer = st.borrow().peer.clone();
            match (&peer, target) {
                (Peer::Client(c), LuaValue::Nil) => c.fire_server(&name, &values),
                (Peer::Server(s), LuaValue::String(all)) if all.as_bytes().as_ref() == b"all" => {
                    s.fire_all_clients(&name, &values)
                }
                (Peer::Server(s), target) => {
                    let handle: f64 = lua.unpack(target)?;
                    s.fire_client(player_of(lua, handle)?, &name, &values)
                }
                _ => Err(Error::InvalidArgument(
                    "a client fires at the server only".into(),
                )),
            }
            .map_err(lua_error)
        })?,
    )?;

    let st = state.clone();
    rf.set(
        "after",
        lua.create_function(move |_, (seconds, thread): (f64, Thread)| {
            let seconds = if seconds.is_finite() {
                seconds.max(0.0)
            } else {
                0.0
            };
            let now = Instant::now();
            let at = now + Duration::from_secs_f64(seconds.min(1e9));
            let mut s = st.borrow_mut();
            let op = s.new_op();
            s.wait_on(op, thread, Some(now));
            s.timers.push(Reverse((at, op)));
            Ok(())
        })?,
    )?;

    let (st, bg) = (state.clone(), budget.clone());
    rf.set(
        "spawn",
        lua.create_function(move |lua, mut args: MultiValue| {
            let thread = match args.pop_front() {
                Some(LuaValue::Function(f)) => lua.create_thread(f)?,
                Some(LuaValue::Thread(t)) => t,
                _ => {
                    return Err(mlua::Error::runtime(
                        "task.spawn takes a function or a thread",
                    ))
                }
            };
            let _ = resume(lua, &st, &bg, thread.clone(), args, true);
            Ok(thread)
        })?,
    )?;

    let st = state.clone();
    rf.set(
        "cancel",
        lua.create_function(move |_, thread: Thread| {
            let key = thread_key(&thread);
            let (call, peer) = {
                let mut s = st.borrow_mut();
                s.waiting.remove(&key);
                (s.serving.remove(&key), s.peer.clone())
            };
            if let Some(call) = call {
                let _ = peer.reply(call, Err("the callback was cancelled (task.cancel)"));
            }
            Ok(())
        })?,
    )?;

    let st = state.clone();
    rf.set(
        "kick",
        lua.create_function(move |lua, (player, reason): (Option<f64>, String)| {
            let peer = st.borrow().peer.clone();
            match (peer, player) {
                (Peer::Server(s), Some(handle)) => {
                    s.kick(player_of(lua, handle)?, &reason).map_err(lua_error)
                }
                (Peer::Client(c), _) => {
                    c.close();
                    Ok(())
                }
                _ => Err(mlua::Error::runtime("Kick needs a player")),
            }
        })?,
    )?;

    let st = state.clone();
    rf.set(
        "players",
        lua.create_function(move |lua, ()| {
            let handles = values::handles(lua);
            Ok(match &st.borrow().peer {
                Peer::Server(server) => server
                    .players()
                    .into_iter()
                    .map(|p| handles.handle(p))
                    .collect(),
                Peer::Client(c) => vec![handles.handle(c.player_id())],
            })
        })?,
    )?;
    let st = state.clone();
    rf.set(
        "player_info",
        lua.create_function(move |lua, handle: f64| {
            let Some(player) = values::handles(lua).player(handle) else {
                return Ok((None, None));
            };
            let info = match &st.borrow().peer {
                Peer::Server(server) => server.player_info(player),
                Peer::Client(_) => None,
            };
            let identity = info.map(|i| i.identity).unwrap_or_default();
            let user_id = match identity.user_id {
                0 => players::default_user_id(player, handle),
                id => id as f64,
            };
            let name = match identity.name {
                name if name.is_empty() => format!("Player{}", player.get()),
                name => name,
            };
            Ok((Some(name), Some(user_id)))
        })?,
    )?;
    let st = state.clone();
    rf.set(
        "local_player",
        lua.create_function(move |lua, ()| {
            Ok(match &st.borrow().peer {
                Peer::Server(_) => None,
                Peer::Client(c) => Some(values::handles(lua).handle(c.player_id())),
            })
        })?,
    )?;

    rf.set(
        "message",
        lua.create_function(|_, error: LuaValue| {
            Ok(match error {
                LuaValue::Error(e) => message_of(&e),
                LuaValue::String(s) => s.to_string_lossy(),
                other => format!("{other:?}"),
            })
        })?,
    )?;

    rf.set(
        "typeof",
        lua.create_function(|_, value: LuaValue| Ok(types::type_of(&value)))?,
    )?;

    let st = state.clone();
    rf.set(
        "require",
        lua.create_function(move |lua, path: String| {
            let root = st.borrow().root.clone().ok_or_else(|| {
                mlua::Error::runtime(
                    "require: there is no script folder (load a script file, or set ScriptConfig::root)",
                )
            })?;
            let (key, source, name) = resolve_module(&root, &path).map_err(mlua::Error::runtime)?;
            let chunk = lua.load(source).set_name(format!("={name}")).into_function()?;
            Ok((key, chunk))
        })?,
    )?;

    Ok(rf)
}

/// Finds module `path` under `root` (trying `.luau` and `.lua` after it), refusing anything
/// that resolves outside `root` (`..`, absolute paths, symbolic links out). Returns the
/// resolved path (the module's identity), its source and the name its errors use.
fn resolve_module(
    root: &Path,
    path: &str,
) -> std::result::Result<(String, Vec<u8>, String), String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("require: the script folder {}: {e}", root.display()))?;
    let relative = path.trim_start_matches("./");
    let candidates = [
        relative.to_owned(),
        format!("{relative}.luau"),
        format!("{relative}.lua"),
        format!("{relative}/init.luau"),
    ];
    for candidate in candidates {
        let Ok(found) = root.join(&candidate).canonicalize() else {
            continue;
        };
        if !found.starts_with(&root) {
            return Err(format!(
                "require({path:?}): modules can only be loaded from the script folder"
            ));
        }
        if !found.is_file() {
            continue;
        }
        let source = std::fs::read(&found).map_err(|e| format!("require({path:?}): {e}"))?;
        let name = found
            .strip_prefix(&root)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| candidate.clone());
        return Ok((found.display().to_string(), source, name));
    }
    Err(format!(
        "require({path:?}): no such module in the script folder"
    ))
}
