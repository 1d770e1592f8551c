//! A CPU cache hint, for code that knows what memory it will touch next (the push path, the
//! turn, and drivers such as the simulator). Not part of the component model: exported from the
//! crate root only for other Selfman crates, and hidden from its documentation.

/// Asks the CPU to start fetching the cache line at `p` into all cache levels; a hint only: no
/// effect on what the program computes, never a fault (any address will do). A no-op on targets
/// other than x86-64. For drivers that know what they will touch next, as the simulator does.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program can observe and cannot fault, whatever the
    // address; SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
