"""Server fixture for the Python compat suite.

Two modes:
  * FJORD_BIN=/path/to/fjord  -- the harness starts `fjord server` itself on a free loopback
    port with a temporary data dir, and can kill -9 / restart it (durability tests).
  * KAFKA_BOOTSTRAP=host:port -- an already running broker (e.g. Apache Kafka from
    bench/kafka/start.sh, to validate the tests). Nothing is started; tests that need to
    restart or reconfigure the broker are skipped in this mode. KAFKA_BOOTSTRAP_IS_FJORD=1
    says that broker is Fjord (compat/on-cluster.sh sets it for its cluster), so tests
    expect Fjord's answers where they differ from Apache Kafka's.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

START_TIMEOUT_S = 20.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host, port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with code {proc.returncode} during startup")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"broker did not accept connections on {host}:{port} within {timeout}s")


# Every harness-started broker, so a failing test can show what the brokers logged.
LIVE_BROKERS = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for b in LIVE_BROKERS:
        if b.log_path and os.path.exists(b.log_path):
            with open(b.log_path, "rb") as f:
                tail = f.read()[-6000:].decode(errors="replace")
            report.sections.append((f"broker {b.bootstrap} log (tail)", tail))


class Broker:
    """A broker under test. `managed` is True when this harness owns the process."""

    def __init__(self, fjord_bin=None, bootstrap=None, overrides=None, extra_args=None):
        self.fjord_bin = fjord_bin
        self.overrides = list(overrides or [])
        # More `fjord server` arguments, e.g. ["--add-scram", "SCRAM-SHA-256=[...]"].
        self.extra_args = list(extra_args or [])
        self.proc = None
        self.data_dir = None
        self.log_path = None
        if fjord_bin:
            self.managed = True
            self.port = free_port()
            self.bootstrap = f"127.0.0.1:{self.port}"
            self.data_dir = tempfile.mkdtemp(prefix="fjord-compat-")
            self.log_path = os.path.join(self.data_dir + ".log")
            LIVE_BROKERS.append(self)
        else:
            self.managed = False
            self.bootstrap = bootstrap

    # -- process control (managed mode only) --
    def start(self):
        assert self.managed
        cmd = [self.fjord_bin, "server", "--listen", self.bootstrap, "--data-dir", self.data_dir]
        for kv in self.overrides:
            cmd += ["--override", kv]
        cmd += self.extra_args
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_for_port("127.0.0.1", self.port, START_TIMEOUT_S, self.proc)
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill9(self):
        assert self.managed and self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, hard=True):
        """Kill (-9 when hard) and start again on the same port and data dir."""
        if hard:
            self.kill9()
        else:
            self.stop()
        self.start()

    def cleanup(self):
        if self in LIVE_BROKERS:
            LIVE_BROKERS.remove(self)
        self.stop()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)


def _mode():
    fjord_bin = os.environ.get("FJORD_BIN")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if fjord_bin and bootstrap:
        raise pytest.UsageError("set only one of FJORD_BIN and KAFKA_BOOTSTRAP")
    if not fjord_bin and not bootstrap:
        raise pytest.UsageError("set FJORD_BIN=/path/to/fjord or KAFKA_BOOTSTRAP=host:port")
    return fjord_bin, bootstrap


@pytest.fixture(scope="session")
def broker():
    fjord_bin, bootstrap = _mode()
    b = Broker(fjord_bin=fjord_bin, bootstrap=bootstrap)
    if b.managed:
        try:
            b.start()
        except Exception:
            with open(b.log_path, "rb") as f:
                print(f.read()[-4000:].decode(errors="replace"))
            b.cleanup()
            raise
    yield b
    if b.managed:
        if b.proc is not None and b.proc.poll() is not None:
            print(f"\nbroker had exited with code {b.proc.returncode}; log follows:")
            with open(b.log_path, "rb") as f:
                print(f.read()[-4000:].decode(errors="replace"))
        b.cleanup()


@pytest.fixture
def restartable_broker(broker):
    """The session broker, only where this harness can kill -9 and restart it."""
    if not broker.managed:
        pytest.skip("needs a broker started by the harness (FJORD_BIN); "
                    "cannot kill -9 an external KAFKA_BOOTSTRAP broker")
    yield broker
    if broker.proc is None:  # a failed test may leave it down: bring it back for the rest
        broker.start()


@pytest.fixture
def broker_factory():
    """Start an extra harness-owned broker with --override settings (FJORD_BIN mode only).

    With KAFKA_BOOTSTRAP, a test may instead read a second external broker's address from an
    environment variable it names; see test_auto_create.py.
    """
    started = []

    def make(overrides):
        fjord_bin, _ = _mode()
        if not fjord_bin:
            return None
        b = Broker(fjord_bin=fjord_bin, overrides=overrides)
        started.append(b)
        b.start()
        return b

    yield make
    for b in started:
        b.cleanup()


@pytest.fixture
def bootstrap(broker):
    return broker.bootstrap


@pytest.fixture
def is_fjord(broker):
    return broker.managed or os.environ.get("KAFKA_BOOTSTRAP_IS_FJORD") == "1"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
