"""Producer benchmark with librdkafka (confluent-kafka): records/s, MB/s and delivery
latency percentiles for one acks setting against one broker."""

import argparse
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="bench")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--acks", default="1")
    args = ap.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics([NewTopic(args.topic, args.partitions, 1)])
    for f in futures.values():
        try:
            f.result(timeout=30)
        except Exception as e:  # already exists from an earlier run: fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise

    p = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 2_000_000,
    })
    value = b"x" * args.size
    latencies = []
    errors = [0]

    def on_delivery(err, msg, sent=None):
        if err is not None:
            errors[0] += 1

    start = time.perf_counter()
    for i in range(args.records):
        t0 = time.perf_counter()

        def cb(err, msg, t0=t0):
            if err is not None:
                errors[0] += 1
            else:
                latencies.append(time.perf_counter() - t0)

        while True:
            try:
                p.produce(args.topic, value, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    mb = args.records * args.size / elapsed / 1e6
    print(
        f"acks={args.acks} records={args.records} size={args.size} "
        f"records/s={args.records / elapsed:,.0f} MB/s={mb:.1f} "
        f"p50_ms={pct(0.5):.1f} p99_ms={pct(0.99):.1f} max_ms={pct(1.0):.1f} errors={errors[0]}"
    )


if __name__ == "__main__":
    main()
