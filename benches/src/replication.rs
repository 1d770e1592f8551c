//! Symmetric replication in the simulator: a ring of N peers (each the real stack: heartbeat
//! detector, relaxed ring at its host's placed position, `selfman-replication`) holding
//! `--items` items at `f = 4` replicas each, loaded straight into the replica stores (feature
//! `testkit`: writing a million items through the protocol would measure the writes, not the
//! movement). Then one phase:
//!
//! ```text
//! selfman-bench replication --phase handover|rereplicate|repair|reads [--nodes 16]
//!     [--items 1000000] [--value-bytes 16] [--latency-us 250] [--seed 1]
//!     [--stale-permille 10] [--reads 20000] [--window 16]
//!     [--transport sim|in-process|tcp (reads and handover)]
//! ```
//!
//! * `handover`: one more peer joins; virtual time from its join request until it serves its
//!   whole range (`replication-handover`); with `--transport in-process` or `tcp`, the same
//!   on the multi-core runtime (every node its own `TcpNetwork` in this process), in real
//!   time, until every node serves exactly its range again;
//! * `rereplicate`: one peer (inside a sector) crashes; virtual time until its successor
//!   serves the crashed peer's range again, rebuilt from the other replicas, and every item
//!   has `f` served replicas (`replication-rereplicate`);
//! * `repair`: `--stale-permille` of one peer's replicas are made stale (the three others
//!   hold a newer version); anti-entropy rounds run every second at every peer; bytes sent by
//!   all rounds until the stale ones are current, against the stale items' own bytes
//!   (`replication-repair`);
//! * `reads`: every peer runs `--window` quorum reads of random items at a time, `--reads` in
//!   all; reads per wall-clock second of the simulator and virtual latency p50/p99
//!   (`replication-reads`); with `--transport in-process` or `tcp`, the same on the
//!   multi-core runtime instead of the simulator, one `TcpNetwork` per node, all in this
//!   process (messages between the nodes as values in memory, or over loopback TCP), reads
//!   per second and latency p50/p99 in real time.
//!
//! Every phase also prints `replication-memory` (live heap bytes the loaded replicas added,
//! per replica, beyond their key and value). The simulated links have a fixed latency and no
//! bandwidth limit (the simulator models none): movement here is bounded by round trips and
//! the window of batches in flight, and by the CPU of the one simulator thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use selfman::core::{
    Component, ComponentDefinition, ComponentRef, Context, Handled, Host, NodeAddr, Required,
    Setup, Time, Timeout, Timer, TimerId,
};
use selfman::sim::{Latency, LinkModel, SimConfig, SimHost, SimNetConfig, Simulation};
use selfman::Runtime;
use selfman_failure_detector::FdConfig;
use selfman_net::{NetConfig, TcpNetwork};
use selfman_ports::{
    FailureDetector, Movement, Replication, ReplicationIndication, ReplicationRequest, Ring,
    RingId, RingRequest, Version,
};
use selfman_relaxed_ring::RingConfig;
use selfman_replication::{
    ItemId, Placement, Record, ReplMessage, ReplicationConfig, SymmetricReplication,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::alloc;
use crate::args::Args;

const F: u32 = 4;

type Repl = Component<SymmetricReplication<ReplMessage>>;

type RingC = Component<selfman_relaxed_ring::RelaxedRing<ReplMessage>>;

/// What a node's builder made: its replication, driver, ring and detector.
type Built = (Repl, Component<Driver>, RingC, ComponentRef);

/// How to build one node.
#[derive(Clone)]
struct NodeSpec {
    id: RingId,
    config: ReplicationConfig,
    items: u64,
    window: u64,
    reads: u64,
    go: Arc<AtomicBool>,
    log: Log<Recorded>,
}

/// Wires one node on `h`: the heartbeat detector, the relaxed ring at `spec.id`, replication,
/// and a driver.
fn wire<H: Host>(h: &H, spec: &NodeSpec) -> selfman::core::Result<Built> {
    let fd = selfman_failure_detector::build(h, FdConfig::default())?;
    let fd_port = fd.provided::<FailureDetector>()?;
    let ring_config = RingConfig { id: Some(spec.id), ..RingConfig::default() };
    let ring = selfman_relaxed_ring::build::<ReplMessage, _>(h, ring_config, &fd_port)?;
    let repl = selfman_replication::build(h, spec.config, &ring.provided()?, &fd_port)?;
    let s = spec.clone();
    let d = h.create(move || Driver {
        ctx: Context::new(),
        port: Required::new(),
        timer: Required::new(),
        items: s.items,
        window: s.window,
        left: s.reads,
        started: BTreeMap::new(),
        next: 0,
        go: s.go.clone(),
        reading: false,
        log: s.log.clone(),
    })?;
    h.system().link::<Replication>(&repl, &d)?;
    h.system().connect(&h.timer()?, &d.required()?)?;
    let fd_ref: ComponentRef = (*fd).clone();
    Ok((repl, d, ring, fd_ref))
}

/// What the nodes' drivers record.
#[derive(Default)]
struct Recorded {
    /// Anti-entropy rounds: (when, bytes, items fetched + pushed).
    repaired: Vec<(Time, u64, u64)>,
    /// Items rebuilt from the replicas.
    rebuilt: u64,
    /// Read latencies (virtual), and failed reads.
    latencies: Vec<Duration>,
    failed: u64,
}

/// Records movements; runs quorum reads when told to.
struct Driver {
    ctx: Context,
    port: Required<Replication>,
    timer: Required<Timer>,
    items: u64,
    window: u64,
    left: u64,
    started: BTreeMap<u64, Time>,
    next: u64,
    go: Arc<AtomicBool>,
    reading: bool,
    log: Log<Recorded>,
}

/// A shared record.
#[derive(Default)]
struct Log<T>(Arc<Mutex<T>>);

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Log(Arc::clone(&self.0))
    }
}

impl<T> Log<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }
}

impl Driver {
    fn read(&mut self) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        self.next += 1;
        let k = self.ctx.rng().below(self.items);
        self.started.insert(self.next, self.ctx.now());
        self.port.trigger(ReplicationRequest::Read { key: key(k), tag: self.next });
    }

    fn on_repl(&mut self, i: ReplicationIndication) -> Handled {
        let now = self.ctx.now();
        match i {
            ReplicationIndication::Movement(Movement::Repaired {
                bytes, fetched, pushed, ..
            }) => {
                self.log.with(|l| l.repaired.push((now, bytes, fetched + pushed)));
            }
            ReplicationIndication::Movement(Movement::Rebuilt { items, .. }) => {
                self.log.with(|l| l.rebuilt += items);
            }
            ReplicationIndication::ReadDone { tag, result, .. } => {
                if let Some(t) = self.started.remove(&tag) {
                    let ok = result.is_ok();
                    self.log.with(|l| {
                        if ok {
                            l.latencies.push(now.duration_since(t));
                        } else {
                            l.failed += 1;
                        }
                    });
                }
                self.read();
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts the reads at the first tick after the benchmark says go.
    fn on_timeout(&mut self, _: Timeout) -> Handled {
        if !self.reading && self.go.load(Ordering::Relaxed) {
            self.reading = true;
            for _ in 0..self.window {
                self.read();
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Driver {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.port, Self::on_repl);
        s.require(|c| &mut c.timer, Self::on_timeout);
    }

    fn on_start(&mut self) -> Handled {
        if self.left > 0 {
            let p = Duration::from_millis(10);
            self.timer.schedule_periodic(TimerId(1), p, p);
        }
        Ok(())
    }
}

fn key(k: u64) -> Vec<u8> {
    format!("item-{k:08}").into_bytes()
}

/// The ring of replicated peers.
struct World {
    sim: Simulation,
    repls: Vec<(NodeAddr, Repl)>,
    log: Log<Recorded>,
    go: Arc<AtomicBool>,
    config: ReplicationConfig,
    reads_per_node: u64,
    window: u64,
    items: u64,
}

impl World {
    fn new(seed: u64, latency: Duration, config: ReplicationConfig) -> World {
        let link = LinkModel { latency: Latency::Fixed(latency), loss: 0.0 };
        let sim = Simulation::with(
            seed,
            SimConfig {
                network: SimNetConfig { default_link: link, ..SimNetConfig::default() },
                ..SimConfig::default()
            },
        );
        World {
            sim,
            repls: Vec::new(),
            log: Log::default(),
            go: Arc::new(AtomicBool::new(false)),
            config,
            reads_per_node: 0,
            window: 1,
            items: 1,
        }
    }

    /// Starts node `i` (host `i`, placed by the host rule) and asks it to join through node 0.
    fn add(&mut self) -> Result<usize, String> {
        let i = self.repls.len();
        let (host, id) = Placement::new(F).numbered_node(i, 1 << 20);
        let config = ReplicationConfig { host, ..self.config };
        let (log, items, reads, window, go) =
            (self.log.clone(), self.items, self.reads_per_node, self.window, self.go.clone());
        let made: Log<Option<Built>> = Log::default();
        let m = made.clone();
        let spec = NodeSpec { id, config, items, window, reads, go, log };
        let node = self
            .sim
            .add_node(move |h: &SimHost| {
                *m.lock() = Some(wire(h, &spec)?);
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        let (repl, d, ring, _) = made.lock().take().ok_or("the node was not built")?;
        let req = if i == 0 {
            RingRequest::Bootstrap
        } else {
            RingRequest::Join { access: self.repls[0].0 }
        };
        ring.provided::<Ring<ReplMessage>>()
            .and_then(|p| p.request(req))
            .map_err(|e| e.to_string())?;
        self.repls.push((node, repl));
        drop(d);
        Ok(i)
    }

    /// Whether node `i` serves exactly what it owns, with nothing moving.
    fn settled(&self, i: usize) -> bool {
        settled(&self.repls[i].1)
    }

    /// Runs in steps of 10 ms until `done` or `limit` virtual time passed; returns when.
    fn run_until(&self, limit: Duration, mut done: impl FnMut(&World) -> bool) -> Option<Time> {
        let end = self.sim.now() + limit;
        while self.sim.now() < end {
            if done(self) {
                return Some(self.sim.now());
            }
            self.sim.run_for(Duration::from_millis(10));
        }
        done(self).then(|| self.sim.now())
    }

    /// The members' identifiers in ring order, with their index.
    fn members(&self) -> Vec<(RingId, usize)> {
        let mut ids: Vec<(RingId, usize)> = self
            .repls
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| self.sim.is_alive(*n))
            .filter_map(|(i, (_, r))| {
                r.on_definition(|d| d.machine().view())
                    .ok()
                    .and_then(|v| v.owned.and(v.id))
                    .map(|id| (id, i))
            })
            .collect();
        ids.sort();
        ids
    }

    /// Loads `items` items of `value` bytes at version 1 into the stores of the peers that
    /// serve their replicas. Returns the live heap bytes that added, and malloc's chunks.
    fn load(&mut self, items: u64, value: usize) -> (isize, isize) {
        let repls: Vec<Repl> = self.repls.iter().map(|(_, r)| r.clone()).collect();
        load(&repls, &self.members(), items, value)
    }

    fn stored(&self, i: usize) -> usize {
        self.repls[i].1.on_definition(|d| d.machine().store().len()).unwrap_or(0)
    }
}

/// Whether `r` serves exactly what it owns, with nothing moving.
fn settled(r: &Repl) -> bool {
    r.on_definition(|d| {
        let v = d.machine().view();
        v.owned.is_some_and(|o| v.serving == [o]) && v.pending.is_empty() && v.outgoing.is_empty()
    })
    .unwrap_or(false)
}

/// The members of `repls` in ring order, with their index.
fn members_of(repls: &[Repl]) -> Vec<(RingId, usize)> {
    let mut ids: Vec<(RingId, usize)> = repls
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let v = r.on_definition(|d| d.machine().view()).ok()?;
            v.owned.and(v.id).map(|id| (id, i))
        })
        .collect();
    ids.sort();
    ids
}

/// Loads `items` items of `value` bytes at version 1 into the stores of the members `ids`
/// (indices into `repls`) that serve their replicas. Returns the live heap bytes that added,
/// and the bytes of the allocator's chunks behind them (with malloc's own overhead).
fn load(repls: &[Repl], ids: &[(RingId, usize)], items: u64, value: usize) -> (isize, isize) {
    let owner = |p: RingId| {
        let i = ids.partition_point(|(id, _)| *id < p);
        ids.get(i).or_else(|| ids.first()).map_or(0, |(_, n)| *n)
    };
    let before = alloc::start();
    let chunks_before = alloc::chunks();
    let chunk = 1 << 16;
    let mut k = 0;
    while k < items {
        let mut per: BTreeMap<usize, Vec<(ItemId, Record)>> = BTreeMap::new();
        for k in k..(k + chunk).min(items) {
            let kb = key(k);
            for i in 0..F {
                let pos = RingId::of_key(&kb).replica(i, F);
                let rec = Record::new(Version(1), Some(vec![7u8; value].into_boxed_slice()));
                per.entry(owner(pos)).or_default().push((ItemId::new(pos, &kb), rec));
            }
        }
        for (n, list) in per {
            let _ = repls[n].on_definition(move |d| {
                let s = d.machine_testkit().store_testkit();
                for (id, r) in list {
                    s.insert_raw(id, r);
                }
            });
        }
        k += chunk;
    }
    let live = alloc::stop() - before;
    (live, alloc::chunks() - chunks_before)
}

/// Nodes on the multi-core runtime, all in this process, each with its own `TcpNetwork`
/// (over loopback TCP if `tcp`, else delivering between the nodes in memory).
struct RtRing {
    rt: Runtime,
    tcp: bool,
    nets: Vec<TcpNetwork>,
    repls: Vec<Repl>,
    go: Arc<AtomicBool>,
    log: Log<Recorded>,
    /// What every node is built with (its host, id and reads set per node).
    spec: NodeSpec,
}

impl RtRing {
    fn new(args: &Args, tcp: bool, spec: NodeSpec) -> Result<RtRing, String> {
        let rt = Runtime::builder().workers(args.threads()?).build();
        let (go, log) = (spec.go.clone(), spec.log.clone());
        Ok(RtRing { rt, tcp, nets: Vec::new(), repls: Vec::new(), go, log, spec })
    }

    /// Starts node `i` (host `i`, placed by the host rule) and asks it to join through the
    /// first node (or bootstrap if it is the first); returns its index.
    fn add(&mut self) -> Result<usize, String> {
        let err = |e: selfman::core::Error| e.to_string();
        let i = self.repls.len();
        let cfg = NetConfig::default().local_delivery(!self.tcp);
        let net = TcpNetwork::start(&self.rt, cfg).map_err(|e| e.to_string())?;
        let (host, id) = Placement::new(F).numbered_node(i, 1 << 20);
        let spec = NodeSpec {
            id,
            config: ReplicationConfig { host, ..self.spec.config },
            ..self.spec.clone()
        };
        let (repl, d, ring, fd) = wire(&net, &spec).map_err(err)?;
        for c in [&fd, &*ring, &*repl, &*d] {
            self.rt.start(c).map_err(err)?;
        }
        let req = match self.nets.first() {
            None => RingRequest::Bootstrap,
            Some(first) => RingRequest::Join { access: first.local() },
        };
        ring.provided::<Ring<ReplMessage>>().and_then(|p| p.request(req)).map_err(err)?;
        self.repls.push(repl);
        self.nets.push(net);
        Ok(i)
    }

    fn settled(&self, i: usize) -> bool {
        settled(&self.repls[i])
    }

    /// Waits (polling every millisecond) until `done` or `limit` passed; returns when.
    fn wait_for(&self, limit: Duration, mut done: impl FnMut(&RtRing) -> bool) -> Option<Instant> {
        let end = Instant::now() + limit;
        loop {
            if done(self) {
                return Some(Instant::now());
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Forms a ring of `nodes` (joins 300 ms apart) and waits until every node serves exactly
    /// its range.
    fn form(&mut self, nodes: usize) -> Result<(), String> {
        for _ in 0..nodes {
            self.add()?;
            std::thread::sleep(Duration::from_millis(300));
        }
        let all: Vec<usize> = (0..nodes).collect();
        self.wait_for(Duration::from_secs(60), |r| all.iter().all(|i| r.settled(*i)))
            .map(|_| ())
            .ok_or_else(|| "the ring did not form and settle within 60 s".to_owned())
    }

    fn stop(self) -> Result<(), String> {
        for net in &self.nets {
            net.shutdown();
        }
        self.rt.shutdown().map_err(|e| e.to_string())
    }

    fn transport(&self) -> &'static str {
        if self.tcp {
            "tcp"
        } else {
            "in-process"
        }
    }
}

/// The settings every node of a runtime ring starts with: no background repair.
fn rt_spec(items: u64, reads: u64, window: u64) -> NodeSpec {
    NodeSpec {
        id: RingId(0),
        config: ReplicationConfig {
            repair_period: Duration::from_secs(3600),
            ..ReplicationConfig::default()
        },
        items,
        window,
        reads,
        go: Arc::new(AtomicBool::new(false)),
        log: Log::default(),
    }
}

/// Quorum reads on the multi-core runtime: `nodes` nodes in this process ([`RtRing`]),
/// `--items` items loaded, every node's driver running `--window` reads at a time.
fn reads_tcp(args: &Args, tcp: bool) -> Result<String, String> {
    let nodes = args.get("nodes", 4)? as usize;
    let items = args.get("items", 100_000)?.max(1);
    let value = args.get("value-bytes", 16)? as usize;
    let reads = args.get("reads", 20_000)?;
    let window = args.get("window", 16)?;
    let mut r = RtRing::new(args, tcp, rt_spec(items, reads.div_ceil(nodes as u64), window))?;
    r.form(nodes)?;
    load(&r.repls, &members_of(&r.repls), items, value);
    let total = reads.div_ceil(nodes as u64) * nodes as u64;
    let wall = Instant::now();
    r.go.store(true, Ordering::Relaxed);
    let log = r.log.clone();
    let finished = r.wait_for(Duration::from_secs(300), |_| {
        let l = log.lock();
        l.latencies.len() as u64 + l.failed >= total
    });
    if finished.is_none() {
        let l = log.lock();
        let n = l.latencies.len() as u64 + l.failed;
        return Err(format!("only {n} of {total} reads finished within 300 s"));
    }
    let wall_s = wall.elapsed().as_secs_f64();
    let transport = r.transport();
    r.stop()?;
    let mut l = log.lock();
    l.latencies.sort();
    let (p50, p99) = (quantile(&l.latencies, 0.5), quantile(&l.latencies, 0.99));
    Ok(format!(
        "replication-reads nodes={nodes} items={items} f={F} transport={transport} window={window} \
         reads={} failed={} reads_per_s={:.0} p50_us={:.0} p99_us={:.0}",
        l.latencies.len(),
        l.failed,
        l.latencies.len() as f64 / wall_s,
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    ))
}

/// Hand-over on the multi-core runtime: a ring of `--nodes` ([`RtRing`]) holding `--items`,
/// one more peer joins; wall-clock time from its join request until it serves its whole range
/// (and the others again exactly theirs, nothing moving), and the replicas it received.
fn handover_tcp(args: &Args, tcp: bool) -> Result<String, String> {
    let nodes = args.get("nodes", 16)? as usize;
    let items = args.get("items", 1_000_000)?.max(1);
    let value = args.get("value-bytes", 16)? as usize;
    if !(4..=256).contains(&nodes) {
        return Err("--nodes must be between 4 and 256 on the runtime".into());
    }
    let mut r = RtRing::new(args, tcp, rt_spec(items, 0, 0))?;
    r.form(nodes)?;
    let wall = Instant::now();
    load(&r.repls, &members_of(&r.repls), items, value);
    let load_s = wall.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let j = r.add()?;
    let all: Vec<usize> = (0..=j).collect();
    let t = r
        .wait_for(Duration::from_secs(120), |r| all.iter().all(|i| r.settled(*i)))
        .ok_or("the joiner did not serve its range within 120 s")?;
    let took = t.duration_since(t0);
    let moved = r.repls[j].on_definition(|d| d.machine().store().len()).unwrap_or(0);
    let transport = r.transport();
    // The figure is taken; a slow shutdown (seen under heavy load with 1 M items to drop)
    // does not void it.
    if let Err(e) = r.stop() {
        eprintln!("selfman-bench replication: shutdown after the hand-over: {e}");
    }
    Ok(format!(
        "replication-handover nodes={nodes} items={items} f={F} transport={transport} \
         moved={moved} ms={:.0} target_ms=1000 met={} load_s={load_s:.1}",
        ms(took),
        took <= Duration::from_secs(1)
    ))
}

fn quantile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0).max(0.0) * p) as usize).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn run(args: &Args) -> Result<String, String> {
    let phase = args.text("phase", "handover").to_owned();
    match args.text("transport", "sim") {
        "sim" => {}
        "in-process" if phase == "reads" => return reads_tcp(args, false),
        "tcp" if phase == "reads" => return reads_tcp(args, true),
        "in-process" if phase == "handover" => return handover_tcp(args, false),
        "tcp" if phase == "handover" => return handover_tcp(args, true),
        other => {
            return Err(format!(
                "--transport {other}: sim (every phase), in-process or tcp (reads, handover)"
            ))
        }
    }
    let nodes = args.get("nodes", 16)? as usize;
    let items = args.get("items", 1_000_000)?;
    let value = args.get("value-bytes", 16)? as usize;
    let latency = Duration::from_micros(args.get("latency-us", 250)?);
    let seed = args.get("seed", 1)?;
    let stale_permille = args.get("stale-permille", 10)?;
    let reads = args.get("reads", 20_000)?;
    let window = args.get("window", 16)?;
    if !(4..=4096).contains(&nodes) {
        return Err("--nodes must be between 4 and 4096".into());
    }
    // No background repair unless the phase measures it.
    let repair_period =
        if phase == "repair" { Duration::from_secs(1) } else { Duration::from_secs(3600) };
    let config = ReplicationConfig { repair_period, ..ReplicationConfig::default() };
    let mut w = World::new(seed, latency, config);
    w.items = items.max(1);
    w.window = window;
    w.reads_per_node = if phase == "reads" { reads.div_ceil(nodes as u64) } else { 0 };
    for _ in 0..nodes {
        w.add()?;
        w.sim.run_for(Duration::from_millis(300));
    }
    let all: Vec<usize> = (0..nodes).collect();
    w.run_until(Duration::from_secs(60), |w| all.iter().all(|i| w.settled(*i)))
        .ok_or("the ring did not form and settle within 60 virtual s")?;
    let wall = Instant::now();
    let (added, chunks) = w.load(items, value);
    let load_s = wall.elapsed().as_secs_f64();
    let key_bytes = key(0).len();
    let replicas = (items * u64::from(F)).max(1) as f64;
    let per = added as f64 / replicas - (key_bytes + value) as f64;
    let per_chunks = chunks as f64 / replicas - (key_bytes + value) as f64;
    let mut out = format!(
        "replication-memory nodes={nodes} items={items} f={F} key_bytes={key_bytes} \
         value_bytes={value} heap_bytes={added} overhead_per_replica={per:.1} target=100 met={} \
         malloc_bytes={chunks} overhead_with_malloc_per_replica={per_chunks:.1} load_s={load_s:.1}\n",
        per < 100.0
    );
    let wall = Instant::now();
    let line = match phase.as_str() {
        "handover" => {
            let t0 = w.sim.now();
            let j = w.add()?;
            let t = w
                .run_until(Duration::from_secs(120), |w| w.settled(j) && w.settled(0))
                .ok_or("the joiner did not serve its range within 120 virtual s")?;
            let moved = w.stored(j);
            format!(
                "replication-handover nodes={nodes} items={items} f={F} latency_us={} moved={moved} \
                 ms={:.0} target_ms=1000 met={} wall_s={:.1}",
                latency.as_micros(),
                ms(t.duration_since(t0)),
                t.duration_since(t0) <= Duration::from_secs(1),
                wall.elapsed().as_secs_f64()
            )
        }
        "rereplicate" => {
            // A peer inside a sector (not an anchor), and its successor.
            let victim = F as usize + 1;
            let ids = w.members();
            let at = ids.iter().position(|(_, i)| *i == victim).ok_or("victim not a member")?;
            let succ = ids[(at + 1) % ids.len()].1;
            let lost = w.stored(victim);
            let t0 = w.sim.now();
            w.sim.crash(w.repls[victim].0).map_err(|e| e.to_string())?;
            let mut seen_pending = false;
            let t = w
                .run_until(Duration::from_secs(300), |w| {
                    let v = w.repls[succ].1.on_definition(|d| d.machine().view()).ok();
                    let pending = v.as_ref().is_some_and(|v| !v.pending.is_empty());
                    seen_pending |= pending;
                    seen_pending && w.settled(succ)
                })
                .ok_or("the range was not rebuilt within 300 virtual s")?;
            let served: usize = w
                .repls
                .iter()
                .filter(|(n, _)| w.sim.is_alive(*n))
                .map(|(_, r)| r.on_definition(|d| d.machine().served_replicas().len()).unwrap_or(0))
                .sum();
            let rebuilt = w.log.lock().rebuilt;
            format!(
                "replication-rereplicate nodes={nodes} items={items} f={F} latency_us={} \
                 lost_replicas={lost} rebuilt={rebuilt} served={served} expected={} ms={:.0} \
                 wall_s={:.1}",
                latency.as_micros(),
                items * u64::from(F),
                ms(t.duration_since(t0)),
                wall.elapsed().as_secs_f64()
            )
        }
        "repair" => {
            // One peer's replicas: the chosen ones get version 2 at the three other replicas.
            let victim = F as usize + 1;
            let ids = w.members();
            let owner = |p: RingId| {
                let i = ids.partition_point(|(id, _)| *id < p);
                ids.get(i).or_else(|| ids.first()).map_or(0, |(_, n)| *n)
            };
            let mine: Vec<ItemId> = w.repls[victim]
                .1
                .on_definition(|d| d.machine().store().iter().map(|(id, _)| id.to_id()).collect())
                .map_err(|e| e.to_string())?;
            let mut stale = Vec::new();
            let mut x = seed;
            for id in &mine {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if (x >> 33) % 1000 < stale_permille {
                    stale.push(id.clone());
                }
            }
            let mut stale_bytes = 0u64;
            for id in &stale {
                let kb = id.key.to_vec();
                stale_bytes += (kb.len() + value) as u64;
                for i in 0..F {
                    let pos = RingId::of_key(&kb).replica(i, F);
                    if pos == id.pos {
                        continue;
                    }
                    let rec = Record::new(Version(2), Some(vec![8u8; value].into_boxed_slice()));
                    let (kb, n) = (kb.clone(), owner(pos));
                    let _ = w.repls[n].1.on_definition(move |d| {
                        d.machine_testkit().store_testkit().insert_raw(ItemId::new(pos, &kb), rec)
                    });
                }
            }
            w.log.lock().repaired.clear();
            let t0 = w.sim.now();
            let check = stale.clone();
            let t = w
                .run_until(Duration::from_secs(600), |w| {
                    w.repls[victim]
                        .1
                        .on_definition(|d| {
                            check.iter().all(|id| {
                                d.machine().store().get(id).is_some_and(|r| r.version == Version(2))
                            })
                        })
                        .unwrap_or(false)
                })
                .ok_or("the stale replicas were not repaired within 600 virtual s")?;
            // The rounds that repaired them may still be running (the last fetch answered,
            // pushes or further leaves pending): wait until no node repairs, and count them.
            let t = w
                .run_until(Duration::from_secs(60), |w| {
                    w.repls
                        .iter()
                        .all(|(_, c)| c.on_definition(|d| !d.machine().repairing()).unwrap_or(true))
                })
                .unwrap_or(t);
            let l = w.log.lock();
            let rounds: Vec<&(Time, u64, u64)> =
                l.repaired.iter().filter(|(at, _, _)| *at <= t).collect();
            let bytes: u64 = rounds.iter().map(|(_, b, _)| b).sum();
            let useful: u64 = rounds.iter().filter(|(_, _, n)| *n > 0).map(|(_, b, _)| b).sum();
            format!(
                "replication-repair nodes={nodes} items={items} f={F} stale={} stale_bytes={stale_bytes} \
                 rounds={} bytes={bytes} bytes_of_rounds_that_repaired={useful} ratio={:.2} \
                 target_ratio=3 met={} ms={:.0} wall_s={:.1}",
                stale.len(),
                rounds.len(),
                bytes as f64 / stale_bytes.max(1) as f64,
                bytes <= 3 * stale_bytes,
                ms(t.duration_since(t0)),
                wall.elapsed().as_secs_f64()
            )
        }
        "reads" => {
            let total = w.reads_per_node * nodes as u64;
            w.go.store(true, Ordering::Relaxed);
            let log = w.log.clone();
            let t0 = w.sim.now();
            let wall = Instant::now();
            let t = w
                .run_until(Duration::from_secs(3600), |_| {
                    let l = log.lock();
                    l.latencies.len() as u64 + l.failed >= total
                })
                .ok_or("the reads did not finish")?;
            let wall_s = wall.elapsed().as_secs_f64();
            let mut l = log.lock();
            l.latencies.sort();
            let q = |p: f64| {
                l.latencies
                    .get(((l.latencies.len() as f64 - 1.0) * p) as usize)
                    .copied()
                    .unwrap_or_default()
            };
            format!(
                "replication-reads nodes={nodes} items={items} f={F} latency_us={} window={window} \
                 reads={} failed={} reads_per_s_wall={:.0} virtual_s={:.2} p50_us={:.0} p99_us={:.0}",
                latency.as_micros(),
                l.latencies.len(),
                l.failed,
                l.latencies.len() as f64 / wall_s,
                t.duration_since(t0).as_secs_f64(),
                q(0.5).as_secs_f64() * 1e6,
                q(0.99).as_secs_f64() * 1e6
            )
        }
        other => {
            return Err(format!("--phase {other}: known: handover, rereplicate, repair, reads"))
        }
    };
    out.push_str(&line);
    Ok(out)
}
