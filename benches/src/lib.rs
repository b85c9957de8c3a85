//! Shared set-up for the criterion benchmarks in `benches/benches/`.

use braid_engine::log::batch::build_batch;
use std::path::PathBuf;

/// Where benchmark logs are written: `$BRAID_BENCH_DIR`, else `target/bench-data` (the same disk
/// as the checkout, which is what `perf/disk-limit.sh` measures by default).
pub fn bench_dir(name: &str) -> PathBuf {
    let root = std::env::var_os("BRAID_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

/// One RecordBatch v2 of `total_bytes` (approximately) made of 1 KiB records.
pub fn batch_of(total_bytes: usize) -> Vec<u8> {
    let record = vec![0x5au8; 1000.min(total_bytes)];
    let count = (total_bytes / 1024).max(1);
    let values: Vec<&[u8]> = (0..count).map(|_| record.as_slice()).collect();
    build_batch(1_700_000_000_000, &values)
}
