//! Authorization of each request against the ACLs, with the operations Kafka checks
//! for each API (KafkaApis): Produce needs Write on the topic, Fetch needs Read, a group
//! commit needs Read on the group, admin requests need rights on the cluster, and so on.
//!
//! [`gate`] runs before a request's handler: a request denied as a whole gets its error
//! answer at once; otherwise the items the requester may not touch are taken out of the
//! request, and [`Fixup::apply`] puts them back into the handler's answer with
//! TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, ... as Kafka answers. Listings
//! are filtered afterwards to what the requester may describe. Handlers stay unaware of
//! ACLs; with no authorizer configured the gate returns the request untouched.

use fjord_controller::acl::op;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, TopicResponse};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{str, Outcome};
use crate::error::code;
use crate::security::authz::Authz;

/// Config resource types (DescribeConfigs, AlterConfigs).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_GROUP: i8 = 32;

/// Kafka's default messages for the authorization errors.
fn message(code_: i16) -> Option<StrBytes> {
    Some(str(match code_ {
        code::TOPIC_AUTHORIZATION_FAILED => "Topic authorization failed.",
        code::GROUP_AUTHORIZATION_FAILED => "Group authorization failed.",
        code::CLUSTER_AUTHORIZATION_FAILED => "Cluster authorization failed.",
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED => "Transactional Id authorization failed.",
        _ => return None,
    }))
}

/// What goes back into the handler's answer, or is filtered out of it.
pub enum Fixup {
    None,
    Produce(Vec<TopicProduceResponse>),
    Fetch(Vec<FetchableTopicResponse>),
    ListOffsets(Vec<ListOffsetsTopicResponse>),
    Metadata {
        denied: Vec<MetadataResponseTopic>,
        /// All topics were asked for: drop the ones the requester may not describe.
        filter: bool,
        topic_ops: bool,
        cluster_ops: bool,
    },
    CreateTopics(Vec<CreatableTopicResult>),
    DeleteTopics(Vec<DeletableTopicResult>),
    CreatePartitions(Vec<create_partitions_response::CreatePartitionsTopicResult>),
    DeleteRecords(Vec<DeleteRecordsTopicResult>),
    DescribeConfigs(Vec<DescribeConfigsResult>),
    AlterConfigs(Vec<alter_configs_response::AlterConfigsResourceResponse>),
    IncrementalAlterConfigs(Vec<incremental_alter_configs_response::AlterConfigsResourceResponse>),
    OffsetCommit(Vec<OffsetCommitResponseTopic>),
    /// v0-7: denied topics, whether all topics were asked for; v8+: per group.
    OffsetFetch {
        topics: Vec<OffsetFetchResponseTopic>,
        groups: Vec<OffsetFetchResponseGroup>,
        denied_in_group: Vec<(String, Vec<OffsetFetchResponseTopics>)>,
        filter: bool,
    },
    OffsetDelete(Vec<OffsetDeleteResponseTopic>),
    TxnOffsetCommit(Vec<TxnOffsetCommitResponseTopic>),
    DescribeProducers(Vec<TopicResponse>),
    OffsetForLeaderEpoch(Vec<OffsetForLeaderTopicResult>),
    FindCoordinator(Vec<find_coordinator_response::Coordinator>),
    DescribeGroups(Vec<describe_groups_response::DescribedGroup>, bool),
    ConsumerGroupDescribe(Vec<consumer_group_describe_response::DescribedGroup>, bool),
    DeleteGroups(Vec<delete_groups_response::DeletableGroupResult>),
    ListGroups,
    DescribeTransactions(Vec<describe_transactions_response::TransactionState>),
    ListTransactions,
    DescribeCluster(bool),
}

type Gate = Result<(RequestKind, Fixup), Outcome>;

fn answer(r: ResponseKind, v: i16) -> Outcome {
    Outcome::Respond(Box::new(r), v)
}

/// Checks a request before its handler runs; see the module documentation.
/// `auto_create_topics` is the broker's `auto.create.topics.enable`.
pub fn gate(az: &Authz, kind: RequestKind, v: i16, auto_create_topics: bool) -> Gate {
    if !az.enabled() {
        return Ok((kind, Fixup::None));
    }
    let cluster_denied = |op_: i8| !az.cluster(op_);
    const CLUSTER: i16 = code::CLUSTER_AUTHORIZATION_FAILED;
    const TOPIC: i16 = code::TOPIC_AUTHORIZATION_FAILED;
    const GROUP: i16 = code::GROUP_AUTHORIZATION_FAILED;
    const TXN: i16 = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    match kind {
        // --- records ---------------------------------------------------------------
        RequestKind::Produce(mut r) => {
            let txn_denied = r
                .transactional_id
                .as_ref()
                .is_some_and(|t| !az.transactional_id(op::WRITE, t.as_str()));
            let mut denied = Vec::new();
            r.topic_data.retain(|t| {
                let ok = !txn_denied && az.topic(op::WRITE, &az.topic_name(&t.name, t.topic_id));
                if !ok {
                    let error = if txn_denied { TXN } else { TOPIC };
                    denied.push(
                        TopicProduceResponse::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partition_responses(
                                t.partition_data
                                    .iter()
                                    .map(|p| {
                                        PartitionProduceResponse::default()
                                            .with_index(p.index)
                                            .with_error_code(error)
                                            .with_base_offset(-1)
                                            .with_log_append_time_ms(-1)
                                            .with_log_start_offset(-1)
                                            .with_error_message(message(error))
                                    })
                                    .collect(),
                            ),
                    );
                }
                ok
            });
            // An acks=0 producer reads no answers: as Kafka, the connection closes so
            // that it learns something went wrong.
            if r.acks == 0 && !denied.is_empty() {
                return Err(Outcome::Close(
                    "acks=0 produce to a topic the client may not write".into(),
                ));
            }
            Ok((RequestKind::Produce(r), Fixup::Produce(denied)))
        }
        RequestKind::Fetch(mut r) => {
            let replica = r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0;
            if replica {
                if cluster_denied(op::CLUSTER_ACTION) {
                    let resp = FetchResponse::default().with_error_code(CLUSTER);
                    return Err(answer(ResponseKind::Fetch(resp), v));
                }
                return Ok((RequestKind::Fetch(r), Fixup::None));
            }
            let denied = take_denied(
                &mut r.topics,
                |t| az.topic(op::READ, &az.topic_name(&t.topic, t.topic_id)),
                |t| {
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_error_code(TOPIC)
                                        .with_high_watermark(-1)
                                        .with_last_stable_offset(-1)
                                        .with_log_start_offset(-1)
                                })
                                .collect(),
                        )
                },
            );
            Ok((RequestKind::Fetch(r), Fixup::Fetch(denied)))
        }
        RequestKind::ListOffsets(mut r) => {
            let denied = take_denied(
                &mut r.topics,
                |t| az.topic(op::DESCRIBE, t.name.as_str()),
                |t| {
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC)
                                        .with_timestamp(-1)
                                        .with_offset(-1)
                                })
                                .collect(),
                        )
                },
            );
            Ok((RequestKind::ListOffsets(r), Fixup::ListOffsets(denied)))
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            if r.replica_id.0 >= 0 && cluster_denied(op::CLUSTER_ACTION) {
                let topics = r.topics.iter().map(|t| epoch_error(t, CLUSTER)).collect();
                let resp = OffsetForLeaderEpochResponse::default().with_topics(topics);
                return Err(answer(ResponseKind::OffsetForLeaderEpoch(resp), v));
            }
            let mut denied = Vec::new();
            if r.replica_id.0 < 0 {
                r.topics.retain(|t| {
                    let ok = az.topic(op::DESCRIBE, t.topic.as_str());
                    if !ok {
                        denied.push(epoch_error(t, TOPIC));
                    }
                    ok
                });
            }
            Ok((
                RequestKind::OffsetForLeaderEpoch(r),
                Fixup::OffsetForLeaderEpoch(denied),
            ))
        }
        RequestKind::DescribeProducers(mut r) => {
            let denied = take_denied(
                &mut r.topics,
                |t| az.topic(op::READ, t.name.as_str()),
                |t| {
                    TopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    PartitionResponse::default()
                                        .with_partition_index(*p)
                                        .with_error_code(TOPIC)
                                        .with_error_message(message(TOPIC))
                                })
                                .collect(),
                        )
                },
            );
            Ok((
                RequestKind::DescribeProducers(r),
                Fixup::DescribeProducers(denied),
            ))
        }
        // --- topics ----------------------------------------------------------------
        RequestKind::Metadata(mut r) => {
            let mut denied = Vec::new();
            let filter = r.topics.is_none();
            if let Some(topics) = r.topics.as_mut() {
                topics.retain(|t| {
                    let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                    let name = az.topic_name(&name, t.topic_id);
                    let ok = !name.is_empty() && az.topic(op::DESCRIBE, &name);
                    if !ok {
                        denied.push(
                            MetadataResponseTopic::default()
                                .with_error_code(TOPIC)
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id),
                        );
                    }
                    ok
                });
            }
            // Creating a topic on first use needs Create on the cluster or the topic: a
            // missing topic the client may not create is refused, the others go ahead.
            let auto_create = auto_create_topics && r.allow_auto_topic_creation;
            if let Some(topics) = r
                .topics
                .as_mut()
                .filter(|_| auto_create && !az.cluster(op::CREATE))
            {
                topics.retain(|t| {
                    let Some(name) = t.name.as_ref().filter(|n| !az.topic_exists(n.as_str()))
                    else {
                        return true;
                    };
                    let ok = az.topic(op::CREATE, name.as_str());
                    if !ok {
                        denied.push(
                            MetadataResponseTopic::default()
                                .with_error_code(TOPIC)
                                .with_name(t.name.clone()),
                        );
                    }
                    ok
                });
            }
            let fix = Fixup::Metadata {
                denied,
                filter,
                topic_ops: r.include_topic_authorized_operations,
                cluster_ops: r.include_cluster_authorized_operations,
            };
            Ok((RequestKind::Metadata(r), fix))
        }
        RequestKind::CreateTopics(mut r) => {
            let may_create_any = az.cluster(op::CREATE);
            let denied = take_denied(
                &mut r.topics,
                |t| may_create_any || az.topic(op::CREATE, t.name.as_str()),
                |t| {
                    CreatableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(TOPIC)
                        .with_error_message(message(TOPIC))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                },
            );
            Ok((RequestKind::CreateTopics(r), Fixup::CreateTopics(denied)))
        }
        RequestKind::DeleteTopics(mut r) => {
            let mut denied = take_denied(
                &mut r.topic_names,
                |n| az.topic(op::DELETE, n.as_str()),
                |n| {
                    DeletableTopicResult::default()
                        .with_name(Some(n.clone()))
                        .with_error_code(TOPIC)
                        .with_error_message(message(TOPIC))
                },
            );
            denied.extend(take_denied(
                &mut r.topics,
                |t| {
                    let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                    az.topic(op::DELETE, &az.topic_name(&name, t.topic_id))
                },
                |t| {
                    DeletableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_error_code(TOPIC)
                        .with_error_message(message(TOPIC))
                },
            ));
            Ok((RequestKind::DeleteTopics(r), Fixup::DeleteTopics(denied)))
        }
        RequestKind::CreatePartitions(mut r) => {
            let denied = take_denied(
                &mut r.topics,
                |t| az.topic(op::ALTER, t.name.as_str()),
                |t| {
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(TOPIC)
                        .with_error_message(message(TOPIC))
                },
            );
            Ok((
                RequestKind::CreatePartitions(r),
                Fixup::CreatePartitions(denied),
            ))
        }
        RequestKind::DeleteRecords(mut r) => {
            let denied = take_denied(
                &mut r.topics,
                |t| az.topic(op::DELETE, t.name.as_str()),
                |t| {
                    DeleteRecordsTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p.partition_index)
                                        .with_low_watermark(-1)
                                        .with_error_code(TOPIC)
                                })
                                .collect(),
                        )
                },
            );
            Ok((RequestKind::DeleteRecords(r), Fixup::DeleteRecords(denied)))
        }
        RequestKind::DescribeConfigs(mut r) => {
            let mut denied = Vec::new();
            r.resources.retain(|res| {
                let error = config_denied(
                    az,
                    res.resource_type,
                    &res.resource_name,
                    op::DESCRIBE_CONFIGS,
                );
                if let Some(e) = error {
                    denied.push(
                        DescribeConfigsResult::default()
                            .with_error_code(e)
                            .with_error_message(message(e))
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name.clone()),
                    );
                }
                error.is_none()
            });
            Ok((
                RequestKind::DescribeConfigs(r),
                Fixup::DescribeConfigs(denied),
            ))
        }
        RequestKind::AlterConfigs(mut r) => {
            let mut denied = Vec::new();
            r.resources.retain(|res| {
                let error =
                    config_denied(az, res.resource_type, &res.resource_name, op::ALTER_CONFIGS);
                if let Some(e) = error {
                    denied.push(
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_error_code(e)
                            .with_error_message(message(e))
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name.clone()),
                    );
                }
                error.is_none()
            });
            Ok((RequestKind::AlterConfigs(r), Fixup::AlterConfigs(denied)))
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let mut denied = Vec::new();
            r.resources.retain(|res| {
                let error =
                    config_denied(az, res.resource_type, &res.resource_name, op::ALTER_CONFIGS);
                if let Some(e) = error {
                    denied.push(
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_error_code(e)
                            .with_error_message(message(e))
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name.clone()),
                    );
                }
                error.is_none()
            });
            Ok((
                RequestKind::IncrementalAlterConfigs(r),
                Fixup::IncrementalAlterConfigs(denied),
            ))
        }
        // --- groups ----------------------------------------------------------------
        RequestKind::JoinGroup(r) if !az.group(op::READ, r.group_id.as_str()) => Err(answer(
            ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(GROUP)
                    .with_generation_id(-1),
            ),
            v,
        )),
        RequestKind::SyncGroup(r) if !az.group(op::READ, r.group_id.as_str()) => Err(answer(
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(GROUP)),
            v,
        )),
        RequestKind::Heartbeat(r) if !az.group(op::READ, r.group_id.as_str()) => Err(answer(
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(GROUP)),
            v,
        )),
        RequestKind::LeaveGroup(r) if !az.group(op::READ, r.group_id.as_str()) => Err(answer(
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(GROUP)),
            v,
        )),
        RequestKind::ConsumerGroupHeartbeat(r) if !az.group(op::READ, r.group_id.as_str()) => {
            Err(answer(
                ResponseKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(GROUP)
                        .with_error_message(message(GROUP)),
                ),
                v,
            ))
        }
        // KIP-848: a subscription naming a topic the member may not describe fails as a
        // whole.
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let unauthorized: Vec<String> = r
                .subscribed_topic_names
                .iter()
                .flatten()
                .filter(|t| !az.topic(op::DESCRIBE, t.as_str()))
                .map(|t| t.to_string())
                .collect();
            if unauthorized.is_empty() {
                return Ok((RequestKind::ConsumerGroupHeartbeat(r), Fixup::None));
            }
            Err(answer(
                ResponseKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(TOPIC)
                        .with_error_message(Some(str(format!(
                            "Topic authorization failed for: {}",
                            unauthorized.join(", ")
                        )))),
                ),
                v,
            ))
        }
        RequestKind::OffsetCommit(mut r) => {
            let group_ok = az.group(op::READ, r.group_id.as_str());
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = group_ok && az.topic(op::READ, &az.topic_name(&t.name, t.topic_id));
                if !ok {
                    let e = if group_ok { TOPIC } else { GROUP };
                    denied.push(
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(e)
                                    })
                                    .collect(),
                            ),
                    );
                }
                ok
            });
            Ok((RequestKind::OffsetCommit(r), Fixup::OffsetCommit(denied)))
        }
        RequestKind::OffsetFetch(mut r) => {
            let mut topics = Vec::new();
            let mut groups = Vec::new();
            let mut denied_in_group = Vec::new();
            let mut filter = false;
            if v < 8 {
                if !az.group(op::DESCRIBE, r.group_id.as_str()) {
                    let resp = OffsetFetchResponse::default().with_error_code(GROUP);
                    return Err(answer(ResponseKind::OffsetFetch(resp), v));
                }
                match r.topics.as_mut() {
                    None => filter = true,
                    Some(list) => list.retain(|t| {
                        let ok = az.topic(op::DESCRIBE, t.name.as_str());
                        if !ok {
                            topics.push(
                                OffsetFetchResponseTopic::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partition_indexes
                                            .iter()
                                            .map(|p| {
                                                OffsetFetchResponsePartition::default()
                                                    .with_partition_index(*p)
                                                    .with_committed_offset(-1)
                                                    .with_committed_leader_epoch(-1)
                                                    .with_error_code(TOPIC)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                        ok
                    }),
                }
            } else {
                r.groups.retain(|g| {
                    let ok = az.group(op::DESCRIBE, g.group_id.as_str());
                    if !ok {
                        groups.push(
                            OffsetFetchResponseGroup::default()
                                .with_group_id(g.group_id.clone())
                                .with_error_code(GROUP),
                        );
                    }
                    ok
                });
                for g in r.groups.iter_mut() {
                    let mut these = Vec::new();
                    match g.topics.as_mut() {
                        None => filter = true,
                        Some(list) => list.retain(|t| {
                            let ok = az.topic(op::DESCRIBE, &az.topic_name(&t.name, t.topic_id));
                            if !ok {
                                these.push(
                                    OffsetFetchResponseTopics::default()
                                        .with_name(t.name.clone())
                                        .with_topic_id(t.topic_id)
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|p| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(*p)
                                                        .with_committed_offset(-1)
                                                        .with_committed_leader_epoch(-1)
                                                        .with_error_code(TOPIC)
                                                })
                                                .collect(),
                                        ),
                                );
                            }
                            ok
                        }),
                    }
                    denied_in_group.push((g.group_id.to_string(), these));
                }
                if r.groups.is_empty() {
                    let resp = OffsetFetchResponse::default().with_groups(groups);
                    return Err(answer(ResponseKind::OffsetFetch(resp), v));
                }
            }
            let fix = Fixup::OffsetFetch {
                topics,
                groups,
                denied_in_group,
                filter,
            };
            Ok((RequestKind::OffsetFetch(r), fix))
        }
        RequestKind::OffsetDelete(mut r) => {
            if !az.group(op::DELETE, r.group_id.as_str()) {
                let resp = OffsetDeleteResponse::default().with_error_code(GROUP);
                return Err(answer(ResponseKind::OffsetDelete(resp), v));
            }
            let denied = take_denied(
                &mut r.topics,
                |t| az.topic(op::READ, t.name.as_str()),
                |t| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC)
                                })
                                .collect(),
                        )
                },
            );
            Ok((RequestKind::OffsetDelete(r), Fixup::OffsetDelete(denied)))
        }
        RequestKind::FindCoordinator(mut r) => {
            // Key type 0 is a group, 1 a transactional id.
            let allowed = |key: &str| match r.key_type {
                1 => az
                    .transactional_id(op::DESCRIBE, key)
                    .then_some(())
                    .ok_or(TXN),
                _ => az.group(op::DESCRIBE, key).then_some(()).ok_or(GROUP),
            };
            if v < 4 {
                if let Err(e) = allowed(r.key.as_str()) {
                    let resp = FindCoordinatorResponse::default()
                        .with_error_code(e)
                        .with_error_message(message(e))
                        .with_node_id(BrokerId(-1))
                        .with_port(-1);
                    return Err(answer(ResponseKind::FindCoordinator(resp), v));
                }
                return Ok((RequestKind::FindCoordinator(r), Fixup::None));
            }
            let mut denied = Vec::new();
            r.coordinator_keys.retain(|k| match allowed(k.as_str()) {
                Ok(()) => true,
                Err(e) => {
                    denied.push(
                        find_coordinator_response::Coordinator::default()
                            .with_key(k.clone())
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(e)
                            .with_error_message(message(e)),
                    );
                    false
                }
            });
            Ok((
                RequestKind::FindCoordinator(r),
                Fixup::FindCoordinator(denied),
            ))
        }
        RequestKind::DescribeGroups(mut r) => {
            let denied = take_denied(
                &mut r.groups,
                |g| az.group(op::DESCRIBE, g.as_str()),
                |g| {
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(GROUP)
                        .with_error_message(message(GROUP))
                },
            );
            let ops = r.include_authorized_operations;
            Ok((
                RequestKind::DescribeGroups(r),
                Fixup::DescribeGroups(denied, ops),
            ))
        }
        RequestKind::ConsumerGroupDescribe(mut r) => {
            let denied = take_denied(
                &mut r.group_ids,
                |g| az.group(op::DESCRIBE, g.as_str()),
                |g| {
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(GROUP)
                        .with_error_message(message(GROUP))
                },
            );
            let ops = r.include_authorized_operations;
            Ok((
                RequestKind::ConsumerGroupDescribe(r),
                Fixup::ConsumerGroupDescribe(denied, ops),
            ))
        }
        RequestKind::DeleteGroups(mut r) => {
            let denied = take_denied(
                &mut r.groups_names,
                |g| az.group(op::DELETE, g.as_str()),
                |g| {
                    delete_groups_response::DeletableGroupResult::default()
                        .with_group_id(g.clone())
                        .with_error_code(GROUP)
                },
            );
            Ok((RequestKind::DeleteGroups(r), Fixup::DeleteGroups(denied)))
        }
        RequestKind::ListGroups(r) => Ok((RequestKind::ListGroups(r), Fixup::ListGroups)),
        // --- transactions ----------------------------------------------------------
        RequestKind::InitProducerId(r) => {
            let error = match &r.transactional_id {
                Some(t) if !az.transactional_id(op::WRITE, t.as_str()) => Some(TXN),
                None if !az.cluster(op::IDEMPOTENT_WRITE) && !az.writes_some_topic() => {
                    Some(CLUSTER)
                }
                _ => None,
            };
            match error {
                Some(e) => Err(answer(
                    ResponseKind::InitProducerId(
                        InitProducerIdResponse::default()
                            .with_error_code(e)
                            .with_producer_id(ProducerId(-1))
                            .with_producer_epoch(-1),
                    ),
                    v,
                )),
                None => Ok((RequestKind::InitProducerId(r), Fixup::None)),
            }
        }
        RequestKind::AddPartitionsToTxn(r) => add_partitions_to_txn(az, r, v),
        RequestKind::AddOffsetsToTxn(r) => {
            let error = if !az.transactional_id(op::WRITE, r.transactional_id.as_str()) {
                Some(TXN)
            } else if !az.group(op::READ, r.group_id.as_str()) {
                Some(GROUP)
            } else {
                None
            };
            match error {
                Some(e) => Err(answer(
                    ResponseKind::AddOffsetsToTxn(
                        AddOffsetsToTxnResponse::default().with_error_code(e),
                    ),
                    v,
                )),
                None => Ok((RequestKind::AddOffsetsToTxn(r), Fixup::None)),
            }
        }
        RequestKind::EndTxn(r) if !az.transactional_id(op::WRITE, r.transactional_id.as_str()) => {
            Err(answer(
                ResponseKind::EndTxn(
                    EndTxnResponse::default()
                        .with_error_code(TXN)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                ),
                v,
            ))
        }
        RequestKind::TxnOffsetCommit(mut r) => {
            let whole = if !az.transactional_id(op::WRITE, r.transactional_id.as_str()) {
                Some(TXN)
            } else if !az.group(op::READ, r.group_id.as_str()) {
                Some(GROUP)
            } else {
                None
            };
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let error = whole.or((!az.topic(op::READ, t.name.as_str())).then_some(TOPIC));
                if let Some(e) = error {
                    denied.push(
                        TxnOffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        TxnOffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(e)
                                    })
                                    .collect(),
                            ),
                    );
                }
                error.is_none()
            });
            if whole.is_some() {
                let resp = TxnOffsetCommitResponse::default().with_topics(denied);
                return Err(answer(ResponseKind::TxnOffsetCommit(resp), v));
            }
            Ok((
                RequestKind::TxnOffsetCommit(r),
                Fixup::TxnOffsetCommit(denied),
            ))
        }
        RequestKind::DescribeTransactions(mut r) => {
            let denied = take_denied(
                &mut r.transactional_ids,
                |t| az.transactional_id(op::DESCRIBE, t.as_str()),
                |t| {
                    describe_transactions_response::TransactionState::default()
                        .with_transactional_id(t.clone())
                        .with_error_code(TXN)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                },
            );
            Ok((
                RequestKind::DescribeTransactions(r),
                Fixup::DescribeTransactions(denied),
            ))
        }
        RequestKind::ListTransactions(r) => {
            Ok((RequestKind::ListTransactions(r), Fixup::ListTransactions))
        }
        RequestKind::WriteTxnMarkers(r) if cluster_denied(op::CLUSTER_ACTION) => {
            let markers = r
                .markers
                .iter()
                .map(|m| {
                    WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(
                            m.topics
                                .iter()
                                .map(|t| {
                                    WritableTxnMarkerTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|p| {
                                                    WritableTxnMarkerPartitionResult::default()
                                                        .with_partition_index(*p)
                                                        .with_error_code(CLUSTER)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            Err(answer(
                ResponseKind::WriteTxnMarkers(
                    WriteTxnMarkersResponse::default().with_markers(markers),
                ),
                v,
            ))
        }
        // --- the cluster -----------------------------------------------------------
        RequestKind::DescribeCluster(r) => {
            let ops = r.include_cluster_authorized_operations;
            Ok((RequestKind::DescribeCluster(r), Fixup::DescribeCluster(ops)))
        }
        RequestKind::DescribeLogDirs(_) if cluster_denied(op::DESCRIBE) => Err(answer(
            ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default().with_error_code(CLUSTER),
            ),
            v,
        )),
        RequestKind::ElectLeaders(r) if cluster_denied(op::ALTER) => {
            let results = r
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    elect_leaders_response::PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(CLUSTER)
                                        .with_error_message(message(CLUSTER))
                                })
                                .collect(),
                        )
                })
                .collect();
            Err(answer(
                ResponseKind::ElectLeaders(
                    ElectLeadersResponse::default()
                        .with_error_code(CLUSTER)
                        .with_replica_election_results(results),
                ),
                v,
            ))
        }
        RequestKind::AlterPartitionReassignments(_) if cluster_denied(op::ALTER) => Err(answer(
            ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default()
                    .with_error_code(CLUSTER)
                    .with_error_message(message(CLUSTER)),
            ),
            v,
        )),
        RequestKind::ListPartitionReassignments(_) if cluster_denied(op::DESCRIBE) => Err(answer(
            ResponseKind::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default()
                    .with_error_code(CLUSTER)
                    .with_error_message(message(CLUSTER)),
            ),
            v,
        )),
        RequestKind::DescribeQuorum(_) if cluster_denied(op::DESCRIBE) => Err(answer(
            ResponseKind::DescribeQuorum(
                DescribeQuorumResponse::default()
                    .with_error_code(CLUSTER)
                    .with_error_message(message(CLUSTER)),
            ),
            v,
        )),
        RequestKind::UpdateFeatures(r) if cluster_denied(op::ALTER) => {
            let results = r
                .feature_updates
                .iter()
                .map(|f| {
                    update_features_response::UpdatableFeatureResult::default()
                        .with_feature(f.feature.clone())
                        .with_error_code(CLUSTER)
                        .with_error_message(message(CLUSTER))
                })
                .collect();
            Err(answer(
                ResponseKind::UpdateFeatures(
                    UpdateFeaturesResponse::default()
                        .with_error_code(CLUSTER)
                        .with_error_message(message(CLUSTER))
                        .with_results(results),
                ),
                v,
            ))
        }
        RequestKind::DescribeUserScramCredentials(_) if cluster_denied(op::DESCRIBE) => {
            Err(answer(
                ResponseKind::DescribeUserScramCredentials(
                    DescribeUserScramCredentialsResponse::default()
                        .with_error_code(CLUSTER)
                        .with_error_message(message(CLUSTER)),
                ),
                v,
            ))
        }
        RequestKind::AlterUserScramCredentials(r) if cluster_denied(op::ALTER) => {
            let mut users: Vec<StrBytes> = r
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(r.upsertions.iter().map(|u| u.name.clone()))
                .collect();
            users.sort();
            users.dedup();
            let results = users
                .into_iter()
                .map(|u| {
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default(
                    )
                    .with_user(u)
                    .with_error_code(CLUSTER)
                    .with_error_message(message(CLUSTER))
                })
                .collect();
            Err(answer(
                ResponseKind::AlterUserScramCredentials(
                    AlterUserScramCredentialsResponse::default().with_results(results),
                ),
                v,
            ))
        }
        RequestKind::CreateAcls(r) if cluster_denied(op::ALTER) => {
            let results = r
                .creations
                .iter()
                .map(|_| {
                    create_acls_response::AclCreationResult::default()
                        .with_error_code(CLUSTER)
                        .with_error_message(message(CLUSTER))
                })
                .collect();
            Err(answer(
                ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(results)),
                v,
            ))
        }
        RequestKind::DescribeAcls(_) if cluster_denied(op::DESCRIBE) => Err(answer(
            ResponseKind::DescribeAcls(
                DescribeAclsResponse::default()
                    .with_error_code(CLUSTER)
                    .with_error_message(message(CLUSTER)),
            ),
            v,
        )),
        RequestKind::DeleteAcls(r) if cluster_denied(op::ALTER) => {
            let results = r
                .filters
                .iter()
                .map(|_| {
                    delete_acls_response::DeleteAclsFilterResult::default()
                        .with_error_code(CLUSTER)
                        .with_error_message(message(CLUSTER))
                })
                .collect();
            Err(answer(
                ResponseKind::DeleteAcls(
                    DeleteAclsResponse::default().with_filter_results(results),
                ),
                v,
            ))
        }
        other => Ok((other, Fixup::None)),
    }
}

fn epoch_error(
    t: &offset_for_leader_epoch_request::OffsetForLeaderTopic,
    error: i16,
) -> OffsetForLeaderTopicResult {
    OffsetForLeaderTopicResult::default()
        .with_topic(t.topic.clone())
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_error_code(error)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1)
                })
                .collect(),
        )
}

/// The error for a config resource the requester may not touch with `operation`.
fn config_denied(az: &Authz, resource_type: i8, name: &str, operation: i8) -> Option<i16> {
    match resource_type {
        CONFIG_TOPIC => (!az.topic(operation, name)).then_some(code::TOPIC_AUTHORIZATION_FAILED),
        CONFIG_GROUP => (!az.group(operation, name)).then_some(code::GROUP_AUTHORIZATION_FAILED),
        // Brokers and broker loggers are the cluster's.
        _ => (!az.cluster(operation)).then_some(code::CLUSTER_AUTHORIZATION_FAILED),
    }
}

/// AddPartitionsToTxn: v0-3 (from producers) needs Write on the transactional id and on
/// every topic, and adds nothing unless all are allowed; v4+ (broker to broker) needs
/// ClusterAction.
fn add_partitions_to_txn(az: &Authz, r: AddPartitionsToTxnRequest, v: i16) -> Gate {
    if v >= 4 {
        if !az.cluster(op::CLUSTER_ACTION) {
            let resp = AddPartitionsToTxnResponse::default()
                .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
            return Err(answer(ResponseKind::AddPartitionsToTxn(resp), v));
        }
        return Ok((RequestKind::AddPartitionsToTxn(r), Fixup::None));
    }
    let txn_ok = az.transactional_id(op::WRITE, r.v3_and_below_transactional_id.as_str());
    let denied_topic = |name: &str| !txn_ok || !az.topic(op::WRITE, name);
    if !r
        .v3_and_below_topics
        .iter()
        .any(|t| denied_topic(t.name.as_str()))
        && txn_ok
    {
        return Ok((RequestKind::AddPartitionsToTxn(r), Fixup::None));
    }
    let results = r
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let error = if !txn_ok {
                code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            } else if denied_topic(t.name.as_str()) {
                code::TOPIC_AUTHORIZATION_FAILED
            } else {
                code::OPERATION_NOT_ATTEMPTED
            };
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(error)
                        })
                        .collect(),
                )
        })
        .collect();
    let resp = AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    Err(answer(ResponseKind::AddPartitionsToTxn(resp), v))
}

/// Takes out of `items` those `allowed` refuses, and returns what `answer` makes of each:
/// the error entries that go back into the response.
fn take_denied<T, D>(
    items: &mut Vec<T>,
    allowed: impl Fn(&T) -> bool,
    answer: impl Fn(&T) -> D,
) -> Vec<D> {
    let mut denied = Vec::new();
    items.retain(|t| {
        let ok = allowed(t);
        if !ok {
            denied.push(answer(t));
        }
        ok
    });
    denied
}

impl Fixup {
    /// Puts the denied items into the handler's answer and filters listings.
    pub fn apply(self, az: &Authz, resp: &mut ResponseKind) {
        match (self, resp) {
            (Fixup::None, _) => {}
            (Fixup::Produce(d), ResponseKind::Produce(r)) => r.responses.extend(d),
            (Fixup::Fetch(d), ResponseKind::Fetch(r)) => r.responses.extend(d),
            (Fixup::ListOffsets(d), ResponseKind::ListOffsets(r)) => r.topics.extend(d),
            (
                Fixup::Metadata {
                    denied,
                    filter,
                    topic_ops,
                    cluster_ops,
                },
                ResponseKind::Metadata(r),
            ) => {
                if filter {
                    r.topics.retain(|t| {
                        t.name
                            .as_ref()
                            .is_some_and(|n| az.topic(op::DESCRIBE, n.as_str()))
                    });
                }
                if topic_ops {
                    for t in r.topics.iter_mut() {
                        if let Some(n) = &t.name {
                            t.topic_authorized_operations =
                                az.operations(fjord_controller::acl::resource::TOPIC, n.as_str());
                        }
                    }
                }
                if cluster_ops {
                    r.cluster_authorized_operations = cluster_operations(az);
                }
                r.topics.extend(denied);
            }
            (Fixup::CreateTopics(d), ResponseKind::CreateTopics(r)) => r.topics.extend(d),
            (Fixup::DeleteTopics(d), ResponseKind::DeleteTopics(r)) => r.responses.extend(d),
            (Fixup::CreatePartitions(d), ResponseKind::CreatePartitions(r)) => r.results.extend(d),
            (Fixup::DeleteRecords(d), ResponseKind::DeleteRecords(r)) => r.topics.extend(d),
            (Fixup::DescribeConfigs(d), ResponseKind::DescribeConfigs(r)) => r.results.extend(d),
            (Fixup::AlterConfigs(d), ResponseKind::AlterConfigs(r)) => r.responses.extend(d),
            (Fixup::IncrementalAlterConfigs(d), ResponseKind::IncrementalAlterConfigs(r)) => {
                r.responses.extend(d)
            }
            (Fixup::OffsetCommit(d), ResponseKind::OffsetCommit(r)) => r.topics.extend(d),
            (
                Fixup::OffsetFetch {
                    topics,
                    groups,
                    denied_in_group,
                    filter,
                },
                ResponseKind::OffsetFetch(r),
            ) => {
                if filter {
                    r.topics.retain(|t| az.topic(op::DESCRIBE, t.name.as_str()));
                    for g in r.groups.iter_mut() {
                        g.topics.retain(|t| {
                            az.topic(op::DESCRIBE, &az.topic_name(&t.name, t.topic_id))
                        });
                    }
                }
                r.topics.extend(topics);
                for (group, denied) in denied_in_group {
                    if let Some(g) = r.groups.iter_mut().find(|g| g.group_id.as_str() == group) {
                        g.topics.extend(denied);
                    }
                }
                r.groups.extend(groups);
            }
            (Fixup::OffsetDelete(d), ResponseKind::OffsetDelete(r)) => r.topics.extend(d),
            (Fixup::TxnOffsetCommit(d), ResponseKind::TxnOffsetCommit(r)) => r.topics.extend(d),
            (Fixup::DescribeProducers(d), ResponseKind::DescribeProducers(r)) => r.topics.extend(d),
            (Fixup::OffsetForLeaderEpoch(d), ResponseKind::OffsetForLeaderEpoch(r)) => {
                r.topics.extend(d)
            }
            (Fixup::FindCoordinator(d), ResponseKind::FindCoordinator(r)) => {
                r.coordinators.extend(d)
            }
            (Fixup::DescribeGroups(d, ops), ResponseKind::DescribeGroups(r)) => {
                if ops {
                    for g in r.groups.iter_mut().filter(|g| g.error_code == 0) {
                        g.authorized_operations = az.operations(
                            fjord_controller::acl::resource::GROUP,
                            g.group_id.as_str(),
                        );
                    }
                }
                r.groups.extend(d);
            }
            (Fixup::ConsumerGroupDescribe(d, ops), ResponseKind::ConsumerGroupDescribe(r)) => {
                if ops {
                    for g in r.groups.iter_mut().filter(|g| g.error_code == 0) {
                        g.authorized_operations = az.operations(
                            fjord_controller::acl::resource::GROUP,
                            g.group_id.as_str(),
                        );
                    }
                }
                r.groups.extend(d);
            }
            (Fixup::DeleteGroups(d), ResponseKind::DeleteGroups(r)) => r.results.extend(d),
            (Fixup::ListGroups, ResponseKind::ListGroups(r)) if !az.cluster(op::DESCRIBE) => {
                r.groups
                    .retain(|g| az.group(op::DESCRIBE, g.group_id.as_str()));
            }
            (Fixup::DescribeTransactions(d), ResponseKind::DescribeTransactions(r)) => {
                r.transaction_states.extend(d)
            }
            (Fixup::ListTransactions, ResponseKind::ListTransactions(r)) => r
                .transaction_states
                .retain(|t| az.transactional_id(op::DESCRIBE, t.transactional_id.as_str())),
            (Fixup::DescribeCluster(true), ResponseKind::DescribeCluster(r)) => {
                r.cluster_authorized_operations = cluster_operations(az);
            }
            // The handler answered with another kind (a bug): leave its answer alone.
            _ => {}
        }
    }
}

fn cluster_operations(az: &Authz) -> i32 {
    az.operations(
        fjord_controller::acl::resource::CLUSTER,
        fjord_controller::acl::CLUSTER_NAME,
    )
}
