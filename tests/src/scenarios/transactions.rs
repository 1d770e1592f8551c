//! Transactions over the full stack: on each node the heartbeat failure detector, the relaxed
//! ring at the node's placed position, symmetric replication (f = 4) and the transaction
//! layer, sharing one ring ([`Payload`]), plus a bank client.
//!
//! * `tx-bank`: 4 nodes on 4 hosts; from 4 s every node's client runs transfers between 8
//!   accounts (read two, write two, retry on abort); node 3 crashes at 10 s (its TMs, rTMs
//!   and participants with it); transfers stop at 20 s and an audit transaction reads every
//!   account. Checked: the total is 0 (Scalaris' bank test: a transfer is atomic and
//!   serializable, or the sum drifts), the audit committed, every transfer of a live client
//!   ended, transfers did commit, and the recorded history (each value is the balance and
//!   the name of the transaction that wrote it) is serializable
//!   ([`check_serializable`]).
//! * `tx-bank-broken`: the same with participants that skip the version check
//!   (`Flaw::SkipsVersionCheck`): concurrent transfers lose updates and the total drifts.
//! * `tx-faults`: 4 nodes on 4 hosts over lossy links with random delays (2 % loss, 1 ms +
//!   an exponential extra of mean 4 ms) until the clients stop; every node's client runs
//!   register transactions (read two of 10 keys, write one or both with a value unique in
//!   the run, commit); node 2 is cut off from 7 s to 9.5 s (longer than the detector's
//!   timeout: takeovers and false suspicions), a fifth node joins at 11 s and node 1 leaves
//!   gracefully at 15 s, all during transactions. Checked: the committed transactions are
//!   serializable (the dependency-graph check,
//!   [`check_serializable`]: a cycle of
//!   ww/wr/rw edges, an aborted read or a value nobody wrote fails, printed), every
//!   transaction of a live client ended, and enough committed.
//! * `tx-faults-broken`: the same with participants that skip the version check: lost
//!   updates make dependency cycles, the serializability check must fail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_core::{
    Component, ComponentDefinition, Context, Handled, Host, NodeAddr, NodeId, Required, Setup,
    Time, Timeout, Timer, TimerId,
};
use selfman_failure_detector::FdConfig;
use selfman_ports::{
    FailureDetector, HostId, Replication, Ring, RingRequest, Transactions, TxHandle, TxIndication,
    TxRequest, TxResult,
};
use selfman_relaxed_ring::RingConfig;
use selfman_replication::{Placement, ReplMessage, ReplicationConfig, RingPayload};
use selfman_sim::{Scenario, SimHost};
use selfman_transactions::{Flaw as TxFlaw, TxConfig, TxLayer, TxMessage, TxPayload};
use serde::{Deserialize, Serialize};

use crate::checkers::transactions::{
    check_bank, check_kill, check_serializable, BankLog, KillLog, ProbeEnd, ProbeRecord,
    ReplicaWatch, SampledReplica, TxHistory, TxRecord, WatchBounds,
};

/// Replicas per item.
pub const F: u32 = 4;

/// Accounts of the bank.
pub const ACCOUNTS: u64 = 8;

/// When the clients start and stop transferring, and when the audit runs.
const START: f64 = 4.0;
const STOP: f64 = 20.0;
const AUDIT: f64 = 23.0;
const END: f64 = 30.0;

fn at(s: f64) -> Time {
    Time::ZERO + Duration::from_secs_f64(s)
}

/// The one ring payload of a node: replication's messages and the transaction layer's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Payload {
    /// Replication's.
    Repl(ReplMessage),
    /// The transaction layer's.
    Tx(TxMessage),
}

impl RingPayload for Payload {
    fn wrap(msg: ReplMessage) -> Self {
        Payload::Repl(msg)
    }

    fn unwrap(self) -> Option<ReplMessage> {
        match self {
            Payload::Repl(m) => Some(m),
            Payload::Tx(_) => None,
        }
    }
}

impl TxPayload for Payload {
    fn wrap(msg: TxMessage) -> Self {
        Payload::Tx(msg)
    }

    fn unwrap(self) -> Option<TxMessage> {
        match self {
            Payload::Tx(m) => Some(m),
            Payload::Repl(_) => None,
        }
    }
}

/// What a run's nodes share with its checks.
#[derive(Clone, Default)]
pub struct TxBoard {
    /// What the clients did.
    pub log: Arc<Mutex<BankLog>>,
    /// Each node's transaction layer, by index.
    pub layers: Arc<Mutex<BTreeMap<usize, Component<TxLayer<Payload>>>>>,
    /// Each node, by index.
    pub nodes: Arc<Mutex<BTreeMap<usize, NodeAddr>>>,
    /// The register clients' transactions, by outcome (`tx-faults`).
    pub history: Arc<Mutex<TxHistory>>,
    /// Register transactions open, by node, since when (`tx-faults`).
    pub open: Arc<Mutex<BTreeMap<NodeAddr, Time>>>,
    /// Each node's replication, by index (for a graceful leave).
    pub repls:
        Arc<Mutex<BTreeMap<usize, Component<selfman_replication::SymmetricReplication<Payload>>>>>,
    /// The atomicity and liveness checks over every node's replica store.
    pub watch: Arc<Mutex<ReplicaWatch>>,
    /// What the kill test's clients did (`tx-kill-*`).
    pub kill: Arc<Mutex<KillLog>>,
    /// The commit of node 3's client last seen in flight (`tx-live`'s crash).
    pub committing: Arc<Mutex<Option<String>>>,
}

/// Which client a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Bank transfers and the audit (`tx-bank`).
    Bank,
    /// Register transactions recorded for the serializability check (`tx-faults`).
    Registers,
    /// The kill test's setup writes and probes (`tx-kill-*`), the clients of the first
    /// `survivors` nodes probing.
    Probes {
        /// Nodes that survive the kill.
        survivors: usize,
    },
}

fn account(i: u64) -> Vec<u8> {
    format!("acct-{i}").into_bytes()
}

/// Builds node `h.index()`: detector, ring at its sector's anchor, replication, transactions
/// (flawed in the broken variant), and the bank client. Node 0 bootstraps, the others join
/// through it.
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_tx_node(
    h: &SimHost,
    board: &TxBoard,
    flaw: Option<TxFlaw>,
) -> selfman_core::Result<()> {
    build_node(h, board, flaw, Workload::Bank)
}

/// As [`build_tx_node`], with the client `workload`. Node `i` runs on host `i`; nodes from
/// index `F` on take an inner position of their sector (the anchors are taken).
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_node(
    h: &SimHost,
    board: &TxBoard,
    flaw: Option<TxFlaw>,
    workload: Workload,
) -> selfman_core::Result<()> {
    let i = h.index();
    let host = HostId(i as u32);
    let id = Placement::new(F).join_position(host, (i / F as usize) as u32, i as u64);
    let fd = selfman_failure_detector::build(h, FdConfig::default())?;
    let fd_port = fd.provided::<FailureDetector>()?;
    let ring_config = RingConfig { id: Some(id), ..RingConfig::default() };
    let ring = selfman_relaxed_ring::build::<Payload, _>(h, ring_config, &fd_port)?;
    let ring_port = ring.provided::<Ring<Payload>>()?;
    let repl_config = ReplicationConfig { f: F, host, ..ReplicationConfig::default() };
    let repl = selfman_replication::build(h, repl_config, &ring_port, &fd_port)?;
    let repl_port = repl.provided::<Replication>()?;
    let tx_config = TxConfig { f: F, ..TxConfig::default() };
    let tx = match flaw {
        None => selfman_transactions::build(h, tx_config, &ring_port, &repl_port, &fd_port)?,
        Some(f) => {
            selfman_transactions::build_flawed(h, tx_config, &ring_port, &repl_port, &fd_port, f)?
        }
    };
    let me = h.local();
    let tx_port = tx.provided::<Transactions>()?;
    match workload {
        Workload::Bank => {
            let (log, history) = (board.log.clone(), board.history.clone());
            let client = h.create(move || Bank::new(me, i, log.clone(), history.clone()))?;
            h.system().connect(&tx_port, &client.required::<Transactions>()?)?;
            h.system().connect(&h.timer()?, &client.required::<Timer>()?)?;
        }
        Workload::Registers => {
            let (history, open) = (board.history.clone(), board.open.clone());
            let client = h.create(move || Registers::new(me, i, history.clone(), open.clone()))?;
            h.system().connect(&tx_port, &client.required::<Transactions>()?)?;
            h.system().connect(&h.timer()?, &client.required::<Timer>()?)?;
        }
        Workload::Probes { survivors } => {
            let (log, history) = (board.kill.clone(), board.history.clone());
            let client =
                h.create(move || Prober::new(i, survivors, log.clone(), history.clone()))?;
            h.system().connect(&tx_port, &client.required::<Transactions>()?)?;
            h.system().connect(&h.timer()?, &client.required::<Timer>()?)?;
        }
    }
    board.repls.lock().expect("not poisoned").insert(i, repl);
    board.layers.lock().expect("not poisoned").insert(i, tx);
    board.nodes.lock().expect("not poisoned").insert(i, me);
    let req = if i == 0 {
        RingRequest::Bootstrap
    } else {
        let access = NodeAddr { addr: selfman_sim::address_of(0), id: NodeId::UNKNOWN };
        RingRequest::Join { access }
    };
    ring_port.request(req)?;
    Ok(())
}

/// What the client is doing.
#[derive(Clone, Debug)]
enum Step {
    Idle,
    /// A transfer of `amount` from `from` to `to`, try `tries`, at stage `stage` (read both,
    /// write both, commit), with the balances read so far.
    Transfer {
        from: u64,
        to: u64,
        amount: i64,
        tries: u32,
        stage: u8,
        since: Time,
        balances: Vec<i64>,
    },
    /// The audit, with the values read so far.
    Audit {
        read: Vec<i64>,
        since: Time,
    },
}

/// An account's value: its balance, then the name of the transaction that wrote it (unique
/// in the run, for the serializability check).
fn balance_of(v: &[u8]) -> Option<i64> {
    let s = String::from_utf8_lossy(v);
    s.split(';').next().and_then(|b| b.parse().ok())
}

/// A bank client: transfers between random accounts, retrying on abort; node 0's client
/// also runs the audit. Every try is recorded (what it read, what it wrote) in the run's
/// [`TxHistory`] by outcome.
struct Bank {
    ctx: Context,
    me: NodeAddr,
    index: usize,
    tx: Required<Transactions>,
    timer: Required<Timer>,
    step: Step,
    handle: u64,
    log: Arc<Mutex<BankLog>>,
    history: Arc<Mutex<TxHistory>>,
    /// The open try's record.
    record: TxRecord,
    audited: bool,
}

/// Tries of one transfer before it is given up.
const TRIES: u32 = 30;

impl Bank {
    fn new(
        me: NodeAddr,
        index: usize,
        log: Arc<Mutex<BankLog>>,
        history: Arc<Mutex<TxHistory>>,
    ) -> Bank {
        Bank {
            ctx: Context::new(),
            me,
            index,
            tx: Required::new(),
            timer: Required::new(),
            step: Step::Idle,
            handle: 0,
            log,
            history,
            record: TxRecord {
                name: String::new(),
                reads: BTreeMap::new(),
                writes: BTreeMap::new(),
            },
            audited: false,
        }
    }

    fn begin(&mut self) {
        let now = self.ctx.now();
        self.log.lock().expect("not poisoned").open.insert(self.me, now);
        self.handle += 1;
        self.record = TxRecord {
            name: format!("b{}-{}", self.index, self.handle),
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
        };
        self.tx.trigger(TxRequest::Begin { handle: TxHandle(self.handle) });
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        if !matches!(self.step, Step::Idle) {
            return Ok(());
        }
        if now >= at(AUDIT) && self.index == 0 && !self.audited {
            self.audited = true;
            self.step = Step::Audit { read: Vec::new(), since: now };
            self.begin();
        } else if now >= at(START) && now < at(STOP) {
            let from = self.ctx.rng().next_u64() % ACCOUNTS;
            let to = (from + 1 + self.ctx.rng().next_u64() % (ACCOUNTS - 1)) % ACCOUNTS;
            let amount = 1 + (self.ctx.rng().next_u64() % 10) as i64;
            self.step = Step::Transfer {
                from,
                to,
                amount,
                tries: 1,
                stage: 0,
                since: now,
                balances: Vec::new(),
            };
            self.begin();
        }
        Ok(())
    }

    fn next(&mut self) {
        let h = TxHandle(self.handle);
        let name = self.record.name.clone();
        match &mut self.step {
            Step::Transfer { from, to, amount, stage, balances, .. } => {
                *stage += 1;
                let value = |b: i64| Some(format!("{b};{name}").into_bytes());
                let req = match (*stage, balances.as_slice()) {
                    (1, _) => TxRequest::Read { handle: h, key: account(*from) },
                    (2, _) => TxRequest::Read { handle: h, key: account(*to) },
                    (3, [f, _]) => TxRequest::Write {
                        handle: h,
                        key: account(*from),
                        value: value(f - *amount),
                    },
                    (4, [_, t]) => {
                        TxRequest::Write { handle: h, key: account(*to), value: value(t + *amount) }
                    }
                    _ => TxRequest::Commit { handle: h },
                };
                if let TxRequest::Commit { .. } = req {
                    self.history.lock().expect("not poisoned").committing(&self.record);
                }
                if let TxRequest::Write { key, value: Some(v), .. } = &req {
                    self.record.writes.insert(key.clone(), v.clone());
                }
                self.tx.trigger(req);
            }
            Step::Audit { read, .. } => {
                let n = read.len() as u64;
                let req = if n < ACCOUNTS {
                    TxRequest::Read { handle: h, key: account(n) }
                } else {
                    self.history.lock().expect("not poisoned").committing(&self.record);
                    TxRequest::Commit { handle: h }
                };
                self.tx.trigger(req);
            }
            Step::Idle => {}
        }
    }

    /// The transaction went wrong before its commit: give it up, retry the transfer.
    fn failed(&mut self, result: TxResult) {
        self.tx.trigger(TxRequest::Abort { handle: TxHandle(self.handle) });
        self.ended(result, false);
    }

    /// The try ended with `result` (`committing`: the answer of its commit).
    fn ended(&mut self, result: TxResult, committing: bool) {
        let now = self.ctx.now();
        let record = std::mem::replace(
            &mut self.record,
            TxRecord { name: String::new(), reads: BTreeMap::new(), writes: BTreeMap::new() },
        );
        let outcome = match (&result, committing) {
            (TxResult::Ok, true) => Some(true),
            (TxResult::Timeout, true) => None,
            _ => Some(false),
        };
        self.history.lock().expect("not poisoned").ended_at(record, outcome, now);
        let step = std::mem::replace(&mut self.step, Step::Idle);
        let mut log = self.log.lock().expect("not poisoned");
        log.open.remove(&self.me);
        match step {
            Step::Transfer { from, to, amount, tries, since, .. } => match result {
                TxResult::Ok => log.committed(self.me, now.duration_since(since)),
                TxResult::Timeout if committing => log.timeouts += 1,
                _ if tries < TRIES && now < at(STOP) => {
                    log.aborts += 1;
                    drop(log);
                    self.step = Step::Transfer {
                        from,
                        to,
                        amount,
                        tries: tries + 1,
                        stage: 0,
                        since,
                        balances: Vec::new(),
                    };
                    self.begin();
                }
                _ => log.given_up += 1,
            },
            Step::Audit { read, since } => match result {
                TxResult::Ok => log.audit = Some(read.iter().sum()),
                _ => {
                    log.audit_tries += 1;
                    drop(log);
                    self.step = Step::Audit { read: Vec::new(), since };
                    self.begin();
                }
            },
            Step::Idle => {}
        }
    }

    fn on_tx(&mut self, ind: TxIndication) -> Handled {
        match ind {
            TxIndication::Begun { handle, result } if handle.0 == self.handle => match result {
                TxResult::Ok => self.next(),
                r => self.ended(r, false),
            },
            TxIndication::OpDone { handle, result, .. } if handle.0 == self.handle => {
                match result {
                    TxResult::Ok => self.next(),
                    r => self.failed(r),
                }
            }
            TxIndication::ReadDone { handle, key, result, value } if handle.0 == self.handle => {
                let n = match (result, &value) {
                    (TxResult::Ok, Some(v)) => balance_of(v),
                    (TxResult::NotFound, _) => Some(0),
                    _ => None,
                };
                match (n, &mut self.step) {
                    (Some(n), Step::Audit { read, .. }) => {
                        self.record.reads.insert(key, value);
                        read.push(n);
                        self.next();
                    }
                    (Some(n), Step::Transfer { balances, .. }) => {
                        self.record.reads.insert(key, value);
                        balances.push(n);
                        self.next();
                    }
                    _ => self.failed(TxResult::Timeout),
                }
            }
            TxIndication::Committed { handle, result, .. } if handle.0 == self.handle => {
                self.ended(result, true)
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for Bank {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.tx, Self::on_tx);
        s.require(|c| &mut c.timer, Self::on_tick);
    }

    fn on_start(&mut self) -> Handled {
        let p = Duration::from_millis(20);
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

fn bank(name: &str, flaw: Option<TxFlaw>) -> Scenario {
    bank_with(name, flaw, TxBoard::default())
}

/// Runs `tx-bank` (or its broken twin) from `seed` and returns what its clients did.
pub fn bank_report(name: &str, seed: u64) -> Option<(selfman_sim::Outcome, BankLog)> {
    let flaw = match name {
        "tx-bank" => None,
        "tx-bank-broken" => Some(TxFlaw::SkipsVersionCheck),
        _ => return None,
    };
    let board = TxBoard::default();
    let out = bank_with(name, flaw, board.clone()).run_quiet(seed);
    let log = board.log.lock().expect("not poisoned").clone();
    Some((out, log))
}

fn bank_with(name: &str, flaw: Option<TxFlaw>, board: TxBoard) -> Scenario {
    let b = board.clone();
    let mut s = Scenario::new(name).until(at(END));
    for (n, t) in [0.0, 0.3, 0.6, 0.9].into_iter().enumerate() {
        let b = b.clone();
        s = s.start_nodes(at(t), 1, move |h| {
            debug_assert_eq!(h.index(), n);
            build_tx_node(h, &b, flaw)
        });
    }
    let b = board.clone();
    s = s.at(at(10.0), "crash node 3", move |run| {
        let victim = *b.nodes.lock().expect("not poisoned").get(&3).ok_or("no node 3")?;
        run.sim.crash(victim).map_err(|e| e.to_string())
    });
    let b = board.clone();
    s.check_at_end("bank", move |sim| {
        let log = b.log.lock().expect("not poisoned");
        let alive: Vec<NodeAddr> = sim.alive_nodes();
        check_bank(&log, &alive)?;
        check_serializable(&b.history.lock().expect("not poisoned")).map(|_| ())
    })
}

/// `tx-bank` (see the module documentation).
pub fn tx_bank() -> Scenario {
    bank("tx-bank", None)
}

/// `tx-bank-broken`: participants skip the version check.
pub fn tx_bank_broken() -> Scenario {
    bank("tx-bank-broken", Some(TxFlaw::SkipsVersionCheck))
}

/// Keys of the register workload.
pub const REGISTERS: u64 = 10;

/// When the register clients run, and the end of `tx-faults`.
const REG_START: f64 = 4.0;
const REG_STOP: f64 = 20.0;
const REG_END: f64 = 32.0;

fn register(i: u64) -> Vec<u8> {
    format!("reg-{i}").into_bytes()
}

/// A register client's open transaction: keys to read, keys to write, what it read and
/// wrote so far.
type Open = (Vec<Vec<u8>>, Vec<Vec<u8>>, TxRecord);

/// A register client: one transaction at a time; each reads two random keys, writes one or
/// both with a value unique in the run (`n<node>-<seq>`), commits, and records what it saw
/// and wrote by outcome in the run's [`TxHistory`].
struct Registers {
    ctx: Context,
    me: NodeAddr,
    index: usize,
    tx: Required<Transactions>,
    timer: Required<Timer>,
    handle: u64,
    /// The open transaction: keys to read, keys to write, what it read so far.
    current: Option<Open>,
    history: Arc<Mutex<TxHistory>>,
    open: Arc<Mutex<BTreeMap<NodeAddr, Time>>>,
}

impl Registers {
    fn new(
        me: NodeAddr,
        index: usize,
        history: Arc<Mutex<TxHistory>>,
        open: Arc<Mutex<BTreeMap<NodeAddr, Time>>>,
    ) -> Registers {
        Registers {
            ctx: Context::new(),
            me,
            index,
            tx: Required::new(),
            timer: Required::new(),
            handle: 0,
            current: None,
            history,
            open,
        }
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        if self.current.is_some() || now < at(REG_START) || now >= at(REG_STOP) {
            return Ok(());
        }
        let a = self.ctx.rng().next_u64() % REGISTERS;
        let b = (a + 1 + self.ctx.rng().next_u64() % (REGISTERS - 1)) % REGISTERS;
        let both = self.ctx.rng().next_u64() % 2 == 0;
        let reads = vec![register(a), register(b)];
        let writes = if both { reads.clone() } else { vec![register(a)] };
        self.handle += 1;
        let record = TxRecord {
            name: format!("n{}-{}", self.index, self.handle),
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
        };
        self.current = Some((reads, writes, record));
        self.open.lock().expect("not poisoned").insert(self.me, now);
        self.tx.trigger(TxRequest::Begin { handle: TxHandle(self.handle) });
        Ok(())
    }

    /// The next request of the open transaction: reads, then writes, then the commit.
    fn next(&mut self) {
        let h = TxHandle(self.handle);
        let Some((reads, writes, record)) = self.current.as_mut() else { return };
        if let Some(key) = reads.iter().find(|k| !record.reads.contains_key(*k)) {
            self.tx.trigger(TxRequest::Read { handle: h, key: key.clone() });
            return;
        }
        if let Some(key) = writes.iter().find(|k| !record.writes.contains_key(*k)).cloned() {
            let value = format!("{}-{}", record.name, String::from_utf8_lossy(&key)).into_bytes();
            record.writes.insert(key.clone(), value.clone());
            self.tx.trigger(TxRequest::Write { handle: h, key, value: Some(value) });
            return;
        }
        self.history.lock().expect("not poisoned").committing(record);
        self.tx.trigger(TxRequest::Commit { handle: h });
    }

    /// The transaction ended with `result` (`committed`: it reached its commit).
    fn ended(&mut self, result: &TxResult, committed: bool) {
        let Some((_, _, record)) = self.current.take() else { return };
        self.open.lock().expect("not poisoned").remove(&self.me);
        let outcome = match (result, committed) {
            (TxResult::Ok, true) => Some(true),
            (TxResult::Timeout, true) => None,
            _ => Some(false),
        };
        let now = self.ctx.now();
        self.history.lock().expect("not poisoned").ended_at(record, outcome, now);
    }

    fn on_tx(&mut self, ind: TxIndication) -> Handled {
        match ind {
            TxIndication::Begun { handle, result } if handle.0 == self.handle => match result {
                TxResult::Ok => self.next(),
                r => self.ended(&r, false),
            },
            TxIndication::ReadDone { handle, key, result, value } if handle.0 == self.handle => {
                match result {
                    TxResult::Ok | TxResult::NotFound => {
                        if let Some((_, _, record)) = self.current.as_mut() {
                            record.reads.insert(key, value);
                        }
                        self.next();
                    }
                    r => {
                        self.tx.trigger(TxRequest::Abort { handle });
                        self.ended(&r, false);
                    }
                }
            }
            TxIndication::OpDone { handle, result, .. } if handle.0 == self.handle => {
                match result {
                    TxResult::Ok => self.next(),
                    r => {
                        self.tx.trigger(TxRequest::Abort { handle });
                        self.ended(&r, false);
                    }
                }
            }
            TxIndication::Committed { handle, result, .. } if handle.0 == self.handle => {
                self.ended(&result, true)
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for Registers {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.tx, Self::on_tx);
        s.require(|c| &mut c.timer, Self::on_tick);
    }

    fn on_start(&mut self) -> Handled {
        let p = Duration::from_millis(20);
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

/// Link delays and loss of `tx-faults` until the clients stop.
const FAULT_LATENCY: selfman_sim::Latency = selfman_sim::Latency::Exponential {
    base: Duration::from_millis(1),
    mean_extra: Duration::from_millis(4),
};
const FAULT_LOSS: f64 = 0.02;

/// The figures of a `tx-faults` run, for tests: committed, unknown and aborted transactions.
pub fn faults_report(
    name: &str,
    seed: u64,
) -> Option<(selfman_sim::Outcome, (usize, usize, usize))> {
    let flaw = match name {
        "tx-faults" => None,
        "tx-faults-broken" => Some(TxFlaw::SkipsVersionCheck),
        "tx-atomic" => None,
        "tx-atomic-broken" => Some(TxFlaw::AppliesAbortedWrites),
        _ => return None,
    };
    let board = TxBoard::default();
    let watch = name.starts_with("tx-atomic");
    let out = faults_with(name, flaw, board.clone(), watch).run_quiet(seed);
    let h = board.history.lock().expect("not poisoned");
    Some((out, (h.committed.len(), h.unknown.len(), h.aborted.len())))
}

/// `tx-faults` (or a twin), with the replica stores watched if `watch` (`tx-atomic`).
fn faults_with(name: &str, flaw: Option<TxFlaw>, board: TxBoard, watch: bool) -> Scenario {
    let config = selfman_sim::SimConfig {
        network: selfman_sim::SimNetConfig {
            default_link: selfman_sim::LinkModel { latency: FAULT_LATENCY, loss: FAULT_LOSS },
            ..selfman_sim::SimNetConfig::default()
        },
        ..selfman_sim::SimConfig::default()
    };
    let mut s = Scenario::new(name).config(config).until(at(REG_END));
    for (n, t) in [0.0, 0.3, 0.6, 0.9, 11.0].into_iter().enumerate() {
        let b = board.clone();
        s = s.start_nodes(at(t), 1, move |h| {
            debug_assert_eq!(h.index(), n);
            build_node(h, &b, flaw, Workload::Registers)
        });
    }
    let b = board.clone();
    s = s.partition(at(7.0), move |nodes| {
        let cut = b.nodes.lock().expect("not poisoned").get(&2).copied();
        let (a, rest): (Vec<NodeAddr>, Vec<NodeAddr>) =
            nodes.iter().partition(|n| cut.is_some_and(|c| c.addr == n.addr));
        vec![a, rest]
    });
    s = s.heal(at(9.5));
    let b = board.clone();
    s = s.at(at(15.0), "node 1 leaves", move |_| {
        let repl = b.repls.lock().expect("not poisoned").get(&1).cloned().ok_or("no node 1")?;
        let port = repl.provided::<Replication>().map_err(|e| e.to_string())?;
        port.request(selfman_ports::ReplicationRequest::Leave).map_err(|e| e.to_string())
    });

    s = s.at(at(REG_STOP), "quiet: links lose nothing", move |run| {
        run.sim.set_default_link(selfman_sim::LinkModel { latency: FAULT_LATENCY, loss: 0.0 });
        Ok(())
    });
    // `tx-atomic`: atomicity and leases at the replicas, checked first; no liveness bound
    // (`quiet` stays unset): a vote handed over by node 1's leave at 15 s lasts until its
    // lease, since the decision finds no participant at the new holder (docs/transactions.md).
    let s = if watch { watched(s, &board, REG_END) } else { s };
    let b = board.clone();
    s.check_at_end("serializable", move |sim| {
        let h = b.history.lock().expect("not poisoned");
        let edges = check_serializable(&h)?;
        let summary = format!(
            "{} committed, {} unknown, {} aborted, {edges} dependencies",
            h.committed.len(),
            h.unknown.len(),
            h.aborted.len()
        );
        if std::env::var_os("SELFMAN_TX_REPORT").is_some() {
            eprintln!("tx-faults: {summary}");
        }
        if h.committed.len() < 50 {
            return Err(format!("too few transactions committed ({summary})"));
        }
        let alive = sim.alive_nodes();
        let open = b.open.lock().expect("not poisoned");
        if let Some((n, since)) = open.iter().find(|(n, _)| alive.contains(n)) {
            return Err(format!("{n} has a transaction open since {since:?} ({summary})"));
        }
        Ok(())
    })
}

/// `tx-faults` (see the module documentation).
pub fn tx_faults() -> Scenario {
    faults_with("tx-faults", None, TxBoard::default(), false)
}

/// `tx-faults-broken`: participants skip the version check.
pub fn tx_faults_broken() -> Scenario {
    faults_with("tx-faults-broken", Some(TxFlaw::SkipsVersionCheck), TxBoard::default(), false)
}

/// The bounds of the replica-store checks ([`ReplicaWatch`]), from the layers' defaults:
///
/// * a committed write is at a majority of its replicas within **5 s** of the client's `Ok`
///   (the decision went to the participants with the client's `Ok`; each lost copy is sent
///   again every `retransmit`, 250 ms; a TM cut off right after its decision is taken over
///   within the liveness bound below, and its rTMs deliver the decision);
/// * a vote's lease is the layer's `lease` (10 s: these clients take no eager locks);
/// * once the faults stop, every lock is gone within **5 s** of the later of the faults' end
///   and its first sighting: the detector suspects a dead TM within its largest timeout
///   (`max_timeout`, 2 s), the first rTM leads at once or, unsuspecting, after
///   `takeover_after` (2 s), its round (collect, accept, decide: three message delays) and
///   the decision's delivery (a retransmit) fit in the last second. 5 s is half the lease:
///   locks that end only with their lease (no takeover) fail it.
pub fn watch_bounds() -> WatchBounds {
    let tx = TxConfig::default();
    let fd = FdConfig::default();
    WatchBounds {
        f: F,
        apply_within: fd.max_timeout + tx.takeover_after + Duration::from_secs(1),
        lease: tx.lease,
        resolve_within: fd.max_timeout + tx.takeover_after + Duration::from_secs(1),
    }
}

/// How often the replica stores are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(25);

/// Every live node's replicas at `now`, as the watch samples them.
fn sample(board: &TxBoard, sim: &selfman_sim::Simulation) -> Vec<SampledReplica> {
    let now = sim.now();
    let alive = sim.alive_nodes();
    let nodes = board.nodes.lock().expect("not poisoned").clone();
    let repls = board.repls.lock().expect("not poisoned").clone();
    let mut out = Vec::new();
    for (i, repl) in repls {
        let Some(&node) = nodes.get(&i) else { continue };
        if !alive.contains(&node) {
            continue;
        }
        let _ = repl.on_definition(|d| {
            let m = d.machine();
            let serving = m.serving();
            for (id, r) in m.store().iter() {
                let locks = r
                    .votes()
                    .iter()
                    .filter(|v| v.vote == selfman_ports::Vote::Prepared && now < v.expires)
                    .map(|v| (v.tx, v.expires))
                    .collect();
                out.push(SampledReplica {
                    node,
                    pos: id.pos,
                    key: id.key.to_vec(),
                    version: r.version.0,
                    value: r.value.map(<[u8]>::to_vec),
                    served: serving.iter().any(|range| range.contains(id.pos)),
                    locks,
                });
            }
        });
    }
    out
}

/// `s` with the replica stores sampled every [`SAMPLE_EVERY`] until `end` and the watch's
/// checks ([`ReplicaWatch`]) at each sample and at the end.
fn watched(mut s: Scenario, board: &TxBoard, end: f64) -> Scenario {
    let bounds = watch_bounds();
    let mut t = Time::ZERO + SAMPLE_EVERY;
    while t < at(end) {
        let b = board.clone();
        s = s.check_at(t, "replicas", move |sim| {
            let replicas = sample(&b, sim);
            let h = b.history.lock().expect("not poisoned");
            b.watch.lock().expect("not poisoned").observe(sim.now(), &replicas, &h, &bounds)
        });
        t = t + SAMPLE_EVERY;
    }
    let b = board.clone();
    s.check_at_end("atomicity and liveness at the replicas", move |sim| {
        let h = b.history.lock().expect("not poisoned");
        let summary = b.watch.lock().expect("not poisoned").finish(sim.now(), &h, &bounds)?;
        if std::env::var_os("SELFMAN_TX_REPORT").is_some() {
            let worst = b.watch.lock().expect("not poisoned").worst_lock().to_string();
            eprintln!("replicas: {summary:?} worst lock: {worst}");
        }
        if summary.applied == 0 {
            return Err(format!("no committed write was checked at the replicas ({summary:?})"));
        }
        Ok(())
    })
}

/// The end of `tx-live` (its clients run from 4 s to 20 s, as `tx-faults`').
const LIVE_END: f64 = 30.0;

/// `tx-live` (or its broken twin): the register clients of `tx-faults` on lossy links; node
/// 2 cut off from 5 s to 7.5 s, then the nodes split two and two from 9 s to 10.5 s (no
/// majority anywhere), then node 3 crashes at its client's first commit after 13 s (by 15 s
/// at the latest): its TMs die with votes out. Then the links are clean: the faults stopped
/// ([`ReplicaWatch::quiet`]). Checked: the liveness bound and leases ([`watch_bounds`]),
/// atomicity at the replicas, serializability, every live client's transaction ended.
fn live_with(name: &str, flaw: Option<TxFlaw>, board: TxBoard) -> Scenario {
    let config = selfman_sim::SimConfig {
        network: selfman_sim::SimNetConfig {
            default_link: selfman_sim::LinkModel { latency: FAULT_LATENCY, loss: FAULT_LOSS },
            ..selfman_sim::SimNetConfig::default()
        },
        ..selfman_sim::SimConfig::default()
    };
    let mut s = Scenario::new(name).config(config).until(at(LIVE_END));
    for (n, t) in [0.0, 0.3, 0.6, 0.9].into_iter().enumerate() {
        let b = board.clone();
        s = s.start_nodes(at(t), 1, move |h| {
            debug_assert_eq!(h.index(), n);
            build_node(h, &b, flaw, Workload::Registers)
        });
    }
    let nodes_of = |b: &TxBoard, idx: &[usize]| -> Vec<std::net::SocketAddr> {
        let nodes = b.nodes.lock().expect("not poisoned");
        idx.iter().filter_map(|i| nodes.get(i).map(|n| n.addr)).collect()
    };
    let b = board.clone();
    s = s.partition(at(5.0), move |nodes| {
        let cut = nodes_of(&b, &[2]);
        let (a, rest): (Vec<NodeAddr>, Vec<NodeAddr>) =
            nodes.iter().partition(|n| cut.contains(&n.addr));
        vec![a, rest]
    });
    s = s.heal(at(7.5));
    let b = board.clone();
    s = s.partition(at(9.0), move |nodes| {
        let left = nodes_of(&b, &[0, 1]);
        let (a, rest): (Vec<NodeAddr>, Vec<NodeAddr>) =
            nodes.iter().partition(|n| left.contains(&n.addr));
        vec![a, rest]
    });
    s = s.heal(at(10.5));
    // Node 3 crashes once its client asked for a commit (polled every 5 ms), at 15 s at the
    // latest; the links are clean from then on.
    let mut t = at(13.0);
    while t <= at(15.0) {
        let b = board.clone();
        let last = t + Duration::from_millis(5) > at(15.0);
        s = s.at(t, "crash node 3 mid-commit", move |run| {
            let mut watch = b.watch.lock().expect("not poisoned");
            if watch.quiet.is_some() {
                return Ok(());
            }
            // The commit node 3's client asked for, if any: crash at the second poll that
            // sees the same one (5 to 10 ms after it was asked: votes are out) ...
            let (committing, writes) = b
                .history
                .lock()
                .expect("not poisoned")
                .in_flight
                .iter()
                .find(|(n, _)| n.starts_with("n3-"))
                .map_or((None, Vec::new()), |(n, r)| {
                    (Some(n.clone()), r.writes.keys().cloned().collect::<Vec<_>>())
                });
            let mut seen = b.committing.lock().expect("not poisoned");
            // ... and while its TM has not decided.
            let undecided = b
                .layers
                .lock()
                .expect("not poisoned")
                .get(&3)
                .and_then(|l| l.on_definition(|d| d.machine().state_kinds().0).ok())
                .unwrap_or(0);
            // ... and while a transaction locking a key it writes at node 3's replica
            // (its TM votes there at once) locks it at another node too.
            let node3 = b.nodes.lock().expect("not poisoned").get(&3).copied();
            let replicas = sample(&b, run.sim);
            let locked_at =
                |here: bool| -> std::collections::BTreeSet<(Vec<u8>, selfman_ports::TxId)> {
                    replicas
                        .iter()
                        .filter(|r| (Some(r.node) == node3) == here && writes.contains(&r.key))
                        .flat_map(|r| r.locks.iter().map(|(tx, _)| (r.key.clone(), *tx)))
                        .collect()
                };
            let held = !locked_at(true).is_disjoint(&locked_at(false));
            let again = committing.is_some() && *seen == committing && undecided > 0 && held;
            *seen = committing;
            if !again && !last {
                return Ok(());
            }
            let victim = *b.nodes.lock().expect("not poisoned").get(&3).ok_or("no node 3")?;
            run.sim.crash(victim).map_err(|e| e.to_string())?;
            run.sim.set_default_link(selfman_sim::LinkModel { latency: FAULT_LATENCY, loss: 0.0 });
            watch.quiet = Some(run.sim.now());
            Ok(())
        });
        t = t + Duration::from_millis(5);
    }
    let s = watched(s, &board, LIVE_END);
    let b = board.clone();
    s.check_at_end("serializable, every transaction ended", move |sim| {
        let h = b.history.lock().expect("not poisoned");
        check_serializable(&h)?;
        if h.committed.len() < 50 {
            return Err(format!("too few transactions committed ({})", h.committed.len()));
        }
        let alive = sim.alive_nodes();
        let open = b.open.lock().expect("not poisoned");
        if let Some((n, since)) = open.iter().find(|(n, _)| alive.contains(n)) {
            return Err(format!("{n} has a transaction open since {since:?}"));
        }
        Ok(())
    })
}

/// The figures of a `tx-live` run, for tests: the run and what its watch saw.
pub fn live_report(
    name: &str,
    seed: u64,
) -> Option<(selfman_sim::Outcome, Option<Time>, (usize, usize))> {
    let flaw = match name {
        "tx-live" => None,
        "tx-live-broken" => Some(TxFlaw::NoTakeover),
        _ => return None,
    };
    let board = TxBoard::default();
    let out = live_with(name, flaw, board.clone()).run_quiet(seed);
    let quiet = board.watch.lock().expect("not poisoned").quiet;
    let h = board.history.lock().expect("not poisoned");
    Some((out, quiet, (h.committed.len(), h.aborted.len())))
}

/// `tx-live`: faults while transactions run, then the liveness and lease checks (see `live_with`).
pub fn tx_live() -> Scenario {
    live_with("tx-live", None, TxBoard::default())
}

/// `tx-live-broken`: rTMs never take over (`NoTakeover`): the crashed TM's locks last until
/// their lease, past the liveness bound.
pub fn tx_live_broken() -> Scenario {
    live_with("tx-live-broken", Some(TxFlaw::NoTakeover), TxBoard::default())
}

/// `tx-atomic`: `tx-faults` with the replica stores watched ([`ReplicaWatch`]: atomicity at
/// the replicas, versions, leases).
pub fn tx_atomic() -> Scenario {
    faults_with("tx-atomic", None, TxBoard::default(), true)
}

/// `tx-atomic-broken`: `tx-atomic` with participants that apply an aborted transaction's
/// write (`AppliesAbortedWrites`): the atomicity check at the replicas must fail.
pub fn tx_atomic_broken() -> Scenario {
    faults_with("tx-atomic-broken", Some(TxFlaw::AppliesAbortedWrites), TxBoard::default(), true)
}

/// Keys of the kill test.
pub const KILL_KEYS: u64 = 6;

/// The kill test's times: setup writes from 3 s, the kill at 9 s, probes until 27 s.
const KILL_SETUP: f64 = 3.0;
const KILL_AT: f64 = 9.0;
const KILL_STOP: f64 = 27.0;
const KILL_END: f64 = 30.0;

/// After the kill of one node, every probe begun this long after it commits: the detector
/// suspects within `max_timeout` (2 s), the ring repairs, the successor rebuilds the lost
/// replicas (reading two of the three other replica intervals), all within a few seconds.
pub const KILL_SETTLE: Duration = Duration::from_secs(6);

fn kill_key(j: u64) -> Vec<u8> {
    format!("kill-{j}").into_bytes()
}

/// One probe of the kill test's client, under way.
struct Probe {
    key: u64,
    /// Its try (an aborted probe is tried again, up to [`PROBE_TRIES`] times).
    tries: u32,
    /// The value to write (`None`: a read-only probe).
    write: Option<Vec<u8>>,
    setup: bool,
    begin: Time,
    /// What the read answered: `Some(value or nothing)` when it succeeded.
    read: Option<Option<Vec<u8>>>,
    record: TxRecord,
}

/// Tries of one kill-test probe that aborts.
const PROBE_TRIES: u32 = 5;

/// The kill test's client: node 0 writes every key once (the setup, retried until
/// committed); after the kill, each of the first `survivors` nodes probes its own keys (key
/// `j` with `j % survivors` its index), alternating a read-only transaction and a
/// read-then-write one, one at a time, and logs every outcome.
struct Prober {
    ctx: Context,
    index: usize,
    survivors: usize,
    tx: Required<Transactions>,
    timer: Required<Timer>,
    handle: u64,
    current: Option<Probe>,
    /// Probes begun (for the alternation and the keys' rotation).
    probes: u64,
    log: Arc<Mutex<KillLog>>,
    history: Arc<Mutex<TxHistory>>,
}

impl Prober {
    fn new(
        index: usize,
        survivors: usize,
        log: Arc<Mutex<KillLog>>,
        history: Arc<Mutex<TxHistory>>,
    ) -> Prober {
        Prober {
            ctx: Context::new(),
            index,
            survivors,
            tx: Required::new(),
            timer: Required::new(),
            handle: 0,
            current: None,
            probes: 0,
            log,
            history,
        }
    }

    fn start(&mut self, key: u64, write: Option<Vec<u8>>, setup: bool, tries: u32) {
        self.handle += 1;
        let now = self.ctx.now();
        let record = TxRecord {
            name: format!("k{}-{}", self.index, self.handle),
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
        };
        self.current = Some(Probe { key, tries, write, setup, begin: now, read: None, record });
        self.log.lock().expect("not poisoned").open.insert(self.index, now);
        self.tx.trigger(TxRequest::Begin { handle: TxHandle(self.handle) });
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        if self.current.is_some() {
            return Ok(());
        }
        if self.index == 0 && now >= at(KILL_SETUP) && now < at(KILL_AT) {
            let done = self.log.lock().expect("not poisoned").setup.len() as u64;
            if done < KILL_KEYS {
                let value = format!("setup-{done}").into_bytes();
                self.start(done, Some(value), true, 1);
            }
        } else if self.index < self.survivors && now >= at(KILL_AT) && now < at(KILL_STOP) {
            let mine: Vec<u64> =
                (0..KILL_KEYS).filter(|j| *j as usize % self.survivors == self.index).collect();
            let n = self.probes;
            self.probes += 1;
            let key = mine[(n / 2) as usize % mine.len()];
            let write = (n % 2 == 1).then(|| format!("p{}-{}", self.index, self.handle + 1));
            self.start(key, write.map(String::into_bytes), false, 1);
        }
        Ok(())
    }

    /// The open probe ended with `end`.
    fn ended(&mut self, end: ProbeEnd) {
        let Some(p) = self.current.take() else { return };
        let now = self.ctx.now();
        let outcome = match end {
            ProbeEnd::Committed => Some(true),
            ProbeEnd::Unknown => None,
            ProbeEnd::Failed(_) => Some(false),
        };
        self.history.lock().expect("not poisoned").ended_at(p.record, outcome, now);
        let mut log = self.log.lock().expect("not poisoned");
        log.open.remove(&self.index);
        if p.setup {
            if end == ProbeEnd::Committed {
                if let Some(v) = p.write {
                    log.setup.insert(p.key, (v, now));
                }
            }
            return;
        }
        // An abort (a conflict with the client's own previous probe, whose release may
        // reach a replica after this probe's vote) is retried, as Scalaris' tests retry.
        let retried = matches!(&end, ProbeEnd::Failed(r) if r.starts_with("Abort"))
            && p.tries < PROBE_TRIES
            && now < at(KILL_STOP);
        let again = p.write.is_some();
        log.probes.push(ProbeRecord {
            node: self.index,
            key: p.key,
            write: p.write,
            begin: p.begin,
            end: now,
            read: p.read,
            outcome: end,
            retried,
        });
        drop(log);
        if retried {
            let write = again.then(|| format!("p{}-{}", self.index, self.handle + 1).into_bytes());
            self.start(p.key, write, false, p.tries + 1);
        }
    }

    fn fail(&mut self, result: TxResult) {
        self.tx.trigger(TxRequest::Abort { handle: TxHandle(self.handle) });
        self.ended(ProbeEnd::Failed(format!("{result:?}")));
    }

    fn on_tx(&mut self, ind: TxIndication) -> Handled {
        let h = TxHandle(self.handle);
        match ind {
            TxIndication::Begun { handle, result } if handle == h => match result {
                TxResult::Ok => {
                    let Some(p) = &self.current else { return Ok(()) };
                    self.tx.trigger(TxRequest::Read { handle: h, key: kill_key(p.key) });
                }
                r => self.ended(ProbeEnd::Failed(format!("{r:?}"))),
            },
            TxIndication::ReadDone { handle, key, result, value } if handle == h => match result {
                TxResult::Ok | TxResult::NotFound => {
                    let Some(p) = self.current.as_mut() else { return Ok(()) };
                    p.read = Some(value.clone());
                    p.record.reads.insert(key.clone(), value);
                    match p.write.clone() {
                        Some(v) => {
                            p.record.writes.insert(key.clone(), v.clone());
                            self.tx.trigger(TxRequest::Write { handle: h, key, value: Some(v) });
                        }
                        None => {
                            self.history.lock().expect("not poisoned").committing(&p.record);
                            self.tx.trigger(TxRequest::Commit { handle: h });
                        }
                    }
                }
                r => self.fail(r),
            },
            TxIndication::OpDone { handle, result, .. } if handle == h => match result {
                TxResult::Ok => {
                    if let Some(p) = &self.current {
                        self.history.lock().expect("not poisoned").committing(&p.record);
                    }
                    self.tx.trigger(TxRequest::Commit { handle: h });
                }
                r => self.fail(r),
            },
            TxIndication::Committed { handle, result, .. } if handle == h => {
                self.ended(match result {
                    TxResult::Ok => ProbeEnd::Committed,
                    TxResult::Timeout => ProbeEnd::Unknown,
                    r => ProbeEnd::Failed(format!("{r:?}")),
                })
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for Prober {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.tx, Self::on_tx);
        s.require(|c| &mut c.timer, Self::on_tick);
    }

    fn on_start(&mut self) -> Handled {
        let p = Duration::from_millis(20);
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

/// `tx-kill-N` (or a broken twin): Scalaris' kill test over the full stack. 4 nodes on 4
/// hosts, `f = 4` (each node holds one replica of every key); node 0 writes 6 keys; at 9 s
/// nodes 3, 2, 1 (the first `killed` of them) crash at once; until 27 s the survivors probe
/// their keys (read-only and read-then-write transactions). Checked by [`check_kill`]: the
/// outcomes `PROTOCOLS.md` gives for `killed` dead nodes, never a wrong answer; and
/// atomicity and the leases at the replicas.
fn kill_with(name: &str, killed: usize, flaw: Option<TxFlaw>, board: TxBoard) -> Scenario {
    let survivors = 4 - killed;
    let mut s = Scenario::new(name).until(at(KILL_END));
    for (n, t) in [0.0, 0.3, 0.6, 0.9].into_iter().enumerate() {
        let b = board.clone();
        s = s.start_nodes(at(t), 1, move |h| {
            debug_assert_eq!(h.index(), n);
            build_node(h, &b, flaw, Workload::Probes { survivors })
        });
    }
    let b = board.clone();
    s = s.at(at(KILL_AT), format!("crash {killed} of 4 nodes"), move |run| {
        let nodes = b.nodes.lock().expect("not poisoned");
        for i in (survivors..4).rev() {
            let victim = *nodes.get(&i).ok_or("a node is missing")?;
            run.sim.crash(victim).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let s = watched(s, &board, KILL_END);
    let b = board.clone();
    s.check_at_end("kill test outcomes", move |_| {
        let log = b.kill.lock().expect("not poisoned");
        let abstain = ReplicationConfig::default().max_lease;
        let summary = check_kill(killed, &log, at(KILL_AT), KILL_SETTLE, abstain)?;
        if std::env::var_os("SELFMAN_TX_REPORT").is_some() {
            eprintln!("tx-kill-{killed}: {summary}");
        }
        Ok(())
    })
}

/// The kill test's log of a run of `name`, for tests.
pub fn kill_report(name: &str, seed: u64) -> Option<(selfman_sim::Outcome, KillLog)> {
    let (killed, flaw) = match name {
        "tx-kill-1" => (1, None),
        "tx-kill-2" => (2, None),
        "tx-kill-3" => (3, None),
        "tx-kill-2-broken" => (2, Some(TxFlaw::CommitsWithoutMajority)),
        _ => return None,
    };
    let board = TxBoard::default();
    let out = kill_with(name, killed, flaw, board.clone()).run_quiet(seed);
    let log = board.kill.lock().expect("not poisoned").clone();
    Some((out, log))
}

/// `tx-kill-1`: one of 4 nodes killed: reads and writes commit once the replicas are rebuilt.
pub fn tx_kill_1() -> Scenario {
    kill_with("tx-kill-1", 1, None, TxBoard::default())
}

/// `tx-kill-2`: two of 4 killed: reads answer the last committed value or fail, no write
/// commits.
pub fn tx_kill_2() -> Scenario {
    kill_with("tx-kill-2", 2, None, TxBoard::default())
}

/// `tx-kill-3`: three of 4 killed: reads fail, no write commits.
pub fn tx_kill_3() -> Scenario {
    kill_with("tx-kill-3", 3, None, TxBoard::default())
}

/// `tx-kill-2-broken`: `tx-kill-2` with a TM that takes an item as prepared when one replica
/// is (`CommitsWithoutMajority`): writes commit without a majority, the kill check must fail.
pub fn tx_kill_2_broken() -> Scenario {
    kill_with("tx-kill-2-broken", 2, Some(TxFlaw::CommitsWithoutMajority), TxBoard::default())
}
