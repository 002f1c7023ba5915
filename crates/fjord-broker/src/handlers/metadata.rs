//! Metadata: the brokers, the controller, and topics with their partitions' leaders,
//! replicas and ISR. Creates missing topics when auto-creation is on and the client asks.

use fjord_controller::{CreateTopicSpec, MetadataImage, TopicImage};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::str;
use crate::error::code;
use crate::state::BrokerState;

/// `listener`: the one the client came through; brokers are given by their address there.
pub fn handle(
    state: &BrokerState,
    req: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    let image = state.controller.image();
    // Masks are sent only when asked for; otherwise the field keeps Kafka's "not
    // requested" value, i32::MIN.
    let with_ops = req.include_topic_authorized_operations;
    // v0 asks for all topics with an empty list; later versions with a null one.
    let wanted: Option<Vec<(Option<String>, Uuid)>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
    };
    // Before v4 the field is not sent and decodes as true; it is false when the client
    // may not create the topic.
    let auto_create = state.config.auto_create_topics && req.allow_auto_topic_creation;

    let mut topics = Vec::new();
    match wanted {
        None => {
            for t in image.topics.values() {
                topics.push(topic_entry(&image, t, version, with_ops));
            }
        }
        Some(list) => {
            let mut created = false;
            // Auto-creation counts against the same per-request partition limit as
            // CreateTopics: one Metadata request naming many unknown topics must not
            // create more at once.
            let mut budget = super::topics::MAX_PARTITIONS_PER_REQUEST;
            for (name, id) in list {
                let found = match &name {
                    Some(n) => image.topic(n).cloned(),
                    None => image.topic_by_id(&id).cloned(),
                };
                if let Some(t) = found {
                    topics.push(topic_entry(&image, &t, version, with_ops));
                    continue;
                }
                let Some(name) = name else {
                    topics.push(error_entry(None, id, code::UNKNOWN_TOPIC_ID));
                    continue;
                };
                if !auto_create {
                    topics.push(error_entry(
                        Some(name),
                        Uuid::nil(),
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                    ));
                    continue;
                }
                if name == crate::group::offsets::TOPIC {
                    // The internal topic is created as the group coordinator needs it
                    // (offsets.topic.num.partitions, compacted), never as a plain topic.
                    let entry = match state.groups.ensure_topic(state) {
                        Ok(()) => state
                            .controller
                            .image()
                            .topic(&name)
                            .map(|t| topic_entry(&image, t, version, with_ops)),
                        Err(_) => None,
                    };
                    created |= entry.is_some();
                    topics.push(entry.unwrap_or_else(|| {
                        error_entry(Some(name), Uuid::nil(), code::LEADER_NOT_AVAILABLE)
                    }));
                    continue;
                }
                let spec = CreateTopicSpec {
                    name: name.clone(),
                    num_partitions: state.config.num_partitions,
                    replication_factor: state.config.default_replication_factor,
                    ..Default::default()
                };
                if spec.num_partitions as i64 > budget {
                    tracing::warn!(topic = %name, "auto-create refused: too many partitions created by one request");
                    topics.push(error_entry(
                        Some(name),
                        Uuid::nil(),
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                    ));
                    continue;
                }
                budget -= spec.num_partitions as i64;
                let result = state.controller.create_topic_prepared(&spec, |records| {
                    state
                        .replicas
                        .prepare_partitions(&spec.name, &spec.configs, records)
                });
                if result.is_err() {
                    state.replicas.discard_prepared(&spec.name);
                }
                match result {
                    Ok(t) => {
                        tracing::info!(topic = %name, partitions = spec.num_partitions, "auto-created topic");
                        created = true;
                        topics.push(topic_entry(&image, &t, version, with_ops));
                    }
                    // Lost a race with another creator: report what exists now.
                    Err(e) if e.kafka_code() == code::TOPIC_ALREADY_EXISTS => {
                        match state.controller.image().topic(&name) {
                            Some(t) => topics.push(topic_entry(&image, t, version, with_ops)),
                            None => topics.push(error_entry(
                                Some(name),
                                Uuid::nil(),
                                code::LEADER_NOT_AVAILABLE,
                            )),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e, "auto-create refused");
                        let c = match e.kafka_code() {
                            code::INVALID_TOPIC_EXCEPTION => code::INVALID_TOPIC_EXCEPTION,
                            code::INVALID_REPLICATION_FACTOR => code::INVALID_REPLICATION_FACTOR,
                            _ => code::UNKNOWN_TOPIC_OR_PARTITION,
                        };
                        topics.push(error_entry(Some(name), Uuid::nil(), c));
                    }
                }
            }
            if created {
                if let Err(e) = state.reconcile() {
                    tracing::error!(error = %e, "opening auto-created partitions failed");
                }
            }
        }
    }

    let image = state.controller.image();
    // A fenced broker stopped heartbeating: clients are not sent to it.
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(str(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str)),
            )
        })
        .collect();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(super::controller_id(state)))
        .with_topics(topics);
    if version >= 2 {
        resp = resp.with_cluster_id(Some(str(state.cluster_id.clone())));
    }
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        // No ACLs yet: every cluster operation is allowed.
        resp = resp.with_cluster_authorized_operations(CLUSTER_OPERATIONS);
    }
    resp
}

/// The operations Kafka defines on a topic, as bits of its AclOperation codes: READ (3),
/// WRITE (4), CREATE (5), DELETE (6), ALTER (7), DESCRIBE (8), DESCRIBE_CONFIGS (10),
/// ALTER_CONFIGS (11). Without ACLs a client may do all of them.
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// The operations Kafka defines on the cluster: CREATE (5), ALTER (7), DESCRIBE (8),
/// CLUSTER_ACTION (9), DESCRIBE_CONFIGS (10), ALTER_CONFIGS (11), IDEMPOTENT_WRITE (12).
pub const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

fn topic_entry(
    image: &MetadataImage,
    t: &TopicImage,
    version: i16,
    with_ops: bool,
) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            // A partition whose in-sync replicas are all gone has no leader: clients are
            // told LEADER_NOT_AVAILABLE and retry, as with Kafka.
            let error = if p.leader < 0 {
                code::LEADER_NOT_AVAILABLE
            } else {
                code::NONE
            };
            let offline = p
                .replicas
                .iter()
                .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                .map(|r| BrokerId(*r))
                .collect();
            let mut entry = MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect());
            if version >= 5 {
                entry = entry.with_offline_replicas(offline);
            }
            if version >= 7 {
                entry = entry.with_leader_epoch(p.leader_epoch);
            }
            entry
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_error_code(code::NONE)
        .with_name(Some(TopicName(str(t.name.clone()))))
        .with_is_internal(t.name.starts_with("__"))
        .with_partitions(partitions);
    if version >= 10 {
        entry = entry.with_topic_id(t.topic_id);
    }
    if version >= 8 && with_ops {
        entry = entry.with_topic_authorized_operations(TOPIC_OPERATIONS);
    }
    entry
}

fn error_entry(name: Option<String>, id: Uuid, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error)
        .with_name(name.map(|n| TopicName(str(n))))
        .with_topic_id(id)
}
