//! The caching allocator: device memory freed by a tensor goes to a free list of its size class
//! and is handed to the next request of that class, as PyTorch's allocator does, because
//! `cuMemAlloc`/`cuMemFree` synchronise the device and cost far more than a kernel launch.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::device::{DeviceApi, DevicePtr};
use crate::error::{HeparError, Result};

/// Requests up to 1 MiB are rounded up to 512 bytes; larger ones to 2 MiB, so that activations
/// of nearly equal sizes share blocks without wasting more than a few percent.
const SMALL_LIMIT: usize = 1 << 20;
const SMALL_ROUND: usize = 512;
const LARGE_ROUND: usize = 2 << 20;

/// The block size a request of `bytes` is served with.
pub fn size_class(bytes: usize) -> usize {
    let bytes = bytes.max(1);
    let round = if bytes <= SMALL_LIMIT {
        SMALL_ROUND
    } else {
        LARGE_ROUND
    };
    bytes.div_ceil(round) * round
}

/// What the allocator holds, in bytes of size-class blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Held by live buffers.
    pub allocated_bytes: usize,
    /// Taken from the driver: allocated plus cached.
    pub reserved_bytes: usize,
    /// The most `allocated_bytes` has been since the counters were reset.
    pub peak_allocated_bytes: usize,
    /// Requests served from the cache rather than the driver.
    pub cache_hits: u64,
    /// Requests that went to the driver.
    pub driver_allocations: u64,
}

impl std::fmt::Display for MemoryStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "allocated {:.1} MiB, reserved {:.1} MiB, peak {:.1} MiB ({} cache hits, {} driver allocations)",
            mib(self.allocated_bytes),
            mib(self.reserved_bytes),
            mib(self.peak_allocated_bytes),
            self.cache_hits,
            self.driver_allocations
        )
    }
}

#[derive(Default)]
struct Pool {
    /// Cached blocks by size class.
    free: BTreeMap<usize, Vec<DevicePtr>>,
    stats: MemoryStats,
}

#[derive(Default)]
pub struct CachingAllocator {
    pool: Mutex<Pool>,
}

impl CachingAllocator {
    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A poisoned lock means a panic elsewhere; the lists themselves are still consistent.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A block of at least `bytes` (its size is `size_class(bytes)`). When the driver is out of
    /// memory, the cache is returned to it and the request retried once.
    pub fn alloc<D: DeviceApi>(&self, driver: &D, bytes: usize) -> Result<DevicePtr> {
        let class = size_class(bytes);
        let mut pool = self.lock();
        let cached = pool.free.get_mut(&class).and_then(|list| list.pop());
        let ptr = match cached {
            Some(ptr) => {
                pool.stats.cache_hits += 1;
                ptr
            }
            None => {
                let ptr = match driver.alloc(class) {
                    Ok(ptr) => ptr,
                    Err(_) => {
                        Self::release_cache(&mut pool, driver)?;
                        driver
                            .alloc(class)
                            .map_err(|e| out_of_memory(driver, bytes, &pool.stats, e))?
                    }
                };
                pool.stats.driver_allocations += 1;
                pool.stats.reserved_bytes += class;
                ptr
            }
        };
        pool.stats.allocated_bytes += class;
        pool.stats.peak_allocated_bytes = pool
            .stats
            .peak_allocated_bytes
            .max(pool.stats.allocated_bytes);
        Ok(ptr)
    }

    /// Returns a block of `size_class(bytes)` to the cache.
    pub fn release(&self, ptr: DevicePtr, bytes: usize) {
        let class = size_class(bytes);
        let mut pool = self.lock();
        pool.stats.allocated_bytes = pool.stats.allocated_bytes.saturating_sub(class);
        pool.free.entry(class).or_default().push(ptr);
    }

    /// Gives every cached block back to the driver.
    pub fn empty_cache<D: DeviceApi>(&self, driver: &D) -> Result<()> {
        Self::release_cache(&mut self.lock(), driver)
    }

    fn release_cache<D: DeviceApi>(pool: &mut Pool, driver: &D) -> Result<()> {
        for (class, list) in std::mem::take(&mut pool.free) {
            for ptr in list {
                pool.stats.reserved_bytes = pool.stats.reserved_bytes.saturating_sub(class);
                driver.free(ptr)?;
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// Starts a new peak measurement from what is allocated now.
    pub fn reset_peak(&self) {
        let mut pool = self.lock();
        pool.stats.peak_allocated_bytes = pool.stats.allocated_bytes;
    }
}

fn out_of_memory<D: DeviceApi>(
    driver: &D,
    requested: usize,
    stats: &MemoryStats,
    cause: HeparError,
) -> HeparError {
    let available = match driver.memory_info() {
        Some((free, total)) => format!("{free} of {total} bytes free on the device"),
        None => "free memory unknown".to_string(),
    };
    HeparError::Backend {
        backend: "cuda",
        msg: format!(
            "{}: out of memory allocating {requested} bytes ({available}; this process holds {} bytes in tensors): {cause}",
            driver.device_name(),
            stats.allocated_bytes
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up() {
        assert_eq!(size_class(0), 512);
        assert_eq!(size_class(513), 1024);
        assert_eq!(size_class(SMALL_LIMIT), SMALL_LIMIT);
        assert_eq!(size_class(SMALL_LIMIT + 1), 2 << 20);
        assert_eq!(size_class((2 << 20) + 1), 4 << 20);
    }
}
