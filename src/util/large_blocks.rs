//! Large allocations (tensor buffers) served from a cache of mapped blocks, so that a training
//! step reuses the previous step's pages without the process holding much more than it uses.
//!
//! A general-purpose allocator that keeps freed memory (mimalloc with purging off) avoids
//! faulting pages in again every step, but its arenas fragment: a 33 MiB buffer takes a 64 MiB
//! range, the range's pages touched by earlier buffers stay resident, and the tumour network's
//! step held about 2 GiB more than it had live. Returning memory on every free instead (glibc's
//! `mmap`/`munmap` for large buffers, as PyTorch on the CPU does) makes every step fault in and
//! zero its working set again.
//!
//! This cache keeps freed blocks. A request takes the smallest cached block that holds it; else
//! the largest cached block, grown by `mremap` (its pages move, only the new tail is faulted
//! in); a fresh mapping only when none is cached. Blocks never shrink, so a training loop, which
//! repeats its sizes each step, reaches a set of blocks that serves every later step without a
//! single new page (on a VM, first touches of memory were seen to cost more than the step's
//! arithmetic). Whenever the mapped total would exceed the most bytes ever live by more than an
//! eighth, cached blocks are unmapped first, largest first.
//!
//! Each block is one anonymous mapping: a header page that records the mapping's length, then
//! the data. Blocks from [`HUGE_FROM`] bytes are aligned to and advised as transparent huge
//! pages. Requests below [`LARGE_BYTES`], or aligned beyond a page, go to the inner allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;

/// Requests of at least this many bytes get their own mapped block.
pub const LARGE_BYTES: usize = 1 << 20;
const PAGE: usize = 4096;
/// Blocks of at least this many bytes are whole transparent huge pages (the last one's unused
/// tail wastes under 2 MiB, a sixteenth of the smallest such block at worst).
const HUGE_FROM: usize = 32 << 20;
const HUGE_PAGE: usize = 2 << 20;
/// How many freed blocks the cache can hold; a block freed when it is full is unmapped.
const SLOTS: usize = 512;

/// Serves large requests from cached mapped blocks and the rest from `A`.
pub struct LargeBlockAllocator<A>(pub A);

/// How large requests were served since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Fresh mappings made.
    pub mapped: u64,
    /// Bytes newly mapped, by fresh mappings and grown blocks (each faulted in, zeroed by the
    /// kernel, on first touch).
    pub mapped_bytes: u64,
    /// Requests served by a cached block (as it was, or grown).
    pub reused: u64,
    /// Blocks unmapped (to stay within the budget, or released).
    pub unmapped: u64,
}

/// How a cached block is made to fit a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Resize {
    /// It holds the request already.
    AsIs,
    /// It is moved and extended by `mremap`.
    Grow,
}

#[derive(Clone, Copy)]
struct Block {
    base: usize,
    len: usize,
}

struct Cache {
    free: [Block; SLOTS],
    count: usize,
    counters: Counters,
    cached_bytes: usize,
    live_bytes: usize,
    peak_live_bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    free: [Block { base: 0, len: 0 }; SLOTS],
    count: 0,
    counters: Counters {
        mapped: 0,
        mapped_bytes: 0,
        reused: 0,
        unmapped: 0,
    },
    cached_bytes: 0,
    live_bytes: 0,
    peak_live_bytes: 0,
});

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cache {
    /// The cached block to serve a request of `len` bytes from, with how it must be resized.
    fn take_for(&mut self, len: usize) -> Option<(Block, Resize)> {
        let cached = &self.free[..self.count];
        let smallest_holding = (0..cached.len())
            .filter(|&i| cached[i].len >= len)
            .min_by_key(|&i| cached[i].len);
        let (index, resize) = match smallest_holding {
            Some(i) => (i, Resize::AsIs),
            // None holds it: every cached block is smaller, so grow the largest.
            None => (
                (0..cached.len()).max_by_key(|&i| cached[i].len)?,
                Resize::Grow,
            ),
        };
        Some((self.remove(index), resize))
    }

    fn remove(&mut self, index: usize) -> Block {
        let block = self.free[index];
        self.count -= 1;
        self.free[index] = self.free[self.count];
        self.cached_bytes -= block.len;
        block
    }

    /// Unmaps cached blocks, largest first, until `len` more mapped bytes keep the mapped total
    /// within an eighth over the most bytes ever live.
    fn make_room_for(&mut self, len: usize) {
        let peak = self.peak_live_bytes.max(self.live_bytes + len);
        let allowed = peak + peak / 8;
        while self.count > 0 && self.live_bytes + self.cached_bytes + len > allowed {
            let largest = (0..self.count)
                .max_by_key(|&i| self.free[i].len)
                .unwrap_or(0);
            unmap(self.remove(largest));
            self.counters.unmapped += 1;
        }
    }

    fn now_live(&mut self, len: usize) {
        self.live_bytes += len;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
    }
}

#[cfg(unix)]
fn map(len: usize) -> Option<Block> {
    if len < HUGE_FROM {
        return map_anonymous(len).map(|base| Block { base, len });
    }
    // Over-map by one huge page, then trim to a huge-page-aligned range the kernel can back
    // with transparent huge pages: one fault per 2 MiB instead of 512.
    let raw = map_anonymous(len + HUGE_PAGE)?;
    let base = raw.next_multiple_of(HUGE_PAGE);
    let trim = |start: usize, bytes: usize| {
        if bytes > 0 {
            unmap(Block {
                base: start,
                len: bytes,
            });
        }
    };
    trim(raw, base - raw);
    trim(base + len, raw + HUGE_PAGE - base);
    advise_huge_pages(Block { base, len });
    Some(Block { base, len })
}

/// Asks the kernel to back `block` with transparent huge pages (a hint: failure loses nothing).
fn advise_huge_pages(block: Block) {
    #[cfg(target_os = "linux")]
    // SAFETY: advice on a whole mapping made here.
    unsafe {
        libc::madvise(
            block.base as *mut libc::c_void,
            block.len,
            libc::MADV_HUGEPAGE,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = block;
}

#[cfg(unix)]
fn map_anonymous(len: usize) -> Option<usize> {
    // SAFETY: an anonymous private mapping with no address hint; the result is checked.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (base != libc::MAP_FAILED).then_some(base as usize)
}

/// `block` extended to `len` bytes, its pages moved rather than copied; huge-page blocks land
/// on a huge-page boundary. `None` where the platform cannot (the block is untouched then).
#[cfg(target_os = "linux")]
fn grow(block: Block, len: usize) -> Option<Block> {
    // A huge-page-aligned range of `len` bytes to move onto, or anywhere for small blocks.
    let target = if len >= HUGE_FROM {
        Some(map(len)?)
    } else {
        None
    };
    let flags = libc::MREMAP_MAYMOVE | target.map_or(0, |_| libc::MREMAP_FIXED);
    let at = target.map_or(std::ptr::null_mut(), |t| t.base as *mut libc::c_void);
    // SAFETY: `block` is a whole mapping nobody references; with MREMAP_FIXED the target is a
    // mapping made above for this purpose, which the move replaces.
    let moved = unsafe { libc::mremap(block.base as *mut libc::c_void, block.len, len, flags, at) };
    if moved == libc::MAP_FAILED {
        if let Some(t) = target {
            unmap(t);
        }
        return None;
    }
    let grown = Block {
        base: moved as usize,
        len,
    };
    // The moved range keeps the old mapping's advice, not the target's.
    if target.is_some() {
        advise_huge_pages(grown);
    }
    Some(grown)
}

#[cfg(not(target_os = "linux"))]
fn grow(_block: Block, _len: usize) -> Option<Block> {
    None
}

#[cfg(unix)]
fn unmap(block: Block) {
    // SAFETY: the block is a whole mapping made by `map` that nothing references any more.
    unsafe { libc::munmap(block.base as *mut libc::c_void, block.len) };
}

#[cfg(not(unix))]
fn map(_len: usize) -> Option<Block> {
    None
}

#[cfg(not(unix))]
fn unmap(_block: Block) {}

fn is_large(layout: Layout) -> bool {
    cfg!(unix) && layout.size() >= LARGE_BYTES && layout.align() <= PAGE
}

/// The mapping length of a block holding `size` bytes after its header page.
fn block_len(size: usize) -> usize {
    let len = (size + PAGE).next_multiple_of(PAGE);
    if len >= HUGE_FROM {
        len.next_multiple_of(HUGE_PAGE)
    } else {
        len
    }
}

/// The data of `block`, after its header page, which records the block's length.
///
/// # Safety
/// `block` must be a live mapping of at least two pages.
unsafe fn hand_out(block: Block) -> *mut u8 {
    let header = block.base as *mut usize;
    header.write(block.len);
    (block.base + PAGE) as *mut u8
}

/// The block whose data starts at `ptr`.
///
/// # Safety
/// `ptr` must come from [`hand_out`].
unsafe fn block_of(ptr: *mut u8) -> Block {
    let base = ptr as usize - PAGE;
    Block {
        base,
        len: (base as *const usize).read(),
    }
}

/// Allocates a large block (see the module's policy). `zeroed` says whether the caller needs
/// zeros: a fresh mapping, or a grown block's new tail, already is.
fn alloc_large(size: usize, zeroed: bool) -> *mut u8 {
    take_block(size, zeroed).unwrap_or(std::ptr::null_mut())
}

/// [`alloc_large`]'s work; `None` when the OS refused a mapping.
fn take_block(size: usize, zeroed: bool) -> Option<*mut u8> {
    let len = block_len(size);
    let mut cache = lock();
    // The block, how many of its leading data bytes may hold an earlier buffer's values, and
    // how many bytes were newly mapped for it.
    let (block, dirty_bytes, fresh_bytes) = match cache.take_for(len) {
        Some((block, Resize::AsIs)) => (block, size, 0),
        Some((block, Resize::Grow)) => {
            cache.make_room_for(len);
            let dirty = size.min(block.len - PAGE);
            match grow(block, len) {
                Some(grown) => (grown, dirty, len - block.len),
                None => {
                    unmap(block);
                    (map(len)?, 0, len)
                }
            }
        }
        None => {
            cache.make_room_for(len);
            (map(len)?, 0, len)
        }
    };
    if dirty_bytes > 0 {
        cache.counters.reused += 1;
    } else {
        cache.counters.mapped += 1;
    }
    cache.counters.mapped_bytes += fresh_bytes as u64;
    cache.now_live(block.len);
    drop(cache);
    // SAFETY: `block` is a mapping of at least `len` bytes that no one else holds; its first
    // `dirty_bytes` data bytes may hold an earlier buffer's values, the rest are fresh zeros.
    unsafe {
        let data = hand_out(block);
        if zeroed {
            std::ptr::write_bytes(data, 0, dirty_bytes);
        }
        Some(data)
    }
}

fn free_large(ptr: *mut u8) {
    // SAFETY: `ptr` came from `alloc_large` (the layout says large) and is freed once.
    let block = unsafe { block_of(ptr) };
    let mut cache = lock();
    cache.live_bytes -= block.len;
    if cache.count == SLOTS {
        cache.counters.unmapped += 1;
        drop(cache);
        unmap(block);
        return;
    }
    let slot = cache.count;
    cache.free[slot] = block;
    cache.count += 1;
    cache.cached_bytes += block.len;
}

/// Unmaps every cached block (the resident set then holds what is live).
pub fn release_cached_blocks() {
    let mut cache = lock();
    while cache.count > 0 {
        let last = cache.count - 1;
        unmap(cache.remove(last));
        cache.counters.unmapped += 1;
    }
    cache.peak_live_bytes = cache.live_bytes;
}

/// How large requests were served so far.
pub fn counters() -> Counters {
    lock().counters
}

/// Bytes held in cached blocks, mapped and not handed out.
pub fn cached_bytes() -> usize {
    lock().cached_bytes
}

// SAFETY: large requests get exclusive page-aligned blocks of at least their size; the rest are
// forwarded to `A` unchanged, and each pointer goes back to the allocator that made it because
// the layout's size decides the same way at both ends.
unsafe impl<A: GlobalAlloc> GlobalAlloc for LargeBlockAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            alloc_large(layout.size(), false)
        } else {
            self.0.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            alloc_large(layout.size(), true)
        } else {
            self.0.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout) {
            free_large(ptr)
        } else {
            self.0.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_large(layout) && !is_large(new_layout) {
            return self.0.realloc(ptr, layout, new_size);
        }
        // SAFETY (caller's contract): `ptr` holds `layout.size()` initialised-or-not bytes.
        let grown = self.alloc(new_layout);
        if !grown.is_null() {
            std::ptr::copy_nonoverlapping(ptr, grown, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        grown
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    // One test: the cache is process-wide, and no other test allocates through it.
    #[test]
    fn freed_blocks_are_reused_grown_zeroed_on_request_and_unmapped_past_the_budget() {
        let a = LargeBlockAllocator(std::alloc::System);
        let layout = |n: usize| Layout::from_size_align(n, 64).unwrap();
        const MIB: usize = 1 << 20;
        release_cached_blocks();
        unsafe {
            // A small request goes to the inner allocator, a large one to a page-aligned block.
            let small = a.alloc(layout(1000));
            a.dealloc(small, layout(1000));
            let first = a.alloc(layout(3 * MIB));
            assert_eq!(first as usize % PAGE, 0);
            std::ptr::write_bytes(first, 7, 3 * MIB);
            a.dealloc(first, layout(3 * MIB));
            assert_eq!(cached_bytes(), block_len(3 * MIB));

            // A request the block holds reuses it; zeroed means zeros.
            let before = counters();
            let again = a.alloc_zeroed(layout(2 * MIB + 5000));
            assert_eq!(again, first);
            let bytes = std::slice::from_raw_parts(again, 2 * MIB + 5000);
            assert!(bytes.iter().all(|&b| b == 0));
            assert_eq!(cached_bytes(), 0);
            assert_eq!(counters().reused, before.reused + 1);
            assert_eq!(counters().mapped, before.mapped);
            std::ptr::write_bytes(again, 9, 3 * MIB);
            a.dealloc(again, layout(2 * MIB + 5000));

            // A larger request grows the cached block: only its new tail is newly mapped, and
            // zeroed still means zeros throughout.
            let before = counters();
            let grown = a.alloc_zeroed(layout(40 * MIB));
            let after = counters();
            assert_eq!(after.mapped, before.mapped);
            assert_eq!(
                after.mapped_bytes - before.mapped_bytes,
                (block_len(40 * MIB) - block_len(3 * MIB)) as u64
            );
            assert_eq!(
                grown as usize % HUGE_PAGE,
                PAGE,
                "huge-page blocks start on one"
            );
            let bytes = std::slice::from_raw_parts(grown, 40 * MIB);
            assert!(bytes.iter().all(|&b| b == 0));
            a.dealloc(grown, layout(40 * MIB));

            // Growing a large buffer through realloc keeps its bytes.
            let kept = a.alloc(layout(2 * MIB));
            std::ptr::write_bytes(kept, 3, 2 * MIB);
            let kept = a.realloc(kept, layout(2 * MIB), 5 * MIB);
            assert!(std::slice::from_raw_parts(kept, 2 * MIB)
                .iter()
                .all(|&b| b == 3));
            a.dealloc(kept, layout(5 * MIB));
        }
        release_cached_blocks();
        assert_eq!(cached_bytes(), 0);
        unsafe {
            // Two 2 MiB blocks were live at once; growing one to 8 MiB would map 10 MiB in all,
            // more than an eighth over the 8 MiB ever live, so the other is unmapped.
            let (x, y) = (a.alloc(layout(2 * MIB)), a.alloc(layout(2 * MIB)));
            a.dealloc(x, layout(2 * MIB));
            a.dealloc(y, layout(2 * MIB));
            let before = counters();
            let big = a.alloc(layout(8 * MIB));
            assert_eq!(counters().unmapped, before.unmapped + 1);
            assert_eq!(cached_bytes(), 0);
            a.dealloc(big, layout(8 * MIB));
        }
        release_cached_blocks();
    }
}
