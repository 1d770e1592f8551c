//! Ring merge in the simulator: each broken variant caught by the merge bound, runs merging
//! within the bound with every group count from 2 to 5 among the seeds, and lookups answered by
//! the responsible peer after the merge. The `sweep` binary runs many more seeds.
//!
//! `SELFMAN_SEED=S` replays one seed, `SELFMAN_SEEDS=N` runs seeds `0..N`.

use std::collections::BTreeSet;

use selfman_sim::seeds;
use selfman_tests::by_name;
use selfman_tests::scenarios::merge::merge_report;

#[test]
fn every_broken_merge_is_caught_by_the_merge_bound() {
    for name in ["merge-broken-off", "merge-broken-probe-once"] {
        let e = by_name(name).unwrap_or_else(|| panic!("{name} is not registered"));
        assert!(!e.must_pass);
        for seed in seeds(0..2) {
            let out = (e.build)().run_quiet(seed);
            let v = out.violations.first().unwrap_or_else(|| panic!("{name} seed {seed}: missed"));
            assert!(v.message.starts_with("merge:"), "{name} seed {seed}: caught as {v:?}");
            assert!(out.to_string().contains(&format!(
                "replay: cargo run --release -p selfman-tests --bin sweep -- {name} --seeds 1 \
                 --start {seed}"
            )));
        }
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
