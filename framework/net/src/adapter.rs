//! The per-protocol adapter: the component that provides `Network<M>` for one protocol.
//!
//! Its request handler runs on the component runtime's worker threads and does the sending
//! work: it serialises each message (once, into a reused scratch buffer), frames it and appends
//! it to the destination's [`PeerQueue`] — or, for a node in the same process, hands the value
//! to that node's adapter port without serialising. Routes are cached per destination, so the
//! common case is one hash lookup, one encode, one short critical section.
//!
//! Inbound, the I/O thread decodes frames and triggers deliveries through an [`InboundSink`]
//! (an [`Indicator`] on this adapter's port), so a received message reaches the protocol
//! component in one hop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use selfman_core::{
    ComponentDefinition, Credit, Delivery, Indicator, Message, NetIndication, NetRequest, Network,
    NodeAddr, NodeId, PeerStatus, ProtocolId, Provided, Setup,
};

use crate::codec::{Codec, CodecError};
use crate::frame;
use crate::registry;
use crate::shared::{PeerQueue, Push, RateLimit, Shared};
use crate::stats::add;

/// Routes cached per adapter before the cache is reset (bounds memory under peer churn).
const MAX_ROUTES: usize = 4096;
/// A scratch buffer grown past this by one large message is released afterwards.
const SCRATCH_KEEP: usize = 1 << 20;

/// Where the I/O thread delivers one protocol's inbound traffic.
pub(crate) trait InboundSink: Send {
    /// Decodes `payload` and delivers it as sent by `from`, holding `credit`.
    fn deliver(&mut self, from: NodeAddr, payload: &[u8], credit: Credit)
        -> Result<(), CodecError>;
    /// Reports a connection status change.
    fn status(&mut self, status: PeerStatus);
}

pub(crate) struct Sink<M: Message> {
    pub(crate) indicator: Indicator<Network<M>>,
    pub(crate) codec: Arc<dyn Codec<M>>,
}

impl<M: Message> InboundSink for Sink<M> {
    #[inline]
    fn deliver(
        &mut self,
        from: NodeAddr,
        payload: &[u8],
        credit: Credit,
    ) -> Result<(), CodecError> {
        let msg = self.codec.decode(payload)?;
        self.indicator.trigger(NetIndication::Deliver(Delivery::with_credit(from, msg, credit)));
        Ok(())
    }

    fn status(&mut self, status: PeerStatus) {
        self.indicator.trigger(NetIndication::Status(status));
    }
}

enum Route<M: Message> {
    Remote(Arc<PeerQueue>),
    Local { alive: Arc<AtomicBool>, indicator: Indicator<Network<M>> },
}

/// The component providing `Network<M>` for one protocol of one transport.
/// The sending side of one channel to the adapter's port: every protocol component connected
/// to the port gets its own (its own route cache and scratch buffer), and it runs inside that
/// component's turns — no lock shared with other senders, no scheduling hop.
struct Sender<M: Message> {
    /// Delivers messages this node sends to itself.
    port: Indicator<Network<M>>,
    protocol: ProtocolId,
    shared: Arc<Shared>,
    codec: Arc<dyn Codec<M>>,
    routes: HashMap<NodeAddr, Route<M>>,
    scratch: Vec<u8>,
    full_warn: RateLimit,
    other_warn: RateLimit,
}

impl<M: Message> Sender<M> {
    fn new(
        port: Indicator<Network<M>>,
        shared: Arc<Shared>,
        protocol: ProtocolId,
        codec: Arc<dyn Codec<M>>,
    ) -> Self {
        Sender {
            port,
            protocol,
            shared,
            codec,
            routes: HashMap::new(),
            scratch: Vec::new(),
            full_warn: RateLimit::new(Duration::from_secs(1)),
            other_warn: RateLimit::new(Duration::from_secs(1)),
        }
    }

    fn on_request(&mut self, req: NetRequest<M>) {
        match req {
            NetRequest::Send { to, msg } => self.send(to, msg),
            other => {
                tracing::debug!(request = ?other, "request not supported by the TCP network");
            }
        }
    }

    #[inline]
    fn send(&mut self, to: NodeAddr, msg: M) {
        let local = self.shared.local;
        if to == local || (to.id == NodeId::UNKNOWN && to.addr == local.addr) {
            add(&self.shared.stats.local_deliveries, 1);
            self.port.trigger(NetIndication::Deliver(Delivery::new(local, msg)));
            return;
        }
        let route = match self.routes.get_mut(&to) {
            Some(Route::Local { alive, indicator }) if alive.load(Ordering::Acquire) => {
                add(&self.shared.stats.local_deliveries, 1);
                indicator.trigger(NetIndication::Deliver(Delivery::new(local, msg)));
                return;
            }
            Some(Route::Remote(q)) => Arc::clone(q),
            _ => match self.resolve(to) {
                Some(Route::Local { alive, mut indicator }) => {
                    add(&self.shared.stats.local_deliveries, 1);
                    indicator.trigger(NetIndication::Deliver(Delivery::new(local, msg)));
                    self.cache(to, Route::Local { alive, indicator });
                    return;
                }
                Some(Route::Remote(q)) => {
                    self.cache(to, Route::Remote(Arc::clone(&q)));
                    q
                }
                None => {
                    add(&self.shared.stats.dropped_unknown_protocol, 1);
                    if let Some(n) = self.other_warn.check() {
                        tracing::warn!(%to, protocol = self.protocol.0, suppressed = n,
                            "dropping a message: the node in this process runs no such protocol");
                    }
                    return;
                }
            },
        };
        self.send_remote(route, to, &msg);
    }

    fn cache(&mut self, to: NodeAddr, route: Route<M>) {
        if self.routes.len() >= MAX_ROUTES {
            self.routes.clear();
        }
        self.routes.insert(to, route);
    }

    /// Finds the route to `to`: a same-process port, or the peer's queue. `None` if `to` is in
    /// this process but does not run this protocol (with this message type).
    ///
    /// `(addr, NodeId::UNKNOWN)` matches any live transport of this process at `addr` (the
    /// route is dropped with it, so a later send finds its successor); otherwise it gets its own
    /// queue, which the I/O thread serves through whichever incarnation answers at `addr`.
    fn resolve(&self, to: NodeAddr) -> Option<Route<M>> {
        if self.shared.config.local_delivery {
            if let Some(dest) = registry::lookup(to.addr) {
                if (to.id == NodeId::UNKNOWN || dest.local.id == to.id) && dest.is_alive() {
                    let port = dest.port_for::<M>(self.protocol)?;
                    return Some(Route::Local {
                        alive: Arc::clone(&dest.alive),
                        indicator: port.indicator(),
                    });
                }
            }
        }
        Some(Route::Remote(self.shared.queue_for(to)))
    }

    fn send_remote(&mut self, mut q: Arc<PeerQueue>, to: NodeAddr, msg: &M) {
        let stats = &self.shared.stats;
        self.scratch.clear();
        let start = frame::begin_data(&mut self.scratch, self.protocol);
        let encoded =
            self.codec.encode(msg, &mut self.scratch).map_err(|e| e.to_string()).and_then(|()| {
                frame::end_data(&mut self.scratch, start, self.shared.config.max_frame_bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(why) = encoded {
            add(&stats.dropped_unencodable, 1);
            if let Some(n) = self.other_warn.check() {
                tracing::warn!(%to, protocol = self.protocol.0, error = %why, suppressed = n,
                    "dropping a message that cannot be sent");
            }
            self.shrink_scratch();
            return;
        }
        let limit = self.shared.config.outbound_queue_bytes;
        loop {
            match q.push(&self.scratch, limit) {
                Push::Queued { notify } => {
                    if notify {
                        self.shared.announce(&q);
                    }
                    break;
                }
                Push::Sent { notify } => {
                    add(&stats.direct_frames, 1);
                    add(&stats.direct_bytes, self.scratch.len() as u64);
                    if notify {
                        self.shared.announce(&q);
                    }
                    break;
                }
                Push::Lost => {
                    add(&stats.dropped_unreachable, 1);
                    break;
                }
                Push::Full => {
                    add(&stats.dropped_queue_full, 1);
                    if let Some(n) = self.full_warn.check() {
                        tracing::warn!(%to, limit, suppressed = n,
                            "outbound queue full: dropping the new message");
                    }
                    break;
                }
                Push::Retired => {
                    q = self.shared.queue_for(to);
                    self.routes.insert(to, Route::Remote(Arc::clone(&q)));
                }
            }
        }
        self.shrink_scratch();
    }

    fn shrink_scratch(&mut self) {
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }
}

/// The component that provides `Network<M>` for one protocol. Its port is direct (see
/// `Setup::provide_direct`): each connected protocol component sends through a [`Sender`] of
/// its own, inside its own turns.
pub(crate) struct ProtocolAdapter<M: Message> {
    port: Provided<Network<M>>,
    protocol: ProtocolId,
    shared: Arc<Shared>,
    codec: Arc<dyn Codec<M>>,
}

impl<M: Message> ProtocolAdapter<M> {
    pub(crate) fn new(shared: Arc<Shared>, protocol: ProtocolId, codec: Arc<dyn Codec<M>>) -> Self {
        ProtocolAdapter { port: Provided::new(), protocol, shared, codec }
    }
}

impl<M: Message> ComponentDefinition for ProtocolAdapter<M> {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        let (shared, protocol, codec) =
            (Arc::clone(&self.shared), self.protocol, Arc::clone(&self.codec));
        setup.provide_direct(
            |c| &mut c.port,
            move |port| {
                let mut sender = Sender::new(
                    port.indicator(),
                    Arc::clone(&shared),
                    protocol,
                    Arc::clone(&codec),
                );
                move |req| sender.on_request(req)
            },
        );
    }
}
