#!/usr/bin/python3
"""pyscard scenario for test_client_library.py, run in a subprocess whose
environment picks the libpcsclite.so.1 (LD_LIBRARY_PATH) and the daemon
(PCSCLITE_CSOCK_NAME). A vicc iso7816 card is in READER0, READER1 is empty.

Each step asserts; on success the script prints one JSON line with what it
saw, including the libpcsclite file the process really mapped.
"""
import json
import sys
import threading
import time

from smartcard import scard as s

from thread_state import wait_in_event_wait

READER0, READER1 = sys.argv[1], sys.argv[2]
SELECT_MF = [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]  # P2=0x0C: no FCI
GET_CHALLENGE = [0x00, 0x84, 0x00, 0x00, 0x08]
out = {}


def ok(hr, what):
    assert hr == s.SCARD_S_SUCCESS, "%s: 0x%08X %s" % (what, hr & 0xFFFFFFFF, s.SCardGetErrorMessage(hr))


def mapped_libpcsclite():
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if "libpcsclite" in line})


def main():
    hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    ok(hr, "establish")
    ok(s.SCardIsValidContext(ctx), "is valid")
    out["lib"] = mapped_libpcsclite()

    hr, readers = s.SCardListReaders(ctx, [])
    ok(hr, "list readers")
    assert READER0 in readers and READER1 in readers, readers
    out["readers"] = readers
    hr, groups = s.SCardListReaderGroups(ctx)
    ok(hr, "list groups")
    assert "SCard$DefaultReaders" in groups, groups

    # shared connect, transmit, status, attributes
    hr, card, proto = s.SCardConnect(ctx, READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_ANY)
    ok(hr, "connect shared")
    assert proto in (s.SCARD_PROTOCOL_T0, s.SCARD_PROTOCOL_T1), proto
    hr, resp = s.SCardTransmit(card, proto, SELECT_MF)
    ok(hr, "transmit select")
    assert resp[-2:] == [0x90, 0x00], resp
    hr, resp = s.SCardTransmit(card, proto, GET_CHALLENGE)
    ok(hr, "transmit get challenge")
    assert len(resp) == 10 and resp[-2:] == [0x90, 0x00], resp
    hr, name, state, sproto, atr = s.SCardStatus(card)
    ok(hr, "status")
    assert name == READER0 and sproto == proto and len(atr) > 0, (name, sproto, atr)
    assert state & 0xFFFF & 0x04, hex(state)  # SCARD_PRESENT
    out["atr"] = bytes(atr).hex()
    # attributes depend on the daemon and driver (pcscd + vpcd answer fewer):
    # recorded here, compared with Debian's library by the test
    out["attrib"] = {}
    for name, tag in (("atr", s.SCARD_ATTR_ATR_STRING),
                      ("friendly", s.SCARD_ATTR_DEVICE_FRIENDLY_NAME),
                      ("vendor", s.SCARD_ATTR_VENDOR_NAME)):
        hr, value = s.SCardGetAttrib(card, tag)
        out["attrib"][name] = ["0x%08X" % (hr & 0xFFFFFFFF), bytes(value).hex() if hr == 0 else None]

    # a second context cannot take the reader exclusively while we share it
    hr, ctx2 = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    ok(hr, "establish 2")
    hr, _, _ = s.SCardConnect(ctx2, READER0, s.SCARD_SHARE_EXCLUSIVE, s.SCARD_PROTOCOL_ANY)
    assert hr == s.SCARD_E_SHARING_VIOLATION, hex(hr)

    # transaction: another context's BEGIN waits until END
    hr, card2, _ = s.SCardConnect(ctx2, READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_ANY)
    ok(hr, "connect shared 2")
    ok(s.SCardBeginTransaction(card), "begin")
    done = {}

    def other():
        done["hr"] = s.SCardBeginTransaction(card2)
        done["t"] = time.monotonic()
    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.6)
    assert t.is_alive(), "second BEGIN did not wait for the transaction"
    t_end = time.monotonic()
    ok(s.SCardEndTransaction(card, s.SCARD_LEAVE_CARD), "end")
    t.join(10)
    ok(done.get("hr", -1), "second begin")
    assert done["t"] - t_end < 2.0
    ok(s.SCardEndTransaction(card2, s.SCARD_LEAVE_CARD), "end 2")
    ok(s.SCardDisconnect(card2, s.SCARD_LEAVE_CARD), "disconnect 2")

    # reconnect with reset: the other handles see the reset
    hr, card3, _ = s.SCardConnect(ctx2, READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_ANY)
    ok(hr, "connect shared 3")
    hr, proto = s.SCardReconnect(card, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_ANY, s.SCARD_RESET_CARD)
    ok(hr, "reconnect reset")
    hr, _ = s.SCardTransmit(card3, proto, SELECT_MF)
    assert hr == s.SCARD_W_RESET_CARD, hex(hr)
    hr, _ = s.SCardReconnect(card3, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_ANY, s.SCARD_LEAVE_CARD)
    ok(hr, "reconnect leave")
    ok(s.SCardDisconnect(card3, s.SCARD_LEAVE_CARD), "disconnect 3")
    ok(s.SCardDisconnect(card, s.SCARD_LEAVE_CARD), "disconnect")
    hr = s.SCardDisconnect(card, s.SCARD_LEAVE_CARD)
    assert hr == s.SCARD_E_INVALID_HANDLE, hex(hr)

    # exclusive: a shared connect from elsewhere is refused
    hr, card, proto = s.SCardConnect(ctx, READER0, s.SCARD_SHARE_EXCLUSIVE, s.SCARD_PROTOCOL_ANY)
    ok(hr, "connect exclusive")
    hr, _, _ = s.SCardConnect(ctx2, READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_ANY)
    assert hr == s.SCARD_E_SHARING_VIOLATION, hex(hr)
    hr, states = s.SCardGetStatusChange(ctx2, 0, [(READER0, s.SCARD_STATE_UNAWARE)])
    ok(hr, "status change exclusive")
    assert states[0][1] & s.SCARD_STATE_EXCLUSIVE, hex(states[0][1])
    ok(s.SCardDisconnect(card, s.SCARD_UNPOWER_CARD), "disconnect exclusive")

    # direct: no card needed
    hr, card, proto = s.SCardConnect(ctx, READER1, s.SCARD_SHARE_DIRECT, 0)
    ok(hr, "connect direct")
    hr, fname = s.SCardGetAttrib(card, s.SCARD_ATTR_DEVICE_FRIENDLY_NAME)
    out["attrib"]["direct_friendly"] = ["0x%08X" % (hr & 0xFFFFFFFF), bytes(fname).hex() if hr == 0 else None]
    ok(s.SCardDisconnect(card, s.SCARD_LEAVE_CARD), "disconnect direct")

    # status change: immediate answer, timeout, cancel from another thread
    hr, states = s.SCardGetStatusChange(ctx, 0, [(READER0, s.SCARD_STATE_UNAWARE),
                                                 (READER1, s.SCARD_STATE_UNAWARE)])
    ok(hr, "status change unaware")
    ev0, ev1 = states[0][1], states[1][1]
    assert ev0 & s.SCARD_STATE_PRESENT and ev0 & s.SCARD_STATE_CHANGED, hex(ev0)
    assert ev1 & s.SCARD_STATE_EMPTY, hex(ev1)
    assert (ev0 >> 16) >= 1, "event counter missing: %x" % ev0
    t0 = time.monotonic()
    hr, _ = s.SCardGetStatusChange(ctx, 400, [(READER1, ev1 & ~s.SCARD_STATE_CHANGED)])
    assert hr == s.SCARD_E_TIMEOUT, hex(hr)
    # at least the timeout it was given (a lower bound no load can break)
    assert time.monotonic() - t0 > 0.35, time.monotonic() - t0
    res = {}

    def waiter():
        res["hr"], _ = s.SCardGetStatusChange(ctx2, s.INFINITE, [(READER1, ev1 & ~s.SCARD_STATE_CHANGED)])
    t = threading.Thread(target=waiter)
    t.start()
    assert wait_in_event_wait(t.native_id), "the INFINITE wait never started waiting: %r" % res
    ok(s.SCardCancel(ctx2), "cancel")
    t.join(10)
    assert not t.is_alive() and res["hr"] == s.SCARD_E_CANCELLED, res
    hr, states = s.SCardGetStatusChange(ctx, 0, [("\\\\?PnP?\\Notification", 0)])
    assert hr == s.SCARD_E_TIMEOUT, hex(hr)

    ok(s.SCardReleaseContext(ctx2), "release 2")
    ok(s.SCardReleaseContext(ctx), "release")
    assert s.SCardIsValidContext(ctx) == s.SCARD_E_INVALID_HANDLE
    out["ok"] = True
    print(json.dumps(out))


if __name__ == "__main__":
    main()
