//! Shutdown joins every thread the runtime started (own test binary: counts process threads).

use std::time::Duration;

use selfman_runtime::Runtime;

/// The thread count once it settles at `want` (within a second), or as last read: a joined
/// thread's kernel task can still be counted for a moment after `pthread_join` returns (the
/// join is released when the thread clears its tid, slightly before the kernel drops it from
/// the process's thread count).
fn threads_settled(want: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let n = threads();
        if n == want || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads line")
}

#[test]
fn sched_shutdown_joins_all_threads() {
    let before = threads();
    for workers in [1, 3] {
        let rt = Runtime::builder().workers(workers).build();
        assert_eq!(threads(), before + workers + 1, "workers plus the timer thread");
        let sys = rt.system().clone();
        rt.shutdown().unwrap();
        assert_eq!(threads_settled(before), before, "every runtime thread was joined");
        assert!(sys.is_shut_down());
    }
    // Dropping a runtime shuts it down too.
    {
        let _rt = Runtime::builder().workers(2).build();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(threads_settled(before), before);
}
