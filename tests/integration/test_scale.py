"""Many clients at once: 1000 contexts, each blocked in SCardGetStatusChange,
all woken by one card insertion; two such rounds on one daemon. After each
round the daemon must hold the descriptors it held before, and the second
round must leave scardd's RSS where the first left it. RSS and thread counts
while the clients wait are printed for the record, never asserted."""
import json
import os
import subprocess

import pytest

from conftest import (IS_PCSCD, PYTHON, HERE, READER0, _run_daemon, rss_grew_within, spawn,
                      stop_process)

N = int(os.environ.get("SCARDD_TEST_SCALE_N", "1000"))
ROUNDS = 2
# The first round takes the daemon's allocator to its working size; the
# second must not grow it. Measured: 0-70 kB between the rounds (scardd),
# while 1000 waiting clients hold about 6 MB in scardd. 768 kB over 1000
# connections fails a leak of 0.7 kB per connection or more; a few kB per
# connection exceeds it several times. Not applied to pcscd, whose thread per
# client gets glibc malloc arenas as the scheduler happens to run them: its
# growth between the rounds was 70 kB on a quiet machine, 956 and 1344 kB
# beside other load.
RSS_SLACK_KB = 768


def run_scale(daemon, n, capsys):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=daemon.socket)
    before = (daemon.rss_kb(), daemon.threads())
    p = spawn([PYTHON, str(HERE / "scale_clients.py"), str(n), READER0, "120000"],
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("READY"), "scale client failed: %r %s" % (line, p.stderr.read()[-2000:])
        _, n_ok, n_bad, n_waiting, setup_err = line.split(" ", 4)
        during = (daemon.rss_kb(), daemon.threads(), daemon.open_fds())
        with capsys.disabled():
            print("\n[scale] %s with %s clients waiting (%s failed to start %s): "
                  "VmRSS %d kB (idle %d kB), threads %d (idle %d), fds %d"
                  % (daemon.kind, n_ok, n_bad, setup_err.strip(), during[0], before[0], during[1], before[1],
                     during[2]))
        assert int(n_bad) == 0, "%s clients could not establish a context and read the state: %s" % (n_bad, setup_err)
        assert int(n_waiting) == n, "only %s of %d clients got to wait in SCardGetStatusChange" % (n_waiting, n)
        daemon.card(0).insert(wait=False)
        out = p.stdout.readline()
        assert out, "scale client died: %s" % p.stderr.read()[-2000:]
        res = json.loads(out)
        with capsys.disabled():
            print("[scale] after the insertion: %s" % res)
        return res
    finally:
        stop_process(p, timeout=30)


def scale_rounds(daemon, n, capsys):
    """ROUNDS times: n clients wait, one insertion wakes them all, they go,
    the card goes. Checks every round's results, the descriptors after each
    and (scardd) the RSS growth from the first round to the last."""
    fds = daemon.open_fds()
    rss = []
    for i in range(ROUNDS):
        res = run_scale(daemon, n, capsys)
        assert res["errors"] == {}, res
        assert res["woken"] == n, res
        assert res["present"] == n, "every client must see the card present and CHANGED: %s" % res
        assert res["counter_up"] == n, "every client must see the event counter go up by one: %s" % res
        daemon.card(0).remove()
        daemon.wait_fds(fds, what="round %d: %d clients and the card left" % (i + 1, n))
        rss.append(daemon.rss_kb())
    with capsys.disabled():
        print("[scale] %s RSS after each round of %d clients: %s kB" % (daemon.kind, n, rss))
    assert daemon.kind != "scardd" or rss_grew_within(rss[-1] - rss[0], RSS_SLACK_KB), \
        "%s RSS after each round of %d clients: %s kB" % (daemon.kind, n, rss)


@pytest.mark.xfail(IS_PCSCD, strict=True,
                   reason="pcscd: one thread per client, capped at 200 (-t); connections beyond are closed")
def test_thousand_clients_woken_by_one_insertion(quiet_daemon, capsys):
    scale_rounds(quiet_daemon, N, capsys)


def test_hundred_clients_woken_by_one_insertion(quiet_daemon, capsys):
    # within pcscd's limits: shows the test itself is right
    scale_rounds(quiet_daemon, 100, capsys)


def test_thousand_clients_pcscd_with_raised_thread_cap(request, test_dir, capsys):
    """Validates the 1000-client test itself, in every run: Debian's pcscd,
    its thread cap raised above N, passes it (its RSS is not judged: see
    RSS_SLACK_KB)."""
    gen = _run_daemon(request, test_dir, kind="pcscd", log_level="error", extra_args=["-t", str(N + 50)])
    d = next(gen)
    try:
        scale_rounds(d, N, capsys)
    finally:
        for _ in gen:
            pass
