//! The Kafka front end: framing, version negotiation, dispatch to one handler per API, and the
//! in-order response writer (records go out with sendfile, without a user-space copy).
//!
//! A connection has a reader loop and a writer task. The reader decodes each request and runs
//! its handler's ordering-sensitive part at once (sending produce batches to the owning shard in
//! arrival order); what remains is a pending response, queued to the writer, which awaits them
//! in request order. At most [`IN_FLIGHT_MAX`] responses wait per connection, and the request
//! bytes a shard holds are bounded by its request-memory semaphore.

mod fetch_response;
pub mod handlers;
mod writer;

pub use fetch_response::encode_fetch_response;
pub use writer::Chunk;

use crate::shared::ShardCtx;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// Responses a connection may have pending (requests pipelined by the client).
pub const IN_FLIGHT_MAX: usize = 64;
/// Time a client has to send the rest of a frame once its size arrived.
pub const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The APIs served, with the version range advertised (intersected with the codec's).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeLogDirs, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
];

/// The advertised range of an API key, if served.
pub fn supported_range(api_key: i16) -> Option<(ApiKey, i16, i16)> {
    let key = ApiKey::try_from(api_key).ok()?;
    let (_, min, max) = SUPPORTED_APIS.iter().find(|(k, _, _)| *k == key)?;
    let codec = key.valid_versions();
    Some((key, (*min).max(codec.min), (*max).min(codec.max)))
}

/// The name of an API key, for metrics and logs.
pub fn api_name(api_key: i16) -> Option<&'static str> {
    let key = ApiKey::try_from(api_key).ok()?;
    SUPPORTED_APIS.iter().any(|(k, _, _)| *k == key).then_some(match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::DescribeProducers => "DescribeProducers",
        _ => "Other",
    })
}

/// A response being prepared; `None` means the request gets no response (acks=0).
pub type Pending = LocalBoxFuture<'static, Option<Vec<Chunk>>>;

/// Encodes a size-prefixed response: header (the version the API uses) and body.
pub fn encode_response<T: Encodable + HeaderVersion>(
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = T::header_version(version);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Wraps a handler's future: encodes its response, counts it, and keeps the request's memory
/// permit until the response is ready.
pub fn respond<T, F>(
    ctx: &Rc<ShardCtx>,
    api_key: i16,
    version: i16,
    correlation_id: i32,
    started: Instant,
    permit: OwnedSemaphorePermit,
    body: F,
) -> Pending
where
    T: Encodable + HeaderVersion + 'static,
    F: std::future::Future<Output = T> + 'static,
{
    let ctx = Rc::clone(ctx);
    Box::pin(async move {
        let body = body.await;
        drop(permit);
        record_latency(&ctx, api_key, started);
        match encode_response(version, correlation_id, &body) {
            Ok(bytes) => Some(vec![Chunk::Bytes(bytes)]),
            Err(e) => {
                tracing::error!(api_key, version, error = %e, "cannot encode a response");
                None
            }
        }
    })
}

pub fn record_latency(ctx: &ShardCtx, api_key: i16, started: Instant) {
    if let Some(m) = ctx.shared.metrics.api(api_key) {
        m.observe(started.elapsed().as_micros() as u64);
    }
}

/// The answer to an unknown API key or an unsupported version: an ApiVersions v0 response
/// with UNSUPPORTED_VERSION and the full list (what Kafka brokers send), under the request's
/// correlation id.
pub fn unsupported_version(correlation_id: i32) -> Vec<Chunk> {
    let mut body = handlers::api_versions::supported();
    body.error_code = kafka_protocol::ResponseError::UnsupportedVersion.code();
    let bytes = encode_response(0, correlation_id, &body).expect("ApiVersions v0 encodes");
    vec![Chunk::Bytes(bytes)]
}

/// A client connection as handlers see it: its number in the node's accept order, and whether
/// a handler asked for it to be closed (the writer closes it instead of sending the response:
/// the transaction coordinator does so to a request from a connection the client has left,
/// `txn/connections.rs`).
#[derive(Clone)]
pub struct ClientConn {
    pub seq: u64,
    pub closing: Rc<std::cell::Cell<bool>>,
}

/// Serves one Kafka connection until the client closes it or sends something unreadable.
/// `listener` is the index of the Kafka listener it came through: Metadata and its kin answer
/// with that listener's addresses.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream, peer: SocketAddr, listener: usize) {
    let (mut reader, writer) = stream.into_split();
    let (queue, pending) = mpsc::channel::<Pending>(IN_FLIGHT_MAX);
    let conn = ClientConn { seq: ctx.shared.connections_accepted.fetch_add(1, Relaxed), closing: Rc::default() };
    let closing = Rc::clone(&conn.closing);
    let writer_task = tokio::task::spawn_local(writer::write_responses(Rc::clone(&ctx), writer, pending, closing));
    let max = ctx.shared.config.max_request_bytes;
    loop {
        let mut size = [0u8; 4];
        if reader.read_exact(&mut size).await.is_err() {
            break;
        }
        let size = i32::from_be_bytes(size);
        if size < 8 || size as usize > max {
            tracing::warn!(%peer, size, max, "request frame size out of range; closing the connection");
            ctx.shared.metrics.bad_frames.fetch_add(1, Relaxed);
            break;
        }
        let size = size as usize;
        let Ok(permit) = Arc::clone(&ctx.request_memory).acquire_many_owned((size / 1024 + 1) as u32).await else {
            break;
        };
        // Read into spare capacity: nothing to clear first.
        let mut frame = BytesMut::with_capacity(size);
        let read = async {
            while frame.len() < size {
                if (&mut reader).take((size - frame.len()) as u64).read_buf(&mut frame).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(FRAME_READ_TIMEOUT, read).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                tracing::debug!(%peer, size, "connection closed inside a frame");
                break;
            }
            Err(_) => {
                tracing::warn!(%peer, size, "frame not completed within {FRAME_READ_TIMEOUT:?}; closing");
                ctx.shared.metrics.bad_frames.fetch_add(1, Relaxed);
                break;
            }
        }
        ctx.shared.metrics.bytes_in.fetch_add(4 + size as u64, Relaxed);
        if ctx.shared.cut_off.load(Relaxed) {
            // This node cannot reach the rest of the cluster: it can neither commit nor know
            // the current leaders. Closing sends the client to another node.
            tracing::debug!(%peer, "cut off from the cluster; closing a client connection");
            break;
        }
        match dispatch(&ctx, (listener, &conn), frame.freeze(), permit).await {
            Ok(Some(response)) => {
                if queue.send(response).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %format!("{e:#}"), "unreadable request; closing the connection");
                ctx.shared.metrics.bad_frames.fetch_add(1, Relaxed);
                break;
            }
        }
    }
    drop(queue);
    let _ = writer_task.await;
    ctx.shared.metrics.connections_closed.fetch_add(1, Relaxed);
}

/// A request frame, decoded.
pub enum Decoded {
    /// An API this node serves, at a version it serves.
    Request { api_key: i16, version: i16, header: RequestHeader, request: Box<RequestKind> },
    /// Unknown API key or version out of range: answered with UNSUPPORTED_VERSION.
    Unsupported { api_key: i16, version: i16, correlation_id: i32 },
}

/// Decodes one frame (the bytes after the size prefix). Errors mean the bytes are not a
/// request of the API and version they claim; the connection is then closed.
pub fn decode_request(frame: Bytes) -> anyhow::Result<Decoded> {
    if frame.len() < 8 {
        anyhow::bail!("frame of {} bytes is shorter than a request header", frame.len());
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some((key, _, _)) = supported_range(api_key).filter(|(_, min, max)| (*min..=*max).contains(&version)) else {
        return Ok(Decoded::Unsupported { api_key, version, correlation_id });
    };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, key.request_header_version(version))
        .map_err(|e| anyhow::anyhow!("{key:?} v{version} request header: {e:#}"))?;
    let request = RequestKind::decode(key, &mut buf, version)
        .map_err(|e| anyhow::anyhow!("{key:?} v{version} request body: {e:#}"))?;
    Ok(Decoded::Request { api_key, version, header, request: Box::new(request) })
}

/// What a handler's answer needs to become a response: see [`respond`].
struct Reply<'a> {
    ctx: &'a Rc<ShardCtx>,
    api_key: i16,
    version: i16,
    corr: i32,
    started: Instant,
    permit: OwnedSemaphorePermit,
}

impl Reply<'_> {
    fn with<T, F>(self, body: F) -> Pending
    where
        T: Encodable + HeaderVersion + 'static,
        F: std::future::Future<Output = T> + 'static,
    {
        respond(self.ctx, self.api_key, self.version, self.corr, self.started, self.permit, body)
    }
}

/// Decodes one request and starts its handler.
async fn dispatch(
    ctx: &Rc<ShardCtx>,
    (listener, conn): (usize, &ClientConn),
    frame: Bytes,
    permit: OwnedSemaphorePermit,
) -> anyhow::Result<Option<Pending>> {
    let started = Instant::now();
    let decoded = decode_request(frame)?;
    let (api_key, version, header, request) = match decoded {
        Decoded::Request { api_key, version, header, request } => (api_key, version, header, request),
        Decoded::Unsupported { api_key, version, correlation_id } => {
            tracing::debug!(api_key, version, "unsupported API or version");
            if let Some(m) = ctx.shared.metrics.api(api_key) {
                m.errors.fetch_add(1, Relaxed);
            }
            return Ok(Some(Box::pin(std::future::ready(Some(unsupported_version(correlation_id))))));
        }
    };
    let corr = header.correlation_id;
    let reply = Reply { ctx, api_key, version, corr, started, permit };
    let c = || Rc::clone(ctx);
    use handlers::*;
    let pending = match *request {
        RequestKind::ApiVersions(_) => reply.with(async { api_versions::supported() }),
        RequestKind::Metadata(r) => reply.with(metadata::handle(c(), listener, version, r)),
        RequestKind::Produce(r) => match produce::start(ctx, version, r).await {
            Some(body) => reply.with(body),
            None => {
                record_latency(ctx, api_key, started);
                return Ok(None);
            }
        },
        RequestKind::Fetch(r) => fetch::start(ctx, version, corr, started, reply.permit, r),
        RequestKind::ListOffsets(r) => reply.with(list_offsets::handle(c(), version, r)),
        RequestKind::CreateTopics(r) => reply.with(topics::create(c(), version, r)),
        RequestKind::DeleteTopics(r) => reply.with(topics::delete(c(), version, r)),
        RequestKind::CreatePartitions(r) => reply.with(topics::create_partitions(c(), r)),
        RequestKind::DescribeConfigs(r) => reply.with(configs::describe(c(), version, r)),
        RequestKind::AlterConfigs(r) => reply.with(configs::alter(c(), r)),
        RequestKind::IncrementalAlterConfigs(r) => reply.with(configs::incremental_alter(c(), r)),
        RequestKind::DescribeCluster(_) => reply.with(cluster::describe(c(), listener)),
        RequestKind::AlterPartitionReassignments(r) => reply.with(reassignments::alter(c(), r)),
        RequestKind::ListPartitionReassignments(r) => reply.with(reassignments::list(c(), r)),
        RequestKind::FindCoordinator(r) => reply.with(groups::find_coordinator(c(), listener, version, r)),
        RequestKind::JoinGroup(r) => {
            let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            reply.with(groups::join(c(), version, r, client_id))
        }
        RequestKind::SyncGroup(r) => reply.with(groups::sync(c(), version, r)),
        RequestKind::Heartbeat(r) => reply.with(groups::heartbeat(c(), r)),
        RequestKind::LeaveGroup(r) => reply.with(groups::leave(c(), version, r)),
        RequestKind::OffsetCommit(r) => reply.with(groups::commit(c(), r)),
        RequestKind::OffsetFetch(r) => reply.with(groups::fetch(c(), version, r)),
        RequestKind::ListGroups(r) => reply.with(groups::list(c(), version, r)),
        RequestKind::DescribeGroups(r) => reply.with(groups::describe(c(), version, r)),
        RequestKind::DeleteGroups(r) => reply.with(groups::delete(c(), r)),
        RequestKind::OffsetDelete(r) => reply.with(groups::offset_delete(c(), r)),
        RequestKind::DeleteRecords(r) => reply.with(delete_records::handle(c(), r)),
        RequestKind::ElectLeaders(r) => reply.with(elect_leaders::handle(c(), r)),
        RequestKind::DescribeLogDirs(r) => reply.with(log_dirs::handle(c(), r)),
        RequestKind::OffsetForLeaderEpoch(r) => reply.with(offset_for_leader_epoch::handle(c(), r)),
        RequestKind::InitProducerId(r) => reply.with(producer_id::handle(c(), conn.clone(), r)),
        RequestKind::AddPartitionsToTxn(r) => reply.with(txn::add_partitions(c(), version, conn.clone(), r)),
        RequestKind::AddOffsetsToTxn(r) => reply.with(txn::add_offsets(c(), conn.clone(), r)),
        RequestKind::EndTxn(r) => reply.with(txn::end(c(), conn.clone(), r)),
        RequestKind::TxnOffsetCommit(r) => reply.with(txn::offset_commit(c(), r)),
        RequestKind::WriteTxnMarkers(r) => reply.with(txn::write_txn_markers(c(), r)),
        RequestKind::DescribeTransactions(r) => reply.with(txn::describe(c(), r)),
        RequestKind::ListTransactions(r) => reply.with(txn::list(c(), r)),
        RequestKind::DescribeProducers(r) => reply.with(txn::describe_producers(c(), r)),
        _ => return Ok(Some(Box::pin(std::future::ready(Some(unsupported_version(corr)))))),
    };
    Ok(Some(pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/compatibility.md lists every API served with the versions advertised, and no other.
    #[test]
    fn the_compatibility_table_lists_every_api_served() {
        let doc = include_str!("../../../docs/compatibility.md");
        let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| ") && l.contains(" | ")).collect();
        for (key, min, max) in SUPPORTED_APIS {
            let name = api_name(*key as i16).expect("served");
            let row = format!("| {name} | {min}-{max} |");
            assert!(rows.iter().any(|r| r.starts_with(&row)), "docs/compatibility.md lacks {row}");
        }
        let versions =
            |v: &str| v.split_once('-').is_some_and(|(a, b)| a.parse::<i16>().is_ok() && b.parse::<i16>().is_ok());
        let listed = rows.iter().filter(|r| r.split('|').nth(2).is_some_and(|v| versions(v.trim()))).count();
        assert_eq!(listed, SUPPORTED_APIS.len(), "docs/compatibility.md lists an API that is not served");
    }
}
