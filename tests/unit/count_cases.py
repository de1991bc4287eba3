#!/usr/bin/env python3
"""Counts the unit-test cases of the last `meson test` run, one by one.

meson's own summary counts programs; this reads the TAP each program gave
(cmocka_tap.py, kept in <build>/meson-logs/testlog.json) and counts cases.
A program that failed, timed out or was killed without a failing case of its
own counts one failure more, and the cases its plan announced but it never
reported count as failures too.

Usage: count_cases.py BUILD_DIR
Prints each failed and skipped case by name, then the last line
  "unit cases: N passed, N failed, N skipped".
With SCARDD_SKIP_LOG=FILE the skipped cases are appended to FILE as
"name<TAB>reason" lines (scripts/run-tests lists them at its end).
"""
import json
import os
import re
import sys

PLAN = re.compile(r"^1\.\.(\d+)")
RESULT = re.compile(r"^(ok|not ok)\s+(\d+)\s*(?:-\s*)?([^#]*?)\s*(?:#\s*(SKIP|TODO)\S*\s*(.*))?$",
                    re.IGNORECASE)
BAD = {"FAIL", "ERROR", "TIMEOUT", "INTERRUPT", "UNEXPECTEDPASS"}


def count_program(entry):
    """(passed, [failed names], [(skipped name, reason)]) of one program."""
    prog = entry["name"].split(" / ")[-1]
    passed, failed, skipped = 0, [], []
    plan, seen = None, set()
    for line in (entry.get("stdout") or "").splitlines():
        m = PLAN.match(line)
        if m:
            plan = int(m.group(1))
            continue
        m = RESULT.match(line)
        if not m:
            continue
        ok, num, name, directive, why = m.groups()
        seen.add(int(num))
        name = "unit/%s/%s" % (prog, name or "case %s" % num)
        if directive and directive.upper() == "SKIP" and ok == "ok":
            skipped.append((name, why or "(no reason)"))
        elif ok == "ok":
            passed += 1
        else:
            failed.append(name)
    for num in range(1, (plan or 0) + 1):
        if num not in seen:
            failed.append("unit/%s/case %d (never reported)" % (prog, num))
    result = entry.get("result", "")
    if result in BAD and not failed:
        failed.append("unit/%s (%s, exit status %s)" % (prog, result, entry.get("returncode")))
    if result not in BAD and not (passed or failed or skipped):
        failed.append("unit/%s (reported no cases)" % prog)
    return passed, failed, skipped


def main(argv):
    if len(argv) != 1:
        print("usage: count_cases.py BUILD_DIR", file=sys.stderr)
        return 2
    log = os.path.join(argv[0], "meson-logs", "testlog.json")
    try:
        entries = [json.loads(line) for line in open(log) if line.strip()]
    except (OSError, ValueError) as e:
        print("unit: cannot read %s: %s" % (log, e))
        print("unit cases: 0 passed, 1 failed, 0 skipped")
        return 1
    passed, failed, skipped = 0, [], []
    for entry in entries:
        p, f, s = count_program(entry)
        passed += p
        failed += f
        skipped += s
    for name in failed:
        print("unit: FAILED %s" % name)
    for name, why in skipped:
        print("unit: skipped %s: %s" % (name, why))
    skip_log = os.environ.get("SCARDD_SKIP_LOG")
    if skip_log and skipped:
        with open(skip_log, "a") as f:
            for name, why in skipped:
                f.write("%s\t%s\n" % (name, why))
    print("unit cases: %d passed, %d failed, %d skipped" % (passed, len(failed), len(skipped)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
