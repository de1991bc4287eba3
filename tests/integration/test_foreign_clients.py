"""Real 32-bit and big-endian PC/SC clients against scardd, and the same
big-endian client against Debian's pcscd 1.9.9.

The wire protocol is a memory dump of native-endian 32-bit fields
(shared/docs/wire-protocol.md §2): a 32-bit client sends the same bytes as a
64-bit one, a big-endian client sends every field byte-swapped. scardd detects
a client's byte order from its first header and converts per connection;
pcscd cannot, and reads a big-endian CMD_VERSION (0x11) as unknown command
0x11000000.

Clients, built by tests/foreign/build into <SCARDD_BUILD>/foreign from the
session fixture below (packages: scripts/install-deps --tests):
  * pcsc_probe (tests/foreign/pcsc_probe.c), cross-built with
    gcc-i686-linux-gnu / gcc-s390x-linux-gnu against Debian's i386 / s390x
    libpcsclite1 1.9.9; the s390x binary runs under `qemu-s390x -L /`, the
    i386 one natively, or under `qemu-i386 -L /` on a kernel that cannot
    run 32-bit programs (no IA32 emulation);
  * the same binaries on our libpcsclite.so.1 cross-built for i386 / s390x
    (meson --cross-file, tests/foreign/cross-*.ini), through LD_LIBRARY_PATH;
  * Debian's pcsc_scan from pcsc-tools:i386 (unpacked from its .deb, since it
    cannot be co-installed with the amd64 package), run like the i386 probe.
Each reports the word size, byte order and the libpcsclite.so.1 it loaded, so
the tests also check they run what they claim to.
"""
import errno
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import _can_private_mount, spawn, stop_process  # noqa: E402
from pcsc_raw import (SCARD_E_CANCELLED, SCARD_E_NO_SERVICE, SCARD_PRESENT,  # noqa: E402
                      SCARD_PROTOCOL_T1, SCARD_STATE_EMPTY, SCARD_STATE_PRESENT)
from scardd_argv import scardd_argv  # noqa: E402
from virtual_env import (BUILD, BUILTIN_ATR, PCSCD, SCARDD, LineReader, VirtualDaemon,  # noqa: E402
                         driver_is_sanitized)

REPO = HERE.parents[1]
FOREIGN_SRC = REPO / "tests" / "foreign"
FOREIGN = BUILD / "foreign"
BUILD_TIMEOUT = 900
RUN_TIMEOUT = 120          # one probe run (qemu included); a hang fails the test
EVENT_TIMEOUT = 20         # a waiting client must see an insertion/removal within this

READER0 = "Virtual Reader 00 00"
READER1 = "Virtual Reader 00 01"
SCARD_W_SECURITY_VIOLATION = 0x8010006A   # pcsc-lite's mapping of ECONNRESET
CMD_VERSION_SWAPPED = 0x11000000  # how a little-endian daemon reads a big-endian CMD_VERSION

# what the built-in card answers (T=1): SELECT by AID with FCI, SELECT EF, READ BINARY
APDUS = [
    ("00A4040007F073636172646400", "6F13820138830250008407F07363617264648A01059000"),
    ("00A4020C025001", "9000"),
    ("00B0000005", b"Hello".hex().upper() + "9000"),
]

# Protocols our library settles on: 4:6 with scardd; with pcscd 1.9.9 it falls
# back to 4:4. (scardd's debug log names the protocol of each connection; the
# sequence test checks it against these.)
OURS_PROTOCOL = {"scardd": "4:6", "pcscd 1.9.9": "4:4"}

CLIENTS = {
    "debian-i386": dict(arch="i386", lib="debian", bits=32, endian="little",
                        peer="Debian libpcsclite1 1.9.9 (i386)", protocol="4:4"),
    "debian-s390x": dict(arch="s390x", lib="debian", bits=64, endian="big",
                         peer="Debian libpcsclite1 1.9.9 (s390x)", protocol="4:4"),
    "ours-i386": dict(arch="i386", lib="ours", bits=32, endian="little",
                      peer="our libpcsclite (i386)", protocol=OURS_PROTOCOL),
    "ours-s390x": dict(arch="s390x", lib="ours", bits=64, endian="big",
                       peer="our libpcsclite (s390x)", protocol=OURS_PROTOCOL),
}


def compat(client, against):
    return pytest.mark.compat(against=against, **compat_keys(client, against))


def compat_keys(client, against):
    c = CLIENTS[client]
    proto = c["protocol"] if isinstance(c["protocol"], str) else c["protocol"][against]
    return dict(peer=c["peer"], role="client", protocol=proto, order=c["endian"] + "-endian",
                word="%d-bit" % c["bits"])


def client_params(against, xfail_big_endian=None):
    out = []
    for name, c in CLIENTS.items():
        marks = [compat(name, against)]
        if xfail_big_endian and c["endian"] == "big":
            marks.append(pytest.mark.xfail(strict=True, raises=PeerIncompatible, reason=xfail_big_endian))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


SCAN_PEER = dict(peer="Debian libpcsclite1 1.9.9 (i386) + pcsc_scan", role="client", protocol="4:4",
                 order="little-endian", word="32-bit")


class PeerIncompatible(AssertionError):
    """The known, reproduced incompatibility (the only failure an xfail accepts)."""


# --- building ---------------------------------------------------------------------
class Foreign:
    """The clients tests/foreign/build produced, and why any part is missing."""

    def __init__(self, out):
        self.out = out
        self.skipped = self._parts(out / "skipped")
        self.failed = self._parts(out / "failed")
        self._runs = {}

    @staticmethod
    def _parts(path):
        parts = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if ": " in line:
                    k, v = line.split(": ", 1)
                    parts[k] = v
        return parts

    def need(self, part):
        if part in self.failed:
            log = Path(self.failed[part])
            text = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
            pytest.fail("tests/foreign/build failed for %s:\n%s" % (part, text), pytrace=False)
        if part in self.skipped:
            pytest.skip("no-foreign-arch: %s not built: %s" % (part, self.skipped[part]))

    def launcher(self, arch, binary):
        """The argv prefix that runs an <arch> binary here: qemu-user for
        s390x, and for i386 when the kernel cannot exec 32-bit programs."""
        if arch == "i386":
            if "i386-native" not in self._runs:
                try:
                    subprocess.run([str(binary), "--no-such-option"], capture_output=True, timeout=60)
                    self._runs["i386-native"] = True
                except OSError as e:
                    if e.errno != errno.ENOEXEC:
                        raise
                    self._runs["i386-native"] = False
            if self._runs["i386-native"]:
                return []
        qemu = "/usr/bin/qemu-%s" % arch
        if not os.path.exists(qemu):
            pytest.skip("no-foreign-arch: qemu-user (%s) not installed; see scripts/install-deps --tests" % qemu)
        return [qemu, "-L", "/"]

    def runnable(self, arch, argv):
        """Skip if this machine cannot execute <arch> binaries at all."""
        if arch not in self._runs:
            try:
                r = subprocess.run(argv + ["--no-such-option"], capture_output=True, timeout=60)
                self._runs[arch] = None if r.returncode == 2 else \
                    "%s binary did not run (exit %s): %s" % (arch, r.returncode, r.stderr[-300:])
            except (OSError, subprocess.TimeoutExpired) as e:
                self._runs[arch] = "cannot run %s binaries: %s" % (arch, e)
        if self._runs[arch]:
            pytest.skip("no-foreign-arch: " + self._runs[arch])

    def probe(self, client, base_env):
        """argv and environment that run pcsc_probe as `client`."""
        c = CLIENTS[client]
        arch = c["arch"]
        self.need("probe-" + arch)
        binary = self.out / arch / "pcsc_probe"
        argv = self.launcher(arch, binary) + [str(binary)]
        env = dict(base_env)
        env.pop("LD_LIBRARY_PATH", None)
        env.pop("LD_PRELOAD", None)
        if c["lib"] == "ours":
            self.need("ours-" + arch)
            env["LD_LIBRARY_PATH"] = str(self.out / arch / "ours")
        self.runnable(arch, argv)
        return argv, env

    def pcsc_scan(self):
        self.need("pcsc_scan-i386")
        binary = self.out / "pcsc-tools-i386" / "usr" / "bin" / "pcsc_scan"
        if not binary.exists():
            pytest.skip("no-foreign-arch: pcsc_scan (i386) missing under %s" % binary.parent)
        head = binary.read_bytes()[:20]
        # ELF, ELFCLASS32, little-endian, e_machine EM_386
        assert head[:4] == b"\x7fELF" and head[4] == 1 and head[5] == 1 and head[18] == 3, head
        return self.launcher("i386", binary) + [str(binary)]


@pytest.fixture(scope="session")
def foreign():
    script = FOREIGN_SRC / "build"
    FOREIGN.mkdir(parents=True, exist_ok=True)
    log = FOREIGN / "build.log"
    with open(log, "wb") as f:
        try:
            r = subprocess.run([str(script), str(FOREIGN)], stdout=f, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("tests/foreign/build took over %d s; log %s" % (BUILD_TIMEOUT, log), pytrace=False)
    fo = Foreign(FOREIGN)
    if r.returncode != 0 and not fo.failed:
        pytest.fail("tests/foreign/build exited %d:\n%s" % (r.returncode, log.read_text(errors="replace")[-4000:]),
                    pytrace=False)
    return fo


# --- daemons ------------------------------------------------------------------------
class ForeignDaemon(VirtualDaemon):
    """scardd or Debian's pcscd with two ifd-virtual readers, the built-in card
    in the first. Started with conftest.spawn; pcscd runs in a private mount
    namespace with our run directory bind-mounted on /run/pcscd, so its socket
    is ours and a system pcscd (or another test run) is not disturbed."""

    def __init__(self, kind):
        super().__init__(kind, readers=2, cards={0: "builtin"})
        self.socket = str(self.dir / "run" / "pcscd.comm")

    def _start(self, expect_readers):
        rundir = self.dir / "run"
        rundir.mkdir(exist_ok=True)
        if self.kind == "pcscd":
            if driver_is_sanitized():
                pytest.skip("sanitizer: a sanitizer-built driver cannot load into Debian's pcscd")
            if not _can_private_mount():
                pytest.skip("no-namespace: pcscd binds /run/pcscd/pcscd.comm; a private mount namespace needs root and unshare")
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mkdir -p /run/pcscd && mount --bind "$0" /run/pcscd && exec "$@"', str(rundir),
                    PCSCD, "-f", "-d", "-c", str(self.confdir)]
        else:
            if not SCARDD.exists():
                pytest.fail("scardd not built: %s missing (set SCARDD_BUILD)" % SCARDD, pytrace=False)
            argv = scardd_argv(SCARDD, "--foreground", "--debug", "--socket", self.socket,
                               "--config-dir", self.confdir)
        self.log_file = open(self.dir / "daemon.log", "wb")
        self.proc = spawn(argv, stdout=self.log_file, stderr=subprocess.STDOUT, env=self.env())
        self.wait_readers(2 if expect_readers is None else expect_readers)
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None:
            stop_process(self.proc, sig, timeout=20)
        super().stop(sig)

    def log_from(self, offset):
        return self.log[offset:]


def _daemon(kind):
    d = ForeignDaemon(kind)
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def scardd_vd():
    yield from _daemon("scardd")


@pytest.fixture(scope="module")
def pcscd_vd():
    yield from _daemon("pcscd")


@pytest.fixture
def on_scardd(scardd_vd):
    scardd_vd.reset_cards()
    return scardd_vd


@pytest.fixture
def on_pcscd(pcscd_vd):
    pcscd_vd.reset_cards()
    return pcscd_vd


# --- running clients ------------------------------------------------------------------
class ProbeRun:
    def __init__(self, client, argv, rc, out, err):
        self.client, self.argv, self.rc, self.out, self.err = client, argv, rc, out, err
        self.lines = []
        for line in out.splitlines():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def op(self, name):
        found = [o for o in self.lines if o.get("op") == name]
        assert found, "no %r step in the output of %s:\n%s" % (name, self.client, self)
        return found[0]

    def ops(self, name):
        return [o for o in self.lines if o.get("op") == name]

    def __str__(self):
        return "%s exit %s\nstdout:\n%s\nstderr:\n%s" % (" ".join(self.argv), self.rc, self.out, self.err[-2000:])


def run_probe(foreign, client, daemon, *args, timeout=RUN_TIMEOUT):
    argv, env = foreign.probe(client, daemon.env())
    argv = argv + list(args)
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(p, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError("%s (%s) still running after %d s, killed; output:\n%s\n%s\ndaemon log:\n%s"
                             % (client, " ".join(argv), timeout, out, err[-2000:], daemon.log[-3000:]))
    return ProbeRun(client, argv, p.returncode, out, err)


def rv(o):
    return int(o["rv"], 16)


def check_arch(run, client):
    c = CLIENTS[client]
    a = run.op("arch")
    assert (a["bits"], a["endian"]) == (c["bits"], c["endian"]), (a, str(run))
    lib = os.path.realpath(a["library"]) if a["library"] else ""
    if c["lib"] == "ours":
        want = os.path.realpath(FOREIGN / c["arch"] / "ours" / "libpcsclite.so.1")
        assert lib == want, (a, want)
    else:
        triplet = {"i386": "i386-linux-gnu", "s390x": "s390x-linux-gnu"}[c["arch"]]
        assert "/%s/libpcsclite.so.1" % triplet in a["library"], a


def check_sequence(run, client):
    """Every step of pcsc_probe's full sequence succeeded with the right answers."""
    check_arch(run, client)
    bad = [o for o in run.lines if "rv" in o and rv(o) != 0]
    assert not bad and run.rc == 0, "failed steps %s\n%s" % (bad, run)
    assert run.op("list_readers")["readers"] == [READER0, READER1]
    states = {r["name"]: r for r in run.op("status_change")["readers"]}
    assert set(states) == {READER0, READER1}
    r0, r1 = states[READER0], states[READER1]
    assert int(r0["state"], 16) & SCARD_STATE_PRESENT and r0["atr"] == BUILTIN_ATR.hex().upper(), r0
    assert int(r1["state"], 16) & SCARD_STATE_EMPTY and r1["atr"] == "", r1
    assert run.op("connect")["protocol"] == SCARD_PROTOCOL_T1
    st = run.op("status")
    assert st["reader"] == READER0 and st["protocol"] == SCARD_PROTOCOL_T1, st
    assert st["atr"] == BUILTIN_ATR.hex().upper() and int(st["state"], 16) & SCARD_PRESENT, st
    assert run.op("get_attrib_atr")["atr"] == BUILTIN_ATR.hex().upper()
    got = [(t["apdu"], t["response"]) for t in run.ops("transmit")]
    assert got == APDUS
    assert run.op("reconnect")["protocol"] == SCARD_PROTOCOL_T1
    for step in ("is_valid", "begin_transaction", "end_transaction", "disconnect", "release"):
        run.op(step)


def probe_sequence_args():
    args = ["--reader", READER0]
    for apdu, _ in APDUS:
        args += ["--apdu", apdu]
    return args


# --- against scardd -----------------------------------------------------------------------
@pytest.mark.parametrize("client", client_params("scardd"))
def test_probe_sequence_against_scardd(foreign, on_scardd, client):
    """establish, list, get status change, connect, status, get attrib, transaction,
    transmit, reconnect, disconnect, release: all succeed with the right reader
    names, ATR and APDU answers, whatever the client's word size or byte order."""
    mark = len(on_scardd.log)
    run = run_probe(foreign, client, on_scardd, *probe_sequence_args())
    check_sequence(run, client)
    # scardd's debug log names what it settled on for each connection: the
    # client's byte order and the matrix's protocol, on every connection
    want = compat_keys(client, "scardd")
    seen = re.findall(r"CMD_VERSION \d+:\d+: served (\d+:\d+), (\w+)-endian", on_scardd.log_from(mark))
    assert seen, "scardd's debug log names no protocol for this client:\n%s" % on_scardd.log_from(mark)[-3000:]
    assert {(proto, order + "-endian") for proto, order in seen} == {(want["protocol"], want["order"])}, seen


@pytest.mark.parametrize("client", client_params("scardd"))
def test_probe_sees_insertion_and_removal_on_scardd(foreign, on_scardd, client):
    """A client blocked in SCardGetStatusChange wakes for an insertion and a
    removal made while it waits (the event signal and the re-sent reader array
    in the client's byte order). Other changes may be reported in between
    (e.g. INUSE while someone connects), so the waits go on until each event."""
    argv, env = foreign.probe(client, on_scardd.env())
    argv += ["--wait", READER1, "--events", "20", "--timeout", str(EVENT_TIMEOUT * 1000)]
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)

    def next_change(want_flag, what):
        while True:
            o = json.loads(lines.wait_for(lambda l: '"op":"changed"' in l, timeout=EVENT_TIMEOUT + 10))
            assert rv(o) == 0, (what, o, "".join(lines.lines))
            if int(o["state"], 16) & want_flag:
                return o
    try:
        lines = LineReader(p)
        ready = json.loads(lines.wait_for(lambda l: '"op":"ready"' in l or '"rv":"0x8' in l,
                                          timeout=RUN_TIMEOUT))
        assert ready["op"] == "ready" and rv(ready) == 0, ready
        assert int(ready["state"], 16) & SCARD_STATE_EMPTY, ready
        r = on_scardd.scard("virtual", "--no-wait", "insert", READER1, "builtin")
        assert r.returncode == 0, r.stderr
        ins = next_change(SCARD_STATE_PRESENT, "insertion")
        assert ins["atr"] == BUILTIN_ATR.hex().upper(), ins
        r = on_scardd.scard("virtual", "--no-wait", "remove", READER1)
        assert r.returncode == 0, r.stderr
        rem = next_change(SCARD_STATE_EMPTY, "removal")
        assert rem["atr"] == "", rem
        # the event counter in the upper 16 bits moved by one per event
        assert (int(rem["state"], 16) >> 16) - (int(ready["state"], 16) >> 16) == 2, "".join(lines.lines)
    finally:
        stop_process(p)


@pytest.mark.parametrize("client", client_params("scardd"))
def test_probe_cancel_on_scardd(foreign, on_scardd, client):
    """SCardCancel from another thread ends an INFINITE wait with
    SCARD_E_CANCELLED. pcsc-lite sends the cancel on a fresh connection with no
    CMD_VERSION first, so scardd must recognise the byte order from SCARD_CANCEL."""
    run = run_probe(foreign, client, on_scardd, "--cancel")
    check_arch(run, client)
    c = run.op("cancel")
    assert c["wait_returned"] and int(c["wait_rv"], 16) == SCARD_E_CANCELLED, str(run)
    assert rv(c) == 0 and rv(run.op("release")) == 0 and run.rc == 0, str(run)


def pcsc_scan_sees_readers_and_events(argv, d):
    """Debian's i386 pcsc_scan -n lists both readers and the card's ATR, then
    reports an insertion and a removal in reader 1 made while it runs."""
    env = d.env()
    env.pop("LD_LIBRARY_PATH", None)
    p = spawn(argv + ["-n"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    atr = " ".join("%02X" % b for b in BUILTIN_ATR)
    current = [None]

    def seen(reader, text):
        def match(line):
            if line.strip().startswith("Reader ") and ":" in line:
                current[0] = line.split(":", 1)[1].strip()
            return current[0] == reader and text in line
        return match
    try:
        lines = LineReader(p)
        lines.wait_for(lambda l: READER0 in l, timeout=RUN_TIMEOUT)
        lines.wait_for(lambda l: READER1 in l, timeout=EVENT_TIMEOUT)
        lines.wait_for(seen(READER0, "ATR: " + atr), timeout=EVENT_TIMEOUT)
        lines.wait_for(seen(READER1, "Card removed"), timeout=EVENT_TIMEOUT)  # reader 1 starts empty
        r = d.scard("virtual", "insert", READER1, "builtin")
        assert r.returncode == 0, r.stderr
        lines.wait_for(seen(READER1, "Card inserted"), timeout=EVENT_TIMEOUT)
        lines.wait_for(seen(READER1, "ATR: " + atr), timeout=EVENT_TIMEOUT)
        r = d.scard("virtual", "remove", READER1)
        assert r.returncode == 0, r.stderr
        lines.wait_for(seen(READER1, "Card removed"), timeout=EVENT_TIMEOUT)
        assert p.poll() is None, "".join(lines.lines)
    finally:
        stop_process(p)


@pytest.mark.compat(against="scardd", **SCAN_PEER)
def test_i386_pcsc_scan_against_scardd(foreign, on_scardd):
    pcsc_scan_sees_readers_and_events(foreign.pcsc_scan(), on_scardd)


@pytest.mark.parametrize("arch", ["i386", "s390x"])
def test_our_library_cross_builds_without_warnings(foreign, arch):
    """Our client library compiles warning-free for a 32-bit and a big-endian
    target (the project builds with werror; tests/foreign/build turns it off so
    the runtime tests still run, and keeps the warnings in ninja.log)."""
    foreign.need("ours-" + arch)
    log = (FOREIGN / arch / "ninja.log").read_text(errors="replace")
    warnings = [line for line in log.splitlines() if "warning:" in line]
    assert not warnings, "\n".join(warnings)


# --- against Debian's pcscd 1.9.9 (last, so that it runs as briefly as possible) ---------
BIG_ENDIAN_VS_PCSCD = ("pcscd 1.9.9 does not convert byte order: it reads a big-endian CMD_VERSION as "
                       "unknown command 0x11000000 and closes the connection; SCardEstablishContext "
                       "fails (SCARD_E_NO_SERVICE, or SCARD_W_SECURITY_VIOLATION when the reset hits "
                       "the client's send)")


@pytest.mark.parametrize("client", client_params("pcscd 1.9.9", xfail_big_endian=BIG_ENDIAN_VS_PCSCD))
def test_probe_sequence_against_pcscd(foreign, on_pcscd, client):
    """The same sequence against Debian's pcscd: 32-bit little-endian clients
    work (every wire field is 32-bit); a big-endian client cannot even
    establish a context. The big-endian failure is checked to be exactly that
    one (bounded run; SCardEstablishContext SCARD_E_NO_SERVICE, or
    SCARD_W_SECURITY_VIOLATION when pcscd's close resets the connection while
    the client still sends the CMD_VERSION body; pcscd's 'Unknown command'
    log line) before it is reported as the expected failure."""
    mark = len(on_pcscd.log)
    run = run_probe(foreign, client, on_pcscd, *probe_sequence_args())
    check_arch(run, client)
    est = run.op("establish")
    if CLIENTS[client]["endian"] == "big" and rv(est) != 0:
        assert rv(est) in (SCARD_E_NO_SERVICE, SCARD_W_SECURITY_VIOLATION) and run.rc == 1, str(run)
        line = "Unknown command: %d" % CMD_VERSION_SWAPPED
        log = on_pcscd.log_from(mark)
        assert line in log, "pcscd log lacks %r:\n%s" % (line, log[-3000:])
        assert on_pcscd.proc.poll() is None, "pcscd died"
        raise PeerIncompatible("%s against pcscd 1.9.9: SCardEstablishContext 0x%08X; pcscd log: %r"
                               % (client, rv(est), next(ln for ln in log.splitlines() if line in ln)))
    check_sequence(run, client)


@pytest.mark.compat(against="pcscd 1.9.9", **SCAN_PEER)
def test_i386_pcsc_scan_against_pcscd(foreign, on_pcscd):
    pcsc_scan_sees_readers_and_events(foreign.pcsc_scan(), on_pcscd)
