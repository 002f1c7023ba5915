//! Fjord log micro-benchmark: append throughput with and without fsync, group commit under
//! many concurrent appenders, and sequential reads. Prints plain numbers.
//!
//! Usage: `log_bench [DIR]` (default: a fresh directory under the system temp dir).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_log::{Log, LogConfig};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const MIB: f64 = 1024.0 * 1024.0;

/// One uncompressed batch of roughly `size` bytes, made of 1 KiB records.
fn make_batch(size: usize) -> Vec<u8> {
    make_batch_with(size, Compression::None)
}

/// Like [`make_batch`], compressed with `compression`; values are text-like so that the
/// codecs have something to do.
fn make_batch_with(size: usize, compression: Compression) -> Vec<u8> {
    let count = (size / 1024).max(1);
    let value_len = size / count - 40;
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(
                (0..value_len)
                    .map(|j| b"fjord record payload "[(i + j) % 21])
                    .collect::<Vec<u8>>(),
            )),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    if let Err(e) = RecordBatchEncoder::encode(&mut buf, &records, &options) {
        eprintln!("encoding failed: {e}");
        std::process::exit(1);
    }
    buf.to_vec()
}

fn fresh(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn open(dir: &Path) -> Log {
    match Log::open(dir, LogConfig::default()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("open {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
}

fn check<T>(r: Result<T, fjord_log::LogError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("log error: {e}");
            std::process::exit(1);
        }
    }
}

/// Appends batches of `size` bytes for `total` bytes; optionally fsyncs after each append.
fn bench_append(root: &Path, size: usize, total: usize, fsync: bool) -> f64 {
    let dir = fresh(root, &format!("append-{size}-{fsync}"));
    let log = open(&dir);
    let template = make_batch(size);
    let n = (total / template.len()).max(1);
    let mut buf = template.clone();
    let start = Instant::now();
    for _ in 0..n {
        buf.copy_from_slice(&template);
        let info = check(log.append(&mut buf, 0, 0));
        if fsync {
            check(log.flush_until(info.last_offset + 1));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    (n * template.len()) as f64 / MIB / secs
}

/// `threads` appenders each doing append + flush_until (acks=all) for `duration`.
fn bench_group_commit(root: &Path, threads: usize, size: usize, duration: Duration) -> (f64, f64) {
    let dir = fresh(root, "group-commit");
    let log = Arc::new(open(&dir));
    let template = make_batch(size);
    let appends = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let log = Arc::clone(&log);
            let template = template.clone();
            let appends = Arc::clone(&appends);
            std::thread::spawn(move || {
                let mut buf = template.clone();
                while start.elapsed() < duration {
                    buf.copy_from_slice(&template);
                    let info = check(log.append(&mut buf, 0, 0));
                    check(log.flush_until(info.last_offset + 1));
                    appends.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = appends.load(Ordering::Relaxed) as f64;
    let _ = std::fs::remove_dir_all(&dir);
    (n / secs, n * template.len() as f64 / MIB / secs)
}

/// Writes `total` bytes, drops the page cache hint-free, then reads it back sequentially.
fn bench_read(root: &Path, total: usize) -> f64 {
    let dir = fresh(root, "read");
    let log = open(&dir);
    let template = make_batch(16 * 1024);
    let mut buf = template.clone();
    for _ in 0..(total / template.len()).max(1) {
        buf.copy_from_slice(&template);
        check(log.append(&mut buf, 0, 0));
    }
    let end = log.log_end_offset();
    let start = Instant::now();
    let mut offset = 0;
    let mut bytes = 0usize;
    while offset < end {
        let info = check(log.read(offset, 1 << 20, i64::MAX, true));
        let mut last = offset;
        for item in fjord_log::batch::iter(&info.bytes) {
            last = check(item).0.last_offset();
        }
        bytes += info.bytes.len();
        offset = last + 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    bytes as f64 / MIB / secs
}

/// Produce-time record validation alone (the part of an append that reads inside batches):
/// uncompressed MB/s and records/s over 16 KiB batches of 1 KiB records.
fn bench_validate(compression: Compression) -> (f64, f64) {
    let batch = make_batch_with(16 * 1024, compression);
    let header = check(fjord_log::batch::validate(&batch));
    let records = header.records_count as f64;
    let rounds = 20_000;
    let started = Instant::now();
    for _ in 0..rounds {
        check(fjord_log::records::validate_records(
            &batch,
            &header,
            1 << 20,
        ));
    }
    let secs = started.elapsed().as_secs_f64();
    (
        16.0 * 1024.0 * rounds as f64 / secs / MIB,
        records * rounds as f64 / secs,
    )
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("fjord-log-bench-{}", std::process::id()))
        });
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("creating {}: {e}", root.display());
        std::process::exit(1);
    }
    let gib = 1024 * 1024 * 1024;
    println!("fjord-log bench in {}", root.display());
    for size in [16 * 1024, 1024 * 1024] {
        let mbps = bench_append(&root, size, gib, false);
        println!(
            "append {:>5} KiB batches, no fsync:        {mbps:8.1} MB/s",
            size / 1024
        );
    }
    for (size, total) in [(16 * 1024, 32 << 20), (1024 * 1024, 256 << 20)] {
        let mbps = bench_append(&root, size, total, true);
        println!(
            "append {:>5} KiB batches, fsync per append: {mbps:8.1} MB/s",
            size / 1024
        );
    }
    let (rate, mbps) = bench_group_commit(&root, 64, 16 * 1024, Duration::from_secs(5));
    println!(
        "group commit, 64 threads, 16 KiB append+flush_until: {rate:8.0} appends/s, {mbps:8.1} MB/s"
    );
    let mbps = bench_read(&root, gib);
    println!("sequential read (1 MiB fetches, page cache warm): {mbps:8.1} MB/s");
    for (name, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let (mbps, rate) = bench_validate(compression);
        println!(
            "validate records, 16 KiB batches, {name:>6}: {mbps:8.1} MB/s, {rate:10.0} records/s"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
