//! Epoch consensus driven by hand: a few machines, a message queue the test controls, and the
//! interleavings that break careless implementations.

use std::collections::VecDeque;

use selfman_core::{NodeAddr, NodeId};
use selfman_ports::{EpIndication, EpochState, InstanceId};

use super::machine::{EpOutput, EpochConsensusMachine, Flaw};
use crate::messages::EpMessage;

fn p(i: usize) -> NodeAddr {
    NodeAddr::simulated(i as u32 + 1, NodeId::UNKNOWN)
}

const I1: InstanceId = InstanceId(1);
const I2: InstanceId = InstanceId(2);

type Msg = EpMessage<u64>;
type States = Vec<(InstanceId, EpochState<u64>)>;

/// Machines and the messages between them, delivered when the test says so.
struct Cluster {
    nodes: Vec<EpochConsensusMachine<u64>>,
    queue: VecDeque<(usize, usize, Msg)>,
    decided: Vec<Vec<(u64, InstanceId, u64)>>,
    aborted: Vec<Vec<(u64, States)>>,
    crashed: Vec<bool>,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        Self::with(n, None)
    }

    fn with(n: usize, flaw: Option<Flaw>) -> Cluster {
        let group: Vec<_> = (0..n).map(p).collect();
        let nodes = (0..n)
            .map(|i| {
                let m = EpochConsensusMachine::new(p(i), group.clone());
                match flaw {
                    Some(f) => m.with_flaw(f),
                    None => m,
                }
            })
            .collect();
        Cluster {
            nodes,
            queue: VecDeque::new(),
            decided: vec![Vec::new(); n],
            aborted: vec![Vec::new(); n],
            crashed: vec![false; n],
        }
    }

    fn apply(&mut self, i: usize, out: Vec<EpOutput<u64>>) {
        for o in out {
            match o {
                EpOutput::Broadcast(m) => {
                    for j in (0..self.nodes.len()).filter(|&j| j != i) {
                        self.queue.push_back((i, j, m.clone()));
                    }
                }
                EpOutput::Send(to, m) => {
                    let j = (0..self.nodes.len()).find(|&j| p(j).addr == to.addr).unwrap();
                    self.queue.push_back((i, j, m));
                }
                EpOutput::Indicate(EpIndication::Decide { ets, id, value }) => {
                    self.decided[i].push((ets, id, value));
                }
                EpOutput::Indicate(EpIndication::Aborted { ets, states }) => {
                    self.aborted[i].push((ets, states));
                }
            }
        }
    }

    fn start(&mut self, nodes: &[usize], ets: u64, leader: usize) {
        for &i in nodes {
            let states = self.aborted[i].last().map(|a| a.1.clone()).unwrap_or_default();
            let mut out = Vec::new();
            self.nodes[i].start(ets, p(leader), states, &mut out);
            self.apply(i, out);
        }
    }

    fn abort(&mut self, nodes: &[usize], ets: u64) {
        for &i in nodes {
            let mut out = Vec::new();
            self.nodes[i].abort(ets, &mut out);
            self.apply(i, out);
        }
    }

    fn propose(&mut self, i: usize, ets: u64, id: InstanceId, v: u64) {
        let mut out = Vec::new();
        self.nodes[i].propose(ets, id, v, &mut out);
        self.apply(i, out);
    }

    fn tick(&mut self, i: usize) {
        let mut out = Vec::new();
        self.nodes[i].on_tick(&mut out);
        self.apply(i, out);
    }

    fn crash(&mut self, i: usize) {
        self.crashed[i] = true;
    }

    /// Delivers queued messages (including those sent meanwhile) for which `keep` says yes,
    /// dropping the others, until the queue is empty.
    fn run(&mut self, mut keep: impl FnMut(usize, usize, &Msg) -> bool) {
        while let Some((from, to, m)) = self.queue.pop_front() {
            if self.crashed[from] || self.crashed[to] || !keep(from, to, &m) {
                continue;
            }
            let mut out = Vec::new();
            self.nodes[to].on_message(p(from), m, &mut out);
            self.apply(to, out);
        }
    }

    fn run_all(&mut self) {
        self.run(|_, _, _| true);
    }

    fn decisions(&self, id: InstanceId) -> Vec<(usize, u64)> {
        let mut v = Vec::new();
        for (i, d) in self.decided.iter().enumerate() {
            for &(_, did, val) in d {
                if did == id {
                    v.push((i, val));
                }
            }
        }
        v
    }
}

fn is_write(m: &Msg) -> bool {
    matches!(m, EpMessage::Write { .. })
}

#[test]
fn a_correct_leader_gets_every_member_to_decide_its_proposal() {
    let mut c = Cluster::new(3);
    c.start(&[0, 1, 2], 3, 0);
    c.propose(0, 3, I1, 42);
    c.propose(0, 3, I1, 43); // a second proposal for the instance is ignored
    c.run_all();
    assert_eq!(c.decisions(I1), vec![(0, 42), (1, 42), (2, 42)]);
    assert_eq!(c.nodes[2].state(I1), EpochState { valts: 3, val: Some(42) });
    // Proposals after the read phase are written at once.
    c.propose(0, 3, I2, 7);
    c.run_all();
    assert_eq!(c.decisions(I2).len(), 3);
    // A member never proposes; a wrong epoch is ignored.
    c.propose(1, 3, InstanceId(9), 1);
    c.propose(0, 2, InstanceId(9), 1);
    c.run_all();
    assert!(c.decisions(InstanceId(9)).is_empty());
}

#[test]
fn lost_messages_are_resent_until_every_member_decided() {
    let mut c = Cluster::new(5);
    c.start(&[0, 1, 2, 3, 4], 5, 0);
    c.propose(0, 5, I1, 1);
    // Everything to members 3 and 4 is lost at first.
    c.run(|_, to, _| to < 3);
    assert_eq!(c.decisions(I1).len(), 3);
    for round in 0..4 {
        c.tick(0);
        // Lossy: drop every other message.
        let mut n = 0;
        c.run(|_, _, _| {
            n += 1;
            n % 2 == round % 2
        });
    }
    c.tick(0);
    c.run_all();
    assert_eq!(c.decisions(I1).len(), 5, "{:?}", c.decided);
    // Once everyone acknowledged, the leader has nothing more to re-send.
    c.tick(0);
    assert!(c.queue.is_empty(), "{:?}", c.queue);
}

#[test]
fn without_retransmission_a_member_that_lost_the_decision_never_decides() {
    let mut c = Cluster::with(3, Some(Flaw::NoRetransmission));
    c.start(&[0, 1, 2], 3, 0);
    c.propose(0, 3, I1, 1);
    c.run(|_, to, m| !(to == 2 && matches!(m, EpMessage::Decided { .. })));
    c.tick(0);
    c.run_all();
    assert_eq!(c.decisions(I1).len(), 2);
}

#[test]
fn a_stale_write_from_an_old_epoch_is_dropped() {
    // Epoch 3 led by p0 writes 1 to p1 only; the write to p2 is held back.
    let mut c = Cluster::new(3);
    c.start(&[0, 1, 2], 3, 0);
    c.propose(0, 3, I1, 1);
    let mut held = Vec::new();
    c.run(|from, to, m| {
        if from == 0 && to == 2 && is_write(m) {
            held.push(m.clone());
        }
        to != 2 || matches!(m, EpMessage::Read { .. })
    });
    // p0 and p1 accepted, a majority: decided there; p2 heard neither write nor decision.
    assert_eq!(c.decisions(I1), vec![(0, 1), (1, 1)]);
    // Epoch 4 led by p1 (p0 is slow): p2 must end with 1, whatever arrives late.
    c.abort(&[1, 2], 3);
    c.start(&[1, 2], 4, 1);
    // The stale write of epoch 3 reaches p2 now, in epoch 4: dropped, no answer.
    for m in held {
        let mut out = Vec::new();
        c.nodes[2].on_message(p(0), m, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(c.nodes[2].state(I1), EpochState::default());
    c.propose(1, 4, I1, 2);
    c.run(|_, to, _| to != 0);
    assert_eq!(c.decisions(I1), vec![(0, 1), (1, 1), (1, 1), (2, 1)], "lock-in of 1");
}

#[test]
fn the_flawed_member_takes_a_stale_write_for_a_current_one() {
    let mut c = Cluster::with(3, Some(Flaw::KeepStaleMessages));
    c.start(&[2], 4, 1);
    let mut out = Vec::new();
    c.nodes[2].on_message(p(0), EpMessage::Write { ets: 3, values: vec![(I1, 9)] }, &mut out);
    assert_eq!(c.nodes[2].state(I1), EpochState { valts: 4, val: Some(9) });
    assert_eq!(out, vec![EpOutput::Send(p(0), EpMessage::Accept { ets: 3, ids: vec![I1] })]);
}

#[test]
fn leader_crash_after_a_partial_write_locks_the_value_in() {
    // 5 processes. Epoch 5 (leader p0) gets 10 accepted by p0, p1, p2: decided at p0, which
    // crashes before anyone else hears the decision.
    let mut c = Cluster::new(5);
    c.start(&[0, 1, 2, 3, 4], 5, 0);
    c.propose(0, 5, I1, 10);
    c.run(|_, to, m| match m {
        EpMessage::Write { .. } => to <= 2,
        EpMessage::Decided { .. } => false,
        _ => true,
    });
    assert_eq!(c.decisions(I1), vec![(0, 10)]);
    c.crash(0);
    // Epoch 9 led by p4, which proposes 20; p1 is slow, so the read majority is {p2, p3, p4}.
    c.abort(&[1, 2, 3, 4], 5);
    c.start(&[1, 2, 3, 4], 9, 4);
    c.propose(4, 9, I1, 20);
    let mut p1_held = Vec::new();
    c.run(|from, to, m| {
        if (from == 1 || to == 1) && !matches!(m, EpMessage::Decided { .. }) {
            p1_held.push(());
            return false;
        }
        true
    });
    for (i, v) in c.decisions(I1) {
        assert_eq!(v, 10, "p{i} decided {v}");
    }
    assert_eq!(c.decisions(I1).len(), 5);
}

#[test]
fn the_highest_timestamp_wins_and_the_flawed_leader_takes_the_lowest() {
    for (flaw, want) in [(None, 20), (Some(Flaw::AdoptLowest), 10)] {
        let mut c = Cluster::with(5, flaw);
        // p1 accepted 10 in epoch 3, p2 accepted 20 in epoch 4 (carried over as states).
        c.aborted[1].push((3, vec![(I1, EpochState { valts: 3, val: Some(10) })]));
        c.aborted[2].push((4, vec![(I1, EpochState { valts: 4, val: Some(20) })]));
        c.start(&[0, 1, 2, 3, 4], 10, 0);
        c.propose(0, 10, I1, 30);
        // p3 and p4 are cut off, so the read majority is {p0, p1, p2}.
        c.run(|from, to, _| from < 3 && to < 3);
        let got: Vec<_> = c.decisions(I1).into_iter().map(|d| d.1).collect();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|&v| v == want), "{flaw:?}: {got:?}");
    }
}

#[test]
fn a_new_leader_completes_instances_nobody_proposed_to_it() {
    let mut c = Cluster::new(3);
    c.aborted[1].push((3, vec![(I1, EpochState { valts: 3, val: Some(5) })]));
    c.start(&[0, 1, 2], 4, 1);
    c.run_all();
    assert_eq!(c.decisions(I1), vec![(0, 5), (1, 5), (2, 5)]);
}

#[test]
fn an_aborted_epoch_reports_its_states_and_falls_silent() {
    let mut c = Cluster::new(3);
    c.start(&[0, 1, 2], 3, 0);
    c.propose(0, 3, I1, 1);
    c.run(|_, _, m| !matches!(m, EpMessage::Decided { .. }));
    assert_eq!(c.decisions(I1), vec![(0, 1)], "only the leader knows");
    c.abort(&[0, 1, 2], 3);
    c.abort(&[0], 3); // twice: answered once
    assert_eq!(c.aborted[0].len(), 1);
    for i in 0..3 {
        assert_eq!(c.aborted[i][0], (3, vec![(I1, EpochState { valts: 3, val: Some(1) })]));
    }
    // Nothing more from the aborted epoch: no decisions, no retransmissions.
    c.queue.clear();
    c.tick(0);
    let mut out = Vec::new();
    c.nodes[1].on_message(p(0), EpMessage::Decided { ets: 3, values: vec![(I1, 1)] }, &mut out);
    assert!(out.is_empty() && c.queue.is_empty());
    assert_eq!(c.decisions(I1), vec![(0, 1)]);
    // An old epoch cannot be started again.
    c.start(&[1], 2, 1);
    assert_eq!(c.nodes[1].epoch(), Some((3, true)));
}

#[test]
fn messages_of_a_later_epoch_wait_until_it_starts() {
    let mut c = Cluster::new(3);
    c.start(&[0, 1, 2], 3, 0);
    c.abort(&[0, 1, 2], 3);
    // p1 leads epoch 4 and starts first: its Read reaches p0 and p2 while they are still in
    // the aborted epoch 3.
    c.start(&[1], 4, 1);
    c.propose(1, 4, I1, 8);
    c.run_all();
    assert!(c.decisions(I1).is_empty());
    c.start(&[0, 2], 4, 1);
    c.run_all();
    assert_eq!(c.decisions(I1).len(), 3);
}

#[test]
fn duelling_leaders_of_two_epochs_decide_one_value() {
    // p0 still leads epoch 3 at itself while p1, p2 moved to epoch 4 (leader p1). Both
    // propose different values for the same instance; messages interleave.
    let mut c = Cluster::new(3);
    c.start(&[0, 1, 2], 3, 0);
    c.abort(&[1, 2], 3);
    c.start(&[1, 2], 4, 1);
    c.propose(0, 3, I1, 100);
    c.propose(1, 4, I1, 200);
    c.run_all();
    for _ in 0..3 {
        c.tick(0);
        c.tick(1);
        c.run_all();
    }
    let vals: Vec<_> = c.decisions(I1).into_iter().map(|d| d.1).collect();
    assert!(!vals.is_empty());
    assert!(vals.iter().all(|&v| v == vals[0]), "{vals:?}");
    // p0 (epoch 3) gets no majority: its members ignore it.
    assert!(c.decided[0].is_empty());
}

#[test]
fn a_silent_member_is_resent_to_ever_more_rarely() {
    let mut c = Cluster::new(3);
    c.start(&[0, 1, 2], 3, 0);
    c.crash(2);
    c.propose(0, 3, I1, 1);
    c.run_all();
    assert_eq!(c.decisions(I1).len(), 2);
    let mut sent_at = Vec::new();
    for k in 1..=100u32 {
        c.tick(0);
        if c.queue.iter().any(|(_, to, _)| *to == 2) {
            sent_at.push(k);
        }
        assert!(c.queue.iter().all(|(_, to, _)| *to == 2), "p1 has acknowledged everything");
        c.queue.clear();
    }
    assert_eq!(sent_at, vec![1, 2, 4, 8, 16, 32, 64, 96]);
    // Back (a healed partition): the next re-send, at most 32 periods later, reaches it.
    c.crashed[2] = false;
    for _ in 0..32 {
        c.tick(0);
    }
    c.run_all();
    assert_eq!(c.decisions(I1).len(), 3);
    c.tick(0);
    assert!(c.queue.is_empty(), "everyone acknowledged: {:?}", c.queue);
}
