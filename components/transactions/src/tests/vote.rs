//! The participants' vote over every combination of per-replica state for `f = 4` (5⁴ = 625
//! combinations, for a read and for a write), against the expected outcome, through the
//! whole protocol: replica records (the model of `replica.rs`), votes as round-0 accepts, recovery rounds for the
//! replicas that abstain, the decision, and what is left at the replicas afterwards.

use selfman_ports::{LockMode, Range, ReplicaOp, RingId, TxId, TxResult, Version};

use super::world::{addr, World};
use crate::client::Client;
use crate::config::TxConfig;

/// What one replica of the item is like when the transaction votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the version read, unlocked.
    Current,
    /// Behind: an older version.
    Stale,
    /// At the version read, read-locked by another transaction.
    ReadLocked,
    /// At the version read, write-locked by another transaction.
    WriteLocked,
    /// Rebuilt recently: it abstains.
    Abstains,
}

const STATES: [State; 5] =
    [State::Current, State::Stale, State::ReadLocked, State::WriteLocked, State::Abstains];

const OTHER: TxId = TxId(0xdead);

/// Whether a replica in `s` votes prepared for a transaction taking a `mode` lock.
fn prepared(s: State, mode: LockMode) -> bool {
    matches!((s, mode), (State::Current, _) | (State::ReadLocked, LockMode::Read))
}

fn run(states: [State; 4], mode: LockMode) {
    let mut w = World::new(TxConfig::default(), 4);
    let key = b"item".to_vec();
    let now = w.now;
    for (r, s) in states.iter().enumerate() {
        let (owner, id) = w.replica(&key, r as u32);
        let store = &mut w.nodes.get_mut(&owner).unwrap().store;
        let v = if *s == State::Stale { 4 } else { 5 };
        store.apply(
            id.clone(),
            &ReplicaOp::Write { version: Version(v), value: Some(b"v".to_vec()) },
            now,
        );
        let lock = match s {
            State::ReadLocked => Some(LockMode::Read),
            State::WriteLocked => Some(LockMode::Write),
            _ => None,
        };
        if let Some(mode) = lock {
            let op = ReplicaOp::Vote { tx: OTHER, mode, read: Version(5), lease_ms: 600_000 };
            store.apply(id.clone(), &op, now);
        }
        if *s == State::Abstains {
            let range = Range { start: RingId(id.pos.0.wrapping_sub(1)), end: id.pos };
            store.abstain(range, now + std::time::Duration::from_secs(600), now);
        }
    }
    let a = addr(0);
    let write = (mode == LockMode::Write).then(|| Some(b"new".to_vec()));
    let tx = TxId(42);
    w.with(a, 0, |m, now, out| {
        m.begin_commit(
            tx,
            vec![(key.clone(), Version(5), write)],
            Client::Session(selfman_ports::TxHandle(1)),
            now,
            out,
        )
    });
    w.run();
    let expect = states.iter().filter(|s| prepared(**s, mode)).count() >= 3;
    let got = w.commits(a).get(&selfman_ports::TxHandle(1)).map(|r| r.1.clone());
    let want = if expect { TxResult::Ok } else { TxResult::Abort(vec![key.clone()]) };
    assert_eq!(got, Some(want), "{states:?} {mode:?}");
    for (r, s) in states.iter().enumerate() {
        let (v, value, votes) = w.record(&key, r as u32);
        assert!(
            votes.iter().all(|e| e.tx != tx),
            "{states:?} {mode:?}: our vote left at replica {r}"
        );
        if *s == State::ReadLocked || *s == State::WriteLocked {
            assert!(votes.iter().any(|e| e.tx == OTHER), "the other transaction's lock stays");
        }
        let before = if *s == State::Stale { 4 } else { 5 };
        if expect && mode == LockMode::Write {
            assert_eq!(
                (v, value.as_deref()),
                (Version(6), Some(&b"new"[..])),
                "{states:?}: replica {r}"
            );
        } else {
            assert_eq!(v, Version(before), "{states:?} {mode:?}: replica {r} changed");
        }
    }
    assert_eq!(w.state_left(), (0, 0), "{states:?} {mode:?}");
}

#[test]
fn every_combination_of_replica_states_for_f_4() {
    let mut commits = [0, 0];
    for mode in [LockMode::Read, LockMode::Write] {
        for n in 0..625 {
            let mut states = [State::Current; 4];
            let mut x = n;
            for s in &mut states {
                *s = STATES[x % 5];
                x /= 5;
            }
            run(states, mode);
            commits[usize::from(mode == LockMode::Write)] +=
                usize::from(states.iter().filter(|s| prepared(**s, mode)).count() >= 3);
        }
    }
    // Reads commit where at least 3 of 4 replicas are current or read-locked (2 of 5
    // states): 4·2³·3 + 2⁴ = 112; writes where at least 3 are current: 4·4 + 1 = 17.
    assert_eq!(commits, [112, 17]);
}
