//! `fjord reassign-partitions`: move partition replicas between brokers, like
//! `kafka-reassign-partitions.sh`.
//!
//!     fjord reassign-partitions --bootstrap-server H:9092 --generate \
//!         --topics-to-move-json-file topics.json --broker-list 2,3,4
//!     fjord reassign-partitions --bootstrap-server H:9092 --execute \
//!         --reassignment-json-file plan.json [--throttle 10000000] [--additional]
//!     fjord reassign-partitions --bootstrap-server H:9092 --verify --reassignment-json-file plan.json
//!     fjord reassign-partitions --bootstrap-server H:9092 --cancel --reassignment-json-file plan.json
//!     fjord reassign-partitions --bootstrap-server H:9092 --list
//!
//! The files are Kafka's: `{"topics":[{"topic":"t"}],"version":1}` names the topics to move,
//! and `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2]}]}` is a plan.
//! The rdkafka crate has no API for partition reassignments, so the requests are sent
//! directly (`wire`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::common::{usage, Connection};
use super::wire::{call, open, refused, Stream};
use crate::output::{errln, outln};

/// Broker configs: how many bytes per second throttled replicas may move.
const LEADER_RATE: &str = "leader.replication.throttled.rate";
const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
/// Topic configs: which replicas (`partition:broker`) the rates apply to.
const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// IncrementalAlterConfigs resource types and operations.
const TOPIC_RESOURCE: i8 = 2;
const BROKER_RESOURCE: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;

/// The only log directory a plan may name: a Fjord broker keeps one data directory.
const ANY_LOG_DIR: &str = "any";

#[derive(Args)]
// The shared connection flags call --bootstrap-server also --broker-list (the console
// producer's habit); here --broker-list means broker ids, as in Kafka's tool.
#[command(mut_arg("bootstrap_server", |a| a.visible_alias(None)))]
pub struct ReassignArgs {
    #[command(flatten)]
    conn: Connection,
    /// Propose a plan moving the topics of --topics-to-move-json-file onto --broker-list.
    #[arg(long)]
    generate: bool,
    /// Start the reassignment of --reassignment-json-file.
    #[arg(long)]
    execute: bool,
    /// Report the progress of --reassignment-json-file; clears the throttles once done.
    #[arg(long)]
    verify: bool,
    /// Stop the reassignments of --reassignment-json-file, back to the original replicas.
    #[arg(long)]
    cancel: bool,
    /// List the reassignments in progress.
    #[arg(long)]
    list: bool,
    /// With --generate: `{"topics":[{"topic":"t"}],"version":1}`.
    #[arg(long = "topics-to-move-json-file", value_name = "FILE")]
    topics_file: Option<PathBuf>,
    /// With --generate: the broker ids to place replicas on, e.g. 1,2,3.
    #[arg(long = "broker-list", value_name = "IDS")]
    broker_list: Option<String>,
    /// With --execute, --verify and --cancel: the plan, as --generate proposes it.
    #[arg(long = "reassignment-json-file", value_name = "FILE")]
    plan_file: Option<PathBuf>,
    /// With --execute: limit the replication of moving replicas to this many bytes per
    /// second per broker; -1 for no limit.
    #[arg(
        long,
        value_name = "BYTES_PER_SEC",
        default_value_t = -1,
        allow_negative_numbers = true
    )]
    throttle: i64,
    /// With --generate: ignore broker racks when placing replicas.
    #[arg(long = "disable-rack-aware")]
    disable_rack_aware: bool,
    /// With --verify and --cancel: leave the throttles in place.
    #[arg(long = "preserve-throttles")]
    preserve_throttles: bool,
    /// How long the broker may take over a reassignment request.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout: u64,
    /// With --execute: start even though other reassignments are in progress.
    #[arg(long)]
    additional: bool,
}

/// The file naming the topics to move.
#[derive(Deserialize)]
struct TopicsFile {
    topics: Vec<TopicEntry>,
}

#[derive(Deserialize)]
struct TopicEntry {
    topic: String,
}

/// A reassignment plan, as read and as printed.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct PlanFile {
    #[serde(default = "one")]
    version: i32,
    partitions: Vec<PlanEntry>,
}

fn one() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct PlanEntry {
    topic: String,
    partition: i32,
    replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_dirs: Option<Vec<String>>,
}

/// Topic to partition to replicas, in order (the first is the preferred leader).
type Assignment = BTreeMap<String, BTreeMap<i32, Vec<i32>>>;

/// A validated plan: (topic, partition) to the target replicas.
type Plan = BTreeMap<(String, i32), Vec<i32>>;

#[derive(Debug, Clone)]
struct BrokerInfo {
    address: String,
    rack: Option<String>,
}

/// What the tool needs of the cluster's metadata.
struct ClusterView {
    brokers: BTreeMap<i32, BrokerInfo>,
    assignment: Assignment,
}

impl ClusterView {
    /// The broker ids among `ids` that no registered broker has, each once, in order.
    fn unregistered<'a>(&self, ids: impl IntoIterator<Item = &'a i32>) -> BTreeSet<i32> {
        ids.into_iter()
            .filter(|b| !self.brokers.contains_key(b))
            .copied()
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Generate,
    Execute,
    Verify,
    Cancel,
    List,
}

pub fn run(args: ReassignArgs) -> Result<ExitCode> {
    let action = check_flags(&args)?;
    match action {
        Action::Generate => generate(&args),
        Action::Execute => execute(&args),
        Action::Verify => verify(&args),
        Action::Cancel => cancel(&args),
        Action::List => list(&args),
    }
}

/// Exactly one action, with the flags it needs and none that it would ignore.
fn check_flags(args: &ReassignArgs) -> Result<Action> {
    use Action::*;
    let actions: Vec<Action> = [
        (args.generate, Generate),
        (args.execute, Execute),
        (args.verify, Verify),
        (args.cancel, Cancel),
        (args.list, List),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, a)| a)
    .collect();
    let action = match actions.as_slice() {
        [a] => *a,
        _ => {
            return usage(
                "exactly one of --generate, --execute, --verify, --cancel and --list is needed",
            )
        }
    };
    let given: [(&str, bool, &[Action]); 7] = [
        (
            "--topics-to-move-json-file",
            args.topics_file.is_some(),
            &[Generate],
        ),
        ("--broker-list", args.broker_list.is_some(), &[Generate]),
        (
            "--reassignment-json-file",
            args.plan_file.is_some(),
            &[Execute, Verify, Cancel],
        ),
        ("--throttle", args.throttle != -1, &[Execute]),
        ("--disable-rack-aware", args.disable_rack_aware, &[Generate]),
        (
            "--preserve-throttles",
            args.preserve_throttles,
            &[Verify, Cancel],
        ),
        ("--additional", args.additional, &[Execute]),
    ];
    for (flag, on, allowed) in given {
        if on && !allowed.contains(&action) {
            return usage(format!("{flag} does not go with --{}", name(action)));
        }
    }
    match action {
        Generate if args.topics_file.is_none() || args.broker_list.is_none() => {
            usage("--generate needs --topics-to-move-json-file and --broker-list")
        }
        Execute | Verify | Cancel if args.plan_file.is_none() => {
            usage(format!("--{} needs --reassignment-json-file", name(action)))
        }
        _ if args.throttle < -1 => usage("--throttle is a number of bytes per second, or -1"),
        _ => Ok(action),
    }
}

fn name(action: Action) -> &'static str {
    match action {
        Action::Generate => "generate",
        Action::Execute => "execute",
        Action::Verify => "verify",
        Action::Cancel => "cancel",
        Action::List => "list",
    }
}

// ---------------------------------------------------------------------------------------
// Talking to brokers.

/// One connection to one broker, with the versions it supports.
struct BrokerConn {
    server: String,
    stream: Stream,
    next_id: i32,
    versions: BTreeMap<i16, (i16, i16)>,
}

impl BrokerConn {
    fn open(server: &str, conn: &Connection) -> Result<BrokerConn> {
        let mut stream = open(conn, server)?;
        let resp: ApiVersionsResponse = call(&mut stream, 0, ApiVersionsRequest::default(), 0)?;
        refused("ApiVersions failed", resp.error_code, &None)?;
        let versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(BrokerConn {
            server: server.to_string(),
            stream,
            next_id: 1,
            versions,
        })
    }

    /// The first bootstrap server that answers.
    fn bootstrap(conn: &Connection) -> Result<BrokerConn> {
        let mut last_error = None;
        for server in conn.bootstrap_server.split(',').map(str::trim) {
            match BrokerConn::open(server, conn) {
                Ok(c) => return Ok(c),
                Err(e) => last_error = Some(e.context(format!("broker {server}"))),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no bootstrap server given")))
    }

    /// The highest version of `Req` in `lo..=hi` the broker supports.
    fn version<Req: Request>(&self, lo: i16, hi: i16) -> Result<i16> {
        let what = ApiKey::try_from(Req::KEY)
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|_| format!("API {}", Req::KEY));
        match self.versions.get(&Req::KEY) {
            Some(&(min, max)) if min.max(lo) <= max.min(hi) => Ok(max.min(hi)),
            _ => bail!(
                "the broker at {} does not support {what} (versions {lo} to {hi})",
                self.server
            ),
        }
    }

    fn call<Req: Request + Encodable, Resp: Decodable>(
        &mut self,
        request: Req,
        lo: i16,
        hi: i16,
    ) -> Result<Resp> {
        let version = self.version::<Req>(lo, hi)?;
        let id = self.next_id;
        self.next_id += 1;
        call(&mut self.stream, id, request, version)
            .with_context(|| format!("broker {}", self.server))
    }

    fn cluster(&mut self) -> Result<ClusterView> {
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let resp: MetadataResponse = self.call(request, 9, 12)?;
        let brokers = resp
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    address: format!("{}:{}", b.host.as_str(), b.port),
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (b.node_id.0, info)
            })
            .collect();
        let mut assignment = Assignment::new();
        for t in &resp.topics {
            let Some(name) = &t.name else { continue };
            if t.error_code != 0 {
                continue;
            }
            let parts = assignment.entry(name.0.to_string()).or_default();
            for p in &t.partitions {
                parts.insert(
                    p.partition_index,
                    p.replica_nodes.iter().map(|b| b.0).collect(),
                );
            }
        }
        Ok(ClusterView {
            brokers,
            assignment,
        })
    }

    /// Reassignments in progress: (topic, partition) to (replicas, adding, removing).
    fn ongoing(
        &mut self,
        only: Option<&Plan>,
        timeout_ms: i32,
    ) -> Result<BTreeMap<(String, i32), Ongoing>> {
        let topics = only.map(|plan| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in plan.keys() {
                by_topic.entry(t).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps)
                })
                .collect()
        });
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(topics);
        let resp: ListPartitionReassignmentsResponse = self.call(request, 0, 0)?;
        refused(
            "ListPartitionReassignments failed",
            resp.error_code,
            &resp.error_message,
        )?;
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut out = BTreeMap::new();
        for t in &resp.topics {
            for p in &t.partitions {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    Ongoing {
                        replicas: ids(&p.replicas),
                        adding: ids(&p.adding_replicas),
                        removing: ids(&p.removing_replicas),
                    },
                );
            }
        }
        Ok(out)
    }

    /// Sends AlterPartitionReassignments: `Some(replicas)` starts a move, `None` cancels
    /// one. Returns each partition's failure, by partition.
    fn alter(
        &mut self,
        targets: &BTreeMap<(String, i32), Option<Vec<i32>>>,
        timeout_ms: i32,
    ) -> Result<BTreeMap<(String, i32), String>> {
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for ((t, p), replicas) in targets {
            by_topic.entry(t).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(*p)
                    .with_replicas(
                        replicas
                            .as_ref()
                            .map(|r| r.iter().copied().map(BrokerId).collect()),
                    ),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(timeout_ms)
            // A plan may change a partition's replication factor, as Kafka's tool allows.
            .with_allow_replication_factor_change(true)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp: AlterPartitionReassignmentsResponse = self.call(request, 0, 1)?;
        refused(
            "AlterPartitionReassignments failed",
            resp.error_code,
            &resp.error_message,
        )?;
        let mut failed = BTreeMap::new();
        for t in &resp.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    failed.insert(
                        (t.name.0.to_string(), p.partition_index),
                        error_text(p.error_code, &p.error_message),
                    );
                }
            }
        }
        Ok(failed)
    }

    /// Applies config operations (name, op, value) to resources (type, name); every
    /// resource must succeed.
    fn alter_configs(&mut self, resources: Vec<(i8, String, Vec<ConfigOp>)>) -> Result<()> {
        let request = IncrementalAlterConfigsRequest::default().with_resources(
            resources
                .into_iter()
                .map(|(kind, name, ops)| {
                    AlterConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(StrBytes::from_string(name))
                        .with_configs(
                            ops.into_iter()
                                .map(|(k, op, v)| {
                                    AlterableConfig::default()
                                        .with_name(StrBytes::from_static_str(k))
                                        .with_config_operation(op)
                                        .with_value(v.map(StrBytes::from_string))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
        let resp: IncrementalAlterConfigsResponse = self.call(request, 0, 1)?;
        for r in &resp.responses {
            if r.error_code != 0 {
                let what = if r.resource_type == BROKER_RESOURCE {
                    "broker"
                } else {
                    "topic"
                };
                bail!(
                    "changing the configs of {what} {}: {}",
                    r.resource_name.as_str(),
                    error_text(r.error_code, &r.error_message)
                );
            }
        }
        Ok(())
    }
}

/// A config change: name, IncrementalAlterConfigs operation, value.
type ConfigOp = (&'static str, i8, Option<String>);

#[derive(Debug, Clone, PartialEq)]
struct Ongoing {
    replicas: Vec<i32>,
    adding: Vec<i32>,
    removing: Vec<i32>,
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// The broker's message, or the standard description of the code when it sent none.
fn error_text(code: i16, message: &Option<StrBytes>) -> String {
    match message.as_deref() {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => match ResponseError::try_from_code(code) {
            Some(e) => format!("{e} (error {code})"),
            None => format!("error {code}"),
        },
    }
}

fn timeout_ms(args: &ReassignArgs) -> i32 {
    args.timeout.min(i32::MAX as u64) as i32
}

// ---------------------------------------------------------------------------------------
// Files.

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

fn read_topics(path: &Path) -> Result<Vec<String>> {
    let file: TopicsFile = read_json(path, "a topics-to-move JSON file")?;
    parse_topics(file)
}

fn parse_topics(file: TopicsFile) -> Result<Vec<String>> {
    if file.topics.is_empty() {
        bail!("the topics-to-move file names no topic");
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for t in file.topics {
        if seen.insert(t.topic.clone()) {
            out.push(t.topic);
        }
    }
    Ok(out)
}

fn read_plan(path: &Path) -> Result<Plan> {
    let file: PlanFile = read_json(path, "a reassignment JSON file")?;
    parse_plan(file)
}

/// Checks what a plan says on its own: something to move, each partition once, replica
/// lists without repeats, and no log directory but "any".
fn parse_plan(file: PlanFile) -> Result<Plan> {
    if file.partitions.is_empty() {
        bail!("the reassignment file lists no partition");
    }
    let mut plan = Plan::new();
    let mut duplicates = Vec::new();
    for e in file.partitions {
        let tp = format!("{}-{}", e.topic, e.partition);
        if e.partition < 0 {
            bail!("partition {tp}: a partition number cannot be negative");
        }
        if e.replicas.is_empty() {
            bail!("partition {tp}: the replica list is empty");
        }
        let mut seen = BTreeSet::new();
        for r in &e.replicas {
            if !seen.insert(*r) {
                bail!("partition {tp}: broker {r} is listed more than once in its replicas");
            }
        }
        if let Some(dirs) = &e.log_dirs {
            if dirs.len() != e.replicas.len() {
                bail!(
                    "partition {tp}: {} log_dirs for {} replicas",
                    dirs.len(),
                    e.replicas.len()
                );
            }
            if let Some(d) = dirs.iter().find(|d| d.as_str() != ANY_LOG_DIR) {
                bail!(
                    "partition {tp}: log directory {d:?} cannot be chosen; a Fjord broker \
                     keeps one data directory, so log_dirs may only be \"any\""
                );
            }
        }
        if plan.insert((e.topic, e.partition), e.replicas).is_some() {
            duplicates.push(tp);
        }
    }
    if !duplicates.is_empty() {
        bail!(
            "the reassignment file lists these partitions more than once: {}",
            duplicates.join(",")
        );
    }
    Ok(plan)
}

/// Checks a plan against the cluster: every partition exists, every broker is registered.
fn check_plan_against(plan: &Plan, cluster: &ClusterView) -> Result<()> {
    let missing: Vec<String> = plan
        .keys()
        .filter(|(t, p)| {
            cluster
                .assignment
                .get(t)
                .is_none_or(|ps| !ps.contains_key(p))
        })
        .map(|(t, p)| format!("{t}-{p}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the reassignment names partitions that do not exist: {}",
            missing.join(",")
        );
    }
    let unknown = cluster.unregistered(plan.values().flatten());
    if !unknown.is_empty() {
        bail!(
            "the reassignment names brokers that are not registered: {}",
            join(unknown.iter())
        );
    }
    Ok(())
}

/// A plan in Kafka's JSON form, on one line, every replica in log directory "any".
fn plan_json(entries: impl IntoIterator<Item = ((String, i32), Vec<i32>)>) -> Result<String> {
    let partitions = entries
        .into_iter()
        .map(|((topic, partition), replicas)| PlanEntry {
            log_dirs: Some(vec![ANY_LOG_DIR.to_string(); replicas.len()]),
            topic,
            partition,
            replicas,
        })
        .collect();
    serde_json::to_string(&PlanFile {
        version: 1,
        partitions,
    })
    .context("writing the JSON")
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn tp_list<'a>(keys: impl IntoIterator<Item = &'a (String, i32)>) -> String {
    join(keys.into_iter().map(|(t, p)| format!("{t}-{p}")))
}

// ---------------------------------------------------------------------------------------
// --generate.

fn parse_broker_list(s: &str) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.parse::<i32>() {
            Ok(id) if id >= 0 => {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            _ => {
                return usage(format!(
                    "--broker-list expects broker ids like 1,2,3, got '{s}'"
                ))
            }
        }
    }
    if out.is_empty() {
        return usage("--broker-list names no broker");
    }
    Ok(out)
}

/// The order brokers take turns in. With racks, the brokers of each rack alternate
/// (first of every rack, then second of every rack, ...) so that neighbours in the order
/// sit in different racks; without, ascending ids.
fn broker_order(brokers: &[i32], racks: Option<&BTreeMap<i32, String>>) -> Vec<i32> {
    let mut ids: Vec<i32> = brokers.to_vec();
    ids.sort_unstable();
    let Some(racks) = racks else { return ids };
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for id in &ids {
        by_rack
            .entry(racks.get(id).map_or("", String::as_str))
            .or_default()
            .push(*id);
    }
    let mut out = Vec::with_capacity(ids.len());
    for round in 0.. {
        let before = out.len();
        out.extend(by_rack.values().filter_map(|v| v.get(round)));
        if out.len() == before {
            break;
        }
    }
    out
}

/// A new assignment for `topics` (name to partitions and replication factor) over
/// `brokers`: leaders rotate through the broker order across all partitions of all topics,
/// and followers start at an offset that grows every full turn, so replica pairs vary. With
/// racks, each follower goes to a rack without a replica of the partition yet while there is
/// one. Deterministic: the same input gives the same plan.
fn propose(
    topics: &BTreeMap<String, (Vec<i32>, usize)>,
    brokers: &[i32],
    racks: Option<&BTreeMap<i32, String>>,
) -> Result<Assignment> {
    let order = broker_order(brokers, racks);
    let n = order.len();
    let rack_of = |b: i32| -> String {
        match racks.and_then(|r| r.get(&b)) {
            Some(r) => r.clone(),
            // Without racks every broker counts as its own rack.
            None => format!("#{b}"),
        }
    };
    let mut out = Assignment::new();
    let mut turn = 0usize;
    for (topic, (partitions, rf)) in topics {
        if *rf > n {
            bail!("Replication factor: {rf} larger than available brokers: {n}. (topic {topic})");
        }
        let mut assigned = BTreeMap::new();
        for &p in partitions {
            let lead = turn % n;
            let shift = if n > 1 { (turn / n) % (n - 1) } else { 0 };
            turn += 1;
            // The other brokers, starting `shift` places after the leader.
            let candidates: Vec<i32> = (0..n.saturating_sub(1))
                .map(|k| order[(lead + 1 + (shift + k) % (n - 1)) % n])
                .collect();
            let mut replicas = vec![order[lead]];
            let mut racks_used: BTreeSet<String> = [rack_of(order[lead])].into();
            while replicas.len() < *rf {
                let next = candidates
                    .iter()
                    .find(|b| !replicas.contains(b) && !racks_used.contains(&rack_of(**b)));
                match next {
                    Some(&b) => {
                        replicas.push(b);
                        racks_used.insert(rack_of(b));
                    }
                    // Every rack holds a replica: start another round over all racks.
                    None => racks_used.clear(),
                }
            }
            assigned.insert(p, replicas);
        }
        out.insert(topic.clone(), assigned);
    }
    Ok(out)
}

/// Racks of the given brokers if all have one, None if none has; mixed is refused unless
/// rack awareness is off.
fn racks_for(
    brokers: &[i32],
    cluster: &ClusterView,
    disabled: bool,
) -> Result<Option<BTreeMap<i32, String>>> {
    if disabled {
        return Ok(None);
    }
    let racks: BTreeMap<i32, String> = brokers
        .iter()
        .filter_map(|b| {
            let rack = cluster.brokers.get(b)?.rack.clone()?;
            Some((*b, rack))
        })
        .collect();
    if racks.is_empty() {
        Ok(None)
    } else if racks.len() == brokers.len() {
        Ok(Some(racks))
    } else {
        bail!(
            "Not all brokers have rack information: add --disable-rack-aware to place \
             replicas without racks"
        )
    }
}

fn generate(args: &ReassignArgs) -> Result<ExitCode> {
    let brokers = parse_broker_list(args.broker_list.as_deref().unwrap_or_default())?;
    let topics = read_topics(
        args.topics_file
            .as_deref()
            .ok_or_else(|| anyhow!("no file"))?,
    )?;
    let mut client = BrokerConn::bootstrap(&args.conn)?;
    let cluster = client.cluster()?;
    let unknown = cluster.unregistered(&brokers);
    if !unknown.is_empty() {
        bail!(
            "--broker-list names brokers that are not registered: {} (registered: {})",
            join(&unknown),
            join(cluster.brokers.keys())
        );
    }
    let mut current = Assignment::new();
    let mut shape = BTreeMap::new();
    for t in &topics {
        let parts = cluster
            .assignment
            .get(t)
            .ok_or_else(|| anyhow!("Topic {t} not found"))?;
        let rf = parts.values().map(Vec::len).max().unwrap_or(0);
        shape.insert(t.clone(), (parts.keys().copied().collect(), rf));
        current.insert(t.clone(), parts.clone());
    }
    let racks = racks_for(&brokers, &cluster, args.disable_rack_aware)?;
    let proposed = propose(&shape, &brokers, racks.as_ref())?;
    outln!("Current partition replica assignment")?;
    outln!("{}", plan_json(flatten(current))?)?;
    outln!("")?;
    outln!("Proposed partition reassignment configuration")?;
    outln!("{}", plan_json(flatten(proposed))?)?;
    Ok(ExitCode::SUCCESS)
}

fn flatten(a: Assignment) -> Vec<((String, i32), Vec<i32>)> {
    a.into_iter()
        .flat_map(|(t, ps)| ps.into_iter().map(move |(p, r)| ((t.clone(), p), r)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// --execute.

/// The topic throttle lists for a plan: per topic, the replicas moving data out (the
/// current ones, which the leader may be any of) and the replicas moving data in (targets
/// not yet replicas), as `partition:broker` lists. Partitions whose replica set does not
/// change are left out: nothing moves for them.
fn throttled_replicas(
    plan: &Plan,
    current: &Assignment,
) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for ((t, p), target) in plan {
        let now = current
            .get(t)
            .and_then(|ps| ps.get(p))
            .cloned()
            .unwrap_or_default();
        let adding: Vec<i32> = target
            .iter()
            .filter(|b| !now.contains(b))
            .copied()
            .collect();
        if adding.is_empty() && now.len() == target.len() {
            continue;
        }
        let entry = out.entry(t.clone()).or_default();
        entry.0.extend(now.iter().map(|b| format!("{p}:{b}")));
        entry.1.extend(adding.iter().map(|b| format!("{p}:{b}")));
    }
    out
}

/// The brokers a plan moves data between: current and target replicas of every partition
/// whose replicas change.
fn throttled_brokers(plan: &Plan, current: &Assignment) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for ((t, p), target) in plan {
        let now = current
            .get(t)
            .and_then(|ps| ps.get(p))
            .cloned()
            .unwrap_or_default();
        let same: BTreeSet<&i32> = now.iter().collect();
        if same == target.iter().collect() {
            continue;
        }
        out.extend(now.iter().chain(target));
    }
    out
}

fn execute(args: &ReassignArgs) -> Result<ExitCode> {
    let plan = read_plan(
        args.plan_file
            .as_deref()
            .ok_or_else(|| anyhow!("no file"))?,
    )?;
    let mut client = BrokerConn::bootstrap(&args.conn)?;
    let cluster = client.cluster()?;
    check_plan_against(&plan, &cluster)?;
    let ongoing = client.ongoing(None, timeout_ms(args))?;
    if !ongoing.is_empty() && !args.additional {
        bail!(
            "Cannot execute: partition reassignments are in progress ({}); use --additional \
             to start this one as well",
            tp_list(ongoing.keys())
        );
    }
    let current: Vec<((String, i32), Vec<i32>)> = plan
        .keys()
        .map(|key| (key.clone(), rollback_replicas(key, &cluster, &ongoing)))
        .collect();
    outln!("Current partition replica assignment")?;
    outln!("{}", plan_json(current)?)?;
    outln!("")?;
    outln!("Save this to use as the --reassignment-json-file option during rollback")?;
    if args.throttle >= 0 {
        set_throttles(args, &mut client, &plan, &cluster)?;
        outln!(
            "Warning: You must run --verify periodically, until the reassignment completes, \
             to ensure the throttle is removed."
        )?;
        outln!(
            "The inter-broker throttle limit was set to {} B/s",
            args.throttle
        )?;
    }
    let targets = plan
        .iter()
        .map(|(k, r)| (k.clone(), Some(r.clone())))
        .collect();
    let failed = client.alter(&targets, timeout_ms(args))?;
    let started: Vec<&(String, i32)> = plan.keys().filter(|k| !failed.contains_key(k)).collect();
    if !started.is_empty() {
        outln!(
            "Successfully started partition reassignments for {}",
            tp_list(started)
        )?;
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    errln!("Error reassigning partition(s):");
    for ((t, p), e) in &failed {
        errln!("{t}-{p}: {e}");
    }
    Ok(ExitCode::from(1))
}

/// The replicas a partition goes back to if a move is undone: its replicas, or, while a
/// move is under way (metadata then lists old and new replicas together), those the move
/// is not adding.
fn rollback_replicas(
    key: &(String, i32),
    cluster: &ClusterView,
    ongoing: &BTreeMap<(String, i32), Ongoing>,
) -> Vec<i32> {
    match ongoing.get(key) {
        Some(o) => o
            .replicas
            .iter()
            .filter(|b| !o.adding.contains(b))
            .copied()
            .collect(),
        None => cluster
            .assignment
            .get(&key.0)
            .and_then(|ps| ps.get(&key.1))
            .cloned()
            .unwrap_or_default(),
    }
}

fn set_throttles(
    args: &ReassignArgs,
    client: &mut BrokerConn,
    plan: &Plan,
    cluster: &ClusterView,
) -> Result<()> {
    // With --additional another plan's entries may be in the lists already: add to them.
    let op = if args.additional { OP_APPEND } else { OP_SET };
    let topics = throttled_replicas(plan, &cluster.assignment)
        .into_iter()
        .map(|(t, (leaders, followers))| {
            let ops = vec![
                (LEADER_REPLICAS, op, Some(leaders.join(","))),
                (FOLLOWER_REPLICAS, op, Some(followers.join(","))),
            ];
            (TOPIC_RESOURCE, t, ops)
        })
        .collect::<Vec<_>>();
    if !topics.is_empty() {
        client.alter_configs(topics)?;
    }
    let rate = args.throttle.to_string();
    let ops = || {
        vec![
            (LEADER_RATE, OP_SET, Some(rate.clone())),
            (FOLLOWER_RATE, OP_SET, Some(rate.clone())),
        ]
    };
    for b in throttled_brokers(plan, &cluster.assignment) {
        broker_configs(args, client, cluster, b, ops())?;
    }
    Ok(())
}

/// A broker's own configs are changed through that broker, which refuses changes meant
/// for another one.
fn broker_configs(
    args: &ReassignArgs,
    client: &mut BrokerConn,
    cluster: &ClusterView,
    broker: i32,
    ops: Vec<ConfigOp>,
) -> Result<()> {
    let address = &cluster
        .brokers
        .get(&broker)
        .ok_or_else(|| anyhow!("broker {broker} is not registered"))?
        .address;
    let resources = vec![(BROKER_RESOURCE, broker.to_string(), ops)];
    if *address == client.server {
        return client.alter_configs(resources);
    }
    let mut own = BrokerConn::open(address, &args.conn)
        .with_context(|| format!("broker {broker} at {address}"))?;
    own.alter_configs(resources)
}

// ---------------------------------------------------------------------------------------
// --verify, --cancel, --list.

/// Removes the rate configs from every broker and the replica lists from the plan's topics.
fn clear_throttles(
    args: &ReassignArgs,
    client: &mut BrokerConn,
    plan: &Plan,
    cluster: &ClusterView,
) -> Result<()> {
    let brokers: Vec<i32> = cluster.brokers.keys().copied().collect();
    outln!(
        "Clearing broker-level throttles on brokers {}",
        join(&brokers)
    )?;
    for b in brokers {
        let ops = vec![
            (LEADER_RATE, OP_DELETE, None),
            (FOLLOWER_RATE, OP_DELETE, None),
        ];
        broker_configs(args, client, cluster, b, ops)?;
    }
    let topics: BTreeSet<&String> = plan.keys().map(|(t, _)| t).collect();
    for t in topics {
        outln!("Clearing topic-level throttles on topic {t}")?;
        let ops = vec![
            (LEADER_REPLICAS, OP_DELETE, None),
            (FOLLOWER_REPLICAS, OP_DELETE, None),
        ];
        client.alter_configs(vec![(TOPIC_RESOURCE, t.clone(), ops)])?;
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Status {
    Done,
    InProgress,
    /// No reassignment in progress, yet the replicas are not the target ones.
    Elsewhere(Vec<i32>),
}

fn status_of(target: &[i32], current: Option<&Vec<i32>>, ongoing: bool) -> Status {
    if ongoing {
        Status::InProgress
    } else {
        match current {
            Some(now) if now.as_slice() == target => Status::Done,
            now => Status::Elsewhere(now.cloned().unwrap_or_default()),
        }
    }
}

fn bracketed(ids: &[i32]) -> String {
    format!("[{}]", join(ids))
}

fn verify(args: &ReassignArgs) -> Result<ExitCode> {
    let plan = read_plan(
        args.plan_file
            .as_deref()
            .ok_or_else(|| anyhow!("no file"))?,
    )?;
    let mut client = BrokerConn::bootstrap(&args.conn)?;
    let ongoing = client.ongoing(Some(&plan), timeout_ms(args))?;
    let cluster = client.cluster()?;
    outln!("Status of partition reassignment:")?;
    let mut in_progress = 0;
    for ((t, p), target) in &plan {
        let current = cluster.assignment.get(t).and_then(|ps| ps.get(p));
        match status_of(target, current, ongoing.contains_key(&(t.clone(), *p))) {
            Status::Done => outln!("Reassignment of partition {t}-{p} is completed.")?,
            Status::InProgress => {
                in_progress += 1;
                outln!("Reassignment of partition {t}-{p} is still in progress.")?
            }
            Status::Elsewhere(now) => outln!(
                "There is no active reassignment of partition {t}-{p}, but replica set is {} \
                 rather than {}.",
                bracketed(&now),
                bracketed(target)
            )?,
        }
    }
    // Throttles stay while anything of the plan still moves; once nothing does, they
    // would only slow down ordinary replication.
    if in_progress == 0 && !args.preserve_throttles {
        clear_throttles(args, &mut client, &plan, &cluster)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cancel(args: &ReassignArgs) -> Result<ExitCode> {
    let plan = read_plan(
        args.plan_file
            .as_deref()
            .ok_or_else(|| anyhow!("no file"))?,
    )?;
    let mut client = BrokerConn::bootstrap(&args.conn)?;
    let targets = plan.keys().map(|k| (k.clone(), None)).collect();
    let failed = client.alter(&targets, timeout_ms(args))?;
    let cancelled: Vec<&(String, i32)> = plan.keys().filter(|k| !failed.contains_key(k)).collect();
    if !cancelled.is_empty() {
        outln!(
            "Successfully cancelled partition reassignments for {}",
            tp_list(cancelled)
        )?;
    }
    if !failed.is_empty() {
        errln!("Error cancelling partition reassignment(s):");
        for ((t, p), e) in &failed {
            errln!("{t}-{p}: {e}");
        }
        return Ok(ExitCode::from(1));
    }
    if !args.preserve_throttles {
        let cluster = client.cluster()?;
        clear_throttles(args, &mut client, &plan, &cluster)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn list_line(t: &str, p: i32, o: &Ongoing) -> String {
    let mut line = format!("{t}-{p}: replicas: {}.", join(&o.replicas));
    if !o.adding.is_empty() {
        line.push_str(&format!(" adding: {}.", join(&o.adding)));
    }
    if !o.removing.is_empty() {
        line.push_str(&format!(" removing: {}.", join(&o.removing)));
    }
    line
}

fn list(args: &ReassignArgs) -> Result<ExitCode> {
    let mut client = BrokerConn::bootstrap(&args.conn)?;
    let ongoing = client.ongoing(None, timeout_ms(args))?;
    if ongoing.is_empty() {
        outln!("No partition reassignments found.")?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("Current partition reassignments:")?;
    for ((t, p), o) in &ongoing {
        outln!("{}", list_line(t, *p, o))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(json: &str) -> Result<Plan> {
        parse_plan(serde_json::from_str(json).expect("valid JSON"))
    }

    #[test]
    fn plan_reads_kafka_files_with_and_without_log_dirs() {
        let plan = plan_of(
            r#"{"version":1,"partitions":[
                {"topic":"t","partition":1,"replicas":[2,3],"log_dirs":["any","any"]},
                {"topic":"t","partition":0,"replicas":[3,1]}]}"#,
        )
        .expect("valid plan");
        assert_eq!(plan[&("t".to_string(), 0)], vec![3, 1]);
        assert_eq!(plan[&("t".to_string(), 1)], vec![2, 3]);
    }

    #[test]
    fn plan_mistakes_are_refused_with_the_partition_named() {
        let err = |json: &str| format!("{:#}", plan_of(json).expect_err("refused"));
        assert!(err(r#"{"version":1,"partitions":[]}"#).contains("no partition"));
        let dup = err(
            r#"{"partitions":[{"topic":"t","partition":0,"replicas":[1]},
                                        {"topic":"t","partition":0,"replicas":[2]}]}"#,
        );
        assert!(dup.contains("more than once: t-0"), "{dup}");
        let rep = err(r#"{"partitions":[{"topic":"t","partition":2,"replicas":[1,1]}]}"#);
        assert!(rep.contains("t-2") && rep.contains("broker 1"), "{rep}");
        let empty = err(r#"{"partitions":[{"topic":"t","partition":0,"replicas":[]}]}"#);
        assert!(empty.contains("t-0") && empty.contains("empty"), "{empty}");
        let dir =
            err(r#"{"partitions":[{"topic":"t","partition":0,"replicas":[1],"log_dirs":["/d"]}]}"#);
        assert!(dir.contains("\"any\""), "{dir}");
        let n = err(
            r#"{"partitions":[{"topic":"t","partition":0,"replicas":[1,2],"log_dirs":["any"]}]}"#,
        );
        assert!(n.contains("1 log_dirs for 2 replicas"), "{n}");
    }

    #[test]
    fn plan_json_is_kafkas_form() {
        let json = plan_json(vec![(("t".to_string(), 0), vec![1, 2])]).expect("json");
        assert_eq!(
            json,
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2],"log_dirs":["any","any"]}]}"#
        );
        // What is printed reads back as the same plan.
        let back = plan_of(&json).expect("reads back");
        assert_eq!(back[&("t".to_string(), 0)], vec![1, 2]);
    }

    #[test]
    fn topics_file_is_read() {
        let file: TopicsFile = serde_json::from_str(
            r#"{"topics":[{"topic":"a"},{"topic":"b"},{"topic":"a"}],"version":1}"#,
        )
        .expect("valid");
        assert_eq!(parse_topics(file).expect("topics"), vec!["a", "b"]);
        let none: TopicsFile = serde_json::from_str(r#"{"topics":[]}"#).expect("valid");
        assert!(parse_topics(none).is_err());
    }

    fn shape(entries: &[(&str, i32, usize)]) -> BTreeMap<String, (Vec<i32>, usize)> {
        entries
            .iter()
            .map(|(t, n, rf)| (t.to_string(), ((0..*n).collect(), *rf)))
            .collect()
    }

    #[test]
    fn proposal_keeps_the_replication_factor_and_rotates_leaders() {
        let a = propose(&shape(&[("t", 6, 2)]), &[4, 2, 3], None).expect("proposal");
        let t = &a["t"];
        assert_eq!(t.len(), 6);
        for r in t.values() {
            assert_eq!(r.len(), 2);
            let distinct: BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), 2, "{r:?}");
            assert!(r.iter().all(|b| [2, 3, 4].contains(b)), "{r:?}");
        }
        let leaders: Vec<i32> = t.values().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![2, 3, 4, 2, 3, 4]);
        // Each broker holds the same number of replicas.
        let mut count: BTreeMap<i32, usize> = BTreeMap::new();
        for b in t.values().flatten() {
            *count.entry(*b).or_default() += 1;
        }
        assert!(count.values().all(|&c| c == 4), "{count:?}");
        // The second turn pairs leaders with other followers than the first.
        assert_ne!(t[&0][1], t[&3][1]);
        // Deterministic.
        assert_eq!(
            a,
            propose(&shape(&[("t", 6, 2)]), &[2, 3, 4], None).expect("again")
        );
    }

    #[test]
    fn proposal_continues_the_rotation_across_topics() {
        let a = propose(&shape(&[("a", 1, 1), ("b", 2, 1)]), &[1, 2, 3], None).expect("ok");
        assert_eq!(a["a"][&0], vec![1]);
        assert_eq!(a["b"][&0], vec![2]);
        assert_eq!(a["b"][&1], vec![3]);
    }

    #[test]
    fn proposal_refuses_a_replication_factor_above_the_broker_count() {
        let e = propose(&shape(&[("t", 1, 3)]), &[1, 2], None).expect_err("refused");
        assert!(
            e.to_string()
                .starts_with("Replication factor: 3 larger than available brokers: 2."),
            "{e}"
        );
    }

    #[test]
    fn proposal_spreads_replicas_over_racks() {
        let racks: BTreeMap<i32, String> = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c")]
            .into_iter()
            .map(|(b, r)| (b, r.to_string()))
            .collect();
        assert_eq!(
            broker_order(&[1, 2, 3, 4, 5], Some(&racks)),
            vec![1, 3, 5, 2, 4]
        );
        let a = propose(&shape(&[("t", 10, 3)]), &[1, 2, 3, 4, 5], Some(&racks)).expect("ok");
        for (p, r) in &a["t"] {
            let used: BTreeSet<&String> = r.iter().map(|b| &racks[b]).collect();
            assert_eq!(used.len(), 3, "partition {p}: {r:?} not on three racks");
        }
        // Two racks, three replicas: two racks used, no broker twice.
        let two: BTreeMap<i32, String> = [(1, "a"), (2, "a"), (3, "b"), (4, "b")]
            .into_iter()
            .map(|(b, r)| (b, r.to_string()))
            .collect();
        let a = propose(&shape(&[("t", 4, 3)]), &[1, 2, 3, 4], Some(&two)).expect("ok");
        for r in a["t"].values() {
            let distinct: BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), 3, "{r:?}");
            let used: BTreeSet<&String> = r.iter().map(|b| &two[b]).collect();
            assert_eq!(used.len(), 2, "{r:?}");
        }
    }

    #[test]
    fn throttle_lists_name_sources_and_new_replicas_of_moving_partitions() {
        let plan = plan_of(
            r#"{"partitions":[{"topic":"t","partition":0,"replicas":[2,4]},
                              {"topic":"t","partition":1,"replicas":[3,2]},
                              {"topic":"u","partition":0,"replicas":[4]}]}"#,
        )
        .expect("plan");
        let current: Assignment = [
            (
                "t".to_string(),
                [(0, vec![1, 2]), (1, vec![2, 3])].into_iter().collect(),
            ),
            ("u".to_string(), [(0, vec![1])].into_iter().collect()),
        ]
        .into_iter()
        .collect();
        let lists = throttled_replicas(&plan, &current);
        // t-1 only changes its preferred leader: no data moves, no throttle.
        assert_eq!(
            lists["t"],
            (
                vec!["0:1".to_string(), "0:2".into()],
                vec!["0:4".to_string()]
            )
        );
        assert_eq!(
            lists["u"],
            (vec!["0:1".to_string()], vec!["0:4".to_string()])
        );
        assert_eq!(
            throttled_brokers(&plan, &current),
            [1, 2, 4].into_iter().collect()
        );
    }

    #[test]
    fn verify_status_and_list_lines() {
        assert_eq!(status_of(&[1, 2], Some(&vec![1, 2]), false), Status::Done);
        assert_eq!(
            status_of(&[1, 2], Some(&vec![1, 2]), true),
            Status::InProgress
        );
        assert_eq!(
            status_of(&[1, 2], Some(&vec![2, 3]), false),
            Status::Elsewhere(vec![2, 3])
        );
        let o = Ongoing {
            replicas: vec![1, 2, 3, 4],
            adding: vec![4],
            removing: vec![1],
        };
        assert_eq!(
            list_line("t", 0, &o),
            "t-0: replicas: 1,2,3,4. adding: 4. removing: 1."
        );
    }

    #[test]
    fn rollback_of_a_partition_being_moved_leaves_out_the_replicas_being_added() {
        let cluster = ClusterView {
            brokers: BTreeMap::new(),
            assignment: [(
                "t".to_string(),
                [(0, vec![2, 3, 4, 1]), (1, vec![1, 2])]
                    .into_iter()
                    .collect(),
            )]
            .into_iter()
            .collect(),
        };
        let ongoing = [(
            ("t".to_string(), 0),
            Ongoing {
                replicas: vec![2, 3, 4, 1],
                adding: vec![4],
                removing: vec![1],
            },
        )]
        .into_iter()
        .collect();
        assert_eq!(
            rollback_replicas(&("t".to_string(), 0), &cluster, &ongoing),
            vec![2, 3, 1]
        );
        assert_eq!(
            rollback_replicas(&("t".to_string(), 1), &cluster, &ongoing),
            vec![1, 2]
        );
    }

    #[test]
    fn broker_list_is_parsed() {
        assert_eq!(parse_broker_list("2, 3,4,3").expect("ok"), vec![2, 3, 4]);
        assert!(parse_broker_list("2,x").is_err());
        assert!(parse_broker_list(",").is_err());
    }
}
