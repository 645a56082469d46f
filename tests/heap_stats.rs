//! The counting allocator behind `hepar bench`'s peak memory, installed in this test binary as
//! the `hepar` binary installs it: live bytes follow allocations and frees, the peak holds the
//! high-water mark until reset.

use hepar::util::heap_stats::{live_bytes, peak_bytes, reset_peak, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator<std::alloc::System> = CountingAllocator(std::alloc::System);

#[test]
fn live_and_peak_bytes_follow_a_large_buffer() {
    const MB: usize = 1 << 20;
    let _warm = vec![0u8; 16];
    let before = live_bytes().expect("installed");
    reset_peak();
    let big = vec![1u8; 64 * MB];
    let during = live_bytes().unwrap();
    // Other test threads may allocate too, so only bounds: at least the buffer is live.
    assert!(during >= before + 64 * MB, "{before} -> {during}");
    drop(big);
    let after = live_bytes().unwrap();
    assert!(after + 64 * MB <= during + MB, "{during} -> {after}");
    assert!(peak_bytes().unwrap() >= before + 64 * MB);
    reset_peak();
    assert!(peak_bytes().unwrap() < before + 64 * MB);
    let grown = {
        let mut v = vec![0u8; MB];
        v.resize(8 * MB, 0);
        live_bytes().unwrap()
    };
    assert!(grown >= after + 8 * MB - MB / 2, "{after} -> {grown}");
}
