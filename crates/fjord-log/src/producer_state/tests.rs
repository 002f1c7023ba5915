//! Producer state: the sequence rules, and its rebuild from snapshots and batch headers.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;
use crate::{Log, LogConfig};

/// A batch of `n` records from an idempotent producer, as a client encodes it.
fn idem(pid: i64, epoch: i16, first_seq: i32, n: i32, ts: i64) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: first_seq.wrapping_add(i),
            timestamp: ts,
            key: None,
            value: Some(Bytes::from_static(b"value")),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::Lz4,
        },
    )
    .unwrap();
    buf.to_vec()
}

fn append(log: &Log, pid: i64, epoch: i16, seq: i32, n: i32) -> Result<i64, LogError> {
    log.append(&mut idem(pid, epoch, seq, n, 1_000), 0, 2_000)
        .map(|i| i.base_offset)
}

fn snapshots(dir: &Path) -> Vec<i64> {
    list_snapshots(dir).unwrap().into_iter().collect()
}

#[test]
fn retries_gaps_and_epochs_follow_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(append(&log, 7, 0, 0, 3).unwrap(), 0);
    assert_eq!(append(&log, 7, 0, 3, 2).unwrap(), 3);
    // A retry of either cached batch is answered with its original offsets.
    let retry = log.append(&mut idem(7, 0, 0, 3, 1_000), 0, 9_000).unwrap();
    assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
    assert_eq!(append(&log, 7, 0, 3, 2).unwrap(), 3);
    assert_eq!(log.log_end_offset(), 5);
    // A gap, and a sequence that repeats part of a batch, are both out of order.
    assert_eq!(append(&log, 7, 0, 9, 1).unwrap_err().kafka_code(), 45);
    assert_eq!(append(&log, 7, 0, 4, 1).unwrap_err().kafka_code(), 45);
    // A new epoch must start at sequence 0; then the old epoch is fenced.
    assert_eq!(append(&log, 7, 1, 5, 1).unwrap_err().kafka_code(), 45);
    assert_eq!(append(&log, 7, 1, 0, 1).unwrap(), 5);
    assert_eq!(append(&log, 7, 0, 5, 1).unwrap_err().kafka_code(), 47);
    // An unknown producer id may start anywhere (KIP-360), and is independent.
    assert_eq!(append(&log, 8, 0, 42, 1).unwrap(), 6);
    assert_eq!(append(&log, 8, 0, 43, 1).unwrap(), 7);
    assert_eq!(log.log_end_offset(), 8);
    let e = log.producer_state(7).unwrap();
    assert_eq!(e.epoch, 1);
    assert_eq!(e.batches.len(), 1);
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..7 {
        assert_eq!(append(&log, 1, 0, i, 1).unwrap(), i as i64);
    }
    assert_eq!(log.producer_state(1).unwrap().batches.len(), 5);
    // Sequence 2 is still cached; sequence 1 fell out and is now simply out of order.
    assert_eq!(append(&log, 1, 0, 2, 1).unwrap(), 2);
    assert_eq!(append(&log, 1, 0, 1, 1).unwrap_err().kafka_code(), 45);
}

#[test]
fn sequences_wrap_from_max_to_zero() {
    assert_eq!(last_sequence(i32::MAX - 1, 1), i32::MAX);
    assert_eq!(last_sequence(i32::MAX - 1, 2), 0);
    assert_eq!(last_sequence(i32::MAX, 3), 2);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append(&log, 3, 0, i32::MAX - 1, 3).unwrap();
    assert_eq!(log.producer_state(3).unwrap().batches[0].last_seq, 0);
    assert_eq!(append(&log, 3, 0, i32::MAX - 1, 3).unwrap(), 0);
    assert_eq!(append(&log, 3, 0, 2, 1).unwrap_err().kafka_code(), 45);
    assert_eq!(append(&log, 3, 0, 1, 1).unwrap(), 3);
}

#[test]
fn rebuilt_from_headers_after_a_crash_without_any_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append(&log, 7, 0, 0, 3).unwrap();
    log.append(
        &mut crate::testutil::build_batch(0, &[5], crate::testutil::Codec::Gzip),
        0,
        0,
    )
    .unwrap();
    append(&log, 7, 0, 3, 2).unwrap();
    append(&log, 9, 2, 0, 1).unwrap();
    let before = (log.producer_state(7), log.producer_state(9));
    // No close: the process died. No snapshot was ever written.
    drop(log);
    assert!(snapshots(dir.path()).is_empty());
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.producer_state(7), log.producer_state(9)), before);
    assert_eq!(append(&log, 7, 0, 3, 2).unwrap(), 4);
    assert_eq!(append(&log, 7, 0, 0, 3).unwrap(), 0);
    assert_eq!(append(&log, 7, 0, 6, 1).unwrap_err().kafka_code(), 45);
    assert_eq!(append(&log, 9, 1, 1, 1).unwrap_err().kafka_code(), 47);
    assert_eq!(log.log_end_offset(), 7);
    // The rebuild captured a snapshot at the log end, written by the next flush check, so
    // the next crash scans less.
    log.flush_if_due(0).unwrap();
    assert_eq!(snapshots(dir.path()), vec![7]);
}

#[test]
fn snapshots_at_roll_and_close_carry_state_past_deleted_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    append(&log, 5, 0, 0, 2).unwrap();
    for seq in 0..20 {
        append(&log, 6, 0, seq, 1).unwrap();
    }
    // A roll prepares a snapshot; the periodic flush check writes it.
    log.flush_if_due(0).unwrap();
    let rolls = snapshots(dir.path());
    assert!(!rolls.is_empty(), "segment rolls should write snapshots");
    assert!(rolls.len() <= SNAPSHOTS_KEPT);
    // Retention deletes producer 5's only batch; its state stays until it expires.
    let leo = log.log_end_offset();
    log.delete_records_before(leo - 1).unwrap();
    assert!(snapshots(dir.path())
        .iter()
        .all(|&o| o >= leo - 1 || o == rolls[rolls.len() - 1]));
    log.close().unwrap();
    drop(log);
    assert!(snapshots(dir.path()).contains(&leo));
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.producer_state(5).unwrap().batches[0].first_offset, 0);
    assert_eq!(append(&log, 5, 0, 0, 2).unwrap(), 0);
    assert_eq!(append(&log, 6, 0, 19, 1).unwrap(), leo - 1);
    assert_eq!(log.log_end_offset(), leo);

    // A crash after more rolls: the newest roll snapshot plus the tail's headers.
    for seq in 20..30 {
        append(&log, 6, 0, seq, 1).unwrap();
    }
    log.flush_if_due(0).unwrap();
    let leo = log.log_end_offset();
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(append(&log, 6, 0, 29, 1).unwrap(), leo - 1);
    assert_eq!(append(&log, 6, 0, 31, 1).unwrap_err().kafka_code(), 45);
    assert!(log.producer_state(5).is_some());
}

#[test]
fn a_corrupt_snapshot_is_ignored_and_the_log_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append(&log, 7, 0, 0, 3).unwrap();
    append(&log, 7, 0, 3, 1).unwrap();
    log.close().unwrap();
    drop(log);
    let path = snapshot_path(dir.path(), 4);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(read_snapshot(dir.path(), 4).unwrap_err().contains("CRC"));

    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(append(&log, 7, 0, 3, 1).unwrap(), 3);
    assert_eq!(append(&log, 7, 0, 5, 1).unwrap_err().kafka_code(), 45);
    // Replaced by a good snapshot from the rebuild, at the next flush check.
    log.flush_if_due(0).unwrap();
    assert!(read_snapshot(dir.path(), 4).is_ok());

    // A truncated (torn) snapshot, and garbage under a snapshot name, are no worse.
    log.close().unwrap();
    drop(log);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    std::fs::write(snapshot_path(dir.path(), 2), b"junk").unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(append(&log, 7, 0, 0, 3).unwrap(), 0);
    assert_eq!(append(&log, 7, 0, 4, 1).unwrap(), 4);
}

#[test]
fn a_snapshot_above_the_log_end_is_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append(&log, 7, 0, 0, 1).unwrap();
    append(&log, 7, 0, 1, 1).unwrap();
    log.close().unwrap();
    drop(log);
    // As if the snapshot had been written for data that a power loss then took away.
    std::fs::rename(snapshot_path(dir.path(), 2), snapshot_path(dir.path(), 9)).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(!snapshots(dir.path()).contains(&9));
    assert_eq!(append(&log, 7, 0, 1, 1).unwrap(), 1);
}

#[test]
fn truncation_drops_later_snapshots_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).unwrap();
    for seq in 0..12 {
        append(&log, 4, 0, seq, 1).unwrap();
        log.flush_if_due(0).unwrap();
    }
    assert!(snapshots(dir.path()).iter().any(|&o| o > 5));
    log.truncate_to(5).unwrap();
    assert!(snapshots(dir.path()).iter().all(|&o| o <= 5));
    let e = log.producer_state(4).unwrap();
    assert_eq!(e.batches.back().unwrap().last_seq, 4);
    // Sequence 5 was truncated away: it is new again, not a duplicate.
    assert_eq!(append(&log, 4, 0, 5, 1).unwrap(), 5);
    assert_eq!(append(&log, 4, 0, 4, 1).unwrap(), 4);
    // A roll snapshot still waiting to be written is dropped by a truncation below it.
    for seq in 6..14 {
        append(&log, 4, 0, seq, 1).unwrap();
    }
    log.truncate_to(7).unwrap();
    log.flush_if_due(0).unwrap();
    assert!(snapshots(dir.path()).iter().all(|&o| o <= 7));
    assert_eq!(append(&log, 4, 0, 7, 1).unwrap(), 7);
    // Truncating everything forgets every producer.
    log.truncate_to(0).unwrap();
    assert_eq!(log.producer_count(), 0);
    assert!(snapshots(dir.path()).is_empty());
}

#[test]
fn producers_expire_after_their_last_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&mut idem(1, 0, 0, 1, 1_000), 0, 0).unwrap();
    log.append(&mut idem(2, 0, 0, 1, 5_000), 0, 0).unwrap();
    assert_eq!(log.remove_expired_producers(10_999, 10_000), 0);
    assert_eq!(log.remove_expired_producers(11_000, 10_000), 1);
    assert!(log.producer_state(1).is_none());
    assert!(log.producer_state(2).is_some());
    // Expired means unknown: any sequence is accepted again.
    assert_eq!(append(&log, 1, 0, 7, 1).unwrap(), 2);
}

#[test]
fn follower_appends_update_the_state() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = Log::open(leader_dir.path(), LogConfig::default()).unwrap();
    let follower = Log::open(follower_dir.path(), LogConfig::default()).unwrap();
    append(&leader, 7, 0, 0, 2).unwrap();
    append(&leader, 7, 0, 2, 2).unwrap();
    let data = leader.read(0, 1 << 20, i64::MAX, true).unwrap();
    follower.append_as_follower(&data.bytes).unwrap();
    assert_eq!(follower.producer_state(7), leader.producer_state(7));
}

#[test]
fn snapshot_round_trips() {
    let mut producers = HashMap::new();
    let mut e = ProducerEntry::new(3);
    for i in 0..6 {
        e.add(
            3,
            BatchMetadata {
                first_seq: i * 2,
                last_seq: i * 2 + 1,
                first_offset: i as i64 * 10,
                last_offset_delta: 1,
                timestamp: 77 + i as i64,
            },
        );
    }
    producers.insert(42, e);
    producers.insert(43, ProducerEntry::new(0));
    let bytes = encode_snapshot(100, &producers);
    assert_eq!(decode_snapshot(&bytes, 100).unwrap(), producers);
    assert!(decode_snapshot(&bytes, 101).is_err());
    for cut in 0..bytes.len() {
        assert!(decode_snapshot(&bytes[..cut], 100).is_err());
    }
}

#[test]
fn racing_retries_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    for seq in 0..20 {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || append(&log, 11, 0, seq * 2, 2))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().unwrap(), seq as i64 * 2);
        }
    }
    assert_eq!(log.log_end_offset(), 40);
}

/// A snapshot write cut short by a crash leaves its temp file; the next open removes it
/// and the log and its producers are as before.
#[test]
fn an_interrupted_snapshot_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append(&log, 7, 0, 0, 3).unwrap();
    log.close().unwrap();
    drop(log);
    let tmp = dir.path().join("00000000000000000003.snapshot.tmp");
    std::fs::write(&tmp, b"half a snapshot").unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(
        !tmp.exists(),
        "the temp file of an interrupted write is cleared"
    );
    assert!(log.recovery_summary().ignored_files.is_empty());
    assert_eq!(
        append(&log, 7, 0, 0, 3).unwrap(),
        0,
        "a retry keeps its offset"
    );
}
