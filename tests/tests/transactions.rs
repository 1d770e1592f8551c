//! Transactions over the full stack in the simulator (`tx-bank`: detector, relaxed ring,
//! replication and transactions on 4 nodes), and the real replica store checked against the
//! model of it that the transaction crate's unit tests run on. `scenarios.rs` runs a few seeds
//! of every scenario; the `sweep` binary runs many more.
//!
//! `SELFMAN_SEED=S` replays one seed, `SELFMAN_SEEDS=N` runs seeds `0..N`.

use std::time::Duration;

use selfman_core::Time;
use selfman_ports::{
    LockMode, Range, Refusal, ReplicaOp, ReplicaOutcome, RingId, TxId, Version, Vote,
};
use selfman_replication::{ItemId, Store};
use selfman_sim::seeds;
use selfman_tests::checkers::transactions::ProbeEnd;
use selfman_tests::scenarios::transactions::{
    bank_report, faults_report, kill_report, live_report,
};

#[test]
fn the_bank_keeps_its_total_through_contention_and_a_crash() {
    for seed in seeds(0..2) {
        let (out, log) = bank_report("tx-bank", seed).expect("registered");
        out.assert_ok();
        assert_eq!(log.audit, Some(0));
        assert!(log.total_commits() > 100, "seed {seed}: {log:?}");
        assert!(log.aborts > 0, "seed {seed}: no contention: the version check is not exercised");
        assert_eq!(out.alive, 3, "seed {seed}: the crash happened");
    }
}

#[test]
fn lost_updates_are_caught_by_the_bank_check() {
    for seed in seeds(0..3) {
        let (out, log) = bank_report("tx-bank-broken", seed).expect("registered");
        let v = out.violations.first().unwrap_or_else(|| panic!("seed {seed}: missed ({log:?})"));
        assert!(v.message.starts_with("the accounts total"), "seed {seed}: caught as {v:?}");
    }
}

#[test]
fn register_histories_stay_serializable_through_partitions_loss_joins_and_leaves() {
    for seed in seeds(0..2) {
        let (out, (committed, _, aborted)) = faults_report("tx-faults", seed).expect("registered");
        out.assert_ok();
        assert!(committed > 100, "seed {seed}: {committed} committed");
        assert!(aborted > 0, "seed {seed}: no contention");
    }
}

#[test]
fn lost_updates_are_caught_as_dependency_cycles() {
    for seed in seeds(0..3) {
        let (out, _) = faults_report("tx-faults-broken", seed).expect("registered");
        let v = out.violations.first().unwrap_or_else(|| panic!("seed {seed}: missed"));
        assert!(v.message.contains("dependency cycle"), "seed {seed}: caught as {v:?}");
    }
}

#[test]
fn aborted_writes_applied_at_replicas_are_caught_by_the_atomicity_check() {
    for seed in seeds(0..3) {
        let (out, _) = faults_report("tx-atomic-broken", seed).expect("registered");
        let caught = out.violations.iter().any(|v| v.message.starts_with("atomicity"));
        assert!(caught, "seed {seed}: caught as {:?}", out.violations);
    }
}

#[test]
fn without_takeover_the_crashed_tms_locks_outlast_the_liveness_bound() {
    for seed in seeds(0..3) {
        let (out, quiet, _) = live_report("tx-live-broken", seed).expect("registered");
        assert!(quiet.is_some(), "seed {seed}: node 3 never crashed");
        let v = out.violations.first().unwrap_or_else(|| panic!("seed {seed}: missed"));
        assert!(v.message.starts_with("liveness"), "seed {seed}: caught as {v:?}");
    }
}

#[test]
fn the_kill_test_gives_scalaris_outcomes_for_one_two_and_three_dead() {
    for seed in seeds(0..1) {
        let (out, log) = kill_report("tx-kill-1", seed).expect("registered");
        out.assert_ok();
        assert!(log.probes.iter().filter(|p| p.outcome == ProbeEnd::Committed).count() > 100);
        let (out, log) = kill_report("tx-kill-2", seed).expect("registered");
        out.assert_ok();
        assert!(log.probes.iter().any(|p| p.read.is_some()), "seed {seed}: no read answered");
        let (out, log) = kill_report("tx-kill-3", seed).expect("registered");
        out.assert_ok();
        assert!(log.probes.iter().all(|p| p.read.is_none() && p.outcome != ProbeEnd::Committed));
    }
}

#[test]
fn a_commit_without_a_majority_is_caught_by_the_kill_check() {
    for seed in seeds(0..3) {
        let (out, _) = kill_report("tx-kill-2-broken", seed).expect("registered");
        let v = out.violations.first().unwrap_or_else(|| panic!("seed {seed}: missed"));
        assert!(v.message.contains("a write committed with 2 of 4 dead"), "seed {seed}: {v:?}");
    }
}

/// The replica states of the unit world's 5⁴ test, made in the real store, vote as the model
/// there votes: the transaction crate's unit tests are about this store.
#[test]
fn the_real_store_votes_as_the_model_of_the_unit_tests() {
    let now = Time::from_secs(5);
    let lease = 10_000;
    for state in 0..5 {
        for mode in [LockMode::Read, LockMode::Write] {
            let mut s = Store::new();
            let pos = RingId(1 << 40);
            let id = || ItemId::new(pos, b"k");
            let v = if state == 1 { 4 } else { 5 };
            s.apply(
                id(),
                &ReplicaOp::Write { version: Version(v), value: Some(b"x".to_vec()) },
                now,
            );
            match state {
                2 => {
                    let op = ReplicaOp::Vote {
                        tx: TxId(9),
                        mode: LockMode::Read,
                        read: Version(5),
                        lease_ms: lease,
                    };
                    s.apply(id(), &op, now);
                }
                3 => {
                    let op = ReplicaOp::Vote {
                        tx: TxId(9),
                        mode: LockMode::Write,
                        read: Version(5),
                        lease_ms: lease,
                    };
                    s.apply(id(), &op, now);
                }
                4 => s.abstain(
                    Range { start: RingId(pos.0 - 1), end: pos },
                    now + Duration::from_secs(60),
                    now,
                ),
                _ => {}
            }
            let vote = ReplicaOp::Vote { tx: TxId(1), mode, read: Version(5), lease_ms: lease };
            let got = s.apply(id(), &vote, now).0;
            let want = match (state, mode) {
                (0, _) | (2, LockMode::Read) => Vote::Prepared,
                (1, _) => Vote::Refused(Refusal::Version(Version(4))),
                (2, LockMode::Write) | (3, _) => Vote::Refused(Refusal::Locked),
                _ => Vote::Abstain,
            };
            assert_eq!(got, ReplicaOutcome::Voted(want), "state {state} {mode:?}");
            // Remembered (except abstentions), and resolved by commit or release.
            let again = s.apply(id(), &vote, now).0;
            assert_eq!(again, ReplicaOutcome::Voted(want), "state {state} {mode:?}: asked again");
            s.apply(id(), &ReplicaOp::Release { tx: TxId(1) }, now);
            let votes =
                s.get(&id()).map_or(0, |r| r.votes().iter().filter(|e| e.tx == TxId(1)).count());
            assert_eq!(votes, 0, "released");
        }
    }
    // A lock ends with its lease.
    let mut s = Store::new();
    let id = || ItemId::new(RingId(7), b"k");
    let w = |tx| ReplicaOp::Vote {
        tx: TxId(tx),
        mode: LockMode::Write,
        read: Version(0),
        lease_ms: lease,
    };
    assert_eq!(s.apply(id(), &w(1), now).0, ReplicaOutcome::Voted(Vote::Prepared));
    assert_eq!(s.apply(id(), &w(2), now).0, ReplicaOutcome::Voted(Vote::Refused(Refusal::Locked)));
    let later = now + Duration::from_millis(lease + 1);
    assert_eq!(s.apply(id(), &w(3), later).0, ReplicaOutcome::Voted(Vote::Prepared));
}
