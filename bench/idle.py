"""Idle clients: raw 4:4 connections, each blocked as pcsc-lite's
SCardGetStatusChange blocks (CMD_VERSION, SCARD_ESTABLISH_CONTEXT, then
CMD_WAIT_READER_STATE_CHANGE, whose snapshot is read; the event never
comes). What the daemon spends on them is read from /proc."""
import resource
import socket
import time

import pcsc_raw

# pcscd caps its client threads (200 by default) and closes the connections
# beyond: after this many refusals in a row, no further client is tried.
REFUSALS_TO_STOP = 20
SETTLE_S = 1.0


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < n + 64:
        raise SystemExit("RLIMIT_NOFILE hard limit %d is too low for %d idle clients; "
                         "raise it (ulimit -Hn) or pass a smaller --idle" % (hard, n))


def one_client(path):
    c = pcsc_raw.RawClient(path, timeout=10.0)
    try:
        _, _, rv = c.version()
        if rv != 0:
            raise pcsc_raw.Closed("CMD_VERSION 4:4 answered 0x%08X" % rv)
        rv, _ = c.establish()
        if rv != 0:
            raise pcsc_raw.Closed("SCARD_ESTABLISH_CONTEXT answered 0x%08X" % rv)
        c.wait_reader_state_change()
        return c
    except BaseException:
        c.close()
        raise


def still_waiting(c):
    """True if nothing (no byte, no EOF) has arrived on the connection."""
    c.sock.setblocking(False)
    try:
        c.sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def measure(daemon, n):
    """{"served", "rss0_kb", "rss_kb", "threads0", "threads", "per_client_kb"}
    with up to n clients blocked at once."""
    raise_fd_limit(n)
    time.sleep(SETTLE_S)
    rss0, threads0 = daemon.rss_kb(), daemon.threads()
    clients, refusals = [], 0
    try:
        while len(clients) < n and refusals < REFUSALS_TO_STOP:
            try:
                clients.append(one_client(daemon.socket))
                refusals = 0
            except (pcsc_raw.Closed, ConnectionError, TimeoutError):
                refusals += 1
        time.sleep(SETTLE_S)
        # Every client must still be connected and blocked: none has data or EOF.
        alive = [c for c in clients if still_waiting(c)]
        rss, threads = daemon.rss_kb(), daemon.threads()
    finally:
        for c in clients:
            c.close()
    served = len(alive)
    return {"served": served, "rss0_kb": rss0, "rss_kb": rss, "threads0": threads0,
            "threads": threads,
            "per_client_kb": (rss - rss0) / served if served else float("nan")}
