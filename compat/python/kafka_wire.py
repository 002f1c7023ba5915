"""A few raw Kafka requests, encoded by hand, for checks that a full client hides
(a client refuses to produce to a partition it knows does not exist, and retries or
swallows per-partition errors). Only non-flexible versions that Kafka 4.x still serves:
Produce v3 and Fetch v4. Record batches are built with kafka-python's batch builder."""
import socket
import struct
import time

from kafka.record.default_records import DefaultRecordBatchBuilder

PRODUCE, FETCH = 0, 1


def _str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _nullable_str(s):
    return struct.pack(">h", -1) if s is None else _str(s)


def record_batch(values, timestamp_ms=None):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    for i, v in enumerate(values):
        b.append(i, timestamp=ts, key=None, value=v, headers=[])
    return bytes(b.build())


class Reader:
    def __init__(self, data):
        self.d, self.i = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.i)
        self.i += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.d[self.i:self.i + n].decode()
        self.i += n
        return s

    def nbytes(self):
        n = self.take(">i")
        if n < 0:
            return None
        b = self.d[self.i:self.i + n]
        self.i += n
        return b


class Conn:
    def __init__(self, bootstrap, timeout=15.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.corr = 0

    def close(self):
        self.sock.close()

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)

    def request(self, api_key, version, body):
        self.corr += 1
        header = struct.pack(">hhi", api_key, version, self.corr) + _nullable_str("compat-wire")
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self._recv_exact(4))[0]
        data = self._recv_exact(size)
        corr = struct.unpack_from(">i", data)[0]
        assert corr == self.corr, f"correlation id {corr} != {self.corr}"
        return Reader(data[4:])

    def produce_v3(self, topic, partition, batch, acks=-1, timeout_ms=10000):
        """Returns {(topic, partition): (error_code, base_offset)}."""
        body = (_nullable_str(None) + struct.pack(">hi", acks, timeout_ms)
                + struct.pack(">i", 1) + _str(topic)
                + struct.pack(">i", 1) + struct.pack(">i", partition)
                + struct.pack(">i", len(batch)) + batch)
        r = self.request(PRODUCE, 3, body)
        out = {}
        for _ in range(r.take(">i")):
            name = r.string()
            for _ in range(r.take(">i")):
                idx, err, base, _append_time = r.take(">ihqq")
                out[(name, idx)] = (err, base)
        return out

    def fetch_v4(self, topic, partition, offset, max_wait_ms=500, min_bytes=1,
                 max_bytes=1 << 20):
        """Returns {(topic, partition): (error_code, high_watermark, records_bytes)}."""
        body = (struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
                + struct.pack(">i", 1) + _str(topic)
                + struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes))
        r = self.request(FETCH, 4, body)
        r.take(">i")  # throttle_time_ms
        out = {}
        for _ in range(r.take(">i")):
            name = r.string()
            for _ in range(r.take(">i")):
                idx, err, hw, _lso = r.take(">ihqq")
                n_aborted = r.take(">i")
                for _ in range(max(n_aborted, 0)):
                    r.take(">qq")
                records = r.nbytes()
                out[(name, idx)] = (err, hw, records)
        return out
