"""Turns a bench/compare results TSV into bench/RESULTS.md (medians and Fjord/Kafka
ratios per workload and client) and bench/results.png (throughput and latency)."""

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

WORKLOADS = {
    "a": "1 KiB, 1 partition, acks=1, unthrottled",
    "b": "1 KiB, 6 partitions, acks=all",
    "c": "100 B, 6 partitions, acks=1",
    "d": "20,000 rec/s of 1 KiB, latency",
    "e": "consume from the beginning",
    "f": "startup to first acknowledged produce",
    "g": "broker peak RSS / CPU per GiB written",
}
# (workload, metric, unit, higher is better)
ROWS = [
    ("a", "mbps", "MB/s", True),
    ("a", "rps", "records/s", True),
    ("b", "mbps", "MB/s", True),
    ("b", "p99", "p99 ms", False),
    ("c", "rps", "records/s", True),
    ("d", "p50", "p50 ms", False),
    ("d", "p99", "p99 ms", False),
    ("d", "p999", "p99.9 ms", False),
    ("e", "mbps", "MB/s", True),
    ("f", "startup_s", "seconds", False),
    ("g", "peak_rss_mb", "peak RSS MiB", False),
    ("g", "cpu_s_per_gib", "CPU s per GiB", False),
]


def main(path):
    values = defaultdict(list)
    limits = {}
    runs = set()
    for row in csv.DictReader(open(path), delimiter="\t"):
        v = float(row["value"])
        if row["system"] == "machine":
            limits[row["metric"]] = v
            continue
        runs.add(row["run"])
        values[(row["system"], row["client"], row["workload"], row["metric"])].append(v)

    med = {k: statistics.median(v) for k, v in values.items()}
    lines = [
        "# Fjord vs Apache Kafka",
        "",
        f"Medians of {len(runs)} alternating runs of `bench/compare` (source: `{Path(path).name}`).",
        f"Machine: {int(limits.get('cores', 0))} cores; loopback TCP "
        f"{limits.get('loopback_MBps', float('nan')):.0f} MB/s (iperf3); sequential disk write "
        f"{limits.get('disk_MBps', float('nan')):.0f} MB/s (dd, direct I/O).",
        "",
        "Durability is not the same by default, and the table says so: Apache Kafka fsyncs",
        "nothing (it relies on replication and the page cache); Fjord fsyncs every acks=all",
        "write before acknowledging it (workload b), and acks=1 writes reach the page cache only.",
        "",
        "| workload | metric | client | Kafka | Fjord | Fjord/Kafka |",
        "|---|---|---|---|---|---|",
    ]
    for w, metric, unit, _ in ROWS:
        clients = ["-"] if w in "fg" else ["java", "fjord"]
        for client in clients:
            k = med.get(("kafka", client, w, metric))
            f = med.get(("fjord", client, w, metric))
            if k is None and f is None:
                continue
            ratio = f"{f / k:.2f}" if k and f is not None else "n/a"
            cname = {"java": "Java perf tools", "fjord": "fjord perf", "-": ""}[client]
            fmt = lambda x: "n/a" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.2f}")
            lines.append(
                f"| ({w}) {WORKLOADS[w]} | {unit} | {cname} | {fmt(k)} | {fmt(f)} | {ratio} |"
            )
    if limits.get("disk_MBps"):
        lines += ["", "Throughput as a fraction of the disk's sequential write limit:", ""]
        for system in ("kafka", "fjord"):
            for client in ("java", "fjord"):
                v = med.get((system, client, "a", "mbps"))
                if v is not None:
                    lines.append(
                        f"- {system}, (a) with {client} client: {v / limits['disk_MBps']:.0%}"
                    )
    lines += [
        "",
        "![throughput and latency](results.png)",
        "",
        "## How it was measured",
        "",
        f"`bash bench/compare --runs {len(runs)}` on an otherwise idle machine. Each run starts",
        "each broker fresh (Kafka 4.1.1 in KRaft mode from Maven Central jars, `-Xmx1g`; Fjord",
        "`target/release/fjord server`), Kafka first in odd runs and Fjord first in even runs, and",
        "creates one topic per workload and client with `kafka-topics` (`TopicCommand`). Per client",
        "(`java` = `org.apache.kafka.tools.ProducerPerformance`/`ConsumerPerformance`,",
        "`fjord` = `fjord perf produce|consume`, librdkafka):",
        "",
        "- (a) `--num-records 2000000 --record-size 1024 --throughput -1`, 1 partition,",
        "  `acks=1 linger.ms=5 batch.size=262144`",
        "- (b) `--num-records 500000 --record-size 1024 --throughput -1`, 6 partitions,",
        "  `acks=all linger.ms=5 batch.size=262144`",
        "- (c) `--num-records 5000000 --record-size 100 --throughput -1`, 6 partitions,",
        "  `acks=1 linger.ms=5 batch.size=262144`",
        "- (d) `--num-records 300000 --record-size 1024 --throughput 20000`, 1 partition,",
        "  `acks=1 linger.ms=0` (no client batching delay, so the broker sets the latency);",
        "  latency is the producer's send-to-acknowledgement time",
        "- (e) consume the 2,000,000 records of (a) from the beginning (`--messages 2000000`; the",
        "  Java tool joins a consumer group, `fjord perf consume` assigns partitions directly)",
        "- (f) from process start until `fjord perf produce` gets one acks=all record acknowledged",
        "- (g) `VmHWM` of the broker process, and its user+system CPU seconds over the run divided",
        "  by the GiB the run wrote",
        "",
        "The client runs on the same two cores as the broker, so a CPU-hungry client (the JVM",
        "perf tools) caps what either broker can show; `fjord perf` leaves more CPU to the broker.",
        "",
    ]
    out = Path(__file__).parent / "RESULTS.md"
    # The sections after the generated part (cluster, quorum, compaction, transactions)
    # come from other scripts and are written by hand: they are kept as they are.
    kept = ""
    if out.exists():
        old = out.read_text()
        at = old.find(HAND_WRITTEN)
        if at >= 0:
            kept = "\n" + old[at:]
    out.write_text("\n".join(lines) + "\n" + kept)
    chart(med, Path(__file__).parent / "results.png")
    print(f"wrote {out}")


# The first hand-written section of RESULTS.md; everything from it on is kept.
HAND_WRITTEN = "## Cluster: 3 nodes"


def chart(med, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [("a", "mbps"), ("b", "mbps"), ("e", "mbps")]
    width = 0.2
    for i, (system, client) in enumerate(
        [("kafka", "java"), ("kafka", "fjord"), ("fjord", "java"), ("fjord", "fjord")]
    ):
        xs = [j + (i - 1.5) * width for j in range(len(groups))]
        ys = [med.get((system, client, w, m), 0) for w, m in groups]
        left.bar(xs, ys, width, label=f"{system.capitalize()} ({client} client)")
    left.set_xticks(range(len(groups)))
    left.set_xticklabels(["(a) acks=1", "(b) acks=all", "(e) consume"])
    left.set_ylabel("MB/s (higher is better)")
    left.set_title("Throughput")
    left.legend(fontsize=8)

    pcts = ["p50", "p99", "p999"]
    for system, client, style in [
        ("kafka", "java", "o-"),
        ("kafka", "fjord", "o--"),
        ("fjord", "java", "s-"),
        ("fjord", "fjord", "s--"),
    ]:
        ys = [med.get((system, client, "d", p)) for p in pcts]
        if all(y is not None for y in ys):
            right.plot(["p50", "p99", "p99.9"], ys, style, label=f"{system.capitalize()} ({client} client)")
    right.set_ylabel("ms (lower is better)")
    right.set_yscale("log")
    right.set_title("(d) latency at 20,000 records/s, 1 KiB")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1])
