//! Sets of ring identifiers: [`RangeSet`], and the circular order inside a [`Range`].
//!
//! A [`Range`] is an arc `(start, end]` that may wrap around zero; a set of them is kept as
//! sorted, disjoint, non-adjacent **linear** intervals `[lo, hi]` of `u64` (an arc that wraps
//! is two of them), so that union, difference and intersection are plain interval merges.
//!
//! Invariants (checked by the property tests below against a point-by-point model):
//! * the intervals are sorted, `lo <= hi`, and between two of them lies at least one
//!   identifier that is not in the set;
//! * [`RangeSet::contains`] agrees with the union of the ranges inserted minus those removed;
//! * [`RangeSet::ranges`] gives back arcs that cover exactly the set, joining the interval that
//!   ends at `u64::MAX` with the one that starts at `0` into one wrapping arc.

use selfman_ports::{Range, RingId};

/// The linear pieces of `range` in circular order from its start: one, or two when it wraps
/// (the whole circle `(s, s]` is `[s+1, MAX]` then `[0, s]`).
pub(crate) fn segments(range: Range) -> Vec<(u64, u64)> {
    let (s, e) = (range.start.0, range.end.0);
    if s < e {
        vec![(s + 1, e)]
    } else if s == u64::MAX {
        // (MAX, e]: starts at 0, no wrap (e == MAX is the whole circle).
        vec![(0, e)]
    } else {
        vec![(s + 1, u64::MAX), (0, e)]
    }
}

/// How far `x` is into `range`, in circular order: `1` for the first identifier after the
/// start, `range.size()` for the end. Only meaningful for `x` in the range.
pub(crate) fn offset_in(range: Range, x: RingId) -> u128 {
    match x.distance_from(range.start) {
        0 => 1u128 << 64, // the end of the whole circle
        d => u128::from(d),
    }
}

/// The arc `(lo - 1, hi]` covering the linear interval `[lo, hi]`.
fn arc(lo: u64, hi: u64) -> Range {
    Range::new(RingId(lo.wrapping_sub(1)), RingId(hi))
}

/// A set of ring identifiers, as disjoint linear intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    runs: Vec<(u64, u64)>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// The identifiers of `range`.
    pub fn of(range: Range) -> RangeSet {
        let mut s = RangeSet::new();
        s.insert(range);
        s
    }

    /// Whether no identifier is in the set.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// How many identifiers the set holds.
    pub fn size(&self) -> u128 {
        self.runs.iter().map(|(l, h)| u128::from(h - l) + 1).sum()
    }

    /// The linear run `[lo, hi]` of the set holding `x`, if any (runs end at `u64::MAX`; a
    /// wrapping arc is two runs).
    pub fn linear_run_containing(&self, x: RingId) -> Option<(u64, u64)> {
        let i = self.runs.partition_point(|(_, h)| *h < x.0);
        self.runs.get(i).copied().filter(|(l, _)| *l <= x.0)
    }

    /// Whether `x` is in the set.
    pub fn contains(&self, x: RingId) -> bool {
        let i = self.runs.partition_point(|(_, h)| *h < x.0);
        self.runs.get(i).is_some_and(|(l, _)| *l <= x.0)
    }

    /// Whether every identifier of `range` is in the set.
    pub fn covers(&self, range: Range) -> bool {
        let mut want = RangeSet::of(range);
        want.subtract(self);
        want.is_empty()
    }

    /// Adds the identifiers of `range`.
    pub fn insert(&mut self, range: Range) {
        for (lo, hi) in segments(range) {
            self.insert_run(lo, hi);
        }
    }

    /// Removes the identifiers of `range`.
    pub fn remove(&mut self, range: Range) {
        for (lo, hi) in segments(range) {
            self.remove_run(lo, hi);
        }
    }

    /// Adds every identifier of `other`.
    pub fn union(&mut self, other: &RangeSet) {
        for &(lo, hi) in &other.runs {
            self.insert_run(lo, hi);
        }
    }

    /// Removes every identifier of `other`.
    pub fn subtract(&mut self, other: &RangeSet) {
        for &(lo, hi) in &other.runs {
            self.remove_run(lo, hi);
        }
    }

    /// The identifiers in both sets.
    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        let mut out = self.clone();
        let mut outside = RangeSet { runs: vec![(0, u64::MAX)] };
        outside.subtract(other);
        out.subtract(&outside);
        out
    }

    /// The set as arcs, joining the run that ends at `u64::MAX` with the one starting at `0`.
    pub fn ranges(&self) -> Vec<Range> {
        let n = self.runs.len();
        if n == 0 {
            return Vec::new();
        }
        if self.runs == [(0, u64::MAX)] {
            return vec![Range::full(RingId(u64::MAX))];
        }
        let wraps = n >= 2 && self.runs[0].0 == 0 && self.runs[n - 1].1 == u64::MAX;
        let mut out = Vec::with_capacity(n);
        let inner = if wraps { &self.runs[1..n - 1] } else { &self.runs[..] };
        for &(lo, hi) in inner {
            out.push(arc(lo, hi));
        }
        if wraps {
            out.push(arc(self.runs[n - 1].0, self.runs[0].1));
        }
        out
    }

    /// The arc of the set that contains `x`, as far as the set reaches on both sides (wrapping
    /// through zero).
    pub fn run_containing(&self, x: RingId) -> Option<Range> {
        if !self.contains(x) {
            return None;
        }
        self.ranges().into_iter().find(|r| r.contains(x))
    }

    fn insert_run(&mut self, lo: u64, hi: u64) {
        // Runs that overlap or touch [lo, hi] merge with it.
        let first = self.runs.partition_point(|(_, h)| h.saturating_add(1) < lo);
        let mut last = first;
        let (mut nlo, mut nhi) = (lo, hi);
        while last < self.runs.len() && self.runs[last].0 <= hi.saturating_add(1) {
            nlo = nlo.min(self.runs[last].0);
            nhi = nhi.max(self.runs[last].1);
            last += 1;
        }
        self.runs.splice(first..last, [(nlo, nhi)]);
    }

    fn remove_run(&mut self, lo: u64, hi: u64) {
        let mut out = Vec::with_capacity(self.runs.len() + 1);
        for &(l, h) in &self.runs {
            if h < lo || l > hi {
                out.push((l, h));
                continue;
            }
            if l < lo {
                out.push((l, lo - 1));
            }
            if h > hi {
                out.push((hi + 1, h));
            }
        }
        self.runs = out;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest, Strategy};
    use selfman_ports::{Range, RingId};

    use super::{offset_in, segments, RangeSet};

    /// Points near zero and near the top, where wrapping happens.
    fn point() -> impl Strategy<Value = u64> {
        (0u64..24).prop_map(|x| if x < 12 { x } else { u64::MAX - (x - 12) })
    }

    fn probes() -> Vec<u64> {
        (0u64..14).chain((0u64..14).map(|x| u64::MAX - x)).collect()
    }

    proptest! {
        #[test]
        fn a_set_agrees_with_its_ranges_point_by_point(
            ops in proptest::collection::vec((point(), point(), 0u8..2), 0..12)
        ) {
            let mut set = RangeSet::new();
            for (a, b, op) in &ops {
                let r = Range::new(RingId(*a), RingId(*b));
                if *op == 0 { set.insert(r) } else { set.remove(r) }
            }
            // The model: x is in iff the last operation that touched it was an insert.
            for x in probes() {
                let x = RingId(x);
                let mut inside = false;
                for (a, b, op) in &ops {
                    if Range::new(RingId(*a), RingId(*b)).contains(x) {
                        inside = *op == 0;
                    }
                }
                prop_assert_eq!(set.contains(x), inside, "at {}", x.0);
                // The arcs cover the same points.
                let in_arcs = set.ranges().iter().any(|r| r.contains(x));
                prop_assert_eq!(in_arcs, inside, "arcs at {}", x.0);
            }
            // Runs are sorted, disjoint and not adjacent.
            for w in set.runs.windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0);
            }
        }

        #[test]
        fn intersection_and_cover_agree_with_membership(
            a in (point(), point()), b in (point(), point())
        ) {
            let ra = Range::new(RingId(a.0), RingId(a.1));
            let rb = Range::new(RingId(b.0), RingId(b.1));
            let i = RangeSet::of(ra).intersection(&RangeSet::of(rb));
            for x in probes() {
                let x = RingId(x);
                prop_assert_eq!(i.contains(x), ra.contains(x) && rb.contains(x));
            }
            let covered = probes().iter().all(|x| !rb.contains(RingId(*x)) || ra.contains(RingId(*x)));
            // On these small arcs the probes see every point that matters.
            if rb.size() < 20 && ra.size() < 20 {
                prop_assert_eq!(RangeSet::of(ra).covers(rb), covered);
            }
        }
    }

    #[test]
    fn segments_follow_the_circle_from_the_start() {
        assert_eq!(segments(Range::new(RingId(3), RingId(9))), vec![(4, 9)]);
        assert_eq!(
            segments(Range::new(RingId(u64::MAX - 1), RingId(2))),
            vec![(u64::MAX, u64::MAX), (0, 2)]
        );
        assert_eq!(segments(Range::full(RingId(5))), vec![(6, u64::MAX), (0, 5)]);
        assert_eq!(segments(Range::full(RingId(u64::MAX))), vec![(0, u64::MAX)]);
        assert_eq!(segments(Range::new(RingId(u64::MAX), RingId(4))), vec![(0, 4)]);
    }

    #[test]
    fn offsets_count_from_one_to_the_size() {
        let r = Range::new(RingId(u64::MAX - 1), RingId(2));
        assert_eq!(offset_in(r, RingId(u64::MAX)), 1);
        assert_eq!(offset_in(r, RingId(2)), r.size());
        let full = Range::full(RingId(7));
        assert_eq!(offset_in(full, RingId(8)), 1);
        assert_eq!(offset_in(full, RingId(7)), 1u128 << 64);
    }

    #[test]
    fn a_wrapping_set_comes_back_as_one_arc() {
        let mut s = RangeSet::new();
        s.insert(Range::new(RingId(u64::MAX - 3), RingId(5)));
        assert_eq!(s.ranges(), vec![Range::new(RingId(u64::MAX - 3), RingId(5))]);
        s.insert(Range::new(RingId(5), RingId(u64::MAX - 3)));
        assert_eq!(s.size(), 1u128 << 64);
        assert!(s.ranges()[0].is_full());
        s.remove(Range::new(RingId(10), RingId(20)));
        assert_eq!(s.ranges(), vec![Range::new(RingId(20), RingId(10))]);
        assert_eq!(s.run_containing(RingId(0)), Some(Range::new(RingId(20), RingId(10))));
        assert_eq!(s.run_containing(RingId(15)), None);
    }
}
