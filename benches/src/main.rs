//! `selfman-bench`: the benchmark harness. See `docs/benchmarks.md` for results and commands.
//!
//! ```text
//! selfman-bench pingpong --pairs P --window W --round-trips N [--threads T] [--events-per-run E]
//! selfman-bench components --count C [--threads T]
//! selfman-bench idle --components C --seconds S [--threads T]
//! selfman-bench swap --swaps S --producers P [--queued Q] [--threads T]
//! selfman-bench sim --nodes N --virtual-seconds S --seed X
//! selfman-bench net-pingpong --pairs K --window W --round-trips N [--threads T] [--secure 0/1]
//! selfman-bench consensus --nodes N --instances I [--window W] [--tcp 1] [--threads T]
//! selfman-bench ring --impl relaxed|chord --nodes N [--seed S] [--k K] [--lookups L] [--phases …]
//! selfman-bench tx --nodes 4 --replicas 4 [--clients C] [--transactions T] [--keys K] [--tcp 1]
//!                  [--processes 4]
//! selfman-bench replication --phase handover|rereplicate|repair|reads [--nodes N] [--items I]
//! ```

mod alloc;
mod args;
mod components;
mod consensus;
mod fd;
mod huge_pages;
mod idle;
mod net_pingpong;
mod pingpong;
mod replication;
mod ring;
mod sim;
mod swap;
mod tx;

use std::process::ExitCode;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(cmd) = argv.next() else {
        eprintln!(
            "usage: selfman-bench <pingpong|components|idle|swap|sim|fd|net-pingpong|consensus|ring|tx> \
             [options]"
        );
        return ExitCode::from(2);
    };
    let rest: Vec<String> = argv.collect();
    if cmd == "sim" || cmd == "ring" {
        if let Some(code) = huge_pages::reexec() {
            return code;
        }
    }
    let result = match cmd.as_str() {
        "pingpong" => args::Args::parse(&rest).and_then(|a| pingpong::run(&a)),
        "components" => args::Args::parse(&rest).and_then(|a| components::run(&a)),
        "idle" => args::Args::parse(&rest).and_then(|a| idle::run(&a)),
        "swap" => args::Args::parse(&rest).and_then(|a| swap::run(&a)),
        "sim" => args::Args::parse(&rest).and_then(|a| sim::run(&a)),
        "fd" => args::Args::parse(&rest).and_then(|a| fd::run(&a)),
        "net-pingpong" => args::Args::parse(&rest).and_then(|a| net_pingpong::run(&a)),
        "consensus" => args::Args::parse(&rest).and_then(|a| consensus::run(&a)),
        "ring" => args::Args::parse(&rest).and_then(|a| ring::run(&a)),
        "tx" => args::Args::parse(&rest).and_then(|a| tx::run(&a)),
        "tx-node" => args::Args::parse(&rest).and_then(|a| tx::node(&a)),
        "replication" => args::Args::parse(&rest).and_then(|a| replication::run(&a)),
        "net-ponger" => args::Args::parse(&rest).and_then(|a| net_pingpong::ponger(&a)),
        other => Err(format!(
            "unknown benchmark `{other}` (try pingpong, components, idle, swap, sim, fd, \
             net-pingpong, consensus, ring, tx)"
        )),
    };
    match result {
        Ok(line) if line.is_empty() => ExitCode::SUCCESS,
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("selfman-bench {cmd}: {e}");
            ExitCode::from(2)
        }
    }
}
