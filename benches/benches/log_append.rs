//! Append throughput of the partition log.
//!
//! - `sequential_1mib_sync_every_16mib/{direct,buffered}`: 1 MiB batches, one flush (write +
//!   fdatasync) per 16 MiB; compare with `perf/disk-limit.sh`'s fio O_DIRECT sequential write.
//! - `durable_1kib/{appenders_64,appenders_1}`: appenders on one shard, each appending a 1 KiB
//!   batch and waiting until it is durable before appending the next; the shard flushes whenever
//!   appends are pending (group commit). With one appender every append pays its own fdatasync.
//!
//! Run: `cargo bench -p braid-benches --bench log_append` (figures in docs/benchmarks.md).

use braid_benches::{batch_of, bench_dir};
use braid_engine::io::UringStorage;
use braid_engine::log::{DurabilityWaiters, Log, LogConfig};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn bench_config() -> LogConfig {
    LogConfig { segment_bytes: 256 << 20, retention_ms: -1, ..LogConfig::default() }
}

fn sequential(c: &mut Criterion) {
    let mut group = c.benchmark_group("sequential_1mib_sync_every_16mib");
    group.throughput(Throughput::Bytes(16 * MIB as u64));
    group.sample_size(20).measurement_time(Duration::from_secs(10)).sampling_mode(SamplingMode::Flat);
    for direct in [true, false] {
        let name = if direct { "direct" } else { "buffered" };
        let batch = batch_of(MIB);
        // Each sample appends to a fresh log, as fio writes a fresh file; the files are removed
        // and the file system synced outside the timed region, so deleting (and the discards the
        // delete causes) is not charged to the next sample's appends.
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let dir = bench_dir(&format!("sequential-{name}"));
                let storage = UringStorage::new(direct).expect("io_uring");
                let (mut log, _) = Log::open(storage, &dir, bench_config()).expect("open");
                let start = Instant::now();
                for _ in 0..iterations {
                    for _ in 0..16 {
                        log.append(&batch, 0).expect("append");
                    }
                    log.flush().expect("flush");
                }
                let elapsed = start.elapsed();
                drop(log);
                let _ = std::fs::remove_dir_all(&dir);
                // SAFETY: sync(2) takes no arguments and cannot fail.
                unsafe { libc::sync() };
                elapsed
            })
        });
    }
    group.finish();
}

/// One round of a closed loop: every appender whose last append is durable appends again, then
/// the shard flushes once and releases the waiters that flush made durable.
fn group_commit_round(
    log: &mut Log<UringStorage>,
    waiters: &mut DurabilityWaiters<usize>,
    appenders: usize,
    batch: &[u8],
) {
    for appender in 0..appenders {
        let info = log.append(batch, 0).expect("append");
        waiters.wait(info.last_offset + 1, appender);
    }
    let durable = log.flush().expect("flush");
    let released = waiters.release(durable).count();
    assert_eq!(released, appenders, "every appender's batch is durable after the flush");
}

fn durable_small(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_1kib");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    let direct = std::env::var("BRAID_BENCH_BUFFERED").is_err();
    for appenders in [64usize, 1] {
        let storage = UringStorage::new(direct).expect("io_uring");
        let dir = bench_dir(&format!("durable-{appenders}"));
        let (mut log, _) = Log::open(storage, &dir, bench_config()).expect("open");
        let mut waiters = DurabilityWaiters::new();
        let batch = batch_of(1024);
        group.throughput(Throughput::Elements(appenders as u64));
        group.bench_function(format!("appenders_{appenders}"), |b| {
            b.iter(|| group_commit_round(&mut log, &mut waiters, appenders, &batch))
        });
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, sequential, durable_small);
criterion_main!(benches);
