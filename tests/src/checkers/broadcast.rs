//! The checker of best-effort broadcast ([`BroadcastChecker`]) over the messages of the `beb`
//! scenario ([`Chat`]):
//!
//! * **no duplication**: no receiver incarnation delivers a broadcast twice;
//! * **no creation**: every delivery was broadcast, by the sender the network reports;
//! * **group change**: the member left out of the new group delivers nothing broadcast to it
//!   by others;
//! * **validity** (at the end): every message broadcast before a cutoff by a sender still
//!   running, to a group containing a running receiver that started before it, was delivered
//!   there.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use selfman_core::{NodeAddr, Time};
use selfman_ports::BebDeliver;
use serde::{Deserialize, Serialize};

/// A broadcast message that says who sent it (which incarnation) and for which group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    /// The sender's incarnation.
    pub origin: NodeAddr,
    /// Its number among the sender's broadcasts.
    pub seq: u64,
    /// When it was sent (virtual nanoseconds).
    pub sent_at: u64,
    /// 0: the whole group; 1: the group without the member the checker was told is left
    /// out ([`BroadcastChecker::new`]).
    pub group: u8,
}

/// Everything broadcast and delivered in a `beb` run, checked as it is recorded (no
/// duplication, no creation, nothing delivered outside the group) and at the end (validity).
#[derive(Debug)]
pub struct BroadcastChecker {
    /// The member that group 1 leaves out.
    left: SocketAddr,
    /// Broadcasts by (sender incarnation, sequence number).
    sent: BTreeMap<(NodeAddr, u64), Chat>,
    /// Deliveries: receiver incarnation → (sender incarnation, seq) → times delivered.
    delivered: BTreeMap<NodeAddr, BTreeMap<(NodeAddr, u64), u32>>,
    /// When each incarnation started.
    started: BTreeMap<NodeAddr, Time>,
    /// Violations of no duplication and no creation, found at delivery.
    pub found: Vec<String>,
}

impl BroadcastChecker {
    /// A checker of broadcasts to the whole group (`Chat::group` 0) or to the group without
    /// the member at `left` (1).
    pub fn new(left: SocketAddr) -> BroadcastChecker {
        BroadcastChecker {
            left,
            sent: BTreeMap::new(),
            delivered: BTreeMap::new(),
            started: BTreeMap::new(),
            found: Vec::new(),
        }
    }

    /// Forgets everything recorded (a sweep of many seeds must not keep each seed's log).
    pub fn clear(&mut self) {
        *self = BroadcastChecker::new(self.left);
    }

    /// `c` was broadcast.
    pub fn broadcast(&mut self, c: &Chat) {
        self.sent.insert((c.origin, c.seq), c.clone());
    }

    /// Records a delivery at `me` and checks no duplication and no creation.
    pub fn deliver(&mut self, me: NodeAddr, d: &BebDeliver<Chat>) {
        let key = (d.msg.origin, d.msg.seq);
        match self.sent.get(&key) {
            None => self.found.push(format!("{me} delivered {:?}, never broadcast", d.msg)),
            Some(c) if *c != d.msg || d.from.addr != c.origin.addr => self.found.push(format!(
                "{me} delivered {:?} from {}, but {c:?} was broadcast",
                d.msg, d.from
            )),
            Some(c) if c.group == 1 && me.addr == self.left && c.origin.addr != me.addr => {
                self.found.push(format!("{me} delivered {c:?}, broadcast to a group without it"))
            }
            Some(_) => {}
        }
        let n = self.delivered.entry(me).or_default().entry(key).or_insert(0);
        *n += 1;
        if *n > 1 {
            self.found.push(format!("{me} delivered {:?} {n} times", d.msg));
        }
    }

    /// `node` started at `at` (it is held to validity for what is broadcast later).
    pub fn node_started(&mut self, node: NodeAddr, at: Time) {
        self.started.insert(node, at);
    }

    /// Validity: every message broadcast before `cutoff` by a sender still running, to a group
    /// containing a receiver that is running and started before the broadcast, was delivered
    /// there.
    ///
    /// # Errors
    ///
    /// Names the first message and receiver that miss, or says the run checked too little.
    pub fn check_validity(&self, alive: &[NodeAddr], cutoff: Time) -> Result<(), String> {
        let mut checked = 0u64;
        for ((origin, seq), c) in &self.sent {
            if !alive.contains(origin) || c.sent_at > cutoff.0 {
                continue;
            }
            for r in alive {
                let started = self.started.get(r).copied().unwrap_or(Time(u64::MAX));
                let in_group = c.group == 0 || r.addr != self.left;
                if !in_group || started.0 > c.sent_at {
                    continue;
                }
                checked += 1;
                let got = self.delivered.get(r).and_then(|m| m.get(&(*origin, *seq)));
                if got.is_none() {
                    return Err(format!("{r} never delivered {c:?}"));
                }
            }
        }
        if checked < 200 {
            return Err(format!("only {checked} deliveries were checked: the run did too little"));
        }
        Ok(())
    }
}
