//! The event loop of a server or a client: an [`Owner`] of the I/O driver.
//!
//! The driver owns the sockets, their sessions, budgets, deadlines and closes; the reactor
//! decides what frames mean for an endpoint: calls and events go to the dispatch pool, replies
//! to the call slots, handshakes to the authenticator. A connection's id (the player id on a
//! server) is the driver's `serial << 32 | key`, so a command for a connection that has since
//! closed, and whose key was reused, is recognised and dropped. Players behind a relay have no
//! socket of their own: their frames travel in ROUTED on their host link, and they live in
//! [`Reactor::relayed`] under the relay's ids (top bit set, so they never collide).
//!
//! The reactor runs no user code but handlers bound inline (declared non-blocking by the game,
//! which blocking calls refuse to start inside), and never blocks; other threads reach it
//! through the endpoint's command channel and a [`mio::Waker`].

mod link;

pub(crate) use link::connect_link;

use crate::calls::{Outbound, PeerCalls};
use crate::dispatch::{self, InlineView, Job};
use crate::driver::{self, Admit, Conn, Io, Owner};
use crate::endpoint::{BoundInline, Command, Endpoint, Identity, LinkSpec, PlayerInfo, Side};
use crate::error::Error;
use crate::ids::{CallId, ConnId, IdMap};
use crate::metrics::CallOutcome;
use crate::proto::{self, ErrorKind, Frame, GoodbyeCode, InboundCalls, SessionConfig, Violation};
use crate::stats::{bump, CutLog};
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long shutdown waits for goodbyes to be written before closing sockets anyway.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
/// Jobs gathered before they are handed to the pool, at most (the rest of a turn's jobs follow
/// at its end): enough to cover a worker's wake-up, few enough that the first waits little.
const SUBMIT_BATCH: usize = 32;

/// What the reactor keeps per connection of the driver.
pub(crate) enum Peer {
    /// A player of a server, or a client's server, and the calls in flight to it.
    Direct(PeerCalls),
    /// A host link to a relay; the players it carries are in [`Endpoints::relayed`]. Boxed:
    /// every player pays for the size of this enum, and links are few.
    Link(Box<LinkSpec>),
}

/// A player behind a relay.
struct Relayed {
    /// The driver key and id of its host link.
    link: usize,
    link_id: ConnId,
    peer: Option<SocketAddr>,
    welcomed: bool,
    /// Its calls to the game server not yet answered.
    inbound: InboundCalls,
    /// The game server's calls to it in flight.
    calls: PeerCalls,
}

/// Who a frame or a command is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// A connection of the driver, by key.
    Direct(usize),
    /// A player behind a relay, by id.
    Relayed(ConnId),
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

/// A server's or client's event loop, ready to run on its thread.
pub(crate) struct Reactor {
    owner: Endpoints,
    io: Io<Peer>,
}

/// The reactor's side of the loop.
pub(crate) struct Endpoints {
    ep: Arc<Endpoint>,
    /// Which of the endpoint's event loops this is.
    event_loop: usize,
    /// The loop the next accepted player goes to (accepts happen on the first loop and are
    /// dealt round-robin).
    next_loop: usize,
    /// Players behind relays, by id.
    relayed: IdMap<ConnId, Relayed>,
    /// Which peer each outbound call in flight went to.
    outbound: Outbound,
    shutdown_deadline: Option<Instant>,
    /// Jobs for the pool from this turn, handed over together: under load one wake-up of a
    /// parked worker then covers many jobs rather than one.
    jobs: Vec<Job>,
    /// Connections cut, logged with a bounded volume.
    cuts: CutLog,
    players_session: Arc<SessionConfig>,
    links_session: Arc<SessionConfig>,
    /// This loop's copy of the functions bound inline.
    inline: InlineView<BoundInline>,
    /// Where a reply to a relayed player is encoded before it is wrapped for its link.
    scratch: BytesMut,
}

impl Reactor {
    /// Event loop `event_loop` of a server: listening on `listener` if given (a server that
    /// only serves through relays has none, nor do its loops but the first; one can be added
    /// later with `Command::Listen`).
    pub(crate) fn server(
        ep: Arc<Endpoint>,
        event_loop: usize,
        listener: Option<std::net::TcpListener>,
    ) -> io::Result<Reactor> {
        Reactor::new(ep, event_loop, listener.into_iter().collect())
    }

    /// A reactor for a client whose handshake is done: `session` is open and may already hold
    /// bytes that arrived after the welcome. Returns the reactor and the connection's id.
    pub(crate) fn client(
        ep: Arc<Endpoint>,
        dialled: crate::driver::dial::Dialled,
        busy_poll: Duration,
    ) -> io::Result<(Reactor, ConnId)> {
        let mut reactor = Reactor::new(ep, 0, Vec::new())?;
        reactor.io.set_busy_poll(busy_poll);
        let config = reactor.owner.players_session.clone();
        let state = Peer::Direct(PeerCalls::default());
        let (_, id) = reactor.io.insert_dialled(dialled, config, state)?;
        bump(&reactor.owner.counters().connections, 1);
        Ok((reactor, id))
    }

    fn new(
        ep: Arc<Endpoint>,
        event_loop: usize,
        listeners: Vec<std::net::TcpListener>,
    ) -> io::Result<Reactor> {
        let mut io = Io::new(event_loop, Vec::new())?;
        for listener in listeners {
            io.listen_tls(listener, ep.tls().players.clone())?;
        }
        if !ep.set_waker(event_loop, io.waker()?) {
            return Err(io::Error::other("this endpoint already has a reactor"));
        }
        let ep_loops = ep.loop_count();
        let limits = ep.limits();
        let players_session = limits.player_session(ep.side() == Side::Server);
        let links_session = limits.link_session(limits.max_output_buffer);
        let who = match ep.side() {
            Side::Server => "server",
            Side::Client => "client",
        };
        Ok(Reactor {
            io,
            owner: Endpoints {
                outbound: Outbound::new(ep.limits().max_calls_in_flight),
                ep,
                event_loop,
                // The first player goes to the second loop (if any): handing off is then the
                // usual path, not one only the hundredth player takes.
                next_loop: 1 % ep_loops,
                relayed: IdMap::default(),
                shutdown_deadline: None,
                jobs: Vec::with_capacity(SUBMIT_BATCH),
                cuts: CutLog::new(who, Instant::now()),
                players_session: Arc::new(players_session),
                links_session: Arc::new(links_session),
                inline: InlineView::default(),
                scratch: BytesMut::new(),
            },
        })
    }

    /// Runs until shutdown. A panic inside fails every pending call rather than leaving callers
    /// parked forever.
    pub(crate) fn run(self) {
        let ep = self.owner.ep.clone();
        let Reactor { mut owner, mut io } = self;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            driver::run(&mut owner, &mut io);
            owner.stopped(&mut io);
        }));
        if let Err(panic) = result {
            tracing::error!("reactor panicked: {}", crate::error::panic_message(&panic));
            ep.mark_closed();
            ep.calls()
                .fail_all(&Error::io("the reactor thread panicked"));
        }
    }
}

impl Endpoints {
    /// This loop's counters.
    fn counters(&self) -> &crate::stats::Counters {
        self.ep.counters(self.event_loop)
    }

    /// The loop returned: at shutdown, fail what is left; otherwise polling failed.
    fn stopped(&mut self, io: &mut Io<Peer>) {
        if self.shutdown_deadline.is_none() {
            self.ep
                .calls()
                .fail_all(&Error::io("the event loop stopped: poll failed"));
        }
        let keys: Vec<usize> = io.live_conns().map(|(k, _)| k).collect();
        for key in keys {
            self.release(io, Target::Direct(key), &Error::Closed("shut down".into()));
        }
        self.submit_pending();
    }

    /// Queues a job for the pool (see [`Endpoints::submit_pending`]).
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
        for job in self.jobs.drain(..) {
            self.ep.submit(job);
        }
    }

    /// The player (or connection) with this id, if it is live.
    fn lookup(&self, io: &Io<Peer>, id: ConnId) -> Option<Target> {
        // A relay's ids have the top bit set; the driver's never do.
        if id.0 >> 63 == 1 {
            return self
                .relayed
                .contains_key(&id)
                .then_some(Target::Relayed(id));
        }
        io.by_id(id).map(Target::Direct)
    }

    fn id_of(io: &Io<Peer>, target: Target) -> ConnId {
        match target {
            Target::Direct(key) => io.live(key).map_or(ConnId(0), |c| c.id),
            Target::Relayed(id) => id,
        }
    }

    fn welcomed(&self, io: &Io<Peer>, target: Target) -> bool {
        match target {
            Target::Direct(key) => io.live(key).is_some_and(|c| c.session.is_welcomed()),
            Target::Relayed(id) => self.relayed.get(&id).is_some_and(|r| r.welcomed),
        }
    }

    fn peer_addr(&self, io: &Io<Peer>, target: Target) -> Option<SocketAddr> {
        match target {
            Target::Direct(key) => io.live(key).map(|c| c.peer),
            Target::Relayed(id) => self.relayed.get(&id).and_then(|r| r.peer),
        }
    }

    /// The outbound calls in flight to `target` (a free function, so that the caller can
    /// borrow `outbound` beside it).
    fn calls_of<'a>(
        relayed: &'a mut IdMap<ConnId, Relayed>,
        io: &'a mut Io<Peer>,
        target: Target,
    ) -> Option<&'a mut PeerCalls> {
        match target {
            Target::Direct(key) => match &mut io.live_mut(key)?.state {
                Peer::Direct(calls) => Some(calls),
                Peer::Link(_) => None,
            },
            Target::Relayed(id) => relayed.get_mut(&id).map(|r| &mut r.calls),
        }
    }

    /// Sends an encoded frame to a player: on its socket, or wrapped for its relay link.
    fn send_to(&self, io: &mut Io<Peer>, target: Target, frame: &[u8]) {
        match target {
            Target::Direct(key) => io.send_bytes(key, frame),
            Target::Relayed(id) => {
                if let Some(r) = self.relayed.get(&id) {
                    io.send_with(r.link, |out| proto::encode_routed(out, id.0, frame));
                }
            }
        }
    }

    fn send_frame(&self, io: &mut Io<Peer>, target: Target, frame: &Frame) {
        match target {
            Target::Direct(key) => io.send(key, frame),
            Target::Relayed(_) => {
                let mut out = BytesMut::new();
                frame.encode(&mut out);
                self.send_to(io, target, &out);
            }
        }
    }

    fn drain_commands(&mut self, io: &mut Io<Peer>) {
        let ep = self.ep.clone();
        for cmd in ep.take_commands(self.event_loop) {
            self.handle_command(io, cmd);
        }
    }

    fn handle_command(&mut self, io: &mut Io<Peer>, cmd: Command) {
        match cmd {
            Command::Call { conn, call, frame } => match self.lookup(io, conn) {
                Some(target) if self.welcomed(io, target) => {
                    if let Some(calls) = Self::calls_of(&mut self.relayed, io, target) {
                        self.outbound.sent(calls, conn, call);
                    }
                    self.send_to(io, target, &frame);
                }
                _ => {
                    let err = self.missing(conn);
                    self.ep.calls().complete(call, Err(err));
                }
            },
            Command::Abandon { conn, call } => {
                if let Some(target) = self.lookup(io, conn) {
                    if let Some(calls) = Self::calls_of(&mut self.relayed, io, target) {
                        self.outbound.take(calls, conn, call);
                    }
                }
            }
            Command::Send { conn, frame } => {
                if let Some(target) = self.lookup(io, conn) {
                    self.send_to(io, target, &frame);
                }
            }
            Command::Reply { conn, frame } => {
                if let Some(target) = self.lookup(io, conn) {
                    match target {
                        Target::Direct(key) => {
                            if let Some(c) = io.live_mut(key) {
                                c.session.answered();
                            }
                        }
                        Target::Relayed(id) => {
                            if let Some(r) = self.relayed.get_mut(&id) {
                                r.inbound.answered();
                            }
                        }
                    }
                    self.send_to(io, target, &frame);
                }
            }
            Command::Broadcast { frame } => self.broadcast(io, &frame),
            Command::Listen { listener, done } => {
                let tls = self.ep.tls().players.clone();
                let _ = done.send(io.listen_tls(listener, tls).map(drop));
            }
            Command::AddLink { link, spec } => self.add_link(io, *link, spec),
            Command::Accept { conn, identity } => {
                if let Some(target) = self.lookup(io, conn) {
                    self.welcome(io, target, identity);
                }
            }
            Command::Refuse { conn, reason } => {
                if let Some(target) = self.lookup(io, conn) {
                    self.refuse(io, target, &reason);
                }
            }
            Command::Close { conn, code, reason } => {
                if let Some(target) = self.lookup(io, conn) {
                    self.close(io, target, CloseReason::goodbye(code, reason));
                }
            }
            Command::Shutdown => self.begin_shutdown(io),
            Command::Adopt(accepted) => {
                let (config, state) = (self.players_session.clone(), PeerCalls::default());
                let peer = accepted.peer;
                if let Err(e) = io.adopt(accepted, config, Peer::Direct(state)) {
                    tracing::warn!(%peer, "cannot register a connection: {e}");
                }
            }
        }
    }

    /// Direct players get the frame; each relay link gets one BROADCAST for all its players.
    fn broadcast(&self, io: &mut Io<Peer>, frame: &bytes::Bytes) {
        let targets: Vec<(usize, bool)> = io
            .live_conns()
            .filter(|(_, c)| c.session.is_welcomed())
            .map(|(k, c)| (k, matches!(c.state, Peer::Link(_))))
            .collect();
        for (key, is_link) in targets {
            if is_link {
                let broadcast = Frame::Broadcast {
                    frame: frame.slice(4..),
                };
                io.send(key, &broadcast);
            } else {
                io.send_bytes(key, frame);
            }
        }
    }

    /// The error for a call to a connection that is not there.
    fn missing(&self, conn: ConnId) -> Error {
        match self.ep.side() {
            Side::Server => Error::NotFound(conn.player()),
            Side::Client => {
                Error::Disconnected(self.ep.lost().unwrap_or_else(|| "not connected".into()))
            }
        }
    }

    fn begin_shutdown(&mut self, io: &mut Io<Peer>) {
        io.stop_listening();
        self.shutdown_deadline = Some(io.now() + SHUTDOWN_FLUSH);
        let (code, reason) = match self.ep.side() {
            Side::Server => (GoodbyeCode::Shutdown, "server shutting down"),
            Side::Client => (GoodbyeCode::Normal, "client closed"),
        };
        let keys: Vec<usize> = io.live_conns().map(|(k, _)| k).collect();
        for key in keys {
            self.release(io, Target::Direct(key), &Error::Closed("shut down".into()));
            io.close(key, code, reason);
        }
    }

    /// A frame from a player (or, on a client, from its server).
    fn on_player_frame(&mut self, io: &mut Io<Peer>, target: Target, frame: Frame) {
        let id = Self::id_of(io, target);
        match frame {
            Frame::Hello { place, token } => {
                if self.ep.has_authenticator() {
                    self.submit(Job::Authenticate {
                        conn: id,
                        place,
                        token,
                    });
                } else {
                    self.welcome(io, target, Identity::default());
                }
            }
            Frame::Invoke { call, name, args } => {
                if let Target::Relayed(id) = target {
                    // A direct player's calls in flight are its session's to bound.
                    let max = self.ep.limits().max_inflight_per_player;
                    let Some(r) = self.relayed.get_mut(&id) else {
                        return;
                    };
                    if let Err(violation) = r.inbound.arrived(max) {
                        return self.violation(io, target, violation);
                    }
                }
                bump(&self.counters().calls_in, 1);
                self.invoke(io, target, call, name, args);
            }
            Frame::Event { name, args } => {
                bump(&self.counters().events_in, 1);
                self.submit(Job::Event {
                    conn: id,
                    name,
                    args,
                });
            }
            Frame::Result { call, values } => self.complete(io, target, call, Ok(values)),
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
                self.complete(io, target, call, Err(error))
            }
            Frame::Ping(n) => self.send_frame(io, target, &Frame::Pong(n)),
            Frame::Pong(_) => {}
            Frame::Goodbye { code, reason } => {
                let why = format!("the peer said goodbye ({code:?}): {reason}");
                self.close(io, target, CloseReason::peer_gone(why));
            }
            // Handshake answers (which the protocol state machine yields only before the
            // handshake, done before a connection reaches here) and host-link frames.
            unexpected => {
                let state = match unexpected {
                    Frame::Welcome { .. } | Frame::Refused { .. } => "after the handshake",
                    _ => "from a player (host-link frames travel only between hosts and relays)",
                };
                let frame = unexpected.frame_type();
                let violation = proto::ProtocolError::Unexpected { frame, state }.into();
                self.violation(io, target, violation);
            }
        }
    }

    /// A call from `target`: run here and now if its function is bound inline (its reply
    /// queued at once), else handed to the pool.
    fn invoke(
        &mut self,
        io: &mut Io<Peer>,
        target: Target,
        call: u64,
        name: bytes::Bytes,
        args: bytes::Bytes,
    ) {
        let id = Self::id_of(io, target);
        let fname = dispatch::name_str(&name);
        // Called through the loop's own copy of the table, not a clone of the handler: a call
        // touches no reference count another loop shares.
        let Some(bound) = self.inline.get(self.ep.inline_handlers(), fname) else {
            return self.submit(Job::Invoke {
                conn: id,
                call,
                name,
                args,
            });
        };
        let decoded = match crate::value::codec::decode_tuple(&args, self.ep.decode_limits()) {
            Ok(decoded) => decoded,
            Err(e) => {
                bound.stats.refused(CallOutcome::Invalid);
                let reason = format!("malformed arguments to {fname:?}: {e}");
                let violation = Violation::new(GoodbyeCode::ProtocolError, reason);
                return self.violation(io, target, violation);
            }
        };
        let started = Instant::now();
        let answer = dispatch::inline::run(fname, |call| (bound.handler)(id, decoded, call));
        let result = answer
            .as_ref()
            .map(|values| &values[..])
            .map_err(String::as_str);
        if let Err(e) = &result {
            tracing::debug!(player = id.0, "inline handler for {fname:?} failed: {e}");
        }
        let ep = &self.ep;
        let mut outcome = match result {
            Ok(_) => CallOutcome::Ok,
            Err(_) => CallOutcome::Error,
        };
        match target {
            Target::Direct(key) => {
                if let Some(c) = io.live_mut(key) {
                    c.session.answered();
                }
                io.send_with(key, |out| {
                    if ep.encode_reply(out, call, result).is_err() {
                        outcome = CallOutcome::Error;
                    }
                });
                bound.stats.answered(outcome, started.elapsed());
            }
            Target::Relayed(rid) => {
                if let Some(r) = self.relayed.get_mut(&rid) {
                    r.inbound.answered();
                }
                let mut out = std::mem::take(&mut self.scratch);
                out.clear();
                if ep.encode_reply(&mut out, call, result).is_err() {
                    outcome = CallOutcome::Error;
                }
                bound.stats.answered(outcome, started.elapsed());
                self.send_to(io, target, &out);
                self.scratch = out;
            }
        }
    }

    /// A reply from `target`: only calls sent to it can be completed by it.
    fn complete(
        &mut self,
        io: &mut Io<Peer>,
        target: Target,
        call: u64,
        outcome: Result<bytes::Bytes, Error>,
    ) {
        let (peer, call) = (Self::id_of(io, target), CallId::from_raw(call));
        let outbound = &mut self.outbound;
        if Self::calls_of(&mut self.relayed, io, target)
            .is_some_and(|calls| outbound.take(calls, peer, call))
        {
            self.ep.calls().complete(call, outcome);
        } else {
            tracing::debug!(
                call = call.get(),
                "reply to an unknown or expired call dropped"
            );
        }
    }

    /// A violation by `target`: cut with a goodbye, or refused if still in the handshake.
    fn violation(&mut self, io: &mut Io<Peer>, target: Target, violation: Violation) {
        tracing::debug!(?target, "violation: {}", violation.reason);
        let link = matches!(target, Target::Direct(k) if matches!(io.live(k).map(|c| &c.state), Some(Peer::Link(_))));
        if violation.code == GoodbyeCode::ProtocolError
            && !link
            && self.ep.side() == Side::Server
            && !self.welcomed(io, target)
        {
            self.refuse(io, target, &violation.reason);
        } else {
            let reason = CloseReason::goodbye(violation.code, violation.reason);
            self.close(io, target, reason);
        }
    }

    fn welcome(&mut self, io: &mut Io<Peer>, target: Target, identity: Identity) {
        let max = self.ep.limits().max_players;
        if self.ep.player_count() >= max {
            return self.refuse(io, target, &format!("server full ({max} players)"));
        }
        let id = Self::id_of(io, target);
        let peer = self.peer_addr(io, target);
        tracing::info!(
            player = id.0,
            ?peer,
            user_id = identity.user_id,
            "player joined"
        );
        match target {
            Target::Direct(key) => {
                let Some(conn) = io.live_mut(key) else {
                    return;
                };
                conn.session.accept();
                let welcome = Frame::Welcome {
                    player: id.0,
                    max_frame: self.ep.limits().max_payload,
                };
                io.send(key, &welcome);
                // Frames that arrived behind the HELLO were held back until now.
                io.process_later(key);
            }
            Target::Relayed(id) => {
                let Some(r) = self.relayed.get_mut(&id) else {
                    return;
                };
                r.welcomed = true;
                let accept = Frame::PlayerAccept {
                    player: id.0,
                    user_id: identity.user_id,
                    name: identity.name.clone(),
                };
                let link = r.link;
                io.send(link, &accept);
            }
        }
        self.ep
            .add_player(id.player(), PlayerInfo { identity, peer });
        self.submit(Job::PlayerAdded(id.player()));
    }

    fn refuse(&mut self, io: &mut Io<Peer>, target: Target, reason: &str) {
        bump(&self.counters().refused, 1);
        self.cuts
            .record("handshake refused", &self.peer_addr(io, target), reason);
        match target {
            Target::Relayed(id) => {
                let reject = Frame::PlayerReject {
                    player: id.0,
                    reason: reason.to_owned(),
                };
                if let Some(r) = self.relayed.get(&id) {
                    io.send(r.link, &reject);
                }
                bump(&self.counters().disconnects_other, 1);
                self.release(io, target, &Error::Rejected(reason.to_owned()));
            }
            Target::Direct(key) => {
                self.release(io, target, &Error::Rejected(reason.to_owned()));
                io.refuse(key, reason);
            }
        }
    }

    /// Closes a connection: the goodbye first (on its socket, or as a KICK on its relay link),
    /// then it is gone for everyone else while its socket finishes the close.
    fn close(&mut self, io: &mut Io<Peer>, target: Target, reason: CloseReason) {
        if let Some((code, text)) = &reason.goodbye {
            let cause = match code {
                GoodbyeCode::ProtocolError => "protocol error",
                GoodbyeCode::Limit => "limit",
                GoodbyeCode::Timeout => "timeout",
                GoodbyeCode::Kicked => "kicked",
                _ => "closed",
            };
            let who = (Self::id_of(io, target), self.peer_addr(io, target));
            self.cuts.record(cause, &who, &format!("closing: {text}"));
        }
        let counter = match reason.goodbye.as_ref().map(|(code, _)| *code) {
            Some(GoodbyeCode::ProtocolError) => &self.counters().disconnects_protocol,
            Some(GoodbyeCode::Limit) => &self.counters().disconnects_limit,
            Some(GoodbyeCode::Timeout) => &self.counters().disconnects_timeout,
            Some(GoodbyeCode::Kicked) => &self.counters().kicks,
            _ => &self.counters().disconnects_other,
        };
        bump(counter, 1);
        match target {
            Target::Relayed(id) => {
                if let (Some((_, text)), Some(r)) = (&reason.goodbye, self.relayed.get(&id)) {
                    // The relay closes the player's socket, with the reason.
                    let kick = Frame::Kick {
                        player: id.0,
                        reason: text.clone(),
                    };
                    io.send(r.link, &kick);
                }
                self.release(io, target, &reason.error);
            }
            Target::Direct(key) => {
                self.release(io, target, &reason.error);
                match &reason.goodbye {
                    Some((code, text)) => io.close(key, *code, text),
                    None => io.drop_now(key),
                }
            }
        }
    }

    /// Fails a departing connection's pending calls and forgets the player (its
    /// `PlayerRemoving` job goes behind the jobs of its last frames); a departing link takes
    /// its relayed players with it.
    fn release(&mut self, io: &mut Io<Peer>, target: Target, error: &Error) {
        let id = Self::id_of(io, target);
        let welcomed = self.welcomed(io, target);
        let calls = match target {
            Target::Relayed(id) => self.relayed.remove(&id).map(|r| r.calls),
            Target::Direct(key) => match io.live_mut(key).map(|c| &mut c.state) {
                Some(Peer::Direct(calls)) => Some(std::mem::take(calls)),
                Some(Peer::Link(spec)) => {
                    let spec = (**spec).clone();
                    self.link_lost(io, key, spec, error);
                    None
                }
                None => None,
            },
        };
        if let Some(calls) = calls {
            self.depart(id, welcomed, calls, error);
        }
    }

    /// A player (or, on a client, the server) is gone: its calls fail with `error`, and a
    /// welcomed player leaves (its `PlayerRemoving` job goes behind those of its last frames).
    fn depart(&mut self, id: ConnId, welcomed: bool, mut calls: PeerCalls, error: &Error) {
        for call in self.outbound.take_all(&mut calls) {
            self.ep.calls().complete(call, Err(error.clone()));
        }
        if self.ep.side() == Side::Client {
            self.ep.set_lost(error.to_string());
        }
        if welcomed && self.ep.side() == Side::Server {
            self.ep.remove_player(id.player());
            tracing::info!(player = id.0, "player left: {error}");
            self.submit(Job::PlayerRemoving(id.player()));
        }
    }
}

impl Owner for Endpoints {
    type State = Peer;

    fn accept(&mut self, _: &mut Io<Peer>, _: usize, peer: SocketAddr) -> Admit<Peer> {
        bump(&self.counters().connections, 1);
        tracing::debug!(%peer, "accepted");
        let serving = self.next_loop;
        self.next_loop = (serving + 1) % self.ep.loop_count();
        if serving != self.event_loop {
            return Admit::HandOff;
        }
        Admit::Serve(
            self.players_session.clone(),
            Peer::Direct(PeerCalls::default()),
        )
    }

    fn hand_off(&mut self, accepted: crate::driver::Accepted) {
        // `accept` chose the loop and moved past it.
        let count = self.ep.loop_count();
        let to = (self.next_loop + count - 1) % count;
        self.ep.command_to(to, Command::Adopt(accepted));
    }

    fn on_frame(&mut self, io: &mut Io<Peer>, key: usize, frame: Frame) {
        match io.live(key).map(|c| matches!(c.state, Peer::Link(_))) {
            Some(true) => self.on_link_frame(io, key, frame),
            Some(false) => self.on_player_frame(io, Target::Direct(key), frame),
            None => {}
        }
    }

    fn on_violation(&mut self, io: &mut Io<Peer>, key: usize, violation: Violation) {
        self.violation(io, Target::Direct(key), violation);
    }

    fn on_closed(&mut self, io: &mut Io<Peer>, key: usize, conn: Conn<Peer>, why: &str) {
        bump(&self.counters().disconnects_other, 1);
        if conn.tls_failed() {
            bump(&self.counters().tls_failures, 1);
            self.cuts.record("TLS failed", &conn.peer, why);
        }
        let error = Error::Disconnected(why.to_owned());
        let welcomed = conn.session.is_welcomed();
        match conn.state {
            Peer::Link(spec) => self.link_lost(io, key, *spec, &error),
            Peer::Direct(calls) => self.depart(conn.id, welcomed, calls, &error),
        }
    }

    fn on_wake(&mut self, io: &mut Io<Peer>) {
        self.drain_commands(io);
    }

    fn on_tick(&mut self, io: &mut Io<Peer>) {
        self.cuts.poll(io.now());
    }

    fn on_turn_end(&mut self, io: &mut Io<Peer>) -> bool {
        let counts = io.take_counts();
        bump(&self.counters().bytes_in, counts.bytes_in);
        bump(&self.counters().bytes_out, counts.bytes_out);
        if counts.tls_full + counts.tls_resumed > 0 {
            bump(&self.counters().tls_handshakes, counts.tls_full);
            bump(&self.counters().tls_resumed, counts.tls_resumed);
        }
        let served = !self.jobs.is_empty();
        self.submit_pending();
        served
    }

    fn finished(&self, io: &Io<Peer>) -> bool {
        self.shutdown_deadline
            .is_some_and(|deadline| io.is_empty() || io.now() >= deadline)
    }
}
