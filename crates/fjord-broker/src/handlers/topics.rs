//! CreateTopics, DeleteTopics and CreatePartitions: validated here and by the
//! controller, committed to the metadata log, then applied to the hosted partitions.

use std::collections::BTreeMap;

use fjord_controller::{CreatePartitionsSpec, CreateTopicSpec, TopicImage};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use uuid::Uuid;

use super::str;
use crate::error::{code, BrokerError};
use crate::group::offsets;
use crate::state::BrokerState;
use crate::topic_config;

/// Topics the broker writes itself, named as in Kafka. Clients may read them but never
/// write, delete or repartition them: a forged record in `__consumer_offsets` would be
/// replayed as a real commit, and its partition count fixes which partition holds a group.
pub fn is_internal_topic(name: &str) -> bool {
    matches!(
        name,
        offsets::TOPIC | "__transaction_state" | "__share_group_state"
    )
}

/// Kafka's controller refuses a CreateTopics or CreatePartitions request that would add
/// more than this many partitions in total (`MAX_PARTITIONS_PER_BATCH`): one request must
/// not be able to exhaust a broker's file descriptors and memory at once.
pub const MAX_PARTITIONS_PER_REQUEST: i64 = 10_000;

fn too_many_partitions() -> BrokerError {
    BrokerError::Kafka(
        code::POLICY_VIOLATION,
        format!(
            "Excessively large number of partitions per request: at most {MAX_PARTITIONS_PER_REQUEST} new partitions may be created by one request."
        ),
    )
}

pub fn create(state: &BrokerState, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut changed = false;
    // Counted in i64: a request of many topics near i32::MAX partitions must not wrap.
    let requested: i64 = req
        .topics
        .iter()
        .map(|t| resolved_partitions(state, t).max(0) as i64)
        .sum();
    // As in Kafka, an oversized request fails as a whole, for every topic in it.
    let oversized = requested > MAX_PARTITIONS_PER_REQUEST;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = if oversized {
                Err(too_many_partitions())
            } else {
                build_spec(state, &t)
            };
            let result = result.and_then(|spec| {
                if req.validate_only {
                    state.controller.validate_create_topic(&spec)?;
                    Ok(None)
                } else {
                    let created = state.controller.create_topic_prepared(&spec, |records| {
                        state
                            .replicas
                            .prepare_partitions(&spec.name, &spec.configs, records)
                    });
                    if created.is_err() {
                        state.replicas.discard_prepared(&spec.name);
                    }
                    Ok(Some(created?))
                }
            });
            let base = CreatableTopicResult::default().with_name(t.name.clone());
            match result {
                Ok(created) => {
                    changed |= created.is_some();
                    let (partitions, rf, id, overrides) = match &created {
                        Some(image) => (
                            image.partitions.len() as i32,
                            image.replication_factor(),
                            image.topic_id,
                            image.configs.clone(),
                        ),
                        None => (
                            resolved_partitions(state, &t),
                            resolved_rf(state, &t),
                            Uuid::nil(),
                            requested_configs(&t),
                        ),
                    };
                    tracing::info!(topic = %name, partitions, validate_only = req.validate_only, "create topic");
                    let mut r = base.with_error_code(code::NONE);
                    if version >= 5 {
                        r = r
                            .with_num_partitions(partitions)
                            .with_replication_factor(rf)
                            .with_configs(Some(described_configs(state, &overrides)));
                    }
                    if version >= 7 {
                        r = r.with_topic_id(id);
                    }
                    r
                }
                Err(e) => {
                    tracing::info!(topic = %name, error = %e, "create topic refused");
                    base.with_error_code(e.kafka_code())
                        .with_error_message(Some(str(e.to_string())))
                }
            }
        })
        .collect();
    if changed {
        if let Err(e) = state.reconcile() {
            tracing::error!(error = %e, "opening new partitions failed");
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn resolved_partitions(
    state: &BrokerState,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> i32 {
    if !t.assignments.is_empty() {
        t.assignments.len() as i32
    } else if t.num_partitions == -1 {
        state.config.num_partitions
    } else {
        t.num_partitions
    }
}

fn resolved_rf(
    state: &BrokerState,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> i16 {
    match t.assignments.first() {
        Some(a) => a.broker_ids.len() as i16,
        None if t.replication_factor == -1 => state.config.default_replication_factor,
        None => t.replication_factor,
    }
}

fn requested_configs(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> BTreeMap<String, String> {
    t.configs
        .iter()
        .filter_map(|c| {
            c.value
                .as_ref()
                .map(|v| (c.name.to_string(), v.to_string()))
        })
        .collect()
}

/// Turns a CreateTopics entry into a controller spec, validating configs and
/// resolving -1 (use the broker default) for partitions and replication factor.
fn build_spec(
    state: &BrokerState,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<CreateTopicSpec, BrokerError> {
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let name = c.name.to_string();
        let Some(value) = c.value.as_ref().map(|v| v.to_string()) else {
            // A null value means "use the default", which is what leaving it out does.
            continue;
        };
        topic_config::validate(&name, &value)
            .map_err(|reason| BrokerError::Kafka(code::INVALID_CONFIG, reason))?;
        configs.insert(name, value);
    }
    topic_config::validate_combination(&configs)
        .map_err(|reason| BrokerError::Kafka(code::INVALID_CONFIG, reason))?;
    let mut assignments: Vec<_> = t
        .assignments
        .iter()
        .map(|a| {
            (
                a.partition_index,
                a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>(),
            )
        })
        .collect();
    if !assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(BrokerError::Kafka(
                code::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        assignments.sort_by_key(|(p, _)| *p);
        if assignments
            .iter()
            .enumerate()
            .any(|(i, (p, _))| *p != i as i32)
        {
            return Err(BrokerError::Kafka(
                code::INVALID_REPLICA_ASSIGNMENT,
                "Partitions should be a consecutive 0-based integer sequence".into(),
            ));
        }
    }
    Ok(CreateTopicSpec {
        name: t.name.0.to_string(),
        num_partitions: resolved_partitions(state, t),
        replication_factor: resolved_rf(state, t),
        assignments: assignments.into_iter().map(|(_, r)| r).collect(),
        configs,
    })
}

/// The effective configs of a new topic, as CreateTopics v5+ reports them.
fn described_configs(
    state: &BrokerState,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    topic_config::describe(&state.config, overrides)
        .into_iter()
        .map(|c| {
            CreatableTopicConfigs::default()
                .with_name(str(c.name))
                .with_value(Some(str(c.value)))
                .with_config_source(c.source)
        })
        .collect()
}

pub fn delete(state: &BrokerState, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    // v6 names topics by `topics` (name or id); earlier versions by `topic_names`.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut changed = false;
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let image = state.controller.image();
            let topic: Option<TopicImage> = match &name {
                Some(n) => image.topic(n).cloned(),
                None => image.topic_by_id(&id).cloned(),
            };
            let internal = topic.as_ref().map(|t| t.name.clone()).or(name.clone());
            let result = if let Some(n) = internal.filter(|n| is_internal_topic(n)) {
                Err(BrokerError::Kafka(
                    code::INVALID_TOPIC_EXCEPTION,
                    format!("Topic '{n}' is internal to the broker and cannot be deleted: it holds the committed offsets and metadata of consumer groups."),
                ))
            } else if !state.config.delete_topic_enable {
                Err(BrokerError::Kafka(
                    code::TOPIC_DELETION_DISABLED,
                    "Topic deletion is disabled (delete.topic.enable=false).".into(),
                ))
            } else {
                match &topic {
                    None if name.is_none() => Err(BrokerError::Kafka(
                        code::UNKNOWN_TOPIC_ID,
                        format!("Topic id {id} does not exist."),
                    )),
                    None => Err(BrokerError::Kafka(
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        "This server does not host this topic-partition.".into(),
                    )),
                    Some(t) => state
                        .controller
                        .delete_topic(&t.name)
                        .map_err(BrokerError::from),
                }
            };
            let (resolved_name, resolved_id) = match &topic {
                Some(t) => (Some(t.name.clone()), t.topic_id),
                None => (name.clone(), id),
            };
            let mut r = DeletableTopicResult::default()
                .with_name(resolved_name.clone().map(|n| TopicName(str(n))));
            if version >= 6 {
                r = r.with_topic_id(resolved_id);
            }
            match result {
                Ok(_) => {
                    changed = true;
                    tracing::info!(topic = ?resolved_name, "deleted topic");
                    r.with_error_code(code::NONE)
                }
                Err(e) => {
                    let mut r = r.with_error_code(e.kafka_code());
                    if version >= 5 {
                        r = r.with_error_message(Some(str(e.to_string())));
                    }
                    r
                }
            }
        })
        .collect();
    if changed {
        if let Err(e) = state.reconcile() {
            tracing::error!(error = %e, "removing deleted partitions failed");
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub fn create_partitions(
    state: &BrokerState,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut changed = false;
    let image = state.controller.image();
    let added: i64 = req
        .topics
        .iter()
        .map(|t| {
            let current = image
                .topic(t.name.0.as_str())
                .map_or(0, |topic| topic.partitions.len() as i64);
            (t.count as i64 - current).max(0)
        })
        .sum();
    let oversized = added > MAX_PARTITIONS_PER_REQUEST;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            if oversized {
                return CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(code::POLICY_VIOLATION)
                    .with_error_message(Some(str(too_many_partitions().to_string())));
            }
            if is_internal_topic(t.name.0.as_str()) {
                let message = format!(
                    "The number of partitions of the internal topic '{}' cannot change: each consumer group is mapped to one of its partitions by a hash of the group id.",
                    t.name.0.as_str()
                );
                return CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(code::INVALID_PARTITIONS)
                    .with_error_message(Some(str(message)));
            }
            let spec = CreatePartitionsSpec {
                name: t.name.0.to_string(),
                total: t.count,
                assignments: t
                    .assignments
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
                    .collect(),
            };
            let result = if req.validate_only {
                state
                    .controller
                    .validate_create_partitions(&spec)
                    .map_err(BrokerError::from)
            } else {
                let configs = image
                    .topic(&spec.name)
                    .map(|t| t.configs.clone())
                    .unwrap_or_default();
                let added = state.controller.create_partitions_prepared(&spec, |records| {
                    state
                        .replicas
                        .prepare_partitions(&spec.name, &configs, records)
                });
                if added.is_err() {
                    state.replicas.discard_prepared(&spec.name);
                }
                added
            };
            let r = CreatePartitionsTopicResult::default().with_name(t.name);
            match result {
                Ok(()) => {
                    changed |= !req.validate_only;
                    tracing::info!(topic = %spec.name, total = spec.total, "partitions added");
                    r.with_error_code(code::NONE)
                }
                Err(e) => r
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str(e.to_string()))),
            }
        })
        .collect();
    if changed {
        if let Err(e) = state.reconcile() {
            tracing::error!(error = %e, "opening new partitions failed");
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}
