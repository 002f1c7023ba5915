//! Replication throttles, as Kafka's `leader.replication.throttled.rate` and
//! `follower.replication.throttled.rate` with the topic lists
//! `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas`:
//! a reassignment copying a partition to a new broker must not starve producers and
//! consumers of disk and network. Only replicas outside the ISR are throttled, so a
//! throttle can never hold back acks=all.
//!
//! [`RateWindow`] is the measurement, a pure value fed bytes and times: the rate over the
//! last `samples` windows of `window_ms`, as Kafka's replication quota measures it.

use std::collections::VecDeque;

/// Bytes per window over a sliding run of windows.
#[derive(Debug, Clone)]
pub struct RateWindow {
    window_ms: i64,
    samples: usize,
    /// (window start, bytes), oldest first.
    windows: VecDeque<(i64, u64)>,
}

impl RateWindow {
    pub fn new(window_ms: i64, samples: usize) -> RateWindow {
        RateWindow {
            window_ms: window_ms.max(1),
            samples: samples.max(1),
            windows: VecDeque::new(),
        }
    }

    fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms - self.window_ms * self.samples as i64;
        while self
            .windows
            .front()
            .is_some_and(|&(start, _)| start + self.window_ms <= horizon)
        {
            self.windows.pop_front();
        }
    }

    /// Counts `bytes` copied at `now_ms`.
    pub fn record(&mut self, bytes: u64, now_ms: i64) {
        self.expire(now_ms);
        match self.windows.back_mut() {
            Some((start, n)) if now_ms < *start + self.window_ms => *n += bytes,
            _ => {
                let start = now_ms - now_ms.rem_euclid(self.window_ms);
                self.windows.push_back((start, bytes));
            }
        }
    }

    /// The rate in bytes per second over the windows kept. The time measured is at least
    /// all but one of the windows, as Kafka's rate does, so that one burst at the start
    /// does not read as an enormous rate and stall copying for long.
    pub fn rate(&mut self, now_ms: i64) -> f64 {
        self.expire(now_ms);
        let Some(&(oldest, _)) = self.windows.front() else {
            return 0.0;
        };
        let total: u64 = self.windows.iter().map(|&(_, n)| n).sum();
        let floor = self.window_ms * (self.samples as i64 - 1);
        let elapsed = (now_ms - oldest).max(floor).max(1);
        total as f64 * 1000.0 / elapsed as f64
    }

    /// Whether copying more now would go over `limit` bytes per second.
    pub fn exceeded(&mut self, limit: u64, now_ms: i64) -> bool {
        self.rate(now_ms) > limit as f64
    }
}

/// Whether a topic's throttled-replica list (`""`, `"*"` or `partition:broker,...`)
/// names `partition` on `broker`.
pub fn listed(list: &str, partition: i32, broker: i32) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    list.split(',').any(|entry| {
        let mut parts = entry.trim().splitn(2, ':');
        let p = parts.next().and_then(|p| p.trim().parse::<i32>().ok());
        let b = parts.next().and_then(|b| b.trim().parse::<i32>().ok());
        p == Some(partition) && b == Some(broker)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_over_the_sliding_windows() {
        let mut w = RateWindow::new(1000, 11);
        assert_eq!(w.rate(0), 0.0);
        // 1 MB at once reads as 1 MB over ten seconds, not over a millisecond.
        w.record(1_000_000, 0);
        assert_eq!(w.rate(1), 100_000.0);
        assert!(w.exceeded(50_000, 1));
        assert!(!w.exceeded(200_000, 1));
        // Eleven seconds later the burst has left the window.
        assert!(!w.exceeded(1, 12_000));
        w.record(500, 12_000);
        w.record(500, 12_500);
        w.record(1000, 13_000);
        assert_eq!(w.rate(13_000), 200.0);
    }

    #[test]
    fn throttled_replica_lists_name_partitions_on_brokers() {
        assert!(listed("*", 3, 7));
        assert!(!listed("", 0, 1));
        assert!(listed("0:1, 1:2", 1, 2));
        assert!(!listed("0:1,1:2", 1, 1));
        assert!(!listed("0:1,garbage", 2, 1));
    }
}
