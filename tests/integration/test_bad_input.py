"""Hostile and broken clients over a raw socket, while a well-behaved
libpcsclite client keeps working on the same daemon.

Each bad request has one right outcome: the daemon closes that client's
connection (wire-protocol.md: wrong sizes, unknown commands, lengths over
their bounds), or answers one error code. A card handle the connection does
not own is where scardd differs on purpose (README): SCARD_E_INVALID_HANDLE
at once, where pcscd sleeps 2 s and closes. Nothing else may be affected,
and afterwards the daemon holds no more descriptors than before and not
much more memory (the `wb` fixture).
"""
import socket
import struct
import threading
import time

import pcsc_raw as raw
import pytest
from smartcard import scard as s

from conftest import DAEMON_KIND, IS_PCSCD, READER0, READER1, rss_grew_within
from scard_util import SCARD_W_RESET_CARD, echo_apdu

CLOSE_WAIT = 10.0  # pcsc-lite sleeps 2 s before closing on a foreign hCard
# Memory a hostile test may leave behind in the daemon: one-time allocations
# of paths seen for the first time (buffers, a pcscd thread's first stack
# pages) measured at most 84 kB per test with scardd and pcscd 1.9.9; a
# buffer sized by a hostile length (16 MB, 4 GB) and touched, or kept per
# bad request, goes far beyond 2 MB.
HOSTILE_RSS_KB = 2048


class WellBehaved(threading.Thread):
    """A pyscard client on READER1 doing echo APDUs in a loop."""

    def __init__(self):
        super().__init__(daemon=True)
        self.count = 0
        self.errors = []
        self.stop_flag = False
        self.ready = threading.Event()
        self.start()

    def run(self):
        hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        if hr:
            self.errors.append("establish %x" % hr)
            self.ready.set()
            return
        hr, h, p = s.SCardConnect(ctx, READER1, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_T1)
        if hr:
            self.errors.append("connect %x" % hr)
            self.ready.set()
            return
        self.ready.set()
        i = 0
        while not self.stop_flag:
            data = bytes([i & 0xFF]) * (i % 40)
            hr, resp = s.SCardTransmit(h, p, list(echo_apdu(data)))
            if hr != 0 or bytes(resp) != data + b"\x90\x00":
                self.errors.append("transmit #%d: hr=%x resp=%s" % (i, hr, bytes(resp[:8]).hex() if hr == 0 else ""))
                if len(self.errors) > 20:
                    break
            else:
                self.count += 1
            i += 1
            time.sleep(0.01)
        s.SCardDisconnect(h, s.SCARD_LEAVE_CARD)
        s.SCardReleaseContext(ctx)

    def progressed(self, timeout=20.0):
        """True once at least 5 more APDUs went through."""
        start = self.count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count >= start + 5:
                return True
            if self.errors:
                return False
            time.sleep(0.05)
        return False

    def finish(self):
        self.stop_flag = True
        self.join(10)


@pytest.fixture
def wb(daemon):
    """The well-behaved client; afterwards, the daemon holds the descriptors
    it held before the test (every hostile connection closed) and its RSS
    grew by less than HOSTILE_RSS_KB."""
    daemon.card(1).insert()
    w = WellBehaved()
    assert w.ready.wait(30) and not w.errors, w.errors
    assert w.progressed()
    fds, rss = daemon.open_fds(), daemon.rss_kb()
    yield w
    try:
        daemon.wait_fds(fds, what="the hostile clients left")
        grew = daemon.rss_kb() - rss
        assert rss_grew_within(grew, HOSTILE_RSS_KB), \
            "%s RSS grew by %d kB during the test" % (daemon.kind, grew)
    finally:
        w.finish()
    assert not w.errors, "the well-behaved client was disturbed: %s" % w.errors[:5]


def still_serving(daemon, wb):
    assert wb.progressed(), "well-behaved client stalled or failed: %s" % wb.errors[:5]
    with daemon.raw() as c:
        c.hello()
        assert {rs.name for rs in c.readers_state()} == {READER0, READER1}


def outcome(c, cmd):
    """After a bad request: "closed" if the daemon dropped us without a
    byte, else the rv of the `cmd` struct it answered. Fails if it did
    neither within CLOSE_WAIT."""
    c.sock.settimeout(CLOSE_WAIT)
    buf = b""
    try:
        while len(buf) < raw.SIZE[cmd]:
            chunk = c.sock.recv(raw.SIZE[cmd] - len(buf))
            if not chunk:
                break
            buf += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        pytest.fail("daemon neither answered nor closed within %.0fs (got %d bytes)" % (CLOSE_WAIT, len(buf)))
    if not buf:
        return "closed"
    assert len(buf) == raw.SIZE[cmd], "the daemon closed after %d bytes of an answer" % len(buf)
    return struct.unpack(raw.FMT[cmd], buf)[-1]


def expect_closed(c, cmd, what):
    got = outcome(c, cmd)
    assert got == "closed", "%s: answered rv 0x%08X instead of closing" % (what, got)


def expect_not_owned(c, cmd):
    """A card handle this connection does not own: scardd answers
    SCARD_E_INVALID_HANDLE, pcscd (after 2 s) closes."""
    got = outcome(c, cmd)
    want = "closed" if IS_PCSCD else raw.SCARD_E_INVALID_HANDLE
    assert got == want, "%s answered %r, expected %r" % (DAEMON_KIND, got, want)


def send_or_closed(c, data):
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


# --- framing -----------------------------------------------------------------------
def test_truncated_header_then_close(daemon, wb):
    for n in (1, 4, 7):
        with daemon.raw() as c:
            c.send(b"\x0c\x00\x00\x00\x11\x00\x00\x00"[:n])
    still_serving(daemon, wb)


def test_truncated_header_then_stall(daemon, wb):
    stalled = []
    for n in (3, 7):
        c = daemon.raw()
        c.send(struct.pack("<II", 12, raw.CMD_VERSION)[:n])
        stalled.append(c)
    still_serving(daemon, wb)
    time.sleep(1)
    still_serving(daemon, wb)
    for c in stalled:
        c.close()
    still_serving(daemon, wb)


def test_wrong_size_for_command(daemon, wb):
    cases = [
        (raw.SCARD_ESTABLISH_CONTEXT, 13),
        (raw.SCARD_ESTABLISH_CONTEXT, 4),
        (raw.SCARD_CONNECT, 124),          # the pre-1.8.4 struct
        (raw.SCARD_TRANSMIT, 0),
        (raw.SCARD_GET_ATTRIB, 1000),
        (raw.CMD_VERSION, 8),
    ]
    for cmd, size in cases:
        with daemon.raw() as c:
            if cmd != raw.CMD_VERSION:
                c.hello()
            send_or_closed(c, raw.header(cmd, size) + bytes(min(size, 300)))
            expect_closed(c, cmd, "command 0x%02X with size %d" % (cmd, size))
    still_serving(daemon, wb)


@pytest.mark.parametrize("code", [0x00, raw.SCARD_LIST_READERS, raw.SCARD_GET_STATUS_CHANGE,
                                  raw.SCARD_CANCEL_TRANSACTION, 0x99, 0x7FFFFFFF, 0xFFFFFFFF])
def test_unknown_command(daemon, wb, code):
    with daemon.raw() as c:
        c.hello()
        send_or_closed(c, raw.header(code, 8) + bytes(8))
        # there is no reply struct for a command nobody knows: close, no byte
        assert c.wait_closed(CLOSE_WAIT), "unknown command 0x%X: the connection stayed open" % code
    still_serving(daemon, wb)


def test_garbage_instead_of_version(daemon, wb):
    blobs = {
        "unknown command 0xFFFFFFFF": b"\xff" * 8,
        "HTTP (command '/ HT')": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "CMD_VERSION with a wrong size": struct.pack("<II", 0xFFFFFFF0, raw.CMD_VERSION),
        "noise (command 0x07060504)": bytes(range(64)),
    }
    for what, blob in blobs.items():
        with daemon.raw() as c:
            send_or_closed(c, blob)
            assert c.wait_closed(CLOSE_WAIT), "%s: the connection stayed open" % what
    # versions the daemon does not speak: an error code, never success, and
    # the connection stays in step (a daemon never closes for a version
    # mismatch, wire-protocol.md section 5): the next request is answered
    for major, minor in ((3, 1), (-1, 0x7FFFFFFF)):
        with daemon.raw() as c:
            c.send(struct.pack("<II", 12, raw.CMD_VERSION) + struct.pack("<iiI", major, minor, 0))
            _, _, rv = struct.unpack("<iiI", c.recv_exact(12, timeout=CLOSE_WAIT))
            assert rv != 0, "version %d:%d accepted" % (major, minor)
            rv, ctx = c.establish()
            assert rv == 0, "SCardEstablishContext after a refused version: 0x%08X" % rv
            assert c.release(ctx) == 0
    still_serving(daemon, wb)


# --- lengths -----------------------------------------------------------------------
@pytest.mark.parametrize("length", [raw.MAX_BUFFER_SIZE_EXTENDED + 1, 1 << 24, 0xFFFFFFFF])
def test_huge_transmit_length(daemon, card, wb, length):
    with daemon.raw() as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        assert rv == 0
        send_or_closed(c, raw.message(raw.SCARD_TRANSMIT, h, p, 16, length, 0, 16, raw.MAX_BUFFER_SIZE_EXTENDED, 0)
                       + bytes(1024))
        expect_closed(c, raw.SCARD_TRANSMIT, "transmit length %d" % length)
    still_serving(daemon, wb)


def test_huge_receive_length_is_harmless(daemon, card, wb):
    with daemon.raw() as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        rv, data = c.transmit(h, echo_apdu(b"abc"), protocol=p, recv_len=0xFFFFFFFF)
        assert rv == 0 and data == b"abc\x90\x00"
    still_serving(daemon, wb)


def test_huge_control_length(daemon, card, wb):
    with daemon.raw() as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        send_or_closed(c, raw.message(raw.SCARD_CONTROL, h, 0x42000D48, 0x7FFFFFFF, 264, 0, 0) + bytes(512))
        expect_closed(c, raw.SCARD_CONTROL, "control length 0x7FFFFFFF")
    still_serving(daemon, wb)


@pytest.mark.parametrize("cmd", [raw.SCARD_GET_ATTRIB, raw.SCARD_SET_ATTRIB])
@pytest.mark.parametrize("length", [raw.MAX_BUFFER_SIZE + 1, 0xFFFFFFFF])
def test_huge_attrib_length(daemon, card, wb, cmd, length):
    with daemon.raw() as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        send_or_closed(c, raw.message(cmd, h, 0x10100, b"A" * 264, length, 0))
        expect_closed(c, cmd, "attribute length %d" % length)
    still_serving(daemon, wb)


def test_reader_name_without_nul(daemon, card, wb):
    with daemon.raw() as c:
        ctx = c.hello()
        send_or_closed(c, raw.message(raw.SCARD_CONNECT, ctx, b"V" * 128, 2, 3, 0, 0, 0))
        # the name is cut at its last byte: 127 V's, a reader nobody has
        got = outcome(c, raw.SCARD_CONNECT)
        assert got == raw.SCARD_E_UNKNOWN_READER, got
    still_serving(daemon, wb)


# --- handles -------------------------------------------------------------------------
def test_foreign_card_handle(daemon, card, wb):
    with daemon.raw() as a, daemon.raw() as b:
        ca, cb = a.hello(), b.hello()
        rv, ha, pa = a.connect(ca, READER0)
        assert rv == 0
        send_or_closed(b, raw.message(raw.SCARD_TRANSMIT, ha, pa, 16, 6, 0, 16, 264, 0) + echo_apdu(b"x"))
        expect_not_owned(b, raw.SCARD_TRANSMIT)
        # the rightful owner is unaffected
        assert a.transmit(ha, echo_apdu(b"mine"), protocol=pa) == (0, b"mine\x90\x00")
    still_serving(daemon, wb)


def test_random_card_handle(daemon, card, wb):
    with daemon.raw() as c:
        c.hello()
        send_or_closed(c, raw.message(raw.SCARD_DISCONNECT, 0x1234567, 0, 0))
        expect_not_owned(c, raw.SCARD_DISCONNECT)
    still_serving(daemon, wb)


def test_commands_after_release(daemon, card, wb):
    with daemon.raw() as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        assert c.release(ctx) == 0
        send_or_closed(c, raw.message(raw.SCARD_STATUS, h, 0))
        expect_not_owned(c, raw.SCARD_STATUS)
    still_serving(daemon, wb)


def test_release_wrong_context(daemon, wb):
    with daemon.raw() as c:
        ctx = c.hello()
        assert c.release(ctx ^ 0x5A5A) != 0
        assert c.release(ctx) == 0
    still_serving(daemon, wb)


# --- stalls and deaths -------------------------------------------------------------------
def test_half_message_then_stall(daemon, card, wb):
    c = daemon.raw()
    ctx = c.hello()
    msg = raw.message(raw.SCARD_CONNECT, ctx, READER0.encode(), 2, 3, 0, 0, 0)
    c.send(msg[:40])
    still_serving(daemon, wb)
    # other clients can use the reader the stalled one was about to connect to
    with daemon.raw() as o:
        octx = o.hello()
        rv, h, p = o.connect(octx, READER0)
        assert rv == 0
        assert o.transmit(h, echo_apdu(b"o"), protocol=p) == (0, b"o\x90\x00")
    time.sleep(1)
    still_serving(daemon, wb)
    c.close()
    still_serving(daemon, wb)


def test_half_transmit_payload_then_stall(daemon, card, wb):
    c = daemon.raw()
    ctx = c.hello()
    rv, h, p = c.connect(ctx, READER0)
    apdu = echo_apdu(bytes(3000))
    c.send(raw.message(raw.SCARD_TRANSMIT, h, p, 16, len(apdu), 0, 16, 65548, 0) + apdu[:1000])
    still_serving(daemon, wb)
    with daemon.raw() as o:
        octx = o.hello()
        rv, h2, p2 = o.connect(octx, READER0)
        assert rv == 0
        assert o.transmit(h2, echo_apdu(b"o"), protocol=p2) == (0, b"o\x90\x00")
    c.close()
    still_serving(daemon, wb)


def send_contended_begin(client, card):
    """BEGIN while another handle holds the transaction. pcscd answers
    SHARING_VIOLATION at once (its client library retries); scardd keeps the
    request until the holder's transaction ends. Returns the answer if one
    came within half a second, else None: the answer comes later."""
    client.send(raw.message(raw.SCARD_BEGIN_TRANSACTION, card, 0))
    if client.nothing_received(0.5):
        return None
    return recv_begin_answer(client, timeout=5)


def recv_begin_answer(client, timeout):
    fmt = raw.FMT[raw.SCARD_BEGIN_TRANSACTION]
    return struct.unpack(fmt, client.recv_exact(raw.SIZE[raw.SCARD_BEGIN_TRANSACTION],
                                                timeout=timeout))[1]


def test_client_dies_mid_transaction(daemon, card, wb):
    with daemon.raw() as other:
        octx = other.hello()
        rv, oh, op = other.connect(octx, READER0)
        assert rv == 0
        c = daemon.raw()
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        assert c.begin(h) == 0
        first = send_contended_begin(other, oh)
        assert first in (None, raw.SCARD_E_SHARING_VIOLATION), hex(first)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        # the lock is released; the card was reset, so the survivor is told first
        if first is None:
            rv = recv_begin_answer(other, timeout=20)  # the waiting BEGIN is answered now
        else:
            deadline = time.monotonic() + 20
            while True:
                rv = other.begin(oh)
                if rv != raw.SCARD_E_SHARING_VIOLATION or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert rv in (0, SCARD_W_RESET_CARD), hex(rv)
        if rv == SCARD_W_RESET_CARD:
            rv, _ = other.reconnect(oh, raw.SCARD_SHARE_SHARED, raw.SCARD_PROTOCOL_T1, raw.SCARD_LEAVE_CARD)
            assert rv == 0
            assert other.begin(oh) == 0
        answer = other.transmit(oh, echo_apdu(b"t"), protocol=op)
        if DAEMON_KIND == "pcscd" and answer[0] in (SCARD_W_RESET_CARD, raw.SCARD_E_PROTO_MISMATCH):
            # pcscd frees the dead client's lock before it resets the card:
            # a BEGIN retried in between succeeds, and the reset shows at the
            # next call. Or pcscd flags the reset before doing it: the
            # survivor sees W_RESET_CARD and reconnects, then the reset lands
            # and leaves the card's protocol undefined with no new event, so
            # the transmit gets PROTO_MISMATCH (pcscd's log: "RECONNECT ...
            # SCARD_S_SUCCESS", then "Reset complete."). Either way the holder
            # reconnects (which keeps the lock).
            rv, _ = other.reconnect(oh, raw.SCARD_SHARE_SHARED, raw.SCARD_PROTOCOL_T1, raw.SCARD_LEAVE_CARD)
            assert rv == 0
            answer = other.transmit(oh, echo_apdu(b"t"), protocol=op)
        assert answer == (0, b"t\x90\x00")
        assert other.end(oh) == 0
    still_serving(daemon, wb)


def test_client_dies_while_waiting_for_events(daemon, wb):
    for _ in range(20):
        c = daemon.raw()
        c.hello()
        c.wait_reader_state_change()
        c.close()
    # the dead waiters must not break the next event delivery
    with daemon.raw() as w:
        w.hello()
        w.wait_reader_state_change()
        daemon.card(0).insert(wait=False)
        assert w.recv_event(timeout=20) == 0
    still_serving(daemon, wb)
    daemon.card(0).remove()  # its vpcd connection is not one the wb fixture counts


def test_cancel_as_first_message(daemon, wb):
    with daemon.raw() as waiter:
        ctx = waiter.hello()
        waiter.wait_reader_state_change()
        with daemon.raw() as c:
            assert c.cancel(ctx) == 0  # no CMD_VERSION on this connection
        assert waiter.recv_event(timeout=20) == raw.SCARD_E_CANCELLED
    still_serving(daemon, wb)


# Leak checks over rounds: the first round takes the daemon's allocator to
# its working size, the next LEAK_ROUNDS must leave RSS where that one left
# it. Measured (scardd and pcscd 1.9.9): 0-4 kB from the first round to the
# last. LEAK_RSS_KB = 512 kB over 2 rounds of FLOOD + IDLE = 2100
# connections fails a leak of 250 bytes per connection or more; a leak of a
# few kB per connection exceeds it many times over.
LEAK_ROUNDS = 2
LEAK_RSS_KB = 512
FLOOD, IDLE = 1000, 50


def check_no_leak(daemon, wb, one_round, what):
    """Runs one_round() 1 + LEAK_ROUNDS times; after each the daemon must
    hold its descriptors of before, and after the last its RSS must be within
    LEAK_RSS_KB of the first round's."""
    fds = daemon.open_fds()
    rss = []
    for i in range(1 + LEAK_ROUNDS):
        one_round()
        still_serving(daemon, wb)
        daemon.wait_fds(fds, what="%s (round %d)" % (what, i + 1))
        rss.append(daemon.rss_kb())
    grew = rss[-1] - rss[0]
    assert rss_grew_within(grew, LEAK_RSS_KB), "%s RSS after each round of %s: %s kB (grew %d kB)" % (
        daemon.kind, what, rss, grew)


def test_connection_flood(daemon, wb):
    def flood():
        for _ in range(FLOOD):
            sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sk.connect(daemon.socket)
            sk.close()
        idle = []
        for _ in range(IDLE):
            c = daemon.raw()
            c.version()
            idle.append(c)
        still_serving(daemon, wb)
        for c in idle:
            c.close()
    check_no_leak(daemon, wb, flood, "%d connections opened and closed, %d idle" % (FLOOD, IDLE))


def test_client_never_reads_its_answers(daemon, card, wb):
    # a client that pipelines requests and never reads: the daemon may block
    # on that client only, and forgets it (and what it had queued) when it goes
    def pipeline():
        c = daemon.raw()
        c.hello()
        c.sock.setblocking(False)
        msg = raw.header(raw.CMD_GET_READERS_STATE, 0)
        sent = 0
        deadline = time.monotonic() + 5
        try:
            while sent < 2000 and time.monotonic() < deadline:
                c.sock.send(msg)
                sent += 1
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass
        assert sent > 0
        still_serving(daemon, wb)
        c.close()
    check_no_leak(daemon, wb, pipeline, "a client that never reads")
