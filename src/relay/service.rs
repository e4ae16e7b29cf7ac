//! The relay's event loop: one mio `Poll` over both listeners, every player and every host.
//! It runs no user code: it checks handshakes against the place's host, rewrites call ids
//! through its route table, and moves frames.

use super::metrics::Metrics;
use super::routes::{Direction, Route, Routes};
use super::RelayConfig;
use crate::proto::{
    self, Admission, Connection, Deadlines, ErrorKind, Frame, GoodbyeCode, RateLimit, RateShaper,
    Role, READ_CHUNK,
};
use crate::reactor::socket::{read_step, write_step, Step};
use crate::reactor::LINK_OVERHEAD;
use crate::stats::CutLog;
use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const PLAYERS: Token = Token(usize::MAX - 2);
pub(crate) const HOSTS: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX);
const TICK: Duration = Duration::from_millis(100);
/// Connections accepted per listener, and peers closed by a timer, per loop turn: a burst (a
/// reconnect storm, a thousand stalled handshakes timing out together) is spread over turns,
/// with the frames of the players and hosts already connected served in between.
const ACCEPTS_PER_TURN: usize = 64;
const TIMER_CLOSES_PER_TURN: usize = 64;
/// After the drain, how long goodbyes may take to be written.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// What the relay's owner asks of the loop.
pub(crate) enum RelayCommand {
    /// Stop accepting, drain in-flight calls for up to this long, then close everything.
    Shutdown(Duration),
}

struct PlayerState {
    id: u64,
    place: String,
    token: Bytes,
    welcomed: bool,
    /// Whether the place's current host has been told about this player.
    announced: bool,
    /// Routes this player is part of.
    routes: Vec<u64>,
    inflight_in: u32,
    rate: RateShaper,
    /// Over its rate: its input is left unread until its resume deadline.
    rate_paused: bool,
}

enum PeerRole {
    Player(PlayerState),
    /// A host; its place once it said HOST_HELLO.
    Host(Option<String>),
}

struct Peer {
    socket: TcpStream,
    proto: Connection,
    out: BytesMut,
    role: PeerRole,
    addr: SocketAddr,
    opened: Instant,
    last_heard: Instant,
    pinged: bool,
    welcomed: bool,
    closing: Option<Instant>,
    queued_for_flush: bool,
    /// A timer expired and its close is queued (so the next ticks do not queue it again).
    expiring: bool,
}

pub(crate) struct Service {
    poll: Poll,
    players_listener: Option<TcpListener>,
    hosts_listener: Option<TcpListener>,
    peers: Slab<Peer>,
    places: HashMap<String, usize>,
    players_by_id: HashMap<u64, usize>,
    routes: Routes,
    config: RelayConfig,
    metrics: Arc<Metrics>,
    commands: Receiver<RelayCommand>,
    wake_pending: Arc<AtomicBool>,
    /// Player ids are `prefix | counter`: the prefix (top bit set, 15 random bits) keeps the ids
    /// of several relays in front of one host apart.
    id_prefix: u64,
    next_id: u64,
    now: Instant,
    next_tick: Instant,
    draining: Option<Instant>,
    final_flush: Option<Instant>,
    to_flush: Vec<usize>,
    scratch: Box<[u8]>,
    /// Listeners (players, hosts) that had more connections waiting when their turn ended.
    accept_again: [bool; 2],
    /// Peers a timer expired, by key and opening time (a key may be reused meanwhile), with
    /// the reason, waiting for their turn to be closed.
    timed_out: VecDeque<(usize, Instant, String)>,
    /// Connections cut, logged with a bounded volume.
    cuts: CutLog,
    /// Every player's allowance of calls and events.
    rate: RateLimit,
    /// When players over their rate may be read again.
    rate_resume: Deadlines<Instant>,
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

impl Service {
    pub(crate) fn new(
        poll: Poll,
        players: std::net::TcpListener,
        hosts: std::net::TcpListener,
        config: RelayConfig,
        metrics: Arc<Metrics>,
        commands: Receiver<RelayCommand>,
        wake_pending: Arc<AtomicBool>,
    ) -> io::Result<Service> {
        let mut listeners = Vec::new();
        for (listener, token) in [(players, PLAYERS), (hosts, HOSTS)] {
            listener.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(listener);
            poll.registry()
                .register(&mut l, token, Interest::READABLE)?;
            listeners.push(l);
        }
        let hosts_listener = listeners.pop();
        let players_listener = listeners.pop();
        Ok(Service {
            poll,
            players_listener,
            hosts_listener,
            peers: Slab::new(),
            places: HashMap::new(),
            players_by_id: HashMap::new(),
            routes: Routes::default(),
            metrics,
            commands,
            wake_pending,
            id_prefix: random_prefix(),
            next_id: 0,
            now: Instant::now(),
            next_tick: Instant::now() + TICK,
            draining: None,
            final_flush: None,
            to_flush: Vec::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            accept_again: [false; 2],
            timed_out: VecDeque::new(),
            cuts: CutLog::new("relay", Instant::now()),
            rate: RateLimit {
                per_sec: config.rate_per_sec,
                burst: config.rate_burst.max(1),
                cut_after: config.rate_cut_after,
            },
            rate_resume: Deadlines::default(),
            config,
        })
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.accept_again.contains(&true) || !self.timed_out.is_empty() {
                Duration::ZERO
            } else {
                let next = self.rate_resume.next().map_or(self.next_tick, |at| {
                    // Rounded up: epoll waits whole milliseconds.
                    (at + Duration::from_micros(999)).min(self.next_tick)
                });
                next.saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("relay poll failed: {e}");
                    return;
                }
            }
            self.now = Instant::now();
            self.resume_rate_paused();
            for event in events.iter() {
                match event.token() {
                    PLAYERS => self.accept(true),
                    HOSTS => self.accept(false),
                    WAKER => self.drain_commands(),
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key, event.is_read_closed() || event.is_error());
                        }
                        if event.is_writable() {
                            self.queue_flush(key);
                        }
                    }
                }
            }
            for (again, player) in [(self.accept_again[0], true), (self.accept_again[1], false)] {
                if again {
                    self.accept(player);
                }
            }
            if self.now >= self.next_tick {
                self.check_timers();
                self.next_tick = self.now + TICK;
            }
            self.close_timed_out();
            self.flush_all();
            if let Some(deadline) = self.final_flush {
                if self.peers.is_empty() || self.now >= deadline {
                    return;
                }
            }
        }
    }

    fn drain_commands(&mut self) {
        self.wake_pending.store(false, Ordering::Release);
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                RelayCommand::Shutdown(drain) => self.begin_drain(drain),
            }
        }
    }

    fn begin_drain(&mut self, drain: Duration) {
        if self.draining.is_some() {
            return;
        }
        tracing::info!(
            calls_in_flight = self.routes.len(),
            "draining for up to {drain:?}"
        );
        for listener in [self.players_listener.take(), self.hosts_listener.take()]
            .into_iter()
            .flatten()
        {
            let mut listener = listener;
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.draining = Some(self.now + drain);
    }

    /// The drain is over: fail what is still in flight and say goodbye to everyone.
    fn finish_drain(&mut self) {
        for id in self.routes.matching(|_| true) {
            if let Some(route) = self.routes.remove(id) {
                if let Direction::ToHost { call } = route.direction {
                    self.fail_call(
                        route.player,
                        call,
                        ErrorKind::Closed,
                        "the relay is shutting down",
                    );
                }
            }
        }
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            let peer = &mut self.peers[key];
            proto::encode_goodbye(&mut peer.out, GoodbyeCode::Shutdown, "relay shutting down");
            peer.closing = Some(self.now);
            self.queue_flush(key);
        }
        self.final_flush = Some(self.now + FINAL_FLUSH);
    }

    /// Closes up to [`TIMER_CLOSES_PER_TURN`] peers whose timer expired.
    fn close_timed_out(&mut self) {
        for _ in 0..TIMER_CLOSES_PER_TURN {
            let Some((key, opened, why)) = self.timed_out.pop_front() else {
                return;
            };
            let still_there = self
                .peers
                .get(key)
                .is_some_and(|p| p.opened == opened && p.closing.is_none());
            if still_there {
                self.close(key, GoodbyeCode::Timeout, &why, "timeout");
            }
        }
    }

    /// Accepts up to [`ACCEPTS_PER_TURN`] connections on the players' or the hosts' listener.
    fn accept(&mut self, player: bool) {
        self.accept_again[usize::from(!player)] = false;
        for _ in 0..ACCEPTS_PER_TURN {
            let listener = if player {
                &self.players_listener
            } else {
                &self.hosts_listener
            };
            let Some(listener) = listener else { return };
            match listener.accept() {
                Ok((mut socket, addr)) => {
                    let _ = socket.set_nodelay(true);
                    if player && self.players_by_id.len() >= self.config.max_players {
                        self.metrics.disconnects.with_label_values(&["limit"]).inc();
                        let mut out = BytesMut::new();
                        Frame::Refused {
                            reason: "relay full".into(),
                        }
                        .encode(&mut out);
                        let _ = socket.write(&out);
                        continue;
                    }
                    let entry = self.peers.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut socket,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!(%addr, "cannot register a connection: {e}");
                        continue;
                    }
                    let (role, max_frame) = if player {
                        let state = PlayerState {
                            id: 0,
                            place: String::new(),
                            token: Bytes::new(),
                            welcomed: false,
                            announced: false,
                            routes: Vec::new(),
                            inflight_in: 0,
                            rate: RateShaper::new(&self.rate, self.now),
                            rate_paused: false,
                        };
                        (PeerRole::Player(state), self.config.max_payload)
                    } else {
                        (
                            PeerRole::Host(None),
                            self.config.max_payload + LINK_OVERHEAD,
                        )
                    };
                    entry.insert(Peer {
                        socket,
                        proto: Connection::new(Role::Server, max_frame),
                        out: BytesMut::new(),
                        role,
                        addr,
                        opened: self.now,
                        last_heard: self.now,
                        pinged: false,
                        welcomed: false,
                        closing: None,
                        queued_for_flush: false,
                        expiring: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
        // Edge-triggered: the rest of the queue raises no new event.
        self.accept_again[usize::from(!player)] = true;
    }

    /// Reads again the players whose rate allows it by now: first the frames they had
    /// buffered, then their sockets.
    fn resume_rate_paused(&mut self) {
        while let Some((key, opened)) = self.rate_resume.pop_due(self.now) {
            if !self.is_rate_paused(key, opened) {
                continue;
            }
            self.player(key).rate_paused = false;
            self.process(key);
            if !self.is_rate_paused(key, opened) && self.peers.contains(key) {
                self.read(key, false);
            }
        }
    }

    /// Whether `key` is still the player opened at `opened` (keys are reused), over its rate.
    fn is_rate_paused(&self, key: usize, opened: Instant) -> bool {
        self.peers.get(key).is_some_and(|p| {
            p.opened == opened && matches!(&p.role, PeerRole::Player(s) if s.rate_paused)
        })
    }

    /// Reads what a peer sent. `peer_closed`: the event also reported the end of the stream,
    /// which a short read must not be taken to have consumed (the peer's last bytes and its
    /// close often arrive as one event: a host killed mid-call, say).
    fn read(&mut self, key: usize, peer_closed: bool) {
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            if peer.closing.is_some() || matches!(&peer.role, PeerRole::Player(p) if p.rate_paused)
            {
                // A player over its rate is read again at its resume deadline.
                return;
            }
            match read_step(&mut peer.socket, &mut self.scratch, peer_closed) {
                Step::End => return self.remove(key, "the peer closed the connection"),
                Step::Moved { n, more } => {
                    self.metrics.bytes_in.inc_by(n as u64);
                    peer.last_heard = self.now;
                    peer.pinged = false;
                    peer.proto.handle_bytes(&self.scratch[..n]);
                    self.process(key);
                    if !more {
                        break;
                    }
                }
                Step::Blocked => break,
                Step::Failed(why) => return self.remove(key, &why),
            }
        }
        if let Some(peer) = self.peers.get_mut(key) {
            if let PeerRole::Player(p) = &mut peer.role {
                if p.rate_paused {
                    return;
                }
                // Everything it sent is handled: it keeps within its rate.
                p.rate.input_drained();
            }
            peer.proto.release_idle_buffer();
        }
    }

    fn process(&mut self, key: usize) {
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            if peer.closing.is_some() {
                return;
            }
            if let PeerRole::Player(p) = &mut peer.role {
                match p.rate.admit(&peer.proto, &self.rate, self.now) {
                    Admission::Now => {}
                    Admission::Wait(at) => {
                        p.rate_paused = true;
                        return self.rate_resume.push(at, key, peer.opened);
                    }
                    Admission::Cut(why) => {
                        return self.close(key, GoodbyeCode::Limit, &why, "limit")
                    }
                }
            }
            match peer.proto.poll_frame() {
                Ok(Some(frame)) => {
                    if matches!(peer.role, PeerRole::Player(_)) {
                        self.on_player_frame(key, frame);
                    } else {
                        self.on_host_frame(key, frame);
                    }
                }
                Ok(None) => break,
                Err(e) => return self.protocol_error(key, &e.to_string()),
            }
        }
        let limit = self.config.max_payload as usize + READ_CHUNK + LINK_OVERHEAD as usize;
        if self
            .peers
            .get(key)
            .is_some_and(|p| p.proto.buffered() > limit)
        {
            self.close(
                key,
                GoodbyeCode::Limit,
                "too much data before the handshake completed",
                "limit",
            );
        }
    }

    fn protocol_error(&mut self, key: usize, why: &str) {
        tracing::debug!(peer = %self.peers[key].addr, "protocol error: {why}");
        if self.peers[key].welcomed {
            self.close(key, GoodbyeCode::ProtocolError, why, "protocol");
        } else {
            self.refuse(key, why);
        }
    }

    fn player(&mut self, key: usize) -> &mut PlayerState {
        match &mut self.peers[key].role {
            PeerRole::Player(p) => p,
            PeerRole::Host(_) => unreachable!("key {key} is a player"),
        }
    }

    fn host_place(&self, key: usize) -> Option<&str> {
        match &self.peers.get(key)?.role {
            PeerRole::Host(place) => place.as_deref(),
            PeerRole::Player(_) => None,
        }
    }

    /// The host currently serving a player's place.
    fn host_of(&self, player: usize) -> Option<usize> {
        match &self.peers.get(player)?.role {
            PeerRole::Player(p) => self.places.get(&p.place).copied(),
            PeerRole::Host(_) => None,
        }
    }

    fn on_player_frame(&mut self, key: usize, frame: Frame) {
        match frame {
            Frame::Hello { place, token } => {
                if self.draining.is_some() {
                    return self.refuse(key, "the relay is shutting down");
                }
                let Some(&host) = self.places.get(&place) else {
                    return self.refuse(key, &format!("no game server serves place {place:?}"));
                };
                self.next_id += 1;
                let id = self.id_prefix | self.next_id;
                self.players_by_id.insert(id, key);
                let addr = self.peers[key].addr.to_string();
                let p = self.player(key);
                p.id = id;
                p.place = place;
                p.token = token.clone();
                p.announced = true;
                // The host's authenticator decides; the player is held until it does.
                self.send(
                    host,
                    &Frame::PlayerJoin {
                        player: id,
                        token,
                        peer: addr,
                    },
                );
            }
            Frame::Invoke { call, name, args } => {
                if !self.admit(key, true) {
                    return;
                }
                let host = match (self.draining, self.host_of(key)) {
                    (Some(_), _) => {
                        return self.fail_call(
                            key,
                            call,
                            ErrorKind::Unavailable,
                            "the relay is shutting down",
                        )
                    }
                    (None, None) => {
                        let place = self.player(key).place.clone();
                        let why = format!("no game server serves place {place:?} right now");
                        return self.fail_call(key, call, ErrorKind::Unavailable, &why);
                    }
                    (None, Some(host)) => host,
                };
                let route = self.routes.insert(Route {
                    player: key,
                    host,
                    direction: Direction::ToHost { call },
                    started: self.now,
                });
                let p = self.player(key);
                p.routes.push(route);
                p.inflight_in += 1;
                let id = p.id;
                self.metrics.calls.with_label_values(&["to_host"]).inc();
                self.send_routed(
                    host,
                    id,
                    &Frame::Invoke {
                        call: route,
                        name,
                        args,
                    },
                );
            }
            Frame::Result { call, values } => {
                self.player_reply(key, call, |c| Frame::Result { call: c, values })
            }
            Frame::Error {
                call,
                kind,
                message,
            } => {
                self.metrics.call_errors.inc();
                self.player_reply(key, call, |c| Frame::Error {
                    call: c,
                    kind,
                    message,
                })
            }
            Frame::Event { name, args } => {
                if !self.admit(key, false) {
                    return;
                }
                if let Some(host) = self.host_of(key) {
                    let id = self.player(key).id;
                    self.send_routed(host, id, &Frame::Event { name, args });
                }
            }
            Frame::Ping(n) => self.send(key, &Frame::Pong(n)),
            Frame::Pong(_) => {}
            Frame::Goodbye { reason, .. } => {
                self.remove(key, &format!("the player said goodbye: {reason}"))
            }
            other => self.protocol_error(
                key,
                &format!("a player may not send {:?} frames", other.frame_type()),
            ),
        }
    }

    /// A player answers a host's call: only a call routed to this very player is completed.
    fn player_reply(&mut self, key: usize, route_id: u64, reply: impl FnOnce(u64) -> Frame) {
        let valid = self
            .routes
            .get(route_id)
            .is_some_and(|r| r.player == key && matches!(r.direction, Direction::ToPlayer { .. }));
        if !valid {
            tracing::debug!(peer = %self.peers[key].addr, route_id, "reply to an unknown call dropped");
            return;
        }
        let route = self.routes.remove(route_id).expect("checked");
        let Direction::ToPlayer { call } = route.direction else {
            unreachable!()
        };
        let p = self.player(key);
        p.routes.retain(|&r| r != route_id);
        let id = p.id;
        if self.peers.contains(route.host) {
            self.send_routed(route.host, id, &reply(call));
        }
    }

    fn on_host_frame(&mut self, key: usize, frame: Frame) {
        match frame {
            Frame::HostHello { place, secret } => {
                let expected = self.config.secret.as_deref().unwrap_or("").as_bytes();
                if !constant_time_eq(&secret, expected) {
                    return self.refuse(key, "wrong relay secret");
                }
                if self.draining.is_some() {
                    return self.refuse(key, "the relay is shutting down");
                }
                if let Some(&other) = self.places.get(&place) {
                    if self.peers.contains(other) {
                        return self
                            .refuse(key, &format!("place {place:?} already has a game server"));
                    }
                }
                tracing::info!(place = %place, host = %self.peers[key].addr, "game server attached");
                self.places.insert(place.clone(), key);
                let peer = &mut self.peers[key];
                peer.role = PeerRole::Host(Some(place.clone()));
                peer.welcomed = true;
                peer.proto.accept();
                self.metrics.hosts.inc();
                self.send(
                    key,
                    &Frame::HostWelcome {
                        max_frame: self.config.max_payload + LINK_OVERHEAD,
                    },
                );
                // Players who stayed connected while the place had no host are announced again.
                let waiting: Vec<usize> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| matches!(&p.role, PeerRole::Player(s) if s.place == place && !s.announced && s.welcomed))
                    .map(|(k, _)| k)
                    .collect();
                for player in waiting {
                    let addr = self.peers[player].addr.to_string();
                    let p = self.player(player);
                    p.announced = true;
                    let join = Frame::PlayerJoin {
                        player: p.id,
                        token: p.token.clone(),
                        peer: addr,
                    };
                    self.send(key, &join);
                }
                self.process(key);
            }
            Frame::PlayerAccept { player, .. } => {
                let Some(pkey) = self.own_player(key, player) else {
                    return;
                };
                if !self.peers[pkey].welcomed {
                    let peer = &mut self.peers[pkey];
                    peer.welcomed = true;
                    peer.proto.accept();
                    self.player(pkey).welcomed = true;
                    self.metrics.players.inc();
                    self.send(
                        pkey,
                        &Frame::Welcome {
                            player,
                            max_frame: self.config.max_payload,
                        },
                    );
                    // Frames the player sent behind its HELLO were held until now.
                    self.process(pkey);
                }
            }
            Frame::PlayerReject { player, reason } => {
                if let Some(pkey) = self.own_player(key, player) {
                    if self.peers[pkey].welcomed {
                        self.close(pkey, GoodbyeCode::Kicked, &reason, "refused");
                    } else {
                        self.refuse(pkey, &reason);
                    }
                }
            }
            Frame::Routed { player, frame } => {
                let Some(pkey) = self.own_player(key, player) else {
                    return;
                };
                match Frame::decode(frame) {
                    Ok(Frame::Invoke { call, name, args }) => {
                        let route = self.routes.insert(Route {
                            player: pkey,
                            host: key,
                            direction: Direction::ToPlayer { call },
                            started: self.now,
                        });
                        self.player(pkey).routes.push(route);
                        self.metrics.calls.with_label_values(&["to_player"]).inc();
                        self.send(
                            pkey,
                            &Frame::Invoke {
                                call: route,
                                name,
                                args,
                            },
                        );
                    }
                    Ok(Frame::Result { call, values }) => {
                        self.host_reply(key, pkey, call, |c| Frame::Result { call: c, values })
                    }
                    Ok(Frame::Error {
                        call,
                        kind,
                        message,
                    }) => {
                        self.metrics.call_errors.inc();
                        self.host_reply(key, pkey, call, |c| Frame::Error {
                            call: c,
                            kind,
                            message,
                        })
                    }
                    Ok(event @ Frame::Event { .. }) => self.send(pkey, &event),
                    Ok(other) => tracing::warn!(
                        "a game server routed {:?} to a player: dropped",
                        other.frame_type()
                    ),
                    Err(e) => tracing::warn!("a game server routed a malformed frame: {e}"),
                }
            }
            Frame::Kick { player, reason } => {
                if let Some(pkey) = self.own_player(key, player) {
                    self.close(pkey, GoodbyeCode::Kicked, &reason, "kicked");
                }
            }
            Frame::Broadcast { frame } => {
                let Some(place) = self.host_place(key).map(str::to_owned) else {
                    return;
                };
                let mut full = BytesMut::with_capacity(4 + frame.len());
                full.put_u32_le(frame.len() as u32);
                full.put_slice(&frame);
                let players: Vec<usize> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| {
                        p.welcomed && matches!(&p.role, PeerRole::Player(s) if s.place == place)
                    })
                    .map(|(k, _)| k)
                    .collect();
                for pkey in players {
                    self.queue(pkey, &full);
                }
            }
            Frame::Ping(n) => self.send(key, &Frame::Pong(n)),
            Frame::Pong(_) => {}
            Frame::Goodbye { reason, .. } => {
                self.remove(key, &format!("the game server said goodbye: {reason}"))
            }
            other => self.protocol_error(
                key,
                &format!("a game server may not send {:?} frames", other.frame_type()),
            ),
        }
    }

    /// The player `id` if it belongs to the place that host `host` serves: a host can reach
    /// only its own place's players.
    fn own_player(&self, host: usize, id: u64) -> Option<usize> {
        let place = self.host_place(host)?;
        let &pkey = self.players_by_id.get(&id)?;
        match &self.peers.get(pkey)?.role {
            PeerRole::Player(p) if p.place == place => Some(pkey),
            _ => None,
        }
    }

    /// A host answers a player's call: only a call this host was sent, from this player.
    fn host_reply(
        &mut self,
        host: usize,
        pkey: usize,
        route_id: u64,
        reply: impl FnOnce(u64) -> Frame,
    ) {
        let valid = self.routes.get(route_id).is_some_and(|r| {
            r.player == pkey && r.host == host && matches!(r.direction, Direction::ToHost { .. })
        });
        if !valid {
            return;
        }
        let route = self.routes.remove(route_id).expect("checked");
        let Direction::ToHost { call } = route.direction else {
            unreachable!()
        };
        self.metrics.call_latency.observe(
            self.now
                .saturating_duration_since(route.started)
                .as_secs_f64(),
        );
        let p = self.player(pkey);
        p.routes.retain(|&r| r != route_id);
        p.inflight_in = p.inflight_in.saturating_sub(1);
        self.send(pkey, &reply(call));
    }

    /// Answers a player's call with an error from the relay itself.
    fn fail_call(&mut self, pkey: usize, call: u64, kind: ErrorKind, why: &str) {
        self.metrics.call_errors.inc();
        if let Some(PeerRole::Player(p)) = self.peers.get_mut(pkey).map(|p| &mut p.role) {
            p.inflight_in = p.inflight_in.saturating_sub(1);
        }
        self.send(
            pkey,
            &Frame::Error {
                call,
                kind,
                message: why.to_owned(),
            },
        );
    }

    /// In-flight bound of a player; a violation disconnects it. (The rate was applied before
    /// the frame was read: see `process`.)
    fn admit(&mut self, key: usize, is_call: bool) -> bool {
        let max_inflight = self.config.max_inflight_per_player;
        if is_call && self.player(key).inflight_in >= max_inflight {
            let why = format!("more than {max_inflight} calls in flight");
            self.close(key, GoodbyeCode::Limit, &why, "limit");
            return false;
        }
        true
    }

    fn check_timers(&mut self) {
        if let Some(deadline) = self.draining {
            if self.final_flush.is_none() && (self.routes.len() == 0 || self.now >= deadline) {
                self.finish_drain();
            }
        }
        let (handshake, idle, now) = (
            self.config.handshake_timeout,
            self.config.idle_timeout,
            self.now,
        );
        let mut stuck = Vec::new();
        let mut ping = Vec::new();
        // Expired peers go straight to the queue that closes them, a few per turn.
        let timed_out = &mut self.timed_out;
        for (key, peer) in self.peers.iter_mut() {
            if let Some(since) = peer.closing {
                if now.saturating_duration_since(since) > Duration::from_secs(2) {
                    stuck.push(key);
                }
            } else if peer.expiring {
                // Its close is already queued.
            } else if !peer.welcomed {
                if now.saturating_duration_since(peer.opened) > handshake {
                    peer.expiring = true;
                    let why = format!("handshake not completed within {handshake:?}");
                    timed_out.push_back((key, peer.opened, why));
                }
            } else if !idle.is_zero() {
                let quiet = now.saturating_duration_since(peer.last_heard);
                if matches!(&peer.role, PeerRole::Player(p) if p.rate_paused) {
                    // We are the ones not reading it: its silence is not its fault.
                } else if quiet > idle {
                    peer.expiring = true;
                    let why = format!("nothing heard for {idle:?}");
                    timed_out.push_back((key, peer.opened, why));
                } else if quiet > idle / 3 && !peer.pinged {
                    peer.pinged = true;
                    ping.push(key);
                }
            }
        }
        for key in stuck {
            self.remove(key, "the peer did not read its goodbye");
        }
        self.cuts.poll(now);
        for key in ping {
            self.send(key, &Frame::Ping(0));
        }
    }

    fn send(&mut self, key: usize, frame: &Frame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        self.queue(key, &out);
    }

    fn send_routed(&mut self, host: usize, player: u64, inner: &Frame) {
        let mut framed = BytesMut::new();
        inner.encode(&mut framed);
        let mut out = BytesMut::with_capacity(framed.len() + 9);
        out.put_u32_le((framed.len() - 4 + 9) as u32);
        out.put_u8(proto::FrameType::Routed as u8);
        out.put_u64_le(player);
        out.put_slice(&framed[4..]);
        self.queue(host, &out);
    }

    fn queue(&mut self, key: usize, bytes: &[u8]) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.closing.is_some() {
            return;
        }
        let limit = match peer.role {
            PeerRole::Player(_) => self.config.max_output_buffer,
            PeerRole::Host(_) => self.config.max_host_output_buffer,
        };
        if peer.out.len() + bytes.len() > limit {
            let why = format!("output buffer over {limit} bytes: the peer is not reading");
            return self.close(key, GoodbyeCode::Limit, &why, "limit");
        }
        peer.out.extend_from_slice(bytes);
        self.queue_flush(key);
    }

    fn queue_flush(&mut self, key: usize) {
        if let Some(peer) = self.peers.get_mut(key) {
            if !peer.queued_for_flush {
                peer.queued_for_flush = true;
                self.to_flush.push(key);
            }
        }
    }

    fn flush_all(&mut self) {
        let keys = std::mem::take(&mut self.to_flush);
        for key in keys {
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            peer.queued_for_flush = false;
            let mut failed = None;
            while !peer.out.is_empty() {
                match write_step(&mut peer.socket, &peer.out) {
                    Step::End => {
                        failed = Some("connection closed while writing".to_owned());
                        break;
                    }
                    Step::Moved { n, .. } => {
                        self.metrics.bytes_out.inc_by(n as u64);
                        let _ = peer.out.split_to(n);
                    }
                    Step::Blocked => break,
                    Step::Failed(why) => {
                        failed = Some(why);
                        break;
                    }
                }
            }
            if peer.out.capacity() > 64 * 1024 && peer.out.is_empty() {
                peer.out = BytesMut::new();
            }
            if let Some(why) = failed {
                self.remove(key, &why);
            } else if peer.closing.is_some() && peer.out.is_empty() {
                self.remove(key, "closed");
            }
        }
    }

    /// Refuses a handshake with a reason, then closes.
    fn refuse(&mut self, key: usize, reason: &str) {
        self.metrics
            .disconnects
            .with_label_values(&["refused"])
            .inc();
        self.cuts
            .record("handshake refused", &self.peers[key].addr, reason);
        self.send(
            key,
            &Frame::Refused {
                reason: reason.to_owned(),
            },
        );
        let peer = &mut self.peers[key];
        peer.closing = Some(self.now);
        peer.proto.close();
    }

    /// Closes a connection with a goodbye (written once, best effort), then removes it.
    fn close(&mut self, key: usize, code: GoodbyeCode, reason: &str, counter: &'static str) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        self.metrics.disconnects.with_label_values(&[counter]).inc();
        self.cuts
            .record(counter, &peer.addr, &format!("closing: {reason}"));
        proto::encode_goodbye(&mut peer.out, code, reason);
        let _ = peer.socket.write(&peer.out);
        self.remove(key, reason);
    }

    /// Drops a connection and cleans up what it took part in.
    fn remove(&mut self, key: usize, reason: &str) {
        let Some(mut peer) = self.peers.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut peer.socket);
        match peer.role {
            PeerRole::Player(p) => {
                if p.id != 0 {
                    self.players_by_id.remove(&p.id);
                }
                if peer.welcomed {
                    self.metrics.players.dec();
                }
                for route in p.routes {
                    self.routes.remove(route);
                }
                if p.announced {
                    if let Some(&host) = self.places.get(&p.place) {
                        self.send(
                            host,
                            &Frame::PlayerLeft {
                                player: p.id,
                                reason: reason.to_owned(),
                            },
                        );
                    }
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
                    if let Some(PeerRole::Player(p)) =
                        self.peers.get_mut(route.player).map(|p| &mut p.role)
                    {
                        p.routes.retain(|&r| r != id);
                    }
                    if let Direction::ToHost { call } = route.direction {
                        let why = format!("the game server for place {place:?} disconnected");
                        self.fail_call(route.player, call, ErrorKind::Unavailable, &why);
                    }
                }
                let players: Vec<usize> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| matches!(&p.role, PeerRole::Player(s) if s.place == place))
                    .map(|(k, _)| k)
                    .collect();
                for pkey in players {
                    if self.peers[pkey].welcomed {
                        self.player(pkey).announced = false;
                    } else {
                        self.refuse(
                            pkey,
                            &format!("the game server for place {place:?} went away"),
                        );
                    }
                }
            }
            PeerRole::Host(None) => {}
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
