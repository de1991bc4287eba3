"""Many clients at once: 1000 contexts, each blocked in SCardGetStatusChange,
all woken by one card insertion. The daemon's RSS and thread count are
printed for the record, never asserted."""
import json
import os
import subprocess
import time

import pytest

from conftest import IS_PCSCD, PYTHON, HERE, READER0, spawn, stop_process

N = int(os.environ.get("SCARDD_TEST_SCALE_N", "1000"))


def run_scale(daemon, n, capsys):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=daemon.socket)
    before = (daemon.rss_kb(), daemon.threads())
    p = spawn([PYTHON, str(HERE / "scale_clients.py"), str(n), READER0, "120000"],
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("READY"), "scale client failed: %r %s" % (line, p.stderr.read()[-2000:])
        _, n_ok, n_bad, setup_err = line.split(" ", 3)
        time.sleep(2)  # let every client reach its blocking wait
        during = (daemon.rss_kb(), daemon.threads(), daemon.open_fds())
        with capsys.disabled():
            print("\n[scale] %s with %s clients waiting (%s failed to start %s): "
                  "VmRSS %d kB (idle %d kB), threads %d (idle %d), fds %d"
                  % (daemon.kind, n_ok, n_bad, setup_err.strip(), during[0], before[0], during[1], before[1],
                     during[2]))
        assert int(n_bad) == 0, "%s clients could not establish a context and read the state: %s" % (n_bad, setup_err)
        daemon.card(0).insert(wait=False)
        out = p.stdout.readline()
        assert out, "scale client died: %s" % p.stderr.read()[-2000:]
        res = json.loads(out)
        with capsys.disabled():
            print("[scale] after the insertion: %s" % res)
        return res
    finally:
        stop_process(p, timeout=30)


@pytest.mark.xfail(IS_PCSCD, strict=True,
                   reason="pcscd: one thread per client, capped at 200 (-t); connections beyond are closed")
def test_thousand_clients_woken_by_one_insertion(quiet_daemon, capsys):
    res = run_scale(quiet_daemon, N, capsys)
    assert res["errors"] == {}, res
    assert res["woken"] == N
    assert res["present"] == N, "every client must see the card present and CHANGED"
    assert res["counter_up"] == N, "every client must see the event counter go up by one"


def test_hundred_clients_woken_by_one_insertion(quiet_daemon, capsys):
    # within pcscd's limits: shows the test itself is right
    res = run_scale(quiet_daemon, 100, capsys)
    assert res["errors"] == {} and res["woken"] == 100 and res["present"] == 100 and res["counter_up"] == 100, res


@pytest.mark.skipif(not IS_PCSCD, reason="pcscd-only: validates the 1000-client test itself")
def test_thousand_clients_pcscd_with_raised_thread_cap(request, test_dir, capsys):
    from conftest import _run_daemon
    gen = _run_daemon(request, test_dir, log_level="error", extra_args=["-t", str(N + 50)])
    d = next(gen)
    try:
        res = run_scale(d, N, capsys)
        assert res["errors"] == {} and res["woken"] == N and res["present"] == N and res["counter_up"] == N, res
    finally:
        for _ in gen:
            pass
