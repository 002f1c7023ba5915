//! Dynamic configs as `kafka-configs.sh` uses them: broker configs for one broker and for
//! the cluster-wide default, group configs, their sources in DescribeConfigs, their effect,
//! and their survival across a restart.

mod common;

use common::{batch, s, wait_for_coordinator, Client, TestBroker};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

const BROKER: i8 = 4;
const GROUP: i8 = 32;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

const INVALID_REQUEST: i16 = 42;
const INVALID_CONFIG: i16 = 40;
const MESSAGE_TOO_LARGE: i16 = 10;

const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const DEFAULT_CONFIG: i8 = 5;
const GROUP_CONFIG: i8 = 8;

/// One IncrementalAlterConfigs resource; returns its error code and message.
async fn alter(
    c: &mut Client,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, String) {
    let r = c
        .request(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(s(name))
                    .with_configs(
                        ops.iter()
                            .map(|(k, op, v)| {
                                AlterableConfig::default()
                                    .with_name(s(k))
                                    .with_config_operation(*op)
                                    .with_value(v.map(s))
                            })
                            .collect(),
                    ),
            ]),
            1,
        )
        .await;
    let res = &r.responses[0];
    (
        res.error_code,
        res.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// A config as DescribeConfigs reports it: value, source, read-only.
async fn describe(
    c: &mut Client,
    resource_type: i8,
    name: &str,
    key: &str,
) -> Option<(Option<String>, i8, bool)> {
    let r = c
        .request(
            DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(s(name))
                    .with_configuration_keys(None),
            ]),
            4,
        )
        .await;
    assert_eq!(
        r.results[0].error_code, 0,
        "{:?}",
        r.results[0].error_message
    );
    r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .map(|c| {
            (
                c.value.as_ref().map(|v| v.to_string()),
                c.config_source,
                c.read_only,
            )
        })
}

async fn produce_value(c: &mut Client, topic: &str, len: usize) -> i16 {
    let value = vec![b'x'; len];
    let records = batch(&[&value], None, 0, Compression::None);
    let r = c
        .request(common::produce_req(topic, 0, records, 1), 7)
        .await;
    r.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn dynamic_broker_configs_take_effect_and_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    assert_eq!(
        common::create(&mut c, "t", 1, 1).await.topics[0].error_code,
        0
    );
    assert_eq!(produce_value(&mut c, "t", 5000).await, 0);

    // A static setting is refused for the whole resource, with Kafka's message.
    let (code, message) = alter(
        &mut c,
        BROKER,
        "1",
        &[
            ("log.dirs", SET, Some("/elsewhere")),
            ("message.max.bytes", SET, Some("2000")),
        ],
    )
    .await;
    assert_eq!(code, INVALID_REQUEST);
    assert_eq!(
        message,
        "Cannot update these configs dynamically: Set(log.dirs)"
    );
    assert_eq!(produce_value(&mut c, "t", 5000).await, 0);
    let (code, _) = alter(
        &mut c,
        BROKER,
        "1",
        &[("message.max.bytes", SET, Some("many"))],
    )
    .await;
    assert_eq!(code, INVALID_REQUEST);

    // The cluster-wide default (empty name): topics without an override follow it.
    let (code, message) = alter(
        &mut c,
        BROKER,
        "",
        &[("log.retention.ms", SET, Some("3600000"))],
    )
    .await;
    assert_eq!(code, 0, "{message}");
    let topic_retention = describe(&mut c, 2, "t", "retention.ms").await;
    assert_eq!(
        topic_retention.map(|r| (r.0, r.1)),
        Some((Some("3600000".to_string()), DYNAMIC_DEFAULT_BROKER_CONFIG))
    );
    assert_eq!(
        describe(&mut c, BROKER, "", "log.retention.ms").await,
        Some((Some("3600000".into()), DYNAMIC_DEFAULT_BROKER_CONFIG, false))
    );

    // This broker's own setting: batches over it are refused at once.
    let (code, message) = alter(
        &mut c,
        BROKER,
        "1",
        &[("message.max.bytes", SET, Some("2000"))],
    )
    .await;
    assert_eq!(code, 0, "{message}");
    assert_eq!(produce_value(&mut c, "t", 5000).await, MESSAGE_TOO_LARGE);
    assert_eq!(
        describe(&mut c, BROKER, "1", "message.max.bytes").await,
        Some((Some("2000".into()), DYNAMIC_BROKER_CONFIG, false))
    );
    assert_eq!(
        describe(&mut c, BROKER, "1", "log.retention.ms").await,
        Some((Some("3600000".into()), DYNAMIC_DEFAULT_BROKER_CONFIG, false))
    );
    assert!(describe(&mut c, BROKER, "1", "log.dirs")
        .await
        .is_some_and(|(_, _, read_only)| read_only));

    // Lists append and subtract from the value in force; names Kafka makes dynamic but
    // Fjord does not use are stored and reported.
    let ops = [
        ("log.cleanup.policy", APPEND, Some("compact")),
        ("background.threads", SET, Some("9")),
    ];
    assert_eq!(alter(&mut c, BROKER, "1", &ops).await.0, 0);
    assert_eq!(
        describe(&mut c, BROKER, "1", "log.cleanup.policy")
            .await
            .map(|r| r.0),
        Some(Some("delete,compact".into()))
    );
    assert_eq!(
        describe(&mut c, BROKER, "1", "background.threads").await,
        Some((Some("9".into()), DYNAMIC_BROKER_CONFIG, false))
    );
    let ops = [
        ("log.cleanup.policy", SUBTRACT, Some("compact")),
        ("background.threads", DELETE, None),
    ];
    assert_eq!(alter(&mut c, BROKER, "1", &ops).await.0, 0);
    assert_eq!(
        describe(&mut c, BROKER, "1", "log.cleanup.policy")
            .await
            .map(|r| r.0),
        Some(Some("delete".into()))
    );
    assert_eq!(
        describe(&mut c, BROKER, "1", "background.threads").await,
        None
    );

    // Kept in the metadata log: after a restart the broker starts with them.
    drop(c);
    broker.stop().await;
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    assert_eq!(
        describe(&mut c, BROKER, "1", "message.max.bytes").await,
        Some((Some("2000".into()), DYNAMIC_BROKER_CONFIG, false))
    );
    assert_eq!(produce_value(&mut c, "t", 5000).await, MESSAGE_TOO_LARGE);
    // Removing it restores the static value.
    assert_eq!(
        alter(&mut c, BROKER, "1", &[("message.max.bytes", DELETE, None)])
            .await
            .0,
        0
    );
    assert_eq!(produce_value(&mut c, "t", 5000).await, 0);
    assert_eq!(
        describe(&mut c, BROKER, "1", "message.max.bytes").await,
        Some((Some("1048588".into()), DEFAULT_CONFIG, false))
    );
    broker.stop().await;
}

#[tokio::test]
async fn group_configs_override_the_broker_for_their_group() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), &[("offsets.topic.num.partitions", "1")]).await;
    let mut c = broker.client().await;
    wait_for_coordinator(&mut c).await;
    assert_eq!(
        common::create(&mut c, "gt", 1, 1).await.topics[0].error_code,
        0
    );

    // A group nobody configured reports the broker's values.
    assert_eq!(
        describe(&mut c, GROUP, "g", "consumer.heartbeat.interval.ms").await,
        Some((Some("5000".into()), DEFAULT_CONFIG, false))
    );
    let (code, _) = alter(
        &mut c,
        GROUP,
        "g",
        &[("consumer.session.timeout.ms", SET, Some("1000"))],
    )
    .await;
    assert_eq!(
        code, INVALID_CONFIG,
        "below Kafka's group.consumer.min.session.timeout.ms"
    );
    let (code, message) = alter(&mut c, GROUP, "g", &[("no.such.config", SET, Some("1"))]).await;
    assert_eq!(
        (code, message.as_str()),
        (INVALID_CONFIG, "Unknown group config name: no.such.config")
    );

    let ops = [
        ("consumer.session.timeout.ms", SET, Some("50000")),
        ("consumer.heartbeat.interval.ms", SET, Some("6000")),
    ];
    let (code, message) = alter(&mut c, GROUP, "g", &ops).await;
    assert_eq!(code, 0, "{message}");
    assert_eq!(
        describe(&mut c, GROUP, "g", "consumer.session.timeout.ms").await,
        Some((Some("50000".into()), GROUP_CONFIG, false))
    );

    // A member of that group is told the group's heartbeat interval; another group keeps
    // the broker's.
    let join = |group: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s("m"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(10_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("gt"))]))
            .with_topic_partitions(Some(vec![]))
    };
    let r = c.request(join("g"), 1).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.heartbeat_interval_ms, 6000);
    let r = c.request(join("other"), 1).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.heartbeat_interval_ms, 5000);

    // Deleted, the broker's value is back.
    let (code, _) = alter(
        &mut c,
        GROUP,
        "g",
        &[("consumer.heartbeat.interval.ms", DELETE, None)],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        describe(&mut c, GROUP, "g", "consumer.heartbeat.interval.ms").await,
        Some((Some("5000".into()), DEFAULT_CONFIG, false))
    );
    broker.stop().await;
}
