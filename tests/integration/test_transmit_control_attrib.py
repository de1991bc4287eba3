"""SCardTransmit (short to extended APDUs), SCardControl, SCardGetAttrib,
SCardSetAttrib, SCardStatus."""
import re

import pcsc_raw as raw
import pytest
from smartcard import scard as s

from conftest import READER0, READER1, VICC_ATR, xfail_pcscd
from scard_util import (CM_IOCTL_GET_FEATURE_REQUEST, SCARD_ATTR_ATR_STRING, SCARD_ATTR_DEVICE_FRIENDLY_NAME,
                        SCARD_ATTR_DEVICE_SYSTEM_NAME, SCARD_ATTR_VENDOR_NAME, SCARD_E_UNSUPPORTED_FEATURE,
                        connect, echo, echo_apdu, expect, ok, pattern, transmit)

# vicc frames every message with a 16-bit length: the longest command or
# answer that reaches the card is 65535 bytes (short of the 65548 a daemon allows)
VICC_MAX = 65535


def test_transmit_short_apdus(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    for n in (0, 1, 16, 200, 255):
        echo(h, p, pattern(n))


def test_transmit_is_answered_by_the_card(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    # stock ISO 7816 behaviour of the vicc card: SELECT MF (no FCI) -> 90 00,
    # unknown file -> 6A 82, unknown INS -> 6D 00
    assert transmit(h, p, bytes.fromhex("00A4000C023F00")) == (0, b"\x90\x00")
    assert transmit(h, p, bytes.fromhex("00A4000C021234")) == (0, b"\x6a\x82")
    assert transmit(h, p, bytes.fromhex("0042000000")) == (0, b"\x6d\x00")


def test_transmit_get_challenge_is_random(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    hr, a = transmit(h, p, bytes.fromhex("0084000008"))
    ok(hr)
    hr, b = transmit(h, p, bytes.fromhex("0084000008"))
    ok(hr)
    assert len(a) == len(b) == 10 and a[-2:] == b[-2:] == b"\x90\x00"
    assert a != b


@pytest.mark.parametrize("n", [256, 261, 1000, 4096, 32768, 65000, VICC_MAX - 9])
def test_transmit_extended_command_and_answer(card, new_ctx, n):
    h, p = connect(new_ctx(), READER0)
    data = pattern(n)
    hr, resp = transmit(h, p, echo_apdu(data))
    ok(hr)
    assert len(resp) == n + 2
    assert resp == data + b"\x90\x00"


def test_transmit_largest_command_reaches_card_intact(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    data = pattern(VICC_MAX - 9)
    apdu = echo_apdu(data)
    assert len(apdu) == VICC_MAX
    hr, resp = transmit(h, p, apdu)
    ok(hr)
    assert resp == data + b"\x90\x00"
    # and vicc itself logged a command of that size
    assert re.search(r"Command APDU \(%d bytes\)" % VICC_MAX, card.log_text())


def test_transmit_largest_answer(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    n = VICC_MAX - 2
    hr, resp = transmit(h, p, echo_apdu(n=n))
    ok(hr)
    assert len(resp) == VICC_MAX
    assert resp == pattern(n) + b"\x90\x00"


def test_transmit_too_long_is_refused_client_side(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    hr, _ = transmit(h, p, bytes(raw.MAX_BUFFER_SIZE_EXTENDED + 1))
    expect(hr, s.SCARD_E_INSUFFICIENT_BUFFER)
    echo(h, p)  # the connection is intact


def test_transmit_answer_larger_than_buffer(daemon, card):
    with daemon.raw() as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        assert rv == 0
        rv, data = c.transmit(h, echo_apdu(n=300), protocol=p, recv_len=100)
        assert rv == raw.SCARD_E_INSUFFICIENT_BUFFER, hex(rv)
        assert data == b""
        rv, data = c.transmit(h, echo_apdu(b"next"), protocol=p)
        assert rv == 0 and data == b"next\x90\x00", "the connection must stay in step"


def test_transmit_many_in_a_row(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    for i in range(300):
        echo(h, p, bytes([i & 0xFF]) * (i % 50))


def test_transmit_on_unpowered_card_powers_it(card, new_ctx):
    ctx = new_ctx()
    h, p = connect(ctx, READER0)
    ok(s.SCardDisconnect(h, s.SCARD_UNPOWER_CARD))
    assert not card.daemon.reader_state(READER0).state & raw.SCARD_POWERED
    h, p = connect(ctx, READER0)
    echo(h, p)


def test_status_fields(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    hr, reader, state, proto, atr = s.SCardStatus(h)
    ok(hr)
    assert (reader, proto, bytes(atr)) == (READER0, p, VICC_ATR)
    assert state & 0xFFFF & 0x04, hex(state)  # SCARD_PRESENT


def test_status_direct_without_card(daemon, new_ctx):
    h, p = connect(new_ctx(), READER1, share=s.SCARD_SHARE_DIRECT, proto=0)
    hr, reader, state, proto, atr = s.SCardStatus(h)
    ok(hr)
    assert reader == READER1
    assert state & 0xFFFF & 0x02, hex(state)  # SCARD_ABSENT
    assert proto == 0 and list(atr) == []


# --- attributes ------------------------------------------------------------------
def test_get_attrib_unsupported(card, new_ctx):
    # vpcd knows no attribute; the daemon answers unknown ids with
    # SCARD_E_UNSUPPORTED_FEATURE (0x8010001F in Debian's pcsc-lite and pyscard)
    h, p = connect(new_ctx(), READER0)
    for attr in (SCARD_ATTR_VENDOR_NAME, 0x12345678):
        hr, _ = s.SCardGetAttrib(h, attr)
        expect(hr, SCARD_E_UNSUPPORTED_FEATURE, "attr 0x%X" % attr)
    echo(h, p)


@xfail_pcscd("vpcd zeroes the length on an unknown tag and pcscd 1.9.9 then reports "
             "SCARD_E_INSUFFICIENT_BUFFER instead of answering with the reader name")
@pytest.mark.parametrize("attr", [SCARD_ATTR_DEVICE_FRIENDLY_NAME, SCARD_ATTR_DEVICE_SYSTEM_NAME])
def test_get_attrib_device_name_from_daemon(card, new_ctx, attr):
    h, p = connect(new_ctx(), READER0)
    hr, value = s.SCardGetAttrib(h, attr)
    ok(hr)
    assert bytes(value).rstrip(b"\0") == READER0.encode()


def test_get_attrib_raw_length_bound(daemon, card):
    with daemon.raw() as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        assert rv == 0
        rv, _ = c.get_attrib(h, SCARD_ATTR_VENDOR_NAME, raw.MAX_BUFFER_SIZE)
        assert rv == SCARD_E_UNSUPPORTED_FEATURE, hex(rv)
        rv, value = c.get_attrib(h, SCARD_ATTR_ATR_STRING, raw.MAX_BUFFER_SIZE)
        if daemon.kind == "pcscd":
            assert rv != 0  # vpcd has no ATR attribute, and pcscd does not fill in
        else:
            # scardd answers it from the card's ATR when the driver does not
            assert rv == 0, hex(rv)
            assert bytes(value) == VICC_ATR
        assert c.status(h) == 0


def test_set_attrib_not_transacted(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    hr = s.SCardSetAttrib(h, SCARD_ATTR_VENDOR_NAME, list(b"x"))
    expect(hr, s.SCARD_E_NOT_TRANSACTED)
    echo(h, p)


# --- control ------------------------------------------------------------------------
def test_control_unsupported_by_vpcd(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    hr, out = s.SCardControl(h, CM_IOCTL_GET_FEATURE_REQUEST, [])
    expect(hr, SCARD_E_UNSUPPORTED_FEATURE)
    hr, out = s.SCardControl(h, 0x42000001, [1, 2, 3])
    expect(hr, SCARD_E_UNSUPPORTED_FEATURE)
    echo(h, p)


def test_control_on_direct_handle_without_card(daemon, new_ctx):
    h, _ = connect(new_ctx(), READER1, share=s.SCARD_SHARE_DIRECT, proto=0)
    hr, out = s.SCardControl(h, CM_IOCTL_GET_FEATURE_REQUEST, [])
    expect(hr, SCARD_E_UNSUPPORTED_FEATURE)


def test_control_raw_keeps_connection_in_step(daemon, card):
    with daemon.raw() as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        rv, out = c.control(h, CM_IOCTL_GET_FEATURE_REQUEST, b"\x01" * 300)
        assert rv == SCARD_E_UNSUPPORTED_FEATURE, hex(rv)
        assert out == b""
        rv, data = c.transmit(h, echo_apdu(b"z"), protocol=p)
        assert (rv, data) == (0, b"z\x90\x00")
