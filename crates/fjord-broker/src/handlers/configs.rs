//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and describing
//! the broker). Topic config changes are metadata records; the logs pick them up at once.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::str;
use crate::config::BROKER_PROPERTIES;
use crate::error::{code, BrokerError};
use crate::state::BrokerState;
use crate::topic_config::{self, source};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub fn describe(
    state: &BrokerState,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            let name = r.resource_name.to_string();
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let rows = match r.resource_type {
                TOPIC => describe_topic(state, &name, req.include_synonyms, version, &wanted),
                BROKER => describe_broker(state, &name, version, &wanted),
                other => Err(BrokerError::Kafka(
                    code::INVALID_REQUEST,
                    format!("Unsupported resource type {other} for DescribeConfigs"),
                )),
            };
            match rows {
                Ok(configs) => base.with_error_code(code::NONE).with_configs(configs),
                Err(e) => base
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str(e.to_string()))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn unknown_topic(name: &str) -> BrokerError {
    BrokerError::Kafka(
        code::UNKNOWN_TOPIC_OR_PARTITION,
        format!("Topic {name} does not exist."),
    )
}

fn describe_topic(
    state: &BrokerState,
    name: &str,
    include_synonyms: bool,
    version: i16,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<DescribeConfigsResourceResult>, BrokerError> {
    let image = state.controller.image();
    let topic = image.topic(name).ok_or_else(|| unknown_topic(name))?;
    Ok(topic_config::describe(&state.config, &topic.configs)
        .into_iter()
        .filter(|c| wanted(c.name))
        .map(|c| {
            let mut row = DescribeConfigsResourceResult::default()
                .with_name(str(c.name))
                .with_value(Some(str(c.value.clone())))
                .with_read_only(false)
                .with_config_source(c.source)
                .with_is_sensitive(false);
            if include_synonyms {
                let mut synonyms = Vec::new();
                if c.source == source::DYNAMIC_TOPIC_CONFIG {
                    synonyms.push(synonym(c.name, &c.value, source::DYNAMIC_TOPIC_CONFIG));
                }
                if let Some((broker_key, value)) = &c.broker_synonym {
                    synonyms.push(synonym(broker_key, value, source::STATIC_BROKER_CONFIG));
                }
                synonyms.push(synonym(c.name, &c.default_value, source::DEFAULT_CONFIG));
                row = row.with_synonyms(synonyms);
            }
            if version >= 3 {
                row = row.with_config_type(c.prop_type.code());
            }
            row
        })
        .collect())
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str(name))
        .with_value(Some(str(value)))
        .with_source(source)
}

fn describe_broker(
    state: &BrokerState,
    name: &str,
    version: i16,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<DescribeConfigsResourceResult>, BrokerError> {
    // An empty name asks for the cluster-wide defaults, which are this broker's own here.
    if !name.is_empty() && name != state.node_id().to_string() {
        return Err(BrokerError::Kafka(
            code::INVALID_REQUEST,
            format!(
                "Broker {name} is not this broker ({}); ask broker {name} itself",
                state.node_id()
            ),
        ));
    }
    Ok(BROKER_PROPERTIES
        .iter()
        .filter(|(n, _, _)| wanted(n))
        .map(|(n, _, t)| {
            let explicit = state.config.explicit.contains_key(*n);
            let mut row = DescribeConfigsResourceResult::default()
                .with_name(str(*n))
                .with_value(state.config.value_of(n).map(str))
                // Broker settings are static: changed in server.properties and a restart.
                .with_read_only(true)
                .with_config_source(if explicit {
                    source::STATIC_BROKER_CONFIG
                } else {
                    source::DEFAULT_CONFIG
                })
                .with_is_sensitive(false);
            if version >= 3 {
                row = row.with_config_type(t.code());
            }
            row
        })
        .collect())
}

/// Applies a set of topic config changes after validating every one of them.
fn apply_topic_changes(
    state: &BrokerState,
    name: &str,
    changes: Vec<(String, Option<String>)>,
    validate_only: bool,
) -> Result<(), BrokerError> {
    for (k, v) in &changes {
        match v {
            Some(v) => topic_config::validate(k, v)
                .map_err(|reason| BrokerError::Kafka(code::INVALID_CONFIG, reason))?,
            None if !topic_config::is_known(k) => {
                return Err(BrokerError::Kafka(
                    code::INVALID_CONFIG,
                    format!("Unknown topic config name: {k}"),
                ))
            }
            None => {}
        }
    }
    if let Some(topic) = state.controller.image().topic(name) {
        let mut merged = topic.configs.clone();
        for (k, v) in &changes {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        topic_config::validate_combination(&merged)
            .map_err(|reason| BrokerError::Kafka(code::INVALID_CONFIG, reason))?;
    }
    if validate_only {
        return Ok(());
    }
    state.controller.alter_topic_configs(name, &changes)?;
    state.reconcile()?;
    tracing::info!(topic = %name, changes = ?changes, "topic configs altered");
    Ok(())
}

fn broker_alter_refused() -> BrokerError {
    BrokerError::Kafka(
        code::INVALID_REQUEST,
        "Fjord broker configs are static: set them in server.properties or with --override and restart".into(),
    )
}

pub fn alter(state: &BrokerState, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let result = match r.resource_type {
                TOPIC => match state.controller.image().topic(&name) {
                    None => Err(unknown_topic(&name)),
                    Some(topic) => {
                        // AlterConfigs replaces the whole set: what is not named returns
                        // to its default.
                        let new: BTreeMap<String, Option<String>> = r
                            .configs
                            .iter()
                            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                            .collect();
                        let mut changes: Vec<(String, Option<String>)> = topic
                            .configs
                            .keys()
                            .filter(|k| !new.contains_key(*k))
                            .map(|k| (k.clone(), None))
                            .collect();
                        changes.extend(new);
                        apply_topic_changes(state, &name, changes, req.validate_only)
                    }
                },
                BROKER => Err(broker_alter_refused()),
                other => Err(BrokerError::Kafka(
                    code::INVALID_REQUEST,
                    format!("Unsupported resource type {other} for AlterConfigs"),
                )),
            };
            let base = AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match result {
                Ok(()) => base.with_error_code(code::NONE),
                Err(e) => base
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str(e.to_string()))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub fn incremental_alter(
    state: &BrokerState,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let result = match r.resource_type {
                TOPIC => match state.controller.image().topic(&name) {
                    None => Err(unknown_topic(&name)),
                    Some(topic) => r
                        .configs
                        .iter()
                        .map(|c| {
                            let key = c.name.to_string();
                            let value = c.value.as_ref().map(|v| v.to_string());
                            incremental_change(
                                state,
                                &topic.configs,
                                &key,
                                c.config_operation,
                                value,
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .and_then(|changes| {
                            apply_topic_changes(state, &name, changes, req.validate_only)
                        }),
                },
                BROKER => Err(broker_alter_refused()),
                other => Err(BrokerError::Kafka(
                    code::INVALID_REQUEST,
                    format!("Unsupported resource type {other} for IncrementalAlterConfigs"),
                )),
            };
            let base = IncrementalResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match result {
                Ok(()) => base.with_error_code(code::NONE),
                Err(e) => base
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str(e.to_string()))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// One IncrementalAlterConfigs operation as a (key, new value or None) change.
fn incremental_change(
    state: &BrokerState,
    current: &BTreeMap<String, String>,
    key: &str,
    op: i8,
    value: Option<String>,
) -> Result<(String, Option<String>), BrokerError> {
    let invalid = |msg: String| BrokerError::Kafka(code::INVALID_CONFIG, msg);
    match op {
        SET => match value {
            Some(v) => Ok((key.to_string(), Some(v))),
            None => Err(invalid(format!("Null value not supported for : {key}"))),
        },
        DELETE => Ok((key.to_string(), None)),
        APPEND | SUBTRACT => {
            let is_list = topic_config::TOPIC_CONFIGS
                .iter()
                .any(|(n, _, t)| *n == key && *t == crate::config::PropType::List);
            if !is_list {
                return Err(invalid(format!(
                    "Config value append is not allowed for config key: {key}"
                )));
            }
            let existing = current.get(key).cloned().unwrap_or_else(|| {
                topic_config::describe(&state.config, current)
                    .into_iter()
                    .find(|c| c.name == key)
                    .map(|c| c.value)
                    .unwrap_or_default()
            });
            let mut items: Vec<String> = existing
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            for v in value
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                if op == APPEND {
                    if !items.iter().any(|i| i == v) {
                        items.push(v.to_string());
                    }
                } else {
                    items.retain(|i| i != v);
                }
            }
            Ok((key.to_string(), Some(items.join(","))))
        }
        other => Err(BrokerError::Kafka(
            code::INVALID_REQUEST,
            format!("Unknown config operation {other}"),
        )),
    }
}
