//! Epoch change: the [`EpochChanger`] component around the I/O-free [`EpochChangeMachine`].

mod machine;

#[cfg(feature = "flaws")]
pub use machine::Flaw;
pub use machine::{EcConfig, EcOutput, EpochChangeMachine};

use selfman_core::{
    Component, ComponentDefinition, Handled, Host, NetIndication, Network, NodeAddr, Provided,
    Required, Result, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    BebDeliver, BebRequest, BestEffortBroadcast, EpochChange, LeaderElection, Trust,
};

use crate::messages::EcMessage;

/// The epoch-change component: provides [`EpochChange`]; requires [`LeaderElection`],
/// [`BestEffortBroadcast<EcMessage>`] (announcements), [`Network<EcMessage>`] (refusals and
/// nudges) and [`Timer`] (re-announcements).
pub struct EpochChanger {
    le: Required<LeaderElection>,
    beb: Required<BestEffortBroadcast<EcMessage>>,
    net: Required<Network<EcMessage>>,
    timer: Required<Timer>,
    out: Provided<EpochChange>,
    me: NodeAddr,
    machine: EpochChangeMachine,
    config: EcConfig,
    buf: Vec<EcOutput>,
}

impl EpochChanger {
    /// The epoch change of process `me` in `group` (members in rank order).
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>, config: EcConfig) -> Self {
        EpochChanger {
            me,
            le: Required::new(),
            beb: Required::new(),
            net: Required::new(),
            timer: Required::new(),
            out: Provided::new(),
            machine: EpochChangeMachine::new(me, group),
            config,
            buf: Vec::new(),
        }
    }

    /// This epoch change with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.machine = self.machine.with_flaw(flaw);
        self
    }

    /// The logic's state (for tests and inspection).
    pub fn machine(&self) -> &EpochChangeMachine {
        &self.machine
    }

    fn flush(&mut self) {
        for o in std::mem::take(&mut self.buf) {
            match o {
                EcOutput::Broadcast(m) => {
                    self.beb.trigger(BebRequest::Broadcast(m));
                }
                EcOutput::Send(to, m) => self.net.send(to, m),
                EcOutput::Start(s) => {
                    self.out.trigger(s);
                }
            }
        }
    }

    fn on_trust(&mut self, t: Trust) -> Handled {
        self.machine.on_trust(t, &mut self.buf);
        self.flush();
        Ok(())
    }

    fn on_beb(&mut self, d: BebDeliver<EcMessage>) -> Handled {
        // Our own announcements were handled when they were made.
        if d.from.addr != self.me.addr {
            self.machine.on_message(d.from, d.msg, &mut self.buf);
            self.flush();
        }
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<EcMessage>) -> Handled {
        if let NetIndication::Deliver(d) = ev {
            self.machine.on_message(d.from, d.msg, &mut self.buf);
            self.flush();
        }
        Ok(())
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        self.machine.on_tick(&mut self.buf);
        self.flush();
        Ok(())
    }
}

impl ComponentDefinition for EpochChanger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.le, Self::on_trust);
        s.require(|c| &mut c.beb, Self::on_beb);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_tick);
        s.provide(|c| &mut c.out, |_, ()| Ok(()));
    }

    fn on_start(&mut self) -> Handled {
        let p = self.config.period;
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

/// Creates an [`EpochChanger`] on `host` for `group` and connects its network (protocol
/// `protocol`) and timer. The caller connects its [`LeaderElection`] and
/// [`BestEffortBroadcast<EcMessage>`] ports (to an Ω and a broadcast of this group) and its
/// provided [`EpochChange`] port.
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<H: Host>(
    host: &H,
    protocol: &str,
    group: Vec<NodeAddr>,
    config: EcConfig,
) -> Result<Component<EpochChanger>> {
    let me = host.local();
    build_from(host, protocol, move || EpochChanger::new(me, group.clone(), config))
}

/// As [`build`], with the deliberate mistake `flaw` (feature `flaws`, for tests only).
///
/// # Errors
///
/// As [`build`].
#[cfg(feature = "flaws")]
pub fn build_flawed<H: Host>(
    host: &H,
    protocol: &str,
    group: Vec<NodeAddr>,
    config: EcConfig,
    flaw: Flaw,
) -> Result<Component<EpochChanger>> {
    let me = host.local();
    build_from(host, protocol, move || EpochChanger::new(me, group.clone(), config).with_flaw(flaw))
}

fn build_from<H: Host>(
    host: &H,
    protocol: &str,
    factory: impl Fn() -> EpochChanger + Send + Sync + 'static,
) -> Result<Component<EpochChanger>> {
    let ec = host.create(factory)?;
    host.system().connect(&host.network::<EcMessage>(protocol)?, &ec.required()?)?;
    host.system().connect(&host.timer()?, &ec.required()?)?;
    Ok(ec)
}
