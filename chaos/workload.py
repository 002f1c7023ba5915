"""The queue workload: idempotent acks=all producers writing unique values, a consumer
group committing offsets while partitions move, and a final full read. Every send,
acknowledgement, failure, poll, commit and assignment change goes to the history.
"""

import json
import random
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING

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


class Producers:
    def __init__(self, bootstrap, topic, history, count, rate, seed):
        self.bootstrap = bootstrap
        self.topic = topic
        self.h = history
        self.count = count
        self.rate = rate  # records per second, over all producers
        self.seed = seed
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), name=f"producer-{i}",
                                         daemon=True) for i in range(count)]
        self.unflushed = 0

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

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


class Consumers:
    def __init__(self, bootstrap, topic, group, history, count):
        self.bootstrap = bootstrap
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
        c = Consumer(client_config({
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "socket.timeout.ms": 10000,
        }))

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
                self.h.write({"type": "poll", "consumer": i, "partition": msg.partition(),
                              "offset": msg.offset(),
                              "key": msg.key().decode() if msg.key() else None,
                              "value": msg.value().decode() if msg.value() else None})
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
