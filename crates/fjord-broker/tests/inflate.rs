//! Compressed batches that inflate far past their size, and malformed records inside
//! batches, over the wire and in `__consumer_offsets` across a restart: refused or skipped
//! with Kafka's error codes, while the broker keeps serving.

mod common;

use std::io::Write;

use bytes::Bytes;
use common::{
    batch, create, fetch_req, produce_req, s, values, wait_for_coordinator, Client, TestBroker,
};
use fjord_log::{Log, LogConfig};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

const PROPS: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.num.partitions", "1"),
];

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd to memory")
}

/// A v2 gzip batch with a valid CRC around `payload`, base offset `base`.
fn gzip_batch(base: i64, payload: &[u8], count: i32, ts: i64) -> Vec<u8> {
    codec_batch(base, 1, payload, count, ts)
}

/// A v2 batch compressed with codec `codec` (1 gzip, 4 zstd), with a valid CRC.
fn codec_batch(base: i64, codec: i16, payload: &[u8], count: i32, ts: i64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&base.to_be_bytes());
    b.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&codec.to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// About 400 KiB of gzip (or much less zstd) holding one record whose value is 400 MiB of
/// zeros: gzip members or zstd frames of one MiB each, concatenated as Kafka's readers allow.
fn bomb(base: i64, key: &[u8], codec: i16) -> Vec<u8> {
    let compress = if codec == 4 { zstd } else { gzip };
    const VALUE: usize = 400 << 20;
    let mut body_head = vec![0u8];
    put_varint(&mut body_head, 0);
    put_varint(&mut body_head, 0);
    put_varint(&mut body_head, key.len() as i64);
    body_head.extend_from_slice(key);
    put_varint(&mut body_head, VALUE as i64);
    let mut head = Vec::new();
    put_varint(&mut head, (body_head.len() + VALUE + 1) as i64);
    head.extend_from_slice(&body_head);
    let mut payload = compress(&head);
    let zeros = compress(&vec![0u8; 1 << 20]);
    for _ in 0..VALUE >> 20 {
        payload.extend_from_slice(&zeros);
    }
    payload.extend_from_slice(&compress(&[0])); // the record's header count
    codec_batch(base, codec, &payload, 1, 1000)
}

/// A gzip batch of two well-formed records whose offset deltas are 0 and 5.
fn bad_deltas() -> Vec<u8> {
    let mut plain = Vec::new();
    for delta in [0i64, 5] {
        let mut body = vec![0u8];
        put_varint(&mut body, 0);
        put_varint(&mut body, delta);
        put_varint(&mut body, -1);
        put_varint(&mut body, 1);
        body.push(b'x');
        put_varint(&mut body, 0);
        put_varint(&mut plain, body.len() as i64);
        plain.extend_from_slice(&body);
    }
    gzip_batch(0, &gzip(&plain), 2, 1000)
}

async fn produce(c: &mut Client, topic: &str, records: Bytes) -> (i16, Option<String>) {
    let r = c.request(produce_req(topic, 0, records, 1), 9).await;
    let p = &r.responses[0].partition_responses[0];
    (
        p.error_code,
        p.error_message.as_ref().map(|m| m.to_string()),
    )
}

async fn create_topic(c: &mut Client, topic: &str) {
    assert_eq!(create(c, topic, 1, 1).await.topics[0].error_code, 0);
}

#[tokio::test]
async fn produce_refuses_bombs_and_malformed_records_and_keeps_serving() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t").await;

    let bomb = bomb(0, b"k", 1);
    assert!(bomb.len() < 1 << 20, "the bomb fits max.message.bytes");
    let (code, message) = produce(&mut c, "t", Bytes::from(bomb)).await;
    assert_eq!(
        code, 10,
        "MESSAGE_TOO_LARGE for a record inflating to 400 MiB"
    );
    assert!(message.is_some_and(|m| m.contains("larger than")));

    let (code, _) = produce(&mut c, "t", Bytes::from(bad_deltas())).await;
    assert_eq!(code, 87, "INVALID_RECORD for offset deltas 0, 5");

    // Nothing of either was stored, and the same connection goes on working.
    let good = batch(&[b"a", b"b"], None, 1000, Compression::Gzip);
    assert_eq!(produce(&mut c, "t", good).await.0, 0);
    let fetched = c.request(fetch_req("t", 0, 0, 0), 12).await;
    let p = &fetched.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 2));
    let records = p.records.clone().unwrap_or_default();
    assert_eq!(values(records), vec![b"a".to_vec(), b"b".to_vec()]);
    broker.stop().await;
}

fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = 1i16.to_be_bytes().to_vec();
    for part in [group, topic] {
        k.extend_from_slice(&(part.len() as i16).to_be_bytes());
        k.extend_from_slice(part.as_bytes());
    }
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

async fn committed(c: &mut Client, group: &str) -> i64 {
    let r = c
        .request(
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0])]))]),
            8,
        )
        .await;
    assert_eq!(r.groups[0].error_code, 0);
    r.groups[0].topics[0].partitions[0].committed_offset
}

#[tokio::test]
async fn offsets_replay_skips_undecodable_records_and_bombs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut c = broker.client().await;
    wait_for_coordinator(&mut c).await;
    create_topic(&mut c, "t").await;
    let r = c
        .request(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(s(""))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)
                        .with_committed_leader_epoch(-1)])]),
            8,
        )
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(committed(&mut c, "g").await, 42);
    broker.stop().await;

    // What an older broker may have stored, or a forged produce: a commit for the same key
    // whose value does not decode, and a zstd bomb whose single record is a commit for it
    // too (zstd, because the decoder replay used before reads every frame of it).
    {
        let log = Log::open(
            tmp.path().join("__consumer_offsets-0"),
            LogConfig::default(),
        )
        .expect("open offsets log");
        let key = offset_key("g", "t", 0);
        let forged = batch(&[b"\x00\x03garbage"], Some(&key), 1000, Compression::None);
        let mut forged = forged.to_vec();
        forged[..8].copy_from_slice(&log.log_end_offset().to_be_bytes());
        log.append_as_follower(&forged).expect("append forged");
        log.append_as_follower(&bomb(log.log_end_offset(), &key, 4))
            .expect("append bomb");
        log.close().expect("close offsets log");
    }

    // Writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one, so
    // the peak below is the restart's own. Where the kernel refuses, only the commit counts.
    let rss_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kb("VmRSS:");
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut c = broker.client().await;
    wait_for_coordinator(&mut c).await;
    if let (true, Some(before), Some(peak)) = (rss_reset, rss_before, status_kb("VmHWM:")) {
        let grown = peak.saturating_sub(before);
        eprintln!("restart with a 400 MiB bomb in __consumer_offsets: peak RSS grew {grown} kB");
        assert!(
            grown < 100 << 10,
            "replay grew the resident set by {grown} kB"
        );
    }
    assert_eq!(committed(&mut c, "g").await, 42, "the good commit survives");
    broker.stop().await;
}

/// A status line of this process in kB (`VmRSS`, `VmHWM`).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
