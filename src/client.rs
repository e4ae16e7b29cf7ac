//! The player's API: connect, invoke the server, bind `OnClientInvoke` handlers, fire events.

use crate::dispatch::DispatchMode;
use crate::driver::dial;
use crate::endpoint::{Endpoint, Responder, Side};
use crate::error::{Error, Result};
use crate::ids::{CallId, ConnId, PlayerId};
use crate::limits::Limits;
use crate::proto::Frame;
use crate::reactor::Reactor;
use crate::tls::{ClientTlsConfig, Connector};
use crate::value::{Tuple, Value};
use bytes::Bytes;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

/// How a client connects. `ClientConfig::default()` connects anonymously to an embedded server.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Credentials for the server's authenticator. Default: empty.
    pub token: Bytes,
    /// The place to join (relay deployments). Default: empty.
    pub place: String,
    /// Where `OnClientInvoke` handlers run. Default: [`DispatchMode::Workers`].
    pub dispatch: DispatchMode,
    /// Handler worker threads. Default: 1 (a player's handlers rarely need more).
    pub workers: usize,
    /// How long connecting and the handshake may take. Default: 10 s.
    pub connect_timeout: Duration,
    /// What the client allows its server. Default: [`Limits::client`]. When the server is not
    /// heard from for `idle_timeout`, the connection closes and pending calls fail with
    /// Disconnected.
    pub limits: Limits,
    /// How long the client's event loop keeps polling without sleeping after a turn with
    /// events, so the answer to a call is seen without a scheduler wake-up (tens of
    /// microseconds on a VM) at the price of up to that much spinning per turn. Zero: the loop
    /// sleeps at once (for a client that calls rarely and must not spend a core). Default:
    /// 50 us; at most [`MAX_BUSY_POLL`].
    pub busy_poll: Duration,
    /// Speak TLS to the server, verified as these settings say. Default: plaintext.
    pub tls: Option<ClientTlsConfig>,
}

/// The longest [`ClientConfig::busy_poll`] a client takes: a longer window no longer saves a
/// wake-up, it only keeps a core spinning.
pub const MAX_BUSY_POLL: Duration = Duration::from_secs(1);

/// Refuses a busy-poll window longer than [`MAX_BUSY_POLL`] (the one rule the Rust API and
/// the C setter apply).
pub(crate) fn check_busy_poll(window: Duration) -> Result<()> {
    if window > MAX_BUSY_POLL {
        return Err(Error::InvalidArgument(format!(
            "busy poll is at most {} us, not {} us",
            MAX_BUSY_POLL.as_micros(),
            window.as_micros()
        )));
    }
    Ok(())
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            token: Bytes::new(),
            place: String::new(),
            dispatch: DispatchMode::Workers,
            workers: 1,
            connect_timeout: Duration::from_secs(10),
            limits: Limits::client(),
            busy_poll: Duration::from_micros(50),
            tls: None,
        }
    }
}

/// A connected player. Dropping it disconnects (see [`ClientHandle::close`]).
///
/// All operations live on [`ClientHandle`], which `Client` dereferences to. One client may be
/// shared by many threads: each call gets its own answer.
pub struct Client {
    handle: ClientHandle,
}

/// A cheap, clonable reference to a [`Client`]. It does not keep the connection open.
#[derive(Clone)]
pub struct ClientHandle {
    ep: Arc<Endpoint>,
    conn: ConnId,
    player: PlayerId,
}

impl Client {
    /// Connects to a server (or relay) at `addr` (`"host:port"`, or a `SocketAddr`) and
    /// completes the handshake, over TLS when [`ClientConfig::tls`] says so (the server's
    /// certificate must then name the host of `addr`, unless the settings name the server).
    ///
    /// Fails with [`Error::Rejected`] (the server's reason) when refused, [`Error::Timeout`]
    /// when `connect_timeout` passes, [`Error::Tls`] when TLS fails (an untrusted, expired or
    /// misnamed certificate, a server that does not speak TLS or speaks only TLS: see
    /// [`TlsError::kind`](crate::TlsError::kind)), or [`Error::Io`]; with
    /// [`Error::InvalidArgument`] before connecting when the limits or the busy-poll window
    /// are out of bounds.
    pub fn connect(addr: impl Display, config: ClientConfig) -> Result<Client> {
        config.limits.validate()?;
        check_busy_poll(config.busy_poll)?;
        let tls = config.tls.as_ref().map(Connector::load).transpose()?;
        let hello = Frame::Hello {
            place: config.place.clone(),
            token: config.token.clone(),
        };
        let timeout = config.connect_timeout;
        let (dialled, welcome) = dial::dial(
            &addr.to_string(),
            tls.as_ref(),
            &hello,
            config.limits.max_payload,
            timeout,
            dial::SERVER,
        )?;
        let Frame::Welcome {
            player,
            max_frame: server_max_frame,
        } = welcome
        else {
            return Err(Error::Protocol(
                "the server answered with a host's welcome".into(),
            ));
        };

        let ep = Endpoint::start(
            Side::Client,
            config.limits,
            server_max_frame,
            config.dispatch,
            config.workers,
            1,
        );
        let started =
            Reactor::client(ep.clone(), dialled, config.busy_poll).and_then(|(reactor, conn)| {
                let thread = std::thread::Builder::new()
                    .name("rf-client-reactor".into())
                    .spawn(move || reactor.run())?;
                ep.reactors().push(thread);
                Ok(conn)
            });
        match started {
            Ok(conn) => Ok(Client {
                handle: ClientHandle {
                    ep,
                    conn,
                    player: PlayerId::from_raw(player),
                },
            }),
            Err(e) => {
                ep.shutdown();
                Err(e.into())
            }
        }
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ClientHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for Client {
    type Target = ClientHandle;
    fn deref(&self) -> &ClientHandle {
        &self.handle
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.handle.close();
    }
}

impl ClientHandle {
    /// The id the server gave this player.
    pub fn player_id(&self) -> PlayerId {
        self.player
    }

    /// Whether the connection to the server is still up.
    pub fn is_connected(&self) -> bool {
        !self.ep.is_closed() && self.ep.lost().is_none()
    }

    /// Calls `function` on the server and blocks until its handler returns or raises, the
    /// connection drops, `timeout` elapses (`None`: wait forever), or the client is closed.
    pub fn invoke_server(
        &self,
        function: &str,
        args: &[Value],
        timeout: Option<Duration>,
    ) -> Result<Tuple> {
        self.ep.invoke(self.conn, function, args, timeout)
    }

    /// Calls `function` on the server without blocking: `on_done` receives what
    /// [`invoke_server`](Self::invoke_server) would return, with no timeout; see
    /// [`crate::ServerHandle::invoke_client_then`].
    pub fn invoke_server_then<F>(&self, function: &str, args: &[Value], on_done: F) -> Result<()>
    where
        F: FnOnce(Result<Tuple>) + Send + 'static,
    {
        self.ep.invoke_then(self.conn, function, args, on_done)
    }

    /// Fires `event` at the server (fire-and-forget, in order).
    pub fn fire_server(&self, event: &str, args: &[Value]) -> Result<()> {
        self.ep.fire(self.conn, event, args)
    }

    /// Binds the `OnClientInvoke` handler of `function`; its return value (or error, as a
    /// message) goes back to the server.
    pub fn bind<F, E>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(&ClientHandle, Tuple) -> std::result::Result<Tuple, E> + Send + Sync + 'static,
        E: Display,
    {
        let me = self.ids();
        self.ep.bind(
            function,
            Arc::new(move |ep, _, args, call| {
                let _ = ep.reply_result(call, handler(&me.with_endpoint(ep), args));
            }),
        )
    }

    /// Binds an `OnClientInvoke` handler declared non-blocking, run on the client's event
    /// loop as each call arrives; see [`crate::ServerHandle::bind_inline`] for what it must not
    /// do.
    pub fn bind_inline<F, E>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(Tuple) -> std::result::Result<Tuple, E> + Send + Sync + 'static,
        E: Display,
    {
        self.ep.bind_inline(
            function,
            Arc::new(move |_, args, _| Some(handler(args).map_err(|e| e.to_string()))),
        )
    }

    /// [`bind_inline`](Self::bind_inline) for a handler that may answer through its call id
    /// with [`reply`](Self::reply) before it returns (the C ABI's form); `None` says it did.
    pub(crate) fn bind_inline_with_call_id<F>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(Tuple, CallId) -> Option<std::result::Result<Tuple, String>> + Send + Sync + 'static,
    {
        self.ep
            .bind_inline(function, Arc::new(move |_, args, call| handler(args, call)))
    }

    /// Binds a handler that answers through a [`Responder`], possibly later and from another
    /// thread.
    pub fn bind_deferred<F>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(&ClientHandle, Tuple, Responder) + Send + Sync + 'static,
    {
        let me = self.ids();
        self.ep.bind(
            function,
            Arc::new(move |ep, _, args, call| {
                handler(
                    &me.with_endpoint(ep),
                    args,
                    Responder::new(ep.clone(), call),
                )
            }),
        )
    }

    /// Binds a handler that completes its call by id with [`reply`](Self::reply).
    pub fn bind_with_call_id<F>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(&ClientHandle, Tuple, CallId) + Send + Sync + 'static,
    {
        let me = self.ids();
        self.ep.bind(
            function,
            Arc::new(move |ep, _, args, call| handler(&me.with_endpoint(ep), args, call)),
        )
    }

    /// Removes the handler of `function`.
    pub fn unbind(&self, function: &str) -> Result<()> {
        self.ep.unbind(function)
    }

    /// Completes inbound call `call`; see [`crate::ServerHandle::reply`].
    pub fn reply(&self, call: CallId, result: std::result::Result<&[Value], &str>) -> Result<()> {
        self.ep.reply(call, result)
    }

    /// Binds the handler of a `RemoteEvent` fired by the server.
    pub fn bind_event<F>(&self, event: &str, handler: F) -> Result<()>
    where
        F: Fn(&ClientHandle, Tuple) + Send + Sync + 'static,
    {
        let me = self.ids();
        self.ep.bind_event(
            event,
            Arc::new(move |ep, _, args| handler(&me.with_endpoint(ep), args)),
        )
    }

    /// Manual dispatch: runs queued work on this thread until `max` of the game's callbacks
    /// (handlers, player hooks, the authenticator) have run, waiting up to `timeout` for the
    /// first. Returns how many callbacks ran; library bookkeeping that calls nothing of the
    /// game's (a join with no `on_player_added` hook, say) is not counted.
    pub fn dispatch(&self, max: usize, timeout: Duration) -> Result<usize> {
        self.ep.dispatch(max, timeout)
    }

    /// The client's counters: calls, bytes, and how its connection ended.
    pub fn stats(&self) -> crate::Stats {
        self.ep.stats()
    }

    /// `invoke_server` calls currently waiting for an answer.
    pub fn calls_in_flight(&self) -> usize {
        self.ep.calls().in_flight()
    }

    /// Disconnects: pending calls fail with [`Error::Closed`], the server gets a goodbye, and
    /// the client's threads are joined. Idempotent.
    pub fn close(&self) {
        self.ep.shutdown();
    }

    /// The ids a handler closure needs, without an endpoint reference (which it receives per
    /// call), so handlers never keep the client alive.
    fn ids(&self) -> IdsOnly {
        IdsOnly {
            conn: self.conn,
            player: self.player,
        }
    }
}

/// A client's ids, captured by handler closures instead of a full handle.
#[derive(Clone, Copy)]
struct IdsOnly {
    conn: ConnId,
    player: PlayerId,
}

impl IdsOnly {
    fn with_endpoint(&self, ep: &Arc<Endpoint>) -> ClientHandle {
        ClientHandle {
            ep: ep.clone(),
            conn: self.conn,
            player: self.player,
        }
    }
}
