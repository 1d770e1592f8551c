//! The failure detector and leader election in the simulator: a few seeds of each scenario
//! (the `sweep` binary runs many more), the deliberately broken variants caught, what the runs
//! exercised, and determinism (seeds that once failed: `regressions.rs`).
//!
//! `SELFMAN_SEED=S` replays one seed, `SELFMAN_SEEDS=N` runs seeds `0..N`.

use selfman_sim::seeds;
use selfman_tests::by_name;
use selfman_tests::scenarios::failure_detection::fd_report;

const MUST_PASS: [&str; 3] = ["fd", "fd-slow", "omega"];
const BROKEN: [(&str, &str); 3] = [
    ("fd-broken", "still suspects running"),
    ("fd-slow-broken", "false suspicions fit"),
    ("omega-broken", "which has crashed"),
];

#[test]
fn detector_and_election_scenarios_pass() {
    for name in MUST_PASS {
        let e = by_name(name).expect("registered");
        assert!(e.must_pass);
        for seed in seeds(0..4) {
            (e.build)().run_quiet(seed).assert_ok();
        }
    }
}

#[test]
fn the_checkers_catch_each_deliberately_broken_variant() {
    for (name, why) in BROKEN {
        let e = by_name(name).expect("registered");
        assert!(!e.must_pass);
        for seed in seeds(0..4) {
            let out = (e.build)().run_quiet(seed);
            assert!(!out.is_ok(), "{name}: the checker missed the deliberate bug ({out})");
            let text = out.to_string();
            assert!(text.contains(why), "{name} seed {seed}: caught for another reason: {text}");
            assert!(text.contains(&format!("replay: cargo run --release -p selfman-tests --bin sweep -- {name} --seeds 1 --start {seed}")));
        }
    }
}

#[test]
fn fd_runs_exercise_false_suspicions_growth_and_timed_detections() {
    for seed in seeds(0..3) {
        let r = fd_report("fd", seed).expect("known scenario");
        r.outcome.assert_ok();
        assert!(r.restores > 0, "no false suspicion was corrected: {r:?}");
        assert!(r.max_timeout > selfman_failure_detector::FdConfig::default().initial_timeout);
        assert!(!r.detections.is_empty());
        let (crashes, restarts, _) = r.outcome.churn;
        assert!(crashes > 0 && restarts + crashes > 1, "too little churn: {:?}", r.outcome.churn);
        for d in &r.detections {
            assert!(d.took <= 2 * d.timeout, "{d:?}");
        }
    }
}

#[test]
fn stalls_make_a_correct_detector_grow_and_a_fixed_one_flap() {
    for seed in seeds(0..3) {
        let good = fd_report("fd-slow", seed).expect("known scenario");
        good.outcome.assert_ok();
        let bad = fd_report("fd-slow-broken", seed).expect("known scenario");
        assert!(!bad.outcome.is_ok());
        assert!(good.restores > 0, "the stalls caused no false suspicion: {good:?}");
        assert!(
            bad.restores > 2 * good.restores,
            "a fixed timeout should err far more often: {} vs {}",
            bad.restores,
            good.restores
        );
    }
}

#[test]
fn detector_scenarios_replay_bit_for_bit() {
    for name in ["fd", "omega"] {
        let e = by_name(name).expect("registered");
        let a = (e.build)().run_quiet(11);
        let b = (e.build)().run_quiet(11);
        assert_eq!(a.trace_hash, b.trace_hash, "{name}: same seed, different trace");
        assert_eq!((a.turns, a.net, a.churn), (b.turns, b.net, b.churn));
        let c = (e.build)().run_quiet(12);
        assert_ne!(a.trace_hash, c.trace_hash, "{name}: another seed, same trace");
    }
}
