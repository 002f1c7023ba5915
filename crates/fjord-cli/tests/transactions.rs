//! Transactions through librdkafka (the `rdkafka` crate) against the `fjord` binary: a
//! transactional producer commits and aborts, and read_committed consumers see exactly
//! the committed records while read_uncommitted ones see them all.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Every value in partition 0 of `topic` read with `isolation`, until nothing comes for
/// two seconds.
fn read_all(addr: &str, topic: &str, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", format!("g-{isolation}"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while quiet_since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    out
}

#[test]
fn read_committed_sees_exactly_the_committed_transactions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["server", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fjord server");
    let _server = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("transactional.id", "fjord-tx-test")
        .create()
        .expect("create producer");
    producer
        .init_transactions(Duration::from_secs(60))
        .expect("init_transactions");
    for (round, commit) in [("a", true), ("b", false), ("c", true)] {
        producer.begin_transaction().expect("begin");
        for i in 0..3 {
            let value = format!("{round}{i}");
            producer
                .send(BaseRecord::<(), _>::to("t").partition(0).payload(&value))
                .expect("send");
        }
        // Sent before the outcome, so that the aborted records are in the log too.
        producer.flush(Duration::from_secs(30)).expect("flush");
        if commit {
            producer
                .commit_transaction(Duration::from_secs(30))
                .expect("commit");
        } else {
            producer
                .abort_transaction(Duration::from_secs(30))
                .expect("abort");
        }
    }

    assert_eq!(
        read_all(&addr, "t", "read_committed"),
        ["a0", "a1", "a2", "c0", "c1", "c2"]
    );
    assert_eq!(
        read_all(&addr, "t", "read_uncommitted"),
        ["a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2"]
    );
}
