//! Typed commands: [`Op`], what the layers below carry out, and [`Control`], what the session
//! answers itself.
//!
//! An [`Op`] is fully validated: every option is understood, every number parsed, every
//! combination allowed. What is left to the backend is what depends on the data (a key of the
//! wrong type, a stored value that is not an integer, an increment that overflows). Each
//! variant's documentation says the reply the backend gives, in Redis' shape.

use crate::resp::Protocol;

/// A key: any bytes.
pub type Key = Vec<u8>;

/// A value: any bytes.
pub type Value = Vec<u8>;

/// When `SET` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// Whether or not the key exists.
    Always,
    /// Only if the key does not exist (`NX`).
    IfAbsent,
    /// Only if the key exists (`XX`).
    IfPresent,
}

/// `FLUSHALL` / `FLUSHDB`'s mode. The store answers once the deletion has committed in either
/// case; the mode is passed on for the backend to honour or ignore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// No mode given.
    Default,
    /// `ASYNC`.
    Async,
    /// `SYNC`.
    Sync,
}

/// A data operation, for the layers below. Keys are routed through the ring; each single
/// command is one transaction of the transaction layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `GET key`: bulk value, or null if absent; `WRONGTYPE` on a set.
    Get {
        /// The key.
        key: Key,
    },
    /// `SET key value [NX|XX] [GET]`: `+OK`, or null if the condition failed; with `get_old`,
    /// the previous value (bulk or null) instead, and `WRONGTYPE` if it was a set.
    Set {
        /// The key.
        key: Key,
        /// The new value.
        value: Value,
        /// When to write.
        condition: SetCondition,
        /// Answer the previous value (`GET`).
        get_old: bool,
    },
    /// `SETNX key value`: integer 1 if set, 0 if the key existed.
    SetNx {
        /// The key.
        key: Key,
        /// The value.
        value: Value,
    },
    /// `GETSET key value`: the previous value (bulk or null).
    GetSet {
        /// The key.
        key: Key,
        /// The new value.
        value: Value,
    },
    /// `MGET key...`: an array, one bulk or null per key (null for a set, too).
    MGet {
        /// The keys, in order, repeats kept.
        keys: Vec<Key>,
    },
    /// `MSET key value [key value ...]`: `+OK`, all written atomically.
    MSet {
        /// The pairs, in order; a later pair for the same key wins.
        pairs: Vec<(Key, Value)>,
    },
    /// `DEL key...`: integer, how many keys existed (each counted once); atomic.
    Del {
        /// The keys.
        keys: Vec<Key>,
    },
    /// `EXISTS key...`: integer, how many of the keys exist, repeats counted each time.
    Exists {
        /// The keys, repeats kept.
        keys: Vec<Key>,
    },
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`: the new integer; `ERR value is not an integer or out
    /// of range` if the stored value is not one; `ERR increment or decrement would overflow`.
    IncrBy {
        /// The key.
        key: Key,
        /// What to add (negative for `DECR`/`DECRBY`).
        by: i64,
    },
    /// `APPEND key value`: integer, the new length.
    Append {
        /// The key.
        key: Key,
        /// What to append.
        value: Value,
    },
    /// `STRLEN key`: integer, the length (0 if absent).
    StrLen {
        /// The key.
        key: Key,
    },
    /// `SADD key member...`: integer, how many were not members before.
    SAdd {
        /// The key.
        key: Key,
        /// The members to add.
        members: Vec<Value>,
    },
    /// `SREM key member...`: integer, how many were members.
    SRem {
        /// The key.
        key: Key,
        /// The members to remove.
        members: Vec<Value>,
    },
    /// `SMEMBERS key`: a set reply (an array in RESP2) of the members.
    SMembers {
        /// The key.
        key: Key,
    },
    /// `SISMEMBER key member`: integer 1 or 0.
    SIsMember {
        /// The key.
        key: Key,
        /// The value asked about.
        member: Value,
    },
    /// `SCARD key`: integer, the number of members.
    SCard {
        /// The key.
        key: Key,
    },
    /// `TYPE key`: status `string`, `set` or `none`.
    Type {
        /// The key.
        key: Key,
    },
    /// `DBSIZE`: integer, the number of keys in the store.
    DbSize,
    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: an array of the next cursor (as
    /// a bulk string) and an array of keys; cursor 0 starts and ends a walk over the ring.
    Scan {
        /// Where the walk is.
        cursor: u64,
        /// Only keys matching this glob-style pattern (the last `MATCH` given).
        pattern: Option<Vec<u8>>,
        /// How much work one step should do (the last `COUNT` given, at least 1).
        count: Option<u64>,
        /// Only keys of this type, as the client wrote it (the last `TYPE` given).
        kind: Option<Vec<u8>>,
    },
    /// `KEYS pattern`: an array of every key matching the glob-style pattern.
    Keys {
        /// The pattern.
        pattern: Vec<u8>,
    },
    /// `FLUSHALL [ASYNC|SYNC]`: `+OK` once every key of the store is deleted.
    FlushAll {
        /// The mode given.
        mode: FlushMode,
    },
    /// `FLUSHDB [ASYNC|SYNC]`: the same (the store has one database).
    FlushDb {
        /// The mode given.
        mode: FlushMode,
    },
    /// `INFO [section...]`: a bulk string (verbatim `txt` in RESP3) of the sections asked for
    /// (`server`, `clients`, `keyspace`, `selfman`; none, `default` or `all`: every one).
    Info {
        /// The sections, lowercased.
        sections: Vec<Vec<u8>>,
    },
    /// `CONFIG GET pattern...`: a map of each setting matching a pattern to its value.
    ConfigGet {
        /// Glob-style patterns over setting names, lowercased.
        patterns: Vec<Vec<u8>>,
    },
}

impl Op {
    /// Whether the operation may change data.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Set { .. }
                | Op::SetNx { .. }
                | Op::GetSet { .. }
                | Op::MSet { .. }
                | Op::Del { .. }
                | Op::IncrBy { .. }
                | Op::Append { .. }
                | Op::SAdd { .. }
                | Op::SRem { .. }
                | Op::FlushAll { .. }
                | Op::FlushDb { .. }
        )
    }

    /// The keys the operation names, in order (repeats kept). Empty for operations on the
    /// whole store.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Op::Get { key }
            | Op::Set { key, .. }
            | Op::SetNx { key, .. }
            | Op::GetSet { key, .. }
            | Op::IncrBy { key, .. }
            | Op::Append { key, .. }
            | Op::StrLen { key }
            | Op::SAdd { key, .. }
            | Op::SRem { key, .. }
            | Op::SMembers { key }
            | Op::SIsMember { key, .. }
            | Op::SCard { key }
            | Op::Type { key } => vec![key],
            Op::MGet { keys } | Op::Del { keys } | Op::Exists { keys } => {
                keys.iter().map(Vec::as_slice).collect()
            }
            Op::MSet { pairs } => pairs.iter().map(|(k, _)| k.as_slice()).collect(),
            Op::DbSize
            | Op::Scan { .. }
            | Op::Keys { .. }
            | Op::FlushAll { .. }
            | Op::FlushDb { .. }
            | Op::Info { .. }
            | Op::ConfigGet { .. } => Vec::new(),
        }
    }
}

/// A user name and password, from `AUTH` or `HELLO ... AUTH`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user; `None` for `AUTH <password>` (the default user).
    pub user: Option<Vec<u8>>,
    /// The password.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A password never reaches a log through Debug.
        f.debug_struct("Credentials")
            .field("user", &self.user.as_deref().map(String::from_utf8_lossy))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A connection command, answered by the session from its own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `PING [message]`.
    Ping(Option<Vec<u8>>),
    /// `ECHO message`.
    Echo(Vec<u8>),
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    Hello {
        /// The protocol asked for, if any.
        protocol: Option<Protocol>,
        /// The credentials given, if any (the last `AUTH`).
        auth: Option<Credentials>,
        /// The name given, if any (the last `SETNAME`), already validated.
        name: Option<Vec<u8>>,
    },
    /// `AUTH [user] password`.
    Auth(Credentials),
    /// `SELECT 0` (any other index is an error at parse time).
    Select,
    /// `QUIT`.
    Quit,
    /// `RESET`.
    Reset,
    /// `CLIENT SETNAME name` (validated; empty removes the name).
    ClientSetName(Vec<u8>),
    /// `CLIENT GETNAME`.
    ClientGetName,
    /// `CLIENT ID`.
    ClientId,
    /// `CLIENT HELP`.
    ClientHelp,
    /// `COMMAND` with no subcommand.
    CommandAll,
    /// `COMMAND COUNT`.
    CommandCount,
    /// `COMMAND INFO [name...]`.
    CommandInfo(Vec<Vec<u8>>),
    /// `COMMAND DOCS [name...]`.
    CommandDocs(Vec<Vec<u8>>),
    /// `COMMAND HELP`.
    CommandHelp,
    /// `CONFIG HELP`.
    ConfigHelp,
    /// `MULTI`.
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `WATCH key...`.
    Watch(Vec<Key>),
    /// `UNWATCH`.
    Unwatch,
    /// `SUBSCRIBE channel...`.
    Subscribe(Vec<Vec<u8>>),
    /// `PSUBSCRIBE pattern...`.
    PSubscribe(Vec<Vec<u8>>),
    /// `UNSUBSCRIBE [channel...]` (none: all).
    Unsubscribe(Vec<Vec<u8>>),
    /// `PUNSUBSCRIBE [pattern...]` (none: all).
    PUnsubscribe(Vec<Vec<u8>>),
}
