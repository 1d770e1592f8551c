//! Handles to components, for use from outside them.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::component::cell::ComponentCell;
use crate::component::definition::ComponentDefinition;
use crate::component::{ComponentId, FaultReport, LifecycleState, PortInfo};
use crate::error::{Error, Result};
use crate::port::{Direction, Port};
use crate::port_core::{ProvidedCore, RequiredCore};
use crate::port_handle::{ProvidedRef, RequiredRef};

/// An untyped, cloneable reference to a component.
#[derive(Clone)]
pub struct ComponentRef {
    pub(crate) cell: Arc<ComponentCell>,
}

impl ComponentRef {
    /// The component's id.
    pub fn id(&self) -> ComponentId {
        self.cell.id()
    }

    /// Its lifecycle state now.
    pub fn state(&self) -> LifecycleState {
        self.cell.state()
    }

    /// The type name of its current definition.
    pub fn type_name(&self) -> &'static str {
        *self.cell.type_name.lock()
    }

    /// Its parent (`None` for the system root).
    pub fn parent(&self) -> Option<ComponentRef> {
        self.cell.parent().map(|cell| ComponentRef { cell })
    }

    /// Its children that are not destroyed yet.
    pub fn children(&self) -> Vec<ComponentRef> {
        self.cell.children.lock().values().map(|c| ComponentRef { cell: Arc::clone(c) }).collect()
    }

    /// Events waiting in its ports.
    pub fn queued(&self) -> usize {
        self.cell.queued()
    }

    /// A typed handle, for [`Component::on_definition`] (e.g. after the component was replaced
    /// by a definition of another type). The type is checked when the definition is accessed.
    pub fn typed<D: ComponentDefinition>(&self) -> Component<D> {
        Component::new(Arc::clone(&self.cell))
    }

    /// Its ports, in declaration order.
    pub fn ports(&self) -> Vec<PortInfo> {
        // Snapshot first: never hold the port table while querying the cores.
        let slots: Vec<_> = self
            .cell
            .ports
            .lock()
            .iter()
            .map(|s| (s.name, s.direction, Arc::clone(&s.core)))
            .collect();
        slots
            .into_iter()
            .map(|(name, direction, core)| PortInfo {
                name,
                port: core.port_name(),
                direction,
                channels: core.channel_ids(),
                queued: core.queued(),
            })
            .collect()
    }

    /// Events it has handled so far.
    pub fn handled(&self) -> u64 {
        self.cell.handled.load(Ordering::Relaxed)
    }

    /// How many times its definition was replaced (hot swaps).
    pub fn swaps(&self) -> u64 {
        self.cell.stats.swaps.load(Ordering::Relaxed)
    }

    /// How many times a supervisor restarted it.
    pub fn restarts(&self) -> u64 {
        self.cell.stats.restarts.load(Ordering::Relaxed)
    }

    /// Events dropped because they reached it after it was destroyed.
    pub fn dropped(&self) -> u64 {
        self.cell.stats.dropped.load(Ordering::Relaxed)
    }

    /// Its most recent failure, if any.
    pub fn last_fault(&self) -> Option<FaultReport> {
        self.cell.last_fault.lock().as_deref().cloned()
    }

    /// Waits until the component is in `state`.
    ///
    /// Blocks the calling thread: do not call it from a handler.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if that does not happen within `timeout`.
    pub fn await_state(&self, state: LifecycleState, timeout: Duration) -> Result<()> {
        self.cell.wait_for(state, timeout, |s| s == state)
    }

    fn find<T: Send + Sync + 'static>(&self, dir: Direction, name: Option<&str>) -> Result<Arc<T>> {
        let slots = self.cell.ports.lock();
        let port = std::any::type_name::<T>();
        let mut matching = slots.iter().filter(|s| {
            s.direction == dir
                && s.core.as_ref().type_id() == std::any::TypeId::of::<T>()
                && name.is_none_or(|n| s.name == Some(n))
        });
        let first = matching.next();
        let rest = matching.count();
        let port_name = port_type_name(port);
        match first {
            // A destroyed component has dropped its port table.
            None if self.cell.is_destroyed() => Err(Error::Destroyed(self.id())),
            None => Err(Error::NoSuchPort {
                component: self.id(),
                direction: dir.as_str(),
                port: port_name,
            }),
            Some(_) if rest > 0 => Err(Error::AmbiguousPort {
                component: self.id(),
                direction: dir.as_str(),
                port: port_name,
                count: rest + 1,
            }),
            Some(s) => {
                let any: Arc<dyn std::any::Any + Send + Sync> = Arc::clone(&s.core) as _;
                any.downcast::<T>().map_err(|_| Error::NoSuchPort {
                    component: self.id(),
                    direction: dir.as_str(),
                    port: port_name,
                })
            }
        }
    }

    /// Its provided port of type `P`.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchPort`], or [`Error::AmbiguousPort`] if it has several (use
    /// [`provided_named`](Self::provided_named)); [`Error::Destroyed`] once the component is
    /// destroyed.
    pub fn provided<P: Port>(&self) -> Result<ProvidedRef<P>> {
        self.find::<ProvidedCore<P>>(Direction::Provided, None).map(|core| ProvidedRef { core })
    }

    /// Its provided port of type `P` named `name` (see [`PortOptions::named`](crate::PortOptions::named)).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchPort`] if there is none.
    pub fn provided_named<P: Port>(&self, name: &str) -> Result<ProvidedRef<P>> {
        self.find::<ProvidedCore<P>>(Direction::Provided, Some(name))
            .map(|core| ProvidedRef { core })
    }

    /// Its required port of type `P`.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchPort`], or [`Error::AmbiguousPort`] if it has several (use
    /// [`required_named`](Self::required_named)); [`Error::Destroyed`] once the component is
    /// destroyed.
    pub fn required<P: Port>(&self) -> Result<RequiredRef<P>> {
        self.find::<RequiredCore<P>>(Direction::Required, None).map(|core| RequiredRef { core })
    }

    /// Its required port of type `P` named `name`.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchPort`] if there is none.
    pub fn required_named<P: Port>(&self, name: &str) -> Result<RequiredRef<P>> {
        self.find::<RequiredCore<P>>(Direction::Required, Some(name))
            .map(|core| RequiredRef { core })
    }
}

/// The port type's name from a core type name like `selfman_core::port_core::ProvidedCore<x::P>`.
fn port_type_name(full: &'static str) -> &'static str {
    match (full.find('<'), full.rfind('>')) {
        (Some(a), Some(b)) if a < b => &full[a + 1..b],
        _ => full,
    }
}

impl fmt::Debug for ComponentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentRef")
            .field("id", &self.id())
            .field("type", &self.type_name())
            .field("state", &self.state())
            .finish()
    }
}

impl PartialEq for ComponentRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

impl Eq for ComponentRef {}

/// A typed handle to a component created from definition `D`.
///
/// Dereferences to [`ComponentRef`] for everything that does not need the type.
pub struct Component<D> {
    r: ComponentRef,
    _d: PhantomData<fn() -> D>,
}

impl<D: ComponentDefinition> Component<D> {
    pub(crate) fn new(cell: Arc<ComponentCell>) -> Self {
        Component { r: ComponentRef { cell }, _d: PhantomData }
    }

    /// An untyped reference.
    pub fn untyped(&self) -> &ComponentRef {
        &self.r
    }

    /// Runs `f` on the component's definition (for tests and inspection).
    ///
    /// Waits for a running handler of the component to finish. Do not call it from a handler:
    /// two components doing so on each other would deadlock.
    ///
    /// # Errors
    ///
    /// [`Error::Destroyed`] if the component is gone; [`Error::WrongDefinition`] if it was
    /// replaced by a definition of another type.
    pub fn on_definition<R>(&self, f: impl FnOnce(&mut D) -> R) -> Result<R> {
        let id = self.r.id();
        self.r.cell.with_instance(|inst| {
            inst.definition()
                .downcast_mut::<D>()
                .map(f)
                .ok_or(Error::WrongDefinition { component: id, wanted: std::any::type_name::<D>() })
        })?
    }
}

impl<D> Deref for Component<D> {
    type Target = ComponentRef;
    fn deref(&self) -> &ComponentRef {
        &self.r
    }
}

impl<D> Clone for Component<D> {
    fn clone(&self) -> Self {
        Component { r: self.r.clone(), _d: PhantomData }
    }
}

impl<D> fmt::Debug for Component<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.r.fmt(f)
    }
}
