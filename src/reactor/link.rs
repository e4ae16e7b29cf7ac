//! Host links: a server that serves the players of a relay (`remotefn relay`).
//!
//! The server keeps one connection per relay it is attached to. The relay announces each
//! player with PLAYER_JOIN; the server makes it a *relayed* connection, with no socket of its
//! own, and from then on treats it exactly like a player on its own socket: the same handshake
//! decision (the server's authenticator), call tracking, limits and callbacks. Frames to a
//! relayed player travel wrapped in ROUTED on the link; frames from it arrive the same way. When
//! a link drops, its players are gone (their pending calls fail), and the link is re-established
//! in the background with exponential backoff; the relay then announces its players again.

use super::{CloseReason, Endpoints, Peer, Relayed, Target};
use crate::calls::PeerCalls;
use crate::dispatch::Job;
use crate::driver::{dial, Io};
use crate::endpoint::{Command, Endpoint, Identity, LinkSpec};
use crate::error::Error;
use crate::ids::ConnId;
use crate::proto::LINK_OVERHEAD;
use crate::proto::{self, Frame, InboundCalls, ProtocolError};
use crate::stats::bump;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The first retry after a link drops, and the longest wait between retries.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Connects to a relay and completes the host handshake, blocking (never on the reactor).
/// Frames that arrive behind the relay's welcome stay in the returned session.
pub(crate) fn connect_link(
    spec: &LinkSpec,
    max_frame: u32,
    timeout: Duration,
) -> Result<dial::Dialled, Error> {
    let hello = Frame::HostHello {
        place: spec.place.clone(),
        secret: spec.secret.clone(),
    };
    let tls = spec.tls.as_ref();
    let (link, _) = dial::dial(&spec.addr, tls, &hello, max_frame, timeout, dial::RELAY)?;
    Ok(link)
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
                let max_frame = ep.limits().max_payload + LINK_OVERHEAD;
                match connect_link(&spec, max_frame, Duration::from_secs(5)) {
                    Ok(link) => {
                        tracing::info!(relay = %spec.addr, place = %spec.place, "reattached to the relay");
                        let link = Box::new(link);
                        ep.command(Command::AddLink { link, spec });
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

impl Endpoints {
    /// Registers an established link; what the relay already sent is handled on the next turn.
    pub(super) fn add_link(&mut self, io: &mut Io<Peer>, link: dial::Dialled, spec: LinkSpec) {
        if self.ep.is_closed() {
            return;
        }
        let config = self.links_session.clone();
        match io.insert_dialled(link, config, Peer::Link(Box::new(spec))) {
            Ok(_) => bump(&self.counters().connections, 1),
            Err(e) => tracing::error!("cannot register the relay link: {e}"),
        }
    }

    /// A link dropped: its players are gone, and it is re-established in the background.
    pub(super) fn link_lost(
        &mut self,
        io: &mut Io<Peer>,
        key: usize,
        spec: LinkSpec,
        error: &Error,
    ) {
        let players: Vec<ConnId> = self
            .relayed
            .iter()
            .filter(|(_, r)| r.link == key)
            .map(|(&id, _)| id)
            .collect();
        tracing::warn!(relay = %spec.addr, players = players.len(), "relay link lost: {error}");
        let lost = Error::Disconnected(format!("the relay link was lost: {error}"));
        for player in players {
            bump(&self.counters().disconnects_other, 1);
            self.release(io, Target::Relayed(player), &lost);
        }
        if self.shutdown_deadline.is_none() && !self.ep.is_closed() {
            reattach_in_background(Arc::downgrade(&self.ep), spec);
        }
    }

    /// A frame on a host link.
    pub(super) fn on_link_frame(&mut self, io: &mut Io<Peer>, key: usize, frame: Frame) {
        match frame {
            Frame::PlayerJoin {
                player,
                token,
                peer,
            } => {
                let player = ConnId(player);
                let Some(conn) = io.live(key) else {
                    return;
                };
                let Peer::Link(spec) = &conn.state else {
                    return;
                };
                let (place, link_id) = (spec.place.clone(), conn.id);
                if self.relayed.contains_key(&player) {
                    tracing::warn!(player = player.0, "the relay announced a player twice");
                    return;
                }
                bump(&self.counters().connections, 1);
                let relayed = Relayed {
                    link: key,
                    link_id,
                    peer: peer.parse().ok(),
                    welcomed: false,
                    inbound: InboundCalls::default(),
                    calls: PeerCalls::default(),
                };
                self.relayed.insert(player, relayed);
                if self.ep.has_authenticator() {
                    let job = Job::Authenticate {
                        conn: player,
                        place,
                        token,
                    };
                    self.submit(job);
                } else {
                    self.welcome(io, Target::Relayed(player), Identity::default());
                }
            }
            Frame::Routed { player, frame } => {
                let player = ConnId(player);
                let Some(r) = self.relayed.get(&player) else {
                    // The player left while this was on its way.
                    return;
                };
                if r.link != key || io.live(key).is_none_or(|c| c.id != r.link_id) {
                    return;
                }
                let welcomed = r.welcomed;
                let target = Target::Relayed(player);
                match Frame::decode(frame) {
                    Ok(
                        inner @ (Frame::Invoke { .. }
                        | Frame::Result { .. }
                        | Frame::Error { .. }
                        | Frame::Event { .. }),
                    ) if welcomed => self.on_player_frame(io, target, inner),
                    Ok(inner) => {
                        let reason = format!("a relayed player sent {:?}", inner.frame_type());
                        let goodbye =
                            CloseReason::goodbye(proto::GoodbyeCode::ProtocolError, reason);
                        self.close(io, target, goodbye);
                    }
                    Err(e) => {
                        let goodbye =
                            CloseReason::goodbye(proto::GoodbyeCode::ProtocolError, e.to_string());
                        self.close(io, target, goodbye);
                    }
                }
            }
            Frame::PlayerLeft { player, reason } => {
                let player = ConnId(player);
                if self.relayed.get(&player).is_some_and(|r| r.link == key) {
                    bump(&self.counters().disconnects_other, 1);
                    self.release(io, Target::Relayed(player), &Error::Disconnected(reason));
                }
            }
            Frame::Ping(n) => io.send(key, &Frame::Pong(n)),
            Frame::Pong(_) => {}
            Frame::Goodbye { code, reason } => {
                let why = format!("the relay said goodbye ({code:?}): {reason}");
                self.close(io, Target::Direct(key), CloseReason::peer_gone(why));
            }
            other => {
                let frame = other.frame_type();
                let state = "on a host link";
                let violation = ProtocolError::Unexpected { frame, state }.into();
                self.violation(io, Target::Direct(key), violation);
            }
        }
    }
}
