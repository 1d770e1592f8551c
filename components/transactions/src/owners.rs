//! [`Owners`]: a bounded memory of which node answered for which replica key, so that a TM
//! can pack the prepares it expects one node to receive into one routed
//! [`TxMessage::Batch`](crate::messages::TxMessage::Batch).
//!
//! Invariants: it holds at most `cap` points (the oldest learned go first); it is only a
//! guess — a batch is routed to its first prepare's replica key, and the receiver keeps only
//! the prepares whose replica key is in its own range (re-routing the others), so a stale or
//! wrong guess costs a hop, never a participant at the wrong node.

use std::collections::{BTreeMap, VecDeque};

use selfman_core::NodeAddr;
use selfman_ports::RingId;

/// Replica keys and the node that was responsible for each.
#[derive(Clone, Debug)]
pub(crate) struct Owners {
    map: BTreeMap<RingId, NodeAddr>,
    /// Keys in the order learned.
    order: VecDeque<RingId>,
    cap: usize,
}

impl Owners {
    /// An empty memory of at most `cap` points.
    pub(crate) fn new(cap: usize) -> Self {
        Owners { map: BTreeMap::new(), order: VecDeque::new(), cap: cap.max(1) }
    }

    /// `node` was responsible for `key`.
    pub(crate) fn learn(&mut self, key: RingId, node: NodeAddr) {
        if let Some(old) = self.map.get_mut(&key) {
            *old = node;
            return;
        }
        if self.map.len() >= self.cap {
            if let Some(k) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
        self.map.insert(key, node);
        self.order.push_back(key);
    }

    /// The node likely responsible for `key`: the one known for the nearest known keys on
    /// both sides of it (`None` if they differ, or nothing is known).
    pub(crate) fn guess(&self, key: RingId) -> Option<NodeAddr> {
        let after = self.map.range(key..).next().or_else(|| self.map.iter().next());
        let before = self.map.range(..=key).next_back().or_else(|| self.map.iter().next_back());
        match (before, after) {
            (Some((_, a)), Some((_, b))) if a == b => Some(*a),
            _ => None,
        }
    }

    /// Points held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use selfman_core::{NodeAddr, NodeId};
    use selfman_ports::RingId;

    use super::Owners;

    fn n(i: u32) -> NodeAddr {
        NodeAddr::simulated(i, NodeId(u64::from(i)))
    }

    #[test]
    fn a_key_between_two_points_of_one_node_is_guessed_to_be_its() {
        let mut o = Owners::new(8);
        assert_eq!(o.guess(RingId(5)), None, "nothing known");
        o.learn(RingId(10), n(1));
        o.learn(RingId(20), n(1));
        o.learn(RingId(30), n(2));
        assert_eq!(o.guess(RingId(15)), Some(n(1)));
        assert_eq!(o.guess(RingId(20)), Some(n(1)), "a known point");
        assert_eq!(o.guess(RingId(25)), None, "between two nodes");
        assert_eq!(o.guess(RingId(35)), None, "wraps: 30 is n2's, 10 is n1's");
        o.learn(RingId(30), n(1));
        assert_eq!(o.guess(RingId(35)), Some(n(1)), "relearned, and around the top");
    }

    #[test]
    fn the_memory_is_bounded_oldest_first() {
        let mut o = Owners::new(3);
        for k in 0..5u64 {
            o.learn(RingId(k * 10), n(1));
        }
        assert_eq!(o.len(), 3);
        o.learn(RingId(25), n(2));
        assert_eq!(o.len(), 3);
        assert_eq!(o.guess(RingId(25)), Some(n(2)));
    }
}
