//! The relaxed ring as 10 OS processes over TCP on 127.0.0.1: it forms, every node's detector
//! and ring are replaced live under lookups, 3 nodes are killed with SIGKILL, and the
//! survivors repair the ring; lookups from every node name the owner throughout. And the
//! same run with a ring that does not repair itself must fail.
//!
//! Both runs check afterwards, by PID, that no node process is left (running or zombie).
//! They take turns (one lock): ten processes each on two cores are enough.
//!
//! The partition runs (`--partition-s`) need root: they put the nodes into two network
//! namespaces, and check afterwards that both namespaces are gone.

use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no `{key}=` in `{line}`"))
}

/// Whether `pid` runs (a zombie counts: it is not reaped).
fn pid_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The node PIDs the launcher printed (`node I: ADDR (pid P)`).
fn node_pids(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter(|l| l.starts_with("node ") && l.contains(": "))
        .filter_map(|l| l.split("(pid ").nth(1)?.trim_end_matches(')').parse().ok())
        .collect()
}

/// Every PID in `pids` is gone, within a few seconds (the launcher reaps them before it exits,
/// so this holds at once unless a node escaped).
fn assert_reaped(pids: &[u32], stdout: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| pid_exists(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|&p| pid_exists(p)).collect();
    assert!(left.is_empty(), "node processes left behind: {left:?}\n{stdout}");
}

fn run(args: &[&str]) -> (Output, String, String) {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_ring-cluster"))
        .args(args)
        .output()
        .expect("run ring-cluster");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn ten_processes_form_a_ring_survive_live_swaps_and_repair_after_kills() {
    let started = Instant::now();
    let (out, stdout, stderr) =
        run(&["--nodes", "10", "--kill", "3", "--lookups", "10", "--timeout-s", "90"]);
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().expect("no output");
    assert!(last.starts_with("ring-cluster nodes=10 killed=3 "), "{stdout}");
    assert_eq!(field(last, "ring"), "ok");
    assert_eq!(field(last, "swap"), "ok");
    assert_eq!(field(last, "wrong"), "0", "{stdout}");
    // Lookups from every node (10 + 2 each, before the swaps; from the 7 survivors after),
    // and the background ones during the swaps and the repair.
    let lookups: usize = field(last, "lookups").parse().unwrap();
    assert!(lookups >= 10 * 12 + 7 * 12 + 50, "{last}");
    // Only lookups during the repair may fail (their range's owner was killed), so these
    // phases name the owner every time:
    for phase in ["after forming", "during the swaps", "after the repair"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("lookups {phase}:")))
            .unwrap_or_else(|| panic!("no `lookups {phase}` line:\n{stdout}"));
        assert!(line.ends_with(" 0 unavailable, 0 wrong"), "{line}");
    }
    let repair: u64 = field(last, "repair_ms").parse().unwrap();
    let fingers: u64 = field(last, "fingers_ms").parse().unwrap();
    assert!(repair <= fingers, "{last}");
    let pids = node_pids(&stdout);
    assert_eq!(pids.len(), 10, "{stdout}");
    assert_reaped(&pids, &stdout);
    eprintln!("{last} (whole run {:?})", started.elapsed());
}

#[test]
fn a_ring_that_does_not_repair_itself_fails_the_run() {
    // A deliberately broken ring (feature `flaws`, which this crate's tests turn on): a peer
    // that suspects its successor drops it and never takes the next one from its successor
    // list. The launcher must report that the ring was not repaired, and exit 1.
    let (out, stdout, stderr) = run(&[
        "--nodes",
        "10",
        "--kill",
        "2",
        "--lookups",
        "5",
        "--swap",
        "no",
        "--timeout-s",
        "8",
        "--flaw",
        "recovery-skips-succ-list",
    ]);
    assert_eq!(out.status.code(), Some(1), "not caught:\n{stdout}\n{stderr}");
    assert!(stderr.contains("repairing the ring: not within the deadline"), "{stderr}");
    assert!(stderr.contains("has successor"), "{stderr}");
    assert!(stdout.contains("killing 2 with SIGKILL"), "{stdout}");
    let pids = node_pids(&stdout);
    assert_eq!(pids.len(), 10, "{stdout}");
    assert_reaped(&pids, &stdout);
}

/// The partition run: six processes in two network namespaces (root), the link between them
/// cut for 35 s — longer than suspects are remembered (30 s), so only the merge can join the
/// two rings again — then healed.
#[test]
fn two_rings_left_by_a_partition_merge_into_one_after_it_heals() {
    let (out, stdout, stderr) =
        run(&["--nodes", "6", "--partition-s", "35", "--lookups", "10", "--timeout-s", "60"]);
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().expect("no output");
    assert!(last.starts_with("ring-cluster-merge nodes=6 sides=2 apart_s=35 "), "{stdout}");
    assert_eq!(field(last, "ring"), "ok");
    assert_eq!(field(last, "wrong"), "0", "{stdout}");
    // Every lookup after forming and after the merge named the owner; on each side of the
    // partition none named a wrong peer.
    for phase in ["after forming", "after the merge"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("lookups {phase}:")))
            .unwrap_or_else(|| panic!("no `lookups {phase}` line:\n{stdout}"));
        assert!(line.ends_with(" 0 unavailable, 0 wrong"), "{line}");
    }
    assert!(stdout.contains("each side forms one ring of its own"), "{stdout}");
    let merge: u64 = field(last, "merge_ms").parse().unwrap();
    assert!(merge <= 60_000, "{last}");
    assert_partition_run_cleaned_up(&stdout);
    eprintln!("{last}");
}

#[test]
fn without_the_merge_the_two_rings_stay_two() {
    // The same run with merging off (feature `flaws`): the passive list is never probed, so
    // after a partition longer than suspects are remembered nothing joins the two rings.
    let (out, stdout, stderr) = run(&[
        "--nodes",
        "6",
        "--partition-s",
        "35",
        "--lookups",
        "5",
        "--timeout-s",
        "20",
        "--flaw",
        "merge-off",
    ]);
    assert_eq!(out.status.code(), Some(1), "not caught:\n{stdout}\n{stderr}");
    assert!(stderr.contains("merging the two rings: not within the deadline"), "{stderr}");
    assert!(stdout.contains("healed the link"), "{stdout}");
    assert_partition_run_cleaned_up(&stdout);
}

/// A partition run of 6 nodes left no node process and no namespace behind.
fn assert_partition_run_cleaned_up(stdout: &str) {
    let pids = node_pids(stdout);
    assert_eq!(pids.len(), 6, "{stdout}");
    assert_reaped(&pids, stdout);
    assert_no_namespace_left(stdout);
}

/// The namespaces the launcher printed (`in namespaces NAME (IP) and NAME (IP)`) are gone.
fn assert_no_namespace_left(stdout: &str) {
    let first = stdout.lines().next().unwrap_or("");
    let names: Vec<&str> =
        first.split_whitespace().filter(|w| w.starts_with("selfman-rc-")).collect();
    assert_eq!(names.len(), 2, "{first}");
    let list = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        assert!(!list.lines().any(|l| l.split_whitespace().next() == Some(n)), "{n} left: {list}");
    }
}

#[test]
fn bad_options_exit_with_a_usage_error() {
    let (out, _, stderr) = run(&["--nodes", "10", "--kill", "5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--kill must be between 1 and 4"), "{stderr}");
    let (out, _, stderr) = run(&["--partition-s", "10", "--kill", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--partition-s replaces the swaps and kills"), "{stderr}");
}
