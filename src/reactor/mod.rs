//! The event loop: one mio `Poll` owning every socket of an endpoint.
//!
//! Connections live in a [`Slab`]; a connection's token is its slab key, and its id (the
//! player id on a server) is `serial << 32 | key`, so a command for a connection that has since
//! closed, and whose key was reused, is recognised and dropped. Reads are drained until
//! `WouldBlock` (mio is edge-triggered) straight into the connection's protocol buffer, frames
//! are cut without copying and routed: calls and events to the dispatch pool, replies to the
//! call slots. Frames queued for a connection during one loop turn are written together, with
//! one `write` where the socket takes them all.
//!
//! The reactor never runs user code and never blocks; other threads reach it through the
//! endpoint's command channel and a [`mio::Waker`].

mod link;
pub(crate) mod socket;

pub(crate) use link::{connect_link, LinkSpec, LINK_OVERHEAD};

use crate::calls::CallId;
use crate::dispatch::Job;
use crate::endpoint::{Command, Endpoint, Identity, PlayerInfo, Side};
use crate::error::Error;
use crate::proto::session::{partial_after_write, CLOSING_READ_BUDGET};
use crate::proto::{
    self, Admission, Deadlines, ErrorKind, Frame, GoodbyeCode, ProtocolError, RateShaper, Role,
    CLOSING_GRACE, READ_CHUNK,
};
use crate::stats::{bump, CutLog};
use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket::{read_step, write_step, Step};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// How long shutdown waits for goodbyes to be written before closing sockets anyway.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
/// How often timers (handshake and idle timeouts, heartbeats) are checked.
const TICK: Duration = Duration::from_millis(100);
/// Time a loop turn may spend on connection housekeeping (accepting, handshakes, refusals,
/// timeouts, goodbyes and closes) once its players are served, at least (it also gets half as
/// long as serving the players took, so a busy loop keeps a third of its time for newcomers);
/// the rest waits for the next turn. Each of those costs a few syscalls, so a burst (a thousand handshakes timing out
/// together, a reconnect storm) would otherwise hold the loop for milliseconds while the frames
/// of live players wait.
const HOUSEKEEPING_PER_TURN: Duration = Duration::from_micros(100);
/// Jobs gathered before they are handed to the pool, at most (the rest of a turn's jobs follow
/// at its end): enough to cover a worker's wake-up, few enough that the first waits little.
const SUBMIT_BATCH: usize = 32;
/// Unwritten output above which a player's input is left unread until the output drains: a
/// peer that does not read its answers gets no more requests served (TCP pushes back on it)
/// rather than costing the server work whose results pile up.
const PAUSE_READING_ABOVE: usize = 256 * 1024;
/// Full reads one connection gets per loop turn before the others have their turn: a peer
/// that sends without pause cannot hold the reactor.
const READS_PER_TURN: usize = 4;

/// What a connection is.
enum ConnKind {
    /// A peer on its own socket: a player of a server, or a client's server.
    Direct,
    /// A player behind a relay, reached through the host link at slab key `link`.
    Relayed { link: usize },
    /// A host link to a relay, carrying the frames of the relay's players.
    Link(LinkSpec),
}

/// One connection: its socket, protocol state, and what is in flight on it.
struct Conn {
    /// None for a relayed player: its frames travel on its link's socket.
    socket: Option<TcpStream>,
    kind: ConnKind,
    proto: proto::Connection,
    id: u64,
    peer: Option<SocketAddr>,
    out: BytesMut,
    /// Bytes at the front of `out` that finish a frame already partly written; past them `out`
    /// holds whole frames, which a close for a violation may drop so its goodbye goes next.
    out_partial: usize,
    /// Outbound calls awaiting a reply from this connection.
    calls: Vec<CallId>,
    /// Prune timed-out ids from `calls` when it reaches this length.
    prune_at: usize,
    welcomed: bool,
    /// Close once `out` is written (after a goodbye or refusal) and the peer has closed its
    /// side; when that started, and how much more input will be read and discarded meanwhile.
    closing: bool,
    closing_since: Option<Instant>,
    closing_read_budget: usize,
    /// Our side is shut down (FIN sent). Only once: each shutdown call raises a new epoll
    /// event, which would bring us straight back here.
    write_shut: bool,
    /// Pending calls already failed and the disconnect already counted: what is left of the
    /// connection is its socket, finishing the close.
    retired: bool,
    queued_for_flush: bool,
    /// A timer expired and its close is queued (so the next ticks do not queue it again).
    expiring: bool,
    opened: Instant,
    /// When the peer last sent anything; a ping is out if `pinged`.
    last_heard: Instant,
    pinged: bool,
    /// When output last went out (or started waiting); input is left unread while `out` is
    /// over [`PAUSE_READING_ABOVE`].
    last_write: Instant,
    reading_paused: bool,
    /// Inbound calls from this peer not yet answered.
    inflight_in: u32,
    rate: RateShaper,
    /// Over its rate: its input is left unread until its resume deadline.
    rate_paused: bool,
}

/// Why a connection is being closed.
struct CloseReason {
    /// The goodbye to send first, if the peer should be told.
    goodbye: Option<(GoodbyeCode, String)>,
    /// What pending calls on the connection fail with.
    error: Error,
}

impl CloseReason {
    fn peer_gone(why: impl Into<String>) -> CloseReason {
        CloseReason {
            goodbye: None,
            error: Error::Disconnected(why.into()),
        }
    }

    fn goodbye(code: GoodbyeCode, reason: impl Into<String>) -> CloseReason {
        let reason = reason.into();
        CloseReason {
            error: Error::Disconnected(reason.clone()),
            goodbye: Some((code, reason)),
        }
    }
}

pub(crate) struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    ep: Arc<Endpoint>,
    serial: u32,
    to_flush: Vec<usize>,
    shutdown_deadline: Option<Instant>,
    /// The time of the current loop turn (one clock read per turn).
    now: Instant,
    next_tick: Instant,
    /// Where every read lands before its bytes are appended to a connection's input.
    scratch: Box<[u8]>,
    /// Relayed players by id (their ids are the relay's, not `serial << 32 | key`).
    relayed: HashMap<u64, usize>,
    /// Connections that still had data to read when their turn ended.
    read_again: Vec<usize>,
    /// Readiness of connections that are not (or no longer) players, by key and id, handled
    /// after the players within the housekeeping budget.
    backlog: VecDeque<Pending>,
    /// The listener had more connections waiting when its turn ended.
    accept_again: bool,
    /// Jobs for the pool from this turn, handed over together: under load one wake-up of a
    /// parked worker then covers many jobs rather than one.
    jobs: Vec<Job>,
    /// Connections a timer expired, by key and id, waiting for their turn to be closed.
    timed_out: VecDeque<(usize, u64, GoodbyeCode, String)>,
    /// Connections cut, logged with a bounded volume.
    cuts: CutLog,
    /// When connections over their rate may be read again.
    rate_resume: Deadlines,
}

/// Readiness reported for a connection that waits for housekeeping.
struct Pending {
    key: usize,
    id: u64,
    readable: bool,
    peer_closed: bool,
    writable: bool,
}

impl Reactor {
    /// A reactor for a server: listening on `listener` if given (a server that only serves
    /// through relays has none; one can be added later with `Command::Listen`).
    pub(crate) fn server(
        ep: Arc<Endpoint>,
        listener: Option<std::net::TcpListener>,
    ) -> io::Result<Reactor> {
        let mut reactor = Reactor::new(ep)?;
        if let Some(listener) = listener {
            reactor.listen(listener)?;
        }
        Ok(reactor)
    }

    fn listen(&mut self, listener: std::net::TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        self.listener = Some(listener);
        Ok(())
    }

    /// A reactor for a client whose handshake is done: `proto` is open and may already hold
    /// bytes that arrived after the welcome. Returns the reactor and the connection's id.
    pub(crate) fn client(
        ep: Arc<Endpoint>,
        socket: std::net::TcpStream,
        proto: proto::Connection,
    ) -> io::Result<(Reactor, u64)> {
        socket.set_nonblocking(true)?;
        let peer = socket.peer_addr().ok();
        let mut reactor = Reactor::new(ep)?;
        let socket = Some(TcpStream::from_std(socket));
        let (key, id) = reactor.insert(socket, peer, proto, ConnKind::Direct, None)?;
        reactor.conns[key].welcomed = true;
        Ok((reactor, id))
    }

    fn new(ep: Arc<Endpoint>) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let who = match ep.side {
            Side::Server => "server",
            Side::Client => "client",
        };
        if ep.waker.set(waker).is_err() {
            return Err(io::Error::other("this endpoint already has a reactor"));
        }
        Ok(Reactor {
            poll,
            listener: None,
            conns: Slab::new(),
            ep,
            serial: 0,
            to_flush: Vec::new(),
            shutdown_deadline: None,
            now: Instant::now(),
            next_tick: Instant::now() + TICK,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            relayed: HashMap::new(),
            read_again: Vec::new(),
            backlog: VecDeque::new(),
            accept_again: false,
            jobs: Vec::with_capacity(SUBMIT_BATCH),
            timed_out: VecDeque::new(),
            cuts: CutLog::new(who, Instant::now()),
            rate_resume: Deadlines::default(),
        })
    }

    /// Adds a connection; returns its slab key and id. `id` is given for a relayed player
    /// (the relay's id); otherwise it is `serial << 32 | key`, with `serial` kept to 31 bits so
    /// it never collides with a relay's ids (which have the top bit set).
    fn insert(
        &mut self,
        mut socket: Option<TcpStream>,
        peer: Option<SocketAddr>,
        proto: proto::Connection,
        kind: ConnKind,
        id: Option<u64>,
    ) -> io::Result<(usize, u64)> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let id = id.unwrap_or_else(|| {
            self.serial = (self.serial.wrapping_add(1) & 0x7fff_ffff).max(1);
            (u64::from(self.serial) << 32) | key as u64
        });
        bump(&self.ep.counters.connections, 1);
        if let Some(socket) = socket.as_mut() {
            self.poll.registry().register(
                socket,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        if matches!(kind, ConnKind::Relayed { .. }) {
            self.relayed.insert(id, key);
        }
        let now = Instant::now();
        entry.insert(Conn {
            socket,
            kind,
            proto,
            id,
            peer,
            out: BytesMut::new(),
            out_partial: 0,
            calls: Vec::new(),
            prune_at: 64,
            welcomed: false,
            closing: false,
            closing_since: None,
            closing_read_budget: CLOSING_READ_BUDGET,
            write_shut: false,
            retired: false,
            queued_for_flush: false,
            expiring: false,
            opened: now,
            last_heard: now,
            pinged: false,
            last_write: now,
            reading_paused: false,
            inflight_in: 0,
            rate: RateShaper::new(&self.ep.limits.rate, now),
            rate_paused: false,
        });
        Ok((key, id))
    }

    /// Runs until shutdown. A panic inside fails every pending call rather than leaving callers
    /// parked forever.
    pub(crate) fn run(mut self) {
        let ep = self.ep.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()));
        if let Err(panic) = result {
            tracing::error!(
                "reactor panicked: {}",
                crate::endpoint::panic_message(&panic)
            );
            ep.closed.store(true, Ordering::SeqCst);
            ep.calls
                .fail_all(&Error::Io("the reactor thread panicked".into()));
        }
    }

    fn run_loop(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = match self.shutdown_deadline {
                _ if !self.read_again.is_empty() || self.housekeeping_left() => Duration::ZERO,
                Some(_) => Duration::from_millis(10),
                None => {
                    let next = self.rate_resume.next().map_or(self.next_tick, |at| {
                        // Rounded up: epoll waits whole milliseconds.
                        (at + Duration::from_micros(999)).min(self.next_tick)
                    });
                    next.saturating_duration_since(Instant::now())
                }
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("poll failed: {e}");
                self.ep
                    .calls
                    .fail_all(&Error::Io(format!("poll failed: {e}")));
                return;
            }
            self.now = Instant::now();
            // Players first: their frames, the answers the workers sent back, their output.
            self.resume_rate_paused();
            for key in std::mem::take(&mut self.read_again) {
                self.ready(key, true, false, false);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_again = true,
                    WAKER => self.drain_commands(),
                    Token(key) => self.ready(
                        key,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_read_closed() || event.is_error(),
                        event.is_writable(),
                    ),
                }
            }
            if self.now >= self.next_tick {
                self.check_timers();
                self.next_tick = self.now + TICK;
            }
            let served = !self.jobs.is_empty() || !self.to_flush.is_empty();
            self.submit_pending();
            self.flush_all();
            if self.housekeeping_left() {
                let players_took = self.now.elapsed();
                if served {
                    // A backlog keeps this loop busy from turn to turn: the workers just handed
                    // jobs, and the players just sent output, would wait for this thread's time
                    // slice on a shared core. (Without player work, the backlog goes on at
                    // once.)
                    std::thread::yield_now();
                }
                // Then everyone else, for as long as the budget allows: at least its floor,
                // and half the time the players took, so a busy server still admits newcomers.
                let budget = HOUSEKEEPING_PER_TURN.max(players_took / 2);
                self.housekeeping(Instant::now() + budget);
                self.submit_pending();
                self.flush_all();
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for key in keys {
                        self.remove(key, Error::Closed("shut down".into()));
                    }
                    self.submit_pending();
                    return;
                }
            }
        }
    }

    /// Reads again the connections whose rate allows it by now: first the frames they had
    /// buffered, then their sockets.
    fn resume_rate_paused(&mut self) {
        while let Some((key, id)) = self.rate_resume.pop_due(self.now) {
            let Some(conn) = self
                .conns
                .get_mut(key)
                .filter(|c| c.id == id && c.rate_paused)
            else {
                continue;
            };
            conn.rate_paused = false;
            self.process(key);
            if self.conns.get(key).is_some_and(|c| !c.rate_paused) {
                self.read(key, false);
            }
        }
    }

    /// Handles readiness of connection `key` now if it is a player (or a host link), or puts
    /// it in the housekeeping backlog.
    fn ready(&mut self, key: usize, readable: bool, peer_closed: bool, writable: bool) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let serving = !conn.closing && (conn.welcomed || matches!(conn.kind, ConnKind::Link(_)));
        if !serving {
            self.backlog.push_back(Pending {
                key,
                id: conn.id,
                readable,
                peer_closed,
                writable,
            });
            return;
        }
        if readable {
            self.read(key, peer_closed);
        }
        if writable {
            self.queue_flush(key);
        }
    }

    /// Whether housekeeping work is waiting for a later turn.
    fn housekeeping_left(&self) -> bool {
        !self.backlog.is_empty() || self.accept_again || !self.timed_out.is_empty()
    }

    /// Accepts, handshakes, refusals, timeouts and closes, oldest first, until `deadline`.
    fn housekeeping(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if let Some(p) = self.backlog.pop_front() {
                // The connection may have gone, and its key been reused, since it was queued.
                if self.conns.get(p.key).is_some_and(|c| c.id == p.id) {
                    if p.readable {
                        self.read(p.key, p.peer_closed);
                    }
                    if p.writable {
                        self.queue_flush(p.key);
                    }
                }
            } else if let Some((key, id, code, why)) = self.timed_out.pop_front() {
                if self
                    .conns
                    .get(key)
                    .is_some_and(|c| c.id == id && !c.closing)
                {
                    self.close(key, CloseReason::goodbye(code, why));
                }
            } else if self.accept_again {
                self.accept_one();
            } else {
                return;
            }
            // Each step's goodbye or refusal is written within the budget it was counted in.
            self.flush_all();
        }
    }

    /// Accepts one connection, noting whether more may be waiting.
    fn accept_one(&mut self) {
        let Some(listener) = &self.listener else {
            self.accept_again = false;
            return;
        };
        match listener.accept() {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                let proto = proto::Connection::new(Role::Server, self.ep.limits.max_frame);
                match self.insert(Some(socket), Some(peer), proto, ConnKind::Direct, None) {
                    Ok((_, id)) => tracing::debug!(conn = id, %peer, "accepted"),
                    Err(e) => tracing::warn!(%peer, "cannot register a connection: {e}"),
                }
            }
            // Edge-triggered: only an empty backlog re-arms the listener's event.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.accept_again = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Typically EMFILE: stop until the listener reports again; it stays registered.
                tracing::warn!("accept failed: {e}");
                self.accept_again = false;
            }
        }
    }

    /// Queues a job for the pool (see [`Reactor::submit_pending`]).
    fn submit(&mut self, job: Job) {
        self.jobs.push(job);
        if self.jobs.len() >= SUBMIT_BATCH {
            self.submit_pending();
        }
    }

    /// Hands the queued jobs to the pool, in order.
    fn submit_pending(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let pool = self.ep.pool.get().expect("pool");
        for job in self.jobs.drain(..) {
            pool.submit(job);
        }
    }

    fn drain_commands(&mut self) {
        self.ep.wake_pending.store(false, Ordering::Release);
        while let Ok(cmd) = self.ep.commands.1.try_recv() {
            self.handle_command(cmd);
        }
    }

    /// The live connection with this id.
    fn lookup(&mut self, id: u64) -> Option<usize> {
        let key = match self.relayed.get(&id) {
            Some(&key) => key,
            None => key_of(id),
        };
        self.conns
            .get(key)
            .filter(|c| c.id == id && !c.closing)
            .map(|_| key)
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Call { conn, call, frame } => match self.lookup(conn) {
                Some(key) if self.conns[key].welcomed => {
                    let c = &mut self.conns[key];
                    c.calls.push(call);
                    if c.calls.len() >= c.prune_at {
                        let calls = &self.ep.calls;
                        c.calls.retain(|id| calls.is_waiting(*id));
                        c.prune_at = (c.calls.len() * 2).max(64);
                    }
                    self.queue(key, &frame);
                }
                _ => {
                    let err = self.missing(conn);
                    self.ep.calls.complete(call, Err(err));
                }
            },
            Command::Send { conn, frame } => {
                if let Some(key) = self.lookup(conn) {
                    self.queue(key, &frame);
                }
            }
            Command::Reply { conn, frame } => {
                if let Some(key) = self.lookup(conn) {
                    let c = &mut self.conns[key];
                    c.inflight_in = c.inflight_in.saturating_sub(1);
                    self.queue(key, &frame);
                }
            }
            Command::Broadcast { frame } => {
                // Direct players get the frame; each relay link gets one BROADCAST for all of
                // its players.
                let keys: Vec<usize> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.welcomed && !c.closing)
                    .filter(|(_, c)| !matches!(c.kind, ConnKind::Relayed { .. }))
                    .map(|(k, _)| k)
                    .collect();
                for key in keys {
                    if matches!(self.conns[key].kind, ConnKind::Link(_)) {
                        let mut out = BytesMut::new();
                        Frame::Broadcast {
                            frame: frame.slice(4..),
                        }
                        .encode(&mut out);
                        self.queue(key, &out);
                    } else {
                        self.queue(key, &frame);
                    }
                }
            }
            Command::Listen { listener, done } => {
                let _ = done.send(self.listen(listener));
            }
            Command::AddLink {
                socket,
                proto,
                spec,
            } => self.add_link(socket, proto, spec),
            Command::Accept { conn, identity } => {
                if let Some(key) = self.lookup(conn) {
                    self.welcome(key, identity);
                }
            }
            Command::Refuse { conn, reason } => {
                if let Some(key) = self.lookup(conn) {
                    self.refuse(key, &reason);
                }
            }
            Command::Close { conn, code, reason } => {
                if let Some(key) = self.lookup(conn) {
                    self.close(key, CloseReason::goodbye(code, reason));
                }
            }
            Command::Shutdown => self.begin_shutdown(),
        }
    }

    /// The error for a call to a connection that is not there.
    fn missing(&self, conn: u64) -> Error {
        match self.ep.side {
            Side::Server => Error::NotFound(conn),
            Side::Client => Error::Disconnected(
                self.ep
                    .lost
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "not connected".into()),
            ),
        }
    }

    fn begin_shutdown(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.shutdown_deadline = Some(Instant::now() + SHUTDOWN_FLUSH);
        let (code, reason) = match self.ep.side {
            Side::Server => (GoodbyeCode::Shutdown, "server shutting down"),
            Side::Client => (GoodbyeCode::Normal, "client closed"),
        };
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.socket.is_some())
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let conn = &mut self.conns[key];
            proto::encode_goodbye(&mut conn.out, code, reason);
            conn.closing = true;
            self.queue_flush(key);
        }
    }

    /// Appends a frame to a connection's output, cutting the connection if its unread output
    /// passes the bound (a peer that stops reading must not grow memory).
    fn queue(&mut self, key: usize, frame: &[u8]) {
        if let ConnKind::Relayed { link } = self.conns[key].kind {
            let player = self.conns[key].id;
            return self.queue_routed(link, player, frame);
        }
        let conn = &mut self.conns[key];
        if conn.out.len() + frame.len() > self.ep.limits.max_output_buffer {
            let reason = format!(
                "output buffer over {} bytes: the peer is not reading",
                self.ep.limits.max_output_buffer
            );
            return self.close(key, CloseReason::goodbye(GoodbyeCode::Limit, reason));
        }
        if conn.out.is_empty() {
            conn.last_write = self.now;
        }
        conn.out.extend_from_slice(frame);
        self.queue_flush(key);
    }

    fn queue_flush(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.queued_for_flush {
                conn.queued_for_flush = true;
                self.to_flush.push(key);
            }
        }
    }

    fn flush_all(&mut self) {
        let mut keys = std::mem::take(&mut self.to_flush);
        for &key in &keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.queued_for_flush = false;
                self.flush(key);
            }
        }
        keys.clear();
        if self.to_flush.is_empty() {
            self.to_flush = keys;
        }
    }

    fn flush(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let Some(socket) = conn.socket.as_mut() else {
            return;
        };
        while !conn.out.is_empty() {
            match write_step(socket, &conn.out) {
                Step::End => {
                    return self.remove(
                        key,
                        Error::Disconnected("connection closed while writing".into()),
                    )
                }
                Step::Moved { n, .. } => {
                    bump(&self.ep.counters.bytes_out, n as u64);
                    conn.out_partial = partial_after_write(&conn.out, conn.out_partial, n);
                    let _ = conn.out.split_to(n);
                    conn.last_write = self.now;
                    if conn.reading_paused && conn.out.len() <= PAUSE_READING_ABOVE / 2 {
                        // Edge-triggered: input that waited will not raise a new event.
                        conn.reading_paused = false;
                        self.read_again.push(key);
                    }
                }
                Step::Blocked => return,
                Step::Failed(why) => return self.remove(key, Error::Disconnected(why)),
            }
        }
        if conn.out.capacity() > 64 * 1024 {
            conn.out = BytesMut::new();
        }
        if conn.closing {
            // Everything is written: say so with a FIN, then wait for the peer's (or the grace
            // timer). Closing while unread input sits in the socket would send a reset instead,
            // and a reset can destroy the goodbye before the peer reads it.
            if !conn.write_shut {
                conn.write_shut = true;
                let _ = socket.shutdown(std::net::Shutdown::Write);
            }
            self.discard_input(key);
        }
    }

    /// Reads and drops what a closing connection still sends, finishing the close at its end
    /// of stream once our output is written, or on an error. Past the closing budget its input
    /// is left unread (TCP stops it sending) until it reads its goodbye and closes, or the
    /// grace runs out.
    fn discard_input(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(socket) = conn.socket.as_mut() else {
            return;
        };
        for _ in 0..READS_PER_TURN {
            if conn.closing_read_budget == 0 {
                return;
            }
            let budget = conn.closing_read_budget.min(READ_CHUNK);
            match read_step(socket, &mut self.scratch[..budget], false) {
                Step::Moved { n, .. } => conn.closing_read_budget -= n,
                // Half-closed: the goodbye may still be read; `flush` comes back here.
                Step::End if !conn.out.is_empty() => return,
                Step::Blocked => return,
                Step::End | Step::Failed(_) => return self.finish_close(key, "connection closed"),
            }
        }
        // More is waiting: the others get their turn first.
        self.read_again.push(key);
    }

    /// Removes a closing connection, counting it only if its close was not counted already.
    fn finish_close(&mut self, key: usize, why: &str) {
        let error = Error::Disconnected(why.into());
        match self.conns.get(key) {
            Some(conn) if conn.retired => self.drop_conn(key, error),
            Some(_) => self.remove(key, error),
            None => {}
        }
    }

    /// Reads what a connection sent. `peer_closed`: the event also reported the end of the
    /// stream, which a short read must not be taken to have consumed.
    fn read(&mut self, key: usize, peer_closed: bool) {
        let mut drained = false;
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.closing {
                return self.discard_input(key);
            }
            if conn.rate_paused {
                // Its resume deadline brings it back.
                return;
            }
            // Servers only: a client always reads its server (answers free its call slots), so
            // the two sides can never both wait for the other to read.
            if conn.out.len() > PAUSE_READING_ABOVE
                && matches!(conn.kind, ConnKind::Direct)
                && self.ep.side == Side::Server
            {
                conn.reading_paused = true;
                return;
            }
            // Read into the reactor's scratch buffer and keep only what arrived: the copy is
            // the size of the data, where reading into a zeroed per-connection buffer costs a
            // memset of the whole chunk per read.
            let Some(socket) = conn.socket.as_mut() else {
                return;
            };
            match read_step(socket, &mut self.scratch, peer_closed) {
                Step::End => {
                    return self.close(
                        key,
                        CloseReason::peer_gone("the peer closed the connection"),
                    );
                }
                Step::Moved { n, more } => {
                    bump(&self.ep.counters.bytes_in, n as u64);
                    conn.last_heard = self.now;
                    conn.pinged = false;
                    conn.proto.handle_bytes(&self.scratch[..n]);
                    self.process(key);
                    if self.conns.get(key).is_none_or(|c| c.rate_paused) {
                        return;
                    }
                    if !more {
                        drained = true;
                        break;
                    }
                }
                Step::Blocked => {
                    drained = true;
                    break;
                }
                Step::Failed(why) => return self.close(key, CloseReason::peer_gone(why)),
            }
        }
        if !drained && self.conns.contains(key) {
            // More is waiting: read it next turn, after everyone else.
            self.read_again.push(key);
            return;
        }
        if let Some(conn) = self.conns.get_mut(key) {
            // Everything it sent is handled: it keeps within its rate.
            conn.rate.input_drained();
            conn.proto.release_idle_buffer();
        }
    }

    /// Handles every complete frame buffered on a connection, as far as its rate allows.
    fn process(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.closing {
                return;
            }
            // Relayed players are shaped by their relay.
            if matches!(conn.kind, ConnKind::Direct) {
                match conn.rate.admit(&conn.proto, &self.ep.limits.rate, self.now) {
                    Admission::Now => {}
                    Admission::Wait(at) => {
                        conn.rate_paused = true;
                        return self.rate_resume.push(at, key, conn.id);
                    }
                    Admission::Cut(why) => {
                        return self.close(key, CloseReason::goodbye(GoodbyeCode::Limit, why))
                    }
                }
            }
            match conn.proto.poll_frame() {
                Ok(Some(frame)) => self.on_frame(key, frame),
                Ok(None) => break,
                Err(e) => return self.on_protocol_error(key, e),
            }
        }
        // A peer still in the handshake cannot make us buffer more than a frame's worth.
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let limit = self.ep.limits.max_frame as usize + READ_CHUNK + 8;
        if conn.proto.buffered() > limit {
            let reason = format!("more than {limit} bytes sent before the handshake completed");
            self.close(key, CloseReason::goodbye(GoodbyeCode::Limit, reason));
        }
    }

    fn on_protocol_error(&mut self, key: usize, e: ProtocolError) {
        let conn = &self.conns[key];
        tracing::debug!(conn = conn.id, peer = ?conn.peer, "protocol error: {e}");
        if conn.welcomed || self.ep.side == Side::Client {
            self.close(
                key,
                CloseReason::goodbye(GoodbyeCode::ProtocolError, e.to_string()),
            );
        } else {
            self.refuse(key, &e.to_string());
        }
    }

    fn on_frame(&mut self, key: usize, frame: Frame) {
        let id = self.conns[key].id;
        if matches!(self.conns[key].kind, ConnKind::Link(_)) {
            return self.on_link_frame(key, frame);
        }
        match frame {
            Frame::Hello { place, token } => {
                if self.ep.authenticator.read().is_some() {
                    self.submit(Job::Authenticate {
                        conn: id,
                        place,
                        token,
                    });
                } else {
                    self.welcome(key, Identity::default());
                }
            }
            Frame::Invoke { call, name, args } => {
                if self.admit(key, true) {
                    let job = Job::Invoke {
                        conn: id,
                        call,
                        name,
                        args,
                    };
                    self.submit(job);
                }
            }
            Frame::Event { name, args } => {
                if self.admit(key, false) {
                    let job = Job::Event {
                        conn: id,
                        name,
                        args,
                    };
                    self.submit(job);
                }
            }
            Frame::Result { call, values } => self.complete(key, call, Ok(values)),
            Frame::Error {
                call,
                kind,
                message,
            } => {
                let error = match kind {
                    ErrorKind::Handler => Error::Remote(message),
                    ErrorKind::Limit => Error::Limit(message),
                    ErrorKind::InvalidArgument => Error::InvalidArgument(message),
                    ErrorKind::Closed => Error::Closed(message),
                    ErrorKind::Unavailable => Error::Disconnected(message),
                };
                self.complete(key, call, Err(error))
            }
            Frame::Ping(_) | Frame::Pong(_) | Frame::Goodbye { .. } => {
                self.on_liveness(key, frame, "peer")
            }
            Frame::HostHello { .. }
            | Frame::HostWelcome { .. }
            | Frame::PlayerJoin { .. }
            | Frame::PlayerAccept { .. }
            | Frame::PlayerReject { .. }
            | Frame::PlayerLeft { .. }
            | Frame::Routed { .. }
            | Frame::Kick { .. }
            | Frame::Broadcast { .. } => {
                let frame = frame.frame_type();
                let state = "from a player (host-link frames travel only between hosts and relays)";
                self.on_protocol_error(key, ProtocolError::Unexpected { frame, state });
            }
            Frame::Welcome { .. } | Frame::Refused { .. } => {
                // The protocol state machine only yields these before the handshake, which a
                // client completes before its reactor starts.
                self.on_protocol_error(
                    key,
                    ProtocolError::Unexpected {
                        frame: frame.frame_type(),
                        state: "after the handshake",
                    },
                );
            }
        }
    }

    /// Pings are answered, pongs only prove the peer alive (any byte does), and a goodbye
    /// closes the connection with the peer's reason.
    fn on_liveness(&mut self, key: usize, frame: Frame, who: &str) {
        match frame {
            Frame::Ping(n) => {
                let mut out = BytesMut::new();
                Frame::Pong(n).encode(&mut out);
                self.queue(key, &out);
            }
            Frame::Goodbye { code, reason } => {
                let why = format!("the {who} said goodbye ({code:?}): {reason}");
                self.close(key, CloseReason::peer_gone(why));
            }
            _ => {}
        }
    }

    /// Applies, for a call, the bound on calls in flight; a peer over it is disconnected with
    /// the reason. (The rate was applied before the frame was read: see `process`.)
    fn admit(&mut self, key: usize, is_call: bool) -> bool {
        let limits = &self.ep.limits;
        let conn = &mut self.conns[key];
        if is_call && conn.inflight_in >= limits.max_inflight_per_peer {
            let violation = format!("more than {} calls in flight", limits.max_inflight_per_peer);
            self.close(key, CloseReason::goodbye(GoodbyeCode::Limit, violation));
            return false;
        }
        if is_call {
            conn.inflight_in += 1;
            bump(&self.ep.counters.calls_in, 1);
        } else {
            bump(&self.ep.counters.events_in, 1);
        }
        true
    }

    /// Handshake and idle timeouts, heartbeats, and connections stuck while closing.
    fn check_timers(&mut self) {
        let now = self.now;
        let limits = &self.ep.limits;
        let (handshake, idle) = (limits.handshake_timeout, limits.idle_timeout);
        let mut stuck: Vec<usize> = Vec::new();
        let mut ping: Vec<usize> = Vec::new();
        // Expired connections go straight to the queue that closes them, a few per turn.
        let timed_out = &mut self.timed_out;
        for (key, conn) in self.conns.iter_mut() {
            if matches!(conn.kind, ConnKind::Relayed { .. }) {
                // The relay watches its players' liveness.
                continue;
            }
            if conn.closing {
                let since = *conn.closing_since.get_or_insert(now);
                if now.saturating_duration_since(since) > CLOSING_GRACE {
                    stuck.push(key);
                }
            } else if conn.expiring {
                // Its close is already queued.
            } else if !conn.welcomed {
                if now.saturating_duration_since(conn.opened) > handshake {
                    conn.expiring = true;
                    let why = format!("handshake not completed within {handshake:?}");
                    timed_out.push_back((key, conn.id, GoodbyeCode::Timeout, why));
                }
            } else if !idle.is_zero() {
                let stalled = now.saturating_duration_since(conn.last_write);
                let quiet = now.saturating_duration_since(conn.last_heard);
                if !conn.out.is_empty() && stalled > idle {
                    // Takes none of its output: the other half of the idle timeout.
                    conn.expiring = true;
                    let why = format!("not reading: no output taken for {idle:?}");
                    timed_out.push_back((key, conn.id, GoodbyeCode::Limit, why));
                } else if conn.reading_paused || conn.rate_paused {
                    // We are the ones not reading it: its silence is not its fault.
                } else if quiet > idle {
                    conn.expiring = true;
                    let why = format!("nothing heard for {idle:?}");
                    timed_out.push_back((key, conn.id, GoodbyeCode::Timeout, why));
                } else if quiet > idle / 3 && !conn.pinged {
                    conn.pinged = true;
                    ping.push(key);
                }
            }
        }
        for key in stuck {
            self.finish_close(key, "the peer did not read its goodbye");
        }
        self.cuts.poll(now);
        if !ping.is_empty() {
            let mut frame = BytesMut::new();
            Frame::Ping(0).encode(&mut frame);
            for key in ping {
                self.queue(key, &frame);
            }
        }
    }

    /// A reply from connection `key`: only calls sent to that connection can be completed by
    /// it, so no peer can answer (or forge answers to) calls made to another.
    fn complete(&mut self, key: usize, call: u64, outcome: Result<bytes::Bytes, Error>) {
        let conn = &mut self.conns[key];
        if let Some(pos) = conn.calls.iter().position(|&c| c == call) {
            conn.calls.swap_remove(pos);
            self.ep.calls.complete(call, outcome);
        } else {
            tracing::debug!(
                conn = conn.id,
                call,
                "reply to an unknown or expired call dropped"
            );
        }
    }

    fn welcome(&mut self, key: usize, identity: Identity) {
        let max = self.ep.limits.max_players;
        if self.ep.players.read().len() >= max {
            return self.refuse(key, &format!("server full ({max} players)"));
        }
        let conn = &mut self.conns[key];
        conn.proto.accept();
        conn.welcomed = true;
        let id = conn.id;
        tracing::info!(player = id, peer = ?conn.peer, user_id = identity.user_id, "player joined");
        self.ep.players.write().insert(
            id,
            PlayerInfo {
                identity,
                peer: conn.peer,
            },
        );
        let mut out = BytesMut::new();
        if let ConnKind::Relayed { link } = self.conns[key].kind {
            let identity = self.ep.players.read()[&id].identity.clone();
            Frame::PlayerAccept {
                player: id,
                user_id: identity.user_id,
                name: identity.name,
            }
            .encode(&mut out);
            self.queue(link, &out);
        } else {
            Frame::Welcome {
                player: id,
                max_frame: self.ep.limits.max_frame,
            }
            .encode(&mut out);
            self.queue(key, &out);
        }
        self.submit(Job::PlayerAdded(id));
        // Frames that arrived behind the HELLO were held back until now.
        self.process(key);
    }

    fn refuse(&mut self, key: usize, reason: &str) {
        let conn = &mut self.conns[key];
        self.cuts.record("handshake refused", &conn.peer, reason);
        bump(&self.ep.counters.refused, 1);
        if let ConnKind::Relayed { link } = conn.kind {
            let mut out = BytesMut::new();
            let player = conn.id;
            Frame::PlayerReject {
                player,
                reason: reason.to_owned(),
            }
            .encode(&mut out);
            self.queue(link, &out);
            return self.remove(key, Error::Rejected(reason.to_owned()));
        }
        let mut out = BytesMut::new();
        Frame::Refused {
            reason: reason.to_owned(),
        }
        .encode(&mut out);
        conn.out.extend_from_slice(&out);
        conn.closing = true;
        conn.proto.close();
        self.queue_flush(key);
    }

    /// Closes a connection: sends the goodbye (best effort), then removes it.
    fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some((code, text)) = &reason.goodbye {
            let cause = match code {
                GoodbyeCode::ProtocolError => "protocol error",
                GoodbyeCode::Limit => "limit",
                GoodbyeCode::Timeout => "timeout",
                GoodbyeCode::Kicked => "kicked",
                _ => "closed",
            };
            self.cuts
                .record(cause, &(conn.id, conn.peer), &format!("closing: {text}"));
            if let ConnKind::Relayed { link } = conn.kind {
                // The relay closes the player's socket, with the reason.
                let mut kick = BytesMut::new();
                let player = conn.id;
                Frame::Kick {
                    player,
                    reason: text.clone(),
                }
                .encode(&mut kick);
                self.queue(link, &kick);
            } else if let Some(socket) = conn.socket.as_mut() {
                if matches!(code, GoodbyeCode::Limit | GoodbyeCode::ProtocolError) {
                    // Output not yet started will never matter to a peer cut for misbehaving;
                    // dropping it puts the goodbye next in line.
                    conn.out.truncate(conn.out_partial);
                }
                proto::encode_goodbye(&mut conn.out, *code, text);
                if !matches!(conn.kind, ConnKind::Direct) {
                    // A relay link: one attempt, then the link is replaced.
                    let _ = socket.write(&conn.out);
                }
            }
        }
        let counter = match reason.goodbye.as_ref().map(|(code, _)| *code) {
            Some(GoodbyeCode::ProtocolError) => &self.ep.counters.disconnects_protocol,
            Some(GoodbyeCode::Limit) => &self.ep.counters.disconnects_limit,
            Some(GoodbyeCode::Timeout) => &self.ep.counters.disconnects_timeout,
            Some(GoodbyeCode::Kicked) => &self.ep.counters.kicks,
            _ => &self.ep.counters.disconnects_other,
        };
        bump(counter, 1);
        let conn = &mut self.conns[key];
        if reason.goodbye.is_some()
            && conn.socket.is_some()
            && matches!(conn.kind, ConnKind::Direct)
        {
            // The peer is gone as far as everyone else is concerned; its socket stays until the
            // goodbye is written and the peer closes its side (or the grace runs out).
            release(&self.ep, conn, &mut self.jobs, &reason.error);
            conn.retired = true;
            conn.closing = true;
            self.queue_flush(key);
        } else {
            self.drop_conn(key, reason.error);
        }
    }

    /// Drops a connection now and fails whatever was pending on it.
    fn remove(&mut self, key: usize, error: Error) {
        if self.conns.contains(key) {
            bump(&self.ep.counters.disconnects_other, 1);
        }
        self.drop_conn(key, error);
    }

    fn drop_conn(&mut self, key: usize, error: Error) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        if let Some(socket) = conn.socket.as_mut() {
            let _ = self.poll.registry().deregister(socket);
        }
        match &conn.kind {
            ConnKind::Relayed { .. } => {
                self.relayed.remove(&conn.id);
            }
            ConnKind::Link(spec) => self.link_lost(key, spec.clone(), &error),
            ConnKind::Direct => {}
        }
        if !conn.retired {
            release(&self.ep, &mut conn, &mut self.jobs, &error);
        }
    }
}

/// Fails a departing connection's pending calls and forgets the player (its `PlayerRemoving`
/// job joins `jobs`, behind the jobs of its last frames).
fn release(ep: &Endpoint, conn: &mut Conn, jobs: &mut Vec<Job>, error: &Error) {
    for call in conn.calls.drain(..) {
        ep.calls.complete(call, Err(error.clone()));
    }
    if ep.side == Side::Client {
        *ep.lost.lock() = Some(error.to_string());
    }
    if conn.welcomed && ep.side == Side::Server {
        ep.players.write().remove(&conn.id);
        tracing::info!(player = conn.id, "player left: {error}");
        jobs.push(Job::PlayerRemoving(conn.id));
    }
}

fn key_of(id: u64) -> usize {
    (id & 0xffff_ffff) as usize
}
