//! Host links: a server that serves the players of a relay (`remotefn relay`).
//!
//! The server keeps one connection per relay it is attached to. The relay announces each
//! player with PLAYER_JOIN; the server makes it a *relayed* connection, with no socket of its
//! own, and from then on treats it exactly like a player on its own socket: the same handshake
//! decision (the server's authenticator), call tracking, limits and callbacks. Frames to a
//! relayed player travel wrapped in ROUTED on the link; frames from it arrive the same way. When
//! a link drops, its players are gone (their pending calls fail), and the link is re-established
//! in the background with exponential backoff; the relay then announces its players again.

use super::{CloseReason, ConnKind, Reactor};
use crate::dispatch::Job;
use crate::endpoint::{Command, Endpoint, Identity};
use crate::error::Error;
use crate::proto::{self, Frame, ProtocolError, Role};
use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Room on a link frame beyond a player's largest frame: the ROUTED header.
pub(crate) const LINK_OVERHEAD: u32 = 64;
/// The first retry after a link drops, and the longest wait between retries.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where and how a server attaches to a relay; kept to reattach when the link drops.
#[derive(Clone, Debug)]
pub(crate) struct LinkSpec {
    pub addr: String,
    pub place: String,
    pub secret: Bytes,
}

/// Connects to a relay and completes the host handshake, blocking (never on the reactor).
/// Frames that arrive behind the relay's welcome stay in the returned protocol state.
pub(crate) fn connect_link(
    spec: &LinkSpec,
    max_frame: u32,
    timeout: Duration,
) -> Result<(std::net::TcpStream, proto::Connection), Error> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<_> = spec
        .addr
        .to_socket_addrs()
        .map_err(|e| Error::Io(format!("cannot resolve relay address {:?}: {e}", spec.addr)))?
        .collect();
    let mut last = Error::Io(format!("relay address {:?} resolved to nothing", spec.addr));
    let mut socket = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) => last = Error::Io(format!("cannot connect to the relay at {a}: {e}")),
        }
    }
    let mut socket = socket.ok_or(last)?;
    socket.set_nodelay(true)?;
    let mut out = BytesMut::new();
    proto::encode_preface(&mut out);
    Frame::HostHello {
        place: spec.place.clone(),
        secret: spec.secret.clone(),
    }
    .encode(&mut out);
    socket.set_write_timeout(Some(timeout))?;
    socket
        .write_all(&out)
        .map_err(|e| Error::Io(format!("relay handshake failed: {e}")))?;
    let mut conn = proto::Connection::new(Role::Client, max_frame);
    let mut buf = [0u8; 4096];
    loop {
        match conn.poll_frame() {
            Ok(Some(Frame::HostWelcome { .. })) => break,
            Ok(Some(Frame::Refused { reason })) | Ok(Some(Frame::Goodbye { reason, .. })) => {
                return Err(Error::Rejected(format!(
                    "the relay refused the host: {reason}"
                )));
            }
            Ok(Some(other)) => {
                return Err(Error::Io(format!(
                    "unexpected {:?} frame in the relay handshake",
                    other.frame_type()
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(Error::Io(format!("relay handshake failed: {e}"))),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(timeout));
        }
        socket.set_read_timeout(Some(left))?;
        match socket.read(&mut buf) {
            Ok(0) => {
                return Err(Error::Io(
                    "the relay closed the connection during the handshake".into(),
                ))
            }
            Ok(n) => conn.handle_bytes(&buf[..n]),
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {
                return Err(Error::Timeout(timeout))
            }
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) => return Err(Error::Io(format!("relay handshake failed: {e}"))),
        }
    }
    socket.set_read_timeout(None)?;
    socket.set_write_timeout(None)?;
    Ok((socket, conn))
}

/// Keeps trying to re-establish a dropped link, backing off, until it succeeds or the server
/// shuts down.
fn reattach_in_background(ep: Weak<Endpoint>, spec: LinkSpec) {
    let spawned = std::thread::Builder::new()
        .name("rf-relay-reattach".into())
        .spawn(move || {
            let mut backoff = BACKOFF_FIRST;
            loop {
                std::thread::sleep(backoff);
                let Some(ep) = ep.upgrade() else { return };
                if ep.is_closed() {
                    return;
                }
                let max_frame = ep.limits.max_frame + LINK_OVERHEAD;
                match connect_link(&spec, max_frame, Duration::from_secs(5)) {
                    Ok((socket, proto)) => {
                        tracing::info!(relay = %spec.addr, place = %spec.place, "reattached to the relay");
                        ep.command(Command::AddLink { socket, proto, spec });
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(relay = %spec.addr, "reattaching failed, retrying in {backoff:?}: {e}");
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the relay reattach thread: {e}");
    }
}

impl Reactor {
    /// Registers an established link and handles what the relay already sent.
    pub(super) fn add_link(
        &mut self,
        socket: std::net::TcpStream,
        proto: proto::Connection,
        spec: LinkSpec,
    ) {
        if self.ep.is_closed() {
            return;
        }
        let peer = socket.peer_addr().ok();
        let added = socket.set_nonblocking(true).and_then(|()| {
            self.insert(
                Some(TcpStream::from_std(socket)),
                peer,
                proto,
                ConnKind::Link(spec),
                None,
            )
        });
        match added {
            Ok((key, _)) => {
                self.conns[key].welcomed = true;
                self.process(key);
            }
            Err(e) => tracing::error!("cannot register the relay link: {e}"),
        }
    }

    /// Queues `frame` (a whole frame, length included) for relayed `player`, wrapped in ROUTED.
    pub(super) fn queue_routed(&mut self, link: usize, player: u64, frame: &[u8]) {
        let mut routed = BytesMut::new();
        proto::encode_routed(&mut routed, player, frame);
        self.queue(link, &routed);
    }

    /// A link dropped: its players are gone, and it is re-established in the background.
    pub(super) fn link_lost(&mut self, key: usize, spec: LinkSpec, error: &Error) {
        let players: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.kind, ConnKind::Relayed { link } if link == key))
            .map(|(k, _)| k)
            .collect();
        tracing::warn!(relay = %spec.addr, players = players.len(), "relay link lost: {error}");
        for player in players {
            self.remove(
                player,
                Error::Disconnected(format!("the relay link was lost: {error}")),
            );
        }
        if self.shutdown_deadline.is_none() && !self.ep.is_closed() {
            reattach_in_background(Arc::downgrade(&self.ep), spec);
        }
    }

    /// A frame on a host link.
    pub(super) fn on_link_frame(&mut self, key: usize, frame: Frame) {
        match frame {
            Frame::PlayerJoin {
                player,
                token,
                peer,
            } => {
                let ConnKind::Link(spec) = &self.conns[key].kind else {
                    return;
                };
                let place = spec.place.clone();
                if self.relayed.contains_key(&player) {
                    tracing::warn!(player, "the relay announced a player twice");
                    return;
                }
                let proto = proto::Connection::new(Role::Server, self.ep.limits.max_frame);
                let peer = peer.parse().ok();
                let added = self.insert(
                    None,
                    peer,
                    proto,
                    ConnKind::Relayed { link: key },
                    Some(player),
                );
                let Ok((relayed, _)) = added else { return };
                if self.ep.authenticator.read().is_some() {
                    let job = Job::Authenticate {
                        conn: player,
                        place,
                        token,
                    };
                    self.submit(job);
                } else {
                    self.welcome(relayed, Identity::default());
                }
            }
            Frame::Routed { player, frame } => {
                let Some(&relayed) = self.relayed.get(&player) else {
                    // The player left while this was on its way.
                    return;
                };
                match Frame::decode(frame) {
                    Ok(
                        inner @ (Frame::Invoke { .. }
                        | Frame::Result { .. }
                        | Frame::Error { .. }
                        | Frame::Event { .. }),
                    ) if self.conns[relayed].welcomed => self.on_frame(relayed, inner),
                    Ok(inner) => {
                        let reason = format!("a relayed player sent {:?}", inner.frame_type());
                        self.close(
                            relayed,
                            CloseReason::goodbye(proto::GoodbyeCode::ProtocolError, reason),
                        );
                    }
                    Err(e) => {
                        self.close(
                            relayed,
                            CloseReason::goodbye(proto::GoodbyeCode::ProtocolError, e.to_string()),
                        );
                    }
                }
            }
            Frame::PlayerLeft { player, reason } => {
                if let Some(&relayed) = self.relayed.get(&player) {
                    self.remove(relayed, Error::Disconnected(reason));
                }
            }
            Frame::Ping(_) | Frame::Pong(_) | Frame::Goodbye { .. } => {
                self.on_liveness(key, frame, "relay")
            }
            other => {
                let frame = other.frame_type();
                self.on_protocol_error(
                    key,
                    ProtocolError::Unexpected {
                        frame,
                        state: "on a host link",
                    },
                );
            }
        }
    }
}
