//! Scenarios of symmetric replication over the relaxed ring (see [`crate::SCENARIOS`]). Every
//! node runs the heartbeat failure detector, the relaxed ring over it at the position the
//! placement rule gives its host, replication over both ([`build_repl_node`]), and a client
//! that writes and reads random keys and records what it did in the run's
//! [`ReplHistory`].
//!
//! Every scenario has the same shape: a **fault phase** over lossy links with random delays
//! (3 % loss, 1 ms + an exponential extra of mean 4 ms), in which the ring forms, the clients
//! write and read, and the faults happen; then a **quiet phase** from `quiet_at`: links lose
//! nothing, nothing fails, the clients stop writing (they keep reading). Checked in every run:
//!
//! * **no stale read**, as reads complete, all run long;
//! * **convergence** at `quiet_at +` [`convergence_bound`]: every item has `f` replicas of
//!   one version on the responsible peers ([`crate::checkers::replication::convergence`]);
//! * **durability**: at that instant every acknowledged key is read once more, from a running
//!   member; each read must answer at least the highest acknowledged version;
//! * **host diversity** every 100 ms, in the scenarios with several nodes per host
//!   (`repl-hosts`) where no anchor fails;
//! * sanity: writes were acknowledged and reads checked against them (a run that did nothing
//!   checks nothing).
//!
//! The scenarios:
//!
//! * `repl-churn`: 8 nodes on 8 hosts; two join, one leaves gracefully, two crash (one at a
//!   time, each long after the previous movement settled), one more joins;
//! * `repl-join`: 4 anchors, then 8 nodes join at once while every client writes, with
//!   transfer batches of 2 items so that hand-overs last and meet many writes;
//! * `repl-partition`: 8 nodes; two nodes of different sectors are cut off for 2.5 s (longer
//!   than the operation timeout, shorter than the detector's: no one is suspected), twice,
//!   so writes miss their replicas and only repair brings them up to date;
//! * `repl-hosts`: 12 nodes on 6 hosts (two per host); joins, a leave and a crash of nodes
//!   inside sectors, never of an anchor;
//!
//! and their broken twins, each the same recipe over a replication with one flaw
//! (`selfman_replication::Flaw`): `repl-broken-skips-delta` (`repl-join`, durability or no
//! stale read must fail), `repl-broken-quorum-of-one` (`repl-partition`, no stale read),
//! `repl-broken-no-repair` (`repl-partition`, convergence), `repl-broken-ignores-hosts`
//! (`repl-hosts`, host diversity).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use selfman_core::testkit::Log;
use selfman_core::{
    Component, ComponentDefinition, Context, Handled, Host, NodeAddr, Required, Setup, Time,
    Timeout, Timer, TimerId,
};
use selfman_failure_detector::FdConfig;
use selfman_ports::{
    FailureDetector, HostId, ReplicaOp, ReplicaOutcome, ReplicaViews, Replication,
    ReplicationIndication, ReplicationRequest, Ring, RingRequest, Version,
};
use selfman_relaxed_ring::RingConfig;
use selfman_replication::{Flaw, Placement, ReplMessage, ReplicationConfig, SymmetricReplication};
use selfman_sim::{
    address_of, Latency, LinkModel, Run, Scenario, SimConfig, SimHost, SimNetConfig,
};

use crate::checkers::replication::{convergence, host_diversity, value_of, ReplHistory};

/// Link delays in every phase: 1 ms plus an exponential extra of mean 4 ms (at most 81 ms).
const LATENCY: Latency = Latency::Exponential { base: ms(1), mean_extra: ms(4) };
/// The longest link delay.
const LATENCY_MAX: Duration = ms(81);
/// Loss in the fault phase.
const LOSS: f64 = 0.03;
/// Replication factor of every scenario.
pub const F: u32 = 4;
/// Tags of the final reads (the scenario's, not a client's).
const FINAL_TAG: u64 = 1 << 63;
/// Tags of a client's reads; writes have neither bit.
const READ_TAG: u64 = 1 << 62;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(s: f64) -> Time {
    Time::from_secs_f64(s)
}

fn key(k: u32) -> Vec<u8> {
    format!("key-{k:03}").into_bytes()
}

// ------------------------------------------------------------------------------------------
// The nodes
// ------------------------------------------------------------------------------------------

/// How the nodes of a replication scenario are built.
#[derive(Clone, Copy, Debug)]
pub struct ReplWiring {
    /// Replication's settings (the host is set per node).
    pub repl: ReplicationConfig,
    /// The ring's settings (the identifier is set per node, by the placement rule).
    pub ring: RingConfig,
    /// The failure detector's timing.
    pub fd: FdConfig,
    /// Replication's deliberate mistake (broken twins); `IgnoresHosts` also places the nodes
    /// by the flawed rule.
    pub flaw: Option<Flaw>,
    /// Node `i` runs on host `i mod hosts`.
    pub hosts: u32,
    /// The clients write and read keys `0..keys`.
    pub keys: u32,
    /// How often each client writes or reads (one operation per tick, half of each).
    pub op_every: Duration,
    /// The clients write until then (and keep reading).
    pub writes_until: Time,
    /// Nodes after the first `f` join at the middle of their host's sector instead of a
    /// salted position, so that the `f` replicas of a key move at once, in the same order
    /// (`repl-window`).
    pub mid_sector: bool,
}

/// The running incarnation's replication at each address.
type Repls = BTreeMap<SocketAddr, (NodeAddr, Component<SymmetricReplication<ReplMessage>>)>;

/// What the nodes of a run share with its checks.
#[derive(Clone, Default)]
pub struct ReplBoard {
    /// Every replication component, for snapshots of the global view.
    pub views: ReplicaViews,
    /// The running incarnation's replication at each address.
    repls: Log<Repls>,
    /// What the clients did.
    pub history: Log<ReplHistory>,
    /// Set by a scenario to stop every client's writes before `writes_until`.
    pub stop_writes: Log<bool>,
}

impl ReplBoard {
    /// Injects `req` into the replication of `node`.
    ///
    /// # Errors
    ///
    /// If `node` does not run, or the port refuses the request.
    pub fn request(&self, node: SocketAddr, req: ReplicationRequest) -> Result<(), String> {
        let c = self.repls.lock().get(&node).map(|(_, c)| c.clone());
        let c = c.ok_or_else(|| format!("{node} does not run"))?;
        c.provided::<Replication>().and_then(|p| p.request(req)).map_err(|e| e.to_string())
    }

    /// The running members (their replication says the ring gave them a range), by address.
    pub fn members(&self) -> Vec<NodeAddr> {
        self.views
            .snapshot()
            .into_iter()
            .filter(|(_, (v, _))| v.owned.is_some())
            .map(|(n, _)| n)
            .collect()
    }
}

/// Where node `i` joins, and on which host: host `i mod hosts`; the first `f` nodes take
/// their sector's anchor, the others a position inside it (attempt `1 + i`, salted by `i`).
/// With `IgnoresHosts` the flawed rule places them anywhere.
pub fn position(
    i: usize,
    hosts: u32,
    f: u32,
    flaw: Option<Flaw>,
) -> (HostId, selfman_ports::RingId) {
    let mut p = Placement::new(f);
    if flaw == Some(Flaw::IgnoresHosts) {
        p = p.with_flaw(Flaw::IgnoresHosts);
    }
    p.numbered_node(i, hosts)
}

/// The middle of `host`'s sector: the same offset in every sector, so the nodes placed there
/// take the same part of every sector, and every replica of a key moves at once.
pub fn mid_sector(host: HostId, f: u32) -> selfman_ports::RingId {
    let p = Placement::new(f);
    let sector = p.sector(p.sector_of_host(host));
    sector.start.offset(p.shift(1) / 2)
}

/// Builds one node of the replication scenarios: the heartbeat detector, the relaxed ring
/// at the position [`position`] gives it, replication over both (flawed in broken twins) on
/// its host, registered in `board`, and a client recording into the board's history. The
/// node joins through a running member at once, or bootstraps if there is none.
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_repl_node(h: &SimHost, w: ReplWiring, board: &ReplBoard) -> selfman_core::Result<()> {
    let me = h.local();
    let i = h.index();
    let (host, mut id) = position(i, w.hosts, w.repl.f, w.flaw);
    if w.mid_sector && i >= w.repl.f as usize {
        id = mid_sector(host, w.repl.f);
    }
    let access = board.members();
    // ANCHOR: repl_wiring
    // The failure detector, with its network and timer.
    let fd = selfman_failure_detector::build(h, w.fd)?;
    let fd_port = fd.provided::<FailureDetector>()?;
    // The ring over it, at the position of this node's host.
    let ring_config = RingConfig { id: Some(id), ..w.ring };
    let ring = selfman_relaxed_ring::build::<ReplMessage, _>(h, ring_config, &fd_port)?;
    let ring_port = ring.provided::<Ring<ReplMessage>>()?;
    // Replication over the ring and the detector, on this node's host.
    let config = ReplicationConfig { host, ..w.repl };
    let repl = match w.flaw {
        None => selfman_replication::build(h, config, &ring_port, &fd_port)?,
        Some(f) => selfman_replication::build_flawed(h, config, &ring_port, &fd_port, f)?,
    };
    // Its user.
    let (history, stop) = (board.history.clone(), board.stop_writes.clone());
    let client = h.create(move || ReplClient::new(me, i, w, history.clone(), stop.clone()))?;
    h.system().link::<Replication>(&repl, &client)?;
    h.system().connect(&h.timer()?, &client.required()?)?;
    // ANCHOR_END: repl_wiring
    board.views.register(me, &repl);
    board.repls.lock().insert(me.addr, (me, repl));
    let req = match access.get(i % access.len().max(1)) {
        Some(a) => RingRequest::Join { access: *a },
        None => RingRequest::Bootstrap,
    };
    ring_port.request(req)?;
    Ok(())
}

/// A write in flight: its key and version, and how many replicas answered.
struct Pending {
    key: Vec<u8>,
    version: Version,
    answered: u32,
    ok: u32,
}

/// Every tick, writes a random key at all `f` replicas with a version of its own (its clock
/// in microseconds and its node index, so versions are unique and grow), or reads one by a
/// quorum read; records both in the history. A write is acknowledged when a majority
/// answered `Applied` or `Current`.
struct ReplClient {
    ctx: Context,
    me: NodeAddr,
    index: usize,
    w: ReplWiring,
    port: Required<Replication>,
    timer: Required<Timer>,
    seq: u64,
    pending: BTreeMap<u64, Pending>,
    history: Log<ReplHistory>,
    stop: Log<bool>,
}

impl ReplClient {
    fn new(
        me: NodeAddr,
        index: usize,
        w: ReplWiring,
        history: Log<ReplHistory>,
        stop: Log<bool>,
    ) -> ReplClient {
        ReplClient {
            ctx: Context::new(),
            me,
            index,
            w,
            port: Required::new(),
            timer: Required::new(),
            seq: 0,
            pending: BTreeMap::new(),
            history,
            stop,
        }
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        let k = key(self.ctx.rng().below(u64::from(self.w.keys)) as u32);
        self.seq += 1;
        let seq = self.seq;
        let writing = now < self.w.writes_until && !*self.stop.lock();
        if writing && self.ctx.rng().chance(0.5) {
            let version = Version((now.0 / 1_000) << 8 | (self.index as u64 & 0xff));
            self.history.with(|h| h.write_issued(&k, version, now));
            for replica in 0..self.w.repl.f {
                let op = ReplicaOp::Write { version, value: Some(value_of(&k, version)) };
                let tag = seq << 8 | u64::from(replica);
                self.port.trigger(ReplicationRequest::AtReplica {
                    key: k.clone(),
                    replica,
                    op,
                    tag,
                });
            }
            self.pending.insert(seq, Pending { key: k, version, answered: 0, ok: 0 });
        } else {
            let tag = READ_TAG | seq;
            self.history.with(|h| h.read_issued(self.me, tag, &k, now, false));
            self.port.trigger(ReplicationRequest::Read { key: k, tag });
        }
        Ok(())
    }

    fn on_replication(&mut self, i: ReplicationIndication) -> Handled {
        let now = self.ctx.now();
        match i {
            ReplicationIndication::ReadDone { tag, result, .. } => {
                self.history.with(|h| h.read_done(self.me, tag, &result, now));
            }
            ReplicationIndication::ReplicaDone { tag, result, .. }
                if tag & (FINAL_TAG | READ_TAG) == 0 =>
            {
                let seq = tag >> 8;
                let quorum = self.w.repl.quorum();
                let f = self.w.repl.f;
                let Some(p) = self.pending.get_mut(&seq) else { return Ok(()) };
                p.answered += 1;
                if matches!(result, Ok((_, ReplicaOutcome::Applied | ReplicaOutcome::Current))) {
                    p.ok += 1;
                    if p.ok == quorum {
                        let (k, v) = (p.key.clone(), p.version);
                        self.history.with(|h| h.write_acked(&k, v, now));
                    }
                }
                if p.answered >= f {
                    self.pending.remove(&seq);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for ReplClient {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.port, Self::on_replication);
        s.require(|c| &mut c.timer, Self::on_tick);
    }

    fn on_start(&mut self) -> Handled {
        let every = u64::try_from(self.w.op_every.as_nanos()).unwrap_or(u64::MAX).max(1);
        let first = Duration::from_nanos(self.ctx.rng().below(every) + 1);
        self.timer.schedule_periodic(TimerId(1), first, self.w.op_every);
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// The recipes
// ------------------------------------------------------------------------------------------

// ANCHOR: convergence_bound
/// How long after the last fault ends every item is back to `f` replicas of one version on
/// the responsible peers:
///
/// ```text
/// B = fd.max_timeout + fd.period + latency_max          every crash suspected
///   + ring.join_timeout + 2·ring.stabilize + ring.tick  the ring converged (its own bound)
///   + offer_wait + transfer_timeout                     a gained range received, or given up
///                                                       and rebuilt from the replicas
///   + f · repair_period + op_timeout                    every peer compared its range with
///                                                       the f − 1 other replicas (one shift
///                                                       per round), the last round finished
/// ```
///
/// With the scenarios' settings (2 s, 100 ms, 81 ms; 2 s, 1 s, 100 ms; 2 s, 5 s; 4 × 1 s,
/// 2 s) that is 19.28 s.
pub fn convergence_bound(fd: &FdConfig, ring: &RingConfig, repl: &ReplicationConfig) -> Duration {
    fd.max_timeout
        + fd.period
        + LATENCY_MAX
        + ring.join_timeout
        + ring.stabilize * 2
        + ring.tick
        + repl.offer_wait
        + repl.transfer_timeout
        + repl.repair_period * repl.f
        + repl.op_timeout
}
// ANCHOR_END: convergence_bound

/// A replication scenario being built.
struct Recipe {
    s: Scenario,
    board: ReplBoard,
    w: ReplWiring,
    /// Nodes started so far (the next one's index).
    started: usize,
    /// When the last fault ends.
    quiet_at: Time,
    /// Spare anchors (indices below `f`) from leaves and crashes.
    spare_anchors: bool,
}

impl Recipe {
    fn new(name: &str, flaw: Option<Flaw>, hosts: u32, quiet_at: f64) -> Recipe {
        let repl = ReplicationConfig {
            repair_period: Duration::from_secs(1),
            ..ReplicationConfig::default()
        };
        let w = ReplWiring {
            repl,
            ring: RingConfig::default(),
            fd: FdConfig::default(),
            flaw,
            hosts,
            keys: 40,
            op_every: ms(50),
            writes_until: secs(quiet_at),
            mid_sector: false,
        };
        let config = SimConfig {
            network: SimNetConfig {
                default_link: LinkModel { latency: LATENCY, loss: LOSS },
                ..SimNetConfig::default()
            },
            ..SimConfig::default()
        };
        Recipe {
            s: Scenario::new(name).config(config),
            board: ReplBoard::default(),
            w,
            started: 0,
            quiet_at: secs(quiet_at),
            spare_anchors: false,
        }
    }

    /// Starts `n` nodes at `at`, one every 100 ms.
    fn start(mut self, at: f64, n: usize) -> Recipe {
        for j in 0..n {
            let (w, board) = (self.w, self.board.clone());
            self.s = self
                .s
                .start_nodes(secs(at + 0.1 * j as f64), 1, move |h| build_repl_node(h, w, &board));
        }
        self.started += n;
        self
    }

    /// Starts `n` nodes at once at `at`.
    fn start_at_once(mut self, at: f64, n: usize) -> Recipe {
        let (w, board) = (self.w, self.board.clone());
        self.s = self.s.start_nodes(secs(at), n, move |h| build_repl_node(h, w, &board));
        self.started += n;
        self
    }

    /// A random member that may fail (never node 0; no anchor if they are spared).
    fn victim(board: &ReplBoard, run: &mut Run<'_>, spare_anchors: bool) -> Option<NodeAddr> {
        let alive = run.sim.alive_nodes();
        let candidates: Vec<NodeAddr> = board
            .members()
            .into_iter()
            .filter(|n| alive.contains(n))
            .filter(|n| {
                let i = (0..1024).find(|i| address_of(*i) == n.addr).unwrap_or(0);
                i != 0 && !(spare_anchors && i < F as usize)
            })
            .collect();
        (!candidates.is_empty())
            .then(|| candidates[run.rng.below(candidates.len() as u64) as usize])
    }

    /// At `at`, a random member leaves gracefully (and keeps running).
    fn leave(mut self, at: f64) -> Recipe {
        let (board, spare) = (self.board.clone(), self.spare_anchors);
        self.s = self.s.at(secs(at), "a member leaves", move |run| {
            let v = Self::victim(&board, run, spare).ok_or("no member may leave")?;
            board.request(v.addr, ReplicationRequest::Leave)
        });
        self
    }

    /// At `at`, a random member crashes.
    fn crash(mut self, at: f64) -> Recipe {
        let (board, spare) = (self.board.clone(), self.spare_anchors);
        self.s = self.s.at(secs(at), "a member crashes", move |run| {
            let v = Self::victim(&board, run, spare).ok_or("no member may crash")?;
            run.sim.crash(v).map_err(|e| e.to_string())
        });
        self
    }

    /// From `at` for `for_s` seconds, the members at indices `cut` are cut off from the others.
    fn cut(mut self, at: f64, for_s: f64, cut: &'static [usize]) -> Recipe {
        self.s = self.s.partition(secs(at), move |nodes| {
            let (a, b): (Vec<NodeAddr>, Vec<NodeAddr>) =
                nodes.iter().partition(|n| cut.iter().any(|i| address_of(*i) == n.addr));
            vec![a, b]
        });
        self.s = self.s.heal(secs(at + for_s));
        self
    }

    /// The quiet phase and every check; the finished scenario.
    fn finish(self, check_hosts: bool) -> Scenario {
        let Recipe { mut s, board, w, quiet_at, .. } = self;
        let bound = convergence_bound(&w.fd, &w.ring, &w.repl);
        s = s.at(quiet_at, "quiet: links lose nothing", |run| {
            run.sim.set_default_link(LinkModel { latency: LATENCY, loss: 0.0 });
            Ok(())
        });
        let history = board.history.clone();
        s = s.check_always("no stale read", move |_| match history.lock().violations().first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        });
        if check_hosts {
            let mut t = 0.1;
            let end = (quiet_at + bound).0 as f64 / 1e9;
            while t < end {
                let views = board.views.clone();
                s = s.check_at(secs(t), "host diversity", move |_| {
                    // Checked once the first f nodes (the anchors, by the correct rule) are
                    // members — before that, the first nodes hold several replicas of every
                    // key by necessity — and while the members' ranges do not overlap (a
                    // joiner owns its range before its successor is told it lost it).
                    let v = views.snapshot();
                    let owned: Vec<(SocketAddr, selfman_ports::Range)> =
                        v.iter().filter_map(|(n, (w, _))| w.owned.map(|o| (n.addr, o))).collect();
                    let anchors =
                        (0..F as usize).all(|i| owned.iter().any(|(a, _)| *a == address_of(i)));
                    let overlap = owned
                        .iter()
                        .enumerate()
                        .any(|(j, (_, a))| owned[j + 1..].iter().any(|(_, b)| a.overlaps(b)));
                    if anchors && !overlap {
                        host_diversity(&v)
                    } else {
                        Ok(())
                    }
                });
                t += 0.1;
            }
        }
        let converged = quiet_at + bound;
        let b = board.clone();
        s = s.check_at(converged, "convergence", move |_| {
            let acked = b.history.lock().max_acked();
            convergence(&b.views.snapshot(), w.repl.f, &acked)
        });
        let b = board.clone();
        s = s.at(converged, "final reads of every acknowledged key", move |run| {
            let members = b.members();
            let alive = run.sim.alive_nodes();
            let members: Vec<NodeAddr> =
                members.into_iter().filter(|n| alive.contains(n)).collect();
            if members.is_empty() {
                return Err("no member runs".into());
            }
            let keys: Vec<Vec<u8>> = b.history.lock().max_acked().into_keys().collect();
            for (j, k) in keys.into_iter().enumerate() {
                let from = members[run.rng.below(members.len() as u64) as usize];
                let tag = FINAL_TAG | j as u64;
                b.history.with(|h| h.read_issued(from, tag, &k, run.sim.now(), true));
                b.request(from.addr, ReplicationRequest::Read { key: k, tag })?;
            }
            Ok(())
        });
        let history = board.history.clone();
        s = s.check_at_end("durability", move |_| {
            let h = history.lock();
            h.durability()?;
            let st = h.stats;
            if st.acked < 50 || st.reads_checked < 50 {
                return Err(format!("sanity: too little happened to check anything: {st:?}"));
            }
            Ok(())
        });
        s.until(converged + w.repl.op_timeout + ms(500))
    }
}

// ------------------------------------------------------------------------------------------
// The scenarios
// ------------------------------------------------------------------------------------------

fn churn(name: &str, flaw: Option<Flaw>) -> Scenario {
    Recipe::new(name, flaw, 16, 34.0)
        .start(0.0, 8)
        .start(6.0, 1)
        .start(9.0, 1)
        .leave(12.0)
        .crash(17.0)
        .crash(24.0)
        .start(30.0, 1)
        .finish(false)
}

/// `repl-churn`: 8 nodes on 8 hosts; joins, a graceful leave, two crashes one at a time,
/// one more join, over lossy links, while the clients write and read.
pub fn repl_churn() -> Scenario {
    churn("repl-churn", None)
}

fn join(name: &str, flaw: Option<Flaw>) -> Scenario {
    let mut r = Recipe::new(name, flaw, 16, 14.0);
    r.w.repl = ReplicationConfig { batch_items: 2, window: 1, ..r.w.repl };
    r.w.op_every = ms(20);
    r.start(0.0, 4).start_at_once(5.0, 8).finish(false)
}

/// `repl-join`: 4 anchors, then 8 nodes join at once while every client writes (every 20 ms),
/// with transfer batches of 2 items, one in flight.
pub fn repl_join() -> Scenario {
    join("repl-join", None)
}

/// Items a mid-sector joiner of `repl-window` must have received before the writes stop.
const WINDOW_RECEIVED: u64 = 40;

fn window(name: &str, flaw: Option<Flaw>) -> Scenario {
    let mut r = Recipe::new(name, flaw, 16, 14.0);
    r.w.repl = ReplicationConfig { batch_items: 1, window: 1, ..r.w.repl };
    r.w.op_every = ms(20);
    r.w.keys = 200;
    r.w.mid_sector = true;
    // No loss: a lost join message (re-sent after the ring's join timeout) or transfer batch
    // (re-sent after `retransmit`) would spread the transfers apart; `repl-join` runs joins
    // over lossy links.
    r.s = r.s.config(SimConfig {
        network: SimNetConfig {
            default_link: LinkModel { latency: LATENCY, loss: 0.0 },
            ..SimNetConfig::default()
        },
        ..SimConfig::default()
    });
    let f = r.w.repl.f as usize;
    let mut r = r.start(0.0, f).start_at_once(6.0, f);
    // Every 10 ms from the joins on: once every joiner received WINDOW_RECEIVED items (its
    // transfer, one item per batch, is under way at every old holder, past the same keys in
    // every sector), the clients stop writing. Their last writes of the keys already sent
    // land in the transfers' windows at all f replicas, and nothing overwrites them later.
    let mut t = 6.0;
    while t < 14.0 {
        let b = r.board.clone();
        r.s = r.s.at(secs(t), "writes stop once every joiner is receiving", move |_| {
            if *b.stop_writes.lock() {
                return Ok(());
            }
            let views = b.views.snapshot();
            let received = |i: usize| {
                views.iter().find(|(n, _)| n.addr == address_of(i)).map_or(0, |(_, (v, _))| v.items)
            };
            if (f..2 * f).all(|i| received(i) >= WINDOW_RECEIVED) {
                *b.stop_writes.lock() = true;
            }
            Ok(())
        });
        t += 0.01;
    }
    r.finish(false)
}

/// `repl-window`: 4 anchors holding 200 keys; 4 nodes join at once, each in the middle of its
/// sector, so every replica of a key moves at once, one item per batch; the writes stop in
/// the middle of the transfers. Durability and no stale read check the meanwhile-writes.
pub fn repl_window() -> Scenario {
    window("repl-window", None)
}

/// `repl-broken-skips-delta`: `repl-window` with hand-overs that never re-send the
/// meanwhile-writes.
pub fn repl_broken_skips_delta() -> Scenario {
    window("repl-broken-skips-delta", Some(Flaw::SkipsDelta))
}

fn partition(name: &str, flaw: Option<Flaw>) -> Scenario {
    let mut r = Recipe::new(name, flaw, 16, 11.0);
    // Suspect no one within a cut: the cut (2.5 s) is longer than an operation's timeout
    // (2 s) and shorter than the detector's first timeout.
    r.w.fd = FdConfig {
        initial_timeout: Duration::from_secs(4),
        max_timeout: Duration::from_secs(5),
        ..FdConfig::default()
    };
    // The writes stop half a second into the second cut: the writes of that half second
    // missed the cut-off replicas (the coordinator's last re-send, at 1.5 s, is before the
    // heal) and no later write covers them, so only repair brings those replicas up to date.
    r.w.writes_until = secs(9.0);
    // Nodes 1 and 6: sectors 1 and 2.
    r.start(0.0, 8).cut(4.0, 2.5, &[1, 6]).cut(8.5, 2.5, &[2, 7]).finish(false)
}

/// `repl-partition`: 8 nodes; twice two nodes of different sectors are cut off for 2.5 s.
pub fn repl_partition() -> Scenario {
    partition("repl-partition", None)
}

/// `repl-broken-quorum-of-one`: `repl-partition` with reads that answer after one replica.
pub fn repl_broken_quorum_of_one() -> Scenario {
    partition("repl-broken-quorum-of-one", Some(Flaw::QuorumOfOne))
}

/// `repl-broken-no-repair`: `repl-partition` with anti-entropy switched off.
pub fn repl_broken_no_repair() -> Scenario {
    partition("repl-broken-no-repair", Some(Flaw::NoRepair))
}

fn hosts(name: &str, flaw: Option<Flaw>) -> Scenario {
    let mut r = Recipe::new(name, flaw, 6, 24.0);
    r.spare_anchors = true;
    r.start(0.0, 10).start(6.0, 1).leave(9.0).crash(13.0).start(18.0, 1).finish(true)
}

/// `repl-hosts`: 12 nodes on 6 hosts; joins, a leave and a crash inside sectors.
pub fn repl_hosts() -> Scenario {
    hosts("repl-hosts", None)
}

/// `repl-broken-ignores-hosts`: `repl-hosts` with join positions that ignore the host.
pub fn repl_broken_ignores_hosts() -> Scenario {
    hosts("repl-broken-ignores-hosts", Some(Flaw::IgnoresHosts))
}
