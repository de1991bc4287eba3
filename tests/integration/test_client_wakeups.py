"""Our libpcsclite sleeps once per call while it waits for the daemon: woken
by the answer, not by the daemon reading the request. (A recv blocked on a
Unix socket is also woken when the peer takes what it sent, because the
send space coming back wakes the same queue; that costs a second wake-up
per call whenever the daemon reads after the client fell asleep.)

A fake daemon makes that deterministic: it reads each request only after
the client has surely gone to sleep, and answers after a second pause. The
client counts its own sleeps (voluntary context switches) around the call."""
import socket
import struct
import threading

import pytest

import pcsc_raw
from client_env import our_lib
from conftest import SANITIZED
from one_client_daemon import canned_answer, one_client_daemon, recv_exact, run_client

PAUSE = 0.1  # long enough for the client to be asleep in its wait

# The client: one SCardEstablishContext, with its thread's sleeps around it.
CLIENT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
def sleeps():
    for line in open("/proc/thread-self/status"):
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
ctx = ctypes.c_long(0)
before = sleeps()
rv = lib.SCardEstablishContext(2, None, None, ctypes.byref(ctx))
after = sleeps()
print(rv, after - before)
"""

SERVED = (pcsc_raw.CMD_VERSION, pcsc_raw.SCARD_ESTABLISH_CONTEXT, pcsc_raw.SCARD_RELEASE_CONTEXT)


def slow_daemon(served):
    """Serves the client, taking each request and answering it only after
    a pause; served gets each command answered."""
    def serve(conn):
        while True:
            try:
                # wait for the request, then let the client fall asleep before taking it
                conn.recv(1, socket.MSG_PEEK)
            except OSError:
                return
            threading.Event().wait(PAUSE)
            _, cmd = struct.unpack("<II", recv_exact(conn, 8))
            assert cmd in SERVED, "unexpected command 0x%02X" % cmd
            body = recv_exact(conn, pcsc_raw.SIZE[cmd])
            threading.Event().wait(PAUSE)
            conn.sendall(canned_answer(cmd, body, (4, 4)))
            served.append(cmd)
    return serve


def test_one_wakeup_per_call(tmp_path):
    if SANITIZED:
        pytest.skip("sanitizer: an instrumented libpcsclite cannot load into Debian's python")
    path = str(tmp_path / "slow.comm")
    served = []
    with one_client_daemon(path, slow_daemon(served)) as errors:
        r = run_client(path, CLIENT, our_lib())
    assert not errors, errors
    assert r.returncode == 0, r.stderr
    rv, sleeps = (int(x) for x in r.stdout.split())
    assert rv == 0, "SCardEstablishContext: 0x%08X" % (rv & 0xFFFFFFFF)
    assert pcsc_raw.SCARD_ESTABLISH_CONTEXT in served, served
    # one sleep per request answered; a recv woken by the daemon's read sleeps twice
    assert 0 < sleeps <= len(served), "%d sleeps for %d requests %s" % (sleeps, len(served), served)
