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
