//! Property tests of the session and the reply queue: arbitrary command sequences never panic
//! the session, the MULTI/EXEC bookkeeping follows a small model of Redis' rules, and replies
//! come out in command order however the backend's answers are ordered.

use proptest::collection::vec;
use proptest::prelude::*;
use selfman_store::resp::{Protocol, Reply};
use selfman_store::session::{
    Action, Completion, ExecOutcome, ReplyQueue, Request, Seq, Session, SessionConfig, Topic,
};

/// Command names the generator draws from: every command kind, some in odd case, some unknown.
const NAMES: &[&str] = &[
    "GET",
    "set",
    "SET",
    "SETNX",
    "GETSET",
    "MGET",
    "MSET",
    "DEL",
    "EXISTS",
    "INCR",
    "incrby",
    "DECR",
    "DECRBY",
    "APPEND",
    "STRLEN",
    "SADD",
    "SREM",
    "SMEMBERS",
    "SISMEMBER",
    "SCARD",
    "TYPE",
    "DBSIZE",
    "SCAN",
    "KEYS",
    "FLUSHALL",
    "INFO",
    "CONFIG",
    "PING",
    "ECHO",
    "HELLO",
    "AUTH",
    "SELECT",
    "CLIENT",
    "COMMAND",
    "MULTI",
    "multi",
    "EXEC",
    "exec",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "RESET",
    "QUIT",
    "NOPE",
    "",
];

/// Arguments: small words that are also options, numbers and subcommands, so that valid and
/// invalid forms both come up.
const WORDS: &[&str] = &[
    "k",
    "v",
    "0",
    "1",
    "3",
    "2",
    "-1",
    "x",
    "NX",
    "XX",
    "GET",
    "EX",
    "COUNT",
    "MATCH",
    "AUTH",
    "default",
    "sekret",
    "SETNAME",
    "ID",
    "GETNAME",
    "INFO",
    "DOCS",
    "9223372036854775808",
    "",
    "a b",
];

fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (0..NAMES.len(), vec(0..WORDS.len(), 0..5)).prop_map(|(n, args)| {
        std::iter::once(NAMES[n])
            .chain(args.into_iter().map(|a| WORDS[a]))
            .map(|s| s.as_bytes().to_vec())
            .collect()
    })
}

fn is(args: &[Vec<u8>], name: &str) -> bool {
    args.first().is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The model: outside MULTI nothing is queued; inside, every command but EXEC, DISCARD,
    /// MULTI, WATCH, QUIT and RESET answers +QUEUED or an error (which makes the transaction
    /// dirty); EXEC of a dirty transaction aborts; EXEC's array has one entry per +QUEUED.
    #[test]
    fn multi_exec_bookkeeping_follows_the_model(
        cmds in vec(command(), 1..40),
        password in any::<bool>(),
    ) {
        let mut config = SessionConfig::new(9);
        if password {
            config.password = Some(b"sekret".to_vec());
        }
        let mut s = Session::new(config);
        let mut next_seq = 0u64;
        let (mut in_multi, mut queued, mut dirty) = (false, 0usize, false);
        for args in cmds {
            if s.is_closed() {
                prop_assert!(s.command(args).is_empty(), "a closed session takes nothing");
                continue;
            }
            let was_in_multi = s.in_transaction();
            prop_assert_eq!(was_in_multi, in_multi);
            prop_assert_eq!(s.queued(), queued);
            let actions = s.command(args.clone());
            // Exactly one kind of answer, all with this command's number.
            let mut replies = Vec::new();
            let mut executes = 0;
            let mut exec = None;
            for a in &actions {
                match a {
                    Action::Reply { seq, reply } => {
                        prop_assert_eq!(*seq, Seq(next_seq));
                        replies.push(reply.clone());
                    }
                    Action::Execute { seq, .. } => {
                        prop_assert_eq!(*seq, Seq(next_seq));
                        executes += 1;
                    }
                    Action::Exec { seq, transaction, plan } => {
                        prop_assert_eq!(*seq, Seq(next_seq));
                        prop_assert_eq!(plan.backend_replies(), transaction.ops.len());
                        exec = Some(plan.clone());
                    }
                    _ => {}
                }
            }
            let kinds = usize::from(!replies.is_empty()) + executes + usize::from(exec.is_some());
            prop_assert_eq!(kinds, 1, "{:?} gave {:?}", args, actions);
            next_seq += 1;

            let not_queued = ["exec", "discard", "multi", "watch", "quit", "reset"]
                .iter()
                .any(|n| is(&args, n));
            if was_in_multi && !not_queued {
                prop_assert_eq!(executes, 0, "nothing runs inside MULTI");
                match &replies[..] {
                    [Reply::Simple(q)] if q == "QUEUED" => queued += 1,
                    [Reply::Error(_)] => dirty = true,
                    other => prop_assert!(false, "{:?} inside MULTI answered {:?}", args, other),
                }
            } else if was_in_multi && is(&args, "exec") {
                in_multi = false;
                let expected_len = queued;
                queued = 0;
                let was_dirty = std::mem::take(&mut dirty);
                prop_assert_eq!(s.watched().count(), 0, "EXEC clears the watch");
                match (&replies[..], exec) {
                    ([Reply::Error(e)], None) => {
                        let text = String::from_utf8_lossy(e);
                        prop_assert!(text.starts_with("EXECABORT"), "{}", text);
                        if text == "EXECABORT Transaction discarded because of previous errors." {
                            prop_assert!(was_dirty);
                        }
                    }
                    ([Reply::Array(items)], None) => {
                        prop_assert!(!was_dirty);
                        prop_assert_eq!(items.len(), expected_len);
                    }
                    ([], Some(plan)) => {
                        prop_assert!(!was_dirty);
                        let n = plan.backend_replies();
                        let reply = plan.reply(ExecOutcome::Committed(vec![Reply::Integer(0); n]));
                        let len = match reply {
                            Ok(Reply::Array(a)) => a.len(),
                            other => return Err(TestCaseError::fail(format!("{other:?}"))),
                        };
                        prop_assert_eq!(len, expected_len);
                    }
                    other => prop_assert!(false, "EXEC answered {:?}", other),
                }
            } else if was_in_multi && (is(&args, "discard") || is(&args, "reset")) {
                if replies.len() == 1 && !matches!(replies[0], Reply::Error(_)) {
                    in_multi = false;
                    queued = 0;
                    dirty = false;
                    prop_assert_eq!(s.watched().count(), 0);
                } else {
                    dirty = true; // DISCARD x: a rejection
                }
            } else if was_in_multi && (is(&args, "multi") || is(&args, "watch")) {
                // Nested MULTI and WATCH inside MULTI are errors that do not doom the
                // transaction; a wrong arity does.
                prop_assert!(matches!(replies[..], [Reply::Error(_)]));
                if let Reply::Error(e) = &replies[0] {
                    if e.starts_with(b"ERR wrong number") {
                        dirty = true;
                    }
                }
            } else if !was_in_multi && is(&args, "multi") && replies == [Reply::ok()] {
                in_multi = true;
            }
            prop_assert_eq!(s.in_transaction(), in_multi, "after {:?}", args);
        }
    }

    /// Feed every action to a queue, answer the backend's requests in an arbitrary order, and
    /// the output holds every command's reply in command order.
    #[test]
    fn replies_come_out_in_command_order(
        cmds in vec(command(), 1..40),
        order in vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let mut s = Session::new(SessionConfig::new(9));
        let mut q = ReplyQueue::new();
        let mut waiting: Vec<(Seq, bool)> = Vec::new();
        let mut subscribed: Vec<Topic> = Vec::new();
        for args in cmds {
            for action in s.command(args) {
                match q.issue(action) {
                    Some(Request::Execute { seq, .. }) => waiting.push((seq, false)),
                    Some(Request::Exec { seq, .. }) => waiting.push((seq, true)),
                    Some(Request::Subscribe(t)) => subscribed.extend(t),
                    Some(Request::Unsubscribe(t)) => subscribed.retain(|x| !t.contains(x)),
                    None => {}
                }
            }
        }
        prop_assert_eq!(subscribed.len(), s.subscriptions(), "the notification layer's view");
        let expected: Vec<Seq> = waiting.iter().map(|w| w.0).collect();
        // Answer in a shuffled order; each answer names its command.
        let mut pending = waiting;
        for i in order {
            if pending.is_empty() {
                break;
            }
            let (seq, exec) = pending.remove(i.index(pending.len()));
            answer(&mut q, seq, exec)?;
        }
        for (seq, exec) in pending {
            answer(&mut q, seq, exec)?;
        }
        prop_assert_eq!(q.pending(), 0);
        let out = q.take_output();
        let text = String::from_utf8_lossy(&out);
        let mut at = 0;
        for seq in expected {
            let marker = format!("answer-{}-end", seq.0);
            match text[at..].find(&marker) {
                Some(i) => at += i + marker.len(),
                None => prop_assert!(false, "{} missing or out of order in {:?}", marker, text),
            }
        }
    }
}

fn answer(q: &mut ReplyQueue, seq: Seq, exec: bool) -> Result<(), TestCaseError> {
    let marker = Reply::bulk(format!("answer-{}-end", seq.0));
    let completion = if exec {
        // An EXEC whose operations all failed the watch, or one that committed: either way
        // the reply must carry the marker, so use Failed with the marker as the error text.
        Completion::Exec(ExecOutcome::Failed(Reply::error(format!("ERR answer-{}-end", seq.0))))
    } else {
        Completion::Reply(marker)
    };
    q.complete(seq, completion).map_err(|e| TestCaseError::fail(e.to_string()))
}

#[test]
fn a_pipelined_hello_changes_only_later_replies() {
    let mut s = Session::new(SessionConfig::new(1));
    let mut q = ReplyQueue::new();
    let mut requests = Vec::new();
    for line in ["GET a", "HELLO 3", "GET b"] {
        let args = line.split(' ').map(|a| a.as_bytes().to_vec()).collect();
        for action in s.command(args) {
            requests.extend(q.issue(action));
        }
    }
    assert_eq!(s.protocol(), Protocol::Resp3);
    q.complete(Seq(2), Completion::Reply(Reply::Null)).unwrap();
    q.complete(Seq(0), Completion::Reply(Reply::Null)).unwrap();
    let out = q.take_output();
    assert!(out.starts_with(b"$-1\r\n%7\r\n"), "GET a in RESP2, then HELLO's map in RESP3");
    assert!(out.ends_with(b"_\r\n"), "GET b in RESP3");
    assert_eq!(requests.len(), 2);
}
