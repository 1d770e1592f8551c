//! [`HeartbeatFd`]: the component around the [`Detector`]. It owns no logic of its own: it
//! turns port events into detector inputs and carries out the detector's outputs.
//!
//! Live replacement: [`HeartbeatFd::transfer`] hands everything the running instance knows
//! (the detector's state and which channel each user monitors over) to its replacement, so a
//! swap under `System::replace_with_state` loses no watch, no subscriber and no suspicion.
//! The replacement's `on_start` schedules the tick timer again under the same id over the same
//! (surviving) timer channel, which *replaces* the old instance's timer: exactly one periodic
//! timer runs after a swap, at the new period.

use std::collections::BTreeMap;

use selfman_core::{
    ComponentDefinition, Context, Handled, LinkStatus, NetIndication, Network, Origin, Provided,
    Required, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{FailureDetector, FdRequest};

use crate::config::FdConfig;
#[cfg(feature = "flaws")]
use crate::detector::Flaw;
use crate::detector::{Detector, DetectorState, Output, Subscriber};
use crate::messages::FdMessage;

const TICK: TimerId = TimerId(1);

/// The heartbeat failure detector component: provides [`FailureDetector`], requires
/// `Network<`[`FdMessage`]`>` and [`Timer`].
///
/// Each user (each channel connected to the provided port) gets indications only about the
/// processes it monitors; requests injected without a channel (`ProvidedRef::request`) count
/// as one more user whose indications go to every channel. One periodic timer drives all
/// monitored peers. [`build`](crate::build) creates and wires it on a host.
pub struct HeartbeatFd {
    ctx: Context,
    net: Required<Network<FdMessage>>,
    timer: Required<Timer>,
    port: Provided<FailureDetector>,
    detector: Detector,
    out: Vec<Output>,
    /// The channel of each subscriber, by channel id.
    origins: BTreeMap<u64, Origin>,
    /// Stopped (so the next start is a resumption after a pause).
    paused: bool,
}

impl HeartbeatFd {
    /// A detector with the given timing (an invalid config is replaced by
    /// [`FdConfig::normalized`]).
    pub fn new(config: FdConfig) -> HeartbeatFd {
        HeartbeatFd {
            ctx: Context::new(),
            net: Required::new(),
            timer: Required::new(),
            port: Provided::new(),
            detector: Detector::new(config),
            out: Vec::new(),
            origins: BTreeMap::new(),
            paused: false,
        }
    }

    /// The state transfer for a live replacement: `new` takes over everything `old` knows —
    /// the detector's state ([`Detector::take_over`], so under `new`'s config, timeouts
    /// clamped into its range) and the channel each user monitors over — and `old` is left
    /// knowing nothing. Use it with `System::replace_with_state`, or through
    /// [`reconfigure`](crate::reconfigure):
    ///
    /// ```
    /// use selfman_core::{Host, NodeAddr, NodeId};
    /// use selfman_failure_detector::{build, FdConfig, HeartbeatFd};
    /// use selfman_ports::{FailureDetector, FdRequest};
    /// use selfman_sim::{address_of, Simulation};
    ///
    /// let sim = Simulation::new(1);
    /// let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    /// let s = slot.clone();
    /// sim.add_node(move |h| {
    ///     let fd = build(h, FdConfig::default())?;
    ///     let peer = NodeAddr::new(address_of(1), NodeId::UNKNOWN);
    ///     fd.provided::<FailureDetector>()?.request(FdRequest::Monitor(peer))?;
    ///     *s.lock().unwrap() = Some(fd);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// sim.run_for(std::time::Duration::from_secs(1));
    /// let fd = slot.lock().unwrap().take().unwrap();
    /// let swap = sim
    ///     .system()
    ///     .replace_with_state(&fd, || HeartbeatFd::new(FdConfig::beernet()), HeartbeatFd::transfer)
    ///     .unwrap();
    /// // In the simulator the swap happens at the component's next turn: run, then look.
    /// sim.run_for(std::time::Duration::from_millis(1));
    /// assert!(matches!(swap.try_outcome(), Some(Ok(()))));
    /// let (config, monitored) =
    ///     fd.on_definition(|d| (*d.detector().config(), d.detector().monitored())).unwrap();
    /// assert_eq!((config, monitored), (FdConfig::beernet(), 1));
    /// ```
    pub fn transfer(old: &mut HeartbeatFd, new: &mut HeartbeatFd) {
        new.detector.take_over(old.detector.save());
        old.detector.take_over(DetectorState::default());
        new.origins = std::mem::take(&mut old.origins);
        new.paused = old.paused;
    }

    /// This detector with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> HeartbeatFd {
        self.detector = self.detector.with_flaw(flaw);
        self
    }

    /// The detector's state (for inspection and tests, through
    /// [`Component::on_definition`](selfman_core::Component::on_definition)).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    fn on_request(&mut self, req: FdRequest) -> Handled {
        let sub = match self.port.origin() {
            Some(o) => {
                self.origins.insert(o.channel_id(), o);
                Subscriber(o.channel_id())
            }
            None => Subscriber::ALL,
        };
        match req {
            FdRequest::Monitor(n) => self.detector.monitor(sub, n, self.ctx.now(), &mut self.out),
            FdRequest::Unmonitor(n) => self.detector.unmonitor(sub, n),
            other => tracing::warn!(request = ?other, "failure detector: unsupported request"),
        }
        self.flush();
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<FdMessage>) -> Handled {
        match ev {
            NetIndication::Deliver(d) => {
                self.detector.on_message(d.from, d.msg, self.ctx.now(), &mut self.out)
            }
            NetIndication::Status(s) => {
                if matches!(s.status, LinkStatus::Lost(_) | LinkStatus::Unreachable(_)) {
                    self.detector.on_hint(s.peer, &mut self.out);
                }
            }
        }
        self.flush();
        Ok(())
    }

    fn on_timeout(&mut self, t: Timeout) -> Handled {
        if t.id == TICK {
            self.detector.tick(self.ctx.now(), &mut self.out);
            self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) {
        let mut gone = Vec::new();
        for o in self.out.drain(..) {
            match o {
                Output::Send { to, msg } => self.net.send(to, msg),
                Output::Indicate { to: Subscriber::ALL, indication } => {
                    self.port.trigger(indication);
                }
                Output::Indicate { to, indication } => {
                    let sent = match self.origins.get(&to.0) {
                        Some(&o) => self.port.trigger_to(o, indication).is_ok(),
                        None => false,
                    };
                    if !sent {
                        gone.push(to);
                    }
                }
            }
        }
        for sub in gone {
            // Its channel was disconnected: it monitors nothing any more.
            self.origins.remove(&sub.0);
            self.detector.remove_subscriber(sub);
        }
    }
}

impl ComponentDefinition for HeartbeatFd {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.provide(|c| &mut c.port, Self::on_request);
    }

    /// Runs when the component starts, when it is started again after a stop, and when this
    /// instance takes over a running one (a hot swap). After a stop, the silence of the pause is
    /// forgiven ([`Detector::resume`]); after a swap nothing was paused, so nothing is forgiven.
    /// In every case the tick timer is (re)scheduled under its one id (`TICK`): scheduling an id
    /// again over the same channel replaces the timer, so a replacement's new period takes
    /// effect and the old instance's timer does not keep firing beside it.
    fn on_start(&mut self) -> Handled {
        if std::mem::take(&mut self.paused) {
            self.detector.resume(self.ctx.now());
        }
        let p = self.detector.config().period;
        self.timer.schedule_periodic(TICK, p, p);
        Ok(())
    }

    fn on_stop(&mut self) -> Handled {
        self.paused = true;
        self.timer.cancel(TICK);
        Ok(())
    }
}
