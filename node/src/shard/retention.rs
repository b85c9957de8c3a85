//! Retention and compaction below the commit point, on the wall clock; directories of deleted
//! topics left by a crash.

use super::*;

impl<S: NodeStorage> ShardState<S> {
    /// Runs retention on every partition, with the wall clock (the engine never reads it).
    /// Only committed data is deleted: a follower may still need what is past the commit point.
    pub fn apply_retention(&mut self) {
        self.compact();
        let now = self.shared.env.now_ms();
        for ((topic, partition), p) in &mut self.partitions {
            let committed = p.replica.raft.committed();
            match p.replica.raft.log_mut().apply_retention_below(now, committed) {
                Ok(outcome) if outcome.deleted_segments > 0 => {
                    tracing::info!(
                        topic,
                        partition,
                        segments = outcome.deleted_segments,
                        bytes = outcome.deleted_bytes,
                        "retention deleted segments"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(topic, partition, error = %e, "retention failed"),
            }
            // Whole segments below where DeleteRecords moved the start go too.
            let below = p.records_start.min(committed);
            if below > p.replica.raft.log().log_start_offset() {
                match p.replica.raft.log_mut().delete_below(below) {
                    Ok(outcome) if outcome.deleted_segments > 0 => {
                        tracing::info!(
                            topic,
                            partition,
                            below,
                            segments = outcome.deleted_segments,
                            "deleted records' segments removed"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(topic, partition, error = %e, "removing deleted records' segments failed")
                    }
                }
            }
        }
    }

    /// Compacts the partitions whose topic says cleanup.policy=compact, below the commit point
    /// (every replica on its own: they hold the same batches, and compaction keeps offsets).
    pub(super) fn compact(&mut self) {
        let now = self.shared.env.now_ms();
        for ((topic, partition), p) in &mut self.partitions {
            let committed = p.replica.raft.committed();
            let log = p.replica.raft.log_mut();
            // Only once what was written since the last compaction is the topic's
            // min.cleanable.dirty.ratio of the log (by size; 0.5 by default): each pass reads
            // the whole log.
            let configs = self.snapshot.topic(topic).map(|m| &m.configs);
            let ratio = configs.map_or(0.5, crate::topic_config::min_cleanable_dirty_ratio);
            let max_lag = configs.map_or(i64::MAX, crate::topic_config::max_compaction_lag_ms);
            let (size, dirty) = (log.size_bytes(), log.size_bytes().saturating_sub(p.compacted_size));
            if log.config().cleanup_policy == braid_engine::log::CleanupPolicy::Delete || log.segment_count() < 2 {
                continue;
            }
            // Or once the oldest record written since the last compaction is older than
            // max.compaction.lag.ms, whatever the ratio.
            let overdue = max_lag < i64::MAX
                && first_timestamp(log, p.compacted_to).is_some_and(|t| now.saturating_sub(t) > max_lag);
            if (dirty as f64) < ratio * size as f64 && !overdue {
                continue;
            }
            let result = log.compact(now, committed);
            p.compacted_size = log.size_bytes();
            p.compacted_to = committed;
            match result {
                Ok(outcome) if outcome.segments > 0 => tracing::info!(
                    topic,
                    partition,
                    segments = outcome.segments,
                    records_removed = outcome.records_removed,
                    bytes_before = outcome.bytes_before,
                    bytes_after = outcome.bytes_after,
                    "compacted"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(topic, partition, error = %e, "compaction failed"),
            }
        }
    }
}

/// The timestamp of the batch holding `offset` (its first record's), if the log holds it.
fn first_timestamp<S: braid_engine::io::Storage>(log: &Log<S>, offset: i64) -> Option<i64> {
    let bytes = log.batch_at(offset.max(log.log_start_offset())).ok()??;
    BatchHeader::parse(&bytes).ok().map(|h| h.base_timestamp)
}

/// Removes partition directories of topics that no longer exist (left by a crash between a
/// delete's commit and the directory's removal).
pub fn remove_orphan_dirs<S: NodeStorage>(storage: &S, data_dir: &std::path::Path, snapshot: &SharedSnapshot) {
    let live: HashSet<PathBuf> = snapshot
        .topics
        .iter()
        .flat_map(|(name, meta)| {
            (0..meta.partitions.len() as i32).map(move |p| partition_dir(data_dir, name, p, meta.id))
        })
        .collect();
    for path in storage.subdirectories(&data_dir.join("kafka")) {
        if !live.contains(&path) {
            tracing::info!(dir = %path.display(), "removing the directory of a deleted partition");
            let _ = storage.remove_dir_all(&path);
        }
    }
}
