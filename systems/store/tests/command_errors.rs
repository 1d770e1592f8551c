//! Table-driven: the error reply, byte for byte as the client reads it, of every error the front
//! door gives without the layers below. Each row: whether a password is configured, commands
//! run first, the command, and the line expected (without `-` and `\r\n`). The texts are Redis
//! 7.0's (checked against a real server by `tests/redis_differential.rs` where they can be).

use selfman_store::resp::{Protocol, Reply};
use selfman_store::session::{Action, Session, SessionConfig};

/// (password?, setup, command, expected error line)
#[rustfmt::skip] // one row per case
const ROWS: &[(bool, &[&str], &str, &str)] = &[
    // Lookup and arity.
    (false, &[], "FOO a b", "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "),
    (false, &[], "foo", "ERR unknown command 'foo', with args beginning with: "),
    (false, &[], "GET", "ERR wrong number of arguments for 'get' command"),
    (false, &[], "get a b", "ERR wrong number of arguments for 'get' command"),
    (false, &[], "SET k", "ERR wrong number of arguments for 'set' command"),
    (false, &[], "MSET a", "ERR wrong number of arguments for 'mset' command"),
    (false, &[], "MSET a b c", "ERR wrong number of arguments for 'mset' command"),
    (false, &[], "DEL", "ERR wrong number of arguments for 'del' command"),
    (false, &[], "EXISTS", "ERR wrong number of arguments for 'exists' command"),
    (false, &[], "MGET", "ERR wrong number of arguments for 'mget' command"),
    (false, &[], "SETNX k", "ERR wrong number of arguments for 'setnx' command"),
    (false, &[], "GETSET k", "ERR wrong number of arguments for 'getset' command"),
    (false, &[], "INCR k x", "ERR wrong number of arguments for 'incr' command"),
    (false, &[], "DECR", "ERR wrong number of arguments for 'decr' command"),
    (false, &[], "INCRBY k", "ERR wrong number of arguments for 'incrby' command"),
    (false, &[], "DECRBY k", "ERR wrong number of arguments for 'decrby' command"),
    (false, &[], "APPEND k", "ERR wrong number of arguments for 'append' command"),
    (false, &[], "STRLEN", "ERR wrong number of arguments for 'strlen' command"),
    (false, &[], "SADD k", "ERR wrong number of arguments for 'sadd' command"),
    (false, &[], "SREM k", "ERR wrong number of arguments for 'srem' command"),
    (false, &[], "SMEMBERS", "ERR wrong number of arguments for 'smembers' command"),
    (false, &[], "SISMEMBER k", "ERR wrong number of arguments for 'sismember' command"),
    (false, &[], "SCARD k x", "ERR wrong number of arguments for 'scard' command"),
    (false, &[], "TYPE", "ERR wrong number of arguments for 'type' command"),
    (false, &[], "DBSIZE x", "ERR wrong number of arguments for 'dbsize' command"),
    (false, &[], "KEYS", "ERR wrong number of arguments for 'keys' command"),
    (false, &[], "SCAN", "ERR wrong number of arguments for 'scan' command"),
    (false, &[], "PING a b", "ERR wrong number of arguments for 'ping' command"),
    (false, &[], "ECHO", "ERR wrong number of arguments for 'echo' command"),
    (false, &[], "SELECT", "ERR wrong number of arguments for 'select' command"),
    (false, &[], "AUTH", "ERR wrong number of arguments for 'auth' command"),
    (false, &[], "WATCH", "ERR wrong number of arguments for 'watch' command"),
    (false, &[], "UNWATCH x", "ERR wrong number of arguments for 'unwatch' command"),
    (false, &[], "MULTI x", "ERR wrong number of arguments for 'multi' command"),
    (false, &[], "DISCARD x", "ERR wrong number of arguments for 'discard' command"),
    (false, &[], "RESET x", "ERR wrong number of arguments for 'reset' command"),
    (false, &[], "SUBSCRIBE", "ERR wrong number of arguments for 'subscribe' command"),
    (false, &[], "PSUBSCRIBE", "ERR wrong number of arguments for 'psubscribe' command"),
    (false, &[], "CLIENT", "ERR wrong number of arguments for 'client' command"),
    (false, &[], "CLIENT SETNAME", "ERR wrong number of arguments for 'client|setname' command"),
    (false, &[], "CLIENT ID x", "ERR wrong number of arguments for 'client|id' command"),
    (false, &[], "CONFIG", "ERR wrong number of arguments for 'config' command"),
    (false, &[], "CONFIG GET", "ERR wrong number of arguments for 'config|get' command"),
    (false, &[], "COMMAND COUNT x", "ERR wrong number of arguments for 'command|count' command"),
    (false, &[], "CLIENT KILL x", "ERR unknown subcommand 'KILL'. Try CLIENT HELP."),
    (false, &[], "config set a b", "ERR unknown subcommand 'set'. Try CONFIG HELP."),
    (false, &[], "COMMAND FOO", "ERR unknown subcommand 'FOO'. Try COMMAND HELP."),
    // Arguments.
    (false, &[], "SET k v NX XX", "ERR syntax error"),
    (false, &[], "SET k v FOO", "ERR syntax error"),
    (false, &[], "SET k v EX", "ERR syntax error"),
    (false, &[], "SET k v KEEPTTL EX 1", "ERR syntax error"),
    (false, &[], "SET k v EX 10", "ERR SET options EX, PX, EXAT, PXAT and KEEPTTL are not supported: keys in this store do not expire"),
    (false, &[], "SET k v KEEPTTL", "ERR SET options EX, PX, EXAT, PXAT and KEEPTTL are not supported: keys in this store do not expire"),
    (false, &[], "INCRBY k x", "ERR value is not an integer or out of range"),
    (false, &[], "INCRBY k 1.5", "ERR value is not an integer or out of range"),
    (false, &[], "INCRBY k 9223372036854775808", "ERR value is not an integer or out of range"),
    (false, &[], "DECRBY k 01", "ERR value is not an integer or out of range"),
    (false, &[], "DECRBY k -9223372036854775808", "ERR decrement would overflow"),
    (false, &[], "SCAN x", "ERR invalid cursor"),
    (false, &[], "SCAN 18446744073709551616", "ERR invalid cursor"),
    (false, &[], "SCAN 0 COUNT", "ERR syntax error"),
    (false, &[], "SCAN 0 COUNT 0", "ERR syntax error"),
    (false, &[], "SCAN 0 COUNT x", "ERR value is not an integer or out of range"),
    (false, &[], "SCAN 0 FOO x", "ERR syntax error"),
    (false, &[], "FLUSHALL x", "ERR syntax error"),
    (false, &[], "FLUSHDB async x", "ERR syntax error"),
    (false, &[], "SELECT 1", "ERR DB index is out of range"),
    (false, &[], "SELECT -1", "ERR DB index is out of range"),
    (false, &[], "SELECT x", "ERR value is not an integer or out of range"),
    (false, &[], "HELLO x", "ERR Protocol version is not an integer or out of range"),
    (false, &[], "HELLO 1", "NOPROTO unsupported protocol version"),
    (false, &[], "HELLO 4", "NOPROTO unsupported protocol version"),
    (false, &[], "HELLO 3 AUTH u", "ERR Syntax error in HELLO option 'AUTH'"),
    (false, &[], "HELLO 2 FOO", "ERR Syntax error in HELLO option 'FOO'"),
    (false, &[], "HELLO 3 SETNAME a\u{1}", "ERR Client names cannot contain spaces, newlines or special characters."),
    (false, &[], "CLIENT SETNAME a\u{7f}", "ERR Client names cannot contain spaces, newlines or special characters."),
    // Authentication.
    (false, &[], "AUTH x", "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"),
    (false, &[], "AUTH bob x", "WRONGPASS invalid username-password pair or user is disabled."),
    (false, &[], "AUTH a b c", "ERR syntax error"),
    (true, &[], "PING", "NOAUTH Authentication required."),
    (true, &[], "GET k", "NOAUTH Authentication required."),
    (true, &[], "SUBSCRIBE c", "NOAUTH Authentication required."),
    (true, &[], "AUTH wrong", "WRONGPASS invalid username-password pair or user is disabled."),
    (true, &[], "AUTH default wrong", "WRONGPASS invalid username-password pair or user is disabled."),
    (true, &[], "HELLO 3", "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"),
    (true, &[], "HELLO 3 AUTH default wrong", "WRONGPASS invalid username-password pair or user is disabled."),
    (true, &[], "EXEC", "EXECABORT Transaction discarded because of: NOAUTH Authentication required."),
    (true, &["AUTH sekret", "RESET"], "PING", "NOAUTH Authentication required."),
    // Transactions.
    (false, &[], "EXEC", "ERR EXEC without MULTI"),
    (false, &[], "DISCARD", "ERR DISCARD without MULTI"),
    (false, &["MULTI"], "MULTI", "ERR MULTI calls can not be nested"),
    (false, &["MULTI"], "WATCH k", "ERR WATCH inside MULTI is not allowed"),
    (false, &["MULTI"], "SUBSCRIBE c", "ERR Command not allowed inside a transaction"),
    (false, &["MULTI"], "HELLO 3", "ERR Command not allowed inside a transaction"),
    (false, &["MULTI", "GET"], "EXEC", "EXECABORT Transaction discarded because of previous errors."),
    (false, &["MULTI", "FOO"], "EXEC", "EXECABORT Transaction discarded because of previous errors."),
    (false, &["MULTI"], "EXEC x", "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"),
    (false, &["MULTI", "EXEC x"], "EXEC", "ERR EXEC without MULTI"),
    // Pub/sub mode in RESP2.
    (false, &["SUBSCRIBE c"], "GET k", "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
    (false, &["PSUBSCRIBE p*"], "CLIENT ID", "ERR Can't execute 'client|id': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
    (false, &["SUBSCRIBE c"], "MULTI", "ERR Can't execute 'multi': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
    (false, &["SUBSCRIBE c"], "EXEC", "EXECABORT Transaction discarded because of: Can't execute 'exec': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
    (false, &["SUBSCRIBE c"], "FOO", "ERR unknown command 'FOO', with args beginning with: "),
];

fn args(line: &str) -> Vec<Vec<u8>> {
    line.split(' ').map(|a| a.as_bytes().to_vec()).collect()
}

#[test]
fn every_error_reply_matches_the_table() {
    let mut failures = Vec::new();
    for &(password, setup, line, want) in ROWS {
        let mut config = SessionConfig::new(1);
        if password {
            config.password = Some(b"sekret".to_vec());
        }
        let mut s = Session::new(config);
        for l in setup {
            s.command(args(l));
        }
        let actions = s.command(args(line));
        let mut got = Vec::new();
        for a in &actions {
            if let Action::Reply { reply, .. } = a {
                reply.encode(Protocol::Resp2, &mut got);
            }
        }
        let want_bytes = format!("-{want}\r\n").into_bytes();
        if got != want_bytes || actions.len() != 1 {
            failures.push(format!(
                "{setup:?} then {line:?}:\n  want {:?}\n  got  {:?} ({} actions)",
                String::from_utf8_lossy(&want_bytes),
                String::from_utf8_lossy(&got),
                actions.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{} rows differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn errors_are_one_line_whatever_the_client_sent() {
    // Line breaks in echoed arguments become spaces, as Redis writes them.
    let mut s = Session::new(SessionConfig::new(1));
    let actions = s.command(vec![b"FOO".to_vec(), b"a\r\nb".to_vec()]);
    let [Action::Reply { reply, .. }] = &actions[..] else { panic!("{actions:?}") };
    let mut out = Vec::new();
    reply.encode(Protocol::Resp2, &mut out);
    assert_eq!(out, b"-ERR unknown command 'FOO', with args beginning with: 'a  b' \r\n");
    assert!(matches!(reply, Reply::Error(_)));
}
