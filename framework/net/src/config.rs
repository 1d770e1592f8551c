//! [`NetConfig`]: the transport's tunables, with their defaults and validation.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use selfman_core::NodeId;

use crate::error::NetError;
use crate::frame::{HELLO_MAX_BYTES, MAX_CLUSTER_LEN};
use crate::secure::ClusterSecret;

/// Configuration of a [`TcpNetwork`](crate::TcpNetwork).
///
/// Build it with struct update syntax from [`NetConfig::default`] or with the builder methods:
///
/// ```
/// use std::time::Duration;
/// use selfman_net::NetConfig;
///
/// let cfg = NetConfig::default()
///     .cluster("prod")
///     .handshake_timeout(Duration::from_secs(2))
///     .local_delivery(false);
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The address to listen on (default `127.0.0.1:0`: loopback, any free port). Listen on a
    /// concrete address: it is what the node tells its peers.
    pub listen: SocketAddr,
    /// This incarnation's id; `None` (default) draws a fresh random non-zero one.
    pub node_id: Option<NodeId>,
    /// The cluster name (default `"selfman"`, at most 255 bytes); nodes of other clusters are
    /// refused in the handshake.
    pub cluster: String,
    /// The largest frame accepted or sent, in bytes without the 4-byte length prefix
    /// (default 16 MiB, at most 1 GiB). Longer messages are dropped at the sender; a peer
    /// announcing a longer frame is disconnected.
    pub max_frame_bytes: usize,
    /// Bytes of encoded messages that may wait for one peer (default 64 MiB). When full, new
    /// messages to that peer are dropped and counted (see [`NetStats::dropped_queue_full`]).
    ///
    /// [`NetStats::dropped_queue_full`]: crate::NetStats::dropped_queue_full
    pub outbound_queue_bytes: usize,
    /// Bytes delivered from one connection but not yet handled (default 64 MiB). A peer
    /// exceeding it is disconnected with [`CloseReason::Overloaded`].
    ///
    /// [`CloseReason::Overloaded`]: selfman_core::CloseReason::Overloaded
    pub inbound_budget_bytes: usize,
    /// How long a new connection may take to complete the handshake (default 5 s); a peer that
    /// says nothing is disconnected with [`CloseReason::Idle`].
    ///
    /// [`CloseReason::Idle`]: selfman_core::CloseReason::Idle
    pub handshake_timeout: Duration,
    /// Close established connections that received nothing for this long (default `None`:
    /// never).
    pub idle_timeout: Option<Duration>,
    /// How long a connection attempt may take (default 5 s).
    pub connect_timeout: Duration,
    /// The delay after the first failed connection attempt to a peer (default 50 ms); it
    /// doubles with each further failure up to [`reconnect_backoff_max`](Self::reconnect_backoff_max).
    pub reconnect_backoff_min: Duration,
    /// The longest delay between connection attempts (default 5 s).
    pub reconnect_backoff_max: Duration,
    /// Deliver messages to nodes of this process as values, without serialising them
    /// (default `true`). Tests set `false` to force every message through TCP. Messages a
    /// node sends to itself are always delivered as values.
    pub local_delivery: bool,
    /// Size of each connection's read buffer (default 64 KiB); one read decodes every frame in
    /// it.
    pub read_buffer_bytes: usize,
    /// How long the I/O thread keeps polling (without blocking, yielding its core between
    /// polls) after its last network event before it sleeps in the OS (default 100 µs, at most
    /// 10 ms). A message arriving within that time is read at once instead of after a thread
    /// wake-up, which on a virtual machine costs tens of microseconds; the price is at most
    /// this much CPU time per idle period. `Duration::ZERO` sleeps at once.
    pub io_spin: Duration,
    /// The cluster secret (default `None`: links are neither authenticated nor encrypted).
    /// With a secret, every connection runs a Noise handshake before anything else and carries
    /// its frames encrypted and authenticated; peers without the same secret are refused and
    /// counted in [`NetStats::auth_failures`](crate::NetStats::auth_failures). Every node of
    /// a cluster must have the same setting. See [`secure`](crate::secure).
    pub secret: Option<ClusterSecret>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            node_id: None,
            cluster: "selfman".to_owned(),
            max_frame_bytes: 16 << 20,
            outbound_queue_bytes: 64 << 20,
            inbound_budget_bytes: 64 << 20,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: None,
            connect_timeout: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(5),
            local_delivery: true,
            read_buffer_bytes: 64 << 10,
            io_spin: Duration::from_micros(100),
            secret: None,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty),* $(,)?) => {$(
        #[$doc]
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    )*};
}

impl NetConfig {
    setter! {
        /// Sets [`listen`](Self::listen).
        listen: SocketAddr,
        /// Sets [`node_id`](Self::node_id).
        node_id: Option<NodeId>,
        /// Sets [`max_frame_bytes`](Self::max_frame_bytes).
        max_frame_bytes: usize,
        /// Sets [`outbound_queue_bytes`](Self::outbound_queue_bytes).
        outbound_queue_bytes: usize,
        /// Sets [`inbound_budget_bytes`](Self::inbound_budget_bytes).
        inbound_budget_bytes: usize,
        /// Sets [`handshake_timeout`](Self::handshake_timeout).
        handshake_timeout: Duration,
        /// Sets [`idle_timeout`](Self::idle_timeout).
        idle_timeout: Option<Duration>,
        /// Sets [`connect_timeout`](Self::connect_timeout).
        connect_timeout: Duration,
        /// Sets [`reconnect_backoff_min`](Self::reconnect_backoff_min).
        reconnect_backoff_min: Duration,
        /// Sets [`reconnect_backoff_max`](Self::reconnect_backoff_max).
        reconnect_backoff_max: Duration,
        /// Sets [`local_delivery`](Self::local_delivery).
        local_delivery: bool,
        /// Sets [`read_buffer_bytes`](Self::read_buffer_bytes).
        read_buffer_bytes: usize,
        /// Sets [`io_spin`](Self::io_spin).
        io_spin: Duration,
        /// Sets [`secret`](Self::secret).
        secret: Option<ClusterSecret>,
    }

    /// Sets [`cluster`](Self::cluster).
    #[must_use]
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// [`NetError::Config`] naming the first bad field: a cluster name over 255 bytes, a
    /// maximum frame under 512 bytes or over 1 GiB, a zero queue, budget, buffer or timeout,
    /// a backoff minimum above its maximum, node id 0, or an `io_spin` over 10 ms.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |why: &str| Err(NetError::Config(why.to_owned()));
        if self.cluster.len() > MAX_CLUSTER_LEN {
            return bad("cluster name longer than 255 bytes");
        }
        if self.max_frame_bytes < HELLO_MAX_BYTES || self.max_frame_bytes > 1 << 30 {
            return bad("max_frame_bytes must be between 512 bytes and 1 GiB");
        }
        if self.outbound_queue_bytes == 0 || self.inbound_budget_bytes == 0 {
            return bad("outbound_queue_bytes and inbound_budget_bytes must be positive");
        }
        if self.read_buffer_bytes < 64 {
            return bad("read_buffer_bytes must be at least 64");
        }
        if self.handshake_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.idle_timeout.is_some_and(|d| d.is_zero())
        {
            return bad("timeouts must be positive");
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_min > self.reconnect_backoff_max
        {
            return bad("reconnect backoff must satisfy 0 < min <= max");
        }
        if self.node_id == Some(NodeId::UNKNOWN) {
            return bad("node id 0 is reserved for unknown peers");
        }
        if self.io_spin > Duration::from_millis(10) {
            return bad("io_spin must be at most 10 ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(NetConfig::default().validate().is_ok());
        let bad = [
            NetConfig::default().cluster("x".repeat(256)),
            NetConfig::default().max_frame_bytes(10),
            NetConfig::default().outbound_queue_bytes(0),
            NetConfig::default().handshake_timeout(Duration::ZERO),
            NetConfig::default().idle_timeout(Some(Duration::ZERO)),
            NetConfig::default().reconnect_backoff_min(Duration::from_secs(10)),
            NetConfig::default().node_id(Some(NodeId(0))),
            NetConfig::default().read_buffer_bytes(1),
            NetConfig::default().io_spin(Duration::from_secs(1)),
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(NetError::Config(_))), "{c:?}");
        }
    }
}
