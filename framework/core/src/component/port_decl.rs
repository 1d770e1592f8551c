//! The machinery behind [`Setup`](crate::Setup): one declared port of a definition, bound to its
//! port core, moving and handling its events. Private to the crate; the component's instance
//! (`instance.rs`) is its only caller, which is what makes the unsynchronised local queues sound
//! (see [`PortDecl`]).

use std::any::{Any, TypeId};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::component::cell::ComponentCell;
use crate::component::definition::Field;
use crate::component::failure::{invoke, panic_message, Failure, FailureCause};
use crate::handler::{Handled, Severity};
use crate::inbox::Inbox;
use crate::port::{Direction, Port};
use crate::port_core::{AnyPortCore, DirectFactory, DirectService, ProvidedCore, RequiredCore};
use crate::port_handle::{Provided, ProvidedRef, Required};

/// A provided port whose requests go to `handler`.
pub(crate) fn provided<D: Send + 'static, P: Port>(
    field: Field<D, Provided<P>>,
    handler: fn(&mut D, P::Request) -> Handled,
) -> Box<dyn PortDecl<D>> {
    Box::new(ProvidedEntry { field, serve: Serve::Handler(handler), core: None })
}

/// A provided port served directly by services made with `make`.
pub(crate) fn provided_direct<D: Send + 'static, P: Port>(
    field: Field<D, Provided<P>>,
    make: DirectFactory<P>,
) -> Box<dyn PortDecl<D>> {
    Box::new(ProvidedEntry {
        field,
        serve: Serve::Direct { make, fallback: None.into() },
        core: None,
    })
}

/// A required port whose indications go to `handler`.
pub(crate) fn required<D: Send + 'static, P: Port>(
    field: Field<D, Required<P>>,
    handler: fn(&mut D, P::Indication) -> Handled,
) -> Box<dyn PortDecl<D>> {
    Box::new(RequiredEntry { field, handler, core: None })
}

/// Outcome of handling a batch from one port.
pub(crate) struct Batch {
    pub(crate) handled: usize,
    /// Boxed: a batch is returned per port per turn, and an empty option of a pointer costs
    /// nothing to check or drop.
    pub(crate) failure: Option<Box<Failure>>,
    /// Whether the port still holds events taken earlier (its local queue is not empty).
    pub(crate) more: bool,
}

/// A declared port: binds itself to a port core, then moves and handles its events.
///
/// Contract: `take`, `has_local` and `handle` reach the port's unsynchronised local queue, so
/// they are only called by the owner's instance from within the owner's turns (holding its
/// cell's `run` lock) or while the owner is created and not yet reachable by other threads.
/// `instance.rs` is the only caller.
pub(crate) trait PortDecl<D>: Send {
    /// `TypeId` of the port core this declaration binds to (identifies port type + direction).
    fn core_type(&self) -> TypeId;
    fn direction(&self) -> Direction;
    /// Binds the field of `def` to `existing` (when adopting a previous instance's ports) or to
    /// a fresh core owned by `owner`; returns the core.
    fn bind(
        &mut self,
        def: &mut D,
        owner: &Arc<ComponentCell>,
        slot: usize,
        existing: Option<Arc<dyn AnyPortCore>>,
    ) -> Arc<dyn AnyPortCore>;
    /// Moves arrived events to the local queue; `true` if any were taken.
    fn take(&self, hold: bool) -> bool;
    fn has_local(&self) -> bool;
    /// Handles at most `max` local events.
    fn handle(&self, def: &mut D, max: usize) -> Batch;
}

struct ProvidedEntry<D, P: Port> {
    field: Field<D, Provided<P>>,
    serve: Serve<D, P>,
    core: Option<Arc<ProvidedCore<P>>>,
}

/// How a provided port's queued requests are served.
enum Serve<D, P: Port> {
    /// By the component's handler, in its turns.
    Handler(fn(&mut D, P::Request) -> Handled),
    /// A direct port (see [`Setup::provide_direct`]): channels serve themselves; what is
    /// queued (injected requests) goes to `fallback`, made on first use.
    Direct { make: DirectFactory<P>, fallback: parking_lot::Mutex<Option<DirectService<P>>> },
}

struct RequiredEntry<D, P: Port> {
    field: Field<D, Required<P>>,
    handler: fn(&mut D, P::Indication) -> Handled,
    core: Option<Arc<RequiredCore<P>>>,
}

fn adopt<T: Any + Send + Sync>(existing: Option<Arc<dyn AnyPortCore>>) -> Option<Arc<T>> {
    let any: Arc<dyn Any + Send + Sync> = existing?;
    any.downcast::<T>().ok()
}

/// Handles up to `max` events from `inbox`'s local queue with `call`. Benign errors are logged
/// and skipped; any other failure stops the batch. Returns the number handled (including the
/// failed one), the failure, and whether events are left.
fn drain<T>(
    inbox: &Inbox<T>,
    max: usize,
    mut call: impl FnMut(T) -> Result<(), FailureCause>,
) -> (usize, Option<FailureCause>, bool) {
    let mut handled = 0;
    let mut failed = None;
    while handled < max {
        // SAFETY: `PortDecl` methods run only within the owner's turns (see `PortDecl`).
        let Some(item) = (unsafe { inbox.pop_local() }) else { break };
        handled += 1;
        match call(item) {
            Ok(()) => {}
            Err(FailureCause::Error(e)) if e.severity() == Severity::Benign => {
                tracing::warn!(error = %e, event = std::any::type_name::<T>(), "benign handler error");
            }
            Err(cause) => {
                failed = Some(cause);
                break;
            }
        }
    }
    // SAFETY: as above.
    let more = unsafe { inbox.settle() };
    (handled, failed, more)
}

fn failure<P: Port, E>(cause: FailureCause, dir: Direction) -> Box<Failure> {
    Box::new(Failure {
        cause,
        place: format!("{} port {}", dir.as_str(), std::any::type_name::<P>()),
        event: std::any::type_name::<E>(),
    })
}

impl<D: Send + 'static, P: Port> PortDecl<D> for ProvidedEntry<D, P> {
    fn core_type(&self) -> TypeId {
        TypeId::of::<ProvidedCore<P>>()
    }
    fn direction(&self) -> Direction {
        Direction::Provided
    }
    fn bind(
        &mut self,
        def: &mut D,
        owner: &Arc<ComponentCell>,
        slot: usize,
        existing: Option<Arc<dyn AnyPortCore>>,
    ) -> Arc<dyn AnyPortCore> {
        let direct = match &self.serve {
            Serve::Handler(_) => None,
            Serve::Direct { make, .. } => Some(Arc::clone(make)),
        };
        let core = adopt::<ProvidedCore<P>>(existing)
            .unwrap_or_else(|| Arc::new(ProvidedCore::new(Arc::clone(owner), slot, direct)));
        (self.field)(def).core = Some(Arc::clone(&core));
        self.core = Some(Arc::clone(&core));
        core
    }
    fn take(&self, hold: bool) -> bool {
        // SAFETY: `PortDecl` methods run only within the owner's turns (see `PortDecl`).
        self.core.as_ref().is_some_and(|c| unsafe { c.inbox.take(hold) })
    }
    fn has_local(&self) -> bool {
        // SAFETY: as in `take`.
        self.core.as_ref().is_some_and(|c| unsafe { c.inbox.has_local() })
    }
    fn handle(&self, def: &mut D, max: usize) -> Batch {
        let Some(core) = &self.core else {
            return Batch { handled: 0, failure: None, more: false };
        };
        let field = self.field;
        let (handled, cause, more) = match &self.serve {
            Serve::Handler(handler) => drain(&core.inbox, max, |env| {
                field(def).origin = env.origin;
                let r = invoke(def, *handler, env.event);
                field(def).origin = 0;
                r
            }),
            Serve::Direct { make, fallback } => {
                let mut fallback = fallback.lock();
                let serve = fallback.get_or_insert_with(|| {
                    let make = core.direct.as_ref().unwrap_or(make);
                    make(&ProvidedRef { core: Arc::clone(core) })
                });
                drain(&core.inbox, max, |env| {
                    catch_unwind(AssertUnwindSafe(|| serve(env.event)))
                        .map_err(|p| FailureCause::Panic(panic_message(&*p)))
                })
            }
        };
        let failure = cause.map(|c| failure::<P, P::Request>(c, Direction::Provided));
        Batch { handled, failure, more }
    }
}

impl<D: Send + 'static, P: Port> PortDecl<D> for RequiredEntry<D, P> {
    fn core_type(&self) -> TypeId {
        TypeId::of::<RequiredCore<P>>()
    }
    fn direction(&self) -> Direction {
        Direction::Required
    }
    fn bind(
        &mut self,
        def: &mut D,
        owner: &Arc<ComponentCell>,
        slot: usize,
        existing: Option<Arc<dyn AnyPortCore>>,
    ) -> Arc<dyn AnyPortCore> {
        let core = adopt::<RequiredCore<P>>(existing)
            .unwrap_or_else(|| Arc::new(RequiredCore::new(Arc::clone(owner), slot)));
        (self.field)(def).core = Some(Arc::clone(&core));
        self.core = Some(Arc::clone(&core));
        core
    }
    fn take(&self, hold: bool) -> bool {
        // SAFETY: `PortDecl` methods run only within the owner's turns (see `PortDecl`).
        self.core.as_ref().is_some_and(|c| unsafe { c.inbox.take(hold) })
    }
    fn has_local(&self) -> bool {
        // SAFETY: as in `take`.
        self.core.as_ref().is_some_and(|c| unsafe { c.inbox.has_local() })
    }
    fn handle(&self, def: &mut D, max: usize) -> Batch {
        let Some(core) = &self.core else {
            return Batch { handled: 0, failure: None, more: false };
        };
        let handler = self.handler;
        let (handled, cause, more) = drain(&core.inbox, max, |ev| invoke(def, handler, ev));
        let failure = cause.map(|c| failure::<P, P::Indication>(c, Direction::Required));
        Batch { handled, failure, more }
    }
}
