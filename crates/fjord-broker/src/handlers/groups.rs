//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete, and
//! the new consumer protocol's ConsumerGroupHeartbeat and ConsumerGroupDescribe.
//! They translate between the wire messages (every version's shape) and the coordinator.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_group_describe_response as cgd;
use kafka_protocol::messages::consumer_group_heartbeat_response as cgh;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
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
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::str;
use crate::error::code;
use crate::group::classic::{CommittedOffset, GroupState, JoinParams};
use crate::group::consumer::{self, ConsumerGroup, HeartbeatParams, Tp};
use crate::group::CommitEntry;
use crate::security::Session;
use crate::state::BrokerState;

/// READ, DELETE and DESCRIBE on a group (bits of Kafka's AclOperation): everything a
/// broker without ACLs allows.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// What DescribeGroups reports when the client did not ask for operations.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// Group types (ListGroups v5 filter): the classic protocol and the new one (KIP-848).
const CLASSIC: &str = "classic";
const CONSUMER: &str = "consumer";
/// ConsumerGroupDescribe v1 member type: the member speaks the new consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

fn text(s: &StrBytes) -> String {
    s.to_string()
}

fn opt_text(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(text)
}

/// FindCoordinator key types (KIP-98): a consumer group, a transactional id.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn message(c: i16) -> Option<StrBytes> {
    let m = match c {
        code::NONE => return None,
        code::COORDINATOR_NOT_AVAILABLE => "The coordinator is not available.",
        code::COORDINATOR_LOAD_IN_PROGRESS => {
            "The coordinator is loading and hence can't process requests."
        }
        code::NOT_COORDINATOR => "This is not the correct coordinator.",
        code::INVALID_REQUEST => "Only group and transaction coordinator keys are supported.",
        _ => "",
    };
    Some(str(m))
}

pub fn find_coordinator(
    state: &BrokerState,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if version >= 4 {
        req.coordinator_keys
    } else {
        vec![req.key]
    };
    // The offsets topic places groups on brokers, so it must exist before any coordinator
    // can be named; Kafka creates it here, on one node too (clients that look for it in
    // Metadata after FindCoordinator find it).
    if req.key_type == KEY_TYPE_GROUP {
        let _ = state.groups.ensure_topic(state);
    }
    // Likewise `__transaction_state`, on one node too: transactions have no other path
    // that creates it.
    if req.key_type == KEY_TYPE_TRANSACTION {
        let _ = state.transactions.ensure_topic(state);
    }
    let image = state.controller.image();
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let (node, err) = if key.is_empty() {
            (-1, code::INVALID_REQUEST)
        } else if req.key_type == KEY_TYPE_TRANSACTION {
            match state.transactions.coordinator_node(state, &key) {
                -1 => (-1, code::COORDINATOR_NOT_AVAILABLE),
                n => (n, code::NONE),
            }
        } else if req.key_type != KEY_TYPE_GROUP {
            // Share-group coordinators are not here.
            (-1, code::INVALID_REQUEST)
        } else if key.is_empty() {
            (-1, code::INVALID_REQUEST)
        } else {
            // Named even while it loads, as Kafka does: the group requests then answer
            // COORDINATOR_LOAD_IN_PROGRESS, which clients retry at once, where
            // COORDINATOR_NOT_AVAILABLE here makes librdkafka wait a second first.
            match state.groups.coordinator_node(state, &key) {
                -1 => (-1, code::COORDINATOR_NOT_AVAILABLE),
                n => (n, code::NONE),
            }
        };
        let address = image.brokers.get(&node).and_then(|b| b.endpoint(listener));
        let (node, host, port, err) = match address {
            Some((host, port)) if err == code::NONE => (node, host.to_string(), port, err),
            _ => (
                -1,
                String::new(),
                -1,
                if err == code::NONE {
                    code::COORDINATOR_NOT_AVAILABLE
                } else {
                    err
                },
            ),
        };
        coordinators.push(
            Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(node))
                .with_host(str(host))
                .with_port(port)
                .with_error_code(err)
                .with_error_message(message(err)),
        );
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        resp = resp.with_error_message(c.error_message);
    }
    resp
}

pub async fn join(
    state: &BrokerState,
    header: &RequestHeader,
    peer: SocketAddr,
    req: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let params = JoinParams {
        member_id: text(&req.member_id),
        instance_id: opt_text(&req.group_instance_id),
        client_id: opt_text(&header.client_id).unwrap_or_default(),
        client_host: client_host(peer),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: text(&req.protocol_type),
        protocols: req
            .protocols
            .iter()
            .map(|p| (text(&p.name), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let group = req.group_id.0.to_string();
    let r = state.groups.join(state, &group, params).await;
    if r.error != code::NONE && r.error != code::MEMBER_ID_REQUIRED {
        tracing::debug!(group, error = r.error, "join refused");
    }
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str(m.member_id))
                .with_group_instance_id(m.instance_id.map(str))
                .with_metadata(m.metadata)
        })
        .collect();
    // Before v7 the protocol name is not nullable: an empty string stands for "none".
    let protocol_name = match (r.protocol, version >= 7) {
        (Some(p), _) => Some(str(p)),
        (None, true) => None,
        (None, false) => Some(str("")),
    };
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_name(protocol_name)
        .with_leader(str(r.leader))
        .with_member_id(str(r.member_id))
        .with_members(members);
    if version >= 7 {
        resp = resp.with_protocol_type(r.protocol_type.map(str));
    }
    resp
}

pub async fn sync(state: &BrokerState, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group = req.group_id.0.to_string();
    let assignments = req
        .assignments
        .iter()
        .map(|a| (text(&a.member_id), a.assignment.clone()))
        .collect();
    let r = state
        .groups
        .sync(
            state,
            &group,
            &text(&req.member_id),
            opt_text(&req.group_instance_id).as_deref(),
            req.generation_id,
            opt_text(&req.protocol_type).as_deref(),
            opt_text(&req.protocol_name).as_deref(),
            assignments,
        )
        .await;
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_assignment(r.assignment);
    if version >= 5 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(str))
            .with_protocol_name(r.protocol.map(str));
    }
    resp
}

pub fn heartbeat(state: &BrokerState, req: HeartbeatRequest) -> HeartbeatResponse {
    let e = state.groups.heartbeat(
        state,
        &req.group_id.0,
        &req.member_id,
        opt_text(&req.group_instance_id).as_deref(),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(e)
}

pub fn leave(state: &BrokerState, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (text(&m.member_id), opt_text(&m.group_instance_id)))
            .collect()
    } else {
        vec![(text(&req.member_id), None)]
    };
    match state.groups.leave(state, &req.group_id.0, &members) {
        Err(e) => LeaveGroupResponse::default().with_error_code(e),
        Ok(codes) if version < 3 => {
            LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
        }
        Ok(codes) => LeaveGroupResponse::default()
            .with_error_code(code::NONE)
            .with_members(
                members
                    .into_iter()
                    .zip(codes)
                    .map(|((id, inst), c)| {
                        MemberResponse::default()
                            .with_member_id(str(id))
                            .with_group_instance_id(inst.map(str))
                            .with_error_code(c)
                    })
                    .collect(),
            ),
    }
}

pub async fn offset_commit(state: &BrokerState, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let mut entries = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            entries.push(CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: opt_text(&p.committed_metadata),
            });
        }
    }
    let result = state
        .groups
        .commit(
            state,
            &group,
            &req.member_id,
            opt_text(&req.group_instance_id).as_deref(),
            req.generation_id_or_member_epoch,
            &entries,
            None,
        )
        .await;
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
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(code::UNKNOWN_SERVER_ERROR))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One partition's answer: the committed offset, or -1 and empty metadata.
fn fetched(c: Option<CommittedOffset>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

pub fn offset_fetch(
    state: &BrokerState,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let checked = state
                    .groups
                    .validate_fetch(
                        &g.group_id.0,
                        opt_text(&g.member_id).as_deref(),
                        g.member_epoch,
                    )
                    .and_then(|_| {
                        state
                            .groups
                            .fetch(state, &g.group_id.0, topics, req.require_stable)
                    });
                match checked {
                    Err(e) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e),
                    Ok(found) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code::NONE)
                        .with_topics(
                            found
                                .into_iter()
                                .map(|(topic, parts)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(str(topic)))
                                        .with_partitions(
                                            parts
                                                .into_iter()
                                                .map(|(p, c, err)| {
                                                    let (o, e, m) = fetched(c);
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(o)
                                                        .with_committed_leader_epoch(e)
                                                        .with_metadata(Some(str(m)))
                                                        .with_error_code(err)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let requested: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let partition = |p: i32, c: Option<CommittedOffset>, err: i16| {
        let (o, e, m) = fetched(c);
        OffsetFetchResponsePartition::default()
            .with_partition_index(p)
            .with_committed_offset(o)
            .with_committed_leader_epoch(e)
            .with_metadata(Some(str(m)))
            .with_error_code(err)
    };
    // require_stable exists from v7 on; older clients read what is committed.
    let require_stable = version >= 7 && req.require_stable;
    match state
        .groups
        .fetch(state, &req.group_id.0, requested.clone(), require_stable)
    {
        Ok(found) => OffsetFetchResponse::default().with_topics(
            found
                .into_iter()
                .map(|(topic, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str(topic)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, c, err)| partition(p, c, err))
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(e) => {
            // v1 has no group-level error: the error goes on every partition asked for.
            let topics = if version < 2 {
                requested
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(str(topic)))
                            .with_partitions(
                                parts.into_iter().map(|p| partition(p, None, e)).collect(),
                            )
                    })
                    .collect()
            } else {
                vec![]
            };
            OffsetFetchResponse::default()
                .with_error_code(e)
                .with_topics(topics)
        }
    }
}

pub fn list_groups(state: &BrokerState, req: ListGroupsRequest) -> ListGroupsResponse {
    if !state.groups.is_loaded() {
        return ListGroupsResponse::default().with_error_code(code::COORDINATOR_LOAD_IN_PROGRESS);
    }
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let wanted = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let state_ok = |name: &str| states.is_empty() || states.contains(&name.to_lowercase());
    // Offsets of a new-protocol group are kept in a member-less classic entry: that entry
    // is listed once, as the consumer group it belongs to.
    let consumer_groups = state
        .groups
        .with_all_consumer_groups(|g| Some((g.id.clone(), CONSUMER.to_string(), g.state().name())));
    let consumer_ids: BTreeSet<String> = consumer_groups.iter().map(|g| g.0.clone()).collect();
    let mut groups: Vec<(String, String, &'static str, &'static str)> = Vec::new();
    if wanted(CLASSIC) {
        groups.extend(state.groups.with_all(|g| {
            let name = g.state.name();
            if consumer_ids.contains(&g.id) || !state_ok(name) {
                return None;
            }
            Some((
                g.id.clone(),
                g.protocol_type.clone().unwrap_or_default(),
                name,
                CLASSIC,
            ))
        }));
    }
    if wanted(CONSUMER) {
        groups.extend(
            consumer_groups
                .into_iter()
                .filter(|g| state_ok(g.2))
                .map(|(id, protocol_type, name)| (id, protocol_type, name, CONSUMER)),
        );
    }
    groups.sort();
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .map(|(id, protocol_type, state, group_type)| {
                ListedGroup::default()
                    .with_group_id(GroupId(str(id)))
                    .with_protocol_type(str(protocol_type))
                    .with_group_state(str(state))
                    .with_group_type(str(group_type))
            })
            .collect(),
    )
}

pub fn describe_groups(
    state: &BrokerState,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let operations = if req.include_authorized_operations {
        GROUP_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(operations);
            if let Err(e) = state.groups.check(state, &id.0) {
                return base
                    .with_error_code(e)
                    .with_group_state(str(GroupState::Dead.name()));
            }
            if let Some(described) = state.groups.with_consumer_group(&id.0, describe_as_classic) {
                return base
                    .with_error_code(code::NONE)
                    .with_group_state(str(described.0))
                    .with_protocol_type(str(CONSUMER))
                    .with_protocol_data(str(described.1))
                    .with_members(described.2);
            }
            let described = state.groups.with_group(&id.0, |g| {
                let protocol = g.protocol.clone().unwrap_or_default();
                // Member metadata and assignments are only meaningful once a generation
                // has settled; during a rebalance Kafka leaves them out too.
                let settled = g.state == GroupState::Stable;
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(str(m.id.clone()))
                            .with_group_instance_id(m.instance_id.clone().map(str))
                            .with_client_id(str(m.client_id.clone()))
                            .with_client_host(str(m.client_host.clone()))
                            .with_member_metadata(if settled {
                                m.metadata_for(&protocol)
                            } else {
                                Bytes::new()
                            })
                            .with_member_assignment(if settled {
                                m.assignment.clone()
                            } else {
                                Bytes::new()
                            })
                    })
                    .collect::<Vec<_>>();
                (
                    g.state.name(),
                    g.protocol_type.clone().unwrap_or_default(),
                    if settled { protocol } else { String::new() },
                    members,
                )
            });
            match described {
                Some((group_state, protocol_type, protocol, members)) => base
                    .with_error_code(code::NONE)
                    .with_group_state(str(group_state))
                    .with_protocol_type(str(protocol_type))
                    .with_protocol_data(str(protocol))
                    .with_members(members),
                // Unknown groups are described as Dead; v6 also says why.
                None if version >= 6 => base
                    .with_error_code(code::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str(format!("Group {} not found.", id.0))))
                    .with_group_state(str(GroupState::Dead.name())),
                None => base
                    .with_error_code(code::NONE)
                    .with_group_state(str(GroupState::Dead.name())),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn delete_groups(state: &BrokerState, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let c = state.groups.delete_group(state, &id.0);
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(c)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

pub fn offset_delete(state: &BrokerState, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let topics: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    match state.groups.delete_offsets(state, &req.group_id.0, &topics) {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e),
        Ok(results) => OffsetDeleteResponse::default()
            .with_error_code(code::NONE)
            .with_topics(
                results
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(str(topic)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, c)| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(c)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
    }
}

/// A new-protocol group as DescribeGroups shows it: its state, assignor and members, with
/// subscriptions and assignments in the classic consumer protocol's encoding so tools
/// that only speak DescribeGroups can read them.
fn describe_as_classic(g: &ConsumerGroup) -> (&'static str, String, Vec<DescribedGroupMember>) {
    let members = g
        .members
        .values()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(str(m.id.clone()))
                .with_group_instance_id(m.instance_id.clone().map(str))
                .with_client_id(str(m.client_id.clone()))
                .with_client_host(str(m.client_host.clone()))
                .with_member_metadata(classic_subscription(&g.member_topics(m)))
                .with_member_assignment(classic_assignment(&m.assigned))
        })
        .collect();
    (g.state().name(), g.assignor.clone(), members)
}

fn put_str16(buf: &mut BytesMut, s: &str) {
    let b = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    buf.put_i16(b.len() as i16);
    buf.put_slice(b);
}

/// ConsumerProtocolSubscription v0: topics, no user data.
fn classic_subscription(topics: &BTreeSet<String>) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(topics.len() as i32);
    for t in topics {
        put_str16(&mut buf, t);
    }
    buf.put_i32(-1);
    buf.freeze()
}

/// ConsumerProtocolAssignment v0: partitions by topic, no user data.
fn classic_assignment(tps: &BTreeSet<Tp>) -> Bytes {
    let by_topic = by_topic(tps);
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(by_topic.len() as i32);
    for (t, ps) in by_topic {
        put_str16(&mut buf, t);
        buf.put_i32(ps.len() as i32);
        for p in ps {
            buf.put_i32(p);
        }
    }
    buf.put_i32(-1);
    buf.freeze()
}

fn by_topic(tps: &BTreeSet<Tp>) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        out.entry(t.as_str()).or_default().push(*p);
    }
    out
}

fn invalid_heartbeat(message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code::INVALID_REQUEST)
        .with_error_message(Some(str(message)))
}

/// The request checks Kafka makes before a heartbeat reaches the group.
fn validate_heartbeat(req: &ConsumerGroupHeartbeatRequest) -> Result<(), &'static str> {
    if req.group_id.0.is_empty() {
        return Err("GroupId can't be empty.");
    }
    if req.instance_id.as_ref().is_some_and(|s| s.is_empty()) {
        return Err("InstanceId can't be empty.");
    }
    if req.rack_id.as_ref().is_some_and(|s| s.is_empty()) {
        return Err("RackId can't be empty.");
    }
    match req.member_epoch {
        consumer::JOIN_EPOCH => {
            if req.rebalance_timeout_ms == -1 {
                return Err("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                return Err("TopicPartitions must be empty when (re-)joining.");
            }
            let has_regex = req
                .subscribed_topic_regex
                .as_ref()
                .is_some_and(|r| !r.is_empty());
            if req.subscribed_topic_names.is_none() && !has_regex {
                return Err(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        _ if req.member_id.is_empty() => return Err("MemberId can't be empty."),
        _ => {}
    }
    Ok(())
}

pub fn consumer_group_heartbeat(
    state: &BrokerState,
    header: &RequestHeader,
    session: &Session,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let peer = session.peer;
    if let Err(m) = validate_heartbeat(&req) {
        return invalid_heartbeat(m);
    }
    let regex = opt_text(&req.subscribed_topic_regex);
    if let Some(r) = regex.as_deref().filter(|r| !r.is_empty()) {
        if let Err(m) = consumer::compile_topic_regex(r) {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code::INVALID_REGULAR_EXPRESSION)
                .with_error_message(Some(str(m)));
        }
    }
    let image = state.controller.image();
    // Kafka 4 clients choose their own member id; older ones leave it to the coordinator.
    let member_id = if req.member_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        text(&req.member_id)
    };
    let owned = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .filter_map(|t| image.topic_by_id(&t.topic_id).map(|i| (i.name.clone(), t)))
            .flat_map(|(name, t)| t.partitions.iter().map(move |p| (name.clone(), *p)))
            .collect::<Vec<Tp>>()
    });
    let params = HeartbeatParams {
        member_id,
        member_epoch: req.member_epoch,
        instance_id: opt_text(&req.instance_id),
        rack_id: opt_text(&req.rack_id),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        regex,
        server_assignor: opt_text(&req.server_assignor),
        owned,
        client_id: opt_text(&header.client_id).unwrap_or_default(),
        client_host: client_host(peer),
    };
    // A regex subscription resolves to the topics this member may describe.
    let az = crate::security::authz::Authz::new(state, session);
    let may_describe = |t: &str| az.topic(fjord_controller::acl::op::DESCRIBE, t);
    let r = state
        .groups
        .consumer_heartbeat(state, &req.group_id.0, params, &may_describe);
    if r.error != code::NONE {
        tracing::debug!(group = %req.group_id.0, error = r.error, "consumer heartbeat refused");
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(r.error)
            .with_error_message(
                r.message
                    .filter(|m| !m.is_empty())
                    .map(str)
                    .or_else(|| message(r.error)),
            );
    }
    let assignment = r.assignment.map(|tps| {
        let topic_partitions = by_topic(&tps)
            .into_iter()
            .filter_map(|(t, ps)| {
                image.topic(t).map(|i| {
                    cgh::TopicPartitions::default()
                        .with_topic_id(i.topic_id)
                        .with_partitions(ps)
                })
            })
            .collect();
        cgh::Assignment::default().with_topic_partitions(topic_partitions)
    });
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code::NONE)
        .with_member_id(Some(str(r.member_id)))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(
            state
                .groups
                .consumer_heartbeat_interval_ms(state, &req.group_id.0),
        )
        .with_assignment(assignment)
}

pub fn consumer_group_describe(
    state: &BrokerState,
    req: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let operations = if req.include_authorized_operations {
        GROUP_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let image = state.controller.image();
    let assignment = |tps: &BTreeSet<Tp>| {
        let topic_partitions = by_topic(tps)
            .into_iter()
            .filter_map(|(t, ps)| {
                image.topic(t).map(|i| {
                    cgd::TopicPartitions::default()
                        .with_topic_id(i.topic_id)
                        .with_topic_name(TopicName(str(t)))
                        .with_partitions(ps)
                })
            })
            .collect();
        cgd::Assignment::default().with_topic_partitions(topic_partitions)
    };
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let base = cgd::DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(operations);
            if let Err(e) = state.groups.check(state, &id.0) {
                return base.with_error_code(e).with_error_message(message(e));
            }
            let described = state.groups.with_consumer_group(&id.0, |g| {
                let empty = BTreeSet::new();
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        let target = g.target.get(&m.id).unwrap_or(&empty);
                        let mut member = cgd::Member::default()
                            .with_member_id(str(m.id.clone()))
                            .with_instance_id(m.instance_id.clone().map(str))
                            .with_rack_id(m.rack_id.clone().map(str))
                            .with_member_epoch(m.epoch)
                            .with_client_id(str(m.client_id.clone()))
                            .with_client_host(str(m.client_host.clone()))
                            .with_subscribed_topic_names(
                                m.subscribed
                                    .iter()
                                    .map(|t| TopicName(str(t.clone())))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(m.regex.clone().map(str))
                            .with_assignment(assignment(&m.assigned))
                            .with_target_assignment(assignment(target));
                        if version >= 1 {
                            member = member.with_member_type(MEMBER_TYPE_CONSUMER);
                        }
                        member
                    })
                    .collect();
                base.clone()
                    .with_error_code(code::NONE)
                    .with_group_state(str(g.state().name()))
                    .with_group_epoch(g.epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(str(g.assignor.clone()))
                    .with_members(members)
            });
            described.unwrap_or_else(|| {
                let reason = if state.groups.with_group(&id.0, |_| ()).is_some() {
                    format!("Group {} is not a consumer group.", id.0)
                } else {
                    format!("Group {} not found.", id.0)
                };
                base.with_error_code(code::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str(reason)))
                    .with_group_state(str("Dead"))
            })
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

/// The member's address as Kafka's tools show it (`/127.0.0.1`).
fn client_host(peer: SocketAddr) -> String {
    format!("/{}", peer.ip())
}
