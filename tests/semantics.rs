//! RemoteFunction semantics, each proven through the public Rust API over loopback: on a server
//! with one event loop, and again with two (players dealt between them, the first to the
//! second loop, so that every case crosses loops); and over TLS, on two loops.

mod common;
mod raw;

mod one_reactor {
    const REACTORS: usize = 1;
    const TLS: bool = false;
    include!("cases/semantics.rs");
    include!("cases/semantics_raw.rs");
}

mod two_reactors {
    const REACTORS: usize = 2;
    const TLS: bool = false;
    include!("cases/semantics.rs");
    include!("cases/semantics_raw.rs");
}

mod over_tls {
    const REACTORS: usize = 2;
    const TLS: bool = true;
    include!("cases/semantics.rs");
}
