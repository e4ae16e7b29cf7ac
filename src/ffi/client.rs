//! `rf_client` and `rf_client_config`: the player through the C ABI.

use super::server::{borrow_args, pump, rf_call_id, rf_player_id, take_results};
use super::tuple::rf_tuple;
use super::{
    boundary, byte_slice, c_str, entry, handle, handle_mut, invalid, limit, millis, out_handle,
    out_ptr, positive_millis, rf_dispatch, rf_status, setter, to_timeout, HandlePtr, UserData,
};
use crate::client::{Client, ClientConfig};
use crate::error::Error;
use crate::ids::CallId;
use crate::value::Tuple;
use bytes::Bytes;
use std::ffi::{c_char, c_void};

/// Client settings; create with `rf_client_config_new`, free with `rf_client_config_free`.
/// Not thread-safe: configure on one thread, then pass to `rf_client_connect` (which copies it).
pub struct rf_client_config {
    config: ClientConfig,
}

/// A connected player. Thread-safe: many threads may invoke through one client at once, and
/// each gets its own answer.
pub struct rf_client {
    client: Client,
    scripts: super::Scripts,
}

/// `OnClientInvoke`: the server invoked a function. Complete `call` exactly once with
/// `rf_client_return` or `rf_client_error`, before returning or later from any thread. `args`
/// is valid until the callback returns. Must not throw or unwind.
pub type rf_on_client_invoke = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        client: *mut rf_client,
        args: *const rf_tuple,
        call: rf_call_id,
    ),
>;
/// The server fired a RemoteEvent. `args` is valid until the callback returns.
pub type rf_on_client_event =
    Option<unsafe extern "C" fn(user: *mut c_void, client: *mut rf_client, args: *const rf_tuple)>;

/// The settings of a live config.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
pub(super) unsafe fn config<'a>(
    c: *mut rf_client_config,
    _: &str,
) -> Result<&'a mut ClientConfig, Error> {
    // SAFETY: forwarded caller contract.
    Ok(&mut unsafe { handle_mut(c, "config") }?.config)
}

/// Shared access to a live client.
///
/// # Safety
/// `c` is NULL or a live client.
unsafe fn client<'a>(c: *const rf_client, _: &str) -> Result<&'a Client, Error> {
    // SAFETY: forwarded caller contract.
    Ok(&unsafe { handle(c, "client") }?.client)
}

/// A config to connect with: NULL is the defaults.
///
/// # Safety
/// `c` is NULL or a live config.
unsafe fn config_or_default(c: *const rf_client_config, _: &str) -> Result<ClientConfig, Error> {
    // SAFETY: forwarded caller contract.
    Ok(unsafe { c.as_ref() }.map_or_else(ClientConfig::default, |c| c.config.clone()))
}

/// Creates a config with the defaults: no token, no place, worker dispatch (1 worker), 10 s
/// connect timeout. The caller frees it.
#[no_mangle]
pub extern "C" fn rf_client_config_new() -> *mut rf_client_config {
    boundary! { Box::into_raw(Box::new(rf_client_config { config: ClientConfig::default() })) }
}

/// Frees a config. NULL is a no-op.
///
/// # Safety
/// `c` is NULL or a config from `rf_client_config_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_free(c: *mut rf_client_config) {
    boundary! {
        if !c.is_null() {
            // SAFETY: created by `rf_client_config_new`, freed once.
            drop(unsafe { Box::from_raw(c) });
        }
    }
}

/// Sets the handshake token (binary-safe, copied) for the server's authenticator.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time; `ptr` is NULL or points to `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_token(
    c: *mut rf_client_config,
    ptr: *const c_char,
    len: usize,
) -> rf_status {
    entry!(c = config(c) => {
        // SAFETY: `ptr` points to `len` readable bytes (the `# Safety` section above).
        c.token = Bytes::copy_from_slice(unsafe { byte_slice(ptr.cast(), len, "token") }?);
        Ok(())
    })
}

/// Sets the place to join (relay deployments; an embedded server ignores it).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time; `place` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_place(
    c: *mut rf_client_config,
    place: *const c_char,
) -> rf_status {
    entry!(c = config(c), place = c_str(place) => {
        c.place = place.to_owned();
        Ok(())
    })
}

/// Sets where `OnClientInvoke` handlers run: a library worker, or only in `rf_client_dispatch`.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_dispatch(
    c: *mut rf_client_config,
    mode: rf_dispatch,
) -> rf_status {
    setter!(config(c), dispatch = mode.mode()?)
}

/// Sets how long connecting and the handshake may take, in milliseconds (at least 1).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_connect_timeout(
    c: *mut rf_client_config,
    ms: u32,
) -> rf_status {
    setter!(
        config(c),
        connect_timeout = positive_millis(ms, "connect timeout")?
    )
}

/// Sets how long the server may stay silent before the client disconnects, in milliseconds
/// (pending calls fail with `RF_ERR_DISCONNECTED`); it pings after a third of it. 0 disables.
/// Default 60,000.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_idle_timeout(
    c: *mut rf_client_config,
    ms: u32,
) -> rf_status {
    limit!(config(c), idle_timeout = millis(ms))
}

/// Sets how long the client's event loop keeps polling without sleeping after a turn with
/// events, in microseconds (at most 1,000,000): answers are seen without a scheduler wake-up,
/// at the price of that much spinning per turn. 0: the loop sleeps at once. Default 50.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_client_config_set_busy_poll_us(
    c: *mut rf_client_config,
    us: u32,
) -> rf_status {
    setter!(config(c), busy_poll = busy_poll_micros(us)?)
}

fn busy_poll_micros(us: u32) -> Result<std::time::Duration, crate::Error> {
    let window = std::time::Duration::from_micros(u64::from(us));
    crate::client::check_busy_poll(window)?;
    Ok(window)
}

/// Connects to `addr` and completes the handshake before returning: `RF_OK` with `*out` a new
/// client (free it with `rf_client_free`), or `RF_ERR_REJECTED` (the server's reason in
/// `rf_last_error()`), `RF_ERR_IO` or `RF_ERR_TIMEOUT`, with `*out` set to NULL.
///
/// # Safety
/// `addr` is NULL or a NUL-terminated string; `c` is NULL or a live config; `out` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_client_connect(
    addr: *const c_char,
    c: *const rf_client_config,
    out: *mut *mut rf_client,
) -> rf_status {
    entry!(out = out_handle(out), addr = c_str(addr), config = config_or_default(c) => {
        let client = Client::connect(addr, config)?;
        *out = Box::into_raw(Box::new(rf_client {
            client,
            scripts: super::Scripts::default(),
        }));
        Ok(())
    })
}

/// Disconnects and frees the client: pending `rf_client_invoke_server` calls fail with
/// `RF_ERR_CLOSED` and the library's threads are joined before this returns. NULL is a no-op.
/// Do not call it from a callback of this client.
///
/// # Safety
/// `c` is NULL or a client from `rf_client_connect`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rf_client_free(c: *mut rf_client) {
    boundary! {
        if !c.is_null() {
            // SAFETY: a live client; stop it through a shared reference first (see rf_server_free).
            let live = unsafe { &*c };
            live.scripts.stop();
            live.client.close();
            // SAFETY: no library thread uses `c` any more; freed once.
            drop(unsafe { Box::from_raw(c) });
        }
    }
}

/// Loads and runs the Luau client script at `path` (Roblox's `LocalScript` surface), as
/// `rf_server_load_script` does for a server: `InvokeServer`, `FireServer`, `OnClientInvoke`
/// and `OnClientEvent` reach the server this client is connected to.
///
/// # Safety
/// `c` is NULL or a live client; `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_client_load_script(
    c: *mut rf_client,
    path: *const c_char,
) -> rf_status {
    entry!(me = handle(c), path = c_str(path) => {
        me.scripts.load(super::ScriptTarget::Client(&me.client), path)
    })
}

/// The player id the server gave this client.
///
/// # Safety
/// `c` is NULL or a live client; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_client_player_id(
    c: *const rf_client,
    out: *mut rf_player_id,
) -> rf_status {
    entry!(cl = client(c), out = out_ptr(out) => {
        *out = cl.player_id().get();
        Ok(())
    })
}

/// `InvokeServer`: calls `function` on the server and blocks until its handler returns (`RF_OK`,
/// `*out_results` a new tuple the caller frees), raises (`RF_ERR_REMOTE`), the connection drops
/// (`RF_ERR_DISCONNECTED`), `timeout_ms` passes (`RF_ERR_TIMEOUT`; 0 waits forever), or the
/// client is freed (`RF_ERR_CLOSED`). `args` is borrowed (NULL: none). On any error
/// `*out_results` is NULL. Any thread.
///
/// # Safety
/// `c` is NULL or a live client; `function` is NULL or a NUL-terminated string; `args` is
/// NULL or a live tuple; `out_results` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_client_invoke_server(
    c: *mut rf_client,
    function: *const c_char,
    args: *const rf_tuple,
    timeout_ms: u32,
    out_results: *mut *mut rf_tuple,
) -> rf_status {
    entry!(
        out = out_handle(out_results),
        cl = client(c),
        name = c_str(function),
        args = borrow_args(args) => {
        // Hold the client's state for the whole wait: rf_client_free may run meanwhile.
        let cl = cl.handle();
        let results = cl.invoke_server(name, &args, to_timeout(timeout_ms))?;
        *out = Box::into_raw(Box::new(rf_tuple::from_tuple(results)));
        Ok(())
    })
}

/// Binds the `OnClientInvoke` handler of `function` (replacing any previous one).
///
/// # Safety
/// `c` is NULL or a live client; `function` is NULL or a NUL-terminated string; `cb`, if not
/// NULL, may be called with `user` from library threads until the client is freed.
#[no_mangle]
pub unsafe extern "C" fn rf_client_bind(
    c: *mut rf_client,
    function: *const c_char,
    cb: rf_on_client_invoke,
    user: *mut c_void,
) -> rf_status {
    entry!(cl = client(c), name = c_str(function) => {
        let handler = invoke_handler(c, cb, user)?;
        cl.bind_with_call_id(name, move |_, args, call| handler(args, call))
    })
}

/// The Rust handler that calls `cb` with `user` for each call.
fn invoke_handler(
    c: *mut rf_client,
    cb: rf_on_client_invoke,
    user: *mut c_void,
) -> Result<impl Fn(Tuple, CallId) + Send + Sync + 'static, crate::Error> {
    let cb = cb.ok_or_else(|| invalid("callback is NULL"))?;
    let (me, user) = (HandlePtr(c), UserData(user));
    Ok(move |args: Tuple, call: CallId| {
        let args = rf_tuple::from_tuple(args);
        // SAFETY: `cb` is the C function given; `me` outlives callbacks (rf_client_free joins
        // the loop and the workers first); `args` outlives the call.
        unsafe { cb(user.get(), me.get(), &args, call.get()) }
    })
}

/// Binds `function` to an `OnClientInvoke` handler declared non-blocking: `cb` runs on the
/// client's event loop thread as each call arrives, with no hand-off to a worker. `cb`
/// completes `call` with `rf_client_return` or `rf_client_error` before it returns (returning
/// without doing so fails the call). It must not block: `rf_client_invoke_server` inside it
/// fails with `RF_ERR_INVALID_ARGUMENT`. Rebinding with `rf_client_bind` moves the function
/// back to the workers.
///
/// # Safety
/// `c` is NULL or a live client; `function` is NULL or a NUL-terminated string; `cb`, if not
/// NULL, may be called with `user` from library threads until the client is freed.
#[no_mangle]
pub unsafe extern "C" fn rf_client_bind_inline(
    c: *mut rf_client,
    function: *const c_char,
    cb: rf_on_client_invoke,
    user: *mut c_void,
) -> rf_status {
    entry!(cl = client(c), name = c_str(function) => {
        let handler = invoke_handler(c, cb, user)?;
        // The answer is captured through `call` by `rf_client_return` / `rf_client_error` on
        // this thread before `cb` returns.
        cl.bind_inline_with_call_id(name, move |args, call| {
            handler(args, call);
            None
        })
    })
}

/// Removes the handler of `function`. Not bound: `RF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `c` is NULL or a live client; `function` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_client_unbind(c: *mut rf_client, function: *const c_char) -> rf_status {
    entry!(cl = client(c), name = c_str(function) => cl.unbind(name))
}

/// Completes inbound call `call` with `results`, consumed in every case (NULL: no values).
/// Unknown or completed id, or an open table: `RF_ERR_INVALID_ARGUMENT`. Any thread.
///
/// # Safety
/// `c` is NULL or a live client; `results` is NULL or a tuple of this library, which the
/// caller does not use afterwards.
#[no_mangle]
pub unsafe extern "C" fn rf_client_return(
    c: *mut rf_client,
    call: rf_call_id,
    results: *mut rf_tuple,
) -> rf_status {
    entry!(results = take_results(results), cl = client(c) => {
        cl.reply(CallId::from_raw(call), Ok(&results.sendable()?))
    })
}

/// Completes inbound call `call` with an error the server receives as `RF_ERR_REMOTE`.
///
/// # Safety
/// `c` is NULL or a live client; `message` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_client_error(
    c: *mut rf_client,
    call: rf_call_id,
    message: *const c_char,
) -> rf_status {
    entry!(cl = client(c), message = c_str(message) => {
        cl.reply(CallId::from_raw(call), Err(message))
    })
}

/// `RF_DISPATCH_MANUAL` only: runs queued callbacks on this thread until `max_calls` have run
/// (0: all that are queued), waiting up to `timeout_ms` for the first; `*out_dispatched` is
/// how many of the game's callbacks (handlers, hooks) ran. Internal bookkeeping that calls
/// nothing is not counted.
///
/// # Safety
/// `c` is NULL or a live client; `out_dispatched` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_client_dispatch(
    c: *mut rf_client,
    max_calls: u32,
    timeout_ms: u32,
    out_dispatched: *mut u32,
) -> rf_status {
    entry!(cl = client(c), out = out_ptr(out_dispatched) => {
        let cl = cl.handle();
        pump(out, max_calls, timeout_ms, |max, timeout| cl.dispatch(max, timeout))
    })
}

/// Binds the handler of RemoteEvent `event` fired by the server (in order).
///
/// # Safety
/// `c` is NULL or a live client; `event` is NULL or a NUL-terminated string; `cb`, if not
/// NULL, may be called with `user` from library threads until the client is freed.
#[no_mangle]
pub unsafe extern "C" fn rf_client_bind_event(
    c: *mut rf_client,
    event: *const c_char,
    cb: rf_on_client_event,
    user: *mut c_void,
) -> rf_status {
    entry!(cl = client(c), name = c_str(event) => {
        let cb = cb.ok_or_else(|| invalid("callback is NULL"))?;
        let (me, user) = (HandlePtr(c), UserData(user));
        cl.bind_event(name, move |_, args: Tuple| {
            let args = rf_tuple::from_tuple(args);
            // SAFETY: as for rf_client_bind.
            unsafe { cb(user.get(), me.get(), &args) }
        })
    })
}

/// FireServer: sends RemoteEvent `event` to the server (fire-and-forget, in order). `args` is
/// borrowed (NULL: none).
///
/// # Safety
/// `c` is NULL or a live client; `event` is NULL or a NUL-terminated string; `args` is NULL
/// or a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_client_fire_server(
    c: *mut rf_client,
    event: *const c_char,
    args: *const rf_tuple,
) -> rf_status {
    entry!(cl = client(c), name = c_str(event), args = borrow_args(args) => cl.fire_server(name, &args))
}
