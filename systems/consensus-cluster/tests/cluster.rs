//! The consensus cluster as 5 OS processes over TCP on 127.0.0.1: it agrees on a sequence,
//! loses its leader (SIGKILL) and goes on under a new one.

use std::process::Command;
use std::time::{Duration, Instant};

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no `{key}=` in `{line}`"))
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

#[test]
fn five_processes_survive_the_leader_being_killed() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_consensus-cluster"))
        .args(["--nodes", "5", "--kill-leader-after", "10", "--decisions-after", "10"])
        .args(["--timeout-s", "60"])
        .output()
        .expect("run consensus-cluster");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().expect("no output");
    assert!(last.starts_with("consensus-cluster nodes=5 "), "{stdout}");
    assert_eq!(field(last, "agreement"), "ok");
    assert_eq!(field(last, "links"), "secured", "secured by default");
    let slots: u64 = field(last, "slots").parse().unwrap();
    assert!(slots >= 20, "{last}");
    let first: f64 = field(last, "first_decision_after_kill_ms").parse().unwrap();
    let leader: f64 = field(last, "new_leader_ms").parse().unwrap();
    assert!(first.is_finite() && leader.is_finite(), "{last}");
    // The killed node was the leader, and someone else leads now.
    let killed = field(last, "killed");
    assert!(stdout.contains(&format!("({killed}): killing pid")), "{stdout}");
    // Every node process is gone (killed or exited), by PID.
    let pids: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.split("(pid ").nth(1)?.trim_end_matches(')').parse().ok())
        .collect();
    assert_eq!(pids.len(), 5, "{stdout}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pids.iter().any(|&p| pid_alive(p)), "node processes left behind: {pids:?}");
    eprintln!("{last} (whole run {:?})", started.elapsed());
}

#[test]
fn a_node_with_another_secret_never_takes_part() {
    // 3 secured nodes and an intruder holding another secret that counts them in its group:
    // the cluster decides, loses its leader and decides again; the intruder decides nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_consensus-cluster"))
        .args(["--nodes", "3", "--kill-leader-after", "5", "--decisions-after", "5"])
        .args(["--timeout-s", "60", "--intruder"])
        .output()
        .expect("run consensus-cluster");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().expect("no output");
    assert_eq!(field(last, "agreement"), "ok");
    assert_eq!(field(last, "links"), "secured");
    assert_eq!(field(last, "intruder_decisions"), "0");
    assert!(stdout.contains("intruder: "), "{stdout}");
    // the members refused it, and said why
    assert!(stderr.contains("failed authentication"), "no refusal logged:\n{stderr}");
}

#[test]
fn bad_options_exit_with_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_consensus-cluster"))
        .args(["--nodes", "2"])
        .output()
        .expect("run consensus-cluster");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes must be between 3 and 64"));
}
