//! Coordinating operations at replicas: quorum reads and single-replica operations, with
//! timeouts, re-asking and a bound on what is in flight: [`Coordinator`].
//!
//! Invariants (unit tests below and in `tests/quorum.rs` of the machine):
//! * a quorum read answers once, with the **highest** version among the answers, and only
//!   after answers from `f/2 + 1` **distinct replicas** (a replica answering twice counts once;
//!   "not ready" and "not responsible" are no answer);
//! * every operation is answered exactly once: by its replicas, or by a timeout after
//!   `op_timeout` (naming the replicas that did answer);
//! * a replica that has not answered is asked again at a quarter, half and three quarters of
//!   the timeout (a message or a peer on the way may have been lost), one that said "not
//!   ready" after `retry`;
//! * at most `max_pending` operations are in flight; more are refused at once.

use std::collections::BTreeMap;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{
    has_flaw, QuorumRead, ReadFailure, ReplicaAnswer, ReplicaFailure, ReplicaOp, ReplicaOutcome,
    ReplicationIndication, RingId, Version,
};

use crate::faults::Fault;
#[cfg(feature = "flaws")]
use crate::machine::Flaw;
use crate::machine::{tag, Ctx, ReplOutput, TAG_OP};
use crate::messages::{OpRequest, OpResult, ReplMessage};

/// How many times the replicas that have not answered are asked again before the timeout
/// (evenly spread over it): over links that lose a message in twenty, a replica then fails to
/// answer with a probability below 10^-4.
const RESENDS: u32 = 3;

/// What an operation in flight is.
#[derive(Clone, Debug)]
enum Kind {
    /// A quorum read: the answers so far, one per replica.
    Read { answers: Vec<(ReplicaAnswer, Option<Vec<u8>>)> },
    /// One operation at one replica.
    Op { replica: u32, op: ReplicaOp },
}

/// An operation in flight.
#[derive(Clone, Debug)]
struct Pending {
    key: Vec<u8>,
    tag: u64,
    kind: Kind,
    started: Time,
    /// Replicas that answered.
    answered: u64,
    /// When to ask each replica (again); `None`: wait for its answer.
    ask_at: Vec<Option<Time>>,
    /// How many times the replicas that have not answered were asked again.
    resent: u32,
}

/// The operations this node coordinates.
#[derive(Clone, Debug, Default)]
pub struct Coordinator {
    pending: BTreeMap<u64, Pending>,
    next: u64,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

impl Coordinator {
    /// No operation in flight.
    pub fn new() -> Coordinator {
        Coordinator::default()
    }

    /// This coordinator with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.flaw = Some(flaw);
        self
    }

    /// How many operations are in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Starts a quorum read of `key`, or refuses it at once.
    pub(crate) fn read(&mut self, cx: &mut Ctx<'_>, key: Vec<u8>, tag: u64) {
        if self.pending.len() >= cx.config.max_pending {
            cx.faults.add(Fault::Overloaded, &"read refused: too many operations in flight");
            let result = Err(ReadFailure::Overloaded);
            cx.out.push(ReplOutput::Indicate(ReplicationIndication::ReadDone { key, tag, result }));
            return;
        }
        let f = cx.placement.f();
        let kind = Kind::Read { answers: Vec::new() };
        self.start(cx, key, tag, kind, (0..f).collect());
    }

    /// Starts `op` at replica `replica` of `key`, or refuses it at once.
    pub(crate) fn at_replica(
        &mut self,
        cx: &mut Ctx<'_>,
        key: Vec<u8>,
        replica: u32,
        op: ReplicaOp,
        tag: u64,
    ) {
        if self.pending.len() >= cx.config.max_pending {
            cx.faults.add(Fault::Overloaded, &"operation refused: too many in flight");
            let result = Err(ReplicaFailure::Overloaded);
            let ind = ReplicationIndication::ReplicaDone { key, replica, tag, result };
            cx.out.push(ReplOutput::Indicate(ind));
            return;
        }
        self.start(cx, key, tag, Kind::Op { replica, op }, vec![replica]);
    }

    fn start(&mut self, cx: &mut Ctx<'_>, key: Vec<u8>, tag: u64, kind: Kind, ask: Vec<u32>) {
        let id = self.next;
        self.next += 1;
        let f = cx.placement.f() as usize;
        let mut ask_at = vec![None; f];
        for r in &ask {
            ask_at[*r as usize] = Some(cx.now);
        }
        let p = Pending { key, tag, kind, started: cx.now, answered: 0, ask_at, resent: 0 };
        self.pending.insert(id, p);
        self.ask_due(cx, id);
    }

    /// Sends the operation to every replica whose time to be asked has come.
    fn ask_due(&mut self, cx: &mut Ctx<'_>, id: u64) {
        let Some(p) = self.pending.get_mut(&id) else { return };
        for r in 0..p.ask_at.len() {
            if p.ask_at[r].is_some_and(|t| t <= cx.now) {
                p.ask_at[r] = None;
                let replica = r as u32;
                let op = match &p.kind {
                    Kind::Read { .. } => ReplicaOp::Read,
                    Kind::Op { op, .. } => op.clone(),
                };
                let key = cx.placement.position(&p.key, replica);
                let req =
                    OpRequest { id, reply_to: cx.me, key: p.key.clone(), replica, op, forwards: 0 };
                cx.out.push(ReplOutput::Route {
                    key,
                    tag: tag(TAG_OP, id),
                    msg: ReplMessage::Op(req),
                });
            }
        }
    }

    /// A replica answered operation `id`.
    pub(crate) fn on_reply(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        id: u64,
        replica: u32,
        result: OpResult,
    ) {
        let quorum = if has_flaw!(self, QuorumOfOne) { 1 } else { cx.placement.quorum() };
        let Some(p) = self.pending.get_mut(&id) else {
            // An answer after the operation completed (the replicas beyond the quorum) or
            // timed out is normal; one to an operation never started is not.
            if id >= self.next {
                cx.faults.add(
                    Fault::UnknownReply,
                    &format_args!("answer to operation {id} from {from}"),
                );
            }
            return;
        };
        let bit = 1u64 << replica;
        let asked = match &p.kind {
            Kind::Read { .. } => true,
            Kind::Op { replica: r, .. } => *r == replica,
        };
        if !asked {
            cx.faults.add(
                Fault::BadReplica,
                &format_args!("answer for replica {replica} of operation {id}"),
            );
            return;
        }
        if p.answered & bit != 0 {
            return; // a second answer (the replica was asked twice): counted once
        }
        let outcome = match result {
            OpResult::Done(o) => o,
            OpResult::NotReady | OpResult::NotResponsible => {
                // No answer: ask again later, if time allows.
                p.ask_at[replica as usize] = Some(cx.now + cx.config.retry);
                return;
            }
        };
        p.answered |= bit;
        match &mut p.kind {
            Kind::Op { .. } => {
                let p = self.pending.remove(&id).expect("just looked up");
                let result = Ok((from, outcome));
                let ind =
                    ReplicationIndication::ReplicaDone { key: p.key, replica, tag: p.tag, result };
                cx.out.push(ReplOutput::Indicate(ind));
            }
            Kind::Read { answers } => {
                let ReplicaOutcome::Record { version, value, .. } = outcome else {
                    // A read answered with something else: not an answer.
                    p.answered &= !bit;
                    cx.faults
                        .add(Fault::UnknownReply, &format_args!("read {id} answered {outcome:?}"));
                    return;
                };
                answers.push((ReplicaAnswer { replica, node: from, version }, value));
                if answers.len() >= quorum as usize {
                    let p = self.pending.remove(&id).expect("just looked up");
                    let Kind::Read { answers } = p.kind else { unreachable!("a read") };
                    let result = Ok(highest(answers));
                    let ind = ReplicationIndication::ReadDone { key: p.key, tag: p.tag, result };
                    cx.out.push(ReplOutput::Indicate(ind));
                }
            }
        }
    }

    /// The ring could not deliver operation `id` to `key`: ask that replica again later.
    pub(crate) fn on_undeliverable(&mut self, cx: &mut Ctx<'_>, id: u64, key: RingId) {
        let Some(p) = self.pending.get_mut(&id) else { return };
        for r in 0..p.ask_at.len() {
            let replica = r as u32;
            if cx.placement.position(&p.key, replica) == key && p.answered & (1 << replica) == 0 {
                p.ask_at[r] = Some(cx.now + cx.config.retry);
            }
        }
    }

    /// Time passed: re-ask, and time out.
    pub(crate) fn on_tick(&mut self, cx: &mut Ctx<'_>) {
        let timeout = cx.config.op_timeout;
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else { continue };
            if cx.now >= p.started + timeout {
                let p = self.pending.remove(&id).expect("just looked up");
                let ind = match p.kind {
                    Kind::Read { answers } => ReplicationIndication::ReadDone {
                        key: p.key,
                        tag: p.tag,
                        result: Err(ReadFailure::Timeout {
                            answered: answers.into_iter().map(|(a, _)| a).collect(),
                        }),
                    },
                    Kind::Op { replica, .. } => ReplicationIndication::ReplicaDone {
                        key: p.key,
                        replica,
                        tag: p.tag,
                        result: Err(ReplicaFailure::Timeout),
                    },
                };
                cx.out.push(ReplOutput::Indicate(ind));
                continue;
            }
            if p.resent < RESENDS && cx.now >= p.started + timeout * (p.resent + 1) / (RESENDS + 1)
            {
                p.resent += 1;
                let wanted: Vec<u32> = match &p.kind {
                    Kind::Read { .. } => (0..p.ask_at.len() as u32).collect(),
                    Kind::Op { replica, .. } => vec![*replica],
                };
                for r in wanted {
                    if p.answered & (1 << r) == 0 {
                        p.ask_at[r as usize] = Some(cx.now);
                    }
                }
            }
            self.ask_due(cx, id);
        }
    }
}

/// The read's answer: the highest version among the answers (its value), and who answered.
fn highest(answers: Vec<(ReplicaAnswer, Option<Vec<u8>>)>) -> QuorumRead {
    let mut best: Option<(Version, Option<Vec<u8>>)> = None;
    let mut replicas = Vec::with_capacity(answers.len());
    for (a, value) in answers {
        if best.as_ref().is_none_or(|(v, _)| a.version > *v) {
            best = Some((a.version, value));
        }
        replicas.push(a);
    }
    let (version, value) = best.unwrap_or_default();
    QuorumRead { value, version, replicas }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use selfman_core::{NodeAddr, NodeId, Time};
    use selfman_ports::{
        ReadFailure, ReplicaFailure, ReplicaOp, ReplicaOutcome, ReplicationIndication, RingId,
        Version,
    };

    use super::Coordinator;
    use crate::machine::tests_support::Harness;
    use crate::machine::{Flaw, ReplOutput};
    use crate::messages::{OpResult, ReplMessage};

    fn node(n: u32) -> NodeAddr {
        NodeAddr::simulated(n, NodeId(u64::from(n) + 1))
    }

    fn record(v: u64) -> OpResult {
        let value = (v > 0).then(|| format!("v{v}").into_bytes());
        OpResult::Done(ReplicaOutcome::Record { version: Version(v), value, lock: None })
    }

    /// The ids and replica numbers of the operations routed.
    fn routed(out: &[ReplOutput]) -> Vec<(u64, u32)> {
        out.iter()
            .filter_map(|o| match o {
                ReplOutput::Route { msg: ReplMessage::Op(r), .. } => Some((r.id, r.replica)),
                _ => None,
            })
            .collect()
    }

    fn reads(out: &[ReplOutput]) -> Vec<&ReplicationIndication> {
        out.iter()
            .filter_map(|o| match o {
                ReplOutput::Indicate(i @ ReplicationIndication::ReadDone { .. }) => Some(i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_read_asks_every_replica_and_answers_the_highest_of_a_majority() {
        let mut h = Harness::new(4);
        let mut c = Coordinator::new();
        h.run(|cx| c.read(cx, b"k".to_vec(), 7));
        let asked = routed(&h.out);
        assert_eq!(asked.iter().map(|a| a.1).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        // The routed keys are the replica keys.
        let keys: Vec<RingId> = h
            .out
            .iter()
            .filter_map(|o| match o {
                ReplOutput::Route { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        assert_eq!(keys[2], RingId::of_key(b"k").replica(2, 4));
        h.out.clear();
        let id = asked[0].0;
        h.run(|cx| c.on_reply(cx, node(1), id, 0, record(3)));
        h.run(|cx| c.on_reply(cx, node(1), id, 0, record(3))); // the same replica again
        h.run(|cx| c.on_reply(cx, node(2), id, 1, record(5)));
        assert!(reads(&h.out).is_empty(), "two replicas are not a majority of four");
        h.run(|cx| c.on_reply(cx, node(3), id, 3, record(4)));
        let ReplicationIndication::ReadDone { tag, result: Ok(r), .. } = reads(&h.out)[0] else {
            panic!("{:?}", h.out)
        };
        assert_eq!((*tag, r.version, r.value.as_deref()), (7, Version(5), Some(&b"v5"[..])));
        let mut who: Vec<u32> = r.replicas.iter().map(|a| a.replica).collect();
        who.sort();
        assert_eq!(who, vec![0, 1, 3]);
        // A late answer changes nothing and is no fault; one to an operation never started is.
        h.out.clear();
        h.run(|cx| c.on_reply(cx, node(4), id, 2, record(9)));
        assert!(h.out.is_empty());
        assert_eq!(h.faults.get(crate::faults::Fault::UnknownReply), 0);
        h.run(|cx| c.on_reply(cx, node(4), id + 100, 2, record(9)));
        assert_eq!(h.faults.get(crate::faults::Fault::UnknownReply), 1);
    }

    #[test]
    fn not_ready_replicas_are_asked_again_and_missing_ones_at_each_quarter() {
        let mut h = Harness::new(4);
        let mut c = Coordinator::new();
        h.run(|cx| c.read(cx, b"k".to_vec(), 1));
        let id = routed(&h.out)[0].0;
        h.out.clear();
        h.run(|cx| c.on_reply(cx, node(1), id, 0, OpResult::NotReady));
        h.run(|cx| c.on_reply(cx, node(2), id, 1, record(1)));
        // Not before `retry`.
        h.tick_to(Duration::from_millis(50), |cx| c.on_tick(cx));
        assert!(routed(&h.out).is_empty());
        h.tick_to(Duration::from_millis(100), |cx| c.on_tick(cx));
        assert_eq!(routed(&h.out), vec![(id, 0)]);
        h.out.clear();
        // A quarter of the way to the 2 s timeout, every replica that has not answered is
        // asked again.
        h.tick_to(Duration::from_millis(500), |cx| c.on_tick(cx));
        let mut again: Vec<u32> = routed(&h.out).iter().map(|a| a.1).collect();
        again.sort();
        assert_eq!(again, vec![0, 2, 3]);
    }

    #[test]
    fn a_read_without_a_majority_times_out_naming_who_answered() {
        let mut h = Harness::new(4);
        let mut c = Coordinator::new();
        h.run(|cx| c.read(cx, b"k".to_vec(), 1));
        let id = routed(&h.out)[0].0;
        h.run(|cx| c.on_reply(cx, node(1), id, 2, record(1)));
        h.run(|cx| c.on_reply(cx, node(2), id, 3, record(1)));
        h.out.clear();
        h.tick_to(Duration::from_millis(1999), |cx| c.on_tick(cx));
        assert!(reads(&h.out).is_empty());
        h.tick_to(Duration::from_millis(2000), |cx| c.on_tick(cx));
        let ReplicationIndication::ReadDone {
            result: Err(ReadFailure::Timeout { answered }), ..
        } = reads(&h.out)[0]
        else {
            panic!("{:?}", h.out)
        };
        assert_eq!(answered.len(), 2);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn an_operation_is_answered_once_by_its_replica_or_its_timeout() {
        let mut h = Harness::new(4);
        let mut c = Coordinator::new();
        let op = ReplicaOp::Write { version: Version(1), value: None };
        h.run(|cx| c.at_replica(cx, b"k".to_vec(), 2, op.clone(), 9));
        assert_eq!(routed(&h.out).iter().map(|a| a.1).collect::<Vec<_>>(), vec![2]);
        let id = routed(&h.out)[0].0;
        h.out.clear();
        h.run(|cx| c.on_reply(cx, node(1), id, 1, OpResult::Done(ReplicaOutcome::Applied)));
        assert!(h.out.is_empty(), "an answer for another replica is not this one's");
        h.run(|cx| c.on_reply(cx, node(1), id, 2, OpResult::Done(ReplicaOutcome::Applied)));
        assert!(matches!(
            &h.out[..],
            [ReplOutput::Indicate(ReplicationIndication::ReplicaDone {
                tag: 9,
                result: Ok(_),
                ..
            })]
        ));
        h.out.clear();
        h.run(|cx| c.at_replica(cx, b"k".to_vec(), 0, op, 10));
        h.out.clear();
        h.tick_to(Duration::from_secs(3), |cx| c.on_tick(cx));
        assert!(matches!(
            &h.out[..],
            [ReplOutput::Indicate(ReplicationIndication::ReplicaDone {
                tag: 10,
                result: Err(ReplicaFailure::Timeout),
                ..
            })]
        ));
    }

    #[test]
    fn too_many_operations_are_refused_at_once() {
        let mut h = Harness::new(4);
        h.config.max_pending = 2;
        let mut c = Coordinator::new();
        for t in 0..3 {
            h.run(|cx| c.read(cx, b"k".to_vec(), t));
        }
        assert!(matches!(
            reads(&h.out)[..],
            [ReplicationIndication::ReadDone { tag: 2, result: Err(ReadFailure::Overloaded), .. }]
        ));
        assert_eq!(c.in_flight(), 2);
    }

    #[test]
    fn flaw_quorum_of_one_answers_after_the_first_replica() {
        let mut h = Harness::new(4);
        let mut c = Coordinator::new().with_flaw(Flaw::QuorumOfOne);
        h.run(|cx| c.read(cx, b"k".to_vec(), 1));
        let id = routed(&h.out)[0].0;
        h.run(|cx| c.on_reply(cx, node(1), id, 0, record(1)));
        // A stale replica alone decides: version 1 although others hold 2.
        let ReplicationIndication::ReadDone { result: Ok(r), .. } = reads(&h.out)[0] else {
            panic!()
        };
        assert_eq!(r.version, Version(1));
        let _ = Time::ZERO;
    }
}
