//! `braid bench produce|consume`: a Kafka load generator speaking the protocol natively
//! (`braid bench zk`, its ZooKeeper counterpart, is in `bench_zk`).
//!
//! produce: `--producers` connections, each to the leader of one partition (round robin),
//! sending uncompressed batches of `--batch-records` records of `--record-size` bytes with up
//! to `--in-flight` requests pipelined, at most `--rate` records/s in all (0: as fast as the
//! answers come), for `--messages` records or `--seconds`. Request latency (send to answer) goes
//! into an hdrhistogram. consume: every partition read from its start, one reader thread and
//! connection each, by fetches of up to `--fetch-bytes`, for `--messages` records or `--seconds`; end-to-end latency is now minus each
//! batch's first timestamp (the producer's send time, in ms). Both print a progress line every
//! second on stderr, then p50/p90/p99/p999/max and throughput, and with `--json FILE` the same
//! as JSON for scripts.

use super::histogram;
use crate::client::Client;
use anyhow::{bail, Context};
use braid_engine::log::batch::{build_batch, restamp_time};
use braid_engine::log::BatchHeader;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Produce records as fast as asked and measure throughput and request latency.
    Produce(ProduceBench),
    /// Read a topic from its start and measure throughput and end-to-end latency.
    Consume(ConsumeBench),
    /// ZooKeeper-protocol load (create, setData, getData, exists, watches) with latency per op.
    Zk(super::bench_zk::ZkBench),
}

#[derive(Args, Debug)]
pub struct ProduceBench {
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor if the topic has to be created [default: the node's].
    #[arg(long, default_value_t = -1)]
    replication_factor: i16,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value_t = 256)]
    batch_records: usize,
    /// -1 (all), 1 or 0.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    acks: i16,
    /// Connections, each producing to one partition.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Requests pipelined per connection.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Records in all (0: until --seconds).
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Stop after this long (0: until --messages).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Records per second in all (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// As an idempotent producer: a producer id per connection, sequence numbers per partition.
    #[arg(long)]
    idempotent: bool,
    /// As a transactional producer (idempotent too): each connection a transactional id, its
    /// partitions added to each transaction, committed every --commit-ms (all its requests
    /// answered first); commit latency is reported besides request latency.
    #[arg(long)]
    transactional: bool,
    #[arg(long, default_value_t = 100)]
    commit_ms: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Nodes' Kafka addresses, host:port,... (tried in turn until one answers).
    #[arg(long, env = "BRAID_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
}

#[derive(Args, Debug)]
pub struct ConsumeBench {
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Bytes asked for per partition per fetch.
    #[arg(long, default_value_t = 8 << 20)]
    fetch_bytes: i32,
    /// Records to read (0: until --seconds).
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Nodes' Kafka addresses, host:port,... (tried in turn until one answers).
    #[arg(long, env = "BRAID_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// Counters shared by the workers and the progress line.
#[derive(Default)]
struct Progress {
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

/// Prints a progress line every second until `done`.
fn progress_line(progress: Arc<Progress>, done: Arc<AtomicBool>, latency: Arc<Mutex<Histogram<u64>>>) {
    let started = Instant::now();
    let mut last = (0u64, 0u64);
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed().as_millis() % 1000 >= 200 {
            continue;
        }
        let (records, bytes) = (progress.records.load(Relaxed), progress.bytes.load(Relaxed));
        let p99 = latency.lock().map(|h| h.value_at_quantile(0.99)).unwrap_or(0);
        eprintln!(
            "{:>4.0} s  {:>10} records  {:>9.0} records/s  {:>8.1} MB/s  p99 {} us  errors {}",
            started.elapsed().as_secs_f64(),
            records,
            (records - last.0) as f64,
            (bytes - last.1) as f64 / 1e6,
            p99,
            progress.errors.load(Relaxed)
        );
        last = (records, bytes);
    }
}

/// The summary: throughput and latency percentiles (µs), printed and returned as JSON.
fn summary(
    what: &str,
    records: u64,
    bytes: u64,
    errors: u64,
    elapsed: Duration,
    h: &Histogram<u64>,
) -> serde_json::Value {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
    println!(
        "{what}: {records} records, {:.1} MB in {:.2} s: {:.0} records/s, {:.1} MB/s; errors {errors}",
        bytes as f64 / 1e6,
        secs,
        records as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    println!(
        "latency us: p50 {} p90 {} p99 {} p999 {} max {} ({} samples)",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        h.max(),
        h.len()
    );
    serde_json::json!({
        "what": what, "records": records, "bytes": bytes, "errors": errors, "seconds": secs,
        "records_per_s": records as f64 / secs, "mb_per_s": bytes as f64 / 1e6 / secs,
        "latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": h.max(), "samples": h.len()},
    })
}

/// What one bench run shares between its workers, its progress line and its summary.
struct Run {
    progress: Arc<Progress>,
    latency: Arc<Mutex<Histogram<u64>>>,
    done: Arc<AtomicBool>,
    ticker: std::thread::JoinHandle<()>,
    started: Instant,
    /// When --seconds runs out.
    deadline: Option<Instant>,
}

impl Run {
    /// Starts the clock (`seconds`: how long the run may last; 0: no limit) and the progress line.
    fn start(seconds: u64) -> Run {
        let progress = Arc::new(Progress::default());
        let latency = Arc::new(Mutex::new(histogram()));
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (p, d, l) = (Arc::clone(&progress), Arc::clone(&done), Arc::clone(&latency));
            std::thread::spawn(move || progress_line(p, d, l))
        };
        let started = Instant::now();
        let deadline = (seconds > 0).then(|| started + Duration::from_secs(seconds));
        Run { progress, latency, done, ticker, started, deadline }
    }

    /// Waits for the workers (the first failure is the run's), stops the progress line, prints
    /// the summary (after the note `note` gives once the workers are done, with its JSON under
    /// "extra") and writes it, with `config`, as JSON to `json`.
    fn finish(
        self,
        what: &str,
        workers: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
        note: impl FnOnce() -> (String, serde_json::Value),
        config: serde_json::Value,
        json: Option<&std::path::Path>,
    ) -> anyhow::Result<()> {
        let mut failure = None;
        for w in workers {
            if let Err(e) = w.join().map_err(|_| anyhow::anyhow!("a {what} thread panicked"))? {
                failure.get_or_insert(e);
            }
        }
        let elapsed = self.started.elapsed();
        self.done.store(true, Relaxed);
        let _ = self.ticker.join();
        if let Some(e) = failure {
            return Err(e);
        }
        let h = self.latency.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let p = &self.progress;
        let (note, extra) = note();
        if !note.is_empty() {
            println!("{note}");
        }
        let mut summary =
            summary(what, p.records.load(Relaxed), p.bytes.load(Relaxed), p.errors.load(Relaxed), elapsed, &h);
        summary["config"] = config;
        summary["extra"] = extra;
        if let Some(path) = json {
            std::fs::write(path, serde_json::to_vec_pretty(&summary)?)?;
        }
        Ok(())
    }
}

fn partitions_of(bootstrap: &str, topic: &str) -> anyhow::Result<i32> {
    let mut client = Client::connect(bootstrap)?;
    let mut request = MetadataRequest::default();
    let mut wanted = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(name(topic));
    request.topics = Some(vec![wanted]);
    // Asking must not create it: an auto-created topic has the node's default partition count,
    // not --partitions.
    request.allow_auto_topic_creation = false;
    let metadata = client.call(request)?;
    Ok(metadata.topics.first().filter(|t| t.error_code == 0).map_or(0, |t| t.partitions.len() as i32))
}

fn ensure_topic(args: &ProduceBench) -> anyhow::Result<i32> {
    if partitions_of(&args.bootstrap, &args.topic)? == 0 {
        // A node just started may not have elected its controller or bootstrapped its tree:
        // NOT_CONTROLLER is retried.
        let (code, ()) = Client::call_controller(&args.bootstrap, |client| {
            let mut topic = CreatableTopic::default();
            topic.name = name(&args.topic);
            topic.num_partitions = args.partitions;
            topic.replication_factor = args.replication_factor;
            let mut request = CreateTopicsRequest::default();
            request.topics = vec![topic];
            request.timeout_ms = 30_000;
            let response = client.call(request)?;
            Ok((response.topics.first().map_or(0, |t| t.error_code), ()))
        })?;
        if code != 0 && code != kafka_protocol::ResponseError::TopicAlreadyExists.code() {
            bail!("creating {}: error {code}", args.topic);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = partitions_of(&args.bootstrap, &args.topic)?;
        if n > 0 {
            return Ok(n);
        }
        if Instant::now() > deadline {
            bail!("topic {} did not appear", args.topic);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A producer's connection to one leader, with its requests in flight (when each was sent,
/// and how many records it carried).
struct Link {
    client: Client,
    version: i16,
    sent_at: VecDeque<(Instant, u64)>,
}

impl Link {
    /// Takes the answer to the oldest request in flight.
    fn receive(&mut self, local: &mut Histogram<u64>, progress: &Progress, record_size: usize) -> anyhow::Result<()> {
        let (at, records) = self.sent_at.pop_front().context("nothing in flight")?;
        let response = self.client.receive::<ProduceRequest>(self.version)?;
        local.saturating_record(at.elapsed().as_micros() as u64);
        let failed = response.responses.iter().flat_map(|t| &t.partition_responses).any(|p| p.error_code != 0);
        if failed {
            progress.errors.fetch_add(1, Relaxed);
        } else {
            progress.records.fetch_add(records, Relaxed);
            progress.bytes.fetch_add(records * record_size as u64, Relaxed);
        }
        Ok(())
    }
}

/// A producer's connections: one per leader of its partitions, and which one each partition
/// (in the producer's order) goes to.
struct Links {
    links: Vec<Link>,
    route: Vec<usize>,
}

impl Links {
    fn connect(bootstrap: &str, topic: &str, partitions: &[i32]) -> anyhow::Result<Links> {
        let mut links: Vec<Link> = Vec::new();
        let mut by_leader: HashMap<String, usize> = HashMap::new();
        let mut route = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let client = Client::connect_to_leader(bootstrap, topic, partition)?;
            let peer = client.peer();
            let index = match by_leader.get(&peer) {
                Some(&index) => index,
                None => {
                    let version = client.version_for::<ProduceRequest>()?;
                    links.push(Link { client, version, sent_at: VecDeque::new() });
                    by_leader.insert(peer, links.len() - 1);
                    links.len() - 1
                }
            };
            route.push(index);
        }
        Ok(Links { links, route })
    }

    /// Waits for the answer to every request in flight.
    fn drain(&mut self, local: &mut Histogram<u64>, progress: &Progress, record_size: usize) -> anyhow::Result<()> {
        for l in &mut self.links {
            while !l.sent_at.is_empty() {
                l.receive(local, progress, record_size)?;
            }
        }
        Ok(())
    }
}

/// An idempotent or transactional producer's identity, and its transaction's state.
struct Identity {
    producer_id: i64,
    epoch: i16,
    /// Next sequence number by partition.
    sequences: HashMap<i32, i32>,
    /// Transactional: the id, a connection to its coordinator, and when the open transaction
    /// began (None: none open).
    txn: Option<(String, Client, Option<Instant>)>,
}

impl Identity {
    /// A producer id from InitProducerId (from the transactional id's coordinator, if any).
    fn init(bootstrap: &str, transactional_id: Option<String>) -> anyhow::Result<Identity> {
        use kafka_protocol::messages::{InitProducerIdRequest, TransactionalId};
        let mut client = match &transactional_id {
            Some(id) => Client::connect_to_coordinator(bootstrap, 1, id)?,
            None => Client::connect(bootstrap)?,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut request = InitProducerIdRequest::default();
            request.transactional_id = transactional_id.clone().map(|id| TransactionalId(StrBytes::from_string(id)));
            request.transaction_timeout_ms = 60_000;
            let response = client.call_version(request, 3)?;
            if response.error_code == 0 {
                let txn = transactional_id.map(|id| (id, client, None));
                let (producer_id, epoch) = (response.producer_id.0, response.producer_epoch);
                return Ok(Identity { producer_id, epoch, sequences: HashMap::new(), txn });
            }
            if Instant::now() > deadline {
                bail!("InitProducerId: error {}", response.error_code);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stamps a batch as this producer's next one for `partition`.
    fn stamp(&mut self, batch: &mut [u8], partition: i32, records: usize) {
        use braid_engine::log::batch;
        let attributes = if self.txn.is_some() { crate::txn::TRANSACTIONAL_ATTRIBUTE } else { 0 };
        let timestamp = BatchHeader::parse(batch).map_or(0, |h| h.base_timestamp);
        batch::set_producer(batch, self.producer_id, self.epoch, attributes, timestamp);
        let sequence = self.sequences.entry(partition).or_insert(0);
        batch::set_base_sequence(batch, *sequence);
        *sequence = sequence.wrapping_add(records as i32) & i32::MAX;
    }

    /// Transactional: opens a transaction holding `partitions` if none is open.
    fn begin(&mut self, topic: &str, partitions: &[i32]) -> anyhow::Result<()> {
        use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
        use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TransactionalId};
        let (producer_id, epoch) = (self.producer_id, self.epoch);
        let Some((id, client, started @ None)) = self.txn.as_mut() else { return Ok(()) };
        let mut t = AddPartitionsToTxnTopic::default();
        t.name = name(topic);
        t.partitions = partitions.to_vec();
        let mut request = AddPartitionsToTxnRequest::default();
        request.v3_and_below_transactional_id = TransactionalId(StrBytes::from_string(id.clone()));
        request.v3_and_below_producer_id = ProducerId(producer_id);
        request.v3_and_below_producer_epoch = epoch;
        request.v3_and_below_topics = vec![t];
        let response = client.call_version(request, 3)?;
        let errors = response.results_by_topic_v3_and_below.iter().flat_map(|t| &t.results_by_partition);
        if let Some(e) = errors.map(|p| p.partition_error_code).find(|&e| e != 0) {
            bail!("AddPartitionsToTxn: error {e}");
        }
        *started = Some(Instant::now());
        Ok(())
    }

    /// Transactional: true once the open transaction has lasted `commit_ms`.
    fn due(&self, commit_ms: u64) -> bool {
        matches!(&self.txn, Some((_, _, Some(at))) if at.elapsed() >= Duration::from_millis(commit_ms))
    }

    /// Transactional: commits the open transaction (every request answered first); its
    /// latency goes into `commits`.
    fn commit(&mut self, commits: &mut Histogram<u64>) -> anyhow::Result<()> {
        use kafka_protocol::messages::{EndTxnRequest, ProducerId, TransactionalId};
        let (producer_id, epoch) = (self.producer_id, self.epoch);
        let Some((id, client, started @ Some(_))) = self.txn.as_mut() else { return Ok(()) };
        let mut request = EndTxnRequest::default();
        request.transactional_id = TransactionalId(StrBytes::from_string(id.clone()));
        request.producer_id = ProducerId(producer_id);
        request.producer_epoch = epoch;
        request.committed = true;
        let at = Instant::now();
        let response = client.call_version(request, 3)?;
        if response.error_code != 0 {
            bail!("EndTxn: error {}", response.error_code);
        }
        commits.saturating_record(at.elapsed().as_micros() as u64);
        *started = None;
        Ok(())
    }
}

/// A batch as the producer's next (stamped with its identity, if it has one), to send.
fn stamp(identity: Option<&mut Identity>, batch: &mut [u8], partition: i32, count: usize) -> bytes::Bytes {
    if let Some(identity) = identity {
        identity.stamp(batch, partition, count);
    }
    bytes::Bytes::copy_from_slice(batch)
}

/// The commit latency line and its JSON (nothing unless transactional).
fn commit_summary(transactional: bool, commit_latency: &Mutex<Histogram<u64>>) -> (String, serde_json::Value) {
    if !transactional {
        return (String::new(), serde_json::Value::Null);
    }
    let h = commit_latency.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram());
    let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
    let (p50, p90, p99, p999, max, n) = (q(0.5), q(0.9), q(0.99), q(0.999), h.max(), h.len());
    let line = format!("commit latency us: p50 {p50} p90 {p90} p99 {p99} p999 {p999} max {max} ({n} commits)");
    let json = serde_json::json!({"commit_latency_us": {"p50": p50, "p90": p90, "p99": p99, "p999": p999, "max": max, "commits": n}});
    (line, json)
}

pub fn produce(args: ProduceBench) -> anyhow::Result<()> {
    if args.messages == 0 && args.seconds == 0 {
        bail!("say how much: --messages or --seconds");
    }
    let partitions = ensure_topic(&args)?;
    let value = vec![b'x'; args.record_size];
    let run = Run::start(args.seconds);
    let (progress, latency, started, deadline) = (&run.progress, &run.latency, run.started, run.deadline);
    let per_producer = if args.messages > 0 { args.messages.div_ceil(args.producers as u64) } else { u64::MAX };
    let commit_latency = Arc::new(Mutex::new(histogram()));
    let rate = args.rate as f64 / args.producers as f64;
    let args = Arc::new(args);
    let workers: Vec<_> = (0..args.producers)
        .map(|i| {
            let (args, progress, latency, value) =
                (Arc::clone(&args), Arc::clone(progress), Arc::clone(latency), value.clone());
            let commit_latency = Arc::clone(&commit_latency);
            std::thread::spawn(move || -> anyhow::Result<()> {
                // This producer's partitions (i, i + producers, ...; or partition i mod the
                // count when there are more producers), each batch to the next of them, on one
                // connection per leader among them.
                let mine: Vec<i32> = if partitions as usize > args.producers {
                    (i as i32..partitions).step_by(args.producers).collect()
                } else {
                    vec![(i as i32) % partitions]
                };
                let mut links = Links::connect(&args.bootstrap, &args.topic, &mine)?;
                let transactional_id = args.transactional.then(|| format!("bench-{}-{i}", std::process::id()));
                let mut identity = (args.idempotent || args.transactional)
                    .then(|| Identity::init(&args.bootstrap, transactional_id))
                    .transpose()?;
                let mut local = histogram();
                let mut commits = histogram();
                let mut sent = 0u64;
                let mut template = build_batch(crate::process::now_ms(), &vec![&value[..]; args.batch_records]);
                let mut next = 0usize;
                while sent < per_producer && deadline.is_none_or(|d| Instant::now() < d) {
                    if rate > 0.0 {
                        let due = started + Duration::from_secs_f64(sent as f64 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let (partition, link) = (mine[next % mine.len()], links.route[next % mine.len()]);
                    next += 1;
                    let count = (args.batch_records as u64).min(per_producer - sent) as usize;
                    if let Some(identity) = identity.as_mut() {
                        if identity.due(args.commit_ms) {
                            links.drain(&mut local, &progress, args.record_size)?;
                            identity.commit(&mut commits)?;
                        }
                        identity.begin(&args.topic, &mine)?;
                    }
                    let mut data = PartitionProduceData::default();
                    data.index = partition;
                    data.records = Some(if count == args.batch_records {
                        // Every full batch is the same records: built once, then only its
                        // timestamps (and so its CRC) change. Building each one anew took most
                        // of the load generator's CPU.
                        restamp_time(&mut template, crate::process::now_ms());
                        stamp(identity.as_mut(), &mut template, partition, count)
                    } else {
                        let mut batch = build_batch(crate::process::now_ms(), &vec![&value[..]; count]);
                        stamp(identity.as_mut(), &mut batch, partition, count)
                    });
                    let mut topic = TopicProduceData::default();
                    topic.name = name(&args.topic);
                    topic.partition_data = vec![data];
                    let mut request = ProduceRequest::default();
                    request.transactional_id = identity
                        .as_ref()
                        .and_then(|i| i.txn.as_ref())
                        .map(|(id, _, _)| kafka_protocol::messages::TransactionalId(StrBytes::from_string(id.clone())));
                    request.acks = args.acks;
                    request.timeout_ms = 30_000;
                    request.topic_data = vec![topic];
                    let l = &mut links.links[link];
                    l.client.send(request, l.version)?;
                    sent += count as u64;
                    if args.acks == 0 {
                        progress.records.fetch_add(count as u64, Relaxed);
                        progress.bytes.fetch_add((count * args.record_size) as u64, Relaxed);
                        continue;
                    }
                    l.sent_at.push_back((Instant::now(), count as u64));
                    if l.sent_at.len() >= args.in_flight {
                        l.receive(&mut local, &progress, args.record_size)?;
                    }
                }
                links.drain(&mut local, &progress, args.record_size)?;
                if let Some(identity) = identity.as_mut() {
                    identity.commit(&mut commits)?;
                }
                latency.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.add(&local)?;
                commit_latency.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.add(&commits)?;
                Ok(())
            })
        })
        .collect();
    let config = serde_json::json!({
        "topic": args.topic, "partitions": partitions, "record_size": args.record_size,
        "batch_records": args.batch_records, "acks": args.acks, "producers": args.producers,
        "in_flight": args.in_flight, "rate": args.rate, "idempotent": args.idempotent,
        "transactional": args.transactional, "commit_ms": args.commit_ms,
    });
    let transactional = args.transactional;
    let commits = move || commit_summary(transactional, &commit_latency);
    run.finish("produce", workers, commits, config, args.json.as_deref())
}

pub fn consume(args: ConsumeBench) -> anyhow::Result<()> {
    if args.messages == 0 && args.seconds == 0 {
        bail!("say how much: --messages or --seconds");
    }
    let partitions = partitions_of(&args.bootstrap, &args.topic)?;
    if partitions == 0 {
        bail!("no topic {}", args.topic);
    }
    let run = Run::start(args.seconds);
    let (progress, latency, deadline) = (&run.progress, &run.latency, run.deadline);
    let target = if args.messages > 0 { args.messages } else { u64::MAX };
    let args = Arc::new(args);
    // One reader per partition, each with its own connection to the partition's leader.
    let workers: Vec<_> = (0..partitions)
        .map(|partition| {
            let (args, progress, latency) = (Arc::clone(&args), Arc::clone(progress), Arc::clone(latency));
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut client = Client::connect_to_leader(&args.bootstrap, &args.topic, partition)?;
                let version = client.version_for::<FetchRequest>()?.min(12);
                let mut local = histogram();
                let mut offset = 0i64;
                let mut idle_since = Instant::now();
                while progress.records.load(Relaxed) < target && deadline.is_none_or(|d| Instant::now() < d) {
                    if args.seconds == 0 && idle_since.elapsed() > Duration::from_secs(5) {
                        break; // nothing more to read here
                    }
                    let mut p = FetchPartition::default();
                    p.partition = partition;
                    p.fetch_offset = offset;
                    p.partition_max_bytes = args.fetch_bytes;
                    let mut t = FetchTopic::default();
                    t.topic = name(&args.topic);
                    t.partitions = vec![p];
                    let mut request = FetchRequest::default();
                    request.replica_id = BrokerId(-1);
                    request.max_wait_ms = 100;
                    request.min_bytes = 1;
                    request.max_bytes = args.fetch_bytes;
                    request.topics = vec![t];
                    let response = client.call_version(request, version)?;
                    let now = crate::process::now_ms();
                    for data in response.responses.iter().flat_map(|t| &t.partitions) {
                        if data.error_code != 0 {
                            progress.errors.fetch_add(1, Relaxed);
                            continue;
                        }
                        let Some(records) = &data.records else { continue };
                        let mut at = 0;
                        while at < records.len() {
                            let Ok(header) = BatchHeader::parse(&records[at..]) else { break };
                            if at + header.total_bytes() > records.len() {
                                break; // a partial batch at the end of the fetch
                            }
                            if header.next_offset() > offset {
                                let count = header.record_count.max(0) as u64;
                                progress.records.fetch_add(count, Relaxed);
                                progress.bytes.fetch_add(header.total_bytes() as u64, Relaxed);
                                local.saturating_record((now - header.base_timestamp).max(0) as u64 * 1000);
                                offset = header.next_offset();
                                idle_since = Instant::now();
                            }
                            at += header.total_bytes();
                        }
                    }
                }
                latency.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.add(&local)?;
                Ok(())
            })
        })
        .collect();
    let note = "end-to-end latency: now minus each batch's first timestamp (ms resolution)";
    let config = serde_json::json!({"topic": args.topic, "partitions": partitions, "fetch_bytes": args.fetch_bytes});
    run.finish("consume", workers, || (note.to_owned(), serde_json::Value::Null), config, args.json.as_deref())
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    // Its batches of up to megabytes would otherwise be mapped, faulted in, cleared and
    // unmapped one by one, and the load generator would take more of the machine than the node.
    crate::process::keep_large_buffers_on_the_heap();
    match command {
        BenchCommand::Produce(args) => produce(args),
        BenchCommand::Consume(args) => consume(args),
        BenchCommand::Zk(args) => super::bench_zk::run(args),
    }
}
