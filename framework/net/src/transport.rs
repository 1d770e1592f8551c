//! [`TcpNetwork`]: a node's transport — the listener, the I/O thread, the node component and
//! one adapter component per protocol.

use std::any::TypeId;
use std::collections::hash_map::{Entry, RandomState};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use selfman_core::{
    ComponentRef, Error, Host, Message, Network, NodeAddr, NodeComponent, NodeId, ProtocolId,
    ProvidedRef, System,
};

use crate::adapter::{InboundSink, ProtocolAdapter, Sink};
use crate::codec::{BincodeCodec, Codec};
use crate::config::NetConfig;
use crate::error::NetError;
use crate::io::{IoLoop, LISTENER, WAKER};
use crate::registry;
use crate::shared::{ProtocolEntry, Shared};
use crate::stats::NetStats;

/// A node's network over TCP: provides a `Network<M>` port per protocol, multiplexed over one
/// connection per peer node, served by one I/O thread.
///
/// Created with [`TcpNetwork::start`]; implements [`Host`], so a node's wiring code gets its
/// ports from it exactly as it would from the simulator. Shut down with
/// [`shutdown`](TcpNetwork::shutdown) or by dropping it.
pub struct TcpNetwork {
    shared: Arc<Shared>,
    system: System,
    node: ComponentRef,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl TcpNetwork {
    /// Binds `config.listen`, starts the I/O thread, and creates and starts the node's parent
    /// component under the system's root. Blocks until that component is active: not for
    /// handlers.
    ///
    /// # Errors
    ///
    /// [`NetError::Config`] for an invalid configuration, [`NetError::Io`] if the address
    /// cannot be bound or the thread not spawned, [`NetError::System`] if the system refuses
    /// the node component.
    pub fn start(system: &System, config: NetConfig) -> Result<TcpNetwork, NetError> {
        config.validate()?;
        let mut listener = mio::net::TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let poll = mio::Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, mio::Interest::READABLE)?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let id = config.node_id.unwrap_or_else(fresh_id);
        let local = NodeAddr::new(addr, id);
        let node = system.create(NodeComponent::default)?;
        // Wait until the node is active, so that components created under it right away are
        // not caught by its start cascade (their own `start` would then fail).
        system.start_and_wait(&node, Duration::from_secs(10))?;
        let shared = Arc::new(Shared::new(local, config, waker));
        let io = IoLoop::new(Arc::clone(&shared), poll, listener);
        let thread = std::thread::Builder::new()
            .name(format!("selfman-net-{}", addr.port()))
            .spawn(move || io.run());
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let _ = system.kill(&node);
                return Err(e.into());
            }
        };
        registry::register(&shared);
        tracing::debug!(%local, "network started");
        Ok(TcpNetwork {
            shared,
            system: system.clone(),
            node: node.untyped().clone(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// This node's address: the bound socket address (port 0 resolved) and its id.
    pub fn local(&self) -> NodeAddr {
        self.shared.local
    }

    /// The configuration in force.
    pub fn config(&self) -> &NetConfig {
        &self.shared.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetStats {
        self.shared.stats.snapshot()
    }

    /// A cheap handle that reads the counters from anywhere, for as long as it is kept (even
    /// after the transport shut down: then the last values).
    pub fn stats_handle(&self) -> impl Fn() -> NetStats + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.stats.snapshot()
    }

    /// Whether the transport runs (not shut down).
    pub fn is_running(&self) -> bool {
        self.shared.is_alive()
    }

    /// The `Network<M>` port of protocol `protocol`, with `codec` for its messages; created on
    /// first use (an adapter component under [`Host::node`], started). Later calls with the
    /// same name and type return the same port (and keep the first codec).
    ///
    /// # Errors
    ///
    /// [`Error::Network`] if the name is registered with another message type, or another name
    /// has the same [`ProtocolId`]; [`Error::ShutDown`] after shutdown; errors creating the
    /// component.
    pub fn network_with_codec<M, C>(
        &self,
        protocol: &str,
        codec: C,
    ) -> selfman_core::Result<ProvidedRef<Network<M>>>
    where
        M: Message,
        C: Codec<M>,
    {
        if !self.shared.is_alive() {
            return Err(Error::ShutDown);
        }
        let id = ProtocolId::of(protocol);
        let mut protocols = self.shared.protocols.lock();
        let entry = match protocols.entry(id) {
            Entry::Occupied(e) => {
                let e = e.get();
                if e.name != protocol {
                    return Err(Error::Network(format!(
                        "protocol names {:?} and {:?} have the same id {:08x}",
                        e.name, protocol, id.0
                    )));
                }
                if e.type_id != TypeId::of::<M>() {
                    return Err(Error::Network(format!(
                        "protocol {:?} is registered with message type {}, not {}",
                        protocol,
                        e.type_name,
                        std::any::type_name::<M>()
                    )));
                }
                return e.port.downcast_ref::<ProvidedRef<Network<M>>>().cloned().ok_or_else(
                    || Error::Network(format!("protocol {protocol:?}: port of an unexpected type")),
                );
            }
            Entry::Vacant(v) => v,
        };
        let codec: Arc<dyn Codec<M>> = Arc::new(codec);
        let (shared, c) = (Arc::clone(&self.shared), Arc::clone(&codec));
        let adapter = self.system.create_child(&self.node, move || {
            ProtocolAdapter::new(Arc::clone(&shared), id, Arc::clone(&c))
        })?;
        let port = adapter.provided::<Network<M>>()?;
        match self.system.start(&adapter) {
            // already started by a start of the node still cascading: fine
            Ok(()) | Err(Error::InvalidLifecycle { .. }) => {}
            Err(e) => return Err(e),
        }
        let sink_port = port.clone();
        entry.insert(ProtocolEntry {
            name: protocol.to_owned(),
            type_id: TypeId::of::<M>(),
            type_name: std::any::type_name::<M>(),
            port: Box::new(port.clone()),
            sink: Box::new(move || {
                Box::new(Sink { indicator: sink_port.indicator(), codec: Arc::clone(&codec) })
                    as Box<dyn InboundSink>
            }),
        });
        self.shared.protocols_version.fetch_add(1, Ordering::AcqRel);
        drop(protocols);
        self.shared.wake_forced(); // let the I/O thread pick up the new sink
        Ok(port)
    }

    /// Stops the transport: closes every connection and the listening socket, joins the I/O
    /// thread, and kills the node component (and so every component created under it).
    /// Idempotent; also done on drop.
    pub fn shutdown(&self) {
        let Some(thread) = self.thread.lock().take() else { return };
        self.shared.alive.store(false, Ordering::Release);
        registry::unregister(&self.shared);
        self.shared.wake_forced();
        if thread.join().is_err() {
            tracing::error!(local = %self.shared.local, "the network I/O thread panicked");
        }
        let _ = self.system.kill(&self.node);
        tracing::debug!(local = %self.shared.local, "network stopped");
    }
}

impl Drop for TcpNetwork {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Host for TcpNetwork {
    fn system(&self) -> &System {
        &self.system
    }

    fn node(&self) -> &ComponentRef {
        &self.node
    }

    fn local(&self) -> NodeAddr {
        self.shared.local
    }

    fn network<M: Message>(&self, protocol: &str) -> selfman_core::Result<ProvidedRef<Network<M>>> {
        self.network_with_codec(protocol, BincodeCodec::<M>::new())
    }
}

impl fmt::Debug for TcpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpNetwork")
            .field("local", &self.shared.local)
            .field("running", &self.is_running())
            .finish()
    }
}

/// A fresh, random, non-zero node id.
pub(crate) fn fresh_id() -> NodeId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        let v = h.finish();
        if v != 0 {
            return NodeId(v);
        }
    }
}
