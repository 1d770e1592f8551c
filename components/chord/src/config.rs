//! [`ChordConfig`]: the settings of one Chord peer, with defaults and validation.

use std::time::Duration;

use selfman_ports::RingId;

/// Settings of one Chord peer.
///
/// All timing is checked once per [`tick`](ChordConfig::tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChordConfig {
    /// This peer's identifier; `None` takes [`RingId::of_node`] of its address.
    pub id: Option<RingId>,
    /// Length of the successor list (`r` in the Chord paper). A peer survives the
    /// simultaneous crash of `r - 1` consecutive successors.
    pub succ_list_size: usize,
    /// How often timers are checked.
    pub tick: Duration,
    /// The stabilisation period: how often a peer asks its successor for its predecessor and
    /// successor list, and notifies it. Chord's correctness after joins and failures rests on
    /// this periodic work.
    pub stabilize: Duration,
    /// How often `fingers_per_fix` fingers are refreshed by a lookup of their start
    /// (`fix_fingers`, round robin over the 64 fingers).
    pub fix_fingers: Duration,
    /// Fingers refreshed per `fix_fingers` period.
    pub fingers_per_fix: usize,
    /// A join with no answer is sent again after this long.
    pub join_timeout: Duration,
    /// A lookup with no answer after this long is answered
    /// [`Unavailable::Timeout`](selfman_ports::Unavailable::Timeout).
    pub lookup_timeout: Duration,
    /// Most overlay hops a lookup or routed payload may take.
    pub max_hops: u32,
    /// How many successor-list entries, nearest first, the failure detector watches (1:
    /// the successor only, as in the Chord paper). With more, a run of consecutive crashed
    /// successors is detected in parallel instead of one after another, at the cost of one
    /// more heartbeat stream per entry.
    pub watched_succs: usize,
    /// How often a peer checks its place in the ring through another peer than its
    /// successor (the ring check): it asks a known peer — a contact, finger or predecessor,
    /// round robin — for the successor of its own identifier, and takes a closer successor,
    /// or notifies the peer found, by the rules of stabilisation. Stabilisation alone cannot
    /// undo a ring that split into separate cycles (after a partition, or peers leaving a
    /// segment behind); this check joins them again.
    pub check_ring: Duration,
}

impl Default for ChordConfig {
    /// Successor lists of 7 (as the relaxed ring's), tick 100 ms, stabilise every 1 s (the
    /// relaxed ring checks in with its successor as often), fix 4 fingers per second, joins
    /// re-sent after 2 s, lookups time out after 2 s, 64 hops at most, the successor alone
    /// watched, the ring checked every 4 s.
    fn default() -> Self {
        ChordConfig {
            id: None,
            succ_list_size: 7,
            tick: Duration::from_millis(100),
            stabilize: Duration::from_secs(1),
            fix_fingers: Duration::from_secs(1),
            fingers_per_fix: 4,
            join_timeout: Duration::from_secs(2),
            lookup_timeout: Duration::from_secs(2),
            max_hops: 64,
            watched_succs: 1,
            check_ring: Duration::from_secs(4),
        }
    }
}

/// A [`ChordConfig`] that breaks a rule of [`ChordConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid chord config: {why} ({config:?})")]
pub struct ConfigError {
    /// The config.
    pub config: Box<ChordConfig>,
    /// The rule broken.
    pub why: &'static str,
}

impl ChordConfig {
    /// Checks the settings: a successor list of 1 to 64 entries, positive periods no shorter
    /// than the tick, 1 to 64 fingers per fix, 1 to 1024 hops, 1 to `succ_list_size` watched
    /// successors.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first rule broken.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |why| Err(ConfigError { config: Box::new(*self), why });
        if !(1..=64).contains(&self.succ_list_size) {
            return err("succ_list_size must be between 1 and 64");
        }
        if self.tick.is_zero() {
            return err("tick must be positive");
        }
        for d in [
            self.stabilize,
            self.fix_fingers,
            self.join_timeout,
            self.lookup_timeout,
            self.check_ring,
        ] {
            if d < self.tick {
                return err("stabilize, fix_fingers, join_timeout, lookup_timeout and check_ring must be at least one tick");
            }
        }
        if !(1..=64).contains(&self.fingers_per_fix) {
            return err("fingers_per_fix must be between 1 and 64");
        }
        if !(1..=1024).contains(&self.max_hops) {
            return err("max_hops must be between 1 and 1024");
        }
        if !(1..=self.succ_list_size).contains(&self.watched_succs) {
            return err("watched_succs must be between 1 and succ_list_size");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(ChordConfig::default().validate().is_ok());
        let d = ChordConfig::default();
        let bad = [
            (ChordConfig { succ_list_size: 0, ..d }, "succ_list_size"),
            (ChordConfig { tick: Duration::ZERO, ..d }, "tick"),
            (ChordConfig { stabilize: Duration::from_millis(1), ..d }, "stabilize"),
            (ChordConfig { fingers_per_fix: 0, ..d }, "fingers_per_fix"),
            (ChordConfig { max_hops: 0, ..d }, "max_hops"),
            (ChordConfig { watched_succs: 0, ..d }, "watched_succs"),
            (ChordConfig { watched_succs: 8, ..d }, "watched_succs"),
            (ChordConfig { check_ring: Duration::ZERO, ..d }, "check_ring"),
        ];
        for (c, field) in bad {
            let e = c.validate().unwrap_err();
            assert!(e.why.contains(field), "{e}");
        }
    }
}
