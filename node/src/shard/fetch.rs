//! A partition leader's answer to a fetch: the committed batches from an offset, as a file range to
//! send with sendfile.

use super::txn::txn_index;
use super::*;

impl<S: NodeStorage> ShardState<S> {
    /// The committed batches from `offset` (read_committed, `committed_only`: up to the last
    /// stable offset, with the aborted transactions among them).
    pub(super) fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: u64,
        (current_leader_epoch, committed_only): (i32, bool),
    ) -> FetchOutcome {
        let empty = FetchOutcome::failed;
        if let Err(error) = self.leading(topic, partition, current_leader_epoch) {
            return empty(error);
        }
        let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) else {
            return empty(ResponseError::UnknownTopicOrPartition);
        };
        let high_watermark = p.replica.raft.committed();
        // The log's transactions are read for read_committed fetches; others report what they
        // say if they were read already.
        let last_stable_offset = if committed_only {
            match txn_index(p) {
                Ok(index) => index.last_stable(high_watermark),
                Err(e) => {
                    tracing::error!(topic, partition, error = %e, "reading the log's transactions failed");
                    return empty(ResponseError::KafkaStorageError);
                }
            }
        } else {
            p.replica.raft.log().transactions_if_built().map_or(high_watermark, |t| t.last_stable(high_watermark))
        };
        let limit = if committed_only { last_stable_offset } else { high_watermark };
        let log = p.replica.raft.log();
        let log_start_offset = p.log_start();
        let answer = |records: Option<RecordsChunk>, to: i64| FetchOutcome {
            error: 0,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            records,
            aborted: committed_only.then(|| aborted_between(log, offset, to)),
        };
        if offset < log_start_offset || offset > log.log_end_offset() {
            return FetchOutcome {
                error: ResponseError::OffsetOutOfRange.code(),
                records: None,
                ..answer(None, offset)
            };
        }
        // Batches that compaction left without a record are skipped: a response of nothing but
        // such batches stalls clients (librdkafka reports the "message" as too large), while a
        // response starting past the fetch offset is what they expect of a compacted topic.
        let mut read = log.read(offset, max_bytes.max(1), Some(limit));
        while let Ok(Some(slice)) = &read {
            if slice.records > 0 || slice.next_offset >= limit {
                break;
            }
            read = log.read(slice.next_offset, max_bytes.max(1), Some(limit));
        }
        match read {
            Ok(None) => answer(None, offset),
            Ok(Some(slice)) => {
                let fd = log.segment_file(slice.segment_base_offset).and_then(|f| {
                    use braid_engine::io::StorageFile;
                    f.raw_fd()
                });
                // SAFETY: the descriptor belongs to an open segment file of this shard's log; it is
                // only borrowed for the duration of the dup.
                let file =
                    fd.and_then(|fd| unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().ok()).map(File::from);
                let records = match (fd, file) {
                    (_, Some(file)) => {
                        RecordsChunk::File { file: Arc::new(file), position: slice.position, len: slice.len }
                    }
                    (Some(_), None) => return empty(ResponseError::KafkaStorageError),
                    // A storage without descriptors (the simulator's): the bytes themselves.
                    (None, None) => match log.read_bytes(&slice) {
                        Ok(bytes) => RecordsChunk::Bytes(Bytes::from(bytes)),
                        Err(e) => {
                            tracing::error!(topic, partition, error = %e, "read failed");
                            return empty(ResponseError::KafkaStorageError);
                        }
                    },
                };
                answer(Some(records), slice.next_offset)
            }
            Err(LogError::OffsetOutOfRange { .. }) => {
                FetchOutcome { error: ResponseError::OffsetOutOfRange.code(), ..answer(None, offset) }
            }
            Err(e) => {
                tracing::error!(topic, partition, error = %e, "read failed");
                empty(ResponseError::KafkaStorageError)
            }
        }
    }
}

/// The aborted transactions a read_committed fetch of [from, to) returns.
fn aborted_between<S: braid_engine::io::Storage>(
    log: &braid_engine::log::Log<S>,
    from: i64,
    to: i64,
) -> Vec<crate::txn::AbortedTxn> {
    if crate::mutation::active(crate::mutation::Mutation::AbortedTransactionsHidden) {
        return Vec::new();
    }
    log.transactions_if_built().map(|t| t.aborted_between(from, to)).unwrap_or_default()
}
