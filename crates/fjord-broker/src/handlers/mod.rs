//! Routes each request by API key to its handler: one module per Kafka API family.
//!
//! [`SUPPORTED`] is the single list of what Fjord implements; ApiVersions advertises
//! exactly it and the connection refuses anything outside it.

mod acls;
mod api_versions;
mod authz;
mod cluster;
mod configs;
mod features;
mod fetch;
mod groups;
mod list_offsets;
mod log_dirs;
mod metadata;
mod produce;
mod reassign;
mod records;
mod sasl;
mod scram;
mod topics;
mod txn;

use std::sync::Arc;

use crate::connection::{Request, Turn};
use crate::security::Session;
use crate::state::BrokerState;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// (API, lowest, highest version) that Fjord implements.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeLogDirs, 0, 4),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::UpdateFeatures, 0, 2),
    // After a v0 handshake the SASL messages come without Kafka framing; clients that
    // know v1 use SaslAuthenticate instead.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::CreateAcls, 0, 3),
    (ApiKey::DescribeAcls, 0, 3),
    (ApiKey::DeleteAcls, 0, 3),
];

pub fn is_supported(api: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|(k, min, max)| *k == api && (*min..=*max).contains(&version))
}

/// What a handler asks the connection to do.
pub enum Outcome {
    /// Send this response, encoded at the given version.
    Respond(Box<ResponseKind>, i16),
    /// acks=0 produce: the client expects nothing back.
    NoResponse,
    /// Close the connection (after earlier responses are written).
    Close(String),
}

pub async fn handle(
    state: &Arc<BrokerState>,
    header: &RequestHeader,
    session: &Session,
    request: Request,
    turn: Turn,
) -> Outcome {
    let v = header.request_api_version;
    let kind = match request {
        Request::UnsupportedApiVersions => {
            return Outcome::Respond(
                Box::new(ResponseKind::ApiVersions(
                    api_versions::unsupported_version(),
                )),
                0,
            )
        }
        Request::Unsupported => {
            return Outcome::Close(format!(
                "API key {} v{v} is not supported by Fjord",
                header.request_api_key
            ))
        }
        Request::Kind(k) => *k,
    };
    // Produce passes the turn on after its appends; a fetch changes nothing, so it only
    // needed to wait for the requests before it. Every other request holds the turn until
    // it is done, so its effects land in arrival order, as on a Kafka broker.
    let turn = match kind {
        RequestKind::Fetch(_) => {
            turn.pass();
            None
        }
        _ => Some(turn),
    };
    // Checked against the ACLs first: what the client may not touch never reaches the
    // handler, and comes back with its authorization error.
    let az = crate::security::authz::Authz::new(state, session);
    let (kind, fixup) = match authz::gate(&az, kind, v, state.config.auto_create_topics) {
        Ok(allowed) => allowed,
        Err(denied) => return denied,
    };
    match route(state, header, session, kind, v, turn).await {
        Outcome::Respond(mut r, v) => {
            fixup.apply(&az, &mut r);
            Outcome::Respond(r, v)
        }
        other => other,
    }
}

/// The controller id clients are told: the active controller, where admin requests go.
/// While a cluster elects one there is none (-1), and clients wait for the next
/// Metadata rather than chase a node that may not win.
pub fn controller_id(state: &BrokerState) -> i32 {
    match state.controller.active_controller() {
        Some(id) if state.controller.image().brokers.contains_key(&id) => id,
        // A controller-only node is no broker clients can reach: as Kafka does, name a
        // broker that forwards to it (this one).
        Some(_) => state.node_id(),
        None if state.controller.quorum().is_some() => -1,
        None => state.node_id(),
    }
}

/// Fetch's response budget: what the client asked for (v3+), never more than
/// `fetch.max.bytes`. A non-positive request means as little as possible: the first batch.
pub fn fetch_response_limit(state: &BrokerState, requested: i32) -> usize {
    (requested.max(0) as usize).min(state.config.fetch_max_bytes)
}

async fn route(
    state: &Arc<BrokerState>,
    header: &RequestHeader,
    session: &Session,
    kind: RequestKind,
    v: i16,
    turn: Option<Turn>,
) -> Outcome {
    let respond = |r: ResponseKind| Outcome::Respond(Box::new(r), v);
    let peer = session.peer;
    let listener = session.listener.clone();
    match kind {
        RequestKind::ApiVersions(_) => respond(ResponseKind::ApiVersions(api_versions::handle(
            &state.controller.image(),
        ))),
        // May auto-create topics.
        RequestKind::Metadata(r) => {
            off_runtime(state, v, move |s| metadata::handle(s, r, v, &listener)).await
        }
        RequestKind::Produce(r) => match produce::handle(state, r, v, turn).await {
            Ok(Some(resp)) => respond(ResponseKind::Produce(resp)),
            Ok(None) => Outcome::NoResponse,
            Err(why) => Outcome::Close(why),
        },
        RequestKind::Fetch(r) => respond(ResponseKind::Fetch(fetch::handle(state, r, v).await)),
        RequestKind::ListOffsets(r) => {
            respond(ResponseKind::ListOffsets(list_offsets::handle(state, r, v)))
        }
        RequestKind::CreateTopics(r) => {
            off_runtime(state, v, move |s| topics::create(s, r, v)).await
        }
        RequestKind::DeleteTopics(r) => {
            off_runtime(state, v, move |s| topics::delete(s, r, v)).await
        }
        RequestKind::CreatePartitions(r) => {
            off_runtime(state, v, move |s| topics::create_partitions(s, r)).await
        }
        RequestKind::DeleteRecords(r) => {
            off_runtime(state, v, move |s| records::delete(s, r)).await
        }
        RequestKind::DescribeConfigs(r) => respond(ResponseKind::DescribeConfigs(
            configs::describe(state, r, v),
        )),
        RequestKind::AlterConfigs(r) => off_runtime(state, v, move |s| configs::alter(s, r)).await,
        // Commits metadata.
        RequestKind::UpdateFeatures(r) => {
            off_runtime(state, v, move |s| features::update(s, r, v)).await
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            off_runtime(state, v, move |s| configs::incremental_alter(s, r)).await
        }
        RequestKind::DescribeCluster(r) => respond(ResponseKind::DescribeCluster(
            cluster::describe(state, r, &listener),
        )),
        // Asks the active controller, which may be another node.
        RequestKind::DescribeQuorum(r) => {
            off_runtime(state, v, move |s| cluster::describe_quorum(s, r, v)).await
        }
        RequestKind::DescribeLogDirs(r) => {
            respond(ResponseKind::DescribeLogDirs(log_dirs::describe(state, r)))
        }
        // Commits metadata, on the active controller.
        RequestKind::ElectLeaders(r) => {
            off_runtime(state, v, move |s| cluster::elect_leaders(s, r)).await
        }
        // Commits metadata, on the active controller.
        RequestKind::AlterPartitionReassignments(r) => {
            off_runtime(state, v, move |s| reassign::alter(s, r, v)).await
        }
        RequestKind::ListPartitionReassignments(r) => respond(
            ResponseKind::ListPartitionReassignments(reassign::list(state, r)),
        ),
        RequestKind::InitProducerId(r) => respond(ResponseKind::InitProducerId(
            txn::init_producer_id(state, r, v).await,
        )),
        RequestKind::AddPartitionsToTxn(r) => respond(ResponseKind::AddPartitionsToTxn(
            txn::add_partitions_to_txn(state, r, v).await,
        )),
        RequestKind::AddOffsetsToTxn(r) => respond(ResponseKind::AddOffsetsToTxn(
            txn::add_offsets_to_txn(state, r, v).await,
        )),
        RequestKind::EndTxn(r) => respond(ResponseKind::EndTxn(txn::end_txn(state, r, v).await)),
        RequestKind::DescribeTransactions(r) => respond(ResponseKind::DescribeTransactions(
            txn::describe_transactions(state, r),
        )),
        RequestKind::ListTransactions(r) => respond(ResponseKind::ListTransactions(
            txn::list_transactions(state, r, v),
        )),
        // May create __consumer_offsets.
        RequestKind::FindCoordinator(r) => {
            off_runtime(state, v, move |s| {
                groups::find_coordinator(s, r, v, &listener)
            })
            .await
        }
        RequestKind::JoinGroup(r) => respond(ResponseKind::JoinGroup(
            groups::join(state, header, peer, r, v).await,
        )),
        RequestKind::SyncGroup(r) => {
            respond(ResponseKind::SyncGroup(groups::sync(state, r, v).await))
        }
        RequestKind::Heartbeat(r) => respond(ResponseKind::Heartbeat(groups::heartbeat(state, r))),
        RequestKind::LeaveGroup(r) => respond(ResponseKind::LeaveGroup(groups::leave(state, r, v))),
        RequestKind::OffsetCommit(r) => respond(ResponseKind::OffsetCommit(
            groups::offset_commit(state, r).await,
        )),
        RequestKind::OffsetFetch(r) => {
            respond(ResponseKind::OffsetFetch(groups::offset_fetch(state, r, v)))
        }
        RequestKind::ListGroups(r) => {
            respond(ResponseKind::ListGroups(groups::list_groups(state, r)))
        }
        RequestKind::DescribeGroups(r) => respond(ResponseKind::DescribeGroups(
            groups::describe_groups(state, r, v),
        )),
        RequestKind::DeleteGroups(r) => {
            off_runtime(state, v, move |s| groups::delete_groups(s, r)).await
        }
        RequestKind::OffsetDelete(r) => {
            off_runtime(state, v, move |s| groups::offset_delete(s, r)).await
        }
        RequestKind::ConsumerGroupHeartbeat(r) => respond(ResponseKind::ConsumerGroupHeartbeat(
            groups::consumer_group_heartbeat(state, header, session, r),
        )),
        RequestKind::ConsumerGroupDescribe(r) => respond(ResponseKind::ConsumerGroupDescribe(
            groups::consumer_group_describe(state, r, v),
        )),
        RequestKind::OffsetForLeaderEpoch(r) => respond(ResponseKind::OffsetForLeaderEpoch(
            records::offset_for_leader_epoch(state, r),
        )),
        RequestKind::TxnOffsetCommit(r) => respond(ResponseKind::TxnOffsetCommit(
            txn::txn_offset_commit(state, r, v).await,
        )),
        RequestKind::WriteTxnMarkers(r) => respond(ResponseKind::WriteTxnMarkers(
            txn::write_txn_markers(state, r).await,
        )),
        RequestKind::DescribeProducers(r) => respond(ResponseKind::DescribeProducers(
            txn::describe_producers(state, r),
        )),
        // On a listener without SASL, or once logged in (re-authentication is not
        // offered), as Kafka answers them.
        RequestKind::SaslHandshake(_) => {
            respond(ResponseKind::SaslHandshake(sasl::handshake_refused()))
        }
        RequestKind::SaslAuthenticate(_) => {
            respond(ResponseKind::SaslAuthenticate(sasl::authenticate_refused()))
        }
        RequestKind::DescribeUserScramCredentials(r) => respond(
            ResponseKind::DescribeUserScramCredentials(scram::describe(state, r)),
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            off_runtime(state, v, move |s| scram::alter(s, r)).await
        }
        // Commit metadata.
        RequestKind::CreateAcls(r) => off_runtime(state, v, move |s| acls::create(s, r, v)).await,
        RequestKind::DeleteAcls(r) => off_runtime(state, v, move |s| acls::delete(s, r, v)).await,
        RequestKind::DescribeAcls(r) => {
            respond(ResponseKind::DescribeAcls(acls::describe(state, r, v)))
        }
        other => Outcome::Close(format!(
            "no handler for {:?}",
            std::mem::discriminant(&other)
        )),
    }
}

/// Runs a handler that writes metadata or files, and so may fsync, on the blocking pool:
/// an fsync must never stall the async workers that serve every other connection.
async fn off_runtime<R>(
    state: &Arc<BrokerState>,
    version: i16,
    handler: impl FnOnce(&BrokerState) -> R + Send + 'static,
) -> Outcome
where
    R: Into<ResponseKind> + Send + 'static,
{
    let state = state.clone();
    match tokio::task::spawn_blocking(move || handler(&state)).await {
        Ok(r) => Outcome::Respond(Box::new(r.into()), version),
        Err(e) => Outcome::Close(format!("request handler failed: {e}")),
    }
}

/// Frames a response: size prefix, response header, body — all at the request's versions.
/// `Err` means the response could not be encoded (a bug); the connection is then closed,
/// which clients handle by retrying, rather than left waiting for a reply.
pub fn encode_response(
    header: &RequestHeader,
    api_key: ApiKey,
    response: ResponseKind,
    version: i16,
) -> Result<Bytes, String> {
    // A fetch response is mostly record bytes: size the buffer once instead of letting it
    // double its way up (and copy everything each time) to tens of megabytes.
    let body_size = match &response {
        ResponseKind::Fetch(f) => f.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(64 + body_size);
    buf.put_i32(0);
    let response_header = ResponseHeader::default().with_correlation_id(header.correlation_id);
    response_header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("encode {api_key:?} v{version} response header: {e}"))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| format!("encode {api_key:?} v{version} response: {e}"))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| {
        format!(
            "{api_key:?} v{version} response of {} bytes exceeds the frame size limit",
            buf.len() - 4
        )
    })?;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

pub(crate) fn str(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
