//! Re-replication after a crash: the peer that takes over a crashed peer's range rebuilds its
//! replicas from the remaining ones by bulk range reads: [`Recovery`]; and the answering
//! side, [`serve_range_read`].
//!
//! A range `R` gained from a crashed predecessor has lost replica `i` of every item whose
//! replica key is in `R`; replica `i + j` of the same items lies in `R + ⌊j·2^64/f⌋` for each
//! `j = 1..f`. The rebuilding peer reads each of those `f − 1` intervals from its start, one
//! batch at a time, from whichever peers own it (the next read starts after the last position
//! an answer covered, so an interval spread over several peers is read in turn from each), and
//! merges every replica under its own position, highest version winning.
//!
//! Invariants (unit tests in `machine` tests `recovery`):
//! * **the rebuilt replica is as new as any acknowledged version**: the range is served only
//!   once `f − q + 1` of the `f − 1` intervals (`q` the quorum) were read whole — then at least
//!   one of them shares a replica with any majority that acknowledged a version, so the merge
//!   holds it; the other intervals are still read and merged afterwards;
//! * only peers that **serve** a position answer for it (a peer still receiving or rebuilding
//!   says "not ready" and is asked again after `retry`);
//! * items outside what an answer claims to cover are dropped and counted; an answer never
//!   moves a read backwards;
//! * a rebuilt range **abstains** from transaction votes it has no record of for
//!   `max_lease` (its lost holder may have voted);
//! * a source without progress for `transfer_timeout` is counted and asked again; a rebuild
//!   never gives up while this peer owns the range.

use std::collections::BTreeMap;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{Movement, Range, ReplicationIndication, RingId};

use crate::faults::Fault;
use crate::handover::wire_item;
use crate::machine::{tag, Ctx, ReplOutput, Transition, TAG_RANGE};
use crate::messages::{ReplMessage, WireItem};
use crate::ranges::RangeSet;
use crate::store::{ItemId, Merge};

#[derive(Clone, Debug)]
struct Source {
    shift: u32,
    interval: Range,
    /// Read up to here (exclusive start of the next read).
    after: RingId,
    /// How many identifiers of the interval are read (up to its size).
    read: u128,
    complete: bool,
    /// When the outstanding read was sent (`None`: none outstanding).
    asked: Option<Time>,
    /// When to send the next read (after "not ready").
    ask_at: Option<Time>,
    last_progress: Time,
}

#[derive(Clone, Debug)]
struct Rebuild {
    range: Range,
    want: RangeSet,
    serving: bool,
    items: u64,
    /// Key and value bytes of the items installed ([`WireItem::data_bytes`]).
    bytes: u64,
    sources: Vec<Source>,
}

/// The rebuilds in progress at this node.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    next: u64,
    sessions: BTreeMap<u64, Rebuild>,
}

impl Recovery {
    /// No rebuild.
    pub fn new() -> Recovery {
        Recovery::default()
    }

    /// The ranges being rebuilt (owned, not served yet).
    pub fn pending(&self) -> Vec<Range> {
        self.sessions.values().filter(|r| !r.serving).flat_map(|r| r.want.ranges()).collect()
    }

    /// Whether `pos` is being rebuilt (not served yet).
    pub(crate) fn holds(&self, pos: RingId) -> bool {
        self.sessions.values().any(|r| !r.serving && r.want.contains(pos))
    }

    /// How many of the `f − 1` intervals must be read whole before the range is served.
    fn needed(cx: &Ctx<'_>) -> usize {
        let f = cx.placement.f();
        (f - cx.placement.quorum() + 1).min(f - 1) as usize
    }

    /// Starts rebuilding `range` from the other replicas.
    pub(crate) fn start(&mut self, cx: &mut Ctx<'_>, range: Range) {
        // A part already being rebuilt is not started twice.
        let mut want = RangeSet::of(range);
        for r in self.sessions.values() {
            want.subtract(&r.want);
        }
        // One session per sector: a range wider than a sector (its node took over a crashed
        // anchor's tail, or the ring is small) would otherwise read some of its sources from
        // itself, which cannot answer while it rebuilds; cut at the sectors' edges, each
        // piece has at most one such source and is served as soon as its own are read.
        let mut pieces = Vec::new();
        if cx.placement.f() < 2 {
            pieces = want.ranges();
        } else {
            for s in 0..cx.placement.f() {
                pieces.extend(want.intersection(&RangeSet::of(cx.placement.sector(s))).ranges());
            }
        }
        for part in pieces {
            let id = self.next;
            self.next += 1;
            let sources = (1..cx.placement.f())
                .map(|j| {
                    let d = cx.placement.shift(j);
                    let interval = Range::new(part.start.offset(d), part.end.offset(d));
                    Source {
                        shift: j,
                        interval,
                        after: interval.start,
                        read: 0,
                        complete: false,
                        asked: None,
                        ask_at: Some(cx.now),
                        last_progress: cx.now,
                    }
                })
                .collect();
            let r = Rebuild {
                range: part,
                want: RangeSet::of(part),
                serving: false,
                items: 0,
                bytes: 0,
                sources,
            };
            self.sessions.insert(id, r);
            let m = Movement::RebuildStarted { range: part };
            cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
            tracing::debug!(range = %part, session = id, "replication: rebuilding from the replicas");
            self.check_done(cx, id);
            self.ask_due(cx, id);
        }
    }

    /// `range` is no longer owned here: stop rebuilding it.
    pub(crate) fn lose(&mut self, range: Range) {
        let lost = RangeSet::of(range);
        for r in self.sessions.values_mut() {
            r.want.subtract(&lost);
        }
        self.sessions.retain(|_, r| !r.want.is_empty());
    }

    fn ask_due(&mut self, cx: &mut Ctx<'_>, id: u64) {
        let Some(r) = self.sessions.get_mut(&id) else { return };
        for s in &mut r.sources {
            if s.complete || s.ask_at.is_none_or(|t| t > cx.now) {
                continue;
            }
            s.ask_at = None;
            s.asked = Some(cx.now);
            let msg = ReplMessage::RangeRead {
                session: id,
                shift: s.shift,
                interval: s.interval,
                after: s.after,
            };
            cx.out.push(ReplOutput::Route { key: s.after.offset(1), tag: tag(TAG_RANGE, id), msg });
        }
    }

    fn check_done(&mut self, cx: &mut Ctx<'_>, id: u64) {
        let needed = Self::needed(cx);
        let Some(r) = self.sessions.get_mut(&id) else { return };
        let complete = r.sources.iter().filter(|s| s.complete).count();
        if !r.serving && complete >= needed {
            r.serving = true;
            for part in r.want.ranges() {
                cx.store.abstain(part, cx.now + cx.config.max_lease, cx.now);
                cx.moves.push(Transition::Serve(part));
            }
            let m = Movement::Rebuilt { range: r.range, items: r.items, bytes: r.bytes };
            cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
        }
        if r.sources.iter().all(|s| s.complete) {
            self.sessions.remove(&id);
        }
    }

    /// A part of an interval, from its owner.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_items(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        shift: u32,
        after: RingId,
        covered: RingId,
        items: Vec<WireItem>,
    ) {
        let f = cx.placement.f();
        let Some(r) = self.sessions.get_mut(&session) else {
            return cx.faults.add(
                Fault::UnknownSession,
                &format_args!("range items of rebuild {session} from {from}"),
            );
        };
        let Some(s) = r.sources.iter_mut().find(|s| s.shift == shift) else {
            return cx
                .faults
                .add(Fault::BadReplica, &format_args!("range items for offset {shift}"));
        };
        if s.complete || s.after != after {
            return; // an answer to a read asked twice: the other one was used
        }
        let part = Range::new(after, covered);
        let step = u128::from(covered.distance_from(after));
        if step == 0 || s.read + step > s.interval.size() {
            return cx.faults.add(
                Fault::OutsideRange,
                &format_args!("rebuild answer covering {part} of {}", s.interval),
            );
        }
        for w in &items {
            let theirs = cx.placement.position(&w.key, w.replica);
            if !part.contains(theirs) {
                cx.faults.add(
                    Fault::OutsideRange,
                    &format_args!("rebuild item at {theirs} outside {part}"),
                );
                continue;
            }
            let mine = (w.replica + f - shift) % f;
            let pos = cx.placement.position(&w.key, mine);
            if !r.want.contains(pos) {
                continue;
            }
            match cx.store.merge_newer(ItemId::new(pos, &w.key), w.version, w.value.as_deref()) {
                Merge::Installed => {
                    r.items += 1;
                    r.bytes += w.data_bytes();
                }
                Merge::Diverged(taken) => {
                    r.items += u64::from(taken);
                    if taken {
                        r.bytes += w.data_bytes();
                    }
                    cx.faults.add(
                        Fault::Divergent,
                        &format_args!("{pos} holds {} with two values", w.version),
                    );
                }
                Merge::Kept => {}
            }
        }
        s.after = covered;
        s.read += step;
        s.last_progress = cx.now;
        s.asked = None;
        if s.read == s.interval.size() {
            s.complete = true;
        } else {
            s.ask_at = Some(cx.now);
        }
        self.check_done(cx, session);
        self.ask_due(cx, session);
    }

    /// The owner of the next position cannot serve it yet: ask again later.
    pub(crate) fn on_not_ready(
        &mut self,
        cx: &mut Ctx<'_>,
        session: u64,
        shift: u32,
        after: RingId,
    ) {
        let retry = cx.now + cx.config.retry;
        let Some(r) = self.sessions.get_mut(&session) else { return };
        if let Some(s) =
            r.sources.iter_mut().find(|s| s.shift == shift && s.after == after && !s.complete)
        {
            s.asked = None;
            s.ask_at = Some(retry);
        }
    }

    /// The ring could not route the read to `key`.
    pub(crate) fn on_undeliverable(&mut self, cx: &mut Ctx<'_>, session: u64, key: RingId) {
        let retry = cx.now + cx.config.retry;
        let Some(r) = self.sessions.get_mut(&session) else { return };
        for s in r.sources.iter_mut().filter(|s| !s.complete && s.after.offset(1) == key) {
            s.asked = None;
            s.ask_at = Some(retry);
        }
    }

    /// Time passed: re-ask lost reads, count stuck sources.
    pub(crate) fn on_tick(&mut self, cx: &mut Ctx<'_>) {
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(r) = self.sessions.get_mut(&id) else { continue };
            for s in r.sources.iter_mut().filter(|s| !s.complete) {
                if cx.now >= s.last_progress + cx.config.transfer_timeout {
                    cx.faults.add(
                        Fault::TransferTimeout,
                        &format_args!("rebuild of {} from {} stuck", r.range, s.interval),
                    );
                    s.last_progress = cx.now;
                }
                if s.asked.is_some_and(|t| cx.now >= t + cx.config.retransmit) {
                    s.asked = None;
                    s.ask_at = Some(cx.now);
                }
            }
            self.ask_due(cx, id);
        }
    }
}

/// Answers a rebuild's read of `interval` after `after`: the replicas this node serves from
/// `after + 1` on, up to the interval's end, the end of what it serves there, or a batch.
pub(crate) fn serve_range_read(
    cx: &mut Ctx<'_>,
    from: NodeAddr,
    session: u64,
    shift: u32,
    interval: Range,
    after: RingId,
) {
    let first = after.offset(1);
    if !interval.contains(first) {
        return cx.faults.add(
            Fault::OutsideRange,
            &format_args!("range read after {after} outside {interval}"),
        );
    }
    let Some(run) = cx.serving.run_containing(first) else {
        return cx.send(from, ReplMessage::RangeNotReady { session, shift, after });
    };
    // Up to whichever comes first, going round from `after`: the interval's end or the run's.
    let end = if run.is_full() || interval.end.distance_from(after) <= run.end.distance_from(after)
    {
        interval.end
    } else {
        run.end
    };
    let part = Range::new(after, end);
    let (batch, done) = cx.store.batch(part, None, cx.config.batch_items, cx.config.batch_bytes);
    let mut items: Vec<WireItem> =
        batch.iter().map(|(id, r)| wire_item(cx, *id, Some(*r), false)).collect();
    let covered = match (done, batch.last()) {
        (true, _) | (false, None) => end,
        (false, Some((last, _))) => {
            // Include every replica at the last position, so the next read can start after it.
            let rest: Vec<WireItem> = cx
                .store
                .iter_from(Range::new(after, last.pos), Some(&last.to_id()))
                .map(|(id, r)| wire_item(cx, id, Some(r), false))
                .collect();
            items.extend(rest);
            last.pos
        }
    };
    cx.send(from, ReplMessage::RangeItems { session, shift, interval, after, covered, items });
}
