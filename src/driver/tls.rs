//! TLS under a connection's session: ciphertext from the socket goes into rustls and plaintext
//! comes out to the session; the session's output goes in as plaintext and leaves as records.
//! One implementation for every owner of the driver (server, client, host link, relay), and
//! for the dialler's blocking handshake.

use super::socket::Step;
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Ciphertext rustls may hold for the socket before it takes no more plaintext: past it, what
/// waits stays in the session, under the session's own output bound.
const MAX_BUFFERED_TLS: usize = 64 * 1024;

/// How far [`Tls::read`] reads the socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Until a read would block.
    WouldBlock,
    /// Until a read returns less than rustls asked for (or would block).
    ShortRead,
    /// One read (a blocking socket).
    OneRead,
}

/// A reader that notes whether its last read returned less than was asked.
struct Counted<'a, R> {
    inner: &'a mut R,
    short: bool,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// One connection's TLS state.
pub(crate) struct Tls {
    conn: rustls::Connection,
    /// The socket reached its end; what rustls still holds is read out first.
    peer_ended: bool,
    /// The TLS layer failed (a bad record, a refused certificate, plaintext on a TLS port).
    failure: Option<rustls::Error>,
    /// The close_notify is queued.
    closed: bool,
    /// A short read emptied the socket since its last readiness event (see
    /// [`Tls::on_readiness`]): until the next, what rustls holds is all there is.
    socket_drained: bool,
    /// The close_notify is written and the FIN was sent after it.
    fin_sent: bool,
    /// The handshake's end was reported (see [`Tls::take_handshake_done`]).
    handshake_reported: bool,
}

impl Tls {
    /// The server's side of a connection accepted on a TLS listener.
    pub(crate) fn server(config: Arc<rustls::ServerConfig>) -> Result<Tls, rustls::Error> {
        let conn = rustls::ServerConnection::new(config)?;
        Ok(Tls::new(conn.into()))
    }

    /// The client's side of a connection being dialled.
    pub(crate) fn client(conn: rustls::ClientConnection) -> Tls {
        Tls::new(conn.into())
    }

    fn new(mut conn: rustls::Connection) -> Tls {
        conn.set_buffer_limit(Some(MAX_BUFFERED_TLS));
        Tls {
            conn,
            peer_ended: false,
            failure: None,
            closed: false,
            socket_drained: false,
            fin_sent: false,
            handshake_reported: false,
        }
    }

    /// The socket reported readiness (or is read again after a budget ran out): it may
    /// hold more than the last short read left.
    pub(crate) fn on_readiness(&mut self) {
        self.socket_drained = false;
    }

    /// Whether rustls has records to write (handshake messages, alerts, data).
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Whether the TLS handshake is still under way.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Once, when the handshake has completed: whether it resumed an earlier session.
    pub(crate) fn take_handshake_done(&mut self) -> Option<bool> {
        if self.handshake_reported || self.conn.is_handshaking() {
            return None;
        }
        self.handshake_reported = true;
        Some(self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }

    /// Why the TLS layer failed, if it did.
    pub(crate) fn failure(&self) -> Option<&rustls::Error> {
        self.failure.as_ref()
    }

    /// As [`super::socket::read_step`], with TLS between: plaintext into `buf`, reading the
    /// socket until it is drained. As there, a short read of the socket drains it (the next
    /// arrival raises another event) unless the event also reported the end of the stream
    /// (`peer_closed`): that saves the read that would say `WouldBlock`, one system call per
    /// wake-up.
    pub(crate) fn read_step(
        &mut self,
        socket: &mut impl Read,
        buf: &mut [u8],
        peer_closed: bool,
    ) -> Step {
        self.read(
            socket,
            buf,
            if peer_closed {
                Until::WouldBlock
            } else {
                Until::ShortRead
            },
        )
    }

    /// As [`read_step`](Self::read_step), for a blocking socket: after one read of
    /// ciphertext that gave no plaintext it returns `Blocked`, so the caller can write what
    /// the handshake has to say before reading again.
    pub(crate) fn read_blocking(&mut self, socket: &mut impl Read, buf: &mut [u8]) -> Step {
        self.read(socket, buf, Until::OneRead)
    }

    fn read(&mut self, socket: &mut impl Read, buf: &mut [u8], until: Until) -> Step {
        let mut socket_read = false;
        loop {
            match self.conn.reader().read(buf) {
                // The peer's close_notify: a clean end.
                Ok(0) if !buf.is_empty() => return Step::End,
                Ok(n) => return Step::Moved { n, more: true },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without a close_notify.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Step::End,
                Err(e) => return Step::Failed(format!("TLS: {e}")),
            }
            if self.peer_ended {
                return Step::End;
            }
            if (socket_read && until == Until::OneRead) || self.socket_drained {
                return Step::Blocked;
            }
            socket_read = true;
            let mut counted = Counted {
                inner: &mut *socket,
                short: false,
            };
            let read = self.conn.read_tls(&mut counted);
            self.socket_drained = counted.short && until == Until::ShortRead;
            match read {
                Ok(0) => self.peer_ended = true,
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        let why = format!("TLS: {}", crate::tls::handshake_error("peer", &e));
                        self.failure = Some(e);
                        return Step::Failed(why);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Blocked,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Step::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(e.to_string()),
            }
        }
    }

    /// Plaintext rustls has already decrypted, into `buf`: `Moved`, or `Blocked` when there
    /// is none.
    pub(crate) fn read_buffered(&mut self, buf: &mut [u8]) -> Step {
        match self.conn.reader().read(buf) {
            Ok(n) if n > 0 => Step::Moved { n, more: true },
            _ => Step::Blocked,
        }
    }

    /// Takes what it can of `plain` to send; how much (none once its buffer is full).
    fn take_plaintext(&mut self, plain: &[u8]) -> usize {
        self.conn.writer().write(plain).unwrap_or(0)
    }

    /// Writes one batch of records to `socket` (as [`super::socket::write_step`]).
    fn write_step(&mut self, socket: &mut impl Write) -> Step {
        loop {
            return match self.conn.write_tls(socket) {
                Ok(0) => Step::End,
                Ok(n) => Step::Moved { n, more: true },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Step::Failed(e.to_string()),
            };
        }
    }

    /// Moves the session's output into rustls as plaintext (as much as its buffer takes) and
    /// writes records until `socket` would block or nothing is left; once the session is
    /// closing and all is out, queues the close_notify. Returns the ciphertext bytes written,
    /// or why the connection failed.
    pub(crate) fn send(
        &mut self,
        socket: &mut impl Write,
        session: &mut crate::proto::Session,
        now: std::time::Instant,
    ) -> Result<u64, String> {
        let mut written = 0;
        loop {
            let plain = session.poll_transmit();
            if !plain.is_empty() {
                let n = self.take_plaintext(plain);
                if n > 0 {
                    session.handle_written(n, now);
                }
            }
            if !self.wants_write() {
                if session.poll_shutdown() && !self.closed {
                    self.close();
                    continue;
                }
                return Ok(written);
            }
            match self.write_step(socket) {
                Step::Moved { n, .. } => written += n as u64,
                Step::Blocked => return Ok(written),
                Step::End => return Err("connection closed while writing".into()),
                Step::Failed(why) => return Err(why),
            }
        }
    }

    /// Writes what rustls has to say once, best effort: the alert that tells a failed peer
    /// why, before the socket is dropped.
    pub(crate) fn write_alert(&mut self, socket: &mut impl Write) {
        while self.wants_write() {
            if !matches!(self.write_step(socket), Step::Moved { .. }) {
                return;
            }
        }
    }

    /// Queues the close_notify that tells the peer no more data follows.
    fn close(&mut self) {
        self.conn.send_close_notify();
        self.closed = true;
    }

    /// True once, when the close_notify is written: the socket's FIN may follow.
    pub(crate) fn take_fin_due(&mut self) -> bool {
        if self.closed && !self.fin_sent && !self.wants_write() {
            self.fin_sent = true;
            return true;
        }
        false
    }
}
