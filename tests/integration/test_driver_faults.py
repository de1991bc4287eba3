"""scardd against a misbehaving reader driver (tests/drivers/ifd_fault.c).

Each test starts its own scardd over fault-driver stanzas and steers the
driver through its control directories (see fault_driver.py). No timing is
asserted: waits are bounded only so that a broken daemon fails the test
instead of hanging it.
"""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_driver import (  # noqa: E402
    DRIVER,
    LIST_READERS, SCARD_E_TIMEOUT, SCARD_E_UNSUPPORTED_FEATURE, SCARD_STATE_CHANGED,
    SCARD_STATE_EMPTY, SCARD_STATE_MUTE, SCARD_STATE_PRESENT, SCARD_W_UNPOWERED_CARD,
    SCARD_W_UNRESPONSIVE_CARD, Rig,
    hx, skip_unless_built, wait_for)

APDU = [0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00]
ECHOED = APDU + [0x90, 0x00]  # the driver answers the command itself, then 90 00


@pytest.fixture
def rig():
    skip_unless_built()
    r = Rig()
    try:
        yield r
    finally:
        r.cleanup()


# Connects to argv[1] (once it has a card) and says so.
CONNECT = r'''
ctx = context()
wait_bits(ctx, sys.argv[1], s.SCARD_STATE_PRESENT)
hr, card, proto = connect(ctx, sys.argv[1])
out(connected=hr, proto=proto)
'''

# ... then transmits APDU when told "go".
BLOCKED_TRANSMIT = CONNECT + r'''
command()
hr, resp = s.SCardTransmit(card, proto, %r)
out(hr=hr, resp=resp)
''' % (APDU,)


def start_blocked_transmit(rig, daemon, reader, name):
    """A client whose SCardTransmit is stuck in the hanging driver of reader."""
    c = rig.client(daemon, BLOCKED_TRANSMIT, [name])
    msg = c.next()
    assert msg["connected"] == 0, "SCardConnect(%s): %s" % (name, hx(msg["connected"]))
    before = reader.calls("transmit")
    reader.hang()
    c.send("go")
    # the driver logs the call before it starts hanging: now it is stuck inside
    wait_for(lambda: reader.calls("transmit") > before, what="the transmit to reach the driver")
    return c


# --- 1. one stuck reader does not stall the others -----------------------------

# New client while reader A hangs: lists readers, uses B 00 00, then blocks in
# SCardGetStatusChange until a card is inserted into B 00 01.
OTHER_READER = r'''
b0, b1 = sys.argv[2:4]
ctx = context()
hr, readers = s.SCardListReaders(ctx, [])
out(hr=hr, readers=readers)
wait_bits(ctx, b0, s.SCARD_STATE_PRESENT)
hr, card, proto = connect(ctx, b0)
results = []
for i in range(5):
    cmd = [0x00, 0xB0, 0x00, i, 0x01, i]
    thr, resp = s.SCardTransmit(card, proto, cmd)
    results.append([thr, resp == cmd + [0x90, 0x00]])
out(connect=hr, transmits=results)
st = state_of(ctx, b1)
out(ready=st)
hr, res = s.SCardGetStatusChange(ctx, 30000, [(b1, st & ~s.SCARD_STATE_CHANGED)])
out(hr=hr, state=res[0][1] if hr == 0 else 0)
'''


def test_hanging_reader_does_not_block_other_readers_or_new_clients(rig):
    a = rig.reader("Fault A", cards=[0])
    b = rig.reader("Fault B", slots=2, cards=[0])
    names = [a.reader(), b.reader(0), b.reader(1)]
    d = rig.daemon([a, b], wait=names)

    stuck = start_blocked_transmit(rig, d, a, a.reader())
    time.sleep(0.5)
    assert stuck.pending() and stuck.proc.poll() is None, \
        "SCardTransmit returned although the driver is hanging: %r" % stuck.next()

    other = rig.client(d, OTHER_READER, names)
    listed = other.next("SCardListReaders")
    assert listed["hr"] == 0, "SCardListReaders: %s" % hx(listed["hr"])
    assert set(names) <= set(listed["readers"]), listed["readers"]

    used = other.next("SCardConnect and 5 SCardTransmit on B 00 00")
    assert used["connect"] == 0, "SCardConnect(%s): %s" % (b.reader(0), hx(used["connect"]))
    for i, (hr, echoed) in enumerate(used["transmits"]):
        assert hr == 0, "transmit %d on B failed: %s" % (i, hx(hr))
        assert echoed, "transmit %d on B: wrong answer" % i
    assert b.calls("transmit", 0) == 5

    ready = other.next("state of B 00 01")
    assert ready["ready"] & SCARD_STATE_EMPTY, "B 00 01 should start empty: %s" % hx(ready["ready"])
    b.insert(1)
    seen = other.next("wake-up on the insertion into B 00 01")
    assert seen["hr"] == 0, "SCardGetStatusChange on B 00 01: %s" % hx(seen["hr"])
    assert seen["state"] & SCARD_STATE_PRESENT, "insertion not seen: %s" % hx(seen["state"])

    # all of that happened while A's driver was still stuck
    assert stuck.pending() and stuck.proc.poll() is None, \
        "the blocked transmit on A returned before its driver did: %r" % stuck.next()

    a.hang(False)
    done = stuck.next("transmit answer once A's driver returned")
    assert done["hr"] == 0, "transmit on A after the hang: %s" % hx(done["hr"])
    assert done["resp"] == ECHOED


# --- 2. event-driven presence --------------------------------------------------

def expect_wake(watcher, idx, change, want_bits, name):
    """Blocks watcher on reader idx, applies change(), expects a wake-up with want_bits."""
    watcher.send("wait", idx)
    assert watcher.next()["waiting"] == name
    time.sleep(0.3)  # let it block first (the test holds either way)
    change()
    msg = watcher.next("wake-up of SCardGetStatusChange(%s)" % name)
    assert msg["hr"] != SCARD_E_TIMEOUT, "%s: waiter never woke (no event seen)" % name
    assert msg["hr"] == 0, "SCardGetStatusChange(%s): %s" % (name, hx(msg["hr"]))
    assert msg["state"] & SCARD_STATE_CHANGED, hx(msg["state"])
    assert msg["state"] & want_bits == want_bits, \
        "%s: state %s lacks %s" % (name, hx(msg["state"]), hx(want_bits))
    return msg


def presence_calls_over(reader, seconds):
    before = reader.calls("presence")
    time.sleep(seconds)
    return reader.calls("presence") - before


def test_event_driven_reader_wakes_waiters_without_polling(rig):
    r = rig.reader("Evented", slots=2, events=True)
    names = [r.reader(0), r.reader(1)]
    # a short poll period: would the daemon poll this reader, it would show
    d = rig.daemon([r], extra_args=["--poll-ms", "100"], wait=names)
    w, states = rig.watcher(d, names)
    assert all(st & SCARD_STATE_EMPTY for st in states), [hx(s) for s in states]

    msg = expect_wake(w, 0, lambda: r.insert(0), SCARD_STATE_PRESENT, names[0])
    assert msg["atr"] == [0x3B, 0x80, 0x80, 0x01, 0x01]

    idle = presence_calls_over(r, 2.0)
    assert idle < 5, "event-driven reader was polled %d times in 2 s idle" % idle

    expect_wake(w, 1, lambda: r.insert(1), SCARD_STATE_PRESENT, names[1])
    expect_wake(w, 0, lambda: r.remove(0), SCARD_STATE_EMPTY, names[0])
    expect_wake(w, 1, lambda: r.remove(1), SCARD_STATE_EMPTY, names[1])
    assert d.proc.poll() is None


def test_reader_without_event_support_is_polled(rig):
    r = rig.reader("Polled")
    d = rig.daemon([r], extra_args=["--poll-ms", "100"], wait=[r.reader()])
    polls = presence_calls_over(r, 2.0)
    assert polls > 5, "polled reader saw only %d presence checks in 2 s" % polls

    w, _ = rig.watcher(d, [r.reader()])
    expect_wake(w, 0, lambda: r.insert(0), SCARD_STATE_PRESENT, r.reader())
    expect_wake(w, 0, lambda: r.remove(0), SCARD_STATE_EMPTY, r.reader())


# --- 3. reader names ------------------------------------------------------------

# Connects to argv[1] and transmits once: proves which slot a name drives.
ONE_TRANSMIT = r'''
ctx = context()
wait_bits(ctx, sys.argv[1], s.SCARD_STATE_PRESENT)
hr, card, proto = connect(ctx, sys.argv[1])
out(connect=hr)
if hr == 0:
    hr, resp = s.SCardTransmit(card, proto, %r)
    out(hr=hr, resp=resp)
''' % (APDU,)


STATES = r'''
ctx = context()
out(states=[state_of(ctx, n) for n in sys.argv[1:]])
'''


def check_readers(rig, d, expected, cards):
    """The daemon lists exactly expected; each (name, reader, slot) in cards drives that slot."""
    listed = rig.run(d, LIST_READERS)[0]["readers"]
    assert sorted(listed) == sorted(expected)
    for name, reader, slot in cards:
        res = rig.run(d, ONE_TRANSMIT, [name])
        assert res[0]["connect"] == 0, "SCardConnect(%s): %s" % (name, hx(res[0]["connect"]))
        assert res[1]["hr"] == 0 and res[1]["resp"] == ECHOED
        assert reader.calls("transmit", slot) == 1, "%s did not reach slot %d" % (name, slot)
    states = rig.run(d, STATES, expected)[0]["states"]
    present = sorted(n for n, st in zip(expected, states) if st & SCARD_STATE_PRESENT)
    assert present == sorted(c[0] for c in cards), [hx(st) for st in states]


def test_multi_slot_reader_names(rig):
    multi = rig.reader("Multi", slots=3, cards=[2])
    broken = rig.reader("Broken", fail_open=True)  # not added, and no hole in the names
    expected = ["Multi 00 00", "Multi 00 01", "Multi 00 02"]
    d = rig.daemon([multi, broken], wait=expected)
    check_readers(rig, d, expected, [("Multi 00 02", multi, 2)])
    assert multi.calls("transmit", 0) == 0 and multi.calls("transmit", 1) == 0


def test_same_friendly_name_twice(rig):
    twin1 = rig.reader("Twin")
    twin2 = rig.reader("Twin", cards=[0])
    expected = ["Twin 00 00", "Twin 01 00"]
    d = rig.daemon([twin1, twin2], wait=expected)
    # the second stanza gets index 01 (configuration order)
    check_readers(rig, d, expected, [("Twin 01 00", twin2, 0)])
    assert twin1.calls("transmit") == 0


def test_reader_index_counts_readers_of_the_same_driver(rig):
    # pcscd 1.9.9 with these two stanzas lists "Alpha 00 00" and "Beta 01 00"
    alpha = rig.reader("Alpha")
    beta = rig.reader("Beta")
    d = rig.daemon([alpha, beta])
    assert sorted(d.wait_readers(count=2)) == ["Alpha 00 00", "Beta 01 00"]


# --- 4. mute card ---------------------------------------------------------------

MUTE_CONNECT = r'''
ctx = context()
name = sys.argv[1]
st = wait_bits(ctx, name, s.SCARD_STATE_PRESENT)
hr, card, proto = connect(ctx, name)
direct, dcard, _ = connect(ctx, name, s.SCARD_SHARE_DIRECT, 0)
out(state=st, connect=hr, direct=direct)
'''


def test_mute_card(rig):
    r = rig.reader("Mute", cards=[0])
    r.mute(0)
    d = rig.daemon([r], wait=[r.reader()])

    res = rig.run(d, MUTE_CONNECT, [r.reader()])[0]
    want = SCARD_STATE_PRESENT | SCARD_STATE_MUTE
    assert res["state"] & want == want, "state %s, want PRESENT|MUTE" % hx(res["state"])
    # pcscd 1.9.9 retries the power-up in SCardConnect and reports this code
    assert res["connect"] == SCARD_W_UNPOWERED_CARD, \
        "SCardConnect to a mute card: %s, want SCARD_W_UNPOWERED_CARD" % hx(res["connect"])
    assert res["direct"] == 0, "SCARD_SHARE_DIRECT needs no card: %s" % hx(res["direct"])
    assert r.calls("transmit") == 0

    # a card that answers again once re-inserted is usable
    r.mute(0, on=False)
    w, _ = rig.watcher(d, [r.reader()])
    expect_wake(w, 0, lambda: r.remove(0), SCARD_STATE_EMPTY, r.reader())
    msg = expect_wake(w, 0, lambda: r.insert(0), SCARD_STATE_PRESENT, r.reader())
    assert not msg["state"] & SCARD_STATE_MUTE, hx(msg["state"])
    res = rig.run(d, ONE_TRANSMIT, [r.reader()])
    assert res[0]["connect"] == 0 and res[1]["resp"] == ECHOED


def test_connect_powers_up_a_card_that_recovered(rig):
    r = rig.reader("Mute", cards=[0])
    r.mute(0)
    d = rig.daemon([r], wait=[r.reader()])
    res = rig.run(d, MUTE_CONNECT, [r.reader()])[0]
    assert res["state"] & SCARD_STATE_MUTE and res["connect"] != 0
    r.mute(0, on=False)  # the card answers now, without being re-inserted
    res = rig.run(d, ONE_TRANSMIT, [r.reader()])
    assert res[0]["connect"] == 0, "SCardConnect: %s" % hx(res[0]["connect"])
    assert res[1]["resp"] == ECHOED


@pytest.mark.parametrize("kind", ["pcscd", "scardd"])
def test_failed_protocol_switch_is_unresponsive_card(rig, kind):
    """A card that answers power-up but fails the protocol switch (PTS):
    pcsc-lite's SCardConnect answers SCARD_W_UNRESPONSIVE_CARD (Debian's
    pcscd 1.9.9 logs "Set PTS failed" and sends it, whatever the protocols
    asked for), and so must scardd. This is the code test_virtual_driver's
    mute test used to accept besides SCARD_W_UNPOWERED_CARD."""
    r = rig.reader("Pts", cards=[0])
    r.pps_fail(0)
    d = rig.daemon([r], wait=[r.reader()], kind=kind)
    res = rig.run(d, PROTOCOL_CONNECTS, [r.reader()])
    assert [x["connect"] for x in res] == [SCARD_W_UNRESPONSIVE_CARD] * 3, \
        "%s: SCardConnect answers %s, want SCARD_W_UNRESPONSIVE_CARD for T=1, T=0|T=1 and T=0" % (
            kind, [hx(x["connect"]) for x in res])


PROTOCOL_CONNECTS = r'''
ctx = context()
name = sys.argv[1]
wait_bits(ctx, name, s.SCARD_STATE_PRESENT)
for proto in (s.SCARD_PROTOCOL_T1, s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1, s.SCARD_PROTOCOL_T0):
    hr, card, active = connect(ctx, name, proto=proto)
    if hr == 0:
        s.SCardDisconnect(card, s.SCARD_LEAVE_CARD)
    out(connect=hr)
'''


# --- 5. shutdown with a stuck driver ---------------------------------------------

@pytest.mark.parametrize("stuck_in", ["transmit", "presence"])
def test_sigterm_with_hanging_driver(rig, stuck_in):
    r = rig.reader("Stuck", cards=[0])
    d = rig.daemon([r], wait=[r.reader()])
    stuck = None
    if stuck_in == "transmit":
        stuck = start_blocked_transmit(rig, d, r, r.reader())
        flag = "hang"
    else:
        before = r.calls("presence")
        r.hang_presence()
        flag = "hang_presence"
        wait_for(lambda: r.calls("presence") > before, what="a presence check to get stuck")

    d.signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("scardd did not exit within 15 s of SIGTERM while its driver hangs:\n"
                    + d.log_tail())
    assert rc == 0, "scardd exit status %s:\n%s" % (rc, d.log_tail())
    assert not Path(d.socket).exists(), "scardd left its socket behind"
    assert r.dir.joinpath(flag).exists(), "the driver was released early: test is void"

    if stuck:
        # the client stuck in the transmit learns that the service is gone
        msg = stuck.next("transmit error after the daemon exited")
        assert msg["hr"] != 0, "transmit succeeded on a daemon that exited"


def hold_event_waits(r, until=""):
    """The reader's next event waits do not begin until the hold goes (or,
    with until="until_stop_lost", until a stop for their slot was lost), and
    a stop that comes before a wait has begun is lost (libccid's way)."""
    hold = r.dir / "wait_hold"
    before = r.calls("wait_held")
    hold.write_text(until)                     # wakes no wait (the driver ignores it)
    (r.dir / "stop_in_wait_only").touch()      # wakes the waits: the next ones are held
    wait_for(lambda: r.calls("wait_held") >= before + r.slots,
             what="the next event wait of every slot to be held")
    return hold


@pytest.mark.parametrize("slots", [1, 2])
def test_sigterm_before_an_event_wait_begins(rig, slots):
    """A driver that stops only a card-event wait in progress (libccid
    cancels its interrupt transfer in flight, if any) loses a stop that comes
    before its wait has begun: scardd repeats the stop, for every slot's
    thread, until each returns, instead of abandoning the threads inside the
    driver and closing the reader under them."""
    r = rig.reader("Late", slots=slots, events=True, cards=[0])
    d = rig.daemon([r], wait=[r.reader()])
    # each held wait begins once the driver has lost a stop for its slot
    hold_event_waits(r, until="until_stop_lost")

    d.signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("scardd did not exit within 15 s of SIGTERM:\n" + d.log_tail())
    assert rc == 0, "scardd exit status %s:\n%s" % (rc, d.log_tail())
    for slot in range(slots):
        assert r.calls("stop_lost", slot) >= 1, "slot %d lost no stop: test is void" % slot
        assert r.calls("wait_stopped", slot) == 1, \
            "slot %d's wait was never stopped:\n%s" % (slot, d.log_tail())
    assert "did not return" not in d.log(), d.log_tail()


def test_event_thread_abandoned_at_removal_finds_its_worker(rig):
    """A card-event wait that will not stop is abandoned when its reader's
    stanza goes (SIGHUP); scardd serves on, and when the wait returns at last,
    the thread finds what it uses still there (the sanitizer run reports a
    use after free otherwise) and ends."""
    stuck = rig.reader("Stuck", events=True, cards=[0])
    other = rig.reader("Other", cards=[0])
    d = rig.daemon([stuck, other], wait=[stuck.reader(), other.reader()])
    hold = hold_event_waits(stuck)

    (d.confdir / "fault").write_text(other.stanza())
    d.signal(signal.SIGHUP)
    wait_for(lambda: "card-event wait did not return" in d.log(),
             what="the held card-event thread to be abandoned")
    assert d.wait_readers([other.reader()]) == [other.reader()]
    def threads():
        return len(os.listdir("/proc/%d/task" % d.pid))
    before = threads()
    hold.unlink()                              # the wait begins

    def woken_and_ended():
        (stuck.dir / "wake").touch()           # a change: the wait returns
        return threads() < before
    wait_for(woken_and_ended, what="the abandoned thread to end once its wait returns")
    assert d.proc.poll() is None, d.log_tail()
    assert d.wait_readers([other.reader()]) == [other.reader()]


# --- 6. --driver-timeout -----------------------------------------------------------

# Connected to argv[1] (slow) and argv[2] (quick); each "slow"/"quick" command
# transmits APDU there and reports.
TWO_READERS = r'''
ctx = context()
cards = {}
for key, name in (("slow", sys.argv[1]), ("quick", sys.argv[2])):
    wait_bits(ctx, name, s.SCARD_STATE_PRESENT)
    hr, card, proto = connect(ctx, name)
    cards[key] = (card, proto)
    out(connected=hr)
while True:
    card, proto = cards[command()[0]]
    hr, resp = s.SCardTransmit(card, proto, %r)
    out(hr=hr, resp=resp)
''' % (APDU,)


def test_driver_timeout_fails_the_request_not_the_client(rig):
    slow = rig.reader("Slow", cards=[0])
    quick = rig.reader("Quick", cards=[0])
    d = rig.daemon([slow, quick], extra_args=["--driver-timeout", "2"],
                   wait=[slow.reader(), quick.reader()])
    c = rig.client(d, TWO_READERS, [slow.reader(), quick.reader()])
    assert c.next("SCardConnect")["connected"] == 0
    assert c.next("SCardConnect")["connected"] == 0

    slow.hang()
    c.send("slow")
    msg = c.next("SCardTransmit failing once the driver timeout passed")
    assert msg["hr"] == SCARD_E_TIMEOUT, "transmit to a hung driver: %s" % hx(msg["hr"])
    assert slow.calls("transmit") == 1

    # the same client goes on with another reader while the driver still hangs
    c.send("quick")
    msg = c.next("transmit on the other reader")
    assert msg["hr"] == 0 and msg["resp"] == ECHOED, msg

    # once the driver is back, the late answer went nowhere and the reader works
    slow.hang(False)
    c.send("slow")
    msg = c.next("transmit once the driver answers again")
    assert msg["hr"] == 0 and msg["resp"] == ECHOED, msg
    assert slow.calls("transmit") == 2
    assert d.proc.poll() is None


def test_request_that_timed_out_in_the_queue_never_reaches_the_card(rig):
    slow = rig.reader("Slow", cards=[0])
    quick = rig.reader("Quick", cards=[0])
    d = rig.daemon([slow, quick], extra_args=["--driver-timeout", "2"],
                   wait=[slow.reader(), quick.reader()])
    c = rig.client(d, TWO_READERS, [slow.reader(), quick.reader()])
    assert c.next("SCardConnect")["connected"] == 0
    assert c.next("SCardConnect")["connected"] == 0
    slow.hang()
    c.send("slow")  # reaches the driver and hangs there
    assert c.next("first transmit timing out")["hr"] == SCARD_E_TIMEOUT
    c.send("slow")  # waits behind it, never started
    assert c.next("second transmit timing out")["hr"] == SCARD_E_TIMEOUT
    assert slow.calls("transmit") == 1
    slow.hang(False)
    c.send("slow")  # answered only after whatever was queued before it
    msg = c.next("transmit once the driver answers again")
    assert msg["hr"] == 0, hx(msg["hr"])
    # the hung one and the last one; the one the client gave up on must not run
    assert slow.calls("transmit") == 2, \
        "a transmit the client was told had failed was sent to the card afterwards"


# --- the driver's own plumbing, as other tests rely on it -------------------------

PLUMBING = r'''
ctx = context()
wait_bits(ctx, sys.argv[1], s.SCARD_STATE_PRESENT)
hr, card, proto = connect(ctx, sys.argv[1])
echo = s.SCardControl(card, s.SCARD_CTL_CODE(1), [1, 2, 3])
other = s.SCardControl(card, s.SCARD_CTL_CODE(2), [1, 2, 3])
vendor = s.SCardGetAttrib(card, s.SCARD_ATTR_VENDOR_NAME)
status = s.SCardStatus(card)
out(connect=hr, echo=echo, other=other[0], vendor=vendor, atr=status[4])
'''


def test_control_attributes_and_atr_reach_the_driver(rig):
    atr = bytes.fromhex("3B 02 14 50")  # a T=0 card with two historical bytes
    r = rig.reader("Plumbing")
    r.insert(0, atr)
    d = rig.daemon([r], wait=[r.reader()])
    res = rig.run(d, PLUMBING, [r.reader()])[0]
    assert res["connect"] == 0, "SCardConnect: %s" % hx(res["connect"])
    assert res["echo"] == [0, [1, 2, 3]]
    assert res["other"] == SCARD_E_UNSUPPORTED_FEATURE, hx(res["other"])
    assert res["vendor"] == [0, list(b"scardd tests\0")]
    assert res["atr"] == list(atr)
    assert r.calls("control", 0) == 2


def test_card_offering_t0_and_t1_gets_t1(rig):
    r = rig.reader("Proto", cards=[0])  # default ATR 3B 80 80 01 01
    d = rig.daemon([r], wait=[r.reader()])
    res = rig.run(d, CONNECT, [r.reader()])[0]
    assert res["connected"] == 0, hx(res["connected"])
    assert res["proto"] == 2, "active protocol %d, want SCARD_PROTOCOL_T1 (2)" % res["proto"]



# --- a reader that appears while the daemon already serves --------------------

SCARD_TOOL = Path(os.environ.get("SCARDD_BUILD", Path(__file__).resolve().parents[2] / "build")) \
    / "src" / "tools" / "scard"


def read_json_lines(proc, until, timeout):
    """Reads `scard --json watch` lines until until(event) or the deadline,
    without ever blocking past it. Returns every event read."""
    seen, buf = [], b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            ev = json.loads(line)
            seen.append(ev)
            if until(ev):
                return seen
    return seen


def test_reader_opening_late_appears_to_scard_watch(rig):
    """scardd serves once its readers are open or after 5 s; a reader whose
    driver is still opening then appears later: SCardListReaders shows it,
    and `scard watch` (through our library, which follows the daemon's
    reader-events counter) reports it added."""
    if not SCARD_TOOL.exists():
        pytest.skip("not-built: scard")
    quick = rig.reader("Quick", cards=[0])
    late = rig.reader("Late", cards=[0])
    # A driver is not known to be thread-safe before it has opened, so calls
    # into one library wait for each other until then: give Late its own copy.
    late.lib = late.dir / "libifd_fault_copy.so"
    shutil.copy(DRIVER, late.lib)
    late.hang_open()
    d = rig.daemon([quick, late], wait=[quick.reader()])  # serves after its 5 s wait
    assert late.reader() not in d.wait_readers([quick.reader()])

    env = dict(os.environ, PCSCLITE_CSOCK_NAME=d.socket)
    watch = subprocess.Popen([str(SCARD_TOOL), "--json", "watch"], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        first = read_json_lines(watch, lambda ev: True, 20)
        assert first and first[0]["reader"] == quick.reader(), first
        late.hang_open(on=False)
        d.wait_readers([quick.reader(), late.reader()])
        seen = read_json_lines(watch, lambda ev: ev["event"] == "reader added", 20)
        assert any(e["event"] == "reader added" and e["reader"] == late.reader()
                   for e in seen), seen
    finally:
        watch.terminate()
        try:
            watch.wait(5)
        except subprocess.TimeoutExpired:
            watch.kill()
            watch.wait()


# --- the sanitizer run's leak reports inside drivers ----------------------------

@pytest.mark.skipif(not os.environ.get("SCARDD_SANITIZED"),
                    reason="sanitized-only: LeakSanitizer runs in the --sanitize run")
@pytest.mark.parametrize("suppressed", [False, True], ids=["reported", "suppressed"])
def test_leak_inside_a_driver_is_named(rig, suppressed):
    """A driver's leak is reported with the driver's frames (scardd keeps it
    mapped until the check at exit), so tests/sanitizer/lsan.supp can list
    other projects' leaks by library without hiding scardd's own."""
    r = rig.reader("Leaky", cards=[0])
    r.leak_on_close()
    env = {}
    if suppressed:
        supp = Path(rig.root) / "lsan.supp"
        supp.write_text("leak:%s\n" % DRIVER.name)
        env["LSAN_OPTIONS"] = "suppressions=%s:print_suppressions=1" % supp
    d = rig.daemon([r], wait=[r.reader()], env=env)
    rc = d.stop(timeout=30)
    d.expected_rc = rc  # judged here, not by the rig's cleanup
    log = d.log_path.read_text(errors="replace")
    if suppressed:
        assert rc == 0, "scardd exit status %s with the driver's leak suppressed:\n%s" % (rc, log)
        assert "LeakSanitizer: detected" not in log, log
        # the leak happened, and this entry is what silenced it
        assert re.search(r"Suppressions used:.*?\b1 +1000 +%s" % re.escape(DRIVER.name), log,
                         re.S), log
        return
    assert rc != 0, "scardd exited 0 although its driver leaked:\n" + log
    report = log[log.find("LeakSanitizer"):]
    assert "1000 byte(s)" in report, log
    assert "fault_leak" in report or DRIVER.name in report, \
        "the leak report does not name the driver:\n" + report
    assert "<unknown module>" not in report, report
