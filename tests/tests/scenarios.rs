//! A few seeds of every scenario (the `sweep` binary runs many more), plus determinism (seeds
//! that once failed: `regressions.rs`).

use selfman_sim::seeds;
use selfman_tests::{by_name, NOT_YET_PASSING, SCENARIOS};

#[test]
fn every_scenario_behaves_as_registered_over_a_few_seeds() {
    for name in NOT_YET_PASSING {
        assert!(by_name(name).is_some_and(|e| e.must_pass), "{name}: not a must-pass scenario");
    }
    for e in SCENARIOS.iter().filter(|e| !NOT_YET_PASSING.contains(&e.name)) {
        for seed in seeds(0..3) {
            let out = (e.build)().run_quiet(seed);
            if e.must_pass {
                out.assert_ok();
            } else {
                assert!(!out.is_ok(), "{}: the checker missed the deliberate bug ({out})", e.name);
                assert!(out.to_string().contains("replay: cargo run --release -p selfman-tests"));
            }
        }
    }
}

#[test]
fn a_scenario_replays_bit_for_bit() {
    for name in ["net-fifo", "heartbeat-churn"] {
        let e = by_name(name).unwrap();
        let a = (e.build)().run_quiet(7);
        let b = (e.build)().run_quiet(7);
        assert_eq!(a.trace_hash, b.trace_hash, "{name}: same seed, different trace");
        assert_eq!((a.turns, a.net, a.churn), (b.turns, b.net, b.churn));
        assert!(a.churn.0 > 0 && a.churn.1 > 0, "{name}: no churn happened: {a}");
        let c = (e.build)().run_quiet(8);
        assert_ne!(a.trace_hash, c.trace_hash, "{name}: another seed, same trace");
    }
}
