//! `fjord perf`: load generators shaped like Kafka's perf-test tools, so numbers from
//! Fjord and Apache Kafka can be read side by side.
//!
//! `produce` mirrors kafka-producer-perf-test (interval lines, then percentiles),
//! `consume` mirrors kafka-consumer-perf-test (one CSV-like summary), and `e2e` measures
//! produce-to-consume latency at a fixed rate. All use librdkafka through `rdkafka`.

mod consume;
mod e2e;
mod produce;
mod stats;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::IntoOpaque;
use rdkafka::ClientConfig;

#[derive(Subcommand)]
pub enum PerfCommand {
    /// Produce records as fast as allowed and report throughput and latency percentiles.
    Produce(produce::ProduceArgs),
    /// Consume records and report MB/s and records/s.
    Consume(consume::ConsumeArgs),
    /// Produce at a fixed rate while consuming; report end-to-end latency percentiles.
    E2e(e2e::E2eArgs),
}

pub fn run(cmd: PerfCommand) -> Result<()> {
    match cmd {
        PerfCommand::Produce(a) => produce::run(a),
        PerfCommand::Consume(a) => consume::run(a),
        PerfCommand::E2e(a) => e2e::run(a),
    }
}

/// Builds a client config from `--bootstrap-server` and `k=v` properties (Kafka's names;
/// librdkafka accepts the common ones).
fn client_config(bootstrap: Option<&str>, props: &[String]) -> Result<ClientConfig> {
    let mut config = ClientConfig::new();
    if let Some(b) = bootstrap {
        config.set("bootstrap.servers", b);
    }
    for p in props {
        let Some((k, v)) = p.split_once('=') else {
            bail!("expected KEY=VALUE, got '{p}'");
        };
        config.set(k.trim(), v.trim());
    }
    if config.get("bootstrap.servers").is_none() {
        bail!("--bootstrap-server is required (or bootstrap.servers in the properties)");
    }
    Ok(config)
}

/// Enqueues a record, waiting for room while librdkafka's queue is full: a perf tool
/// measures the broker, so back-pressure is waited out rather than reported as failure.
fn send<C, D>(producer: &BaseProducer<C>, mut record: BaseRecord<'_, (), [u8], D>) -> Result<()>
where
    C: ProducerContext<DeliveryOpaque = D>,
    D: IntoOpaque,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("produce failed"),
        }
    }
}
