//! Dialling out: connecting to a server or a relay and completing the handshake, blocking (on
//! the caller's thread, never on a loop), with the same [`Session`] that then serves the
//! connection in the driver. A client and a host link differ only in the HELLO they send and
//! the words of their errors.

use crate::error::Error;
use crate::proto::{self, Frame, RateLimit, Role, Session, SessionConfig};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who is dialled, for error messages: "server" or "relay".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    /// The peer's name in messages ("server", "relay").
    pub name: &'static str,
    /// What a refusal becomes: the peer's reason, with this prefix.
    pub refused: &'static str,
}

/// A game server, dialled by a player.
pub(crate) const SERVER: Peer = Peer {
    name: "server",
    refused: "",
};

/// A relay, dialled by a game server's host link.
pub(crate) const RELAY: Peer = Peer {
    name: "relay",
    refused: "the relay refused the host: ",
};

/// Connects to the first address of `addr` that answers and completes the handshake with
/// `hello`, within `timeout` in all. Returns the socket and the session, open (bytes that
/// arrived behind the welcome are buffered in it), and the welcome frame.
pub(crate) fn dial(
    addr: impl ToSocketAddrs,
    hello: &Frame,
    max_frame: u32,
    timeout: Duration,
    peer: Peer,
) -> Result<(TcpStream, Session, Frame), Error> {
    let deadline = Instant::now() + timeout;
    let mut socket = connect(addr, deadline, timeout, peer)?;
    socket.set_nodelay(true)?;
    let config = SessionConfig {
        max_frame,
        max_output: usize::MAX,
        pause_reading_above: None,
        handshake_timeout: timeout,
        idle_timeout: Duration::ZERO,
        rate: RateLimit::UNLIMITED,
        max_inflight: u32::MAX,
    };
    let mut session = Session::new(Role::Client, Arc::new(config), Instant::now());
    let mut out = bytes::BytesMut::new();
    proto::encode_preface(&mut out);
    hello.encode(&mut out);
    // The session's output is not bounded here.
    let _ = session.send_bytes(&out, Instant::now());
    let welcome = handshake(&mut socket, &mut session, deadline, timeout, peer)?;
    socket.set_read_timeout(None)?;
    socket.set_write_timeout(None)?;
    Ok((socket, session, welcome))
}

fn connect(
    addr: impl ToSocketAddrs,
    deadline: Instant,
    timeout: Duration,
    peer: Peer,
) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::io_from(format!("cannot resolve the {} address", peer.name), e))?
        .collect();
    let mut last = Error::io(format!("the {} address resolved to nothing", peer.name));
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(timeout));
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == IoKind::TimedOut => last = Error::Timeout(timeout),
            Err(e) => {
                last = Error::io_from(format!("cannot connect to the {} at {a}", peer.name), e)
            }
        }
    }
    Err(last)
}

/// Writes the HELLO and reads until the welcome, the refusal, or the deadline.
fn handshake(
    socket: &mut TcpStream,
    session: &mut Session,
    deadline: Instant,
    timeout: Duration,
    peer: Peer,
) -> Result<Frame, Error> {
    let failed = |e: std::io::Error| match e.kind() {
        IoKind::WouldBlock | IoKind::TimedOut => Error::Timeout(timeout),
        _ => Error::io_from(format!("the {} handshake failed", peer.name), e),
    };
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    socket.set_write_timeout(Some(left()))?;
    socket.write_all(session.poll_transmit()).map_err(failed)?;
    let written = session.poll_transmit().len();
    session.handle_written(written, Instant::now());
    let mut buf = [0u8; 4096];
    loop {
        match session.poll_frame(Instant::now()) {
            Ok(Some(welcome @ (Frame::Welcome { .. } | Frame::HostWelcome { .. }))) => {
                session.accept();
                return Ok(welcome);
            }
            Ok(Some(Frame::Refused { reason } | Frame::Goodbye { reason, .. })) => {
                return Err(Error::Rejected(format!("{}{reason}", peer.refused)));
            }
            Ok(Some(other)) => {
                return Err(Error::Protocol(format!(
                    "unexpected {:?} frame in the {} handshake",
                    other.frame_type(),
                    peer.name
                )))
            }
            Ok(None) => {}
            Err(v) => {
                return Err(Error::Protocol(format!(
                    "the {} handshake failed: {}",
                    peer.name, v.reason
                )))
            }
        }
        if deadline <= Instant::now() {
            return Err(Error::Timeout(timeout));
        }
        socket.set_read_timeout(Some(left()))?;
        match socket.read(&mut buf) {
            Ok(0) => {
                return Err(Error::io(format!(
                    "the {} closed the connection during the handshake",
                    peer.name
                )))
            }
            Ok(n) => session.handle_bytes(&buf[..n], Instant::now()),
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    }
}
