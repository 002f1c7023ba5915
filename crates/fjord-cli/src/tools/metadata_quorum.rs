//! `fjord metadata-quorum`: the metadata quorum, like `kafka-metadata-quorum.sh`.
//!
//!     fjord metadata-quorum --bootstrap-server HOST:9092 describe --status
//!     fjord metadata-quorum --bootstrap-server HOST:9092 describe --replication
//!
//! librdkafka has no DescribeQuorum, so this tool speaks that request (and DescribeCluster,
//! for the cluster id) itself, to the first bootstrap broker that answers; the broker asks
//! the active controller.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::common::{usage, Connection};
use super::wire::{call, open, refused};
use crate::output::outln;

#[derive(Args)]
pub struct MetadataQuorumArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: QuorumCommand,
}

#[derive(Subcommand)]
enum QuorumCommand {
    /// Describe the metadata quorum.
    Describe(DescribeArgs),
}

#[derive(Args)]
struct DescribeArgs {
    /// Leader, epoch, high watermark, lag and the voters.
    #[arg(long)]
    status: bool,
    /// One line per voter: log end offset, lag, timestamps, leader or follower.
    #[arg(long)]
    replication: bool,
}

pub fn run(args: MetadataQuorumArgs) -> Result<ExitCode> {
    let QuorumCommand::Describe(d) = args.command;
    if d.status == d.replication {
        return usage("describe needs exactly one of --status and --replication");
    }
    let mut last_error = None;
    for server in args.conn.bootstrap_server.split(',').map(str::trim) {
        match describe(&args.conn, server) {
            Ok((cluster_id, quorum)) => {
                if d.status {
                    print_status(&cluster_id, &quorum)?;
                } else {
                    print_replication(&quorum)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => last_error = Some(e.context(format!("broker {server}"))),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("no bootstrap server given")))
}

/// What the quorum's partition says, or its error.
struct Quorum {
    leader_id: i32,
    leader_epoch: i32,
    high_watermark: i64,
    voters: Vec<ReplicaState>,
    observers: Vec<ReplicaState>,
    endpoints: Vec<(i32, String)>,
}

fn describe(conn: &Connection, server: &str) -> Result<(String, Quorum)> {
    let mut stream = open(conn, server)?;
    let cluster: DescribeClusterResponse =
        call(&mut stream, 1, DescribeClusterRequest::default(), 0)?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let version = 2;
    let resp: DescribeQuorumResponse = call(&mut stream, 2, request, version)?;
    refused(
        "DescribeQuorum failed",
        resp.error_code,
        &resp.error_message,
    )?;
    let partition = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("DescribeQuorum answered without the metadata partition"))?;
    refused(
        "the metadata quorum could not be described",
        partition.error_code,
        &partition.error_message,
    )?;
    let endpoints = resp
        .nodes
        .iter()
        .flat_map(|n| {
            n.listeners
                .iter()
                .map(move |l| (n.node_id.0, format!("{}://{}:{}", l.name, l.host, l.port)))
        })
        .collect();
    Ok((
        cluster.cluster_id.to_string(),
        Quorum {
            leader_id: partition.leader_id.0,
            leader_epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: partition.current_voters.clone(),
            observers: partition.observers.clone(),
            endpoints,
        },
    ))
}

fn print_status(cluster_id: &str, q: &Quorum) -> Result<()> {
    let leader_end = leader_end(q);
    let (lag, lag_ms) = q
        .voters
        .iter()
        .filter(|r| r.replica_id.0 != q.leader_id)
        .fold((0i64, 0i64), |(lag, ms), r| {
            let l = if r.log_end_offset < 0 {
                leader_end
            } else {
                leader_end - r.log_end_offset
            };
            let t = leader_caught_up(q)
                .zip((r.last_caught_up_timestamp >= 0).then_some(r.last_caught_up_timestamp))
                .map_or(-1, |(a, b)| (a - b).max(0));
            (lag.max(l), if t < 0 { -1 } else { ms.max(t) })
        });
    let voters = describe_nodes(&q.voters, q);
    let observers = describe_nodes(&q.observers, q);
    outln!("ClusterId:              {cluster_id}")?;
    outln!("LeaderId:               {}", q.leader_id)?;
    outln!("LeaderEpoch:            {}", q.leader_epoch)?;
    outln!("HighWatermark:          {}", q.high_watermark)?;
    outln!("MaxFollowerLag:         {lag}")?;
    outln!("MaxFollowerLagTimeMs:   {lag_ms}")?;
    outln!("CurrentVoters:          [{voters}]")?;
    outln!("CurrentObservers:       [{observers}]")?;
    Ok(())
}

fn print_replication(q: &Quorum) -> Result<()> {
    let leader_end = leader_end(q);
    let mut rows = vec![[
        "NodeId".to_string(),
        "LogEndOffset".into(),
        "Lag".into(),
        "LastFetchTimestamp".into(),
        "LastCaughtUpTimestamp".into(),
        "Status".into(),
    ]];
    let roles = q
        .voters
        .iter()
        .map(|r| {
            (
                r,
                if r.replica_id.0 == q.leader_id {
                    "Leader"
                } else {
                    "Follower"
                },
            )
        })
        .chain(q.observers.iter().map(|r| (r, "Observer")));
    for (r, role) in roles {
        let lag = if r.log_end_offset < 0 {
            "-1".to_string()
        } else {
            (leader_end - r.log_end_offset).max(0).to_string()
        };
        rows.push([
            r.replica_id.0.to_string(),
            r.log_end_offset.to_string(),
            lag,
            r.last_fetch_timestamp.to_string(),
            r.last_caught_up_timestamp.to_string(),
            role.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

fn leader_end(q: &Quorum) -> i64 {
    q.voters
        .iter()
        .find(|r| r.replica_id.0 == q.leader_id)
        .map_or(q.high_watermark, |r| r.log_end_offset)
}

fn leader_caught_up(q: &Quorum) -> Option<i64> {
    q.voters
        .iter()
        .find(|r| r.replica_id.0 == q.leader_id)
        .map(|r| r.last_caught_up_timestamp)
        .filter(|t| *t >= 0)
}

fn describe_nodes(nodes: &[ReplicaState], q: &Quorum) -> String {
    nodes
        .iter()
        .map(|r| {
            let endpoints: Vec<String> = q
                .endpoints
                .iter()
                .filter(|(id, _)| *id == r.replica_id.0)
                .map(|(_, e)| format!("\"{e}\""))
                .collect();
            format!(
                "{{\"id\": {}, \"endpoints\": [{}]}}",
                r.replica_id.0,
                endpoints.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
