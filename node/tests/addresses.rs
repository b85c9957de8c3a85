//! Reachable addresses: what a node tells clients to connect to (advertised addresses, named
//! listeners, a wildcard bind), peers by host name, the CLI's lists of addresses, and logs
//! fit for a file or a log shipper.

mod common;

use braid_node::client::Client;
use common::*;
use kafka_protocol::messages::{DescribeClusterRequest, FindCoordinatorRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Command;

/// Broker id → host:port, as kcat (librdkafka) reads the Metadata of the node at `bootstrap`.
fn kcat_brokers(bootstrap: &str) -> BTreeMap<i64, String> {
    let output = run(Command::new("kcat").args(["-b", bootstrap, "-L", "-J", "-m", "10"]));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    json["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["id"].as_i64().unwrap(), b["name"].as_str().unwrap().to_owned()))
        .collect()
}

/// What the node at `addr` answers through that listener: broker id → host:port in Metadata,
/// the same from DescribeCluster, and the coordinator of a consumer group. Waits (bounded)
/// while the node turns clients away (a cluster just formed can still count itself cut off
/// until its next tick) and while the offsets topic is created and elects its leaders.
fn answers(addr: SocketAddr) -> (BTreeMap<i32, String>, BTreeMap<i32, String>, String) {
    let mut client = wait_for("the node to serve Kafka clients", || Client::connect(&addr.to_string()).ok());
    let mut request = MetadataRequest::default();
    request.topics = Some(Vec::new());
    let metadata = client.call(request).unwrap();
    let metadata = metadata.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
    let cluster = client.call(DescribeClusterRequest::default()).unwrap();
    let cluster = cluster.brokers.iter().map(|b| (b.broker_id.0, format!("{}:{}", b.host, b.port))).collect();
    let coordinator = wait_for("a group coordinator", || {
        let mut request = FindCoordinatorRequest::default();
        request.key = StrBytes::from_static_str("addresses-group");
        let response = client.call_version(request, 3).ok()?;
        (response.error_code == 0).then(|| format!("{}:{}", response.host, response.port))
    });
    (metadata, cluster, coordinator)
}

fn loopback(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

/// A node that binds every interface and advertises 127.0.0.2: Metadata names that address, and
/// librdkafka clients (kcat, confluent-kafka) bootstrapped at 127.0.0.1 produce and consume
/// through it.
#[test]
fn an_advertised_address_is_what_clients_are_told_and_use() {
    let port = free_port();
    let advertised = loopback(2, port).to_string();
    let mut node = Node::prepare(vec![
        "--kafka-addr".into(),
        format!("0.0.0.0:{port}"),
        "--kafka-advertised-addr".into(),
        advertised.clone(),
    ]);
    node.kafka = loopback(1, port);
    node.launch(&[]);
    assert_eq!(kcat_brokers(&node.bootstrap()), BTreeMap::from([(1, advertised.clone())]));
    let (metadata, cluster, coordinator) = answers(node.kafka);
    assert_eq!(metadata, BTreeMap::from([(1, advertised.clone())]));
    assert_eq!(cluster, metadata, "DescribeCluster");
    assert_eq!(coordinator, advertised, "FindCoordinator");

    let input: String = (0..1000).map(|i| format!("m{i}\n")).collect();
    let mut producer = Command::new("kcat");
    producer.args(["-b", &node.bootstrap(), "-P", "-t", "advertised", "-X", "acks=all"]);
    let mut child = producer.stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let consumed = run(Command::new("kcat").args(["-b", &node.bootstrap(), "-C", "-t", "advertised", "-e", "-q"]));
    assert_eq!(String::from_utf8(consumed.stdout).unwrap(), input);
    let output = run(python("confluent_roundtrip.py").args([&node.bootstrap(), "advertised-confluent", "2000"]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok:"));
    // The registration carries the advertised address, as Kafka's does.
    let registration = node.zk_cli(&["get", "/brokers/ids/1"]);
    let json: serde_json::Value = serde_json::from_slice(&registration.stdout).unwrap();
    assert_eq!((json["host"].as_str(), json["port"].as_u64()), (Some("127.0.0.2"), Some(u64::from(port))));
    assert_eq!(json["endpoints"], serde_json::json!([format!("PLAINTEXT://{advertised}")]));
}

/// Two nodes, each with an INTERNAL listener on 127.0.0.1 and an EXTERNAL one on 127.0.0.3:
/// a client is told every broker's address for the listener it connected through, by
/// Metadata, DescribeCluster and FindCoordinator alike; the registrations list both.
#[test]
fn named_listeners_each_answer_with_their_own_addresses() {
    let raft: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let peers = format!("1@127.0.0.1:{},2@127.0.0.1:{}", raft[0], raft[1]);
    let mut internal = HashMap::new();
    let mut external = HashMap::new();
    let mut nodes = Vec::new();
    for id in 1..=2 {
        let (i, e) = (loopback(1, free_port()), loopback(3, free_port()));
        internal.insert(id, i.to_string());
        external.insert(id, e.to_string());
        let mut node = Node::prepare(vec![
            "--node-id".into(),
            id.to_string(),
            "--peers".into(),
            peers.clone(),
            "--kafka-listeners".into(),
            format!("INTERNAL://{i},external://{e}"),
        ]);
        node.kafka = i;
        nodes.push(node);
    }
    for node in &mut nodes {
        node.launch(&[]);
    }
    let cluster = Cluster { nodes, links: HashMap::new() };
    cluster.wait_formed();
    let expect =
        |addrs: &HashMap<i32, String>| addrs.iter().map(|(id, a)| (*id, a.clone())).collect::<BTreeMap<_, _>>();
    for (n, node) in cluster.nodes.iter().enumerate() {
        for (listener, addrs) in [(node.kafka, &internal), (external[&(n as i32 + 1)].parse().unwrap(), &external)] {
            let (metadata, described, coordinator) = answers(listener);
            assert_eq!(metadata, expect(addrs), "Metadata through {listener}");
            assert_eq!(described, expect(addrs), "DescribeCluster through {listener}");
            assert!(addrs.values().any(|a| *a == coordinator), "FindCoordinator through {listener}: {coordinator}");
            let kcat: BTreeMap<i32, String> =
                kcat_brokers(&listener.to_string()).into_iter().map(|(id, a)| (id as i32, a)).collect();
            assert_eq!(kcat, expect(addrs), "kcat -L through {listener}");
        }
    }
    let registration = cluster.nodes[0].zk_cli(&["get", "/brokers/ids/2"]);
    let json: serde_json::Value = serde_json::from_slice(&registration.stdout).unwrap();
    assert_eq!(
        json["endpoints"],
        serde_json::json!([format!("INTERNAL://{}", internal[&2]), format!("EXTERNAL://{}", external[&2])])
    );
    assert_eq!(
        json["listener_security_protocol_map"],
        serde_json::json!({"INTERNAL": "PLAINTEXT", "EXTERNAL": "PLAINTEXT"})
    );
    assert_eq!(json["host"].as_str().map(|h| format!("{h}:{}", json["port"])), Some(internal[&2].clone()));
}

/// Bound to 0.0.0.0 with nothing advertised, a node tells clients this host's name (and says
/// so in its log), never the wildcard; its ZooKeeper server's envi shows that name too.
#[test]
fn a_wildcard_bind_is_never_advertised() {
    let (port, zk) = (free_port(), free_port());
    let mut node = Node::prepare(vec![
        "--kafka-addr".into(),
        format!("0.0.0.0:{port}"),
        "--zk-addr".into(),
        format!("0.0.0.0:{zk}"),
    ]);
    node.kafka = loopback(1, port);
    node.zk = loopback(1, zk);
    node.launch(&[]);
    let log = node.log();
    let warning = log.lines().find(|l| l.contains("has no advertised address")).unwrap_or_else(|| panic!("{log}"));
    let advertised = warning.split("advertised=").nth(1).unwrap().trim().to_owned();
    let host = advertised.rsplit_once(':').unwrap().0.to_owned();
    assert!(!host.is_empty() && host != "0.0.0.0" && host != "::", "{warning}");
    let (metadata, cluster, _) = answers(node.kafka);
    assert_eq!(metadata, BTreeMap::from([(1, format!("{host}:{port}"))]));
    assert_eq!(cluster, metadata);
    let registration = String::from_utf8(node.zk_cli(&["get", "/brokers/ids/1"]).stdout).unwrap();
    assert!(!registration.contains("0.0.0.0") && registration.contains(&host), "{registration}");
    let envi = four_letter(node.zk, "envi");
    assert!(envi.lines().any(|l| l == format!("host.name={host}")), "{envi}");
    assert!(!envi.contains("0.0.0.0"), "{envi}");
}

fn four_letter(addr: SocketAddr, word: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(word.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// `--bootstrap` and BRAID_BOOTSTRAP (and `braid zk --server`) take lists: a dead address
/// first does not stop a command, and when none answers the error names every one tried.
#[test]
fn the_cli_tries_each_address_until_one_answers() {
    let node = Node::start();
    let dead = loopback(1, free_port()).to_string();
    let listed = format!("{dead},{}", node.bootstrap());
    let out = node.cli(&["topic", "create", "listed", "--partitions", "2", "--bootstrap", &listed], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["topic", "describe", "listed"])
        .env("BRAID_BOOTSTRAP", &listed)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listed"));
    let out = node.cli(&["produce", "listed", "--partition", "1", "--bootstrap", &listed], Some(b"one\ntwo\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = node.cli(&["cluster", "status", "--bootstrap", &listed], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("broker 1 {}", node.bootstrap())));

    let other = loopback(1, free_port()).to_string();
    let out = node.cli(&["topic", "list", "--bootstrap", &format!("{dead},{other}")], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&dead) && stderr.contains(&other) && stderr.contains("no node answered"), "{stderr}");

    let zk_listed = format!("{dead},{}", node.zk);
    let out = node.cli(&["zk", "--server", &zk_listed, "create", "/listed", "x"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A chroot: paths are below it, and shown below it.
    let out = node.cli(&["zk", "--server", &format!("{zk_listed}/listed"), "create", "/child", "y"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/child", "{}", String::from_utf8_lossy(&out.stderr));
    let out = node.zk_cli(&["ls", "/listed"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[child]");
    let out = node.cli(&["zk", "--server", &format!("{dead},{other}"), "ls", "/"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&dead) && stderr.contains(&other), "{stderr}");
}

/// Three nodes whose --peers name each other `localhost`: the names are resolved when they
/// connect, and the cluster forms, elects a controller and replicates a topic.
#[test]
fn peers_given_by_host_name_form_a_cluster() {
    let raft: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = raft.iter().enumerate().map(|(i, port)| format!("{}@localhost:{port}", i + 1)).collect();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| Node::prepare(vec!["--node-id".into(), id.to_string(), "--peers".into(), peers.join(",")]))
        .collect();
    for node in &mut nodes {
        node.launch(&[]);
    }
    let cluster = Cluster { nodes, links: HashMap::new() };
    cluster.wait_formed();
    let out =
        cluster.nodes[0].cli(&["topic", "create", "named", "--partitions", "3", "--replication-factor", "3"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut cluster = cluster;
    for p in 0..3 {
        wait_for("a partition leader", || cluster.leader_of("named", p));
    }
    let out = cluster.nodes[1].cli(&["produce", "named", "--partition", "2"], Some(b"a\nb\nc\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let values: Vec<String> =
        stored_records(&cluster.nodes[2].bootstrap(), "named", 2).into_iter().map(|r| r.1).collect();
    assert_eq!(values, ["a", "b", "c"]);
}

/// stderr into a file: plain text, no colour codes; `--log-format json`: one JSON object per
/// line, the start-up line among them.
#[test]
fn logs_are_plain_text_in_a_file_and_json_lines_on_request() {
    let node = Node::start();
    let log = node.log();
    assert!(log.contains("braid node started"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
    drop(node);

    let mut node = Node::prepare(vec!["--log-format".into(), "json".into()]);
    node.launch(&[]);
    let log = node.log();
    let json_lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(!log.contains('\x1b'), "{log}");
    let started = json_lines.iter().find(|j| j["fields"]["message"] == "braid node started");
    let started = started.unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["fields"]["node_id"], 1);
}
