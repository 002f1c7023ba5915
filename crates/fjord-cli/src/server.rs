//! `fjord server`: reads configuration (file, flags, overrides — later wins) and runs the
//! broker until SIGTERM or Ctrl-C, then shuts down cleanly.

use crate::output::errln;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use fjord_broker::{parse_properties, BrokerConfig, Server};

#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on (sets `listeners`); default 127.0.0.1:9092.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Where partition logs and metadata live (sets `log.dirs`); default ./fjord-data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This node's id (sets `node.id`); default 1.
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// A server.properties file with Kafka's property names.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set any broker property, like kafka-server-start.sh --override (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub fn run(args: ServerArgs) -> ExitCode {
    init_logging();
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(msg) => {
            errln!("fjord: {msg}");
            return ExitCode::from(2);
        }
    };
    if !config.ignored.is_empty() {
        // One line for all of them: a Kafka server.properties sets a dozen such names.
        tracing::warn!(
            "ignoring Kafka broker properties that Fjord does not use: {}",
            config.ignored.join(", ")
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("fjord: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                errln!("fjord: {e}");
                return ExitCode::FAILURE;
            }
        };
        match server.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                errln!("fjord: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn build_config(args: &ServerArgs) -> Result<BrokerConfig, String> {
    let mut props = BTreeMap::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        props = parse_properties(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(listen) = &args.listen {
        props.insert("listeners".into(), format!("PLAINTEXT://{listen}"));
    }
    if let Some(dir) = &args.data_dir {
        props.insert("log.dirs".into(), dir.display().to_string());
    }
    if let Some(id) = args.node_id {
        props.insert("node.id".into(), id.to_string());
    }
    for o in &args.overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| format!("--override expects KEY=VALUE, got '{o}'"))?;
        props.insert(k.trim().to_string(), v.trim().to_string());
    }
    BrokerConfig::from_props(&props).map_err(|e| e.to_string())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FJORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
