//! Inline handlers: functions declared non-blocking, run on the event loop's thread as their
//! calls arrive (the Redis model), with no hand-off to a worker and back.
//!
//! The table is written rarely (bind, unbind) and read on every call, so the event loop keeps
//! its own copy of the map and re-reads it only when the table's generation moved: one atomic
//! load per call, no lock and no shared write on the hot path.
//!
//! A handler running inline answers by returning; a C handler answers through the usual
//! `rf_server_return` with the call id it was given, which [`InlineCall`] captures here rather
//! than in the reply table. Inline call ids have generation 0, which the reply table never
//! issues, so the two can never be confused.

use crate::error::panic_message;
use crate::ids::CallId;
use crate::ids::NameMap;
use parking_lot::Mutex;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Handlers by name, shared by the API threads (who bind) and the event loop (who runs them).
pub(crate) struct InlineTable<H> {
    generation: AtomicU64,
    map: Mutex<Arc<NameMap<H>>>,
}

impl<H: Clone> Default for InlineTable<H> {
    fn default() -> Self {
        InlineTable {
            generation: AtomicU64::new(0),
            map: Mutex::new(Arc::new(NameMap::default())),
        }
    }
}

impl<H: Clone> InlineTable<H> {
    /// Binds (or rebinds) `name`.
    pub(crate) fn insert(&self, name: &str, handler: H) {
        self.update(|map| {
            map.insert(name.into(), handler);
            true
        });
    }

    /// Unbinds `name`; false when it was not bound inline.
    pub(crate) fn remove(&self, name: &str) -> bool {
        self.update(|map| map.remove(name).is_some())
    }

    /// Copy-on-write: readers holding the old map keep it until they look again.
    fn update(&self, change: impl FnOnce(&mut NameMap<H>) -> bool) -> bool {
        let mut map = self.map.lock();
        let mut next = (**map).clone();
        let changed = change(&mut next);
        if changed {
            *map = Arc::new(next);
            self.generation.fetch_add(1, Ordering::Release);
        }
        changed
    }

    /// Drops every handler (at shutdown, to break cycles with the handles they capture).
    pub(crate) fn clear(&self) {
        self.update(|map| {
            let had = !map.is_empty();
            map.clear();
            had
        });
    }
}

/// The event loop's copy of an [`InlineTable`].
pub(crate) struct InlineView<H> {
    generation: u64,
    map: Arc<NameMap<H>>,
}

impl<H> Default for InlineView<H> {
    fn default() -> Self {
        InlineView {
            generation: 0,
            map: Arc::new(NameMap::default()),
        }
    }
}

impl<H: Clone> InlineView<H> {
    /// The handler bound inline to `name`, if any, as of the table's latest change.
    pub(crate) fn get(&mut self, table: &InlineTable<H>, name: &str) -> Option<&H> {
        if table.generation.load(Ordering::Acquire) != self.generation {
            let map = table.map.lock();
            self.map = map.clone();
            // Read under the lock: a change after it bumps the generation again.
            self.generation = table.generation.load(Ordering::Acquire);
        }
        if self.map.is_empty() {
            return None;
        }
        self.map.get(name)
    }
}

/// What an inline handler of the C ABI answered through its call id.
pub(crate) type InlineAnswer = Result<crate::value::Tuple, String>;

thread_local! {
    /// The inline call running on this thread, if any, and its answer once given.
    static CURRENT: Cell<Option<(CallId, Option<InlineAnswer>)>> = const { Cell::new(None) };
    static NEXT_ID: Cell<u32> = const { Cell::new(0) };
}

/// Runs inline handler `handler` of function `name` on this thread. It is given its call's id
/// and either returns its answer or gives it through [`answer`] (the C ABI's way); while it
/// runs, blocking calls refuse to start ([`in_inline_handler`]). A panic, or no answer at all,
/// is an error the caller receives.
pub(crate) fn run(
    name: &str,
    handler: impl FnOnce(CallId) -> Option<InlineAnswer>,
) -> InlineAnswer {
    let call = InlineCall::begin();
    let returned = catch_unwind(AssertUnwindSafe(|| handler(call.id)));
    let given = call.finish();
    match returned {
        Ok(Some(answer)) => answer,
        Ok(None) => given.unwrap_or_else(|| {
            Err(format!(
                "the inline handler for {name:?} returned without answering its call"
            ))
        }),
        Err(panic) => Err(format!(
            "handler for {name:?} panicked: {}",
            panic_message(&panic)
        )),
    }
}

/// The inline call running on this thread, between [`InlineCall::begin`] and its end.
struct InlineCall {
    id: CallId,
}

impl InlineCall {
    fn begin() -> InlineCall {
        let index = NEXT_ID.with(|n| {
            let next = n.get().wrapping_add(1).max(1);
            n.set(next);
            next
        });
        let id = CallId::from_raw(u64::from(index));
        CURRENT.with(|c| c.set(Some((id, None))));
        InlineCall { id }
    }

    /// Ends the call; its answer, if one was given through [`answer`].
    fn finish(self) -> Option<InlineAnswer> {
        CURRENT.with(|c| c.take()).and_then(|(_, answer)| answer)
    }
}

impl Drop for InlineCall {
    fn drop(&mut self) {
        // Also on a panic out of the handler.
        CURRENT.with(|c| c.set(None));
    }
}

/// Whether this thread is running an inline handler (which must not block).
pub(crate) fn in_inline_handler() -> bool {
    CURRENT.with(|c| {
        let current = c.take();
        let running = current.is_some();
        c.set(current);
        running
    })
}

/// Captures the answer to `id` if it is the inline call running on this thread. `Err` gives
/// the answer back: it is for another call. A second answer to the same call is refused.
pub(crate) fn answer(id: CallId, answer: InlineAnswer) -> Result<bool, InlineAnswer> {
    CURRENT.with(|c| match c.take() {
        Some((current, given)) if current == id => {
            let first = given.is_none();
            c.set(Some((current, Some(given.unwrap_or(answer)))));
            Ok(first)
        }
        other => {
            c.set(other);
            Err(answer)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_sees_each_change_and_only_reads_the_table_after_one() {
        let table: InlineTable<u8> = InlineTable::default();
        let mut view = InlineView::default();
        assert_eq!(view.get(&table, "f"), None);
        table.insert("f", 1);
        assert_eq!(view.get(&table, "f"), Some(&1));
        let seen = view.generation;
        assert_eq!(view.get(&table, "f"), Some(&1));
        assert_eq!(view.generation, seen, "no change, no re-read");
        table.insert("f", 2);
        assert_eq!(view.get(&table, "f"), Some(&2));
        assert!(table.remove("f"));
        assert!(!table.remove("f"));
        assert_eq!(view.get(&table, "f"), None);
    }

    #[test]
    fn an_answer_is_the_returned_one_or_the_first_given_for_the_running_call() {
        use crate::value::{Tuple, Value};
        assert!(!in_inline_handler());
        assert_eq!(
            run("f", |_| Some(Err("returned".into()))),
            Err("returned".into())
        );
        let given = run("f", |id| {
            assert!(in_inline_handler());
            let other = CallId::from_raw(id.get() + 1);
            assert!(
                answer(other, Ok(Tuple::new())).is_err(),
                "not this call's id"
            );
            assert_eq!(answer(id, Ok(Tuple(vec![Value::Boolean(true)]))), Ok(true));
            assert_eq!(answer(id, Err("second".into())), Ok(false));
            None
        });
        assert_eq!(given, Ok(Tuple(vec![Value::Boolean(true)])));
        assert!(!in_inline_handler());
        let silent = run("f", |_| None).unwrap_err();
        assert!(silent.contains("without answering"), "{silent}");
        let panicked = run("f", |_| panic!("boom")).unwrap_err();
        assert!(panicked.contains("panicked: boom"), "{panicked}");
        assert!(!in_inline_handler(), "a panic ends the call too");
    }
}
