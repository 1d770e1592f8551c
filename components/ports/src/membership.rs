//! A group as one process sees it: [`Membership`].
//!
//! Invariants:
//! * members are **compared by socket address**: a member listed with
//!   [`NodeId::UNKNOWN`](selfman_core::NodeId::UNKNOWN) is whichever incarnation runs at its
//!   address, and a message from any incarnation there is from that member;
//! * members are **named as configured**: whatever the network calls a process, the view
//!   reports the member at its address as it was listed ([`Membership::name_of`]);
//! * a **repeated address counts once**, the first listing wins; ranks are positions in the
//!   list after that (index 0 ranks highest);
//! * the **version grows on every change** of the member list and on nothing else, so two
//!   views of one `Membership` with the same version have the same members.
//!
//! Broadcast sends to [`Membership::others`], leader election ranks by
//! [`Membership::rank_of`], consensus counts [`Membership::majority`]; a protocol whose group
//! changes at runtime (the relaxed ring) replaces the list with [`Membership::set`] and tells
//! views apart by [`Membership::version`].

use selfman_core::NodeAddr;

/// The members of a group in rank order, which of them is this process, and how many times
/// the list has changed.
///
/// `me` need not be a member: a process outside the group sends to every member, follows but
/// is never ranked, and names itself as the network names it.
///
/// # Examples
///
/// ```
/// use selfman_core::{NodeAddr, NodeId};
/// use selfman_ports::Membership;
///
/// let at = |i| NodeAddr::simulated(i, NodeId::UNKNOWN);
/// let me = NodeAddr::simulated(2, NodeId(7)); // this incarnation of the member at address 2
/// let mut view = Membership::new(me, vec![at(1), at(2), at(3), at(2)]);
/// assert_eq!(view.members(), &[at(1), at(2), at(3)]); // the repeated address counts once
/// assert_eq!(view.my_rank(), Some(1));
/// assert_eq!(view.me(), at(2)); // named as listed
/// assert_eq!(view.others().collect::<Vec<_>>(), vec![at(1), at(3)]);
/// assert_eq!(view.majority(), 2);
///
/// assert!(view.set(vec![at(2), at(3)]));
/// assert_eq!((view.version(), view.my_rank()), (1, Some(0)));
/// assert!(!view.set(vec![at(2), at(3), at(3)]), "the same members: no change");
/// assert_eq!(view.version(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    me: NodeAddr,
    /// Without repeated addresses, in rank order.
    members: Vec<NodeAddr>,
    version: u64,
}

impl Membership {
    /// The group `members` (in rank order; a repeated address counts once, the first as
    /// given) seen by process `me`, at version 0.
    pub fn new(me: NodeAddr, members: Vec<NodeAddr>) -> Membership {
        Membership { me, members: unique(members), version: 0 }
    }

    /// Replaces the members (a repeated address counts once, the first as given). Returns
    /// whether the list changed; if it did, the version grows by one.
    pub fn set(&mut self, members: Vec<NodeAddr>) -> bool {
        let members = unique(members);
        if members == self.members {
            return false;
        }
        self.members = members;
        self.version += 1;
        true
    }

    /// How many times the member list has changed since [`Membership::new`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The members, in rank order, as configured.
    pub fn members(&self) -> &[NodeAddr] {
        &self.members
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The smallest number of members that is more than half of them.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// The rank (index) of the member at `p`'s address, if there is one.
    pub fn rank_of(&self, p: NodeAddr) -> Option<usize> {
        self.members.iter().position(|m| m.addr == p.addr)
    }

    /// Whether a member is at `p`'s address.
    pub fn contains(&self, p: NodeAddr) -> bool {
        self.rank_of(p).is_some()
    }

    /// This process's rank, if it is a member.
    pub fn my_rank(&self) -> Option<usize> {
        self.rank_of(self.me)
    }

    /// Whether `p` is this process (by address).
    pub fn is_me(&self, p: NodeAddr) -> bool {
        p.addr == self.me.addr
    }

    /// `p` as listed, or as given if no member is at its address.
    pub fn name_of(&self, p: NodeAddr) -> NodeAddr {
        self.members.iter().copied().find(|m| m.addr == p.addr).unwrap_or(p)
    }

    /// This process, as listed (as given to [`Membership::new`] if it is not a member).
    pub fn me(&self) -> NodeAddr {
        self.name_of(self.me)
    }

    /// Every member but this process, in rank order: where a broadcast goes, whom to monitor.
    pub fn others(&self) -> impl Iterator<Item = NodeAddr> + '_ {
        self.members.iter().copied().filter(move |m| m.addr != self.me.addr)
    }
}

/// `members` without repeated addresses, the first of each kept, in order.
fn unique(members: Vec<NodeAddr>) -> Vec<NodeAddr> {
    let mut list: Vec<NodeAddr> = Vec::with_capacity(members.len());
    for m in members {
        if !list.iter().any(|x| x.addr == m.addr) {
            list.push(m);
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use selfman_core::NodeId;

    use super::*;

    fn m(i: u32, id: u64) -> NodeAddr {
        NodeAddr::simulated(i, NodeId(id))
    }

    #[test]
    fn ranks_majorities_and_names() {
        let g = Membership::new(m(2, 5), vec![m(1, 0), m(2, 0), m(3, 0), m(2, 9), m(4, 0)]);
        assert_eq!(g.len(), 4);
        assert!(!g.is_empty());
        assert_eq!(g.majority(), 3);
        assert_eq!(g.my_rank(), Some(1));
        assert!(g.is_me(m(2, 1)) && !g.is_me(m(3, 5)));
        assert_eq!(g.me(), m(2, 0));
        assert_eq!(g.name_of(m(3, 7)), m(3, 0));
        assert_eq!(g.rank_of(m(9, 1)), None);
        assert!(g.contains(m(4, 3)) && !g.contains(m(9, 0)));
        assert_eq!(g.others().collect::<Vec<_>>(), vec![m(1, 0), m(3, 0), m(4, 0)]);
        assert_eq!(Membership::new(m(1, 1), vec![m(1, 1)]).majority(), 1);
        assert_eq!(Membership::new(m(1, 1), (1..=5).map(|i| m(i, 0)).collect()).majority(), 3);
    }

    #[test]
    fn a_repeated_address_counts_once_the_first_listing_wins() {
        let g = Membership::new(m(9, 0), vec![m(1, 4), m(2, 0), m(1, 5), m(2, 6)]);
        assert_eq!(g.members(), &[m(1, 4), m(2, 0)]);
        assert_eq!(g.name_of(m(1, 5)), m(1, 4));
        assert_eq!(g.majority(), 2);
    }

    #[test]
    fn an_outsider_sends_to_everyone_and_keeps_its_own_name() {
        let g = Membership::new(m(7, 3), vec![m(1, 0), m(2, 0)]);
        assert_eq!(g.my_rank(), None);
        assert_eq!(g.others().count(), 2);
        assert_eq!(g.me(), m(7, 3));
        assert_eq!(g.name_of(m(8, 1)), m(8, 1), "a non-member keeps its network name");
        let empty = Membership::new(m(1, 0), Vec::new());
        assert!(empty.is_empty());
        assert_eq!((empty.len(), empty.majority(), empty.others().count()), (0, 1, 0));
    }

    #[test]
    fn the_version_grows_on_each_change_and_only_then() {
        let mut g = Membership::new(m(1, 0), vec![m(1, 0), m(2, 0), m(3, 0)]);
        assert_eq!(g.version(), 0);
        assert!(!g.set(vec![m(1, 0), m(2, 0), m(3, 0), m(2, 0)]));
        assert_eq!(g.version(), 0);
        assert!(g.set(vec![m(1, 0), m(3, 0)]));
        assert_eq!((g.version(), g.rank_of(m(3, 0)), g.contains(m(2, 0))), (1, Some(1), false));
        // Another order is another view (ranks changed), as is another name at an address.
        assert!(g.set(vec![m(3, 0), m(1, 0)]));
        assert!(g.set(vec![m(3, 4), m(1, 0)]));
        assert_eq!(g.version(), 3);
        assert_eq!(g.name_of(m(3, 0)), m(3, 4));
        let before = g.clone();
        assert!(g.set(Vec::new()));
        assert_ne!(g, before);
        assert_eq!((g.version(), g.my_rank(), g.others().count()), (4, None, 0));
    }
}
