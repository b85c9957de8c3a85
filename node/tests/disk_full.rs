//! A full disk: writes are refused with the protocols' own errors, nothing acknowledged is lost,
//! and the node takes writes again once space returns, without a restart.
//!
//! The node's data directory is a small tmpfs this test mounts (root only: as a user, or as a
//! root that may not mount, the test says so and returns; CI runs as root and mounts).

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const ENOSPC: i32 = 28;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, megabytes: u32) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(Tmpfs { path: path.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system holding `path` with one file, until a write fails for want of space.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = file.sync_all();
}

fn produce(node: &Node, topic: &str, lines: &str) -> std::process::Output {
    node.cli(&["produce", topic], Some(lines.as_bytes()))
}

/// Calls `write(0)`, `write(1)`, ... until one is refused (at most `attempts`): how many were
/// acknowledged, and what the refused one printed.
fn until_refused(attempts: usize, mut write: impl FnMut(usize) -> std::process::Output) -> (usize, String) {
    for i in 0..attempts {
        let out = write(i);
        if !out.status.success() {
            return (i, String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    panic!("{attempts} writes acknowledged on a full disk");
}

/// A tmpfs of `megabytes` for a node's data directory, and the node started on it; `None` (the
/// test skipped, and says why) where this process may not mount one.
fn node_on_tmpfs(megabytes: u32) -> Option<(tempfile::TempDir, Tmpfs, Node)> {
    if effective_uid() != 0 {
        eprintln!("skipped: mounting a tmpfs for the data directory needs root");
        return None;
    }
    let mount_point = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(mount_point.path(), megabytes) {
        Ok(disk) => disk,
        // Root in a container without the capability to mount.
        Err(e)
            if ["permission denied", "not permitted", "must be superuser"]
                .iter()
                .any(|m| e.to_lowercase().contains(m)) =>
        {
            eprintln!("skipped: this root may not mount a tmpfs ({})", e.trim());
            return None;
        }
        Err(e) => panic!("mounting a tmpfs as root failed: {e}"),
    };
    let mut node = Node::prepare(Vec::new());
    node.data_dir = disk.path.join("data");
    node.launch(&[]);
    Some((mount_point, disk, node))
}

#[test]
fn a_full_disk_refuses_writes_and_the_node_takes_them_again_once_space_returns() {
    let Some((_mount_point, disk, mut node)) = node_on_tmpfs(48) else { return };

    // Acknowledged before the disk fills.
    wait_for("a first znode", || node.zk_cli(&["create", "/before", "kept"]).status.success().then_some(()));
    let out = produce(&node, "kept", "one\ntwo\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    fill(&disk.path.join("filler"));

    // Refused while full (writes may still land in blocks the logs reserved before): znodes of
    // 100 KiB and records of 256 KiB until one is refused.
    let big = "z".repeat(100 << 10);
    let (znodes, zk_error) = until_refused(40, |i| node.zk_cli(&["create", &format!("/during-{i}"), &big]));
    let record = "r".repeat(256 << 10);
    let (records, kafka_error) = until_refused(40, |_| produce(&node, "kept", &record));
    // KAFKA_STORAGE_ERROR (56).
    assert!(kafka_error.contains("error 56 "), "{kafka_error}");
    let log = node.log();
    assert!(log.contains("No space left on device"), "the log does not say the disk is full:\n{log}");
    assert!(
        log.contains("metadata log: persisting failed; reopening it"),
        "the znode was refused for another reason than the metadata log's full disk:\n{log}"
    );
    eprintln!("full disk: {znodes} znodes and {records} records acknowledged, then refused ({zk_error})");

    // Space returns: both protocols take writes again, without a restart.
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    wait_for("a znode created after space returned", || {
        node.zk_cli(&["create", "/after", "back"]).status.success().then_some(())
    });
    wait_for("a produce after space returned", || produce(&node, "kept", "three\n").status.success().then_some(()));
    assert!(node.alive(), "the node exited");

    // Nothing acknowledged was lost.
    let get = |path: &str| String::from_utf8_lossy(&node.zk_cli(&["get", path]).stdout).trim().to_owned();
    assert_eq!(get("/before"), "kept");
    assert_eq!(get("/after"), "back");
    for i in 0..znodes {
        assert_eq!(get(&format!("/during-{i}")), big, "znode /during-{i}");
    }
    let out = node.cli(&["consume", "kept", "--idle-timeout-ms", "2000"], None);
    let values = lines(&out);
    let mut expected = vec!["one".to_owned(), "two".to_owned()];
    expected.extend(std::iter::repeat_n(record.clone(), records));
    let lens: Vec<usize> = values.iter().map(String::len).collect();
    assert!(values.len() > expected.len(), "record lengths {lens:?}; {}", String::from_utf8_lossy(&out.stderr));
    assert!(values[..expected.len()] == expected[..], "the records read back differ from those acknowledged: {lens:?}");
    // Then "three" (more than once if a retry's first attempt was stored after all).
    assert!(values[expected.len()..].iter().all(|v| v == "three"), "record lengths {lens:?}");
    drop(node);
}

/// Producers with many acks=all requests in flight when the disk fills: the failed log is
/// reopened (cut back to what was durable) while requests wait for offsets it cut. Each of
/// those is answered with an error, never acknowledged for batches that later took its offsets,
/// and the node goes on.
#[test]
fn acks_all_requests_in_flight_when_the_disk_fills_are_refused_and_every_acknowledged_one_is_stored() {
    let Some((_mount_point, disk, mut node)) = node_on_tmpfs(64) else { return };
    let created = node.cli(&["topic", "create", "filling", "--partitions", "2"], None);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    // 16 MiB of the 64 stay free once the producer has filled the rest, and come back at the end.
    let reserve = disk.path.join("reserve");
    std::fs::write(&reserve, vec![0u8; 16 << 20]).unwrap();
    let out = disk.path.join("../filling.acked");
    let output = run(python("acked_producer.py")
        .args([&node.bootstrap(), "filling", "1600", "all"])
        .arg(&out)
        .args(["65536", "15000"]));
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(node.alive(), "the node exited:\n{}", node.log());
    let log = node.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("No space left on device"), "the disk never filled ({report}):\n{log}");
    let acked = std::fs::read_to_string(&out).unwrap();
    assert!(acked.lines().count() < 1600, "everything acknowledged on a full disk: {report}");

    // Space returns; then every acknowledged message is at its offset.
    std::fs::remove_file(&reserve).unwrap();
    wait_for("a produce after space returned", || produce(&node, "kept", "back\n").status.success().then_some(()));
    for (partition, acked) in acked_by_partition(&acked) {
        let stored: std::collections::BTreeMap<i64, String> =
            stored_records(&node.bootstrap(), "filling", partition).into_iter().collect();
        for (offset, value) in acked {
            let got = stored.get(&offset).map(|v| &v[..v.len().min(8)]);
            assert!(
                stored.get(&offset) == Some(&value),
                "partition {partition} offset {offset}: acknowledged {}, stored {got:?}",
                &value[..8]
            );
        }
    }
    eprintln!("filling the disk: {report}");
}

/// The effective uid, from /proc.
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}
