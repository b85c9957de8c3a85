//! The ZooKeeper protocol with real clients: kazoo drives every operation and its recipes on one
//! node and on three (and again after the node it is connected to is killed); Debian's zkCli.sh
//! lists a topic kcat created; the cli_mt C client creates and reads a node; the four-letter
//! words answer; bad frames get ZooKeeper's error or a closed connection, never a dead node.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";
const CLI_MT: &str = "/usr/lib/zookeeper/bin/cli_mt";

/// zkCli.sh running one command against `server`. It prints the connection's watch event from
/// another thread, which can land in the middle of the command's own output ("[" and "1]" on
/// two lines around it); -waitforconnection runs the command only after that event was
/// printed.
fn zkcli(server: &str, command: &[&str]) -> std::process::Output {
    run(Command::new(ZKCLI).args(["-waitforconnection", "-server", server]).args(command))
}

fn zk_node(extra: &[&str]) -> Node {
    let mut node = Node::prepare(extra.iter().map(|s| s.to_string()).collect());
    node.launch(&[]);
    node
}

/// Sends a four-letter word and reads the answer to the end.
fn four_letter(addr: SocketAddr, word: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(word.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// A connected session on a raw socket (ConnectRequest: protocol 0, zxid 0, timeout 10 s,
/// session 0, 16-byte password, readOnly false); None if the node closes the connection.
fn try_raw_session(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut connect = Vec::new();
    connect.extend_from_slice(&0i32.to_be_bytes());
    connect.extend_from_slice(&0i64.to_be_bytes());
    connect.extend_from_slice(&10_000i32.to_be_bytes());
    connect.extend_from_slice(&0i64.to_be_bytes());
    connect.extend_from_slice(&16i32.to_be_bytes());
    connect.extend_from_slice(&[0; 16]);
    connect.push(0);
    stream.write_all(&frame(&connect)).ok()?;
    let response = read_frame(&mut stream).ok()?;
    let timeout = i32::from_be_bytes(response[4..8].try_into().unwrap());
    assert_eq!(timeout, 10_000, "the session timeout asked for is within bounds");
    Some(stream)
}

fn raw_session(addr: SocketAddr) -> TcpStream {
    try_raw_session(addr).expect("a ZooKeeper session")
}

/// True once the peer has closed the connection (reads end), within 10 s.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn kazoo_drives_every_operation_and_recipe_on_one_node() {
    let node = zk_node(&["--zk-reaper-ms", "200"]);
    let hosts = node.zk.to_string();
    let out = run(python("zk_kazoo.py").args([&hosts, "--reap-wait", "10"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("checks passed") && !text.contains("FAIL"), "{text}");
    assert!(!text.contains("ttl: skipped"), "TTL nodes are served: {text}");
    let out = run(python("zk_recipes.py").arg(&hosts));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("checks passed") && !text.contains("FAIL"), "{text}");
}

#[test]
fn kazoo_on_three_nodes_keeps_its_session_when_its_node_dies() {
    let mut cluster = Cluster::start(3, &[]);
    let hosts = cluster.zk_hosts();
    let out = run(python("zk_kazoo.py").arg(&hosts));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("checks passed") && !text.contains("FAIL"), "{text}");
    // The recipes connect to node 1 first, which is killed under them: the session moves to
    // another node with its ephemeral and its lock, and every recipe runs again.
    let pid = cluster.nodes[0].child.as_ref().unwrap().id().to_string();
    let first = cluster.nodes[0].zk.to_string();
    let out = run(python("zk_recipes.py").args([&hosts, "--kill-pid", &pid, "--kill-host", &first]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reconnected to") && text.contains("checks passed") && !text.contains("FAIL"), "{text}");
    assert!(!cluster.nodes[0].alive(), "node 1 was killed by the script");
    // Node 1 comes back and catches up: it serves the tree the others wrote meanwhile.
    cluster.nodes[0].restart();
    let back = cluster.nodes[0].zk;
    wait_for("node 1 serving again with the others' zxid", || {
        let srvr = four_letter(back, "srvr");
        let zxid =
            |s: &str| s.lines().find_map(|l| l.strip_prefix("Zxid: 0x")).and_then(|z| i64::from_str_radix(z, 16).ok());
        let others = zxid(&four_letter(cluster.nodes[1].zk, "srvr"))?;
        (zxid(&srvr)? >= others - 5 && srvr.contains("Mode: follower")).then_some(())
    });
}

/// ZooKeeper's read-only mode: a node whose peers are stopped gives a kazoo client that allows
/// it (read_only=True) a read-only session: reads from its tree, NotReadOnlyCallError for
/// writes, `isro` says "ro"; a client that does not allow it is refused. Once the peers are
/// back, the read-only session ends and the client goes on read-write with a new session.
#[test]
fn a_read_only_kazoo_client_keeps_reading_from_a_node_whose_peers_are_stopped() {
    let mut cluster = Cluster::start(3, &[]);
    let host = cluster.nodes[0].zk.to_string();
    let out = run(python("zk_read_only.py").args(["prepare", &host]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("prepared"));
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let client = std::process::Command::new("python3")
        .arg(repo_root().join("tests/clients/zk_read_only.py"))
        .args(["run", &host, ready.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the read-only checks", || ready.exists().then_some(()));
    assert_eq!(four_letter(cluster.nodes[0].zk, "isro"), "ro");
    cluster.nodes[1].restart();
    cluster.nodes[2].restart();
    let output = client.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("read-only checks passed") && stdout.contains("read-write again"), "{stdout}{stderr}");
    assert_eq!(four_letter(cluster.nodes[0].zk, "isro"), "rw");
}

#[test]
fn zkcli_braid_zk_and_cli_mt_read_and_change_the_tree() {
    let node = zk_node(&[]);
    let topic = "zk-visible";
    let mut kcat = Command::new("kcat");
    kcat.args(["-b", &node.bootstrap(), "-t", topic, "-P"]).stdin(Stdio::piped());
    let mut child = kcat.spawn().expect("kcat");
    child.stdin.take().unwrap().write_all(b"one\n").unwrap();
    assert!(child.wait().unwrap().success());
    let server = node.zk.to_string();
    for (path, expected) in [("/brokers/topics", format!("[{topic}]")), ("/brokers/ids", "[1]".to_owned())] {
        let out = zkcli(&server, &["ls", path]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().any(|l| l.trim() == expected), "zkCli ls {path}: {text}");
    }
    let out = zkcli(&server, &["get", &format!("/brokers/topics/{topic}")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"partitions\":{\"0\":[1]}"), "the topic's znode is Kafka's JSON: {text}");

    // braid zk: the same tree through the CLI.
    let zk = |args: &[&str]| node.zk_cli(args);
    let text = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(text(zk(&["ls", "/brokers/topics"])), format!("[{topic}]"));
    assert_eq!(text(zk(&["create", "/cli", "one"])), "/cli");
    assert_eq!(text(zk(&["create", "/cli/s-", "--sequential"])), "/cli/s-0000000000");
    assert!(zk(&["set", "/cli", "two", "--version", "0"]).status.success());
    let refused = zk(&["set", "/cli", "three", "--version", "0"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("BadVersion"));
    let got = text(zk(&["get", "/cli", "--stat"]));
    assert!(got.starts_with("two\n") && got.contains("version = 1") && got.contains("numChildren = 1"), "{got}");
    let refused = zk(&["delete", "/cli"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("NotEmpty"));
    assert!(zk(&["delete", "/cli/s-0000000000"]).status.success() && zk(&["delete", "/cli"]).status.success());
    assert!(String::from_utf8_lossy(&zk(&["get", "/cli"]).stderr).contains("NoNode"));

    // cli_mt: each command is sent once the answer to the one before has been read.
    // Line-buffered, with its stderr (where it reports the session) in the same stream.
    let mut cli = Command::new("sh")
        .args(["-c", &format!("exec stdbuf -oL -eL {CLI_MT} {server} 2>&1")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cli_mt");
    let mut stdin = cli.stdin.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = cli.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                if line.contains(what) {
                    return;
                }
                seen.push(line);
            }
        }
        panic!("cli_mt never printed {what:?}; it printed:\n{}", seen.join("\n"));
    };
    expect("state = CONNECTED_STATE");
    writeln!(stdin, "create /from-c").unwrap();
    expect("[/from-c]: rc = 0");
    writeln!(stdin, "get /from-c").unwrap();
    expect("/from-c: rc = 0");
    expect("value_len = 3");
    writeln!(stdin, "ls /").unwrap();
    expect("from-c");
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let _ = cli.wait();
    let out = zkcli(&server, &["get", "/from-c"]);
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "new"), "cli_mt's data is readable");
}

#[test]
fn four_letter_words_answer_and_bad_frames_never_kill_the_node() {
    let node = zk_node(&[]);
    let addr = node.zk;
    assert_eq!(four_letter(addr, "ruok"), "imok");
    let srvr = four_letter(addr, "srvr");
    assert!(srvr.contains("Mode: standalone") && srvr.contains("Zxid: 0x") && srvr.contains("Node count: "), "{srvr}");
    let mntr = four_letter(addr, "mntr");
    for key in
        ["zk_version", "zk_server_state\tstandalone", "zk_znode_count", "zk_watch_count", "zk_num_alive_connections"]
    {
        assert!(mntr.contains(key), "mntr lacks {key}: {mntr}");
    }
    assert!(four_letter(addr, "conf").contains(&format!("clientPort={}", addr.port())));
    let mut session = raw_session(addr);
    let stat = four_letter(addr, "stat");
    assert!(stat.contains("Clients:") && stat.contains("Connections: 1"), "{stat}");
    assert!(four_letter(addr, "cons").contains("sid=0x"));
    assert!(four_letter(addr, "wchs").contains("Total watches:0"));

    // An unknown op: ZooKeeper's UNIMPLEMENTED (-6) for that xid, and the session goes on.
    let mut request = 7i32.to_be_bytes().to_vec();
    request.extend_from_slice(&999i32.to_be_bytes());
    session.write_all(&frame(&request)).unwrap();
    let reply = read_frame(&mut session).unwrap();
    assert_eq!(i32::from_be_bytes(reply[..4].try_into().unwrap()), 7, "the reply names the request's xid");
    assert_eq!(i32::from_be_bytes(reply[12..16].try_into().unwrap()), -6);
    let mut ping = (-2i32).to_be_bytes().to_vec();
    ping.extend_from_slice(&11i32.to_be_bytes());
    session.write_all(&frame(&ping)).unwrap();
    let reply = read_frame(&mut session).unwrap();
    assert_eq!(
        (i32::from_be_bytes(reply[..4].try_into().unwrap()), i32::from_be_bytes(reply[12..16].try_into().unwrap())),
        (-2, 0)
    );

    // A getData whose path length runs past the frame: the connection closes.
    let mut bad = 8i32.to_be_bytes().to_vec();
    bad.extend_from_slice(&4i32.to_be_bytes());
    bad.extend_from_slice(&1000i32.to_be_bytes());
    bad.extend_from_slice(b"/x");
    session.write_all(&frame(&bad)).unwrap();
    assert!(closed_by_peer(&mut session), "a malformed request closes its connection");

    // A huge length prefix, before and after the connect: closed, nothing allocated for it.
    for connected in [false, true] {
        let mut stream = if connected { raw_session(addr) } else { TcpStream::connect(addr).unwrap() };
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&0x7fff_fff0i32.to_be_bytes()).unwrap();
        assert!(closed_by_peer(&mut stream), "a frame past jute.maxbuffer closes the connection");
    }
    // A connect that does not decode.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&frame(&[1, 2, 3])).unwrap();
    assert!(closed_by_peer(&mut stream));

    assert_eq!(four_letter(addr, "ruok"), "imok", "the node still serves");
    let log = node.log();
    assert!(
        log.contains("malformed ZooKeeper request") && log.contains("frame length"),
        "the log says what and where:\n{log}"
    );
}

#[test]
fn the_tree_restarts_from_its_snapshot_after_the_log_below_it_is_deleted() {
    // Every 20 transactions a snapshot; 40 writes of 900 KiB fill more than two 16 MiB
    // segments of the metadata log, which then go.
    let mut node = zk_node(&["--zk-snap-count", "20"]);
    let hosts = node.zk.to_string();
    let script = r#"
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout=10)
zk.start(timeout=15)
zk.ensure_path("/snap")
big = b"x" * (900 * 1024)
for i in range(40):
    zk.create("/snap/n", big, sequence=True)
zk.create("/snap/last", b"kept", acl=[__import__("kazoo.security").security.make_digest_acl("u", "pw", all=True)])
zk.stop()
"#;
    run(Command::new("python3").args(["-c", script, &hosts]));
    let log_dir = node.data_dir.join("meta/group-0");
    wait_for("the metadata log truncated below the snapshot", || {
        node.log().contains("metadata log truncated").then_some(())
    });
    assert!(log_dir.join("tree.snap").exists());
    // Segments are named by their first offset: the first one left no longer starts at 0.
    let first = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".log")?.parse::<i64>().ok())
        .min()
        .unwrap();
    assert!(first > 0, "the log below the snapshot went (first segment at {first})");
    node.kill();
    node.launch(&[]);
    let check = r#"
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout=10)
zk.start(timeout=15)
children = sorted(zk.get_children("/snap"))
assert len(children) == 41 and children[0] == "last", children
assert children[1] == "n0000000000" and children[40] == "n0000000039", children
data, stat = zk.get("/snap/n0000000039")
assert len(data) == 900 * 1024 and stat.version == 0, stat
zk.add_auth("digest", "u:pw")
acl, _ = zk.get_acls("/snap/last")
assert acl[0].id.scheme == "digest" and acl[0].id.id.startswith("u:"), acl
zk.create("/snap/n", b"", sequence=True) == "/snap/n0000000041" or sys.exit("sequence numbers go on")
print("restored")
zk.stop()
"#;
    let out = run(Command::new("python3").args(["-c", check, &hosts]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("restored"));
    assert!(node.log().contains("tree loaded from its snapshot"), "{}", node.log());
    // Kafka's metadata came back from the snapshot too: the node lists itself as a broker.
    let out = zkcli(&hosts, &["ls", "/brokers/ids"]);
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "[1]"));
}

#[test]
fn a_node_cut_off_from_the_majority_sends_its_clients_elsewhere() {
    let cluster = Cluster::start(3, &[]);
    let cut = cluster.nodes[0].zk;
    // (A node turns clients away until it knows a metadata-group leader.)
    let mut session = wait_for("a session on node 1", || try_raw_session(cut));
    // A kazoo client on the cut-off node first (the others after it) holds an ephemeral; it
    // must end up on another node with its session and ephemeral intact.
    let hosts = format!("{cut},{},{}", cluster.nodes[1].zk, cluster.nodes[2].zk);
    let script = r#"
import sys, threading, time
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout=6, randomize_hosts=False)
zk.start(timeout=15)
sid = zk.client_id[0]
zk.create("/cutoff-eph", b"", ephemeral=True)
print("ready", flush=True)
sys.stdin.readline()                      # the node is cut off now
deadline = time.time() + 30
while time.time() < deadline:
    sock = zk._connection._socket
    host = sock.getpeername() if sock else None
    if zk.connected and host and host[1] != int(sys.argv[1].split(",")[0].split(":")[1]):
        break
    time.sleep(0.1)
else:
    sys.exit("never moved off the cut-off node")
assert zk.client_id[0] == sid, "same session"
_, stat = zk.get("/cutoff-eph")
assert stat.ephemeralOwner == sid, stat
print("moved", flush=True)
zk.stop()
"#;
    let mut client = Command::new("python3")
        .args(["-c", script, &hosts])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    cluster.isolate(0, true);
    writeln!(client.stdin.as_mut().unwrap()).unwrap();
    assert!(closed_by_peer(&mut session), "the cut-off node closed its client");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "moved", "the kazoo client kept its session on another node");
    assert!(client.wait().unwrap().success());
    // New clients are turned away until the node is back with the others.
    let mut again = TcpStream::connect(cut).unwrap();
    again.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    again.write_all(&frame(&[0; 44])).unwrap();
    assert!(closed_by_peer(&mut again));
    // Its four-letter words say so, as a ZooKeeper server's do out of its quorum; ruok answers.
    assert_eq!(four_letter(cut, "srvr"), "This ZooKeeper instance is not currently serving requests\n");
    assert_eq!(four_letter(cut, "mntr"), "This ZooKeeper instance is not currently serving requests\n");
    assert_eq!(four_letter(cut, "ruok"), "imok");
    cluster.isolate(0, false);
    wait_for("the node serving ZooKeeper clients again", || try_raw_session(cut));
    assert!(four_letter(cut, "srvr").contains("Mode: "));
}

#[test]
fn a_client_that_stops_reading_is_disconnected_not_buffered_without_end() {
    let node = zk_node(&[]);
    let addr = node.zk;
    use braid_node::zk::jute::{op, Acl, Op, Request, Writer};
    let mut session = raw_session(addr);
    let create = Op::Create {
        op: op::CREATE,
        path: "/big".into(),
        data: vec![b'x'; 1000 * 1000],
        acl: vec![Acl { perms: 31, scheme: "world".into(), id: "anyone".into() }],
        flags: 0,
        ttl: None,
    };
    let mut w = Writer::default();
    Request { xid: 1, op: create }.encode(&mut w);
    session.write_all(&w.frame()).unwrap();
    let reply = read_frame(&mut session).unwrap();
    assert_eq!(i32::from_be_bytes(reply[12..16].try_into().unwrap()), 0, "created");
    // 100 getData of a 1 MB node, and no reading: 100 MB of replies, past the 64 MiB the node
    // keeps for a connection.
    for xid in 2..=101i32 {
        let mut request = xid.to_be_bytes().to_vec();
        request.extend_from_slice(&4i32.to_be_bytes());
        request.extend_from_slice(&4i32.to_be_bytes());
        request.extend_from_slice(b"/big");
        request.push(0);
        session.write_all(&frame(&request)).unwrap();
    }
    wait_for("the node to drop the connection that does not read", || {
        four_letter(addr, "srvr").contains("Connections: 0").then_some(())
    });
    let mut replies = 0;
    while read_frame(&mut session).is_ok() {
        replies += 1;
    }
    assert!(replies < 100, "the connection ended before every reply was sent ({replies})");
    assert!(node.log().contains("not reading its replies"), "{}", node.log());
    assert_eq!(four_letter(addr, "ruok"), "imok");
}

/// Every four-letter word ZooKeeper 3.8 has, through kazoo, in ZooKeeper's format (wchc, wchp,
/// dump with a session's ephemeral and watch; srst and crst; isro; hash; dirs).
#[test]
fn every_four_letter_word_answers_in_zookeepers_format() {
    let node = zk_node(&[]);
    python_ok("zk_four_letter.py", &[&node.zk.to_string()]);
}

/// A real ZooKeeper 3.8 server (Debian's package, started by perf/zk-anchor.sh), stopped when
/// dropped.
struct RealZooKeeper {
    dir: tempfile::TempDir,
    hosts: String,
}

impl RealZooKeeper {
    fn start() -> RealZooKeeper {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().to_string();
        let script = repo_root().join("perf/zk-anchor.sh");
        let out = run(Command::new(&script).args(["start", "1", &dir.path().display().to_string(), &port]));
        let hosts = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
        assert!(hosts.starts_with("127.0.0.1:"), "perf/zk-anchor.sh printed {hosts:?}");
        RealZooKeeper { dir, hosts }
    }
}

impl Drop for RealZooKeeper {
    fn drop(&mut self) {
        let script = repo_root().join("perf/zk-anchor.sh");
        let _ = Command::new(script).args(["stop", &self.dir.path().display().to_string()]).status();
    }
}

/// Differential testing against a real ZooKeeper 3.8: the same seeded operations (every kind of
/// create, delete, setData, getData, exists, children with stats, multi, ACLs, sync, watches,
/// errors on purpose) through kazoo against both, every reply and watch event compared; only
/// the differences docs/compatibility.md lists may remain. More seeds: the script's --seeds.
#[test]
fn replies_match_a_real_zookeeper_for_seeded_operations() {
    let zookeeper = RealZooKeeper::start();
    let node = zk_node(&[]);
    let out = run(python("zk_differential.py").args([
        &node.zk.to_string(),
        &zookeeper.hosts,
        "--seeds",
        "12",
        "--ops",
        "60",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.lines().last().unwrap_or_default();
    assert!(summary.contains("operations: 720") && summary.ends_with("unlisted: 0"), "{text}");
}
