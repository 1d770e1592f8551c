//! Channels: the connections between a provided and a required port of the same type.
//!
//! Guarantees:
//! * **FIFO per channel**: events triggered over one channel are handled in trigger order.
//! * **Fan-out**: a trigger goes to every channel of the port whose selector accepts it. The
//!   event is cloned once per receiver beyond the first; with one receiver it is moved.
//! * **Connect/disconnect at any time** (from any thread, also inside a handler): they only take
//!   the two ports' short channel-list locks, never wait for a component, so they cannot
//!   deadlock. Once `disconnect` has returned, nothing more is queued over the channel (not even
//!   by a trigger running concurrently); events queued before are still delivered.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::component::cell::ComponentCell;
use crate::component::ComponentId;
use crate::error::{Error, Result};
use crate::port::Port;
use crate::port_core::{DirectService, Envelope, ProvidedCore, RequiredCore};
use crate::port_handle::ProvidedRef;

type Predicate<E> = Box<dyn Fn(&E) -> bool + Send + Sync>;

/// Filters which events a channel carries, per direction.
///
/// The usual use is one provider serving many requirers, each receiving only the indications
/// meant for it.
///
/// # Examples
///
/// ```
/// use selfman_core::{Port, Selector};
/// # #[derive(Clone, Debug)] pub struct Get(pub u32);
/// # #[derive(Clone, Debug)] pub struct Value { pub client: u32, pub v: u64 }
/// # pub struct Store;
/// # impl Port for Store { type Request = Get; type Indication = Value; }
/// // This requirer only sees values addressed to client 7.
/// let sel = Selector::<Store>::indications(|v: &Value| v.client == 7);
/// ```
pub struct Selector<P: Port> {
    requests: Option<Predicate<P::Request>>,
    indications: Option<Predicate<P::Indication>>,
}

impl<P: Port> Selector<P> {
    /// Carries everything (the default).
    pub fn all() -> Self {
        Selector { requests: None, indications: None }
    }

    /// Carries only the indications for which `f` is true (and every request).
    pub fn indications(f: impl Fn(&P::Indication) -> bool + Send + Sync + 'static) -> Self {
        Selector { requests: None, indications: Some(Box::new(f)) }
    }

    /// Carries only the requests for which `f` is true (and every indication).
    pub fn requests(f: impl Fn(&P::Request) -> bool + Send + Sync + 'static) -> Self {
        Selector { requests: Some(Box::new(f)), indications: None }
    }

    /// Also filters requests with `f`.
    pub fn and_requests(mut self, f: impl Fn(&P::Request) -> bool + Send + Sync + 'static) -> Self {
        self.requests = Some(Box::new(f));
        self
    }
}

impl<P: Port> Default for Selector<P> {
    fn default() -> Self {
        Self::all()
    }
}

impl<P: Port> fmt::Debug for Selector<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("requests", &self.requests.is_some())
            .field("indications", &self.indications.is_some())
            .finish()
    }
}

/// `repr(C)`, the fields every trigger reads first and together (80 bytes with the reference
/// counts): a trigger over a channel usually reads one cache line of it, not two.
#[repr(C)]
pub(crate) struct ChannelCore<P: Port> {
    connected: AtomicBool,
    pub(crate) required: Arc<RequiredCore<P>>,
    /// `required.owner` and `provided.owner`, copied here so a delivery knows the receiving
    /// cell without first reading its port core, and can fetch both at once (see
    /// `Inbox::push_if`).
    required_owner: Arc<ComponentCell>,
    pub(crate) provided: Arc<ProvidedCore<P>>,
    provided_owner: Arc<ComponentCell>,
    /// `None` for a channel that carries everything (nearly all): one word to check.
    selector: Option<Box<Selector<P>>>,
    /// The channel's service if the provided port is direct. Only the requirer's turns trigger
    /// requests over a channel, so the lock is uncontended.
    direct: Option<Mutex<DirectService<P>>>,
    pub(crate) id: u64,
}

impl<P: Port> ChannelCore<P> {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn accepts_indication(&self, ev: &P::Indication) -> bool {
        self.is_connected()
            && self.selector.as_ref().is_none_or(|s| s.indications.as_ref().is_none_or(|f| f(ev)))
    }

    pub(crate) fn accepts_request(&self, ev: &P::Request) -> bool {
        self.is_connected()
            && self.selector.as_ref().is_none_or(|s| s.requests.as_ref().is_none_or(|f| f(ev)))
    }

    /// Queues an indication at the requiring side.
    pub(crate) fn deliver_indication(&self, ev: P::Indication) {
        self.required.inbox.push_if(&self.required_owner, ev, Some(&self.connected));
    }

    /// Queues a request at the providing side, remembering it came over this channel — or,
    /// for a direct port, serves it right here.
    #[inline]
    pub(crate) fn deliver_request(&self, ev: P::Request) {
        if let Some(serve) = &self.direct {
            (serve.lock())(ev);
            return;
        }
        let env = Envelope { event: ev, origin: self.id };
        self.provided.inbox.push_if(&self.provided_owner, env, Some(&self.connected));
    }

    /// Disconnects; `false` if it already was.
    pub(crate) fn disconnect(&self) -> bool {
        if !self.connected.swap(false, Ordering::AcqRel) {
            return false;
        }
        // Deliveries check `connected` under the receiver's queue lock: after these barriers
        // no delivery over this channel can still be on its way.
        self.provided.inbox.barrier();
        self.required.inbox.barrier();
        self.provided.channels.remove(self.id);
        self.required.channels.remove(self.id);
        true
    }
}

/// Creates and registers a channel. Lock order: provided side, then required side; both are
/// short and never held while waiting for anything else.
pub(crate) fn connect<P: Port>(
    id: u64,
    provided: &Arc<ProvidedCore<P>>,
    required: &Arc<RequiredCore<P>>,
    selector: Selector<P>,
) -> Result<Channel<P>> {
    if provided.owner.is_destroyed() {
        return Err(Error::Destroyed(provided.owner.id()));
    }
    if required.owner.is_destroyed() {
        return Err(Error::Destroyed(required.owner.id()));
    }
    let direct = provided.direct.as_ref().map(|make| {
        let port = ProvidedRef { core: Arc::clone(provided) };
        Mutex::new(make(&port))
    });
    let core = Arc::new(ChannelCore {
        id,
        provided: Arc::clone(provided),
        provided_owner: Arc::clone(&provided.owner),
        required: Arc::clone(required),
        required_owner: Arc::clone(&required.owner),
        connected: AtomicBool::new(true),
        selector: (selector.requests.is_some() || selector.indications.is_some())
            .then(|| Box::new(selector)),
        direct,
    });
    provided.channels.add(Arc::clone(&core));
    required.channels.add(Arc::clone(&core));
    // A component destroyed meanwhile has cleared its lists; undo so nothing dangles.
    if provided.owner.is_destroyed() || required.owner.is_destroyed() {
        core.disconnect();
        let dead = if provided.owner.is_destroyed() { &provided.owner } else { &required.owner };
        return Err(Error::Destroyed(dead.id()));
    }
    Ok(Channel { core })
}

/// Bumped (after the port's own version) whenever any port's channel list changes, in any
/// system of the process. A trigger whose cache saw the current value knows no list changed
/// since, without reading its port's version: that read touched the port core, a cache line
/// of its own on every trigger (a miss per message when thousands of simulated nodes are
/// touched at random). Lists change at wiring time, rarely afterwards.
static TOPOLOGY: AtomicU64 = AtomicU64::new(1);

/// The channels of one port, with a version so triggering code can cache a snapshot and only
/// re-read the list after a connect or disconnect.
pub(crate) struct ChannelSet<P: Port> {
    list: Mutex<Vec<Arc<ChannelCore<P>>>>,
    version: AtomicU64,
}

impl<P: Port> ChannelSet<P> {
    pub(crate) fn new() -> Self {
        ChannelSet { list: Mutex::new(Vec::new()), version: AtomicU64::new(1) }
    }

    fn add(&self, ch: Arc<ChannelCore<P>>) {
        let mut l = self.list.lock();
        l.reserve_exact(1);
        l.push(ch);
        self.bump();
    }

    fn remove(&self, id: u64) {
        let mut l = self.list.lock();
        l.retain(|c| c.id != id);
        self.bump();
    }

    /// Publishes a change of the list: this port's version, then the process-wide one.
    fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
        TOPOLOGY.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub(crate) fn snapshot(&self) -> (u64, Vec<Arc<ChannelCore<P>>>) {
        let l = self.list.lock();
        (self.version.load(Ordering::Acquire), l.clone())
    }

    pub(crate) fn ids(&self) -> Vec<u64> {
        self.list.lock().iter().map(|c| c.id).collect()
    }

    pub(crate) fn edges(&self) -> Vec<(u64, ComponentId, ComponentId)> {
        self.list
            .lock()
            .iter()
            .map(|c| (c.id, c.provided.owner.id(), c.required.owner.id()))
            .collect()
    }

    /// Disconnects every channel (used when the owner is destroyed).
    pub(crate) fn disconnect_all(&self) {
        let all = std::mem::take(&mut *self.list.lock());
        self.bump();
        for ch in all {
            ch.disconnect();
        }
    }
}

/// A cached snapshot of a port's channels, owned by the port handle inside the component.
///
/// A port usually has exactly one channel; that one is held inline, so triggering over it reads
/// no list buffer (one cache line fewer per trigger, which counts when thousands of simulated
/// nodes are touched at random).
pub(crate) struct ChannelCache<P: Port> {
    /// [`TOPOLOGY`] as of the last look at the port's version.
    topology: u64,
    version: u64,
    /// The only channel, when there is exactly one (then `many` is empty).
    one: Option<Arc<ChannelCore<P>>>,
    /// The channels, when there are none or several.
    many: Vec<Arc<ChannelCore<P>>>,
}

impl<P: Port> ChannelCache<P> {
    pub(crate) fn new() -> Self {
        ChannelCache { topology: 0, version: 0, one: None, many: Vec::new() }
    }

    /// The snapshot as a slice (without touching the list buffer when there is one channel).
    #[inline]
    pub(crate) fn channels(&self) -> &[Arc<ChannelCore<P>>] {
        match &self.one {
            Some(one) => std::slice::from_ref(one),
            None => &self.many,
        }
    }

    /// Starts fetching the lone channel (see `Indicator::prefetch`); with several channels,
    /// nothing (a driver prefetching a fan-out would fetch more than it saves).
    #[inline]
    pub(crate) fn prefetch(&self) {
        if let Some(one) = &self.one {
            crate::prefetch::prefetch(Arc::as_ptr(one));
        }
    }

    /// Reads the lone channel and starts fetching its requiring side's queue and component
    /// (see `Indicator::prefetch_receiver`).
    #[inline]
    pub(crate) fn prefetch_receiver(&self) {
        if let Some(one) = &self.one {
            crate::prefetch::prefetch(&one.required.inbox);
            crate::prefetch::prefetch(Arc::as_ptr(&one.required_owner));
        }
    }

    /// Brings the snapshot up to date: one load of [`TOPOLOGY`] when no list changed anywhere,
    /// one more of the port's version when some list did.
    ///
    /// A change made before this call (one that happens-before it) is seen: its bump of
    /// [`TOPOLOGY`] is either later than the value cached here, or was seen by the refresh that
    /// cached it, which then read the port's version after it (acquire), hence the change.
    #[inline]
    pub(crate) fn refresh(&mut self, set: &ChannelSet<P>) -> &[Arc<ChannelCore<P>>] {
        let topology = TOPOLOGY.load(Ordering::Acquire);
        if topology != self.topology {
            self.topology = topology;
            self.resync(set);
        }
        self.channels()
    }

    /// Re-reads the port's list if its version moved.
    #[inline(never)]
    fn resync(&mut self, set: &ChannelSet<P>) {
        if set.version() != self.version {
            let (v, mut l) = set.snapshot();
            self.version = v;
            if l.len() == 1 {
                self.one = l.pop();
                self.many = Vec::new();
            } else {
                self.one = None;
                self.many = l;
            }
        }
    }

    /// The channel with id `id`. Channels are usually listed in id order (ids grow and are
    /// appended as connected), so this is a binary search; concurrent connects can leave the
    /// list slightly out of order, hence the linear fallback. A provider with many requirers —
    /// the timer service serves every component — must not pay O(n) per reply.
    pub(crate) fn find(&mut self, set: &ChannelSet<P>, id: u64) -> Option<&Arc<ChannelCore<P>>> {
        let chans = self.refresh(set);
        match chans.binary_search_by_key(&id, |c| c.id) {
            Ok(i) => Some(&chans[i]),
            Err(_) => chans.iter().find(|c| c.id == id),
        }
    }
}

/// Delivers `ev` to every channel `accept` admits: clones for all but the last, moves into the
/// last. Returns how many receivers got it.
#[inline]
pub(crate) fn fan_out<P: Port, E: Clone>(
    channels: &[Arc<ChannelCore<P>>],
    ev: E,
    accept: impl Fn(&ChannelCore<P>, &E) -> bool,
    deliver: impl Fn(&ChannelCore<P>, E),
) -> usize {
    let mut pending: Option<&ChannelCore<P>> = None;
    let mut n = 0;
    for ch in channels {
        if accept(ch, &ev) {
            if let Some(prev) = pending.replace(ch) {
                deliver(prev, ev.clone());
            }
            n += 1;
        }
    }
    if let Some(last) = pending {
        deliver(last, ev);
    }
    n
}

/// A handle to a connected channel. Dropping the handle does *not* disconnect the channel.
pub struct Channel<P: Port> {
    core: Arc<ChannelCore<P>>,
}

impl<P: Port> Channel<P> {
    /// The channel's system-unique id.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// Whether the channel is still connected.
    pub fn is_connected(&self) -> bool {
        self.core.is_connected()
    }

    /// Disconnects the channel. Events already queued at a receiver are still delivered; once
    /// this returns, nothing more is queued over the channel.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if it was already disconnected (also by the destruction of one
    /// of its ends).
    pub fn disconnect(&self) -> Result<()> {
        if self.core.disconnect() {
            Ok(())
        } else {
            Err(Error::Disconnected(self.core.id))
        }
    }
}

impl<P: Port> Clone for Channel<P> {
    fn clone(&self) -> Self {
        Channel { core: Arc::clone(&self.core) }
    }
}

impl<P: Port> fmt::Debug for Channel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.core.id)
            .field("port", &std::any::type_name::<P>())
            .field("provider", &self.core.provided.owner.id())
            .field("requirer", &self.core.required.owner.id())
            .field("connected", &self.is_connected())
            .finish()
    }
}
