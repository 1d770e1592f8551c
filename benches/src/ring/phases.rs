//! The measures of the ring benchmark, one function each, run one after another on one
//! [`World`]: convergence after the build, maintenance traffic, lookups, churn (simulator
//! speed), and healing after a mass crash. Each returns what it measured; `mod.rs` prints it.
//!
//! The properties are judged by the shared ring checkers of `selfman-tests`
//! ([`overlap`]: lookup consistency; [`convergence`]: one ring; [`responsible`]: who must
//! answer a lookup), the same code the simulation suites run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use selfman::core::Time;
use selfman::sim::address_of;
use selfman::{NodeAddr, NodeId};
use selfman_ports::ring_check::{convergence, overlap, overreaches, responsible};
use selfman_ports::{LookupOutcome, Peer, RingId, RingRequest, RingStatus, RingView, Unavailable};

use super::world::World;

/// Waits until the live peers form one ring, checking every `every`, for at most `limit`.
/// Returns the virtual time it took, or the checker's complaints (how many, and the first)
/// when the limit passed.
pub(crate) fn converge(
    w: &mut World,
    every: Duration,
    limit: Duration,
) -> Result<Duration, (usize, String)> {
    let start = w.sim.now();
    loop {
        w.rejoin_refused().map_err(|e| (1, e))?;
        let views = w.snapshot();
        let errors = convergence(&views, w.imp.succ_list_size());
        if errors.is_empty() {
            return Ok(w.sim.now().duration_since(start));
        }
        if w.sim.now().duration_since(start) >= limit {
            return Err((errors.len(), diagnose(&errors, &views)));
        }
        w.sim.run_for(every);
    }
}

/// The first complaint, with what the benchmark can tell about why the ring has not
/// converged: peers still joining, and fingers to crashed peers by where they lie.
fn diagnose(errors: &[String], views: &BTreeMap<NodeAddr, RingView>) -> String {
    let joining = views.values().filter(|v| v.status == RingStatus::Joining).count();
    let (near, far) = dead_fingers(views);
    format!(
        "{} ({joining} live peers still joining; fingers to crashed peers: {near} nearer than \
         their holder's successor, {far} beyond it)",
        errors.first().map_or("", String::as_str)
    )
}

/// Fingers to peers that are not live, counted by where they lie: nearer than their holder's
/// successor (no finger refresh reaches them and routing never picks them over the
/// successor), or beyond it.
pub(crate) fn dead_fingers(views: &BTreeMap<NodeAddr, RingView>) -> (usize, usize) {
    let (mut near, mut far) = (0, 0);
    for v in views.values() {
        let Some(succ) = v.succ else { continue };
        let ds = succ.id.distance_from(v.me.id);
        for f in &v.fingers {
            if views.get(&f.addr).is_some_and(|l| l.me == *f) {
                continue;
            }
            if f.id.distance_from(v.me.id) < ds {
                near += 1;
            } else {
                far += 1;
            }
        }
    }
    (near, far)
}

/// Messages sent per live node per virtual second over `window`, by protocol.
pub(crate) struct Traffic {
    pub(crate) ring: f64,
    pub(crate) fd: f64,
}

pub(crate) fn maintenance(w: &World, window: Duration) -> Traffic {
    w.shared.sent.take();
    w.sim.run_for(window);
    let (ring, fd) = w.shared.sent.take();
    let per = (w.sim.alive_nodes().len() as f64) * window.as_secs_f64();
    Traffic { ring: ring as f64 / per, fd: fd as f64 / per }
}

/// What the lookups found.
pub(crate) struct Lookups {
    pub(crate) issued: u64,
    pub(crate) found: u64,
    /// Answered `Found` by a peer that is not the responsible one (must be 0).
    pub(crate) wrong: u64,
    pub(crate) unavailable: u64,
    pub(crate) timeout: u64,
    pub(crate) unanswered: u64,
    pub(crate) mean_hops: f64,
    pub(crate) p99_hops: u32,
    pub(crate) max_hops: u32,
}

/// Issues `n` lookups of random keys from random members, spread evenly over `over`, waits
/// for their answers (at most two lookup timeouts after the last), and judges every `Found`
/// against the responsible peer of the final views (the ring does not change meanwhile).
pub(crate) fn lookups(w: &mut World, n: u64, over: Duration) -> Result<Lookups, String> {
    w.shared.answers.lock().map_err(|_| "answers poisoned")?.clear();
    let batches = 100u64.min(n.max(1));
    let mut tag = 0;
    for b in 0..batches {
        let upto = n * (b + 1) / batches;
        while tag < upto {
            let from = w.random_member();
            let key = RingId(w.rng.next_u64());
            w.request(from, RingRequest::Lookup { key, tag })?;
            tag += 1;
        }
        w.sim.run_for(over / batches as u32);
    }
    let deadline = w.sim.now() + 2 * w.imp.lookup_timeout();
    while (w.shared.answers.lock().map_err(|_| "answers poisoned")?.len() as u64) < n
        && w.sim.now() < deadline
    {
        w.sim.run_for(Duration::from_millis(100));
    }
    let views = w.snapshot();
    let answers = std::mem::take(&mut *w.shared.answers.lock().map_err(|_| "answers poisoned")?);
    let mut seen = vec![false; n as usize];
    let mut hops = Vec::with_capacity(n as usize);
    let (mut wrong, mut unavailable, mut timeout) = (0, 0, 0);
    for a in &answers {
        match seen.get_mut(a.tag as usize) {
            Some(s) if !*s => *s = true,
            _ => return Err(format!("lookup {} answered twice or never asked", a.tag)),
        }
        match a.outcome {
            LookupOutcome::Found { peer, hops: h } => {
                if responsible(&views, a.key) != Some(peer) {
                    wrong += 1;
                }
                hops.push(h);
            }
            LookupOutcome::Unavailable(Unavailable::Timeout) => timeout += 1,
            LookupOutcome::Unavailable(_) => unavailable += 1,
        }
    }
    hops.sort_unstable();
    let found = hops.len() as u64;
    let mean_hops = hops.iter().map(|&h| f64::from(h)).sum::<f64>() / found.max(1) as f64;
    Ok(Lookups {
        issued: n,
        found,
        wrong,
        unavailable,
        timeout,
        unanswered: n - answers.len() as u64,
        mean_hops,
        p99_hops: percentile(&hops, 0.99),
        max_hops: hops.last().copied().unwrap_or(0),
    })
}

/// The smallest value that at least a fraction `p` of `sorted` is at or below.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Lookup-consistency checks made and failed.
#[derive(Default)]
pub(crate) struct Consistency {
    pub(crate) checks: u64,
    pub(crate) violations: u64,
    /// The first violation: when, and what the checker said.
    pub(crate) first: Option<(Time, String)>,
}

impl Consistency {
    fn check(&mut self, now: Time, views: &BTreeMap<NodeAddr, RingView>) {
        self.checks += 1;
        if let Some(o) = overlap(views) {
            self.violations += 1;
            self.first.get_or_insert((now, o.to_string()));
        }
    }
}

/// How the ring healed after a mass crash.
pub(crate) struct Heal {
    pub(crate) killed: usize,
    /// Virtual time from the crash until the live peers formed one ring again: pointers,
    /// ranges and successor lists as the sorted order says (`None`: not within the limit).
    pub(crate) ring: Option<Duration>,
    /// Until, in addition, no finger pointed at a crashed peer.
    pub(crate) fingers: Option<Duration>,
    pub(crate) consistency: Consistency,
    /// If not healed within the limit: how many complaints the convergence checker still had,
    /// and the first.
    pub(crate) left: Option<(usize, String)>,
}

/// The convergence checker's complaints about the ring's structure only: the same views with
/// their fingers left out (a finger to a crashed peer costs a routing detour, not
/// consistency).
fn structure_complaints(views: &BTreeMap<NodeAddr, RingView>, succ_list: usize) -> Vec<String> {
    let bare: BTreeMap<NodeAddr, RingView> =
        views.iter().map(|(a, v)| (*a, RingView { fingers: Vec::new(), ..v.clone() })).collect();
    convergence(&bare, succ_list)
}

/// Crashes `killed` random members at one instant, then checks lookup consistency and
/// convergence every `every` until the ring has healed, fingers included (or `limit`
/// passed). With `trace`, prints the complaints every 500 ms of virtual time.
pub(crate) fn heal(
    w: &mut World,
    killed: usize,
    every: Duration,
    limit: Duration,
    trace: bool,
) -> Heal {
    let mut victims = Vec::with_capacity(killed);
    while victims.len() < killed.min(w.members.len().saturating_sub(1)) {
        let i = w.rng.below(w.members.len() as u64) as usize;
        victims.push(w.members.swap_remove(i));
    }
    let slots = w.sim.node_slots();
    for &v in &victims {
        if let Some(node) = slots[v].1 {
            let _ = w.sim.crash(node);
        }
    }
    let t0 = w.sim.now();
    let succ_list = w.imp.succ_list_size();
    let mut h = Heal {
        killed: victims.len(),
        ring: None,
        fingers: None,
        consistency: Consistency::default(),
        left: None,
    };
    loop {
        w.sim.run_for(every);
        let views = w.snapshot();
        h.consistency.check(w.sim.now(), &views);
        let took = w.sim.now().duration_since(t0);
        let all = convergence(&views, succ_list);
        if h.ring.is_none()
            && (all.is_empty() || structure_complaints(&views, succ_list).is_empty())
        {
            h.ring = Some(took);
        }
        if trace && (h.ring.is_none() || took.as_millis() % 500 < every.as_millis()) {
            let structure = structure_complaints(&views, succ_list);
            eprintln!(
                "heal +{}ms: {} complaints, {} about the ring's structure; first: {:?}",
                took.as_millis(),
                all.len(),
                structure.len(),
                structure.first().or(all.first())
            );
        }
        if all.is_empty() {
            h.fingers = Some(took);
            return h;
        }
        if took >= limit {
            if trace {
                for e in &all {
                    eprintln!("  {e}");
                }
            }
            h.left = Some((all.len(), diagnose(&all, &views)));
            return h;
        }
    }
}

/// A churn run: how long the simulator took, and what happened.
pub(crate) struct Churn {
    pub(crate) crashes: u64,
    pub(crate) joins: u64,
    pub(crate) wall: Duration,
    pub(crate) deliveries: u64,
    pub(crate) consistency: Consistency,
    /// After the churn stopped: virtual time until every joiner was in and the live peers
    /// formed one converged ring, fingers included (`Err`: not within the limit, with the
    /// complaints left and the first).
    pub(crate) settled: Result<Duration, (usize, String)>,
}

/// `duration` of churn: `rate` times per virtual second a random member crashes and a node
/// crashed at least `rejoin_after` earlier restarts (a new incarnation, a new identifier)
/// and joins through a random member. Lookup consistency is checked every `check`; the wall
/// time counts the simulation only, not the checks. Then waits (at most `settle_limit`) for
/// the ring to converge. With `protect_access`, members that are the access peer of a joiner
/// not yet in are not crashed.
pub(crate) fn churn(
    w: &mut World,
    duration: Duration,
    rate: u64,
    rejoin_after: Duration,
    check: Duration,
    settle_limit: Duration,
    protect_access: bool,
) -> Result<Churn, String> {
    let start = w.sim.now();
    let end = start + duration;
    let gap = Duration::from_secs(1) / rate.max(1) as u32;
    let mut down: std::collections::VecDeque<(usize, Time)> = Default::default();
    // Joiners not in yet, with their access peer. With `protect_access`, an access peer is
    // not crashed while its joiner waits (a joiner whose access peer crashed before anyone
    // answered it gives up only after `JOIN_GIVE_UP` join timeouts, and is then asked to
    // join again through another member).
    let mut pending: Vec<(usize, usize)> = Vec::new();
    let mut consistency = Consistency::default();
    let (mut crashes, mut joins) = (0, 0);
    let mut wall = Duration::ZERO;
    let delivered = w.sim.net_stats().delivered;
    let mut next_event = start + gap;
    let mut next_check = start + check;
    while w.sim.now() < end {
        let t = next_event.min(next_check).min(end);
        let clock = Instant::now();
        w.sim.run_until(t);
        let before = w.members.len();
        w.take_joined();
        let joined = w.members[before..].to_vec();
        pending.retain(|(j, _)| !joined.contains(j));
        for (slot, access) in w.rejoin_refused()? {
            pending.retain(|(j, _)| *j != slot);
            pending.push((slot, access));
        }
        if t == next_event {
            next_event = t + gap;
            let i = w.rng.below(w.members.len() as u64) as usize;
            let busy = protect_access && pending.iter().any(|&(_, a)| a == w.members[i]);
            if w.members.len() > 1 && !busy {
                let victim = w.members.swap_remove(i);
                if let Some(node) = w.sim.node_slots()[victim].1 {
                    w.sim.crash(node).map_err(|e| e.to_string())?;
                    crashes += 1;
                    down.push_back((victim, t));
                }
            }
            if down.front().is_some_and(|&(_, at)| t.duration_since(at) >= rejoin_after) {
                if let Some((slot, _)) = down.pop_front() {
                    let addr = NodeAddr::new(address_of(slot), NodeId::UNKNOWN);
                    w.sim.restart(addr).map_err(|e| e.to_string())?;
                    pending.push((slot, w.join_random(slot)?));
                    joins += 1;
                }
            }
        }
        wall += clock.elapsed();
        if t == next_check {
            next_check = t + check;
            consistency.check(t, &w.snapshot());
        }
    }
    let deliveries = w.sim.net_stats().delivered - delivered;
    let stop = w.sim.now();
    let settled = converge(w, Duration::from_millis(250), settle_limit)
        .map(|_| w.sim.now().duration_since(stop));
    w.take_joined();
    Ok(Churn { crashes, joins, wall, deliveries, consistency, settled })
}

/// What `joins` concurrent joins did to lookup consistency.
pub(crate) struct Joins {
    pub(crate) joins: usize,
    /// Virtual time from the joins until every joiner was told `Joined`.
    pub(crate) joined: Option<Duration>,
    /// Until the live peers formed one ring (structure: pointers, ranges, successor lists).
    pub(crate) converged: Option<Duration>,
    pub(crate) checks: u64,
    /// Checks that found two live peers owning one key.
    pub(crate) violating_checks: u64,
    /// Overlap episodes: a pair (owner, owner whose identifier its range holds) from the first
    /// check that sees it to the first that does not.
    pub(crate) episodes: u64,
    /// The longest episode (to the check that saw it end, or to the end of the phase).
    pub(crate) longest: Duration,
    /// The sum of the episodes' lengths.
    pub(crate) total: Duration,
    /// The most overlapping pairs one check saw.
    pub(crate) max_pairs: usize,
    /// The first violation: when (from the joins), and what the checker said.
    pub(crate) first: Option<(Duration, String)>,
}

/// Every pair (owner, owner whose identifier its range holds) among the live peers now.
fn overlapping_pairs(views: &BTreeMap<NodeAddr, RingView>) -> Vec<(Peer, Peer)> {
    let owners: Vec<_> = views.values().filter_map(|v| v.range.map(|r| (v.me, r))).collect();
    overreaches(&owners)
        .into_iter()
        .flat_map(|o| o.covered.into_iter().map(move |(c, _)| (o.peer, c)))
        .collect()
}

/// `joins` new nodes join at one instant, each through a random member; every `every`,
/// until the ring has converged again (or `limit` passed), the live peers' ranges are
/// checked for overlaps, each overlapping pair timed as an episode.
pub(crate) fn joins(
    w: &mut World,
    joins: usize,
    every: Duration,
    limit: Duration,
) -> Result<Joins, String> {
    w.take_joined();
    let target = w.members.len() + joins;
    for _ in 0..joins {
        let slot = w.add_node()?;
        w.join_random(slot)?;
    }
    let t0 = w.sim.now();
    let mut j = Joins {
        joins,
        joined: None,
        converged: None,
        checks: 0,
        violating_checks: 0,
        episodes: 0,
        longest: Duration::ZERO,
        total: Duration::ZERO,
        max_pairs: 0,
        first: None,
    };
    let mut open: BTreeMap<(Peer, Peer), Duration> = BTreeMap::new();
    let succ_list = w.imp.succ_list_size();
    loop {
        w.sim.run_for(every);
        w.take_joined();
        w.rejoin_refused()?;
        let took = w.sim.now().duration_since(t0);
        if j.joined.is_none() && w.members.len() >= target {
            j.joined = Some(took);
        }
        let views = w.snapshot();
        j.checks += 1;
        let pairs = overlapping_pairs(&views);
        if !pairs.is_empty() {
            j.violating_checks += 1;
            j.max_pairs = j.max_pairs.max(pairs.len());
            if j.first.is_none() {
                j.first = overlap(&views).map(|o| (took, o.to_string()));
            }
        }
        let now: std::collections::BTreeSet<(Peer, Peer)> = pairs.into_iter().collect();
        open.retain(|pair, since| {
            if now.contains(pair) {
                return true;
            }
            let d = took - *since;
            j.episodes += 1;
            j.total += d;
            j.longest = j.longest.max(d);
            false
        });
        for pair in now {
            open.entry(pair).or_insert(took);
        }
        let done = j.joined.is_some() && structure_complaints(&views, succ_list).is_empty();
        if done || took >= limit {
            if done {
                j.converged = Some(took);
            }
            for since in open.into_values() {
                let d = took - since;
                j.episodes += 1;
                j.total += d;
                j.longest = j.longest.max(d);
            }
            return Ok(j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{overlapping_pairs, percentile};
    use selfman::sim::address_of;
    use selfman::{NodeAddr, NodeId};
    use selfman_ports::{Peer, Range, RingId, RingStatus, RingView};
    use std::collections::BTreeMap;

    fn owner(id: u64, from: u64) -> (NodeAddr, RingView) {
        let me = Peer::new(RingId(id), NodeAddr::new(address_of(id as usize), NodeId(id)));
        let v = RingView {
            me,
            status: RingStatus::InRing,
            range: Some(Range::new(RingId(from), RingId(id))),
            succ: None,
            pred: None,
            succ_list: Vec::new(),
            pred_list: Vec::new(),
            fingers: Vec::new(),
            crashed: Vec::new(),
        };
        (me.addr, v)
    }

    #[test]
    fn overlapping_pairs_name_every_owner_a_range_holds() {
        // 10, 20, 30, 40 partition the circle: no pair.
        let ok: BTreeMap<_, _> =
            [owner(10, 40), owner(20, 10), owner(30, 20), owner(40, 30)].into_iter().collect();
        assert!(overlapping_pairs(&ok).is_empty());
        // 40 still claims back to 10 (a joiner 20 and 30 it has not heard of): two pairs.
        let bad: BTreeMap<_, _> =
            [owner(10, 40), owner(20, 10), owner(30, 20), owner(40, 10)].into_iter().collect();
        let pairs: Vec<(u64, u64)> =
            overlapping_pairs(&bad).into_iter().map(|(a, b)| (a.id.0, b.id.0)).collect();
        assert_eq!(pairs, vec![(40, 30), (40, 20)]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.99), 0);
        // 99 values at 3 and one at 9: the 99th percentile is still 3.
        let mut w = vec![3u32; 99];
        w.push(9);
        assert_eq!(percentile(&w, 0.99), 3);
    }
}
