//! What runs on each simulated node of the scenarios: the protocol components, wired as a
//! deployment wires them, plus the recorders that feed the checkers (a recorder is one more
//! user of a port: channels fan out, so the protocol's real users see the same events).
//!
//! * detector and Ω nodes ([`build_detector_node`]): the heartbeat detector, a user
//!   monitoring every other node, and optionally Ω over the same detector;
//! * broadcast nodes ([`build_chat_node`]): a best-effort broadcast and a talker;
//! * consensus nodes ([`build_consensus_node`], [`build_recorded_consensus_node`]): the
//!   consensus cluster's node, and a recorder of its decisions and epochs;
//! * ring nodes ([`build_ring_node`]): the heartbeat detector, the relaxed ring over it
//!   (registered in the run's [`RingBoard`] for the global view), and a user that looks up a
//!   random key every few hundred milliseconds and records what it asked and was told.

use std::collections::BTreeMap;
use std::time::Duration;

use selfman_chord::{Chord, ChordConfig};
use selfman_consensus::{Flaws, Stack, StackConfig};
use selfman_consensus_cluster::{build_flawed_node, NodeConfig};
use selfman_core::testkit::Log;
use selfman_core::{
    Component, ComponentDefinition, Context, Handled, Host, NodeAddr, ProvidedRef, Required, Setup,
    Time, Timeout, Timer, TimerId,
};
use selfman_failure_detector::{FdConfig, Flaw};
use selfman_leader_election::Flaw as OmegaFlaw;
use selfman_ports::{
    BebDeliver, BebRequest, BestEffortBroadcast, Consensus, Decide, EpochChange, FailureDetector,
    FdIndication, FdRequest, LeaderElection, Peer, Range, Ring, RingId, RingIndication,
    RingRequest, RingStatus, RingView, RingViews, StartEpoch, Trust,
};
use selfman_relaxed_ring::{Flaw as RingFlaw, RelaxedRing, RingConfig};
use selfman_sim::SimHost;

use crate::checkers::broadcast::{BroadcastChecker, Chat};
use crate::checkers::consensus::{ConsensusChecker, Value};
use crate::checkers::failure_detection::{DetectionRecord, Life};
use crate::checkers::ring_history::{Answer, Observed, RingHistory};
use crate::scenarios::member;

// ------------------------------------------------------------------------------------------
// Failure detector and Ω
// ------------------------------------------------------------------------------------------

/// Monitors `watch` on start and logs every indication.
struct FdRecorder {
    ctx: Context,
    me: NodeAddr,
    fd: Required<FailureDetector>,
    watch: Vec<NodeAddr>,
    log: Log<DetectionRecord>,
}

impl FdRecorder {
    fn new(me: NodeAddr, watch: Vec<NodeAddr>, log: Log<DetectionRecord>) -> FdRecorder {
        FdRecorder { ctx: Context::new(), me, fd: Required::new(), watch, log }
    }

    fn on_fd(&mut self, ind: FdIndication) -> Handled {
        let now = self.ctx.now();
        self.log.lock().fd.push((now, self.me, ind));
        Ok(())
    }
}

impl ComponentDefinition for FdRecorder {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.fd, Self::on_fd);
    }

    fn on_start(&mut self) -> Handled {
        for &n in &self.watch {
            self.fd.trigger(FdRequest::Monitor(n));
        }
        Ok(())
    }
}

/// Logs every `Trust`.
struct TrustRecorder {
    ctx: Context,
    me: NodeAddr,
    le: Required<LeaderElection>,
    log: Log<DetectionRecord>,
}

impl TrustRecorder {
    fn new(me: NodeAddr, log: Log<DetectionRecord>) -> TrustRecorder {
        TrustRecorder { ctx: Context::new(), me, le: Required::new(), log }
    }

    fn on_trust(&mut self, t: Trust) -> Handled {
        let now = self.ctx.now();
        self.log.lock().trust.push((now, self.me, t));
        Ok(())
    }
}

impl ComponentDefinition for TrustRecorder {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.le, Self::on_trust);
    }
}

/// How a node of the detector and Ω scenarios is built.
#[derive(Clone, Copy)]
pub struct Wiring {
    /// How many nodes the scenario runs (each monitors all the others).
    pub nodes: usize,
    /// The detector's timing.
    pub config: FdConfig,
    /// The detector's deliberate mistake (broken variants).
    pub flaw: Option<Flaw>,
    /// Add Ω over the detector (group: every node, by address, in index order).
    pub omega: bool,
    /// Ω's deliberate mistake (broken variant).
    pub omega_flaw: Option<OmegaFlaw>,
}

/// Builds one node of the detector and Ω scenarios: the detector, a recorder monitoring every
/// other node, and (if asked) Ω over the detector with a recorder of its `Trust`s.
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_detector_node(
    h: &SimHost,
    w: Wiring,
    log: &Log<DetectionRecord>,
) -> selfman_core::Result<()> {
    let me = h.local();
    let (log1, log2) = (log.clone(), log.clone());
    let nodes = w.nodes;
    // ANCHOR: wiring
    // The detector, with its network and timer (deliberately flawed in broken variants).
    let fd = match w.flaw {
        None => selfman_failure_detector::build(h, w.config)?,
        Some(f) => selfman_failure_detector::build_flawed(h, w.config, f)?,
    };
    let fd_port = fd.provided::<FailureDetector>()?;
    // A user: monitors every other node (by address) on start.
    let watch: Vec<NodeAddr> = (0..nodes).filter(|&i| i != h.index()).map(member).collect();
    let rec = h.create(move || FdRecorder::new(me, watch.clone(), log1.clone()))?;
    h.system().connect(&fd_port, &rec.required()?)?;
    if w.omega {
        // Ω over the same detector; every node in index order is the group (index 0 ranks
        // highest), each member named by address only.
        let group: Vec<NodeAddr> = (0..nodes).map(member).collect();
        let omega = match w.omega_flaw {
            None => selfman_leader_election::build(h, &fd_port, group)?,
            Some(f) => selfman_leader_election::build_flawed(h, &fd_port, group, f)?,
        };
        let tr = h.create(move || TrustRecorder::new(me, log2.clone()))?;
        h.system().connect(&omega.provided::<LeaderElection>()?, &tr.required()?)?;
    }
    // ANCHOR_END: wiring
    let mut l = log.lock();
    l.lives.push(Life { node: me, start: h.system().now(), end: None });
    l.detectors.retain(|n, _| n.addr != me.addr);
    l.detectors.insert(me, fd);
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Best-effort broadcast
// ------------------------------------------------------------------------------------------

/// Broadcasts a numbered [`Chat`] every few ms, drops the last node from its group at
/// `regroup_at`, and records everything in the shared log.
struct Talker {
    ctx: Context,
    me: NodeAddr,
    /// The group: nodes `0..nodes`.
    nodes: usize,
    regroup_at: Time,
    beb: Required<BestEffortBroadcast<Chat>>,
    timer: Required<Timer>,
    seq: u64,
    group: u8,
    log: Log<BroadcastChecker>,
}

impl Talker {
    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        if self.group == 0 && now >= self.regroup_at {
            self.group = 1;
            let g = (0..self.nodes - 1).map(member).collect();
            self.beb.trigger(BebRequest::SetGroup(g));
        }
        if self.ctx.rng().chance(0.5) {
            self.seq += 1;
            let c = Chat { origin: self.me, seq: self.seq, sent_at: now.0, group: self.group };
            self.log.with(|l| l.broadcast(&c));
            self.beb.trigger(BebRequest::Broadcast(c));
        }
        Ok(())
    }

    fn on_deliver(&mut self, d: BebDeliver<Chat>) -> Handled {
        self.log.with(|l| l.deliver(self.me, &d));
        Ok(())
    }
}

impl ComponentDefinition for Talker {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.beb, Self::on_deliver);
        s.require(|c| &mut c.timer, Self::on_tick);
    }

    fn on_start(&mut self) -> Handled {
        let now = self.ctx.now();
        self.log.with(|l| l.node_started(self.me, now));
        let p = Duration::from_millis(20);
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

/// Builds one node of the `beb` scenarios: a best-effort broadcast to nodes `0..nodes` (protocol
/// `beb-chat`) and a talker on it that broadcasts a numbered [`Chat`] every 40 ms on average and
/// drops the last node from its group at `regroup_at`, recording into `log`.
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_chat_node(
    h: &SimHost,
    nodes: usize,
    regroup_at: Time,
    log: &Log<BroadcastChecker>,
) -> selfman_core::Result<()> {
    let group = (0..nodes).map(member).collect();
    let beb = selfman_broadcast::build::<Chat, _>(h, "beb-chat", group)?;
    let (me, log) = (h.local(), log.clone());
    let t = h.create(move || Talker {
        ctx: Context::new(),
        me,
        nodes,
        regroup_at,
        beb: Required::new(),
        timer: Required::new(),
        seq: 0,
        group: 0,
        log: log.clone(),
    })?;
    h.system().link::<BestEffortBroadcast<Chat>>(&beb, &t)?;
    h.system().connect(&h.timer()?, &t.required()?)?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Consensus
// ------------------------------------------------------------------------------------------

/// Wires a whole consensus node on `host` for `group` (members in rank order) with the
/// default settings and `flaws` (none for the real thing): the consensus cluster's
/// [`build_node`](selfman_consensus_cluster::build_node), which shows the wiring.
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_consensus_node<H: Host>(
    host: &H,
    group: Vec<NodeAddr>,
    config: &StackConfig,
    flaws: Flaws,
) -> selfman_core::Result<Stack<Value>> {
    let config = NodeConfig { stack: config.clone(), ..NodeConfig::default() };
    Ok(build_flawed_node(host, group, &config, flaws)?.stack)
}

/// Builds one node of the `consensus` scenarios: the whole stack for `group` with `flaws`
/// ([`build_consensus_node`]) and a recorder of its decisions and epochs beside the stack's
/// users, writing into `log`. Returns the node's `Consensus` port, for the script to propose
/// to.
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_recorded_consensus_node(
    h: &SimHost,
    group: Vec<NodeAddr>,
    flaws: Flaws,
    log: &Log<ConsensusChecker>,
) -> selfman_core::Result<ProvidedRef<Consensus<Value>>> {
    let stack = build_consensus_node(h, group, &StackConfig::default(), flaws)?;
    let (me, log) = (h.local(), log.clone());
    let rec = h.create(move || ConsensusRecorder {
        ctx: Context::new(),
        me,
        uc: Required::new(),
        ec: Required::new(),
        log: log.clone(),
    })?;
    h.system().link::<Consensus<Value>>(&stack.uc, &rec)?;
    h.system().link::<EpochChange>(&stack.ec, &rec)?;
    stack.uc.provided()
}

/// Records what its node decides and which epochs it starts (it is connected to the node's
/// `Consensus` and `EpochChange` ports next to their real users: channels fan out).
struct ConsensusRecorder {
    ctx: Context,
    me: NodeAddr,
    uc: Required<Consensus<Value>>,
    ec: Required<EpochChange>,
    log: Log<ConsensusChecker>,
}

impl ConsensusRecorder {
    fn on_decide(&mut self, d: Decide<Value>) -> Handled {
        let now = self.ctx.now();
        self.log.with(|l| l.decide(self.me, d.id, d.value, now));
        Ok(())
    }

    fn on_epoch(&mut self, s: StartEpoch) -> Handled {
        self.log.with(|l| l.start_epoch(self.me, s));
        Ok(())
    }
}

impl ComponentDefinition for ConsensusRecorder {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.uc, Self::on_decide);
        s.require(|c| &mut c.ec, Self::on_epoch);
    }
}

// ------------------------------------------------------------------------------------------
// Relaxed ring
// ------------------------------------------------------------------------------------------

/// What the ring nodes of a run share with its checks: the global view ([`RingViews`]), each
/// running incarnation's ring component (to inject requests and read its state cheaply after
/// every step), and the run's [`RingHistory`].
#[derive(Clone, Default)]
pub struct RingBoard {
    /// Every ring component, for snapshots of the global view.
    pub views: RingViews,
    /// Each incarnation's ring component, with its range as last observed (dead ones drop
    /// out at the next observation).
    rings: Log<Vec<Tracked>>,
    /// Ranges over time and the users' lookups.
    pub history: Log<RingHistory>,
    /// The access peer each node was given to join through.
    accesses: Log<BTreeMap<NodeAddr, NodeAddr>>,
    /// Nodes stranded outside the ring (see [`RingBoard::strand_joiners_of`]).
    stranded: Log<std::collections::BTreeSet<NodeAddr>>,
}

/// A ring component and what was last observed of it.
#[derive(Clone)]
struct Tracked {
    node: NodeAddr,
    ring: RingHandle,
    last: Option<Observed>,
}

/// One node's ring component, of either implementation behind the `Ring` port (the scenarios
/// and checkers read the same things of both).
#[derive(Clone)]
pub enum RingHandle {
    /// The relaxed ring.
    Relaxed(Component<RelaxedRing<u64>>),
    /// Chord.
    Chord(Component<Chord<u64>>),
}

impl RingHandle {
    /// Reads the machine's identity, range, status and (if `full`) view, or `None` if the
    /// component is gone.
    fn read<T>(
        &self,
        f: impl FnOnce(Peer, Option<Range>, RingStatus, &dyn Fn() -> RingView) -> T,
    ) -> Option<T> {
        match self {
            RingHandle::Relaxed(c) => c
                .on_definition(|d| {
                    let m = d.machine();
                    f(m.me(), m.range(), m.status(), &|| m.view())
                })
                .ok(),
            RingHandle::Chord(c) => c
                .on_definition(|d| {
                    let m = d.machine();
                    f(m.me(), m.range(), m.status(), &|| m.view())
                })
                .ok(),
        }
    }

    /// The component's `Ring` port.
    ///
    /// # Errors
    ///
    /// If the component is gone.
    pub fn port(&self) -> selfman_core::Result<ProvidedRef<Ring<u64>>> {
        match self {
            RingHandle::Relaxed(c) => c.provided::<Ring<u64>>(),
            RingHandle::Chord(c) => c.provided::<Ring<u64>>(),
        }
    }

    /// The relaxed ring's component (`None` for Chord).
    pub fn relaxed(&self) -> Option<&Component<RelaxedRing<u64>>> {
        match self {
            RingHandle::Relaxed(c) => Some(c),
            RingHandle::Chord(_) => None,
        }
    }
}

impl RingBoard {
    /// The ring of `node`, if it runs.
    pub fn ring(&self, node: NodeAddr) -> Option<RingHandle> {
        self.rings.lock().iter().find(|t| t.node == node).map(|t| t.ring.clone())
    }

    /// Injects `req` into the ring of `node`.
    ///
    /// # Errors
    ///
    /// If `node` does not run, or the port refuses the request.
    pub fn request(&self, node: NodeAddr, req: RingRequest<u64>) -> Result<(), String> {
        let ring = self.ring(node).ok_or_else(|| format!("{node} does not run"))?;
        ring.port().and_then(|p| p.request(req)).map_err(|e| e.to_string())
    }

    /// Every running peer as it is now (its identity and range), and whether anything changed
    /// since the last call (a range, a peer started or gone). Cheap: one read of each peer, no
    /// lists copied. Incarnations that are gone are forgotten.
    pub fn observe(&self) -> (Vec<Observed>, bool) {
        let mut rings = self.rings.lock();
        let mut changed = false;
        let mut gone = false;
        let mut out = Vec::with_capacity(rings.len());
        for t in rings.iter_mut() {
            match t.ring.read(|me, range, _, _| (me, range)) {
                Some((peer, range)) => {
                    let now = Observed { peer, range };
                    if t.last.as_ref().is_none_or(|l| l.range != range) {
                        changed = true;
                        t.last = Some(now.clone());
                    }
                    out.push(now);
                }
                None => gone = true,
            }
        }
        if gone {
            rings.retain(|t| t.ring.read(|_, _, _, _| ()).is_some());
            changed = true;
        }
        (out, changed)
    }

    /// Marks as stranded every node still joining whose access peer is among `crashed`
    /// (called when the scenario crashes them): if no attempt of its was answered, it knows
    /// no other peer, and the port ignores a `Join` while joining, so it cannot get in.
    /// (One whose attempts were answered knows other peers and gets in: it is checked as any
    /// other, for only those that stay outside are let off.)
    pub fn strand_joiners_of(&self, crashed: &[NodeAddr]) {
        let accesses = self.accesses.lock().clone();
        let joining: Vec<NodeAddr> = self
            .rings
            .lock()
            .iter()
            .filter(|t| {
                t.ring.read(|_, _, status, _| status == RingStatus::Joining).unwrap_or(false)
            })
            .map(|t| t.node)
            .collect();
        let mut stranded = self.stranded.lock();
        for n in joining {
            if accesses.get(&n).is_some_and(|a| crashed.iter().any(|c| c.addr == a.addr)) {
                stranded.insert(n);
            }
        }
    }

    /// The nodes marked stranded so far.
    pub fn stranded(&self) -> std::collections::BTreeSet<NodeAddr> {
        self.stranded.lock().clone()
    }

    /// What `node` suspects now (empty if it does not run).
    pub fn suspects(&self, node: NodeAddr) -> Vec<NodeAddr> {
        self.ring(node).and_then(|r| r.read(|_, _, _, view| view().crashed)).unwrap_or_default()
    }

    /// The successor of `node` now (`None` if it does not run or has none).
    pub fn succ_of(&self, node: NodeAddr) -> Option<Peer> {
        self.ring(node).and_then(|r| r.read(|_, _, _, view| view().succ)).flatten()
    }

    /// The global view: every running peer's [`RingView`].
    pub fn snapshot(&self) -> BTreeMap<NodeAddr, RingView> {
        self.views.snapshot()
    }

    /// The member a joiner at `index` asks: among the running peers in the ring (in address
    /// order), the `index`-th modulo their number, so joiners spread over access peers
    /// deterministically.
    fn access_for(&self, index: usize, me: NodeAddr) -> Option<NodeAddr> {
        let rings: Vec<RingHandle> =
            self.rings.lock().iter().filter(|t| t.node != me).map(|t| t.ring.clone()).collect();
        let members: Vec<NodeAddr> = rings
            .iter()
            .filter_map(|r| {
                r.read(|me, _, status, _| (status == RingStatus::InRing).then_some(me.addr))
                    .flatten()
            })
            .collect();
        (!members.is_empty()).then(|| members[index % members.len()])
    }
}

/// How the ring nodes of a scenario are built.
#[derive(Clone, Copy, Debug)]
pub struct RingWiring {
    /// The ring's settings.
    pub ring: RingConfig,
    /// Run Chord with these settings instead of the relaxed ring (then `ring` and `flaw` are
    /// not used).
    pub chord: Option<ChordConfig>,
    /// The failure detector's timing.
    pub fd: FdConfig,
    /// The ring's deliberate mistake (broken variants).
    pub flaw: Option<RingFlaw>,
    /// Join at once (through a member, or bootstrap if there is none); otherwise the scenario
    /// sends the `Join` itself ([`RingBoard::request`]).
    pub auto_join: bool,
    /// How often the node's user looks up a random key.
    pub lookup_every: Duration,
}

/// Builds one node of the ring scenarios: the heartbeat failure detector
/// (`selfman-failure-detector`), the relaxed ring over it (flawed in broken variants),
/// registered in `board`, and a user that looks up a random key every
/// [`RingWiring::lookup_every`] (from a random phase) and records each lookup and answer in
/// the board's history. With [`RingWiring::auto_join`] the node joins through a member at
/// once, or bootstraps a ring if no running peer is in one.
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_ring_node(h: &SimHost, w: RingWiring, board: &RingBoard) -> selfman_core::Result<()> {
    let me = h.local();
    // ANCHOR: ring_wiring
    // The failure detector, with its network and timer.
    let fd = selfman_failure_detector::build(h, w.fd)?;
    let fd_port = fd.provided::<FailureDetector>()?;
    // The ring over it: network, timer and detector (deliberately flawed in broken variants).
    let ring = match (w.chord, w.flaw) {
        (Some(c), _) => RingHandle::Chord(selfman_chord::build::<u64, _>(h, c, &fd_port)?),
        (None, None) => {
            RingHandle::Relaxed(selfman_relaxed_ring::build::<u64, _>(h, w.ring, &fd_port)?)
        }
        (None, Some(f)) => RingHandle::Relaxed(selfman_relaxed_ring::build_flawed::<u64, _>(
            h, w.ring, &fd_port, f,
        )?),
    };
    // Its user.
    let history = board.history.clone();
    let every = w.lookup_every;
    let user = h.create(move || RingUser::new(me, every, history.clone()))?;
    match &ring {
        RingHandle::Relaxed(r) => h.system().link::<Ring<u64>>(r, &user)?,
        RingHandle::Chord(r) => h.system().link::<Ring<u64>>(r, &user)?,
    };
    h.system().connect(&h.timer()?, &user.required()?)?;
    // ANCHOR_END: ring_wiring
    match &ring {
        RingHandle::Relaxed(r) => board.views.register(me, r),
        RingHandle::Chord(r) => board.views.register(me, r),
    }
    board.rings.lock().push(Tracked { node: me, ring: ring.clone(), last: None });

    if w.auto_join {
        let req = match board.access_for(h.index(), me) {
            Some(access) => {
                board.accesses.lock().insert(me, access);
                RingRequest::Join { access }
            }
            None => RingRequest::Bootstrap,
        };
        ring.port()?.request(req)?;
    }
    Ok(())
}

/// Looks up a random key every `every` and records each lookup and answer, and every range its
/// ring says it holds.
struct RingUser {
    ctx: Context,
    me: NodeAddr,
    ring: Required<Ring<u64>>,
    timer: Required<Timer>,
    every: Duration,
    next_tag: u64,
    history: Log<RingHistory>,
}

impl RingUser {
    fn new(me: NodeAddr, every: Duration, history: Log<RingHistory>) -> RingUser {
        RingUser {
            ctx: Context::new(),
            me,
            ring: Required::new(),
            timer: Required::new(),
            every,
            next_tag: 0,
            history,
        }
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        let key = RingId(self.ctx.rng().next_u64());
        let tag = self.next_tag;
        self.next_tag += 1;
        self.history.with(|h| h.issued(self.me, tag, key, now));
        self.ring.trigger(RingRequest::Lookup { key, tag });
        Ok(())
    }

    fn on_ring(&mut self, i: RingIndication<u64>) -> Handled {
        let at = self.ctx.now();
        match i {
            RingIndication::LookupResult { key, tag, outcome } => {
                let a = Answer { node: self.me, tag, key, outcome, at };
                self.history.with(|h| h.answered(a));
            }
            RingIndication::Joined { range, .. } => {
                self.history.with(|h| h.held(self.me, at, Some(range)));
            }
            RingIndication::Responsibility(rc) => {
                self.history.with(|h| h.held(self.me, at, rc.now));
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for RingUser {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.ring, Self::on_ring);
        s.require(|c| &mut c.timer, Self::on_tick);
    }

    fn on_start(&mut self) -> Handled {
        let every = u64::try_from(self.every.as_nanos()).unwrap_or(u64::MAX).max(1);
        let first = Duration::from_nanos(self.ctx.rng().below(every) + 1);
        self.timer.schedule_periodic(TimerId(1), first, self.every);
        Ok(())
    }
}
