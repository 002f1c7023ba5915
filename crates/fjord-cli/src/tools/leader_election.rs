//! `fjord leader-election`: move partition leadership to the preferred replica, or elect
//! any live replica of a partition that has none, like `kafka-leader-election.sh`.
//!
//!     fjord leader-election --bootstrap-server HOST:9092 --election-type PREFERRED --all-topic-partitions
//!     fjord leader-election --bootstrap-server HOST:9092 --election-type PREFERRED --topic t --partition 0
//!     fjord leader-election --bootstrap-server HOST:9092 --election-type UNCLEAN --path-to-json-file p.json
//!
//! The JSON file is Kafka's: `{"partitions": [{"topic": "t", "partition": 0}, ...]}`.
//! librdkafka has no ElectLeaders in the rdkafka crate, so the request is sent directly.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::common::{usage, Connection};
use super::wire::{call, open, refused};
use crate::output::{errln, outln};

/// Kafka's error code for "the right replica already leads".
const ELECTION_NOT_NEEDED: i16 = 84;

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
enum ElectionType {
    Preferred,
    Unclean,
}

#[derive(Args)]
pub struct LeaderElectionArgs {
    #[command(flatten)]
    conn: Connection,
    /// PREFERRED: the first replica of the assignment takes over if in sync. UNCLEAN: a
    /// partition without a leader takes any live replica, losing what only the others had.
    #[arg(
        long = "election-type",
        value_enum,
        ignore_case = true,
        required = true
    )]
    election_type: ElectionType,
    /// Every partition of every topic.
    #[arg(long = "all-topic-partitions")]
    all: bool,
    /// One topic (with --partition).
    #[arg(long)]
    topic: Option<String>,
    /// The partition of --topic.
    #[arg(long)]
    partition: Option<i32>,
    /// Kafka's JSON list of partitions.
    #[arg(long = "path-to-json-file", value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

#[derive(serde::Deserialize)]
struct PartitionsFile {
    partitions: Vec<PartitionEntry>,
}

#[derive(serde::Deserialize)]
struct PartitionEntry {
    topic: String,
    partition: i32,
}

pub fn run(args: LeaderElectionArgs) -> Result<ExitCode> {
    let chosen = [args.all, args.topic.is_some(), args.json.is_some()]
        .iter()
        .filter(|&&b| b)
        .count();
    if chosen != 1 {
        return usage(
            "exactly one of --all-topic-partitions, --topic (with --partition) and \
             --path-to-json-file is needed",
        );
    }
    if args.topic.is_some() != args.partition.is_some() {
        return usage("--topic and --partition go together");
    }
    let wanted: Option<Vec<(String, i32)>> = if args.all {
        None
    } else if let (Some(t), Some(p)) = (&args.topic, args.partition) {
        Some(vec![(t.clone(), p)])
    } else {
        let path = args.json.as_ref().ok_or_else(|| anyhow!("no partitions"))?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: PartitionsFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a partitions JSON file", path.display()))?;
        Some(
            file.partitions
                .into_iter()
                .map(|e| (e.topic, e.partition))
                .collect(),
        )
    };
    let (name, code) = match args.election_type {
        ElectionType::Preferred => ("PREFERRED", 0),
        ElectionType::Unclean => ("UNCLEAN", 1),
    };
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in wanted.iter().flatten() {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let request = ElectLeadersRequest::default()
        .with_election_type(code)
        .with_timeout_ms(args.conn.timeout().as_millis() as i32)
        .with_topic_partitions(wanted.as_ref().map(|_| {
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(t)))
                        .with_partitions(ps)
                })
                .collect()
        }));
    let mut last_error = None;
    let mut answer = None;
    for server in args.conn.bootstrap_server.split(',').map(str::trim) {
        let sent = open(&args.conn, server)
            .and_then(|mut s| call::<_, ElectLeadersResponse>(&mut s, 1, request.clone(), 2));
        match sent {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(e) => last_error = Some(e.context(format!("broker {server}"))),
        }
    }
    let resp = match answer {
        Some(r) => r,
        None => return Err(last_error.unwrap_or_else(|| anyhow!("no bootstrap server given"))),
    };
    refused("ElectLeaders failed", resp.error_code, &None)?;
    let (mut done, mut not_needed, mut failed) = (vec![], vec![], vec![]);
    for topic in &resp.replica_election_results {
        for p in &topic.partition_result {
            let tp = format!("{}-{}", topic.topic.0, p.partition_id);
            match p.error_code {
                0 => done.push(tp),
                ELECTION_NOT_NEEDED => not_needed.push(tp),
                c => failed.push(format!(
                    "{tp}: error {c}: {}",
                    p.error_message.as_deref().unwrap_or("")
                )),
            }
        }
    }
    if !done.is_empty() {
        outln!(
            "Successfully completed leader election ({name}) for partitions {}",
            done.join(", ")
        )?;
    }
    if !not_needed.is_empty() {
        outln!(
            "Valid replica already elected for partitions {}",
            not_needed.join(", ")
        )?;
    }
    if done.is_empty() && not_needed.is_empty() && failed.is_empty() {
        outln!("No partition needed a leader election ({name})")?;
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failed {
        errln!("Error completing leader election ({name}) for partition: {f}");
    }
    errln!("{} replica(s) could not be elected", failed.len());
    Ok(ExitCode::from(1))
}
