//! A port's incoming event queue.
//!
//! Invariants:
//! * Producers (any thread) push into `shared` under its lock; FIFO per producer is therefore
//!   FIFO per channel.
//! * Only the turn currently running the owning component touches `local` (taking `shared`
//!   into it in one swap, then handling from it), so handling costs no lock per event. Turns of
//!   a component never overlap and run under its cell's `run` lock, which is what makes the
//!   unsynchronised `local` sound: every function touching it is `unsafe` with that
//!   precondition (*runner only*: the caller runs a turn of the owner — holds its `run` lock —
//!   or the owner is not yet reachable by any other thread, as while it is being created).
//! * Each push that makes `shared` non-empty adds one *signal* to the owner's pending count, and
//!   each take of a non-empty `shared` consumes one. The signal is added while the lock is held,
//!   so a take never consumes a signal that has not been counted yet.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::component::cell::ComponentCell;
use crate::lock::Lock;
use crate::prefetch::prefetch;

/// The most buffer an emptied queue keeps for the next arrivals, in bytes; a larger one (left by
/// a backlog) is freed.
const RETAIN_BYTES: usize = 64 * 1024;

/// Producers' and runner's fields sit side by side, without padding between them: padding to
/// separate cache lines cost a line per turn where memory is the bottleneck and bought nothing
/// measurable across cores (decision 010).
#[repr(C)]
pub(crate) struct Inbox<E> {
    /// Hint that `shared` is non-empty; exact only under the lock. First, so that a turn that
    /// finds it clear (the control queue, nearly always) reads the first line only.
    nonempty: AtomicBool,
    /// This port's bit in its owner's ready mask (see `ComponentCell::mark_ready`); 0 for the
    /// control queue, which every turn checks anyway.
    bit: u64,
    /// Written by producers (any thread).
    shared: Lock<VecDeque<E>>,
    /// Touched only by the runner (see the module's invariants).
    local: UnsafeCell<VecDeque<E>>,
    /// Length of `local` as of the runner's last take or batch, for introspection: observers
    /// never touch `local`.
    local_len: AtomicUsize,
}

// SAFETY: `shared` and the atomics are synchronised; `local` is only touched by the owner's
// runner (the precondition of every function that reaches it), one thread at a time, with the
// owner's `run` lock ordering successive turns on different threads.
unsafe impl<E: Send> Sync for Inbox<E> {}

impl<E> Inbox<E> {
    pub(crate) fn new() -> Self {
        Self::with_bit(0)
    }

    /// An inbox that sets `bit` in its owner's ready mask whenever it becomes non-empty.
    pub(crate) fn with_bit(bit: u64) -> Self {
        Inbox {
            nonempty: AtomicBool::new(false),
            bit,
            shared: Lock::new(VecDeque::new()),
            local: UnsafeCell::new(VecDeque::new()),
            local_len: AtomicUsize::new(0),
        }
    }

    /// Queues `event` for `owner` and schedules the owner if this made its pending work
    /// non-zero.
    pub(crate) fn push(&self, owner: &Arc<ComponentCell>, event: E) {
        self.push_if(owner, event, None);
    }

    /// As [`Inbox::push`], but only if `gate` (checked under the queue lock) is still open.
    /// Together with [`Inbox::barrier`] this lets a channel guarantee that nothing is queued
    /// over it once its disconnection has returned.
    ///
    /// Where producers run far from the receiver's memory (a simulation of thousands of nodes,
    /// each touched at random), the inbox and the owner's cell are cache misses of their own;
    /// the cell is fetched ahead, so the two overlap, and the owner is signalled before the
    /// event is stored (all under the lock, so no one can tell the order) so the locked
    /// signalling does not wait for the store's miss on the queue buffer.
    #[inline]
    pub(crate) fn push_if(&self, owner: &Arc<ComponentCell>, event: E, gate: Option<&AtomicBool>) {
        prefetch(Arc::as_ptr(owner));
        let schedule = {
            let mut q = self.shared.lock();
            if gate.is_some_and(|g| !g.load(Ordering::Acquire)) {
                return;
            }
            let schedule = if q.is_empty() {
                self.nonempty.store(true, Ordering::Relaxed);
                if self.bit != 0 {
                    owner.mark_ready(self.bit);
                }
                owner.add_signal()
            } else {
                false
            };
            q.push_back(event);
            schedule
        };
        if schedule {
            owner.prefetch_turn();
            owner.schedule();
        }
    }

    /// Waits until no push is in progress: a push that checked a gate before it was closed has
    /// finished when this returns, and later pushes see the gate closed.
    pub(crate) fn barrier(&self) {
        drop(self.shared.lock());
    }

    /// Moves everything from `shared` to `local`. Returns `true` if anything was taken (which
    /// consumes one signal).
    ///
    /// Unless `hold` is set, nothing is taken while `local` still has events: the runner
    /// handles those first, and producers keep the arrival queue to themselves meanwhile (fewer
    /// lock hand-overs between cores, no copying). `hold` (used while the component is not
    /// handling events, and for control events) takes everything regardless.
    ///
    /// # Safety
    ///
    /// Runner only (see the module's invariants).
    #[inline]
    pub(crate) unsafe fn take(&self, hold: bool) -> bool {
        if !self.nonempty.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: our caller's precondition.
        unsafe { self.take_arrived(hold) }
    }

    /// [`Inbox::take`] once the hint says something arrived.
    ///
    /// # Safety
    ///
    /// Runner only.
    unsafe fn take_arrived(&self, hold: bool) -> bool {
        // SAFETY: runner only, and no other reference to `local` is alive (none is kept across
        // calls).
        let local = unsafe { &mut *self.local.get() };
        if !hold && !local.is_empty() {
            return false;
        }
        let mut q = self.shared.lock();
        if q.is_empty() {
            return false;
        }
        self.nonempty.store(false, Ordering::Relaxed);
        if local.is_empty() {
            std::mem::swap(local, &mut *q);
        } else {
            local.extend(q.drain(..));
        }
        // The arrival queue now holds the buffer the runner emptied. A backlog grew it, and a
        // deque never gives capacity back: keep a large one and every burst a port ever saw
        // stays allocated for good (the heap "growth" of long loaded runs). Give it back; it is
        // freed after the lock is released.
        let spare = (q.capacity() * std::mem::size_of::<E>() > RETAIN_BYTES)
            .then(|| std::mem::take(&mut *q));
        // Published before the arrival lock is released, so an observer (`len`) never sees the
        // events in neither queue.
        self.local_len.store(local.len(), Ordering::Relaxed);
        drop(q);
        drop(spare);
        true
    }

    /// Takes the next locally held event.
    ///
    /// # Safety
    ///
    /// Runner only.
    #[inline]
    pub(crate) unsafe fn pop_local(&self) -> Option<E> {
        // SAFETY: runner only; the reference ends here, before the event is handled.
        unsafe { &mut *self.local.get() }.pop_front()
    }

    /// Publishes the local queue's length for observers; returns whether events are left.
    ///
    /// # Safety
    ///
    /// Runner only.
    #[inline]
    pub(crate) unsafe fn settle(&self) -> bool {
        // SAFETY: runner only.
        let n = unsafe { &*self.local.get() }.len();
        self.local_len.store(n, Ordering::Relaxed);
        n > 0
    }

    /// Whether events are held locally.
    ///
    /// # Safety
    ///
    /// Runner only.
    pub(crate) unsafe fn has_local(&self) -> bool {
        // SAFETY: runner only.
        !unsafe { &*self.local.get() }.is_empty()
    }

    /// Events queued in total (for introspection; the local part as of the last batch).
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().len() + self.local_len.load(Ordering::Relaxed)
    }

    /// Drops what arrived and what is held locally. Returns whether anything arrived (which
    /// consumes a signal) and how many events were dropped.
    ///
    /// # Safety
    ///
    /// Runner only.
    pub(crate) unsafe fn discard(&self) -> (bool, usize) {
        // SAFETY: runner only (our precondition).
        let took = unsafe { self.take(true) };
        // SAFETY: runner only; `take` has returned, so no other reference to `local` is alive.
        let local = unsafe { &mut *self.local.get() };
        let n = local.len();
        local.clear();
        self.local_len.store(0, Ordering::Relaxed);
        (took, n)
    }
}
