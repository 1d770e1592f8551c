//! World (b): the heartbeat protocol inside the simulator, 1,000 nodes on a ring.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use selfman_core::Time;
use selfman_example_heartbeat::{build, check_ring, ring_neighbours, Board, Config};
use selfman_sim::{address_of, seeds, Scenario, Simulation};

const NODES: usize = 1000;

/// Every running node suspects exactly its crashed ring neighbours.
fn check_detection(sim: &Simulation, board: &Board) -> Result<(), String> {
    let alive: BTreeSet<_> = sim.alive_nodes().iter().map(|n| n.addr).collect();
    check_ring(NODES, address_of, &alive, board)
}

// ANCHOR: scenario
fn scenario(config: Config, name: &str) -> (Scenario, Board) {
    let board: Board = Arc::default();
    let b = board.clone();
    let check_board = board.clone();
    let s = Scenario::new(name)
        .start_nodes(Time::ZERO, NODES, move |host| {
            let peers = ring_neighbours(host.index(), NODES, address_of);
            build(host, peers, config, Some(b.clone()))?;
            Ok(())
        })
        .at(Time::from_secs(2), "crash 20 nodes", |run| {
            for _ in 0..20 {
                if let Some(n) = run.random_alive() {
                    run.sim.crash(n).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        })
        .check_at(Time::from_secs(5), "detection", move |sim| check_detection(sim, &check_board))
        .until(Time::from_secs(5))
        .replay_with(
            "SELFMAN_SEED={seed} cargo test -p selfman-example-heartbeat --test simulated",
        );
    (s, board)
}
// ANCHOR_END: scenario

// ANCHOR: run
#[test]
fn heartbeat_detects_crashes_among_1000_simulated_nodes() {
    for seed in seeds(0..2) {
        let (s, _) = scenario(Config::default(), "heartbeat-1000");
        let out = s.run(seed);
        out.assert_ok();
        assert!(out.net.delivered > 1000 * 2 * 45, "{out}");
        assert_eq!(out.alive, 980);
    }
}
// ANCHOR_END: run

#[test]
fn the_detection_check_catches_a_detector_that_never_suspects() {
    let blind = Config { initial_timeout: Duration::from_secs(3600), ..Config::default() };
    let (s, _) = scenario(blind, "heartbeat-1000-blind");
    let out = s.run(1);
    assert!(!out.is_ok(), "a detector that never suspects passed the completeness check");
    assert!(out.violations[0].message.contains("does not suspect"), "{out}");
    assert!(out.to_string().contains("replay: SELFMAN_SEED=1 cargo test"), "{out}");
}
