//! A player speaking the protocol by hand, for tests that need to misbehave or to hold many
//! connections without a thread each.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use remotefn::proto::{self, Connection, Frame, Role};
use remotefn::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A player speaking the protocol by hand over a blocking socket.
pub struct RawPlayer {
    pub socket: TcpStream,
    pub proto: Connection,
}

impl RawPlayer {
    pub fn connect(addr: SocketAddr) -> RawPlayer {
        let socket = TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawPlayer {
            socket,
            proto: Connection::new(Role::Client, 1 << 20),
        }
    }

    pub fn handshake(addr: SocketAddr) -> (RawPlayer, u64) {
        RawPlayer::handshake_to(addr, "")
    }

    /// Completes the handshake asking for `place` (a relay's place; empty for a server).
    pub fn handshake_to(addr: SocketAddr, place: &str) -> (RawPlayer, u64) {
        let mut p = RawPlayer::connect(addr);
        p.hello_to(place);
        let player = p.welcome();
        (p, player)
    }

    /// Sends the preface and a HELLO with no place and no token.
    pub fn hello(&mut self) {
        self.hello_to("");
    }

    /// Sends the preface and a HELLO for `place`, with no token.
    pub fn hello_to(&mut self, place: &str) {
        let mut out = BytesMut::new();
        proto::encode_preface(&mut out);
        Frame::Hello {
            place: place.to_owned(),
            token: Bytes::new(),
        }
        .encode(&mut out);
        self.socket.write_all(&out).unwrap();
    }

    /// Waits for the WELCOME; the player id it gives.
    pub fn welcome(&mut self) -> u64 {
        match self.next_frame() {
            Some(Frame::Welcome { player, .. }) => player,
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).unwrap();
    }

    /// Calls `name` (call id 1) in a well-formed frame whose arguments do not decode.
    pub fn call_with_undecodable_args(&mut self, name: &'static str) {
        let mut out = BytesMut::new();
        Frame::Invoke {
            call: 1,
            name: Bytes::from_static(name.as_bytes()),
            args: Bytes::from_static(&[5, 0x0b, 0xff]),
        }
        .encode(&mut out);
        self.send(&out);
    }

    /// Pipes `count` calls of `name(args)` (call ids 1 to `count`) without reading a single
    /// answer, giving up on the write after `patience` (a server that stops reading us stalls
    /// it; whether it did is for the caller to find out).
    pub fn call_without_reading(
        &mut self,
        count: u64,
        name: &str,
        args: &[Value],
        patience: Duration,
    ) {
        let mut calls = BytesMut::new();
        for call in 1..=count {
            proto::encode_invoke(&mut calls, call, name, args, 64).unwrap();
        }
        self.socket.set_write_timeout(Some(patience)).unwrap();
        let _ = self.socket.write_all(&calls);
    }

    /// Reads frames until the server closes the connection; the goodbye it sent, if any.
    pub fn goodbye(&mut self) -> Option<(proto::GoodbyeCode, String)> {
        let mut goodbye = None;
        while let Some(frame) = self.next_frame() {
            if let Frame::Goodbye { code, reason } = frame {
                goodbye = Some((code, reason));
            }
        }
        goodbye
    }

    /// Reads frames until the server's end of stream: the goodbye it sent, if any, and how the
    /// stream ended (an error, such as a reset, instead of a clean end).
    pub fn goodbye_and_end(
        &mut self,
    ) -> (Option<(proto::GoodbyeCode, String)>, std::io::Result<()>) {
        let mut goodbye = None;
        let mut buf = [0u8; 4096];
        loop {
            while let Some(frame) = self.proto.poll_frame().expect("server speaks the protocol") {
                if let Frame::Goodbye { code, reason } = frame {
                    goodbye = Some((code, reason));
                }
            }
            match self.socket.read(&mut buf) {
                Ok(0) => return (goodbye, Ok(())),
                Ok(n) => self.proto.handle_bytes(&buf[..n]),
                Err(e) => return (goodbye, Err(e)),
            }
        }
    }

    /// The next frame, or None once the server closed the connection.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = self.proto.poll_frame().expect("server speaks the protocol") {
                return Some(frame);
            }
            match self.socket.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.proto.handle_bytes(&buf[..n]),
            }
        }
    }
}

/// A TLS player that pipes calls and never reads their answers (see
/// [`RawPlayer::call_without_reading`]), through rustls over a blocking socket.
pub struct TlsFlooder {
    pub tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsFlooder {
    /// Connects to `addr`, trusting the CA in `ca` (PEM), for the name 127.0.0.1.
    pub fn connect(addr: SocketAddr, ca: &std::path::Path) -> TlsFlooder {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let socket = TcpStream::connect(addr).unwrap();
        TlsFlooder {
            tls: rustls::StreamOwned::new(conn, socket),
        }
    }

    /// Sends the preface, a HELLO and `count` calls of `Echo` with a 16 KiB buffer, reading
    /// nothing, giving up on the write after `patience`.
    pub fn flood(&mut self, count: u64, patience: Duration) {
        let mut out = BytesMut::new();
        proto::encode_preface(&mut out);
        Frame::Hello {
            place: String::new(),
            token: Bytes::new(),
        }
        .encode(&mut out);
        let big = [Value::buffer(vec![7u8; 16 * 1024])];
        for call in 1..=count {
            proto::encode_invoke(&mut out, call, "Echo", &big, 64).unwrap();
        }
        self.tls.sock.set_write_timeout(Some(patience)).unwrap();
        let _ = self.tls.write_all(&out);
    }
}
