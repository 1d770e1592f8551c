//! Epoch consensus: the [`EpochConsensus`] component around the I/O-free
//! [`EpochConsensusMachine`].

mod machine;
#[cfg(test)]
mod tests;

#[cfg(feature = "flaws")]
pub use machine::Flaw;
pub use machine::{EpConfig, EpOutput, EpochConsensusMachine};

use selfman_core::{
    Component, ComponentDefinition, Handled, Host, Message, NetIndication, Network, NodeAddr,
    Provided, Required, Result, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{AbortableConsensus, BebDeliver, BebRequest, BestEffortBroadcast, EpRequest};

use crate::messages::EpMessage;

/// The epoch-consensus component: provides [`AbortableConsensus<V>`]; requires
/// [`BestEffortBroadcast<EpMessage<V>>`] (the leader's steps), [`Network<EpMessage<V>>`]
/// (answers to the leader, and re-sent steps) and [`Timer`] (retransmission).
pub struct EpochConsensus<V: Message> {
    beb: Required<BestEffortBroadcast<EpMessage<V>>>,
    net: Required<Network<EpMessage<V>>>,
    timer: Required<Timer>,
    out: Provided<AbortableConsensus<V>>,
    me: NodeAddr,
    machine: EpochConsensusMachine<V>,
    config: EpConfig,
    buf: Vec<EpOutput<V>>,
}

impl<V: Message + PartialEq> EpochConsensus<V> {
    /// Epoch consensus of process `me` in `group`.
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>, config: EpConfig) -> Self {
        EpochConsensus {
            beb: Required::new(),
            net: Required::new(),
            timer: Required::new(),
            out: Provided::new(),
            me,
            machine: EpochConsensusMachine::new(me, group),
            config,
            buf: Vec::new(),
        }
    }

    /// This epoch consensus with the deliberate mistake `flaw` (feature `flaws`, for tests
    /// only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.machine = self.machine.with_flaw(flaw);
        self
    }

    /// The logic's state (for tests and inspection).
    pub fn machine(&self) -> &EpochConsensusMachine<V> {
        &self.machine
    }

    fn flush(&mut self) {
        for o in std::mem::take(&mut self.buf) {
            match o {
                EpOutput::Broadcast(m) => {
                    self.beb.trigger(BebRequest::Broadcast(m));
                }
                EpOutput::Send(to, m) => self.net.send(to, m),
                EpOutput::Indicate(i) => {
                    self.out.trigger(i);
                }
            }
        }
    }

    fn on_request(&mut self, r: EpRequest<V>) -> Handled {
        match r {
            EpRequest::Start { ets, leader, states } => {
                self.machine.start(ets, leader, states, &mut self.buf)
            }
            EpRequest::Propose { ets, id, value } => {
                self.machine.propose(ets, id, value, &mut self.buf)
            }
            EpRequest::Abort { ets } => self.machine.abort(ets, &mut self.buf),
            other => tracing::warn!(request = ?other, "epoch consensus: unknown request"),
        }
        self.flush();
        Ok(())
    }

    fn on_beb(&mut self, d: BebDeliver<EpMessage<V>>) -> Handled {
        // Our own broadcasts were handled when they were made.
        if d.from.addr != self.me.addr {
            self.machine.on_message(d.from, d.msg, &mut self.buf);
            self.flush();
        }
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<EpMessage<V>>) -> Handled {
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

impl<V: Message + PartialEq> ComponentDefinition for EpochConsensus<V> {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.beb, Self::on_beb);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_tick);
        s.provide(|c| &mut c.out, Self::on_request);
    }

    fn on_start(&mut self) -> Handled {
        let p = self.config.retransmit;
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

/// Creates an [`EpochConsensus`] on `host` for `group` and connects its network (protocol
/// `protocol`) and timer. The caller connects its [`BestEffortBroadcast<EpMessage<V>>`] port
/// (to a broadcast of this group) and its provided [`AbortableConsensus<V>`] port.
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<V: Message + PartialEq, H: Host>(
    host: &H,
    protocol: &str,
    group: Vec<NodeAddr>,
    config: EpConfig,
) -> Result<Component<EpochConsensus<V>>> {
    let me = host.local();
    build_from(host, protocol, move || EpochConsensus::new(me, group.clone(), config))
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
    config: EpConfig,
    flaw: Flaw,
) -> Result<Component<EpochConsensus<V>>> {
    let me = host.local();
    build_from(host, protocol, move || {
        EpochConsensus::new(me, group.clone(), config).with_flaw(flaw)
    })
}

fn build_from<V: Message + PartialEq, H: Host>(
    host: &H,
    protocol: &str,
    factory: impl Fn() -> EpochConsensus<V> + Send + Sync + 'static,
) -> Result<Component<EpochConsensus<V>>> {
    let ep = host.create(factory)?;
    host.system().connect(&host.network::<EpMessage<V>>(protocol)?, &ep.required()?)?;
    host.system().connect(&host.timer()?, &ep.required()?)?;
    Ok(ep)
}
