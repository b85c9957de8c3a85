//! Process-wide settings and readings: how logs are written, the allocator's treatment of
//! large buffers, the open-file limit, and the wall clock.

use std::sync::atomic::{AtomicBool, Ordering};

/// Logs are JSON lines: what else the process writes to stderr must be too (or absent).
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// True if this process logs JSON lines (`--log-format json`).
pub fn json_logs() -> bool {
    JSON_LOGS.load(Ordering::Relaxed)
}

/// Says that this process logs JSON lines.
pub fn set_json_logs() {
    JSON_LOGS.store(true, Ordering::Relaxed);
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Large buffers (request frames, raft frames, appends of up to 1 MiB) come and go all the
/// time. glibc would map and unmap each one above 128 KiB, and the kernel would clear fresh pages
/// for every one; keeping them on the heap instead measured 25-40% more replicated throughput
/// (decision 0004). Freed memory then stays with the process, up to its high-water mark, which
/// the per-shard request memory limit bounds. `braid bench` does the same for its own batches.
pub fn keep_large_buffers_on_the_heap() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Raises this process's open-file limit to its hard limit: every partition replica holds its
/// active segment open (two descriptors while it is written), so a node with thousands of
/// partitions needs more than the usual soft limit of 1024. Returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}
