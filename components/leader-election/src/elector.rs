//! The election's logic, free of I/O: [`Elector`] turns failure detector indications into the
//! trusted leader.
//!
//! Invariants: the leader is the highest-ranked group member that is not suspected, counting
//! the local process as never suspected (so with every other member suspected, a member trusts
//! itself); a [`Trust`] is produced at start and then only when the leader changes; members are
//! named as they appear in the group, which is a [`Membership`] view (compared by address, a
//! repeated address counted once).

use selfman_core::NodeAddr;
use selfman_ports::{has_flaw, FdIndication, Membership, Trust};

/// A deliberate mistake of the [`Elector`], to show that the simulation checkers catch it
/// (feature `flaws`, for tests only; `docs/decisions/011-deliberate-bugs-are-test-only.md`).
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// Ignores the failure detector: trusts by rank alone (breaks eventual accuracy once the
    /// highest-ranked member crashes: `omega-broken`).
    IgnoreSuspicions,
}

/// Eventual leader election by rank (Cachin–Guerraoui–Rodrigues Algorithm 2.8, "Monarchical
/// Eventual Leader Detection"): rank = position in the group, index 0 highest.
///
/// # Examples
///
/// ```
/// use selfman_core::{NodeAddr, NodeId};
/// use selfman_leader_election::Elector;
/// use selfman_ports::{FdIndication, Trust};
///
/// let group: Vec<NodeAddr> = (1..=3).map(|n| NodeAddr::simulated(n, NodeId::UNKNOWN)).collect();
/// let me = NodeAddr::simulated(3, NodeId(42)); // matched to group[2] by address
/// let mut e = Elector::new(me, group.clone());
/// assert_eq!(e.start(), Some(Trust(group[0])));
/// assert_eq!(e.on_indication(FdIndication::Suspect(group[0])), Some(Trust(group[1])));
/// assert_eq!(e.on_indication(FdIndication::Suspect(group[1])), Some(Trust(group[2])));
/// assert_eq!(e.on_indication(FdIndication::Restore(group[0])), Some(Trust(group[0])));
/// ```
#[derive(Clone, Debug)]
pub struct Elector {
    group: Membership,
    /// The local process's rank, if it is a member.
    me: Option<usize>,
    /// By rank.
    suspected: Vec<bool>,
    leader: Option<usize>,
    started: bool,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

impl Elector {
    /// The election among `group` as seen by `me`. `me` is matched to a member by address (the
    /// group may list members with [`NodeId::UNKNOWN`](selfman_core::NodeId::UNKNOWN)). If `me`
    /// is not a member it still follows the election (it never trusts itself); with every
    /// member suspected it keeps trusting the last leader.
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>) -> Elector {
        let group = Membership::new(me, group);
        let me = group.my_rank();
        let suspected = vec![false; group.len()];
        Elector {
            group,
            me,
            suspected,
            leader: None,
            started: false,
            #[cfg(feature = "flaws")]
            flaw: None,
        }
    }

    /// This election with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Elector {
        self.flaw = Some(flaw);
        self
    }

    /// The group, in rank order.
    pub fn group(&self) -> &[NodeAddr] {
        self.group.members()
    }

    /// The members to monitor: every member but the local process.
    pub fn others(&self) -> impl Iterator<Item = NodeAddr> + '_ {
        self.group.others()
    }

    /// Starts the election: returns the first [`Trust`] (the highest-ranked member; `None` for
    /// an empty group). Calling it again returns the current leader again.
    pub fn start(&mut self) -> Option<Trust> {
        self.started = true;
        self.elect();
        self.trusted()
    }

    /// The failure detector changed its mind about a process: returns a [`Trust`] if the
    /// leader changed. Indications about non-members and about the local process are ignored.
    pub fn on_indication(&mut self, ind: FdIndication) -> Option<Trust> {
        if has_flaw!(self, IgnoreSuspicions) {
            return None;
        }
        let (n, suspect) = match ind {
            FdIndication::Suspect(n) => (n, true),
            FdIndication::Restore(n) => (n, false),
        };
        let i = self.group.rank_of(n)?;
        if Some(i) == self.me {
            return None;
        }
        self.suspected[i] = suspect;
        if !self.started {
            return None;
        }
        let before = self.leader;
        self.elect();
        (self.leader != before).then(|| self.trusted()).flatten()
    }

    /// The member trusted now (`None` before [`Elector::start`] or for an empty group).
    pub fn trusted(&self) -> Option<Trust> {
        self.leader.map(|i| Trust(self.group.members()[i]))
    }

    /// Whether `member` (matched by address) is suspected now.
    pub fn is_suspected(&self, member: NodeAddr) -> bool {
        self.group.rank_of(member).is_some_and(|i| self.suspected[i])
    }

    fn elect(&mut self) {
        let best = (0..self.group.len()).find(|&i| Some(i) == self.me || !self.suspected[i]);
        if best.is_some() || self.leader.is_none() {
            self.leader = best.or((!self.group.is_empty()).then_some(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfman_core::NodeId;

    fn member(n: u32) -> NodeAddr {
        NodeAddr::simulated(n, NodeId::UNKNOWN)
    }

    fn group(n: u32) -> Vec<NodeAddr> {
        (1..=n).map(member).collect()
    }

    fn suspect(n: u32) -> FdIndication {
        FdIndication::Suspect(member(n))
    }

    fn restore(n: u32) -> FdIndication {
        FdIndication::Restore(member(n))
    }

    #[test]
    fn trusts_the_highest_ranked_unsuspected_member_and_reports_only_changes() {
        let mut e = Elector::new(NodeAddr::simulated(4, NodeId(9)), group(4));
        assert_eq!(e.others().collect::<Vec<_>>(), group(3));
        assert_eq!(e.start(), Some(Trust(member(1))));
        assert_eq!(e.on_indication(suspect(2)), None, "not the leader");
        assert_eq!(e.on_indication(suspect(1)), Some(Trust(member(3))));
        assert_eq!(e.on_indication(restore(2)), Some(Trust(member(2))));
        assert_eq!(e.on_indication(restore(2)), None);
        assert_eq!(e.on_indication(suspect(3)), None);
        assert_eq!(e.on_indication(suspect(2)), Some(Trust(member(4))), "itself, as listed");
        assert_eq!(e.trusted(), Some(Trust(member(4))));
        assert!(e.is_suspected(member(1)) && !e.is_suspected(member(4)));
    }

    #[test]
    fn never_suspects_itself_and_ignores_strangers() {
        let mut e = Elector::new(member(1), group(3));
        assert_eq!(e.start(), Some(Trust(member(1))));
        assert_eq!(e.on_indication(suspect(1)), None);
        assert_eq!(e.on_indication(FdIndication::Suspect(member(9))), None);
        assert_eq!(e.trusted(), Some(Trust(member(1))));
    }

    #[test]
    fn indications_match_members_by_address_and_name_them_as_listed() {
        let mut e = Elector::new(member(3), group(3));
        e.start();
        let concrete = NodeAddr::simulated(1, NodeId(77));
        assert_eq!(e.on_indication(FdIndication::Suspect(concrete)), Some(Trust(member(2))));
        assert_eq!(e.on_indication(FdIndication::Restore(concrete)), Some(Trust(member(1))));
    }

    #[test]
    fn a_non_member_follows_without_trusting_itself() {
        let mut e = Elector::new(member(9), group(2));
        assert_eq!(e.others().count(), 2);
        assert_eq!(e.start(), Some(Trust(member(1))));
        assert_eq!(e.on_indication(suspect(1)), Some(Trust(member(2))));
        assert_eq!(e.on_indication(suspect(2)), None, "keeps the last leader");
        assert_eq!(e.on_indication(restore(1)), Some(Trust(member(1))));
    }

    #[test]
    fn indications_before_start_are_remembered() {
        let mut e = Elector::new(member(3), group(3));
        assert_eq!(e.on_indication(suspect(1)), None);
        assert_eq!(e.trusted(), None);
        assert_eq!(e.start(), Some(Trust(member(2))));
        assert_eq!(e.start(), Some(Trust(member(2))), "start again: the current leader again");
    }

    #[test]
    fn the_flawed_election_trusts_by_rank_alone() {
        let mut e = Elector::new(member(3), group(3)).with_flaw(Flaw::IgnoreSuspicions);
        assert_eq!(e.start(), Some(Trust(member(1))));
        assert_eq!(e.on_indication(suspect(1)), None);
        assert_eq!(e.on_indication(suspect(2)), None);
        assert_eq!(e.trusted(), Some(Trust(member(1))), "still the crashed leader");
        assert!(!e.is_suspected(member(1)));
    }

    #[test]
    fn a_repeated_member_counts_once() {
        let mut e = Elector::new(member(1), vec![member(1), member(2), member(1), member(3)]);
        assert_eq!(e.group(), &group(3)[..]);
        assert_eq!(e.others().collect::<Vec<_>>(), vec![member(2), member(3)], "never itself");
        assert_eq!(e.start(), Some(Trust(member(1))));
    }

    #[test]
    fn an_empty_group_elects_nobody() {
        let mut e = Elector::new(member(1), Vec::new());
        assert_eq!(e.start(), None);
        assert_eq!(e.on_indication(suspect(1)), None);
    }
}
