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
use fjord_controller::quorum::{QuorumMember, QuorumTiming};
use fjord_controller::Controller;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::config::{BrokerConfig, ClientListener};
use crate::connection::Connection;
use crate::error::BrokerError;
use crate::replica::ReplicaManager;
use crate::security::Listener;
use crate::state::{now_ms, BrokerState};

/// How long shutdown waits for in-flight requests before flushing and exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// How often TLS keystore files are checked for a renewed certificate.
pub(crate) const CERTIFICATE_CHECK: Duration = Duration::from_secs(5);

pub struct Server {
    state: Arc<BrokerState>,
    /// The inter-broker listener, and what its connections need to know of it.
    listener: Arc<TcpListener>,
    security: Arc<Listener>,
    /// The other client listeners (`listeners`), each with its security.
    extra: Vec<(Arc<TcpListener>, Arc<Listener>)>,
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
        // Certificates are read before anything else starts, so a bad keystore stops the
        // server at once with the file's name.
        let mut securities = config
            .cluster
            .client_listeners
            .iter()
            .map(|l| Listener::new(l, &config.security).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let security = securities
            .next()
            .unwrap_or_else(|| Arc::new(Listener::plaintext(&config.cluster.listener_name)));
        warn_if_open(&config.cluster.client_listeners, &config.security);
        let inter_broker = crate::security::client::ListenerClient::inter_broker(
            &security,
            &config.security,
            config.cluster.in_quorum(),
        )
        .map_err(BrokerError::Startup)?;
        let metadata_dir = dir.join("__cluster_metadata-0");
        let quorum_mode = config.cluster.in_quorum();
        check_metadata_kind(&metadata_dir, quorum_mode)?;
        // Clients are let in only once the broker is registered, so that a cluster member
        // waiting for its quorum refuses connections (clients try another bootstrap
        // broker) rather than leaving them unanswered; with port 0 the port must be known
        // before registering, so that listener is bound first. An observer binds it first
        // too: the active controller replicates the metadata log to it there.
        let early = if config.listener.port == 0
            || config.advertised.port == 0
            || config.cluster.is_observer()
        {
            Some(Arc::new(bind(&config).await?))
        } else {
            None
        };
        // With port 0 the advertised port is whatever the OS picked.
        let advertised_port = match &early {
            Some(l) if config.advertised.port == 0 => l
                .local_addr()
                .map_err(|e| BrokerError::io("read listener address", e))?
                .port(),
            _ => config.advertised.port,
        };
        let host = if config.advertised.host == "0.0.0.0" {
            "127.0.0.1".to_string()
        } else {
            config.advertised.host.clone()
        };
        let (controller, cluster_id, quorum_only) = match &early {
            Some(listener) if config.cluster.is_observer() => {
                let addr = format!("{host}:{advertised_port}");
                let (controller, cluster_id, acceptor) =
                    start_observer(&config, &metadata_dir, &dir, listener.clone(), &addr).await?;
                (controller, cluster_id, Some(acceptor))
            }
            _ => {
                let cluster_id = load_identity(&dir, config.node_id, quorum_cluster_id(&config))?;
                let controller = if quorum_mode {
                    start_quorum(&config, &metadata_dir).await?
                } else {
                    Arc::new(Controller::open(&metadata_dir, config.node_id)?)
                };
                controller.set_cluster_id(&cluster_id);
                (controller, cluster_id, None)
            }
        };
        // The other listeners are bound before registering, so that their ports are known
        // (port 0) and registered; their connections wait until the broker runs.
        let mut extra = Vec::new();
        let mut endpoints = Vec::new();
        for (l, security) in config
            .cluster
            .client_listeners
            .iter()
            .skip(1)
            .zip(securities)
        {
            let socket = bind_listener(l).await?;
            let port = match l.advertised.port {
                0 => socket
                    .local_addr()
                    .map_err(|e| BrokerError::io("read listener address", e))?
                    .port(),
                p => p,
            };
            endpoints.push(endpoint(l, port));
            extra.push((Arc::new(socket), security));
        }
        if let Some(primary) = config.cluster.client_listeners.first() {
            let mut own = endpoint(primary, advertised_port);
            own.host = host.clone();
            endpoints.insert(0, own);
        }
        register(
            &controller,
            &config,
            host,
            advertised_port as i32,
            endpoints,
        )
        .await?;
        if let Some(acceptor) = quorum_only {
            acceptor.stop().await;
        }
        let listener = match early {
            Some(l) => l,
            None => Arc::new(bind(&config).await?),
        };

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
        let transactions = Arc::new(crate::txn::coordinator::TransactionCoordinator::new(
            &config.transactions,
        ));
        let limits = Arc::new(crate::limits::NetworkLimits::new(&config));
        let state = Arc::new(BrokerState {
            limits,
            inter_broker,
            config,
            cluster_id,
            controller,
            replicas,
            groups,
            transactions,
        });
        Ok(Server {
            state,
            listener,
            security,
            extra,
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
        let cleaner = tokio::spawn(crate::cleaner::run(self.state.clone()));
        let groups = tokio::spawn(crate::group::run(self.state.clone()));
        let transactions = tokio::spawn(crate::txn::coordinator::run(self.state.clone()));
        let follower = tokio::spawn(follow_metadata(self.state.clone()));
        let liveness = tokio::spawn(liveness(self.state.clone()));
        let fetchers = tokio::spawn(crate::replication::fetcher::run(self.state.clone()));
        let isr = tokio::spawn(crate::replication::shrink_lagging(self.state.clone()));
        let rebalance = tokio::spawn(rebalance_leaders(self.state.clone()));
        tracing::info!(addr = %self.local_addr()?, "listening");

        for (socket, security) in &self.extra {
            if let Ok(addr) = socket.local_addr() {
                tracing::info!(%addr, listener = %security.name, protocol = security.protocol.name(), "listening");
            }
        }
        let mut loops: Vec<tokio::task::JoinHandle<()>> = self
            .extra
            .iter()
            .map(|(socket, security)| {
                tokio::spawn(accept_loop(
                    socket.clone(),
                    security.clone(),
                    self.state.clone(),
                    notify_shutdown.clone(),
                    done_tx.clone(),
                ))
            })
            .collect();
        loops.push(tokio::spawn(reload_certificates(
            std::iter::once(self.security.clone())
                .chain(self.extra.iter().map(|(_, s)| s.clone()))
                .collect(),
        )));
        let accept = accept_loop(
            self.listener.clone(),
            self.security.clone(),
            self.state.clone(),
            notify_shutdown.clone(),
            done_tx.clone(),
        );
        let quorum = self.state.controller.quorum().cloned();
        let quorum_stopped = async {
            match &quorum {
                Some(q) => Some(q.stopped().await),
                None => std::future::pending().await,
            }
        };
        // A node whose quorum member stopped (its metadata log could not be written)
        // cannot follow the cluster any more: it stops too, with one clear line, rather
        // than serve from an image that no longer moves.
        let mut fatal = None;
        let mut storage = None;
        tokio::select! {
            _ = accept => {}
            _ = shutdown => tracing::info!("shutting down: no new connections"),
            why = quorum_stopped => {
                tracing::error!("stopping: the metadata quorum member stopped ({})", why.as_deref().unwrap_or(""));
                fatal = why;
            }
            why = storage_failed(&self.state) => {
                tracing::error!("stopping: the data directory failed ({why}); the other replicas take over. Fix the disk, then start this node again");
                storage = Some(why);
            }
        }
        // Controlled shutdown: heartbeats stop, and the controller moves this broker's
        // leaderships to other in-sync replicas before it goes, so producers move on at
        // once instead of after a session timeout.
        liveness.abort();
        for l in &loops {
            l.abort();
        }
        if self.state.controller.quorum().is_some() {
            controlled_shutdown(&self.state).await;
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
        cleaner.abort();
        groups.abort();
        transactions.abort();
        follower.abort();
        fetchers.abort();
        isr.abort();
        rebalance.abort();
        if let Some(q) = self.state.controller.quorum() {
            q.shutdown().await;
        }
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.replicas.shutdown())
            .await
            .map_err(|e| BrokerError::Startup(format!("shutdown flush task failed: {e}")))?;
        if let Some(why) = fatal {
            return Err(BrokerError::from(
                fjord_controller::ControllerError::QuorumStopped(why),
            ));
        }
        if let Some(why) = storage {
            return Err(BrokerError::StorageFailed(format!(
                "the data directory failed: {why}"
            )));
        }
        tracing::info!("all logs flushed; bye");
        Ok(())
    }
}

/// Runs a controller-only node (`process.roles=controller`) until `shutdown`: a voter of
/// the metadata quorum that, while it is the active controller, fences brokers whose
/// heartbeats stopped and moves leadership back to preferred replicas. It serves no
/// client and hosts no partition.
pub async fn run_controller(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    let dir = config.data_dir.clone();
    fs::create_dir_all(&dir)
        .map_err(|e| BrokerError::io(format!("create data directory {}", dir.display()), e))?;
    let _lock = lock_data_dir(&dir)?;
    let metadata_dir = dir.join("__cluster_metadata-0");
    check_metadata_kind(&metadata_dir, true)?;
    let cluster_id = load_identity(&dir, config.node_id, quorum_cluster_id(&config))?;
    let controller = start_quorum(&config, &metadata_dir).await?;
    controller.set_cluster_id(&cluster_id);
    tracing::info!(node_id = config.node_id, cluster_id = %cluster_id, "controller ready (controller only)");
    let fence_every = Duration::from_millis(config.broker_heartbeat_interval_ms.min(1000));
    let mut fence = tokio::time::interval(fence_every);
    fence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rebalance_every = Duration::from_secs(config.replication.imbalance_check_interval_s.max(1));
    let mut rebalance = tokio::time::interval_at(
        tokio::time::Instant::now() + rebalance_every,
        rebalance_every,
    );
    tokio::pin!(shutdown);
    let member = controller.quorum().cloned();
    let mut fatal = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            why = async { match &member { Some(q) => q.stopped().await, None => std::future::pending().await } } => {
                tracing::error!("stopping: the metadata quorum member stopped ({why})");
                fatal = Some(why);
                break;
            }
            _ = fence.tick() => {
                fence_expired(controller.clone(), config.broker_session_timeout_ms).await;
            }
            _ = rebalance.tick(), if config.replication.auto_leader_rebalance => {
                let c = controller.clone();
                let percent = config.replication.imbalance_percentage;
                match tokio::task::spawn_blocking(move || c.rebalance_leaders(percent)).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(
                        partitions = n,
                        "moved leadership back to preferred replicas"
                    ),
                    Ok(Err(e)) => tracing::warn!(error = %e, "preferred leader election failed"),
                    _ => {}
                }
            }
        }
    }
    tracing::info!("shutting down");
    if let Some(q) = controller.quorum() {
        q.shutdown().await;
    }
    if let Some(why) = fatal {
        return Err(BrokerError::from(
            fjord_controller::ControllerError::QuorumStopped(why),
        ));
    }
    tracing::info!("bye");
    Ok(())
}

/// In a cluster, resolves once a hosted partition's log went offline under a storage
/// error (a full disk, a failing device). With its one data directory failing, the
/// broker stops, as Kafka's does: its controlled shutdown hands leadership to the other
/// in-sync replicas at once, where staying would hold acks=all back until the ISR
/// shrinks, and leave the partitions it leads unwritable. A one-node Fjord has no one to
/// hand over to: it stays up, serving reads, and answers writes KAFKA_STORAGE_ERROR.
async fn storage_failed(state: &Arc<BrokerState>) -> String {
    if state.controller.quorum().is_none() {
        return std::future::pending().await;
    }
    let mut every = tokio::time::interval(Duration::from_millis(200));
    loop {
        every.tick().await;
        if let Some(p) = state
            .replicas
            .all()
            .into_iter()
            .find(|p| p.log.is_offline())
        {
            return format!(
                "partition {}-{} at {}",
                p.topic,
                p.index,
                p.log.dir().display()
            );
        }
    }
}

/// `auto.leader.rebalance.enable`: on the active controller, every
/// `leader.imbalance.check.interval.seconds`, leadership goes back to preferred replicas
/// when it has drifted (after failures and restarts, leaders pile up on the survivors).
async fn rebalance_leaders(state: Arc<BrokerState>) {
    let cfg = state.config.replication.clone();
    if !cfg.auto_leader_rebalance || state.controller.quorum().is_none() {
        return;
    }
    let mut every = tokio::time::interval(Duration::from_secs(cfg.imbalance_check_interval_s));
    every.tick().await;
    loop {
        every.tick().await;
        let s = state.clone();
        let percent = cfg.imbalance_percentage;
        match tokio::task::spawn_blocking(move || s.controller.rebalance_leaders(percent)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                partitions = n,
                "moved leadership back to preferred replicas"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "preferred leader election failed"),
            Err(e) => tracing::warn!(error = %e, "preferred leader election task failed"),
        }
    }
}

/// How long a stopping broker waits for the controller to move its leaderships.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the active controller to fence this broker now, electing new leaders for the
/// partitions it leads; then applies the result here, so that requests still in flight
/// are answered NOT_LEADER_OR_FOLLOWER and their clients go to the new leaders. Without
/// a quorum majority this cannot commit: the broker then stops anyway, and is fenced a
/// session timeout later.
async fn controlled_shutdown(state: &Arc<BrokerState>) {
    let st = state.clone();
    let node = state.node_id();
    let call = tokio::task::spawn_blocking(move || {
        // Within the wait below: a blocking call still running when the process ends
        // would find its runtime gone.
        st.controller
            .controlled_shutdown(node, CONTROLLED_SHUTDOWN_TIMEOUT / 3)?;
        st.reconcile()
            .map_err(|e| fjord_controller::ControllerError::Corrupt(e.to_string()))
    });
    match tokio::time::timeout(CONTROLLED_SHUTDOWN_TIMEOUT, call).await {
        Ok(Ok(Ok(()))) => tracing::info!("controlled shutdown: leaderships moved"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "controlled shutdown failed; stopping anyway"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "controlled shutdown task failed; stopping anyway")
        }
        Err(_) => tracing::warn!("controlled shutdown timed out; stopping anyway"),
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
    let mut checkpoint = tokio::time::interval(Duration::from_millis(
        state.config.replication.checkpoint_interval_ms,
    ));
    loop {
        tokio::select! {
            _ = checkpoint.tick() => {
                let s = state.clone();
                let done = tokio::task::spawn_blocking(move || s.replicas.checkpoint_high_watermarks()).await;
                if let Ok(Err(e)) = done {
                    tracing::error!(error = %e, "high watermark checkpoint failed");
                }
            }
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

/// Accepts connections on one listener until the server stops. On an observer the
/// inter-broker listener also carries the quorum's replication to it.
async fn accept_loop(
    listener: Arc<TcpListener>,
    security: Arc<Listener>,
    state: Arc<BrokerState>,
    notify_shutdown: broadcast::Sender<()>,
    done_tx: mpsc::Sender<()>,
) {
    let inter_broker = security.name == state.config.cluster.listener_name;
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ticket = match state.limits.admit(peer.ip()) {
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
            security.clone(),
            state.clone(),
            notify_shutdown.subscribe(),
            ticket,
            done_tx.clone(),
        );
        match state.controller.quorum() {
            Some(q) if inter_broker && q.is_observer() => {
                let q = q.clone();
                tokio::spawn(async move {
                    match quorum_traffic(conn.socket()).await {
                        Some(preface) => {
                            let (socket, peer) = conn.into_parts();
                            serve_quorum(&q, socket, peer, preface).await;
                        }
                        None => conn.run().await,
                    }
                });
            }
            _ => {
                tokio::spawn(conn.run());
            }
        }
    }
}

/// A renewed certificate takes effect without a restart: each TLS listener's keystore
/// file is looked at every few seconds and read again when it changed.
async fn reload_certificates(listeners: Vec<Arc<Listener>>) {
    let tls: Vec<Arc<Listener>> = listeners.into_iter().filter(|l| l.tls.is_some()).collect();
    if tls.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(CERTIFICATE_CHECK);
    loop {
        tick.tick().await;
        for l in &tls {
            if let Some(t) = &l.tls {
                let t = t.clone();
                let _ = tokio::task::spawn_blocking(move || t.reload_if_changed()).await;
            }
        }
    }
}

/// One line at start for each listener that lets anyone in from beyond this machine:
/// no SASL, and no required client certificate, on an address other than loopback.
fn warn_if_open(listeners: &[ClientListener], security: &crate::config::SecurityConfig) {
    for l in listeners {
        let unsigned_tokens = security.listeners.get(&l.name).is_some_and(|s| {
            s.mechanisms
                .contains(&crate::config::Mechanism::OAuthBearer)
        });
        if unsigned_tokens {
            tracing::warn!(
                "listener {} takes unsecured OAUTHBEARER tokens: whoever reaches it can claim \
                 any principal; for testing only",
                l.name
            );
        }
        let mtls = security
            .listeners
            .get(&l.name)
            .and_then(|s| s.tls.as_ref())
            .is_some_and(|t| t.client_auth == crate::config::ClientAuth::Required);
        let loopback = l
            .bind
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
            || l.bind.host == "localhost";
        if !loopback && !l.protocol.sasl() && !mtls {
            tracing::warn!(
                "listener {} ({}) on {}:{} accepts clients without authentication from \
                 other machines; use SASL_SSL (or ssl.client.auth=required) for a reachable \
                 listener",
                l.name,
                l.protocol.name(),
                l.bind.host,
                l.bind.port
            );
        }
    }
}

/// The registration entry of one listener, at its advertised address.
fn endpoint(l: &ClientListener, port: u16) -> fjord_controller::ListenerEndpoint {
    let host = match l.advertised.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        h => h.to_string(),
    };
    fjord_controller::ListenerEndpoint {
        name: l.name.clone(),
        host,
        port: port as i32,
        security_protocol: l.protocol.id(),
    }
}

async fn bind_listener(l: &ClientListener) -> Result<TcpListener, BrokerError> {
    let addr = format!("{}:{}", l.bind.host, l.bind.port);
    let parsed: SocketAddr = addr.parse().map_err(|e| {
        BrokerError::Startup(format!(
            "listener {}: {addr}: {e} (use an IP address, e.g. {}://127.0.0.1:9093)",
            l.name, l.name
        ))
    })?;
    TcpListener::bind(parsed)
        .await
        .map_err(|e| BrokerError::io(format!("bind listener {} on {addr}", l.name), e))
}

async fn bind(config: &BrokerConfig) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(config.bind_addr()?)
        .await
        .map_err(|e| BrokerError::io(format!("bind {}", config.listen_addr()), e))
}

/// Applies every metadata change to the hosted partitions. In a cluster, changes made
/// through other nodes arrive only this way; alone, the handler that made the change has
/// usually reconciled it already, and reconcile skips an image it has applied.
async fn follow_metadata(state: Arc<BrokerState>) {
    let mut changed = state.controller.subscribe();
    while changed.changed().await.is_ok() {
        let s = state.clone();
        match tokio::task::spawn_blocking(move || s.reconcile()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("applying a metadata change to this broker failed: {e}"),
            Err(e) => tracing::error!("metadata change task failed: {e}"),
        }
    }
}

/// In a cluster: heartbeats to the active controller every `broker.heartbeat.interval.ms`
/// and, on the active controller, fences brokers whose heartbeats stopped. The two run
/// side by side, never waiting on each other: a heartbeat stuck on an unreachable
/// controller must not hold up this node's own fencing once it is the controller, and a
/// slow fencing write must not let this broker's own session run out.
async fn liveness(state: Arc<BrokerState>) {
    if state.controller.quorum().is_none() {
        return;
    }
    tokio::join!(heartbeats(state.clone()), fence_silent(state));
}

async fn heartbeats(state: Arc<BrokerState>) {
    let every = Duration::from_millis(state.config.broker_heartbeat_interval_ms);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A third of the session: a heartbeat lost to a frozen controller leaves time for
    // two more to reach its successor before the session there runs out.
    let patience = Duration::from_millis(state.config.broker_session_timeout_ms / 3)
        .max(Duration::from_millis(100));
    let mut coordinating = None;
    loop {
        ticks.tick().await;
        let s = state.clone();
        let beat =
            tokio::task::spawn_blocking(move || s.controller.heartbeat(s.node_id(), patience));
        match beat.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("heartbeat to the active controller failed: {e}"),
            Err(e) => tracing::warn!("heartbeat task failed: {e}"),
        }
        // Said once per change after the first acknowledged heartbeat (a starting
        // broker waits for the quorum quietly): the coordinators refuse, or serve again.
        let now = state.session_current();
        if coordinating.is_none() && now {
            coordinating = Some(true);
        }
        if coordinating.is_some_and(|was| was != now) {
            if now {
                tracing::info!("an active controller acknowledged a heartbeat again: coordinating groups and transactions");
            } else {
                tracing::warn!(
                    session_timeout_ms = state.config.broker_session_timeout_ms,
                    "no heartbeat acknowledged by an active controller within broker.session.timeout.ms: not coordinating groups or transactions (NOT_COORDINATOR) until one is"
                );
            }
            coordinating = Some(now);
        }
    }
}

async fn fence_silent(state: Arc<BrokerState>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        fence_expired(
            state.controller.clone(),
            state.config.broker_session_timeout_ms,
        )
        .await;
    }
}

/// One round of fencing on the active controller (nothing elsewhere), logged.
async fn fence_expired(controller: Arc<Controller>, session_timeout_ms: u64) {
    match tokio::task::spawn_blocking(move || controller.fence_expired()).await {
        Ok(Ok(ids)) if !ids.is_empty() => tracing::warn!(
            brokers = ?ids,
            timeout_ms = session_timeout_ms,
            "fenced brokers that stopped heartbeating (broker.session.timeout.ms)"
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("fencing silent brokers failed: {e}"),
        Err(e) => tracing::warn!("fencing task failed: {e}"),
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

/// The cluster id of a quorum member: derived from the voter set, so that the nodes of
/// one cluster agree on it without being told, and a node restarted with a different
/// voter list is refused by its own `meta.properties`.
fn quorum_cluster_id(config: &BrokerConfig) -> Option<String> {
    if config.cluster.voters.is_empty() {
        return None;
    }
    let voters: Vec<String> = config
        .cluster
        .voters
        .iter()
        .map(|(id, e)| format!("{id}@{}:{}", e.host, e.port))
        .collect();
    let digest = crc32c::crc32c(voters.join(",").as_bytes());
    let spread = crc32c::crc32c_append(digest, b"fjord-cluster");
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&digest.to_be_bytes());
    bytes[4..8].copy_from_slice(&spread.to_be_bytes());
    bytes[8..12].copy_from_slice(&(!digest).to_be_bytes());
    bytes[12..].copy_from_slice(&(!spread).to_be_bytes());
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A one-node metadata log and a quorum member's log share `__cluster_metadata-0`; a
/// directory of one kind is never started as the other, which would read it as empty
/// and hide every topic.
fn check_metadata_kind(dir: &Path, quorum_mode: bool) -> Result<(), BrokerError> {
    let has = |name: &str| fs::metadata(dir.join(name)).is_ok_and(|m| m.len() > 0);
    if quorum_mode && has("metadata.log") {
        return Err(BrokerError::WrongDirectory(format!(
            "{} holds a one-node Fjord's metadata; this data directory cannot join a quorum \
             (controller.quorum.voters is set). Start it without controller.quorum.voters.",
            dir.display()
        )));
    }
    if !quorum_mode && (has("raft.log") || has("raft.state")) {
        return Err(BrokerError::WrongDirectory(format!(
            "{} belongs to a member of a metadata quorum; start this node with its \
             controller.quorum.voters",
            dir.display()
        )));
    }
    Ok(())
}

/// How the quorum's connection to an observer is told apart from a Kafka client's on its
/// inter-broker listener: it opens with the observer preface (then the controller
/// listener's TLS and login), or, from a controller that sends none, with a quorum frame
/// in the clear, whose fifth byte is the `{` its JSON body opens with; a Kafka request's
/// fifth byte is the high byte of its API key, always 0. `None` for a Kafka client;
/// otherwise whether the connection opened with the preface.
async fn quorum_traffic(socket: &tokio::net::TcpStream) -> Option<bool> {
    let mut head = [0u8; 5];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, socket.peek(&mut head)).await {
            Ok(Ok(n)) if n >= head.len() => {
                let preface = head[..4] == fjord_controller::quorum::OBSERVER_PREFACE;
                return (preface || head[4] == b'{').then_some(preface);
            }
            // Closed, failed, or silent: the Kafka side deals with it as usual.
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            // Part of the header so far: the rest is a moment away.
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Serves the quorum's connection to this observer: past the preface, if it sent one
/// (`preface`), the controller listener's security decides who may go on, as on a
/// controller. Frames in the clear reach the quorum only where that listener is
/// PLAINTEXT.
async fn serve_quorum(
    member: &QuorumMember,
    mut socket: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    preface: bool,
) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 4];
    if preface && socket.read_exact(&mut head).await.is_err() {
        return;
    }
    member.serve_stream(socket, peer).await;
}

/// How this node's quorum connections are secured: the controller listener's TLS and
/// SASL, or frames in the clear.
fn quorum_security(
    config: &BrokerConfig,
) -> Result<Arc<dyn fjord_controller::quorum::StreamSecurity>, BrokerError> {
    crate::security::quorum::QuorumSecurity::from_config(
        &config.cluster.controller_listener_name,
        config.cluster.controller_protocol,
        &config.security,
    )
    .map_err(BrokerError::Startup)
}

/// Serves the quorum's traffic on an observer's listener while the broker is not yet
/// registered; Kafka clients are turned away meanwhile.
struct QuorumAcceptor {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl QuorumAcceptor {
    fn start(listener: Arc<TcpListener>, member: Arc<QuorumMember>) -> QuorumAcceptor {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stopped.wait_for(|&s| s) => return,
                    a = listener.accept() => a,
                };
                let Ok((socket, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let member = member.clone();
                tokio::spawn(async move {
                    if let Some(preface) = quorum_traffic(&socket).await {
                        let _ = socket.set_nodelay(true);
                        serve_quorum(&member, socket, peer, preface).await;
                    }
                });
            }
        });
        QuorumAcceptor { stop, task }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Starts a broker-only node's quorum observer: joins the quorum through the voters or
/// `controller.quorum.bootstrap.servers`, learning the cluster id it then checks its data
/// directory against, and serves the quorum's replication on `listener` until the broker
/// takes the listener over.
async fn start_observer(
    config: &BrokerConfig,
    metadata_dir: &Path,
    dir: &Path,
    listener: Arc<TcpListener>,
    addr: &str,
) -> Result<(Arc<Controller>, String, QuorumAcceptor), BrokerError> {
    let voters = config.cluster.voter_addresses();
    let bootstrap: Vec<String> = config
        .cluster
        .bootstrap_servers
        .iter()
        .map(|e| format!("{}:{}", e.host, e.port))
        .collect();
    let timing = QuorumTiming {
        election_timeout_ms: config.election_timeout_ms,
        ..QuorumTiming::default()
    };
    let member = QuorumMember::start_observer(
        config.node_id,
        &voters,
        &bootstrap,
        metadata_dir,
        &timing,
        quorum_security(config)?,
    )
    .await?;
    let acceptor = QuorumAcceptor::start(listener, member.clone());
    let mut waiting = Waiting::new();
    let cluster_id = loop {
        let m = member.clone();
        let a = addr.to_string();
        match tokio::task::spawn_blocking(move || m.join(&a)).await {
            Ok(Ok(id)) => break id,
            Ok(Err(e)) => {
                waiting.note(|| format!("waiting to join the metadata quorum as an observer: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(BrokerError::Startup(format!("joining the quorum: {e}"))),
        }
    };
    let expected = quorum_cluster_id(config);
    if expected.as_ref().is_some_and(|e| *e != cluster_id) {
        return Err(BrokerError::WrongDirectory(format!(
            "the quorum at controller.quorum.voters is cluster {cluster_id}, but these voters \
             make cluster {}: the voter list differs from the controllers'",
            expected.unwrap_or_default()
        )));
    }
    let cluster_id = load_identity(dir, config.node_id, Some(cluster_id))?;
    let controller = Arc::new(Controller::with_quorum(
        member.clone(),
        config.node_id,
        config.broker_session_timeout_ms as i64,
    ));
    member.serve_controller(&controller);
    controller.set_cluster_id(&cluster_id);
    tracing::info!(node_id = config.node_id, listener = %addr, "following the metadata quorum as an observer (broker only)");
    Ok((controller, cluster_id, acceptor))
}

/// Opens this node's quorum member: binds the controller listener and starts raft.
async fn start_quorum(
    config: &BrokerConfig,
    metadata_dir: &Path,
) -> Result<Arc<Controller>, BrokerError> {
    let endpoint = config.cluster.controller_listener.as_ref().ok_or_else(|| {
        BrokerError::Startup("a quorum member needs a controller listener".into())
    })?;
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| BrokerError::io(format!("bind controller listener {addr}"), e))?;
    let voters = config.cluster.voter_addresses();
    let timing = QuorumTiming {
        election_timeout_ms: config.election_timeout_ms,
        ..QuorumTiming::default()
    };
    let member = QuorumMember::start(
        config.node_id,
        &voters,
        metadata_dir,
        listener,
        &timing,
        quorum_security(config)?,
    )
    .await?;
    let controller = Arc::new(Controller::with_quorum(
        member.clone(),
        config.node_id,
        config.broker_session_timeout_ms as i64,
    ));
    member.serve_controller(&controller);
    tracing::info!(node_id = config.node_id, controller_listener = %addr, voters = ?config.cluster.voters.keys().collect::<Vec<_>>(), "metadata quorum member started");
    Ok(controller)
}

/// A start-up wait for the quorum, reported every 5 s rather than at every retry.
struct Waiting {
    started: std::time::Instant,
    reported: std::time::Instant,
}

impl Waiting {
    fn new() -> Waiting {
        let now = std::time::Instant::now();
        Waiting {
            started: now,
            reported: now,
        }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.reported.elapsed() >= Duration::from_secs(5) {
            tracing::info!(waited_s = self.started.elapsed().as_secs(), "{}", what());
            self.reported = std::time::Instant::now();
        }
    }
}

/// Registers this broker with the active controller. A quorum member waits for the
/// quorum to form (nodes start in any order); once registered, its image holds every
/// change committed before, so the first reconcile never mistakes a partition for a
/// stray.
async fn register(
    controller: &Arc<Controller>,
    config: &BrokerConfig,
    host: String,
    port: i32,
    listeners: Vec<fjord_controller::ListenerEndpoint>,
) -> Result<(), BrokerError> {
    let mut waiting = Waiting::new();
    loop {
        let c = controller.clone();
        let (id, rack, host) = (config.node_id, config.rack.clone(), host.clone());
        let listeners = listeners.clone();
        let result = tokio::task::spawn_blocking(move || {
            c.register_broker(id, &host, port, rack, listeners)
        })
        .await;
        match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e @ fjord_controller::ControllerError::QuorumStopped(_))) => {
                return Err(e.into())
            }
            Ok(Err(e)) if controller.quorum().is_some() => {
                if let Some(why) = controller.quorum().and_then(|q| q.fatal()) {
                    return Err(fjord_controller::ControllerError::QuorumStopped(format!(
                        "this node's metadata quorum member stopped: {why}"
                    ))
                    .into());
                }
                waiting.note(|| format!("waiting for the metadata quorum: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => {
                return Err(BrokerError::Startup(format!(
                    "broker registration failed: {e}"
                )))
            }
        }
    }
}

/// Reads `meta.properties` (cluster id, node id) or writes it on first start. A quorum
/// member's cluster id is given (`expected`); a directory of another cluster is refused.
fn load_identity(
    dir: &Path,
    node_id: i32,
    expected: Option<String>,
) -> Result<String, BrokerError> {
    let path = dir.join("meta.properties");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let props = crate::config::parse_properties(&text)?;
            let stored: Option<i32> = props.get("node.id").and_then(|v| v.parse().ok());
            if stored != Some(node_id) {
                return Err(BrokerError::WrongDirectory(format!(
                    "{} belongs to node.id {}, but this server is node.id {node_id}",
                    path.display(),
                    stored.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
                )));
            }
            let stored = props.get("cluster.id").cloned().ok_or_else(|| {
                BrokerError::Startup(format!("{} has no cluster.id", path.display()))
            })?;
            match expected {
                Some(id) if id != stored => Err(BrokerError::WrongDirectory(format!(
                    "{} belongs to cluster {stored}, but controller.quorum.voters makes this \
                     node a member of cluster {id}: the voter list differs from the one this \
                     data directory was started with",
                    path.display()
                ))),
                _ => Ok(stored),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = expected.unwrap_or_else(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(uuid::Uuid::new_v4().as_bytes())
            });
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
