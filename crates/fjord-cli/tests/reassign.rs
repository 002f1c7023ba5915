//! `fjord reassign-partitions` against a real cluster: a broker that joins empty is filled
//! by a reassignment planned with `--generate`, started with `--execute` under a throttle,
//! watched with `--list` and `--verify`, while an idempotent acks=all producer keeps
//! writing; nothing acknowledged may be lost or duplicated, the broker left behind must
//! drop its copies, and the throttles must be gone once `--verify` sees the end.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use support::load::*;
use support::*;

/// How long a reassignment may take once it is no longer held back by its throttle.
const MOVE_PATIENCE: Duration = Duration::from_secs(120);

/// A follower that has not caught up for this long leaves the ISR.
const REPLICA_LAG: &str = "replica.lag.time.max.ms=2000";

/// A throttle so low that no replica can catch up while it holds.
const HOLDING_THROTTLE: &str = "1";
/// A throttle that lets the move finish at once.
const RELEASED_THROTTLE: &str = "100000000";

/// Runs `fjord reassign-partitions` with `args`: (exit code, stdout, stderr).
fn reassign(bootstrap: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = fjord()
        .args(["reassign-partitions", "--bootstrap-server", bootstrap])
        .args(args)
        .output()
        .expect("run fjord reassign-partitions");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The dynamic configs `fjord configs --describe` shows for `--topic T` or `--broker ID`.
fn dynamic_configs(bootstrap: &str, entity: &str, name: &str) -> String {
    let out = fjord()
        .args(["configs", "--bootstrap-server", bootstrap, "--describe"])
        .args([entity, name])
        .output()
        .expect("run fjord configs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "configs --describe {entity} {name}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The JSON line printed after the line `heading`, as topic-partition to replicas.
fn plan_after(output: &str, heading: &str) -> (String, BTreeMap<(String, i32), Vec<i32>>) {
    let mut lines = output.lines();
    lines
        .by_ref()
        .find(|l| *l == heading)
        .unwrap_or_else(|| panic!("no line {heading:?} in:\n{output}"));
    let json = lines
        .next()
        .unwrap_or_else(|| panic!("nothing after {heading:?} in:\n{output}"));
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: not JSON: {json}"));
    assert_eq!(v["version"], 1, "{json}");
    let mut plan = BTreeMap::new();
    for p in v["partitions"].as_array().expect("partitions") {
        let replicas: Vec<i32> = p["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .map(|r| r.as_i64().expect("broker id") as i32)
            .collect();
        let dirs = p["log_dirs"].as_array().expect("log_dirs");
        assert_eq!(dirs.len(), replicas.len(), "{json}");
        assert!(dirs.iter().all(|d| d == "any"), "{json}");
        let key = (
            p["topic"].as_str().expect("topic").to_string(),
            p["partition"].as_i64().expect("partition") as i32,
        );
        plan.insert(key, replicas);
    }
    (json.to_string(), plan)
}

/// The names in `dir` of partition directories of `topic`, renamed aside or not.
fn partition_dirs(dir: &Path, topic: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| n.starts_with(&format!("{topic}-")))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_new_broker_is_filled_by_reassignment_while_producers_run() {
    let mut c = Cluster::with_roles(
        &[Role::Combined, Role::Combined, Role::Combined, Role::Broker],
        &[REPLICA_LAG, "auto.leader.rebalance.enable=false"],
    );
    // Three nodes form the quorum; broker 4, broker-only, joins later, empty.
    for id in 1..=3 {
        c.start(id);
    }
    c.wait_for_brokers(&[1, 2, 3], &[1, 2, 3]);
    let topic = "moving";
    let partitions = [0, 1, 2];
    let admin = c.admin(1);
    create_topic_with(&admin, 1, topic, 3, 3, &[("min.insync.replicas", "2")])
        .unwrap_or_else(|e| panic!("create {topic}: {e}"));
    let before = c.wait_view(1, "every partition of the topic fully in sync", |v| {
        let ps = v.partitions(topic);
        ps.len() == 3 && ps.values().all(|p| p.isr.len() == 3 && p.leader > 0)
    });
    let bootstrap = c.bootstrap_of(&[1, 2, 3]);

    // Data already there, so that copying it to the new broker takes a while: about
    // a megabyte per partition.
    let padding = "x".repeat(1000);
    let preload: Vec<(i32, String, String)> = (0..1000)
        .flat_map(|i| {
            partitions
                .iter()
                .map(|&p| (p, format!("pre{p}"), format!("pre-{p}-{i}-{padding}")))
                .collect::<Vec<_>>()
        })
        .collect();
    produce_all(&producer(&bootstrap), topic, &preload);
    let producing = Background::until_stopped(
        bootstrap.clone(),
        topic,
        Duration::from_millis(3),
        &[("message.timeout.ms", "60000")],
    );
    producing.wait_acked(100);

    c.start(4);
    c.wait_for_brokers(&[1], &[1, 2, 3, 4]);

    // --generate: the plan moves every partition onto 2, 3 and 4.
    let dir = tempfile::tempdir().expect("temp dir");
    let topics_file = dir.path().join("topics.json");
    std::fs::write(
        &topics_file,
        format!(r#"{{"topics":[{{"topic":"{topic}"}}],"version":1}}"#),
    )
    .expect("write topics file");
    let topics_arg = topics_file.to_str().expect("utf-8 path");
    let (code, out, err) = reassign(
        &bootstrap,
        &[
            "--generate",
            "--topics-to-move-json-file",
            topics_arg,
            "--broker-list",
            "2,3,4",
        ],
    );
    assert_eq!(code, Some(0), "generate: {out}{err}");
    let (_, current) = plan_after(&out, "Current partition replica assignment");
    let original: BTreeMap<(String, i32), Vec<i32>> = before
        .partitions(topic)
        .into_iter()
        .map(|(p, v)| ((topic.to_string(), p), v.replicas))
        .collect();
    assert_eq!(current, original, "{out}");
    let (proposed_json, proposed) =
        plan_after(&out, "Proposed partition reassignment configuration");
    assert_eq!(proposed.len(), 3, "{out}");
    let new_set: BTreeSet<i32> = [2, 3, 4].into();
    for (tp, r) in &proposed {
        assert_eq!(
            r.iter().copied().collect::<BTreeSet<_>>(),
            new_set,
            "{tp:?}"
        );
    }
    // Leaders rotate over the new brokers.
    let leaders: BTreeSet<i32> = proposed.values().map(|r| r[0]).collect();
    assert_eq!(leaders, new_set, "{out}");
    // The same question gets the same answer.
    let (_, again, _) = reassign(
        &bootstrap,
        &[
            "--generate",
            "--topics-to-move-json-file",
            topics_arg,
            "--broker-list",
            "2,3,4",
        ],
    );
    assert_eq!(again, out);

    // --execute, held back by a throttle no replica can catch up under.
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, &proposed_json).expect("write plan");
    let plan_arg = plan_file.to_str().expect("utf-8 path");
    let (code, out, err) = reassign(
        &bootstrap,
        &[
            "--execute",
            "--reassignment-json-file",
            plan_arg,
            "--throttle",
            HOLDING_THROTTLE,
        ],
    );
    assert_eq!(code, Some(0), "execute: {out}{err}");
    let (_, rollback) = plan_after(&out, "Current partition replica assignment");
    assert_eq!(rollback, original, "{out}");
    for line in [
        "Save this to use as the --reassignment-json-file option during rollback",
        "Warning: You must run --verify periodically, until the reassignment completes, \
         to ensure the throttle is removed.",
        &format!("The inter-broker throttle limit was set to {HOLDING_THROTTLE} B/s"),
        &format!("Successfully started partition reassignments for {topic}-0,{topic}-1,{topic}-2"),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }

    // The throttle is in place: rates on every broker involved, replica lists on the topic.
    for b in ["1", "2", "3", "4"] {
        let text = dynamic_configs(&bootstrap, "--broker", b);
        for rate in [
            "leader.replication.throttled.rate",
            "follower.replication.throttled.rate",
        ] {
            assert!(
                text.contains(&format!("  {rate}={HOLDING_THROTTLE} ")),
                "broker {b}: {text}"
            );
        }
    }
    let text = dynamic_configs(&bootstrap, "--topic", topic);
    let leader_list: Vec<String> = original
        .iter()
        .flat_map(|((_, p), r)| r.iter().map(move |b| format!("{p}:{b}")))
        .collect();
    assert!(
        text.contains(&format!(
            "  leader.replication.throttled.replicas={} ",
            leader_list.join(",")
        )),
        "{text}"
    );
    assert!(
        text.contains("  follower.replication.throttled.replicas=0:4,1:4,2:4 "),
        "{text}"
    );

    // While it is held: --list shows every move, --verify says it is in progress and
    // leaves the throttle alone, and another --execute is refused.
    let (code, out, err) = reassign(&bootstrap, &["--list"]);
    assert_eq!(code, Some(0), "list: {out}{err}");
    assert_eq!(
        out.lines().next(),
        Some("Current partition reassignments:"),
        "{out}"
    );
    for p in partitions {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{topic}-{p}: replicas: ")))
            .unwrap_or_else(|| panic!("partition {p} not listed:\n{out}"));
        assert!(
            line.contains(" adding: 4.") && line.ends_with(" removing: 1."),
            "{line}"
        );
    }
    let (code, out, err) = reassign(
        &bootstrap,
        &["--verify", "--reassignment-json-file", plan_arg],
    );
    assert_eq!(code, Some(0), "verify: {out}{err}");
    assert!(
        out.contains(&format!(
            "Reassignment of partition {topic}-0 is still in progress."
        )),
        "{out}"
    );
    assert!(!out.contains("Clearing"), "{out}");
    let (code, out, err) = reassign(
        &bootstrap,
        &["--execute", "--reassignment-json-file", plan_arg],
    );
    assert_eq!(code, Some(1), "a second execute: {out}{err}");
    assert!(err.contains("--additional"), "{err}");

    // --additional with a higher throttle lets it finish, as with Kafka's tool.
    let (code, out, err) = reassign(
        &bootstrap,
        &[
            "--execute",
            "--additional",
            "--reassignment-json-file",
            plan_arg,
            "--throttle",
            RELEASED_THROTTLE,
        ],
    );
    assert_eq!(code, Some(0), "execute --additional: {out}{err}");
    // The rollback plan of a move under way is still where the partitions came from (as
    // sets: metadata lists a partition's replicas in the move's order meanwhile).
    let (_, rollback) = plan_after(&out, "Current partition replica assignment");
    let as_sets =
        |plan: &BTreeMap<(String, i32), Vec<i32>>| -> BTreeMap<(String, i32), BTreeSet<i32>> {
            plan.iter()
                .map(|(k, r)| (k.clone(), r.iter().copied().collect()))
                .collect()
        };
    assert_eq!(as_sets(&rollback), as_sets(&original), "{out}");
    assert!(
        out.contains(&format!(
            "The inter-broker throttle limit was set to {RELEASED_THROTTLE} B/s"
        )),
        "{out}"
    );

    // --verify until every partition is done; the last run clears the throttles.
    let deadline = Instant::now() + MOVE_PATIENCE;
    let out = loop {
        let (code, out, err) = reassign(
            &bootstrap,
            &["--verify", "--reassignment-json-file", plan_arg],
        );
        assert_eq!(code, Some(0), "verify: {out}{err}");
        if out.matches(" is completed.").count() == 3 {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "not done after {MOVE_PATIENCE:?}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        out.lines().next(),
        Some("Status of partition reassignment:"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == "Clearing broker-level throttles on brokers 1,2,3,4"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == format!("Clearing topic-level throttles on topic {topic}")),
        "{out}"
    );
    let (_, out, _) = reassign(&bootstrap, &["--list"]);
    assert_eq!(out, "No partition reassignments found.\n");

    // The producer kept going throughout; then every acknowledged value is there once.
    let during = producing.acked_count();
    producing.wait_acked(during + 100);
    producing.stop();
    let (acked, sent) = producing.finish();
    let mut expected: BTreeSet<String> = preload.iter().map(|r| r.2.clone()).collect();
    expected.extend(acked.iter().map(u64::to_string));
    let read = read_all(&c.bootstrap_of(&[2, 3, 4]), topic, &partitions, &expected);
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, key, value) in &read {
        if let Some(rest) = value.strip_prefix("pre-") {
            assert!(key.starts_with("pre"), "{key}: {rest}");
        } else {
            let n: u64 = value
                .parse()
                .unwrap_or_else(|_| panic!("a value never sent: {value:?}"));
            assert!(n < sent, "a value never sent: {n}");
            assert_eq!(*key, key_of(n));
        }
        *copies.entry(value.as_str()).or_default() += 1;
    }
    let duplicated: Vec<(&&str, &usize)> = copies.iter().filter(|(_, &c)| c > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{} values stored more than once; first: {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)]
    );

    // Metadata: broker 4 holds a replica of every partition, in sync; broker 1 none.
    let v = c.wait_view(2, "replicas on 2, 3, 4, all in sync", |v| {
        let ps = v.partitions(topic);
        ps.len() == 3
            && ps
                .values()
                .all(|p| p.replica_set() == new_set && p.isr_set() == new_set)
    });
    for (p, pv) in v.partitions(topic) {
        assert_eq!(
            pv.replicas,
            proposed[&(topic.to_string(), p)],
            "order of {p}"
        );
    }
    // Broker 1 deleted its copies; broker 4 has them.
    wait_until(
        "broker 1 to delete its partition directories",
        || match partition_dirs(&c.node(1).data_dir(), topic) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("still there: {left:?}")),
        },
    );
    let held: BTreeSet<String> = partitions.iter().map(|p| format!("{topic}-{p}")).collect();
    assert_eq!(partition_dirs(&c.node(4).data_dir(), topic), held);

    // The throttles are gone.
    for b in ["1", "2", "3", "4"] {
        let text = dynamic_configs(&bootstrap, "--broker", b);
        assert!(
            !text.contains("replication.throttled"),
            "broker {b}: {text}"
        );
    }
    let text = dynamic_configs(&bootstrap, "--topic", topic);
    assert!(!text.contains("replication.throttled"), "{text}");

    // Nothing is in progress now: --cancel names each partition it could not cancel.
    let (code, out, err) = reassign(
        &bootstrap,
        &["--cancel", "--reassignment-json-file", plan_arg],
    );
    assert_eq!(code, Some(1), "cancel: {out}{err}");
    assert!(
        err.lines()
            .any(|l| l == "Error cancelling partition reassignment(s):"),
        "{err}"
    );
    for p in partitions {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{topic}-{p}: "))),
            "{err}"
        );
    }
}

#[test]
fn mistakes_in_the_plan_are_refused_before_anything_moves() {
    let c = Cluster::started_n(3, &[]);
    let admin = c.admin(1);
    create_topic_with(&admin, 1, "t", 2, 2, &[]).expect("create t");
    c.wait_view(1, "both partitions of t", |v| v.partitions("t").len() == 2);
    let bootstrap = c.bootstrap(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let execute = |plan: &str| {
        let path = dir.path().join("plan.json");
        std::fs::write(&path, plan).expect("write plan");
        reassign(
            &bootstrap,
            &[
                "--execute",
                "--reassignment-json-file",
                path.to_str().expect("utf-8 path"),
            ],
        )
    };
    let cases = [
        (
            r#"{"version":1,"partitions":[{"topic":"t","partition":5,"replicas":[1,2]}]}"#,
            "do not exist: t-5",
        ),
        (
            r#"{"version":1,"partitions":[{"topic":"nope","partition":0,"replicas":[1,2]}]}"#,
            "do not exist: nope-0",
        ),
        (
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,9]}]}"#,
            "not registered: 9",
        ),
        (
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,1]}]}"#,
            "t-0: broker 1 is listed more than once",
        ),
        (
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[]}]}"#,
            "t-0: the replica list is empty",
        ),
        (
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1]},
                                          {"topic":"t","partition":0,"replicas":[2]}]}"#,
            "more than once: t-0",
        ),
        (
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1],"log_dirs":["/data"]}]}"#,
            "log_dirs may only be \"any\"",
        ),
    ];
    for (plan, message) in cases {
        let (code, out, err) = execute(plan);
        assert_eq!(code, Some(1), "{plan}: {out}{err}");
        assert!(err.contains(message), "{plan}: {err}");
        assert!(!out.contains("Successfully"), "{plan}: {out}");
    }
    // --generate refuses brokers the cluster does not have and a replication factor the
    // broker list cannot hold.
    let topics = dir.path().join("topics.json");
    std::fs::write(&topics, r#"{"topics":[{"topic":"t"}],"version":1}"#).expect("write");
    let topics = topics.to_str().expect("utf-8 path");
    let generate = |brokers: &str| {
        reassign(
            &bootstrap,
            &[
                "--generate",
                "--topics-to-move-json-file",
                topics,
                "--broker-list",
                brokers,
            ],
        )
    };
    let (code, _, err) = generate("1,7");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not registered: 7"), "{err}");
    let (code, _, err) = generate("3");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Replication factor: 2 larger than available brokers: 1."),
        "{err}"
    );
    // Wrong flag combinations are usage errors: one line, exit 2.
    for args in [
        vec!["--list", "--verify"],
        vec!["--generate", "--broker-list", "1,2"],
        vec!["--verify"],
        vec!["--list", "--throttle", "5"],
    ] {
        let (code, _, err) = reassign(&bootstrap, &args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // None of the refused plans started anything.
    let (code, out, err) = reassign(&bootstrap, &["--list"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "No partition reassignments found.\n");
}
