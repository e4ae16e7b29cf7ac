//! One read or write on a non-blocking, edge-triggered socket, classified, so what counts as
//! "drained" is decided in one place; and the listening sockets every listener is bound with.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

/// Connections the kernel may hold complete but not yet accepted, per listener (Linux caps it
/// at `net.core.somaxconn`, 4096 by default). When every player of a restarted server
/// reconnects at once, a full queue drops their SYNs, and each retries only after a second,
/// then three, then seven; std and mio listen with 128.
pub(crate) const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening TCP socket to the first of `addrs` that works, with `LISTEN_BACKLOG`
/// (and `SO_REUSEADDR` on Unix, as std does, so a restarted server can rebind at once).
pub fn bind_listener(addrs: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for addr in addrs.to_socket_addrs()? {
        match bind_one(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The outcome of one read or write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `n` bytes moved; `more`: the socket may have more now (a full read, or a read whose
    /// event also reported the end of the stream; a partial write).
    Moved { n: usize, more: bool },
    /// The peer closed its side (a read of 0), or the socket takes no more (a write of 0).
    End,
    /// Nothing to do until the next readiness event.
    Blocked,
    /// The connection failed; why, in words.
    Failed(String),
}

/// Reads into `buf`. `peer_closed`: the event also reported the end of the stream, so a short
/// read must not be taken to have drained the socket (the end would never raise another
/// event). Otherwise a short read did drain it: edge-triggered readiness reports the next
/// arrival, and the read that would say `WouldBlock` is a system call saved per wake-up.
pub(crate) fn read_step(socket: &mut impl Read, buf: &mut [u8], peer_closed: bool) -> Step {
    loop {
        return match socket.read(buf) {
            Ok(0) if !buf.is_empty() => Step::End,
            Ok(n) => Step::Moved {
                n,
                more: n == buf.len() || peer_closed,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Step::Failed(format!("read failed: {e}")),
        };
    }
}

/// Writes the front of `out`.
pub(crate) fn write_step(socket: &mut impl Write, out: &[u8]) -> Step {
    loop {
        return match socket.write(out) {
            Ok(0) if !out.is_empty() => Step::End,
            Ok(n) => Step::Moved {
                n,
                more: n < out.len(),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Step::Failed(format!("write failed: {e}")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thousand players arriving while the server is not accepting (busy, or just restarted)
    /// wait in the listen queue instead of having their SYNs dropped (with a backlog of 128, the
    /// 130th connect waits a second for its retry and the queue is still full). Needs
    /// `net.core.somaxconn` >= 1000, Linux's default being 4096.
    #[test]
    fn a_burst_of_connections_waits_in_the_listen_queue() {
        let listener = bind_listener("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let burst: Vec<std::net::TcpStream> = (0..1000)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connection {i} was not queued: {e}"))
            })
            .collect();
        assert_eq!(burst.len(), 1000);
    }

    /// A socket that hands out scripted results.
    struct Scripted(Vec<io::Result<usize>>);

    impl Read for Scripted {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            self.0.remove(0)
        }
    }

    fn read(results: Vec<io::Result<usize>>, peer_closed: bool) -> Step {
        read_step(&mut Scripted(results), &mut [0u8; 8], peer_closed)
    }

    #[test]
    fn a_short_read_drains_the_socket_unless_the_peer_also_closed() {
        assert_eq!(read(vec![Ok(8)], false), Step::Moved { n: 8, more: true });
        assert_eq!(read(vec![Ok(3)], false), Step::Moved { n: 3, more: false });
        assert_eq!(read(vec![Ok(3)], true), Step::Moved { n: 3, more: true });
        assert_eq!(read(vec![Ok(0)], true), Step::End);
    }

    #[test]
    fn interruptions_are_retried_and_failures_say_why() {
        let interrupted = || Err(io::Error::from(io::ErrorKind::Interrupted));
        assert_eq!(
            read(vec![interrupted(), Ok(2)], false),
            Step::Moved { n: 2, more: false }
        );
        let would_block = Err(io::Error::from(io::ErrorKind::WouldBlock));
        assert_eq!(read(vec![would_block], false), Step::Blocked);
        let reset = Err(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(
            matches!(read(vec![reset], false), Step::Failed(why) if why.starts_with("read failed"))
        );
    }
}
