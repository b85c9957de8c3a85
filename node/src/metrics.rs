//! Process-wide counters and latency histograms, rendered as Prometheus text on /metrics.
//!
//! Shards update them with relaxed atomics (no locks); the admin endpoint reads them. Latency
//! histograms use fixed buckets (Prometheus' cumulative `le` form).

use braid_engine::io::MemoryFigures;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Highest Kafka API key tracked (DescribeCluster is 60; the table is sized with room).
pub const API_KEYS: usize = 96;
/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];

pub struct ApiMetrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub latency_sum_us: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
}

impl ApiMetrics {
    fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub fn observe(&self, latency_us: u64) {
        self.requests.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Relaxed);
        let bucket = LATENCY_BUCKETS_US.iter().position(|&b| latency_us <= b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
    }
}

pub struct Metrics {
    pub apis: Vec<ApiMetrics>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub connections_refused: AtomicU64,
    pub bad_frames: AtomicU64,
    pub produced_records_batches: AtomicU64,
    /// Raft messages from peers dropped on arrival: a shard's queue was full, or the group is
    /// not known here yet (raft sends again).
    pub raft_messages_dropped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            apis: (0..API_KEYS).map(|_| ApiMetrics::new()).collect(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            produced_records_batches: AtomicU64::new(0),
            raft_messages_dropped: AtomicU64::new(0),
        }
    }
}

/// One partition's log figures, for /metrics and /v1/status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionStats {
    pub topic: String,
    pub partition: i32,
    pub shard: usize,
    /// The partition's leader as this replica knows it (-1: none).
    pub leader: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Offsets below this are fdatasynced on this replica (the log's own; appends past it are
    /// written or in memory, and a crash of this process may lose them here).
    pub durable_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub segments: usize,
    /// Bytes this replica holds in memory (its log's buffers, caches and indexes, and its
    /// state): a few KiB when idle, whatever its log's size.
    pub memory_bytes: usize,
    /// Its raft group is quiet (idle: no ticks, no heartbeats).
    pub quiet: bool,
    /// On a leader that has read its transactions: those open, and how far the last stable
    /// offset lags the high watermark (what read_committed consumers wait for).
    pub open_transactions: usize,
    pub last_stable_lag: i64,
    /// The replica lost what it held (its node's disk was replaced) and has not caught up yet:
    /// it votes for no one.
    pub rejoining: bool,
}

/// One shard's figures: its partitions, and its memory by kind against its limits.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardStats {
    pub shard: usize,
    pub partitions: usize,
    pub quiet_partitions: usize,
    /// Replicas given to this shard and not open yet.
    pub opening_partitions: usize,
    /// The shard's budgets: log write buffers (tails, writes in flight, spares) and the
    /// replication cache, each now and against its limit, the write buffers' peak, and the
    /// times a limit made a log do without.
    #[serde(serialize_with = "memory_figures")]
    pub memory: MemoryFigures,
    /// Sums over the shard's partitions, by kind.
    pub log_tail_bytes: usize,
    pub log_spare_buffers_bytes: usize,
    pub log_positions_bytes: usize,
    pub log_index_bytes: usize,
    pub partition_state_bytes: usize,
    /// The most one partition of the shard holds.
    pub partition_max_bytes: usize,
}

/// A shard's budget figures as a JSON object (the engine's type carries no serde).
fn memory_figures<S: serde::Serializer>(m: &MemoryFigures, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(7))?;
    map.serialize_entry("write_buffers_bytes", &m.write_buffers_bytes)?;
    map.serialize_entry("write_buffers_peak_bytes", &m.write_buffers_peak_bytes)?;
    map.serialize_entry("write_buffers_limit_bytes", &m.write_buffers_limit_bytes)?;
    map.serialize_entry("write_buffer_refusals", &m.write_buffer_refusals)?;
    map.serialize_entry("replication_cache_bytes", &m.replication_cache_bytes)?;
    map.serialize_entry("replication_cache_limit_bytes", &m.replication_cache_limit_bytes)?;
    map.serialize_entry("replication_cache_refusals", &m.replication_cache_refusals)?;
    map.end()
}

/// The process's resident memory and open descriptors (Linux /proc), for /metrics.
pub fn process_figures() -> (u64, u64) {
    let page = 4096;
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * page);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    (resident, fds)
}

impl Metrics {
    pub fn api(&self, key: i16) -> Option<&ApiMetrics> {
        usize::try_from(key).ok().and_then(|k| self.apis.get(k))
    }

    /// Prometheus text exposition.
    pub fn render(
        &self,
        partitions: &[PartitionStats],
        shards: &[ShardStats],
        api_name: impl Fn(i16) -> Option<&'static str>,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP braid_kafka_requests_total Kafka requests handled, by API.\n# TYPE braid_kafka_requests_total counter\n");
        let named: Vec<(usize, &'static str)> =
            (0..API_KEYS).filter_map(|k| api_name(k as i16).map(|n| (k, n))).collect();
        for &(key, name) in &named {
            let _ =
                writeln!(out, "braid_kafka_requests_total{{api=\"{name}\"}} {}", self.apis[key].requests.load(Relaxed));
        }
        out.push_str("# HELP braid_kafka_request_errors_total Kafka requests answered with an error, by API.\n# TYPE braid_kafka_request_errors_total counter\n");
        for &(key, name) in &named {
            let _ = writeln!(
                out,
                "braid_kafka_request_errors_total{{api=\"{name}\"}} {}",
                self.apis[key].errors.load(Relaxed)
            );
        }
        out.push_str("# HELP braid_kafka_request_latency_seconds Time from a request's arrival to its response being ready.\n# TYPE braid_kafka_request_latency_seconds histogram\n");
        for &(key, name) in &named {
            let api = &self.apis[key];
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
                cumulative += api.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "braid_kafka_request_latency_seconds_bucket{{api=\"{name}\",le=\"{}\"}} {cumulative}",
                    *bound as f64 / 1e6
                );
            }
            cumulative += api.buckets[LATENCY_BUCKETS_US.len()].load(Relaxed);
            let _ =
                writeln!(out, "braid_kafka_request_latency_seconds_bucket{{api=\"{name}\",le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(
                out,
                "braid_kafka_request_latency_seconds_sum{{api=\"{name}\"}} {}",
                api.latency_sum_us.load(Relaxed) as f64 / 1e6
            );
            let _ = writeln!(out, "braid_kafka_request_latency_seconds_count{{api=\"{name}\"}} {cumulative}");
        }
        for (metric, help, value) in [
            ("braid_kafka_bytes_in_total", "Request bytes received.", &self.bytes_in),
            ("braid_kafka_bytes_out_total", "Response bytes sent.", &self.bytes_out),
            ("braid_kafka_connections_opened_total", "Kafka connections accepted.", &self.connections_opened),
            ("braid_kafka_connections_closed_total", "Kafka connections closed.", &self.connections_closed),
            (
                "braid_kafka_connections_refused_total",
                "Kafka connections closed on arrival: the shard was at its limit.",
                &self.connections_refused,
            ),
            (
                "braid_kafka_bad_frames_total",
                "Connections closed for a malformed or oversized frame.",
                &self.bad_frames,
            ),
            (
                "braid_raft_messages_dropped_total",
                "Raft messages from peers dropped on arrival (a shard's queue full, or a group not known here yet).",
                &self.raft_messages_dropped,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {}", value.load(Relaxed));
        }
        render_memory(&mut out, partitions, shards);
        per_partition(&mut out, partitions, "braid_log_size_bytes", "Bytes in a partition's log.", |p| {
            p.size_bytes as i64
        });
        per_partition(&mut out, partitions, "braid_log_end_offset", "Next offset of a partition's log.", |p| {
            p.log_end_offset
        });
        let help = "Transactions open on a partition this node leads.";
        per_partition(&mut out, partitions, "braid_open_transactions", help, |p| p.open_transactions as i64);
        let help = "Offsets between a led partition's high watermark and its last stable offset.";
        per_partition(&mut out, partitions, "braid_last_stable_offset_lag", help, |p| p.last_stable_lag);
        out
    }
}

/// A gauge with one line per partition, labelled with its topic and partition.
fn per_partition(
    out: &mut String,
    partitions: &[PartitionStats],
    metric: &str,
    help: &str,
    value: fn(&PartitionStats) -> i64,
) {
    let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
    for p in partitions {
        let _ = writeln!(out, "{metric}{{topic=\"{}\",partition=\"{}\"}} {}", p.topic, p.partition, value(p));
    }
}

/// Memory: the process's, each shard's by kind against its limits, each partition's.
fn render_memory(out: &mut String, partitions: &[PartitionStats], shards: &[ShardStats]) {
    let (resident, fds) = process_figures();
    let _ = writeln!(
        out,
        "# HELP process_resident_memory_bytes Resident memory of the process.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {resident}"
    );
    let _ = writeln!(
        out,
        "# HELP process_open_fds Open file descriptors of the process.\n# TYPE process_open_fds gauge\nprocess_open_fds {fds}"
    );
    type Figure = fn(&ShardStats) -> u64;
    let gauges: [(&str, &str, &str, Figure); 10] = [
        ("braid_shard_memory_bytes", "write_buffers", "Bytes a shard holds, by kind.", |s| {
            s.memory.write_buffers_bytes as u64
        }),
        ("braid_shard_memory_bytes", "replication_cache", "", |s| s.memory.replication_cache_bytes as u64),
        ("braid_shard_memory_bytes", "log_tails", "", |s| s.log_tail_bytes as u64),
        ("braid_shard_memory_bytes", "log_spare_buffers", "", |s| s.log_spare_buffers_bytes as u64),
        ("braid_shard_memory_bytes", "log_positions", "", |s| s.log_positions_bytes as u64),
        ("braid_shard_memory_bytes", "log_indexes", "", |s| s.log_index_bytes as u64),
        ("braid_shard_memory_bytes", "partition_state", "", |s| s.partition_state_bytes as u64),
        ("braid_shard_memory_limit_bytes", "write_buffers", "A shard's limit, by kind.", |s| {
            s.memory.write_buffers_limit_bytes as u64
        }),
        ("braid_shard_memory_limit_bytes", "replication_cache", "", |s| s.memory.replication_cache_limit_bytes as u64),
        ("braid_shard_memory_peak_bytes", "write_buffers", "The most a shard held so far, by kind.", |s| {
            s.memory.write_buffers_peak_bytes as u64
        }),
    ];
    for (metric, kind, help, figure) in gauges {
        if !help.is_empty() {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        }
        for s in shards {
            let _ = writeln!(out, "{metric}{{shard=\"{}\",kind=\"{kind}\"}} {}", s.shard, figure(s));
        }
    }
    let per_shard: [(&str, &str, &str, Figure); 5] = [
        (
            "braid_shard_memory_refusals_total",
            "counter",
            "Times a shard's memory limit made a log do without, by kind.",
            |s| s.memory.write_buffer_refusals,
        ),
        ("braid_shard_partition_memory_max_bytes", "gauge", "The most one partition of a shard holds.", |s| {
            s.partition_max_bytes as u64
        }),
        ("braid_shard_partitions", "gauge", "Partition replicas a shard holds.", |s| s.partitions as u64),
        (
            "braid_shard_quiet_partitions",
            "gauge",
            "Partition replicas of a shard whose raft group is quiet (idle).",
            |s| s.quiet_partitions as u64,
        ),
        ("braid_shard_opening_partitions", "gauge", "Partition replicas given to a shard and not open yet.", |s| {
            s.opening_partitions as u64
        }),
    ];
    for (metric, kind, help, figure) in per_shard {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for s in shards {
            if metric == "braid_shard_memory_refusals_total" {
                let _ = writeln!(out, "{metric}{{shard=\"{}\",kind=\"write_buffers\"}} {}", s.shard, figure(s));
                let _ = writeln!(
                    out,
                    "{metric}{{shard=\"{}\",kind=\"replication_cache\"}} {}",
                    s.shard, s.memory.replication_cache_refusals
                );
            } else {
                let _ = writeln!(out, "{metric}{{shard=\"{}\"}} {}", s.shard, figure(s));
            }
        }
    }
    let help = "Bytes a partition replica holds in memory.";
    per_partition(out, partitions, "braid_partition_memory_bytes", help, |p| p.memory_bytes as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.api(0).unwrap().observe(50);
        metrics.api(0).unwrap().observe(2_000);
        metrics.api(0).unwrap().observe(9_000_000);
        let text = metrics.render(&[], &[], |k| (k == 0).then_some("Produce"));
        assert!(text.contains("braid_kafka_requests_total{api=\"Produce\"} 3"));
        assert!(text.contains("braid_kafka_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 1"));
        assert!(text.contains("braid_kafka_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0025\"} 2"));
        assert!(text.contains("braid_kafka_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 3"));
    }
}
