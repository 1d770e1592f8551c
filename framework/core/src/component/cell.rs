//! The component cell: a component's identity, queues, lifecycle and scheduling state.
//!
//! Scheduling invariant: `pending` counts *signals* — one per port (or the control queue) whose
//! arrival queue went from empty to non-empty and has not been taken yet — plus at most one
//! *claim* a run leaves when it ends with events still to handle. The cell is handed to the
//! scheduler only when `pending` goes from 0 to 1, or by a run that ends with `pending` > 0, so
//! at most one run of a cell is queued or running at any time: handlers never overlap.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::component::failure::{panic_message, Failure, FailureCause};
use crate::component::instance::{ErasedInstance, Hook, PortSlot};
use crate::component::supervisor::Supervisor;
use crate::component::{ComponentId, FaultReport, LifecycleState};
use crate::error::{Error, Result};
use crate::handler::Severity;
use crate::inbox::Inbox;
use crate::lock::Lock;
use crate::prefetch::prefetch;
use crate::runtime::Task;
use crate::system::SystemShared;

/// Builds a fresh definition instance for a cell (used at creation and restart).
pub(crate) type Factory =
    Box<dyn Fn(&Arc<ComponentCell>) -> Result<Box<dyn ErasedInstance>> + Send + Sync>;

/// Control events: lifecycle requests and reports between parent and child.
pub(crate) enum Control {
    Start,
    Stop,
    Kill,
    ChildStarted(ComponentId),
    ChildStopped(ComponentId),
    ChildKilled(ComponentId),
    /// A descendant failed (boxed: keeps `Control` two words, and control buffers small).
    ChildFault(Box<(FaultReport, Weak<ComponentCell>)>),
    Replace(Box<Replacement>),
    /// Supervision: build a fresh instance from the factory.
    Restart,
    /// Supervision: continue after a failure with the same instance.
    Resume,
}

/// Builds a replacement instance, given the cell and the current instance (for state transfer).
pub(crate) type Build = Box<
    dyn FnOnce(&Arc<ComponentCell>, &mut dyn ErasedInstance) -> Result<Box<dyn ErasedInstance>>
        + Send,
>;

/// A request to swap a component's definition for another, inside one of its turns.
pub(crate) struct Replacement {
    pub(crate) build: Build,
    /// Becomes the component's factory (for later restarts).
    pub(crate) factory: Factory,
    pub(crate) type_name: &'static str,
    pub(crate) requested: std::time::Instant,
    pub(crate) done: std::sync::mpsc::SyncSender<Result<()>>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Passive,
    Starting(Vec<ComponentId>),
    Active,
    Stopping(Vec<ComponentId>),
    Faulty,
    Destroying { waiting: Vec<ComponentId>, was_active: bool },
    Destroyed,
}

/// State only the running worker touches (behind an uncontended lock).
pub(crate) struct RunState {
    pub(crate) instance: Option<Box<dyn ErasedInstance>>,
    pub(crate) phase: Phase,
    claim: bool,
}

/// Counters for introspection.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) faults: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) swaps: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

/// `repr(C)`, hot fields first: a turn and a push read the reference counts (in front of the
/// cell), `pending`, `ready`, `system`, `id`, `handled`, `run` and the control queue's
/// arrival hint, which then span two or three cache lines instead of most of the cell's seven.
#[repr(C)]
pub(crate) struct ComponentCell {
    pending: AtomicIsize,
    /// One bit per port (by position in the port table, see `port_core::mask_bit`) whose
    /// arrival queue became non-empty since the last turn looked: a turn takes from those
    /// ports only, instead of asking every port.
    ready: AtomicU64,
    /// Where the current instance lives, for [`ComponentCell::prefetch_turn`] only (a hint:
    /// never dereferenced; written whenever the instance changes).
    instance_at: AtomicPtr<u8>,
    pub(crate) system: Arc<SystemShared>,
    id: ComponentId,
    /// Events handled (for introspection).
    pub(crate) handled: AtomicU64,
    run: Lock<RunState>,
    control: Inbox<Control>,
    state: AtomicU8,
    watch: Mutex<()>,
    changed: Condvar,
    parent: Option<Weak<ComponentCell>>,
    pub(crate) children: Mutex<BTreeMap<ComponentId, Arc<ComponentCell>>>,
    pub(crate) ports: Mutex<Vec<PortSlot>>,
    pub(crate) type_name: Mutex<&'static str>,
    pub(crate) factory: Mutex<Option<Factory>>,
    pub(crate) stats: Stats,
    pub(crate) last_fault: Mutex<Option<Box<FaultReport>>>,
    /// Set on components that supervise their children (and always on the root).
    pub(crate) supervisor: Mutex<Option<Box<Supervisor>>>,
}

impl ComponentCell {
    pub(crate) fn new(
        id: ComponentId,
        system: Arc<SystemShared>,
        parent: Option<&Arc<ComponentCell>>,
        type_name: &'static str,
        factory: Option<Factory>,
    ) -> Arc<Self> {
        Arc::new(ComponentCell {
            id,
            system,
            pending: AtomicIsize::new(0),
            ready: AtomicU64::new(0),
            instance_at: AtomicPtr::new(std::ptr::null_mut()),
            handled: AtomicU64::new(0),
            control: Inbox::new(),
            state: AtomicU8::new(LifecycleState::Passive as u8),
            watch: Mutex::new(()),
            changed: Condvar::new(),
            run: Lock::new(RunState { instance: None, phase: Phase::Passive, claim: false }),
            parent: parent.map(Arc::downgrade),
            children: Mutex::new(BTreeMap::new()),
            ports: Mutex::new(Vec::new()),
            type_name: Mutex::new(type_name),
            factory: Mutex::new(factory),
            stats: Stats::default(),
            last_fault: Mutex::new(None),
            supervisor: Mutex::new(None),
        })
    }

    pub(crate) fn id(&self) -> ComponentId {
        self.id
    }

    pub(crate) fn parent(&self) -> Option<Arc<ComponentCell>> {
        self.parent.as_ref().and_then(Weak::upgrade)
    }

    pub(crate) fn state(&self) -> LifecycleState {
        LifecycleState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn is_destroyed(&self) -> bool {
        self.state() == LifecycleState::Destroyed
    }

    /// Marks the system root as active: it has no definition and is never started by users.
    pub(crate) fn activate_root(&self) {
        self.run.lock().phase = Phase::Active;
        self.set_state(LifecycleState::Active);
    }

    /// Installs the first instance (creation).
    pub(crate) fn install(&self, instance: Box<dyn ErasedInstance>) {
        self.set_instance(&mut self.run.lock(), Some(instance));
    }

    /// Replaces the instance (the only way it changes).
    pub(crate) fn set_instance(
        &self,
        rs: &mut RunState,
        instance: Option<Box<dyn ErasedInstance>>,
    ) {
        rs.instance = instance;
        let at = rs
            .instance
            .as_deref()
            .map_or(std::ptr::null(), |i| (i as *const dyn ErasedInstance).cast::<u8>());
        self.instance_at.store(at.cast_mut(), Ordering::Relaxed);
    }

    /// Starts fetching what the next turn reads first — the cell's second line and the head of
    /// its instance — when a push has just made the cell runnable: the fetches overlap with
    /// whatever the pusher does until the turn runs, instead of stalling the turn one after
    /// the other. Only a hint (see `crate::prefetch`).
    #[inline]
    pub(crate) fn prefetch_turn(&self) {
        let me = (self as *const Self).cast::<u8>();
        prefetch(me.wrapping_add(64));
        let at = self.instance_at.load(Ordering::Relaxed);
        if !at.is_null() {
            prefetch(at);
            prefetch(at.wrapping_add(64));
        }
    }

    /// Runs `f` on the current instance; blocks while a handler of this component runs.
    pub(crate) fn with_instance<R>(
        &self,
        f: impl FnOnce(&mut dyn ErasedInstance) -> R,
    ) -> Result<R> {
        let mut rs = self.run.lock();
        match rs.instance.as_mut() {
            Some(i) => Ok(f(&mut **i)),
            None => Err(Error::Destroyed(self.id)),
        }
    }

    /// Records that the port(s) of `bit` have arrivals. Called under the port's arrival lock,
    /// before the signal is added, so a turn that consumes the signal also sees the bit.
    #[inline]
    pub(crate) fn mark_ready(&self, bit: u64) {
        self.ready.fetch_or(bit, Ordering::AcqRel);
    }

    /// Adds one signal; `true` if the cell must now be scheduled.
    #[inline]
    pub(crate) fn add_signal(&self) -> bool {
        self.pending.fetch_add(1, Ordering::AcqRel) == 0
    }

    #[inline]
    pub(crate) fn schedule(self: &Arc<Self>) {
        self.system.parts.scheduler.schedule(Task(Arc::clone(self)));
    }

    pub(crate) fn send_control(self: &Arc<Self>, c: Control) {
        self.control.push(self, c);
    }

    /// Total events waiting in this component's ports.
    pub(crate) fn queued(&self) -> usize {
        let cores: Vec<_> = self.ports.lock().iter().map(|s| Arc::clone(&s.core)).collect();
        cores.iter().map(|c| c.queued()).sum()
    }

    pub(crate) fn set_state(&self, s: LifecycleState) {
        {
            let _g = self.watch.lock();
            self.state.store(s as u8, Ordering::Release);
        }
        self.changed.notify_all();
        tracing::debug!(component = self.id.0, state = ?s, "lifecycle");
    }

    /// Waits until `done(state)` holds, or the timeout passes.
    pub(crate) fn wait_for(
        &self,
        wanted: LifecycleState,
        timeout: Duration,
        done: impl Fn(LifecycleState) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut g = self.watch.lock();
        loop {
            let s = self.state();
            if done(s) {
                return Ok(());
            }
            if self.changed.wait_until(&mut g, deadline).timed_out() {
                let s = self.state();
                if done(s) {
                    return Ok(());
                }
                return Err(Error::Timeout { component: self.id, wanted, state: s, timeout });
            }
        }
    }

    /// One scheduling turn: control events, then up to `events_per_run` port events.
    pub(crate) fn run(self: &Arc<Self>) {
        let budget = self.system.config.events_per_run;
        let _span = tracing::trace_span!("component", id = self.id.0).entered();
        let mut rs = self.run.lock();
        let mut tally: isize = isize::from(std::mem::take(&mut rs.claim));
        // Before any take: a port marked after this is taken by a later turn, which its
        // (not yet consumed) signal schedules.
        // A load first: a component whose events all come through its first port (which has
        // no bit) never marks the mask, and pays no locked swap per turn.
        let ready = if self.ready.load(Ordering::Relaxed) == 0 {
            0
        } else {
            self.ready.swap(0, Ordering::AcqRel)
        };
        // SAFETY: this is the owner's turn (the control queue's runner), holding `run`.
        if unsafe { self.control.take(true) } {
            tally += 1;
            loop {
                // SAFETY: as above.
                let next = unsafe { self.control.pop_local() };
                match next {
                    Some(c) => self.on_control(&mut rs, c),
                    None => break,
                }
            }
        }
        let mut more = false;
        let active = rs.phase == Phase::Active;
        if let Some(inst) = rs.instance.as_mut() {
            tally += inst.take(!active, ready);
            if active && inst.has_local() {
                let batch = inst.handle(budget);
                // Only the running turn writes this counter (turns of a cell never overlap),
                // so a plain load and store suffice: no read-modify-write per turn.
                let h = &self.handled;
                h.store(h.load(Ordering::Relaxed) + batch.handled as u64, Ordering::Relaxed);
                match batch.failure {
                    Some(f) => self.fault(&mut rs, *f),
                    None => more = batch.more,
                }
            }
        } else {
            tally += self.discard_ports();
        }
        if rs.phase == Phase::Destroyed {
            // Nothing will ever run here again: drop the port table, which breaks the
            // cell ↔ port-core reference cycles (cores point at their owner), and forget the
            // signals. A push racing with this finds its queue non-empty and its owner gone;
            // at most one more (empty) run follows.
            let ports = std::mem::take(&mut *self.ports.lock());
            drop(rs);
            self.pending.store(0, Ordering::Release);
            drop(ports);
            return;
        }
        if more {
            rs.claim = true;
            tally -= 1;
        }
        drop(rs);
        let left = self.pending.fetch_sub(tally, Ordering::AcqRel) - tally;
        if more || left > 0 {
            self.system.parts.scheduler.reschedule(Task(Arc::clone(self)));
        }
    }

    /// Drops events that reach a destroyed component; returns the signals consumed.
    fn discard_ports(&self) -> isize {
        let mut signals = 0;
        for slot in self.ports.lock().iter() {
            // SAFETY: called from the owner's turn, holding its `run` lock.
            let (took, n) = unsafe { slot.core.discard() };
            signals += isize::from(took);
            self.stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
        signals
    }

    pub(crate) fn live_children(&self) -> Vec<Arc<ComponentCell>> {
        self.children.lock().values().filter(|c| !c.is_destroyed()).cloned().collect()
    }

    pub(crate) fn report_to_parent(&self, c: Control) {
        let Some(p) = self.parent() else { return };
        // The root awaits no starts or stops; skip the traffic (one event per top-level
        // component matters when creating a million of them).
        if p.parent.is_none() && matches!(c, Control::ChildStarted(_) | Control::ChildStopped(_)) {
            return;
        }
        p.send_control(c);
    }

    fn on_control(self: &Arc<Self>, rs: &mut RunState, c: Control) {
        match c {
            Control::Start => match rs.phase {
                Phase::Passive => {
                    let kids = self.live_children();
                    if kids.is_empty() {
                        self.become_active(rs);
                    } else {
                        for k in &kids {
                            k.send_control(Control::Start);
                        }
                        rs.phase = Phase::Starting(kids.iter().map(|k| k.id).collect());
                        self.set_state(LifecycleState::Starting);
                    }
                }
                Phase::Active => self.report_to_parent(Control::ChildStarted(self.id)),
                _ => tracing::debug!(component = self.id.0, phase = ?rs.phase, "start ignored"),
            },
            Control::Stop => match rs.phase {
                Phase::Active | Phase::Starting(_) | Phase::Faulty => {
                    let kids = self.live_children();
                    for k in &kids {
                        k.send_control(Control::Stop);
                    }
                    rs.phase = Phase::Stopping(kids.iter().map(|k| k.id).collect());
                    self.set_state(LifecycleState::Stopping);
                    self.check_waiting(rs);
                }
                Phase::Passive => self.report_to_parent(Control::ChildStopped(self.id)),
                _ => tracing::debug!(component = self.id.0, phase = ?rs.phase, "stop ignored"),
            },
            Control::Kill => match rs.phase {
                Phase::Destroying { .. } | Phase::Destroyed => {}
                _ => {
                    let was_active = rs.phase == Phase::Active;
                    let kids = self.live_children();
                    for k in &kids {
                        k.send_control(Control::Kill);
                    }
                    rs.phase = Phase::Destroying {
                        waiting: kids.iter().map(|k| k.id).collect(),
                        was_active,
                    };
                    self.set_state(LifecycleState::Destroying);
                    self.check_waiting(rs);
                }
            },
            Control::ChildStarted(id) | Control::ChildStopped(id) => {
                match &mut rs.phase {
                    Phase::Starting(w) | Phase::Stopping(w) => w.retain(|k| *k != id),
                    _ => {}
                }
                self.check_waiting(rs);
            }
            Control::ChildKilled(id) => {
                self.children.lock().remove(&id);
                match &mut rs.phase {
                    Phase::Starting(w) | Phase::Stopping(w) => w.retain(|k| *k != id),
                    Phase::Destroying { waiting, .. } => waiting.retain(|k| *k != id),
                    _ => {}
                }
                self.check_waiting(rs);
            }
            Control::Replace(r) => self.replace_instance(rs, *r),
            Control::ChildFault(fault) => {
                let (report, failed) = *fault;
                self.on_child_fault(rs, report, &failed);
            }
            Control::Restart => self.restart(rs),
            Control::Resume => {
                if rs.phase == Phase::Faulty {
                    rs.phase = Phase::Active;
                    self.set_state(LifecycleState::Active);
                    tracing::info!(component = self.id.0, "resumed after a failure");
                }
            }
        }
    }

    /// Completes a Starting / Stopping / Destroying phase once no child is awaited.
    fn check_waiting(self: &Arc<Self>, rs: &mut RunState) {
        match &rs.phase {
            Phase::Starting(w) if w.is_empty() => self.become_active(rs),
            Phase::Stopping(w) if w.is_empty() => {
                if let Some(f) = self.run_hook(rs, Hook::Stop) {
                    tracing::warn!(component = self.id.0, error = %f.error, "on_stop failed");
                }
                rs.phase = Phase::Passive;
                self.set_state(LifecycleState::Passive);
                self.report_to_parent(Control::ChildStopped(self.id));
            }
            Phase::Destroying { waiting, was_active } if waiting.is_empty() => {
                if *was_active {
                    if let Some(f) = self.run_hook(rs, Hook::Stop) {
                        tracing::warn!(component = self.id.0, error = %f.error, "on_stop failed");
                    }
                }
                if let Some(f) = self.run_hook(rs, Hook::Kill) {
                    tracing::warn!(component = self.id.0, error = %f.error, "on_kill failed");
                }
                self.destroy(rs);
            }
            _ => {}
        }
    }

    /// Swaps the definition instance. Channels and queued events stay with the cell, so nothing
    /// is lost or reordered; a failing build leaves the old instance in place.
    fn replace_instance(self: &Arc<Self>, rs: &mut RunState, r: Replacement) {
        let Replacement { build, factory, type_name, requested, done } = r;
        let result = match (&rs.phase, rs.instance.as_mut()) {
            (Phase::Destroying { .. } | Phase::Destroyed, _) | (_, None) => {
                Err(Error::Destroyed(self.id))
            }
            (_, Some(old)) => match catch_unwind(AssertUnwindSafe(|| build(self, &mut **old))) {
                Err(p) => Err(Error::FactoryPanicked(panic_message(&*p))),
                Ok(Err(e)) => Err(e),
                Ok(Ok(new)) => {
                    self.set_instance(rs, Some(new));
                    let from = std::mem::replace(&mut *self.type_name.lock(), type_name);
                    *self.factory.lock() = Some(factory);
                    self.stats.swaps.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        component = self.id.0,
                        from,
                        to = type_name,
                        micros = requested.elapsed().as_micros() as u64,
                        "component replaced"
                    );
                    if matches!(rs.phase, Phase::Active | Phase::Faulty) {
                        // The new instance starts (a faulty component is resumed by it).
                        self.become_active(rs);
                    }
                    Ok(())
                }
            },
        };
        if let Err(e) = &result {
            tracing::warn!(component = self.id.0, error = %e, "replacement failed; old instance kept");
        }
        let _ = done.send(result);
    }

    pub(crate) fn become_active(self: &Arc<Self>, rs: &mut RunState) {
        if let Some(inst) = rs.instance.as_mut() {
            if let Err(f) = inst.hook(Hook::Start) {
                self.fault(rs, f);
                return;
            }
        }
        rs.phase = Phase::Active;
        self.set_state(LifecycleState::Active);
        self.report_to_parent(Control::ChildStarted(self.id));
    }

    fn run_hook(&self, rs: &mut RunState, hook: Hook) -> Option<FaultReport> {
        let inst = rs.instance.as_mut()?;
        inst.hook(hook).err().map(|f| self.report(f))
    }

    fn destroy(self: &Arc<Self>, rs: &mut RunState) {
        self.set_instance(rs, None);
        let slots: Vec<_> = self.ports.lock().iter().map(|s| Arc::clone(&s.core)).collect();
        // Queued events are dropped (and their signals consumed) by `discard_ports`, which
        // every run of a cell without an instance performs.
        for core in slots {
            core.disconnect_all();
        }
        rs.phase = Phase::Destroyed;
        self.set_state(LifecycleState::Destroyed);
        self.report_to_parent(Control::ChildKilled(self.id));
    }

    fn report(&self, f: Failure) -> FaultReport {
        let (severity, error) = match f.cause {
            FailureCause::Error(e) => (e.severity(), e.error().to_string()),
            FailureCause::Panic(msg) => (Severity::Recoverable, format!("panic: {msg}")),
        };
        FaultReport {
            component: self.id,
            type_name: *self.type_name.lock(),
            severity,
            error,
            place: f.place,
            event: f.event,
        }
    }

    /// Marks the component faulty and reports to its parent.
    pub(crate) fn fault(self: &Arc<Self>, rs: &mut RunState, f: Failure) {
        let report = self.report(f);
        tracing::error!(
            component = self.id.0,
            ty = report.type_name,
            place = %report.place,
            error = %report.error,
            "component failed"
        );
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        *self.last_fault.lock() = Some(Box::new(report.clone()));
        rs.phase = Phase::Faulty;
        self.set_state(LifecycleState::Faulty);
        if report.severity == Severity::Unrecoverable {
            self.send_control(Control::Kill);
        }
        self.report_to_parent(Control::ChildFault(Box::new((report, Arc::downgrade(self)))));
    }
}
