#!/usr/bin/python3
"""fork() with live contexts (driven by test_client_library.py).

The parent has a context, a DIRECT card handle, and a second thread blocked in
SCardGetStatusChange (so that context's lock is held at fork time). The child
must not deadlock on that lock, must not use the parent's socket, and must
see the parent's card handle as invalid. The parent's context keeps working
after the child is gone. Prints {"child": {...}, "parent": {...}}.
"""
import json
import os
import sys
import threading

from smartcard import scard as s

from thread_state import wait_in_event_wait

READER = sys.argv[1]


def h(hr):
    return "0x%08X" % (hr & 0xFFFFFFFF)


def main():
    hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    assert hr == 0
    hr, card, _ = s.SCardConnect(ctx, READER, s.SCARD_SHARE_DIRECT, 0)
    assert hr == 0, h(hr)
    hr, wctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    hr, st = s.SCardGetStatusChange(wctx, 0, [(READER, s.SCARD_STATE_UNAWARE)])
    res = {}

    def waiter():
        res["hr"], _ = s.SCardGetStatusChange(wctx, s.INFINITE, [(READER, st[0][1] & ~2)])
    t = threading.Thread(target=waiter)
    t.start()
    # fork while the waiter is inside its wait, holding its context's lock
    assert wait_in_event_wait(t.native_id), "the waiter never started waiting"

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        child = {"valid": h(s.SCardIsValidContext(ctx)),
                 "list": h(s.SCardListReaders(wctx, [])[0]),  # its lock was held in the parent
                 "card": h(s.SCardStatus(card)[0])}
        child["release"] = h(s.SCardReleaseContext(ctx))
        with open("/proc/self/maps") as f:
            child["lib"] = sorted({ln.split()[-1] for ln in f if "libpcsclite" in ln})
        os.write(wfd, json.dumps(child).encode())
        os._exit(0)
    os.close(wfd)
    data = b""
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        data += chunk
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    parent = {"list": h(s.SCardListReaders(ctx, [])[0]), "status": h(s.SCardStatus(card)[0])}
    s.SCardCancel(wctx)
    t.join(10)
    parent["waiter"] = h(res.get("hr", 0))
    s.SCardDisconnect(card, 0)
    s.SCardReleaseContext(ctx)
    s.SCardReleaseContext(wctx)
    print(json.dumps({"child": json.loads(data), "parent": parent}))


if __name__ == "__main__":
    main()
