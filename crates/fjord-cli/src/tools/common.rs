//! What every Fjord tool shares: the connection flags, client configuration from flags and
//! properties files, `key=value` parsing, the first reachability check, and the split between
//! usage mistakes (exit 2) and failures (exit 1).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use rdkafka::client::{Client, ClientContext};
use rdkafka::ClientConfig;

/// How long a tool waits for an unreachable broker or an unanswered request by default.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The line `--zookeeper` gets: the flag comes from old Kafka guides and Fjord has no ZooKeeper.
pub const NO_ZOOKEEPER: &str = "Fjord has no ZooKeeper: use --bootstrap-server HOST:9092";

/// Flags that say where the cluster is and how long to wait for it.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Broker(s) to connect to: HOST:PORT[,HOST:PORT...].
    #[arg(
        long = "bootstrap-server",
        visible_alias = "broker-list",
        value_name = "HOST:PORT",
        required = true
    )]
    pub bootstrap_server: String,
    /// Client properties file (Kafka/librdkafka property names).
    #[arg(long = "command-config", value_name = "FILE")]
    pub command_config: Option<PathBuf>,
    /// Give up on an unreachable broker or an unanswered request after this long.
    #[arg(
        long = "command-timeout-ms",
        value_name = "MS",
        default_value_t = DEFAULT_TIMEOUT_MS
    )]
    pub command_timeout_ms: u64,
}

impl Connection {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms.max(1))
    }

    /// A client config pointing at the cluster, with librdkafka's own logging kept quiet so
    /// that a tool prints one clear line rather than a stream of reconnect attempts.
    pub fn client_config(&self) -> Result<ClientConfig> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap_server);
        cfg.set("client.id", "fjord-tools");
        cfg.set("log_level", "0");
        let ms = self
            .command_timeout_ms
            .clamp(10, i32::MAX as u64)
            .to_string();
        cfg.set("socket.timeout.ms", &ms);
        if let Some(path) = &self.command_config {
            apply_properties_file(&mut cfg, path)?;
        }
        Ok(cfg)
    }
}

/// A mistake in how the tool was called: reported as one line with exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a usage mistake.
pub fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(UsageError(msg.into()).into())
}

/// Splits `key=value`; whitespace around either side is dropped as Kafka's tools do.
pub fn parse_kv(s: &str, flag: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => usage(format!("{flag} expects KEY=VALUE, got '{s}'")),
    }
}

/// Reads a Java-style properties file (`key=value` or `key: value`, `#`/`!` comments).
pub fn read_properties(path: &Path) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .or_else(|| line.split_once(':'))
            .ok_or_else(|| anyhow!("{}:{}: expected key=value", path.display(), n + 1))?;
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

pub fn apply_properties_file(cfg: &mut ClientConfig, path: &Path) -> Result<()> {
    for (k, v) in read_properties(path)? {
        cfg.set(k, v);
    }
    Ok(())
}

/// Turns a client-creation failure into one line (bad property names land here).
pub fn create_error(e: rdkafka::error::KafkaError) -> anyhow::Error {
    match e {
        rdkafka::error::KafkaError::ClientCreation(msg) => {
            anyhow!("{}", explain_client_error(&msg))
        }
        other => anyhow!("{}", explain_client_error(&other.to_string())),
    }
}

/// librdkafka's words for a setting this build cannot carry out (TLS, SCRAM: it is built
/// without OpenSSL), with what the user can do instead.
pub fn explain_client_error(msg: &str) -> String {
    if msg.contains("OpenSSL not available") || msg.contains("No provider for SASL mechanism") {
        format!(
            "{msg}; this tool reaches PLAINTEXT listeners, and SASL_PLAINTEXT ones with PLAIN, \
             only (its librdkafka is built without OpenSSL): point it at such a listener. \
             fjord acls, configs --entity-type users, features, metadata-quorum, \
             leader-election and reassign-partitions reach every listener"
        )
    } else {
        msg.to_string()
    }
}

/// Asks for cluster metadata once, so an unreachable broker is reported within the timeout
/// instead of the tool waiting on librdkafka's endless reconnects.
pub fn check_reachable<C: ClientContext>(
    client: &Client<C>,
    conn: &Connection,
) -> Result<rdkafka::metadata::Metadata> {
    client.fetch_metadata(None, conn.timeout()).map_err(|e| {
        anyhow!(
            "cannot reach a broker at {} within {} ms ({})",
            conn.bootstrap_server,
            conn.command_timeout_ms,
            describe_kafka_error(&e)
        )
    })
}

/// librdkafka's error text without the Rust wrapper's prefixes.
pub fn describe_kafka_error(e: &rdkafka::error::KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => code.to_string(),
        None => e.to_string(),
    }
}

/// Set once SIGINT or SIGTERM arrives, so loops can stop, commit and report.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal listener")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{signal, SignalKind};
                    match signal(SignalKind::terminate()) {
                        Ok(mut term) => {
                            tokio::select! {
                                _ = tokio::signal::ctrl_c() => {}
                                _ = term.recv() => {}
                            }
                        }
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                }
                #[cfg(not(unix))]
                {
                    let _ = tokio::signal::ctrl_c().await;
                }
            });
            set.store(true, Ordering::SeqCst);
        })
        .context("cannot start the signal listener")?;
    Ok(flag)
}

/// Runs an rdkafka future (admin calls) to completion on a small runtime.
pub fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_trims_and_rejects_missing_equals() {
        let (k, v) = parse_kv(" acks = all ", "--producer-property").expect("valid pair");
        assert_eq!((k.as_str(), v.as_str()), ("acks", "all"));
        assert!(parse_kv("acks", "--producer-property").is_err());
        assert!(parse_kv("=x", "--config").is_err());
    }

    #[test]
    fn properties_file_skips_comments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("client.properties");
        std::fs::write(&path, "# comment\n! also\nacks=all\nlinger.ms: 5\n\n").expect("write");
        let props = read_properties(&path).expect("parse");
        assert_eq!(
            props,
            vec![
                ("acks".to_string(), "all".to_string()),
                ("linger.ms".to_string(), "5".to_string())
            ]
        );
    }
}
