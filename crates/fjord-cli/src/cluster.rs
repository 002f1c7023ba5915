//! `fjord cluster --nodes 3`: a local cluster for trying Fjord out. Starts the nodes as
//! child `fjord server` processes on loopback, with their data under one directory,
//! prints the bootstrap string, and stops them all on Ctrl-C or SIGTERM.
//!
//! Each node is an ordinary `fjord server` with Kafka's settings; the command lines are
//! printed, so the same cluster can be run by hand or moved to separate machines.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::output::errln;

#[derive(Args)]
pub struct ClusterArgs {
    /// How many nodes (each a broker and a voter of the metadata quorum).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Directory holding one data directory per node (`node-1`, `node-2`, ...).
    #[arg(long, default_value = "./fjord-cluster")]
    data_dir: PathBuf,
    /// Client port of node 1; node N listens on this + N - 1, and its controller
    /// listener on this + 100 + N - 1.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Extra `KEY=VALUE` settings for every node, like `fjord server --override`.
    /// `{node}` in one stands for the node's id (`broker.rack=rack-{node}`).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// SCRAM users of the new cluster, like `fjord server --add-scram`
    /// (`'SCRAM-SHA-256=[name=admin,password=admin-secret]'`): given to every node, and
    /// written once, by whichever starts first.
    #[arg(
        long = "add-scram",
        value_name = "MECHANISM=[name=USER,password=PASSWORD]"
    )]
    add_scram: Vec<String>,
}

/// Stops every node still running when the command ends, however it ends.
struct Nodes(Vec<(u16, Child)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            // SAFETY: kill(2) on a pid this process spawned; no memory is involved.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (id, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        errln!("fjord cluster: node {id} did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 || args.nodes > 99 {
        return Err(
            crate::tools::common::UsageError("--nodes must be between 1 and 99".into()).into(),
        );
    }
    let too_high = args.base_port.checked_add(100 + args.nodes).is_none();
    if too_high {
        return Err(crate::tools::common::UsageError("--base-port is too high".into()).into());
    }
    let exe = std::env::current_exe()?;
    let client = |n: u16| args.base_port + n - 1;
    let controller = |n: u16| args.base_port + 100 + n - 1;
    let voters = (1..=args.nodes)
        .map(|n| format!("{n}@127.0.0.1:{}", controller(n)))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::create_dir_all(&args.data_dir)?;
    // Installed before any node starts, so a Ctrl-C during start-up still stops them all.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = runtime.block_on(async { crate::server::shutdown_signal() })?;
    let mut nodes = Nodes(Vec::new());
    for n in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node-{n}"));
        let log_path = args.data_dir.join(format!("node-{n}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut settings = vec![
            format!("node.id={n}"),
            "process.roles=broker,controller".into(),
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                client(n),
                controller(n)
            ),
            "controller.listener.names=CONTROLLER".into(),
            format!("controller.quorum.voters={voters}"),
        ];
        let id = n.to_string();
        settings.extend(args.overrides.iter().map(|s| s.replace("{node}", &id)));
        let mut cmd = Command::new(&exe);
        cmd.arg("server").arg("--data-dir").arg(&dir);
        for s in &settings {
            cmd.arg("--override").arg(s);
        }
        for user in &args.add_scram {
            cmd.arg("--add-scram").arg(user);
        }
        // Secrets (passwords, JAAS lines, SCRAM users) are not printed.
        let shown = settings
            .iter()
            .map(|s| match s.split_once('=') {
                Some((k, _)) if fjord_broker::config::is_sensitive(k) => {
                    format!("--override '{k}=(hidden)'")
                }
                _ => format!("--override {s}"),
            })
            .chain(args.add_scram.iter().map(|_| "--add-scram (hidden)".into()))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "node {n}: fjord server --data-dir {} {shown}  (log: {})",
            dir.display(),
            log_path.display()
        );
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        nodes.0.push((n, child));
    }
    let bootstrap = (1..=args.nodes)
        .map(|n| format!("127.0.0.1:{}", client(n)))
        .collect::<Vec<_>>()
        .join(",");
    println!("bootstrap servers: {bootstrap}");
    println!("Ctrl-C stops every node.");
    runtime.block_on(async {
        let mut watch = tokio::time::interval(Duration::from_millis(500));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = watch.tick() => {
                    for (n, child) in &mut nodes.0 {
                        if let Ok(Some(status)) = child.try_wait() {
                            errln!("fjord cluster: node {n} exited ({status}); see node-{n}.log; stopping the others");
                            return Err(anyhow::anyhow!("node {n} exited"));
                        }
                    }
                }
            }
        }
    })?;
    println!("stopping {} nodes ...", args.nodes);
    drop(nodes);
    Ok(ExitCode::SUCCESS)
}
