//! Three real nodes on loopback through changes of their members: a node whose disk is
//! replaced (started again under its id with an empty data directory) rebuilds its metadata and
//! its partitions from the others while the cluster serves, voting for no one until it has
//! caught up, and then counts as a voter again.

mod common;

use common::*;
use std::process::Command;

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

/// A replaced disk after the metadata log was deleted below a tree snapshot (every member held
/// it): the node cannot rebuild its tree from the log, so it gets the leader's tree snapshot in
/// chunks (snapshot_install.rs), installs it, applies the log after it and serves ZooKeeper
/// clients the same tree as the others.
#[test]
fn a_replaced_node_rebuilds_its_tree_from_the_leaders_snapshot_once_the_log_is_gone() {
    let mut cluster = Cluster::start(3, &["--zk-snap-count", "50"]);
    let hosts = cluster.zk_hosts();
    // About 24 MB of tree writes: the metadata log's first 16 MiB segment fills, snapshots are
    // written every 50 transactions, and the segment below them goes on every node.
    let script = r#"
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout=10)
zk.start(timeout=30)
zk.ensure_path("/keep")
for i in range(20):
    zk.create(f"/keep/n{i}", str(i).encode())
zk.create("/big", b"")
for i in range(240):
    zk.set("/big", b"x" * 100_000 + str(i).encode())
zk.stop()
print("written")
"#;
    let out = run(Command::new("python3").args(["-c", script, &hosts]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("written"), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the metadata log truncated on every node", || {
        cluster.nodes.iter().all(|n| n.log().contains("metadata log truncated below the tree snapshot")).then_some(())
    });
    let replaced = 2;
    cluster.nodes[replaced].kill();
    std::fs::remove_dir_all(&cluster.nodes[replaced].data_dir).unwrap();
    cluster.nodes[replaced].restart();
    wait_for("the replaced node to install the leader's snapshot", || {
        cluster.nodes[replaced].log().contains("tree installed from the leader's snapshot").then_some(())
    });
    cluster.wait_formed();
    let check = r#"
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout=10)
zk.start(timeout=30)
assert sorted(zk.get_children("/keep")) == sorted(f"n{i}" for i in range(20))
assert zk.get("/keep/n7")[0] == b"7"
assert zk.get("/big")[0].endswith(b"239")
zk.create("/after-install", b"ok")
zk.stop()
print("tree served")
"#;
    let node = cluster.nodes[replaced].zk.to_string();
    let out = run(Command::new("python3").args(["-c", check, &node]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tree served"), "{}", String::from_utf8_lossy(&out.stderr));
}
