//! [`TxConfig`]: the transaction layer's timing and bounds.

use std::time::Duration;

/// Timing and bounds of the transaction layer. The defaults suit a failure detector that
/// suspects within about a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxConfig {
    /// Replicas per item: must be the replication layer's `f` (default 4).
    pub f: u32,
    /// The lease of a participant's lock (default 10 s). A lock of a transaction whose
    /// decision never reaches the replica ends with it. It must be well above the takeover
    /// time (`takeover_after · f` plus a few round trips): a commit decided after the lease
    /// may find the item changed (counted as `LateCommit`).
    pub lease: Duration,
    /// How long the TM waits for the votes before it decides the missing instances itself
    /// in a higher round (default 1 s).
    pub vote_timeout: Duration,
    /// How long an rTM of rank `r` waits, undecided, before it takes over: `r ·
    /// takeover_after` after it heard of the transaction (default 2 s), or at once when the
    /// failure detector suspects the TM.
    pub takeover_after: Duration,
    /// How often unanswered protocol messages are sent again (default 250 ms).
    pub retransmit: Duration,
    /// When a client is told `Timeout` for a commit not decided yet (default 5 s).
    pub commit_timeout: Duration,
    /// How long a participant waits for the decision before asking the acceptors (default
    /// 1 s; again every `retransmit`).
    pub ask_after: Duration,
    /// How often the rTM addresses are looked up again (default 5 s).
    pub rtm_refresh: Duration,
    /// Transactions in flight at one node, in any role (default 65,536).
    pub max_txs: usize,
    /// How often a value-set operation found concurrent changes before it gives up with
    /// `Abort` (default 8).
    pub set_retries: u32,
    /// The lease of a key subscription at a replica (default 30 s; renewed at a third).
    pub subscription_lease: Duration,
    /// The longest lease an eager-locking client may ask for (default 60 s; longer ones are
    /// clamped). A lock's lease in a message is at most this plus `lease`
    /// ([`TxConfig::max_wire_lease_ms`]); longer ones are clamped on receipt.
    pub max_client_lease: Duration,
    /// A client transaction (session) that neither commits nor issues a request for this
    /// long is dropped (default 60 s; its handle is unknown afterwards).
    pub session_idle: Duration,
}

impl Default for TxConfig {
    fn default() -> Self {
        TxConfig {
            f: 4,
            lease: Duration::from_secs(10),
            vote_timeout: Duration::from_secs(1),
            takeover_after: Duration::from_secs(2),
            retransmit: Duration::from_millis(250),
            commit_timeout: Duration::from_secs(5),
            ask_after: Duration::from_secs(1),
            rtm_refresh: Duration::from_secs(5),
            max_txs: 65_536,
            set_retries: 8,
            subscription_lease: Duration::from_secs(30),
            max_client_lease: Duration::from_secs(60),
            session_idle: Duration::from_secs(60),
        }
    }
}

impl TxConfig {
    /// The replicas of an item that make a majority.
    pub fn item_quorum(&self) -> usize {
        self.f as usize / 2 + 1
    }

    /// The lease in milliseconds.
    pub fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// The longest client lease in milliseconds.
    pub fn max_client_lease_ms(&self) -> u64 {
        u64::try_from(self.max_client_lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// The longest lock lease a message may carry, in milliseconds (an eager transaction's
    /// locks last the client's lease plus `lease`).
    pub fn max_wire_lease_ms(&self) -> u64 {
        self.max_client_lease_ms().saturating_add(self.lease_ms())
    }
}
