//! DescribeLogDirs: the data directory, its partitions and their sizes.

use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        None => broker
            .topics
            .all_topics()
            .into_iter()
            .map(|topic| (topic.name, None))
            .collect(),
        Some(topics) => topics
            .into_iter()
            .map(|topic| (topic.topic.to_string(), Some(topic.partitions)))
            .collect(),
    };
    let mut topics = Vec::new();
    for (name, only) in wanted {
        let Some(partitions) = broker.partitions.topic(&name) else {
            continue;
        };
        let described: Vec<DescribeLogDirsPartition> = partitions
            .iter()
            .filter(|partition| {
                only.as_ref()
                    .is_none_or(|only| only.contains(&partition.index))
            })
            .map(|partition| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(partition.index)
                    .with_partition_size(partition.size_bytes() as i64)
            })
            .collect();
        topics.push(
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(described),
        );
    }
    let (total_bytes, usable_bytes) = disk_space(&broker.config.data_dir);
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(broker.config.data_dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// Total and available bytes of the file system holding `dir`; -1 if unknown.
fn disk_space(dir: &std::path::Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a
    // valid NUL-terminated string that outlives the call.
    unsafe {
        let mut stats: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stats) != 0 {
            return (-1, -1);
        }
        let block = stats.f_frsize as i64;
        (stats.f_blocks as i64 * block, stats.f_bavail as i64 * block)
    }
}
