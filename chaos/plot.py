#!/usr/bin/env python3
"""Draws a Fjord chaos run as a timeline PNG: acks per second on top, ack latency p50
and p99 per second below (log scale), with every injected fault shaded by type. For the
txn workload, an ack is a committed record (counted when its commit returns) and its
latency is that of its transaction, from begin to the commit's return.

    python chaos/plot.py HISTORY.jsonl OUT.png [--verdict PASS|FAIL]

The history is streamed and bucketed per second, so only per-second latency lists are
kept; a million events draw in a few seconds. chaos/checker.py --plot uses the same
Timeline while it checks, reading the file once.
"""

import argparse
import json
import math
import sys
from array import array
from collections import defaultdict

import matplotlib

# No display on the machines that run the suite; Agg renders straight to PNG.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
from matplotlib.patches import Patch  # noqa: E402

FAULT_COLOURS = {
    "kill": "tab:red",
    "pause": "tab:orange",
    "partition": "tab:purple",
    "disk": "tab:brown",
    "restart": "tab:blue",
}
OTHER_COLOUR = "tab:gray"


def quantile(sorted_values, q):
    """Nearest-rank quantile of a sorted, non-empty sequence."""
    i = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[i]


class Timeline:
    """Per-second ack counts and latencies, plus fault windows; fed one event at a time."""

    def __init__(self):
        self.acks = defaultdict(int)
        self.latency = defaultdict(lambda: array("d"))
        self.open = defaultdict(list)  # (fault, node) -> [start t]
        self.windows = []  # (fault, start, end)
        self.meta = {}
        self.last_t = 0.0

    def add(self, ev):
        typ = ev.get("type")
        t = ev.get("t")
        if isinstance(t, (int, float)):
            self.last_t = max(self.last_t, t)
        if typ == "ack":
            sec = int(t)
            self.acks[sec] += 1
            lat = ev.get("latency")
            if isinstance(lat, (int, float)) and lat >= 0:
                self.latency[sec].append(lat)
        elif typ == "txn_commit":
            sec = int(t)
            n = len(ev.get("values") or ())
            self.acks[sec] += n
            lat = ev.get("latency")
            if isinstance(lat, (int, float)) and lat >= 0:
                self.latency[sec].extend([lat] * n)
        elif typ == "fault":
            f, node = ev.get("fault"), ev.get("node")
            if ev.get("phase") == "start":
                self.open[(f, node)].append(t)
            elif ev.get("phase") == "end":
                # Oldest open start of the same fault, preferring the same node.
                key = (f, node)
                if not self.open.get(key):
                    key = next((k for k, s in self.open.items() if k[0] == f and s), None)
                if key is not None:
                    self.windows.append((f, self.open[key].pop(0), t))
        elif typ == "meta":
            self.meta = ev

    def render(self, out, meta=None, verdict=None):
        meta = meta or self.meta
        # A fault still open when the history ends is shaded to the end of the run.
        windows = list(self.windows)
        for (f, _), starts in self.open.items():
            windows += [(f, s, self.last_t) for s in starts]

        end = int(max(self.last_t, max(self.acks, default=0))) + 1
        secs = list(range(end + 1))
        # Seconds without acks are drawn as 0 throughput (that is the outage) and as
        # gaps in the latency lines (there is no latency to speak of).
        tput = [self.acks.get(s, 0) for s in secs]
        p50, p99 = [], []
        for s in secs:
            lats = self.latency.get(s)
            if lats:
                srt = sorted(lats)
                # Log scale cannot show 0; a sub-microsecond latency is clamped to 1 µs.
                p50.append(max(quantile(srt, 0.50) * 1000, 1e-3))
                p99.append(max(quantile(srt, 0.99) * 1000, 1e-3))
            else:
                p50.append(float("nan"))
                p99.append(float("nan"))

        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(14, 7),
                                          gridspec_kw={"height_ratios": [1, 1]})
        txn = meta.get("workload") == "txn"
        top.step(secs, tput, where="post", color="black", linewidth=0.8)
        top.set_ylabel("committed records / s" if txn else "acks / s")
        top.set_ylim(bottom=0)
        bottom.plot(secs, p50, color="tab:green", linewidth=0.8, label="p50")
        bottom.plot(secs, p99, color="tab:red", linewidth=0.8, label="p99")
        if any(not math.isnan(v) for v in p99):
            bottom.set_yscale("log")
        bottom.set_ylabel("transaction latency (ms)" if txn else "ack latency (ms)")
        bottom.set_xlabel("time since start (s)")
        bottom.set_xlim(0, end)

        seen = {}
        for f, s, e in windows:
            colour = FAULT_COLOURS.get(f, OTHER_COLOUR)
            seen[f] = colour
            for ax in (top, bottom):
                ax.axvspan(s, max(e, s + 0.05), color=colour, alpha=0.2, linewidth=0)
        fault_handles = [Patch(color=c, alpha=0.35, label=f) for f, c in seen.items()]
        if fault_handles:
            top.legend(handles=fault_handles, loc="upper right", title="faults", fontsize=8)
        lat_handles, _ = bottom.get_legend_handles_labels()
        bottom.legend(handles=lat_handles, loc="upper right", fontsize=8)

        title = (f"Fjord chaos: {meta.get('system', '?')}, {meta.get('nodes', '?')} nodes, "
                 f"seed {meta.get('seed', '?')}")
        if meta.get("workload"):
            title += f", workload {meta['workload']}"
        if verdict:
            title += f" - {verdict}"
        fig.suptitle(title, color="darkred" if verdict == "FAIL" else "black")
        for ax in (top, bottom):
            ax.grid(True, which="major", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)


def plot_file(history, out, verdict=None):
    tl = Timeline()
    decode = json.JSONDecoder().raw_decode
    with open(history, encoding="utf-8") as f:
        for line in f:
            # Only acks, commits, faults and the meta line are drawn; a substring test
            # skips decoding the sends, polls and final records that make up most of a run.
            if ('"ack"' in line or '"txn_commit"' in line or '"fault"' in line
                    or '"meta"' in line):
                tl.add(decode(line.strip())[0])
    tl.render(out, verdict=verdict)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Draw a Fjord chaos history as a timeline PNG.")
    ap.add_argument("history")
    ap.add_argument("out")
    ap.add_argument("--verdict", help="shown in the title (chaos/checker.py --plot fills it in)")
    args = ap.parse_args(argv)
    plot_file(args.history, args.out, args.verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
