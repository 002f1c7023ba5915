//! Transactions in the partition log: open transactions and the last stable offset,
//! markers, the aborted-transaction index, and all of it across restarts, truncation and
//! replication.

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as Ts,
};

use super::*;
use crate::txn::{AbortedTxn, Marker};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// A producer's batch of `n` records as a client encodes it; `pid` -1 is a plain producer.
fn batch(pid: i64, epoch: i16, first_seq: i32, n: i32, transactional: bool) -> BytesMut {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: if pid < 0 { -1 } else { epoch },
            timestamp_type: Ts::Creation,
            offset: i as i64,
            sequence: if pid < 0 { -1 } else { first_seq + i },
            timestamp: 1000,
            key: Some(bytes::Bytes::from(format!("k{i}"))),
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf
}

const COMMIT: Marker = Marker {
    commit: true,
    coordinator_epoch: 0,
};
const ABORT: Marker = Marker {
    commit: false,
    coordinator_epoch: 0,
};

#[test]
fn an_open_transaction_holds_the_last_stable_offset_until_its_marker_is_replicated() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append(&mut batch(-1, 0, 0, 2, false), 0, 1).unwrap();
    log.append(&mut batch(7, 0, 0, 3, true), 0, 1).unwrap();
    log.append(&mut batch(-1, 0, 0, 1, false), 0, 1).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    // Open from offset 2: nothing from there on is stable, whatever the high watermark.
    assert_eq!(log.last_stable_offset(1), 1);
    assert_eq!(log.last_stable_offset(6), 2);
    let m = log.append_marker(7, 0, COMMIT, 0, 1).unwrap();
    assert_eq!(m.base_offset, 6);
    // The marker is not yet on every replica: still unstable.
    assert_eq!(log.last_stable_offset(6), 2);
    assert_eq!(log.last_stable_offset(7), 7);
    assert!(log.aborted_txns(0, 7).is_empty());
}

#[test]
fn an_abort_enters_the_transaction_index_and_reads_return_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append(&mut batch(7, 0, 0, 3, true), 0, 1).unwrap();
    log.append(&mut batch(8, 0, 0, 2, true), 0, 1).unwrap();
    log.append_marker(7, 0, ABORT, 0, 1).unwrap();
    log.append_marker(8, 0, COMMIT, 0, 1).unwrap();
    let aborted = log.aborted_txns(0, 7);
    assert_eq!(
        aborted,
        vec![AbortedTxn {
            producer_id: 7,
            first_offset: 0,
            last_offset: 5,
            // Producer 8's transaction from offset 3 was still open.
            last_stable_offset: 3,
        }]
    );
    // A read past the abort marker does not overlap it.
    assert!(log.aborted_txns(6, 7).is_empty());
    log.flush().unwrap();
    assert!(dir.path().join(format!("{:020}.txnindex", 0)).exists());
}

#[test]
fn plain_writes_during_a_transaction_and_stale_markers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append(&mut batch(7, 2, 0, 1, true), 0, 1).unwrap();
    let e = log.append(&mut batch(7, 2, 1, 1, false), 0, 1).unwrap_err();
    assert_eq!(e.kafka_code(), 48, "{e}");
    let e = log.append_marker(7, 1, ABORT, 0, 1).unwrap_err();
    assert_eq!(e.kafka_code(), 47, "{e}");
    let newer = Marker {
        commit: false,
        coordinator_epoch: 5,
    };
    log.append_marker(7, 3, newer, 0, 1).unwrap();
    let e = log.append_marker(7, 3, ABORT, 0, 1).unwrap_err();
    assert_eq!(e.kafka_code(), 52, "{e}");
    // The bumped epoch fences the producer's old epoch.
    let e = log.append(&mut batch(7, 2, 1, 1, true), 0, 1).unwrap_err();
    assert_eq!(e.kafka_code(), 47, "{e}");
    // Clients never write control batches themselves.
    let mut control = BytesMut::from(&crate::txn::marker_batch(7, 3, COMMIT, 1)[..]);
    let e = log.append(&mut control, 0, 1).unwrap_err();
    assert_eq!(e.kafka_code(), 87, "{e}");
}

/// Writes: committed txn, aborted txn (rolling segments on the way), and an open one.
fn history(log: &Log) -> (Vec<AbortedTxn>, i64) {
    let mut seq = 0;
    for round in 0..6 {
        for _ in 0..3 {
            log.append(&mut batch(7, 0, seq, 4, true), 0, 1).unwrap();
            seq += 4;
        }
        let m = if round % 2 == 0 { COMMIT } else { ABORT };
        log.append_marker(7, 0, m, 0, 1).unwrap();
    }
    let open = log.log_end_offset();
    log.append(&mut batch(7, 0, seq, 2, true), 0, 1).unwrap();
    (log.aborted_txns(0, i64::MAX), open)
}

#[test]
fn transactions_survive_clean_and_unclean_restarts() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (aborted, open) = {
            let log = Log::open(dir.path(), config()).unwrap();
            let h = history(&log);
            assert_eq!(h.0.len(), 3);
            assert!(log.recovery_summary().created);
            if clean {
                log.close().unwrap();
            } else {
                log.flush().unwrap();
            }
            h
        };
        let log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(log.recovery_summary().clean_shutdown, clean);
        assert_eq!(log.aborted_txns(0, i64::MAX), aborted, "clean: {clean}");
        assert_eq!(
            log.last_stable_offset(log.log_end_offset()),
            open,
            "clean: {clean}"
        );
        // The open transaction can still end, and its abort is indexed.
        log.append_marker(7, 0, ABORT, 0, 1).unwrap();
        assert_eq!(log.aborted_txns(open, i64::MAX).len(), 1);
    }
}

#[test]
fn a_damaged_or_unsynced_transaction_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let aborted = {
        let log = Log::open(dir.path(), config()).unwrap();
        let (a, _) = history(&log);
        log.close().unwrap();
        a
    };
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txnindex") {
            std::fs::write(&path, [1u8; 7]).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.aborted_txns(0, i64::MAX), aborted);
    drop(log);
    // Unclean: no marker, recovery point at 0, and the index files gone.
    std::fs::remove_file(dir.path().join(RECOVERY_POINT_FILE)).ok();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txnindex") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let log = Log::open(dir.path(), config()).unwrap();
    assert!(log.recovery_summary().recovery_ran());
    assert_eq!(log.aborted_txns(0, i64::MAX), aborted);
}

#[test]
fn truncation_below_a_marker_reopens_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    log.append(&mut batch(7, 0, 0, 3, true), 0, 1).unwrap();
    let m = log.append_marker(7, 0, ABORT, 0, 1).unwrap();
    assert_eq!(log.aborted_txns(0, 10).len(), 1);
    log.truncate_to(m.base_offset).unwrap();
    assert!(log.aborted_txns(0, 10).is_empty());
    assert_eq!(log.last_stable_offset(3), 0);
}

#[test]
fn a_follower_copies_transactions_and_their_markers() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = Log::open(leader_dir.path(), config()).unwrap();
    let follower = Log::open(follower_dir.path(), config()).unwrap();
    let (aborted, open) = history(&leader);
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let read = leader.read(offset, 1 << 20, i64::MAX, true).unwrap();
        let info = follower.append_as_follower(&read.bytes).unwrap();
        offset = info.last_offset + 1;
    }
    assert_eq!(follower.aborted_txns(0, i64::MAX), aborted);
    assert_eq!(follower.last_stable_offset(follower.log_end_offset()), open);
}

#[test]
fn compaction_keeps_values_that_an_aborted_transaction_overwrote_and_stops_at_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 300,
        compact: true,
        ..config()
    };
    let log = Log::open(dir.path(), cfg).unwrap();
    // k0, k1 committed by a plain producer, then overwritten by a transaction that aborts.
    log.append(&mut batch(-1, 0, 0, 2, false), 0, 1).unwrap();
    log.append(&mut batch(7, 0, 0, 2, true), 0, 1).unwrap();
    let marker = log.append_marker(7, 0, ABORT, 0, 1).unwrap().base_offset;
    // Then a transaction left open, and enough plain writes after it to roll segments.
    let open = log.log_end_offset();
    log.append(&mut batch(8, 0, 0, 2, true), 0, 1).unwrap();
    for seq in 0..6 {
        log.append(&mut batch(9, 0, seq, 1, false), 0, 1).unwrap();
    }
    log.flush().unwrap();
    let opts = CleanOptions {
        now_ms: wall_clock_ms(),
        map_budget: 1 << 20,
    };
    log.clean(&opts, &mut |_| {}).unwrap();
    // Every batch below the open transaction is still there: the aborted one (its
    // transaction index still names it), its marker, and the committed values it
    // overwrote, which an aborted write never replaces.
    let batches = all_batches(&log);
    let below: Vec<(i64, i64)> = batches.iter().copied().filter(|b| b.0 < open).collect();
    assert_eq!(below, vec![(0, -1), (1, -1), (2, 7), (marker, 7)]);
    // The open transaction's records were never mapped: they stay, and the plain writes
    // after them too.
    assert_eq!(batches.len(), 4 + 1 + 6);
}

/// `(base offset, producer id)` of every batch in the log.
fn all_batches(log: &Log) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        for b in batch::iter(&read.bytes) {
            let h = b.unwrap().0;
            out.push((h.base_offset, h.producer_id));
            offset = h.last_offset() + 1;
        }
    }
    out
}
