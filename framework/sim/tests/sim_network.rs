//! The simulated network: latency, loss, partitions, crash and restart, FIFO, determinism.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use selfman_core::testkit;
use selfman_core::{
    ComponentDefinition, Context, Error, Handled, Host, LinkStatus, NetIndication, Network,
    NodeAddr, NodeId, Required, Setup, Time, Timeout, Timer, TimerId,
};
use selfman_sim::{Latency, LinkModel, SimConfig, SimNetConfig, Simulation};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Beat {
    seq: u64,
    sent_at: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct Heard {
    to: NodeAddr,
    from: NodeAddr,
    seq: u64,
    sent_at: u64,
    at: u64,
}

/// What the beacons recorded (shared by every beacon through one `Arc`, whose count shows
/// when they are all gone).
#[derive(Default)]
struct Log {
    heard: testkit::Log<Vec<Heard>>,
    unreachable: testkit::Log<Vec<(NodeAddr, NodeAddr)>>,
}

type Directory = Arc<Mutex<Vec<NodeAddr>>>;

/// Every 10 ms sends a numbered beat to every node in the directory but itself.
struct Beacon {
    ctx: Context,
    me: NodeAddr,
    net: Required<Network<Beat>>,
    timer: Required<Timer>,
    peers: Directory,
    log: Arc<Log>,
    seq: u64,
}

impl Beacon {
    fn on_net(&mut self, ev: NetIndication<Beat>) -> Handled {
        match ev {
            NetIndication::Deliver(d) => self.log.heard.lock().push(Heard {
                to: self.me,
                from: d.from,
                seq: d.msg.seq,
                sent_at: d.msg.sent_at,
                at: self.ctx.now().0,
            }),
            NetIndication::Status(s) => {
                if matches!(s.status, LinkStatus::Unreachable(_)) {
                    self.log.unreachable.lock().push((self.me, s.peer));
                }
            }
        }
        Ok(())
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let peers = self.peers.lock().clone();
        for p in peers.into_iter().filter(|p| p.addr != self.me.addr) {
            self.seq += 1;
            self.net.send(p, Beat { seq: self.seq, sent_at: self.ctx.now().0 });
        }
        Ok(())
    }
}

impl ComponentDefinition for Beacon {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_tick);
    }
    fn on_start(&mut self) -> Handled {
        let period = Duration::from_millis(10);
        self.timer.schedule_periodic(TimerId(1), period, period);
        Ok(())
    }
}

/// A simulation of `n` beacons that all beat to each other.
fn cluster(seed: u64, n: usize, config: SimConfig) -> (Simulation, Directory, Arc<Log>) {
    cluster_from(seed, n, config, 0, false)
}

/// As [`cluster`], the beacons numbering their beats from `first_seq` (which changes what the
/// beats say, not when or where they go), the run digest on if `digest`.
fn cluster_from(
    seed: u64,
    n: usize,
    config: SimConfig,
    first_seq: u64,
    digest: bool,
) -> (Simulation, Directory, Arc<Log>) {
    let sim = Simulation::with(seed, config);
    if digest {
        sim.record_digest();
    }
    let dir: Directory = Arc::default();
    let log = Arc::new(Log::default());
    for _ in 0..n {
        let (d, l) = (dir.clone(), log.clone());
        let addr = sim
            .add_node(move |h| {
                let (peers, log, me) = (d.clone(), l.clone(), h.local());
                let b = h.create(move || Beacon {
                    ctx: Context::new(),
                    me,
                    net: Required::new(),
                    timer: Required::new(),
                    peers: peers.clone(),
                    log: log.clone(),
                    seq: first_seq,
                })?;
                h.system().connect(&h.network::<Beat>("beat")?, &b.required()?)?;
                h.system().connect(&h.timer()?, &b.required()?)?;
                Ok(())
            })
            .unwrap();
        dir.lock().push(addr);
    }
    (sim, dir, log)
}

fn ms(n: u64) -> Time {
    Time(n * 1_000_000)
}

#[test]
fn sim_net_delivers_within_the_link_latency() {
    let (sim, dir, log) = cluster(1, 5, SimConfig::default());
    sim.run_until(ms(500));
    let heard = log.heard.lock();
    // 5 nodes × 4 peers × ~50 ticks.
    assert!(heard.len() > 900, "only {} beats heard", heard.len());
    for h in heard.iter() {
        let lat = h.at - h.sent_at;
        assert!((1_000_000..=5_000_000).contains(&lat), "latency {lat} ns outside 1-5 ms");
        assert!(dir.lock().contains(&h.from));
    }
    let stats = sim.net_stats();
    assert_eq!(stats.delivered as usize, heard.len());
    assert_eq!(stats.lost + stats.partitioned + stats.dead, 0);
}

#[test]
fn sim_net_loses_messages_at_the_configured_rate() {
    let mut config = SimConfig::default();
    config.network.default_link.loss = 0.3;
    let (sim, _, log) = cluster(2, 4, config);
    sim.run_until(ms(2000));
    let s = sim.net_stats();
    let rate = s.lost as f64 / s.sent as f64;
    assert!((0.27..0.33).contains(&rate), "loss rate {rate} for p = 0.3 ({s:?})");
    assert_eq!(log.heard.lock().len() as u64, s.delivered);
}

#[test]
fn sim_net_partition_blocks_cross_group_traffic_until_healed() {
    let (sim, dir, log) = cluster(3, 6, SimConfig::default());
    let nodes = dir.lock().clone();
    sim.run_until(ms(100));
    sim.partition(&[nodes[..3].to_vec(), nodes[3..].to_vec()]);
    let side = |a: &NodeAddr| nodes.iter().position(|n| n == a).unwrap() < 3;
    let cut = log.heard.lock().len();
    sim.run_until(ms(300));
    {
        let heard = log.heard.lock();
        let during = &heard[cut..];
        assert!(during.len() > 100);
        // Beats sent before the cut may still arrive in its first 5 ms; none after.
        for h in during.iter().filter(|h| h.at > ms(106).0) {
            assert_eq!(side(&h.from), side(&h.to), "crossed the partition: {h:?}");
        }
    }
    assert!(sim.net_stats().partitioned > 0);
    sim.heal();
    let healed = log.heard.lock().len();
    sim.run_until(ms(400));
    let heard = log.heard.lock();
    assert!(heard[healed..].iter().any(|h| side(&h.from) != side(&h.to)), "no traffic after heal");
}

#[test]
fn sim_net_blocked_links_make_connectivity_non_transitive() {
    let (sim, dir, log) = cluster(5, 3, SimConfig::default());
    let n = dir.lock().clone();
    let (p, q, r) = (n[0], n[1], n[2]);
    sim.run_until(ms(50));
    // p and r cannot talk (both directions); p–q and q–r still can.
    sim.block_link(p, r).unwrap();
    sim.block_link(r, p).unwrap();
    let cut = log.heard.lock().len();
    sim.run_until(ms(300));
    {
        let heard = log.heard.lock();
        let late = || heard[cut..].iter().filter(|h| h.at > ms(56).0);
        let pair = |a: NodeAddr, b: NodeAddr| late().filter(|h| h.from == a && h.to == b).count();
        assert_eq!(pair(p, r) + pair(r, p), 0, "a blocked link delivered");
        for (a, b) in [(p, q), (q, p), (q, r), (r, q)] {
            assert!(pair(a, b) > 10, "{a} -> {b} should still deliver");
        }
    }
    let s = sim.net_stats();
    assert!(s.blocked > 0 && s.partitioned == 0, "{s:?}");
    // One direction back: r hears p again, p still does not hear r.
    sim.unblock_link(p, r).unwrap();
    let back = log.heard.lock().len();
    sim.run_until(ms(400));
    {
        let heard = log.heard.lock();
        let after = &heard[back..];
        assert!(after.iter().any(|h| h.from == p && h.to == r));
        assert!(!after.iter().any(|h| h.from == r && h.to == p && h.at > ms(306).0));
    }
    sim.unblock_all();
    let all = log.heard.lock().len();
    sim.run_until(ms(500));
    assert!(log.heard.lock()[all..].iter().any(|h| h.from == r && h.to == p));
    let unknown = NodeAddr::new("10.9.9.9:1".parse().unwrap(), selfman_core::NodeId(1));
    assert!(sim.block_link(p, unknown).is_err());
}

#[test]
fn sim_net_crash_and_restart_use_a_new_incarnation() {
    let (sim, dir, log) = cluster(4, 3, SimConfig::default());
    let nodes = dir.lock().clone();
    sim.run_until(ms(100));
    sim.crash(nodes[0]).unwrap();
    assert!(!sim.is_alive(nodes[0]));
    assert_eq!(sim.alive_nodes(), nodes[1..].to_vec());
    assert!(matches!(sim.crash(nodes[0]), Err(Error::Network(_))));
    let crashed_at = sim.now();
    sim.run_until(ms(200));
    {
        let heard = log.heard.lock();
        assert!(
            !heard.iter().any(|h| h.to == nodes[0] && h.at > crashed_at.0),
            "a crashed node heard something"
        );
        assert!(!heard.iter().any(|h| h.from == nodes[0] && h.at > crashed_at.0 + 5_000_000));
        let un = log.unreachable.lock();
        assert!(un.iter().any(|&(me, peer)| me == nodes[1] && peer == nodes[0]), "no hint");
    }
    let again = sim.restart(nodes[0]).unwrap();
    assert_eq!(again.addr, nodes[0].addr);
    assert_ne!(again.id, nodes[0].id);
    assert!(sim.is_alive(again));
    let restarted_at = sim.now();
    sim.run_until(ms(300));
    let heard = log.heard.lock();
    // The others still address the old incarnation: nothing reaches the new one from them …
    assert!(!heard.iter().any(|h| h.to == again && h.from != again));
    // … but the new incarnation's beats (to the live peers) arrive.
    assert!(heard.iter().any(|h| h.from == again && h.at > restarted_at.0));
    drop(heard);
    // Addressing by address only reaches whichever incarnation runs there.
    dir.lock()[0] = NodeAddr::new(again.addr, NodeId::UNKNOWN);
    let before = log.heard.lock().len();
    sim.run_until(ms(400));
    assert!(log.heard.lock()[before..].iter().any(|h| h.to == again));
}

#[test]
fn sim_net_keeps_links_fifo_and_a_checker_sees_reordering_when_it_does_not() {
    fn reordered(fifo: bool) -> usize {
        let config = SimConfig {
            network: SimNetConfig {
                default_link: LinkModel {
                    latency: Latency::Uniform {
                        min: Duration::from_millis(1),
                        max: Duration::from_millis(30),
                    },
                    loss: 0.0,
                },
                fifo,
                ..SimNetConfig::default()
            },
            ..SimConfig::default()
        };
        let (sim, _, log) = cluster(5, 4, config);
        sim.run_until(ms(1000));
        let heard = log.heard.lock();
        let mut last = std::collections::HashMap::new();
        let mut bad = 0;
        for h in heard.iter() {
            let prev = last.insert((h.from, h.to), h.seq).unwrap_or(0);
            bad += usize::from(h.seq < prev);
        }
        bad
    }
    assert_eq!(reordered(true), 0);
    assert!(reordered(false) > 10, "the ordering checker caught nothing on a reordering network");
}

/// FIFO holds on more links than the per-link table of latest delivery times keeps before it
/// is pruned (1,024): 40 beacons use 1,560 links, and latencies of 1–30 ms with a beat every
/// 10 ms keep several messages in flight on each. (Pruning an entry still in the future lets
/// a later beat overtake: shown by a build that pruned every entry.)
#[test]
fn sim_net_keeps_links_fifo_across_prunes_of_its_link_table() {
    let config = SimConfig {
        network: SimNetConfig {
            default_link: LinkModel {
                latency: Latency::Uniform {
                    min: Duration::from_millis(1),
                    max: Duration::from_millis(30),
                },
                loss: 0.0,
            },
            ..SimNetConfig::default()
        },
        ..SimConfig::default()
    };
    let (sim, _, log) = cluster(3, 40, config);
    sim.run_until(ms(300));
    let heard = log.heard.lock();
    assert!(heard.len() > 25 * 1560, "only {} beats heard", heard.len());
    let mut last = std::collections::HashMap::new();
    for h in heard.iter() {
        let prev = last.insert((h.from, h.to), h.seq).unwrap_or(0);
        assert!(h.seq > prev, "beat {} from {} overtook beat {prev}", h.seq, h.from);
    }
}

/// The run digest reads and changes nothing (same trace with it on or off); it is the same
/// for the same seed, differs for another seed, and — unlike the trace hash — sees what the
/// messages say: beats numbered from 1,000 instead of 0 go at the same times to the same
/// nodes (same trace) but change the digest.
#[test]
fn sim_digest_sees_message_contents_and_changes_nothing() {
    let run = |seed, first_seq, digest| {
        let (sim, _, _) = cluster_from(seed, 6, SimConfig::default(), first_seq, digest);
        sim.run_until(ms(300));
        (sim.trace_hash(), sim.digest(), sim.net_stats().delivered)
    };
    let (trace, digest, delivered) = run(5, 0, true);
    let (d, n) = digest.expect("the digest was turned on");
    assert_eq!(n, delivered, "every delivery is in the digest");
    assert_eq!(run(5, 0, false), (trace, None, delivered), "the digest changed the run");
    assert_eq!(run(5, 0, true).1, Some((d, n)), "same seed, another digest");
    assert_ne!(run(6, 0, true).1.map(|x| x.0), Some(d), "another seed, the same digest");
    let renumbered = run(5, 1000, true);
    assert_eq!(renumbered.0, trace, "the numbering changed when or where beats went");
    assert_ne!(renumbered.1.map(|x| x.0), Some(d), "the digest missed the messages' contents");
}

#[test]
fn sim_net_same_seed_same_trace() {
    let run = |seed| {
        let mut config = SimConfig::default();
        config.network.default_link = LinkModel {
            latency: Latency::Exponential {
                base: Duration::from_millis(1),
                mean_extra: Duration::from_millis(3),
            },
            loss: 0.05,
        };
        let (sim, dir, _) = cluster(seed, 8, config);
        let nodes = dir.lock().clone();
        sim.run_until(ms(200));
        sim.crash(nodes[2]).unwrap();
        sim.partition(&[nodes[..4].to_vec()]);
        sim.run_until(ms(400));
        sim.heal();
        sim.restart(nodes[2]).unwrap();
        sim.run_until(ms(600));
        (sim.trace_hash(), sim.net_stats())
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert!(a.1.delivered > 1000 && a.1.lost > 0 && a.1.partitioned > 0 && a.1.dead > 0);
    assert_ne!(a.0, run(8).0);
}

#[test]
fn sim_net_refuses_conflicting_protocol_names() {
    let sim = Simulation::new(9);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sim.add_node(move |h| {
        let a = h.network::<Beat>("beat")?;
        let again = h.network::<Beat>("beat")?;
        assert_eq!(a.owner(), again.owner(), "same protocol, same port");
        s.lock().push(h.network::<u64>("beat").map(|_| ()));
        Ok(())
    })
    .unwrap();
    let r = seen.lock().pop().unwrap();
    assert!(matches!(r, Err(Error::Network(m)) if m.contains("another message type")));
}

#[test]
fn sim_net_builder_errors_are_reported_and_leave_no_node() {
    let sim = Simulation::new(10);
    let err = sim.add_node(|_| Err(Error::Network("boom".into()))).unwrap_err();
    assert_eq!(err, Error::Network("boom".into()));
    assert!(sim.alive_nodes().is_empty());
}

#[test]
fn sim_dropping_a_simulation_frees_it_entirely() {
    // Mid-run state everywhere: messages in flight, timers pending, crashed and restarted
    // nodes, a partition. Sweeps run thousands of simulations in one process, so nothing of a
    // dropped one may stay behind.
    let (sim, dir, log) = cluster(7, 6, SimConfig::default());
    sim.run_until(ms(100));
    let nodes = dir.lock().clone();
    sim.crash(nodes[1]).unwrap();
    sim.crash(nodes[2]).unwrap();
    sim.run_until(ms(150));
    sim.restart(nodes[1]).unwrap();
    sim.partition(&[nodes[..3].to_vec(), nodes[3..].to_vec()]);
    sim.run_until(ms(201));
    assert!(sim.in_flight() > 0 && sim.pending_timers() > 0);
    let weak = sim.system().downgrade();
    drop(sim);
    assert!(weak.upgrade().is_none(), "the dropped simulation's system is still referenced");
    assert_eq!(Arc::strong_count(&log), 1, "components still hold the shared log");
}
