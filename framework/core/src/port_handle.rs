//! Port handles: the fields a component holds, and the references other code uses to reach them.
//!
//! * [`Provided<P>`] / [`Required<P>`] live inside a component definition. Only that component's
//!   handlers use them (they need `&mut`), so triggering takes no lock.
//! * [`ProvidedRef<P>`] / [`RequiredRef<P>`] are cheap, cloneable references used from outside
//!   to connect channels or to inject an event.

use std::fmt;
use std::sync::Arc;

use crate::channel::{fan_out, ChannelCache, ChannelCore};
use crate::component::ComponentId;
use crate::error::{Error, Result};
use crate::port::{IndicationFrom, Port, RequestFrom};
use crate::port_core::{Envelope, ProvidedCore, RequiredCore};

/// The channel a request arrived on; pass it to [`Provided::trigger_to`] to answer only that
/// requirer (request/response), possibly much later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(pub(crate) u64);

impl Origin {
    /// The id of the channel.
    pub fn channel_id(self) -> u64 {
        self.0
    }
}

/// A port this component provides: it handles `P::Request` and triggers `P::Indication`.
///
/// Create it with [`Provided::new`] (or `Default`) in the component's constructor; it is bound
/// to the component when the component is created (see [`Setup`](crate::Setup)).
pub struct Provided<P: Port> {
    pub(crate) core: Option<Arc<ProvidedCore<P>>>,
    cache: ChannelCache<P>,
    pub(crate) origin: u64,
}

impl<P: Port> Provided<P> {
    /// An unbound port handle.
    pub fn new() -> Self {
        Provided { core: None, cache: ChannelCache::new(), origin: 0 }
    }

    /// Triggers an indication on every connected channel (whose selector accepts it).
    ///
    /// Returns how many channels it went to. Triggering on a port that is not bound yet (in a
    /// constructor) delivers nothing and returns 0.
    ///
    /// Only `P::Indication` can be triggered here; anything else does not compile.
    #[inline]
    pub fn trigger<E>(&mut self, event: E) -> usize
    where
        P::Indication: IndicationFrom<E, P>,
    {
        let Some(core) = &self.core else {
            tracing::warn!(port = std::any::type_name::<P>(), "trigger on an unbound port");
            return 0;
        };
        let channels = self.cache.refresh(&core.channels);
        fan_out(
            channels,
            P::Indication::indication_from(event),
            |ch, ev| ch.accepts_indication(ev),
            |ch, ev| ch.deliver_indication(ev),
        )
    }

    /// The channel the request being handled arrived on, or `None` outside a request handler
    /// and for requests injected with [`ProvidedRef::request`].
    pub fn origin(&self) -> Option<Origin> {
        (self.origin != 0).then_some(Origin(self.origin))
    }

    /// Triggers an indication on the channel the current request arrived on only.
    ///
    /// # Errors
    ///
    /// [`Error::Unbound`] outside a request handler or for an injected request;
    /// [`Error::Disconnected`] if that channel is gone.
    pub fn reply<E>(&mut self, event: E) -> Result<()>
    where
        P::Indication: IndicationFrom<E, P>,
    {
        match self.origin() {
            Some(o) => self.trigger_to(o, event),
            None => Err(Error::Unbound),
        }
    }

    /// Triggers an indication on one channel only (the selector still applies).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if the channel is no longer connected to this port.
    pub fn trigger_to<E>(&mut self, origin: Origin, event: E) -> Result<()>
    where
        P::Indication: IndicationFrom<E, P>,
    {
        let ch = self.channel(origin)?;
        let ev = P::Indication::indication_from(event);
        if ch.accepts_indication(&ev) {
            ch.deliver_indication(ev);
        }
        Ok(())
    }

    pub(crate) fn channel(&mut self, origin: Origin) -> Result<Arc<ChannelCore<P>>> {
        let core = self.core.as_ref().ok_or(Error::Unbound)?;
        self.cache.find(&core.channels, origin.0).cloned().ok_or(Error::Disconnected(origin.0))
    }

    /// A reference to this port for connecting it from outside.
    ///
    /// # Errors
    ///
    /// [`Error::Unbound`] before the component is created.
    pub fn share(&self) -> Result<ProvidedRef<P>> {
        self.core.as_ref().map(|c| ProvidedRef { core: Arc::clone(c) }).ok_or(Error::Unbound)
    }

    /// How many channels are connected to this port now.
    pub fn channel_count(&mut self) -> usize {
        match &self.core {
            Some(core) => self.cache.refresh(&core.channels).len(),
            None => 0,
        }
    }
}

impl<P: Port> Default for Provided<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Port> fmt::Debug for Provided<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provided")
            .field("port", &std::any::type_name::<P>())
            .field("bound", &self.core.is_some())
            .finish()
    }
}

/// A port this component requires: it triggers `P::Request` and handles `P::Indication`.
pub struct Required<P: Port> {
    pub(crate) core: Option<Arc<RequiredCore<P>>>,
    cache: ChannelCache<P>,
}

impl<P: Port> Required<P> {
    /// An unbound port handle.
    pub fn new() -> Self {
        Required { core: None, cache: ChannelCache::new() }
    }

    /// Triggers a request on every connected channel (whose selector accepts it).
    ///
    /// Returns how many channels it went to (0 if unbound or unconnected).
    ///
    /// Only `P::Request` can be triggered here; anything else does not compile.
    #[inline]
    pub fn trigger<E>(&mut self, event: E) -> usize
    where
        P::Request: RequestFrom<E, P>,
    {
        let Some(core) = &self.core else {
            tracing::warn!(port = std::any::type_name::<P>(), "trigger on an unbound port");
            return 0;
        };
        let channels = self.cache.refresh(&core.channels);
        fan_out(
            channels,
            P::Request::request_from(event),
            |ch, ev| ch.accepts_request(ev),
            |ch, ev| ch.deliver_request(ev),
        )
    }

    /// A reference to this port for connecting it from outside.
    ///
    /// # Errors
    ///
    /// [`Error::Unbound`] before the component is created.
    pub fn share(&self) -> Result<RequiredRef<P>> {
        self.core.as_ref().map(|c| RequiredRef { core: Arc::clone(c) }).ok_or(Error::Unbound)
    }

    /// How many channels are connected to this port now.
    pub fn channel_count(&mut self) -> usize {
        match &self.core {
            Some(core) => self.cache.refresh(&core.channels).len(),
            None => 0,
        }
    }
}

impl<P: Port> Default for Required<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Port> fmt::Debug for Required<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Required")
            .field("port", &std::any::type_name::<P>())
            .field("bound", &self.core.is_some())
            .finish()
    }
}

/// A reference to a component's provided port `P`, usable from anywhere.
pub struct ProvidedRef<P: Port> {
    pub(crate) core: Arc<ProvidedCore<P>>,
}

impl<P: Port> ProvidedRef<P> {
    /// The component that provides the port.
    pub fn owner(&self) -> ComponentId {
        self.core.owner.id()
    }

    /// Injects a request into the port, as if it came over a channel (but with no
    /// [`Origin`]).
    ///
    /// # Errors
    ///
    /// [`Error::Destroyed`] if the component was destroyed (the event is dropped).
    pub fn request<E>(&self, event: E) -> Result<()>
    where
        P::Request: RequestFrom<E, P>,
    {
        if self.core.owner.is_destroyed() {
            return Err(Error::Destroyed(self.owner()));
        }
        self.core
            .inbox
            .push(&self.core.owner, Envelope { event: P::Request::request_from(event), origin: 0 });
        Ok(())
    }
}

impl<P: Port> ProvidedRef<P> {
    /// A handle that triggers indications on this port from outside its component — for
    /// drivers such as a network transport's I/O thread, which deliver what arrives from the
    /// outside world through a port a component provides.
    ///
    /// Indications triggered through it fan out to the port's channels like the component's own
    /// triggers; FIFO holds per indicator and channel.
    pub fn indicator(&self) -> Indicator<P> {
        Indicator { core: Arc::clone(&self.core), cache: ChannelCache::new() }
    }
}

/// Triggers indications on a provided port from outside its component; see
/// [`ProvidedRef::indicator`]. Caches the port's channel list, so a trigger costs one atomic
/// load when no channel changed.
pub struct Indicator<P: Port> {
    core: Arc<ProvidedCore<P>>,
    cache: ChannelCache<P>,
}

impl<P: Port> Indicator<P> {
    /// Triggers an indication on every connected channel of the port (whose selector accepts
    /// it). Returns how many channels it went to (0 once the component is destroyed).
    #[inline]
    pub fn trigger<E>(&mut self, event: E) -> usize
    where
        P::Indication: IndicationFrom<E, P>,
    {
        let channels = self.cache.refresh(&self.core.channels);
        fan_out(
            channels,
            P::Indication::indication_from(event),
            |ch, ev| ch.accepts_indication(ev),
            |ch, ev| ch.deliver_indication(ev),
        )
    }

    /// The component that provides the port.
    pub fn owner(&self) -> ComponentId {
        self.core.owner.id()
    }

    /// Whether that component is destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.core.owner.is_destroyed()
    }

    /// A hint for a driver that knows which port it will trigger next (the simulator, which
    /// knows its next delivery): starts fetching the port's channel into the CPU cache,
    /// without waiting for it. Nothing else happens; calling it or not never changes what a
    /// trigger does. Only a port with exactly one channel is prefetched.
    #[inline]
    pub fn prefetch(&self) {
        self.cache.prefetch();
    }

    /// The second step after [`Indicator::prefetch`], once the channel has had time to arrive:
    /// reads it and starts fetching the receiving queue and component. A hint as well.
    #[inline]
    pub fn prefetch_receiver(&self) {
        self.cache.prefetch_receiver();
    }
}

impl<P: Port> Clone for Indicator<P> {
    fn clone(&self) -> Self {
        Indicator { core: Arc::clone(&self.core), cache: ChannelCache::new() }
    }
}

impl<P: Port> fmt::Debug for Indicator<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Indicator")
            .field("port", &std::any::type_name::<P>())
            .field("owner", &self.owner())
            .finish()
    }
}

impl<P: Port> Clone for ProvidedRef<P> {
    fn clone(&self) -> Self {
        ProvidedRef { core: Arc::clone(&self.core) }
    }
}

impl<P: Port> fmt::Debug for ProvidedRef<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvidedRef")
            .field("port", &std::any::type_name::<P>())
            .field("owner", &self.owner())
            .finish()
    }
}

/// A reference to a component's required port `P`, usable from anywhere.
pub struct RequiredRef<P: Port> {
    pub(crate) core: Arc<RequiredCore<P>>,
}

impl<P: Port> RequiredRef<P> {
    /// The component that requires the port.
    pub fn owner(&self) -> ComponentId {
        self.core.owner.id()
    }

    /// Injects an indication into the port, as if a provider had triggered it.
    ///
    /// # Errors
    ///
    /// [`Error::Destroyed`] if the component was destroyed (the event is dropped).
    pub fn indicate<E>(&self, event: E) -> Result<()>
    where
        P::Indication: IndicationFrom<E, P>,
    {
        if self.core.owner.is_destroyed() {
            return Err(Error::Destroyed(self.owner()));
        }
        self.core.inbox.push(&self.core.owner, P::Indication::indication_from(event));
        Ok(())
    }
}

impl<P: Port> Clone for RequiredRef<P> {
    fn clone(&self) -> Self {
        RequiredRef { core: Arc::clone(&self.core) }
    }
}

impl<P: Port> fmt::Debug for RequiredRef<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequiredRef")
            .field("port", &std::any::type_name::<P>())
            .field("owner", &self.owner())
            .finish()
    }
}
