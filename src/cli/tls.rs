//! TLS flags shared by the subcommands, and the signal loop that reloads certificates.

use clap::Args;
use remotefn::{ClientTlsConfig, ServerTlsConfig};
use std::path::PathBuf;

/// Serving TLS on a port.
#[derive(Args, Debug, Default)]
pub struct ServerTlsArgs {
    /// Serve players over TLS with this certificate chain (PEM); needs --tls-key. Read again
    /// on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also accept TLS 1.2 (default: TLS 1.3 only).
    #[arg(long, requires = "tls_cert")]
    tls12: bool,
}

impl ServerTlsArgs {
    /// The settings, if TLS was asked for.
    pub fn config(&self) -> Option<ServerTlsConfig> {
        let (cert, key) = (self.tls_cert.as_ref()?, self.tls_key.as_ref()?);
        Some(ServerTlsConfig {
            allow_tls12: self.tls12,
            ..ServerTlsConfig::new(cert, key)
        })
    }
}

/// Speaking TLS to a server.
#[derive(Args, Debug, Default)]
pub struct ClientTlsArgs {
    /// Connect over TLS, verifying the server against the system's trust store (or --tls-ca).
    #[arg(long)]
    tls: bool,
    /// Trust the CAs in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE", requires = "tls")]
    tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry [default: the host of the address].
    #[arg(long, value_name = "NAME", requires = "tls")]
    server_name: Option<String>,
    /// Present this client certificate chain (PEM), for servers that require one.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_client_key"])]
    tls_client_cert: Option<PathBuf>,
    /// The private key of --tls-client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_client_cert")]
    tls_client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The settings, if TLS was asked for.
    pub fn config(&self) -> Option<ClientTlsConfig> {
        self.tls.then(|| ClientTlsConfig {
            ca_file: self.tls_ca.clone(),
            server_name: self.server_name.clone(),
            client_cert: self.tls_client_cert.clone(),
            client_key: self.tls_client_key.clone(),
            allow_tls12: false,
        })
    }
}

/// SIGTERM and SIGINT (stop) and SIGHUP (reload TLS), registered before serving so that no
/// signal is missed.
pub struct Signals(signal_hook::iterator::Signals);

impl Signals {
    /// Registers the three signals.
    pub fn register() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).map(Signals)
    }

    /// Blocks until SIGTERM or SIGINT, calling `reload` on each SIGHUP and logging what came
    /// of it (a failed reload keeps the certificates in use).
    pub fn wait(mut self, reload: impl Fn() -> Result<(), remotefn::Error>) {
        use signal_hook::consts::SIGHUP;
        for signal in self.0.forever() {
            if signal != SIGHUP {
                tracing::info!(signal, "shutting down");
                return;
            }
            match reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                Err(remotefn::Error::InvalidArgument(_)) => {
                    tracing::info!("SIGHUP: no TLS certificates to reload")
                }
                Err(e) => tracing::error!(
                    "SIGHUP: reloading TLS failed, the certificates in use stay: {e}"
                ),
            }
        }
    }
}
