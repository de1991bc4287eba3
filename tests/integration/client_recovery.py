#!/usr/bin/python3
"""Daemon restart as an application sees it (driven by test_client_library.py).

Prints one JSON line per phase and waits for a line on stdin between them:
  1. up: a context with a card handle, a second context waiting in
     SCardGetStatusChange(INFINITE) in a thread;        -> stdin "killed"
  2. daemon dead: what the calls answer (never hang);     -> stdin "restarted"
  3. daemon back: the same contexts work again; the old card handle is stale.
"""
import json
import sys
import threading

from smartcard import scard as s

READER0, READER1 = sys.argv[1], sys.argv[2]
SELECT_MF = [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]


def h(hr):
    return "0x%08X" % (hr & 0xFFFFFFFF)


def emit(obj):
    print(json.dumps(obj), flush=True)


def maps():
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if "libpcsclite" in line})


def wait_in_thread(ctx, reader, state):
    res = {}

    def run():
        res["hr"], _ = s.SCardGetStatusChange(ctx, s.INFINITE, [(reader, state)])
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, res


def main():
    hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    assert hr == 0
    hr, ctx2 = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    assert hr == 0
    hr, card, proto = s.SCardConnect(ctx, READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_ANY)
    assert hr == 0, h(hr)
    hr, st = s.SCardGetStatusChange(ctx2, 0, [(READER1, s.SCARD_STATE_UNAWARE)])
    empty = st[0][1] & ~s.SCARD_STATE_CHANGED
    t, res = wait_in_thread(ctx2, READER1, empty)
    emit({"lib": maps()})

    sys.stdin.readline()  # daemon killed
    t.join(10)
    down = {"waiter": h(res["hr"]) if "hr" in res else "still waiting"}
    down["list"] = h(s.SCardListReaders(ctx, [])[0])
    down["transmit"] = h(s.SCardTransmit(card, proto, SELECT_MF)[0])
    down["establish"] = h(s.SCardEstablishContext(s.SCARD_SCOPE_USER)[0])
    down["valid"] = h(s.SCardIsValidContext(ctx))
    emit(down)

    sys.stdin.readline()  # daemon restarted, card back
    up = {}
    hr, readers = s.SCardListReaders(ctx, [])
    up["list"], up["readers"] = h(hr), readers
    up["status_stale"] = h(s.SCardStatus(card)[0])
    up["transmit_stale"] = h(s.SCardTransmit(card, proto, SELECT_MF)[0])
    up["disconnect_stale"] = h(s.SCardDisconnect(card, s.SCARD_LEAVE_CARD))
    up["disconnect_again"] = h(s.SCardDisconnect(card, s.SCARD_LEAVE_CARD))
    hr, card, proto = s.SCardConnect(ctx, READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_ANY)
    up["connect"] = h(hr)
    up["transmit"] = h(s.SCardTransmit(card, proto, SELECT_MF)[0])
    hr, st = s.SCardGetStatusChange(ctx2, 0, [(READER1, s.SCARD_STATE_UNAWARE)])
    up["gsc"] = h(hr)
    t, res = wait_in_thread(ctx2, READER1, st[0][1] & ~s.SCARD_STATE_CHANGED)
    t.join(0.5)
    s.SCardCancel(ctx2)
    t.join(10)
    up["cancel"] = h(res["hr"]) if "hr" in res else "still waiting"
    hr, ctx3 = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    up["establish"] = h(hr)
    s.SCardReleaseContext(ctx3)
    s.SCardDisconnect(card, s.SCARD_LEAVE_CARD)
    s.SCardReleaseContext(ctx2)
    up["release"] = h(s.SCardReleaseContext(ctx))
    emit(up)


if __name__ == "__main__":
    main()
