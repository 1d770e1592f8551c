//! Ending a node: by closing its stdin, by SIGTERM, by SIGKILL, and by dropping its handle;
//! every way ends with the process reaped, by PID.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{assert_reaped, test_node, within, Seen, PATIENCE};
use selfman_launch::Cluster;

const SHORT_GRACE: Duration = Duration::from_millis(300);

#[test]
fn closing_stdin_ends_a_node_by_itself() {
    let mut p = test_node(&[]).spawn().unwrap();
    p.wait_ready(PATIENCE).unwrap();
    let seen = Seen::now(p.pid());
    p.close_stdin();
    let status = p.wait_timeout(PATIENCE).unwrap().expect("the node did not exit");
    assert!(status.success(), "{status}");
    // the reader thread sees the end of stdout a moment after the exit (bounded)
    let until = Instant::now() + PATIENCE;
    while !p.stdout_closed() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(p.stdout_closed(), "stdout still open {PATIENCE:?} after the node exited");
    assert_reaped(seen);
    // `stop` on a reaped node returns the same status and signals nothing.
    assert_eq!(p.stop(SHORT_GRACE).unwrap(), status);
}

#[test]
fn stop_is_graceful_for_a_node_that_listens_and_kills_one_that_does_not() {
    let mut good = test_node(&[]).spawn().unwrap();
    good.wait_ready(PATIENCE).unwrap();
    let status = within(PATIENCE, "a graceful stop", || good.stop(PATIENCE).unwrap());
    assert!(status.success(), "{status}");

    let mut deaf = test_node(&["--ignore-stdin"]).spawn().unwrap();
    deaf.wait_ready(PATIENCE).unwrap();
    let seen = Seen::now(deaf.pid());
    let status =
        within(SHORT_GRACE + Duration::from_secs(5), "a stop past the grace period", || {
            deaf.stop(SHORT_GRACE).unwrap()
        });
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert_reaped(seen);
}

#[test]
fn sigterm_ends_a_node_and_one_that_ignores_it_is_killed_after_the_grace_period() {
    let mut p = test_node(&[]).spawn().unwrap();
    p.wait_ready(PATIENCE).unwrap();
    let status = within(PATIENCE, "SIGTERM", || p.terminate(PATIENCE).unwrap());
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");

    let mut stubborn = test_node(&["--ignore-term"]).spawn().unwrap();
    stubborn.wait_ready(PATIENCE).unwrap();
    let seen = Seen::now(stubborn.pid());
    let started = std::time::Instant::now();
    let status = stubborn.terminate(SHORT_GRACE).unwrap();
    assert!(started.elapsed() >= SHORT_GRACE, "killed before the grace period ended");
    assert!(started.elapsed() < SHORT_GRACE + Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert_reaped(seen);
}

#[test]
fn kill_9_kills_at_once_and_reaps() {
    // Deaf to stdin and SIGTERM: only SIGKILL ends it.
    let mut p = test_node(&["--ignore-stdin", "--ignore-term"]).spawn().unwrap();
    p.wait_ready(PATIENCE).unwrap();
    let seen = Seen::now(p.pid());
    let status = within(Duration::from_secs(5), "kill -9", || p.kill_9().unwrap());
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert_eq!(p.exit_status(), Some(status));
    assert_reaped(seen);
    // Signals after the reap go nowhere (the PID may belong to another process by now).
    p.signal(libc::SIGKILL).unwrap();
    assert_eq!(p.kill_9().unwrap(), status);
}

#[test]
fn a_frozen_node_can_be_thawed() {
    let mut p = test_node(&["--echo"]).spawn().unwrap();
    p.wait_ready(PATIENCE).unwrap();
    p.signal(libc::SIGSTOP).unwrap();
    p.send_line("while frozen").unwrap();
    assert!(p.next_line(Duration::from_millis(300)).is_err(), "a stopped process answered");
    p.signal(libc::SIGCONT).unwrap();
    assert_eq!(p.next_line(PATIENCE).unwrap(), "echo while frozen");
}

#[test]
fn dropping_a_node_reaps_it_whether_or_not_it_listens() {
    let mut good = test_node(&[]).spawn().unwrap();
    good.wait_ready(PATIENCE).unwrap();
    let seen = Seen::now(good.pid());
    // A node that exits on stdin's end goes long before the grace period (3 s) is over.
    within(Duration::from_secs(2), "dropping a node that listens", || drop(good));
    assert_reaped(seen);

    let mut deaf =
        test_node(&["--ignore-stdin", "--ignore-term"]).grace(SHORT_GRACE).spawn().unwrap();
    deaf.wait_ready(PATIENCE).unwrap();
    let seen = Seen::now(deaf.pid());
    within(SHORT_GRACE + Duration::from_secs(5), "dropping a deaf node", || drop(deaf));
    assert_reaped(seen);
}

#[test]
fn a_node_dropped_by_a_panic_is_reaped_too() {
    let p = test_node(&["--ignore-stdin"]).grace(SHORT_GRACE).spawn().unwrap();
    let seen = Seen::now(p.pid());
    let panicked = std::thread::spawn(move || {
        let _p = p;
        panic!("a failing test");
    })
    .join();
    assert!(panicked.is_err());
    assert_reaped(seen);
}

#[test]
fn a_cluster_stops_all_its_members_against_one_deadline() {
    let mut c = Cluster::new();
    for _ in 0..4 {
        c.spawn(&test_node(&["--ignore-stdin"])).unwrap();
    }
    c.spawn(&test_node(&[])).unwrap();
    for p in c.iter_mut() {
        p.wait_ready(PATIENCE).unwrap();
    }
    let seen: Vec<Seen> = c.pids().into_iter().map(Seen::now).collect();
    // Four deaf members: one grace period in all, not four.
    let grace = Duration::from_secs(1);
    let statuses = within(grace * 3, "stopping the cluster", || c.stop_all(grace).unwrap());
    assert_eq!(statuses.len(), 5);
    for s in &statuses[..4] {
        assert_eq!(s.signal(), Some(libc::SIGKILL), "{s}");
    }
    assert!(statuses[4].success(), "{}", statuses[4]);
    for s in seen {
        assert_reaped(s);
    }
}

#[test]
fn dropping_a_cluster_reaps_every_member() {
    let mut c = Cluster::new();
    for args in [&["--ignore-stdin"][..], &["--ignore-term"], &[]] {
        c.spawn(&test_node(args).grace(SHORT_GRACE)).unwrap();
    }
    let seen: Vec<Seen> = c.pids().into_iter().map(Seen::now).collect();
    c[1].kill_9().unwrap(); // a member killed earlier, already reaped
    within(SHORT_GRACE + Duration::from_secs(5), "dropping the cluster", || drop(c));
    for s in seen {
        assert_reaped(s);
    }
}
