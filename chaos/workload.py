"""The workloads.

queue: idempotent acks=all producers writing unique values, a consumer group committing
offsets while partitions move, and a final full read. Every send, acknowledgement,
failure, poll, commit and assignment change goes to the history.

txn: transactional producers writing unique values in transactions of a few records
over several partitions, each transaction committed or aborted at random; read_committed
consumers in a group; a final read_committed read once no transaction is open. Every
send, write, transactional call that failed, and the outcome of every transaction
(committed, aborted, or unknown) goes to the history.

copier: consume-transform-produce with Kafka's own TransactionalMessageCopier (from the
kafka-tools jar, as Kafka's transaction system tests run it). Idempotent producers write
unique values to the input topic as in queue; one copier per input partition copies it
into the same partition of the output topic in transactions that also commit the input
offsets, aborting a third of them on purpose; some copiers are killed mid-run. At the end
the output, read with read_committed, must hold every input value exactly once, in the
input's order, and the copiers' committed offsets must match what was copied.
"""

import json
import os
import random
import signal
import subprocess
import threading
import time

from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, IsolationLevel,
                             KafkaError, KafkaException, Producer, TopicPartition,
                             OFFSET_BEGINNING)
from confluent_kafka.admin import AdminClient, OffsetSpec

KEYS = 20

# Where librdkafka's own log lines go (set by the harness): a file, not the terminal.
CLIENT_LOG = {}


def client_config(extra):
    return {**CLIENT_LOG, **extra}


class History:
    """The run's events as JSON lines, each stamped with seconds since the start."""

    def __init__(self, path):
        self.f = open(path, "w", buffering=1 << 20)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def write(self, event):
        event = {"t": round(self.now(), 4), **event}
        line = json.dumps(event, separators=(",", ":"))
        with self.lock:
            self.f.write(line + "\n")

    def close(self):
        with self.lock:
            self.f.close()


class ProducerThreads:
    """`count` producer threads, each running `self.run(i)` until `stop` is set, sharing a
    rate in records per second over all of them."""

    def __init__(self, bootstrap, topic, history, count, rate, seed, name):
        self.bootstrap = bootstrap
        self.topic = topic
        self.h = history
        self.count = count
        self.rate = rate  # records per second, over all producers
        self.seed = seed
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), name=f"{name}-{i}",
                                         daemon=True) for i in range(count)]
        self.unflushed = 0

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


class Producers(ProducerThreads):
    def __init__(self, bootstrap, topic, history, count, rate, seed):
        super().__init__(bootstrap, topic, history, count, rate, seed, "producer")

    def make(self, i, fatal):
        def on_error(err):
            if err.fatal():
                self.h.write({"type": "producer_fatal", "producer": i, "error": str(err)})
                fatal.set()

        return Producer(client_config({
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # Long enough to ride out a fault: a record that times out is indeterminate.
            "message.timeout.ms": 90000,
            "request.timeout.ms": 10000,
            "socket.timeout.ms": 10000,
            "reconnect.backoff.max.ms": 1000,
            "error_cb": on_error,
        }))

    def run(self, i):
        rng = random.Random(self.seed * 1000 + i)
        fatal = threading.Event()
        p = self.make(i, fatal)
        seq = 0
        interval = self.count / self.rate
        next_at = time.monotonic()

        def delivered(key, value, sent_at):
            def cb(err, msg):
                if err is None:
                    self.h.write({"type": "ack", "producer": i, "key": key, "value": value,
                                  "partition": msg.partition(), "offset": msg.offset(),
                                  "latency": round(time.monotonic() - sent_at, 4)})
                else:
                    self.h.write({"type": "fail", "producer": i, "key": key, "value": value,
                                  "error": str(err)})
            return cb

        while not self.stop.is_set():
            if fatal.is_set():
                # A fatal idempotence error ends that producer (its sequence state is
                # gone); what it had in flight is reported failed by the flush. A new
                # producer, with a new id, carries on.
                p.flush(5)
                fatal.clear()
                p = self.make(i, fatal)
            now = time.monotonic()
            if now < next_at:
                p.poll(min(next_at - now, 0.05))
                continue
            next_at += interval
            key = f"k{rng.randrange(KEYS)}"
            value = f"{i}-{seq}"
            seq += 1
            self.h.write({"type": "send", "producer": i, "key": key, "value": value})
            while True:
                try:
                    p.produce(self.topic, key=key, value=value,
                              on_delivery=delivered(key, value, time.monotonic()))
                    break
                except BufferError:
                    p.poll(0.1)
                except KafkaException as e:
                    self.h.write({"type": "fail", "producer": i, "key": key, "value": value,
                                  "error": str(e)})
                    break
            p.poll(0)
        # Everything still in flight is settled: acknowledged or failed.
        left = p.flush(120)
        self.unflushed += left


class TxnProducers(ProducerThreads):
    """Transactional producers, one transactional.id each, writing unique values "I-SEQ"
    in transactions of 2-5 records over several partitions; a fifth of the transactions
    are aborted on purpose. Each record's send and write (delivery report) is logged with
    its transaction, and each transaction's outcome once it is known:

    - txn_commit: commit_transaction returned;
    - txn_abort: abort_transaction returned (planned, or because the commit failed with an
      abortable error);
    - txn_unknown: neither could be confirmed (a fatal error such as fencing, or retries
      that never succeeded) and the producer was recreated with the same transactional.id,
      whose init_transactions completes or aborts what was left. `commit_requested` says
      whether commit_transaction was ever called for it: if not, it cannot have committed.

    Failed calls follow librdkafka's rules: an abortable error (txn_requires_abort) means
    abort; a retriable one means the same call again; a fatal one means a new producer.
    """

    ABORT_RATE = 0.2
    RECORDS = (2, 5)
    # The coordinator aborts a transaction left open this long; short enough that one a
    # stopped producer left open does not hold the final read back for long.
    TXN_TIMEOUT_MS = 30000
    CALL_TIMEOUT = 30.0  # seconds for one init/commit/abort call
    END_PATIENCE = 180.0  # seconds of retrying one commit or abort before giving up
    INIT_PATIENCE = 120.0  # seconds of failing init_transactions after the run's end

    def __init__(self, bootstrap, topic, history, count, rate, seed, partitions):
        super().__init__(bootstrap, topic, history, count, rate, seed, "txn-producer")
        self.partitions = partitions
        self.ready = [threading.Event() for _ in range(count)]

    def wait_ready(self, limit):
        """Waits until every producer has initialised its transactions once."""
        deadline = time.monotonic() + limit
        return all(e.wait(max(0.0, deadline - time.monotonic())) for e in self.ready)

    def error(self, i, txn, call, e):
        err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
        ev = {"type": "txn_error", "producer": i, "txn": txn, "call": call, "error": str(e)}
        if err is not None:
            ev.update(code=err.name(), fatal=err.fatal(), retriable=err.retriable(),
                      abortable=err.txn_requires_abort())
        self.h.write(ev)
        return err

    def make(self, i):
        def on_error(err):
            if err.fatal():
                self.h.write({"type": "producer_fatal", "producer": i, "error": str(err)})

        return Producer(client_config({
            "bootstrap.servers": self.bootstrap,
            "transactional.id": f"chaos-txn-{i}",
            "transaction.timeout.ms": self.TXN_TIMEOUT_MS,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "request.timeout.ms": 10000,
            "socket.timeout.ms": 10000,
            "reconnect.backoff.max.ms": 1000,
            "error_cb": on_error,
        }))

    def drop(self, p):
        """Lets go of a producer about to be replaced: what it still holds fails (and is
        logged as failed by its delivery reports)."""
        if p is None:
            return
        try:
            p.purge(in_queue=True, in_flight=True, blocking=False)
            p.flush(1)
        except Exception:
            pass

    def init(self, i, old=None):
        """A new producer for transactional id i, its transactions initialised; None if the
        run is over and it cannot be had."""
        self.drop(old)
        p = self.make(i)
        given_up_at = None
        while True:
            try:
                p.init_transactions(self.CALL_TIMEOUT)
                self.h.write({"type": "txn_init", "producer": i})
                self.ready[i].set()
                return p
            except KafkaException as e:
                err = self.error(i, None, "init", e)
                if self.stop.is_set():
                    given_up_at = given_up_at or time.monotonic() + self.INIT_PATIENCE
                    if time.monotonic() > given_up_at:
                        return None
                if err is None or not err.retriable():
                    # Fatal, or not worth retrying on this instance: start over.
                    time.sleep(1)
                    self.drop(p)
                    p = self.make(i)
                else:
                    time.sleep(0.2)

    def run(self, i):
        rng = random.Random(self.seed * 1000 + 500 + i)
        p = self.init(i)
        seq = 0
        n = 0
        interval = self.count / self.rate
        next_at = time.monotonic()
        while p is not None and not self.stop.is_set():
            now = time.monotonic()
            if now < next_at:
                p.poll(min(next_at - now, 0.05))
                continue
            size = rng.randint(*self.RECORDS)
            # After an outage, catch up on at most a second's worth.
            next_at = max(next_at, now - 1.0) + size * interval
            parts = rng.sample(range(self.partitions), min(size, self.partitions))
            parts += [rng.randrange(self.partitions) for _ in range(size - len(parts))]
            abort = rng.random() < self.ABORT_RATE
            txn = f"{i}-t{n}"
            n += 1
            p, seq = self.transaction(i, p, txn, parts, abort, seq)
        if p is not None:
            self.unflushed += p.flush(10)

    def transaction(self, i, p, txn, parts, abort, seq):
        """Runs one transaction; returns the producer to go on with and the next seq."""
        try:
            p.begin_transaction()
        except KafkaException as e:
            self.error(i, txn, "begin", e)
            return self.init(i, p), seq
        start = time.monotonic()
        values = []
        enqueued = True
        for part in parts:
            key = f"k{part}"
            value = f"{i}-{seq}"
            seq += 1
            self.h.write({"type": "send", "producer": i, "txn": txn, "key": key,
                          "value": value, "partition": part})
            while True:
                try:
                    p.produce(self.topic, key=key, value=value, partition=part,
                              on_delivery=self.delivered(i, txn, key, value))
                    values.append(value)
                    break
                except BufferError:
                    p.poll(0.1)
                except KafkaException as e:
                    self.h.write({"type": "fail", "producer": i, "txn": txn, "key": key,
                                  "value": value, "error": str(e)})
                    enqueued = False
                    break
            if not enqueued:
                break
        p.poll(0)
        if abort and enqueued:
            # Abort only once the records are written (abort_transaction drops those still
            # queued in the client): the log then holds aborted records for read_committed
            # readers to skip.
            p.flush(self.CALL_TIMEOUT)
        # A transaction missing a record it meant to hold is aborted, not committed.
        return self.end(i, p, txn, values, commit=enqueued and not abort, start=start), seq

    def delivered(self, i, txn, key, value):
        def cb(err, msg):
            if err is None:
                self.h.write({"type": "txn_write", "producer": i, "txn": txn, "key": key,
                              "value": value, "partition": msg.partition(),
                              "offset": msg.offset()})
            else:
                self.h.write({"type": "fail", "producer": i, "txn": txn, "key": key,
                              "value": value, "error": str(err)})
        return cb

    def end(self, i, p, txn, values, commit, start):
        """Commits or aborts; logs the outcome only once a call confirmed it. Returns the
        producer to go on with (a new one if this one had to go)."""
        call = "commit" if commit else "abort"
        commit_requested = False
        give_up = time.monotonic() + self.END_PATIENCE
        last = None
        while True:
            if call == "commit":
                commit_requested = True
            try:
                if call == "commit":
                    p.commit_transaction(self.CALL_TIMEOUT)
                else:
                    p.abort_transaction(self.CALL_TIMEOUT)
            except KafkaException as e:
                last = e
                err = self.error(i, txn, call, e)
                if err is None or err.fatal():
                    break
                if err.txn_requires_abort() and call == "commit":
                    call = "abort"
                    continue
                if (err.retriable() or err.txn_requires_abort()) and time.monotonic() < give_up:
                    time.sleep(0.2)
                    continue
                break
            else:
                self.h.write({"type": "txn_commit" if call == "commit" else "txn_abort",
                              "producer": i, "txn": txn, "values": values,
                              "planned": commit == (call == "commit"),
                              "latency": round(time.monotonic() - start, 4)})
                return p
        # Neither outcome confirmed: it may have committed (if a commit was asked for) or
        # aborted. A new producer with the same id settles it either way.
        self.h.write({"type": "txn_unknown", "producer": i, "txn": txn, "values": values,
                      "commit_requested": commit_requested, "error": str(last)})
        return self.init(i, p)


class Consumers:
    def __init__(self, bootstrap, topic, group, history, count, isolation=None):
        self.bootstrap = bootstrap
        # None: the client's default; the txn workload asks for read_committed, and its
        # polls say so (the checker holds only those to "no aborted reads").
        self.isolation = isolation
        self.topic = topic
        self.group = group
        self.h = history
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), name=f"consumer-{i}",
                                         daemon=True) for i in range(count)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def run(self, i):
        conf = {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "socket.timeout.ms": 10000,
        }
        if self.isolation:
            conf["isolation.level"] = self.isolation
        c = Consumer(client_config(conf))

        def on_assign(consumer, parts):
            self.h.write({"type": "assign", "consumer": i,
                          "partitions": sorted(p.partition for p in parts)})

        def on_revoke(consumer, parts):
            # Commit what was read before the partitions go, as applications do.
            self.commit(c, i)
            self.h.write({"type": "revoke", "consumer": i,
                          "partitions": sorted(p.partition for p in parts)})

        c.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
        last_commit = time.monotonic()
        while not self.stop.is_set():
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                ev = {"type": "poll", "consumer": i, "partition": msg.partition(),
                      "offset": msg.offset(),
                      "key": msg.key().decode() if msg.key() else None,
                      "value": msg.value().decode() if msg.value() else None}
                if self.isolation:
                    ev["isolation"] = self.isolation
                self.h.write(ev)
            if time.monotonic() - last_commit >= 1.0:
                self.commit(c, i)
                last_commit = time.monotonic()
        self.commit(c, i)
        c.close()

    def commit(self, c, i):
        try:
            done = c.commit(asynchronous=False)
        except KafkaException:
            return  # nothing to commit, a rebalance, or no coordinator: not a commit
        for tp in done or []:
            if tp.error is None and tp.offset >= 0:
                self.h.write({"type": "commit", "consumer": i, "partition": tp.partition,
                              "offset": tp.offset})

class Copiers:
    """One slot per input partition, each running Kafka's TransactionalMessageCopier over
    and over with the same transactional id and consumer group: a copier copies its input
    partition, from the group's committed offset up to the partition's end when it was
    launched, into the same partition of the output topic, in transactions of up to
    TXN_SIZE records that also commit the input offsets (`--use-group-metadata`), a third
    of them aborted on purpose (`--enable-random-aborts`), and then exits. The slot
    launches the next one after a pause, so copying goes on while input arrives and faults
    come and go. A KILL_RATE share of copiers is killed with SIGKILL a moment after launch,
    as a crashed application; the next one's InitProducerId fences it and aborts what it
    left open.

    History: copier_start and copier_exit (exit code, killed or not, the copier's last
    progress line) for every copier; copier_done for each slot's final copier, run once
    the input is complete, which must reach the input's end (remaining 0, exit 0)."""

    TXN_SIZE = 50
    KILL_RATE = 0.25
    PAUSE = (1.0, 3.0)  # seconds between a copier's exit and the next launch
    # Kafka's default transaction timeout is a minute; a killed copier's open transaction
    # is aborted by the next copier's InitProducerId, so this matters only if none comes.
    TXN_TIMEOUT_MS = 20000
    FINAL_LIMIT = 240.0  # seconds for each slot's final copy to the end

    def __init__(self, bootstrap, topic, out_topic, group, partitions, history, seed, lib,
                 out_dir):
        self.bootstrap = bootstrap
        self.topic = topic
        self.out_topic = out_topic
        self.group = group
        self.h = history
        self.seed = seed
        self.classpath = os.path.join(lib, "*")
        self.out_dir = out_dir
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.procs = {}
        self.slots = list(range(partitions))
        self.gens = {i: 0 for i in self.slots}
        self.threads = [threading.Thread(target=self.run, args=(i,), name=f"copier-{i}",
                                         daemon=True) for i in self.slots]

    def command(self, slot):
        # Small heap, the quick JIT and the serial collector: a copier lives seconds, and
        # several share two cores with the cluster.
        return ["java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                "-cp", self.classpath, "org.apache.kafka.tools.TransactionalMessageCopier",
                "--broker-list", self.bootstrap,
                "--input-topic", self.topic, "--input-partition", str(slot),
                "--output-topic", self.out_topic,
                "--transactional-id", f"chaos-copier-{slot}",
                "--consumer-group", self.group,
                "--use-group-metadata", "--enable-random-aborts",
                "--transaction-size", str(self.TXN_SIZE),
                "--transaction-timeout", str(self.TXN_TIMEOUT_MS)]

    def launch(self, slot):
        """Starts one copier; returns (process, its log, where its output starts)."""
        self.gens[slot] += 1
        path = os.path.join(self.out_dir, f"copier-{slot}.log")
        log = open(path, "ab")
        start = log.tell()
        log.write(f"--- copier {slot}.{self.gens[slot]}\n".encode())
        log.flush()
        proc = subprocess.Popen(self.command(slot), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        log.close()
        with self.lock:
            self.procs[slot] = proc
        self.h.write({"type": "copier_start", "slot": slot, "gen": self.gens[slot]})
        return proc, path, start

    def settle(self, slot, proc, path, start, killed):
        """Logs a copier's end; returns its last progress line (a dict, or None)."""
        with self.lock:
            self.procs.pop(slot, None)
        last = None
        with open(path, "rb") as f:
            f.seek(start)
            for line in f.read().decode(errors="replace").splitlines():
                if line.startswith("{") and '"stage"' in line:
                    try:
                        last = json.loads(line)
                    except json.JSONDecodeError:
                        pass
        self.h.write({"type": "copier_exit", "slot": slot, "gen": self.gens[slot],
                      "code": proc.returncode, "killed": killed,
                      "stage": last.get("stage") if last else None,
                      "processed": last.get("totalProcessed") if last else None,
                      "remaining": last.get("remaining") if last else None})
        return last

    def start(self):
        for t in self.threads:
            t.start()

    def run(self, slot):
        rng = random.Random(self.seed * 1000 + 900 + slot)
        while not self.stop.is_set():
            proc, path, start = self.launch(slot)
            kill_at = (time.monotonic() + rng.uniform(1.0, 5.0)
                       if rng.random() < self.KILL_RATE else None)
            killed = False
            while proc.poll() is None:
                # Once the run is over, a running copier is left to finish its copy.
                if kill_at is not None and time.monotonic() >= kill_at \
                        and not self.stop.is_set():
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    kill_at = None
                time.sleep(0.1)
            self.settle(slot, proc, path, start, killed)
            self.stop.wait(rng.uniform(*self.PAUSE))

    def finish(self):
        """Stops launching; copiers still running finish their copy (bounded)."""
        self.stop.set()
        for t in self.threads:
            t.join(self.FINAL_LIMIT)
        with self.lock:
            left = list(self.procs.values())
        for proc in left:
            proc.kill()

    def final(self):
        """Once the input is complete: per slot, copiers until one copies to the input's
        end (exit 0, remaining 0), within FINAL_LIMIT. Returns whether every slot did."""
        done = {}

        def one(slot):
            deadline = time.monotonic() + self.FINAL_LIMIT
            ok = False
            while not ok and time.monotonic() < deadline:
                proc, path, start = self.launch(slot)
                try:
                    proc.wait(max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                last = self.settle(slot, proc, path, start, False)
                ok = (proc.returncode == 0 and last is not None
                      and last.get("stage") == "ShutdownComplete"
                      and last.get("remaining") == 0)
                if not ok:
                    time.sleep(1)
            done[slot] = ok
            self.h.write({"type": "copier_done", "slot": slot, "ok": ok})

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in self.slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return all(done.get(i) for i in self.slots)


def group_offsets(bootstrap, group, topic, partitions, history):
    """Logs the group's committed offset of each partition (copier_committed)."""
    admin = AdminClient(client_config({"bootstrap.servers": bootstrap,
                                       "socket.timeout.ms": 10000}))
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p)
                                               for p in range(partitions)])
    for _ in range(10):
        try:
            res = admin.list_consumer_group_offsets([req])[group].result(timeout=20)
            for tp in res.topic_partitions:
                history.write({"type": "copier_committed", "partition": tp.partition,
                               "offset": tp.offset})
            return
        except Exception:
            time.sleep(1)
    history.write({"type": "copier_committed_unknown", "group": group})


def final_read(bootstrap, topic, partitions, history, limit=120.0):
    """Reads every partition from its start to its high watermark, as a fresh consumer
    outside any group. Returns the number of records read."""
    c = Consumer(client_config({
        "bootstrap.servers": bootstrap,
        "group.id": "chaos-final-read",
        "enable.auto.commit": False,
        "socket.timeout.ms": 10000,
    }))
    ends = {}
    for p in range(partitions):
        _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        ends[p] = high
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    read = 0
    done = {p for p, high in ends.items() if high <= 0}
    deadline = time.monotonic() + limit
    while len(done) < partitions and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        p = msg.partition()
        if p in done:
            continue
        history.write({"type": "final", "partition": p, "offset": msg.offset(),
                       "key": msg.key().decode() if msg.key() else None,
                       "value": msg.value().decode() if msg.value() else None})
        read += 1
        if msg.offset() + 1 >= ends[p]:
            done.add(p)
    c.close()
    return read, len(done) == partitions


def final_read_committed(bootstrap, topic, partitions, history, limit=180.0, event="final"):
    """The txn workload's final read: waits until no transaction is open on any partition
    (the last stable offset has reached the high watermark: every transaction ended, by
    its producer or by the coordinator's timeout), then reads every partition from its
    start with read_committed, as a fresh consumer outside any group, until the client
    reports its end at that high watermark. Returns the number of records read and whether
    the read was complete (settled, and every partition read to its end)."""
    admin = AdminClient(client_config({"bootstrap.servers": bootstrap,
                                       "socket.timeout.ms": 10000}))
    tps = [TopicPartition(topic, p) for p in range(partitions)]

    def latest(isolation):
        fs = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                isolation_level=isolation, request_timeout=15)
        return {tp.partition: f.result(timeout=20).offset for tp, f in fs.items()}

    deadline = time.monotonic() + limit
    hw = lso = None
    settled = False
    while time.monotonic() < deadline:
        try:
            hw = latest(IsolationLevel.READ_UNCOMMITTED)
            lso = latest(IsolationLevel.READ_COMMITTED)
        except Exception:
            time.sleep(1)
            continue
        if hw == lso:
            settled = True
            break
        time.sleep(0.5)
    history.write({"type": f"{event}_settle", "settled": settled,
                   "high_watermarks": hw, "last_stable_offsets": lso})
    # Unsettled: read what can be read, to the last stable offsets.
    ends = dict(lso or {})
    c = Consumer(client_config({
        "bootstrap.servers": bootstrap,
        "group.id": "chaos-final-read",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "socket.timeout.ms": 10000,
    }))
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    read = 0
    done = set()
    while len(done) < partitions and time.monotonic() < deadline + 60:
        msg = c.poll(0.5)
        if msg is None:
            continue
        p = msg.partition()
        if msg.error() is not None:
            # The end of a partition, for read_committed its last stable offset; control
            # records (transaction markers) take offsets but are never returned.
            if msg.error().code() == KafkaError._PARTITION_EOF and msg.offset() >= ends.get(p, 0):
                done.add(p)
            continue
        history.write({"type": event, "partition": p, "offset": msg.offset(),
                       "key": msg.key().decode() if msg.key() else None,
                       "value": msg.value().decode() if msg.value() else None,
                       "isolation": "read_committed"})
        read += 1
    c.close()
    return read, settled and len(done) == partitions
