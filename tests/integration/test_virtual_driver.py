"""ifd-virtual in scardd and in Debian's pcscd: the same driver binary, the same
behaviour, observed with Debian's pyscard and pcsc_scan (the real pcsc-lite
client library), with cards moved by `scard virtual`."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from virtual_env import vd, fresh  # noqa: E402,F401 (fixtures)
from virtual_env import (BUILTIN_ATR, DAEMONS, DEMO_CARD, LineReader, VirtualDaemon,  # noqa: E402
                         WAIT_CHANGE, _die_with_parent, stop_pid)




def test_driver_loads_with_two_readers(fresh):
    out = fresh.py("""
        from smartcard.System import readers
        print("\\n".join(str(r) for r in readers()))
    """).stdout.split("\n")
    assert out[:2] == ["Virtual Reader 00 00", "Virtual Reader 00 01"]


def test_card_state_and_atr_through_pyscard(fresh):
    out = fresh.py("""
        from smartcard.scard import *
        hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
        hr, st = SCardGetStatusChange(ctx, 0, [("Virtual Reader 00 00", 0),
                                               ("Virtual Reader 00 01", 0)])
        assert hr == 0, hr
        for name, state, atr in st:
            print(name, bool(state & SCARD_STATE_PRESENT), bool(state & SCARD_STATE_EMPTY),
                  bytes(atr).hex().upper())
    """).stdout.strip().split("\n")
    assert out[0] == "Virtual Reader 00 00 True False " + BUILTIN_ATR.hex().upper()
    assert out[1].startswith("Virtual Reader 00 01 False True")


APDU_SCRIPT = """
from smartcard.scard import *
hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
hr, h, proto = SCardConnect(ctx, "Virtual Reader 00 00", SCARD_SHARE_SHARED, %s)
assert hr == 0, hex(hr)
def tx(hexs):
    hr, r = SCardTransmit(h, proto, list(bytes.fromhex(hexs)))
    assert hr == 0, hex(hr)
    print(bytes(r).hex().upper())
print("T1" if proto == SCARD_PROTOCOL_T1 else "T0")
for a in %r:
    tx(a)
"""


def test_apdus_over_t1(fresh):
    apdus = ["00A4040007F0736361726464" + "00",   # SELECT AID with FCI
             "00A4020C025001", "00B0000005",      # READ BINARY
             "002000810439393939",                # wrong PIN
             "00200081",                          # tries left
             "00A4020C029999",                    # not found
             "00AB000000"]                        # unknown INS
    out = fresh.py(APDU_SCRIPT % ("SCARD_PROTOCOL_T1", apdus)).stdout.split()
    assert out[0] == "T1"
    assert out[1] == "6F13820138830250008407F07363617264648A01059000"
    assert out[2] == "9000"
    assert out[3] == b"Hello".hex().upper() + "9000"
    assert out[4] == "63C2"
    assert out[5] == "63C2"
    assert out[6] == "6A82"
    assert out[7] == "6D00"


def test_apdus_over_t0_get_response(fresh):
    apdus = ["00A4040007F0736361726464",  # case 3 on T=0: 61 15
             "00C0000015",                # GET RESPONSE
             "00A4020C025001", "00B0000000"]  # P3 00 on a 22-byte file: 6C 16
    out = fresh.py(APDU_SCRIPT % ("SCARD_PROTOCOL_T0", apdus)).stdout.split()
    assert out[:2] == ["T0", "6115"]
    assert out[2] == "6F13820138830250008407F07363617264648A01059000"
    assert out[4] == "6C16"


@pytest.mark.parametrize("kind", DAEMONS)
def test_insert_remove_reach_a_waiting_client_by_event(kind):
    """A waiting SCardGetStatusChange wakes on `scard virtual`: the driver
    reports events through its polling function. scardd runs with a one-minute
    poll period, so only that event can wake the 15 s wait in time (pcscd's
    poll period is its own)."""
    d = VirtualDaemon(kind, readers=2, cards={0: "builtin"}, poll_ms=60000)
    try:
        d.start()
        for action, args, want in (("insert", [DEMO_CARD], "PRESENT"), ("remove", [], "EMPTY")):
            waiter = d.spawn_py(WAIT_CHANGE % d.reader(1))
            try:
                ready = waiter.stdout.readline()
                assert ready.startswith("READY"), (ready, waiter.stderr.read())
                r = d.scard("virtual", "--no-wait", action, d.reader(1), *args)
                assert r.returncode == 0, r.stderr
                line = waiter.stdout.readline().split()
            finally:
                stop_pid(waiter)
            assert line[0] == "CHANGED" and line[1] == "0", (action, line)
            state = int(line[2], 16)
            flag = {"PRESENT": 0x20, "EMPTY": 0x10}[want]
            assert state & flag, (action, hex(state))
            if want == "PRESENT":
                assert line[3] == BUILTIN_ATR.hex().upper()
    finally:
        d.cleanup()


def test_swap_is_seen_as_removal_and_insertion(fresh):
    before = fresh.scard_json("list")["readers"][0]["events"]
    t1 = fresh.dir / "t1.card"
    t1.write_text("atr T=1\nef 3F00/0001 data \"swapped\"\n")
    r = fresh.scard("virtual", "insert", fresh.reader(0), t1)
    assert r.returncode == 0, r.stderr
    assert "swapped card in reader 0" in r.stdout
    info = fresh.scard_json("list")["readers"][0]
    assert info["events"] - before == 2   # one removal, one insertion
    assert info["atr"].startswith("3B870176636172642D31")  # built-in T=1 ATR
    assert info["protocols"] == ["T=1"]
    out = fresh.py(APDU_SCRIPT % ("SCARD_PROTOCOL_T1", ["00A4000C020001", "00B0000000"]))
    assert out.stdout.split()[2] == b"swapped".hex().upper() + "9000"


def test_mute_reader(fresh):
    r = fresh.scard("virtual", "mute", fresh.reader(0))
    assert r.returncode == 0, r.stderr
    info = fresh.scard_json("list")["readers"][0]
    assert info["card"] == "mute" and "MUTE" in info["state"]
    r = fresh.py("""
        from smartcard.scard import *
        hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
        hr, h, proto = SCardConnect(ctx, "Virtual Reader 00 00", SCARD_SHARE_SHARED,
                                    SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
        print(hex(hr & 0xFFFFFFFF))
    """)
    # The card is present (SWALLOWED) and fails the power-up SCardConnect
    # tries: SCARD_W_UNPOWERED_CARD, as pcscd 1.9.9 answers.
    # (SCARD_W_UNRESPONSIVE_CARD is pcsc-lite's answer when a powered card
    # fails the protocol negotiation, which a re-seated mute card never gets to.)
    assert r.stdout.strip() == hex(0x80100067), "SCardConnect on a mute card: %s" % r.stdout
    r = fresh.scard("virtual", "unmute", fresh.reader(0))
    assert r.returncode == 0, r.stderr
    assert fresh.scard_json("list")["readers"][0]["card"] == "present"


def test_fast_mode(fresh):
    r = fresh.scard("virtual", "fast", fresh.reader(0), "on")
    assert r.returncode == 0, r.stderr
    out = fresh.py(APDU_SCRIPT % ("SCARD_PROTOCOL_T1", ["00AB000000", "80CA9F7F00"]))
    assert out.stdout.split()[1:] == ["9000", "9000"]
    fresh.scard("virtual", "fast", fresh.reader(0), "off")
    out = fresh.py(APDU_SCRIPT % ("SCARD_PROTOCOL_T1", ["00AB000000"]))
    assert out.stdout.split()[1:] == ["6D00"]


def test_pcsc_scan_sees_insert_and_removal(fresh):
    p = subprocess.Popen(["pcsc_scan", "-n"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=fresh.env(), preexec_fn=_die_with_parent)
    try:
        lines = LineReader(p)
        lines.wait_for(lambda l: "Virtual Reader 00 01" in l, timeout=15)
        lines.wait_for(lambda l: "Card removed" in l, timeout=15)   # reader 1 is empty
        r = fresh.scard("virtual", "insert", fresh.reader(1), "builtin")
        assert r.returncode == 0, r.stderr
        lines.wait_for(lambda l: "Card inserted" in l, timeout=10)
        lines.wait_for(lambda l: "3B 88 80 01 76 63 61 72 64 2D 30 31 47" in l, timeout=10)
        r = fresh.scard("virtual", "remove", fresh.reader(1))
        assert r.returncode == 0, r.stderr
        lines.wait_for(lambda l: "Card removed" in l, timeout=10)
    finally:
        stop_pid(p)


def test_control_channel_direct(fresh):
    """The control socket's own protocol, as documented in CARD-FORMAT.md."""
    out = fresh.control_cmd("status")
    assert out.splitlines()[-1] == "ok readers=2"
    assert "slot 0 card=present" in out and "slot 1 card=absent" in out
    assert fresh.control_cmd("insert 7").startswith("error no reader 7")
    assert fresh.control_cmd("dance").startswith("error unknown command")


def test_bad_card_file_keeps_slot(fresh):
    bad = fresh.dir / "bad.card"
    bad.write_text("atr T=1\nef 3F00/zz\n")
    r = fresh.scard("virtual", "insert", fresh.reader(1), bad)
    assert r.returncode == 2
    assert "line 2" in r.stderr and "bad.card" in r.stderr
    # the driver refuses it too, when asked directly
    assert "line 2" in fresh.control_cmd("insert 1 %s" % bad)
    assert fresh.scard_json("list")["readers"][1]["card"] == "absent"


def test_no_busy_wait_after_disconnect(fresh):
    """pcscd calls the driver's stop function after each disconnect to wake its
    polling thread, then waits again: the wait must block again (a sticky stop
    made pcscd spin at 100% CPU)."""
    r = fresh.scard("send", "0", "00A4000C023F00")
    assert r.returncode == 0, r.stderr
    time.sleep(0.2)
    c0 = fresh.cpu_seconds()
    time.sleep(2)
    used = fresh.cpu_seconds() - c0
    assert used < 0.5, "%s used %.2f s of CPU in 2 s while idle" % (fresh.kind, used)
