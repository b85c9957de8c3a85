//! Three real nodes on loopback through changes of their members: a node whose disk is
//! replaced (started again under its id with an empty data directory) rebuilds its metadata and
//! its partitions from the others while the cluster serves, voting for no one until it has
//! caught up, and then counts as a voter again.

mod common;

use common::*;

fn produce(node: &Node, topic: &str, partition: &str, from: usize, count: usize) {
    let input: String = (from..from + count).map(|i| format!("r{i}\n")).collect();
    let out = wait_for("a produce to succeed", || {
        let out = node.cli(&["produce", topic, "--partition", partition], Some(input.as_bytes()));
        out.status.success().then_some(out)
    });
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&format!("produced {count}")), "{said}");
}

/// The partition's (high watermark, log end, rejoining) on each node that holds it.
fn positions(cluster: &Cluster, topic: &str, partition: i32) -> Vec<Option<(i64, i64, bool)>> {
    cluster
        .nodes
        .iter()
        .map(|node| {
            let p = node.partition_status(topic, partition)?;
            Some((p["high_watermark"].as_i64()?, p["log_end_offset"].as_i64()?, p["rejoining"].as_bool()?))
        })
        .collect()
}

#[test]
fn a_node_whose_disk_is_replaced_rebuilds_and_then_votes_again() {
    let mut cluster = Cluster::start(3, &[]);
    wait_for("a controller to accept the topic", || {
        cluster.nodes.iter().find_map(|node| {
            let args = ["topic", "create", "replaced", "--partitions", "2", "--replication-factor", "3"];
            node.cli(&args, None).status.success().then_some(())
        })
    });
    produce(&cluster.nodes[0], "replaced", "0", 0, 2000);
    // Node 3's disk is replaced: the same id, an empty data directory.
    let replaced = 2;
    cluster.nodes[replaced].kill();
    std::fs::remove_dir_all(&cluster.nodes[replaced].data_dir).unwrap();
    cluster.nodes[replaced].restart();
    // The cluster serves meanwhile.
    produce(&cluster.nodes[0], "replaced", "0", 2000, 1000);
    wait_for("the replaced node to say so", || {
        let log = cluster.nodes[replaced].log();
        log.contains("an empty data directory in a cluster with a history").then_some(())
    });
    assert!(cluster.nodes[replaced].data_dir.join("replaced-disk").exists(), "the marker survives a restart");
    assert_eq!(cluster.nodes[replaced].status().unwrap()["replaced_disk"], true);
    // It rebuilds its tree (it knows the topic) and its replicas, and stops rejoining.
    wait_for("the replaced node to catch up", || {
        let p = positions(&cluster, "replaced", 0);
        let theirs = p[replaced]?;
        let others = p[0]?;
        (theirs.0 >= 3000 && theirs.0 == others.0 && theirs.1 == others.1 && !theirs.2).then_some(())
    });
    // Now it counts: with another node down, it and the third elect leaders and commit.
    let other = (0..3).find(|&i| i != replaced && cluster.leader_of("replaced", 0) != Some(i)).unwrap();
    let down = (0..3).find(|&i| i != replaced && i != other).unwrap();
    cluster.nodes[down].kill();
    produce(&cluster.nodes[replaced], "replaced", "0", 3000, 500);
    let expected: Vec<String> = (0..3500).map(|i| format!("r{i}")).collect();
    let bootstrap = format!("{},{}", cluster.nodes[replaced].kafka, cluster.nodes[other].kafka);
    let stored: Vec<String> = wait_for("every record readable", || {
        let stored: Vec<String> = stored_records(&bootstrap, "replaced", 0).into_iter().map(|(_, v)| v).collect();
        (stored.len() >= expected.len()).then_some(stored)
    });
    assert_eq!(stored, expected, "every acknowledged record once, in order");
    // A restart of the replaced node after it caught up drops the marker.
    cluster.nodes[down].restart();
    cluster.nodes[replaced].restart();
    wait_for("the marker to go", || (!cluster.nodes[replaced].data_dir.join("replaced-disk").exists()).then_some(()));
}
