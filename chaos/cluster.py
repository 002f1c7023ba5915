"""The nodes of a chaos run, each in its own network namespace, with its data directory
on a small tmpfs of its own (so the disk fault can fill it without touching anything
else), and its output in the run's directory. `Cluster` runs Fjord; `KafkaCluster` runs
Apache Kafka (KRaft, every node a broker and a controller) from the jars the benchmarks
fetch, under the same faults, for comparison.
"""

import os
import signal
import subprocess
import time
import uuid

from confluent_kafka.admin import AdminClient

from net import sh
from workload import client_config

# A node's data directory: small enough to fill in a moment, large enough for a run.
TMPFS_SIZE = "512m"
CLIENT_PORT = 9092
CONTROLLER_PORT = 9093


class Cluster:
    def __init__(self, fjord, net, out_dir, settings):
        self.fjord = fjord
        self.net = net
        self.out = out_dir
        self.settings = settings  # extra server properties, "k=v"
        self.procs = {}
        self.paused = set()
        self.fills = {}
        self.mounted = []

    @property
    def nodes(self):
        return self.net.nodes

    def data_dir(self, n):
        return os.path.join(self.out, "data", f"node-{n}")

    def bootstrap(self, nodes=None):
        return ",".join(f"{self.net.ip(n)}:{CLIENT_PORT}" for n in (nodes or self.nodes))

    def prepare(self):
        for n in self.nodes:
            d = self.data_dir(n)
            os.makedirs(d, exist_ok=True)
            sh("mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", d)
            self.mounted.append(d)

    def command(self, n):
        ip = self.net.ip(n)
        voters = ",".join(f"{v}@{self.net.ip(v)}:{CONTROLLER_PORT}" for v in self.nodes)
        props = [
            f"node.id={n}",
            "process.roles=broker,controller",
            f"listeners=PLAINTEXT://{ip}:{CLIENT_PORT},CONTROLLER://{ip}:{CONTROLLER_PORT}",
            "controller.listener.names=CONTROLLER",
            f"controller.quorum.voters={voters}",
        ] + self.settings
        cmd = ["ip", "netns", "exec", self.net.ns(n), self.fjord, "server",
               "--data-dir", self.data_dir(n)]
        for p in props:
            cmd += ["--override", p]
        return cmd

    def start(self, n):
        if self.running(n):
            return
        log = open(os.path.join(self.out, f"node-{n}.log"), "ab")
        # `ip netns exec` execs the server in place: the pid is the server's.
        self.procs[n] = subprocess.Popen(self.command(n), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        log.close()

    def running(self, n):
        p = self.procs.get(n)
        return p is not None and p.poll() is None

    def kill(self, n):
        p = self.procs.get(n)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.paused.discard(n)

    def terminate(self, n, patience=30):
        """SIGTERM (a controlled shutdown), then SIGKILL if it takes too long."""
        p = self.procs.get(n)
        if p is None:
            return None
        if p.poll() is not None:
            return p.returncode  # it had stopped on its own already
        if n in self.paused:
            self.resume(n)
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None

    def pause(self, n):
        if self.running(n):
            os.kill(self.procs[n].pid, signal.SIGSTOP)
            self.paused.add(n)

    def resume(self, n):
        if n in self.paused and self.running(n):
            os.kill(self.procs[n].pid, signal.SIGCONT)
        self.paused.discard(n)

    def fill_disk(self, n):
        """Fills node `n`'s data directory to the last byte."""
        path = os.path.join(self.data_dir(n), "chaos-fill")
        self.fills[n] = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # Unbuffered, so that the write that finds the disk full is the one that
            # fails; then smaller writes take what room is left.
            for size in (1 << 20, 4096, 1):
                block = b"\0" * size
                try:
                    while True:
                        os.write(fd, block)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free_disk(self, n):
        path = self.fills.pop(n, None)
        if path:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def metadata(self, timeout=5.0):
        admin = AdminClient(client_config({"bootstrap.servers": self.bootstrap(),
                                           "socket.timeout.ms": 3000}))
        return admin.list_topics(timeout=timeout)

    def leader_of(self, topic, partition):
        try:
            md = self.metadata()
            return md.topics[topic].partitions[partition].leader
        except Exception:
            return -1

    def controller(self):
        try:
            return self.metadata().controller_id
        except Exception:
            return -1

    def healthy(self, topic=None):
        """Every node runs and is listed, and every partition of `topic` has a leader and
        its full ISR."""
        if any(not self.running(n) or n in self.paused for n in self.nodes):
            return False
        try:
            md = self.metadata()
        except Exception:
            return False
        if set(md.brokers) != set(self.nodes):
            return False
        if topic is None:
            return True
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            return False
        return all(p.leader >= 0 and len(p.isrs) == len(p.replicas) for p in t.partitions.values())

    def wait_healthy(self, topic=None, limit=120.0):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.healthy(topic):
                return True
            time.sleep(0.5)
        return False

    def heal_all(self):
        """Undoes every fault: network, pauses, full disks, stopped nodes."""
        self.net.heal()
        for n in list(self.paused):
            self.resume(n)
        for n in list(self.fills):
            self.free_disk(n)
        for n in self.nodes:
            if not self.running(n):
                self.start(n)

    def heal_until_healthy(self, topic, limit=180.0):
        """Heals everything, again and again (a node may stop on its own while the
        others recover), until the cluster is whole or `limit` passes."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.heal_all()
            if self.wait_healthy(topic, limit=5):
                return True
        return False

    def shutdown(self):
        for n in self.nodes:
            self.resume(n)
            self.kill(n)
        for d in reversed(self.mounted):
            sh("umount", "-l", d, check=False)
        self.mounted = []


class KafkaCluster(Cluster):
    """Apache Kafka nodes with the same listeners, addresses and settings as Fjord's.

    Kafka keeps its own defaults where Fjord's differ on purpose: it acknowledges acks=all
    writes without an fsync (flush.messages and flush.ms are unset), so a run that kills
    every replica at once can lose writes Kafka acknowledged; the faults here never do."""

    HEAP = "384m"

    def __init__(self, lib, net, out_dir, settings):
        super().__init__(None, net, out_dir, settings)
        self.lib = lib
        self.cluster_id = None

    def props_path(self, n):
        return os.path.join(self.out, f"node-{n}.properties")

    def jvm(self, extra=()):
        log4j = os.path.join(self.out, "log4j2.properties")
        return ["java", f"-Xms{self.HEAP}", f"-Xmx{self.HEAP}", "-XX:+UseG1GC",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
                *extra, "-cp", os.path.join(self.lib, "*")]

    def prepare(self):
        super().prepare()
        with open(os.path.join(self.out, "log4j2.properties"), "w") as f:
            f.write("status = warn\nappender.out.type = Console\nappender.out.name = OUT\n"
                    "appender.out.layout.type = PatternLayout\n"
                    "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
                    "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = OUT\n"
                    "logger.state.name = state.change.logger\nlogger.state.level = WARN\n")
        voters = ",".join(f"{v}@{self.net.ip(v)}:{CONTROLLER_PORT}" for v in self.nodes)
        # A random cluster id in Kafka's form: a UUID as URL-safe base64 without padding.
        import base64
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        for n in self.nodes:
            ip = self.net.ip(n)
            props = [
                f"node.id={n}",
                "process.roles=broker,controller",
                f"listeners=PLAINTEXT://{ip}:{CLIENT_PORT},CONTROLLER://{ip}:{CONTROLLER_PORT}",
                f"advertised.listeners=PLAINTEXT://{ip}:{CLIENT_PORT}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                f"controller.quorum.voters={voters}",
                f"log.dirs={self.data_dir(n)}",
                "transaction.state.log.replication.factor=3",
                "transaction.state.log.min.isr=2",
            ] + self.settings
            with open(self.props_path(n), "w") as f:
                f.write("\n".join(props) + "\n")
            fmt = subprocess.run(self.jvm() + ["kafka.tools.StorageTool", "format", "-t",
                                               self.cluster_id, "-c", self.props_path(n)],
                                 capture_output=True, text=True)
            if fmt.returncode != 0:
                raise RuntimeError(f"formatting node {n} failed: {fmt.stdout}{fmt.stderr}")

    def command(self, n):
        return ["ip", "netns", "exec", self.net.ns(n)] + self.jvm() + [
            "kafka.Kafka", self.props_path(n)]
