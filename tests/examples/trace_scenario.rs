//! Replays one seed of a registered scenario with the components' `tracing` events (level
//! DEBUG and above) on stderr, and prints the outcome: the way to see why a seed fails.
//!
//! ```text
//! cargo run --release -p selfman-tests --example trace_scenario -- repl-join 7 2>trace.log
//! ```

use std::process::ExitCode;

use selfman_tests::by_name;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(seed)) = (args.first(), args.get(1).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: trace_scenario <scenario> <seed>");
        return ExitCode::from(2);
    };
    let Some(e) = by_name(name) else {
        eprintln!("unknown scenario `{name}`");
        return ExitCode::from(2);
    };
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();
    let out = (e.build)().run_quiet(seed);
    println!("{out}");
    if out.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
