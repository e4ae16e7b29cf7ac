//! A small HTTP endpoint serving `GET /metrics` in the Prometheus text format, on a thread of
//! its own (a scrape never touches an event loop). Shared by the relay and the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// What renders the text on each scrape.
pub(crate) type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A running metrics endpoint; stopped when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr` ("127.0.0.1:0" picks a free port) and answers each scrape with
    /// `render()`.
    pub(crate) fn start(addr: &str, name: &str, render: Render) -> std::io::Result<MetricsServer> {
        let server = Arc::new(
            tiny_http::Server::http(addr).map_err(|e| std::io::Error::other(e.to_string()))?,
        );
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("metrics server has no IP address"))?;
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rf-{name}-metrics"))
            .spawn(move || {
                for request in serving.incoming_requests() {
                    let response = if request.url() == "/metrics" {
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4"[..],
                        )
                        .expect("valid header");
                        tiny_http::Response::from_string(render()).with_header(header)
                    } else {
                        tiny_http::Response::from_string("not found: try /metrics\n")
                            .with_status_code(404)
                    };
                    let _ = request.respond(response);
                }
            })?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
