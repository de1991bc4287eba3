"""Card presence watched apart from the requests (issue 10, point 4).

A card in reader 0 takes 4 s to answer each transmit (ifd-virtual's
delay.0). While one client's transmit is in the driver, the card is
removed. A driver that answers scardd's SCARDD_TAG_IFD_PRESENCE_ANYTIME
(include/scardd_ifd.h) with 1 has its presence asked by a watcher, apart
from the device's jobs: the removal reaches the loop, and every waiting
client, before the transmit's answer. Without the tag, scardd asks only
between its calls on the device, as for any driver: after the transmit.

Order is read from scardd's own log (one thread writes it: the loop), never
from clocks.
"""
import re
import signal
import time

import pytest

from virtual_env import WAIT_CHANGE, LineReader, VirtualDaemon

DELAY_MS = 4000
# SELECT of ifd-virtual's built-in card application
SELECT_BUILTIN = [0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 0x73, 0x63, 0x61, 0x72, 0x64, 0x64]
IN_DRIVER = "this transmit takes %d ms" % DELAY_MS  # ifd-virtual's debug line

LONG_TRANSMIT = """
import sys
from smartcard.scard import *
hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
hr, h, proto = SCardConnect(ctx, %r, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
assert hr == 0, hex(hr & 0xFFFFFFFF)
print("CONNECTED", flush=True)
hr, resp = SCardTransmit(h, proto, %r)
print("DONE", hex(hr & 0xFFFFFFFF), flush=True)
"""

MODES = {
    # driver's own event wait; the event thread asks presence itself
    "events": "",
    # no event wait: one watcher thread polls presence
    "polling": "events = no\n",
}


def daemon(extra):
    d = VirtualDaemon("scardd", readers=2, cards={0: "builtin", 1: "builtin"}, poll_ms=100)
    conf = d.instances[0]["conf"]
    conf.write_text(conf.read_text() + "delay.0 = %d\n" % DELAY_MS + extra)
    return d.start()


def answer_line(log, reader):
    return re.search(r'SCARD_TRANSMIT reader "%s": [^\n]*' % re.escape(reader), log)


def event_wakes(d, slot=0):
    """How often the daemon's event wait on reader `slot` returned for an event."""
    line = [ln for ln in d.control_cmd("status %d" % slot).splitlines()
            if ln.startswith("slot %d " % slot)][0]
    return int(re.search(r"event_wakes=(\d+)", line).group(1))


def wait_log(d, text, what):
    for _ in range(400):
        if text in d.log:
            return
        time.sleep(0.05)
    raise AssertionError("no %s in the log:\n%s" % (what, d.log[-3000:]))


def remove_during_transmit(d):
    """Starts the long transmit and a waiter on reader 0, removes the card
    once the transmit is in the driver; returns (transmit's result, the
    waiter's CHANGED line, the daemon's log)."""
    reader = d.reader(0)
    waiter = d.spawn_py(WAIT_CHANGE % reader)
    sender = d.spawn_py(LONG_TRANSMIT % (reader, list(SELECT_BUILTIN)))
    try:
        w_lines, s_lines = LineReader(waiter), LineReader(sender)
        w_lines.wait_for(lambda line: line.startswith("READY"))
        s_lines.wait_for(lambda line: line.startswith("CONNECTED"))
        wait_log(d, IN_DRIVER, "transmit in the driver")
        d.control_cmd("remove 0")
        changed = w_lines.wait_for(lambda line: line.startswith("CHANGED"), timeout=30)
        done = s_lines.wait_for(lambda line: line.startswith("DONE"), timeout=30)
        # scardd writes a request's line just after sending its answer
        wait_log(d, 'SCARD_TRANSMIT reader "%s"' % reader, "the transmit's answer")
        return done.split()[1], changed, d.log
    finally:
        for p in (waiter, sender):
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.mark.parametrize("mode", MODES)
def test_removal_seen_while_the_driver_transmits(mode):
    """Presence at any time: the card's removal is logged and reaches the
    waiting client before the long transmit is answered."""
    d = daemon(MODES[mode])
    try:
        result, changed, log = remove_during_transmit(d)
        removed = log.find("card removed from %s\n" % d.reader(0))  # presence's line
        answer = answer_line(log, d.reader(0))
        assert answer, log[-3000:]
        assert 0 <= removed < answer.start(), "removal seen only after the transmit:\n" + log[-3000:]
        state = int(changed.split()[2], 16)
        assert state & 0x10, changed  # SCARD_STATE_EMPTY
        assert result != "0x0", "a transmit to a card pulled out answered success"
        # the other reader was left alone
        st = d.scard_json("list")
        assert [r for r in st["readers"] if r["name"] == d.reader(1)][0]["atr"], st
    finally:
        d.cleanup()


def test_without_the_tag_removal_waits_for_the_transmit():
    """presence_anytime = no (the tag answered 0): scardd asks presence only
    between its calls on the device, so the removal comes after the answer."""
    d = daemon("presence_anytime = no\n")
    try:
        before = event_wakes(d)
        result, changed, log = remove_during_transmit(d)
        # the event thread waited for the worker's look instead of spinning
        # through the transmit on a wait that keeps returning
        assert event_wakes(d) - before < 20, (before, event_wakes(d))
        answer = answer_line(log, d.reader(0))
        assert answer, log[-3000:]
        # the transmit itself finds the card gone; presence said nothing before
        assert "card removed from %s\n" % d.reader(0) not in log[:answer.start()], log[-3000:]
        assert "card removed from %s (the driver found none during a transmit)" % d.reader(0) in log
        assert int(changed.split()[2], 16) & 0x10, changed
    finally:
        d.cleanup()


@pytest.mark.parametrize("mode", MODES)
def test_card_swapped_during_the_transmit(mode):
    """Removed and another card put in while the transmit runs: the removal
    is posted at once; the new card is powered by the device's own thread
    once the transmit is over, and clients then see its ATR."""
    d = daemon(MODES[mode])
    try:
        reader = d.reader(0)
        sender = d.spawn_py(LONG_TRANSMIT % (reader, list(SELECT_BUILTIN)))
        try:
            s_lines = LineReader(sender)
            s_lines.wait_for(lambda line: line.startswith("CONNECTED"))
            wait_log(d, IN_DRIVER, "transmit in the driver")
            d.control_cmd("remove 0")
            # the watcher's removal, while the transmit still runs
            wait_log(d, "card removed from %s\n" % reader, "removal")
            assert sender.poll() is None and not any("DONE" in x for x in s_lines.lines)
            d.control_cmd("insert 0 builtin")
            done = s_lines.wait_for(lambda line: line.startswith("DONE"), timeout=30)
            assert done.split()[1] != "0x0"
        finally:
            if sender.poll() is None:
                sender.kill()
            sender.wait()
        for _ in range(200):
            st = d.scard_json("list")
            r0 = [r for r in st["readers"] if r["name"] == reader][0]
            if r0.get("atr"):
                break
            time.sleep(0.05)
        assert r0.get("atr"), st
        log = d.log
        assert log.count("card inserted into %s" % reader) >= 2, log[-3000:]
        # a new insertion: the client's old handle is told so
        r = d.py("""
            from smartcard.scard import *
            hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
            hr, h, p = SCardConnect(ctx, %r, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
            assert hr == 0, hex(hr & 0xFFFFFFFF)
            hr, resp = SCardTransmit(h, p, %r)
            assert hr == 0 and resp[-2:] == [0x90, 0x00], (hex(hr & 0xFFFFFFFF), resp)
            print("OK")
        """ % (reader, list(SELECT_BUILTIN)), timeout=60)
        assert "OK" in r.stdout
    finally:
        d.cleanup()


def test_watcher_stops_with_the_daemon():
    """A polling driver's watcher thread ends with the daemon: SIGTERM, exit 0,
    nothing reported by the sanitizers (the log check in stop())."""
    d = daemon(MODES["polling"])
    try:
        proc = d.proc
        d.stop(signal.SIGTERM)
        assert proc.returncode == 0, (proc.returncode, d.log[-3000:])
    finally:
        d.cleanup()
