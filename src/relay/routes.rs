//! The relay's slab of in-flight routes: every call crossing the relay gets a route id, and
//! the call id is rewritten to it on the way through, so replies find their way back and a
//! reply can only complete a call that was sent to the connection it comes from.

use crate::chains::{Chains, Head};
use std::time::Instant;

/// Which way a call goes, and the id its caller chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// A player's call to its host; `call` is the player's id for it.
    ToHost { call: u64 },
    /// A host's call to a player; `call` is the host's id for it.
    ToPlayer { call: u64 },
}

/// One call in flight through the relay.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub player: usize,
    pub host: usize,
    pub direction: Direction,
    pub started: Instant,
}

/// Routes by id (`generation << 32 | index`); a stale or forged id finds nothing. Each route is
/// also on its player's list, so a player that leaves takes exactly its routes with it.
#[derive(Default)]
pub(crate) struct Routes {
    slots: Vec<(u32, Option<Route>)>,
    free: Vec<u32>,
    live: usize,
    chains: Chains,
    /// Each player's routes (both ways), by the player's connection key.
    by_player: Vec<Head>,
}

impl Routes {
    fn insert(&mut self, route: Route) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.push((1, None));
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.1 = Some(route);
        let id = (u64::from(slot.0) << 32) | index as u64;
        self.live += 1;
        self.chains.grow(self.slots.len());
        if self.by_player.len() <= route.player {
            self.by_player.resize_with(route.player + 1, Head::default);
        }
        self.chains.push(&mut self.by_player[route.player], index);
        id
    }

    /// Opens the route of a call from `player` to `host` or back, started `now`; its id.
    pub(crate) fn open(
        &mut self,
        player: usize,
        host: usize,
        direction: Direction,
        now: Instant,
    ) -> u64 {
        self.insert(Route {
            player,
            host,
            direction,
            started: now,
        })
    }

    /// Closes route `id` with a reply, if `answers` finds in the route the caller's call id
    /// (the reply came the right way, from the connection the call went to); the route and
    /// that id. A route the reply may not answer stays.
    pub(crate) fn take_reply(
        &mut self,
        id: u64,
        answers: impl FnOnce(&Route) -> Option<u64>,
    ) -> Option<(Route, u64)> {
        let call = answers(self.get(id)?)?;
        Some((self.remove(id).expect("just found"), call))
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Route> {
        let (index, generation) = ((id & 0xffff_ffff) as usize, (id >> 32) as u32);
        self.slots
            .get(index)
            .filter(|s| s.0 == generation)
            .and_then(|s| s.1.as_ref())
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Route> {
        let (index, generation) = ((id & 0xffff_ffff) as usize, (id >> 32) as u32);
        let slot = self.slots.get_mut(index).filter(|s| s.0 == generation)?;
        let route = slot.1.take()?;
        slot.0 = slot.0.wrapping_add(1).max(1);
        self.free.push(index as u32);
        self.live -= 1;
        self.chains.unlink(&mut self.by_player[route.player], index);
        Some(route)
    }

    /// Removes every route of player `player` (it left); returns how many there were.
    pub(crate) fn remove_player(&mut self, player: usize) -> usize {
        let Some(head) = self.by_player.get_mut(player) else {
            return 0;
        };
        let indices = self.chains.drain(head);
        for &index in &indices {
            let slot = &mut self.slots[index];
            slot.1 = None;
            slot.0 = slot.0.wrapping_add(1).max(1);
            self.free.push(index as u32);
        }
        self.live -= indices.len();
        indices.len()
    }

    /// Routes matching `pred`, by id.
    pub(crate) fn matching(&self, pred: impl Fn(&Route) -> bool) -> Vec<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, (g, r))| {
                r.as_ref()
                    .filter(|r| pred(r))
                    .map(|_| (u64::from(*g) << 32) | i as u64)
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_use_and_generation_checked() {
        let mut routes = Routes::default();
        let r = Route {
            player: 1,
            host: 2,
            direction: Direction::ToHost { call: 9 },
            started: Instant::now(),
        };
        let id = routes.insert(r);
        assert!(routes.get(id).is_some());
        assert!(routes.remove(id).is_some());
        assert!(routes.remove(id).is_none());
        let again = routes.insert(r);
        assert_ne!(again, id, "the slot is reused under a new generation");
        assert!(routes.get(id).is_none());
        assert_eq!(routes.len(), 1);
    }

    #[test]
    fn a_player_that_leaves_takes_exactly_its_routes() {
        let mut routes = Routes::default();
        let route = |player| Route {
            player,
            host: 9,
            direction: Direction::ToHost { call: 1 },
            started: Instant::now(),
        };
        let alice: Vec<u64> = (0..3).map(|_| routes.insert(route(4))).collect();
        let bob = routes.insert(route(7));
        assert!(routes.remove(alice[1]).is_some());
        assert_eq!(routes.remove_player(4), 2);
        assert!(alice.iter().all(|&id| routes.get(id).is_none()));
        assert!(routes.get(bob).is_some());
        assert_eq!(routes.len(), 1);
        assert_eq!(routes.remove_player(4), 0);
        assert_eq!(routes.remove_player(1000), 0);
        // The freed slots serve new routes, on the right lists.
        let again = routes.insert(route(4));
        assert_eq!(routes.remove_player(7), 1);
        assert!(routes.get(again).is_some());
    }

    #[test]
    fn a_reply_closes_its_route_only_when_it_answers_it() {
        let mut routes = Routes::default();
        let id = routes.open(3, 8, Direction::ToPlayer { call: 77 }, Instant::now());
        let from = |player| {
            move |r: &Route| match r.direction {
                Direction::ToPlayer { call } if r.player == player => Some(call),
                _ => None,
            }
        };
        assert!(
            routes.take_reply(id, from(4)).is_none(),
            "another player's reply"
        );
        assert!(routes.get(id).is_some(), "a refused reply leaves the route");
        let (route, call) = routes.take_reply(id, from(3)).expect("its player's reply");
        assert_eq!((route.host, call), (8, 77));
        assert!(routes.take_reply(id, from(3)).is_none(), "answered once");
        assert_eq!(routes.len(), 0);
    }
}
