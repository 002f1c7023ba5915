"""chaos/run: a Fjord cluster under faults, with a workload and a checker.

Starts an N-node cluster (every node a voter and a broker), each node in its own network
namespace, runs the workload from the root namespace while the nemesis injects faults,
then heals everything, lets the clients settle, reads every partition in full, and hands
the history to the checker, whose last line is the verdict.

Workloads: queue (idempotent producers, a consumer group, a full final read), txn
(transactional producers committing or aborting transactions over several partitions,
read_committed consumers, a read_committed final read once no transaction is open) and
copier (Kafka's TransactionalMessageCopier copying the queue producers' topic into a second
one, exactly once, while copiers are killed too; see workload.Copiers).
"""

import argparse
import logging
import os
import random
import subprocess
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic

import cluster as cluster_mod
import nemesis as nemesis_mod
import net as net_mod
import workload

HERE = os.path.dirname(os.path.abspath(__file__))
FAULTS = ["kill", "pause", "partition", "disk", "restart"]
TOPIC = "chaos"
COPY_TOPIC = "chaos-copy"
COPY_GROUP = "chaos-copier"
# Liveness a little quicker than Kafka's defaults, so a short run sees several faults
# through to their end.
SESSION_MS = 6000
SETTINGS = [
    f"broker.session.timeout.ms={SESSION_MS}",
    "broker.heartbeat.interval.ms=1000",
    "replica.lag.time.max.ms=10000",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "offsets.topic.replication.factor=3",
    "log.segment.bytes=8388608",
]


def parse_args():
    a = argparse.ArgumentParser(prog="chaos/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--nodes", type=int, default=3, choices=[3, 5])
    a.add_argument("--minutes", type=float, default=2.0)
    a.add_argument("--seed", type=int, default=None)
    a.add_argument("--faults", default="kill,pause,partition,disk,restart",
                   help="any of " + ",".join(FAULTS)
                        + "; one named twice is chosen twice as often")
    a.add_argument("--workload", default="queue", choices=["queue", "txn", "copier"])
    a.add_argument("--kill-target", default="any",
                   choices=["any", "leader", "controller", "random"],
                   help="what a kill fault kills: a partition leader, the active controller, "
                        "a random node, or any of the three (the default)")
    a.add_argument("--partitions", type=int, default=6)
    a.add_argument("--rate", type=float, default=600.0, help="records per second in all")
    a.add_argument("--producers", type=int, default=3)
    a.add_argument("--consumers", type=int, default=2)
    a.add_argument("--out", default=None, help="directory for history, logs and report")
    a.add_argument("--system", default="fjord", choices=["fjord", "kafka"],
                   help="what runs on the nodes: Fjord, or Apache Kafka for comparison")
    args = a.parse_args()
    args.faults = [f for f in args.faults.split(",") if f]
    bad = [f for f in args.faults if f not in FAULTS]
    if bad or not args.faults:
        a.error(f"--faults: unknown {bad}; choose from {','.join(FAULTS)}")
    if args.minutes <= 0:
        a.error("--minutes must be positive")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    return args


def fetch_kafka(lib):
    """Apache Kafka's jars, fetched from Maven Central as bench/kafka does, once."""
    if os.path.isdir(lib) and any(f.startswith("kafka_2.13-") for f in os.listdir(lib)):
        return True
    pom = os.path.join(HERE, "..", "bench", "kafka")
    print(f"chaos: fetching Apache Kafka jars into {lib} ...", flush=True)
    got = subprocess.run(["mvn", "-q", "-B", "dependency:copy-dependencies",
                          "-DincludeScope=runtime", f"-DoutputDirectory={lib}"], cwd=pom)
    if got.returncode != 0:
        print("chaos: could not fetch Apache Kafka's jars", file=sys.stderr)
        return False
    return True


def create_topic(bootstrap, partitions, replicas, name=TOPIC):
    admin = AdminClient(workload.client_config({"bootstrap.servers": bootstrap}))
    deadline = time.monotonic() + 60
    while True:
        fut = admin.create_topics([NewTopic(name, partitions, replicas)])[name]
        try:
            fut.result(timeout=15)
            return
        except Exception as e:
            if "already exists" in str(e).lower() or "TOPIC_ALREADY_EXISTS" in str(e):
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def main():
    args = parse_args()
    if os.geteuid() != 0:
        print("chaos/run needs root: it creates network namespaces and tmpfs mounts",
              file=sys.stderr)
        return 2
    fjord = os.environ.get("FJORD_BIN") or os.path.join(HERE, "..", "target", "release", "fjord")
    fjord = os.path.abspath(fjord)
    kafka_lib = os.path.abspath(os.path.join(HERE, "..", "bench", ".cache", "kafka-lib"))
    if args.system == "fjord" and not os.access(fjord, os.X_OK):
        print(f"no fjord binary at {fjord}: build it or set FJORD_BIN", file=sys.stderr)
        return 2
    # The copier workload runs Kafka's own tool, from the same jars.
    if (args.system == "kafka" or args.workload == "copier") and not fetch_kafka(kafka_lib):
        return 2
    out = os.path.abspath(args.out or os.path.join(
        HERE, "out", time.strftime("%Y%m%d-%H%M%S") + f"-{args.seed}"))
    os.makedirs(out, exist_ok=True)
    tag = f"{os.getpid() % 0xffff:04x}"
    subnet = f"10.77.{os.getpid() % 250 + 1}"
    net = net_mod.Network(tag, range(1, args.nodes + 1), subnet)
    if args.system == "kafka":
        c = cluster_mod.KafkaCluster(kafka_lib, net, out, SETTINGS)
    else:
        c = cluster_mod.Cluster(fjord, net, out, SETTINGS)
    history = workload.History(os.path.join(out, "history.jsonl"))
    clients = logging.getLogger("clients")
    clients.propagate = False
    handler = logging.FileHandler(os.path.join(out, "clients.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    clients.addHandler(handler)
    clients.setLevel(logging.INFO)
    workload.CLIENT_LOG["logger"] = clients
    history.write({"type": "meta", "nodes": args.nodes, "seed": args.seed,
                   "faults": args.faults, "workload": args.workload,
                   "minutes": args.minutes, "system": args.system,
                   "partitions": args.partitions, "rate": args.rate})
    print(f"chaos: {args.nodes} nodes, seed {args.seed}, faults {','.join(args.faults)}, "
          f"{args.minutes} min; output in {out}", flush=True)
    try:
        net.setup()
        c.prepare()
        for n in c.nodes:
            c.start(n)
        if not c.wait_healthy(limit=120):
            print("chaos: the cluster did not come up; see the node logs", file=sys.stderr)
            return 1
        bootstrap = c.bootstrap()
        create_topic(bootstrap, args.partitions, min(3, args.nodes))
        copy = args.workload == "copier"
        if copy:
            create_topic(bootstrap, args.partitions, min(3, args.nodes), COPY_TOPIC)
        if not all(c.wait_healthy(t, limit=60) for t in [TOPIC] + [COPY_TOPIC] * copy):
            print("chaos: the topics did not get their replicas", file=sys.stderr)
            return 1
        txn = args.workload == "txn"
        # The copiers are the copier workload's consumers.
        consumers = workload.Consumers(bootstrap, TOPIC, "chaos-group", history,
                                       0 if copy else args.consumers,
                                       isolation="read_committed" if txn else None)
        copiers = workload.Copiers(bootstrap, TOPIC, COPY_TOPIC, COPY_GROUP, args.partitions,
                                   history, args.seed, kafka_lib, out) if copy else None
        if txn:
            producers = workload.TxnProducers(bootstrap, TOPIC, history, args.producers,
                                              args.rate, args.seed, args.partitions)
        else:
            producers = workload.Producers(bootstrap, TOPIC, history, args.producers,
                                           args.rate, args.seed)
        nem = nemesis_mod.Nemesis(c, history, args.faults, args.seed, TOPIC,
                                  args.partitions, SESSION_MS / 1000, args.kill_target)
        consumers.start()
        producers.start()
        if copiers:
            copiers.start()
        if txn and not producers.wait_ready(90):
            # The coordinator's topic is created on the first transactional call; faults
            # start once every producer got past init_transactions, so that they hit
            # transactions rather than the cluster's first minute.
            print("chaos: the transactional producers did not initialise", file=sys.stderr)
            return 1
        nem.start()
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(1)
        nem.finish()
        healed = c.heal_until_healthy(TOPIC, limit=180)
        history.write({"type": "healed", "healthy": healed})
        print(f"chaos: faults over; cluster {'healthy' if healed else 'NOT healthy'}",
              flush=True)
        producers.finish()
        # Consumers catch up with the last writes before they stop.
        time.sleep(5)
        consumers.finish()
        if copiers:
            copiers.finish()
            # The input is complete now: the last copiers copy it to its end.
            copied = copiers.final()
            print(f"chaos: copiers {'done' if copied else 'NOT done'}", flush=True)
            workload.group_offsets(bootstrap, COPY_GROUP, TOPIC, args.partitions, history)
            n, complete = workload.final_read_committed(bootstrap, COPY_TOPIC,
                                                        args.partitions, history,
                                                        event="copy_final")
            history.write({"type": "copy_final_done", "records": n, "complete": complete})
            print(f"chaos: read {n} copied records "
                  f"({'complete' if complete else 'INCOMPLETE'})", flush=True)
        if txn:
            read, complete = workload.final_read_committed(bootstrap, TOPIC, args.partitions,
                                                           history)
        else:
            read, complete = workload.final_read(bootstrap, TOPIC, args.partitions, history)
        history.write({"type": "final_done", "records": read, "complete": complete})
        print(f"chaos: final read of {read} records ({'complete' if complete else 'INCOMPLETE'})",
              flush=True)
    finally:
        history.close()
        c.shutdown()
        net.teardown()
    report = os.path.join(out, "report.md")
    plot = os.path.join(out, "timeline.png")
    checked = subprocess.run([sys.executable, os.path.join(HERE, "checker.py"),
                              os.path.join(out, "history.jsonl"), "--report", report,
                              "--plot", plot])
    return checked.returncode


if __name__ == "__main__":
    sys.exit(main())
