//! A component's view of its runtime: its id, the system, the clock and a seeded RNG.

use std::fmt;
use std::sync::Arc;

use crate::component::cell::{ComponentCell, Control};
use crate::component::definition::ComponentDefinition;
use crate::component::handle::{Component, ComponentRef};
use crate::component::ComponentId;
use crate::error::Result;
use crate::rng::Rng;
use crate::runtime::Time;
use crate::system::System;

/// Gives handlers access to their component's identity, the [`System`], the clock and a seeded
/// [`Rng`]. Hold one as a field and declare it with [`Setup::context`](crate::Setup::context);
/// it is bound when the component is created.
///
/// # Panics
///
/// The accessors panic if used before the component is created (e.g. in a constructor), since
/// the context is not bound to a component yet.
pub struct Context {
    cell: Option<Arc<ComponentCell>>,
    rng: Rng,
}

impl Context {
    /// An unbound context (to initialise the field).
    pub fn new() -> Self {
        Context { cell: None, rng: Rng::seeded(0) }
    }

    pub(crate) fn bound(cell: &Arc<ComponentCell>) -> Self {
        let seed = cell.system.parts.rng.seed_for(cell.id());
        Context { cell: Some(Arc::clone(cell)), rng: Rng::seeded(seed) }
    }

    fn cell(&self) -> &Arc<ComponentCell> {
        self.cell
            .as_ref()
            .expect("Context used before its component was created (bind it in setup)")
    }

    pub(crate) fn system_shared(&self) -> &Arc<crate::system::SystemShared> {
        &self.cell().system
    }

    /// Whether the context is bound to a component.
    pub fn is_bound(&self) -> bool {
        self.cell.is_some()
    }

    /// This component's id.
    pub fn id(&self) -> ComponentId {
        self.cell().id()
    }

    /// A reference to this component.
    pub fn me(&self) -> ComponentRef {
        ComponentRef { cell: Arc::clone(self.cell()) }
    }

    /// The system this component runs in.
    pub fn system(&self) -> System {
        System::from_shared(Arc::clone(&self.cell().system))
    }

    /// The current (real or virtual) time.
    pub fn now(&self) -> Time {
        self.cell().system.parts.timers.now()
    }

    /// This component's random number generator, seeded by the runtime.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Creates a child component (passive until started).
    ///
    /// # Errors
    ///
    /// As [`System::create`].
    pub fn create_child<D, F>(&self, factory: F) -> Result<Component<D>>
    where
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
    {
        self.system().create_child(&self.me(), factory)
    }

    /// Asks the runtime to stop this component (after the current handler returns).
    pub fn stop_self(&self) {
        self.cell().send_control(Control::Stop);
    }

    /// Asks the runtime to destroy this component (after the current handler returns).
    pub fn kill_self(&self) {
        self.cell().send_control(Control::Kill);
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("component", &self.cell.as_ref().map(|c| c.id())).finish()
    }
}
