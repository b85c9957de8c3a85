//! Admin HTTP on shard 0: `GET /metrics` (Prometheus text) and `GET /v1/status` (JSON).
//!
//! A deliberately small HTTP/1.1 server: one request per connection, GET only, bounded request
//! head, answers `Connection: close`.

use crate::metrics::{PartitionStats, ShardStats};
use crate::msg::ShardMsg;
use crate::shared::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Largest request head read from an admin client.
const REQUEST_HEAD_MAX_BYTES: usize = 8192;

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::task::spawn_local(handle(Arc::clone(&shared), stream));
    }
}

/// Every partition's figures and every shard's, gathered from every shard.
pub async fn partition_stats(shared: &Shared) -> (Vec<PartitionStats>, Vec<ShardStats>) {
    let mut all = Vec::new();
    let mut shards = Vec::new();
    for tx in &shared.senders {
        let (reply, answer) = oneshot::channel();
        if tx.send(ShardMsg::Stats { reply }).await.is_ok() {
            if let Ok((mut stats, shard)) = answer.await {
                all.append(&mut stats);
                shards.push(shard);
            }
        }
    }
    all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    (all, shards)
}

async fn handle(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_MAX_BYTES {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        std::io::Result::Ok(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or_default()).trim().to_owned();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let (stats, shards) = partition_stats(&shared).await;
            let body = shared.metrics.render(&stats, &shards, crate::kafka::api_name);
            ("200 OK", "text/plain; version=0.0.4", body)
        }
        ("GET", "/v1/status") => {
            let (stats, shards) = partition_stats(&shared).await;
            let (resident_bytes, open_fds) = crate::metrics::process_figures();
            let snapshot = shared.published.read().unwrap_or_else(|e| e.into_inner()).clone();
            let brokers: serde_json::Map<String, serde_json::Value> =
                // Each broker's first endpoint (its PLAINTEXT one with --kafka-addr).
                snapshot
                    .brokers
                    .iter()
                    .filter_map(|(id, endpoints)| Some((id.to_string(), endpoints.first()?.addr.to_string().into())))
                    .collect();
            let body = serde_json::json!({
                "node_id": shared.config.node_id,
                "cluster_id": snapshot.cluster_id,
                "controller": snapshot.controller,
                "brokers": brokers,
                "metadata_zxid": snapshot.zxid,
                "kafka_addr": shared.config.kafka_addr.to_string(),
                "shards": shared.senders.len(),
                "serving": *shared.serving.borrow()
                    && !shared.cut_off.load(std::sync::atomic::Ordering::Relaxed),
                "direct_io": shared.config.direct_io,
                "replaced_disk": shared.replaced_disk.load(std::sync::atomic::Ordering::Relaxed),
                "partitions": stats,
                "shard_stats": shards,
                "resident_bytes": resident_bytes,
                "open_fds": open_fds,
            });
            ("200 OK", "application/json", body.to_string())
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found: try /metrics or /v1/status\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
