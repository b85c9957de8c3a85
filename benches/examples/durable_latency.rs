//! Latency of durable 1 KiB appends under group commit, as hdrhistogram percentiles.
//!
//! `appenders` closed-loop appenders on one shard: each appends a 1 KiB batch and waits until a
//! flush (write + fdatasync) has made it durable; the shard flushes whenever appends are
//! pending. Latency is from an append to the end of the flush that covered it.
//!
//! Run: `cargo run --release -p braid-benches --example durable_latency -- [appenders] [rounds]`
//! (defaults 64 and 3000). Prints one JSON line.

use braid_benches::{batch_of, bench_dir};
use braid_engine::io::UringStorage;
use braid_engine::log::{Log, LogConfig};
use hdrhistogram::Histogram;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let appenders: usize = args.next().map_or(64, |a| a.parse().expect("appenders"));
    let rounds: usize = args.next().map_or(3000, |a| a.parse().expect("rounds"));
    let dir = bench_dir(&format!("durable-latency-{appenders}"));
    let storage = UringStorage::new(true).expect("io_uring");
    let (mut log, _) = Log::open(storage, &dir, LogConfig { retention_ms: -1, ..LogConfig::default() }).expect("open");
    let batch = batch_of(1024);
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let started = Instant::now();
    for _ in 0..rounds {
        let mut appended_at = Vec::with_capacity(appenders);
        for _ in 0..appenders {
            log.append(&batch, 0).expect("append");
            appended_at.push(Instant::now());
        }
        log.flush().expect("flush");
        let durable = Instant::now();
        for at in appended_at {
            latency_us.record((durable - at).as_micros().max(1) as u64).expect("record");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{{\"appenders\":{appenders},\"appends\":{},\"appends_per_s\":{:.0},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        latency_us.len(),
        latency_us.len() as f64 / seconds,
        latency_us.value_at_quantile(0.50),
        latency_us.value_at_quantile(0.99),
        latency_us.value_at_quantile(0.999),
        latency_us.max()
    );
}
