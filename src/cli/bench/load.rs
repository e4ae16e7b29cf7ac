//! The closed-loop load generator: a few threads, each running its own mio loop over its share
//! of the connections. Each connection keeps `inflight` calls outstanding and sends the next as
//! soon as one is answered.

use bytes::{Buf, BufMut, BytesMut};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use remotefn::proto::{self, Connection, Frame, Role};
use remotefn::Value;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the server under load speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// remotefn: INVOKE "Echo" with one string argument of `payload` bytes.
    Remotefn,
    /// The baseline: a bare length-prefixed echo (u32 length, 8-byte id, payload).
    Echo,
    /// A Redis server (RESP): `PING`, answered `+PONG`, in order; `--target` names the server.
    Resp,
}

/// Phases, published by the coordinating thread.
pub const CONNECTING: u8 = 0;
pub const WARMUP: u8 = 1;
pub const MEASURING: u8 = 2;
pub const STOP: u8 = 3;

/// State shared between the coordinator and the generator threads.
#[derive(Default)]
pub struct Shared {
    pub phase: AtomicU8,
    pub connected: AtomicUsize,
    pub failed_connects: AtomicUsize,
    /// Players the server (or the network) disconnected.
    pub disconnected: AtomicUsize,
    /// Calls completed in the current phase (reset when measuring starts).
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

/// What one generator thread measured.
pub struct ThreadResult {
    pub latency_us: Histogram<u64>,
    pub calls: u64,
    pub errors: u64,
}

pub struct Spec {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub connections: usize,
    pub inflight: usize,
    pub payload: usize,
    pub place: String,
    /// Speak TLS (remotefn only), with this configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The server name the generator's TLS verifies: the target's IP address.
fn server_name(addr: SocketAddr) -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::IpAddress(addr.ip().into())
}

struct Conn {
    socket: TcpStream,
    proto: Connection,
    input: BytesMut,
    out: BytesMut,
    /// Send time of each in-flight slot; the slot is the low 16 bits of the call id.
    sent: Vec<Option<Instant>>,
    /// A protocol without call ids (RESP) answers in order: the slots, oldest first.
    in_order: std::collections::VecDeque<usize>,
    seq: u64,
    ready: bool,
    dead: bool,
    /// TLS between the socket and the protocol, when the load speaks it.
    tls: Option<rustls::ClientConnection>,
}

/// A request template: the encoded frame and where its 8-byte id sits (if it has one).
struct Template {
    frame: Vec<u8>,
    id_at: Option<usize>,
}

fn template(protocol: Protocol, payload: usize) -> Template {
    match protocol {
        Protocol::Remotefn => {
            let mut out = BytesMut::new();
            let arg = [Value::string(vec![b'x'; payload])];
            proto::encode_invoke(&mut out, 0, "Echo", &arg, 64).expect("encodable");
            // length (4) + type (1), then the call id.
            Template {
                frame: out.to_vec(),
                id_at: Some(5),
            }
        }
        Protocol::Echo => {
            let mut frame = Vec::with_capacity(12 + payload);
            frame.put_u32_le((8 + payload) as u32);
            frame.put_u64_le(0);
            frame.extend(std::iter::repeat_n(b'x', payload));
            Template {
                frame,
                id_at: Some(4),
            }
        }
        Protocol::Resp => Template {
            frame: b"PING\r\n".to_vec(),
            id_at: None,
        },
    }
}

impl Conn {
    /// The connection is over: count it once, as an error and as a disconnected player.
    fn die(&mut self, shared: &Shared, errors: &mut u64) {
        if !self.dead {
            self.dead = true;
            *errors += 1;
            shared.disconnected.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send(&mut self, t: &Template, slot: usize, now: Instant) {
        self.seq += 1;
        let id = (self.seq << 16) | slot as u64;
        let start = self.out.len();
        self.out.extend_from_slice(&t.frame);
        match t.id_at {
            Some(at) => self.out[start + at..start + at + 8].copy_from_slice(&id.to_le_bytes()),
            None => self.in_order.push_back(slot),
        }
        self.sent[slot] = Some(now);
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            if !self.out.is_empty() {
                tls.writer().write_all(&self.out)?;
                self.out.clear();
            }
            while tls.wants_write() {
                match tls.write_tls(&mut self.socket) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        while !self.out.is_empty() {
            match self.socket.write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Reads `socket` through `tls` until it is drained, handing the plaintext to `proto`; an
/// error when the connection ended or TLS failed. As the plaintext path, it takes a short
/// read for drained (edge-triggered readiness reports the next arrival) unless the event
/// also reported the end of the stream.
fn read_tls(
    tls: &mut rustls::ClientConnection,
    socket: &mut TcpStream,
    buf: &mut [u8],
    proto: &mut Connection,
    read_closed: bool,
) -> io::Result<()> {
    /// A reader that notes whether its last read returned less than was asked.
    struct Counted<'a>(&'a mut TcpStream, bool);
    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 = n < buf.len();
            Ok(n)
        }
    }
    loop {
        let mut counted = Counted(socket, false);
        let read = tls.read_tls(&mut counted);
        let drained = counted.1 && !read_closed;
        match read {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                tls.process_new_packets().map_err(io::Error::other)?;
                loop {
                    match tls.reader().read(buf) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => proto.handle_bytes(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                if drained {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Runs one generator thread over `count` connections until the phase is STOP.
pub fn run_thread(spec: &Spec, shared: &Arc<Shared>) -> ThreadResult {
    let count = spec.connections;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let t = template(spec.protocol, spec.payload);
    let mut poll = Poll::new().expect("poll");
    let mut conns: Vec<Conn> = Vec::with_capacity(count);
    for i in 0..count {
        let socket = match std::net::TcpStream::connect(spec.addr) {
            Ok(s) => s,
            Err(e) => {
                if shared.failed_connects.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("bench: connect failed: {e}");
                }
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        socket.set_nonblocking(true).expect("nonblocking");
        let mut socket = TcpStream::from_std(socket);
        poll.registry()
            .register(
                &mut socket,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register");
        let mut out = BytesMut::new();
        let ready = match spec.protocol {
            Protocol::Remotefn => {
                proto::encode_preface(&mut out);
                Frame::Hello {
                    place: spec.place.clone(),
                    token: bytes::Bytes::new(),
                }
                .encode(&mut out);
                false
            }
            Protocol::Echo | Protocol::Resp => {
                shared.connected.fetch_add(1, Ordering::Relaxed);
                true
            }
        };
        conns.push(Conn {
            socket,
            proto: Connection::new(Role::Client, proto::DEFAULT_MAX_FRAME),
            input: BytesMut::new(),
            out,
            sent: vec![None; spec.inflight],
            in_order: std::collections::VecDeque::with_capacity(spec.inflight),
            seq: 0,
            ready,
            dead: false,
            tls: spec.tls.clone().map(|config| {
                let mut tls = rustls::ClientConnection::new(config, server_name(spec.addr))
                    .expect("a TLS client");
                tls.set_buffer_limit(None);
                tls
            }),
        });
    }
    for c in &mut conns {
        let _ = c.flush();
    }

    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 64 * 1024];
    let mut started = false;
    // Only calls answered while measuring count in the result; `progress` feeds the bar.
    let (mut calls, mut errors, mut progress) = (0u64, 0u64, 0u64);
    let mut dirty: Vec<usize> = Vec::new();
    // Answers cut from one connection's input, reused across events.
    let mut answered: Vec<(u64, bool)> = Vec::new();
    let mut was_measuring = false;
    loop {
        let phase = shared.phase.load(Ordering::Acquire);
        if phase == STOP {
            break;
        }
        let measuring = phase == MEASURING;
        if measuring && !was_measuring {
            calls = 0;
            errors = 0;
            hist.reset();
        }
        was_measuring = measuring;
        if phase >= WARMUP && !started {
            started = true;
            let now = Instant::now();
            for (i, c) in conns.iter_mut().enumerate() {
                if c.ready {
                    for slot in 0..spec.inflight {
                        c.send(&t, slot, now);
                    }
                    dirty.push(i);
                }
            }
        }
        let _ = poll.poll(&mut events, Some(Duration::from_millis(5)));
        for event in events.iter() {
            let i = event.token().0;
            let c = &mut conns[i];
            if c.dead {
                continue;
            }
            if event.is_writable() {
                dirty.push(i);
            }
            if !(event.is_readable() || event.is_read_closed()) {
                continue;
            }
            if let Some(tls) = &mut c.tls {
                match read_tls(
                    tls,
                    &mut c.socket,
                    &mut buf,
                    &mut c.proto,
                    event.is_read_closed(),
                ) {
                    Ok(()) => {}
                    Err(_) => c.die(shared, &mut errors),
                }
            }
            while c.tls.is_none() {
                match c.socket.read(&mut buf) {
                    Ok(0) => {
                        c.die(shared, &mut errors);
                        break;
                    }
                    Ok(n) => {
                        match spec.protocol {
                            Protocol::Remotefn => c.proto.handle_bytes(&buf[..n]),
                            Protocol::Echo | Protocol::Resp => c.input.extend_from_slice(&buf[..n]),
                        }
                        if n < buf.len() && !event.is_read_closed() {
                            break; // drained; edge-triggered epoll reports the next arrival
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.die(shared, &mut errors);
                        break;
                    }
                }
            }
            let now = Instant::now();
            // Each answer: record its latency and send the next call in its slot.
            match spec.protocol {
                Protocol::Remotefn => loop {
                    match c.proto.poll_frame() {
                        Ok(Some(Frame::Welcome { .. })) => {
                            c.ready = true;
                            shared.connected.fetch_add(1, Ordering::Relaxed);
                            if started {
                                for slot in 0..spec.inflight {
                                    c.send(&t, slot, now);
                                }
                            }
                        }
                        Ok(Some(Frame::Result { call, .. })) => answered.push((call, true)),
                        Ok(Some(Frame::Error { call, .. })) => answered.push((call, false)),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => {
                            c.die(shared, &mut errors);
                            break;
                        }
                    }
                },
                Protocol::Echo => {
                    while c.input.len() >= 12 {
                        let len =
                            u32::from_le_bytes(c.input[..4].try_into().expect("4 bytes")) as usize;
                        if c.input.len() < 4 + len {
                            break;
                        }
                        let id = u64::from_le_bytes(c.input[4..12].try_into().expect("8 bytes"));
                        c.input.advance(4 + len);
                        answered.push((id, true));
                    }
                }
                Protocol::Resp => {
                    // One line per answer: "+PONG" or an "-ERR ..." error.
                    while let Some(end) = c.input.windows(2).position(|w| w == b"\r\n") {
                        let ok = c.input[0] == b'+';
                        c.input.advance(end + 2);
                        match c.in_order.pop_front() {
                            Some(slot) => answered.push((slot as u64, ok)),
                            None => c.die(shared, &mut errors),
                        }
                    }
                }
            }
            for (id, ok) in answered.drain(..) {
                let slot = (id & 0xffff) as usize;
                if let Some(sent) = c.sent.get_mut(slot).and_then(Option::take) {
                    progress += 1;
                    if !ok {
                        errors += 1;
                    } else if measuring {
                        calls += 1;
                        let us = now.duration_since(sent).as_micros().max(1) as u64;
                        let _ = hist.record(us.min(60_000_000));
                    }
                    c.send(&t, slot, now);
                }
            }
            dirty.push(i);
        }
        for &i in &dirty {
            let c = &mut conns[i];
            if !c.dead && c.flush().is_err() {
                c.die(shared, &mut errors);
            }
        }
        dirty.clear();
        shared
            .completed
            .fetch_add(std::mem::take(&mut progress), Ordering::Relaxed);
    }
    shared.errors.fetch_add(errors, Ordering::Relaxed);
    ThreadResult {
        latency_us: hist,
        calls,
        errors,
    }
}
