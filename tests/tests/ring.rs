//! The relaxed ring in the simulator: each deliberately broken variant caught by the checker
//! meant for it, the runs exercising what they claim (false suspicions and the overlaps they
//! excuse, branches, convergence within the bound), and determinism. `scenarios.rs` runs a few
//! seeds of every scenario; the `sweep` binary runs many more; seeds that once failed are in
//! `regressions.rs`.
//!
//! `SELFMAN_SEED=S` replays one seed, `SELFMAN_SEEDS=N` runs seeds `0..N`.

use selfman_sim::seeds;
use selfman_tests::by_name;
use selfman_tests::scenarios::ring::ring_report;

/// Each broken variant and the words its checker's report starts with.
const BROKEN: &[(&str, &str)] = &[
    ("ring-broken-eager-join", "lookup consistency:"),
    ("ring-broken-no-succ-list", "convergence:"),
    ("ring-broken-ignore-last", "lookup correctness:"),
];

#[test]
fn every_broken_ring_is_caught_by_its_checker() {
    for &(name, what) in BROKEN {
        let e = by_name(name).unwrap_or_else(|| panic!("{name} is not registered"));
        assert!(!e.must_pass);
        for seed in seeds(0..3) {
            let out = (e.build)().run_quiet(seed);
            let v = out.violations.first().unwrap_or_else(|| panic!("{name} seed {seed}: missed"));
            assert!(v.message.starts_with(what), "{name} seed {seed}: caught as {v:?}");
            assert!(out.to_string().contains(&format!(
                "replay: cargo run --release -p selfman-tests --bin sweep -- {name} --seeds 1 \
                 --start {seed}"
            )));
        }
    }
}

#[test]
fn slow_links_make_false_suspicions_and_the_overlaps_they_excuse_stay_in_their_window() {
    let (mut suspicions, mut excused) = (0, 0);
    for seed in seeds(0..3) {
        let (out, p) = ring_report("ring-slow", seed).expect("a ring scenario");
        out.assert_ok();
        suspicions += p.false_suspicions;
        excused += p.excused.0;
        assert!(p.excused.1 <= std::time::Duration::from_secs(3), "{p:?}");
    }
    // Without slow links there would be none of either: the window is real, and measured.
    assert!(suspicions > 10, "{suspicions} false suspicions");
    assert!(excused > 0, "no overlap happened: the window is not exercised");
}

#[test]
fn runs_converge_within_the_bound_and_answer_lookups_after() {
    for name in ["ring-crash", "ring-crash-10", "ring-join"] {
        for seed in seeds(0..2) {
            let (out, p) = ring_report(name, seed).expect("a ring scenario");
            out.assert_ok();
            let conv = p.ring_converged.expect("converged").duration_since(p.quiet_at);
            assert!(conv <= p.bound, "{name} seed {seed}: {conv:?} > {:?}", p.bound);
            assert!(p.fingers_converged.is_some(), "{name} seed {seed}");
            assert!(p.lookups.after_convergence > 100, "{name} seed {seed}: {:?}", p.lookups);
            assert!(p.lookups.found > p.lookups.issued / 2, "{name} seed {seed}: {:?}", p.lookups);
        }
    }
}

#[test]
fn branches_form_and_settle_and_partitions_make_two_rings() {
    for seed in seeds(0..2) {
        let (out, p) = ring_report("ring-branches", seed).expect("a ring scenario");
        out.assert_ok();
        assert!(p.branches > 0, "seed {seed}: no branch");
        assert_eq!(p.strict.len(), 2, "seed {seed}: the settled window and convergence");
        let (out, p) = ring_report("ring-partition", seed).expect("a ring scenario");
        out.assert_ok();
        let sides = p.sides.as_ref().expect("partitioned");
        assert_eq!(sides.len(), 2);
        assert_eq!(p.strict_members.last().map(|s| s.len()), Some(2), "a ring per side");
        assert!(out.net.partitioned > 0);
    }
}

#[test]
fn a_ring_run_replays_bit_for_bit() {
    let e = by_name("ring-crash").expect("registered");
    let a = (e.build)().run_quiet(4);
    let b = (e.build)().run_quiet(4);
    assert_eq!((a.trace_hash, a.turns, a.net), (b.trace_hash, b.turns, b.net));
    assert_ne!(a.trace_hash, (e.build)().run_quiet(5).trace_hash);
}
