"""Tests for the Fjord chaos checker and plot on small synthetic histories, and for how
the txn workload logs a transaction's outcome.

Each violation test starts from a clean history that passes and breaks exactly one
thing, so a check that stops detecting its violation fails its test.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
from checker import check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SUMMARY_RE = (r"^faults: \d+ injected; acked: \d+; lost: \d+; duplicated: \d+; "
              r"reordered: \d+; inconsistent offsets: \d+; verdict: (PASS|FAIL)$")


def clean_history(n=6):
    """Two producers, one key each (key a -> partition 0, key b -> partition 1), every
    send acked in order, a group consumer polling and committing, a kill fault, and a
    final read matching the acks."""
    ev = [{"type": "meta", "t": 0.0, "nodes": 3, "seed": 7, "faults": ["kill"],
           "workload": "queue", "minutes": 1, "system": "fjord", "partitions": 2}]
    t = 0.0
    records = []
    for i in range(n):
        for prod, key, part in (("p0", "a", 0), ("p1", "b", 1)):
            v = f"{prod}-{i}"
            t += 0.1
            ev.append({"type": "send", "t": t, "producer": prod, "key": key, "value": v})
            ev.append({"type": "ack", "t": t + 0.01, "producer": prod, "key": key, "value": v,
                       "partition": part, "offset": i, "latency": 0.01})
            records.append((part, i, key, v))
    ev.append({"type": "fault", "t": t + 0.05, "fault": "kill", "phase": "start", "node": 2,
               "detail": "SIGKILL"})
    ev.append({"type": "send", "t": t + 0.1, "producer": "p0", "key": "a", "value": f"p0-{n}"})
    ev.append({"type": "ack", "t": t + 1.05, "producer": "p0", "key": "a", "value": f"p0-{n}",
               "partition": 0, "offset": n, "latency": 0.95})
    records.append((0, n, "a", f"p0-{n}"))
    ev.append({"type": "fault", "t": t + 2.0, "fault": "kill", "phase": "end", "node": 2,
               "detail": ""})
    t += 3
    ev.append({"type": "assign", "t": t, "consumer": "c0", "partitions": [0, 1]})
    for part, off, key, v in records:
        t += 0.01
        ev.append({"type": "poll", "t": t, "consumer": "c0", "partition": part, "offset": off,
                   "key": key, "value": v})
    ev.append({"type": "commit", "t": t, "consumer": "c0", "partition": 0, "offset": n + 1})
    ev.append({"type": "commit", "t": t, "consumer": "c0", "partition": 1, "offset": n})
    t += 1
    for part, off, key, v in sorted(records):
        ev.append({"type": "final", "t": t, "partition": part, "offset": off, "key": key,
                   "value": v})
    return ev


def final_index(ev, part, off):
    return next(i for i, e in enumerate(ev)
                if e["type"] == "final" and e["partition"] == part and e["offset"] == off)


def test_clean_history_passes():
    r = check(clean_history())
    assert r.verdict == "PASS", r.counts
    assert r.violations == 0
    assert r.totals["acked"] == 13
    assert r.totals["final records"] == 13
    assert r.injected == 1


def test_no_acks_fails():
    ev = [e for e in clean_history() if e["type"] != "ack"]
    r = check(ev)
    assert r.totals["acked"] == 0
    assert r.verdict == "FAIL"


def test_lost_write():
    ev = clean_history()
    del ev[final_index(ev, 0, 3)]
    r = check(ev)
    assert r.counts["lost"] == 1
    assert "'p0-3'" in r.examples["lost"][0]
    assert r.verdict == "FAIL"


def test_ack_without_an_offset_counts_as_acked():
    ev = clean_history()
    for e in ev:
        if e["type"] == "ack" and e["value"] == "p0-3":
            e["offset"] = None
    r = check(ev)
    assert r.verdict == "PASS", r.counts
    assert r.totals["acked"] == 13
    del ev[final_index(ev, 0, 3)]
    assert check(ev).counts["lost"] == 1


def test_duplicate():
    ev = clean_history()
    ev.append({"type": "final", "t": 99, "partition": 1, "offset": 6, "key": "b",
               "value": "p1-2"})
    r = check(ev)
    assert r.counts["duplicated"] == 1
    assert "p1/o2" in r.examples["duplicated"][0] and "p1/o6" in r.examples["duplicated"][0]
    assert r.verdict == "FAIL"


def swap_final(ev, part, o1, o2):
    """Swaps two records of the final read, and the acks that claimed those offsets, so
    only the order is wrong (ack offsets stay consistent with the final read)."""
    i, j = final_index(ev, part, o1), final_index(ev, part, o2)
    ev[i]["value"], ev[j]["value"] = ev[j]["value"], ev[i]["value"]
    for e in ev:
        if e["type"] in ("ack", "poll") and e["partition"] == part and e["offset"] in (o1, o2):
            e["offset"] = o2 if e["offset"] == o1 else o1
    return ev


def test_reorder():
    ev = swap_final(clean_history(), 0, 2, 3)
    r = check(ev)
    assert r.counts["reordered"] >= 1
    assert r.counts["inconsistent_offsets"] == 0
    assert r.counts["lost"] == 0 and r.counts["duplicated"] == 0
    assert any("'p0-2'" in e for e in r.examples["reordered"])
    assert r.verdict == "FAIL"


def test_reorder_across_keys_of_one_producer():
    # Two keys of one producer in one partition: each key's own order is intact, but
    # the producer's sequence in the partition is not.
    ev = [{"type": "meta", "t": 0, "system": "fjord", "nodes": 1, "seed": 1}]
    order = [("p-0", "x", 0), ("p-1", "y", 1)]
    for v, k, o in order:
        ev.append({"type": "ack", "t": 1, "producer": "p", "key": k, "value": v,
                   "partition": 0, "offset": o, "latency": 0.01})
    # Final read has them swapped (and acks claimed the swapped offsets, consistently).
    ev[1]["offset"], ev[2]["offset"] = 1, 0
    ev.append({"type": "final", "t": 2, "partition": 0, "offset": 0, "key": "y", "value": "p-1"})
    ev.append({"type": "final", "t": 2, "partition": 0, "offset": 1, "key": "x", "value": "p-0"})
    r = check(ev)
    assert r.counts["reordered"] == 1
    assert r.counts["inconsistent_offsets"] == 0


def test_key_split_across_partitions_is_a_reorder():
    ev = clean_history()
    # p0-4 (key a, partition 0) turns up in partition 1 instead, with its ack agreeing.
    i = final_index(ev, 0, 4)
    ev[i]["partition"], ev[i]["offset"] = 1, 50
    for e in ev:
        if e.get("value") == "p0-4" and e["type"] in ("ack", "poll"):
            e["partition"], e["offset"] = 1, 50
    r = check(ev)
    assert r.counts["reordered"] == 1
    assert "p1/o50" in r.examples["reordered"][0]


def test_inconsistent_offset_between_poll_and_final():
    ev = clean_history()
    for e in ev:
        if e["type"] == "poll" and e["partition"] == 1 and e["offset"] == 3:
            e["value"] = "p1-999"
    r = check(ev)
    assert r.counts["inconsistent_offsets"] == 1
    assert "p1/o3" in r.examples["inconsistent_offsets"][0]
    assert r.verdict == "FAIL"


def test_inconsistent_offset_ack_vs_final():
    ev = clean_history()
    # The ack of p1-3 claims offset 4 of partition 1, where the final read has p1-4.
    for e in ev:
        if e["type"] == "ack" and e["value"] == "p1-3":
            e["offset"] = 4
    r = check(ev)
    assert r.counts["inconsistent_offsets"] == 1
    assert "p1/o4" in r.examples["inconsistent_offsets"][0]
    assert r.verdict == "FAIL"


def test_ack_offset_where_final_read_has_nothing():
    # The value survived, but not where its ack said: the ack's offset was a lie.
    ev = clean_history()
    for e in ev:
        if e["type"] == "ack" and e["value"] == "p1-5":
            e["offset"] = 30
    r = check(ev)
    assert r.counts["inconsistent_offsets"] == 1
    assert "p1/o30" in r.examples["inconsistent_offsets"][0]
    assert r.counts["lost"] == 0


def test_backward_commit():
    ev = clean_history()
    ev.append({"type": "commit", "t": 98, "consumer": "c1", "partition": 0, "offset": 2})
    r = check(ev)
    assert r.counts["backward_commits"] == 1
    assert "p0" in r.examples["backward_commits"][0]
    assert r.verdict == "FAIL"


def test_equal_commit_is_not_backward():
    ev = clean_history()
    ev.append({"type": "commit", "t": 98, "consumer": "c1", "partition": 0, "offset": 7})
    assert check(ev).counts["backward_commits"] == 0


def rewind(ev, between=()):
    """The consumer re-reads p0 offsets 2..3 after reading all of it, with the given
    events (e.g. a revoke/assign) in between. Appended before the final read."""
    i = next(i for i, e in enumerate(ev) if e["type"] == "final")
    again = [{"type": "poll", "t": 50 + k, "consumer": "c0", "partition": 0, "offset": o,
              "key": "a", "value": f"p0-{o}"} for k, o in enumerate((2, 3))]
    ev[i:i] = list(between) + again
    return ev


def test_nonmonotonic_poll_within_assignment():
    r = check(rewind(clean_history()))
    assert r.counts["nonmonotonic_polls"] == 1
    assert "offset 2" in r.examples["nonmonotonic_polls"][0]
    assert r.verdict == "FAIL"


def test_rewind_after_revoke_and_assign_is_allowed():
    between = [{"type": "revoke", "t": 49, "consumer": "c0", "partitions": [0, 1]},
               {"type": "assign", "t": 49.5, "consumer": "c0", "partitions": [0]}]
    r = check(rewind(clean_history(), between))
    assert r.counts["nonmonotonic_polls"] == 0
    assert r.verdict == "PASS"


def test_rewind_of_a_partition_not_reassigned_is_not_allowed():
    # A cooperative rebalance that moved only partition 1 must not excuse partition 0.
    between = [{"type": "revoke", "t": 49, "consumer": "c0", "partitions": [1]}]
    assert check(rewind(clean_history(), between)).counts["nonmonotonic_polls"] == 1


def test_repeated_offset_is_nonmonotonic():
    ev = clean_history()
    i = next(i for i, e in enumerate(ev) if e["type"] == "final")
    ev.insert(i, {"type": "poll", "t": 50, "consumer": "c0", "partition": 1, "offset": 5,
                  "key": "b", "value": "p1-5"})
    assert check(ev).counts["nonmonotonic_polls"] == 1


def test_indeterminate_failures_neither_lost_nor_duplicated():
    ev = clean_history()
    i = next(i for i, e in enumerate(ev) if e["type"] == "final")
    ev[i:i] = [
        # Failed and absent: not lost.
        {"type": "send", "t": 5, "producer": "p1", "key": "b", "value": "p1-6"},
        {"type": "fail", "t": 6, "producer": "p1", "key": "b", "value": "p1-6",
         "error": "timed out"},
        # Failed and present once: not a duplicate, but reported as unacked-present.
        {"type": "send", "t": 5, "producer": "p1", "key": "b", "value": "p1-7"},
        {"type": "fail", "t": 6, "producer": "p1", "key": "b", "value": "p1-7",
         "error": "timed out"},
        # Never answered and absent: not lost.
        {"type": "send", "t": 5, "producer": "p1", "key": "b", "value": "p1-8"},
    ]
    ev.append({"type": "final", "t": 99, "partition": 1, "offset": 7, "key": "b",
               "value": "p1-7"})
    r = check(ev)
    assert r.violations == 0, r.examples
    assert r.unacked_present == 1
    assert r.totals["failed"] == 2
    assert r.verdict == "PASS"


def test_indeterminate_write_present_twice_is_a_duplicate():
    ev = clean_history()
    ev += [{"type": "send", "t": 5, "producer": "p1", "key": "b", "value": "p1-7"},
           {"type": "fail", "t": 6, "producer": "p1", "key": "b", "value": "p1-7", "error": "x"},
           {"type": "final", "t": 99, "partition": 1, "offset": 7, "key": "b", "value": "p1-7"},
           {"type": "final", "t": 99, "partition": 1, "offset": 8, "key": "b", "value": "p1-7"}]
    assert check(ev).counts["duplicated"] == 1


def test_unknown_event_types_are_ignored():
    ev = clean_history()
    ev.insert(3, {"type": "something_new", "t": 0.2, "x": 1})
    r = check(ev)
    assert r.verdict == "PASS"
    assert r.ignored_types == {"something_new": 1}


def test_availability_per_fault_type():
    r = check(clean_history())
    # The kill starts 0.04 s after the 12th ack and the next ack comes 1 s after the kill.
    assert r.faults["kill"].injected == 1
    assert r.faults["kill"].max_unavailable == pytest.approx(1.0)
    assert r.max_ack_gap == pytest.approx(1.04)
    assert r.fault_windows[0][0] == "kill"


def test_overlapping_faults_and_no_recovery():
    ev = clean_history()
    i = next(i for i, e in enumerate(ev) if e["type"] == "final")
    ev[i:i] = [
        {"type": "fault", "t": 10, "fault": "pause", "phase": "start", "node": 0},
        {"type": "fault", "t": 11, "fault": "pause", "phase": "start", "node": 1},
        # An end without a node closes the oldest open pause.
        {"type": "fault", "t": 12, "fault": "pause", "phase": "end", "node": None},
        {"type": "fault", "t": 13, "fault": "pause", "phase": "end", "node": 1},
    ]
    r = check(ev)
    pauses = sorted((w[1], w[2], w[3]) for w in r.fault_windows if w[0] == "pause")
    assert pauses == [(0, 10, 12), (1, 11, 13)]
    # No ack ever follows these pauses: the wait runs to the end of the history.
    assert r.faults["pause"].injected == 2
    assert r.faults["pause"].never_recovered == 2
    last_t = max(e["t"] for e in ev)
    assert r.faults["pause"].max_unavailable == pytest.approx(last_t - 10)
    assert r.faults["pause"].max_at == 10


def test_aborted_read_and_half_transaction():
    ev = clean_history()
    ev += [
        {"type": "txn_abort", "t": 7, "producer": "tp", "values": ["tp-0", "tp-1"]},
        {"type": "txn_commit", "t": 8, "producer": "tp", "values": ["tp-2", "tp-3"]},
        {"type": "poll", "t": 9, "consumer": "rc", "partition": 0, "offset": 40, "key": "t",
         "value": "tp-0", "isolation": "read_committed"},
        {"type": "final", "t": 99, "partition": 0, "offset": 40, "key": "t", "value": "tp-0"},
        {"type": "final", "t": 99, "partition": 0, "offset": 42, "key": "t", "value": "tp-2"},
    ]
    r = check(ev)
    assert r.counts["aborted_reads"] == 1
    assert r.counts["half_transactions"] == 1
    assert "'tp-3'" in r.examples["half_transactions"][0]
    assert r.verdict == "FAIL"


def test_committed_transaction_wholly_missing_is_lost():
    ev = clean_history()
    ev.append({"type": "txn_commit", "t": 8, "producer": "tp", "values": ["tp-0", "tp-1"]})
    r = check(ev)
    assert r.counts["lost"] == 2
    assert r.counts["half_transactions"] == 0


def test_examples_are_capped():
    ev = clean_history(30)
    ev = [e for e in ev if e["type"] != "final"]
    r = check(ev)
    assert r.counts["lost"] == 61
    assert len(r.examples["lost"]) == checker.MAX_EXAMPLES


# --- the txn workload ---

# (producer, txn, [(value, partition)], outcome); outcome "commit", "abort", "unknown"
# (commit asked for, so it may have gone either way) or "unknown-nocommit" (ended without
# a commit ever asked for). `landed` says whether an unknown one turned out committed.
TXNS = [
    (0, "0-t0", [("0-0", 0), ("0-1", 1)], "commit", True),
    (1, "1-t0", [("1-0", 0), ("1-1", 1), ("1-2", 0)], "commit", True),
    (0, "0-t1", [("0-2", 0), ("0-3", 1)], "abort", False),
    (1, "1-t1", [("1-3", 1), ("1-4", 0)], "unknown", True),
    (0, "0-t2", [("0-4", 1), ("0-5", 0)], "unknown", False),
    (1, "1-t2", [("1-5", 0), ("1-6", 1)], "unknown-nocommit", False),
    (0, "0-t3", [("0-6", 0), ("0-7", 1)], "commit", True),
]


def clean_txn_history():
    """Seven transactions of two transactional producers over two partitions: three
    committed, one aborted, three of unknown outcome (one of which landed). Every record
    and every transaction marker takes an offset, as in a Kafka log. A read_committed
    consumer polls what committed, a kill fault sits between two commits, and the final
    read_committed read holds exactly the transactions that landed."""
    ev = [{"type": "meta", "t": 0.0, "nodes": 3, "seed": 7, "faults": ["kill"],
           "workload": "txn", "minutes": 1, "system": "fjord", "partitions": 2}]
    t = 0.0
    next_offset = {0: 0, 1: 0}
    visible = []  # (partition, offset, key, value) of transactions that landed
    for prod, txn, records, outcome, landed in TXNS:
        t += 0.5
        written = []
        for v, part in records:
            ev.append({"type": "send", "t": t, "producer": prod, "txn": txn, "key": f"k{part}",
                       "value": v, "partition": part})
        for v, part in records:
            o = next_offset[part]
            next_offset[part] += 1
            ev.append({"type": "txn_write", "t": t + 0.01, "producer": prod, "txn": txn,
                       "key": f"k{part}", "value": v, "partition": part, "offset": o})
            written.append((part, o, f"k{part}", v))
        for part in {part for _, part in records}:
            next_offset[part] += 1  # the marker
        values = [v for v, _ in records]
        done = {"type": "txn_" + outcome.split("-")[0], "t": t + 0.1, "producer": prod,
                "txn": txn, "values": values}
        if outcome == "commit":
            done.update(planned=True, latency=0.1)
        elif outcome == "abort":
            done.update(planned=True, latency=0.1)
        else:
            done.update(commit_requested=outcome == "unknown", error="fenced")
        ev.append(done)
        if landed:
            visible += written
        if txn == "1-t0":
            ev.append({"type": "fault", "t": t + 0.2, "fault": "kill", "phase": "start",
                       "node": 2, "detail": "leader"})
            ev.append({"type": "fault", "t": t + 3.0, "fault": "kill", "phase": "end",
                       "node": 2, "detail": ""})
    t += 1
    ev.append({"type": "assign", "t": t, "consumer": 0, "partitions": [0, 1]})
    for part, o, key, v in sorted(visible):
        t += 0.01
        ev.append({"type": "poll", "t": t, "consumer": 0, "partition": part, "offset": o,
                   "key": key, "value": v, "isolation": "read_committed"})
    t += 1
    for part, o, key, v in sorted(visible):
        ev.append({"type": "final", "t": t, "partition": part, "offset": o, "key": key,
                   "value": v, "isolation": "read_committed"})
    return ev


def txn_values(txn):
    return next(r for _, name, r, _, _ in TXNS if name == txn)


def drop_final(ev, value):
    return [e for e in ev if not (e["type"] == "final" and e["value"] == value)]


def add_final(ev, value, part, offset, isolation="read_committed"):
    e = {"type": "final", "t": 99, "partition": part, "offset": offset, "key": f"k{part}",
         "value": value}
    if isolation:
        e["isolation"] = isolation
    return ev + [e]


def write_offset(ev, value):
    return next(e["offset"] for e in ev if e["type"] == "txn_write" and e["value"] == value)


def test_clean_txn_history_passes():
    r = check(clean_txn_history())
    assert r.verdict == "PASS", r.examples
    assert r.violations == 0
    # Committed values count as acked; those of the unknown transaction that landed are
    # indeterminate writes that landed, not violations.
    assert r.totals["acked"] == 7
    assert r.totals["final records"] == 9
    assert r.unacked_present == 2
    assert any("outcome unknown" in e for e in r.unacked_present_examples)
    assert (r.totals["txn commit"], r.totals["txn abort"], r.totals["txn unknown"]) == (3, 1, 3)


def test_txn_commit_times_are_acks_for_availability():
    r = check(clean_txn_history())
    # The kill starts 0.1 s after 1-t0's commit; the next commit (0-t1 is an abort, so
    # 0-t3's at 3.6 s) is the first ack after it.
    assert r.faults["kill"].injected == 1
    assert r.faults["kill"].max_unavailable == pytest.approx(3.6 - 1.2)


def test_queue_totals_have_no_txn_columns():
    assert not any(k.startswith("txn") for k in check(clean_history()).totals)


def test_txn_without_commits_fails():
    ev = [e for e in clean_txn_history() if e["type"] != "txn_commit"]
    r = check(ev)
    assert r.totals["acked"] == 0
    assert r.verdict == "FAIL"


def test_committed_value_missing_is_lost_and_half_visible():
    ev = drop_final(clean_txn_history(), "1-2")
    r = check(ev)
    assert r.counts["lost"] == 1
    assert "'1-2'" in r.examples["lost"][0] and "1-t0" in r.examples["lost"][0]
    assert r.counts["half_transactions"] == 1
    assert "1-t0" in r.examples["half_transactions"][0]
    assert r.verdict == "FAIL"


def test_committed_transaction_wholly_missing_is_lost_not_half():
    ev = drop_final(drop_final(clean_txn_history(), "0-6"), "0-7")
    r = check(ev)
    assert r.counts["lost"] == 2
    assert r.counts["half_transactions"] == 0
    assert all("0-t3" in e for e in r.examples["lost"])


def test_committed_value_read_twice_is_a_duplicate():
    ev = add_final(clean_txn_history(), "0-1", 1, 40)
    r = check(ev)
    assert r.counts["duplicated"] == 1
    assert "'0-1'" in r.examples["duplicated"][0]


def test_committed_value_at_another_offset_than_its_write():
    ev = clean_txn_history()
    for e in ev:
        if e["type"] == "txn_write" and e["value"] == "1-1":
            e["offset"] = 30
    r = check(ev)
    assert r.counts["inconsistent_offsets"] == 1
    assert "p1/o30" in r.examples["inconsistent_offsets"][0]


def test_committed_values_out_of_order():
    # 0-6 and 0-0, both committed, both of producer 0 in partition 0, swap places.
    ev = clean_txn_history()
    a, b = write_offset(ev, "0-0"), write_offset(ev, "0-6")
    for e in ev:
        if e.get("value") in ("0-0", "0-6") and e["type"] in ("txn_write", "poll", "final"):
            e["offset"] = b if e["value"] == "0-0" else a
    r = check(ev)
    assert r.counts["reordered"] >= 1
    assert r.counts["inconsistent_offsets"] == 0


def test_aborted_value_polled_with_read_committed():
    ev = clean_txn_history()
    o = write_offset(ev, "0-2")
    ev.insert(-1, {"type": "poll", "t": 50, "consumer": 1, "partition": 0, "offset": o,
                   "key": "k0", "value": "0-2", "isolation": "read_committed"})
    r = check(ev)
    assert r.counts["aborted_reads"] == 1
    assert "'0-2'" in r.examples["aborted_reads"][0]
    assert "0-t1" in r.examples["aborted_reads"][0]
    assert r.verdict == "FAIL"


def test_aborted_value_polled_without_read_committed_is_not_judged():
    ev = clean_txn_history()
    ev.insert(-1, {"type": "poll", "t": 50, "consumer": 1, "partition": 0,
                   "offset": write_offset(ev, "0-2"), "key": "k0", "value": "0-2"})
    assert check(ev).counts["aborted_reads"] == 0


def test_aborted_transaction_in_the_final_read():
    ev = clean_txn_history()
    whole = add_final(add_final(ev, "0-2", 0, write_offset(ev, "0-2")),
                      "0-3", 1, write_offset(ev, "0-3"))
    r = check(whole)
    assert r.counts["aborted_reads"] == 2
    assert r.counts["half_transactions"] == 0
    assert r.verdict == "FAIL"
    # Half of it: both an aborted read and a half-visible transaction.
    r = check(add_final(ev, "0-3", 1, write_offset(ev, "0-3")))
    assert r.counts["aborted_reads"] == 1
    assert r.counts["half_transactions"] == 1


def test_aborted_values_in_a_read_uncommitted_final_read_are_not_judged():
    ev = clean_txn_history()
    for e in ev:
        e.pop("isolation", None)
    ev = add_final(ev, "0-3", 1, write_offset(ev, "0-3"), isolation=None)
    r = check(ev)
    assert r.counts["aborted_reads"] == 0
    assert r.counts["half_transactions"] == 0
    assert r.verdict == "PASS", r.examples


def test_unknown_outcome_either_way_passes():
    ev = clean_txn_history()
    # 1-t1 landed in the clean history; 0-t2 did not. Swap that round.
    for v, part in txn_values("1-t1"):
        ev = drop_final(ev, v)
    for v, part in txn_values("0-t2"):
        ev = add_final(ev, v, part, write_offset(ev, v))
    r = check(ev)
    assert r.verdict == "PASS", r.examples
    assert r.unacked_present == 2


def test_unknown_outcome_half_visible():
    ev = clean_txn_history()
    r = check(drop_final(ev, "1-4"))
    assert r.counts["half_transactions"] == 1
    assert "1-t1" in r.examples["half_transactions"][0]
    assert "unknown" in r.examples["half_transactions"][0]
    assert r.counts["lost"] == 0
    assert r.verdict == "FAIL"


def test_unknown_outcome_without_a_commit_asked_for_must_not_be_read():
    # 1-t2 ended (fenced) before commit_transaction was ever called: it cannot have
    # committed, so reading it with read_committed is an aborted read.
    ev = clean_txn_history()
    for v, part in txn_values("1-t2"):
        ev = add_final(ev, v, part, write_offset(ev, v))
    r = check(ev)
    assert r.counts["aborted_reads"] == 2
    assert "without a commit ever asked for" in r.examples["aborted_reads"][0]
    assert r.verdict == "FAIL"


def test_txn_history_cli_and_plot(tmp_path):
    h = write_history(tmp_path, clean_txn_history())
    rep, png = tmp_path / "r.md", tmp_path / "t.png"
    p = run_cli(h, "--report", rep, "--plot", png)
    assert p.returncode == 0, p.stderr
    assert p.stdout.rstrip("\n").splitlines()[-1] == (
        "faults: 1 injected; acked: 7; lost: 0; duplicated: 0; reordered: 0; "
        "inconsistent offsets: 0; verdict: PASS")
    assert "| txn commit | txn abort | txn unknown |" in rep.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_txn_cli_aborted_read_fails_with_clean_last_counts(tmp_path):
    ev = clean_txn_history()
    ev = add_final(ev, "0-2", 0, write_offset(ev, "0-2"))
    p = run_cli(write_history(tmp_path, ev))
    assert p.returncode == 1
    assert p.stdout.rstrip().splitlines()[-1].endswith(
        "lost: 0; duplicated: 0; reordered: 0; inconsistent offsets: 0; verdict: FAIL")
    assert "| aborted reads (read_committed) | 1 |" in p.stdout


# How the txn workload ends a transaction and logs its outcome, on a stand-in producer
# whose commit and abort fail as scripted.

class FakeHistory:
    def __init__(self):
        self.events = []

    def write(self, ev):
        self.events.append(ev)

    def of(self, *types):
        return [e for e in self.events if e["type"] in types]


class ScriptedProducer:
    """commit_transaction and abort_transaction raise the scripted errors in turn, then
    succeed."""

    def __init__(self, commit=(), abort=()):
        self.script = {"commit": list(commit), "abort": list(abort)}
        self.calls = []

    def call(self, name):
        self.calls.append(name)
        if self.script[name]:
            raise KafkaException(self.script[name].pop(0))

    def commit_transaction(self, timeout):
        self.call("commit")

    def abort_transaction(self, timeout):
        self.call("abort")


def ending(commit, producer):
    """Runs TxnProducers.end on `producer`; returns (history, producer it went on with)."""
    import workload
    h = FakeHistory()
    tp = workload.TxnProducers("unused:9092", "chaos", h, 1, 10, 1, 2)
    tp.init = lambda i, old=None: "recreated"
    return h, tp.end(0, producer, "0-t0", ["0-0", "0-1"], commit=commit,
                     start=time.monotonic())


def kerr(code, **flags):
    return KafkaError(code, "scripted", **flags)


def test_workload_logs_commit_only_when_it_returned():
    p = ScriptedProducer()
    h, after = ending(True, p)
    assert after is p
    [done] = h.of("txn_commit", "txn_abort", "txn_unknown")
    assert done["type"] == "txn_commit" and done["values"] == ["0-0", "0-1"]


def test_workload_retries_a_retriable_commit():
    p = ScriptedProducer(commit=[kerr(KafkaError._TIMED_OUT, retriable=True)] * 2)
    h, after = ending(True, p)
    assert p.calls == ["commit"] * 3
    assert [e["type"] for e in h.of("txn_commit", "txn_abort", "txn_unknown")] == ["txn_commit"]
    assert len(h.of("txn_error")) == 2 and after is p


def test_workload_aborts_when_the_commit_requires_it():
    p = ScriptedProducer(commit=[kerr(KafkaError._PURGE_QUEUE, txn_requires_abort=True)])
    h, after = ending(True, p)
    assert p.calls == ["commit", "abort"]
    [done] = h.of("txn_commit", "txn_abort", "txn_unknown")
    assert done["type"] == "txn_abort" and done["planned"] is False


def test_workload_fenced_commit_is_unknown_and_recreates():
    p = ScriptedProducer(commit=[kerr(KafkaError._FENCED, fatal=True)])
    h, after = ending(True, p)
    assert after == "recreated"
    [done] = h.of("txn_commit", "txn_abort", "txn_unknown")
    assert done["type"] == "txn_unknown" and done["commit_requested"] is True


def test_workload_failed_abort_after_abortable_commit_is_unknown():
    p = ScriptedProducer(commit=[kerr(KafkaError._PURGE_QUEUE, txn_requires_abort=True)],
                         abort=[kerr(KafkaError._FENCED, fatal=True)])
    h, after = ending(True, p)
    [done] = h.of("txn_commit", "txn_abort", "txn_unknown")
    assert done["type"] == "txn_unknown" and done["commit_requested"] is True


def test_workload_fenced_planned_abort_never_asked_to_commit():
    p = ScriptedProducer(abort=[kerr(KafkaError._TIMED_OUT, retriable=True),
                                kerr(KafkaError._FENCED, fatal=True)])
    h, after = ending(False, p)
    assert p.calls == ["abort", "abort"]
    [done] = h.of("txn_commit", "txn_abort", "txn_unknown")
    assert done["type"] == "txn_unknown" and done["commit_requested"] is False
    assert after == "recreated"


# --- the command line ---

def write_history(tmp_path, events, name="h.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(e) + "\n" for e in events))
    return p


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(HERE, "checker.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_cli_pass_last_line_and_report(tmp_path):
    h = write_history(tmp_path, clean_history())
    rep = tmp_path / "r.md"
    p = run_cli(h, "--report", rep)
    assert p.returncode == 0, p.stderr
    last = p.stdout.rstrip("\n").splitlines()[-1]
    assert last == ("faults: 1 injected; acked: 13; lost: 0; duplicated: 0; reordered: 0; "
                    "inconsistent offsets: 0; verdict: PASS")
    assert rep.read_text() == p.stdout
    assert "| kill | 1 |" in p.stdout


def test_cli_fail_exit_code(tmp_path):
    ev = clean_history()
    del ev[final_index(ev, 1, 0)]
    p = run_cli(write_history(tmp_path, ev))
    assert p.returncode == 1
    last = p.stdout.rstrip("\n").splitlines()[-1]
    import re
    assert re.match(SUMMARY_RE, last)
    assert "lost: 1;" in last and last.endswith("verdict: FAIL")


def test_cli_backward_commit_fails_with_clean_last_counts(tmp_path):
    # Violations outside the last line's counts still make the verdict FAIL.
    ev = clean_history()
    ev.append({"type": "commit", "t": 98, "consumer": "c1", "partition": 1, "offset": 1})
    p = run_cli(write_history(tmp_path, ev))
    assert p.returncode == 1
    assert p.stdout.rstrip().splitlines()[-1].endswith(
        "lost: 0; duplicated: 0; reordered: 0; inconsistent offsets: 0; verdict: FAIL")


def test_cli_unreadable_input(tmp_path):
    assert run_cli(tmp_path / "missing.jsonl").returncode == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"meta","t":0}\n{"type": "ack", trunc\n')
    p = run_cli(bad)
    assert p.returncode == 2
    assert "bad.jsonl:2" in p.stderr
    # A known event type missing a field it needs is unreadable too, not a crash.
    missing = write_history(tmp_path, [{"type": "ack", "t": 1, "value": "p-0"}], "m.jsonl")
    assert run_cli(missing).returncode == 2


def test_cli_empty_history_fails(tmp_path):
    p = run_cli(write_history(tmp_path, []))
    assert p.returncode == 1
    assert p.stdout.rstrip().splitlines()[-1] == (
        "faults: 0 injected; acked: 0; lost: 0; duplicated: 0; reordered: 0; "
        "inconsistent offsets: 0; verdict: FAIL")


def test_plot_writes_png(tmp_path):
    h = write_history(tmp_path, clean_history())
    png = tmp_path / "t.png"
    p = run_cli(h, "--plot", png)
    assert p.returncode == 0, p.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_plot_module_without_acks(tmp_path):
    # An outage-only history (no acks, an unended fault) must still draw.
    import plot
    tl = plot.Timeline()
    for e in [{"type": "meta", "t": 0, "system": "fjord", "nodes": 3, "seed": 1},
              {"type": "fault", "t": 1, "fault": "pause", "phase": "start", "node": 1},
              {"type": "send", "t": 2, "producer": "p", "key": "k", "value": "p-0"}]:
        tl.add(e)
    out = tmp_path / "empty.png"
    tl.render(str(out), verdict="FAIL")
    assert out.read_bytes()[:4] == b"\x89PNG"


# --- the copier workload ---

def copier_history():
    """The clean queue history plus a copy of its input: each partition copied in order
    into the same output partition (markers take offsets there, so the output's offsets
    have gaps), the copier group's committed offsets at the input's ends, a copier killed
    and its slot's final copier done."""
    ev = [dict(e) for e in clean_history()]
    ev[0]["workload"] = "copier"
    inputs = sorted((e["partition"], e["offset"], e["value"]) for e in ev
                    if e["type"] == "final")
    t = ev[-1]["t"]
    ev += [{"type": "copier_start", "t": 1.0, "slot": 0, "gen": 1},
           {"type": "copier_exit", "t": 2.0, "slot": 0, "gen": 1, "code": -9, "killed": True,
            "stage": "ProcessLoop", "processed": 2, "remaining": 3},
           {"type": "copier_start", "t": 3.0, "slot": 0, "gen": 2},
           {"type": "copier_exit", "t": 4.0, "slot": 0, "gen": 2, "code": 0, "killed": False,
            "stage": "ShutdownComplete", "processed": 5, "remaining": 0}]
    ends = {}
    for part, off, v in inputs:
        ends[part] = off + 1
    for part in sorted(ends):
        ev.append({"type": "copier_done", "t": t, "slot": part, "ok": True})
        ev.append({"type": "copier_committed", "t": t, "partition": part,
                   "offset": ends[part]})
    out = 0
    for part, off, v in inputs:
        # Two records per transaction, then its marker.
        ev.append({"type": "copy_final", "t": t, "partition": part, "offset": out, "key": None,
                   "value": v, "isolation": "read_committed"})
        out += 2 if off % 2 else 1
    return ev


def copies(ev):
    return [i for i, e in enumerate(ev) if e["type"] == "copy_final"]


def test_copier_clean_history_passes():
    r = check(copier_history())
    assert r.verdict == "PASS", (r.counts, r.examples)
    assert r.totals["copied"] == 13
    assert r.totals["copiers run"] == 2
    assert r.totals["copiers killed"] == 1
    assert r.totals["copiers failed"] == 0


def test_copier_missing_copy_is_lost():
    ev = copier_history()
    del ev[copies(ev)[3]]
    r = check(ev)
    assert r.counts["lost"] == 1, r.examples
    assert "not in the copy" in r.examples["lost"][0]


def test_copier_twice_copied_value_is_duplicated():
    ev = copier_history()
    dup = dict(ev[copies(ev)[2]])
    dup["offset"] = 1000
    ev.append(dup)
    r = check(ev)
    assert r.counts["duplicated"] == 1, r.examples
    assert r.verdict == "FAIL"


def test_copier_out_of_order_copy_is_reordered():
    ev = copier_history()
    i, j = copies(ev)[0], copies(ev)[1]
    ev[i]["value"], ev[j]["value"] = ev[j]["value"], ev[i]["value"]
    r = check(ev)
    assert r.counts["reordered"] == 1, r.examples


def test_copier_copy_in_another_partition_is_reordered():
    ev = copier_history()
    last = ev[copies(ev)[-1]]
    last["partition"] = 0 if last["partition"] == 1 else 1
    last["offset"] = 999
    r = check(ev)
    assert r.counts["reordered"] == 1, r.examples
    assert "into output partition" in r.examples["reordered"][0]


def test_copier_value_never_in_input_is_inconsistent():
    ev = copier_history()
    ev.append({"type": "copy_final", "t": ev[-1]["t"], "partition": 0, "offset": 2000,
               "key": None, "value": "nobody-1", "isolation": "read_committed"})
    r = check(ev)
    assert r.counts["inconsistent_offsets"] == 1, r.examples


def test_copier_copy_beyond_committed_offset_is_inconsistent():
    ev = copier_history()
    c = next(e for e in ev if e["type"] == "copier_committed" and e["partition"] == 1)
    c["offset"] -= 2
    r = check(ev)
    assert r.counts["inconsistent_offsets"] == 2, r.examples
    assert r.counts["lost"] == 0


def test_copier_that_never_reached_the_end_loses_the_rest():
    ev = copier_history()
    # Partition 1's last three copies never happened, nor their offsets' commit.
    drop = [i for i in copies(ev) if ev[i]["partition"] == 1][-3:]
    for i in reversed(drop):
        del ev[i]
    for e in ev:
        if e["type"] == "copier_committed" and e["partition"] == 1:
            e["offset"] -= 3
        if e["type"] == "copier_done" and e["slot"] == 1:
            e["ok"] = False
    r = check(ev)
    assert r.counts["lost"] == 3, r.examples
    assert "never done" in r.examples["lost"][0]
