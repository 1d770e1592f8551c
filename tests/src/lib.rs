//! # selfman-tests
//!
//! Simulation scenarios shared by the test suites and the `sweep` runner:
//!
//! ```text
//! cargo run --release -p selfman-tests --bin sweep -- <scenario> --seeds N [--start S]
//! ```
//!
//! Each scenario is a [`Scenario`] recipe with its invariants; [`by_name`] finds one,
//! [`SCENARIOS`] lists them. A failing seed prints the command that replays it; once the bug is
//! fixed, the seed goes into `tests/tests/regressions.rs` so it keeps being checked.
#![deny(missing_docs)]

pub mod agreement;
pub mod failure_detection;
pub mod scenarios;

use selfman_sim::Scenario;

/// A registered scenario.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Its name on the command line.
    pub name: &'static str,
    /// What it exercises and checks.
    pub about: &'static str,
    /// Whether a correct system must pass it (`false` for deliberately broken variants that
    /// show a checker catching a bug).
    pub must_pass: bool,
    /// Builds it.
    pub build: fn() -> Scenario,
}

/// Every scenario the sweep runner knows.
pub const SCENARIOS: &[Entry] = &[
    Entry {
        name: "net-fifo",
        about: "typed messages between churning, partitioned nodes on lossy links: per-link \
                FIFO, no duplicates, no delivery to another incarnation, no message from the \
                future",
        must_pass: true,
        build: scenarios::net_fifo,
    },
    Entry {
        name: "net-fifo-broken",
        about: "net-fifo on a network that reorders (FIFO off): the checker must report it",
        must_pass: false,
        build: scenarios::net_fifo_broken,
    },
    Entry {
        name: "heartbeat-churn",
        about: "the heartbeat detector on a 50-node ring under crash/restart churn and a \
                partition; after things settle every node suspects exactly its crashed \
                neighbours",
        must_pass: true,
        build: scenarios::heartbeat_churn,
    },
    // failure_detection.rs entries (fd, omega, and their broken variants) go here.
    Entry {
        name: "fd",
        about: "the heartbeat detector, 12 nodes monitoring each other: jitter, loss, \
                crash/restart churn, a partition that heals, then a stable network and two \
                crashes; strong completeness, eventual strong accuracy, detection within 2x the \
                timeout",
        must_pass: true,
        build: failure_detection::fd,
    },
    Entry {
        name: "fd-broken",
        about: "fd with a detector that never restores: the accuracy check must report it",
        must_pass: false,
        build: failure_detection::fd_broken,
    },
    Entry {
        name: "fd-slow",
        about: "the detector on slow but bounded links (round trips beyond the first \
                timeout), crash-stop: completeness, at most the false suspicions the timeout \
                increments allow, detection within 2x the timeout",
        must_pass: true,
        build: failure_detection::fd_slow,
    },
    Entry {
        name: "fd-slow-broken",
        about: "fd-slow with a detector whose timeout never grows: the false-suspicion bound \
                must report it",
        must_pass: false,
        build: failure_detection::fd_slow_broken,
    },
    Entry {
        name: "omega",
        about: "leader election over the detector, 7 nodes: the leader crashes twice, one \
                more node crashes, loss, jitter, a partition that heals; eventually all correct \
                nodes trust the same correct node",
        must_pass: true,
        build: failure_detection::omega,
    },
    Entry {
        name: "omega-broken",
        about: "omega with an election that ignores suspicions (trusts by rank alone): the \
                accuracy check must report it",
        must_pass: false,
        build: failure_detection::omega_broken,
    },
    // agreement.rs entries (beb, consensus, and their broken variants) go here.
    Entry {
        name: "beb",
        about: "best-effort broadcast among 8 nodes over reliable links, crash/restart churn, a \
                group change: no duplication, no creation, validity for correct senders and \
                receivers, nothing delivered outside the group",
        must_pass: true,
        build: agreement::beb,
    },
    Entry {
        name: "beb-broken",
        about: "beb over links that lose 10% of messages while validity is still demanded: \
                the checker must report it",
        must_pass: false,
        build: agreement::beb_broken,
    },
    Entry {
        name: "consensus",
        about: "uniform consensus (FD + Omega + epoch change + epoch consensus) on 3-7 nodes, \
                many instances proposed at several nodes, crashes of a minority (leader \
                preferred), loss, delays, partitions: validity, integrity, uniform agreement, \
                epoch monotonicity and consistency always; termination and one epoch at the end",
        must_pass: true,
        build: agreement::consensus,
    },
    Entry {
        name: "consensus-broken",
        about: "consensus whose epoch leader adopts the lowest-timestamp state: agreement \
                must fail",
        must_pass: false,
        build: agreement::consensus_broken,
    },
    Entry {
        name: "consensus-broken-epochs",
        about: "epoch change with colliding timestamps: consistency must fail",
        must_pass: false,
        build: agreement::consensus_broken_epochs,
    },
    Entry {
        name: "consensus-broken-monotonic",
        about: "epoch change that accepts stale epochs: monotonicity must fail",
        must_pass: false,
        build: agreement::consensus_broken_monotonic,
    },
    Entry {
        name: "consensus-broken-integrity",
        about: "uniform consensus that forgets its decisions at each epoch: integrity must fail",
        must_pass: false,
        build: agreement::consensus_broken_integrity,
    },
    Entry {
        name: "consensus-broken-termination",
        about: "epoch consensus without retransmission over lossy links: termination must fail",
        must_pass: false,
        build: agreement::consensus_broken_termination,
    },
];

/// The scenario called `name`.
pub fn by_name(name: &str) -> Option<&'static Entry> {
    SCENARIOS.iter().find(|e| e.name == name)
}
