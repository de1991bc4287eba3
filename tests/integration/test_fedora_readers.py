"""The Fedora failure, reproduced with real software, and scardd serving both
kinds of client at once.

Fedora builds pcsc-lite with PCSCLITE_MAX_READERS_CONTEXTS = 48 instead of
16 and keeps protocol 4:4, so its reader-state array is 48 x 184 bytes where
everyone else's is 16 x 184 (wire-protocol.md sections 4 and 9). Nothing in
the handshake tells the two apart:
  * a 48-entry client on a 16-entry pcscd waits for bytes that never come;
  * a 16-entry client on a 48-entry pcscd reads a third of the array and
    takes the rest for later answers.
The 48-entry release is built by tests/peers/build-pcsc-lite with Fedora's
change, from the newest 4:4 release Debian serves (1.9.9 today); the
16-entry one is Debian 12's own 1.9.9.

scardd serves each kind on its own socket (`--socket PATH:readers=N`, N the
records in the array sent to 4:2-4:5 clients).

The two reproductions check the precise way the pairing fails and then end
as an expected failure (pytest.xfail), so the compatibility matrix lists
those peer-vs-peer pairings as failing, with the reason; they fail outright
if the pairing ever stops failing that way.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_pcsclite import (BUILTIN_ATR, DEBIAN_PCSCD, LABELS, SCARD_STATE_CHANGED,  # noqa: E402
                           SCARD_STATE_EMPTY, SCARD_STATE_PRESENT, SCARD_STATE_UNAWARE, WAIT, compat,
                           debian_libdir, hx, pcscd_daemon, peer_run, real_peers,  # noqa: F401 (fixtures)
                           scardd_daemon)
from pcsc_raw import SCARD_E_UNKNOWN_READER  # noqa: E402

FEDORA_CLIENT = LABELS["fedora48"][0]
DEBIAN_CLIENT = LABELS["debian"][0]
BLOCKED = 5.0  # a call that has not answered after this long is taken as blocked
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E


def twenty_readers(run):
    """16 + 4 ifd-virtual readers: slots 16-19 hold the "Extra Reader"s."""
    return (run.readers().add("Virtual Reader", 16, {0: "builtin"})
            .add("Extra Reader", 4, {}))


# --- the failure between real builds -------------------------------------------------------
@compat(peer=FEDORA_CLIENT, role="client", against=LABELS["debian"][2], protocol="4:4")
def test_48_reader_client_blocks_on_16_reader_pcscd(real_peers, peer_run):
    readers = peer_run.readers().add("Virtual Reader", 2, {0: "builtin"})
    d = peer_run.daemon(pcscd_daemon(DEBIAN_PCSCD, "pcscd-1.9.9", readers, peer_run.dir, 4))
    c = peer_run.client(real_peers["fedora48"].libdir, d.socket, "fedora-client")
    r = c.call("establish", 0)
    assert r["hr"] == 0, "the handshake cannot tell the builds apart: %s" % hx(r["hr"])
    # SCardListReaders asks for the array: pcscd sends 2944 bytes, the client
    # waits for 8832 with no timeout
    pending = c.start("list_readers", r["ctx"])
    got = c.result(pending, timeout=BLOCKED)
    assert got is None or got["hr"] != 0 or got["readers"] != readers.names(), \
        "a 48-reader client listed the readers of a 16-reader pcscd correctly: %r" % got
    assert got is None, "expected SCardListReaders to block, it returned %r" % got
    # the client process is killed (SIGKILL) at teardown; pcscd must survive it
    assert d.alive()
    pytest.xfail("48-entry client, 16-entry pcscd: SCardListReaders blocks (expects 48 records, "
                 "16 sent)")


@pytest.mark.parametrize("count", [2, 20])
@compat(peer=DEBIAN_CLIENT, role="client", against=LABELS["fedora48"][2], protocol="4:4")
def test_16_reader_client_gets_garbage_from_48_reader_pcscd(count, real_peers, peer_run):
    if count == 2:
        readers = peer_run.readers().add("Virtual Reader", 2, {0: "builtin"})
    else:
        readers = twenty_readers(peer_run)
    d = peer_run.daemon(pcscd_daemon(real_peers["fedora48"].pcscd, "pcscd-fedora48", readers,
                                     peer_run.dir, 4))
    c = peer_run.client(debian_libdir(peer_run.dir), d.socket, "debian-client")
    r = c.call("establish", 0)
    assert r["hr"] == 0, "the handshake cannot tell the builds apart: %s" % hx(r["hr"])
    ctx = r["ctx"]
    want = readers.names()[:16]

    # pyscard's SCardListReaders calls the library twice (length, then the
    # names): the first call reads records 0-15, the second reads records
    # 16-31 from the rest of the same answer
    lst = c.result(c.start("list_readers", ctx), timeout=BLOCKED)
    assert lst is not None, "SCardListReaders blocked"
    assert not (lst["hr"] == 0 and lst["readers"] == want), \
        "a 16-reader client listed a 48-reader pcscd's readers correctly"
    if count == 2:
        # records 16-31 are empty: "no readers", with two readers present
        assert lst["hr"] == SCARD_E_NO_READERS_AVAILABLE, (hx(lst["hr"]), lst["readers"])
    else:
        # records 16-31 hold the four extra readers: only those are listed
        assert lst["hr"] == 0 and lst["readers"] == readers.names()[16:], (hx(lst["hr"]), lst["readers"])

    # the next answers are read from the leftovers too
    gsc = c.result(c.start("gsc", ctx, 0, [[readers.reader(0), SCARD_STATE_UNAWARE]]), timeout=BLOCKED)
    assert gsc is None or gsc["hr"] != 0 or not gsc["states"][0][1] & SCARD_STATE_PRESENT, \
        "SCardGetStatusChange saw reader 0's card correctly: %r" % gsc
    assert d.alive()
    pytest.xfail("16-entry client, 48-entry pcscd with %d readers: SCardListReaders answers %s "
                 "listing %d readers (%s), later calls read leftovers"
                 % (count, hx(lst["hr"]), len(lst["readers"]),
                    "records 17-32" if lst["readers"] else "no reader"))


@compat(peer=FEDORA_CLIENT, role="client", against=LABELS["fedora48"][2], protocol="4:4")
def test_48_reader_builds_agree(real_peers, peer_run):
    """Reference: the patched client and daemon together see all 20 readers."""
    readers = twenty_readers(peer_run)
    d = peer_run.daemon(pcscd_daemon(real_peers["fedora48"].pcscd, "pcscd-fedora48", readers,
                                     peer_run.dir, 4))
    c = peer_run.client(real_peers["fedora48"].libdir, d.socket, "fedora-client")
    ctx = c.call("establish", 0)["ctx"]
    r = c.call("list_readers", ctx)
    assert r["hr"] == 0 and sorted(r["readers"]) == sorted(readers.names()), (hx(r["hr"]), r["readers"])


# --- scardd: one socket per array size ---------------------------------------------------
def two_socket_scardd(run, readers):
    a = "%s/a.comm" % run.dir
    b = "%s/b.comm" % run.dir
    return run.daemon(scardd_daemon(readers, run.dir, sockets=[a + ":readers=16", b + ":readers=48"]))


def wait_insert(clients_ctx, reader, insert):
    """Each (client, ctx) waits on `reader` (empty); insert() puts a card in;
    every one of them must see it. Returns their final states."""
    waits = []
    for c, ctx in clients_ctx:
        r = c.call("gsc", ctx, 0, [[reader, SCARD_STATE_UNAWARE]])
        assert r["hr"] == 0, "%s: %s" % (c.name, hx(r["hr"]))
        state = r["states"][0][1]
        assert state & SCARD_STATE_EMPTY, "%s: %s" % (c.name, hx(state))
        waits.append((c, c.start("gsc", ctx, int(WAIT * 1000), [[reader, state & ~SCARD_STATE_CHANGED]])))
    for c, w in waits:
        assert c.result(w, timeout=0.3) is None, "%s: returned before the insertion" % c.name
    insert()
    out = []
    for c, w in waits:
        r = c.result(w, timeout=WAIT + 5)
        assert r is not None, "%s: no answer after the insertion" % c.name
        assert r["hr"] == 0, "%s: %s" % (c.name, hx(r["hr"]))
        _, ev, atr = r["states"][0]
        assert ev & SCARD_STATE_PRESENT and bytes.fromhex(atr) == BUILTIN_ATR, "%s: %s %s" % (c.name, hx(ev), atr)
        out.append(ev)
    return out


# Both clients run in every test below, which therefore stands for both
# pairings in the compatibility matrix (one run, two rows).
BOTH = pytest.mark.compat(role="client", against="scardd", protocol="4:4", order="little-endian",
                          word="64-bit", rows=[dict(peer=DEBIAN_CLIENT), dict(peer=FEDORA_CLIENT)])


@BOTH
def test_scardd_serves_16_and_48_reader_clients_at_once(real_peers, peer_run):
    readers = peer_run.readers().add("Virtual Reader", 2, {0: "builtin"})
    d = two_socket_scardd(peer_run, readers)
    deb = peer_run.client(debian_libdir(peer_run.dir), d.sockets[0], "debian-client")
    fed = peer_run.client(real_peers["fedora48"].libdir, d.sockets[1], "fedora-client")
    pairs = []
    for c in (deb, fed):
        r = c.call("establish", 0)
        assert r["hr"] == 0, "%s: %s" % (c.name, hx(r["hr"]))
        pairs.append((c, r["ctx"]))
        r = c.call("list_readers", pairs[-1][1], timeout=BLOCKED)
        assert r["hr"] == 0 and r["readers"] == readers.names(), (c.name, hx(r["hr"]), r["readers"])
    wait_insert(pairs, readers.reader(1), lambda: readers.insert(1))
    for c, ctx in pairs:  # still in step: the next answers are right too
        r = c.call("list_readers", ctx, timeout=BLOCKED)
        assert r["hr"] == 0 and r["readers"] == readers.names(), (c.name, hx(r["hr"]), r["readers"])
        assert c.call("release", ctx)["hr"] == 0


@BOTH
def test_16_reader_client_sees_scardds_first_16_readers(real_peers, peer_run):
    """20 readers: the 16-entry client sees the first 16 in scardd's order
    (configuration order) and nothing beyond; the 48-entry one sees all 20."""
    readers = twenty_readers(peer_run)
    d = two_socket_scardd(peer_run, readers)
    deb = peer_run.client(debian_libdir(peer_run.dir), d.sockets[0], "debian-client")
    fed = peer_run.client(real_peers["fedora48"].libdir, d.sockets[1], "fedora-client")
    dctx = deb.call("establish", 0)["ctx"]
    fctx = fed.call("establish", 0)["ctx"]

    r = deb.call("list_readers", dctx, timeout=BLOCKED)
    assert r["hr"] == 0 and r["readers"] == readers.names()[:16], (hx(r["hr"]), r["readers"])
    r = fed.call("list_readers", fctx, timeout=BLOCKED)
    assert r["hr"] == 0 and r["readers"] == readers.names(), (hx(r["hr"]), r["readers"])

    # the 16th reader: both see a card arrive
    wait_insert([(deb, dctx), (fed, fctx)], readers.reader(15), lambda: readers.insert(15))
    # the 20th: only the 48-entry client knows it
    extra = readers.reader(3, instance=1)
    r = deb.call("gsc", dctx, 0, [[extra, SCARD_STATE_UNAWARE]])
    assert r["hr"] == SCARD_E_UNKNOWN_READER, \
        "the 16-entry client knows reader 20: %s %r" % (hx(r["hr"]), r["states"])
    wait_insert([(fed, fctx)], extra, lambda: readers.insert(3, instance=1))
    for c, ctx in ((deb, dctx), (fed, fctx)):
        assert c.call("release", ctx)["hr"] == 0


# --- scardd: one socket, the length read from each client's own library ------------------
@BOTH
def test_default_socket_tells_16_and_48_reader_clients_apart(real_peers, peer_run):
    """With readers=auto (the default) scardd reads each 4:2-4:5 client's
    array length from the libpcsclite it has mapped: both kinds work on one
    socket, at once, with more readers than the smaller array holds."""
    readers = twenty_readers(peer_run)
    d = peer_run.daemon(scardd_daemon(readers, peer_run.dir))
    deb = peer_run.client(debian_libdir(peer_run.dir), d.sockets[0], "debian-client")
    fed = peer_run.client(real_peers["fedora48"].libdir, d.sockets[0], "fedora-client")
    dctx = deb.call("establish", 0)["ctx"]
    fctx = fed.call("establish", 0)["ctx"]
    # the library is read when the first array is sent, not at CMD_VERSION
    assert "its libpcsclite holds 48 readers" not in d.log.read_text(errors="replace")
    r = fed.call("list_readers", fctx, timeout=BLOCKED)
    assert r is not None, "the 48-entry client blocked: scardd sent it a 16-record array"
    assert r["hr"] == 0 and r["readers"] == readers.names(), (hx(r["hr"]), r["readers"])
    r = deb.call("list_readers", dctx, timeout=BLOCKED)
    assert r["hr"] == 0 and r["readers"] == readers.names()[:16], (hx(r["hr"]), r["readers"])
    assert "its libpcsclite holds 48 readers" in d.log.read_text(errors="replace")
    wait_insert([(deb, dctx), (fed, fctx)], readers.reader(15), lambda: readers.insert(15))
    for c, ctx in ((deb, dctx), (fed, fctx)):
        r = c.call("list_readers", ctx, timeout=BLOCKED)  # still in step
        assert r["hr"] == 0 and len(r["readers"]) == (16 if c is deb else 20), r
        assert c.call("release", ctx)["hr"] == 0


@compat(peer=DEBIAN_CLIENT, role="client", against="scardd", protocol="4:4")
def test_prefer_chooses_which_readers_an_old_client_sees(real_peers, peer_run):
    """prefer=GLOB on a socket puts the matching readers first in the arrays
    of its 4:2-4:5 clients: the 16-entry client then sees the four "Extra"
    readers and the first twelve others."""
    readers = twenty_readers(peer_run)
    sock = "%s/prefer.comm" % peer_run.dir
    d = peer_run.daemon(scardd_daemon(readers, peer_run.dir, sockets=[sock + ":prefer=Extra*"]))
    deb = peer_run.client(debian_libdir(peer_run.dir), d.sockets[0], "debian-client")
    ctx = deb.call("establish", 0)["ctx"]
    r = deb.call("list_readers", ctx, timeout=BLOCKED)
    names = readers.names()
    assert r["hr"] == 0 and r["readers"] == names[16:] + names[:12], (hx(r["hr"]), r["readers"])
    assert deb.call("release", ctx)["hr"] == 0
