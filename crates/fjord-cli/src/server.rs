//! `fjord server`: reads configuration (file, flags, overrides — later wins) and runs the
//! broker until SIGTERM or Ctrl-C, then shuts down cleanly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use fjord_broker::{parse_properties, BrokerConfig, Server};

use crate::clean_shutdown::{self, PreviousRun};
use crate::output::errln;

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
    /// A SCRAM user to create at the first start of the data directory, as
    /// kafka-storage.sh format --add-scram: 'SCRAM-SHA-256=[name=admin,password=secret]'
    /// (repeatable).
    #[arg(
        long = "add-scram",
        value_name = "MECHANISM=[name=USER,password=PASSWORD]"
    )]
    add_scram: Vec<String>,
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
    let mut first_users = Vec::new();
    for spec in &args.add_scram {
        match crate::tools::scram::parse_spec(spec) {
            Ok(s) if s.user.is_some() => first_users.push(s),
            Ok(_) => {
                errln!(
                    "fjord: --add-scram needs name=USER: '{}'",
                    spec.split('[').next().unwrap_or(spec)
                );
                return ExitCode::from(2);
            }
            // The message never repeats the value, which holds a password.
            Err(e) => {
                errln!("fjord: --add-scram: {e}");
                return ExitCode::from(2);
            }
        }
    }
    tracing::info!(
        node_id = config.node_id,
        data_dir = %config.data_dir.display(),
        "starting Fjord {}",
        env!("CARGO_PKG_VERSION")
    );
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
    let shutdown = {
        let _runtime = runtime.enter();
        match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                errln!("fjord: cannot install the SIGTERM/SIGINT handlers: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    if !config.cluster.roles.broker {
        // A controller-only node hosts no partition: nothing to recover or flush, so no
        // clean-shutdown marker either.
        return match runtime.block_on(fjord_broker::server::run_controller(config, shutdown)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ fjord_broker::BrokerError::WrongDirectory(_)) => {
                errln!("fjord: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                errln!("fjord: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let dir = config.data_dir.clone();
    let ran_before = clean_shutdown::has_run_before(&dir);
    let mut shutdown = Box::pin(shutdown);
    // A cluster member waits in start-up until the quorum has formed; a signal then
    // stops it there (nothing was served, so there is nothing to flush).
    let started = runtime.block_on(async {
        tokio::select! {
            started = Server::start(config) => Some(started),
            () = &mut shutdown => None,
        }
    });
    let Some(started) = started else {
        tracing::info!("stopped while starting");
        return ExitCode::SUCCESS;
    };
    let server = match started {
        Ok(s) => s,
        // A directory that is not this node's is fixed in the configuration, like a bad
        // property: the same exit code.
        Err(e @ fjord_broker::BrokerError::WrongDirectory(_)) => {
            errln!("fjord: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            errln!("fjord: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !first_users.is_empty() {
        if ran_before {
            tracing::warn!(
                "--add-scram applies at the first start of a data directory only; change \
                 users with fjord configs --entity-type users"
            );
        } else if let Err(e) = add_first_users(&server, &first_users) {
            errln!("fjord: --add-scram: {e}");
            return ExitCode::FAILURE;
        }
    }
    // The server holds the data directory's lock from here on.
    match clean_shutdown::take(&dir, ran_before) {
        Ok(PreviousRun::None) => tracing::info!("first start of this data directory"),
        Ok(PreviousRun::Clean) => tracing::info!("previous shutdown was clean"),
        Ok(PreviousRun::Unclean) => tracing::warn!(
            "previous shutdown was not clean: partition logs were recovered from their \
             recovery points, cutting any torn tail"
        ),
        Err(e) => {
            errln!(
                "fjord: cannot remove {}: {e}",
                dir.join(clean_shutdown::MARKER).display()
            );
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = runtime.block_on(server.run(shutdown)) {
        errln!("fjord: {e}");
        return ExitCode::FAILURE;
    }
    // Every log is flushed: only now may the next start be told this run ended cleanly.
    match clean_shutdown::write(&dir) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            tracing::warn!("another server took the data directory; no clean-shutdown marker");
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!(
                "fjord: logs are flushed, but the clean-shutdown marker {} could not be written: {e}",
                dir.join(clean_shutdown::MARKER).display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Creates the `--add-scram` users, unless another node of a new cluster already did.
fn add_first_users(
    server: &Server,
    users: &[crate::tools::scram::ScramSpec],
) -> Result<(), String> {
    let controller = server.state().controller.clone();
    let image = controller.image();
    let mut changes = Vec::new();
    for spec in users {
        let user = spec.user.clone().unwrap_or_default();
        if image.scram_credential(&user, spec.mechanism).is_some() {
            continue;
        }
        let credential = fjord_broker::security::scram::credential(
            spec.mechanism,
            &spec.password,
            spec.iterations,
        )
        .map_err(|e| e.0)?;
        tracing::info!(%user, mechanism = spec.mechanism.name(), "SCRAM user created");
        changes.push((user, spec.mechanism, Some(credential)));
    }
    if changes.is_empty() {
        return Ok(());
    }
    controller.alter_scram(changes).map_err(|e| e.to_string())
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
    // openraft reports every failed message to an unreachable peer, twice a second, at
    // WARN and ERROR; Fjord logs what an operator needs of the quorum itself (who leads,
    // who is unreachable), so openraft's own lines are opt-in (FJORD_LOG=openraft=warn).
    let filter = tracing_subscriber::EnvFilter::try_from_env("FJORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Installs the SIGTERM and SIGINT handlers at once and returns a future that completes on
/// either. Installed before the server starts, so that a signal arriving during start-up
/// (recovery can take a while) leads to a clean shutdown right after it, instead of the
/// default action ending the process without a flush.
pub(crate) fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
