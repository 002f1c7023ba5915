//! What one client can make the broker hold, and in what order its requests take effect:
//! pipelined requests, fetch response caps, unread responses, request memory, and the
//! connection limits (total, per IP, idle, slow frames).

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::{
    batch, commit_req, create, fetch_req, name, produce_req, s, wait_for_coordinator, Client,
    TestBroker,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::Compression;
use tokio::io::AsyncWriteExt;

/// Reads one response frame and decodes it as `R`'s response at `version`.
async fn read_response<R: kafka_protocol::protocol::Request>(
    c: &mut Client,
    version: i16,
) -> (i32, R::Response) {
    let mut frame = c.read_frame().await.expect("response");
    let api = ApiKey::try_from(R::KEY).expect("key");
    let header =
        ResponseHeader::decode(&mut frame, api.response_header_version(version)).expect("header");
    let body = R::Response::decode(&mut frame, version).expect("body");
    (header.correlation_id, body)
}

/// Kafka handles one connection's requests one at a time, in order; so must Fjord. Fifty
/// commits sent back to back leave the last one committed, every time. A multi-threaded
/// runtime, as the server has, so that requests could race if they were allowed to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_commits_take_effect_in_arrival_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = TestBroker::start_in(tmp.path(), &[("offsets.topic.num.partitions", "1")]).await;
    let mut c = broker.client().await;
    create(&mut c, "ordered", 1, 1).await;
    wait_for_coordinator(&mut c).await;
    for round in 0..5 {
        let group = format!("pipelined-{round}");
        let mut wire = BytesMut::new();
        let mut ids = Vec::new();
        for offset in 1..=50i64 {
            let (id, frame) = c.frame(&commit_req(&group, "", -1, "ordered", &[(0, offset)]), 8);
            ids.push(id);
            wire.extend_from_slice(&frame);
        }
        c.send_raw(&wire).await.expect("send");
        for id in ids {
            let (got, r) = read_response::<OffsetCommitRequest>(&mut c, 8).await;
            assert_eq!(got, id, "responses come back in request order");
            assert_eq!(r.topics[0].partitions[0].error_code, 0);
        }
        let r = c
            .request(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(name("ordered"))
                        .with_partition_indexes(vec![0])])),
                7,
            )
            .await;
        assert_eq!(
            r.topics[0].partitions[0].committed_offset, 50,
            "the last commit sent is the one that stays"
        );
    }
    broker.stop().await;
}

/// Pipelined produces with acks=1 are appended in arrival order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_produces_append_in_order() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    create(&mut c, "seq", 1, 1).await;
    let mut wire = BytesMut::new();
    for i in 0..40u32 {
        let value = i.to_string();
        let (_, frame) = c.frame(
            &produce_req(
                "seq",
                0,
                batch(&[value.as_bytes()], None, 0, Compression::None),
                1,
            ),
            9,
        );
        wire.extend_from_slice(&frame);
    }
    c.send_raw(&wire).await.expect("send");
    for i in 0..40i64 {
        let (_, r) = read_response::<ProduceRequest>(&mut c, 9).await;
        assert_eq!(r.responses[0].partition_responses[0].base_offset, i);
    }
    broker.stop().await;
}

fn fetch_of(topic: &str, partitions: &[(i32, i32)], max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(p, max)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(*max)
                    })
                    .collect(),
            )])
}

/// 100 KiB per batch, `n` batches, into partition 0 of `topic`.
async fn fill(c: &mut Client, topic: &str, n: usize) {
    let value = vec![7u8; 100 * 1024];
    for _ in 0..n {
        let r = c
            .request(
                produce_req(topic, 0, batch(&[&value], None, 0, Compression::None), 1),
                9,
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
}

fn record_bytes(r: &FetchResponse) -> usize {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
        .sum()
}

#[tokio::test]
async fn fetch_responses_are_capped_and_partitions_answered_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    // fetch.max.bytes of 300 KiB: three of the 100 KiB batches.
    let broker = TestBroker::start_in(tmp.path(), &[("fetch.max.bytes", "307200")]).await;
    let mut c = broker.client().await;
    create(&mut c, "big", 1, 1).await;
    fill(&mut c, "big", 10).await;

    // A client asking for "no limit" (max_bytes <= 0) gets the first batch only.
    for asked in [0, -1, i32::MIN] {
        let r = c
            .request(fetch_of("big", &[(0, i32::MAX)], asked), 12)
            .await;
        let got = record_bytes(&r);
        assert!(
            got > 100 * 1024 && got < 110 * 1024,
            "asked {asked}: got {got} bytes"
        );
    }
    // Asking for more than fetch.max.bytes gets fetch.max.bytes at most.
    let r = c
        .request(fetch_of("big", &[(0, i32::MAX)], i32::MAX), 12)
        .await;
    let got = record_bytes(&r);
    assert!(got <= 307_200, "got {got} bytes");
    assert!(got > 200 * 1024, "got {got} bytes");

    // One partition listed 50 times is answered once.
    let many: Vec<(i32, i32)> = (0..50).map(|_| (0, i32::MAX)).collect();
    let r = c.request(fetch_of("big", &many, i32::MAX), 12).await;
    assert_eq!(r.responses[0].partitions.len(), 1);
    assert!(record_bytes(&r) <= 307_200);
    broker.stop().await;
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

/// A client that pipelines big fetches and never reads the answers is stopped being read
/// from; the broker (this process) does not grow by the sum of the answers.
#[tokio::test]
async fn unread_fetch_responses_do_not_grow_memory() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    create(&mut c, "flood", 1, 1).await;
    fill(&mut c, "flood", 80).await; // 8 MiB
    let before = rss_bytes();

    let mut reader_less = Client::connect(broker.addr).await;
    let (_, one) = reader_less.frame(&fetch_of("flood", &[(0, i32::MAX)], i32::MAX), 12);
    // 120 fetches of 8 MiB each: ~1 GB if all answers were held.
    let mut wire = BytesMut::new();
    for _ in 0..120 {
        wire.extend_from_slice(&one);
    }
    let sent =
        tokio::time::timeout(Duration::from_secs(3), reader_less.stream.write_all(&wire)).await;
    // Either everything was accepted into socket buffers or the broker stopped reading.
    let _ = sent;
    // Let the broker work through whatever it read; it keeps serving others meanwhile.
    for _ in 0..20 {
        let r = c.request(fetch_req("flood", 0, 0, 0), 12).await;
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 300 << 20,
        "broker grew by {} MiB holding unread responses",
        grown >> 20
    );
    broker.stop().await;
}

/// queued.max.request.bytes bounds request bytes in flight across connections: while one
/// client holds the whole budget with a half-sent frame, another's request waits, and is
/// served as soon as the budget frees.
#[tokio::test]
async fn request_bytes_in_flight_are_bounded_broker_wide() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = TestBroker::start_in(
        tmp.path(),
        &[
            ("socket.request.max.bytes", "1048576"),
            ("queued.max.request.bytes", "1048576"),
        ],
    )
    .await;
    let mut hog = Client::connect(broker.addr).await;
    let mut partial = BytesMut::new();
    partial.put_i32(1 << 20);
    partial.extend_from_slice(&[0u8; 1024]);
    hog.send_raw(&partial).await.expect("send");
    // Give the broker a moment to read the prefix and reserve the bytes.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut other = Client::connect(broker.addr).await;
    let (_, req) = other.frame(&ApiVersionsRequest::default(), 3);
    other.send_raw(&req).await.expect("send");
    let waited = tokio::time::timeout(Duration::from_millis(500), other.read_frame()).await;
    assert!(
        waited.is_err(),
        "no room for a second request while the budget is held"
    );

    // The hog goes away: its bytes are freed and the waiting request is answered.
    drop(hog);
    let answered = tokio::time::timeout(Duration::from_secs(5), other.read_frame()).await;
    assert!(
        matches!(answered, Ok(Ok(_))),
        "request served once room freed"
    );
    broker.stop().await;
}

#[tokio::test]
async fn idle_and_dribbling_connections_are_closed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = TestBroker::start_in(
        tmp.path(),
        &[
            ("connections.max.idle.ms", "300"),
            ("fjord.request.read.timeout.ms", "300"),
        ],
    )
    .await;
    // Idle: says nothing at all.
    let mut idle = broker.client().await;
    assert!(idle.is_closed().await, "idle connection closed");

    // Dribbling: half a size prefix, then nothing.
    let mut slow = broker.client().await;
    slow.send_raw(&[0, 0]).await.expect("send");
    assert!(slow.is_closed().await, "half a prefix times out");

    // Dribbling: a whole prefix and part of the body.
    let mut slow = broker.client().await;
    let (_, req) = slow.frame(&ApiVersionsRequest::default(), 3);
    slow.send_raw(&req[..req.len() - 3]).await.expect("send");
    assert!(slow.is_closed().await, "half a frame times out");

    // A connection waiting on its own long poll is not idle.
    let mut c = broker.client().await;
    create(&mut c, "quiet", 1, 1).await;
    let r = c.request(fetch_req("quiet", 0, 0, 1500), 12).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    broker.stop().await;
}

#[tokio::test]
async fn connection_limits_per_ip_and_in_total() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = TestBroker::start_in(tmp.path(), &[("max.connections.per.ip", "3")]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = broker.client().await;
        let r = c.request(ApiVersionsRequest::default(), 3).await;
        assert_eq!(r.error_code, 0);
        held.push(c);
    }
    let mut fourth = broker.client().await;
    assert!(
        fourth.is_closed().await,
        "the fourth connection from one IP is refused"
    );
    drop(held);
    broker.stop().await;

    // max.connections: a broker full of idle sockets still lets a real client in, by
    // closing the connection idle the longest.
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = TestBroker::start_in(tmp.path(), &[("max.connections", "20")]).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(broker.client().await);
    }
    let mut served = false;
    for _ in 0..100 {
        let mut c = broker.client().await;
        let (_, req) = c.frame(&ApiVersionsRequest::default(), 3);
        if c.send_raw(&req).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(2), c.read_frame()).await,
                Ok(Ok(_))
            )
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "a new client is served although 20 idle sockets fill the broker"
    );
    drop(idle);
    broker.stop().await;
}

/// A client that stops reading its responses for connections.max.idle.ms is closed, so it
/// cannot pin its unsent responses forever.
#[tokio::test]
async fn a_client_that_never_reads_is_closed_after_the_idle_time() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = TestBroker::start_in(tmp.path(), &[("connections.max.idle.ms", "300")]).await;
    let mut c = broker.client().await;
    create(&mut c, "stalled", 1, 1).await;
    fill(&mut c, "stalled", 40).await; // 4 MiB per full fetch

    let mut stalled = Client::connect(broker.addr).await;
    let (_, one) = stalled.frame(&fetch_of("stalled", &[(0, i32::MAX)], i32::MAX), 12);
    let mut wire = BytesMut::new();
    for _ in 0..60 {
        wire.extend_from_slice(&one);
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), stalled.stream.write_all(&wire)).await;
    // Well past the idle time with nothing read: the broker gives up on this client.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut stalled.stream, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection was closed");
    assert!(
        total < 60 * 4 * 1024 * 1024,
        "closed before all {} MiB of answers were sent (read {} MiB)",
        60 * 4,
        total >> 20
    );
    broker.stop().await;
}
