//! The launcher: runs the ring as OS processes and checks what they report.
//!
//! Phases, each with a deadline of `--timeout-s`:
//!
//! 1. **form**: start every node; node 0 bootstraps, the others join through it, all at once;
//!    wait until the views form one ring in sorted order ([`pointer_faults`] empty);
//! 2. **lookups**: from every node, `L` lookups of random keys and of peer identifiers (and
//!    the identifier after one); every one must name the owner;
//! 3. **swap** (unless `--swap no`): while one lookup every [`BACKGROUND_EVERY`] runs from the
//!    nodes in turn, replace every node's failure detector ([`swapped_fd`]) and then every
//!    node's ring ([`swapped_ring`]), live, each with its state; every lookup must name the
//!    owner and the ring must be one ring again under the new successor-list size;
//! 4. **kill**: SIGKILL `K` nodes by PID (two of them neighbours on the ring), with lookups
//!    still running; wait until the survivors' views form one ring (the **repair time**) and
//!    no routing table names a killed peer. A lookup answered meanwhile may say the range is
//!    unavailable, but may not name a wrong peer;
//! 5. **lookups** again from every survivor: every one must name the owner.
//!
//! Whatever happens, every node process is stopped and reaped by PID (`selfman-launch`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use selfman_core::{NodeAddr, Rng};
use selfman_failure_detector::FdConfig;
use selfman_launch::{self as launch, Cluster, Program};
use selfman_ports::ring_check::{dead_fingers, lookup_fault, ring_convergence};
use selfman_ports::{LookupOutcome, Peer, RingId, RingView};
use selfman_relaxed_ring::RingConfig;

use super::netns::{remove_stale, Split, SIDE_IPS};
use super::{default_fd, fd_args, fd_flag, flag_values, number, usage, validate_fd};
use crate::lines::{Command, NodeLine, RingSettings, Swapped};

/// How long a node gets to print its readiness line (ten processes starting at once on two
/// busy cores).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// One background lookup this often, from the live nodes in turn, while swapping and
/// repairing.
pub(super) const BACKGROUND_EVERY: Duration = Duration::from_millis(20);
/// Swaps of successive nodes this far apart.
const SWAP_STAGGER: Duration = Duration::from_millis(50);
/// Lookups keep running this long after the last swap.
const AFTER_SWAPS: Duration = Duration::from_secs(1);
/// How long the launcher waits for the answers to the lookups it sent (the ring answers
/// every lookup within its lookup timeout, 2 s by default).
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long nodes get to exit once their stdin is closed, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The detector every node is switched to in the swap phase: Beernet's probing period and
/// increment (250 ms, +500 ms), this program's timeouts.
pub(super) fn swapped_fd(from: FdConfig) -> FdConfig {
    let b = FdConfig::beernet();
    FdConfig { period: b.period, increment: b.increment, ..from }.normalized()
}

/// The ring every node is switched to in the swap phase: binary fingers instead of 4-ary,
/// check-in every 500 ms instead of 1 s, successor lists of 5 instead of 7.
pub(super) fn swapped_ring() -> RingSettings {
    RingSettings { k: 2, stabilize: Duration::from_millis(500), succ_list_size: 5 }
}

#[derive(Debug)]
pub(super) struct LaunchOptions {
    nodes: usize,
    kill: usize,
    lookups: usize,
    swap: bool,
    seed: u64,
    timeout: Duration,
    fd: FdConfig,
    /// A deliberate mistake for every node's ring (feature `flaws`).
    flaw: Option<String>,
    /// `--partition-s`: the partition run instead of the swaps and kills, the two sides apart
    /// this long.
    partition: Option<Duration>,
}

/// Longest partition `--partition-s` takes.
const MAX_APART: Duration = Duration::from_secs(600);

pub(super) fn parse(args: &[String]) -> Result<LaunchOptions, String> {
    let mut o = LaunchOptions {
        nodes: 10,
        kill: 3,
        lookups: 20,
        swap: true,
        seed: u64::from(std::process::id()),
        timeout: Duration::from_secs(60),
        fd: default_fd(),
        flaw: None,
        partition: None,
    };
    let mut kill_given = false;
    for (flag, v) in flag_values(args)? {
        if fd_flag(&mut o.fd, flag, v)? {
            continue;
        }
        match flag {
            "--nodes" => o.nodes = number(flag, v)? as usize,
            "--kill" => {
                o.kill = number(flag, v)? as usize;
                kill_given = true;
            }
            "--lookups" => o.lookups = number(flag, v)? as usize,
            "--swap" => {
                o.swap = match v {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(usage("--swap takes yes or no")),
                }
            }
            "--seed" => o.seed = number(flag, v)?,
            "--timeout-s" => o.timeout = Duration::from_secs(number(flag, v)?.max(1)),
            "--partition-s" => {
                let apart = Duration::from_secs(number(flag, v)?);
                if apart.is_zero() || apart > MAX_APART {
                    return Err(usage("--partition-s must be between 1 and 600"));
                }
                o.partition = Some(apart);
            }
            #[cfg(feature = "flaws")]
            "--flaw" => {
                parse_flaw(v)?;
                o.flaw = Some(v.to_owned());
            }
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }
    if !(3..=64).contains(&o.nodes) {
        return Err(usage("--nodes must be between 3 and 64"));
    }
    if o.partition.is_some() {
        if o.nodes < 4 {
            return Err(usage("--partition-s needs --nodes 4 or more (two on each side)"));
        }
        if kill_given || !o.swap {
            return Err(usage("--partition-s replaces the swaps and kills: no --kill or --swap"));
        }
        o.swap = false;
        o.kill = 0;
        validate_fd(&o.fd)?;
        return Ok(o);
    }
    if o.kill == 0 || o.kill > (o.nodes - 1) / 2 {
        return Err(usage(format!(
            "--kill must be between 1 and {} (fewer than half of --nodes)",
            (o.nodes - 1) / 2
        )));
    }
    validate_fd(&o.fd)?;
    Ok(o)
}

/// The deliberate mistakes a node can be started with (feature `flaws`).
#[cfg(feature = "flaws")]
pub(super) fn parse_flaw(v: &str) -> Result<selfman_relaxed_ring::Flaw, String> {
    match v {
        "recovery-skips-succ-list" => Ok(selfman_relaxed_ring::Flaw::RecoverySkipsSuccList),
        "merge-off" => Ok(selfman_relaxed_ring::Flaw::MergeOff),
        _ => Err(usage(format!("--flaw: `{v}` (known: recovery-skips-succ-list, merge-off)"))),
    }
}

/// Node `i`: this same program's `node` subcommand; in the partition run, inside side
/// `i % 2`'s namespace, listening on that side's address.
fn node_program(i: usize, o: &LaunchOptions, split: Option<&Split>) -> Result<Program, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut p = match split {
        None => Program::new(exe),
        Some(split) => Program::new("ip")
            .args(["netns", "exec", &split.names[i % 2]])
            .arg(exe)
            .arg("node")
            .args(["--listen", &SocketAddr::new(SIDE_IPS[i % 2], 0).to_string()]),
    };
    if split.is_none() {
        p = p.arg("node");
    }
    p = p.name(format!("node {i}")).args(fd_args(&o.fd));
    if let Some(f) = &o.flaw {
        p = p.args(["--flaw", f]);
    }
    Ok(p)
}

/// Which part of the run a lookup belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Formed,
    Swapping,
    Repairing,
    Repaired,
    /// The partition run: while the sides are apart (judged against the node's own side).
    Apart,
    /// The partition run: after the sides merged.
    Merged,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Formed => "after forming",
            Phase::Swapping => "during the swaps",
            Phase::Repairing => "during the repair",
            Phase::Repaired => "after the repair",
            Phase::Apart => "on each side of the partition",
            Phase::Merged => "after the merge",
        }
    }
}

/// A lookup sent and not answered yet.
struct Sent {
    node: usize,
    key: RingId,
    phase: Phase,
}

/// Lookup answers of one phase.
#[derive(Default)]
struct Tally {
    sent: usize,
    right: usize,
    unavailable: usize,
    /// Answers naming a peer that is not the owner (each described).
    wrong: Vec<String>,
}

/// The running ring as the launcher sees it.
struct Run {
    nodes: Cluster,
    addrs: Vec<NodeAddr>,
    alive: Vec<bool>,
    views: Vec<Option<RingView>>,
    sent: BTreeMap<u64, Sent>,
    tallies: BTreeMap<Phase, Tally>,
    next_tag: u64,
    /// Background lookups: in which phase, and when the last one was sent.
    background: Option<(Phase, Instant)>,
    next_from: usize,
    /// Swaps reported done: (node, what) → pause in µs.
    swapped: BTreeMap<(usize, Swapped), u64>,
    /// Live peers seen suspecting other live peers: (suspecting node, suspected node).
    false_suspicions: BTreeSet<(usize, usize)>,
    rng: Rng,
}

impl Run {
    fn start(o: &LaunchOptions, split: Option<&Split>) -> Result<Run, String> {
        let mut nodes = Cluster::new();
        for i in 0..o.nodes {
            nodes.spawn(&node_program(i, o, split)?).map_err(|e| e.to_string())?;
        }
        let mut addrs = Vec::with_capacity(o.nodes);
        for i in 0..o.nodes {
            let a = nodes[i].wait_ready(READY_TIMEOUT).map_err(|e| e.to_string())?;
            addrs.push(a.parse().map_err(|e| format!("node {i} address `{a}`: {e}"))?);
        }
        Ok(Run {
            nodes,
            addrs,
            alive: vec![true; o.nodes],
            views: vec![None; o.nodes],
            sent: BTreeMap::new(),
            tallies: BTreeMap::new(),
            next_tag: 0,
            background: None,
            next_from: 0,
            swapped: BTreeMap::new(),
            false_suspicions: BTreeSet::new(),
            rng: Rng::seeded(o.seed),
        })
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.alive.len()).filter(|&i| self.alive[i])
    }

    fn send(&mut self, i: usize, c: &Command) -> Result<(), String> {
        self.nodes[i].send_line(&c.format()).map_err(|e| format!("node {i}: {e}"))
    }

    /// The views of the live nodes, by address, if every live node has reported one.
    fn live_views(&self) -> Option<BTreeMap<NodeAddr, RingView>> {
        self.live().map(|i| self.views[i].clone().map(|v| (self.addrs[i], v))).collect()
    }

    /// The live peers, as their views name them.
    fn live_peers(&self) -> Vec<Peer> {
        self.live().filter_map(|i| self.views[i].as_ref().map(|v| v.me)).collect()
    }

    /// The live peers on node `i`'s side of the partition (even or odd node numbers).
    fn side_peers(&self, i: usize) -> Vec<Peer> {
        self.live()
            .filter(|j| j % 2 == i % 2)
            .filter_map(|j| self.views[j].as_ref().map(|v| v.me))
            .collect()
    }

    fn index_of(&self, n: NodeAddr) -> Option<usize> {
        self.addrs.iter().position(|a| *a == n)
    }

    fn lookup(&mut self, node: usize, key: RingId, phase: Phase) -> Result<(), String> {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.send(node, &Command::Lookup { tag, key })?;
        self.sent.insert(tag, Sent { node, key, phase });
        self.tallies.entry(phase).or_default().sent += 1;
        Ok(())
    }

    /// Takes in every line that arrives within `wait`, and sends a background lookup when
    /// one is due.
    fn pump(&mut self, wait: Duration) -> Result<(), String> {
        if let Some((phase, last)) = self.background {
            if last.elapsed() >= BACKGROUND_EVERY {
                let live: Vec<usize> = self.live().collect();
                let from = live[self.next_from % live.len()];
                self.next_from += 1;
                let key = RingId(self.rng.next_u64());
                self.lookup(from, key, phase)?;
                self.background = Some((phase, Instant::now()));
            }
        }
        match self.nodes.next_line(wait) {
            Ok((i, line)) => self.take(i, &line)?,
            Err(launch::Error::Timeout { .. }) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        for (i, line) in self.nodes.take_lines() {
            self.take(i, &line)?;
        }
        Ok(())
    }

    fn take(&mut self, i: usize, line: &str) -> Result<(), String> {
        if !self.alive[i] {
            return Ok(()); // printed before it was killed
        }
        match NodeLine::parse(line).map_err(|e| format!("node {i}: {e}"))? {
            NodeLine::Started => {}
            NodeLine::View(v) => {
                for c in &v.crashed {
                    if let Some(j) = self.index_of(*c).filter(|&j| self.alive[j]) {
                        self.false_suspicions.insert((i, j));
                    }
                }
                self.views[i] = Some(*v);
            }
            NodeLine::Lookup { tag, key, outcome } => {
                let s = self.sent.remove(&tag).ok_or(format!("node {i}: unknown lookup {tag}"))?;
                if s.node != i || s.key != key {
                    return Err(format!("node {i} answered lookup {tag} sent to node {}", s.node));
                }
                let peers =
                    if s.phase == Phase::Apart { self.side_peers(i) } else { self.live_peers() };
                let tally = self.tallies.entry(s.phase).or_default();
                match (lookup_fault(&peers, key, &outcome), outcome) {
                    (None, _) => tally.right += 1,
                    (Some(_), LookupOutcome::Unavailable(_)) => tally.unavailable += 1,
                    (Some(why), LookupOutcome::Found { .. }) => {
                        tally.wrong.push(format!("from node {i}: {why}"))
                    }
                }
            }
            NodeLine::Swapped(what, us) => {
                self.swapped.insert((i, what), us);
            }
            NodeLine::SwapFailed(what, why) => {
                return Err(format!("node {i}: the swap of its {what:?} failed: {why}"));
            }
            NodeLine::Error(why) => return Err(format!("node {i} reports an error: {why}")),
        }
        Ok(())
    }

    /// Pumps until `done` holds or `deadline` passes; `Err` names what was awaited and why it
    /// does not hold yet.
    fn wait_for(
        &mut self,
        deadline: Instant,
        what: &str,
        mut done: impl FnMut(&Run) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let why = match done(self) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(format!("{what}: not within the deadline; {why}"));
            }
            self.pump(Duration::from_millis(5))?;
        }
    }

    /// Waits until one ring in sorted order with successor lists of `succ_list` has formed.
    fn wait_for_ring(
        &mut self,
        deadline: Instant,
        what: &str,
        succ_list: usize,
    ) -> Result<(), String> {
        self.wait_for(deadline, what, |r| {
            let views = r.live_views().ok_or("not every node has reported its view yet")?;
            let faults = ring_convergence(&views, succ_list);
            if faults.is_empty() {
                Ok(())
            } else {
                Err(summary(&faults))
            }
        })
    }

    /// Waits until each side of the partition has formed one ring of its own, in sorted
    /// order with successor lists of `succ_list` (or all its other peers).
    fn wait_for_sides(&mut self, deadline: Instant, succ_list: usize) -> Result<(), String> {
        self.wait_for(deadline, "one ring on each side", |r| {
            let views = r.live_views().ok_or("not every node has reported its view yet")?;
            let mut faults = Vec::new();
            for side in 0..2 {
                let mine: BTreeMap<NodeAddr, RingView> = views
                    .iter()
                    .filter(|(a, _)| r.index_of(**a).is_some_and(|j| j % 2 == side))
                    .map(|(a, v)| (*a, v.clone()))
                    .collect();
                faults.extend(ring_convergence(&mine, succ_list));
            }
            if faults.is_empty() {
                Ok(())
            } else {
                Err(summary(&faults))
            }
        })
    }

    /// Waits for the answers to every lookup sent to a live node.
    fn wait_for_answers(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + ANSWER_WAIT;
        self.wait_for(deadline, "lookup answers", |r| {
            let open = r.sent.len();
            if open == 0 {
                Ok(())
            } else {
                Err(format!("{open} lookups unanswered"))
            }
        })
    }

    /// `L` random lookups from every live node, plus two at peer boundaries.
    fn lookups_from_every_node(&mut self, l: usize, phase: Phase) -> Result<(), String> {
        let peers = self.live_peers();
        let live: Vec<usize> = self.live().collect();
        for (j, i) in live.into_iter().enumerate() {
            let p = peers[j % peers.len()].id;
            for key in [p, p.offset(1)] {
                self.lookup(i, key, phase)?;
            }
            for _ in 0..l {
                let key = RingId(self.rng.next_u64());
                self.lookup(i, key, phase)?;
            }
        }
        self.wait_for_answers()
    }

    /// Fails if a lookup of `phase` was not answered by the owner (`allow_unavailable`: an
    /// answer that the range is unavailable is allowed).
    fn check_tally(&self, phase: Phase, allow_unavailable: bool) -> Result<String, String> {
        let t = self.tallies.get(&phase).ok_or(format!("no lookup {}", phase.name()))?;
        let line = format!(
            "lookups {}: {} sent, {} answered by the owner, {} unavailable, {} wrong",
            phase.name(),
            t.sent,
            t.right,
            t.unavailable,
            t.wrong.len()
        );
        if !t.wrong.is_empty() || (!allow_unavailable && t.unavailable > 0) {
            let mut why = format!("{line}; first wrong: {:?}", t.wrong.first());
            if !self.false_suspicions.is_empty() {
                why += &format!(
                    " (live nodes were falsely suspected: {:?} as (suspecting, suspected))",
                    self.false_suspicions
                );
            }
            return Err(why);
        }
        Ok(line)
    }

    /// Stops every node (stdin closed, then SIGKILL after [`STOP_GRACE`]) and reaps it;
    /// returns how many of the live ones exited cleanly.
    fn stop(&mut self) -> Result<usize, String> {
        let statuses = self.nodes.stop_all(STOP_GRACE).map_err(|e| e.to_string())?;
        Ok(statuses.iter().enumerate().filter(|(i, s)| self.alive[*i] && s.success()).count())
    }

    fn describe(&self, i: usize) -> String {
        let id = self.views[i].as_ref().map_or("?".to_owned(), |v| v.me.id.to_string());
        format!("node {i} (pid {}, id {id})", self.nodes[i].pid())
    }
}

/// The first few of `faults`, and how many more.
fn summary(faults: &[String]) -> String {
    let mut s = faults.iter().take(4).cloned().collect::<Vec<_>>().join("; ");
    if faults.len() > 4 {
        s += &format!("; and {} more", faults.len() - 4);
    }
    s
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The victims: two neighbours on the ring, the others spread out (never three in a row).
fn victims(sorted: &[usize], k: usize, rng: &mut Rng) -> Vec<usize> {
    let n = sorted.len();
    let p = rng.below(n as u64) as usize;
    let step = if k > 1 { ((n - 2) / (k - 1)).max(2) } else { 0 };
    let mut out = vec![sorted[p]];
    for j in 1..k {
        let at = if j == 1 { p + 1 } else { p + 1 + (j - 1) * step };
        out.push(sorted[at % n]);
    }
    out
}

/// Phases 1 and 2: every node printed its address; node 0 bootstraps and the others join
/// through it; once they form one ring, lookups from every node must name the owner. Returns
/// the time it took to form and the nodes in ring order.
fn form(r: &mut Run, o: &LaunchOptions) -> Result<(Duration, Vec<usize>), String> {
    for i in 0..o.nodes {
        println!("node {i}: {} (pid {})", r.addrs[i], r.nodes[i].pid());
    }
    // 1. Form.
    let t0 = Instant::now();
    let deadline = t0 + o.timeout;
    r.send(0, &Command::Bootstrap)?;
    r.wait_for(deadline, "bootstrap", |r| match &r.views[0] {
        Some(v) if v.range.is_some() => Ok(()),
        _ => Err("node 0 has not bootstrapped".into()),
    })?;
    let access = r.addrs[0];
    for i in 1..o.nodes {
        r.send(i, &Command::Join(access))?;
    }
    r.wait_for_ring(deadline, "forming the ring", RingConfig::default().succ_list_size)?;
    let formed = t0.elapsed();
    println!("one ring of {} peers after {} ms:", o.nodes, ms(formed));
    let mut sorted: Vec<usize> = r.live().collect();
    sorted.sort_by_key(|&i| r.views[i].as_ref().map(|v| v.me.id));
    for &i in &sorted {
        let v = r.views[i].as_ref().expect("every node reported a view");
        println!("  {} owns {}", r.describe(i), v.range.map_or("-".into(), |x| x.to_string()));
    }

    // 2. Lookups from every node.
    r.lookups_from_every_node(o.lookups, Phase::Formed)?;
    println!("{}", r.check_tally(Phase::Formed, false)?);
    Ok((formed, sorted))
}

pub(super) fn run(o: LaunchOptions) -> Result<(), String> {
    if o.partition.is_some() {
        return run_partition(o);
    }
    let began = Instant::now();
    println!(
        "ring-cluster: {} nodes, kill {}, seed {}, detector {:?}",
        o.nodes, o.kill, o.seed, o.fd
    );
    let mut r = Run::start(&o, None)?;
    let (formed, sorted) = form(&mut r, &o)?;
    let list = RingConfig::default().succ_list_size;

    // 3. Swaps under lookups.
    let mut list = list;
    let swap = if o.swap {
        let t = Instant::now();
        r.background = Some((Phase::Swapping, t));
        let fd = swapped_fd(o.fd);
        let ring = swapped_ring();
        let mut plan: Vec<(Instant, usize, Command)> = Vec::new();
        for (n, i) in r.live().enumerate() {
            plan.push((t + SWAP_STAGGER * n as u32, i, Command::SwapFd(fd)));
            let later = t + SWAP_STAGGER * (o.nodes + n) as u32;
            plan.push((later, i, Command::SwapRing(ring)));
        }
        let deadline = t + o.timeout;
        let total = plan.len();
        // Send each command when due, pumping in between, until every swap is reported.
        while r.swapped.len() < total {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("swapping: {} of {total} swaps reported", r.swapped.len()));
            }
            while let Some(pos) = plan.iter().position(|(at, _, _)| *at <= now) {
                let (_, i, c) = plan.remove(pos);
                r.send(i, &c)?;
            }
            r.pump(Duration::from_millis(5))?;
        }
        let last = Instant::now();
        while last.elapsed() < AFTER_SWAPS {
            r.pump(Duration::from_millis(5))?;
        }
        r.background = None;
        r.wait_for_answers()?;
        list = ring.succ_list_size;
        r.wait_for_ring(Instant::now() + o.timeout, "one ring after the swaps", list)?;
        let mut pauses: Vec<u64> = r.swapped.values().copied().collect();
        pauses.sort_unstable();
        println!(
            "swapped {} detectors to {:?} and {} rings to {:?} live in {} ms \
             (each swap {}–{} µs as the node's main thread saw it)",
            o.nodes,
            fd,
            o.nodes,
            ring,
            ms(last - t),
            pauses.first().copied().unwrap_or(0),
            pauses.last().copied().unwrap_or(0)
        );
        println!("{}", r.check_tally(Phase::Swapping, false)?);
        "ok"
    } else {
        "no"
    };

    // 4. Kill, with lookups running, and wait for the repair.
    let doomed = victims(&sorted, o.kill, &mut r.rng);
    let names: Vec<String> = doomed.iter().map(|&i| r.describe(i)).collect();
    println!("killing {} with SIGKILL: {}", o.kill, names.join(", "));
    r.background = Some((Phase::Repairing, Instant::now()));
    let killed_at = Instant::now();
    for &i in &doomed {
        r.nodes[i].kill_9().map_err(|e| e.to_string())?;
        r.alive[i] = false;
    }
    // Lookups sent to the killed nodes die with them.
    r.sent.retain(|_, s| !doomed.contains(&s.node));
    let deadline = killed_at + o.timeout;
    r.wait_for_ring(deadline, "repairing the ring", list)?;
    let repair = killed_at.elapsed();
    println!(
        "the {} survivors form one ring again {} ms after the kill",
        o.nodes - o.kill,
        ms(repair)
    );
    r.wait_for(deadline, "dropping dead fingers", |r| {
        let views = r.live_views().ok_or("a survivor has no view")?;
        let faults = dead_fingers(&views);
        if faults.is_empty() {
            Ok(())
        } else {
            Err(summary(&faults))
        }
    })?;
    let fingers = killed_at.elapsed();
    println!("no routing table names a killed peer {} ms after the kill", ms(fingers));
    r.background = None;
    r.wait_for_answers()?;
    println!("{}", r.check_tally(Phase::Repairing, true)?);

    // 5. Lookups from every survivor.
    r.lookups_from_every_node(o.lookups, Phase::Repaired)?;
    println!("{}", r.check_tally(Phase::Repaired, false)?);

    let total: usize = r.tallies.values().map(|t| t.sent).sum();
    let right: usize = r.tallies.values().map(|t| t.right).sum();
    let failed: usize = r.tallies.values().map(|t| t.unavailable).sum();
    let wrong: usize = r.tallies.values().map(|t| t.wrong.len()).sum();
    if !r.false_suspicions.is_empty() {
        println!("note: live nodes were falsely suspected at times: {:?}", r.false_suspicions);
    }
    let clean = r.stop()?;
    println!(
        "{clean} of {} survivors exited cleanly when told; all {} processes reaped; {} s in all",
        o.nodes - o.kill,
        o.nodes,
        began.elapsed().as_secs()
    );
    println!(
        "ring-cluster nodes={} killed={} formed_ms={} swap={swap} repair_ms={} fingers_ms={} \
         lookups={total} right={right} wrong={wrong} failed={failed} ring=ok",
        o.nodes,
        o.kill,
        ms(formed),
        ms(repair),
        ms(fingers)
    );
    Ok(())
}

/// The partition run (`--partition-s S`): the nodes in two network namespaces ([`Split`]),
/// even-numbered nodes on side a, odd on side b. After phases 1 and 2 ([`form`]):
///
/// 3. **cut** the link between the sides; each side must form one ring of its own (within the
///    time apart, `split_ms`), and lookups from every node must name the owner among the peers
///    of its own side (an answer that a range is unavailable is allowed, a wrong owner not);
/// 4. **heal** the link `S` seconds after the cut; the peers must form one ring again by
///    themselves (`merge_ms`, from the heal: the relaxed ring's merge, started by probing its
///    passive list, since the sides were apart longer than suspects are remembered);
/// 5. **lookups** from every node: every one must name the owner.
fn run_partition(o: LaunchOptions) -> Result<(), String> {
    let apart = o.partition.expect("the partition run has --partition-s");
    let began = Instant::now();
    remove_stale();
    // Declared before the nodes, so dropped after them: the namespaces go last.
    let split = Split::create()?;
    println!(
        "ring-cluster: {} nodes in namespaces {} ({}) and {} ({}), apart {} s, seed {}, detector {:?}",
        o.nodes,
        split.names[0],
        SIDE_IPS[0],
        split.names[1],
        SIDE_IPS[1],
        apart.as_secs(),
        o.seed,
        o.fd
    );
    let mut r = Run::start(&o, Some(&split))?;
    let (formed, _) = form(&mut r, &o)?;
    let list = RingConfig::default().succ_list_size;

    // 3. Cut, and each side heals into a ring of its own.
    split.cut()?;
    let cut_at = Instant::now();
    println!("cut the link between the sides");
    r.wait_for_sides(cut_at + apart.min(o.timeout), list)?;
    let split_time = cut_at.elapsed();
    println!("each side forms one ring of its own {} ms after the cut", ms(split_time));
    r.lookups_from_every_node(o.lookups, Phase::Apart)?;
    println!("{}", r.check_tally(Phase::Apart, true)?);

    // 4. Heal, and the two rings merge by themselves.
    let heal_at = cut_at + apart;
    while Instant::now() < heal_at {
        r.pump(Duration::from_millis(5))?;
    }
    split.heal()?;
    let healed = Instant::now();
    println!("healed the link {} s after the cut", apart.as_secs());
    r.wait_for_ring(healed + o.timeout, "merging the two rings", list)?;
    let merge = healed.elapsed();
    println!("one ring of {} peers again {} ms after the heal", o.nodes, ms(merge));

    // 5. Lookups from every node.
    r.lookups_from_every_node(o.lookups, Phase::Merged)?;
    println!("{}", r.check_tally(Phase::Merged, false)?);

    let total: usize = r.tallies.values().map(|t| t.sent).sum();
    let right: usize = r.tallies.values().map(|t| t.right).sum();
    let failed: usize = r.tallies.values().map(|t| t.unavailable).sum();
    let clean = r.stop()?;
    println!(
        "{clean} of {} nodes exited cleanly when told; all reaped; {} s in all",
        o.nodes,
        began.elapsed().as_secs()
    );
    println!(
        "ring-cluster-merge nodes={} sides=2 apart_s={} formed_ms={} split_ms={} merge_ms={} \
         lookups={total} right={right} wrong=0 failed={failed} ring=ok",
        o.nodes,
        apart.as_secs(),
        ms(formed),
        ms(split_time),
        ms(merge)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use selfman_core::Rng;

    use super::{parse, swapped_fd, swapped_ring, victims};
    use crate::cli::default_fd;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').filter(|w| !w.is_empty()).map(String::from).collect()
    }

    #[test]
    fn victims_are_two_neighbours_and_never_three_in_a_row() {
        for n in 3..40usize {
            for k in 1..=(n - 1) / 2 {
                for seed in 0..5 {
                    let sorted: Vec<usize> = (0..n).collect();
                    let v = victims(&sorted, k, &mut Rng::seeded(seed));
                    let mut set = v.clone();
                    set.sort_unstable();
                    set.dedup();
                    assert_eq!(set.len(), k, "n {n} k {k}: {v:?}");
                    if k > 1 {
                        assert_eq!((v[0] + 1) % n, v[1], "n {n} k {k}: {v:?}");
                    }
                    let three = (0..n).any(|i| (0..3).all(|d| set.contains(&((i + d) % n))));
                    assert!(!three, "n {n} k {k}: {v:?}");
                }
            }
        }
    }

    #[test]
    fn options_are_checked() {
        assert_eq!(parse(&[]).unwrap().nodes, 10);
        for bad in [
            "--nodes 2",
            "--nodes x",
            "--kill 0",
            "--nodes 10 --kill 5",
            "--swap maybe",
            "--bogus 1",
            "--fd-timeout-ms 10",
            "--partition-s 0",
            "--partition-s 601",
            "--partition-s 10 --nodes 3",
            "--partition-s 10 --kill 1",
            "--partition-s 10 --swap no",
        ] {
            assert!(parse(&args(bad)).unwrap_err().starts_with("usage"), "{bad}");
        }
        assert!(!parse(&args("--swap no")).unwrap().swap);
        let p = parse(&args("--partition-s 40 --nodes 6")).unwrap();
        assert_eq!((p.partition, p.kill, p.swap), (Some(Duration::from_secs(40)), 0, false));
    }

    #[test]
    fn the_swap_targets_are_valid_and_differ() {
        let fd = swapped_fd(default_fd());
        fd.validate().unwrap();
        assert_ne!(fd, default_fd());
        let r = swapped_ring();
        let d = selfman_relaxed_ring::RingConfig::default();
        let new = selfman_relaxed_ring::RingConfig {
            k: r.k,
            stabilize: r.stabilize,
            succ_list_size: r.succ_list_size,
            ..d
        };
        new.validate().unwrap();
        assert_ne!(new, d);
    }
}
