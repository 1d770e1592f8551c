//! The work-stealing scheduler.
//!
//! * Each worker owns a FIFO deque and, in front of it, a **next slot** that only it can take
//!   from. A component made runnable by a handler running on a worker (a wake-up: an event to a
//!   component that had nothing to do) goes into that worker's slot; the task that held the
//!   slot moves to the back of the deque. The woken component therefore runs on the core that
//!   just wrote its events, while they are in that core's cache, and nothing can steal it in
//!   between.
//! * A component whose turn ended with work left (it **yields**) is kept aside by its worker
//!   until the worker has taken its next task, and only then goes to the back of the deque. So
//!   between two turns a deque never shows the task that just ran next to the one about to run:
//!   two components feeding each other on one worker leave at most one task in the deque.
//! * An idle worker steals: a batch from the injector first, then from other workers' deques —
//!   but only from a deque with a **backlog** (at least two tasks), or from one whose single
//!   task has waited behind a long turn (its worker ran no new task for [`LONG_TURN`]). A
//!   worker's last waiting task is left alone otherwise: that is the partner of the running
//!   task in a pair or a chain, and moving it to another core costs a cache-line transfer for
//!   every event the two exchange afterwards (`docs/decisions/014-scheduler-locality.md`).
//! * A worker runs its slot at most [`SLOT_RUNS`] times in a row while its deque holds work, so
//!   two components waking each other cannot starve the rest; every 61 tasks
//!   (`INJECTOR_INTERVAL`) it polls the injector first.
//! * Workers that find nothing search for a while (spin, then yield, for up to the pool's spin
//!   time, default 100 µs) and then park. A worker is woken only when work is pushed where it could
//!   help: onto the injector, or onto a deque that then holds a backlog.
//! * No wake-up is lost: a parking worker registers as a sleeper *then* re-checks every queue,
//!   while a pusher publishes its task *then* checks for sleepers (both sequentially
//!   consistent), so at least one of them sees the other. A task in a slot or kept aside is
//!   never anybody else's to find: its own worker is awake and runs it next.

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::sync::{Parker, Unparker};
use crossbeam_utils::{Backoff, CachePadded};
use parking_lot::Mutex;
use selfman_core::{Scheduler, Task};

/// How often (in tasks) a worker polls the injector before its own deque, so that externally
/// scheduled work is not starved by a busy local deque.
const INJECTOR_INTERVAL: u32 = 61;

/// How many turns in a row a worker may take from its next slot while its deque holds work.
pub const SLOT_RUNS: u32 = 8;

/// A deque's single waiting task may be stolen once its worker has run no new task for this
/// long (it is in one long turn, so the waiting task is not being kept warm for anything).
pub const LONG_TURN: Duration = Duration::from_micros(50);

/// What other threads may see of one worker: its next slot and its counters. The counters are
/// written only by that worker (a load and a store, no locked instruction) and read by anyone.
#[derive(Default)]
struct WorkerShared {
    /// The component woken last by a handler on this worker: runs next. Only its worker takes
    /// it, unless the worker is stuck in one turn for [`LONG_TURN`].
    next: NextSlot,
    /// Tasks run (also how thieves tell a worker in one long turn: this stops moving).
    turns: AtomicU64,
    /// Tasks taken from the next slot.
    slot_turns: AtomicU64,
    /// Successful steals by this worker (each may move a batch).
    steals: AtomicU64,
    /// Times this worker parked.
    parks: AtomicU64,
}

/// A worker's next slot: one task, put only by its worker, taken by its worker or (when the
/// worker is stuck) by a thief. The worker's put costs a plain store when the slot is empty
/// (nobody else can fill it), and a take costs nothing when it is empty: one atomic exchange per
/// woken task instead of two.
#[derive(Default)]
struct NextSlot(AtomicPtr<()>);

impl NextSlot {
    /// Puts `task` in; returns the task it displaced. Only the slot's worker may call this.
    fn put(&self, task: Task) -> Option<Task> {
        let raw = task.into_raw().cast_mut();
        if self.0.load(Ordering::Relaxed).is_null() {
            // Only this worker fills the slot, so it stays empty until this store.
            self.0.store(raw, Ordering::Release);
            None
        } else {
            Self::reclaim(self.0.swap(raw, Ordering::AcqRel))
        }
    }

    /// Takes the task out, if any (its worker, or a thief).
    fn take(&self) -> Option<Task> {
        if self.0.load(Ordering::Relaxed).is_null() {
            return None;
        }
        Self::reclaim(self.0.swap(std::ptr::null_mut(), Ordering::Acquire))
    }

    fn reclaim(p: *mut ()) -> Option<Task> {
        // SAFETY: every non-null pointer in the slot came from `Task::into_raw` in `put`, and
        // the exchange that took it out of the slot made this the only owner.
        (!p.is_null()).then(|| unsafe { Task::from_raw(p) })
    }
}

impl Drop for NextSlot {
    fn drop(&mut self) {
        drop(self.take());
    }
}

impl WorkerShared {
    fn bump(c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// What the pool's workers have done so far, summed over the workers
/// ([`crate::Runtime::scheduler_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Tasks (component turns) run.
    pub turns: u64,
    /// Of these, taken from a worker's next slot (run right after the handler that woke them).
    pub slot_turns: u64,
    /// Successful steals from the injector or another worker's deque.
    pub steals: u64,
    /// Times a worker went to sleep.
    pub parks: u64,
}

/// The shared state of a worker pool.
pub struct Pool {
    injector: Injector<Task>,
    stealers: Vec<Stealer<Task>>,
    unparkers: Vec<Unparker>,
    shared: Vec<CachePadded<WorkerShared>>,
    sleepers: Mutex<Vec<usize>>,
    num_sleeping: AtomicUsize,
    searching: AtomicUsize,
    shutdown: AtomicBool,
    spin: Duration,
}

/// The queues a worker thread owns: only that thread touches them (others steal through the
/// deque's [`Stealer`]).
struct Local {
    deque: Worker<Task>,
    /// The task whose turn just ended with work left, until the next task is chosen.
    yielded: Cell<Option<Task>>,
    /// Turns taken from `next` in a row.
    slot_streak: Cell<u32>,
}

/// What a worker thread keeps for itself.
pub struct WorkerHandle {
    index: usize,
    local: Local,
    parker: Parker,
    /// Per other worker: its turn count when this worker last saw exactly one task waiting
    /// there, and since when (for [`LONG_TURN`]).
    watch: Vec<Cell<(u64, Option<Instant>)>>,
}

struct Current {
    pool: *const Pool,
    local: *const Local,
    index: usize,
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
            shared: (0..workers).map(|_| CachePadded::new(WorkerShared::default())).collect(),
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
            .map(|(index, (deque, parker))| WorkerHandle {
                index,
                local: Local { deque, yielded: Cell::new(None), slot_streak: Cell::new(0) },
                parker,
                watch: (0..workers).map(|_| Cell::new((0, None))).collect(),
            })
            .collect();
        (pool, handles)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.stealers.len()
    }

    /// The workers' counters, summed.
    pub fn stats(&self) -> SchedulerStats {
        let mut s = SchedulerStats::default();
        for c in &self.shared {
            s.turns += c.turns.load(Ordering::Relaxed);
            s.slot_turns += c.slot_turns.load(Ordering::Relaxed);
            s.steals += c.steals.load(Ordering::Relaxed);
            s.parks += c.parks.load(Ordering::Relaxed);
        }
        s
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
            index: handle.index,
        })));
        CURRENT.with(|c| c.set(Some(slot)));
        let me = &self.shared[handle.index];
        let mut tick: u32 = 0;
        loop {
            tick = tick.wrapping_add(1);
            let task = match self.next_local(&handle, tick) {
                Some(t) => t,
                None => match self.search_spinning(&handle) {
                    Some(t) => t,
                    None => {
                        if self.shutdown.load(Ordering::SeqCst) {
                            break;
                        }
                        self.park(&handle);
                        continue;
                    }
                },
            };
            WorkerShared::bump(&me.turns);
            task.run();
        }
        CURRENT.with(|c| c.set(None));
        // SAFETY: `slot` was leaked from a Box above and the thread-local no longer refers to it.
        drop(unsafe { Box::from_raw(std::ptr::from_ref(slot).cast_mut()) });
    }

    /// The next task from this worker's own queues: the injector now and then, else the next
    /// slot (unless it has had its streak and the deque holds work), else the deque; the task
    /// that yielded last goes to the deque's back once another is chosen, or runs again if
    /// there is none.
    fn next_local(&self, h: &WorkerHandle, tick: u32) -> Option<Task> {
        let l = &h.local;
        let yielded = l.yielded.take();
        let mut next = None;
        if tick % INJECTOR_INTERVAL == 0 {
            next = steal_one(|| self.injector.steal_batch_and_pop(&l.deque));
        }
        if next.is_none() {
            next = self.pop_own(h);
        }
        match (next, yielded) {
            (Some(t), Some(y)) => {
                self.push_local(l, y);
                Some(t)
            }
            (next, yielded) => next.or(yielded),
        }
    }

    fn pop_own(&self, h: &WorkerHandle) -> Option<Task> {
        let l = &h.local;
        let me = &self.shared[h.index];
        if let Some(t) = me.next.take() {
            let streak = l.slot_streak.get();
            if streak < SLOT_RUNS || l.deque.is_empty() {
                l.slot_streak.set(streak + 1);
                WorkerShared::bump(&me.slot_turns);
                return Some(t);
            }
            // The slot has had its streak while others wait: it queues like everybody else.
            l.deque.push(t);
        }
        l.slot_streak.set(0);
        l.deque.pop()
    }

    /// Pushes onto this worker's deque; wakes a sleeper if the deque now has a backlog.
    fn push_local(&self, l: &Local, task: Task) {
        l.deque.push(task);
        if l.deque.len() >= 2 {
            self.notify_one();
        }
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
        if found.is_some() && last && (h.local.deque.len() >= 2 || !self.injector.is_empty()) {
            // More work is visible: make sure somebody else looks for it too.
            self.notify_one();
        }
        if found.is_some() {
            WorkerShared::bump(&self.shared[h.index].steals);
        }
        found
    }

    fn steal(&self, h: &WorkerHandle) -> Option<Task> {
        let dest = &h.local.deque;
        if let Some(t) = steal_one(|| self.injector.steal_batch_and_pop(dest)) {
            return Some(t);
        }
        let n = self.stealers.len();
        for k in 1..n {
            let v = (h.index + k) % n;
            let victim = &self.stealers[v];
            let found = if victim.len() >= 2 {
                steal_one(|| victim.steal_batch_and_pop(dest))
            } else if self.stuck(h, v) {
                steal_one(|| victim.steal_batch_and_pop(dest))
                    .or_else(|| self.shared[v].next.take())
            } else {
                None
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Whether worker `v` has run no new task for [`LONG_TURN`] by `h`'s watch: then what waits
    /// there (its deque's last task, its next slot) is not being kept warm and may move.
    fn stuck(&self, h: &WorkerHandle, v: usize) -> bool {
        let turns = self.shared[v].turns.load(Ordering::Relaxed);
        let watch = &h.watch[v];
        match watch.get() {
            (seen, Some(since)) if seen == turns => since.elapsed() >= LONG_TURN,
            _ => {
                watch.set((turns, Some(Instant::now())));
                false
            }
        }
    }

    /// Work a parking worker must not sleep through: the injector, or a deque with a backlog.
    /// (A single task waiting behind a long turn is found while spinning, not here.)
    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| s.len() >= 2)
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
        WorkerShared::bump(&self.shared[h.index].parks);
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

    /// This thread's worker index and queues, if it is one of this pool's workers.
    fn current_local(&self) -> Option<(usize, &Local)> {
        let me: *const Pool = self;
        let slot = CURRENT.with(|c| c.get()).filter(|s| std::ptr::eq(s.0.pool, me))?;
        // SAFETY: `slot.0.local` points at the queues owned by this worker thread's
        // `WorkerHandle`, which outlives the thread-local registration; only this thread
        // touches them (the deque's other end is the stealers', which is thread-safe).
        Some((slot.0.index, unsafe { &*slot.0.local }))
    }

    /// Queues work from outside the pool's workers, waking a sleeper for it.
    fn inject(&self, task: Task) {
        self.injector.push(task);
        self.notify_one();
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
        match self.current_local() {
            Some((index, l)) => {
                if let Some(previous) = self.shared[index].next.put(task) {
                    self.push_local(l, previous);
                }
            }
            None => self.inject(task),
        }
    }

    fn reschedule(&self, task: Task) {
        match self.current_local() {
            Some((_, l)) => {
                if let Some(earlier) = l.yielded.replace(Some(task)) {
                    self.push_local(l, earlier);
                }
            }
            None => self.inject(task),
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
