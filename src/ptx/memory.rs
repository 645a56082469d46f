//! Device memory of the virtual GPU: allocations in one 64-bit address space, plus the generic
//! address windows through which shared and local memory are reached.

use std::collections::BTreeMap;

/// First address handed out for global allocations (non-zero so that null pointers fault).
const GLOBAL_BASE: u64 = 0x0000_0007_0000_0000;
/// Gap left after each allocation so that small overruns land outside every allocation.
const GUARD_BYTES: u64 = 256;
/// Generic addresses in `[SHARED_WINDOW, SHARED_WINDOW + WINDOW_SIZE)` are shared memory.
pub const SHARED_WINDOW: u64 = 0x0000_5000_0000_0000;
/// Generic addresses in `[LOCAL_WINDOW, LOCAL_WINDOW + WINDOW_SIZE)` are the thread's local memory.
pub const LOCAL_WINDOW: u64 = 0x0000_6000_0000_0000;
pub const WINDOW_SIZE: u64 = 1 << 32;

pub use crate::backend::cuda::device::DevicePtr;

struct Allocation {
    /// u64 storage so every allocation is 8-byte aligned on the host, like device allocations are
    /// 256-byte aligned on the device (addresses are aligned separately).
    data: Vec<u64>,
    size: usize,
}

/// All global allocations of one virtual device.
#[derive(Default)]
pub struct GlobalMemory {
    allocations: BTreeMap<u64, Allocation>,
    next_address: u64,
}

/// Where an address falls relative to the allocations, for error messages.
pub fn describe_nearest(regions: &[Region], addr: u64) -> String {
    let idx = regions.partition_point(|r| r.base <= addr);
    let mut parts = Vec::new();
    if idx > 0 {
        let r = &regions[idx - 1];
        let end = r.base + r.size as u64;
        if addr >= end {
            parts.push(format!(
                "{} bytes after the end of the {}-byte allocation at {:#x}",
                addr - end,
                r.size,
                r.base
            ));
        }
    }
    if idx < regions.len() {
        let r = &regions[idx];
        parts.push(format!(
            "{} bytes before the {}-byte allocation at {:#x}",
            r.base - addr,
            r.size,
            r.base
        ));
    }
    if parts.is_empty() {
        "no allocation exists".to_string()
    } else {
        parts.join("; ")
    }
}

impl GlobalMemory {
    pub fn new() -> Self {
        GlobalMemory {
            allocations: BTreeMap::new(),
            next_address: GLOBAL_BASE,
        }
    }

    pub fn alloc(&mut self, bytes: usize) -> Option<DevicePtr> {
        let base = self.next_address;
        let words = bytes.div_ceil(8).max(1);
        let mut data = Vec::new();
        data.try_reserve_exact(words).ok()?;
        data.resize(words, 0u64);
        let span = (bytes as u64).div_ceil(256) * 256 + GUARD_BYTES;
        self.next_address = base.checked_add(span)?;
        if self.next_address >= SHARED_WINDOW {
            return None;
        }
        self.allocations
            .insert(base, Allocation { data, size: bytes });
        Some(DevicePtr(base))
    }

    pub fn free(&mut self, ptr: DevicePtr) -> bool {
        self.allocations.remove(&ptr.0).is_some()
    }

    /// The bytes `[addr, addr + len)` when they lie inside one allocation.
    pub fn slice_mut(&mut self, addr: u64, len: usize) -> Result<&mut [u8], String> {
        let regions = self.regions();
        let (base, alloc) = self
            .allocations
            .range_mut(..=addr)
            .next_back()
            .ok_or_else(|| format!("address {addr:#x}: {}", describe_nearest(&regions, addr)))?;
        let start = (addr - base) as usize;
        if start.checked_add(len).is_none_or(|end| end > alloc.size) {
            return Err(format!(
                "range [{addr:#x}, +{len}) does not fit in the {}-byte allocation at {base:#x}",
                alloc.size
            ));
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(alloc.data.as_mut_slice());
        Ok(&mut bytes[start..start + len])
    }

    /// A snapshot of the allocations for one launch.
    pub fn regions(&mut self) -> Vec<Region> {
        self.allocations
            .iter_mut()
            .map(|(base, a)| Region {
                base: *base,
                size: a.size,
                ptr: a.data.as_mut_ptr() as *mut u8,
            })
            .collect()
    }
}

/// Whether `size` bytes at `offset` lie within `len` bytes.
#[inline]
fn fits(offset: u64, size: usize, len: usize) -> bool {
    offset
        .checked_add(size as u64)
        .is_some_and(|end| end <= len as u64)
}

/// One allocation as seen by a running kernel.
#[derive(Clone, Copy)]
pub struct Region {
    pub base: u64,
    pub size: usize,
    pub ptr: *mut u8,
}

/// The global memory a launch sees. Blocks run on several host threads and access it through raw
/// pointers: overlapping non-atomic writes from different blocks are a race in the kernel itself
/// (as on a GPU), and atomics go through host atomics.
pub struct GlobalView {
    pub regions: Vec<Region>,
}

// SAFETY: the regions point into allocations owned by the device, which are neither freed nor
// resized while the view exists (the launch holds the device's memory lock).
unsafe impl Sync for GlobalView {}
unsafe impl Send for GlobalView {}

impl GlobalView {
    /// Host pointer for `[addr, addr + size)`, or `None` when it is not inside one allocation.
    #[inline]
    pub fn resolve(&self, addr: u64, size: usize, hint: &mut usize) -> Option<*mut u8> {
        if let Some(r) = self.regions.get(*hint) {
            if addr >= r.base && fits(addr - r.base, size, r.size) {
                // SAFETY: bounds checked just above.
                return Some(unsafe { r.ptr.add((addr - r.base) as usize) });
            }
        }
        let idx = self.regions.partition_point(|r| r.base <= addr);
        if idx == 0 {
            return None;
        }
        let r = &self.regions[idx - 1];
        if fits(addr - r.base, size, r.size) {
            *hint = idx - 1;
            // SAFETY: bounds checked just above.
            Some(unsafe { r.ptr.add((addr - r.base) as usize) })
        } else {
            None
        }
    }
}
