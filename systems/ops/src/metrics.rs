//! Metrics in the Prometheus text exposition format (version 0.0.4), written from snapshots.
//!
//! [`Metrics`] writes families (`# HELP`, `# TYPE`, then samples) with escaped label values;
//! the `write_*` functions turn a node's snapshots into families.

use std::fmt::Write as _;

use selfman_core::SystemSnapshot;
use selfman_net::NetStats;
use selfman_ports::{RingStatus, RingView};

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (the name should end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in cumulative buckets, with their sum and count (write one with
    /// [`Metrics::histogram`]).
    Histogram,
}

/// A Prometheus text-format document being written.
///
/// ```
/// use selfman_ops::metrics::{Kind, Metrics};
///
/// let mut m = Metrics::new();
/// m.family("jobs_total", Kind::Counter, "Jobs done.");
/// m.sample("jobs_total", &[("queue", "a \"b\"")], 3.0);
/// assert_eq!(
///     m.finish(),
///     "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{queue=\"a \\\"b\\\"\"} 3\n"
/// );
/// ```
#[derive(Debug, Default)]
pub struct Metrics {
    out: String,
}

impl Metrics {
    /// An empty document.
    #[must_use]
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Starts a family: its help text and type. Samples of it follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram family with no labels: `NAME_bucket{le="…"}` for each bound of `h` (and
    /// `+Inf`), cumulative, then `NAME_sum` and `NAME_count`. `NAME` should end in its unit
    /// (`_seconds`).
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            self.sample(&bucket, &[("le", &number(*bound))], cumulative as f64);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count as f64);
        self.sample(&format!("{name}_sum"), &[], h.sum);
        self.sample(&format!("{name}_count"), &[], h.count as f64);
    }

    /// The document.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

/// A histogram that threads update without a lock: fixed upper bounds (in the unit observed,
/// e.g. seconds), one counter per bucket, a running sum and count.
///
/// ```
/// use selfman_ops::metrics::{Histogram, Metrics};
///
/// let h = Histogram::new(&[0.001, 0.01]);
/// h.observe(0.0005);
/// h.observe(0.004);
/// h.observe(2.0);
/// let mut m = Metrics::new();
/// m.histogram("op_seconds", "How long ops took.", &h.snapshot());
/// let text = m.finish();
/// assert!(text.contains("op_seconds_bucket{le=\"0.001\"} 1\n"));
/// assert!(text.contains("op_seconds_bucket{le=\"0.01\"} 2\n"));
/// assert!(text.contains("op_seconds_bucket{le=\"+Inf\"} 3\n"));
/// assert!(text.contains("op_seconds_count 3\n"));
/// ```
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// One per bound, then the overflow bucket.
    counts: Vec<std::sync::atomic::AtomicU64>,
    /// The sum in millionths of the unit, so that it adds without a lock.
    sum_micros: std::sync::atomic::AtomicU64,
}

/// The default bounds of [`Histogram::latency`]: 250 µs to 10 s, in seconds.
pub const LATENCY_BOUNDS: [f64; 15] =
    [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

impl Histogram {
    /// Empty, with these upper bounds (sorted ascending, finite; unsorted or non-finite bounds
    /// are dropped).
    #[must_use]
    pub fn new(bounds: &[f64]) -> Histogram {
        let mut b: Vec<f64> = Vec::with_capacity(bounds.len());
        for &x in bounds {
            if x.is_finite() && b.last().is_none_or(|&l| x > l) {
                b.push(x);
            }
        }
        let counts = (0..=b.len()).map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
        Histogram { bounds: b, counts, sum_micros: std::sync::atomic::AtomicU64::new(0) }
    }

    /// Empty, with [`LATENCY_BOUNDS`] (seconds).
    #[must_use]
    pub fn latency() -> Histogram {
        Histogram::new(&LATENCY_BOUNDS)
    }

    /// Counts one observation (negative and NaN count as 0).
    pub fn observe(&self, v: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let v = if v.is_nan() || v < 0.0 { 0.0 } else { v };
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v * 1e6).min(u64::MAX as f64) as u64, Relaxed);
    }

    /// Counts a duration, in seconds.
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64());
    }

    /// The counts now (each read on its own: under concurrent updates the total may trail
    /// the buckets by the updates in flight).
    #[must_use]
    pub fn snapshot(&self) -> HistogramSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let all: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let count = all.iter().sum();
        HistogramSnapshot {
            bounds: self.bounds.clone(),
            counts: all[..self.bounds.len()].to_vec(),
            count,
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

impl Default for Histogram {
    /// [`Histogram::latency`].
    fn default() -> Histogram {
        Histogram::latency()
    }
}

/// A histogram's counts at one moment (not cumulative: `counts[i]` is the observations in
/// `(bounds[i-1], bounds[i]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// The upper bounds.
    pub bounds: Vec<f64>,
    /// Observations per bucket, one per bound (those above the last bound are only in `count`).
    pub counts: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Per-component families: events handled, queue depth, faults, restarts, hot swaps, and
/// whether each component is active.
pub fn write_components(m: &mut Metrics, snap: &SystemSnapshot) {
    let rows: Vec<(String, &str, &selfman_core::ComponentSnapshot)> =
        snap.components.iter().map(|c| (c.id.to_string(), short_type(c.type_name), c)).collect();
    type Field = fn(&selfman_core::ComponentSnapshot) -> f64;
    let families: [(&str, Kind, &str, Field); 6] = [
        (
            "selfman_component_events_handled_total",
            Kind::Counter,
            "Events the component has handled.",
            |c| c.handled as f64,
        ),
        (
            "selfman_component_queue_depth",
            Kind::Gauge,
            "Events waiting in the component's ports.",
            |c| c.queued as f64,
        ),
        (
            "selfman_component_faults_total",
            Kind::Counter,
            "Handler failures of the component.",
            |c| c.faults as f64,
        ),
        (
            "selfman_component_restarts_total",
            Kind::Counter,
            "Restarts of the component by its supervisor.",
            |c| c.restarts as f64,
        ),
        (
            "selfman_component_swaps_total",
            Kind::Counter,
            "Hot swaps of the component's definition.",
            |c| c.swaps as f64,
        ),
        (
            "selfman_component_active",
            Kind::Gauge,
            "1 if the component is active (started and not failed).",
            |c| f64::from(u8::from(c.state == selfman_core::LifecycleState::Active)),
        ),
    ];
    for (name, kind, help, f) in families {
        m.family(name, kind, help);
        for (id, ty, c) in &rows {
            m.sample(name, &[("component", id), ("type", ty)], f(c));
        }
    }
}

/// The last path segments of a type name, without generic arguments' paths:
/// `selfman_relaxed_ring::component::RingComponent<u64>` → `RingComponent<u64>`.
#[must_use]
pub fn short_type(full: &str) -> &str {
    let base = full.split('<').next().unwrap_or(full);
    match base.rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

/// Transport families from the node's [`NetStats`].
pub fn write_net(m: &mut Metrics, s: &NetStats) {
    let counters: [(&str, &str, u64); 14] = [
        ("selfman_net_frames_out_total", "Data frames written to sockets.", s.frames_out),
        ("selfman_net_bytes_out_total", "Bytes written to sockets.", s.bytes_out),
        ("selfman_net_frames_in_total", "Data frames read from sockets.", s.frames_in),
        ("selfman_net_bytes_in_total", "Bytes read from sockets.", s.bytes_in),
        ("selfman_net_writes_total", "Write calls that wrote something.", s.writes),
        ("selfman_net_connections_opened_total", "Connections established.", s.connections_opened),
        ("selfman_net_dials_total", "Connection attempts made.", s.dials),
        ("selfman_net_dropped_queue_full_total", "Messages dropped: the peer's queue was full.", s.dropped_queue_full),
        ("selfman_net_dropped_unreachable_total", "Messages dropped: the peer was unreachable.", s.dropped_unreachable),
        ("selfman_net_dropped_unknown_protocol_total", "Messages dropped: no such protocol here.", s.dropped_unknown_protocol),
        ("selfman_net_closed_bad_input_total", "Connections closed for bad input.", s.closed_bad_input),
        ("selfman_net_auth_failures_total", "Connections refused by the secure-link handshake or a record that failed authentication.", s.auth_failures),
        ("selfman_net_closed_overloaded_total", "Connections closed for exceeding the inbound budget.", s.closed_overloaded),
        ("selfman_net_local_deliveries_total", "Messages handed to a node of the same process as values.", s.local_deliveries),
    ];
    for (name, help, v) in counters {
        m.single(name, Kind::Counter, help, v as f64);
    }
    m.single(
        "selfman_net_connections",
        Kind::Gauge,
        "Established connections (one per connected peer).",
        s.connections as f64,
    );
}

/// The ring as this node sees it: whether it is in a ring, the ring's size estimated from the
/// successor list's span, the known peers, the suspected ones, and its range.
pub fn write_ring(m: &mut Metrics, v: &RingView) {
    m.single(
        "selfman_ring_in_ring",
        Kind::Gauge,
        "1 if this node is in a ring (owns a range).",
        f64::from(u8::from(v.status == RingStatus::InRing)),
    );
    m.single(
        "selfman_ring_size_estimate",
        Kind::Gauge,
        "Peers in the ring, estimated from the part of the circle this node's successor list spans.",
        estimate_size(v),
    );
    m.single(
        "selfman_ring_successors",
        Kind::Gauge,
        "Entries in this node's successor list.",
        v.succ_list.len() as f64,
    );
    m.single(
        "selfman_ring_predecessors",
        Kind::Gauge,
        "Entries in this node's predecessor list.",
        v.pred_list.len() as f64,
    );
    m.single(
        "selfman_ring_fingers",
        Kind::Gauge,
        "Distinct peers in the routing table.",
        v.fingers.len() as f64,
    );
    m.single(
        "selfman_ring_suspected",
        Kind::Gauge,
        "Nodes this node suspects or knows to have left.",
        v.crashed.len() as f64,
    );
    if let Some(r) = v.range {
        m.family("selfman_ring_range_info", Kind::Gauge, "The range (start, end] this node owns.");
        let (start, end) = (r.start.0.to_string(), r.end.0.to_string());
        m.sample("selfman_ring_range_info", &[("start", &start), ("end", &end)], 1.0);
        m.single(
            "selfman_ring_range_fraction",
            Kind::Gauge,
            "The fraction of the identifier space this node owns.",
            r.end.distance_from(r.start) as f64 / 2f64.powi(64),
        );
    }
}

/// The ring's size as this node can tell it: exact when its successor and predecessor lists
/// meet (every other peer is in one of them); otherwise estimated from how much of the circle
/// the successor list spans (`k` successors spanning a fraction `d` of the circle suggest
/// `k / d` peers, exact for evenly spread identifiers). 1 when the node is alone, 0 when it is
/// in no ring.
#[must_use]
pub fn estimate_size(v: &RingView) -> f64 {
    if v.status != RingStatus::InRing {
        return 0.0;
    }
    let Some(last) = v.succ_list.iter().rfind(|p| p.id != v.me.id) else {
        return 1.0;
    };
    // A ring small enough that the two lists meet: they hold every other peer.
    let succs: std::collections::BTreeSet<_> =
        v.succ_list.iter().filter(|p| p.id != v.me.id).map(|p| p.id).collect();
    let preds: std::collections::BTreeSet<_> =
        v.pred_list.iter().filter(|p| p.id != v.me.id).map(|p| p.id).collect();
    if succs.intersection(&preds).next().is_some() {
        return (succs.union(&preds).count() + 1) as f64;
    }
    let k = v.succ_list.iter().filter(|p| p.id != v.me.id).count() as f64;
    let span = last.id.distance_from(v.me.id) as f64 / 2f64.powi(64);
    if span <= 0.0 {
        return 1.0;
    }
    // the list covers k of the other peers: those k plus this node span `span` of the circle
    ((k / span).round()).max(k + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes_follow_the_text_format() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let mut m = Metrics::new();
        m.family("x", Kind::Gauge, "line one\nline two");
        assert!(m.finish().starts_with("# HELP x line one\\nline two\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new(&[1.0, 2.0, f64::NAN, 1.5, 4.0]);
        assert_eq!(h.bounds, vec![1.0, 2.0, 4.0], "unsorted and NaN bounds dropped");
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, 9.0, -1.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![3, 2, 1], "-1 counts as 0; a bound is inclusive");
        assert_eq!(s.count, 7);
        assert!((s.sum - 17.0).abs() < 1e-9, "{}", s.sum);
        let mut m = Metrics::new();
        m.histogram("t_seconds", "T.", &s);
        let text = m.finish();
        let want = "# HELP t_seconds T.\n# TYPE t_seconds histogram\n\
            t_seconds_bucket{le=\"1\"} 3\nt_seconds_bucket{le=\"2\"} 5\n\
            t_seconds_bucket{le=\"4\"} 6\nt_seconds_bucket{le=\"+Inf\"} 7\n\
            t_seconds_sum 17\nt_seconds_count 7\n";
        assert_eq!(text, want);
    }

    #[test]
    fn short_type_names() {
        assert_eq!(short_type("a::b::C"), "C");
        assert_eq!(short_type("a::b::C<x::Y>"), "C<x::Y>");
        assert_eq!(short_type("C"), "C");
    }
}
