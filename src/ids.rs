//! The ids that cross the API: which player, which call. Each is its own type, so a player's
//! id can never be passed where a call's is meant; the number inside is what the C ABI and the
//! wire carry (`rf_player_id`, `rf_call_id`).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Identifies a connected player. Never 0; not reused while the server runs. A player behind a
/// relay has an id the relay gave it (with the top bit set), so it never collides with a direct
/// player's. It displays as its number (with `tracing`, log it as `%player`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct PlayerId(u64);

impl PlayerId {
    /// The id whose number is `raw` (as `get` returns it, or as the C ABI hands it out).
    pub const fn from_raw(raw: u64) -> PlayerId {
        PlayerId(raw)
    }

    /// The number inside: what the C ABI and the wire carry.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Identifies one call in flight: a handler's right to answer an inbound call
/// ([`ServerHandle::reply`](crate::ServerHandle::reply)), or a caller's slot while it waits.
/// Never 0; a stale id (answered, timed out) names nothing, even after its slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct CallId(u64);

impl CallId {
    /// The id whose number is `raw`.
    pub const fn from_raw(raw: u64) -> CallId {
        CallId(raw)
    }

    /// The number inside: what the C ABI and the wire carry.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// One connection of an endpoint's reactor: on a server, the player's id; on a client, its
/// server. `loop << 56 | serial << 32 | driver key`: the event loop that owns it (so any
/// thread can route a command to it), and a serial so that a command for a connection that has
/// since closed, and whose key was reused, is recognised and dropped. A relay's player ids have
/// the top bit set instead; they belong to the loop of the host links, the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId(pub(crate) u64);

impl ConnId {
    /// The id of the connection at slab `key` of event loop `event_loop` (below
    /// [`MAX_LOOPS`]), the `serial`th that loop opened (24 bits wrapping; the top bit stays
    /// clear, so it never collides with a relay's player ids).
    pub(crate) fn new(event_loop: usize, serial: u32, key: usize) -> ConnId {
        debug_assert!(event_loop < MAX_LOOPS && key <= u32::MAX as usize);
        let serial = u64::from(serial & SERIAL_MASK);
        ConnId(((event_loop as u64) << 56) | (serial << 32) | key as u64)
    }

    /// The event loop that owns it.
    pub(crate) fn event_loop(self) -> usize {
        if self.0 >> 63 == 1 {
            0
        } else {
            (self.0 >> 56) as usize
        }
    }

    /// The slab key it was opened at.
    pub(crate) fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The player this connection is, on a server.
    pub(crate) fn player(self) -> PlayerId {
        PlayerId(self.0)
    }
}

/// Event loops an endpoint may run (the ids' 7 bits for them).
pub(crate) const MAX_LOOPS: usize = 128;
/// The rule for a number of event loops (`reactors` of a server or relay), wherever it is set.
pub(crate) fn check_loops(reactors: usize) -> Result<usize, crate::Error> {
    if !(1..=MAX_LOOPS).contains(&reactors) {
        return Err(crate::Error::InvalidArgument(format!(
            "reactors must be 1 to {MAX_LOOPS}, not {reactors}"
        )));
    }
    Ok(reactors)
}

/// The bits of a connection id's serial.
pub(crate) const SERIAL_MASK: u32 = 0x00ff_ffff;

impl From<PlayerId> for ConnId {
    fn from(player: PlayerId) -> ConnId {
        ConnId(player.0)
    }
}

impl fmt::Display for PlayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A map keyed by ids this process or its trusted peer hands out (connection ids, a relay's
/// player ids). Such keys are not chosen by an attacker, so they need no keyed hash: one
/// multiplication spreads them, where SipHash cost a few percent of a busy loop.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: Fibonacci hashing of one `u64`.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // The table indexes by the low bits: bring the well-mixed high ones down.
        self.0.rotate_left(32)
    }
}

/// FNV-1a of `bytes`: a hash every process and loop computes alike, cheap for short names.
/// (The relay's place-to-loop choice; the library alone uses it through [`NameHasher`].)
#[cfg_attr(not(feature = "relay"), allow(dead_code))]
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hasher = NameHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

/// A map keyed by names the game chose (the functions it bound). A peer only looks names up
/// in it and cannot add one, so no keyed hash is needed against flooding: FNV-1a of a short
/// name costs a fraction of SipHash, which every inline call paid.
pub(crate) type NameMap<V> = HashMap<Box<str>, V, BuildHasherDefault<NameHasher>>;

/// The hasher of [`NameMap`]: FNV-1a.
pub(crate) struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_hash_and_names_are_found_by_it() {
        // Test vectors of the FNV-1a 64-bit reference.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let mut names: NameMap<u32> = NameMap::default();
        for (i, name) in ["Echo", "echo", "GetScore", ""].iter().enumerate() {
            names.insert((*name).into(), i as u32);
        }
        assert_eq!(names.get("echo"), Some(&1));
        assert_eq!(names.get(""), Some(&3));
        assert_eq!(names.get("Ech"), None);
    }
}
