//! State shared between the protocol adapters (worker threads) and the I/O thread.
//!
//! * One [`PeerQueue`] per destination node: adapters append encoded frames, the I/O thread
//!   takes them all at once (a buffer swap) and writes them with as few `write` calls as the
//!   socket allows. A queue is put on the I/O thread's ready list, and the I/O thread woken,
//!   only when it goes from "nothing announced" to "something to send" — so a burst of
//!   messages costs one wake-up.
//! * The queue is bounded by [`NetConfig::outbound_queue_bytes`]: a message that does not fit
//!   is dropped (never blocks the sender) and counted.
//! * The table of protocols: for each [`ProtocolId`] its name, message type and port, from
//!   which the I/O thread builds its inbound sinks and same-process senders find their peer's
//!   port.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use parking_lot::Mutex;
use selfman_core::{Message, Network, NodeAddr, ProtocolId, ProvidedRef};

use crate::adapter::InboundSink;
use crate::config::NetConfig;
use crate::secure::Sealer;
use crate::stats::Counters;

/// A frame pushed after the link to its peer was quiet at least this long is written by the
/// sender itself (saving the I/O thread's wake-up); frames closer together are queued for the
/// I/O thread, which writes many per system call.
pub(crate) const DIRECT_AFTER_IDLE: Duration = Duration::from_micros(50);

/// What happened to a frame offered to a [`PeerQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued; `notify` says the I/O thread must be told (the queue was not announced yet).
    Queued { notify: bool },
    /// Written to the socket by the caller; `notify` as for `Queued` (others queued meanwhile).
    Sent { notify: bool },
    /// Partly written when the connection went away: the frame is lost with the connection.
    Lost,
    /// The queue is full: the frame was dropped.
    Full,
    /// The queue was retired by the I/O thread: look up the current one and retry.
    Retired,
}

/// Who may write to the peer's socket now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Nobody: a sender may write directly (if the queue is empty).
    #[default]
    Idle,
    /// A sender is writing directly; the I/O thread must not take the queue.
    Sender,
    /// The I/O thread holds unwritten bytes; senders must queue.
    Io,
}

#[derive(Debug, Default)]
struct QueueInner {
    bytes: Vec<u8>,
    frames: u64,
    /// On the ready list (or known to the I/O thread) since the last time it took the bytes.
    announced: bool,
    retired: bool,
    /// The active connection's socket, for direct writes.
    direct: Option<Arc<TcpStream>>,
    /// The active connection's record sealer, on a secured link.
    sealer: Option<Arc<Mutex<Sealer>>>,
    /// Sealed bytes of a frame a sender wrote only partly: they go out before anything else
    /// (secured links only; on plain links the rest goes to the front of `bytes`).
    sealed_rest: Vec<u8>,
    writer: Writer,
    last_push: Option<Instant>,
}

/// Writes as much of `buf` as the socket takes now.
fn write_some(stream: &TcpStream, buf: &[u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match (&*stream).write(&buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break, // WouldBlock: the I/O thread continues; errors: it finds them
        }
    }
    n
}

/// Encoded frames waiting for one destination node.
#[derive(Debug)]
pub(crate) struct PeerQueue {
    pub(crate) peer: NodeAddr,
    inner: Mutex<QueueInner>,
}

impl PeerQueue {
    fn new(peer: NodeAddr) -> PeerQueue {
        PeerQueue { peer, inner: Mutex::new(QueueInner::default()) }
    }

    /// Appends one encoded frame unless that would exceed `limit` bytes.
    #[inline]
    pub(crate) fn push(&self, frame: &[u8], limit: usize) -> Push {
        let mut q = self.inner.lock();
        if q.retired {
            return Push::Retired;
        }
        if q.bytes.len() + frame.len() > limit {
            return Push::Full;
        }
        let now = Instant::now();
        let quiet = q.last_push.is_none_or(|t| now.duration_since(t) >= DIRECT_AFTER_IDLE);
        q.last_push = Some(now);
        if quiet && q.writer == Writer::Idle && q.bytes.is_empty() && q.sealed_rest.is_empty() {
            if let Some(stream) = q.direct.clone() {
                let sealer = q.sealer.clone();
                q.writer = Writer::Sender;
                drop(q);
                // Sealed while this sender holds the writer role, so that records reach the
                // socket in the order of their nonces.
                let sealed;
                let wire = match &sealer {
                    None => frame,
                    Some(s) => {
                        let mut out = Vec::with_capacity(Sealer::sealed_len(frame.len()));
                        if s.lock().seal(frame, &mut out).is_err() {
                            let mut q = self.inner.lock();
                            if q.writer == Writer::Sender {
                                q.writer = Writer::Idle;
                            }
                            return Push::Lost;
                        }
                        sealed = out;
                        &sealed[..]
                    }
                };
                let n = write_some(&stream, wire);
                let mut q = self.inner.lock();
                if q.writer == Writer::Sender {
                    q.writer = Writer::Idle;
                }
                let same = q.direct.as_ref().is_some_and(|s| Arc::ptr_eq(s, &stream));
                if n < wire.len() {
                    if same && sealer.is_some() {
                        // Sealed bytes cannot be sealed again: they wait apart, first in line.
                        debug_assert!(q.sealed_rest.is_empty());
                        q.sealed_rest.extend_from_slice(&wire[n..]);
                        q.frames += 1;
                    } else if same {
                        // The rest goes first: it precedes what others queued meanwhile.
                        let mut rest = Vec::with_capacity(frame.len() - n + q.bytes.len());
                        rest.extend_from_slice(&frame[n..]);
                        rest.extend_from_slice(&q.bytes);
                        q.bytes = rest;
                        q.frames += 1;
                    } else if n > 0 {
                        return Push::Lost;
                    } else {
                        q.bytes.extend_from_slice(frame);
                        q.frames += 1;
                    }
                } else if q.bytes.is_empty() {
                    return Push::Sent { notify: false };
                }
                let notify = !q.announced;
                q.announced = true;
                return if n == wire.len() {
                    Push::Sent { notify }
                } else {
                    Push::Queued { notify }
                };
            }
        }
        q.bytes.extend_from_slice(frame);
        q.frames += 1;
        let notify = !q.announced;
        q.announced = true;
        Push::Queued { notify }
    }

    /// Moves every queued byte into `buf` (which must be empty; its capacity is handed to the
    /// queue in exchange) and returns how many frames that was. Clears the announcement. On a
    /// secured link, sealed bytes a sender left (they must be written before `buf`'s, which
    /// the caller seals) are appended to `sealed`.
    #[inline]
    pub(crate) fn take_into(&self, buf: &mut Vec<u8>, sealed: &mut Vec<u8>) -> u64 {
        debug_assert!(buf.is_empty());
        let mut q = self.inner.lock();
        q.announced = false;
        if q.writer == Writer::Sender {
            return 0; // a sender is writing; it announces again if more is queued
        }
        if q.bytes.is_empty() && q.sealed_rest.is_empty() {
            q.writer = Writer::Idle;
            return 0;
        }
        q.writer = Writer::Io;
        sealed.append(&mut q.sealed_rest);
        std::mem::swap(&mut q.bytes, buf);
        std::mem::take(&mut q.frames)
    }

    /// Appends `frames` whole encoded frames (`bytes`, taken from another queue by the I/O
    /// thread) unless that would exceed `limit` bytes or the queue is retired. `Some(notify)`
    /// when appended, `notify` as for [`Push::Queued`]; `None` when dropped.
    pub(crate) fn append(&self, bytes: &[u8], frames: u64, limit: usize) -> Option<bool> {
        let mut q = self.inner.lock();
        if q.retired || q.bytes.len() + bytes.len() > limit {
            return None;
        }
        q.bytes.extend_from_slice(bytes);
        q.frames += frames;
        let notify = !q.announced;
        q.announced = true;
        Some(notify)
    }

    /// The connection `stream` to the peer became active (with its record sealer on a secured
    /// link); `busy` if the I/O thread has bytes to write on it first.
    pub(crate) fn attach(
        &self,
        stream: Arc<TcpStream>,
        sealer: Option<Arc<Mutex<Sealer>>>,
        busy: bool,
    ) {
        let mut q = self.inner.lock();
        q.direct = Some(stream);
        q.sealer = sealer;
        q.sealed_rest.clear();
        q.writer = if busy { Writer::Io } else { Writer::Idle };
    }

    /// The active connection closed.
    pub(crate) fn detach(&self) {
        let mut q = self.inner.lock();
        q.direct = None;
        q.sealer = None;
        // sealed for the connection that closed: useless on any other
        q.sealed_rest = Vec::new();
        if q.writer == Writer::Io {
            q.writer = Writer::Idle;
        }
    }

    /// Drops everything queued; returns how many frames.
    pub(crate) fn clear(&self) -> u64 {
        let mut q = self.inner.lock();
        q.announced = false;
        q.bytes.clear();
        q.sealed_rest = Vec::new();
        if q.bytes.capacity() > 1 << 20 {
            q.bytes = Vec::new();
        }
        std::mem::take(&mut q.frames)
    }

    pub(crate) fn has_data(&self) -> bool {
        let q = self.inner.lock();
        !q.bytes.is_empty() || !q.sealed_rest.is_empty()
    }

    /// Retires an empty queue (adapters then look up a fresh one); `false` if it holds data.
    pub(crate) fn try_retire(&self) -> bool {
        let mut q = self.inner.lock();
        if q.bytes.is_empty() && q.sealed_rest.is_empty() {
            q.retired = true;
        }
        q.retired
    }
}

/// One registered protocol.
pub(crate) struct ProtocolEntry {
    pub(crate) name: String,
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    /// A `ProvidedRef<Network<M>>` for the protocol's `M`.
    pub(crate) port: Box<dyn Any + Send + Sync>,
    /// Builds the I/O thread's sink for this protocol.
    pub(crate) sink: Box<dyn Fn() -> Box<dyn InboundSink> + Send + Sync>,
}

/// The state of one transport shared by its adapters, its I/O thread and its handle.
pub(crate) struct Shared {
    pub(crate) local: NodeAddr,
    pub(crate) config: NetConfig,
    /// False once shutdown has begun; same-process senders stop delivering here.
    pub(crate) alive: Arc<AtomicBool>,
    queues: Mutex<HashMap<NodeAddr, Arc<PeerQueue>>>,
    ready: Mutex<Vec<Arc<PeerQueue>>>,
    wake_pending: AtomicBool,
    waker: mio::Waker,
    pub(crate) protocols: Mutex<HashMap<ProtocolId, ProtocolEntry>>,
    pub(crate) protocols_version: AtomicU64,
    pub(crate) stats: Counters,
}

impl Shared {
    pub(crate) fn new(local: NodeAddr, config: NetConfig, waker: mio::Waker) -> Shared {
        Shared {
            local,
            config,
            alive: Arc::new(AtomicBool::new(true)),
            queues: Mutex::new(HashMap::new()),
            ready: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            waker,
            protocols: Mutex::new(HashMap::new()),
            protocols_version: AtomicU64::new(0),
            stats: Counters::default(),
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// The current queue for `peer`, created if needed.
    pub(crate) fn queue_for(&self, peer: NodeAddr) -> Arc<PeerQueue> {
        Arc::clone(self.queues.lock().entry(peer).or_insert_with(|| Arc::new(PeerQueue::new(peer))))
    }

    /// Removes `peer`'s queue if it is `q` and empty (it is retired). Returns whether it was.
    pub(crate) fn retire_queue(&self, q: &Arc<PeerQueue>) -> bool {
        let mut queues = self.queues.lock();
        if !queues.get(&q.peer).is_some_and(|cur| Arc::ptr_eq(cur, q)) {
            return true;
        }
        if q.try_retire() {
            queues.remove(&q.peer);
            true
        } else {
            false
        }
    }

    /// Puts `q` on the ready list and wakes the I/O thread unless a wake-up is pending.
    pub(crate) fn announce(&self, q: &Arc<PeerQueue>) {
        self.ready.lock().push(Arc::clone(q));
        self.wake();
    }

    /// Wakes the I/O thread (at most one wake-up outstanding).
    pub(crate) fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                tracing::error!(error = %e, "cannot wake the network I/O thread");
            }
        }
    }

    /// Wakes the I/O thread even if a wake-up seems pending (shutdown).
    pub(crate) fn wake_forced(&self) {
        self.wake_pending.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "cannot wake the network I/O thread");
        }
    }

    /// Called by the I/O thread before it drains the ready list.
    pub(crate) fn clear_wake(&self) {
        self.wake_pending.store(false, Ordering::SeqCst);
    }

    /// Moves the ready list into `out` (empty).
    pub(crate) fn take_ready(&self, out: &mut Vec<Arc<PeerQueue>>) {
        let mut r = self.ready.lock();
        std::mem::swap(&mut *r, out);
    }

    /// The `Network<M>` port of protocol `id`, if registered with message type `M`.
    pub(crate) fn port_for<M: Message>(&self, id: ProtocolId) -> Option<ProvidedRef<Network<M>>> {
        self.protocols.lock().get(&id).and_then(|e| e.port.downcast_ref().cloned())
    }
}

/// Lets one warning through per interval and counts the ones it suppressed.
#[derive(Debug)]
pub(crate) struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub(crate) fn new(interval: Duration) -> RateLimit {
        RateLimit { interval, last: None, suppressed: 0 }
    }

    /// `Some(suppressed since the last one)` if a warning may be logged now.
    pub(crate) fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}
