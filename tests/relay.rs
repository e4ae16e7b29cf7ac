//! The relay: players reach a game server through it with the same API as when embedded; on one
//! event loop, and again on two (the place most cases use, "lobby", is the second loop's, so
//! its players and host are handed over at their handshake).

mod common;
mod raw;

mod one_loop {
    const REACTORS: usize = 1;
    include!("cases/relay.rs");
}

mod two_loops {
    const REACTORS: usize = 2;
    include!("cases/relay.rs");
}
