//! TLS settings for servers, relays, clients and host links, and the errors TLS reports.
//!
//! Settings are plain data (file paths and switches), so they clone, compare and load from a
//! relay's TOML file. They are read into rustls configurations when a server starts listening,
//! a relay starts or a client connects; a server's or relay's certificate and key are read
//! again by `reload_tls` (and `SIGHUP` on the command line), without touching connected
//! players. Under the settings every connection is served by one TLS layer in the driver.
//!
//! What is fixed, whatever the settings: TLS 1.3 (1.2 only when allowed), ALPN `remotefn/1`,
//! the `ring` crypto provider, and stateless resumption tickets on every server, so a storm of
//! reconnecting players resumes rather than paying a full handshake each.

use crate::error::{Error, Result};
use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::LazyLock;

/// The application protocol a remotefn peer names in its TLS handshake (ALPN).
pub const ALPN: &[u8] = b"remotefn/1";

/// Sessions a client remembers per TLS setting, to resume with (one per server name).
const RESUMABLE_SESSIONS: usize = 256;

/// How a listening port (a server's, a relay's player or host port) speaks TLS.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "relay", derive(serde::Deserialize))]
#[cfg_attr(feature = "relay", serde(deny_unknown_fields))]
pub struct ServerTlsConfig {
    /// The certificate chain, PEM: the server's certificate first, then its intermediates.
    pub cert_chain: PathBuf,
    /// The private key of the first certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// Also accept TLS 1.2 (for old clients). Default: TLS 1.3 only.
    #[cfg_attr(feature = "relay", serde(default))]
    pub allow_tls12: bool,
    /// Require every peer to present a certificate signed by a CA in this PEM file (mutual
    /// TLS, as a relay may ask of game servers). Default: no client certificates.
    #[cfg_attr(feature = "relay", serde(default))]
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsConfig {
    /// TLS 1.3 with the certificate chain and key in these PEM files.
    pub fn new(cert_chain: impl Into<PathBuf>, private_key: impl Into<PathBuf>) -> Self {
        ServerTlsConfig {
            cert_chain: cert_chain.into(),
            private_key: private_key.into(),
            allow_tls12: false,
            client_ca: None,
        }
    }
}

/// How a client (or a game server's link to a relay) speaks TLS to its server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientTlsConfig {
    /// Trust the CAs in this PEM file. Default (`None`): the operating system's trust store.
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry. Default: the host of the address
    /// connected to (a DNS name or an IP address).
    pub server_name: Option<String>,
    /// A client certificate chain to present (PEM), for servers that require one.
    pub client_cert: Option<PathBuf>,
    /// The private key of `client_cert` (PEM).
    pub client_key: Option<PathBuf>,
    /// Also speak TLS 1.2. Default: TLS 1.3 only.
    pub allow_tls12: bool,
}

impl ClientTlsConfig {
    /// Verifies the server against the CAs in `ca_file`.
    pub fn with_ca_file(ca_file: impl Into<PathBuf>) -> Self {
        ClientTlsConfig {
            ca_file: Some(ca_file.into()),
            ..ClientTlsConfig::default()
        }
    }
}

/// What went wrong in a TLS handshake, as a caller can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The server's certificate is not signed by a trusted CA (or its chain is broken).
    UntrustedCertificate,
    /// The server's certificate does not name the server connected to.
    WrongServerName,
    /// The server's certificate has expired (or is not valid yet).
    ExpiredCertificate,
    /// The peer does not speak TLS: a TLS client reached a plaintext port.
    NotTls,
    /// The server speaks TLS and this connection did not: a plaintext client on a TLS port.
    TlsRequired,
    /// The server refused this side's client certificate, or required one that was not sent.
    CertificateRejected,
    /// A certificate, key or CA file could not be read or used.
    BadConfig,
    /// Any other TLS failure (its message says which).
    Other,
}

/// A TLS failure: its kind and a message naming the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError {
    kind: TlsErrorKind,
    message: String,
}

impl TlsError {
    pub(crate) fn new(kind: TlsErrorKind, message: impl Into<String>) -> TlsError {
        TlsError {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> TlsErrorKind {
        self.kind
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

fn config_error(message: String) -> Error {
    Error::Tls(TlsError::new(TlsErrorKind::BadConfig, message))
}

/// The failure of a handshake with `peer` ("server", "relay", "client"), in words a user can
/// act on.
pub(crate) fn handshake_error(peer: &str, e: &rustls::Error) -> TlsError {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    let (kind, what) = match e {
        E::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => (
            TlsErrorKind::UntrustedCertificate,
            format!("the {peer}'s certificate is not signed by a trusted CA"),
        ),
        E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => (
            TlsErrorKind::WrongServerName,
            format!("the {peer}'s certificate does not name the host connected to"),
        ),
        E::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => (
            TlsErrorKind::ExpiredCertificate,
            format!("the {peer}'s certificate has expired or is not valid yet"),
        ),
        E::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateRequired
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::AccessDenied,
        ) => (
            TlsErrorKind::CertificateRejected,
            format!("the {peer} refused this side's certificate (or wanted one)"),
        ),
        E::NoCertificatesPresented => (
            TlsErrorKind::CertificateRejected,
            format!("the {peer} presented no certificate, and one is required"),
        ),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => (
            TlsErrorKind::NotTls,
            format!("the {peer} does not speak TLS (a plaintext port, or a plaintext peer)"),
        ),
        _ => (TlsErrorKind::Other, format!("TLS with the {peer} failed")),
    };
    TlsError::new(kind, format!("{what}: {e}"))
}

/// The crypto every configuration uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(allow_tls12: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static TLS13_AND_12: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    if allow_tls12 {
        &TLS13_AND_12
    } else {
        &TLS13_ONLY
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| config_error(format!("cannot read the {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "the {what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        config_error(format!(
            "cannot read the private key {}: {e}",
            path.display()
        ))
    })
}

fn read_roots(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path, "CA file")? {
        roots
            .add(cert)
            .map_err(|e| config_error(format!("a CA in {} is not usable: {e}", path.display())))?;
    }
    Ok(roots)
}

/// A listening port's TLS: the rustls configuration new connections get, replaced whole by
/// [`reload`](Self::reload). Connections keep the configuration they started with.
pub(crate) struct Acceptor {
    settings: ServerTlsConfig,
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// Kept across reloads, so tickets issued before a reload still resume after it.
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Reads the certificate, key and (if any) client CA of `settings`.
    pub(crate) fn load(settings: &ServerTlsConfig) -> Result<Arc<Acceptor>> {
        let ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| config_error(format!("cannot make a ticket key: {e}")))?;
        let config = Acceptor::build(settings, &ticketer)?;
        Ok(Arc::new(Acceptor {
            settings: settings.clone(),
            current: RwLock::new(config),
            ticketer,
        }))
    }

    fn build(
        settings: &ServerTlsConfig,
        ticketer: &Arc<dyn rustls::server::ProducesTickets>,
    ) -> Result<Arc<rustls::ServerConfig>> {
        let chain = read_certs(&settings.cert_chain, "certificate chain")?;
        let key = read_key(&settings.private_key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(settings.allow_tls12))
            .map_err(|e| config_error(format!("TLS versions: {e}")))?;
        let builder = match &settings.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(read_roots(ca)?),
                    provider(),
                )
                .build()
                .map_err(|e| config_error(format!("client CA {}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            config_error(format!(
                "the key {} does not fit the certificate {}: {e}",
                settings.private_key.display(),
                settings.cert_chain.display()
            ))
        })?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.ticketer = ticketer.clone();
        // Without a session cache tickets are the one way to resume; nothing grows per player.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 1;
        Ok(Arc::new(config))
    }

    /// The configuration a connection accepted now is served with.
    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.read().clone()
    }

    /// Reads the files again and serves new connections with them; on failure the current
    /// configuration stays and the error says what is wrong.
    pub(crate) fn reload(&self) -> Result<()> {
        let config = Acceptor::build(&self.settings, &self.ticketer)?;
        *self.current.write() = config;
        Ok(())
    }

    /// Whether peers must present a certificate.
    #[cfg_attr(not(feature = "relay"), allow(dead_code))]
    pub(crate) fn requires_client_certs(&self) -> bool {
        self.settings.client_ca.is_some()
    }
}

/// When each file of a client setting was last modified (`None`: no such file, or unknown).
fn modified(settings: &ClientTlsConfig) -> Modified {
    [
        &settings.ca_file,
        &settings.client_cert,
        &settings.client_key,
    ]
    .map(|path| {
        path.as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok())
    })
}

type Modified = [Option<std::time::SystemTime>; 3];

/// The rustls configuration made for each client setting in this process, and when its files
/// were last modified: a client that connects again with the same setting gets the same
/// configuration, so it resumes its session (rustls resumes only under the configuration
/// that verified the server), while a changed file is read again.
static CLIENT_CONFIGS: LazyLock<Mutex<KnownConfigs>> = LazyLock::new(Mutex::default);

/// Per client setting: when its files were modified, and the configuration made from them.
type KnownConfigs = HashMap<ClientTlsConfig, (Modified, Arc<rustls::ClientConfig>)>;

/// A client's TLS: the rustls configuration, and the name to verify.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Reads the CA file (or the system's trust store) and the client certificate of
    /// `settings`.
    pub(crate) fn load(settings: &ClientTlsConfig) -> Result<Connector> {
        let modified = modified(settings);
        let mut known = CLIENT_CONFIGS.lock();
        let config = match known.get(settings) {
            Some((when, config)) if *when == modified => config.clone(),
            _ => {
                let config = Arc::new(client_config(settings)?);
                known.insert(settings.clone(), (modified, config.clone()));
                config
            }
        };
        Ok(Connector {
            config,
            server_name: settings.server_name.clone(),
        })
    }
}

/// The rustls configuration of a client setting, read afresh: its trust roots, its client
/// certificate, ALPN `remotefn/1`, and an in-memory resumption store. (The load generator of
/// `remotefn bench` speaks TLS with it too, through `__bench`.)
pub(crate) fn client_config(settings: &ClientTlsConfig) -> Result<rustls::ClientConfig> {
    let roots = match &settings.ca_file {
        Some(path) => read_roots(path)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(config_error(format!(
                    "the system trust store has no usable CA ({} errors): give a CA file",
                    found.errors.len()
                )));
            }
            roots
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(settings.allow_tls12))
        .map_err(|e| config_error(format!("TLS versions: {e}")))?
        .with_root_certificates(roots);
    let mut config = match (&settings.client_cert, &settings.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert, "client certificate")?, read_key(key)?)
            .map_err(|e| {
                config_error(format!(
                    "the key {} does not fit the certificate {}: {e}",
                    key.display(),
                    cert.display()
                ))
            })?,
        _ => {
            return Err(config_error(
                "a client certificate needs both its chain and its key".into(),
            ))
        }
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::in_memory_sessions(RESUMABLE_SESSIONS);
    Ok(config)
}

impl Connector {
    /// A connection to `host` (the host part of the address dialled, if it had one), verifying
    /// the configured server name or else `host`, else `ip`.
    pub(crate) fn connect(
        &self,
        host: Option<&str>,
        ip: std::net::IpAddr,
    ) -> Result<rustls::ClientConnection> {
        let name = match self.server_name.as_deref().or(host) {
            Some(name) => ServerName::try_from(name.to_owned()).map_err(|_| {
                Error::InvalidArgument(format!("{name:?} is not a DNS name or an IP address"))
            })?,
            None => ServerName::IpAddress(ip.into()),
        };
        rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| Error::Tls(handshake_error("server", &e)))
    }
}

/// The host part of `addr` when it is text: `"example.com:7878"` gives `example.com`,
/// `"[::1]:7878"` gives `::1`.
pub(crate) fn host_of(addr: &str) -> Option<&str> {
    let (host, _port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_its_text_before_the_port() {
        assert_eq!(host_of("example.com:7878"), Some("example.com"));
        assert_eq!(host_of("127.0.0.1:1"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:7878"), Some("::1"));
        assert_eq!(host_of(":7878"), None);
        assert_eq!(host_of("nohost"), None);
    }

    #[test]
    fn a_missing_certificate_file_is_a_config_error_naming_it() {
        let err = Acceptor::load(&ServerTlsConfig::new(
            "/nonexistent/cert.pem",
            "/nonexistent/key.pem",
        ))
        .unwrap_err();
        let Error::Tls(tls) = &err else {
            panic!("{err}")
        };
        assert_eq!(tls.kind(), TlsErrorKind::BadConfig);
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
