//! One client connection's state, as a machine that does no I/O.
//!
//! A front door feeds a [`Session`] the commands its [`RequestDecoder`] yields (or the bytes
//! themselves, through [`Session::receive`]); the session answers with [`Action`]s, in order:
//! replies it knows at once, operations for the layers below, changes to the connection's
//! subscriptions and protocol, and `Close`. A [`ReplyQueue`] turns that stream, and the
//! backend's later answers, into the bytes to write, in command order.
//!
//! ```text
//!  bytes ─▶ RequestDecoder ─▶ Session ─▶ Action* ─▶ ReplyQueue ─▶ Request ─▶ backend
//!                  ▲             │                      ▲   │                   │
//!                  └─ bounds ────┘     complete(seq, …) ┘   └─▶ bytes to write  │
//!                                                     ◀─────────────────────────┘
//! ```
//!
//! Invariants (each checked by a unit test below or by the property test in
//! `tests/session.rs`):
//! * every command gets a [`Seq`], one more than the last, and exactly one of: one or more
//!   `Reply` actions (several only for `(P)SUBSCRIBE`/`(P)UNSUBSCRIBE`, one per channel), one
//!   `Execute`, or one `Exec`; commands after `QUIT` or a protocol error get nothing;
//! * checks run in Redis' order: the command is found and its arity checked, then
//!   authentication, then RESP2 pub/sub mode, then `MULTI` queueing, then the arguments;
//! * inside `MULTI`, a command is queued (`+QUEUED`) unless it is `EXEC`, `DISCARD`, `MULTI`,
//!   `WATCH`, `QUIT` or `RESET`; a rejected command marks the transaction dirty;
//! * `EXEC` and `DISCARD` (and a rejected `EXEC`, and `RESET`) end the transaction and clear
//!   the watched keys; `EXEC` outside `MULTI` clears nothing;
//! * the decoder's pre-authentication bounds follow the session: [`Session::receive`] sets
//!   them before every request it decodes.

mod pubsub;
mod queue;
mod transaction;

use std::collections::BTreeSet;

use crate::command::{
    self, parse, CommandError, Control, Credentials, Flags, Key, Op, Operation, Rejection,
};
use crate::resp::{Command, Protocol, ProtocolError, Reply, RequestDecoder};
pub use pubsub::{message, pmessage, Topic};
pub use queue::{Completion, CompletionError, ReplyQueue, Request};
use transaction::Multi;
pub use transaction::{ExecOutcome, ExecPlan, Transaction};

/// The number of a command on its connection: 0 for the first, then one more each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// What the front door must do, in the order the session gives them.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Command `seq`'s reply (or one of its replies, for a subscription command), known now.
    Reply {
        /// The command.
        seq: Seq,
        /// The reply.
        reply: Reply,
    },
    /// Command `seq` is a data operation: the backend's reply is the command's reply.
    Execute {
        /// The command.
        seq: Seq,
        /// The operation.
        op: Op,
    },
    /// Command `seq` is an `EXEC`: the backend carries out `transaction`; `plan` turns its
    /// [`ExecOutcome`] into `EXEC`'s reply.
    Exec {
        /// The `EXEC` command.
        seq: Seq,
        /// What the backend receives.
        transaction: Transaction,
        /// `EXEC`'s reply, less the backend's part.
        plan: ExecPlan,
    },
    /// Register these new subscriptions with the notification layer.
    Subscribe(Vec<Topic>),
    /// Drop these subscriptions.
    Unsubscribe(Vec<Topic>),
    /// Encode the replies of this command and of every later one in this protocol (`HELLO`,
    /// `RESET`). It comes before the reply of the command that switched.
    Protocol(Protocol),
    /// Close the connection once every reply before this action is written (after `QUIT`'s
    /// `+OK`, or a protocol error's reply).
    Close,
}

/// Bounds on what one connection may make the session hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Commands queued in one `MULTI` block.
    pub max_queued: usize,
    /// Keys watched at once.
    pub max_watched: usize,
    /// Channels and patterns subscribed at once.
    pub max_subscriptions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits { max_queued: 100_000, max_watched: 100_000, max_subscriptions: 100_000 }
    }
}

/// How a session starts.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The connection's id (`CLIENT ID`, `HELLO`), unique on the node.
    pub id: u64,
    /// The default user's password; `None` for none (every client is authenticated).
    pub password: Option<Vec<u8>>,
    /// `HELLO`'s `server` field.
    pub server_name: String,
    /// `HELLO`'s `version` field.
    pub server_version: String,
    /// The session's bounds.
    pub limits: SessionLimits,
}

impl SessionConfig {
    /// A connection with this id, no password, and this crate's name and version.
    pub fn new(id: u64) -> SessionConfig {
        SessionConfig {
            id,
            password: None,
            server_name: "selfman".to_owned(),
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            limits: SessionLimits::default(),
        }
    }
}

/// One client connection's state.
///
/// # Examples
///
/// ```
/// use selfman_store::command::Op;
/// use selfman_store::resp::Reply;
/// use selfman_store::session::{Action, Seq, Session, SessionConfig};
///
/// let mut s = Session::new(SessionConfig::new(7));
/// let cmd = |line: &str| line.split(' ').map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
/// assert_eq!(
///     s.command(cmd("PING")),
///     vec![Action::Reply { seq: Seq(0), reply: Reply::Simple("PONG".into()) }]
/// );
/// assert_eq!(
///     s.command(cmd("GET k")),
///     vec![Action::Execute { seq: Seq(1), op: Op::Get { key: b"k".to_vec() } }]
/// );
/// ```
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    protocol: Protocol,
    authenticated: bool,
    name: Option<Vec<u8>>,
    next: u64,
    multi: Option<Multi>,
    watched: BTreeSet<Key>,
    subscriptions: pubsub::Subscriptions,
    closed: bool,
}

/// Commands that run, rather than queue, inside `MULTI` (Redis' list).
const NOT_QUEUED: [&str; 6] = ["exec", "discard", "multi", "watch", "quit", "reset"];

/// Commands allowed to a RESP2 connection in pub/sub mode.
const IN_PUBSUB: [&str; 7] =
    ["ping", "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "quit", "reset"];

/// Compares secrets in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Session {
    /// A new connection: RESP2, no name, authenticated unless a password is configured.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            authenticated: config.password.is_none(),
            config,
            protocol: Protocol::Resp2,
            name: None,
            next: 0,
            multi: None,
            watched: BTreeSet::new(),
            subscriptions: pubsub::Subscriptions::default(),
            closed: false,
        }
    }

    /// The protocol replies are encoded in now.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the client has authenticated (always, with no password configured). A front
    /// door that decodes by itself passes this to [`RequestDecoder::set_authenticated`]
    /// before decoding each request.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The connection's name, if it has one.
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }

    /// Whether a `MULTI` block is open.
    pub fn in_transaction(&self) -> bool {
        self.multi.is_some()
    }

    /// How many commands the open `MULTI` block holds.
    pub fn queued(&self) -> usize {
        self.multi.as_ref().map_or(0, Multi::len)
    }

    /// The keys watched, each once.
    pub fn watched(&self) -> impl Iterator<Item = &[u8]> {
        self.watched.iter().map(Vec::as_slice)
    }

    /// Channels and patterns subscribed.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions.count()
    }

    /// Whether the session has ended (after `QUIT` or a protocol error): it takes no more
    /// commands.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Decodes and handles the requests in `input`, pushing the actions to `out`, and returns
    /// how many bytes it used (keep the rest for next time). The decoder's pre-authentication
    /// bounds are set from the session before each request. A protocol error is answered and
    /// followed by [`Action::Close`], as is `QUIT`; the session takes nothing after either.
    pub fn receive(
        &mut self,
        decoder: &mut RequestDecoder,
        input: &[u8],
        out: &mut Vec<Action>,
    ) -> usize {
        let mut used = 0;
        while !self.closed {
            decoder.set_authenticated(self.authenticated);
            match decoder.decode(&input[used..]) {
                Ok((n, Some(cmd))) => {
                    used += n;
                    self.command_into(cmd, out);
                }
                Ok((n, None)) => return used + n,
                Err(error) => {
                    self.protocol_error(&error, out);
                    return input.len();
                }
            }
        }
        used
    }

    /// Answers a protocol error (`ERR Protocol error: ...`) and closes, as Redis does: the
    /// stream is out of step.
    pub fn protocol_error(&mut self, error: &ProtocolError, out: &mut Vec<Action>) {
        if self.closed {
            return;
        }
        let seq = self.next_seq();
        out.push(Action::Reply { seq, reply: Reply::error(error.message()) });
        out.push(Action::Close);
        self.closed = true;
    }

    /// Answers the next command with `reply` without running it: for a front door that refuses
    /// a command the session would take (a feature its backend lacks). Inside `MULTI` the
    /// refusal dooms the transaction, as any rejected command does.
    pub fn refuse(&mut self, reply: Reply, out: &mut Vec<Action>) {
        if self.closed {
            return;
        }
        let seq = self.next_seq();
        if let Some(m) = self.multi.as_mut() {
            m.mark_dirty();
        }
        out.push(Action::Reply { seq, reply });
    }

    /// Handles one decoded command and returns its actions.
    pub fn command(&mut self, args: Command) -> Vec<Action> {
        let mut out = Vec::new();
        self.command_into(args, &mut out);
        out
    }

    /// Handles one decoded command, pushing its actions to `out`.
    pub fn command_into(&mut self, args: Command, out: &mut Vec<Action>) {
        if self.closed {
            return;
        }
        let seq = self.next_seq();
        let is_exec = args.first().is_some_and(|n| n.eq_ignore_ascii_case(b"exec"));
        let parsed = match parse(&args) {
            Ok(parsed) => parsed,
            Err(rejection) => return self.reject(seq, &rejection, is_exec, out),
        };
        let spec = parsed.spec;
        if !self.authenticated && !spec.flags.contains(Flags::NO_AUTH) {
            return self.reject(seq, &Rejection::NoAuth, is_exec, out);
        }
        if self.protocol == Protocol::Resp2
            && self.subscriptions.count() > 0
            && !IN_PUBSUB.contains(&spec.name)
        {
            return self.reject(seq, &Rejection::PubSubContext(spec.name), is_exec, out);
        }
        if self.multi.is_some() && !NOT_QUEUED.contains(&spec.name) {
            if spec.flags.contains(Flags::NO_MULTI) {
                return self.reject(seq, &Rejection::NotInTransaction, false, out);
            }
            let limit = self.config.limits.max_queued;
            if self.queued() >= limit {
                return self.reject(seq, &Rejection::TooManyQueued(limit), false, out);
            }
            let known = match parsed.operation {
                Ok(Operation::Data(op)) => {
                    if let Some(m) = self.multi.as_mut() {
                        m.queue_op(op);
                    }
                    None
                }
                // Only connection commands that change nothing may be queued (the others are
                // NO_MULTI), so answering now is answering at EXEC.
                Ok(Operation::Control(c)) => Some(self.answer(&c).unwrap_or_else(|| {
                    Rejection::NotInTransaction.reply() // unreachable by the table's flags
                })),
                Err(error) => Some(error.reply()),
            };
            if let (Some(reply), Some(m)) = (known, self.multi.as_mut()) {
                m.queue_reply(reply);
            }
            return out.push(Action::Reply { seq, reply: Reply::Simple("QUEUED".to_owned()) });
        }
        match parsed.operation {
            Err(error) => out.push(Action::Reply { seq, reply: error.reply() }),
            Ok(Operation::Data(op)) => out.push(Action::Execute { seq, op }),
            Ok(Operation::Control(c)) => self.control(seq, c, out),
        }
    }

    fn next_seq(&mut self) -> Seq {
        let seq = Seq(self.next);
        self.next += 1;
        seq
    }

    /// A command refused before it ran. Inside `MULTI` it dooms the transaction; a refused
    /// `EXEC` ends it (and the watch), answering `EXECABORT ... because of: <reason>`.
    fn reject(&mut self, seq: Seq, rejection: &Rejection, is_exec: bool, out: &mut Vec<Action>) {
        let reply = if is_exec {
            self.end_transaction();
            rejection.exec_abort_reply()
        } else {
            if let Some(m) = self.multi.as_mut() {
                m.mark_dirty();
            }
            rejection.reply()
        };
        out.push(Action::Reply { seq, reply });
    }

    fn end_transaction(&mut self) -> Option<Multi> {
        self.watched.clear();
        self.multi.take()
    }

    /// The reply of a connection command that changes nothing, or `None` for one that does.
    fn answer(&self, c: &Control) -> Option<Reply> {
        let spec = |name: &[u8]| command::lookup(name).expect("a container of the table");
        Some(match c {
            Control::Ping(msg)
                if self.protocol == Protocol::Resp2 && self.subscriptions.count() > 0 =>
            {
                Reply::Array(vec![Reply::bulk("pong"), Reply::bulk(msg.as_deref().unwrap_or(b""))])
            }
            Control::Ping(None) => Reply::Simple("PONG".to_owned()),
            Control::Ping(Some(msg)) | Control::Echo(msg) => Reply::bulk(msg),
            Control::Select | Control::Unwatch if self.multi.is_some() => Reply::ok(),
            Control::Select => Reply::ok(),
            Control::ClientGetName => self.name.as_deref().map_or(Reply::Null, Reply::bulk),
            Control::ClientId => Reply::Integer(i64::try_from(self.config.id).unwrap_or(i64::MAX)),
            Control::ClientHelp => command::help(spec(b"client")),
            Control::CommandHelp => command::help(spec(b"command")),
            Control::ConfigHelp => command::help(spec(b"config")),
            Control::CommandAll => command::info_all(),
            Control::CommandCount => command::count(),
            Control::CommandInfo(names) if names.is_empty() => command::info_all(),
            Control::CommandInfo(names) => command::info_of(names),
            Control::CommandDocs(names) => command::docs_of(names),
            _ => return None,
        })
    }

    /// Runs a connection command outside `MULTI`.
    fn control(&mut self, seq: Seq, c: Control, out: &mut Vec<Action>) {
        if let Some(reply) = self.answer(&c) {
            return out.push(Action::Reply { seq, reply });
        }
        let reply = match c {
            Control::Hello { protocol, auth, name } => {
                match self.hello(protocol, auth, name, out) {
                    Ok(reply) => reply,
                    Err(error) => error.reply(),
                }
            }
            Control::Auth(credentials) => match self.authenticate(&credentials) {
                Ok(()) => Reply::ok(),
                Err(error) => error.reply(),
            },
            Control::Quit => {
                out.push(Action::Reply { seq, reply: Reply::ok() });
                out.push(Action::Close);
                self.closed = true;
                return;
            }
            Control::Reset => {
                self.end_transaction();
                let dropped = self.subscriptions.clear();
                if !dropped.is_empty() {
                    out.push(Action::Unsubscribe(dropped));
                }
                self.switch_protocol(Protocol::Resp2, out);
                self.name = None;
                self.authenticated = self.config.password.is_none();
                Reply::Simple("RESET".to_owned())
            }
            Control::ClientSetName(name) => {
                self.name = Some(name).filter(|n| !n.is_empty());
                Reply::ok()
            }
            Control::Multi if self.multi.is_some() => CommandError::NestedMulti.reply(),
            Control::Multi => {
                self.multi = Some(Multi::default());
                Reply::ok()
            }
            Control::Exec => return self.exec(seq, out),
            Control::Discard => match self.end_transaction() {
                Some(_) => Reply::ok(),
                None => CommandError::DiscardWithoutMulti.reply(),
            },
            Control::Watch(_) if self.multi.is_some() => CommandError::WatchInMulti.reply(),
            Control::Watch(keys) => {
                let limit = self.config.limits.max_watched;
                let new: BTreeSet<&Key> =
                    keys.iter().filter(|k| !self.watched.contains(*k)).collect();
                if self.watched.len() + new.len() > limit {
                    CommandError::TooManyWatched(limit).reply()
                } else {
                    self.watched.extend(keys);
                    Reply::ok()
                }
            }
            Control::Unwatch => {
                self.watched.clear();
                Reply::ok()
            }
            Control::Subscribe(names) => return self.subscribe(seq, false, names, out),
            Control::PSubscribe(names) => return self.subscribe(seq, true, names, out),
            Control::Unsubscribe(names) => return self.unsubscribe(seq, false, names, out),
            Control::PUnsubscribe(names) => return self.unsubscribe(seq, true, names, out),
            answered => unreachable!("{answered:?} is answered by `answer`"),
        };
        out.push(Action::Reply { seq, reply });
    }

    fn switch_protocol(&mut self, protocol: Protocol, out: &mut Vec<Action>) {
        if self.protocol != protocol {
            self.protocol = protocol;
            out.push(Action::Protocol(protocol));
        }
    }

    /// `AUTH`: the one-argument form names the default user's password; the two-argument
    /// form names a user, and only `default` exists (with any password when none is set).
    fn authenticate(&mut self, credentials: &Credentials) -> Result<(), CommandError> {
        let password = self.config.password.as_deref();
        let ok = match (&credentials.user, password) {
            (None, None) => return Err(CommandError::AuthWithoutPassword),
            (None, Some(p)) => same_secret(p, &credentials.password),
            (Some(user), None) => user.as_slice() == b"default",
            (Some(user), Some(p)) => {
                user.as_slice() == b"default" && same_secret(p, &credentials.password)
            }
        };
        if !ok {
            return Err(CommandError::WrongPass);
        }
        self.authenticated = true;
        Ok(())
    }

    /// `HELLO`: authenticate if asked, refuse if still unauthenticated, then name, switch the
    /// protocol and answer the server's description in it.
    fn hello(
        &mut self,
        protocol: Option<Protocol>,
        auth: Option<Credentials>,
        name: Option<Vec<u8>>,
        out: &mut Vec<Action>,
    ) -> Result<Reply, CommandError> {
        if let Some(credentials) = auth {
            self.authenticate(&credentials)?;
        }
        if !self.authenticated {
            return Err(CommandError::HelloNoAuth);
        }
        if let Some(name) = name {
            self.name = Some(name).filter(|n| !n.is_empty());
        }
        if let Some(protocol) = protocol {
            self.switch_protocol(protocol, out);
        }
        let proto = if self.protocol == Protocol::Resp3 { 3 } else { 2 };
        let field = |k: &str, v: Reply| (Reply::bulk(k), v);
        Ok(Reply::Map(vec![
            field("server", Reply::bulk(&self.config.server_name)),
            field("version", Reply::bulk(&self.config.server_version)),
            field("proto", Reply::Integer(proto)),
            field("id", Reply::Integer(i64::try_from(self.config.id).unwrap_or(i64::MAX))),
            field("mode", Reply::bulk("standalone")),
            field("role", Reply::bulk("master")),
            field("modules", Reply::Array(Vec::new())),
        ]))
    }

    /// `EXEC`: the queued transaction to the backend, unless it is dirty or needs nothing
    /// from the backend (no operation and no watched key).
    fn exec(&mut self, seq: Seq, out: &mut Vec<Action>) {
        if self.multi.is_none() {
            return out.push(Action::Reply { seq, reply: CommandError::ExecWithoutMulti.reply() });
        }
        let watched: Vec<Key> = std::mem::take(&mut self.watched).into_iter().collect();
        let multi = self.end_transaction().expect("checked above: a MULTI block is open");
        if multi.is_dirty() {
            return out.push(Action::Reply { seq, reply: CommandError::ExecAbort.reply() });
        }
        let (ops, plan) = multi.into_parts();
        if ops.is_empty() && watched.is_empty() {
            if let Some(reply) = plan.known() {
                return out.push(Action::Reply { seq, reply });
            }
        }
        out.push(Action::Exec { seq, transaction: Transaction { watched, ops }, plan });
    }

    fn subscribe(&mut self, seq: Seq, patterns: bool, names: Vec<Vec<u8>>, out: &mut Vec<Action>) {
        let limit = self.config.limits.max_subscriptions;
        if self.subscriptions.count() + self.subscriptions.new_ones(patterns, &names) > limit {
            let reply = CommandError::TooManySubscriptions(limit).reply();
            return out.push(Action::Reply { seq, reply });
        }
        let (replies, added) = self.subscriptions.subscribe(patterns, names);
        if !added.is_empty() {
            out.push(Action::Subscribe(added));
        }
        out.extend(replies.into_iter().map(|reply| Action::Reply { seq, reply }));
    }

    fn unsubscribe(
        &mut self,
        seq: Seq,
        patterns: bool,
        names: Vec<Vec<u8>>,
        out: &mut Vec<Action>,
    ) {
        let (replies, dropped) = self.subscriptions.unsubscribe(patterns, names);
        if !dropped.is_empty() {
            out.push(Action::Unsubscribe(dropped));
        }
        out.extend(replies.into_iter().map(|reply| Action::Reply { seq, reply }));
    }
}

#[cfg(test)]
mod tests;
