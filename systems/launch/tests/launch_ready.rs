//! Starting a node and reading what it prints: the readiness line, later lines, stdin lines,
//! and the errors of a start that goes wrong.

mod common;

use std::time::Duration;

use common::{test_node, within, PATIENCE};
use selfman_launch::{Cluster, Error, Program, Stderr};

#[test]
fn the_ready_line_is_found_and_the_lines_before_it_stay_queued() {
    let mut p = test_node(&["--say", "booting", "--say", "ready-ish", "--ready", "127.0.0.1:4242"])
        .spawn()
        .unwrap();
    assert_eq!(p.wait_ready(PATIENCE).unwrap(), "127.0.0.1:4242");
    assert_eq!(p.take_lines(), ["booting", "ready-ish"]);
    assert!(p.try_wait().unwrap().is_none(), "a ready node keeps running");
}

#[test]
fn a_node_that_never_gets_ready_is_a_timeout_naming_program_timeout_and_output() {
    let node = test_node(&["--say", "still booting", "--no-ready"]).name("slow node");
    let mut p = node.grace(Duration::from_millis(200)).spawn().unwrap();
    let pid = p.pid();
    let err = within(Duration::from_secs(5), "a 300 ms wait", || {
        p.wait_ready(Duration::from_millis(300)).unwrap_err()
    });
    let Error::Timeout { timeout, ref printed, .. } = err else { panic!("{err:?}") };
    assert_eq!(timeout, Duration::from_millis(300));
    assert_eq!(printed.stdout, ["still booting"]);
    let msg = err.to_string();
    for part in ["`slow node`", &format!("pid {pid}"), "`ready `", "300ms", "still booting"] {
        assert!(msg.contains(part), "`{part}` not in: {msg}");
    }
    // The node keeps running after a timeout; the caller decides.
    assert!(p.try_wait().unwrap().is_none());
}

#[test]
fn a_node_that_exits_first_is_reported_at_once_with_its_status_and_stderr() {
    let node = test_node(&["--say", "parsing options", "--stderr", "bad option", "--exit", "3"])
        .stderr(Stderr::Capture);
    let mut p = node.spawn().unwrap();
    // Far less than the 60 s the wait would allow: the exit ends it.
    let err = within(Duration::from_secs(10), "a wait on an exiting node", || {
        p.wait_ready(Duration::from_secs(60)).unwrap_err()
    });
    let Error::Exited { status, ref printed, .. } = err else { panic!("{err:?}") };
    assert_eq!(status.and_then(|s| s.code()), Some(3));
    assert_eq!(printed.stdout, ["parsing options"]);
    let msg = err.to_string();
    for part in ["launch-test-node", "exited", "exit status: 3", "parsing options", "bad option"] {
        assert!(msg.contains(part), "`{part}` not in: {msg}");
    }
    assert_eq!(p.stderr_lines(), ["bad option"]);
    assert_eq!(p.exit_status().and_then(|s| s.code()), Some(3));
}

#[test]
fn a_missing_program_is_a_spawn_error_naming_it() {
    let err = Program::new("/nonexistent/selfman-node").spawn().unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/selfman-node"), "{err}");
}

#[test]
fn lines_sent_on_stdin_reach_the_node_and_its_answers_come_back_in_order() {
    let mut p = test_node(&["--echo"]).spawn().unwrap();
    p.wait_ready(PATIENCE).unwrap();
    for i in 0..3 {
        p.send_line(&format!("group {i}")).unwrap();
    }
    for i in 0..3 {
        assert_eq!(p.next_line(PATIENCE).unwrap(), format!("echo group {i}"));
    }
    assert!(matches!(p.next_line(Duration::from_millis(100)), Err(Error::Timeout { .. })));
    p.close_stdin();
    assert!(p.send_line("too late").is_err());
}

#[test]
fn a_flooding_node_never_blocks_even_if_nobody_reads() {
    // 200,000 lines of 101 bytes: 20 MB, hundreds of times a pipe's buffer, more than the queue
    // keeps; the node gets through all of it only because its stdout is read as it writes.
    let mut p = test_node(&["--flood", "200000"]).spawn().unwrap();
    p.wait_ready(PATIENCE).unwrap();
    within(Duration::from_secs(60), "the flood", || {
        p.wait_for_line(|l| l == "flooded", Duration::from_secs(50)).unwrap()
    });
    let printed = p.printed();
    assert!(printed.dropped > 0, "the queue is bounded: {}", printed.dropped);
    let kept = p.take_lines();
    assert_eq!(kept.len() as u64 + printed.dropped, 200_000);
    // The oldest were dropped; what is kept is the newest, in order.
    assert_eq!(kept.last().unwrap(), &format!("{:0>100}", 199_999));
}

#[test]
fn a_cluster_merges_the_lines_of_its_members_and_each_still_sees_its_own() {
    let mut c = Cluster::new();
    for i in 0..3 {
        let addr = format!("127.0.0.1:{}", 5000 + i);
        c.spawn(&test_node(&["--say", &format!("hello from {i}"), "--ready", &addr, "--echo"]))
            .unwrap();
    }
    assert_eq!(c.len(), 3);
    for i in 0..3 {
        assert_eq!(c[i].wait_ready(PATIENCE).unwrap(), format!("127.0.0.1:{}", 5000 + i));
    }
    let mut hellos: Vec<(usize, String)> = c.take_lines();
    hellos.sort();
    assert_eq!(hellos, (0..3).map(|i| (i, format!("hello from {i}"))).collect::<Vec<_>>());
    c[2].send_line("x").unwrap();
    assert_eq!(c.next_line(PATIENCE).unwrap(), (2, "echo x".into()));
    c[0].send_line("y").unwrap();
    c[1].send_line("z").unwrap();
    let (from, line) = c.wait_for_line(|i, _| i == 1, PATIENCE).unwrap();
    assert_eq!((from, line.as_str()), (1, "echo z"));
    assert_eq!(c[0].next_line(PATIENCE).unwrap(), "echo y");
    assert!(matches!(c.next_line(Duration::from_millis(100)), Err(Error::Timeout { .. })));
}

#[test]
fn a_cluster_whose_members_all_exited_says_so_instead_of_waiting() {
    let mut c = Cluster::new();
    for code in [0, 1] {
        c.spawn(&test_node(&["--exit", &code.to_string()])).unwrap();
    }
    let err = within(Duration::from_secs(10), "a wait on exited members", || {
        c.next_line(Duration::from_secs(60)).unwrap_err()
    });
    assert!(matches!(err, Error::Exited { .. }), "{err:?}");
}
