//! DescribeLogDirs: this node's one log directory (`<data>/kafka`), the partitions it holds
//! there with their sizes, and (v4+) the file system's total and usable bytes.

use super::str_bytes;
use crate::shared::ShardCtx;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use std::collections::BTreeMap;
use std::rc::Rc;

pub async fn handle(ctx: Rc<ShardCtx>, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // None: every topic; else the topics and partitions asked for.
    let wanted: Option<BTreeMap<String, Vec<i32>>> =
        request.topics.map(|topics| topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let (stats, _) = crate::admin::partition_stats(&ctx.shared).await;
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in stats {
        let asked = wanted.as_ref().is_none_or(|w| w.get(&p.topic).is_some_and(|ps| ps.contains(&p.partition)));
        if !asked {
            continue;
        }
        let mut partition = DescribeLogDirsPartition::default();
        partition.partition_index = p.partition;
        partition.partition_size = p.size_bytes as i64;
        // How far this replica's log is behind the partition's high watermark (0 on a leader).
        partition.offset_lag = (p.high_watermark - p.log_end_offset).max(0);
        topics.entry(p.topic).or_default().push(partition);
    }
    let dir = ctx.shared.config.data_dir.join("kafka");
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = str_bytes(std::path::absolute(&dir).unwrap_or(dir.clone()).display().to_string());
    result.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = DescribeLogDirsTopic::default();
            t.name = TopicName(str_bytes(name));
            t.partitions = partitions;
            t
        })
        .collect();
    (result.total_bytes, result.usable_bytes) = file_system_bytes(&dir).unwrap_or((-1, -1));
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    response
}

/// The total and usable (for an unprivileged user) bytes of the file system holding `dir`.
fn file_system_bytes(dir: &std::path::Path) -> Option<(i64, i64)> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and a zeroed statvfs is
    // valid for statvfs(3) to fill.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        stat
    };
    let block = stat.f_frsize as i64;
    Some((stat.f_blocks as i64 * block, stat.f_bavail as i64 * block))
}
