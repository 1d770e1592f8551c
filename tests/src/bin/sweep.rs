//! `sweep`: runs a simulation scenario over many seeds.
//!
//! ```text
//! cargo run --release -p selfman-tests --bin sweep -- <scenario> --seeds N [--start S] [--digest]
//! ```
//!
//! Prints each failing seed with the command that replays it, and ends with one line
//! `sweep scenario=<name> seeds=N violations=V`; exits 1 when V > 0, 2 on bad usage.
//!
//! `--digest` runs each seed with the simulator's run digest on
//! ([`Scenario::run_digest`](selfman_sim::Scenario::run_digest): every delivery's time,
//! sender, receiver and encoded message, the trace hash and the run's counters) and prints one
//! line per seed, `digest scenario=<name> seed=S digest=<hex> trace=<hex> turns=T
//! delivered=D ok=<bool>`, and `digest_all=<hex>` (over the seeds' digests in order) on the
//! last line: two builds that print the same lines ran those seeds identically, which is how a
//! change that must not change behaviour (a speed-up) is checked against its base.

use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use selfman_tests::{by_name, SCENARIOS};

fn usage() -> String {
    let mut s = String::from(
        "usage: sweep <scenario> --seeds N [--start S] [--digest]\n       sweep --list\n\n\
         --digest  print a digest of each seed's run (deliveries with message contents, trace\n\
         \x20         hash, counters) to compare two builds\n\nscenarios:\n",
    );
    for e in SCENARIOS {
        let tag = if e.must_pass { "" } else { " (deliberately broken: must fail)" };
        s += &format!("  {:<18} {}{tag}\n", e.name, e.about);
    }
    s
}

/// What the command line asks for.
struct Opts {
    name: String,
    seeds: u64,
    start: u64,
    digest: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut name = None;
    let (mut seeds, mut start, mut digest) = (None, 0u64, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |flag: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            v.replace('_', "").parse().map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match a.as_str() {
            "--seeds" => seeds = Some(num("--seeds")?),
            "--start" => start = num("--start")?,
            "--digest" => digest = true,
            s if s.starts_with("--") => return Err(format!("unknown option `{s}`")),
            s if name.is_none() => name = Some(s.to_owned()),
            s => return Err(format!("unexpected argument `{s}`")),
        }
    }
    let name = name.ok_or("which scenario?")?;
    let seeds = seeds.ok_or("--seeds N is required")?;
    if seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    Ok(Opts { name, seeds, start, digest })
}

/// Folds one seed's digest into the sweep's.
fn fold(all: u64, digest: u64) -> u64 {
    let h = (all.rotate_left(23) ^ digest).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--help" || a == "-h") {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let Opts { name, seeds, start, digest } = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sweep: {e}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let Some(entry) = by_name(&name) else {
        eprintln!("sweep: unknown scenario `{name}`\n\n{}", usage());
        return ExitCode::from(2);
    };
    let bar = ProgressBar::new(seeds);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} seeds, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(name.clone());
    let wall = Instant::now();
    let mut violations = 0u64;
    let mut all = 0u64;
    for seed in start..start.saturating_add(seeds) {
        // A fresh scenario per seed: its closures' state (logs, boards) must not leak across.
        let scenario = (entry.build)();
        let out = if digest { scenario.run_digest(seed) } else { scenario.run_quiet(seed) };
        if !out.is_ok() {
            violations += 1;
            bar.suspend(|| println!("FAIL {out}"));
        }
        if let Some(d) = out.digest {
            all = fold(all, d);
            bar.suspend(|| {
                println!(
                    "digest scenario={name} seed={seed} digest={d:016x} trace={:016x} turns={} \
                     delivered={} ok={}",
                    out.trace_hash,
                    out.turns,
                    out.net.delivered,
                    out.is_ok()
                )
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!("sweep: {seeds} seeds in {:.1} s", wall.elapsed().as_secs_f64());
    let all = if digest { format!(" digest_all={all:016x}") } else { String::new() };
    println!("sweep scenario={name} seeds={seeds} violations={violations}{all}");
    if violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
