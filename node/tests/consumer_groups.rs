//! Consumer groups with real clients on a 3-node cluster: confluent-kafka members share a
//! 12-partition topic; a member killed while idle loses its partitions to the others within the
//! session timeout; the group's coordinator node is killed and the group goes on from its
//! committed offsets; a member leaving gracefully hands its partitions over; a kafka-python
//! member joins the same group. Nothing is lost and nothing is consumed twice.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOPIC: &str = "orders";
const GROUP: &str = "billing";

fn script() -> PathBuf {
    repo_root().join("tests/clients/group_member.py")
}

fn produce(bootstrap: &str, first: u32, count: u32) {
    produce_to(bootstrap, TOPIC, first, count);
}

fn produce_to(bootstrap: &str, topic: &str, first: u32, count: u32) {
    run(Command::new("python3").arg(script()).args([
        "produce",
        bootstrap,
        topic,
        &first.to_string(),
        &count.to_string(),
    ]));
}

struct Member {
    child: Child,
    out: PathBuf,
    stop: PathBuf,
}

impl Member {
    fn start(dir: &Path, name: &str, bootstrap: &str, client: &str) -> Member {
        Member::start_in(dir, name, bootstrap, client, TOPIC, GROUP, &[])
    }

    fn start_in(
        dir: &Path,
        name: &str,
        bootstrap: &str,
        client: &str,
        topic: &str,
        group: &str,
        env: &[(&str, &str)],
    ) -> Member {
        let (out, stop) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.stop")));
        let child = Command::new("python3")
            .envs(env.iter().copied())
            .arg(script())
            .args(["consume", bootstrap, topic, group])
            .arg(&out)
            .arg(&stop)
            .arg(client)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.stderr"))).unwrap())
            .spawn()
            .unwrap();
        Member { child, out, stop }
    }

    /// Graceful: the member commits and leaves the group.
    fn stop(&mut self) {
        std::fs::write(&self.stop, b"").unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "member exited with {status}");
    }
}

/// Every member's stderr in `dir` (assignments, revocations, failed commits), for a failure
/// message.
fn members_stderr(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "stderr")).collect()
        })
        .unwrap_or_default();
    files.sort();
    files.iter().map(|p| format!("== {}\n{}", p.display(), std::fs::read_to_string(p).unwrap_or_default())).collect()
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every (partition, offset, value) consumed by the members whose output files are given.
fn consumed(members: &[&Path]) -> Vec<(i32, i64, String)> {
    let mut out = Vec::new();
    for path in members {
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            let f: Vec<&str> = line.splitn(3, ' ').collect();
            if f.len() == 3 {
                out.push((f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].to_owned()));
            }
        }
    }
    out
}

/// Waits until `count` distinct values are consumed, and checks none twice.
fn wait_consumed(outs: &[&Path], count: usize) -> Vec<(i32, i64, String)> {
    let started = Instant::now();
    let all = loop {
        let all = consumed(outs);
        if all.len() >= count {
            break all;
        }
        if started.elapsed() > SETTLE {
            // What each member got, in all and per partition (partition: values, highest
            // offset), and what it said: where the group stopped.
            let each: Vec<String> = outs
                .iter()
                .map(|p| {
                    let mine = consumed(&[p]);
                    let mut parts: BTreeMap<i32, (usize, i64)> = BTreeMap::new();
                    for (partition, offset, _) in &mine {
                        let e = parts.entry(*partition).or_insert((0, -1));
                        e.0 += 1;
                        e.1 = e.1.max(*offset);
                    }
                    format!("{}: {} values {parts:?}", p.display(), mine.len())
                })
                .collect();
            let dir = outs[0].parent().expect("members write in a directory");
            panic!("timed out waiting for {count} values consumed: {each:#?}\n{}", members_stderr(dir));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut seen = BTreeMap::new();
    for (p, o, v) in &all {
        if let Some(first) = seen.insert(v.clone(), (*p, *o)) {
            panic!("{v} consumed twice: at {first:?} and {:?}", (p, o));
        }
    }
    assert_eq!(all.len(), count, "more consumed than produced");
    all
}

#[test]
fn a_group_shares_partitions_through_a_crash_a_coordinator_kill_and_a_graceful_leave() {
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    wait_for("the topic", || {
        let out =
            cluster.nodes[0].cli(&["topic", "create", TOPIC, "--partitions", "12", "--replication-factor", "3"], None);
        out.status.success().then_some(())
    });
    produce(&bootstrap, 0, 6000);
    let dir = tempfile::tempdir().unwrap();
    let mut a = Member::start(dir.path(), "a", &bootstrap, "confluent");
    let mut b = Member::start(dir.path(), "b", &bootstrap, "confluent");
    let mut c = Member::start(dir.path(), "c", &bootstrap, "confluent");
    let outs = [a.out.clone(), b.out.clone(), c.out.clone()];
    let paths: Vec<&Path> = outs.iter().map(|p| p.as_path()).collect();
    let all = wait_consumed(&paths, 6000);
    let partitions_of = |path: &Path| -> BTreeSet<i32> { consumed(&[path]).into_iter().map(|(p, _, _)| p).collect() };
    eprintln!("partitions consumed by a, b, c: {:?}", paths.iter().map(|p| partitions_of(p)).collect::<Vec<_>>());
    assert!(all.iter().map(|(p, _, _)| *p).collect::<BTreeSet<_>>().len() == 12);
    // Let the last commits land (members commit every 0.5 s when idle).
    std::thread::sleep(Duration::from_secs(2));

    // 1. A member crashes while idle: after the session timeout (6 s) its partitions move.
    let c_partitions = partitions_of(&c.out);
    let killed_at = Instant::now();
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    produce(&bootstrap, 6000, 6000);
    wait_consumed(&paths, 12_000);
    eprintln!(
        "a crashed member's partitions {c_partitions:?} moved; all consumed {:?} after the kill",
        killed_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));

    // 2. The group's coordinator node is killed: the group finds the new one and goes on.
    let offsets_partition = braid_node::groups::partition_for(GROUP);
    let coordinator =
        wait_for("the coordinator", || cluster.leader_of(braid_node::groups::OFFSETS_TOPIC, offsets_partition));
    eprintln!("killing node {} (coordinator of {GROUP})", coordinator + 1);
    cluster.nodes[coordinator].kill();
    let bootstrap_alive: String =
        (0..3).filter(|&i| i != coordinator).map(|i| cluster.nodes[i].kafka.to_string()).collect::<Vec<_>>().join(",");
    produce(&bootstrap_alive, 12_000, 6000);
    wait_consumed(&paths, 18_000);
    cluster.nodes[coordinator].restart();
    std::thread::sleep(Duration::from_secs(2));

    // 3. A kafka-python member joins the group, then b leaves gracefully.
    let mut d = Member::start(dir.path(), "d", &bootstrap, "kafka-python");
    let outs = [a.out.clone(), b.out.clone(), c.out.clone(), d.out.clone()];
    let paths: Vec<&Path> = outs.iter().map(|p| p.as_path()).collect();
    wait_for("the kafka-python member's assignment", || {
        let stderr = std::fs::read_to_string(dir.path().join("d.stderr")).unwrap_or_default();
        stderr.lines().any(|l| l.starts_with("assigned ") && l.len() > "assigned ".len()).then_some(())
    });
    b.stop();
    produce(&bootstrap, 18_000, 6000);
    let all = wait_consumed(&paths, 24_000);
    assert!(!consumed(&[&d.out]).is_empty(), "the kafka-python member consumed its share");
    a.stop();
    d.stop();
    // Every value produced was consumed once.
    let values: BTreeSet<String> = all.into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(values, (0..24_000).map(|i| format!("v{i}")).collect::<BTreeSet<_>>());

    // The CLI: the group is listed, empty, fully committed; a reset takes it back to the start.
    let cli = |args: &[&str]| {
        let out = cluster.nodes[2].cli(args, None);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // (committed, end) of every partition, as `group describe` prints them.
    let positions = |described: &str| -> Vec<(i64, i64)> {
        let lines: Vec<&str> = described.lines().filter(|l| l.starts_with(&format!("partition {TOPIC}-"))).collect();
        assert_eq!(lines.len(), 12, "{described}");
        let field = |l: &str, name: &str| {
            l.split(&format!(" {name} ")).nth(1).unwrap().split(' ').next().unwrap().parse::<i64>().unwrap()
        };
        lines.iter().map(|l| (field(l, "committed"), field(l, "end"))).collect()
    };
    // A member that closed in the middle of a rebalance is only dropped at its session timeout
    // (as with Kafka): the group empties within seconds.
    wait_for("the group to empty", || {
        cli(&["group", "list"]).lines().any(|l| l == format!("{GROUP} Empty")).then_some(())
    });
    let described = cli(&["group", "describe", GROUP]);
    assert!(described.starts_with(&format!("group {GROUP} state Empty")), "{described}");
    // Everything consumed is committed; a partition's end may lie past its last record by the
    // leader markers written after it (control batches, which consumers never see).
    assert!(
        positions(&described).iter().all(|&(c, e)| c <= e && e - c <= 3),
        "{described}\nthe members' stderr:\n{}",
        members_stderr(dir.path())
    );
    let plan = cli(&["group", "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest"]);
    assert!(plan.contains("dry run"), "{plan}");
    assert_eq!(positions(&cli(&["group", "describe", GROUP])), positions(&described), "a dry run changes nothing");
    cli(&["group", "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest", "--execute"]);
    let reset = cli(&["group", "describe", GROUP]);
    assert!(positions(&reset).iter().all(|&(c, _)| c == 0), "{reset}");
}

/// Lines of a member's stderr that start with `prefix` ("assigned", "revoked").
fn events(dir: &Path, name: &str, prefix: &str) -> Vec<String> {
    let stderr = std::fs::read_to_string(dir.join(format!("{name}.stderr"))).unwrap_or_default();
    stderr.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect()
}

/// The group protocols as the clients use them, on one node: kafka-python and aiokafka
/// members in one group; cooperative-sticky rebalancing (partitions handed over
/// incrementally); a static member restarting within its session timeout without a
/// rebalance; confluent-kafka's default configuration (auto commit) handing a stopped
/// member's partitions to the others.
#[test]
fn every_client_and_rebalancing_protocol_shares_a_topic() {
    let node = Node::start();
    let bootstrap = node.bootstrap();
    let out = node.cli(&["topic", "create", "mixed", "--partitions", "12"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    produce_to(&bootstrap, "mixed", 0, 3000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // kafka-python and aiokafka in one group (both speak the roundrobin assignor).
    let mut k = Member::start_in(d, "k", &bootstrap, "kafka-python", "mixed", "interop", &[]);
    let mut a = Member::start_in(d, "a", &bootstrap, "aiokafka", "mixed", "interop", &[]);
    wait_consumed(&[&k.out, &a.out], 3000);
    k.stop();
    a.stop();

    // Cooperative-sticky: the second member takes partitions without the first giving up all.
    let coop = [("GROUP_MEMBER_STRATEGY", "cooperative-sticky")];
    let mut c1 = Member::start_in(d, "c1", &bootstrap, "confluent", "mixed", "coop", &coop);
    wait_for("c1's assignment", || (!events(d, "c1", "assigned").is_empty()).then_some(()));
    let mut c2 = Member::start_in(d, "c2", &bootstrap, "confluent", "mixed", "coop", &coop);
    wait_for("c2's assignment", || events(d, "c2", "assigned").iter().any(|l| l.len() > 9).then_some(()));
    wait_consumed(&[&c1.out, &c2.out], 3000);
    let revoked = events(d, "c1", "revoked");
    assert!(revoked.iter().all(|l| l.split(',').count() < 12), "c1 gave up only some partitions: {revoked:?}");
    c2.stop();
    produce_to(&bootstrap, "mixed", 3000, 1000);
    wait_consumed(&[&c1.out, &c2.out], 4000);
    c1.stop();

    // A static member restarts within its session timeout: the other member sees no rebalance.
    let (i1, i2) = ([("GROUP_MEMBER_INSTANCE", "one")], [("GROUP_MEMBER_INSTANCE", "two")]);
    // s2 first, so it leads (a static leader coming back makes the group rebalance, as with
    // Kafka for clients before JoinGroup v9).
    let mut s2 = Member::start_in(d, "s2", &bootstrap, "confluent", "mixed", "static", &i2);
    wait_for("s2's assignment", || (!events(d, "s2", "assigned").is_empty()).then_some(()));
    let mut s1 = Member::start_in(d, "s1", &bootstrap, "confluent", "mixed", "static", &i1);
    wait_consumed(&[&s1.out, &s2.out], 4000);
    std::thread::sleep(Duration::from_secs(2));
    let before = events(d, "s2", "assigned");
    let s1_assigned = events(d, "s1", "assigned").last().cloned();
    s1.child.kill().unwrap();
    s1.child.wait().unwrap();
    let mut s1b = Member::start_in(d, "s1b", &bootstrap, "confluent", "mixed", "static", &i1);
    wait_for("s1's return", || (!events(d, "s1b", "assigned").is_empty()).then_some(()));
    assert_eq!(events(d, "s1b", "assigned").last().cloned(), s1_assigned, "the same partitions come back");
    produce_to(&bootstrap, "mixed", 4000, 1000);
    wait_consumed(&[&s1.out, &s2.out, &s1b.out], 5000);
    assert_eq!(events(d, "s2", "assigned"), before, "the other static member was not rebalanced");
    s1b.stop();
    s2.stop();

    // confluent-kafka's defaults (auto commit): a stopped member's partitions go to the others.
    let auto = [("GROUP_MEMBER_AUTOCOMMIT", "1")];
    let mut m: Vec<Member> = (1..=3)
        .map(|i| Member::start_in(d, &format!("m{i}"), &bootstrap, "confluent", "mixed", "defaults", &auto))
        .collect();
    let outs: Vec<PathBuf> = m.iter().map(|x| x.out.clone()).collect();
    let paths: Vec<&Path> = outs.iter().map(|p| p.as_path()).collect();
    wait_for("every member to get partitions", || {
        (1..=3).all(|i| events(d, &format!("m{i}"), "assigned").last().is_some_and(|l| l.len() > 9)).then_some(())
    });
    wait_for("all 5000 values", || (consumed(&paths).len() >= 5000).then_some(()));
    m[2].stop();
    wait_for("m3's partitions to move", || {
        let held: BTreeSet<String> = (1..=2)
            .filter_map(|i| events(d, &format!("m{i}"), "assigned").last().cloned())
            .flat_map(|l| l["assigned ".len()..].split(',').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        (held.len() == 12).then_some(())
    });
    produce_to(&bootstrap, "mixed", 5000, 1000);
    wait_for("the new values", || {
        let values: BTreeSet<String> = consumed(&paths).into_iter().map(|(_, _, v)| v).collect();
        (values.len() == 6000).then_some(())
    });
    for x in &mut m[..2] {
        x.stop();
    }

    // The admin clients: list, describe, OffsetDelete on one empty group, DeleteGroups on another.
    python_ok("group_admin.py", &[&bootstrap, "mixed", "interop", "coop"]);
}

/// kafka-python 3, like the Java client and librdkafka, checks its position with
/// OffsetForLeaderEpoch once a partition's leader epoch passes the epoch of the last record it
/// read, and fetches nothing from that partition until the check answers. A restart raises
/// every partition's epoch under a running member.
#[test]
fn a_kafka_python_member_checks_its_position_after_a_restart_and_reads_on() {
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    let created = node.cli(&["topic", "create", "epochs", "--partitions", "2"], None);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    produce_to(&bootstrap, "epochs", 0, 500);
    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::start_in(dir.path(), "k", &bootstrap, "kafka-python", "epochs", "epoch-check", &[]);
    wait_consumed(&[&member.out], 500);
    node.restart();
    produce_to(&bootstrap, "epochs", 500, 500);
    wait_consumed(&[&member.out], 1000);
    member.stop();
    let stderr = members_stderr(dir.path());
    assert!(!stderr.contains("OffsetForLeaderEpoch"), "the position check failed:\n{stderr}");
}

/// OffsetCommit and AlterConsumerGroupOffsets for a topic (or a partition) the cluster does not
/// have: UNKNOWN_TOPIC_OR_PARTITION for those partitions, the others stored, as Kafka answers.
#[test]
fn offsets_committed_for_a_topic_that_does_not_exist_are_refused_per_partition() {
    let node = Node::start();
    let bootstrap = node.bootstrap();
    let created = node.cli(&["topic", "create", "present", "--partitions", "1"], None);
    assert!(created.status.success(), "{created:?}");
    python_ok("commit_unknown_topic.py", &[&bootstrap, "present"]);
}

/// Static membership (group.instance.id) with librdkafka: a member replaced by a new instance
/// under its instance id is fenced (FENCED_INSTANCE_ID on its heartbeat, librdkafka's fatal
/// error) while the new one keeps the partitions; the group's leader restarted under its
/// instance id rejoins without rebalancing the others.
#[test]
fn static_members_are_fenced_when_replaced_and_a_restarted_static_leader_rebalances_nothing() {
    let node = Node::start();
    let bootstrap = node.bootstrap();
    let created = node.cli(&["topic", "create", "statics", "--partitions", "4"], None);
    assert!(created.status.success(), "{created:?}");
    python_ok("static_members.py", &[&bootstrap, "statics"]);
}
