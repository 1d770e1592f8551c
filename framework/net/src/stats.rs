//! [`NetStats`]: counters of one transport, read with [`TcpNetwork::stats`](crate::TcpNetwork::stats).
//!
//! Most counters have a single writer (the I/O thread) and are updated without read-modify-write
//! instructions; the few written by protocol adapters use relaxed atomic adds. A snapshot is
//! not atomic across counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a transport's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NetStats {
    /// Data frames written to sockets.
    pub frames_out: u64,
    /// Bytes written to sockets (all frames, prefixes included).
    pub bytes_out: u64,
    /// Data frames read from sockets.
    pub frames_in: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// `write` calls that wrote something (frames per write = `frames_out / writes`).
    pub writes: u64,
    /// Of `frames_out`, frames written directly by the sending adapter (the link was quiet, so
    /// it skipped the I/O thread's wake-up), one per `write`.
    pub direct_frames: u64,
    /// Of `bytes_out`, bytes written directly by sending adapters.
    pub direct_bytes: u64,
    /// `read` calls that read something.
    pub reads: u64,
    /// Established connections now (one per connected peer).
    pub connections: u64,
    /// Connections established since start (after the handshake).
    pub connections_opened: u64,
    /// Connections accepted from the listener.
    pub accepted: u64,
    /// Connection attempts made.
    pub dials: u64,
    /// Messages dropped because the peer's outbound queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because their peer was unreachable or its connection was lost.
    pub dropped_unreachable: u64,
    /// Messages dropped because the receiving node has no such protocol.
    pub dropped_unknown_protocol: u64,
    /// Messages dropped at the sender because they could not be encoded or exceed the
    /// maximum frame size.
    pub dropped_unencodable: u64,
    /// Connections closed because the peer sent bad bytes, failed the handshake or stayed
    /// silent.
    pub closed_bad_input: u64,
    /// Connections closed because the peer failed the secure-link handshake (no or another
    /// cluster secret) or sent a record that does not authenticate (tampered, replayed); also
    /// counted in `closed_bad_input`.
    pub auth_failures: u64,
    /// Connections closed because the peer exceeded its inbound budget.
    pub closed_overloaded: u64,
    /// Messages handed over as values to a node in the same process.
    pub local_deliveries: u64,
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// The live counters behind [`NetStats`].
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> NetStats {
                let mut s = NetStats { $($name: self.$name.load(Ordering::Relaxed),)* };
                // the I/O thread's counters exclude what senders wrote directly
                s.frames_out += s.direct_frames;
                s.bytes_out += s.direct_bytes;
                s.writes += s.direct_frames;
                s
            }
        }
    };
}

counters!(
    frames_out,
    bytes_out,
    frames_in,
    bytes_in,
    writes,
    direct_frames,
    direct_bytes,
    reads,
    connections,
    connections_opened,
    accepted,
    dials,
    dropped_queue_full,
    dropped_unreachable,
    dropped_unknown_protocol,
    dropped_unencodable,
    closed_bad_input,
    auth_failures,
    closed_overloaded,
    local_deliveries,
);

/// Adds `n` to a counter that only the calling thread writes (no locked instruction).
#[inline]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds `n` to a counter with several writers.
#[inline]
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts `n` from a counter that only the calling thread writes.
#[inline]
pub(crate) fn drop_by(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).saturating_sub(n), Ordering::Relaxed);
}
