//! The work-stealing scheduler.
//!
//! * Each worker owns a FIFO deque. A task scheduled from a worker thread goes to that worker's
//!   deque; from any other thread it goes to the global injector.
//! * An idle worker steals: a batch from the injector first, then from other workers' deques.
//! * Workers that find nothing search for a while (spin, then yield, for up to the pool's spin
//!   time, default 100 µs) and then park. A worker is woken only when work is pushed where it could
//!   help: onto the injector, or onto a deque that already held work. (A task pushed onto the
//!   pusher's own empty deque will be run by the pusher itself as soon as its current task
//!   returns, so waking a sibling for it would only cost a futex call — this is what keeps a
//!   ping-pong between two components on one core instead of bouncing across cores.)
//! * No wake-up is lost: a parking worker registers as a sleeper *then* re-checks every queue,
//!   while a pusher publishes its task *then* checks for sleepers (both sequentially
//!   consistent), so at least one of them sees the other.

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::sync::{Parker, Unparker};
use crossbeam_utils::Backoff;
use parking_lot::Mutex;
use selfman_core::{Scheduler, Task};

/// How often (in tasks) a worker polls the injector before its own deque, so that externally
/// scheduled work is not starved by a busy local deque.
const INJECTOR_INTERVAL: u32 = 61;

/// The shared state of a worker pool.
pub struct Pool {
    injector: Injector<Task>,
    stealers: Vec<Stealer<Task>>,
    unparkers: Vec<Unparker>,
    sleepers: Mutex<Vec<usize>>,
    num_sleeping: AtomicUsize,
    searching: AtomicUsize,
    shutdown: AtomicBool,
    spin: Duration,
}

/// What a worker thread keeps for itself.
pub struct WorkerHandle {
    index: usize,
    local: Worker<Task>,
    parker: Parker,
}

struct Current {
    pool: *const Pool,
    local: *const Worker<Task>,
}

thread_local! {
    static CURRENT: Cell<Option<&'static CurrentSlot>> = const { Cell::new(None) };
}

/// Leaked once per worker thread so the thread-local can point at it.
struct CurrentSlot(Current);

// SAFETY: the slot is only read on the worker thread that created it.
unsafe impl Sync for CurrentSlot {}

impl Pool {
    /// A pool for `workers` workers, with the handle each worker thread runs with. An idle
    /// worker keeps looking for work for `spin` (yielding the core to other threads between
    /// looks) before it parks.
    pub fn new(workers: usize, spin: Duration) -> (Arc<Pool>, Vec<WorkerHandle>) {
        let workers = workers.max(1);
        let locals: Vec<Worker<Task>> = (0..workers).map(|_| Worker::new_fifo()).collect();
        let parkers: Vec<Parker> = (0..workers).map(|_| Parker::new()).collect();
        let pool = Arc::new(Pool {
            injector: Injector::new(),
            stealers: locals.iter().map(Worker::stealer).collect(),
            unparkers: parkers.iter().map(|p| p.unparker().clone()).collect(),
            sleepers: Mutex::new(Vec::with_capacity(workers)),
            num_sleeping: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            spin,
        });
        let handles = locals
            .into_iter()
            .zip(parkers)
            .enumerate()
            .map(|(index, (local, parker))| WorkerHandle { index, local, parker })
            .collect();
        (pool, handles)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.stealers.len()
    }

    /// Asks every worker to exit once it is idle, and wakes them all.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for u in &self.unparkers {
            u.unpark();
        }
    }

    /// Runs the worker loop on the current thread until [`Pool::shutdown`].
    pub fn run_worker(self: &Arc<Self>, handle: WorkerHandle) {
        let slot: &'static CurrentSlot = Box::leak(Box::new(CurrentSlot(Current {
            pool: Arc::as_ptr(self),
            local: &handle.local,
        })));
        CURRENT.with(|c| c.set(Some(slot)));
        let mut tick: u32 = 0;
        loop {
            tick = tick.wrapping_add(1);
            if let Some(task) = self.next_local(&handle, tick) {
                task.run();
                continue;
            }
            if let Some(task) = self.search_spinning(&handle) {
                task.run();
                continue;
            }
            if self.shutdown.load(Ordering::SeqCst) {
                break;
            }
            self.park(&handle);
        }
        CURRENT.with(|c| c.set(None));
        // SAFETY: `slot` was leaked from a Box above and the thread-local no longer refers to it.
        drop(unsafe { Box::from_raw(std::ptr::from_ref(slot).cast_mut()) });
    }

    fn next_local(&self, h: &WorkerHandle, tick: u32) -> Option<Task> {
        if tick % INJECTOR_INTERVAL == 0 {
            if let Some(t) = steal_one(|| self.injector.steal_batch_and_pop(&h.local)) {
                return Some(t);
            }
        }
        h.local.pop()
    }

    /// Searches for work for a short while (spinning, then yielding, up to the pool's spin
    /// time) before the caller parks: a producer that schedules work every few microseconds
    /// then costs no futex calls, and a reply that arrives within the spin time finds a worker
    /// awake (waking a parked thread on an idle core costs tens of microseconds, most of a
    /// loopback round trip).
    fn search_spinning(&self, h: &WorkerHandle) -> Option<Task> {
        let backoff = Backoff::new();
        let mut deadline: Option<Instant> = None;
        loop {
            if let Some(t) = self.search(h) {
                return Some(t);
            }
            if self.shutdown.load(Ordering::Relaxed) {
                return None;
            }
            if backoff.is_completed() {
                if self.spin.is_zero() {
                    return None;
                }
                let now = Instant::now();
                let d = *deadline.get_or_insert(now + self.spin);
                if now >= d {
                    return None;
                }
                std::thread::yield_now();
                continue;
            }
            backoff.snooze();
        }
    }

    fn search(&self, h: &WorkerHandle) -> Option<Task> {
        self.searching.fetch_add(1, Ordering::SeqCst);
        let found = self.steal(h);
        let last = self.searching.fetch_sub(1, Ordering::SeqCst) == 1;
        if found.is_some() && last && (!h.local.is_empty() || !self.injector.is_empty()) {
            // More work is visible: make sure somebody else looks for it too.
            self.notify_one();
        }
        found
    }

    fn steal(&self, h: &WorkerHandle) -> Option<Task> {
        if let Some(t) = steal_one(|| self.injector.steal_batch_and_pop(&h.local)) {
            return Some(t);
        }
        let n = self.stealers.len();
        for k in 1..n {
            let victim = &self.stealers[(h.index + k) % n];
            if let Some(t) = steal_one(|| victim.steal_batch_and_pop(&h.local)) {
                return Some(t);
            }
        }
        None
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn park(&self, h: &WorkerHandle) {
        {
            let mut s = self.sleepers.lock();
            s.push(h.index);
            self.num_sleeping.fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        if self.has_work() || self.shutdown.load(Ordering::SeqCst) {
            let mut s = self.sleepers.lock();
            if let Some(pos) = s.iter().position(|&i| i == h.index) {
                s.swap_remove(pos);
                self.num_sleeping.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            // Already chosen by a notifier: its unpark token is (or will be) set; consume it.
        }
        loop {
            h.parker.park();
            if self.shutdown.load(Ordering::SeqCst) || !self.sleepers.lock().contains(&h.index) {
                break;
            }
        }
    }

    /// Wakes one parked worker, unless none is parked or one is already searching.
    fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.num_sleeping.load(Ordering::SeqCst) == 0
            || self.searching.load(Ordering::SeqCst) > 0
        {
            return;
        }
        let woken = {
            let mut s = self.sleepers.lock();
            let w = s.pop();
            if w.is_some() {
                self.num_sleeping.fetch_sub(1, Ordering::SeqCst);
            }
            w
        };
        if let Some(i) = woken {
            self.unparkers[i].unpark();
        }
    }
}

fn steal_one(mut f: impl FnMut() -> Steal<Task>) -> Option<Task> {
    loop {
        match f() {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}

impl Scheduler for Pool {
    fn schedule(&self, task: Task) {
        let me: *const Pool = self;
        let local = CURRENT.with(|c| c.get()).filter(|s| std::ptr::eq(s.0.pool, me));
        match local {
            Some(slot) => {
                // SAFETY: `slot.0.local` points at the deque owned by this worker thread's
                // `WorkerHandle`, which outlives the thread-local registration.
                let local = unsafe { &*slot.0.local };
                let had_work = !local.is_empty();
                local.push(task);
                if had_work {
                    self.notify_one();
                }
            }
            None => {
                self.injector.push(task);
                self.notify_one();
            }
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers())
            .field("sleeping", &self.num_sleeping.load(Ordering::Relaxed))
            .finish()
    }
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle").field("index", &self.index).finish()
    }
}
