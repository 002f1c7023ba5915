"""Transactional produce throughput, Fjord against Apache Kafka on this machine.

One confluent-kafka (librdkafka) transactional producer writes --transactions
transactions of --per-txn records of --size bytes, round-robin over 6 partitions, each
transaction committed before the next begins (the way a consume-transform-produce loop
commits). Reported: transactions/s, records/s and MB/s over the whole run, and the
median and p99 time of commit_transaction(). Then the same number of records with an
idempotent, non-transactional producer (acks=all) as the baseline on the same broker,
and a read_committed consumer reading everything back (records/s).

    python3 bench/transactions.py [--fjord target/release/fjord] [--kafka] [--runs 3]

Fjord is started by the script on a free 127.0.0.1 port with a temporary data directory
(default flush policy: every acknowledged write is fsynced); --kafka also runs Apache
Kafka 4.1 from bench/kafka/start.sh (KRaft, one node, no fsync), one after the other,
never both at once. With --runs N each figure is the median of N runs, with min and max.
Needs confluent-kafka (the compat suites' venv has it).
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
PARTITIONS = 6


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def create(bs, topic):
    a = AdminClient({"bootstrap.servers": bs})
    for f in a.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)


def transactional(bs, args):
    topic = "txn-" + uuid.uuid4().hex[:8]
    create(bs, topic)
    p = Producer({"bootstrap.servers": bs, "transactional.id": topic, "linger.ms": 5,
                  "batch.size": 262144})
    p.init_transactions(60)
    payload = os.urandom(args.size)
    commits = []
    started = time.monotonic()
    for t in range(args.transactions):
        p.begin_transaction()
        for i in range(args.per_txn):
            p.produce(topic, payload, partition=(t * args.per_txn + i) % PARTITIONS)
            p.poll(0)
        c0 = time.monotonic()
        p.commit_transaction(60)
        commits.append(time.monotonic() - c0)
    took = time.monotonic() - started
    records = args.transactions * args.per_txn
    commits.sort()
    return topic, {
        "txn/s": args.transactions / took,
        "records/s": records / took,
        "MB/s": records * args.size / took / 1e6,
        "commit p50 ms": commits[len(commits) // 2] * 1000,
        "commit p99 ms": commits[min(len(commits) - 1, int(len(commits) * 0.99))] * 1000,
    }


def idempotent(bs, args):
    topic = "idem-" + uuid.uuid4().hex[:8]
    create(bs, topic)
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "batch.size": 262144})
    payload = os.urandom(args.size)
    records = args.transactions * args.per_txn
    started = time.monotonic()
    for i in range(records):
        while True:
            try:
                p.produce(topic, payload, partition=i % PARTITIONS)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(120)
    took = time.monotonic() - started
    return {"baseline records/s": records / took}


def read_committed(bs, topic, args):
    c = Consumer({"bootstrap.servers": bs, "group.id": "bench-" + topic,
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    want = args.transactions * args.per_txn
    got = 0
    started = time.monotonic()
    deadline = started + 120
    while got < want and time.monotonic() < deadline:
        for m in c.consume(10000, 1.0):
            if not m.error():
                got += 1
    took = time.monotonic() - started
    c.close()
    return {"read_committed records/s": got / took if got == want else float("nan")}


def one_run(bs, args):
    topic, out = transactional(bs, args)
    out.update(idempotent(bs, args))
    out.update(read_committed(bs, topic, args))
    return out


def run_fjord(args):
    data = tempfile.mkdtemp(prefix="fjord-bench-txn-")
    port = free_port()
    log = open(os.path.join(data, "server.log"), "w")
    proc = subprocess.Popen([args.fjord, "server", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", os.path.join(data, "d")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        return one_run(f"127.0.0.1:{port}", args)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def run_kafka(args):
    port = free_port()
    env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_CONTROLLER_PORT=str(free_port()),
               KAFKA_HEAP="1g")
    subprocess.run(["bash", os.path.join(HERE, "kafka", "start.sh")], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    try:
        wait_port(port)
        return one_run(f"127.0.0.1:{port}", args)
    finally:
        subprocess.run(["bash", os.path.join(HERE, "kafka", "stop.sh")], env=env,
                       stdout=subprocess.DEVNULL)


def summary(runs):
    keys = runs[0].keys()
    out = {}
    for k in keys:
        vals = sorted(r[k] for r in runs)
        out[k] = (statistics.median(vals), vals[0], vals[-1])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fjord", default=os.path.join(HERE, "..", "target", "release", "fjord"))
    ap.add_argument("--kafka", action="store_true")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--transactions", type=int, default=500)
    ap.add_argument("--per-txn", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    systems = [("Fjord", run_fjord)] + ([("Kafka", run_kafka)] if args.kafka else [])
    results = {name: [] for name, _ in systems}
    for i in range(args.runs):
        # Alternate the order, so that neither always runs on a warmer machine.
        order = systems if i % 2 == 0 else list(reversed(systems))
        for name, fn in order:
            results[name].append(fn(args))
    print(f"{args.transactions} transactions x {args.per_txn} records of {args.size} B, "
          f"{PARTITIONS} partitions, {args.runs} run(s); median (min-max)")
    table = {name: summary(r) for name, r in results.items()}
    keys = list(next(iter(table.values())).keys())
    print("| metric | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for k in keys:
        cells = [f"{m:,.1f} ({lo:,.1f}-{hi:,.1f})" for m, lo, hi in (table[n][k] for n in table)]
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
