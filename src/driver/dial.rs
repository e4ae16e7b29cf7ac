//! Dialling out: connecting to a server or a relay and completing the handshake, blocking (on
//! the caller's thread, never on a loop), with the same [`Session`] that then serves the
//! connection in the driver. A client and a host link differ only in the HELLO they send and
//! the words of their errors. Over TLS, the TLS handshake runs first, through the same TLS
//! layer the driver then serves the connection with.

use super::socket::Step;
use super::tls::Tls;
use crate::error::Error;
use crate::proto::{self, Frame, RateLimit, Role, Session, SessionConfig};
use crate::tls::{Connector, TlsError, TlsErrorKind};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection dialled and welcomed, for [`super::Io::insert_dialled`]: the socket, its TLS
/// layer if it speaks TLS, and the open session (bytes that arrived behind the welcome are
/// buffered in it).
pub(crate) struct Dialled {
    pub(super) socket: TcpStream,
    pub(super) tls: Option<Box<Tls>>,
    pub(super) session: Session,
}

impl std::fmt::Debug for Dialled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialled")
            .field("socket", &self.socket)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

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
/// `hello` (over TLS when `tls` is given, verifying the host of `addr` unless the TLS settings
/// name the server), within `timeout` in all. Returns the connection and the welcome frame.
pub(crate) fn dial(
    addr: &str,
    tls: Option<&Connector>,
    hello: &Frame,
    max_frame: u32,
    timeout: Duration,
    peer: Peer,
) -> Result<(Dialled, Frame), Error> {
    let deadline = Instant::now() + timeout;
    let socket = connect(addr, deadline, timeout, peer)?;
    socket.set_nodelay(true)?;
    let tls = match tls {
        Some(connector) => {
            let ip = socket.peer_addr()?.ip();
            let conn = connector.connect(crate::tls::host_of(addr), ip)?;
            Some(Box::new(Tls::client(conn)))
        }
        None => None,
    };
    let config = SessionConfig {
        max_frame,
        max_output: usize::MAX,
        pause_reading_above: None,
        handshake_timeout: timeout,
        idle_timeout: Duration::ZERO,
        rate: RateLimit::UNLIMITED,
        max_inflight: u32::MAX,
    };
    let mut dialled = Dialled {
        socket,
        tls,
        session: Session::new(Role::Client, Arc::new(config), Instant::now()),
    };
    let mut out = bytes::BytesMut::new();
    proto::encode_preface(&mut out);
    hello.encode(&mut out);
    // The session's output is not bounded here.
    let _ = dialled.session.send_bytes(&out, Instant::now());
    let welcome = handshake(&mut dialled, deadline, timeout, peer)?;
    dialled.socket.set_read_timeout(None)?;
    dialled.socket.set_write_timeout(None)?;
    Ok((dialled, welcome))
}

fn connect(
    addr: &str,
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
    dialled: &mut Dialled,
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
    let Dialled {
        socket,
        tls,
        session,
    } = dialled;
    let mut first_bytes = true;
    let mut buf = [0u8; 4096];
    loop {
        socket.set_write_timeout(Some(left()))?;
        write_all(socket, tls.as_deref_mut(), session).map_err(failed)?;
        match session.poll_frame(Instant::now()) {
            Ok(Some(welcome @ (Frame::Welcome { .. } | Frame::HostWelcome { .. }))) => {
                session.accept();
                if let Some(tls) = tls.as_deref_mut() {
                    // Plaintext rustls decrypted behind the welcome belongs to the session
                    // (no socket event would bring it up).
                    while let Step::Moved { n, .. } = tls.read_buffered(&mut buf) {
                        session.handle_bytes(&buf[..n], Instant::now());
                    }
                }
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
        let step = match tls.as_deref_mut() {
            Some(tls) => {
                let step = tls.read_blocking(socket, &mut buf);
                match (&step, tls.failure().cloned()) {
                    (Step::Failed(_), Some(e)) => {
                        tls.write_alert(socket);
                        return Err(Error::Tls(crate::tls::handshake_error(peer.name, &e)));
                    }
                    (Step::End, _) if tls.is_handshaking() => {
                        return Err(Error::Tls(TlsError::new(
                            TlsErrorKind::NotTls,
                            format!(
                                "the {} closed the connection during the TLS handshake (is TLS on for this port?)",
                                peer.name
                            ),
                        )))
                    }
                    // A timeout of the blocking socket.
                    (Step::Blocked, _) => continue,
                    _ => step,
                }
            }
            None => match socket.read(&mut buf) {
                Ok(0) => Step::End,
                Ok(n) => Step::Moved { n, more: false },
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => return Err(failed(e)),
            },
        };
        match step {
            Step::End => {
                return Err(Error::io(format!(
                    "the {} closed the connection during the handshake",
                    peer.name
                )))
            }
            Step::Moved { n, .. } => {
                if first_bytes && tls.is_none() && looks_like_tls(&buf[..n]) {
                    return Err(Error::Tls(TlsError::new(
                        TlsErrorKind::TlsRequired,
                        format!(
                            "the {} speaks TLS on this port: connect with TLS",
                            peer.name
                        ),
                    )));
                }
                first_bytes = false;
                session.handle_bytes(&buf[..n], Instant::now());
            }
            Step::Blocked => {}
            Step::Failed(why) => {
                return Err(Error::io(format!(
                    "the {} handshake failed: {why}",
                    peer.name
                )))
            }
        }
    }
}

/// Writes all the session's output (through TLS, what rustls has to send too), blocking.
fn write_all(
    socket: &mut TcpStream,
    tls: Option<&mut Tls>,
    session: &mut Session,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        socket.write_all(session.poll_transmit())?;
        let written = session.poll_transmit().len();
        session.handle_written(written, Instant::now());
        return Ok(());
    };
    tls.send(socket, session, Instant::now())
        .map_err(std::io::Error::other)?;
    if tls.wants_write() {
        // The blocking socket's write timed out.
        return Err(IoKind::TimedOut.into());
    }
    Ok(())
}

/// Whether a plaintext client's first bytes from its server are a TLS record (an alert or a
/// handshake message, TLS 1.0 to 1.3), rather than a frame: a WELCOME's length prefix never
/// starts with these bytes.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, 0x01..=0x04, ..])
}
