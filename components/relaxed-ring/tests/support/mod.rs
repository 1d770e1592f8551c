//! Test support for the simulation suites of this crate: a minimal heartbeat failure detector
//! (component crates may not depend on `selfman-failure-detector`, even for tests) and a
//! recorder of ring indications. The cross-crate suites in `tests/` use the real detector.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_core::{
    Component, ComponentDefinition, Context, Handled, Host, NetIndication, Network, NodeAddr,
    NodeId, Provided, Required, Result, Setup, Time, Timeout, Timer, TimerId,
};
use selfman_ports::{
    FailureDetector, FdIndication, FdRequest, LookupOutcome, Peer, Range, Ring, RingIndication,
    RingRequest, RingStatus, RingView, RingViews,
};
use selfman_relaxed_ring::{build, RelaxedRing, RingConfig};
use selfman_sim::{address_of, SimHost};
use serde::{Deserialize, Serialize};

/// Heartbeats of the test detector.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum Beat {
    Ping,
    Pong,
}

struct Watch {
    last: Time,
    suspected: bool,
}

/// Pings every watched node each `period`; suspects one silent for `timeout`; restores it
/// when it is heard again. One user (indications go to every channel).
pub struct TestFd {
    ctx: Context,
    net: Required<Network<Beat>>,
    timer: Required<Timer>,
    port: Provided<FailureDetector>,
    watched: BTreeMap<NodeAddr, Watch>,
    period: Duration,
    timeout: Duration,
}

impl TestFd {
    pub fn new(period: Duration, timeout: Duration) -> TestFd {
        TestFd {
            ctx: Context::new(),
            net: Required::new(),
            timer: Required::new(),
            port: Provided::new(),
            watched: BTreeMap::new(),
            period,
            timeout,
        }
    }

    fn on_request(&mut self, r: FdRequest) -> Handled {
        let now = self.ctx.now();
        match r {
            FdRequest::Monitor(n) => {
                self.watched.entry(n).or_insert(Watch { last: now, suspected: false });
            }
            FdRequest::Unmonitor(n) => {
                self.watched.remove(&n);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<Beat>) -> Handled {
        let NetIndication::Deliver(d) = ev else { return Ok(()) };
        if let Beat::Ping = d.msg {
            self.net.send(d.from, Beat::Pong);
        }
        let now = self.ctx.now();
        if let Some(w) = self.watched.get_mut(&d.from) {
            w.last = now;
            if w.suspected {
                w.suspected = false;
                self.port.trigger(FdIndication::Restore(d.from));
            }
        }
        Ok(())
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        let mut suspect = Vec::new();
        for (n, w) in &mut self.watched {
            self.net.send(*n, Beat::Ping);
            if !w.suspected && now.duration_since(w.last) > self.timeout {
                w.suspected = true;
                suspect.push(*n);
            }
        }
        for n in suspect {
            self.port.trigger(FdIndication::Suspect(n));
        }
        Ok(())
    }
}

impl ComponentDefinition for TestFd {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_tick);
        s.provide(|c| &mut c.port, Self::on_request);
    }

    fn on_start(&mut self) -> Handled {
        self.timer.schedule_periodic(TimerId(1), self.period, self.period);
        Ok(())
    }
}

/// Records every ring indication of its node.
pub struct Recorder {
    ring: Required<Ring<u64>>,
    me: SocketAddr,
    log: Log,
}

/// Indications by node address.
pub type Log = Arc<Mutex<Vec<(SocketAddr, RingIndication<u64>)>>>;

impl Recorder {
    fn on_ring(&mut self, i: RingIndication<u64>) -> Handled {
        self.log.lock().unwrap().push((self.me, i));
        Ok(())
    }
}

impl ComponentDefinition for Recorder {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.ring, Self::on_ring);
    }
}

/// What the nodes of a run share with the test.
#[derive(Clone, Default)]
pub struct Board {
    pub views: RingViews,
    pub rings: Arc<Mutex<BTreeMap<SocketAddr, Component<RelaxedRing<u64>>>>>,
    pub log: Log,
}

impl Board {
    /// Injects a request into the ring of the node at `addr`.
    pub fn request(
        &self,
        addr: SocketAddr,
        req: RingRequest<u64>,
    ) -> std::result::Result<(), String> {
        let rings = self.rings.lock().unwrap();
        let ring = rings.get(&addr).ok_or("no such node")?;
        ring.provided::<Ring<u64>>().and_then(|p| p.request(req)).map_err(|e| e.to_string())
    }
}

/// The failure detector's timing in these tests: ping every 100 ms, suspect after 500 ms.
pub const FD_PERIOD: Duration = Duration::from_millis(100);
pub const FD_TIMEOUT: Duration = Duration::from_millis(500);

/// Builds a ring node: test detector, ring, recorder. Node 0 bootstraps, the others join
/// through node 0.
pub fn node(h: &SimHost, board: &Board, config: RingConfig) -> Result<()> {
    node_with(h, board, config, FD_TIMEOUT)
}

/// As [`node`], with the detector suspecting after `fd_timeout` of silence.
pub fn node_with(
    h: &SimHost,
    board: &Board,
    config: RingConfig,
    fd_timeout: Duration,
) -> Result<()> {
    let fd = h.create(move || TestFd::new(FD_PERIOD, fd_timeout))?;
    h.system().connect(&h.network::<Beat>("test-fd")?, &fd.required()?)?;
    h.system().connect(&h.timer()?, &fd.required()?)?;
    let ring = build::<u64, _>(h, config, &fd.provided()?)?;
    let me = h.local().addr;
    let log = board.log.clone();
    let rec = h.create(move || Recorder { ring: Required::new(), me, log: log.clone() })?;
    h.system().connect(&ring.provided::<Ring<u64>>()?, &rec.required::<Ring<u64>>()?)?;
    board.views.register(h.local(), &ring);
    board.rings.lock().unwrap().insert(me, ring.clone());
    let req = if h.index() == 0 {
        RingRequest::Bootstrap
    } else {
        RingRequest::Join { access: NodeAddr::new(address_of(0), NodeId::UNKNOWN) }
    };
    ring.provided::<Ring<u64>>()?.request(req)?;
    Ok(())
}

/// The ranges of the peers in a ring do not overlap (sorted by range end, each range must not
/// contain the previous one's end).
pub fn consistent(views: &BTreeMap<NodeAddr, RingView>) -> std::result::Result<(), String> {
    let mut owned: Vec<(Peer, Range)> =
        views.values().filter_map(|v| v.range.map(|r| (v.me, r))).collect();
    if owned.len() < 2 {
        return Ok(());
    }
    owned.sort_by_key(|(_, r)| r.end);
    for i in 0..owned.len() {
        let (prev, pr) = owned[(i + owned.len() - 1) % owned.len()];
        let (p, r) = owned[i];
        if r.contains(pr.end) {
            return Err(format!("{p} owns {r} and {prev} owns {pr}: both own {}", pr.end));
        }
    }
    Ok(())
}

/// The live peers form one ring: every one in it, pointers and successor lists agree with
/// the sorted order, no range overlaps, and together they cover the circle.
pub fn one_ring(
    views: &BTreeMap<NodeAddr, RingView>,
    succ_list: usize,
) -> std::result::Result<(), String> {
    let mut vs: Vec<&RingView> = views.values().collect();
    vs.sort_by_key(|v| v.me.id);
    let n = vs.len();
    for (i, v) in vs.iter().enumerate() {
        if v.status != RingStatus::InRing {
            return Err(format!("{} is {:?}", v.me, v.status));
        }
        let next = vs[(i + 1) % n].me;
        let prev = vs[(i + n - 1) % n].me;
        if v.succ != Some(next) || v.pred != Some(prev) {
            return Err(format!(
                "{}: succ {:?} pred {:?}, expected {next} and {prev}",
                v.me, v.succ, v.pred
            ));
        }
        let want: Vec<Peer> = (1..n).map(|k| vs[(i + k) % n].me).take(succ_list).collect();
        if v.succ_list != want {
            return Err(format!("{}: stale successor list", v.me));
        }
        if v.fingers.iter().any(|f| !views.contains_key(&f.addr)) {
            return Err(format!("{}: a finger points at a dead peer", v.me));
        }
    }
    consistent(views)?;
    let covered: u128 = vs.iter().filter_map(|v| v.range).map(|r| r.size()).sum();
    if covered != 1u128 << 64 {
        return Err(format!("the ranges cover {covered} identifiers, not the circle"));
    }
    Ok(())
}

/// The live peer responsible for `key` by the sorted order.
pub fn owner(views: &BTreeMap<NodeAddr, RingView>, key: u64) -> Peer {
    let mut ids: Vec<Peer> = views.values().map(|v| v.me).collect();
    ids.sort_by_key(|p| p.id);
    *ids.iter().find(|p| p.id.0 >= key).unwrap_or(&ids[0])
}

/// The lookup results recorded with tags in `tags`, as (node, key, outcome).
pub fn lookups(log: &Log, tags: std::ops::Range<u64>) -> Vec<(SocketAddr, u64, LookupOutcome)> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|(a, i)| match i {
            RingIndication::LookupResult { key, tag, outcome } if tags.contains(tag) => {
                Some((*a, key.0, *outcome))
            }
            _ => None,
        })
        .collect()
}
