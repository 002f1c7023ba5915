//! `fjord perf e2e`: end-to-end latency, from the producer's send to the consumer's
//! receipt, at a fixed rate. The send time travels in the first 8 bytes of each value, so
//! producer and consumer (same process, same clock) need no coordination.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::stats::Latencies;
use crate::output::outln;

#[derive(Args)]
pub struct E2eArgs {
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    #[arg(long)]
    topic: String,
    #[arg(long, value_name = "N")]
    num_records: u64,
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    record_size: usize,
    /// Records per second.
    #[arg(long)]
    throughput: f64,
    /// Producer properties (Kafka names), e.g. acks=all.
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE")]
    producer_props: Vec<String>,
}

pub fn run(args: E2eArgs) -> Result<()> {
    if args.record_size < 8 {
        bail!("--record-size must be at least 8 bytes (the send time travels in the value)");
    }
    if args.throughput <= 0.0 {
        bail!("--throughput must be a positive rate in records per second");
    }
    let mut pconf = super::client_config(args.bootstrap_server.as_deref(), &args.producer_props)?;
    if pconf.get("linger.ms").is_none() {
        pconf.set("linger.ms", "0");
    }
    let producer: BaseProducer = pconf
        .create()
        .map_err(crate::tools::common::create_error)
        .context("cannot create the producer")?;

    let mut cconf = super::client_config(args.bootstrap_server.as_deref(), &[])?;
    cconf
        .set("group.id", "fjord-perf-e2e")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer = cconf
        .create()
        .map_err(crate::tools::common::create_error)
        .context("cannot create the consumer")?;
    // Start every partition at its current end, so only this run's records are timed.
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .context("cannot read topic metadata")?;
    let Some(topic) = metadata.topics().first().filter(|t| t.error().is_none()) else {
        bail!("topic {} not found; create it first", args.topic);
    };
    let mut list = TopicPartitionList::new();
    for p in topic.partitions() {
        let (_, high) = consumer
            .fetch_watermarks(&args.topic, p.id(), Duration::from_secs(10))
            .context("cannot read the partition end")?;
        list.add_partition_offset(&args.topic, p.id(), Offset::Offset(high))?;
    }
    consumer.assign(&list).context("assign failed")?;

    let origin = Instant::now();
    let total = args.num_records;
    let consumer_thread = std::thread::spawn(move || -> Result<Latencies> {
        let mut lat = Latencies::with_capacity(total as usize);
        let mut last = Instant::now();
        while (lat.len() as u64) < total {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    let Some(v) = m.payload().filter(|v| v.len() >= 8) else {
                        continue;
                    };
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&v[..8]);
                    let now = origin.elapsed().as_micros() as u64;
                    lat.record(now.saturating_sub(u64::from_be_bytes(sent)));
                }
                Some(Err(e)) => bail!("consume failed: {e}"),
                None if last.elapsed() > Duration::from_secs(30) => {
                    bail!("no record for 30 s after {} of {total}", lat.len())
                }
                None => {}
            }
        }
        Ok(lat)
    });

    let mut value = vec![b'x'; args.record_size];
    for i in 0..total {
        let due = origin + Duration::from_secs_f64(i as f64 / args.throughput);
        let now = Instant::now();
        if due > now {
            producer.poll(Duration::ZERO);
            std::thread::sleep(due - now);
        }
        let sent = origin.elapsed().as_micros() as u64;
        value[..8].copy_from_slice(&sent.to_be_bytes());
        super::send(
            &producer,
            BaseRecord::<(), [u8]>::to(&args.topic).payload(&value[..]),
        )?;
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("records were still unsent after 60 s")?;
    let mut lat = consumer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread failed"))??;
    let (avg, max, p) = lat.summary();
    outln!(
        "{} records at {:.0} records/sec: {avg:.2} ms avg end-to-end latency, {max:.2} ms max, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
        lat.len(),
        args.throughput,
        p[0],
        p[1],
        p[2],
        p[3]
    )?;
    Ok(())
}
