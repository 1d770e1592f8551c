//! Supervision: what a parent does when a child fails.
//!
//! When a handler panics or returns a recoverable error, the component becomes *faulty* (it
//! stops handling events; they stay queued) and a [`FaultReport`] goes to its parent. A parent
//! with a [`SupervisorPolicy`] decides with a [`Directive`]; a parent without one passes the
//! report on to its own parent, up to the system root, whose policy is explicit configuration
//! (default: log the failure and stop the failed component's subtree — the process never exits
//! silently). Unrecoverable failures destroy the failed subtree whatever the policy says.
//!
//! A restart builds a fresh definition from the component's factory (the one it was created or
//! last replaced with); the component keeps its identity, its channels and its queued events
//! (the event whose handler failed is not retried). Strategies, as in Erlang/OTP:
//! [`Strategy::OneForOne`] restarts the failed component, [`Strategy::OneForAll`] all its
//! siblings, [`Strategy::RestForOne`] it and the siblings created after it. Restart intensity:
//! at most `max_restarts` within `within`, otherwise the supervisor escalates (fails itself).
//! Backoff: the k-th restart within the window waits `initial · 2^k` (capped at `max`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::component::FaultReport;

/// What a supervisor does about a failed component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Directive {
    /// Build a fresh instance from its factory (same channels, queued events kept), per the
    /// policy's [`Strategy`], intensity and backoff.
    Restart,
    /// Keep the instance and continue with the next event.
    Resume,
    /// Stop its subtree (events keep queueing; it can be started again).
    Stop,
    /// Destroy its subtree.
    Destroy,
    /// Fail the supervisor itself, handing the decision to its parent.
    Escalate,
    /// Leave it faulty: it handles nothing and its events queue up until someone replaces it
    /// ([`System::replace`](crate::System::replace) resumes it with the new instance), stops
    /// or kills it.
    Hold,
}

/// Which components a restart applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Strategy {
    /// Only the failed component.
    OneForOne,
    /// The failed component and all its siblings.
    OneForAll,
    /// The failed component and the siblings created after it.
    RestForOne,
}

type Decider = Arc<dyn Fn(&FaultReport) -> Directive + Send + Sync>;

/// A parent's supervision policy (see the module docs).
#[derive(Clone)]
pub struct SupervisorPolicy {
    pub(crate) strategy: Strategy,
    pub(crate) decide: Decider,
    pub(crate) max_restarts: usize,
    pub(crate) within: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
}

impl SupervisorPolicy {
    /// Restart failed children with `strategy`; at most 3 restarts within 5 s (then escalate),
    /// no backoff.
    pub fn restart(strategy: Strategy) -> Self {
        SupervisorPolicy {
            strategy,
            decide: Arc::new(|_| Directive::Restart),
            max_restarts: 3,
            within: Duration::from_secs(5),
            backoff_initial: Duration::ZERO,
            backoff_max: Duration::ZERO,
        }
    }

    /// Apply the same directive to every failure (with [`Strategy::OneForOne`] for restarts).
    pub fn always(directive: Directive) -> Self {
        Self::restart(Strategy::OneForOne).deciding(move |_| directive)
    }

    /// The root's default: log the failure and stop the failed component's subtree.
    pub fn log_and_stop() -> Self {
        Self::always(Directive::Stop)
    }

    /// Decide per failure (e.g. by `report.error` or `report.type_name`).
    pub fn deciding(
        mut self,
        f: impl Fn(&FaultReport) -> Directive + Send + Sync + 'static,
    ) -> Self {
        self.decide = Arc::new(f);
        self
    }

    /// Restart intensity: more than `max_restarts` restarts within `within` escalate instead.
    pub fn intensity(mut self, max_restarts: usize, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// Exponential backoff: the k-th restart within the intensity window is delayed by
    /// `initial · 2^k`, at most `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// The restart strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub(crate) fn delay(&self, k: usize) -> Duration {
        if self.backoff_initial.is_zero() {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(k.min(31) as u32).unwrap_or(u32::MAX);
        self.backoff_initial.saturating_mul(factor).min(self.backoff_max)
    }
}

impl fmt::Debug for SupervisorPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorPolicy")
            .field("strategy", &self.strategy)
            .field("max_restarts", &self.max_restarts)
            .field("within", &self.within)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = SupervisorPolicy::restart(Strategy::OneForOne)
            .backoff(Duration::from_millis(10), Duration::from_millis(50));
        let d: Vec<u128> = (0..5).map(|k| p.delay(k).as_millis()).collect();
        assert_eq!(d, [10, 20, 40, 50, 50]);
        assert_eq!(SupervisorPolicy::log_and_stop().delay(3), Duration::ZERO);
        assert_eq!(p.delay(200), Duration::from_millis(50));
    }
}
