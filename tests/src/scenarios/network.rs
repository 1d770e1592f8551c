//! Scenarios of the framework itself (see [`crate::SCENARIOS`]):
//!
//! * `net-fifo`: typed messages between churning, partitioned nodes on lossy links; the
//!   receivers check per-link FIFO, no duplicates, no delivery to another incarnation and no
//!   message from the future (`net-fifo-broken` turns FIFO off: the check must fail);
//! * `heartbeat-churn`: the example heartbeat protocol on a 50-node ring under churn and a
//!   partition; every node ends suspecting exactly its crashed neighbours.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_core::{
    ComponentDefinition, Context, Handled, Host, NetIndication, Network, NodeAddr, NodeId,
    Required, Setup, Time, Timeout, Timer, TimerId,
};
use selfman_example_heartbeat::{build, check_ring, ring_neighbours, Board, Config};
use selfman_sim::{address_of, Churn, Latency, LinkModel, Scenario, SimConfig, SimNetConfig};
use serde::{Deserialize, Serialize};

/// A numbered message that says whom it is for.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Numbered {
    seq: u64,
    sent_at: u64,
    to: NodeId,
}

/// Violations found by the receivers, read by the scenario's check.
type Found = Arc<Mutex<Vec<String>>>;

const FIFO_NODES: usize = 12;

/// Sends numbered messages to random nodes and checks what it receives.
struct Chatter {
    ctx: Context,
    me: NodeAddr,
    net: Required<Network<Numbered>>,
    timer: Required<Timer>,
    seq: u64,
    /// Highest sequence number seen per sender incarnation.
    seen: HashMap<NodeAddr, u64>,
    found: Found,
}

impl Chatter {
    fn on_tick(&mut self, _: Timeout) -> Handled {
        let i = self.ctx.rng().below(FIFO_NODES as u64);
        let to = NodeAddr::new(address_of(i as usize), NodeId::UNKNOWN);
        if to.addr != self.me.addr {
            self.seq += 1;
            let now = self.ctx.now().0;
            // Learn nothing about ids: address the node, whichever incarnation runs.
            self.net.send(to, Numbered { seq: self.seq, sent_at: now, to: NodeId::UNKNOWN });
        }
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<Numbered>) -> Handled {
        let NetIndication::Deliver(d) = ev else { return Ok(()) };
        let now = self.ctx.now().0;
        let mut bad = Vec::new();
        if d.msg.sent_at > now {
            bad.push(format!("{} got a message from the future: {:?}", self.me, d.msg));
        }
        if d.msg.to != NodeId::UNKNOWN && d.msg.to != self.me.id {
            bad.push(format!("{} got a message for incarnation {}", self.me, d.msg.to));
        }
        let last = self.seen.insert(d.from, d.msg.seq).unwrap_or(0);
        if d.msg.seq <= last {
            bad.push(format!(
                "{} got #{} from {} after #{last}: reordered or duplicated",
                self.me, d.msg.seq, d.from
            ));
        }
        if !bad.is_empty() {
            if let Ok(mut f) = self.found.lock() {
                f.extend(bad);
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Chatter {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_tick);
    }
    fn on_start(&mut self) -> Handled {
        let p = Duration::from_millis(5);
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

fn fifo_scenario(name: &str, fifo: bool) -> Scenario {
    let found: Found = Arc::default();
    let f = found.clone();
    let config = SimConfig {
        network: SimNetConfig {
            default_link: LinkModel {
                latency: Latency::Exponential {
                    base: Duration::from_millis(1),
                    mean_extra: Duration::from_millis(4),
                },
                loss: 0.05,
            },
            fifo,
            ..SimNetConfig::default()
        },
        ..SimConfig::default()
    };
    Scenario::new(name)
        .config(config)
        .start_nodes(Time::ZERO, FIFO_NODES, move |h| {
            let (me, found) = (h.local(), f.clone());
            let c = h.create(move || Chatter {
                ctx: Context::new(),
                me,
                net: Required::new(),
                timer: Required::new(),
                seq: 0,
                seen: HashMap::new(),
                found: found.clone(),
            })?;
            h.system().connect(&h.network::<Numbered>("chatter")?, &c.required()?)?;
            h.system().connect(&h.timer()?, &c.required()?)?;
            Ok(())
        })
        .churn(Churn::crash_restart(
            Time::from_secs_f64(0.5),
            Time::from_secs_f64(9.0),
            2.0,
            FIFO_NODES / 2,
        ))
        .partition_halves(Time::from_secs_f64(3.0))
        .heal(Time::from_secs_f64(6.0))
        .check_always("receivers' checks", move |_| match found.lock() {
            Ok(f) if f.is_empty() => Ok(()),
            Ok(f) => Err(f[0].clone()),
            Err(_) => Err("a receiver panicked while recording".into()),
        })
        .check_at_end("traffic flowed", |sim| {
            let s = sim.net_stats();
            if s.delivered > 3_000 && s.lost > 0 && s.partitioned > 0 && s.dead > 0 {
                Ok(())
            } else {
                Err(format!("the run did not exercise the network: {s:?}"))
            }
        })
        .until(Time::from_secs_f64(10.0))
}

/// See [`crate::SCENARIOS`].
pub fn net_fifo() -> Scenario {
    fifo_scenario("net-fifo", true)
}

/// See [`crate::SCENARIOS`].
pub fn net_fifo_broken() -> Scenario {
    fifo_scenario("net-fifo-broken", false)
}

const RING: usize = 50;

/// See [`crate::SCENARIOS`].
pub fn heartbeat_churn() -> Scenario {
    let board: Board = Arc::default();
    let b = board.clone();
    let build_node = move |h: &selfman_sim::SimHost| {
        if let Ok(mut b) = b.lock() {
            b.remove(&h.local().addr); // a new incarnation suspects nobody yet
        }
        let peers = ring_neighbours(h.index(), RING, address_of);
        build(h, peers, Config::default(), Some(b.clone()))?;
        Ok(())
    };
    Scenario::new("heartbeat-churn")
        .start_nodes(Time::ZERO, RING, build_node)
        .churn(Churn::crash_restart(
            Time::from_secs_f64(1.0),
            Time::from_secs_f64(8.0),
            3.0,
            RING * 3 / 4,
        ))
        .partition_halves(Time::from_secs_f64(3.0))
        .heal(Time::from_secs_f64(5.0))
        .check_at_end("suspects exactly the crashed neighbours", move |sim| {
            let alive: BTreeSet<_> = sim.alive_nodes().iter().map(|a| a.addr).collect();
            check_ring(RING, address_of, &alive, &board)
        })
        .until(Time::from_secs_f64(15.0))
}
