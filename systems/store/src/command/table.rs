//! The command table: every command the front door knows, with Redis' arity convention, flags,
//! key positions and documentation.
//!
//! Invariants, checked by the tests below:
//! * [`COMMANDS`] is sorted by name and names are unique, so [`lookup`] is a binary search;
//! * every name is lowercase ASCII; a subcommand's name is `container|sub`;
//! * a command is either a container (arity negative, only subcommands do work) or has none;
//! * each command is exactly one of: a data command (`READONLY` or `WRITE`, carried out by the
//!   layers below) or a connection command (neither, answered by the session);
//! * key positions lie within the arity: a command that names keys has `first_key >= 1`.

/// What a command may do and where it is allowed, as a set of bits. The names are Redis'
/// (`COMMAND INFO` lists them).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(u16);

impl Flags {
    /// Changes data.
    pub const WRITE: Flags = Flags(1);
    /// Reads data and changes nothing.
    pub const READONLY: Flags = Flags(1 << 1);
    /// May grow the data set (refused when memory runs out).
    pub const DENYOOM: Flags = Flags(1 << 2);
    /// An administrative command.
    pub const ADMIN: Flags = Flags(1 << 3);
    /// A publish/subscribe command.
    pub const PUBSUB: Flags = Flags(1 << 4);
    /// Not for scripts.
    pub const NOSCRIPT: Flags = Flags(1 << 5);
    /// Allowed while the node is loading its data.
    pub const LOADING: Flags = Flags(1 << 6);
    /// Allowed while the node's data may be stale.
    pub const STALE: Flags = Flags(1 << 7);
    /// Constant or logarithmic time.
    pub const FAST: Flags = Flags(1 << 8);
    /// Allowed before the client has authenticated.
    pub const NO_AUTH: Flags = Flags(1 << 9);
    /// Refused between `MULTI` and `EXEC`.
    pub const NO_MULTI: Flags = Flags(1 << 10);

    const NAMES: [(Flags, &'static str); 11] = [
        (Flags::WRITE, "write"),
        (Flags::READONLY, "readonly"),
        (Flags::DENYOOM, "denyoom"),
        (Flags::ADMIN, "admin"),
        (Flags::PUBSUB, "pubsub"),
        (Flags::NOSCRIPT, "noscript"),
        (Flags::LOADING, "loading"),
        (Flags::STALE, "stale"),
        (Flags::FAST, "fast"),
        (Flags::NO_AUTH, "no_auth"),
        (Flags::NO_MULTI, "no_multi"),
    ];

    /// The empty set.
    pub const NONE: Flags = Flags(0);

    /// Both sets together.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Whether every flag of `other` is in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Redis' names of the flags in the set, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES.into_iter().filter(move |(f, _)| self.contains(*f)).map(|(_, n)| n)
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// The group a command belongs to, as `COMMAND DOCS` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Connection state: `PING`, `HELLO`, `CLIENT`, ...
    Connection,
    /// Strings and counters.
    String,
    /// Commands on any key, and on the key space (`DEL`, `TYPE`, `SCAN`).
    Generic,
    /// `MULTI`, `EXEC`, `WATCH`, ...
    Transactions,
    /// Value-sets.
    Set,
    /// Publish/subscribe.
    PubSub,
    /// The server as a whole (`INFO`, `CONFIG`, `FLUSHALL`, `COMMAND`).
    Server,
}

impl Group {
    /// The name `COMMAND DOCS` gives.
    pub fn name(self) -> &'static str {
        match self {
            Group::Connection => "connection",
            Group::String => "string",
            Group::Generic => "generic",
            Group::Transactions => "transactions",
            Group::Set => "set",
            Group::PubSub => "pubsub",
            Group::Server => "server",
        }
    }

    /// The ACL category named after the group, if it has one.
    pub fn acl_category(self) -> Option<&'static str> {
        match self {
            Group::Connection => Some("@connection"),
            Group::String => Some("@string"),
            Group::Generic => Some("@keyspace"),
            Group::Transactions => Some("@transaction"),
            Group::Set => Some("@set"),
            Group::PubSub => Some("@pubsub"),
            Group::Server => None,
        }
    }
}

/// Where a command's keys are, in Redis' convention: argument indices `first_key`,
/// `first_key + step`, ... up to `last_key` (negative: counted from the end, `-1` the last
/// argument). All zero: no keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Index of the first key (0: the command has no keys).
    pub first: i32,
    /// Index of the last key; negative counts from the end.
    pub last: i32,
    /// Distance between keys.
    pub step: i32,
}

impl KeyRange {
    /// No keys.
    pub const NONE: KeyRange = KeyRange { first: 0, last: 0, step: 0 };
    /// One key, the first argument.
    pub const ONE: KeyRange = KeyRange { first: 1, last: 1, step: 1 };
    /// Every argument is a key.
    pub const ALL: KeyRange = KeyRange { first: 1, last: -1, step: 1 };
}

/// The type of a documented argument (Redis' names in `COMMAND DOCS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// A key.
    Key,
    /// Any bytes.
    String,
    /// A signed integer.
    Integer,
    /// A glob-style pattern.
    Pattern,
    /// A literal word and nothing else.
    PureToken,
    /// Exactly one of the nested arguments.
    OneOf,
    /// The nested arguments together.
    Block,
}

impl ArgType {
    /// The name `COMMAND DOCS` gives.
    pub fn name(self) -> &'static str {
        match self {
            ArgType::Key => "key",
            ArgType::String => "string",
            ArgType::Integer => "integer",
            ArgType::Pattern => "pattern",
            ArgType::PureToken => "pure-token",
            ArgType::OneOf => "oneof",
            ArgType::Block => "block",
        }
    }
}

/// One documented argument of a command.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: ArgType,
    /// The word that introduces it (`MATCH` before a pattern), if any.
    pub token: Option<&'static str>,
    /// It may be left out.
    pub optional: bool,
    /// It may be repeated.
    pub multiple: bool,
    /// The nested arguments of a `OneOf` or `Block`.
    pub arguments: &'static [Arg],
}

impl Arg {
    const fn new(name: &'static str, kind: ArgType) -> Arg {
        Arg { name, kind, token: None, optional: false, multiple: false, arguments: &[] }
    }
    const fn key(name: &'static str) -> Arg {
        Arg::new(name, ArgType::Key)
    }
    const fn string(name: &'static str) -> Arg {
        Arg::new(name, ArgType::String)
    }
    const fn integer(name: &'static str) -> Arg {
        Arg::new(name, ArgType::Integer)
    }
    const fn token(name: &'static str, token: &'static str) -> Arg {
        Arg { token: Some(token), ..Arg::new(name, ArgType::PureToken) }
    }
    const fn oneof(name: &'static str, arguments: &'static [Arg]) -> Arg {
        Arg { arguments, ..Arg::new(name, ArgType::OneOf) }
    }
    const fn block(name: &'static str, arguments: &'static [Arg]) -> Arg {
        Arg { arguments, ..Arg::new(name, ArgType::Block) }
    }
    const fn introduced_by(self, token: &'static str) -> Arg {
        Arg { token: Some(token), ..self }
    }
    const fn optional(self) -> Arg {
        Arg { optional: true, ..self }
    }
    const fn multiple(self) -> Arg {
        Arg { multiple: true, ..self }
    }
}

/// One entry of the command table.
#[derive(Debug)]
pub struct CommandSpec {
    /// The full name, lowercase: `get`, or `client|setname` for a subcommand.
    pub name: &'static str,
    /// Redis' arity: positive, exactly this many arguments (the name included); negative, at
    /// least minus this many.
    pub arity: i32,
    /// What the command may do and where.
    pub flags: Flags,
    /// Where its keys are.
    pub keys: KeyRange,
    /// Its group.
    pub group: Group,
    /// One line on what it does here.
    pub summary: &'static str,
    /// The Redis version that introduced it.
    pub since: &'static str,
    /// Its cost.
    pub complexity: &'static str,
    /// Its documented arguments (after the name, or after the subcommand's name).
    pub arguments: &'static [Arg],
    /// Its subcommands, sorted by name, if it is a container (`CLIENT`, `COMMAND`, `CONFIG`).
    pub subcommands: &'static [CommandSpec],
}

/// Entries are the same when their names are: names are unique in the table.
impl PartialEq for CommandSpec {
    fn eq(&self, other: &CommandSpec) -> bool {
        self.name == other.name
    }
}

impl Eq for CommandSpec {}

impl CommandSpec {
    /// Whether `argc` arguments (the name included) satisfy the arity.
    pub fn accepts(&self, argc: usize) -> bool {
        let need = self.arity.unsigned_abs() as usize;
        if self.arity >= 0 {
            argc == need
        } else {
            argc >= need
        }
    }

    /// Whether this entry is a data command, carried out by the layers below (rather than by
    /// the session).
    pub fn is_data(&self) -> bool {
        self.flags.contains(Flags::READONLY) || self.flags.contains(Flags::WRITE)
    }

    /// The subcommand named `name` (any case), if this is a container that has it.
    pub fn subcommand(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        find(self.subcommands, name, |spec| spec.name.split_once('|').map_or(spec.name, |p| p.1))
    }

    /// The indices of the keys among `argc` arguments.
    pub fn key_indices(&self, argc: usize) -> impl Iterator<Item = usize> {
        let KeyRange { first, last, step } = self.keys;
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let last = if last < 0 { argc + i64::from(last) } else { i64::from(last) };
        let (first, step) = (i64::from(first), i64::from(step.max(1)));
        let end = if first == 0 { 0 } else { last.min(argc - 1) + 1 };
        (first..end.max(first)).step_by(step as usize).map(|i| i as usize)
    }
}

/// No name in the table is longer; a longer one is looked up no further.
const LONGEST_NAME: usize = 32;

/// Binary search of a sorted table by name, ignoring ASCII case.
fn find(
    table: &'static [CommandSpec],
    name: &[u8],
    key: impl Fn(&CommandSpec) -> &str,
) -> Option<&'static CommandSpec> {
    if name.len() > LONGEST_NAME {
        return None;
    }
    let mut lower = [0u8; LONGEST_NAME];
    lower[..name.len()].copy_from_slice(name);
    lower.make_ascii_lowercase();
    let name = &lower[..name.len()];
    table.binary_search_by(|spec| key(spec).as_bytes().cmp(name)).ok().map(|i| &table[i])
}

/// The command named `name` (any case), if the table has it.
///
/// # Examples
///
/// ```
/// use selfman_store::command::lookup;
///
/// let get = lookup(b"GeT").unwrap();
/// assert_eq!((get.name, get.arity), ("get", 2));
/// assert!(lookup(b"hset").is_none());
/// ```
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    find(COMMANDS, name, |spec| spec.name)
}

/// Flags from a list.
const fn flags(list: &[Flags]) -> Flags {
    let mut out = Flags::NONE;
    let mut i = 0;
    while i < list.len() {
        out = out.with(list[i]);
        i += 1;
    }
    out
}

// Abbreviations for the table below.
const W: Flags = Flags::WRITE;
const R: Flags = Flags::READONLY;
const OOM: Flags = Flags::DENYOOM;
const F: Flags = Flags::FAST;
const LS: Flags = flags(&[Flags::LOADING, Flags::STALE]);
const NS: Flags = Flags::NOSCRIPT;
const NA: Flags = Flags::NO_AUTH;
const NM: Flags = Flags::NO_MULTI;
// Subscriptions change the connection's state, so this store refuses them inside MULTI (Redis
// queues them); see docs/store.md.
const PS: Flags =
    flags(&[Flags::PUBSUB, Flags::NOSCRIPT, Flags::LOADING, Flags::STALE, Flags::NO_MULTI]);

#[allow(clippy::too_many_arguments)] // one row of the table
const fn cmd(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: KeyRange,
    group: Group,
    since: &'static str,
    complexity: &'static str,
    summary: &'static str,
    arguments: &'static [Arg],
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        keys,
        group,
        summary,
        since,
        complexity,
        arguments,
        subcommands: &[],
    }
}

const fn container(
    name: &'static str,
    arity: i32,
    group: Group,
    since: &'static str,
    summary: &'static str,
    subcommands: &'static [CommandSpec],
) -> CommandSpec {
    CommandSpec {
        subcommands,
        ..cmd(
            name,
            arity,
            Flags::NONE,
            KeyRange::NONE,
            group,
            since,
            "Depends on subcommand.",
            summary,
            &[],
        )
    }
}

use Group::{Connection, Generic, PubSub, Server, Set, String as Str, Transactions};

const KEY: &[Arg] = &[Arg::key("key")];
const KEY_VALUE: &[Arg] = &[Arg::key("key"), Arg::string("value")];
const KEYS: &[Arg] = &[Arg::key("key").multiple()];
const KEY_MEMBERS: &[Arg] = &[Arg::key("key"), Arg::string("member").multiple()];
const CHANNELS: &[Arg] = &[Arg::string("channel").multiple()];
const OPT_CHANNELS: &[Arg] = &[Arg::string("channel").optional().multiple()];
const PATTERNS: &[Arg] = &[Arg::new("pattern", ArgType::Pattern).multiple()];
const OPT_PATTERNS: &[Arg] = &[Arg::new("pattern", ArgType::Pattern).optional().multiple()];
const FLUSH: &[Arg] =
    &[Arg::oneof("flush-type", &[Arg::token("async", "ASYNC"), Arg::token("sync", "SYNC")])
        .optional()];
const COMMAND_NAMES: &[Arg] = &[Arg::string("command-name").optional().multiple()];

#[rustfmt::skip] // one row per command
const CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    cmd(
        "client|getname",
        2,
        NS.with(LS),
        KeyRange::NONE,
        Connection,
        "2.6.9",
        "O(1)",
        "Returns the name of this connection.",
        &[],
    ),
    cmd(
        "client|help",
        2,
        LS,
        KeyRange::NONE,
        Connection,
        "5.0.0",
        "O(1)",
        "Lists the CLIENT subcommands.",
        &[],
    ),
    cmd(
        "client|id",
        2,
        NS.with(LS),
        KeyRange::NONE,
        Connection,
        "5.0.0",
        "O(1)",
        "Returns this connection's id.",
        &[],
    ),
    cmd(
        "client|setname",
        3,
        NS.with(LS).with(NM),
        KeyRange::NONE,
        Connection,
        "2.6.9",
        "O(1)",
        "Names this connection (an empty name removes it).",
        &[Arg::string("connection-name")],
    ),
];

#[rustfmt::skip] // one row per command
const COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    cmd(
        "command|count",
        2,
        LS,
        KeyRange::NONE,
        Server,
        "2.8.13",
        "O(1)",
        "Returns the number of commands.",
        &[],
    ),
    cmd(
        "command|docs",
        -2,
        LS,
        KeyRange::NONE,
        Server,
        "7.0.0",
        "O(N) where N is the number of commands to look up",
        "Returns the documentation of the given commands, or of all.",
        COMMAND_NAMES,
    ),
    cmd(
        "command|help",
        2,
        LS,
        KeyRange::NONE,
        Server,
        "5.0.0",
        "O(1)",
        "Lists the COMMAND subcommands.",
        &[],
    ),
    cmd(
        "command|info",
        -2,
        LS,
        KeyRange::NONE,
        Server,
        "2.8.13",
        "O(N) where N is the number of commands to look up",
        "Returns the details of the given commands, or of all.",
        COMMAND_NAMES,
    ),
];

#[rustfmt::skip] // one row per command
const CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    cmd(
        "config|get",
        -3,
        Flags::ADMIN.with(NS).with(LS),
        KeyRange::NONE,
        Server,
        "2.0.0",
        "O(N) when N is the number of settings",
        "Returns the node's settings whose names match the glob-style patterns.",
        &[Arg::new("parameter", ArgType::Pattern).multiple()],
    ),
    cmd(
        "config|help",
        2,
        LS,
        KeyRange::NONE,
        Server,
        "5.0.0",
        "O(1)",
        "Lists the CONFIG subcommands.",
        &[],
    ),
];

/// Every command the front door knows, sorted by name.
#[rustfmt::skip] // one row per command
pub static COMMANDS: &[CommandSpec] = &[
    cmd("append", 3, W.with(OOM).with(F), KeyRange::ONE, Str, "2.0.0", "O(1)", "Appends a value to a key's string, creating it if absent; returns the new length.", KEY_VALUE),
    cmd("auth", -2, NS.with(LS).with(F).with(NA).with(NM), KeyRange::NONE, Connection, "1.0.0", "O(N) where N is the number of passwords defined for the user", "Authenticates the connection.", &[Arg::string("username").optional(), Arg::string("password")]),
    container("client", -2, Connection, "2.4.0", "A container for connection commands.", CLIENT_SUBCOMMANDS),
    container("command", -1, Server, "2.8.13", "Returns details about all commands.", COMMAND_SUBCOMMANDS),
    container("config", -2, Server, "2.0.0", "A container for the node's settings.", CONFIG_SUBCOMMANDS),
    cmd("dbsize", 1, R.with(F), KeyRange::NONE, Server, "1.0.0", "O(N) in the number of nodes", "Returns the number of keys in the store.", &[]),
    cmd("decr", 2, W.with(OOM).with(F), KeyRange::ONE, Str, "1.0.0", "O(1)", "Decrements a key's integer by one (absent: from 0).", KEY),
    cmd("decrby", 3, W.with(OOM).with(F), KeyRange::ONE, Str, "1.0.0", "O(1)", "Decrements a key's integer by a number (absent: from 0).", &[Arg::key("key"), Arg::integer("decrement")]),
    cmd("del", -2, W, KeyRange::ALL, Generic, "1.0.0", "O(N) where N is the number of keys", "Deletes keys, atomically; returns how many existed.", KEYS),
    cmd("discard", 1, NS.with(LS).with(F), KeyRange::NONE, Transactions, "2.0.0", "O(N), when N is the number of queued commands", "Discards a transaction.", &[]),
    cmd("echo", 2, F, KeyRange::NONE, Connection, "1.0.0", "O(1)", "Returns the given string.", &[Arg::string("message")]),
    cmd("exec", 1, NS.with(LS), KeyRange::NONE, Transactions, "1.2.0", "Depends on commands in the transaction", "Carries out the queued commands as one distributed transaction.", &[]),
    cmd("exists", -2, R.with(F), KeyRange::ALL, Generic, "3.0.3", "O(N) where N is the number of keys", "Counts how many of the keys exist (a key named twice counts twice).", KEYS),
    cmd("flushall", -1, W.with(Flags::ADMIN), KeyRange::NONE, Server, "1.0.0", "O(N) where N is the total number of keys", "Deletes every key of the store, on every node.", FLUSH),
    cmd("flushdb", -1, W.with(Flags::ADMIN), KeyRange::NONE, Server, "1.0.0", "O(N) where N is the total number of keys", "Deletes every key of the store (there is one database), on every node.", FLUSH),
    cmd("get", 2, R.with(F), KeyRange::ONE, Str, "1.0.0", "O(1)", "Returns a key's string value.", KEY),
    cmd("getset", 3, W.with(OOM).with(F), KeyRange::ONE, Str, "1.0.0", "O(1)", "Sets a key's string and returns the previous one.", KEY_VALUE),
    cmd("hello", -1, NS.with(LS).with(F).with(NA).with(NM), KeyRange::NONE, Connection, "6.0.0", "O(1)", "Handshakes: chooses RESP2 or RESP3, optionally authenticates and names the connection.", &[Arg::block("arguments", &[Arg::integer("protover"), Arg::block("username-password", &[Arg::string("username"), Arg::string("password")]).introduced_by("AUTH").optional(), Arg::string("clientname").introduced_by("SETNAME").optional()]).optional()]),
    cmd("incr", 2, W.with(OOM).with(F), KeyRange::ONE, Str, "1.0.0", "O(1)", "Increments a key's integer by one (absent: from 0).", KEY),
    cmd("incrby", 3, W.with(OOM).with(F), KeyRange::ONE, Str, "1.0.0", "O(1)", "Increments a key's integer by a number (absent: from 0).", &[Arg::key("key"), Arg::integer("increment")]),
    cmd("info", -1, LS, KeyRange::NONE, Server, "1.0.0", "O(1)", "Returns information about the node and the store.", &[Arg::string("section").optional().multiple()]),
    cmd("keys", 2, R, KeyRange::NONE, Generic, "1.0.0", "O(N) with N being the number of keys in the store", "Returns the keys matching a glob-style pattern (a walk over the ring).", &[Arg::new("pattern", ArgType::Pattern)]),
    cmd("mget", -2, R.with(F), KeyRange::ALL, Str, "1.0.0", "O(N) where N is the number of keys to retrieve", "Returns the values of several keys.", KEYS),
    cmd("mset", -3, W.with(OOM), KeyRange { first: 1, last: -1, step: 2 }, Str, "1.0.1", "O(N) where N is the number of keys to set", "Sets several keys, atomically.", &[Arg::block("data", &[Arg::key("key"), Arg::string("value")]).multiple()]),
    cmd("multi", 1, NS.with(LS).with(F), KeyRange::NONE, Transactions, "1.2.0", "O(1)", "Starts a transaction.", &[]),
    cmd("ping", -1, F, KeyRange::NONE, Connection, "1.0.0", "O(1)", "Returns PONG, or the given message.", &[Arg::string("message").optional()]),
    cmd("psubscribe", -2, PS, KeyRange::NONE, PubSub, "2.0.0", "O(N) where N is the number of patterns the client is already subscribed to", "Subscribes to the channels matching glob-style patterns.", PATTERNS),
    cmd("punsubscribe", -1, PS, KeyRange::NONE, PubSub, "2.0.0", "O(N+M) where N is the number of patterns the client is already subscribed and M is the number of total patterns subscribed in the system", "Unsubscribes from patterns (all when none is given).", OPT_PATTERNS),
    cmd("quit", -1, NS.with(LS).with(F).with(NA), KeyRange::NONE, Connection, "1.0.0", "O(1)", "Closes the connection after answering OK.", &[]),
    cmd("reset", 1, NS.with(LS).with(F).with(NA), KeyRange::NONE, Connection, "6.2.0", "O(1)", "Resets the connection: no transaction, no watched keys, no subscriptions, RESP2, no name, not authenticated if a password is set.", &[]),
    cmd("sadd", -3, W.with(OOM).with(F), KeyRange::ONE, Set, "1.0.0", "O(1) for each element added", "Adds members to a value-set; returns how many were new.", KEY_MEMBERS),
    cmd("scan", -2, R, KeyRange::NONE, Generic, "2.8.0", "O(1) for every call. O(N) for a complete iteration", "Walks the keys of the store in steps, with a cursor.", &[Arg::integer("cursor"), Arg::new("pattern", ArgType::Pattern).introduced_by("MATCH").optional(), Arg::integer("count").introduced_by("COUNT").optional(), Arg::string("type").introduced_by("TYPE").optional()]),
    cmd("scard", 2, R.with(F), KeyRange::ONE, Set, "1.0.0", "O(1)", "Returns the number of members of a value-set.", KEY),
    cmd("select", 2, LS.with(F), KeyRange::NONE, Connection, "1.0.0", "O(1)", "Selects a database: only 0 exists.", &[Arg::integer("index")]),
    cmd("set", -3, W.with(OOM), KeyRange::ONE, Str, "1.0.0", "O(1)", "Sets a key's string (no expiry options).", &[Arg::key("key"), Arg::string("value"), Arg::oneof("condition", &[Arg::token("nx", "NX"), Arg::token("xx", "XX")]).optional(), Arg::token("get", "GET").optional()]),
    cmd("setnx", 3, W.with(OOM).with(F), KeyRange::ONE, Str, "1.0.0", "O(1)", "Sets a key's string only if the key is absent; returns 1 if it was set.", KEY_VALUE),
    cmd("sismember", 3, R.with(F), KeyRange::ONE, Set, "1.0.0", "O(1)", "Returns whether a value is a member of a value-set.", &[Arg::key("key"), Arg::string("member")]),
    cmd("smembers", 2, R, KeyRange::ONE, Set, "1.0.0", "O(N) where N is the set cardinality", "Returns the members of a value-set.", KEY),
    cmd("srem", -3, W.with(F), KeyRange::ONE, Set, "1.0.0", "O(N) where N is the number of members to be removed", "Removes members from a value-set; returns how many were there.", KEY_MEMBERS),
    cmd("strlen", 2, R.with(F), KeyRange::ONE, Str, "2.2.0", "O(1)", "Returns the length of a key's string.", KEY),
    cmd("subscribe", -2, PS, KeyRange::NONE, PubSub, "2.0.0", "O(N) where N is the number of channels to subscribe to", "Subscribes to channels, such as keyspace notifications (__keyspace@0__:<key>).", CHANNELS),
    cmd("type", 2, R.with(F), KeyRange::ONE, Generic, "1.0.0", "O(1)", "Returns the type of a key's value: string, set or none.", KEY),
    cmd("unsubscribe", -1, PS, KeyRange::NONE, PubSub, "2.0.0", "O(N) where N is the number of clients already subscribed to a channel", "Unsubscribes from channels (all when none is given).", OPT_CHANNELS),
    cmd("unwatch", 1, NS.with(LS).with(F), KeyRange::NONE, Transactions, "2.2.0", "O(1)", "Forgets every watched key.", &[]),
    cmd("watch", -2, NS.with(LS).with(F), KeyRange::ALL, Transactions, "2.2.0", "O(1) for every key", "Watches keys: the next EXEC fails if any of them changes first.", KEYS),
];

#[cfg(test)]
mod tests {
    use super::{lookup, CommandSpec, Flags, COMMANDS};

    fn all() -> impl Iterator<Item = &'static CommandSpec> {
        COMMANDS.iter().flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
    }

    #[test]
    fn the_table_is_sorted_unique_and_lowercase() {
        for table in std::iter::once(COMMANDS).chain(COMMANDS.iter().map(|c| c.subcommands)) {
            for pair in table.windows(2) {
                assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
            }
        }
        for spec in all() {
            assert!(!spec.name.bytes().any(|b| b.is_ascii_uppercase()), "{}", spec.name);
        }
        for spec in all() {
            assert!(spec.name.len() <= super::LONGEST_NAME, "{}", spec.name);
        }
        for c in COMMANDS {
            for s in c.subcommands {
                assert!(s.name.starts_with(&format!("{}|", c.name)), "{}", s.name);
            }
        }
    }

    #[test]
    fn every_command_is_data_or_connection_and_containers_do_no_work() {
        for spec in all() {
            let rw = (spec.flags.contains(Flags::READONLY), spec.flags.contains(Flags::WRITE));
            assert_ne!(rw, (true, true), "{} both reads only and writes", spec.name);
            if !spec.subcommands.is_empty() {
                assert!(spec.arity < 0 && !spec.is_data(), "{}", spec.name);
            }
            if spec.keys.first > 0 {
                assert!(spec.arity.abs() > spec.keys.first, "{}: keys past the arity", spec.name);
            }
        }
    }

    #[test]
    fn lookup_ignores_case_and_finds_subcommands() {
        assert_eq!(lookup(b"SET").map(|c| c.name), Some("set"));
        assert_eq!(lookup(b"sEtNx").map(|c| c.name), Some("setnx"));
        assert!(lookup(b"").is_none());
        assert!(lookup(b"se").is_none());
        let client = lookup(b"Client").unwrap();
        assert_eq!(client.subcommand(b"SETNAME").map(|c| c.name), Some("client|setname"));
        assert!(client.subcommand(b"kill").is_none());
        assert!(lookup(b"get").unwrap().subcommand(b"x").is_none());
    }

    #[test]
    fn arity_follows_redis_convention() {
        let get = lookup(b"get").unwrap();
        assert!(!get.accepts(1) && get.accepts(2) && !get.accepts(3));
        let set = lookup(b"set").unwrap();
        assert!(!set.accepts(2) && set.accepts(3) && set.accepts(9));
    }

    #[test]
    fn key_positions() {
        let keys = |name: &[u8], argc| lookup(name).unwrap().key_indices(argc).collect::<Vec<_>>();
        assert_eq!(keys(b"get", 2), [1]);
        assert_eq!(keys(b"mset", 5), [1, 3]);
        assert_eq!(keys(b"del", 4), [1, 2, 3]);
        assert_eq!(keys(b"ping", 2), Vec::<usize>::new());
        assert_eq!(keys(b"set", 5), [1]);
    }

    #[test]
    fn the_commands_of_the_issue_are_all_there() {
        let names = "ping echo hello auth select quit client command info dbsize type scan keys \
            flushall flushdb config get set setnx getset mget mset del exists incr incrby decr \
            decrby append strlen watch unwatch multi exec discard sadd srem smembers sismember \
            scard subscribe psubscribe unsubscribe punsubscribe reset";
        for n in names.split_whitespace() {
            assert!(lookup(n.as_bytes()).is_some(), "{n} is missing");
        }
        assert_eq!(COMMANDS.len(), names.split_whitespace().count());
    }
}
