//! Transactions over the full stack: on each node the heartbeat failure detector, the relaxed
//! ring at the node's placed position, symmetric replication (f = 4) and the transaction
//! layer, sharing one ring ([`Payload`]), plus a bank client.
//!
//! * `tx-bank`: 4 nodes on 4 hosts; from 4 s every node's client runs transfers between 8
//!   accounts (read two, write two, retry on abort); node 3 crashes at 10 s (its TMs, rTMs
//!   and participants with it); transfers stop at 20 s and an audit transaction reads every
//!   account. Checked: the total is 0 (Scalaris' bank test: a transfer is atomic and
//!   serializable, or the sum drifts), the audit committed, every transfer of a live client
//!   ended, and transfers did commit.
//! * `tx-bank-broken`: the same with participants that skip the version check
//!   (`Flaw::SkipsVersionCheck`): concurrent transfers lose updates and the total drifts.

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

use crate::checkers::transactions::{check_bank, BankLog};

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
    let i = h.index();
    let host = HostId(i as u32);
    let id = Placement::new(F).join_position(host, 0, i as u64);
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
    let log = board.log.clone();
    let client = h.create(move || Bank::new(me, i, log.clone()))?;
    h.system().connect(&tx.provided::<Transactions>()?, &client.required::<Transactions>()?)?;
    h.system().connect(&h.timer()?, &client.required::<Timer>()?)?;
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
    /// A transfer of `amount` from `from` to `to`, try `tries`, at stage `stage`.
    Transfer {
        from: u64,
        to: u64,
        amount: i64,
        tries: u32,
        stage: u8,
        since: Time,
    },
    /// The audit, with the values read so far.
    Audit {
        read: Vec<i64>,
        since: Time,
    },
}

/// A bank client: transfers between random accounts, retrying on abort; node 0's client
/// also runs the audit.
struct Bank {
    ctx: Context,
    me: NodeAddr,
    index: usize,
    tx: Required<Transactions>,
    timer: Required<Timer>,
    step: Step,
    handle: u64,
    log: Arc<Mutex<BankLog>>,
    audited: bool,
}

/// Tries of one transfer before it is given up.
const TRIES: u32 = 30;

impl Bank {
    fn new(me: NodeAddr, index: usize, log: Arc<Mutex<BankLog>>) -> Bank {
        Bank {
            ctx: Context::new(),
            me,
            index,
            tx: Required::new(),
            timer: Required::new(),
            step: Step::Idle,
            handle: 0,
            log,
            audited: false,
        }
    }

    fn begin(&mut self) {
        let now = self.ctx.now();
        self.log.lock().expect("not poisoned").open.insert(self.me, now);
        self.handle += 1;
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
            self.step = Step::Transfer { from, to, amount, tries: 1, stage: 0, since: now };
            self.begin();
        }
        Ok(())
    }

    fn next(&mut self) {
        let h = TxHandle(self.handle);
        match &mut self.step {
            Step::Transfer { from, to, amount, stage, .. } => {
                *stage += 1;
                let req = match *stage {
                    1 => TxRequest::AddToNumber { handle: h, key: account(*from), delta: -*amount },
                    2 => TxRequest::AddToNumber { handle: h, key: account(*to), delta: *amount },
                    _ => TxRequest::Commit { handle: h },
                };
                self.tx.trigger(req);
            }
            Step::Audit { read, .. } => {
                let n = read.len() as u64;
                let req = if n < ACCOUNTS {
                    TxRequest::Read { handle: h, key: account(n) }
                } else {
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
        self.ended(result);
    }

    fn ended(&mut self, result: TxResult) {
        let now = self.ctx.now();
        let step = std::mem::replace(&mut self.step, Step::Idle);
        let mut log = self.log.lock().expect("not poisoned");
        log.open.remove(&self.me);
        match step {
            Step::Transfer { from, to, amount, tries, since, .. } => match result {
                TxResult::Ok => log.committed(self.me, now.duration_since(since)),
                TxResult::Timeout => log.timeouts += 1,
                _ if tries < TRIES && now < at(STOP) => {
                    log.aborts += 1;
                    drop(log);
                    self.step =
                        Step::Transfer { from, to, amount, tries: tries + 1, stage: 0, since };
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
                r => self.ended(r),
            },
            TxIndication::OpDone { handle, result, .. } if handle.0 == self.handle => {
                match result {
                    TxResult::Ok => self.next(),
                    r => self.failed(r),
                }
            }
            TxIndication::ReadDone { handle, result, value, .. } if handle.0 == self.handle => {
                let n = match (result, value) {
                    (TxResult::Ok, Some(v)) => String::from_utf8_lossy(&v).parse::<i64>().ok(),
                    (TxResult::NotFound, _) => Some(0),
                    _ => None,
                };
                match (n, &mut self.step) {
                    (Some(n), Step::Audit { read, .. }) => {
                        read.push(n);
                        self.next();
                    }
                    _ => self.failed(TxResult::Timeout),
                }
            }
            TxIndication::Committed { handle, result, .. } if handle.0 == self.handle => {
                self.ended(result)
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
        check_bank(&log, &alive)
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
