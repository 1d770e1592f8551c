//! The two ways a command goes wrong before the layers below see it, with Redis' texts.
//!
//! * A [`Rejection`] happens before a command runs: the name is unknown, the arity is wrong, or
//!   the connection's state forbids it (not authenticated, in RESP2 pub/sub mode, inside
//!   `MULTI`). Inside `MULTI` a rejection marks the transaction as failed, so its `EXEC` answers
//!   `EXECABORT`; a rejected `EXEC` is answered `EXECABORT ... because of: <reason>`.
//! * A [`CommandError`] is the command's own answer to its arguments (`ERR syntax error`, `ERR
//!   value is not an integer or out of range`). Redis finds these while running the command, so
//!   inside `MULTI` the command is queued and the error is its entry in `EXEC`'s reply.
//!
//! Errors that depend on the data (`WRONGTYPE`, `ERR increment or decrement would overflow`,
//! `ERR value is not an integer` for a stored value) are the backend's: nothing here knows the
//! data.

use crate::resp::Reply;

/// A command refused before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The name is not in the table. Holds the error line as Redis builds it.
    UnknownCommand(Vec<u8>),
    /// A container (`CLIENT`, `COMMAND`, `CONFIG`) without such a subcommand.
    UnknownSubcommand(Vec<u8>),
    /// The arity does not match; holds the full name (`get`, `config|get`).
    WrongArity(&'static str),
    /// A password is configured and the client has not authenticated.
    NoAuth,
    /// A RESP2 connection in pub/sub mode; holds the full name.
    PubSubContext(&'static str),
    /// A command that may not be queued inside `MULTI`.
    NotInTransaction,
    /// A transaction that already holds this many commands (the session's bound).
    TooManyQueued(usize),
}

/// Redis' `%.Ns`: a C string's bytes up to a NUL, at most `max` of them.
fn c_prefix(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end.min(max)]
}

/// How much of the name and arguments an unknown-command error repeats (Redis' 128).
const ECHOED: usize = 128;

impl Rejection {
    /// `ERR unknown command '<name>', with args beginning with: '<a>' '<b>' `, the way Redis 7
    /// writes it: the name and the arguments cut at a NUL byte, the name to 128 bytes, and
    /// arguments added while the list is shorter than 128 bytes, each cut to what is left.
    pub fn unknown_command(args: &[Vec<u8>]) -> Rejection {
        let mut line = b"ERR unknown command '".to_vec();
        line.extend_from_slice(c_prefix(args.first().map_or(&[], Vec::as_slice), ECHOED));
        line.extend_from_slice(b"', with args beginning with: ");
        let mut listed = Vec::new();
        for arg in args.iter().skip(1) {
            if listed.len() >= ECHOED {
                break;
            }
            let room = ECHOED - listed.len();
            listed.push(b'\'');
            listed.extend_from_slice(c_prefix(arg, room));
            listed.extend_from_slice(b"' ");
        }
        line.extend_from_slice(&listed);
        Rejection::UnknownCommand(line)
    }

    /// `ERR unknown subcommand '<sub>'. Try <NAME> HELP.`, the container's name as the client
    /// wrote it, in capitals.
    pub fn unknown_subcommand(container: &[u8], sub: &[u8]) -> Rejection {
        let mut line = b"ERR unknown subcommand '".to_vec();
        line.extend_from_slice(c_prefix(sub, ECHOED));
        line.extend_from_slice(b"'. Try ");
        line.extend(c_prefix(container, usize::MAX).iter().map(u8::to_ascii_uppercase));
        line.extend_from_slice(b" HELP.");
        Rejection::UnknownSubcommand(line)
    }

    /// The error line.
    pub fn line(&self) -> Vec<u8> {
        match self {
            Rejection::UnknownCommand(line) | Rejection::UnknownSubcommand(line) => line.clone(),
            Rejection::WrongArity(name) => arity_line(name),
            Rejection::NoAuth => b"NOAUTH Authentication required.".to_vec(),
            Rejection::PubSubContext(name) => format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / \
                 QUIT / RESET are allowed in this context"
            )
            .into_bytes(),
            Rejection::NotInTransaction => b"ERR Command not allowed inside a transaction".to_vec(),
            Rejection::TooManyQueued(n) => {
                format!("ERR too many commands in this transaction (at most {n})").into_bytes()
            }
        }
    }

    /// The reply to the rejected command.
    pub fn reply(&self) -> Reply {
        Reply::Error(self.line())
    }

    /// The reply when the rejected command is `EXEC`: `EXECABORT Transaction discarded because
    /// of: <reason>`, the reason without its `ERR ` code (other codes stay, as in Redis).
    pub fn exec_abort_reply(&self) -> Reply {
        let line = self.line();
        let reason = line.strip_prefix(b"ERR ").unwrap_or(&line);
        let mut out = b"EXECABORT Transaction discarded because of: ".to_vec();
        out.extend_from_slice(reason);
        Reply::Error(out)
    }
}

fn arity_line(name: &str) -> Vec<u8> {
    format!("ERR wrong number of arguments for '{name}' command").into_bytes()
}

/// A command's own error about its arguments or about the connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `ERR syntax error`: an unknown option, options in conflict, an option missing its value.
    Syntax,
    /// `ERR value is not an integer or out of range`: an argument that is not a 64-bit integer
    /// in Redis' strict form (no `+`, no leading zero, no blanks).
    NotAnInteger,
    /// `ERR decrement would overflow`: `DECRBY` by the most negative 64-bit integer, whose
    /// negation does not fit.
    DecrementOverflow,
    /// `ERR DB index is out of range`: `SELECT` of a database other than 0 (the store has one).
    DbIndexOutOfRange,
    /// `ERR invalid cursor`: a `SCAN` cursor that is not an unsigned 64-bit number.
    InvalidCursor,
    /// `SET` with an expiry option: the store's keys do not expire.
    ExpiryNotSupported,
    /// The command's own arity check (`MSET` with a key and no value); holds the full name.
    WrongArity(&'static str),
    /// `HELLO` with a protocol version that is not an integer.
    ProtocolVersionNotInteger,
    /// `HELLO` with a version other than 2 or 3.
    NoProto,
    /// `HELLO` with an unknown option, or an option without its values; holds the option.
    HelloOption(Vec<u8>),
    /// A client name with a byte outside `!`..`~`.
    InvalidClientName,
    /// `AUTH <password>` while no password is configured.
    AuthWithoutPassword,
    /// A wrong user or password.
    WrongPass,
    /// `HELLO` from an unauthenticated client without `AUTH`.
    HelloNoAuth,
    /// `MULTI` inside `MULTI`.
    NestedMulti,
    /// `EXEC` outside `MULTI`.
    ExecWithoutMulti,
    /// `DISCARD` outside `MULTI`.
    DiscardWithoutMulti,
    /// `WATCH` inside `MULTI`.
    WatchInMulti,
    /// `EXEC` of a transaction in which a command was rejected.
    ExecAbort,
    /// `WATCH` past the session's bound on watched keys.
    TooManyWatched(usize),
    /// `SUBSCRIBE` / `PSUBSCRIBE` past the session's bound on subscriptions.
    TooManySubscriptions(usize),
}

impl CommandError {
    /// The error line, as Redis writes it.
    pub fn line(&self) -> Vec<u8> {
        let text: &str = match self {
            CommandError::Syntax => "ERR syntax error",
            CommandError::NotAnInteger => "ERR value is not an integer or out of range",
            CommandError::DecrementOverflow => "ERR decrement would overflow",
            CommandError::DbIndexOutOfRange => "ERR DB index is out of range",
            CommandError::InvalidCursor => "ERR invalid cursor",
            CommandError::ExpiryNotSupported => {
                "ERR SET options EX, PX, EXAT, PXAT and KEEPTTL are not supported: keys in this \
                 store do not expire"
            }
            CommandError::WrongArity(name) => return arity_line(name),
            CommandError::ProtocolVersionNotInteger => {
                "ERR Protocol version is not an integer or out of range"
            }
            CommandError::NoProto => "NOPROTO unsupported protocol version",
            CommandError::HelloOption(opt) => {
                let mut line = b"ERR Syntax error in HELLO option '".to_vec();
                line.extend_from_slice(c_prefix(opt, usize::MAX));
                line.push(b'\'');
                return line;
            }
            CommandError::InvalidClientName => {
                "ERR Client names cannot contain spaces, newlines or special characters."
            }
            CommandError::AuthWithoutPassword => {
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?"
            }
            CommandError::WrongPass => {
                "WRONGPASS invalid username-password pair or user is disabled."
            }
            CommandError::HelloNoAuth => {
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO AUTH <user> <pass> option can be used to authenticate the client and \
                 select the RESP protocol version at the same time"
            }
            CommandError::NestedMulti => "ERR MULTI calls can not be nested",
            CommandError::ExecWithoutMulti => "ERR EXEC without MULTI",
            CommandError::DiscardWithoutMulti => "ERR DISCARD without MULTI",
            CommandError::WatchInMulti => "ERR WATCH inside MULTI is not allowed",
            CommandError::ExecAbort => {
                "EXECABORT Transaction discarded because of previous errors."
            }
            CommandError::TooManyWatched(n) => {
                return format!("ERR too many watched keys (at most {n})").into_bytes();
            }
            CommandError::TooManySubscriptions(n) => {
                return format!("ERR too many subscriptions (at most {n})").into_bytes();
            }
        };
        text.as_bytes().to_vec()
    }

    /// The reply.
    pub fn reply(&self) -> Reply {
        Reply::Error(self.line())
    }
}

#[cfg(test)]
mod tests {
    use super::{CommandError, Rejection};

    fn text(line: Vec<u8>) -> String {
        String::from_utf8(line).unwrap()
    }

    fn args(v: &[&[u8]]) -> Vec<Vec<u8>> {
        v.iter().map(|a| a.to_vec()).collect()
    }

    #[test]
    fn unknown_command_repeats_name_and_arguments_like_redis_7() {
        let line = |v: &[&[u8]]| text(Rejection::unknown_command(&args(v)).line());
        assert_eq!(line(&[b"foo"]), "ERR unknown command 'foo', with args beginning with: ");
        assert_eq!(
            line(&[b"FOO", b"a", b"b"]),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        // The list stops growing at 128 bytes; each argument is cut to the room left.
        let a = [b'a'; 100];
        let got = line(&[b"FOO", &a, &a, &a]);
        let want = format!(
            "ERR unknown command 'FOO', with args beginning with: '{}' '{}' ",
            "a".repeat(100),
            "a".repeat(25)
        );
        assert_eq!(got, want);
        let long = [b'X'; 200];
        assert_eq!(
            line(&[&long]),
            format!("ERR unknown command '{}', with args beginning with: ", "X".repeat(128))
        );
        // A NUL ends a C string.
        assert_eq!(
            line(&[b"FOO", b"a\0b", b"c"]),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'c' "
        );
    }

    #[test]
    fn exec_abort_keeps_codes_other_than_err() {
        let t = |r: Rejection| match r.exec_abort_reply() {
            crate::resp::Reply::Error(e) => text(e),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            t(Rejection::WrongArity("exec")),
            "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' \
             command"
        );
        assert_eq!(
            t(Rejection::NoAuth),
            "EXECABORT Transaction discarded because of: NOAUTH Authentication required."
        );
    }

    #[test]
    fn subcommand_and_option_texts() {
        assert_eq!(
            text(Rejection::unknown_subcommand(b"config", b"set").line()),
            "ERR unknown subcommand 'set'. Try CONFIG HELP."
        );
        assert_eq!(
            text(CommandError::HelloOption(b"auth".to_vec()).line()),
            "ERR Syntax error in HELLO option 'auth'"
        );
    }
}
