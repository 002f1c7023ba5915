//! `fjord server` as an operator runs it: flags, bad configuration, SIGTERM.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fjord() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fjord"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills the server if a test fails half-way, so no process outlives the test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unknown_property_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = fjord()
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .args(["--override", "log.retention.hourz=1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("log.retention.hourz"), "{err}");
    assert!(err.contains("did you mean 'log.retention.hours'?"), "{err}");

    let props = dir.path().join("server.properties");
    std::fs::write(&props, "num.partitions=abc\n").unwrap();
    let out = fjord()
        .args(["server", "--config"])
        .arg(&props)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("num.partitions"), "{err}");

    let out = fjord().args(["server", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );
}

/// TLS, SASL and ACL settings that cannot work stop the server at start with one line
/// naming what to fix, before anything listens; a password never appears in it.
#[test]
fn security_settings_that_cannot_work_stop_the_server_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-keystore.pem");
    let listeners = format!(
        "listeners=PLAINTEXT://127.0.0.1:{},SSL://127.0.0.1:{}",
        free_port(),
        free_port()
    );
    let keystore = format!("ssl.keystore.location={}", missing.display());
    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        // JKS, Kafka's default keystore type, is not read.
        (vec![&listeners], 2, vec!["ssl.keystore.type", "PEM"]),
        (
            vec![&listeners, "ssl.keystore.type=PEM", &keystore],
            1,
            vec!["listener SSL", "no-such-keystore.pem"],
        ),
        (
            vec![
                "listeners=SASL_PLAINTEXT://127.0.0.1:1",
                "sasl.enabled.mechanisms=GSSAPI",
            ],
            2,
            vec!["GSSAPI"],
        ),
        (
            vec!["authorizer.class.name=com.example.MyAuthorizer"],
            2,
            vec!["StandardAuthorizer"],
        ),
        (vec!["super.users=admin"], 2, vec!["User:<name>"]),
    ];
    for (overrides, code, needles) in cases {
        let mut cmd = fjord();
        cmd.args(["server", "--data-dir"])
            .arg(dir.path().join("data"));
        for o in &overrides {
            cmd.args(["--override", o]);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{overrides:?}: {err}");
        // One error line (a start-up log line may come before it).
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("fjord:")).collect();
        assert_eq!(errors.len(), 1, "{overrides:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{overrides:?}: expected '{n}' in: {err}");
        }
    }
    // A malformed --add-scram is refused without repeating the password.
    let out = fjord()
        .args(["server", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--add-scram", "SCRAM-SHA-1=[name=a,password=hunter2]"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SCRAM-SHA-1") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn sigterm_flushes_and_exits_zero_and_the_lock_refuses_a_second_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = fjord()
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Running(child);
    wait_for_port(port);
    assert!(dir.path().join("meta.properties").is_file());

    // Same directory, another port: refused with a clear message.
    let out = fjord()
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another Fjord server"), "{err}");

    let pid = server.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    if let Some(mut e) = server.0.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("flushed"), "{log}");
}

/// Sends SIGTERM and returns the exit code and everything the server logged.
fn stop(mut server: Running) -> (Option<i32>, String) {
    let pid = server.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    if let Some(mut e) = server.0.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    (status.code(), log)
}

#[test]
fn kafkas_example_server_properties_starts_fjord() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kafka-server.properties"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = fjord()
        .args(["server", "--config", fixture, "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--override",
            &format!("advertised.listeners=PLAINTEXT://127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = Running(child);
    wait_for_port(port);
    let (code, log) = stop(server);
    assert_eq!(code, Some(0), "{log}");
    let ignored: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ignoring Kafka broker properties"))
        .collect();
    assert_eq!(ignored.len(), 1, "{log}");
    for name in [
        "controller.quorum.bootstrap.servers",
        "num.network.threads",
        "share.coordinator.state.topic.min.isr",
    ] {
        assert!(ignored[0].contains(name), "{name} missing: {}", ignored[0]);
    }
    // Properties Fjord uses are not reported as ignored.
    assert!(
        !ignored[0].contains("transaction.state.log.min.isr"),
        "{}",
        ignored[0]
    );
    assert!(
        !ignored[0].contains("log.retention.hours"),
        "{}",
        ignored[0]
    );
}

/// Starts a server on `dir` with its log on a pipe.
fn start_in(dir: &std::path::Path) -> (Running, u16) {
    let port = free_port();
    let child = fjord()
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = Running(child);
    wait_for_port(port);
    (server, port)
}

/// Waits until the marker is gone: the server removes it once it holds the directory.
fn wait_marker_removed(dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.join(".clean-shutdown").exists() {
        assert!(Instant::now() < deadline, "marker still present");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_log_names_the_version_and_how_the_previous_run_ended() {
    let dir = tempfile::tempdir().unwrap();
    let version = env!("CARGO_PKG_VERSION");

    let (server, _) = start_in(dir.path());
    let (code, log) = stop(server);
    assert_eq!(code, Some(0), "{log}");
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("starting Fjord {version}")),
        "{log}"
    );
    assert!(log.contains("first start of this data directory"), "{log}");
    assert!(dir.path().join(".clean-shutdown").is_file());

    // After a clean shutdown.
    let (server, _) = start_in(dir.path());
    wait_marker_removed(dir.path());
    let (code, log) = stop(server);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("previous shutdown was clean"), "{log}");

    // After kill -9 (the marker of the clean run before was removed at its start).
    let (mut server, _) = start_in(dir.path());
    wait_marker_removed(dir.path());
    server.0.kill().unwrap();
    let _ = server.0.wait();
    assert!(!dir.path().join(".clean-shutdown").exists());
    let (server, _) = start_in(dir.path());
    let (code, log) = stop(server);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("previous shutdown was not clean"), "{log}");
    assert!(!log.contains("previous shutdown was clean"), "{log}");
}

/// Copies a directory tree (the fixtures are small: a few dozen files).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A data directory written by Fjord 0.1.0 (before cluster mode) starts under this
/// release with everything in it: the topic, its config, its 30 records and the group's
/// committed offsets. The fixture was made with that release's `fjord server
/// --override offsets.topic.num.partitions=1`: `fjord topics --create --topic legacy
/// --partitions 3 --config retention.ms=86400000`, 30 keyed records from kcat, the group
/// `legacy-group` consuming them all with auto-commit, then SIGTERM. Started with
/// controller.quorum.voters, the same directory is refused rather than read as empty.
#[test]
fn a_data_directory_of_the_previous_release_starts_with_everything() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data-0.1.0-single-node");
    copy_tree(&fixture, &data);

    let (server, port) = start_in(&data);
    let bootstrap = format!("127.0.0.1:{port}");
    let described = fjord()
        .args([
            "topics",
            "--bootstrap-server",
            &bootstrap,
            "--describe",
            "--topic",
            "legacy",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(text.contains("PartitionCount: 3"), "{text}");
    assert!(text.contains("retention.ms=86400000"), "{text}");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "legacy-group")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    for p in 0..3 {
        wanted.add_partition("legacy", p);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(20))
        .unwrap();
    let offsets: Vec<Offset> = committed.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(
        offsets,
        vec![Offset::Offset(9), Offset::Offset(10), Offset::Offset(11)]
    );

    let mut all = TopicPartitionList::new();
    for p in 0..3 {
        all.add_partition_offset("legacy", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&all).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < 30 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            assert_eq!(value, key.replace("key", "value"));
            values.push(value);
        }
    }
    values.sort_by_key(|v| v.trim_start_matches("value").parse::<u32>().unwrap_or(0));
    let expected: Vec<String> = (1..=30).map(|i| format!("value{i}")).collect();
    assert_eq!(values, expected);
    drop(consumer);
    let (code, log) = stop(server);
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("stray"), "{log}");

    let refused = fjord()
        .args(["server", "--data-dir"])
        .arg(&data)
        .args([
            "--override",
            "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:19999",
            "--override",
            "controller.listener.names=CONTROLLER",
            "--override",
            "controller.quorum.voters=1@127.0.0.1:19999",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    // After the start line, one line says why.
    let why: Vec<&str> = err.lines().filter(|l| l.starts_with("fjord: ")).collect();
    assert_eq!(why.len(), 1, "{err}");
    assert!(why[0].contains("one-node"), "{err}");
}

/// A cluster member alone waits for its quorum; SIGTERM stops it there at once, as it
/// stops a running broker.
#[test]
fn sigterm_stops_a_node_waiting_for_its_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let (port, c1, c2) = (free_port(), free_port(), free_port());
    let child = fjord()
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .args([
            "--override",
            &format!("listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{c1}"),
            "--override",
            "controller.listener.names=CONTROLLER",
            "--override",
            &format!("controller.quorum.voters=1@127.0.0.1:{c1},2@127.0.0.1:{c2}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = Running(child);
    // Its controller listener is up, its client listener is not: no quorum yet.
    wait_for_port(c1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let started = Instant::now();
    let (code, log) = stop(server);
    assert_eq!(code, Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(5), "{log}");
    assert!(log.contains("stopped while starting"), "{log}");
}
