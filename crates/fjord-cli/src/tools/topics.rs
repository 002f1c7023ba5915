//! `fjord topics`: create, list, describe, alter (add partitions) and delete topics, with the
//! flags and output layout of Kafka's `kafka-topics.sh`.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{ArgGroup, Args};
use rdkafka::admin::{AdminClient, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::MetadataTopic;
use rdkafka::types::RDKafkaErrorCode;

use super::admin::Admin;
use super::common::{self, check_reachable, create_error, parse_kv, usage, Connection};
use crate::output::outln;

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["create", "list", "describe", "alter", "delete"])
))]
pub struct TopicsArgs {
    #[command(flatten)]
    conn: Connection,
    /// Create a topic.
    #[arg(long)]
    create: bool,
    /// List topic names.
    #[arg(long)]
    list: bool,
    /// Describe topics: partitions, leaders, replicas, ISR and overridden configs.
    #[arg(long)]
    describe: bool,
    /// Add partitions to a topic (with --partitions).
    #[arg(long)]
    alter: bool,
    /// Delete a topic.
    #[arg(long)]
    delete: bool,
    /// The topic to act on (for --list and --describe, restricts the output to it).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// Number of partitions (create: default from the broker; alter: the new total).
    #[arg(long, value_name = "N")]
    partitions: Option<i32>,
    /// Replicas per partition (default from the broker).
    #[arg(long = "replication-factor", value_name = "N")]
    replication_factor: Option<i32>,
    /// A topic config override for --create (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// With --create: succeed quietly if the topic already exists.
    #[arg(long = "if-not-exists", requires = "create")]
    if_not_exists: bool,
    /// With --alter, --describe or --delete: succeed quietly if the topic does not exist.
    #[arg(long = "if-exists")]
    if_exists: bool,
    /// With --describe: only partitions whose ISR is smaller than their replica set.
    #[arg(long = "under-replicated-partitions", requires = "describe")]
    under_replicated_partitions: bool,
    /// With --describe: only partitions whose leader is missing or not alive.
    #[arg(long = "unavailable-partitions", requires = "describe")]
    unavailable_partitions: bool,
    /// With --list or --describe: leave out internal topics such as __consumer_offsets.
    #[arg(long = "exclude-internal")]
    exclude_internal: bool,
}

pub fn run(args: TopicsArgs) -> Result<ExitCode> {
    let topic_needed = args.create || args.alter || args.delete;
    if topic_needed && args.topic.is_none() {
        return usage("--topic is required with --create, --alter and --delete");
    }
    if args.alter && args.partitions.is_none() {
        return usage("--alter needs --partitions N (the new partition count)");
    }
    let client: AdminClient<DefaultClientContext> =
        args.conn.client_config()?.create().map_err(create_error)?;
    let admin = Admin::new(client, args.conn.timeout());
    if args.create {
        create(&admin, &args)
    } else if args.list {
        list(&admin, &args)
    } else if args.describe {
        describe(&admin, &args)
    } else if args.alter {
        alter(&admin, &args)
    } else {
        delete(&admin, &args)
    }
}

fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

/// Topic names known to the cluster, sorted, filtered by --topic and --exclude-internal.
fn matching_topics(admin: &Admin, args: &TopicsArgs) -> Result<Vec<String>> {
    let md = check_reachable(admin.client().inner(), &args.conn)?;
    let mut names: Vec<String> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_string())
        .filter(|n| !(args.exclude_internal && is_internal(n)))
        .filter(|n| args.topic.as_deref().is_none_or(|want| want == n))
        .collect();
    names.sort();
    Ok(names)
}

/// Kafka's wording when a named topic is missing; `--if-exists` turns it into a quiet success.
fn require_topic(names: &[String], args: &TopicsArgs) -> Result<bool> {
    match &args.topic {
        Some(t) if names.is_empty() => {
            if args.if_exists {
                Ok(false)
            } else {
                bail!("Topic '{t}' does not exist as expected")
            }
        }
        _ => Ok(true),
    }
}

fn create(admin: &Admin, args: &TopicsArgs) -> Result<ExitCode> {
    let topic = args.topic.as_deref().unwrap_or_default();
    if let Some(p) = args.partitions {
        if p < 1 {
            return usage("The partitions must be greater than 0");
        }
    }
    if let Some(rf) = args.replication_factor {
        if !(1..=i32::from(i16::MAX)).contains(&rf) {
            return usage(format!(
                "The replication factor must be between 1 and {} inclusive",
                i16::MAX
            ));
        }
    }
    let configs = args
        .config
        .iter()
        .map(|c| parse_kv(c, "--config"))
        .collect::<Result<Vec<_>>>()?;
    check_reachable(admin.client().inner(), &args.conn)?;
    let result = admin.create_topic(
        topic,
        args.partitions.unwrap_or(-1),
        args.replication_factor.unwrap_or(-1),
        &configs,
    )?;
    match result {
        Ok(()) => {
            outln!("Created topic {topic}.")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.code == RDKafkaErrorCode::TopicAlreadyExists && args.if_not_exists => {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

fn list(admin: &Admin, args: &TopicsArgs) -> Result<ExitCode> {
    for name in matching_topics(admin, args)? {
        outln!("{name}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn alter(admin: &Admin, args: &TopicsArgs) -> Result<ExitCode> {
    let names = matching_topics(admin, args)?;
    if !require_topic(&names, args)? {
        return Ok(ExitCode::SUCCESS);
    }
    let total = args.partitions.unwrap_or_default();
    let total = usize::try_from(total)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| common::UsageError("The partitions must be greater than 0".into()))?;
    for name in &names {
        admin.create_partitions(name, total)??;
    }
    Ok(ExitCode::SUCCESS)
}

fn delete(admin: &Admin, args: &TopicsArgs) -> Result<ExitCode> {
    let names = matching_topics(admin, args)?;
    if !require_topic(&names, args)? {
        return Ok(ExitCode::SUCCESS);
    }
    for name in &names {
        admin.delete_topic(name)??;
    }
    Ok(ExitCode::SUCCESS)
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Non-default configs of each topic as `k=v,k=v`, the way Kafka's describe prints them.
fn overridden_configs(admin: &Admin, names: &[String]) -> Result<BTreeMap<String, String>> {
    let specs: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let opts = rdkafka::admin::AdminOptions::new();
    let results = common::block_on(admin.client().describe_configs(specs.iter(), &opts))??;
    let mut out = BTreeMap::new();
    for r in results.into_iter().flatten() {
        let name = match &r.specifier {
            rdkafka::admin::OwnedResourceSpecifier::Topic(t) => t.clone(),
            _ => continue,
        };
        let text = r
            .entries
            .iter()
            .filter(|e| !e.is_default)
            .map(|e| format!("{}={}", e.name, e.value.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",");
        out.insert(name, text);
    }
    Ok(out)
}

fn describe(admin: &Admin, args: &TopicsArgs) -> Result<ExitCode> {
    let md = check_reachable(admin.client().inner(), &args.conn)?;
    let names = matching_topics(admin, args)?;
    if !require_topic(&names, args)? || names.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let live: HashSet<i32> = md.brokers().iter().map(|b| b.id()).collect();
    let filtering = args.under_replicated_partitions || args.unavailable_partitions;
    let (configs, ids) = if filtering {
        (BTreeMap::new(), Default::default())
    } else {
        // Topic ids are a nicety: an older broker without them still gets a description.
        let ids = admin.topic_ids(&names).unwrap_or_default();
        (overridden_configs(admin, &names)?, ids)
    };
    let by_name: BTreeMap<&str, &MetadataTopic> =
        md.topics().iter().map(|t| (t.name(), t)).collect();
    for name in &names {
        let Some(t) = by_name.get(name.as_str()) else {
            continue;
        };
        let mut parts: Vec<_> = t.partitions().iter().collect();
        parts.sort_by_key(|p| p.id());
        if !filtering {
            let rf = parts.first().map_or(0, |p| p.replicas().len());
            let mut line = format!("Topic: {name}");
            if let Some(id) = ids.get(name) {
                line.push_str(&format!("\tTopicId: {id}"));
            }
            line.push_str(&format!(
                "\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}",
                parts.len(),
                configs.get(name).map(String::as_str).unwrap_or("")
            ));
            outln!("{line}")?;
        }
        for p in parts {
            let has_leader = p.leader() >= 0;
            let under = p.isr().len() < p.replicas().len();
            let unavailable = !has_leader || !live.contains(&p.leader());
            let show = !filtering
                || (args.under_replicated_partitions && under)
                || (args.unavailable_partitions && unavailable);
            if !show {
                continue;
            }
            let leader = if has_leader {
                p.leader().to_string()
            } else {
                "none".to_string()
            };
            outln!(
                "\tTopic: {name}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}\tElr: N/A\tLastKnownElr: N/A",
                p.id(),
                join_ids(p.replicas()),
                join_ids(p.isr())
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
