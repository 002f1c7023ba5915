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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use support::load::*;
use support::*;

/// A follower that has not caught up for this long leaves the ISR.
const REPLICA_LAG: &str = "replica.lag.time.max.ms=2000";

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
    let expected: BTreeSet<String> = acked.iter().map(u64::to_string).collect();
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

    let (acked, _) = producer.finish();
    let expected: BTreeSet<String> = acked.iter().map(u64::to_string).collect();
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

    let expected: BTreeSet<String> = acked.iter().map(u64::to_string).collect();
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
    let read = read_all(
        &bootstrap,
        topic,
        &[0],
        &BTreeSet::from(["1".to_string(), "3".to_string()]),
    );
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

    let (acked, _) = producer.finish();
    let expected: BTreeSet<String> = acked.iter().map(u64::to_string).collect();
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

/// Waits until metadata through broker `via` shows a leader for every partition of `topic`
/// and none of them led by `node`; returns the partitions.
fn wait_not_led_by(c: &Cluster, via: i32, topic: &str, node: i32) -> BTreeMap<i32, PartitionView> {
    let v = c.wait_view(
        via,
        &format!("every partition of {topic} led by a broker other than {node}"),
        |v| {
            let ps = v.partitions(topic);
            !ps.is_empty() && ps.values().all(|p| p.leader >= 0 && p.leader != node)
        },
    );
    v.partitions(topic)
}

#[test]
fn rolling_restart_under_acks_all_surfaces_no_error() {
    let mut c = Cluster::started(&[REPLICA_LAG]);
    let topic = "rolling";
    let all = [1, 2, 3];
    let before = create_replicated(&c, 1, &all, topic, 3, 3, &[("min.insync.replicas", "2")]);
    assert_eq!(
        leader_counts(&before),
        BTreeMap::from([(1, 1), (2, 1), (3, 1)]),
        "one partition led by each broker: {before:?}"
    );

    // librdkafka's default retries; a record fails only if it is not acknowledged within
    // 30 s.
    let producer = Background::until_stopped(
        c.bootstrap_of(&all),
        topic,
        Duration::from_millis(10),
        &[("message.timeout.ms", "30000")],
    );
    producer.wait_acked(100);

    // (broker, partitions it led, when it got SIGTERM)
    let mut restarts = Vec::new();
    for id in all {
        let survivors: Vec<i32> = all.iter().copied().filter(|&i| i != id).collect();
        let other = survivors[0];
        let led = led_by(&c.view_via(other).partitions(topic), id);
        let stopped = Instant::now();
        assert_eq!(
            c.stop(&[id]),
            vec![Some(0)],
            "broker {id} exits 0 on SIGTERM"
        );
        let exited = stopped.elapsed();
        wait_not_led_by(&c, other, topic, id);
        let moved = stopped.elapsed();
        // Fenced by a missed session instead, it would lose its leaderships no sooner than
        // a session timeout after its last heartbeat, which is at most a heartbeat interval
        // (500 ms) before SIGTERM.
        assert!(
            moved < SESSION_TIMEOUT - Duration::from_millis(500),
            "broker {id} still led some of {led:?} {moved:?} after SIGTERM: its \
             leaderships did not move in a controlled shutdown"
        );
        // Fenced: out of every ISR.
        wait_isr(&c, other, topic, &survivors);
        let shrunk = stopped.elapsed();

        let started = Instant::now();
        c.start(id);
        wait_isr(&c, other, topic, &all);
        wait_isr(&c, id, topic, &all);
        eprintln!(
            "broker {id} (leading {led:?}) got SIGTERM: exited after {exited:?}, led nothing \
             in metadata after {moved:?}, out of every ISR after {shrunk:?}; restarted, back \
             in every ISR {:?} later",
            started.elapsed()
        );
        assert!(
            producer.reports.failed().is_empty(),
            "delivery errors while broker {id} restarted: {:?}",
            producer.reports.failed()
        );
        restarts.push((id, led, stopped));
        // Acknowledgements flow again before the next broker goes.
        producer.wait_acked(producer.acked_count() + 100);
    }
    producer.wait_acked(producer.acked_count() + 100);
    let end = Instant::now();

    let reports = producer.reports.clone();
    producer.stop();
    let (acked, sent) = producer.finish();
    eprintln!("{sent} records sent, all acknowledged");
    for (i, (id, led, stopped)) in restarts.iter().enumerate() {
        let until = restarts.get(i + 1).map_or(end, |r| r.2);
        let pauses = reports.longest_pauses(led, *stopped, until);
        eprintln!(
            "after SIGTERM to broker {id}, the longest pause in acknowledgements of each \
             partition it led (partition: pause, acknowledgements resumed after SIGTERM): \
             {pauses:?}"
        );
    }
    let expected: BTreeSet<String> = acked.iter().map(u64::to_string).collect();
    let read = read_all(&c.bootstrap_of(&all), topic, &[0, 1, 2], &expected);
    assert_acked_once_in_order(&read, &acked, sent);
}

/// A broker frozen (SIGSTOP) past its session timeout while it leads a partition, then
/// resumed: a new leader takes over, and once resumed the broker drops whatever divergent
/// tail it has, catches up and rejoins every ISR; no acknowledged record is lost or
/// duplicated. With `controller`, the frozen broker is also the active controller, so the
/// others must elect a new one, which then fences it; otherwise it is not.
fn pause_a_leader(controller: bool) {
    let mut c = Cluster::started(&[REPLICA_LAG]);
    let topic = "paused";
    let all = [1, 2, 3];
    let before = create_replicated(&c, 1, &all, topic, 3, 3, &[("min.insync.replicas", "2")]);
    let active = c.view_via(1).controller;
    // Each broker leads one partition (the first replica leads at creation).
    let partition = *before
        .iter()
        .find(|(_, p)| (p.leader == active) == controller)
        .unwrap_or_else(|| panic!("controller {active}: {before:?}"))
        .0;
    let victim = before[&partition].leader;
    assert_eq!(victim, before[&partition].replicas[0], "{before:?}");
    let others: Vec<i32> = all.iter().copied().filter(|&i| i != victim).collect();

    let producer = Background::until_stopped(
        c.bootstrap_of(&all),
        topic,
        Duration::from_millis(5),
        &[("message.timeout.ms", "60000")],
    );
    producer.wait_acked(300);

    // Frozen past its session timeout: fenced, and the partition gets a new leader, while
    // the frozen process still believes it leads and holds whatever reached its sockets.
    let paused = Instant::now();
    c.pause(victim);
    let during = c.wait_view(
        others[0],
        &format!("partition {partition} led by one of {others:?} without {victim} in its ISR"),
        |v| {
            v.partitions(topic)
                .get(&partition)
                .is_some_and(|p| others.contains(&p.leader) && !p.isr.contains(&victim))
        },
    );
    let replaced = paused.elapsed();
    eprintln!(
        "broker {victim} (controller: {controller}) paused: partition {partition} led by {} \
         after {replaced:?}",
        during.partitions(topic)[&partition].leader,
    );
    // The victim stays frozen through the wait above, so its replacement already proves
    // the fencing; the bound only catches a fencing that drags. It is a session timeout,
    // plus the election of a new controller (split votes can take a few rounds on a loaded
    // machine: three rounds of 1 s were seen) and the fresh session a new controller grants
    // every broker, plus slack for the dozen clusters the other tests run at once.
    let bound = 5 * SESSION_TIMEOUT;
    assert!(
        replaced < bound,
        "broker {victim} (active controller: {controller}) was paused {replaced:?} before \
         it lost partition {partition}; the session timeout is {SESSION_TIMEOUT:?}"
    );
    let hold = 2 * SESSION_TIMEOUT;
    if let Some(rest) = hold.checked_sub(paused.elapsed()) {
        std::thread::sleep(rest);
    }
    let acked_while_paused = producer.acked_count();
    c.resume(victim);
    let resumed = Instant::now();

    // Producing goes on; the resumed broker drops any tail the new leader does not have,
    // catches up and is back in every ISR.
    producer.wait_acked(acked_while_paused + 500);
    wait_isr(&c, others[0], topic, &all);
    wait_isr(&c, victim, topic, &all);
    eprintln!(
        "broker {victim} resumed: back in every ISR after {:?}",
        resumed.elapsed()
    );
    producer.wait_acked(producer.acked_count() + 200);
    producer.stop();
    let (acked, sent) = producer.finish();
    let expected: BTreeSet<String> = acked.iter().map(u64::to_string).collect();
    let read = read_all(&c.bootstrap_of(&all), topic, &[0, 1, 2], &expected);
    assert_acked_once_in_order(&read, &acked, sent);

    // The resumed broker's copy: stop the partition's current leader so the first in-sync
    // replica in replica order, the resumed broker, serves it; read everything again.
    let leader = c.view_via(others[0]).partitions(topic)[&partition].leader;
    assert_ne!(
        leader, victim,
        "nothing moved partition {partition} back to broker {victim}"
    );
    assert_eq!(c.stop(&[leader]), vec![Some(0)], "broker {leader} exits 0");
    let live: Vec<i32> = all.iter().copied().filter(|&i| i != leader).collect();
    let after = wait_not_led_by(&c, live[0], topic, leader);
    assert_eq!(
        after[&partition].leader, victim,
        "partition {partition} goes to the first in-sync replica in replica order {:?}",
        before[&partition].replicas
    );
    let again = read_all(&c.bootstrap_of(&live), topic, &[0, 1, 2], &expected);
    assert_acked_once_in_order(&again, &acked, sent);
    assert_eq!(
        again.len(),
        read.len(),
        "the same records from the other replicas"
    );
    let truncations: Vec<String> = std::fs::read_to_string(c.node(victim).log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("truncating"))
        .map(str::to_string)
        .collect();
    eprintln!("broker {victim}'s truncations: {truncations:#?}");
}

#[test]
fn a_paused_leader_is_replaced_and_loses_nothing_when_resumed() {
    pause_a_leader(false);
}

#[test]
fn a_paused_controller_and_leader_is_replaced_and_loses_nothing_when_resumed() {
    pause_a_leader(true);
}

#[test]
fn acks_1_works_with_a_single_live_replica() {
    // Five voters: losing two brokers keeps a controller quorum (3 of 5), so the
    // controller can still fence them and shrink the ISR.
    let mut c = Cluster::started_n(5, &[REPLICA_LAG]);
    let all = c.ids();
    let topic = "lonely";
    let before = create_replicated(&c, 1, &all, topic, 1, 3, &[("min.insync.replicas", "2")]);
    let leader = before[&0].leader;
    let followers: Vec<i32> = before[&0]
        .replicas
        .iter()
        .copied()
        .filter(|&r| r != leader)
        .collect();
    assert_eq!(followers.len(), 2, "{before:?}");
    let bootstrap = c.bootstrap(leader);

    let mut acked = Vec::new();
    let reports = produce_values(&bootstrap, topic, 0, 50);
    assert_eq!(reports.failed(), vec![], "acks=all on a full ISR");
    acked.extend(reports.acked());

    for &f in &followers {
        c.kill(f);
    }
    let after = wait_isr(&c, leader, topic, &[leader]);
    assert_eq!(
        after[&0].leader, leader,
        "losing followers keeps the leader"
    );

    // acks=1 needs only the leader.
    let (p, reports) = reporting_producer(
        &bootstrap,
        &[
            ("acks", "1"),
            ("enable.idempotence", "false"),
            ("message.send.max.retries", "0"),
        ],
    );
    for i in 50..150 {
        send(&p, topic, Some(0), &key_of(i), &i.to_string());
    }
    p.flush(Duration::from_secs(20)).expect("flush");
    assert_eq!(
        reports.failed(),
        vec![],
        "acks=1 with the leader alone in the ISR"
    );
    assert_eq!(reports.acked(), (50..150).collect::<Vec<_>>());
    acked.extend(reports.acked());

    // acks=all does not: the ISR (1) is below min.insync.replicas (2).
    match produce_once(&bootstrap, topic, 0, "all", "150") {
        Err((Some(RDKafkaErrorCode::NotEnoughReplicas), _)) => {}
        other => panic!("acks=all with ISR 1 < min.insync.replicas 2: {other:?}"),
    }

    // The followers come back, fetch what they missed and rejoin the ISR.
    for &f in &followers {
        c.start(f);
    }
    wait_isr(&c, leader, topic, &[leader, followers[0], followers[1]]);
    for &f in &followers {
        wait_isr(&c, f, topic, &[leader, followers[0], followers[1]]);
    }

    let expected: BTreeSet<String> = acked.iter().map(u64::to_string).collect();
    let read = read_all(&bootstrap, topic, &[0], &expected);
    let values: Vec<u64> = read.iter().map(|r| r.2.parse().unwrap()).collect();
    assert_eq!(
        values,
        (0..150).collect::<Vec<_>>(),
        "refused record absent"
    );

    // The followers have them too: with the leader stopped, one of them serves them.
    assert_eq!(c.stop(&[leader]), vec![Some(0)], "broker {leader} exits 0");
    let new = wait_not_led_by(&c, followers[0], topic, leader);
    assert!(followers.contains(&new[&0].leader), "{new:?}");
    let again = read_all(&c.bootstrap_of(&followers), topic, &[0], &expected);
    let values: Vec<u64> = again.iter().map(|r| r.2.parse().unwrap()).collect();
    assert_eq!(values, (0..150).collect::<Vec<_>>(), "read from a follower");
}

#[test]
fn delete_records_reaches_every_replica() {
    let mut c = Cluster::started(&[REPLICA_LAG]);
    let topic = "trimmed";
    let before = create_replicated(
        &c,
        1,
        &[1, 2, 3],
        topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    );
    let leader = before[&0].leader;
    let reports = produce_values(&c.bootstrap(leader), topic, 0, 100);
    assert_eq!(reports.failed(), vec![], "acks=all on a full ISR");

    // Everything below offset 60 goes, through the leader.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(60))
        .expect("partition offset");
    let deleted = runtime()
        .block_on(c.admin(leader).delete_records(&tpl, &AdminOptions::new()))
        .expect("DeleteRecords");
    let low = deleted.elements()[0].offset();
    assert_eq!(low, Offset::Offset(60), "{deleted:?}");

    // DeleteRecords is answered once every live replica has deleted, so the leader can
    // go at once: the new leader (one of those followers) must not serve what was deleted.
    let follower = before[&0]
        .replicas
        .iter()
        .copied()
        .find(|&r| r != leader)
        .unwrap();
    produce_values(&c.bootstrap(leader), topic, 100, 101);
    c.kill(leader);
    let survivors: Vec<i32> = (1..=3).filter(|&i| i != leader).collect();
    wait_isr(&c, follower, topic, &survivors);
    let consumer = assign_consumer(&c.bootstrap(follower), "trimmed-reader");
    // The new leader's high watermark reaches the last acknowledged record once the other
    // survivor has fetched from it; its log start is the deleted one from the first answer.
    wait_until("watermarks (60, 101) from the new leader", || {
        let (low, high) = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        assert_eq!(low, 60, "the deletion was replicated");
        if high == 101 {
            Ok(())
        } else {
            Err(format!("high watermark {high}"))
        }
    });
}

/// Kills `node` and waits until the others lead everything of `topic`, then restarts it
/// and waits until it is back in every ISR; returns the partitions as they are then.
/// (Nothing but a preferred leader election gives it leadership back: its partitions all
/// had leaders while it was down.)
fn bounce_out_of_leadership(
    c: &mut Cluster,
    topic: &str,
    node: i32,
) -> BTreeMap<i32, PartitionView> {
    let others: Vec<i32> = (1..=3).filter(|&i| i != node).collect();
    c.kill(node);
    wait_isr(c, others[0], topic, &others);
    c.start(node);
    wait_isr(c, others[0], topic, &[1, 2, 3])
}

#[test]
fn preferred_leader_election_by_hand_gives_leadership_back() {
    let mut c = Cluster::started(&[REPLICA_LAG, "auto.leader.rebalance.enable=false"]);
    let topic = "preferred";
    create_replicated(&c, 1, &[1, 2, 3], topic, 6, 3, &[]);
    let after = bounce_out_of_leadership(&mut c, topic, 1);
    // With auto.leader.rebalance.enable=false it stays without leadership.
    assert!(led_by(&after, 1).is_empty(), "{after:?}");

    let elect = |args: &[&str]| {
        let out = fjord()
            .args(["leader-election", "--bootstrap-server", &c.bootstrap(2)])
            .args(args)
            .output()
            .expect("run fjord leader-election");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // One partition by name, then all of them.
    let (code, out, err) = elect(&[
        "--election-type",
        "PREFERRED",
        "--topic",
        topic,
        "--partition",
        "0",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "Successfully completed leader election (PREFERRED) for partitions {topic}-0"
        )),
        "{out}"
    );
    let (code, out, err) = elect(&["--election-type", "preferred", "--all-topic-partitions"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("{topic}-3")), "{out}");
    let v = c.wait_view(2, "every partition led by its preferred replica", |v| {
        v.partitions(topic)
            .values()
            .all(|p| p.leader == p.replicas[0])
    });
    assert_eq!(leader_counts(&v.partitions(topic)).get(&1), Some(&2));
    // Asked again for a partition already led by its preferred replica.
    let (code, out, _) = elect(&[
        "--election-type",
        "PREFERRED",
        "--topic",
        topic,
        "--partition",
        "0",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&format!(
            "Valid replica already elected for partitions {topic}-0"
        )),
        "{out}"
    );
    // A usage error is one line and exit 2.
    let (code, _, err) = elect(&["--election-type", "PREFERRED"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn leadership_returns_to_preferred_replicas_on_its_own() {
    let mut c = Cluster::started(&[REPLICA_LAG, "leader.imbalance.check.interval.seconds=1"]);
    let topic = "rebalanced";
    create_replicated(&c, 1, &[1, 2, 3], topic, 6, 3, &[]);
    // The automatic election may already have run by the time the ISR is full again,
    // so only the end state is checked.
    bounce_out_of_leadership(&mut c, topic, 3);
    let v = c.wait_view(
        1,
        "every partition led by its preferred replica again",
        |v| {
            let ps = v.partitions(topic);
            !ps.is_empty() && ps.values().all(|p| p.leader == p.replicas[0])
        },
    );
    assert_eq!(leader_counts(&v.partitions(topic)).get(&3), Some(&2));
}

/// Records what librdkafka's statistics say about partition 0 of one topic: the broker it
/// fetches from and the leader.
struct FetchFrom {
    topic: String,
    seen: Mutex<Option<(i32, i32)>>,
}

impl ClientContext for FetchFrom {
    fn stats(&self, stats: rdkafka::Statistics) {
        if let Some(p) = stats
            .topics
            .get(&self.topic)
            .and_then(|t| t.partitions.get(&0))
        {
            *self.seen.lock().unwrap() = Some((p.broker, p.leader));
        }
    }
}

impl rdkafka::consumer::ConsumerContext for FetchFrom {}

/// Reads every record of partition 0 of `topic` with a consumer in `rack` (none: no
/// `client.rack`); returns how many it read and the broker it was fetching from then.
fn read_from_rack(
    bootstrap: &str,
    topic: &str,
    rack: Option<&str>,
    count: usize,
) -> (usize, i32, i32) {
    let mut cfg = client_config(bootstrap);
    cfg.set("group.id", "rack-reader")
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "200");
    if let Some(rack) = rack {
        cfg.set("client.rack", rack);
    }
    let consumer: BaseConsumer<FetchFrom> = cfg
        .create_with_context(FetchFrom {
            topic: topic.to_string(),
            seen: Mutex::new(None),
        })
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition offset");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + PATIENCE;
    let mut read = 0;
    while read < count {
        assert!(
            Instant::now() < deadline,
            "read {read} of {count} records of {topic}"
        );
        match consumer.poll(POLL) {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    // A fresh statistics report, taken after the reads.
    *consumer.context().seen.lock().unwrap() = None;
    let (broker, leader) = wait_until("a statistics report", || {
        consumer.poll(Duration::from_millis(50));
        consumer
            .context()
            .seen
            .lock()
            .unwrap()
            .ok_or_else(|| "none yet".to_string())
    });
    (read, broker, leader)
}

/// KIP-392: with the rack-aware replica selector, a consumer that names its rack
/// (`client.rack`) is sent by the leader to the in-sync follower in that rack and reads
/// everything from it; a consumer without a rack, or in the leader's, reads from the
/// leader.
#[test]
fn consumers_fetch_from_the_follower_in_their_rack() {
    let mut c = Cluster::new(&[
        REPLICA_LAG,
        "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector",
    ]);
    for id in 1..=3 {
        c.node_mut(id).extra.push(format!("broker.rack=zone-{id}"));
        c.start(id);
    }
    c.wait_for_brokers(&[1, 2, 3], &[1, 2, 3]);
    let topic = "nearby";
    let partitions = create_replicated(&c, 1, &[1, 2, 3], topic, 1, 3, &[]);
    let leader = partitions[&0].leader;
    let follower = partitions[&0]
        .replicas
        .iter()
        .copied()
        .find(|&r| r != leader)
        .expect("a follower");
    let records = records_for(&[0], 200);
    produce_all(&producer(&c.bootstrap(leader)), topic, &records);
    wait_isr(&c, leader, topic, &[1, 2, 3]);

    let bootstrap = c.bootstrap_of(&[1, 2, 3]);
    let near = format!("zone-{follower}");
    let (read, broker, seen_leader) = read_from_rack(&bootstrap, topic, Some(&near), 200);
    assert_eq!((read, seen_leader), (200, leader));
    assert_eq!(
        broker, follower,
        "a consumer in {near} fetches from follower {follower}"
    );

    let (_, broker, _) = read_from_rack(&bootstrap, topic, None, 200);
    assert_eq!(
        broker, leader,
        "a consumer without a rack fetches from the leader"
    );
    let at_leader = format!("zone-{leader}");
    let (_, broker, _) = read_from_rack(&bootstrap, topic, Some(&at_leader), 200);
    assert_eq!(
        broker, leader,
        "a consumer in the leader's rack fetches from it"
    );
}
