//! The [`Timer`] port and the system's timer service.
//!
//! A component requires `Timer`, connects it to [`System::timer`](crate::System::timer), and
//! requests timeouts with ids of its own choosing; each [`Timeout`] comes back only over the
//! channel it was requested on. The service delegates to the runtime's
//! [`TimerDriver`](crate::TimerDriver) — a timer thread in deployment, the virtual clock in
//! simulation.
//!
//! Cancellation: after the service has handled a `Cancel`, the timer does not fire again; a
//! timeout that had already fired may still be queued at the requirer, so requirers should ignore
//! ids they no longer expect.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::channel::ChannelCore;
use crate::component::cell::{ComponentCell, Control};
use crate::component::context::Context;
use crate::component::definition::{ComponentDefinition, Setup};
use crate::handler::{Handled, HandlerError};
use crate::port::Port;
use crate::port_handle::{Provided, Required};
use crate::runtime::{TimerEntry, TimerKey};

/// A requirer-chosen timer id (unique per requirer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// Requests to the timer service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerRequest {
    /// Fire once, after `delay`.
    Once {
        /// The requirer's id for it.
        id: TimerId,
        /// Delay from now.
        delay: Duration,
    },
    /// Fire after `delay`, then every `period` until cancelled.
    Periodic {
        /// The requirer's id for it.
        id: TimerId,
        /// Delay to the first firing.
        delay: Duration,
        /// Interval between later firings (must be non-zero).
        period: Duration,
    },
    /// Stop a timer (no effect if unknown or already fired).
    Cancel {
        /// The id it was scheduled with.
        id: TimerId,
    },
}

/// A timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// The id it was scheduled with.
    pub id: TimerId,
}

/// The timer port: `TimerRequest` in, `Timeout` out.
#[derive(Debug)]
pub struct Timer;

impl Port for Timer {
    type Request = TimerRequest;
    type Indication = Timeout;
}

impl Required<Timer> {
    /// Requests a [`Timeout`] with `id` after `delay`.
    pub fn schedule_once(&mut self, id: TimerId, delay: Duration) {
        self.trigger(TimerRequest::Once { id, delay });
    }

    /// Requests a [`Timeout`] with `id` after `delay` and then every `period`.
    pub fn schedule_periodic(&mut self, id: TimerId, delay: Duration, period: Duration) {
        self.trigger(TimerRequest::Periodic { id, delay, period });
    }

    /// Cancels the timer `id`.
    pub fn cancel(&mut self, id: TimerId) {
        self.trigger(TimerRequest::Cancel { id });
    }
}

/// Where a fired timer goes: the requirer's end of the channel a timeout was requested over, or
/// (for supervision backoff) a component to restart.
#[derive(Debug)]
pub struct TimerTarget(Target);

#[derive(Debug)]
enum Target {
    Timeout { channel: Weak<ChannelCore<Timer>>, id: TimerId },
    Restart(Weak<ComponentCell>),
}

impl TimerTarget {
    pub(crate) fn restart(cell: &Arc<ComponentCell>) -> Self {
        TimerTarget(Target::Restart(Arc::downgrade(cell)))
    }

    /// Delivers it. Returns `false` if the target is gone (the driver should then forget the
    /// timer).
    pub fn fire(&self) -> bool {
        match &self.0 {
            Target::Timeout { channel, id } => match channel.upgrade() {
                Some(ch) if ch.is_connected() => {
                    let ev = Timeout { id: *id };
                    if ch.accepts_indication(&ev) {
                        ch.deliver_indication(ev);
                    }
                    true
                }
                _ => false,
            },
            Target::Restart(cell) => match cell.upgrade() {
                Some(cell) => {
                    cell.send_control(Control::Restart);
                    true
                }
                None => false,
            },
        }
    }
}

impl std::fmt::Debug for ComponentCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Component({})", self.id())
    }
}

impl std::fmt::Debug for ChannelCore<Timer> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TimerChannel({})", self.id)
    }
}

/// The component serving the [`Timer`] port of a system.
#[derive(Default)]
pub(crate) struct TimerService {
    port: Provided<Timer>,
    ctx: Context,
}

#[derive(Debug, thiserror::Error)]
enum TimerError {
    #[error(
        "timer request {0:?} was injected without a channel; connect a Required<Timer> instead"
    )]
    NoOrigin(TimerRequest),
    #[error("periodic timer {0:?} has a zero period")]
    ZeroPeriod(TimerId),
}

impl TimerService {
    fn on_request(&mut self, req: TimerRequest) -> Handled {
        let Some(origin) = self.port.origin() else {
            return Err(HandlerError::benign(TimerError::NoOrigin(req)));
        };
        let Ok(channel) = self.port.channel(origin) else {
            return Ok(()); // the requirer disconnected meanwhile: nothing to serve
        };
        let timers = Arc::clone(&self.ctx.system_shared().parts.timers);
        let (id, delay, period) = match req {
            TimerRequest::Once { id, delay } => (id, delay, None),
            TimerRequest::Periodic { id, period, .. } if period.is_zero() => {
                return Err(HandlerError::benign(TimerError::ZeroPeriod(id)));
            }
            TimerRequest::Periodic { id, delay, period } => (id, delay, Some(period)),
            TimerRequest::Cancel { id } => {
                timers.cancel(TimerKey { channel: channel.id, id: id.0 });
                return Ok(());
            }
        };
        let key = TimerKey { channel: channel.id, id: id.0 };
        let deadline = timers.now() + delay;
        let target = TimerTarget(Target::Timeout { channel: Arc::downgrade(&channel), id });
        timers.schedule(TimerEntry { key, deadline, period, target });
        Ok(())
    }
}

impl ComponentDefinition for TimerService {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|s| &mut s.port, Self::on_request);
        setup.context(|s| &mut s.ctx);
    }
}
