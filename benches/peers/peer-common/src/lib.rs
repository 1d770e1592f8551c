//! Shared pieces of the peer benchmarks: command-line parsing, result-line
//! formatting and a counting global allocator.
//!
//! The CLI and the output lines deliberately match Selfman's `selfman-bench`
//! so that `compare.sh` can parse all binaries the same way (key=value).

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// A parsed subcommand.
#[derive(Debug, Clone, Copy)]
pub enum Command {
    PingPong(PingPongArgs),
    Components(ComponentsArgs),
    /// `net-pingpong`: the pinger side of the two-process TCP benchmark.
    NetPingPong(PingPongArgs),
    /// `net-ponger` (hidden): the ponger side, spawned by `net-pingpong`.
    NetPonger(NetPongerArgs),
}

#[derive(Debug, Clone, Copy)]
pub struct PingPongArgs {
    pub pairs: usize,
    pub window: u64,
    pub round_trips: u64,
    pub threads: usize,
}

/// Arguments of the hidden `net-ponger` subcommand (the child process).
#[derive(Debug, Clone, Copy)]
pub struct NetPongerArgs {
    pub pairs: usize,
    pub threads: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct ComponentsArgs {
    pub count: usize,
    pub threads: usize,
}

/// Number of available cores (the default thread count).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn usage(prog: &str) -> ! {
    eprintln!(
        "usage:\n  {prog} pingpong --pairs P --window W --round-trips N [--threads T]\n  \
         {prog} net-pingpong --pairs P --window W --round-trips N [--threads T]\n  \
         {prog} components --count C [--threads T]"
    );
    exit(2)
}

fn parse_num<T: std::str::FromStr>(prog: &str, flag: &str, v: Option<String>) -> T {
    match v.as_deref().map(str::parse::<T>) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("{prog}: {flag} needs a non-negative integer value");
            usage(prog)
        }
    }
}

/// Parses `std::env::args()`; prints usage and exits with status 2 on error.
pub fn parse_args() -> Command {
    let mut args = std::env::args();
    let prog = args.next().unwrap_or_else(|| "peer".to_string());
    let sub = args.next().unwrap_or_else(|| usage(&prog));
    let mut pairs = None;
    let mut window = None;
    let mut round_trips = None;
    let mut count = None;
    let mut threads = None;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--pairs" => pairs = Some(parse_num::<usize>(&prog, &flag, args.next())),
            "--window" => window = Some(parse_num::<u64>(&prog, &flag, args.next())),
            "--round-trips" => round_trips = Some(parse_num::<u64>(&prog, &flag, args.next())),
            "--count" => count = Some(parse_num::<usize>(&prog, &flag, args.next())),
            "--threads" => threads = Some(parse_num::<usize>(&prog, &flag, args.next())),
            "-h" | "--help" => usage(&prog),
            other => {
                eprintln!("{prog}: unknown argument {other:?}");
                usage(&prog)
            }
        }
    }
    let threads = threads.unwrap_or_else(default_threads);
    if threads == 0 {
        eprintln!("{prog}: --threads must be > 0");
        usage(&prog);
    }
    match sub.as_str() {
        "pingpong" | "net-pingpong" => {
            let (Some(pairs), Some(window), Some(round_trips)) = (pairs, window, round_trips) else {
                eprintln!("{prog}: {sub} needs --pairs, --window and --round-trips");
                usage(&prog)
            };
            if count.is_some() {
                eprintln!("{prog}: --count is not valid for {sub}");
                usage(&prog);
            }
            if window == 0 && round_trips > 0 {
                eprintln!("{prog}: --window must be > 0");
                usage(&prog);
            }
            let a = PingPongArgs {
                pairs,
                window,
                round_trips,
                threads,
            };
            if sub == "pingpong" {
                Command::PingPong(a)
            } else {
                Command::NetPingPong(a)
            }
        }
        "net-ponger" => {
            // Hidden: only started by `net-pingpong` itself.
            let Some(pairs) = pairs else {
                eprintln!("{prog}: net-ponger needs --pairs");
                usage(&prog)
            };
            if window.is_some() || round_trips.is_some() || count.is_some() {
                eprintln!("{prog}: net-ponger only takes --pairs [--threads]");
                usage(&prog);
            }
            Command::NetPonger(NetPongerArgs { pairs, threads })
        }
        "components" => {
            let Some(count) = count else {
                eprintln!("{prog}: components needs --count");
                usage(&prog)
            };
            if pairs.is_some() || window.is_some() || round_trips.is_some() {
                eprintln!("{prog}: components only takes --count [--threads]");
                usage(&prog);
            }
            Command::Components(ComponentsArgs { count, threads })
        }
        _ => usage(&prog),
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Prints the single pingpong result line.
/// Messages counted = pings + pongs = 2 * N * P.
pub fn print_pingpong(a: &PingPongArgs, elapsed: Duration) {
    let msgs = 2u128 * a.round_trips as u128 * a.pairs as u128;
    let nanos = elapsed.as_nanos().max(1);
    let msgs_per_s = msgs * 1_000_000_000 / nanos;
    println!(
        "pingpong pairs={} window={} round_trips={} threads={} elapsed_ms={} msgs_per_s={}",
        a.pairs,
        a.window,
        a.round_trips,
        a.threads,
        elapsed.as_millis(),
        msgs_per_s
    );
}

/// Prints the single net-pingpong result line.
/// Messages counted = pings + pongs = 2 * N * P. `rtt_us` is
/// `Some((p50, p99))` in microseconds when per-round-trip times were recorded
/// (window 1), else both are printed as `NA`.
pub fn print_net_pingpong(a: &PingPongArgs, elapsed: Duration, rtt_us: Option<(f64, f64)>) {
    let msgs = 2u128 * a.round_trips as u128 * a.pairs as u128;
    let nanos = elapsed.as_nanos().max(1);
    let msgs_per_s = msgs * 1_000_000_000 / nanos;
    let (p50, p99) = match rtt_us {
        Some((p50, p99)) => (format!("{p50:.1}"), format!("{p99:.1}")),
        None => ("NA".to_string(), "NA".to_string()),
    };
    println!(
        "net-pingpong pairs={} window={} round_trips={} elapsed_ms={} msgs_per_s={} rtt_us_p50={} rtt_us_p99={}",
        a.pairs,
        a.window,
        a.round_trips,
        elapsed.as_millis(),
        msgs_per_s,
        p50,
        p99
    );
}

/// Nearest-rank percentile (`p` in 0..=100) of an ascending-sorted slice:
/// the smallest sample such that at least p% of all samples are <= it.
/// Returns `None` for an empty slice.
pub fn percentile_sorted(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Prints the single components result line.
pub fn print_components(count: usize, elapsed: Duration, net_bytes: i64) {
    let per = if count == 0 { 0 } else { net_bytes / count as i64 };
    println!(
        "components count={} elapsed_ms={} bytes_per_component={}",
        count,
        elapsed.as_millis(),
        per
    );
}

// ---------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------

static COUNTING: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicI64 = AtomicI64::new(0);

/// A global allocator that forwards to the system allocator and, while
/// enabled, keeps a process-wide net count (allocated - freed) of bytes.
/// Allocations on every thread are counted (a single shared counter).
///
/// Counting is off by default, so the pingpong hot path only pays for one
/// relaxed load per allocation.
///
/// Use in a binary crate:
/// `#[global_allocator] static A: peer_common::CountingAlloc = peer_common::CountingAlloc;`
pub struct CountingAlloc;

#[inline(always)]
fn add(n: i64) {
    if COUNTING.load(Ordering::Relaxed) {
        NET_BYTES.fetch_add(n, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Resets the net byte counter to zero and starts counting.
pub fn start_counting() {
    NET_BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
}

/// Stops counting and returns the net bytes allocated since `start_counting`.
pub fn stop_counting() -> i64 {
    COUNTING.store(false, Ordering::SeqCst);
    NET_BYTES.load(Ordering::SeqCst)
}
