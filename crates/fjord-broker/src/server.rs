//! Startup and shutdown: the data directory (lock, identity), the controller, the
//! partitions, the listener and its accept loop, and the periodic maintenance tasks.

use std::fs::{self, File};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use fjord_controller::Controller;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::config::BrokerConfig;
use crate::connection::Connection;
use crate::error::BrokerError;
use crate::replica::ReplicaManager;
use crate::state::{now_ms, BrokerState};

/// How long shutdown waits for in-flight requests before flushing and exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

pub struct Server {
    state: Arc<BrokerState>,
    listener: TcpListener,
    /// Held for the life of the server: the OS releases the lock when the process ends,
    /// however it ends, so a crash never leaves a stale lock behind.
    _lock: File,
}

impl Server {
    /// Prepares everything and binds the listener; clients can connect once this returns.
    pub async fn start(config: BrokerConfig) -> Result<Server, BrokerError> {
        let dir = config.data_dir.clone();
        crate::limits::raise_descriptor_limit();
        fs::create_dir_all(&dir)
            .map_err(|e| BrokerError::io(format!("create data directory {}", dir.display()), e))?;
        let lock = lock_data_dir(&dir)?;
        let cluster_id = load_identity(&dir, config.node_id)?;

        let controller = Arc::new(Controller::open(
            &dir.join("__cluster_metadata-0"),
            config.node_id,
        )?);
        let listener = TcpListener::bind(config.bind_addr()?)
            .await
            .map_err(|e| BrokerError::io(format!("bind {}", config.listen_addr()), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| BrokerError::io("read listener address", e))?;
        // With port 0 the advertised port is whatever the OS picked.
        let advertised_port = if config.advertised.port == 0 {
            local.port()
        } else {
            config.advertised.port
        };
        let host = if config.advertised.host == "0.0.0.0" {
            "127.0.0.1".to_string()
        } else {
            config.advertised.host.clone()
        };
        controller.register_broker(
            config.node_id,
            &host,
            advertised_port as i32,
            config.rack.clone(),
        )?;

        let replicas = ReplicaManager::new(&config);
        replicas.reconcile(&controller.image())?;
        tracing::info!(
            node_id = config.node_id,
            cluster_id = %cluster_id,
            partitions = replicas.all().len(),
            data_dir = %dir.display(),
            "broker ready"
        );
        let groups = crate::group::GroupCoordinator::new(&config);
        let limits = Arc::new(crate::limits::NetworkLimits::new(&config));
        let state = Arc::new(BrokerState {
            limits,
            config,
            cluster_id,
            controller,
            replicas,
            groups,
        });
        Ok(Server {
            state,
            listener,
            _lock: lock,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, BrokerError> {
        self.listener
            .local_addr()
            .map_err(|e| BrokerError::io("read listener address", e))
    }

    pub fn state(&self) -> Arc<BrokerState> {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish, and flushes every log.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let (notify_shutdown, _) = broadcast::channel::<()>(1);
        // Each connection holds a clone; when all are dropped, every connection is done.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let maintenance = tokio::spawn(maintenance(self.state.clone()));
        let groups = tokio::spawn(crate::group::run(self.state.clone()));
        tracing::info!(addr = %self.local_addr()?, "listening");

        let accept = async {
            loop {
                let (socket, peer) = match self.listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let ticket = match self.state.limits.admit(peer.ip()) {
                    Ok(t) => t,
                    Err(why) => {
                        // Dropping the socket closes it; the client retries or backs off.
                        tracing::debug!(%peer, "connection refused: {why}");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let conn = Connection::new(
                    socket,
                    peer,
                    self.state.clone(),
                    notify_shutdown.subscribe(),
                    ticket,
                    done_tx.clone(),
                );
                tokio::spawn(conn.run());
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = shutdown => tracing::info!("shutting down: no new connections"),
        }
        drop(notify_shutdown);
        drop(done_tx);
        if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish in time; flushing anyway");
        }
        maintenance.abort();
        groups.abort();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.replicas.shutdown())
            .await
            .map_err(|e| BrokerError::Startup(format!("shutdown flush task failed: {e}")))?;
        tracing::info!("all logs flushed; bye");
        Ok(())
    }
}

/// Retention, time-based flushing and producer-id expiration, each on its own interval.
async fn maintenance(state: Arc<BrokerState>) {
    let retention_every = Duration::from_millis(state.config.retention_check_interval_ms);
    // flush.ms is per topic; checking once a second is as fine-grained as is useful.
    let flush_every = Duration::from_millis(state.config.flush_scheduler_interval_ms.min(1000));
    let mut retention = tokio::time::interval(retention_every);
    let mut flush = tokio::time::interval(flush_every);
    // The first tick is immediate: Kafka drops expired producers as it loads a snapshot,
    // and this is the same for the state the logs restored at start.
    let mut producers = tokio::time::interval(Duration::from_millis(
        state.config.producer_id_expiration_check_interval_ms,
    ));
    loop {
        tokio::select! {
            _ = retention.tick() => {
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.replicas.apply_retention(now_ms())).await;
            }
            _ = flush.tick() => {
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.replicas.flush_due(now_ms())).await;
            }
            _ = producers.tick() => {
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.replicas.expire_producers(now_ms())).await;
            }
        }
    }
}

/// Takes an exclusive lock on `<data>/.lock`, refusing to share the directory with a
/// second server: two writers on one log would corrupt it.
fn lock_data_dir(dir: &Path) -> Result<File, BrokerError> {
    let path = dir.join(".lock");
    let file = File::create(&path)
        .map_err(|e| BrokerError::io(format!("create {}", path.display()), e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(BrokerError::Startup(format!(
            "data directory {} is in use by another Fjord server (lock held on {})",
            dir.display(),
            path.display()
        )));
    }
    Ok(file)
}

/// Reads `meta.properties` (cluster id, node id) or writes it on first start.
fn load_identity(dir: &Path, node_id: i32) -> Result<String, BrokerError> {
    let path = dir.join("meta.properties");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let props = crate::config::parse_properties(&text)?;
            let stored: Option<i32> = props.get("node.id").and_then(|v| v.parse().ok());
            if stored != Some(node_id) {
                return Err(BrokerError::Startup(format!(
                    "{} belongs to node.id {}, but this server is node.id {node_id}",
                    path.display(),
                    stored.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
                )));
            }
            props.get("cluster.id").cloned().ok_or_else(|| {
                BrokerError::Startup(format!("{} has no cluster.id", path.display()))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(uuid::Uuid::new_v4().as_bytes());
            let text = format!("# Fjord node identity; do not edit\nversion=1\ncluster.id={id}\nnode.id={node_id}\n");
            let tmp = dir.join("meta.properties.tmp");
            fs::write(&tmp, text)
                .and_then(|_| File::open(&tmp)?.sync_all())
                .and_then(|_| fs::rename(&tmp, &path))
                // The rename is durable only once the directory is.
                .and_then(|_| File::open(dir)?.sync_all())
                .map_err(|e| BrokerError::io(format!("write {}", path.display()), e))?;
            Ok(id)
        }
        Err(e) => Err(BrokerError::io(format!("read {}", path.display()), e)),
    }
}
