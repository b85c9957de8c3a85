//! The response writer of a connection: responses in request order; record bytes from segment
//! files with sendfile(2), so they never pass through user space.

use crate::msg::RecordsChunk;
use crate::shared::ShardCtx;
use bytes::Bytes;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// A piece of a response: bytes in memory, or a range of a segment file.
#[derive(Debug)]
pub enum Chunk {
    Bytes(Bytes),
    File(RecordsChunk),
}

impl Chunk {
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(b) => b.len() as u64,
            Chunk::File(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub async fn write_responses(
    ctx: Rc<ShardCtx>,
    mut writer: OwnedWriteHalf,
    mut pending: mpsc::Receiver<super::Pending>,
    closing: std::rc::Rc<std::cell::Cell<bool>>,
) {
    while let Some(response) = pending.recv().await {
        let chunks = response.await;
        if closing.get() {
            tracing::info!("closing a connection its client has left for a newer one (a late transactional request)");
            break;
        }
        let Some(chunks) = chunks else { continue };
        for chunk in chunks {
            let len = chunk.len();
            let result = match chunk {
                Chunk::Bytes(bytes) => writer.write_all(&bytes).await,
                Chunk::File(RecordsChunk::File { file, position, len }) => {
                    send_file(&writer, &file, position, len).await
                }
                Chunk::File(RecordsChunk::Bytes(bytes)) => writer.write_all(&bytes).await,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "client went away while a response was written");
                return;
            }
            ctx.shared.metrics.bytes_out.fetch_add(len, Relaxed);
        }
    }
    let _ = writer.shutdown().await;
}

/// Sends `len` bytes of a file from `position` to the socket with sendfile(2).
async fn send_file(writer: &OwnedWriteHalf, file: &std::fs::File, position: u64, len: u64) -> std::io::Result<()> {
    let stream = writer.as_ref();
    let socket = stream.as_raw_fd();
    let file = file.as_raw_fd();
    let mut offset = position as libc::off_t;
    let end = (position + len) as libc::off_t;
    while offset < end {
        stream.writable().await?;
        let result = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call; `offset` is a
            // valid pointer that sendfile advances.
            let sent = unsafe { libc::sendfile(socket, file, &mut offset, (end - offset) as usize) };
            if sent < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(sent)
            }
        });
        match result {
            Ok(0) => {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment shorter than its slice"))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
