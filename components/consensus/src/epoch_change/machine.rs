//! The epoch-change logic, without I/O: [`EpochChangeMachine`].
//!
//! Invariants (each checked by the unit tests below and by the `consensus` scenario):
//! * **monotonicity**: the timestamps of the epochs this process starts grow strictly;
//! * **consistency**: a timestamp names its leader: process of rank `r` in a group of `n` only
//!   ever announces timestamps `r + k·n` (`k ≥ 1`), so equal timestamps have equal leaders;
//! * **eventual leadership**: once the leader detector settles on a correct leader and links
//!   deliver, every correct process starts that leader's latest epoch and then no other.

use std::time::Duration;

use selfman_core::NodeAddr;
use selfman_ports::{has_flaw, Membership, StartEpoch, Trust};

use crate::messages::EcMessage;

/// Timing of the epoch change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcConfig {
    /// How often a process that trusts itself re-announces its epoch (lost announcements, and
    /// processes that changed their minds, catch up within one period), and how often a
    /// process that trusts a leader other than its epoch's nudges that leader.
    pub period: Duration,
}

impl Default for EcConfig {
    /// Re-announce every 100 ms.
    fn default() -> Self {
        EcConfig { period: Duration::from_millis(100) }
    }
}

/// A deliberate mistake of the [`EpochChangeMachine`], to show that the simulation checkers
/// catch it (feature `flaws`, for tests only; `docs/decisions/011-deliberate-bugs-are-test-only.md`).
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// A new timestamp is one above the last this process was in or tried, instead of
    /// `rank + k·n` above everything heard of: two leaders can announce the same timestamp
    /// (breaks consistency: `consensus-broken-epochs`).
    SharedTimestamps,
    /// A `NewEpoch` from the trusted process is accepted even if its timestamp is not above the
    /// last epoch's (breaks monotonicity: `consensus-broken-monotonic`).
    NoMonotonicityCheck,
}

/// What the machine asks its component to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcOutput {
    /// Best-effort broadcast this message (this process has already handled its own copy:
    /// ignore its local delivery).
    Broadcast(EcMessage),
    /// Send this message to one process.
    Send(NodeAddr, EcMessage),
    /// Indicate a new epoch.
    Start(StartEpoch),
}

/// Leader-based epoch change (CGR Algorithm 5.5) for one process, made to work over lossy
/// links and healed partitions:
///
/// * a process that trusts itself announces `NewEpoch(ts)` with a fresh `ts` (its rank plus a
///   multiple of the group size, above every timestamp it has heard of) and **re-announces the
///   same `ts` every period** while it keeps trusting itself: lost announcements are repaired,
///   and after a partition heals the others hear from it although its own `Trust` never
///   changed;
/// * a process accepts `NewEpoch(ts)` from the process it trusts when `ts` is above its last
///   epoch; otherwise it answers `Nack { ts, lastts }`;
/// * a leader takes a fresh timestamp only for a `Nack` of its **current** attempt whose
///   `lastts` shows that attempt is stale; a `Nack` for an older attempt, or from a process
///   that merely does not trust it yet, changes nothing (no epoch storms: re-announcing does
///   not start new epochs);
/// * a process that trusts someone other than its epoch's leader nudges it (on `Trust` and then
///   every period), so a new leader learns at once how high it must go.
#[derive(Debug, Clone)]
pub struct EpochChangeMachine {
    group: Membership,
    trusted: Option<NodeAddr>,
    /// The last epoch started here (0: none yet) and its leader.
    lastts: u64,
    leader: Option<NodeAddr>,
    /// This process's current attempt as leader (0: none yet).
    ts: u64,
    /// The highest timestamp heard of (announced or reported in a refusal).
    seen: u64,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

impl EpochChangeMachine {
    /// The epoch change of process `me` in `group` (members in rank order; `me` should be one
    /// of them: a process outside the group follows but never leads).
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>) -> Self {
        EpochChangeMachine {
            group: Membership::new(me, group),
            trusted: None,
            lastts: 0,
            leader: None,
            ts: 0,
            seen: 0,
            #[cfg(feature = "flaws")]
            flaw: None,
        }
    }

    /// This machine with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.flaw = Some(flaw);
        self
    }

    /// The last epoch started (timestamp 0 and no leader before the first).
    pub fn current(&self) -> (u64, Option<NodeAddr>) {
        (self.lastts, self.leader)
    }

    /// The process trusted now.
    pub fn trusted(&self) -> Option<NodeAddr> {
        self.trusted
    }

    fn trusts_me(&self) -> bool {
        self.trusted.is_some_and(|t| self.group.is_me(t))
    }

    /// A fresh timestamp of this process above everything heard of.
    fn next_ts(&mut self) -> Option<u64> {
        let rank = self.group.my_rank()? as u64;
        let n = self.group.len() as u64;
        if has_flaw!(self, SharedTimestamps) {
            // Deliberately wrong: one above the last epoch it was in or tried, whoever it is
            // (two processes can pick the same timestamp).
            return Some(self.ts.max(self.lastts) + 1);
        }
        let above = self.seen.max(self.ts).max(self.lastts);
        // The smallest rank + k·n (k ≥ 1) greater than `above`.
        let k = if above < rank + n { 1 } else { (above - rank) / n + 1 };
        Some(rank + k * n)
    }

    /// Takes a fresh timestamp and announces it (handling the local copy at once).
    fn announce_fresh(&mut self, out: &mut Vec<EcOutput>) {
        let Some(ts) = self.next_ts() else { return };
        self.ts = ts;
        self.seen = self.seen.max(ts);
        out.push(EcOutput::Broadcast(EcMessage::NewEpoch { ts }));
        let me = self.group.me();
        self.on_new_epoch(me, ts, out);
    }

    /// The leader detector now trusts `p`.
    pub fn on_trust(&mut self, Trust(p): Trust, out: &mut Vec<EcOutput>) {
        let p = self.group.name_of(p);
        self.trusted = Some(p);
        if self.group.is_me(p) {
            if self.leader.is_some_and(|l| self.group.is_me(l)) && self.ts == self.lastts {
                // Still leading our own latest epoch: re-announce it, no need for a new one.
                out.push(EcOutput::Broadcast(EcMessage::NewEpoch { ts: self.ts }));
            } else {
                self.announce_fresh(out);
            }
        } else if self.leader.is_none_or(|l| l.addr != p.addr) {
            out.push(EcOutput::Send(p, EcMessage::Nudge { lastts: self.lastts }));
        }
    }

    /// A message arrived from `from` (by broadcast or point to point). Copies of this
    /// process's own broadcasts must not be passed here.
    pub fn on_message(&mut self, from: NodeAddr, msg: EcMessage, out: &mut Vec<EcOutput>) {
        let from = self.group.name_of(from);
        match msg {
            EcMessage::NewEpoch { ts } => self.on_new_epoch(from, ts, out),
            EcMessage::Nack { ts, lastts } => {
                self.seen = self.seen.max(lastts);
                if self.trusts_me() && ts == self.ts && lastts >= self.ts {
                    self.announce_fresh(out);
                }
            }
            EcMessage::Nudge { lastts } => {
                self.seen = self.seen.max(lastts);
                if !self.trusts_me() {
                    return;
                }
                if lastts >= self.ts || self.ts == 0 {
                    self.announce_fresh(out);
                } else {
                    out.push(EcOutput::Send(from, EcMessage::NewEpoch { ts: self.ts }));
                }
            }
        }
    }

    fn on_new_epoch(&mut self, from: NodeAddr, ts: u64, out: &mut Vec<EcOutput>) {
        self.seen = self.seen.max(ts);
        let trusted = self.trusted.is_some_and(|t| t.addr == from.addr);
        let fresh = ts > self.lastts || has_flaw!(self, NoMonotonicityCheck);
        if trusted && fresh {
            if self.leader == Some(from) && self.lastts == ts {
                return; // a re-announcement of the epoch we are in (flawed variant only)
            }
            self.lastts = ts;
            self.leader = Some(from);
            out.push(EcOutput::Start(StartEpoch { ts, leader: from }));
        } else if trusted && ts == self.lastts && self.leader.is_some_and(|l| l.addr == from.addr) {
            // A re-announcement of the epoch we are in: nothing to do.
        } else if !self.group.is_me(from) {
            out.push(EcOutput::Send(from, EcMessage::Nack { ts, lastts: self.lastts }));
        }
    }

    /// A period passed: re-announce (leader) or nudge (a process not in its leader's epoch).
    pub fn on_tick(&mut self, out: &mut Vec<EcOutput>) {
        let Some(t) = self.trusted else { return };
        if self.group.is_me(t) {
            if self.ts == 0 || self.ts < self.lastts {
                self.announce_fresh(out);
            } else {
                out.push(EcOutput::Broadcast(EcMessage::NewEpoch { ts: self.ts }));
            }
        } else if self.leader.is_none_or(|l| l.addr != t.addr) {
            out.push(EcOutput::Send(t, EcMessage::Nudge { lastts: self.lastts }));
        }
    }
}

#[cfg(test)]
mod tests {
    use selfman_core::NodeId;

    use super::*;

    fn p(i: u32) -> NodeAddr {
        NodeAddr::simulated(i + 1, NodeId::UNKNOWN)
    }

    fn group(n: u32) -> Vec<NodeAddr> {
        (0..n).map(p).collect()
    }

    fn starts(out: &[EcOutput]) -> Vec<(u64, NodeAddr)> {
        out.iter()
            .filter_map(|o| match o {
                EcOutput::Start(s) => Some((s.ts, s.leader)),
                _ => None,
            })
            .collect()
    }

    fn broadcast_ts(out: &[EcOutput]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                EcOutput::Broadcast(EcMessage::NewEpoch { ts }) => Some(*ts),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_leader_starts_its_own_epoch_with_rank_plus_n() {
        let mut m = EpochChangeMachine::new(p(1), group(3));
        let mut out = Vec::new();
        m.on_trust(Trust(p(1)), &mut out);
        assert_eq!(broadcast_ts(&out), vec![4]);
        assert_eq!(starts(&out), vec![(4, p(1))]);
        // Re-announcements repeat the same timestamp and start nothing new.
        out.clear();
        m.on_tick(&mut out);
        m.on_tick(&mut out);
        assert_eq!(broadcast_ts(&out), vec![4, 4]);
        assert!(starts(&out).is_empty());
    }

    #[test]
    fn a_follower_accepts_only_its_trusted_leader_and_fresh_timestamps() {
        let mut m = EpochChangeMachine::new(p(2), group(3));
        let mut out = Vec::new();
        m.on_trust(Trust(p(0)), &mut out);
        assert_eq!(out, vec![EcOutput::Send(p(0), EcMessage::Nudge { lastts: 0 })]);
        out.clear();
        m.on_message(p(1), EcMessage::NewEpoch { ts: 4 }, &mut out);
        assert_eq!(out, vec![EcOutput::Send(p(1), EcMessage::Nack { ts: 4, lastts: 0 })]);
        out.clear();
        m.on_message(p(0), EcMessage::NewEpoch { ts: 3 }, &mut out);
        assert_eq!(starts(&out), vec![(3, p(0))]);
        out.clear();
        m.on_message(p(0), EcMessage::NewEpoch { ts: 3 }, &mut out);
        assert!(out.is_empty(), "a re-announcement is silently ignored: {out:?}");
        m.on_message(p(0), EcMessage::NewEpoch { ts: 0 }, &mut out);
        assert_eq!(out, vec![EcOutput::Send(p(0), EcMessage::Nack { ts: 0, lastts: 3 })]);
        out.clear();
        m.on_tick(&mut out);
        assert!(out.is_empty(), "settled: no nudges");
    }

    #[test]
    fn a_stale_leader_jumps_above_the_refusal_once() {
        // p0 leads, but the others are already at epoch 13 (e.g. after a partition).
        let mut m = EpochChangeMachine::new(p(0), group(3));
        let mut out = Vec::new();
        m.on_trust(Trust(p(0)), &mut out);
        assert_eq!(broadcast_ts(&out), vec![3]);
        out.clear();
        // Two refusals of the same attempt: one jump only.
        m.on_message(p(1), EcMessage::Nack { ts: 3, lastts: 13 }, &mut out);
        m.on_message(p(2), EcMessage::Nack { ts: 3, lastts: 10 }, &mut out);
        assert_eq!(broadcast_ts(&out), vec![15]);
        assert_eq!(starts(&out), vec![(15, p(0))]);
        out.clear();
        // A refusal by a process that does not trust us yet (its lastts is below our attempt)
        // starts nothing: the next re-announcement will reach it once it trusts us.
        m.on_message(p(1), EcMessage::Nack { ts: 15, lastts: 13 }, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn nack_storm_of_stale_refusals_starts_no_epochs() {
        let mut m = EpochChangeMachine::new(p(1), group(5));
        let mut out = Vec::new();
        m.on_trust(Trust(p(1)), &mut out);
        m.on_message(p(3), EcMessage::Nack { ts: 6, lastts: 20 }, &mut out);
        let ts = *broadcast_ts(&out).last().unwrap();
        assert_eq!(ts, 21);
        out.clear();
        // Retransmitted refusals of the old attempts keep arriving: all stale.
        for _ in 0..50 {
            m.on_message(p(2), EcMessage::Nack { ts: 6, lastts: 20 }, &mut out);
            m.on_message(p(4), EcMessage::Nack { ts: 6, lastts: 6 }, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(m.current(), (21, Some(p(1))));
    }

    #[test]
    fn after_a_healed_partition_the_self_trusting_leader_gets_everyone_to_one_epoch() {
        // Group of 5. During a partition p0 (rank 0) led {p0,p1,p2} at ts 5, and p3 led {p3,p4}
        // up to ts 23. After the heal p3, p4 trust p0; p0's Trust never changed.
        let g = group(5);
        let mut p0 = EpochChangeMachine::new(p(0), g.clone());
        let mut p4 = EpochChangeMachine::new(p(4), g.clone());
        let mut out = Vec::new();
        p0.on_trust(Trust(p(0)), &mut out);
        assert_eq!(p0.current().0, 5);
        p4.on_trust(Trust(p(3)), &mut out);
        p4.on_message(p(3), EcMessage::NewEpoch { ts: 23 }, &mut out);
        assert_eq!(p4.current(), (23, Some(p(3))));
        out.clear();
        // Heal: p4 now trusts p0 and nudges it.
        p4.on_trust(Trust(p(0)), &mut out);
        assert_eq!(out, vec![EcOutput::Send(p(0), EcMessage::Nudge { lastts: 23 })]);
        out.clear();
        p0.on_message(p(4), EcMessage::Nudge { lastts: 23 }, &mut out);
        let ts = broadcast_ts(&out);
        assert_eq!(ts, vec![25]);
        out.clear();
        p4.on_message(p(0), EcMessage::NewEpoch { ts: 25 }, &mut out);
        assert_eq!(starts(&out), vec![(25, p(0))]);
        // Even without nudges (lost), p0's periodic re-announcement gets a Nack that makes it
        // jump: replay with a fresh p0.
        let mut q0 = EpochChangeMachine::new(p(0), g.clone());
        let mut q4 = EpochChangeMachine::new(p(4), g);
        out.clear();
        q0.on_trust(Trust(p(0)), &mut out);
        q4.on_trust(Trust(p(3)), &mut out);
        q4.on_message(p(3), EcMessage::NewEpoch { ts: 23 }, &mut out);
        q4.on_trust(Trust(p(0)), &mut out); // its nudge is lost
        out.clear();
        q0.on_tick(&mut out);
        assert_eq!(broadcast_ts(&out), vec![5]);
        out.clear();
        q4.on_message(p(0), EcMessage::NewEpoch { ts: 5 }, &mut out);
        assert_eq!(out, vec![EcOutput::Send(p(0), EcMessage::Nack { ts: 5, lastts: 23 })]);
        out.clear();
        q0.on_message(p(4), EcMessage::Nack { ts: 5, lastts: 23 }, &mut out);
        assert_eq!(broadcast_ts(&out), vec![25]);
    }

    #[test]
    fn duelling_leaders_never_share_a_timestamp() {
        // Two processes both trust themselves and refuse each other, repeatedly.
        let g = group(4);
        let mut a = EpochChangeMachine::new(p(0), g.clone());
        let mut b = EpochChangeMachine::new(p(3), g);
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        a.on_trust(Trust(p(0)), &mut oa);
        b.on_trust(Trust(p(3)), &mut ob);
        let mut all = Vec::new();
        for _ in 0..20 {
            let ta = *broadcast_ts(&oa).last().unwrap_or(&a.current().0);
            let tb = *broadcast_ts(&ob).last().unwrap_or(&b.current().0);
            all.push((ta, 0));
            all.push((tb, 3));
            oa.clear();
            ob.clear();
            // Each refuses the other's attempt, reporting its own epoch.
            b.on_message(p(0), EcMessage::NewEpoch { ts: ta }, &mut ob);
            a.on_message(p(3), EcMessage::NewEpoch { ts: tb }, &mut oa);
            let nb = std::mem::take(&mut ob);
            let na = std::mem::take(&mut oa);
            for o in nb {
                if let EcOutput::Send(_, m) = o {
                    a.on_message(p(3), m, &mut oa);
                }
            }
            for o in na {
                if let EcOutput::Send(_, m) = o {
                    b.on_message(p(0), m, &mut ob);
                }
            }
        }
        for &(ts, rank) in &all {
            assert_eq!(ts % 4, rank, "timestamp {ts} of rank {rank}");
        }
        // Each only ever started its own epochs, in increasing order.
        assert!(a.current().0 > 0 && b.current().0 > 0);
    }

    #[test]
    fn flawed_timestamps_collide_across_leaders() {
        let g = group(3);
        let mut a = EpochChangeMachine::new(p(0), g.clone()).with_flaw(Flaw::SharedTimestamps);
        let mut b = EpochChangeMachine::new(p(1), g).with_flaw(Flaw::SharedTimestamps);
        let mut out = Vec::new();
        a.on_trust(Trust(p(0)), &mut out);
        b.on_trust(Trust(p(1)), &mut out);
        assert_eq!(a.current().0, b.current().0, "the flaw makes two leaders share a timestamp");
    }

    #[test]
    fn a_process_outside_the_group_never_leads() {
        let mut m = EpochChangeMachine::new(p(9), group(3));
        let mut out = Vec::new();
        m.on_trust(Trust(p(9)), &mut out);
        m.on_tick(&mut out);
        assert!(out.is_empty());
    }
}
