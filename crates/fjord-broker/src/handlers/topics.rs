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
use crate::state::BrokerState;
use crate::topic_config;

pub fn create(state: &BrokerState, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut changed = false;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = build_spec(state, &t).and_then(|spec| {
                if req.validate_only {
                    state.controller.validate_create_topic(&spec)?;
                    Ok(None)
                } else {
                    Ok(Some(state.controller.create_topic(&spec)?))
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
            let result = if !state.config.delete_topic_enable {
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
    let results = req
        .topics
        .into_iter()
        .map(|t| {
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
                state.controller.validate_create_partitions(&spec)
            } else {
                state.controller.create_partitions(&spec)
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
