//! The transaction APIs (KIP-98): the producer's (InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) and the admin's (DescribeTransactions,
//! ListTransactions) go to the transaction coordinator; TxnOffsetCommit to the group
//! coordinator; WriteTxnMarkers and DescribeProducers to the partitions' leaders.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedTxn,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};

use super::str;
use crate::error::code;
use crate::group::CommitEntry;
use crate::state::BrokerState;
use crate::txn::markers::{self, MarkerRequest};
use crate::txn::metadata::{TxnMetadata, TxnState};

/// WriteTxnMarkers: a coordinator (maybe this broker's own) ends a transaction in the
/// partitions led here.
pub async fn write_txn_markers(
    state: &Arc<BrokerState>,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let partitions: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|&p| (t.name.0.to_string(), p))
            })
            .collect();
        let request = MarkerRequest {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
            partitions,
        };
        let codes = markers::write_local(state, &request).await;
        let mut by_topic: BTreeMap<String, Vec<WritableTxnMarkerPartitionResult>> = BTreeMap::new();
        for ((topic, index), c) in request.partitions.into_iter().zip(codes) {
            by_topic.entry(topic).or_default().push(
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(index)
                    .with_error_code(c),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(
                    by_topic
                        .into_iter()
                        .map(|(name, partitions)| {
                            WritableTxnMarkerTopicResult::default()
                                .with_name(TopicName(str(name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                ),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}

/// TxnOffsetCommit: a transactional producer sends a group's offsets into its
/// transaction; they count for the group once the transaction commits.
///
/// The group's partition of `__consumer_offsets` is checked like a produced partition
/// (see [`crate::txn::verify`]): verified to be in the transaction, or added to it for
/// v5+ (transaction version 2, whose producers send no AddOffsetsToTxn).
pub async fn txn_offset_commit(
    state: &Arc<BrokerState>,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let refused = in_transaction(state, &req, version).await.err();
    let mut entries = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            entries.push(CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    // Before v3 the request names no member: the commit is taken as a simple one.
    let (member, instance, generation) = if version >= 3 {
        (
            req.member_id.to_string(),
            req.group_instance_id.as_ref().map(|i| i.to_string()),
            req.generation_id,
        )
    } else {
        (String::new(), None, -1)
    };
    let result = match refused {
        Some(c) => Err(c),
        None => {
            state
                .groups
                .commit(
                    state,
                    &group,
                    &member,
                    instance.as_deref(),
                    generation,
                    &entries,
                    Some((req.producer_id.0, req.producer_epoch)),
                )
                .await
        }
    };
    let mut codes = match result {
        Ok(codes) => codes.into_iter(),
        Err(e) => vec![e; entries.len()].into_iter(),
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(code::UNKNOWN_SERVER_ERROR))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// Whether the group's offsets partition may take the producer's transactional offsets:
/// it is in the producer's transaction (asked of the coordinator, or added for v5+), or
/// the transaction is already open there. The error is a code TxnOffsetCommit clients
/// act on: fenced, not in the transaction, or retriable.
async fn in_transaction(
    state: &Arc<BrokerState>,
    req: &TxnOffsetCommitRequest,
    version: i16,
) -> Result<(), i16> {
    use crate::txn::verify::{self, Ask};
    let producer = (req.producer_id.0, req.producer_epoch);
    let partition = offsets_partition(state, &req.group_id.0).await?;
    let topic = crate::group::offsets::TOPIC;
    if verify::open_here(state, topic, partition, producer) {
        return Ok(());
    }
    let ask = if version >= 5 { Ask::Add } else { Ask::Verify };
    let id = req.transactional_id.0.to_string();
    let codes = verify::ask(state, &id, producer, &[(topic.to_string(), partition)], ask).await;
    match codes.first().copied().unwrap_or(code::UNKNOWN_SERVER_ERROR) {
        code::NONE => Ok(()),
        code::PRODUCER_FENCED | code::INVALID_PRODUCER_EPOCH => Err(code::INVALID_PRODUCER_EPOCH),
        code::INVALID_TXN_STATE | code::INVALID_PRODUCER_ID_MAPPING => Err(code::INVALID_TXN_STATE),
        code::CONCURRENT_TRANSACTIONS => Err(code::CONCURRENT_TRANSACTIONS),
        // The coordinator could not say: retriable, without looking up the group's
        // coordinator again (this broker is it).
        _ => Err(code::COORDINATOR_LOAD_IN_PROGRESS),
    }
}

/// The group's partition of `__consumer_offsets`, creating the topic if it is missing
/// (which commits metadata, so off the async workers).
async fn offsets_partition(state: &Arc<BrokerState>, group: &str) -> Result<i32, i16> {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.groups.ensure_topic(&st)).await {
        Ok(Ok(())) => Ok(state.groups.offsets_partition(state, group)),
        Ok(Err(c)) => Err(c),
        Err(_) => Err(code::COORDINATOR_NOT_AVAILABLE),
    }
}

/// DescribeProducers: the producers each partition led here remembers, with the start
/// of their open transaction (`kafka-transactions.sh find-hanging` reads this).
pub fn describe_producers(
    state: &BrokerState,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let base = PartitionResponse::default().with_partition_index(index);
                    let Some(p) = state.replicas.get(&name, index) else {
                        return base.with_error_code(state.missing_partition_code(&name, index));
                    };
                    if let Err(c) = p.check_leader_epoch(-1) {
                        return base.with_error_code(c);
                    }
                    let producers = p
                        .log
                        .producer_states()
                        .into_iter()
                        .map(|(id, e)| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(id))
                                .with_producer_epoch(e.epoch as i32)
                                .with_last_sequence(e.batches.back().map_or(-1, |b| b.last_seq))
                                .with_last_timestamp(e.last_timestamp)
                                .with_coordinator_epoch(e.coordinator_epoch)
                                .with_current_txn_start_offset(
                                    e.current_txn_first_offset.unwrap_or(-1),
                                )
                        })
                        .collect();
                    base.with_error_code(code::NONE)
                        .with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// PRODUCER_FENCED is newer than some request versions: their clients know it as
/// INVALID_PRODUCER_EPOCH, which Kafka answers them instead.
fn fenced_for(c: i16, knows_fenced: bool) -> i16 {
    if c == code::PRODUCER_FENCED && !knows_fenced {
        code::INVALID_PRODUCER_EPOCH
    } else {
        c
    }
}

/// InitProducerId: an idempotent producer gets a fresh producer id; a transactional one
/// goes to its transaction coordinator, which bumps its epoch (fencing older producers).
pub async fn init_producer_id(
    state: &Arc<BrokerState>,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let Some(id) = req.transactional_id.as_ref().map(|i| i.0.to_string()) else {
        let st = state.clone();
        return match tokio::task::spawn_blocking(move || st.controller.allocate_producer_id()).await
        {
            Ok(Ok(pid)) => InitProducerIdResponse::default()
                .with_error_code(code::NONE)
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0),
            other => {
                if let Ok(Err(e)) = other {
                    tracing::error!(error = %e, "allocating a producer id failed");
                }
                InitProducerIdResponse::default()
                    .with_error_code(code::COORDINATOR_NOT_AVAILABLE)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        };
    };
    // KIP-360 (v3+): a producer that had an id says which, to be bumped in place.
    let expected =
        (version >= 3 && req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let result = state
        .transactions
        .init_producer_id(state, &id, req.transaction_timeout_ms, expected)
        .await;
    match result {
        Ok((pid, epoch)) => InitProducerIdResponse::default()
            .with_error_code(code::NONE)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(c) => InitProducerIdResponse::default()
            .with_error_code(fenced_for(c, version >= 4))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

/// AddPartitionsToTxn: v0-3 from a producer (one transaction); v4+ batched from brokers,
/// possibly only verifying that partitions are in their transactions.
pub async fn add_partitions_to_txn(
    state: &Arc<BrokerState>,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let results = add_one(
            state,
            &req.v3_and_below_transactional_id.0,
            (
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
            ),
            &req.v3_and_below_topics,
            false,
            version >= 2,
            false,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add_one(
            state,
            &t.transactional_id.0,
            (t.producer_id.0, t.producer_epoch),
            &t.topics,
            t.verify_only,
            true,
            true,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default()
        .with_error_code(code::NONE)
        .with_results_by_transaction(out)
}

/// One transaction's partitions: each partition's code. Partitions of unknown topics
/// fail the request, the others are then not attempted, as Kafka answers.
async fn add_one(
    state: &Arc<BrokerState>,
    id: &str,
    producer: (i64, i16),
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    knows_fenced: bool,
    knows_batches: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let image = state.controller.image();
    let wanted: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.0.to_string(), p)))
        .collect();
    let unknown: Vec<bool> = wanted
        .iter()
        .map(|(t, p)| {
            image
                .topic(t)
                .is_none_or(|t| !t.partitions.iter().any(|x| x.partition == *p))
        })
        .collect();
    let codes: Vec<i16> = if unknown.iter().any(|u| *u) {
        unknown
            .iter()
            .map(|&u| {
                if u {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    code::OPERATION_NOT_ATTEMPTED
                }
            })
            .collect()
    } else if verify_only {
        match state
            .transactions
            .verify_partitions(state, id, producer, &wanted)
        {
            Ok(codes) => codes,
            Err(c) => vec![c; wanted.len()],
        }
    } else {
        // v4+ adds come from brokers adding the partitions a transaction version 2
        // producer wrote to; v0-3 from a classic producer itself.
        let client_version = if knows_batches { 2 } else { 1 };
        let c = match state
            .transactions
            .add_partitions(state, id, producer, &wanted, client_version)
            .await
        {
            Ok(()) => code::NONE,
            Err(c) => fenced_for(c, knows_fenced),
        };
        vec![c; wanted.len()]
    };
    let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for ((topic, p), c) in wanted.into_iter().zip(codes) {
        by_topic.entry(topic).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(p)
                .with_partition_error_code(c),
        );
    }
    by_topic
        .into_iter()
        .map(|(name, results)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(str(name)))
                .with_results_by_partition(results)
        })
        .collect()
}

/// AddOffsetsToTxn: the group's partition of `__consumer_offsets` joins the transaction,
/// so that its marker settles the offsets TxnOffsetCommit writes there.
pub async fn add_offsets_to_txn(
    state: &Arc<BrokerState>,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let c = match offsets_partition(state, &req.group_id.0).await {
        Err(c) => c,
        Ok(p) => match state
            .transactions
            .add_partitions(
                state,
                &req.transactional_id.0,
                (req.producer_id.0, req.producer_epoch),
                &[(crate::group::offsets::TOPIC.to_string(), p)],
                1,
            )
            .await
        {
            Ok(()) => code::NONE,
            Err(c) => fenced_for(c, version >= 2),
        },
    };
    AddOffsetsToTxnResponse::default().with_error_code(c)
}

/// EndTxn: commit or abort. Answered once the decision is durable; the markers follow.
/// v5+ is transaction version 2: the epoch is bumped, and the answer carries the producer
/// id and epoch to go on with.
pub async fn end_txn(state: &Arc<BrokerState>, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let client_version = if version >= 5 { 2 } else { 1 };
    let (c, producer) = match state
        .transactions
        .end_txn(
            state,
            &req.transactional_id.0,
            (req.producer_id.0, req.producer_epoch),
            req.committed,
            client_version,
        )
        .await
    {
        Ok(p) => (code::NONE, p),
        Err(c) => (fenced_for(c, version >= 2), (-1, -1)),
    };
    let response = EndTxnResponse::default().with_error_code(c);
    // The fields exist from v5 only; older versions must leave them at their defaults.
    if version >= 5 {
        response
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
    } else {
        response
    }
}

fn txn_state(md: &TxnMetadata) -> DescribedTxn {
    DescribedTxn::default()
        .with_error_code(code::NONE)
        .with_transactional_id(TransactionalId(str(md.transactional_id.clone())))
        .with_transaction_state(str(md.state.name()))
        .with_transaction_timeout_ms(md.timeout_ms)
        .with_transaction_start_time_ms(md.start_ms)
        .with_producer_id(ProducerId(md.producer_id))
        .with_producer_epoch(md.producer_epoch)
        .with_topics(
            md.partitions_by_topic()
                .into_iter()
                .map(|(t, ps)| {
                    TopicData::default()
                        .with_topic(TopicName(str(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// DescribeTransactions: the ids this broker coordinates.
pub fn describe_transactions(
    state: &BrokerState,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| match state.transactions.describe(state, &id.0) {
            Ok(md) => txn_state(&md),
            Err(c) => DescribedTxn::default()
                .with_transactional_id(id)
                .with_error_code(c)
                .with_transaction_state(str(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions: the ids coordinated here, filtered by state, producer id and (v1+)
/// how long their transaction has been open.
pub fn list_transactions(
    state: &BrokerState,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let all = match state.transactions.list() {
        Ok(all) => all,
        Err(c) => return ListTransactionsResponse::default().with_error_code(c),
    };
    let known = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "PrepareEpochFence",
    ];
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|s| !known.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = crate::state::now_ms();
    let listed = all
        .into_iter()
        .filter(|md| {
            req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|s| s.as_str() == md.state.name())
        })
        .filter(|md| {
            req.producer_id_filters.is_empty()
                || req
                    .producer_id_filters
                    .contains(&ProducerId(md.producer_id))
        })
        .filter(|md| {
            version < 1
                || req.duration_filter < 0
                || md.state == TxnState::Ongoing
                    && md.start_ms >= 0
                    && now - md.start_ms >= req.duration_filter
        })
        .map(|md| {
            ListedTxn::default()
                .with_transactional_id(TransactionalId(str(md.transactional_id.clone())))
                .with_producer_id(ProducerId(md.producer_id))
                .with_transaction_state(str(md.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_error_code(code::NONE)
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
