//! `consensus`: throughput and latency of uniform consensus (`selfman-consensus`) on a group of
//! N nodes in this process, each node the whole stack (`selfman_consensus_cluster::build_node`:
//! failure detector, Ω, two best-effort broadcasts, epoch change, epoch consensus, uniform
//! consensus).
//!
//! By default the nodes talk through the TCP transport's same-process path (no sockets, no
//! serialisation); with `--tcp 1` every message goes over loopback TCP sockets. A driver on
//! the first node (the leader once the group has settled) proposes `--instances` instances,
//! keeping `--window` of them undecided at a time, and measures each from its proposal to its
//! decision there. A warm-up instance is decided first (the epoch is settled by then).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use selfman::core::{Handled, Host, NodeAddr, Required};
use selfman::prelude::*;
use selfman::Runtime;
use selfman_consensus_cluster::{build_node, NodeConfig};
use selfman_net::{NetConfig, TcpNetwork};
use selfman_ports::{Consensus, Decide, InstanceId, Propose};

use crate::args::Args;

const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Proposes instances 1..=total (0 is the warm-up), `window` at a time; reports latencies.
struct Driver {
    consensus: Required<Consensus<u64>>,
    total: u64,
    window: u64,
    next: u64,
    sent: Vec<Instant>,
    latencies_ns: Vec<u64>,
    started: Option<Instant>,
    warmed: mpsc::Sender<()>,
    done: mpsc::Sender<(Duration, Vec<u64>)>,
}

impl Driver {
    fn propose(&mut self, id: u64) {
        if id < self.sent.len() as u64 {
            self.sent[id as usize] = Instant::now();
        }
        self.consensus.trigger(Propose { id: InstanceId(u128::from(id)), value: id });
    }

    fn on_decide(&mut self, d: Decide<u64>) -> Handled {
        let id = u64::try_from(d.id.0).unwrap_or(u64::MAX);
        if d.value != id {
            let why = format!("instance {id} decided {} (not what was proposed)", d.value);
            return Err(selfman::HandlerError::unrecoverable(why));
        }
        if id == 0 {
            let _ = self.warmed.send(());
            self.started = Some(Instant::now());
            while self.next <= self.total.min(self.window) {
                let n = self.next;
                self.next += 1;
                self.propose(n);
            }
            return Ok(());
        }
        let Some(&at) = self.sent.get(id as usize) else { return Ok(()) };
        self.latencies_ns.push(at.elapsed().as_nanos() as u64);
        if self.next <= self.total {
            let n = self.next;
            self.next += 1;
            self.propose(n);
        }
        if self.latencies_ns.len() as u64 == self.total {
            let elapsed = self.started.map(|s| s.elapsed()).unwrap_or_default();
            let _ = self.done.send((elapsed, std::mem::take(&mut self.latencies_ns)));
        }
        Ok(())
    }
}

impl ComponentDefinition for Driver {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.consensus, Self::on_decide);
    }

    fn on_start(&mut self) -> Handled {
        self.propose(0);
        Ok(())
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1e3
}

pub(crate) fn run(args: &Args) -> Result<String, String> {
    let nodes = args.get("nodes", 3)? as usize;
    let total = args.get("instances", 10_000)?;
    let window = args.get("window", 64)?;
    let tcp = args.get("tcp", 0)? != 0;
    if !(1..=64).contains(&nodes) || total == 0 || window == 0 {
        return Err("--nodes must be 1..=64, --instances and --window at least 1".into());
    }
    let err = |e: selfman::core::Error| e.to_string();
    let rt = Runtime::builder().workers(args.threads()?).build();
    let mut nets = Vec::new();
    for _ in 0..nodes {
        let cfg = NetConfig::default().local_delivery(!tcp);
        nets.push(TcpNetwork::start(&rt, cfg).map_err(|e| e.to_string())?);
    }
    let group: Vec<NodeAddr> = nets.iter().map(|n| n.local()).collect();
    let mut stacks = Vec::new();
    for net in &nets {
        let node = build_node::<u64, _>(net, group.clone(), &NodeConfig::default()).map_err(err)?;
        for c in node.components() {
            rt.start(&c).map_err(err)?;
        }
        stacks.push(node);
    }
    let (warm_tx, warm_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let driver = nets[0]
        .create(move || Driver {
            consensus: Required::new(),
            total,
            window,
            next: 1,
            sent: vec![Instant::now(); total as usize + 1],
            latencies_ns: Vec::with_capacity(total as usize),
            started: None,
            warmed: warm_tx.clone(),
            done: done_tx.clone(),
        })
        .map_err(err)?;
    rt.connect(&stacks[0].consensus().map_err(err)?, &driver.required().map_err(err)?)
        .map_err(err)?;
    rt.start(&driver).map_err(err)?;
    warm_rx.recv_timeout(SETUP_TIMEOUT).map_err(|_| "the warm-up instance was not decided")?;
    let (elapsed, mut lat) =
        done_rx.recv_timeout(RUN_TIMEOUT).map_err(|_| "the run did not finish in time")?;
    lat.sort_unstable();
    for net in &nets {
        net.shutdown();
    }
    rt.shutdown().map_err(|e| e.to_string())?;
    let per_s = total as f64 / elapsed.as_secs_f64();
    Ok(format!(
        "consensus nodes={nodes} instances={total} window={window} transport={} elapsed_ms={} \
         decisions_per_s={per_s:.0} latency_us_p50={:.1} latency_us_p99={:.1}",
        if tcp { "tcp" } else { "in-process" },
        elapsed.as_millis(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
    ))
}
