//! The game server's API: listen for players, bind `OnServerInvoke` handlers, invoke clients.

use crate::dispatch::DispatchMode;
use crate::endpoint::{AuthRequest, Endpoint, Identity, PlayerInfo, Responder, Side, TlsSetup};
use crate::error::{Error, Result};
use crate::ids::{CallId, ConnId};
use crate::limits::Limits;
use crate::proto::GoodbyeCode;
use crate::reactor::Reactor;
use crate::tls::{Acceptor, ClientTlsConfig, Connector, ServerTlsConfig};
use crate::value::{Tuple, Value};
use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use crate::ids::PlayerId;

/// How a server is set up. `ServerConfig::default()` gives the embedded defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Handler worker threads (worker dispatch). Default: 4.
    pub workers: usize,
    /// Where handlers run. Default: [`DispatchMode::Workers`].
    pub dispatch: DispatchMode,
    /// What the server allows its players. Default: [`Limits::default`].
    pub limits: Limits,
    /// Event loop threads (1 to 128). Default: 1. Each owns the players it serves: accepts
    /// are dealt to the loops in turn, and every operation on a player (its calls both ways,
    /// events, kick) goes to its loop. Host links to relays, and the players they carry, live
    /// on the first loop. One loop serves ~150k pipelined calls/s per core; more loops are
    /// for machines with the cores to run them.
    pub reactors: usize,
    /// Serve players over TLS with this certificate (read when the server is created, again
    /// by [`ServerHandle::reload_tls`]). Default: plaintext.
    pub tls: Option<ServerTlsConfig>,
    /// Speak TLS to relays ([`ServerHandle::attach`]), verified as these settings say.
    /// Default: plaintext.
    pub relay_tls: Option<ClientTlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: 4,
            dispatch: DispatchMode::Workers,
            limits: Limits::default(),
            reactors: 1,
            tls: None,
            relay_tls: None,
        }
    }
}

/// A game server. Dropping it shuts it down (see [`ServerHandle::shutdown`]).
///
/// All operations live on [`ServerHandle`], which `Server` dereferences to; clone a handle to
/// use the server from other threads or inside handlers.
pub struct Server {
    handle: ServerHandle,
}

/// A cheap, clonable reference to a [`Server`]. It does not keep the server running: once the
/// `Server` is dropped or shut down, operations fail with [`Error::Closed`].
#[derive(Clone)]
pub struct ServerHandle {
    ep: Arc<Endpoint>,
}

impl Server {
    /// Creates a server: starts its handler workers, but does not listen yet.
    pub fn new(config: ServerConfig) -> Result<Server> {
        config.limits.validate()?;
        crate::ids::check_loops(config.reactors)?;
        let tls = TlsSetup {
            players: config.tls.as_ref().map(Acceptor::load).transpose()?,
            relays: config.relay_tls.as_ref().map(Connector::load).transpose()?,
        };
        let max_send = config.limits.max_payload;
        let ep = Endpoint::start(
            Side::Server,
            config.limits,
            max_send,
            config.dispatch,
            config.workers,
            config.reactors,
        );
        ep.set_tls(tls);
        Ok(Server {
            handle: ServerHandle { ep },
        })
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for Server {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.handle
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl ServerHandle {
    fn from_endpoint(ep: &Arc<Endpoint>) -> ServerHandle {
        ServerHandle { ep: ep.clone() }
    }

    /// Fails unless the server is open and `player` is connected.
    fn check_player(&self, player: PlayerId) -> Result<()> {
        self.ep.check_open()?;
        if self.ep.has_player(player) {
            Ok(())
        } else {
            Err(Error::NotFound(player))
        }
    }

    /// Listens for players on `addr` (`"127.0.0.1:0"` picks a free port) and starts the reactor.
    /// Returns the bound address. A server listens once; it may also serve relays
    /// ([`attach`](Self::attach)).
    pub fn listen(&self, addr: impl ToSocketAddrs) -> Result<SocketAddr> {
        self.ep.check_open()?;
        if self.ep.local_addr().is_some() {
            return Err(Error::InvalidArgument(
                "this server is already listening".into(),
            ));
        }
        let listener = crate::driver::socket::bind_listener(addr)
            .map_err(|e| Error::io_from("cannot listen", e))?;
        let local = listener.local_addr()?;
        let mut reactors = self.ep.reactors();
        if !reactors.is_empty() {
            // Already running for relay links: hand it the listener.
            let (done, result) = crossbeam_channel::bounded(1);
            self.ep
                .command(crate::endpoint::Command::Listen { listener, done });
            result
                .recv()
                .map_err(|_| Error::Closed("shut down".into()))?
                .map_err(|e| Error::io_from("cannot listen", e))?;
        } else {
            *reactors = self.start_reactors(Some(listener))?;
        }
        self.ep.set_local_addr(local);
        tracing::info!(%local, "listening for players");
        Ok(local)
    }

    /// Starts the event loops, the first on `listener` (it accepts for all of them).
    fn start_reactors(
        &self,
        listener: Option<std::net::TcpListener>,
    ) -> Result<Vec<std::thread::JoinHandle<()>>> {
        let mut listener = listener;
        let mut threads = Vec::new();
        for event_loop in 0..self.ep.loop_count() {
            let reactor = match Reactor::server(self.ep.clone(), event_loop, listener.take()) {
                Ok(reactor) => reactor,
                Err(e) => {
                    // The loops started so far stop with the endpoint.
                    self.ep.command(crate::endpoint::Command::Shutdown);
                    threads
                        .into_iter()
                        .for_each(|t: std::thread::JoinHandle<()>| {
                            let _ = t.join();
                        });
                    return Err(e.into());
                }
            };
            let name = match event_loop {
                0 => "rf-server-reactor".to_owned(),
                n => format!("rf-server-reactor-{n}"),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || reactor.run())?,
            );
        }
        Ok(threads)
    }

    /// Serves the players of the place `place` through a relay (`remotefn relay`) at
    /// `relay_addr`, authenticating to it with `secret` (the relay's `--secret`, if it has one).
    ///
    /// Returns once attached: `Error::Io` when the relay cannot be reached, `Error::Rejected`
    /// when it refuses (wrong secret, place taken). Once attached, everything works as for
    /// players connected directly: handlers, `invoke_client`, events, kick, the authenticator
    /// (which decides each player's handshake). If the link drops later, its players are
    /// removed (their pending calls fail with `Disconnected`) and the server reattaches in the
    /// background with exponential backoff (0.1 s up to 5 s); the relay then announces its
    /// players again. A server may attach to several relays and listen at the same time.
    pub fn attach(&self, relay_addr: &str, place: &str, secret: Option<&str>) -> Result<()> {
        self.ep.check_open()?;
        let spec = crate::endpoint::LinkSpec {
            addr: relay_addr.to_owned(),
            place: place.to_owned(),
            secret: bytes::Bytes::copy_from_slice(secret.unwrap_or("").as_bytes()),
            tls: self.ep.tls().relays.clone(),
        };
        let max_frame = self.ep.limits().max_payload + crate::proto::LINK_OVERHEAD;
        let link = crate::reactor::connect_link(&spec, max_frame, Duration::from_secs(10))?;
        {
            let mut reactors = self.ep.reactors();
            if reactors.is_empty() {
                *reactors = self.start_reactors(None)?;
            }
        }
        tracing::info!(relay = %relay_addr, place, "attached to the relay");
        self.ep.command(crate::endpoint::Command::AddLink {
            link: Box::new(link),
            spec,
        });
        Ok(())
    }

    /// Reads the TLS certificate chain and key of [`ServerConfig::tls`] again and serves
    /// players who connect from now on with them; connected players keep their sessions.
    /// Resumption tickets issued before still resume. On failure (a missing or unreadable
    /// file, a key that does not fit) the current certificate stays and the error says why;
    /// [`Error::InvalidArgument`] when the server has no TLS.
    pub fn reload_tls(&self) -> Result<()> {
        match &self.ep.tls().players {
            Some(acceptor) => acceptor.reload(),
            None => Err(Error::InvalidArgument(
                "this server does not serve TLS".into(),
            )),
        }
    }

    /// The address the server listens on, once it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.ep.local_addr()
    }

    /// Binds the `OnServerInvoke` handler of `function`: it gets the invoking player and the
    /// arguments, and its return value (or error, as a message) goes back to the caller.
    /// Rebinding replaces the handler; calls that waited for a handler run now.
    pub fn bind<F, E>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(&ServerHandle, PlayerId, Tuple) -> std::result::Result<Tuple, E>
            + Send
            + Sync
            + 'static,
        E: Display,
    {
        self.ep.bind(
            function,
            Arc::new(move |ep, conn: ConnId, args, call| {
                let _ = ep.reply_result(
                    call,
                    handler(&ServerHandle::from_endpoint(ep), conn.player(), args),
                );
            }),
        )
    }

    /// Binds an `OnServerInvoke` handler declared non-blocking: it runs on the event loop's
    /// thread as each call arrives, with no hand-off to a worker thread and back (the Redis
    /// model: the fastest path for handlers that only compute, such as reading game state
    /// kept behind a short lock). It must not block: [`invoke_client`](Self::invoke_client)
    /// from inside it fails with [`Error::InvalidArgument`] rather than wait on the loop that
    /// would deliver its reply, and a slow handler delays every player of that loop. It runs
    /// whatever the dispatch mode, manual included. Rebinding the name with [`bind`](Self::bind)
    /// moves it back to the workers.
    pub fn bind_inline<F, E>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(PlayerId, Tuple) -> std::result::Result<Tuple, E> + Send + Sync + 'static,
        E: Display,
    {
        self.bind_inline_with_call_id(function, move |player, args, _| {
            Some(handler(player, args).map_err(|e| e.to_string()))
        })
    }

    /// [`bind_inline`](Self::bind_inline) for a handler that may answer through its call id
    /// with [`reply`](Self::reply) before it returns (the C ABI's form); `None` says it did.
    pub(crate) fn bind_inline_with_call_id<F>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(PlayerId, Tuple, CallId) -> Option<std::result::Result<Tuple, String>>
            + Send
            + Sync
            + 'static,
    {
        self.ep.bind_inline(
            function,
            Arc::new(move |conn: ConnId, args, call| handler(conn.player(), args, call)),
        )
    }

    /// Binds a handler that answers through a [`Responder`], possibly later and from another
    /// thread (a deferred reply).
    pub fn bind_deferred<F>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(&ServerHandle, PlayerId, Tuple, Responder) + Send + Sync + 'static,
    {
        self.ep.bind(
            function,
            Arc::new(move |ep, conn: ConnId, args, call| {
                handler(
                    &ServerHandle::from_endpoint(ep),
                    conn.player(),
                    args,
                    Responder::new(ep.clone(), call),
                )
            }),
        )
    }

    /// Binds a handler that completes its call by id with [`reply`](Self::reply) (the form the
    /// C ABI uses). Until it does, the caller waits.
    pub fn bind_with_call_id<F>(&self, function: &str, handler: F) -> Result<()>
    where
        F: Fn(&ServerHandle, PlayerId, Tuple, CallId) + Send + Sync + 'static,
    {
        self.ep.bind(
            function,
            Arc::new(move |ep, conn: ConnId, args, call| {
                handler(&ServerHandle::from_endpoint(ep), conn.player(), args, call)
            }),
        )
    }

    /// Removes the handler of `function`; later calls wait for a new one.
    pub fn unbind(&self, function: &str) -> Result<()> {
        self.ep.unbind(function)
    }

    /// Completes inbound call `call` with values, or with an error message the caller receives
    /// as [`Error::Remote`]. An unknown or already completed id is [`Error::InvalidArgument`].
    pub fn reply(&self, call: CallId, result: std::result::Result<&[Value], &str>) -> Result<()> {
        self.ep.reply(call, result)
    }

    /// Calls `function` on `player`'s client and blocks until it returns, raises, the player
    /// disconnects, `timeout` elapses (`None`: wait forever, as Roblox does), or the server
    /// shuts down.
    pub fn invoke_client(
        &self,
        player: PlayerId,
        function: &str,
        args: &[Value],
        timeout: Option<Duration>,
    ) -> Result<Tuple> {
        self.check_player(player)?;
        self.ep.invoke(player.into(), function, args, timeout)
    }

    /// Calls `function` on `player`'s client without blocking: `on_done` receives what
    /// [`invoke_client`](Self::invoke_client) would return (with no timeout: the call ends with
    /// the answer, the player's departure or the server's shutdown). `on_done` runs on the event
    /// loop's thread, so it must only hand the result on (to a channel, say). An error returned
    /// here means nothing was sent and `on_done` will not run.
    pub fn invoke_client_then<F>(
        &self,
        player: PlayerId,
        function: &str,
        args: &[Value],
        on_done: F,
    ) -> Result<()>
    where
        F: FnOnce(Result<Tuple>) + Send + 'static,
    {
        self.check_player(player)?;
        self.ep.invoke_then(player.into(), function, args, on_done)
    }

    /// Binds the handler of a `RemoteEvent` fired by clients.
    pub fn bind_event<F>(&self, event: &str, handler: F) -> Result<()>
    where
        F: Fn(&ServerHandle, PlayerId, Tuple) + Send + Sync + 'static,
    {
        self.ep.bind_event(
            event,
            Arc::new(move |ep, conn: ConnId, args| {
                handler(&ServerHandle::from_endpoint(ep), conn.player(), args)
            }),
        )
    }

    /// Fires `event` at one player (fire-and-forget, in order per player).
    pub fn fire_client(&self, player: PlayerId, event: &str, args: &[Value]) -> Result<()> {
        self.check_player(player)?;
        self.ep.fire(player.into(), event, args)
    }

    /// Fires `event` at every connected player.
    pub fn fire_all_clients(&self, event: &str, args: &[Value]) -> Result<()> {
        self.ep.fire_all(event, args)
    }

    /// Adds a callback run when a player finishes the handshake (`Players.PlayerAdded`).
    pub fn on_player_added<F>(&self, callback: F)
    where
        F: Fn(&ServerHandle, PlayerId) + Send + Sync + 'static,
    {
        self.ep.add_player_hook(
            true,
            Arc::new(move |ep, p| callback(&ServerHandle::from_endpoint(ep), p)),
        );
    }

    /// Adds a callback run when a player leaves (`Players.PlayerRemoving`).
    pub fn on_player_removing<F>(&self, callback: F)
    where
        F: Fn(&ServerHandle, PlayerId) + Send + Sync + 'static,
    {
        self.ep.add_player_hook(
            false,
            Arc::new(move |ep, p| callback(&ServerHandle::from_endpoint(ep), p)),
        );
    }

    /// Sets the authenticator: it sees each handshake's place and token and accepts with an
    /// identity or refuses with a reason the client receives. It runs on a handler thread,
    /// never on the reactor. Without one, every handshake is accepted.
    pub fn set_authenticator<F>(&self, authenticator: F)
    where
        F: Fn(&AuthRequest) -> std::result::Result<Identity, String> + Send + Sync + 'static,
    {
        self.ep
            .set_authenticator(Arc::new(move |_, req| authenticator(req)));
    }

    /// Disconnects `player` with a reason the client receives.
    pub fn kick(&self, player: PlayerId, reason: &str) -> Result<()> {
        self.check_player(player)?;
        self.ep.command(crate::endpoint::Command::Close {
            conn: player.into(),
            code: GoodbyeCode::Kicked,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Players that finished the handshake and are still connected.
    pub fn player_count(&self) -> usize {
        self.ep.player_count()
    }

    /// The ids of the connected players.
    pub fn players(&self) -> Vec<PlayerId> {
        self.ep.player_ids()
    }

    /// What the server knows of a player.
    pub fn player_info(&self, player: PlayerId) -> Option<PlayerInfo> {
        self.ep.player_info(player)
    }

    /// Manual dispatch: runs queued work on this thread until `max` of the game's callbacks
    /// (handlers, player hooks, the authenticator) have run, waiting up to `timeout` for the
    /// first. Returns how many callbacks ran; library bookkeeping that calls nothing of the
    /// game's (a join with no `on_player_added` hook, say) is not counted.
    pub fn dispatch(&self, max: usize, timeout: Duration) -> Result<usize> {
        self.ep.dispatch(max, timeout)
    }

    /// The server's counters: connections, calls, disconnects by reason, bytes.
    pub fn stats(&self) -> crate::Stats {
        self.ep.stats()
    }

    /// Its metrics in the Prometheus text format (players, connections, calls by function and
    /// outcome, handler time, queues, disconnects by reason, bytes): what
    /// [`serve_metrics`](Self::serve_metrics) serves, for a game that exposes them itself.
    /// Names are `remotefn_server_*`, as the relay's are `remotefn_relay_*`.
    pub fn metrics(&self) -> String {
        self.ep.metrics()
    }

    /// Serves [`metrics`](Self::metrics) over HTTP at `GET /metrics` on `addr`
    /// (`"127.0.0.1:0"` picks a free port; see [`MetricsServer::addr`]), from a thread of its
    /// own, until the returned server is dropped. It does not keep this server alive.
    ///
    /// [`MetricsServer::addr`]: crate::MetricsServer::addr
    #[cfg(feature = "metrics-http")]
    pub fn serve_metrics(&self, addr: &str) -> Result<crate::MetricsServer> {
        let ep = Arc::downgrade(&self.ep);
        let render = Arc::new(move || match ep.upgrade() {
            Some(ep) => ep.metrics(),
            None => String::new(),
        });
        crate::MetricsServer::start(addr, "server", render)
            .map_err(|e| Error::io_from(format!("cannot serve metrics on {addr}"), e))
    }

    /// `invoke_client` calls currently waiting for an answer.
    pub fn calls_in_flight(&self) -> usize {
        self.ep.calls().in_flight()
    }

    /// Inbound calls waiting for a handler to be bound to their function name.
    pub fn calls_waiting_for_handler(&self) -> usize {
        self.ep.calls_waiting_for_handler()
    }

    /// Inbound calls handed to handlers and not yet answered.
    pub fn replies_pending(&self) -> usize {
        self.ep.replies_pending()
    }

    /// Stops the server: pending `invoke_client` calls fail with [`Error::Closed`], players get
    /// a goodbye, and the reactor and worker threads are joined. Idempotent.
    pub fn shutdown(&self) {
        self.ep.shutdown();
    }
}
