//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4),
//! latest tiered (-5, none: no tiered storage), and the first offset at or after a time.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::error::code;
use crate::state::BrokerState;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(state: &BrokerState, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // read_committed (v2+) sees up to the last stable offset, not the high watermark.
    let read_committed = version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let Some(partition) = state.replicas.get(&name, p.partition_index) else {
                        return base
                            .with_error_code(state.missing_partition_code(&name, p.partition_index))
                            .with_offset(-1)
                            .with_timestamp(-1);
                    };
                    let epoch = match partition.check_leader_epoch(p.current_leader_epoch) {
                        Ok(e) => e,
                        Err(c) => {
                            return base.with_error_code(c).with_offset(-1).with_timestamp(-1)
                        }
                    };
                    let hw = partition.high_watermark();
                    let hw = if read_committed {
                        partition.log.last_stable_offset(hw)
                    } else {
                        hw
                    };
                    let found = match p.timestamp {
                        LATEST => Ok(Some((-1, hw))),
                        EARLIEST | EARLIEST_LOCAL => {
                            Ok(Some((-1, partition.log.log_start_offset())))
                        }
                        LATEST_TIERED => Ok(Some((-1, -1))),
                        MAX_TIMESTAMP => partition.log.max_timestamp(),
                        ts => partition
                            .log
                            .offset_for_timestamp(ts)
                            .map(|r| r.map(|(offset, ts)| (ts, offset))),
                    };
                    match found {
                        // Records past the high watermark (or, read_committed, the last
                        // stable offset) are not visible yet.
                        Ok(Some((ts, offset))) if offset <= hw => base
                            .with_error_code(code::NONE)
                            .with_timestamp(ts)
                            .with_offset(offset)
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Ok(_) => base
                            .with_error_code(code::NONE)
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Err(e) => base
                            .with_error_code(e.kafka_code())
                            .with_timestamp(-1)
                            .with_offset(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
