"""SIGHUP reads reader.conf.d again (scardd): a stanza that left takes its
reader away at run time (handles answer SCARD_E_READER_UNAVAILABLE, waiters
wake, the driver's channel is closed), a new stanza adds a reader, and an
untouched one keeps its reader, card handles and all. The daemon never stops
on SIGHUP. Clients are Debian's libpcsclite (pyscard)."""
import os
import signal
import time

import pytest

from conftest import IS_PCSCD
from thread_state import wait_in_event_wait
from virtual_env import LineReader, VirtualDaemon

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: scardd's own SIGHUP reload")

TIMEOUT = 30

# Holds a card handle on each reader in `names`; on each stdin line, transmits a
# SELECT on every handle and prints the codes; "wait NAME" starts a status
# wait on NAME in a thread and prints its result when it returns.
HOLDER = r"""
import sys, threading
from smartcard.scard import *
names = sys.argv[1:]
hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
assert hr == 0, hr
cards = []
for n in names:
    hr, h, p = SCardConnect(ctx, n, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
    assert hr == 0, (n, hex(hr & 0xFFFFFFFF))
    cards.append((h, p))
print("HELD", flush=True)

def wait(name):
    hr, ctx2 = SCardEstablishContext(SCARD_SCOPE_USER)
    hr, st = SCardGetStatusChange(ctx2, 0, [(name, SCARD_STATE_UNAWARE)])
    cur = st[0][1] & ~SCARD_STATE_CHANGED
    print("WAITING", threading.get_native_id(), flush=True)
    hr, st = SCardGetStatusChange(ctx2, 60000, [(name, cur)])
    print("WOKE", hex(hr & 0xFFFFFFFF), hex(st[0][1]), flush=True)

for line in sys.stdin:
    words = line.split()
    if words and words[0] == "wait":
        threading.Thread(target=wait, args=(" ".join(words[1:]),)).start()
        continue
    codes = []
    for h, p in cards:
        hr, resp = SCardTransmit(h, p, [0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 0x73, 0x63, 0x61,
                                       0x72, 0x64, 0x64])
        codes.append(hex(hr & 0xFFFFFFFF))
    print("CODES", " ".join(codes), flush=True)
"""

SCARD_E_READER_UNAVAILABLE = "0x80100017"
SCARD_STATE_UNAVAILABLE = 0x8


def reader_names(d):
    return [r["name"] for r in d.scard_json("list")["readers"]]


def wait_names(d, want):
    deadline = time.monotonic() + TIMEOUT
    names = None
    while time.monotonic() < deadline:
        names = reader_names(d)
        if names == want:
            return
        time.sleep(0.1)
    events = [l for l in d.log.splitlines() if "reader" in l and "client" not in l or "SIGHUP" in l]
    raise AssertionError("readers %r, want %r; the daemon's reader lines:\n%s"
                         % (names, want, "\n".join(events[-40:])))


def ask(p, lines, line, prefix):
    p.stdin.write(line + "\n")
    p.stdin.flush()
    return lines.wait_for(lambda l: l.startswith(prefix), timeout=TIMEOUT).split()


def test_sighup_applies_removed_and_added_stanzas():
    d = VirtualDaemon("scardd", readers=1, cards={0: "builtin"}, friendly="Stays",
                      extra_instances=[dict(friendly="Goes", readers=1, cards={0: "builtin"})])
    try:
        d.start()
        stays, goes = "Stays 00 00", "Goes 01 00"
        assert reader_names(d) == [stays, goes]
        holder = d.spawn_py(HOLDER.replace("names = sys.argv[1:]", "names = %r" % ([stays, goes],)))
        lines = LineReader(holder)
        lines.wait_for(lambda l: l.startswith("HELD"), timeout=TIMEOUT)
        assert ask(holder, lines, "go", "CODES")[1:] == ["0x0", "0x0"]
        holder.stdin.write("wait %s\n" % goes)
        holder.stdin.flush()
        tid = int(lines.wait_for(lambda l: l.startswith("WAITING"), timeout=TIMEOUT).split()[1])
        # registered with the daemon: from here the reader's removal must end it
        assert wait_in_event_wait(tid, pid=holder.pid), "the waiter never got to its event wait"

        # "Goes" leaves the configuration, "New" joins it
        (d.confdir / "virtual1").unlink()
        d.add_instance("New", readers=1, cards={0: "builtin"})
        os.kill(d.proc.pid, signal.SIGHUP)
        wait_names(d, [stays, "New 01 00"])  # the freed number is taken again

        woke = lines.wait_for(lambda l: l.startswith("WOKE"), timeout=TIMEOUT).split()
        assert woke[1] == "0x0" and int(woke[2], 16) & SCARD_STATE_UNAVAILABLE, woke
        # the untouched reader's handle goes on; the removed one's is told
        assert ask(holder, lines, "go", "CODES")[1:] == ["0x0", SCARD_E_READER_UNAVAILABLE]
        assert d.proc.poll() is None, "scardd stopped on SIGHUP"
        log = d.log
        assert "reader removed: Goes 01 00" in log, log[-3000:]
        assert "reader Goes closed" in log, log[-3000:]  # its channel closed, its thread ended
        # the new reader serves a fresh client
        r = d.py("""
            from smartcard.scard import *
            hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
            hr, h, p = SCardConnect(ctx, "New 01 00", SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
            assert hr == 0, hex(hr & 0xFFFFFFFF)
            print("ok")
        """)
        assert r.stdout.strip() == "ok"
    finally:
        d.cleanup()


def test_sighup_with_an_unreadable_configuration_changes_nothing():
    d = VirtualDaemon("scardd", readers=2, cards={0: "builtin"})
    try:
        d.start()
        before = reader_names(d)
        moved = d.confdir.with_name("moved-away")
        d.confdir.rename(moved)
        os.kill(d.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while "the readers stay as they are" not in d.log and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "the readers stay as they are" in d.log, d.log[-3000:]
        assert reader_names(d) == before
        assert d.proc.poll() is None
        # and an empty configuration removes every reader
        moved.rename(d.confdir)
        for f in d.confdir.iterdir():
            f.unlink()
        os.kill(d.proc.pid, signal.SIGHUP)
        wait_names(d, [])
    finally:
        d.cleanup()
