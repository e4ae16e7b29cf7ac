//! Players as scripts number them. A player id is a 64-bit number (a relayed player's has its
//! top bit set), which a Luau number (a double) cannot hold exactly past 2^53; scripts get a
//! small number per player instead (its *handle*, unique among the players this host has
//! seen), and the host translates at every crossing.

use crate::PlayerId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The handles of one script host, shared by its primitives and its value conversion (as the
/// Lua state's app data).
#[derive(Clone, Default)]
pub(crate) struct Handles(Rc<RefCell<Table>>);

#[derive(Default)]
struct Table {
    players: HashMap<u32, PlayerId>,
    handles: HashMap<PlayerId, u32>,
    next: u32,
}

impl Handles {
    /// The handle of `player`, made on first sight.
    pub(crate) fn handle(&self, player: PlayerId) -> f64 {
        let mut table = self.0.borrow_mut();
        if let Some(handle) = table.handles.get(&player) {
            return f64::from(*handle);
        }
        table.next += 1;
        let handle = table.next;
        table.handles.insert(player, handle);
        table.players.insert(handle, player);
        f64::from(handle)
    }

    /// The player a script's handle names, if it names one.
    pub(crate) fn player(&self, handle: f64) -> Option<PlayerId> {
        if !(handle >= 1.0 && handle <= f64::from(u32::MAX) && handle.fract() == 0.0) {
            return None;
        }
        self.0.borrow().players.get(&(handle as u32)).copied()
    }

    /// Forgets a player that left (its scripts' objects for it are gone too).
    pub(crate) fn forget(&self, player: PlayerId) {
        let mut table = self.0.borrow_mut();
        if let Some(handle) = table.handles.remove(&player) {
            table.players.remove(&handle);
        }
    }
}

/// What a player's `UserId` is without an authenticator's: its id when a Luau number holds it
/// exactly (a direct player's), else its handle.
pub(crate) fn default_user_id(player: PlayerId, handle: f64) -> f64 {
    if player.get() <= 1 << 53 {
        player.get() as f64
    } else {
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_ids_past_two_to_the_53_get_exact_handles() {
        let handles = Handles::default();
        let a = PlayerId::from_raw((1 << 63) | 1);
        let b = PlayerId::from_raw((1 << 63) | 2);
        let (ha, hb) = (handles.handle(a), handles.handle(b));
        assert_ne!(ha, hb, "{a:?} and {b:?} are one double apart only as ids");
        assert_eq!(handles.handle(a), ha, "stable");
        assert_eq!(handles.player(ha), Some(a));
        assert_eq!(handles.player(hb), Some(b));
        assert_eq!(handles.player(0.5), None);
        handles.forget(a);
        assert_eq!(handles.player(ha), None);
        assert_eq!(default_user_id(a, ha), ha);
        assert_eq!(default_user_id(PlayerId::from_raw(7), 1.0), 7.0);
    }
}
