//! `fjord console-producer`: one record per stdin line, keyed with `parse.key=true`, waiting
//! for every delivery before it exits, like Kafka's `kafka-console-producer.sh`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::common::{
    apply_properties_file, check_reachable, create_error, parse_kv, usage, Connection,
};
use crate::output::errln;

#[derive(Args, Debug)]
pub struct ProducerArgs {
    #[command(flatten)]
    conn: Connection,
    /// Topic to write to.
    #[arg(long, value_name = "TOPIC", required = true)]
    topic: String,
    /// A producer config, e.g. acks=all (repeatable).
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    producer_property: Vec<String>,
    /// Producer properties file.
    #[arg(long = "producer.config", value_name = "FILE")]
    producer_config: Option<PathBuf>,
    /// Reader setting: parse.key=true, key.separator=SEP, ignore.error=true (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    property: Vec<String>,
    /// Compression: none, gzip (when given without a value), snappy, lz4 or zstd.
    #[arg(
        long = "compression-codec",
        value_name = "CODEC",
        num_args = 0..=1,
        default_missing_value = "gzip",
        value_parser = ["none", "gzip", "snappy", "lz4", "zstd"]
    )]
    compression_codec: Option<String>,
    /// Acknowledgements to wait for: all/-1, 1 or 0 (default all).
    #[arg(long = "request-required-acks", value_name = "ACKS")]
    request_required_acks: Option<String>,
    /// Give up on a record not delivered within this long.
    #[arg(
        long = "message-timeout-ms",
        value_name = "MS",
        default_value_t = 30_000
    )]
    message_timeout_ms: u64,
}

/// Counts delivery failures and reports each one as it happens.
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, line: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            errln!("fjord: record from line {line} was not delivered: {e}");
        }
    }
}

/// How the reader splits lines into key and value.
struct Reader {
    parse_key: bool,
    separator: String,
    ignore_error: bool,
}

impl Reader {
    fn from_properties(props: &[String]) -> Result<Reader> {
        let mut r = Reader {
            parse_key: false,
            separator: "\t".to_string(),
            ignore_error: false,
        };
        for p in props {
            let (k, v) = parse_kv(p, "--property")?;
            match k.as_str() {
                "parse.key" => r.parse_key = v.eq_ignore_ascii_case("true"),
                "key.separator" => r.separator = v,
                "ignore.error" => r.ignore_error = v.eq_ignore_ascii_case("true"),
                // Kafka's reader has more knobs (headers, null markers); they do not change
                // what a plain line becomes, so accept them without acting on them.
                _ => {}
            }
        }
        if r.parse_key && r.separator.is_empty() {
            return usage("key.separator must not be empty");
        }
        Ok(r)
    }

    /// Key and value of one line, or None when a key was expected and no separator found.
    fn split<'a>(&self, line: &'a str) -> Option<(Option<&'a str>, &'a str)> {
        if !self.parse_key {
            return Some((None, line));
        }
        match line.split_once(self.separator.as_str()) {
            Some((k, v)) => Some((Some(k), v)),
            None if self.ignore_error => Some((None, line)),
            None => None,
        }
    }
}

pub fn run(args: ProducerArgs) -> Result<ExitCode> {
    let reader = Reader::from_properties(&args.property)?;
    let mut cfg = args.conn.client_config()?;
    // The Java client's partitioner, so a key lands on the same partition whichever client
    // wrote it; unkeyed records spread randomly as librdkafka does.
    cfg.set("partitioner", "murmur2_random");
    cfg.set("message.timeout.ms", args.message_timeout_ms.to_string());
    cfg.set("acks", "all");
    if let Some(path) = &args.producer_config {
        apply_properties_file(&mut cfg, path)?;
    }
    for p in &args.producer_property {
        let (k, v) = parse_kv(p, "--producer-property")?;
        cfg.set(k, v);
    }
    if let Some(codec) = &args.compression_codec {
        cfg.set("compression.codec", codec);
    }
    if let Some(acks) = &args.request_required_acks {
        cfg.set("acks", acks);
    }
    let context = Deliveries {
        failed: AtomicU64::new(0),
    };
    let producer: BaseProducer<Deliveries> =
        cfg.create_with_context(context).map_err(create_error)?;
    check_reachable(producer.client(), &args.conn)?;

    let stdin = std::io::stdin();
    let prompt = stdin.is_terminal();
    let mut stdout = std::io::stdout();
    let mut lines = stdin.lock().lines();
    let mut line_no: u64 = 0;
    let mut sent: u64 = 0;
    let mut stop_error = None;
    loop {
        if prompt {
            let _ = write!(stdout, ">");
            let _ = stdout.flush();
        }
        let line = match lines.next() {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                stop_error = Some(anyhow!(e).context("cannot read standard input"));
                break;
            }
            None => break,
        };
        line_no += 1;
        let line = line.strip_suffix('\r').unwrap_or(&line).to_string();
        let Some((key, value)) = reader.split(&line) else {
            stop_error = Some(anyhow!(
                "No key separator found on line number {line_no}: '{line}'"
            ));
            break;
        };
        send(&producer, &args.topic, key, value, line_no)?;
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    // Every record handed over must be delivered or reported before exiting.
    let wait = Duration::from_millis(args.message_timeout_ms.saturating_add(5_000));
    producer.flush(wait).map_err(|e| {
        anyhow!(
            "records still undelivered after {} ms: {e}",
            wait.as_millis()
        )
    })?;
    if prompt {
        let _ = writeln!(stdout);
    }
    let failed = producer.context().failed.load(Ordering::SeqCst);
    if let Some(e) = stop_error {
        return Err(e);
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {sent} records were not delivered"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Hands one record to librdkafka, waiting for room when its queue is full.
fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    key: Option<&str>,
    value: &str,
    line_no: u64,
) -> Result<()> {
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(line_no)).payload(value);
    if let Some(k) = key {
        record = record.key(k);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(100));
            }
            Err((e, _)) => {
                return Err(anyhow!(e)).context(format!("cannot send line {line_no}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_split_uses_first_separator() {
        let r = Reader::from_properties(&["parse.key=true".into(), "key.separator=:".into()])
            .expect("valid properties");
        assert_eq!(r.split("k:v:w"), Some((Some("k"), "v:w")));
        assert_eq!(r.split("novalue"), None);
        let plain = Reader::from_properties(&[]).expect("defaults");
        assert_eq!(plain.split("a\tb"), Some((None, "a\tb")));
    }
}
