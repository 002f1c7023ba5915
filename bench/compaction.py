"""Log compaction in a single Fjord node, timed:

1. cleaner throughput: ~200 MB of keyed 1 KiB records (10,000 distinct keys, so most
   records are obsolete) go to a topic with segment.bytes=8 MiB while it still has
   cleanup.policy=delete; its active segment is rolled (segment.ms passes, one more
   record), then the topic is switched to cleanup.policy=compact. Timed from the switch
   until the topic's on-disk size (all files in DIR/<topic>-0, allocated
   blocks as du counts them) stops shrinking. MB/s is the sum of
   bytes_before over the sum of seconds of the broker's "log compacted" lines; beside it
   the disk's sequential write rate measured in the same directory in the same run
   (256 MB written, fsynced at the end).
2. produce latency with and without the cleaner: the same backlog, rolled; a producer
   (acks=all, linger.ms=0) sends 100-byte records at a fixed rate to a second, uncompacted
   topic, and a quarter into that load the backlog is switched to cleanup.policy=compact,
   which starts the cleaner on it (a pass over 200 MB in the page cache takes well under a
   second, so starting it before the load would let it finish before the load is under
   way). Latency is the delivery callback time minus the send time. Once
   with the cleaner on (it compacts the backlog under the load) and once with
   log.cleaner.enable=false, everything else the same. The "pass + 1 s after" lines
   count only records sent from a pass's start to 1 s after its end (the broker's log
   lines give both).
3. __consumer_offsets stays bounded: with offsets.topic.segment.bytes=1 MiB one group
   commits explicit offsets for 100 partitions over and over (100 partitions per
   synchronous commit). After 10k, 50k and 100k partition-offset commits: the on-disk size
   of all DIR/__consumer_offsets-* directories, and the restart time (SIGTERM, start
   again, from process start until Consumer.committed returns the latest offsets for all
   100 partitions; nan and a line saying so when they are not back within 15 s), and the
   coordinator's own load time from its log. Commits are paced (--commit-calls per
   second) so that the cleaner runs between them. Cleaner on, and
   log.cleaner.enable=false as the baseline.
4. (--kafka) measure 1 on Apache Kafka (bench/kafka/start.sh): on-disk size before and
   after and the time until it stops shrinking, and the MB/s its cleaner logs.

    python3 bench/compaction.py [--fjord target/release/fjord] [--runs 1] [--kafka]

Every broker is started by the script on free 127.0.0.1 ports with a temporary data
directory, and stopped and removed at the end. With --runs N > 1 each line gives the median
with min and max. Needs confluent-kafka (the compat suites' venv has it).
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewTopic)

MB = 1e6
SEGMENT = 8 << 20
PASS_RE = re.compile(r"^(\S+)\s+INFO\s+fjord_broker::cleaner: log compacted (.*)$")
FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S+)')
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                # Allocated blocks, as du counts them: Kafka's active-segment indexes are
                # preallocated sparse files whose apparent size is 10 MB each.
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def offsets_bytes(data_dir):
    return sum(dir_bytes(os.path.join(data_dir, d)) for d in os.listdir(data_dir)
               if d.startswith("__consumer_offsets-"))


def wait(what, cond, limit=120.0, step=0.02):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Fjord:
    """One node; its stdout and stderr go to a log file the passes are read from."""

    def __init__(self, fjord, root, overrides):
        self.port = free_port()
        self.data = os.path.join(root, "data")
        self.log_path = os.path.join(root, "broker.log")
        self.cmd = [fjord, "server", "--listen", f"127.0.0.1:{self.port}",
                    "--data-dir", self.data]
        for kv in overrides:
            self.cmd += ["--override", kv]
        self.proc = None
        self.bootstrap = f"127.0.0.1:{self.port}"

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=log)
        return time.monotonic()

    def wait_ready(self):
        wait("the broker's port", lambda: port_open(self.port), limit=60, step=0.005)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def topic_dir(self, topic):
        return os.path.join(self.data, f"{topic}-0")

    def lines(self):
        with open(self.log_path, errors="replace") as f:
            return f.read().splitlines()

    def passes(self, topic):
        """The "log compacted" lines of a topic: (end time as epoch seconds, fields)."""
        out = []
        for line in self.lines():
            m = PASS_RE.match(line)
            if not m:
                continue
            fields = {k: v.strip('"') for k, v in FIELD_RE.findall(m.group(2))}
            if fields.get("topic") != topic:
                continue
            end = datetime.datetime.strptime(m.group(1)[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
            end = end.replace(tzinfo=datetime.timezone.utc).timestamp()
            out.append((end, fields))
        return out

    def odd_lines(self):
        return [l for l in self.lines() if " WARN " in l or " ERROR " in l or "panic" in l]


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create(bootstrap, topic, partitions=1, config=None):
    client = admin(bootstrap)
    fut = client.create_topics([NewTopic(topic, partitions, 1, config=config or {})],
                               request_timeout=30)[topic]
    fut.result(timeout=60)
    wait(f"topic {topic}", lambda: topic in client.list_topics(timeout=5).topics, limit=30)


def alter(bootstrap, topic, config):
    client = admin(bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()])
    for fut in client.incremental_alter_configs([res]).values():
        fut.result(timeout=30)


def fill(bootstrap, topic, mb, keys):
    """Writes mb MB of 1 KiB records with keys cycling through `keys` distinct ones."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 1 << 20, "queue.buffering.max.kbytes": 262144,
                  "compression.type": "none"})
    value = os.urandom(1024)
    n = int(mb * MB / 1024)
    errors = []

    def cb(err, _msg):
        if err:
            errors.append(err)

    for i in range(n):
        while True:
            try:
                p.produce(topic, value, key=b"key-%06d" % (i % keys), on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)
    if errors:
        raise RuntimeError(f"{len(errors)} produce errors, first {errors[0]}")
    return n


def roll_now(bootstrap, topic):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    p.produce(topic, b"roll", key=b"roll")
    if p.flush(30):
        raise RuntimeError("roll record not acknowledged")


def prepare_backlog(bootstrap, topic, mb, keys, segment_ms=2000):
    """The backlog of measures 1, 2 and 4, written while the topic is cleanup.policy=delete
    so that nothing is compacted before it is all on disk; then its active segment is
    rolled (past segment.ms, one more record), so that all of it is cleanable."""
    create(bootstrap, topic, config={"cleanup.policy": "delete",
                                     "segment.bytes": str(SEGMENT),
                                     "segment.ms": "3600000"})
    fill(bootstrap, topic, mb, keys)
    alter(bootstrap, topic, {"segment.ms": str(segment_ms)})
    time.sleep(segment_ms / 1000 + 0.2)
    roll_now(bootstrap, topic)


def compact_now(bootstrap, topic):
    """Switches the topic to cleanup.policy=compact; returns time.monotonic() before."""
    t0 = time.monotonic()
    alter(bootstrap, topic, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.5"})
    return t0


def wait_shrunk(path, passes_seen, t0, size, stable=8.0, limit=300.0):
    """Polls the size of `path` until it has not shrunk for `stable` seconds after at
    least one pass; returns (seconds from t0 until the last shrink, final size). `size`
    is the size at t0."""
    last_change = t0
    while True:
        time.sleep(0.1)
        now = time.monotonic()
        s = dir_bytes(path)
        if s < size:
            last_change = now
        size = min(size, s)
        if passes_seen() and now - last_change >= stable:
            return last_change - t0, size
        if now - t0 > limit:
            raise RuntimeError(f"{path} still shrinking (or no pass) after {limit} s")


def disk_write_rate(directory, mb=256, times=3):
    """Median of `times` writes of `mb` MB, each fsynced at the end (MB/s)."""
    return statistics.median(disk_write_once(directory, mb) for _ in range(times))


def disk_write_once(directory, mb):
    path = os.path.join(directory, "disk-test")
    chunk = os.urandom(1 << 20)
    n = int(mb * MB / len(chunk))
    t0 = time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(n):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    secs = time.monotonic() - t0
    os.unlink(path)
    return n * len(chunk) / MB / secs


def pass_rate(passes):
    before = sum(int(f["bytes_before"]) for _, f in passes)
    secs = sum(float(f["seconds"]) for _, f in passes)
    return before / MB / secs if secs else float("nan")


# -- measure 1 -------------------------------------------------------------------------

def cleaner_throughput(fjord, mb, keys):
    root = tempfile.mkdtemp(prefix="fjord-bench-compaction-")
    b = Fjord(fjord, root, ["log.cleaner.backoff.ms=500"])
    try:
        b.start()
        b.wait_ready()
        os.makedirs(b.data, exist_ok=True)
        disk = disk_write_rate(b.data)
        prepare_backlog(b.bootstrap, "backlog", mb, keys)
        before = dir_bytes(b.topic_dir("backlog"))
        t0 = compact_now(b.bootstrap, "backlog")
        until, after = wait_shrunk(b.topic_dir("backlog"), lambda: b.passes("backlog"),
                                   t0, before)
        passes = b.passes("backlog")
        return {
            "1. cleaner MB/s (sum bytes_before / sum seconds)": pass_rate(passes),
            "1. disk sequential write MB/s (256 MB + fsync)": disk,
            "1. topic on disk before (MB)": before / MB,
            "1. topic on disk after (MB)": after / MB,
            "1. switch to compact until the last shrink (s)": until,
            "1. passes": len(passes),
        }, b.odd_lines(), [f for _, f in passes]
    finally:
        b.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- measure 2 -------------------------------------------------------------------------

def timed_load(bootstrap, topic, rate, seconds, at=None):
    """Sends 100-byte records at `rate`/s; returns [(send epoch, latency ms)]. `at`:
    (seconds, function) to call on another thread that long into the load."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    value = b"x" * 100
    out = []
    errors = []

    def cb_for(sent_mono, sent_wall):
        def cb(err, _msg):
            if err:
                errors.append(err)
            else:
                out.append((sent_wall, (time.monotonic() - sent_mono) * 1000))
        return cb

    # Warm the connection and metadata before the clock starts.
    p.produce(topic, value)
    p.flush(30)
    n = int(rate * seconds)
    timer = threading.Timer(at[0], at[1]) if at else None
    t0 = time.monotonic()
    if timer:
        timer.start()
    for i in range(n):
        target = t0 + i / rate
        while True:
            left = target - time.monotonic()
            if left <= 0:
                break
            p.poll(left)
        p.produce(topic, value, on_delivery=cb_for(time.monotonic(), time.time()))
        p.poll(0)
    p.flush(60)
    if timer:
        timer.join()
    if errors:
        raise RuntimeError(f"{len(errors)} produce errors, first {errors[0]}")
    return out


def fmt_time(epoch):
    return f"{datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc):%H:%M:%S.%f}"


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def produce_latency(fjord, mb, keys, rate, seconds, cleaner):
    root = tempfile.mkdtemp(prefix="fjord-bench-compaction-")
    b = Fjord(fjord, root, ["log.cleaner.backoff.ms=500", f"log.cleaner.enable={cleaner}"])
    tag = "cleaner on " if cleaner == "true" else "cleaner off"
    try:
        b.start()
        b.wait_ready()
        create(b.bootstrap, "load")
        prepare_backlog(b.bootstrap, "backlog", mb, keys)
        # The switch comes a quarter into the load, so that the pass runs under it.
        sent = timed_load(b.bootstrap, "load", rate, seconds,
                          at=(seconds / 4, lambda: compact_now(b.bootstrap, "backlog")))
        lat = [ms for _, ms in sent]
        out = {
            f"2. {tag}: produce p50 (ms)": pct(lat, 50),
            f"2. {tag}: produce p99 (ms)": pct(lat, 99),
            f"2. {tag}: produce p99.9 (ms)": pct(lat, 99.9),
            f"2. {tag}: produce max (ms)": max(lat),
        }
        if cleaner == "true":
            passes = b.passes("backlog")
            windows = [(end - float(f["seconds"]), end) for end, f in passes]
            busy = sum(min(e, sent[-1][0]) - max(s, sent[0][0]) for s, e in windows
                       if e > sent[0][0] and s < sent[-1][0])
            out[f"2. {tag}: seconds of the load with a pass running"] = busy
            # From each pass's start to 1 s after its end: the pass and its aftermath.
            near = [ms for t, ms in sent if any(s <= t <= e + 1 for s, e in windows)]
            if near:
                out[f"2. {tag}: pass + 1 s after, records"] = len(near)
                out[f"2. {tag}: pass + 1 s after, p99 (ms)"] = pct(near, 99)
                out[f"2. {tag}: pass + 1 s after, max (ms)"] = max(near)
        slow = max(sent, key=lambda x: x[1])
        for end, f in b.passes("backlog"):
            print(f"   pass under load, ended {fmt_time(end)} UTC:",
                  " ".join(f"{k}={v}" for k, v in f.items()), flush=True)
        return out, b.odd_lines(), slow
    finally:
        b.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- measure 3 -------------------------------------------------------------------------

def committed_ok(bootstrap, group, topic, partitions, expect, limit=15.0):
    """Until Consumer.committed returns `expect` for every partition. A fresh consumer per
    short attempt: after a FindCoordinator error librdkafka waits a second before it asks
    again, which would time the client rather than the broker."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False, "retry.backoff.ms": 10,
                      "retry.backoff.max.ms": 50})
        try:
            got = c.committed(tps, timeout=0.1)
            if all(tp.error is None and tp.offset == expect for tp in got):
                return None
            last = got
        except Exception as e:
            last = e
        finally:
            c.close()
    if isinstance(last, list):
        wrong = [tp for tp in last if tp.error is not None or tp.offset != expect]
        last = f"{len(wrong)} partitions differ, e.g. {wrong[0]}"
    return f"not read back in {limit:.0f} s (expected offset {expect}): {last}"


LOADED_RE = re.compile(r"group coordinator loaded groups=\d+ partitions=\d+ elapsed_ms=(\d+)")


def offsets_bounded(fjord, cleaner, checkpoints, calls_per_s):
    root = tempfile.mkdtemp(prefix="fjord-bench-compaction-")
    b = Fjord(fjord, root, ["log.cleaner.backoff.ms=500", f"log.cleaner.enable={cleaner}",
                            "offsets.topic.segment.bytes=1048576"])
    partitions, group, topic = 100, "bench-group", "committed"
    rows = []
    try:
        b.start()
        b.wait_ready()
        create(b.bootstrap, topic, partitions)
        done, k = 0, 0
        c = None
        for checkpoint in checkpoints:
            if c is None:
                c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                              "enable.auto.commit": False})
            t0 = time.monotonic()
            calls = 0
            while done < checkpoint:
                calls += 1
                ahead = t0 + calls / calls_per_s - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                k += 1
                c.commit(offsets=[TopicPartition(topic, p, k) for p in range(partitions)],
                         asynchronous=False)
                done += partitions
            size = offsets_bytes(b.data)
            c.close()
            c = None
            b.stop()
            t0 = b.start()
            b.wait_ready()
            failed = committed_ok(b.bootstrap, group, topic, partitions, k)
            secs = float("nan") if failed else time.monotonic() - t0
            loaded = [int(m.group(1)) for m in map(LOADED_RE.search, b.lines()) if m]
            rows.append((checkpoint, size / MB, secs, loaded[-1] / 1000, failed))
        return rows, b.odd_lines()
    finally:
        b.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- measure 4 -------------------------------------------------------------------------

KAFKA_CLEANED = re.compile(r"([\d.,]+) MB of log processed in ([\d.,]+) seconds")


def kafka_throughput(mb, keys):
    env = dict(os.environ, KAFKA_PORT=str(free_port()), KAFKA_CONTROLLER_PORT=str(free_port()),
               KAFKA_HEAP="1g",
               KAFKA_OVERRIDES="log.cleaner.backoff.ms=500;log.segment.delete.delay.ms=0")
    run = os.path.join(HERE, ".cache", "kafka-run")
    subprocess.run(["bash", os.path.join(HERE, "kafka", "start.sh")], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    try:
        bootstrap = open(os.path.join(run, "bootstrap")).read().strip()
        data = open(os.path.join(run, "datadir")).read().strip()
        topic_dir = os.path.join(data, "backlog-0")
        disk = disk_write_rate(data)
        prepare_backlog(bootstrap, "backlog", mb, keys)
        before = dir_bytes(topic_dir)
        t0 = compact_now(bootstrap, "backlog")
        log = os.path.join(run, "server.log")

        def passes():
            with open(log, errors="replace") as f:
                return KAFKA_CLEANED.findall(f.read())

        until, after = wait_shrunk(topic_dir, passes, t0, before)
        found = passes()
        mbs = sum(float(a.replace(",", "")) for a, _ in found)
        secs = sum(float(s.replace(",", "")) for _, s in found)
        return {
            "4. Kafka cleaner MB/s (its log: MB processed / seconds)": mbs / secs if secs else
            float("nan"),
            "4. Kafka disk sequential write MB/s (256 MB + fsync)": disk,
            "4. Kafka topic on disk before (MB)": before / MB,
            "4. Kafka topic on disk after (MB)": after / MB,
            "4. Kafka switch to compact until the last shrink (s)": until,
            "4. Kafka passes": len(found),
        }
    finally:
        subprocess.run(["bash", os.path.join(HERE, "kafka", "stop.sh")],
                       stdout=subprocess.DEVNULL)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--fjord", default=os.path.join(HERE, "..", "target", "release", "fjord"))
    a.add_argument("--runs", type=int, default=1)
    a.add_argument("--mb", type=float, default=200, help="backlog size (measures 1, 2, 4)")
    a.add_argument("--keys", type=int, default=10000)
    a.add_argument("--rate", type=int, default=2000, help="records/s of measure 2")
    a.add_argument("--seconds", type=float, default=20, help="length of measure 2's load")
    a.add_argument("--commits", type=int, default=100000, help="partition-offset commits")
    a.add_argument("--commit-calls", type=float, default=100,
                   help="commit calls (of 100 partitions each) per second in measure 3")
    a.add_argument("--measures", default="1,2,3", help="which of 1,2,3 to run")
    a.add_argument("--kafka", action="store_true", help="also measure 1 on Apache Kafka")
    args = a.parse_args()
    fjord = os.path.abspath(args.fjord)
    measures = set(args.measures.split(","))
    started = time.monotonic()
    results = [{} for _ in range(args.runs)]
    odd = []
    for i, r in enumerate(results):
        # Odd runs put the cleaner-off broker first.
        order = ("true", "false") if i % 2 == 0 else ("false", "true")
        if "1" in measures:
            out, lines, passes = cleaner_throughput(fjord, args.mb, args.keys)
            r.update(out)
            odd += lines
            for f in passes:
                print("   pass:", " ".join(f"{k}={v}" for k, v in f.items()), flush=True)
        if "2" in measures:
            for cleaner in order:
                out, lines, slow = produce_latency(fjord, args.mb, args.keys, args.rate,
                                                   args.seconds, cleaner)
                r.update(out)
                odd += lines
                print(f"   slowest record, cleaner {cleaner}: sent at {fmt_time(slow[0])} UTC,"
                      f" {slow[1]:.1f} ms", flush=True)
        if "3" in measures:
            checkpoints = [c for c in (10000, 50000, 100000) if c <= args.commits]
            if args.commits not in checkpoints:
                checkpoints.append(args.commits)
            for cleaner in order:
                rows, lines = offsets_bounded(fjord, cleaner, checkpoints, args.commit_calls)
                odd += lines
                for n, size, secs, loaded, failed in rows:
                    tag = "cleaner on " if cleaner == "true" else "cleaner off"
                    r[f"3. {tag}: after {n:>6} commits, __consumer_offsets MB"] = size
                    r[f"3. {tag}: after {n:>6} commits, restart to committed (s)"] = secs
                    r[f"3. {tag}: after {n:>6} commits, coordinator load (s)"] = loaded
                    if failed:
                        print(f"   cleaner {cleaner}, after {n} commits: committed offsets"
                              f" {failed}", flush=True)
        if args.kafka:
            r.update(kafka_throughput(args.mb, args.keys))
    for key in results[0]:
        values = [r[key] for r in results if key in r and r[key] == r[key]]
        lost = len(results) - len(values)
        key = key + (f" ({lost} runs lost the offsets)" if lost else "")
        if not values:
            print(f"{key:66s}        nan")
            continue
        if len(values) == 1:
            print(f"{key:66s} {values[0]:10.2f}")
        else:
            print(f"{key:66s} median {statistics.median(values):10.2f}   "
                  f"min {min(values):10.2f}   max {max(values):10.2f}")
    for line in odd:
        print("broker:", line)
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
