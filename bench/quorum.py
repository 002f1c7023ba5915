"""The metadata quorum of a 3-node Fjord cluster on this machine, timed:

- cold start: from starting three nodes at once until every broker is registered and a
  client's Metadata lists all three;
- controller failover: from kill -9 of the active controller until a topic can be created
  again through a surviving broker;
- creating 1,000 partitions (one topic, replication factor 3) until every broker lists
  them all;
- metadata propagation: from CreateTopics answered by one broker until the other two list
  the topic (median and max over 20 topics);
- peak RSS of each node over the run.

    python3 bench/quorum.py [--fjord target/release/fjord] [--runs 3]

Prints one line per measure (median over the runs, min and max beside it). Needs
confluent-kafka (the compat suites' venv has it).
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka.admin import AdminClient, NewTopic


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, fjord, node_id, root, voters, port, cport):
        self.id = node_id
        self.port = port
        self.dir = os.path.join(root, f"node-{node_id}")
        self.log = open(os.path.join(root, f"node-{node_id}.log"), "ab")
        self.cmd = [fjord, "server", "--data-dir", self.dir,
                    "--override", f"node.id={node_id}",
                    "--override", "process.roles=broker,controller",
                    "--override", f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                    "--override", "controller.listener.names=CONTROLLER",
                    "--override", f"controller.quorum.voters={voters}"]
        self.proc = None
        self.peak_kib = 0

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=self.log)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def sample_rss(self):
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
        except OSError:
            pass


def admin(port, socket_timeout_ms=3000):
    return AdminClient({"bootstrap.servers": f"127.0.0.1:{port}",
                        "socket.timeout.ms": socket_timeout_ms})


def brokers_listed(port):
    try:
        return set(admin(port).list_topics(timeout=2).brokers)
    except Exception:
        return set()


def wait(what, cond, limit=120.0, step=0.02):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}")


def partitions_listed(port, topic):
    try:
        t = admin(port).list_topics(topic=topic, timeout=5).topics.get(topic)
        return 0 if t is None or t.error else len(t.partitions)
    except Exception:
        return 0


def create(port, topic, partitions, replicas=3):
    # The client must outlive its future: a collected one cancels the request.
    client = admin(port, socket_timeout_ms=90000)
    fut = client.create_topics([NewTopic(topic, partitions, replicas)], request_timeout=60)[topic]
    fut.result(timeout=90)


def one_run(fjord):
    root = tempfile.mkdtemp(prefix="fjord-bench-quorum-")
    ports = [free_port() for _ in range(3)]
    cports = [free_port() for _ in range(3)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{cports[i]}" for i in range(3))
    nodes = [Node(fjord, i + 1, root, voters, ports[i], cports[i]) for i in range(3)]
    out = {}
    try:
        t0 = time.monotonic()
        for n in nodes:
            n.start()
        wait("three brokers", lambda: all(brokers_listed(p) == {1, 2, 3} for p in ports))
        out["cold start to 3 brokers listed (s)"] = time.monotonic() - t0

        t0 = time.monotonic()
        create(ports[0], "wide", 1000)
        wait("1,000 partitions everywhere",
             lambda: all(partitions_listed(p, "wide") == 1000 for p in ports))
        out["create 1,000 partitions, RF 3 (s)"] = time.monotonic() - t0
        for n in nodes:
            n.sample_rss()

        delays = []
        for i in range(20):
            topic = f"spread-{i}"
            create(ports[0], topic, 1)
            t0 = time.monotonic()
            wait("propagation", lambda: all(partitions_listed(p, topic) == 1 for p in ports[1:]),
                 step=0.005)
            delays.append((time.monotonic() - t0) * 1000)
        out["metadata propagation, median (ms)"] = statistics.median(delays)
        out["metadata propagation, max (ms)"] = max(delays)

        controller = admin(ports[0]).list_topics(timeout=5).controller_id
        victim = next(n for n in nodes if n.id == controller)
        survivor = next(n for n in nodes if n.id != controller)
        for n in nodes:
            n.sample_rss()
        t0 = time.monotonic()
        victim.kill()
        deadline = time.monotonic() + 120
        attempt = 0
        while True:
            attempt += 1
            # A fresh client each time, with a short timeout: a client's cached metadata
            # names the killed node as controller until it refreshes, and librdkafka then
            # waits out the request timeout; what is timed here is the cluster's recovery.
            # One replica: the new active controller is timed, not fencing.
            client = AdminClient({"bootstrap.servers": f"127.0.0.1:{survivor.port}",
                                  "socket.timeout.ms": 2000})
            topic = f"after-kill-{attempt}"
            try:
                client.create_topics([NewTopic(topic, 1, 1)],
                                     request_timeout=2)[topic].result(timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        out["controller kill -9 to a topic created again (s)"] = time.monotonic() - t0
        for n in nodes:
            n.sample_rss()
        out["peak RSS, largest node (MiB)"] = max(n.peak_kib for n in nodes) / 1024
    finally:
        for n in nodes:
            n.kill()
        shutil.rmtree(root, ignore_errors=True)
    return out


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--fjord", default=os.path.join(os.path.dirname(__file__), "..", "target",
                                                   "release", "fjord"))
    a.add_argument("--runs", type=int, default=3)
    args = a.parse_args()
    results = [one_run(os.path.abspath(args.fjord)) for _ in range(args.runs)]
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"{key:50s} median {statistics.median(values):9.2f}   "
              f"min {min(values):9.2f}   max {max(values):9.2f}")


if __name__ == "__main__":
    sys.exit(main())
