//! The Redis front door over TCP: one thread per client connection, each running a
//! [`Session`] and a [`ReplyQueue`] and sending the data commands to the
//! [`Backend`](crate::backend::Backend) as [`Job`]s.
//!
//! A connection carries out its commands in order where order can be seen: pipelined commands
//! (those of one read from the socket) run concurrently as long as none touches a key another
//! one in flight writes and nothing is watched; any other command waits for those in flight
//! first (a pipelined `GET` after a `SET` of the same key sees it). Replies go out in command
//! order once every command of a read has been answered. Many connections run at once, each
//! its own transactions. A lone command's reply is written by the backend itself, the
//! connection's thread having gone back to reading (see `Handoff`): one wake-up of that thread
//! per command instead of two.
//!
//! **WATCH.** When a command adds watched keys, the connection reads them (one read-only
//! transaction) and keeps each record as the key's *expected* contents. Each later command's
//! reads of a watched key are compared with it: a different record means the key changed
//! since `WATCH`, so the expectation becomes *broken* (as does a write of the key by the
//! connection itself, which also fails `EXEC` in Redis). `EXEC` sends the expectations with
//! its operations; the backend reads the keys inside the `EXEC`'s transaction and answers a
//! null array, doing nothing, unless each still holds its expected record. The commit checks
//! the versions of everything read, so the block's writes apply only to the state the client
//! saw. One difference from Redis: a key changed and changed back to the same bytes between
//! two of the client's reads (A → B → A) is not noticed; what the client computed from A is
//! still right then.
//!
//! Bounds: a command waits at most [`ANSWER_WAIT`] for the backend, then answers an error; a
//! connection that has this many replies pending stops reading (it never does: it answers
//! everything it has read before it reads more).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use selfman_core::{ComponentDefinition, Handled, ProvidedRef, Required, Setup};
use selfman_ports::{Listing, Range, Ring, RingId, RingIndication, Version};

use crate::backend::{
    BackendStats, Done, Expect, Failure, Job, KeyChange, NotifyRequest, NotifyService, Replier,
    StoreService,
};
use crate::command::{Key, Op};
use crate::data;
use crate::node::StorePayload;
use crate::resp::{Limits, Reply, RequestDecoder};
use crate::session::{message, Topic};
use crate::session::{
    Action, Completion, ExecOutcome, ReplyQueue, Request, Seq, Session, SessionConfig,
};
use crate::walk::{WalkError, WalkJob, WalkService, WalkStats};

/// The longest a command waits for the backend before it answers an error.
pub const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// What the node's ring tells about it, for readiness, `INFO` and shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingState {
    /// This peer's identifier, once joined.
    pub id: Option<RingId>,
    /// The range it owns.
    pub range: Option<Range>,
    /// Whether it has left the ring (gracefully).
    pub left: bool,
    /// Whether a join was refused (its position is taken).
    pub refused: bool,
    /// The successor and predecessor last told (by the join or a neighbour change).
    pub succ: Option<selfman_ports::Peer>,
    /// See `succ`.
    pub pred: Option<selfman_ports::Peer>,
    /// How often the successor changed after the join.
    pub succ_changes: u64,
    /// How often the predecessor changed after the join.
    pub pred_changes: u64,
    /// How often the owned range changed (gained or lost a part).
    pub range_changes: u64,
}

/// The ring's state, shared.
pub type SharedRingState = Arc<Mutex<RingState>>;

/// Records the ring's indications into a [`SharedRingState`].
pub struct RingWatcher {
    ring: Required<Ring<StorePayload>>,
    state: SharedRingState,
}

impl RingWatcher {
    /// A watcher writing into `state`.
    pub fn new(state: SharedRingState) -> RingWatcher {
        RingWatcher { ring: Required::new(), state }
    }

    fn on_ring(&mut self, i: RingIndication<StorePayload>) -> Handled {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match i {
            RingIndication::Joined { me, range, pred, succ } => {
                s.id = Some(me.id);
                s.range = Some(range);
                (s.pred, s.succ) = (Some(pred), Some(succ));
            }
            RingIndication::Neighbours(n) => {
                if n.succ != s.succ {
                    s.succ_changes += 1;
                    s.succ = n.succ;
                }
                if n.pred != s.pred {
                    s.pred_changes += 1;
                    s.pred = n.pred;
                }
            }
            RingIndication::Responsibility(change) => {
                s.range = change.now;
                s.range_changes += 1;
            }
            RingIndication::Left => s.left = true,
            RingIndication::JoinRefused(_) => s.refused = true,
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for RingWatcher {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.ring, Self::on_ring);
    }
}

/// What every connection of a node shares.
#[derive(Debug)]
pub struct Shared {
    /// Where jobs go.
    pub service: ProvidedRef<StoreService>,
    /// Where keyspace subscriptions go.
    pub notifier: ProvidedRef<NotifyService>,
    /// The backend's counters.
    pub stats: Arc<BackendStats>,
    /// Where walks over the ring go (`SCAN`, `KEYS`, `DBSIZE`, `FLUSHALL`).
    pub walker: ProvidedRef<WalkService>,
    /// The walker's counters.
    pub walk_stats: Arc<WalkStats>,
    /// The ring's state.
    pub ring: SharedRingState,
    /// The settings `CONFIG GET` and `INFO` show, name → value.
    pub settings: BTreeMap<String, String>,
    /// The default user's password, if any.
    pub password: Option<Vec<u8>>,
    /// The request decoder's bounds.
    pub limits: Limits,
    /// Connections open now.
    pub clients: AtomicU64,
    /// The next connection's id.
    pub next_id: AtomicU64,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Set when the node stops: connections end after their current command.
    pub stopping: AtomicBool,
    /// When the node started.
    pub started: Instant,
    /// Connections accepted since the start.
    pub connections_total: AtomicU64,
    /// Commands received, by name.
    pub commands: CommandCounts,
}

/// Commands received, one counter per command of [`COMMANDS`](crate::command::COMMANDS) and
/// one for names the table does not have; counted as decoded, before authentication or
/// queueing (a `MULTI` block counts `MULTI`, each queued command, and `EXEC`).
#[derive(Debug)]
pub struct CommandCounts {
    counts: Vec<AtomicU64>,
}

impl Default for CommandCounts {
    fn default() -> Self {
        let n = crate::command::COMMANDS.len() + 1;
        CommandCounts { counts: (0..n).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl CommandCounts {
    /// Counts one command named `name` (any case).
    pub fn count(&self, name: &[u8]) {
        let table = crate::command::COMMANDS;
        let i = crate::command::lookup(name)
            .and_then(|spec| {
                // the spec's place in the table, from its address
                let at = spec as *const crate::command::CommandSpec as usize;
                let first = table.as_ptr() as usize;
                let i = at.checked_sub(first)? / std::mem::size_of::<crate::command::CommandSpec>();
                (i < table.len()).then_some(i)
            })
            .unwrap_or(table.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Every command counted at least once, as (name, count), in table order; names the table
    /// does not have are `unknown`.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        let table = crate::command::COMMANDS;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| (table.get(i).map_or("unknown", |s| s.name), c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Data movement at this node, counted from the replication layer's
/// [`Movement`](selfman_ports::Movement) indications.
#[derive(Debug, Default)]
pub struct MovementStats {
    /// Ranges handed over to a new holder, and their items.
    pub handed_over: AtomicU64,
    /// Items in them.
    pub handed_over_items: AtomicU64,
    /// Their key and value bytes.
    pub handed_over_bytes: AtomicU64,
    /// Ranges received whole from their old holder.
    pub received: AtomicU64,
    /// Items in them.
    pub received_items: AtomicU64,
    /// Their key and value bytes.
    pub received_bytes: AtomicU64,
    /// Transfers given up.
    pub transfers_aborted: AtomicU64,
    /// Ranges rebuilt from the other replicas.
    pub rebuilt: AtomicU64,
    /// Items copied in by rebuilds.
    pub rebuilt_items: AtomicU64,
    /// Their key and value bytes.
    pub rebuilt_bytes: AtomicU64,
    /// Anti-entropy (repair) rounds finished.
    pub repair_rounds: AtomicU64,
    /// Bytes both sides sent for those rounds.
    pub repair_bytes: AtomicU64,
    /// Items repair took from the other side.
    pub repair_fetched: AtomicU64,
    /// Items repair gave the other side.
    pub repair_pushed: AtomicU64,
}

/// Counts the replication layer's movements into a [`MovementStats`]; connect it with a
/// selector that lets only [`ReplicationIndication::Movement`](selfman_ports::ReplicationIndication::Movement) through.
pub struct MovementWatcher {
    repl: Required<selfman_ports::Replication>,
    stats: Arc<MovementStats>,
}

impl MovementWatcher {
    /// A watcher counting into `stats`.
    pub fn new(stats: Arc<MovementStats>) -> MovementWatcher {
        MovementWatcher { repl: Required::new(), stats }
    }

    fn on_repl(&mut self, i: selfman_ports::ReplicationIndication) -> Handled {
        use selfman_ports::Movement as M;
        let selfman_ports::ReplicationIndication::Movement(m) = i else { return Ok(()) };
        let s = &self.stats;
        let add = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Ordering::Relaxed);
        };
        match m {
            M::HandedOver { items, bytes, .. } => {
                add(&s.handed_over, 1);
                add(&s.handed_over_items, items);
                add(&s.handed_over_bytes, bytes);
            }
            M::Received { items, bytes, .. } => {
                add(&s.received, 1);
                add(&s.received_items, items);
                add(&s.received_bytes, bytes);
            }
            M::TransferAborted { .. } => add(&s.transfers_aborted, 1),
            M::Rebuilt { items, bytes, .. } => {
                add(&s.rebuilt, 1);
                add(&s.rebuilt_items, items);
                add(&s.rebuilt_bytes, bytes);
            }
            M::Repaired { fetched, pushed, bytes, .. } => {
                add(&s.repair_rounds, 1);
                add(&s.repair_bytes, bytes);
                add(&s.repair_fetched, fetched);
                add(&s.repair_pushed, pushed);
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for MovementWatcher {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.repl, Self::on_repl);
    }
}

/// Accepts connections on `listener` until [`Shared::stopping`], one thread each.
pub fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let _ = listener.set_nonblocking(true);
    while !shared.stopping.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                let _ = std::thread::Builder::new()
                    .name("redis-conn".into())
                    .spawn(move || connection(stream, &shared));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn connection(mut stream: TcpStream, shared: &Shared) {
    shared.clients.fetch_add(1, Ordering::Relaxed);
    shared.connections_total.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut conn = Connection::new(shared, stream.try_clone().ok());
    let mut buf = vec![0u8; 64 * 1024];
    let mut input: Vec<u8> = Vec::new();
    let mut listening = false;
    'conn: while !shared.stopping.load(Ordering::Acquire) {
        if listening == conn.subscribed.is_empty() {
            // A subscriber looks for key changes between reads, so it reads with a short wait.
            listening = !listening;
            let wait = if listening { NOTIFY_POLL } else { Duration::from_millis(200) };
            let _ = stream.set_read_timeout(Some(wait));
        }
        let read = stream.read(&mut buf);
        // whatever woke this thread, the reply the backend was writing comes first
        if conn.settle(&mut stream).is_err() {
            break;
        }
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => 0,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if n > 0 {
            input.extend_from_slice(&buf[..n]);
            let used = conn.receive(&input);
            input.drain(..used);
        }
        conn.deliver_changes();
        let out = conn.queue.take_output();
        if !out.is_empty() && stream.write_all(&out).is_err() {
            break 'conn;
        }
        if conn.queue.is_closed() {
            break;
        }
    }
    conn.abandon();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    conn.unsubscribe_all();
    shared.clients.fetch_sub(1, Ordering::Relaxed);
}

/// One client connection's state above the session: its reply queue and watched keys'
/// expectations.
struct Connection<'a> {
    shared: &'a Shared,
    session: Session,
    decoder: RequestDecoder,
    queue: ReplyQueue,
    expected: BTreeMap<Key, Expect>,
    in_flight: Vec<InFlight>,
    id: u64,
    /// Keys whose keyspace channel this connection subscribed to.
    subscribed: std::collections::BTreeSet<Key>,
    changes: (mpsc::Sender<KeyChange>, mpsc::Receiver<KeyChange>),
    /// A second handle of the client's socket, for the backend to write a reply through.
    direct: Option<TcpStream>,
    /// The command whose reply the backend writes, holding the reply queue meanwhile.
    handed: Option<Arc<Handoff>>,
}

/// A pipelined command running while others run.
struct InFlight {
    seq: Seq,
    answer: Arc<Handoff>,
    keys: Vec<Key>,
    write: bool,
}

/// The answer to one command in flight, between the connection's thread and the backend.
///
/// Normally the backend leaves the answer here and the connection's thread, waiting for it,
/// completes the command in its [`ReplyQueue`] and writes the reply. When that command is the
/// only one the connection waits for (nothing watched, nothing subscribed, no other reply
/// pending: a client that sent one command and waits for its reply), the thread instead hands
/// its reply queue over and goes back to reading the socket. The backend then completes the
/// command in that queue and writes the reply itself, so a command costs the connection's
/// thread one wake-up (the client's next bytes) instead of two (the answer, then the next
/// bytes). The thread takes the queue back as soon as its read returns, whatever woke it
/// (next command, timeout, end of stream), before it does anything else, waiting for the
/// answer if need be: replies stay in command order.
struct Handoff {
    state: Mutex<HandoffState>,
    answered: Condvar,
}

enum HandoffState {
    /// No answer yet; `waiting` when the connection's thread waits for it.
    Open { waiting: bool },
    /// The answer, for the connection's thread to collect.
    Answered(Done),
    /// The connection's reply queue, for the backend to complete `seq` in and write out on
    /// `stream`; `waiting` as for `Open`.
    Direct { queue: ReplyQueue, seq: Seq, stream: TcpStream, waiting: bool },
    /// The backend wrote the reply but `rest` (the client did not take it at once); the queue
    /// goes back to the connection.
    Written { queue: ReplyQueue, rest: Vec<u8> },
    /// Given up: a late answer is dropped.
    Abandoned,
}

/// How long the backend waits for a client's socket to take a reply before it leaves the
/// rest to the connection's thread (which writes it once its read returns, within the read
/// timeout, 200 ms).
const DIRECT_WRITE_WAIT: Duration = Duration::from_millis(2);

impl Handoff {
    fn new() -> Arc<Handoff> {
        Arc::new(Handoff {
            state: Mutex::new(HandoffState::Open { waiting: false }),
            answered: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandoffState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The backend's answer (on the backend's thread); true if it wrote the reply.
    fn answer(&self, done: Done) -> bool {
        let mut state = self.lock();
        let mut wrote = false;
        let wake = match std::mem::replace(&mut *state, HandoffState::Abandoned) {
            HandoffState::Open { waiting } => {
                *state = HandoffState::Answered(done);
                waiting
            }
            HandoffState::Direct { mut queue, seq, stream, waiting } => {
                let _ = queue.complete(seq, Completion::Reply(reply_of(done)));
                let out = queue.take_output();
                let n = write_nonblocking(&stream, &out, DIRECT_WRITE_WAIT);
                *state = HandoffState::Written { queue, rest: out[n..].to_vec() };
                wrote = true;
                waiting
            }
            other => {
                *state = other; // answered twice, or given up: keep what is there
                false
            }
        };
        drop(state);
        if wake {
            self.answered.notify_one();
        }
        wrote
    }

    /// Waits (at most `wait`) while `busy` holds of the state; false if the wait ran out.
    fn wait_while<'s>(
        &'s self,
        mut state: std::sync::MutexGuard<'s, HandoffState>,
        wait: Duration,
        busy: impl Fn(&HandoffState) -> bool,
    ) -> std::sync::MutexGuard<'s, HandoffState> {
        let deadline = Instant::now() + wait;
        while busy(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            set_waiting(&mut state, true);
            state = self
                .answered
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            set_waiting(&mut state, false);
        }
        state
    }

    /// The answer, waiting at most `wait` for it (on the connection's thread); `None` if it
    /// did not come in time (a later one is dropped).
    fn take(&self, wait: Duration) -> Option<Done> {
        let state = self.lock();
        let mut state = self.wait_while(state, wait, |s| matches!(s, HandoffState::Open { .. }));
        match std::mem::replace(&mut *state, HandoffState::Abandoned) {
            HandoffState::Answered(done) => Some(done),
            _ => None,
        }
    }

    /// Hands `queue` over for the backend to complete `seq` in and write to `stream`, unless
    /// the answer is already here: then the queue comes back at once (`Err`).
    fn hand_over(&self, queue: ReplyQueue, seq: Seq, stream: TcpStream) -> Result<(), ReplyQueue> {
        let mut state = self.lock();
        match &*state {
            HandoffState::Open { .. } => {
                *state = HandoffState::Direct { queue, seq, stream, waiting: false };
                Ok(())
            }
            _ => Err(queue),
        }
    }

    /// Takes the queue back (on the connection's thread), waiting at most `wait` for the
    /// backend to write; with the bytes it could not write, or, if it did not answer in time,
    /// the command `seq` it did not answer (the queue still waits for it).
    fn take_back(&self, wait: Duration) -> (ReplyQueue, Result<Vec<u8>, Seq>) {
        let state = self.lock();
        let mut state = self.wait_while(state, wait, |s| matches!(s, HandoffState::Direct { .. }));
        match std::mem::replace(&mut *state, HandoffState::Abandoned) {
            HandoffState::Written { queue, rest } => (queue, Ok(rest)),
            HandoffState::Direct { queue, seq, .. } => (queue, Err(seq)),
            _ => unreachable!("a handed-over queue is with the backend or written"),
        }
    }
}

fn set_waiting(state: &mut HandoffState, on: bool) {
    if let HandoffState::Open { waiting } | HandoffState::Direct { waiting, .. } = state {
        *waiting = on;
    }
}

/// The reply to a single command from the backend's answer.
fn reply_of(done: Done) -> Reply {
    match done.result {
        Ok(mut replies) => replies.pop().unwrap_or(Reply::Null),
        Err(Failure::Error(reply)) => reply,
        Err(Failure::WatchedKeyChanged) => Reply::error("ERR internal: no key was watched"),
    }
}

/// Writes what `stream` takes of `bytes` without blocking, retrying for at most `wait` while
/// its send buffer is full; returns how many bytes went out.
fn write_nonblocking(stream: &TcpStream, bytes: &[u8], wait: Duration) -> usize {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while n < bytes.len() {
        let rest = &bytes[n..];
        // SAFETY: `rest` is a live slice of `rest.len()` bytes and `fd` an open socket (the
        // `TcpStream` is borrowed for the call).
        let sent = unsafe {
            libc::send(
                fd,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent > 0 {
            n += sent as usize;
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            ErrorKind::Interrupted => {}
            ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                let ms = left.as_millis().clamp(1, 1_000) as libc::c_int;
                // SAFETY: one valid `pollfd` for the call's duration.
                unsafe { libc::poll(&mut p, 1, ms) };
            }
            _ => break, // the connection's thread finds the error on its next read or write
        }
    }
    n
}

impl<'a> Connection<'a> {
    fn new(shared: &'a Shared, direct: Option<TcpStream>) -> Connection<'a> {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut config = SessionConfig::new(id);
        config.password = shared.password.clone();
        Connection {
            shared,
            session: Session::new(config),
            decoder: RequestDecoder::new(shared.limits),
            queue: ReplyQueue::new(),
            expected: BTreeMap::new(),
            in_flight: Vec::new(),
            id,
            subscribed: std::collections::BTreeSet::new(),
            changes: mpsc::channel(),
            direct,
            handed: None,
        }
    }

    /// Takes back the reply queue handed to the backend, if any, and writes what it could not
    /// (waiting for its answer if need be: at most [`ANSWER_WAIT`], then the command is
    /// answered with an error as [`flush`](Self::flush) does). `Err` if the socket failed.
    fn settle(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        let Some(handoff) = self.handed.take() else { return Ok(()) };
        let (queue, written) = handoff.take_back(ANSWER_WAIT);
        self.queue = queue;
        match written {
            Ok(rest) if rest.is_empty() => Ok(()),
            Ok(rest) => stream.write_all(&rest),
            Err(seq) => {
                let reply = Reply::error("ERR the store did not answer in time");
                let _ = self.queue.complete(seq, Completion::Reply(reply));
                Ok(())
            }
        }
    }

    /// The connection ends: a reply the backend still has to write is dropped.
    fn abandon(&mut self) {
        if let Some(handoff) = self.handed.take() {
            *handoff.lock() = HandoffState::Abandoned;
        }
    }

    /// At the end of a read's commands: hands the reply queue to the backend if the
    /// connection waits for exactly one command's answer and for nothing else (see
    /// [`Handoff`]); true if it did.
    fn hand_over(&mut self) -> bool {
        let one = self.in_flight.len() == 1
            && self.queue.pending() == 1
            && self.queue.output().is_empty()
            && self.expected.is_empty()
            && self.subscribed.is_empty()
            && !self.queue.is_closed();
        let Some(stream) = self.direct.as_ref().filter(|_| one) else { return false };
        let Ok(stream) = stream.try_clone() else { return false };
        let f = self.in_flight.pop().expect("one command in flight");
        match f.answer.hand_over(std::mem::take(&mut self.queue), f.seq, stream) {
            Ok(()) => {
                self.handed = Some(f.answer);
                true
            }
            Err(queue) => {
                self.queue = queue;
                self.in_flight.push(f);
                false
            }
        }
    }

    /// Pushes a keyspace message for each change of a subscribed key told since the last call.
    fn deliver_changes(&mut self) {
        while let Ok(change) = self.changes.1.try_recv() {
            if !self.subscribed.contains(&change.key) {
                continue; // unsubscribed meanwhile
            }
            let mut channel = KEYSPACE.to_vec();
            channel.extend_from_slice(&change.key);
            let event: &[u8] = if change.value.is_some() { b"set" } else { b"del" };
            self.queue.push(&message(&channel, event));
        }
    }

    fn subscription(&mut self, topics: Vec<Topic>, on: bool) {
        for t in topics {
            let Topic::Channel(channel) = t else { continue };
            let Some(key) = channel.strip_prefix(KEYSPACE).map(<[u8]>::to_vec) else { continue };
            let conn = self.id;
            let request = if on {
                if !self.subscribed.insert(key.clone()) {
                    continue;
                }
                NotifyRequest::Subscribe { conn, key, to: self.changes.0.clone() }
            } else {
                if !self.subscribed.remove(&key) {
                    continue;
                }
                NotifyRequest::Unsubscribe { conn, key }
            };
            let _ = self.shared.notifier.request(request);
        }
    }

    fn unsubscribe_all(&mut self) {
        for key in std::mem::take(&mut self.subscribed) {
            let _ = self.shared.notifier.request(NotifyRequest::Unsubscribe { conn: self.id, key });
        }
    }

    /// Decodes and carries out every whole request in `input`; returns the bytes used.
    fn receive(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        let mut actions = Vec::new();
        while !self.session.is_closed() {
            self.decoder.set_authenticated(self.session.authenticated());
            match self.decoder.decode(&input[used..]) {
                Ok((n, Some(cmd))) => {
                    used += n;
                    if let Some(name) = cmd.first() {
                        self.shared.commands.count(name);
                    }
                    let refusal = cmd.split_first().and_then(|(name, args)| {
                        if name.eq_ignore_ascii_case(b"psubscribe") {
                            Some(NO_PATTERNS)
                        } else if name.eq_ignore_ascii_case(b"subscribe")
                            && args
                                .iter()
                                .any(|c| !c.starts_with(KEYSPACE) || c.len() == KEYSPACE.len())
                        {
                            Some(NO_CHANNELS)
                        } else {
                            None
                        }
                    });
                    if let Some(text) = refusal.filter(|_| self.session.authenticated()) {
                        self.session.refuse(Reply::error(text), &mut actions);
                    } else {
                        self.session.command_into(cmd, &mut actions);
                    }
                    for a in actions.drain(..) {
                        self.act(a);
                    }
                    self.sync_watch();
                }
                Ok((n, None)) => {
                    if !self.hand_over() {
                        self.flush();
                    }
                    return used + n;
                }
                Err(error) => {
                    self.shared.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    self.session.protocol_error(&error, &mut actions);
                    for a in actions.drain(..) {
                        self.act(a);
                    }
                    self.flush();
                    return input.len();
                }
            }
        }
        self.flush();
        used
    }

    /// Whether `op` may run while the commands in flight run: nothing is watched, and it
    /// touches none of their keys where either writes (so the connection's commands on one key
    /// still take effect in order). Pipelined commands that pass run concurrently: the client
    /// sent them all before any reply, so any order of them is one it could have seen.
    fn may_overlap(&self, op: &Op) -> bool {
        if !self.expected.is_empty() || !data::is_key_op(op) {
            return false;
        }
        let keys = op.keys();
        self.in_flight.iter().all(|f| {
            !(f.write || op.is_write()) || keys.iter().all(|k| !f.keys.iter().any(|x| x == k))
        })
    }

    /// Waits for every command in flight and completes it, in order.
    fn flush(&mut self) {
        for f in std::mem::take(&mut self.in_flight) {
            let reply = match f.answer.take(ANSWER_WAIT) {
                Some(done) => reply_of(done),
                None => Reply::error("ERR the store did not answer in time"),
            };
            let _ = self.queue.complete(f.seq, Completion::Reply(reply));
        }
    }

    fn act(&mut self, action: Action) {
        match self.queue.issue(action) {
            None => {}
            Some(Request::Subscribe(topics)) => self.subscription(topics, true),
            Some(Request::Unsubscribe(topics)) => self.subscription(topics, false),
            Some(Request::Execute { seq, op }) if self.may_overlap(&op) => {
                let answer = Handoff::new();
                let reply = {
                    let answer = Arc::clone(&answer);
                    let stats = Arc::clone(&self.shared.stats);
                    Replier::Call(Arc::new(move |done| {
                        if answer.answer(done) {
                            stats.replies_written.fetch_add(1, Ordering::Relaxed);
                        }
                    }))
                };
                let write = op.is_write();
                let keys = op.keys().into_iter().map(<[u8]>::to_vec).collect();
                match self.shared.service.request(Job { ops: vec![op], watched: Vec::new(), reply })
                {
                    Ok(()) => self.in_flight.push(InFlight { seq, answer, keys, write }),
                    Err(e) => {
                        let reply = Reply::error(format!("ERR the node is stopping ({e})"));
                        let _ = self.queue.complete(seq, Completion::Reply(reply));
                    }
                }
            }
            Some(Request::Execute { seq, op }) => {
                self.flush();
                let reply = self.execute(op);
                let _ = self.queue.complete(seq, Completion::Reply(reply));
            }
            Some(Request::Exec { seq, transaction }) => {
                self.flush();
                let outcome = self.exec(transaction.ops, &transaction.watched);
                let _ = self.queue.complete(seq, Completion::Exec(outcome));
            }
        }
    }

    /// Submits a job and waits for its outcome (bounded).
    fn run(&mut self, ops: Vec<Op>, watched: Vec<(Key, Expect)>) -> Done {
        let (reply, answers) = mpsc::channel();
        let writes: Vec<Key> = ops
            .iter()
            .filter(|op| op.is_write())
            .flat_map(|op| op.keys().into_iter().map(<[u8]>::to_vec))
            .collect();
        let job = Job { ops, watched, reply: reply.into() };
        let done = match self.shared.service.request(job) {
            Err(e) => Done {
                result: Err(Failure::Error(Reply::error(format!(
                    "ERR the node is stopping ({e})"
                )))),
                observed: Vec::new(),
            },
            Ok(()) => answers.recv_timeout(ANSWER_WAIT).unwrap_or_else(|_| Done {
                result: Err(Failure::Error(Reply::error("ERR the store did not answer in time"))),
                observed: Vec::new(),
            }),
        };
        for (k, record) in &done.observed {
            if let Some(e @ Expect::Record(_)) = self.expected.get_mut(k) {
                if *e != Expect::Record(record.clone()) {
                    *e = Expect::Broken;
                }
            }
        }
        if done.result.is_ok() {
            for k in writes {
                if let Some(e) = self.expected.get_mut(&k) {
                    *e = Expect::Broken;
                }
            }
        }
        done
    }

    fn execute(&mut self, op: Op) -> Reply {
        if !data::is_key_op(&op) {
            return self.store_wide(&op);
        }
        match self.run(vec![op], Vec::new()).result {
            Ok(mut replies) => replies.pop().unwrap_or(Reply::Null),
            Err(Failure::Error(reply)) => reply,
            Err(Failure::WatchedKeyChanged) => Reply::error("ERR internal: no key was watched"),
        }
    }

    fn exec(&mut self, ops: Vec<Op>, watched: &[Key]) -> ExecOutcome {
        if let Some(op) = ops.iter().find(|op| !data::is_key_op(op)) {
            let name = format!("{op:?}");
            let name = name.split([' ', '{']).next().unwrap_or("").to_uppercase();
            return ExecOutcome::Failed(Reply::error(format!(
                "EXECABORT {name} cannot run inside a transaction in this store; nothing was done"
            )));
        }
        let watched: Vec<(Key, Expect)> = watched
            .iter()
            .map(|k| (k.clone(), self.expected.get(k).cloned().unwrap_or(Expect::Broken)))
            .collect();
        self.expected.clear();
        match self.run(ops, watched).result {
            Ok(replies) => ExecOutcome::Committed(replies),
            Err(Failure::WatchedKeyChanged) => ExecOutcome::WatchedKeyChanged,
            Err(Failure::Error(reply)) => ExecOutcome::Failed(reply),
        }
    }

    /// Drops the expectations of keys no longer watched and reads the newly watched ones.
    fn sync_watch(&mut self) {
        if self.session.watched().next().is_some() {
            self.flush();
        }
        let watched: Vec<Key> = self.session.watched().map(<[u8]>::to_vec).collect();
        if watched.is_empty() {
            self.expected.clear();
            return;
        }
        self.expected.retain(|k, _| watched.binary_search(k).is_ok());
        let new: Vec<Key> =
            watched.into_iter().filter(|k| !self.expected.contains_key(k)).collect();
        if new.is_empty() {
            return;
        }
        let ops = new.iter().map(|k| Op::Exists { keys: vec![k.clone()] }).collect();
        let done = self.run(ops, Vec::new());
        let ok = done.result.is_ok();
        let observed: BTreeMap<Key, Option<Vec<u8>>> = done.observed.into_iter().collect();
        for k in new {
            let e = match observed.get(&k) {
                Some(record) if ok => Expect::Record(record.clone()),
                _ => Expect::Broken,
            };
            self.expected.insert(k, e);
        }
    }

    /// Commands on the whole store.
    fn store_wide(&mut self, op: &Op) -> Reply {
        match op {
            Op::Info { sections } => {
                Reply::Verbatim { format: *b"txt", text: self.info(sections).into_bytes() }
            }
            Op::ConfigGet { patterns } => {
                let mut pairs = Vec::new();
                for (name, value) in &self.shared.settings {
                    if patterns.iter().any(|p| glob(p, name.as_bytes())) {
                        pairs.push((Reply::bulk(name), Reply::bulk(value)));
                    }
                }
                Reply::Map(pairs)
            }
            Op::DbSize => match self.all_keys(false) {
                Ok(keys) => Reply::Integer(keys.len() as i64),
                Err(e) => e,
            },
            Op::Keys { pattern } => match self.all_keys(false) {
                Ok(keys) => Reply::Array(
                    keys.into_keys().filter(|k| redis_glob(pattern, k)).map(Reply::Bulk).collect(),
                ),
                Err(e) => e,
            },
            Op::Scan { cursor, pattern, count, kind } => {
                self.scan(*cursor, pattern.as_deref(), count.unwrap_or(10), kind.as_deref())
            }
            Op::FlushAll { .. } | Op::FlushDb { .. } => self.flush_all(),
            _ => Reply::error("ERR internal: a key command reached the store-wide path"),
        }
    }

    /// Walks `[from, to)` over the ring (bounded by [`ANSWER_WAIT`]).
    fn walk(
        &self,
        from: RingId,
        to: Option<RingId>,
        limit: u32,
        values: bool,
    ) -> Result<Listing, Reply> {
        let (reply, answer) = mpsc::channel();
        let job = WalkJob { from, to, limit, values, reply };
        self.shared
            .walker
            .request(job)
            .map_err(|e| Reply::error(format!("ERR the node is stopping ({e})")))?;
        match answer.recv_timeout(ANSWER_WAIT) {
            Ok(Ok(listing)) => Ok(listing),
            Ok(Err(WalkError::NotInRing)) => {
                Err(Reply::error("ERR this node is not in a ring yet; try again"))
            }
            Ok(Err(WalkError::NoAnswer)) | Err(_) => Err(Reply::error(WALK_FAILED)),
        }
    }

    /// Every replica of `[from, to)`, page by page, merged into `items`.
    fn walk_all(
        &self,
        from: RingId,
        to: Option<RingId>,
        values: bool,
        items: &mut Merged,
    ) -> Result<(), Reply> {
        let mut at = Some(from);
        while let Some(from) = at {
            let page = self.walk(from, to, WALK_PAGE, values)?;
            merge(items, page.replicas.into_iter().map(|r| (r.key, r.version, r.value)));
            at = page.next;
        }
        Ok(())
    }

    /// Every key of the store, with its record (empty unless `values`): a walk over the whole
    /// ring merging each item's replicas, the newest version deciding (deleted: left out).
    fn all_keys(&self, values: bool) -> Result<BTreeMap<Key, Vec<u8>>, Reply> {
        let mut items = Merged::new();
        self.walk_all(RingId(0), None, values, &mut items)?;
        Ok(present(items))
    }

    /// One `SCAN` step. The cursor is a position in the first sector of the ring,
    /// `[0, 2^64/f)`, which holds exactly one replica of every item: a step lists up to
    /// `count` replicas from the cursor there, then the same stretch shifted into each other
    /// sector (widened by one position each side, for the rounding of the replica offsets),
    /// and answers the keys whose newest version is a value. The next cursor is where the
    /// first-sector listing stopped (0 at its end).
    fn scan(&self, cursor: u64, pattern: Option<&[u8]>, count: u64, kind: Option<&[u8]>) -> Reply {
        let f: u32 = self.shared.settings.get("replicas").and_then(|v| v.parse().ok()).unwrap_or(4);
        let shift = |j: u32| RingId(0).replica(j, f).0;
        let sector_end = (f > 1).then(|| RingId(shift(1)));
        if sector_end.is_some_and(|e| cursor >= e.0) {
            return scan_reply(0, Vec::new());
        }
        let limit = count.clamp(1, u64::from(WALK_PAGE)) as u32;
        let values = kind.is_some();
        let first = match self.walk(RingId(cursor), sector_end, limit, values) {
            Ok(page) => page,
            Err(e) => return e,
        };
        let stop = first.next.map_or_else(
            || sector_end.map_or(1u128 << 64, |e| u128::from(e.0)),
            |n| u128::from(n.0),
        );
        let mut items = Merged::new();
        let mut seen_first = std::collections::BTreeSet::new();
        for r in &first.replicas {
            seen_first.insert(r.key.clone());
        }
        merge(&mut items, first.replicas.into_iter().map(|r| (r.key, r.version, r.value)));
        for j in 1..f {
            let from = (u128::from(cursor) + u128::from(shift(j))).saturating_sub(1);
            let to = stop + u128::from(shift(j)) + 1;
            let from = RingId(u64::try_from(from).unwrap_or(u64::MAX));
            let to = u64::try_from(to).ok().map(RingId);
            if let Err(e) = self.walk_all(from, to, values, &mut items) {
                return e;
            }
        }
        let majority = f / 2 + 1;
        let keys = items
            .into_iter()
            .filter(|(k, m)| seen_first.contains(k) || m.replicas >= majority)
            .filter_map(|(k, m)| m.value.map(|v| (k, v)))
            .filter(|(k, _)| pattern.is_none_or(|p| redis_glob(p, k)))
            .filter(|(_, v)| kind.is_none_or(|t| type_name(v).as_bytes().eq_ignore_ascii_case(t)))
            .map(|(k, _)| k)
            .collect();
        let next = first.next.map_or(0, |n| n.0);
        scan_reply(next, keys)
    }

    /// `FLUSHALL`/`FLUSHDB`: every key found by a walk is deleted, [`FLUSH_BATCH`] keys per
    /// transaction.
    fn flush_all(&mut self) -> Reply {
        let keys = match self.all_keys(false) {
            Ok(keys) => keys,
            Err(e) => return e,
        };
        let keys: Vec<Key> = keys.into_keys().collect();
        for batch in keys.chunks(FLUSH_BATCH) {
            let op = Op::Del { keys: batch.to_vec() };
            if let Err(Failure::Error(e)) = self.run(vec![op], Vec::new()).result {
                return e;
            }
        }
        Reply::ok()
    }

    fn info(&self, sections: &[Vec<u8>]) -> String {
        let all = sections.is_empty()
            || sections.iter().any(|s| {
                s.as_slice() == b"all"
                    || s.as_slice() == b"default"
                    || s.as_slice() == b"everything"
            });
        let want = |name: &str| all || sections.iter().any(|s| s.as_slice() == name.as_bytes());
        let sh = self.shared;
        let mut out = String::new();
        if want("server") {
            out.push_str("# Server\r\n");
            out.push_str(&format!("selfman_version:{}\r\n", env!("CARGO_PKG_VERSION")));
            out.push_str("redis_version:7.0.0\r\nredis_mode:standalone\r\n");
            out.push_str(&format!("process_id:{}\r\n", std::process::id()));
            out.push_str(&format!("uptime_in_seconds:{}\r\n", sh.started.elapsed().as_secs()));
            for key in ["redis", "listen"] {
                if let Some(v) = sh.settings.get(key) {
                    out.push_str(&format!("{key}_address:{v}\r\n"));
                }
            }
            out.push_str("\r\n");
        }
        if want("clients") {
            out.push_str("# Clients\r\n");
            out.push_str(&format!(
                "connected_clients:{}\r\n\r\n",
                sh.clients.load(Ordering::Relaxed)
            ));
        }
        if want("keyspace") {
            // The store does not count its keys here (a count is a walk over the ring: DBSIZE).
            out.push_str("# Keyspace\r\n\r\n");
        }
        if want("selfman") {
            let ring = sh.ring.lock().map(|r| r.clone()).unwrap_or_default();
            let st = &sh.stats;
            out.push_str("# Selfman\r\n");
            out.push_str(&format!("ring_joined:{}\r\n", u8::from(ring.id.is_some())));
            if let Some(id) = ring.id {
                out.push_str(&format!("ring_id:{}\r\n", id.0));
            }
            if let Some(r) = ring.range {
                out.push_str(&format!("ring_range:{r:?}\r\n"));
            }
            if let Some(f) = sh.settings.get("replicas") {
                out.push_str(&format!("replicas:{f}\r\n"));
            }
            let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
            out.push_str(&format!("tx_committed:{}\r\n", c(&st.committed)));
            out.push_str(&format!("tx_aborted:{}\r\n", c(&st.aborted)));
            out.push_str(&format!("tx_watch_failed:{}\r\n", c(&st.watch_failed)));
            out.push_str(&format!("tx_failed:{}\r\n", c(&st.failed)));
            out.push_str(&format!("tx_stray_answers:{}\r\n", c(&st.stray)));
            out.push_str(&format!("fast_reads:{}\r\n", c(&st.fast_reads)));
            out.push_str(&format!("fast_read_fallbacks:{}\r\n", c(&st.fast_read_fallbacks)));
            out.push_str(&format!("keyspace_notifications:{}\r\n", c(&st.notifications)));
            out.push_str(&format!("replies_written_by_backend:{}\r\n", c(&st.replies_written)));
            let w = &sh.walk_stats;
            out.push_str(&format!("walks:{}\r\n", c(&w.walks)));
            out.push_str(&format!("walks_failed:{}\r\n", c(&w.failed)));
            out.push_str(&format!("walk_stray_messages:{}\r\n", c(&w.stray)));
            out.push_str(&format!("walk_bad_messages:{}\r\n", c(&w.bad)));
            out.push_str(&format!("protocol_errors:{}\r\n\r\n", c(&sh.protocol_errors)));
        }
        out
    }
}

/// The channel prefix of keyspace notifications: `__keyspace@0__:<key>`.
pub const KEYSPACE: &[u8] = b"__keyspace@0__:";
/// How often a subscribed connection looks for key changes while its client is quiet.
pub const NOTIFY_POLL: Duration = Duration::from_millis(20);
/// The reply to `PSUBSCRIBE`.
pub const NO_PATTERNS: &str =
    "ERR PSUBSCRIBE is not supported: notifications are per key; SUBSCRIBE __keyspace@0__:<key>";
/// The reply to `SUBSCRIBE` of a channel that is not a key's keyspace channel.
pub const NO_CHANNELS: &str =
    "ERR only keyspace channels (__keyspace@0__:<key>) can be subscribed in this store; there is no PUBLISH";
/// The reply when a walk over the ring did not finish (nodes down, ranges moving).
pub const WALK_FAILED: &str =
    "ERR the walk over the ring did not finish (nodes unreachable or ranges moving); try again";
/// Replicas per page of a walk.
pub const WALK_PAGE: u32 = 1_000;
/// Keys deleted per transaction by `FLUSHALL`/`FLUSHDB`.
pub const FLUSH_BATCH: usize = 100;

/// What a walk found of one item: its newest version among the replicas listed, that
/// version's record (`None`: deleted), and how many replicas were listed.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    value: Option<Vec<u8>>,
    replicas: u32,
}

type Merged = BTreeMap<Key, Seen>;

/// Merges listed replicas into `items`: the newest version of each item wins.
fn merge(items: &mut Merged, replicas: impl Iterator<Item = (Key, Version, Option<Vec<u8>>)>) {
    for (key, version, value) in replicas {
        match items.get_mut(&key) {
            Some(seen) => {
                seen.replicas += 1;
                if version > seen.version {
                    seen.version = version;
                    seen.value = value;
                }
            }
            None => {
                items.insert(key, Seen { version, value, replicas: 1 });
            }
        }
    }
}

/// The keys whose newest version is a value, with it.
fn present(items: Merged) -> BTreeMap<Key, Vec<u8>> {
    items.into_iter().filter_map(|(k, s)| s.value.map(|v| (k, v))).collect()
}

fn scan_reply(cursor: u64, keys: Vec<Key>) -> Reply {
    Reply::Array(vec![
        Reply::bulk(cursor.to_string()),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
}

/// The Redis type name of a stored record.
fn type_name(record: &[u8]) -> &'static str {
    match data::Stored::decode(record) {
        Some(data::Stored::Str(_)) => "string",
        Some(data::Stored::Set(_)) => "set",
        None => "none",
    }
}

/// Redis' glob-style match of `KEYS`, `SCAN MATCH` (case-sensitive): `*`, `?`, `[abc]`,
/// `[^a-z]`, `\x`. Linear backtracking to the last `*` only, so no pattern takes exponential
/// time.
pub fn redis_glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            star = Some((p, t));
            continue;
        }
        if let Some(len) = match_one(&pattern[p..], text[t]) {
            p += len;
            t += 1;
            continue;
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether the pattern's first element matches `c`; the element's length if so.
fn match_one(pattern: &[u8], c: u8) -> Option<usize> {
    match pattern.first()? {
        b'?' => Some(1),
        b'\\' if pattern.len() >= 2 => (pattern[1] == c).then_some(2),
        b'[' => {
            let mut i = 1;
            let negate = pattern.get(1) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            loop {
                match pattern.get(i) {
                    // An unclosed class: Redis ends it at the pattern's end.
                    None => break,
                    Some(b']') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < pattern.len() => {
                        hit |= pattern[i + 1] == c;
                        i += 2;
                    }
                    Some(&lo)
                        if pattern.get(i + 1) == Some(&b'-')
                            && i + 2 < pattern.len()
                            && pattern[i + 2] != b']' =>
                    {
                        let hi = pattern[i + 2];
                        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                        hit |= lo <= c && c <= hi;
                        i += 3;
                    }
                    Some(&x) => {
                        hit |= x == c;
                        i += 1;
                    }
                }
            }
            (hit != negate).then_some(i)
        }
        &x => (x == c).then_some(1),
    }
}

/// Redis' glob match, as far as `CONFIG GET` needs it (`*`, `?`, `\` escapes; no classes).
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some((b'*', rest)), _) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        (Some(_), None) => false,
        (Some((b'?', rest)), Some((_, t))) => glob(rest, t),
        (Some((b'\\', rest)), Some((c, t))) => match rest.split_first() {
            Some((p, rest)) => p == c && glob(rest, t),
            None => false,
        },
        (Some((p, rest)), Some((c, t))) => p.eq_ignore_ascii_case(c) && glob(rest, t),
    }
}

#[cfg(test)]
mod tests {
    use super::redis_glob;
    use super::{Done, Handoff, Reply, ReplyQueue, Seq};
    use crate::command::Op;
    use crate::session::{Action, Request};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A socket pair on loopback: (the server's end, the client's end).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (l.accept().unwrap().0, client)
    }

    /// A reply queue waiting for command 1 (a `GET`), as the connection hands it over.
    fn waiting_queue() -> ReplyQueue {
        let mut q = ReplyQueue::new();
        let issued = q.issue(Action::Execute { seq: Seq(1), op: Op::Get { key: b"k".to_vec() } });
        assert!(matches!(issued, Some(Request::Execute { .. })));
        q
    }

    fn done(value: Vec<u8>) -> Done {
        Done { result: Ok(vec![Reply::Bulk(value)]), observed: Vec::new() }
    }

    fn resp_bulk(value: &[u8]) -> Vec<u8> {
        let mut want = format!("${}\r\n", value.len()).into_bytes();
        want.extend_from_slice(value);
        want.extend_from_slice(b"\r\n");
        want
    }

    #[test]
    fn the_backend_writes_a_handed_over_reply_and_gives_the_queue_back() {
        let (server, mut client) = pair();
        let h = Handoff::new();
        let q = waiting_queue();
        assert!(h.hand_over(q, Seq(1), server.try_clone().unwrap()).is_ok());
        assert!(h.answer(done(b"v".to_vec())));
        let (q, written) = h.take_back(Duration::from_secs(5));
        assert_eq!(written.unwrap(), Vec::<u8>::new(), "all written by the backend");
        assert_eq!(q.pending(), 0, "the command is complete in the queue given back");
        let mut got = vec![0; 7];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, resp_bulk(b"v"));
    }

    #[test]
    fn a_reply_the_socket_does_not_take_comes_back_as_the_rest_in_order() {
        let (server, mut client) = pair();
        // nobody reads the client's end: 32 MiB cannot fit in the sockets' buffers
        let value = vec![7u8; 32 << 20];
        let h = Handoff::new();
        assert!(h.hand_over(waiting_queue(), Seq(1), server.try_clone().unwrap()).is_ok());
        assert!(h.answer(done(value.clone())));
        let (_, written) = h.take_back(Duration::from_secs(5));
        let rest = written.unwrap();
        assert!(!rest.is_empty() && rest.len() < value.len(), "a rest: {}", rest.len());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        let mut server = server;
        std::io::Write::write_all(&mut server, &rest).unwrap();
        server.shutdown(std::net::Shutdown::Both).unwrap();
        assert_eq!(reader.join().unwrap(), resp_bulk(&value), "whole and in order");
    }

    #[test]
    fn an_answer_before_the_hand_over_keeps_the_queue_with_the_connection() {
        let (server, _client) = pair();
        let h = Handoff::new();
        assert!(!h.answer(done(b"v".to_vec())), "left for the connection");
        let q = h.hand_over(waiting_queue(), Seq(1), server).expect_err("already answered");
        assert_eq!(q.pending(), 1);
        assert_eq!(h.take(Duration::ZERO), Some(done(b"v".to_vec())));
    }

    #[test]
    fn no_answer_in_time_gives_the_queue_back_still_waiting() {
        let (server, _client) = pair();
        let h = Handoff::new();
        assert!(h.hand_over(waiting_queue(), Seq(1), server).is_ok());
        let (q, written) = h.take_back(Duration::from_millis(10));
        assert_eq!(written, Err(Seq(1)));
        assert_eq!(q.pending(), 1);
        assert!(!h.answer(done(b"late".to_vec())), "dropped, never written");
    }

    #[test]
    fn globs_match_like_redis() {
        let yes = [
            ("*", ""),
            ("*", "abc"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("a\\*b", "a*b"),
            ("*a*a*a*a*b", "aaaaaaaaaaab"),
            ("k:1*", "k:1"),
        ];
        for (p, t) in yes {
            assert!(redis_glob(p.as_bytes(), t.as_bytes()), "{p} ~ {t}");
        }
        let no = [
            ("h?llo", "hllo"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("a\\*b", "axb"),
            ("abc", "ABC"),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"),
            ("k:1*", "k:2"),
        ];
        for (p, t) in no {
            assert!(!redis_glob(p.as_bytes(), t.as_bytes()), "{p} !~ {t}");
        }
    }
}
