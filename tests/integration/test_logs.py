"""Log lines people can act on: scardd's debug line for each request names
the client (session, pid and uid from SO_PEERCRED), the command, the reader
(the one the request names or its card handle's) and the result by
pcsc-lite's name and in hex, once per request; -a's APDU lines name the
reader and the client. The requests come from Debian's libpcsclite1
(pyscard in pcsc_peer.py) and, where Debian's library would answer for
itself, from a raw 4:4 client (pcsc_raw.py)."""
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcsc_raw as raw  # noqa: E402
from conftest import READER0, READER1, Peer, _run_daemon, scardd_only  # noqa: E402
from scard_util import echo_apdu  # noqa: E402

pytestmark = scardd_only("scardd's own log lines")

SHARED, EXCLUSIVE = raw.SCARD_SHARE_SHARED, raw.SCARD_SHARE_EXCLUSIVE
T0, T1 = raw.SCARD_PROTOCOL_T0, raw.SCARD_PROTOCOL_T1
WAIT = 10.0  # a bound on something that happens at once, never a measurement
# "2024-05-01 12:00:00.123 DEBUG text"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|ERROR|CRITICAL) (.*)$")


def log_lines(daemon):
    out = []
    for line in daemon.log.read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def who(pid):
    """The client part of a line for a process of ours (uid: the test's)."""
    return r"client \d+ \(pid %d, uid %d\)" % (pid, os.getuid())


def wait_lines(daemon, pattern, count=1):
    """The DEBUG/INFO lines matching pattern, once there are `count` of them
    (a line is written right after its answer is sent, so it may trail it)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + WAIT
    while True:
        found = [(lvl, text) for lvl, text in log_lines(daemon) if rx.search(text)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("%d line(s) matching %r wanted, %d found; log tail:\n%s"
                                 % (count, pattern, len(found), daemon.log_tail(40)))
        time.sleep(0.05)


@pytest.fixture
def peer(daemon, test_dir):
    p = Peer(daemon.socket, test_dir, name="debian-client")
    yield p
    p.close()


@pytest.fixture
def apdu_daemon(request, test_dir):
    """scardd -d -a with vpcd's two readers."""
    yield from _run_daemon(request, test_dir, extra_args=["--apdu"])


def test_each_request_names_client_reader_and_result(daemon, card, peer):
    ctx = peer.call("establish")["ctx"]
    r = peer.call("connect", ctx, READER0, SHARED, T0 | T1)
    assert r["hr"] == 0, hex(r["hr"])
    h, proto = r["card"], r["proto"]
    r = peer.call("transmit", h, proto, echo_apdu(b"\x01\x02").hex())
    assert r["hr"] == 0 and r["resp"] == "01029000", r
    assert peer.call("status", h)["hr"] == 0
    miss = peer.call("connect", ctx, READER1, SHARED, T0 | T1)["hr"]
    assert miss == raw.SCARD_E_NO_SMARTCARD, hex(miss)
    assert peer.call("disconnect", h, raw.SCARD_LEAVE_CARD)["hr"] == 0
    assert peer.call("release", ctx)["hr"] == 0

    c = who(peer.proc.pid)
    ok = r": SCARD_S_SUCCESS \(0x00000000\)$"
    on0 = r' reader "%s"' % re.escape(READER0)
    # Debian's libpcsclite 1.9.9 speaks 4:4, in this machine's byte order
    wait_lines(daemon, c + r": CMD_VERSION 4:4: served 4:4, little-endian, 16-record reader arrays" + ok)
    wait_lines(daemon, c + r": SCARD_ESTABLISH_CONTEXT" + ok)
    wait_lines(daemon, c + r": SCARD_CONNECT" + on0 + ok)
    wait_lines(daemon, c + r": SCARD_TRANSMIT" + on0 + ok)
    wait_lines(daemon, c + r": SCARD_STATUS" + on0 + ok)
    # the failure, by name and in hex, on the reader the request named
    wait_lines(daemon, c + r': SCARD_CONNECT reader "%s": SCARD_E_NO_SMARTCARD \(0x8010000C\)$'
               % re.escape(READER1))
    # the disconnect still names the reader of the handle it freed
    wait_lines(daemon, c + r": SCARD_DISCONNECT" + on0 + ok)
    wait_lines(daemon, c + r": SCARD_RELEASE_CONTEXT" + ok)

    # one line per request, at debug level, and no line in the old form
    mine = [(lvl, text) for lvl, text in log_lines(daemon) if re.match(c + ": ", text)]
    assert {lvl for lvl, _ in mine} == {"DEBUG"}, mine
    commands = [text.split(": ")[1].split(" ")[0] for _, text in mine]
    assert commands.count("SCARD_TRANSMIT") == 1, commands
    assert commands.count("SCARD_CONNECT") == 2, commands
    assert commands.count("SCARD_DISCONNECT") == 1, commands
    assert not [t for _, t in log_lines(daemon) if re.match(r"client \d+: [A-Z_]+$", t)]


def test_failing_requests_name_their_error(daemon, card, peer):
    """Errors answered at once, after a wait for a transaction lock, and for
    a handle the daemon does not know (no reader to name then)."""
    ctx = peer.call("establish")["ctx"]
    r = peer.call("connect", ctx, READER0, SHARED, T1)
    assert r["hr"] == 0, hex(r["hr"])

    with raw.RawClient(daemon.socket) as c:
        rctx = c.hello()
        rv, card, proto = c.connect(rctx, READER0, share=EXCLUSIVE)
        assert rv == raw.SCARD_E_SHARING_VIOLATION, hex(rv)
        rv, card, proto = c.connect(rctx, READER0)
        assert rv == 0, hex(rv)
        # another handle's transaction: the BEGIN waits, then is refused
        assert peer.call("begin", r["card"])["hr"] == 0
        rv = c.begin(card)
        assert rv == raw.SCARD_E_SHARING_VIOLATION, hex(rv)
        rv, _ = c.transmit(0x1234, echo_apdu(b"\x01"), protocol=proto)
        assert rv == raw.SCARD_E_INVALID_HANDLE, hex(rv)

    c = who(os.getpid())
    wait_lines(daemon, c + r': SCARD_CONNECT reader "%s": SCARD_E_SHARING_VIOLATION \(0x8010000B\)$'
               % re.escape(READER0))
    wait_lines(daemon, c + r': SCARD_BEGIN_TRANSACTION reader "%s": SCARD_E_SHARING_VIOLATION '
               r'\(0x8010000B\)$' % re.escape(READER0))
    wait_lines(daemon, c + r": SCARD_TRANSMIT: SCARD_E_INVALID_HANDLE \(0x80100003\)$")
    assert peer.call("end", r["card"], raw.SCARD_LEAVE_CARD)["hr"] == 0


def test_apdu_lines_name_reader_and_client(apdu_daemon, test_dir):
    apdu_daemon.card(0).insert()
    p = Peer(apdu_daemon.socket, test_dir, name="debian-client")
    try:
        ctx = p.call("establish")["ctx"]
        r = p.call("connect", ctx, READER0, SHARED, T1)
        assert r["hr"] == 0, hex(r["hr"])
        cmd = echo_apdu(b"\xCA\xFE")
        r = p.call("transmit", r["card"], r["proto"], cmd.hex())
        assert r["hr"] == 0, hex(r["hr"])
        resp = bytes.fromhex(r["resp"])
        pid = p.proc.pid
    finally:
        p.close()

    def spaced(b):
        return " ".join("%02X" % x for x in b)
    head = who(pid) + r' reader "%s" ' % re.escape(READER0)
    (lvl, _), = wait_lines(apdu_daemon, "^" + head + r"APDU: %s$" % spaced(cmd))
    assert lvl == "INFO"
    (lvl, _), = wait_lines(apdu_daemon, "^" + head + r"RAPDU: %s$" % spaced(resp))
    assert lvl == "INFO"
