//! One ZooKeeper client connection: frames in, requests to the server on shard 0, frames out.
//!
//! The first four bytes either start a ConnectRequest frame or are a four-letter word
//! ("ruok", "srvr", "mntr", ...), answered in plain text before the connection closes, as
//! ZooKeeper does. Every frame length is checked against the configured maximum (ZooKeeper's
//! jute.maxbuffer) before it is read; a frame that does not decode closes the connection after
//! a log line saying what and from where, except a request whose op is unknown, which gets
//! UNIMPLEMENTED (reconfig gets RECONFIG_DISABLED, as from ZooKeeper with its default
//! reconfigEnabled=false: members change through `--peers` here, not through the tree).

use super::jute::{err, ConnectRequest, JuteError, Request};
use super::server::{Out, Outbox, ZkMsg, MAX_OUTSTANDING};
use crate::msg::ShardMsg;
use crate::shared::Shared;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

/// The four-letter words ZooKeeper answers on its client port.
const FOUR_LETTER_WORDS: [&str; 16] = [
    "ruok", "srvr", "stat", "mntr", "conf", "cons", "wchs", "envi", "crst", "srst", "dump", "wchc", "wchp", "dirs",
    "isro", "hash",
];

/// A connect must arrive this soon after the connection opens.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

async fn to_server(shared: &Shared, msg: ZkMsg) -> bool {
    shared.senders[0].send(ShardMsg::Zk(msg)).await.is_ok()
}

/// Reads one length-prefixed frame body whose prefix is `len`.
async fn read_body<R: AsyncReadExt + Unpin>(reader: &mut R, len: i32, max: usize) -> Result<Vec<u8>, String> {
    if len < 0 || len as usize > max {
        return Err(format!("frame length {len} out of range (at most {max})"));
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await.map_err(|e| format!("reading a {len}-byte frame: {e}"))?;
    Ok(body)
}

pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, conn: u64) {
    let (reader, writer) = stream.into_split();
    // Buffered: a request's length and body (and any pipelined behind it) come in one read.
    let mut reader = BufReader::with_capacity(8 * 1024, reader);
    // ZooKeeper closes on a frame longer than jute.maxbuffer; so does this.
    let max = shared.config.zk_max_data_bytes;
    let Some((request, writer)) = handshake(&shared, &mut reader, writer, peer, max).await else { return };
    let (out, frames) = mpsc::unbounded_channel::<Out>();
    let credits = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let outbox = Arc::new(Outbox::default());
    let writer_outbox = Arc::clone(&outbox);
    let closed = Rc::new(Notify::new());
    let writer_closed = Rc::clone(&closed);
    let writer_task = tokio::task::spawn_local(write_frames(writer, frames, writer_outbox, writer_closed));
    let connect = ZkMsg::Connect { conn, peer, request, out, credits: Arc::clone(&credits), outbox };
    if !to_server(&shared, connect).await {
        return;
    }
    loop {
        let read = async {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).await.map_err(|e| e.to_string())?;
            read_body(&mut reader, i32::from_be_bytes(len), max).await
        };
        let body = tokio::select! {
            body = read => body,
            _ = closed.notified() => break,
        };
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                if !e.contains("early eof") {
                    tracing::warn!(%peer, error = %e, "ZooKeeper connection closed");
                }
                break;
            }
        };
        let Ok(permit) = Arc::clone(&credits).acquire_owned().await else { break };
        // The server gives the credit back when it answers.
        permit.forget();
        let msg = match Request::decode(&body) {
            Ok(request) => ZkMsg::Request { conn, request },
            Err(e @ (JuteError::UnknownOp(_) | JuteError::BadMultiOp(_))) if body.len() >= 8 => {
                let xid = i32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
                tracing::info!(%peer, error = %e, "ZooKeeper request refused");
                let code = match e {
                    JuteError::UnknownOp(super::jute::op::RECONFIG) => err::RECONFIG_DISABLED,
                    _ => err::UNIMPLEMENTED,
                };
                ZkMsg::Refused { conn, xid, code }
            }
            Err(e) => {
                let op = body.get(4..8).map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")));
                tracing::warn!(%peer, error = %e, ?op, "malformed ZooKeeper request; closing the connection");
                break;
            }
        };
        if !to_server(&shared, msg).await {
            break;
        }
    }
    let _ = to_server(&shared, ZkMsg::Closed { conn }).await;
    // The server dropped its sender: the writer ends after what is queued.
    let _ = writer_task.await;
}

/// The connection's first frame: a four-letter word (answered, and the connection ends) or a
/// ConnectRequest, given back with the writer for the session.
async fn handshake(
    shared: &Shared,
    reader: &mut BufReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    peer: SocketAddr,
    max: usize,
) -> Option<(ConnectRequest, OwnedWriteHalf)> {
    let mut first = [0u8; 4];
    match tokio::time::timeout(CONNECT_TIMEOUT, reader.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        _ => return None,
    }
    if let Some(word) = std::str::from_utf8(&first).ok().filter(|w| FOUR_LETTER_WORDS.contains(w)) {
        let (reply, answer) = oneshot::channel();
        if to_server(shared, ZkMsg::FourLetter { word: word.to_owned(), peer, reply }).await {
            if let Ok(text) = answer.await {
                let _ = writer.write_all(text.as_bytes()).await;
                let _ = writer.shutdown().await;
            }
        }
        return None;
    }
    let body = match tokio::time::timeout(CONNECT_TIMEOUT, read_body(reader, i32::from_be_bytes(first), max)).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "ZooKeeper connect frame refused; closing the connection");
            return None;
        }
        Err(_) => return None,
    };
    let request = match ConnectRequest::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "malformed ZooKeeper ConnectRequest; closing the connection");
            return None;
        }
    };
    Some((request, writer))
}

/// Writes what the server sends this connection, batching whatever is queued into one write,
/// until the server closes it or gives up on a client that does not read.
async fn write_frames(
    writer: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Out>,
    writer_outbox: Arc<Outbox>,
    writer_closed: Rc<Notify>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    'outer: while let Some(first) = frames.recv().await {
        let mut next = Some(first);
        // Everything queued goes out in one write.
        while let Some(item) = next {
            match item {
                Out::Frame(frame) => {
                    let written = tokio::select! {
                        written = writer.write_all(&frame) => written.is_ok(),
                        // The server gave up on a client that does not read.
                        _ = writer_outbox.abort.notified() => false,
                    };
                    if !written {
                        break 'outer;
                    }
                    writer_outbox.queued.fetch_sub(frame.len(), std::sync::atomic::Ordering::Relaxed);
                }
                Out::Close => {
                    let _ = writer.flush().await;
                    break 'outer;
                }
            }
            next = frames.try_recv().ok();
        }
        let flushed = tokio::select! {
            flushed = writer.flush() => flushed.is_ok(),
            _ = writer_outbox.abort.notified() => false,
        };
        if !flushed {
            break;
        }
    }
    let _ = writer.shutdown().await;
    writer_closed.notify_one();
}
