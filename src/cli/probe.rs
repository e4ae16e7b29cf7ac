//! `remotefn probe TARGET`: a health check for containers and orchestrators (Docker's
//! HEALTHCHECK, a Kubernetes exec probe). Exits 0 when the target is alive, 1 when it is not,
//! saying why.
//!
//! A player address is alive when its event loop answers a handshake, whether it welcomes the
//! probe or refuses it (a relay refuses a place no game server serves; a server may refuse
//! the probe's empty token): either answer came from the loop that serves players. A metrics
//! URL is alive when it answers 200.

use super::tls::ClientTlsArgs;
use clap::Args;
use remotefn::{Client, ClientConfig, Error};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// A server's or relay's player address (127.0.0.1:7878), or a metrics URL
    /// (http://127.0.0.1:9187/metrics).
    target: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3_000)]
    timeout_ms: u64,
    /// Place to ask a relay for.
    #[arg(long, default_value = "")]
    place: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

pub fn run(args: ProbeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    if let Some(rest) = args.target.strip_prefix("http://") {
        let status = http_status(rest, timeout)?;
        println!("alive: {} answered {status}", args.target);
        return Ok(());
    }
    let config = ClientConfig {
        place: args.place,
        connect_timeout: timeout,
        tls: args.tls.config(),
        ..ClientConfig::default()
    };
    match Client::connect(args.target.as_str(), config) {
        Ok(client) => {
            println!("alive: welcomed as player {}", client.player_id());
            Ok(())
        }
        Err(Error::Rejected(reason)) => {
            println!("alive: the handshake was answered with a refusal ({reason})");
            Ok(())
        }
        Err(e) => Err(format!("not alive: {}: {e}", args.target).into()),
    }
}

/// `GET` of an `http://` URL without its scheme (`host:port/path`): Ok with the status line's
/// code when it is 200.
fn http_status(url: &str, timeout: Duration) -> Result<u16, Box<dyn std::error::Error>> {
    let (authority, path) = match url.find('/') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, "/"),
    };
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("not alive: {authority} resolves to no address"))?;
    let mut socket = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("not alive: cannot connect to {authority}: {e}"))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    write!(
        socket,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    // The status line is all a probe needs; the rest of the body is not read.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        match socket.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(format!("not alive: {authority} did not answer: {e}").into()),
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not alive: {authority} answered no HTTP status: {line:?}"))?;
    if code == 200 {
        Ok(code)
    } else {
        Err(format!("not alive: {authority}{path} answered {code}").into())
    }
}
