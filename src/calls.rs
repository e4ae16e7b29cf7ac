//! Calls in flight: preallocated slots where blocked callers park, and the table of inbound
//! calls awaiting a handler's reply.
//!
//! A call id is `generation << 32 | slot index`. Releasing a slot bumps its generation, so a
//! late reply (after a timeout) or a forged one names a generation that no longer exists and is
//! dropped: it can never complete a later call that reuses the slot. Both tables are allocated
//! once, up front; the free list is a lock-free queue, and each slot has its own small lock, so
//! callers on different slots never contend.

use crate::chains::{Chains, Head};
use crate::error::Error;
pub use crate::ids::CallId;
use crate::ids::ConnId;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::Backoff;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn split(id: CallId) -> (usize, u32) {
    let id = id.get();
    ((id & 0xffff_ffff) as usize, (id >> 32) as u32)
}

fn join(index: usize, generation: u32) -> CallId {
    CallId::from_raw((u64::from(generation) << 32) | index as u64)
}

fn next_generation(g: u32) -> u32 {
    // Generation 0 never names a live call, so no id is ever 0.
    g.wrapping_add(1).max(1)
}

/// What a caller receives: the encoded result values, or why there are none.
pub type Outcome = Result<Bytes, Error>;

/// Runs when a call made with [`CallSlots::acquire_notify`] completes, on the thread that
/// completes it (the event loop's, or the one that shuts the endpoint down): it must only hand
/// the outcome on.
pub(crate) type OnOutcome = Box<dyn FnOnce(Outcome) + Send>;

enum Phase {
    Free,
    Waiting,
    Done(Outcome),
    /// Nobody parks: the outcome goes to the callback (calls made from a script scheduler,
    /// which yields a coroutine rather than its thread).
    Notify(OnOutcome),
}

struct Slot {
    state: Mutex<(u32, Phase)>,
    ready: Condvar,
    /// Set (after `state` is) when the call completes: what a caller spinning before it parks
    /// watches, without taking the lock.
    done: AtomicBool,
}

/// How long a caller spins (then yields) for its answer before it parks on the condvar. A
/// round trip on loopback is tens of microseconds, and a parked caller costs a futex wake on
/// the loop's side and a scheduler wake-up on its own (itself tens of microseconds on a VM).
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

/// Outbound calls: one slot per call this side has sent and not yet seen answered.
pub struct CallSlots {
    slots: Box<[Slot]>,
    free: ArrayQueue<u32>,
    closed: AtomicBool,
}

impl CallSlots {
    /// A table of `capacity` slots, all allocated now.
    pub fn new(capacity: usize) -> CallSlots {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let free = ArrayQueue::new(capacity);
        for i in 0..capacity {
            free.push(i as u32).expect("queue sized to capacity");
        }
        CallSlots {
            slots: (0..capacity)
                .map(|_| Slot {
                    state: Mutex::new((1, Phase::Free)),
                    ready: Condvar::new(),
                    done: AtomicBool::new(false),
                })
                .collect(),
            free,
            closed: AtomicBool::new(false),
        }
    }

    /// Takes a free slot for a new call.
    pub fn acquire(&self) -> Result<CallId, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed("shut down".into()));
        }
        let Some(index) = self.free.pop() else {
            return Err(Error::Limit(format!(
                "{} calls already in flight",
                self.slots.len()
            )));
        };
        let id = {
            let mut state = self.slots[index as usize].state.lock();
            state.1 = Phase::Waiting;
            join(index as usize, state.0)
        };
        // Checked after the slot is marked Waiting: either `fail_all` sees it Waiting and fails
        // it, or this load sees the close (see `fail_all`).
        if self.closed.load(Ordering::SeqCst) {
            self.release(id);
            return Err(Error::Closed("shut down".into()));
        }
        Ok(id)
    }

    /// Takes a free slot for a call whose outcome goes to `on_outcome` instead of a parked
    /// caller. The slot frees itself when the call completes; such a call has no timeout of
    /// its own (Roblox's invokes have none), so it ends with an answer, the peer's departure
    /// or the endpoint's shutdown. If the call is never sent, [`release`](Self::release) it.
    pub(crate) fn acquire_notify(&self, on_outcome: OnOutcome) -> Result<CallId, Error> {
        let id = self.acquire()?;
        let (index, generation) = split(id);
        let mut state = self.slots[index].state.lock();
        if state.0 == generation && matches!(state.1, Phase::Waiting) {
            state.1 = Phase::Notify(on_outcome);
            Ok(id)
        } else {
            // `fail_all` completed it between `acquire` and here.
            drop(state);
            drop(on_outcome);
            let _ = self.wait(id, Some(Duration::ZERO));
            Err(Error::Closed("shut down".into()))
        }
    }

    /// Frees slot `index` (locked in `state`) after its notify call completed, and returns
    /// the callback to run once the lock is dropped.
    fn finish_notify(&self, index: usize, state: &mut (u32, Phase)) -> Option<OnOutcome> {
        if !matches!(state.1, Phase::Notify(_)) {
            return None;
        }
        let Phase::Notify(callback) = std::mem::replace(&mut state.1, Phase::Free) else {
            unreachable!("checked above")
        };
        state.0 = next_generation(state.0);
        self.free.push(index as u32).expect("a slot is freed once");
        Some(callback)
    }

    /// Parks until the call completes or `timeout` elapses, then frees the slot.
    pub fn wait(&self, id: CallId, timeout: Option<Duration>) -> Outcome {
        self.wait_or(id, timeout, || {})
    }

    /// [`wait`](Self::wait), running `on_timeout` when the call times out, before its slot is
    /// freed: until it returns, no other call can take the slot (nor its index).
    pub(crate) fn wait_or(
        &self,
        id: CallId,
        timeout: Option<Duration>,
        on_timeout: impl FnOnce(),
    ) -> Outcome {
        let (index, generation) = split(id);
        let slot = &self.slots[index];
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let spin_until = deadline.map_or(started + SPIN_BEFORE_PARK, |d| {
            d.min(started + SPIN_BEFORE_PARK)
        });
        let backoff = Backoff::new();
        while !slot.done.load(Ordering::Acquire) && Instant::now() < spin_until {
            backoff.snooze();
        }
        let mut state = slot.state.lock();
        debug_assert_eq!(
            state.0, generation,
            "waiting on a slot this caller does not own"
        );
        let outcome = loop {
            if let Phase::Done(_) = state.1 {
                let Phase::Done(outcome) = std::mem::replace(&mut state.1, Phase::Free) else {
                    unreachable!()
                };
                slot.done.store(false, Ordering::Relaxed);
                break outcome;
            }
            match deadline {
                None => slot.ready.wait(&mut state),
                Some(d) => {
                    if slot.ready.wait_until(&mut state, d).timed_out() {
                        if let Phase::Done(_) = state.1 {
                            continue;
                        }
                        // Abandoned: a completion from now on is refused as stale.
                        state.1 = Phase::Free;
                        drop(state);
                        on_timeout();
                        state = slot.state.lock();
                        break Err(Error::Timeout(timeout.unwrap_or_default()));
                    }
                }
            }
        };
        state.0 = next_generation(state.0);
        drop(state);
        self.free.push(index as u32).expect("a slot is freed once");
        outcome
    }

    /// Frees a slot whose call was never sent.
    pub fn release(&self, id: CallId) {
        let (index, generation) = split(id);
        let mut state = self.slots[index].state.lock();
        if state.0 == generation && !matches!(state.1, Phase::Free) {
            state.1 = Phase::Free;
            self.slots[index].done.store(false, Ordering::Relaxed);
            state.0 = next_generation(state.0);
            drop(state);
            self.free.push(index as u32).expect("a slot is freed once");
        }
    }

    /// Delivers the outcome of call `id`. Returns false, changing nothing, when the id is stale
    /// (timed out, already answered) or was never issued.
    pub fn complete(&self, id: CallId, outcome: Outcome) -> bool {
        let (index, generation) = split(id);
        let Some(slot) = self.slots.get(index) else {
            return false;
        };
        let mut state = slot.state.lock();
        if state.0 != generation {
            return false;
        }
        if let Some(callback) = self.finish_notify(index, &mut state) {
            drop(state);
            callback(outcome);
            return true;
        }
        if !matches!(state.1, Phase::Waiting) {
            return false;
        }
        state.1 = Phase::Done(outcome);
        slot.done.store(true, Ordering::Release);
        drop(state);
        slot.ready.notify_one();
        true
    }

    /// Refuses new calls and fails every waiting one with `error`.
    pub fn fail_all(&self, error: &Error) {
        self.closed.store(true, Ordering::SeqCst);
        for (index, slot) in self.slots.iter().enumerate() {
            let mut state = slot.state.lock();
            if let Some(callback) = self.finish_notify(index, &mut state) {
                drop(state);
                callback(Err(error.clone()));
                continue;
            }
            if matches!(state.1, Phase::Waiting) {
                state.1 = Phase::Done(Err(error.clone()));
                slot.done.store(true, Ordering::Release);
                drop(state);
                slot.ready.notify_one();
            }
        }
    }

    /// Calls currently holding a slot.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// The reactor's record of outbound calls in flight: which peer each was sent to, so that only
/// that peer can answer it and its close fails exactly its calls. One entry per call slot (same
/// index), on one list per peer whose head the peer keeps ([`PeerCalls`]): sending, answering,
/// abandoning and closing cost O(1) per call, with nothing to scan or prune.
///
/// Only the reactor thread touches it. A caller that gives up on a call tells the reactor (which
/// [takes](Outbound::take) it) before it frees the slot, so the slot's next call is always recorded
/// after its last one is forgotten.
pub(crate) struct Outbound {
    /// Per slot: the call in flight there and the peer it went to.
    sent: Box<[Option<(CallId, ConnId)>]>,
    chains: Chains,
}

/// The outbound calls in flight to one peer: its list in [`Outbound`].
#[derive(Debug, Default)]
pub(crate) struct PeerCalls(Head);

impl Outbound {
    /// A record for the calls of a table of `capacity` slots.
    pub(crate) fn new(capacity: usize) -> Outbound {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        Outbound {
            sent: vec![None; capacity].into_boxed_slice(),
            chains: Chains::new(capacity),
        }
    }

    /// Records that `call` went to `peer`, whose list is `list`.
    pub(crate) fn sent(&mut self, list: &mut PeerCalls, peer: ConnId, call: CallId) {
        let (index, _) = split(call);
        debug_assert!(
            self.sent[index].is_none(),
            "a slot's last call is forgotten before its next one is sent"
        );
        self.sent[index] = Some((call, peer));
        self.chains.push(&mut list.0, index);
    }

    /// Takes `call` off `peer`'s list if it is in flight to that peer: a reply from it (which
    /// may then complete the call), or its caller giving up (so a late reply finds nothing).
    /// Whether it was.
    pub(crate) fn take(&mut self, list: &mut PeerCalls, peer: ConnId, call: CallId) -> bool {
        let (index, _) = split(call);
        if self.sent.get(index) != Some(&Some((call, peer))) {
            return false;
        }
        self.sent[index] = None;
        self.chains.unlink(&mut list.0, index);
        true
    }

    /// The peer whose list is `list` is gone: its calls in flight, taken off.
    pub(crate) fn take_all(&mut self, list: &mut PeerCalls) -> Vec<CallId> {
        let indices = self.chains.drain(&mut list.0);
        indices
            .into_iter()
            .filter_map(|i| self.sent[i].take().map(|(call, _)| call))
            .collect()
    }
}

/// A reply slot: its generation and, while a call is pending, the route of its reply.
type RouteSlot<R> = (u32, Option<R>);

/// Inbound calls handed to a handler and not yet replied to: each maps the local call id the
/// handler holds to the route of its reply.
pub(crate) struct ReplyTable<R> {
    slots: Box<[Mutex<RouteSlot<R>>]>,
    free: ArrayQueue<u32>,
}

impl<R> ReplyTable<R> {
    pub(crate) fn new(capacity: usize) -> ReplyTable<R> {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let free = ArrayQueue::new(capacity);
        for i in 0..capacity {
            free.push(i as u32).expect("queue sized to capacity");
        }
        ReplyTable {
            slots: (0..capacity).map(|_| Mutex::new((1, None))).collect(),
            free,
        }
    }

    /// Records a route; when the table is full, hands it back.
    pub(crate) fn insert(&self, route: R) -> Result<CallId, R> {
        let Some(index) = self.free.pop() else {
            return Err(route);
        };
        let index = index as usize;
        let mut slot = self.slots[index].lock();
        slot.1 = Some(route);
        Ok(join(index, slot.0))
    }

    /// Takes the route of call `id`, once; `None` for a stale, doubled or unknown id.
    pub(crate) fn take(&self, id: CallId) -> Option<R> {
        let (index, generation) = split(id);
        let mut slot = self.slots.get(index)?.lock();
        if slot.0 != generation {
            return None;
        }
        let route = slot.1.take()?;
        slot.0 = next_generation(slot.0);
        drop(slot);
        self.free.push(index as u32).expect("a slot is freed once");
        Some(route)
    }

    /// Inbound calls awaiting a reply.
    pub(crate) fn pending(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn recorder() -> (Arc<parking_lot::Mutex<Vec<Outcome>>>, OnOutcome) {
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log = seen.clone();
        (seen, Box::new(move |outcome| log.lock().push(outcome)))
    }

    #[test]
    fn a_notify_call_hands_its_outcome_to_the_callback_and_frees_its_slot() {
        let slots = CallSlots::new(1);
        let (seen, on_outcome) = recorder();
        let id = slots.acquire_notify(on_outcome).unwrap();
        assert!(slots.acquire().is_err(), "the one slot is taken");
        assert!(slots.complete(id, Ok(Bytes::from_static(b"x"))));
        assert!(!slots.complete(id, Ok(Bytes::from_static(b"y"))), "stale");
        assert_eq!(seen.lock().len(), 1);
        assert_eq!(slots.in_flight(), 0);
        // A parked call in the same slot afterwards is unaffected.
        let parked = slots.acquire().unwrap();
        assert!(slots.complete(parked, Ok(Bytes::from_static(b"z"))));
        assert_eq!(slots.wait(parked, None).unwrap(), Bytes::from_static(b"z"));
    }

    #[test]
    fn shutdown_fails_notify_calls_and_an_unsent_one_is_released_uncalled() {
        let slots = CallSlots::new(4);
        let (seen, on_outcome) = recorder();
        let (unsent, never) = recorder();
        let _pending = slots.acquire_notify(on_outcome).unwrap();
        let released = slots.acquire_notify(never).unwrap();
        slots.release(released);
        slots.fail_all(&Error::Closed("bye".into()));
        assert!(matches!(seen.lock()[..], [Err(Error::Closed(_))]));
        assert!(unsent.lock().is_empty());
        assert_eq!(slots.in_flight(), 0);
        let (_, late) = recorder();
        assert!(slots.acquire_notify(late).is_err(), "closed");
    }

    #[test]
    fn a_completed_call_delivers_its_outcome_once() {
        let slots = CallSlots::new(4);
        let id = slots.acquire().unwrap();
        assert!(slots.complete(id, Ok(Bytes::from_static(b"x"))));
        assert!(!slots.complete(id, Ok(Bytes::from_static(b"y"))));
        assert_eq!(slots.wait(id, None).unwrap(), Bytes::from_static(b"x"));
        assert_eq!(slots.in_flight(), 0);
    }

    #[test]
    fn a_late_reply_after_timeout_never_reaches_the_next_call() {
        let slots = CallSlots::new(1);
        let first = slots.acquire().unwrap();
        assert!(matches!(
            slots.wait(first, Some(Duration::from_millis(10))),
            Err(Error::Timeout(_))
        ));
        let second = slots.acquire().unwrap();
        assert_ne!(first, second, "same slot, new generation");
        assert_eq!(split(first).0, split(second).0);
        assert!(!slots.complete(first, Ok(Bytes::from_static(b"late"))));
        assert!(slots.complete(second, Ok(Bytes::from_static(b"mine"))));
        assert_eq!(
            slots.wait(second, None).unwrap(),
            Bytes::from_static(b"mine")
        );
    }

    #[test]
    fn full_table_is_a_limit_error_and_ids_are_never_zero() {
        let slots = CallSlots::new(2);
        let a = slots.acquire().unwrap();
        let b = slots.acquire().unwrap();
        assert!(a.get() != 0 && b.get() != 0);
        assert!(matches!(slots.acquire(), Err(Error::Limit(_))));
        slots.release(a);
        assert!(slots.acquire().is_ok());
    }

    #[test]
    fn fail_all_wakes_every_waiter_and_refuses_new_calls() {
        let slots = Arc::new(CallSlots::new(8));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let id = slots.acquire().unwrap();
                let s = slots.clone();
                std::thread::spawn(move || s.wait(id, None))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        slots.fail_all(&Error::Closed("bye".into()));
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(Error::Closed("bye".into())));
        }
        assert!(matches!(slots.acquire(), Err(Error::Closed(_))));
        assert_eq!(slots.in_flight(), 0);
    }

    #[test]
    fn forged_ids_are_ignored() {
        let slots = CallSlots::new(2);
        assert!(!slots.complete(CallId::from_raw(u64::MAX), Ok(Bytes::new())));
        assert!(!slots.complete(join(1, 7), Ok(Bytes::new())));
    }

    /// Every order of the events that race on one call slot (the reply, a disconnect or
    /// timeout's late reply, shutdown, the caller giving up), applied to the real table: each
    /// slot operation is one critical section, so the interleavings of whole operations are
    /// all the interleavings there are. In every order the caller gets exactly one outcome,
    /// only the first completion counts, stale ids change nothing, and no slot leaks.
    #[test]
    fn every_interleaving_of_complete_timeout_disconnect_and_shutdown() {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        enum Step {
            Reply,
            Disconnect,
            Shutdown,
            GiveUp,
        }
        fn orders(steps: &[Step]) -> Vec<Vec<Step>> {
            if steps.is_empty() {
                return vec![vec![]];
            }
            let mut all = Vec::new();
            for i in 0..steps.len() {
                let mut rest = steps.to_vec();
                let first = rest.remove(i);
                for mut tail in orders(&rest) {
                    tail.insert(0, first);
                    all.push(tail);
                }
            }
            all
        }
        let steps = [Step::Reply, Step::Disconnect, Step::Shutdown, Step::GiveUp];
        let mut cases = 0;
        // Every ordered selection of the steps: each prefix of each permutation, once.
        let selections: std::collections::HashSet<Vec<Step>> = (1..=steps.len())
            .flat_map(|len| orders(&steps).into_iter().map(move |o| o[..len].to_vec()))
            .collect();
        for order in selections {
            cases += 1;
            let slots = CallSlots::new(1);
            let id = slots.acquire().unwrap();
            let mut outcome: Option<Outcome> = None;
            let mut first_completion: Option<Outcome> = None;
            for step in &order {
                match step {
                    Step::Reply | Step::Disconnect => {
                        let o: Outcome = if *step == Step::Reply {
                            Ok(Bytes::from_static(b"reply"))
                        } else {
                            Err(Error::Disconnected("gone".into()))
                        };
                        let delivered = slots.complete(id, o.clone());
                        let expect = outcome.is_none() && first_completion.is_none();
                        assert_eq!(delivered, expect, "{order:?}");
                        if delivered {
                            first_completion = Some(o);
                        }
                    }
                    Step::Shutdown => {
                        slots.fail_all(&Error::Closed("bye".into()));
                        if outcome.is_none() && first_completion.is_none() {
                            first_completion = Some(Err(Error::Closed("bye".into())));
                        }
                    }
                    Step::GiveUp => {
                        if outcome.is_none() {
                            let got = slots.wait(id, Some(Duration::ZERO));
                            let expect = first_completion
                                .clone()
                                .unwrap_or(Err(Error::Timeout(Duration::ZERO)));
                            assert_eq!(got, expect, "{order:?}");
                            outcome = Some(got);
                        }
                    }
                }
            }
            if outcome.is_none() {
                // The caller collects whatever came first, or gives up now.
                let got = slots.wait(id, Some(Duration::ZERO));
                assert_eq!(
                    got,
                    first_completion.unwrap_or(Err(Error::Timeout(Duration::ZERO))),
                    "{order:?}"
                );
            }
            assert_eq!(slots.in_flight(), 0, "{order:?}: a slot leaked");
            // The slot is reusable (unless shut down), and the old id stays dead.
            assert!(!slots.complete(id, Ok(Bytes::new())), "{order:?}");
            if let Ok(next) = slots.acquire() {
                assert_ne!(next, id);
                assert!(!slots.complete(id, Ok(Bytes::new())));
                assert!(slots.complete(next, Ok(Bytes::from_static(b"n"))));
                assert_eq!(slots.wait(next, None).unwrap(), Bytes::from_static(b"n"));
            }
        }
        assert_eq!(cases, 4 + 12 + 24 + 24);
    }

    /// The same races on real threads, many times over: callers with random timeouts, a
    /// completer answering live and stale ids alike, and a shutdown in the middle. Every caller
    /// gets exactly one outcome, never another call's reply, and no slot leaks.
    #[test]
    fn racing_threads_never_cross_replies_or_leak_slots() {
        let slots = Arc::new(CallSlots::new(64));
        let (ids_tx, ids_rx) = crossbeam_channel::unbounded::<CallId>();
        let completer = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for id in ids_rx {
                    seen.push(id);
                    // Answer this call with its own id, and replay an old one (stale).
                    slots.complete(id, Ok(Bytes::copy_from_slice(&id.get().to_le_bytes())));
                    let stale = seen[(id.get() as usize * 7919) % seen.len()];
                    slots.complete(
                        stale,
                        Ok(Bytes::copy_from_slice(&stale.get().to_le_bytes())),
                    );
                }
            })
        };
        let callers: Vec<_> = (0..8)
            .map(|t| {
                let (slots, tx) = (slots.clone(), ids_tx.clone());
                std::thread::spawn(move || {
                    let mut outcomes = 0;
                    for i in 0..500u64 {
                        let Ok(id) = slots.acquire() else { break };
                        tx.send(id).unwrap();
                        let timeout = if (i + t) % 3 == 0 {
                            Some(Duration::from_micros(50))
                        } else {
                            None
                        };
                        match slots.wait(id, timeout.or(Some(Duration::from_secs(10)))) {
                            Ok(reply) => assert_eq!(
                                reply.as_ref(),
                                id.get().to_le_bytes(),
                                "a reply crossed calls"
                            ),
                            Err(Error::Timeout(_)) | Err(Error::Closed(_)) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                        outcomes += 1;
                        if t == 0 && i == 250 {
                            slots.fail_all(&Error::Closed("shutdown".into()));
                        }
                    }
                    outcomes
                })
            })
            .collect();
        drop(ids_tx);
        for c in callers {
            c.join().expect("a caller panicked");
        }
        completer.join().unwrap();
        assert_eq!(slots.in_flight(), 0);
    }

    const ALICE: ConnId = ConnId(1);
    const BOB: ConnId = ConnId(2);

    #[test]
    fn only_the_peer_a_call_went_to_can_answer_it_and_only_once() {
        let slots = CallSlots::new(8);
        let mut outbound = Outbound::new(8);
        let (mut alice, mut bob) = (PeerCalls::default(), PeerCalls::default());
        let call = slots.acquire().unwrap();
        outbound.sent(&mut alice, ALICE, call);
        assert!(
            !outbound.take(&mut bob, BOB, call),
            "bob answered alice's call"
        );
        assert!(outbound.take(&mut alice, ALICE, call));
        assert!(!outbound.take(&mut alice, ALICE, call), "answered twice");
        assert!(outbound.take_all(&mut alice).is_empty());
        // Ids that name no slot at all are refused, not a panic.
        assert!(!outbound.take(&mut alice, ALICE, CallId::from_raw(u64::MAX)));
    }

    #[test]
    fn a_closing_peer_fails_exactly_its_calls_and_an_abandoned_call_is_forgotten() {
        // Four slots, all taken: the next call can only reuse the abandoned one's.
        let slots = CallSlots::new(4);
        let mut outbound = Outbound::new(4);
        let (mut alice, mut bob) = (PeerCalls::default(), PeerCalls::default());
        let to_alice: Vec<_> = (0..3).map(|_| slots.acquire().unwrap()).collect();
        let to_bob = slots.acquire().unwrap();
        for &c in &to_alice {
            outbound.sent(&mut alice, ALICE, c);
        }
        outbound.sent(&mut bob, BOB, to_bob);
        // The middle call times out: its caller abandons it, then frees the slot.
        let abandoned = to_alice[1];
        assert!(matches!(
            slots.wait_or(abandoned, Some(Duration::ZERO), || {
                assert!(outbound.take(&mut alice, ALICE, abandoned));
            }),
            Err(Error::Timeout(_))
        ));
        assert!(!outbound.take(&mut alice, ALICE, abandoned), "late reply");
        // Its slot carries a new call to bob; alice's close fails only her two.
        let reused = slots.acquire().unwrap();
        assert_eq!(split(reused).0, split(abandoned).0);
        outbound.sent(&mut bob, BOB, reused);
        let mut failed = outbound.take_all(&mut alice);
        failed.sort();
        let mut expected = vec![to_alice[0], to_alice[2]];
        expected.sort();
        assert_eq!(failed, expected);
        assert!(outbound.take(&mut bob, BOB, reused));
        assert_eq!(outbound.take_all(&mut bob), vec![to_bob]);
    }

    proptest::proptest! {
        /// Any sequence of sends, replies or abandons (by the right peer or a wrong one) and
        /// closes leaves the record agreeing with a plain map of call to peer.
        #[test]
        fn the_record_agrees_with_a_map_of_calls_to_peers(
            ops in proptest::collection::vec((0u8..4, 0usize..3, 0usize..16), 1..200)
        ) {
            let slots = CallSlots::new(16);
            let mut outbound = Outbound::new(16);
            let mut lists: Vec<PeerCalls> = (0..3).map(|_| PeerCalls::default()).collect();
            let mut model: std::collections::HashMap<CallId, usize> = Default::default();
            let mut issued: Vec<CallId> = Vec::new();
            for (op, peer, pick) in ops {
                let id = ConnId(peer as u64 + 1);
                match op {
                    0 => {
                        if let Ok(call) = slots.acquire() {
                            outbound.sent(&mut lists[peer], id, call);
                            model.insert(call, peer);
                            issued.push(call);
                        }
                    }
                    1 | 2 if !issued.is_empty() => {
                        // A reply, or (op 2) the caller giving up: the same taking.
                        let call = issued[pick % issued.len()];
                        let expect = model.get(&call) == Some(&peer);
                        proptest::prop_assert_eq!(
                            outbound.take(&mut lists[peer], id, call),
                            expect
                        );
                        if expect {
                            model.remove(&call);
                            slots.release(call);
                        }
                    }
                    _ => {
                        let mut got = outbound.take_all(&mut lists[peer]);
                        let mut want: Vec<CallId> = model
                            .iter()
                            .filter(|(_, p)| **p == peer)
                            .map(|(c, _)| *c)
                            .collect();
                        got.sort();
                        want.sort();
                        proptest::prop_assert_eq!(&got, &want);
                        for call in want {
                            model.remove(&call);
                            slots.release(call);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reply_routes_are_taken_exactly_once() {
        let table = ReplyTable::new(2);
        let id = table.insert("route").unwrap();
        assert_eq!(table.take(id), Some("route"));
        assert_eq!(table.take(id), None);
        assert_eq!(table.take(CallId::from_raw(12345)), None);
        let again = table.insert("next").unwrap();
        assert_ne!(again, id);
        assert_eq!(table.take(id), None);
        assert_eq!(table.pending(), 1);
        table.insert("second").unwrap();
        assert_eq!(
            table.insert("third"),
            Err("third"),
            "full: the route comes back"
        );
    }
}
