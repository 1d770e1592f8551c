//! The heartbeat failure detector in the simulator: N nodes on jittery links, each monitoring
//! K ring successors; after a warm-up C nodes crash; how long until their observers suspect
//! them, against the observers' timeouts, and how many false suspicions the jitter caused.
//!
//! ```text
//! selfman-bench fd --nodes N [--peers K] [--crash C] [--jitter-ms J] [--loss-permille L]
//!                  [--warmup-s W] [--seed X]
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selfman::core::Time;
use selfman::sim::{address_of, Latency, LinkModel, SimConfig, SimNetConfig, Simulation};
use selfman::{
    Component, ComponentDefinition, Context, Handled, Host, NodeAddr, NodeId, Required, Rng, Setup,
};
use selfman_failure_detector::{build, FdConfig, HeartbeatFd};
use selfman_ports::{FailureDetector, FdIndication, FdRequest};

use crate::args::Args;

/// (time, observer index, indication).
type Log = Arc<Mutex<Vec<(Time, usize, FdIndication)>>>;

/// Monitors its peers on start and logs what it is told.
struct Observer {
    ctx: Context,
    index: usize,
    fd: Required<FailureDetector>,
    peers: Vec<NodeAddr>,
    log: Log,
}

impl ComponentDefinition for Observer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(
            |c| &mut c.fd,
            |c: &mut Self, ind: FdIndication| {
                let now = c.ctx.now();
                if let Ok(mut l) = c.log.lock() {
                    l.push((now, c.index, ind));
                }
                Ok(())
            },
        );
    }

    fn on_start(&mut self) -> Handled {
        for &p in &self.peers {
            self.fd.trigger(FdRequest::Monitor(p));
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn run(args: &Args) -> Result<String, String> {
    let nodes = args.get("nodes", 100)? as usize;
    if !(2..1 << 20).contains(&nodes) {
        return Err("--nodes must be between 2 and 1048575".into());
    }
    let peers = (args.get("peers", 20)? as usize).clamp(1, nodes - 1);
    let crash = args.get("crash", (nodes as u64 / 10).max(1))? as usize;
    if crash >= nodes {
        return Err("--crash must be below --nodes".into());
    }
    let jitter = Duration::from_millis(args.get("jitter-ms", 20)?);
    let loss = args.get("loss-permille", 0)? as f64 / 1000.0;
    let warmup = Duration::from_secs(args.get("warmup-s", 10)?);
    let seed = args.get("seed", 1)?;

    let start = Instant::now();
    let config = SimConfig {
        network: SimNetConfig {
            default_link: LinkModel {
                latency: Latency::Exponential {
                    base: Duration::from_millis(1),
                    mean_extra: jitter,
                },
                loss,
            },
            ..SimNetConfig::default()
        },
        ..SimConfig::default()
    };
    let sim = Simulation::with(seed, config);
    let log = Log::default();
    let detectors: Arc<Mutex<Vec<Option<Component<HeartbeatFd>>>>> =
        Arc::new(Mutex::new(vec![None; nodes]));
    let (l, d) = (log.clone(), detectors.clone());
    let build_node = Arc::new(move |h: &selfman::sim::SimHost| {
        let index = h.index();
        let fd = build(h, FdConfig::default())?;
        let watch: Vec<NodeAddr> = (1..=peers)
            .map(|k| NodeAddr::new(address_of((index + k) % nodes), NodeId::UNKNOWN))
            .collect();
        let log = l.clone();
        let obs = h.create(move || Observer {
            ctx: Context::new(),
            index,
            fd: Required::new(),
            peers: watch.clone(),
            log: log.clone(),
        })?;
        h.system().connect(&fd.provided::<FailureDetector>()?, &obs.required()?)?;
        if let Ok(mut d) = d.lock() {
            d[index] = Some(fd);
        }
        Ok(())
    });
    for _ in 0..nodes {
        sim.add_node_with(build_node.clone()).map_err(|e| e.to_string())?;
    }

    // Warm up (timeouts adapt to the jitter), then crash C distinct random nodes, one every
    // few milliseconds over one second.
    let t0 = Time::ZERO + warmup;
    sim.run_until(t0);
    let mut rng = Rng::seeded(seed ^ 0x6664); // "fd"
    let mut crashed: Vec<(usize, Time)> = Vec::new();
    while crashed.len() < crash {
        let i = rng.below(nodes as u64) as usize;
        if crashed.iter().any(|&(j, _)| j == i) {
            continue;
        }
        let at = t0 + Duration::from_micros(rng.below(1_000_000));
        crashed.push((i, at));
    }
    crashed.sort_by_key(|&(_, t)| t);
    for &(i, at) in &crashed {
        sim.run_until(at);
        let victim = sim
            .alive_nodes()
            .into_iter()
            .find(|n| n.addr == address_of(i))
            .ok_or("a victim is not running")?;
        sim.crash(victim).map_err(|e| e.to_string())?;
    }
    let cap = FdConfig::default().max_timeout;
    sim.run_until(t0 + Duration::from_secs(1) + 2 * cap + 40 * jitter);
    let wall = start.elapsed();

    // Detection: for each crashed node and each live observer, the first Suspect after the
    // crash; the observer's timeout for it at the end.
    let log = log.lock().map_err(|_| "log poisoned")?.clone();
    let detectors = detectors.lock().map_err(|_| "detectors poisoned")?.clone();
    let is_crashed = |i: usize| crashed.iter().find(|&&(j, _)| j == i).map(|&(_, t)| t);
    let mut took = Vec::new();
    let mut timeouts = Vec::new();
    let mut missed = 0usize;
    // The largest detection time relative to the observer's timeout.
    let mut ratio = 0.0f64;
    for &(victim, tc) in &crashed {
        let target = address_of(victim);
        for k in 1..=peers {
            let o = (victim + nodes - k) % nodes;
            if is_crashed(o).is_some() {
                continue;
            }
            let first = log
                .iter()
                .find(|(t, j, ind)| {
                    *j == o && *t > tc && ind.node().addr == target && is_suspect(ind)
                })
                .map(|&(t, _, _)| t.duration_since(tc));
            let already = log
                .iter()
                .rev()
                .find(|(t, j, ind)| *j == o && *t <= tc && ind.node().addr == target)
                .is_some_and(|(_, _, ind)| is_suspect(ind));
            let node = NodeAddr::new(target, NodeId::UNKNOWN);
            let timeout = detectors[o]
                .as_ref()
                .and_then(|fd| fd.on_definition(|f| f.detector().timeout(node)).ok().flatten());
            if let Some(t) = timeout {
                timeouts.push(t);
            }
            match (first, timeout) {
                (Some(d), Some(t)) => {
                    took.push(d);
                    ratio = ratio.max(d.as_secs_f64() / t.as_secs_f64());
                }
                (Some(d), None) => took.push(d),
                (None, _) if already => {}
                (None, _) => missed += 1,
            }
        }
    }
    // False suspicions: Suspect about a node that was running then (every Restore here
    // corrects one, as nothing restarts).
    let false_suspicions = log
        .iter()
        .filter(|(t, _, ind)| {
            is_suspect(ind)
                && crashed
                    .iter()
                    .find(|&&(j, _)| address_of(j) == ind.node().addr)
                    .is_none_or(|&(_, tc)| *t < tc)
        })
        .count();
    if missed > 0 {
        return Err(format!("{missed} observers never suspected a crashed peer"));
    }
    took.sort();
    timeouts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let d = sim.net_stats().delivered;
    drop(sim);
    Ok(format!(
        "fd nodes={nodes} peers={peers} crashed={crash} jitter_ms={} detect_ms_p50={:.0} \
         detect_ms_max={:.0} timeout_ms={:.0} timeout_ms_max={:.0} detect_over_timeout_max={ratio:.2} \
         false_suspicions={false_suspicions} \
         detections={} deliveries={d} wall_ms={}",
        jitter.as_millis(),
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 1.0)),
        ms(percentile(&timeouts, 0.5)),
        ms(percentile(&timeouts, 1.0)),
        took.len(),
        wall.as_millis()
    ))
}

fn is_suspect(ind: &FdIndication) -> bool {
    matches!(ind, FdIndication::Suspect(_))
}
