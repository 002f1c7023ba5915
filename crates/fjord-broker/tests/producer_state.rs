//! Idempotent producers across broker restarts: a retried batch keeps its original offset
//! and is stored once, and a sequence gap is refused, after a clean shutdown and after a
//! crash alike.

mod common;

use bytes::Bytes;
use common::{create, fetch_req, produce_req, producer_batch, values, Client, TestBroker};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::records::Compression;

const TOPIC: &str = "idempotent";
const PID: i64 = 4000;

/// One batch from an idempotent producer, as a client encodes it: one record per value,
/// sequences counting up from `first_seq`.
fn idempotent_batch(epoch: i16, first_seq: i32, vals: &[&str]) -> Bytes {
    let vals: Vec<&[u8]> = vals.iter().map(|v| v.as_bytes()).collect();
    // Now, so that producer.id.expiration.ms cannot expire the producer mid-test.
    producer_batch(
        &vals,
        None,
        now_ms(),
        Compression::Snappy,
        Some((PID, epoch, first_seq)),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn produce(c: &mut Client, records: Bytes) -> PartitionProduceResponse {
    let mut r = c.request(produce_req(TOPIC, 0, records, -1), 9).await;
    r.responses.remove(0).partition_responses.remove(0)
}

/// Produces and returns the base offset, failing the test on any error.
async fn produce_ok(c: &mut Client, records: Bytes) -> i64 {
    let r = produce(c, records).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    r.base_offset
}

async fn create_topic(c: &mut Client) {
    assert_eq!(create(c, TOPIC, 1, 1).await.topics[0].error_code, 0);
}

async fn all_values(c: &mut Client) -> Vec<String> {
    let r = c.request(fetch_req(TOPIC, 0, 0, 0), 12).await;
    let records = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    values(records)
        .into_iter()
        .map(|v| String::from_utf8(v).expect("utf-8 value"))
        .collect()
}

#[tokio::test]
async fn retries_keep_their_offsets_and_gaps_are_refused_after_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    create_topic(&mut c).await;
    assert_eq!(
        produce_ok(&mut c, idempotent_batch(0, 0, &["a", "b", "c"])).await,
        0
    );
    assert_eq!(
        produce_ok(&mut c, idempotent_batch(0, 3, &["d", "e"])).await,
        3
    );
    // A plain batch after them, so a retry appended again could not land on its old offset.
    let plain = common::batch(&[b"plain"], None, 0, Compression::None);
    assert_eq!(produce_ok(&mut c, plain).await, 5);
    drop(c);
    broker.stop().await;

    // Clean restart: the state comes from the snapshot written at close.
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    assert_eq!(
        produce_ok(&mut c, idempotent_batch(0, 0, &["a", "b", "c"])).await,
        0
    );
    assert_eq!(
        produce_ok(&mut c, idempotent_batch(0, 3, &["d", "e"])).await,
        3
    );
    let gap = produce(&mut c, idempotent_batch(0, 9, &["x"])).await;
    assert_eq!(gap.error_code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    assert_eq!(produce_ok(&mut c, idempotent_batch(0, 5, &["f"])).await, 6);
    drop(c);
    broker.crash().await;

    // After a crash: no snapshot at the log end, so the batch headers are scanned.
    let broker = TestBroker::start_in(tmp.path(), &[]).await;
    let mut c = broker.client().await;
    assert_eq!(produce_ok(&mut c, idempotent_batch(0, 5, &["f"])).await, 6);
    assert_eq!(
        produce_ok(&mut c, idempotent_batch(0, 3, &["d", "e"])).await,
        3
    );
    let gap = produce(&mut c, idempotent_batch(0, 7, &["y"])).await;
    assert_eq!(gap.error_code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    let stale_epoch = produce(&mut c, idempotent_batch(-1, 0, &["z"])).await;
    assert_eq!(stale_epoch.error_code, 47, "INVALID_PRODUCER_EPOCH");
    assert_eq!(
        all_values(&mut c).await,
        ["a", "b", "c", "d", "e", "plain", "f"]
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn idle_producer_ids_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(
        tmp.path(),
        &[
            ("producer.id.expiration.ms", "1"),
            ("producer.id.expiration.check.interval.ms", "20"),
        ],
    )
    .await;
    let mut c = broker.client().await;
    create_topic(&mut c).await;
    assert_eq!(produce_ok(&mut c, idempotent_batch(0, 0, &["a"])).await, 0);
    // While the producer is known, sequence 10 is a gap; once its state has expired it is
    // an unknown producer again, which may start at any sequence (KIP-360).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = produce(&mut c, idempotent_batch(0, 10, &["b"])).await;
        if r.error_code == 0 {
            assert_eq!(r.base_offset, 1);
            break;
        }
        assert_eq!(r.error_code, 45);
        assert!(
            std::time::Instant::now() < deadline,
            "producer state never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(c);
    broker.stop().await;
}
