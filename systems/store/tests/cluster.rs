//! The store as processes: `selfman node` processes on 127.0.0.1 joined into one ring, driven
//! over the Redis protocol. Every process is stopped and reaped by PID (support module).
//!
//! * commands answered alike by every node, whichever node holds the key;
//! * `MULTI`/`EXEC` all or nothing, `WATCH` answering a null `EXEC` after another client's
//!   change and running the block when nothing changed;
//! * concurrent `INCR`s from clients of every node lose no update; concurrent bank transfers
//!   with `WATCH`/`MULTI`/`EXEC`, retried on a null `EXEC`, keep the total;
//! * a node stopped with SIGTERM leaves gracefully (exit status 0) and the others still
//!   serve every key written before;
//! * `DBSIZE`, `KEYS`, `SCAN` and `FLUSHDB` walk the ring and agree with what was written;
//! * a read right after an acknowledged write sees it (the fast read's lock rule), and the
//!   flawed rule that ignores locks and differing versions is caught reading stale values.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{StoreCluster, V};

#[test]
fn every_node_serves_every_key_with_redis_replies() {
    let c = StoreCluster::start(3, 3);
    for i in 0..3 {
        assert_eq!(c.client(i).cmd(&format!("SET key{i} value{i}")), V::ok());
    }
    for i in 0..3 {
        let mut cl = c.client(i);
        let got = cl.cmd("MGET key0 key1 key2 nokey");
        let want: Vec<V> =
            vec![V::bulk("value0"), V::bulk("value1"), V::bulk("value2"), V::Bulk(None)];
        assert_eq!(got, V::Array(Some(want)), "node {i}");
    }
    let mut a = c.client(0);
    let mut b = c.client(1);
    assert_eq!(a.cmd("INCRBY n 10"), V::Int(10));
    assert_eq!(b.cmd("DECR n"), V::Int(9));
    assert_eq!(b.cmd("INCR key0"), V::Err("ERR value is not an integer or out of range".into()));
    assert_eq!(a.cmd("SET big 9223372036854775807"), V::ok());
    assert_eq!(b.cmd("INCR big"), V::Err("ERR increment or decrement would overflow".into()));
    assert_eq!(a.cmd("APPEND key0 !"), V::Int(7));
    assert_eq!(b.cmd("GET key0"), V::bulk("value0!"));
    assert_eq!(b.cmd("STRLEN key0"), V::Int(7));
    assert_eq!(a.cmd("SETNX key0 x"), V::Int(0));
    assert_eq!(a.cmd("SET key0 y NX"), V::Bulk(None));
    assert_eq!(a.cmd("SET key0 y XX GET"), V::bulk("value0!"));
    assert_eq!(b.cmd("GETSET key0 z"), V::bulk("y"));
    assert_eq!(a.cmd("SADD s b a c a"), V::Int(3));
    assert_eq!(b.cmd("SREM s c zz"), V::Int(1));
    assert_eq!(b.cmd("SMEMBERS s"), V::Array(Some(vec![V::bulk("a"), V::bulk("b")])));
    assert_eq!(a.cmd("SISMEMBER s a"), V::Int(1));
    assert_eq!(a.cmd("SCARD s"), V::Int(2));
    assert_eq!(a.cmd("TYPE s"), V::Simple("set".into()));
    assert_eq!(a.cmd("TYPE key0"), V::Simple("string".into()));
    let wrong = V::Err("WRONGTYPE Operation against a key holding the wrong kind of value".into());
    assert_eq!(b.cmd("GET s"), wrong);
    assert_eq!(b.cmd("SADD key0 m"), wrong);
    assert_eq!(a.cmd("EXISTS s key0 key0 nokey"), V::Int(3));
    assert_eq!(b.cmd("DEL s key0 nokey s"), V::Int(2));
    assert_eq!(a.cmd("EXISTS s key0"), V::Int(0));
    assert_eq!(a.cmd("MSET m1 1 m2 2 m1 3"), V::ok());
    assert_eq!(b.cmd("MGET m1 m2"), V::Array(Some(vec![V::bulk("3"), V::bulk("2")])));
    // key1 key2 n big m1 m2 are left (key0 and s were deleted).
    assert_eq!(a.cmd("DBSIZE"), V::Int(6));
}

fn bulks(v: V) -> std::collections::BTreeSet<String> {
    match v {
        V::Array(Some(items)) => items
            .into_iter()
            .map(|i| match i {
                V::Bulk(Some(b)) => String::from_utf8(b).expect("utf-8 key"),
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// A whole `SCAN` walk from `cursor 0` back to 0 with these options; every cursor between
/// is a number, and the walk ends within a bound.
fn scan_all(c: &mut support::Client, options: &str) -> std::collections::BTreeSet<String> {
    let mut cursor = "0".to_owned();
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..1_000 {
        let V::Array(Some(mut parts)) = c.cmd(&format!("SCAN {cursor} {options}")) else {
            panic!("SCAN answers an array")
        };
        assert_eq!(parts.len(), 2);
        keys.extend(bulks(parts.pop().expect("keys")));
        let V::Bulk(Some(next)) = parts.pop().expect("cursor") else { panic!("a bulk cursor") };
        cursor = String::from_utf8(next).expect("utf-8");
        assert!(cursor.parse::<u64>().is_ok(), "cursor {cursor}");
        if cursor == "0" {
            return keys;
        }
    }
    panic!("SCAN did not come back to cursor 0 within 1,000 steps")
}

#[test]
fn dbsize_keys_scan_and_flushdb_walk_the_ring() {
    let c = StoreCluster::start(3, 3);
    let mut a = c.client(0);
    let mut b = c.client(2);
    assert_eq!(a.cmd("DBSIZE"), V::Int(0));
    assert_eq!(a.cmd("SCAN 0"), V::Array(Some(vec![V::bulk("0"), V::Array(Some(vec![]))])));
    for i in 0..60 {
        assert_eq!(a.cmd(&format!("SET k:{i} v{i}")), V::ok());
    }
    assert_eq!(b.cmd("SADD s:1 x y"), V::Int(2));
    assert_eq!(b.cmd("DEL k:0"), V::Int(1));
    let mut all: std::collections::BTreeSet<String> = (1..60).map(|i| format!("k:{i}")).collect();
    all.insert("s:1".into());
    for cl in [&mut a, &mut b] {
        assert_eq!(cl.cmd("DBSIZE"), V::Int(60));
        assert_eq!(bulks(cl.cmd("KEYS *")), all);
        let ones: std::collections::BTreeSet<String> =
            std::iter::once(1).chain(10..20).map(|i| format!("k:{i}")).collect();
        assert_eq!(bulks(cl.cmd("KEYS k:1*")), ones);
        assert_eq!(bulks(cl.cmd("KEYS k:[2-3]")), ["k:2", "k:3"].map(String::from).into());
        assert_eq!(scan_all(cl, "COUNT 7"), all);
        assert_eq!(scan_all(cl, ""), all);
        assert_eq!(scan_all(cl, "MATCH s:* COUNT 3"), ["s:1".to_owned()].into());
        assert_eq!(scan_all(cl, "TYPE set COUNT 100"), ["s:1".to_owned()].into());
        let strings: std::collections::BTreeSet<String> =
            all.iter().filter(|k| k.starts_with("k:")).cloned().collect();
        assert_eq!(scan_all(cl, "TYPE string"), strings);
    }
    assert_eq!(a.cmd("FLUSHDB"), V::ok());
    assert_eq!(b.cmd("DBSIZE"), V::Int(0));
    assert_eq!(b.cmd("GET k:5"), V::Bulk(None));
    assert_eq!(b.cmd("SET after flush"), V::ok());
    assert_eq!(a.cmd("FLUSHALL ASYNC"), V::ok());
    assert_eq!(a.cmd("KEYS *"), V::Array(Some(vec![])));
}

#[test]
fn multi_exec_is_one_transaction_and_watch_detects_changes() {
    let c = StoreCluster::start(3, 3);
    let mut a = c.client(0);
    let mut b = c.client(2);
    // All or nothing, with a per-command error inside, as Redis.
    assert_eq!(a.cmd("SET s x"), V::ok());
    assert_eq!(a.cmd("MULTI"), V::ok());
    assert_eq!(a.cmd("INCR x1"), V::Simple("QUEUED".into()));
    assert_eq!(a.cmd("SADD s m"), V::Simple("QUEUED".into()));
    assert_eq!(a.cmd("INCRBY x2 5"), V::Simple("QUEUED".into()));
    assert_eq!(a.cmd("GET x1"), V::Simple("QUEUED".into()));
    let wrong = V::Err("WRONGTYPE Operation against a key holding the wrong kind of value".into());
    assert_eq!(a.cmd("EXEC"), V::Array(Some(vec![V::Int(1), wrong, V::Int(5), V::bulk("1")])));
    assert_eq!(b.cmd("MGET x1 x2"), V::Array(Some(vec![V::bulk("1"), V::bulk("5")])));

    // WATCH, another client changes the key: EXEC answers null and does nothing.
    assert_eq!(a.cmd("WATCH x1"), V::ok());
    assert_eq!(a.cmd("GET x1"), V::bulk("1"));
    assert_eq!(b.cmd("SET x1 100"), V::ok());
    assert_eq!(a.cmd("MULTI"), V::ok());
    assert_eq!(a.cmd("SET x2 changed"), V::Simple("QUEUED".into()));
    assert_eq!(a.cmd("EXEC"), V::Array(None));
    assert_eq!(b.cmd("GET x2"), V::bulk("5"), "a failed EXEC changes nothing");

    // The change happens before the client's read: the read sees it, EXEC fails (as Redis).
    assert_eq!(a.cmd("WATCH x1"), V::ok());
    assert_eq!(b.cmd("SET x1 101"), V::ok());
    assert_eq!(a.cmd("GET x1"), V::bulk("101"));
    assert_eq!(a.cmd("MULTI"), V::ok());
    assert_eq!(a.cmd("SET x2 changed"), V::Simple("QUEUED".into()));
    assert_eq!(a.cmd("EXEC"), V::Array(None));

    // The client's own write of a watched key fails the EXEC too, as in Redis.
    assert_eq!(a.cmd("WATCH x1"), V::ok());
    assert_eq!(a.cmd("SET x1 7"), V::ok());
    assert_eq!(a.cmd("MULTI"), V::ok());
    assert_eq!(a.cmd("SET x2 changed"), V::Simple("QUEUED".into()));
    assert_eq!(a.cmd("EXEC"), V::Array(None));

    // Nothing changed: the block runs; a watch on an absent key too.
    assert_eq!(a.cmd("WATCH x1 absent"), V::ok());
    assert_eq!(a.cmd("GET x1"), V::bulk("7"));
    assert_eq!(a.cmd("MULTI"), V::ok());
    assert_eq!(a.cmd("SET x2 changed"), V::Simple("QUEUED".into()));
    assert_eq!(a.cmd("EXEC"), V::Array(Some(vec![V::ok()])));
    assert_eq!(b.cmd("GET x2"), V::bulk("changed"));

    // UNWATCH forgets; a watched key created by someone else fails the EXEC.
    assert_eq!(a.cmd("WATCH nothing"), V::ok());
    assert_eq!(b.cmd("SET nothing here"), V::ok());
    assert_eq!(a.cmd("MULTI"), V::ok());
    assert_eq!(a.cmd("EXEC"), V::Array(None));
    assert_eq!(a.cmd("WATCH nothing"), V::ok());
    assert_eq!(b.cmd("SET nothing again"), V::ok());
    assert_eq!(a.cmd("UNWATCH"), V::ok());
    assert_eq!(a.cmd("MULTI"), V::ok());
    assert_eq!(a.cmd("EXEC"), V::Array(Some(vec![])));
}

const THREADS: usize = 8;
const INCRS: i64 = 40;
const ACCOUNTS: usize = 4;
const TRANSFERS: usize = 15;

/// `THREADS` clients, spread over the nodes, each doing `INCRS` increments of one counter
/// (when `incr`) and `TRANSFERS` check-and-set transfers between random accounts (`WATCH`
/// both, read both, `MULTI`, write both, `EXEC`, again on a null reply). Returns the
/// retries, the counter and the bank total as each node reads them.
fn workload(c: &Arc<StoreCluster>, incr: bool) -> (i64, Vec<(i64, i64)>) {
    let mut setup = c.client(0);
    for a in 0..ACCOUNTS {
        assert_eq!(setup.cmd(&format!("SET acct{a} 100")), V::ok());
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = Arc::clone(c);
            std::thread::spawn(move || {
                let mut cl = c.client(t);
                for _ in 0..if incr { INCRS } else { 0 } {
                    let v = cl.cmd("INCR counter");
                    assert!(
                        matches!(v, V::Int(_)),
                        "INCR answers an integer, never a conflict: {v:?}"
                    );
                }
                let mut seed = t as u64 * 7919 + 1;
                let mut next = || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as usize
                };
                let mut retries = 0;
                for _ in 0..TRANSFERS {
                    let from = next() % ACCOUNTS;
                    let to = (from + 1 + next() % (ACCOUNTS - 1)) % ACCOUNTS;
                    loop {
                        assert_eq!(cl.cmd(&format!("WATCH acct{from} acct{to}")), V::ok());
                        let a = cl.cmd(&format!("GET acct{from}")).int();
                        let b = cl.cmd(&format!("GET acct{to}")).int();
                        let amount = (next() % 10) as i64 + 1;
                        assert_eq!(cl.cmd("MULTI"), V::ok());
                        cl.cmd(&format!("SET acct{from} {}", a - amount));
                        cl.cmd(&format!("SET acct{to} {}", b + amount));
                        match cl.cmd("EXEC") {
                            V::Array(Some(r)) => {
                                assert_eq!(r, vec![V::ok(), V::ok()]);
                                break;
                            }
                            V::Array(None) => retries += 1,
                            other => panic!("EXEC: {other:?}"),
                        }
                        assert!(retries < 500, "a transfer kept failing");
                    }
                }
                retries
            })
        })
        .collect();
    let retries: i64 = threads.into_iter().map(|t| t.join().expect("a client thread")).sum();
    let seen = (0..c.nodes.len())
        .map(|i| {
            let mut cl = c.client(i);
            let counter = match cl.cmd("GET counter") {
                V::Bulk(None) => 0,
                v => v.int(),
            };
            let total: i64 = (0..ACCOUNTS).map(|a| cl.cmd(&format!("GET acct{a}")).int()).sum();
            (counter, total)
        })
        .collect();
    (retries, seen)
}

#[test]
fn concurrent_increments_and_transfers_lose_nothing() {
    let c = Arc::new(StoreCluster::start(4, 4));
    let (retries, seen) = workload(&c, true);
    eprintln!(
        "transfers: {} committed, {retries} EXECs retried after a watched key changed",
        THREADS * TRANSFERS
    );
    for (i, (counter, total)) in seen.into_iter().enumerate() {
        assert_eq!(counter, THREADS as i64 * INCRS, "node {i}: no lost increment");
        assert_eq!(total, 100 * ACCOUNTS as i64, "node {i}: the bank total is kept");
    }
}

/// The bank check catches a backend whose `EXEC` ignores `WATCH` (lost updates).
#[test]
fn the_bank_check_catches_an_exec_that_ignores_watch() {
    let c = Arc::new(StoreCluster::start_with(4, 4, &["--flaw", "ignores-watch"]));
    for round in 0..3 {
        let (retries, seen) = workload(&c, false);
        assert_eq!(retries, 0, "a flawed EXEC never answers null");
        if seen.iter().any(|(_, total)| *total != 100 * ACCOUNTS as i64) {
            eprintln!("round {round}: the flawed backend lost updates, totals {seen:?}: caught");
            return;
        }
    }
    panic!("three rounds of concurrent transfers kept the total with a flawed EXEC: the check is blind");
}

#[test]
fn a_node_stopped_with_sigterm_leaves_and_the_data_stays() {
    let mut c = StoreCluster::start(4, 4);
    let mut cl = c.client(1);
    for k in 0..40 {
        assert_eq!(cl.cmd(&format!("SET k{k} v{k}")), V::ok());
    }
    let leaving = c.procs.iter_mut().nth(3).expect("node 3");
    let status = leaving.terminate(Duration::from_secs(20)).expect("node 3 stops");
    assert!(status.success(), "a node leaves gracefully on SIGTERM: {status:?}");
    for i in 0..3 {
        let mut cl = c.client(i);
        for k in 0..40 {
            assert_eq!(
                cl.cmd(&format!("GET k{k}")),
                V::bulk(&format!("v{k}")),
                "node {i}, key k{k}"
            );
        }
    }
    c.nodes.truncate(3);
}

/// Pipelined commands run concurrently where no order can be seen, and in order on each key.
#[test]
fn pipelined_commands_keep_their_order_on_each_key() {
    let c = StoreCluster::start(3, 3);
    let mut cl = c.client(1);
    let mut want = Vec::new();
    for i in 0..60 {
        let key = format!("p{}", i % 5);
        cl.send(&[b"SET", key.as_bytes(), i.to_string().as_bytes()]);
        cl.send(&[b"GET", key.as_bytes()]);
        cl.send(&[b"INCR", b"pipelined"]);
        cl.send(&[b"GET", format!("other{i}").as_bytes()]);
        want.extend([V::ok(), V::bulk(&i.to_string()), V::Int(i + 1), V::Bulk(None)]);
    }
    let got: Vec<V> = (0..want.len()).map(|_| cl.read()).collect();
    assert_eq!(got, want);
}

/// A client that sends its next command while the backend still writes the previous reply
/// (the connection handed its reply queue over: `server::Handoff`): each command in its own
/// write, a few after a pause, others at once, some answered by the session itself. Every
/// reply comes in command order.
#[test]
fn replies_written_by_the_backend_keep_their_order() {
    let c = StoreCluster::start(3, 3);
    let mut cl = c.client(0);
    cl.no_delay();
    let pause = |i: u64| Duration::from_micros([50, 150, 10_000][(i % 3) as usize]);
    for i in 0..80u64 {
        let key = format!("h{}", i % 4);
        if i % 2 == 0 {
            // one command at a time: each is alone in its read, so its reply is handed over
            assert_eq!(cl.cmd(&format!("SET {key} {i}")), V::ok());
            assert_eq!(cl.cmd(&format!("GET {key}")), V::bulk(&i.to_string()));
            continue;
        }
        // the next command while the previous may still be handed over: a PING is answered
        // by the session at once, so it would overtake the SET's reply (or be lost) if the
        // queue were not taken back first
        cl.send(&[b"SET", key.as_bytes(), i.to_string().as_bytes()]);
        std::thread::sleep(pause(i));
        cl.send(&[b"PING"]);
        std::thread::sleep(pause(i + 1));
        cl.send(&[b"GET", key.as_bytes()]);
        std::thread::sleep(pause(i + 2));
        let want = [V::ok(), V::Simple("PONG".into()), V::bulk(&i.to_string())];
        let got: Vec<V> = (0..3).map(|_| cl.read()).collect();
        assert_eq!(got, want, "iteration {i}");
    }
    // and the backend did write replies itself (else this test checks nothing new)
    let V::Bulk(Some(info)) = cl.cmd("INFO selfman") else { panic!("INFO is a bulk") };
    let info = String::from_utf8(info).unwrap();
    let written: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("replies_written_by_backend:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no replies_written_by_backend in {info}"));
    assert!(written >= 40, "only {written} replies written by the backend: {info}");
}

/// Writes at node 0 and, as soon as each is acknowledged, reads the key at nodes 1, 2 and 3 at
/// once (a fast read at each); returns how many reads missed the write they followed.
fn stale_reads_after_writes(extra: &[&str], rounds: usize) -> usize {
    let c = StoreCluster::start_with(4, 4, extra);
    let mut w = c.client(0);
    let mut readers: Vec<_> = (1..4).map(|i| c.client(i)).collect();
    let mut stale = 0;
    for i in 0..rounds {
        let key = format!("r{}", i % 8);
        assert_eq!(w.cmd(&format!("SET {key} {i}")), V::ok());
        // all three reads leave before any answer comes: each is as close to the
        // acknowledgement as the first, three chances at the one-message-delay window
        for r in &mut readers {
            r.send(&[b"GET", key.as_bytes()]);
        }
        for r in &mut readers {
            if r.read() != V::bulk(&i.to_string()) {
                stale += 1;
            }
        }
    }
    stale
}

#[test]
fn a_read_after_an_acknowledged_write_sees_it() {
    // The TM answers the client at the decision, before the replicas apply it: the fast read
    // must not answer from replicas that still hold the write's lock and the old version.
    assert_eq!(stale_reads_after_writes(&[], 300), 0, "stale reads after acknowledged writes");
}

#[test]
fn the_flawed_fast_read_is_caught_reading_stale_values() {
    // The window is one message delay (decision to application), so it takes a few hundred
    // reads to hit it: up to 40 rounds of 400 writes, each read at three nodes at once (with
    // one read per write and 10 rounds it was caught in round 1-2 in 6 of 7 tries, and missed
    // once in CI under load: session 15).
    for round in 0..40 {
        let stale = stale_reads_after_writes(&["--flaw", "fast-read-trusts-any-majority"], 400);
        if stale > 0 {
            eprintln!("round {round}: {stale} of 1,200 reads missed an acknowledged write: caught");
            return;
        }
    }
    panic!("48,000 reads right after acknowledged writes were all fresh with the flawed rule: the check is blind");
}

#[test]
fn keyspace_notifications_reach_subscribers_at_other_nodes() {
    use selfman_store::server::{NO_CHANNELS, NO_PATTERNS};
    let c = StoreCluster::start(3, 3);
    let mut sub = c.client(1);
    sub.send(&[b"SUBSCRIBE", b"__keyspace@0__:n1", b"__keyspace@0__:n2"]);
    for (i, ch) in ["__keyspace@0__:n1", "__keyspace@0__:n2"].iter().enumerate() {
        let confirm = vec![V::bulk("subscribe"), V::bulk(ch), V::Int(i as i64 + 1)];
        assert_eq!(sub.read(), V::Array(Some(confirm)));
    }
    // The subscriptions reach the keys' replicas asynchronously.
    std::thread::sleep(Duration::from_secs(1));
    let mut w = c.client(0);
    let message = |key: &str, event: &str| {
        V::Array(Some(vec![
            V::bulk("message"),
            V::bulk(&format!("__keyspace@0__:{key}")),
            V::bulk(event),
        ]))
    };
    for (cmd, key, event) in
        [("SET n1 a", "n1", "set"), ("DEL n1", "n1", "del"), ("SADD n2 m", "n2", "set")]
    {
        assert!(matches!(w.cmd("SET unwatched x"), V::Simple(_)));
        assert!(!matches!(w.cmd(cmd), V::Err(_)), "{cmd}");
        assert_eq!(sub.read(), message(key, event), "after {cmd}");
    }
    sub.send(&[b"UNSUBSCRIBE", b"__keyspace@0__:n1"]);
    let confirm = vec![V::bulk("unsubscribe"), V::bulk("__keyspace@0__:n1"), V::Int(1)];
    assert_eq!(sub.read(), V::Array(Some(confirm)));
    assert_eq!(w.cmd("SET n1 again"), V::ok());
    assert_eq!(w.cmd("SET n2 x"), V::ok());
    assert_eq!(sub.read(), message("n2", "set"), "n1 is no longer told");
    let mut other = c.client(2);
    assert_eq!(other.cmd("PSUBSCRIBE __keyspace@0__:*"), V::Err(NO_PATTERNS.into()));
    assert_eq!(other.cmd("SUBSCRIBE news"), V::Err(NO_CHANNELS.into()));
    assert_eq!(other.cmd("PING"), V::Simple("PONG".into()));
}
