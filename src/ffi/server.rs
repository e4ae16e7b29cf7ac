//! `rf_server` and `rf_server_config`: the game server through the C ABI, and `rf_auth`.

use super::tuple::rf_tuple;
use super::{
    at_least, boundary, c_str, entry, handle, handle_mut, invalid, limit, millis, optional_str,
    out_handle, out_ptr, rf_dispatch, rf_status, setter, to_timeout, HandlePtr, UserData,
};
use crate::endpoint::Identity;
use crate::error::Error;
use crate::ids::{CallId, PlayerId};
use crate::server::{Server, ServerConfig};
use crate::value::Tuple;
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

/// Identifies a connected player; never 0.
pub type rf_player_id = u64;
/// Identifies one pending invocation; stale ids are rejected.
pub type rf_call_id = u64;

/// Server settings; create with `rf_server_config_new`, free with `rf_server_config_free`.
/// Not thread-safe: configure on one thread, then pass to `rf_server_new` (which copies it).
pub struct rf_server_config {
    config: ServerConfig,
}

/// A game server. Thread-safe: every function may be called from any thread.
pub struct rf_server {
    server: Server,
    scripts: super::Scripts,
}

/// One handshake being decided, valid only during the `rf_on_authenticate` callback.
pub struct rf_auth {
    decision: Option<Result<Identity, String>>,
}

/// `OnServerInvoke`: a player invoked a function. Complete `call` exactly once with
/// `rf_server_return` or `rf_server_error`, before returning or later from any thread. `args`
/// is valid until the callback returns (clone it to keep it). Must not throw or unwind.
pub type rf_on_server_invoke = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        server: *mut rf_server,
        player: rf_player_id,
        args: *const rf_tuple,
        call: rf_call_id,
    ),
>;
/// A player joined (PlayerAdded) or is leaving (PlayerRemoving).
pub type rf_on_player =
    Option<unsafe extern "C" fn(user: *mut c_void, server: *mut rf_server, player: rf_player_id)>;
/// A player fired a RemoteEvent. `args` is valid until the callback returns.
pub type rf_on_server_event = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        server: *mut rf_server,
        player: rf_player_id,
        args: *const rf_tuple,
    ),
>;
/// Decide one handshake with `rf_auth_accept` or `rf_auth_reject` before returning; deciding
/// neither rejects. `place` and `token` are valid until the callback returns.
pub type rf_on_authenticate = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        server: *mut rf_server,
        place: *const c_char,
        token: *const u8,
        token_len: usize,
        auth: *mut rf_auth,
    ),
>;

/// The settings of a live config.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
pub(super) unsafe fn config<'a>(
    c: *mut rf_server_config,
    _: &str,
) -> Result<&'a mut ServerConfig, Error> {
    // SAFETY: forwarded caller contract.
    Ok(&mut unsafe { handle_mut(c, "config") }?.config)
}

/// A config to create a server with: NULL is the defaults.
///
/// # Safety
/// `c` is NULL or a live config.
unsafe fn config_or_default(c: *const rf_server_config, _: &str) -> Result<ServerConfig, Error> {
    // SAFETY: forwarded caller contract.
    Ok(unsafe { c.as_ref() }.map_or_else(ServerConfig::default, |c| c.config.clone()))
}

/// Shared access to a live server.
///
/// # Safety
/// `s` is NULL or a live server.
pub(crate) unsafe fn server<'a>(s: *const rf_server, _: &str) -> Result<&'a Server, Error> {
    // SAFETY: forwarded caller contract.
    Ok(&unsafe { handle(s, "server") }?.server)
}

/// Creates a config with the embedded defaults (4 workers, worker dispatch, 4 MiB payloads,
/// depth 64, 256 queued calls per unbound function). The caller frees it.
#[no_mangle]
pub extern "C" fn rf_server_config_new() -> *mut rf_server_config {
    boundary! { Box::into_raw(Box::new(rf_server_config { config: ServerConfig::default() })) }
}

/// Frees a config. NULL is a no-op.
///
/// # Safety
/// `c` is NULL or a config of this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_free(c: *mut rf_server_config) {
    boundary! {
        if !c.is_null() {
            // SAFETY: a non-NULL config was created by `rf_server_config_new`, freed once.
            drop(unsafe { Box::from_raw(c) });
        }
    }
}

/// Sets the number of handler worker threads (at least 1).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_workers(
    c: *mut rf_server_config,
    n: u32,
) -> rf_status {
    setter!(config(c), workers = at_least(n, 1, "workers")? as usize)
}

/// Sets the number of event loop threads (1 to 128; default 1). Each owns the players it
/// serves (accepts are dealt to the loops in turn); host links to relays live on the first.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_reactors(
    c: *mut rf_server_config,
    n: u32,
) -> rf_status {
    setter!(config(c), reactors = crate::ids::check_loops(n as usize)?)
}

/// Sets where handlers run: library workers, or only inside `rf_server_dispatch`.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_dispatch(
    c: *mut rf_server_config,
    mode: rf_dispatch,
) -> rf_status {
    setter!(config(c), dispatch = mode.mode()?)
}

/// Sets the largest frame (in bytes, at least 64) a player may send and the server will send.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_max_payload(
    c: *mut rf_server_config,
    bytes: u32,
) -> rf_status {
    limit!(config(c), max_payload = bytes)
}

/// Sets the deepest table nesting accepted in values (at least 1; default 64).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_max_depth(
    c: *mut rf_server_config,
    depth: u32,
) -> rf_status {
    limit!(config(c), max_depth = depth as usize)
}

/// Sets how many calls (and events) may wait per function name while no handler is bound
/// (default 256; 0 fails such calls at once with `RF_ERR_LIMIT`).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_queue_limit(
    c: *mut rf_server_config,
    calls: u32,
) -> rf_status {
    limit!(config(c), queue_per_function = calls as usize)
}

/// Sets how long a connection may take to complete the handshake, in milliseconds (at least
/// 1; default 10,000).
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_handshake_timeout(
    c: *mut rf_server_config,
    ms: u32,
) -> rf_status {
    limit!(config(c), handshake_timeout = millis(ms))
}

/// Sets how long a player may stay silent before it is disconnected, in milliseconds; it is
/// pinged after a third of it (its client answers by itself). 0 disables. Default 60,000.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_idle_timeout(
    c: *mut rf_server_config,
    ms: u32,
) -> rf_status {
    limit!(config(c), idle_timeout = millis(ms))
}

/// Sets how many calls one player may have unanswered at once (at least 1; default 64);
/// one more disconnects the player.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_max_inflight_per_player(
    c: *mut rf_server_config,
    calls: u32,
) -> rf_status {
    limit!(config(c), max_inflight_per_player = calls)
}

/// Sets the per-player rate limit on calls and events: `per_sec` on average (0: unlimited),
/// `burst` at once (at least 1). A faster player is slowed down to the rate (its input is left
/// unread until tokens refill) and loses nothing; only one that stays over it for the time set
/// by `rf_server_config_set_rate_cut_after` is disconnected. Default 10,000 and 10,000.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_rate_limit(
    c: *mut rf_server_config,
    per_sec: u32,
    burst: u32,
) -> rf_status {
    limit!(config(c), rate_per_sec = per_sec, rate_burst = burst)
}

/// Sets how long a player may stay over its rate without a break before it is disconnected
/// with reason "rate limit", in milliseconds; 0 never disconnects (the player is only slowed
/// down). Default 30,000.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_rate_cut_after(
    c: *mut rf_server_config,
    ms: u32,
) -> rf_status {
    limit!(config(c), rate_cut_after = millis(ms))
}

/// Sets how many players may be connected at once (at least 1; default 100,000); the next
/// handshake is refused.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_max_players(
    c: *mut rf_server_config,
    players: u32,
) -> rf_status {
    limit!(config(c), max_players = players as usize)
}

/// Sets how many bytes may wait to be sent to one player (at least 64 KiB; default 8 MiB); a
/// player that stops reading past it is disconnected.
///
/// # Safety
/// `c` is NULL or a live config used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_server_config_set_max_output_buffer(
    c: *mut rf_server_config,
    bytes: u32,
) -> rf_status {
    limit!(config(c), max_output_buffer = bytes as usize)
}

/// Creates a server (`c` NULL: defaults; the config is copied and may be freed after). It does
/// not listen yet. The caller frees it with `rf_server_free`.
///
/// # Safety
/// `c` is NULL or a live config; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_new(
    c: *const rf_server_config,
    out: *mut *mut rf_server,
) -> rf_status {
    entry!(out = out_handle(out), config = config_or_default(c) => {
        let server = Server::new(config)?;
        *out = Box::into_raw(Box::new(rf_server {
            server,
            scripts: super::Scripts::default(),
        }));
        Ok(())
    })
}

/// Listens for players on `addr` ("127.0.0.1:0" picks a free port; see
/// `rf_server_local_port`). A server listens once.
///
/// # Safety
/// `s` is NULL or a live server; `addr` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_server_listen(s: *mut rf_server, addr: *const c_char) -> rf_status {
    entry!(srv = server(s), addr = c_str(addr) => srv.listen(addr).map(drop))
}

/// The port the server listens on; `RF_ERR_INVALID_ARGUMENT` before `rf_server_listen`.
///
/// # Safety
/// `s` is NULL or a live server; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_local_port(s: *const rf_server, out: *mut u16) -> rf_status {
    entry!(srv = server(s), out = out_ptr(out) => {
        *out = srv.local_addr().ok_or_else(|| invalid("the server is not listening"))?.port();
        Ok(())
    })
}

/// Serves the players of place `place` through a relay (`remotefn relay`) whose host address
/// is `relay_addr`, presenting `secret` (the relay's `--secret`; NULL when it has none). May be
/// combined with `rf_server_listen` and called for several relays.
///
/// Blocks until attached (up to 10 s): `RF_ERR_IO` when the relay cannot be reached,
/// `RF_ERR_REJECTED` when it refuses (wrong secret, place already served), `RF_ERR_TIMEOUT`.
/// Once attached, relayed players are served exactly like direct ones (handlers, invoke,
/// events, kick, the authenticator decides their handshakes). If the link drops later, its
/// players are removed and the server reattaches in the background with exponential backoff.
///
/// # Safety
/// `s` is NULL or a live server; `relay_addr` is NULL or a NUL-terminated string; `place` is
/// NULL or a NUL-terminated string; `secret` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_server_attach(
    s: *mut rf_server,
    relay_addr: *const c_char,
    place: *const c_char,
    secret: *const c_char,
) -> rf_status {
    entry!(
        srv = server(s),
        addr = c_str(relay_addr),
        place = c_str(place),
        secret = optional_str(secret) => srv.attach(addr, place, secret)
    )
}

/// Stops and frees the server: players get a goodbye, pending `rf_server_invoke_client` calls
/// fail with `RF_ERR_CLOSED`, and the library's threads are joined before this returns (so no
/// callback runs afterwards). NULL is a no-op. Do not call it from a callback of this server.
///
/// # Safety
/// `s` is NULL or a server of this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rf_server_free(s: *mut rf_server) {
    boundary! {
        if !s.is_null() {
            // Stop through a shared reference first: callbacks still running may use `s`.
            // SAFETY: a non-NULL server was created by `rf_server_new` and is live.
            let live = unsafe { &*s };
            live.scripts.stop();
            live.server.shutdown();
            // SAFETY: no thread of the library uses `s` any more; freed once.
            drop(unsafe { Box::from_raw(s) });
        }
    }
}

/// Loads and runs the Luau server script at `path` (Roblox's `Script` surface: its remotes
/// under ReplicatedStorage are served by name, beside the handlers bound in C). It returns once
/// the script's main chunk finished or first yielded; a syntax error, an unreadable file or an
/// error raised before the first yield is `RF_ERR_SCRIPT` (or `RF_ERR_IO`) with the message in
/// `rf_last_error()`. The first script starts the server's script host (one Luau state, one
/// scheduler thread, 1 s of CPU per resumption, 64 MiB); `require` looks in that script's
/// folder. Without the library's `luau` feature it is always `RF_ERR_SCRIPT`.
///
/// # Safety
/// `s` is NULL or a live server; `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_server_load_script(
    s: *mut rf_server,
    path: *const c_char,
) -> rf_status {
    entry!(srv = handle(s), path = c_str(path) => {
        srv.scripts.load(super::ScriptTarget::Server(&srv.server), path)
    })
}

/// Binds the `OnServerInvoke` handler of `function` (replacing any previous one). Calls that
/// waited for a handler are dispatched now. `user` is passed back to `cb` untouched.
///
/// # Safety
/// `s` is NULL or a live server; `function` is NULL or a NUL-terminated string; `cb`, if not
/// NULL, may be called with `user` from library threads until the server is freed; `user` is
/// NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_bind(
    s: *mut rf_server,
    function: *const c_char,
    cb: rf_on_server_invoke,
    user: *mut c_void,
) -> rf_status {
    entry!(srv = server(s), name = c_str(function) => {
        let handler = invoke_handler(s, cb, user)?;
        srv.bind_with_call_id(name, move |_, player, args, call| handler(player, args, call))
    })
}

/// The C callback `cb` of server `s` as a Rust handler.
fn invoke_handler(
    s: *mut rf_server,
    cb: rf_on_server_invoke,
    user: *mut c_void,
) -> Result<impl Fn(PlayerId, Tuple, CallId) + Send + Sync + 'static, Error> {
    let cb = cb.ok_or_else(|| invalid("callback is NULL"))?;
    let (me, user) = (HandlePtr(s), UserData(user));
    Ok(move |player: PlayerId, args: Tuple, call: CallId| {
        let args = rf_tuple::from_tuple(args);
        // SAFETY: `cb` is the C function given at bind time; `me` stays valid while callbacks
        // run (rf_server_free joins the loop and the workers first); `args` outlives the call.
        unsafe { cb(user.get(), me.get(), player.get(), &args, call.get()) }
    })
}

/// Binds `function` to an `OnServerInvoke` handler declared non-blocking: `cb` runs on the
/// server's event loop thread as each call arrives, with no hand-off to a worker (the fastest
/// path, for handlers that only compute). `cb` completes `call` with `rf_server_return` or
/// `rf_server_error` before it returns (not later; returning without doing so fails the
/// call). It must not block: `rf_server_invoke_client` inside it fails with
/// `RF_ERR_INVALID_ARGUMENT`, and a slow `cb` delays every player. Rebinding with
/// `rf_server_bind` moves the function back to the workers; `rf_server_unbind` removes it.
///
/// # Safety
/// `s` is NULL or a live server; `function` is NULL or a NUL-terminated string; `cb`, if not
/// NULL, may be called with `user` from library threads until the server is freed; `user` is
/// NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_bind_inline(
    s: *mut rf_server,
    function: *const c_char,
    cb: rf_on_server_invoke,
    user: *mut c_void,
) -> rf_status {
    entry!(srv = server(s), name = c_str(function) => {
        let handler = invoke_handler(s, cb, user)?;
        // The answer is captured through `call` by `rf_server_return` / `rf_server_error` on
        // this thread before `cb` returns.
        srv.bind_inline_with_call_id(name, move |player, args, call| {
            handler(player, args, call);
            None
        })
    })
}

/// Removes the handler of `function`; later calls wait for a new one. Not bound:
/// `RF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `s` is NULL or a live server; `function` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_server_unbind(s: *mut rf_server, function: *const c_char) -> rf_status {
    entry!(srv = server(s), name = c_str(function) => {
        srv.unbind(name)
    })
}

/// Takes ownership of a results tuple (NULL: no values).
///
/// # Safety
/// `results` is NULL or a tuple created by this library and not used after this call.
pub(crate) unsafe fn take_results(results: *mut rf_tuple, _: &str) -> Result<rf_tuple, Error> {
    if results.is_null() {
        Ok(rf_tuple::default())
    } else {
        // SAFETY: the caller hands over a live tuple it no longer uses.
        Ok(*unsafe { Box::from_raw(results) })
    }
}

/// Borrowed arguments (NULL: none).
///
/// # Safety
/// `args` is NULL or a live tuple.
pub(crate) unsafe fn borrow_args<'a>(
    args: *const rf_tuple,
    _: &str,
) -> Result<std::borrow::Cow<'a, [crate::Value]>, Error> {
    // SAFETY: forwarded caller contract.
    match unsafe { args.as_ref() } {
        Some(t) => t.sendable(),
        None => Ok(std::borrow::Cow::Borrowed(&[])),
    }
}

/// Completes inbound call `call` with `results`, which is consumed in every case (NULL: no
/// values). An unknown or already completed id, or a tuple with a table still open, is
/// `RF_ERR_INVALID_ARGUMENT` and completes nothing. Any thread.
///
/// # Safety
/// `s` is NULL or a live server; `results` is NULL or a tuple of this library, which the caller
/// does not use afterwards.
#[no_mangle]
pub unsafe extern "C" fn rf_server_return(
    s: *mut rf_server,
    call: rf_call_id,
    results: *mut rf_tuple,
) -> rf_status {
    // `results` first: it is consumed whatever happens next.
    entry!(results = take_results(results), srv = server(s) => {
        srv.reply(CallId::from_raw(call), Ok(&results.sendable()?))
    })
}

/// Completes inbound call `call` with an error: the caller's invoke fails with `RF_ERR_REMOTE`
/// and `message` as its `rf_last_error()`. Unknown or completed id: `RF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `s` is NULL or a live server; `message` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_server_error(
    s: *mut rf_server,
    call: rf_call_id,
    message: *const c_char,
) -> rf_status {
    entry!(srv = server(s), message = c_str(message) => {
        srv.reply(CallId::from_raw(call), Err(message))
    })
}

/// `InvokeClient`: calls `function` on `player`'s client and blocks until it returns
/// (`RF_OK`, `*out_results` a new tuple the caller frees), raises (`RF_ERR_REMOTE`), the player
/// disconnects (`RF_ERR_DISCONNECTED`), `timeout_ms` passes (`RF_ERR_TIMEOUT`; 0 waits
/// forever), or the server is freed (`RF_ERR_CLOSED`). Unknown player: `RF_ERR_NOT_FOUND`.
/// `args` is borrowed (NULL: no arguments). On any error `*out_results` is set to NULL. Any
/// thread, including a handler's (nested calls do not starve the workers).
///
/// # Safety
/// `s` is NULL or a live server; `function` is NULL or a NUL-terminated string; `args` is NULL
/// or a live tuple; `out_results` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_invoke_client(
    s: *mut rf_server,
    player: rf_player_id,
    function: *const c_char,
    args: *const rf_tuple,
    timeout_ms: u32,
    out_results: *mut *mut rf_tuple,
) -> rf_status {
    entry!(
        out = out_handle(out_results),
        srv = server(s),
        name = c_str(function),
        args = borrow_args(args) => {
        // Hold the server's state for the whole wait: rf_server_free may run meanwhile (it
        // fails this call with RF_ERR_CLOSED), and must not free it under this thread.
        let srv = srv.handle();
        let results = srv.invoke_client(
            PlayerId::from_raw(player),
            name,
            &args,
            to_timeout(timeout_ms),
        )?;
        *out = Box::into_raw(Box::new(rf_tuple::from_tuple(results)));
        Ok(())
    })
}

/// Registers a hook, shared by PlayerAdded and PlayerRemoving.
///
/// # Safety
/// `s` NULL or a live server.
unsafe fn on_player(
    s: *mut rf_server,
    cb: rf_on_player,
    user: *mut c_void,
    added: bool,
) -> rf_status {
    entry!(srv = server(s) => {
        let cb = cb.ok_or_else(|| invalid("callback is NULL"))?;
        let (me, user) = (HandlePtr(s), UserData(user));
        let hook = move |_: &crate::ServerHandle, player: PlayerId| {
            // SAFETY: `cb` is the C function given; `me` outlives every callback.
            unsafe { cb(user.get(), me.get(), player.get()) }
        };
        if added {
            srv.on_player_added(hook);
        } else {
            srv.on_player_removing(hook);
        }
        Ok(())
    })
}

/// Adds a callback run when a player completes the handshake (PlayerAdded). Callbacks for one
/// player run in order: added, then its events, then removing.
///
/// # Safety
/// `s` is NULL or a live server; `cb`, if not NULL, may be called with `user` from library
/// threads until the server is freed; `user` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_on_player_added(
    s: *mut rf_server,
    cb: rf_on_player,
    user: *mut c_void,
) -> rf_status {
    // SAFETY: the caller's obligations (above) are `on_player`'s.
    unsafe { on_player(s, cb, user, true) }
}

/// Adds a callback run when a player leaves for any reason (PlayerRemoving).
///
/// # Safety
/// `s` is NULL or a live server; `cb`, if not NULL, may be called with `user` from library
/// threads until the server is freed; `user` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_on_player_removing(
    s: *mut rf_server,
    cb: rf_on_player,
    user: *mut c_void,
) -> rf_status {
    // SAFETY: the caller's obligations (above) are `on_player`'s.
    unsafe { on_player(s, cb, user, false) }
}

/// Disconnects `player`; its client sees `reason` (NULL: "kicked"). Unknown player:
/// `RF_ERR_NOT_FOUND`.
///
/// # Safety
/// `s` is NULL or a live server; `reason` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_server_kick(
    s: *mut rf_server,
    player: rf_player_id,
    reason: *const c_char,
) -> rf_status {
    entry!(srv = server(s), reason = optional_str(reason) => {
        srv.kick(PlayerId::from_raw(player), reason.unwrap_or("kicked"))
    })
}

/// The number of connected players (handshake completed).
///
/// # Safety
/// `s` is NULL or a live server; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_player_count(s: *const rf_server, out: *mut usize) -> rf_status {
    entry!(srv = server(s), out = out_ptr(out) => {
        *out = srv.player_count();
        Ok(())
    })
}

/// The user id the authenticator gave `player` (0 without an authenticator). Unknown player:
/// `RF_ERR_NOT_FOUND`.
///
/// # Safety
/// `s` is NULL or a live server; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_player_user_id(
    s: *const rf_server,
    player: rf_player_id,
    out: *mut u64,
) -> rf_status {
    entry!(srv = server(s), out = out_ptr(out) => {
        let player = PlayerId::from_raw(player);
        *out = srv.player_info(player).ok_or(Error::NotFound(player))?.identity.user_id;
        Ok(())
    })
}

/// Sets the authenticator: each handshake's place and token go to `cb` on a worker thread
/// (never the reactor), which decides with `rf_auth_accept` / `rf_auth_reject`.
///
/// # Safety
/// `s` is NULL or a live server; `cb`, if not NULL, may be called with `user` from library
/// threads until the server is freed; `user` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_set_authenticator(
    s: *mut rf_server,
    cb: rf_on_authenticate,
    user: *mut c_void,
) -> rf_status {
    entry!(srv = server(s) => {
        let cb = cb.ok_or_else(|| invalid("callback is NULL"))?;
        let (me, user) = (HandlePtr(s), UserData(user));
        srv.set_authenticator(move |req| {
            let place = CString::new(req.place.as_bytes()).map_err(|_| "place contains a NUL byte".to_owned())?;
            let mut auth = rf_auth { decision: None };
            // SAFETY: `cb` is the C function given; `me` outlives callbacks; `place`,
            // `token` and `auth` outlive the call.
            unsafe { cb(user.get(), me.get(), place.as_ptr(), req.token.as_ptr(), req.token.len(), &mut auth) };
            auth.decision.unwrap_or_else(|| Err("the authenticator did not decide".to_owned()))
        });
        Ok(())
    })
}

/// The handshake being decided.
///
/// # Safety
/// `a` is NULL or the `rf_auth` of the authenticator callback now running.
unsafe fn auth<'a>(a: *mut rf_auth, _: &str) -> Result<&'a mut rf_auth, Error> {
    // SAFETY: forwarded caller contract.
    unsafe { handle_mut(a, "auth") }
}

/// Records a decision once.
fn decide(auth: &mut rf_auth, decision: Result<Identity, String>) -> Result<(), Error> {
    if auth.decision.is_some() {
        return Err(invalid("this handshake is already decided"));
    }
    auth.decision = Some(decision);
    Ok(())
}

/// Accepts the handshake as `user_id` with display `name` (NULL: empty). Only inside the
/// callback; deciding twice is `RF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `a` is NULL or the `rf_auth` of the authenticator callback now running; `name` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_auth_accept(
    a: *mut rf_auth,
    user_id: u64,
    name: *const c_char,
) -> rf_status {
    entry!(auth = auth(a), name = optional_str(name) => {
        let name = name.unwrap_or("").to_owned();
        decide(auth, Ok(Identity { user_id, name }))
    })
}

/// Refuses the handshake; the client's `rf_client_connect` fails with `RF_ERR_REJECTED` and
/// `reason` (NULL: "rejected"). Only inside the callback.
///
/// # Safety
/// `a` is NULL or the `rf_auth` of the authenticator callback now running; `reason` is NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rf_auth_reject(a: *mut rf_auth, reason: *const c_char) -> rf_status {
    entry!(auth = auth(a), reason = optional_str(reason) => {
        decide(auth, Err(reason.unwrap_or("rejected").to_owned()))
    })
}

/// Binds the handler of RemoteEvent `event` fired by clients. Events from one player run in
/// the order they were fired; events for an unbound name wait (up to the queue limit).
///
/// # Safety
/// `s` is NULL or a live server; `event` is NULL or a NUL-terminated string; `cb`, if not NULL,
/// may be called with `user` from library threads until the server is freed; `user` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_bind_event(
    s: *mut rf_server,
    event: *const c_char,
    cb: rf_on_server_event,
    user: *mut c_void,
) -> rf_status {
    entry!(srv = server(s), name = c_str(event) => {
        let cb = cb.ok_or_else(|| invalid("callback is NULL"))?;
        let (me, user) = (HandlePtr(s), UserData(user));
        srv.bind_event(name, move |_, player, args: Tuple| {
            let args = rf_tuple::from_tuple(args);
            // SAFETY: as for rf_server_bind.
            unsafe { cb(user.get(), me.get(), player.get(), &args) }
        })
    })
}

/// FireClient: sends RemoteEvent `event` to one player (fire-and-forget, in order). `args` is
/// borrowed (NULL: none). Unknown player: `RF_ERR_NOT_FOUND`.
///
/// # Safety
/// `s` is NULL or a live server; `event` is NULL or a NUL-terminated string; `args` is NULL or
/// a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_server_fire_client(
    s: *mut rf_server,
    player: rf_player_id,
    event: *const c_char,
    args: *const rf_tuple,
) -> rf_status {
    entry!(srv = server(s), name = c_str(event), args = borrow_args(args) => {
        srv.fire_client(PlayerId::from_raw(player), name, &args)
    })
}

/// FireAllClients: sends RemoteEvent `event` to every connected player. `args` is borrowed.
///
/// # Safety
/// `s` is NULL or a live server; `event` is NULL or a NUL-terminated string; `args` is NULL or
/// a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_server_fire_all_clients(
    s: *mut rf_server,
    event: *const c_char,
    args: *const rf_tuple,
) -> rf_status {
    entry!(srv = server(s), name = c_str(event), args = borrow_args(args) => {
        srv.fire_all_clients(name, &args)
    })
}

/// `RF_DISPATCH_MANUAL` only: runs queued callbacks on this thread until `max_calls` have run
/// (0: all that are queued), waiting up to `timeout_ms` for the first; `*out_dispatched` is
/// how many of the game's callbacks (handlers, player hooks, the authenticator) ran. Internal
/// bookkeeping that calls nothing (a player joining with no hook registered) is not counted.
/// In worker mode: `RF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `s` is NULL or a live server; `out_dispatched` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_dispatch(
    s: *mut rf_server,
    max_calls: u32,
    timeout_ms: u32,
    out_dispatched: *mut u32,
) -> rf_status {
    entry!(srv = server(s), out = out_ptr(out_dispatched) => {
        let srv = srv.handle();
        pump(out, max_calls, timeout_ms, |max, timeout| srv.dispatch(max, timeout))
    })
}

/// Manual dispatch shared by servers and clients: runs `dispatch` and reports the count.
pub(crate) fn pump(
    out: &mut u32,
    max_calls: u32,
    timeout_ms: u32,
    dispatch: impl FnOnce(usize, Duration) -> Result<usize, Error>,
) -> Result<(), Error> {
    *out = 0;
    let max = if max_calls == 0 {
        usize::MAX
    } else {
        max_calls as usize
    };
    let ran = dispatch(max, Duration::from_millis(u64::from(timeout_ms)))?;
    *out = u32::try_from(ran).unwrap_or(u32::MAX);
    Ok(())
}

/// Inbound calls waiting for a handler to be bound to their function name (observability).
///
/// # Safety
/// `s` is NULL or a live server; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_queued_calls(s: *const rf_server, out: *mut usize) -> rf_status {
    entry!(srv = server(s), out = out_ptr(out) => {
        *out = srv.calls_waiting_for_handler();
        Ok(())
    })
}

/// `rf_server_invoke_client` calls currently waiting for an answer (observability).
///
/// # Safety
/// `s` is NULL or a live server; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_calls_in_flight(
    s: *const rf_server,
    out: *mut usize,
) -> rf_status {
    entry!(srv = server(s), out = out_ptr(out) => {
        *out = srv.calls_in_flight();
        Ok(())
    })
}

/// The server's metrics in the Prometheus text format (the same text as `remotefn serve
/// --metrics` serves; names `remotefn_server_*`), for an engine that exposes them itself.
/// `*len` is set to the text's length in bytes, without the terminating NUL. With `buf` NULL
/// (and `cap` 0) that is all: ask the size, allocate a little more (counters grow between two
/// calls), and call again. With `cap` greater than the length, the text and a NUL are written
/// to `buf`; otherwise nothing is written and the status is `RF_ERR_LIMIT`. Any thread.
///
/// # Safety
/// `s` is NULL or a live server; `buf` is NULL or valid for writes of `cap` bytes; `len` is
/// NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_server_metrics(
    s: *const rf_server,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> rf_status {
    entry!(srv = server(s), len = out_ptr(len) => {
        let text = srv.metrics();
        *len = text.len();
        if buf.is_null() {
            return Ok(());
        }
        if cap <= text.len() {
            return Err(Error::Limit(format!(
                "a buffer of {cap} bytes cannot hold {} bytes of metrics and a NUL",
                text.len()
            )));
        }
        // SAFETY: `buf` is valid for writes of `cap` bytes (the caller's contract), and
        // `cap > text.len()`, so the text and its NUL fit; the two do not overlap (the text
        // is ours).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            *buf.add(text.len()) = 0;
        }
        Ok(())
    })
}
