//! One read or write on a non-blocking, edge-triggered socket, classified: the steps the server
//! reactor and the relay loop both take, so what counts as "drained" is decided in one place.

use std::io::{self, Read, Write};

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
