//! The log cleaner: compacts the logs of topics whose `cleanup.policy` includes `compact`
//! (`__consumer_offsets` among them), off the request path, as Kafka's cleaner threads do.
//!
//! Each of `log.cleaner.threads` workers picks the dirtiest log that is due (its dirty
//! ratio at or above `min.cleanable.dirty.ratio`, or records past `max.compaction.lag.ms`,
//! or tombstones past `delete.retention.ms`), runs one pass over it on a blocking thread,
//! and picks again; with nothing due it waits `log.cleaner.backoff.ms`. Every replica
//! cleans its own copy, leader or follower. All passes together are held to
//! `log.cleaner.io.max.bytes.per.second`, so produce and fetch keep the disk.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_log::CleanOptions;
use parking_lot::Mutex;

use crate::replica::Partition;
use crate::state::{now_ms, BrokerState};

/// A log whose pass failed is left alone this many backoffs before it is tried again.
const FAILED_BACKOFFS: u32 = 10;

/// What the workers share.
struct Shared {
    /// Logs a worker is cleaning now: never two passes over one log.
    busy: Mutex<HashSet<(String, i32)>>,
    /// Logs whose last pass failed or was interrupted, and until when they rest.
    resting: Mutex<HashMap<(String, i32), Instant>>,
    throttle: Throttle,
}

/// Runs the cleaner until the task is aborted.
pub async fn run(state: Arc<BrokerState>) {
    let config = state.replicas.config();
    if !config.cleaner.enable {
        tracing::info!(
            "log cleaner disabled (log.cleaner.enable=false): compacted topics are not compacted"
        );
        return;
    }
    let shared = Arc::new(Shared {
        busy: Mutex::new(HashSet::new()),
        resting: Mutex::new(HashMap::new()),
        throttle: Throttle::new(config.cleaner.io_max_bytes_per_second),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.cleaner.threads {
        workers.spawn(worker(state.clone(), shared.clone()));
    }
    while workers.join_next().await.is_some() {}
}

async fn worker(state: Arc<BrokerState>, shared: Arc<Shared>) {
    loop {
        let (s, sh) = (state.clone(), shared.clone());
        let cleaned = tokio::task::spawn_blocking(move || clean_one(&s, &sh))
            .await
            .unwrap_or(false);
        if !cleaned {
            let backoff = state.replicas.config().cleaner.backoff_ms;
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        }
    }
}

/// Cleans the log most in need of it, if any is due. Returns whether it found one.
fn clean_one(state: &BrokerState, shared: &Shared) -> bool {
    let config = state.replicas.config();
    let cleaner = &config.cleaner;
    shared.throttle.set_rate(cleaner.io_max_bytes_per_second);
    let now = now_ms();
    let Some(p) = pick(state, shared, now) else {
        return false;
    };
    let key = (p.topic.clone(), p.index);
    let budget = cleaner.dedupe_buffer_bytes / cleaner.threads.max(1);
    let started = Instant::now();
    let result = p.log.clean(
        &CleanOptions {
            now_ms: now,
            map_budget: budget,
        },
        &mut |bytes| shared.throttle.take(bytes),
    );
    shared.busy.lock().remove(&key);
    let rest = || {
        let until = Instant::now() + Duration::from_millis(cleaner.backoff_ms) * FAILED_BACKOFFS;
        shared.resting.lock().insert(key.clone(), until);
    };
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(stats) => {
            // A pass that changed nothing would find the same work again at once.
            if stats.interrupted || !stats.progressed() {
                rest();
            }
            let moved = stats.bytes_read + stats.bytes_written;
            tracing::info!(
                topic = %p.topic,
                partition = p.index,
                segments_rewritten = stats.segments_rewritten,
                segments_removed = stats.segments_removed,
                bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_written,
                keys = stats.keys,
                first_dirty = stats.first_dirty,
                interrupted = stats.interrupted,
                seconds = format!("{secs:.3}"),
                mb_per_s = format!("{:.1}", moved as f64 / secs.max(1e-6) / 1e6),
                "log compacted"
            );
        }
        Err(e) => {
            rest();
            tracing::warn!(
                topic = %p.topic,
                partition = p.index,
                error = %e,
                "log compaction failed; the log is unchanged where the pass did not finish, and is tried again later"
            );
        }
    }
    true
}

/// The due log with the highest dirty ratio (overdue ones first), marked busy.
fn pick(state: &BrokerState, shared: &Shared, now: i64) -> Option<Arc<Partition>> {
    let mut busy = shared.busy.lock();
    let mut resting = shared.resting.lock();
    let instant = Instant::now();
    resting.retain(|_, until| *until > instant);
    let mut best: Option<((bool, f64), Arc<Partition>)> = None;
    for p in state.replicas.all() {
        let key = (p.topic.clone(), p.index);
        if busy.contains(&key) || resting.contains_key(&key) || p.log.is_offline() {
            continue;
        }
        let config = p.log.config();
        if !config.compact {
            continue;
        }
        let c = p.log.cleanable(now);
        let ratio = c.dirty_ratio();
        let due = c.overdue || c.dirty_bytes > 0 && ratio >= config.min_cleanable_dirty_ratio;
        let rank = (c.overdue, ratio);
        if due && best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, p));
        }
    }
    let (_, p) = best?;
    busy.insert((p.topic.clone(), p.index));
    Some(p)
}

/// Holds the bytes all passes read and write to a rate, sleeping the thread that would
/// exceed it. Up to one second of unused rate may be spent at once.
struct Throttle {
    /// Bytes per second, as `f64` bits: the dynamic config may change it.
    rate: AtomicU64,
    /// When the bytes let through so far are paid for.
    paid_until: Mutex<Instant>,
}

impl Throttle {
    fn new(rate: f64) -> Throttle {
        Throttle {
            rate: AtomicU64::new(rate.to_bits()),
            paid_until: Mutex::new(Instant::now()),
        }
    }

    fn set_rate(&self, rate: f64) {
        self.rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    fn take(&self, bytes: u64) {
        let rate = f64::from_bits(self.rate.load(Ordering::Relaxed));
        // Kafka's default (Double.MAX_VALUE) means unthrottled.
        if rate >= 1e15 {
            return;
        }
        let wait = {
            let mut paid = self.paid_until.lock();
            let now = Instant::now();
            let floor = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
            if *paid < floor {
                *paid = floor;
            }
            *paid += Duration::from_secs_f64(bytes as f64 / rate);
            paid.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_holds_the_rate_after_a_second_of_credit() {
        let t = Throttle::new(1_000_000.0);
        // Idle long enough: a second's worth goes through at once.
        *t.paid_until.lock() = Instant::now() - Duration::from_secs(5);
        let start = Instant::now();
        t.take(1_000_000);
        assert!(start.elapsed() < Duration::from_millis(200));
        // The next 200 kB wait their 0.2 s.
        let start = Instant::now();
        t.take(200_000);
        assert!(start.elapsed() >= Duration::from_millis(150));
        // Unthrottled by default.
        let free = Throttle::new(f64::MAX);
        let start = Instant::now();
        free.take(u64::MAX / 2);
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
