//! Three-node Fjord clusters as an operator runs them: real `fjord server` processes, each
//! with its own data directory and its PLAINTEXT and CONTROLLER listeners, driven through
//! librdkafka (the `rdkafka` crate).
//!
//! Every test starts its own cluster with short liveness timeouts and waits on conditions
//! with generous deadlines, so that the tests stay fast and do not depend on the load of
//! the machine. When a test fails, the tail of every node's log is printed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AlterConfig, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use support::*;

#[test]
fn any_broker_bootstraps_and_nodes_started_in_reverse_order_form_the_quorum() {
    let mut c = Cluster::new(&[]);
    let started = Instant::now();
    for id in [3, 2, 1] {
        c.start(id);
        // Not an assertion: the later nodes join a quorum that is still forming.
        std::thread::sleep(Duration::from_millis(700));
    }
    let views = c.wait_for_brokers(&[1, 2, 3], &[1, 2, 3]);
    eprintln!(
        "reverse-order start: all three brokers listed {:?} after the first start",
        started.elapsed()
    );
    let expected: BTreeMap<i32, (String, u16)> = c
        .nodes
        .iter()
        .map(|n| (n.id, ("127.0.0.1".to_string(), n.port)))
        .collect();
    for (id, v) in [1, 2, 3].iter().zip(&views) {
        assert!(
            v.answered_by.contains(&format!(":{}/", c.node(*id).port)),
            "broker {id} did not answer its own bootstrap: {v:?}"
        );
        assert_eq!(v.brokers, expected, "through broker {id}");
    }
    // Each view was taken once its broker named a controller; they may only differ if an
    // election ran in between, so look again until all agree.
    let controller = wait_until("the three brokers agree on the controller", || {
        let ids: Vec<i32> = (1..=3)
            .map(|id| c.try_view_via(id).map(|v| v.controller))
            .collect::<Result<_, _>>()?;
        if ids.iter().all(|&i| i == ids[0]) && (1..=3).contains(&ids[0]) {
            Ok(ids[0])
        } else {
            Err(format!("controller ids {ids:?}"))
        }
    });
    eprintln!("active controller: {controller}");
}

#[test]
fn six_partitions_spread_over_three_brokers_and_records_flow_across_brokers() {
    let c = Cluster::started(&[]);
    let admin = c.admin(2);
    create_topic(&admin, 2, "spread", 6).expect("create through broker 2");
    // Answered once broker 2 applied it: its metadata shows the topic at once.
    let v = c.view_via(2);
    let leaders = v.leaders("spread");
    assert_eq!(leaders.len(), 6, "{v:?}");
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    for leader in leaders.values() {
        *per_broker.entry(*leader).or_default() += 1;
    }
    assert_eq!(
        per_broker,
        BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
        "{leaders:?}"
    );
    // The other brokers learn it too.
    for id in [1, 3] {
        c.wait_view(id, "topic spread with the same leaders", |v| {
            v.leaders("spread") == leaders
        });
    }

    let partitions: Vec<i32> = (0..6).collect();
    let records = records_for(&partitions, 20);
    produce_all(&producer(&c.bootstrap(1)), "spread", &records);
    let consumed = consume_from_beginning(&c.bootstrap(3), "spread", &partitions, records.len());
    assert_same_per_partition(&records, &consumed);
}

#[test]
fn admin_requests_through_a_broker_that_is_not_the_controller() {
    let c = Cluster::started(&[]);
    let controller = c.wait_for_brokers(&[1], &[1, 2, 3])[0].controller;
    let others: Vec<i32> = (1..=3).filter(|&i| i != controller).collect();
    let (via, third) = (others[0], others[1]);
    let admin = c.admin(via);
    let rt = runtime();

    // Create.
    create_topic(&admin, via, "admin-a", 2).expect("create");
    let v = c.view_via(via);
    assert_eq!(v.leaders("admin-a").len(), 2, "{v:?}");

    // Alter a config; another broker describes it.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("admin-a")).set("retention.ms", "3600000");
    let results = rt
        .block_on(admin.alter_configs([&alter], &to_broker(via)))
        .expect("alter configs");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let describer = c.admin(third);
    let described = wait_until("DescribeConfigs through the third broker", || {
        let results = rt
            .block_on(
                describer
                    .describe_configs([&ResourceSpecifier::Topic("admin-a")], &to_broker(third)),
            )
            .map_err(|e| e.to_string())?;
        let resource = results
            .into_iter()
            .next()
            .ok_or("no result")?
            .map_err(|e| format!("{e:?}"))?;
        let value = resource
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .ok_or("no retention.ms")?;
        if value == "3600000" {
            Ok(value)
        } else {
            Err(format!("retention.ms is {value}"))
        }
    });
    assert_eq!(described, "3600000");

    // Create partitions.
    let more = NewPartitions::new("admin-a", 5);
    let results = rt
        .block_on(admin.create_partitions([&more], &to_broker(via)))
        .expect("create partitions");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let v = c.view_via(via);
    assert_eq!(v.leaders("admin-a").len(), 5, "{v:?}");

    // Delete.
    let results = rt
        .block_on(admin.delete_topics(&["admin-a"], &to_broker(via)))
        .expect("delete topics");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let v = c.view_via(via);
    assert!(!v.topics.contains_key("admin-a"), "{v:?}");
    c.wait_view(third, "admin-a gone", |v| !v.topics.contains_key("admin-a"));

    // A replication factor larger than the live brokers.
    let (code, message) = create_topic_raw(&admin, via, "admin-rf4", 1, 4);
    assert_eq!(
        code,
        RDKafkaErrorCode::InvalidReplicationFactor,
        "{message}"
    );
    assert_eq!(
        message,
        "Replication factor: 4 larger than available brokers: 3."
    );
    let v = c.view_via(via);
    assert!(!v.topics.contains_key("admin-rf4"), "{v:?}");

    // Every request was handled by `via` (which forwarded it), none by the controller.
    let handled = |id: i32, what: &str, topic: &str| {
        tail(&c.node(id).log_path(), 100_000)
            .lines()
            .any(|l| l.contains(what) && l.contains(topic))
    };
    for (what, topic) in [
        ("create topic", "admin-a"),
        ("topic configs altered", "admin-a"),
        ("partitions added", "admin-a"),
        ("deleted topic", "admin-a"),
        ("create topic refused", "admin-rf4"),
    ] {
        wait_until(
            &format!("broker {via} logs {what} {topic}"),
            || match handled(via, what, topic) {
                true => Ok(()),
                false => Err("not logged".to_string()),
            },
        );
        assert!(
            !handled(controller, what, topic),
            "the controller handled {what} {topic} itself"
        );
    }
}

#[test]
fn killing_the_controller_elects_another_and_the_survivors_keep_working() {
    let mut c = Cluster::started(&[]);
    let admin1 = c.admin(1);
    create_topic(&admin1, 1, "steady", 3).expect("create steady");
    let before = c.wait_view(1, "a controller and topic steady", |v| {
        v.leaders("steady").len() == 3
    });
    let old = before.controller;
    let survivors: Vec<i32> = (1..=3).filter(|&i| i != old).collect();
    let s = survivors[0];
    // A partition led by a survivor, with a producer that keeps producing through the election.
    let partition = *before
        .leaders("steady")
        .iter()
        .find(|(_, l)| **l == s)
        .expect("a partition on each broker")
        .0;
    let p = counting_producer(&c.bootstrap(s));
    let mut sent = Vec::new();
    let mut send = |p: &BaseProducer<Counting>, n: usize| {
        let value = format!("steady-{n}");
        p.send(
            BaseRecord::to("steady")
                .partition(partition)
                .key("k")
                .payload(&value),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
        sent.push((partition, "k".to_string(), value));
        p.poll(Duration::ZERO);
    };
    send(&p, 0);

    let killed = Instant::now();
    c.kill(old);
    let mut n = 1;
    // What each survivor named as controller, each time it changed.
    let mut seen: BTreeMap<i32, Vec<(Duration, i32)>> = BTreeMap::new();
    let new = loop {
        send(&p, n);
        n += 1;
        let mut named = Vec::new();
        for &id in &survivors {
            if let Ok(v) = c.try_view_via(id) {
                let said = seen.entry(id).or_default();
                if said.last().map(|l| l.1) != Some(v.controller) {
                    said.push((killed.elapsed(), v.controller));
                }
                named.push(v.controller);
            }
        }
        // The new controller once both survivors name the same one.
        if named.len() == 2
            && named[0] == named[1]
            && named[0] != old
            && survivors.contains(&named[0])
        {
            break named[0];
        }
        assert!(
            killed.elapsed() < PATIENCE,
            "the survivors named no common new controller within {PATIENCE:?}: {seen:?}"
        );
        std::thread::sleep(POLL);
    };
    let to_controller = killed.elapsed();

    let admin = c.admin(s);
    let mut attempts = 0;
    wait_until("create a topic through a survivor", || {
        attempts += 1;
        create_topic(&admin, s, "after-failover", 3)
    });
    let to_create = killed.elapsed();
    eprintln!(
        "controller {old} killed: new controller {new} in metadata after {to_controller:?}; \
         first successful CreateTopics through broker {s} after {to_create:?} ({attempts} attempts)"
    );

    for _ in 0..10 {
        send(&p, n);
        n += 1;
    }
    p.flush(Duration::from_secs(40)).expect("flush");
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(p.context().failed.load(SeqCst), 0);
    assert_eq!(p.context().delivered.load(SeqCst), sent.len());
    let consumed = consume_from_beginning(&c.bootstrap(s), "steady", &[partition], sent.len());
    assert_same_per_partition(&sent, &consumed);

    // The new topic works on a survivor too.
    let v = c.wait_view(s, "after-failover", |v| {
        v.leaders("after-failover").len() == 3
    });
    let (&q, _) = v
        .leaders("after-failover")
        .iter()
        .find(|(_, l)| survivors.contains(l))
        .expect("a partition of after-failover on a survivor");
    let records = records_for(&[q], 5);
    produce_all(&producer(&c.bootstrap(s)), "after-failover", &records);
    let consumed = consume_from_beginning(&c.bootstrap(s), "after-failover", &[q], records.len());
    assert_same_per_partition(&records, &consumed);

    // Until the survivors knew the new controller, Metadata could only name the old one
    // (not known to be gone yet) or none; never a broker that was not elected.
    eprintln!("controller ids the survivors named after the kill: {seen:?}");
    let wrong: Vec<(i32, Duration, i32)> = seen
        .iter()
        .flat_map(|(&id, said)| said.iter().map(move |&(t, c)| (id, t, c)))
        .filter(|&(_, _, c)| c != old && c != new && c != -1)
        .collect();
    assert!(
        wrong.is_empty(),
        "after killing controller {old}, survivors named controllers that were never elected \
         (broker, time after the kill, named controller): {wrong:?}; all they said: {seen:?}"
    );
}

#[test]
fn a_silent_broker_is_fenced_and_back_once_restarted() {
    let mut c = Cluster::started(&[]);
    let controller = c.wait_for_brokers(&[1], &[1, 2, 3])[0].controller;
    let victim = (1..=3).find(|&i| i != controller).unwrap();
    let survivor = (1..=3).find(|&i| i != victim).unwrap();

    let killed = Instant::now();
    c.kill(victim);
    let v = c.wait_view(survivor, "the killed broker fenced", |v| {
        !v.brokers.contains_key(&victim)
    });
    let fenced_after = killed.elapsed();
    eprintln!("broker {victim} killed: gone from metadata after {fenced_after:?}");
    assert!(
        fenced_after < SESSION_TIMEOUT + Duration::from_secs(10),
        "fenced after {fenced_after:?}"
    );
    assert_eq!(v.broker_ids().len(), 2, "{v:?}");

    let admin = c.admin(survivor);
    create_topic(&admin, survivor, "after-fence", 6).expect("create after fence");
    let v = c.view_via(survivor);
    let leaders = v.leaders("after-fence");
    assert_eq!(leaders.len(), 6, "{v:?}");
    assert!(
        leaders.values().all(|l| *l != victim),
        "a partition placed on fenced broker {victim}: {leaders:?}"
    );
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    for leader in leaders.values() {
        *per_broker.entry(*leader).or_default() += 1;
    }
    assert!(per_broker.values().all(|&n| n == 3), "{leaders:?}");

    let restarted = Instant::now();
    c.start(victim);
    c.wait_for_brokers(&[survivor, victim], &[1, 2, 3]);
    eprintln!(
        "broker {victim} restarted: back in metadata after {:?}",
        restarted.elapsed()
    );
}

#[test]
fn a_restarted_cluster_keeps_topics_records_and_committed_offsets() {
    let mut c = Cluster::started(&["group.initial.rebalance.delay.ms=0"]);
    let admin = c.admin(1);
    create_topic(&admin, 1, "kept-a", 3).expect("create kept-a");
    create_topic(&admin, 2, "kept-b", 2).expect("create kept-b");
    let before = c.wait_view(3, "both topics", |v| {
        v.leaders("kept-a").len() == 3 && v.leaders("kept-b").len() == 2
    });

    let a: Vec<i32> = (0..3).collect();
    let records = records_for(&a, 30);
    produce_all(&producer(&c.bootstrap(2)), "kept-a", &records);
    let b_records = records_for(&[0, 1], 5);
    produce_all(&producer(&c.bootstrap(3)), "kept-b", &b_records);

    // A group reads everything of kept-a and commits.
    let group = assign_consumer(&c.bootstrap(1), "kept-group");
    group.subscribe(&["kept-a"]).expect("subscribe");
    let consumed = poll_records(&group, records.len());
    assert_same_per_partition(&records, &consumed);
    group
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    // The list librdkafka returns holds references to its partitions: it must be gone
    // before the consumer is dropped, or rd_kafka_destroy waits for it forever.
    let committed = offsets(
        &group
            .committed(Duration::from_secs(15))
            .expect("committed offsets"),
    );
    assert_eq!(
        committed,
        BTreeMap::from([
            (0, Offset::Offset(30)),
            (1, Offset::Offset(30)),
            (2, Offset::Offset(30))
        ])
    );
    drop(group);

    // Nothing was killed: no node has a reason to log an error. Checked at the end, so
    // that the restart itself is checked either way.
    let errors: Vec<String> = c
        .nodes
        .iter()
        .flat_map(|n| {
            tail(&n.log_path(), 100_000)
                .lines()
                .filter(|l| l.contains(" ERROR "))
                .map(|l| format!("node {}: {l}", n.id))
                .collect::<Vec<_>>()
        })
        .collect();
    let codes = c.stop(&[1, 2, 3]);
    assert_eq!(codes, vec![Some(0); 3], "exit codes after SIGTERM");
    let restarted = Instant::now();
    for id in 1..=3 {
        c.start(id);
    }
    c.wait_for_brokers(&[1, 2, 3], &[1, 2, 3]);
    eprintln!(
        "restart of all three nodes: ready after {:?}",
        restarted.elapsed()
    );

    let after = c.wait_view(1, "both topics after the restart", |v| {
        v.topics.contains_key("kept-a") && v.topics.contains_key("kept-b")
    });
    assert_eq!(after.leaders("kept-a"), before.leaders("kept-a"));
    assert_eq!(after.leaders("kept-b"), before.leaders("kept-b"));

    let again = consume_from_beginning(&c.bootstrap(3), "kept-a", &a, records.len());
    assert_same_per_partition(&records, &again);
    let again = consume_from_beginning(&c.bootstrap(1), "kept-b", &[0, 1], b_records.len());
    assert_same_per_partition(&b_records, &again);

    let reader = assign_consumer(&c.bootstrap(2), "kept-group");
    let mut tpl = TopicPartitionList::new();
    for &p in &a {
        tpl.add_partition("kept-a", p);
    }
    let after_restart = wait_until("the group's committed offsets", || {
        let got = reader
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let got = offsets(&got);
        if got == committed {
            Ok(got)
        } else {
            Err(format!("committed offsets {got:?}"))
        }
    });
    assert_eq!(after_restart, committed);
    assert!(
        errors.is_empty(),
        "errors logged before the restart:\n{}",
        errors.join("\n")
    );
}

/// Kills a server a test started by itself if the test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a server that must refuse to start; returns its exit code and stderr.
fn refused(mut cmd: Command) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, PATIENCE);
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.is_some(), "still running after {PATIENCE:?}: {err}");
    (status.and_then(|s| s.code()), err)
}

/// What is wrong with a refusal: exit code 2 and one line (besides the log lines written
/// before it, which start with a timestamp) that mentions `needle`.
fn refusal_problems(case: &str, code: Option<i32>, err: &str, needle: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    if code != Some(2) {
        problems.push(format!("{case}: exit code {code:?}, not 2"));
    }
    if lines.len() != 1 {
        problems.push(format!("{case}: {} lines, not one", lines.len()));
    }
    if !err.contains(needle) {
        problems.push(format!("{case}: does not mention {needle}"));
    }
    if lines.iter().any(|l| l.contains("  ")) {
        problems.push(format!("{case}: a run of spaces inside the message"));
    }
    if !problems.is_empty() {
        problems.push(format!("{case} stderr: {err}"));
    }
    problems
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(POLL);
    }
}

#[test]
fn startup_refusals_are_one_line_and_exit_2() {
    // (a) A controller that is not one of the voters.
    let c = Cluster::new(&[]);
    let mut cmd = c.command(1);
    cmd.args(["--override", "node.id=4"]);
    let (code, err) = refused(cmd);
    let mut problems = refusal_problems("(a) node.id 4", code, &err, "controller.quorum.voters");

    // (b) A data directory of a one-voter quorum restarted with another voter list.
    let dir = tempfile::tempdir().unwrap();
    let (port, cport) = (free_port(), free_port());
    let member = |voters: &str| {
        let mut cmd = fjord();
        cmd.args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--override", "node.id=1"])
            .args([
                "--override",
                &format!("listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"),
            ])
            .args(["--override", "controller.listener.names=CONTROLLER"])
            .args(["--override", &format!("controller.quorum.voters={voters}")]);
        for o in FAST {
            cmd.args(["--override", o]);
        }
        cmd
    };
    let log = dir.path().join("first-run.log");
    let mut first = Guard(
        member(&format!("1@127.0.0.1:{cport}"))
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn"),
    );
    let ready = Instant::now() + PATIENCE;
    while view(&format!("127.0.0.1:{port}")).map(|v| v.broker_ids()) != Ok(BTreeSet::from([1])) {
        assert!(
            Instant::now() < ready,
            "one-voter quorum not up: {}",
            tail(&log, 40)
        );
        std::thread::sleep(POLL);
    }
    sigterm(&first.0);
    let status = wait_exit(&mut first.0, PATIENCE);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", tail(&log, 40));
    let (code, err) = refused(member(&format!(
        "1@127.0.0.1:{cport},2@127.0.0.1:{},3@127.0.0.1:{}",
        free_port(),
        free_port()
    )));
    problems.extend(refusal_problems("(b) other voters", code, &err, "cluster"));

    // (c) A plain one-node server's data directory started with voters.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut plain = Guard(
        fjord()
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_for_port(port);
    sigterm(&plain.0);
    let status = wait_exit(&mut plain.0, PATIENCE);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let c = Cluster::new(&[]);
    let (code, err) = refused(c.command_in(1, dir.path()));
    problems.extend(refusal_problems(
        "(c) one-node directory",
        code,
        &err,
        "controller.quorum.voters",
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The active controller, as `fjord metadata-quorum describe --status` through a broker
/// reports it.
fn quorum_leader(bootstrap: &str) -> Result<i32, String> {
    let out = fjord()
        .args([
            "metadata-quorum",
            "--bootstrap-server",
            bootstrap,
            "describe",
            "--status",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("LeaderId:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&id: &i32| id >= 0)
        .ok_or_else(|| {
            format!(
                "no leader in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Controller-only and broker-only nodes (`process.roles`), as a production KRaft cluster
/// runs: three controllers form the quorum; three brokers follow it as observers, two
/// told the voters and one only `controller.quorum.bootstrap.servers`. Topics land on the
/// brokers alone, clients are told a broker as controller, admin requests through any
/// broker reach the active controller (also after a kill -9 of it), and a broker killed
/// and restarted from its data directory follows the quorum again.
#[test]
fn controller_only_and_broker_only_nodes_form_a_cluster() {
    use Role::{Broker, Controller};
    let mut c = Cluster::with_roles(
        &[Controller, Controller, Controller, Broker, Broker, Broker],
        &[],
    );
    let controllers = (1..=3)
        .map(|id| format!("127.0.0.1:{}", c.node(id).controller_port))
        .collect::<Vec<_>>()
        .join(",");
    // Broker 6 knows one controller, most likely not the active one: that one passes its
    // request to join on.
    c.node_mut(6).extra = vec![
        "controller.quorum.voters=".into(),
        format!(
            "controller.quorum.bootstrap.servers=127.0.0.1:{}",
            c.node(1).controller_port
        ),
    ];

    // Refusals first, one line and exit 2 each: a voter without the controller role, and
    // a controller without the voter list.
    let mut cmd = c.command(4);
    cmd.args(["--override", "node.id=2"]);
    let (code, err) = refused(cmd);
    let mut problems = refusal_problems("broker-only voter", code, &err, "process.roles");
    let mut cmd = c.command(1);
    cmd.args(["--override", "controller.quorum.voters="]).args([
        "--override",
        &format!("controller.quorum.bootstrap.servers={controllers}"),
    ]);
    let (code, err) = refused(cmd);
    problems.extend(refusal_problems(
        "controller without voters",
        code,
        &err,
        "controller.quorum.voters",
    ));
    assert!(problems.is_empty(), "{problems:#?}");

    for id in 1..=6 {
        c.start(id);
    }
    let brokers = [4, 5, 6];
    let views = c.wait_for_brokers(&brokers, &brokers);
    for v in &views {
        assert_eq!(
            v.broker_ids(),
            BTreeSet::from(brokers),
            "controllers are not brokers"
        );
    }
    let admin = c.admin(6);
    create_topic_with(&admin, 6, "observed", 3, 3, &[]).expect("create through broker 6");
    let view = c.wait_view(4, "topic observed", |v| v.partitions("observed").len() == 3);
    for (p, pv) in view.partitions("observed") {
        assert_eq!(pv.replica_set(), BTreeSet::from(brokers), "partition {p}");
    }
    let records = records_for(&[0, 1, 2], 30);
    produce_all(&producer(&c.bootstrap_of(&brokers)), "observed", &records);
    let read = consume_from_beginning(&c.bootstrap(5), "observed", &[0, 1, 2], records.len());
    assert_same_per_partition(&records, &read);

    // Kill -9 the active controller: another controller takes over, and an admin request
    // through a broker succeeds again.
    let leader = wait_until("an active controller", || quorum_leader(&c.bootstrap(4)));
    // The brokers are the quorum's observers.
    let out = fjord()
        .args([
            "metadata-quorum",
            "--bootstrap-server",
            &c.bootstrap(5),
            "describe",
            "--replication",
        ])
        .output()
        .expect("metadata-quorum");
    let text = String::from_utf8_lossy(&out.stdout);
    let observers: BTreeSet<i32> = text
        .lines()
        .filter(|l| l.trim_end().ends_with("Observer"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(observers, BTreeSet::from(brokers), "{text}");
    assert!(
        (1..=3).contains(&leader),
        "controller {leader} is a controller node"
    );
    c.kill(leader);
    wait_until("a topic created after the controller was killed", || {
        create_topic_with(&c.admin(4), 4, "after-failover", 1, 3, &[]).or_else(|e| {
            if e.contains("already exists") {
                Ok(())
            } else {
                Err(e)
            }
        })
    });
    let new_leader = wait_until("a new active controller", || quorum_leader(&c.bootstrap(5)));
    assert_ne!(new_leader, leader);
    c.wait_view(6, "topic after-failover", |v| {
        v.partitions("after-failover").len() == 1
    });

    // A broker-only node killed and restarted follows the quorum again and rejoins every ISR.
    c.kill(4);
    c.start(4);
    c.wait_view(5, "broker 4 back in every ISR of observed", |v| {
        v.broker_ids().contains(&4)
            && v.partitions("observed")
                .values()
                .all(|p| p.isr_set() == BTreeSet::from(brokers))
    });
    c.wait_view(4, "broker 4 knowing topic after-failover", |v| {
        v.partitions("after-failover").len() == 1
    });
}

/// A group coordinator cut off from the quorum (here: both other nodes frozen) cannot
/// know whether the controller fenced it and another broker took its groups over, and
/// commits made there since. Once its session may have ended it answers OffsetFetch no
/// more, so that a consumer never rewinds to an offset from before; when the quorum is
/// back it answers again.
#[test]
fn a_group_coordinator_cut_off_from_the_quorum_stops_answering_offset_fetches() {
    let c = Cluster::started(&[]);
    let admin = c.admin(1);
    create_topic(&admin, 1, "cut-off", 1).expect("create cut-off");
    let group = "cut-off-group";
    let mut committed = TopicPartitionList::new();
    committed
        .add_partition_offset("cut-off", 0, Offset::Offset(7))
        .expect("offset");
    wait_until("the offset committed", || {
        assign_consumer(&c.bootstrap(1), group)
            .commit(&committed, CommitMode::Sync)
            .map_err(|e| e.to_string())
    });
    let v = c.wait_view(1, "__consumer_offsets", |v| {
        !v.leaders("__consumer_offsets").is_empty()
    });
    let leaders = v.leaders("__consumer_offsets");
    let index = fjord_broker::group::offsets::partition_for(group, leaders.len() as i32);
    let coordinator = leaders[&index];
    let others: Vec<i32> = (1..=3).filter(|&id| id != coordinator).collect();

    let reader = assign_consumer(&c.bootstrap(coordinator), group);
    let mut asked = TopicPartitionList::new();
    asked.add_partition("cut-off", 0);
    let fetch = || {
        reader
            .committed_offsets(asked.clone(), Duration::from_secs(2))
            .map(|tpl| offsets(&tpl))
    };
    let want = BTreeMap::from([(0, Offset::Offset(7))]);
    assert_eq!(fetch().expect("the committed offset"), want);

    for &id in &others {
        c.pause(id);
    }
    let paused = Instant::now();
    while let Ok(got) = fetch() {
        assert_eq!(got, want);
        assert!(
            paused.elapsed() < SESSION_TIMEOUT + Duration::from_secs(5),
            "node {coordinator} still answers OffsetFetch {:?} after the quorum was lost",
            paused.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "coordinator {coordinator} cut off: OffsetFetch refused after {:?}",
        paused.elapsed()
    );
    // And says so, once, for the operator.
    wait_until("the cut-off coordinator's warning", || {
        let log = tail(&c.node(coordinator).log_path(), 200);
        match log
            .matches("not coordinating groups or transactions")
            .count()
        {
            1 => Ok(()),
            n => Err(format!("{n} warnings:\n{log}")),
        }
    });

    for &id in &others {
        c.resume(id);
    }
    let resumed = Instant::now();
    let again = wait_until("the committed offset once the quorum is back", || {
        fetch().map_err(|e| e.to_string())
    });
    assert_eq!(again, want);
    eprintln!(
        "quorum back: OffsetFetch answered after {:?}",
        resumed.elapsed()
    );
}
