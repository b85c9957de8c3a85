//! Process-wide counters and latency histograms, rendered as Prometheus text on /metrics.
//!
//! Shards update them with relaxed atomics (no locks); the admin endpoint reads them. Latency
//! histograms use fixed buckets (Prometheus' cumulative `le` form).

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
}

impl Metrics {
    pub fn api(&self, key: i16) -> Option<&ApiMetrics> {
        usize::try_from(key).ok().and_then(|k| self.apis.get(k))
    }

    /// Prometheus text exposition.
    pub fn render(&self, partitions: &[PartitionStats], api_name: impl Fn(i16) -> Option<&'static str>) -> String {
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
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {}", value.load(Relaxed));
        }
        out.push_str("# HELP braid_log_size_bytes Bytes in a partition's log.\n# TYPE braid_log_size_bytes gauge\n");
        for p in partitions {
            let _ = writeln!(
                out,
                "braid_log_size_bytes{{topic=\"{}\",partition=\"{}\"}} {}",
                p.topic, p.partition, p.size_bytes
            );
        }
        out.push_str(
            "# HELP braid_log_end_offset Next offset of a partition's log.\n# TYPE braid_log_end_offset gauge\n",
        );
        for p in partitions {
            let _ = writeln!(
                out,
                "braid_log_end_offset{{topic=\"{}\",partition=\"{}\"}} {}",
                p.topic, p.partition, p.log_end_offset
            );
        }
        out
    }
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
        let text = metrics.render(&[], |k| (k == 0).then_some("Produce"));
        assert!(text.contains("braid_kafka_requests_total{api=\"Produce\"} 3"));
        assert!(text.contains("braid_kafka_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 1"));
        assert!(text.contains("braid_kafka_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0025\"} 2"));
        assert!(text.contains("braid_kafka_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 3"));
    }
}
