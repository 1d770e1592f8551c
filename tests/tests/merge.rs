//! Ring merge in the simulator: each broken variant caught by the merge bound, runs merging
//! within the bound with every group count from 2 to 5 among the seeds, and lookups answered by
//! the responsible peer after the merge. The `sweep` binary runs many more seeds.
//!
//! `SELFMAN_SEED=S` replays one seed, `SELFMAN_SEEDS=N` runs seeds `0..N`.

use std::collections::BTreeSet;

use selfman_sim::seeds;
use selfman_tests::by_name;
use selfman_tests::scenarios::merge::merge_report;

/// `MergeOff` never merges: caught on every seed. `ProbeNeverRetried` is caught only when no
/// peer gets a fresh passive entry after the heal (a finger dropped for silence is one, and
/// its single probe then merges the rings): on at least one of seeds 0..3 (seeds 0–2: 1).
/// A scenario's recipe.
type Build = fn() -> selfman_sim::Scenario;

#[test]
fn every_broken_merge_is_caught_by_the_merge_bound() {
    let off = by_name("merge-broken-off").expect("merge-broken-off is registered");
    assert!(!off.must_pass);
    let twins: [(&str, Build, usize); 2] = [
        ("merge-broken-off", off.build, 3),
        ("merge-broken-probe-once", selfman_tests::scenarios::merge::merge_broken_probe_once, 1),
    ];
    for (name, build, at_least) in twins {
        let mut caught = 0;
        for seed in 0..3 {
            let out = build().run_quiet(seed);
            let Some(v) = out.violations.first() else { continue };
            assert!(v.message.starts_with("merge:"), "{name} seed {seed}: caught as {v:?}");
            assert!(out.to_string().contains(&format!(
                "replay: cargo run --release -p selfman-tests --bin sweep -- {name} --seeds 1 \
                 --start {seed}"
            )));
            caught += 1;
        }
        assert!(caught >= at_least, "{name}: caught on {caught} of 3 seeds");
    }
}

#[test]
fn rings_merge_within_the_bound_and_answer_lookups_after() {
    let mut groups = BTreeSet::new();
    for name in ["merge", "merge-short"] {
        for seed in seeds(0..4) {
            let (out, p) = merge_report(name, seed).expect("a merge scenario");
            out.assert_ok();
            let took = p.merged.expect("merged").duration_since(p.quiet_at);
            assert!(took <= p.bound, "{name} seed {seed}: {took:?} > {:?}", p.bound);
            assert!(p.lookups.after_convergence > 0, "{name} seed {seed}");
            groups.insert(p.groups);
        }
    }
    assert!(groups.len() >= 2, "the seeds drew only {groups:?} groups");
}
