//! The transaction APIs on the wire, as a Kafka producer drives them: the coordinator's
//! answers (epochs, fencing, the error codes of each version), markers in the log, and
//! what read_committed fetches and ListOffsets then see. End-to-end runs through real
//! clients are in the compat suites.

mod common;

use bytes::Buf;
use bytes::Bytes;
use common::{create, fetch_req, name, produce_req, s, transactional_batch, TestBroker};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest, FindCoordinatorRequest,
    InitProducerIdRequest, ListOffsetsRequest, ProducerId, TransactionalId,
};
use kafka_protocol::records::RecordBatchDecoder;

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const PRODUCER_FENCED: i16 = 90;

fn tid(id: &str) -> TransactionalId {
    TransactionalId(s(id))
}

/// A transactional batch of `values` from `(producer id, epoch)`, sequences from `seq`,
/// stamped now: an old timestamp would let retention remove the segment.
fn txn_batch(values: &[&str], producer: (i64, i16), seq: i32) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    transactional_batch(&values, now, (producer.0, producer.1, seq))
}

async fn init(c: &mut common::Client, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    // The coordinator's topic is created by the first FindCoordinator, as in Kafka.
    for _ in 0..100 {
        let r = c
            .request(
                FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_key(s(id)),
                3,
            )
            .await;
        if r.error_code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut last = (0, -1, -1);
    for _ in 0..100 {
        let r = c
            .request(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(tid(id)))
                    .with_transaction_timeout_ms(timeout_ms)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await;
        last = (r.error_code, r.producer_id.0, r.producer_epoch);
        // Loading or concurrent: retried, as clients do.
        if ![14, 15, 51].contains(&r.error_code) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    last
}

async fn add(
    c: &mut common::Client,
    id: &str,
    producer: (i64, i16),
    topic: &str,
    version: i16,
) -> i16 {
    // While the previous transaction's markers are written the answer is
    // CONCURRENT_TRANSACTIONS, which clients retry.
    let mut code = 0;
    for _ in 0..200 {
        let r = c
            .request(
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(tid(id))
                    .with_v3_and_below_producer_id(ProducerId(producer.0))
                    .with_v3_and_below_producer_epoch(producer.1)
                    .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                        .with_name(name(topic))
                        .with_partitions(vec![0])]),
                version,
            )
            .await;
        code = r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
        if code != 51 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    code
}

async fn end(c: &mut common::Client, id: &str, producer: (i64, i16), commit: bool) -> i16 {
    // CONCURRENT_TRANSACTIONS while the last outcome's markers are written: retried.
    let mut code = 0;
    for _ in 0..200 {
        code = c
            .request(
                EndTxnRequest::default()
                    .with_transactional_id(tid(id))
                    .with_producer_id(ProducerId(producer.0))
                    .with_producer_epoch(producer.1)
                    .with_committed(commit),
                3,
            )
            .await
            .error_code;
        if code != 51 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    code
}

/// The values a fetch from 0 returns, and its last stable offset and aborted list.
async fn read(c: &mut common::Client, topic: &str, committed: bool) -> (Vec<String>, i64, usize) {
    let req = fetch_req(topic, 0, 0, 0).with_isolation_level(committed as i8);
    let r = c.request(req, 12).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(
        p.error_code, 0,
        "fetch of {topic}: start {} hw {} lso {}",
        p.log_start_offset, p.high_watermark, p.last_stable_offset
    );
    // Markers are records too, in control batches the client never shows.
    let mut records = p.records.clone().unwrap_or_default();
    let mut vals = Vec::new();
    while records.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut records).expect("decode batch");
        for r in set.records.into_iter().filter(|r| !r.control) {
            vals.push(String::from_utf8(r.value.unwrap_or_default().to_vec()).unwrap());
        }
    }
    let aborted = p.aborted_transactions.as_ref().map_or(0, |a| a.len());
    (vals, p.last_stable_offset, aborted)
}

async fn latest(c: &mut common::Client, topic: &str, committed: bool) -> i64 {
    let r = c
        .request(
            ListOffsetsRequest::default()
                .with_isolation_level(committed as i8)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])]),
            5,
        )
        .await;
    r.topics[0].partitions[0].offset
}

#[tokio::test]
async fn a_transaction_stays_invisible_to_read_committed_until_its_commit_marker() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create(&mut c, "t", 1, 1).await;
    let (err, pid, epoch) = init(&mut c, "app-1", 60_000).await;
    assert_eq!(err, 0);
    assert_eq!(epoch, 0);
    let me = (pid, epoch);

    // Aborted: its records stay in the log, and read_committed is told to drop them.
    assert_eq!(add(&mut c, "app-1", me, "t", 3).await, 0);
    let r = c
        .request(produce_req("t", 0, txn_batch(&["x1", "x2"], me, 0), -1), 9)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // Open: nothing from its first offset on is stable.
    assert_eq!(latest(&mut c, "t", true).await, 0);
    assert_eq!(latest(&mut c, "t", false).await, 2);
    assert_eq!(end(&mut c, "app-1", me, false).await, 0);

    // Committed.
    assert_eq!(add(&mut c, "app-1", me, "t", 3).await, 0);
    let r = c
        .request(produce_req("t", 0, txn_batch(&["y1"], me, 2), -1), 9)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(end(&mut c, "app-1", me, true).await, 0);

    // The markers are written after EndTxn is answered: wait for the log end to settle
    // (two data batches and two markers: offsets 0..=4).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while latest(&mut c, "t", true).await != 5 {
        assert!(std::time::Instant::now() < deadline, "markers never landed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (all, lso, aborted) = read(&mut c, "t", false).await;
    assert_eq!(all, ["x1", "x2", "y1"]);
    assert_eq!((lso, aborted), (5, 0));
    let (committed, lso, aborted) = read(&mut c, "t", true).await;
    // The fetch returns the batches; the aborted list says which producer's to drop.
    assert_eq!(committed, ["x1", "x2", "y1"]);
    assert_eq!((lso, aborted), (5, 1));

    // A retried EndTxn of the same outcome is answered NONE; the other one is refused.
    assert_eq!(end(&mut c, "app-1", me, true).await, 0);
    assert_eq!(end(&mut c, "app-1", me, false).await, INVALID_TXN_STATE);

    let d = c
        .request(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![tid("app-1")]),
            0,
        )
        .await;
    assert_eq!(d.transaction_states[0].error_code, 0);
    assert_eq!(
        d.transaction_states[0].transaction_state.as_str(),
        "CompleteCommit"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_new_producer_fences_the_old_one_and_aborts_its_open_transaction() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create(&mut c, "t", 1, 1).await;
    let (_, pid, epoch) = init(&mut c, "app-2", 60_000).await;
    let old = (pid, epoch);
    assert_eq!(add(&mut c, "app-2", old, "t", 3).await, 0);
    c.request(produce_req("t", 0, txn_batch(&["zombie"], old, 0), -1), 9)
        .await;

    // The second InitProducerId aborts the open transaction (epoch + 1), then bumps again.
    let (err, pid2, epoch2) = init(&mut c, "app-2", 60_000).await;
    assert_eq!(err, 0);
    assert_eq!(pid2, pid);
    assert_eq!(epoch2, epoch + 2);

    // The old epoch is fenced, in the words each version knows.
    assert_eq!(add(&mut c, "app-2", old, "t", 3).await, PRODUCER_FENCED);
    assert_eq!(
        add(&mut c, "app-2", old, "t", 1).await,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(end(&mut c, "app-2", old, true).await, PRODUCER_FENCED);
    let r = c
        .request(produce_req("t", 0, txn_batch(&["late"], old, 1), -1), 9)
        .await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        INVALID_PRODUCER_EPOCH
    );
    // The zombie's record was aborted: read_committed is told to drop it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, lso, aborted) = read(&mut c, "t", true).await;
        if (lso, aborted) == (2, 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lso {lso}, aborted {aborted}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // A timeout above transaction.max.timeout.ms is refused.
    assert_eq!(
        init(&mut c, "app-3", 900_001).await.0,
        INVALID_TRANSACTION_TIMEOUT
    );
    b.stop().await;
}

#[tokio::test]
async fn an_open_transaction_is_aborted_once_its_timeout_passes() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start_in(
        dir.path(),
        &[(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "200",
        )],
    )
    .await;
    let mut c = b.client().await;
    create(&mut c, "t", 1, 1).await;
    let (_, pid, epoch) = init(&mut c, "app-4", 500).await;
    let me = (pid, epoch);
    assert_eq!(add(&mut c, "app-4", me, "t", 3).await, 0);
    c.request(produce_req("t", 0, txn_batch(&["hung"], me, 0), -1), 9)
        .await;
    assert_eq!(latest(&mut c, "t", true).await, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while latest(&mut c, "t", true).await != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hung transaction was never aborted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, _, aborted) = read(&mut c, "t", true).await;
    assert_eq!(aborted, 1);
    // Its producer was fenced by the abort's epoch bump.
    assert_eq!(end(&mut c, "app-4", me, true).await, PRODUCER_FENCED);
    b.stop().await;
}

#[tokio::test]
async fn a_transaction_open_across_a_crash_is_aborted_by_the_next_producer() {
    let tmp = tempfile::tempdir().unwrap();
    let b = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = b.client().await;
    create(&mut c, "t", 1, 1).await;
    let (_, pid, epoch) = init(&mut c, "app-5", 60_000).await;
    let old = (pid, epoch);
    assert_eq!(add(&mut c, "app-5", old, "t", 3).await, 0);
    c.request(produce_req("t", 0, txn_batch(&["open"], old, 0), -1), 9)
        .await;
    drop(c);
    b.crash().await;

    // The coordinator reloads the id from its log: same producer id, the open
    // transaction aborted at epoch + 1, the new producer at epoch + 2.
    let b = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = b.client().await;
    assert_eq!(latest(&mut c, "t", true).await, 0);
    let (err, pid2, epoch2) = init(&mut c, "app-5", 60_000).await;
    assert_eq!((err, pid2, epoch2), (0, pid, epoch + 2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while latest(&mut c, "t", true).await != 2 {
        assert!(std::time::Instant::now() < deadline, "never aborted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (vals, lso, aborted) = read(&mut c, "t", true).await;
    assert_eq!((vals, lso, aborted), (vec!["open".to_string()], 2, 1));
    b.stop().await;
}

/// A transactional Produce, as a transactional producer sends it (with its id).
fn txn_produce(id: &str, topic: &str, records: Bytes) -> kafka_protocol::messages::ProduceRequest {
    produce_req(topic, 0, records, -1).with_transactional_id(Some(tid(id)))
}

#[tokio::test]
async fn a_transactional_write_outside_an_open_transaction_is_refused() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create(&mut c, "t", 1, 1).await;
    let (_, pid, epoch) = init(&mut c, "app-6", 60_000).await;
    let me = (pid, epoch);
    let code = |r: kafka_protocol::messages::ProduceResponse| {
        r.responses[0].partition_responses[0].error_code
    };
    // Not added to the transaction: the coordinator says no, nothing is appended.
    let r = c
        .request(txn_produce("app-6", "t", txn_batch(&["early"], me, 0)), 9)
        .await;
    assert_eq!(code(r), INVALID_TXN_STATE);
    assert_eq!(latest(&mut c, "t", false).await, 0);

    assert_eq!(add(&mut c, "app-6", me, "t", 3).await, 0);
    let r = c
        .request(txn_produce("app-6", "t", txn_batch(&["in"], me, 0)), 9)
        .await;
    assert_eq!(code(r), 0);
    assert_eq!(end(&mut c, "app-6", me, true).await, 0);
    // Wait until the transaction is complete at the coordinator.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while end(&mut c, "app-6", me, true).await != 0 || latest(&mut c, "t", true).await != 2 {
        assert!(std::time::Instant::now() < deadline, "never completed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A late batch of the ended transaction (same epoch) would open a transaction no
    // coordinator knows of, holding read_committed back forever: refused.
    let r = c
        .request(txn_produce("app-6", "t", txn_batch(&["late"], me, 1)), 9)
        .await;
    assert_eq!(code(r), INVALID_TXN_STATE);
    assert_eq!(latest(&mut c, "t", true).await, 2);
    assert_eq!(latest(&mut c, "t", false).await, 2);
    b.stop().await;
}
