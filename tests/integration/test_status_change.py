"""SCardGetStatusChange: snapshots, waits, event counters, cancel; and the
daemon's event registration (CMD_WAIT_READER_STATE_CHANGE) over a raw socket."""
import pcsc_raw as raw
from smartcard import scard as s

from conftest import READER0, READER1, VICC_ATR
from scard_util import WAIT_MS, Call, current_state, expect, gsc, ok

U = s.SCARD_STATE_UNAWARE
CHANGED, EMPTY, PRESENT = s.SCARD_STATE_CHANGED, s.SCARD_STATE_EMPTY, s.SCARD_STATE_PRESENT
INUSE, EXCLUSIVE_ST = s.SCARD_STATE_INUSE, s.SCARD_STATE_EXCLUSIVE
PNP = "\\\\?PnP?\\Notification"
BLOCK = 1.5
WAKE = 20


def counter(ev):
    return (ev >> 16) & 0xFFFF


def test_snapshot_unaware(daemon, new_ctx):
    daemon.card(0).insert()
    hr, st = gsc(new_ctx(), 0, [(READER0, U), (READER1, U)])
    ok(hr)
    ev0, atr0 = st[READER0]
    ev1, atr1 = st[READER1]
    assert ev0 & CHANGED and ev0 & PRESENT and not ev0 & EMPTY, hex(ev0)
    assert atr0 == VICC_ATR
    assert ev1 & CHANGED and ev1 & EMPTY and not ev1 & PRESENT, hex(ev1)
    assert atr1 == b""
    assert counter(ev0) == daemon.reader_state(READER0).event_counter
    assert counter(ev1) == daemon.reader_state(READER1).event_counter


def test_no_change_times_out(daemon, new_ctx):
    ctx = new_ctx()
    cur = current_state(ctx, READER0)
    hr, _ = gsc(ctx, 0, [(READER0, cur)])
    expect(hr, s.SCARD_E_TIMEOUT)
    hr, _ = gsc(ctx, 300, [(READER0, cur)])
    expect(hr, s.SCARD_E_TIMEOUT)


def test_unknown_reader(daemon, new_ctx):
    hr, _ = gsc(new_ctx(), 0, [("No Such Reader", U)])
    expect(hr, s.SCARD_E_UNKNOWN_READER)


def test_ignored_reader_returns_at_once(daemon, new_ctx):
    hr, _ = gsc(new_ctx(), WAIT_MS, [(READER0, s.SCARD_STATE_IGNORE)])
    ok(hr)


def test_pnp_notification_no_change(daemon, new_ctx):
    ctx = new_ctx()
    hr, st = gsc(ctx, 0, [(PNP, U)])
    expect(hr, s.SCARD_E_TIMEOUT)


def test_wait_wakes_on_insertion(daemon, new_ctx):
    ctx = new_ctx()
    cur = current_state(ctx, READER0)
    assert cur & EMPTY
    w = Call(gsc, ctx, WAIT_MS, [(READER0, cur)])
    assert w.blocked(BLOCK), "must wait while nothing changes"
    daemon.card(0).insert(wait=False)
    hr, st = w.get(WAKE)
    ok(hr)
    ev, atr = st[READER0]
    assert ev & CHANGED and ev & PRESENT, hex(ev)
    assert counter(ev) == counter(cur) + 1
    if atr:  # the card may be reported a moment before its ATR
        assert atr == VICC_ATR


def test_wait_wakes_on_removal(daemon, card, new_ctx):
    ctx = new_ctx()
    cur = current_state(ctx, READER0)
    assert cur & PRESENT
    w = Call(gsc, ctx, WAIT_MS, [(READER0, cur)])
    assert w.blocked(BLOCK)
    card.remove(wait=False)
    hr, st = w.get(WAKE)
    ok(hr)
    ev, atr = st[READER0]
    assert ev & CHANGED and ev & EMPTY and not ev & PRESENT, hex(ev)
    assert counter(ev) == counter(cur) + 1


def test_wait_on_two_readers_wakes_for_second(daemon, new_ctx):
    ctx = new_ctx()
    c0, c1 = current_state(ctx, READER0), current_state(ctx, READER1)
    w = Call(gsc, ctx, WAIT_MS, [(READER0, c0), (READER1, c1)])
    assert w.blocked(BLOCK)
    daemon.card(1).insert(wait=False)
    hr, st = w.get(WAKE)
    ok(hr)
    assert st[READER1][0] & CHANGED and st[READER1][0] & PRESENT
    assert not st[READER0][0] & CHANGED


def test_event_counter_in_upper_bits_tracks_changes(daemon, new_ctx):
    ctx = new_ctx()
    card = daemon.card(0)
    seen = [counter(current_state(ctx, READER0))]
    for _ in range(3):
        card.insert()
        seen.append(counter(current_state(ctx, READER0)))
        card.remove()
        seen.append(counter(current_state(ctx, READER0)))
    assert [b - a for a, b in zip(seen, seen[1:])] == [1] * 6, seen


def test_counter_mismatch_alone_reports_change(daemon, card, new_ctx):
    # a caller who missed a remove+insert sees the same state bits but a
    # different counter: that is a change
    ctx = new_ctx()
    cur = current_state(ctx, READER0)
    card.remove()
    card.insert()
    hr, st = gsc(ctx, 0, [(READER0, cur)])
    ok(hr)
    ev = st[READER0][0]
    assert ev & CHANGED and ev & PRESENT
    assert counter(ev) == counter(cur) + 2


def test_inuse_and_exclusive_bits(daemon, card, new_ctx):
    ctx = new_ctx()
    cur = current_state(ctx, READER0)
    assert not cur & (INUSE | EXCLUSIVE_ST)
    hr, h, p = s.SCardConnect(new_ctx(), READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_T1)
    ok(hr)
    # (Debian's libpcsclite does not flag an INUSE-only difference as
    # CHANGED, so look at fresh snapshots)
    ev = current_state(ctx, READER0)
    assert ev & INUSE and not ev & EXCLUSIVE_ST, hex(ev)
    ok(s.SCardDisconnect(h, s.SCARD_LEAVE_CARD))
    assert current_state(ctx, READER0) == cur, "back to the state before the connect"
    hr, h, p = s.SCardConnect(new_ctx(), READER0, s.SCARD_SHARE_EXCLUSIVE, s.SCARD_PROTOCOL_T1)
    ok(hr)
    ev = current_state(ctx, READER0)
    assert ev & EXCLUSIVE_ST and not ev & INUSE, hex(ev)
    assert counter(ev) == counter(cur), "sharing changes do not count as card events"


def test_cancel_wakes_waiter(daemon, new_ctx):
    ctx = new_ctx()
    cur = current_state(ctx, READER0)
    w = Call(gsc, ctx, WAIT_MS, [(READER0, cur)])
    assert w.blocked(BLOCK)
    ok(s.SCardCancel(ctx))
    hr, _ = w.get(WAKE)
    expect(hr, s.SCARD_E_CANCELLED)
    # the context is usable afterwards
    hr, _ = gsc(ctx, 0, [(READER0, cur)])
    expect(hr, s.SCARD_E_TIMEOUT)


def test_cancel_without_wait_is_harmless(daemon, new_ctx):
    ctx = new_ctx()
    ok(s.SCardCancel(ctx))
    hr, _ = gsc(ctx, 0, [(READER0, U)])
    ok(hr)


def test_cancel_only_its_own_context(daemon, new_ctx):
    a, b = new_ctx(), new_ctx()
    wa = Call(gsc, a, WAIT_MS, [(READER0, current_state(a, READER0))])
    wb = Call(gsc, b, WAIT_MS, [(READER0, current_state(b, READER0))])
    assert wa.blocked(BLOCK) and wb.blocked(0.1)
    ok(s.SCardCancel(a))
    expect(wa.get(WAKE)[0], s.SCARD_E_CANCELLED)
    assert wb.blocked(BLOCK), "the other context's wait must go on"
    daemon.card(0).insert(wait=False)
    ok(wb.get(WAKE)[0])


def test_many_waiters_in_one_process_all_woken(daemon, new_ctx):
    ctxs = [new_ctx() for _ in range(40)]
    curs = [current_state(c, READER1) for c in ctxs]
    ws = [Call(gsc, c, WAIT_MS, [(READER1, cur)]) for c, cur in zip(ctxs, curs)]
    assert all(w.blocked(0.05) for w in ws[-1:]) and ws[0].blocked(BLOCK)
    daemon.card(1).insert(wait=False)
    for w in ws:
        hr, st = w.get(WAKE)
        ok(hr)
        assert st[READER1][0] & PRESENT


# --- the same over the raw protocol ------------------------------------------------------
def test_raw_wait_registration_and_event(daemon):
    with daemon.raw() as c:
        c.hello()
        snap = {rs.name: rs for rs in c.wait_reader_state_change()}
        assert set(snap) == {READER0, READER1}
        assert c.nothing_received(0.5), "no event yet"
        daemon.card(0).insert(wait=False)
        assert c.recv_event(timeout=WAKE) == 0
        # one-shot: re-register to get the new state
        snap = {rs.name: rs for rs in c.wait_reader_state_change()}
        assert snap[READER0].present
        c.stop_waiting()
        rv = struct_rv(c.recv_exact(8))
        assert rv == 0


def struct_rv(b):
    import struct
    return struct.unpack("<II", b)[1]


def test_raw_cancel_as_first_message_on_fresh_connection(daemon):
    with daemon.raw() as waiter:
        ctx = waiter.hello()
        waiter.wait_reader_state_change()
        # what SCardCancel does: a new connection, no CMD_VERSION, one CANCEL
        with daemon.raw() as canceller:
            assert canceller.cancel(ctx) == 0
        assert waiter.recv_event(timeout=WAKE) == raw.SCARD_E_CANCELLED
        # the waiter's connection goes on working
        assert {rs.name for rs in waiter.readers_state()} == {READER0, READER1}


def test_raw_cancel_unknown_context(daemon):
    with daemon.raw() as c:
        assert c.cancel(0x7ABCDEF1) == raw.SCARD_E_INVALID_HANDLE


def test_raw_cancel_not_waiting(daemon):
    # 2.4.1 answers SUCCESS, 1.9.9 INVALID_HANDLE (it only looks among
    # waiting contexts); libpcsclite never sends this case. Either way: no
    # signal to the target and its connection stays in step.
    with daemon.raw() as a, daemon.raw() as b:
        ctx = a.hello()
        assert b.cancel(ctx) in (0, raw.SCARD_E_INVALID_HANDLE)
        assert a.nothing_received(0.3), "no signal for a context that was not waiting"
        assert len(a.readers_state()) == 2


def test_raw_stop_waiting_when_not_registered_sends_nothing(daemon):
    with daemon.raw() as c:
        c.hello()
        c.stop_waiting()
        assert c.nothing_received(0.5)
        assert len(c.readers_state()) == 2, "connection still in step"
