//! RemoteFunction semantics, each proven through the public Rust API over loopback: on a server
//! with one event loop, and again with two (players dealt between them, the first to the
//! second loop, so that every case crosses loops).

mod common;
mod raw;

mod one_reactor {
    const REACTORS: usize = 1;
    include!("cases/semantics.rs");
}

mod two_reactors {
    const REACTORS: usize = 2;
    include!("cases/semantics.rs");
}
