#!/usr/bin/env python3
"""Runs one cmocka program (CMOCKA_MESSAGE_OUTPUT=TAP) and passes meson TAP
that counts every case the way it ended.

cmocka 1.1 prints a skip as "not ok N # SKIP name", which meson reads as a
failure, and its own output from inside a test is not TAP. So:
  * a skip becomes "ok N name # SKIP <reason>", the reason being the line the
    test printed before skipping ("# skip: kind: why", unit_support.h); with
    SCARDD_STRICT_SKIPS=1 a skip of a kind tests/skip_policy.py does not allow
    becomes "not ok" instead;
  * lines that are not TAP become comments;
  * cases the program never reported (a failed group setup, a crash, a kill)
    become "not ok", so they count as failures;
and the exit status is the program's (128+signal if killed), or 1 if a
skip was refused.

Usage: cmocka_tap.py PROGRAM [ARGS...]
"""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import skip_policy  # noqa: E402

PLAN = re.compile(r"^1\.\.(\d+)\s*$")
RESULT = re.compile(r"^(ok|not ok) (\d+)(?: - (.*)| # SKIP (.*))?$")
SKIP_REASON = re.compile(r"^# skip: (.*)$")


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv):
    if not argv:
        print("usage: cmocka_tap.py PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="TAP")
    prog = os.path.basename(argv[0])
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True, errors="replace")
    except OSError as e:
        out("1..1")
        out("not ok 1 - %s could not start: %s" % (prog, e))
        return 1
    plan, reported, refused = None, 0, False
    reason, setup_failure = None, None
    for raw in p.stdout:
        line = raw.rstrip("\n")
        m = PLAN.match(line)
        if m and plan is None:
            plan = int(m.group(1))
            out(line)
            continue
        m = RESULT.match(line)
        if m:
            ok, num, name, skipped = m.group(1), int(m.group(2)), m.group(3) or "", m.group(4)
            if num == 0:  # cmocka's report of a failed group setup or teardown
                setup_failure = name
                out("# " + line)
                continue
            reported = num
            if skipped is not None:
                why = reason or "(the test printed no reason)"
                if skip_policy.strict() and not skip_policy.allowed(why):
                    refused = True
                    out("not ok %d - %s: %s" % (num, skipped, skip_policy.refusal(why)))
                else:
                    out("ok %d %s # SKIP %s" % (num, skipped, why))
            else:
                out("%s %d - %s" % (ok, num, name))
            reason = None
            continue
        m = SKIP_REASON.match(line)
        if m:
            reason = m.group(1)
        out(line if line.startswith("#") else "# " + line)
    status = p.wait()
    if status < 0:
        status = 128 - status
        why = "%s killed by %s" % (prog, signal.Signals(-p.returncode).name)
    elif setup_failure:
        why = "%s: %s" % (prog, setup_failure)
    else:
        why = "%s ended with status %d before reporting it" % (prog, status)
    if plan is None:
        out("1..1")
        plan = 1
    for num in range(reported + 1, plan + 1):
        out("not ok %d - case %d not run: %s" % (num, num, why))
    if (refused or reported < plan) and status == 0:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
