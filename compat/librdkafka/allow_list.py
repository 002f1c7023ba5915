#!/usr/bin/env python3
"""Reads allow-list.txt and checks a test-runner log against it.

allow-list.txt: one allow-listed test per line, `<test name> <mode>`, where mode is
`classic`, `consumer` or `both` (the value of TEST_CONSUMER_GROUP_PROTOCOL it is expected
to pass with), or `alone` (classic, run one test at a time), or `sasl` / `ssl` (run, classic, over the broker's SASL_PLAINTEXT / SSL
listener), or `noautocreate` (run, classic, in librdkafka's test scenario of that name,
against a broker that does not create topics on demand). `#` starts a comment; excluded
tests are comment lines with their reason.

    allow_list.py numbers ALLOW MODE        comma-separated test numbers to run
    allow_list.py check ALLOW MODE LOG [TESTS]
        reads test-runner's summary table from LOG; exits 1 if an allow-listed test (of
        the numbers in TESTS, default all) did not pass
    allow_list.py failed ALLOW MODE LOG [TESTS]
        two words: the numbers of the allow-listed tests that failed (or were running when
        test-runner stopped), and of those that never ran; each comma-separated, `-` if none
"""
import re
import sys

MODES = ("classic", "consumer", "alone", "sasl", "ssl", "noautocreate")


def read_allow(path, mode):
    names = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in MODES + ("both",) \
                    or not re.fullmatch(r"\d{4}_\w+", parts[0]):
                sys.exit(f"{path}:{lineno}: expected `<test name> classic|consumer|both|alone|sasl|ssl|noautocreate`")
            # `both` is the two group protocols; the sasl and ssl passes run only their own.
            if parts[1] == mode or (parts[1] == "both" and mode in ("classic", "consumer")):
                names.append(parts[0])
    if mode not in MODES:
        sys.exit(f"unknown mode {mode!r}")
    return names


def summary(log_path):
    """test name -> (state, duration seconds, reason) from test-runner's summary table."""
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    row = re.compile(r"^\|\s*(\d{4}_\S+)\s*\|\s*([A-Z]+)\s*\|\s*([\d.]+)s\s*\|(.*)$")
    out = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            m = row.match(ansi.sub("", line.rstrip("\n")))
            if m:
                out[m.group(1)] = (m.group(2), float(m.group(3)), m.group(4).strip())
    return out


def tail_of(log_path, name, n=12):
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    pfx = re.compile(r"^\[" + re.escape(name) + r"\s*/")
    lines = []
    with open(log_path, errors="replace") as f:
        for line in f:
            line = ansi.sub("", line.rstrip("\n"))
            if pfx.match(line):
                lines.append(line)
    return lines[-n:]


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "numbers":
        names = read_allow(sys.argv[2], sys.argv[3])
        print(",".join(sorted({n[:4] for n in names})))
        return 0
    if len(sys.argv) in (5, 6) and sys.argv[1] in ("check", "failed"):
        allow_path, mode, log_path = sys.argv[2:5]
        names = read_allow(allow_path, mode)
        if len(sys.argv) == 6:
            wanted = set(sys.argv[5].split(","))
            names = [n for n in names if n[:4] in wanted]
        got = summary(log_path)
        if sys.argv[1] == "failed":
            states = {n: got.get(n, ("NOT RUN",))[0] for n in names}
            ran = {n[:4] for n, st in states.items() if st in ("FAILED", "RUNNING")}
            never = {n[:4] for n, st in states.items() if st not in ("PASSED", "FAILED", "RUNNING")}
            never -= ran
            print(",".join(sorted(ran)) or "-", ",".join(sorted(never)) or "-")
            return 0
        if not got:
            print(f"no test summary in the test-runner output; its last lines:")
            with open(log_path, errors="replace") as f:
                for line in f.readlines()[-30:]:
                    print("    " + line.rstrip("\n"))
            return 1
        failed = []
        for name in names:
            state, secs, reason = got.get(name, ("NOT RUN", 0.0, ""))
            if state == "PASSED":
                print(f"PASS {name} ({secs:.1f} s)")
            else:
                failed.append(name)
                print(f"FAIL {name}: {state} {reason}")
                for line in tail_of(log_path, name):
                    print("    " + line)
        listed = set(names)
        others = sorted(n for n, (s, _, _) in got.items()
                        if n not in listed and s in ("PASSED", "FAILED", "RUNNING"))
        for name in others:
            state, secs, reason = got[name]
            print(f"not in allow-list: {name} {state} {reason}".rstrip())
        print(f"{mode}: {len(names) - len(failed)} of {len(names)} allow-listed tests passed")
        return 1 if failed else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
