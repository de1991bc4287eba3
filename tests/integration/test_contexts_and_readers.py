"""Contexts, reader lists and the reader-state array."""
import pcsc_raw as raw
from smartcard import scard as s

from conftest import READER0, READER1, VICC_ATR
from scard_util import expect, ok


def test_establish_release_isvalid(daemon):
    hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    ok(hr)
    ok(s.SCardIsValidContext(ctx))
    ok(s.SCardReleaseContext(ctx))
    expect(s.SCardIsValidContext(ctx), s.SCARD_E_INVALID_HANDLE)
    expect(s.SCardReleaseContext(ctx), s.SCARD_E_INVALID_HANDLE)


def test_scopes_user_terminal_system(daemon):
    for scope in (s.SCARD_SCOPE_USER, s.SCARD_SCOPE_TERMINAL, s.SCARD_SCOPE_SYSTEM):
        hr, ctx = s.SCardEstablishContext(scope)
        ok(hr, "scope %d" % scope)
        ok(s.SCardReleaseContext(ctx))


def test_invalid_scope_rejected_by_daemon(daemon):
    with daemon.raw() as c:
        c.version()
        rv, _ = c.establish(scope=7)
        assert rv == raw.SCARD_E_INVALID_VALUE, hex(rv)
        rv, ctx = c.establish(scope=0)  # connection still usable
        assert rv == 0


def test_many_contexts_are_distinct_and_usable(daemon, new_ctx):
    ctxs = [new_ctx() for _ in range(50)]
    assert len(set(ctxs)) == 50
    for ctx in ctxs[::7]:
        hr, readers = s.SCardListReaders(ctx, [])
        ok(hr)
        assert set(readers) == {READER0, READER1}


def test_list_readers(daemon, new_ctx):
    hr, readers = s.SCardListReaders(new_ctx(), [])
    ok(hr)
    assert sorted(readers) == [READER0, READER1]


def test_list_readers_on_released_context(daemon):
    hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    ok(hr)
    ok(s.SCardReleaseContext(ctx))
    hr, _ = s.SCardListReaders(ctx, [])
    expect(hr, s.SCARD_E_INVALID_HANDLE)


def test_no_daemon_gives_no_service(daemon):
    # a second process with a socket path where nothing listens
    import os
    import subprocess
    import sys
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(daemon.dir / "nobody.comm"))
    code = "from smartcard import scard as s; print(s.SCardEstablishContext(s.SCARD_SCOPE_USER)[0])"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert int(r.stdout.strip()) == s.SCARD_E_NO_SERVICE, r.stdout + r.stderr


def test_version_handshake_4_4(daemon):
    with daemon.raw() as c:
        major, minor, rv = c.version(4, 4)
        assert rv == 0
        assert major == 4 and minor >= 4


def test_readers_state_array_without_card(daemon):
    with daemon.raw() as c:
        c.version()
        c.send(raw.header(raw.CMD_GET_READERS_STATE, 0))
        blob = c.recv_exact(raw.READERS_ARRAY_SIZE)
        assert c.nothing_received(0.3), "exactly 16 x 184 bytes expected"
    states = {rs.name: rs for rs in raw.parse_readers(blob)}
    assert set(states) == {READER0, READER1}
    for rs in states.values():
        assert rs.state & raw.SCARD_ABSENT and not rs.state & raw.SCARD_PRESENT, rs
        assert rs.sharing == 0
        assert rs.atr == b""


def test_readers_state_array_with_card(daemon, card):
    rs = daemon.reader_state(READER0)
    assert rs.state & raw.SCARD_PRESENT, rs
    assert rs.atr == VICC_ATR
    assert rs.sharing == 0
    assert not daemon.reader_state(READER1).state & raw.SCARD_PRESENT


def test_event_counter_counts_insertions_and_removals(daemon):
    c = daemon.card(0)
    ev0 = daemon.reader_state(READER0).event_counter
    c.insert()
    ev1 = daemon.reader_state(READER0).event_counter
    c.remove()
    ev2 = daemon.reader_state(READER0).event_counter
    c.insert()
    ev3 = daemon.reader_state(READER0).event_counter
    assert (ev1 - ev0, ev2 - ev1, ev3 - ev2) == (1, 1, 1), (ev0, ev1, ev2, ev3)
    assert daemon.reader_state(READER1).event_counter == 0


def test_sharing_count_in_reader_state(daemon, card, new_ctx):
    h1, _ = connect_shared(new_ctx())
    assert daemon.reader_state(READER0).sharing == 1
    h2, _ = connect_shared(new_ctx())
    assert daemon.reader_state(READER0).sharing == 2
    ok(s.SCardDisconnect(h1, s.SCARD_LEAVE_CARD))
    ok(s.SCardDisconnect(h2, s.SCARD_LEAVE_CARD))
    assert daemon.reader_state(READER0).sharing == 0
    hr, h3, _ = s.SCardConnect(new_ctx(), READER0, s.SCARD_SHARE_EXCLUSIVE, s.SCARD_PROTOCOL_T1)
    ok(hr)
    assert daemon.reader_state(READER0).sharing == -1


def connect_shared(ctx):
    hr, h, p = s.SCardConnect(ctx, READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_T1)
    ok(hr)
    return h, p


def test_release_context_disconnects_its_handles(daemon, card, new_ctx):
    a = new_ctx()
    hr, h, _ = s.SCardConnect(a, READER0, s.SCARD_SHARE_EXCLUSIVE, s.SCARD_PROTOCOL_T1)
    ok(hr)
    b = new_ctx()
    hr, _, _ = s.SCardConnect(b, READER0, s.SCARD_SHARE_SHARED, s.SCARD_PROTOCOL_T1)
    expect(hr, s.SCARD_E_SHARING_VIOLATION)
    ok(s.SCardReleaseContext(a))
    hr, _, _ = s.SCardConnect(b, READER0, s.SCARD_SHARE_EXCLUSIVE, s.SCARD_PROTOCOL_T1)
    ok(hr, "exclusive connect after the holder's context was released")
