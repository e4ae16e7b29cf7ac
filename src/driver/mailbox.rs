//! How other threads reach an event loop: a command channel and the loop's waker, woken only
//! when the loop is not already due to drain (one wake-up covers a burst of commands).

use crossbeam_channel::{unbounded, Receiver, Sender, TryIter};
use mio::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// A loop's inbox of `C` commands.
pub(crate) struct Mailbox<C> {
    commands: (Sender<C>, Receiver<C>),
    waker: OnceLock<Waker>,
    wake_pending: AtomicBool,
}

impl<C> Default for Mailbox<C> {
    fn default() -> Self {
        Mailbox {
            commands: unbounded(),
            waker: OnceLock::new(),
            wake_pending: AtomicBool::new(false),
        }
    }
}

impl<C> Mailbox<C> {
    /// Gives the mailbox its loop's waker; false if it already has one.
    pub(crate) fn set_waker(&self, waker: Waker) -> bool {
        self.waker.set(waker).is_ok()
    }

    /// Queues a command, waking the loop unless it is already due to drain.
    pub(crate) fn send(&self, cmd: C) {
        let _ = self.commands.0.send(cmd);
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Some(waker) = self.waker.get() {
                if let Err(e) = waker.wake() {
                    tracing::error!("cannot wake an event loop: {e}");
                }
            }
        }
    }

    /// The loop's side: the commands sent since it last looked (the next send wakes it again).
    pub(crate) fn take(&self) -> TryIter<'_, C> {
        self.wake_pending.store(false, Ordering::Release);
        self.commands.1.try_iter()
    }
}
