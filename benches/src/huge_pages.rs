//! Transparent huge pages for the simulator benchmark.
//!
//! A large simulation touches its nodes' state at random: 10,000 heartbeat nodes are about
//! 70 MB, and with 4 KiB pages nearly every delivery also misses the TLB (on a virtual machine a
//! TLB miss walks two page tables). glibc's allocator asks the kernel for transparent huge pages
//! when started with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`; the tunable is read at process
//! start, so `sim` runs itself again with it set. Setting `GLIBC_TUNABLES` yourself (even to
//! an empty value) turns this off. The same variable serves any large simulation; see
//! `docs/simulation.md`.

use std::process::ExitCode;

/// The tunable that makes glibc's `malloc` use transparent huge pages (`madvise` mode).
pub(crate) const TUNABLE: &str = "glibc.malloc.hugetlb=1";

/// Runs this process again with [`TUNABLE`] set and returns its exit code, unless
/// `GLIBC_TUNABLES` is already set (then `None`: run here). Also `None` where the tunable does
/// not apply, or if the re-run cannot be started.
pub(crate) fn reexec() -> Option<ExitCode> {
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", TUNABLE)
        .status()
        .ok()?;
    Some(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE, // killed by a signal
    })
}
