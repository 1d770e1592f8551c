//! Checks of the transaction scenarios: Scalaris' bank invariant (the total of all accounts
//! never changes: every transfer is atomic and serializable, or the sum drifts), that the
//! audit committed, that every transaction of a live client ended, and that transfers did
//! commit (a run that commits nothing proves nothing). With `SELFMAN_TX_REPORT` set, the check
//! prints the run's figures to stderr.

use std::collections::BTreeMap;
use std::time::Duration;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{RingId, TxId};

/// What the bank clients of a run did.
#[derive(Clone, Debug, Default)]
pub struct BankLog {
    /// Committed transfers, by node.
    pub commits: BTreeMap<NodeAddr, u64>,
    /// Commit latencies (from the first try), for the report.
    pub latencies: Vec<Duration>,
    /// Tries that aborted and were retried.
    pub aborts: u64,
    /// Transfers whose commit timed out (outcome unknown; the total holds either way).
    pub timeouts: u64,
    /// Transfers given up after their tries.
    pub given_up: u64,
    /// The audit's total, once it committed.
    pub audit: Option<i64>,
    /// Audit tries that did not commit.
    pub audit_tries: u64,
    /// Clients with a transaction open, since when.
    pub open: BTreeMap<NodeAddr, Time>,
}

impl BankLog {
    /// A committed transfer at `node` that took `latency`.
    pub fn committed(&mut self, node: NodeAddr, latency: Duration) {
        *self.commits.entry(node).or_default() += 1;
        self.latencies.push(latency);
    }

    /// Committed transfers, all nodes.
    pub fn total_commits(&self) -> u64 {
        self.commits.values().sum()
    }
}

/// The bank's checks at the end of a run (`alive`: the nodes still running).
///
/// # Errors
///
/// The first check that fails, with the numbers.
pub fn check_bank(log: &BankLog, alive: &[NodeAddr]) -> Result<(), String> {
    let summary = format!(
        "{} committed, {} aborted tries, {} timeouts, {} given up, audit {:?} after {} retries",
        log.total_commits(),
        log.aborts,
        log.timeouts,
        log.given_up,
        log.audit,
        log.audit_tries
    );
    if std::env::var_os("SELFMAN_TX_REPORT").is_some() {
        let mut l = log.latencies.clone();
        l.sort();
        let p = |q: f64| l.get(((l.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default();
        eprintln!(
            "tx-bank: {summary}; latency p50 {:?} p99 {:?} max {:?}",
            p(0.5),
            p(0.99),
            p(1.0)
        );
    }
    match log.audit {
        None => return Err(format!("the audit never committed ({summary})")),
        Some(0) => {}
        Some(t) => {
            return Err(format!(
                "the accounts total {t}, not 0: money was made or lost ({summary})"
            ))
        }
    }
    if log.total_commits() < 10 {
        return Err(format!("too few transfers committed ({summary})"));
    }
    if let Some((n, since)) = log.open.iter().find(|(n, _)| alive.contains(n)) {
        return Err(format!("{n} has a transaction open since {since:?} ({summary})"));
    }
    Ok(())
}

/// One transaction of a register history: the value it saw at each key it read (`None`: the
/// key held nothing), and the unique value it wrote at each key it wrote. Every written key
/// is read first (the transaction layer reads a key's version before it buffers a write), so
/// a write's predecessor is the value its transaction read there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// A name for reports (node and sequence number, say).
    pub name: String,
    /// Key → value seen.
    pub reads: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Key → value written (unique in the history).
    pub writes: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The transactions of a run by outcome, for [`check_serializable`].
#[derive(Clone, Debug, Default)]
pub struct TxHistory {
    /// Told `Ok`.
    pub committed: Vec<TxRecord>,
    /// Told `Timeout`: committed or not. Taken as committed when another transaction saw or
    /// overwrote one of its values (then it must have committed), left out otherwise.
    pub unknown: Vec<TxRecord>,
    /// Told `Abort`: none of its values may ever be seen.
    pub aborted: Vec<TxRecord>,
    /// Commits asked for and not answered (yet, or ever: the client's node crashed), by
    /// name: like `unknown`.
    pub in_flight: BTreeMap<String, TxRecord>,
    /// When each ended transaction's client was told its outcome, by name (for the
    /// atomicity check's bound: [`ReplicaWatch`]).
    pub ended_at: BTreeMap<String, Time>,
}

impl TxHistory {
    /// The commit of `record` was asked for.
    pub fn committing(&mut self, record: &TxRecord) {
        self.in_flight.insert(record.name.clone(), record.clone());
    }

    /// `record` ended at `now`: as [`TxHistory::ended`], remembering when.
    pub fn ended_at(&mut self, record: TxRecord, committed: Option<bool>, now: Time) {
        self.ended_at.insert(record.name.clone(), now);
        self.ended(record, committed);
    }

    /// `record` ended: `Some(true)` committed, `Some(false)` aborted, `None` unknown.
    pub fn ended(&mut self, record: TxRecord, committed: Option<bool>) {
        self.in_flight.remove(&record.name);
        match committed {
            Some(true) => self.committed.push(record),
            Some(false) => self.aborted.push(record),
            None => self.unknown.push(record),
        }
    }
}

/// The kind of a dependency between two committed transactions (Adya's direct
/// serialization graph).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    /// `a` installed a value, `b` overwrote it (write-write).
    Ww,
    /// `a` installed a value, `b` read it (write-read).
    Wr,
    /// `a` read a value, `b` overwrote it (read-write, an anti-dependency).
    Rw,
}

/// Checks that the committed transactions of `history` are serializable: builds the direct
/// serialization graph (ww, wr and rw edges, from the unique written values and each write's
/// predecessor) and fails with the first cycle found, printed edge by edge. Also fails when a
/// transaction read a value an aborted transaction wrote (G1a, aborted read), or one nobody
/// wrote (garbage), and returns the number of edges otherwise.
///
/// # Errors
///
/// The violation, with the transactions involved.
pub fn check_serializable(history: &TxHistory) -> Result<usize, String> {
    // Unknown outcomes whose values were observed are committed.
    let mut observed: std::collections::BTreeSet<(&[u8], &[u8])> = Default::default();
    let unknown: Vec<&TxRecord> =
        history.unknown.iter().chain(history.in_flight.values()).collect();
    for t in history.committed.iter().chain(unknown.iter().copied()) {
        for (k, v) in &t.reads {
            if let Some(v) = v {
                observed.insert((k, v));
            }
        }
    }
    let mut txs: Vec<&TxRecord> = history.committed.iter().collect();
    txs.extend(
        unknown
            .iter()
            .copied()
            .filter(|t| t.writes.iter().any(|(k, v)| observed.contains(&(&k[..], &v[..])))),
    );
    let mut writer: BTreeMap<(&[u8], &[u8]), usize> = BTreeMap::new();
    for (i, t) in txs.iter().enumerate() {
        for (k, v) in &t.writes {
            if let Some(j) = writer.insert((k, v), i) {
                return Err(format!(
                    "value {:?} of {:?} written by {} and {}",
                    String::from_utf8_lossy(v),
                    String::from_utf8_lossy(k),
                    txs[j].name,
                    t.name
                ));
            }
        }
    }
    let aborted: BTreeMap<(&[u8], &[u8]), &str> = history
        .aborted
        .iter()
        .flat_map(|t| t.writes.iter().map(move |(k, v)| ((&k[..], &v[..]), t.name.as_str())))
        .collect();
    // Per key and value: the transactions that read it and those that overwrote it.
    let mut readers: BTreeMap<Seen<'_>, Vec<usize>> = BTreeMap::new();
    let mut overwriters: BTreeMap<Seen<'_>, Vec<usize>> = BTreeMap::new();
    for (i, t) in txs.iter().enumerate() {
        for (k, v) in &t.reads {
            let seen = v.as_deref();
            if let Some(v) = seen {
                if let Some(a) = aborted.get(&(&k[..], v)) {
                    return Err(format!(
                        "aborted read (G1a): {} read {:?}={:?}, written by aborted {a}",
                        t.name,
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    ));
                }
                if !writer.contains_key(&(&k[..], v)) && !is_initial(v) {
                    // Written by a transaction of unknown outcome that nobody else saw is
                    // impossible: this one saw it. So nobody wrote it.
                    return Err(format!(
                        "{} read {:?}={:?}, which no transaction wrote",
                        t.name,
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    ));
                }
            }
            if t.writes.contains_key(k) {
                overwriters.entry((k, seen)).or_default().push(i);
            } else {
                readers.entry((k, seen)).or_default().push(i);
            }
        }
    }
    let mut edges: Vec<(usize, usize, Dependency, Vec<u8>)> = Vec::new();
    for ((k, v), over) in &overwriters {
        let w = v.and_then(|v| writer.get(&(*k, v)).copied());
        for &b in over {
            if let Some(a) = w {
                edges.push((a, b, Dependency::Ww, k.to_vec()));
            }
            // Every other reader or overwriter of the same value read what `b` overwrote.
            let others = readers.get(&(*k, *v)).into_iter().flatten().chain(over.iter());
            for &r in others {
                if r != b {
                    edges.push((r, b, Dependency::Rw, k.to_vec()));
                }
            }
        }
    }
    for ((k, v), rs) in &readers {
        if let Some(a) = v.and_then(|v| writer.get(&(*k, v)).copied()) {
            for &r in rs {
                edges.push((a, r, Dependency::Wr, k.to_vec()));
            }
        }
    }
    let n = txs.len();
    let mut adj: Vec<Vec<(usize, Dependency, Vec<u8>)>> = vec![Vec::new(); n];
    for (a, b, d, k) in &edges {
        if a != b {
            adj[*a].push((*b, *d, k.clone()));
        }
    }
    if let Some(cycle) = find_cycle(&adj) {
        let mut s = String::from("not serializable, dependency cycle:");
        for (a, b, d, k) in cycle {
            s.push_str(&format!(
                " {} -{d:?}({})-> {};",
                txs[a].name,
                String::from_utf8_lossy(&k),
                txs[b].name
            ));
        }
        return Err(s);
    }
    Ok(edges.len())
}

/// A key and the value seen there (`None`: nothing).
type Seen<'a> = (&'a [u8], Option<&'a [u8]>);

/// Whether `v` is a value the scenario seeded before any transaction (never written by one).
fn is_initial(v: &[u8]) -> bool {
    v.starts_with(b"init")
}

/// A cycle of the graph `adj`, as its edges, if there is one (iterative depth-first search).
#[allow(clippy::type_complexity)]
fn find_cycle(
    adj: &[Vec<(usize, Dependency, Vec<u8>)>],
) -> Option<Vec<(usize, usize, Dependency, Vec<u8>)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; adj.len()];
    for root in 0..adj.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // The path: (node, index of its next edge to explore).
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnPath;
        while let Some(&mut (u, ref mut next)) = path.last_mut() {
            if let Some((v, _, _)) = adj[u].get(*next) {
                let v = *v;
                *next += 1;
                match mark[v] {
                    Mark::New => {
                        mark[v] = Mark::OnPath;
                        path.push((v, 0));
                    }
                    Mark::OnPath => {
                        // The cycle: from v's place on the path to u, then u → v.
                        let start = path.iter().position(|(x, _)| *x == v).unwrap_or(0);
                        let mut cycle = Vec::new();
                        for w in path[start..].windows(2) {
                            let (a, ia) = w[0];
                            let (b, _) = w[1];
                            let (_, d, k) = &adj[a][ia - 1];
                            cycle.push((a, b, *d, k.clone()));
                        }
                        let (_, d, k) = &adj[u][path.last().map_or(1, |p| p.1) - 1];
                        cycle.push((u, v, *d, k.clone()));
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[u] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

/// One replica of one item as a sample of a node's store shows it ([`ReplicaWatch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledReplica {
    /// The node holding it.
    pub node: NodeAddr,
    /// Its replica key.
    pub pos: RingId,
    /// The item's key.
    pub key: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Whether the node serves the range holding `pos` (answers for this replica).
    pub served: bool,
    /// Its prepared votes whose lease has not ended: the transaction and when the lease ends.
    pub locks: Vec<(TxId, Time)>,
}

/// The bounds a [`ReplicaWatch`] checks.
#[derive(Clone, Copy, Debug)]
pub struct WatchBounds {
    /// Replicas per item.
    pub f: u32,
    /// A committed write must be at a majority of its item's replicas within this time of
    /// the client's `Ok`.
    pub apply_within: Duration,
    /// The longest lease a vote may have (a vote's lease ends at most this long after it was
    /// first seen).
    pub lease: Duration,
    /// After the faults stop, every lock must be gone within this time of the later of the
    /// fault's end and the lock's first sighting (the liveness bound).
    pub resolve_within: Duration,
}

/// Where and when a value was first seen at a replica, and at which version.
type FirstSeen = (Time, NodeAddr, u64);

/// A lock as the watch follows it.
#[derive(Clone, Copy, Debug)]
struct LockSeen {
    first: Time,
    last: Time,
}

/// The atomicity and liveness checks over the simulator's global view of every node's replica
/// store, sampled during a run ([`ReplicaWatch::observe`]) and finished at its end
/// ([`ReplicaWatch::finish`]):
///
/// * *aborted nowhere*: no replica ever holds a value that only an aborted transaction wrote
///   (values are unique per transaction), nor one no transaction wrote;
/// * *committed at a majority*: within [`WatchBounds::apply_within`] of the client's `Ok`, a
///   majority of each written item's replicas (served replicas, one per replica key) hold the
///   transaction's value at its version, or a later version;
/// * each replica's version of a value is the one the history implies (the version read,
///   plus one);
/// * *no lock past its lease*: a prepared vote's lease ends at most [`WatchBounds::lease`]
///   after the vote was first seen;
/// * *liveness*: once the faults stopped ([`ReplicaWatch::quiet`]), every transaction's locks
///   are gone (decision applied, or lease over) within [`WatchBounds::resolve_within`] of the
///   later of the fault's end and the lock's first sighting.
#[derive(Clone, Debug, Default)]
pub struct ReplicaWatch {
    /// When the faults stopped (set by the scenario); no liveness bound before.
    pub quiet: Option<Time>,
    /// Each value seen at a replica: first seen when, where, at which version.
    values: BTreeMap<(Vec<u8>, Vec<u8>), FirstSeen>,
    /// Each lock seen, by node, replica key, item and transaction.
    locks: BTreeMap<(NodeAddr, RingId, Vec<u8>, TxId), LockSeen>,
    /// Committed transactions (by name) shown at a majority, with how long it took.
    applied: BTreeMap<String, Duration>,
    /// Samples taken.
    samples: u64,
    /// The longest a lock was held after the later of `quiet` and its first sighting, and
    /// which.
    worst_resolve: Duration,
    worst_lock: String,
}

/// What a run's [`ReplicaWatch`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchSummary {
    /// Samples taken.
    pub samples: u64,
    /// Distinct values seen at replicas.
    pub values: usize,
    /// Committed transactions found at a majority.
    pub applied: usize,
    /// The longest time from a client's `Ok` to a majority.
    pub worst_apply: Duration,
    /// Locks seen (node, replica, transaction).
    pub locks: usize,
    /// The longest a lock lasted after the faults stopped (see [`WatchBounds`]).
    pub worst_resolve: Duration,
}

impl ReplicaWatch {
    /// Takes the sample `replicas` of every live node's store at `now`, checking the
    /// committed transactions of `history` not yet found at a majority, the leases and (after
    /// [`ReplicaWatch::quiet`]) the liveness bound.
    ///
    /// # Errors
    ///
    /// The first violation, with the replicas concerned.
    pub fn observe(
        &mut self,
        now: Time,
        replicas: &[SampledReplica],
        history: &TxHistory,
        bounds: &WatchBounds,
    ) -> Result<(), String> {
        self.samples += 1;
        let mut served: BTreeMap<(&[u8], RingId), Vec<&SampledReplica>> = BTreeMap::new();
        for r in replicas {
            if let Some(v) = &r.value {
                self.values.entry((r.key.clone(), v.clone())).or_insert((now, r.node, r.version));
            }
            if r.served {
                served.entry((r.key.as_slice(), r.pos)).or_default().push(r);
            }
            for &(tx, expires) in &r.locks {
                if std::env::var("SELFMAN_TX_LOCK").is_ok_and(|t| t == format!("{}", tx.0)) {
                    eprintln!("{now:?} {} {:?} {:?} until {expires:?}", r.node, r.pos, r.key);
                }
                let seen = self
                    .locks
                    .entry((r.node, r.pos, r.key.clone(), tx))
                    .or_insert(LockSeen { first: now, last: now });
                seen.last = now;
                if expires.duration_since(seen.first) > bounds.lease + Duration::from_millis(1) {
                    return Err(format!(
                        "a lock past its lease: {tx:?} locks {} at {} (replica key {:?}) until \
                         {expires:?}, first seen at {:?}: more than the lease {:?}",
                        String::from_utf8_lossy(&r.key),
                        r.node,
                        r.pos,
                        seen.first,
                        bounds.lease
                    ));
                }
                if let Some(quiet) = self.quiet {
                    let from = quiet.max(seen.first);
                    let held = now.duration_since(from);
                    if held > self.worst_resolve {
                        self.worst_resolve = held;
                        self.worst_lock = format!(
                            "{tx:?} at {} {:?} {} first seen {:?} until {expires:?}",
                            r.node,
                            r.pos,
                            String::from_utf8_lossy(&r.key),
                            seen.first
                        );
                    }
                    if held > bounds.resolve_within {
                        return Err(format!(
                            "liveness: {tx:?} still locks {} at {} (replica key {:?}) at {now:?}, \
                             {held:?} after {from:?} (the later of the faults' end and its \
                             first sighting); the bound is {:?}",
                            String::from_utf8_lossy(&r.key),
                            r.node,
                            r.pos,
                            bounds.resolve_within
                        ));
                    }
                }
            }
        }
        let versions = Versions::new(history);
        let quorum = bounds.f as usize / 2 + 1;
        for t in &history.committed {
            if self.applied.contains_key(&t.name) {
                continue;
            }
            let Some(&told) = history.ended_at.get(&t.name) else { continue };
            let mut everywhere = true;
            let mut report = String::new();
            for (key, value) in &t.writes {
                let version = versions
                    .of(key, value)
                    .or_else(|| self.values.get(&(key.clone(), value.clone())).map(|&(_, _, v)| v));
                let home = RingId::of_key(key);
                let mut holding = 0;
                for i in 0..bounds.f {
                    let pos = home.replica(i, bounds.f);
                    let best = served
                        .get(&(key.as_slice(), pos))
                        .and_then(|rs| rs.iter().max_by_key(|r| r.version).copied());
                    let holds = best.is_some_and(|r| {
                        r.value.as_ref() == Some(value) || version.is_some_and(|v| r.version > v)
                    });
                    holding += usize::from(holds);
                    if !holds {
                        let what = best.map_or("none served".to_string(), |r| {
                            format!(
                                "v{} {}",
                                r.version,
                                String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"-"))
                            )
                        });
                        report.push_str(&format!(" {pos:?}: {what};"));
                    }
                }
                if holding < quorum {
                    everywhere = false;
                    report = format!(
                        "{} of {} replicas of {} hold {} (v{version:?}) or later:{report}",
                        holding,
                        bounds.f,
                        String::from_utf8_lossy(key),
                        String::from_utf8_lossy(value)
                    );
                    break;
                }
            }
            let waited = now.duration_since(told);
            if everywhere {
                self.applied.insert(t.name.clone(), waited);
            } else if waited > bounds.apply_within {
                return Err(format!(
                    "atomicity: {} committed (told at {told:?}) but {waited:?} later {report}",
                    t.name
                ));
            }
        }
        Ok(())
    }

    /// The lock that lasted longest after the faults stopped, for reports.
    pub fn worst_lock(&self) -> &str {
        &self.worst_lock
    }

    /// The checks at the end of a run (after its last sample), over the whole `history`.
    ///
    /// # Errors
    ///
    /// A value of an aborted transaction (or of none) seen at a replica, a version that is
    /// not the history's, a committed transaction never found at a majority, or (after
    /// [`ReplicaWatch::quiet`]) a lock still held at the last sample.
    pub fn finish(
        &self,
        end: Time,
        history: &TxHistory,
        bounds: &WatchBounds,
    ) -> Result<WatchSummary, String> {
        let versions = Versions::new(history);
        let aborted: BTreeMap<(&[u8], &[u8]), &str> = history
            .aborted
            .iter()
            .flat_map(|t| t.writes.iter().map(|(k, v)| ((k.as_slice(), v.as_slice()), &*t.name)))
            .collect();
        for ((key, value), &(at, node, version)) in &self.values {
            let (k, v) = (String::from_utf8_lossy(key), String::from_utf8_lossy(value));
            if let Some(name) = aborted.get(&(key.as_slice(), value.as_slice())) {
                return Err(format!(
                    "atomicity: {node} held {k} = {v} at {at:?}, a value only the aborted \
                     transaction {name} wrote"
                ));
            }
            match versions.writer.get(&(key.as_slice(), value.as_slice())) {
                None if !is_initial(value) => {
                    return Err(format!(
                        "{node} held {k} = {v} at {at:?}, a value no transaction wrote"
                    ))
                }
                Some(_) => {
                    if let Some(want) = versions.of(key, value) {
                        if want != version {
                            return Err(format!(
                                "{node} held {k} = {v} at version {version} at {at:?}; the \
                                 history puts it at version {want}"
                            ));
                        }
                    }
                }
                None => {}
            }
        }
        for t in &history.committed {
            let told = history.ended_at.get(&t.name).copied();
            let late = told.is_some_and(|t| end.duration_since(t) <= bounds.apply_within);
            if !t.writes.is_empty() && !late && !self.applied.contains_key(&t.name) {
                return Err(format!(
                    "atomicity: {} committed (told at {told:?}) and was never found at a \
                     majority of its replicas",
                    t.name
                ));
            }
        }
        if let Some(quiet) = self.quiet {
            if let Some(((node, pos, key, tx), seen)) = self.locks.iter().find(|(_, s)| {
                end.duration_since(s.last) <= Duration::from_millis(100) && s.last > quiet
            }) {
                return Err(format!(
                    "liveness: {tx:?} still locks {} at {node} (replica key {pos:?}) at the end \
                     (first seen at {:?})",
                    String::from_utf8_lossy(key),
                    seen.first
                ));
            }
        }
        Ok(WatchSummary {
            samples: self.samples,
            values: self.values.len(),
            applied: self.applied.len(),
            worst_apply: self.applied.values().copied().max().unwrap_or_default(),
            locks: self.locks.len(),
            worst_resolve: self.worst_resolve,
        })
    }
}

/// The versions a history implies: a write's version is one more than the version of the
/// value its transaction read at the key (nothing read: version 0).
struct Versions<'a> {
    /// Each written value's transaction, by key and value.
    writer: BTreeMap<(&'a [u8], &'a [u8]), &'a TxRecord>,
}

impl<'a> Versions<'a> {
    fn new(history: &'a TxHistory) -> Versions<'a> {
        let all = history
            .committed
            .iter()
            .chain(&history.unknown)
            .chain(&history.aborted)
            .chain(history.in_flight.values());
        let writer = all
            .flat_map(|t| t.writes.iter().map(move |(k, v)| ((k.as_slice(), v.as_slice()), t)))
            .collect();
        Versions { writer }
    }

    /// The version at which `value` was written at `key`, if the history tells (not for a
    /// seeded value, nor one whose chain of predecessors leaves the history).
    fn of(&self, key: &[u8], value: &[u8]) -> Option<u64> {
        let mut version = 0u64;
        let mut value = value;
        // Walk back the chain of predecessors (at most one step per written value).
        for _ in 0..=self.writer.len() {
            let t = self.writer.get(&(key, value))?;
            version += 1;
            match t.reads.get(key) {
                None => return None,
                Some(None) => return Some(version),
                Some(Some(v)) => value = v,
            }
        }
        None
    }
}

/// How a probe of the kill test ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeEnd {
    /// Its commit was answered `Ok`.
    Committed,
    /// Its commit was answered `Timeout`: committed or not.
    Unknown,
    /// It failed before or at its commit (the result, e.g. `Timeout` of a read, `Abort`).
    Failed(String),
}

/// One probe of the kill test: a transaction reading `key` and, if `write`, writing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRecord {
    /// The client's node index.
    pub node: usize,
    /// The key probed.
    pub key: u64,
    /// The value written (`None`: a read-only probe).
    pub write: Option<Vec<u8>>,
    /// When it began.
    pub begin: Time,
    /// When it ended.
    pub end: Time,
    /// What its read answered, if it succeeded (`Some(None)`: nothing there).
    pub read: Option<Option<Vec<u8>>>,
    /// How it ended.
    pub outcome: ProbeEnd,
    /// Whether it aborted and was tried again (as a new probe).
    pub retried: bool,
}

/// What the kill test's clients did.
#[derive(Clone, Debug, Default)]
pub struct KillLog {
    /// The setup's committed values by key, with when they committed.
    pub setup: BTreeMap<u64, (Vec<u8>, Time)>,
    /// The probes, in the order they ended.
    pub probes: Vec<ProbeRecord>,
    /// Clients with a probe open, since when.
    pub open: BTreeMap<usize, Time>,
}

/// The keys of the kill test.
const KILL_TEST_KEYS: u64 = 6;

/// Checks the outcomes of Scalaris' kill test with `f = 4` on 4 nodes, `killed` of them
/// crashed at `kill` (`PROTOCOLS.md`, "Transactions": 1 killed, reads and writes work; 2,
/// reads ok or abort; 3, reads fail), as they follow from majorities (3 of 4 replicas) on this
/// stack:
///
/// * always: the setup committed every key before the kill; a read that succeeds answers
///   the key's last committed value (or the value of a write of unknown outcome since), never
///   another, never nothing; every probe ended;
/// * 1 killed: every probe begun `settle` or more after the kill commits (its read and its
///   write), possibly after aborted tries (each retried, at most 5 tries: the client's
///   previous probe's release may reach a replica after the next vote, and with the rebuilt
///   replica abstaining all three others must vote prepared), at least 5 reads and 5
///   writes among them: the successor rebuilt the lost replicas, three of four answer and
///   vote;
/// * 2 killed: no write commits (nor ends of unknown outcome and is then read) until
///   `abstain` after the kill: two replicas are lost; the successors rebuild them from the two
///   left, but a rebuilt replica abstains from votes for `abstain` (replication's
///   `max_lease`), so no item has a majority of prepared votes; reads may succeed once the
///   rebuilt replicas answer, with the right value; after the abstention, writes commit again
///   (at least 5 begun after it: the rebuild restored four replicas on the two survivors);
/// * 3 killed: no read succeeds and no write commits: one replica of four answers.
///
/// # Errors
///
/// The first outcome that is not the expected one, with the probe.
pub fn check_kill(
    killed: usize,
    log: &KillLog,
    kill: Time,
    settle: Duration,
    abstain: Duration,
) -> Result<String, String> {
    for k in 0..KILL_TEST_KEYS {
        match log.setup.get(&k) {
            Some((_, t)) if *t < kill => {}
            _ => return Err(format!("the setup did not commit key {k} before the kill")),
        }
    }
    if let Some((n, since)) = log.open.iter().next() {
        return Err(format!("node {n}'s probe begun at {since:?} never ended"));
    }
    let mut acceptable: BTreeMap<u64, Vec<Vec<u8>>> =
        log.setup.iter().map(|(k, (v, _))| (*k, vec![v.clone()])).collect();
    let mut probes: Vec<&ProbeRecord> = log.probes.iter().collect();
    probes.sort_by_key(|p| p.begin);
    let (mut reads_ok, mut writes_ok, mut settled, mut longest) = (0, 0, 0, Duration::ZERO);
    let mut writes_late = 0;
    let show = |p: &ProbeRecord| {
        format!(
            "node {}'s probe of key {} ({}) from {:?} to {:?}: read {:?}, {:?}",
            p.node,
            p.key,
            if p.write.is_some() { "read-write" } else { "read-only" },
            p.begin,
            p.end,
            p.read.as_ref().map(|v| v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())),
            p.outcome
        )
    };
    for p in probes {
        longest = longest.max(p.end.duration_since(p.begin));
        let ok = acceptable.entry(p.key).or_default();
        if let Some(read) = &p.read {
            reads_ok += 1;
            if !read.as_ref().is_some_and(|v| ok.contains(v)) {
                return Err(format!(
                    "a wrong answer with {killed} of 4 dead: {} (expected one of {:?})",
                    show(p),
                    ok.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect::<Vec<_>>()
                ));
            }
            if killed >= 3 {
                return Err(format!("a read succeeded with 3 of 4 dead: {}", show(p)));
            }
        }
        // Whether a write may commit: with 1 dead always; with 2, once the rebuilt replicas
        // may vote (not before `abstain` after the kill); with 3 never.
        let may_commit = killed == 1 || (killed == 2 && p.end >= kill + abstain);
        if let Some(v) = &p.write {
            match p.outcome {
                ProbeEnd::Committed if !may_commit => {
                    return Err(format!(
                        "a write committed with {killed} of 4 dead{}: {}",
                        if killed == 2 { " while the rebuilt replicas abstain" } else { "" },
                        show(p)
                    ))
                }
                ProbeEnd::Committed => {
                    writes_ok += 1;
                    if p.begin >= kill + abstain {
                        writes_late += 1;
                    }
                    *ok = vec![v.clone()];
                }
                // Of unknown outcome: may have committed if it could (otherwise it must not
                // have, and stays unreadable).
                ProbeEnd::Unknown if may_commit => ok.push(v.clone()),
                _ => {}
            }
        }
        if killed == 1 && p.begin >= kill + settle && !p.retried {
            settled += 1;
            if p.outcome != ProbeEnd::Committed {
                return Err(format!(
                    "with 1 of 4 dead, {settle:?} after the kill, a probe did not commit: {}",
                    show(p)
                ));
            }
        }
    }
    let summary = format!(
        "{} probes, {reads_ok} reads answered, {writes_ok} writes committed ({writes_late} \
         begun after the abstention), {settled} after the settling time, longest probe \
         {longest:?}",
        log.probes.len()
    );
    if killed == 2 && writes_late < 5 {
        return Err(format!(
            "with 2 of 4 dead, writes did not commit again once the rebuilt replicas could vote \
             ({summary})"
        ));
    }
    if killed == 1 && (settled < 10 || writes_ok < 5) {
        return Err(format!("too few probes after the settling time ({summary})"));
    }
    if log.probes.len() < 5 {
        return Err(format!("too few probes ({summary})"));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::{
        check_kill, check_serializable, KillLog, ProbeEnd, ProbeRecord, ReplicaWatch,
        SampledReplica, TxHistory, TxRecord, WatchBounds,
    };
    use selfman_core::{NodeAddr, NodeId, Time};
    use selfman_ports::{RingId, TxId};
    use std::time::Duration;

    fn tx(name: &str, reads: &[(&str, Option<&str>)], writes: &[(&str, &str)]) -> TxRecord {
        TxRecord {
            name: name.into(),
            reads: reads
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
                .collect(),
            writes: writes
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_serial_history_passes() {
        let h = TxHistory {
            committed: vec![
                tx("t1", &[("x", None)], &[("x", "1")]),
                tx("t2", &[("x", Some("1")), ("y", None)], &[("y", "2")]),
                tx("t3", &[("x", Some("1")), ("y", Some("2"))], &[("x", "3")]),
            ],
            ..TxHistory::default()
        };
        let edges = check_serializable(&h).expect("serial");
        assert!(edges >= 4, "{edges}");
    }

    #[test]
    fn a_lost_update_is_a_cycle() {
        // Both overwrote x=1: each read what the other overwrote.
        let h = TxHistory {
            committed: vec![
                tx("t1", &[("x", None)], &[("x", "1")]),
                tx("a", &[("x", Some("1"))], &[("x", "a")]),
                tx("b", &[("x", Some("1"))], &[("x", "b")]),
            ],
            ..TxHistory::default()
        };
        let e = check_serializable(&h).unwrap_err();
        assert!(e.contains("cycle") && e.contains("Rw"), "{e}");
    }

    #[test]
    fn write_skew_is_a_cycle() {
        // a reads y, writes x; b reads x, writes y; both from the initial state.
        let h = TxHistory {
            committed: vec![
                tx("a", &[("x", None), ("y", None)], &[("x", "a")]),
                tx("b", &[("x", None), ("y", None)], &[("y", "b")]),
            ],
            ..TxHistory::default()
        };
        let e = check_serializable(&h).unwrap_err();
        assert!(e.contains("a -Rw(y)-> b") || e.contains("b -Rw(x)-> a"), "{e}");
    }

    #[test]
    fn an_aborted_read_fails_and_an_observed_unknown_counts_as_committed() {
        let h = TxHistory {
            committed: vec![tx("r", &[("x", Some("z"))], &[])],
            aborted: vec![tx("z", &[("x", None)], &[("x", "z")])],
            ..TxHistory::default()
        };
        assert!(check_serializable(&h).unwrap_err().contains("G1a"));
        // A timed-out transaction whose value was seen committed; one not seen is left out.
        let h = TxHistory {
            committed: vec![tx("r", &[("x", Some("u"))], &[("y", "r")])],
            unknown: vec![
                tx("u", &[("x", None), ("y", Some("r"))], &[("x", "u")]),
                tx("v", &[("q", None)], &[("q", "v")]),
            ],
            ..TxHistory::default()
        };
        // u read y=r (r → u) and r read x=u (u → r): a cycle through the unknown u.
        assert!(check_serializable(&h).unwrap_err().contains("cycle"));
        let h = TxHistory {
            committed: vec![tx("r", &[("x", Some("nobody"))], &[])],
            ..TxHistory::default()
        };
        assert!(check_serializable(&h).unwrap_err().contains("no transaction wrote"));
    }

    fn node(i: u8) -> NodeAddr {
        NodeAddr { addr: ([10, 0, 0, i], 4000).into(), id: NodeId(u64::from(i)) }
    }

    fn bounds() -> WatchBounds {
        WatchBounds {
            f: 4,
            apply_within: Duration::from_secs(5),
            lease: Duration::from_secs(10),
            resolve_within: Duration::from_secs(5),
        }
    }

    /// Replica `i` of `key` at node `i`, served, at `version` with `value`.
    fn replica(i: u32, key: &str, version: u64, value: &str) -> SampledReplica {
        SampledReplica {
            node: node(i as u8),
            pos: RingId::of_key(key.as_bytes()).replica(i, 4),
            key: key.as_bytes().to_vec(),
            version,
            value: Some(value.as_bytes().to_vec()),
            served: true,
            locks: Vec::new(),
        }
    }

    fn secs(s: u64) -> Time {
        Time::from_secs(s)
    }

    /// `w` wrote x = "w" over nothing and committed at 1 s.
    fn committed_w() -> TxHistory {
        let mut h = TxHistory::default();
        h.ended_at(tx("w", &[("x", None)], &[("x", "w")]), Some(true), secs(1));
        h
    }

    #[test]
    fn a_committed_write_at_a_majority_passes_and_at_a_minority_fails_after_the_bound() {
        let h = committed_w();
        let b = bounds();
        let mut w = ReplicaWatch::default();
        let three: Vec<_> = (0..3).map(|i| replica(i, "x", 1, "w")).collect();
        w.observe(secs(2), &three, &h, &b).unwrap();
        assert_eq!(w.finish(secs(20), &h, &b).unwrap().applied, 1);
        // A later version counts as holding it; an unserved copy does not.
        let mut w = ReplicaWatch::default();
        let mut later = vec![replica(0, "x", 1, "w"), replica(1, "x", 2, "v")];
        let mut unserved = replica(2, "x", 1, "w");
        unserved.served = false;
        later.push(unserved);
        w.observe(secs(2), &later, &h, &b).unwrap();
        let e = w.observe(secs(7), &later, &h, &b).unwrap_err();
        assert!(e.contains("2 of 4 replicas of x hold w"), "{e}");
    }

    #[test]
    fn an_aborted_value_at_a_replica_fails_and_so_does_a_wrong_version() {
        let mut h = committed_w();
        h.ended_at(tx("a", &[("x", Some("w"))], &[("x", "a")]), Some(false), secs(2));
        let b = bounds();
        let mut w = ReplicaWatch::default();
        let mut rs: Vec<_> = (0..3).map(|i| replica(i, "x", 1, "w")).collect();
        rs.push(replica(3, "x", 2, "a"));
        w.observe(secs(3), &rs, &h, &b).unwrap();
        let e = w.finish(secs(20), &h, &b).unwrap_err();
        assert!(e.contains("only the aborted transaction a wrote"), "{e}");
        let mut w = ReplicaWatch::default();
        let rs: Vec<_> = (0..3).map(|i| replica(i, "x", 7, "w")).collect();
        w.observe(secs(3), &rs, &h, &b).unwrap();
        let e = w.finish(secs(20), &h, &b).unwrap_err();
        assert!(e.contains("the history puts it at version 1"), "{e}");
    }

    #[test]
    fn a_lock_past_its_lease_or_past_the_liveness_bound_fails() {
        let h = TxHistory::default();
        let b = bounds();
        let mut locked = replica(0, "x", 0, "-");
        locked.value = None;
        locked.locks = vec![(TxId(7), secs(11))];
        let mut w = ReplicaWatch::default();
        w.observe(secs(1), std::slice::from_ref(&locked), &h, &b).unwrap();
        // Faults stop at 2 s: the lock may last until 7 s.
        w.quiet = Some(secs(2));
        w.observe(secs(6), std::slice::from_ref(&locked), &h, &b).unwrap();
        let e = w.observe(secs(8), std::slice::from_ref(&locked), &h, &b).unwrap_err();
        assert!(e.contains("liveness: TxId(7) still locks x"), "{e}");
        // A lease longer than the lease from the first sighting.
        let mut w = ReplicaWatch::default();
        locked.locks = vec![(TxId(8), secs(30))];
        let e = w.observe(secs(1), &[locked], &h, &b).unwrap_err();
        assert!(e.contains("a lock past its lease"), "{e}");
    }

    fn probe(
        key: u64,
        write: Option<&str>,
        begin: u64,
        read: Option<&str>,
        outcome: ProbeEnd,
    ) -> ProbeRecord {
        ProbeRecord {
            node: 0,
            key,
            write: write.map(|w| w.as_bytes().to_vec()),
            begin: secs(begin),
            end: secs(begin) + Duration::from_millis(10),
            read: read.map(|r| Some(r.as_bytes().to_vec())),
            outcome,
            retried: false,
        }
    }

    fn kill_log(probes: Vec<ProbeRecord>) -> KillLog {
        KillLog {
            setup: (0..6).map(|k| (k, (format!("setup-{k}").into_bytes(), secs(5)))).collect(),
            probes,
            open: Default::default(),
        }
    }

    #[test]
    fn the_kill_check_takes_the_expected_outcomes_and_nothing_else() {
        let (kill, settle, abstain) = (secs(9), Duration::from_secs(6), Duration::from_secs(10));
        // 3 dead: reads time out, nothing commits.
        let failed = || ProbeEnd::Failed("Timeout".into());
        let log = kill_log((0..6).map(|k| probe(k, None, 10 + k, None, failed())).collect());
        check_kill(3, &log, kill, settle, abstain).unwrap();
        let mut bad = log.clone();
        bad.probes.push(probe(0, None, 20, Some("setup-0"), ProbeEnd::Committed));
        assert!(check_kill(3, &bad, kill, settle, abstain)
            .unwrap_err()
            .contains("a read succeeded"));
        // 2 dead: a write committing during the abstention fails; after it, it is allowed
        // and its value becomes the one to read.
        let mut ok: Vec<_> =
            (0..5).map(|k| probe(k, None, 10, Some(&format!("setup-{k}")), failed())).collect();
        for i in 0..5 {
            let w = format!("p{i}");
            ok.push(probe(
                1,
                Some(&w),
                20 + 2 * i,
                Some(if i == 0 { "setup-1" } else { "" }),
                ProbeEnd::Committed,
            ));
        }
        for (i, p) in ok.iter_mut().enumerate().skip(6) {
            p.read = Some(Some(format!("p{}", i - 6).into_bytes()));
        }
        check_kill(2, &kill_log(ok.clone()), kill, settle, abstain).unwrap();
        let mut early = ok.clone();
        early.push(probe(2, Some("e"), 12, Some("setup-2"), ProbeEnd::Committed));
        let e = check_kill(2, &kill_log(early), kill, settle, abstain).unwrap_err();
        assert!(e.contains("while the rebuilt replicas abstain"), "{e}");
        // A wrong answer fails whatever the number dead.
        let mut wrong = ok;
        wrong.push(probe(1, None, 40, Some("setup-1"), ProbeEnd::Committed));
        let e = check_kill(2, &kill_log(wrong), kill, settle, abstain).unwrap_err();
        assert!(e.contains("a wrong answer"), "{e}");
    }
}
