//! The shared, stable part of a port: its inbox and its channel list.
//!
//! A port core belongs to a component *cell* (the component's identity), not to the user's
//! definition object, so it survives replacing or restarting the definition: channels keep
//! pointing at the same core and queued events stay queued.

use std::sync::Arc;

use crate::channel::ChannelSet;
use crate::component::cell::ComponentCell;
use crate::component::ComponentId;
use crate::inbox::Inbox;
use crate::port::Port;
use crate::port_handle::ProvidedRef;

/// Serves the requests of one channel of a direct port (see
/// [`Setup::provide_direct`](crate::Setup::provide_direct)).
pub(crate) type DirectService<P> = Box<dyn FnMut(<P as Port>::Request) + Send>;

/// Makes the service of each channel connected to a direct port.
pub(crate) type DirectFactory<P> = Arc<dyn Fn(&ProvidedRef<P>) -> DirectService<P> + Send + Sync>;

/// A request together with the channel it arrived on (0 = injected from outside).
pub(crate) struct Envelope<E> {
    pub(crate) event: E,
    pub(crate) origin: u64,
}

/// Field order is fixed: `owner` (read by producers), the inbox (producers' part, gap,
/// runner's part), then `channels` (read by the owner when it triggers) — so the owner's
/// triggers do not share a cache line with other cores' pushes.
#[repr(C)]
pub(crate) struct ProvidedCore<P: Port> {
    pub(crate) owner: Arc<ComponentCell>,
    pub(crate) inbox: Inbox<Envelope<P::Request>>,
    pub(crate) channels: ChannelSet<P>,
    /// Set for a port served directly: requests over a channel run a per-channel service in
    /// the requirer's turn instead of being queued. Fixed when the port is created.
    pub(crate) direct: Option<DirectFactory<P>>,
}

/// Field order as in [`ProvidedCore`].
#[repr(C)]
pub(crate) struct RequiredCore<P: Port> {
    pub(crate) owner: Arc<ComponentCell>,
    pub(crate) inbox: Inbox<P::Indication>,
    pub(crate) channels: ChannelSet<P>,
}

impl<P: Port> ProvidedCore<P> {
    /// A port of `owner`, at position `slot` of its port table.
    pub(crate) fn new(
        owner: Arc<ComponentCell>,
        slot: usize,
        direct: Option<DirectFactory<P>>,
    ) -> Self {
        let inbox = Inbox::with_bit(ready_bit(slot));
        ProvidedCore { owner, inbox, channels: ChannelSet::new(), direct }
    }
}

impl<P: Port> RequiredCore<P> {
    /// A port of `owner`, at position `slot` of its port table.
    pub(crate) fn new(owner: Arc<ComponentCell>, slot: usize) -> Self {
        RequiredCore { owner, inbox: Inbox::with_bit(ready_bit(slot)), channels: ChannelSet::new() }
    }
}

/// The bit of position `i` in a 64-bit mask of positions (a port's position in its owner's
/// port table, for the ready mask; a declaration's, for an instance's masks). Positions from 63
/// on share the last bit.
#[inline(always)]
pub(crate) fn mask_bit(i: usize) -> u64 {
    1 << i.min(63)
}

/// The bit a push onto the port at position `slot` sets in its owner's ready mask: none for the
/// first port, which every turn looks at anyway (a plain load of its arrival hint, like the
/// control queue), so that a component with one port — or whose first port carries most of its
/// events — costs no mask update per push and no mask swap per turn; [`mask_bit`] for the rest.
#[inline(always)]
pub(crate) fn ready_bit(slot: usize) -> u64 {
    if slot == 0 {
        0
    } else {
        mask_bit(slot)
    }
}

/// Type-erased view of a port core, kept in the cell's port table.
pub(crate) trait AnyPortCore: std::any::Any + Send + Sync {
    fn port_name(&self) -> &'static str;
    fn queued(&self) -> usize;
    fn channel_ids(&self) -> Vec<u64>;
    /// (channel id, provider, requirer) of each connected channel.
    fn channel_edges(&self) -> Vec<(u64, ComponentId, ComponentId)>;
    fn disconnect_all(&self);
    /// Drops the port's queued events (see `Inbox::discard`).
    ///
    /// # Safety
    ///
    /// Only from a turn of the port's owner (holding its `run` lock).
    unsafe fn discard(&self) -> (bool, usize);
}

impl<P: Port> AnyPortCore for ProvidedCore<P> {
    fn port_name(&self) -> &'static str {
        std::any::type_name::<P>()
    }
    fn queued(&self) -> usize {
        self.inbox.len()
    }
    fn channel_ids(&self) -> Vec<u64> {
        self.channels.ids()
    }
    fn channel_edges(&self) -> Vec<(u64, ComponentId, ComponentId)> {
        self.channels.edges()
    }
    fn disconnect_all(&self) {
        self.channels.disconnect_all();
    }
    unsafe fn discard(&self) -> (bool, usize) {
        // SAFETY: our caller's precondition.
        unsafe { self.inbox.discard() }
    }
}

impl<P: Port> AnyPortCore for RequiredCore<P> {
    fn port_name(&self) -> &'static str {
        std::any::type_name::<P>()
    }
    fn queued(&self) -> usize {
        self.inbox.len()
    }
    fn channel_ids(&self) -> Vec<u64> {
        self.channels.ids()
    }
    fn channel_edges(&self) -> Vec<(u64, ComponentId, ComponentId)> {
        self.channels.edges()
    }
    fn disconnect_all(&self) {
        self.channels.disconnect_all();
    }
    unsafe fn discard(&self) -> (bool, usize) {
        // SAFETY: our caller's precondition.
        unsafe { self.inbox.discard() }
    }
}
