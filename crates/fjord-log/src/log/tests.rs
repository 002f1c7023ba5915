//! Tests of the partition log against batches built by kafka-protocol's client encoder.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use proptest::prelude::*;

use super::*;
use crate::batch;
use crate::testutil::{build_batch, build_batch_with_value, Codec};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// Every (offset, timestamp) of every record the log returns, read batch by batch.
fn all_records(log: &Log) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let info = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        assert!(!info.bytes.is_empty(), "no data at offset {offset}");
        let mut buf = info.bytes.clone();
        for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
            for r in set.records {
                if r.offset >= offset {
                    out.push((r.offset, r.timestamp));
                }
            }
        }
        offset = out.last().map_or(offset, |r| r.0 + 1);
    }
    out
}

fn headers(bytes: &Bytes) -> Vec<BatchHeader> {
    batch::iter(bytes).map(|r| r.unwrap().0).collect()
}

/// Appends `n` batches of 1..=4 records with increasing timestamps; returns record count.
fn fill(log: &Log, n: usize, codec: Codec) -> i64 {
    let mut count = 0;
    for i in 0..n {
        let records = 1 + i % 4;
        let ts: Vec<i64> = (0..records)
            .map(|j| 1000 + (count + j as i64) * 10)
            .collect();
        let mut b = build_batch(0, &ts, codec);
        let info = log.append(&mut b, 1, 5000).unwrap();
        assert_eq!(info.base_offset, count);
        assert_eq!(info.last_offset, count + records as i64 - 1);
        count += records as i64;
    }
    count
}

#[test]
fn append_and_read_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("t-0"), small_config()).unwrap();
    let count = fill(&log, 120, Codec::None);
    assert_eq!(log.log_end_offset(), count);
    let segments = std::fs::read_dir(log.dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(segments > 3, "expected several segments, got {segments}");
    let records = all_records(&log);
    let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (0..count).collect::<Vec<_>>());
    assert_eq!(log.size_bytes(), {
        let mut total = 0;
        for e in std::fs::read_dir(log.dir()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                total += std::fs::metadata(p).unwrap().len();
            }
        }
        total
    });
}

#[test]
fn index_lookup_matches_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let count = fill(&log, 200, Codec::None);
    for offset in 0..count {
        let info = log.read(offset, 1, i64::MAX, true).unwrap();
        let hs = headers(&info.bytes);
        assert_eq!(hs.len(), 1);
        assert!(hs[0].base_offset <= offset && offset <= hs[0].last_offset());
    }
}

#[test]
fn read_limits_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for _ in 0..10 {
        let mut b = build_batch_with_value(0, &[1, 2], Codec::None, 100);
        log.append(&mut b, 0, 0).unwrap();
    }
    let one = log.read(0, usize::MAX, i64::MAX, true).unwrap();
    let batch_len = one.bytes.len() / 10;
    assert_eq!(headers(&one.bytes).len(), 10);
    // max_bytes stops before exceeding it.
    let r = log.read(0, batch_len * 3 + 5, i64::MAX, false).unwrap();
    assert_eq!(headers(&r.bytes).len(), 3);
    // KIP-74: the first batch comes whole even if larger than max_bytes.
    assert_eq!(
        headers(&log.read(2, 10, i64::MAX, true).unwrap().bytes).len(),
        1
    );
    assert!(log.read(2, 10, i64::MAX, false).unwrap().bytes.is_empty());
    // max_offset (high watermark) is exclusive on a batch's last offset.
    let r = log.read(0, usize::MAX, 6, true).unwrap();
    assert_eq!(headers(&r.bytes).last().unwrap().last_offset(), 5);
    assert!(log.read(6, usize::MAX, 6, true).unwrap().bytes.is_empty());
    // Ranges.
    let end = log.read(20, 100, i64::MAX, true).unwrap();
    assert!(end.bytes.is_empty());
    assert_eq!((end.log_start_offset, end.log_end_offset), (0, 20));
    let err = log.read(21, 100, i64::MAX, true).unwrap_err();
    assert!(matches!(
        err,
        LogError::OffsetOutOfRange {
            offset: 21,
            start: 0,
            end: 20
        }
    ));
    assert_eq!(err.kafka_code(), 1);
    assert!(log.read(-1, 100, i64::MAX, true).is_err());
}

#[test]
fn reopen_clean_and_unclean_keeps_everything() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let (count, before) = {
            let log = Log::open(&path, small_config()).unwrap();
            let count = fill(&log, 150, Codec::Lz4);
            if clean {
                log.close().unwrap();
                assert!(path.join(CLEAN_SHUTDOWN_FILE).exists());
            }
            (count, all_records(&log))
        };
        let log = Log::open(&path, small_config()).unwrap();
        assert!(!path.join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(log.log_end_offset(), count);
        assert_eq!(all_records(&log), before);
        let mut b = build_batch(0, &[1], Codec::None);
        assert_eq!(log.append(&mut b, 1, 0).unwrap().base_offset, count);
        assert_eq!(log.latest_epoch(), Some(1));
    }
}

#[test]
fn damaged_index_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let count = {
        let log = Log::open(dir.path(), small_config()).unwrap();
        let c = fill(&log, 60, Codec::None);
        log.close().unwrap();
        c
    };
    let idx = segment::segment_path(dir.path(), 0, "index");
    std::fs::write(&idx, [0xffu8; 16]).unwrap();
    std::fs::remove_file(segment::segment_path(dir.path(), 0, "timeindex")).unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), count);
    for offset in 0..count {
        let hs = headers(&log.read(offset, 1, i64::MAX, true).unwrap().bytes);
        assert!(hs[0].base_offset <= offset && offset <= hs[0].last_offset());
    }
}

#[test]
fn time_lookups_match_brute_force_for_every_codec() {
    for codec in Codec::ALL {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), small_config()).unwrap();
        // Timestamps go up and down inside and across batches.
        let mut ts_seed = 0i64;
        for i in 0..80 {
            let ts: Vec<i64> = (0..(1 + i % 3))
                .map(|j| {
                    ts_seed += 7;
                    1000 + (ts_seed * 31 + j as i64 * 13) % 500
                })
                .collect();
            let mut b = build_batch(0, &ts, codec);
            log.append(&mut b, 0, 0).unwrap();
        }
        let records = all_records(&log);
        for target in (900..1600).step_by(7) {
            let expected = records.iter().find(|r| r.1 >= target).map(|&(o, t)| (o, t));
            assert_eq!(
                log.offset_for_timestamp(target).unwrap(),
                expected,
                "{codec:?} target {target}"
            );
        }
        let max = records.iter().map(|r| r.1).max().unwrap();
        let first_max = records.iter().find(|r| r.1 == max).unwrap();
        assert_eq!(log.max_timestamp().unwrap(), Some((max, first_max.0)));
    }
}

#[test]
fn empty_log_answers() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), None);
    assert!(log.read(0, 100, i64::MAX, true).unwrap().bytes.is_empty());
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
}

#[test]
fn log_append_time_is_stamped_with_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).unwrap();
    let mut b = build_batch(0, &[1, 2, 3], Codec::Zstd);
    let info = log.append(&mut b, 4, 777_000).unwrap();
    assert_eq!(info.log_append_time, 777_000);
    let bytes = log.read(0, 1 << 20, i64::MAX, true).unwrap().bytes;
    let h = batch::validate(&bytes).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 777_000);
    assert_eq!(h.partition_leader_epoch, 4);
    let mut buf = bytes.clone();
    assert_eq!(
        RecordBatchDecoder::decode(&mut buf).unwrap().records.len(),
        3
    );
    assert_eq!(log.offset_for_timestamp(5).unwrap(), Some((0, 777_000)));
    let mut c = build_batch(0, &[1], Codec::None);
    let create = Log::open(dir.path().join("c"), LogConfig::default()).unwrap();
    assert_eq!(create.append(&mut c, 0, 1).unwrap().log_append_time, -1);
}

#[test]
fn rejects_oversize_and_corrupt_batches_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 500,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).unwrap();
    let mut big = build_batch_with_value(0, &[1], Codec::None, 600);
    let err = log.append(&mut big, 0, 0).unwrap_err();
    assert!(matches!(err, LogError::BatchTooLarge { max: 500, .. }));
    assert_eq!(err.kafka_code(), 10);

    let mut two = build_batch(0, &[1, 2], Codec::None);
    let mut second = build_batch(0, &[3], Codec::None);
    let last = second.len() - 1;
    second[last] ^= 0x55;
    two.extend_from_slice(&second);
    let err = log.append(&mut two, 0, 0).unwrap_err();
    assert!(matches!(err, LogError::CorruptBatch(_)));
    assert_eq!(err.kafka_code(), 2);
    let mut old = build_batch(0, &[1], Codec::None);
    old[16] = 1;
    assert!(matches!(
        log.append(&mut old, 0, 0),
        Err(LogError::UnsupportedMagic(1))
    ));
    assert!(log.append(&mut [], 0, 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn retention_by_time_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    fill(&log, 100, Codec::None);
    let segments_before = log.inner.lock().segments.len();
    assert_eq!(log.apply_retention(0).unwrap(), 0);
    // Records carry timestamps 1000 + 10*offset; keep only the newer half of them.
    let leo = log.log_end_offset();
    let mut cfg = log.config();
    cfg.retention_ms = 10;
    log.update_config(cfg);
    let now = 1000 + 10 * (leo / 2) + 10;
    let deleted = log.apply_retention(now).unwrap();
    assert!(deleted > 0);
    let start = log.log_start_offset();
    assert!(start > 0 && start <= leo / 2 + 1, "start {start}");
    assert_eq!(
        log.log_start_offset(),
        log.inner.lock().segments[0].base_offset
    );
    assert!(log.read(start - 1, 10, i64::MAX, true).is_err());
    assert!(!log
        .read(start, 10, i64::MAX, true)
        .unwrap()
        .bytes
        .is_empty());
    let mut cfg = log.config();
    cfg.retention_ms = -1;
    cfg.retention_bytes = 3000;
    log.update_config(cfg);
    log.apply_retention(i64::MAX).unwrap();
    assert!(log.size_bytes() <= 3000 + 2048);
    assert!(log.inner.lock().segments.len() < segments_before);
    // The active segment survives even when everything is expired.
    let mut cfg = log.config();
    cfg.retention_ms = 0;
    log.update_config(cfg);
    log.apply_retention(i64::MAX).unwrap();
    assert_eq!(log.inner.lock().segments.len(), 1);
    assert_eq!(log.log_end_offset(), leo);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), leo);
}

#[test]
fn delete_records_before_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (leo, start) = {
        let log = Log::open(dir.path(), small_config()).unwrap();
        fill(&log, 100, Codec::None);
        let leo = log.log_end_offset();
        assert!(matches!(
            log.delete_records_before(leo + 1),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        let segs = log.inner.lock().segments.len();
        assert_eq!(log.delete_records_before(leo / 2).unwrap(), leo / 2);
        assert!(log.inner.lock().segments.len() < segs);
        // Going backwards is a no-op.
        assert_eq!(log.delete_records_before(1).unwrap(), leo / 2);
        assert!(log.read(leo / 2 - 1, 10, i64::MAX, true).is_err());
        let first = headers(&log.read(leo / 2, 10, i64::MAX, true).unwrap().bytes);
        assert!(first[0].last_offset() >= leo / 2);
        (leo, log.log_start_offset())
    };
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.delete_records_before(leo).unwrap(), leo);
}

#[test]
fn a_started_epoch_counts_before_its_first_write_and_goes_with_a_truncation_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut b = build_batch(0, &[1, 2], Codec::None);
    log.append(&mut b, 1, 0).unwrap();
    log.start_epoch(4);
    assert_eq!(log.latest_epoch(), Some(4));
    // A follower that last fetched in epoch 3 learns epoch 1 ends at 2.
    assert_eq!(log.end_offset_for_epoch(3), Some((1, 2)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 2)));
    // Deposed without writing: the empty epoch goes, the records stay.
    log.truncate_to(2).unwrap();
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn truncate_to_and_leader_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut offsets = Vec::new();
    for epoch in 0..6 {
        for _ in 0..10 {
            let mut b = build_batch(0, &[1, 2], Codec::Snappy);
            offsets.push(log.append(&mut b, epoch, 0).unwrap().base_offset);
        }
    }
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 120)));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 60)));
    assert_eq!(log.end_offset_for_epoch(9), None);
    log.flush().unwrap();
    // Truncating in the middle of a batch removes that whole batch.
    log.truncate_to(71).unwrap();
    assert_eq!(log.log_end_offset(), 70);
    assert_eq!(log.latest_epoch(), Some(3));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 70)));
    assert!(log.flushed_offset() <= 70);
    assert_eq!(all_records(&log).len(), 70);
    let mut b = build_batch(0, &[1], Codec::None);
    assert_eq!(log.append(&mut b, 7, 0).unwrap().base_offset, 70);
    assert_eq!(log.end_offset_for_epoch(4), Some((3, 70)));
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), 71);
    assert_eq!(log.latest_epoch(), Some(7));
    // Truncating to a segment boundary and to zero.
    log.truncate_to(0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.size_bytes(), 0);
    let mut b = build_batch(0, &[1], Codec::None);
    assert_eq!(log.append(&mut b, 8, 0).unwrap().base_offset, 0);
}

#[test]
fn follower_append_keeps_leader_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Log::open(dir.path().join("leader"), small_config()).unwrap();
    fill(&leader, 50, Codec::Gzip);
    let follower = Log::open(dir.path().join("follower"), small_config()).unwrap();
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let data = leader.read(offset, 700, i64::MAX, true).unwrap().bytes;
        let info = follower.append_as_follower(&data).unwrap();
        assert_eq!(info.base_offset, offset);
        offset = info.last_offset + 1;
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(all_records(&follower), all_records(&leader));
    assert_eq!(follower.latest_epoch(), Some(1));
    let again = leader.read(0, 100, i64::MAX, true).unwrap().bytes;
    assert!(follower.append_as_follower(&again).is_err());
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_over_there() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Log::open(dir.path().join("leader"), small_config()).unwrap();
    fill(&leader, 100, Codec::None);
    let start = leader.log_end_offset() / 2;
    leader.delete_records_before(start).unwrap();
    let leader_start = leader.log_start_offset();
    let follower = Log::open(dir.path().join("follower"), small_config()).unwrap();
    let mut b = build_batch(0, &[1, 2, 3], Codec::None);
    follower.append(&mut b, 0, 0).unwrap();
    assert_eq!(follower.latest_epoch(), Some(0));
    assert!(matches!(
        follower.truncate_fully_and_start_at(-1),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    follower.truncate_fully_and_start_at(leader_start).unwrap();
    assert_eq!(follower.log_start_offset(), leader_start);
    assert_eq!(follower.log_end_offset(), leader_start);
    assert_eq!(follower.latest_epoch(), None);
    assert_eq!(follower.size_bytes(), 0);
    // The leader's start falls inside a batch: the empty follower starts over at that
    // batch's base, so its first append is whole.
    let data = leader
        .read(leader_start, 700, i64::MAX, true)
        .unwrap()
        .bytes;
    let first = headers(&data)[0].base_offset;
    assert!(first < leader_start);
    assert!(follower.append_as_follower(&data).is_err());
    follower.truncate_fully_and_start_at(first).unwrap();
    let mut offset = follower.append_as_follower(&data).unwrap().last_offset + 1;
    while offset < leader.log_end_offset() {
        let data = leader.read(offset, 700, i64::MAX, true).unwrap().bytes;
        offset = follower.append_as_follower(&data).unwrap().last_offset + 1;
    }
    follower.delete_records_before(leader_start).unwrap();
    drop(follower);
    // The new start survives a restart, and so does what was copied after it.
    let follower = Log::open(dir.path().join("follower"), small_config()).unwrap();
    assert_eq!(follower.log_start_offset(), leader_start);
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(all_records(&follower), all_records(&leader));
}

#[test]
fn group_commit_with_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), small_config()).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let mut b = build_batch(0, &[1, 2, 3], Codec::None);
                    let info = log.append(&mut b, 0, 0).unwrap();
                    log.flush_until(info.last_offset + 1).unwrap();
                    assert!(log.flushed_offset() > info.last_offset);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.log_end_offset(), 16 * 25 * 3);
    assert_eq!(log.flushed_offset(), log.log_end_offset());
}

#[test]
fn flush_policies() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 5,
        flush_ms: 100,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).unwrap();
    let mut b = build_batch(0, &[1, 2], Codec::None);
    log.append(&mut b, 0, 1000).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    log.flush_if_due(1050).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    log.flush_if_due(1100).unwrap();
    assert_eq!(log.flushed_offset(), 2);
    for _ in 0..3 {
        let mut b = build_batch(0, &[1, 2], Codec::None);
        log.append(&mut b, 0, 2000).unwrap();
    }
    // Six messages since the last flush: flush.messages=5 forced one.
    assert_eq!(log.flushed_offset(), 8);
    log.flush().unwrap();
    assert_eq!(
        checkpoint::read_offset(&Fs::real(), dir.path(), RECOVERY_POINT_FILE),
        Some(8)
    );
}

#[test]
fn segment_ms_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).unwrap();
    let mut b = build_batch(0, &[1], Codec::None);
    log.append(&mut b, 0, 10_000).unwrap();
    let mut b = build_batch(0, &[1], Codec::None);
    log.append(&mut b, 0, 10_500).unwrap();
    assert_eq!(log.inner.lock().segments.len(), 1);
    let mut b = build_batch(0, &[1], Codec::None);
    log.append(&mut b, 0, 11_001).unwrap();
    assert_eq!(log.inner.lock().segments.len(), 2);
    assert_eq!(log.inner.lock().segments[1].base_offset, 2);
}

#[test]
fn delete_removes_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone-0");
    let log = Log::open(&path, LogConfig::default()).unwrap();
    fill(&log, 3, Codec::None);
    log.delete().unwrap();
    assert!(!path.exists());
}

/// Builds a log of `n` batches, closes nothing, and returns (dir, per-batch end positions
/// in the last segment, the last segment's base offset, offsets of the batches).
fn crash_fixture(n: usize) -> (tempfile::TempDir, Vec<(u64, i64)>, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).unwrap();
    for i in 0..n {
        let codec = Codec::ALL[i % 5];
        let mut b = build_batch(0, &[i as i64, i as i64 + 1], codec);
        log.append(&mut b, 0, 0).unwrap();
    }
    log.flush().unwrap();
    let inner = log.inner.lock();
    let last = inner.segments.last().unwrap();
    let path = segment::segment_path(dir.path(), last.base_offset, "log");
    let bytes = std::fs::read(&path).unwrap();
    let ends = batch::iter(&bytes)
        .map(|r| {
            let (h, range) = r.unwrap();
            (range.end as u64, h.last_offset() + 1)
        })
        .collect();
    drop(inner);
    (dir, ends, path)
}

/// The log end offset recovery should arrive at if the last segment has `valid` good bytes.
fn expected_leo(ends: &[(u64, i64)], valid: u64, segment_base: i64) -> i64 {
    ends.iter()
        .take_while(|(end, _)| *end <= valid)
        .last()
        .map_or(segment_base, |&(_, next)| next)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn recovery_keeps_exactly_the_valid_prefix_after_a_cut(n in 20usize..40, frac in 0.0f64..1.0) {
        let (dir, ends, path) = crash_fixture(n);
        let full = std::fs::metadata(&path).unwrap().len();
        let cut = (full as f64 * frac) as u64;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(cut).unwrap();
        // Force a scan, as after a crash with a stale recovery point.
        checkpoint::write_offset(&Fs::real(), dir.path(), RECOVERY_POINT_FILE, 0).unwrap();
        let base: i64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let leo = expected_leo(&ends, cut, base);
        prop_assert_eq!(log.log_end_offset(), leo);
        let records = all_records(&log);
        prop_assert_eq!(records.len() as i64, leo);
        let mut b = build_batch(0, &[1], Codec::None);
        prop_assert_eq!(log.append(&mut b, 0, 0).unwrap().base_offset, leo);
    }

    #[test]
    fn recovery_drops_a_corrupted_tail(
        n in 20usize..40,
        from_end in 0usize..4,
        within in 0.0f64..1.0,
        xor in 1u8..=255,
    ) {
        let (dir, ends, path) = crash_fixture(n);
        let mut bytes = std::fs::read(&path).unwrap();
        // Damage one of the last few batches, anywhere the CRC or framing protects: the base
        // offset and leader epoch fields are outside the CRC in the v2 format (Kafka patches
        // them in place), so flips there are not detectable by design.
        let k = ends.len().saturating_sub(1 + from_end);
        let start = if k == 0 { 0 } else { ends[k - 1].0 as usize };
        let end = ends[k].0 as usize;
        let protected: Vec<usize> = (start..end)
            .filter(|p| !(start..start + 8).contains(p) && !(start + 12..start + 16).contains(p))
            .collect();
        let at = protected[(within * protected.len() as f64) as usize % protected.len()];
        bytes[at] ^= xor;
        std::fs::write(&path, &bytes).unwrap();
        std::fs::remove_file(dir.path().join(RECOVERY_POINT_FILE)).unwrap();
        let base: i64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        // The damaged batch and everything after it are gone.
        let leo = expected_leo(&ends, start as u64, base);
        prop_assert_eq!(log.log_end_offset(), leo);
        prop_assert_eq!(all_records(&log).len() as i64, leo);
        prop_assert_eq!(std::fs::metadata(&path).unwrap().len(), start as u64);
    }
}

#[test]
fn append_corrects_a_header_max_timestamp_below_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for codec in [Codec::Zstd, Codec::None] {
        let mut bytes = build_batch(0, &[100, 500, 300], codec);
        // A producer whose header claims less than its records hold, CRC resealed.
        bytes[batch::MAX_TIMESTAMP_POS..batch::MAX_TIMESTAMP_POS + 8]
            .copy_from_slice(&200i64.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[batch::CRC_START..]);
        bytes[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        log.append(&mut bytes, 0, 1).unwrap();
    }
    // Without the correction the segment's max timestamp is 200 and both miss the record.
    assert_eq!(log.offset_for_timestamp(400).unwrap(), Some((1, 500)));
    assert_eq!(log.max_timestamp().unwrap(), Some((500, 1)));
    let stored = log.read(0, 1 << 20, i64::MAX, true).unwrap().bytes;
    for item in batch::iter(&stored) {
        let (_, range) = item.unwrap();
        assert_eq!(batch::validate(&stored[range]).unwrap().max_timestamp, 500);
    }
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A log of several segments, flushed but not closed; returns its record count.
fn stray_fixture(dir: &Path) -> i64 {
    let log = Log::open(dir, small_config()).unwrap();
    let count = fill(&log, 60, Codec::None);
    log.flush().unwrap();
    assert!(log.inner.lock().segments.len() > 2);
    count
}

/// Reproduces the bug: a file named `-0000000000000000001.log` (20 characters, parsed as
/// base offset -1) was taken for a segment. With garbage in it, recovery cut it and then
/// deleted every later segment as "after a damaged tail" — segment 0 with all the data —
/// and the log handed out -1 as its start offset. It must be ignored, never touched.
#[test]
fn negative_offset_file_is_ignored_never_used_or_deleted() {
    for contents in [&b""[..], &b"not a record batch, just bytes"[..]] {
        let dir = tempfile::tempdir().unwrap();
        let count = stray_fixture(dir.path());
        let before = all_records_of(dir.path());
        let stray = dir.path().join("-0000000000000000001.log");
        std::fs::write(&stray, contents).unwrap();
        let seg0 = std::fs::read(segment::segment_path(dir.path(), 0, "log")).unwrap();
        for round in 0..2 {
            let log = Log::open(dir.path(), small_config()).unwrap();
            assert_eq!(log.log_start_offset(), 0, "round {round}");
            assert_eq!(log.log_end_offset(), count + round);
            assert_eq!(&all_records(&log)[..count as usize], &before[..]);
            assert_eq!(
                log.recovery_summary().ignored_files,
                vec!["-0000000000000000001.log".to_string()]
            );
            let mut b = build_batch(0, &[1], Codec::None);
            assert_eq!(log.append(&mut b, 1, 0).unwrap().base_offset, count + round);
            // DeleteRecords and retention never pick the stray as "the first segment".
            assert_eq!(log.delete_records_before(0).unwrap(), 0);
            log.flush().unwrap();
        }
        assert_eq!(std::fs::read(&stray).unwrap(), contents);
        assert_eq!(
            std::fs::read(segment::segment_path(dir.path(), 0, "log")).unwrap(),
            seg0
        );
        assert!(!dir.path().join("-0000000000000000001.index").exists());
    }
}

fn all_records_of(dir: &Path) -> Vec<(i64, i64)> {
    let log = Log::open(dir, small_config()).unwrap();
    all_records(&log)
}

#[test]
fn malformed_and_unknown_names_are_ignored_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let count = stray_fixture(dir.path());
    let strays = [
        "notes.txt",
        "0000000000000000001.log",   // 19 digits
        "000000000000000000001.log", // 21 digits
        "+0000000000000000001.log",  // a sign that i64 parsing would accept
        "99999999999999999999.log",  // 20 digits beyond i64
        "0000000000000000000x.log",
        "00000000000000000000.log.bak",
        "00000000000000000000.deleted",
        "00000000000000000000.log.tmp", // not a checkpoint temp file: not ours to remove
    ];
    for (i, name) in strays.iter().enumerate() {
        std::fs::write(dir.path().join(name), vec![i as u8; i * 7]).unwrap();
    }
    let before = file_names(dir.path());
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, count));
    assert_eq!(all_records(&log).len() as i64, count);
    let mut ignored = log.recovery_summary().ignored_files.clone();
    ignored.sort();
    let mut expected: Vec<String> = strays.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(ignored, expected);
    fill_more(&log, 30);
    log.close().unwrap();
    drop(log);
    for (i, name) in strays.iter().enumerate() {
        assert_eq!(
            std::fs::read(dir.path().join(name)).unwrap(),
            vec![i as u8; i * 7],
            "{name}"
        );
    }
    let after = file_names(dir.path());
    assert!(
        before.iter().all(|n| after.contains(n)),
        "{before:?} vs {after:?}"
    );
}

fn fill_more(log: &Log, n: usize) {
    for _ in 0..n {
        let mut b = build_batch(0, &[1, 2], Codec::None);
        log.append(&mut b, 1, 0).unwrap();
    }
}

/// An empty `.log` whose base offset lies inside the previous segment's offsets (say, a
/// leftover of a crashed roll, or a stray copy) must not move the log end offset back to
/// its base, nor cause any deletion: it is ignored, with a warning, and left in place.
#[test]
fn empty_segment_inside_an_existing_range_is_ignored() {
    for clean in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let count = {
            let log = Log::open(dir.path(), small_config()).unwrap();
            let count = fill(&log, 60, Codec::None);
            if clean {
                log.close().unwrap();
            } else {
                log.flush().unwrap();
            }
            count
        };
        let (second, seg_count) = {
            let log = Log::open(dir.path(), small_config()).unwrap();
            let inner = log.inner.lock();
            (inner.segments[1].base_offset, inner.segments.len())
        };
        // Inside the first segment, and inside the active one.
        let inside_first = 3;
        let inside_last = count - 2;
        for base in [inside_first, inside_last] {
            std::fs::write(segment::segment_path(dir.path(), base, "log"), b"").unwrap();
        }
        let before = all_records_of(dir.path());
        assert_eq!(before.len() as i64, count);
        for round in 0..2 {
            let log = Log::open(dir.path(), small_config()).unwrap();
            assert_eq!(log.log_end_offset(), count + round * 2);
            assert_eq!(log.log_start_offset(), 0);
            assert_eq!(log.inner.lock().segments.len(), seg_count);
            assert_eq!(log.inner.lock().segments[1].base_offset, second);
            assert_eq!(&all_records(&log)[..count as usize], &before[..]);
            assert_eq!(log.recovery_summary().ignored_files.len(), 2);
            fill_more(&log, 1);
            log.flush().unwrap();
        }
        for base in [inside_first, inside_last] {
            let path = segment::segment_path(dir.path(), base, "log");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                0,
                "{}",
                path.display()
            );
        }
    }
}

/// A non-empty segment overlapping its predecessor is a conflict the log cannot resolve
/// without choosing which data to throw away: it refuses to open, and touches nothing.
#[test]
fn overlapping_non_empty_segment_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    stray_fixture(dir.path());
    let seg0 = segment::segment_path(dir.path(), 0, "log");
    let copy = segment::segment_path(dir.path(), 2, "log");
    std::fs::copy(&seg0, &copy).unwrap();
    let before: Vec<(String, Vec<u8>)> = file_names(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .map(|n| (n.clone(), std::fs::read(dir.path().join(&n)).unwrap()))
        .collect();
    let err = Log::open(dir.path(), small_config())
        .err()
        .expect("open must fail");
    assert!(err.is_offline(), "{err}");
    assert_eq!(err.kafka_code(), 56);
    assert!(
        err.to_string().contains("00000000000000000002.log"),
        "{err}"
    );
    for (name, data) in before {
        assert_eq!(
            std::fs::read(dir.path().join(&name)).unwrap(),
            data,
            "{name}"
        );
    }
}

#[test]
fn checkpoint_temp_files_are_cleaned_and_orphan_indexes_removed() {
    let dir = tempfile::tempdir().unwrap();
    let count = stray_fixture(dir.path());
    std::fs::write(
        dir.path().join("recovery-point-offset-checkpoint.tmp"),
        b"0\n9",
    )
    .unwrap();
    std::fs::write(
        segment::segment_path(dir.path(), 999_999, "index"),
        [0u8; 8],
    )
    .unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), count);
    assert!(log.recovery_summary().ignored_files.is_empty());
    assert!(!dir
        .path()
        .join("recovery-point-offset-checkpoint.tmp")
        .exists());
    assert!(!segment::segment_path(dir.path(), 999_999, "index").exists());
}

#[test]
fn a_topic_compression_type_recompresses_what_producers_send() {
    for (target, codec) in [
        (3u8, Codec::Gzip),
        (0, Codec::Zstd),
        (4, Codec::None),
        (2, Codec::Lz4),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            compression: Some(target),
            ..small_config()
        };
        let log = Log::open(dir.path(), config).unwrap();
        // Two batches in one request, as a producer may send them.
        let mut bytes = build_batch(0, &[100, 110, 120], codec);
        bytes.extend(build_batch(0, &[130, 140], Codec::Snappy));
        let info = log.append(&mut bytes, 1, 5000).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 4));
        let read = log.read(0, 1 << 20, i64::MAX, true).unwrap();
        for h in headers(&read.bytes) {
            assert_eq!(h.compression(), target, "{codec:?} stored as {target}");
        }
        assert_eq!(
            all_records(&log),
            vec![(0, 100), (1, 110), (2, 120), (3, 130), (4, 140)],
            "{codec:?} -> {target}"
        );
    }
}

#[test]
fn a_batch_that_would_store_too_large_uncompressed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        compression: Some(0),
        max_message_bytes: 4000,
        ..small_config()
    };
    let log = Log::open(dir.path(), config).unwrap();
    // 20 records of 1 KiB zeros compress to far below 4000 bytes, not so uncompressed.
    let mut b = build_batch_with_value(0, &[1; 20], Codec::Zstd, 1024);
    assert!(b.len() < 4000);
    let e = log.append(&mut b, 1, 5000).unwrap_err();
    assert!(matches!(e, LogError::BatchTooLarge { .. }), "{e:?}");
    assert_eq!(log.log_end_offset(), 0);
}
