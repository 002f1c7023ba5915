//! The broker end to end over TCP: protocol edge cases, bad input, durability across
//! restarts. Real-client coverage lives in `compat/`; these pin the wire behaviour.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::{batch, create, create_with, fetch_req, name, produce_req, values, TestBroker};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

#[tokio::test]
async fn api_versions_lists_ranges_and_answers_newer_versions_at_v0() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    let r = c.request(ApiVersionsRequest::default(), 3).await;
    assert_eq!(r.error_code, 0);
    let produce = r.api_keys.iter().find(|k| k.api_key == 0).expect("produce");
    assert_eq!((produce.min_version, produce.max_version), (3, 12));
    assert!(
        r.api_keys.iter().any(|k| k.api_key == 1),
        "fetch advertised"
    );

    // A version from the future: v0 body with UNSUPPORTED_VERSION and our ranges.
    let (id, frame) = c.frame(&ApiVersionsRequest::default(), 3);
    let mut raw = BytesMut::from(&frame[..]);
    raw[6..8].copy_from_slice(&99i16.to_be_bytes());
    c.send_raw(&raw).await.unwrap();
    let mut resp = c.read_frame().await.unwrap();
    let header =
        <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut resp, 0).unwrap();
    assert_eq!(header.correlation_id, id);
    let body =
        <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35);
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
    broker.stop().await;
}

#[tokio::test]
async fn produce_then_fetch_every_codec() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    assert_eq!(create(&mut c, "codecs", 1, 1).await.topics[0].error_code, 0);
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut expected = Vec::new();
    for (i, codec) in codecs.into_iter().enumerate() {
        let vals: Vec<Vec<u8>> = (0..10).map(|j| format!("v{i}-{j}").into_bytes()).collect();
        let refs: Vec<&[u8]> = vals.iter().map(|v| v.as_slice()).collect();
        let r = c
            .request(
                produce_req("codecs", 0, batch(&refs, None, 1000, codec), 1),
                9,
            )
            .await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "{codec:?}");
        assert_eq!(p.base_offset, (i * 10) as i64);
        expected.extend(vals);
    }
    let f = c.request(fetch_req("codecs", 0, 0, 100), 12).await;
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 50);
    assert_eq!(values(p.records.clone().unwrap()), expected);
    broker.stop().await;
}

#[tokio::test]
async fn topic_errors_carry_kafka_codes_and_messages() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    let r = create(&mut c, "rf2", 1, 2).await;
    assert_eq!(r.topics[0].error_code, 38);
    assert_eq!(
        r.topics[0].error_message.as_deref(),
        Some("Replication factor: 2 larger than available brokers: 1.")
    );
    assert_eq!(
        create(&mut c, "bad name!", 1, 1).await.topics[0].error_code,
        17
    );
    assert_eq!(create(&mut c, "zero", 0, 1).await.topics[0].error_code, 37);
    assert_eq!(create(&mut c, "ok", 1, 1).await.topics[0].error_code, 0);
    assert_eq!(create(&mut c, "ok", 1, 1).await.topics[0].error_code, 36);
    let r = create_with(&mut c, "cfg", 1, 1, &[("retention.ms", "soon")]).await;
    assert_eq!(r.topics[0].error_code, 40);
    let r = create_with(&mut c, "cfg", 1, 1, &[("no.such.config", "1")]).await;
    assert_eq!(r.topics[0].error_code, 40);

    // Produce errors: unknown partition, corrupt CRC, too large.
    let b = batch(&[b"x"], None, 0, Compression::None);
    let r = c.request(produce_req("ok", 7, b.clone(), 1), 9).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    let mut corrupt = BytesMut::from(&b[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let r = c
        .request(produce_req("ok", 0, corrupt.freeze(), 1), 9)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2);
    assert_eq!(
        create_with(&mut c, "small", 1, 1, &[("max.message.bytes", "1024")])
            .await
            .topics[0]
            .error_code,
        0
    );
    let big = vec![7u8; 4096];
    let r = c
        .request(
            produce_req("small", 0, batch(&[&big], None, 0, Compression::None), 1),
            9,
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 10);
    // Nothing was appended by any refused request.
    let f = c.request(fetch_req("ok", 0, 0, 0), 12).await;
    assert_eq!(f.responses[0].partitions[0].high_watermark, 0);
    broker.stop().await;
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let broker = TestBroker::start().await;

    // A frame longer than socket.request.max.bytes.
    let mut c = broker.client().await;
    c.send_raw(&(200 * 1024 * 1024i32).to_be_bytes())
        .await
        .unwrap();
    assert!(
        c.is_closed().await,
        "oversized frame must close the connection"
    );

    // Garbage: an unknown API key.
    let mut c = broker.client().await;
    let mut buf = BytesMut::new();
    buf.put_i32(10);
    buf.put_i16(999);
    buf.put_i16(0);
    buf.put_i32(1);
    buf.put_i16(-1);
    c.send_raw(&buf).await.unwrap();
    assert!(
        c.is_closed().await,
        "unknown API key must close the connection"
    );

    // A truncated Metadata body.
    let mut c = broker.client().await;
    let (_, frame) = c.frame(&MetadataRequest::default().with_topics(None), 12);
    let cut = &frame[4..frame.len() - 2];
    let mut buf = BytesMut::new();
    buf.put_i32(cut.len() as i32);
    buf.extend_from_slice(cut);
    c.send_raw(&buf).await.unwrap();
    assert!(
        c.is_closed().await,
        "truncated request must close the connection"
    );

    // A negative size.
    let mut c = broker.client().await;
    c.send_raw(&(-5i32).to_be_bytes()).await.unwrap();
    assert!(c.is_closed().await);

    // Everyone else is still served.
    let mut c = broker.client().await;
    let r = c.request(ApiVersionsRequest::default(), 3).await;
    assert_eq!(r.error_code, 0);
    broker.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_on_produce_and_responses_keep_request_order() {
    let broker = TestBroker::start().await;
    let mut admin = broker.client().await;
    create(&mut admin, "poll", 1, 1).await;

    // Pipeline: a long-polling fetch, then a quick ApiVersions on the same connection.
    let mut c = broker.client().await;
    let (fetch_id, fetch) = c.frame(&fetch_req("poll", 0, 0, 10_000), 12);
    let (versions_id, versions) = c.frame(&ApiVersionsRequest::default(), 3);
    c.send_raw(&fetch).await.unwrap();
    c.send_raw(&versions).await.unwrap();

    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = admin
        .request(
            produce_req("poll", 0, batch(&[b"wake"], None, 0, Compression::None), 1),
            9,
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    let mut first = c.read_frame().await.unwrap();
    let waited = started.elapsed();
    let h = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut first, 1).unwrap();
    assert_eq!(
        h.correlation_id, fetch_id,
        "fetch answered first, in request order"
    );
    let body =
        <FetchResponse as kafka_protocol::protocol::Decodable>::decode(&mut first, 12).unwrap();
    assert_eq!(
        values(body.responses[0].partitions[0].records.clone().unwrap()),
        vec![b"wake".to_vec()]
    );
    // Woken by the append, far before max_wait_ms (10 s) ran out.
    assert!(waited < Duration::from_secs(5), "fetch waited {waited:?}");
    let mut second = c.read_frame().await.unwrap();
    let h =
        <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut second, 0).unwrap();
    assert_eq!(h.correlation_id, versions_id);
    broker.stop().await;
}

#[tokio::test]
async fn data_and_topics_survive_restart_and_the_lock_refuses_a_second_server() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    create(&mut c, "durable", 2, 1).await;
    for i in 0..5 {
        let v = format!("r{i}");
        let r = c
            .request(
                produce_req(
                    "durable",
                    1,
                    batch(&[v.as_bytes()], None, 0, Compression::None),
                    -1,
                ),
                9,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    // A second server on the same directory must refuse to start.
    let mut props = std::collections::BTreeMap::new();
    props.insert(
        "listeners".to_string(),
        "PLAINTEXT://127.0.0.1:0".to_string(),
    );
    props.insert("log.dirs".to_string(), tmp.path().display().to_string());
    let err = fjord_broker::Server::start(fjord_broker::BrokerConfig::from_props(&props).unwrap())
        .await
        .err()
        .expect("second server must be refused");
    assert!(err.to_string().contains("in use"), "{err}");
    broker.stop().await;

    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    let md = c
        .request(MetadataRequest::default().with_topics(None), 12)
        .await;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("durable"))
        .unwrap();
    assert_eq!(t.partitions.len(), 2);
    let f = c.request(fetch_req("durable", 1, 0, 0), 12).await;
    let expected: Vec<Vec<u8>> = (0..5).map(|i| format!("r{i}").into_bytes()).collect();
    assert_eq!(
        values(f.responses[0].partitions[0].records.clone().unwrap()),
        expected
    );
    broker.stop().await;
}

#[tokio::test]
async fn metadata_auto_creates_only_when_enabled() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name("auto")))]))
        .with_allow_auto_topic_creation(true);
    let md = c.request(req.clone(), 12).await;
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(md.topics[0].partitions.len(), 1);
    broker.stop().await;

    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[("auto.create.topics.enable", "false")]).await;
    let mut c = broker.client().await;
    let md = c.request(req, 12).await;
    assert_eq!(md.topics[0].error_code, 3);
    broker.stop().await;
}

#[tokio::test]
async fn retention_trims_delete_topics_and_spares_compact_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let broker =
        TestBroker::start_in(tmp.path(), &[("log.retention.check.interval.ms", "100")]).await;
    let mut c = broker.client().await;
    // The smallest segments Kafka allows (1 MiB) and a 1 ms retention: every closed
    // segment is expired at once.
    let small = [("segment.bytes", "1048576"), ("retention.ms", "1")];
    create_with(&mut c, "trimmed", 1, 1, &small).await;
    let mut compact = small.to_vec();
    compact.push(("cleanup.policy", "compact"));
    create_with(&mut c, "kept", 1, 1, &compact).await;
    // Six 400 KiB batches fill more than two segments.
    let value = vec![b'v'; 400 * 1024];
    for topic in ["trimmed", "kept"] {
        for _ in 0..6 {
            let r = c
                .request(
                    // A compacted topic needs keyed records.
                    produce_req(
                        topic,
                        0,
                        batch(&[&value], Some(b"k"), 0, Compression::None),
                        1,
                    ),
                    9,
                )
                .await;
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
    }
    let earliest = |topic: &'static str| {
        ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-2)]),
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.request(earliest("trimmed"), 7).await;
        if r.topics[0].partitions[0].offset > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never trimmed the delete topic"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c.request(earliest("kept"), 7).await;
    assert_eq!(
        r.topics[0].partitions[0].offset, 0,
        "compact topic lost data to retention"
    );
    broker.stop().await;
}

/// Authorized-operation masks are sent only when asked for, and then list Kafka's topic
/// and cluster operations; otherwise they hold Kafka's "not requested" value.
#[tokio::test]
async fn authorized_operations_only_when_asked() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    create(&mut c, "ops", 1, 1).await;
    let topics = Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("ops")))
    ]);
    let plain = c
        .request(MetadataRequest::default().with_topics(topics.clone()), 12)
        .await;
    assert_eq!(plain.topics[0].topic_authorized_operations, i32::MIN);
    let asked = c
        .request(
            MetadataRequest::default()
                .with_topics(topics.clone())
                .with_include_topic_authorized_operations(true),
            12,
        )
        .await;
    // READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS
    assert_eq!(asked.topics[0].topic_authorized_operations, 3576);
    let v10 = c
        .request(
            MetadataRequest::default()
                .with_topics(topics)
                .with_include_cluster_authorized_operations(true),
            10,
        )
        .await;
    // CREATE ALTER DESCRIBE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE
    assert_eq!(v10.cluster_authorized_operations, 8096);
    let d = c.request(DescribeClusterRequest::default(), 1).await;
    assert_eq!(d.cluster_authorized_operations, i32::MIN);
    let d = c
        .request(
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            1,
        )
        .await;
    assert_eq!(d.cluster_authorized_operations, 8096);
    broker.stop().await;
}

/// A compacted topic keeps the newest record per key, so Kafka refuses records without
/// one with INVALID_RECORD; keyed records and null keys elsewhere are accepted.
#[tokio::test]
async fn compacted_topics_refuse_records_without_a_key() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    create_with(&mut c, "latest", 1, 1, &[("cleanup.policy", "compact")]).await;
    create(&mut c, "plain", 1, 1).await;
    for compression in [Compression::None, Compression::Gzip] {
        let r = c
            .request(
                produce_req("latest", 0, batch(&[b"v"], None, 0, compression), 1),
                9,
            )
            .await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 87, "INVALID_RECORD");
        assert!(p
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("without key")));
        // KIP-467: the refused record is named by its index in the batch.
        assert_eq!(
            p.record_errors
                .iter()
                .map(|e| e.batch_index)
                .collect::<Vec<_>>(),
            vec![0]
        );
        let r = c
            .request(
                produce_req("latest", 0, batch(&[b"v"], Some(b"k"), 0, compression), 1),
                9,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        let r = c
            .request(
                produce_req("plain", 0, batch(&[b"v"], None, 0, compression), 1),
                9,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    broker.stop().await;
}

/// A Metadata request that names `__consumer_offsets` on a fresh broker creates it as the
/// group coordinator needs it (offsets.topic.num.partitions, compacted), not as a plain
/// topic with num.partitions.
#[tokio::test]
async fn metadata_creates_the_offsets_topic_as_the_coordinator_needs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(
        tmp.path(),
        &[
            ("offsets.topic.num.partitions", "3"),
            ("num.partitions", "1"),
        ],
    )
    .await;
    let mut c = broker.client().await;
    let md = c
        .request(
            MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("__consumer_offsets")))
                ]))
                .with_allow_auto_topic_creation(true),
            12,
        )
        .await;
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(md.topics[0].partitions.len(), 3);
    assert!(md.topics[0].is_internal);
    broker.stop().await;
}
