//! Checks of the transaction scenarios: Scalaris' bank invariant (the total of all accounts
//! never changes: every transfer is atomic and serializable, or the sum drifts), that the
//! audit committed, that every transaction of a live client ended, and that transfers did
//! commit (a run that commits nothing proves nothing). With `SELFMAN_TX_REPORT` set, the check
//! prints the run's figures to stderr.

use std::collections::BTreeMap;
use std::time::Duration;

use selfman_core::{NodeAddr, Time};

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
}

impl TxHistory {
    /// The commit of `record` was asked for.
    pub fn committing(&mut self, record: &TxRecord) {
        self.in_flight.insert(record.name.clone(), record.clone());
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

#[cfg(test)]
mod tests {
    use super::{check_serializable, TxHistory, TxRecord};

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
}
