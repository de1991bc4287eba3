"""What a client sees when the reader's driver fails: error codes, garbage
lengths, a device that vanishes mid-session (tests/drivers/ifd_fault.c).

Every test runs against scardd and, with SCARDD_TEST_DAEMON=pcscd, against
Debian's pcscd 1.9.9 loading the same driver: the expected codes are the ones
pcscd answers. Where scardd answers otherwise and is wrong, the test is an
xfail for scardd naming the function to fix; where pcscd is the one that
misbehaves, an xfail for pcscd.

Clients are pyscard in peer processes (pcsc_peer.py), so a client that a
daemon's garbage crashes fails its test instead of the run.
"""
import time

import pytest
from smartcard import scard as s

from conftest import IS_PCSCD, SOCKET, Peer
from fault_daemon import fault_daemon, fault_reader  # noqa: F401 (fixtures)
from scard_util import (SCARD_ATTR_DEVICE_FRIENDLY_NAME, SCARD_ATTR_VENDOR_NAME, SCARD_W_REMOVED_CARD,
                        SCARD_W_RESET_CARD, name)

APDU = bytes.fromhex("00A40400023F00")
ECHOED = APDU + b"\x90\x00"  # the driver answers the command itself, then 90 00
CTL_ECHO = s.SCARD_CTL_CODE(1)
WAIT_MS = 10000              # a bound on waiting for the daemon to notice a change


NOT_TRANSACTED = s.SCARD_E_NOT_TRANSACTED
READER_UNAVAILABLE = s.SCARD_E_READER_UNAVAILABLE
INSUFFICIENT_BUFFER = s.SCARD_E_INSUFFICIENT_BUFFER
UNSUPPORTED_FEATURE = 0x8010001F  # pcsc-lite's value on the wire


def xfail_pcscd(reason):
    return pytest.mark.xfail(IS_PCSCD, reason="pcscd: " + reason, strict=True)


@pytest.fixture
def peers(test_dir):
    made = []

    def make():
        p = Peer(SOCKET, test_dir, name="peer%d" % len(made))
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


class Handle:
    """A peer process with a context and a shared card handle on reader."""

    def __init__(self, peer, reader, share=s.SCARD_SHARE_SHARED,
                 protocols=s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1):
        self.peer = peer
        self.ctx = peer.call("establish")["ctx"]
        res = peer.call("connect", self.ctx, reader, share, protocols)
        assert res["hr"] == 0, "SCardConnect(%s): %s" % (reader, name(res["hr"]))
        self.card, self.proto = res["card"], res["proto"]

    def transmit(self, apdu=APDU):
        res = self.peer.call("transmit", self.card, self.proto, apdu.hex())
        return res["hr"], bytes.fromhex(res["resp"])

    def control(self, data=b"\x01\x02\x03", code=CTL_ECHO):
        res = self.peer.call("control", self.card, code, data.hex())
        return res["hr"], bytes.fromhex(res["resp"])

    def attrib(self, attr=SCARD_ATTR_VENDOR_NAME):
        res = self.peer.call("get_attrib", self.card, attr)
        return res["hr"], bytes.fromhex(res["value"])

    def status(self):
        return self.peer.call("status", self.card)["hr"]

    def state(self, reader):
        """The reader's event state as SCardGetStatusChange reports it now."""
        res = self.peer.call("gsc", self.ctx, 0, [[reader, s.SCARD_STATE_UNAWARE]])
        assert res["hr"] == 0, "SCardGetStatusChange: %s" % name(res["hr"])
        return res["states"][0][1]

    def wait_change(self, reader, known):
        """Blocks until the reader's state differs from known (bounded)."""
        res = self.peer.call("gsc", self.ctx, WAIT_MS, [[reader, known & ~s.SCARD_STATE_CHANGED]],
                             timeout=WAIT_MS / 1000 + 30)
        assert res["hr"] == 0, "SCardGetStatusChange waiting for a change: %s" % name(res["hr"])
        return res["states"][0][1]

    def wait_bits(self, reader, bits):
        """The reader's state once it has all of bits, or the last one seen
        when WAIT_MS passed without that."""
        deadline = time.monotonic() + WAIT_MS / 1000
        cur = self.state(reader)
        while cur & bits != bits:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                break
            res = self.peer.call("gsc", self.ctx, left, [[reader, cur & ~s.SCARD_STATE_CHANGED]],
                                 timeout=left / 1000 + 30)
            if res["hr"] == 0:
                cur = res["states"][0][1]
        return cur


def expect(hr, want, what):
    assert hr == want, "%s: got %s, want %s" % (what, name(hr), name(want))


def start_one_card(fault_daemon, fault_reader, peers, extra_args=()):
    r = fault_reader("Fault", cards=[0])
    d = fault_daemon([r], extra_args=extra_args)
    return r, d, Handle(peers(), r.reader())


@pytest.fixture
def one_card(fault_daemon, fault_reader, peers):
    """A daemon over one fault reader with a card; a peer connected to it."""
    return start_one_card(fault_daemon, fault_reader, peers)


@pytest.fixture
def one_card_unpolled(fault_daemon, fault_reader, peers):
    """Like one_card, but scardd checks presence only once a minute, so a
    device that vanishes is met first by the call under test, not by a poll
    (pcscd polls every 400 ms; it answers the same either way)."""
    return start_one_card(fault_daemon, fault_reader, peers,
                          () if IS_PCSCD else ("--poll-ms", "60000"))


# --- 1. IFDHTransmitToICC fails --------------------------------------------------

# pcscd 1.9.9: IFD_NO_SUCH_DEVICE is the reader gone, IFD_ICC_NOT_PRESENT the
# card; any other driver code is SCARD_E_NOT_TRANSACTED.
TRANSMIT_FAILURES = [
    ("IFD_COMMUNICATION_ERROR", NOT_TRANSACTED),
    ("IFD_RESPONSE_TIMEOUT", NOT_TRANSACTED),
    ("IFD_ERROR_NOT_SUPPORTED", NOT_TRANSACTED),
    ("IFD_NOT_SUPPORTED", NOT_TRANSACTED),
    ("IFD_PROTOCOL_NOT_SUPPORTED", NOT_TRANSACTED),
    ("IFD_ERROR_POWER_ACTION", NOT_TRANSACTED),
    ("IFD_ERROR_TAG", NOT_TRANSACTED),
    ("IFD_ERROR_INSUFFICIENT_BUFFER", NOT_TRANSACTED),
    ("IFD_NO_SUCH_DEVICE", READER_UNAVAILABLE),
    ("IFD_ICC_NOT_PRESENT", s.SCARD_E_NO_SMARTCARD),
]


@pytest.mark.parametrize("code,want", TRANSMIT_FAILURES, ids=[c for c, _ in TRANSMIT_FAILURES])
def test_transmit_failure_code(one_card, code, want):
    r, d, h = one_card
    r.inject("transmit_rc", code)
    hr, resp = h.transmit()
    expect(hr, want, "SCardTransmit with the driver answering %s" % code)
    assert resp == b""
    assert r.calls("transmit") == 1


@pytest.mark.parametrize("code", [c for c, _ in TRANSMIT_FAILURES if c != "IFD_ICC_NOT_PRESENT"])
def test_handle_works_after_a_failed_transmit(one_card, code):
    r, d, h = one_card
    r.inject("transmit_rc", code)
    assert h.transmit()[0] != 0
    r.clear("transmit_rc")
    assert h.transmit() == (0, ECHOED)
    assert h.status() == 0


def test_transmit_that_found_no_card_ends_the_handle(one_card):
    r, d, h = one_card
    r.inject("transmit_rc", "IFD_ICC_NOT_PRESENT")
    expect(h.transmit()[0], s.SCARD_E_NO_SMARTCARD, "SCardTransmit (no card)")
    r.clear("transmit_rc")
    calls = r.calls("transmit")
    hr, _ = h.transmit()
    # pcscd answers SCARD_E_NO_SMARTCARD here, scardd's fix may say
    # SCARD_W_REMOVED_CARD: either way the card is not used blindly
    assert hr != 0, "the handle went on transmitting after its card was reported missing"
    assert r.calls("transmit") == calls, "the transmit reached the driver"


@xfail_pcscd("after a transmit's IFD_ICC_NOT_PRESENT pcscd 1.9.9 clears the ATR and reports "
             "the reader EMPTY while its presence poll still sees the card; only a removal "
             "and reinsertion brings it back")
def test_card_usable_again_after_a_transmit_found_it_missing(one_card, peers):
    r, d, h = one_card
    r.inject("transmit_rc", "IFD_ICC_NOT_PRESENT")
    h.transmit()
    r.clear("transmit_rc")
    # the driver says the card is there: once the daemon agrees, it works
    st = h.wait_bits(r.reader(), s.SCARD_STATE_PRESENT)
    assert st & s.SCARD_STATE_PRESENT, "reader state %#x: the card never came back" % st
    fresh = Handle(peers(), r.reader())
    assert fresh.transmit() == (0, ECHOED)


# --- 2. IFDHTransmitToICC reports a garbage length --------------------------------

@pytest.mark.parametrize("length,want", [("0", b""), ("1", APDU[:1])], ids=["0", "1"])
def test_transmit_short_length_returns_that_much(one_card, length, want):
    r, d, h = one_card
    r.inject("transmit_len", length)
    assert h.transmit() == (0, want)
    r.clear("transmit_len")
    assert h.transmit() == (0, ECHOED)


@pytest.mark.parametrize("length", ["+1", "+1000", "4294967295"])
def test_transmit_length_beyond_the_buffer(one_card, length):
    r, d, h = one_card
    r.inject("transmit_len", length)
    hr, resp = h.transmit()
    expect(hr, INSUFFICIENT_BUFFER, "SCardTransmit, driver claiming %s bytes" % length)
    assert resp == b""
    r.clear("transmit_len")
    assert h.transmit() == (0, ECHOED)


SECRET = bytes([0x5A]) * 60000


def test_transmit_garbage_length_never_shows_another_clients_answer(fault_daemon, fault_reader,
                                                                    peers):
    r = fault_reader("Fault", cards=[0])
    fault_daemon([r])
    alice, bob = Handle(peers(), r.reader()), Handle(peers(), r.reader())
    hr, resp = alice.transmit(SECRET)
    assert hr == 0 and resp == SECRET + b"\x90\x00"
    r.inject("transmit_len", "65548")  # within the buffer, far beyond what was written
    hr, resp = bob.transmit()
    assert hr == 0 and len(resp) == 65548 and resp[:9] == ECHOED
    assert resp.count(0x5A) < 64, "Bob received %d bytes of Alice's answer" % resp.count(0x5A)


def test_control_garbage_length_never_shows_another_clients_answer(fault_daemon, fault_reader,
                                                                   peers):
    r = fault_reader("Fault", cards=[0])
    fault_daemon([r])
    alice, bob = Handle(peers(), r.reader()), Handle(peers(), r.reader())
    assert alice.control(SECRET) == (0, SECRET)
    r.inject("control_len", "60000")
    hr, resp = bob.control(b"\x01\x02")
    assert hr == 0 and len(resp) == 60000 and resp[:2] == b"\x01\x02"
    assert resp.count(0x5A) < 64, "Bob received %d bytes of Alice's answer" % resp.count(0x5A)


# --- 3. IFDHControl fails or lies ----------------------------------------------------

CONTROL_FAILURES = [
    ("IFD_COMMUNICATION_ERROR", NOT_TRANSACTED, ()),
    ("IFD_RESPONSE_TIMEOUT", NOT_TRANSACTED, ()),
    ("IFD_ICC_NOT_PRESENT", NOT_TRANSACTED, ()),
    ("IFD_PROTOCOL_NOT_SUPPORTED", NOT_TRANSACTED, ()),
    ("IFD_ERROR_POWER_ACTION", NOT_TRANSACTED, ()),
    ("IFD_ERROR_TAG", NOT_TRANSACTED, ()),
    ("IFD_ERROR_NOT_SUPPORTED", UNSUPPORTED_FEATURE, ()),
    ("IFD_NOT_SUPPORTED", UNSUPPORTED_FEATURE, ()),
    ("IFD_ERROR_INSUFFICIENT_BUFFER", INSUFFICIENT_BUFFER, ()),
    ("IFD_NO_SUCH_DEVICE", READER_UNAVAILABLE, ()),
]


@pytest.mark.parametrize("code,want", [pytest.param(c, w, marks=m, id=c) for c, w, m in CONTROL_FAILURES])
def test_control_failure_code(one_card, code, want):
    r, d, h = one_card
    r.inject("control_rc", code)
    hr, resp = h.control()
    expect(hr, want, "SCardControl with the driver answering %s" % code)
    assert resp == b""
    r.clear("control_rc")
    assert h.control() == (0, b"\x01\x02\x03")


@pytest.mark.parametrize("length,want", [("0", b""), ("1", b"\x01")], ids=["0", "1"])
def test_control_short_length_returns_that_much(one_card, length, want):
    r, d, h = one_card
    r.inject("control_len", length)
    assert h.control() == (0, want)


@pytest.mark.parametrize("length", [
    "+1",
    pytest.param("4294967295", marks=xfail_pcscd(
        "pcscd 1.9.9 sends the driver's dwBytesReturned on with SCARD_E_INSUFFICIENT_BUFFER; "
        "libpcsclite (Debian's and ours alike) hands it to the caller in *lpBytesReturned, "
        "pyscard reads that many bytes and the client dies (SIGSEGV)")),
])
def test_control_length_beyond_the_buffer(one_card, length):
    r, d, h = one_card
    r.inject("control_len", length)
    hr, resp = h.control()
    expect(hr, INSUFFICIENT_BUFFER, "SCardControl, driver claiming %s bytes" % length)
    r.clear("control_len")
    assert h.control() == (0, b"\x01\x02\x03")


# --- 4. IFDHGetCapabilities fails or lies ---------------------------------------------

# pcscd 1.9.9 maps every other code, IFD_NO_SUCH_DEVICE included, to NOT_TRANSACTED
ATTRIB_FAILURES = [
    ("IFD_COMMUNICATION_ERROR", NOT_TRANSACTED),
    ("IFD_NO_SUCH_DEVICE", NOT_TRANSACTED),
    ("IFD_ERROR_NOT_SUPPORTED", NOT_TRANSACTED),
    ("IFD_NOT_SUPPORTED", NOT_TRANSACTED),
    ("IFD_ERROR_TAG", UNSUPPORTED_FEATURE),
    ("IFD_ERROR_INSUFFICIENT_BUFFER", INSUFFICIENT_BUFFER),
]


@pytest.mark.parametrize("code,want", ATTRIB_FAILURES, ids=[c for c, _ in ATTRIB_FAILURES])
def test_get_attrib_failure_code(one_card, code, want):
    r, d, h = one_card
    r.inject("attr_rc", code)
    hr, value = h.attrib()
    expect(hr, want, "SCardGetAttrib with the driver answering %s" % code)
    assert value == b""
    r.clear("attr_rc")
    assert h.attrib() == (0, b"scardd tests\0")


def test_daemon_answers_the_friendly_name_only_for_an_unknown_tag(one_card):
    r, d, h = one_card
    r.inject("attr_rc", "IFD_ERROR_TAG")
    assert h.attrib(SCARD_ATTR_DEVICE_FRIENDLY_NAME) == (0, r.reader().encode() + b"\0")
    r.inject("attr_rc", "IFD_COMMUNICATION_ERROR")
    hr, _ = h.attrib(SCARD_ATTR_DEVICE_FRIENDLY_NAME)
    expect(hr, NOT_TRANSACTED, "SCardGetAttrib(FRIENDLY_NAME), driver failing")


# pcscd passes such a length on to the client with SCARD_S_SUCCESS; Debian's
# libpcsclite turns it into SCARD_E_INSUFFICIENT_BUFFER


@pytest.mark.parametrize("length,want", [
    pytest.param("0", 0, id="0"), pytest.param("1", 0, id="1"),
    pytest.param("+1", INSUFFICIENT_BUFFER, id="+1"),
    pytest.param("265", INSUFFICIENT_BUFFER, id="265"),
    pytest.param("4294967295", INSUFFICIENT_BUFFER, id="4294967295"),
])
def test_get_attrib_garbage_length(one_card, length, want):
    r, d, h = one_card
    r.inject("attr_len", length)
    hr, value = h.attrib()
    expect(hr, want, "SCardGetAttrib, driver claiming %s bytes" % length)
    if want == 0:
        assert value == b"scardd tests\0"[:int(length)]
    r.clear("attr_len")
    assert h.attrib() == (0, b"scardd tests\0")


def test_capability_answered_with_a_wrong_length_is_ignored(fault_daemon, fault_reader, peers):
    r = fault_reader("Fault", cards=[0], slots=2)
    r.inject("tag_len", "+100")
    fault_daemon([r], names=[r.reader(0)])
    h = Handle(peers(), r.reader(0))
    res = h.peer.call("list_readers", h.ctx)
    assert res["readers"] == [r.reader(0)]
    assert h.transmit() == (0, ECHOED)


# --- 5. the device vanishes mid-session -------------------------------------------------

def test_vanished_device_fails_transmit(one_card_unpolled):
    r, d, h = one_card_unpolled
    r.vanish()
    hr, _ = h.transmit()
    expect(hr, READER_UNAVAILABLE, "SCardTransmit on a vanished device")


def test_vanished_device_fails_control(one_card_unpolled):
    r, d, h = one_card_unpolled
    r.vanish()
    hr, _ = h.control()
    expect(hr, READER_UNAVAILABLE, "SCardControl on a vanished device")


def test_vanished_device_makes_the_reader_unavailable(one_card, peers):
    r, d, h = one_card
    watcher = Handle(peers(), r.reader())
    known = watcher.state(r.reader())
    assert known & s.SCARD_STATE_PRESENT
    r.vanish()
    st = watcher.wait_change(r.reader(), known)
    assert st & s.SCARD_STATE_UNAVAILABLE, "reader state %#x lacks UNAVAILABLE" % st
    assert not st & s.SCARD_STATE_PRESENT, "reader state %#x" % st
    res = h.peer.call("list_readers", h.ctx)
    assert res["readers"] == [r.reader()], "the reader stays listed: %r" % res
    expect(h.status(), READER_UNAVAILABLE, "SCardStatus")
    expect(h.transmit()[0], READER_UNAVAILABLE, "SCardTransmit")
    for share, protocols in ((s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1),
                             (s.SCARD_SHARE_DIRECT, 0)):
        res = h.peer.call("connect", h.ctx, r.reader(), share, protocols)
        expect(res["hr"], READER_UNAVAILABLE, "SCardConnect(share %d)" % share)


def test_waiter_wakes_when_the_device_vanishes(one_card, peers):
    r, d, h = one_card
    watcher = Handle(peers(), r.reader())
    known = watcher.state(r.reader())
    wait = watcher.peer.start("gsc", watcher.ctx, WAIT_MS, [[r.reader(), known & ~s.SCARD_STATE_CHANGED]])
    r.vanish()
    res = watcher.peer.result(wait, WAIT_MS / 1000 + 30)
    expect(res["hr"], 0, "SCardGetStatusChange across the device vanishing")
    st = res["states"][0][1]
    assert st & s.SCARD_STATE_CHANGED and not st & s.SCARD_STATE_PRESENT, "state %#x" % st


def test_device_that_comes_back_is_usable(one_card, peers):
    r, d, h = one_card
    known = h.state(r.reader())
    r.vanish()
    h.wait_change(r.reader(), known)
    r.vanish(False)
    st = h.wait_bits(r.reader(), s.SCARD_STATE_PRESENT)
    assert st & s.SCARD_STATE_PRESENT, "reader state %#x: the device never came back" % st
    fresh = Handle(peers(), r.reader())
    assert fresh.transmit() == (0, ECHOED)
    assert fresh.control() == (0, b"\x01\x02\x03")


@xfail_pcscd("pcscd 1.9.9 re-powers the card once the device is back but does not flag the "
             "handles opened before it vanished: SCardStatus on them succeeds (their transmit "
             "fails SCARD_E_PROTO_MISMATCH until someone reconnects, then works again), so an "
             "application never learns that its card session was lost")
def test_handle_from_before_the_device_vanished_learns_of_it(one_card):
    r, d, h = one_card
    known = h.state(r.reader())
    r.vanish()
    h.wait_change(r.reader(), known)
    r.vanish(False)
    assert h.wait_bits(r.reader(), s.SCARD_STATE_PRESENT) & s.SCARD_STATE_PRESENT
    calls = r.calls("transmit")
    hr = h.status()
    assert hr in (SCARD_W_REMOVED_CARD, SCARD_W_RESET_CARD), \
        "SCardStatus on a handle whose device went away and came back: %s" % name(hr)
    hr, _ = h.transmit()
    assert hr != 0 and r.calls("transmit") == calls, \
        "the old handle transmitted as if the device had never gone: %s" % name(hr)
    res = h.peer.call("reconnect", h.card, s.SCARD_SHARE_SHARED, h.proto, s.SCARD_LEAVE_CARD)
    expect(res["hr"], 0, "SCardReconnect once the device is back")
    assert h.transmit() == (0, ECHOED)
