//! Checkers of a ring overlay over a whole run: the range every peer owned at every instant,
//! the lookups its users issued and what they were told. Like [`selfman_ports::ring_check`],
//! they know nothing of the implementation; a scenario feeds them from its global view after
//! every step ([`RingHistory::observe`]) and from the users' recorders
//! ([`RingHistory::issued`], [`RingHistory::answered`]).
//!
//! * **Lookup consistency, every step** ([`RingHistory::observe`]): no live owner's range holds
//!   another live owner's identifier. One exception, the one the `Ring` port documents: a peer
//!   that *falsely suspects* a peer may take its range over until the suspicion is corrected.
//!   An overlap is excused only while the peer that reaches too far still suspects a live peer
//!   within its own range (a range grows only over suspected peers: it grew over that one, and
//!   whatever it covers beyond may stem from it — peers that joined meanwhile included). And
//!   one the relaxed-ring papers document: a **crashed branch root** — the covered owner's
//!   successor is a peer the overreaching one suspects and took over (the owner joined under it
//!   just before it crashed, unknown to the others, and fixes its way in once it suspects it
//!   too). Each pair of peers is excused only for `window` (a bound the scenario derives from
//!   the failure detector and the links); an overlap that nothing explains, or that outlasts
//!   the window, is a violation. Excused overlaps are
//!   counted and timed ([`RingHistory::excused`], [`RingHistory::longest_excused`]). With
//!   partitions ([`RingHistory::set_sides`]) the check runs within each side: peers of two
//!   sides cannot know of each other, and each side is its own ring until a merge.
//! * **Lookup correctness** ([`RingHistory::check_lookups`]): every answer is to a lookup that
//!   was issued, at most one per lookup, and every lookup of a peer still running is answered
//!   within the timeout. A `Found` names a peer that owned the key at some instant between the
//!   request and the answer (the instant it answered is one of them) — never a wrong peer that
//!   answers; otherwise the answer is `Unavailable`. Lookups issued after the ring converged
//!   must all be `Found`, naming exactly the peer [`responsible`](selfman_ports::ring_check::responsible) for
//!   the key.
//!
//! **Measuring instead of failing** ([`RingHistory::measure_only`]): an overlay that does not
//! promise lookup consistency (Chord during joins and failures) is run through the same checks
//! with violations of the two properties above counted and timed ([`Violations`]) instead of
//! failing the run — every overlap counts, whether a suspicion explains it or not; the lookups after convergence must still be answered by the responsible
//! peer, and the run must still converge.
//!
//! The range history is kept per incarnation as a list of changes, so the question "did `p` own
//! `k` at some instant of `[t0, t1]`" looks at the range in force just before `t0` and every
//! change up to `t1`. The views are read between steps, so a range held only within one
//! instant (changed twice in it) is not seen there; the ranges a peer's ring tells its user
//! ([`RingHistory::held`]) fill those in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{LookupOutcome, Peer, Range, RingId, Unavailable};

use selfman_ports::ring_check::overreaches;

/// A lookup a user issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    /// The key.
    pub key: RingId,
    /// When.
    pub at: Time,
}

/// An answer a user was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The user's node.
    pub node: NodeAddr,
    /// The lookup's tag.
    pub tag: u64,
    /// The key answered for.
    pub key: RingId,
    /// What it was told.
    pub outcome: LookupOutcome,
    /// When.
    pub at: Time,
}

/// What a run's lookups came to ([`RingHistory::check_lookups`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Lookups issued.
    pub issued: u64,
    /// Answered `Found` (by a peer that owned the key then).
    pub found: u64,
    /// Answered `Unavailable(NotInRing)`: asked of a peer that was not in a ring.
    pub not_in_ring: u64,
    /// Answered `Unavailable(RangeUnavailable)`.
    pub unavailable: u64,
    /// Answered `Unavailable(Timeout)`.
    pub timed_out: u64,
    /// Issued after convergence (each answered by the responsible peer).
    pub after_convergence: u64,
    /// Total hops of the lookups issued after convergence.
    pub hops_after_convergence: u64,
    /// Most hops of a lookup issued after convergence.
    pub max_hops_after_convergence: u32,
}

/// Violations of lookup consistency and correctness counted by a history in
/// [`measure_only`](RingHistory::measure_only) mode (in the strict mode each fails the run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Violations {
    /// Episodes of an overlap nothing explains: a pair (the peer reaching too far, the owner
    /// it covers), counted once per episode.
    pub overlaps: u64,
    /// The longest such episode that has ended, and those in progress when asked.
    pub longest: Duration,
    /// All episodes' durations added up (ended ones).
    pub total: Duration,
    /// `Found` answers naming a peer that did not own the key at any instant between the
    /// request and the answer.
    pub wrong_answers: u64,
}

/// A run's record of who owned what when, and of its lookups (see the module documentation).
#[derive(Debug, Default)]
pub struct RingHistory {
    /// Count violations instead of failing ([`RingHistory::measure_only`]).
    measure: bool,
    /// Unexplained overlaps in progress (measure mode): pair → since when.
    violating: BTreeMap<(NodeAddr, NodeAddr), Time>,
    violations: Violations,
    /// Range changes per incarnation, in time order: (since, range).
    ranges: BTreeMap<NodeAddr, Vec<(Time, Option<Range>)>>,
    /// Each incarnation's identifier.
    ids: BTreeMap<NodeAddr, RingId>,
    /// The owners as last observed (the check only runs again when they change).
    last_owners: Vec<(Peer, Range)>,
    /// Excused overlaps in progress: (the peer that reaches too far, the owner it covers) →
    /// since when.
    open: BTreeMap<(NodeAddr, NodeAddr), Time>,
    excused: u64,
    /// Of those, the ones a crashed branch root explained.
    branch_roots: u64,
    longest_excused: Duration,
    sides: Option<Vec<BTreeSet<SocketAddr>>>,
    issued: BTreeMap<(NodeAddr, u64), Issued>,
    answers: Vec<Answer>,
    /// Answers checked so far ([`RingHistory::check_answers`]).
    checked: usize,
    /// Lookups answered so far.
    seen: BTreeSet<(NodeAddr, u64)>,
}

/// One live peer as the global view shows it between two steps.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The peer.
    pub peer: Peer,
    /// The range it owns, if any.
    pub range: Option<Range>,
}

impl RingHistory {
    /// An empty history.
    pub fn new() -> RingHistory {
        RingHistory::default()
    }

    /// A history that counts violations of lookup consistency and correctness
    /// ([`RingHistory::violations`]) instead of failing on them: for overlays that do not
    /// promise them, measured side by side with one that does.
    pub fn measure_only() -> RingHistory {
        RingHistory { measure: true, ..RingHistory::default() }
    }

    /// What a [`measure_only`](RingHistory::measure_only) history counted so far (episodes
    /// still in progress at `now` count towards the longest).
    pub fn violations(&self, now: Time) -> Violations {
        let open = self.violating.values().map(|s| now.duration_since(*s)).max();
        let mut v = self.violations;
        v.longest = v.longest.max(open.unwrap_or_default());
        v
    }

    /// From now on, check consistency within each of these groups of node addresses only
    /// (after a partition: the sides cannot know of each other). Peers in no group form one
    /// more group.
    pub fn set_sides(&mut self, sides: Vec<BTreeSet<SocketAddr>>) {
        self.sides = Some(sides);
        self.last_owners.clear();
    }

    /// The groups set by [`RingHistory::set_sides`].
    pub fn sides(&self) -> Option<&[BTreeSet<SocketAddr>]> {
        self.sides.as_deref()
    }

    /// Overlaps excused by a false suspicion so far (each pair of peers counted once per
    /// episode).
    pub fn excused(&self) -> u64 {
        self.excused
    }

    /// Of [`RingHistory::excused`], the overlaps a crashed branch root explained.
    pub fn branch_roots(&self) -> u64 {
        self.branch_roots
    }

    /// Whether an excused overlap is in progress (then [`observe`](RingHistory::observe) must
    /// run after every step, even when no range changed: the suspicion behind it may end, and
    /// its window runs out).
    pub fn overlapping(&self) -> bool {
        !self.open.is_empty()
    }

    /// The longest excused overlap that has ended, and those still in progress at `now`.
    pub fn longest_excused(&self, now: Time) -> Duration {
        let open = self.open.values().map(|s| now.duration_since(*s)).max().unwrap_or_default();
        self.longest_excused.max(open)
    }

    /// Records the live peers at `now` (every running peer, owner or not) and checks lookup
    /// consistency among the owners. `suspects(node)` is what `node` currently suspects and
    /// `succ_of(node)` its successor (both read only when an overlap needs explaining);
    /// `window` is how long an overlap that a false suspicion, or a crashed branch root,
    /// explains may last.
    ///
    /// # Errors
    ///
    /// `lookup consistency: …` naming the key, both peers and their ranges, when an overlap is
    /// not explained by a false suspicion, or lasts longer than `window`.
    pub fn observe(
        &mut self,
        now: Time,
        live: &[Observed],
        suspects: impl Fn(NodeAddr) -> Vec<NodeAddr>,
        succ_of: impl Fn(NodeAddr) -> Option<Peer>,
        window: Duration,
    ) -> Result<(), String> {
        for o in live {
            let h = self.ranges.entry(o.peer.addr).or_default();
            if h.last().map(|(_, r)| *r) != Some(o.range) {
                h.push((now, o.range));
            }
            self.ids.entry(o.peer.addr).or_insert(o.peer.id);
        }
        let mut owners: Vec<(Peer, Range)> =
            live.iter().filter_map(|o| o.range.map(|r| (o.peer, r))).collect();
        owners.sort_by_key(|(p, _)| p.addr);
        if owners == self.last_owners && self.open.is_empty() {
            return Ok(());
        }
        self.last_owners.clone_from(&owners);
        let groups: Vec<Vec<(Peer, Range)>> = match &self.sides {
            None => vec![owners],
            Some(sides) => {
                let mut groups = vec![Vec::new(); sides.len() + 1];
                for o in owners {
                    let g = sides.iter().position(|s| s.contains(&o.0.addr.addr));
                    groups[g.unwrap_or(sides.len())].push(o);
                }
                groups
            }
        };
        let live_peers: Vec<Peer> = live.iter().map(|o| o.peer).collect();
        let mut still_open = BTreeSet::new();
        let mut still_violating = BTreeSet::new();
        for group in groups {
            for over in overreaches(&group) {
                let theirs = suspects(over.peer.addr);
                let within = |x: &Peer| {
                    x.addr != over.peer.addr
                        && (over.range.is_full() || x.id.in_open(over.range.start, over.peer.id))
                };
                // A live peer within its own range that the overreaching peer suspects: its
                // range grew over a false suspicion (a range only grows over suspected peers).
                let false_suspicion =
                    live_peers.iter().any(|x| within(x) && theirs.contains(&x.addr));
                // It grew over some suspected peer, live or not.
                let grew = theirs
                    .iter()
                    .any(|a| self.ids.get(a).is_some_and(|id| within(&Peer::new(*id, *a))));
                for &(o, o_range) in &over.covered {
                    // Or the covered owner hangs behind a peer the overreaching one took over
                    // (it suspects it, it lies within its range): a crashed branch root, the
                    // relaxed ring's documented transient — the branch peer joined under it,
                    // unknown to the others, and fixes its way in once it suspects it too.
                    // (Its successor is that peer still, or already the overreaching one: it
                    // suspected that peer too, and its `fix` is on the way.)
                    let o_succ = succ_of(o.addr);
                    let branch_root = !false_suspicion
                        && grew
                        && o_succ.is_some_and(|x| {
                            x == over.peer || (within(&x) && theirs.contains(&x.addr))
                        });
                    let explained = false_suspicion || branch_root;
                    if self.measure {
                        let key = (over.peer.addr, o.addr);
                        self.violating.entry(key).or_insert_with(|| {
                            self.violations.overlaps += 1;
                            now
                        });
                        still_violating.insert(key);
                        continue;
                    }
                    if !explained {
                        return Err(format!(
                            "lookup consistency: at {} key {} is owned by {} (range {}) and by {} \
                             (range {}, successor {}), and no false suspicion (nor crashed \
                             branch root) explains it",
                            show_time(now),
                            o.id,
                            over.peer,
                            over.range,
                            o,
                            o_range,
                            o_succ.map_or("none".into(), |p| p.to_string())
                        ));
                    }
                    let key = (over.peer.addr, o.addr);
                    let since = *self.open.entry(key).or_insert_with(|| {
                        self.excused += 1;
                        if branch_root {
                            self.branch_roots += 1;
                        }
                        now
                    });
                    if now.duration_since(since) > window {
                        return Err(format!(
                            "lookup consistency: {} has owned {}'s range too ({} over {}) since \
                             {}, longer than the {:?} a false suspicion (or crashed branch root) \
                             may last",
                            over.peer,
                            o,
                            over.range,
                            o_range,
                            show_time(since),
                            window
                        ));
                    }
                    still_open.insert(key);
                }
            }
        }
        let ended: Vec<(NodeAddr, NodeAddr)> =
            self.open.keys().filter(|k| !still_open.contains(k)).copied().collect();
        for k in ended {
            if let Some(since) = self.open.remove(&k) {
                self.longest_excused = self.longest_excused.max(now.duration_since(since));
            }
        }
        let ended: Vec<(NodeAddr, NodeAddr)> =
            self.violating.keys().filter(|k| !still_violating.contains(k)).copied().collect();
        for k in ended {
            if let Some(since) = self.violating.remove(&k) {
                let d = now.duration_since(since);
                self.violations.longest = self.violations.longest.max(d);
                self.violations.total += d;
            }
        }
        Ok(())
    }

    /// `node` says it owned `range` at `at` (its ring told its user: `Joined`,
    /// `Responsibility`). Observations are made between steps; a peer whose range changes
    /// twice within one instant (a `join_ok`, then a joiner let in) held the range between
    /// only then, and may have answered a lookup with it.
    pub fn held(&mut self, node: NodeAddr, at: Time, range: Option<Range>) {
        let h = self.ranges.entry(node).or_default();
        let i = h.partition_point(|(t, _)| *t <= at);
        h.insert(i, (at, range));
    }

    /// A user on `node` issued lookup `tag` of `key` at `at`.
    pub fn issued(&mut self, node: NodeAddr, tag: u64, key: RingId, at: Time) {
        self.issued.insert((node, tag), Issued { key, at });
    }

    /// A user on `node` was answered.
    pub fn answered(&mut self, answer: Answer) {
        self.answers.push(answer);
    }

    /// The lookups issued so far.
    pub fn issued_count(&self) -> usize {
        self.issued.len()
    }

    /// Whether `peer` owned `key` at some instant of `[from, to]` (the range in force just
    /// before `from` counts: see the module documentation).
    pub fn owned(&self, peer: Peer, key: RingId, from: Time, to: Time) -> bool {
        if self.ids.get(&peer.addr) != Some(&peer.id) {
            return false;
        }
        let Some(h) = self.ranges.get(&peer.addr) else { return false };
        let first = h.partition_point(|(t, _)| *t < from).saturating_sub(1);
        h[first..]
            .iter()
            .take_while(|(t, _)| *t <= to)
            .any(|(_, r)| r.is_some_and(|r| r.contains(key)))
    }

    /// The ranges `peer` owned from `from` to `to` (for violation messages).
    fn ranges_between(&self, peer: NodeAddr, from: Time, to: Time) -> String {
        let Some(h) = self.ranges.get(&peer) else { return "never observed".into() };
        let first = h.partition_point(|(t, _)| *t < from).saturating_sub(1);
        let parts: Vec<String> = h[first..]
            .iter()
            .take_while(|(t, _)| *t <= to)
            .map(|(t, r)| {
                format!("{}: {}", show_time(*t), r.map_or("nothing".into(), |r| r.to_string()))
            })
            .collect();
        parts.join("; ")
    }

    /// Checks the answers recorded since the last call: each is to a lookup that was issued,
    /// the only one for it, for the key asked, and a `Found` names a peer that owned the key
    /// at some instant between the request and the answer. Call it after every
    /// [`observe`](RingHistory::observe) (the answering peer's range at the instant it
    /// answered is then in the history).
    ///
    /// # Errors
    ///
    /// `lookup correctness: …` or `lookup answers: …` with the lookup, its answer and what the
    /// answering peer owned meanwhile.
    pub fn check_answers(&mut self) -> Result<(), String> {
        while self.checked < self.answers.len() {
            let a = self.answers[self.checked];
            self.checked += 1;
            let Some(i) = self.issued.get(&(a.node, a.tag)).copied() else {
                return Err(format!(
                    "lookup answers: {} was answered for lookup {} that it never issued",
                    a.node, a.tag
                ));
            };
            if !self.seen.insert((a.node, a.tag)) {
                return Err(format!(
                    "lookup answers: lookup {} of {} from {} was answered twice (again at {})",
                    a.tag,
                    i.key,
                    a.node,
                    show_time(a.at)
                ));
            }
            if a.key != i.key {
                return Err(format!(
                    "lookup answers: lookup {} from {} asked for {} and was answered for {}",
                    a.tag, a.node, i.key, a.key
                ));
            }
            if let LookupOutcome::Found { peer, .. } = a.outcome {
                if !self.owned(peer, a.key, i.at, a.at) && self.measure {
                    self.violations.wrong_answers += 1;
                } else if !self.owned(peer, a.key, i.at, a.at) {
                    return Err(format!(
                        "lookup correctness: lookup of {} from {} (asked at {}, answered at {}) \
                         named {}, which did not own it meanwhile (its ranges: {})",
                        a.key,
                        a.node,
                        show_time(i.at),
                        show_time(a.at),
                        peer,
                        self.ranges_between(peer.addr, i.at, a.at)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks every lookup of the run at its end, `end` (see the module documentation):
    /// [`check_answers`](RingHistory::check_answers) for those not checked yet; every lookup
    /// of an incarnation in `running` issued more than `timeout` before `end` was answered;
    /// and every lookup issued within one of the `strict` windows (when the ring had converged,
    /// or had settled into branches) was answered `Found` by exactly the peer
    /// `responsible(asker, key, asked_at)` names — `None` for an asker that is not a member
    /// (one that left), whose lookups are only checked for correctness.
    ///
    /// # Errors
    ///
    /// As [`check_answers`](RingHistory::check_answers), and `lookup answers: … never
    /// answered`, `lookup correctness: … not by the responsible …`.
    pub fn check_lookups(
        &mut self,
        end: Time,
        running: &BTreeSet<NodeAddr>,
        timeout: Duration,
        strict: &[(Time, Time)],
        responsible: &dyn Fn(NodeAddr, RingId, Time) -> Option<Peer>,
    ) -> Result<LookupStats, String> {
        self.check_answers()?;
        let mut stats = LookupStats { issued: self.issued.len() as u64, ..LookupStats::default() };
        for a in &self.answers {
            let Some(i) = self.issued.get(&(a.node, a.tag)) else { continue };
            match a.outcome {
                LookupOutcome::Found { .. } => stats.found += 1,
                LookupOutcome::Unavailable(Unavailable::NotInRing) => stats.not_in_ring += 1,
                LookupOutcome::Unavailable(Unavailable::Timeout) => stats.timed_out += 1,
                LookupOutcome::Unavailable(_) => stats.unavailable += 1,
            }
            let Some(&(from, to)) = strict.iter().find(|(f, t)| *f <= i.at && i.at < *t) else {
                continue;
            };
            let Some(want) = responsible(a.node, a.key, i.at) else { continue };
            match a.outcome {
                LookupOutcome::Found { peer, hops } if peer == want => {
                    stats.after_convergence += 1;
                    stats.hops_after_convergence += u64::from(hops);
                    stats.max_hops_after_convergence = stats.max_hops_after_convergence.max(hops);
                }
                other => {
                    return Err(format!(
                        "lookup correctness: the ring had converged (or settled) from {} to {}, \
                         yet lookup of {} from {} (asked at {}) was answered {:?}, not by the \
                         responsible {}",
                        show_time(from),
                        show_time(to),
                        a.key,
                        a.node,
                        show_time(i.at),
                        other,
                        want
                    ));
                }
            }
        }
        for ((node, tag), i) in &self.issued {
            if running.contains(node) && i.at + timeout < end && !self.seen.contains(&(*node, *tag))
            {
                return Err(format!(
                    "lookup answers: lookup {tag} of {} from {node} (asked at {}) was never \
                     answered",
                    i.key,
                    show_time(i.at)
                ));
            }
        }
        Ok(stats)
    }
}

/// A virtual instant as seconds, to the microsecond.
pub fn show_time(t: Time) -> String {
    format!("{:.6}s", t.0 as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use selfman_core::NodeId;

    use super::*;

    fn peer(i: u32, id: u64) -> Peer {
        Peer::new(RingId(id), NodeAddr::simulated(i, NodeId(u64::from(i) + 1)))
    }

    fn at(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    fn obs(p: Peer, r: Option<(u64, u64)>) -> Observed {
        Observed { peer: p, range: r.map(|(a, b)| Range::new(RingId(a), RingId(b))) }
    }

    const W: Duration = Duration::from_millis(500);

    #[test]
    fn disjoint_ranges_pass_and_an_unexplained_overlap_is_caught() {
        let (a, b, c) = (peer(1, 10), peer(2, 20), peer(3, 30));
        let mut h = RingHistory::new();
        let none = |_| Vec::new();
        let ring = [obs(a, Some((30, 10))), obs(b, Some((10, 20))), obs(c, Some((20, 30)))];
        h.observe(at(0), &ring, none, |_| None, W).unwrap();
        // c takes b's range without suspecting anyone (an eager join, say).
        let bad = [obs(a, Some((30, 10))), obs(b, Some((10, 20))), obs(c, Some((10, 30)))];
        let e = h.observe(at(1), &bad, none, |_| None, W).unwrap_err();
        assert!(e.starts_with("lookup consistency:") && e.contains("no false suspicion"), "{e}");
        assert!(e.contains("0000000000000014"), "the key is named: {e}");
    }

    #[test]
    fn measure_mode_counts_and_times_what_strict_mode_fails_on() {
        let (a, b, c) = (peer(1, 10), peer(2, 20), peer(3, 30));
        let none = |_| Vec::new();
        let ring = [obs(a, Some((30, 10))), obs(b, Some((10, 20))), obs(c, Some((20, 30)))];
        let bad = [obs(a, Some((30, 10))), obs(b, Some((10, 20))), obs(c, Some((10, 30)))];
        let mut h = RingHistory::measure_only();
        h.observe(at(0), &ring, none, |_| None, W).unwrap();
        h.observe(at(100), &bad, none, |_| None, W).unwrap();
        assert_eq!(h.violations(at(150)).overlaps, 1);
        assert_eq!(h.violations(at(150)).longest, Duration::from_millis(50), "in progress");
        // Longer than any window: still only measured.
        h.observe(at(1_100), &bad, none, |_| None, W).unwrap();
        h.observe(at(1_300), &ring, none, |_| None, W).unwrap();
        let v = h.violations(at(2_000));
        assert_eq!((v.overlaps, v.longest, v.total), (1, Duration::from_millis(1_200), v.longest));
        // A second episode is a second count.
        h.observe(at(1_400), &bad, none, |_| None, W).unwrap();
        h.observe(at(1_500), &ring, none, |_| None, W).unwrap();
        let v = h.violations(at(2_000));
        assert_eq!((v.overlaps, v.total), (2, Duration::from_millis(1_300)));
        // A wrong answer is counted, not failed on; the same history in strict mode fails.
        h.issued(a.addr, 0, RingId(15), at(1_600));
        let found = LookupOutcome::Found { peer: c, hops: 1 };
        h.answered(Answer { node: a.addr, tag: 0, key: RingId(15), outcome: found, at: at(1_610) });
        h.check_answers().unwrap();
        assert_eq!(h.violations(at(2_000)).wrong_answers, 1);
        let mut strict = RingHistory::new();
        strict.observe(at(0), &ring, none, |_| None, W).unwrap();
        assert!(strict.observe(at(100), &bad, none, |_| None, W).is_err());
    }

    #[test]
    fn an_overlap_over_a_falsely_suspected_peer_is_excused_for_the_window_only() {
        let (a, b, c) = (peer(1, 10), peer(2, 20), peer(3, 30));
        let over = [obs(a, Some((30, 10))), obs(b, Some((10, 20))), obs(c, Some((10, 30)))];
        let suspects_b = |n: NodeAddr| if n == c.addr { vec![b.addr] } else { Vec::new() };
        let mut h = RingHistory::new();
        h.observe(at(0), &over, suspects_b, |_| None, W).unwrap();
        h.observe(at(400), &over, suspects_b, |_| None, W).unwrap();
        assert_eq!(h.excused(), 1);
        // It ends: the window is timed.
        let healed = [obs(a, Some((30, 10))), obs(b, Some((10, 20))), obs(c, Some((20, 30)))];
        h.observe(at(450), &healed, suspects_b, |_| None, W).unwrap();
        assert_eq!(h.longest_excused(at(450)), Duration::from_millis(450));
        // A second episode that outlasts the window is caught.
        h.observe(at(1000), &over, suspects_b, |_| None, W).unwrap();
        assert_eq!(h.excused(), 2);
        let e = h.observe(at(1501), &over, suspects_b, |_| None, W).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        // The suspicion is gone but the range stays: no longer excused.
        let mut h = RingHistory::new();
        h.observe(at(0), &over, suspects_b, |_| None, W).unwrap();
        let e = h.observe(at(10), &over, |_| Vec::new(), |_| None, W).unwrap_err();
        assert!(e.contains("no false suspicion"), "{e}");
        // Suspecting a crashed peer (not live) explains nothing.
        let mut h = RingHistory::new();
        let dead = peer(9, 25);
        let e = h.observe(at(0), &over, |_| vec![dead.addr], |_| None, W).unwrap_err();
        assert!(e.contains("no false suspicion"), "{e}");
    }

    #[test]
    fn an_overlap_behind_a_crashed_branch_root_is_excused_for_the_window_only() {
        // 25 joined under 30 (its successor), and 30 crashed before 20 heard of 25: 40, which
        // suspects 30, took 20's fix and owns (20, 40] over 25's (20, 25] until 25 suspects
        // 30 too and fixes its way in.
        let (a, b, j, d) = (peer(1, 10), peer(2, 20), peer(3, 25), peer(4, 40));
        let crashed = peer(5, 30);
        let over = [
            obs(a, Some((40, 10))),
            obs(b, Some((10, 20))),
            obs(j, Some((20, 25))),
            obs(d, Some((20, 40))),
        ];
        let suspects = |n: NodeAddr| if n == d.addr { vec![crashed.addr] } else { Vec::new() };
        let succ_of = |n: NodeAddr| (n == j.addr).then_some(crashed);
        let mut h = RingHistory::new();
        // 30 ran once (the history knows its identifier).
        h.observe(at(0), &[obs(crashed, None)], |_| Vec::new(), |_| None, W).unwrap();
        h.observe(at(1), &over, suspects, succ_of, W).unwrap();
        assert_eq!((h.excused(), h.branch_roots()), (1, 1));
        let e = h.observe(at(502), &over, suspects, succ_of, W).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        // Nor once it suspects 30 too and its fix to 40 is on the way.
        let mut h = RingHistory::new();
        h.observe(at(0), &[obs(crashed, None)], |_| Vec::new(), |_| None, W).unwrap();
        h.observe(at(1), &over, suspects, |n| (n == j.addr).then_some(d), W).unwrap();
        assert_eq!(h.branch_roots(), 1);
        // Not if the covered owner hangs behind another peer, nor if the overreaching one
        // grew over nobody it suspects.
        let mut h = RingHistory::new();
        let e = h.observe(at(0), &over, suspects, |_| Some(a), W).unwrap_err();
        assert!(e.contains("nor crashed branch root"), "{e}");
        let mut h = RingHistory::new();
        let e = h.observe(at(0), &over, |_| Vec::new(), |_| Some(d), W).unwrap_err();
        assert!(e.contains("nor crashed branch root"), "{e}");
    }

    #[test]
    fn sides_are_checked_apart() {
        let (a, b, c, d) = (peer(1, 10), peer(2, 20), peer(3, 30), peer(4, 40));
        // Two rings of two, interleaved: each side's ranges cover the circle.
        let split = [
            obs(a, Some((30, 10))),
            obs(c, Some((10, 30))),
            obs(b, Some((40, 20))),
            obs(d, Some((20, 40))),
        ];
        let mut h = RingHistory::new();
        assert!(h.observe(at(0), &split, |_| Vec::new(), |_| None, W).is_err());
        let mut h = RingHistory::new();
        h.set_sides(vec![
            [a.addr.addr, c.addr.addr].into_iter().collect(),
            [b.addr.addr, d.addr.addr].into_iter().collect(),
        ]);
        h.observe(at(0), &split, |_| Vec::new(), |_| None, W).unwrap();
        // Within a side an overlap is still caught.
        let bad = [
            obs(a, Some((30, 10))),
            obs(c, Some((5, 30))),
            obs(b, Some((40, 20))),
            obs(d, Some((20, 40))),
        ];
        assert!(h.observe(at(1), &bad, |_| Vec::new(), |_| None, W).is_err());
    }

    #[test]
    fn found_must_name_a_peer_that_owned_the_key_meanwhile() {
        let (a, b) = (peer(1, 10), peer(2, 20));
        let mut h = RingHistory::new();
        h.observe(
            at(0),
            &[obs(a, Some((20, 10))), obs(b, Some((10, 20)))],
            |_| Vec::new(),
            |_| None,
            W,
        )
        .unwrap();
        // At 100 ms, b gives (10, 15] away to a (say a joiner took it).
        h.observe(
            at(100),
            &[obs(a, Some((20, 10))), obs(b, Some((15, 20)))],
            |_| Vec::new(),
            |_| None,
            W,
        )
        .unwrap();
        let found = |p: Peer| LookupOutcome::Found { peer: p, hops: 1 };
        let running: BTreeSet<NodeAddr> = [a.addr, b.addr].into_iter().collect();
        let t = Duration::from_secs(2);
        // Asked at 50, answered at 120 by b: b owned 12 until 100, fine.
        h.issued(a.addr, 1, RingId(12), at(50));
        h.answered(Answer {
            node: a.addr,
            tag: 1,
            key: RingId(12),
            outcome: found(b),
            at: at(120),
        });
        h.check_answers().unwrap();
        // Asked at 150: b no longer owned 12.
        h.issued(a.addr, 2, RingId(12), at(150));
        h.answered(Answer {
            node: a.addr,
            tag: 2,
            key: RingId(12),
            outcome: found(b),
            at: at(160),
        });
        let e = h.check_lookups(at(200), &running, t, &[], &|_, _, _| None).unwrap_err();
        assert!(e.starts_with("lookup correctness:") && e.contains("did not own"), "{e}");
    }

    #[test]
    fn a_range_held_within_one_instant_counts_when_told() {
        // b gets (10, 20] and gives (10, 15] away within one instant: observations between
        // steps never see (10, 20], but b's ring told its user it held it.
        let (a, b) = (peer(1, 10), peer(2, 20));
        let mut h = RingHistory::new();
        h.observe(at(0), &[obs(a, Some((20, 10))), obs(b, None)], |_| Vec::new(), |_| None, W)
            .unwrap();
        h.held(b.addr, at(100), Some(Range::new(RingId(10), RingId(20))));
        h.observe(
            at(100),
            &[obs(a, Some((20, 10))), obs(b, Some((15, 20)))],
            |_| Vec::new(),
            |_| None,
            W,
        )
        .unwrap();
        assert!(h.owned(b, RingId(12), at(90), at(110)));
        assert!(!h.owned(b, RingId(12), at(101), at(110)));
        assert!(!h.owned(a, RingId(12), at(0), at(110)));
    }

    #[test]
    fn answers_are_once_each_and_none_is_missing_and_strict_windows_exact() {
        let (a, b) = (peer(1, 10), peer(2, 20));
        let ring = [obs(a, Some((20, 10))), obs(b, Some((10, 20)))];
        let running: BTreeSet<NodeAddr> = [a.addr, b.addr].into_iter().collect();
        let t = Duration::from_secs(1);
        let found = |p: Peer| LookupOutcome::Found { peer: p, hops: 1 };
        let fresh = || {
            let mut h = RingHistory::new();
            h.observe(at(0), &ring, |_| Vec::new(), |_| None, W).unwrap();
            h.issued(a.addr, 1, RingId(15), at(10));
            h
        };
        let nobody = |_: NodeAddr, _: RingId, _: Time| None;
        // Missing.
        let e = fresh().check_lookups(at(5000), &running, t, &[], &nobody).unwrap_err();
        assert!(e.contains("never answered"), "{e}");
        // Not missing if the asker crashed, or if it is too recent.
        fresh().check_lookups(at(5000), &BTreeSet::new(), t, &[], &nobody).unwrap();
        fresh().check_lookups(at(500), &running, t, &[], &nobody).unwrap();
        // Twice.
        let mut h = fresh();
        let ans = Answer { node: a.addr, tag: 1, key: RingId(15), outcome: found(b), at: at(20) };
        h.answered(ans);
        h.check_answers().unwrap();
        h.answered(ans);
        assert!(h.check_answers().unwrap_err().contains("twice"));
        // Never issued; another key.
        let mut h = fresh();
        h.answered(Answer { tag: 9, ..ans });
        assert!(h.check_answers().unwrap_err().contains("never issued"));
        let mut h = fresh();
        h.answered(Answer { key: RingId(16), ..ans });
        assert!(h.check_answers().unwrap_err().contains("answered for"));
        // In a strict window, unavailable is not good enough, nor another owner.
        let timeout = LookupOutcome::Unavailable(Unavailable::Timeout);
        let resp = |_: NodeAddr, _: RingId, _: Time| Some(b);
        let window = [(at(0), at(100))];
        let mut h = fresh();
        h.answered(Answer { outcome: timeout, ..ans });
        let stats = h.check_lookups(at(5000), &running, t, &[], &resp).unwrap();
        assert_eq!(stats.timed_out, 1);
        let e = h.check_lookups(at(5000), &running, t, &window, &resp).unwrap_err();
        assert!(e.contains("had converged"), "{e}");
        let resp_a = |_: NodeAddr, _: RingId, _: Time| Some(a);
        let mut h = fresh();
        h.answered(ans);
        let e = h.check_lookups(at(5000), &running, t, &window, &resp_a).unwrap_err();
        assert!(e.contains("not by the responsible"), "{e}");
        // Outside the window, or from a non-member, it is only checked for correctness.
        let later = [(at(50), at(100))];
        h.check_lookups(at(5000), &running, t, &later, &resp_a).unwrap();
        h.check_lookups(at(5000), &running, t, &window, &nobody).unwrap();
        let stats = h.check_lookups(at(5000), &running, t, &window, &resp).unwrap();
        assert_eq!((stats.found, stats.after_convergence, stats.hops_after_convergence), (1, 1, 1));
    }
}
