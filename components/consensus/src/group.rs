//! The consensus group as one process sees it: members in rank order, compared by address.

use selfman_core::NodeAddr;

/// The members of a consensus group, in rank order (index = rank), and which one is "me".
///
/// Members are compared by socket address, so one listed with
/// [`NodeId::UNKNOWN`](selfman_core::NodeId::UNKNOWN) is whichever incarnation runs there;
/// processes are reported as they are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    me: NodeAddr,
    members: Vec<NodeAddr>,
}

impl Group {
    /// The group `members` (in rank order; a repeated address counts once) seen by `me`.
    pub fn new(me: NodeAddr, members: Vec<NodeAddr>) -> Group {
        let mut list: Vec<NodeAddr> = Vec::with_capacity(members.len());
        for m in members {
            if !list.iter().any(|x| x.addr == m.addr) {
                list.push(m);
            }
        }
        Group { me, members: list }
    }

    /// The members, in rank order.
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

    /// The rank (index) of the member at `p`'s address.
    pub fn rank_of(&self, p: NodeAddr) -> Option<usize> {
        self.members.iter().position(|m| m.addr == p.addr)
    }

    /// This process's rank, if it is a member.
    pub fn my_rank(&self) -> Option<usize> {
        self.rank_of(self.me)
    }

    /// Whether `p` is this process.
    pub fn is_me(&self, p: NodeAddr) -> bool {
        p.addr == self.me.addr
    }

    /// `p` as listed in the group, or as given if it is not a member.
    pub fn name_of(&self, p: NodeAddr) -> NodeAddr {
        self.members.iter().copied().find(|m| m.addr == p.addr).unwrap_or(p)
    }

    /// This process, as listed.
    pub fn me(&self) -> NodeAddr {
        self.name_of(self.me)
    }

    /// Every member but this process.
    pub fn others(&self) -> impl Iterator<Item = NodeAddr> + '_ {
        self.members.iter().copied().filter(move |m| m.addr != self.me.addr)
    }
}

#[cfg(test)]
mod tests {
    use selfman_core::NodeId;

    use super::*;

    #[test]
    fn ranks_majorities_and_names() {
        let m = |i: u32, id: u64| NodeAddr::simulated(i, NodeId(id));
        let g = Group::new(m(2, 5), vec![m(1, 0), m(2, 0), m(3, 0), m(2, 9), m(4, 0)]);
        assert_eq!(g.len(), 4);
        assert_eq!(g.majority(), 3);
        assert_eq!(g.my_rank(), Some(1));
        assert_eq!(g.me(), m(2, 0));
        assert_eq!(g.name_of(m(3, 7)), m(3, 0));
        assert_eq!(g.rank_of(m(9, 1)), None);
        assert_eq!(g.others().count(), 3);
        assert_eq!(Group::new(m(1, 1), vec![m(1, 1)]).majority(), 1);
        assert_eq!(Group::new(m(1, 1), (1..=5).map(|i| m(i, 0)).collect()).majority(), 3);
    }
}
