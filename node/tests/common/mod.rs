//! Black-box harness: a real `braid` process on loopback ports of its own, in a temporary data
//! directory, stopped (SIGKILL) when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a node may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound of every [`wait_for`]: past it the cluster has failed, not merely been slow.
pub const SETTLE: Duration = Duration::from_secs(90);

/// Waits (bounded by [`SETTLE`]) until `check` holds; returns what it found.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < SETTLE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port free right now, below the kernel's ephemeral range (32768 and up on Linux), so that
/// no outgoing connection or `bind(:0)` can take it between this call and the node's bind
/// (with many nodes and relays starting at once, an ephemeral pick was taken that way). Each
/// test process walks its own stretch of 20000..32000, starting from its pid.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub struct Node {
    pub child: Option<Child>,
    pub kafka: SocketAddr,
    pub admin: SocketAddr,
    /// The ZooKeeper client port.
    pub zk: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    log_path: PathBuf,
    /// Flags given at every (re)start.
    args: Vec<String>,
}

impl Node {
    pub fn start() -> Node {
        let mut node = Node::prepare(Vec::new());
        node.launch(&[]);
        node
    }

    /// A node with its own ports and directory, not started yet; `args` go to every start.
    pub fn prepare(args: Vec<String>) -> Node {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().join("data");
        Node {
            child: None,
            kafka: SocketAddr::from(([127, 0, 0, 1], free_port())),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            zk: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir,
            log_path: temp.path().join("node.log"),
            _temp: Some(temp),
            args,
        }
    }

    pub fn start_with(extra: &[&str]) -> Node {
        let mut node = Node::start();
        node.kill();
        node.launch(extra);
        node
    }

    pub fn bootstrap(&self) -> String {
        self.kafka.to_string()
    }

    /// Starts the node. Its Kafka and ZooKeeper listeners are on `kafka` and `zk` unless its
    /// flags set them (--kafka-addr, --kafka-listeners, --zk-addr): a test binding elsewhere
    /// (0.0.0.0, named listeners) sets `kafka` and `zk` to where the harness reaches them.
    pub fn launch(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let given = |flag: &str| self.args.iter().map(String::as_str).chain(extra.iter().copied()).any(|a| a == flag);
        let mut listeners = Vec::new();
        if !given("--kafka-addr") && !given("--kafka-listeners") {
            listeners.extend(["--kafka-addr".to_owned(), self.kafka.to_string()]);
        }
        if !given("--zk-addr") {
            listeners.extend(["--zk-addr".to_owned(), self.zk.to_string()]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args(["start", "--cores", "2", "--admin-addr", &self.admin.to_string()])
            .args(&listeners)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .args(extra)
            .env("BRAID_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn braid");
        self.child = Some(child);
        // Every listener: shards other than shard 0 bind their Kafka listeners while shard 0
        // is still opening the metadata store, before its ZooKeeper and admin listeners exist.
        let started = Instant::now();
        while [self.kafka, self.zk, self.admin].iter().any(|addr| TcpStream::connect(addr).is_err()) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("braid exited during start-up ({status}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "braid did not listen within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch(&[]);
    }

    /// SIGSTOP or SIGCONT.
    pub fn pause(&self, paused: bool) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// A partition replica's entry in this node's /v1/status, if it holds one.
    pub fn partition_status(&self, topic: &str, partition: i32) -> Option<serde_json::Value> {
        let status = self.status()?;
        status["partitions"].as_array()?.iter().find(|p| p["topic"] == topic && p["partition"] == partition).cloned()
    }

    /// Runs the braid CLI against this node.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args(args)
            .env("BRAID_BOOTSTRAP", self.bootstrap())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs `braid zk ARGS` against this node's ZooKeeper port.
    pub fn zk_cli(&self, args: &[&str]) -> Output {
        let server = self.zk.to_string();
        let mut all = vec!["zk", "--server", server.as_str()];
        all.extend_from_slice(args);
        self.cli(&all, None)
    }

    /// /v1/status as JSON, None if the node does not answer (stopped, or paused: 2 s timeout).
    pub fn status(&self) -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect_timeout(&self.admin, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(stream, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        serde_json::from_str(response.split("\r\n\r\n").nth(1)?).ok()
    }

    pub fn http_get(&self, path: &str) -> String {
        self.try_http_get(path).unwrap_or_else(|e| panic!("GET {path} from {}: {e}", self.admin))
    }

    /// The admin endpoint's answer to GET `path`, or why there is none (a node busy past the
    /// read timeout: a caller that waits for something asks again).
    pub fn try_http_get(&self, path: &str) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(self.admin)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- braid log ---\n{}", self.log());
        }
    }
}

/// Runs a command, failing the test with its output if it fails.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a client script from tests/clients, which must exit 0 and print "ok" (its checks
/// passed); fails the test with its output otherwise.
#[allow(dead_code)]
pub fn python_ok(script: &str, args: &[&str]) {
    let output = run(python(script).args(args));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.lines().any(|l| l.ends_with("ok")), "{script}: {text}{}", String::from_utf8_lossy(&output.stderr));
}

pub fn python(script: &str) -> Command {
    let mut command = Command::new("python3");
    command.arg(repo_root().join("tests/clients").join(script));
    command
}

/// The body of a Produce v3 request (acks 1, no transactional id) carrying `batch` to
/// partition 0 of `topic`.
pub fn produce_v3_body(topic: &str, timeout_ms: i32, batch: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&timeout_ms.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(batch);
    body
}

/// Lines of a command's stdout.
pub fn lines(output: &Output) -> Vec<String> {
    BufReader::new(&output.stdout[..]).lines().map(Result::unwrap).collect()
}

/// The "partition offset value" lines a client script wrote for what it was acknowledged
/// (tests/clients/acked_producer.py), by partition, in the order written.
pub fn acked_by_partition(acked: &str) -> std::collections::BTreeMap<i32, Vec<(i64, String)>> {
    let mut by_partition: std::collections::BTreeMap<i32, Vec<(i64, String)>> = Default::default();
    for line in acked.lines() {
        let mut parts = line.splitn(3, ' ');
        let partition: i32 = parts.next().unwrap().parse().unwrap();
        let offset: i64 = parts.next().unwrap().parse().unwrap();
        by_partition.entry(partition).or_default().push((offset, parts.next().unwrap().to_owned()));
    }
    by_partition
}

/// Every record of a partition as (offset, value), read from the start with kcat.
pub fn stored_records(bootstrap: &str, topic: &str, partition: i32) -> Vec<(i64, String)> {
    let output = run(Command::new("kcat").args([
        "-b",
        bootstrap,
        "-C",
        "-t",
        topic,
        "-p",
        &partition.to_string(),
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%o %s\\n",
    ]));
    lines(&output)
        .into_iter()
        .map(|l| {
            let (offset, value) = l.split_once(' ').unwrap();
            (offset.parse().unwrap(), value.to_owned())
        })
        .collect()
}

/// A TCP relay between two nodes' raft endpoints that can be cut: a cut closes the relayed
/// connections and refuses new ones until it is mended.
pub struct Link {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    pub fn start(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, streams2) = (Arc::clone(&cut), Arc::clone(&streams));
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                let Ok(inbound) = incoming else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(target) else { continue };
                let mut all = streams2.lock().unwrap();
                all.retain(|s: &TcpStream| s.peer_addr().is_ok());
                all.push(inbound.try_clone().unwrap());
                all.push(outbound.try_clone().unwrap());
                drop(all);
                for (mut from, mut to) in
                    [(inbound.try_clone().unwrap(), outbound.try_clone().unwrap()), (outbound, inbound)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Link { addr, cut, streams }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for s in self.streams.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// N real nodes on loopback forming one cluster; node i's raft traffic to node j goes through
/// `links[(i, j)]`, so the links of one node can be cut.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub links: HashMap<(usize, usize), Link>,
}

impl Cluster {
    /// N nodes started and formed (every node knows the controller and every broker).
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let cluster = Cluster::launch(n, extra);
        cluster.wait_formed();
        cluster
    }

    /// N nodes started, without waiting for anything but their listening sockets (a client
    /// arriving while the nodes start).
    pub fn launch(n: usize, extra: &[&str]) -> Cluster {
        let raft: Vec<SocketAddr> = (0..n).map(|_| SocketAddr::from(([127, 0, 0, 1], free_port()))).collect();
        let mut links = HashMap::new();
        for i in 0..n {
            for (j, target) in raft.iter().enumerate() {
                if i != j {
                    links.insert((i, j), Link::start(*target));
                }
            }
        }
        let mut nodes = Vec::new();
        for i in 0..n {
            let peers: Vec<String> =
                (0..n).map(|j| format!("{}@{}", j + 1, if i == j { raft[j] } else { links[&(i, j)].addr })).collect();
            let mut args = vec!["--node-id".to_owned(), (i + 1).to_string(), "--peers".to_owned(), peers.join(",")];
            args.extend(extra.iter().map(|s| s.to_string()));
            nodes.push(Node::prepare(args));
        }
        for node in &mut nodes {
            node.launch(&[]);
        }
        Cluster { nodes, links }
    }

    /// Waits (bounded) until every node serves clients, knowing the controller and every
    /// broker: what a client looks up first.
    pub fn wait_formed(&self) {
        let started = Instant::now();
        loop {
            let formed = self.nodes.iter().all(|node| {
                node.status().is_some_and(|s| {
                    s["serving"] == true
                        && s["controller"].is_i64()
                        && s["brokers"].as_object().is_some_and(|b| b.len() == self.nodes.len())
                })
            });
            if formed {
                return;
            }
            assert!(started.elapsed() < START_TIMEOUT, "the cluster did not form within {START_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.kafka.to_string()).collect::<Vec<_>>().join(",")
    }

    /// The ZooKeeper connect string of every node.
    pub fn zk_hosts(&self) -> String {
        self.nodes.iter().map(|n| n.zk.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Cuts (or mends) every link to and from node `i`.
    pub fn isolate(&self, i: usize, cut: bool) {
        for ((from, to), link) in &self.links {
            if *from == i || *to == i {
                link.set_cut(cut);
            }
        }
    }

    /// The node that says it leads `topic`/`partition` (asking the running nodes' status).
    pub fn leader_of(&mut self, topic: &str, partition: i32) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive() {
                continue;
            }
            let Some(status) = self.nodes[i].status() else { continue };
            let leads = status["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["topic"] == topic && p["partition"] == partition && p["leader"] == (i as i64 + 1));
            if leads {
                return Some(i);
            }
        }
        None
    }
}
