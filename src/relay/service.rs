//! The relay: the owner of an I/O driver over both listeners, every player and every host.
//! It runs no user code: it checks handshakes against the place's host, rewrites call ids
//! through its route table, and moves frames. Sockets, budgets, liveness, limits and closes
//! are the driver's and the sessions'.
//!
//! With several loops, each runs one `Service` over its own driver; the first accepts. A
//! connection's handshake names its place, and a place belongs to one loop ([`Loops::loop_of`]):
//! a player or host whose place is another loop's is detached there and handed over with its
//! handshake frame, so that a place's host and players, and every call between them, stay on
//! one thread.

use super::metrics::Metrics;
use super::routes::{Direction, Routes};
use super::{Loops, RelayConfig};
use crate::driver::{self, Admit, Conn, Detached, Io, Owner};
use crate::ids::IdMap;
use crate::proto::{
    CallFrame, ErrorKind, Frame, FrameType, GoodbyeCode, SessionConfig, Violation, LINK_OVERHEAD,
};
use crate::stats::CutLog;
use bytes::{BufMut, Bytes, BytesMut};
use prometheus::local::{LocalHistogram, LocalIntCounter};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The listeners, by index in the driver.
const PLAYERS: usize = 0;
/// After the drain, how long goodbyes may take to be written.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// What the relay's owner asks of the loop.
pub(crate) enum RelayCommand {
    /// Stop accepting, drain in-flight calls for up to this long, then close everything.
    Shutdown(Duration),
    /// Serve a connection whose place is this loop's, and act on the handshake frame it
    /// arrived with.
    Adopt(Box<(Detached<PeerRole>, Frame)>),
}

/// A player, once it said HELLO.
pub(crate) struct PlayerState {
    /// 0 until its HELLO names a place.
    id: u64,
    place: String,
    token: Bytes,
    /// The place's host once it has been told about this player (the calls' way there).
    host: Option<usize>,
}

/// What the relay keeps per connection.
pub(crate) enum PeerRole {
    Player(PlayerState),
    /// A host; its place once it said HOST_HELLO.
    Host(Option<String>),
}

/// The relay's side of the loop: places, players, routes.
pub(crate) struct Service {
    places: HashMap<String, usize>,
    players_by_id: IdMap<u64, usize>,
    routes: Routes,
    config: RelayConfig,
    players_session: Arc<SessionConfig>,
    hosts_session: Arc<SessionConfig>,
    metrics: Arc<Metrics>,
    /// The per-call metrics, counted by this loop alone and added to `metrics` at the end of
    /// each turn: a call touches no atomic another loop does.
    calls_to_host: LocalIntCounter,
    calls_to_player: LocalIntCounter,
    call_errors: LocalIntCounter,
    call_latency: LocalHistogram,
    loops: Arc<Loops>,
    event_loop: usize,
    /// Player ids are `prefix | counter`: the prefix (top bit set, 15 random bits) keeps the ids
    /// of several relays in front of one host apart.
    id_prefix: u64,
    next_id: u64,
    draining: Option<Instant>,
    final_flush: Option<Instant>,
    /// Connections cut, logged with a bounded volume.
    cuts: CutLog,
}

fn random_prefix() -> u64 {
    // Seeded from the clock and the process: distinct per relay process, which is all that
    // matters (ids only need to differ between relays in front of the same host).
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    (1 << 63) | ((h.finish() & 0x7fff) << 48)
}

/// A relay loop of `service` over `io`, to run on its thread until it has drained after a
/// shutdown command.
pub(crate) fn run(mut io: Io<PeerRole>, mut service: Service) -> impl FnOnce() + Send {
    move || driver::run(&mut service, &mut io)
}

impl Service {
    pub(crate) fn new(
        config: RelayConfig,
        metrics: Arc<Metrics>,
        loops: Arc<Loops>,
        event_loop: usize,
    ) -> Service {
        let players_session = config.limits.player_session(true);
        let hosts_session = config.limits.link_session(config.max_host_output_buffer);
        Service {
            places: HashMap::new(),
            players_by_id: IdMap::default(),
            routes: Routes::default(),
            players_session: Arc::new(players_session),
            hosts_session: Arc::new(hosts_session),
            config,
            calls_to_host: metrics.calls_to_host.local(),
            calls_to_player: metrics.calls_to_player.local(),
            call_errors: metrics.call_errors.local(),
            call_latency: metrics.call_latency.local(),
            metrics,
            loops,
            event_loop,
            id_prefix: random_prefix(),
            next_id: 0,
            draining: None,
            final_flush: None,
            cuts: CutLog::new("relay", Instant::now()),
        }
    }

    fn begin_drain(&mut self, io: &mut Io<PeerRole>, drain: Duration) {
        if self.draining.is_some() {
            return;
        }
        tracing::info!(
            calls_in_flight = self.routes.len(),
            "draining for up to {drain:?}"
        );
        io.stop_listening();
        self.draining = Some(io.now() + drain);
    }

    /// The drain is over: fail what is still in flight and say goodbye to everyone.
    fn finish_drain(&mut self, io: &mut Io<PeerRole>) {
        for id in self.routes.matching(|_| true) {
            if let Some(route) = self.routes.remove(id) {
                if let Direction::ToHost { call } = route.direction {
                    self.fail_call(
                        io,
                        route.player,
                        call,
                        ErrorKind::Closed,
                        "the relay is shutting down",
                    );
                }
            }
        }
        let keys: Vec<usize> = io.live_conns().map(|(k, _)| k).collect();
        for key in keys {
            io.close(key, GoodbyeCode::Shutdown, "relay shutting down");
        }
        self.final_flush = Some(io.now() + FINAL_FLUSH);
    }

    fn player(io: &mut Io<PeerRole>, key: usize) -> Option<&mut PlayerState> {
        match &mut io.live_mut(key)?.state {
            PeerRole::Player(p) => Some(p),
            PeerRole::Host(_) => None,
        }
    }

    fn host_place(io: &Io<PeerRole>, key: usize) -> Option<&str> {
        match &io.live(key)?.state {
            PeerRole::Host(place) => place.as_deref(),
            PeerRole::Player(_) => None,
        }
    }

    /// The host serving a player's place, once it has been told about the player.
    fn host_of(io: &Io<PeerRole>, player: usize) -> Option<usize> {
        match &io.live(player)?.state {
            PeerRole::Player(p) => p.host,
            PeerRole::Host(_) => None,
        }
    }

    fn on_player_frame(&mut self, io: &mut Io<PeerRole>, key: usize, frame: Frame) {
        match frame {
            Frame::Hello { place, token } => {
                if self.draining.is_some() {
                    return self.refuse(io, key, "the relay is shutting down");
                }
                let owner = self.loops.loop_of(&place);
                if owner != self.event_loop {
                    return self.hand_off(io, key, owner, Frame::Hello { place, token });
                }
                let Some(&host) = self.places.get(&place) else {
                    let why = format!("no game server serves place {place:?}");
                    return self.refuse(io, key, &why);
                };
                self.next_id += 1;
                // Bits 40-47 name the loop: ids stay unique over the relay's loops.
                let id = self.id_prefix | (self.event_loop as u64) << 40 | self.next_id;
                self.players_by_id.insert(id, key);
                self.loops.players.fetch_add(1, Ordering::Relaxed);
                let addr = io.live(key).map(|c| c.peer.to_string()).unwrap_or_default();
                if let Some(p) = Self::player(io, key) {
                    p.id = id;
                    p.place = place;
                    p.token = token.clone();
                    p.host = Some(host);
                }
                // The host's authenticator decides; the player is held until it does.
                let join = Frame::PlayerJoin {
                    player: id,
                    token,
                    peer: addr,
                };
                io.send(host, &join);
            }
            Frame::Event { name, args } => {
                if let Some(host) = Self::host_of(io, key) {
                    let id = Self::player(io, key).map_or(0, |p| p.id);
                    send_routed(io, host, id, &Frame::Event { name, args });
                }
            }
            Frame::Ping(n) => io.send(key, &Frame::Pong(n)),
            Frame::Pong(_) => {}
            Frame::Goodbye { reason, .. } => {
                self.gone(io, key, &format!("the player said goodbye: {reason}"))
            }
            other => {
                let why = format!("a player may not send {:?} frames", other.frame_type());
                self.violation(io, key, Violation::new(GoodbyeCode::ProtocolError, why))
            }
        }
    }

    /// A call's frame from player `key`: its call to its host, or its answer to one of the
    /// host's calls.
    fn player_call(&mut self, io: &mut Io<PeerRole>, key: usize, call: CallFrame) {
        if call.ty != FrameType::Invoke {
            return self.player_reply(io, key, &call);
        }
        let host = match (self.draining, Self::host_of(io, key)) {
            (Some(_), _) => {
                let why = "the relay is shutting down";
                return self.fail_call(io, key, call.call, ErrorKind::Unavailable, why);
            }
            (None, None) => {
                let place = Self::player(io, key).map(|p| p.place.clone());
                let why = format!(
                    "no game server serves place {:?} right now",
                    place.unwrap_or_default()
                );
                return self.fail_call(io, key, call.call, ErrorKind::Unavailable, &why);
            }
            (None, Some(host)) => host,
        };
        let Some(id) = Self::player(io, key).map(|p| p.id) else {
            return;
        };
        let route = self
            .routes
            .open(key, host, Direction::ToHost { call: call.call }, io.now());
        self.calls_to_host.inc();
        io.send_with(host, |out| call.encode_as(out, Some(id), route));
    }

    /// A player answers a host's call: only a call routed to this very player is completed.
    fn player_reply(&mut self, io: &mut Io<PeerRole>, key: usize, reply: &CallFrame) {
        if reply.ty == FrameType::Error {
            self.call_errors.inc();
        }
        let Some((route, call)) = self.routes.take_reply(reply.call, |r| match r.direction {
            Direction::ToPlayer { call } if r.player == key => Some(call),
            _ => None,
        }) else {
            tracing::debug!(route_id = reply.call, "reply to an unknown call dropped");
            return;
        };
        let Some(id) = Self::player(io, key).map(|p| p.id) else {
            return;
        };
        if io.live(route.host).is_some() {
            io.send_with(route.host, |out| reply.encode_as(out, Some(id), call));
        }
    }

    /// A call's frame host `host` routed to its player `pkey`: a call to the player, or its
    /// answer to one of the player's calls.
    fn host_call(&mut self, io: &mut Io<PeerRole>, host: usize, pkey: usize, call: CallFrame) {
        if call.ty != FrameType::Invoke {
            return self.host_reply(io, host, pkey, &call);
        }
        let route = self.routes.open(
            pkey,
            host,
            Direction::ToPlayer { call: call.call },
            io.now(),
        );
        self.calls_to_player.inc();
        io.send_with(pkey, |out| call.encode_as(out, None, route));
    }

    fn on_host_frame(&mut self, io: &mut Io<PeerRole>, key: usize, frame: Frame) {
        match frame {
            Frame::HostHello { place, secret } => {
                let owner = self.loops.loop_of(&place);
                if owner != self.event_loop && self.secret_matches(&secret) {
                    return self.hand_off(io, key, owner, Frame::HostHello { place, secret });
                }
                self.host_hello(io, key, place, &secret)
            }
            Frame::PlayerAccept { player, .. } => {
                let Some(pkey) = self.own_player(io, key, player) else {
                    return;
                };
                let Some(conn) = io.live_mut(pkey) else {
                    return;
                };
                if !conn.session.is_welcomed() {
                    conn.session.accept();
                    self.metrics.players.inc();
                    let welcome = Frame::Welcome {
                        player,
                        max_frame: self.config.limits.max_payload,
                    };
                    io.send(pkey, &welcome);
                    // Frames the player sent behind its HELLO were held until now.
                    io.process_later(pkey);
                }
            }
            Frame::PlayerReject { player, reason } => {
                if let Some(pkey) = self.own_player(io, key, player) {
                    if io.live(pkey).is_some_and(|c| c.session.is_welcomed()) {
                        self.close(io, pkey, GoodbyeCode::Kicked, &reason, "refused");
                    } else {
                        self.refuse(io, pkey, &reason);
                    }
                }
            }
            Frame::Routed { player, frame } => {
                if let Some(pkey) = self.own_player(io, key, player) {
                    self.routed(io, pkey, frame);
                }
            }
            Frame::Kick { player, reason } => {
                if let Some(pkey) = self.own_player(io, key, player) {
                    self.close(io, pkey, GoodbyeCode::Kicked, &reason, "kicked");
                }
            }
            Frame::Broadcast { frame } => {
                let Some(place) = Self::host_place(io, key).map(str::to_owned) else {
                    return;
                };
                let mut full = BytesMut::with_capacity(4 + frame.len());
                full.put_u32_le(frame.len() as u32);
                full.put_slice(&frame);
                let players: Vec<usize> = io
                    .live_conns()
                    .filter(|(_, c)| {
                        c.session.is_welcomed()
                            && matches!(&c.state, PeerRole::Player(s) if s.place == place)
                    })
                    .map(|(k, _)| k)
                    .collect();
                for pkey in players {
                    io.send_bytes(pkey, &full);
                }
            }
            Frame::Ping(n) => io.send(key, &Frame::Pong(n)),
            Frame::Pong(_) => {}
            Frame::Goodbye { reason, .. } => {
                self.gone(io, key, &format!("the game server said goodbye: {reason}"))
            }
            other => {
                let why = format!("a game server may not send {:?} frames", other.frame_type());
                self.violation(io, key, Violation::new(GoodbyeCode::ProtocolError, why))
            }
        }
    }

    fn secret_matches(&self, secret: &[u8]) -> bool {
        let expected = self.config.secret.as_deref().unwrap_or("").as_bytes();
        constant_time_eq(secret, expected)
    }

    /// Moves connection `key`, mid-handshake, to loop `owner`, which serves its place.
    fn hand_off(&mut self, io: &mut Io<PeerRole>, key: usize, owner: usize, handshake: Frame) {
        if let Some(conn) = io.detach(key) {
            self.loops
                .send(owner, RelayCommand::Adopt(Box::new((conn, handshake))));
        }
    }

    fn host_hello(&mut self, io: &mut Io<PeerRole>, key: usize, place: String, secret: &[u8]) {
        if !self.secret_matches(secret) {
            return self.refuse(io, key, "wrong relay secret");
        }
        if self.draining.is_some() {
            return self.refuse(io, key, "the relay is shutting down");
        }
        if let Some(&other) = self.places.get(&place) {
            if io.live(other).is_some() {
                let why = format!("place {place:?} already has a game server");
                return self.refuse(io, key, &why);
            }
        }
        let Some(conn) = io.live_mut(key) else {
            return;
        };
        tracing::info!(place = %place, host = %conn.peer, "game server attached");
        conn.state = PeerRole::Host(Some(place.clone()));
        conn.session.accept();
        self.places.insert(place.clone(), key);
        self.metrics.hosts.inc();
        let welcome = Frame::HostWelcome {
            max_frame: self.config.limits.max_payload + LINK_OVERHEAD,
        };
        io.send(key, &welcome);
        // Players who stayed connected while the place had no host are announced again.
        let waiting: Vec<(usize, u64, Bytes, String)> = io
            .live_conns()
            .filter_map(|(k, c)| match &c.state {
                PeerRole::Player(s)
                    if s.place == place && s.host.is_none() && c.session.is_welcomed() =>
                {
                    Some((k, s.id, s.token.clone(), c.peer.to_string()))
                }
                _ => None,
            })
            .collect();
        for (pkey, player, token, peer) in waiting {
            if let Some(p) = Self::player(io, pkey) {
                p.host = Some(key);
            }
            io.send(
                key,
                &Frame::PlayerJoin {
                    player,
                    token,
                    peer,
                },
            );
        }
        io.process_later(key);
    }

    /// A frame other than a call's that a host routed to one of its players.
    fn routed(&mut self, io: &mut Io<PeerRole>, pkey: usize, frame: Bytes) {
        match Frame::decode(frame) {
            Ok(event @ Frame::Event { .. }) => io.send(pkey, &event),
            Ok(other) => tracing::warn!(
                "a game server routed {:?} to a player: dropped",
                other.frame_type()
            ),
            Err(e) => tracing::warn!("a game server routed a malformed frame: {e}"),
        }
    }

    /// The player `id` if it belongs to the place that host `host` serves: a host can reach
    /// only its own place's players.
    fn own_player(&self, io: &Io<PeerRole>, host: usize, id: u64) -> Option<usize> {
        let &pkey = self.players_by_id.get(&id)?;
        match &io.live(pkey)?.state {
            PeerRole::Player(p) if p.host == Some(host) => Some(pkey),
            _ => None,
        }
    }

    /// A host answers a player's call: only a call this host was sent, from this player.
    fn host_reply(&mut self, io: &mut Io<PeerRole>, host: usize, pkey: usize, reply: &CallFrame) {
        if reply.ty == FrameType::Error {
            self.call_errors.inc();
        }
        let Some((route, call)) = self.routes.take_reply(reply.call, |r| match r.direction {
            Direction::ToHost { call } if r.player == pkey && r.host == host => Some(call),
            _ => None,
        }) else {
            return;
        };
        let latency = io.now().saturating_duration_since(route.started);
        self.call_latency.observe(latency.as_secs_f64());
        let Some(conn) = io.live_mut(pkey) else {
            return;
        };
        conn.session.answered();
        io.send_with(pkey, |out| reply.encode_as(out, None, call));
    }

    /// Answers a player's call with an error from the relay itself.
    fn fail_call(
        &mut self,
        io: &mut Io<PeerRole>,
        pkey: usize,
        call: u64,
        kind: ErrorKind,
        why: &str,
    ) {
        self.call_errors.inc();
        if let Some(conn) = io.live_mut(pkey) {
            conn.session.answered();
        }
        let error = Frame::Error {
            call,
            kind,
            message: why.to_owned(),
        };
        io.send(pkey, &error);
    }

    /// Refuses a handshake with a reason, then closes.
    fn refuse(&mut self, io: &mut Io<PeerRole>, key: usize, reason: &str) {
        self.metrics
            .disconnects
            .with_label_values(&["refused"])
            .inc();
        if let Some(conn) = io.live(key) {
            self.cuts.record("handshake refused", &conn.peer, reason);
        }
        self.let_go(io, key, reason);
        io.refuse(key, reason);
    }

    /// Closes a connection with a goodbye.
    fn close(
        &mut self,
        io: &mut Io<PeerRole>,
        key: usize,
        code: GoodbyeCode,
        reason: &str,
        counter: &'static str,
    ) {
        let Some(conn) = io.live(key) else {
            return;
        };
        self.metrics.disconnects.with_label_values(&[counter]).inc();
        self.cuts
            .record(counter, &conn.peer, &format!("closing: {reason}"));
        self.let_go(io, key, reason);
        io.close(key, code, reason);
    }

    /// A peer that said goodbye: forgotten, its socket dropped.
    fn gone(&mut self, io: &mut Io<PeerRole>, key: usize, reason: &str) {
        self.let_go(io, key, reason);
        io.drop_now(key);
    }

    /// Forgets connection `key` (still in the driver, about to close) and what it took part
    /// in.
    fn let_go(&mut self, io: &mut Io<PeerRole>, key: usize, reason: &str) {
        let Some(conn) = io.live_mut(key) else {
            return;
        };
        let welcomed = conn.session.is_welcomed();
        let role = std::mem::replace(&mut conn.state, PeerRole::Host(None));
        self.forget(io, key, role, welcomed, reason);
    }

    /// Cleans up after a connection that is gone: its routes, its place, its announcements.
    fn forget(
        &mut self,
        io: &mut Io<PeerRole>,
        key: usize,
        role: PeerRole,
        welcomed: bool,
        reason: &str,
    ) {
        match role {
            PeerRole::Player(p) => {
                if p.id != 0 {
                    self.players_by_id.remove(&p.id);
                    self.loops.players.fetch_sub(1, Ordering::Relaxed);
                }
                if welcomed {
                    self.metrics.players.dec();
                }
                self.routes.remove_player(key);
                if let Some(host) = p.host {
                    let left = Frame::PlayerLeft {
                        player: p.id,
                        reason: reason.to_owned(),
                    };
                    io.send(host, &left);
                }
            }
            PeerRole::Host(Some(place)) => {
                if self.places.get(&place) == Some(&key) {
                    self.places.remove(&place);
                }
                self.metrics.hosts.dec();
                tracing::warn!(place = %place, "game server detached: {reason}");
                // Its players' calls fail now; the players stay, and are announced again to
                // the next host of the place.
                for id in self.routes.matching(|r| r.host == key) {
                    let route = self.routes.remove(id).expect("listed");
                    if let Direction::ToHost { call } = route.direction {
                        let why = format!("the game server for place {place:?} disconnected");
                        self.fail_call(io, route.player, call, ErrorKind::Unavailable, &why);
                    }
                }
                let players: Vec<(usize, bool)> = io
                    .live_conns()
                    .filter(|(_, c)| matches!(&c.state, PeerRole::Player(s) if s.place == place))
                    .map(|(k, c)| (k, c.session.is_welcomed()))
                    .collect();
                for (pkey, welcomed) in players {
                    if let Some(p) = Self::player(io, pkey) {
                        p.host = None;
                    }
                    if !welcomed {
                        let why = format!("the game server for place {place:?} went away");
                        self.refuse(io, pkey, &why);
                    }
                }
            }
            PeerRole::Host(None) => {}
        }
    }

    fn violation(&mut self, io: &mut Io<PeerRole>, key: usize, violation: Violation) {
        let welcomed = io.live(key).is_some_and(|c| c.session.is_welcomed());
        match violation.code {
            GoodbyeCode::ProtocolError if !welcomed => self.refuse(io, key, &violation.reason),
            code => {
                let counter = match code {
                    GoodbyeCode::ProtocolError => "protocol",
                    GoodbyeCode::Timeout => "timeout",
                    _ => "limit",
                };
                self.close(io, key, code, &violation.reason, counter);
            }
        }
    }
}

impl Owner for Service {
    type State = PeerRole;

    fn accept(&mut self, _: &mut Io<PeerRole>, listener: usize, _: SocketAddr) -> Admit<PeerRole> {
        if listener != PLAYERS {
            return Admit::Serve(self.hosts_session.clone(), PeerRole::Host(None));
        }
        if self.loops.players.load(Ordering::Relaxed) >= self.config.limits.max_players {
            self.metrics.disconnects.with_label_values(&["limit"]).inc();
            return Admit::Refuse("relay full".into());
        }
        let player = PlayerState {
            id: 0,
            place: String::new(),
            token: Bytes::new(),
            host: None,
        };
        Admit::Serve(self.players_session.clone(), PeerRole::Player(player))
    }

    fn on_frame(&mut self, io: &mut Io<PeerRole>, key: usize, frame: Frame) {
        match io.live(key).map(|c| matches!(c.state, PeerRole::Player(_))) {
            Some(true) => self.on_player_frame(io, key, frame),
            Some(false) => self.on_host_frame(io, key, frame),
            None => {}
        }
    }

    const PASSES_CALLS: bool = true;

    fn on_call(&mut self, io: &mut Io<PeerRole>, key: usize, call: CallFrame) {
        let from_player = match io.live(key) {
            Some(conn) => matches!(conn.state, PeerRole::Player(_)),
            None => return,
        };
        match (from_player, call.routed) {
            (true, None) => self.player_call(io, key, call),
            (false, Some(player)) => {
                if let Some(pkey) = self.own_player(io, key, player) {
                    self.host_call(io, key, pkey, call);
                }
            }
            (true, Some(_)) => {
                let why = "a player may not send Routed frames".to_owned();
                self.violation(io, key, Violation::new(GoodbyeCode::ProtocolError, why))
            }
            (false, None) => {
                let why = format!("a game server may not send {:?} frames", call.ty);
                self.violation(io, key, Violation::new(GoodbyeCode::ProtocolError, why))
            }
        }
    }

    fn on_violation(&mut self, io: &mut Io<PeerRole>, key: usize, violation: Violation) {
        tracing::debug!(key, "{}", violation.reason);
        self.violation(io, key, violation);
    }

    fn on_closed(&mut self, io: &mut Io<PeerRole>, key: usize, conn: Conn<PeerRole>, why: &str) {
        if conn.tls_failed() {
            self.metrics.disconnects.with_label_values(&["tls"]).inc();
            self.cuts.record("tls", &conn.peer, why);
        }
        let welcomed = conn.session.is_welcomed();
        self.forget(io, key, conn.state, welcomed, why);
    }

    fn on_wake(&mut self, io: &mut Io<PeerRole>) {
        let loops = self.loops.clone();
        for cmd in loops.inbox(self.event_loop).take() {
            match cmd {
                RelayCommand::Shutdown(drain) => self.begin_drain(io, drain),
                RelayCommand::Adopt(handed) => {
                    let (conn, handshake) = *handed;
                    match io.attach(conn) {
                        Ok((key, _)) => self.on_frame(io, key, handshake),
                        Err(e) => tracing::warn!("cannot register a handed-off connection: {e}"),
                    }
                }
            }
        }
    }

    fn on_tick(&mut self, io: &mut Io<PeerRole>) {
        if let Some(deadline) = self.draining {
            if self.final_flush.is_none() && (self.routes.len() == 0 || io.now() >= deadline) {
                self.finish_drain(io);
            }
        }
        self.cuts.poll(io.now());
    }

    fn on_turn_end(&mut self, io: &mut Io<PeerRole>) -> bool {
        let counts = io.take_counts();
        self.metrics.bytes_in.inc_by(counts.bytes_in);
        self.metrics.bytes_out.inc_by(counts.bytes_out);
        if counts.tls_full + counts.tls_resumed > 0 {
            let handshakes = &self.metrics.tls_handshakes;
            handshakes
                .with_label_values(&["full"])
                .inc_by(counts.tls_full);
            handshakes
                .with_label_values(&["resumed"])
                .inc_by(counts.tls_resumed);
        }
        self.calls_to_host.flush();
        self.calls_to_player.flush();
        self.call_errors.flush();
        self.call_latency.flush();
        false
    }

    fn finished(&self, io: &Io<PeerRole>) -> bool {
        self.final_flush
            .is_some_and(|deadline| io.is_empty() || io.now() >= deadline)
    }
}

/// Sends `inner` to `player` through its host's link, wrapped in ROUTED.
fn send_routed(io: &mut Io<PeerRole>, host: usize, player: u64, inner: &Frame) {
    io.send_with(host, |out| {
        crate::proto::encode_routed_frame(out, player, inner)
    });
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
