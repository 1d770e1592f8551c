//! The backend: the component that carries out the front door's data commands as
//! transactions of the [`Transactions`] port.
//!
//! A [`Job`] is one transaction's worth of work: the operations of one command or of one
//! `MULTI`/`EXEC` block, with the watched keys' expected records. Its run, per attempt:
//!
//! ```text
//!  Begin ─▶ Read k₁ … Read kₙ ─▶ (watched record ≠ expected? ─▶ Abort ─▶ WatchedKeyChanged)
//!        ─▶ data::run each op ─▶ Write each changed key ─▶ Commit ─┬▶ Ok: the replies
//!                                                                    ├▶ Abort: again, after a
//!                                                                    │  random back-off (bounded)
//!                                                                    └▶ Timeout: outcome unknown
//! ```
//!
//! Every key of the job is read once, in key order (the reads are majority reads; the commit
//! checks their versions), so a job's replies come from one serializable state, read-only
//! jobs included: they commit too. A conflict never reaches the client until
//! [`BackendConfig::max_attempts`] are used.
//!
//! Each attempt is a new transaction handle; an indication for a handle no job holds (a late
//! answer) is counted and dropped.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use selfman_core::{
    ComponentDefinition, Handled, Port, Provided, Required, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    has_flaw, Rejection, Transactions, TxHandle, TxIndication, TxRequest, TxResult,
};

use crate::command::{Key, Op};
use crate::data::{self, View};
use crate::resp::Reply;

/// The port the front door submits [`Job`]s on.
#[derive(Debug)]
pub struct StoreService;

/// Nothing: a job answers through its own channel.
#[derive(Debug, Clone)]
pub enum NoIndication {}

impl Port for StoreService {
    type Request = Job;
    type Indication = NoIndication;
}

/// What a watched key was when the client last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The record's bytes (`None`: absent); the `EXEC` runs only if the key still holds them.
    Record(Option<Vec<u8>>),
    /// The client's own command changed it since `WATCH`: the `EXEC` fails, as in Redis.
    Broken,
}

/// One transaction's worth of work.
#[derive(Debug, Clone)]
pub struct Job {
    /// The operations, in order; each must name keys ([`data::is_key_op`]).
    pub ops: Vec<Op>,
    /// Watched keys and what they must still hold.
    pub watched: Vec<(Key, Expect)>,
    /// Where the outcome goes.
    pub reply: Sender<Done>,
}

/// Why a job did nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A watched key holds something else than expected.
    WatchedKeyChanged,
    /// The transaction layer could not carry it out; the error reply to give.
    Error(Reply),
}

/// A job's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// One reply per operation, or why nothing was done.
    pub result: Result<Vec<Reply>, Failure>,
    /// The records read by the attempt that decided (`None`: absent), for the connection's
    /// watched keys.
    pub observed: Vec<(Key, Option<Vec<u8>>)>,
}

/// A deliberate mistake of the backend, for showing that the tests' checks catch it (feature
/// `flaws`, test builds only: `docs/decisions/011-deliberate-bugs-are-test-only.md`).
#[cfg(feature = "flaws")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// `EXEC` runs its block even when a watched key changed: check-and-set clients then
    /// write values computed from stale reads (lost updates).
    IgnoresWatch,
}

/// The backend's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// Attempts of one job before a conflict is answered as an error (default 64).
    pub max_attempts: u32,
    /// The longest back-off between attempts (default 200 ms); the n-th waits a random time
    /// up to `min(2ⁿ ms, max_backoff)`.
    pub max_backoff: Duration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig { max_attempts: 64, max_backoff: Duration::from_millis(200) }
    }
}

/// Counters, shared with `INFO`.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Jobs whose transaction committed.
    pub committed: AtomicU64,
    /// Attempts whose commit aborted (and were retried or failed).
    pub aborted: AtomicU64,
    /// `EXEC`s answered null because a watched key changed.
    pub watch_failed: AtomicU64,
    /// Jobs answered with an error (retries exhausted, timeouts, refusals).
    pub failed: AtomicU64,
    /// Indications for a handle no job holds, dropped.
    pub stray: AtomicU64,
}

#[derive(Debug)]
enum Step {
    Begin,
    Reading(usize),
    Writing(Vec<(Key, Option<Vec<u8>>)>, Vec<Reply>),
    Committing(Vec<Reply>),
    /// Aborting after a watched key changed.
    Abandoning,
}

#[derive(Debug)]
struct Running {
    job: Job,
    keys: Vec<Key>,
    view: View,
    step: Step,
    attempt: u32,
}

/// The backend component: provides [`StoreService`], requires [`Transactions`] and [`Timer`].
pub struct Backend {
    tx: Required<Transactions>,
    timer: Required<Timer>,
    port: Provided<StoreService>,
    config: BackendConfig,
    stats: Arc<BackendStats>,
    running: HashMap<TxHandle, Running>,
    waiting: HashMap<u64, Running>,
    next: u64,
    seed: u64,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

impl Backend {
    /// A backend with these bounds, counting into `stats`.
    pub fn new(config: BackendConfig, stats: Arc<BackendStats>) -> Backend {
        Backend {
            tx: Required::new(),
            timer: Required::new(),
            port: Provided::new(),
            config,
            stats,
            running: HashMap::new(),
            waiting: HashMap::new(),
            next: 1,
            seed: 0x9e37_79b9_7f4a_7c15,
            #[cfg(feature = "flaws")]
            flaw: None,
        }
    }

    /// This backend with the deliberate mistake `flaw` (feature `flaws`, tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Option<Flaw>) -> Backend {
        self.flaw = flaw;
        self
    }

    fn on_job(&mut self, job: Job) -> Handled {
        let mut keys: BTreeSet<Key> = job.watched.iter().map(|(k, _)| k.clone()).collect();
        for op in &job.ops {
            keys.extend(op.keys().into_iter().map(<[u8]>::to_vec));
        }
        let keys = keys.into_iter().collect();
        self.start(Running { job, keys, view: View::new(), step: Step::Begin, attempt: 0 });
        Ok(())
    }

    fn start(&mut self, mut r: Running) {
        let handle = TxHandle(self.next);
        self.next += 1;
        r.view = View::new();
        r.step = Step::Begin;
        r.attempt += 1;
        self.running.insert(handle, r);
        self.tx.trigger(TxRequest::Begin { handle });
    }

    fn finish(&mut self, r: Running, result: Result<Vec<Reply>, Failure>) {
        match &result {
            Ok(_) => self.stats.committed.fetch_add(1, Ordering::Relaxed),
            Err(Failure::WatchedKeyChanged) => {
                self.stats.watch_failed.fetch_add(1, Ordering::Relaxed)
            }
            Err(Failure::Error(_)) => self.stats.failed.fetch_add(1, Ordering::Relaxed),
        };
        let observed = r
            .keys
            .iter()
            .filter(|k| r.view.has(k))
            .map(|k| (k.clone(), r.view.read_of(k)))
            .collect();
        // A connection that is gone no longer waits for its answer.
        let _ = r.job.reply.send(Done { result, observed });
    }

    fn fail(&mut self, handle: TxHandle, r: Running, error: Reply, abort: bool) {
        if abort {
            self.tx.trigger(TxRequest::Abort { handle });
        }
        self.finish(r, Err(Failure::Error(error)));
    }

    /// A failed attempt that may succeed again: after a back-off, unless the bound is used.
    fn retry(&mut self, r: Running, why: Reply) {
        if r.attempt >= self.config.max_attempts {
            return self.finish(r, Err(Failure::Error(why)));
        }
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let cap =
            (1u64 << r.attempt.min(20)).min(self.config.max_backoff.as_millis() as u64).max(1);
        let wait = Duration::from_micros(self.seed % (cap * 1000));
        let id = self.next;
        self.next += 1;
        self.waiting.insert(id, r);
        self.timer.schedule_once(TimerId(id), wait);
    }

    fn on_timeout(&mut self, t: Timeout) -> Handled {
        if let Some(r) = self.waiting.remove(&t.id.0) {
            self.start(r);
        }
        Ok(())
    }

    /// Sends the next read, or checks the watch and runs the operations once all are read.
    fn advance(&mut self, handle: TxHandle, mut r: Running, next_read: usize) {
        if let Some(key) = r.keys.get(next_read).cloned() {
            r.step = Step::Reading(next_read);
            self.running.insert(handle, r);
            self.tx.trigger(TxRequest::Read { handle, key });
            return;
        }
        let changed = r.job.watched.iter().any(|(k, e)| match e {
            Expect::Broken => true,
            Expect::Record(bytes) => r.view.read_of(k) != *bytes,
        });
        if changed && !has_flaw!(self, IgnoresWatch) {
            r.step = Step::Abandoning;
            self.running.insert(handle, r);
            self.tx.trigger(TxRequest::Abort { handle });
            return;
        }
        let mut scratch = r.view.clone();
        let replies: Vec<Reply> = r.job.ops.iter().map(|op| data::run(op, &mut scratch)).collect();
        let writes = scratch.writes();
        r.view = scratch;
        self.write_next(handle, r, writes, replies);
    }

    fn write_next(
        &mut self,
        handle: TxHandle,
        mut r: Running,
        mut writes: Vec<(Key, Option<Vec<u8>>)>,
        replies: Vec<Reply>,
    ) {
        match writes.pop() {
            Some((key, value)) => {
                r.step = Step::Writing(writes, replies);
                self.running.insert(handle, r);
                self.tx.trigger(TxRequest::Write { handle, key, value });
            }
            None => {
                r.step = Step::Committing(replies);
                self.running.insert(handle, r);
                self.tx.trigger(TxRequest::Commit { handle });
            }
        }
    }

    fn on_indication(&mut self, i: TxIndication) -> Handled {
        let (handle, result, value) = match i {
            TxIndication::Begun { handle, result } => (handle, result, None),
            TxIndication::ReadDone { handle, result, value, .. } => (handle, result, value),
            TxIndication::OpDone { handle, result, .. } => (handle, result, None),
            TxIndication::Committed { handle, result, .. } => (handle, result, None),
            _ => return Ok(()),
        };
        let Some(mut r) = self.running.remove(&handle) else {
            self.stats.stray.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let step = std::mem::replace(&mut r.step, Step::Begin);
        match (step, result) {
            (Step::Abandoning, _) => self.finish(r, Err(Failure::WatchedKeyChanged)),
            (Step::Begin, TxResult::Ok) => self.advance(handle, r, 0),
            (Step::Reading(n), TxResult::Ok | TxResult::NotFound) => {
                let key = r.keys[n].clone();
                r.view.insert_read(key, value);
                self.advance(handle, r, n + 1);
            }
            (Step::Writing(writes, replies), TxResult::Ok) => {
                self.write_next(handle, r, writes, replies)
            }
            (Step::Committing(replies), TxResult::Ok) => self.finish(r, Ok(replies)),
            (Step::Committing(_), TxResult::Abort(_)) => {
                self.stats.aborted.fetch_add(1, Ordering::Relaxed);
                self.retry(r, Reply::error(CONFLICT));
            }
            (Step::Committing(_), TxResult::Timeout) => {
                self.finish(r, Err(Failure::Error(Reply::error(UNKNOWN_OUTCOME))))
            }
            (step, TxResult::Timeout) => {
                let abort = !matches!(step, Step::Begin);
                self.fail(handle, r, Reply::error(NO_MAJORITY), abort)
            }
            (step, TxResult::Rejected(why)) => {
                let abort = !matches!(step, Step::Begin | Step::Committing(_));
                match why {
                    Rejection::Overloaded | Rejection::NotInRing | Rejection::HandleInUse => {
                        if abort {
                            self.tx.trigger(TxRequest::Abort { handle });
                        }
                        self.retry(r, Reply::error(rejection_text(why)))
                    }
                    _ => self.fail(handle, r, Reply::error(rejection_text(why)), abort),
                }
            }
            (step, TxResult::Abort(_)) => {
                // A read or write found the transaction over (its lease ended): again.
                self.stats.aborted.fetch_add(1, Ordering::Relaxed);
                let _ = step;
                self.retry(r, Reply::error(CONFLICT))
            }
            (_, other) => {
                let text = format!("ERR unexpected answer of the transaction layer: {other:?}");
                self.fail(handle, r, Reply::error(text), true)
            }
        }
        Ok(())
    }
}

/// The reply when a command kept conflicting with others until its attempts ran out.
pub const CONFLICT: &str =
    "ERR transaction conflict: other transactions kept changing these keys; nothing was done";
/// The reply when a commit's outcome is not known in time.
pub const UNKNOWN_OUTCOME: &str =
    "ERR commit timed out: the outcome is unknown (read the keys to find out)";
/// The reply when no majority of a key's replicas answered a read.
pub const NO_MAJORITY: &str = "ERR no majority of the key's replicas answered in time";

fn rejection_text(why: Rejection) -> String {
    let text = match why {
        Rejection::Overloaded => "ERR the node is overloaded; try again",
        Rejection::NotInRing => "ERR this node is not in a ring yet; try again",
        Rejection::TooLarge => "ERR key or value too large for the store",
        _ => return format!("ERR the transaction layer refused the request ({why:?})"),
    };
    text.to_owned()
}

impl ComponentDefinition for Backend {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.tx, Self::on_indication);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.provide(|c| &mut c.port, Self::on_job);
    }
}
