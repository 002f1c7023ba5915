#!/usr/bin/env python3
"""Checks a Fjord fault-injection history (JSON lines written by the workload) for
safety violations and measures availability around each injected fault.

    python chaos/checker.py HISTORY.jsonl [--report OUT.md] [--plot OUT.png]

The history is streamed once: only the per-value and per-offset state the checks need
is kept, so a run of a million events fits comfortably in memory. `check(events)`
takes any iterable of event dicts and is what the tests drive directly.
"""

import argparse
import bisect
import gc
import json
import os
import sys
from array import array
from collections import defaultdict
from dataclasses import dataclass, field

# Examples are for a human to start digging; a handful per kind is enough and keeps
# the report readable when something fails thousands of times.
MAX_EXAMPLES = 10

# Violation kinds, in report order. Every one of them must be 0 for a PASS.
KINDS = [
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("reordered", "reordered"),
    ("inconsistent_offsets", "inconsistent offsets"),
    ("nonmonotonic_polls", "non-monotonic polls"),
    ("backward_commits", "committed offsets going backwards"),
    # Transactional checks: 0 until the txn workload writes txn_* events.
    ("aborted_reads", "aborted reads (read_committed)"),
    ("half_transactions", "half-visible transactions"),
]
FAULT_TYPES = ["kill", "pause", "partition", "disk", "restart"]


class HistoryError(Exception):
    """The history cannot be read: bad JSON, or an event missing a field its type needs."""


@dataclass
class FaultStats:
    injected: int = 0
    # Longest wait from a fault's start to the next ack, and when that fault started.
    max_unavailable: float = 0.0
    max_at: float | None = None
    # Faults after whose start no ack ever came (the wait then runs to the end of the run).
    never_recovered: int = 0


@dataclass
class Result:
    meta: dict = field(default_factory=dict)
    counts: dict = field(default_factory=lambda: {k: 0 for k, _ in KINDS})
    examples: dict = field(default_factory=lambda: {k: [] for k, _ in KINDS})
    # Informational, never a violation: indeterminate writes that did land, and records
    # in the final read no send explains.
    unacked_present: int = 0
    unacked_present_examples: list = field(default_factory=list)
    unknown_final: int = 0
    totals: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)  # fault type -> FaultStats
    fault_windows: list = field(default_factory=list)  # (type, node, start, end)
    max_ack_gap: float = 0.0
    max_ack_gap_at: float | None = None
    ignored_types: dict = field(default_factory=dict)

    @property
    def violations(self):
        return sum(self.counts.values())

    @property
    def verdict(self):
        # A run that acknowledged nothing exercised nothing, so it cannot pass.
        if self.totals.get("acked", 0) == 0:
            return "FAIL"
        return "PASS" if self.violations == 0 else "FAIL"

    @property
    def injected(self):
        return sum(s.injected for s in self.faults.values())

    def summary_line(self):
        c = self.counts
        return (
            f"faults: {self.injected} injected; acked: {self.totals.get('acked', 0)}; "
            f"lost: {c['lost']}; duplicated: {c['duplicated']}; reordered: {c['reordered']}; "
            f"inconsistent offsets: {c['inconsistent_offsets']}; verdict: {self.verdict}"
        )


def parse_seq(value):
    """The SEQ of a value "P-SEQ", or None. Producer names may contain '-', so the
    split is on the last one."""
    try:
        return int(value.rsplit("-", 1)[1])
    except (AttributeError, IndexError, ValueError):
        return None


def fmt_t(t):
    return f"t={t:.1f}s" if isinstance(t, (int, float)) else "t=?"


def txn_name(producer, txn):
    return f"transaction {txn} of producer {producer}" if txn is not None else \
        f"a transaction of producer {producer}"


def describe(consumer, t):
    # Who saw a value at an offset: a group consumer's poll, or the final read (None).
    return "final read" if consumer is None else f"poll by {consumer} {fmt_t(t)}"


class Checker:
    """Streaming state for one history: feed events with add(), then finish()."""

    def __init__(self):
        self.r = Result()
        self.last_t = 0.0
        # Only membership matters for sends: was a value in the final read ever sent?
        self.sent = set()
        self.failed = set()
        # value -> (partition, offset, producer, key, t)
        self.acked = {}
        self.ack_times = array("d")
        self.n_sent = self.n_failed = self.n_polled = self.n_final = 0
        # Final read: value -> [(partition, offset)], and (partition, offset) -> value.
        self.final = {}
        self.final_at = {}
        # First value seen at each (partition, offset) in polls or the final read.
        self.seen_at = {}
        self.inconsistent = set()
        # consumer -> partition -> (offset, t) of its last poll since that partition was
        # last assigned or revoked.
        self.poll_pos = defaultdict(dict)
        # partition -> (offset, consumer, t) of the highest commit so far.
        self.commit_pos = {}
        # fault type, node -> [start t] not yet ended
        self.open_faults = defaultdict(list)
        # Transactions, checked at the end since a poll may be logged before its
        # producer gets to log the commit or abort.
        # (outcome, producer, txn, values, t): outcome "commit", "abort" or "unknown".
        self.txns = []
        self.txn_committed = {}  # value -> (producer, txn, t)
        # Values that must never be read with read_committed: aborted, or of a
        # transaction of unknown outcome whose commit was never asked for.
        # value -> (producer, txn, t, why)
        self.txn_aborted = {}
        self.txn_unknown = {}  # value -> (producer, txn, t)
        self.txn_writes = {}  # value -> (partition, offset, key) from its delivery report
        self.rc_polls = []  # (consumer, partition, offset, value, t)
        self.final_rc = False  # the final read was read_committed
        # Copier workload: the output topic's read_committed read, partition -> [(offset,
        # value)]; the copier group's committed input offsets; each slot's final copy.
        self.copy_workload = False
        self.copy_parts = defaultdict(list)
        self.copier_committed = {}
        self.copier_done = {}
        self.copier_runs = self.copier_killed = self.copier_failed = 0
        # Looked up once: add() runs for every one of possibly millions of events.
        self.handlers = {name[3:]: getattr(self, name) for name in dir(self)
                         if name.startswith("on_")}

    def example(self, kind, text):
        self.r.counts[kind] += 1
        if len(self.r.examples[kind]) < MAX_EXAMPLES:
            self.r.examples[kind].append(text)

    def add(self, ev):
        try:
            typ = ev["type"]
            t = float(ev.get("t", self.last_t))
            handler = self.handlers.get(typ) if isinstance(typ, str) else None
            if handler is None:
                # Unknown types are future workloads' business, not a broken history.
                self.r.ignored_types[str(typ)] = self.r.ignored_types.get(str(typ), 0) + 1
                return
            if t > self.last_t:
                self.last_t = t
            handler(ev, t)
        except (KeyError, TypeError, ValueError) as e:
            raise HistoryError(f"malformed {ev.get('type', '?') if isinstance(ev, dict) else ''} "
                               f"event {ev!r}: {e!r}") from None

    # --- producers ---

    def on_meta(self, ev, t):
        self.r.meta = {k: v for k, v in ev.items() if k not in ("type", "t")}

    def on_send(self, ev, t):
        self.n_sent += 1
        self.sent.add(ev["value"])

    def on_ack(self, ev, t):
        v = ev["value"]
        # A client may acknowledge without an offset (a retried batch the broker already
        # had, answered as a duplicate): acked all the same, at an offset not known.
        offset = ev.get("offset")
        self.acked[v] = (int(ev["partition"]), -1 if offset is None else int(offset),
                         ev["producer"], ev["key"], t)
        self.ack_times.append(t)

    def on_fail(self, ev, t):
        self.n_failed += 1
        self.failed.add(ev["value"])

    # --- consumers ---

    def observe(self, p, o, v, who, t):
        """One (partition, offset) must only ever hold one value, whoever reads it."""
        prev = self.seen_at.setdefault((p, o), (v, who, t))
        if prev[0] != v and (p, o) not in self.inconsistent:
            self.inconsistent.add((p, o))
            self.example("inconsistent_offsets",
                         f"p{p}/o{o}: {prev[0]!r} ({describe(prev[1], prev[2])}) vs "
                         f"{v!r} ({describe(who, t)})")

    def on_assign(self, ev, t):
        # A rebalance legitimately rewinds a partition to its committed offset, so
        # monotonicity is only required between two assignment changes.
        pos = self.poll_pos[ev["consumer"]]
        for p in ev["partitions"]:
            pos.pop(int(p), None)

    on_revoke = on_assign

    def on_poll(self, ev, t):
        self.n_polled += 1
        c, p, o, v = ev["consumer"], int(ev["partition"]), int(ev["offset"]), ev["value"]
        self.observe(p, o, v, c, t)
        pos = self.poll_pos[c]
        prev = pos.get(p)
        if prev is not None and o <= prev[0]:
            self.example("nonmonotonic_polls",
                         f"consumer {c} p{p}: offset {o} {fmt_t(t)} after offset {prev[0]} "
                         f"{fmt_t(prev[1])}, no assignment change between")
        pos[p] = (o, t)
        if ev.get("isolation") == "read_committed":
            self.rc_polls.append((c, p, o, v, t))

    def on_commit(self, ev, t):
        c, p, o = ev["consumer"], int(ev["partition"]), int(ev["offset"])
        prev = self.commit_pos.get(p)
        if prev is not None and o < prev[0]:
            self.example("backward_commits",
                         f"p{p}: {c} committed {o} {fmt_t(t)} after {prev[1]} committed "
                         f"{prev[0]} {fmt_t(prev[2])}")
        if prev is None or o >= prev[0]:
            self.commit_pos[p] = (o, c, t)

    def on_final(self, ev, t):
        self.n_final += 1
        p, o, v = int(ev["partition"]), int(ev["offset"]), ev["value"]
        if ev.get("isolation") == "read_committed":
            self.final_rc = True
        self.observe(p, o, v, None, t)
        self.final.setdefault(v, []).append((p, o))
        self.final_at.setdefault((p, o), v)

    # --- nemesis ---

    def on_fault(self, ev, t):
        f, node, phase = ev["fault"], ev.get("node"), ev["phase"]
        if phase == "start":
            self.r.faults.setdefault(f, FaultStats()).injected += 1
            self.open_faults[(f, node)].append(t)
        elif phase == "end":
            # Match the oldest open start of the same fault on the same node; the
            # nemesis may overlap faults, and an end may omit the node.
            key = (f, node)
            if not self.open_faults.get(key):
                key = next((k for k, s in self.open_faults.items() if k[0] == f and s), None)
            if key is not None:
                self.r.fault_windows.append((f, key[1], self.open_faults[key].pop(0), t))
        else:
            raise ValueError(f"unknown phase {phase!r}")

    # --- transactions (txn workload) ---

    # A transaction's values are acknowledged when its commit returns: the time of that
    # counts as an ack's for availability, and its values are then held to everything an
    # acked value is (present once, where its write said, in order).

    def on_txn_write(self, ev, t):
        offset = ev.get("offset")
        self.txn_writes[ev["value"]] = (int(ev["partition"]),
                                        -1 if offset is None else int(offset), ev.get("key"))

    def on_txn_commit(self, ev, t):
        prod, txn, values = ev["producer"], ev.get("txn"), list(ev["values"])
        self.txns.append(("commit", prod, txn, values, t))
        for v in values:
            self.txn_committed[v] = (prod, txn, t)
            self.ack_times.append(t)

    def on_txn_abort(self, ev, t):
        prod, txn, values = ev["producer"], ev.get("txn"), list(ev["values"])
        self.txns.append(("abort", prod, txn, values, t))
        for v in ev["values"]:
            self.txn_aborted[v] = (prod, txn, t, "aborted")

    def on_txn_unknown(self, ev, t):
        # It may have committed or aborted; either is fine, half of it is not. But a
        # transaction whose commit was never asked for cannot have committed.
        prod, txn, values = ev["producer"], ev.get("txn"), list(ev["values"])
        self.txns.append(("unknown", prod, txn, values, t))
        for v in values:
            self.txn_unknown[v] = (prod, txn, t)
            if ev.get("commit_requested") is False:
                self.txn_aborted[v] = (prod, txn, t, "ended without a commit ever asked for")

    # --- the copier workload ---

    def on_copier_start(self, ev, t):
        self.copy_workload = True
        self.copier_runs += 1

    def on_copier_exit(self, ev, t):
        self.copy_workload = True
        if ev.get("killed"):
            self.copier_killed += 1
        elif ev["code"] != 0:
            self.copier_failed += 1

    def on_copier_done(self, ev, t):
        self.copy_workload = True
        self.copier_done[int(ev["slot"])] = bool(ev["ok"])

    def on_copier_committed(self, ev, t):
        self.copy_workload = True
        self.copier_committed[int(ev["partition"])] = int(ev["offset"])

    def on_copy_final(self, ev, t):
        self.copy_workload = True
        self.copy_parts[int(ev["partition"])].append((int(ev["offset"]), ev["value"]))

    # --- end of history ---

    def finish(self):
        r = self.r
        for (f, node), starts in self.open_faults.items():
            for s in starts:
                r.fault_windows.append((f, node, s, self.last_t))
        r.fault_windows.sort(key=lambda w: w[2])
        for v, (prod, txn, t) in self.txn_committed.items():
            if v not in self.acked:
                p, o, key = self.txn_writes.get(v, (-1, -1, None))
                self.acked[v] = (p, o, prod, key, t)
        self.check_lost_and_duplicated()
        self.check_ack_offsets()
        self.check_order()
        self.check_transactions()
        self.check_copies()
        self.check_availability()
        r.totals = {
            "sent": self.n_sent,
            "acked": len(self.acked),
            "failed": self.n_failed,
            "polled": self.n_polled,
            "final records": self.n_final,
        }
        if self.copy_workload:
            r.totals["copied"] = sum(len(x) for x in self.copy_parts.values())
            r.totals["copiers run"] = self.copier_runs
            r.totals["copiers killed"] = self.copier_killed
            r.totals["copiers failed"] = self.copier_failed
        if self.txns:
            for outcome in ("commit", "abort", "unknown"):
                r.totals[f"txn {outcome}"] = sum(1 for x in self.txns if x[0] == outcome)
        return r

    def check_lost_and_duplicated(self):
        r = self.r
        for v, (p, o, prod, key, t) in self.acked.items():
            if v not in self.final:
                if v in self.txn_committed:
                    _, txn, _ = self.txn_committed[v]
                    where = f"written at p{p}/o{o}" if p >= 0 else "no write reported"
                    self.example("lost", f"{v!r} of {txn_name(prod, txn)}, committed "
                                         f"{fmt_t(t)}, {where}, absent from the final read")
                else:
                    self.example("lost", f"{v!r} (key {key!r}) acked at p{p}/o{o} {fmt_t(t)}, "
                                         f"absent from the final read")
        for v, places in self.final.items():
            if len(places) > 1:
                where = ", ".join(f"p{p}/o{o}" for p, o in sorted(places)[:4])
                self.example("duplicated", f"{v!r} at {len(places)} places: {where}")
            if v not in self.acked:
                # A failed or never-answered send is indeterminate: landing once is fine.
                if v in self.sent:
                    r.unacked_present += 1
                    if len(r.unacked_present_examples) < MAX_EXAMPLES:
                        if v in self.txn_unknown:
                            why = f"transaction {self.txn_unknown[v][1]}, outcome unknown"
                        elif v in self.txn_aborted:
                            why = f"transaction {self.txn_aborted[v][1]}, aborted"
                        else:
                            why = "failed" if v in self.failed else "never answered"
                        p, o = places[0]
                        r.unacked_present_examples.append(f"{v!r} ({why}) at p{p}/o{o}")
                else:
                    r.unknown_final += 1

    def check_ack_offsets(self):
        # The offset an ack reports is a promise about where the record lives.
        for v, (p, o, prod, key, t) in self.acked.items():
            if o < 0:
                continue
            there = self.final_at.get((p, o))
            if there is not None and there != v:
                if (p, o) not in self.inconsistent:
                    self.inconsistent.add((p, o))
                    self.example("inconsistent_offsets",
                                 f"p{p}/o{o}: acked as {v!r} {fmt_t(t)}, final read has {there!r}")
            elif there is None and v in self.final:
                if (p, o) not in self.inconsistent:
                    self.inconsistent.add((p, o))
                    q, n = self.final[v][0]
                    self.example("inconsistent_offsets",
                                 f"{v!r} acked at p{p}/o{o} {fmt_t(t)}, final read has it at p{q}/o{n}")

    def check_order(self):
        """Idempotent producers keep order: per producer, within a partition (and so
        within a key), records must sit at offsets increasing with their sequence number.
        Only acked values are held to this; indeterminate ones promised nothing."""
        flagged = set()

        def walk(group_desc, items):
            # items: (offset, seq, value) in one partition; sort by offset, then every
            # value must carry a higher seq than all before it.
            items.sort()
            hi = None
            for o, seq, v in items:
                if hi is not None and seq < hi[1]:
                    if v not in flagged:
                        flagged.add(v)
                        self.example("reordered", f"{group_desc}: {v!r} at offset {o} after "
                                                  f"{hi[2]!r} at offset {hi[0]}")
                elif hi is None or seq > hi[1]:
                    hi = (o, seq, v)

        by_prod_part = defaultdict(list)
        by_prod_key = defaultdict(list)
        for v, (_, _, prod, key, _) in self.acked.items():
            seq = parse_seq(v)
            places = self.final.get(v)
            if seq is None or not places:
                continue
            # A duplicated value is judged by its first copy; the copy itself is
            # already counted as a duplicate.
            p, o = places[0] if len(places) == 1 else min(places, key=lambda x: (x[1], x[0]))
            by_prod_part[(prod, p)].append((o, seq, v))
            if key is not None:
                by_prod_key[(prod, key)].append((p, o, seq, v))

        for (prod, key), items in by_prod_key.items():
            parts = defaultdict(list)
            for p, o, seq, v in items:
                parts[p].append((o, seq, v))
            if len(parts) > 1:
                # One key maps to one partition; a split key has no order to speak of.
                # The partition of the key's first value is the home; others are flagged.
                home = min(items, key=lambda x: x[2])[0]
                for p, o, seq, v in items:
                    if p != home and v not in flagged:
                        flagged.add(v)
                        self.example("reordered", f"producer {prod} key {key!r}: {v!r} at "
                                                  f"p{p}/o{o}, the key's earlier values are in p{home}")
            for p, part_items in parts.items():
                walk(f"producer {prod} key {key!r} p{p}", part_items)
        for (prod, p), items in by_prod_part.items():
            walk(f"producer {prod} p{p}", items)

    def check_transactions(self):
        """Transactional checks; inert until the txn workload logs txn_* events."""
        def whence(v):
            prod, txn, t, why = self.txn_aborted[v]
            return f"{txn_name(prod, txn)}, {why} {fmt_t(t)}"

        # Aborted read: a read_committed reader must never see a record of an aborted
        # transaction (nor of one that never asked to commit).
        for c, p, o, v, t in self.rc_polls:
            if v in self.txn_aborted:
                self.example("aborted_reads",
                             f"consumer {c} read {v!r} at p{p}/o{o} {fmt_t(t)}, from {whence(v)}")
        if self.final_rc:
            for v in self.txn_aborted:
                for p, o in self.final.get(v, ()):
                    self.example("aborted_reads",
                                 f"final read (read_committed) found {v!r} at p{p}/o{o}, "
                                 f"from {whence(v)}")
        # A transaction is all or nothing in the final read. A committed one wholly
        # absent is lost (its values were judged as acked); partly present breaks
        # atomicity. One of unknown outcome may be either, never half. Read with
        # read_uncommitted, aborted and unknown ones may show what got written, so only
        # committed ones are held to it then.
        for outcome, prod, txn, values, t in self.txns:
            if outcome != "commit" and not self.final_rc:
                continue
            present = [v for v in values if v in self.final]
            if present and len(present) < len(values):
                missing = [v for v in values if v not in self.final]
                what = {"commit": "committed", "abort": "aborted",
                        "unknown": "of unknown outcome, ended"}[outcome]
                self.example("half_transactions",
                             f"{txn_name(prod, txn)} ({len(values)} values) {what} "
                             f"{fmt_t(t)}; the final read has "
                             f"{', '.join(map(repr, present[:3]))} but lacks "
                             f"{', '.join(map(repr, missing[:3]))}")

    def check_copies(self):
        """The copier workload: the output topic, read with read_committed, must hold the
        input topic's records exactly once, each in the partition it came from and in the
        input's order, and exactly those below the copier group's committed offset of that
        partition (the offsets commit with the copies, in one transaction). Once each
        slot's final copier reached the input's end, that is the whole input."""
        if not self.copy_workload:
            return
        inputs = defaultdict(list)  # partition -> [(offset, value)] of the input's read
        for (p, o), v in self.final_at.items():
            inputs[p].append((o, v))
        where_in = {}  # value -> (partition, offset) in the input
        for p, items in inputs.items():
            items.sort()
            for o, v in items:
                where_in.setdefault(v, (p, o))
        committed = {p: max(0, self.copier_committed.get(p, 0)) for p in inputs}
        seen = {}  # copied value -> (partition, offset) of its first copy
        for p in sorted(self.copy_parts):
            last_in = None  # the input offset of the previous copy in this partition
            for o, v in sorted(self.copy_parts[p]):
                if v in seen:
                    q, n = seen[v]
                    self.example("duplicated", f"{v!r} copied twice: output p{q}/o{n} and "
                                               f"p{p}/o{o}")
                    continue
                seen[v] = (p, o)
                src = where_in.get(v)
                if src is None:
                    self.example("inconsistent_offsets",
                                 f"output p{p}/o{o} holds {v!r}, which the input never held")
                    continue
                sp, so = src
                if sp != p:
                    self.example("reordered", f"{v!r} from input p{sp}/o{so} was copied "
                                              f"into output partition {p}")
                    continue
                if last_in is not None and so < last_in:
                    self.example("reordered", f"output p{p}/o{o} holds input offset {so}, "
                                              f"after input offset {last_in}")
                last_in = so if last_in is None else max(last_in, so)
                if so >= committed.get(p, 0):
                    self.example("inconsistent_offsets",
                                 f"{v!r} (input p{p}/o{so}) is copied, but the copier "
                                 f"group's committed offset of p{p} is {committed.get(p, 0)}")
        # Every input record must be in the copy. Below the committed offset a missing
        # one was lost by the transaction that committed that offset; above it, the
        # copiers never got there (each partition's count is reported once).
        for p, items in sorted(inputs.items()):
            never = 0
            for o, v in items:
                if v in seen:
                    continue
                if o < committed[p]:
                    self.example("lost", f"{v!r} at input p{p}/o{o} is not in the copy, "
                                         f"though the committed offset of p{p} is {committed[p]}")
                else:
                    never += 1
            if never:
                done = "reported done" if self.copier_done.get(p) else "never done"
                self.r.counts["lost"] += never - 1
                self.example("lost", f"{never} input records of p{p} from offset {committed[p]} "
                                     f"(the committed offset) on were never copied; the "
                                     f"final copier of p{p} {done}")

    def check_availability(self):
        r = self.r
        times = sorted(self.ack_times)
        for f, node, start, end in r.fault_windows:
            st = r.faults.setdefault(f, FaultStats())
            i = bisect.bisect_right(times, start)
            if i < len(times):
                wait = times[i] - start
            else:
                wait = self.last_t - start
                st.never_recovered += 1
            if st.max_at is None or wait > st.max_unavailable:
                st.max_unavailable, st.max_at = wait, start
        for a, b in zip(times, times[1:]):
            if b - a > r.max_ack_gap:
                r.max_ack_gap, r.max_ack_gap_at = b - a, a


def check(events):
    """Checks an iterable of event dicts and returns the Result."""
    c = Checker()
    for ev in events:
        c.add(ev)
    return c.finish()


def read_events(path):
    """Streams the history's events; raises HistoryError on anything unreadable."""
    # raw_decode on one shared decoder skips json.loads' per-call wrapping, a
    # noticeable share of the time on a history of millions of lines.
    decode = json.JSONDecoder().raw_decode
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise HistoryError(f"cannot open {path}: {e.strerror}") from None
    with f:
        try:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    ev, end = decode(line)
                except json.JSONDecodeError as e:
                    raise HistoryError(f"{path}:{n}: not JSON ({e.msg})") from None
                if end != len(line) or not isinstance(ev, dict) or "type" not in ev:
                    raise HistoryError(f"{path}:{n}: not one event object with a type")
                yield ev
        except UnicodeDecodeError:
            raise HistoryError(f"{path}: not UTF-8 text") from None


def render(r):
    """The report as Markdown: readable printed, and the same text for --report."""
    m = r.meta
    out = []
    title = (f"# Fjord chaos check: {m.get('system', '?')}, {m.get('nodes', '?')} nodes, "
             f"seed {m.get('seed', '?')}, workload {m.get('workload', '?')}")
    out += [title, ""]
    if m:
        out += ["Run: " + ", ".join(f"{k}={v}" for k, v in m.items()), ""]

    out += ["## Violations", "", "| kind | count |", "|---|---:|"]
    out += [f"| {label} | {r.counts[k]} |" for k, label in KINDS]
    out.append("")
    for k, label in KINDS:
        if r.examples[k]:
            more = r.counts[k] - len(r.examples[k])
            out += [f"### {label}", ""]
            out += [f"- {e}" for e in r.examples[k]]
            if more > 0:
                out.append(f"- ... and {more} more")
            out.append("")
    out += [f"Unacked but present (informational, indeterminate writes that landed): "
            f"{r.unacked_present}", ""]
    out += [f"- {e}" for e in r.unacked_present_examples]
    if r.unacked_present_examples:
        out.append("")
    if r.unknown_final:
        out += [f"Records in the final read that no send explains: {r.unknown_final}", ""]

    out += ["## Availability", "",
            "| fault | injected | longest wait for an ack after start (s) | that fault started |",
            "|---|---:|---:|---:|"]
    for f in FAULT_TYPES + sorted(set(r.faults) - set(FAULT_TYPES)):
        st = r.faults.get(f)
        if st is None:
            continue
        at = fmt_t(st.max_at) if st.max_at is not None else "-"
        wait = f"{st.max_unavailable:.2f}" if st.max_at is not None else "-"
        if st.never_recovered:
            wait += f" ({st.never_recovered} never followed by an ack)"
        out.append(f"| {f} | {st.injected} | {wait} | {at} |")
    gap_at = fmt_t(r.max_ack_gap_at) if r.max_ack_gap_at is not None else "-"
    out += ["", f"Longest gap between consecutive acks: {r.max_ack_gap:.2f} s (from {gap_at})", ""]

    out += ["## Totals", "", "| " + " | ".join(r.totals) + " |",
            "|" + "---:|" * len(r.totals),
            "| " + " | ".join(str(v) for v in r.totals.values()) + " |", ""]
    if r.ignored_types:
        out += ["Ignored event types: " +
                ", ".join(f"{k} ({v})" for k, v in sorted(r.ignored_types.items())), ""]
    if r.totals.get("acked", 0) == 0:
        out += ["No write was acknowledged, so the run tested nothing: FAIL.", ""]
    out.append(r.summary_line())
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description="Check a Fjord chaos history for violations.")
    ap.add_argument("history", help="JSON-lines history written by the workload")
    ap.add_argument("--report", metavar="OUT.md", help="also write the report as Markdown")
    ap.add_argument("--plot", metavar="OUT.png", help="also draw the throughput/latency timeline")
    args = ap.parse_args(argv)

    checker = Checker()
    timeline = None
    if args.plot:
        # Imported only when asked: matplotlib is slow to load and checking needs none of it.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import plot as plotmod
        timeline = plotmod.Timeline()
    # Millions of small acyclic dicts make the cyclic collector rescan the growing
    # state over and over; nothing here needs it, and it costs a third of the run.
    gc.disable()
    try:
        for ev in read_events(args.history):
            checker.add(ev)
            if timeline is not None:
                timeline.add(ev)
    except HistoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    r = checker.finish()
    text = render(r)
    sys.stdout.write(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
    if timeline is not None:
        timeline.render(args.plot, meta=r.meta, verdict=r.verdict)
    return 0 if r.verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
