//! `fjord perf produce`: kafka-producer-perf-test's flags and output lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::stats::Latencies;
use crate::output::outln;

#[derive(Args)]
pub struct ProduceArgs {
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    #[arg(long)]
    topic: String,
    #[arg(long, value_name = "N")]
    num_records: u64,
    #[arg(long, value_name = "BYTES")]
    record_size: usize,
    /// Records per second to aim for; -1 for as fast as possible.
    #[arg(long, allow_hyphen_values = true)]
    throughput: f64,
    /// Producer properties (Kafka names), e.g. acks=all linger.ms=5.
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE")]
    producer_props: Vec<String>,
    /// Milliseconds between progress lines.
    #[arg(long, default_value_t = 5000)]
    reporting_interval: u64,
}

/// Per-window and whole-run counters, fed by delivery reports.
struct Window {
    start: Instant,
    count: u64,
    bytes: u64,
    latency_sum_us: u64,
    latency_max_us: u64,
}

impl Window {
    fn new() -> Window {
        Window {
            start: Instant::now(),
            count: 0,
            bytes: 0,
            latency_sum_us: 0,
            latency_max_us: 0,
        }
    }
}

struct Stats {
    started: Instant,
    window: Window,
    all: Latencies,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

struct PerfContext {
    stats: Mutex<Stats>,
}

impl ClientContext for PerfContext {}

impl ProducerContext for PerfContext {
    /// Send time, as microseconds since the run started.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        let Ok(mut s) = self.stats.lock() else {
            return;
        };
        match result {
            Ok(m) => {
                let now_us = s.started.elapsed().as_micros() as u64;
                let latency = now_us.saturating_sub(sent_us as u64);
                let len = m.payload_len() as u64;
                s.all.record(latency);
                s.bytes += len;
                s.window.count += 1;
                s.window.bytes += len;
                s.window.latency_sum_us += latency;
                s.window.latency_max_us = s.window.latency_max_us.max(latency);
            }
            Err((e, _)) => {
                s.errors += 1;
                if s.first_error.is_none() {
                    s.first_error = Some(e.to_string());
                }
            }
        }
    }
}

pub fn run(args: ProduceArgs) -> Result<()> {
    let mut config = super::client_config(args.bootstrap_server.as_deref(), &args.producer_props)?;
    // Let large runs queue enough to keep the pipe full; users can override both.
    if config.get("queue.buffering.max.messages").is_none() {
        config.set("queue.buffering.max.messages", "1000000");
    }
    if config.get("queue.buffering.max.kbytes").is_none() {
        config.set("queue.buffering.max.kbytes", "1048576");
    }
    let started = Instant::now();
    let context = PerfContext {
        stats: Mutex::new(Stats {
            started,
            window: Window::new(),
            all: Latencies::with_capacity(args.num_records.min(50_000_000) as usize),
            bytes: 0,
            errors: 0,
            first_error: None,
        }),
    };
    let producer: BaseProducer<PerfContext> = config
        .create_with_context(context)
        .map_err(crate::tools::common::create_error)
        .context("cannot create the producer")?;
    let payload = vec![b'x'; args.record_size];
    let interval = Duration::from_millis(args.reporting_interval.max(1));
    let mut next_report = Instant::now() + interval;

    for i in 0..args.num_records {
        if args.throughput > 0.0 {
            // Stay on the schedule i / rate; sleeping only when ahead of it.
            let due = started + Duration::from_secs_f64(i as f64 / args.throughput);
            let now = Instant::now();
            if due > now {
                producer.poll(Duration::ZERO);
                std::thread::sleep(due - now);
            }
        }
        let sent_us = started.elapsed().as_micros() as usize;
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&args.topic, sent_us)
            .payload(&payload[..]);
        super::send(&producer, record)?;
        if i % 256 == 0 {
            producer.poll(Duration::ZERO);
        }
        if Instant::now() >= next_report {
            report_window(&producer)?;
            next_report += interval;
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("records were still unsent after 300 s")?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut s = producer
        .context()
        .stats
        .lock()
        .map_err(|_| anyhow::anyhow!("statistics lock poisoned"))?;
    let count = s.all.len() as u64;
    let bytes = s.bytes;
    let (avg, max, p) = s.all.summary();
    outln!(
        "{count} records sent, {:.1} records/sec ({:.2} MB/sec), {avg:.2} ms avg latency, {max:.2} ms max latency, {:.0} ms 50th, {:.0} ms 95th, {:.0} ms 99th, {:.0} ms 99.9th.",
        count as f64 / elapsed,
        bytes as f64 / elapsed / (1024.0 * 1024.0),
        p[0],
        p[1],
        p[2],
        p[3],
    )?;
    if s.errors > 0 {
        let first = s.first_error.take().unwrap_or_default();
        anyhow::bail!("{} records failed; first error: {first}", s.errors);
    }
    Ok(())
}

fn report_window(producer: &BaseProducer<PerfContext>) -> Result<()> {
    let Ok(mut s) = producer.context().stats.lock() else {
        return Ok(());
    };
    let w = std::mem::replace(&mut s.window, Window::new());
    let secs = w.start.elapsed().as_secs_f64();
    let avg = if w.count > 0 {
        w.latency_sum_us as f64 / w.count as f64 / 1000.0
    } else {
        0.0
    };
    outln!(
        "{} records sent, {:.1} records/sec ({:.2} MB/sec), {avg:.1} ms avg latency, {:.1} ms max latency.",
        w.count,
        w.count as f64 / secs,
        w.bytes as f64 / secs / (1024.0 * 1024.0),
        w.latency_max_us as f64 / 1000.0,
    )
}
