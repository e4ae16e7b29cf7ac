//! `remotefn bench --handshakes`: new connections per second, each from connect to WELCOME
//! and closed at once, over plaintext, full TLS handshakes, or resumed ones.

use remotefn::proto::{self, Connection, Frame, Role};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which handshakes to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Handshakes {
    /// Plaintext: TCP and the remotefn handshake.
    Plain,
    /// A full TLS handshake each time (no session to resume).
    Full,
    /// TLS, resuming the session of the thread's previous connection.
    Resumed,
}

/// What a run measured.
pub struct Rate {
    pub per_sec: f64,
    /// Of the TLS handshakes, how many resumed.
    pub resumed: u64,
    pub failed: u64,
}

/// Connects, says HELLO and waits for the WELCOME, over `tls` if given; whether TLS resumed.
fn one(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> std::io::Result<bool> {
    let socket = TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut hello = bytes::BytesMut::new();
    proto::encode_preface(&mut hello);
    Frame::Hello {
        place: String::new(),
        token: bytes::Bytes::new(),
    }
    .encode(&mut hello);
    let mut conn = Connection::new(Role::Client, proto::DEFAULT_MAX_FRAME);
    let mut buf = [0u8; 4096];
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut stream: Box<dyn ReadWrite> = match tls {
        Some(config) => {
            let client = rustls::ClientConnection::new(config.clone(), name)
                .map_err(std::io::Error::other)?;
            Box::new(rustls::StreamOwned::new(client, socket))
        }
        None => Box::new(socket),
    };
    stream.write_all(&hello)?;
    stream.flush()?;
    loop {
        match conn.poll_frame() {
            Ok(Some(Frame::Welcome { .. })) => return Ok(stream.resumed()),
            Ok(Some(other)) => {
                return Err(std::io::Error::other(format!("{:?}", other.frame_type())))
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e)),
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        conn.handle_bytes(&buf[..n]);
    }
}

trait ReadWrite: Read + Write {
    fn resumed(&self) -> bool {
        false
    }
}

impl ReadWrite for TcpStream {}

impl ReadWrite for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }
}

/// Makes handshakes of `kind` from `threads` threads for `duration`.
pub fn measure(
    addr: SocketAddr,
    kind: Handshakes,
    tls: Option<rustls::ClientConfig>,
    threads: usize,
    duration: Duration,
) -> Rate {
    let stop = Arc::new(AtomicBool::new(false));
    let (done, resumed, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let mut config = tls.clone();
            if let Some(c) = &mut config {
                c.resumption = match kind {
                    Handshakes::Resumed => rustls::client::Resumption::in_memory_sessions(4),
                    _ => rustls::client::Resumption::disabled(),
                };
            }
            let config = config.map(Arc::new);
            let (stop, done, resumed, failed) =
                (stop.clone(), done.clone(), resumed.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match one(addr, config.as_ref()) {
                        Ok(r) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            resumed.fetch_add(u64::from(r), Ordering::Relaxed);
                        }
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("bench: a handshake failed: {e}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    Rate {
        per_sec: done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        resumed: resumed.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    }
}
