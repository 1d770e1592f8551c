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
//!
//! **Fast reads.** A job that only reads one key (`GET`, `STRLEN`, `EXISTS k`, `TYPE`,
//! `SMEMBERS`, …) and watches nothing first tries a *fast read* ([`fast_read_decision`]): it
//! reads the key's record at all `f` replicas ([`ReplicaOp::Read`], no transaction) and answers
//! once a majority answered, **if** every answer has the same version and none of them is
//! write-locked. Then the answer is linearizable without a commit: a write acknowledged before
//! the read started holds a write lock or its new version at a majority of the replicas until
//! it is applied, and that majority shares a replica with the read's; and a majority now holds
//! the version read, so any later read sees it or a newer one (replicas never go back). In
//! every other case (answers differ, a write lock, a failure) the job runs as a transaction as
//! above. One edge stays: a write whose commit reaches a replica only after its lock's lease
//! (seconds) ran out.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use selfman_core::{
    ComponentDefinition, Handled, Port, Provided, Required, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    has_flaw, KeyEvent, LockMode, Rejection, ReplicaOp, ReplicaOutcome, Replication,
    ReplicationIndication, ReplicationRequest, Transactions, TxHandle, TxIndication, TxRequest,
    TxResult, Version,
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

/// The port connections subscribe to key changes on (keyspace notifications).
#[derive(Debug)]
pub struct NotifyService;

impl Port for NotifyService {
    type Request = NotifyRequest;
    type Indication = NoIndication;
}

/// A connection's subscription change.
#[derive(Debug, Clone)]
pub enum NotifyRequest {
    /// Tell connection `conn` of every committed change of `key` through `to`.
    Subscribe {
        /// The connection's id.
        conn: u64,
        /// The key.
        key: Key,
        /// Where the changes go.
        to: Sender<KeyChange>,
    },
    /// Stop telling connection `conn` of `key`.
    Unsubscribe {
        /// The connection's id.
        conn: u64,
        /// The key.
        key: Key,
    },
}

/// A committed change of a subscribed key, once per version (several replicas tell it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The key.
    pub key: Key,
    /// Its new record (`None`: deleted).
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Subscribers {
    conns: HashMap<u64, Sender<KeyChange>>,
    /// The newest version told.
    version: Version,
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
    pub reply: Replier,
}

/// Where a [`Job`]'s outcome goes.
#[derive(Clone)]
pub enum Replier {
    /// Into a channel the submitter reads.
    Channel(Sender<Done>),
    /// To a function, called on the backend's thread as the job finishes. It must not block
    /// for long: the backend's other work waits meanwhile.
    Call(Arc<dyn Fn(Done) + Send + Sync>),
}

impl Replier {
    /// Hands `done` over; an answer nobody waits for any more is dropped.
    pub fn send(&self, done: Done) {
        match self {
            Replier::Channel(to) => {
                let _ = to.send(done);
            }
            Replier::Call(f) => f(done),
        }
    }
}

impl From<Sender<Done>> for Replier {
    fn from(to: Sender<Done>) -> Replier {
        Replier::Channel(to)
    }
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Replier::Channel(_) => "Replier::Channel",
            Replier::Call(_) => "Replier::Call",
        })
    }
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
    /// A fast read answers the highest version a majority answered with even when the answers
    /// differ or a write lock is held (a plain quorum read): a read after an acknowledged
    /// write can miss it, and two reads can see a write in the wrong order.
    FastReadTrustsAnyMajority,
}

/// The backend's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// Attempts of one job before a conflict is answered as an error (default 64).
    pub max_attempts: u32,
    /// The longest back-off between attempts (default 200 ms); the n-th waits a random time
    /// up to `min(2ⁿ ms, max_backoff)`.
    pub max_backoff: Duration,
    /// Replicas per key (`f`, default 4), as the node's replication layer runs with: a fast
    /// read asks this many replicas.
    pub replicas: u32,
    /// Whether single-key reads try a fast read first (default true). Needs the backend's
    /// [`Replication`] port connected (`StoreNode::connect_backend`); without it, set false.
    pub fast_reads: bool,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            max_attempts: 64,
            max_backoff: Duration::from_millis(200),
            replicas: 4,
            fast_reads: true,
        }
    }
}

/// The high bit of the tags of the backend's fast reads on the [`Replication`] port: the
/// replication layer's answers reach every user of the port, so the node's wiring keeps the
/// answers with this bit away from the transaction layer ([`is_fast_read_answer`]).
pub const FAST_READ_TAG_MARK: u64 = 1 << 63;

/// Whether `i` answers one of the backend's fast reads (its tag has [`FAST_READ_TAG_MARK`]).
pub fn is_fast_read_answer(i: &ReplicationIndication) -> bool {
    match i {
        ReplicationIndication::ReplicaDone { tag, .. }
        | ReplicationIndication::ReadDone { tag, .. } => tag & FAST_READ_TAG_MARK != 0,
        _ => false,
    }
}

/// One replica's answer to a fast read: its record's version, value and strongest live lock.
pub type ReplicaRecord = (Version, Option<Vec<u8>>, Option<LockMode>);

/// What a fast read does with the answers so far (`answers[i]`: replica `i`'s record, if it
/// answered; `failed`: replicas that answered with an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastRead {
    /// Not enough answers yet.
    Wait,
    /// Safe to answer without a transaction: the record (`None`: absent).
    Answer(Option<Vec<u8>>),
    /// Not safe (answers differ, a write lock, too many failures): run a transaction.
    Fallback,
}

/// The fast-read rule: answer once a majority (`f/2 + 1`) answered iff all of those answers
/// have one version and none is write-locked; fall back as soon as that cannot happen.
pub fn fast_read_decision(answers: &[Option<ReplicaRecord>], failed: u32) -> FastRead {
    let f = answers.len() as u32;
    let majority = f / 2 + 1;
    let got: Vec<&ReplicaRecord> = answers.iter().flatten().collect();
    if failed > f - majority {
        return FastRead::Fallback;
    }
    if let Some(first) = got.first() {
        let agree = got.iter().all(|(v, _, lock)| *v == first.0 && *lock != Some(LockMode::Write));
        if !agree {
            return FastRead::Fallback;
        }
    }
    if (got.len() as u32) < majority {
        return FastRead::Wait;
    }
    FastRead::Answer(got[0].1.clone())
}

/// The flawed rule (a plain quorum read): the highest version among a majority, whatever the
/// others and the locks say.
#[cfg(feature = "flaws")]
fn flawed_fast_read_decision(answers: &[Option<ReplicaRecord>], failed: u32) -> FastRead {
    let f = answers.len() as u32;
    let majority = f / 2 + 1;
    if failed > f - majority {
        return FastRead::Fallback;
    }
    let got: Vec<&ReplicaRecord> = answers.iter().flatten().collect();
    if (got.len() as u32) < majority {
        return FastRead::Wait;
    }
    let best = got.iter().max_by_key(|r| r.0).map(|r| r.1.clone()).unwrap_or(None);
    FastRead::Answer(best)
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
    /// Jobs answered by a fast read (no transaction).
    pub fast_reads: AtomicU64,
    /// Fast reads that fell back to a transaction.
    pub fast_read_fallbacks: AtomicU64,
    /// Key changes told to subscribed connections.
    pub notifications: AtomicU64,
    /// Replies written to the client on the backend's thread, the connection's thread having
    /// handed its reply queue over (see `server`'s module documentation).
    pub replies_written: AtomicU64,
    /// Jobs answered with an error because the transaction layer did not answer in time: a
    /// commit whose outcome is unknown, or reads without a majority (part of `failed`).
    pub timed_out: AtomicU64,
    /// Seconds from a job's arrival to its commit, over the jobs that committed (retries and
    /// back-off included).
    pub commit_latency: selfman_ops::metrics::Histogram,
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
    /// When the job arrived.
    since: std::time::Instant,
    keys: Vec<Key>,
    view: View,
    step: Step,
    attempt: u32,
}

/// A fast read in flight: the job, and one slot per replica.
#[derive(Debug)]
struct Pending {
    run: Running,
    answers: Vec<Option<ReplicaRecord>>,
    failed: u32,
}

/// The backend component: provides [`StoreService`], requires [`Transactions`], [`Timer`] and
/// [`Replication`] (for fast reads).
pub struct Backend {
    tx: Required<Transactions>,
    repl: Required<Replication>,
    timer: Required<Timer>,
    port: Provided<StoreService>,
    notify: Provided<NotifyService>,
    subs: HashMap<Key, Subscribers>,
    config: BackendConfig,
    stats: Arc<BackendStats>,
    running: HashMap<TxHandle, Running>,
    waiting: HashMap<u64, Running>,
    fast: HashMap<u64, Pending>,
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
            repl: Required::new(),
            timer: Required::new(),
            port: Provided::new(),
            notify: Provided::new(),
            subs: HashMap::new(),
            config,
            stats,
            running: HashMap::new(),
            waiting: HashMap::new(),
            fast: HashMap::new(),
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
        let keys: Vec<Key> = keys.into_iter().collect();
        let since = std::time::Instant::now();
        let r = Running { job, since, keys, view: View::new(), step: Step::Begin, attempt: 0 };
        let read_only = r.job.watched.is_empty() && r.job.ops.iter().all(|op| !op.is_write());
        if self.config.fast_reads && read_only && r.keys.len() == 1 && self.config.replicas > 0 {
            let id = self.next;
            self.next += 1;
            let key = r.keys[0].clone();
            for replica in 0..self.config.replicas {
                self.repl.trigger(ReplicationRequest::AtReplica {
                    key: key.clone(),
                    replica,
                    op: ReplicaOp::Read,
                    tag: FAST_READ_TAG_MARK | id,
                });
            }
            let answers = vec![None; self.config.replicas as usize];
            self.fast.insert(id, Pending { run: r, answers, failed: 0 });
        } else {
            self.start(r);
        }
        Ok(())
    }

    fn on_notify_request(&mut self, r: NotifyRequest) -> Handled {
        match r {
            NotifyRequest::Subscribe { conn, key, to } => {
                let subs = self.subs.entry(key.clone()).or_default();
                if subs.conns.is_empty() {
                    self.tx.trigger(TxRequest::Subscribe { key });
                }
                subs.conns.insert(conn, to);
            }
            NotifyRequest::Unsubscribe { conn, key } => self.drop_subscriber(&key, conn),
        }
        Ok(())
    }

    fn drop_subscriber(&mut self, key: &[u8], conn: u64) {
        if let Some(subs) = self.subs.get_mut(key) {
            subs.conns.remove(&conn);
            if subs.conns.is_empty() {
                self.subs.remove(key);
                self.tx.trigger(TxRequest::Unsubscribe { key: key.to_vec() });
            }
        }
    }

    /// A committed change of a subscribed key: told once per version, to every connection
    /// still there (a connection gone is dropped).
    fn on_key_event(&mut self, e: KeyEvent) {
        let KeyEvent::Changed { key, version, value } = e else { return };
        let Some(subs) = self.subs.get_mut(&key) else { return };
        if version <= subs.version {
            return;
        }
        subs.version = version;
        let change = KeyChange { key: key.clone(), value };
        let gone: Vec<u64> = subs
            .conns
            .iter()
            .filter(|(_, to)| to.send(change.clone()).is_err())
            .map(|(c, _)| *c)
            .collect();
        self.stats.notifications.fetch_add(1, Ordering::Relaxed);
        for conn in gone {
            self.drop_subscriber(&key, conn);
        }
    }

    fn on_replication(&mut self, i: ReplicationIndication) -> Handled {
        let ReplicationIndication::ReplicaDone { replica, tag, result, .. } = i else {
            return Ok(());
        };
        let id = tag & !FAST_READ_TAG_MARK;
        // Answers after the decision (the replicas beyond the majority) find nothing.
        let Some(p) = self.fast.get_mut(&id) else { return Ok(()) };
        match p.answers.get_mut(replica as usize) {
            Some(slot @ None) => match result {
                Ok((_, ReplicaOutcome::Record { version, value, lock })) => {
                    *slot = Some((version, value, lock));
                }
                _ => p.failed += 1,
            },
            // A second answer for one replica, or a replica number out of range: ignored.
            _ => {
                self.stats.stray.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        #[cfg(feature = "flaws")]
        let decision = if has_flaw!(self, FastReadTrustsAnyMajority) {
            flawed_fast_read_decision(&p.answers, p.failed)
        } else {
            fast_read_decision(&p.answers, p.failed)
        };
        #[cfg(not(feature = "flaws"))]
        let decision = fast_read_decision(&p.answers, p.failed);
        match decision {
            FastRead::Wait => {}
            FastRead::Fallback => {
                let p = self.fast.remove(&id).expect("looked up above");
                self.stats.fast_read_fallbacks.fetch_add(1, Ordering::Relaxed);
                self.start(p.run);
            }
            FastRead::Answer(record) => {
                let mut r = self.fast.remove(&id).expect("looked up above").run;
                let key = r.keys[0].clone();
                r.view.insert_read(key, record);
                let mut scratch = r.view.clone();
                let replies: Vec<Reply> =
                    r.job.ops.iter().map(|op| data::run(op, &mut scratch)).collect();
                if scratch.writes().is_empty() {
                    self.stats.fast_reads.fetch_add(1, Ordering::Relaxed);
                    self.finish(r, Ok(replies));
                } else {
                    // A read-only command never changes the view; if one did, be safe.
                    self.stats.fast_read_fallbacks.fetch_add(1, Ordering::Relaxed);
                    self.start(r);
                }
            }
        }
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
            Ok(_) if r.attempt == 0 => 0, // a fast read: nothing committed
            Ok(_) => {
                self.stats.commit_latency.observe_duration(r.since.elapsed());
                self.stats.committed.fetch_add(1, Ordering::Relaxed)
            }
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
        r.job.reply.send(Done { result, observed });
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
            TxIndication::Notify(e) => {
                self.on_key_event(e);
                return Ok(());
            }
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
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                self.finish(r, Err(Failure::Error(Reply::error(UNKNOWN_OUTCOME))))
            }
            (step, TxResult::Timeout) => {
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
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
        s.require(|c| &mut c.repl, Self::on_replication);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.provide(|c| &mut c.port, Self::on_job);
        s.provide(|c| &mut c.notify, Self::on_notify_request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: u64, value: &str, lock: Option<LockMode>) -> Option<ReplicaRecord> {
        Some((Version(v), Some(value.as_bytes().to_vec()), lock))
    }

    #[test]
    fn a_majority_of_equal_unlocked_answers_is_answered() {
        let a = [rec(3, "x", None), rec(3, "x", Some(LockMode::Read)), None, rec(3, "x", None)];
        assert_eq!(fast_read_decision(&a, 0), FastRead::Answer(Some(b"x".to_vec())));
        let absent = vec![Some((Version(0), None, None)); 3];
        assert_eq!(fast_read_decision(&absent, 0), FastRead::Answer(None));
    }

    #[test]
    fn fewer_than_a_majority_waits() {
        assert_eq!(
            fast_read_decision(&[rec(3, "x", None), rec(3, "x", None), None, None], 1),
            FastRead::Wait
        );
        assert_eq!(fast_read_decision(&[None, None, None, None], 0), FastRead::Wait);
    }

    #[test]
    fn differing_versions_a_write_lock_or_too_many_failures_fall_back() {
        let differ = [rec(3, "x", None), rec(4, "y", None), None, None];
        assert_eq!(fast_read_decision(&differ, 0), FastRead::Fallback);
        // The write being committed holds its lock at the replicas that have not applied it.
        let locked = [rec(3, "x", Some(LockMode::Write)), None, None, None];
        assert_eq!(fast_read_decision(&locked, 0), FastRead::Fallback);
        assert_eq!(
            fast_read_decision(&[rec(3, "x", None), None, None, None], 2),
            FastRead::Fallback
        );
        // f = 3: a majority is 2, one failure is allowed.
        assert_eq!(fast_read_decision(&[rec(1, "x", None), None, None], 1), FastRead::Wait);
        assert_eq!(fast_read_decision(&[rec(1, "x", None), None, None], 2), FastRead::Fallback);
    }

    #[cfg(feature = "flaws")]
    #[test]
    fn the_flawed_rule_answers_where_the_rule_falls_back() {
        let differ =
            [rec(3, "x", None), rec(4, "y", None), rec(3, "x", Some(LockMode::Write)), None];
        assert_eq!(fast_read_decision(&differ, 0), FastRead::Fallback);
        assert_eq!(flawed_fast_read_decision(&differ, 0), FastRead::Answer(Some(b"y".to_vec())));
    }
}
