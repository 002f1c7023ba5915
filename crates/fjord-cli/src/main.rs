//! The `fjord` binary: `fjord server` runs a broker; `topics`, `console-producer`,
//! `console-consumer`, `configs`, `consumer-groups`, `metadata-quorum`, `leader-election`
//! and `reassign-partitions` are the Kafka-style tools, `cluster` starts a local cluster,
//! and `perf` the load generators for benchmarks.

mod clean_shutdown;
mod cluster;
mod output;
mod perf;
mod server;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::errln;

#[derive(Parser)]
#[command(
    name = "fjord",
    version,
    about = "Fjord: a Kafka-compatible event-streaming platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (with its controller) until SIGTERM or Ctrl-C.
    Server(server::ServerArgs),
    /// Start a local cluster of several nodes on loopback until Ctrl-C.
    Cluster(cluster::ClusterArgs),
    /// Create, list, describe, alter and delete topics (like kafka-topics.sh).
    Topics(tools::topics::TopicsArgs),
    /// Write stdin lines to a topic, one record per line (like kafka-console-producer.sh).
    ConsoleProducer(tools::console_producer::ProducerArgs),
    /// Print a topic's records to stdout (like kafka-console-consumer.sh).
    ConsoleConsumer(tools::console_consumer::ConsumerArgs),
    /// Describe and change topic and broker configs and SCRAM users (like kafka-configs.sh).
    Configs(tools::configs::ConfigsArgs),
    /// Add, list and remove ACLs (like kafka-acls.sh).
    Acls(tools::acls::AclsArgs),
    /// List, describe, reset and delete consumer groups (like kafka-consumer-groups.sh).
    ConsumerGroups(tools::consumer_groups::GroupsArgs),
    /// Describe, upgrade, downgrade and disable cluster features (like kafka-features.sh).
    Features(tools::features::FeaturesArgs),
    /// Describe the metadata quorum (like kafka-metadata-quorum.sh).
    MetadataQuorum(tools::metadata_quorum::MetadataQuorumArgs),
    /// Move leadership to preferred replicas, or elect one unclean (like kafka-leader-election.sh).
    LeaderElection(tools::leader_election::LeaderElectionArgs),
    /// Move partition replicas between brokers (like kafka-reassign-partitions.sh).
    ReassignPartitions(tools::reassign_partitions::ReassignArgs),
    /// Load generators like kafka-producer-perf-test and kafka-consumer-perf-test.
    Perf {
        #[command(subcommand)]
        command: perf::PerfCommand,
    },
}

/// Subcommand names, so a usage line can point at the right `--help`.
const TOOLS: [&str; 12] = [
    "server",
    "cluster",
    "perf",
    "topics",
    "console-producer",
    "console-consumer",
    "configs",
    "consumer-groups",
    "features",
    "metadata-quorum",
    "leader-election",
    "reassign-partitions",
];

fn main() -> ExitCode {
    // Old Kafka guides pass --zookeeper; answer that habit before any other flag check.
    if std::env::args()
        .skip(1)
        .any(|a| a == "--zookeeper" || a.starts_with("--zookeeper="))
    {
        errln!("fjord: {}", tools::common::NO_ZOOKEEPER);
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let tool = match &cli.command {
        Command::Server(_) => "server",
        Command::Cluster(_) => "cluster",
        Command::Topics(_) => "topics",
        Command::ConsoleProducer(_) => "console-producer",
        Command::ConsoleConsumer(_) => "console-consumer",
        Command::Configs(_) => "configs",
        Command::Acls(_) => "acls",
        Command::ConsumerGroups(_) => "consumer-groups",
        Command::Features(_) => "features",
        Command::MetadataQuorum(_) => "metadata-quorum",
        Command::LeaderElection(_) => "leader-election",
        Command::ReassignPartitions(_) => "reassign-partitions",
        Command::Perf { .. } => "perf",
    };
    let result = match cli.command {
        Command::Server(args) => return server::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Topics(args) => tools::topics::run(args),
        Command::ConsoleProducer(args) => tools::console_producer::run(args),
        Command::ConsoleConsumer(args) => tools::console_consumer::run(args),
        Command::Configs(args) => tools::configs::run(args),
        Command::Acls(args) => tools::acls::run(args),
        Command::ConsumerGroups(args) => tools::consumer_groups::run(args),
        Command::Features(args) => tools::features::run(args),
        Command::MetadataQuorum(args) => tools::metadata_quorum::run(args),
        Command::LeaderElection(args) => tools::leader_election::run(args),
        Command::ReassignPartitions(args) => tools::reassign_partitions::run(args),
        Command::Perf { command } => perf::run(command).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        // The reader of our output went away (`| head`): that ends a tool normally.
        Err(e) if e.downcast_ref::<output::StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<tools::common::UsageError>() {
                errln!("fjord: {u} (see fjord {tool} --help)");
                return ExitCode::from(2);
            }
            // One line: the outermost context, then its causes, without a backtrace.
            let text = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            errln!("fjord: {}", text.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout with success; a mistake gets one line on stderr and exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            let text = e.to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| {
                !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more")
            });
            let mut first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            // clap lists missing arguments on the lines after a trailing colon; fold them in
            // so the one line still says what is missing.
            if first.ends_with(':') {
                let rest: Vec<&str> = lines.take_while(|l| !l.starts_with("tip:")).collect();
                if !rest.is_empty() {
                    first = format!("{} {}", first, rest.join(" "));
                }
            }
            let help = std::env::args()
                .nth(1)
                .filter(|a| TOOLS.contains(&a.as_str()))
                .map(|sub| format!("fjord {sub} --help"))
                .unwrap_or_else(|| "fjord --help".to_string());
            errln!("fjord: {first} (see {help})");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap checks flag definitions (unique names, valid groups) only when asked.
    #[test]
    fn flag_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
