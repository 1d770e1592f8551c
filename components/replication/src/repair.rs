//! Anti-entropy: a peer compares a range it serves with the replicas of the same items
//! `shift` positions on, and repairs what differs, moving data in proportion to the
//! difference: [`Repair`] (the initiator) and the stateless answering side ([`serve`]).
//!
//! Both sides see the compared interval as a tree: the root is the whole segment, each node
//! has four children that split it in equal parts. Every round draws a **salt** (from its
//! number); a replica's fingerprint is its [`digest`](crate::store::digest) (key, version,
//! value: the same at every position) mixed with the salt, and a node's hash is the wrapping
//! sum of its replicas' fingerprints — four bytes on the wire for a segment's root, two for
//! the nodes below (asked for only where the parent differs), the child's place implied by
//! the order of the answer. The initiator asks for the children's hashes of
//! every node that differs and holds more than [`LEAF_ITEMS`] of its own replicas; for a
//! smaller node (a leaf) it asks for the peer's 2-byte item fingerprints. Fingerprints the
//! initiator does not hold are fetched whole (`SyncFetch` names them by leaf and
//! fingerprint: no key goes out before it is known to differ); its own replicas whose
//! fingerprints the peer did not list are pushed once the fetch answer shows the peer holds
//! no newer version. Scalaris' `rrepair` uses Merkle trees of branching 4 too; the salted
//! short hashes are this crate's: a collision hides a difference for one round only.
//!
//! ```text
//!   i: this peer, range M, shift j (d = ⌊j·2^64/f⌋); p: the peer serving M + d from its start
//!   i ──Route{SyncStart{M+d}}──▶ p ──SyncCovered{(C, root hash)}──▶ i   C: what p serves of it
//!   while nodes differ:  SyncHashes{paths} → SyncNodes{4 hashes per path}
//!   for leaves:          SyncDigests{paths} → SyncLeaves{2-byte prints per replica}
//!   then                 SyncFetch{(leaf, prints)} → SyncItems{…};  SyncPush{…}
//!   then the next segment, after C's end, until M is done
//! ```
//!
//! Invariants (unit tests in `machine` tests `repair`):
//! * only served positions are compared and written; a push or fetched item outside the
//!   segment it was sent for is dropped and counted;
//! * writes are [`merge_newer`](crate::store::Store::merge_newer): a repair never takes a
//!   version back; equal versions with different values end alike on both sides;
//! * one round at a time per node, each bounded: at most [`SYNC_WINDOW`] requests in flight,
//!   each within the wire bounds; a round without progress for `transfer_timeout` ends.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use selfman_core::{NodeAddr, Time};
use selfman_ports::{has_flaw, Movement, Range, ReplicationIndication, RingId, Version};

use crate::faults::Fault;
use crate::handover::wire_item;
#[cfg(feature = "flaws")]
use crate::machine::Flaw;
use crate::machine::{tag, Ctx, ReplOutput, TAG_SYNC};
use crate::messages::{
    ItemPrint, LeafAnswer, LeafFetch, NodeHash, Path, ReplMessage, RootHash, WireItem,
    MAX_FETCH_KEYS, MAX_SYNC_DIGESTS, MAX_SYNC_LEVEL, MAX_SYNC_NODES,
};
use crate::placement::mix64;
use crate::ranges::offset_in;
use crate::store::{digest, ItemId, Merge, RecordRef};

/// A node holding at most this many of the initiator's replicas is compared replica by
/// replica: listing `n` 2-byte prints costs `2n` bytes; one more level costs its path and four
/// 2-byte hashes (about 12 bytes) and then lists a quarter, so it pays from `n > 8` on.
pub const LEAF_ITEMS: u32 = 8;

/// A leaf asked for with more replicas than this is answered with its children instead.
pub const LEAF_REPLY_MAX: u32 = 64;

/// Requests one round keeps in flight.
pub const SYNC_WINDOW: usize = 4;

/// Leaves asked for per request.
const LEAVES_PER_REQUEST: usize = 64;

/// The part of `segment` that tree node `p` covers: offsets `(⌊x·S/4^L⌋, ⌊(x+1)·S/4^L⌋]`.
/// `None` for a path that does not exist or covers nothing.
pub(crate) fn node_range(segment: Range, p: Path) -> Option<Range> {
    if p.level > MAX_SYNC_LEVEL {
        return None;
    }
    let parts = 1u128 << (2 * u32::from(p.level));
    if u128::from(p.index) >= parts {
        return None;
    }
    let size = segment.size();
    let lo = u128::from(p.index) * size / parts;
    let hi = (u128::from(p.index) + 1) * size / parts;
    if lo == hi {
        return None;
    }
    // `hi == 2^64` wraps to the segment's start: the end of the whole circle.
    Some(Range::new(segment.start.offset(lo as u64), segment.start.offset(hi as u64)))
}

/// The four children of `p`.
fn children(p: Path) -> [Path; 4] {
    let level = p.level + 1;
    let i = p.index * 4;
    [0, 1, 2, 3].map(|k| Path { level, index: i + k })
}

/// The salt of round `session`.
fn salt(session: u64) -> u64 {
    mix64(session ^ 0x005a_17ab_1e0f_e1a5)
}

/// A replica's fingerprint in a round salted `salt`.
fn print(salt: u64, key: &[u8], rec: RecordRef<'_>) -> u64 {
    mix64(digest(key, rec.version, rec.value) ^ salt)
}

/// The 2-byte print of a key alone in a round salted `salt` (for the offers of a fetch).
fn key_print(salt: u64, key: &[u8]) -> ItemPrint {
    short(mix64(RingId::of_key(key).0 ^ salt ^ 0x6b65_7970_7269_6e74))
}

/// The 2-byte form of a fingerprint, for leaves.
fn short(print: u64) -> ItemPrint {
    ((print >> 48) as u16).to_le_bytes()
}

/// The 32-bit hash (a root's; a node's is its low 16 bits) and the number of replicas of
/// the part `r` of this store.
fn hash_of(cx: &Ctx<'_>, r: Option<Range>, salt: u64) -> (RootHash, u32) {
    let mut hash = 0u32;
    let mut count = 0u32;
    if let Some(r) = r {
        for (id, rec) in cx.store.iter_from(r, None) {
            hash = hash.wrapping_add(print(salt, id.key, rec) as u32);
            count = count.saturating_add(1);
        }
    }
    (hash.to_le_bytes(), count)
}

/// The hashes of the four children of `p`, in one pass over the node (a child covering
/// nothing hashes to zero).
fn child_hashes(cx: &Ctx<'_>, segment: Range, p: Path, salt: u64) -> [NodeHash; 4] {
    let kids = children(p);
    let ranges: Vec<Option<Range>> = kids.iter().map(|k| node_range(segment, *k)).collect();
    let mut sums = [0u32; 4];
    if let Some(r) = node_range(segment, p) {
        for (id, rec) in cx.store.iter_from(r, None) {
            let off = offset_in(segment, id.pos);
            let k = ranges
                .iter()
                .position(|c| c.is_some_and(|c| offset_in(segment, c.end) >= off))
                .unwrap_or(3);
            sums[k] = sums[k].wrapping_add(print(salt, id.key, rec) as u32);
        }
    }
    sums.map(|s| (s as u16).to_le_bytes())
}

#[derive(Clone, Debug)]
struct Segment {
    mine: Range,
    theirs: Range,
    peer: NodeAddr,
}

/// Prints of the peer's to fetch from one leaf, with this node's replicas of the leaf that
/// the peer did not list (pushed unless the fetch shows the peer holds them newer).
type LeafDiff = (Path, Vec<ItemPrint>, Vec<ItemId>);

#[derive(Clone, Debug)]
struct Round {
    id: u64,
    salt: u64,
    range: Range,
    shift: u32,
    /// The next segment starts after this position (this node's positions).
    after: RingId,
    seg: Option<Segment>,
    hashes: VecDeque<Path>,
    leaves: VecDeque<Path>,
    fetch: VecDeque<LeafDiff>,
    /// This node's replicas that a fetch request's answer decides about, by request.
    push_after: BTreeMap<u64, Vec<ItemId>>,
    /// Requests sent and not answered, by number: where to, what, when (re-sent after
    /// `retransmit`; the answering side is stateless, so a repeat is harmless).
    outstanding: BTreeMap<u64, (Option<NodeAddr>, ReplMessage, Time)>,
    next_req: u64,
    last_progress: Time,
    fetched: u64,
    pushed: u64,
    bytes: u64,
}

/// This node's anti-entropy round (at most one at a time).
#[derive(Clone, Debug, Default)]
pub struct Repair {
    next: u64,
    round: Option<Round>,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

impl Repair {
    /// No round running.
    pub fn new() -> Repair {
        Repair::default()
    }

    /// This repair with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.flaw = Some(flaw);
        self
    }

    /// Whether a round is running.
    pub fn running(&self) -> bool {
        self.round.is_some()
    }

    /// Starts a round comparing `range` (served here) with the replicas `shift` on.
    pub(crate) fn start(&mut self, cx: &mut Ctx<'_>, range: Range, shift: u32) {
        if has_flaw!(self, NoRepair)
            || self.round.is_some()
            || shift == 0
            || shift >= cx.placement.f()
        {
            return; // the flaw: repair switched off
        }
        let id = self.next;
        self.next += 1;
        let round = Round {
            id,
            salt: salt(id),
            range,
            shift,
            after: range.start,
            seg: None,
            hashes: VecDeque::new(),
            leaves: VecDeque::new(),
            fetch: VecDeque::new(),
            push_after: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            next_req: 0,
            last_progress: cx.now,
            fetched: 0,
            pushed: 0,
            bytes: 0,
        };
        self.round = Some(round);
        self.next_segment(cx);
    }

    fn send(r: &mut Round, cx: &mut Ctx<'_>, to: NodeAddr, msg: ReplMessage) {
        r.bytes += msg.wire_size() as u64;
        cx.send(to, msg);
    }

    /// Sends a request that expects an answer (routed when `to` is `None`: the round start).
    fn request(r: &mut Round, cx: &mut Ctx<'_>, to: Option<NodeAddr>, req: u64, msg: ReplMessage) {
        r.outstanding.insert(req, (to, msg.clone(), cx.now));
        r.bytes += msg.wire_size() as u64;
        match to {
            Some(to) => cx.send(to, msg),
            None => {
                let ReplMessage::SyncStart { segment, .. } = &msg else { return };
                let key = segment.start.offset(1);
                cx.out.push(ReplOutput::Route { key, tag: tag(TAG_SYNC, r.id), msg });
            }
        }
    }

    fn next_segment(&mut self, cx: &mut Ctx<'_>) {
        let Some(r) = self.round.as_mut() else { return };
        let d = cx.placement.shift(r.shift);
        let segment = Range::new(r.after.offset(d), r.range.end.offset(d));
        let req = r.next_req;
        r.next_req += 1;
        r.seg = None;
        let msg = ReplMessage::SyncStart { session: r.id, req, segment };
        Self::request(r, cx, None, req, msg);
    }

    fn finish(&mut self, cx: &mut Ctx<'_>) {
        let Some(r) = self.round.take() else { return };
        let m = Movement::Repaired {
            range: r.range,
            shift: r.shift,
            fetched: r.fetched,
            pushed: r.pushed,
            bytes: r.bytes,
        };
        cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
    }

    /// The current round for answer `req` of `session` from `from`, with the request it
    /// answers: counted if there is no such round or the sender is not its peer, ignored if it
    /// answers nothing outstanding (a repeated request's second answer).
    fn round_for(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        req: u64,
        bytes: usize,
    ) -> Option<(&mut Round, ReplMessage)> {
        let ok = self.round.as_ref().is_some_and(|r| r.id == session);
        if !ok {
            cx.faults
                .add(Fault::UnknownSession, &format_args!("repair answer {session} from {from}"));
            return None;
        }
        let r = self.round.as_mut().expect("checked");
        if r.seg.as_ref().is_some_and(|s| s.peer != from) {
            cx.faults
                .add(Fault::StrangerSession, &format_args!("repair answer {session} from {from}"));
            return None;
        }
        let (_, asked, _) = r.outstanding.remove(&req)?;
        r.bytes += bytes as u64;
        r.last_progress = cx.now;
        Some((r, asked))
    }

    /// Where the peer serves the segment from its start, and its root's hash.
    pub(crate) fn on_covered(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        req: u64,
        covered: Option<(Range, RootHash)>,
        bytes: usize,
    ) {
        let d = cx.placement.shift(self.round.as_ref().map_or(1, |r| r.shift));
        let Some((r, _)) = self.round_for(cx, from, session, req, bytes) else { return };
        let Some((cov, root)) = covered else {
            // The peer serves none of it now (moving, rebuilding): try again next round.
            return self.finish(cx);
        };
        let want = Range::new(r.after.offset(d), r.range.end.offset(d));
        let inside = cov.start == want.start && want.contains(cov.end);
        if r.seg.is_some() || !inside {
            cx.faults.add(Fault::OutsideRange, &format_args!("repair cover {cov} of {want}"));
            return self.finish(cx);
        }
        let mine = Range::new(cov.start.offset(d.wrapping_neg()), cov.end.offset(d.wrapping_neg()));
        if !cx.serving.covers(mine) {
            return self.finish(cx); // no longer served here
        }
        r.seg = Some(Segment { mine, theirs: cov, peer: from });
        Self::classify(r, cx, Path { level: 0, index: 0 }, &root);
        self.pump(cx);
    }

    /// Compares the peer's hash of node `path` (a root's four bytes or a node's two) with
    /// ours; queues what to do about it.
    fn classify(r: &mut Round, cx: &Ctx<'_>, path: Path, theirs: &[u8]) {
        let Some(seg) = r.seg.as_ref() else { return };
        let Some(node) = node_range(seg.mine, path) else { return };
        let (mine, count) = hash_of(cx, Some(node), r.salt);
        // Little-endian: a node's two bytes are the low half of the 32-bit sum.
        if mine.get(..theirs.len()) == Some(theirs) {
            return;
        }
        if count <= LEAF_ITEMS || path.level >= MAX_SYNC_LEVEL || node.size() < 16 {
            r.leaves.push_back(path);
        } else {
            r.hashes.push_back(path);
        }
    }

    /// Sends what the window allows; moves on when the segment is done.
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        let Some(r) = self.round.as_mut() else { return };
        let Some(seg) = r.seg.clone() else { return };
        while r.outstanding.len() < SYNC_WINDOW {
            let req = r.next_req;
            let msg = if !r.hashes.is_empty() {
                let n = r.hashes.len().min(MAX_SYNC_NODES);
                // Sorted, the paths travel as small deltas (`path_wire`); the answers
                // follow the order asked.
                let mut paths: Vec<Path> = r.hashes.drain(..n).collect();
                paths.sort_unstable();
                ReplMessage::SyncHashes { session: r.id, req, segment: seg.theirs, paths }
            } else if !r.leaves.is_empty() {
                let n = r.leaves.len().min(LEAVES_PER_REQUEST);
                let mut paths: Vec<Path> = r.leaves.drain(..n).collect();
                paths.sort_unstable();
                ReplMessage::SyncDigests { session: r.id, req, segment: seg.theirs, paths }
            } else if !r.fetch.is_empty() {
                let budget = MAX_FETCH_KEYS.min(cx.config.batch_items).max(1);
                let (mut wanted, mut ids, mut n) = (Vec::new(), Vec::new(), 0usize);
                while let Some((path, prints, mine)) = r.fetch.front() {
                    let more = prints.len() + mine.len();
                    if !wanted.is_empty() && (n + more > budget || wanted.len() >= MAX_SYNC_NODES) {
                        break;
                    }
                    // A leaf lists at most `LEAF_REPLY_MAX` of the peer's replicas, but this
                    // node may hold many more there: offers beyond the budget are left out
                    // (those replicas are pushed unless the answer shows the peer's newer).
                    let offers: Vec<(ItemPrint, Version)> = mine
                        .iter()
                        .filter_map(|id| cx.store.get(id).map(|rec| (id, rec.version)))
                        .map(|(id, v)| (key_print(r.salt, &id.key), v))
                        .take(budget.saturating_sub(n + prints.len()))
                        .collect();
                    n += prints.len() + offers.len();
                    wanted.push(LeafFetch { leaf: *path, prints: prints.clone(), offers });
                    ids.extend(mine.iter().cloned());
                    r.fetch.pop_front();
                }
                r.push_after.insert(req, ids);
                ReplMessage::SyncFetch { session: r.id, req, segment: seg.theirs, wanted }
            } else {
                break;
            };
            r.next_req += 1;
            Self::request(r, cx, Some(seg.peer), req, msg);
        }
        if r.outstanding.is_empty() {
            // The segment is done.
            r.after = seg.mine.end;
            if seg.mine.end == r.range.end {
                self.finish(cx);
            } else {
                self.next_segment(cx);
            }
        }
    }

    /// Children's hashes from the peer, four per node asked for.
    pub(crate) fn on_nodes(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        req: u64,
        hashes: Vec<[NodeHash; 4]>,
        bytes: usize,
    ) {
        let Some((r, asked)) = self.round_for(cx, from, session, req, bytes) else { return };
        let ReplMessage::SyncHashes { paths, .. } = asked else { return };
        if hashes.len() != paths.len() {
            cx.faults.add(Fault::OutsideRange, &format_args!("repair: {} hashes", hashes.len()));
        }
        for (p, hs) in paths.iter().zip(hashes) {
            for (c, h) in children(*p).into_iter().zip(hs) {
                Self::classify(r, cx, c, &h);
            }
        }
        self.pump(cx);
    }

    /// The peer's fingerprints of the leaves asked for: what differs is fetched, or pushed.
    pub(crate) fn on_leaves(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        req: u64,
        leaves: Vec<LeafAnswer>,
        bytes: usize,
    ) {
        let f = cx.placement.f();
        let Some((r, asked)) = self.round_for(cx, from, session, req, bytes) else { return };
        let ReplMessage::SyncDigests { paths, .. } = asked else { return };
        let Some(seg) = r.seg.clone() else { return };
        if leaves.len() != paths.len() {
            cx.faults.add(Fault::OutsideRange, &format_args!("repair: {} leaves", leaves.len()));
        }
        let mut push: Vec<WireItem> = Vec::new();
        for (path, answer) in paths.iter().zip(leaves) {
            let theirs = match answer {
                LeafAnswer::Children(hs) => {
                    for (c, h) in children(*path).into_iter().zip(hs) {
                        Self::classify(r, cx, c, &h);
                    }
                    continue;
                }
                LeafAnswer::Prints(p) => p,
            };
            let Some(node) = node_range(seg.mine, *path) else { continue };
            let theirs_set: BTreeSet<ItemPrint> = theirs.iter().copied().collect();
            let mut mine_set = BTreeSet::new();
            let mut unlike = Vec::new();
            for (id, rec) in cx.store.iter_from(node, None) {
                let p = short(print(r.salt, id.key, rec));
                mine_set.insert(p);
                if !theirs_set.contains(&p) {
                    unlike.push(id.to_id());
                }
            }
            let want: Vec<ItemPrint> =
                theirs_set.into_iter().filter(|p| !mine_set.contains(p)).collect();
            if !want.is_empty() {
                r.fetch.push_back((*path, want, unlike));
                continue;
            }
            // The peer lists nothing this node lacks: it does not hold these at all.
            for id in unlike {
                let Some(i) = cx.placement.replica_at(&id.key, id.pos) else { continue };
                push.push(WireItem {
                    replica: (i + r.shift) % f,
                    ..wire_item(cx, id.view(), cx.store.get(&id), false)
                });
            }
        }
        Self::push(r, cx, &seg, push);
        self.pump(cx);
    }

    fn push(r: &mut Round, cx: &mut Ctx<'_>, seg: &Segment, push: Vec<WireItem>) {
        r.pushed += push.len() as u64;
        for chunk in push.chunks(cx.config.batch_items.max(1)) {
            let msg =
                ReplMessage::SyncPush { session: r.id, segment: seg.theirs, items: chunk.to_vec() };
            Self::send(r, cx, seg.peer, msg);
        }
    }

    /// Items fetched from the peer; then this node's unlike replicas of the same leaves that
    /// the peer does not hold newer are pushed.
    pub(crate) fn on_items(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        req: u64,
        items: Vec<WireItem>,
        bytes: usize,
    ) {
        let f = cx.placement.f();
        let Some((r, _)) = self.round_for(cx, from, session, req, bytes) else { return };
        let Some(seg) = r.seg.clone() else { return };
        // Per key, whether this node's replica must go to the peer after the merge.
        let mut peer_has: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for w in items {
            let theirs = cx.placement.position(&w.key, w.replica);
            let pos = cx.placement.position(&w.key, (w.replica + f - r.shift) % f);
            if !seg.theirs.contains(theirs) || !seg.mine.contains(pos) {
                cx.faults.add(
                    Fault::OutsideRange,
                    &format_args!("repair item at {theirs} outside {}", seg.theirs),
                );
                continue;
            }
            if !cx.serving.contains(pos) {
                continue;
            }
            let merged =
                cx.store.merge_newer(ItemId::new(pos, &w.key), w.version, w.value.as_deref());
            let send_mine = match merged {
                Merge::Installed => {
                    r.fetched += 1;
                    false
                }
                Merge::Diverged(true) => {
                    cx.faults.add(
                        Fault::Divergent,
                        &format_args!("{pos} holds {} with two values", w.version),
                    );
                    r.fetched += 1;
                    false
                }
                Merge::Diverged(false) => {
                    cx.faults.add(
                        Fault::Divergent,
                        &format_args!("{pos} holds {} with two values", w.version),
                    );
                    true
                }
                // Kept: this node's version is as new or newer; newer goes back.
                Merge::Kept => cx
                    .store
                    .get(&ItemId::new(pos, &w.key))
                    .is_some_and(|rec| rec.version > w.version),
            };
            peer_has.insert(w.key, send_mine);
        }
        let ids = r.push_after.remove(&req).unwrap_or_default();
        let mut push = Vec::new();
        for id in ids {
            if peer_has.get(id.key.as_ref()) == Some(&false) || !cx.serving.contains(id.pos) {
                continue;
            }
            let Some(i) = cx.placement.replica_at(&id.key, id.pos) else { continue };
            push.push(WireItem {
                replica: (i + r.shift) % f,
                ..wire_item(cx, id.view(), cx.store.get(&id), false)
            });
        }
        Self::push(r, cx, &seg, push);
        self.pump(cx);
    }
    /// The ring could not route the round's start: end it.
    pub(crate) fn on_undeliverable(&mut self, cx: &mut Ctx<'_>, session: u64) {
        if self.round.as_ref().is_some_and(|r| r.id == session) {
            self.finish(cx);
        }
    }

    /// Time passed: re-send unanswered requests; end a round without progress.
    pub(crate) fn on_tick(&mut self, cx: &mut Ctx<'_>) {
        let stuck = self
            .round
            .as_ref()
            .is_some_and(|r| cx.now >= r.last_progress + cx.config.transfer_timeout);
        if stuck {
            cx.faults.add(Fault::TransferTimeout, &"repair round without progress");
            return self.finish(cx);
        }
        let Some(r) = self.round.as_mut() else { return };
        let due: Vec<u64> = r
            .outstanding
            .iter()
            .filter(|(_, (_, _, t))| cx.now >= *t + cx.config.retransmit)
            .map(|(q, _)| *q)
            .collect();
        for req in due {
            let (to, msg, _) = r.outstanding.remove(&req).expect("just listed");
            Self::request(r, cx, to, req, msg);
        }
    }

    /// `range` is no longer served here: a round over it ends.
    pub(crate) fn lose(&mut self, cx: &mut Ctx<'_>, range: Range) {
        if self.round.as_ref().is_some_and(|r| r.range.overlaps(&range)) {
            self.finish(cx);
        }
    }
}

/// The answering side of anti-entropy: stateless, from the store and what this node serves.
pub(crate) fn serve(cx: &mut Ctx<'_>, from: NodeAddr, msg: ReplMessage) {
    match msg {
        ReplMessage::SyncStart { session, req, segment } => {
            let first = segment.start.offset(1);
            let covered = cx.serving.run_containing(first).map(|run| {
                let end = if run.is_full()
                    || segment.end.distance_from(segment.start)
                        <= run.end.distance_from(segment.start)
                {
                    segment.end
                } else {
                    run.end
                };
                let cov = Range::new(segment.start, end);
                (cov, hash_of(cx, Some(cov), salt(session)).0)
            });
            cx.send(from, ReplMessage::SyncCovered { session, req, covered });
        }
        ReplMessage::SyncHashes { session, req, segment, paths } => {
            if !cx.serving.covers(segment) {
                return cx.send(from, ReplMessage::SyncCovered { session, req, covered: None });
            }
            let s = salt(session);
            let mut hashes = Vec::with_capacity(paths.len());
            for p in paths {
                if node_range(segment, p).is_none() {
                    cx.faults.add(Fault::OutsideRange, &format_args!("repair path {p:?}"));
                }
                // Answered in place (zeros for a node covering nothing) to keep the order.
                hashes.push(child_hashes(cx, segment, p, s));
            }
            cx.send(from, ReplMessage::SyncNodes { session, req, hashes });
        }
        ReplMessage::SyncDigests { session, req, segment, paths } => {
            if !cx.serving.covers(segment) {
                return cx.send(from, ReplMessage::SyncCovered { session, req, covered: None });
            }
            let s = salt(session);
            let mut leaves = Vec::with_capacity(paths.len());
            let mut listed = 0usize;
            for p in paths {
                let Some(node) = node_range(segment, p) else {
                    cx.faults.add(Fault::OutsideRange, &format_args!("repair path {p:?}"));
                    leaves.push(LeafAnswer::Prints(Vec::new()));
                    continue;
                };
                let count =
                    cx.store.iter_from(node, None).take(LEAF_REPLY_MAX as usize + 1).count();
                if count > LEAF_REPLY_MAX as usize || listed + count > MAX_SYNC_DIGESTS {
                    leaves.push(LeafAnswer::Children(child_hashes(cx, segment, p, s)));
                    continue;
                }
                listed += count;
                let prints = cx
                    .store
                    .iter_from(node, None)
                    .map(|(id, rec)| short(print(s, id.key, rec)))
                    .collect();
                leaves.push(LeafAnswer::Prints(prints));
            }
            cx.send(from, ReplMessage::SyncLeaves { session, req, leaves });
        }
        ReplMessage::SyncFetch { session, req, segment, wanted } => {
            let s = salt(session);
            let mut items = Vec::new();
            let mut bytes = 0usize;
            'leaves: for LeafFetch { leaf: path, prints, offers } in wanted {
                let Some(node) = node_range(segment, path) else {
                    cx.faults.add(Fault::OutsideRange, &format_args!("repair fetch {path:?}"));
                    continue;
                };
                if !cx.serving.covers(node) {
                    continue;
                }
                let prints: BTreeSet<ItemPrint> = prints.into_iter().collect();
                // The asker holds these keys (by print) at these versions: a replica held here
                // older than offered is not sent (the asker pushes its newer one).
                let mut offered: BTreeMap<ItemPrint, Version> = BTreeMap::new();
                for (k, v) in offers {
                    let e = offered.entry(k).or_insert(v);
                    *e = (*e).min(v); // two keys under one print: the safer, lower bound
                }
                let found: Vec<ItemId> = cx
                    .store
                    .iter_from(node, None)
                    .filter(|(id, rec)| prints.contains(&short(print(s, id.key, *rec))))
                    .filter(|(id, rec)| {
                        offered.get(&key_print(s, id.key)).is_none_or(|v| *v <= rec.version)
                    })
                    .map(|(id, _)| id.to_id())
                    .collect();
                for id in found {
                    let r = cx.store.get(&id);
                    bytes += id.key.len() + r.and_then(|r| r.value).map_or(0, <[u8]>::len);
                    items.push(wire_item(cx, id.view(), r, false));
                    if bytes >= cx.config.batch_bytes {
                        break 'leaves; // the rest waits for the next round
                    }
                }
            }
            cx.send(from, ReplMessage::SyncItems { session, req, items });
        }
        ReplMessage::SyncPush { segment, items, .. } => {
            for w in items {
                let pos = cx.placement.position(&w.key, w.replica);
                if !segment.contains(pos) {
                    cx.faults.add(
                        Fault::OutsideRange,
                        &format_args!("repair push of {pos} outside {segment}"),
                    );
                    continue;
                }
                if !cx.serving.contains(pos) {
                    continue;
                }
                if let Merge::Diverged(_) =
                    cx.store.merge_newer(ItemId::new(pos, &w.key), w.version, w.value.as_deref())
                {
                    cx.faults.add(
                        Fault::Divergent,
                        &format_args!("{pos} holds {} with two values", w.version),
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use selfman_ports::{Range, RingId};

    use super::{children, node_range};
    use crate::messages::Path;

    #[test]
    fn tree_nodes_split_a_segment_into_equal_adjacent_parts() {
        for seg in [
            Range::new(RingId(10), RingId(110)),
            Range::new(RingId(u64::MAX - 40), RingId(60)),
            Range::full(RingId(7)),
        ] {
            let root = node_range(seg, Path { level: 0, index: 0 }).unwrap();
            assert_eq!(root, seg);
            let mut total = 0u128;
            let mut prev = seg.start;
            for c in children(Path { level: 0, index: 0 }) {
                let r = node_range(seg, c).unwrap();
                assert_eq!(r.start, prev, "children are adjacent");
                prev = r.end;
                total += r.size();
                let mut sub = 0u128;
                for g in children(c) {
                    sub += node_range(seg, g).unwrap().size();
                }
                assert_eq!(sub, r.size());
            }
            assert_eq!(prev, seg.end);
            assert_eq!(total, seg.size());
        }
        // A path that does not exist, or a node with nothing in it.
        let small = Range::new(RingId(0), RingId(3));
        assert_eq!(node_range(small, Path { level: 1, index: 4 }), None);
        assert_eq!(node_range(small, Path { level: 2, index: 0 }), None);
        assert_eq!(node_range(small, Path { level: 40, index: 0 }), None);
    }
}
