//! Per-launch performance counters, gathered per warp-level instruction as a profiler would.

use std::fmt;

use super::program::{InstrClass, INSTR_CLASS_COUNT, INSTR_CLASS_NAMES};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchCounters {
    /// Warp-level instructions issued, by class.
    pub warp_instructions: [u64; INSTR_CLASS_COUNT],
    /// Thread-level instructions executed (active lanes), by class.
    pub thread_instructions: [u64; INSTR_CLASS_COUNT],
    pub global_load_requests: u64,
    pub global_load_sectors: u64,
    /// Sectors the loads would touch if each request's distinct bytes were packed into whole
    /// sectors: the ideal that `global_load_sectors` is compared with.
    pub global_load_ideal_sectors: u64,
    pub global_store_requests: u64,
    pub global_store_sectors: u64,
    pub global_atomic_requests: u64,
    pub shared_load_requests: u64,
    pub shared_store_requests: u64,
    /// Extra shared-memory wavefronts caused by bank conflicts (0 when conflict-free).
    pub shared_bank_conflicts: u64,
    pub fp32_flops: u64,
    pub fp16_flops: u64,
    pub fp64_flops: u64,
    /// Bytes requested by threads from global memory (loads and atomics).
    pub global_bytes_read: u64,
    /// Bytes written by threads to global memory (stores and atomics).
    pub global_bytes_written: u64,
}

impl LaunchCounters {
    pub fn merge(&mut self, o: &LaunchCounters) {
        for i in 0..INSTR_CLASS_COUNT {
            self.warp_instructions[i] += o.warp_instructions[i];
            self.thread_instructions[i] += o.thread_instructions[i];
        }
        self.global_load_requests += o.global_load_requests;
        self.global_load_sectors += o.global_load_sectors;
        self.global_load_ideal_sectors += o.global_load_ideal_sectors;
        self.global_store_requests += o.global_store_requests;
        self.global_store_sectors += o.global_store_sectors;
        self.global_atomic_requests += o.global_atomic_requests;
        self.shared_load_requests += o.shared_load_requests;
        self.shared_store_requests += o.shared_store_requests;
        self.shared_bank_conflicts += o.shared_bank_conflicts;
        self.fp32_flops += o.fp32_flops;
        self.fp16_flops += o.fp16_flops;
        self.fp64_flops += o.fp64_flops;
        self.global_bytes_read += o.global_bytes_read;
        self.global_bytes_written += o.global_bytes_written;
    }

    pub fn warp_instructions_of(&self, class: InstrClass) -> u64 {
        self.warp_instructions[class as usize]
    }

    pub fn total_warp_instructions(&self) -> u64 {
        self.warp_instructions.iter().sum()
    }

    pub fn flops(&self) -> u64 {
        self.fp32_flops + self.fp16_flops + self.fp64_flops
    }

    /// 32-byte sectors per warp-level global load: 4 for fully coalesced 4-byte loads, up to 32.
    pub fn sectors_per_load_request(&self) -> f64 {
        ratio(self.global_load_sectors, self.global_load_requests)
    }

    /// Load sectors over the ideal (1.0 when every request touches only the sectors its bytes
    /// need; 8.0 for a warp of 4-byte loads 32 bytes apart).
    pub fn load_sectors_over_ideal(&self) -> f64 {
        ratio(self.global_load_sectors, self.global_load_ideal_sectors)
    }

    pub fn sectors_per_store_request(&self) -> f64 {
        ratio(self.global_store_sectors, self.global_store_requests)
    }

    /// Extra wavefronts per shared-memory request caused by bank conflicts.
    pub fn bank_conflicts_per_shared_request(&self) -> f64 {
        ratio(
            self.shared_bank_conflicts,
            self.shared_load_requests + self.shared_store_requests,
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl fmt::Display for LaunchCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<34} {:>14} {:>16}",
            "instruction class", "warp instr", "thread instr"
        )?;
        for ((name, warp), thread) in INSTR_CLASS_NAMES
            .iter()
            .zip(&self.warp_instructions)
            .zip(&self.thread_instructions)
        {
            writeln!(f, "{name:<34} {warp:>14} {thread:>16}")?;
        }
        let rows: [(&str, String); 13] = [
            (
                "global load requests",
                self.global_load_requests.to_string(),
            ),
            (
                "global load sectors / request",
                format!("{:.2}", self.sectors_per_load_request()),
            ),
            (
                "global load sectors / ideal",
                format!("{:.2}", self.load_sectors_over_ideal()),
            ),
            (
                "global store requests",
                self.global_store_requests.to_string(),
            ),
            (
                "global store sectors / request",
                format!("{:.2}", self.sectors_per_store_request()),
            ),
            (
                "global atomic requests",
                self.global_atomic_requests.to_string(),
            ),
            (
                "shared load requests",
                self.shared_load_requests.to_string(),
            ),
            (
                "shared store requests",
                self.shared_store_requests.to_string(),
            ),
            (
                "shared bank conflicts / request",
                format!("{:.2}", self.bank_conflicts_per_shared_request()),
            ),
            (
                "FLOPs (fp32 / fp16 / fp64)",
                format!(
                    "{} / {} / {}",
                    self.fp32_flops, self.fp16_flops, self.fp64_flops
                ),
            ),
            ("global bytes read", self.global_bytes_read.to_string()),
            (
                "global bytes written",
                self.global_bytes_written.to_string(),
            ),
            (
                "total warp instructions",
                self.total_warp_instructions().to_string(),
            ),
        ];
        for (name, value) in rows {
            writeln!(f, "{name:<34} {value:>31}")?;
        }
        Ok(())
    }
}

/// Distinct 32-byte sectors touched by one warp-level access (`addrs` of the active lanes).
pub fn count_sectors(addrs: &mut [u64], size: usize) -> u64 {
    // Accesses of up to 16 aligned bytes stay within one sector; wider ones are split per sector.
    let mut sectors = [0u64; 128];
    let mut n = 0;
    for &a in addrs.iter() {
        let first = a >> 5;
        let last = (a + size.max(1) as u64 - 1) >> 5;
        for s in first..=last.min(first + 3) {
            sectors[n] = s;
            n += 1;
        }
    }
    let sectors = &mut sectors[..n];
    sectors.sort_unstable();
    let mut distinct = 0;
    for i in 0..n {
        if i == 0 || sectors[i] != sectors[i - 1] {
            distinct += 1;
        }
    }
    distinct
}

/// Sectors one warp-level access needs at best: its distinct bytes packed into whole sectors.
pub fn ideal_sectors(addrs: &[u64], size: usize) -> u64 {
    let mut distinct = [0u64; 32];
    let n = addrs.len().min(32);
    distinct[..n].copy_from_slice(&addrs[..n]);
    let distinct = &mut distinct[..n];
    distinct.sort_unstable();
    let mut count = 0u64;
    for i in 0..n {
        if i == 0 || distinct[i] != distinct[i - 1] {
            count += 1;
        }
    }
    (count * size.max(1) as u64).div_ceil(32)
}

/// Extra wavefronts of one warp-level shared access: lanes are served in phases (a full warp for
/// 4-byte accesses, half a warp for 8, a quarter for 16); within a phase the wavefronts needed are
/// the largest number of distinct 4-byte words mapped to one of the 32 banks.
pub fn count_bank_conflicts(addrs: &[u64], size: usize) -> u64 {
    let lanes_per_phase = match size {
        0..=4 => 32,
        8 => 16,
        _ => 8,
    };
    let words_per_lane = size.div_ceil(4).clamp(1, 4);
    let mut extra = 0;
    for phase in addrs.chunks(lanes_per_phase) {
        let mut words = [0u64; 128];
        let mut n = 0;
        for &a in phase {
            let first = a >> 2;
            for w in 0..words_per_lane as u64 {
                words[n] = first + w;
                n += 1;
            }
        }
        let words = &mut words[..n];
        words.sort_unstable();
        let mut per_bank = [0u32; 32];
        for i in 0..n {
            if i == 0 || words[i] != words[i - 1] {
                per_bank[(words[i] & 31) as usize] += 1;
            }
        }
        let wavefronts = per_bank.iter().copied().max().unwrap_or(0).max(1);
        extra += u64::from(wavefronts - 1);
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_of_coalesced_and_strided_warps() {
        let mut contiguous: Vec<u64> = (0..32).map(|l| 0x1000 + 4 * l).collect();
        assert_eq!(count_sectors(&mut contiguous, 4), 4);
        let mut strided: Vec<u64> = (0..32).map(|l| 0x1000 + 128 * l).collect();
        assert_eq!(count_sectors(&mut strided, 4), 32);
        let mut same: Vec<u64> = vec![0x1000; 32];
        assert_eq!(count_sectors(&mut same, 4), 1);
        // Ideal: 128 distinct bytes are 4 sectors however they are spread; a broadcast is one.
        assert_eq!(ideal_sectors(&strided, 4), 4);
        assert_eq!(ideal_sectors(&same, 4), 1);
        let misaligned: Vec<u64> = (0..32).map(|l| 0x1004 + 4 * l).collect();
        assert_eq!(ideal_sectors(&misaligned, 4), 4);
        assert_eq!(count_sectors(&mut misaligned.clone(), 4), 5);
    }

    #[test]
    fn bank_conflicts_by_stride() {
        let unit: Vec<u64> = (0..32).map(|l| 4 * l).collect();
        assert_eq!(count_bank_conflicts(&unit, 4), 0);
        let two_way: Vec<u64> = (0..32).map(|l| 8 * l).collect();
        assert_eq!(count_bank_conflicts(&two_way, 4), 1);
        let broadcast: Vec<u64> = vec![64; 32];
        assert_eq!(count_bank_conflicts(&broadcast, 4), 0);
        // 8-byte accesses of consecutive lanes: two conflict-free half-warp phases.
        let wide: Vec<u64> = (0..32).map(|l| 8 * l).collect();
        assert_eq!(count_bank_conflicts(&wide, 8), 0);
    }
}
