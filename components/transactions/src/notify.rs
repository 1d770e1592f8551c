//! The notification layer: subscribers of a key are told when a replica of it is locked by a
//! transaction's prepared vote, when a commit changes it, and when an abort unlocks it.
//!
//! A subscriber routes `Subscribe` to each replica key of the key and renews it at a third of
//! its lease; the participants at those replicas send `Notify` as their votes and decisions
//! happen. Several replicas tell the same change: the subscriber passes a `Changed` on only
//! for a version above the highest it has seen, and a lock event only once per transaction.
//!
//! Bounds: [`MAX_KEYS`] keys with subscribers at a node, [`MAX_PER_KEY`] subscribers each;
//! more are counted as `Overloaded` and dropped. Subscriptions end with their lease.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{KeyEvent, RingId, TxId, TxIndication, Version};

use crate::faults::Fault;
use crate::machine::{TxMachine, TxOutput};
use crate::messages::TxMessage;

/// Keys with subscribers held at one node.
pub const MAX_KEYS: usize = 65_536;

/// Subscribers of one key at one node.
pub const MAX_PER_KEY: usize = 256;

/// Lock events a subscriber remembers per key, to pass each on once.
const SEEN_LOCKS: usize = 64;

/// What the subscriber knows of one key.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mine {
    renew_at: Time,
    seen: Version,
    locks: BTreeSet<(TxId, bool)>,
}

/// Subscriptions held at this node as a replica, and this node's own.
#[derive(Clone, Debug, Default)]
pub(crate) struct Subscriptions {
    /// Subscribers of keys this node holds replicas of, with their lease ends.
    at_replica: BTreeMap<Vec<u8>, BTreeMap<NodeAddr, Time>>,
    /// Keys this node's client subscribed to.
    mine: BTreeMap<Vec<u8>, Mine>,
}

impl Subscriptions {
    pub(crate) fn remove(&mut self, key: &[u8], who: NodeAddr) {
        if let Some(s) = self.at_replica.get_mut(key) {
            s.remove(&who);
            if s.is_empty() {
                self.at_replica.remove(key);
            }
        }
    }

    /// Subscribers at this node, all keys.
    pub(crate) fn len(&self) -> usize {
        self.at_replica.values().map(BTreeMap::len).sum()
    }
}

fn key_of(e: &KeyEvent) -> &Vec<u8> {
    match e {
        KeyEvent::Locked { key, .. }
        | KeyEvent::Changed { key, .. }
        | KeyEvent::Unlocked { key, .. } => key,
    }
}

impl TxMachine {
    pub(crate) fn subscribe_here(
        &mut self,
        from: NodeAddr,
        key: Vec<u8>,
        lease_ms: u64,
        now: Time,
    ) {
        let lease = Duration::from_millis(lease_ms).min(self.config.subscription_lease * 2);
        let full =
            self.subs.at_replica.len() >= MAX_KEYS && !self.subs.at_replica.contains_key(&key);
        let per_key = self.subs.at_replica.get(&key).map_or(0, BTreeMap::len);
        if full || per_key >= MAX_PER_KEY {
            return self.faults.add(Fault::Overloaded, &format_args!("subscription from {from:?}"));
        }
        self.subs.at_replica.entry(key).or_default().insert(from, now + lease);
    }

    /// Tells the subscribers of the event's key at this replica.
    pub(crate) fn notify_local(&mut self, ev: KeyEvent, out: &mut Vec<TxOutput>) {
        let Some(subs) = self.subs.at_replica.get(key_of(&ev)) else { return };
        let to: Vec<NodeAddr> = subs.keys().copied().collect();
        for s in to {
            self.send(s, TxMessage::Notify(ev.clone()), out);
        }
    }

    pub(crate) fn notified(&mut self, ev: KeyEvent, out: &mut Vec<TxOutput>) {
        let Some(m) = self.subs.mine.get_mut(key_of(&ev)) else { return };
        let new = match &ev {
            KeyEvent::Changed { version, .. } => {
                let new = *version > m.seen;
                m.seen = m.seen.max(*version);
                new
            }
            KeyEvent::Locked { tx, .. } | KeyEvent::Unlocked { tx, .. } => {
                let locked = matches!(ev, KeyEvent::Locked { .. });
                if m.locks.len() >= SEEN_LOCKS {
                    m.locks.pop_first();
                }
                m.locks.insert((*tx, locked))
            }
        };
        if new {
            out.push(TxOutput::Indicate(TxIndication::Notify(ev)));
        }
    }

    pub(crate) fn subscribe(&mut self, key: Vec<u8>, now: Time, out: &mut Vec<TxOutput>) {
        self.subs.mine.entry(key.clone()).or_default().renew_at = now;
        self.renew(&key, now, out);
    }

    fn renew(&mut self, key: &[u8], now: Time, out: &mut Vec<TxOutput>) {
        let lease = self.config.subscription_lease;
        let Some(m) = self.subs.mine.get_mut(key) else { return };
        m.renew_at = now + lease / 3;
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        for r in 0..self.config.f {
            let msg = TxMessage::Subscribe { key: key.to_vec(), lease_ms };
            out.push(TxOutput::Route { key: RingId::of_key(key).replica(r, self.config.f), msg });
        }
    }

    pub(crate) fn unsubscribe(&mut self, key: Vec<u8>, out: &mut Vec<TxOutput>) {
        if self.subs.mine.remove(&key).is_none() {
            return;
        }
        for r in 0..self.config.f {
            let msg = TxMessage::Unsubscribe { key: key.clone() };
            out.push(TxOutput::Route { key: RingId::of_key(&key).replica(r, self.config.f), msg });
        }
    }

    pub(crate) fn tick_subscriptions(&mut self, now: Time, out: &mut Vec<TxOutput>) {
        for s in self.subs.at_replica.values_mut() {
            s.retain(|_, until| *until > now);
        }
        self.subs.at_replica.retain(|_, s| !s.is_empty());
        let due: Vec<Vec<u8>> = self
            .subs
            .mine
            .iter()
            .filter(|(_, m)| now >= m.renew_at)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.renew(&k, now, out);
        }
    }
}
