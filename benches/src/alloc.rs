//! A global allocator that counts live bytes, for `bytes_per_component`, and the number of
//! allocations and bytes allocated while counting, for the per-transaction costs of `tx`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};

pub(crate) struct Counting;

static ENABLED: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Live bytes of the allocator's chunks behind the counted allocations (glibc on Linux:
/// usable size plus the 8-byte chunk header; elsewhere the requested sizes).
static CHUNKS: AtomicIsize = AtomicIsize::new(0);
/// Calls that obtained memory while counting (`alloc`, `alloc_zeroed`, `realloc`).
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Bytes those calls obtained (for a `realloc`, the new size).
static ALLOCATED: AtomicU64 = AtomicU64::new(0);

/// What the allocator holds for the allocation at `ptr` of `layout`.
fn chunk(ptr: *mut u8, layout: Layout) -> isize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if !ptr.is_null() && layout.align() <= 16 {
            // SAFETY: `ptr` is a live allocation of the system allocator (glibc malloc).
            return unsafe { libc::malloc_usable_size(ptr.cast()) } as isize + 8;
        }
    }
    let _ = ptr;
    layout.size() as isize
}

/// The live bytes of the allocator's own chunks behind what was counted since the first
/// [`start`]: the counted bytes plus malloc's per-chunk header and rounding.
pub(crate) fn chunks() -> isize {
    CHUNKS.load(Ordering::SeqCst)
}

/// Allocations and bytes allocated while counting, since the program started (each
/// `realloc` counts as one allocation of its new size: it may copy the block).
pub(crate) fn totals() -> (u64, u64) {
    (ALLOCS.load(Ordering::SeqCst), ALLOCATED.load(Ordering::SeqCst))
}

/// The bytes the C allocator has handed out and not taken back, in the whole process
/// (glibc's `mallinfo2()`: `uordblks`, the chunks in use in every arena, plus `hblkhd`, the
/// large blocks it mapped on their own; `None` elsewhere): what the heap holds, counted or
/// not.
pub(crate) fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        return Some(info.uordblks as u64 + info.hblkhd as u64);
    }
    #[allow(unreachable_code)]
    None
}

/// The live bytes counted so far (while counting: a sample of the heap's growth).
pub(crate) fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Starts counting; returns the live bytes counted so far (0 on first call).
pub(crate) fn start() -> isize {
    ENABLED.store(true, Ordering::SeqCst);
    LIVE.load(Ordering::SeqCst)
}

/// Stops counting; returns the live bytes counted.
pub(crate) fn stop() -> isize {
    ENABLED.store(false, Ordering::SeqCst);
    LIVE.load(Ordering::SeqCst)
}

// SAFETY: delegates every call to the system allocator unchanged; only adds counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if ENABLED.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            CHUNKS.fetch_add(chunk(ptr, layout), Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ENABLED.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            CHUNKS.fetch_sub(chunk(ptr, layout), Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let counting = ENABLED.load(Ordering::Relaxed);
        let old = if counting { chunk(ptr, layout) } else { 0 };
        // SAFETY: forwarded with the caller's arguments.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if counting && !new.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
            // SAFETY: `new_size` with the old alignment is the layout the block now has.
            let grown = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            CHUNKS.fetch_add(chunk(new, grown) - old, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        }
        new
    }
}
