//! Durability under simulated power loss, injected fsync failures and bounded file handles.
//!
//! The scenario runner drives a log through random appends, group-commit flushes, full
//! flushes, scheduled flushes, rolls, DeleteRecords, retention, truncation, leader-epoch
//! changes, clean closes and crashes, over a [`SimFs`]. The power may also go off in the middle
//! of an operation (at a chosen fsync), including during recovery itself. After every reopen
//! it checks what a power loss must never break:
//!
//! - every batch acknowledged durable (`flush_until`/`flush` returned Ok, or recovery
//!   completed) is there, byte for byte;
//! - the log end offset never falls below the acknowledged flushed offset, and the log start
//!   offset never falls below an acknowledged DeleteRecords or retention;
//! - every batch the log holds was appended at that offset at some time (nothing invented,
//!   nothing mangled), in increasing offset order, and the leader-epoch cache agrees with it;
//! - files that are not the log's are untouched, and the next append lands at the log end.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Weak};

use super::*;
use crate::fs::sim::{SimFs, SyncKind as SimSync};
use crate::testutil::{build_batch_with_value, Codec};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo + 1) as u64) as i64
        }
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1400,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn last_offset(b: &[u8]) -> i64 {
    BatchHeader::parse(b).unwrap().last_offset()
}

/// What the test knows of the log.
#[derive(Default)]
struct Model {
    /// Every batch ever appended, by base offset: a crash may legitimately bring back
    /// unflushed data a truncation had removed.
    history: HashMap<i64, Vec<Vec<u8>>>,
    /// The batches the log holds, as far as the running process knows.
    batches: BTreeMap<i64, Vec<u8>>,
    /// Every offset below this was acknowledged durable.
    flushed: i64,
    /// Acknowledged log start offset (DeleteRecords, retention).
    log_start: i64,
    epoch: i32,
}

impl Model {
    /// A truncation to `x` was interrupted or failed: anything from the batch holding `x`
    /// onward may be gone.
    fn may_have_truncated(&mut self, x: i64) {
        let cut = self
            .batches
            .iter()
            .filter(|(_, b)| last_offset(b) >= x)
            .map(|(&base, _)| base)
            .min();
        if let Some(cut) = cut {
            // The log then ends after the last batch it keeps (there may be a gap before `x`),
            // or where the first removed batch began if it keeps none.
            let kept_end = self
                .batches
                .values()
                .map(|b| last_offset(b) + 1)
                .filter(|&end| end <= cut)
                .max();
            self.truncated(x, kept_end.unwrap_or(cut));
        }
    }

    /// A truncation to `x` left the log ending at `end`; it may have pulled the log start
    /// down with it (when the batch holding `x` straddled the log start).
    fn truncated(&mut self, x: i64, end: i64) {
        self.batches.retain(|_, b| last_offset(b) < x);
        self.flushed = self.flushed.min(end);
        self.log_start = self.log_start.min(end);
    }
}

#[derive(Debug, Default)]
struct Stats {
    crashes: usize,
    crashes_mid_operation: usize,
    crashes_in_recovery: usize,
    clean_closes: usize,
    injected_failures: usize,
    acked_batches_checked: usize,
    truncations: usize,
    bytes_cut: u64,
}

/// The batches the log holds, read one after another from the log start.
fn read_all(log: &Log) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let leo = log.log_end_offset();
    while offset < leo {
        let info = log
            .read(offset, 1 << 20, i64::MAX, true)
            .map_err(|e| format!("reading at {offset}: {e}"))?;
        if info.bytes.is_empty() {
            // Nothing at or after `offset`: offsets lost with an unflushed tail in an earlier
            // crash, below a log end that had become durable. (Every acknowledged batch is
            // checked on its own.)
            break;
        }
        for item in batch::iter(&info.bytes) {
            let (h, range) = item.map_err(|e| format!("bad batch read back at {offset}: {e}"))?;
            if h.last_offset() >= offset {
                out.push(info.bytes[range].to_vec());
                offset = h.last_offset() + 1;
            }
        }
    }
    Ok(out)
}

/// Checks a freshly opened log against what was acknowledged before the crash.
fn check(
    log: &Log,
    m: &Model,
    strays: &[(PathBuf, Vec<u8>)],
    stats: &mut Stats,
) -> Result<(), String> {
    let (start, leo) = (log.log_start_offset(), log.log_end_offset());
    if leo < m.flushed {
        return Err(format!(
            "log end offset {leo} fell below the acknowledged flushed offset {}",
            m.flushed
        ));
    }
    if start < m.log_start {
        return Err(format!(
            "log start offset {start} fell below the acknowledged log start {}",
            m.log_start
        ));
    }
    for (&base, bytes) in m.batches.range(..m.flushed) {
        if last_offset(bytes) < start {
            continue;
        }
        let got = log
            .read(base.max(start), 1, i64::MAX, true)
            .map_err(|e| format!("acknowledged batch at {base}: {e}"))?
            .bytes;
        let first = batch::iter(&got).next();
        match first {
            Some(Ok((_, range))) if got[range.clone()] == bytes[..] => {}
            _ => {
                return Err(format!(
                    "acknowledged batch at offset {base} is missing or changed after recovery \
                     (log {start}..{leo}, flushed {})",
                    m.flushed
                ))
            }
        }
        stats.acked_batches_checked += 1;
    }
    let present = read_all(log)?;
    let mut prev_last = start - 1;
    let mut epochs: Vec<(i32, i64)> = Vec::new();
    for b in &present {
        let h = BatchHeader::parse(b).map_err(|e| e.to_string())?;
        if h.base_offset <= prev_last && prev_last >= start {
            return Err(format!(
                "batch at {} does not follow offset {prev_last}",
                h.base_offset
            ));
        }
        prev_last = h.last_offset();
        if !m.history.get(&h.base_offset).is_some_and(|v| v.contains(b)) {
            return Err(format!(
                "recovered batch at offset {} was never appended there",
                h.base_offset
            ));
        }
        if epochs
            .last()
            .is_none_or(|&(e, _)| h.partition_leader_epoch > e)
        {
            epochs.push((h.partition_leader_epoch, h.base_offset.max(start)));
        }
    }
    if let Some(&(last_epoch, _)) = epochs.last() {
        if log.latest_epoch() != Some(last_epoch) {
            return Err(format!(
                "latest epoch {:?}, batches say {last_epoch}",
                log.latest_epoch()
            ));
        }
        for (i, &(e, _)) in epochs.iter().enumerate() {
            let end = epochs.get(i + 1).map_or(leo, |&(_, s)| s);
            if log.end_offset_for_epoch(e) != Some((e, end)) {
                return Err(format!(
                    "epoch cache says {:?} for epoch {e}; batches say it ends at {end} ({epochs:?})",
                    log.end_offset_for_epoch(e)
                ));
            }
        }
    }
    for (path, data) in strays {
        if std::fs::read(path).ok().as_ref() != Some(data) {
            return Err(format!(
                "file {} that is not the log's was changed or removed",
                path.display()
            ));
        }
    }
    stats.bytes_cut += log.recovery_summary().bytes_truncated;
    Ok(())
}

/// What an operation acknowledged, to apply to the model only if the power stayed on.
enum Ack {
    None,
    Flushed(i64),
    LogStart(i64),
    Truncated(i64, i64),
}

/// Runs one random scenario; returns the first violation found.
fn run_scenario(seed: u64, steps: usize, setup: &dyn Fn(&SimFs)) -> Result<Stats, String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    std::fs::create_dir_all(&dir).unwrap();
    let strays: Vec<(PathBuf, Vec<u8>)> = vec![
        (
            dir.join("-0000000000000000001.log"),
            b"stray bytes".to_vec(),
        ),
        (dir.join("notes.txt"), b"not the log's".to_vec()),
    ];
    for (p, d) in &strays {
        std::fs::write(p, d).unwrap();
    }
    let sim = SimFs::new(seed);
    setup(&sim);
    let fs = Fs::simulated(sim.clone());
    let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(7));
    let mut m = Model::default();
    let mut stats = Stats::default();
    let open = |fs: &Fs| {
        Log::open_with(fs.clone(), dir.clone(), config()).map_err(|e| format!("open: {e}"))
    };
    let mut log = Some(open(&fs)?);
    let arm = |rng: &mut Rng| match rng.below(8) {
        0..=2 => sim.power_off_in(1 + rng.below(60)),
        3 => sim.fail_sync_in(1 + rng.below(40)),
        _ => {}
    };
    arm(&mut rng);
    let mut now = 1_000_000i64;
    for _ in 0..steps {
        let l = log.as_ref().unwrap();
        now += 10;
        let r = rng.below(100);
        let mut reopen = None; // Some(crash?)
                               // A truncation the power interrupted may have removed anything at or above its target.
        let mut truncating = None;
        let result: Result<Ack, LogError> = match r {
            0..=54 => {
                let n = 1 + rng.below(3) as usize;
                let ts: Vec<i64> = (0..n).map(|i| now + i as i64).collect();
                let codec = Codec::ALL[rng.below(5) as usize];
                let mut b = build_batch_with_value(0, &ts, codec, 20 + rng.below(200) as usize);
                l.append(&mut b, m.epoch, now).map(|info| {
                    m.history
                        .entry(info.base_offset)
                        .or_default()
                        .push(b.clone());
                    m.batches.insert(info.base_offset, b);
                    Ack::None
                })
            }
            55..=66 => {
                let leo = l.log_end_offset();
                l.flush_until(leo).map(|()| Ack::Flushed(leo))
            }
            67..=69 => {
                let leo = l.log_end_offset();
                l.flush().map(|()| Ack::Flushed(leo))
            }
            70..=72 => l
                .flush_if_due(now)
                .map(|()| Ack::Flushed(l.flushed_offset())),
            73..=75 => {
                let x = rng.range(l.log_start_offset(), m.flushed.max(l.log_start_offset()));
                l.delete_records_before(x).map(Ack::LogStart)
            }
            76..=77 => {
                let mut cfg = l.config();
                cfg.retention_bytes = (l.size_bytes() / 2) as i64;
                l.update_config(cfg.clone());
                let r = l.apply_retention(now);
                cfg.retention_bytes = -1;
                l.update_config(cfg);
                r.map(|_| Ack::LogStart(l.log_start_offset()))
            }
            78..=79 => {
                let x = rng.range(l.log_start_offset(), l.log_end_offset());
                stats.truncations += 1;
                truncating = Some(x);
                l.truncate_to(x)
                    .map(|()| Ack::Truncated(x, l.log_end_offset()))
            }
            80..=82 => {
                m.epoch += 1;
                Ok(Ack::None)
            }
            83..=86 => {
                let leo = l.log_end_offset();
                let r = l.close().map(|()| Ack::Flushed(leo));
                if r.is_ok() {
                    stats.clean_closes += 1;
                }
                reopen = Some(rng.below(2) == 0);
                r
            }
            _ => {
                reopen = Some(true);
                Ok(Ack::None)
            }
        };
        if std::env::var_os("FJORD_TRACE").is_some() {
            let segs: Vec<(i64, i64, u64)> = l
                .inner
                .lock()
                .segments
                .iter()
                .map(|s| (s.base_offset, s.next_offset, s.size))
                .collect();
            eprintln!(
                "op {r} -> {:?} off={} leo={} start={} segs={segs:?}",
                result.as_ref().map(|_| ()),
                sim.is_off(),
                l.log_end_offset(),
                l.log_start_offset()
            );
        }
        if sim.is_off() {
            // The power went during this operation: whatever it returned was never seen.
            stats.crashes_mid_operation += 1;
            if let Some(x) = truncating {
                m.may_have_truncated(x);
            }
            reopen = Some(true);
        } else {
            match result {
                Ok(Ack::None) => {}
                Ok(Ack::Flushed(f)) => m.flushed = m.flushed.max(f),
                Ok(Ack::LogStart(s)) => {
                    m.log_start = m.log_start.max(s);
                }
                Ok(Ack::Truncated(x, leo)) => m.truncated(x, leo),
                Err(e) => {
                    if sim.failures() == 0 || !e.is_offline() || !l.is_offline() {
                        return Err(format!("unexpected error: {e}"));
                    }
                    stats.injected_failures += 1;
                    // A truncation that failed may have removed what it was asked to.
                    if let Some(x) = truncating {
                        m.may_have_truncated(x);
                    }
                    // Offline: everything refuses, and nothing is fsynced again (no retry).
                    let syncs = sim.syncs();
                    let mut b = build_batch_with_value(0, &[now], Codec::None, 10);
                    assert!(l.append(&mut b, m.epoch, now).unwrap_err().is_offline());
                    assert!(l
                        .flush_until(l.log_end_offset() + 1)
                        .unwrap_err()
                        .is_offline());
                    assert!(l.flush().unwrap_err().is_offline());
                    assert!(l.truncate_to(0).unwrap_err().is_offline());
                    assert!(l.close().is_err());
                    assert_eq!(sim.syncs(), syncs, "an offline log fsynced again");
                    reopen = Some(true);
                }
            }
        }
        let Some(crash) = reopen else { continue };
        drop(log.take());
        if crash {
            sim.crash();
            stats.crashes += 1;
        }
        // Reopen; the power may go off during recovery too.
        let l = loop {
            if crash && rng.below(4) == 0 {
                sim.power_off_in(1 + rng.below(12));
            }
            let failures = sim.failures();
            let l = match open(&fs) {
                // The disk failed during recovery: the open fails closed. Try again later.
                Err(_) if sim.failures() > failures => {
                    stats.injected_failures += 1;
                    sim.crash();
                    continue;
                }
                other => other?,
            };
            if !sim.is_off() {
                break l;
            }
            drop(l);
            sim.crash();
            stats.crashes_in_recovery += 1;
        };
        if std::env::var_os("FJORD_TRACE").is_some() {
            let segs: Vec<(i64, i64, u64)> = l
                .inner
                .lock()
                .segments
                .iter()
                .map(|s| (s.base_offset, s.next_offset, s.size))
                .collect();
            eprintln!(
                "reopened crash={crash} leo={} segs={segs:?} summary={:?}",
                l.log_end_offset(),
                l.recovery_summary()
            );
        }
        check(&l, &m, &strays, &mut stats)?;
        let mut b = build_batch_with_value(0, &[now], Codec::None, 10);
        let probe = l.log_end_offset();
        // What recovery kept is durable now; the model continues from what is there.
        m.batches = read_all(&l)?
            .into_iter()
            .map(|b| (BatchHeader::parse(&b).unwrap().base_offset, b))
            .collect();
        m.flushed = l.log_end_offset();
        m.log_start = l.log_start_offset();
        m.epoch = m.epoch.max(l.latest_epoch().unwrap_or(0));
        let info = l
            .append(&mut b, m.epoch, now)
            .map_err(|e| format!("append after reopen: {e}"))?;
        if info.base_offset != probe {
            return Err(format!(
                "append after reopen landed at {}, log end was {probe}",
                info.base_offset
            ));
        }
        m.history
            .entry(info.base_offset)
            .or_default()
            .push(b.clone());
        m.batches.insert(info.base_offset, b);
        log = Some(l);
        arm(&mut rng);
    }
    Ok(stats)
}

/// Scenarios per test; `FJORD_CRASH_SEEDS` raises it for a longer soak.
fn seeds() -> u64 {
    std::env::var("FJORD_CRASH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}
const STEPS: usize = 250;

#[test]
fn acknowledged_data_survives_simulated_power_loss() {
    let mut total = Stats::default();
    for seed in 0..seeds() {
        let s = run_scenario(seed, STEPS, &|_| {}).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total.crashes += s.crashes;
        total.crashes_mid_operation += s.crashes_mid_operation;
        total.crashes_in_recovery += s.crashes_in_recovery;
        total.clean_closes += s.clean_closes;
        total.injected_failures += s.injected_failures;
        total.acked_batches_checked += s.acked_batches_checked;
        total.truncations += s.truncations;
        total.bytes_cut += s.bytes_cut;
    }
    eprintln!("{total:?}");
    // The scenarios really exercise what they claim to.
    assert!(total.crashes > 500, "{total:?}");
    assert!(total.crashes_mid_operation > 50, "{total:?}");
    assert!(total.crashes_in_recovery > 20, "{total:?}");
    assert!(total.injected_failures > 10, "{total:?}");
    assert!(total.clean_closes > 50, "{total:?}");
    assert!(total.acked_batches_checked > 10_000, "{total:?}");
    assert!(total.bytes_cut > 0, "{total:?}");
}

/// The checker is not toothless: with an fsync left out (the sim reports success and makes
/// nothing durable, as if the call were missing), some scenario must fail.
fn assert_caught(what: &str, rule: impl Fn(SimSync, &Path) -> bool + Send + Sync + Copy + 'static) {
    let caught = (0..seeds())
        .find_map(|seed| run_scenario(seed, STEPS, &move |sim: &SimFs| sim.skip_syncs(rule)).err());
    let why = caught.unwrap_or_else(|| panic!("no scenario noticed a missing {what}"));
    eprintln!("missing {what} caught: {why}");
}

#[test]
fn missing_segment_fsync_is_caught() {
    assert_caught("segment fsync", |k, p| {
        k == SimSync::Data && p.extension().is_some_and(|e| e == "log")
    });
}

#[test]
fn missing_directory_fsync_is_caught() {
    assert_caught("directory fsync", |k, _| k == SimSync::Dir);
}

#[test]
fn missing_checkpoint_temp_file_fsync_is_caught() {
    assert_caught("checkpoint temp-file fsync", |k, p| {
        k == SimSync::Data && p.extension().is_some_and(|e| e == "tmp")
    });
}

fn sim_log(dir: &Path, seed: u64) -> (Arc<SimFs>, Log) {
    let sim = SimFs::new(seed);
    let log = Log::open_with(Fs::simulated(sim.clone()), dir.to_path_buf(), config()).unwrap();
    (sim, log)
}

fn append_n(log: &Log, n: usize) {
    for i in 0..n {
        let mut b = build_batch_with_value(0, &[i as i64], Codec::None, 100);
        log.append(&mut b, 0, 0).unwrap();
    }
}

#[test]
fn failed_fsync_takes_the_log_offline_and_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, log) = sim_log(dir.path(), 1);
    append_n(&log, 5);
    log.flush_until(log.log_end_offset()).unwrap();
    let acked = log.log_end_offset();
    append_n(&log, 5);
    sim.fail_sync_in(1);
    let err = log.flush_until(log.log_end_offset()).unwrap_err();
    assert!(err.is_offline(), "{err}");
    assert_eq!(err.kafka_code(), 56);
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(log.is_offline());
    assert_eq!(log.flushed_offset(), acked);
    let syncs = sim.syncs();
    // Everything that writes or promises durability refuses from now on, without an fsync
    // (the next one would succeed, and prove nothing: the lost pages are gone).
    let mut b = build_batch_with_value(0, &[1], Codec::None, 10);
    let err = log.append(&mut b, 0, 0).unwrap_err();
    assert!(matches!(err, LogError::Offline { .. }) && err.kafka_code() == 56);
    assert!(log.append_as_follower(&b).unwrap_err().is_offline());
    assert!(log
        .flush_until(log.log_end_offset())
        .unwrap_err()
        .is_offline());
    assert!(log.flush().unwrap_err().is_offline());
    log.flush_if_due(i64::MAX).unwrap();
    assert!(log.delete_records_before(1).unwrap_err().is_offline());
    assert!(log.apply_retention(i64::MAX).unwrap_err().is_offline());
    assert!(log.truncate_to(0).unwrap_err().is_offline());
    assert!(log.close().unwrap_err().is_offline());
    assert_eq!(sim.syncs(), syncs);
    // Reads still work.
    assert!(!log.read(0, 100, i64::MAX, true).unwrap().bytes.is_empty());
    drop(log);
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    sim.crash();
    let log = Log::open_with(Fs::simulated(sim), dir.path().to_path_buf(), config()).unwrap();
    assert!(log.log_end_offset() >= acked);
    assert!(log.recovery_summary().recovery_ran());
}

#[test]
fn failed_checkpoint_write_takes_the_log_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, log) = sim_log(dir.path(), 2);
    append_n(&log, 20);
    log.flush().unwrap();
    sim.fail_sync_in(1);
    let err = log.delete_records_before(3).unwrap_err();
    assert!(err.is_offline(), "{err}");
    assert!(log.is_offline());
    let mut b = build_batch_with_value(0, &[1], Codec::None, 10);
    assert!(log.append(&mut b, 0, 0).unwrap_err().is_offline());
}

/// The recovery point follows the flushes (checkpointed once per segment, atomically), so a
/// crash rescans only the segment that was being written.
#[test]
fn recovery_point_advances_with_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, log) = sim_log(dir.path(), 3);
    append_n(&log, 60);
    let segments = log.inner.lock().segments.len();
    assert!(segments > 4, "{segments}");
    log.flush_until(log.log_end_offset()).unwrap();
    let active_base = log.inner.lock().segments.last().unwrap().base_offset;
    assert_eq!(
        checkpoint::read_offset(&Fs::real(), dir.path(), RECOVERY_POINT_FILE),
        Some(active_base)
    );
    // acks=1 traffic, never flushed by a producer: the scheduler's tick syncs rolled segments.
    append_n(&log, 40);
    let active_base = log.inner.lock().segments.last().unwrap().base_offset;
    log.flush_if_due(0).unwrap();
    assert_eq!(
        checkpoint::read_offset(&Fs::real(), dir.path(), RECOVERY_POINT_FILE),
        Some(active_base)
    );
    let leo = log.log_end_offset();
    drop(log);
    sim.crash();
    let log = Log::open_with(Fs::simulated(sim), dir.path().to_path_buf(), config()).unwrap();
    let s = log.recovery_summary().clone();
    assert!(s.recovery_ran());
    assert_eq!(s.recovery_point, Some(active_base));
    assert_eq!(s.segments_scanned, 1, "{s:?}");
    assert!(log.log_end_offset() >= active_base && log.log_end_offset() <= leo);
}

#[test]
fn clean_close_skips_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, log) = sim_log(dir.path(), 4);
    append_n(&log, 30);
    log.close().unwrap();
    let mut b = build_batch_with_value(0, &[1], Codec::None, 10);
    assert!(log.append(&mut b, 0, 0).unwrap_err().is_offline());
    drop(log);
    sim.crash();
    let log = Log::open_with(Fs::simulated(sim), dir.path().to_path_buf(), config()).unwrap();
    let s = log.recovery_summary();
    assert!(!s.recovery_ran() && s.segments_scanned == 0, "{s:?}");
    assert_eq!(log.log_end_offset(), 30);
}

/// No fsync runs while the append lock (or the group-commit lock) is held: a hook on every
/// simulated fsync tries to take them.
#[test]
fn no_fsync_under_the_append_lock() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFs::new(5);
    let slot: Arc<Mutex<Weak<Log>>> = Arc::new(Mutex::new(Weak::new()));
    let violations = Arc::new(AtomicUsize::new(0));
    {
        let slot = Arc::clone(&slot);
        let violations = Arc::clone(&violations);
        sim.on_sync(move |_, path| {
            if let Some(log) = slot.lock().upgrade() {
                if log.inner.try_lock().is_none() || log.flush.try_lock().is_none() {
                    eprintln!("fsync of {} under a log lock", path.display());
                    violations.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    let log = Arc::new(
        Log::open_with(
            Fs::simulated(sim.clone()),
            dir.path().to_path_buf(),
            config(),
        )
        .unwrap(),
    );
    *slot.lock() = Arc::downgrade(&log);
    let before = sim.syncs();
    for round in 0..10i32 {
        for i in 0..20 {
            let mut b = build_batch_with_value(0, &[i], Codec::None, 80);
            log.append(&mut b, round, i).unwrap();
        }
        log.flush_until(log.log_end_offset()).unwrap();
        log.flush_if_due(i64::MAX).unwrap();
        log.delete_records_before(log.log_start_offset() + 1)
            .unwrap();
        let mut cfg = log.config();
        cfg.retention_bytes = 3000;
        log.update_config(cfg);
        log.apply_retention(0).unwrap();
        log.truncate_to(log.log_end_offset() - 2).unwrap();
        log.flush().unwrap();
    }
    log.close().unwrap();
    assert!(sim.syncs() - before > 50);
    assert_eq!(violations.load(Ordering::SeqCst), 0);
}

/// File descriptors this process holds on files inside `dir`.
fn open_fds_in(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// Sealed segments hold no file descriptors unless recently read (a bounded cache).
#[test]
fn sealed_segments_do_not_hold_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many-0");
    let log = Log::open(&path, config()).unwrap();
    append_n(&log, 600);
    let segments = log.inner.lock().segments.len();
    assert!(segments > 60, "{segments}");
    // Rolled but unsynced segments keep their handles until a flush syncs them.
    log.flush().unwrap();
    let bound = 3 + READ_HANDLES;
    assert!(
        open_fds_in(&path) <= 3,
        "{} fds after flush",
        open_fds_in(&path)
    );
    // Read everything, twice, from the start: at most READ_HANDLES sealed files stay open.
    for _ in 0..2 {
        let mut offset = 0;
        while offset < log.log_end_offset() {
            let info = log.read(offset, 4096, i64::MAX, true).unwrap();
            let last = batch::iter(&info.bytes).last().unwrap().unwrap().0;
            offset = last.last_offset() + 1;
            assert!(
                open_fds_in(&path) <= bound,
                "{} fds open",
                open_fds_in(&path)
            );
        }
    }
    assert!(log.offset_for_timestamp(0).unwrap().is_some());
    assert!(open_fds_in(&path) <= bound);
    drop(log);
    assert_eq!(open_fds_in(&path), 0);
    // Reopening a log of many segments does not open them all either.
    let log = Log::open(&path, config()).unwrap();
    assert!(
        open_fds_in(&path) <= 3,
        "{} fds after open",
        open_fds_in(&path)
    );
    assert_eq!(log.log_end_offset(), 600);
}

#[test]
#[ignore]
fn trace_one_seed() {
    let seed: u64 = std::env::var("FJORD_SEED").unwrap().parse().unwrap();
    run_scenario(seed, STEPS, &|_| {}).unwrap();
}

/// Creating a log costs one fsync (its directory, which makes its first segment's files
/// durable); creating many partitions at once must not cost several fsyncs each. The
/// created log survives a crash right after, and a first append is as durable as ever.
#[test]
fn creating_a_log_costs_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFs::new(6);
    let log = Log::open_with(
        Fs::simulated(sim.clone()),
        dir.path().to_path_buf(),
        config(),
    )
    .unwrap();
    assert_eq!(sim.syncs(), 1);
    assert!(log.recovery_summary().created);
    assert!(!log.recovery_summary().recovery_ran());
    drop(log);
    sim.crash();
    let log = Log::open_with(
        Fs::simulated(sim.clone()),
        dir.path().to_path_buf(),
        config(),
    )
    .unwrap();
    assert_eq!(log.log_end_offset(), 0);
    append_n(&log, 3);
    log.flush_until(log.log_end_offset()).unwrap();
    drop(log);
    sim.crash();
    let log = Log::open_with(Fs::simulated(sim), dir.path().to_path_buf(), config()).unwrap();
    assert_eq!(log.log_end_offset(), 3);
}
