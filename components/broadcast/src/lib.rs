//! # selfman-broadcast
//!
//! Best-effort broadcast over the [`Network`] port: the "basic broadcast" of Cachin, Guerraoui
//! and Rodrigues (Algorithm 3.1). [`Beb`] provides
//! [`BestEffortBroadcast<M>`](selfman_ports::BestEffortBroadcast) and requires `Network<M>`; a
//! `Broadcast(m)` sends `m` once to every other member of the current group and delivers it
//! locally at once.
//!
//! Guarantees (for links that deliver what they are given, as the network's FIFO connections
//! between running nodes do):
//! * **validity**: a message broadcast by a correct process is delivered by every correct member
//!   of the group it was broadcast to;
//! * **no duplication**: each broadcast is sent at most once to each member and the network never
//!   duplicates, so no member delivers it twice;
//! * **no creation**: only messages that arrive on the protocol's network port (or that this
//!   process broadcast) are delivered, with the sender the network reports.
//!
//! Nothing is retransmitted: a message lost by the network, or sent to a member behind a
//! partition, is not delivered there. Protocols built on top (epoch change, epoch consensus)
//! retransmit themselves.
//!
//! The group is a [`Membership`] view: members are compared by socket address, so a member
//! configured with [`NodeId::UNKNOWN`](selfman_core::NodeId::UNKNOWN) matches whichever
//! incarnation runs there; a delivery from a member names it as it was configured; a repeated
//! address counts once.
#![deny(missing_docs)]

use selfman_core::{
    Component, ComponentDefinition, Handled, Host, Message, NetIndication, Network, NodeAddr,
    Provided, Required, Result, Setup,
};
use selfman_ports::{BebDeliver, BebRequest, BestEffortBroadcast, Membership};

/// The best-effort broadcast component: provides [`BestEffortBroadcast<M>`], requires
/// [`Network<M>`].
pub struct Beb<M: Message> {
    net: Required<Network<M>>,
    out: Provided<BestEffortBroadcast<M>>,
    group: Membership,
}

impl<M: Message> Beb<M> {
    /// A broadcast for process `me` to `group` (changeable later with
    /// [`BebRequest::SetGroup`]).
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>) -> Self {
        Beb { net: Required::new(), out: Provided::new(), group: Membership::new(me, group) }
    }

    /// The current group, as configured.
    pub fn group(&self) -> &[NodeAddr] {
        self.group.members()
    }

    fn on_request(&mut self, r: BebRequest<M>) -> Handled {
        match r {
            BebRequest::Broadcast(msg) => {
                for to in self.group.others() {
                    self.net.send(to, msg.clone());
                }
                self.out.trigger(BebDeliver { from: self.group.me(), msg });
            }
            BebRequest::SetGroup(members) => {
                self.group.set(members);
            }
            other => tracing::warn!(request = ?other, "best-effort broadcast: unknown request"),
        }
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<M>) -> Handled {
        if let NetIndication::Deliver(d) = ev {
            let from = self.group.name_of(d.from);
            self.out.trigger(BebDeliver { from, msg: d.msg });
        }
        // Connection status events carry nothing for a best-effort broadcast.
        Ok(())
    }
}

impl<M: Message> ComponentDefinition for Beb<M> {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.net, Self::on_net);
        s.provide(|c| &mut c.out, Self::on_request);
    }
}

/// Creates a [`Beb`] on `host` broadcasting to `group` and connects it to the host's network for
/// protocol `protocol` (each broadcast user needs its own protocol name).
///
/// # Errors
///
/// Whatever creating or connecting the component on `host` returns (for instance a protocol
/// name already used with another message type).
///
/// # Examples
///
/// ```
/// use selfman_broadcast::build;
/// use selfman_core::{Host, NodeAddr, NodeId};
/// use selfman_ports::{BebRequest, BestEffortBroadcast};
/// use selfman_sim::{address_of, Simulation};
///
/// let sim = Simulation::new(1);
/// let group: Vec<NodeAddr> =
///     (0..3).map(|i| NodeAddr::new(address_of(i), NodeId::UNKNOWN)).collect();
/// let mut bebs = Vec::new();
/// for _ in 0..3 {
///     let (g, out) = (group.clone(), std::sync::Arc::new(std::sync::Mutex::new(None)));
///     let o = out.clone();
///     sim.add_node(move |h| {
///         let beb = build::<String, _>(h, "chat", g.clone())?;
///         *o.lock().unwrap() = Some(beb.provided::<BestEffortBroadcast<String>>()?);
///         Ok(())
///     })
///     .unwrap();
///     bebs.push(out.lock().unwrap().take().unwrap());
/// }
/// bebs[0].request(BebRequest::Broadcast("hello".to_owned())).unwrap();
/// sim.run_until_idle();
/// ```
pub fn build<M: Message, H: Host>(
    host: &H,
    protocol: &str,
    group: Vec<NodeAddr>,
) -> Result<Component<Beb<M>>> {
    let me = host.local();
    let beb = host.create(move || Beb::<M>::new(me, group.clone()))?;
    host.system().connect(&host.network::<M>(protocol)?, &beb.required()?)?;
    Ok(beb)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use selfman_core::{ComponentDefinition, Handled, Host, NodeId, Required, Setup, Time};
    use selfman_sim::{address_of, SimHost, Simulation};

    use super::*;

    type Seen = Arc<Mutex<Vec<(usize, NodeAddr, u32)>>>;

    /// Records what its node delivers.
    struct Listener {
        idx: usize,
        beb: Required<BestEffortBroadcast<u32>>,
        seen: Seen,
    }

    impl Listener {
        fn on_deliver(&mut self, d: BebDeliver<u32>) -> Handled {
            self.seen.lock().unwrap().push((self.idx, d.from, d.msg));
            Ok(())
        }
    }

    impl ComponentDefinition for Listener {
        fn setup(&mut self, s: &mut Setup<Self>) {
            s.require(|c| &mut c.beb, Self::on_deliver);
        }
    }

    type Ports = Arc<Mutex<Vec<selfman_core::ProvidedRef<BestEffortBroadcast<u32>>>>>;

    fn cluster(n: usize, group: Vec<NodeAddr>) -> (Simulation, Ports, Seen) {
        let sim = Simulation::new(3);
        let (ports, seen): (Ports, Seen) = Default::default();
        for _ in 0..n {
            let (g, p, s) = (group.clone(), ports.clone(), seen.clone());
            sim.add_node(move |h: &SimHost| {
                let beb = build::<u32, _>(h, "t", g.clone())?;
                let (idx, s) = (h.index(), s.clone());
                let l =
                    h.create(move || Listener { idx, beb: Required::new(), seen: s.clone() })?;
                h.system().link::<BestEffortBroadcast<u32>>(&beb, &l)?;
                p.lock().unwrap().push(beb.provided()?);
                Ok(())
            })
            .unwrap();
        }
        (sim, ports, seen)
    }

    fn everyone(n: usize) -> Vec<NodeAddr> {
        (0..n).map(|i| NodeAddr::new(address_of(i), NodeId::UNKNOWN)).collect()
    }

    #[test]
    fn every_member_delivers_once_the_sender_included() {
        let (sim, ports, seen) = cluster(4, everyone(4));
        let p = ports.lock().unwrap().clone();
        p[1].request(BebRequest::Broadcast(11)).unwrap();
        p[3].request(BebRequest::Broadcast(33)).unwrap();
        sim.run_until(Time::ZERO + std::time::Duration::from_secs(1));
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        let from = |i| NodeAddr::new(address_of(i), NodeId::UNKNOWN);
        let mut want = Vec::new();
        for i in 0..4 {
            want.push((i, from(1), 11));
            want.push((i, from(3), 33));
        }
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn set_group_changes_where_later_broadcasts_go() {
        let (sim, ports, seen) = cluster(4, everyone(4));
        let p = ports.lock().unwrap().clone();
        p[0].request(BebRequest::SetGroup(everyone(2))).unwrap();
        p[0].request(BebRequest::Broadcast(5)).unwrap();
        sim.run_until(Time::ZERO + std::time::Duration::from_secs(1));
        let mut at: Vec<usize> = seen.lock().unwrap().iter().map(|s| s.0).collect();
        at.sort();
        assert_eq!(at, vec![0, 1]);
    }

    #[test]
    fn a_crashed_member_misses_the_message_the_others_do_not() {
        let (sim, ports, seen) = cluster(3, everyone(3));
        let p = ports.lock().unwrap().clone();
        sim.crash(sim.alive_nodes()[2]).unwrap();
        p[0].request(BebRequest::Broadcast(9)).unwrap();
        sim.run_until(Time::ZERO + std::time::Duration::from_secs(1));
        let mut at: Vec<usize> = seen.lock().unwrap().iter().map(|s| s.0).collect();
        at.sort();
        assert_eq!(at, vec![0, 1]);
    }
}
