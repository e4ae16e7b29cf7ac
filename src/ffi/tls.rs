//! TLS through the C ABI: the settings of server and client configs, reloading a server's
//! certificate, and the kind of the last TLS failure.

use super::client::{config as client_config, rf_client_config};
use super::server::{config as server_config, rf_server, rf_server_config, server};
use super::{c_str, entry, invalid, optional_str, rf_status};
use crate::error::Error;
use crate::tls::{ClientTlsConfig, ServerTlsConfig, TlsErrorKind};
use std::cell::Cell;
use std::ffi::c_char;

/// What went wrong in the last `RF_ERR_TLS` returned on this thread (see `rf_last_tls_error`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum rf_tls_error {
    /// The last failure on this thread was not a TLS one (or there was none).
    RF_TLS_NONE = 0,
    /// The server's certificate is not signed by a trusted CA.
    RF_TLS_UNTRUSTED_CERTIFICATE = 1,
    /// The server's certificate does not name the host connected to.
    RF_TLS_WRONG_SERVER_NAME = 2,
    /// The server's certificate has expired (or is not valid yet).
    RF_TLS_EXPIRED_CERTIFICATE = 3,
    /// The peer does not speak TLS (a TLS client on a plaintext port).
    RF_TLS_NOT_TLS = 4,
    /// The server speaks only TLS (a plaintext client on a TLS port).
    RF_TLS_REQUIRED = 5,
    /// The server refused this side's client certificate, or wanted one.
    RF_TLS_CERTIFICATE_REJECTED = 6,
    /// A certificate, key or CA file could not be read or used.
    RF_TLS_BAD_CONFIG = 7,
    /// Another TLS failure (the message says which).
    RF_TLS_OTHER = 8,
}

thread_local! {
    static LAST_TLS_ERROR: Cell<rf_tls_error> = const { Cell::new(rf_tls_error::RF_TLS_NONE) };
}

/// Records the TLS kind of a failure about to be returned (`RF_TLS_NONE` for any other).
pub(super) fn record(error: &Error) {
    let kind = match error {
        Error::Tls(e) => match e.kind() {
            TlsErrorKind::UntrustedCertificate => rf_tls_error::RF_TLS_UNTRUSTED_CERTIFICATE,
            TlsErrorKind::WrongServerName => rf_tls_error::RF_TLS_WRONG_SERVER_NAME,
            TlsErrorKind::ExpiredCertificate => rf_tls_error::RF_TLS_EXPIRED_CERTIFICATE,
            TlsErrorKind::NotTls => rf_tls_error::RF_TLS_NOT_TLS,
            TlsErrorKind::TlsRequired => rf_tls_error::RF_TLS_REQUIRED,
            TlsErrorKind::CertificateRejected => rf_tls_error::RF_TLS_CERTIFICATE_REJECTED,
            TlsErrorKind::BadConfig => rf_tls_error::RF_TLS_BAD_CONFIG,
            _ => rf_tls_error::RF_TLS_OTHER,
        },
        _ => rf_tls_error::RF_TLS_NONE,
    };
    let _ = LAST_TLS_ERROR.try_with(|last| last.set(kind));
}

/// The kind of the last `RF_ERR_TLS` returned on this thread; `RF_TLS_NONE` when the last
/// failure was of another kind. Thread-safe (per thread, as `rf_last_error`).
#[no_mangle]
pub extern "C" fn rf_last_tls_error() -> rf_tls_error {
    super::boundary! {
        LAST_TLS_ERROR
            .try_with(Cell::get)
            .unwrap_or(rf_tls_error::RF_TLS_NONE)
    }
}

impl super::PanicValue for rf_tls_error {
    fn panic_value() -> Self {
        rf_tls_error::RF_TLS_OTHER
    }
}

/// TLS trusting the CAs in `ca` (a PEM file), or the system's trust store when it is `None`.
fn trusting(ca: Option<&str>) -> ClientTlsConfig {
    ca.map_or_else(ClientTlsConfig::default, ClientTlsConfig::with_ca_file)
}

/// The TLS settings a refining setter changes; `RF_ERR_INVALID_ARGUMENT` naming `setter` when
/// they were not set yet.
fn set_first<'a, T>(tls: &'a mut Option<T>, setter: &str) -> Result<&'a mut T, Error> {
    tls.as_mut()
        .ok_or_else(|| invalid(format!("set TLS first ({setter})")))
}

/// Serves players over TLS 1.3 with the certificate chain in `cert_pem_path` (PEM, the
/// server's certificate first) and its private key in `key_pem_path`. The files are read by
/// `rf_server_new` (`RF_ERR_TLS` there names a file that cannot be read or a key that does
/// not fit) and again by `rf_server_reload_tls`.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time; `cert_pem_path` and
/// `key_pem_path` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_tls(
    c: *mut rf_server_config,
    cert_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> rf_status {
    entry!(c = server_config(c), cert = c_str(cert_pem_path), key = c_str(key_pem_path) => {
        c.tls = Some(ServerTlsConfig::new(cert, key));
        Ok(())
    })
}

/// Also accepts TLS 1.2 from players (after `rf_server_config_set_tls`; default: TLS 1.3
/// only). `RF_ERR_INVALID_ARGUMENT` when TLS is not set.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_tls12(
    c: *mut rf_server_config,
    allow: bool,
) -> rf_status {
    entry!(c = server_config(c) => {
        let tls = set_first(&mut c.tls, "rf_server_config_set_tls")?;
        tls.allow_tls12 = allow;
        Ok(())
    })
}

/// Speaks TLS to relays (`rf_server_attach`), trusting the CAs in `ca_pem_path`, or the
/// system's trust store when it is NULL. The relay's certificate must name the host of the
/// relay address.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time; `ca_pem_path` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_relay_tls(
    c: *mut rf_server_config,
    ca_pem_path: *const c_char,
) -> rf_status {
    entry!(c = server_config(c), ca = optional_str(ca_pem_path) => {
        c.relay_tls = Some(trusting(ca));
        Ok(())
    })
}

/// Presents this certificate chain and key (PEM files) to relays that require host
/// certificates (after `rf_server_config_set_relay_tls`).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time; `cert_pem_path` and
/// `key_pem_path` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_relay_client_cert(
    c: *mut rf_server_config,
    cert_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> rf_status {
    entry!(c = server_config(c), cert = c_str(cert_pem_path), key = c_str(key_pem_path) => {
        let tls = set_first(&mut c.relay_tls, "rf_server_config_set_relay_tls")?;
        tls.client_cert = Some(cert.into());
        tls.client_key = Some(key.into());
        Ok(())
    })
}

/// Reads the server's certificate chain and key again and serves players who connect from
/// now on with them; connected players keep their sessions. On failure (`RF_ERR_TLS`) the
/// certificate in use stays; `RF_ERR_INVALID_ARGUMENT` when the server has no TLS.
///
/// # Safety
/// `s` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn rf_server_reload_tls(s: *mut rf_server) -> rf_status {
    entry!(srv = server(s) => srv.reload_tls())
}

/// Connects over TLS 1.3, trusting the CAs in `ca_pem_path`, or the system's trust store when
/// it is NULL. The server's certificate must name the host of the address given to
/// `rf_client_connect` unless `rf_client_config_set_server_name` names another.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time; `ca_pem_path` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_tls(
    c: *mut rf_client_config,
    ca_pem_path: *const c_char,
) -> rf_status {
    entry!(c = client_config(c), ca = optional_str(ca_pem_path) => {
        c.tls = Some(trusting(ca));
        Ok(())
    })
}

/// The name the server's certificate must carry (after `rf_client_config_set_tls`).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time; `name` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_server_name(
    c: *mut rf_client_config,
    name: *const c_char,
) -> rf_status {
    entry!(c = client_config(c), name = c_str(name) => {
        let tls = set_first(&mut c.tls, "rf_client_config_set_tls")?;
        tls.server_name = Some(name.to_owned());
        Ok(())
    })
}

/// Presents this client certificate chain and key (PEM files) to servers that require one
/// (after `rf_client_config_set_tls`).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time; `cert_pem_path` and
/// `key_pem_path` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_client_cert(
    c: *mut rf_client_config,
    cert_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> rf_status {
    entry!(c = client_config(c), cert = c_str(cert_pem_path), key = c_str(key_pem_path) => {
        let tls = set_first(&mut c.tls, "rf_client_config_set_tls")?;
        tls.client_cert = Some(cert.into());
        tls.client_key = Some(key.into());
        Ok(())
    })
}
