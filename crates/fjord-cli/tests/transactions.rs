//! What a transactional producer sees from Fjord through librdkafka (the `rdkafka` crate):
//! `init_transactions()` fails at once with Fjord's reason, instead of hanging until the
//! client's timeout.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

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

#[test]
fn init_transactions_fails_fast_with_a_clear_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["server", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fjord server");
    let mut server = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("transactional.id", "fjord-tx-test")
        .set("log_level", "0")
        .create()
        .expect("create producer");
    // A generous client timeout: the refusal must come long before it.
    let started = Instant::now();
    let result = producer.init_transactions(Duration::from_secs(60));
    let took = started.elapsed();
    let err = result.expect_err("init_transactions must be refused");
    let text = err.to_string();
    assert!(
        took < Duration::from_secs(10),
        "refusal took {took:?}: {text}"
    );
    assert!(
        text.contains("Fjord does not support transactions yet"),
        "{text}"
    );
    println!("client sees after {took:?}: {text}");

    // The broker says so too, once.
    let _ = server.0.kill();
    let _ = server.0.wait();
    let mut log = String::new();
    if let Some(mut e) = server.0.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused a transactional producer"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("fjord-tx-test"), "{}", warnings[0]);
    println!("broker logs: {}", warnings[0]);
}
