//! The [`System`]: creates components, connects channels, drives lifecycles.
//!
//! A system owns a root component (the parent of every top-level component) and a timer
//! component serving the [`Timer`](crate::Timer) port. Every operation here is non-blocking
//! except the `*_and_wait` methods and [`System::shutdown`], which must not be called from a
//! handler (nor inside a single-threaded simulator).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::channel::{self, Channel, Selector};
use crate::component::cell::{ComponentCell, Control, Factory};
use crate::component::definition::ComponentDefinition;
use crate::component::failure::panic_message;
use crate::component::handle::{Component, ComponentRef};
use crate::component::instance::instantiate;
use crate::component::supervisor::Supervisor;
use crate::component::{ComponentId, LifecycleState};
use crate::error::{Error, Result};
use crate::port::Port;
use crate::port_handle::{ProvidedRef, RequiredRef};
use crate::runtime::{RuntimeParts, Time};
use crate::supervision::SupervisorPolicy;
use crate::timer::{Timer, TimerService};

/// Tunables of a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConfig {
    /// At most this many events are handled per scheduling turn of a component, so that busy
    /// components cannot starve others (default 128).
    pub events_per_run: usize,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig { events_per_run: 128 }
    }
}

impl SystemShared {
    /// A fresh system-unique number (shares the channel id sequence).
    pub(crate) fn fresh_id(&self) -> u64 {
        self.next_channel.fetch_add(1, Ordering::Relaxed)
    }
}

pub(crate) struct SystemShared {
    pub(crate) parts: RuntimeParts,
    pub(crate) config: SystemConfig,
    next_id: AtomicU64,
    next_channel: AtomicU64,
    root: Mutex<Option<Arc<ComponentCell>>>,
    timer: Mutex<Option<ProvidedRef<Timer>>>,
    shut_down: AtomicBool,
}

/// A running component system. Cheap to clone; all clones refer to the same system.
#[derive(Clone)]
pub struct System {
    shared: Arc<SystemShared>,
}

/// A reference to a [`System`] that does not keep it alive (see [`System::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakSystem {
    shared: std::sync::Weak<SystemShared>,
}

impl WeakSystem {
    /// The system, if it still exists.
    pub fn upgrade(&self) -> Option<System> {
        self.shared.upgrade().map(|shared| System { shared })
    }
}

impl System {
    /// A reference that does not keep the system alive — for code that must not hold it in a
    /// cycle, and for checking that a system was freed.
    pub fn downgrade(&self) -> WeakSystem {
        WeakSystem { shared: Arc::downgrade(&self.shared) }
    }

    /// A system on the given runtime services. Runtimes (`selfman-runtime`, the simulator)
    /// call this; applications normally get their system from a runtime.
    ///
    /// # Panics
    ///
    /// If `config.events_per_run` is 0.
    pub fn new(parts: RuntimeParts, config: SystemConfig) -> System {
        assert!(config.events_per_run > 0, "events_per_run must be at least 1");
        let shared = Arc::new(SystemShared {
            parts,
            config,
            next_id: AtomicU64::new(1),
            next_channel: AtomicU64::new(1),
            root: Mutex::new(None),
            timer: Mutex::new(None),
            shut_down: AtomicBool::new(false),
        });
        let root =
            ComponentCell::new(ComponentId(0), Arc::clone(&shared), None, "selfman::Root", None);
        root.activate_root();
        *root.supervisor.lock() = Some(Box::new(Supervisor::new(SupervisorPolicy::log_and_stop())));
        *shared.root.lock() = Some(root);
        let system = System { shared };
        let timer = system.create(TimerService::default).expect("a new system accepts components");
        let port = timer.provided::<Timer>().expect("the timer service provides Timer");
        *system.shared.timer.lock() = Some(port);
        system.start(&timer).expect("the timer service is passive");
        system
    }

    pub(crate) fn from_shared(shared: Arc<SystemShared>) -> System {
        System { shared }
    }

    /// The configuration.
    pub fn config(&self) -> &SystemConfig {
        &self.shared.config
    }

    /// The current (real or virtual) time.
    pub fn now(&self) -> Time {
        self.shared.parts.timers.now()
    }

    fn root(&self) -> Result<Arc<ComponentCell>> {
        self.shared.root.lock().clone().ok_or(Error::ShutDown)
    }

    /// The root of the component tree (parent of every top-level component).
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] after shutdown.
    pub fn root_ref(&self) -> Result<ComponentRef> {
        self.root().map(|cell| ComponentRef { cell })
    }

    /// Makes `parent` supervise its children (and, for failures passed on to it, its further
    /// descendants) with `policy`; see [`SupervisorPolicy`].
    ///
    /// # Errors
    ///
    /// [`Error::Destroyed`] if `parent` is destroyed.
    pub fn supervise(&self, parent: &ComponentRef, policy: SupervisorPolicy) -> Result<()> {
        if parent.state() == LifecycleState::Destroyed {
            return Err(Error::Destroyed(parent.id()));
        }
        *parent.cell.supervisor.lock() = Some(Box::new(Supervisor::new(policy)));
        Ok(())
    }

    /// Sets the root's policy, which decides about failures no other supervisor handled
    /// (default: [`SupervisorPolicy::log_and_stop`]). The root cannot escalate: an escalation
    /// that reaches it stops the failed subtree.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] after shutdown.
    pub fn set_root_policy(&self, policy: SupervisorPolicy) -> Result<()> {
        *self.root()?.supervisor.lock() = Some(Box::new(Supervisor::new(policy)));
        Ok(())
    }

    /// A snapshot of the whole component tree and its channels (see
    /// [`SystemSnapshot`](crate::SystemSnapshot)); serialisable, e.g. to JSON.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] after shutdown.
    pub fn snapshot(&self) -> Result<crate::SystemSnapshot> {
        Ok(crate::introspection::snapshot(&self.root()?))
    }

    /// The timer service's provided [`Timer`] port; connect components' required timer ports
    /// to it.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] after shutdown.
    pub fn timer(&self) -> Result<ProvidedRef<Timer>> {
        self.shared.timer.lock().clone().ok_or(Error::ShutDown)
    }

    /// Connects `component`'s required [`Timer`] port to the system timer.
    ///
    /// # Errors
    ///
    /// As [`ComponentRef::required`] and [`System::connect`].
    pub fn connect_timer(&self, component: &ComponentRef) -> Result<Channel<Timer>> {
        self.connect(&self.timer()?, &component.required::<Timer>()?)
    }

    /// Creates a top-level component from `factory`. It starts passive; events sent to it queue
    /// until it is started. The factory is kept to build fresh instances on restart.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] after shutdown; [`Error::FactoryPanicked`] if the factory panics.
    pub fn create<D, F>(&self, factory: F) -> Result<Component<D>>
    where
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
    {
        let root = self.root()?;
        self.create_in(&root, factory)
    }

    /// Creates a component as a child of `parent`.
    ///
    /// # Errors
    ///
    /// As [`System::create`], and [`Error::Destroyed`] if the parent is destroyed.
    pub fn create_child<D, F>(&self, parent: &ComponentRef, factory: F) -> Result<Component<D>>
    where
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
    {
        self.create_in(&parent.cell, factory)
    }

    fn create_in<D, F>(&self, parent: &Arc<ComponentCell>, factory: F) -> Result<Component<D>>
    where
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
    {
        if self.shared.shut_down.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        if matches!(parent.state(), LifecycleState::Destroyed | LifecycleState::Destroying) {
            return Err(Error::Destroyed(parent.id()));
        }
        let def = catch_unwind(AssertUnwindSafe(&factory))
            .map_err(|p| Error::FactoryPanicked(panic_message(&*p)))?;
        let id = ComponentId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let factory: Factory = Box::new(move |cell| instantiate(cell, factory(), false));
        let cell = ComponentCell::new(
            id,
            Arc::clone(&self.shared),
            Some(parent),
            std::any::type_name::<D>(),
            Some(factory),
        );
        let instance = catch_unwind(AssertUnwindSafe(|| instantiate(&cell, def, false)))
            .map_err(|p| Error::FactoryPanicked(panic_message(&*p)))??;
        cell.install(instance);
        parent.children.lock().insert(id, Arc::clone(&cell));
        Ok(Component::new(cell))
    }

    /// Connects a provided port to a required port of the same type.
    ///
    /// # Errors
    ///
    /// [`Error::Destroyed`] if either component is destroyed.
    pub fn connect<P: Port>(
        &self,
        provided: &ProvidedRef<P>,
        required: &RequiredRef<P>,
    ) -> Result<Channel<P>> {
        self.connect_with(provided, required, Selector::all())
    }

    /// Connects with a [`Selector`] filtering what the channel carries.
    ///
    /// # Errors
    ///
    /// [`Error::Destroyed`] if either component is destroyed.
    pub fn connect_with<P: Port>(
        &self,
        provided: &ProvidedRef<P>,
        required: &RequiredRef<P>,
        selector: Selector<P>,
    ) -> Result<Channel<P>> {
        let id = self.shared.next_channel.fetch_add(1, Ordering::Relaxed);
        channel::connect(id, &provided.core, &required.core, selector)
    }

    /// Connects `provider`'s only provided `P` port to `requirer`'s only required `P` port.
    ///
    /// # Errors
    ///
    /// As [`ComponentRef::provided`], [`ComponentRef::required`] and [`System::connect`].
    pub fn link<P: Port>(
        &self,
        provider: &ComponentRef,
        requirer: &ComponentRef,
    ) -> Result<Channel<P>> {
        self.connect(&provider.provided::<P>()?, &requirer.required::<P>()?)
    }

    pub(crate) fn check_not_root(&self, c: &ComponentRef) -> Result<()> {
        if c.cell.parent().is_none() {
            return Err(Error::Hierarchy("the system root cannot be started, stopped or killed"));
        }
        Ok(())
    }

    /// Starts `c` and its subtree. It reports `Active` once all its children are active.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLifecycle`] if it is already active or starting;
    /// [`Error::Destroyed`] if it is destroyed.
    pub fn start(&self, c: &ComponentRef) -> Result<()> {
        self.check_not_root(c)?;
        match c.state() {
            LifecycleState::Passive => {
                c.cell.send_control(Control::Start);
                Ok(())
            }
            LifecycleState::Destroyed | LifecycleState::Destroying => Err(Error::Destroyed(c.id())),
            state => Err(Error::InvalidLifecycle { component: c.id(), state, action: "start" }),
        }
    }

    /// Stops `c` and its subtree; events keep queueing while it is passive.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLifecycle`] if it is passive or stopping; [`Error::Destroyed`].
    pub fn stop(&self, c: &ComponentRef) -> Result<()> {
        self.check_not_root(c)?;
        match c.state() {
            LifecycleState::Active | LifecycleState::Starting | LifecycleState::Faulty => {
                c.cell.send_control(Control::Stop);
                Ok(())
            }
            LifecycleState::Destroyed | LifecycleState::Destroying => Err(Error::Destroyed(c.id())),
            state => Err(Error::InvalidLifecycle { component: c.id(), state, action: "stop" }),
        }
    }

    /// Destroys `c` and its subtree (children first), disconnecting all their channels.
    ///
    /// # Errors
    ///
    /// [`Error::Destroyed`] if it is already destroyed or being destroyed.
    pub fn kill(&self, c: &ComponentRef) -> Result<()> {
        self.check_not_root(c)?;
        match c.state() {
            LifecycleState::Destroyed | LifecycleState::Destroying => Err(Error::Destroyed(c.id())),
            _ => {
                c.cell.send_control(Control::Kill);
                Ok(())
            }
        }
    }

    /// Waits until `c` is `wanted` (Ok) or destroyed, or — when starting — faulty (Err).
    fn wait_settled(
        &self,
        c: &ComponentRef,
        wanted: LifecycleState,
        timeout: Duration,
    ) -> Result<()> {
        let starting = wanted == LifecycleState::Active;
        let settled = |s: LifecycleState| {
            s == wanted
                || s == LifecycleState::Destroyed
                || (starting && s == LifecycleState::Faulty)
        };
        c.cell.wait_for(wanted, timeout, settled)?;
        match c.state() {
            s if s == wanted => Ok(()),
            LifecycleState::Destroyed => Err(Error::Destroyed(c.id())),
            state => Err(Error::InvalidLifecycle { component: c.id(), state, action: "start" }),
        }
    }

    /// [`start`](Self::start), then waits until `c` is active. Blocks: not for handlers.
    ///
    /// # Errors
    ///
    /// As `start`; [`Error::Timeout`]; [`Error::InvalidLifecycle`] if it failed while starting.
    pub fn start_and_wait(&self, c: &ComponentRef, timeout: Duration) -> Result<()> {
        self.start(c)?;
        self.wait_settled(c, LifecycleState::Active, timeout)
    }

    /// [`stop`](Self::stop), then waits until `c` is passive. Blocks: not for handlers.
    ///
    /// # Errors
    ///
    /// As `stop`; [`Error::Timeout`].
    pub fn stop_and_wait(&self, c: &ComponentRef, timeout: Duration) -> Result<()> {
        self.stop(c)?;
        self.wait_settled(c, LifecycleState::Passive, timeout)
    }

    /// [`kill`](Self::kill), then waits until `c` is destroyed. Blocks: not for handlers.
    ///
    /// # Errors
    ///
    /// As `kill`; [`Error::Timeout`].
    pub fn kill_and_wait(&self, c: &ComponentRef, timeout: Duration) -> Result<()> {
        self.kill(c)?;
        c.cell.wait_for(LifecycleState::Destroyed, timeout, |s| s == LifecycleState::Destroyed)
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Ordering::Acquire)
    }

    /// Destroys every component (user components first, then the timer service) and waits up to
    /// `timeout` for it. Afterwards the system refuses new components. Runtimes call this before
    /// stopping their threads. Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if some component did not finish in time (its handler may be stuck).
    pub fn shutdown(&self, timeout: Duration) -> Result<()> {
        if self.shared.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        let Some(root) = self.shared.root.lock().clone() else {
            return Ok(());
        };
        let timer_owner = self.shared.timer.lock().as_ref().map(|t| t.owner());
        let kids: Vec<_> = root.children.lock().values().cloned().collect();
        let (timer, users): (Vec<_>, Vec<_>) =
            kids.into_iter().partition(|k| Some(k.id()) == timer_owner);
        let mut result = Ok(());
        for group in [users, timer] {
            for k in &group {
                if !matches!(k.state(), LifecycleState::Destroyed | LifecycleState::Destroying) {
                    k.send_control(Control::Kill);
                }
            }
            for k in &group {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(e) =
                    k.wait_for(LifecycleState::Destroyed, left, |s| s == LifecycleState::Destroyed)
                {
                    tracing::warn!(error = %e, "component did not finish during shutdown");
                    result = Err(e);
                }
            }
        }
        root.children.lock().clear();
        *self.shared.timer.lock() = None;
        *self.shared.root.lock() = None;
        result
    }
}

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System")
            .field("config", &self.shared.config)
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}
