//! Scenarios of **ring merge** (see [`crate::SCENARIOS`]): a relaxed ring partitioned into 2
//! to 5 groups (how many, and who is in which, drawn from the seed) for a while, each group
//! becoming a ring of its own, then healed: the rings must become **one** again by
//! themselves (`selfman_relaxed_ring`'s merge: the passive list, its probes, the walk).
//!
//! The nodes are wired as in the ring scenarios ([`build_ring_node`]: the heartbeat detector,
//! the ring over it, a user looking up a random key every 250 ms). Links lose 3 % until the
//! last fault ends (the heal, or the last churn event), nothing after. Checked in every run:
//!
//! * **lookup consistency** after every step **within each group** until the rings have
//!   merged (two rings own every key once each until the walk reaches it — the checker of
//!   [`RingHistory::observe`] runs per group; a merge changes ranges only by shrinking them,
//!   so no group ever sees a key owned twice), and **globally** from the instant the members
//!   form one ring on; excused overlaps (false suspicions) only for [`excuse_window`] each;
//! * **lookup correctness**: every `Found` named a peer that owned the key at some instant
//!   between the request and the answer; every lookup answered once;
//! * **merge within the bound**: at `quiet + ` [`merge_bound`] every member is in **one**
//!   ring (one cycle through every live peer, every successor and predecessor as the sorted
//!   order says, every range `(pred, self]`, successor lists right: `ring_convergence` over
//!   all members together) and stays so to the end; then every finger is live, and every
//!   lookup issued from then on is answered `Found` by the responsible peer.
//!
//! The scenarios: `merge` (24 members, 2–5 groups for 34 s: longer than suspects are
//! remembered, so only the passive list's probes can notice the heal), `merge-short` (the
//! same for 8 s: the failure detector's restores notice it), `merge-churn` (as `merge`, with
//! two crashes, two joins and one more crash during the merge). Broken twins, caught by the
//! merge bound: `merge-broken-off` (`MergeOff`) and `merge-broken-probe-once`
//! (`ProbeNeverRetried`).
//!
//! [`RingHistory::observe`]: crate::checkers::ring_history::RingHistory::observe

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use selfman_core::testkit::Log;
use selfman_core::{NodeAddr, Time};
use selfman_failure_detector::FdConfig;
use selfman_ports::ring_check::{dead_fingers, members, responsible, ring_convergence};
use selfman_ports::{Peer, RingId, RingStatus, RingView};
use selfman_relaxed_ring::{Flaw, RingConfig};
use selfman_sim::{Latency, LinkModel, Run, Scenario, SimConfig, SimHost, SimNetConfig};

use crate::checkers::ring_history::{show_time, LookupStats};
use crate::scenarios::nodes::{build_ring_node, RingBoard, RingWiring};
use crate::scenarios::ring::{
    convergence_bound, crash_random, excuse_window, finger_deadline, LATENCY_MAX,
};

/// Link delays: as the ring scenarios (1 ms plus an exponential extra of mean 4 ms).
const LATENCY: Latency = Latency::Exponential { base: ms(1), mean_extra: ms(4) };
/// Loss until the last fault ends.
const LOSS: f64 = 0.03;
/// Members of the merge scenarios.
const NODES: usize = 24;
/// When the network splits.
const SPLIT_AT: f64 = 6.0;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(s: f64) -> Time {
    Time::from_secs_f64(s)
}

// ANCHOR: merge_bound
/// How long after the last fault ends (the heal, or the last churn event) the members form
/// one ring, with detector `fd`, ring `ring` and links no slower than `latency_max`:
///
/// ```text
/// M = ring.probe_backoff_max + ring.probe_every       a passive entry is probed again (or,
///                                                      after a short partition, the detector
///                                                      restores a peer across it and the
///                                                      restore probes it at once)
///   + ring.lookup_timeout                              the probe is routed to the owner and
///                                                      answered; the notices spread
///   + B (convergence_bound)                            the walks (a few steps each), the
///                                                      crashes and joins of churn, and the
///                                                      check-ins that refresh the lists
/// ```
///
/// With the defaults (8 s, 1 s; 2 s; 6.28 s) that is 17.28 s.
pub fn merge_bound(fd: &FdConfig, ring: &RingConfig, latency_max: Duration) -> Duration {
    ring.probe_backoff_max
        + ring.probe_every
        + ring.lookup_timeout
        + convergence_bound(fd, ring, latency_max)
}
// ANCHOR_END: merge_bound

/// What a run of a merge scenario measured (see [`merge_report`]).
#[derive(Debug, Clone, Default)]
pub struct MergeProbe {
    /// How many groups the partition made.
    pub groups: usize,
    /// The groups' addresses.
    pub sides: Vec<BTreeSet<SocketAddr>>,
    /// Sides beyond the groups: sub-rings a group fell into (see `sub_rings`), each checked
    /// on its own until the merge.
    pub islands: usize,
    /// When the partition healed.
    pub heal_at: Time,
    /// When the last fault ended.
    pub quiet_at: Time,
    /// The merge bound ([`merge_bound`]).
    pub bound: Duration,
    /// The first instant (checked every 50 ms) at which the members formed one ring.
    pub merged: Option<Time>,
    /// The first instant at or after the bound at which the members formed one ring and every
    /// finger was live (lookups must be answered by the responsible peer from then on).
    pub fingers_live: Option<Time>,
    /// Nodes stranded outside (still joining when their access peer crashed).
    pub stranded: BTreeSet<NodeAddr>,
    /// Lookups issued from the strict window on (members at its start).
    pub strict: Vec<(Time, Time)>,
    /// The members at the start of the strict window.
    pub strict_members: Vec<BTreeMap<NodeAddr, RingView>>,
    /// What the lookups came to.
    pub lookups: LookupStats,
    /// Overlaps excused (false suspicions), and the longest.
    pub excused: (u64, Duration),
}

/// The members, without stranded nodes that are not in a ring.
fn without(
    views: &BTreeMap<NodeAddr, RingView>,
    excused: &BTreeSet<NodeAddr>,
) -> BTreeMap<NodeAddr, RingView> {
    let mut m = members(views);
    m.retain(|a, v| !excused.contains(a) || v.status == RingStatus::InRing);
    m
}

/// The groups split into the strongly connected components of the graph "`x` has `y` as its
/// successor, predecessor or a member of their lists" restricted to each group (suspected
/// peers left out): the rings each group is in. Peers not in a ring stay in their group.
fn sub_rings(
    views: &BTreeMap<NodeAddr, RingView>,
    groups: &[BTreeSet<SocketAddr>],
) -> Vec<BTreeSet<SocketAddr>> {
    let mut sides = Vec::new();
    for g in groups {
        let members: Vec<&RingView> = views
            .values()
            .filter(|v| v.status == RingStatus::InRing && g.contains(&v.me.addr.addr))
            .collect();
        let index: BTreeMap<SocketAddr, usize> =
            members.iter().enumerate().map(|(i, v)| (v.me.addr.addr, i)).collect();
        let n = members.len();
        let mut reach = vec![vec![false; n]; n];
        for (i, v) in members.iter().enumerate() {
            reach[i][i] = true;
            let near = v
                .succ
                .iter()
                .chain(v.pred.iter())
                .chain(v.succ_list.iter())
                .chain(v.pred_list.iter())
                .filter(|x| !v.crashed.contains(&x.addr));
            for x in near {
                if let Some(&j) = index.get(&x.addr.addr) {
                    reach[i][j] = true;
                }
            }
        }
        // Transitive closure (groups are small).
        for k in 0..n {
            let via = reach[k].clone();
            for row in reach.iter_mut().filter(|row| row[k]) {
                for (x, r) in row.iter_mut().zip(&via) {
                    *x |= *r;
                }
            }
        }
        let mut rest = g.clone();
        let mut done = vec![false; n];
        let mut comps: Vec<BTreeSet<SocketAddr>> = Vec::new();
        for i in 0..n {
            if done[i] {
                continue;
            }
            let comp: BTreeSet<SocketAddr> = (0..n)
                .filter(|&j| reach[i][j] && reach[j][i])
                .map(|j| {
                    done[j] = true;
                    members[j].me.addr.addr
                })
                .collect();
            comps.push(comp);
        }
        // The largest component keeps the group's other addresses (joiners, stranded).
        comps.sort_by_key(|c| std::cmp::Reverse(c.len()));
        for c in comps.iter().skip(1) {
            for a in c {
                rest.remove(a);
            }
        }
        sides.push(rest);
        sides.extend(comps.into_iter().skip(1));
    }
    sides
}

/// The first complaints of a checker, and how many there were.
fn shorten(errors: &[String]) -> String {
    let first: Vec<&str> = errors.iter().take(3).map(String::as_str).collect();
    format!("{} ({} complaints in all)", first.join("; "), errors.len())
}

/// Splits the running nodes into 2 to 5 groups drawn from the seed (a shuffle dealt round
/// robin, so each group is spread over the circle and at least 4 strong).
fn split(run: &mut Run<'_>) -> Vec<Vec<NodeAddr>> {
    let mut nodes = run.sim.alive_nodes();
    for i in (1..nodes.len()).rev() {
        let j = run.rng.below(i as u64 + 1) as usize;
        nodes.swap(i, j);
    }
    let g = 2 + run.rng.below(4) as usize;
    let mut groups = vec![Vec::new(); g];
    for (i, n) in nodes.into_iter().enumerate() {
        groups[i % g].push(n);
    }
    groups
}

/// A merge scenario: `NODES` join one every 100 ms, split at [`SPLIT_AT`] for `apart`
/// seconds, healed; with `churn`, two crash 0.5 s after the heal, two join at 1 s, one more
/// crashes at 1.5 s.
fn merge_scenario(
    name: &str,
    flaw: Option<Flaw>,
    apart: f64,
    churn: bool,
) -> (Scenario, RingBoard, Log<MergeProbe>) {
    let wiring = RingWiring {
        ring: RingConfig::default(),
        chord: None,
        fd: FdConfig::default(),
        flaw,
        auto_join: true,
        lookup_every: ms(250),
    };
    let config = SimConfig {
        network: SimNetConfig {
            default_link: LinkModel { latency: LATENCY, loss: LOSS },
            ..SimNetConfig::default()
        },
        ..SimConfig::default()
    };
    let board = RingBoard::default();
    let probe: Log<MergeProbe> = Log::default();
    let build = {
        let (w, b) = (wiring, board.clone());
        move |h: &SimHost| build_ring_node(h, w, &b)
    };
    let mut s = Scenario::new(name).config(config);
    for i in 0..NODES {
        s = s.start_nodes(secs(0.1 * i as f64), 1, build.clone());
    }
    let heal = SPLIT_AT + apart;
    let quiet = if churn { heal + 1.5 } else { heal };
    let (heal_at, quiet_at) = (secs(heal), secs(quiet));
    let bound = merge_bound(&wiring.fd, &wiring.ring, LATENCY_MAX);
    let merge_at = quiet_at + bound;
    probe.with(|p| {
        p.heal_at = heal_at;
        p.quiet_at = quiet_at;
        p.bound = bound;
    });
    let window = excuse_window(&wiring.fd, &wiring.ring, Duration::ZERO, LATENCY_MAX);
    let l = wiring.ring.succ_list_size;
    let stranded = {
        let (b, p) = (board.clone(), probe.clone());
        move || -> BTreeSet<NodeAddr> {
            p.lock().stranded.iter().chain(b.stranded().iter()).copied().collect()
        }
    };

    let (b, p) = (board.clone(), probe.clone());
    s = s.at(secs(SPLIT_AT), "partition into groups", move |run| {
        let groups = split(run);
        run.sim.partition(&groups);
        let sides: Vec<BTreeSet<SocketAddr>> =
            groups.iter().map(|g| g.iter().map(|n| n.addr).collect()).collect();
        b.history.with(|h| h.set_sides(sides.clone()));
        let joining: Vec<NodeAddr> = b
            .snapshot()
            .values()
            .filter(|v| v.status != RingStatus::InRing)
            .map(|v| v.me.addr)
            .collect();
        p.with(|p| {
            p.groups = groups.len();
            p.sides = sides;
            p.stranded.extend(joining);
        });
        Ok(())
    });
    // Sub-rings: a partition into small groups can leave a group in several rings — peers
    // whose neighbours (successor, predecessor, their lists) all lie on other sides, once
    // those are suspected, end up in a ring of their own (alone, or with the few group mates
    // they know), and the rest of the group cannot know of them either. Like two sides,
    // they are not required to agree until they merge: each strongly connected component of
    // "x has y as a neighbour" within a group is checked on its own, picked once the
    // crashes across are suspected (the detector's longest timeout after the split, and a
    // check-in).
    let (b, p) = (board.clone(), probe.clone());
    s = s.at(secs(SPLIT_AT + 3.0), "sub-rings get sides of their own", move |_run| {
        let views = b.snapshot();
        let groups = p.lock().sides.clone();
        let sides = sub_rings(&views, &groups);
        let extra = sides.len() - groups.len();
        b.history.with(|h| h.set_sides(sides));
        p.with(|p| p.islands = extra);
        Ok(())
    });
    s = s.at(heal_at, "heal", |run| {
        run.sim.heal();
        Ok(())
    });
    if churn {
        let b = board.clone();
        s = s.at(heal_at + ms(500), "two members crash", move |run| crash_random(run, &b, 2, 4));
        s = s.start_nodes(heal_at + ms(1000), 2, build.clone());
        let b = board.clone();
        s = s.at(quiet_at, "one more member crashes", move |run| crash_random(run, &b, 1, 4));
    }
    s = s.at(quiet_at, "quiet: links lose nothing any more", |run| {
        run.sim.set_default_link(LinkModel { latency: LATENCY, loss: 0.0 });
        Ok(())
    });

    let b = board.clone();
    s = s.check_always("lookup consistency and correctness", move |sim| {
        let (live, changed) = b.observe();
        let now = sim.now();
        b.history.with(|h| {
            if changed || h.overlapping() {
                h.observe(now, &live, |n| b.suspects(n), |n| b.succ_of(n), window)?;
            }
            h.check_answers()
        })
    });

    // Every 50 ms from the heal: when the members formed one ring (then consistency is
    // checked over all of them), when every finger was live (then lookups must be answered
    // by the responsible peer), and that it stays so.
    let end = merge_at + bound * 2;
    let mut t = heal_at;
    while t <= end {
        let (b, p, excused) = (board.clone(), probe.clone(), stranded.clone());
        s = s.check_at(t, "merge probe", move |sim| {
            let now = sim.now();
            let m = without(&b.snapshot(), &excused());
            let ring_errors = ring_convergence(&m, l);
            let (merged, fingers) = {
                let p = p.lock();
                (p.merged, p.fingers_live)
            };
            if ring_errors.is_empty() {
                if merged.is_none() {
                    // One ring: one group for the consistency checker from now on.
                    b.history.with(|h| h.set_sides(Vec::new()));
                    p.with(|p| p.merged = Some(now));
                }
            } else if merged.is_some() && now >= merge_at {
                return Err(format!(
                    "merge: the members had formed one ring, and at {} no longer do: {}",
                    show_time(now),
                    shorten(&ring_errors)
                ));
            }
            // Strict from the bound on (as in the ring scenarios): before it a stale merge
            // message may still move a pointer of a ring that had converged for an instant.
            let due = now >= merge_at;
            if due && ring_errors.is_empty() && fingers.is_none() && dead_fingers(&m).is_empty() {
                p.with(|p| {
                    p.fingers_live = Some(now);
                    p.strict.push((now, Time(u64::MAX)));
                    p.strict_members.push(m.clone());
                });
            }
            Ok(())
        });
        t = t + ms(50);
    }

    let (b, p, excused) = (board.clone(), probe.clone(), stranded.clone());
    s = s.check_at(merge_at, "merge within the bound", move |sim| {
        let m = without(&b.snapshot(), &excused());
        let errors = ring_convergence(&m, l);
        if !errors.is_empty() {
            let groups = p.lock().groups;
            return Err(format!(
                "merge: {:.3}s after the last fault (at {}), the {} members of {groups} rings \
                 do not form one ring: {}",
                bound.as_secs_f64(),
                show_time(quiet_at),
                m.len(),
                shorten(&errors)
            ));
        }
        let _ = sim;
        Ok(())
    });
    let timeout = wiring.ring.lookup_timeout;
    let p = probe.clone();
    let ring_cfg = wiring.ring;
    let (b, p2, excused) = (board.clone(), probe.clone(), stranded.clone());
    s = s
        .stop_when(move |sim| {
            let p = p.lock();
            match p.strict.first() {
                Some((t, _)) if sim.now() >= *t + timeout * 2 => Ok(()),
                _ => Err(String::new()),
            }
        })
        .check_at_end("one ring and lookups at the end", move |sim| {
            let m = without(&b.snapshot(), &excused());
            let mut errors = ring_convergence(&m, l);
            if errors.is_empty() {
                // Fingers: every one live by its deadline after the merge.
                let merged = p2.lock().merged.unwrap_or(sim.now());
                let due = m.values().map(|v| finger_deadline(v, &ring_cfg, merged)).max();
                if due.is_some_and(|d| sim.now() >= d) {
                    errors.extend(dead_fingers(&m));
                }
            }
            if !errors.is_empty() {
                return Err(format!("merge: at the end: {}", shorten(&errors)));
            }
            let (strict, strict_members) = {
                let p = p2.lock();
                (p.strict.clone(), p.strict_members.clone())
            };
            if strict.is_empty() {
                return Err("merge: the fingers never all became live".into());
            }
            // Who must answer: the responsible peer among the members when the window began
            // (a node outside the ring then — stranded — is not asked to).
            let resp = |node: NodeAddr, key: RingId, at: Time| -> Option<Peer> {
                let w = strict.iter().position(|(f, t)| *f <= at && at < *t)?;
                let m = strict_members.get(w).filter(|m| m.contains_key(&node))?;
                responsible(m, key)
            };
            let running: BTreeSet<NodeAddr> = sim.alive_nodes().into_iter().collect();
            let stats = b
                .history
                .with(|h| h.check_lookups(sim.now(), &running, timeout, &strict, &resp))?;
            let excused = b.history.with(|h| (h.excused(), h.longest_excused(sim.now())));
            p2.with(|p| {
                p.lookups = stats;
                p.excused = excused;
            });
            if stats.after_convergence == 0 {
                return Err("the run exercised too little: no lookup after the merge".into());
            }
            Ok(())
        })
        .until(end);
    (s, board, probe)
}

/// How long the plain and churn scenarios keep the groups apart: longer than
/// `forget_suspected` (30 s), so the failure detector has stopped watching the peers across
/// and only the passive list's probes can notice the heal.
const APART_LONG: f64 = 34.0;
/// How long `merge-short` keeps them apart: the suspects are still watched.
const APART_SHORT: f64 = 8.0;

/// See [`crate::SCENARIOS`].
pub fn merge() -> Scenario {
    merge_scenario("merge", None, APART_LONG, false).0
}

/// See [`crate::SCENARIOS`].
pub fn merge_short() -> Scenario {
    merge_scenario("merge-short", None, APART_SHORT, false).0
}

/// See [`crate::SCENARIOS`].
pub fn merge_churn() -> Scenario {
    merge_scenario("merge-churn", None, APART_LONG, true).0
}

/// See [`crate::SCENARIOS`].
pub fn merge_broken_off() -> Scenario {
    merge_scenario("merge-broken-off", Some(Flaw::MergeOff), APART_LONG, false).0
}

/// See [`crate::SCENARIOS`].
pub fn merge_broken_probe_once() -> Scenario {
    merge_scenario("merge-broken-probe-once", Some(Flaw::ProbeNeverRetried), APART_LONG, false).0
}

/// Runs merge scenario `name` with `seed` and reports what it measured; `None` for another
/// name.
pub fn merge_report(name: &str, seed: u64) -> Option<(selfman_sim::Outcome, MergeProbe)> {
    let (s, _board, probe) = match name {
        "merge" => merge_scenario(name, None, APART_LONG, false),
        "merge-short" => merge_scenario(name, None, APART_SHORT, false),
        "merge-churn" => merge_scenario(name, None, APART_LONG, true),
        "merge-broken-off" => merge_scenario(name, Some(Flaw::MergeOff), APART_LONG, false),
        "merge-broken-probe-once" => {
            merge_scenario(name, Some(Flaw::ProbeNeverRetried), APART_LONG, false)
        }
        _ => return None,
    };
    let out = s.run_quiet(seed);
    let p = probe.lock().clone();
    Some((out, p))
}
