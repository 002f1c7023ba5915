#!/usr/bin/env python3
"""How long a 10-member consumer group takes to settle after one member leaves, with the
classic protocol and the new consumer protocol (KIP-848), using confluent-kafka.

"Settled" means every partition is owned by exactly one remaining member. Client and broker
settings stay at their defaults, so the numbers compare the protocols as shipped (the new
protocol's members learn of a change at their next heartbeat, every 5 s by default).

    FJORD_BIN=target/release/fjord bench/group-settle.py      # starts its own fjord
    bench/group-settle.py --bootstrap 127.0.0.1:9092           # a running broker (e.g. Kafka)

Not a CI test: it prints numbers.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

MEMBERS = 10
PARTITIONS = 30
TIMEOUT_S = 120.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fjord(binary):
    port = free_port()
    data = tempfile.mkdtemp(prefix="fjord-bench-settle-")
    log = open(data + ".log", "wb")
    proc = subprocess.Popen([binary, "server", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", data], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("fjord did not start")
            time.sleep(0.1)
    return f"127.0.0.1:{port}", proc, data


def create_topic(bootstrap, name):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(timeout=20)
    deadline = time.monotonic() + 20
    while True:
        t = a.list_topics(topic=name, timeout=10).topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == PARTITIONS:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name} not ready")
        time.sleep(0.2)


def consumer(bootstrap, group, protocol):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": protocol,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })


def wait_settled(consumers, topic):
    """Polls every member until each partition has exactly one owner; returns the time."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.01)
        owners = [tp.partition for c in consumers for tp in c.assignment() if tp.topic == topic]
        if sorted(owners) == list(range(PARTITIONS)):
            return time.monotonic()
    raise RuntimeError("group did not settle")


def run_once(bootstrap, protocol):
    topic = f"settle-{uuid.uuid4().hex[:8]}"
    group = f"settle-{protocol}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    members = [consumer(bootstrap, group, protocol) for _ in range(MEMBERS)]
    try:
        for c in members:
            c.subscribe([topic])
        wait_settled(members, topic)
        # Let every member finish any follow-up round before the measured change.
        end = time.monotonic() + 2
        while time.monotonic() < end:
            for c in members:
                c.poll(0.01)
        leaving = members.pop(0)
        start = time.monotonic()
        leaving.close()
        return wait_settled(members, topic) - start
    finally:
        for c in members:
            c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", help="a running broker; default: start $FJORD_BIN")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    proc = data = None
    bootstrap = args.bootstrap
    if not bootstrap:
        binary = os.environ.get("FJORD_BIN")
        if not binary:
            raise SystemExit("set FJORD_BIN=/path/to/fjord or pass --bootstrap host:port")
        bootstrap, proc, data = start_fjord(binary)
    try:
        print(f"{MEMBERS} members, {PARTITIONS} partitions, one member leaves "
              f"(seconds until every partition has one owner again)")
        for protocol in ("classic", "consumer"):
            times = [run_once(bootstrap, protocol) for _ in range(args.runs)]
            print(f"group.protocol={protocol:8} median {statistics.median(times):6.2f} s  "
                  f"runs {' '.join(f'{t:.2f}' for t in times)}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(data, ignore_errors=True)
            if os.path.exists(data + ".log"):
                os.unlink(data + ".log")


if __name__ == "__main__":
    main()
