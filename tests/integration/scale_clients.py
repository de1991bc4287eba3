#!/usr/bin/python3
"""N PC/SC clients in one process, each a thread with its own context (one
socket each, through Debian's libpcsclite), each blocked in
SCardGetStatusChange on one reader.

Usage: scale_clients.py N READER WAIT_MS
Prints "READY <n_ok> <n_failed> <n_waiting> <setup errors>" once every client
that started is seen blocked in its wait (n_waiting of them: fewer only if
some never got there within a minute), then, after the waits return, one
JSON line:
{"woken": n, "present": n, "counter_up": n, "errors": {hr: count}}
"""
import collections
import json
import resource
import sys
import threading
import time

from smartcard import scard as s

from thread_state import in_event_wait


def main():
    n, reader, wait_ms = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, n * 2 + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    threading.stack_size(256 * 1024)

    lock = threading.Lock()
    started = threading.Barrier(n + 1)
    results = []
    setup_errors = collections.Counter()
    waiters = []  # native thread ids of the clients that go on to wait

    def client():
        hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        cur = None
        if hr == 0:
            hr, st = s.SCardGetStatusChange(ctx, 0, [(reader, s.SCARD_STATE_UNAWARE)])
            if hr == 0:
                cur = st[0][1] & ~s.SCARD_STATE_CHANGED
        if cur is None:
            with lock:
                setup_errors[hex(hr & 0xFFFFFFFF)] += 1
            started.wait()
            return
        with lock:
            waiters.append(threading.get_native_id())
        started.wait()
        hr, st = s.SCardGetStatusChange(ctx, wait_ms, [(reader, cur)])
        with lock:
            results.append((hr, st[0][1] if hr == 0 else 0, cur))
        s.SCardReleaseContext(ctx)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    started.wait()
    ok = n - sum(setup_errors.values())
    deadline = time.monotonic() + 60
    pending = list(waiters)
    while pending and time.monotonic() < deadline:
        pending = [t for t in pending if not in_event_wait(t)]
        if pending:
            time.sleep(0.05)
    print("READY %d %d %d %s" % (ok, n - ok, len(waiters) - len(pending), json.dumps(dict(setup_errors))),
          flush=True)
    for t in threads:
        t.join(wait_ms / 1000 + 60)
    errors = collections.Counter()
    woken = present = counter_up = 0
    for hr, ev, cur in results:
        if hr != 0:
            errors[hex(hr & 0xFFFFFFFF)] += 1
            continue
        woken += 1
        if ev & s.SCARD_STATE_PRESENT and ev & s.SCARD_STATE_CHANGED:
            present += 1
        if (ev >> 16) == ((cur >> 16) + 1) & 0xFFFF:
            counter_up += 1
    print(json.dumps({"woken": woken, "present": present, "counter_up": counter_up,
                      "errors": dict(errors), "setup_errors": dict(setup_errors)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
