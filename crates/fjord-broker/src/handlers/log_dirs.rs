//! DescribeLogDirs: this broker's one log directory, the size of each partition it
//! hosts, and how far each copy is behind the high watermark (`kafka-log-dirs.sh`, and
//! the disk-usage views of admin tools, ask every broker in turn).

use std::collections::BTreeMap;
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::str;
use crate::error::code;
use crate::state::BrokerState;

pub fn describe(state: &BrokerState, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // A null list means every partition here; otherwise only those named.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in state.replicas.all() {
        if let Some(w) = &wanted {
            if !w.get(&p.topic).is_some_and(|ps| ps.contains(&p.index)) {
                continue;
            }
        }
        // A follower's lag behind what is committed; a leader's is 0.
        let lag = (p.high_watermark() - p.log.log_end_offset()).max(0);
        topics.entry(p.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(p.log.size_bytes() as i64)
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    let (total, usable) = disk_space(&state.config.data_dir).unwrap_or((-1, -1));
    let dir = state
        .config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| state.config.data_dir.clone());
    let result = DescribeLogDirsResult::default()
        .with_error_code(code::NONE)
        .with_log_dir(str(dir.display().to_string()))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, mut partitions)| {
                    partitions.sort_by_key(|p| p.partition_index);
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(str(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default()
        .with_error_code(code::NONE)
        .with_results(vec![result])
}

/// The file system's size and the space left to an unprivileged writer, in bytes.
fn disk_space(dir: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a valid out-parameter.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as i64;
    Some((st.f_blocks as i64 * block, st.f_bavail as i64 * block))
}
