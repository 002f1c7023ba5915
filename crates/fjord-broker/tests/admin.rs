//! Administrative safety end to end: storage that fails closed on doubt, limits on what
//! one request may create, topic config ranges, group bounds and protected internal topics.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use common::{batch, fetch_req, name, produce_req, s, values, Client, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

/// A topic with replication factor 1.
async fn create_with(
    c: &mut Client,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    common::create_with(c, topic, partitions, 1, configs).await
}

/// acks=all; the partition's error code and base offset.
async fn produce(c: &mut Client, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let r = c
        .request(produce_req(topic, partition, records, -1), 9)
        .await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn fetch_values(c: &mut Client, topic: &str, partition: i32) -> Vec<Vec<u8>> {
    let f = c.request(fetch_req(topic, partition, 0, 0), 12).await;
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch {topic}-{partition}");
    values(p.records.clone().unwrap_or_default())
}

/// Starts a server on `dir` and returns its error, if it refuses to start.
async fn start_error(dir: &Path) -> Option<String> {
    let mut props = BTreeMap::new();
    props.insert(
        "listeners".to_string(),
        "PLAINTEXT://127.0.0.1:0".to_string(),
    );
    props.insert("log.dirs".to_string(), dir.display().to_string());
    let config = fjord_broker::BrokerConfig::from_props(&props).expect("config");
    fjord_broker::Server::start(config)
        .await
        .err()
        .map(|e| e.to_string())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn empty_partition_metadata_stops_the_start_and_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    let created = create_with(&mut c, "precious", 1, &[]).await;
    assert_eq!(created.topics[0].error_code, 0);
    let topic_id = created.topics[0].topic_id;
    let expected: Vec<Vec<u8>> = (0..50).map(|i| format!("v{i}").into_bytes()).collect();
    for v in &expected {
        let (err, _) = produce(
            &mut c,
            "precious",
            0,
            batch(&[v], None, 0, Compression::None),
        )
        .await;
        assert_eq!(err, 0);
    }
    broker.stop().await;

    // What a power loss during a non-atomic write leaves behind.
    let part = tmp.path().join("precious-0");
    let meta = part.join("partition.metadata");
    std::fs::write(&meta, b"").unwrap();
    let before = dir_bytes(&part);

    let err = start_error(tmp.path())
        .await
        .expect("a partition directory that cannot be verified must stop the start");
    assert!(err.contains(&part.display().to_string()), "{err}");
    assert!(err.contains("empty partition.metadata"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(part.is_dir(), "the partition directory was removed");
    assert_eq!(dir_bytes(&part), before, "partition data changed");

    // Following the error's advice brings every record back.
    std::fs::write(&meta, format!("version: 0\ntopic_id: {topic_id}\n")).unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    assert_eq!(fetch_values(&mut c, "precious", 0).await, expected);
    broker.stop().await;
}

#[tokio::test]
async fn directories_unknown_to_the_image_are_renamed_aside_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    assert_eq!(
        create_with(&mut c, "kept", 1, &[]).await.topics[0].error_code,
        0
    );
    broker.stop().await;

    // A partition directory Fjord made but the metadata log does not know, as a damaged
    // or replaced metadata log would leave: its data must survive the start.
    let stray = tmp.path().join("ghost-3");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(
        stray.join("partition.metadata"),
        format!("version: 0\ntopic_id: {}\n", uuid::Uuid::new_v4()),
    )
    .unwrap();
    std::fs::write(
        stray.join("00000000000000000000.log"),
        b"acknowledged bytes",
    )
    .unwrap();

    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    assert!(!stray.exists());
    let aside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("ghost-3.") && n.ends_with("-stray")
        })
        .collect();
    assert_eq!(aside.len(), 1, "stray directory not found");
    assert_eq!(
        std::fs::read(aside[0].join("00000000000000000000.log")).unwrap(),
        b"acknowledged bytes"
    );
    assert!(tmp.path().join("kept-0").is_dir());
    broker.stop().await;
}

#[tokio::test]
async fn delete_topics_removes_the_data_and_a_recreated_topic_starts_empty() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    assert_eq!(
        create_with(&mut c, "doomed", 1, &[]).await.topics[0].error_code,
        0
    );
    let (err, _) = produce(
        &mut c,
        "doomed",
        0,
        batch(&[b"old"], None, 0, Compression::None),
    )
    .await;
    assert_eq!(err, 0);
    let r = c
        .request(
            DeleteTopicsRequest::default()
                .with_topic_names(vec![name("doomed")])
                .with_timeout_ms(5000),
            5,
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    let leftovers: Vec<_> = std::fs::read_dir(&broker.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("doomed"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        create_with(&mut c, "doomed", 1, &[]).await.topics[0].error_code,
        0
    );
    assert!(fetch_values(&mut c, "doomed", 0).await.is_empty());
    broker.stop().await;
}

/// The partition count of `topic` in Metadata, or `None` if the broker does not know it.
async fn partition_count(c: &mut Client, topic: &str) -> Option<usize> {
    let md = c
        .request(MetadataRequest::default().with_topics(None), 12)
        .await;
    md.topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .map(|t| t.partitions.len())
}

async fn create_partitions(c: &mut Client, topic: &str, total: i32) -> (i16, Option<String>) {
    let r = c
        .request(
            CreatePartitionsRequest::default()
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name(topic))
                        .with_count(total),
                ])
                .with_timeout_ms(5000),
            3,
        )
        .await;
    let res = &r.results[0];
    (
        res.error_code,
        res.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[tokio::test]
async fn one_request_may_not_create_more_than_ten_thousand_partitions() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    let r = create_with(&mut c, "huge", 10_001, &[]).await;
    assert_eq!(r.topics[0].error_code, 44, "POLICY_VIOLATION");
    let msg = r.topics[0].error_message.as_ref().unwrap().to_string();
    assert!(
        msg.starts_with("Excessively large number of partitions per request"),
        "{msg}"
    );
    // The limit is on the whole request: two topics of 5,001 fail together.
    let topics = ["half-a", "half-b"]
        .iter()
        .map(|t| {
            CreatableTopic::default()
                .with_name(name(t))
                .with_num_partitions(5_001)
                .with_replication_factor(1)
        })
        .collect();
    let r = c
        .request(
            CreateTopicsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(5000),
            7,
        )
        .await;
    assert!(r.topics.iter().all(|t| t.error_code == 44));
    for t in ["huge", "half-a", "half-b"] {
        assert_eq!(partition_count(&mut c, t).await, None, "{t} was created");
    }
    assert_eq!(
        create_with(&mut c, "small", 1, &[]).await.topics[0].error_code,
        0
    );
    let (code, _) = create_partitions(&mut c, "small", 10_002).await;
    assert_eq!(code, 44);
    assert_eq!(partition_count(&mut c, "small").await, Some(1));
    broker.stop().await;
}

#[tokio::test]
async fn partitions_this_broker_cannot_open_are_refused_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    // A plain file where a partition directory must go: the directory cannot be made.
    std::fs::write(tmp.path().join("blocked-1"), b"in the way").unwrap();
    let r = create_with(&mut c, "blocked", 3, &[]).await;
    assert_eq!(r.topics[0].error_code, 56, "KAFKA_STORAGE_ERROR");
    let msg = r.topics[0].error_message.as_ref().unwrap().to_string();
    assert!(msg.contains("blocked-1"), "{msg}");
    assert_eq!(partition_count(&mut c, "blocked").await, None);
    assert!(
        !tmp.path().join("blocked-0").exists(),
        "prepared partition left behind"
    );

    assert_eq!(
        create_with(&mut c, "grow", 1, &[]).await.topics[0].error_code,
        0
    );
    std::fs::write(tmp.path().join("grow-2"), b"in the way").unwrap();
    let (code, msg) = create_partitions(&mut c, "grow", 3).await;
    assert_eq!(code, 56, "{msg:?}");
    assert_eq!(partition_count(&mut c, "grow").await, Some(1));
    assert!(
        !tmp.path().join("grow-1").exists(),
        "prepared partition left behind"
    );
    broker.stop().await;

    // Nothing was committed that this broker cannot start from.
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    assert_eq!(partition_count(&mut c, "blocked").await, None);
    assert_eq!(partition_count(&mut c, "grow").await, Some(1));
    // Once the obstacle is gone the same requests succeed.
    std::fs::remove_file(tmp.path().join("grow-2")).unwrap();
    assert_eq!(create_partitions(&mut c, "grow", 3).await.0, 0);
    let (err, _) = produce(
        &mut c,
        "grow",
        2,
        batch(&[b"x"], None, 0, Compression::None),
    )
    .await;
    assert_eq!(err, 0);
    broker.stop().await;
}

#[tokio::test]
async fn clients_cannot_write_delete_or_repartition_consumer_offsets() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    common::wait_for_coordinator(&mut c).await;
    // The offsets topic is created by the first group that needs it.
    c.request(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name("any"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1),
                    ]),
            ]),
        8,
    )
    .await;
    let offsets_partitions = partition_count(&mut c, "__consumer_offsets")
        .await
        .expect("offsets topic exists");

    let r = c
        .request(
            produce_req(
                "__consumer_offsets",
                0,
                batch(&[b"forged"], Some(b"k"), 0, Compression::None),
                -1,
            ),
            9,
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 17, "INVALID_TOPIC_EXCEPTION");
    assert_eq!(
        p.error_message.as_ref().map(|m| m.to_string()).as_deref(),
        Some("Cannot append to internal topic __consumer_offsets")
    );

    let r = c
        .request(
            DeleteTopicsRequest::default()
                .with_topic_names(vec![name("__consumer_offsets")])
                .with_timeout_ms(5000),
            5,
        )
        .await;
    assert_eq!(r.responses[0].error_code, 17);
    let msg = r.responses[0].error_message.as_ref().unwrap().to_string();
    assert!(msg.contains("internal"), "{msg}");

    let (code, msg) =
        create_partitions(&mut c, "__consumer_offsets", offsets_partitions as i32 + 1).await;
    assert_eq!(code, 37, "{msg:?}");
    assert_eq!(
        partition_count(&mut c, "__consumer_offsets").await,
        Some(offsets_partitions)
    );
    broker.stop().await;
}

async fn incremental_set(c: &mut Client, topic: &str, key: &str, value: &str) -> (i16, String) {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let r = c
        .request(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s(key))
                        .with_config_operation(0)
                        .with_value(Some(s(value)))]),
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

async fn described(c: &mut Client, topic: &str, key: &str) -> Option<(String, i8)> {
    let r = c
        .request(
            DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic))
                    .with_configuration_keys(None),
            ]),
            4,
        )
        .await;
    r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .map(|c| {
            (
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                c.config_type,
            )
        })
}

#[tokio::test]
async fn topic_configs_are_checked_against_kafkas_ranges() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    // segment.bytes=14 made every produce roll a new segment.
    let r = create_with(&mut c, "tiny", 1, &[("segment.bytes", "14")]).await;
    assert_eq!(r.topics[0].error_code, 40, "INVALID_CONFIG");
    assert_eq!(
        r.topics[0].error_message.as_ref().unwrap().to_string(),
        "Invalid value 14 for configuration segment.bytes: Value must be at least 1048576"
    );
    let r = create_with(&mut c, "dirty", 1, &[("min.cleanable.dirty.ratio", "2")]).await;
    assert_eq!(r.topics[0].error_code, 40);
    let r = create_with(
        &mut c,
        "lags",
        1,
        &[
            ("min.compaction.lag.ms", "5000"),
            ("max.compaction.lag.ms", "1000"),
        ],
    )
    .await;
    assert_eq!(r.topics[0].error_code, 40);
    for t in ["tiny", "dirty", "lags"] {
        assert_eq!(partition_count(&mut c, t).await, None, "{t} was created");
    }

    // Every Kafka topic config name is accepted within its range.
    let r = create_with(
        &mut c,
        "full",
        1,
        &[
            ("delete.retention.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "100000"),
            ("segment.ms", "60000"),
            ("segment.jitter.ms", "5"),
            ("segment.index.bytes", "4096"),
            ("index.interval.bytes", "1024"),
            ("file.delete.delay.ms", "0"),
            ("flush.messages", "1"),
            ("flush.ms", "1000"),
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.before.max.ms", "1000"),
            ("message.timestamp.after.max.ms", "1000"),
            ("preallocate", "false"),
            ("unclean.leader.election.enable", "false"),
            ("local.retention.ms", "-2"),
            ("local.retention.bytes", "-2"),
            ("remote.storage.enable", "false"),
            ("segment.bytes", "1048576"),
        ],
    )
    .await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    assert_eq!(
        described(&mut c, "full", "min.cleanable.dirty.ratio").await,
        Some(("0.25".to_string(), 6))
    );

    let (code, msg) = incremental_set(&mut c, "full", "segment.bytes", "1000").await;
    assert_eq!(code, 40, "{msg}");
    assert!(msg.contains("at least 1048576"), "{msg}");
    let (code, msg) = incremental_set(&mut c, "full", "max.compaction.lag.ms", "5").await;
    assert_eq!(code, 40, "{msg}");
    let (code, msg) = incremental_set(&mut c, "full", "remote.storage.enable", "true").await;
    assert_eq!(code, 40, "{msg}");
    let (code, msg) = incremental_set(&mut c, "full", "min.insync.replicas", "0").await;
    assert_eq!(code, 40, "{msg}");
    let (code, msg) = incremental_set(&mut c, "full", "min.cleanable.dirty.ratio", "0.75").await;
    assert_eq!(code, 0, "{msg}");
    assert_eq!(
        described(&mut c, "full", "min.cleanable.dirty.ratio").await,
        Some(("0.75".to_string(), 6))
    );
    assert_eq!(
        described(&mut c, "full", "segment.bytes").await,
        Some(("1048576".to_string(), 3))
    );
    broker.stop().await;
}

fn join_req(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"sub"))])
}

#[tokio::test]
async fn group_max_size_refuses_the_member_over_it() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(
        tmp.path(),
        &[
            ("group.max.size", "1"),
            ("group.initial.rebalance.delay.ms", "0"),
            ("offsets.topic.num.partitions", "1"),
        ],
    )
    .await;
    let mut c = broker.client().await;
    common::wait_for_coordinator(&mut c).await;
    let first = c.request(join_req("capped", ""), 9).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let joined = c.request(join_req("capped", &first.member_id), 9).await;
    assert_eq!(joined.error_code, 0);

    let mut other = broker.client().await;
    let refused = other.request(join_req("capped", ""), 9).await;
    assert_eq!(refused.error_code, 81, "GROUP_MAX_SIZE_REACHED");
    assert_eq!(refused.member_id.as_str(), "");

    // Another group is not affected, and an over-long group id is refused outright.
    let elsewhere = other.request(join_req("other", ""), 9).await;
    assert_eq!(elsewhere.error_code, 79);
    let long = "g".repeat(40_000);
    let refused = other.request(join_req(&long, ""), 9).await;
    assert_eq!(refused.error_code, 24, "INVALID_GROUP_ID");
    broker.stop().await;
}

#[tokio::test]
async fn auto_creation_of_a_topic_this_broker_cannot_open_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[("num.partitions", "2")]).await;
    let mut c = broker.client().await;
    std::fs::write(tmp.path().join("auto-1"), b"in the way").unwrap();
    let md = c
        .request(
            MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(name("auto")))]))
                .with_allow_auto_topic_creation(true),
            12,
        )
        .await;
    assert_ne!(md.topics[0].error_code, 0);
    assert_eq!(partition_count(&mut c, "auto").await, None);
    assert!(
        !tmp.path().join("auto-0").exists(),
        "prepared partition left behind"
    );
    broker.stop().await;
}
