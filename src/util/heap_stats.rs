//! Live and peak heap bytes, counted by a wrapper around the process's allocator. The resident
//! set cannot measure a workload's peak once an allocator keeps freed pages for reuse (mimalloc
//! does, on purpose): after the first workload it only ever reports the largest so far. Counting
//! the bytes handed out gives each workload's own peak, resettable between them.
//!
//! The `hepar` binary installs [`CountingAllocator`]; elsewhere (tests, other programs linking
//! the library) nothing is counted and [`peak_bytes`] is `None`.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Counts the bytes of every allocation made through the allocator `A`.
pub struct CountingAllocator<A>(pub A);

impl<A> CountingAllocator<A> {
    fn grew(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
    }

    fn shrank(size: usize) {
        LIVE.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `A` unchanged; the counters only observe sizes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc(layout);
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc_zeroed(layout);
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout);
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        if !p.is_null() {
            Self::shrank(layout.size());
            Self::grew(new_size);
        }
        p
    }
}

/// Heap bytes allocated and not yet freed, when the counting allocator is installed.
pub fn live_bytes() -> Option<usize> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| LIVE.load(Ordering::Relaxed))
}

/// The most heap bytes live at once since the last [`reset_peak`], when counted.
pub fn peak_bytes() -> Option<usize> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| PEAK.load(Ordering::Relaxed))
}

/// Starts a new peak from the bytes live now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// mimalloc's `mi_option_purge_delay` (mimalloc.h, v2): milliseconds freed memory is kept before
/// it is returned to the OS; negative keeps it for good.
pub const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns the blocks [`crate::util::large_blocks`] caches and the pages mimalloc keeps for reuse
/// (on this thread and every rayon worker) to the OS, so that the resident set measured next
/// starts from what is live. A no-op for memory that another allocator handed out.
pub fn return_freed_memory_to_os() {
    crate::util::large_blocks::release_cached_blocks();
    // SAFETY: plain option reads and writes and heap collections; called while no other work
    // allocates, between benchmark workloads.
    unsafe {
        let kept = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        rayon::broadcast(|_| libmimalloc_sys::mi_collect(true));
        libmimalloc_sys::mi_collect(true);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, kept);
    }
}
