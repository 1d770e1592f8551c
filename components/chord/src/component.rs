//! [`Chord`]: the component around the [`ChordMachine`]; each handler feeds the machine and
//! carries out its outputs.

use selfman_core::{
    ComponentDefinition, Context, Handled, LinkStatus, Message, NetIndication, Network, NodeAddr,
    Provided, Required, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    FailureDetector, FdIndication, FdRequest, Ring, RingInspect, RingRequest, RingView,
};

use crate::config::ChordConfig;
use crate::machine::{ChordMachine, ChordOutput};
use crate::messages::ChordMessage;

const TICK: TimerId = TimerId(1);

/// The Chord component: provides [`Ring<M>`]; requires `Network<`[`ChordMessage<M>`]`>`,
/// [`Timer`] and [`FailureDetector`] (it watches its successor and predecessor there).
///
/// [`build`](crate::build) creates and wires it on a host; its state is readable through
/// [`RingInspect`].
pub struct Chord<M: Message> {
    ctx: Context,
    net: Required<Network<ChordMessage<M>>>,
    timer: Required<Timer>,
    fd: Required<FailureDetector>,
    port: Provided<Ring<M>>,
    machine: ChordMachine,
    out: Vec<ChordOutput<M>>,
}

impl<M: Message> Chord<M> {
    /// The peer on node `me`, outside any ring until its user bootstraps or joins.
    pub fn new(me: NodeAddr, config: ChordConfig) -> Chord<M> {
        Chord {
            ctx: Context::new(),
            net: Required::new(),
            timer: Required::new(),
            fd: Required::new(),
            port: Provided::new(),
            machine: ChordMachine::new(me, config),
            out: Vec::new(),
        }
    }

    /// The protocol logic (for inspection and tests).
    pub fn machine(&self) -> &ChordMachine {
        &self.machine
    }

    fn flush(&mut self) {
        for o in self.out.drain(..) {
            match o {
                ChordOutput::Send { to, msg } => self.net.send(to, msg),
                ChordOutput::Monitor(n) => {
                    self.fd.trigger(FdRequest::Monitor(n));
                }
                ChordOutput::Unmonitor(n) => {
                    self.fd.trigger(FdRequest::Unmonitor(n));
                }
                ChordOutput::Indicate(i) => {
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

    fn on_net(&mut self, ev: NetIndication<ChordMessage<M>>) -> Handled {
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

impl<M: Message> RingInspect for Chord<M> {
    fn ring_view(&self) -> RingView {
        self.machine.view()
    }
}

impl<M: Message> ComponentDefinition for Chord<M> {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.require(|c| &mut c.fd, Self::on_fd);
        s.provide(|c| &mut c.port, Self::on_request);
    }

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
