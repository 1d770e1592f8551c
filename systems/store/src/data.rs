//! The data model: how a Redis value is kept in one record of the transactional store, and
//! what each data command does to the records it reads. Pure: no I/O, no transaction.
//!
//! A record's bytes are a type tag and the payload ([`Stored`]): `s` then the string's bytes,
//! or `S` then the set's members, sorted and distinct, in the list encoding of
//! [`selfman_ports::encode_list`]. Sets are records of the transaction layer like strings (not
//! its lock-free value-sets), so that `SADD` inside `MULTI` is part of the one transaction,
//! `TYPE` and `WRONGTYPE` see one key space, and `DEL` deletes a set.
//!
//! [`run`] carries out operations on a [`View`] of the records a transaction read: it answers
//! each operation in Redis' shape and records the new contents of each key it changes. The
//! backend then buffers those writes and commits; if the commit aborts it reads again and
//! runs the operations again on the new view.
//!
//! Invariants (unit tests below; the real-server differential test checks the replies):
//! * an operation that errors (`WRONGTYPE`, a stored value that is not an integer, an
//!   overflow) changes nothing;
//! * a later operation of the same transaction sees the earlier ones' writes;
//! * [`View::writes`] names only keys whose contents differ from what was read, each once.

use std::collections::{BTreeMap, BTreeSet};

use selfman_ports::{decode_list, encode_list};

use crate::command::{Key, Op, SetCondition, Value};
use crate::resp::Reply;

/// Redis' reply to a command on a key of the other type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
/// Redis' reply when a stored value is not a 64-bit integer.
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
/// Redis' reply when an increment overflows.
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
/// The reply for a record this store cannot decode (never written by it).
pub const CORRUPT: &str = "ERR the stored record of this key is not in the store's format";

/// The contents of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A string.
    Str(Value),
    /// A set: its members.
    Set(BTreeSet<Value>),
}

impl Stored {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Stored::Str(v) => {
                let mut out = Vec::with_capacity(v.len() + 1);
                out.push(b's');
                out.extend_from_slice(v);
                out
            }
            Stored::Set(members) => {
                let list: Vec<Value> = members.iter().cloned().collect();
                let mut out = vec![b'S'];
                out.extend_from_slice(&encode_list(&list));
                out
            }
        }
    }

    /// Reads a record's bytes; `None` if they are not in this format.
    pub fn decode(bytes: &[u8]) -> Option<Stored> {
        match bytes.split_first()? {
            (b's', rest) => Some(Stored::Str(rest.to_vec())),
            (b'S', rest) => {
                let members: BTreeSet<Value> = decode_list(rest)?.into_iter().collect();
                Some(Stored::Set(members))
            }
            _ => None,
        }
    }
}

/// What a key held when read, as this model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Absent,
    Present(Stored),
    /// Bytes not in the store's format: every command on the key answers [`CORRUPT`].
    Corrupt,
}

/// The records one transaction read, and its changes so far.
#[derive(Debug, Default, Clone)]
pub struct View {
    read: BTreeMap<Key, Option<Vec<u8>>>,
    now: BTreeMap<Key, Entry>,
}

impl View {
    /// An empty view.
    pub fn new() -> View {
        View::default()
    }

    /// Records what the transaction read for `key` (`None`: no value).
    pub fn insert_read(&mut self, key: Key, bytes: Option<Vec<u8>>) {
        let entry = match &bytes {
            None => Entry::Absent,
            Some(b) => Stored::decode(b).map_or(Entry::Corrupt, Entry::Present),
        };
        self.now.insert(key.clone(), entry);
        self.read.insert(key, bytes);
    }

    /// Whether `key` was read.
    pub fn has(&self, key: &[u8]) -> bool {
        self.read.contains_key(key)
    }

    /// The record read for `key` (`None`: absent or not read).
    pub fn read_of(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.read.get(key).cloned().flatten()
    }

    /// The keys whose contents changed, each with its new record (`None`: deleted), in key
    /// order.
    pub fn writes(&self) -> Vec<(Key, Option<Vec<u8>>)> {
        self.now
            .iter()
            .filter_map(|(k, e)| {
                let new = match e {
                    Entry::Absent => None,
                    Entry::Present(s) => Some(s.encode()),
                    Entry::Corrupt => return None,
                };
                (self.read.get(k) != Some(&new)).then(|| (k.clone(), new))
            })
            .collect()
    }

    fn get(&self, key: &[u8]) -> &Entry {
        self.now.get(key).unwrap_or(&Entry::Absent)
    }

    fn put(&mut self, key: &[u8], stored: Option<Stored>) {
        let entry = match stored {
            None => Entry::Absent,
            Some(Stored::Set(m)) if m.is_empty() => Entry::Absent,
            Some(s) => Entry::Present(s),
        };
        self.now.insert(key.to_vec(), entry);
    }
}

/// Redis' strict 64-bit integer form: optional `-`, no `+`, no leading zero, no blanks.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = match digits {
        [] => false,
        [b'0'] => bytes.len() == 1,
        [first, ..] => (b'1'..=b'9').contains(first),
    };
    if !canonical || bytes.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Whether [`run`] can carry out `op` (an operation on named keys, not on the whole store).
pub fn is_key_op(op: &Op) -> bool {
    !op.keys().is_empty()
}

/// Carries out `op` on `view` (every key it names must have been read) and answers it.
pub fn run(op: &Op, view: &mut View) -> Reply {
    let wrong = || Reply::error(WRONGTYPE);
    let corrupt = || Reply::error(CORRUPT);
    // Commands that do not look at the contents work on a key of a foreign format too.
    let blind = matches!(
        op,
        Op::Del { .. } | Op::Exists { .. } | Op::Set { get_old: false, .. } | Op::MSet { .. }
    );
    if !blind && op.keys().iter().any(|k| matches!(view.get(k), Entry::Corrupt)) {
        return corrupt();
    }
    match op {
        Op::Get { key } => match view.get(key) {
            Entry::Present(Stored::Str(v)) => Reply::bulk(v),
            Entry::Present(Stored::Set(_)) => wrong(),
            _ => Reply::Null,
        },
        Op::Set { key, value, condition, get_old } => {
            let old = view.get(key).clone();
            let old_reply = match &old {
                Entry::Present(Stored::Str(v)) => Reply::bulk(v),
                Entry::Present(Stored::Set(_)) if *get_old => return wrong(),
                _ => Reply::Null,
            };
            let exists = !matches!(old, Entry::Absent);
            let write = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => !exists,
                SetCondition::IfPresent => exists,
            };
            if write {
                view.put(key, Some(Stored::Str(value.clone())));
            }
            match (get_old, write) {
                (true, _) => old_reply,
                (false, true) => Reply::ok(),
                (false, false) => Reply::Null,
            }
        }
        Op::SetNx { key, value } => {
            if matches!(view.get(key), Entry::Absent) {
                view.put(key, Some(Stored::Str(value.clone())));
                Reply::Integer(1)
            } else {
                Reply::Integer(0)
            }
        }
        Op::GetSet { key, value } => {
            let old = match view.get(key) {
                Entry::Present(Stored::Str(v)) => Reply::bulk(v),
                Entry::Present(Stored::Set(_)) => return wrong(),
                _ => Reply::Null,
            };
            view.put(key, Some(Stored::Str(value.clone())));
            old
        }
        Op::MGet { keys } => Reply::Array(
            keys.iter()
                .map(|k| match view.get(k) {
                    Entry::Present(Stored::Str(v)) => Reply::bulk(v),
                    _ => Reply::Null,
                })
                .collect(),
        ),
        Op::MSet { pairs } => {
            for (k, v) in pairs {
                view.put(k, Some(Stored::Str(v.clone())));
            }
            Reply::ok()
        }
        Op::Del { keys } => {
            let distinct: BTreeSet<&Key> = keys.iter().collect();
            let mut n = 0;
            for k in distinct {
                if !matches!(view.get(k), Entry::Absent) {
                    n += 1;
                }
                view.put(k, None);
            }
            Reply::Integer(n)
        }
        Op::Exists { keys } => Reply::Integer(
            keys.iter().filter(|k| !matches!(view.get(k), Entry::Absent)).count() as i64,
        ),
        Op::IncrBy { key, by } => {
            let current = match view.get(key) {
                Entry::Absent => 0,
                Entry::Present(Stored::Str(v)) => match parse_i64(v) {
                    Some(n) => n,
                    None => return Reply::error(NOT_INTEGER),
                },
                _ => return wrong(),
            };
            let Some(new) = current.checked_add(*by) else { return Reply::error(OVERFLOW) };
            view.put(key, Some(Stored::Str(new.to_string().into_bytes())));
            Reply::Integer(new)
        }
        Op::Append { key, value } => {
            let mut v = match view.get(key) {
                Entry::Absent => Vec::new(),
                Entry::Present(Stored::Str(v)) => v.clone(),
                _ => return wrong(),
            };
            v.extend_from_slice(value);
            let len = v.len() as i64;
            view.put(key, Some(Stored::Str(v)));
            Reply::Integer(len)
        }
        Op::StrLen { key } => match view.get(key) {
            Entry::Absent => Reply::Integer(0),
            Entry::Present(Stored::Str(v)) => Reply::Integer(v.len() as i64),
            _ => wrong(),
        },
        Op::SAdd { key, members } => {
            let mut set = match view.get(key) {
                Entry::Absent => BTreeSet::new(),
                Entry::Present(Stored::Set(m)) => m.clone(),
                _ => return wrong(),
            };
            let added = members.iter().filter(|m| set.insert((*m).clone())).count();
            view.put(key, Some(Stored::Set(set)));
            Reply::Integer(added as i64)
        }
        Op::SRem { key, members } => {
            let mut set = match view.get(key) {
                Entry::Absent => return Reply::Integer(0),
                Entry::Present(Stored::Set(m)) => m.clone(),
                _ => return wrong(),
            };
            let removed = members.iter().filter(|m| set.remove(*m)).count();
            view.put(key, Some(Stored::Set(set)));
            Reply::Integer(removed as i64)
        }
        Op::SMembers { key } => match view.get(key) {
            Entry::Absent => Reply::Set(Vec::new()),
            Entry::Present(Stored::Set(m)) => Reply::Set(m.iter().map(Reply::bulk).collect()),
            _ => wrong(),
        },
        Op::SIsMember { key, member } => match view.get(key) {
            Entry::Absent => Reply::Integer(0),
            Entry::Present(Stored::Set(m)) => Reply::Integer(i64::from(m.contains(member))),
            _ => wrong(),
        },
        Op::SCard { key } => match view.get(key) {
            Entry::Absent => Reply::Integer(0),
            Entry::Present(Stored::Set(m)) => Reply::Integer(m.len() as i64),
            _ => wrong(),
        },
        Op::Type { key } => Reply::Simple(
            match view.get(key) {
                Entry::Absent => "none",
                Entry::Present(Stored::Str(_)) => "string",
                Entry::Present(Stored::Set(_)) => "set",
                Entry::Corrupt => return corrupt(),
            }
            .to_owned(),
        ),
        Op::DbSize
        | Op::Scan { .. }
        | Op::Keys { .. }
        | Op::FlushAll { .. }
        | Op::FlushDb { .. }
        | Op::Info { .. }
        | Op::ConfigGet { .. } => {
            Reply::error("ERR this command works on the whole store, which a transaction cannot")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(pairs: &[(&str, Option<Stored>)]) -> View {
        let mut v = View::new();
        for (k, s) in pairs {
            v.insert_read(k.as_bytes().to_vec(), s.as_ref().map(Stored::encode));
        }
        v
    }

    fn k(s: &str) -> Key {
        s.as_bytes().to_vec()
    }

    #[test]
    fn records_round_trip_and_foreign_bytes_are_corrupt() {
        let set: BTreeSet<Value> = [k("b"), k("a")].into_iter().collect();
        for s in [Stored::Str(k("")), Stored::Str(k("x")), Stored::Set(set)] {
            assert_eq!(Stored::decode(&s.encode()), Some(s));
        }
        assert_eq!(Stored::decode(b""), None);
        assert_eq!(Stored::decode(b"xyz"), None);
        assert_eq!(Stored::decode(b"S\x05\x00"), None);
        let mut v = View::new();
        v.insert_read(k("c"), Some(b"?".to_vec()));
        assert_eq!(run(&Op::Get { key: k("c") }, &mut v), Reply::error(CORRUPT));
        assert_eq!(run(&Op::Del { keys: vec![k("c")] }, &mut v), Reply::Integer(1));
        assert_eq!(v.writes(), vec![(k("c"), None)]);
    }

    #[test]
    fn strict_integers() {
        for (s, n) in [("0", Some(0)), ("-1", Some(-1)), ("9223372036854775807", Some(i64::MAX))] {
            assert_eq!(parse_i64(s.as_bytes()), n);
        }
        for s in ["", "-", "+1", "01", "-0", " 1", "1 ", "9223372036854775808", "1a"] {
            assert_eq!(parse_i64(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn counters_fail_without_writing() {
        let mut v = view(&[
            ("n", Some(Stored::Str(k("9223372036854775806")))),
            ("t", Some(Stored::Str(k("x")))),
        ]);
        assert_eq!(run(&Op::IncrBy { key: k("n"), by: 1 }, &mut v), Reply::Integer(i64::MAX));
        assert_eq!(run(&Op::IncrBy { key: k("n"), by: 1 }, &mut v), Reply::error(OVERFLOW));
        assert_eq!(run(&Op::IncrBy { key: k("t"), by: 1 }, &mut v), Reply::error(NOT_INTEGER));
        assert_eq!(
            v.writes(),
            vec![(k("n"), Some(Stored::Str(k("9223372036854775807")).encode()))]
        );
    }

    #[test]
    fn later_operations_see_earlier_writes_and_types_are_kept_apart() {
        let mut v = view(&[("a", None), ("s", None)]);
        assert_eq!(run(&Op::Append { key: k("a"), value: k("xy") }, &mut v), Reply::Integer(2));
        assert_eq!(run(&Op::StrLen { key: k("a") }, &mut v), Reply::Integer(2));
        assert_eq!(
            run(&Op::SAdd { key: k("s"), members: vec![k("m"), k("m")] }, &mut v),
            Reply::Integer(1)
        );
        assert_eq!(run(&Op::Get { key: k("s") }, &mut v), Reply::error(WRONGTYPE));
        assert_eq!(
            run(&Op::SAdd { key: k("a"), members: vec![k("m")] }, &mut v),
            Reply::error(WRONGTYPE)
        );
        assert_eq!(run(&Op::Type { key: k("s") }, &mut v), Reply::Simple("set".into()));
        assert_eq!(
            run(&Op::MGet { keys: vec![k("a"), k("s")] }, &mut v),
            Reply::Array(vec![Reply::bulk("xy"), Reply::Null])
        );
        assert_eq!(
            run(&Op::SRem { key: k("s"), members: vec![k("m")] }, &mut v),
            Reply::Integer(1)
        );
        assert_eq!(
            run(&Op::Exists { keys: vec![k("s"), k("a"), k("a")] }, &mut v),
            Reply::Integer(2)
        );
        assert_eq!(
            v.writes(),
            vec![(k("a"), Some(Stored::Str(k("xy")).encode()))],
            "an emptied set is no write"
        );
    }

    #[test]
    fn set_conditions_and_get() {
        let mut v = view(&[("k", Some(Stored::Str(k("old")))), ("z", None)]);
        let set = |key: &str, condition, get_old| Op::Set {
            key: k(key),
            value: k("new"),
            condition,
            get_old,
        };
        assert_eq!(run(&set("k", SetCondition::IfAbsent, true), &mut v), Reply::bulk("old"));
        assert_eq!(run(&set("z", SetCondition::IfPresent, false), &mut v), Reply::Null);
        assert!(v.writes().is_empty());
        assert_eq!(run(&set("k", SetCondition::IfPresent, true), &mut v), Reply::bulk("old"));
        assert_eq!(run(&Op::SetNx { key: k("k"), value: k("x") }, &mut v), Reply::Integer(0));
        assert_eq!(run(&Op::Del { keys: vec![k("k"), k("k"), k("z")] }, &mut v), Reply::Integer(1));
        assert_eq!(v.writes(), vec![(k("k"), None)]);
    }
}
