//! Handlers by name, and the bounded queues of work for names with no handler yet.

use crate::ids::NameMap;
use parking_lot::RwLock;
use std::collections::{HashMap, VecDeque};

/// What a lookup decided for one piece of work.
pub(crate) enum Lookup<H, W> {
    /// A handler is bound: run it.
    Run(H, W),
    /// No handler yet: the work waits in the name's queue.
    Queued,
    /// No handler and the name's queue is full: the work is handed back.
    Full(W),
}

struct Inner<H, W> {
    handlers: NameMap<H>,
    waiting: HashMap<Box<str>, VecDeque<W>>,
}

/// A name → handler map with, per unbound name, a queue of at most `queue_limit` items.
pub(crate) struct Registry<H, W> {
    inner: RwLock<Inner<H, W>>,
    queue_limit: usize,
}

impl<H: Clone, W> Registry<H, W> {
    pub(crate) fn new(queue_limit: usize) -> Self {
        Registry {
            inner: RwLock::new(Inner {
                handlers: NameMap::default(),
                waiting: HashMap::new(),
            }),
            queue_limit,
        }
    }

    /// Finds the handler for `name`, or queues `work` until one is bound.
    pub(crate) fn lookup_or_queue(&self, name: &str, work: W) -> Lookup<H, W> {
        if let Some(h) = self.inner.read().handlers.get(name) {
            return Lookup::Run(h.clone(), work);
        }
        let mut inner = self.inner.write();
        // Bound between the two locks.
        if let Some(h) = inner.handlers.get(name) {
            return Lookup::Run(h.clone(), work);
        }
        // Bound the number of distinct waiting names too, so a peer cannot grow the map by
        // inventing names.
        let names = inner.waiting.len();
        match inner.waiting.get_mut(name) {
            Some(queue) if queue.len() < self.queue_limit => queue.push_back(work),
            Some(_) => return Lookup::Full(work),
            None if names < MAX_WAITING_NAMES && self.queue_limit > 0 => {
                inner.waiting.insert(name.into(), VecDeque::from([work]));
            }
            None => return Lookup::Full(work),
        }
        Lookup::Queued
    }

    /// Binds (or rebinds) `name`; returns the work that was waiting for it, in arrival order.
    pub(crate) fn bind(&self, name: &str, handler: H) -> VecDeque<W> {
        let mut inner = self.inner.write();
        inner.handlers.insert(name.into(), handler);
        inner.waiting.remove(name).unwrap_or_default()
    }

    /// Work waiting for a handler, over all names.
    pub(crate) fn waiting(&self) -> usize {
        self.inner.read().waiting.values().map(VecDeque::len).sum()
    }

    /// Unbinds `name`; false when nothing was bound.
    pub(crate) fn unbind(&self, name: &str) -> bool {
        self.inner.write().handlers.remove(name).is_some()
    }

    /// Drops every handler and all waiting work (at shutdown, to break reference cycles
    /// between handlers and the handles they capture).
    pub(crate) fn clear(&self) -> Vec<W> {
        let mut inner = self.inner.write();
        inner.handlers.clear();
        inner.waiting.drain().flat_map(|(_, q)| q).collect()
    }
}

/// How many distinct unbound names may have work waiting at once.
const MAX_WAITING_NAMES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_waits_for_a_handler_up_to_the_bound() {
        let r: Registry<u8, u32> = Registry::new(2);
        assert!(matches!(r.lookup_or_queue("f", 1), Lookup::Queued));
        assert!(matches!(r.lookup_or_queue("f", 2), Lookup::Queued));
        assert!(matches!(r.lookup_or_queue("f", 3), Lookup::Full(3)));
        assert_eq!(r.bind("f", 9), VecDeque::from([1, 2]));
        assert!(matches!(r.lookup_or_queue("f", 4), Lookup::Run(9, 4)));
        assert!(r.unbind("f"));
        assert!(!r.unbind("f"));
        assert!(matches!(r.lookup_or_queue("f", 5), Lookup::Queued));
    }
}
