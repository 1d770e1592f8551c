//! [`RelaxedRing`]: the component around the [`RelaxedRingMachine`]. Each handler feeds the
//! machine and carries out its outputs; it owns no logic of its own.
//!
//! Live replacement: [`RelaxedRing::transfer`] hands the machine's whole state to the
//! replacement (under the replacement's configuration), so a swap under
//! `System::replace_with_state` keeps the peer's place in the ring, its watches and its
//! lookups in flight. The replacement's `on_start` schedules the tick under the same timer id
//! over the same timer channel, which replaces the old instance's timer.

use selfman_core::{
    ComponentDefinition, Context, Handled, LinkStatus, Message, NetIndication, Network, NodeAddr,
    Provided, Required, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    FailureDetector, FdIndication, FdRequest, Ring, RingInspect, RingRequest, RingView,
};

use crate::config::RingConfig;
use crate::machine::{RelaxedRingMachine, RingOutput};
use crate::messages::RingMessage;

const TICK: TimerId = TimerId(1);

/// The relaxed-ring component: provides [`Ring<M>`]; requires
/// `Network<`[`RingMessage<M>`]`>`, [`Timer`] and [`FailureDetector`] (it monitors its
/// neighbours there; suspicions and restores feed the machine).
///
/// [`build`](crate::build) creates and wires it on a host. Its state is readable from
/// outside through [`RingInspect`] (for example with a
/// [`RingViews`](selfman_ports::RingViews) registry) or
/// [`Component::on_definition`](selfman_core::Component::on_definition).
pub struct RelaxedRing<M: Message> {
    ctx: Context,
    net: Required<Network<RingMessage<M>>>,
    timer: Required<Timer>,
    fd: Required<FailureDetector>,
    port: Provided<Ring<M>>,
    machine: RelaxedRingMachine,
    out: Vec<RingOutput<M>>,
}

impl<M: Message> RelaxedRing<M> {
    /// The peer on node `me`, outside any ring until its user asks it to bootstrap or join.
    pub fn new(me: NodeAddr, config: RingConfig) -> RelaxedRing<M> {
        RelaxedRing::from_machine(RelaxedRingMachine::new(me, config))
    }

    /// A component running `machine` (for instance one built with a deliberate flaw).
    pub fn from_machine(machine: RelaxedRingMachine) -> RelaxedRing<M> {
        RelaxedRing {
            ctx: Context::new(),
            net: Required::new(),
            timer: Required::new(),
            fd: Required::new(),
            port: Provided::new(),
            machine,
            out: Vec::new(),
        }
    }

    /// The protocol logic (for inspection and tests).
    pub fn machine(&self) -> &RelaxedRingMachine {
        &self.machine
    }

    /// The state transfer for a live replacement: `new` takes over everything `old` knows
    /// ([`RelaxedRingMachine::take_over`], under `new`'s configuration), and `old` is left
    /// outside any ring. Use it with `System::replace_with_state`, or through
    /// [`reconfigure`](crate::reconfigure).
    pub fn transfer(old: &mut RelaxedRing<M>, new: &mut RelaxedRing<M>) {
        new.machine.take_over(old.machine.save());
        let me = old.machine.me().addr;
        let config = *old.machine.config();
        old.machine = RelaxedRingMachine::new(me, config);
    }

    fn flush(&mut self) {
        for o in self.out.drain(..) {
            match o {
                RingOutput::Send { to, msg } => self.net.send(to, msg),
                RingOutput::Monitor(n) => {
                    self.fd.trigger(FdRequest::Monitor(n));
                }
                RingOutput::Unmonitor(n) => {
                    self.fd.trigger(FdRequest::Unmonitor(n));
                }
                RingOutput::Indicate(i) => {
                    self.port.trigger(i);
                }
            }
        }
    }

    fn on_request(&mut self, req: RingRequest<M>) -> Handled {
        self.machine.on_request(req, self.ctx.now(), &mut self.out);
        self.flush();
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<RingMessage<M>>) -> Handled {
        match ev {
            NetIndication::Deliver(d) => {
                self.machine.on_message(d.from, d.msg, self.ctx.now(), &mut self.out);
            }
            NetIndication::Status(s) => {
                if matches!(s.status, LinkStatus::Lost(_) | LinkStatus::Unreachable(_)) {
                    self.machine.on_unreachable(s.peer, &mut self.out);
                }
            }
        }
        self.flush();
        Ok(())
    }

    fn on_fd(&mut self, ev: FdIndication) -> Handled {
        let now = self.ctx.now();
        match ev {
            FdIndication::Suspect(n) => self.machine.on_suspect(n, now, &mut self.out),
            FdIndication::Restore(n) => self.machine.on_restore(n, now, &mut self.out),
        }
        self.flush();
        Ok(())
    }

    fn on_timeout(&mut self, t: Timeout) -> Handled {
        if t.id == TICK {
            self.machine.on_tick(self.ctx.now(), &mut self.out);
            self.flush();
        }
        Ok(())
    }
}

impl<M: Message> RingInspect for RelaxedRing<M> {
    fn ring_view(&self) -> RingView {
        self.machine.view()
    }
}

impl<M: Message> ComponentDefinition for RelaxedRing<M> {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.require(|c| &mut c.fd, Self::on_fd);
        s.provide(|c| &mut c.port, Self::on_request);
    }

    /// (Re)schedules the tick under its one id: after a swap this replaces the old
    /// instance's timer, so the new tick period takes effect.
    fn on_start(&mut self) -> Handled {
        let p = self.machine.config().tick;
        self.timer.schedule_periodic(TICK, p, p);
        Ok(())
    }

    fn on_stop(&mut self) -> Handled {
        self.timer.cancel(TICK);
        Ok(())
    }
}
