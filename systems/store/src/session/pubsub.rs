//! One connection's subscriptions, and the shapes of pub/sub replies.
//!
//! Invariants:
//! * a channel or pattern is subscribed at most once; subscribing again confirms without
//!   registering anything new, and unsubscribing what is not subscribed confirms with the
//!   count unchanged;
//! * every confirmation carries the number of subscriptions left (channels and patterns
//!   together), as Redis does; the connection is in pub/sub mode while that number is not 0;
//! * the notification layer is told of exactly the changes ([`Topic`]s newly subscribed or
//!   newly dropped), never of repeats.

use std::collections::BTreeSet;

use crate::resp::Reply;

/// What a connection listens to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    /// One channel, such as `__keyspace@0__:k`.
    Channel(Vec<u8>),
    /// The channels matching a glob-style pattern, such as `__keyspace@0__:user:*`.
    Pattern(Vec<u8>),
}

/// `message` pushed to a subscriber of `channel`.
pub fn message(channel: &[u8], payload: &[u8]) -> Reply {
    Reply::Push(vec![Reply::bulk("message"), Reply::bulk(channel), Reply::bulk(payload)])
}

/// `pmessage` pushed to a subscriber of `pattern`, for a message on `channel`.
pub fn pmessage(pattern: &[u8], channel: &[u8], payload: &[u8]) -> Reply {
    Reply::Push(vec![
        Reply::bulk("pmessage"),
        Reply::bulk(pattern),
        Reply::bulk(channel),
        Reply::bulk(payload),
    ])
}

#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
}

fn confirmation(kind: &str, name: Option<&[u8]>, count: usize) -> Reply {
    Reply::Push(vec![
        Reply::bulk(kind),
        name.map_or(Reply::Null, Reply::bulk),
        Reply::Integer(i64::try_from(count).unwrap_or(i64::MAX)),
    ])
}

impl Subscriptions {
    /// Channels and patterns together.
    pub(crate) fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// How many of `names` are not subscribed yet (repeats counted once).
    pub(crate) fn new_ones(&self, patterns: bool, names: &[Vec<u8>]) -> usize {
        let set = if patterns { &self.patterns } else { &self.channels };
        names.iter().filter(|n| !set.contains(*n)).collect::<BTreeSet<_>>().len()
    }

    /// `SUBSCRIBE` / `PSUBSCRIBE`: one confirmation per name; the topics newly subscribed.
    pub(crate) fn subscribe(
        &mut self,
        patterns: bool,
        names: Vec<Vec<u8>>,
    ) -> (Vec<Reply>, Vec<Topic>) {
        let kind = if patterns { "psubscribe" } else { "subscribe" };
        let (mut replies, mut added) = (Vec::new(), Vec::new());
        for name in names {
            let set = if patterns { &mut self.patterns } else { &mut self.channels };
            if set.insert(name.clone()) {
                added.push(if patterns {
                    Topic::Pattern(name.clone())
                } else {
                    Topic::Channel(name.clone())
                });
            }
            replies.push(confirmation(kind, Some(&name), self.count()));
        }
        (replies, added)
    }

    /// `UNSUBSCRIBE` / `PUNSUBSCRIBE`: with no names, of everything of that kind (and with
    /// nothing subscribed, one confirmation with a null name); the topics dropped.
    pub(crate) fn unsubscribe(
        &mut self,
        patterns: bool,
        names: Vec<Vec<u8>>,
    ) -> (Vec<Reply>, Vec<Topic>) {
        let kind = if patterns { "punsubscribe" } else { "unsubscribe" };
        let set = if patterns { &self.patterns } else { &self.channels };
        let names = if names.is_empty() { set.iter().cloned().collect() } else { names };
        if names.is_empty() {
            return (vec![confirmation(kind, None, self.count())], Vec::new());
        }
        let (mut replies, mut dropped) = (Vec::new(), Vec::new());
        for name in names {
            let set = if patterns { &mut self.patterns } else { &mut self.channels };
            if set.remove(&name) {
                dropped.push(if patterns {
                    Topic::Pattern(name.clone())
                } else {
                    Topic::Channel(name.clone())
                });
            }
            replies.push(confirmation(kind, Some(&name), self.count()));
        }
        (replies, dropped)
    }

    /// Drops everything (`RESET`); the topics dropped.
    pub(crate) fn clear(&mut self) -> Vec<Topic> {
        let channels = std::mem::take(&mut self.channels).into_iter().map(Topic::Channel);
        let patterns = std::mem::take(&mut self.patterns).into_iter().map(Topic::Pattern);
        channels.chain(patterns).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{confirmation, Subscriptions, Topic};

    fn v(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn counts_cover_channels_and_patterns_and_repeats_register_once() {
        let mut s = Subscriptions::default();
        let (replies, added) = s.subscribe(false, v(&["a", "a"]));
        assert_eq!(replies, vec![confirmation("subscribe", Some(b"a"), 1); 2]);
        assert_eq!(added, vec![Topic::Channel(b"a".to_vec())]);
        let (replies, added) = s.subscribe(true, v(&["p*"]));
        assert_eq!(replies, vec![confirmation("psubscribe", Some(b"p*"), 2)]);
        assert_eq!(added, vec![Topic::Pattern(b"p*".to_vec())]);
        assert_eq!(s.new_ones(false, &v(&["a", "b", "b"])), 1);
        // Unsubscribing all channels leaves the pattern counted.
        let (replies, dropped) = s.unsubscribe(false, vec![]);
        assert_eq!(replies, vec![confirmation("unsubscribe", Some(b"a"), 1)]);
        assert_eq!(dropped, vec![Topic::Channel(b"a".to_vec())]);
        let (replies, dropped) = s.unsubscribe(false, vec![]);
        assert_eq!(replies, vec![confirmation("unsubscribe", None, 1)]);
        assert!(dropped.is_empty());
        let (replies, dropped) = s.unsubscribe(true, v(&["x"]));
        assert_eq!(replies, vec![confirmation("punsubscribe", Some(b"x"), 1)]);
        assert!(dropped.is_empty());
        assert_eq!(s.clear(), vec![Topic::Pattern(b"p*".to_vec())]);
        assert_eq!(s.count(), 0);
    }
}
