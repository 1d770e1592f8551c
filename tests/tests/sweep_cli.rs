//! The `sweep` binary end to end: its summary line, exit codes and replay commands.

use std::process::Command;

fn sweep(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sweep")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn sweep_passes_a_correct_scenario() {
    let (code, out) = sweep(&["heartbeat-churn", "--seeds", "2", "--start", "5"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().last(), Some("sweep scenario=heartbeat-churn seeds=2 violations=0"));
}

#[test]
fn sweep_reports_each_failing_seed_with_its_replay_command() {
    let (code, out) = sweep(&["net-fifo-broken", "--seeds", "2"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().last(), Some("sweep scenario=net-fifo-broken seeds=2 violations=2"));
    for seed in 0..2 {
        let replay = format!("-- net-fifo-broken --seeds 1 --start {seed}");
        assert!(out.contains(&replay), "no replay command for seed {seed}: {out}");
    }
    // Each seed runs a fresh scenario: no violation carried over from the previous seed (that
    // bug showed as a violation "found" at t=0).
    assert!(!out.contains("at t=0ns"), "{out}");
}

#[test]
fn sweep_rejects_bad_usage() {
    assert_eq!(sweep(&["no-such-scenario", "--seeds", "1"]).0, 2);
    assert_eq!(sweep(&["net-fifo"]).0, 2);
    assert_eq!(sweep(&["net-fifo", "--seeds", "x"]).0, 2);
    let (code, out) = sweep(&["--list"]);
    assert_eq!(code, 0);
    assert!(out.contains("net-fifo-broken") && out.contains("must fail"));
}
