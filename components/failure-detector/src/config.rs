//! The detector's timing: [`FdConfig`] and its checks.
//!
//! Invariant of a config that passes [`FdConfig::validate`]:
//! `0 < period <= initial_timeout <= max_timeout` and `increment > 0`, so the timeout of a
//! wrongly suspected peer grows until it is at least as long as that peer's real round trip
//! (or reaches the cap).

use std::fmt;
use std::time::Duration;

/// Timing of the heartbeat failure detector.
///
/// Every `period` the detector probes each monitored address once. A peer silent for longer
/// than its current timeout is suspected; the timeout starts at `initial_timeout` and grows by
/// `increment` every time a suspicion turns out wrong, up to `max_timeout`.
///
/// A crash is detected within `timeout + period` of the last message the crashed process sent
/// (one check per period), so with the defaults within 0.5 s at first and never later than
/// 2.1 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdConfig {
    /// How often monitored peers are probed (and suspicions checked).
    pub period: Duration,
    /// How long a peer may be silent before it is suspected, at first.
    pub initial_timeout: Duration,
    /// How much a peer's timeout grows each time it was suspected wrongly.
    pub increment: Duration,
    /// The largest timeout: a peer is always suspected after this much silence (plus one
    /// period).
    pub max_timeout: Duration,
}

impl Default for FdConfig {
    /// Probes every 100 ms; first timeout 400 ms; +200 ms per false suspicion; cap 2 s.
    ///
    /// Why: on a LAN a round trip takes well under a millisecond, so a peer that misses
    /// three probes in a row (400 ms with a 100 ms period) is almost surely gone, and a
    /// crash is reported within 0.5 s. Each wrong suspicion (a loaded host, a lossy link)
    /// buys that peer 200 ms more patience, up to Beernet's cap of 2 s, so detection never
    /// takes longer than about 2.1 s. Probing costs two small messages per monitored peer per
    /// period (20 messages/s per peer); with thousands of peers per node, raise `period`
    /// (and the timeouts with it).
    fn default() -> Self {
        FdConfig {
            period: Duration::from_millis(100),
            initial_timeout: Duration::from_millis(400),
            increment: Duration::from_millis(200),
            max_timeout: Duration::from_secs(2),
        }
    }
}

impl FdConfig {
    /// Beernet's published numbers: first timeout 500 ms, +500 ms per false suspicion, cap
    /// 2 s (probing every 250 ms).
    pub fn beernet() -> Self {
        FdConfig {
            period: Duration::from_millis(250),
            initial_timeout: Duration::from_millis(500),
            increment: Duration::from_millis(500),
            max_timeout: Duration::from_secs(2),
        }
    }

    /// Checks that the timing makes sense.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first rule broken: `period` must be non-zero,
    /// `period <= initial_timeout <= max_timeout`, and `increment` non-zero (a timeout that
    /// cannot grow gives no eventual accuracy when message delays are unknown).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |why| Err(ConfigError { config: *self, why });
        if self.period.is_zero() {
            return err("period must be non-zero");
        }
        if self.initial_timeout < self.period {
            return err("initial_timeout must be at least one period");
        }
        if self.max_timeout < self.initial_timeout {
            return err("max_timeout must be at least initial_timeout");
        }
        if self.increment.is_zero() {
            return err("increment must be non-zero");
        }
        Ok(())
    }

    /// The nearest valid config: a zero period becomes 1 ms, timeouts are raised to satisfy
    /// `period <= initial_timeout <= max_timeout`, a zero increment becomes one period.
    pub fn normalized(self) -> FdConfig {
        let period = if self.period.is_zero() { Duration::from_millis(1) } else { self.period };
        let initial_timeout = self.initial_timeout.max(period);
        let max_timeout = self.max_timeout.max(initial_timeout);
        let increment = if self.increment.is_zero() { period } else { self.increment };
        FdConfig { period, initial_timeout, increment, max_timeout }
    }
}

/// An [`FdConfig`] that breaks a rule of [`FdConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    config: FdConfig,
    why: &'static str,
}

impl ConfigError {
    /// The rule that was broken.
    pub fn reason(&self) -> &'static str {
        self.why
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid failure detector config ({}): {:?}", self.why, self.config)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_and_beernet_are_valid() {
        assert_eq!(FdConfig::default().validate(), Ok(()));
        assert_eq!(FdConfig::beernet().validate(), Ok(()));
    }

    #[test]
    fn each_rule_is_checked_and_normalized_fixes_it() {
        let good = FdConfig::default();
        let bad = [
            FdConfig { period: Duration::ZERO, ..good },
            FdConfig { initial_timeout: ms(50), ..good },
            FdConfig { max_timeout: ms(300), ..good },
            FdConfig { increment: Duration::ZERO, ..good },
        ];
        let mut reasons = Vec::new();
        for b in bad {
            let e = b.validate().unwrap_err();
            assert!(e.to_string().contains(e.reason()));
            reasons.push(e.reason());
            assert_eq!(b.normalized().validate(), Ok(()), "{b:?}");
        }
        reasons.dedup();
        assert_eq!(reasons.len(), 4, "each config breaks a different rule: {reasons:?}");
        assert_eq!(good.normalized(), good);
    }
}
