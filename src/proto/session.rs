//! One connection's whole protocol state, sans-IO: what an event loop needs to know about a
//! peer, with no socket and no clock of its own.
//!
//! A [`Session`] wraps the frame state machine ([`Connection`]) with everything else a
//! connection carries: its output buffer and that buffer's bound, the read pause that pushes
//! back on a peer whose answers pile up, liveness (handshake deadline, pings, idle and
//! not-reading timeouts), the rate shaper, the count of inbound calls in flight, and the
//! graceful close (the goodbye goes out whole, then a FIN, then the peer's end or a grace
//! period). The event loop moves bytes between a socket and the session and asks it what to do.
//!
//! Methods by direction, as in quinn-proto:
//! - getters: [`is_welcomed`](Session::is_welcomed), [`is_closing`](Session::is_closing),
//!   [`wants_read`](Session::wants_read), [`inflight`](Session::inflight);
//! - input from the network: [`handle_bytes`](Session::handle_bytes),
//!   [`handle_written`](Session::handle_written), [`handle_timeout`](Session::handle_timeout);
//! - commands from the application: [`accept`](Session::accept), [`send`](Session::send),
//!   [`send_bytes`](Session::send_bytes), [`answered`](Session::answered),
//!   [`refuse`](Session::refuse), [`close`](Session::close);
//! - output to perform: [`poll_frame`](Session::poll_frame) (frames received, as far as the
//!   rate allows), [`poll_transmit`](Session::poll_transmit) (bytes to write),
//!   [`poll_shutdown`](Session::poll_shutdown) (send the FIN now),
//!   [`poll_timeout`](Session::poll_timeout) (when to call `handle_timeout`),
//!   [`poll_event`](Session::poll_event) (what the loop must act on).
//!
//! Nothing here reads a clock: every method that depends on time takes `now`, so tests drive
//! two sessions against each other in memory with a fake clock.

use super::conn::{Connection, Packet, Role};
use super::frame::{encode_goodbye, CallFrame, Frame, FrameType, GoodbyeCode, ProtocolError};
use super::rate::{Admission, RateLimit, RateShaper};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes read per read call by the loops; a peer still in the handshake may have this much
/// beyond one frame buffered.
pub const READ_CHUNK: usize = 64 * 1024;
/// Unwritten output above which a player's input is left unread until the output drains: a
/// peer that does not read its answers gets no more requests served (TCP pushes back on it)
/// rather than costing the server work whose results pile up.
pub const PAUSE_READING_ABOVE: usize = 256 * 1024;

/// How long a closing connection may linger while its goodbye is written and the peer closes
/// its side.
pub const CLOSING_GRACE: Duration = Duration::from_secs(2);
/// Input a closing connection may still send (and have discarded); past it, its input is left
/// unread. It covers what a sender that was paused can have queued in the kernel's buffers.
pub const CLOSING_READ_BUDGET: usize = 16 << 20;

/// The limits of one connection.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Largest frame accepted from the peer.
    pub max_frame: u32,
    /// Output that may wait for the peer; past it the peer is cut as not reading.
    pub max_output: usize,
    /// Output above which the peer's input is left unread until the output drains to half of
    /// it, so a peer that does not read its answers gets no more requests served. `None`: never
    /// (a client always reads its server, so the two can never both wait for the other).
    pub pause_reading_above: Option<usize>,
    /// The handshake must complete within this.
    pub handshake_timeout: Duration,
    /// A peer not heard from for this long is cut; it is pinged after a third of it. Also: a
    /// peer that takes none of its output for this long is cut. Zero disables both.
    pub idle_timeout: Duration,
    /// Calls and events the peer may send per second.
    pub rate: RateLimit,
    /// Inbound calls the peer may have unanswered at once; one more is a violation.
    pub max_inflight: u32,
}

/// Why a peer must be cut: the goodbye it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The goodbye's code.
    pub code: GoodbyeCode,
    /// The goodbye's reason.
    pub reason: String,
}

impl Violation {
    /// A violation with this goodbye.
    pub fn new(code: GoodbyeCode, reason: impl Into<String>) -> Violation {
        Violation {
            code,
            reason: reason.into(),
        }
    }

    fn limit(reason: String) -> Violation {
        Violation {
            code: GoodbyeCode::Limit,
            reason,
        }
    }
}

impl From<ProtocolError> for Violation {
    fn from(e: ProtocolError) -> Violation {
        Violation {
            code: GoodbyeCode::ProtocolError,
            reason: e.to_string(),
        }
    }
}

/// A peer's inbound calls not yet answered, against their bound: one count per peer, kept by
/// its session (or, for a player behind a relay, by the game server's record of it).
#[derive(Clone, Copy, Debug, Default)]
pub struct InboundCalls {
    unanswered: u32,
}

impl InboundCalls {
    /// A call arrived: a violation when it is one more than `max` unanswered.
    pub fn arrived(&mut self, max: u32) -> Result<(), Violation> {
        if self.unanswered >= max {
            return Err(Violation::limit(format!("more than {max} calls in flight")));
        }
        self.unanswered += 1;
        Ok(())
    }

    /// One of them was answered.
    pub fn answered(&mut self) {
        self.unanswered = self.unanswered.saturating_sub(1);
    }

    /// How many are unanswered.
    pub fn unanswered(&self) -> u32 {
        self.unanswered
    }
}

/// What the event loop must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Reading may go on (the rate refilled, or the output drained): read the socket again,
    /// as no new readiness will be reported for input that already waits.
    ReadAgain,
    /// A timer expired: close the session with this goodbye (after whatever the owner does
    /// for a departing peer).
    Expired(Violation),
    /// The grace of a closing session ran out (its peer did not close its side): drop the
    /// connection.
    Finished,
}

#[derive(Debug)]
struct Closing {
    since: Instant,
    read_budget: usize,
    /// Our FIN was sent (once: each shutdown raises a new readiness event).
    write_shut: bool,
}

/// One connection's protocol state; see the module documentation.
#[derive(Debug)]
pub struct Session {
    conn: Connection,
    /// Shared by every connection of a kind: a connection costs a pointer, not a copy.
    config: Arc<SessionConfig>,
    out: BytesMut,
    /// Bytes at the front of `out` that finish a frame already partly written; past them `out`
    /// holds whole frames, which a close for a violation may drop so its goodbye goes next.
    out_partial: usize,
    welcomed: bool,
    opened: Instant,
    last_heard: Instant,
    /// When output last went out (or started waiting).
    last_write: Instant,
    pinged: bool,
    /// An expiry has been reported (and not yet acted on by a close).
    expired: bool,
    reading_paused: bool,
    rate: RateShaper,
    rate_resume: Option<Instant>,
    inbound: InboundCalls,
    closing: Option<Closing>,
    /// Events not yet polled, as flags (a session costs a few bytes for them, not a queue).
    read_again: bool,
    finished: bool,
    /// A deadline expired with this goodbye code, not yet polled.
    expiry: Option<Expiry>,
    /// Something brought the next deadline earlier than the last `poll_timeout` said (see
    /// [`Session::take_deadline_moved_earlier`]).
    deadline_earlier: bool,
}

/// Which deadline expired; its violation is made when polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Handshake,
    NotReading,
    Idle,
}

impl Session {
    /// A session in its initial state: a server's waits for the preface and HELLO, a
    /// client's for the WELCOME.
    pub fn new(role: Role, config: Arc<SessionConfig>, now: Instant) -> Session {
        Session {
            conn: Connection::new(role, config.max_frame),
            rate: RateShaper::new(&config.rate, now),
            config,
            out: BytesMut::new(),
            out_partial: 0,
            welcomed: false,
            opened: now,
            last_heard: now,
            last_write: now,
            pinged: false,
            expired: false,
            reading_paused: false,
            rate_resume: None,
            inbound: InboundCalls::default(),
            closing: None,
            read_again: false,
            finished: false,
            expiry: None,
            deadline_earlier: false,
        }
    }

    /// The same session under another configuration (a dialled connection, handshake done,
    /// joining a loop with its endpoint's limits).
    pub fn with_config(mut self, config: Arc<SessionConfig>) -> Session {
        self.rate = RateShaper::new(&config.rate, self.opened);
        self.config = config;
        self
    }

    // ---- getters ----

    /// Whether the handshake is complete (and the session not closing).
    pub fn is_welcomed(&self) -> bool {
        self.welcomed && self.closing.is_none()
    }

    /// Whether a goodbye or refusal was queued: the session only finishes its close now.
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Whether the loop should read the socket now: not while the peer is over its rate or
    /// its answers pile up, and for a closing session only within its discard budget.
    pub fn wants_read(&self) -> bool {
        match &self.closing {
            Some(closing) => closing.read_budget > 0,
            None => self.rate_resume.is_none() && !self.reading_paused,
        }
    }

    /// How much a read may take now (a closing session's discard budget bounds it).
    pub fn read_limit(&self) -> usize {
        self.closing
            .as_ref()
            .map_or(READ_CHUNK, |c| c.read_budget.min(READ_CHUNK))
    }

    /// Inbound calls not yet answered.
    pub fn inflight(&self) -> u32 {
        self.inbound.unanswered()
    }

    /// Output waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    // ---- input from the network ----

    /// Bytes read from the peer. A closing session discards them (within its budget).
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) {
        self.last_heard = now;
        // Heard from after a ping: the next ping is due before the cut that was next.
        self.deadline_earlier |= std::mem::take(&mut self.pinged);
        match &mut self.closing {
            Some(closing) => closing.read_budget = closing.read_budget.saturating_sub(data.len()),
            None => self.conn.handle_bytes(data),
        }
    }

    /// The peer closed its side (end of stream, or the socket failed): whether the connection
    /// is over. It is, unless the session is closing with its goodbye still to write: a
    /// half-closed peer can still read it, and the close finishes once it is written (or at
    /// the grace).
    pub fn handle_peer_closed(&mut self) -> bool {
        self.closing.is_none() || self.out.is_empty()
    }

    /// The first `n` bytes of [`poll_transmit`](Self::poll_transmit) were written.
    pub fn handle_written(&mut self, n: usize, now: Instant) {
        self.out_partial = partial_after_write(&self.out, self.out_partial, n);
        let _ = self.out.split_to(n);
        self.last_write = now;
        if self.out.is_empty() && self.out.capacity() > 64 * 1024 {
            self.out = BytesMut::new();
        }
        if let Some(limit) = self.config.pause_reading_above {
            if self.reading_paused && self.out.len() <= limit / 2 {
                self.reading_paused = false;
                self.read_again = true;
            }
        }
    }

    /// Timers that are due at `now`: a rate pause ends, a ping goes out, a deadline expires, or
    /// a closing session's grace runs out. See [`poll_event`](Self::poll_event).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(closing) = &self.closing {
            if now.saturating_duration_since(closing.since) >= CLOSING_GRACE {
                self.finished = true;
            }
            return;
        }
        if self.rate_resume.is_some_and(|at| at <= now) {
            self.rate_resume = None;
            self.read_again = true;
        }
        if self.expired {
            return;
        }
        if let Some(expiry) = self.expiry(now) {
            self.expired = true;
            self.expiry = Some(expiry);
        } else if self.ping_due(now) {
            self.pinged = true;
            let mut ping = BytesMut::new();
            Frame::Ping(0).encode(&mut ping);
            // A ping never passes the bound: it would only be over it with output stalled for
            // the idle timeout, which expires first.
            let _ = self.send_bytes(&ping, now);
        }
    }

    fn expiry(&self, now: Instant) -> Option<Expiry> {
        let (handshake, idle) = (self.config.handshake_timeout, self.config.idle_timeout);
        if !self.welcomed {
            return (now.saturating_duration_since(self.opened) >= handshake)
                .then_some(Expiry::Handshake);
        }
        if idle.is_zero() {
            return None;
        }
        if !self.out.is_empty() && now.saturating_duration_since(self.last_write) >= idle {
            // Takes none of its output: the other half of the idle timeout.
            return Some(Expiry::NotReading);
        }
        if self.reading_paused || self.rate_resume.is_some() {
            // We are the ones not reading it: its silence is not its fault.
            return None;
        }
        (now.saturating_duration_since(self.last_heard) >= idle).then_some(Expiry::Idle)
    }

    fn violation_of(&self, expiry: Expiry) -> Violation {
        let (handshake, idle) = (self.config.handshake_timeout, self.config.idle_timeout);
        match expiry {
            Expiry::Handshake => Violation::new(
                GoodbyeCode::Timeout,
                format!("handshake not completed within {handshake:?}"),
            ),
            Expiry::NotReading => {
                Violation::limit(format!("not reading: no output taken for {idle:?}"))
            }
            Expiry::Idle => {
                Violation::new(GoodbyeCode::Timeout, format!("nothing heard for {idle:?}"))
            }
        }
    }

    fn ping_due(&self, now: Instant) -> bool {
        let idle = self.config.idle_timeout;
        self.welcomed
            && !idle.is_zero()
            && !self.pinged
            && now.saturating_duration_since(self.last_heard) >= idle / 3
    }

    // ---- commands from the application ----

    /// Server: the handshake is accepted; frames that followed the HELLO are released.
    pub fn accept(&mut self) {
        self.conn.accept();
        self.welcomed = true;
        // From the handshake deadline to the (sooner) first ping.
        self.deadline_earlier = true;
    }

    /// Queues a frame for the peer.
    pub fn send(&mut self, frame: &Frame, now: Instant) -> Result<(), Violation> {
        self.send_with(now, |out| frame.encode(out))
    }

    /// Queues encoded frames for the peer. Past the output bound nothing is queued and the
    /// violation says why the peer must be cut. A closing session takes nothing more.
    pub fn send_bytes(&mut self, frames: &[u8], now: Instant) -> Result<(), Violation> {
        self.send_with(now, |out| out.extend_from_slice(frames))
    }

    /// Queues what `encode` appends (whole frames), encoded straight into the output buffer
    /// (see [`send_bytes`](Self::send_bytes)).
    pub fn send_with(
        &mut self,
        now: Instant,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<(), Violation> {
        if self.closing.is_some() {
            return Ok(());
        }
        let before = self.out.len();
        encode(&mut self.out);
        if self.out.len() > self.config.max_output {
            self.out.truncate(before);
            return Err(Violation::limit(format!(
                "output buffer over {} bytes: the peer is not reading",
                self.config.max_output
            )));
        }
        if before == 0 {
            self.last_write = now;
        }
        if let Some(limit) = self.config.pause_reading_above {
            if self.out.len() > limit {
                self.reading_paused = true;
            }
        }
        Ok(())
    }

    /// An inbound call of the peer's was answered.
    pub fn answered(&mut self) {
        self.inbound.answered();
    }

    /// Refuses the handshake with `reason`, then closes.
    pub fn refuse(&mut self, reason: &str, now: Instant) {
        let _ = self.send(
            &Frame::Refused {
                reason: reason.to_owned(),
            },
            now,
        );
        self.begin_close(now);
    }

    /// Closes with a goodbye: for a violation, output not yet started is dropped so the
    /// goodbye goes next. The goodbye is written, then a FIN; the connection is over when the
    /// peer closes its side ([`handle_peer_closed`](Self::handle_peer_closed)) or the grace
    /// runs out ([`Event::Finished`]).
    pub fn close(&mut self, code: GoodbyeCode, reason: &str, now: Instant) {
        if self.closing.is_some() {
            return;
        }
        if matches!(code, GoodbyeCode::Limit | GoodbyeCode::ProtocolError) {
            self.out.truncate(self.out_partial);
        }
        encode_goodbye(&mut self.out, code, reason);
        self.begin_close(now);
    }

    fn begin_close(&mut self, now: Instant) {
        self.deadline_earlier = true;
        self.conn.close();
        self.closing = Some(Closing {
            since: now,
            read_budget: CLOSING_READ_BUDGET,
            write_shut: false,
        });
    }

    // ---- output to perform ----

    /// The next frame from the peer, as far as its rate allows: `Ok(None)` when more bytes
    /// are needed, while the peer waits for tokens (see [`poll_timeout`](Self::poll_timeout)),
    /// or once closing. A violation (protocol, rate held too long, calls in flight, too much
    /// sent before the handshake) must close the session with its goodbye.
    pub fn poll_frame(&mut self, now: Instant) -> Result<Option<Frame>, Violation> {
        let packet = self.poll_packet(now, false)?;
        Ok(packet.map(Packet::into_frame).transpose()?)
    }

    /// As [`poll_frame`](Self::poll_frame); with `pass_calls`, a call's frame comes as a
    /// [`CallFrame`](super::CallFrame) with its payload undecoded, under the same limits.
    #[inline]
    pub fn poll_packet(
        &mut self,
        now: Instant,
        pass_calls: bool,
    ) -> Result<Option<Packet>, Violation> {
        if self.closing.is_some() || self.rate_resume.is_some() {
            return Ok(None);
        }
        match self.rate.admit(&self.conn, &self.config.rate, now) {
            Admission::Now => {}
            Admission::Wait(at) => {
                self.rate_resume = Some(at);
                self.deadline_earlier = true;
                return Ok(None);
            }
            Admission::Cut(reason) => return Err(Violation::limit(reason)),
        }
        match self.conn.poll_packet(pass_calls)? {
            Some(
                packet @ (Packet::Frame(Frame::Invoke { .. })
                | Packet::Call(CallFrame {
                    ty: FrameType::Invoke,
                    routed: None,
                    ..
                })),
            ) => {
                self.inbound.arrived(self.config.max_inflight)?;
                Ok(Some(packet))
            }
            Some(packet) => Ok(Some(packet)),
            None => {
                let limit = self.config.max_frame as usize + READ_CHUNK + 8;
                if !self.welcomed && self.conn.buffered() > limit {
                    return Err(Violation::limit(format!(
                        "more than {limit} bytes sent before the handshake completed"
                    )));
                }
                Ok(None)
            }
        }
    }

    /// The peer's input is all handled (the socket would block): it keeps within its rate.
    pub fn handle_input_drained(&mut self) {
        if self.rate_resume.is_none() {
            self.rate.input_drained();
        }
        self.conn.release_idle_buffer();
    }

    /// Bytes to write to the socket now (empty when there are none).
    pub fn poll_transmit(&self) -> &[u8] {
        &self.out
    }

    /// Whether to shut down our side of the socket now: a closing session whose goodbye is
    /// written. True once.
    pub fn poll_shutdown(&mut self) -> bool {
        match &mut self.closing {
            Some(closing) if self.out.is_empty() && !closing.write_shut => {
                closing.write_shut = true;
                true
            }
            _ => false,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(closing) = &self.closing {
            return Some(closing.since + CLOSING_GRACE);
        }
        let mut next = self.rate_resume;
        let mut earliest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        if self.expired {
            return next;
        }
        let idle = self.config.idle_timeout;
        if !self.welcomed {
            earliest(self.opened + self.config.handshake_timeout);
        } else if !idle.is_zero() {
            if !self.out.is_empty() {
                earliest(self.last_write + idle);
            }
            if !self.pinged {
                earliest(self.last_heard + idle / 3);
            }
            earliest(self.last_heard + idle);
        }
        next
    }

    /// Whether the next deadline moved earlier than [`poll_timeout`](Self::poll_timeout) last
    /// said (a handshake completed, a ping answered, a rate pause, a close); clears it. Every
    /// other change only moves deadlines later, so a loop that keeps one deadline per session
    /// in a heap needs to ask `poll_timeout` again only when this is true (a deadline that
    /// comes too early finds nothing due).
    pub fn take_deadline_moved_earlier(&mut self) -> bool {
        std::mem::take(&mut self.deadline_earlier)
    }

    /// The next thing the loop must act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        if std::mem::take(&mut self.read_again) {
            return Some(Event::ReadAgain);
        }
        if let Some(expiry) = self.expiry.take() {
            return Some(Event::Expired(self.violation_of(expiry)));
        }
        std::mem::take(&mut self.finished).then_some(Event::Finished)
    }
}

/// How much of a partly written frame is left at the front of `out` once its first `written`
/// bytes are gone, given `partial` bytes of one were left before. `out` holds whole
/// length-prefixed frames past `partial`.
pub(crate) fn partial_after_write(out: &[u8], partial: usize, written: usize) -> usize {
    if written < partial {
        return partial - written;
    }
    let mut at = partial;
    while at < written {
        let len = u32::from_le_bytes(out[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 4 + len;
    }
    at - written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{encode_invoke, encode_preface};
    use bytes::Bytes;

    fn config() -> SessionConfig {
        SessionConfig {
            max_frame: 1 << 16,
            max_output: 1 << 20,
            pause_reading_above: Some(64 * 1024),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            rate: RateLimit::UNLIMITED,
            max_inflight: 4,
        }
    }

    /// A client and a server session joined by an in-memory pipe each way, on a fake clock.
    struct Pair {
        client: Session,
        server: Session,
        now: Instant,
    }

    impl Pair {
        fn new(server_config: SessionConfig) -> Pair {
            let now = Instant::now();
            // The client never pings here: the server's liveness is what the tests watch.
            let quiet_client = SessionConfig {
                idle_timeout: Duration::ZERO,
                ..config()
            };
            let mut client = Session::new(Role::Client, Arc::new(quiet_client), now);
            let server = Session::new(Role::Server, Arc::new(server_config), now);
            let mut hello = BytesMut::new();
            encode_preface(&mut hello);
            Frame::Hello {
                place: String::new(),
                token: Bytes::new(),
            }
            .encode(&mut hello);
            client.out.extend_from_slice(&hello);
            Pair {
                client,
                server,
                now,
            }
        }

        /// Moves every byte each side has to send to the other, `limit` bytes at most per
        /// direction (a slow network, or a reader that does not read).
        fn pump(&mut self, limit: usize) {
            let now = self.now;
            transfer(&mut self.client, &mut self.server, limit, now);
            transfer(&mut self.server, &mut self.client, limit, now);
        }

        fn frames(session: &mut Session, now: Instant) -> Vec<Result<Frame, Violation>> {
            let mut out = Vec::new();
            loop {
                match session.poll_frame(now) {
                    Ok(Some(f)) => out.push(Ok(f)),
                    Ok(None) => return out,
                    Err(v) => {
                        out.push(Err(v));
                        return out;
                    }
                }
            }
        }

        /// Completes the handshake: the server accepts and welcomes.
        fn open(server_config: SessionConfig) -> Pair {
            let mut pair = Pair::new(server_config);
            pair.pump(usize::MAX);
            let got = Pair::frames(&mut pair.server, pair.now);
            assert!(matches!(got[..], [Ok(Frame::Hello { .. })]), "{got:?}");
            pair.server.accept();
            let now = pair.now;
            pair.server
                .send(
                    &Frame::Welcome {
                        player: 7,
                        max_frame: 1 << 16,
                    },
                    now,
                )
                .unwrap();
            pair.pump(usize::MAX);
            let got = Pair::frames(&mut pair.client, now);
            assert!(matches!(got[..], [Ok(Frame::Welcome { player: 7, .. })]));
            pair.client.accept();
            pair
        }

        fn call(&mut self, id: u64) {
            let mut out = BytesMut::new();
            encode_invoke(&mut out, id, "Echo", &[], 8).unwrap();
            let now = self.now;
            self.client.send_bytes(&out, now).unwrap();
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            let now = self.now;
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
        }
    }

    /// Moves up to `limit` bytes of `from`'s output into `to`, if `to` reads.
    fn transfer(from: &mut Session, to: &mut Session, limit: usize, now: Instant) {
        let n = from.poll_transmit().len().min(limit);
        if n > 0 && to.wants_read() {
            let bytes = from.poll_transmit()[..n].to_vec();
            from.handle_written(n, now);
            to.handle_bytes(&bytes, now);
        }
    }

    fn events(session: &mut Session) -> Vec<Event> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    #[test]
    fn a_handshake_then_calls_and_answers_flow_both_ways() {
        let mut p = Pair::open(config());
        assert!(p.server.is_welcomed() && p.client.is_welcomed());
        p.call(1);
        p.pump(usize::MAX);
        let got = Pair::frames(&mut p.server, p.now);
        assert!(matches!(got[..], [Ok(Frame::Invoke { call: 1, .. })]));
        assert_eq!(p.server.inflight(), 1);
        let now = p.now;
        p.server
            .send(
                &Frame::Result {
                    call: 1,
                    values: Bytes::from_static(&[0]),
                },
                now,
            )
            .unwrap();
        p.server.answered();
        p.pump(usize::MAX);
        let got = Pair::frames(&mut p.client, p.now);
        assert!(matches!(got[..], [Ok(Frame::Result { call: 1, .. })]));
        assert_eq!(p.server.inflight(), 0);
    }

    #[test]
    fn a_handshake_not_completed_in_time_expires() {
        let mut p = Pair::new(config());
        assert_eq!(
            p.server.poll_timeout(),
            Some(p.now + Duration::from_secs(10))
        );
        p.advance(Duration::from_secs(9));
        assert_eq!(events(&mut p.server), vec![]);
        p.advance(Duration::from_secs(1));
        match &events(&mut p.server)[..] {
            [Event::Expired(v)] => {
                assert_eq!(v.code, GoodbyeCode::Timeout);
                assert!(v.reason.starts_with("handshake not completed"), "{v:?}");
            }
            other => panic!("{other:?}"),
        }
        // Reported once, until the owner closes it.
        p.advance(Duration::from_secs(1));
        assert_eq!(events(&mut p.server), vec![]);
    }

    #[test]
    fn a_quiet_peer_is_pinged_then_cut_and_any_byte_proves_it_alive() {
        let mut p = Pair::open(config());
        p.advance(Duration::from_secs(20));
        // The server pinged; the client answers.
        p.pump(usize::MAX);
        let got = Pair::frames(&mut p.client, p.now);
        assert!(matches!(got[..], [Ok(Frame::Ping(0))]), "{got:?}");
        let now = p.now;
        p.client.send(&Frame::Pong(0), now).unwrap();
        p.pump(usize::MAX);
        let got = Pair::frames(&mut p.server, p.now);
        assert!(got.contains(&Ok(Frame::Pong(0))), "{got:?}");
        // Heard from at 20 s: not cut at 60 s, cut at 80 s of silence after it.
        p.advance(Duration::from_secs(40));
        p.pump(usize::MAX); // the second ping, unanswered
        assert_eq!(events(&mut p.server), vec![]);
        p.advance(Duration::from_secs(20));
        match &events(&mut p.server)[..] {
            [Event::Expired(v)] => assert!(v.reason.starts_with("nothing heard"), "{v:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_peer_whose_answers_pile_up_is_not_read_then_read_again_as_they_drain() {
        let mut p = Pair::open(config());
        let now = p.now;
        // 70 KiB of answers the client does not read.
        p.server.send_bytes(&frame_of(70 * 1024), now).unwrap();
        assert!(!p.server.wants_read());
        // The client takes 30 KiB: 40 KiB left, still above half the threshold (32 KiB).
        p.server.handle_written(30 * 1024, now);
        assert!(!p.server.wants_read());
        assert_eq!(events(&mut p.server), vec![]);
        let rest = p.server.pending_output();
        p.server.handle_written(rest, now);
        assert!(p.server.wants_read());
        assert_eq!(events(&mut p.server), vec![Event::ReadAgain]);
    }

    #[test]
    fn a_peer_that_takes_no_output_for_the_idle_timeout_is_cut_and_the_bound_is_a_violation() {
        let mut p = Pair::open(config());
        let now = p.now;
        p.server.send_bytes(&frame_of(1000), now).unwrap();
        // The client keeps talking but never reads.
        for _ in 0..6 {
            p.now += Duration::from_secs(10);
            let now = p.now;
            p.server.handle_bytes(&ping_bytes(), now);
            let _ = Pair::frames(&mut p.server, now);
            p.server.handle_timeout(now);
        }
        match &events(&mut p.server)[..] {
            [Event::Expired(v)] => {
                assert_eq!(v.code, GoodbyeCode::Limit);
                assert!(v.reason.starts_with("not reading"), "{v:?}");
            }
            other => panic!("{other:?}"),
        }
        let big = frame_of(2 << 20);
        let err = p.server.send_bytes(&big, p.now).unwrap_err();
        assert_eq!(err.code, GoodbyeCode::Limit);
        assert!(err.reason.starts_with("output buffer over"), "{err:?}");
    }

    #[test]
    fn calls_past_the_in_flight_bound_and_garbage_are_violations() {
        let mut p = Pair::open(config());
        for id in 1..=5 {
            p.call(id);
        }
        p.pump(usize::MAX);
        let got = Pair::frames(&mut p.server, p.now);
        assert_eq!(got.len(), 5);
        assert!(got[..4].iter().all(|f| f.is_ok()));
        let err = got[4].clone().unwrap_err();
        assert_eq!(err.reason, "more than 4 calls in flight");

        let mut p = Pair::open(config());
        let now = p.now;
        p.server
            .handle_bytes(&[9, 0, 0, 0, 0xee, 1, 2, 3, 4, 5, 6, 7, 8], now);
        let got = Pair::frames(&mut p.server, now);
        assert_eq!(got[0].clone().unwrap_err().code, GoodbyeCode::ProtocolError);
    }

    #[test]
    fn a_rate_over_the_limit_pauses_reading_until_its_timeout() {
        let limited = SessionConfig {
            rate: RateLimit {
                per_sec: 100,
                burst: 2,
                cut_after: Duration::from_secs(5),
            },
            max_inflight: 100,
            ..config()
        };
        let mut p = Pair::open(limited);
        for id in 1..=5 {
            p.call(id);
        }
        p.pump(usize::MAX);
        assert_eq!(Pair::frames(&mut p.server, p.now).len(), 2, "the burst");
        assert!(!p.server.wants_read());
        let resume = p.server.poll_timeout().unwrap();
        assert_eq!(resume, p.now + Duration::from_millis(10));
        p.advance(Duration::from_millis(10));
        assert_eq!(events(&mut p.server), vec![Event::ReadAgain]);
        assert!(p.server.wants_read());
        assert_eq!(Pair::frames(&mut p.server, p.now).len(), 1);
    }

    #[test]
    fn a_close_for_a_violation_drops_unstarted_output_and_delivers_the_goodbye() {
        let mut p = Pair::open(config());
        let now = p.now;
        // One answer partly written, two not started.
        for _ in 0..3 {
            p.server.send_bytes(&frame_of(100), now).unwrap();
        }
        transfer(&mut p.server, &mut p.client, 50, now);
        p.server.close(GoodbyeCode::Limit, "too much", now);
        assert!(p.server.is_closing() && !p.server.is_welcomed());
        // Output: the rest of the partial frame, then the goodbye; a peer that closes its side
        // now (half-closed) may still read it.
        assert!(!p.server.handle_peer_closed());
        // 63 bytes left of the 113-byte frame, then the goodbye: length, type, code, reason.
        assert_eq!(p.server.pending_output(), 63 + 4 + 1 + 1 + 8);
        assert!(
            !p.server.poll_shutdown(),
            "not before the goodbye is written"
        );
        p.pump(usize::MAX);
        assert!(p.server.poll_shutdown(), "now the FIN");
        assert!(!p.server.poll_shutdown(), "once");
        let got = Pair::frames(&mut p.client, p.now);
        let last = got.last().unwrap().clone().unwrap();
        assert_eq!(
            last,
            Frame::Goodbye {
                code: GoodbyeCode::Limit,
                reason: "too much".into()
            }
        );
        // Input is discarded now, and nothing more is yielded or queued.
        p.call(99);
        p.pump(usize::MAX);
        assert!(Pair::frames(&mut p.server, p.now).is_empty());
        assert!(p.server.send(&Frame::Ping(1), p.now).is_ok());
        assert_eq!(p.server.pending_output(), 0);
        // Written: the peer closing its side ends the connection.
        assert!(p.server.handle_peer_closed());
    }

    #[test]
    fn a_closing_peer_that_never_closes_is_finished_after_the_grace() {
        let mut p = Pair::open(config());
        let now = p.now;
        p.server.close(GoodbyeCode::Kicked, "bye", now);
        assert_eq!(p.server.poll_timeout(), Some(now + CLOSING_GRACE));
        p.advance(CLOSING_GRACE - Duration::from_millis(1));
        assert_eq!(events(&mut p.server), vec![]);
        p.advance(Duration::from_millis(1));
        assert_eq!(events(&mut p.server), vec![Event::Finished]);
    }

    #[test]
    fn a_refusal_is_the_last_frame_the_peer_gets() {
        let mut p = Pair::new(config());
        p.pump(usize::MAX);
        let _ = Pair::frames(&mut p.server, p.now);
        let now = p.now;
        p.server.refuse("server full", now);
        p.pump(usize::MAX);
        let got = Pair::frames(&mut p.client, now);
        assert!(
            matches!(&got[..], [Ok(Frame::Refused { reason })] if reason == "server full"),
            "{got:?}"
        );
        assert!(p.server.poll_shutdown());
    }

    /// A RESULT frame of 4 + 1 + 8 + `values` bytes.
    fn frame_of(values: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        Frame::Result {
            call: 1,
            values: Bytes::from(vec![0u8; values]),
        }
        .encode(&mut out);
        out.to_vec()
    }

    fn ping_bytes() -> Vec<u8> {
        let mut out = BytesMut::new();
        Frame::Ping(3).encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn the_partly_written_frame_is_tracked_across_writes() {
        let frame = |body: usize| {
            let mut f = (body as u32).to_le_bytes().to_vec();
            f.resize(4 + body, 0xab);
            f
        };
        // Frames of 4 + 10, 4 + 0 and 4 + 6 bytes: boundaries at 14, 18 and 28.
        let out: Vec<u8> = [frame(10), frame(0), frame(6)].concat();
        assert_eq!(partial_after_write(&out, 0, 0), 0);
        assert_eq!(
            partial_after_write(&out, 0, 3),
            11,
            "inside the first header"
        );
        assert_eq!(partial_after_write(&out, 0, 14), 0, "exactly one frame");
        assert_eq!(partial_after_write(&out, 0, 15), 3);
        assert_eq!(partial_after_write(&out, 0, 20), 8);
        assert_eq!(partial_after_write(&out, 0, 28), 0, "everything");
        assert_eq!(partial_after_write(&out[3..], 11, 5), 6);
        assert_eq!(partial_after_write(&out[3..], 11, 11), 0);
        assert_eq!(partial_after_write(&out[3..], 11, 12), 3);
    }
}
