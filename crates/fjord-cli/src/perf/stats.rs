//! Latency bookkeeping shared by the perf tools: every sample kept (microseconds), so the
//! percentiles are exact rather than estimated from buckets.

pub struct Latencies {
    samples: Vec<u32>,
}

impl Latencies {
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies {
            samples: Vec::with_capacity(n),
        }
    }

    pub fn record(&mut self, micros: u64) {
        self.samples.push(micros.min(u32::MAX as u64) as u32);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// (avg ms, max ms, [p50, p95, p99, p99.9] ms); sorts the samples.
    pub fn summary(&mut self) -> (f64, f64, [f64; 4]) {
        if self.samples.is_empty() {
            return (0.0, 0.0, [0.0; 4]);
        }
        self.samples.sort_unstable();
        let n = self.samples.len();
        let sum: u64 = self.samples.iter().map(|&s| s as u64).sum();
        let at = |q: f64| {
            let i = ((q * n as f64) as usize).min(n - 1);
            self.samples[i] as f64 / 1000.0
        };
        (
            sum as f64 / n as f64 / 1000.0,
            self.samples[n - 1] as f64 / 1000.0,
            [at(0.5), at(0.95), at(0.99), at(0.999)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_exact() {
        let mut l = Latencies::with_capacity(1000);
        for i in 1..=1000 {
            l.record(i * 1000);
        }
        let (avg, max, p) = l.summary();
        assert_eq!(max, 1000.0);
        assert!((avg - 500.5).abs() < 1e-9);
        assert_eq!(p, [501.0, 951.0, 991.0, 1000.0]);
    }
}
