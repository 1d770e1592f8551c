//! The ring's settings: [`RingConfig`] and its checks.
//!
//! Invariant of a config that passes [`RingConfig::validate`]: list sizes are between 1 and
//! [`MAX_WIRE_LIST`](crate::messages::MAX_WIRE_LIST) (so every list this peer sends is one its
//! peers accept), `2 <= k <= 64`, `tick > 0`, every period is at least one tick, a routed
//! message may take at least one hop, the passive list holds 1 to [`MAX_PASSIVE`] entries and
//! the merge fanout is 1 to 64.

use std::time::Duration;

use selfman_ports::RingId;

use crate::messages::MAX_WIRE_LIST;

/// Largest passive list a config may ask for (each entry is about 60 bytes; a peer only
/// suspects the peers it watches, a few dozen).
pub const MAX_PASSIVE: usize = 1024;

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
    /// Most entries of the **passive list** (peers once known — successors, predecessors,
    /// fingers — and then suspected or silent, probed now and then to notice that a partition
    /// healed; see the `merge` module). The oldest entry goes first when it is full.
    pub passive_size: usize,
    /// How often the passive list is looked at; each round probes at most
    /// [`probe_batch`](RingConfig::probe_batch) entries that are due.
    pub probe_every: Duration,
    /// Entries probed per round at most: with `probe_every` this bounds a peer's probing rate.
    pub probe_batch: usize,
    /// Longest wait between two probes of one entry: the first probe waits `probe_every`,
    /// each further one twice as long as the one before, up to this.
    pub probe_backoff_max: Duration,
    /// A passive entry that never answered is dropped this long after it was added (a
    /// partition longer than this is not merged by probing).
    pub passive_ttl: Duration,
    /// How many peers of its own ring a peer that found another ring tells to merge too
    /// (each is given a share of the circle to pass on): 1 is Beernet's single walk, which
    /// takes time linear in the ring's size; more start walks in parallel.
    pub merge_fanout: u32,
    /// How many times a merge notice is passed on (fanout `f`, depth `d`: up to
    /// `f + f² + … + f^d` peers start a walk of their own).
    pub merge_depth: u8,
    /// A peer starts (or passes on) at most one merge notice per this period; others that
    /// arrive meanwhile are dropped (walks already under way merge the rest).
    pub merge_cooldown: Duration,
}

impl Default for RingConfig {
    /// Lists of 7 and `k = 4` (Beernet's values); tick 100 ms; stabilise every 1 s; one finger
    /// refreshed per second; joins re-sent after 2 s, 250 ms after `try_later`; lookups time
    /// out after 2 s; 64 hops at most; suspects forgotten after 30 s; 3 leave attempts;
    /// a passive list of 16, looked at every 1 s, 2 probes a round at most, backing off to one
    /// probe per entry every 8 s, entries dropped after 10 minutes; merge notices passed to 4
    /// peers, 3 times (up to 84 walks), one per 5 s at most.
    ///
    /// Why the merge values: Beernet probes 2 queued peers every 5 s; backing off to 8 s
    /// bounds the probing of a peer during a long partition to 2 messages a second (16 entries
    /// / 8 s) while a healed partition is noticed within 9 s; fanout 4 and depth 3 start a
    /// walk every ~120 peers of a 10,000-peer ring, so a merge takes about as long as a walk
    /// over 120 peers instead of 10,000.
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
            passive_size: 16,
            probe_every: Duration::from_secs(1),
            probe_batch: 2,
            probe_backoff_max: Duration::from_secs(8),
            passive_ttl: Duration::from_secs(600),
            merge_fanout: 4,
            merge_depth: 3,
            merge_cooldown: Duration::from_secs(5),
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
        if !(1..=MAX_PASSIVE).contains(&self.passive_size) || self.probe_batch == 0 {
            return err("passive_size must be between 1 and MAX_PASSIVE, probe_batch at least 1");
        }
        if !(1..=64).contains(&self.merge_fanout) {
            return err("merge_fanout must be between 1 and 64");
        }
        let merge = [self.probe_every, self.probe_backoff_max, self.merge_cooldown];
        if merge.iter().any(|p| *p < self.tick) || self.probe_backoff_max < self.probe_every {
            return err(
                "merge periods must be at least one tick, the backoff at least probe_every",
            );
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
        self.passive_size = self.passive_size.clamp(1, MAX_PASSIVE);
        self.probe_batch = self.probe_batch.max(1);
        self.merge_fanout = self.merge_fanout.clamp(1, 64);
        for p in [&mut self.probe_every, &mut self.probe_backoff_max, &mut self.merge_cooldown] {
            *p = (*p).max(self.tick);
        }
        self.probe_backoff_max = self.probe_backoff_max.max(self.probe_every);
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
            RingConfig { passive_size: 0, ..d },
            RingConfig { probe_batch: 0, ..d },
            RingConfig { merge_fanout: 0, ..d },
            RingConfig { probe_backoff_max: Duration::from_millis(500), ..d },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} passed");
            c.normalized().validate().unwrap();
        }
    }
}
