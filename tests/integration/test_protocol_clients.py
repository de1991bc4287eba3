"""Every pcsc-lite protocol version, in both byte orders, against scardd.

Raw-socket clients (proto_client.py) speak 4:2 with 100-byte names, 4:2,
4:3, 4:4, 4:5 and 4:6 exactly as the pcsc-lite releases of that version do
(shared/docs/wire-protocol.md), against scardd serving ifd-virtual readers:
the handshake, the reader-state array (0x12, or 0x16 then 0x17), the WAIT/STOP
rules of each version, card events and cancel signals, 0x15, and a card
session with a checked APDU answer. Also: all versions at once on one daemon,
a future minor, refused versions, per-socket array sizes and names=100.

No timing is asserted; every wait is bounded. Daemons are started with
conftest.spawn and stopped by PID.
"""
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import conftest  # noqa: E402
from conftest import spawn, stop_process  # noqa: E402
from proto_client import (  # noqa: E402
    ORDER_LABEL, SCARD_ABSENT, SCARD_E_SERVICE_STOPPED, SCARD_PROTOCOL_T1, VERSIONS, WAIT,
    ProtoClient, Target, check_snapshot, check_stop_unregistered, check_wait_now, fetch_after_wait,
    hx, names, run_session, wait_for)
from fault_driver import LogFile  # noqa: E402
from scardd_argv import scardd_argv  # noqa: E402
from virtual_env import control_command, reader_stanza, virtual_conf  # noqa: E402

pytestmark = pytest.mark.skipif(conftest.IS_PCSCD, reason="scardd-only: protocol peers for scardd")

BUILD = conftest.scardd_binary().parents[2]
SCARDD = conftest.scardd_binary()
VIRTUAL = BUILD / "src" / "drivers" / "virtual" / "libifd-virtual.so"
FAULT = BUILD / "tests" / "drivers" / "libifd_fault.so"
BUILTIN_ATR = bytes.fromhex("3B88800176636172642D303147")
SELECT_AID = bytes.fromhex("00A4040C07F0736361726464")  # the demo DF, no answer data
READ_EF1 = bytes.fromhex("00B0810000")                   # READ BINARY SFI 1, Le 00
EF1 = b"Hello from ifd-virtual"

ALL = ["4:2-short", "4:2", "4:3", "4:4", "4:5", "4:6"]
ON_128 = ["4:2", "4:3", "4:4", "4:5", "4:6"]


def compat(version, order, peer=None, against="scardd", protocol=None):
    v = VERSIONS[version] if version in VERSIONS else None
    return pytest.mark.compat(
        peer=peer or "raw client %s (proto_client.py)" % (v.label if v else version),
        role="client", against=against, protocol=protocol or (v.label if v else version),
        order=ORDER_LABEL[order], word="64-bit")


def vo_params(versions, orders=("little", "big")):
    return [pytest.param(v, o, id="%s-%s" % (v, o), marks=compat(v, o))
            for v in versions for o in orders]


# --- scardd with ifd-virtual (or fault) readers ------------------------------------
class Scardd(Target, LogFile):
    """scardd with one or more reader stanzas and one or more sockets.

    instances: [{"friendly": str, "readers": n, "cards": {slot: "builtin"}}] for
    ifd-virtual, or {"fault": dir, "friendly": str, "lib": path} for the fault driver.
    sockets: [(file name, options or None)], e.g. ("a.comm", "readers=16").
    """

    def __init__(self, root, instances, sockets=(("pcscd.comm", None),), wait_names=None):
        self.dir = Path(tempfile.mkdtemp(prefix="proto-", dir=root))
        self.instances = []
        stanzas = []
        for i, inst in enumerate(instances):
            inst = dict(inst)
            if "fault" in inst:
                stanzas.append(reader_stanza(inst["friendly"], inst["fault"], inst.get("lib", FAULT),
                                             channel=0))
            else:
                conf = self.dir / ("virtual%d.conf" % i)
                inst["control"] = str(self.dir / ("ctl%d.sock" % i))
                conf.write_text(virtual_conf(inst["readers"], inst["control"],
                                             dict(sorted(inst.get("cards", {}).items()))))
                stanzas.append(reader_stanza(inst["friendly"], conf, VIRTUAL))
            self.instances.append(inst)
        self.confdir = self.dir / "reader.conf.d"
        self.confdir.mkdir()
        (self.confdir / "readers").write_text("\n".join(stanzas))  # one file: configuration order
        self.sockets = []
        for name, opts in sockets:
            path = str(self.dir / name)
            o = dict(kv.split("=", 1) for kv in opts.split(",")) if opts else {}
            self.sockets.append({"path": path, "arg": path + (":" + opts if opts else ""),
                                 "readers": int(o.get("readers", 16)),
                                 "names": int(o.get("names", 128))})
        self.wait_names = wait_names
        self.log_path = self.dir / "scardd.log"
        self.proc = None
        self.names = []

    @property
    def total(self):
        return sum(i.get("readers", 1) for i in self.instances)

    def argv(self):
        socket_args = [a for s in self.sockets for a in ("--socket", s["arg"])]
        return scardd_argv(SCARDD, "--foreground", "--debug", "--config-dir", self.confdir, *socket_args)

    def start(self):
        if not SCARDD.exists():
            pytest.fail("scardd not built: %s missing" % SCARDD, pytrace=False)
        with open(self.log_path, "ab") as logf:
            self.proc = spawn(self.argv(), stdout=logf, stderr=subprocess.STDOUT)
        probe = self.probe_socket()
        want = self.wait_names if self.wait_names is not None else min(self.total, probe["readers"])

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("scardd exited %s; log:\n%s" % (self.proc.returncode, self.log_tail()))
            for s in self.sockets:
                if s["arg"] != s["path"] and os.path.exists(s["arg"]):
                    raise RuntimeError("scardd bound %r as a path: it does not know socket options "
                                       "(readers=, names=)" % s["arg"])
            if not all(os.path.exists(s["path"]) for s in self.sockets):
                return False
            with self.client("4:4", socket=probe) as c:
                c.version()
                got = c.readers_state()
            used = [r for r in got if r.name]
            if len(used) < want:
                return False
            for inst in self.instances:
                for slot in inst.get("cards", {}):
                    r = [x for x in used if x.name.startswith(inst["friendly"] + " ")
                         and x.name.endswith(" %02X" % slot)]
                    if r and not (r[0].present and r[0].atr):
                        return False
            return got
        failure = None
        try:
            got = wait_for(ready, 30, what="scardd ready with %d readers" % want, interval=0.1)
        except (TimeoutError, RuntimeError) as e:
            failure = str(e)
        if failure:
            self.stop()
            pytest.fail("%s\nlog:\n%s" % (failure, self.log_tail()), pytrace=False)
        self.names = names(got)
        return self

    def probe_socket(self):
        plain = [s for s in self.sockets if s["names"] == 128]
        return max(plain, key=lambda s: s["readers"])

    def sock(self, socket):
        if isinstance(socket, dict):
            return socket
        return self.sockets[socket]

    def client(self, version="4:4", order="little", socket=0, **kw):
        s = self.sock(socket)
        kw.setdefault("readers", s["readers"])
        return ProtoClient(s["path"], version, order, **kw)

    def reader(self, slot, instance=0):
        prefix = self.instances[instance]["friendly"] + " "
        mine = [n for n in self.names if n.startswith(prefix)]
        return [n for n in mine if n.endswith(" %02X" % slot)][0]

    # -- run_session's view (proto_client.Target) --
    atr = BUILTIN_ATR
    apdus = ((SELECT_AID, b"\x90\x00"), (READ_EF1, EF1 + b"\x90\x00"))

    def insert(self, slot):
        self.ctl("insert %d builtin" % slot)

    # -- the driver's control channel --
    def ctl(self, line, instance=0):
        return control_command(self.instances[instance]["control"], line, check=True)

    def card_state(self, slot, instance=0):
        name = self.reader(slot, instance)
        with self.client("4:4", socket=self.probe_socket()) as c:
            c.version()
            for r in c.readers_state():
                if r.name == name:
                    return r
        raise KeyError(name)

    def wait_card(self, slot, present, instance=0):
        def check():
            r = self.card_state(slot, instance)
            return (r.present and r.atr) if present else (r.state & SCARD_ABSENT)
        wait_for(check, WAIT, what="card %s in reader %d" % ("present" if present else "absent", slot))

    def set_cards(self, cards, instance=0):
        """cards: {slot: True/False}; changes only what differs, then waits
        until scardd shows it."""
        for slot, want in cards.items():
            have = "card=present" in self.ctl("status %d" % slot, instance)
            if want and not have:
                self.ctl("insert %d builtin" % slot, instance)
            elif have and not want:
                self.ctl("remove %d" % slot, instance)
        for slot, want in cards.items():
            self.wait_card(slot, want, instance)

    # -- life cycle (log() and log_tail() are LogFile's) --
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return None
        crashed = self.proc.poll() is not None
        rc = stop_process(self.proc, signal.SIGTERM, timeout=20)
        self.proc = None
        return ("crashed" if crashed else None), rc


class Rig:
    """The daemons of one test (or module), all under root; close() stops
    them by PID and removes root if it made it."""

    def __init__(self, root=None):
        self.own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="rig-", dir=conftest.SESSION_TMP))
        self.daemons = []

    def scardd(self, instances, sockets=(("pcscd.comm", None),), **kw):
        d = Scardd(self.root, instances, sockets, **kw)
        self.daemons.append(d)
        return d.start()

    def close(self):
        problems = []
        for d in self.daemons:
            r = d.stop()
            if r and (r[0] or r[1] != 0):
                problems.append("scardd %s (exit %s); log tail:\n%s" % (r[0] or "exit", r[1], d.log_tail()))
        if self.own_root and not os.environ.get("SCARDD_TEST_KEEP_TMP"):
            shutil.rmtree(self.root, ignore_errors=True)
        return problems


@pytest.fixture
def rig(test_dir):
    r = Rig(test_dir)  # conftest's test_dir: kept with SCARDD_TEST_LOGS, then removed
    yield r
    problems = r.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


TWO_READERS = [{"friendly": "Virtual Reader", "readers": 2, "cards": {0: "builtin"}}]


@pytest.fixture(scope="module")
def shared():
    """One scardd for the per-version sessions: two ifd-virtual readers, the
    built-in card in the first."""
    r = Rig()
    try:
        yield r.scardd(TWO_READERS)
    finally:
        problems = r.close()
        if problems:
            raise AssertionError("\n".join(problems))


@pytest.fixture
def d(shared):
    if not shared.alive():
        pytest.fail("the shared scardd died; log tail:\n%s" % shared.log_tail(), pytrace=False)
    shared.set_cards({0: True, 1: False})
    return shared


# --- the per-version session (proto_client.run_session) ---------------------------
@pytest.mark.parametrize("version,order", vo_params(ON_128))
def test_version_session(d, version, order):
    """One client of the version: handshake, array, WAIT/STOP, insertion and
    cancel signals, 0x15, connect/transmit/status/disconnect, release."""
    run_session(d, version, order)


@pytest.mark.parametrize("order", [pytest.param(o, id=o, marks=compat("4:2-short", o))
                                   for o in ("little", "big")])
def test_short_names_socket(rig, order):
    """pcsc-lite <= 1.8.3 (4:2, 100-byte names, 156-byte records, 124-byte
    CONNECT) is served on a socket declared names=100."""
    d = rig.scardd(TWO_READERS, sockets=[("pcscd.comm", None), ("short.comm", "names=100")])
    run_session(d, "4:2-short", order, socket=1)


@pytest.mark.parametrize("order", [pytest.param(o, id=o, marks=compat("4:6", o))
                                   for o in ("little", "big")])
def test_4_6_signal_held_until_array_sent(d, order):
    """A card event between a 4:6 client's 0x13 and its 0x17 does not land in
    the 0x16 answer: it follows the 0x17 answer."""
    r1 = d.reader(1)
    with d.client("4:6", order) as c:
        c.hello()
        c.wait()
        assert c.nothing_received()
        d.ctl("insert 1 builtin")
        d.wait_card(1, True)  # the event has happened
        n = c.state_size()
        assert n >= 16 and n % 16 == 0, "0x16 answered %d (a signal in its place?)" % n
        recs = c.state_array(n)
        assert [r for r in recs if r.name == r1][0].present
        assert c.recv_signal(WAIT) == (0, 0)
        c.stop()
        assert c.nothing_received()


@pytest.mark.compat(peer="raw clients 4:2 to 4:6, both byte orders, at once (proto_client.py)",
                    role="client", against="scardd", protocol="4:2 - 4:6",
                    order="little- and big-endian", word="64-bit")
def test_all_versions_interleaved(d):
    """One connection per version and byte order on one daemon; every request
    is sent on all connections before any answer is read."""
    r0, r1 = d.reader(0), d.reader(1)
    cs = [d.client(v, o) for v in ON_128 for o in ("little", "big")]
    try:
        for c in cs:
            c.send(c.message(0x11, c.v.major, c.v.minor, 0))
        for c in cs:
            major, minor, rv = struct.unpack(c.fmt(0x11), c.recv_exact(12))
            assert (major, minor, rv) == (c.v.major, c.v.minor, 0), (c, major, minor, hx(rv))
        ctxs = {}
        for c in cs:
            c.send(c.message(0x01, 0, 0, 0))
        for c in cs:
            _, ctx, rv = struct.unpack(c.fmt(0x01), c.recv_exact(12))
            assert rv == 0
            ctxs[c] = ctx
        for c in cs:
            recs = check_snapshot(c)
            assert r0 in names(recs) and r1 in names(recs)
            if c.v.events:
                ev, rv = c.reader_events()
                assert rv == 0 and ev >= 1
        for c in cs:
            check_wait_now(c)
        d.ctl("insert 1 builtin")
        for c in cs:
            assert c.recv_signal(WAIT) == (0, 0), c
        d.wait_card(1, True)
        for c in cs:
            check_stop_unregistered(c)
        cards = {}
        for c in cs:
            rv, h, proto = c.connect(ctxs[c], r0 if cs.index(c) % 2 else r1)
            assert rv == 0 and proto == SCARD_PROTOCOL_T1, (c, hx(rv))
            cards[c] = h
        for _ in range(3):
            for c in cs:
                c.send(c.message(0x09, cards[c], SCARD_PROTOCOL_T1, 16, len(SELECT_AID), 0, 16,
                                 65548, 0) + SELECT_AID)
            for c in cs:
                r = struct.unpack(c.fmt(0x09), c.recv_exact(32))
                assert r[7] == 0, (c, hx(r[7]))
                assert c.recv_exact(r[6]) == b"\x90\x00"
            for c in cs:
                assert c.transmit(cards[c], READ_EF1) == (0, EF1 + b"\x90\x00"), c
        for c in cs:
            assert c.status(cards[c]) == 0
            assert c.disconnect(cards[c]) == 0
        for c in cs:
            assert c.release(ctxs[c]) == 0
            assert c.nothing_received(0.1), c
    finally:
        for c in cs:
            c.close()


@pytest.mark.parametrize("order", [pytest.param(o, id=o, marks=compat(
    "4:7", o, peer="raw client 4:7, a future minor (proto_client.py)", protocol="4:7"))
    for o in ("little", "big")])
def test_future_minor_served_as_4_6(d, order):
    r1 = d.reader(1)
    with d.client("4:6", order) as c:
        assert c.version(4, 7) == (4, 6, 0)
        rv, ctx = c.establish()
        assert rv == 0
        n = c.state_size()
        assert n >= 16 and n % 16 == 0, n
        assert r1 in names(c.state_array(n))
        assert c.nothing_received()
        check_wait_now(c)  # nothing at once, then 0x16/0x17
        d.ctl("insert 1 builtin")
        assert c.recv_signal(WAIT) == (0, 0)
        check_stop_unregistered(c)
        assert c.release(ctx) == 0


def exe_names():
    exe = os.path.realpath("/proc/self/exe")
    comm = Path("/proc/self/comm").read_text().strip()
    return {exe, os.path.basename(exe), comm}


def version_re(major, minor):
    return re.compile(r"(?<![\d:.])%d[:.]%d(?![\d:.])" % (major, minor))


@pytest.mark.parametrize("major,minor,order", [
    pytest.param(mj, mn, o, id="%d:%d-%s" % (mj, mn, o),
                 marks=compat("%d:%d" % (mj, mn), o, peer="raw client %d:%d, refused (proto_client.py)"
                              % (mj, mn), protocol="%d:%d" % (mj, mn)))
    for (mj, mn) in ((5, 0), (3, 9), (4, 0), (4, 1)) for o in ("little", "big")])
def test_unknown_version_refused(d, major, minor, order):
    """SERVICE_STOPPED with scardd's own 4:6 in the reply; the connection stays
    open and served; one log line names the peer (pid, uid, executable) and
    both versions."""
    start = len(d.log())
    with d.client("4:4", order) as c:
        assert c.version(major, minor) == (4, 6, SCARD_E_SERVICE_STOPPED)
        rv, ctx = c.establish()  # still open, still served
        assert rv == 0, hx(rv)
        assert c.release(ctx) == 0
    mine, want = version_re(major, minor), version_re(4, 6)
    pid = re.compile(r"(?<!\d)%d(?!\d)" % os.getpid())

    def lines():
        new = d.log()[start:].splitlines()
        return [ln for ln in new if pid.search(ln) and mine.search(ln) and want.search(ln)]
    try:
        got = wait_for(lines, 5, what="the refusal's log line")
    except TimeoutError:
        pytest.fail("no log line with pid %d, %d:%d and 4:6; new log:\n%s"
                    % (os.getpid(), major, minor, d.log()[start:][-3000:]), pytrace=False)
    assert len(got) == 1, got
    line = got[0]
    assert re.search(r"uid\D{0,3}%d(?!\d)" % os.getuid(), line), "uid missing: " + line
    assert any(e in line for e in exe_names()), "executable (%s) missing: %s" % (exe_names(), line)


# --- per-socket array sizes ------------------------------------------------------
SIZED = [("a.comm", "readers=16"), ("b.comm", "readers=48")]


@pytest.mark.parametrize("order", [pytest.param(o, id=o, marks=compat(
    "4:4", o, peer="raw clients 4:2 to 4:6 on sockets readers=16 and readers=48 (proto_client.py)",
    protocol="4:2 - 4:6")) for o in ("little", "big")])
def test_per_socket_array_size(rig, order):
    d = rig.scardd(TWO_READERS, sockets=SIZED)
    r0 = d.reader(0)
    for sock, k in ((0, 16), (1, 48)):
        for version in ("4:2", "4:3", "4:4", "4:5"):
            with d.client(version, order, sock) as c:
                c.hello()
                recs = c.readers_state()
                assert len(recs) == k and c.nothing_received(), (c, len(recs), c.pending_bytes()[:32])
                assert r0 in names(recs)
                if c.v.wait_array:
                    assert len(c.wait()) == k and c.nothing_received(), c
                    c.stop()
                    assert c.recv_signal(WAIT)[1] == 0
        with d.client("4:6", order, sock) as c:
            c.hello()
            n = c.state_size()
            assert n >= 16 and n % 16 == 0, n
            recs = c.state_array(n)
            assert len(recs) == n and c.nothing_received(), (n, c.pending_bytes()[:32])
            assert r0 in names(recs)
            assert c.state_size() == n  # never shrinks; nothing changed


@pytest.mark.compat(peer="raw clients 4:4 and 4:6, 20 readers, sockets readers=16 and readers=48 "
                    "(proto_client.py)", role="client", against="scardd", protocol="4:4, 4:6",
                    order="little-endian", word="64-bit")
def test_more_readers_than_the_array(rig):
    """20 readers: a 16-record client sees the first 16 in configuration order,
    a 48-record client all 20, a 4:6 client all 20 in N >= 20 records."""
    d = rig.scardd([{"friendly": "Alpha", "readers": 16, "cards": {0: "builtin"}},
                    {"friendly": "Beta", "readers": 4}], sockets=SIZED, wait_names=20)
    with d.client("4:4", "little", 1) as c:
        c.hello()
        big = c.readers_state()
        assert len(big) == 48
        order20 = names(big)
        assert len(order20) == 20, order20
        assert [n.split()[0] for n in order20] == ["Alpha"] * 16 + ["Beta"] * 4, order20
        assert [n.split()[-1] for n in order20] == ["%02X" % i for i in range(16)] + \
            ["%02X" % i for i in range(4)], order20
    with d.client("4:4", "little", 0) as c:
        c.hello()
        small = c.readers_state()
        assert [r.name for r in small] == order20[:16]
        assert [r.name for r in c.wait()] == order20[:16]
        c.stop()
        assert c.recv_signal(WAIT)[1] == 0
    for sock in (0, 1):
        with d.client("4:6", "little", sock) as c:
            c.hello()
            n = c.state_size()
            assert n >= 20 and n % 16 == 0, n
            recs = c.state_array(n)
            assert len(recs) == n and c.nothing_received()
            assert names(recs) == order20


# --- 0x15 and 0x16 when a reader appears while scardd serves -------------------------
@pytest.mark.parametrize("version", [pytest.param(v, id=v, marks=compat(v, "little"))
                                     for v in ("4:5", "4:6")])
def test_reader_added_at_run_time(rig, version):
    """A reader whose driver finishes opening after scardd started serving
    (fault driver, hang_open): the registered client is signalled, 0x15 grows,
    0x16 never shrinks and 0x17 shows the reader."""
    if not FAULT.exists():
        pytest.skip("not-built: fault driver %s missing" % FAULT)
    quick = Path(tempfile.mkdtemp(prefix="quick-", dir=rig.root))
    late = Path(tempfile.mkdtemp(prefix="late-", dir=rig.root))
    (quick / "card0").write_text("")
    (late / "card0").write_text("")
    shutil.copy(FAULT, late / "libifd_fault_copy.so")  # its own library: opens on its own
    (late / "hang_open").touch()
    try:
        d = rig.scardd([{"fault": quick, "friendly": "Quick", "readers": 1},
                        {"fault": late, "friendly": "Late", "readers": 1,
                         "lib": late / "libifd_fault_copy.so"}], wait_names=1)
        with d.client(version) as c, d.client("4:4") as w:
            c.hello()
            w.hello()
            ev1, rv = c.reader_events()
            assert rv == 0 and ev1 >= 1
            assert not any(n.startswith("Late ") for n in names(c.snapshot()))
            n1 = c.state_size() if c.v.sized_array else None
            check_wait_now(c)
            (late / "hang_open").unlink()
            assert c.recv_signal(WAIT) == (0, 0)
            wait_for(lambda: any(n.startswith("Late ") for n in names(w.readers_state())), WAIT,
                     what="the late reader")
            ev2, rv = c.reader_events()
            assert rv == 0 and ev2 > ev1, (ev1, ev2)
            if c.v.sized_array:
                n2 = c.state_size()
                assert n2 >= n1 and n2 % 16 == 0, (n1, n2)
                recs = c.state_array(n2)
                assert any(n.startswith("Late ") for n in names(recs))
            assert c.nothing_received()
    finally:
        (late / "hang_open").unlink(missing_ok=True)


@pytest.mark.parametrize("order", [pytest.param(o, id=o, marks=compat("4:6", o))
                                   for o in ("little", "big")])
def test_4_6_capacity_grows_and_0x17_follows_0x16(rig, order):
    """16 readers, then 8 more appear while scardd serves: 0x16 grows from 16
    to 32 (never below what it said), and 0x17 sends exactly what this
    connection was last told by 0x16, however the capacity changed since."""
    if not FAULT.exists():
        pytest.skip("not-built: fault driver %s missing" % FAULT)
    dirs = {}
    for name in ("q1", "q2", "late"):
        dirs[name] = Path(tempfile.mkdtemp(prefix=name + "-", dir=rig.root))
        (dirs[name] / "slots").write_text("8\n")
    lib = dirs["late"] / "libifd_fault_copy.so"
    shutil.copy(FAULT, lib)
    (dirs["late"] / "hang_open").touch()
    try:
        d = rig.scardd([{"fault": dirs["q1"], "friendly": "Q1", "readers": 8},
                        {"fault": dirs["q2"], "friendly": "Q2", "readers": 8},
                        {"fault": dirs["late"], "friendly": "Late", "readers": 8, "lib": lib}],
                       wait_names=16)
        with d.client("4:6", order) as a, d.client("4:6", order) as b, d.client("4:4", order) as old:
            for c in (a, b, old):
                c.hello()
            n1 = a.state_size()
            assert n1 >= 16 and n1 % 16 == 0, n1
            first16 = names(a.state_array(n1))
            assert len(first16) == 16, first16
            ev1, _ = a.reader_events()
            b.wait()
            fetch_after_wait(b)
            (dirs["late"] / "hang_open").unlink()
            assert b.recv_signal(WAIT) == (0, 0)

            seen = {}

            def grown():
                n = b.state_size()
                recs = b.state_array(n)
                seen.update(n=n, used=len(names(recs)))
                return (n, recs) if len(names(recs)) == 24 else None
            got = None
            try:
                got = wait_for(grown, WAIT, what="24 readers on 0x17")
            except TimeoutError:
                pass
            if got is None:
                added = [ln for ln in d.log().splitlines() if "reader added: Late" in ln]
                pytest.fail("0x16/0x17 never showed 24 readers: last 0x16 answer %s with %s used "
                            "records; scardd logged %d 'reader added: Late' lines"
                            % (seen.get("n"), seen.get("used"), len(added)), pytrace=False)
            n2, recs = got
            assert n2 >= 24 and n2 >= n1 and n2 % 16 == 0, (n1, n2)
            assert names(recs)[:16] == first16, names(recs)
            # a was told n1 and has not asked again: exactly n1 records
            again = a.state_array(n1)
            assert len(again) == n1 and a.nothing_received(), (n1, a.pending_bytes()[:32])
            assert names(again) == names(recs[:n1])
            assert a.state_size() == n2
            assert len(a.state_array(n2)) == n2 and a.nothing_received()
            ev2, _ = a.reader_events()
            assert ev2 > ev1
            # a 16-record client still sees the first 16, in configuration order
            assert names(old.readers_state()) == first16
    finally:
        (dirs["late"] / "hang_open").unlink(missing_ok=True)
