//! `fjord perf consume`: kafka-consumer-perf-test's flags and summary line.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::output::{errln, outln};

#[derive(Args)]
pub struct ConsumeArgs {
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    #[arg(long)]
    topic: String,
    /// Records to consume before stopping.
    #[arg(long, value_name = "N")]
    messages: u64,
    /// Join this consumer group (subscribe); without it, partitions are assigned directly.
    #[arg(long)]
    group: Option<String>,
    /// Start at the end of each partition instead of the beginning.
    #[arg(long)]
    from_latest: bool,
    /// Give up after this many milliseconds without a record.
    #[arg(long, default_value_t = 10_000)]
    timeout: u64,
    /// Consumer properties (Kafka names).
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE")]
    consumer_props: Vec<String>,
}

pub fn run(args: ConsumeArgs) -> Result<()> {
    let mut config = super::client_config(args.bootstrap_server.as_deref(), &args.consumer_props)?;
    let reset = if args.from_latest {
        "latest"
    } else {
        "earliest"
    };
    config.set("auto.offset.reset", reset);
    config.set("enable.auto.commit", "false");
    config.set(
        "group.id",
        args.group.as_deref().unwrap_or("fjord-perf-consumer"),
    );
    let consumer: BaseConsumer = config
        .create()
        .map_err(crate::tools::common::create_error)
        .context("cannot create the consumer")?;
    let started_wall = wall_ms();
    let started = Instant::now();
    if args.group.is_some() {
        consumer
            .subscribe(&[&args.topic])
            .context("subscribe failed")?;
    } else {
        let metadata = consumer
            .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
            .context("cannot read topic metadata")?;
        let Some(topic) = metadata.topics().first() else {
            bail!("topic {} not found", args.topic);
        };
        if let Some(e) = topic.error() {
            bail!("topic {}: {:?}", args.topic, e);
        }
        let mut list = TopicPartitionList::new();
        let start = if args.from_latest {
            Offset::End
        } else {
            Offset::Beginning
        };
        for p in topic.partitions() {
            list.add_partition_offset(&args.topic, p.id(), start)?;
        }
        consumer.assign(&list).context("assign failed")?;
    }

    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut first_record: Option<Instant> = None;
    let mut last_record = Instant::now();
    while count < args.messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first_record.get_or_insert_with(Instant::now);
                last_record = Instant::now();
                count += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => bail!("consume failed: {e}"),
            None => {
                if last_record.elapsed() > Duration::from_millis(args.timeout) {
                    errln!(
                        "WARNING: Exiting before consuming the expected number of messages: timeout ({} ms) exceeded.",
                        args.timeout
                    );
                    break;
                }
            }
        }
    }
    let end_wall = wall_ms();
    let total = started.elapsed().as_secs_f64();
    // The time until the first record arrived is join/assignment time, as Kafka reports it.
    let rebalance = first_record
        .map(|f| f.duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    let fetch = (total - rebalance).max(1e-9);
    let mb = bytes as f64 / (1024.0 * 1024.0);
    outln!("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")?;
    outln!(
        "{started_wall}, {end_wall}, {mb:.4}, {:.4}, {count}, {:.4}, {:.0}, {:.0}, {:.4}, {:.4}",
        mb / total,
        count as f64 / total,
        rebalance * 1000.0,
        fetch * 1000.0,
        mb / fetch,
        count as f64 / fetch,
    )?;
    Ok(())
}

fn wall_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}
