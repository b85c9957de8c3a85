//! A partition leader's answer to a fetch: the committed batches from an offset, as a file range to
//! send with sendfile.

use super::*;

impl<S: NodeStorage> ShardState<S> {
    pub(super) fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: u64,
        current_leader_epoch: i32,
    ) -> FetchOutcome {
        let empty = |error: ResponseError| FetchOutcome {
            error: error.code(),
            high_watermark: -1,
            log_start_offset: -1,
            records: None,
        };
        let p = match self.leading(topic, partition, current_leader_epoch) {
            Ok(p) => p,
            Err(error) => return empty(error),
        };
        let log = p.replica.raft.log();
        let high_watermark = p.replica.raft.committed();
        let log_start_offset = p.log_start();
        let out_of_range = FetchOutcome {
            error: ResponseError::OffsetOutOfRange.code(),
            high_watermark,
            log_start_offset,
            records: None,
        };
        if offset < log_start_offset || offset > log.log_end_offset() {
            return out_of_range;
        }
        // Batches that compaction left without a record are skipped: a response of nothing but
        // such batches stalls clients (librdkafka reports the "message" as too large), while a
        // response starting past the fetch offset is what they expect of a compacted topic.
        let mut read = log.read(offset, max_bytes.max(1), Some(high_watermark));
        while let Ok(Some(slice)) = &read {
            if slice.records > 0 || slice.next_offset >= high_watermark {
                break;
            }
            read = log.read(slice.next_offset, max_bytes.max(1), Some(high_watermark));
        }
        match read {
            Ok(None) => FetchOutcome { error: 0, high_watermark, log_start_offset, records: None },
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
                FetchOutcome { error: 0, high_watermark, log_start_offset, records: Some(records) }
            }
            Err(LogError::OffsetOutOfRange { .. }) => out_of_range,
            Err(e) => {
                tracing::error!(topic, partition, error = %e, "read failed");
                empty(ResponseError::KafkaStorageError)
            }
        }
    }
}
