//! Three-node Fjord clusters as an operator runs them: real `fjord server` processes, each
//! with its own data directory and its PLAINTEXT and CONTROLLER listeners, driven through
//! librdkafka (the `rdkafka` crate).
//!
//! Every test starts its own cluster with short liveness timeouts and waits on conditions
//! with generous deadlines, so that the tests stay fast and do not depend on the load of
//! the machine. When a test fails, the tail of every node's log is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Deadline for anything the cluster should do "soon" (elections, fencing, start-up).
const PATIENCE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// Liveness settings that keep the tests fast.
const FAST: [&str; 3] = [
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "controller.quorum.election.timeout.ms=500",
];
const SESSION_TIMEOUT: Duration = Duration::from_millis(3000);

fn fjord() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fjord"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
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
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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

fn sigterm(child: &Child) {
    // SAFETY: kill(2) on the id of a child this test spawned and has not reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM {}", child.id());
}

struct Node {
    id: i32,
    port: u16,
    controller_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Three nodes `1@`, `2@`, `3@` of one quorum. Dropping it kills every node; if the test is
/// failing, it first prints the tail of every node's log.
struct Cluster {
    nodes: Vec<Node>,
    extra: Vec<String>,
}

impl Cluster {
    /// A cluster whose nodes are not started yet.
    fn new(extra: &[&str]) -> Cluster {
        let nodes = (1..=3)
            .map(|id| Node {
                id,
                port: free_port(),
                controller_port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                child: None,
            })
            .collect();
        Cluster {
            nodes,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A cluster with every node started and every broker registered.
    fn started(extra: &[&str]) -> Cluster {
        let mut c = Cluster::new(extra);
        for id in 1..=3 {
            c.start(id);
        }
        c.wait_for_brokers(&[1, 2, 3], &[1, 2, 3]);
        c
    }

    fn node(&self, id: i32) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn voters(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn bootstrap(&self, id: i32) -> String {
        format!("127.0.0.1:{}", self.node(id).port)
    }

    fn command(&self, id: i32) -> Command {
        self.command_in(id, &self.node(id).data_dir())
    }

    /// The command line of node `id`, on the given data directory.
    fn command_in(&self, id: i32, data_dir: &Path) -> Command {
        let n = self.node(id);
        let mut cmd = fjord();
        cmd.args(["server", "--data-dir"])
            .arg(data_dir)
            .args(["--override", &format!("node.id={id}")])
            .args(["--override", "process.roles=broker,controller"])
            .args([
                "--override",
                &format!(
                    "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    n.port, n.controller_port
                ),
            ])
            .args(["--override", "controller.listener.names=CONTROLLER"])
            .args([
                "--override",
                &format!("controller.quorum.voters={}", self.voters()),
            ]);
        for o in FAST
            .iter()
            .copied()
            .chain(self.extra.iter().map(String::as_str))
        {
            cmd.args(["--override", o]);
        }
        cmd
    }

    /// Starts a node (again), its output appended to its log file.
    fn start(&mut self, id: i32) {
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
    fn kill(&mut self, id: i32) {
        let mut child = self.node_mut(id).child.take().expect("node running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// SIGTERM to the given nodes at once, then waits for each; returns their exit codes.
    fn stop(&mut self, ids: &[i32]) -> Vec<Option<i32>> {
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

    fn logs(&self) -> String {
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
    fn wait_for_brokers(&self, via: &[i32], brokers: &[i32]) -> Vec<View> {
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
    fn try_view_via(&self, via: i32) -> Result<View, String> {
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
    fn view_via(&self, via: i32) -> View {
        wait_until(&format!("metadata through broker {via}"), || {
            self.try_view_via(via)
        })
    }

    /// Polls metadata through broker `via` until `ok` holds.
    fn wait_view(&self, via: i32, what: &str, ok: impl Fn(&View) -> bool) -> View {
        wait_until(
            &format!("metadata through broker {via} never showed {what}"),
            || match self.try_view_via(via) {
                Ok(v) if ok(&v) => Ok(v),
                Ok(v) => Err(format!("last: {v:?}")),
                Err(e) => Err(e),
            },
        )
    }

    fn admin(&self, id: i32) -> AdminClient<DefaultClientContext> {
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
struct View {
    answered_by: String,
    brokers: BTreeMap<i32, (String, u16)>,
    controller: i32,
    /// Topic to its partitions' leaders, by partition id.
    topics: BTreeMap<String, BTreeMap<i32, i32>>,
}

impl View {
    fn broker_ids(&self) -> BTreeSet<i32> {
        self.brokers.keys().copied().collect()
    }

    fn leaders(&self, topic: &str) -> BTreeMap<i32, i32> {
        self.topics.get(topic).cloned().unwrap_or_default()
    }
}

fn client_config(bootstrap: &str) -> ClientConfig {
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
fn view(bootstrap: &str) -> Result<View, String> {
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
            let leaders = t
                .partitions()
                .iter()
                .map(|p| (p.id(), p.leader()))
                .collect();
            (t.name().to_string(), leaders)
        })
        .collect();
    Ok(View {
        answered_by: md.orig_broker_name().to_string(),
        brokers,
        controller,
        topics,
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Admin requests sent to one broker (not to whatever librdkafka believes the controller is).
fn to_broker(id: i32) -> AdminOptions {
    AdminOptions::new()
        .broker_id(id)
        .request_timeout(Some(Duration::from_secs(15)))
        .operation_timeout(Some(Duration::from_secs(15)))
}

fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    broker: i32,
    name: &str,
    partitions: i32,
) -> Result<(), String> {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
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
fn create_topic_raw(
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

fn producer(bootstrap: &str) -> BaseProducer {
    client_config(bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// Produces the records (partition, key, value) and waits until every one is delivered.
fn produce_all(p: &BaseProducer, topic: &str, records: &[(i32, String, String)]) {
    for (partition, key, value) in records {
        let mut rec = BaseRecord::to(topic)
            .partition(*partition)
            .key(key.as_str())
            .payload(value.as_str());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce to {topic}/{partition}: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(40)).expect("flush");
    assert_eq!(p.in_flight_count(), 0);
}

/// A producer whose delivery failures are counted.
struct Counting {
    failed: std::sync::atomic::AtomicUsize,
    delivered: std::sync::atomic::AtomicUsize,
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

fn counting_producer(bootstrap: &str) -> BaseProducer<Counting> {
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

fn assign_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

/// Reads `count` records from the given partitions from their beginning: (partition, key, value).
fn consume_from_beginning(
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

fn poll_records(c: &BaseConsumer, count: usize) -> Vec<(i32, String, String)> {
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
fn records_for(partitions: &[i32], n: usize) -> Vec<(i32, String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        for &p in partitions {
            out.push((p, format!("key-{p}"), format!("p{p}-{i}")));
        }
    }
    out
}

/// Checks that every record came back, each partition in production order.
fn assert_same_per_partition(
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
fn offsets(tpl: &TopicPartitionList) -> BTreeMap<i32, Offset> {
    tpl.elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect()
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{what}: {e}"),
        }
        std::thread::sleep(POLL);
    }
}

#[test]
fn any_broker_bootstraps_and_nodes_started_in_reverse_order_form_the_quorum() {
    let mut c = Cluster::new(&[]);
    let started = Instant::now();
    for id in [3, 2, 1] {
        c.start(id);
        // Not an assertion: the later nodes join a quorum that is still forming.
        std::thread::sleep(Duration::from_millis(700));
    }
    let views = c.wait_for_brokers(&[1, 2, 3], &[1, 2, 3]);
    eprintln!(
        "reverse-order start: all three brokers listed {:?} after the first start",
        started.elapsed()
    );
    let expected: BTreeMap<i32, (String, u16)> = c
        .nodes
        .iter()
        .map(|n| (n.id, ("127.0.0.1".to_string(), n.port)))
        .collect();
    for (id, v) in [1, 2, 3].iter().zip(&views) {
        assert!(
            v.answered_by.contains(&format!(":{}/", c.node(*id).port)),
            "broker {id} did not answer its own bootstrap: {v:?}"
        );
        assert_eq!(v.brokers, expected, "through broker {id}");
    }
    // Each view was taken once its broker named a controller; they may only differ if an
    // election ran in between, so look again until all agree.
    let controller = wait_until("the three brokers agree on the controller", || {
        let ids: Vec<i32> = (1..=3)
            .map(|id| c.try_view_via(id).map(|v| v.controller))
            .collect::<Result<_, _>>()?;
        if ids.iter().all(|&i| i == ids[0]) && (1..=3).contains(&ids[0]) {
            Ok(ids[0])
        } else {
            Err(format!("controller ids {ids:?}"))
        }
    });
    eprintln!("active controller: {controller}");
}

#[test]
fn six_partitions_spread_over_three_brokers_and_records_flow_across_brokers() {
    let c = Cluster::started(&[]);
    let admin = c.admin(2);
    create_topic(&admin, 2, "spread", 6).expect("create through broker 2");
    // Answered once broker 2 applied it: its metadata shows the topic at once.
    let v = c.view_via(2);
    let leaders = v.leaders("spread");
    assert_eq!(leaders.len(), 6, "{v:?}");
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    for leader in leaders.values() {
        *per_broker.entry(*leader).or_default() += 1;
    }
    assert_eq!(
        per_broker,
        BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
        "{leaders:?}"
    );
    // The other brokers learn it too.
    for id in [1, 3] {
        c.wait_view(id, "topic spread with the same leaders", |v| {
            v.leaders("spread") == leaders
        });
    }

    let partitions: Vec<i32> = (0..6).collect();
    let records = records_for(&partitions, 20);
    produce_all(&producer(&c.bootstrap(1)), "spread", &records);
    let consumed = consume_from_beginning(&c.bootstrap(3), "spread", &partitions, records.len());
    assert_same_per_partition(&records, &consumed);
}

#[test]
fn admin_requests_through_a_broker_that_is_not_the_controller() {
    let c = Cluster::started(&[]);
    let controller = c.wait_for_brokers(&[1], &[1, 2, 3])[0].controller;
    let others: Vec<i32> = (1..=3).filter(|&i| i != controller).collect();
    let (via, third) = (others[0], others[1]);
    let admin = c.admin(via);
    let rt = runtime();

    // Create.
    create_topic(&admin, via, "admin-a", 2).expect("create");
    let v = c.view_via(via);
    assert_eq!(v.leaders("admin-a").len(), 2, "{v:?}");

    // Alter a config; another broker describes it.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("admin-a")).set("retention.ms", "3600000");
    let results = rt
        .block_on(admin.alter_configs([&alter], &to_broker(via)))
        .expect("alter configs");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let describer = c.admin(third);
    let described = wait_until("DescribeConfigs through the third broker", || {
        let results = rt
            .block_on(
                describer
                    .describe_configs([&ResourceSpecifier::Topic("admin-a")], &to_broker(third)),
            )
            .map_err(|e| e.to_string())?;
        let resource = results
            .into_iter()
            .next()
            .ok_or("no result")?
            .map_err(|e| format!("{e:?}"))?;
        let value = resource
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .ok_or("no retention.ms")?;
        if value == "3600000" {
            Ok(value)
        } else {
            Err(format!("retention.ms is {value}"))
        }
    });
    assert_eq!(described, "3600000");

    // Create partitions.
    let more = NewPartitions::new("admin-a", 5);
    let results = rt
        .block_on(admin.create_partitions([&more], &to_broker(via)))
        .expect("create partitions");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let v = c.view_via(via);
    assert_eq!(v.leaders("admin-a").len(), 5, "{v:?}");

    // Delete.
    let results = rt
        .block_on(admin.delete_topics(&["admin-a"], &to_broker(via)))
        .expect("delete topics");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let v = c.view_via(via);
    assert!(!v.topics.contains_key("admin-a"), "{v:?}");
    c.wait_view(third, "admin-a gone", |v| !v.topics.contains_key("admin-a"));

    // A replication factor larger than the live brokers.
    let (code, message) = create_topic_raw(&admin, via, "admin-rf4", 1, 4);
    assert_eq!(
        code,
        RDKafkaErrorCode::InvalidReplicationFactor,
        "{message}"
    );
    assert_eq!(
        message,
        "Replication factor: 4 larger than available brokers: 3."
    );
    let v = c.view_via(via);
    assert!(!v.topics.contains_key("admin-rf4"), "{v:?}");

    // Every request was handled by `via` (which forwarded it), none by the controller.
    let handled = |id: i32, what: &str, topic: &str| {
        tail(&c.node(id).log_path(), 100_000)
            .lines()
            .any(|l| l.contains(what) && l.contains(topic))
    };
    for (what, topic) in [
        ("create topic", "admin-a"),
        ("topic configs altered", "admin-a"),
        ("partitions added", "admin-a"),
        ("deleted topic", "admin-a"),
        ("create topic refused", "admin-rf4"),
    ] {
        wait_until(
            &format!("broker {via} logs {what} {topic}"),
            || match handled(via, what, topic) {
                true => Ok(()),
                false => Err("not logged".to_string()),
            },
        );
        assert!(
            !handled(controller, what, topic),
            "the controller handled {what} {topic} itself"
        );
    }
}

#[test]
fn killing_the_controller_elects_another_and_the_survivors_keep_working() {
    let mut c = Cluster::started(&[]);
    let admin1 = c.admin(1);
    create_topic(&admin1, 1, "steady", 3).expect("create steady");
    let before = c.wait_view(1, "a controller and topic steady", |v| {
        v.leaders("steady").len() == 3
    });
    let old = before.controller;
    let survivors: Vec<i32> = (1..=3).filter(|&i| i != old).collect();
    let s = survivors[0];
    // A partition led by a survivor, with a producer that keeps producing through the election.
    let partition = *before
        .leaders("steady")
        .iter()
        .find(|(_, l)| **l == s)
        .expect("a partition on each broker")
        .0;
    let p = counting_producer(&c.bootstrap(s));
    let mut sent = Vec::new();
    let mut send = |p: &BaseProducer<Counting>, n: usize| {
        let value = format!("steady-{n}");
        p.send(
            BaseRecord::to("steady")
                .partition(partition)
                .key("k")
                .payload(&value),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
        sent.push((partition, "k".to_string(), value));
        p.poll(Duration::ZERO);
    };
    send(&p, 0);

    let killed = Instant::now();
    c.kill(old);
    let mut n = 1;
    // What each survivor named as controller, each time it changed.
    let mut seen: BTreeMap<i32, Vec<(Duration, i32)>> = BTreeMap::new();
    let new = loop {
        send(&p, n);
        n += 1;
        let mut named = Vec::new();
        for &id in &survivors {
            if let Ok(v) = c.try_view_via(id) {
                let said = seen.entry(id).or_default();
                if said.last().map(|l| l.1) != Some(v.controller) {
                    said.push((killed.elapsed(), v.controller));
                }
                named.push(v.controller);
            }
        }
        // The new controller once both survivors name the same one.
        if named.len() == 2
            && named[0] == named[1]
            && named[0] != old
            && survivors.contains(&named[0])
        {
            break named[0];
        }
        assert!(
            killed.elapsed() < PATIENCE,
            "the survivors named no common new controller within {PATIENCE:?}: {seen:?}"
        );
        std::thread::sleep(POLL);
    };
    let to_controller = killed.elapsed();

    let admin = c.admin(s);
    let mut attempts = 0;
    wait_until("create a topic through a survivor", || {
        attempts += 1;
        create_topic(&admin, s, "after-failover", 3)
    });
    let to_create = killed.elapsed();
    eprintln!(
        "controller {old} killed: new controller {new} in metadata after {to_controller:?}; \
         first successful CreateTopics through broker {s} after {to_create:?} ({attempts} attempts)"
    );

    for _ in 0..10 {
        send(&p, n);
        n += 1;
    }
    p.flush(Duration::from_secs(40)).expect("flush");
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(p.context().failed.load(SeqCst), 0);
    assert_eq!(p.context().delivered.load(SeqCst), sent.len());
    let consumed = consume_from_beginning(&c.bootstrap(s), "steady", &[partition], sent.len());
    assert_same_per_partition(&sent, &consumed);

    // The new topic works on a survivor too.
    let v = c.wait_view(s, "after-failover", |v| {
        v.leaders("after-failover").len() == 3
    });
    let (&q, _) = v
        .leaders("after-failover")
        .iter()
        .find(|(_, l)| survivors.contains(l))
        .expect("a partition of after-failover on a survivor");
    let records = records_for(&[q], 5);
    produce_all(&producer(&c.bootstrap(s)), "after-failover", &records);
    let consumed = consume_from_beginning(&c.bootstrap(s), "after-failover", &[q], records.len());
    assert_same_per_partition(&records, &consumed);

    // Until the survivors knew the new controller, Metadata could only name the old one
    // (not known to be gone yet) or none; never a broker that was not elected.
    eprintln!("controller ids the survivors named after the kill: {seen:?}");
    let wrong: Vec<(i32, Duration, i32)> = seen
        .iter()
        .flat_map(|(&id, said)| said.iter().map(move |&(t, c)| (id, t, c)))
        .filter(|&(_, _, c)| c != old && c != new && c != -1)
        .collect();
    assert!(
        wrong.is_empty(),
        "after killing controller {old}, survivors named controllers that were never elected \
         (broker, time after the kill, named controller): {wrong:?}; all they said: {seen:?}"
    );
}

#[test]
fn a_silent_broker_is_fenced_and_back_once_restarted() {
    let mut c = Cluster::started(&[]);
    let controller = c.wait_for_brokers(&[1], &[1, 2, 3])[0].controller;
    let victim = (1..=3).find(|&i| i != controller).unwrap();
    let survivor = (1..=3).find(|&i| i != victim).unwrap();

    let killed = Instant::now();
    c.kill(victim);
    let v = c.wait_view(survivor, "the killed broker fenced", |v| {
        !v.brokers.contains_key(&victim)
    });
    let fenced_after = killed.elapsed();
    eprintln!("broker {victim} killed: gone from metadata after {fenced_after:?}");
    assert!(
        fenced_after < SESSION_TIMEOUT + Duration::from_secs(10),
        "fenced after {fenced_after:?}"
    );
    assert_eq!(v.broker_ids().len(), 2, "{v:?}");

    let admin = c.admin(survivor);
    create_topic(&admin, survivor, "after-fence", 6).expect("create after fence");
    let v = c.view_via(survivor);
    let leaders = v.leaders("after-fence");
    assert_eq!(leaders.len(), 6, "{v:?}");
    assert!(
        leaders.values().all(|l| *l != victim),
        "a partition placed on fenced broker {victim}: {leaders:?}"
    );
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    for leader in leaders.values() {
        *per_broker.entry(*leader).or_default() += 1;
    }
    assert!(per_broker.values().all(|&n| n == 3), "{leaders:?}");

    let restarted = Instant::now();
    c.start(victim);
    c.wait_for_brokers(&[survivor, victim], &[1, 2, 3]);
    eprintln!(
        "broker {victim} restarted: back in metadata after {:?}",
        restarted.elapsed()
    );
}

#[test]
fn a_restarted_cluster_keeps_topics_records_and_committed_offsets() {
    let mut c = Cluster::started(&["group.initial.rebalance.delay.ms=0"]);
    let admin = c.admin(1);
    create_topic(&admin, 1, "kept-a", 3).expect("create kept-a");
    create_topic(&admin, 2, "kept-b", 2).expect("create kept-b");
    let before = c.wait_view(3, "both topics", |v| {
        v.leaders("kept-a").len() == 3 && v.leaders("kept-b").len() == 2
    });

    let a: Vec<i32> = (0..3).collect();
    let records = records_for(&a, 30);
    produce_all(&producer(&c.bootstrap(2)), "kept-a", &records);
    let b_records = records_for(&[0, 1], 5);
    produce_all(&producer(&c.bootstrap(3)), "kept-b", &b_records);

    // A group reads everything of kept-a and commits.
    let group = assign_consumer(&c.bootstrap(1), "kept-group");
    group.subscribe(&["kept-a"]).expect("subscribe");
    let consumed = poll_records(&group, records.len());
    assert_same_per_partition(&records, &consumed);
    group
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    // The list librdkafka returns holds references to its partitions: it must be gone
    // before the consumer is dropped, or rd_kafka_destroy waits for it forever.
    let committed = offsets(
        &group
            .committed(Duration::from_secs(15))
            .expect("committed offsets"),
    );
    assert_eq!(
        committed,
        BTreeMap::from([
            (0, Offset::Offset(30)),
            (1, Offset::Offset(30)),
            (2, Offset::Offset(30))
        ])
    );
    drop(group);

    // Nothing was killed: no node has a reason to log an error. Checked at the end, so
    // that the restart itself is checked either way.
    let errors: Vec<String> = c
        .nodes
        .iter()
        .flat_map(|n| {
            tail(&n.log_path(), 100_000)
                .lines()
                .filter(|l| l.contains(" ERROR "))
                .map(|l| format!("node {}: {l}", n.id))
                .collect::<Vec<_>>()
        })
        .collect();
    let codes = c.stop(&[1, 2, 3]);
    assert_eq!(codes, vec![Some(0); 3], "exit codes after SIGTERM");
    let restarted = Instant::now();
    for id in 1..=3 {
        c.start(id);
    }
    c.wait_for_brokers(&[1, 2, 3], &[1, 2, 3]);
    eprintln!(
        "restart of all three nodes: ready after {:?}",
        restarted.elapsed()
    );

    let after = c.wait_view(1, "both topics after the restart", |v| {
        v.topics.contains_key("kept-a") && v.topics.contains_key("kept-b")
    });
    assert_eq!(after.leaders("kept-a"), before.leaders("kept-a"));
    assert_eq!(after.leaders("kept-b"), before.leaders("kept-b"));

    let again = consume_from_beginning(&c.bootstrap(3), "kept-a", &a, records.len());
    assert_same_per_partition(&records, &again);
    let again = consume_from_beginning(&c.bootstrap(1), "kept-b", &[0, 1], b_records.len());
    assert_same_per_partition(&b_records, &again);

    let reader = assign_consumer(&c.bootstrap(2), "kept-group");
    let mut tpl = TopicPartitionList::new();
    for &p in &a {
        tpl.add_partition("kept-a", p);
    }
    let after_restart = wait_until("the group's committed offsets", || {
        let got = reader
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let got = offsets(&got);
        if got == committed {
            Ok(got)
        } else {
            Err(format!("committed offsets {got:?}"))
        }
    });
    assert_eq!(after_restart, committed);
    assert!(
        errors.is_empty(),
        "errors logged before the restart:\n{}",
        errors.join("\n")
    );
}

/// Kills a server a test started by itself if the test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a server that must refuse to start; returns its exit code and stderr.
fn refused(mut cmd: Command) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, PATIENCE);
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.is_some(), "still running after {PATIENCE:?}: {err}");
    (status.and_then(|s| s.code()), err)
}

/// What is wrong with a refusal: exit code 2 and one line (besides the log lines written
/// before it, which start with a timestamp) that mentions `needle`.
fn refusal_problems(case: &str, code: Option<i32>, err: &str, needle: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    if code != Some(2) {
        problems.push(format!("{case}: exit code {code:?}, not 2"));
    }
    if lines.len() != 1 {
        problems.push(format!("{case}: {} lines, not one", lines.len()));
    }
    if !err.contains(needle) {
        problems.push(format!("{case}: does not mention {needle}"));
    }
    if lines.iter().any(|l| l.contains("  ")) {
        problems.push(format!("{case}: a run of spaces inside the message"));
    }
    if !problems.is_empty() {
        problems.push(format!("{case} stderr: {err}"));
    }
    problems
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(POLL);
    }
}

#[test]
fn startup_refusals_are_one_line_and_exit_2() {
    // (a) A controller that is not one of the voters.
    let c = Cluster::new(&[]);
    let mut cmd = c.command(1);
    cmd.args(["--override", "node.id=4"]);
    let (code, err) = refused(cmd);
    let mut problems = refusal_problems("(a) node.id 4", code, &err, "controller.quorum.voters");

    // (b) A data directory of a one-voter quorum restarted with another voter list.
    let dir = tempfile::tempdir().unwrap();
    let (port, cport) = (free_port(), free_port());
    let member = |voters: &str| {
        let mut cmd = fjord();
        cmd.args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--override", "node.id=1"])
            .args([
                "--override",
                &format!("listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"),
            ])
            .args(["--override", "controller.listener.names=CONTROLLER"])
            .args(["--override", &format!("controller.quorum.voters={voters}")]);
        for o in FAST {
            cmd.args(["--override", o]);
        }
        cmd
    };
    let log = dir.path().join("first-run.log");
    let mut first = Guard(
        member(&format!("1@127.0.0.1:{cport}"))
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn"),
    );
    let ready = Instant::now() + PATIENCE;
    while view(&format!("127.0.0.1:{port}")).map(|v| v.broker_ids()) != Ok(BTreeSet::from([1])) {
        assert!(
            Instant::now() < ready,
            "one-voter quorum not up: {}",
            tail(&log, 40)
        );
        std::thread::sleep(POLL);
    }
    sigterm(&first.0);
    let status = wait_exit(&mut first.0, PATIENCE);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", tail(&log, 40));
    let (code, err) = refused(member(&format!(
        "1@127.0.0.1:{cport},2@127.0.0.1:{},3@127.0.0.1:{}",
        free_port(),
        free_port()
    )));
    problems.extend(refusal_problems("(b) other voters", code, &err, "cluster"));

    // (c) A plain one-node server's data directory started with voters.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut plain = Guard(
        fjord()
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_for_port(port);
    sigterm(&plain.0);
    let status = wait_exit(&mut plain.0, PATIENCE);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let c = Cluster::new(&[]);
    let (code, err) = refused(c.command_in(1, dir.path()));
    problems.extend(refusal_problems(
        "(c) one-node directory",
        code,
        &err,
        "controller.quorum.voters",
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
