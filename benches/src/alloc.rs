//! A global allocator that counts live bytes, for `bytes_per_component`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

pub(crate) struct Counting;

static ENABLED: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Live bytes of the allocator's chunks behind the counted allocations (glibc on Linux:
/// usable size plus the 8-byte chunk header; elsewhere the requested sizes).
static CHUNKS: AtomicIsize = AtomicIsize::new(0);

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
        }
        new
    }
}
