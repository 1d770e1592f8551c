//! A port's incoming event queue.
//!
//! Invariants:
//! * Producers (any thread) push into `shared` under its lock; FIFO per producer is therefore
//!   FIFO per channel.
//! * Only the worker currently running the owning component touches `local` (taking `shared`
//!   into it in one swap, then handling from it), so handling costs no lock per event.
//! * Each push that makes `shared` non-empty adds one *signal* to the owner's pending count, and
//!   each take of a non-empty `shared` consumes one. The signal is added while the lock is held,
//!   so a take never consumes a signal that has not been counted yet.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::component::cell::ComponentCell;

pub(crate) struct Inbox<E> {
    shared: Mutex<VecDeque<E>>,
    /// Hint that `shared` is non-empty; exact only under the lock.
    nonempty: AtomicBool,
    local: Mutex<VecDeque<E>>,
}

impl<E> Inbox<E> {
    pub(crate) fn new() -> Self {
        Inbox {
            shared: Mutex::new(VecDeque::new()),
            nonempty: AtomicBool::new(false),
            local: Mutex::new(VecDeque::new()),
        }
    }

    /// Queues `event` for `owner` and schedules the owner if this made its pending work
    /// non-zero.
    pub(crate) fn push(&self, owner: &Arc<ComponentCell>, event: E) {
        let schedule = {
            let mut q = self.shared.lock();
            q.push_back(event);
            if q.len() == 1 {
                self.nonempty.store(true, Ordering::Relaxed);
                owner.add_signal()
            } else {
                false
            }
        };
        if schedule {
            owner.schedule();
        }
    }

    /// Moves everything from `shared` to `local`. Returns `true` if anything was taken (which
    /// consumes one signal). Only the running worker may call this.
    pub(crate) fn take(&self) -> bool {
        if !self.nonempty.load(Ordering::Relaxed) {
            return false;
        }
        let mut q = self.shared.lock();
        if q.is_empty() {
            return false;
        }
        self.nonempty.store(false, Ordering::Relaxed);
        let mut local = self.local.lock();
        if local.is_empty() {
            std::mem::swap(&mut *local, &mut *q);
        } else {
            local.extend(q.drain(..));
        }
        true
    }

    /// The consumer-side queue. Only the running worker may lock it (uncontended).
    pub(crate) fn local(&self) -> parking_lot::MutexGuard<'_, VecDeque<E>> {
        self.local.lock()
    }

    pub(crate) fn has_local(&self) -> bool {
        !self.local.lock().is_empty()
    }

    /// Events queued in total (for introspection).
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().len() + self.local.lock().len()
    }

    /// Drops what arrived and what is held locally. Returns whether anything arrived (which
    /// consumes a signal) and how many events were dropped. Only the running worker may call it.
    pub(crate) fn discard(&self) -> (bool, usize) {
        let took = self.take();
        let mut local = self.local.lock();
        let n = local.len();
        local.clear();
        (took, n)
    }

    /// Drops every queued event; returns how many. Used when the owner is destroyed.
    pub(crate) fn clear(&self) -> usize {
        let mut n = 0;
        {
            let mut q = self.shared.lock();
            n += q.len();
            q.clear();
            self.nonempty.store(false, Ordering::Relaxed);
        }
        let mut local = self.local.lock();
        n += local.len();
        local.clear();
        n
    }
}
