//! The ring's settings: [`RingConfig`] and its checks.
//!
//! Invariant of a config that passes [`RingConfig::validate`]: list sizes are between 1 and
//! [`MAX_WIRE_LIST`](crate::messages::MAX_WIRE_LIST) (so every list this peer sends is one its
//! peers accept), `2 <= k <= 64`, `tick > 0`, every period is at least one tick, and a routed
//! message may take at least one hop.

use std::time::Duration;

use selfman_ports::RingId;

use crate::messages::MAX_WIRE_LIST;

/// Settings of one relaxed-ring peer.
///
/// All timing is checked once per [`tick`](RingConfig::tick): a period shorter than a tick
/// behaves as one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// This peer's identifier; `None` takes [`RingId::of_node`] of the node's address (a
    /// fresh identifier for each incarnation).
    pub id: Option<RingId>,
    /// Length of the successor list (Beernet: 7). A peer survives the simultaneous crash of
    /// this many minus one consecutive successors.
    pub succ_list_size: usize,
    /// Length of the predecessor list (Beernet: 7): how many peers that may have this one as
    /// their successor it remembers (for routing backwards into branches).
    pub pred_list_size: usize,
    /// Arity of the finger table (DKS, Beernet: 4): fingers at `id + j·N/k^i`, `j = 1..k-1`.
    /// Lookups take `O(log_k N)` hops; the table holds up to `(k-1)·log_k(2^64)` slots but
    /// only as many distinct peers as the ring has at those distances.
    pub k: u32,
    /// How often timers are checked (join retries, lookup timeouts, periodic work).
    pub tick: Duration,
    /// How often a peer checks in with its successor (`fix`, answered with the successor's
    /// list or a better successor): the safety net for lost join messages, stale successor
    /// lists and peers that came back after a false suspicion.
    pub stabilize: Duration,
    /// How often one finger is refreshed by a lookup of its ideal identifier (round robin over
    /// the fingers beyond the successor).
    pub finger_refresh: Duration,
    /// A join with no answer at all is sent again after this long.
    pub join_timeout: Duration,
    /// How long a joiner waits after `try_later` (its successor-to-be is repairing, not in a
    /// ring yet, or waiting for the previous joiner of that gap to check in) before trying
    /// again. Beernet waits 5 s.
    pub try_later: Duration,
    /// A lookup with no answer after this long is answered
    /// [`Unavailable::Timeout`](selfman_ports::Unavailable::Timeout); it is sent a second time
    /// halfway (a finger on the way may have died).
    pub lookup_timeout: Duration,
    /// Most overlay hops a routed message may take; one that would take more is dropped (and
    /// counted as a fault: a routing loop or badly stale state).
    pub max_hops: u8,
    /// A suspected peer is kept in the crashed set (and watched, so that a false suspicion is
    /// noticed) this long, then forgotten — unless it is still the predecessor.
    pub forget_suspected: Duration,
    /// How many times a leaving peer sends its hand-over before it leaves anyway.
    pub leave_attempts: u32,
}

impl Default for RingConfig {
    /// Lists of 7 and `k = 4` (Beernet's values); tick 100 ms; stabilise every 1 s; one finger
    /// refreshed per second; joins re-sent after 2 s, 250 ms after `try_later`; lookups time
    /// out after 2 s; 64 hops at most; suspects forgotten after 30 s; 3 leave attempts.
    ///
    /// Why: with the default failure detector (crash reported within 0.5–2.1 s) a crashed
    /// successor is replaced one round trip after it is suspected, and a lost repair message
    /// is re-sent within a second; `try_later` is far shorter than Beernet's 5 s because the
    /// commonest reason for it here is a gap whose previous joiner has not checked in yet,
    /// which takes a round trip (or two ticks, if its `join_ok` was lost), and a repair about
    /// one failure-detector timeout (measured: 1 s made 32 joins one every 100 ms take up to
    /// 7.6 s). 64 hops is ten times `log_4` of a million peers.
    fn default() -> Self {
        RingConfig {
            id: None,
            succ_list_size: 7,
            pred_list_size: 7,
            k: 4,
            tick: Duration::from_millis(100),
            stabilize: Duration::from_secs(1),
            finger_refresh: Duration::from_secs(1),
            join_timeout: Duration::from_secs(2),
            try_later: Duration::from_millis(250),
            lookup_timeout: Duration::from_secs(2),
            max_hops: 64,
            forget_suspected: Duration::from_secs(30),
            leave_attempts: 3,
        }
    }
}

/// A [`RingConfig`] that breaks a rule of [`RingConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid ring config: {why} ({config:?})")]
pub struct ConfigError {
    /// The config.
    pub config: Box<RingConfig>,
    /// The rule broken.
    pub why: &'static str,
}

impl RingConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first rule broken (see the module documentation).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |why| Err(ConfigError { config: Box::new(*self), why });
        let lists = 1..=MAX_WIRE_LIST;
        if !lists.contains(&self.succ_list_size) || !lists.contains(&self.pred_list_size) {
            return err("list sizes must be between 1 and MAX_WIRE_LIST");
        }
        if !(2..=64).contains(&self.k) {
            return err("k must be between 2 and 64");
        }
        if self.tick.is_zero() {
            return err("tick must be non-zero");
        }
        let periods = [
            self.stabilize,
            self.finger_refresh,
            self.join_timeout,
            self.try_later,
            self.lookup_timeout,
        ];
        if periods.iter().any(|p| *p < self.tick) {
            return err("every period must be at least one tick");
        }
        if self.max_hops == 0 {
            return err("max_hops must be at least 1");
        }
        if self.leave_attempts == 0 {
            return err("leave_attempts must be at least 1");
        }
        Ok(())
    }

    /// This config with every broken rule repaired by clamping into range (periods shorter
    /// than a tick become one tick; a zero tick becomes the default's).
    pub fn normalized(mut self) -> RingConfig {
        let d = RingConfig::default();
        self.succ_list_size = self.succ_list_size.clamp(1, MAX_WIRE_LIST);
        self.pred_list_size = self.pred_list_size.clamp(1, MAX_WIRE_LIST);
        self.k = self.k.clamp(2, 64);
        if self.tick.is_zero() {
            self.tick = d.tick;
        }
        for p in [
            &mut self.stabilize,
            &mut self.finger_refresh,
            &mut self.join_timeout,
            &mut self.try_later,
            &mut self.lookup_timeout,
        ] {
            *p = (*p).max(self.tick);
        }
        self.max_hops = self.max_hops.max(1);
        self.leave_attempts = self.leave_attempts.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::RingConfig;

    #[test]
    fn the_default_is_valid() {
        RingConfig::default().validate().unwrap();
    }

    #[test]
    fn each_rule_is_checked_and_normalized_repairs_it() {
        let d = RingConfig::default();
        let bad = [
            RingConfig { succ_list_size: 0, ..d },
            RingConfig { pred_list_size: 1000, ..d },
            RingConfig { k: 1, ..d },
            RingConfig { tick: Duration::ZERO, ..d },
            RingConfig { stabilize: Duration::from_millis(1), ..d },
            RingConfig { max_hops: 0, ..d },
            RingConfig { leave_attempts: 0, ..d },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} passed");
            c.normalized().validate().unwrap();
        }
    }
}
