//! Chaos over real processes: a 5-node cluster (f = 4) under load from several clients while
//! one node is killed with SIGKILL and a new node joins in its place. Every client operation
//! is recorded with its invocation and completion times and its result; then:
//!
//! * the bank total never changes (transfers are `WATCH`/`MULTI`/`EXEC` blocks, retried on a
//!   null reply, and a block whose outcome is unknown is atomic either way);
//! * the registers' history (`SET`/`GET` of shared keys by several clients, ending with a read
//!   of every key from every surviving node) is linearizable, by the checker of
//!   `tests/src/checkers/linearizability.rs` — so every acknowledged write is readable
//!   afterwards; the same history with one final read made stale is shown to be refused;
//! * no client waits forever: every reply comes within the client's bound (60 s), or the test
//!   fails.
//!
//! Operations cut by the kill (the connection drops) or answered with an error count as
//! *unknown*: they may or may not have taken effect. Every process is stopped by PID.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selfman_tests::checkers::linearizability::{
    check, Operation, Register, RegisterInput, RegisterOutput, Verdict, PENDING,
};
use support::{Client, StoreCluster, V};

type Op = Operation<String, RegisterInput<String>, RegisterOutput<String>>;

const ACCOUNTS: usize = 4;
const REGISTERS: usize = 3;

/// A client that moves to another live node when its node dies.
struct Roaming {
    addrs: Arc<Mutex<Vec<std::net::SocketAddr>>>,
    at: usize,
    client: Option<Client>,
}

impl Roaming {
    fn cmd(&mut self, line: &str) -> Option<V> {
        if self.client.is_none() {
            let addrs = self.addrs.lock().unwrap().clone();
            self.at = (self.at + 1) % addrs.len();
            self.client = std::net::TcpStream::connect(addrs[self.at])
                .ok()
                .map(|_| Client::connect(addrs[self.at]));
        }
        match self.client.as_mut()?.try_cmd(line) {
            Ok(v) => Some(v),
            Err(e) => {
                assert!(
                    e.kind() != std::io::ErrorKind::WouldBlock,
                    "a reply took longer than the client's bound: {line}"
                );
                self.client = None;
                None
            }
        }
    }
}

#[test]
fn sigkill_under_load_keeps_the_bank_and_a_linearizable_history() {
    let mut cluster = StoreCluster::start(5, 4);
    let addrs = Arc::new(Mutex::new(cluster.nodes.iter().map(|n| n.redis).collect::<Vec<_>>()));
    let mut setup = cluster.client(0);
    for a in 0..ACCOUNTS {
        assert_eq!(setup.cmd(&format!("SET acct{a} 100")), V::ok());
    }
    let start = Instant::now();
    let now = move || start.elapsed().as_micros() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let history: Arc<Mutex<Vec<Op>>> = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for t in 0..6usize {
        let (addrs, stop, history) = (Arc::clone(&addrs), Arc::clone(&stop), Arc::clone(&history));
        threads.push(std::thread::spawn(move || {
            let mut c = Roaming { addrs, at: t, client: None };
            let mut seed = t as u64 * 7919 + 17;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as usize
            };
            let (mut ops, mut unknown) = (0u64, 0u64);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if t < 3 {
                    // A bank transfer.
                    let from = next() % ACCOUNTS;
                    let to = (from + 1 + next() % (ACCOUNTS - 1)) % ACCOUNTS;
                    let done = (|| {
                        c.cmd(&format!("WATCH acct{from} acct{to}"))?;
                        let a = c.cmd(&format!("GET acct{from}"))?;
                        let b = c.cmd(&format!("GET acct{to}"))?;
                        let (V::Bulk(Some(_)), V::Bulk(Some(_))) = (&a, &b) else {
                            c.cmd("UNWATCH")?;
                            return None;
                        };
                        c.cmd("MULTI")?;
                        c.cmd(&format!("SET acct{from} {}", a.int() - 1))?;
                        c.cmd(&format!("SET acct{to} {}", b.int() + 1))?;
                        c.cmd("EXEC")
                    })();
                    ops += 1;
                    if !matches!(done, Some(V::Array(_))) {
                        unknown += 1;
                    }
                } else {
                    // A register operation on a shared key.
                    let key = format!("reg{}", next() % REGISTERS);
                    let write = next() % 2 == 0;
                    let value = format!("c{t}-{n}");
                    let call = now();
                    let line =
                        if write { format!("SET {key} {value}") } else { format!("GET {key}") };
                    let reply = c.cmd(&line);
                    let ret = now();
                    let (input, output, ret) = match (write, reply) {
                        (true, Some(V::Simple(ok))) if ok == "OK" => {
                            (RegisterInput::Write(Some(value)), RegisterOutput::Written, ret)
                        }
                        (true, _) => {
                            (RegisterInput::Write(Some(value)), RegisterOutput::Unknown, PENDING)
                        }
                        (false, Some(V::Bulk(v))) => (
                            RegisterInput::Read,
                            RegisterOutput::Read(v.map(|b| String::from_utf8(b).unwrap())),
                            ret,
                        ),
                        // A read that failed returned nothing: not part of the history.
                        (false, _) => {
                            unknown += 1;
                            continue;
                        }
                    };
                    ops += 1;
                    if ret == PENDING {
                        unknown += 1;
                    }
                    history.lock().unwrap().push(Op {
                        client: t as u64,
                        key,
                        call,
                        ret,
                        input,
                        output,
                    });
                }
            }
            (ops, unknown)
        }));
    }
    std::thread::sleep(Duration::from_secs(3));
    let victim = 3;
    let killed_at = Instant::now();
    let kill_us = now();
    cluster.procs.iter_mut().nth(victim).expect("the victim").kill_9().expect("SIGKILL");
    let dead = cluster.nodes[victim].redis;
    addrs.lock().unwrap().retain(|a| *a != dead);
    eprintln!("killed node {victim} (SIGKILL) at {:?}", start.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    // A new node joins: host 5, at an inner position of its sector (5 mod 4 = host 1's).
    let joined = cluster.add();
    addrs.lock().unwrap().push(joined.redis);
    eprintln!("a new node joined {:?} after the kill", killed_at.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut total_ops = 0;
    let mut total_unknown = 0;
    for t in threads {
        let (ops, unknown) = t.join().expect("a client thread");
        total_ops += ops;
        total_unknown += unknown;
    }
    // Final reads of every register from every live node, and the bank total.
    let live: Vec<usize> = (0..cluster.nodes.len()).filter(|i| *i != victim).collect();
    let mut history = history.lock().unwrap().clone();
    for &i in &live {
        let mut cl = cluster.client(i);
        let total: i64 = (0..ACCOUNTS).map(|a| cl.cmd(&format!("GET acct{a}")).int()).sum();
        assert_eq!(total, 100 * ACCOUNTS as i64, "node {i}: the bank total changed");
        for r in 0..REGISTERS {
            let key = format!("reg{r}");
            let call = now();
            let V::Bulk(v) = cl.cmd(&format!("GET {key}")) else { panic!("GET answers a bulk") };
            let ret = now();
            let output = RegisterOutput::Read(v.map(|b| String::from_utf8(b).unwrap()));
            history.push(Op {
                client: 100 + i as u64,
                key,
                call,
                ret,
                input: RegisterInput::Read,
                output,
            });
        }
    }
    // Throughput of the register clients: before the kill, and how long until a 500 ms window
    // after it completes at least 80 % as many operations (measured, reported, not asserted).
    let done_in = |from: u64, to: u64| {
        history.iter().filter(|o| o.client < 100 && o.ret >= from && o.ret < to).count()
    };
    let before = done_in(kill_us - 2_000_000, kill_us) as f64 / 4.0; // per 500 ms
    let recovered = (0..40u64)
        .map(|w| kill_us + w * 100_000)
        .find(|&t| done_in(t, t + 500_000) as f64 >= 0.8 * before)
        .map(|t| Duration::from_micros(t - kill_us));
    eprintln!("register throughput before the kill: {before:.0} ops per 500 ms; back to 80 % after {recovered:?}");
    let verdict = check(&Register::new(), &history);
    eprintln!(
        "chaos: {total_ops} operations ({total_unknown} unknown or failed), {} register operations, 1 SIGKILL, 1 join: {verdict:?}",
        history.len()
    );
    assert_eq!(verdict, Verdict::Linearizable, "the registers' history");

    // The checker is not blind: make one final read stale (a value overwritten by a write that
    // completed before the read began) and it must be refused.
    let stale =
        (0..history.len()).rev().find_map(|i| {
            let op = &history[i];
            if op.client < 100 {
                return None;
            }
            let RegisterOutput::Read(Some(now_v)) = &op.output else { return None };
            history.iter().find_map(|w| match (&w.input, &w.output) {
                (RegisterInput::Write(Some(old)), RegisterOutput::Written)
                    if w.key == op.key && old != now_v && history.iter().any(|later| {
                        later.key == w.key
                            && matches!(later.input, RegisterInput::Write(_))
                            && later.call > w.ret
                            && later.ret < op.call
                            && later.ret != PENDING
                            && matches!(&later.input, RegisterInput::Write(Some(x)) if x == now_v)
                    }) =>
                {
                    Some((i, old.clone()))
                }
                _ => None,
            })
        });
    let (i, old) = stale.expect("a final read with an overwritten older value to make stale");
    let mut broken = history.clone();
    broken[i].output = RegisterOutput::Read(Some(old));
    assert!(
        matches!(check(&Register::new(), &broken), Verdict::NotLinearizable(_)),
        "the checker refuses a history with a stale read"
    );
}
