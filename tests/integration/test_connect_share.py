"""SCardConnect / SCardReconnect / SCardDisconnect: share modes, protocols,
dispositions, and the reset/removal warnings other handles get."""
import re
import time

import pcsc_raw as raw
import pytest
from smartcard import scard as s

from conftest import READER0, READER1, VICC_ATR, xfail_pcscd
from scard_util import (Call, SCARD_NEGOTIABLE, SCARD_POWERED, SCARD_PRESENT, SCARD_SPECIFIC, SCARD_W_REMOVED_CARD,
                        SCARD_W_RESET_CARD, echo, echo_apdu, expect, ok, transmit)

T0, T1, RAW = s.SCARD_PROTOCOL_T0, s.SCARD_PROTOCOL_T1, s.SCARD_PROTOCOL_RAW
SHARED, EXCLUSIVE, DIRECT = s.SCARD_SHARE_SHARED, s.SCARD_SHARE_EXCLUSIVE, s.SCARD_SHARE_DIRECT
ATR_T0 = bytes.fromhex("3B021450")          # T=0 only (no TD1)
ATR_T0_T1 = bytes.fromhex("3B80800101")     # T=0 and T=1


def conn(ctx, share=SHARED, proto=T0 | T1, reader=READER0):
    hr, h, p = s.SCardConnect(ctx, reader, share, proto)
    return hr, h, p


# --- protocols -------------------------------------------------------------------
def test_connect_t1_card(card, new_ctx):
    hr, h, p = conn(new_ctx(), proto=T0 | T1)
    ok(hr)
    assert p == T1
    echo(h, p)


def test_t0_preference_on_t1_only_card_is_mismatch(card, new_ctx):
    hr, _, _ = conn(new_ctx(), proto=T0)
    expect(hr, s.SCARD_E_PROTO_MISMATCH)


def test_t0_card(daemon, new_ctx):
    daemon.card(0, atr=ATR_T0).insert()
    ctx = new_ctx()
    hr, _, _ = conn(ctx, proto=T1)
    expect(hr, s.SCARD_E_PROTO_MISMATCH)
    hr, h, p = conn(ctx, proto=T0 | T1)
    ok(hr)
    assert p == T0
    echo(h, p)


def test_dual_protocol_card_honours_single_preference(daemon, new_ctx):
    daemon.card(0, atr=ATR_T0_T1).insert()
    ctx = new_ctx()
    hr, h, p = conn(ctx, proto=T0)
    ok(hr)
    assert p == T0
    echo(h, p)
    ok(s.SCardDisconnect(h, s.SCARD_UNPOWER_CARD))
    hr, h, p = conn(ctx, proto=T1)
    ok(hr)
    assert p == T1
    echo(h, p)


def test_protocol_cannot_change_while_card_in_use(daemon, new_ctx):
    daemon.card(0, atr=ATR_T0_T1).insert()
    hr, h, p = conn(new_ctx(), proto=T1)
    ok(hr)
    assert p == T1
    hr, _, _ = conn(new_ctx(), proto=T0)
    expect(hr, s.SCARD_E_PROTO_MISMATCH, "T=0 connect while the card runs T=1")
    hr, h2, p2 = conn(new_ctx(), proto=T0 | T1)
    ok(hr)
    assert p2 == T1


def test_raw_protocol(card, new_ctx):
    hr, h, p = conn(new_ctx(), proto=RAW)
    ok(hr)
    assert p == RAW


def test_no_protocol_is_mismatch(card, new_ctx):
    hr, _, _ = conn(new_ctx(), proto=0)
    expect(hr, s.SCARD_E_PROTO_MISMATCH)


def test_transmit_with_other_protocol_pci_is_mismatch(card, new_ctx):
    hr, h, p = conn(new_ctx(), proto=T1)
    ok(hr)
    hr, _ = transmit(h, T0, echo_apdu(b"\x01"))
    expect(hr, s.SCARD_E_PROTO_MISMATCH)
    echo(h, T1)


# --- readers and cards -------------------------------------------------------------
def test_unknown_reader(daemon, new_ctx):
    hr, _, _ = conn(new_ctx(), reader="No Such Reader 00 00")
    expect(hr, s.SCARD_E_UNKNOWN_READER)


def test_shared_without_card_is_no_smartcard(daemon, new_ctx):
    for share in (SHARED, EXCLUSIVE):
        hr, _, _ = conn(new_ctx(), share=share)
        expect(hr, s.SCARD_E_NO_SMARTCARD)


def test_direct_without_card(daemon, new_ctx):
    hr, h, p = conn(new_ctx(), share=DIRECT, proto=0)
    ok(hr)
    assert p == 0
    ok(s.SCardDisconnect(h, s.SCARD_LEAVE_CARD))


def test_direct_with_card_then_shared_coexist(card, new_ctx):
    hr, hd, _ = conn(new_ctx(), share=DIRECT, proto=0)
    ok(hr)
    hr, hs, p = conn(new_ctx(), share=SHARED)
    ok(hr)
    echo(hs, p)


def test_second_slot_is_independent(daemon, new_ctx):
    daemon.card(1).insert()
    ctx = new_ctx()
    hr, h1, p1 = conn(ctx, share=EXCLUSIVE, reader=READER1)
    ok(hr)
    hr, _, _ = conn(ctx, reader=READER0)
    expect(hr, s.SCARD_E_NO_SMARTCARD)
    daemon.card(0).insert()
    hr, h0, p0 = conn(new_ctx(), share=EXCLUSIVE, reader=READER0)
    ok(hr, "exclusive on slot 0 while slot 1 is held exclusively")
    echo(h0, p0)
    echo(h1, p1)


# --- sharing --------------------------------------------------------------------
def test_shared_shared(card, new_ctx):
    hr, h1, p1 = conn(new_ctx())
    ok(hr)
    hr, h2, p2 = conn(new_ctx())
    ok(hr)
    echo(h1, p1)
    echo(h2, p2)


def test_shared_then_exclusive_is_violation(card, new_ctx):
    hr, h1, _ = conn(new_ctx())
    ok(hr)
    hr, _, _ = conn(new_ctx(), share=EXCLUSIVE)
    expect(hr, s.SCARD_E_SHARING_VIOLATION)


def test_exclusive_blocks_everyone_else(card, new_ctx):
    hr, h1, p1 = conn(new_ctx(), share=EXCLUSIVE)
    ok(hr)
    for share in (SHARED, EXCLUSIVE, DIRECT):
        hr, _, _ = conn(new_ctx(), share=share, proto=T1 if share != DIRECT else 0)
        expect(hr, s.SCARD_E_SHARING_VIOLATION, "share mode %d vs exclusive holder" % share)
    echo(h1, p1)
    ok(s.SCardDisconnect(h1, s.SCARD_LEAVE_CARD))
    hr, h2, p2 = conn(new_ctx(), share=EXCLUSIVE)
    ok(hr, "exclusive after the holder disconnected")


def test_same_context_exclusive_twice_is_violation(card, new_ctx):
    ctx = new_ctx()
    hr, _, _ = conn(ctx, share=EXCLUSIVE)
    ok(hr)
    hr, _, _ = conn(ctx, share=EXCLUSIVE)
    expect(hr, s.SCARD_E_SHARING_VIOLATION)


def test_reconnect_shared_to_exclusive_when_alone(card, new_ctx):
    hr, h, p = conn(new_ctx())
    ok(hr)
    hr, p = s.SCardReconnect(h, EXCLUSIVE, T1, s.SCARD_LEAVE_CARD)
    ok(hr)
    assert p == T1
    hr, _, _ = conn(new_ctx())
    expect(hr, s.SCARD_E_SHARING_VIOLATION)


@xfail_pcscd("after SHARED->EXCLUSIVE->SHARED reconnects pcscd 1.9.9 keeps the handle's "
             "transaction lock, so every other SCardConnect waits in the daemon for ever")
def test_reconnect_exclusive_back_to_shared_lets_others_in(card, new_ctx):
    hr, h, p = conn(new_ctx())
    ok(hr)
    hr, p = s.SCardReconnect(h, EXCLUSIVE, T1, s.SCARD_LEAVE_CARD)
    ok(hr)
    hr, p = s.SCardReconnect(h, SHARED, T1, s.SCARD_LEAVE_CARD)
    ok(hr)
    c = Call(conn, new_ctx())
    assert not c.blocked(5), "SCardConnect still blocked 5 s after the holder went back to SHARED"
    hr, h2, p2 = c.get()
    ok(hr, "shared connect after the holder went back to shared")
    echo(h2, p2)
    echo(h, p)


def test_reconnect_to_exclusive_with_other_handle_is_violation(daemon, card):
    # raw protocol: libpcsclite itself would retry SHARING_VIOLATION forever
    with daemon.raw() as a, daemon.raw() as b:
        ca, cb = a.hello(), b.hello()
        rv, ha, _ = a.connect(ca, READER0, raw.SCARD_SHARE_SHARED, raw.SCARD_PROTOCOL_T1)
        assert rv == 0
        rv, hb, _ = b.connect(cb, READER0, raw.SCARD_SHARE_SHARED, raw.SCARD_PROTOCOL_T1)
        assert rv == 0
        rv, _ = a.reconnect(ha, raw.SCARD_SHARE_EXCLUSIVE, raw.SCARD_PROTOCOL_T1, raw.SCARD_LEAVE_CARD)
        assert rv == raw.SCARD_E_SHARING_VIOLATION, hex(rv)
        rv, data = b.transmit(hb, echo_apdu(b"ok"))
        assert rv == 0 and data == b"ok\x90\x00"


# --- status ---------------------------------------------------------------------
def test_status(card, new_ctx):
    hr, h, p = conn(new_ctx())
    ok(hr)
    hr, reader, state, proto, atr = s.SCardStatus(h)
    ok(hr)
    assert reader == READER0
    assert proto == T1
    assert bytes(atr) == VICC_ATR
    assert state & SCARD_PRESENT and state & SCARD_POWERED, hex(state)
    assert state & (SCARD_NEGOTIABLE | SCARD_SPECIFIC), hex(state)


def test_status_after_removal(card, new_ctx):
    hr, h, p = conn(new_ctx())
    ok(hr)
    card.remove()
    hr = s.SCardStatus(h)[0]
    expect(hr, SCARD_W_REMOVED_CARD)


# --- reconnect dispositions -------------------------------------------------------
def vicc_events(card):
    return re.findall(r"\[INFO\] (Power Up|Power Down|Reset)", card.log_text())


def vicc_events_since(card, before, want):
    """vpcd's power/reset messages to vicc are one-way, so vicc may log them
    a moment after the PC/SC call returned: poll for the expected ones."""
    deadline = time.monotonic() + (10 if want else 0.5)
    while True:
        after = vicc_events(card)[len(before):]
        if (want and all(e in after for e in want)) or time.monotonic() > deadline:
            return after
        time.sleep(0.05)


@pytest.mark.parametrize("init,events", [
    (s.SCARD_LEAVE_CARD, []),
    (s.SCARD_RESET_CARD, ["Reset"]),
    (s.SCARD_UNPOWER_CARD, ["Power Down", "Power Up"]),
])
def test_reconnect_dispositions(card, new_ctx, init, events):
    hr, h, p = conn(new_ctx())
    ok(hr)
    hr, h2, p2 = conn(new_ctx())
    ok(hr)
    before = vicc_events(card)
    hr, p = s.SCardReconnect(h, SHARED, T1, init)
    ok(hr)
    assert p == T1
    after = vicc_events_since(card, before, events)
    # the card itself saw the reset / power cycle (or nothing for LEAVE)
    assert after[-len(events):] == events if events else after == [], after
    # the reconnecting handle is clear; the other one is told
    echo(h, p)
    hr, _ = transmit(h2, p2, echo_apdu(b"\x01"))
    if init == s.SCARD_LEAVE_CARD:
        ok(hr)
    else:
        expect(hr, SCARD_W_RESET_CARD, "other handle after reconnect")
        expect(transmit(h2, p2, echo_apdu(b"\x01"))[0], SCARD_W_RESET_CARD, "warning repeats until reconnect")
        hr, p2 = s.SCardReconnect(h2, SHARED, T1, s.SCARD_LEAVE_CARD)
        ok(hr)
        echo(h2, p2)


# --- disconnect dispositions --------------------------------------------------------
@pytest.mark.parametrize("disp,warned,events", [
    (s.SCARD_LEAVE_CARD, False, []),
    (s.SCARD_RESET_CARD, True, ["Reset"]),
    (s.SCARD_UNPOWER_CARD, True, ["Power Down"]),
])
def test_disconnect_dispositions(card, new_ctx, disp, warned, events):
    hr, h, p = conn(new_ctx())
    ok(hr)
    hr, h2, p2 = conn(new_ctx())
    ok(hr)
    before = vicc_events(card)
    ok(s.SCardDisconnect(h, disp))
    after = vicc_events_since(card, before, events)
    assert after[:len(events)] == events if events else after == [], after
    hr, _ = transmit(h2, p2, echo_apdu(b"\x01"))
    if warned:
        expect(hr, SCARD_W_RESET_CARD, "other handle after disconnect with disposition %d" % disp)
        hr, p2 = s.SCardReconnect(h2, SHARED, T1, s.SCARD_LEAVE_CARD)
        ok(hr)
    echo(h2, p2)


def test_disconnect_unpower_last_handle_powers_card_down(card, new_ctx):
    hr, h, p = conn(new_ctx())
    ok(hr)
    assert daemon_state(card) & raw.SCARD_POWERED
    ok(s.SCardDisconnect(h, s.SCARD_UNPOWER_CARD))
    st = daemon_state(card)
    assert st & raw.SCARD_PRESENT and not st & raw.SCARD_POWERED, hex(st)
    hr, h, p = conn(new_ctx())
    ok(hr, "connect powers the card up again")
    echo(h, p)


def daemon_state(card):
    return card.daemon.reader_state(card.reader).state


def test_disconnect_twice_is_invalid_handle(card, new_ctx):
    hr, h, p = conn(new_ctx())
    ok(hr)
    ok(s.SCardDisconnect(h, s.SCARD_LEAVE_CARD))
    expect(s.SCardDisconnect(h, s.SCARD_LEAVE_CARD), s.SCARD_E_INVALID_HANDLE)
    expect(transmit(h, p, echo_apdu(b"\x01"))[0], s.SCARD_E_INVALID_HANDLE)


# --- removal ---------------------------------------------------------------------------
def test_removed_card_warning_then_no_smartcard(card, new_ctx):
    ctx = new_ctx()
    hr, h, p = conn(ctx)
    ok(hr)
    card.remove()
    expect(transmit(h, p, echo_apdu(b"\x01"))[0], SCARD_W_REMOVED_CARD)
    expect(transmit(h, p, echo_apdu(b"\x01"))[0], SCARD_W_REMOVED_CARD, "warning repeats")
    hr, _, _ = conn(new_ctx())
    expect(hr, s.SCARD_E_NO_SMARTCARD)
    card.insert()
    hr, h2, p2 = conn(new_ctx())
    ok(hr)
    echo(h2, p2)
    # the old handle still belongs to the removed card
    expect(transmit(h, p, echo_apdu(b"\x01"))[0], SCARD_W_REMOVED_CARD)
    ok(s.SCardDisconnect(h, s.SCARD_LEAVE_CARD), "disconnect of a handle whose card went away")
