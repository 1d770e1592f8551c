//! The I/O thread: one mio event loop per transport owning the listener and every connection.
//!
//! Invariants:
//! * At most one *active* connection per peer node. Both nodes of a pair agree which one: the
//!   node with the smaller [`NodeAddr`] (the *decider*) activates the first connection whose
//!   handshake completes and says so with an `Accept` frame; it closes any other connection to
//!   that peer right after its handshake. The other node sends data only on a connection it got
//!   `Accept` on. Since nothing but handshake frames ever travels on a connection that is
//!   closed as redundant, simultaneous dials lose no message.
//! * Data frames are only read from active connections; anything else is a protocol violation
//!   and closes the connection.
//! * Every connection's buffered inbound bytes are bounded by one maximal frame (the decoder),
//!   its undelivered-but-unhandled bytes by the inbound budget (checked after every read).
//! * Status events: `Connected` when a connection becomes active; `Lost` when an active one
//!   closes; `Unreachable` when a dial fails, or when a connection that never became active is
//!   closed for bad input. Losing or failing to reach a peer drops what was queued for it.
//! * Messages to `(addr, NodeId::UNKNOWN)` ("whoever runs at `addr`") are queued under that
//!   key, which never owns a connection of its own once a handshake completes: while some
//!   connection to an incarnation at `addr` is up (`by_addr`), the I/O thread moves their frames
//!   to that incarnation's queue, so they share its one connection; otherwise it dials `addr`
//!   expecting [`NodeId::UNKNOWN`], and the handshake names the incarnation whose queue (and
//!   connection) they join. Frames queued for a specific id are never moved.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use selfman_core::{CloseReason, Credit, LinkStatus, NodeAddr, NodeId, PeerStatus, ProtocolId};

use crate::adapter::InboundSink;
use crate::frame::{self, Frame, FrameDecoder, Hello, DATA_HEADER, HELLO_MAX_BYTES};
use crate::secure::{Handshake, LinkError, Opener, Sealer};
use crate::shared::{PeerQueue, RateLimit, Shared};
use crate::stats::{add, bump, drop_by};

pub(crate) const LISTENER: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Reads per readiness event before other connections get a turn.
const READS_PER_TURN: usize = 16;
/// Whether a short read ends a connection's read turn (see `IoLoop::read`): only where mio's
/// readiness is Linux's edge-triggered epoll.
const SHORT_READ_ENDS_TURN: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// A socket read that records how many bytes it offered to take.
struct Offered<'a> {
    stream: &'a TcpStream,
    offered: &'a mut usize,
}

impl Read for Offered<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        *self.offered = buf.len();
        (&*self.stream).read(buf)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Outbound TCP connect in progress.
    Connecting,
    /// Secured links only: the Noise handshake is under way (nothing else is read or sent).
    Securing,
    /// Our hello is sent (or queued); waiting for the peer's.
    Handshaking,
    /// Hellos exchanged; waiting for the decider's `Accept`.
    Pending,
    /// Carries data.
    Active,
}

struct Conn {
    /// Shared with the peer's queue while active, for senders' direct writes.
    stream: Arc<TcpStream>,
    remote: SocketAddr,
    /// The node we dialed (outbound connections).
    target: Option<NodeAddr>,
    /// The peer's key in the peer table, once known (the target for outbound connections).
    peer: Option<NodeAddr>,
    phase: Phase,
    decoder: FrameDecoder,
    wbuf: Vec<u8>,
    wpos: usize,
    credit: Arc<AtomicUsize>,
    deadline: Option<Instant>,
    last_read: Instant,
    /// On a secured link: the handshake, then the keys.
    secure: Option<Secure>,
}

/// A secured connection's state.
enum Secure {
    Handshake(Box<Handshake>),
    Open {
        opener: Opener,
        /// Shared with the peer's queue while active (senders seal their direct writes).
        sealer: Arc<parking_lot::Mutex<Sealer>>,
    },
}

/// The prologue both sides of a secure handshake bind: a peer speaking another version of the
/// link protocol fails authentication instead of misreading frames.
fn prologue() -> Vec<u8> {
    let mut p = b"selfman-net/".to_vec();
    p.extend_from_slice(&frame::PROTOCOL_VERSION.to_be_bytes());
    p
}

/// Appends `plain` (frame bytes) to the connection's write buffer, sealed on a secured link.
fn put(c: &mut Conn, plain: &[u8]) -> Result<(), LinkError> {
    match &c.secure {
        Some(Secure::Open { sealer, .. }) => sealer.lock().seal(plain, &mut c.wbuf),
        Some(Secure::Handshake(_)) => {
            debug_assert!(false, "frames are not written before the handshake completes");
            Err(LinkError::Malformed("frame before the handshake completed"))
        }
        None => {
            c.wbuf.extend_from_slice(plain);
            Ok(())
        }
    }
}

fn link_closing(e: &LinkError) -> Closing {
    match e {
        LinkError::Auth | LinkError::Malformed(_) => CloseReason::Handshake(e.to_string()).into(),
        LinkError::Record | LinkError::ShortRecord(_) | LinkError::Exhausted => {
            CloseReason::BadFrame(e.to_string()).into()
        }
    }
}

struct Peer {
    queue: Arc<PeerQueue>,
    active: Option<usize>,
    dialing: Option<usize>,
    pending: Vec<usize>,
    failures: u32,
    next_attempt: Instant,
}

/// Why and how a connection is closed.
struct Closing {
    reason: CloseReason,
    /// No status event (a redundant connection, an expected close).
    quiet: bool,
}

impl From<CloseReason> for Closing {
    fn from(reason: CloseReason) -> Closing {
        Closing { reason, quiet: false }
    }
}

/// Why reading a connection failed.
enum Fail {
    Io(io::Error),
    Link(LinkError),
}

fn is_bad_input(r: &CloseReason) -> bool {
    matches!(
        r,
        CloseReason::BadFrame(_)
            | CloseReason::Handshake(_)
            | CloseReason::Idle
            | CloseReason::Overloaded
    )
}

pub(crate) struct IoLoop {
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    peers: HashMap<NodeAddr, Peer>,
    /// The incarnation last met at each address (by a completed handshake), for messages to
    /// `(addr, NodeId::UNKNOWN)`; checked against `peers` before use.
    by_addr: HashMap<SocketAddr, NodeId>,
    sinks: HashMap<ProtocolId, Box<dyn InboundSink>>,
    sinks_version: u64,
    again: Vec<usize>,
    ready: Vec<Arc<PeerQueue>>,
    tick: Duration,
    next_tick: Option<Instant>,
    accept_again: bool,
    unknown_warn: RateLimit,
    /// Secured links: raw bytes read, before they are opened.
    rbuf: Vec<u8>,
    /// Secured links: plaintext taken from a queue, before it is sealed.
    plain: Vec<u8>,
    /// Plain links: `take_into`'s (always empty) sealed output.
    no_sealed: Vec<u8>,
}

impl IoLoop {
    pub(crate) fn new(shared: Arc<Shared>, poll: Poll, listener: TcpListener) -> IoLoop {
        let c = &shared.config;
        let mut tick = c.handshake_timeout.min(c.connect_timeout).min(c.reconnect_backoff_min);
        if let Some(idle) = c.idle_timeout {
            tick = tick.min(idle);
        }
        let tick = (tick / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
        IoLoop {
            shared,
            poll,
            listener: Some(listener),
            conns: Vec::new(),
            free: Vec::new(),
            peers: HashMap::new(),
            by_addr: HashMap::new(),
            sinks: HashMap::new(),
            sinks_version: u64::MAX,
            again: Vec::new(),
            ready: Vec::new(),
            tick,
            next_tick: None,
            accept_again: false,
            unknown_warn: RateLimit::new(Duration::from_secs(1)),
            rbuf: Vec::new(),
            plain: Vec::new(),
            no_sealed: Vec::new(),
        }
    }

    /// Runs until the transport shuts down; then closes every socket.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        // After the last event, poll without blocking for `io_spin` (yielding the core between
        // polls) before sleeping in the OS: see `NetConfig::io_spin`.
        let spin = self.shared.config.io_spin;
        let mut last_busy = Instant::now();
        loop {
            let timeout = if !self.again.is_empty() {
                Some(Duration::ZERO)
            } else if !spin.is_zero() && last_busy.elapsed() < spin {
                std::thread::yield_now();
                Some(Duration::ZERO)
            } else {
                self.next_tick.map(|t| t.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "network poll failed; the transport stops");
                    break;
                }
            }
            if !self.shared.is_alive() {
                break;
            }
            if !events.is_empty() {
                last_busy = Instant::now();
            }
            self.refresh_sinks();
            let mut woke = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => woke = true,
                    Token(t) => {
                        let i = t - FIRST_CONN;
                        let Some(c) = self.conns.get(i).and_then(Option::as_ref) else { continue };
                        if c.phase == Phase::Connecting {
                            self.finish_connect(i);
                            continue;
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            // a closing or failing socket is read to its end; a live one until
                            // a read comes back short (see `read`)
                            self.read(i, ev.is_read_closed() || ev.is_error());
                        }
                        if ev.is_writable() && self.conns[i].is_some() {
                            self.flush(i);
                        }
                    }
                }
            }
            if woke {
                self.shared.clear_wake();
            }
            self.drain_ready();
            if !self.again.is_empty() {
                let again = std::mem::take(&mut self.again);
                for i in again {
                    if self.conns[i].is_some() {
                        self.read(i, false);
                    }
                }
            }
            if self.next_tick.is_some_and(|t| Instant::now() >= t) {
                self.on_tick();
            }
        }
        self.close_all();
    }

    fn arm_tick(&mut self) {
        if self.next_tick.is_none() {
            self.next_tick = Some(Instant::now() + self.tick);
        }
    }

    fn refresh_sinks(&mut self) {
        let v = self.shared.protocols_version.load(Ordering::Acquire);
        if v == self.sinks_version {
            return;
        }
        let protocols = self.shared.protocols.lock();
        self.sinks = protocols.iter().map(|(id, e)| (*id, (e.sink)())).collect();
        self.sinks_version = v;
    }

    fn emit(&mut self, peer: NodeAddr, status: LinkStatus) {
        for sink in self.sinks.values_mut() {
            sink.status(PeerStatus { peer, status: status.clone() });
        }
    }

    fn insert(&mut self, conn: Conn) -> io::Result<usize> {
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut conn = conn;
        let stream = Arc::get_mut(&mut conn.stream).expect("a new connection is not shared");
        if let Err(e) = self.poll.registry().register(
            stream,
            Token(i + FIRST_CONN),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free.push(i);
            return Err(e);
        }
        self.conns[i] = Some(conn);
        Ok(i)
    }

    fn new_conn(&self, stream: TcpStream, remote: SocketAddr, target: Option<NodeAddr>) -> Conn {
        let now = Instant::now();
        let c = &self.shared.config;
        let (phase, timeout) = match target {
            Some(_) => (Phase::Connecting, c.connect_timeout),
            None if c.secret.is_some() => (Phase::Securing, c.handshake_timeout),
            None => (Phase::Handshaking, c.handshake_timeout),
        };
        let mut wbuf = Vec::new();
        // the responder's side starts now; the dialer's once connected
        let secure = match (&c.secret, target) {
            (Some(secret), None) => Some(Secure::Handshake(Box::new(Handshake::new(
                secret,
                &prologue(),
                false,
                &mut wbuf,
            )))),
            _ => None,
        };
        Conn {
            stream: Arc::new(stream),
            remote,
            target,
            peer: target,
            phase,
            decoder: FrameDecoder::with_buffer(HELLO_MAX_BYTES, c.read_buffer_bytes),
            wbuf,
            wpos: 0,
            credit: Arc::new(AtomicUsize::new(0)),
            deadline: Some(now + timeout),
            last_read: now,
            secure,
        }
    }

    fn hello(&self, expect: NodeId) -> Hello {
        Hello {
            version: frame::PROTOCOL_VERSION,
            cluster: self.shared.config.cluster.clone(),
            from: self.shared.local,
            expect,
        }
    }

    fn accept(&mut self) {
        self.accept_again = false;
        loop {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((stream, remote)) => {
                    bump(&self.shared.stats.accepted, 1);
                    let _ = stream.set_nodelay(true);
                    let mut conn = self.new_conn(stream, remote, None);
                    if conn.secure.is_none() {
                        // validated at start: the cluster name fits a hello
                        let _ = frame::encode_hello(&self.hello(NodeId::UNKNOWN), &mut conn.wbuf);
                    }
                    match self.insert(conn) {
                        Ok(i) => {
                            self.arm_tick();
                            self.flush(i);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot register a connection"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // e.g. out of file descriptors: retry at the next tick
                    tracing::warn!(error = %e, "accept failed");
                    self.accept_again = true;
                    self.arm_tick();
                    return;
                }
            }
        }
    }

    fn peer_mut(&mut self, key: NodeAddr) -> &mut Peer {
        let shared = &self.shared;
        self.peers.entry(key).or_insert_with(|| Peer {
            queue: shared.queue_for(key),
            active: None,
            dialing: None,
            pending: Vec::new(),
            failures: 0,
            next_attempt: Instant::now(),
        })
    }

    fn dial(&mut self, key: NodeAddr) {
        if key.id == NodeId::UNKNOWN {
            if let Some(live) = self.live_at(key.addr) {
                return self.forward(key, live);
            }
        }
        bump(&self.shared.stats.dials, 1);
        self.arm_tick();
        let result = TcpStream::connect(key.addr).and_then(|stream| {
            let conn = self.new_conn(stream, key.addr, Some(key));
            self.insert(conn)
        });
        match result {
            Ok(i) => self.peer_mut(key).dialing = Some(i),
            Err(e) => self.dial_failed(key, CloseReason::Io(e.to_string())),
        }
    }

    /// The peer at `addr` with a connection that completed its handshake (active, or waiting for
    /// `Accept`), if any.
    fn live_at(&mut self, addr: SocketAddr) -> Option<NodeAddr> {
        let key = NodeAddr::new(addr, *self.by_addr.get(&addr)?);
        match self.peers.get(&key) {
            Some(p) if p.active.is_some() || !p.pending.is_empty() => Some(key),
            _ => {
                self.by_addr.remove(&addr);
                None
            }
        }
    }

    /// Moves every frame queued for `from` (an `(addr, NodeId::UNKNOWN)` key; its queue is never
    /// attached to a socket) to the queue of `to`, the incarnation found at that address.
    fn forward(&mut self, from: NodeAddr, to: NodeAddr) {
        debug_assert_eq!(from.id, NodeId::UNKNOWN);
        let src = Arc::clone(&self.peer_mut(from).queue);
        let mut bytes = Vec::new();
        let frames = src.take_into(&mut bytes, &mut self.no_sealed);
        debug_assert!(self.no_sealed.is_empty(), "address-only queues are never attached");
        if bytes.is_empty() {
            return;
        }
        let dst = Arc::clone(&self.peer_mut(to).queue);
        match dst.append(&bytes, frames, self.shared.config.outbound_queue_bytes) {
            Some(notify) => match self.peers.get(&to).and_then(|p| p.active) {
                Some(a) => self.flush(a),
                None if notify => self.shared.announce(&dst),
                None => {}
            },
            None => add(&self.shared.stats.dropped_queue_full, frames),
        }
    }

    /// A connection attempt to `key` failed and no other connection serves it.
    fn dial_failed(&mut self, key: NodeAddr, reason: CloseReason) {
        let (min, max) =
            (self.shared.config.reconnect_backoff_min, self.shared.config.reconnect_backoff_max);
        let peer = self.peer_mut(key);
        peer.failures = peer.failures.saturating_add(1);
        let backoff = min.saturating_mul(1 << (peer.failures - 1).min(16)).min(max);
        peer.next_attempt = Instant::now() + backoff;
        let dropped = peer.queue.clear();
        add(&self.shared.stats.dropped_unreachable, dropped);
        tracing::debug!(peer = %key, %reason, ?backoff, dropped, "peer unreachable");
        self.emit(key, LinkStatus::Unreachable(reason));
    }

    fn finish_connect(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else { return };
        match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => return self.close(i, CloseReason::Io(e.to_string()).into()),
            Ok(None) => {}
        }
        match c.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // not yet
            Err(e) => return self.close(i, CloseReason::Io(e.to_string()).into()),
        }
        let _ = c.stream.set_nodelay(true);
        c.deadline = Some(Instant::now() + self.shared.config.handshake_timeout);
        if let Some(secret) = &self.shared.config.secret {
            c.phase = Phase::Securing;
            c.secure = Some(Secure::Handshake(Box::new(Handshake::new(
                secret,
                &prologue(),
                true,
                &mut c.wbuf,
            ))));
        } else {
            c.phase = Phase::Handshaking;
            let expect = c.target.map_or(NodeId::UNKNOWN, |t| t.id);
            let hello = self.hello(expect);
            let c = self.conns[i].as_mut().expect("checked above");
            let _ = frame::encode_hello(&hello, &mut c.wbuf);
        }
        self.flush(i);
        if self.conns[i].is_some() {
            self.read(i, true); // the peer's hello may already be there
        }
    }

    /// Writes what the connection has buffered, then (if active) everything queued for its
    /// peer, until done or the socket is full.
    fn flush(&mut self, i: usize) {
        let stats = &self.shared.stats;
        let plain = &mut self.plain;
        let no_sealed = &mut self.no_sealed;
        let Some(c) = self.conns[i].as_mut() else { return };
        if c.phase == Phase::Connecting {
            return;
        }
        let queue = match (c.phase, c.peer) {
            (Phase::Active, Some(key)) => self.peers.get(&key).map(|p| &p.queue),
            _ => None,
        };
        let error = loop {
            if c.wpos == c.wbuf.len() {
                c.wbuf.clear();
                c.wpos = 0;
                let Some(q) = queue else { break None };
                let frames = match &c.secure {
                    Some(Secure::Open { sealer, .. }) => {
                        // a sender's unwritten sealed rest first, then the queue, sealed now
                        let frames = q.take_into(plain, &mut c.wbuf);
                        let sealed = sealer.lock().seal(plain, &mut c.wbuf);
                        plain.clear();
                        if let Err(e) = sealed {
                            break Some(CloseReason::Other(e.to_string()));
                        }
                        frames
                    }
                    _ => {
                        let frames = q.take_into(&mut c.wbuf, no_sealed);
                        debug_assert!(no_sealed.is_empty());
                        frames
                    }
                };
                if c.wbuf.is_empty() {
                    break None;
                }
                bump(&stats.frames_out, frames);
            }
            match (&*c.stream).write(&c.wbuf[c.wpos..]) {
                Ok(0) => break Some(CloseReason::Io("the socket accepts no more bytes".into())),
                Ok(n) => {
                    c.wpos += n;
                    bump(&stats.bytes_out, n as u64);
                    bump(&stats.writes, 1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(CloseReason::Io(e.to_string())),
            }
        };
        if c.wbuf.capacity() > 4 << 20 && c.wbuf.is_empty() {
            c.wbuf = Vec::new();
        }
        if let Some(reason) = error {
            self.close(i, reason.into());
        }
    }

    /// Reads connection `i` (at most [`READS_PER_TURN`] times, then again next turn) and
    /// handles the frames read.
    ///
    /// Unless `to_end`, a read that fills less than the space offered ends the turn without
    /// the extra read that would only report `WouldBlock` (one `recv` per readable event
    /// instead of two). That is safe with Linux's edge-triggered epoll, on which mio rests:
    /// the socket was empty when the short read copied its bytes, and any byte (or the end of
    /// the stream) arriving after the last `epoll_wait` took the event queues a new one. On
    /// other systems, and for a socket reported closing or failed, it reads until
    /// `WouldBlock` or the end.
    fn read(&mut self, i: usize, to_end: bool) {
        let budget = self.shared.config.inbound_budget_bytes;
        let stop_short = !to_end && SHORT_READ_ENDS_TURN;
        for _ in 0..READS_PER_TURN {
            let Some(c) = self.conns[i].as_mut() else { return };
            let mut offered = 0;
            let read = if c.secure.is_some() {
                offered = self.shared.config.read_buffer_bytes;
                self.read_secure(i)
            } else {
                let mut from = Offered { stream: &c.stream, offered: &mut offered };
                c.decoder.read_from(&mut from).map(|n| (n, false)).map_err(Fail::Io)
            };
            let Some(c) = self.conns[i].as_mut() else { return };
            match read {
                Ok((0, _)) => {
                    let reason = match (&c.secure, c.decoder.finish()) {
                        (Some(Secure::Handshake(_)), _) => CloseReason::Handshake(
                            "the peer closed during the secure handshake \
                             (does it have the same cluster secret?)"
                                .into(),
                        ),
                        (Some(Secure::Open { opener, .. }), _) if opener.pending() > 0 => {
                            CloseReason::BadFrame("the peer closed inside a record".into())
                        }
                        (_, Ok(())) => CloseReason::PeerClosed,
                        (_, Err(e)) => CloseReason::BadFrame(e.to_string()),
                    };
                    return self.close(i, reason.into());
                }
                Ok((n, secured)) => {
                    bump(&self.shared.stats.bytes_in, n as u64);
                    bump(&self.shared.stats.reads, 1);
                    c.last_read = Instant::now();
                    if let Err(closing) = self.drain_frames(i) {
                        return self.close(i, closing);
                    }
                    if secured {
                        // the handshake finished: our answer and hello go out
                        self.flush(i);
                    }
                    let Some(c) = self.conns[i].as_ref() else { return };
                    if c.credit.load(Ordering::Relaxed) > budget {
                        return self.close(i, CloseReason::Overloaded.into());
                    }
                    if stop_short && !secured && n < offered {
                        return;
                    }
                }
                Err(Fail::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(Fail::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(Fail::Io(e)) => return self.close(i, CloseReason::Io(e.to_string()).into()),
                Err(Fail::Link(e)) => {
                    bump(&self.shared.stats.auth_failures, 1);
                    return self.close(i, link_closing(&e));
                }
            }
        }
        self.again.push(i);
    }

    /// Reads once from secured connection `i`, runs the handshake or opens records into the
    /// frame decoder. Returns the bytes read and whether the handshake finished just now.
    fn read_secure(&mut self, i: usize) -> Result<(usize, bool), Fail> {
        let size = self.shared.config.read_buffer_bytes;
        if self.rbuf.len() != size {
            self.rbuf.resize(size, 0);
        }
        let c = self.conns[i].as_mut().expect("reading an open connection");
        let n = (&*c.stream).read(&mut self.rbuf).map_err(Fail::Io)?;
        if n == 0 {
            return Ok((0, false));
        }
        let bytes = &self.rbuf[..n];
        let decoder = &mut c.decoder;
        match c.secure.as_mut().expect("a secured connection") {
            Secure::Open { opener, .. } => {
                opener.open(bytes, &mut |p| decoder.push(p)).map_err(Fail::Link)?;
                Ok((n, false))
            }
            Secure::Handshake(h) => {
                let Some((keys, rest)) = h.feed(bytes, &mut c.wbuf).map_err(Fail::Link)? else {
                    return Ok((n, false));
                };
                let mut opener = Opener::new(keys.clone());
                opener.open(&rest, &mut |p| decoder.push(p)).map_err(Fail::Link)?;
                let sealer = Arc::new(parking_lot::Mutex::new(Sealer::new(keys)));
                c.secure = Some(Secure::Open { opener, sealer });
                c.phase = Phase::Handshaking;
                let expect = c.target.map_or(NodeId::UNKNOWN, |t| t.id);
                let hello = self.hello(expect);
                let mut bytes = Vec::new();
                // validated at start: the cluster name fits a hello
                let _ = frame::encode_hello(&hello, &mut bytes);
                let c = self.conns[i].as_mut().expect("reading an open connection");
                put(c, &bytes).map_err(Fail::Link)?;
                Ok((n, true))
            }
        }
    }

    /// Handles every complete frame buffered on connection `i`.
    fn drain_frames(&mut self, i: usize) -> Result<(), Closing> {
        let mut dec = match self.conns[i].as_mut() {
            Some(c) => std::mem::take(&mut c.decoder),
            None => return Ok(()),
        };
        let result = loop {
            let step = match dec.next() {
                Ok(None) => break Ok(()),
                Ok(Some(Frame::Data { protocol, payload })) => self.on_data(i, protocol, payload),
                Ok(Some(Frame::Hello(h))) => {
                    let r = self.on_hello(i, h);
                    if r.is_ok() {
                        dec.set_max(self.shared.config.max_frame_bytes);
                    }
                    r
                }
                Ok(Some(Frame::Accept)) => self.on_accept(i),
                Err(e) => Err(CloseReason::BadFrame(e.to_string()).into()),
            };
            if let Err(e) = step {
                break Err(e);
            }
        };
        if let Some(c) = self.conns[i].as_mut() {
            c.decoder = dec;
        }
        result
    }

    #[inline]
    fn on_data(&mut self, i: usize, protocol: ProtocolId, payload: &[u8]) -> Result<(), Closing> {
        let c = self.conns[i].as_ref().expect("frames are drained from open connections");
        let (Phase::Active, Some(from)) = (c.phase, c.peer) else {
            return Err(CloseReason::BadFrame("data before the handshake completed".into()).into());
        };
        bump(&self.shared.stats.frames_in, 1);
        match self.sinks.get_mut(&protocol) {
            Some(sink) => {
                let credit = Credit::take(&c.credit, payload.len() + DATA_HEADER);
                sink.deliver(from, payload, credit).map_err(|e| {
                    CloseReason::BadFrame(format!("protocol {:08x}: {e}", protocol.0)).into()
                })
            }
            None => {
                bump(&self.shared.stats.dropped_unknown_protocol, 1);
                if let Some(n) = self.unknown_warn.check() {
                    tracing::warn!(peer = %from, protocol = protocol.0, suppressed = n,
                        "dropping a message of a protocol this node does not run");
                }
                Ok(())
            }
        }
    }

    fn on_hello(&mut self, i: usize, h: Hello) -> Result<(), Closing> {
        let local = self.shared.local;
        let c = self.conns[i].as_mut().expect("frames are drained from open connections");
        if c.phase != Phase::Handshaking {
            return Err(CloseReason::BadFrame("unexpected hello".into()).into());
        }
        if h.version != frame::PROTOCOL_VERSION {
            return Err(CloseReason::Handshake(format!(
                "peer speaks protocol version {}, this node {}",
                h.version,
                frame::PROTOCOL_VERSION
            ))
            .into());
        }
        if h.cluster != self.shared.config.cluster {
            return Err(CloseReason::Handshake(format!(
                "peer is in cluster {:?}, this node in {:?}",
                h.cluster, self.shared.config.cluster
            ))
            .into());
        }
        if h.from.id == NodeId::UNKNOWN || h.from == local {
            return Err(CloseReason::Handshake(format!("peer claims to be {}", h.from)).into());
        }
        let key = match c.target {
            // whoever runs there: this incarnation
            Some(t) if t.id == NodeId::UNKNOWN => NodeAddr::new(t.addr, h.from.id),
            Some(t) if t.id != h.from.id => {
                return Err(CloseReason::Handshake(format!(
                    "reached incarnation {} instead of {}",
                    h.from.id, t.id
                ))
                .into());
            }
            Some(t) => t,
            None if h.expect != NodeId::UNKNOWN && h.expect != local.id => {
                // A peer addressing an earlier incarnation of this node; it sees our id in our
                // hello and reports the mismatch itself.
                tracing::debug!(peer = %h.from, expected = %h.expect, "hello for another incarnation");
                return Err(Closing {
                    reason: CloseReason::Handshake("addressed to another incarnation".into()),
                    quiet: true,
                });
            }
            None => h.from,
        };
        c.peer = Some(key);
        let unknown = c.target.filter(|t| t.id == NodeId::UNKNOWN);
        let decider = local < h.from;
        self.by_addr.insert(key.addr, key.id);
        if let Some(t) = unknown {
            // The dial for `t` is done: what waits for it now waits for `key` (and goes out on
            // this connection, or on the one the decider keeps).
            let now = Instant::now();
            let u = self.peer_mut(t);
            if u.dialing == Some(i) {
                u.dialing = None;
            }
            u.failures = 0;
            u.next_attempt = now;
            tracing::debug!(peer = %key, "reached an unknown incarnation");
            self.forward(t, key);
        }
        if decider {
            if self.peer_mut(key).active.is_some_and(|a| a != i) {
                return Err(Closing {
                    reason: CloseReason::Other("redundant connection".into()),
                    quiet: true,
                });
            }
            self.activate(i, key, true);
        } else {
            let c = self.conns[i].as_mut().expect("frames are drained from open connections");
            c.phase = Phase::Pending;
            self.peer_mut(key).pending.push(i);
        }
        Ok(())
    }

    fn on_accept(&mut self, i: usize) -> Result<(), Closing> {
        let c = self.conns[i].as_ref().expect("frames are drained from open connections");
        match (c.phase, c.peer) {
            (Phase::Pending, Some(key)) => {
                if let Some(old) = self.peer_mut(key).active.filter(|&a| a != i) {
                    // The decider replaced a connection it considers gone.
                    self.close(
                        old,
                        Closing { reason: CloseReason::Other("replaced".into()), quiet: true },
                    );
                }
                self.activate(i, key, false);
                Ok(())
            }
            _ => Err(CloseReason::BadFrame("unexpected accept".into()).into()),
        }
    }

    fn activate(&mut self, i: usize, key: NodeAddr, decider: bool) {
        let c = self.conns[i].as_mut().expect("activating an open connection");
        c.phase = Phase::Active;
        c.deadline = None;
        if decider {
            let mut accept = Vec::new();
            frame::encode_accept(&mut accept);
            if put(c, &accept).is_err() {
                return self
                    .close(i, CloseReason::Other("cannot seal the accept frame".into()).into());
            }
        }
        let sealer = match &c.secure {
            Some(Secure::Open { sealer, .. }) => Some(Arc::clone(sealer)),
            _ => None,
        };
        let (stream, busy) = (Arc::clone(&c.stream), c.wpos < c.wbuf.len());
        let peer = self.peer_mut(key);
        peer.queue.attach(stream, sealer, busy);
        peer.active = Some(i);
        peer.pending.retain(|&p| p != i);
        if peer.dialing == Some(i) {
            peer.dialing = None;
        }
        peer.failures = 0;
        peer.next_attempt = Instant::now();
        bump(&self.shared.stats.connections, 1);
        bump(&self.shared.stats.connections_opened, 1);
        tracing::debug!(peer = %key, decider, "connected");
        self.emit(key, LinkStatus::Connected);
        self.flush(i);
    }

    fn close(&mut self, i: usize, closing: Closing) {
        let Some(mut c) = self.conns[i].take() else { return };
        if c.phase == Phase::Active {
            // stop direct writes first, so that the socket is ours alone again
            if let Some(p) = c.peer.and_then(|k| self.peers.get(&k)).filter(|p| p.active == Some(i))
            {
                p.queue.detach();
            }
        }
        match Arc::get_mut(&mut c.stream) {
            Some(s) => {
                let _ = self.poll.registry().deregister(s);
            }
            // a sender is writing on it right now: make sure the peer sees the close at once
            None => {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        }
        self.free.push(i);
        let Closing { reason, quiet } = closing;
        let bad = is_bad_input(&reason);
        let shared = Arc::clone(&self.shared);
        let stats = &shared.stats;
        match reason {
            CloseReason::Overloaded => bump(&stats.closed_overloaded, 1),
            ref r if is_bad_input(r) => bump(&stats.closed_bad_input, 1),
            _ => {}
        }
        let who = c.peer.unwrap_or(NodeAddr::new(c.remote, NodeId::UNKNOWN));
        if bad {
            tracing::warn!(peer = %who, remote = %c.remote, %reason, "closing connection");
        } else {
            tracing::debug!(peer = %who, remote = %c.remote, %reason, quiet, "closing connection");
        }
        drop(c.stream); // closes the socket
        let Some(key) = c.peer else {
            if !quiet {
                self.emit(who, LinkStatus::Unreachable(reason));
            }
            return;
        };
        let peer = self.peer_mut(key);
        peer.pending.retain(|&p| p != i);
        let was_dial = peer.dialing == Some(i);
        if was_dial {
            peer.dialing = None;
        }
        if c.phase == Phase::Active && peer.active == Some(i) {
            peer.active = None;
            peer.queue.detach();
            let dropped = peer.queue.clear();
            drop_by(&stats.connections, 1);
            add(&stats.dropped_unreachable, dropped);
            if !quiet {
                self.emit(key, LinkStatus::Lost(reason));
            }
            self.arm_tick();
            return;
        }
        let served = peer.active.is_some() || !peer.pending.is_empty();
        if c.phase == Phase::Pending && !bad {
            // The decider closed a connection it did not choose (it holds another one, or is
            // going away): try again shortly if nothing else becomes active.
            peer.next_attempt = Instant::now() + shared.config.reconnect_backoff_min;
            self.arm_tick();
            return;
        }
        if quiet {
            return;
        }
        if was_dial && !served {
            self.dial_failed(key, reason);
            self.arm_tick();
        } else if bad {
            self.emit(key, LinkStatus::Unreachable(reason));
        }
    }

    fn drain_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        self.shared.take_ready(&mut ready);
        let now = Instant::now();
        for q in ready.drain(..) {
            let key = q.peer;
            let peer = self.peer_mut(key);
            if !Arc::ptr_eq(&peer.queue, &q) {
                peer.queue = q;
            }
            if key.id == NodeId::UNKNOWN {
                if let Some(live) = self.live_at(key.addr) {
                    self.forward(key, live);
                    continue;
                }
            }
            let peer = self.peer_mut(key);
            if let Some(a) = peer.active {
                self.flush(a);
            } else if peer.dialing.is_none() && peer.pending.is_empty() && now >= peer.next_attempt
            {
                self.dial(key);
            } else {
                self.arm_tick();
            }
        }
        self.ready = ready;
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.next_tick = None;
        let mut busy = self.accept_again;
        if self.accept_again {
            self.accept();
        }
        let idle = self.shared.config.idle_timeout;
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_ref() else { continue };
            let expired = c.deadline.is_some_and(|d| now >= d);
            let reason = match c.phase {
                Phase::Connecting if expired => Some(CloseReason::Io("connect timed out".into())),
                Phase::Securing | Phase::Handshaking | Phase::Pending if expired => {
                    Some(CloseReason::Idle)
                }
                Phase::Active => idle
                    .filter(|d| now.duration_since(c.last_read) >= *d)
                    .map(|_| CloseReason::Idle),
                _ => None,
            };
            if c.phase != Phase::Active {
                busy = true;
            }
            if let Some(r) = reason {
                self.close(i, r.into());
            }
        }
        let mut to_dial = Vec::new();
        let mut to_retire = Vec::new();
        let backoff_max = self.shared.config.reconnect_backoff_max;
        for (key, p) in &self.peers {
            if p.active.is_some() || p.dialing.is_some() || !p.pending.is_empty() {
                continue;
            }
            if p.queue.has_data() {
                busy = true;
                if now >= p.next_attempt {
                    to_dial.push(*key);
                }
            } else if now >= p.next_attempt + backoff_max {
                to_retire.push(*key);
            } else {
                busy = true;
            }
        }
        for key in to_dial {
            self.dial(key);
        }
        for key in to_retire {
            if let Some(p) = self.peers.get(&key) {
                if self.shared.retire_queue(&p.queue) {
                    self.peers.remove(&key);
                }
            }
        }
        if busy || idle.is_some() {
            self.next_tick = Some(now + self.tick);
        }
    }

    fn close_all(&mut self) {
        for i in 0..self.conns.len() {
            if self.conns[i].as_ref().is_some_and(|c| c.phase == Phase::Active) {
                self.close(i, CloseReason::Shutdown.into());
            } else if self.conns[i].is_some() {
                self.close(i, Closing { reason: CloseReason::Shutdown, quiet: true });
            }
        }
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
    }
}
