//! `braid bench zk`: a ZooKeeper-protocol load generator speaking jute natively.
//!
//! `--sessions` sessions, spread in turn over `--servers`, each keeping up to `--in-flight`
//! requests outstanding, issue creates, setData, getData and exists in the proportions of
//! `--mix`, at most `--rate` ops/s in all (0: as fast as the answers come), for `--ops`
//! operations or `--seconds`. set, get and exists pick one of `--keys` znodes of `--data-bytes`
//! bytes, made under /braid-bench/<pid>/k before the clock starts; creates make new znodes
//! under /braid-bench/<pid>/c. Everything made is deleted after the run. `--watchers` more
//! sessions keep a data watch on every key, set again on each event, which measures watch
//! fan-out: each setData's data starts with its number, so the getData that sets a watch again
//! tells which write the next event follows, and the event's latency counts from the send of
//! the first write numbered after it. Request latency goes into one hdrhistogram per op type: from the send, or with a
//! rate from the time the op was due, so a server that falls behind is charged for the wait
//! (an op its session slept for counts from its send: the timer's lateness is the client's).
//! The run prints a progress line every second on stderr, then writes/s, reads/s and
//! p50/p90/p99/p999/max per op, and with `--json FILE` the same as JSON, with the percentile
//! curve of each histogram for `perf/plot-latency.py`.
//!
//! The client is one thread (a current-thread tokio runtime): every session is a future on it,
//! so the counters and histograms are plain cells, and the machine's other cores stay with the
//! servers measured.

use super::histogram;
use crate::zk::jute::{
    err, op, read_reply_header, Acl, ConnectRequest, ConnectResponse, Op, Reader, Request, Writer, MAX_FRAME_BYTES,
    REPLY_HEADER_BYTES,
};
use anyhow::{bail, Context};
use braid_engine::rng::SimRng;
use bytes::{Buf, BytesMut};
use clap::Args;
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

#[derive(Args, Debug)]
pub struct ZkBench {
    /// ZooKeeper servers, host:port,...; sessions are spread over them in turn.
    #[arg(long, default_value = "127.0.0.1:2181")]
    servers: String,
    /// Sessions issuing the load (one connection each).
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Requests pipelined per session (1: one outstanding request, as most clients do).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Operations in all [default: 100000, or no limit with --seconds].
    #[arg(long)]
    ops: Option<u64>,
    /// Stop after this long (0: until --ops).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Operations per second in all (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Weights of the operations, e.g. set=1 (write-heavy) or get=9,set=1 (read-heavy); names:
    /// create, set, get, exists.
    #[arg(long, default_value = "set=1")]
    mix: String,
    /// Bytes of data per znode written.
    #[arg(long, default_value_t = 100)]
    data_bytes: usize,
    /// Znodes that set, get and exists pick from.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Extra sessions keeping a data watch on every key (watch fan-out).
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// Session timeout asked of the servers.
    #[arg(long, default_value_t = 30_000)]
    session_timeout_ms: i32,
    /// A name for this run in the JSON (plots use it for the curve).
    #[arg(long)]
    label: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Requests outstanding per session while the znodes are made and deleted (outside the clock).
const SETUP_IN_FLIGHT: usize = 128;
/// Writes per key remembered for watch latency (older ones cannot have fired a current watch).
const SETS_REMEMBERED_PER_KEY: usize = 32;
/// After the last op is answered, watchers wait this long for a quiet moment...
const WATCH_QUIET: Duration = Duration::from_millis(300);
/// ...but no longer than this.
const WATCH_DRAIN_MAX: Duration = Duration::from_secs(3);
/// ZooKeeper's event type for a data change (Watcher.Event.EventType.NodeDataChanged).
const EVENT_DATA_CHANGED: i32 = 3;
const XID_WATCH_EVENT: i32 = -1;
const XID_PING: i32 = -2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Set,
    Get,
    Exists,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Create, Kind::Set, Kind::Get, Kind::Exists];

    fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Set => "set",
            Kind::Get => "get",
            Kind::Exists => "exists",
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Kind::Create | Kind::Set)
    }
}

/// `create=1,set=2,...` as a weight per kind (in `Kind::ALL` order).
fn parse_mix(mix: &str) -> anyhow::Result<[u64; 4]> {
    let mut weights = [0u64; 4];
    for part in mix.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let at = Kind::ALL
            .iter()
            .position(|k| k.name() == name.trim())
            .with_context(|| format!("--mix: unknown op {name:?} (create, set, get, exists)"))?;
        weights[at] = weight.trim().parse().with_context(|| format!("--mix: bad weight in {part:?}"))?;
    }
    if weights.iter().sum::<u64>() == 0 {
        bail!("--mix {mix:?} gives no op a weight");
    }
    Ok(weights)
}

/// One session: its connection and the frames read but not yet taken.
struct Session {
    server: String,
    id: i64,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    inbox: BytesMut,
    next_xid: i32,
    last_sent: Instant,
}

/// A reply or an event: the ReplyHeader and what follows it.
struct Frame {
    xid: i32,
    code: i32,
    body: Vec<u8>,
}

impl Session {
    async fn connect(server: &str, timeout_ms: i32) -> anyhow::Result<Session> {
        let stream = TcpStream::connect(server).await.with_context(|| format!("connecting to {server}"))?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let mut session = Session {
            server: server.to_owned(),
            id: 0,
            reader,
            writer,
            inbox: BytesMut::with_capacity(64 * 1024),
            next_xid: 1,
            last_sent: Instant::now(),
        };
        let mut w = Writer::default();
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms,
            session_id: 0,
            password: vec![0; 16],
            read_only: Some(false),
        }
        .encode(&mut w);
        session.writer.write_all(&w.frame()).await?;
        let response = ConnectResponse::decode(&session.next_body().await?)?;
        if response.timeout_ms <= 0 {
            bail!("{server} refused the session (negotiated timeout {} ms)", response.timeout_ms);
        }
        session.id = response.session_id;
        Ok(session)
    }

    /// A whole frame's body from what was read already, if there is one.
    fn take_body(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        if self.inbox.len() < 4 {
            return Ok(None);
        }
        let length = i32::from_be_bytes(self.inbox[..4].try_into().expect("4 bytes"));
        let length = usize::try_from(length)
            .ok()
            .filter(|&n| n <= MAX_FRAME_BYTES)
            .with_context(|| format!("{} sent a frame of length {length}", self.server))?;
        if self.inbox.len() < 4 + length {
            return Ok(None);
        }
        self.inbox.advance(4);
        Ok(Some(self.inbox.split_to(length).to_vec()))
    }

    /// The next frame's body. Cancel-safe: what was read stays in the inbox.
    async fn next_body(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(body) = self.take_body()? {
                return Ok(body);
            }
            let read = self.reader.read_buf(&mut self.inbox).await;
            match read {
                Ok(0) => bail!("{} closed the connection of session 0x{:x}", self.server, self.id),
                Ok(_) => {}
                Err(e) => bail!("connection of session 0x{:x} to {} failed: {e}", self.id, self.server),
            }
        }
    }

    fn frame(body: Vec<u8>) -> anyhow::Result<Frame> {
        let (xid, _zxid, code) = read_reply_header(&mut Reader::new(&body))?;
        Ok(Frame { xid, code, body: body[REPLY_HEADER_BYTES..].to_vec() })
    }

    async fn next_frame(&mut self) -> anyhow::Result<Frame> {
        Self::frame(self.next_body().await?)
    }

    /// The next frame if it was read already (no waiting).
    fn ready_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        self.take_body()?.map(Self::frame).transpose()
    }

    /// Adds a request to `out` and gives its xid.
    fn encode(&mut self, op: Op, out: &mut Vec<u8>) -> i32 {
        let xid = self.next_xid;
        self.next_xid += 1;
        let mut w = Writer::default();
        Request { xid, op }.encode(&mut w);
        out.extend_from_slice(&w.frame());
        xid
    }

    async fn send(&mut self, out: &[u8]) -> anyhow::Result<()> {
        self.writer
            .write_all(out)
            .await
            .with_context(|| format!("sending to {} on session 0x{:x}", self.server, self.id))?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Sends a ping if nothing went out for a third of the session timeout.
    async fn keep_alive(&mut self, timeout_ms: i32) -> anyhow::Result<()> {
        if self.last_sent.elapsed() > Duration::from_millis(timeout_ms as u64 / 3) {
            let mut w = Writer::default();
            Request { xid: XID_PING, op: Op::Ping }.encode(&mut w);
            self.send(&w.frame()).await?;
        }
        Ok(())
    }

    /// Runs `ops` with up to `depth` outstanding; gives each op's answer, in order.
    async fn pipeline(&mut self, ops: Vec<Op>, depth: usize) -> anyhow::Result<Vec<Frame>> {
        let mut answers = Vec::with_capacity(ops.len());
        let mut pending = VecDeque::new();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() || !pending.is_empty() {
            let mut out = Vec::new();
            while pending.len() < depth {
                let Some(op) = ops.next() else { break };
                pending.push_back(self.encode(op, &mut out));
            }
            if !out.is_empty() {
                self.send(&out).await?;
            }
            let frame = self.next_frame().await?;
            if frame.xid == XID_WATCH_EVENT || frame.xid == XID_PING {
                continue;
            }
            let expected = pending.pop_front().context("a reply with nothing outstanding")?;
            if frame.xid != expected {
                bail!("{}: reply xid {} where {expected} was next", self.server, frame.xid);
            }
            answers.push(frame);
        }
        Ok(answers)
    }

    /// Ends the session (closeSession), waiting for its answer.
    async fn close(mut self) -> anyhow::Result<()> {
        let mut out = Vec::new();
        let xid = self.encode(Op::CloseSession, &mut out);
        self.send(&out).await?;
        while self.next_frame().await?.xid != xid {}
        Ok(())
    }
}

/// Latency and error count of one kind of op.
struct OpStats {
    latency_us: Histogram<u64>,
    errors: BTreeMap<i32, u64>,
}

/// One setData on a key, for the latency of the watch event it fires.
struct SetSent {
    seq: u64,
    sent: Instant,
}

/// The setData sequence number stamped at the start of a key's data (0: none yet).
fn stamp_of(data: &[u8]) -> u64 {
    data.get(..8).map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

/// Everything the sessions of one run share (one thread: plain cells).
struct Load {
    started: Cell<Instant>,
    deadline: Cell<Option<Instant>>,
    ops_limit: u64,
    rate: f64,
    seconds: u64,
    weights: [u64; 4],
    rng: RefCell<SimRng>,
    claimed: Cell<u64>,
    /// When the last session finished its ops.
    finished: Cell<Option<Instant>>,
    keys: Vec<String>,
    created_prefix: String,
    data: Vec<u8>,
    acl: Vec<Acl>,
    by_kind: RefCell<Vec<OpStats>>,
    all_us: RefCell<Histogram<u64>>,
    /// Per key, the recent setData (sequence number, send time).
    sets: RefCell<Vec<VecDeque<SetSent>>>,
    next_set_seq: Cell<u64>,
    /// Numbers of the znodes creates made, for the cleanup.
    created: RefCell<Vec<u64>>,
    events: Cell<u64>,
    last_event: Cell<Instant>,
    event_us: RefCell<Histogram<u64>>,
    rearm_errors: Cell<u64>,
    /// Requests that were answered (progress line).
    answered: Cell<u64>,
    writes: Cell<u64>,
    reads: Cell<u64>,
}

/// An op claimed by a session: what, on which key, and when it is due.
struct Claim {
    number: u64,
    kind: Kind,
    key: usize,
    due: Instant,
}

/// A request sent and not yet answered.
struct Pending {
    xid: i32,
    kind: Kind,
    /// Latency counts from here: the send, or with a rate the time the op was due.
    from: Instant,
    number: u64,
}

impl Load {
    /// The next op to run, or None when the run is over.
    fn claim(&self) -> Option<Claim> {
        let number = self.claimed.get();
        let now = Instant::now();
        if number >= self.ops_limit || self.deadline.get().is_some_and(|d| now >= d) {
            return None;
        }
        let due = if self.rate > 0.0 {
            let due = self.started.get() + Duration::from_secs_f64(number as f64 / self.rate);
            if self.deadline.get().is_some_and(|d| due >= d) {
                return None;
            }
            due
        } else {
            now
        };
        self.claimed.set(number + 1);
        let mut rng = self.rng.borrow_mut();
        let mut pick = rng.below(self.weights.iter().sum());
        let mut kind = Kind::Create;
        for (k, &w) in Kind::ALL.iter().zip(&self.weights) {
            if pick < w {
                kind = *k;
                break;
            }
            pick -= w;
        }
        let key = rng.below(self.keys.len() as u64) as usize;
        Some(Claim { number, kind, key, due })
    }

    /// The op of a claim; a setData's data starts with its sequence number, `set_seq`.
    fn op(&self, claim: &Claim, set_seq: u64) -> Op {
        let key = self.keys[claim.key].clone();
        match claim.kind {
            Kind::Create => Op::Create {
                op: op::CREATE,
                path: format!("{}{}", self.created_prefix, claim.number),
                data: self.data.clone(),
                acl: self.acl.clone(),
                flags: 0,
                ttl: None,
            },
            Kind::Set => {
                let mut data = self.data.clone();
                if data.len() >= 8 {
                    data[..8].copy_from_slice(&set_seq.to_be_bytes());
                }
                Op::SetData { path: key, data, version: -1 }
            }
            Kind::Get => Op::GetData { path: key, watch: false },
            Kind::Exists => Op::Exists { path: key, watch: false },
        }
    }

    /// Numbers a setData on `key` and remembers when it went out.
    fn set_sent(&self, key: usize, sent: Instant) -> u64 {
        let seq = self.next_set_seq.get() + 1;
        self.next_set_seq.set(seq);
        let mut sets = self.sets.borrow_mut();
        let log = &mut sets[key];
        if log.len() == SETS_REMEMBERED_PER_KEY {
            log.pop_front();
        }
        log.push_back(SetSent { seq, sent });
        seq
    }

    fn answered(&self, pending: &Pending, code: i32) {
        let now = Instant::now();
        let latency = now.saturating_duration_since(pending.from).as_micros() as u64;
        self.answered.set(self.answered.get() + 1);
        let mut by_kind = self.by_kind.borrow_mut();
        let stats = &mut by_kind[Kind::ALL.iter().position(|k| *k == pending.kind).expect("a kind")];
        if code != err::OK {
            *stats.errors.entry(code).or_default() += 1;
            return;
        }
        stats.latency_us.saturating_record(latency);
        self.all_us.borrow_mut().saturating_record(latency);
        if pending.kind.is_write() {
            self.writes.set(self.writes.get() + 1);
        } else {
            self.reads.set(self.reads.get() + 1);
        }
        match pending.kind {
            Kind::Create => self.created.borrow_mut().push(pending.number),
            Kind::Set | Kind::Get | Kind::Exists => {}
        }
    }

    /// A data-changed event on `key`, whose watch was set when the key's data bore the stamp
    /// `armed`: the write that fired it is the first applied after that one, so its latency
    /// counts from the earliest send among the setData numbered after `armed`.
    fn event(&self, key: usize, armed: u64) {
        let now = Instant::now();
        self.events.set(self.events.get() + 1);
        self.last_event.set(now);
        let sets = self.sets.borrow();
        let cause = sets[key].iter().filter(|s| s.seq > armed).map(|s| s.sent).min();
        if let Some(sent) = cause {
            self.event_us.borrow_mut().saturating_record(now.duration_since(sent).as_micros() as u64);
        }
    }
}

/// One load session: claims ops, keeps up to `depth` outstanding, until the run is over.
async fn drive(session: &mut Session, load: &Load, depth: usize, timeout_ms: i32) -> anyhow::Result<()> {
    let mut pending: VecDeque<Pending> = VecDeque::with_capacity(depth);
    let mut next: Option<Claim> = None;
    let mut over = false;
    // The session slept until `next` was due: the timer's lateness (up to a millisecond) is the
    // client's, so that op's latency counts from its send.
    let mut timer_woke = false;
    loop {
        let mut out = Vec::new();
        while pending.len() < depth && !over {
            let (claim, waited) = match next.take() {
                Some(claim) => (claim, true),
                None => match load.claim() {
                    Some(claim) => (claim, false),
                    None => {
                        over = true;
                        break;
                    }
                },
            };
            let now = Instant::now();
            if claim.due > now {
                next = Some(claim);
                break;
            }
            let set_seq = if claim.kind == Kind::Set { load.set_sent(claim.key, now) } else { 0 };
            let xid = session.encode(load.op(&claim, set_seq), &mut out);
            let from = if load.rate > 0.0 && !(waited && timer_woke) { claim.due } else { now };
            pending.push_back(Pending { xid, kind: claim.kind, from, number: claim.number });
        }
        timer_woke = false;
        if !out.is_empty() {
            session.send(&out).await?;
        }
        if pending.is_empty() && next.is_none() && over {
            return Ok(());
        }
        let wake = next.as_ref().map(|c| c.due).filter(|_| pending.len() < depth);
        let ping = session.last_sent + Duration::from_millis(timeout_ms as u64 / 3);
        tokio::select! {
            frame = session.next_frame() => {
                // This reply and every other one read with it: the requests that replace them
                // go out together, in one write.
                let mut frame = Some(frame?);
                while let Some(f) = frame {
                    if f.xid != XID_WATCH_EVENT && f.xid != XID_PING {
                        let p = pending.pop_front().with_context(|| format!("{}: a reply with nothing outstanding", session.server))?;
                        if f.xid != p.xid {
                            bail!("{}: reply xid {} where {} was next (replies out of order)", session.server, f.xid, p.xid);
                        }
                        load.answered(&p, f.code);
                    }
                    frame = session.ready_frame()?;
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(ping).into()) => {
                timer_woke = wake.is_some();
                session.keep_alive(timeout_ms).await?;
            }
        }
    }
}

/// One watcher session: a data watch on every key, set again on each event, until the load
/// sessions are done and the events have stopped coming. `armed` holds, per key, the stamp of
/// the data its watch was set on.
async fn watch(session: &mut Session, load: &Load, armed: &mut [u64], timeout_ms: i32) -> anyhow::Result<()> {
    let prefix = format!("{}/", load.keys[0].rsplit_once('/').map_or("", |(p, _)| p));
    // The getData sent to set watches again, in order: (xid, key).
    let mut rearming: VecDeque<(i32, usize)> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            frame = session.next_frame() => {
                let frame = frame?;
                match frame.xid {
                    XID_WATCH_EVENT => {
                        let mut r = Reader::new(&frame.body);
                        let (kind, _state, path) = (r.int()?, r.int()?, r.string()?);
                        let key = path.strip_prefix(&prefix).and_then(|k| k.parse::<usize>().ok());
                        if let (EVENT_DATA_CHANGED, Some(key)) = (kind, key.filter(|&k| k < armed.len())) {
                            load.event(key, armed[key]);
                            let mut out = Vec::new();
                            rearming.push_back((session.encode(Op::GetData { path, watch: true }, &mut out), key));
                            session.send(&out).await?;
                        }
                    }
                    XID_PING => {}
                    xid => {
                        let (expected, key) = rearming.pop_front().context("a reply with nothing outstanding")?;
                        if xid != expected {
                            bail!("{}: reply xid {xid} where {expected} was next (replies out of order)", session.server);
                        }
                        if frame.code == err::OK {
                            armed[key] = stamp_of(&Reader::new(&frame.body).buffer()?.unwrap_or_default());
                        } else {
                            load.rearm_errors.set(load.rearm_errors.get() + 1);
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if let Some(finished) = load.finished.get() {
                    let quiet = load.last_event.get().max(finished).elapsed() >= WATCH_QUIET;
                    if quiet || finished.elapsed() >= WATCH_DRAIN_MAX {
                        return Ok(());
                    }
                }
                session.keep_alive(timeout_ms).await?;
            }
        }
    }
}

/// Prints a progress line every second; never ends (the run drops it).
async fn progress(load: &Load) {
    let mut last = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (writes, reads, events) = (load.writes.get(), load.reads.get(), load.events.get());
        let errors: u64 = load.by_kind.borrow().iter().flat_map(|s| s.errors.values()).sum();
        let p99 = load.all_us.borrow().value_at_quantile(0.99);
        eprintln!(
            "{:>4.0} s  {:>10} ops  {:>8} writes/s  {:>8} reads/s  p99 {} us  errors {}{}",
            load.started.get().elapsed().as_secs_f64(),
            load.answered.get(),
            writes - last.0,
            reads - last.1,
            p99,
            errors,
            if events > 0 { format!("  events/s {}", events - last.2) } else { String::new() }
        );
        last = (writes, reads, events);
    }
}

/// Latency figures (µs) of a histogram, with its percentile curve as [percentile, µs] points.
fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
    let curve: Vec<(f64, u64)> = if h.is_empty() {
        Vec::new()
    } else {
        h.iter_quantiles(5).map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to())).collect()
    };
    serde_json::json!({
        "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": h.max(),
        "samples": h.len(), "percentiles": curve,
    })
}

fn latency_line(h: &Histogram<u64>) -> String {
    let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
    format!("p50 {} p90 {} p99 {} p999 {} max {}", q(0.5), q(0.9), q(0.99), q(0.999), h.max())
}

/// Prints the summary and gives it as JSON.
fn summary(args: &ZkBench, load: &Load, elapsed: Duration) -> serde_json::Value {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let (writes, reads) = (load.writes.get(), load.reads.get());
    let by_kind = load.by_kind.borrow();
    let errors: u64 = by_kind.iter().flat_map(|s| s.errors.values()).sum();
    println!(
        "zk: {} ops in {secs:.2} s: {:.0} writes/s, {:.0} reads/s ({} sessions on {} server(s), {} in flight each, mix {}); errors {errors}",
        writes + reads,
        writes as f64 / secs,
        reads as f64 / secs,
        args.sessions,
        args.servers.split(',').count(),
        args.in_flight,
        args.mix,
    );
    let mut ops = serde_json::Map::new();
    for (kind, stats) in Kind::ALL.iter().zip(by_kind.iter()) {
        let failed: u64 = stats.errors.values().sum();
        if stats.latency_us.is_empty() && failed == 0 {
            continue;
        }
        let count = stats.latency_us.len();
        println!(
            "  {:<7} {count:>9} ops {:>9.0}/s  latency us: {}{}",
            kind.name(),
            count as f64 / secs,
            latency_line(&stats.latency_us),
            if failed > 0 { format!("  errors {:?}", stats.errors) } else { String::new() }
        );
        let codes: serde_json::Map<_, _> = stats.errors.iter().map(|(c, n)| (c.to_string(), (*n).into())).collect();
        ops.insert(
            kind.name().into(),
            serde_json::json!({
                "ops": count, "per_s": count as f64 / secs, "errors": failed, "error_codes": codes,
                "latency_us": latency_json(&stats.latency_us),
            }),
        );
    }
    println!("  all     latency us: {}", latency_line(&load.all_us.borrow()));
    let events = load.events.get();
    if args.watchers > 0 {
        println!(
            "  watch   {events:>9} events {:>9.0}/s  latency us (from the setData's send): {}; re-arm errors {}",
            events as f64 / secs,
            latency_line(&load.event_us.borrow()),
            load.rearm_errors.get()
        );
    }
    let label = args.label.clone().unwrap_or_else(|| format!("zk {}", args.mix));
    serde_json::json!({
        "what": "zk", "label": label, "seconds": secs,
        "ops": writes + reads, "writes": writes, "reads": reads, "errors": errors,
        "ops_per_s": (writes + reads) as f64 / secs,
        "writes_per_s": writes as f64 / secs, "reads_per_s": reads as f64 / secs,
        "latency_us": latency_json(&load.all_us.borrow()),
        "by_op": ops,
        "watch": {
            "watchers": args.watchers, "events": events, "events_per_s": events as f64 / secs,
            "rearm_errors": load.rearm_errors.get(), "latency_us": latency_json(&load.event_us.borrow()),
        },
        "config": {
            "servers": args.servers, "sessions": args.sessions, "in_flight": args.in_flight,
            "ops": args.ops, "seconds": args.seconds, "rate": args.rate, "mix": args.mix,
            "data_bytes": args.data_bytes, "keys": args.keys, "watchers": args.watchers,
        },
    })
}

/// Runs `ops` spread over `sessions`, `SETUP_IN_FLIGHT` outstanding on each; gives the answers.
async fn spread(sessions: &mut [Session], ops: Vec<Op>) -> anyhow::Result<Vec<Frame>> {
    let per = ops.len().div_ceil(sessions.len().max(1)).max(1);
    let mut chunks: Vec<Vec<Op>> = Vec::new();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        chunks.push(ops.by_ref().take(per).collect());
    }
    let runs = sessions.iter_mut().zip(chunks).map(|(s, chunk)| s.pipeline(chunk, SETUP_IN_FLIGHT));
    Ok(futures::future::try_join_all(runs).await?.into_iter().flatten().collect())
}

/// The shared state of a run, before its clock starts.
fn new_load(args: &ZkBench, base: &str, weights: [u64; 4], ops_limit: u64) -> Load {
    Load {
        started: Cell::new(Instant::now()),
        deadline: Cell::new(None),
        ops_limit,
        rate: args.rate as f64,
        seconds: args.seconds,
        weights,
        rng: RefCell::new(SimRng::new(std::process::id() as u64)),
        claimed: Cell::new(0),
        finished: Cell::new(None),
        keys: (0..args.keys).map(|i| format!("{base}/k/{i}")).collect(),
        created_prefix: format!("{base}/c/"),
        // Stamp 0 (no setData yet), then filler.
        data: (0..args.data_bytes).map(|i| if i < 8 { 0 } else { b'x' }).collect(),
        acl: vec![Acl { perms: 31, scheme: "world".into(), id: "anyone".into() }],
        by_kind: RefCell::new(
            (0..Kind::ALL.len()).map(|_| OpStats { latency_us: histogram(), errors: BTreeMap::new() }).collect(),
        ),
        all_us: RefCell::new(histogram()),
        sets: RefCell::new((0..args.keys).map(|_| VecDeque::new()).collect()),
        next_set_seq: Cell::new(0),
        created: RefCell::new(Vec::new()),
        events: Cell::new(0),
        last_event: Cell::new(Instant::now()),
        event_us: RefCell::new(histogram()),
        rearm_errors: Cell::new(0),
        answered: Cell::new(0),
        writes: Cell::new(0),
        reads: Cell::new(0),
    }
}

/// The bench's directories under `base`, parents first.
fn bench_dirs(base: &str) -> [String; 4] {
    ["/braid-bench".to_owned(), base.to_owned(), format!("{base}/k"), format!("{base}/c")]
}

/// The znodes, before the clock starts (an existing one is fine: a reused pid), seen by every
/// session's server; then each watcher's watches, with the stamp each key had.
async fn prepare(
    sessions: &mut [Session],
    watchers: &mut [Session],
    load: &Load,
    base: &str,
) -> anyhow::Result<Vec<Vec<u64>>> {
    let create = |path: String| Op::Create {
        op: op::CREATE,
        path,
        data: load.data.clone(),
        acl: load.acl.clone(),
        flags: 0,
        ttl: None,
    };
    let answers = sessions[0].pipeline(bench_dirs(base).into_iter().map(create).collect(), 1).await?;
    let answers = answers.into_iter().chain(spread(sessions, load.keys.iter().cloned().map(create).collect()).await?);
    if let Some(code) = answers.map(|a| a.code).find(|&c| c != err::OK && c != err::NODE_EXISTS) {
        bail!("making the bench's znodes under {base}: error {code}");
    }
    // Every session's server has seen them (a follower may lag the session that made them).
    let syncs =
        sessions.iter_mut().chain(watchers.iter_mut()).map(|s| s.pipeline(vec![Op::Sync { path: base.to_owned() }], 1));
    futures::future::try_join_all(syncs).await?;
    let mut armed = vec![vec![0u64; load.keys.len()]; watchers.len()];
    for (w, armed) in watchers.iter_mut().zip(armed.iter_mut()) {
        let ops = load.keys.iter().map(|k| Op::GetData { path: k.clone(), watch: true }).collect();
        for (answer, stamp) in w.pipeline(ops, SETUP_IN_FLIGHT).await?.into_iter().zip(armed.iter_mut()) {
            if answer.code != err::OK {
                bail!("setting the watches: error {}", answer.code);
            }
            *stamp = stamp_of(&Reader::new(&answer.body).buffer()?.unwrap_or_default());
        }
    }
    Ok(armed)
}

/// Cleanup: the created znodes, the keys, the directories (children first).
async fn clean_up(mut sessions: Vec<Session>, watchers: Vec<Session>, load: &Load, base: &str) -> anyhow::Result<()> {
    let mut deletes: Vec<Op> = load
        .created
        .borrow()
        .iter()
        .map(|n| Op::Delete { op: op::DELETE, path: format!("{}{n}", load.created_prefix), version: -1 })
        .collect();
    deletes.extend(load.keys.iter().map(|k| Op::Delete { op: op::DELETE, path: k.clone(), version: -1 }));
    futures::future::try_join_all(watchers.into_iter().map(Session::close)).await?;
    spread(&mut sessions, deletes).await?;
    let dirs =
        bench_dirs(base).into_iter().rev().map(|d| Op::Delete { op: op::DELETE, path: d, version: -1 }).collect();
    // /braid-bench stays if another run is using it (NOT_EMPTY).
    sessions[0].pipeline(dirs, 1).await?;
    futures::future::try_join_all(sessions.into_iter().map(Session::close)).await?;
    Ok(())
}

/// The whole run on one thread: sessions, znodes, load, summary, cleanup.
async fn bench(args: ZkBench) -> anyhow::Result<()> {
    let servers: Vec<&str> = args.servers.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if servers.is_empty() || args.sessions == 0 || args.in_flight == 0 || args.keys == 0 {
        bail!("--servers, --sessions, --in-flight and --keys must each be at least one");
    }
    if args.watchers > 0 && args.data_bytes < 8 {
        bail!("--watchers needs --data-bytes of at least 8 (each setData's data starts with its number)");
    }
    let weights = parse_mix(&args.mix)?;
    let ops_limit = match (args.ops, args.seconds) {
        (Some(0) | None, s) if s > 0 => u64::MAX,
        (Some(0), _) => bail!("say how much: --ops or --seconds"),
        (Some(n), _) => n,
        (None, _) => 100_000,
    };
    let timeout_ms = args.session_timeout_ms;
    let mut sessions = Vec::with_capacity(args.sessions);
    let mut watchers = Vec::with_capacity(args.watchers);
    for i in 0..args.sessions + args.watchers {
        let session = Session::connect(servers[i % servers.len()], timeout_ms).await?;
        if i < args.sessions {
            sessions.push(session);
        } else {
            watchers.push(session);
        }
    }
    let base = format!("/braid-bench/{}", std::process::id());
    let load = new_load(&args, &base, weights, ops_limit);
    let mut armed = prepare(&mut sessions, &mut watchers, &load, &base).await?;

    let started = Instant::now();
    load.started.set(started);
    load.deadline.set((load.seconds > 0).then(|| started + Duration::from_secs(load.seconds)));
    let run = async {
        let drivers =
            futures::future::try_join_all(sessions.iter_mut().map(|s| drive(s, &load, args.in_flight, timeout_ms)));
        let drivers = async {
            drivers.await?;
            load.finished.set(Some(Instant::now()));
            anyhow::Ok(())
        };
        let watching = futures::future::try_join_all(
            watchers.iter_mut().zip(armed.iter_mut()).map(|(w, a)| watch(w, &load, a, timeout_ms)),
        );
        futures::future::try_join(drivers, watching).await
    };
    let outcome = tokio::select! {
        outcome = run => outcome,
        _ = progress(&load) => unreachable!("the progress line never ends"),
    };
    outcome.context("the run ended early")?;
    let elapsed = load.finished.get().unwrap_or_else(Instant::now).duration_since(started);
    let mut summary = summary(&args, &load, elapsed);
    if let Some(path) = &args.json {
        summary["servers"] = args.servers.clone().into();
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Err(e) = clean_up(sessions, watchers, &load, &base).await {
        eprintln!("cleanup of {base} incomplete: {e:#}");
    }
    Ok(())
}

pub fn run(args: ZkBench) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(bench(args))
}
