//! The runtime plug-in traits: where a real runtime or the deterministic simulator plugs in.
//!
//! `selfman-core` has no threads, sockets or system clock. It asks its runtime for three
//! services, each behind a small trait:
//!
//! * [`Scheduler`] — runs a component's [`Task`] when the component has work;
//! * [`TimerDriver`] — the clock, and firing timers at a deadline;
//! * [`RngSource`] — seeds for each component's random number generator.
//!
//! `selfman-runtime` implements them with a work-stealing thread pool and a timer thread; a
//! simulator implements them on one thread in virtual time. Components cannot tell which.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::component::cell::ComponentCell;
use crate::component::ComponentId;
use crate::timer::TimerTarget;

/// A unit of scheduling: "this component has work". Running it handles a bounded batch of the
/// component's events.
///
/// A component's task is handed to [`Scheduler::schedule`] only when its pending work goes from
/// zero to non-zero (or when a run ends with work left), so at most one task per component is
/// ever queued or running: handlers of one component never overlap.
pub struct Task(pub(crate) Arc<ComponentCell>);

impl Task {
    /// Runs one batch of the component's work (at most the system's `events_per_run` events).
    /// The component may reschedule itself through the scheduler before this returns.
    pub fn run(self) {
        ComponentCell::run(&self.0);
    }

    /// The id of the component this task runs.
    pub fn component(&self) -> ComponentId {
        self.0.id()
    }

    /// The task as a raw pointer, for a scheduler that keeps tasks in atomic slots. Turn it back
    /// with [`Task::from_raw`] exactly once, or the component's cell leaks.
    pub fn into_raw(self) -> *const () {
        Arc::into_raw(self.0).cast()
    }

    /// The task [`Task::into_raw`] gave.
    ///
    /// # Safety
    ///
    /// `ptr` must come from [`Task::into_raw`] and must not have been turned back before.
    pub unsafe fn from_raw(ptr: *const ()) -> Task {
        // SAFETY: by the caller's contract, `ptr` is an `Arc<ComponentCell>` not yet reclaimed.
        Task(unsafe { Arc::from_raw(ptr.cast()) })
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Task").field(&self.0.id()).finish()
    }
}

/// Runs tasks. Implemented by the multi-core runtime and by the simulator.
pub trait Scheduler: Send + Sync + 'static {
    /// Queues `task` to be run (once) by some worker: its component was woken (it had nothing
    /// to do and now has).
    fn schedule(&self, task: Task);

    /// Queues `task` again after its turn ended with work left: the component yields so others
    /// get a turn. Called only from that turn, as its last step. A scheduler may place it
    /// differently from a wake-up (the multi-core pool keeps it off its deque until it has
    /// chosen the next task); by default it is [`Scheduler::schedule`].
    fn reschedule(&self, task: Task) {
        self.schedule(task);
    }
}

/// A point in (real or virtual) time, in nanoseconds since the runtime started.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Time(pub u64);

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    /// Saturating addition (see [`Time::saturating_add`]).
    fn add(self, d: Duration) -> Time {
        self.saturating_add(d)
    }
}

impl Time {
    /// The runtime's start.
    pub const ZERO: Time = Time(0);

    /// `secs` whole seconds after the start.
    ///
    /// ```
    /// use selfman_core::Time;
    /// assert_eq!(Time::from_secs(2), Time(2_000_000_000));
    /// ```
    pub const fn from_secs(secs: u64) -> Time {
        Time(secs.saturating_mul(1_000_000_000))
    }

    /// `secs` seconds after the start (what scenarios write as `Time::from_secs_f64(2.5)`),
    /// saturating at the end of time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use selfman_core::Time;
    /// assert_eq!(Time::from_secs_f64(0.25), Time::ZERO + Duration::from_millis(250));
    /// ```
    ///
    /// # Panics
    ///
    /// If `secs` is negative, not finite or beyond [`Duration::MAX`] (as
    /// [`Duration::from_secs_f64`]).
    pub fn from_secs_f64(secs: f64) -> Time {
        Time::ZERO + Duration::from_secs_f64(secs)
    }

    /// The time since the runtime started.
    pub fn since_start(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn duration_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Identifies one scheduled timer inside a [`TimerDriver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    /// The channel the timer was requested over (timers of different requirers never clash).
    pub channel: u64,
    /// The requirer's id for the timer.
    pub id: u64,
}

/// A timer handed to a [`TimerDriver`].
#[derive(Debug)]
pub struct TimerEntry {
    /// Identity, used for cancellation.
    pub key: TimerKey,
    /// When it first fires.
    pub deadline: Time,
    /// For periodic timers, the period after the first firing.
    pub period: Option<Duration>,
    /// Where the timeout goes.
    pub target: TimerTarget,
}

/// The clock and timer service.
pub trait TimerDriver: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Time;
    /// Fires `entry.target` at `entry.deadline` (and every `period` after, if periodic), until
    /// cancelled or until [`TimerTarget::fire`] reports that the target is gone. Scheduling a key
    /// that is already scheduled replaces it.
    fn schedule(&self, entry: TimerEntry);
    /// Cancels a timer; no firing starts after this returns. Unknown keys are ignored.
    fn cancel(&self, key: TimerKey);
}

/// Seeds for components' random number generators.
pub trait RngSource: Send + Sync + 'static {
    /// The seed for the component with this id. Deterministic runtimes derive it from a
    /// configured seed, so the same run gives the same numbers.
    fn seed_for(&self, component: ComponentId) -> u64;
}

/// The services a runtime hands to [`System::new`](crate::System::new).
#[derive(Clone)]
pub struct RuntimeParts {
    /// Runs component tasks.
    pub scheduler: Arc<dyn Scheduler>,
    /// Clock and timers.
    pub timers: Arc<dyn TimerDriver>,
    /// Seeds for component RNGs.
    pub rng: Arc<dyn RngSource>,
}

impl fmt::Debug for RuntimeParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeParts").finish_non_exhaustive()
    }
}

/// An [`RngSource`] that mixes a fixed seed with the component id.
#[derive(Debug, Clone, Copy)]
pub struct SeededRng(pub u64);

impl RngSource for SeededRng {
    fn seed_for(&self, component: ComponentId) -> u64 {
        crate::rng::mix(self.0 ^ crate::rng::mix(component.0))
    }
}
