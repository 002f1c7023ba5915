"""The nemesis: injects faults into a running cluster on a seeded schedule and heals
them, writing a `fault` event at the start and end of each.

Faults:
- kill: kill -9 of a partition leader, the active controller or a random node (or always
  one of them, with `kill_target`); it is restarted after a random delay.
- pause: SIGSTOP of a leader for longer than the broker session timeout, then SIGCONT.
- partition: one node isolated, the cluster split into a majority and a minority, or a
  leader cut off from its followers while clients still reach it; healed after a delay.
- disk: a node's data directory filled to the last byte, then freed; the node is then
  restarted gracefully, as an operator would after a full disk.
- restart: a rolling restart, each node stopped with SIGTERM (controlled shutdown) and
  started again once the previous one is back.

Now and then a second fault of another kind starts while the first holds: faults combine.
Every choice comes from one seeded generator, so a run can be repeated.
"""

import random
import threading
import time


class Nemesis:
    def __init__(self, cluster, history, faults, seed, topic, partitions, session_s,
                 kill_target="any"):
        self.c = cluster
        self.h = history
        self.faults = faults
        self.rng = random.Random(seed)
        self.topic = topic
        self.partitions = partitions
        self.session_s = session_s
        self.kill_target = kill_target
        self.stop = threading.Event()
        self.lock = threading.Lock()  # one fault changes the cluster at a time
        self.injected = 0
        self.down = set()  # nodes a fault holds down on purpose
        self.thread = threading.Thread(target=self.run, name="nemesis", daemon=True)

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join()

    def hold(self, seconds):
        """Waits, unless the run is ending: then the fault is healed at once."""
        self.stop.wait(seconds)

    def event(self, fault, phase, node=None, detail=""):
        self.h.write({"type": "fault", "fault": fault, "phase": phase, "node": node,
                      "detail": detail})

    def revive(self):
        """A node that stopped on its own (not killed by a fault now holding) is noted
        and started again, as an operator or a supervisor would."""
        with self.lock:
            for n in self.c.nodes:
                if n in self.down or self.c.running(n):
                    continue
                code = self.c.procs[n].returncode if n in self.c.procs else None
                self.h.write({"type": "node_exit", "node": n, "code": code})
                self.c.start(n)

    def run(self):
        while not self.stop.is_set():
            self.hold(self.rng.uniform(3, 8))
            if self.stop.is_set():
                return
            self.revive()
            first = self.rng.choice(self.faults)
            others = [f for f in self.faults if f != first]
            second = None
            if others and self.rng.random() < 0.25:
                second = self.rng.choice(others)
            t = threading.Thread(target=self.inject, args=(first,), daemon=True)
            t.start()
            if second:
                self.hold(self.rng.uniform(1, 4))
                self.inject(second)
            t.join()

    def inject(self, fault):
        try:
            getattr(self, fault)()
        except Exception as e:  # a fault that could not be carried out is noted, not fatal
            self.h.write({"type": "nemesis_error", "fault": fault, "error": repr(e)})

    def target(self):
        """A partition leader, the active controller or any node."""
        kind = self.rng.choice(["leader", "controller", "random"])
        if self.kill_target != "any":
            kind = self.kill_target
        node = -1
        if kind == "leader":
            node = self.c.leader_of(self.topic, self.rng.randrange(self.partitions))
        elif kind == "controller":
            node = self.c.controller()
        if node not in self.c.nodes:
            kind, node = "random", self.rng.choice(self.c.nodes)
        return node, kind

    def kill(self):
        with self.lock:
            node, kind = self.target()
            self.injected += 1
            self.event("kill", "start", node, kind)
            self.down.add(node)
            self.c.kill(node)
        self.hold(self.rng.uniform(2, 10))
        with self.lock:
            self.c.start(node)
            self.down.discard(node)
            self.event("kill", "end", node)

    def pause(self):
        with self.lock:
            node = self.c.leader_of(self.topic, self.rng.randrange(self.partitions))
            if node not in self.c.nodes:
                node = self.rng.choice(self.c.nodes)
            self.injected += 1
            self.event("pause", "start", node)
            self.c.pause(node)
        self.hold(self.session_s + self.rng.uniform(1, 6))
        with self.lock:
            self.c.resume(node)
            self.event("pause", "end", node)

    def partition(self):
        nodes = list(self.c.nodes)
        with self.lock:
            kind = self.rng.choice(["isolate", "split", "leader"])
            if kind == "leader":
                leader = self.c.leader_of(self.topic, self.rng.randrange(self.partitions))
                if leader not in nodes:
                    kind = "isolate"
                else:
                    a = [leader]
            if kind == "isolate":
                a = [self.rng.choice(nodes)]
            elif kind == "split":
                self.rng.shuffle(nodes)
                a = nodes[: (len(nodes) - 1) // 2] or nodes[:1]
            b = [n for n in self.c.nodes if n not in a]
            self.injected += 1
            self.event("partition", "start", a[0] if len(a) == 1 else None,
                       f"{kind}: {sorted(a)} | {sorted(b)}")
            self.c.net.split(a, b)
        self.hold(self.rng.uniform(5, 15))
        with self.lock:
            for x in a:
                for y in b:
                    self.c.net.undrop(x, y)
                    self.c.net.undrop(y, x)
            self.event("partition", "end", a[0] if len(a) == 1 else None)

    def disk(self):
        with self.lock:
            node = self.rng.choice(self.c.nodes)
            self.injected += 1
            self.event("disk", "start", node)
            self.c.fill_disk(node)
        self.hold(self.rng.uniform(3, 10))
        with self.lock:
            self.c.free_disk(node)
            self.down.add(node)
            code = self.c.terminate(node)
            self.c.start(node)
            self.down.discard(node)
            self.event("disk", "end", node, f"restarted (exit {code})")

    def restart(self):
        self.injected += 1
        for node in list(self.c.nodes):
            if self.stop.is_set():
                return
            with self.lock:
                self.event("restart", "start", node)
                self.down.add(node)
                code = self.c.terminate(node)
                self.c.start(node)
                self.down.discard(node)
            # As an operator does: the next node goes only once this one is back in
            # every ISR, so a rolling restart never takes two replicas at once.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not self.stop.is_set():
                if self.c.healthy(self.topic):
                    break
                time.sleep(0.5)
            self.event("restart", "end", node, f"exit {code}")
