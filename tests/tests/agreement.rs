//! Best-effort broadcast and consensus in the simulator: a few seeds of each scenario, every
//! deliberately broken variant caught by the checker meant for it, the checkers on hand-made
//! histories, and determinism (seeds that once failed: `regressions.rs`).

use selfman_consensus::{EpFlaw, Flaws};
use selfman_core::testkit::Log;
use selfman_core::{NodeAddr, NodeId, Time};
use selfman_ports::{InstanceId, StartEpoch};
use selfman_sim::{address_of, seeds};
use selfman_tests::by_name;
use selfman_tests::checkers::consensus::ConsensusChecker;
use selfman_tests::scenarios::consensus::{consensus_broken_stale, consensus_recording};

fn run(name: &str, seed: u64) -> selfman_sim::Outcome {
    (by_name(name).unwrap_or_else(|| panic!("{name} is not registered")).build)().run_quiet(seed)
}

#[test]
fn beb_and_consensus_hold_over_a_few_seeds() {
    for seed in seeds(0..4) {
        run("beb", seed).assert_ok();
        run("consensus", seed).assert_ok();
    }
}

#[test]
fn consensus_runs_exercise_what_they_claim() {
    // Over a few seeds: leaders crash, crashed nodes had decided, instances are contended,
    // epochs change many times, messages are lost and partitioned away.
    let (mut by_crashed, mut contended, mut epochs, mut lost, mut cut) = (0, 0, 0, 0, 0);
    for seed in 0..6 {
        let log: Log<ConsensusChecker> = Log::default();
        let mut alive = Vec::new();
        let out = consensus_recording(Flaws::default(), log.clone())
            .run_inspect(seed, |sim| alive = sim.alive_nodes());
        out.assert_ok();
        let l = log.lock();
        assert!(l.instances() >= 30, "seed {seed}: {} instances", l.instances());
        by_crashed += l.decisions_by_others(&alive);
        contended += l.contended();
        epochs += l.epoch_count();
        lost += out.net.lost;
        cut += out.net.partitioned;
        assert!(l.faults().contains("isolate leader"), "seed {seed}:\n{}", l.faults());
    }
    assert!(by_crashed > 0 && contended > 50 && epochs > 60 && lost > 100 && cut > 100);
}

#[test]
fn a_consensus_run_replays_bit_for_bit() {
    let a = run("consensus", 5);
    let b = run("consensus", 5);
    assert_eq!((a.trace_hash, a.turns, a.net), (b.trace_hash, b.turns, b.net));
    assert_ne!(a.trace_hash, run("consensus", 6).trace_hash);
}

/// Each broken variant and the words its checker's report starts with.
const BROKEN: &[(&str, &str)] = &[
    ("beb-broken", "validity"),
    ("consensus-broken", "agreement:"),
    ("consensus-broken-epochs", "consistency:"),
    ("consensus-broken-monotonic", "monotonicity:"),
    ("consensus-broken-integrity", "integrity:"),
    ("consensus-broken-termination", "termination:"),
];

#[test]
fn every_broken_variant_is_caught_by_its_checker() {
    for &(name, what) in BROKEN {
        assert!(!by_name(name).unwrap().must_pass);
        for seed in 0..3 {
            let out = run(name, seed);
            let v = out.violations.first().unwrap_or_else(|| panic!("{name} seed {seed}: missed"));
            let said = format!("{}: {}", v.check, v.message);
            assert!(said.contains(what), "{name} seed {seed}: caught as {v:?}");
        }
    }
}

#[test]
fn members_keeping_stale_epoch_messages_break_agreement() {
    // The bite needs an old leader's re-sent write to reach members that have moved to a newer
    // epoch before the old leader moves too: it happens in some seeds (20 of the first 100),
    // so this variant is not registered; these seeds show the checker catching it.
    let caught: Vec<u64> = (0..30)
        .filter(|&seed| {
            let out = consensus_broken_stale().run_quiet(seed);
            out.violations.first().is_some_and(|v| v.message.contains("agreement:"))
        })
        .collect();
    assert!(caught.len() >= 3, "caught only in seeds {caught:?}");
}

fn node(i: usize, id: u64) -> NodeAddr {
    NodeAddr::new(address_of(i), NodeId(id))
}

const I1: InstanceId = InstanceId(1);
const I2: InstanceId = InstanceId(2);

#[test]
fn the_safety_checkers_catch_hand_made_violations() {
    let t = Time(5);
    let (a, b, c) = (node(0, 1), node(1, 2), node(2, 3));
    let mut l = ConsensusChecker::default();
    l.propose(a, I1, 10);
    l.propose(b, I1, 11);
    l.decide(a, I1, 10, t);
    l.decide(b, I1, 10, t);
    l.start_epoch(a, StartEpoch { ts: 3, leader: a });
    l.start_epoch(b, StartEpoch { ts: 3, leader: a });
    l.start_epoch(b, StartEpoch { ts: 4, leader: b });
    assert!(l.found.is_empty(), "{:?}", l.found);

    let mut v = ConsensusChecker::default();
    v.propose(a, I1, 10);
    v.decide(a, I1, 12, t);
    assert!(v.found[0].starts_with("validity:"), "{:?}", v.found);

    let mut i = ConsensusChecker::default();
    i.propose(a, I1, 10);
    i.decide(a, I1, 10, t);
    i.decide(a, I1, 10, t);
    assert!(i.found[0].starts_with("integrity:"), "{:?}", i.found);

    // Uniform agreement counts the decision of a node that crashed since (the log keeps it).
    let mut g = ConsensusChecker::default();
    g.propose(a, I1, 10);
    g.propose(b, I1, 11);
    g.decide(c, I1, 10, t);
    g.decide(b, I1, 11, t);
    assert!(g.found[0].starts_with("agreement:"), "{:?}", g.found);

    let mut m = ConsensusChecker::default();
    m.start_epoch(a, StartEpoch { ts: 7, leader: b });
    m.start_epoch(a, StartEpoch { ts: 7, leader: b });
    assert!(m.found[0].starts_with("monotonicity:"), "{:?}", m.found);

    let mut k = ConsensusChecker::default();
    k.start_epoch(a, StartEpoch { ts: 7, leader: b });
    k.start_epoch(c, StartEpoch { ts: 7, leader: a });
    assert!(k.found[0].starts_with("consistency:"), "{:?}", k.found);
}

#[test]
fn the_liveness_checkers_catch_hand_made_violations() {
    let t = Time(5);
    let (a, b, c) = (node(0, 1), node(1, 2), node(2, 3));
    let mut l = ConsensusChecker::default();
    // I1 proposed by a (alive): everyone alive must decide it.
    l.propose(a, I1, 1);
    l.decide(a, I1, 1, t);
    assert!(l.check_termination(&[a]).is_ok());
    assert!(l.check_termination(&[a, b]).unwrap_err().starts_with("termination:"));
    // I2 proposed by c, which crashed, and decided by nobody: not required.
    l.propose(c, I2, 2);
    l.decide(b, I1, 1, t);
    assert!(l.check_termination(&[a, b]).is_ok());
    // ... but once anyone decided it, every running node must.
    l.decide(c, I2, 2, t);
    assert!(l.check_termination(&[a, b]).is_err());

    let s = |ts, leader| StartEpoch { ts, leader };
    l.start_epoch(a, s(3, a));
    l.start_epoch(b, s(3, a));
    assert!(l.check_settled(&[a, b]).is_ok());
    assert!(l.check_settled(&[b]).unwrap_err().contains("crashed"));
    l.start_epoch(b, s(4, b));
    assert!(l.check_settled(&[a, b]).unwrap_err().contains("different epochs"));
    assert!(l.check_settled(&[a, c]).is_err(), "c never started an epoch");
}

#[test]
fn the_lowest_timestamp_flaw_is_what_breaks_agreement() {
    // Same seed, same faults: the correct stack passes, the flawed one does not.
    for seed in 0..2 {
        let log: Log<ConsensusChecker> = Log::default();
        consensus_recording(Flaws::default(), log).run_quiet(seed).assert_ok();
        let flawed = Flaws { ep: Some(EpFlaw::AdoptLowest), ..Flaws::default() };
        let out = consensus_recording(flawed, Log::default()).run_quiet(seed);
        assert!(!out.is_ok());
    }
}
