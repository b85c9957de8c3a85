//! A first deployment at scale, as an operator meets it: clients that arrive while three nodes
//! start, and a topic of thousands of partitions created, written, read and deleted with every
//! node's memory within its budgets (read from /metrics, not timed).

mod common;

use common::{python, run, wait_for, Cluster};

/// Partitions of the large topic: 3,000 replicas on each of three nodes (RF=3).
const PARTITIONS: usize = 3000;
/// What one idle partition replica may hold in memory at most (its log's buffers, caches and
/// indexes, and its state), as /metrics reports it.
const IDLE_PARTITION_BYTES_MAX: f64 = 100.0 * 1024.0;

/// Every line `name{labels} value` of a node's /metrics whose name and labels start with
/// `prefix`, as (labels, value).
fn metric(body: &str, prefix: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sum(body: &str, prefix: &str) -> f64 {
    metric(body, prefix).iter().map(|(_, v)| v).sum()
}

#[test]
fn a_client_arriving_while_three_nodes_start_creates_a_topic_and_produces() {
    // No wait for the cluster to form: the nodes' listeners hold the client until they serve.
    let cluster = Cluster::launch(3, &[]);
    let out = run(python("cluster_start.py").args([cluster.bootstrap().as_str(), "early"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("acknowledged at offset 0"));
}

#[test]
fn three_thousand_partitions_on_three_nodes_are_created_written_read_and_deleted_within_the_memory_budget() {
    let cluster = Cluster::start(3, &[]);
    let node = &cluster.nodes[0];
    let out = node
        .cli(&["topic", "create", "wide", "--partitions", &PARTITIONS.to_string(), "--replication-factor", "3"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run(python("many_partitions.py").args([cluster.bootstrap().as_str(), "wide", &PARTITIONS.to_string(), "3"]));
    // Once idle, every replica is quiet and holds a few KiB, whatever it wrote.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let body = wait_for(&format!("node {} quiet", i + 1), || {
            let body = node.try_http_get("/metrics").ok()?;
            // The wide topic's replicas and __consumer_offsets' (the consumer's group).
            let partitions = sum(&body, "braid_shard_partitions{");
            let quiet = sum(&body, "braid_shard_quiet_partitions{");
            (partitions >= PARTITIONS as f64 && quiet == partitions).then_some(body)
        });
        let most = metric(&body, "braid_shard_partition_memory_max_bytes{");
        eprintln!(
            "node {}: most one replica holds {most:?}; {} descriptors; {} resident bytes",
            i + 1,
            sum(&body, "process_open_fds "),
            sum(&body, "process_resident_memory_bytes ")
        );
        assert!(most.iter().all(|(_, v)| *v <= IDLE_PARTITION_BYTES_MAX), "node {}: {most:?}", i + 1);
        for kind in ["write_buffers", "replication_cache"] {
            let held = metric(&body, "braid_shard_memory_bytes{").into_iter().filter(|(l, _)| l.contains(kind));
            let limits: Vec<f64> = metric(&body, "braid_shard_memory_limit_bytes{")
                .into_iter()
                .filter(|(l, _)| l.contains(kind))
                .map(|(_, v)| v)
                .collect();
            for ((labels, bytes), limit) in held.zip(&limits) {
                assert!(bytes <= *limit, "node {}: {labels} {bytes} over {limit}", i + 1);
            }
        }
        // Idle logs give their buffers back: the write buffers are the idle tails, one block each.
        let write_buffers: f64 = metric(&body, "braid_shard_memory_bytes{")
            .into_iter()
            .filter(|(l, _)| l.contains("\"write_buffers\""))
            .map(|(_, v)| v)
            .sum();
        assert!(write_buffers <= (PARTITIONS * 8192) as f64, "node {}: write buffers {write_buffers}", i + 1);
        let resident = sum(&body, "process_resident_memory_bytes ");
        let replicas = sum(&body, "braid_shard_partitions{");
        let bound = 64.0 * 1024.0 * 1024.0 + replicas * IDLE_PARTITION_BYTES_MAX;
        assert!(resident <= bound, "node {}: {resident} resident bytes for {replicas} replicas", i + 1);
        // One descriptor per idle replica (its active segment), not two.
        let fds = sum(&body, "process_open_fds ");
        assert!(fds < replicas + 200.0, "node {}: {fds} open descriptors for {replicas} replicas", i + 1);
    }
    let out = node.cli(&["topic", "delete", "wide"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (i, node) in cluster.nodes.iter().enumerate() {
        wait_for(&format!("node {} without the topic's replicas", i + 1), || {
            let body = node.try_http_get("/metrics").ok()?;
            let left = metric(&body, "braid_partition_memory_bytes{topic=\"wide\"").len();
            let dirs = std::fs::read_dir(node.data_dir.join("kafka"))
                .map_or(0, |d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("wide-")).count());
            (left == 0 && dirs == 0).then_some(())
        });
    }
}
