//! The commands of the Redis front door: the table ([`COMMANDS`]), the typed operations a
//! command becomes ([`Op`] for the layers below, [`Control`] for the session), and [`parse`],
//! which turns a decoded command into one of them with Redis' error texts.
//!
//! Guarantees, checked by the unit tests here and by `tests/command_errors.rs`:
//! * parsing never panics and never looks at data: it is a pure function of the arguments;
//! * command names, subcommand names and option words are case-insensitive;
//! * an unknown command, an unknown subcommand and a wrong arity are [`Rejection`]s, found
//!   before any argument is read, as in Redis;
//! * every other error a command can give without knowing the data is a [`CommandError`] found
//!   here, with Redis 7.0's text; what is left for the backend is listed on each [`Op`];
//! * options this store does not have (`SET`'s expiry) are errors, never ignored.

mod error;
mod introspect;
mod op;
mod parse;
mod table;

pub use error::{CommandError, Rejection};
pub use introspect::{count, docs, docs_of, help, info, info_all, info_of, lookup_full};
pub use op::{Control, Credentials, FlushMode, Key, Op, SetCondition, Value};
pub use parse::{parse, Operation, Parsed};
pub use table::{lookup, Arg, ArgType, CommandSpec, Flags, Group, KeyRange, COMMANDS};
