//! [`TxLayer`]: the component around the [`TxMachine`]. Each handler feeds the machine and
//! carries out its outputs; it owns no logic of its own.
//!
//! **Ports.** It provides [`Transactions`]; it requires [`Replication`] (quorum reads and
//! the per-replica votes, commits and releases), `Ring<P>` (routing prepares, decisions and
//! subscriptions to replica keys, looking up the rTMs, learning this node's position),
//! `Network<`[`TxMessage`]`>` (everything between two nodes that know each other: votes,
//! acceptances, Paxos rounds, decisions, notifications), [`Timer`] and [`FailureDetector`]
//! (an rTM watches the TMs it serves and takes over at once when one is suspected). The
//! ring's payload type `P` only has to carry [`TxMessage`]s ([`TxPayload`]), so one ring
//! serves replication and transactions together; indications of the ring and of replication
//! that are not this layer's (other payloads, other tags) are ignored.

use std::time::Duration;

use selfman_core::{
    ComponentDefinition, Context, Handled, Message, NetIndication, Network, NodeAddr, Provided,
    Required, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    FailureDetector, FdIndication, FdRequest, LookupOutcome, Replication, ReplicationIndication,
    Ring, RingIndication, RingRequest, Transactions, TxRequest,
};

use crate::config::TxConfig;
#[cfg(feature = "flaws")]
use crate::machine::Flaw;
use crate::machine::{TxMachine, TxOutput};
use crate::messages::TxMessage;

const TICK: TimerId = TimerId(1);

/// How often the machine's timers are looked at.
pub const TICK_PERIOD: Duration = Duration::from_millis(50);

/// The high bits of this layer's ring lookup tags (the ring's indications reach every user
/// of a shared ring).
pub const LOOKUP_TAG_MARK: u64 = 0x7478_0000_0000_0000;

/// A ring payload type that carries transaction messages: [`TxMessage`] itself, or an enum of
/// a node that shares one ring between several layers.
pub trait TxPayload: Message {
    /// Wraps a transaction message.
    fn wrap(msg: TxMessage) -> Self;
    /// The transaction message inside, if this payload is one.
    fn unwrap(self) -> Option<TxMessage>;
}

impl TxPayload for TxMessage {
    fn wrap(msg: TxMessage) -> Self {
        msg
    }

    fn unwrap(self) -> Option<TxMessage> {
        Some(self)
    }
}

/// What a [`TxLayer`] asked its ports to carry, by kind (for benchmarks and operators).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentCounts {
    /// Messages routed through the ring, by [`TxMessage::kind_index`].
    pub routed: [u64; TxMessage::KINDS.len()],
    /// Messages sent directly to another node, by [`TxMessage::kind_index`].
    pub direct: [u64; TxMessage::KINDS.len()],
    /// Requests to the replication layer (quorum reads and operations at one replica).
    pub replication: u64,
    /// Ring lookups.
    pub lookups: u64,
}

impl SentCounts {
    /// Every non-zero count as `kind=n` pairs (`r:` routed, `d:` direct), then
    /// `replication=` and `lookups=`.
    pub fn pairs(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for (i, name) in TxMessage::KINDS.iter().enumerate() {
            if self.routed[i] > 0 {
                v.push((format!("r:{name}"), self.routed[i]));
            }
            if self.direct[i] > 0 {
                v.push((format!("d:{name}"), self.direct[i]));
            }
        }
        v.push(("replication".to_string(), self.replication));
        v.push(("lookups".to_string(), self.lookups));
        v
    }
}

/// The transaction layer of one node (see the module documentation for its ports).
pub struct TxLayer<P: TxPayload = TxMessage> {
    ctx: Context,
    ring: Required<Ring<P>>,
    repl: Required<Replication>,
    net: Required<Network<TxMessage>>,
    timer: Required<Timer>,
    fd: Required<FailureDetector>,
    port: Provided<Transactions>,
    machine: TxMachine,
    out: Vec<TxOutput>,
    sent: SentCounts,
}

impl<P: TxPayload> TxLayer<P> {
    /// The transaction layer of node `node`.
    pub fn new(node: NodeAddr, config: TxConfig) -> Self {
        TxLayer {
            ctx: Context::new(),
            ring: Required::new(),
            repl: Required::new(),
            net: Required::new(),
            timer: Required::new(),
            fd: Required::new(),
            port: Provided::new(),
            machine: TxMachine::new(node, config),
            out: Vec::new(),
            sent: SentCounts::default(),
        }
    }

    /// This component with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.machine = self.machine.with_flaw(flaw);
        self
    }

    /// The protocol logic (for inspection and tests).
    pub fn machine(&self) -> &TxMachine {
        &self.machine
    }

    /// What this layer asked its ports to carry so far.
    pub fn sent(&self) -> SentCounts {
        self.sent
    }

    fn flush(&mut self) {
        for o in self.out.drain(..) {
            match o {
                TxOutput::Route { key, msg } => {
                    self.sent.routed[msg.kind_index()] += 1;
                    self.ring.trigger(RingRequest::Route { key, tag: 0, payload: P::wrap(msg) });
                }
                TxOutput::Send { to, msg } => {
                    self.sent.direct[msg.kind_index()] += 1;
                    self.net.send(to, msg)
                }
                TxOutput::Replicate(r) => {
                    self.sent.replication += 1;
                    self.repl.trigger(r);
                }
                TxOutput::Lookup { key, tag } => {
                    self.sent.lookups += 1;
                    self.ring.trigger(RingRequest::<P>::Lookup { key, tag: LOOKUP_TAG_MARK | tag });
                }
                TxOutput::Monitor(n) => {
                    self.fd.trigger(FdRequest::Monitor(n));
                }
                TxOutput::Indicate(i) => {
                    self.port.trigger(i);
                }
            }
        }
    }

    fn on_request(&mut self, req: TxRequest) -> Handled {
        self.machine.on_request(req, self.ctx.now(), &mut self.out);
        self.flush();
        Ok(())
    }

    fn on_ring(&mut self, ev: RingIndication<P>) -> Handled {
        let now = self.ctx.now();
        match ev {
            RingIndication::Joined { me, range, .. } => {
                self.machine.on_range(Some(range));
                self.machine.on_joined(me.id, now, &mut self.out)
            }
            RingIndication::Responsibility(rc) => self.machine.on_range(rc.now),
            RingIndication::Deliver { origin, payload, .. } => {
                if let Some(msg) = payload.unwrap() {
                    self.machine.on_deliver(origin.addr, msg, now, &mut self.out);
                }
            }
            RingIndication::LookupResult { tag, outcome, .. }
                if tag & LOOKUP_TAG_MARK == LOOKUP_TAG_MARK =>
            {
                let who = match outcome {
                    LookupOutcome::Found { peer, .. } => Some(peer.addr),
                    _ => None,
                };
                self.machine.on_lookup(tag & !LOOKUP_TAG_MARK, who);
            }
            _ => {}
        }
        self.flush();
        Ok(())
    }

    fn on_replication(&mut self, ev: ReplicationIndication) -> Handled {
        self.machine.on_replication(ev, self.ctx.now(), &mut self.out);
        self.flush();
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<TxMessage>) -> Handled {
        if let NetIndication::Deliver(d) = ev {
            self.machine.on_message(d.from, d.msg, self.ctx.now(), &mut self.out);
            self.flush();
        }
        Ok(())
    }

    fn on_fd(&mut self, ev: FdIndication) -> Handled {
        match ev {
            FdIndication::Suspect(n) => self.machine.on_suspect(n),
            FdIndication::Restore(n) => self.machine.on_restore(n),
        }
        Ok(())
    }

    fn on_timeout(&mut self, t: Timeout) -> Handled {
        if t.id == TICK {
            self.machine.on_tick(self.ctx.now(), &mut self.out);
            self.flush();
            crate::machine::give_back(&mut self.out);
        }
        Ok(())
    }
}

impl<P: TxPayload> ComponentDefinition for TxLayer<P> {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.ring, Self::on_ring);
        s.require(|c| &mut c.repl, Self::on_replication);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.require(|c| &mut c.fd, Self::on_fd);
        s.provide(|c| &mut c.port, Self::on_request);
    }

    fn on_start(&mut self) -> Handled {
        self.timer.schedule_periodic(TICK, TICK_PERIOD, TICK_PERIOD);
        Ok(())
    }

    fn on_stop(&mut self) -> Handled {
        self.timer.cancel(TICK);
        Ok(())
    }
}
