//! The state both ends share between the reactor thread and the API threads, and the work done
//! on either side of it: invoking, replying, firing, and running jobs.
//!
//! A server and a client are the same machine with a different handshake: each can invoke the
//! other, bind handlers, fire events. [`Endpoint`] holds what is common; `server` and `client`
//! are thin public APIs over it. The endpoint never touches a socket: it encodes frames and
//! sends [`Command`]s to the reactor, which owns every socket.

use crate::calls::{CallSlots, Outcome, ReplyTable};
use crate::dispatch::{
    self, blocking_section, in_inline_handler, DispatchMode, InlineTable, Job, Lookup, Pool,
    Registry,
};
use crate::driver::Mailbox;
use crate::error::{panic_message, Error, Result};
use crate::ids::{CallId, ConnId, PlayerId};
use crate::limits::Limits;
use crate::metrics::{CallOutcome, FunctionStats, FunctionTable};
use crate::proto::{self, ErrorKind, GoodbyeCode};
use crate::value::codec::{self, DecodeLimits};
use crate::value::{Tuple, Value};
use bytes::{Bytes, BytesMut};
use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which end an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// Who a player is, as decided by the authenticator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The game's id for the user (e.g. an account id); 0 when anonymous.
    pub user_id: u64,
    /// A display name; empty when anonymous.
    pub name: String,
}

/// One handshake to decide.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    /// The place the player asked to join (empty for an embedded server).
    pub place: String,
    /// The player's credentials, opaque to the library.
    pub token: Bytes,
    /// The player's address, as seen by the server.
    pub peer: Option<SocketAddr>,
}

pub(crate) type FnHandler = Arc<dyn Fn(&Arc<Endpoint>, ConnId, Tuple, CallId) + Send + Sync>;
/// A handler declared non-blocking, run on the event loop's thread (see [`dispatch::inline`]):
/// it returns its answer, or `None` when it gave it through its call id.
pub(crate) type InlineHandler =
    Arc<dyn Fn(ConnId, Tuple, CallId) -> Option<dispatch::InlineAnswer> + Send + Sync>;
pub(crate) type EventHandler = Arc<dyn Fn(&Arc<Endpoint>, ConnId, Tuple) + Send + Sync>;
pub(crate) type PlayerHook = Arc<dyn Fn(&Arc<Endpoint>, PlayerId) + Send + Sync>;
pub(crate) type Authenticator = Arc<
    dyn Fn(&Arc<Endpoint>, &AuthRequest) -> std::result::Result<Identity, String> + Send + Sync,
>;

/// A function bound to run on the workers, with the stats its calls are counted in.
#[derive(Clone)]
pub(crate) struct BoundFn {
    handler: FnHandler,
    stats: Arc<FunctionStats>,
}

/// A function bound inline (see [`dispatch::inline`]), with its stats.
#[derive(Clone)]
pub(crate) struct BoundInline {
    pub handler: InlineHandler,
    pub stats: Arc<FunctionStats>,
}

/// Where the reply to an inbound call goes, and what its answer is counted in.
pub(crate) struct Route {
    pub conn: ConnId,
    pub call: u64,
    stats: Arc<FunctionStats>,
    /// When its handler started on it.
    started: Instant,
}

/// What the API threads ask of the reactor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send an outbound call's frame and track `call` on the connection, so a disconnect or a
    /// reply from that connection (and only that one) completes it.
    Call {
        conn: ConnId,
        call: CallId,
        frame: BytesMut,
    },
    /// The caller of `call` gave up on it (timed out) and frees its slot after this command:
    /// a late reply from `conn` must find nothing to complete.
    Abandon { conn: ConnId, call: CallId },
    /// Send a frame.
    Send { conn: ConnId, frame: BytesMut },
    /// Send the reply (RESULT or ERROR) to an inbound call of `conn`.
    Reply { conn: ConnId, frame: BytesMut },
    /// Send a frame to every player that finished the handshake.
    Broadcast { frame: Bytes },
    /// The authenticator accepted a handshake.
    Accept { conn: ConnId, identity: Identity },
    /// The authenticator refused a handshake.
    Refuse { conn: ConnId, reason: String },
    /// Close a connection with a goodbye.
    Close {
        conn: ConnId,
        code: GoodbyeCode,
        reason: String,
    },
    /// Close everything and stop.
    Shutdown,
    /// Serve a player another loop accepted.
    Adopt(crate::driver::Accepted),
    /// Start listening for players (a server that began by attaching to a relay).
    Listen {
        listener: std::net::TcpListener,
        done: crossbeam_channel::Sender<std::io::Result<()>>,
    },
    /// A host link to a relay, handshake done, to serve that relay's players.
    AddLink {
        /// Boxed: a session is large, and every command on the channel would pay for it.
        link: Box<crate::driver::dial::Dialled>,
        spec: LinkSpec,
    },
}

/// Where and how a server attaches to a relay; kept to reattach when the link drops.
#[derive(Clone, Debug)]
pub(crate) struct LinkSpec {
    pub addr: String,
    pub place: String,
    pub secret: Bytes,
    /// TLS to the relay, if the link speaks it.
    pub tls: Option<crate::tls::Connector>,
}

/// A connected player, as the registry knows them.
#[derive(Clone, Debug)]
pub struct PlayerInfo {
    /// Who the authenticator said they are.
    pub identity: Identity,
    /// Their address.
    pub peer: Option<SocketAddr>,
}

/// What a server or client is, shared by its API handles, its reactor and its workers. Its
/// fields are its own: the others go through the methods below.
pub(crate) struct Endpoint {
    side: Side,
    limits: Limits,
    /// Largest frame the peer accepts from us (a client learns it from the welcome).
    max_send: u32,
    calls: CallSlots,
    replies: ReplyTable<Route>,
    functions: Registry<BoundFn, Job>,
    /// Functions bound inline; each is in `functions` too, wrapped, for calls that reach a
    /// worker anyway (queued before it was bound, or raced with the binding).
    inline: InlineTable<BoundInline>,
    /// The calls of each function, by outcome, and its handlers' time (for metrics).
    function_stats: FunctionTable,
    events: Registry<EventHandler, Job>,
    player_added: RwLock<Vec<PlayerHook>>,
    player_removing: RwLock<Vec<PlayerHook>>,
    authenticator: RwLock<Option<Authenticator>>,
    players: RwLock<HashMap<PlayerId, PlayerInfo>>,
    pool: OnceLock<Pool>,
    /// Its event loops (a client has one), each with its own commands, waker and counters:
    /// nothing on a call's path is shared between loops.
    loops: Box<[CachePadded<EventLoop>]>,
    closed: AtomicBool,
    reactors: Mutex<Vec<JoinHandle<()>>>,
    local_addr: OnceLock<SocketAddr>,
    /// Client: why the connection to the server ended, once it has.
    lost: Mutex<Option<String>>,
    /// Server: TLS for its players and for its links to relays.
    tls: OnceLock<TlsSetup>,
}

/// A server's TLS: what its listener serves players with, and what its host links speak.
#[derive(Default)]
pub(crate) struct TlsSetup {
    pub players: Option<Arc<crate::tls::Acceptor>>,
    pub relays: Option<crate::tls::Connector>,
}

/// What the API threads share with one event loop.
struct EventLoop {
    mailbox: Mailbox<Command>,
    counters: crate::stats::Counters,
}

impl Command {
    /// The connection a command is for (None: the endpoint as a whole, or its first loop).
    fn conn(&self) -> Option<ConnId> {
        match self {
            Command::Call { conn, .. }
            | Command::Abandon { conn, .. }
            | Command::Send { conn, .. }
            | Command::Reply { conn, .. }
            | Command::Accept { conn, .. }
            | Command::Refuse { conn, .. }
            | Command::Close { conn, .. } => Some(*conn),
            _ => None,
        }
    }
}

impl Endpoint {
    /// Creates the endpoint, for `loops` event loops (at least one), and starts its dispatch
    /// pool.
    pub(crate) fn start(
        side: Side,
        limits: Limits,
        max_send: u32,
        mode: DispatchMode,
        workers: usize,
        loops: usize,
    ) -> Arc<Endpoint> {
        let loops = (0..loops.max(1))
            .map(|_| {
                CachePadded::new(EventLoop {
                    mailbox: Mailbox::default(),
                    counters: Default::default(),
                })
            })
            .collect();
        let ep = Arc::new(Endpoint {
            side,
            max_send,
            calls: CallSlots::new(limits.max_calls_in_flight),
            replies: ReplyTable::new(limits.max_pending_replies),
            functions: Registry::new(limits.queue_per_function),
            inline: InlineTable::default(),
            function_stats: FunctionTable::default(),
            events: Registry::new(limits.queue_per_function),
            limits,
            player_added: RwLock::new(Vec::new()),
            player_removing: RwLock::new(Vec::new()),
            authenticator: RwLock::new(None),
            players: RwLock::new(HashMap::new()),
            pool: OnceLock::new(),
            loops,
            closed: AtomicBool::new(false),
            reactors: Mutex::new(Vec::new()),
            local_addr: OnceLock::new(),
            lost: Mutex::new(None),
            tls: OnceLock::new(),
        });
        let weak = Arc::downgrade(&ep);
        let runner: Arc<dyn Fn(Job) -> bool + Send + Sync> =
            Arc::new(move |job| weak.upgrade().is_some_and(|ep| ep.run_job(job)));
        let name = match side {
            Side::Server => "rf-server",
            Side::Client => "rf-client",
        };
        // The runner holds the endpoint weakly: pool threads never keep an endpoint alive.
        let pool = Pool::start(mode, workers, runner, name);
        ep.pool.set(pool).ok().expect("pool set once");
        ep
    }

    fn pool(&self) -> &Pool {
        self.pool.get().expect("pool started with the endpoint")
    }

    /// Sets the server's TLS (once, before it listens or attaches).
    pub(crate) fn set_tls(&self, tls: TlsSetup) {
        let _ = self.tls.set(tls);
    }

    /// The server's TLS (none set: plaintext).
    pub(crate) fn tls(&self) -> &TlsSetup {
        static PLAINTEXT: TlsSetup = TlsSetup {
            players: None,
            relays: None,
        };
        self.tls.get().unwrap_or(&PLAINTEXT)
    }

    /// Which end this is.
    pub(crate) fn side(&self) -> Side {
        self.side
    }

    /// The limits it enforces.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The counters event loop `event_loop` keeps.
    pub(crate) fn counters(&self, event_loop: usize) -> &crate::stats::Counters {
        &self.loops[event_loop].counters
    }

    /// Its counters, over every loop.
    pub(crate) fn stats(&self) -> crate::Stats {
        let mut total = crate::Stats::default();
        for l in self.loops.iter() {
            l.counters.add_to(&mut total);
        }
        total
    }

    /// The loop that owns `conn`. An id from the game names any loop it likes: one past the
    /// last is sent to the last, whose lookup then finds no such player.
    fn loop_of(&self, conn: ConnId) -> usize {
        conn.event_loop().min(self.loops.len() - 1)
    }

    /// How many event loops it runs.
    pub(crate) fn loop_count(&self) -> usize {
        self.loops.len()
    }

    /// The functions bound inline.
    pub(crate) fn inline_handlers(&self) -> &InlineTable<BoundInline> {
        &self.inline
    }

    /// The call slots its callers park on.
    pub(crate) fn calls(&self) -> &CallSlots {
        &self.calls
    }

    /// Hands a job to the dispatch pool.
    pub(crate) fn submit(&self, job: Job) {
        self.pool().submit(job);
    }

    /// The commands other threads sent the reactor since it last looked; the reactor is woken
    /// again for the next.
    pub(crate) fn take_commands(
        &self,
        event_loop: usize,
    ) -> crossbeam_channel::TryIter<'_, Command> {
        self.loops[event_loop].mailbox.take()
    }

    /// Gives loop `event_loop` its waker; false if it already has one.
    pub(crate) fn set_waker(&self, event_loop: usize, waker: mio::Waker) -> bool {
        self.loops[event_loop].mailbox.set_waker(waker)
    }

    /// The reactor threads' handles, once started.
    pub(crate) fn reactors(&self) -> parking_lot::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.reactors.lock()
    }

    /// Marks the endpoint closed: every later operation fails with `Closed`.
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// The address a server listens on, once it does.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get().copied()
    }

    /// Records the address a server listens on (once).
    pub(crate) fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.local_addr.set(addr);
    }

    /// Client: why its connection ended, once it has.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.lock().clone()
    }

    /// Client: records why its connection ended.
    pub(crate) fn set_lost(&self, why: String) {
        *self.lost.lock() = Some(why);
    }

    /// Whether an authenticator decides handshakes.
    pub(crate) fn has_authenticator(&self) -> bool {
        self.authenticator.read().is_some()
    }

    /// Sets the authenticator.
    pub(crate) fn set_authenticator(&self, authenticator: Authenticator) {
        *self.authenticator.write() = Some(authenticator);
    }

    /// Adds a PlayerAdded (`added`) or PlayerRemoving hook.
    pub(crate) fn add_player_hook(&self, added: bool, hook: PlayerHook) {
        let hooks = if added {
            &self.player_added
        } else {
            &self.player_removing
        };
        hooks.write().push(hook);
    }

    /// A player finished the handshake.
    pub(crate) fn add_player(&self, id: PlayerId, info: PlayerInfo) {
        self.players.write().insert(id, info);
    }

    /// A player is gone.
    pub(crate) fn remove_player(&self, id: PlayerId) {
        self.players.write().remove(&id);
    }

    /// Players that finished the handshake and are still connected.
    pub(crate) fn player_count(&self) -> usize {
        self.players.read().len()
    }

    /// Whether `id` is a connected player.
    pub(crate) fn has_player(&self, id: PlayerId) -> bool {
        self.players.read().contains_key(&id)
    }

    /// The ids of the connected players.
    pub(crate) fn player_ids(&self) -> Vec<PlayerId> {
        self.players.read().keys().copied().collect()
    }

    /// What is known of a player.
    pub(crate) fn player_info(&self, id: PlayerId) -> Option<PlayerInfo> {
        self.players.read().get(&id).cloned()
    }

    /// Inbound calls waiting for a handler to be bound.
    pub(crate) fn calls_waiting_for_handler(&self) -> usize {
        self.functions.waiting()
    }

    /// Inbound calls whose handler has not answered yet.
    pub(crate) fn replies_pending(&self) -> usize {
        self.replies.pending()
    }

    /// Its metrics in the Prometheus text format.
    pub(crate) fn metrics(&self) -> String {
        let gauges = crate::metrics::Gauges {
            players: self.player_count(),
            queued_jobs: self.pool().queued(),
            calls_waiting_for_handler: self.calls_waiting_for_handler(),
            replies_pending: self.replies_pending(),
            calls_out_in_flight: self.calls.in_flight(),
        };
        crate::metrics::render(&self.stats(), &gauges, &self.function_stats)
    }

    pub(crate) fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_depth: self.limits.max_depth,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed("shut down".into()));
        }
        Ok(())
    }

    /// Sends a command to the loop that owns its connection (the first loop for the others;
    /// every loop for a broadcast or a shutdown).
    pub(crate) fn command(&self, cmd: Command) {
        match cmd {
            Command::Broadcast { frame } => {
                for event_loop in 0..self.loops.len() {
                    let frame = frame.clone();
                    self.command_to(event_loop, Command::Broadcast { frame });
                }
            }
            Command::Shutdown => {
                for event_loop in 0..self.loops.len() {
                    self.command_to(event_loop, Command::Shutdown);
                }
            }
            cmd => {
                let event_loop = cmd.conn().map_or(0, |conn| self.loop_of(conn));
                self.command_to(event_loop, cmd)
            }
        }
    }

    /// Sends a command to loop `event_loop`.
    pub(crate) fn command_to(&self, event_loop: usize, cmd: Command) {
        self.loops[event_loop].mailbox.send(cmd);
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if name.len() > u16::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "name of {} bytes is longer than {} bytes",
                name.len(),
                u16::MAX
            )));
        }
        Ok(())
    }

    fn check_frame_size(&self, frame: &[u8]) -> Result<()> {
        let len = frame.len() - 4;
        if len > self.max_send as usize {
            return Err(Error::Limit(format!(
                "payload of {len} bytes exceeds the peer's limit of {} bytes",
                self.max_send
            )));
        }
        Ok(())
    }

    /// Calls `name` on connection `conn` and blocks until it answers, fails, or times out.
    pub(crate) fn invoke(
        &self,
        conn: ConnId,
        name: &str,
        args: &[Value],
        timeout: Option<Duration>,
    ) -> Result<Tuple> {
        self.check_open()?;
        self.check_name(name)?;
        if in_inline_handler() {
            return Err(Error::InvalidArgument(format!(
                "cannot invoke {name:?} from an inline handler: it runs on the event loop, \
                 which would wait on itself; bind the calling function with bind() instead"
            )));
        }
        self.check_not_lost()?;
        let call = self.calls.acquire()?;
        self.send_call(conn, call, name, args)?;
        let outcome = {
            let _blocked = blocking_section();
            let abandon = || self.command(Command::Abandon { conn, call });
            self.calls.wait_or(call, timeout, abandon)
        };
        self.decode_outcome(outcome)
    }

    /// Calls `name` on connection `conn` without blocking: `on_done` receives the outcome when
    /// the peer answers, fails, or goes away, or when this endpoint shuts down. It runs on the
    /// thread that completes the call (the event loop's), so it must only hand the result on.
    /// An error returned here means the call was not sent and `on_done` will not run.
    pub(crate) fn invoke_then(
        &self,
        conn: ConnId,
        name: &str,
        args: &[Value],
        on_done: impl FnOnce(Result<Tuple>) + Send + 'static,
    ) -> Result<()> {
        self.check_open()?;
        self.check_name(name)?;
        self.check_not_lost()?;
        let limits = self.decode_limits();
        let call = self
            .calls
            .acquire_notify(Box::new(move |outcome: Outcome| {
                let decoded = outcome.and_then(|values| {
                    codec::decode_tuple(&values, limits)
                        .map_err(|e| Error::Protocol(format!("malformed reply from the peer: {e}")))
                });
                on_done(decoded);
            }))?;
        self.send_call(conn, call, name, args)
    }

    /// Fails with why the connection was lost, if it was (a client's).
    fn check_not_lost(&self) -> Result<()> {
        match self.lost.lock().as_ref() {
            Some(why) => Err(Error::Disconnected(why.clone())),
            None => Ok(()),
        }
    }

    /// Encodes call `call` and hands it to the event loop of `conn`; on failure the slot is
    /// released and nothing is sent.
    fn send_call(&self, conn: ConnId, call: CallId, name: &str, args: &[Value]) -> Result<()> {
        let mut frame = BytesMut::with_capacity(64);
        let encoded =
            proto::encode_invoke(&mut frame, call.get(), name, args, self.limits.max_depth)
                .map_err(|e| Error::InvalidArgument(format!("arguments cannot be sent: {e}")))
                .and_then(|()| self.check_frame_size(&frame));
        if let Err(e) = encoded {
            self.calls.release(call);
            return Err(e);
        }
        crate::stats::bump(&self.counters(self.loop_of(conn)).calls_out, 1);
        self.command(Command::Call { conn, call, frame });
        Ok(())
    }

    fn decode_outcome(&self, outcome: Outcome) -> Result<Tuple> {
        let values = outcome?;
        codec::decode_tuple(&values, self.decode_limits())
            .map_err(|e| Error::Protocol(format!("malformed reply from the peer: {e}")))
    }

    /// Completes inbound call `call` with values or an error message.
    pub(crate) fn reply(
        &self,
        call: CallId,
        result: std::result::Result<&[Value], &str>,
    ) -> Result<()> {
        if in_inline_handler() {
            let answer = result
                .map(|values| Tuple(values.to_vec()))
                .map_err(str::to_owned);
            match dispatch::inline::answer(call, answer) {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(already_completed(call)),
                Err(_) => {} // another call's id: the reply table's
            }
        }
        let Some(route) = self.replies.take(call) else {
            return Err(already_completed(call));
        };
        let mut frame = BytesMut::with_capacity(64);
        let outcome = self.encode_reply(&mut frame, route.call, result);
        let counted = match (result, &outcome) {
            (Ok(_), Ok(())) => CallOutcome::Ok,
            _ => CallOutcome::Error,
        };
        route.stats.answered(counted, route.started.elapsed());
        self.command(Command::Reply {
            conn: route.conn,
            frame,
        });
        outcome
    }

    /// Appends the reply to the peer's call `call` (its RESULT, or its ERROR) to `out`. Values
    /// that cannot be sent (too deep, too large for the peer) are an error here, and the
    /// caller gets an ERROR saying so rather than waiting forever.
    pub(crate) fn encode_reply(
        &self,
        out: &mut BytesMut,
        call: u64,
        result: std::result::Result<&[Value], &str>,
    ) -> Result<()> {
        let start = out.len();
        match result {
            Ok(values) => {
                let encoded = proto::encode_result(out, call, values, self.limits.max_depth)
                    .map_err(|e| Error::InvalidArgument(format!("results cannot be sent: {e}")))
                    .and_then(|()| self.check_frame_size(&out[start..]));
                if let Err(e) = encoded {
                    out.truncate(start);
                    proto::encode_error(out, call, ErrorKind::Handler, &e.to_string());
                    return Err(e);
                }
                Ok(())
            }
            Err(message) => {
                proto::encode_error(out, call, ErrorKind::Handler, message);
                Ok(())
            }
        }
    }

    /// Completes inbound call `call` with a handler's return value.
    pub(crate) fn reply_result<E: std::fmt::Display>(
        &self,
        call: CallId,
        result: std::result::Result<Tuple, E>,
    ) -> Result<()> {
        match result {
            Ok(values) => self.reply(call, Ok(&values)),
            Err(e) => self.reply(call, Err(&e.to_string())),
        }
    }

    fn send_error(&self, conn: ConnId, call: u64, kind: ErrorKind, message: &str) {
        let mut frame = BytesMut::new();
        proto::encode_error(&mut frame, call, kind, message);
        self.command(Command::Reply { conn, frame });
    }

    fn encode_event(&self, name: &str, args: &[Value]) -> Result<BytesMut> {
        self.check_open()?;
        self.check_name(name)?;
        let mut frame = BytesMut::with_capacity(64);
        proto::encode_event(&mut frame, name, args, self.limits.max_depth)
            .map_err(|e| Error::InvalidArgument(format!("arguments cannot be sent: {e}")))?;
        self.check_frame_size(&frame)?;
        Ok(frame)
    }

    /// Fires event `name` at connection `conn`.
    pub(crate) fn fire(&self, conn: ConnId, name: &str, args: &[Value]) -> Result<()> {
        let frame = self.encode_event(name, args)?;
        if let Some(why) = self.lost.lock().as_ref() {
            return Err(Error::Disconnected(why.clone()));
        }
        self.command(Command::Send { conn, frame });
        Ok(())
    }

    /// Fires event `name` at every player.
    pub(crate) fn fire_all(&self, name: &str, args: &[Value]) -> Result<()> {
        let frame = self.encode_event(name, args)?.freeze();
        self.command(Command::Broadcast { frame });
        Ok(())
    }

    /// Binds a function handler and releases the calls that were waiting for it.
    pub(crate) fn bind(&self, name: &str, handler: FnHandler) -> Result<()> {
        self.check_open()?;
        self.check_name(name)?;
        self.inline.remove(name);
        self.bind_on_workers(name, handler, self.function_stats.of(name));
        Ok(())
    }

    /// Binds a function handler to run on the event loop (see [`dispatch::inline`]); calls
    /// that were waiting for it run on the workers.
    pub(crate) fn bind_inline(&self, name: &str, handler: InlineHandler) -> Result<()> {
        self.check_open()?;
        self.check_name(name)?;
        let stats = self.function_stats.of(name);
        self.inline.insert(
            name,
            BoundInline {
                handler: handler.clone(),
                stats: stats.clone(),
            },
        );
        let function = name.to_owned();
        let on_workers: FnHandler = Arc::new(move |ep, conn, args, call| {
            let answer = dispatch::inline::run(&function, |id| handler(conn, args, id));
            let _ = ep.reply_result(call, answer);
        });
        self.bind_on_workers(name, on_workers, stats);
        Ok(())
    }

    fn bind_on_workers(&self, name: &str, handler: FnHandler, stats: Arc<FunctionStats>) {
        for job in self.functions.bind(name, BoundFn { handler, stats }) {
            self.pool().submit(job);
        }
    }

    /// Binds an event handler and releases the events that were waiting for it.
    pub(crate) fn bind_event(&self, name: &str, handler: EventHandler) -> Result<()> {
        self.check_open()?;
        self.check_name(name)?;
        for job in self.events.bind(name, handler) {
            self.pool().submit(job);
        }
        Ok(())
    }

    /// Unbinds a function handler.
    pub(crate) fn unbind(&self, name: &str) -> Result<()> {
        let inline = self.inline.remove(name);
        if self.functions.unbind(name) || inline {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "no handler is bound to {name:?}"
            )))
        }
    }

    /// Manual mode: runs queued handlers on this thread.
    pub(crate) fn dispatch(&self, max: usize, timeout: Duration) -> Result<usize> {
        self.check_open()?;
        if self.pool().mode() != DispatchMode::Manual {
            return Err(Error::InvalidArgument(
                "dispatch() is for manual dispatch mode; this endpoint runs handlers on workers"
                    .into(),
            ));
        }
        Ok(self.pool().pump(max, timeout))
    }

    /// Runs one job on the current (worker or dispatching) thread. Returns whether it ran one
    /// of the game's callbacks (a handler, a player hook, the authenticator): what manual
    /// dispatch counts. A call queued for a handler not yet bound, or a player hook job with no
    /// hook registered, ran nothing.
    fn run_job(self: &Arc<Self>, job: Job) -> bool {
        match job {
            Job::Invoke {
                conn,
                call,
                name,
                args,
            } => self.run_invoke(conn, call, name, args),
            Job::Event { conn, name, args } => self.run_event(conn, name, args),
            Job::PlayerAdded(player) => self.run_hooks(&self.player_added, player),
            Job::PlayerRemoving(player) => self.run_hooks(&self.player_removing, player),
            Job::Authenticate { conn, place, token } => self.run_authenticate(conn, place, token),
        }
    }

    fn run_invoke(self: &Arc<Self>, conn: ConnId, call: u64, name: Bytes, args: Bytes) -> bool {
        let fname = dispatch::name_str(&name);
        let handler = match self.functions.lookup_or_queue(
            fname,
            Job::Invoke {
                conn,
                call,
                name: name.clone(),
                args,
            },
        ) {
            Lookup::Run(h, Job::Invoke { args, .. }) => (h, args),
            Lookup::Run(..) => unreachable!("registry hands back the job it was given"),
            Lookup::Queued => return false,
            Lookup::Full(_) => {
                self.function_stats.unbound().refused(CallOutcome::Limit);
                let msg = format!(
                    "no handler is bound to {fname:?} and its queue is full ({} calls)",
                    self.limits.queue_per_function
                );
                self.send_error(conn, call, ErrorKind::Limit, &msg);
                return false;
            }
        };
        let (BoundFn { handler, stats }, args) = handler;
        let args = match codec::decode_tuple(&args, self.decode_limits()) {
            Ok(args) => args,
            Err(e) => {
                stats.refused(CallOutcome::Invalid);
                let reason = format!("malformed arguments to {fname:?}: {e}");
                self.send_error(conn, call, ErrorKind::InvalidArgument, &reason);
                self.command(Command::Close {
                    conn,
                    code: GoodbyeCode::ProtocolError,
                    reason,
                });
                return false;
            }
        };
        let route = Route {
            conn,
            call,
            stats,
            started: Instant::now(),
        };
        let local = match self.replies.insert(route) {
            Ok(local) => local,
            Err(route) => {
                route.stats.refused(CallOutcome::Limit);
                let msg = format!(
                    "{} calls already await a reply",
                    self.limits.max_pending_replies
                );
                self.send_error(conn, call, ErrorKind::Limit, &msg);
                return false;
            }
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handler(self, conn, args, local))) {
            let msg = format!("handler for {fname:?} panicked: {}", panic_message(&panic));
            tracing::error!(player = conn.0, "{msg}");
            // Ignored when the handler replied before panicking.
            let _ = self.reply(local, Err(&msg));
        }
        true
    }

    fn run_event(self: &Arc<Self>, conn: ConnId, name: Bytes, args: Bytes) -> bool {
        let ename = dispatch::name_str(&name);
        let (handler, args) = match self.events.lookup_or_queue(
            ename,
            Job::Event {
                conn,
                name: name.clone(),
                args,
            },
        ) {
            Lookup::Run(h, Job::Event { args, .. }) => (h, args),
            Lookup::Run(..) => unreachable!("registry hands back the job it was given"),
            Lookup::Queued => return false,
            Lookup::Full(_) => {
                tracing::warn!(
                    player = conn.0,
                    event = ename,
                    "event dropped: no handler and its queue is full"
                );
                return false;
            }
        };
        match codec::decode_tuple(&args, self.decode_limits()) {
            Ok(args) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handler(self, conn, args))) {
                    tracing::error!(
                        player = conn.0,
                        event = ename,
                        "event handler panicked: {}",
                        panic_message(&panic)
                    );
                }
                true
            }
            Err(e) => {
                self.command(Command::Close {
                    conn,
                    code: GoodbyeCode::ProtocolError,
                    reason: format!("malformed arguments to event {ename:?}: {e}"),
                });
                false
            }
        }
    }

    fn run_hooks(self: &Arc<Self>, hooks: &RwLock<Vec<PlayerHook>>, player: PlayerId) -> bool {
        let hooks = hooks.read().clone();
        let ran = !hooks.is_empty();
        for hook in hooks {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook(self, player))) {
                tracing::error!(
                    player = player.get(),
                    "player callback panicked: {}",
                    panic_message(&panic)
                );
            }
        }
        ran
    }

    fn run_authenticate(self: &Arc<Self>, conn: ConnId, place: String, token: Bytes) -> bool {
        let auth = self.authenticator.read().clone();
        let ran = auth.is_some();
        let peer = self.players.read().get(&conn.player()).and_then(|p| p.peer);
        let request = AuthRequest { place, token, peer };
        let decision = match auth {
            None => Ok(Identity::default()),
            Some(auth) => {
                catch_unwind(AssertUnwindSafe(|| auth(self, &request))).unwrap_or_else(|panic| {
                    Err(format!("authenticator panicked: {}", panic_message(&panic)))
                })
            }
        };
        self.command(match decision {
            Ok(identity) => Command::Accept { conn, identity },
            Err(reason) => Command::Refuse { conn, reason },
        });
        ran
    }

    /// Stops everything: fails pending calls with Closed, closes connections with a goodbye,
    /// joins the reactor and the workers. Idempotent.
    pub(crate) fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.calls.fail_all(&Error::Closed("shut down".into()));
        self.command(Command::Shutdown);
        let reactors = std::mem::take(&mut *self.reactors.lock());
        for reactor in reactors {
            if reactor.thread().id() != std::thread::current().id() {
                let _ = reactor.join();
            }
        }
        self.functions.clear();
        self.inline.clear();
        self.events.clear();
        self.player_added.write().clear();
        self.player_removing.write().clear();
        self.authenticator.write().take();
        self.pool().shutdown();
    }
}

fn already_completed(call: CallId) -> Error {
    Error::InvalidArgument(format!(
        "call id {:#x} is unknown or already completed",
        call.get()
    ))
}

/// The right to answer one inbound call, for handlers that reply later (deferred replies).
///
/// Reply with [`Responder::reply`] from any thread. A responder dropped without replying
/// answers the caller with an error, so no caller is left waiting forever by mistake.
pub struct Responder {
    ep: Arc<Endpoint>,
    call: CallId,
    replied: bool,
}

impl Responder {
    pub(crate) fn new(ep: Arc<Endpoint>, call: CallId) -> Responder {
        Responder {
            ep,
            call,
            replied: false,
        }
    }

    /// The id of the call being answered.
    pub fn call_id(&self) -> CallId {
        self.call
    }

    /// Answers the call with values, or with an error the caller receives as `Error::Remote`.
    pub fn reply<E: std::fmt::Display>(
        mut self,
        result: std::result::Result<Tuple, E>,
    ) -> Result<()> {
        self.replied = true;
        self.ep.reply_result(self.call, result)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.replied {
            let _ = self.ep.reply(
                self.call,
                Err("the handler dropped the call without replying"),
            );
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("call", &self.call)
            .finish()
    }
}
