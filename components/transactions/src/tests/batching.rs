//! Fewer messages on the failure-free path: prepares packed per node (once the TM knows who
//! answers for which replica key), a node's votes of one transaction sent together, the
//! messages of one handler to one node in one batch — and the same outcomes as one by one.

use selfman_core::Time;
use selfman_ports::{RingId, TxHandle, TxId, TxRequest, TxResult, Version};

use super::world::{addr, Dest, World};
use crate::config::TxConfig;
use crate::machine::{coalesce, TxMachine, TxOutput};
use crate::messages::{Slot, TxMessage, Value, MAX_BATCH};

fn h(n: u64) -> TxHandle {
    TxHandle(n)
}

fn transfer(w: &mut World, a: selfman_core::NodeAddr, handle: TxHandle) {
    w.script(
        a,
        vec![
            TxRequest::Begin { handle },
            TxRequest::Read { handle, key: b"y".to_vec() },
            TxRequest::AddToNumber { handle, key: b"x".to_vec(), delta: 1 },
        ],
    );
}

#[test]
fn prepares_are_packed_per_node_once_the_tm_knows_the_owners() {
    let mut w = World::new(TxConfig::default(), 4);
    let a = addr(0);
    w.seed(b"x", 1, b"1");
    w.seed(b"y", 1, b"1");
    transfer(&mut w, a, h(1));
    w.request(a, TxRequest::Commit { handle: h(1) });
    let routed = |w: &World| {
        w.queue
            .iter()
            .filter(|(_, d, _, _)| matches!(d, Dest::Routed(_)))
            .map(|(_, _, m, _)| m.kind())
            .collect::<Vec<_>>()
    };
    // Nothing known yet: one prepare per replica of another node (the TM's own are handled
    // at once).
    assert_eq!(routed(&w), vec!["prepare"; 6], "the first transaction");
    w.run();
    assert_eq!(w.commits(a)[&h(1)].1, TxResult::Ok);
    transfer(&mut w, a, h(2));
    w.request(a, TxRequest::Commit { handle: h(2) });
    // Every other node holds one replica of each key: one batch of two prepares each.
    assert_eq!(routed(&w), vec!["batch"; 3], "the second transaction");
    w.run();
    assert_eq!(w.commits(a)[&h(2)].1, TxResult::Ok);
    assert!(w.decision_delays.iter().all(|d| *d == 4), "{:?}", w.decision_delays);
    for r in 0..4 {
        assert_eq!(w.record(b"x", r).0, Version(3), "both increments at replica {r}");
        assert!(w.record(b"y", r).2.is_empty(), "no lock left at replica {r}");
    }
    assert_eq!(w.state_left(), (0, 0));
}

/// A prepare of `tx` for replica `replica` of `key`, acceptors `acceptors`.
fn prepare(
    tx: TxId,
    key: &[u8],
    item: u32,
    replica: u32,
    acceptors: Vec<selfman_core::NodeAddr>,
) -> TxMessage {
    TxMessage::Prepare {
        tx,
        acceptors: acceptors.into(),
        slot: Slot { item, replica },
        key: key.to_vec(),
        mode: selfman_ports::LockMode::Write,
        read: Version(0),
        write: Some(Some(b"v".to_vec())),
        lease_ms: 10_000,
    }
}

#[test]
fn a_batch_routed_to_the_wrong_node_has_its_other_prepares_routed_on() {
    let w = World::new(TxConfig::default(), 4);
    let (n0, n1) = (addr(0), addr(1));
    // A replica key node 0 owns and one node 1 owns.
    let mine = (0..4).find(|r| w.replica(b"k", *r).0 == n0).expect("a replica at node 0");
    let theirs = (0..4).find(|r| w.replica(b"k", *r).0 == n1).expect("a replica at node 1");
    let mut m = TxMachine::new(n0, TxConfig::default());
    let pos = w.pos[&n0];
    let pred = *w.ring.range(..pos).next_back().or_else(|| w.ring.iter().next_back()).unwrap().0;
    m.on_range(Some(selfman_ports::Range::new(pred, pos)));
    let tx = TxId(7);
    let batch = TxMessage::Batch(vec![
        prepare(tx, b"k", 0, mine, vec![n1]),
        prepare(tx, b"k", 0, theirs, vec![n1]),
    ]);
    let mut out = Vec::new();
    m.on_deliver(n1, batch, Time::from_secs(1), &mut out);
    assert_eq!(m.in_flight().1, 1, "only the prepare of its own replica has a participant here");
    let rerouted: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            TxOutput::Route { key, msg: TxMessage::Prepare { slot, .. } } => {
                Some((*key, slot.replica))
            }
            _ => None,
        })
        .collect();
    assert_eq!(rerouted, vec![(RingId::of_key(b"k").replica(theirs, 4), theirs)]);
    assert!(out.iter().any(|o| matches!(o, TxOutput::Replicate(_))), "its own replica votes");
}

#[test]
fn a_nodes_votes_of_one_transaction_go_together_one_message_per_acceptor() {
    let (n0, n1, n2) = (addr(0), addr(1), addr(2));
    let mut m = TxMachine::new(n0, TxConfig::default());
    let tx = TxId(9);
    let now = Time::from_secs(1);
    let mut out = Vec::new();
    // Two prepares come directly (no range known: each is handled where it came).
    m.on_message(n1, prepare(tx, b"a", 0, 0, vec![n1, n2]), now, &mut out);
    m.on_message(n1, prepare(tx, b"b", 1, 0, vec![n1, n2]), now, &mut out);
    let tags: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            TxOutput::Replicate(selfman_ports::ReplicationRequest::AtReplica { tag, .. }) => {
                Some(*tag)
            }
            _ => None,
        })
        .collect();
    assert_eq!(tags.len(), 2);
    let voted = |tag| selfman_ports::ReplicationIndication::ReplicaDone {
        key: Vec::new(),
        replica: 0,
        tag,
        result: Ok((n0, selfman_ports::ReplicaOutcome::Voted(selfman_ports::Vote::Prepared))),
    };
    let mut first = Vec::new();
    m.on_replication(voted(tags[0]), now, &mut first);
    assert!(
        !first.iter().any(|o| matches!(o, TxOutput::Send { .. })),
        "the first vote waits for its sibling: {first:?}"
    );
    let mut second = Vec::new();
    m.on_replication(voted(tags[1]), now, &mut second);
    let sends: Vec<_> = second
        .iter()
        .filter_map(|o| match o {
            TxOutput::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 2, "one message per acceptor: {sends:?}");
    for (_, msg) in sends {
        let TxMessage::Batch(votes) = msg else { panic!("a batch: {msg:?}") };
        let slots: Vec<Slot> = votes
            .iter()
            .map(|v| match v {
                TxMessage::Vote { slot, value: Value::Prepared, .. } => *slot,
                other => panic!("a vote: {other:?}"),
            })
            .collect();
        assert_eq!(slots, vec![Slot { item: 0, replica: 0 }, Slot { item: 1, replica: 0 }]);
    }
}

#[test]
fn a_held_vote_goes_at_the_next_retransmit_if_its_sibling_never_votes() {
    let (n0, n1) = (addr(0), addr(1));
    let config = TxConfig::default();
    let mut m = TxMachine::new(n0, config);
    let tx = TxId(11);
    let now = Time::from_secs(1);
    let mut out = Vec::new();
    m.on_message(n1, prepare(tx, b"a", 0, 0, vec![n1]), now, &mut out);
    m.on_message(n1, prepare(tx, b"b", 1, 0, vec![n1]), now, &mut out);
    let TxOutput::Replicate(selfman_ports::ReplicationRequest::AtReplica { tag, .. }) = out[0]
    else {
        panic!("a replica vote first: {out:?}")
    };
    let done = selfman_ports::ReplicationIndication::ReplicaDone {
        key: Vec::new(),
        replica: 0,
        tag,
        result: Ok((n0, selfman_ports::ReplicaOutcome::Voted(selfman_ports::Vote::Prepared))),
    };
    let mut held = Vec::new();
    m.on_replication(done, now, &mut held);
    assert!(!held.iter().any(|o| matches!(o, TxOutput::Send { .. })));
    let mut later = Vec::new();
    m.on_tick(now + config.retransmit, &mut later);
    let votes: Vec<_> = later
        .iter()
        .filter(|o| matches!(o, TxOutput::Send { msg: TxMessage::Vote { .. }, .. }))
        .collect();
    assert_eq!(votes.len(), 1, "the held vote, once: {later:?}");
}

#[test]
fn batches_in_a_batch_and_oversized_batches_are_dropped_and_counted() {
    let (n0, n1) = (addr(0), addr(1));
    let mut m = TxMachine::new(n0, TxConfig::default());
    let now = Time::from_secs(1);
    let vote = TxMessage::Vote {
        tx: TxId(3),
        slot: Slot { item: 0, replica: 0 },
        value: Value::Prepared,
        writes: None,
    };
    let mut out = Vec::new();
    let nested = TxMessage::Batch(vec![TxMessage::Batch(vec![vote.clone()])]);
    m.on_message(n1, nested.clone(), now, &mut out);
    m.on_deliver(n1, nested, now, &mut out);
    m.on_message(n1, TxMessage::Batch(vec![vote; MAX_BATCH + 1]), now, &mut out);
    assert_eq!(m.faults().get(crate::faults::Fault::Oversized), 3);
    assert_eq!(m.in_flight(), (0, 0), "nothing of them kept");
    assert!(out.is_empty(), "{out:?}");
}

/// The packing as first written (a copy of every output, grouped per destination), kept as
/// the reference the in-place `coalesce` must agree with.
fn coalesce_reference(out: &mut Vec<TxOutput>, start: usize) {
    use crate::messages::{Round, MAX_ACCEPTORS, MAX_ITEMS};
    let sends = out[start..].iter().filter(|o| matches!(o, TxOutput::Send { .. })).count();
    if sends < 2 {
        return;
    }
    let tail: Vec<TxOutput> = out.drain(start..).collect();
    let mut groups: Vec<(selfman_core::NodeAddr, Vec<TxMessage>)> = Vec::new();
    let mut order: Vec<Result<usize, TxOutput>> = Vec::new();
    for o in tail {
        let TxOutput::Send { to, msg } = o else {
            order.push(Err(o));
            continue;
        };
        let g = match groups.iter().position(|(t, _)| *t == to) {
            Some(g) => g,
            None => {
                groups.push((to, Vec::new()));
                order.push(Ok(groups.len() - 1));
                groups.len() - 1
            }
        };
        let msgs = &mut groups[g].1;
        match (msgs.last_mut(), msg) {
            (
                Some(TxMessage::Accepted { tx, round, values }),
                TxMessage::Accepted { tx: t2, round: r2, values: v2 },
            ) if *tx == t2
                && *round == r2
                && *round == Round::ZERO
                && values.len() + v2.len() <= MAX_ITEMS * MAX_ACCEPTORS =>
            {
                values.extend(v2)
            }
            (_, msg) => msgs.push(msg),
        }
    }
    for o in order {
        match o {
            Err(o) => out.push(o),
            Ok(g) => {
                let (to, msgs) = (groups[g].0, std::mem::take(&mut groups[g].1));
                let mut msgs = msgs.into_iter().peekable();
                while msgs.peek().is_some() {
                    let chunk: Vec<TxMessage> = msgs.by_ref().take(MAX_BATCH).collect();
                    let msg = match <[TxMessage; 1]>::try_from(chunk) {
                        Ok([one]) => one,
                        Err(chunk) => TxMessage::Batch(chunk),
                    };
                    out.push(TxOutput::Send { to, msg });
                }
            }
        }
    }
}

#[test]
fn packing_in_place_agrees_with_the_reference_on_random_output_runs() {
    use crate::messages::Round;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for case in 0..2_000 {
        // Long runs to one destination now and then, past two batches' worth.
        let long = case % 50 == 0;
        let len = if long { 3 * MAX_BATCH as u64 + 7 } else { next(24) };
        let mut out = vec![TxOutput::Lookup { key: RingId(9), tag: 9 }];
        let start = out.len();
        for k in 0..len {
            let to = addr(if long { 0 } else { next(4) as u32 });
            let tx = TxId(next(3));
            let o = match next(5) {
                0 => TxOutput::Lookup { key: RingId(k), tag: k },
                1 | 2 => TxOutput::Send {
                    to,
                    msg: TxMessage::Accepted {
                        tx,
                        round: if next(4) == 0 { Round { n: 1, rank: 1 } } else { Round::ZERO },
                        values: vec![(Slot { item: k as u32, replica: 0 }, Value::Prepared)],
                    },
                },
                3 => TxOutput::Send { to, msg: TxMessage::Applied { tx, slot: Slot::default() } },
                _ => TxOutput::Send { to, msg: TxMessage::Forget { tx, commit: k % 2 == 0 } },
            };
            out.push(o);
        }
        let mut expected = out.clone();
        coalesce_reference(&mut expected, start);
        coalesce(&mut out, start);
        assert_eq!(out, expected, "case {case}");
    }
}
