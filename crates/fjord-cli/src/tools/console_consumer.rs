//! `fjord console-consumer`: prints records of a topic to stdout in the layout of Kafka's
//! `kafka-console-consumer.sh`, either as a member of a consumer group (`--group`, committing
//! what it printed) or reading partitions directly and committing nothing.

use std::io::{BufWriter, ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::common::{
    apply_properties_file, check_reachable, create_error, parse_kv, stop_flag, usage, Connection,
};
use crate::output::errln;

#[derive(Args, Debug)]
pub struct ConsumerArgs {
    #[command(flatten)]
    conn: Connection,
    /// Topic to read.
    #[arg(long, value_name = "TOPIC", required = true)]
    topic: String,
    /// Start from the earliest record when there is no committed offset.
    #[arg(long = "from-beginning")]
    from_beginning: bool,
    /// Consumer group to join; its offsets are committed as records are printed.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Read only this partition.
    #[arg(long, value_name = "P")]
    partition: Option<i32>,
    /// With --partition: start at N, earliest or latest (default latest).
    #[arg(long, value_name = "N|earliest|latest", requires = "partition")]
    offset: Option<String>,
    /// Exit after printing this many records.
    #[arg(long = "max-messages", value_name = "N")]
    max_messages: Option<u64>,
    /// Exit when no record arrives for this long.
    #[arg(long = "timeout-ms", value_name = "MS")]
    timeout_ms: Option<u64>,
    /// read_uncommitted (default) or read_committed.
    #[arg(
        long = "isolation-level",
        value_name = "LEVEL",
        value_parser = ["read_uncommitted", "read_committed"]
    )]
    isolation_level: Option<String>,
    /// A consumer config (repeatable).
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_property: Vec<String>,
    /// Consumer properties file.
    #[arg(long = "consumer.config", value_name = "FILE")]
    consumer_config: Option<PathBuf>,
    /// Formatter setting: print.key, print.partition, print.offset, print.timestamp,
    /// print.value, key.separator, line.separator (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    property: Vec<String>,
}

/// What each printed record shows, following Kafka's default message formatter.
struct Format {
    timestamp: bool,
    partition: bool,
    offset: bool,
    key: bool,
    value: bool,
    key_separator: String,
    line_separator: String,
}

impl Format {
    fn from_properties(props: &[String]) -> Result<Format> {
        let mut f = Format {
            timestamp: false,
            partition: false,
            offset: false,
            key: false,
            value: true,
            key_separator: "\t".into(),
            line_separator: "\n".into(),
        };
        for p in props {
            let (k, v) = parse_kv(p, "--property")?;
            let on = v.eq_ignore_ascii_case("true");
            match k.as_str() {
                "print.timestamp" => f.timestamp = on,
                "print.partition" => f.partition = on,
                "print.offset" => f.offset = on,
                "print.key" => f.key = on,
                "print.value" => f.value = on,
                "key.separator" => f.key_separator = unescape(&v),
                "line.separator" => f.line_separator = unescape(&v),
                // Other formatter settings (headers, deserializers) have no effect here.
                _ => {}
            }
        }
        Ok(f)
    }

    fn render(&self, m: &BorrowedMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        // A field is followed by the key separator while more fields follow, else by the
        // line separator — Kafka's layout, so scripts that split its output keep working.
        let fields = [
            self.timestamp,
            self.partition,
            self.offset,
            self.key,
            self.value,
        ];
        let more_after = |i: usize| fields[i + 1..].iter().any(|f| *f);
        let sep = |out: &mut Vec<u8>, i: usize| {
            if more_after(i) {
                out.extend_from_slice(self.key_separator.as_bytes());
            } else {
                out.extend_from_slice(self.line_separator.as_bytes());
            }
        };
        if self.timestamp {
            let ts = match m.timestamp() {
                Timestamp::CreateTime(t) => format!("CreateTime:{t}"),
                Timestamp::LogAppendTime(t) => format!("LogAppendTime:{t}"),
                Timestamp::NotAvailable => "NO_TIMESTAMP".into(),
            };
            out.extend_from_slice(ts.as_bytes());
            sep(&mut out, 0);
        }
        if self.partition {
            out.extend_from_slice(format!("Partition:{}", m.partition()).as_bytes());
            sep(&mut out, 1);
        }
        if self.offset {
            out.extend_from_slice(format!("Offset:{}", m.offset()).as_bytes());
            sep(&mut out, 2);
        }
        if self.key {
            out.extend_from_slice(m.key().unwrap_or(b"null"));
            sep(&mut out, 3);
        }
        if self.value {
            out.extend_from_slice(m.payload().unwrap_or(b"null"));
            out.extend_from_slice(self.line_separator.as_bytes());
        }
        out
    }
}

/// Shell users type `\t` and `\n` literally; turn them into the characters they mean.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("\\r", "\r")
}

fn parse_start(args: &ConsumerArgs) -> Result<Offset> {
    match args.offset.as_deref() {
        None if args.from_beginning => Ok(Offset::Beginning),
        None => Ok(Offset::End),
        Some(_) if args.from_beginning => usage("--from-beginning cannot be used with --offset"),
        Some("earliest") => Ok(Offset::Beginning),
        Some("latest") => Ok(Offset::End),
        Some(n) => match n.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Offset::Offset(n)),
            _ => usage(format!(
                "--offset expects a non-negative number, earliest or latest, got '{n}'"
            )),
        },
    }
}

pub fn run(args: ConsumerArgs) -> Result<ExitCode> {
    let format = Format::from_properties(&args.property)?;
    let start = parse_start(&args)?;
    let mut cfg = args.conn.client_config()?;
    cfg.set(
        "auto.offset.reset",
        if args.from_beginning {
            "earliest"
        } else {
            "latest"
        },
    );
    cfg.set("enable.partition.eof", "false");
    match &args.group {
        Some(g) => {
            cfg.set("group.id", g);
            cfg.set("enable.auto.commit", "true");
        }
        // Without a group the partitions are assigned directly and nothing is committed, so
        // no group appears on the broker; librdkafka still wants a group id to assign.
        None => {
            cfg.set(
                "group.id",
                format!("console-consumer-{}", std::process::id()),
            );
            cfg.set("enable.auto.commit", "false");
            cfg.set("enable.auto.offset.store", "false");
        }
    }
    if let Some(level) = &args.isolation_level {
        cfg.set("isolation.level", level);
    }
    if let Some(path) = &args.consumer_config {
        apply_properties_file(&mut cfg, path)?;
    }
    for p in &args.consumer_property {
        let (k, v) = parse_kv(p, "--consumer-property")?;
        cfg.set(k, v);
    }
    let consumer: BaseConsumer = cfg.create().map_err(create_error)?;
    let md = check_reachable(consumer.client(), &args.conn)?;
    let partitions: Vec<i32> = match md.topics().iter().find(|t| t.name() == args.topic) {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => bail!("Topic '{}' does not exist", args.topic),
    };

    if let Some(p) = args.partition {
        if !partitions.contains(&p) {
            bail!("Topic '{}' has no partition {p}", args.topic);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&args.topic, p, start)?;
        consumer.assign(&tpl)?;
    } else if args.group.is_some() {
        consumer.subscribe(&[args.topic.as_str()])?;
    } else {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&args.topic, *p, start)?;
        }
        consumer.assign(&tpl)?;
    }

    let stop = stop_flag()?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut count: u64 = 0;
    let mut last = Instant::now();
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut failure = None;
    while !stop.load(Ordering::SeqCst) {
        if args.max_messages.is_some_and(|max| count >= max) {
            break;
        }
        if idle.is_some_and(|d| last.elapsed() >= d) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if let Err(e) = out.flush() {
                    failure = write_failure(e);
                    break;
                }
            }
            Some(Ok(m)) => {
                last = Instant::now();
                if let Err(e) = out.write_all(&format.render(&m)) {
                    failure = write_failure(e);
                    break;
                }
                count += 1;
            }
            Some(Err(e)) => {
                failure = Some(anyhow!(e).context("consuming failed"));
                break;
            }
        }
    }
    if let Err(e) = out.flush() {
        failure = failure.or_else(|| write_failure(e));
    }
    drop(out);
    if args.group.is_some() {
        commit(&consumer)?;
    }
    errln!("Processed a total of {count} messages");
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// A reader that went away (`| head`) is a normal way to stop; anything else is reported.
fn write_failure(e: std::io::Error) -> Option<anyhow::Error> {
    if e.kind() == ErrorKind::BrokenPipe {
        None
    } else {
        Some(anyhow!(e).context("cannot write to standard output"))
    }
}

/// Commits what was printed so the group resumes after it.
fn commit(consumer: &BaseConsumer) -> Result<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => Ok(()),
        // Nothing consumed since the last commit: nothing to do.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(e) => Err(anyhow!(e)).context("cannot commit offsets"),
    }
}
