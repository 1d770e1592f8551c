//! Memory per stored replica, measured by a counting allocator: the figure of
//! `docs/replication.md` ("Memory per item"). Run with `--nocapture` to see it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use selfman_core::Time;
use selfman_ports::{LockMode, RingId, TxId, Version};
use selfman_replication::{ItemId, Store};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the same layout; the counter
// only observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with this layout (in `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated per replica beyond its key and value, for `n` items of `key` + `value`
/// bytes. Allocator bookkeeping (malloc's per-chunk header and rounding, about 8–16 bytes per
/// allocation, one allocation per item for key and value together) comes on top.
fn overhead(n: usize, key: usize, value: usize, votes: bool) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let mut s = Store::new();
    for i in 0..n {
        let mut k = format!("{i:0width$}", width = key).into_bytes();
        k.truncate(key);
        let pos = RingId::of_key(&k);
        let id = ItemId::new(pos, &k);
        s.write(id.clone(), Version(1), Some(&vec![7u8; value]));
        if votes {
            s.vote(
                id,
                TxId(i as u64),
                LockMode::Write,
                Version(1),
                std::time::Duration::from_secs(5),
                Time::ZERO,
            );
        }
    }
    let used = (LIVE.load(Ordering::Relaxed) - before) as f64;
    assert_eq!(s.len(), n);
    used / n as f64 - (key + value) as f64
}

#[test]
fn memory_per_item() {
    let n = 100_000;
    let small = overhead(n, 16, 16, false);
    let hundred = overhead(n, 16, 100, false);
    let locked = overhead(n, 16, 16, true);
    println!("store overhead per replica: {small:.1} B (16-byte keys and values), {hundred:.1} B (100-byte values), {locked:.1} B (with one write lock each)");
    // One heap allocation (a 1-byte header, key and value), an 8-byte position and a 32-byte
    // record in B-tree nodes: 63 B measured (86 B with key and value apart).
    assert!(small < 75.0 && hundred < 75.0, "{small} {hundred}");
    assert!(locked < small + 80.0, "{locked}");
}
