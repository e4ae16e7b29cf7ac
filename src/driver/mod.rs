//! The I/O driver: a mio event loop that owns sockets and moves bytes between them and their
//! [`Session`]s, for an [`Owner`] that decides what the frames mean.
//!
//! It owns what every event loop of the crate needs and none should write again: the
//! connection slab (a connection's key is its token), listeners and accept bursts, reads
//! drained until `WouldBlock` with a per-turn budget per connection (a peer that sends without
//! pause cannot hold the loop), writes coalesced per turn, one deadline heap driven by each
//! session's `poll_timeout` (so idle connections cost nothing between their deadlines), the
//! players-first turn (connections still in the handshake or closing, accepts and expiries wait
//! in a backlog served under a time budget), and the graceful close (the goodbye written, a
//! FIN, the peer's end or the grace).
//!
//! The owner sees frames, violations and ends through the [`Owner`] trait and acts through
//! [`Io`]: send, close, refuse, read again. The driver never runs user code and never blocks
//! but in `poll`.

mod deadlines;
pub(crate) mod dial;
mod mailbox;
pub(crate) mod socket;
pub(crate) mod tls;

pub(crate) use crate::ids::ConnId;
use crate::ids::SERIAL_MASK;
use crate::proto::{
    CallFrame, Event, Frame, GoodbyeCode, Packet, Session, SessionConfig, Violation, READ_CHUNK,
};
use deadlines::Deadlines;
pub(crate) use mailbox::Mailbox;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket::{read_step, write_step, Step};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The token of the owner's waker.
const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENERS - i`.
const LISTENERS: usize = usize::MAX - 1;
/// How often [`Owner::on_tick`] runs.
const TICK: Duration = Duration::from_millis(100);
/// Full reads one connection gets per turn before the others have theirs.
const READS_PER_TURN: usize = 4;
/// Time a turn may spend on housekeeping (accepts, handshakes, expiries, closes) once its
/// serving connections are served, at least; it also gets half as long as serving took, so a
/// busy loop keeps a third of its time for newcomers.
const HOUSEKEEPING_PER_TURN: Duration = Duration::from_micros(100);
/// Output past which a connection is written as soon as the read that produced it is handled,
/// not at the end of the turn: a link carrying many players' calls (a relay's host, a host's
/// relay) starts its peer working while this loop reads on, instead of in one burst per turn.
/// A player's replies to one read stay far below it, so they are still written once a turn.
const EARLY_FLUSH_BYTES: usize = 8 * 1024;

/// What an owner decides about a new connection.
pub(crate) enum Admit<S> {
    /// Serve it with this session configuration and owner state.
    Serve(Arc<SessionConfig>, S),
    /// Refuse it with this reason (best effort: the refusal is written once, then the socket
    /// is dropped). Only the relay refuses at accept (a server decides at the handshake).
    #[cfg_attr(not(feature = "relay"), allow(dead_code))]
    Refuse(String),
    /// Another event loop serves it: the socket goes to [`Owner::hand_off`].
    HandOff,
}

/// What the driver reports to the code that owns the connections.
pub(crate) trait Owner {
    /// What the owner keeps per connection, beside its session.
    type State;

    /// A connection arrived on listener `listener`.
    fn accept(
        &mut self,
        io: &mut Io<Self::State>,
        listener: usize,
        peer: SocketAddr,
    ) -> Admit<Self::State>;

    /// A connection [`accept`](Self::accept) handed off, for the loop it chose (which adopts
    /// it with [`Io::adopt`]).
    fn hand_off(&mut self, conn: Accepted) {
        drop(conn);
    }

    /// A frame from connection `key`.
    fn on_frame(&mut self, io: &mut Io<Self::State>, key: usize, frame: Frame);

    /// Whether call frames come to [`on_call`](Self::on_call) undecoded (a relay forwards
    /// them as they came) rather than decoded to [`on_frame`](Self::on_frame). When true,
    /// every call's frame whose head checks out, bare or routed, comes to `on_call`; one that
    /// does not is decoded (and is then a violation, or a ROUTED frame whose inner frame fails
    /// to decode).
    const PASSES_CALLS: bool = false;

    /// A call's frame from connection `key`, read only as far as its call id (when
    /// [`PASSES_CALLS`](Self::PASSES_CALLS)).
    fn on_call(&mut self, io: &mut Io<Self::State>, key: usize, call: CallFrame) {
        match call.into_frame() {
            Ok(frame) => self.on_frame(io, key, frame),
            Err(e) => self.on_violation(io, key, e.into()),
        }
    }

    /// Connection `key` broke a limit or the protocol, or a timer of its expired: the owner
    /// lets go of it and closes it (usually with `io.close(key, v.code, &v.reason)`).
    fn on_violation(&mut self, io: &mut Io<Self::State>, key: usize, violation: Violation);

    /// Connection `key` ended without the owner closing it (the peer closed, or the socket
    /// failed); `conn` is what is left of it. Never called for a connection the owner closed.
    fn on_closed(
        &mut self,
        io: &mut Io<Self::State>,
        key: usize,
        conn: Conn<Self::State>,
        why: &str,
    );

    /// The waker fired: other threads have work for the loop.
    fn on_wake(&mut self, io: &mut Io<Self::State>);

    /// Every [`TICK`].
    fn on_tick(&mut self, io: &mut Io<Self::State>);

    /// The end of each turn's serving and housekeeping: hand over batched work here. Returns
    /// whether there was any (the turn served someone).
    fn on_turn_end(&mut self, _io: &mut Io<Self::State>) -> bool {
        false
    }

    /// Whether the loop should return now.
    fn finished(&self, io: &Io<Self::State>) -> bool;
}

/// One connection: its socket, its protocol state, and the owner's state.
pub(crate) struct Conn<S> {
    socket: TcpStream,
    /// TLS between the socket and the session, when the connection speaks it.
    tls: Option<Box<tls::Tls>>,
    /// The connection's protocol state.
    pub session: Session,
    /// Tells this connection from a later one with the same key, and names its loop (see
    /// [`ConnId`]).
    pub id: ConnId,
    /// The peer's address.
    pub peer: SocketAddr,
    /// What the owner keeps for it.
    pub state: S,
    /// The owner closed it: it only finishes its close, and the owner hears no more of it.
    released: bool,
    queued_for_flush: bool,
    /// In [`Io::flush_early`]: past [`EARLY_FLUSH_BYTES`] since it was last written.
    queued_for_early_flush: bool,
    /// The earliest deadline of it in the heap.
    scheduled: Option<Instant>,
}

impl<S> Conn<S> {
    /// Whether it ended because its TLS layer failed (the reason [`Owner::on_closed`] gets
    /// then says why, in words).
    pub(crate) fn tls_failed(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.failure().is_some())
    }
}

/// A live connection taken out of one loop to be served by another (see [`Io::detach`]). Only
/// the relay hands connections over mid-handshake.
#[cfg_attr(not(feature = "relay"), allow(dead_code))]
pub(crate) struct Detached<S> {
    socket: std::net::TcpStream,
    tls: Option<Box<tls::Tls>>,
    session: Session,
    peer: SocketAddr,
    /// What the owner keeps for it.
    pub state: S,
}

/// A connection accepted by one loop for another to serve (see [`Owner::hand_off`]): its
/// socket, and its TLS state if it came to a TLS listener.
pub(crate) struct Accepted {
    socket: std::net::TcpStream,
    tls: Option<Box<tls::Tls>>,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("peer", &self.peer)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Readiness of a connection waiting for housekeeping.
struct Pending {
    key: usize,
    id: ConnId,
    readable: bool,
    peer_closed: bool,
    writable: bool,
}

/// The sockets and what the driver keeps about them; the owner's handle on them.
pub(crate) struct Io<S> {
    poll: Poll,
    listeners: Vec<Option<TcpListener>>,
    /// Per listener, the TLS its connections are served with, if any.
    listener_tls: Vec<Option<Arc<crate::tls::Acceptor>>>,
    accept_again: Vec<bool>,
    conns: Slab<Conn<S>>,
    /// Which of its endpoint's event loops this is: the top bits of its connections' ids.
    event_loop: usize,
    serial: u32,
    now: Instant,
    timers: Deadlines,
    to_flush: Vec<usize>,
    /// Connections to write before the turn ends (see [`EARLY_FLUSH_BYTES`]).
    flush_early: Vec<usize>,
    read_again: Vec<usize>,
    backlog: VecDeque<Pending>,
    /// Violations found while the owner was acting (an output bound), for it to handle next.
    violations: Vec<(usize, ConnId, Violation)>,
    /// Connections whose buffered frames the owner wants handled again (a handshake decided).
    reprocess: Vec<usize>,
    scratch: Box<[u8]>,
    /// How long after a turn with events the loop keeps polling without blocking (zero: it
    /// blocks at once). See [`Io::set_busy_poll`].
    busy_poll: Duration,
    last_active: Instant,
    /// What happened since the owner last took the counts.
    counts: IoCounts,
}

/// What a driver counts for its owner, between two [`Io::take_counts`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IoCounts {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// TLS handshakes completed in full, and by resuming an earlier session.
    pub tls_full: u64,
    pub tls_resumed: u64,
}

impl<S> Io<S> {
    /// An I/O driver, event loop `event_loop` of its endpoint (0 when it runs one), accepting
    /// on `listeners`, in that order (the index of each is what [`Owner::accept`] is told). It
    /// is the one owner of its `Poll`.
    pub(crate) fn new(
        event_loop: usize,
        listeners: Vec<std::net::TcpListener>,
    ) -> io::Result<Io<S>> {
        let mut io = Io {
            poll: Poll::new()?,
            listeners: Vec::new(),
            listener_tls: Vec::new(),
            accept_again: Vec::new(),
            conns: Slab::new(),
            event_loop,
            serial: 0,
            now: Instant::now(),
            timers: Deadlines::default(),
            to_flush: Vec::new(),
            flush_early: Vec::new(),
            read_again: Vec::new(),
            backlog: VecDeque::new(),
            violations: Vec::new(),
            reprocess: Vec::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            busy_poll: Duration::ZERO,
            last_active: Instant::now(),
            counts: IoCounts::default(),
        };
        for listener in listeners {
            io.listen(listener)?;
        }
        Ok(io)
    }

    /// Keeps polling without blocking for `window` after each turn that had events: the
    /// next command or reply is then seen without a scheduler wake-up (tens of microseconds on
    /// a VM), at the price of a core kept busy for that long. For a client, whose one
    /// connection a game thread is waiting on; never for a server's thousands.
    pub(crate) fn set_busy_poll(&mut self, window: Duration) {
        self.busy_poll = window;
    }

    /// The waker other threads use to bring the loop to [`Owner::on_wake`]; make one.
    pub(crate) fn waker(&self) -> io::Result<Waker> {
        Waker::new(self.poll.registry(), WAKER)
    }

    /// Accepts on one more listener; returns its index.
    pub(crate) fn listen(&mut self, listener: std::net::TcpListener) -> io::Result<usize> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let index = self.listeners.len();
        self.poll.registry().register(
            &mut listener,
            Token(LISTENERS - index),
            Interest::READABLE,
        )?;
        self.listeners.push(Some(listener));
        self.listener_tls.push(None);
        self.accept_again.push(false);
        Ok(index)
    }

    /// As [`Io::listen`], for connections that speak TLS under their session, with the
    /// configuration `tls` holds when each arrives.
    pub(crate) fn listen_tls(
        &mut self,
        listener: std::net::TcpListener,
        tls: Option<Arc<crate::tls::Acceptor>>,
    ) -> io::Result<usize> {
        let index = self.listen(listener)?;
        self.listener_tls[index] = tls;
        Ok(index)
    }

    /// Stops accepting on every listener.
    pub(crate) fn stop_listening(&mut self) {
        for slot in &mut self.listeners {
            if let Some(mut listener) = slot.take() {
                let _ = self.poll.registry().deregister(&mut listener);
            }
        }
        self.accept_again.iter_mut().for_each(|a| *a = false);
    }

    /// The time of the current turn (one clock read per turn).
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// The key of live connection `id`.
    pub(crate) fn by_id(&self, id: ConnId) -> Option<usize> {
        let key = id.key();
        self.live(key).filter(|c| c.id == id).map(|_| key)
    }

    /// Connection `key` if the owner has not let go of it.
    pub(crate) fn live(&self, key: usize) -> Option<&Conn<S>> {
        self.conns.get(key).filter(|c| !c.released)
    }

    /// Connection `key` if the owner has not let go of it.
    pub(crate) fn live_mut(&mut self, key: usize) -> Option<&mut Conn<S>> {
        self.conns.get_mut(key).filter(|c| !c.released)
    }

    /// Every connection the owner has not let go of.
    pub(crate) fn live_conns(&self) -> impl Iterator<Item = (usize, &Conn<S>)> {
        self.conns.iter().filter(|(_, c)| !c.released)
    }

    /// Whether no connection is left, closing ones included.
    pub(crate) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Queues `frame` for connection `key`. Past its output bound the connection is reported
    /// to the owner as a violation.
    pub(crate) fn send(&mut self, key: usize, frame: &Frame) {
        self.send_with(key, |out| frame.encode(out));
    }

    /// Queues encoded frames for connection `key` (see [`Io::send`]).
    pub(crate) fn send_bytes(&mut self, key: usize, frames: &[u8]) {
        self.send_with(key, |out| out.extend_from_slice(frames));
    }

    /// Queues what `encode` appends for connection `key`, written straight into its output
    /// buffer (see [`Io::send`]).
    pub(crate) fn send_with(&mut self, key: usize, encode: impl FnOnce(&mut bytes::BytesMut)) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key).filter(|c| !c.released) else {
            return;
        };
        if let Err(violation) = conn.session.send_with(now, encode) {
            self.violations.push((key, conn.id, violation));
            return;
        }
        if conn.session.pending_output() >= EARLY_FLUSH_BYTES && !conn.queued_for_early_flush {
            conn.queued_for_early_flush = true;
            self.flush_early.push(key);
        }
        self.queue_flush(key);
    }

    /// Closes connection `key` with a goodbye; the owner hears no more of it.
    pub(crate) fn close(&mut self, key: usize, code: GoodbyeCode, reason: &str) {
        let now = self.now;
        if let Some(conn) = self.conns.get_mut(key) {
            conn.released = true;
            conn.session.close(code, reason, now);
            self.queue_flush(key);
            self.keep_scheduled(key);
        }
    }

    /// Refuses the handshake of connection `key`; the owner hears no more of it.
    pub(crate) fn refuse(&mut self, key: usize, reason: &str) {
        let now = self.now;
        if let Some(conn) = self.conns.get_mut(key) {
            conn.released = true;
            conn.session.refuse(reason, now);
            self.queue_flush(key);
            self.keep_scheduled(key);
        }
    }

    /// Drops connection `key` at once (a peer that said goodbye); the owner hears no more of
    /// it.
    pub(crate) fn drop_now(&mut self, key: usize) {
        self.remove(key);
    }

    /// Handles again the frames connection `key` has buffered (those held behind a HELLO
    /// until the handshake was decided).
    pub(crate) fn process_later(&mut self, key: usize) {
        self.reprocess.push(key);
    }

    /// What was counted since the last call.
    pub(crate) fn take_counts(&mut self) -> IoCounts {
        std::mem::take(&mut self.counts)
    }

    fn queue_flush(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.queued_for_flush {
                conn.queued_for_flush = true;
                self.to_flush.push(key);
            }
        }
    }

    /// Keeps the heap's deadline of connection `key` no later than its session's next one.
    /// Deadlines mostly move later as a connection is active, and one that comes too early
    /// finds nothing due and schedules the next; only when the session says its next deadline
    /// moved earlier is it computed again, so the hot path does not compute deadlines.
    fn keep_scheduled(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.session.take_deadline_moved_earlier() || conn.scheduled.is_none() {
                self.reschedule(key);
            }
        }
    }

    /// Puts the earliest deadline of connection `key` in the heap, if it moved earlier.
    fn reschedule(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(at) = conn.session.poll_timeout() {
            if conn.scheduled.is_none_or(|s| at < s) {
                conn.scheduled = Some(at);
                self.timers.push(at, key, conn.id);
            }
        }
    }

    /// Adds a connection dialled out (see [`dial::dial`]): its session is open and may hold
    /// bytes that arrived behind the welcome, which are handled on the first turn. From now on
    /// it runs under `config`. Returns its key and id.
    pub(crate) fn insert_dialled(
        &mut self,
        dialled: dial::Dialled,
        config: Arc<SessionConfig>,
        state: S,
    ) -> io::Result<(usize, ConnId)> {
        let dial::Dialled {
            socket,
            tls,
            session,
        } = dialled;
        socket.set_nonblocking(true)?;
        let peer = socket.peer_addr()?;
        let session = session.with_config(config);
        let socket = TcpStream::from_std(socket);
        let (key, id) = self.insert(socket, tls, peer, session, state)?;
        self.process_later(key);
        Ok((key, id))
    }

    /// Adds a connection another loop accepted and handed off: it starts where an accepted
    /// one does, awaiting the player's HELLO under `config`.
    pub(crate) fn adopt(
        &mut self,
        accepted: Accepted,
        config: Arc<SessionConfig>,
        state: S,
    ) -> io::Result<(usize, ConnId)> {
        let Accepted { socket, tls, peer } = accepted;
        socket.set_nonblocking(true)?;
        let session = Session::new(crate::proto::Role::Server, config, self.now);
        self.insert(TcpStream::from_std(socket), tls, peer, session, state)
    }

    fn insert(
        &mut self,
        mut socket: TcpStream,
        tls: Option<Box<tls::Tls>>,
        peer: SocketAddr,
        session: Session,
        state: S,
    ) -> io::Result<(usize, ConnId)> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut socket,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.serial = (self.serial.wrapping_add(1) & SERIAL_MASK).max(1);
        let id = ConnId::new(self.event_loop, self.serial, key);
        entry.insert(Conn {
            socket,
            tls,
            session,
            id,
            peer,
            state,
            released: false,
            queued_for_flush: false,
            queued_for_early_flush: false,
            scheduled: None,
        });
        self.reschedule(key);
        Ok((key, id))
    }

    /// Takes live connection `key` out of this loop, its session (handshake state, buffered
    /// input, pending output) intact, for another loop to [`attach`](Self::attach). This loop
    /// hears no more of it.
    #[cfg_attr(not(feature = "relay"), allow(dead_code))]
    pub(crate) fn detach(&mut self, key: usize) -> Option<Detached<S>> {
        self.live(key)?;
        let conn = self.remove(key)?;
        Some(Detached {
            socket: conn.socket.into(),
            tls: conn.tls,
            session: conn.session,
            peer: conn.peer,
            state: conn.state,
        })
    }

    /// Serves a connection another loop detached: its buffered frames are handled on the
    /// next turn, its output written as usual. Returns its key and its id in this loop.
    #[cfg_attr(not(feature = "relay"), allow(dead_code))]
    pub(crate) fn attach(&mut self, conn: Detached<S>) -> io::Result<(usize, ConnId)> {
        let socket = TcpStream::from_std(conn.socket);
        let (key, id) = self.insert(socket, conn.tls, conn.peer, conn.session, conn.state)?;
        self.process_later(key);
        self.queue_flush(key);
        Ok((key, id))
    }

    fn remove(&mut self, key: usize) -> Option<Conn<S>> {
        let mut conn = self.conns.try_remove(key)?;
        let _ = self.poll.registry().deregister(&mut conn.socket);
        Some(conn)
    }

    fn housekeeping_left(&self) -> bool {
        !self.backlog.is_empty()
            || self.accept_again.contains(&true)
            || self.timers.next().is_some_and(|at| at <= self.now)
    }
}

/// Runs the loop until [`Owner::finished`].
pub(crate) fn run<O: Owner>(owner: &mut O, io: &mut Io<O::State>) {
    let mut events = Events::with_capacity(1024);
    let mut next_tick = Instant::now() + TICK;
    loop {
        let busy = !io.busy_poll.is_zero() && io.now.duration_since(io.last_active) < io.busy_poll;
        let timeout = if busy || !io.read_again.is_empty() || io.housekeeping_left() {
            Duration::ZERO
        } else {
            let next = io.timers.next().map_or(next_tick, |at| {
                // Rounded up: epoll waits whole milliseconds.
                (at + Duration::from_micros(999)).min(next_tick)
            });
            next.saturating_duration_since(Instant::now())
        };
        if let Err(e) = io.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!("poll failed: {e}");
                return;
            }
        }
        io.now = Instant::now();
        if !events.is_empty() {
            io.last_active = io.now;
        }
        // Serving connections first: what they sent, then their output.
        let mut again = std::mem::take(&mut io.read_again);
        for &key in &again {
            read(owner, io, key, false);
        }
        again.clear();
        if io.read_again.is_empty() {
            io.read_again = again;
        }
        for event in events.iter() {
            match event.token() {
                WAKER => owner.on_wake(io),
                Token(t) if t > LISTENERS - io.listeners.len() => {
                    io.accept_again[LISTENERS - t] = true;
                }
                Token(key) => ready(
                    owner,
                    io,
                    key,
                    event.is_readable() || event.is_read_closed() || event.is_error(),
                    event.is_read_closed() || event.is_error(),
                    event.is_writable(),
                ),
            }
        }
        settle(owner, io);
        if io.now >= next_tick {
            owner.on_tick(io);
            settle(owner, io);
            next_tick = io.now + TICK;
        }
        let served = owner.on_turn_end(io) | !io.to_flush.is_empty();
        flush_all(owner, io);
        if io.housekeeping_left() {
            let serving_took = io.now.elapsed();
            if served {
                // Whoever the served connections talk to gets this thread's time slice.
                std::thread::yield_now();
            }
            let budget = HOUSEKEEPING_PER_TURN.max(serving_took / 2);
            housekeeping(owner, io, Instant::now() + budget);
            owner.on_turn_end(io);
            flush_all(owner, io);
        }
        if owner.finished(io) {
            return;
        }
    }
}

/// Readiness of connection `key`: handled now if it is being served, else queued for
/// housekeeping.
fn ready<O: Owner>(
    owner: &mut O,
    io: &mut Io<O::State>,
    key: usize,
    readable: bool,
    peer_closed: bool,
    writable: bool,
) {
    let Some(conn) = io.conns.get(key) else {
        return;
    };
    if !conn.session.is_welcomed() {
        io.backlog.push_back(Pending {
            key,
            id: conn.id,
            readable,
            peer_closed,
            writable,
        });
        return;
    }
    if readable {
        read(owner, io, key, peer_closed);
    }
    if writable {
        io.queue_flush(key);
    }
}

/// Accepts, handshakes, expiries and closes, oldest first, until `deadline`.
fn housekeeping<O: Owner>(owner: &mut O, io: &mut Io<O::State>, deadline: Instant) {
    while Instant::now() < deadline {
        if let Some(p) = io.backlog.pop_front() {
            // The connection may have gone, and its key been reused, since it was queued.
            if io.conns.get(p.key).is_some_and(|c| c.id == p.id) {
                if p.readable {
                    read(owner, io, p.key, p.peer_closed);
                }
                if p.writable {
                    io.queue_flush(p.key);
                }
            }
        } else if let Some((key, id)) = io.timers.pop_due(io.now) {
            expire(owner, io, key, id);
        } else if let Some(listener) = io.accept_again.iter().position(|&a| a) {
            accept_one(owner, io, listener);
        } else {
            return;
        }
        settle(owner, io);
        // Each step's goodbye or refusal is written within the budget it was counted in.
        flush_all(owner, io);
    }
}

/// A deadline of connection `key` came.
fn expire<O: Owner>(owner: &mut O, io: &mut Io<O::State>, key: usize, id: ConnId) {
    let now = io.now;
    let Some(conn) = io.conns.get_mut(key).filter(|c| c.id == id) else {
        return;
    };
    conn.scheduled = None;
    conn.session.handle_timeout(now);
    if conn.session.pending_output() > 0 {
        // What the session queued by itself (a ping) goes out like anything sent.
        io.queue_flush(key);
    }
    session_events(owner, io, key);
    io.reschedule(key);
}

/// Acts on what the session of connection `key` reported.
fn session_events<O: Owner>(owner: &mut O, io: &mut Io<O::State>, key: usize) {
    while let Some(event) = io.conns.get_mut(key).and_then(|c| c.session.poll_event()) {
        match event {
            Event::ReadAgain => {
                // The frames it has buffered first, then its socket.
                io.reprocess.push(key);
                io.read_again.push(key);
            }
            Event::Expired(violation) => {
                if io.live(key).is_some() {
                    owner.on_violation(io, key, violation);
                }
            }
            Event::Finished => return finish(owner, io, key, "the closing grace ran out"),
        }
    }
}

fn accept_one<O: Owner>(owner: &mut O, io: &mut Io<O::State>, listener: usize) {
    let Some(l) = io.listeners.get(listener).and_then(Option::as_ref) else {
        io.accept_again[listener] = false;
        return;
    };
    match l.accept() {
        Ok((mut socket, peer)) => {
            let _ = socket.set_nodelay(true);
            let tls = match io.listener_tls[listener]
                .as_ref()
                .map(|a| tls::Tls::server(a.config()))
            {
                None => None,
                Some(Ok(tls)) => Some(Box::new(tls)),
                Some(Err(e)) => {
                    tracing::warn!(%peer, "cannot start TLS: {e}");
                    return;
                }
            };
            match owner.accept(io, listener, peer) {
                Admit::Serve(config, state) => {
                    let session = Session::new(crate::proto::Role::Server, config, io.now);
                    if let Err(e) = io.insert(socket, tls, peer, session, state) {
                        tracing::warn!(%peer, "cannot register a connection: {e}");
                    }
                }
                // A TLS peer could not read a plaintext refusal: it only sees the close.
                Admit::Refuse(reason) if tls.is_some() => {
                    tracing::debug!(%peer, "refused before its TLS handshake: {reason}");
                }
                Admit::Refuse(reason) => {
                    let mut out = bytes::BytesMut::new();
                    Frame::Refused { reason }.encode(&mut out);
                    let _ = socket.write(&out);
                }
                Admit::HandOff => owner.hand_off(Accepted {
                    socket: socket.into(),
                    tls,
                    peer,
                }),
            }
        }
        // Edge-triggered: only an empty queue re-arms the listener's event.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.accept_again[listener] = false,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => {
            // Typically EMFILE: stop until the listener reports again; it stays registered.
            tracing::warn!("accept failed: {e}");
            io.accept_again[listener] = false;
        }
    }
}

/// Reads what connection `key` sent, within its per-turn budget. `peer_closed`: the event also
/// reported the end of the stream, which a short read must not be taken to have consumed.
fn read<O: Owner>(owner: &mut O, io: &mut Io<O::State>, key: usize, peer_closed: bool) {
    if let Some(tls) = io.conns.get_mut(key).and_then(|c| c.tls.as_deref_mut()) {
        tls.on_readiness();
    }
    let mut drained = false;
    for _ in 0..READS_PER_TURN {
        let now = io.now;
        let Some(conn) = io.conns.get_mut(key) else {
            return;
        };
        if !conn.session.wants_read() {
            // Paused (rate, output), or closing past its discard budget: a deadline or a
            // drained output brings it back.
            return io.keep_scheduled(key);
        }
        let limit = conn.session.read_limit();
        let step = match conn.tls.as_deref_mut() {
            None => read_step(&mut conn.socket, &mut io.scratch[..limit], peer_closed),
            Some(tls) => {
                let step = tls.read_step(&mut conn.socket, &mut io.scratch[..limit], peer_closed);
                match tls.take_handshake_done() {
                    Some(true) => io.counts.tls_resumed += 1,
                    Some(false) => io.counts.tls_full += 1,
                    None => {}
                }
                if let Step::Failed(_) = step {
                    // Tell the peer why (a TLS alert) before the socket goes.
                    tls.write_alert(&mut conn.socket);
                } else if tls.wants_write() && !conn.queued_for_flush {
                    // The handshake (or a ticket) has something to say.
                    conn.queued_for_flush = true;
                    io.to_flush.push(key);
                }
                step
            }
        };
        match step {
            Step::End => return end(owner, io, key, "the peer closed the connection"),
            Step::Moved { n, more } => {
                io.counts.bytes_in += n as u64;
                conn.session.handle_bytes(&io.scratch[..n], now);
                process(owner, io, key);
                flush_early(owner, io);
                if !more {
                    drained = true;
                    break;
                }
            }
            Step::Blocked => {
                drained = true;
                break;
            }
            Step::Failed(why) => return end(owner, io, key, &why),
        }
    }
    let Some(conn) = io.conns.get_mut(key) else {
        return;
    };
    if drained {
        conn.session.handle_input_drained();
    } else if conn.session.wants_read() {
        // More is waiting: read it next turn, after everyone else.
        io.read_again.push(key);
    }
    io.keep_scheduled(key);
}

/// Hands every frame connection `key` has buffered to the owner, as far as its session allows.
fn process<O: Owner>(owner: &mut O, io: &mut Io<O::State>, key: usize) {
    loop {
        let now = io.now;
        let Some(conn) = io.conns.get_mut(key).filter(|c| !c.released) else {
            return;
        };
        match conn.session.poll_packet(now, O::PASSES_CALLS) {
            Ok(Some(Packet::Frame(frame))) => owner.on_frame(io, key, frame),
            Ok(Some(Packet::Call(call))) => owner.on_call(io, key, call),
            Ok(None) => return io.keep_scheduled(key),
            Err(violation) => return owner.on_violation(io, key, violation),
        }
    }
}

/// Delivers what the owner's actions left for it: violations found while sending, and
/// connections whose frames it wants handled again.
fn settle<O: Owner>(owner: &mut O, io: &mut Io<O::State>) {
    loop {
        if let Some((key, id, violation)) = io.violations.pop() {
            if io.live(key).is_some_and(|c| c.id == id) {
                owner.on_violation(io, key, violation);
            }
        } else if let Some(key) = io.reprocess.pop() {
            process(owner, io, key);
        } else {
            return;
        }
    }
}

/// The peer's end of connection `key` (or a failure): gone, unless its session still has a
/// goodbye for a half-closed peer to read.
fn end<O: Owner>(owner: &mut O, io: &mut Io<O::State>, key: usize, why: &str) {
    if io
        .conns
        .get_mut(key)
        .is_some_and(|c| c.session.handle_peer_closed())
    {
        finish(owner, io, key, why);
    }
}

/// Drops connection `key`, telling the owner if it had not let go of it.
fn finish<O: Owner>(owner: &mut O, io: &mut Io<O::State>, key: usize, why: &str) {
    if let Some(conn) = io.remove(key) {
        if !conn.released {
            owner.on_closed(io, key, conn, why);
        }
    }
}

/// Writes the connections whose output passed [`EARLY_FLUSH_BYTES`]; they stay queued for the
/// turn's [`flush_all`], which writes what they gather meanwhile.
fn flush_early<O: Owner>(owner: &mut O, io: &mut Io<O::State>) {
    while let Some(key) = io.flush_early.pop() {
        if let Some(conn) = io.conns.get_mut(key) {
            conn.queued_for_early_flush = false;
            flush(owner, io, key);
        }
    }
}

fn flush_all<O: Owner>(owner: &mut O, io: &mut Io<O::State>) {
    while !io.to_flush.is_empty() {
        let mut keys = std::mem::take(&mut io.to_flush);
        for &key in &keys {
            if let Some(conn) = io.conns.get_mut(key) {
                conn.queued_for_flush = false;
                flush(owner, io, key);
            }
        }
        // The buffer is kept for the next turn (a Vec taken is a Vec allocated again).
        keys.clear();
        if io.to_flush.is_empty() {
            io.to_flush = keys;
        }
        settle(owner, io);
    }
}

/// Writes what connection `key` has to send; a closing connection then sends its FIN and
/// discards what the peer still sends.
fn flush<O: Owner>(owner: &mut O, io: &mut Io<O::State>, key: usize) {
    let now = io.now;
    let Some(conn) = io.conns.get_mut(key) else {
        return;
    };
    let written = match conn.tls.as_deref_mut() {
        Some(tls) => write_tls(&mut conn.socket, tls, &mut conn.session, now),
        None => write_plain(&mut conn.socket, &mut conn.session, now),
    };
    let written = match written {
        Ok(n) => n,
        Err(why) => return finish(owner, io, key, &why),
    };
    io.counts.bytes_out += written;
    let closing_done = conn.session.is_closing() && conn.session.poll_transmit().is_empty();
    session_events(owner, io, key);
    if closing_done && io.conns.contains(key) {
        // Read and drop what it still sends, finishing at its end of stream.
        read(owner, io, key, false);
    }
    io.keep_scheduled(key);
}

/// Writes the session's output to a plaintext socket until it would block; then, if the
/// session is closing and all is written, the FIN. Returns the bytes written, or why the
/// connection failed.
fn write_plain(socket: &mut TcpStream, session: &mut Session, now: Instant) -> Result<u64, String> {
    let mut written = 0;
    while !session.poll_transmit().is_empty() {
        match write_step(socket, session.poll_transmit()) {
            Step::Moved { n, .. } => {
                written += n as u64;
                session.handle_written(n, now);
            }
            Step::Blocked => return Ok(written),
            Step::End => return Err("connection closed while writing".into()),
            Step::Failed(why) => return Err(why),
        }
    }
    if session.poll_shutdown() {
        // Everything is written: say so with a FIN, then wait for the peer's (or the grace).
        // Closing while unread input sits in the socket would send a reset instead, and a
        // reset can destroy the goodbye before the peer reads it.
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }
    Ok(written)
}

/// As [`write_plain`], through TLS: the session's output goes into rustls as plaintext (as
/// much as its buffer takes) and leaves as records; a close sends the close_notify, then the
/// FIN. Returns the ciphertext bytes written.
fn write_tls(
    socket: &mut TcpStream,
    tls: &mut tls::Tls,
    session: &mut Session,
    now: Instant,
) -> Result<u64, String> {
    let written = tls.send(socket, session, now)?;
    if tls.take_fin_due() {
        // As for a plaintext socket, once: each shutdown raises another readiness event.
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use std::net::TcpStream as StdStream;

    /// Frames of the flooder, 1 KiB each: more than one turn's read budget in all.
    const FLOOD_FRAMES: usize = 300;
    const FRAME_BYTES: usize = 1024;

    /// An owner that welcomes every player and notes, per turn, which connection sent what.
    struct Recorder {
        config: Arc<SessionConfig>,
        turn: usize,
        /// (turn, key) of every EVENT frame.
        events: Vec<(usize, usize)>,
        welcomed: usize,
        stop: fn(&Recorder) -> bool,
        /// Each EVENT is also sent on to this connection...
        forward_to: Option<usize>,
        /// ...whose largest unwritten output, seen after each send, is kept here.
        most_pending: usize,
        /// Connections may end (else an end fails the test); why each did.
        closes_expected: bool,
        closed: Vec<String>,
    }

    impl Owner for Recorder {
        type State = ();
        fn accept(&mut self, _: &mut Io<()>, _: usize, _: SocketAddr) -> Admit<()> {
            Admit::Serve(self.config.clone(), ())
        }
        fn on_frame(&mut self, io: &mut Io<()>, key: usize, frame: Frame) {
            match frame {
                Frame::Hello { .. } => {
                    io.live_mut(key).unwrap().session.accept();
                    io.process_later(key);
                    self.welcomed += 1;
                }
                Frame::Event { name, args } => {
                    self.events.push((self.turn, key));
                    if let Some(to) = self.forward_to.filter(|&to| to != key) {
                        io.send(to, &Frame::Event { name, args });
                        let pending = io.live(to).unwrap().session.pending_output();
                        self.most_pending = self.most_pending.max(pending);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        fn on_violation(&mut self, _: &mut Io<()>, _: usize, v: Violation) {
            panic!("violation: {v:?}");
        }
        fn on_closed(&mut self, _: &mut Io<()>, _: usize, _: Conn<()>, why: &str) {
            if !self.closes_expected {
                panic!("closed: {why}");
            }
            self.closed.push(why.to_owned());
        }
        fn on_wake(&mut self, _: &mut Io<()>) {}
        fn on_tick(&mut self, _: &mut Io<()>) {}
        fn on_turn_end(&mut self, _: &mut Io<()>) -> bool {
            self.turn += 1;
            false
        }
        fn finished(&self, _: &Io<()>) -> bool {
            (self.stop)(self)
        }
    }

    /// A listener whose connections can hold the whole flood in the kernel before the driver
    /// reads any of it.
    fn roomy_listener() -> std::net::TcpListener {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        socket.set_recv_buffer_size(4 << 20).unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&addr.into()).unwrap();
        socket.listen(16).unwrap();
        socket.into()
    }

    fn player(addr: SocketAddr) -> StdStream {
        let socket = socket2::Socket::from(StdStream::connect(addr).unwrap());
        socket.set_send_buffer_size(4 << 20).unwrap();
        let mut socket: StdStream = socket.into();
        socket
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket.write_all(&hello()).unwrap();
        socket
    }

    /// A player's preface and HELLO.
    fn hello() -> BytesMut {
        let mut out = BytesMut::new();
        crate::proto::encode_preface(&mut out);
        Frame::Hello {
            place: String::new(),
            token: Bytes::new(),
        }
        .encode(&mut out);
        out
    }

    fn events(n: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        for _ in 0..n {
            let args = Bytes::from(vec![0u8; FRAME_BYTES - 4 - 1 - 2 - 1]);
            let name = Bytes::from_static(b"e");
            Frame::Event { name, args }.encode(&mut out);
        }
        out.to_vec()
    }

    /// A connection with more waiting than one turn's read budget gets that budget and waits
    /// for the next turn, behind the others: a flooder cannot hold the loop while a quiet
    /// player's frame waits. Everything the flooder sent is still read, in later turns.
    /// An owner that welcomes every player, its session limits lifted.
    fn recorder() -> Recorder {
        let config = SessionConfig {
            max_frame: 1 << 20,
            max_output: 1 << 20,
            pause_reading_above: None,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::ZERO,
            rate: crate::proto::RateLimit::UNLIMITED,
            max_inflight: u32::MAX,
        };
        Recorder {
            config: Arc::new(config),
            turn: 0,
            events: Vec::new(),
            welcomed: 0,
            stop: |r| r.welcomed == 2,
            forward_to: None,
            most_pending: 0,
            closes_expected: false,
            closed: Vec::new(),
        }
    }

    /// A driver with two welcomed players, a flooder and a quiet one.
    fn two_players() -> (Io<()>, Recorder, StdStream, StdStream) {
        let listener = roomy_listener();
        let addr = listener.local_addr().unwrap();
        let mut io: Io<()> = Io::new(0, vec![listener]).unwrap();
        let mut owner = recorder();
        let flooder = player(addr);
        let quiet = player(addr);
        run(&mut owner, &mut io);
        (io, owner, flooder, quiet)
    }

    fn key_of(io: &Io<()>, socket: &StdStream) -> usize {
        let addr = socket.local_addr().unwrap();
        io.live_conns().find(|(_, c)| c.peer == addr).unwrap().0
    }

    #[test]
    fn a_flooder_gets_one_turns_read_budget_and_the_quiet_player_is_served_in_that_turn() {
        let (mut io, mut owner, mut flooder, mut quiet) = two_players();
        let (flooder_key, quiet_key) = (key_of(&io, &flooder), key_of(&io, &quiet));

        // The flood is all in the kernel before the driver reads again: then the quiet player.
        flooder.write_all(&events(FLOOD_FRAMES)).unwrap();
        quiet.write_all(&events(1)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        owner.stop = |r| r.events.len() == FLOOD_FRAMES + 1;
        run(&mut owner, &mut io);

        let quiet_turn = owner
            .events
            .iter()
            .find(|(_, k)| *k == quiet_key)
            .map(|(t, _)| *t)
            .unwrap();
        let flooder_turns: Vec<usize> = owner
            .events
            .iter()
            .filter(|(_, k)| *k == flooder_key)
            .map(|(t, _)| *t)
            .collect();
        let first = flooder_turns[0];
        let in_first = flooder_turns.iter().filter(|&&t| t == first).count();
        let budget = READS_PER_TURN * READ_CHUNK / FRAME_BYTES;
        assert_eq!(flooder_turns.len(), FLOOD_FRAMES);
        assert!(
            in_first <= budget + 1,
            "the flooder had {in_first} frames read in one turn (budget: {budget})"
        );
        assert!(
            quiet_turn <= first,
            "the quiet player waited for turn {quiet_turn}, after the flooder's {first}"
        );
        assert!(*flooder_turns.last().unwrap() > first);
    }

    /// What one connection's frames make another send is written as each read is handled once
    /// it passes EARLY_FLUSH_BYTES, not held to the end of the turn: the peer of a busy link
    /// starts on it while the loop reads on. A whole turn's reads (256 KiB) are forwarded here.
    #[test]
    fn output_past_the_early_flush_mark_is_written_before_the_turn_ends() {
        let (mut io, mut owner, mut flooder, quiet) = two_players();
        let mut reader = quiet.try_clone().unwrap();
        let drain = std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        owner.forward_to = Some(key_of(&io, &quiet));
        flooder.write_all(&events(FLOOD_FRAMES)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        owner.stop = |r| r.events.len() == FLOOD_FRAMES;
        run(&mut owner, &mut io);

        let bound = EARLY_FLUSH_BYTES + READ_CHUNK + FRAME_BYTES;
        assert!(
            owner.most_pending <= bound,
            "{} bytes waited for the turn's end (bound: {bound})",
            owner.most_pending
        );
        drop((io, quiet));
        drain.join().unwrap().unwrap();
    }

    mod tls {
        use super::*;
        use rustls::pki_types::{CertificateDer, ServerName};
        use std::io::Read;

        /// TLS settings for "localhost" in files under the test's scratch directory: the
        /// driver's (loaded) and a client config that trusts it.
        fn configs() -> (Arc<crate::tls::Acceptor>, Arc<rustls::ClientConfig>) {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("remotefn-driver-tls-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&cert_file, made.cert.pem()).unwrap();
            std::fs::write(&key_file, made.key_pair.serialize_pem()).unwrap();
            let acceptor = crate::tls::Acceptor::load(&crate::tls::ServerTlsConfig::new(
                &cert_file, &key_file,
            ))
            .unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(made.cert.der().to_vec()))
                .unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            (acceptor, Arc::new(client))
        }

        fn tls_driver() -> (Io<()>, Recorder, SocketAddr, Arc<rustls::ClientConfig>) {
            let (server, client) = configs();
            let listener = roomy_listener();
            let addr = listener.local_addr().unwrap();
            let mut io: Io<()> = Io::new(0, Vec::new()).unwrap();
            io.listen_tls(listener, Some(server)).unwrap();
            (io, recorder(), addr, client)
        }

        /// A player speaking TLS is served as a plaintext one is: its handshake and frames
        /// reach the owner through the TLS layer, in order.
        #[test]
        fn a_tls_player_is_served_through_the_tls_layer() {
            let (mut io, mut owner, addr, client) = tls_driver();
            let player = std::thread::spawn(move || {
                let name = ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(client, name).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, StdStream::connect(addr).unwrap());
                let mut out = hello();
                out.extend_from_slice(&events(40));
                tls.write_all(&out).unwrap();
                tls.flush().unwrap();
                // Held open until the driver has read everything.
                let mut rest = Vec::new();
                let _ = tls.read_to_end(&mut rest);
            });
            owner.stop = |r| r.welcomed == 1 && r.events.len() == 40;
            run(&mut owner, &mut io);
            assert_eq!(owner.events.len(), 40);
            drop(io);
            player.join().unwrap();
        }

        /// A plaintext player on a TLS port is cut, and the reason names TLS.
        #[test]
        fn a_plaintext_player_on_a_tls_port_is_cut_with_a_tls_reason() {
            let (mut io, mut owner, addr, _) = tls_driver();
            owner.closes_expected = true;
            let _plain = player(addr);
            owner.stop = |r| !r.closed.is_empty();
            run(&mut owner, &mut io);
            assert_eq!(owner.welcomed, 0);
            assert!(owner.closed[0].contains("TLS"), "{:?}", owner.closed);
        }
    }
}
