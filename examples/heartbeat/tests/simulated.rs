//! World (b): the heartbeat protocol inside the simulator, 1,000 nodes on a ring.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use selfman_core::{Host, NodeAddr, NodeId, Time};
use selfman_example_heartbeat::{build, ring_neighbours, Board, Config};
use selfman_sim::{seeds, Scenario, Simulation};

const NODES: usize = 1000;

fn sim_addr(i: usize) -> std::net::SocketAddr {
    // The simulator gives the k-th node added the address `NodeAddr::simulated(k + 1)`.
    NodeAddr::simulated(i as u32 + 1, NodeId::UNKNOWN).addr
}

fn secs(s: u64) -> Time {
    Time::ZERO + Duration::from_secs(s)
}

/// Every running node suspects exactly its crashed ring neighbours.
fn check_detection(sim: &Simulation, board: &Board, config_timeout_ok: bool) -> Result<(), String> {
    let alive: BTreeSet<_> = sim.alive_nodes().iter().map(|n| n.addr).collect();
    let board = board.lock().map_err(|_| "board poisoned")?;
    for i in 0..NODES {
        let me = sim_addr(i);
        if !alive.contains(&me) {
            continue;
        }
        let suspects = board.get(&me).cloned().unwrap_or_default();
        for n in ring_neighbours(i, NODES, sim_addr) {
            let up = alive.contains(&n.addr);
            if up && suspects.contains(&n.addr) {
                return Err(format!("{me} suspects its running neighbour {}", n.addr));
            }
            if !up && !suspects.contains(&n.addr) && config_timeout_ok {
                return Err(format!("{me} does not suspect its crashed neighbour {}", n.addr));
            }
        }
    }
    Ok(())
}

// ANCHOR: scenario
fn scenario(config: Config, name: &str) -> (Scenario, Board) {
    let board: Board = Arc::default();
    let b = board.clone();
    let check_board = board.clone();
    let index: Arc<HashMap<_, _>> = Arc::new((0..NODES).map(|i| (sim_addr(i), i)).collect());
    let s = Scenario::new(name)
        .start_nodes(Time::ZERO, NODES, move |host| {
            let i = index[&host.local().addr];
            build(host, ring_neighbours(i, NODES, sim_addr), config, Some(b.clone()))?;
            Ok(())
        })
        .at(secs(2), "crash 20 nodes", |run| {
            for _ in 0..20 {
                if let Some(n) = run.random_alive() {
                    run.sim.crash(n).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        })
        .check_at(secs(5), "detection", move |sim| check_detection(sim, &check_board, true))
        .until(secs(5))
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
