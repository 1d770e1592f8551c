//! A mutual-exclusion lock for the two locks every event goes through — a port's arrival queue
//! and a component's run state — whose **release is a plain store**.
//!
//! `parking_lot::Mutex` releases with a compare-and-swap (it must learn whether a waiter
//! parked), so taking and releasing it costs two locked instructions; here it costs one. With
//! one event per turn an event passes three such locks (the producer's push, the turn's take,
//! the turn itself), and locked instructions are most of what an event costs
//! (`docs/decisions/015-one-locked-instruction-per-lock.md`).
//!
//! The price is that a waiter never sleeps on a queue: it spins, then yields its core, then
//! sleeps in short naps until the holder lets go, having marked the lock so that nobody takes
//! it before the napper. That suits locks held for a few
//! dozen instructions (a queue push, a swap of two queues) and the run lock, which only a rare
//! outsider contends for (introspection, typed access to a definition) — never for locks held
//! across slow work by several threads.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// A lock around a `T`; see the module documentation for when it fits.
pub(crate) struct Lock<T> {
    /// [`HELD`] while a guard exists; [`WANTED`] while a waiter has waited past its spins.
    state: AtomicU8,
    value: UnsafeCell<T>,
}

/// A guard exists.
const HELD: u8 = 1;
/// A waiter has waited past its spins: until it gets the lock, nobody else takes it. Without
/// this a thread that polls in naps could starve behind a holder that takes the lock again a
/// few instructions after every release (a busy component's turns, against an outsider's
/// typed access).
const WANTED: u8 = 2;

// SAFETY: the value is only reached through a guard, and at most one guard exists at a time
// (`HELD`, set by a compare-and-swap with Acquire and cleared with Release, orders successive
// holders).
unsafe impl<T: Send> Send for Lock<T> {}
// SAFETY: as above; sharing the lock hands `&mut T` to one thread at a time, so `T: Send`
// suffices.
unsafe impl<T: Send> Sync for Lock<T> {}

/// Exclusive access to a [`Lock`]'s value until dropped.
pub(crate) struct LockGuard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Lock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Lock { state: AtomicU8::new(0), value: UnsafeCell::new(value) }
    }

    /// Waits until the lock is free, then holds it.
    #[inline]
    pub(crate) fn lock(&self) -> LockGuard<'_, T> {
        if self.state.compare_exchange_weak(0, HELD, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            self.lock_contended();
        }
        LockGuard { lock: self }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut round: u32 = 0;
        let mut since: Option<Instant> = None;
        loop {
            let s = self.state.load(Ordering::Relaxed);
            let long = since.is_some_and(|t| t.elapsed() >= LONG_WAIT);
            // A fresh waiter takes a free lock nobody wants; one that has waited long takes it
            // free whether or not it (or another long waiter) marked it wanted.
            let free = if long { s & HELD == 0 } else { s == 0 };
            if free
                && self
                    .state
                    .compare_exchange_weak(s, HELD, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            if round < SPIN_ROUNDS {
                for _ in 0..(1u32 << round) {
                    std::hint::spin_loop();
                }
                round += 1;
            } else if !long {
                since.get_or_insert_with(Instant::now);
                std::thread::yield_now();
            } else {
                if s & WANTED == 0 {
                    // (A release may clear this again; it is set anew every round.)
                    self.state.fetch_or(WANTED, Ordering::Relaxed);
                }
                let shift = (round - SPIN_ROUNDS).min(3);
                round = round.saturating_add(1);
                std::thread::sleep(Duration::from_micros(10u64 << shift));
            }
        }
    }
}

/// Spins that double up to 64 before a waiter yields its core (the holder may be descheduled).
const SPIN_ROUNDS: u32 = 7;
/// How long a waiter yields before it counts as long: then it marks the lock [`WANTED`] and naps
/// (10 µs doubling to 80 µs, shorter than this, so a fresh waiter held back by the mark does not
/// become long itself before the napper has had its turn).
const LONG_WAIT: Duration = Duration::from_micros(200);

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `Lock`'s Sync impl).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one, and `&mut self` makes this the only reference
        // through it.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for LockGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Only the holder clears HELD, and while it is held nothing but a waiter's WANTED
        // changes the state, so a load and a store (no locked instruction) release it. A
        // WANTED set between the two is lost; its waiter sets it again next round.
        let s = self.lock.state.load(Ordering::Relaxed);
        self.lock.state.store(s & WANTED, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn holders_exclude_each_other() {
        // Each thread does a non-atomic read-modify-write under the lock; a lock that let two
        // holders in would lose increments.
        let lock = Arc::new(Lock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let mut g = lock.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 200_000);
    }

    #[test]
    fn a_waiter_gets_the_lock_after_a_long_hold() {
        let lock = Arc::new(Lock::new(Vec::new()));
        let g = lock.lock();
        let waiter = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || lock.lock().push(2))
        };
        std::thread::sleep(Duration::from_millis(30));
        drop(g);
        waiter.join().unwrap();
        lock.lock().push(3);
        assert_eq!(*lock.lock(), vec![2, 3]);
    }

    #[test]
    fn a_long_waiter_is_not_starved_by_a_holder_that_relocks_at_once() {
        // One thread holds the lock nearly all the time, releasing it for a few instructions
        // between holds (a busy component's turns); another asks once. Without WANTED the
        // second thread, napping between polls, would almost never find it free.
        use std::sync::atomic::AtomicBool;
        let lock = Arc::new(Lock::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let busy = {
            let (lock, stop) = (Arc::clone(&lock), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut g = lock.lock();
                    let t = std::time::Instant::now();
                    while t.elapsed() < Duration::from_micros(200) {
                        std::hint::spin_loop();
                    }
                    *g += 1;
                }
            })
        };
        while *lock.lock() == 0 {
            std::thread::yield_now();
        }
        let before = *lock.lock();
        for _ in 0..20 {
            drop(lock.lock());
        }
        let holds = *lock.lock() - before;
        stop.store(true, Ordering::Relaxed);
        busy.join().unwrap();
        // Served, the waiter lets the busy thread in once or twice per acquisition (it waits
        // LONG_WAIT before it marks the lock); starved, over a hundred times (measured: 29
        // holds against 2,846 with the mark switched off). The bound leaves room for a loaded
        // machine.
        assert!(holds < 400, "the busy thread took {holds} holds while the waiter took 21");
    }

    #[test]
    fn a_panicking_holder_releases_the_lock() {
        let lock = Lock::new(1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = lock.lock();
            panic!("in the critical section");
        }));
        assert!(r.is_err());
        assert_eq!(*lock.lock(), 1);
    }
}
