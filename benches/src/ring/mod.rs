//! A ring overlay in the simulator: build a ring of N peers by joins in waves, then measure
//! lookups (hops, correctness), steady-state maintenance traffic, simulator speed under churn,
//! memory per node, and healing after 10 % of the peers crash at once (lookup consistency
//! checked throughout). Each node is the real stack: `selfman-failure-detector`'s heartbeat
//! detector under the ring peer.
//!
//! ```text
//! selfman-bench ring --impl relaxed|chord --nodes N [--seed S] [--k K] [--lookups L]
//!                    [--phases maintenance,lookups,churn,heal] [--settle-s 30] [--window-s 10]
//!                    [--lookup-s 10] [--churn-s 60] [--churn-per-s 10] [--kill-permille 100]
//!                    [--check-ms 50] [--growth 1] [--fd-period-ms 100] [--fd-timeout-ms 400]
//!                    [--stabilize-ms 1000] [--succ-list 7] [--sorted-waves 0|1]
//!                    [--watch-succs 1 (Chord: list entries its detector watches)]
//!                    [--phases joins --joins 1000 --joins-limit-s 300]
//!                    [--phases merge --groups 2 --apart-s 40 --merge-limit-s 120 --fanout 4
//!                     --merge-depth 3]
//! ```
//!
//! `--impl chord` runs `selfman-chord` behind the same port, over the same detector with the
//! same settings, through the same phases (not `merge`: Chord has no merge). The relaxed
//! ring promises lookup consistency, so an overlap fails its run; Chord does not, so its
//! overlaps are counted and reported, and only a wrong answer on a converged ring (the
//! `lookups` phase) or a ring that does not converge fails it.
//!
//! One line per measure, in the house format (`docs/benchmarks.md`, "Relaxed ring"):
//! `ring-build`, `ring-memory`, `ring-maintenance`, `ring`, `ring-sim`, `ring-heal`,
//! `ring-joins` and `ring-merge` (only when named in `--phases`: they add peers or
//! partition the ring). Targets
//! (issue 14) are computed from the run's own parameters and printed beside each figure
//! (`target_…`, `met=`): nothing here is a hard-coded result.

mod merge;
mod phases;
mod world;

use std::time::{Duration, Instant};

use selfman_chord::ChordConfig;
use selfman_failure_detector::FdConfig;
use selfman_relaxed_ring::RingConfig;

use crate::args::Args;
use world::{Impl, World};

/// The phases run after the build, in this order, unless `--phases` names others.
const PHASES: &[&str] = &["maintenance", "lookups", "churn", "heal", "joins", "merge"];

/// The phases run when `--phases` is not given (`joins` adds peers and `merge` partitions
/// the ring: by name only).
const DEFAULT_PHASES: &[&str] = &["maintenance", "lookups", "churn", "heal"];

pub(crate) fn run(args: &Args) -> Result<String, String> {
    let imp = args.text("impl", "relaxed");
    if imp != "relaxed" && imp != "chord" {
        return Err(format!("--impl {imp}: unknown ring (known: relaxed, chord)"));
    }
    let nodes = args.get("nodes", 1000)? as usize;
    if !(2..1 << 24).contains(&nodes) {
        return Err("--nodes must be between 2 and 16777215".into());
    }
    let seed = args.get("seed", 1)?;
    let phases: Vec<&str> = match args.text("phases", "") {
        "" => DEFAULT_PHASES.to_vec(),
        "none" => Vec::new(),
        list => list.split(',').collect(),
    };
    if let Some(p) = phases.iter().find(|p| !PHASES.contains(p)) {
        return Err(format!(
            "--phases: unknown phase `{p}` (known: {}, or none)",
            PHASES.join(",")
        ));
    }
    if imp == "chord" && phases.contains(&"merge") {
        return Err("--impl chord --phases merge: Chord has no ring merge".into());
    }
    let ring_default = RingConfig::default();
    let ring_config = RingConfig {
        k: args.get("k", u64::from(ring_default.k))? as u32,
        succ_list_size: args.get("succ-list", ring_default.succ_list_size as u64)? as usize,
        stabilize: ms(args.get("stabilize-ms", ring_default.stabilize.as_millis() as u64)?),
        merge_fanout: args.get("fanout", u64::from(ring_default.merge_fanout))? as u32,
        merge_depth: args.get("merge-depth", u64::from(ring_default.merge_depth))? as u8,
        ..ring_default
    };
    let chord_default = ChordConfig::default();
    let chord_stabilize = ms(args.get("stabilize-ms", chord_default.stabilize.as_millis() as u64)?);
    let chord_config = ChordConfig {
        succ_list_size: args.get("succ-list", chord_default.succ_list_size as u64)? as usize,
        stabilize: chord_stabilize,
        watched_succs: args.get("watch-succs", chord_default.watched_succs as u64)? as usize,
        // Timers are checked once a tick: a period below the default tick shortens the tick.
        tick: chord_default.tick.min(chord_stabilize).max(ms(1)),
        ..chord_default
    };
    let ring = if imp == "chord" {
        chord_config.validate().map_err(|e| e.to_string())?;
        Impl::Chord(chord_config)
    } else {
        ring_config.validate().map_err(|e| e.to_string())?;
        Impl::Relaxed(ring_config)
    };
    // The relaxed ring promises lookup consistency: an overlap fails its run. Chord does not:
    // its overlaps are measured.
    let strict = matches!(ring, Impl::Relaxed(_));
    // Chord routes over fingers at powers of 2.
    let k = if strict { ring_config.k } else { 2 };
    let fd_default = FdConfig::default();
    let fd_config = FdConfig {
        period: ms(args.get("fd-period-ms", fd_default.period.as_millis() as u64)?),
        initial_timeout: ms(
            args.get("fd-timeout-ms", fd_default.initial_timeout.as_millis() as u64)?
        ),
        ..fd_default
    };
    fd_config.validate().map_err(|e| e.to_string())?;
    let common = format!("impl={imp} nodes={nodes}");

    // Build and converge; memory is what the simulation holds then, per node.
    let live_before = crate::alloc::start();
    let wall = Instant::now();
    let mut w = World::new(seed, ring, fd_config);
    let growth = args.get("growth", 1)?.max(1) as usize;
    // Chord tells a joiner `Joined` before stabilisation has sorted it in, and sorts the
    // joiners of one gap one per round: a wave of as many joiners as the ring has, into a ring
    // still sorting the last, would pile up. By default Chord's waves wait for the ring to be
    // sorted (`--sorted-waves 1`); the relaxed ring's do not (as before).
    let sorted = args.get("sorted-waves", u64::from(!strict))? != 0;
    let built = w.build(nodes, growth, Duration::from_secs(120), sorted)?;
    let join_wall = wall.elapsed();
    let every = if nodes > 20_000 { ms(1000) } else { ms(250) };
    let converged =
        phases::converge(&mut w, every, Duration::from_secs(args.get("converge-limit-s", 120)?));
    let live = crate::alloc::stop() - live_before;
    let joined_s = built.joined_at.since_start().as_secs_f64();
    match &converged {
        Ok(took) => println!(
            "ring-build {common} seed={seed} waves={} sorted_waves={sorted} joined_s={joined_s:.1} \
             converged_s={:.1} wall_ms={} join_wall_ms={}",
            built.waves,
            took.as_secs_f64(),
            wall.elapsed().as_millis(),
            join_wall.as_millis(),
        ),
        Err((n, first)) => {
            println!(
                "ring-build {common} seed={seed} waves={} joined_s={joined_s:.1} converged=no \
                 complaints={n} wall_ms={}",
                built.waves,
                wall.elapsed().as_millis(),
            );
            eprintln!("not converged: {first}");
        }
    }
    println!(
        "ring-memory {common} bytes_per_node={} rss_mb={} peak_rss_mb={}",
        live / nodes as isize,
        status_kb("VmRSS").map_or(0, |k| k / 1024),
        status_kb("VmHWM").map_or(0, |k| k / 1024),
    );
    if converged.is_err() && !phases.is_empty() {
        return Err("the ring did not converge: no further measure is meaningful".into());
    }
    let settle = Duration::from_secs(args.get("settle-s", 30)?);
    w.sim.run_for(settle);

    // Safety findings (a lookup answered by a peer that is not responsible, two live peers
    // owning one key): the run fails with them, whatever the speed. Chord promises no lookup
    // consistency: its overlaps are reported, and a ring that does not converge fails it.
    let mut unsafe_runs: Vec<String> = Vec::new();
    for phase in phases {
        match phase {
            "maintenance" => {
                let window = Duration::from_secs(args.get("window-s", 10)?.max(1));
                let t = phases::maintenance(&w, window);
                println!(
                    "ring-maintenance {common} msgs_per_node_s={:.1} ring_msgs_per_node_s={:.1} \
                     fd_msgs_per_node_s={:.1} window_s={}",
                    t.ring + t.fd,
                    t.ring,
                    t.fd,
                    window.as_secs()
                );
            }
            "lookups" => {
                let n = args.get("lookups", 100_000)?;
                let over = Duration::from_secs(args.get("lookup-s", 10)?.max(1));
                let l = phases::lookups(&mut w, n, over)?;
                let log_k = (w.members.len() as f64).ln() / f64::from(k).ln();
                let (mean_bound, p99_bound) = (log_k + 1.0, 2.0 * log_k);
                if l.wrong > 0 {
                    unsafe_runs.push(format!("{} lookups answered by a wrong peer", l.wrong));
                }
                let met = l.wrong == 0
                    && l.found == l.issued
                    && l.mean_hops <= mean_bound
                    && f64::from(l.p99_hops) <= p99_bound;
                println!(
                    "ring {common} k={k} lookups={} mean_hops={:.2} p99_hops={} max_hops={} \
                     found={} wrong={} unavailable={} timeout={} unanswered={} \
                     target_mean={mean_bound:.2} target_p99={p99_bound:.2} met={met}",
                    l.issued,
                    l.mean_hops,
                    l.p99_hops,
                    l.max_hops,
                    l.found,
                    l.wrong,
                    l.unavailable,
                    l.timeout,
                    l.unanswered,
                );
            }
            "churn" => {
                let duration = Duration::from_secs(args.get("churn-s", 60)?);
                let rate = args.get("churn-per-s", 10)?;
                let limit = Duration::from_secs(args.get("settle-limit-s", 60)?);
                let protect = args.get("protect-access", 1)? != 0;
                let c = phases::churn(&mut w, duration, rate, ms(2000), ms(1000), limit, protect)?;
                let wall_s = c.wall.as_secs_f64();
                println!(
                    "ring-sim {common} virtual_s={} churn_per_s={rate} crashes={} joins={} \
                     deliveries={} wall_ms={} deliveries_per_s={:.0} violations={} checks={} \
                     settled_ms={} target_wall_ms={} met={}",
                    duration.as_secs(),
                    c.crashes,
                    c.joins,
                    c.deliveries,
                    c.wall.as_millis(),
                    c.deliveries as f64 / wall_s,
                    c.consistency.violations,
                    c.consistency.checks,
                    c.settled.as_ref().map_or("none".into(), |d| d.as_millis().to_string()),
                    duration.as_millis(),
                    c.wall <= duration && c.consistency.violations == 0,
                );
                if let Err((n, first)) = &c.settled {
                    eprintln!(
                        "churn: not converged after {limit:?}: {n} complaints, first: {first}"
                    );
                    if !strict {
                        unsafe_runs.push(format!("churn: not converged after {limit:?}"));
                    }
                }
                if let Some((t, what)) = &c.consistency.first {
                    if strict {
                        unsafe_runs.push(format!(
                            "churn: {} consistency violations",
                            c.consistency.violations
                        ));
                    }
                    eprintln!("churn: first violation at {:?}: {what}", t.since_start());
                }
            }
            "heal" => {
                let killed = nodes * args.get("kill-permille", 100)? as usize / 1000;
                let every = ms(args.get("check-ms", 50)?.max(1));
                let limit = Duration::from_secs(args.get("heal-limit-s", 60)?);
                let trace = args.get("trace", 0)? != 0;
                let h = phases::heal(&mut w, killed, every, limit, trace);
                // 2x the detector's timeout, plus one period of the ring's check-in.
                let bound = 2 * fd_config.initial_timeout + w.imp.stabilize();
                let show =
                    |d: Option<Duration>| d.map_or("none".into(), |d| d.as_millis().to_string());
                println!(
                    "ring-heal {common} killed={} heal_ms={} fingers_ms={} violations={} \
                     checks={} check_ms={} target_ms={} met={}",
                    h.killed,
                    show(h.ring),
                    show(h.fingers),
                    h.consistency.violations,
                    h.consistency.checks,
                    every.as_millis(),
                    bound.as_millis(),
                    h.ring.is_some_and(|d| d <= bound) && h.consistency.violations == 0,
                );
                if let Some((t, what)) = &h.consistency.first {
                    if strict {
                        unsafe_runs.push(format!(
                            "heal: {} consistency violations",
                            h.consistency.violations
                        ));
                    }
                    eprintln!("heal: first violation at {:?}: {what}", t.since_start());
                }
                if let Some((n, first)) = &h.left {
                    eprintln!("heal: not one ring after {limit:?}: {n} complaints, first: {first}");
                }
                if h.ring.is_none() && !strict {
                    unsafe_runs.push(format!("heal: not one ring after {limit:?}"));
                }
            }
            "joins" => {
                let n = args.get("joins", 1000)? as usize;
                let every = ms(args.get("check-ms", 50)?.max(1));
                let limit = Duration::from_secs(args.get("joins-limit-s", 300)?);
                let j = phases::joins(&mut w, n, every, limit)?;
                let show =
                    |d: Option<Duration>| d.map_or("none".into(), |d| d.as_millis().to_string());
                println!(
                    "ring-joins {common} joins={} joined_ms={} converged_ms={} violations={} \
                     checks={} check_ms={} episodes={} longest_ms={} mean_ms={} max_pairs={} \
                     stabilize_ms={} met={}",
                    j.joins,
                    show(j.joined),
                    show(j.converged),
                    j.violating_checks,
                    j.checks,
                    every.as_millis(),
                    j.episodes,
                    j.longest.as_millis(),
                    j.total.as_millis() / u128::from(j.episodes.max(1)),
                    j.max_pairs,
                    w.imp.stabilize().as_millis(),
                    j.converged.is_some() && j.violating_checks == 0,
                );
                if let Some((t, what)) = &j.first {
                    if strict {
                        unsafe_runs.push(format!("joins: {} consistency violations", j.episodes));
                    }
                    eprintln!("joins: first violation at +{}ms: {what}", t.as_millis());
                }
                if j.converged.is_none() {
                    return Err(format!("joins: not one ring {limit:?} after the joins"));
                }
            }
            "merge" => {
                let groups = args.get("groups", 2)? as usize;
                let apart = Duration::from_secs(args.get("apart-s", 40)?);
                let every = ms(args.get("check-ms", 50)?.max(1));
                let limit = Duration::from_secs(args.get("merge-limit-s", 120)?);
                let m = merge::merge(&mut w, groups, apart, every, limit);
                let show =
                    |d: Option<Duration>| d.map_or("none".into(), |d| d.as_millis().to_string());
                // The bound of the merge scenarios (tests/src/scenarios/merge.rs), from the
                // heal: a probe, its lookup, the walks and the check-ins.
                let bound = ring_config.probe_backoff_max
                    + ring_config.probe_every
                    + ring_config.lookup_timeout
                    + fd_config.max_timeout
                    + fd_config.period
                    + ring_config.join_timeout
                    + ring_config.stabilize * 2
                    + ring_config.tick;
                println!(
                    "ring-merge {common} groups={} merge_ms={} msgs={} fd_msgs={} fingers_ms={} \
                     fanout={} depth={} apart_s={} split_ok={} sub_rings={} violations={} checks={} \
                     target_ms={} met={}",
                    m.groups,
                    show(m.merged),
                    m.ring_msgs,
                    m.fd_msgs,
                    show(m.fingers),
                    ring_config.merge_fanout,
                    ring_config.merge_depth,
                    apart.as_secs(),
                    m.split_ok,
                    m.sub_rings,
                    m.violations,
                    m.checks,
                    bound.as_millis(),
                    m.merged.is_some_and(|d| d <= bound) && m.violations == 0,
                );
                if let Some(first) = &m.first {
                    unsafe_runs.push(format!("merge: {} consistency violations", m.violations));
                    eprintln!("merge: first violation {first}");
                }
                if let Some((n, first)) = &m.left {
                    eprintln!(
                        "merge: not one ring after {limit:?}: {n} complaints, first: {first}"
                    );
                }
            }
            _ => unreachable!("phases are checked above"),
        }
    }
    let hash = w.sim.trace_hash();
    drop(w);
    if !unsafe_runs.is_empty() {
        return Err(format!("run failed: {}", unsafe_runs.join("; ")));
    }
    Ok(format!(
        "ring-run {common} seed={seed} trace_hash={hash:016x} wall_ms={}",
        wall.elapsed().as_millis()
    ))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A `kB` field of `/proc/self/status` (Linux), e.g. `VmRSS`.
fn status_kb(field: &str) -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
