//! The client side of a transaction at its TM's node: the read phase (majority reads,
//! remembered versions), buffered writes and the helpers built on them, and the start of the
//! commit.
//!
//! Invariants:
//! * every key a transaction commits was read in it (a blind write reads the version first),
//!   so every prepare carries the version the participants check;
//! * a read of a key the transaction wrote answers the buffered value;
//! * requests of one transaction are answered one at a time, in order (later ones queue,
//!   up to [`MAX_QUEUED`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use selfman_core::Time;
use selfman_ports::{
    decode_list, encode_list, LockMode, QuorumRead, ReadFailure, Rejection, ReplicationRequest,
    RingId, TxHandle, TxId, TxIndication, TxRequest, TxResult, Version,
};

use crate::machine::coalesce;
use crate::machine::{TxMachine, TxOutput, Wait};
use crate::messages::{ItemInfo, Slot, TxInfo, TxMessage, MAX_ITEMS};

/// Requests of one transaction waiting behind the one being answered.
pub(crate) const MAX_QUEUED: usize = 1024;

/// Largest key accepted.
pub const MAX_KEY: usize = 64 * 1024;

/// One item of a commit: the key, the version read, and the write (`Some(None)`: delete;
/// `None`: only read).
pub(crate) type CommitItem = (Vec<u8>, Version, Option<Option<Vec<u8>>>);

/// Who is told a transaction's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    /// A client transaction.
    Session(TxHandle),
    /// A value-set operation (its number).
    Set(u64),
}

/// One open client transaction.
#[derive(Clone, Debug, Default)]
pub(crate) struct Session {
    /// Versions and values read.
    pub(crate) reads: BTreeMap<Vec<u8>, (Version, Option<Vec<u8>>)>,
    /// Buffered writes (`None`: delete).
    pub(crate) writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    queue: VecDeque<TxRequest>,
    /// The key being read now.
    reading: Option<Vec<u8>>,
    /// Commit started (or locks asked for): only its answer remains.
    committing: bool,
    /// Eager locking: the transaction holding the locks, and the keys locked (in item
    /// order).
    lock: Option<(TxId, Vec<Vec<u8>>)>,
    /// The locks are held (the client was told).
    held: bool,
    /// The client's last request (an idle session expires `session_idle` after it).
    last_used: Time,
}

fn handle_of(r: &TxRequest) -> Option<TxHandle> {
    match r {
        TxRequest::Read { handle, .. }
        | TxRequest::Write { handle, .. }
        | TxRequest::TestAndSet { handle, .. }
        | TxRequest::AddToNumber { handle, .. }
        | TxRequest::AddDelOnList { handle, .. }
        | TxRequest::Lock { handle, .. }
        | TxRequest::Commit { handle }
        | TxRequest::Abort { handle } => Some(*handle),
        _ => None,
    }
}

fn key_of(r: &TxRequest) -> Option<&Vec<u8>> {
    match r {
        TxRequest::Read { key, .. }
        | TxRequest::Write { key, .. }
        | TxRequest::TestAndSet { key, .. }
        | TxRequest::AddToNumber { key, .. }
        | TxRequest::AddDelOnList { key, .. } => Some(key),
        _ => None,
    }
}

/// The answer to `r` with `result` (the value with a read).
fn answer_to(r: &TxRequest, result: TxResult, value: Option<Vec<u8>>) -> TxIndication {
    let handle = handle_of(r).unwrap_or_default();
    match r {
        TxRequest::Read { key, .. } => {
            TxIndication::ReadDone { handle, key: key.clone(), result, value }
        }
        TxRequest::Commit { .. } | TxRequest::Abort { .. } => {
            TxIndication::Committed { handle, tx: None, result }
        }
        TxRequest::Lock { .. } => TxIndication::Locked { handle, result },
        _ => TxIndication::OpDone { handle, key: key_of(r).cloned().unwrap_or_default(), result },
    }
}

impl TxMachine {
    /// A client's request.
    pub fn on_request(&mut self, req: TxRequest, now: Time, out: &mut Vec<TxOutput>) {
        let start = out.len();
        self.request(req, now, out);
        coalesce(out, start);
    }

    fn request(&mut self, req: TxRequest, now: Time, out: &mut Vec<TxOutput>) {
        match req {
            TxRequest::Begin { handle } => {
                let result = if self.sessions.contains_key(&handle) {
                    TxResult::Rejected(Rejection::HandleInUse)
                } else if self.sessions.len() >= self.config.max_txs {
                    TxResult::Rejected(Rejection::Overloaded)
                } else {
                    self.sessions.insert(handle, Session { last_used: now, ..Session::default() });
                    TxResult::Ok
                };
                out.push(TxOutput::Indicate(TxIndication::Begun { handle, result }));
            }
            TxRequest::SetAdd { .. } | TxRequest::SetRemove { .. } | TxRequest::ReadSet { .. } => {
                self.start_set(req, now, out)
            }
            TxRequest::Subscribe { key } => self.subscribe(key, now, out),
            TxRequest::Unsubscribe { key } => self.unsubscribe(key, out),
            other => {
                let Some(handle) = handle_of(&other) else { return };
                let too_large = key_of(&other).is_some_and(|k| k.len() > MAX_KEY);
                let Some(s) = self.sessions.get_mut(&handle).filter(|s| !s.committing) else {
                    let ind = answer_to(&other, TxResult::Rejected(Rejection::UnknownHandle), None);
                    return out.push(TxOutput::Indicate(ind));
                };
                s.last_used = now;
                if too_large || s.queue.len() >= MAX_QUEUED {
                    let why = if too_large { Rejection::TooLarge } else { Rejection::Overloaded };
                    return out.push(TxOutput::Indicate(answer_to(
                        &other,
                        TxResult::Rejected(why),
                        None,
                    )));
                }
                s.queue.push_back(other);
                self.run_session(handle, now, out);
            }
        }
        self.drain(now, out);
    }

    /// Drops the sessions idle for `session_idle`: not committing, not reading, holding no
    /// locks, no request since (a client that began and vanished). Their handles are unknown
    /// afterwards.
    pub(crate) fn tick_sessions(&mut self, now: Time) {
        let idle = self.config.session_idle;
        self.sessions.retain(|handle, s| {
            let keep =
                s.committing || s.reading.is_some() || s.lock.is_some() || now < s.last_used + idle;
            if !keep {
                tracing::debug!(?handle, "transactions: an idle client transaction expired");
            }
            keep
        });
    }

    /// Answers the session's queued requests until one must wait (a read, the commit).
    fn run_session(&mut self, handle: TxHandle, now: Time, out: &mut Vec<TxOutput>) {
        loop {
            let Some(s) = self.sessions.get_mut(&handle) else { return };
            if s.reading.is_some() || s.committing {
                return;
            }
            let Some(req) = s.queue.front().cloned() else { return };
            if let (Some(key), Some((_, locked))) = (key_of(&req), s.lock.as_ref()) {
                if !locked.contains(key) {
                    s.queue.pop_front();
                    let ind = answer_to(&req, TxResult::Rejected(Rejection::NotLocked), None);
                    out.push(TxOutput::Indicate(ind));
                    continue;
                }
            }
            if let Some(key) = key_of(&req) {
                let buffered = matches!(req, TxRequest::Read { .. }) && s.writes.contains_key(key);
                if !s.reads.contains_key(key) && !buffered {
                    s.reading = Some(key.clone());
                    let key = key.clone();
                    let tag = self.tag(Wait::Read(handle, key.clone()));
                    out.push(TxOutput::Replicate(ReplicationRequest::Read { key, tag }));
                    return;
                }
            }
            s.queue.pop_front();
            match req {
                TxRequest::Commit { .. } => return self.commit(handle, now, out),
                TxRequest::Lock { lease_ms, .. } => return self.lock(handle, lease_ms, now, out),
                TxRequest::Abort { .. } if s.lock.is_some() => {
                    s.committing = true;
                    let tx = s.lock.as_ref().map(|l| l.0).unwrap_or_default();
                    return self.client_decides(tx, None, now, out);
                }
                TxRequest::Abort { .. } => {
                    self.sessions.remove(&handle);
                    let ind = TxIndication::Committed {
                        handle,
                        tx: None,
                        result: TxResult::Abort(Vec::new()),
                    };
                    return out.push(TxOutput::Indicate(ind));
                }
                _ => {}
            }
            let (result, value) = apply_op(s, &req);
            out.push(TxOutput::Indicate(answer_to(&req, result, value)));
        }
    }

    pub(crate) fn read_done(
        &mut self,
        handle: TxHandle,
        key: Vec<u8>,
        result: Result<QuorumRead, ReadFailure>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(s) = self.sessions.get_mut(&handle) else { return };
        if s.reading.as_ref() != Some(&key) {
            return;
        }
        s.reading = None;
        match result {
            Ok(r) => {
                s.reads.insert(key, (r.version, r.value));
            }
            Err(e) => {
                // The request that needed the read fails; the others go on.
                let why = match e {
                    ReadFailure::NotInRing => TxResult::Rejected(Rejection::NotInRing),
                    ReadFailure::Overloaded => TxResult::Rejected(Rejection::Overloaded),
                    ReadFailure::KeyTooLong => TxResult::Rejected(Rejection::TooLarge),
                    _ => TxResult::Timeout,
                };
                if let Some(req) = s.queue.pop_front() {
                    out.push(TxOutput::Indicate(answer_to(&req, why, None)));
                }
            }
        }
        self.run_session(handle, now, out);
    }

    fn commit(&mut self, handle: TxHandle, now: Time, out: &mut Vec<TxOutput>) {
        let room = self.has_room();
        let Some(s) = self.sessions.get_mut(&handle) else { return };
        if let Some((tx, keys)) = s.lock.clone() {
            // Eager: the locks are held; the values go in the client's instance.
            s.committing = true;
            let writes = keys
                .iter()
                .enumerate()
                .filter_map(|(i, k)| s.writes.get(k).map(|v| (i as u32, v.clone())))
                .collect();
            return self.client_decides(tx, Some(writes), now, out);
        }
        let keys: BTreeSet<Vec<u8>> = s.reads.keys().chain(s.writes.keys()).cloned().collect();
        if keys.is_empty() {
            self.sessions.remove(&handle);
            let ind = TxIndication::Committed { handle, tx: None, result: TxResult::Ok };
            return out.push(TxOutput::Indicate(ind));
        }
        if keys.len() > MAX_ITEMS || !room {
            let why =
                if keys.len() > MAX_ITEMS { Rejection::TooLarge } else { Rejection::Overloaded };
            self.sessions.remove(&handle);
            let ind = TxIndication::Committed { handle, tx: None, result: TxResult::Rejected(why) };
            return out.push(TxOutput::Indicate(ind));
        }
        s.committing = true;
        let items: Vec<CommitItem> = keys
            .into_iter()
            .map(|k| {
                let read = s.reads.get(&k).map_or(Version(0), |r| r.0);
                let write = s.writes.get(&k).cloned();
                (k, read, write)
            })
            .collect();
        let tx = self.new_tx_id();
        self.begin_commit(tx, items, Client::Session(handle), now, out);
    }

    /// Eager locking: write-locks every key the transaction has read (or written) so far.
    fn lock(&mut self, handle: TxHandle, lease_ms: u64, now: Time, out: &mut Vec<TxOutput>) {
        let room = self.has_room();
        let Some(s) = self.sessions.get_mut(&handle) else { return };
        let keys: Vec<Vec<u8>> = s
            .reads
            .keys()
            .chain(s.writes.keys())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let why = if s.lock.is_some() {
            Some(Rejection::HandleInUse)
        } else if keys.is_empty() || keys.len() > MAX_ITEMS {
            Some(Rejection::TooLarge)
        } else if !room {
            Some(Rejection::Overloaded)
        } else {
            None
        };
        if let Some(why) = why {
            let ind = TxIndication::Locked { handle, result: TxResult::Rejected(why) };
            out.push(TxOutput::Indicate(ind));
            return self.run_session(handle, now, out);
        }
        let tx = self.new_tx_id();
        let Some(s) = self.sessions.get_mut(&handle) else { return };
        s.committing = true;
        s.lock = Some((tx, keys.clone()));
        // Every key locked for writing, with no value yet; the version read is checked.
        let items: Vec<CommitItem> = keys
            .into_iter()
            .map(|k| {
                let read = s.reads.get(&k).map_or(Version(0), |r| r.0);
                (k, read, None)
            })
            .collect();
        let lease =
            lease_ms.min(self.config.max_client_lease_ms()).saturating_add(self.config.lease_ms());
        self.begin(tx, items, Client::Session(handle), Some(lease), now, out);
    }

    /// The TM holds the locks of eager transaction `tx`: tell the client.
    pub(crate) fn locks_held(&mut self, client: Client, _tx: TxId, out: &mut Vec<TxOutput>) {
        let Client::Session(handle) = client else { return };
        let Some(s) = self.sessions.get_mut(&handle) else { return };
        s.committing = false;
        s.held = true;
        out.push(TxOutput::Indicate(TxIndication::Locked { handle, result: TxResult::Ok }));
    }

    /// Starts Paxos commit of `items` (key, version read, write) for `client`.
    pub(crate) fn begin_commit(
        &mut self,
        tx: TxId,
        items: Vec<CommitItem>,
        client: Client,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        self.begin(tx, items, client, None, now, out);
    }

    /// Starts Paxos commit; `eager`: an eager transaction whose locks last this long (ms).
    fn begin(
        &mut self,
        tx: TxId,
        items: Vec<CommitItem>,
        client: Client,
        eager: Option<u64>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let _span =
            crate::machine::tx_span(tx, if eager.is_some() { "lock" } else { "commit" }).entered();
        let f = self.config.f;
        let lease_ms = eager.unwrap_or(self.config.lease_ms());
        let acceptors = self.acceptors();
        let shared: std::sync::Arc<[selfman_core::NodeAddr]> = acceptors.as_slice().into();
        let mut prepares = Vec::with_capacity(items.len() * f as usize);
        for (i, (key, read, write)) in items.iter().enumerate() {
            let mode =
                if write.is_some() || eager.is_some() { LockMode::Write } else { LockMode::Read };
            for replica in 0..f {
                let slot = Slot { item: i as u32, replica };
                let msg = TxMessage::Prepare {
                    tx,
                    acceptors: std::sync::Arc::clone(&shared),
                    slot,
                    key: key.clone(),
                    mode,
                    read: *read,
                    write: write.clone(),
                    lease_ms,
                };
                prepares.push((RingId::of_key(key).replica(replica, f), msg));
            }
        }
        let info = TxInfo {
            tx,
            acceptors,
            f,
            items: items
                .into_iter()
                .map(|(key, _, w)| ItemInfo {
                    key,
                    mode: if w.is_some() || eager.is_some() {
                        LockMode::Write
                    } else {
                        LockMode::Read
                    },
                })
                .collect(),
            lease_ms,
            eager: eager.is_some(),
        };
        self.start_commit(info, prepares, client, now, out);
    }

    /// Tells `client` the decision of `tx` (`keys`: the items that were not prepared).
    pub(crate) fn answer(
        &mut self,
        client: Client,
        tx: TxId,
        commit: bool,
        keys: Vec<Vec<u8>>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        match client {
            Client::Session(handle) => {
                let locking =
                    self.sessions.remove(&handle).is_some_and(|s| s.lock.is_some() && !s.held);
                let result = if commit { TxResult::Ok } else { TxResult::Abort(keys) };
                let ind = if locking {
                    TxIndication::Locked { handle, result }
                } else {
                    TxIndication::Committed { handle, tx: Some(tx), result }
                };
                out.push(TxOutput::Indicate(ind));
            }
            Client::Set(op) => self.set_committed(op, commit, now, out),
        }
    }

    /// Tells `client` that `tx` is not decided in time.
    pub(crate) fn answer_timeout(&mut self, client: Client, tx: TxId, out: &mut Vec<TxOutput>) {
        match client {
            Client::Session(handle) => {
                let locking =
                    self.sessions.remove(&handle).is_some_and(|s| s.lock.is_some() && !s.held);
                let ind = if locking {
                    TxIndication::Locked { handle, result: TxResult::Timeout }
                } else {
                    TxIndication::Committed { handle, tx: Some(tx), result: TxResult::Timeout }
                };
                out.push(TxOutput::Indicate(ind));
            }
            Client::Set(op) => self.set_timeout(op, out),
        }
    }
}

/// Performs a request whose key was read: the result and, for a read, the value.
fn apply_op(s: &mut Session, req: &TxRequest) -> (TxResult, Option<Vec<u8>>) {
    let current = |s: &Session, key: &Vec<u8>| -> Option<Vec<u8>> {
        match s.writes.get(key) {
            Some(v) => v.clone(),
            None => s.reads.get(key).and_then(|r| r.1.clone()),
        }
    };
    match req {
        TxRequest::Read { key, .. } => match current(s, key) {
            Some(v) => (TxResult::Ok, Some(v)),
            None => (TxResult::NotFound, None),
        },
        TxRequest::Write { key, value, .. } => {
            s.writes.insert(key.clone(), value.clone());
            (TxResult::Ok, None)
        }
        TxRequest::TestAndSet { key, expected, new, .. } => {
            let now = current(s, key);
            if now != *expected {
                return (TxResult::KeyChanged(now), None);
            }
            s.writes.insert(key.clone(), new.clone());
            (TxResult::Ok, None)
        }
        TxRequest::AddToNumber { key, delta, .. } => {
            let n = match current(s, key) {
                None => Some(0i64),
                Some(v) => std::str::from_utf8(&v).ok().and_then(|t| t.trim().parse::<i64>().ok()),
            };
            match n.and_then(|n| n.checked_add(*delta)) {
                Some(n) => {
                    s.writes.insert(key.clone(), Some(n.to_string().into_bytes()));
                    (TxResult::Ok, None)
                }
                None => (TxResult::Rejected(Rejection::NotANumber), None),
            }
        }
        TxRequest::AddDelOnList { key, add, del, .. } => {
            let list = match current(s, key) {
                None => Some(Vec::new()),
                Some(v) => decode_list(&v),
            };
            match list {
                Some(mut l) => {
                    l.retain(|e| !del.contains(e));
                    l.extend(add.iter().cloned());
                    s.writes.insert(key.clone(), Some(encode_list(&l)));
                    (TxResult::Ok, None)
                }
                None => (TxResult::Rejected(Rejection::NotAList), None),
            }
        }
        _ => (TxResult::Rejected(Rejection::UnknownHandle), None),
    }
}
