//! `braid produce` and `braid consume`.

use crate::client::Client;
use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::io::{BufRead, Write};

/// Records per produce request.
const RECORDS_PER_BATCH: usize = 1000;

#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    #[arg(long, default_value_t = 0)]
    pub partition: i32,
    /// -1 (all), 0 or 1.
    #[arg(long, default_value_t = -1)]
    pub acks: i16,
    /// Key given to every record.
    #[arg(long)]
    pub key: Option<String>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Nodes' Kafka addresses, host:port,... (tried in turn until one answers).
    #[arg(long, env = "BRAID_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    #[arg(long, default_value_t = 0)]
    pub partition: i32,
    /// earliest, latest, or an offset.
    #[arg(long, default_value = "earliest")]
    pub offset: String,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop when no record arrives for this long.
    #[arg(long, default_value_t = 5000)]
    pub idle_timeout_ms: u64,
    /// Nodes' Kafka addresses, host:port,... (tried in turn until one answers).
    #[arg(long, env = "BRAID_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn compression(name: &str) -> anyhow::Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("unknown compression {other:?}"),
    })
}

fn send(client: &mut Client, args: &ProduceArgs, codec: Compression, values: &[String]) -> anyhow::Result<()> {
    let now = crate::process::now_ms();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: args.key.as_ref().map(|k| Bytes::from(k.clone().into_bytes())),
            value: Some(Bytes::from(v.clone().into_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression: codec })?;
    let mut data = PartitionProduceData::default();
    data.index = args.partition;
    data.records = Some(buf.freeze());
    let mut topic = TopicProduceData::default();
    topic.name = topic_name(&args.topic);
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = args.acks;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    if args.acks == 0 {
        bail!("--acks 0 gets no answer; use 1 or -1 with the command-line producer");
    }
    let response = client.call(request)?;
    for t in response.responses {
        for p in t.partition_responses {
            if p.error_code != 0 {
                bail!(
                    "produce failed: error {} {}",
                    p.error_code,
                    p.error_message.map(|m| m.to_string()).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

pub fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let codec = compression(&args.compression)?;
    let mut client = Client::connect_to_leader(&args.bootstrap, &args.topic, args.partition)?;
    let mut pending = Vec::new();
    let mut total = 0u64;
    for line in std::io::stdin().lock().lines() {
        pending.push(line?);
        if pending.len() == RECORDS_PER_BATCH {
            send(&mut client, &args, codec, &pending)?;
            total += pending.len() as u64;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        send(&mut client, &args, codec, &pending)?;
        total += pending.len() as u64;
    }
    eprintln!("produced {total} records to {}-{}", args.topic, args.partition);
    Ok(())
}

fn start_offset(client: &mut Client, args: &ConsumeArgs) -> anyhow::Result<i64> {
    let timestamp = match args.offset.as_str() {
        "earliest" => -2,
        "latest" => -1,
        n => return n.parse().with_context(|| format!("--offset {n:?}")),
    };
    client.list_offset(&args.topic, args.partition, timestamp)
}

pub fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut client = Client::connect_to_leader(&args.bootstrap, &args.topic, args.partition)?;
    let mut offset = start_offset(&mut client, &args)?;
    let mut printed = 0u64;
    let mut idle_since = std::time::Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while args.count.is_none_or(|c| printed < c) {
        if idle_since.elapsed().as_millis() as u64 > args.idle_timeout_ms {
            break;
        }
        let mut partition = FetchPartition::default();
        partition.partition = args.partition;
        partition.fetch_offset = offset;
        partition.partition_max_bytes = 1 << 20;
        let mut topic = FetchTopic::default();
        topic.topic = topic_name(&args.topic);
        topic.partitions = vec![partition];
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = 500;
        request.min_bytes = 1;
        request.max_bytes = 8 << 20;
        request.topics = vec![topic];
        let version = client.version_for::<FetchRequest>()?.min(12);
        let response = client.call_version(request, version)?;
        let p = response.responses.first().and_then(|t| t.partitions.first()).context("empty Fetch response")?;
        if p.error_code != 0 {
            bail!("fetch failed: error {}", p.error_code);
        }
        let mut records = p.records.clone().unwrap_or_default();
        let mut any = false;
        while !records.is_empty() {
            let set = RecordBatchDecoder::decode(&mut records)?;
            for record in set.records {
                if record.offset < offset {
                    continue;
                }
                if record.control {
                    // Transaction markers and a new leader's first entry: not data.
                    offset = record.offset + 1;
                    continue;
                }
                if args.count.is_some_and(|c| printed >= c) {
                    continue;
                }
                out.write_all(record.value.as_deref().unwrap_or_default())?;
                out.write_all(b"\n")?;
                printed += 1;
                offset = record.offset + 1;
                any = true;
            }
        }
        if any {
            idle_since = std::time::Instant::now();
        }
    }
    out.flush()?;
    eprintln!("consumed {printed} records from {}-{}", args.topic, args.partition);
    Ok(())
}
