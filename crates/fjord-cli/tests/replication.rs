//! Partition replication as clients see it: real `fjord server` clusters driven through
//! librdkafka. Topics with several replicas, the ISR shrinking when a broker dies and
//! growing back once it has caught up, leaders elected from the ISR when a leader is
//! fenced, acks=all answered once the whole ISR has a batch, and `min.insync.replicas`.
//!
//! Every test starts its own cluster; the liveness overrides of the harness (a 3 s broker
//! session) plus a short `replica.lag.time.max.ms` keep each one fast. Conditions are waited
//! for with generous deadlines rather than sleeps. When a test fails, the tail of every
//! node's log is printed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use support::*;

/// A follower that has not caught up for this long leaves the ISR.
const REPLICA_LAG: &str = "replica.lag.time.max.ms=2000";

/// How long a test waits for a producer running in the background to finish.
const PRODUCER_PATIENCE: Duration = Duration::from_secs(90);

/// Creates a topic through broker `via` and waits until every broker of `via_all` lists all
/// its partitions; returns the partitions as the first of them describes them.
fn create_replicated(
    c: &Cluster,
    via: i32,
    via_all: &[i32],
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> BTreeMap<i32, PartitionView> {
    let admin = c.admin(via);
    create_topic_with(&admin, via, topic, partitions, replication_factor, configs).unwrap_or_else(
        |e| panic!("create {topic} with replication factor {replication_factor}: {e}"),
    );
    let mut first = None;
    for &id in via_all {
        let v = c.wait_view(
            id,
            &format!("all {partitions} partitions of {topic}"),
            |v| v.partitions(topic).len() == partitions as usize,
        );
        first.get_or_insert(v.partitions(topic));
    }
    first.expect("at least one broker to ask")
}

/// Waits until metadata through broker `via` shows every partition of `topic` with exactly
/// `isr` as its ISR and a leader from it; returns the partitions.
fn wait_isr(c: &Cluster, via: i32, topic: &str, isr: &[i32]) -> BTreeMap<i32, PartitionView> {
    let want: BTreeSet<i32> = isr.iter().copied().collect();
    let v = c.wait_view(
        via,
        &format!("every partition of {topic} with ISR {want:?} and a leader in it"),
        |v| {
            let ps = v.partitions(topic);
            !ps.is_empty()
                && ps
                    .values()
                    .all(|p| p.isr_set() == want && want.contains(&p.leader))
        },
    );
    v.partitions(topic)
}

/// The ids of the partitions `node` leads.
fn led_by(partitions: &BTreeMap<i32, PartitionView>, node: i32) -> BTreeSet<i32> {
    partitions
        .iter()
        .filter(|(_, p)| p.leader == node)
        .map(|(&id, _)| id)
        .collect()
}

/// Broker id to the number of partitions it leads.
fn leader_counts(partitions: &BTreeMap<i32, PartitionView>) -> BTreeMap<i32, usize> {
    let mut out = BTreeMap::new();
    for p in partitions.values() {
        *out.entry(p.leader).or_default() += 1;
    }
    out
}

/// The outcome of every record a producer sent, from its delivery reports.
#[derive(Default)]
struct Reports {
    /// Values whose delivery was acknowledged, in the order the reports came.
    acked: Mutex<Vec<u64>>,
    /// Delivery errors: (value, error code, message).
    failed: Mutex<Vec<(String, Option<RDKafkaErrorCode>, String)>>,
    /// Records handed to the producer so far.
    enqueued: AtomicUsize,
}

impl Reports {
    fn acked(&self) -> Vec<u64> {
        self.acked.lock().unwrap().clone()
    }

    fn failed(&self) -> Vec<(String, Option<RDKafkaErrorCode>, String)> {
        self.failed.lock().unwrap().clone()
    }

    fn reported(&self) -> usize {
        self.acked.lock().unwrap().len() + self.failed.lock().unwrap().len()
    }
}

/// A producer context that records every delivery report in shared [`Reports`].
#[derive(Clone)]
struct Reporting(Arc<Reports>);

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
fn reporting_producer(
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

/// Enqueues one record, waiting while the producer's queue is full.
fn send<C: ProducerContext<DeliveryOpaque = ()>>(
    p: &BaseProducer<C>,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &str,
) {
    let mut rec = BaseRecord::to(topic).key(key).payload(value);
    if let Some(partition) = partition {
        rec = rec.partition(partition);
    }
    loop {
        match p.send(rec) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("enqueue to {topic}: {e}"),
        }
    }
    p.poll(Duration::ZERO);
}

/// Produces values `from..to` (key `k{value % 30}`) with acks=all and waits until each
/// got its delivery report; returns the reports.
fn produce_values(bootstrap: &str, topic: &str, from: u64, to: u64) -> Arc<Reports> {
    let (p, reports) = reporting_producer(bootstrap, &[("enable.idempotence", "true")]);
    for i in from..to {
        send(&p, topic, None, &key_of(i), &i.to_string());
    }
    p.flush(Duration::from_secs(40)).expect("flush");
    assert_eq!(reports.reported(), (to - from) as usize);
    reports
}

fn key_of(value: u64) -> String {
    format!("k{}", value % 30)
}

/// An idempotent acks=all producer sending values `0..count` in the background, a few
/// milliseconds apart, then waiting for every delivery report.
struct Background {
    reports: Arc<Reports>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    fn start(bootstrap: String, topic: &str, count: u64, pace: Duration) -> Background {
        let (p, reports) = reporting_producer(
            &bootstrap,
            &[
                ("enable.idempotence", "true"),
                ("message.timeout.ms", "60000"),
            ],
        );
        let topic = topic.to_string();
        let shared = reports.clone();
        let thread = std::thread::spawn(move || {
            for i in 0..count {
                send(&p, &topic, None, &key_of(i), &i.to_string());
                shared.enqueued.fetch_add(1, SeqCst);
                std::thread::sleep(pace);
            }
            let _ = p.flush(Duration::from_secs(80));
        });
        Background {
            reports,
            thread: Some(thread),
        }
    }

    /// Waits until at least `n` records were acknowledged.
    fn wait_acked(&self, n: usize) {
        wait_until(&format!("{n} records acknowledged"), || {
            let acked = self.reports.acked.lock().unwrap().len();
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

    /// Waits for the producer to finish; returns the acknowledged values.
    fn finish(mut self, count: u64) -> Vec<u64> {
        let thread = self.thread.take().expect("running");
        let deadline = Instant::now() + PRODUCER_PATIENCE;
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the producer has not finished after {PRODUCER_PATIENCE:?}: {} of {count} \
                 reported, {} acknowledged",
                self.reports.reported(),
                self.reports.acked.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        thread.join().expect("producer thread");
        let failed = self.reports.failed();
        assert!(
            failed.is_empty(),
            "{} of {count} records failed although the ISR never fell below \
             min.insync.replicas; first failures: {:?}",
            failed.len(),
            &failed[..failed.len().min(10)]
        );
        let acked = self.reports.acked();
        assert_eq!(
            acked.len() as u64,
            count,
            "every record gets one delivery report"
        );
        acked
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // A failing test must not leave the thread producing into the next test's ports.
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
fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    expected: &BTreeSet<u64>,
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
                if let Ok(n) = value.parse::<u64>() {
                    seen.insert(n);
                }
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

/// Checks what a reader got against what the producer was told: every acknowledged value
/// exactly once, nothing that was never sent, and the values of each key in increasing
/// order (one producer, one partition per key).
fn assert_acked_once_in_order(read: &[(i32, String, String)], acked: &[u64], sent: u64) {
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    let mut per_key: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
    for (partition, key, value) in read {
        let n: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a value this test never sent: {value:?}"));
        assert!(n < sent, "a value this test never sent: {n}");
        assert_eq!(*key, key_of(n), "value {n} under key {key}");
        *count.entry(n).or_default() += 1;
        per_key
            .entry(key.clone())
            .or_default()
            .push((*partition, n));
    }
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !count.contains_key(n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost (first: {:?})",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let duplicated: Vec<(u64, usize)> = count
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&n, &c)| (n, c))
        .collect();
    assert!(
        duplicated.is_empty(),
        "{} values stored more than once (value, copies; first: {:?})",
        duplicated.len(),
        &duplicated[..duplicated.len().min(20)]
    );
    for (key, values) in &per_key {
        let partitions: BTreeSet<i32> = values.iter().map(|v| v.0).collect();
        assert_eq!(
            partitions.len(),
            1,
            "key {key} in several partitions: {partitions:?}"
        );
        let out_of_order: Vec<(u64, u64)> = values
            .windows(2)
            .filter(|w| w[0].1 >= w[1].1)
            .map(|w| (w[0].1, w[1].1))
            .collect();
        assert!(
            out_of_order.is_empty(),
            "key {key}: values out of order (earlier, later): {out_of_order:?}"
        );
    }
}

/// The delivery error of a producer that does not retry, sending one record with `acks`.
fn produce_once(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    acks: &str,
    value: &str,
) -> Result<(), (Option<RDKafkaErrorCode>, String)> {
    let (p, reports) = reporting_producer(
        bootstrap,
        &[
            ("acks", acks),
            ("enable.idempotence", "false"),
            ("message.send.max.retries", "0"),
            ("message.timeout.ms", "10000"),
            ("linger.ms", "0"),
        ],
    );
    send(&p, topic, Some(partition), "k", value);
    p.flush(Duration::from_secs(20)).expect("flush");
    match reports.failed().into_iter().next() {
        Some((_, code, message)) => Err((code, message)),
        None => {
            assert_eq!(reports.acked(), vec![value.parse::<u64>().unwrap()]);
            Ok(())
        }
    }
}

#[test]
fn rf3_topic_is_replicated_everywhere() {
    let c = Cluster::started(&[REPLICA_LAG]);
    let partitions = create_replicated(&c, 2, &[1, 2, 3], "rf3", 6, 3, &[]);
    assert_eq!(partitions.len(), 6, "{partitions:?}");
    let all = BTreeSet::from([1, 2, 3]);
    for (id, p) in &partitions {
        assert_eq!(p.replicas.len(), 3, "partition {id}: {p:?}");
        assert_eq!(
            p.replica_set(),
            all,
            "partition {id}: replicas on distinct brokers"
        );
        assert_eq!(
            p.isr_set(),
            all,
            "partition {id}: the ISR starts as the replicas"
        );
        assert_eq!(
            p.leader, p.replicas[0],
            "partition {id}: the first replica leads"
        );
        assert_eq!(p.error, None, "partition {id}: {p:?}");
    }
    assert_eq!(
        leader_counts(&partitions),
        BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
        "leaders spread over the brokers: {partitions:?}"
    );
    // Every broker describes the partitions the same way.
    for id in [1, 3] {
        c.wait_view(id, "the same replicas, ISR and leaders of rf3", |v| {
            v.partitions("rf3") == partitions
        });
    }

    // Records produced with acks=all come back through another broker.
    let sent = 60;
    let reports = produce_values(&c.bootstrap(1), "rf3", 0, sent);
    assert_eq!(reports.failed(), vec![], "acks=all on a full ISR");
    let acked = reports.acked();
    let expected: BTreeSet<u64> = acked.iter().copied().collect();
    let read = read_all(
        &c.bootstrap(3),
        "rf3",
        &(0..6).collect::<Vec<_>>(),
        &expected,
    );
    assert_acked_once_in_order(&read, &acked, sent);
    assert_eq!(read.len(), sent as usize);

    // More replicas than live brokers.
    let admin = c.admin(1);
    let (code, message) = create_topic_raw(&admin, 1, "rf4", 1, 4);
    assert_eq!(
        code,
        RDKafkaErrorCode::InvalidReplicationFactor,
        "{message}"
    );
    assert_eq!(
        message,
        "Replication factor: 4 larger than available brokers: 3."
    );
    let v = c.view_via(1);
    assert!(!v.topics.contains_key("rf4"), "{v:?}");
}

#[test]
fn killing_a_leader_under_acks_all_loses_nothing() {
    let mut c = Cluster::started(&[REPLICA_LAG]);
    let topic = "no-loss";
    let before = create_replicated(
        &c,
        1,
        &[1, 2, 3],
        topic,
        3,
        3,
        &[("min.insync.replicas", "2")],
    );
    let victim = before[&0].leader;
    let survivors: Vec<i32> = (1..=3).filter(|&i| i != victim).collect();
    let led = led_by(&before, victim);

    let count = 3000;
    let producer = Background::start(
        c.bootstrap_of(&[1, 2, 3]),
        topic,
        count,
        Duration::from_millis(3),
    );
    producer.wait_acked(count as usize / 3);
    let killed = Instant::now();
    c.kill(victim);

    // The partitions it led get a leader from the ISR, and it leaves every ISR.
    let after = wait_isr(&c, survivors[0], topic, &survivors);
    eprintln!(
        "leader {victim} killed: partitions {led:?} led by survivors {survivors:?} after {:?}",
        killed.elapsed()
    );
    for (id, p) in &after {
        assert_eq!(
            p.replica_set(),
            BTreeSet::from([1, 2, 3]),
            "partition {id}: the replica set does not change: {p:?}"
        );
    }

    let acked = producer.finish(count);
    let expected: BTreeSet<u64> = acked.iter().copied().collect();
    let read = read_all(&c.bootstrap_of(&survivors), topic, &[0, 1, 2], &expected);
    assert_acked_once_in_order(&read, &acked, count);

    // Back, caught up, in sync again.
    c.start(victim);
    wait_isr(&c, survivors[0], topic, &[1, 2, 3]);
    wait_isr(&c, victim, topic, &[1, 2, 3]);
}

#[test]
fn isr_shrinks_and_grows_back() {
    let mut c = Cluster::started(&[REPLICA_LAG]);
    let topic = "shrink";
    let configs = [("min.insync.replicas", "2")];
    create_replicated(&c, 1, &[1, 2, 3], topic, 6, 3, &configs);
    let partitions: Vec<i32> = (0..6).collect();
    let mut acked = Vec::new();
    let mut produce = |c: &Cluster, from: u64, to: u64, via: &[i32]| {
        let reports = produce_values(&c.bootstrap_of(via), topic, from, to);
        assert_eq!(
            reports.failed(),
            vec![],
            "acks=all with an ISR of at least 2"
        );
        acked.extend(reports.acked());
    };
    produce(&c, 0, 300, &[1, 2, 3]);

    // Node 1 dies: it leaves every ISR, acks=all still works with the two others.
    let victim = 1;
    c.kill(victim);
    wait_isr(&c, 2, topic, &[2, 3]);
    produce(&c, 300, 600, &[2, 3]);

    // Back: it fetches what it missed and every ISR has all three again.
    let restarted = Instant::now();
    c.start(victim);
    let back = wait_isr(&c, 2, topic, &[1, 2, 3]);
    wait_isr(&c, victim, topic, &[1, 2, 3]);
    eprintln!(
        "broker {victim} restarted: back in every ISR after {:?}",
        restarted.elapsed()
    );
    produce(&c, 600, 900, &[1, 2, 3]);

    // Another node dies; node 1 now has to lead some partitions with what it caught up on.
    // The node leading the most partitions is the one killed: node 1 is in the ISR of all of
    // them, and whether the new leader is the first live ISR member in replica order (as in
    // Kafka) or the lowest id, node 1 gets some.
    let counts = leader_counts(&back);
    let second = *[2, 3]
        .iter()
        .max_by_key(|id| counts.get(id).copied().unwrap_or(0))
        .unwrap();
    let third = 5 - second;
    let led = led_by(&back, second);
    c.kill(second);
    let after = wait_isr(&c, victim, topic, &[victim, third]);
    let took_over = led_by(&after, victim);
    assert!(
        !took_over.is_empty(),
        "broker {second} led {led:?}; none went to the caught-up broker {victim}: {after:?}"
    );
    produce(&c, 900, 1200, &[victim, third]);

    let expected: BTreeSet<u64> = acked.iter().copied().collect();
    let read = read_all(
        &c.bootstrap_of(&[victim, third]),
        topic,
        &partitions,
        &expected,
    );
    assert_acked_once_in_order(&read, &acked, 1200);
    assert_eq!(read.len(), 1200, "every record once");
}

#[test]
fn min_insync_replicas_is_enforced() {
    let mut c = Cluster::started(&[REPLICA_LAG]);
    let topic = "strict";
    let before = create_replicated(
        &c,
        1,
        &[1, 2, 3],
        topic,
        1,
        3,
        &[("min.insync.replicas", "3")],
    );
    let leader = before[&0].leader;
    let bootstrap = c.bootstrap(leader);
    produce_once(&bootstrap, topic, 0, "all", "1").expect("acks=all with the full ISR");

    // A follower dies: the ISR (2) falls below min.insync.replicas (3).
    let follower = *before[&0]
        .replicas
        .iter()
        .find(|&&r| r != leader)
        .expect("a follower");
    c.kill(follower);
    let live: Vec<i32> = (1..=3).filter(|&i| i != follower).collect();
    let after = wait_isr(&c, leader, topic, &live);
    assert_eq!(
        after[&0].leader, leader,
        "losing a follower keeps the leader"
    );

    let refused = produce_once(&bootstrap, topic, 0, "all", "2");
    match &refused {
        Err((Some(RDKafkaErrorCode::NotEnoughReplicas), _)) => {}
        other => panic!("acks=all with ISR 2 < min.insync.replicas 3: {other:?}"),
    }
    produce_once(&bootstrap, topic, 0, "1", "3").expect("acks=1 needs only the leader");
    // A record refused for NOT_ENOUGH_REPLICAS was not appended.
    let read = read_all(&bootstrap, topic, &[0], &BTreeSet::from([1, 3]));
    let values: Vec<&str> = read.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(values, vec!["1", "3"]);

    // Back in the ISR: acks=all works again.
    c.start(follower);
    wait_isr(&c, leader, topic, &[1, 2, 3]);
    produce_once(&bootstrap, topic, 0, "all", "4").expect("acks=all with the full ISR again");
}

#[test]
fn five_nodes_survive_losing_two() {
    let mut c = Cluster::started_n(5, &[REPLICA_LAG]);
    let all: Vec<i32> = c.ids();
    let topic = "five";
    let before = create_replicated(&c, 1, &all, topic, 5, 5, &[("min.insync.replicas", "3")]);
    for (id, p) in &before {
        assert_eq!(
            p.isr_set(),
            all.iter().copied().collect(),
            "partition {id}: {p:?}"
        );
    }
    assert!(
        leader_counts(&before).values().all(|&n| n == 1),
        "one leader per broker: {before:?}"
    );

    let count = 3000;
    let producer = Background::start(c.bootstrap_of(&all), topic, count, Duration::from_millis(5));
    producer.wait_acked(count as usize / 4);

    // The leader of partition 0 first; once the cluster has moved on, the leader of
    // partition 1 as the survivors see it.
    let first = before[&0].leader;
    c.kill(first);
    let mut live: Vec<i32> = all.iter().copied().filter(|&i| i != first).collect();
    let mid = c.wait_view(live[0], &format!("broker {first} out of every ISR"), |v| {
        let ps = v.partitions(topic);
        ps.len() == 5
            && ps
                .values()
                .all(|p| !p.isr.contains(&first) && p.leader != first && p.leader >= 0)
    });
    producer.wait_acked(count as usize / 2);
    let second = mid.partitions(topic)[&1].leader;
    c.kill(second);
    live.retain(|&i| i != second);
    c.wait_view(live[0], &format!("broker {second} out of every ISR"), |v| {
        let ps = v.partitions(topic);
        ps.len() == 5
            && ps
                .values()
                .all(|p| !p.isr.contains(&second) && live.contains(&p.leader) && p.isr.len() == 3)
    });

    let acked = producer.finish(count);
    let expected: BTreeSet<u64> = acked.iter().copied().collect();
    let read = read_all(
        &c.bootstrap_of(&live),
        topic,
        &(0..5).collect::<Vec<_>>(),
        &expected,
    );
    assert_acked_once_in_order(&read, &acked, count);
}

/// The `__consumer_offsets` partition of a group, as Kafka computes it.
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % partitions
}

#[test]
fn consumer_group_offsets_survive_coordinator_kill() {
    let mut c = Cluster::started(&[
        REPLICA_LAG,
        "offsets.topic.replication.factor=3",
        "group.initial.rebalance.delay.ms=0",
    ]);
    let topic = "orders";
    create_replicated(
        &c,
        1,
        &[1, 2, 3],
        topic,
        3,
        3,
        &[("min.insync.replicas", "2")],
    );
    let partitions = [0, 1, 2];
    let first = records_for(&partitions, 30);
    produce_all(&producer(&c.bootstrap_of(&[1, 2, 3])), topic, &first);

    let group = "orders-group";
    let consumer = assign_consumer(&c.bootstrap_of(&[1, 2, 3]), group);
    consumer.subscribe(&[topic]).expect("subscribe");
    let consumed = poll_records(&consumer, first.len());
    assert_same_per_partition(&first, &consumed);
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(consumer);

    // The coordinator: the leader of the group's __consumer_offsets partition.
    let v = c.wait_view(
        1,
        "__consumer_offsets with a leader for every partition",
        |v| {
            let ps = v.partitions("__consumer_offsets");
            !ps.is_empty() && ps.values().all(|p| p.leader >= 1 && p.isr.len() == 3)
        },
    );
    let offsets_topic = v.partitions("__consumer_offsets");
    let index = offsets_partition(group, offsets_topic.len() as i32);
    let coordinator = offsets_topic[&index].leader;
    let survivors: Vec<i32> = (1..=3).filter(|&i| i != coordinator).collect();
    c.kill(coordinator);
    c.wait_view(
        survivors[0],
        &format!("a new leader for __consumer_offsets partition {index}"),
        |v| {
            v.partitions("__consumer_offsets")
                .get(&index)
                .is_some_and(|p| survivors.contains(&p.leader))
        },
    );

    let second: Vec<(i32, String, String)> = records_for(&partitions, 40)
        .into_iter()
        .filter(|(_, _, v)| !first.iter().any(|f| f.2 == *v))
        .collect();
    assert_eq!(second.len(), 30);
    produce_all(&producer(&c.bootstrap_of(&survivors)), topic, &second);

    // The group resumes where it committed: only the new records.
    let resumed = assign_consumer(&c.bootstrap_of(&survivors), group);
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    let committed = wait_until(
        "the group's committed offsets from the new coordinator",
        || {
            let got = resumed
                .committed_offsets(tpl.clone(), Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let got = offsets(&got);
            if got.values().all(|o| *o == Offset::Offset(30)) {
                Ok(got)
            } else {
                Err(format!("committed offsets {got:?}"))
            }
        },
    );
    assert_eq!(committed.len(), 3);
    resumed.subscribe(&[topic]).expect("subscribe");
    let again = poll_records(&resumed, second.len());
    assert_same_per_partition(&second, &again);
}
