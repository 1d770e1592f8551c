//! Walks over the ring: the [`Walker`] component lists the replicas the nodes serve in an
//! interval of ring positions, for `SCAN`, `KEYS`, `DBSIZE` and `FLUSHALL`/`FLUSHDB`.
//!
//! ```text
//!  WalkJob [from, to) ─▶ Walker ──Route(List, key = at)──▶ Walker of the node serving `at`
//!                          ▲                                   │ ReplicationRequest::ListServed
//!                          └────Route(Page, key = origin)──────┘ (its served replicas from `at`)
//! ```
//!
//! A walk asks the node responsible for its current position `at` for one page (a
//! [`ReplicationRequest::ListServed`] there), appends it and goes on at the page's `next`
//! until it reached `to` or listed `limit` replicas. Each step is bounded: a page that does
//! not come within [`STEP_TIMEOUT`] (routing is best effort), or a node that does not serve the
//! position yet (its range is being received or rebuilt), is asked again, at most
//! [`STEP_TRIES`] times, and then the walk fails. A page is checked before it is used (its
//! replicas inside the interval, in order, progress made): bad pages and messages for no walk
//! are counted and dropped.
//!
//! A walk is **not a snapshot**: each node lists what it serves when the request reaches it,
//! so writes during the walk may or may not be seen. What the store makes of the replicas is
//! in `server.rs` (the newest version among an item's replicas decides).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use selfman_core::{
    ComponentDefinition, Handled, Port, Provided, Required, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    ListFailure, ListedReplica, Listing, Replication, ReplicationIndication, ReplicationRequest,
    Ring, RingId, RingIndication, RingRequest,
};
use serde::{Deserialize, Serialize};

use crate::node::StorePayload;

/// How long one step waits for its page before it asks again.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a step waits before asking again a node that does not serve the position yet.
pub const NOT_SERVING_WAIT: Duration = Duration::from_millis(200);
/// How often one step is asked before the walk fails.
pub const STEP_TRIES: u32 = 25;
/// The most replicas one page may carry (the replication layer's own bound is higher).
pub const MAX_PAGE: u32 = 1_000;

/// The port the front door asks for walks on.
#[derive(Debug)]
pub struct WalkService;

/// Nothing: a walk answers through its own channel.
#[derive(Debug, Clone)]
pub enum NoIndication {}

impl Port for WalkService {
    type Request = WalkJob;
    type Indication = NoIndication;
}

/// One walk: the served replicas of `[from, to)` over the whole ring, at most `limit` (a page
/// never splits the replicas of one position, so a few more may come).
#[derive(Debug, Clone)]
pub struct WalkJob {
    /// The first position.
    pub from: RingId,
    /// The end (exclusive); `None`: the top of the ring.
    pub to: Option<RingId>,
    /// How many replicas to list before stopping.
    pub limit: u32,
    /// Whether to bring the values.
    pub values: bool,
    /// Where the outcome goes: the replicas and where to go on (`next: None`: `to` reached).
    pub reply: Sender<Result<Listing, WalkError>>,
}

/// Why a walk failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    /// A step got no usable page after [`STEP_TRIES`] tries (nodes crashed, ranges moving).
    NoAnswer,
    /// This node is not in a ring yet.
    NotInRing,
}

/// What walkers send each other, routed by the ring inside [`StorePayload::Walk`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WalkMessage {
    /// List the served replicas from `from` (see [`ReplicationRequest::ListServed`]) and
    /// route the page to `reply_to`.
    List {
        /// The asking walker's walk.
        walk: u64,
        /// Which try of which step (pages of older tries are dropped).
        step: u64,
        /// Where the asking node is (its ring identifier: routed there, the page reaches it).
        reply_to: RingId,
        /// The first position.
        from: RingId,
        /// The end (exclusive).
        to: Option<RingId>,
        /// The most replicas.
        limit: u32,
        /// Whether to bring the values.
        values: bool,
    },
    /// A page for walk `walk`'s step `step`.
    Page {
        /// The walk.
        walk: u64,
        /// The step.
        step: u64,
        /// The page, or why the node has none.
        result: Result<Listing, ListFailure>,
    },
}

/// The walker's counters.
#[derive(Debug, Default)]
pub struct WalkStats {
    /// Walks finished.
    pub walks: AtomicU64,
    /// Walks that failed.
    pub failed: AtomicU64,
    /// Pages and listings for no walk in progress (late, duplicated, or forged), dropped.
    pub stray: AtomicU64,
    /// Pages that broke the rules (outside the interval, out of order, no progress, too
    /// large) or list requests out of bounds, dropped.
    pub bad: AtomicU64,
}

#[derive(Debug)]
struct Walk {
    job: WalkJob,
    at: RingId,
    got: Vec<ListedReplica>,
    step: u64,
    tries: u32,
}

/// The walker component: provides [`WalkService`]; requires the node's [`Ring`] (to route
/// its messages), [`Replication`] (its own node's listings) and [`Timer`].
pub struct Walker {
    ring: Required<Ring<StorePayload>>,
    repl: Required<Replication>,
    timer: Required<Timer>,
    port: Provided<WalkService>,
    me: Option<RingId>,
    walks: HashMap<u64, Walk>,
    /// This node's listings in progress, by tag: who asked, for which walk and step.
    listing: HashMap<u64, (RingId, u64, u64)>,
    /// Step timers: timer id → (walk, step, what to do).
    timers: HashMap<u64, (u64, u64, Due)>,
    next: u64,
    stats: Arc<WalkStats>,
}

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Walker({} walks)", self.walks.len())
    }
}

impl Walker {
    /// A walker counting into `stats`.
    pub fn new(stats: Arc<WalkStats>) -> Walker {
        Walker {
            ring: Required::new(),
            repl: Required::new(),
            timer: Required::new(),
            port: Provided::new(),
            me: None,
            walks: HashMap::new(),
            listing: HashMap::new(),
            timers: HashMap::new(),
            next: 1,
            stats,
        }
    }

    fn fresh(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    fn on_job(&mut self, job: WalkJob) -> Handled {
        if self.me.is_none() {
            let _ = job.reply.send(Err(WalkError::NotInRing));
            return Ok(());
        }
        let id = self.fresh();
        let walk = Walk { at: job.from, job, got: Vec::new(), step: 0, tries: 0 };
        self.walks.insert(id, walk);
        self.ask(id, Duration::ZERO);
        Ok(())
    }

    /// Sends walk `id`'s next try of its current step, after `delay`; fails the walk once the
    /// step was tried [`STEP_TRIES`] times.
    fn ask(&mut self, id: u64, delay: Duration) {
        let step = self.fresh();
        let Some(w) = self.walks.get_mut(&id) else { return };
        w.step = step;
        w.tries += 1;
        if w.tries > STEP_TRIES {
            let w = self.walks.remove(&id).expect("looked up above");
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            let _ = w.job.reply.send(Err(WalkError::NoAnswer));
            return;
        }
        if delay.is_zero() {
            self.send_list(id);
            self.arm(id, step, Due::Timeout, STEP_TIMEOUT);
        } else {
            self.arm(id, step, Due::Send, delay);
        }
    }

    fn arm(&mut self, id: u64, step: u64, due: Due, after: Duration) {
        let timer = self.fresh();
        self.timers.insert(timer, (id, step, due));
        self.timer.schedule_once(TimerId(timer), after);
    }

    fn send_list(&mut self, id: u64) {
        let (Some(w), Some(me)) = (self.walks.get(&id), self.me) else { return };
        let remaining = w.job.limit.saturating_sub(w.got.len() as u32).clamp(1, MAX_PAGE);
        let msg = WalkMessage::List {
            walk: id,
            step: w.step,
            reply_to: me,
            from: w.at,
            to: w.job.to,
            limit: remaining,
            values: w.job.values,
        };
        self.ring.trigger(RingRequest::Route {
            key: w.at,
            tag: 0,
            payload: StorePayload::Walk(msg),
        });
    }

    fn on_timeout(&mut self, t: Timeout) -> Handled {
        let Some((id, step, due)) = self.timers.remove(&t.id.0) else { return Ok(()) };
        if self.walks.get(&id).is_none_or(|w| w.step != step) {
            return Ok(()); // the step moved on
        }
        match due {
            Due::Send => {
                self.send_list(id);
                self.arm(id, step, Due::Timeout, STEP_TIMEOUT);
            }
            Due::Timeout => self.ask(id, Duration::ZERO),
        }
        Ok(())
    }

    fn on_ring(&mut self, i: RingIndication<StorePayload>) -> Handled {
        match i {
            RingIndication::Joined { me, .. } => self.me = Some(me.id),
            RingIndication::Deliver { payload: StorePayload::Walk(msg), .. } => {
                self.on_message(msg)
            }
            _ => {}
        }
        Ok(())
    }

    fn on_message(&mut self, msg: WalkMessage) {
        match msg {
            WalkMessage::List { walk, step, reply_to, from, to, limit, values } => {
                if limit == 0 || limit > MAX_PAGE || to.is_some_and(|t| t.0 <= from.0) {
                    self.stats.bad.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(walk, "walk: list request out of bounds, dropped");
                    return;
                }
                let tag = self.fresh();
                self.listing.insert(tag, (reply_to, walk, step));
                self.repl.trigger(ReplicationRequest::ListServed { from, to, limit, values, tag });
            }
            WalkMessage::Page { walk, step, result } => self.on_page(walk, step, result),
        }
    }

    fn on_replication(&mut self, i: ReplicationIndication) -> Handled {
        if let ReplicationIndication::Listed { tag, result } = i {
            let Some((reply_to, walk, step)) = self.listing.remove(&tag) else {
                self.stats.stray.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            };
            let msg = WalkMessage::Page { walk, step, result };
            self.ring.trigger(RingRequest::Route {
                key: reply_to,
                tag: 0,
                payload: StorePayload::Walk(msg),
            });
        }
        Ok(())
    }

    fn on_page(&mut self, id: u64, step: u64, result: Result<Listing, ListFailure>) {
        let Some(w) = self.walks.get_mut(&id) else {
            self.stats.stray.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if w.step != step {
            self.stats.stray.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let listing = match result {
            Ok(l) => l,
            Err(_) => {
                // The range is moving or being rebuilt there: ask again a little later.
                self.ask(id, NOT_SERVING_WAIT);
                return;
            }
        };
        if !page_is_sound(&listing, w.at, w.job.to) {
            self.stats.bad.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(walk = id, "walk: a page broke the rules, dropped");
            return; // the step's timer asks again
        }
        w.got.extend(listing.replicas);
        w.tries = 0;
        match listing.next {
            Some(next) if (w.got.len() as u32) < w.job.limit => {
                w.at = next;
                self.ask(id, Duration::ZERO);
            }
            next => {
                let w = self.walks.remove(&id).expect("looked up above");
                self.stats.walks.fetch_add(1, Ordering::Relaxed);
                let _ = w.job.reply.send(Ok(Listing { replicas: w.got, next }));
            }
        }
    }
}

/// What a step's timer does when it fires.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// Send the delayed try.
    Send,
    /// The try got no page in time: try again.
    Timeout,
}

/// Whether a page for a step at `at` of a walk ending at `to` keeps the rules: at most
/// [`MAX_PAGE`] positions' worth, every replica inside `[at, to)`, in ring order, and a `next`
/// beyond the listed positions and `at`, inside the interval.
pub fn page_is_sound(page: &Listing, at: RingId, to: Option<RingId>) -> bool {
    let inside = |p: RingId| p.0 >= at.0 && to.is_none_or(|t| p.0 < t.0);
    let positions = page.replicas.windows(2).filter(|w| w[0].position != w[1].position).count();
    positions < MAX_PAGE as usize + 1
        && page.replicas.len() <= 64 * (MAX_PAGE as usize + 1)
        && page.replicas.iter().all(|r| inside(r.position))
        && page.replicas.windows(2).all(|w| w[0].position <= w[1].position)
        && page.next.is_none_or(|n| {
            n.0 > at.0 && inside(n) && page.replicas.last().is_none_or(|l| n.0 > l.position.0)
        })
}

impl ComponentDefinition for Walker {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.ring, Self::on_ring);
        s.require(|c| &mut c.repl, Self::on_replication);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.provide(|c| &mut c.port, Self::on_job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfman_ports::Version;

    fn rep(p: u64) -> ListedReplica {
        ListedReplica { position: RingId(p), key: vec![1], version: Version(1), value: None }
    }

    #[test]
    fn sound_pages_pass_and_broken_ones_do_not() {
        let ok = Listing { replicas: vec![rep(10), rep(10), rep(12)], next: Some(RingId(13)) };
        assert!(page_is_sound(&ok, RingId(10), Some(RingId(20))));
        let end = Listing { replicas: vec![rep(19)], next: None };
        assert!(page_is_sound(&end, RingId(10), Some(RingId(20))));
        let outside = Listing { replicas: vec![rep(9)], next: None };
        assert!(!page_is_sound(&outside, RingId(10), Some(RingId(20))));
        let beyond = Listing { replicas: vec![rep(20)], next: None };
        assert!(!page_is_sound(&beyond, RingId(10), Some(RingId(20))));
        let unordered = Listing { replicas: vec![rep(12), rep(11)], next: None };
        assert!(!page_is_sound(&unordered, RingId(10), None));
        let no_progress = Listing { replicas: vec![], next: Some(RingId(10)) };
        assert!(!page_is_sound(&no_progress, RingId(10), None));
        let back = Listing { replicas: vec![rep(15)], next: Some(RingId(14)) };
        assert!(!page_is_sound(&back, RingId(10), None));
    }
}
