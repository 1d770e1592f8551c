//! Uniform consensus: the [`UniformConsensus`] component around the I/O-free
//! [`UniformConsensusMachine`].

mod machine;

#[cfg(feature = "flaws")]
pub use machine::Flaw;
pub use machine::{UcConfig, UcOutput, UniformConsensusMachine};

use selfman_core::{
    Component, ComponentDefinition, Handled, Host, Message, NetIndication, Network, NodeAddr,
    Provided, Required, Result, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    AbortableConsensus, Consensus, EpIndication, EpochChange, Propose, StartEpoch,
};

use crate::messages::UcMessage;

/// The uniform-consensus component: provides [`Consensus<V>`]; requires [`EpochChange`],
/// [`AbortableConsensus<V>`], [`Network<UcMessage<V>>`] (forwarded proposals) and [`Timer`]
/// (re-forwarding).
pub struct UniformConsensus<V: Message> {
    ec: Required<EpochChange>,
    ep: Required<AbortableConsensus<V>>,
    net: Required<Network<UcMessage<V>>>,
    timer: Required<Timer>,
    out: Provided<Consensus<V>>,
    machine: UniformConsensusMachine<V>,
    config: UcConfig,
    buf: Vec<UcOutput<V>>,
}

impl<V: Message + PartialEq> UniformConsensus<V> {
    /// Uniform consensus of process `me` in `group`.
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>, config: UcConfig) -> Self {
        UniformConsensus {
            ec: Required::new(),
            ep: Required::new(),
            net: Required::new(),
            timer: Required::new(),
            out: Provided::new(),
            machine: UniformConsensusMachine::new(me, group),
            config,
            buf: Vec::new(),
        }
    }

    /// This uniform consensus with the deliberate mistake `flaw` (feature `flaws`, for tests
    /// only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.machine = self.machine.with_flaw(flaw);
        self
    }

    /// The logic's state (for tests and inspection).
    pub fn machine(&self) -> &UniformConsensusMachine<V> {
        &self.machine
    }

    fn flush(&mut self) {
        for o in std::mem::take(&mut self.buf) {
            match o {
                UcOutput::Ep(r) => {
                    self.ep.trigger(r);
                }
                UcOutput::Send(to, m) => self.net.send(to, m),
                UcOutput::Decide(d) => {
                    self.out.trigger(d);
                }
            }
        }
    }

    fn on_propose(&mut self, p: Propose<V>) -> Handled {
        self.machine.propose(p.id, p.value, &mut self.buf);
        self.flush();
        Ok(())
    }

    fn on_start_epoch(&mut self, s: StartEpoch) -> Handled {
        self.machine.on_start_epoch(s, &mut self.buf);
        self.flush();
        Ok(())
    }

    fn on_ep(&mut self, i: EpIndication<V>) -> Handled {
        match i {
            EpIndication::Decide { ets, id, value } => {
                self.machine.on_decide(ets, id, value, &mut self.buf)
            }
            EpIndication::Aborted { ets, states } => {
                self.machine.on_aborted(ets, states, &mut self.buf)
            }
        }
        self.flush();
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<UcMessage<V>>) -> Handled {
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

impl<V: Message + PartialEq> ComponentDefinition for UniformConsensus<V> {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.ec, Self::on_start_epoch);
        s.require(|c| &mut c.ep, Self::on_ep);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_tick);
        s.provide(|c| &mut c.out, Self::on_propose);
    }

    fn on_start(&mut self) -> Handled {
        let p = self.config.forward_period;
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

/// Creates a [`UniformConsensus`] on `host` for `group` and connects its network (protocol
/// `protocol`) and timer. The caller connects its [`EpochChange`] and
/// [`AbortableConsensus<V>`] ports (to an [`EpochChanger`](crate::EpochChanger) and an
/// [`EpochConsensus`](crate::EpochConsensus) of this group) and its provided [`Consensus<V>`]
/// port.
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<V: Message + PartialEq, H: Host>(
    host: &H,
    protocol: &str,
    group: Vec<NodeAddr>,
    config: UcConfig,
) -> Result<Component<UniformConsensus<V>>> {
    let me = host.local();
    build_from(host, protocol, move || UniformConsensus::new(me, group.clone(), config))
}

/// As [`build`], with the deliberate mistake `flaw` (feature `flaws`, for tests only).
///
/// # Errors
///
/// As [`build`].
#[cfg(feature = "flaws")]
pub fn build_flawed<V: Message + PartialEq, H: Host>(
    host: &H,
    protocol: &str,
    group: Vec<NodeAddr>,
    config: UcConfig,
    flaw: Flaw,
) -> Result<Component<UniformConsensus<V>>> {
    let me = host.local();
    build_from(host, protocol, move || {
        UniformConsensus::new(me, group.clone(), config).with_flaw(flaw)
    })
}

fn build_from<V: Message + PartialEq, H: Host>(
    host: &H,
    protocol: &str,
    factory: impl Fn() -> UniformConsensus<V> + Send + Sync + 'static,
) -> Result<Component<UniformConsensus<V>>> {
    let uc = host.create(factory)?;
    host.system().connect(&host.network::<UcMessage<V>>(protocol)?, &uc.required()?)?;
    host.system().connect(&host.timer()?, &uc.required()?)?;
    Ok(uc)
}
