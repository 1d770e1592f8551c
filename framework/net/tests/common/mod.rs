//! Test support for the selfman-net integration tests: a recording component, configs with
//! short timeouts, waiting helpers and a raw (hand-rolled) peer.
#![allow(dead_code, unreachable_pub, unused_imports)] // each test binary uses part of it

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use selfman_core::{
    CloseReason, Component, ComponentDefinition, Delivery, Handled, Host, LinkStatus, Message,
    NetIndication, NetRequest, Network, NodeAddr, NodeId, PeerStatus, ProtocolId, ProvidedRef,
    Required, Setup,
};
use selfman_net::frame::{self, Frame, Hello};
use selfman_net::{NetConfig, TcpNetwork};
use selfman_runtime::Runtime;

pub use selfman_core::testkit::{eventually, WAIT};

pub fn runtime() -> Runtime {
    Runtime::builder().workers(2).build()
}

/// Loopback, TCP only, short timeouts.
pub fn config() -> NetConfig {
    NetConfig::default()
        .local_delivery(false)
        .handshake_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
        .reconnect_backoff_min(Duration::from_millis(20))
        .reconnect_backoff_max(Duration::from_millis(200))
}

/// Forwards everything its `Network<M>` port indicates to a channel.
pub struct Recorder<M: Message> {
    net: Required<Network<M>>,
    out: Sender<NetIndication<M>>,
}

impl<M: Message> Recorder<M> {
    fn on_net(&mut self, ev: NetIndication<M>) -> Handled {
        let _ = self.out.send(ev);
        Ok(())
    }
}

impl<M: Message> ComponentDefinition for Recorder<M> {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.net, Self::on_net);
    }
}

/// A protocol endpoint in a test: the port (to inject sends) and what arrives on it.
pub struct Endpoint<M: Message> {
    pub port: ProvidedRef<Network<M>>,
    pub rx: Receiver<NetIndication<M>>,
    pub component: Component<Recorder<M>>,
    pub local: NodeAddr,
    /// Status events skipped by `recv`, for later `status` calls.
    pub skipped: std::cell::RefCell<Vec<PeerStatus>>,
}

/// Registers `protocol` on `net` with a recorder connected to it (started unless `start` is
/// false: a passive recorder queues what it is given).
pub fn endpoint_with<M: Message>(net: &TcpNetwork, protocol: &str, start: bool) -> Endpoint<M> {
    let port = net.network::<M>(protocol).expect("register protocol");
    let (tx, rx) = mpsc::channel();
    let component = net
        .create(move || Recorder { net: Required::new(), out: tx.clone() })
        .expect("create recorder");
    net.system().connect(&port, &component.required().unwrap()).unwrap();
    if start {
        net.system().start_and_wait(&component, WAIT).unwrap();
    }
    Endpoint { port, rx, component, local: net.local(), skipped: Default::default() }
}

pub fn endpoint<M: Message>(net: &TcpNetwork, protocol: &str) -> Endpoint<M> {
    endpoint_with(net, protocol, true)
}

impl<M: Message> Endpoint<M> {
    pub fn send(&self, to: NodeAddr, msg: M) {
        self.port.request(NetRequest::Send { to, msg }).expect("adapter alive");
    }

    /// The next delivery (skipping status events), or panics after `WAIT`.
    pub fn recv(&self) -> Delivery<M> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(NetIndication::Deliver(d)) => return d,
                Ok(NetIndication::Status(s)) => self.skipped.borrow_mut().push(s),
                Err(e) => panic!("no delivery within {WAIT:?}: {e}"),
            }
        }
    }

    /// Waits for a status matching `pred` (skipping everything else).
    pub fn status(&self, what: &str, pred: impl Fn(&PeerStatus) -> bool) -> PeerStatus {
        let deadline = Instant::now() + WAIT;
        let mut skipped = self.skipped.borrow_mut();
        if let Some(i) = skipped.iter().position(&pred) {
            return skipped.remove(i);
        }
        let mut seen = skipped.clone();
        drop(skipped);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(NetIndication::Status(s)) if pred(&s) => return s,
                Ok(NetIndication::Status(s)) => seen.push(s),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no status {what} within {WAIT:?}; saw {seen:?}")
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Every delivery that arrives within `d`.
    pub fn drain_for(&self, d: Duration) -> Vec<NetIndication<M>> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        while let Ok(ev) = self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(ev);
        }
        out
    }
}

/// Checks that `a` and `b` still exchange messages both ways.
pub fn assert_link_works(a: &Endpoint<u64>, b: &Endpoint<u64>, tag: u64) {
    a.send(b.local, tag);
    assert_eq!(b.recv().msg, tag);
    b.send(a.local, tag + 1);
    assert_eq!(a.recv().msg, tag + 1);
}

/// A status about a raw peer connecting from `from` (whose id the node may not know).
pub fn about(from: SocketAddr) -> impl Fn(&PeerStatus) -> bool {
    move |s| s.peer.addr == from
}

pub fn is_unreachable(s: &PeerStatus, f: impl Fn(&CloseReason) -> bool) -> bool {
    matches!(&s.status, LinkStatus::Unreachable(r) if f(r))
}

pub fn is_lost(s: &PeerStatus, f: impl Fn(&CloseReason) -> bool) -> bool {
    matches!(&s.status, LinkStatus::Lost(r) if f(r))
}

/// A hand-rolled peer over a plain socket, for feeding a node arbitrary bytes.
pub struct RawPeer {
    pub stream: TcpStream,
}

/// The address a raw peer claims: port 1 sorts before any real listener on 127.0.0.1, so the
/// raw peer is the one that decides (it sends `Accept`).
pub fn raw_addr(id: u64) -> NodeAddr {
    NodeAddr::new("127.0.0.1:1".parse().unwrap(), NodeId(id))
}

pub fn hello(cluster: &str, version: u16, id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_hello(
        &Hello { version, cluster: cluster.into(), from: raw_addr(id), expect: NodeId::UNKNOWN },
        &mut out,
    )
    .unwrap();
    out
}

impl RawPeer {
    pub fn connect(to: &TcpNetwork) -> RawPeer {
        let stream = TcpStream::connect(to.local().addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawPeer { stream }
    }

    pub fn local(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Completes a handshake as node `raw_addr(id)` of cluster "selfman" (as decider).
    pub fn handshake(&mut self, id: u64) {
        let mut out = hello("selfman", frame::PROTOCOL_VERSION, id);
        Frame::Accept.encode(&mut out).unwrap();
        self.send(&out).unwrap();
    }

    pub fn data(protocol: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Frame::Data { protocol: ProtocolId::of(protocol), payload }.encode(&mut out).unwrap();
        out
    }
}

/// Captures `WARN` events of the whole process (installed once) so tests can check that bad
/// input is logged.
pub mod warnings {
    use std::fmt::Write as _;
    use std::sync::{Mutex, OnceLock};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;

    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, m: &Metadata<'_>) -> bool {
            *m.level() <= Level::WARN
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, e: &Event<'_>) {
            let mut line = Line(String::new());
            e.record(&mut line);
            LOG.lock().unwrap().push(line.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Installs the capture (idempotent).
    pub fn install() {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            let _ = tracing::subscriber::set_global_default(Capture);
        });
    }

    /// Whether a warning containing every one of `parts` was logged.
    pub fn logged(parts: &[&str]) -> bool {
        LOG.lock().unwrap().iter().any(|l| parts.iter().all(|p| l.contains(p)))
    }
}
