//! Black-box harness: a real `braid` process on loopback ports of its own, in a temporary data
//! directory, stopped (SIGKILL) when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub struct Node {
    pub child: Option<Child>,
    pub kafka: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    log_path: PathBuf,
}

impl Node {
    pub fn start() -> Node {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().join("data");
        let mut node = Node {
            child: None,
            kafka: SocketAddr::from(([127, 0, 0, 1], free_port())),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir,
            log_path: temp.path().join("node.log"),
            _temp: Some(temp),
        };
        node.launch(&[]);
        node
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

    fn launch(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args([
                "start",
                "--cores",
                "2",
                "--kafka-addr",
                &self.kafka.to_string(),
                "--admin-addr",
                &self.admin.to_string(),
            ])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(extra)
            .env("BRAID_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn braid");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(self.kafka).is_err() {
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

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
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

    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(self.admin).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
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

pub fn python(script: &str) -> Command {
    let mut command = Command::new("python3");
    command.arg(repo_root().join("tests/clients").join(script));
    command
}

/// Lines of a command's stdout.
pub fn lines(output: &Output) -> Vec<String> {
    BufReader::new(&output.stdout[..]).lines().map(Result::unwrap).collect()
}
