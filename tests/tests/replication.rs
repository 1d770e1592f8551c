//! Replication over the relaxed ring in the simulator (`selfman_tests::scenarios::replication`):
//! the correct scenarios pass their seeds, and each checker catches its broken twin — a
//! replication with one deliberate flaw (`selfman_replication::Flaw`) — on the same seeds.
//! `SELFMAN_SEEDS=N` runs seeds `0..N` (default 2; each broken twin runs seeds 0..3, and must fail every one).

use selfman_ports::RingId;
use selfman_replication::{Flaw, Placement};
use selfman_sim::{seeds, Outcome, Scenario};
use selfman_tests::by_name;
use selfman_tests::scenarios::replication::{
    position, repl_broken_ignores_hosts, repl_broken_no_repair, repl_broken_quorum_of_one,
    repl_broken_skips_delta, F,
};

/// Seeds run by default (the scenarios are slow in debug builds; `sweep` runs hundreds).
const SEEDS: std::ops::Range<u64> = 0..2;

fn run(name: &str, seed: u64) -> Outcome {
    let e = by_name(name).unwrap_or_else(|| panic!("{name} is not registered"));
    (e.build)().run_quiet(seed)
}

/// `correct` passes every seed of [`SEEDS`]; `broken` fails every seed of 0, 1, 2, each time
/// on one of `checks` first.
fn caught(correct: &str, broken: fn() -> Scenario, checks: &[&str]) {
    for seed in seeds(SEEDS) {
        let ok = run(correct, seed);
        assert!(ok.is_ok(), "{correct} seed {seed}: {ok}");
    }
    for seed in 0..3 {
        let out = broken().run_quiet(seed);
        let v = out.violations.first();
        let v = v.unwrap_or_else(|| panic!("{checks:?} missed the twin of {correct}, seed {seed}"));
        assert!(
            checks.contains(&v.check.as_str()),
            "seed {seed} failed another check than {checks:?}: {out}"
        );
        assert!(v.message.starts_with(v.check.as_str()), "{out}");
    }
}

#[test]
fn repl_churn_passes_its_seeds() {
    for seed in seeds(SEEDS) {
        let out = run("repl-churn", seed);
        assert!(out.is_ok(), "{out}");
        // 11 nodes started, two crashed.
        assert_eq!(out.alive, 9, "{out}");
    }
}

#[test]
fn durability_or_no_stale_read_catches_a_hand_over_that_skips_the_delta() {
    // repl-window stops the writes in the middle of transfers that move every replica of
    // a key at once: the twin loses the last writes of the keys already sent on every seed.
    caught("repl-window", repl_broken_skips_delta, &["durability", "no stale read"]);
}

#[test]
fn no_stale_read_catches_a_quorum_of_one() {
    caught("repl-partition", repl_broken_quorum_of_one, &["no stale read"]);
}

#[test]
fn convergence_catches_repair_switched_off() {
    caught("repl-partition", repl_broken_no_repair, &["convergence"]);
}

#[test]
fn host_diversity_catches_placement_that_ignores_hosts() {
    caught("repl-hosts", repl_broken_ignores_hosts, &["host diversity"]);
}

#[test]
fn nodes_join_in_their_hosts_sector_unless_the_rule_is_broken() {
    let p = Placement::new(F);
    let mut misplaced = 0;
    for i in 0..12 {
        let (host, id) = position(i, 6, F, None);
        assert_eq!(p.sector_of(id), host.0 % F, "node {i}");
        assert_eq!(id == p.anchor(host.0 % F), i < F as usize, "node {i}");
        let (host, id): (_, RingId) = position(i, 6, F, Some(Flaw::IgnoresHosts));
        misplaced += usize::from(p.sector_of(id) != host.0 % F);
    }
    assert!(misplaced > 0, "the flawed rule placed every node by its host");
}
