//! N simulated nodes heartbeating their ring neighbours for S virtual seconds, in the
//! deterministic simulator: how fast the simulator delivers messages on one core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use selfman::core::Time;
use selfman::sim::{address_of, Simulation};
use selfman_example_heartbeat::{build, ring_neighbours, Config};

use crate::args::Args;

pub(crate) fn run(args: &Args) -> Result<String, String> {
    let nodes = args.get("nodes", 1000)? as usize;
    let secs = args.get("virtual-seconds", 10)?;
    let seed = args.get("seed", 1)?;
    if !(2..1 << 24).contains(&nodes) {
        return Err("--nodes must be between 2 and 16777215".into());
    }
    let start = Instant::now();
    let sim = Simulation::new(seed);
    let build_node = move |h: &selfman::sim::SimHost| {
        build(h, ring_neighbours(h.index(), nodes, address_of), Config::default(), None).map(|_| ())
    };
    let build_node = Arc::new(build_node);
    for _ in 0..nodes {
        sim.add_node_with(build_node.clone()).map_err(|e| e.to_string())?;
    }
    sim.run_until(Time::ZERO + Duration::from_secs(secs));
    let wall = start.elapsed();
    let d = sim.net_stats().delivered;
    let hash = sim.trace_hash();
    let rate = d as f64 / wall.as_secs_f64();
    let ms = wall.as_millis();
    drop(sim);
    Ok(format!(
        "sim nodes={nodes} virtual_s={secs} seed={seed} deliveries={d} wall_ms={ms} deliveries_per_s={rate:.0} trace_hash={hash:016x}"
    ))
}
