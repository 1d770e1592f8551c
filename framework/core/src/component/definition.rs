//! Defining a component: the [`ComponentDefinition`] trait and its [`Setup`].
//!
//! A component is a plain struct holding its state and its port handles. Its `setup` declares,
//! for each port field, which handler handles the events arriving there. The compiler checks that
//! the handler takes exactly the event type that port delivers, so handling an event that is not
//! on the port does not compile. Several ports of the same type are fine: each has its own field
//! and its own handler.

use std::any::{Any, TypeId};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::component::cell::ComponentCell;
use crate::component::context::Context;
use crate::handler::{Handled, HandlerError, Severity};
use crate::inbox::Inbox;
use crate::port::{Direction, Port};
use crate::port_core::{AnyPortCore, DirectFactory, DirectService, ProvidedCore, RequiredCore};
use crate::port_handle::{Provided, ProvidedRef, Required};

/// A component's behaviour: its state, its ports, its handlers.
///
/// Handlers of one component never run concurrently, so the state needs no locks; different
/// components run in parallel.
///
/// # Examples
///
/// ```
/// use selfman_core::{ComponentDefinition, Handled, Port, Provided, Setup};
///
/// #[derive(Clone, Debug)]
/// pub struct Ping(pub u64);
/// #[derive(Clone, Debug)]
/// pub struct Pong(pub u64);
/// pub struct PingPong;
/// impl Port for PingPong {
///     type Request = Ping;
///     type Indication = Pong;
/// }
///
/// #[derive(Default)]
/// pub struct Ponger {
///     pings: Provided<PingPong>,
/// }
///
/// impl Ponger {
///     fn on_ping(&mut self, ping: Ping) -> Handled {
///         self.pings.reply(Pong(ping.0))?;
///         Ok(())
///     }
/// }
///
/// impl ComponentDefinition for Ponger {
///     fn setup(&mut self, setup: &mut Setup<Self>) {
///         setup.provide(|c| &mut c.pings, Self::on_ping);
///     }
/// }
/// ```
pub trait ComponentDefinition: Send + Sized + 'static {
    /// Declares the component's ports and their handlers (and optionally its [`Context`]).
    /// Called once per instance, before any handler runs.
    fn setup(&mut self, setup: &mut Setup<Self>);

    /// Runs when the component becomes active (after all its children have started).
    fn on_start(&mut self) -> Handled {
        Ok(())
    }

    /// Runs when the component stops (after all its children have stopped).
    fn on_stop(&mut self) -> Handled {
        Ok(())
    }

    /// Runs when the component is destroyed (after all its children were destroyed).
    fn on_kill(&mut self) -> Handled {
        Ok(())
    }
}

/// Accessor of a port field.
type Field<D, H> = fn(&mut D) -> &mut H;

/// Collects a component's port declarations. Passed to [`ComponentDefinition::setup`].
pub struct Setup<D> {
    pub(crate) decls: Vec<Box<dyn PortDecl<D>>>,
    /// Names given with [`PortOptions::named`], by declaration index (only named ports).
    pub(crate) names: Vec<(usize, &'static str)>,
    pub(crate) context: Option<Field<D, Context>>,
}

/// Returned by [`Setup::provide`] and [`Setup::require`] to name the port.
pub struct PortOptions<'a> {
    names: &'a mut Vec<(usize, &'static str)>,
    index: usize,
}

impl PortOptions<'_> {
    /// Names the port, so that one of several ports of the same type can be found from outside
    /// (e.g. [`ComponentRef::provided_named`](crate::ComponentRef::provided_named)) and in
    /// introspection.
    pub fn named(self, name: &'static str) {
        self.names.retain(|(i, _)| *i != self.index);
        self.names.push((self.index, name));
    }
}

impl<D: ComponentDefinition> Setup<D> {
    pub(crate) fn new() -> Self {
        Setup { decls: Vec::new(), names: Vec::new(), context: None }
    }

    /// Declares that `field` is a provided port whose requests go to `handler`.
    pub fn provide<P: Port>(
        &mut self,
        field: fn(&mut D) -> &mut Provided<P>,
        handler: fn(&mut D, P::Request) -> Handled,
    ) -> PortOptions<'_> {
        self.decls.push(Box::new(ProvidedEntry {
            field,
            serve: Serve::Handler(handler),
            core: None,
        }));
        PortOptions { names: &mut self.names, index: self.decls.len() - 1 }
    }

    /// Declares that `field` is a provided port served **directly**: a request triggered over
    /// a channel is not queued for this component but handled on the spot, inside the
    /// requirer's trigger, by a service made for that channel.
    ///
    /// `make` is called once per channel, when it is connected (with a reference to the port,
    /// e.g. to trigger indications through an [`Indicator`](crate::Indicator)); the service
    /// it returns handles every request of that channel, in order, one at a time — the
    /// requirer's handlers never overlap. Requests injected with
    /// [`ProvidedRef::request`](crate::ProvidedRef::request) are queued as usual and handled by
    /// a service of their own in this component's turns.
    ///
    /// This removes a scheduling hop per request, which is what transports want: the network
    /// adapters of `selfman-sim` and `selfman-net` serve `Network<M>` this way. The price:
    ///
    /// * services run on requirers' threads, concurrently with each other and with this
    ///   component's handlers, so they must not touch the component's state (give them what
    ///   they need, shared through `Arc`s);
    /// * they serve regardless of this component's lifecycle (also while it is passive);
    /// * a service must not trigger a request on its own channel (it would deadlock), and a
    ///   panic in it fails the *requirer's* handler;
    /// * whether a port is direct, and with which `make`, is fixed when the component is
    ///   created: replacing or restarting the component keeps the port's services.
    pub fn provide_direct<P: Port, S>(
        &mut self,
        field: fn(&mut D) -> &mut Provided<P>,
        make: impl Fn(&ProvidedRef<P>) -> S + Send + Sync + 'static,
    ) -> PortOptions<'_>
    where
        S: FnMut(P::Request) + Send + 'static,
    {
        let make: DirectFactory<P> = Arc::new(move |port| Box::new(make(port)));
        let serve = Serve::Direct { make, fallback: None.into() };
        self.decls.push(Box::new(ProvidedEntry { field, serve, core: None }));
        PortOptions { names: &mut self.names, index: self.decls.len() - 1 }
    }

    /// Declares that `field` is a required port whose indications go to `handler`.
    pub fn require<P: Port>(
        &mut self,
        field: fn(&mut D) -> &mut Required<P>,
        handler: fn(&mut D, P::Indication) -> Handled,
    ) -> PortOptions<'_> {
        self.decls.push(Box::new(RequiredEntry { field, handler, core: None }));
        PortOptions { names: &mut self.names, index: self.decls.len() - 1 }
    }

    /// Declares the component's [`Context`] field, giving handlers access to the system, their
    /// id, the clock and a seeded RNG.
    pub fn context(&mut self, field: fn(&mut D) -> &mut Context) {
        self.context = Some(field);
    }
}

/// What went wrong in a handler.
#[derive(Debug)]
pub(crate) enum FailureCause {
    Error(HandlerError),
    Panic(String),
}

/// A failed handler invocation, with where it happened.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) cause: FailureCause,
    /// `"port <type> (<direction>)"` or a lifecycle hook name.
    pub(crate) place: String,
    /// Type name of the event (or the hook).
    pub(crate) event: &'static str,
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs a handler, catching panics.
#[inline]
pub(crate) fn invoke<D, E>(
    def: &mut D,
    handler: fn(&mut D, E) -> Handled,
    ev: E,
) -> Result<(), FailureCause> {
    match catch_unwind(AssertUnwindSafe(|| handler(def, ev))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(FailureCause::Error(e)),
        Err(payload) => Err(FailureCause::Panic(panic_message(&*payload))),
    }
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
