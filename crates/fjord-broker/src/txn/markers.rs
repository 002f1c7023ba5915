//! Transaction markers on the partition side: what a leader does with WriteTxnMarkers,
//! whether the coordinator sent it from another broker or runs here.
//!
//! A marker is appended as the leader, made durable, and answered once every in-sync
//! replica has it (the high watermark passed it), as Kafka appends markers with
//! acks=all: the coordinator completes a transaction only when all its markers are
//! answered, so an answered marker must survive the loss of the leader.

use std::sync::Arc;
use std::time::Duration;

use fjord_log::txn::Marker;

use crate::error::{code, BrokerError};
use crate::state::{now_ms, BrokerState};

/// How long a marker waits for the in-sync replicas before it is answered with a
/// timeout (the coordinator then sends it again).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One coordinator's request to end a transaction in some partitions.
#[derive(Debug, Clone)]
pub struct MarkerRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

/// Writes the marker into every partition of `req` led here; the error code of each.
pub async fn write_local(state: &Arc<BrokerState>, req: &MarkerRequest) -> Vec<i16> {
    let marker = Marker {
        commit: req.commit,
        coordinator_epoch: req.coordinator_epoch,
    };
    // Appends and fsyncs run on the blocking pool, as produce's do.
    let st = state.clone();
    let r = req.clone();
    let appended = tokio::task::spawn_blocking(move || {
        r.partitions
            .iter()
            .map(|(topic, index)| append(&st, topic, *index, &r, marker))
            .collect::<Vec<_>>()
    })
    .await;
    let appended = match appended {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "transaction marker task failed");
            return vec![code::UNKNOWN_SERVER_ERROR; req.partitions.len()];
        }
    };
    state.replicas.notify_append();
    let deadline = tokio::time::Instant::now() + REPLICATION_TIMEOUT;
    let mut codes = Vec::with_capacity(appended.len());
    for result in appended {
        let code = match result {
            Err(e) => e.kafka_code(),
            Ok((partition, next, epoch)) => {
                match partition.wait_replicated(next, epoch, 1, deadline).await {
                    Ok(()) => code::NONE,
                    Err(e) => e.kafka_code(),
                }
            }
        };
        codes.push(code);
    }
    codes
}

/// Appends and fsyncs one partition's marker; returns the partition, the offset after the
/// marker and the leader epoch it was written in.
pub(crate) fn append(
    state: &BrokerState,
    topic: &str,
    index: i32,
    req: &MarkerRequest,
    marker: Marker,
) -> Result<(Arc<crate::replica::Partition>, i64, i32), BrokerError> {
    let Some(p) = state.replicas.get(topic, index) else {
        return Err(BrokerError::Kafka(
            state.missing_partition_code(topic, index),
            format!("{topic}-{index} is not hosted on this broker"),
        ));
    };
    let epoch = p.assignment().leader_epoch;
    let info = p.append_marker(req.producer_id, req.producer_epoch, marker, now_ms())?;
    if topic == crate::group::offsets::TOPIC {
        // Offsets sent to the transaction become the group's, or go.
        state
            .groups
            .complete_txn(state, index, req.producer_id, req.commit);
    }
    let next = info.last_offset + 1;
    p.log.flush_until(next)?;
    Ok((p, next, epoch))
}
