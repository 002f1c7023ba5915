//! Load for the multi-node tests: an idempotent acks=all producer whose every delivery
//! report is kept (in the foreground, or in the background while a test injects faults),
//! and a reader of whole partitions, so that a test can check that every acknowledged
//! value was read back exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{client_config, send, wait_until};

/// How long a test waits for a producer running in the background to finish.
const PRODUCER_PATIENCE: Duration = Duration::from_secs(90);

/// The outcome of every record a producer sent, from its delivery reports.
#[derive(Default)]
pub struct Reports {
    /// Values whose delivery was acknowledged, in the order the reports came.
    pub acked: Mutex<Vec<u64>>,
    /// When each acknowledgement came, and for which partition, in the same order.
    pub acked_at: Mutex<Vec<(Instant, i32)>>,
    /// Delivery errors: (value, error code, message).
    pub failed: Mutex<Vec<(String, Option<RDKafkaErrorCode>, String)>>,
    /// Records handed to the producer so far.
    pub enqueued: AtomicUsize,
}

impl Reports {
    pub fn acked(&self) -> Vec<u64> {
        self.acked.lock().unwrap().clone()
    }

    pub fn failed(&self) -> Vec<(String, Option<RDKafkaErrorCode>, String)> {
        self.failed.lock().unwrap().clone()
    }

    pub fn reported(&self) -> usize {
        self.acked.lock().unwrap().len() + self.failed.lock().unwrap().len()
    }

    /// For each of `partitions`, the longest time between `from` and `to` without an
    /// acknowledgement for it, and when (after `from`) that pause ended.
    pub fn longest_pauses(
        &self,
        partitions: &BTreeSet<i32>,
        from: Instant,
        to: Instant,
    ) -> BTreeMap<i32, (Duration, Duration)> {
        let acked_at = self.acked_at.lock().unwrap();
        partitions
            .iter()
            .map(|&p| {
                let mut last = from;
                let mut longest = (Duration::ZERO, Duration::ZERO);
                let times = acked_at
                    .iter()
                    .filter(|(t, q)| *q == p && *t > from && *t <= to)
                    .map(|(t, _)| *t)
                    .chain([to]);
                for t in times {
                    if t - last > longest.0 {
                        longest = (t - last, t - from);
                    }
                    last = t;
                }
                (p, longest)
            })
            .collect()
    }
}

/// A producer context that records every delivery report in shared [`Reports`].
#[derive(Clone)]
pub struct Reporting(pub Arc<Reports>);

impl ClientContext for Reporting {}

impl ProducerContext for Reporting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let value = |m: &rdkafka::message::BorrowedMessage<'_>| {
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
        };
        match result {
            Ok(m) => {
                let v = value(m);
                let n = v
                    .parse()
                    .unwrap_or_else(|_| panic!("acknowledged a value this test never sent: {v}"));
                self.0.acked.lock().unwrap().push(n);
                self.0
                    .acked_at
                    .lock()
                    .unwrap()
                    .push((Instant::now(), m.partition()));
            }
            Err((e, m)) => {
                self.0.failed.lock().unwrap().push((
                    value(m),
                    e.rdkafka_error_code(),
                    e.to_string(),
                ));
            }
        }
    }
}

/// A producer with `acks` and the given extra settings whose delivery reports land in
/// the returned [`Reports`].
pub fn reporting_producer(
    bootstrap: &str,
    settings: &[(&str, &str)],
) -> (BaseProducer<Reporting>, Arc<Reports>) {
    let reports = Arc::new(Reports::default());
    let mut config = client_config(bootstrap);
    config
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("retry.backoff.ms", "100");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let p = config
        .create_with_context(Reporting(reports.clone()))
        .expect("producer");
    (p, reports)
}

/// Produces values `from..to` (key `k{value % 30}`) with acks=all and waits until each
/// got its delivery report; returns the reports.
pub fn produce_values(bootstrap: &str, topic: &str, from: u64, to: u64) -> Arc<Reports> {
    let (p, reports) = reporting_producer(bootstrap, &[("enable.idempotence", "true")]);
    for i in from..to {
        send(&p, topic, None, &key_of(i), &i.to_string());
    }
    p.flush(Duration::from_secs(40)).expect("flush");
    assert_eq!(reports.reported(), (to - from) as usize);
    reports
}

pub fn key_of(value: u64) -> String {
    format!("k{}", value % 30)
}

/// An idempotent acks=all producer sending values `0, 1, 2, ...` in the background, a few
/// milliseconds apart, up to a count or until stopped, then waiting for every delivery
/// report.
pub struct Background {
    pub reports: Arc<Reports>,
    stop: Arc<AtomicBool>,
    /// The number of values to send, if the producer is not to run until stopped.
    count: Option<u64>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Sends values `0..count`.
    pub fn start(bootstrap: String, topic: &str, count: u64, pace: Duration) -> Background {
        Background::spawn(
            bootstrap,
            topic,
            Some(count),
            pace,
            &[("message.timeout.ms", "60000")],
        )
    }

    /// Sends values until [`Background::stop`], with the given extra producer settings.
    pub fn until_stopped(
        bootstrap: String,
        topic: &str,
        pace: Duration,
        settings: &[(&str, &str)],
    ) -> Background {
        Background::spawn(bootstrap, topic, None, pace, settings)
    }

    fn spawn(
        bootstrap: String,
        topic: &str,
        count: Option<u64>,
        pace: Duration,
        settings: &[(&str, &str)],
    ) -> Background {
        let mut all = vec![("enable.idempotence", "true")];
        all.extend_from_slice(settings);
        let (p, reports) = reporting_producer(&bootstrap, &all);
        let topic = topic.to_string();
        let shared = reports.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for i in 0.. {
                if count.is_some_and(|c| i >= c) || stopping.load(SeqCst) {
                    break;
                }
                send(&p, &topic, None, &key_of(i), &i.to_string());
                shared.enqueued.fetch_add(1, SeqCst);
                std::thread::sleep(pace);
            }
            let _ = p.flush(Duration::from_secs(80));
        });
        Background {
            reports,
            stop,
            count,
            thread: Some(thread),
        }
    }

    /// The number of records acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.reports.acked.lock().unwrap().len()
    }

    /// Waits until at least `n` records were acknowledged.
    pub fn wait_acked(&self, n: usize) {
        wait_until(&format!("{n} records acknowledged"), || {
            let acked = self.acked_count();
            let failed = self.reports.failed();
            if acked >= n {
                Ok(())
            } else {
                Err(format!(
                    "{acked} acknowledged, {} enqueued, failures: {failed:?}",
                    self.reports.enqueued.load(SeqCst)
                ))
            }
        });
    }

    /// Tells the producer to send nothing more; [`Background::finish`] then waits for the
    /// reports of what it sent.
    pub fn stop(&self) {
        self.stop.store(true, SeqCst);
    }

    /// Waits for the producer to finish and checks that no delivery failed; returns the
    /// acknowledged values and the number of values sent (`0..sent`).
    pub fn finish(mut self) -> (Vec<u64>, u64) {
        let thread = self.thread.take().expect("running");
        let deadline = Instant::now() + PRODUCER_PATIENCE;
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the producer has not finished after {PRODUCER_PATIENCE:?}: {} of {} \
                 reported, {} acknowledged",
                self.reports.reported(),
                self.reports.enqueued.load(SeqCst),
                self.acked_count()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        thread.join().expect("producer thread");
        let sent = self.reports.enqueued.load(SeqCst) as u64;
        if let Some(count) = self.count {
            assert_eq!(sent, count, "values sent");
        }
        let failed = self.reports.failed();
        assert!(
            failed.is_empty(),
            "{} of {sent} records failed although the ISR never fell below \
             min.insync.replicas; first failures: {:?}",
            failed.len(),
            &failed[..failed.len().min(10)]
        );
        let acked = self.reports.acked();
        assert_eq!(
            acked.len() as u64,
            sent,
            "every record gets one delivery report"
        );
        (acked, sent)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // A failing test must not leave the thread producing into the next test's ports.
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            if !std::thread::panicking() {
                let _ = t.join();
            }
        }
    }
}

/// Every record of the given partitions, from their beginning up to the end a consumer may
/// read (the high watermark): (partition, key, value). Reads until every partition reported
/// its end after its last record and at least every value of `expected` was seen.
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    expected: &BTreeSet<String>,
) -> Vec<(i32, String, String)> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "replication-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = expected.difference(&seen).count();
        if missing == 0 && at_end.len() == partitions.len() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "read {} records of {topic}; {missing} acknowledged values not among them \
             (first: {:?}); partitions read to their end: {at_end:?}",
            out.len(),
            expected.difference(&seen).take(10).collect::<Vec<_>>()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                seen.insert(value.clone());
                at_end.remove(&m.partition());
                out.push((m.partition(), key, value));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("consumer error (retrying): {e}"),
            None => {}
        }
    }
}
