//! What the micro-benchmarks share: the server's allocator, the event generator of the HTTP
//! benchmarks, a salt stream, and CPU-time measurement that a shared machine disturbs less than
//! a wall clock.

#[path = "../../src/events.rs"]
#[allow(dead_code)]
pub mod events;

/// The allocator of the `veritrail` binary, so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A deterministic salt stream (a counter), standing in for the server's random salts.
pub fn counter_salt() -> impl FnMut() -> [u8; 32] {
    let mut counter = 0u64;
    move || {
        counter += 1;
        let mut block = [0u8; 32];
        block[..8].copy_from_slice(&counter.to_le_bytes());
        block
    }
}

/// CPU time this thread has run, in seconds (Linux scheduler statistics, nanoseconds).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("linux /proc/thread-self/schedstat");
    let nanos: u64 = stat.split_whitespace().next().and_then(|n| n.parse().ok()).expect("schedstat run time");
    nanos as f64 / 1e9
}

/// Prints the median and range of `samples` (µs per event).
pub fn report(phase: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!("{phase}: median {median:.2} µs/event (range {:.2}–{:.2})", samples[0], samples[samples.len() - 1]);
}
