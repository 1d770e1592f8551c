//! From a decoded command (its arguments as bytes) to a typed [`Operation`].
//!
//! Two steps, in Redis' order. [`parse`] first finds the command (name any case; a
//! container's subcommand) and checks its arity against the table; failing that is a
//! [`Rejection`]. It then reads the arguments; failing that is a [`CommandError`], kept beside
//! the command's table entry so that the session can decide when to answer it (at once, or as
//! the command's entry in `EXEC`'s reply).
//!
//! Numbers follow Redis: integers as `string2ll` reads them (an optional `-`, digits, no leading
//! zero, fitting 64 bits), `SELECT`'s index as a 32-bit integer, and `SCAN`'s cursor as C's
//! `strtoul` reads it (an optional sign, digits; nothing else, no leading blank).

use crate::command::error::{CommandError, Rejection};
use crate::command::op::{Control, Credentials, FlushMode, Op, SetCondition};
use crate::command::table::{lookup, CommandSpec};
use crate::resp::{parse_i64, Protocol};

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// A data operation, for the layers below.
    Data(Op),
    /// A connection command, for the session.
    Control(Control),
}

/// A command found in the table with the right arity, and its arguments read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Its entry in the table (a subcommand's own entry, for `CLIENT SETNAME`).
    pub spec: &'static CommandSpec,
    /// The operation, or the command's own error about its arguments.
    pub operation: Result<Operation, CommandError>,
}

/// Finds the command and reads its arguments.
///
/// # Errors
///
/// A [`Rejection`] when the command is unknown (or a container's subcommand is) or its arity
/// is wrong.
///
/// # Examples
///
/// ```
/// use selfman_store::command::{parse, Op, Operation, SetCondition};
///
/// let args: Vec<Vec<u8>> = ["set", "k", "v", "nx", "GET"].map(|a| a.as_bytes().to_vec()).into();
/// let parsed = parse(&args).unwrap();
/// assert_eq!(parsed.spec.name, "set");
/// assert_eq!(
///     parsed.operation,
///     Ok(Operation::Data(Op::Set {
///         key: b"k".to_vec(),
///         value: b"v".to_vec(),
///         condition: SetCondition::IfAbsent,
///         get_old: true,
///     }))
/// );
/// ```
pub fn parse(args: &[Vec<u8>]) -> Result<Parsed, Rejection> {
    let spec = find(args)?;
    if !spec.accepts(args.len()) {
        return Err(Rejection::WrongArity(spec.name));
    }
    Ok(Parsed { spec, operation: arguments(spec.name, args) })
}

/// The table entry for `args`: the command, or a container's subcommand.
fn find(args: &[Vec<u8>]) -> Result<&'static CommandSpec, Rejection> {
    let Some(name) = args.first() else {
        return Err(Rejection::unknown_command(args));
    };
    let spec = lookup(name).ok_or_else(|| Rejection::unknown_command(args))?;
    match args.get(1) {
        Some(sub) if !spec.subcommands.is_empty() => {
            spec.subcommand(sub).ok_or_else(|| Rejection::unknown_subcommand(name, sub))
        }
        _ => Ok(spec),
    }
}

fn integer(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotAnInteger)
}

/// C's `strtoul` in base 10 as Redis uses it for cursors: no leading blank, an optional sign
/// (a `-` negates modulo 2^64), then digits to the end; an empty string is 0.
fn cursor(arg: &[u8]) -> Result<u64, CommandError> {
    let (negative, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, arg),
    };
    if digits.is_empty() && !arg.is_empty() {
        return Err(CommandError::InvalidCursor); // a sign alone: nothing was read
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(CommandError::InvalidCursor);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(CommandError::InvalidCursor)?;
    }
    Ok(if negative { value.wrapping_neg() } else { value })
}

/// Redis' rule for client names: every byte printable and not a blank (`!` to `~`).
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|b| (b'!'..=b'~').contains(b))
}

fn lowercase(args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_ascii_lowercase()).collect()
}

/// Reads the arguments of the command whose table name is `name`; the arity is already right.
fn arguments(name: &str, args: &[Vec<u8>]) -> Result<Operation, CommandError> {
    use Control as C;
    let data = |op: Op| Ok(Operation::Data(op));
    let control = |c: Control| Ok(Operation::Control(c));
    let key = || args[1].clone();
    let rest = |from: usize| args[from..].to_vec();
    match name {
        "get" => data(Op::Get { key: key() }),
        "set" => set(args),
        "setnx" => data(Op::SetNx { key: key(), value: args[2].clone() }),
        "getset" => data(Op::GetSet { key: key(), value: args[2].clone() }),
        "mget" => data(Op::MGet { keys: rest(1) }),
        "mset" => {
            if args.len() % 2 == 0 {
                return Err(CommandError::WrongArity("mset"));
            }
            let pairs = args[1..].chunks_exact(2).map(|p| (p[0].clone(), p[1].clone()));
            data(Op::MSet { pairs: pairs.collect() })
        }
        "del" => data(Op::Del { keys: rest(1) }),
        "exists" => data(Op::Exists { keys: rest(1) }),
        "incr" => data(Op::IncrBy { key: key(), by: 1 }),
        "decr" => data(Op::IncrBy { key: key(), by: -1 }),
        "incrby" => data(Op::IncrBy { key: key(), by: integer(&args[2])? }),
        "decrby" => {
            let by = integer(&args[2])?.checked_neg().ok_or(CommandError::DecrementOverflow)?;
            data(Op::IncrBy { key: key(), by })
        }
        "append" => data(Op::Append { key: key(), value: args[2].clone() }),
        "strlen" => data(Op::StrLen { key: key() }),
        "sadd" => data(Op::SAdd { key: key(), members: rest(2) }),
        "srem" => data(Op::SRem { key: key(), members: rest(2) }),
        "smembers" => data(Op::SMembers { key: key() }),
        "sismember" => data(Op::SIsMember { key: key(), member: args[2].clone() }),
        "scard" => data(Op::SCard { key: key() }),
        "type" => data(Op::Type { key: key() }),
        "dbsize" => data(Op::DbSize),
        "scan" => scan(args),
        "keys" => data(Op::Keys { pattern: key() }),
        "flushall" => data(Op::FlushAll { mode: flush_mode(args)? }),
        "flushdb" => data(Op::FlushDb { mode: flush_mode(args)? }),
        "info" => data(Op::Info { sections: lowercase(&args[1..]) }),
        "config|get" => data(Op::ConfigGet { patterns: lowercase(&args[2..]) }),
        "config|help" => control(C::ConfigHelp),
        "ping" => match args.len() {
            1 => control(C::Ping(None)),
            2 => control(C::Ping(Some(key()))),
            _ => Err(CommandError::WrongArity("ping")),
        },
        "echo" => control(C::Echo(key())),
        "hello" => hello(args),
        "auth" => match args {
            [_, password] => {
                control(C::Auth(Credentials { user: None, password: password.clone() }))
            }
            [_, user, password] => control(C::Auth(Credentials {
                user: Some(user.clone()),
                password: password.clone(),
            })),
            _ => Err(CommandError::Syntax),
        },
        "select" => {
            let index = integer(&args[1])?;
            i32::try_from(index).map_err(|_| CommandError::NotAnInteger)?;
            if index == 0 {
                control(C::Select)
            } else {
                Err(CommandError::DbIndexOutOfRange)
            }
        }
        "quit" => control(C::Quit),
        "reset" => control(C::Reset),
        "client|setname" => {
            if !valid_client_name(&args[2]) {
                return Err(CommandError::InvalidClientName);
            }
            control(C::ClientSetName(args[2].clone()))
        }
        "client|getname" => control(C::ClientGetName),
        "client|id" => control(C::ClientId),
        "client|help" => control(C::ClientHelp),
        "command" => control(C::CommandAll),
        "command|count" => control(C::CommandCount),
        "command|info" => control(C::CommandInfo(rest(2))),
        "command|docs" => control(C::CommandDocs(rest(2))),
        "command|help" => control(C::CommandHelp),
        "multi" => control(C::Multi),
        "exec" => control(C::Exec),
        "discard" => control(C::Discard),
        "watch" => control(C::Watch(rest(1))),
        "unwatch" => control(C::Unwatch),
        "subscribe" => control(C::Subscribe(rest(1))),
        "psubscribe" => control(C::PSubscribe(rest(1))),
        "unsubscribe" => control(C::Unsubscribe(rest(1))),
        "punsubscribe" => control(C::PUnsubscribe(rest(1))),
        other => unreachable!("the command table has `{other}` but the parser does not"),
    }
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`, read as Redis 7 reads
/// it: options in any order and any case, a repeated option allowed, `NX` with `XX` or two
/// kinds of expiry a syntax error. The syntax is checked first; then any expiry is refused,
/// because keys in this store do not expire.
fn set(args: &[Vec<u8>]) -> Result<Operation, CommandError> {
    let mut condition = SetCondition::Always;
    let mut get_old = false;
    let mut expiry: Option<&[u8]> = None; // the kind given: EX, PX, EXAT, PXAT or KEEPTTL
    let mut i = 3;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let has_value = i + 1 < args.len();
        match opt.as_slice() {
            b"NX" if condition != SetCondition::IfPresent => condition = SetCondition::IfAbsent,
            b"XX" if condition != SetCondition::IfAbsent => condition = SetCondition::IfPresent,
            b"GET" => get_old = true,
            b"KEEPTTL" if expiry.is_none_or(|e| e == b"KEEPTTL") => expiry = Some(b"KEEPTTL"),
            kind @ (b"EX" | b"PX" | b"EXAT" | b"PXAT")
                if has_value && expiry.is_none_or(|e| e == kind) =>
            {
                expiry = Some(match kind {
                    b"EX" => b"EX",
                    b"PX" => b"PX",
                    b"EXAT" => b"EXAT",
                    _ => b"PXAT",
                });
                i += 1;
            }
            _ => return Err(CommandError::Syntax),
        }
        i += 1;
    }
    if expiry.is_some() {
        return Err(CommandError::ExpiryNotSupported);
    }
    Ok(Operation::Data(Op::Set {
        key: args[1].clone(),
        value: args[2].clone(),
        condition,
        get_old,
    }))
}

/// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`: the cursor first, then options in pairs, the
/// last of each kind winning; `COUNT` below 1 is a syntax error.
fn scan(args: &[Vec<u8>]) -> Result<Operation, CommandError> {
    let cursor = cursor(&args[1])?;
    let (mut pattern, mut count, mut kind) = (None, None, None);
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Err(CommandError::Syntax);
        };
        match args[i].to_ascii_lowercase().as_slice() {
            b"match" => pattern = Some(value.clone()),
            b"count" => {
                let n = integer(value)?;
                count =
                    Some(u64::try_from(n).ok().filter(|&n| n >= 1).ok_or(CommandError::Syntax)?);
            }
            b"type" => kind = Some(value.clone()),
            _ => return Err(CommandError::Syntax),
        }
        i += 2;
    }
    Ok(Operation::Data(Op::Scan { cursor, pattern, count, kind }))
}

/// `FLUSHALL` / `FLUSHDB` `[ASYNC|SYNC]`.
fn flush_mode(args: &[Vec<u8>]) -> Result<FlushMode, CommandError> {
    match args {
        [_] => Ok(FlushMode::Default),
        [_, mode] if mode.eq_ignore_ascii_case(b"async") => Ok(FlushMode::Async),
        [_, mode] if mode.eq_ignore_ascii_case(b"sync") => Ok(FlushMode::Sync),
        _ => Err(CommandError::Syntax),
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: the version first (2 or 3), then the
/// options in any order and any case, the last of each winning.
fn hello(args: &[Vec<u8>]) -> Result<Operation, CommandError> {
    let mut protocol = None;
    if let Some(version) = args.get(1) {
        protocol = Some(match parse_i64(version) {
            None => return Err(CommandError::ProtocolVersionNotInteger),
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Err(CommandError::NoProto),
        });
    }
    let (mut auth, mut name) = (None, None);
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i];
        if opt.eq_ignore_ascii_case(b"auth") && more >= 2 {
            auth = Some(Credentials {
                user: Some(args[i + 1].clone()),
                password: args[i + 2].clone(),
            });
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"setname") && more >= 1 {
            if !valid_client_name(&args[i + 1]) {
                return Err(CommandError::InvalidClientName);
            }
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Err(CommandError::HelloOption(opt.clone()));
        }
    }
    Ok(Operation::Control(Control::Hello { protocol, auth, name }))
}

#[cfg(test)]
mod tests {
    use super::{cursor, parse, Operation};
    use crate::command::error::{CommandError, Rejection};
    use crate::command::op::{Control, FlushMode, Op, SetCondition};
    use crate::resp::Protocol;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    fn op(line: &str) -> Result<Operation, CommandError> {
        parse(&args(line)).expect("found, arity right").operation
    }

    fn data(line: &str) -> Op {
        match op(line) {
            Ok(Operation::Data(op)) => op,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn set_options_in_any_order_and_case() {
        let set = |condition, get_old| Op::Set { key: b("k"), value: b("v"), condition, get_old };
        assert_eq!(data("SET k v"), set(SetCondition::Always, false));
        assert_eq!(data("set k v nx"), set(SetCondition::IfAbsent, false));
        assert_eq!(data("set k v Xx get"), set(SetCondition::IfPresent, true));
        assert_eq!(data("set k v GET NX nx get"), set(SetCondition::IfAbsent, true));
        for bad in [
            "set k v NX XX",
            "set k v XX NX",
            "set k v FOO",
            "set k v EX",
            "set k v EX 1 PX 1",
            "set k v KEEPTTL EX 1",
            "set k v EX 1 KEEPTTL",
        ] {
            assert_eq!(op(bad), Err(CommandError::Syntax), "{bad}");
        }
        for unsupported in [
            "set k v EX 10",
            "set k v px 1",
            "set k v EXAT 1",
            "set k v PXAT 1",
            "set k v KEEPTTL",
            "set k v EX x",
            "set k v EX 1 EX 2 NX",
        ] {
            assert_eq!(op(unsupported), Err(CommandError::ExpiryNotSupported), "{unsupported}");
        }
    }

    #[test]
    fn counters_take_strict_integers() {
        assert_eq!(data("INCR k"), Op::IncrBy { key: b("k"), by: 1 });
        assert_eq!(data("DECR k"), Op::IncrBy { key: b("k"), by: -1 });
        assert_eq!(data("INCRBY k -5"), Op::IncrBy { key: b("k"), by: -5 });
        assert_eq!(data("DECRBY k 5"), Op::IncrBy { key: b("k"), by: -5 });
        assert_eq!(data("DECRBY k 9223372036854775807"), Op::IncrBy { key: b("k"), by: -i64::MAX });
        assert_eq!(op("DECRBY k -9223372036854775808"), Err(CommandError::DecrementOverflow));
        assert_eq!(data("INCRBY k -9223372036854775808"), Op::IncrBy { key: b("k"), by: i64::MIN });
        for bad in ["+1", "01", "1.5", "", "9223372036854775808", "x"] {
            assert_eq!(op(&format!("INCRBY k {bad}")), Err(CommandError::NotAnInteger), "{bad}");
        }
    }

    #[test]
    fn multi_key_commands() {
        assert_eq!(
            data("MSET a 1 b 2"),
            Op::MSet { pairs: vec![(b("a"), b("1")), (b("b"), b("2"))] }
        );
        assert_eq!(op("MSET a 1 b"), Err(CommandError::WrongArity("mset")));
        assert_eq!(data("DEL a b a"), Op::Del { keys: vec![b("a"), b("b"), b("a")] });
        assert_eq!(data("EXISTS a a"), Op::Exists { keys: vec![b("a"), b("a")] });
        assert_eq!(data("MGET a"), Op::MGet { keys: vec![b("a")] });
        assert_eq!(data("SADD s x y").keys(), vec![&b"s"[..]]);
        assert_eq!(data("MSET a 1 b 2").keys(), vec![&b"a"[..], b"b"]);
        assert!(data("SREM s x").is_write() && !data("SISMEMBER s x").is_write());
    }

    #[test]
    fn scan_reads_like_redis() {
        assert_eq!(cursor(b"0"), Ok(0));
        assert_eq!(cursor(b"00"), Ok(0));
        assert_eq!(cursor(b""), Ok(0));
        assert_eq!(cursor(b"+7"), Ok(7));
        assert_eq!(cursor(b"-1"), Ok(u64::MAX));
        assert_eq!(cursor(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [&b"18446744073709551616"[..], b"x", b" 1", b"1 ", b"-", b"+", b"1x"] {
            assert_eq!(cursor(bad), Err(CommandError::InvalidCursor), "{bad:?}");
        }
        assert_eq!(
            data("SCAN 5 MATCH a* count 10 TYPE string MATCH b*"),
            Op::Scan {
                cursor: 5,
                pattern: Some(b("b*")),
                count: Some(10),
                kind: Some(b("string"))
            }
        );
        assert_eq!(op("SCAN x COUNT 0"), Err(CommandError::InvalidCursor), "cursor first");
        assert_eq!(op("SCAN 0 COUNT"), Err(CommandError::Syntax));
        assert_eq!(op("SCAN 0 COUNT 0"), Err(CommandError::Syntax));
        assert_eq!(op("SCAN 0 COUNT -1"), Err(CommandError::Syntax));
        assert_eq!(op("SCAN 0 COUNT x"), Err(CommandError::NotAnInteger));
        assert_eq!(op("SCAN 0 FOO x"), Err(CommandError::Syntax));
    }

    #[test]
    fn server_commands() {
        assert_eq!(data("FLUSHALL"), Op::FlushAll { mode: FlushMode::Default });
        assert_eq!(data("flushdb Async"), Op::FlushDb { mode: FlushMode::Async });
        assert_eq!(data("FLUSHALL sync"), Op::FlushAll { mode: FlushMode::Sync });
        assert_eq!(op("FLUSHALL x"), Err(CommandError::Syntax));
        assert_eq!(op("FLUSHALL async x"), Err(CommandError::Syntax));
        assert_eq!(
            data("INFO Server KEYSPACE"),
            Op::Info { sections: vec![b("server"), b("keyspace")] }
        );
        assert_eq!(data("CONFIG get Save"), Op::ConfigGet { patterns: vec![b("save")] });
        assert_eq!(data("DBSIZE"), Op::DbSize);
        assert_eq!(data("KEYS *"), Op::Keys { pattern: b("*") });
        assert_eq!(data("TYPE k"), Op::Type { key: b("k") });
    }

    #[test]
    fn connection_commands() {
        let ctl = |line: &str| match op(line) {
            Ok(Operation::Control(c)) => c,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(ctl("PING"), Control::Ping(None));
        assert_eq!(ctl("ping hi"), Control::Ping(Some(b("hi"))));
        assert_eq!(op("PING a b"), Err(CommandError::WrongArity("ping")));
        assert_eq!(ctl("SELECT 0"), Control::Select);
        assert_eq!(op("SELECT 1"), Err(CommandError::DbIndexOutOfRange));
        assert_eq!(op("SELECT -1"), Err(CommandError::DbIndexOutOfRange));
        assert_eq!(op("SELECT 00"), Err(CommandError::NotAnInteger));
        assert_eq!(op("SELECT 4294967296"), Err(CommandError::NotAnInteger));
        assert_eq!(op("AUTH a b c"), Err(CommandError::Syntax));
        assert_eq!(ctl("client SetName x"), Control::ClientSetName(b("x")));
        assert_eq!(ctl("CLIENT SETNAME "), Control::ClientSetName(b("")));
        assert_eq!(op("CLIENT SETNAME a\nb"), Err(CommandError::InvalidClientName));
        assert_eq!(ctl("QUIT x y"), Control::Quit);
        assert_eq!(ctl("COMMAND"), Control::CommandAll);
        assert_eq!(ctl("command info get SET"), Control::CommandInfo(vec![b("get"), b("SET")]));
    }

    #[test]
    fn hello_reads_version_then_options() {
        let hello = |line: &str| match op(line) {
            Ok(Operation::Control(Control::Hello { protocol, auth, name })) => {
                (protocol, auth.map(|a| (a.user, a.password)), name)
            }
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(hello("HELLO"), (None, None, None));
        assert_eq!(hello("HELLO 3"), (Some(Protocol::Resp3), None, None));
        assert_eq!(
            hello("HELLO 2 setname a AUTH u p SETNAME b"),
            (Some(Protocol::Resp2), Some((Some(b("u")), b("p"))), Some(b("b")))
        );
        assert_eq!(op("HELLO x"), Err(CommandError::ProtocolVersionNotInteger));
        assert_eq!(op("HELLO 03"), Err(CommandError::ProtocolVersionNotInteger));
        assert_eq!(op("HELLO 4"), Err(CommandError::NoProto));
        assert_eq!(op("HELLO -1"), Err(CommandError::NoProto));
        assert_eq!(op("HELLO 4 FOO"), Err(CommandError::NoProto), "the version first");
        assert_eq!(op("HELLO 3 AUTH u"), Err(CommandError::HelloOption(b("AUTH"))));
        assert_eq!(op("HELLO 3 setname"), Err(CommandError::HelloOption(b("setname"))));
        assert_eq!(op("HELLO 3 SETNAME a\tb"), Err(CommandError::InvalidClientName));
    }

    #[test]
    fn lookup_and_arity_are_rejections() {
        let rejection = |line: &str| parse(&args(line)).map(|p| p.spec.name);
        assert_eq!(rejection("GET"), Err(Rejection::WrongArity("get")));
        assert_eq!(rejection("get a b"), Err(Rejection::WrongArity("get")));
        assert_eq!(rejection("CONFIG"), Err(Rejection::WrongArity("config")));
        assert_eq!(rejection("CONFIG GET"), Err(Rejection::WrongArity("config|get")));
        assert_eq!(rejection("CLIENT SETNAME"), Err(Rejection::WrongArity("client|setname")));
        assert_eq!(rejection("COMMAND COUNT x"), Err(Rejection::WrongArity("command|count")));
        assert_eq!(
            rejection("CONFIG set a b"),
            Err(Rejection::unknown_subcommand(b"CONFIG", b"set"))
        );
        assert_eq!(rejection("hset k f v"), Err(Rejection::unknown_command(&args("hset k f v"))));
        assert_eq!(rejection("Config Get x"), Ok("config|get"));
        assert_eq!(rejection("command"), Ok("command"));
        assert!(parse(&[]).is_err(), "an empty command is unknown, not a panic");
    }
}
