"""SCardBeginTransaction / SCardEndTransaction, in one process and across
processes (pcsc_peer.py), including a holder that gets killed."""
import time

import pcsc_raw as raw
import pytest
from smartcard import scard as s

from conftest import IS_PCSCD, READER0
from scard_util import SCARD_W_RESET_CARD, Call, connect, echo, echo_apdu, expect, ok, transmit

SHARED, EXCLUSIVE = s.SCARD_SHARE_SHARED, s.SCARD_SHARE_EXCLUSIVE
T1 = s.SCARD_PROTOCOL_T1
BLOCK = 1.5     # "still blocked" = no answer within this many seconds
RELEASE = 20    # "released at once" = well within this (generous, not a timing assert)


def test_begin_end(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    ok(s.SCardBeginTransaction(h))
    echo(h, p)
    ok(s.SCardEndTransaction(h, s.SCARD_LEAVE_CARD))
    echo(h, p)


def test_nested_transactions_count(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    with card.daemon.raw() as c:
        ctx = c.hello()
        rv, h2, _ = c.connect(ctx, READER0, raw.SCARD_SHARE_SHARED, raw.SCARD_PROTOCOL_T1)
        assert rv == 0
        ok(s.SCardBeginTransaction(h))
        ok(s.SCardBeginTransaction(h))
        ok(s.SCardEndTransaction(h, s.SCARD_LEAVE_CARD))
        # still held once: another handle must wait (daemon answers SHARING_VIOLATION)
        assert c.begin(h2) == raw.SCARD_E_SHARING_VIOLATION
        ok(s.SCardEndTransaction(h, s.SCARD_LEAVE_CARD))
        assert c.begin(h2) == 0
        assert c.end(h2) == 0
    expect(s.SCardEndTransaction(h, s.SCARD_LEAVE_CARD), s.SCARD_E_NOT_TRANSACTED)


def test_end_without_begin(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    expect(s.SCardEndTransaction(h, s.SCARD_LEAVE_CARD), s.SCARD_E_NOT_TRANSACTED)


def test_transaction_blocks_other_context_until_end(card, new_ctx):
    h1, p1 = connect(new_ctx(), READER0)
    h2, p2 = connect(new_ctx(), READER0)
    ok(s.SCardBeginTransaction(h1))
    waiter = Call(s.SCardBeginTransaction, h2)
    assert waiter.blocked(BLOCK), "second BeginTransaction must wait"
    tx = Call(transmit, h2, p2, echo_apdu(b"x"))
    assert tx.blocked(BLOCK), "transmit from another handle must wait during a transaction"
    # The holder is served meanwhile. Debian's libpcsclite holds its global
    # lock while a thread waits for a busy context, so if the daemon sat on
    # the waiter's BEGIN (instead of answering SHARING_VIOLATION and letting
    # the client retry) every call of this process would hang here.
    holder = Call(echo, h1, p1)
    assert not holder.blocked(15), ("the holder's transmit hangs while another context of the same "
                                    "process waits for the transaction")
    holder.get()
    ok(s.SCardEndTransaction(h1, s.SCARD_LEAVE_CARD))
    ok(waiter.get(RELEASE), "waiting BeginTransaction")
    assert tx.get(RELEASE)[0] == 0
    # now h1 is the one kept out
    waiter1 = Call(s.SCardBeginTransaction, h1)
    assert waiter1.blocked(BLOCK)
    ok(s.SCardEndTransaction(h2, s.SCARD_LEAVE_CARD))
    ok(waiter1.get(RELEASE))
    ok(s.SCardEndTransaction(h1, s.SCARD_LEAVE_CARD))


def test_daemon_answers_sharing_violation_during_transaction(daemon, card):
    with daemon.raw() as a, daemon.raw() as b:
        ca, cb = a.hello(), b.hello()
        rv, ha, pa = a.connect(ca, READER0)
        rv, hb, pb = b.connect(cb, READER0)
        assert a.begin(ha) == 0
        assert b.begin(hb) == raw.SCARD_E_SHARING_VIOLATION
        assert b.transmit(hb, echo_apdu(b"1"), protocol=pb)[0] == raw.SCARD_E_SHARING_VIOLATION
        assert b.status(hb) == raw.SCARD_E_SHARING_VIOLATION
        # END from a non-holder with a non-LEAVE disposition is refused
        assert b.end(hb, raw.SCARD_RESET_CARD) == raw.SCARD_E_SHARING_VIOLATION
        assert a.transmit(ha, echo_apdu(b"2"), protocol=pa) == (0, b"2\x90\x00")
        assert a.end(ha) == 0
        assert b.transmit(hb, echo_apdu(b"3"), protocol=pb) == (0, b"3\x90\x00")


def test_end_transaction_reset_warns_other_handles(card, new_ctx):
    h1, p1 = connect(new_ctx(), READER0)
    h2, p2 = connect(new_ctx(), READER0)
    ok(s.SCardBeginTransaction(h1))
    ok(s.SCardEndTransaction(h1, s.SCARD_RESET_CARD))
    expect(transmit(h2, p2, echo_apdu(b"x"))[0], SCARD_W_RESET_CARD)
    hr, p2 = s.SCardReconnect(h2, SHARED, T1, s.SCARD_LEAVE_CARD)
    ok(hr)
    echo(h2, p2)


def test_exclusive_connect_then_transaction(card, new_ctx):
    h, p = connect(new_ctx(), READER0, share=EXCLUSIVE, proto=T1)
    ok(s.SCardBeginTransaction(h))
    echo(h, p)
    ok(s.SCardEndTransaction(h, s.SCARD_LEAVE_CARD))
    hr, _, _ = s.SCardConnect(new_ctx(), READER0, SHARED, T1)
    expect(hr, s.SCARD_E_SHARING_VIOLATION)


def test_transaction_on_removed_card(card, new_ctx):
    h, p = connect(new_ctx(), READER0)
    ok(s.SCardBeginTransaction(h))
    card.remove()
    expect(s.SCardEndTransaction(h, s.SCARD_LEAVE_CARD), s.SCARD_W_REMOVED_CARD
           if hasattr(s, "SCARD_W_REMOVED_CARD") else 0x80100069)
    expect(s.SCardBeginTransaction(h), 0x80100069)


# --- across processes ------------------------------------------------------------------
def peer_connect(peer, share=SHARED, proto=T1):
    ctx = peer.call("establish")["ctx"]
    r = peer.call("connect", ctx, READER0, share, proto)
    assert r["hr"] == 0, hex(r["hr"])
    return ctx, r["card"], r["proto"]


def test_two_processes_contend_for_exclusive(card, peers, new_ctx):
    a, b = peers(), peers()
    _, ha, pa = peer_connect(a, EXCLUSIVE)
    ctx_b = b.call("establish")["ctx"]
    r = b.call("connect", ctx_b, READER0, EXCLUSIVE, T1)
    assert r["hr"] == s.SCARD_E_SHARING_VIOLATION
    r = b.call("connect", ctx_b, READER0, SHARED, T1)
    assert r["hr"] == s.SCARD_E_SHARING_VIOLATION
    assert a.call("disconnect", ha, s.SCARD_LEAVE_CARD)["hr"] == 0
    r = b.call("connect", ctx_b, READER0, EXCLUSIVE, T1)
    assert r["hr"] == 0
    r2 = a.call("connect", a.call("establish")["ctx"], READER0, EXCLUSIVE, T1)
    assert r2["hr"] == s.SCARD_E_SHARING_VIOLATION


def test_transaction_in_one_process_blocks_another(card, peers):
    a, b = peers(), peers()
    _, ha, pa = peer_connect(a)
    _, hb, pb = peer_connect(b)
    assert a.call("begin", ha)["hr"] == 0
    rid = b.start("begin", hb)
    assert b.pending(rid, BLOCK), "the other process must wait for the transaction"
    tid = b.start("transmit", hb, pb, echo_apdu(b"B").hex())
    assert b.pending(tid, 0.5)
    r = a.call("transmit", ha, pa, echo_apdu(b"A").hex())
    assert r["hr"] == 0 and r["resp"] == "419000"
    assert a.call("end", ha, s.SCARD_LEAVE_CARD)["hr"] == 0
    assert b.result(rid, RELEASE)["hr"] == 0
    assert b.result(tid, RELEASE)["hr"] == 0
    rid = a.start("begin", ha)
    assert a.pending(rid, BLOCK)
    assert b.call("end", hb, s.SCARD_LEAVE_CARD)["hr"] == 0
    assert a.result(rid, RELEASE)["hr"] == 0


def test_killed_process_transaction_is_released(card, peers, new_ctx):
    a = peers()
    _, ha, pa = peer_connect(a)
    h, p = connect(new_ctx(), READER0)
    assert a.call("begin", ha)["hr"] == 0
    waiter = Call(s.SCardBeginTransaction, h)
    assert waiter.blocked(BLOCK)
    t0 = time.monotonic()
    a.kill()
    hr = waiter.get(RELEASE)
    print("transaction released %.2fs after the holder was killed" % (time.monotonic() - t0))
    # pcsc-lite resets the card when a transaction holder dies; the waiting
    # handle learns it from its next call (or from this one)
    assert hr in (0, SCARD_W_RESET_CARD), hex(hr)
    if hr == SCARD_W_RESET_CARD:
        hr, p = s.SCardReconnect(h, SHARED, T1, s.SCARD_LEAVE_CARD)
        ok(hr)
        ok(s.SCardBeginTransaction(h))
    hr, resp = transmit(h, p, echo_apdu(b"\x01"))
    if IS_PCSCD and hr in (SCARD_W_RESET_CARD, s.SCARD_E_PROTO_MISMATCH):
        # pcscd frees the dead holder's lock before its reset lands: BEGIN
        # got 0, and the reset shows at this transmit (as W_RESET_CARD, or as
        # PROTO_MISMATCH once it left the protocol undefined). scardd resets
        # first, so its waiter learns it at BEGIN.
        hr, p = s.SCardReconnect(h, SHARED, T1, s.SCARD_LEAVE_CARD)
        ok(hr)
        hr, resp = transmit(h, p, echo_apdu(b"\x01"))
    ok(hr, "SCardTransmit")
    assert resp == b"\x01\x90\x00", resp.hex()
    ok(s.SCardEndTransaction(h, s.SCARD_LEAVE_CARD))


def test_killed_process_transaction_resets_card(card, peers, new_ctx):
    h, p = connect(new_ctx(), READER0)
    a = peers()
    _, ha, pa = peer_connect(a)
    assert a.call("begin", ha)["hr"] == 0
    a.kill()
    # the dead holder's connection is cleaned up and its transaction ends
    # with a card reset, which other handles are told about
    deadline = time.monotonic() + RELEASE
    while True:
        hr, _ = transmit(h, p, echo_apdu(b"x"))
        if hr != s.SCARD_E_SHARING_VIOLATION or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    expect(hr, SCARD_W_RESET_CARD)


def test_killed_process_exclusive_lock_is_released(card, peers, new_ctx):
    a = peers()
    peer_connect(a, EXCLUSIVE)
    ctx = new_ctx()
    hr, _, _ = s.SCardConnect(ctx, READER0, EXCLUSIVE, T1)
    expect(hr, s.SCARD_E_SHARING_VIOLATION)
    a.kill()
    deadline = time.monotonic() + RELEASE
    while True:
        hr, h, p = s.SCardConnect(ctx, READER0, EXCLUSIVE, T1)
        if hr != s.SCARD_E_SHARING_VIOLATION or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    ok(hr, "exclusive connect after the holder was killed")
    echo(h, p)


def test_process_exit_without_cleanup_releases_handles(daemon, card, peers):
    a = peers()
    for _ in range(5):
        peer_connect(a)
    assert daemon.reader_state(READER0).sharing == 5
    a.kill()
    raw.wait_for(lambda: daemon.reader_state(READER0).sharing == 0, RELEASE, what="handles released")


def test_reset_and_removal_warnings_across_processes(card, peers):
    a, b = peers(), peers()
    _, ha, pa = peer_connect(a)
    _, hb, pb = peer_connect(b)
    assert a.call("reconnect", ha, SHARED, T1, s.SCARD_RESET_CARD)["hr"] == 0
    r = b.call("transmit", hb, pb, echo_apdu(b"b").hex())
    assert r["hr"] == SCARD_W_RESET_CARD
    assert b.call("reconnect", hb, SHARED, T1, s.SCARD_LEAVE_CARD)["hr"] == 0
    assert b.call("transmit", hb, pb, echo_apdu(b"b").hex())["hr"] == 0
    card.remove()
    for peer, h, p in ((a, ha, pa), (b, hb, pb)):
        assert peer.call("transmit", h, p, echo_apdu(b"c").hex())["hr"] == 0x80100069
        assert peer.call("status", h)["hr"] == 0x80100069


def test_cancel_across_threads_of_a_peer(card, peers):
    a = peers()
    ctx = a.call("establish")["ctx"]
    r = a.call("gsc", ctx, 0, [[READER0, s.SCARD_STATE_UNAWARE]])
    cur = r["states"][0][1] & ~s.SCARD_STATE_CHANGED
    rid = a.start("gsc", ctx, 60000, [[READER0, cur]])
    assert a.pending(rid, BLOCK)
    assert a.call("cancel", ctx)["hr"] == 0
    assert a.result(rid, RELEASE)["hr"] == s.SCARD_E_CANCELLED
