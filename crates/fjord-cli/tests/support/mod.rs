//! The harness shared by the multi-node test files: real `fjord server` processes, each
//! with its own data directory and its PLAINTEXT and CONTROLLER listeners, driven through
//! librdkafka (the `rdkafka` crate). Each test file uses only part of it.
#![allow(dead_code)]

pub mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Deadline for anything the cluster should do "soon" (elections, fencing, start-up).
pub const PATIENCE: Duration = Duration::from_secs(30);
pub const POLL: Duration = Duration::from_millis(100);

/// Liveness settings that keep the tests fast.
pub const FAST: [&str; 3] = [
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "controller.quorum.election.timeout.ms=500",
];
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(3000);

pub fn fjord() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fjord"))
}

/// A port nothing listens on now, and never handed out before in this test process: the
/// OS may give a port it just released to the next bind, and two nodes of one cluster
/// must never share one (a client would talk Kafka to a quorum listener).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if GIVEN.lock().expect("port registry").insert(port) {
            return port;
        }
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    // A panic's message may be far above the tail: it is the line that explains it all.
    let panics: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("panicked at"))
        .map(|(i, _)| all[i..(i + 2).min(all.len())].join("\n"))
        .collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    if !panics.is_empty() {
        out = format!("{}\n...\n{out}", panics.join("\n"));
    }
    out
}

/// Waits for a child to exit, killing it after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sigterm(child: &Child) {
    // SAFETY: kill(2) on the id of a child this test spawned and has not reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM {}", child.id());
}

/// What a node of a test cluster is (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// broker,controller: a voter that also serves clients.
    Combined,
    /// controller only: a voter with just its CONTROLLER listener.
    Controller,
    /// broker only: follows the quorum as an observer, with just its client listener.
    Broker,
}

pub struct Node {
    pub id: i32,
    pub role: Role,
    pub port: u16,
    pub controller_port: u16,
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// Overrides for this node alone (its `broker.rack`, say), after the cluster's.
    pub extra: Vec<String>,
}

impl Node {
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Nodes `1@` to `n@` of one quorum, every node a voter (three unless a test asks for
/// more). Dropping it kills every node; if the test is failing, it first prints the tail of
/// every node's log.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub extra: Vec<String>,
}

impl Cluster {
    /// A three-node cluster whose nodes are not started yet.
    pub fn new(extra: &[&str]) -> Cluster {
        Cluster::new_n(3, extra)
    }

    /// An `n`-node cluster whose nodes are not started yet.
    pub fn new_n(n: i32, extra: &[&str]) -> Cluster {
        assert!(n >= 1, "a cluster of {n} nodes");
        Cluster::with_roles(&vec![Role::Combined; n as usize], extra)
    }

    /// A cluster whose node `i + 1` has role `roles[i]`; the voters are the nodes with
    /// the controller role. Nothing is started yet.
    pub fn with_roles(roles: &[Role], extra: &[&str]) -> Cluster {
        assert!(
            roles.iter().any(|r| *r != Role::Broker),
            "a cluster needs a controller"
        );
        let nodes = (1..=roles.len() as i32)
            .map(|id| Node {
                id,
                role: roles[(id - 1) as usize],
                port: free_port(),
                controller_port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                child: None,
                extra: Vec::new(),
            })
            .collect();
        Cluster {
            nodes,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A three-node cluster with every node started and every broker registered.
    pub fn started(extra: &[&str]) -> Cluster {
        Cluster::started_n(3, extra)
    }

    /// An `n`-node cluster with every node started and every broker registered.
    pub fn started_n(n: i32, extra: &[&str]) -> Cluster {
        let mut c = Cluster::new_n(n, extra);
        let ids = c.ids();
        for &id in &ids {
            c.start(id);
        }
        c.wait_for_brokers(&ids, &ids);
        c
    }

    /// The ids of every node, running or not.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The ids of the nodes this harness has running.
    pub fn running(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub fn node(&self, id: i32) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn voters(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.role != Role::Broker)
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn bootstrap(&self, id: i32) -> String {
        format!("127.0.0.1:{}", self.node(id).port)
    }

    /// A bootstrap list naming every broker of `ids`, so a client survives losing one.
    pub fn bootstrap_of(&self, ids: &[i32]) -> String {
        ids.iter()
            .map(|&id| self.bootstrap(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn command(&self, id: i32) -> Command {
        self.command_in(id, &self.node(id).data_dir())
    }

    /// The command line of node `id`, on the given data directory.
    pub fn command_in(&self, id: i32, data_dir: &Path) -> Command {
        let n = self.node(id);
        let mut cmd = fjord();
        cmd.args(["server", "--data-dir"])
            .arg(data_dir)
            .args(["--override", &format!("node.id={id}")]);
        let (roles, listeners) = match n.role {
            Role::Combined => (
                "broker,controller",
                format!(
                    "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    n.port, n.controller_port
                ),
            ),
            Role::Controller => (
                "controller",
                format!("CONTROLLER://127.0.0.1:{}", n.controller_port),
            ),
            Role::Broker => ("broker", format!("PLAINTEXT://127.0.0.1:{}", n.port)),
        };
        cmd.args(["--override", &format!("process.roles={roles}")])
            .args(["--override", &format!("listeners={listeners}")])
            .args(["--override", "controller.listener.names=CONTROLLER"])
            .args([
                "--override",
                &format!("controller.quorum.voters={}", self.voters()),
            ]);
        for o in FAST
            .iter()
            .copied()
            .chain(self.extra.iter().map(String::as_str))
            .chain(n.extra.iter().map(String::as_str))
        {
            cmd.args(["--override", o]);
        }
        cmd
    }

    /// Starts a node (again), its output appended to its log file.
    pub fn start(&mut self, id: i32) {
        assert!(self.node(id).child.is_none(), "node {id} is running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node(id).log_path())
            .expect("open node log");
        let child = self
            .command(id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start fjord server");
        self.node_mut(id).child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self, id: i32) {
        let mut child = self.node_mut(id).child.take().expect("node running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// The process id of a running node.
    pub fn pid(&self, id: i32) -> libc::pid_t {
        let child = self.node(id).child.as_ref().expect("node running");
        child.id() as libc::pid_t
    }

    /// Sends `signal` to a running node.
    pub fn signal(&self, id: i32, signal: libc::c_int) {
        let pid = self.pid(id);
        // SAFETY: kill(2) on the id of a child this harness spawned and has not reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill -{signal} {pid} (node {id})");
    }

    /// SIGSTOP: the node stays up but does nothing (no heartbeats, no answers) until
    /// [`Cluster::resume`], like a process stuck in a long pause. Dropping the cluster
    /// still kills it.
    pub fn pause(&self, id: i32) {
        self.signal(id, libc::SIGSTOP);
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&self, id: i32) {
        self.signal(id, libc::SIGCONT);
    }

    /// SIGTERM to the given nodes at once, then waits for each; returns their exit codes.
    pub fn stop(&mut self, ids: &[i32]) -> Vec<Option<i32>> {
        for &id in ids {
            sigterm(self.node(id).child.as_ref().expect("node running"));
        }
        ids.iter()
            .map(|&id| {
                let mut child = self.node_mut(id).child.take().expect("node running");
                match wait_exit(&mut child, PATIENCE) {
                    Some(s) => s.code(),
                    None => panic!("node {id} ignored SIGTERM for {PATIENCE:?}"),
                }
            })
            .collect()
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.log_path().exists())
            .map(|n| {
                format!(
                    "----- node {} (PLAINTEXT {}, CONTROLLER {}) log tail -----\n{}\n",
                    n.id,
                    n.port,
                    n.controller_port,
                    tail(&n.log_path(), 40)
                )
            })
            .collect()
    }

    /// Waits until metadata fetched through each broker of `via` lists exactly `brokers`
    /// and names a controller among them; returns the views.
    pub fn wait_for_brokers(&self, via: &[i32], brokers: &[i32]) -> Vec<View> {
        let want: BTreeSet<i32> = brokers.iter().copied().collect();
        via.iter()
            .map(|&id| {
                self.wait_view(id, "the expected brokers", |v| {
                    v.broker_ids() == want && want.contains(&v.controller)
                })
            })
            .collect()
    }

    /// Metadata answered by broker `via` itself. A fresh client's first request goes to
    /// its bootstrap server, but librdkafka may send the next ones to brokers it learned
    /// from the answer, so an answer from another broker is not taken.
    pub fn try_view_via(&self, via: i32) -> Result<View, String> {
        let v = view(&self.bootstrap(via))?;
        if v.answered_by
            .contains(&format!(":{}/", self.node(via).port))
        {
            Ok(v)
        } else {
            Err(format!("not answered by broker {via}: {v:?}"))
        }
    }

    /// [`Cluster::try_view_via`], retried until broker `via` answers.
    pub fn view_via(&self, via: i32) -> View {
        wait_until(&format!("metadata through broker {via}"), || {
            self.try_view_via(via)
        })
    }

    /// Polls metadata through broker `via` until `ok` holds.
    pub fn wait_view(&self, via: i32, what: &str, ok: impl Fn(&View) -> bool) -> View {
        wait_until(
            &format!("metadata through broker {via} never showed {what}"),
            || match self.try_view_via(via) {
                Ok(v) if ok(&v) => Ok(v),
                Ok(v) => Err(format!("last: {v:?}")),
                Err(e) => Err(e),
            },
        )
    }

    pub fn admin(&self, id: i32) -> AdminClient<DefaultClientContext> {
        client_config(&self.bootstrap(id))
            .create()
            .expect("admin client")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Metadata as one broker answered it.
#[derive(Debug, Clone)]
pub struct View {
    pub answered_by: String,
    pub brokers: BTreeMap<i32, (String, u16)>,
    pub controller: i32,
    /// Topic to its partitions, by partition id.
    pub topics: BTreeMap<String, BTreeMap<i32, PartitionView>>,
}

/// One partition as metadata describes it. librdkafka does not hand out the leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: i32,
    /// In the order the broker listed them (the first is the preferred leader).
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The partition's error code in the answer, if any (e.g. LEADER_NOT_AVAILABLE).
    pub error: Option<RDKafkaErrorCode>,
}

impl PartitionView {
    pub fn isr_set(&self) -> BTreeSet<i32> {
        self.isr.iter().copied().collect()
    }

    pub fn replica_set(&self) -> BTreeSet<i32> {
        self.replicas.iter().copied().collect()
    }
}

impl View {
    pub fn broker_ids(&self) -> BTreeSet<i32> {
        self.brokers.keys().copied().collect()
    }

    /// Partition id to leader.
    pub fn leaders(&self, topic: &str) -> BTreeMap<i32, i32> {
        self.partitions(topic)
            .into_iter()
            .map(|(p, v)| (p, v.leader))
            .collect()
    }

    /// Partition id to its leader, replicas and ISR; empty if the topic is not listed.
    pub fn partitions(&self, topic: &str) -> BTreeMap<i32, PartitionView> {
        self.topics.get(topic).cloned().unwrap_or_default()
    }
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500");
    c
}

/// Metadata for all topics fetched by a fresh client whose only bootstrap server is
/// `bootstrap`: its first request can only go there. The controller id is the one this
/// answer carried (librdkafka keeps it from the last Metadata response).
pub fn view(bootstrap: &str) -> Result<View, String> {
    let client: BaseProducer = client_config(bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let md = client
        .client()
        .fetch_metadata(None, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    // SAFETY: a valid client handle; a zero timeout only reads the cached id.
    let controller = unsafe { rd::rd_kafka_controllerid(client.client().native_ptr(), 0) };
    let brokers = md
        .brokers()
        .iter()
        .map(|b| (b.id(), (b.host().to_string(), b.port() as u16)))
        .collect();
    let topics = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            let partitions = t
                .partitions()
                .iter()
                .map(|p| {
                    let v = PartitionView {
                        leader: p.leader(),
                        replicas: p.replicas().to_vec(),
                        isr: p.isr().to_vec(),
                        error: p.error().map(RDKafkaErrorCode::from),
                    };
                    (p.id(), v)
                })
                .collect();
            (t.name().to_string(), partitions)
        })
        .collect();
    Ok(View {
        answered_by: md.orig_broker_name().to_string(),
        brokers,
        controller,
        topics,
    })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Admin requests sent to one broker (not to whatever librdkafka believes the controller is).
pub fn to_broker(id: i32) -> AdminOptions {
    AdminOptions::new()
        .broker_id(id)
        .request_timeout(Some(Duration::from_secs(15)))
        .operation_timeout(Some(Duration::from_secs(15)))
}

pub fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    broker: i32,
    name: &str,
    partitions: i32,
) -> Result<(), String> {
    create_topic_with(admin, broker, name, partitions, 1, &[])
}

/// CreateTopics with a replication factor and topic configs, sent to broker `broker`.
pub fn create_topic_with(
    admin: &AdminClient<DefaultClientContext>,
    broker: i32,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> Result<(), String> {
    let mut topic = NewTopic::new(
        name,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = runtime()
        .block_on(admin.create_topics([&topic], &to_broker(broker)))
        .map_err(|e| e.to_string())?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => Err(format!("{code:?}")),
        None => Err("no result".into()),
    }
}

/// CreateTopics through librdkafka's C API, which keeps the broker's error message
/// (the rdkafka crate only returns the code). Returns the code and the message.
pub fn create_topic_raw(
    admin: &AdminClient<DefaultClientContext>,
    broker: i32,
    name: &str,
    partitions: i32,
    replication_factor: i32,
) -> (RDKafkaErrorCode, String) {
    let rk = admin.inner().native_ptr();
    let cname = CString::new(name).unwrap();
    let mut errstr = [0 as std::os::raw::c_char; 512];
    let text = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: librdkafka returns NUL-terminated strings owned by a live event.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    // SAFETY: every object is created, used and destroyed here; the event is destroyed
    // after its strings were copied.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let opts = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS,
        );
        rd::rd_kafka_AdminOptions_set_broker(opts, broker, errstr.as_mut_ptr(), errstr.len());
        rd::rd_kafka_AdminOptions_set_request_timeout(
            opts,
            15000,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let nt = rd::rd_kafka_NewTopic_new(
            cname.as_ptr(),
            partitions,
            replication_factor,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        assert!(!nt.is_null(), "{}", text(errstr.as_ptr()));
        let mut arr = [nt];
        rd::rd_kafka_CreateTopics(rk, arr.as_mut_ptr(), 1, opts, queue);
        rd::rd_kafka_NewTopic_destroy(nt);
        rd::rd_kafka_AdminOptions_destroy(opts);
        let ev = rd::rd_kafka_queue_poll(queue, 20000);
        assert!(!ev.is_null(), "no CreateTopics answer");
        let out = if rd::rd_kafka_event_error(ev)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            (
                rd::rd_kafka_event_error(ev).into(),
                text(rd::rd_kafka_event_error_string(ev)),
            )
        } else {
            let res = rd::rd_kafka_event_CreateTopics_result(ev);
            let mut n = 0usize;
            let topics = rd::rd_kafka_CreateTopics_result_topics(res, &mut n);
            assert_eq!(n, 1);
            let t = *topics;
            (
                rd::rd_kafka_topic_result_error(t).into(),
                text(rd::rd_kafka_topic_result_error_string(t)),
            )
        };
        rd::rd_kafka_event_destroy(ev);
        rd::rd_kafka_queue_destroy(queue);
        out
    }
}

pub fn producer(bootstrap: &str) -> BaseProducer {
    client_config(bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// Produces the records (partition, key, value) and waits until every one is delivered.
pub fn produce_all(p: &BaseProducer, topic: &str, records: &[(i32, String, String)]) {
    for (partition, key, value) in records {
        send(p, topic, Some(*partition), key, value);
    }
    p.flush(Duration::from_secs(40)).expect("flush");
    assert_eq!(p.in_flight_count(), 0);
}

/// Enqueues one record, waiting while the producer's queue is full.
pub fn send<C: ProducerContext<DeliveryOpaque = ()>>(
    p: &BaseProducer<C>,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &str,
) {
    let mut rec = BaseRecord::to(topic).key(key).payload(value);
    if let Some(partition) = partition {
        rec = rec.partition(partition);
    }
    loop {
        match p.send(rec) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("enqueue to {topic}: {e}"),
        }
    }
    p.poll(Duration::ZERO);
}

/// A producer whose delivery failures are counted.
pub struct Counting {
    pub failed: std::sync::atomic::AtomicUsize,
    pub delivered: std::sync::atomic::AtomicUsize,
}

impl rdkafka::ClientContext for Counting {}

impl rdkafka::producer::ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use std::sync::atomic::Ordering::SeqCst;
        match result {
            Ok(_) => self.delivered.fetch_add(1, SeqCst),
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                self.failed.fetch_add(1, SeqCst)
            }
        };
    }
}

pub fn counting_producer(bootstrap: &str) -> BaseProducer<Counting> {
    client_config(bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create_with_context(Counting {
            failed: Default::default(),
            delivered: Default::default(),
        })
        .expect("producer")
}

pub fn assign_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

/// Reads `count` records from the given partitions from their beginning: (partition, key, value).
pub fn consume_from_beginning(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    count: usize,
) -> Vec<(i32, String, String)> {
    let c = assign_consumer(bootstrap, "assign-only");
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    poll_records(&c, count)
}

pub fn poll_records(c: &BaseConsumer, count: usize) -> Vec<(i32, String, String)> {
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {count} records: {out:?}",
            out.len()
        );
        match c.poll(POLL) {
            Some(Ok(m)) => out.push((
                m.partition(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => eprintln!("consumer error (retrying): {e}"),
        }
    }
    out
}

/// `n` records for each partition, keyed and numbered per partition.
pub fn records_for(partitions: &[i32], n: usize) -> Vec<(i32, String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        for &p in partitions {
            out.push((p, format!("key-{p}"), format!("p{p}-{i}")));
        }
    }
    out
}

/// Checks that every record came back, each partition in production order.
pub fn assert_same_per_partition(
    produced: &[(i32, String, String)],
    consumed: &[(i32, String, String)],
) {
    let by_partition = |rs: &[(i32, String, String)]| {
        let mut m: BTreeMap<i32, Vec<(String, String)>> = BTreeMap::new();
        for (p, k, v) in rs {
            m.entry(*p).or_default().push((k.clone(), v.clone()));
        }
        m
    };
    assert_eq!(by_partition(consumed), by_partition(produced));
}

/// Partition to offset.
pub fn offsets(tpl: &TopicPartitionList) -> BTreeMap<i32, Offset> {
    tpl.elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect()
}

pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{what}: {e}"),
        }
        std::thread::sleep(POLL);
    }
}
