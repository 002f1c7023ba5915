//! Compressed batches that inflate to hundreds of MiB ("zip bombs") must cost the log a small,
//! fixed amount of memory: refused at append, and readable record by record when one is
//! already stored (as a follower copies it, or as older data holds it).
//!
//! A counting global allocator measures the peak of live heap bytes around each operation.
//! This binary holds a single test so that nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use fjord_log::{Log, LogConfig};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A status line of this process in kB (`VmRSS`, `VmHWM`).
fn status_kb(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `f` and returns its result with the most Rust heap it held at once beyond what was
/// live before, and how far the process's peak resident set rose above its size before (this
/// also counts what the C codecs allocate; `None` where the kernel cannot reset the peak).
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize, Option<usize>) {
    // Writing 5 to clear_refs resets VmHWM to the current resident set.
    let rss_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kb("VmRSS:");
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(base);
    let rss = match (rss_reset, rss_before, status_kb("VmHWM:")) {
        (true, Some(before), Some(hwm)) => Some(hwm.saturating_sub(before) * 1024),
        _ => None,
    };
    eprintln!("peak heap during operation: {peak} bytes; peak RSS growth: {rss:?} bytes");
    (out, peak, rss)
}

/// Both measures of [`peak_during`] stay under the bound.
fn assert_bounded(what: &str, heap: usize, rss: Option<usize>) {
    assert!(heap < MEMORY_BOUND, "{what} held {heap} heap bytes");
    if let Some(rss) = rss {
        assert!(
            rss < RSS_BOUND,
            "{what} grew the resident set by {rss} bytes"
        );
    }
}

const MIB: usize = 1 << 20;
/// The inflated size of each bomb's single record value.
const BOMB_VALUE: usize = 256 * MIB;
/// What any operation on a bomb may hold at once; the payload is 32 times more.
const MEMORY_BOUND: usize = 8 * MIB;
/// The resident set also holds codec state allocated outside Rust (zstd keeps a window of up
/// to 16 MiB) and allocator slack.
const RSS_BOUND: usize = 48 * MIB;

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[derive(Clone, Copy, Debug)]
enum Codec {
    Gzip,
    Zstd,
}

/// Compresses `data` as one gzip member or zstd frame.
fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

/// A batch of one record whose value is `BOMB_VALUE` zero bytes. Gzip members and zstd frames
/// may be concatenated (Kafka's readers accept both), so one compressed MiB of zeros repeated
/// makes the payload without ever holding it.
fn bomb(codec: Codec, timestamp: i64) -> Vec<u8> {
    let mut body_head = vec![0u8]; // attributes
    put_varlong(&mut body_head, 0); // timestamp delta
    put_varlong(&mut body_head, 0); // offset delta
    put_varlong(&mut body_head, -1); // null key
    put_varlong(&mut body_head, BOMB_VALUE as i64);
    let body_len = body_head.len() + BOMB_VALUE + 1; // + header count 0
    let mut head = Vec::new();
    put_varlong(&mut head, body_len as i64);
    head.extend_from_slice(&body_head);
    let mut payload = compress(codec, &head);
    let zeros = compress(codec, &vec![0u8; MIB]);
    for _ in 0..BOMB_VALUE / MIB {
        payload.extend_from_slice(&zeros);
    }
    payload.extend_from_slice(&compress(codec, &[0]));
    let codec_id = match codec {
        Codec::Gzip => 1,
        Codec::Zstd => 4,
    };
    assemble(&payload, codec_id, 1, timestamp)
}

/// A v2 batch (base offset 0) around a compressed payload, with a valid CRC.
fn assemble(payload: &[u8], codec_id: i16, records_count: i32, timestamp: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(61 + payload.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&codec_id.to_be_bytes());
    b.extend_from_slice(&(records_count - 1).to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&records_count.to_be_bytes());
    b.extend_from_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch declaring two billion records over a few thousand small ones.
fn count_bomb(codec: Codec) -> Vec<u8> {
    let mut plain = Vec::new();
    for i in 0..5000i64 {
        let mut body = vec![0u8];
        put_varlong(&mut body, 0);
        put_varlong(&mut body, i);
        put_varlong(&mut body, -1);
        put_varlong(&mut body, 4);
        body.extend_from_slice(b"tiny");
        put_varlong(&mut body, 0);
        put_varlong(&mut plain, body.len() as i64);
        plain.extend_from_slice(&body);
    }
    let codec_id = match codec {
        Codec::Gzip => 1,
        Codec::Zstd => 4,
    };
    assemble(&compress(codec, &plain), codec_id, 2_000_000_000, 1)
}

#[test]
fn bombs_cost_bounded_memory_at_append_and_at_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("t-0"), LogConfig::default()).unwrap();
    let now = 1_700_000_000_000;
    for codec in [Codec::Gzip, Codec::Zstd] {
        let template = bomb(codec, now);
        assert!(
            template.len() < 1 << 20,
            "{codec:?} bomb is {} bytes, below max.message.bytes",
            template.len()
        );

        let mut batch = template.clone();
        let (result, heap, rss) = peak_during(|| log.append(&mut batch, 0, now));
        let err = match result {
            Ok(info) => panic!("{codec:?} bomb accepted at offset {}", info.base_offset),
            Err(e) => e,
        };
        assert_eq!(err.kafka_code(), 10, "{codec:?}: {err}");
        assert_bounded(&format!("{codec:?} append"), heap, rss);

        let mut batch = count_bomb(codec);
        let (result, heap, rss) = peak_during(|| log.append(&mut batch, 0, now));
        let err = match result {
            Ok(_) => panic!("{codec:?} batch declaring two billion records accepted"),
            Err(e) => e,
        };
        assert_eq!(err.kafka_code(), 87, "{codec:?}: {err}");
        assert_bounded(&format!("{codec:?} count bomb append"), heap, rss);
    }

    // Stored bombs (copied as a follower, which does not look inside batches) are read by
    // streaming: the timestamp lookups of ListOffsets find the record without inflating it
    // into memory.
    for (i, codec) in [Codec::Zstd, Codec::Gzip].into_iter().enumerate() {
        let mut batch = bomb(codec, now + i as i64);
        batch[..8].copy_from_slice(&(i as i64).to_be_bytes());
        log.append_as_follower(&batch).unwrap();
    }
    let (found, heap, rss) = peak_during(|| log.offset_for_timestamp(now));
    assert_eq!(found.unwrap(), Some((0, now)));
    assert_bounded("timestamp lookup (zstd)", heap, rss);
    let (found, heap, rss) = peak_during(|| log.max_timestamp());
    assert_eq!(found.unwrap(), Some((now + 1, 1)));
    assert_bounded("max timestamp lookup (gzip)", heap, rss);
}
