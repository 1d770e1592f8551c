//! The settings of one replication node: [`ReplicationConfig`] and its checks.
//!
//! Invariant of a config that passes [`ReplicationConfig::validate`]: `1 <= f <=`
//! [`MAX_F`], batches fit the wire bounds of [`messages`](crate::messages), every period is
//! non-zero and at least one tick, and a transfer's timeout is longer than its retransmission
//! period (so a lost batch is re-sent before the transfer is given up).

use std::time::Duration;

use selfman_ports::HostId;

use crate::messages::{MAX_BATCH_BYTES, MAX_BATCH_ITEMS};

/// The largest replication factor: the quorum coordinator tracks answered replicas in a
/// 64-bit mask, and a larger `f` has no use on a ring (each replica is a full copy).
pub const MAX_F: u32 = 64;

/// Settings of one replication node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// The replication factor `f` (Beernet and Scalaris: 4). Every node of a ring must use the
    /// same one.
    pub f: u32,
    /// The host this node runs on (placement keeps the replicas of a key on distinct hosts).
    pub host: HostId,
    /// How often timers are checked (timeouts, retransmissions, repair rounds).
    pub tick: Duration,
    /// A quorum read or a replica operation with no answer after this long fails with a
    /// timeout; replicas that have not answered are asked again at each quarter of it.
    pub op_timeout: Duration,
    /// A replica that answered "not ready" (its range is moving or being rebuilt) is asked
    /// again after this long, until the operation's timeout.
    pub retry: Duration,
    /// Operations (reads and replica operations) this node coordinates at once at most; more
    /// are refused as overloaded.
    pub max_pending: usize,
    /// Items per transfer message (hand-over, rebuild, repair), at most
    /// [`MAX_BATCH_ITEMS`]. Scalaris moves 1,000 per message.
    pub batch_items: usize,
    /// Bytes of keys and values per transfer message, at most [`MAX_BATCH_BYTES`] (one larger
    /// item still goes alone).
    pub batch_bytes: usize,
    /// Transfer messages a hand-over keeps unacknowledged at once.
    pub window: usize,
    /// An unacknowledged transfer or repair message is sent again after this long.
    pub retransmit: Duration,
    /// A transfer (or rebuild source) with no progress for this long is given up (and
    /// retried from the start, or rebuilt from the replicas).
    pub transfer_timeout: Duration,
    /// How long a peer that gained a range waits for the old holder's offer before it
    /// rebuilds the range from the other replicas instead (the old holder may have crashed
    /// without the detector saying so yet).
    pub offer_wait: Duration,
    /// How often this node runs an anti-entropy round over one of its ranges (Scalaris: every
    /// 10 minutes with probability 1/3).
    pub repair_period: Duration,
    /// The longest lock lease the transaction layer gives. A replica rebuilt from the others
    /// abstains from voting for transactions it holds no vote of for this long, because its
    /// crashed predecessor may have voted for them.
    pub max_lease: Duration,
    /// A graceful leave that has not handed everything over after this long leaves anyway
    /// (the successor then rebuilds what is missing from the replicas).
    pub leave_timeout: Duration,
}

impl Default for ReplicationConfig {
    /// `f = 4` on host 0; tick 50 ms; operations time out after 2 s, "not ready" replicas asked
    /// again every 100 ms; 4,096 operations in flight; batches of 1,000 items or 1 MiB, 4 in
    /// flight, re-sent after 500 ms, transfers given up after 5 s without progress; a gained
    /// range waits 2 s for an offer; a repair round every 10 s; leases up to 10 s; a leave
    /// gives up after 30 s.
    ///
    /// Why: an operation crosses the ring twice (routed there, answered directly), about
    /// `log_4 n` hops each; 2 s is the ring's own lookup timeout. The offer wait covers the
    /// failure detector's usual suspicion time (0.5–2 s), so a crashed old holder is usually
    /// detected first and its range rebuilt at once. 10 s between repair rounds suits the
    /// simulator; deployments with millions of items use minutes.
    fn default() -> Self {
        ReplicationConfig {
            f: 4,
            host: HostId(0),
            tick: Duration::from_millis(50),
            op_timeout: Duration::from_secs(2),
            retry: Duration::from_millis(100),
            max_pending: 4096,
            batch_items: 1000,
            batch_bytes: 1 << 20,
            window: 4,
            retransmit: Duration::from_millis(500),
            transfer_timeout: Duration::from_secs(5),
            offer_wait: Duration::from_secs(2),
            repair_period: Duration::from_secs(10),
            max_lease: Duration::from_secs(10),
            leave_timeout: Duration::from_secs(30),
        }
    }
}

/// A [`ReplicationConfig`] that breaks a rule of [`ReplicationConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid replication config: {why} ({config:?})")]
pub struct ConfigError {
    /// The config.
    pub config: Box<ReplicationConfig>,
    /// The rule broken.
    pub why: &'static str,
}

impl ReplicationConfig {
    /// The majority of `f` replicas: `f/2 + 1`.
    pub fn quorum(&self) -> u32 {
        self.f / 2 + 1
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first rule broken (see the module documentation).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |why| Err(ConfigError { config: Box::new(*self), why });
        if !(1..=MAX_F).contains(&self.f) {
            return err("f must be between 1 and MAX_F");
        }
        if self.tick.is_zero() {
            return err("tick must be non-zero");
        }
        let periods = [
            self.op_timeout,
            self.retry,
            self.retransmit,
            self.transfer_timeout,
            self.offer_wait,
            self.repair_period,
            self.leave_timeout,
        ];
        if periods.iter().any(|p| *p < self.tick) {
            return err("every period must be at least one tick");
        }
        if self.transfer_timeout <= self.retransmit {
            return err("transfer_timeout must be longer than retransmit");
        }
        if !(1..=MAX_BATCH_ITEMS).contains(&self.batch_items) {
            return err("batch_items must be between 1 and MAX_BATCH_ITEMS");
        }
        if !(1..=MAX_BATCH_BYTES).contains(&self.batch_bytes) {
            return err("batch_bytes must be between 1 and MAX_BATCH_BYTES");
        }
        if self.window == 0 || self.max_pending == 0 {
            return err("window and max_pending must be non-zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ReplicationConfig;

    #[test]
    fn the_default_is_valid_and_its_quorum_is_a_majority() {
        let c = ReplicationConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.quorum(), 3);
        for (f, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            assert_eq!(ReplicationConfig { f, ..c }.quorum(), q, "f = {f}");
        }
    }

    #[test]
    fn each_rule_is_checked() {
        let c = ReplicationConfig::default();
        let bad = [
            ReplicationConfig { f: 0, ..c },
            ReplicationConfig { f: 65, ..c },
            ReplicationConfig { tick: Duration::ZERO, ..c },
            ReplicationConfig { retry: Duration::from_millis(1), ..c },
            ReplicationConfig { transfer_timeout: c.retransmit, ..c },
            ReplicationConfig { batch_items: 0, ..c },
            ReplicationConfig { batch_bytes: usize::MAX, ..c },
            ReplicationConfig { window: 0, ..c },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?} passed");
        }
    }
}
