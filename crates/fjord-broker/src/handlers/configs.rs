//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, brokers (one
//! broker, or the cluster-wide default with an empty name) and groups. Every change is a
//! metadata record; partitions and groups pick it up at once.

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

use fjord_controller::ConfigResource;

use super::str;
use crate::config::{PropType, BROKER_PROPERTIES};
use crate::dynamic_config::{self, GROUP_CONFIGS};
use crate::error::{code, BrokerError};
use crate::state::BrokerState;
use crate::topic_config::{self, source};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const GROUP: i8 = 32;

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
                GROUP => Ok(describe_group(state, &name, version, &wanted)),
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
    Ok(
        topic_config::describe(&state.replicas.config(), &topic.configs)
            .into_iter()
            .filter(|c| wanted(c.name))
            .map(|c| {
                // A broker-level value may be a dynamic one (this broker's or the cluster
                // default); say which, as Kafka does.
                let broker_source = c.broker_synonym.as_ref().map(|(broker_key, _)| {
                    dynamic_config::broker_source(&state.config, &image, broker_key).0
                });
                let row_source = match broker_source {
                    Some(s) if c.source == source::STATIC_BROKER_CONFIG => s,
                    _ => c.source,
                };
                let mut row = DescribeConfigsResourceResult::default()
                    .with_name(str(c.name))
                    .with_value(Some(str(c.value.clone())))
                    .with_read_only(false)
                    .with_config_source(row_source)
                    .with_is_sensitive(false);
                if include_synonyms {
                    let mut synonyms = Vec::new();
                    if c.source == source::DYNAMIC_TOPIC_CONFIG {
                        synonyms.push(synonym(c.name, &c.value, source::DYNAMIC_TOPIC_CONFIG));
                    }
                    if let Some((broker_key, value)) = &c.broker_synonym {
                        let s = broker_source.unwrap_or(source::STATIC_BROKER_CONFIG);
                        synonyms.push(synonym(broker_key, value, s));
                    }
                    synonyms.push(synonym(c.name, &c.default_value, source::DEFAULT_CONFIG));
                    row = row.with_synonyms(synonyms);
                }
                if version >= 3 {
                    row = row.with_config_type(c.prop_type.code());
                }
                row
            })
            .collect(),
    )
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str(name))
        .with_value(Some(str(value)))
        .with_source(source)
}

fn config_row(
    name: &str,
    value: Option<String>,
    read_only: bool,
    source: i8,
    prop_type: Option<PropType>,
    version: i16,
) -> DescribeConfigsResourceResult {
    // Passwords and JAAS lines are never sent back, as with Kafka's PASSWORD configs.
    let sensitive = crate::config::is_sensitive(name);
    let mut row = DescribeConfigsResourceResult::default()
        .with_name(str(name))
        .with_value(if sensitive { None } else { value.map(str) })
        .with_read_only(read_only)
        .with_config_source(source)
        .with_is_sensitive(sensitive);
    if version >= 3 {
        row = row.with_config_type(prop_type.map_or(0, PropType::code));
    }
    row
}

/// Whether `name` names this broker: its id, or "" for the cluster-wide default.
fn check_broker(state: &BrokerState, name: &str) -> Result<(), BrokerError> {
    if !name.is_empty() && name != state.node_id().to_string() {
        return Err(BrokerError::Kafka(
            code::INVALID_REQUEST,
            format!(
                "Broker {name} is not this broker ({}); ask broker {name} itself",
                state.node_id()
            ),
        ));
    }
    Ok(())
}

fn describe_broker(
    state: &BrokerState,
    name: &str,
    version: i16,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<DescribeConfigsResourceResult>, BrokerError> {
    check_broker(state, name)?;
    let image = state.controller.image();
    let prop_type = |n: &str| {
        BROKER_PROPERTIES
            .iter()
            .find(|(p, _, _)| *p == n)
            .map(|(_, _, t)| *t)
    };
    // The cluster-wide default resource holds only what was set on it, as on Kafka.
    if name.is_empty() {
        return Ok(image
            .configs(ConfigResource::Broker, "")
            .into_iter()
            .flatten()
            .filter(|(k, _)| wanted(k))
            .map(|(k, v)| {
                config_row(
                    k,
                    Some(v.clone()),
                    false,
                    dynamic_config::source::DYNAMIC_DEFAULT_BROKER_CONFIG,
                    prop_type(k),
                    version,
                )
            })
            .collect());
    }
    let base = &state.config;
    let effective = state.replicas.config();
    // Every property Fjord knows, and any other dynamic one set on this broker or the
    // cluster default (Kafka names Fjord stores without using).
    let mut names: Vec<&str> = BROKER_PROPERTIES.iter().map(|(n, _, _)| *n).collect();
    for n in ["", name] {
        for k in image
            .configs(ConfigResource::Broker, n)
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    Ok(names
        .into_iter()
        .filter(|n| wanted(n))
        .map(|n| {
            let (source, value) = dynamic_config::broker_source(base, &image, n);
            // Values Fjord derives (log.retention.ms from hours, ...) come from the
            // configuration in force.
            let value = effective.value_of(n).or(value);
            config_row(
                n,
                value,
                !dynamic_config::is_dynamic_broker_config(n),
                source,
                prop_type(n),
                version,
            )
        })
        .collect())
}

fn describe_group(
    state: &BrokerState,
    name: &str,
    version: i16,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<DescribeConfigsResourceResult> {
    let image = state.controller.image();
    let set = image.configs(ConfigResource::Group, name);
    let broker = state.replicas.config();
    GROUP_CONFIGS
        .iter()
        .filter(|(n, _)| wanted(n))
        .map(|(n, t)| {
            let (value, source) = match set.and_then(|c| c.get(*n)) {
                Some(v) => (v.clone(), dynamic_config::source::GROUP_CONFIG),
                None => (
                    dynamic_config::group_default(&broker, n),
                    dynamic_config::source::DEFAULT_CONFIG,
                ),
            };
            config_row(n, Some(value), false, source, Some(*t), version)
        })
        .collect()
}

/// Applies a change to the dynamic configs of a broker ("" for every broker) or a
/// group, after validating all of it.
fn apply_changes(
    state: &BrokerState,
    resource: ConfigResource,
    name: &str,
    changes: Vec<(String, Option<String>)>,
    validate_only: bool,
) -> Result<(), BrokerError> {
    let image = state.controller.image();
    match resource {
        ConfigResource::Broker => {
            check_broker(state, name)?;
            dynamic_config::validate_broker_change(&state.config, &image, name, &changes)?;
        }
        ConfigResource::Group => {
            if name.is_empty() {
                return Err(BrokerError::Kafka(
                    code::INVALID_REQUEST,
                    "Group name must not be empty".into(),
                ));
            }
            dynamic_config::validate_group_change(
                &state.replicas.config(),
                image.configs(ConfigResource::Group, name),
                &changes,
            )?;
        }
    }
    if validate_only {
        return Ok(());
    }
    state.controller.alter_configs(resource, name, &changes)?;
    // Partitions take new topic defaults from the configuration in force.
    state.reconcile()?;
    tracing::info!(?resource, name, changes = ?changes, "dynamic configs altered");
    Ok(())
}

/// The changes AlterConfigs asks for: it replaces the whole set, so what is not named
/// returns to its default.
fn replace_all(
    current: Option<&BTreeMap<String, String>>,
    named: &[(String, Option<String>)],
) -> Vec<(String, Option<String>)> {
    let new: BTreeMap<String, Option<String>> = named.iter().cloned().collect();
    let mut changes: Vec<(String, Option<String>)> = current
        .into_iter()
        .flatten()
        .filter(|(k, _)| !new.contains_key(*k))
        .map(|(k, _)| (k.clone(), None))
        .collect();
    changes.extend(new);
    changes
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
                BROKER | GROUP => {
                    let resource = if r.resource_type == BROKER {
                        ConfigResource::Broker
                    } else {
                        ConfigResource::Group
                    };
                    let named: Vec<(String, Option<String>)> = r
                        .configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                        .collect();
                    let image = state.controller.image();
                    let changes = replace_all(image.configs(resource, &name), &named);
                    apply_changes(state, resource, &name, changes, req.validate_only)
                }
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
                            let is_list = topic_config::TOPIC_CONFIGS
                                .iter()
                                .any(|(n, _, t)| *n == key && *t == PropType::List);
                            let effective = || {
                                topic_config::describe(&state.replicas.config(), &topic.configs)
                                    .into_iter()
                                    .find(|d| d.name == key)
                                    .map(|d| d.value)
                                    .unwrap_or_default()
                            };
                            incremental_change(
                                &topic.configs,
                                &key,
                                is_list,
                                &effective,
                                c.config_operation,
                                value,
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .and_then(|changes| {
                            apply_topic_changes(state, &name, changes, req.validate_only)
                        }),
                },
                BROKER | GROUP => {
                    let resource = if r.resource_type == BROKER {
                        ConfigResource::Broker
                    } else {
                        ConfigResource::Group
                    };
                    let image = state.controller.image();
                    let empty = BTreeMap::new();
                    let current = image.configs(resource, &name).unwrap_or(&empty);
                    r.configs
                        .iter()
                        .map(|c| {
                            let key = c.name.to_string();
                            let value = c.value.as_ref().map(|v| v.to_string());
                            let is_list = resource == ConfigResource::Broker
                                && BROKER_PROPERTIES
                                    .iter()
                                    .any(|(n, _, t)| *n == key && *t == PropType::List);
                            // A list without a value on this resource starts from the
                            // value in force.
                            let effective =
                                || state.replicas.config().value_of(&key).unwrap_or_default();
                            incremental_change(
                                current,
                                &key,
                                is_list,
                                &effective,
                                c.config_operation,
                                value,
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .and_then(|changes| {
                            apply_changes(state, resource, &name, changes, req.validate_only)
                        })
                }
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
    current: &BTreeMap<String, String>,
    key: &str,
    is_list: bool,
    effective: &dyn Fn() -> String,
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
            if !is_list {
                return Err(invalid(format!(
                    "Config value append is not allowed for config key: {key}"
                )));
            }
            let existing = current.get(key).cloned().unwrap_or_else(effective);
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
