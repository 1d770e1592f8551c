//! The `ring-cluster` program: a launcher that runs a local relaxed ring as OS processes over
//! TCP on 127.0.0.1, and the node those processes run.
//!
//! ```text
//! ring-cluster [--nodes N] [--kill K] [--lookups L] [--swap yes|no] [--seed S]
//!              [--timeout-s T] [--fd-period-ms P] [--fd-timeout-ms T0] [--fd-max-ms TM]
//! ring-cluster --partition-s S [--nodes N] [--lookups L] [--seed S] [--timeout-s T] [--fd-…]
//! ring-cluster node [--listen IP:PORT] [--fd-period-ms P] [--fd-timeout-ms T0]
//!                   [--fd-max-ms TM] [--view-poll-ms V]
//! ```
//!
//! The launcher (`cli/launcher.rs`) starts `N` node processes (default 10), tells the first to
//! bootstrap a ring and the others to join through it, and reads the views they print until
//! they form one ring. It checks lookups from every node, replaces every node's failure
//! detector and ring live while lookups keep running (unless `--swap no`), kills `K` nodes
//! (default 3, two of them neighbours) with SIGKILL by PID, and waits until the survivors
//! have repaired the ring; then it checks lookups from every survivor again. Its last line is
//!
//! ```text
//! ring-cluster nodes=N killed=K formed_ms=F swap=ok repair_ms=R fingers_ms=G lookups=L wrong=0 failed=0 ring=ok
//! ```
//!
//! and it exits 1 (with what it saw) if the ring does not form or repair within `T` seconds
//! (default 60), if a lookup is not answered by the owner, or if a swap fails; 2 for a usage
//! error. The node side (`cli/node.rs`) speaks the lines of [`crate::lines`].
//!
//! With `--partition-s S` (root only) the launcher runs a partition instead of the swaps and
//! kills: the nodes live in two network namespaces joined by one virtual link
//! (`cli/netns.rs`); it cuts the link, checks that each side forms a ring of its own, heals the
//! link `S` seconds later and waits until the two rings have merged into one by themselves:
//!
//! ```text
//! ring-cluster-merge nodes=N sides=2 apart_s=S formed_ms=F split_ms=P merge_ms=M lookups=L right=R wrong=0 failed=U ring=ok
//! ```

mod launcher;
mod netns;
mod node;

use std::process::ExitCode;
use std::time::Duration;

use selfman_failure_detector::FdConfig;

/// Runs the program with the process's arguments.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("node") => node::parse(&args[1..]).and_then(node::run),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => launcher::parse(&args).and_then(launcher::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ring-cluster: {e}");
            ExitCode::from(if e.starts_with("usage") { 2 } else { 1 })
        }
    }
}

const USAGE: &str = "usage: ring-cluster [--nodes N] [--kill K] [--lookups L] [--swap yes|no] \
[--seed S] [--timeout-s T] [--fd-period-ms P] [--fd-timeout-ms T0] [--fd-max-ms TM]\n       \
ring-cluster --partition-s S [--nodes N] [--lookups L] [--seed S] [--timeout-s T] [--fd-...] \
(root: two network namespaces)\n       \
ring-cluster node [--listen IP:PORT] [--fd-period-ms P] [--fd-timeout-ms T0] [--fd-max-ms TM] \
[--view-poll-ms V]";

fn usage(why: impl std::fmt::Display) -> String {
    format!("usage error: {why}\n{USAGE}")
}

/// `--flag value` pairs.
fn flag_values(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| usage(format!("{flag} needs a value")))?;
        out.push((flag.as_str(), v.as_str()));
    }
    Ok(out)
}

fn number(flag: &str, v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| usage(format!("{flag}: `{v}` is not a number")))
}

/// The detector's timing on the nodes of this program, unless told otherwise: probes every
/// 200 ms, a first timeout of 1 s, +500 ms per false suspicion, at most 4 s.
///
/// Why not the library's default (100 ms, 400 ms): ten or more node processes share the
/// machine (two cores in CI, with other work); a node descheduled for a few hundred
/// milliseconds must not be taken for dead. A crash is still noticed within 1.2 s.
pub fn default_fd() -> FdConfig {
    FdConfig {
        period: Duration::from_millis(200),
        initial_timeout: Duration::from_secs(1),
        increment: Duration::from_millis(500),
        max_timeout: Duration::from_secs(4),
    }
}

/// Takes `--fd-*` flags into `fd`; `false` if `flag` is not one of them.
fn fd_flag(fd: &mut FdConfig, flag: &str, v: &str) -> Result<bool, String> {
    let ms = |v| number(flag, v).map(Duration::from_millis);
    match flag {
        "--fd-period-ms" => fd.period = ms(v)?,
        "--fd-timeout-ms" => fd.initial_timeout = ms(v)?,
        "--fd-max-ms" => fd.max_timeout = ms(v)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// The `--fd-*` flags that give `fd`, for a node's command line.
fn fd_args(fd: &FdConfig) -> Vec<String> {
    vec![
        "--fd-period-ms".into(),
        fd.period.as_millis().to_string(),
        "--fd-timeout-ms".into(),
        fd.initial_timeout.as_millis().to_string(),
        "--fd-max-ms".into(),
        fd.max_timeout.as_millis().to_string(),
    ]
}

fn validate_fd(fd: &FdConfig) -> Result<(), String> {
    fd.validate().map_err(|e| usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{default_fd, fd_args, fd_flag, flag_values};

    #[test]
    fn fd_flags_round_trip() {
        let fd = default_fd();
        fd.validate().unwrap();
        let args = fd_args(&fd);
        let mut back =
            selfman_failure_detector::FdConfig { increment: fd.increment, ..Default::default() };
        for (f, v) in flag_values(&args).unwrap() {
            assert!(fd_flag(&mut back, f, v).unwrap(), "{f}");
        }
        assert_eq!(back, fd);
        assert!(flag_values(&["--nodes".to_owned()]).unwrap_err().starts_with("usage"));
    }
}
