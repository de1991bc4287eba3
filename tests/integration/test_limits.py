"""Limits through real clients (pyscard over Debian's libpcsclite): card
handles per context (pcscd's -s), handles per reader (-r), client
connections (-t), contexts per process and per connection, the largest
APDUs, the longest reader name.

Runs against scardd and, with SCARDD_TEST_DAEMON=pcscd, Debian's pcscd
1.9.9 with the same fault-driver readers; the expected codes are pcscd's
unless the test says why scardd differs.
"""
import time

import pytest
from smartcard import scard as s

import pcsc_raw as raw
from conftest import SOCKET, xfail_pcscd
from fault_daemon import contexts, fault_daemon, fault_reader  # noqa: F401 (fixtures)
from scard_util import SCARD_ATTR_DEVICE_FRIENDLY_NAME, name

SHARED, DIRECT = s.SCARD_SHARE_SHARED, s.SCARD_SHARE_DIRECT
T0_T1 = s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1
DEFAULT_HANDLES = 200  # scardd's --max-card-handles and pcscd's -s default


def handle_limit_args(n):
    return ["-s", str(n)]  # pcscd's option, with pcscd's meaning in scardd too


def connect(ctx, reader, share=SHARED, protocols=T0_T1):
    hr, card, proto = s.SCardConnect(ctx, reader, share, protocols)
    return hr, card, proto


def expect(hr, want, what):
    assert hr == want, "%s: got %s, want %s" % (what, name(hr), name(want))


def fill(ctx, readers, n):
    """n shared handles on ctx, spread over readers; asserts each succeeds."""
    cards = []
    for i in range(n):
        hr, card, _ = connect(ctx, readers[i % len(readers)])
        expect(hr, 0, "SCardConnect #%d" % (i + 1))
        cards.append(card)
    return cards


@pytest.fixture
def two_readers(fault_daemon, fault_reader):
    """Start a daemon (extra args as given) over readers A and B with cards."""
    def start(extra_args=()):
        a = fault_reader("Limit A", cards=[0])
        b = fault_reader("Limit B", cards=[0])
        names = ["Limit A 00 00", "Limit B 01 00"]  # one driver: the index counts readers
        fault_daemon([a, b], extra_args=extra_args, names=names)
        return names
    return start


# --- card handles ---------------------------------------------------------------

def test_card_handles_per_context_default_limit(two_readers, contexts):
    readers = two_readers()
    ctx = contexts()
    cards = fill(ctx, readers, DEFAULT_HANDLES)  # 100 per reader: below pcscd's per-reader cap
    hr, _, _ = connect(ctx, readers[1])
    expect(hr, s.SCARD_E_NO_MEMORY, "SCardConnect #%d on one context" % (DEFAULT_HANDLES + 1))
    # the limit is the context's, not the daemon's
    hr, _, _ = connect(contexts(), readers[1])
    expect(hr, 0, "SCardConnect on another context")
    # and a handle given back makes room
    expect(s.SCardDisconnect(cards[0], s.SCARD_LEAVE_CARD), 0, "SCardDisconnect")
    hr, _, _ = connect(ctx, readers[0])
    expect(hr, 0, "SCardConnect after a disconnect")


def test_max_card_handles_option(two_readers, contexts):
    readers = two_readers(handle_limit_args(3))
    ctx = contexts()
    cards = fill(ctx, readers, 3)
    for share, protocols in ((SHARED, T0_T1), (DIRECT, 0)):
        hr, _, _ = connect(ctx, readers[0], share, protocols)
        expect(hr, s.SCARD_E_NO_MEMORY, "SCardConnect #4 (share %d)" % share)
    hr, _, _ = connect(ctx, "No Such Reader 00 00")
    expect(hr, s.SCARD_E_UNKNOWN_READER, "SCardConnect #4 to an unknown reader")
    fill(contexts(), readers, 3)
    expect(s.SCardDisconnect(cards[1], s.SCARD_LEAVE_CARD), 0, "SCardDisconnect")
    hr, card, proto = connect(ctx, readers[0])
    expect(hr, 0, "SCardConnect after a disconnect")
    hr, resp = s.SCardTransmit(card, proto, [0x00, 0xB0, 0x00, 0x00, 0x01])
    assert (hr, resp) == (0, [0x00, 0xB0, 0x00, 0x00, 0x01, 0x90, 0x00])


def test_handle_limit_counts_only_after_the_card(fault_daemon, fault_reader, contexts):
    full = fault_reader("Full", cards=[0])
    empty = fault_reader("Empty")
    fault_daemon([full, empty], extra_args=handle_limit_args(2), names=["Full 00 00", "Empty 01 00"])
    ctx = contexts()
    fill(ctx, ["Full 00 00"], 2)
    hr, _, _ = connect(ctx, "Empty 01 00")
    expect(hr, s.SCARD_E_NO_SMARTCARD, "SCardConnect to an empty reader at the handle limit")


@xfail_pcscd("pcscd caps the handles of one reader at 200 over all clients (-r) and answers "
             "the 201st SCARD_F_INTERNAL_ERROR; scardd limits handles per context only")
def test_no_limit_on_handles_per_reader(fault_daemon, fault_reader, contexts):
    r = fault_reader("Busy", cards=[0])
    fault_daemon([r])
    fill(contexts(), [r.reader()], 100)
    fill(contexts(), [r.reader()], 101)


def test_max_card_handles_per_reader_option(two_readers, contexts):
    """-r N: N handles on one reader, all contexts together; one more fails
    with SCARD_F_INTERNAL_ERROR (pcscd's answer), another reader still
    connects, and a disconnect makes room. Without -r scardd has no such cap
    (test_no_limit_on_handles_per_reader)."""
    readers = two_readers(["-r", "3"])
    cards = [connect(contexts(), readers[0])[1] for _ in range(2)]
    cards += fill(contexts(), readers[:1], 1)
    assert all(cards)
    hr, _, _ = connect(contexts(), readers[0])
    expect(hr, s.SCARD_F_INTERNAL_ERROR, "SCardConnect #4 on one reader")
    hr, _, _ = connect(contexts(), readers[0], DIRECT, 0)
    expect(hr, s.SCARD_F_INTERNAL_ERROR, "SCardConnect #4 (direct) on one reader")
    fill(contexts(), readers[1:], 3)
    expect(s.SCardDisconnect(cards[0], s.SCARD_LEAVE_CARD), 0, "SCardDisconnect")
    hr, _, _ = connect(contexts(), readers[0])
    expect(hr, 0, "SCardConnect after a disconnect")


# --- contexts ---------------------------------------------------------------------

def establish_soon(what):
    """A context, retried while the daemon may still count a connection that
    just closed (it notices the close a moment later: pcscd as scardd)."""
    deadline = time.monotonic() + 30
    while True:
        hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        if hr == 0 or time.monotonic() > deadline:
            expect(hr, 0, what)
            return ctx
        time.sleep(0.05)


# A connection the daemon closes at once: Debian's libpcsclite reports it as
# either, depending on when the close reaches it (both seen with pcscd).
REFUSED = (s.SCARD_W_SECURITY_VIOLATION, s.SCARD_E_NO_SERVICE)


def test_max_thread_option(two_readers):
    """-t N: N client connections (one per context); the next context is
    refused by closing its connection at once (pcscd as scardd); a released
    context makes room. Without -t scardd has no cap
    (test_contexts_beyond_two_hundred_in_one_process)."""
    readers = two_readers(["-t", "3"])
    made = [establish_soon("SCardEstablishContext #%d of 3" % (i + 1)) for i in range(3)]
    try:
        for _ in range(2):
            hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
            if hr == 0:
                made.append(ctx)
            assert hr in REFUSED, "SCardEstablishContext #4 with -t 3: got %s" % name(hr)
        hr, names = s.SCardListReaders(made[0], [])
        assert (hr, sorted(names)) == (0, sorted(readers))
        expect(s.SCardReleaseContext(made.pop()), 0, "SCardReleaseContext")
        made.append(establish_soon("SCardEstablishContext after a release"))
    finally:
        for ctx in made:
            s.SCardReleaseContext(ctx)



@xfail_pcscd("pcscd serves at most 200 client connections (-t), one per context: the 201st "
             "SCardEstablishContext fails (SCARD_W_SECURITY_VIOLATION, then SCARD_E_NO_SERVICE); "
             "scardd has no client cap")
def test_contexts_beyond_two_hundred_in_one_process(fault_daemon, fault_reader, contexts):
    r = fault_reader("Many", cards=[0])
    fault_daemon([r])
    made = []
    for i in range(250):
        hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        expect(hr, 0, "SCardEstablishContext #%d" % (i + 1))
        made.append(ctx)
    try:
        hr, readers = s.SCardListReaders(made[-1], [])
        assert (hr, readers) == (0, [r.reader()])
        hr, card, proto = connect(made[-1], r.reader())
        expect(hr, 0, "SCardConnect on context #250")
    finally:
        for ctx in made:
            s.SCardReleaseContext(ctx)


def test_second_context_on_one_connection_replaces_the_first(fault_daemon, fault_reader):
    # libpcsclite opens one connection per context; a raw client may ask twice
    r = fault_reader("Raw", cards=[0])
    fault_daemon([r])
    with raw.RawClient(SOCKET) as c:
        c.version()
        rv1, first = c.establish()
        rv2, second = c.establish()
        assert (rv1, rv2) == (0, 0) and first != second
        rv, card, _ = c.connect(first, r.reader())
        assert rv != 0, "the replaced context still connects"
        rv, card, _ = c.connect(second, r.reader())
        assert rv == 0, "CONNECT on the newest context: 0x%08X" % rv


# --- APDU sizes (the driver echoes the command and appends 90 00) ---------------------

SHORT_APDU_MAX = 4 + 1 + 255 + 1                  # 261: case 4 short
EXTENDED_BUFFER = raw.MAX_BUFFER_SIZE_EXTENDED    # 65548


def pattern(n):
    return [(i * 7 + 3) & 0xFF for i in range(n)]


@pytest.fixture
def one_card(fault_daemon, fault_reader, contexts):
    r = fault_reader("Apdu", cards=[0])
    fault_daemon([r])
    hr, card, proto = connect(contexts(), r.reader())
    expect(hr, 0, "SCardConnect")
    return r, card, proto


@pytest.mark.parametrize("n", [SHORT_APDU_MAX, 4 + 3 + 65535 + 2, EXTENDED_BUFFER - 2],
                         ids=["short-261", "extended-65544", "both-buffers-full"])
def test_largest_apdus_round_trip(one_card, n):
    r, card, proto = one_card
    apdu = pattern(n)
    hr, resp = s.SCardTransmit(card, proto, apdu)
    expect(hr, 0, "SCardTransmit of %d bytes" % n)
    assert len(resp) == n + 2 and resp == apdu + [0x90, 0x00]


def test_command_filling_the_buffer_reaches_the_driver(one_card):
    r, card, proto = one_card
    # 65548 bytes go through; the echo cannot fit, so the driver refuses it
    hr, _ = s.SCardTransmit(card, proto, pattern(EXTENDED_BUFFER))
    expect(hr, s.SCARD_E_NOT_TRANSACTED, "SCardTransmit of %d bytes" % EXTENDED_BUFFER)
    assert r.calls("transmit") == 1


def test_command_beyond_the_buffer_never_leaves_the_client(one_card):
    r, card, proto = one_card
    hr, _ = s.SCardTransmit(card, proto, pattern(EXTENDED_BUFFER + 1))
    expect(hr, s.SCARD_E_INSUFFICIENT_BUFFER, "SCardTransmit of %d bytes" % (EXTENDED_BUFFER + 1))
    assert r.calls("transmit") == 0
    hr, resp = s.SCardTransmit(card, proto, [0x00, 0xB0, 0x00, 0x00, 0x00])
    expect(hr, 0, "SCardTransmit afterwards")


# --- reader names -------------------------------------------------------------------

READER_NAME_MAX = raw.MAX_READERNAME - 1   # 127 bytes and the NUL
SUFFIX = " 00 00"


def check_reader_usable(ctx, reader):
    hr, readers = s.SCardListReaders(ctx, [])
    assert (hr, readers) == (0, [reader]), (name(hr), readers)
    hr, card, proto = connect(ctx, reader)
    expect(hr, 0, "SCardConnect(%d-byte name)" % len(reader))
    hr, got, state, protocol, atr = s.SCardStatus(card)
    assert (hr, got) == (0, reader)
    hr, attr = s.SCardGetAttrib(card, SCARD_ATTR_DEVICE_FRIENDLY_NAME)
    assert (hr, bytes(attr)) == (0, reader.encode() + b"\0")
    hr, states = s.SCardGetStatusChange(ctx, 0, [(reader, s.SCARD_STATE_UNAWARE)])
    assert hr == 0 and states[0][1] & s.SCARD_STATE_PRESENT, (name(hr), states)


def test_reader_name_of_maximum_length(fault_daemon, fault_reader, contexts):
    friendly = "M" * (READER_NAME_MAX - len(SUFFIX) - 1) + "x"
    r = fault_reader(friendly, cards=[0])
    fault_daemon([r])
    assert len(r.reader()) == READER_NAME_MAX
    check_reader_usable(contexts(), r.reader())


@pytest.mark.parametrize("length", [READER_NAME_MAX - len(SUFFIX) + 1, 200])
def test_longer_reader_name_is_cut_to_the_maximum(fault_daemon, fault_reader, contexts, length):
    friendly = "L" * (length - 1) + "x"
    r = fault_reader(friendly, cards=[0])
    cut = friendly[:READER_NAME_MAX - len(SUFFIX)] + SUFFIX
    fault_daemon([r], names=[cut])
    ctx = contexts()
    check_reader_usable(ctx, cut)
    hr, _, _ = connect(ctx, r.reader())
    assert hr != 0, "the uncut %d-byte name was accepted" % len(r.reader())
