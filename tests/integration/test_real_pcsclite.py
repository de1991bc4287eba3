"""Real pcsc-lite releases against scardd and against our libpcsclite.

Peers (real_pcsclite.py runs them; tests/peers/build-pcsc-lite builds all
but Debian 12's own, each the newest release Debian's archive serves in its
protocol range, peers.json naming the version):
  debian   pcsc-lite 1.9.9, Debian 12's libpcsclite1 and pcscd  protocol 4:4
  pcsc44   pcsc-lite 1.8.24-2.2.x (1.9.9 today)                  protocol 4:4
  pcsc45   pcsc-lite 2.3-2.4.x (2.3.3 today)                     protocol 4:5
  pcsc46   pcsc-lite 2.5 on (2.5.2 today: sid's 2.5.3 is listed
           but gone from the pool)                               protocol 4:6
  pcsc43   pcsc-lite 1.8.9-1.8.23                                protocol 4:3
  pcsc42   pcsc-lite 1.8.4-1.8.8                                 protocol 4:2
pcsc43 and pcsc42 are optional: no suite that Debian's mirror serves here
lists such a release any more (the builder says what it searched), and
their tests skip with that account. The others fail the tests when they
cannot be had.

Each pairing runs the same operations with ifd-virtual readers: establish,
list readers, SCardGetStatusChange seeing a card inserted, connect (T=1),
two APDUs with checked answers, status. Against a real pcscd, the version our
library settled on is read from pcscd's debug log: it must be the daemon's
own (a 4:6 client falls back to 4:5 or 4:4 only when the daemon refuses
4:6, wire-protocol.md section 5).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_pcsclite import (DEBIAN_PCSCD, LABELS, OUR_LIBDIR, SCARD_STATE_CHANGED,  # noqa: E402
                           SCARD_STATE_EMPTY, SCARD_STATE_PRESENT, SCARD_STATE_UNAWARE, WAIT, basic_scenario, compat,
                           debian_libdir, hx, pcscd_daemon, peer_run, real_peers,  # noqa: F401 (fixtures)
                           scardd_daemon)
from virtual_env import SCARD  # noqa: E402

RELEASES = ("debian", "pcsc44", "pcsc45", "pcsc46", "pcsc43", "pcsc42")
RACE_ROUNDS = 300


def proto_of(ident):
    return LABELS[ident][3]


def client_libdir(peers, ident, run):
    return debian_libdir(run.dir) if ident == "debian" else peers.peer(ident).libdir


def pcscd_of(peers, ident):
    return DEBIAN_PCSCD if ident == "debian" else peers.peer(ident).pcscd


def check_mapped(libs, ident, libdir):
    """The client process really runs the library we meant."""
    if ident == "debian":
        assert libs == ["/usr/lib/x86_64-linux-gnu/libpcsclite.so.1.0.0"], libs
    elif ident == "ours":
        assert libs and all(str(Path(l).resolve()).startswith(str(Path(libdir).resolve())) for l in libs), libs
    else:
        # a built release: 2.x's redirector libpcsclite.so.1 dlopens
        # libpcsclite_real.so.1 beside it; 1.x has the one library
        want = sorted(p.name for p in Path(libdir).iterdir() if p.name.startswith("libpcsclite"))
        assert "libpcsclite.so.1" in want, want
        assert sorted(Path(l).name for l in libs) == want, libs
        assert all(Path(l).parent == Path(libdir).resolve() for l in libs), libs


def client_param(ident):
    return pytest.param(ident, id=ident, marks=compat(peer=LABELS[ident][0], role="client",
                                                      against="scardd", protocol=proto_of(ident)))


def daemon_param(ident):
    return pytest.param(ident, id=ident, marks=compat(peer=LABELS[ident][1], role="daemon",
                                                      against="our libpcsclite", protocol=proto_of(ident)))


def pair_param(client, daemon):
    return pytest.param(client, daemon, id="%s-%s" % (client, daemon), marks=compat(
        peer=LABELS[client][0], role="client", against=LABELS[daemon][2], protocol=proto_of(daemon)))


# --- real client libraries against scardd ----------------------------------------------
@pytest.mark.parametrize("ident", [client_param(i) for i in RELEASES])
def test_real_client_against_scardd(ident, real_peers, peer_run):
    readers = peer_run.readers().add("Virtual Reader", 2, {0: "builtin"})
    d = peer_run.daemon(scardd_daemon(readers, peer_run.dir))
    libdir = client_libdir(real_peers, ident, peer_run)
    c = peer_run.client(libdir, d.socket, "%s-client" % ident)
    seen = basic_scenario(c, readers, d)
    check_mapped(seen["libs"], ident, libdir)


@pytest.mark.parametrize("ident", [client_param(i) for i in RELEASES])
def test_real_client_reader_count_on_scardd(ident, real_peers, peer_run):
    """20 readers: a 4:6 client (2.5) lists all of them; 4:4 and 4:5 clients
    have 16-record arrays and list scardd's first 16, and wait on them."""
    readers = (peer_run.readers().add("Virtual Reader", 16, {0: "builtin"})
               .add("Extra Reader", 4, {}))
    d = peer_run.daemon(scardd_daemon(readers, peer_run.dir))
    c = peer_run.client(client_libdir(real_peers, ident, peer_run), d.socket, "%s-client" % ident)
    ctx = c.call("establish", 0)["ctx"]
    r = c.call("list_readers", ctx)
    assert r["hr"] == 0, hx(r["hr"])
    want = readers.names() if proto_of(ident) == "4:6" else readers.names()[:16]
    assert r["readers"] == want

    last = want[-1]
    r = c.call("gsc", ctx, 0, [[readers.reader(0), SCARD_STATE_UNAWARE], [last, SCARD_STATE_UNAWARE]])
    assert r["hr"] == 0, hx(r["hr"])
    assert r["states"][0][1] & SCARD_STATE_PRESENT, hx(r["states"][0][1])
    state = r["states"][1][1] & ~SCARD_STATE_CHANGED
    wait = c.start("gsc", ctx, int(WAIT * 1000), [[last, state]])
    assert c.result(wait, timeout=0.5) is None, "SCardGetStatusChange returned before the insertion"
    if last.startswith("Extra"):
        readers.insert(3, instance=1)
    else:
        readers.insert(15)
    r = c.result(wait, timeout=WAIT + 5)
    assert r is not None, "SCardGetStatusChange on %s did not return after the insertion" % last
    assert r["hr"] == 0, hx(r["hr"])
    assert r["states"][0][1] & SCARD_STATE_PRESENT, hx(r["states"][0][1])
    assert c.call("release", ctx)["hr"] == 0


# --- real daemons against our client library ----------------------------------------------
@pytest.mark.parametrize("ident", [daemon_param(i) for i in RELEASES])
def test_real_daemon_with_our_library(ident, real_peers, peer_run):
    label, proto = LABELS[ident][1], proto_of(ident)
    readers = peer_run.readers().add("Virtual Reader", 2, {0: "builtin"})
    d = peer_run.daemon(pcscd_daemon(pcscd_of(real_peers, ident), ident, readers, peer_run.dir,
                                     int(proto.split(":")[1])))
    mark = d.log_size()
    c = peer_run.client(OUR_LIBDIR, d.socket, "our-client")
    seen = basic_scenario(c, readers, d)
    check_mapped(seen["libs"], "ours", OUR_LIBDIR)
    accepted = d.accepted_versions(since=mark)
    assert accepted and set(accepted) == {proto}, \
        "%s (protocol %s) accepted our library's CMD_VERSION as %s" % (label, proto, accepted)


@pytest.mark.parametrize("ident", [daemon_param("pcsc46")])
def test_our_library_sees_every_reader_of_a_4_6_daemon(ident, real_peers, peer_run):
    """pcsc-lite 2.5 holds more than 16 readers; only a 4:6 client sees them
    all (0x16/0x17), and waits on one beyond the 16th."""
    readers = (peer_run.readers().add("Virtual Reader", 16, {0: "builtin"})
               .add("Extra Reader", 4, {}))
    d = peer_run.daemon(pcscd_daemon(real_peers.peer(ident).pcscd, ident, readers, peer_run.dir, 6))
    c = peer_run.client(OUR_LIBDIR, d.socket, "our-client")
    ctx = c.call("establish", 0)["ctx"]
    r = c.call("list_readers", ctx)
    assert r["hr"] == 0, hx(r["hr"])
    assert sorted(r["readers"]) == sorted(readers.names()), \
        "our library lists %d of the 2.5 daemon's %d readers" % (len(r["readers"]), len(readers.names()))
    last = readers.reader(3, instance=1)
    r = c.call("gsc", ctx, 0, [[last, SCARD_STATE_UNAWARE]])
    assert r["hr"] == 0, hx(r["hr"])
    wait = c.start("gsc", ctx, int(WAIT * 1000), [[last, r["states"][0][1] & ~SCARD_STATE_CHANGED]])
    # the card goes in once the wait is under way (an event during the
    # array fetch is the next test's business)
    assert c.result(wait, timeout=0.5) is None, "SCardGetStatusChange returned before the insertion"
    readers.insert(3, instance=1)
    r = c.result(wait, timeout=WAIT + 5)
    assert r is not None, "SCardGetStatusChange on %s did not return after the insertion" % last
    assert r["hr"] == 0 and r["states"][0][1] & SCARD_STATE_PRESENT, (hx(r["hr"]), r["states"])
    assert c.call("release", ctx)["hr"] == 0


@pytest.mark.parametrize("ident", [daemon_param("pcsc46")])
def test_our_library_survives_events_during_the_4_6_array_fetch(ident, real_peers, peer_run):
    """pcsc-lite 2.5 writes the 0x17 array record by record while its event
    thread may write a signal to the same socket. Cards go in and out while
    our library fetches 20 records after registering; every wait must end
    with the new state (pcsc-lite's own 2.5 client and our library before it
    took such signals out got SCARD_E_UNKNOWN_READER in about 1 of 20)."""
    readers = (peer_run.readers().add("Virtual Reader", 16, {0: "builtin"})
               .add("Extra Reader", 4, {}))
    d = peer_run.daemon(pcscd_daemon(real_peers.peer(ident).pcscd, ident, readers, peer_run.dir, 6))
    c = peer_run.client(OUR_LIBDIR, d.socket, "our-client")
    ctx = c.call("establish", 0)["ctx"]
    last = readers.reader(3, instance=1)
    wrong = []
    for i in range(RACE_ROUNDS):
        r = c.call("gsc", ctx, 0, [[last, SCARD_STATE_UNAWARE]])
        assert r["hr"] == 0, "round %d, unaware: %s" % (i, hx(r["hr"]))
        wait = c.start("gsc", ctx, int(WAIT * 1000), [[last, r["states"][0][1] & ~SCARD_STATE_CHANGED]])
        inserting = i % 2 == 0
        if inserting:
            readers.insert(3, instance=1)
        else:
            readers.remove(3, instance=1)
        r = c.result(wait, timeout=WAIT + 5)
        assert r is not None, "round %d: SCardGetStatusChange did not return" % i
        want = SCARD_STATE_PRESENT if inserting else SCARD_STATE_EMPTY
        if r["hr"] != 0 or not r["states"][0][1] & want:
            wrong.append((i, hx(r["hr"]), r["states"]))
    assert not wrong, "%d of %d waits went wrong: %s" % (len(wrong), RACE_ROUNDS, wrong[:5])
    assert c.call("release", ctx)["hr"] == 0


# --- reference: the same scenario between real releases -----------------------------------
@pytest.mark.parametrize("client,daemon", [pair_param("pcsc44", "pcsc44"), pair_param("pcsc45", "pcsc45"),
                                           pair_param("pcsc46", "pcsc46"), pair_param("pcsc46", "pcsc45"),
                                           pair_param("pcsc46", "debian")])
def test_real_releases_together(client, daemon, real_peers, peer_run):
    """The scenario and the harness, checked between real releases alone: a
    failure here is the harness's (or pcsc-lite's), not scardd's."""
    proto = proto_of(daemon)
    readers = peer_run.readers().add("Virtual Reader", 2, {0: "builtin"})
    d = peer_run.daemon(pcscd_daemon(pcscd_of(real_peers, daemon), daemon, readers, peer_run.dir,
                                     int(proto.split(":")[1])))
    mark = d.log_size()
    libdir = client_libdir(real_peers, client, peer_run)
    c = peer_run.client(libdir, d.socket, "%s-client" % client)
    seen = basic_scenario(c, readers, d)
    check_mapped(seen["libs"], client, libdir)
    assert set(d.accepted_versions(since=mark)) == {proto}


# --- what scardd says about them ----------------------------------------------------------
def test_scard_status_and_log_name_each_real_client_protocol(real_peers, peer_run):
    """Real clients of every required protocol connected at once: `scard
    status` lists each (by its pid) with the version it is served in and its
    reader arrays (Fedora's 48 records found by readers=auto), and scardd's
    debug log says the same on each client's CMD_VERSION line."""
    readers = peer_run.readers().add("Virtual Reader", 2, {0: "builtin"})
    d = peer_run.daemon(scardd_daemon(readers, peer_run.dir))
    want = {"debian": ("4:4", 16), "fedora48": ("4:4", 48), "pcsc45": ("4:5", 16),
            "pcsc46": ("4:6", "sized")}
    pids = {}
    for ident in want:
        libdir = client_libdir(real_peers, ident, peer_run)
        c = peer_run.client(libdir, d.socket, "%s-client" % ident)
        r = c.call("establish", 0)
        assert r["hr"] == 0, (ident, hx(r["hr"]))
        pids[ident] = c.proc.pid

    r = subprocess.run([str(SCARD), "--json", "status"], capture_output=True, text=True, timeout=WAIT,
                       env=dict(os.environ, PCSCLITE_CSOCK_NAME=d.socket))
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["scardd"]["pid"] == d.proc.pid
    listed = {c["pid"]: c for c in st["scardd"]["clients"]}
    log = d.log.read_text(errors="replace")
    for ident, (proto, arrays) in want.items():
        c = listed.get(pids[ident])
        assert c, "%s's client (pid %d) is not listed: %s" % (ident, pids[ident], st["scardd"]["clients"])
        assert (c["protocol"], c["arrays"], c["byte_order"], c["contexts"]) == \
            (proto, arrays, "little-endian", 1), (ident, c)
        served = re.escape(proto) + r", little-endian, " + (
            "reader arrays sized on request" if arrays == "sized" else "%d-record reader arrays" % arrays)
        assert re.search(r"client \d+ \(pid %d, uid \d+\): CMD_VERSION %s: served %s: SCARD_S_SUCCESS"
                         % (pids[ident], re.escape(proto), served), log), (ident, d.log_tail())
