//! The baseline: a minimal mio server speaking a bare length-prefixed echo, with the same
//! worker-thread hop as remotefn (reactor → worker → reactor) but no protocol, values,
//! call slots or handler registry. What it sustains is the practical limit of this design on
//! a given machine; `remotefn bench --protocol echo` drives it with the same generator.

use bytes::{Buf, Bytes, BytesMut};
use crossbeam_channel::{unbounded, Receiver, Sender};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// Largest frame accepted, as remotefn's default.
const MAX_FRAME: usize = 4 * 1024 * 1024;

struct Conn {
    socket: mio::net::TcpStream,
    serial: u64,
    input: BytesMut,
    out: BytesMut,
}

/// A frame for a worker, and the connection it came from.
struct Job {
    key: usize,
    serial: u64,
    frame: Bytes,
}

/// Serves forever on `listen` with `workers` echo threads; prints the bound address first.
pub fn serve(listen: &str, workers: usize) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let std_listener = remotefn::__bench::bind_listener(listen)?;
    std_listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(std_listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let wake_pending = Arc::new(AtomicBool::new(false));
    println!("baseline echo serving on {}", listener.local_addr()?);

    let (job_tx, job_rx): (Sender<Job>, Receiver<Job>) = unbounded();
    let (done_tx, done_rx): (Sender<Job>, Receiver<Job>) = unbounded();
    for _ in 0..workers.max(1) {
        let (rx, tx, waker, pending) = (
            job_rx.clone(),
            done_tx.clone(),
            waker.clone(),
            wake_pending.clone(),
        );
        std::thread::spawn(move || {
            for job in rx {
                let _ = tx.send(job);
                if !pending.swap(true, Ordering::AcqRel) {
                    let _ = waker.wake();
                }
            }
        });
    }

    let mut conns: Slab<Conn> = Slab::new();
    let mut serial = 0u64;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut dirty: Vec<usize> = Vec::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut socket, _)) => {
                            let _ = socket.set_nodelay(true);
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut socket,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            serial += 1;
                            entry.insert(Conn {
                                socket,
                                serial,
                                input: BytesMut::new(),
                                out: BytesMut::new(),
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                },
                WAKER => {
                    wake_pending.store(false, Ordering::Release);
                    while let Ok(job) = done_rx.try_recv() {
                        if let Some(c) = conns.get_mut(job.key).filter(|c| c.serial == job.serial) {
                            c.out.extend_from_slice(&job.frame);
                            dirty.push(job.key);
                        }
                    }
                }
                Token(key) => {
                    if event.is_writable() {
                        dirty.push(key);
                    }
                    let Some(c) = conns.get_mut(key) else {
                        continue;
                    };
                    let mut closed = false;
                    loop {
                        match c.socket.read(&mut buf) {
                            Ok(0) => {
                                closed = true;
                                break;
                            }
                            Ok(n) => {
                                c.input.extend_from_slice(&buf[..n]);
                                if n < buf.len() {
                                    break; // drained; edge-triggered epoll reports the next arrival
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    while c.input.len() >= 4 {
                        let len =
                            u32::from_le_bytes(c.input[..4].try_into().expect("4 bytes")) as usize;
                        if len > MAX_FRAME {
                            closed = true;
                            break;
                        }
                        if c.input.len() < 4 + len {
                            break;
                        }
                        let frame = c.input.split_to(4 + len).freeze();
                        let _ = job_tx.send(Job {
                            key,
                            serial: c.serial,
                            frame,
                        });
                    }
                    if closed {
                        let mut c = conns.remove(key);
                        let _ = poll.registry().deregister(&mut c.socket);
                    }
                }
            }
        }
        for key in dirty.drain(..) {
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            while !c.out.is_empty() {
                match c.socket.write(&c.out) {
                    Ok(n) if n > 0 => c.out.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    _ => break,
                }
            }
        }
    }
}
