//! Unit tests of the session rules, one rule per test.

use crate::command::Op;
use crate::resp::{Limits, Protocol, Reply, RequestDecoder};
use crate::session::{Action, Seq, Session, SessionConfig, SessionLimits, Topic, Transaction};

fn cmd(line: &str) -> Vec<Vec<u8>> {
    line.split(' ').map(|a| a.as_bytes().to_vec()).collect()
}

fn session() -> Session {
    Session::new(SessionConfig::new(42))
}

fn with_password() -> Session {
    Session::new(SessionConfig { password: Some(b"sekret".to_vec()), ..SessionConfig::new(42) })
}

/// The replies of one command, which must have only replies.
fn replies(s: &mut Session, line: &str) -> Vec<Reply> {
    s.command(cmd(line))
        .into_iter()
        .map(|a| match a {
            Action::Reply { reply, .. } => reply,
            other => panic!("{line}: expected replies only, got {other:?}"),
        })
        .collect()
}

/// The one reply of one command.
fn one(s: &mut Session, line: &str) -> Reply {
    let mut r = replies(s, line);
    assert_eq!(r.len(), 1, "{line}: {r:?}");
    r.remove(0)
}

fn err(text: &str) -> Reply {
    Reply::error(text)
}

fn simple(text: &str) -> Reply {
    Reply::Simple(text.to_owned())
}

#[test]
fn every_command_gets_the_next_seq() {
    let mut s = session();
    let seqs: Vec<Seq> = ["PING", "GET k", "nope", "GET", "MULTI", "GET k", "EXEC"]
        .iter()
        .flat_map(|l| s.command(cmd(l)))
        .filter_map(|a| match a {
            Action::Reply { seq, .. } | Action::Execute { seq, .. } | Action::Exec { seq, .. } => {
                Some(seq)
            }
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (0..7).map(Seq).collect::<Vec<_>>());
}

#[test]
fn ping_and_echo() {
    let mut s = session();
    assert_eq!(one(&mut s, "PING"), simple("PONG"));
    assert_eq!(one(&mut s, "ping hi"), Reply::bulk("hi"));
    assert_eq!(one(&mut s, "ECHO x"), Reply::bulk("x"));
    assert_eq!(one(&mut s, "PING a b"), err("ERR wrong number of arguments for 'ping' command"));
}

#[test]
fn data_commands_become_execute_actions_and_their_errors_replies() {
    let mut s = session();
    assert_eq!(
        s.command(cmd("INCRBY k 5")),
        vec![Action::Execute { seq: Seq(0), op: Op::IncrBy { key: b"k".to_vec(), by: 5 } }]
    );
    assert_eq!(one(&mut s, "INCRBY k x"), err("ERR value is not an integer or out of range"));
    assert_eq!(one(&mut s, "SET k v NX XX"), err("ERR syntax error"));
    assert_eq!(one(&mut s, "GET"), err("ERR wrong number of arguments for 'get' command"));
    assert_eq!(
        one(&mut s, "HSET k f v"),
        err("ERR unknown command 'HSET', with args beginning with: 'k' 'f' 'v' ")
    );
}

#[test]
fn select_only_zero() {
    let mut s = session();
    assert_eq!(one(&mut s, "SELECT 0"), Reply::ok());
    assert_eq!(one(&mut s, "SELECT 1"), err("ERR DB index is out of range"));
    assert_eq!(one(&mut s, "SELECT x"), err("ERR value is not an integer or out of range"));
}

#[test]
fn without_a_password_auth_says_so_and_default_user_passes() {
    let mut s = session();
    assert!(s.authenticated());
    assert_eq!(
        one(&mut s, "AUTH x"),
        err("ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?")
    );
    assert_eq!(one(&mut s, "AUTH default anything"), Reply::ok());
    assert_eq!(
        one(&mut s, "AUTH bob x"),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
}

#[test]
fn with_a_password_only_no_auth_commands_run_until_auth() {
    let mut s = with_password();
    assert!(!s.authenticated());
    let noauth = err("NOAUTH Authentication required.");
    for line in ["PING", "GET k", "MULTI", "CLIENT ID", "SUBSCRIBE c", "SELECT 0"] {
        assert_eq!(one(&mut s, line), noauth, "{line}");
    }
    // Lookup and arity come before authentication, as in Redis.
    assert_eq!(
        one(&mut s, "FOO x"),
        err("ERR unknown command 'FOO', with args beginning with: 'x' ")
    );
    assert_eq!(one(&mut s, "GET"), err("ERR wrong number of arguments for 'get' command"));
    assert_eq!(
        one(&mut s, "EXEC"),
        err("EXECABORT Transaction discarded because of: NOAUTH Authentication required.")
    );
    let wrongpass = err("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(one(&mut s, "AUTH wrong"), wrongpass);
    assert_eq!(one(&mut s, "AUTH bob sekret"), wrongpass);
    assert!(!s.authenticated());
    assert_eq!(one(&mut s, "AUTH sekret"), Reply::ok());
    assert!(s.authenticated());
    assert_eq!(one(&mut s, "PING"), simple("PONG"));
    // A later wrong password does not undo the authentication.
    assert_eq!(one(&mut s, "AUTH default wrong"), wrongpass);
    assert!(s.authenticated());
}

#[test]
fn receive_sets_the_decoders_unauthenticated_bounds_from_the_session() {
    let eleven = |name: &str| {
        let mut out = b"*11\r\n".to_vec();
        for _ in 0..11 {
            out.extend_from_slice(format!("${}\r\n{name}\r\n", name.len()).as_bytes());
        }
        out
    };
    // Before AUTH: refused and closed.
    let mut s = with_password();
    let mut d = RequestDecoder::new(Limits::default());
    let mut out = Vec::new();
    let input = eleven("x");
    assert_eq!(s.receive(&mut d, &input, &mut out), input.len());
    assert_eq!(
        out,
        vec![
            Action::Reply {
                seq: Seq(0),
                reply: err("ERR Protocol error: unauthenticated multibulk length")
            },
            Action::Close
        ]
    );
    assert!(s.is_closed());
    // After AUTH in the same read: the bound is lifted before the next request is decoded.
    let mut s = with_password();
    let mut d = RequestDecoder::new(Limits::default());
    let mut out = Vec::new();
    let mut input = b"*2\r\n$4\r\nAUTH\r\n$6\r\nsekret\r\n".to_vec();
    input.extend_from_slice(&eleven("EXISTS"));
    input.extend_from_slice(b"*1\r\n$4\r\nPI");
    let used = s.receive(&mut d, &input, &mut out);
    // The decoder keeps the incomplete PING's count; its argument waits for more bytes.
    assert_eq!(used, input.len() - b"$4\r\nPI".len());
    assert_eq!(out[0], Action::Reply { seq: Seq(0), reply: Reply::ok() });
    assert!(
        matches!(&out[1], Action::Execute { op: Op::Exists { keys }, .. } if keys.len() == 10),
        "the 11-argument EXISTS is decoded and run: {:?}",
        out[1]
    );
    // RESET drops the authentication, and the bound comes back.
    let mut out = Vec::new();
    s.command_into(cmd("RESET"), &mut out);
    assert!(!s.authenticated());
    let input = eleven("x");
    s.receive(&mut d, &input, &mut out);
    assert_eq!(out.last(), Some(&Action::Close));
}

#[test]
fn hello_switches_protocol_and_describes_the_server() {
    let mut s = session();
    let actions = s.command(cmd("HELLO 3"));
    assert_eq!(actions[0], Action::Protocol(Protocol::Resp3), "before HELLO's own reply");
    let Action::Reply { reply: Reply::Map(fields), .. } = &actions[1] else {
        panic!("{actions:?}")
    };
    let keys: Vec<&Reply> = fields.iter().map(|(k, _)| k).collect();
    let want = ["server", "version", "proto", "id", "mode", "role", "modules"].map(Reply::bulk);
    assert_eq!(keys, want.iter().collect::<Vec<_>>());
    assert_eq!(fields[2].1, Reply::Integer(3));
    assert_eq!(fields[3].1, Reply::Integer(42));
    assert_eq!(s.protocol(), Protocol::Resp3);
    // No version: no switch, the current one reported.
    let actions = s.command(cmd("HELLO"));
    assert_eq!(actions.len(), 1);
    // Errors leave the protocol alone.
    assert_eq!(one(&mut s, "HELLO 4"), err("NOPROTO unsupported protocol version"));
    assert_eq!(
        one(&mut s, "HELLO x"),
        err("ERR Protocol version is not an integer or out of range")
    );
    assert_eq!(one(&mut s, "HELLO 2 FOO"), err("ERR Syntax error in HELLO option 'FOO'"));
    assert_eq!(s.protocol(), Protocol::Resp3);
    let actions = s.command(cmd("HELLO 2 SETNAME conn"));
    assert_eq!(actions[0], Action::Protocol(Protocol::Resp2));
    assert_eq!(s.name(), Some(&b"conn"[..]));
}

#[test]
fn hello_authenticates_or_refuses_the_unauthenticated() {
    let mut s = with_password();
    assert_eq!(
        one(&mut s, "HELLO 3"),
        err("NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO AUTH <user> <pass> option can be used to authenticate the client and select \
             the RESP protocol version at the same time")
    );
    assert_eq!(
        one(&mut s, "HELLO 3 AUTH default wrong SETNAME n"),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!((s.protocol(), s.name()), (Protocol::Resp2, None), "nothing applied");
    let actions = s.command(cmd("HELLO 3 AUTH default sekret SETNAME n"));
    assert!(matches!(actions[..], [Action::Protocol(Protocol::Resp3), Action::Reply { .. }]));
    assert!(s.authenticated());
    assert_eq!(s.name(), Some(&b"n"[..]));
}

#[test]
fn client_name_and_id() {
    let mut s = session();
    assert_eq!(one(&mut s, "CLIENT GETNAME"), Reply::Null);
    assert_eq!(one(&mut s, "CLIENT SETNAME web-1"), Reply::ok());
    assert_eq!(one(&mut s, "client getname"), Reply::bulk("web-1"));
    assert_eq!(
        one(&mut s, "CLIENT SETNAME a\u{7f}"),
        err("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(one(&mut s, "CLIENT GETNAME"), Reply::bulk("web-1"));
    assert_eq!(one(&mut s, "CLIENT SETNAME "), Reply::ok());
    assert_eq!(one(&mut s, "CLIENT GETNAME"), Reply::Null);
    assert_eq!(one(&mut s, "CLIENT ID"), Reply::Integer(42));
    assert_eq!(
        one(&mut s, "CLIENT KILL x"),
        err("ERR unknown subcommand 'KILL'. Try CLIENT HELP.")
    );
    assert!(matches!(one(&mut s, "CLIENT HELP"), Reply::Array(lines) if lines.len() == 9));
}

#[test]
fn command_introspection() {
    let mut s = session();
    assert_eq!(one(&mut s, "COMMAND COUNT"), Reply::Integer(45));
    assert!(matches!(one(&mut s, "COMMAND"), Reply::Array(all) if all.len() == 45));
    assert!(matches!(one(&mut s, "COMMAND INFO"), Reply::Array(all) if all.len() == 45));
    assert!(matches!(one(&mut s, "COMMAND INFO get nope"),
        Reply::Array(e) if e.len() == 2 && e[1] == Reply::Null));
    assert!(matches!(one(&mut s, "COMMAND DOCS get nope"), Reply::Map(e) if e.len() == 1));
}

#[test]
fn quit_answers_ok_then_closes_and_nothing_follows() {
    let mut s = session();
    assert_eq!(
        s.command(cmd("QUIT")),
        vec![Action::Reply { seq: Seq(0), reply: Reply::ok() }, Action::Close]
    );
    assert!(s.is_closed());
    assert_eq!(s.command(cmd("PING")), vec![]);
    // QUIT runs at once inside MULTI and without authentication.
    let mut s = with_password();
    assert_eq!(s.command(cmd("QUIT x")).last(), Some(&Action::Close));
}

#[test]
fn multi_queues_and_exec_hands_the_transaction_over() {
    let mut s = session();
    assert_eq!(one(&mut s, "WATCH w"), Reply::ok());
    assert_eq!(one(&mut s, "MULTI"), Reply::ok());
    assert!(s.in_transaction());
    for line in ["SET a 1", "PING", "INCRBY a x", "GET a", "UNWATCH"] {
        assert_eq!(one(&mut s, line), simple("QUEUED"), "{line}");
    }
    assert_eq!(s.queued(), 5);
    let actions = s.command(cmd("EXEC"));
    let [Action::Exec { seq: Seq(7), transaction, plan }] = &actions[..] else {
        panic!("{actions:?}")
    };
    let set = Op::Set {
        key: b"a".to_vec(),
        value: b"1".to_vec(),
        condition: crate::command::SetCondition::Always,
        get_old: false,
    };
    assert_eq!(
        *transaction,
        Transaction {
            watched: vec![b"w".to_vec()],
            ops: vec![set, Op::Get { key: b"a".to_vec() }]
        }
    );
    assert_eq!(plan.backend_replies(), 2);
    let done =
        plan.reply(crate::session::ExecOutcome::Committed(vec![Reply::ok(), Reply::bulk("1")]));
    assert_eq!(
        done,
        Ok(Reply::Array(vec![
            Reply::ok(),
            simple("PONG"),
            err("ERR value is not an integer or out of range"),
            Reply::bulk("1"),
            Reply::ok(),
        ]))
    );
    assert!(!s.in_transaction());
    assert_eq!(s.watched().count(), 0, "EXEC clears the watch");
}

#[test]
fn exec_of_nothing_to_do_is_answered_at_once_but_watched_keys_go_to_the_backend() {
    let mut s = session();
    one(&mut s, "MULTI");
    one(&mut s, "ECHO e");
    assert_eq!(one(&mut s, "EXEC"), Reply::Array(vec![Reply::bulk("e")]));
    one(&mut s, "WATCH k");
    one(&mut s, "MULTI");
    let actions = s.command(cmd("EXEC"));
    assert!(matches!(&actions[..], [Action::Exec { transaction, .. }]
        if transaction.ops.is_empty() && transaction.watched == vec![b"k".to_vec()]));
}

#[test]
fn transaction_errors() {
    let mut s = session();
    assert_eq!(one(&mut s, "EXEC"), err("ERR EXEC without MULTI"));
    assert_eq!(one(&mut s, "DISCARD"), err("ERR DISCARD without MULTI"));
    one(&mut s, "MULTI");
    assert_eq!(one(&mut s, "MULTI"), err("ERR MULTI calls can not be nested"));
    assert_eq!(one(&mut s, "WATCH k"), err("ERR WATCH inside MULTI is not allowed"));
    // Neither of those dooms the transaction.
    assert_eq!(one(&mut s, "EXEC"), Reply::Array(vec![]));
    // A rejected command does.
    for bad in ["GET", "NOPE", "HELLO 3", "SUBSCRIBE c", "CLIENT SETNAME x", "AUTH p", "DISCARD x"]
    {
        let mut s = session();
        one(&mut s, "MULTI");
        assert!(matches!(one(&mut s, bad), Reply::Error(_)), "{bad}");
        assert_eq!(one(&mut s, "PING"), simple("QUEUED"));
        assert_eq!(
            one(&mut s, "EXEC"),
            err("EXECABORT Transaction discarded because of previous errors."),
            "{bad}"
        );
        assert!(!s.in_transaction());
    }
    let mut s = session();
    one(&mut s, "MULTI");
    assert_eq!(one(&mut s, "HELLO 3"), err("ERR Command not allowed inside a transaction"));
}

#[test]
fn a_rejected_exec_ends_the_transaction_and_the_watch() {
    let mut s = session();
    one(&mut s, "WATCH k");
    one(&mut s, "MULTI");
    assert_eq!(
        one(&mut s, "EXEC x"),
        err("EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' \
             command")
    );
    assert!(!s.in_transaction());
    assert_eq!(s.watched().count(), 0);
    assert_eq!(one(&mut s, "EXEC"), err("ERR EXEC without MULTI"));
}

#[test]
fn discard_and_unwatch_clear_the_watch() {
    let mut s = session();
    one(&mut s, "WATCH a b a");
    assert_eq!(s.watched().collect::<Vec<_>>(), vec![&b"a"[..], b"b"]);
    one(&mut s, "MULTI");
    assert_eq!(one(&mut s, "DISCARD"), Reply::ok());
    assert_eq!(s.watched().count(), 0);
    one(&mut s, "WATCH a");
    assert_eq!(one(&mut s, "UNWATCH"), Reply::ok());
    assert_eq!(s.watched().count(), 0);
}

#[test]
fn resp2_pubsub_mode_allows_only_subscription_commands() {
    let mut s = session();
    let actions = s.command(cmd("SUBSCRIBE a b"));
    assert_eq!(
        actions[0],
        Action::Subscribe(vec![Topic::Channel(b"a".to_vec()), Topic::Channel(b"b".to_vec())])
    );
    assert_eq!(actions.len(), 3, "one confirmation per channel");
    assert_eq!(
        one(&mut s, "GET k"),
        err("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
             RESET are allowed in this context")
    );
    assert_eq!(
        one(&mut s, "EXEC"),
        err("EXECABORT Transaction discarded because of: Can't execute 'exec': only \
             (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    );
    assert_eq!(one(&mut s, "PING"), Reply::Array(vec![Reply::bulk("pong"), Reply::bulk("")]));
    assert_eq!(one(&mut s, "PING m"), Reply::Array(vec![Reply::bulk("pong"), Reply::bulk("m")]));
    // Unknown and wrong-arity commands are found out first.
    assert_eq!(one(&mut s, "GET"), err("ERR wrong number of arguments for 'get' command"));
    let actions = s.command(cmd("UNSUBSCRIBE"));
    assert!(matches!(&actions[0], Action::Unsubscribe(t) if t.len() == 2));
    assert_eq!(s.subscriptions(), 0);
    assert_eq!(one(&mut s, "PING"), simple("PONG"));
    assert!(matches!(s.command(cmd("GET k"))[..], [Action::Execute { .. }]));
}

#[test]
fn resp3_pubsub_mode_allows_everything() {
    let mut s = session();
    s.command(cmd("HELLO 3"));
    s.command(cmd("PSUBSCRIBE p*"));
    assert_eq!(s.subscriptions(), 1);
    assert!(matches!(s.command(cmd("GET k"))[..], [Action::Execute { .. }]));
    assert_eq!(one(&mut s, "PING"), simple("PONG"));
}

#[test]
fn reset_returns_the_connection_to_its_start() {
    let mut s = with_password();
    one(&mut s, "AUTH sekret");
    s.command(cmd("HELLO 3 SETNAME n"));
    one(&mut s, "WATCH k");
    s.command(cmd("SUBSCRIBE c"));
    one(&mut s, "MULTI");
    let actions = s.command(cmd("RESET"));
    assert_eq!(
        actions,
        vec![
            Action::Unsubscribe(vec![Topic::Channel(b"c".to_vec())]),
            Action::Protocol(Protocol::Resp2),
            Action::Reply { seq: Seq(5), reply: simple("RESET") },
        ]
    );
    assert!(!s.in_transaction() && !s.authenticated());
    assert_eq!((s.name(), s.subscriptions(), s.watched().count()), (None, 0, 0));
}

#[test]
fn bounds_on_queue_watch_and_subscriptions() {
    let limits = SessionLimits { max_queued: 2, max_watched: 2, max_subscriptions: 2 };
    let mut s = Session::new(SessionConfig { limits, ..SessionConfig::new(1) });
    assert_eq!(one(&mut s, "WATCH a b a"), Reply::ok());
    assert_eq!(one(&mut s, "WATCH c"), err("ERR too many watched keys (at most 2)"));
    assert_eq!(one(&mut s, "SUBSCRIBE x y z"), err("ERR too many subscriptions (at most 2)"));
    assert_eq!(s.subscriptions(), 0, "all or nothing");
    assert_eq!(s.command(cmd("SUBSCRIBE x y x")).len(), 4);
    assert_eq!(s.command(cmd("UNSUBSCRIBE x y")).len(), 3);
    one(&mut s, "MULTI");
    one(&mut s, "PING");
    one(&mut s, "PING");
    assert_eq!(one(&mut s, "PING"), err("ERR too many commands in this transaction (at most 2)"));
    assert_eq!(
        one(&mut s, "EXEC"),
        err("EXECABORT Transaction discarded because of previous errors.")
    );
}

#[test]
fn a_protocol_error_is_answered_then_closes() {
    let mut s = session();
    let mut d = RequestDecoder::new(Limits::default());
    let mut out = Vec::new();
    s.receive(&mut d, b"PING\r\n*1\r\n+x\r\nPING\r\n", &mut out);
    assert_eq!(
        out,
        vec![
            Action::Reply { seq: Seq(0), reply: simple("PONG") },
            Action::Reply { seq: Seq(1), reply: err("ERR Protocol error: expected '$', got '+'") },
            Action::Close,
        ]
    );
}
