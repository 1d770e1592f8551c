//! `ringstats`: runs a ring scenario over many seeds and prints what the runs measured beside
//! their verdict — how long convergence took after the last fault (against the bound), when
//! the fingers were all live, lookups found, unavailable and their hops after convergence,
//! overlaps a false suspicion excused and the longest, branches, false suspicions.
//!
//! ```text
//! cargo run --release -p selfman-tests --bin ringstats -- <ring scenario> --seeds N [--start S] [-v]
//! ```
//!
//! Ends with one line per figure (`ringstats scenario=… seeds=… violations=…`, then the
//! maxima, means and 99th percentiles). `-v` prints one line per seed. Exits 1 if a must-pass
//! scenario had a violation, 2 on bad usage. `SELFMAN_TRACE=1` prints every trace event of the
//! components to stderr (one seed at a time, for a failing seed).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use selfman_core::Time;
use selfman_tests::by_name;
use selfman_tests::scenarios::ring::ring_report;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut name = None;
    let (mut seeds, mut start, mut verbose) = (100u64, 0u64, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seeds" => seeds = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--start" => start = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "-v" => verbose = true,
            s if name.is_none() => name = Some(s.to_owned()),
            s => {
                eprintln!("ringstats: unexpected argument `{s}`");
                return ExitCode::from(2);
            }
        }
    }
    let Some(name) = name else {
        eprintln!("usage: ringstats <ring scenario> --seeds N [--start S] [-v]");
        return ExitCode::from(2);
    };
    if std::env::var_os("SELFMAN_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .without_time()
            .init();
    }
    let must_pass = by_name(&name).is_some_and(|e| e.must_pass);
    let wall = Instant::now();
    let mut violations = 0u64;
    let mut conv = Vec::new();
    let mut fingers = Vec::new();
    let mut slack = Vec::new();
    let mut formed = Vec::new();
    let (mut found, mut issued, mut after, mut hops, mut max_hops) = (0u64, 0u64, 0u64, 0u64, 0u32);
    let (mut unavailable, mut timed_out) = (0u64, 0u64);
    let (mut excused, mut longest, mut roots) = (0u64, Duration::ZERO, 0u64);
    let (mut branches, mut false_susp) = (0usize, 0u64);
    let mut bound = Duration::ZERO;
    // Chord's lookup-consistency violations (measured, not failed on): seeds with any,
    // episodes, their longest and total duration, wrong answers.
    let (mut v_seeds, mut v_overlaps, mut v_longest, mut v_total, mut v_wrong) =
        (0u64, 0u64, Duration::ZERO, Duration::ZERO, 0u64);
    for seed in start..start + seeds {
        let t = Instant::now();
        let Some((out, p)) = ring_report(&name, seed) else {
            eprintln!("ringstats: `{name}` is not a ring scenario");
            return ExitCode::from(2);
        };
        if !out.is_ok() {
            violations += 1;
            println!("FAIL {out}");
        }
        bound = p.bound;
        let c = p.ring_converged.map(|c| c.duration_since(p.quiet_at));
        let f = p.fingers_converged.map(|c| c.duration_since(p.quiet_at));
        if let Some(c) = c {
            conv.push(c);
        }
        if let Some(f) = f {
            fingers.push(f);
        }
        if let (Some(d), Some(fc)) = (p.finger_deadline, p.fingers_converged) {
            slack.push(d.duration_since(p.quiet_at).saturating_sub(fc.duration_since(p.quiet_at)));
        }
        if let Some(t) = p.formed {
            formed.push(t.duration_since(Time::ZERO));
        }
        let l = p.lookups;
        found += l.found;
        issued += l.issued;
        after += l.after_convergence;
        hops += l.hops_after_convergence;
        max_hops = max_hops.max(l.max_hops_after_convergence);
        unavailable += l.unavailable + l.not_in_ring;
        timed_out += l.timed_out;
        excused += p.excused.0;
        roots += p.branch_roots;
        longest = longest.max(p.excused.1);
        branches = branches.max(p.branches);
        false_susp += p.false_suspicions;
        let v = p.violations;
        if v.overlaps + v.wrong_answers > 0 {
            v_seeds += 1;
        }
        v_overlaps += v.overlaps;
        v_longest = v_longest.max(v.longest);
        v_total += v.total;
        v_wrong += v.wrong_answers;
        if verbose {
            println!(
                "seed={seed} ok={} end={:.2}s formed={:?} converged={:?} fingers={:?} finger_deadline={:?} \
                 lookups={}/{} excused={} longest={:?} branches={} false_suspicions={} \
                 wall={:.2}s net={:?}",
                out.is_ok(),
                out.end.0 as f64 / 1e9,
                p.formed.map(|t| t.duration_since(Time::ZERO)),
                c,
                f,
                p.finger_deadline.map(|d| d.duration_since(p.quiet_at)),
                l.found,
                l.issued,
                p.excused.0,
                p.excused.1,
                p.branches,
                p.false_suspicions,
                t.elapsed().as_secs_f64(),
                out.net
            );
        }
    }
    let stats = |v: &mut Vec<Duration>| -> String {
        if v.is_empty() {
            return "none".into();
        }
        v.sort();
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        let p99 = v[(v.len() * 99 / 100).min(v.len() - 1)];
        format!(
            "max={:.3}s p99={:.3}s mean={:.3}s",
            v[v.len() - 1].as_secs_f64(),
            p99.as_secs_f64(),
            mean.as_secs_f64()
        )
    };
    println!("ringstats scenario={name} seeds={seeds} violations={violations}");
    println!("  every node in the ring (from the start): {}", stats(&mut formed));
    println!(
        "  convergence after the last fault: {} (bound {:.3}s)",
        stats(&mut conv),
        bound.as_secs_f64()
    );
    println!("  fingers live after the last fault: {}", stats(&mut fingers));
    println!("  finger deadline slack: {}", stats(&mut slack));
    println!(
        "  lookups: issued={issued} found={found} unavailable={unavailable} timed_out={timed_out} \
         after_convergence={after} mean_hops={:.2} max_hops={max_hops}",
        if after == 0 { 0.0 } else { hops as f64 / after as f64 }
    );
    println!(
        "  excused overlaps={excused} (crashed branch roots: {roots}) longest={:.3}s; most \
         branches at once={branches}; false suspicions={false_susp}",
        longest.as_secs_f64()
    );
    if name.starts_with("chord-") {
        println!(
            "  lookup-consistency violations (measured): seeds_with_any={v_seeds} \
             overlap_episodes={v_overlaps} longest={:.3}s total={:.3}s wrong_answers={v_wrong}",
            v_longest.as_secs_f64(),
            v_total.as_secs_f64()
        );
    }
    eprintln!("ringstats: {seeds} seeds in {:.1} s", wall.elapsed().as_secs_f64());
    if must_pass && violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
