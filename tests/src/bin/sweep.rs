//! `sweep`: runs a simulation scenario over many seeds.
//!
//! ```text
//! cargo run --release -p selfman-tests --bin sweep -- <scenario> --seeds N [--start S]
//! ```
//!
//! Prints each failing seed with the command that replays it, and ends with one line
//! `sweep scenario=<name> seeds=N violations=V`; exits 1 when V > 0, 2 on bad usage.

use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use selfman_tests::{by_name, SCENARIOS};

fn usage() -> String {
    let mut s = String::from(
        "usage: sweep <scenario> --seeds N [--start S]\n       sweep --list\n\nscenarios:\n",
    );
    for e in SCENARIOS {
        let tag = if e.must_pass { "" } else { " (deliberately broken: must fail)" };
        s += &format!("  {:<18} {}{tag}\n", e.name, e.about);
    }
    s
}

fn parse(args: &[String]) -> Result<(String, u64, u64), String> {
    let mut name = None;
    let (mut seeds, mut start) = (None, 0u64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |flag: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            v.replace('_', "").parse().map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match a.as_str() {
            "--seeds" => seeds = Some(num("--seeds")?),
            "--start" => start = num("--start")?,
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
    Ok((name, seeds, start))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--help" || a == "-h") {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let (name, seeds, start) = match parse(&args) {
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
    for seed in start..start.saturating_add(seeds) {
        // A fresh scenario per seed: its closures' state (logs, boards) must not leak across.
        let out = (entry.build)().run_quiet(seed);
        if !out.is_ok() {
            violations += 1;
            bar.suspend(|| println!("FAIL {out}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!("sweep: {seeds} seeds in {:.1} s", wall.elapsed().as_secs_f64());
    println!("sweep scenario={name} seeds={seeds} violations={violations}");
    if violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
