//! Shared-memory race detection: each 4-byte word remembers who last wrote it and who read it in the
//! current barrier interval; an access by another thread in the same interval that conflicts
//! (write/write, read/write, write/read) is a hazard, as compute-sanitizer's racecheck reports.

use std::fmt;

const NOBODY: u32 = u32::MAX;
const MANY: u32 = u32::MAX - 1;

#[derive(Clone, Copy)]
struct WordState {
    writer: u32,
    writer_interval: u64,
    reader: u32,
    reader_interval: u64,
}

const FRESH: WordState = WordState {
    writer: NOBODY,
    writer_interval: 0,
    reader: NOBODY,
    reader_interval: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HazardKind {
    WriteAfterWrite,
    ReadAfterWrite,
    WriteAfterRead,
}

impl fmt::Display for HazardKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HazardKind::WriteAfterWrite => "write-after-write",
            HazardKind::ReadAfterWrite => "read-after-write",
            HazardKind::WriteAfterRead => "write-after-read",
        })
    }
}

/// One reported hazard.
#[derive(Debug, Clone)]
pub struct RaceHazard {
    pub kernel: String,
    pub kind: HazardKind,
    /// Byte offset in the block's shared memory.
    pub shared_offset: u64,
    pub block: [u32; 3],
    /// Linear thread indices within the block: the earlier access, then the current one.
    pub first_thread: u32,
    pub second_thread: u32,
    /// PTX line of the current access.
    pub line: u32,
}

impl fmt::Display for RaceHazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = if self.first_thread == MANY {
            "several threads".to_string()
        } else {
            format!("thread {}", self.first_thread)
        };
        write!(
            f,
            "racecheck: {} hazard on shared memory at offset {:#x} in kernel `{}`, block ({}, {}, {}): {} and thread {} (PTX line {}) with no barrier between",
            self.kind, self.shared_offset, self.kernel, self.block[0], self.block[1], self.block[2], first,
            self.second_thread, self.line
        )
    }
}

/// Shadow state of one block's shared memory.
pub struct RaceShadow {
    words: Vec<WordState>,
    pub hazards: Vec<RaceHazard>,
    pub hazard_count: u64,
}

/// Hazards kept in full per launch; the rest are only counted.
pub const MAX_KEPT_HAZARDS: usize = 64;

impl RaceShadow {
    pub fn new(shared_bytes: usize) -> Self {
        RaceShadow {
            words: vec![FRESH; shared_bytes.div_ceil(4)],
            hazards: Vec::new(),
            hazard_count: 0,
        }
    }

    pub fn reset(&mut self, shared_bytes: usize) {
        self.words.clear();
        self.words.resize(shared_bytes.div_ceil(4), FRESH);
    }

    /// Records an access of `size` bytes at `offset` by `thread`; `interval` combines the block
    /// barrier count with the thread's warp-sync count. Returns a hazard when one is found.
    pub fn access(
        &mut self,
        offset: u64,
        size: usize,
        thread: u32,
        interval: u64,
        write: bool,
    ) -> Option<(HazardKind, u32, u64)> {
        let first = (offset / 4) as usize;
        let last = ((offset + size.max(1) as u64 - 1) / 4) as usize;
        // `interval` packs the block barrier count (high bits) and the warp-sync count (low 24 bits):
        // threads of different warps only synchronise at block barriers.
        let conflicts = |other: u32, other_interval: u64| {
            other != NOBODY
                && other != thread
                && other_interval >> 24 == interval >> 24
                && (other == MANY || other / 32 != thread / 32 || other_interval == interval)
        };
        let mut found = None;
        for w in first..=last.min(self.words.len().saturating_sub(1)) {
            let s = &mut self.words[w];
            if write {
                if conflicts(s.writer, s.writer_interval) {
                    found = found.or(Some((HazardKind::WriteAfterWrite, s.writer, w as u64 * 4)));
                } else if conflicts(s.reader, s.reader_interval) {
                    found = found.or(Some((HazardKind::WriteAfterRead, s.reader, w as u64 * 4)));
                }
                s.writer = thread;
                s.writer_interval = interval;
            } else {
                if conflicts(s.writer, s.writer_interval) {
                    found = found.or(Some((HazardKind::ReadAfterWrite, s.writer, w as u64 * 4)));
                }
                if s.reader_interval != interval || s.reader == NOBODY {
                    s.reader = thread;
                    s.reader_interval = interval;
                } else if s.reader != thread {
                    s.reader = MANY;
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_INTERVAL: u64 = 1 << 24;

    #[test]
    fn conflicting_accesses_in_one_interval_are_hazards() {
        let mut shadow = RaceShadow::new(64);
        assert!(shadow.access(0, 4, 0, BLOCK_INTERVAL, true).is_none());
        let (kind, other, _) = shadow.access(0, 4, 40, BLOCK_INTERVAL, false).unwrap();
        assert_eq!((kind, other), (HazardKind::ReadAfterWrite, 0));
        assert!(shadow.access(8, 4, 3, BLOCK_INTERVAL, false).is_none());
        assert_eq!(
            shadow.access(8, 4, 5, BLOCK_INTERVAL, true).unwrap().0,
            HazardKind::WriteAfterRead
        );
        assert_eq!(
            shadow.access(8, 4, 6, BLOCK_INTERVAL, true).unwrap().0,
            HazardKind::WriteAfterWrite
        );
    }

    #[test]
    fn barriers_and_warp_syncs_separate_intervals() {
        let mut shadow = RaceShadow::new(64);
        shadow.access(0, 4, 0, BLOCK_INTERVAL, true);
        // After a block barrier, any thread may read.
        assert!(shadow.access(0, 4, 40, 2 * BLOCK_INTERVAL, false).is_none());
        // A warp sync orders threads of the same warp only.
        shadow.access(16, 4, 1, 2 * BLOCK_INTERVAL, true);
        assert!(shadow
            .access(16, 4, 2, 2 * BLOCK_INTERVAL + 1, false)
            .is_none());
        assert!(shadow
            .access(16, 4, 33, 2 * BLOCK_INTERVAL + 1, true)
            .is_some());
        // The same thread never races with itself.
        assert!(shadow.access(32, 4, 7, 2 * BLOCK_INTERVAL, true).is_none());
        assert!(shadow.access(32, 4, 7, 2 * BLOCK_INTERVAL, false).is_none());
    }
}
