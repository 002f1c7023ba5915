//! End-to-end tests of the Fjord tools: each test starts `fjord server` on a free local port
//! and drives `fjord topics`, `console-producer`, `console-consumer`, `consumer-groups` and
//! `configs` as a user would — arguments, stdin, stdout, stderr and exit codes.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const FJORD: &str = env!("CARGO_BIN_EXE_fjord");

/// A running `fjord server`, killed when the test ends, also when it panics.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(FJORD)
            .args(["server", "--listen", &addr, "--data-dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fjord server");
        let server = Server {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&server.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "fjord server did not start listening"
            );
            thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Runs a tool against this server with `--bootstrap-server` filled in.
    fn tool(&self, tool: &str, args: &[&str], stdin: &str) -> Output {
        let mut full = vec![tool, "--bootstrap-server", self.addr.as_str()];
        full.extend_from_slice(args);
        run(&full, stdin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Runs `fjord ARGS` with `stdin`, killing it if it is still running after 60 s.
fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(FJORD)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fjord");
    let mut input = child.stdin.take().expect("stdin pipe");
    let text = stdin.to_string();
    let writer = thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = wait_bounded(child, Duration::from_secs(60), args);
    let _ = writer.join();
    out
}

fn wait_bounded(mut child: Child, limit: Duration, what: &[&str]) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collect output"),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fjord {what:?} did not finish within {limit:?}");
            }
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// A failure: the given exit code and exactly one line on stderr.
fn assert_one_line_error(o: &Output, code: i32, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: exit code; stderr: {err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "{what}: expected one stderr line, got: {err}"
    );
    err.trim_end().to_string()
}

/// The Java client's murmur2 partitioner, to check where keyed records land.
fn java_partition(key: &[u8], partitions: u32) -> u32 {
    let m: u32 = 0x5bd1_e995;
    let len = key.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> 24;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    (h & 0x7fff_ffff) % partitions
}

/// Whether this broker answers the consumer-group APIs; group tests are skipped (and say so)
/// on a broker without them.
fn groups_supported(server: &Server) -> bool {
    let o = server.tool("consumer-groups", &["--list"], "");
    if !o.status.success() {
        eprintln!(
            "SKIPPED: the broker does not answer consumer-group requests: {}",
            stderr(&o)
        );
        return false;
    }
    true
}

/// Parses `consumer-groups --describe` rows into (partition, current, log-end, lag).
fn group_rows(out: &str, topic: &str) -> Vec<(i32, String, i64, String)> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() >= 6 && c[1] == topic)
        .map(|c| {
            (
                c[2].parse().expect("partition number"),
                c[3].to_string(),
                c[4].parse().expect("log end offset"),
                c[5].to_string(),
            )
        })
        .collect()
}

#[test]
fn walkthrough_create_list_describe_produce_consume_groups_delete() {
    let s = Server::start();

    let o = s.tool(
        "topics",
        &[
            "--create",
            "--topic",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
        ],
        "",
    );
    assert_ok(&o, "create");
    assert_eq!(stdout(&o), "Created topic orders.\n");

    let o = s.tool("topics", &["--list"], "");
    assert_ok(&o, "list");
    assert!(
        stdout(&o).lines().any(|l| l == "orders"),
        "list: {}",
        stdout(&o)
    );

    let o = s.tool("topics", &["--describe", "--topic", "orders"], "");
    assert_ok(&o, "describe");
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "describe: {text}");
    assert!(
        lines[0].starts_with("Topic: orders\tTopicId: "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: "),
        "{}",
        lines[0]
    );
    for (i, line) in lines[1..].iter().enumerate() {
        let want = format!("\tTopic: orders\tPartition: {i}\tLeader: 1\tReplicas: 1\tIsr: 1");
        assert!(line.starts_with(&want), "partition line {i}: {line:?}");
    }

    let records = [
        ("alice", "1"),
        ("bob", "2"),
        ("carol", "3"),
        ("alice", "4"),
        ("dave", "5"),
        ("bob", "6"),
    ];
    let input: String = records.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let o = s.tool(
        "console-producer",
        &[
            "--topic",
            "orders",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
        &input,
    );
    assert_ok(&o, "produce");
    assert_eq!(stdout(&o), "", "no prompt when stdin is not a terminal");

    let o = s.tool(
        "console-consumer",
        &[
            "--topic",
            "orders",
            "--from-beginning",
            "--max-messages",
            "6",
            "--property",
            "print.key=true",
            "--property",
            "print.partition=true",
        ],
        "",
    );
    assert_ok(&o, "consume");
    assert!(
        stderr(&o).contains("Processed a total of 6 messages"),
        "{}",
        stderr(&o)
    );
    let mut got: Vec<(u32, String, String)> = stdout(&o)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "line {l:?}");
            let p = f[0].strip_prefix("Partition:").expect("partition field");
            (
                p.parse().expect("partition"),
                f[1].to_string(),
                f[2].to_string(),
            )
        })
        .collect();
    // Records arrive in order within a partition; partitions may interleave.
    got.sort_by_key(|(p, _, _)| *p);
    let mut want: Vec<(u32, String, String)> = records
        .iter()
        .map(|(k, v)| {
            (
                java_partition(k.as_bytes(), 3),
                k.to_string(),
                v.to_string(),
            )
        })
        .collect();
    want.sort_by_key(|(p, _, _)| *p);
    assert_eq!(got, want, "keys, values, order and murmur2 partitions");

    if groups_supported(&s) {
        let o = s.tool(
            "console-consumer",
            &[
                "--topic",
                "orders",
                "--group",
                "billing",
                "--from-beginning",
                "--max-messages",
                "6",
            ],
            "",
        );
        assert_ok(&o, "group consume");
        let mut values: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
        values.sort();
        assert_eq!(values, ["1", "2", "3", "4", "5", "6"]);

        let o = s.tool(
            "console-producer",
            &["--topic", "orders"],
            "late-1\nlate-2\n",
        );
        assert_ok(&o, "produce more");

        let o = s.tool("consumer-groups", &["--describe", "--group", "billing"], "");
        assert_ok(&o, "describe group");
        let text = stdout(&o);
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == [
                        "GROUP",
                        "TOPIC",
                        "PARTITION",
                        "CURRENT-OFFSET",
                        "LOG-END-OFFSET",
                        "LAG",
                        "CONSUMER-ID",
                        "HOST",
                        "CLIENT-ID"
                    ]),
            "{text}"
        );
        let rows = group_rows(&text, "orders");
        let lag: i64 = rows.iter().map(|r| r.3.parse::<i64>().expect("lag")).sum();
        let end: i64 = rows.iter().map(|r| r.2).sum();
        assert_eq!(end, 8, "{text}");
        assert_eq!(
            lag, 2,
            "two records produced after the group's commit: {text}"
        );

        let o = s.tool(
            "consumer-groups",
            &[
                "--reset-offsets",
                "--group",
                "billing",
                "--topic",
                "orders",
                "--to-earliest",
                "--dry-run",
            ],
            "",
        );
        assert_ok(&o, "reset dry run");
        let o = s.tool("consumer-groups", &["--describe", "--group", "billing"], "");
        let lag: i64 = group_rows(&stdout(&o), "orders")
            .iter()
            .map(|r| r.3.parse::<i64>().unwrap_or(0))
            .sum();
        assert_eq!(lag, 2, "a dry run commits nothing");

        let o = s.tool(
            "consumer-groups",
            &[
                "--reset-offsets",
                "--group",
                "billing",
                "--topic",
                "orders",
                "--to-earliest",
                "--execute",
            ],
            "",
        );
        assert_ok(&o, "reset execute");
        assert!(stdout(&o).contains("NEW-OFFSET"), "{}", stdout(&o));
        let o = s.tool("consumer-groups", &["--describe", "--group", "billing"], "");
        let rows = group_rows(&stdout(&o), "orders");
        assert!(
            rows.iter().all(|r| r.1 == "0"),
            "all offsets back at 0: {}",
            stdout(&o)
        );
        let lag: i64 = rows.iter().map(|r| r.3.parse::<i64>().expect("lag")).sum();
        assert_eq!(lag, 8);

        let o = s.tool(
            "console-consumer",
            &[
                "--topic",
                "orders",
                "--group",
                "billing",
                "--max-messages",
                "8",
            ],
            "",
        );
        assert_ok(&o, "consume after reset");
        assert_eq!(
            stdout(&o).lines().count(),
            8,
            "the group re-reads everything"
        );

        let o = s.tool("consumer-groups", &["--delete", "--group", "billing"], "");
        assert_ok(&o, "delete group");
        assert_eq!(
            stdout(&o),
            "Deletion of requested consumer groups ('billing') was successful.\n"
        );
        let o = s.tool("consumer-groups", &["--list"], "");
        assert!(
            !stdout(&o).lines().any(|l| l == "billing"),
            "{}",
            stdout(&o)
        );
    }

    let o = s.tool("topics", &["--delete", "--topic", "orders"], "");
    assert_ok(&o, "delete");
    let o = s.tool("topics", &["--list"], "");
    assert!(!stdout(&o).lines().any(|l| l == "orders"), "{}", stdout(&o));
}

#[test]
fn wrong_flags_get_one_line_and_exit_2() {
    for tool in [
        "topics",
        "console-producer",
        "console-consumer",
        "configs",
        "consumer-groups",
    ] {
        let o = run(
            &[tool, "--bootstrap-server", "127.0.0.1:9", "--no-such-flag"],
            "",
        );
        let line = assert_one_line_error(&o, 2, tool);
        assert!(line.contains("--no-such-flag"), "{tool}: {line}");
        assert!(
            line.contains(&format!("fjord {tool} --help")),
            "{tool}: {line}"
        );
        assert!(o.stdout.is_empty(), "{tool}: nothing on stdout");
    }
    let o = run(&["topics", "--bootstrap-server", "127.0.0.1:9"], "");
    let line = assert_one_line_error(&o, 2, "no action");
    assert!(line.contains("--create"), "{line}");
    let o = run(
        &[
            "topics",
            "--bootstrap-server",
            "127.0.0.1:9",
            "--create",
            "--list",
        ],
        "",
    );
    assert_one_line_error(&o, 2, "two actions");
    let o = run(&["topics", "--list"], "");
    let line = assert_one_line_error(&o, 2, "missing bootstrap");
    assert!(line.contains("--bootstrap-server"), "{line}");
    let o = run(
        &["topics", "--bootstrap-server", "127.0.0.1:9", "--create"],
        "",
    );
    let line = assert_one_line_error(&o, 2, "create without topic");
    assert!(line.contains("--topic"), "{line}");
}

#[test]
fn tls_and_scram_say_which_listeners_the_librdkafka_tools_reach() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, props) in [
        ("ssl", "security.protocol=SSL\n"),
        (
            "scram",
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n\
             sasl.username=a\nsasl.password=b\n",
        ),
    ] {
        let path = dir.path().join(format!("{name}.properties"));
        std::fs::write(&path, props).expect("write properties");
        let config = path.to_str().expect("utf-8 path");
        for args in [
            &["topics", "--list"][..],
            &["consumer-groups", "--list"][..],
        ] {
            let mut full = vec![args[0], "--bootstrap-server", "127.0.0.1:9"];
            full.extend(["--command-config", config]);
            full.extend(&args[1..]);
            let o = run(&full, "");
            let line = assert_one_line_error(&o, 1, name);
            assert!(
                line.contains("reaches PLAINTEXT listeners"),
                "{name}: {line}"
            );
            assert!(line.contains("fjord acls"), "{name}: {line}");
        }
    }
}

#[test]
fn help_is_short_and_succeeds() {
    for tool in [
        "topics",
        "console-producer",
        "console-consumer",
        "configs",
        "consumer-groups",
    ] {
        let o = run(&[tool, "--help"], "");
        assert_ok(&o, tool);
        let text = stdout(&o);
        assert!(text.contains("--bootstrap-server"), "{tool}: {text}");
        assert!(
            text.lines().count() < 60,
            "{tool}: help is {} lines",
            text.lines().count()
        );
    }
}

#[test]
fn zookeeper_flag_points_to_bootstrap_server() {
    for args in [
        vec!["topics", "--zookeeper", "localhost:2181", "--list"],
        vec!["consumer-groups", "--list", "--zookeeper=localhost:2181"],
    ] {
        let o = run(&args, "");
        let line = assert_one_line_error(&o, 2, "zookeeper");
        assert_eq!(
            line,
            "fjord: Fjord has no ZooKeeper: use --bootstrap-server HOST:9092"
        );
    }
}

#[test]
fn unreachable_broker_fails_fast_with_one_line() {
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["topics", "--list"],
        vec!["topics", "--create", "--topic", "t"],
        vec!["console-producer", "--topic", "t"],
        vec!["console-consumer", "--topic", "t"],
        vec!["consumer-groups", "--list"],
        vec!["configs", "--describe", "--topic", "t"],
    ];
    for case in cases {
        let mut args = case.clone();
        args.extend([
            "--bootstrap-server",
            addr.as_str(),
            "--command-timeout-ms",
            "2000",
        ]);
        let started = Instant::now();
        let o = run(&args, "x\n");
        let took = started.elapsed();
        let line = assert_one_line_error(&o, 1, &case.join(" "));
        assert!(line.contains("cannot reach a broker"), "{case:?}: {line}");
        assert!(took < Duration::from_secs(8), "{case:?} took {took:?}");
    }
    // The default timeout is bounded too.
    let started = Instant::now();
    let o = run(
        &["topics", "--list", "--bootstrap-server", addr.as_str()],
        "",
    );
    assert_one_line_error(&o, 1, "default timeout");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn topic_errors_and_their_quiet_variants() {
    let s = Server::start();
    let o = s.tool(
        "topics",
        &["--create", "--topic", "r2", "--replication-factor", "2"],
        "",
    );
    let line = assert_one_line_error(&o, 1, "replication factor 2");
    assert!(
        line.ends_with("Replication factor: 2 larger than available brokers: 1."),
        "{line}"
    );

    let o = s.tool("topics", &["--create", "--topic", "dup"], "");
    assert_ok(&o, "create");
    let o = s.tool("topics", &["--create", "--topic", "dup"], "");
    let line = assert_one_line_error(&o, 1, "duplicate");
    assert!(line.contains("already exists"), "{line}");
    let o = s.tool(
        "topics",
        &["--create", "--topic", "dup", "--if-not-exists"],
        "",
    );
    assert_ok(&o, "if-not-exists");
    assert_eq!(stdout(&o), "");

    let o = s.tool("topics", &["--delete", "--topic", "missing"], "");
    let line = assert_one_line_error(&o, 1, "delete missing");
    assert_eq!(line, "fjord: Topic 'missing' does not exist as expected");
    let o = s.tool(
        "topics",
        &["--delete", "--topic", "missing", "--if-exists"],
        "",
    );
    assert_ok(&o, "if-exists");
    assert_eq!(stdout(&o), "");
    let o = s.tool("topics", &["--describe", "--topic", "missing"], "");
    assert_one_line_error(&o, 1, "describe missing");

    let o = s.tool(
        "topics",
        &["--create", "--topic", "p0", "--partitions", "0"],
        "",
    );
    assert_one_line_error(&o, 2, "zero partitions");
}

#[test]
fn alter_adds_partitions_and_configs_round_trip() {
    let s = Server::start();
    assert_ok(
        &s.tool(
            "topics",
            &[
                "--create",
                "--topic",
                "grow",
                "--partitions",
                "1",
                "--config",
                "retention.ms=60000",
            ],
            "",
        ),
        "create",
    );
    assert_ok(
        &s.tool(
            "topics",
            &["--alter", "--topic", "grow", "--partitions", "4"],
            "",
        ),
        "alter",
    );
    let o = s.tool("topics", &["--describe", "--topic", "grow"], "");
    let text = stdout(&o);
    assert!(text.contains("PartitionCount: 4"), "{text}");
    assert!(text.contains("Configs: retention.ms=60000"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("\tTopic: grow\tPartition: "))
            .count(),
        4
    );
    assert_eq!(
        s.tool(
            "topics",
            &[
                "--describe",
                "--topic",
                "grow",
                "--under-replicated-partitions"
            ],
            ""
        )
        .stdout,
        b"",
        "a one-broker topic has no under-replicated partitions"
    );

    let o = s.tool(
        "configs",
        &[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            "grow",
            "--add-config",
            "retention.ms=5000,cleanup.policy=[compact,delete]",
        ],
        "",
    );
    assert_ok(&o, "add config");
    assert_eq!(stdout(&o), "Completed updating config for topic grow.\n");
    let o = s.tool("configs", &["--describe", "--topic", "grow"], "");
    let text = stdout(&o);
    assert!(
        text.starts_with("Dynamic configs for topic grow are:\n"),
        "{text}"
    );
    assert!(text.contains("  retention.ms=5000 "), "{text}");
    assert!(text.contains("  cleanup.policy=compact,delete "), "{text}");

    assert_ok(
        &s.tool(
            "configs",
            &[
                "--alter",
                "--topic",
                "grow",
                "--delete-config",
                "cleanup.policy",
            ],
            "",
        ),
        "delete config",
    );
    let text = stdout(&s.tool("configs", &["--describe", "--topic", "grow"], ""));
    assert!(!text.contains("cleanup.policy"), "{text}");
    assert!(text.contains("retention.ms=5000"), "{text}");

    let o = s.tool(
        "configs",
        &[
            "--alter",
            "--topic",
            "grow",
            "--add-config",
            "no.such.config=1",
        ],
        "",
    );
    let line = assert_one_line_error(&o, 1, "unknown config");
    assert!(line.contains("no.such.config"), "{line}");
}

#[test]
fn producer_reports_failures_and_waits_for_delivery() {
    let s = Server::start();
    assert_ok(
        &s.tool(
            "topics",
            &[
                "--create",
                "--topic",
                "small",
                "--config",
                "max.message.bytes=200",
            ],
            "",
        ),
        "create",
    );
    let big = "x".repeat(2_000);
    let o = s.tool(
        "console-producer",
        &["--topic", "small"],
        &format!("{big}\n"),
    );
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("line 1 was not delivered"),
        "{}",
        stderr(&o)
    );

    let o = s.tool(
        "console-producer",
        &["--topic", "small", "--property", "parse.key=true"],
        "no separator here\n",
    );
    let line = assert_one_line_error(&o, 1, "missing separator");
    assert!(
        line.contains("No key separator found on line number 1"),
        "{line}"
    );

    assert_ok(
        &s.tool("topics", &["--create", "--topic", "bulk"], ""),
        "create bulk",
    );
    // Everything acknowledged before exit is readable right after it.
    let lines: String = (0..200).map(|i| format!("m{i}\n")).collect();
    assert_ok(
        &s.tool(
            "console-producer",
            &[
                "--topic",
                "bulk",
                "--producer-property",
                "acks=all",
                "--compression-codec",
                "lz4",
            ],
            &lines,
        ),
        "produce 200",
    );
    let o = s.tool(
        "console-consumer",
        &[
            "--topic",
            "bulk",
            "--from-beginning",
            "--max-messages",
            "200",
            "--timeout-ms",
            "5000",
        ],
        "",
    );
    let got: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    let want: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn consumer_partition_offset_and_formatting() {
    let s = Server::start();
    assert_ok(
        &s.tool(
            "topics",
            &["--create", "--topic", "fmt", "--partitions", "2"],
            "",
        ),
        "create",
    );
    let input: String = (0..5).map(|i| format!("k{i}|v{i}\n")).collect();
    assert_ok(
        &s.tool(
            "console-producer",
            &[
                "--topic",
                "fmt",
                "--property",
                "parse.key=true",
                "--property",
                "key.separator=|",
            ],
            &input,
        ),
        "produce",
    );
    let p = java_partition(b"k0", 2);
    let in_p: Vec<usize> = (0..5)
        .filter(|i| java_partition(format!("k{i}").as_bytes(), 2) == p)
        .collect();
    let o = s.tool(
        "console-consumer",
        &[
            "--topic",
            "fmt",
            "--partition",
            &p.to_string(),
            "--offset",
            "1",
            "--timeout-ms",
            "3000",
            "--property",
            "print.offset=true",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=,",
        ],
        "",
    );
    assert_ok(&o, "consume partition");
    let want: Vec<String> = in_p
        .iter()
        .enumerate()
        .skip(1)
        .map(|(off, i)| format!("Offset:{off},k{i},v{i}"))
        .collect();
    assert_eq!(
        stdout(&o).lines().map(str::to_string).collect::<Vec<_>>(),
        want
    );
    assert!(stderr(&o).contains(&format!("Processed a total of {} messages", want.len())));

    let o = s.tool(
        "console-consumer",
        &["--topic", "nope", "--timeout-ms", "1000"],
        "",
    );
    assert_one_line_error(&o, 1, "missing topic");
    let o = s.tool("console-consumer", &["--topic", "fmt", "--offset", "1"], "");
    assert_one_line_error(&o, 2, "offset without partition");
}

#[test]
fn consumer_without_group_commits_nothing() {
    let s = Server::start();
    if !groups_supported(&s) {
        return;
    }
    assert_ok(
        &s.tool("topics", &["--create", "--topic", "quiet"], ""),
        "create",
    );
    assert_ok(
        &s.tool("console-producer", &["--topic", "quiet"], "a\nb\n"),
        "produce",
    );
    let before = stdout(&s.tool("consumer-groups", &["--list"], ""));
    let o = s.tool(
        "console-consumer",
        &[
            "--topic",
            "quiet",
            "--from-beginning",
            "--max-messages",
            "2",
        ],
        "",
    );
    assert_eq!(stdout(&o), "a\nb\n");
    let after = stdout(&s.tool("consumer-groups", &["--list"], ""));
    assert_eq!(
        before, after,
        "no group appears for a consumer without --group"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_commits_and_reports_the_count() {
    let s = Server::start();
    if !groups_supported(&s) {
        return;
    }
    assert_ok(
        &s.tool("topics", &["--create", "--topic", "sig"], ""),
        "create",
    );
    assert_ok(
        &s.tool("console-producer", &["--topic", "sig"], "one\ntwo\nthree\n"),
        "produce",
    );
    let mut child = Command::new(FJORD)
        .args([
            "console-consumer",
            "--bootstrap-server",
            &s.addr,
            "--topic",
            "sig",
            "--group",
            "watchers",
            "--from-beginning",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consumer");
    let mut out = child.stdout.take().expect("stdout pipe");
    // Read until all three records have been printed, then ask the consumer to stop.
    let reader = thread::spawn(move || {
        use std::io::Read;
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("three\n") {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        (seen, out)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "consumer printed nothing");
        thread::sleep(Duration::from_millis(50));
    }
    let (seen, _out) = reader.join().expect("reader thread");
    assert_eq!(String::from_utf8_lossy(&seen), "one\ntwo\nthree\n");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let o = wait_bounded(child, Duration::from_secs(20), &["console-consumer"]);
    assert_ok(&o, "consumer after SIGTERM");
    assert!(
        stderr(&o).contains("Processed a total of 3 messages"),
        "{}",
        stderr(&o)
    );

    let text = stdout(&s.tool(
        "consumer-groups",
        &["--describe", "--group", "watchers"],
        "",
    ));
    let rows = group_rows(&text, "sig");
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2, rows[0].3.as_str()),
        ("3", 3, "0"),
        "{text}"
    );
}

#[test]
fn consumer_group_errors() {
    let s = Server::start();
    if !groups_supported(&s) {
        return;
    }
    let o = s.tool("consumer-groups", &["--describe", "--group", "ghost"], "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim_end(),
        "Error: Consumer group 'ghost' does not exist."
    );
    let o = s.tool(
        "consumer-groups",
        &["--reset-offsets", "--group", "g", "--topic", "t"],
        "",
    );
    assert_one_line_error(&o, 2, "reset without target");
    let o = s.tool(
        "consumer-groups",
        &[
            "--reset-offsets",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--dry-run",
            "--execute",
        ],
        "",
    );
    assert_one_line_error(&o, 2, "dry-run with execute");
    let o = s.tool("consumer-groups", &["--delete", "--group", "ghost"], "");
    let line = assert_one_line_error(&o, 1, "delete ghost");
    assert!(line.contains("'ghost'"), "{line}");
}

/// Runs `fjord ARGS` with standard output a pipe whose reader is already closed, as after
/// `| head -1` has read its line, and returns its exit status and stderr.
fn run_into_closed_pipe(args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe() fills the two descriptors, which are then owned exactly once below.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created by pipe() and nothing else owns them.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    let child = Command::new(FJORD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fjord");
    let out = wait_bounded(child, Duration::from_secs(60), args);
    (out.status, stderr(&out))
}

#[test]
fn tools_exit_quietly_when_stdout_is_closed() {
    let s = Server::start();
    for topic in ["pipe-a", "pipe-b"] {
        let o = s.tool("topics", &["--create", "--topic", topic], "");
        assert_ok(&o, "create");
    }
    let o = s.tool("console-producer", &["--topic", "pipe-a"], "one\ntwo\n");
    assert_ok(&o, "produce");

    let addr = s.addr.as_str();
    let cases: Vec<Vec<&str>> = vec![
        vec!["topics", "--bootstrap-server", addr, "--list"],
        vec!["topics", "--bootstrap-server", addr, "--describe"],
        vec![
            "topics",
            "--bootstrap-server",
            addr,
            "--create",
            "--topic",
            "pipe-c",
        ],
        vec![
            "configs",
            "--bootstrap-server",
            addr,
            "--describe",
            "--topic",
            "pipe-a",
        ],
        vec![
            "console-consumer",
            "--bootstrap-server",
            addr,
            "--topic",
            "pipe-a",
            "--from-beginning",
            "--max-messages",
            "2",
        ],
    ];
    for args in cases {
        let (status, err) = run_into_closed_pipe(&args);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn configs_alters_and_describes_brokers_and_groups() {
    let s = Server::start();
    // A dynamic broker config, as kafka-configs.sh --entity-type brokers sets it.
    let o = s.tool(
        "configs",
        &[
            "--alter",
            "--entity-type",
            "brokers",
            "--entity-name",
            "1",
            "--add-config",
            "log.retention.ms=3600000",
        ],
        "",
    );
    assert_ok(&o, "alter broker");
    assert_eq!(stdout(&o), "Completed updating config for broker 1.\n");
    let text = stdout(&s.tool("configs", &["--describe", "--broker", "1"], ""));
    assert!(
        text.contains(
            "  log.retention.ms=3600000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:"
        ),
        "{text}"
    );
    // A static setting is refused with Kafka's message.
    let o = s.tool(
        "configs",
        &[
            "--alter",
            "--broker",
            "1",
            "--add-config",
            "log.dirs=/elsewhere",
        ],
        "",
    );
    let line = assert_one_line_error(&o, 1, "static broker config");
    assert!(
        line.contains("Cannot update these configs dynamically: Set(log.dirs)"),
        "{line}"
    );
    // A group config, described with its source.
    let o = s.tool(
        "configs",
        &[
            "--alter",
            "--entity-type",
            "groups",
            "--entity-name",
            "g1",
            "--add-config",
            "consumer.session.timeout.ms=50000",
        ],
        "",
    );
    assert_ok(&o, "alter group");
    assert_eq!(stdout(&o), "Completed updating config for group g1.\n");
    let text = stdout(&s.tool("configs", &["--describe", "--group", "g1"], ""));
    assert!(
        text.contains(
            "  consumer.session.timeout.ms=50000 sensitive=false synonyms={GROUP_CONFIG:"
        ),
        "{text}"
    );
}

/// `metadata-quorum describe` on one node: it is the leader of its quorum of one, and
/// the two views are shaped like kafka-metadata-quorum.sh's.
#[test]
fn metadata_quorum_describes_a_single_node() {
    let server = Server::start();
    let status = run(
        &[
            "metadata-quorum",
            "--bootstrap-server",
            &server.addr,
            "describe",
            "--status",
        ],
        "",
    );
    assert_ok(&status, "describe --status");
    let out = stdout(&status);
    for line in [
        "LeaderId:               1",
        "CurrentVoters:",
        "MaxFollowerLag:         0",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    let cluster = out
        .lines()
        .find_map(|l| l.strip_prefix("ClusterId:"))
        .map(str::trim)
        .unwrap_or_default();
    assert!(cluster.len() >= 20, "{out}");
    let replication = run(
        &[
            "metadata-quorum",
            "--bootstrap-server",
            &server.addr,
            "describe",
            "--replication",
        ],
        "",
    );
    assert_ok(&replication, "describe --replication");
    let out = stdout(&replication);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with("NodeId"), "{out}");
    assert!(
        rows[1].starts_with('1') && rows[1].ends_with("Leader"),
        "{out}"
    );

    let neither = run(
        &[
            "metadata-quorum",
            "--bootstrap-server",
            &server.addr,
            "describe",
        ],
        "",
    );
    assert_one_line_error(&neither, 2, "describe without a view");
}

/// `features` describes, lowers and raises `transaction.version` as kafka-features.sh does;
/// a downgrade asked as an upgrade, an unknown feature and a level above the supported
/// range are refused with one line each and exit 1, changing nothing.
#[test]
fn features_describe_downgrade_and_upgrade_transaction_version() {
    let s = Server::start();
    let describe = |want: i16| {
        let o = s.tool("features", &["describe"], "");
        assert_ok(&o, "describe");
        let out = stdout(&o);
        let line = out
            .lines()
            .find(|l| l.starts_with("Feature: transaction.version\t"))
            .unwrap_or_else(|| panic!("no transaction.version in:\n{out}"));
        assert!(
            line.contains("SupportedMinVersion: 0\tSupportedMaxVersion: 2\t"),
            "{line}"
        );
        assert!(
            line.contains(&format!("\tFinalizedVersionLevel: {want}\t")),
            "{line}"
        );
    };
    // A new cluster starts at version 2.
    describe(2);
    for (args, what) in [
        (
            vec!["upgrade", "--feature", "transaction.version=1"],
            "upgrade to a lower level",
        ),
        (
            vec!["upgrade", "--feature", "transaction.version=3"],
            "unsupported level",
        ),
        (
            vec!["upgrade", "--feature", "no.such.feature=1"],
            "unknown feature",
        ),
    ] {
        let o = s.tool("features", &args, "");
        let err = assert_one_line_error(&o, 1, what);
        assert!(err.starts_with("Could not upgrade "), "{what}: {err}");
    }
    describe(2);
    let o = s.tool(
        "features",
        &[
            "downgrade",
            "--feature",
            "transaction.version=1",
            "--dry-run",
        ],
        "",
    );
    assert_ok(&o, "dry run");
    assert_eq!(stdout(&o), "transaction.version can be downgraded to 1.\n");
    describe(2);
    let o = s.tool(
        "features",
        &["downgrade", "--feature", "transaction.version=1"],
        "",
    );
    assert_ok(&o, "downgrade");
    assert_eq!(stdout(&o), "transaction.version was downgraded to 1.\n");
    describe(1);
    let o = s.tool(
        "features",
        &["disable", "--feature", "transaction.version"],
        "",
    );
    assert_eq!(stdout(&o), "transaction.version was disabled.\n");
    describe(0);
    let o = s.tool(
        "features",
        &["upgrade", "--feature", "transaction.version=2"],
        "",
    );
    assert_eq!(stdout(&o), "transaction.version was upgraded to 2.\n");
    describe(2);
}
