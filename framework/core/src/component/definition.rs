//! Defining a component: the [`ComponentDefinition`] trait and its [`Setup`].
//!
//! A component is a plain struct holding its state and its port handles. Its `setup` declares,
//! for each port field, which handler handles the events arriving there. The compiler checks that
//! the handler takes exactly the event type that port delivers, so handling an event that is not
//! on the port does not compile. Several ports of the same type are fine: each has its own field
//! and its own handler.

use std::sync::Arc;

use crate::component::context::Context;
use crate::component::port_decl::{self, PortDecl};
use crate::handler::Handled;
use crate::port::Port;
use crate::port_core::DirectFactory;
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
pub(crate) type Field<D, H> = fn(&mut D) -> &mut H;

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
        self.decls.push(port_decl::provided(field, handler));
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
        self.decls.push(port_decl::provided_direct(field, make));
        PortOptions { names: &mut self.names, index: self.decls.len() - 1 }
    }

    /// Declares that `field` is a required port whose indications go to `handler`.
    pub fn require<P: Port>(
        &mut self,
        field: fn(&mut D) -> &mut Required<P>,
        handler: fn(&mut D, P::Indication) -> Handled,
    ) -> PortOptions<'_> {
        self.decls.push(port_decl::required(field, handler));
        PortOptions { names: &mut self.names, index: self.decls.len() - 1 }
    }

    /// Declares the component's [`Context`] field, giving handlers access to the system, their
    /// id, the clock and a seeded RNG.
    pub fn context(&mut self, field: fn(&mut D) -> &mut Context) {
        self.context = Some(field);
    }
}
