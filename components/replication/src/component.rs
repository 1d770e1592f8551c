//! [`SymmetricReplication`]: the component around the [`ReplicaMachine`]. Each handler feeds
//! the machine and carries out its outputs; it owns no logic of its own.
//!
//! **Why the ring and the network both.** Requests to a replica go by `Ring<P>` routing to the
//! replica key: only the ring knows who is responsible for a point at a given moment, and it
//! delivers only at the responsible peer (lookup consistency), which is exactly the peer that
//! must answer. Everything else goes point to point over `Network<ReplMessage>`: answers (the
//! ring names the origin), and bulk transfers between two peers that already know each other
//! (hand-over, rebuild and repair batches), which would waste `O(log n)` hops per batch if
//! routed. The ring's payload type `P` only has to carry [`ReplMessage`]s
//! ([`RingPayload`]), so one ring can serve replication and other layers (transactions) at
//! once.
//!
//! Live replacement: [`SymmetricReplication::transfer`] hands the machine's whole state to
//! the replacement (under its configuration, but with the same `f`); `on_start` reschedules
//! the tick under the same timer id, which replaces the old instance's timer.

use selfman_core::{
    ComponentDefinition, Context, Handled, Message, NetIndication, Network, NodeAddr, Provided,
    Required, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    FailureDetector, FdIndication, FdRequest, ReplicaInspect, ReplicaView, Replication,
    ReplicationRequest, Ring, RingIndication, RingRequest, StoredReplica,
};

use crate::config::ReplicationConfig;
#[cfg(feature = "flaws")]
use crate::machine::Flaw;
use crate::machine::{ReplOutput, ReplicaMachine};
use crate::messages::ReplMessage;

const TICK: TimerId = TimerId(1);

/// A ring payload type that carries replication messages: [`ReplMessage`] itself, or an
/// enum of a node that shares one ring between several layers.
pub trait RingPayload: Message {
    /// Wraps a replication message.
    fn wrap(msg: ReplMessage) -> Self;
    /// The replication message inside, if this payload is one.
    fn unwrap(self) -> Option<ReplMessage>;
}

impl RingPayload for ReplMessage {
    fn wrap(msg: ReplMessage) -> Self {
        msg
    }

    fn unwrap(self) -> Option<ReplMessage> {
        Some(self)
    }
}

/// The replication component: provides [`Replication`]; requires [`Ring<P>`] (routing to
/// replica keys, responsibility changes), `Network<`[`ReplMessage`]`>` (answers and bulk
/// transfers), [`Timer`] and [`FailureDetector`] (the peers of transfers are watched).
///
/// [`build`](crate::build) creates and wires it on a host. Its state is readable from
/// outside through [`ReplicaInspect`] or
/// [`Component::on_definition`](selfman_core::Component::on_definition).
pub struct SymmetricReplication<P: RingPayload = ReplMessage> {
    ctx: Context,
    ring: Required<Ring<P>>,
    net: Required<Network<ReplMessage>>,
    timer: Required<Timer>,
    fd: Required<FailureDetector>,
    port: Provided<Replication>,
    machine: ReplicaMachine,
    out: Vec<ReplOutput>,
}

impl<P: RingPayload> SymmetricReplication<P> {
    /// The replication of node `node`.
    pub fn new(node: NodeAddr, config: ReplicationConfig) -> Self {
        SymmetricReplication::from_machine(ReplicaMachine::new(node, config))
    }

    /// A component running `machine`.
    pub fn from_machine(machine: ReplicaMachine) -> Self {
        SymmetricReplication {
            ctx: Context::new(),
            ring: Required::new(),
            net: Required::new(),
            timer: Required::new(),
            fd: Required::new(),
            port: Provided::new(),
            machine,
            out: Vec::new(),
        }
    }

    /// This component with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.machine = self.machine.with_flaw(flaw);
        self
    }

    /// The protocol logic (for inspection and tests).
    pub fn machine(&self) -> &ReplicaMachine {
        &self.machine
    }

    /// The protocol logic, to change by hand (feature `testkit`, for benchmarks and tests
    /// only; see [`ReplicaMachine::store_testkit`]).
    #[cfg(feature = "testkit")]
    pub fn machine_testkit(&mut self) -> &mut ReplicaMachine {
        &mut self.machine
    }

    /// The state transfer for a live replacement: `new` takes over everything `old` holds
    /// ([`ReplicaMachine::take_over`]). Use it with `System::replace_with_state`, or through
    /// [`reconfigure`](crate::reconfigure).
    pub fn transfer(old: &mut SymmetricReplication<P>, new: &mut SymmetricReplication<P>) {
        new.machine.take_over(&mut old.machine);
    }

    fn flush(&mut self) {
        for o in self.out.drain(..) {
            match o {
                ReplOutput::Route { key, tag, msg } => {
                    self.ring.trigger(RingRequest::Route { key, tag, payload: P::wrap(msg) });
                }
                ReplOutput::Send { to, msg } => self.net.send(to, msg),
                ReplOutput::Indicate(i) => {
                    self.port.trigger(i);
                }
                ReplOutput::Monitor(n) => {
                    self.fd.trigger(FdRequest::Monitor(n));
                }
                ReplOutput::Unmonitor(n) => {
                    self.fd.trigger(FdRequest::Unmonitor(n));
                }
                ReplOutput::LeaveRing => {
                    self.ring.trigger(RingRequest::<P>::Leave);
                }
            }
        }
    }

    fn on_request(&mut self, req: ReplicationRequest) -> Handled {
        self.machine.on_request(req, self.ctx.now(), &mut self.out);
        self.flush();
        Ok(())
    }

    fn on_ring(&mut self, ev: RingIndication<P>) -> Handled {
        let now = self.ctx.now();
        match ev {
            RingIndication::Joined { me, .. } => self.machine.on_joined(me, now),
            RingIndication::Responsibility(rc) => {
                self.machine.on_responsibility(rc, now, &mut self.out)
            }
            RingIndication::Deliver { origin, payload, .. } => {
                if let Some(msg) = payload.unwrap() {
                    self.machine.on_deliver(origin, msg, now, &mut self.out);
                }
            }
            RingIndication::Undeliverable { key, tag, .. } => {
                self.machine.on_undeliverable(key, tag, now, &mut self.out);
            }
            RingIndication::Left => self.machine.on_ring_left(now, &mut self.out),
            RingIndication::JoinRefused(_)
            | RingIndication::LookupResult { .. }
            | RingIndication::Neighbours(_) => {}
        }
        self.flush();
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<ReplMessage>) -> Handled {
        if let NetIndication::Deliver(d) = ev {
            self.machine.on_message(d.from, d.msg, self.ctx.now(), &mut self.out);
            self.flush();
        }
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

impl<P: RingPayload> ReplicaInspect for SymmetricReplication<P> {
    fn replica_view(&self) -> ReplicaView {
        self.machine.view()
    }

    fn served_replicas(&self) -> Vec<StoredReplica> {
        self.machine.served_replicas()
    }
}

impl<P: RingPayload> ComponentDefinition for SymmetricReplication<P> {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.ring, Self::on_ring);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.require(|c| &mut c.fd, Self::on_fd);
        s.provide(|c| &mut c.port, Self::on_request);
    }

    /// (Re)schedules the tick under its one id: after a swap this replaces the old
    /// instance's timer.
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
