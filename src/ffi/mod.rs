//! The C ABI (`include/remotefn.h`, contract in `docs/ABI.md`): a thin layer over the Rust API.
//!
//! One file per C type (`tuple.rs`, `server.rs`, `client.rs`); here, what they share: the
//! status enum, the thread-local error text, the panic boundary every exported function runs
//! inside, and checked conversions of C pointers. This module owns all the crate's `unsafe`
//! except where a measured hot path needs it; every block says why it is sound.
//!
//! Rules kept everywhere: no panic unwinds into C (each body runs in `boundary!`); a NULL
//! handle or out-pointer is `RF_ERR_INVALID_ARGUMENT`, never a dereference; freeing NULL is a
//! no-op; strings handed out are borrowed from the object that owns them.
#![allow(non_camel_case_types)]

pub mod client;
pub mod server;
pub mod tls;
pub mod tuple;

use crate::error::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

/// The version of the C ABI this library implements.
pub const RF_ABI_VERSION: u32 = 1;

/// The result of every fallible function. `RF_OK` is 0; on any other status,
/// `rf_last_error()` describes what went wrong.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rf_status {
    /// Success.
    RF_OK = 0,
    /// NULL handle, bad UTF-8, wrong value type, stale call id, unbalanced tuple builder...
    RF_ERR_INVALID_ARGUMENT = 1,
    /// The callee's handler reported an error (its message is in `rf_last_error()`).
    RF_ERR_REMOTE = 2,
    /// The peer went away before replying.
    RF_ERR_DISCONNECTED = 3,
    /// The caller's timeout elapsed.
    RF_ERR_TIMEOUT = 4,
    /// This server or client was shut down.
    RF_ERR_CLOSED = 5,
    /// A configured limit was hit (payload, in-flight calls, queue).
    RF_ERR_LIMIT = 6,
    /// A bind, connect or socket failure, or a peer that broke the protocol (a malformed
    /// handshake or reply).
    RF_ERR_IO = 7,
    /// Unknown player.
    RF_ERR_NOT_FOUND = 8,
    /// The handshake was refused (authentication, version).
    RF_ERR_REJECTED = 9,
    /// An internal panic was caught at the boundary.
    RF_ERR_PANIC = 10,
    /// TLS failed: untrusted, expired or misnamed certificate, a peer that does not speak TLS
    /// or speaks only TLS, an unreadable certificate file (`rf_last_tls_error` says which).
    RF_ERR_TLS = 11,
    /// A Luau script failed to load or raised before its first yield (its message is in
    /// `rf_last_error()`), or this library was built without the `luau` feature.
    RF_ERR_SCRIPT = 12,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error.
pub(crate) fn set_last_error(message: &str) {
    // Interior NULs cannot be represented in a C string; they are shown as U+FFFD.
    let text = CString::new(message.replace('\0', "\u{fffd}")).expect("NULs replaced");
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// The status for an error, with its message recorded.
pub(crate) fn fail(error: Error) -> rf_status {
    let status = match &error {
        Error::InvalidArgument(_) => rf_status::RF_ERR_INVALID_ARGUMENT,
        Error::Remote(_) => rf_status::RF_ERR_REMOTE,
        Error::Disconnected(_) => rf_status::RF_ERR_DISCONNECTED,
        Error::Timeout(_) => rf_status::RF_ERR_TIMEOUT,
        Error::Closed(_) => rf_status::RF_ERR_CLOSED,
        Error::Limit(_) => rf_status::RF_ERR_LIMIT,
        Error::Io(_) | Error::Protocol(_) => rf_status::RF_ERR_IO,
        Error::NotFound(_) => rf_status::RF_ERR_NOT_FOUND,
        Error::Rejected(_) => rf_status::RF_ERR_REJECTED,
        Error::Tls(_) => rf_status::RF_ERR_TLS,
        Error::Script(_) => rf_status::RF_ERR_SCRIPT,
    };
    tls::record(&error);
    match &error {
        // For a remote error, the text is exactly the callee's message.
        Error::Remote(message) | Error::Rejected(message) => set_last_error(message),
        other => set_last_error(&other.to_string()),
    }
    status
}

/// Runs a fallible body and turns its result into a status.
pub(crate) fn run(body: impl FnOnce() -> Result<(), Error>) -> rf_status {
    match body() {
        Ok(()) => rf_status::RF_OK,
        Err(e) => fail(e),
    }
}

/// Shorthand for an invalid-argument error.
pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// What an exported function returns when its body panicked.
pub(crate) trait PanicValue {
    fn panic_value() -> Self;
}

impl PanicValue for rf_status {
    fn panic_value() -> Self {
        rf_status::RF_ERR_PANIC
    }
}

impl<T> PanicValue for *mut T {
    fn panic_value() -> Self {
        std::ptr::null_mut()
    }
}

impl<T> PanicValue for *const T {
    fn panic_value() -> Self {
        std::ptr::null()
    }
}

impl PanicValue for () {
    fn panic_value() -> Self {}
}

impl PanicValue for usize {
    fn panic_value() -> Self {
        0
    }
}

impl PanicValue for u32 {
    fn panic_value() -> Self {
        0
    }
}

/// Runs an exported function's body, catching any panic: the panic's message becomes the last
/// error and the function returns its type's [`PanicValue`] (`RF_ERR_PANIC`, NULL, 0).
macro_rules! boundary {
    ($($body:tt)*) => {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(value) => value,
            Err(panic) => {
                $crate::ffi::set_last_error(&format!(
                    "internal panic: {}",
                    $crate::error::panic_message(&panic)
                ));
                $crate::ffi::PanicValue::panic_value()
            }
        }
    };
}
pub(crate) use boundary;

/// The body of an exported function that returns a status: resolves its pointer arguments,
/// runs `body` (a `Result<(), Error>`), and turns the outcome into the status, with any panic
/// caught by [`boundary!`].
///
/// ```ignore
/// entry!(srv = server(s), name = c_str(function) => srv.unbind(name))
/// ```
///
/// Each `name = resolve(ptr)` calls `resolve(ptr, "ptr")`: an `unsafe fn` of this module or of
/// the handle's file that turns a C pointer into a reference (a handle, a string, an
/// out-parameter), NULL being `RF_ERR_INVALID_ARGUMENT` before anything is dereferenced.
macro_rules! entry {
    ($($name:ident = $resolve:ident($ptr:ident)),* $(,)? => $body:expr) => {
        $crate::ffi::boundary! {
            $crate::ffi::run(|| {
                $(
                    // SAFETY: every exported function's `# Safety` section requires each
                    // pointer argument to be NULL or what its resolver takes (a live handle of
                    // its type, a NUL-terminated string, memory valid for writes), for the
                    // duration of the call; the resolver checks NULL before dereferencing.
                    let $name = unsafe { $resolve($ptr, stringify!($ptr)) }?;
                )*
                $body
            })
        }
    };
}
pub(crate) use entry;

/// The body of a config setter: `setter!(config(c), field = value)` resolves the config and
/// sets one field (`value` may use `?`).
macro_rules! setter {
    ($resolve:ident($ptr:ident), $field:ident = $value:expr) => {
        $crate::ffi::entry!($ptr = $resolve($ptr) => {
            $ptr.$field = $value;
            Ok(())
        })
    };
}
pub(crate) use setter;

/// The body of a limit's setter: `limit!(config(c), field = value)` sets one field of the
/// config's [`Limits`](crate::Limits) and keeps it only if the limits are still valid, so the
/// rules are the ones the Rust API and the command line apply.
macro_rules! limit {
    ($resolve:ident($ptr:ident), $($field:ident = $value:expr),+) => {
        $crate::ffi::entry!($ptr = $resolve($ptr) => {
            let mut limits = $ptr.limits.clone();
            $(limits.$field = $value;)+
            limits.validate()?;
            $ptr.limits = limits;
            Ok(())
        })
    };
}
pub(crate) use limit;

/// A borrowed NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination and lifetime.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// A borrowed NUL-terminated UTF-8 string argument that may be NULL (then `None`).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn optional_str<'a>(
    ptr: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded caller contract.
    unsafe { c_str(ptr, what) }.map(Some)
}

/// A borrowed `(ptr, len)` byte string argument; NULL is allowed when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn byte_slice<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL with a length of {len}")));
    }
    // SAFETY: non-NULL, and the caller guarantees `len` readable bytes for the lifetime.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A shared reference to a handle.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` created by this library.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Error> {
    // SAFETY: the caller guarantees that a non-NULL pointer is a live handle.
    unsafe { ptr.as_ref() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// An exclusive reference to a handle that one thread at a time may modify (a tuple or a
/// config).
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` that no other thread uses during the call.
pub(crate) unsafe fn handle_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Error> {
    // SAFETY: the caller guarantees that a non-NULL pointer is a live handle used by this
    // thread alone.
    unsafe { ptr.as_mut() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// `value`, refused with a message naming `what` when it is below `min`.
pub(crate) fn at_least(value: u32, min: u32, what: &str) -> Result<u32, Error> {
    if value < min {
        return Err(invalid(format!("{what} must be at least {min}")));
    }
    Ok(value)
}

/// An out-parameter.
///
/// # Safety
/// `ptr` is NULL or valid for writes of a `T`.
pub(crate) unsafe fn out_ptr<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Error> {
    // SAFETY: the caller guarantees that a non-NULL pointer is valid for writes.
    unsafe { ptr.as_mut() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// An out-parameter for a new handle, set to NULL at once so that it is NULL on any error.
///
/// # Safety
/// `ptr` is NULL or valid for writes of a pointer.
pub(crate) unsafe fn out_handle<'a, T>(
    ptr: *mut *mut T,
    what: &str,
) -> Result<&'a mut *mut T, Error> {
    // SAFETY: forwarded caller contract.
    let out = unsafe { out_ptr(ptr, what) }?;
    *out = std::ptr::null_mut();
    Ok(out)
}

/// How handlers run: `RF_DISPATCH_WORKERS` (0) or `RF_DISPATCH_MANUAL` (1). In the header
/// this is a C enum; it is received as its integer so an out-of-range value from C is an
/// `RF_ERR_INVALID_ARGUMENT`, not undefined behaviour.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub struct rf_dispatch(pub u32);

impl rf_dispatch {
    pub(crate) fn mode(self) -> Result<crate::DispatchMode, Error> {
        match self.0 {
            0 => Ok(crate::DispatchMode::Workers),
            1 => Ok(crate::DispatchMode::Manual),
            other => Err(invalid(format!("{other} is not an rf_dispatch mode"))),
        }
    }
}

/// A handle pointer captured by callbacks so they can pass it back to C.
pub(crate) struct HandlePtr<T>(pub *mut T);
impl<T> Clone for HandlePtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for HandlePtr<T> {}
impl<T> HandlePtr<T> {
    /// The pointer. A method, so closures capture the whole (Send) wrapper, not the field.
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: handles are thread-safe (docs/ABI.md: every function is thread-safe unless stated), and the
// pointer stays valid while callbacks can run: freeing a handle first stops its threads.
unsafe impl<T> Send for HandlePtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for HandlePtr<T> {}

/// A `void *user` pointer handed back to C callbacks. The library never dereferences it; the
/// C side promises it may be used from the threads callbacks run on (docs/ABI.md).
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub *mut std::ffi::c_void);
// SAFETY: the pointer is opaque to Rust and only passed back to the C callback that owns it;
// docs/ABI.md states that callbacks may run on library threads, so the C side makes it thread-safe.
unsafe impl Send for UserData {}
// SAFETY: as above: never dereferenced by Rust.
unsafe impl Sync for UserData {}
impl UserData {
    /// The pointer. A method, so closures capture the whole (Send) wrapper, not the field.
    pub(crate) fn get(self) -> *mut std::ffi::c_void {
        self.0
    }
}

/// Converts a timeout in milliseconds (0 = forever) to the Rust form.
pub(crate) fn to_timeout(ms: u32) -> Option<std::time::Duration> {
    (ms > 0).then(|| millis(ms))
}

/// A duration given in milliseconds.
pub(crate) fn millis(ms: u32) -> std::time::Duration {
    std::time::Duration::from_millis(u64::from(ms))
}

/// A required duration in milliseconds: 0 is refused, naming `what`.
pub(crate) fn positive_millis(ms: u32, what: &str) -> Result<std::time::Duration, Error> {
    to_timeout(ms).ok_or_else(|| invalid(format!("{what} must be at least 1 ms")))
}

/// The message describing the last non-OK status returned on this thread (for
/// `RF_ERR_REMOTE`, the callee's error message). Never NULL: an empty string when there is
/// none. Valid until the next `rf_` call on this thread. Thread-safe (the text is per thread).
#[no_mangle]
pub extern "C" fn rf_last_error() -> *const c_char {
    let text: *const c_char = boundary! {
        LAST_ERROR.try_with(|e| e.borrow().as_ptr()).unwrap_or(std::ptr::null())
    };
    if text.is_null() {
        c"".as_ptr()
    } else {
        text
    }
}

/// The library version, e.g. "0.1.0". A static string; never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn rf_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("version has no interior NUL"),
        };
    boundary! { VERSION.as_ptr() }
}

/// The `RF_ABI_VERSION` the library was built with: compare it with the header's to detect a
/// mismatched library at run time. Thread-safe.
#[no_mangle]
pub extern "C" fn rf_abi_version() -> u32 {
    boundary! { RF_ABI_VERSION }
}

/// The Luau scripts a C handle runs (`rf_server_load_script`, `rf_client_load_script`): one
/// script host per handle, started by the first script and stopped before the handle.
#[derive(Default)]
pub(crate) struct Scripts {
    #[cfg(feature = "luau")]
    host: parking_lot::Mutex<Option<crate::luau::ScriptHost>>,
}

/// What a handle's scripts run on (unread without `luau`, where loading always fails).
#[cfg_attr(not(feature = "luau"), allow(dead_code))]
pub(crate) enum ScriptTarget<'a> {
    Server(&'a crate::Server),
    Client(&'a crate::Client),
}

impl Scripts {
    /// Loads the script file at `path`, starting the host on `target` if none runs yet.
    #[cfg(feature = "luau")]
    pub(crate) fn load(&self, target: ScriptTarget<'_>, path: &str) -> Result<(), Error> {
        use crate::luau::{ScriptConfig, ScriptHost};
        let mut host = self.host.lock();
        let host = match host.as_mut() {
            Some(host) => host,
            None => host.insert(match target {
                ScriptTarget::Server(s) => {
                    ScriptHost::server(&s.handle(), ScriptConfig::default())?
                }
                ScriptTarget::Client(c) => {
                    ScriptHost::client(&c.handle(), ScriptConfig::default())?
                }
            }),
        };
        host.load_file(path)
    }

    /// Without the `luau` feature there is no script host: say so.
    #[cfg(not(feature = "luau"))]
    pub(crate) fn load(&self, _target: ScriptTarget<'_>, _path: &str) -> Result<(), Error> {
        Err(Error::Script(
            "this build of remotefn has no Luau support (cargo feature `luau`)".into(),
        ))
    }

    /// Stops the scripts (their remotes then answer with an error).
    pub(crate) fn stop(&self) {
        #[cfg(feature = "luau")]
        if let Some(host) = self.host.lock().take() {
            host.stop();
        }
    }
}
