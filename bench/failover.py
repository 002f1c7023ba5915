"""Time until acks=all producers resume after the partition leader is killed (workload j).

    python bench/failover.py BOOTSTRAP TOPIC PIDS_JSON

PIDS_JSON maps broker id to process id ({"1": 1234, ...}). The script produces 1 KiB
records at a fixed rate with acks=all and retries to partition 0 of TOPIC, kills -9 the
broker that leads it after a few seconds, keeps producing, and prints one line:

    leader <id> killed; acks resumed after <seconds> s; <n> acknowledged, <m> failed

"Resumed" is the gap between the kill and the first acknowledgement of a record sent
after it. Records in flight at the kill are retried by the client and count too.
"""
import json
import os
import signal
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

RATE = 500  # records/s
BEFORE_S = 5.0
AFTER_S = 30.0


def leader_of(bootstrap, topic):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return md.topics[topic].partitions[0].leader


def main():
    bootstrap, topic, pids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    acked, failed = [], []
    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 0,
        "message.timeout.ms": 120000,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    value = b"x" * 1024
    start = time.monotonic()
    killed_at = None
    leader = None
    sent_after_kill = None
    i = 0
    while True:
        now = time.monotonic()
        elapsed = now - start
        if killed_at is None and elapsed >= BEFORE_S:
            leader = leader_of(bootstrap, topic)
            os.kill(pids[str(leader)], signal.SIGKILL)
            killed_at = time.monotonic()
            sent_after_kill = i
        if killed_at is not None and now - killed_at >= AFTER_S:
            break
        due = start + i / RATE
        if now < due:
            p.poll(min(due - now, 0.01))
            continue
        p.produce(topic, value, partition=0, on_delivery=lambda e, m, n=i: (
            (failed if e else acked).append((time.monotonic(), n))))
        i += 1
        p.poll(0)
    p.flush(120)
    after = [t for t, n in acked if n >= sent_after_kill]
    resumed = (min(after) - killed_at) if after else float("nan")
    print(f"leader {leader} killed; acks resumed after {resumed:.2f} s; "
          f"{len(acked)} acknowledged, {len(failed)} failed")


if __name__ == "__main__":
    main()
