"""Real pcsc-lite releases as test peers (test_real_pcsclite.py,
test_fedora_readers.py).

tests/peers/build-pcsc-lite builds, from Debian's source archive, the client
library and pcscd of the newest release Debian serves in each protocol range:
pcsc44 (4:4, 1.8.24-2.2.x), fedora48 (the same release with 48 readers, as
Fedora builds it), pcsc45 (4:5, 2.3-2.4.x), pcsc46 (4:6, 2.5 on) and, when
a Debian source reachable here still has one, pcsc43 (4:3, 1.8.9-1.8.23) and
pcsc42 (4:2, 1.8.4-1.8.8). Debian 12's own 1.9.9 (libpcsclite1, pcscd) is
one more peer. This module builds them once per session (the builder caches
its builds: a second run builds nothing), runs their daemons and ours with
ifd-virtual readers, and drives their client libraries through pyscard
(tests/integration/pcsc_peer.py) in child processes whose LD_LIBRARY_PATH
picks the library.

A required peer that cannot be had fails every test that uses the peers:
no skip. An optional one (4:2, 4:3) skips its tests with the builder's
account of what it searched.

Every pcscd binds the compiled-in /run/pcscd/pcscd.comm; each runs in a
private mount namespace with its own temporary directory bind-mounted on
/run/pcscd (as conftest.py runs Debian's pcscd), so several coexist with each
other and with a system pcscd. Processes are started with conftest.spawn and
stopped by PID with conftest.stop_process.
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from conftest import Peer, spawn, stop_process  # noqa: E402
from pcsc_raw import (CMD_GET_READERS_STATE, CMD_GET_READERS_STATE_ARRAY,  # noqa: E402
                      CMD_GET_READERS_STATE_SIZE, READER_STATE_SIZE, SCARD_LEAVE_CARD,
                      SCARD_PRESENT, SCARD_PROTOCOL_T1, SCARD_SHARE_SHARED, SCARD_STATE_CHANGED,
                      SCARD_STATE_EMPTY, SCARD_STATE_PRESENT, SCARD_STATE_UNAWARE, RawClient,
                      parse_readers, wait_for)
from scardd_argv import scardd_argv  # noqa: E402
from virtual_env import control_command, reader_stanza, virtual_conf  # noqa: E402

PYTHON = "/usr/bin/python3"
BUILD = Path(os.environ.get("SCARDD_BUILD", REPO / "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
SCARDD = BUILD / "src" / "daemon" / "scardd"
OUR_LIBDIR = BUILD / "src" / "client"
DRIVER = BUILD / "src" / "drivers" / "virtual" / "libifd-virtual.so"
PEERS_SCRIPT = REPO / "tests" / "peers" / "build-pcsc-lite"
PEERS_DIR = Path(os.environ.get("SCARDD_PEERS_DIR", BUILD / "peers"))
PEERS_BUILD_TIMEOUT = float(os.environ.get("SCARDD_PEERS_BUILD_TIMEOUT", "1800"))
REQUIRED_PEERS = ("pcsc44", "fedora48", "pcsc45", "pcsc46")
DEBIAN_PCSCD = "/usr/sbin/pcscd"
DEBIAN_LIB = "/usr/lib/x86_64-linux-gnu/libpcsclite.so.1"
START_TIMEOUT = 30.0
WAIT = 20.0  # bound of every wait for an answer that should come

# the built-in ifd-virtual card (CARD-FORMAT.md)
BUILTIN_ATR = bytes.fromhex("3B88800176636172642D303147")
SELECT_AID = "00A4040007F073636172646400"  # DF 5000 by name, FCI wanted
SELECT_FCI = "6F13820138830250008407F07363617264648A01059000"
READ_SFI1 = "00B0810000"                   # EF 5001 by SFI, whole file
READ_SFI1_ANSWER = b"Hello from ifd-virtual".hex().upper() + "9000"

# WinSCard values beyond pcsc_raw's (wire-protocol.md section 7)
SCARD_SCOPE_USER = 0
RECORD = READER_STATE_SIZE


def hx(v):
    return "0x%08X" % (v & 0xFFFFFFFF)


# --- the peers -------------------------------------------------------------------
class PeerBuild:
    """One pcsc-lite release built by tests/peers/build-pcsc-lite."""

    def __init__(self, ident, info):
        self.id = ident
        self.version = info["version"]
        self.debian_version = info["debian_version"]
        self.protocol = info["protocol"]
        self.readers = int(info["readers"])
        self.libdir = Path(info["libdir"])
        self.pcscd = Path(info["pcscd"])

    def __repr__(self):
        return "pcsc-lite %s (%s)" % (self.version, self.id)


class Peers:
    """What build-pcsc-lite built: peers[id] for the required ones;
    peer(id) for an optional one, which skips the calling test with the
    builder's reason when no Debian source reachable here has its release."""

    def __init__(self, manifest):
        self.built = {i: PeerBuild(i, info) for i, info in manifest["peers"].items()}
        self.unavailable = manifest.get("unavailable", {})

    def __getitem__(self, ident):
        return self.peer(ident)

    def peer(self, ident):
        if ident in self.built:
            return self.built[ident]
        if ident in self.unavailable:
            pytest.skip("no-release: " + self.unavailable[ident])
        pytest.fail("build-pcsc-lite reported no peer %s" % ident, pytrace=False)


def build_peers():
    """Runs the build script (it reuses what it built before) and returns
    Peers. Any failure of the script fails the calling tests: a release the
    archive no longer serves must not turn the real-peer tests into skips."""
    if not PEERS_SCRIPT.exists():
        pytest.fail("%s missing" % PEERS_SCRIPT, pytrace=False)
    env = dict(os.environ, SCARDD_BUILD=str(BUILD), SCARDD_PEERS_DIR=str(PEERS_DIR))
    manifest = PEERS_DIR / "peers.json"
    try:
        manifest.unlink()  # only this run's answer counts
    except FileNotFoundError:
        pass
    try:
        r = subprocess.run([PYTHON, str(PEERS_SCRIPT)], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=PEERS_BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("building the pcsc-lite peers took over %.0f s" % PEERS_BUILD_TIMEOUT, pytrace=False)
    if r.returncode != 0:
        pytest.fail("tests/peers/build-pcsc-lite failed (exit %d):\n%s"
                    % (r.returncode, r.stderr[-6000:]), pytrace=False)
    peers = Peers(json.loads(manifest.read_text()))
    for want in REQUIRED_PEERS:
        if want not in peers.built:
            pytest.fail("build-pcsc-lite exited 0 without peer %s" % want, pytrace=False)
    return peers


@pytest.fixture(scope="session")
def real_peers():
    """Peers: pcsc44, fedora48, pcsc45, pcsc46 always; pcsc43 and pcsc42
    when a Debian source here has such a release."""
    if not SCARDD.exists():
        pytest.fail("scardd not built: %s missing (set SCARDD_BUILD)" % SCARDD, pytrace=False)
    return build_peers()


def debian_libdir(workdir):
    """A directory whose libpcsclite.so.1 is Debian's, for LD_LIBRARY_PATH."""
    d = Path(workdir) / "debian-lib"
    d.mkdir(exist_ok=True)
    link = d / "libpcsclite.so.1"
    if not link.exists():
        link.symlink_to(DEBIAN_LIB)
    return d


# --- the raw protocol, just enough to watch a daemon ------------------------------
def probe_readers(path, minor, timeout=5.0):
    """Reader names and states over a raw connection speaking 4:<minor>:
    4:6 asks the array's length (0x16) and then the array (0x17); older
    versions take what the daemon sends for 0x12, whatever its length."""
    with RawClient(str(path), timeout=timeout) as c:
        major, dminor, rv = c.version(4, minor)
        if rv != 0:
            raise ConnectionError("version 4:%d refused: daemon %d:%d rv %s" % (minor, major, dminor, hx(rv)))
        if minor >= 6:
            c.send(c.header(CMD_GET_READERS_STATE_SIZE, 0))
            n = struct.unpack("<i", c.recv_exact(4))[0]
            c.send(c.header(CMD_GET_READERS_STATE_ARRAY, 0))
            blob = c.recv_exact(n * RECORD)
        else:
            c.send(c.header(CMD_GET_READERS_STATE, 0))
            blob = c.recv_exact(16 * RECORD)
            blob += c.pending_bytes(0.3)  # a 48-reader daemon sends more: take it all
    return [(r.name, r.state) for r in parse_readers(blob)]


# --- daemons ------------------------------------------------------------------------
class VirtualReaders:
    """ifd-virtual instances, each with its own configuration file and control
    socket, as stanzas of one reader.conf file (one file keeps their order:
    pcscd reads a reader.conf.d directory in readdir order)."""

    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.confdir = self.dir / "reader.conf"  # daemons' -c / --config-dir take a file too
        self.confdir.write_text("")
        self.instances = []

    def add(self, friendly, readers, cards=None):
        idx = len(self.instances)
        conf = self.dir / ("virtual%d.conf" % idx)
        ctl = self.dir / ("ctl%d.sock" % idx)
        conf.write_text(virtual_conf(readers, ctl, cards))
        with open(self.confdir, "a") as f:
            f.write(reader_stanza(friendly, conf, DRIVER) + "\n")
        self.instances.append({"friendly": friendly, "readers": readers, "control": str(ctl)})
        return self

    def names(self):
        """Reader names in configuration order: "<friendly> XX YY", XX the
        instance's number among the readers of the same library, YY the slot."""
        return [self.reader(slot, i) for i in range(len(self.instances))
                for slot in range(self.instances[i]["readers"])]

    def reader(self, slot, instance=0):
        return "%s %02X %02X" % (self.instances[instance]["friendly"], instance, slot)

    def control(self, line, instance=0):
        """One command on the driver's control socket; returns its answer."""
        return control_command(self.instances[instance]["control"], line, check=True)

    def insert(self, slot, instance=0):
        return self.control("insert %d builtin" % slot, instance)

    def remove(self, slot, instance=0):
        return self.control("remove %d" % slot, instance)


class RunningDaemon:
    """A daemon process (pcscd of some release, or scardd) serving the
    readers of `readers` on one or more sockets."""

    def __init__(self, name, argv, sockets, probe_minor, workdir, readers):
        self.name = name
        self.argv = argv
        self.sockets = [str(s) for s in sockets]
        self.socket = self.sockets[0]
        self.probe_minor = probe_minor
        self.dir = Path(workdir)
        self.readers = readers
        self.log = self.dir / ("%s.log" % name.replace(" ", "_"))
        self.proc = None
        self.started = False
        self.must_exit_0 = False  # scardd: a clean SIGTERM exit (sanitizer builds report otherwise)

    def start(self):
        with open(self.log, "ab") as logf:
            self.proc = spawn(self.argv, stdout=logf, stderr=subprocess.STDOUT)
        want = self.readers.names()

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s) during start-up:\n%s"
                                   % (self.name, self.proc.returncode, self.log_tail()))
            names = [n for n, _ in probe_readers(self.socket, self.probe_minor)]
            visible = len(want) if self.probe_minor >= 6 else min(len(want), 16)
            return set(names) <= set(want) and len(names) >= visible
        try:
            wait_for(ready, START_TIMEOUT, interval=0.1, what="%s serving readers %s" % (self.name, want))
        except TimeoutError as e:
            self.stop()
            raise RuntimeError("%s\n%s" % (e, self.log_tail()))
        self.started = True
        return self

    def wait_state(self, reader, present, timeout=WAIT):
        def check():
            for n, state in probe_readers(self.socket, self.probe_minor):
                if n == reader:
                    return bool(state & SCARD_PRESENT) == present
            return False
        wait_for(check, timeout, interval=0.1,
                 what="%s %s in %s" % (reader, "present" if present else "absent", self.name))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_size(self):
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def accepted_versions(self, since=0):
        """pcscd -d logs each CMD_VERSION as "Client is protocol version M:N",
        followed by "Communication protocol mismatch!" when it is not its own
        version; 2.5 then logs "Enable backward compatibility" when it accepts
        it all the same (4:4, 4:5). Returns the versions it accepted, in its
        log after byte `since`."""
        with open(self.log, "rb") as f:
            f.seek(since)
            lines = f.read().decode(errors="replace").splitlines()
        out = []
        for i, line in enumerate(lines):
            if "Client is protocol version" in line:
                v = line.rsplit(" ", 1)[1].strip()
                after = lines[i + 1:i + 6]
                refused = (any("protocol mismatch" in nxt for nxt in after[:2])
                           and not any("Enable backward compatibility" in nxt for nxt in after))
                if not refused:
                    out.append(v)
        return out

    def stop(self):
        if self.proc is None:
            return None
        rc = stop_process(self.proc, signal.SIGTERM, timeout=10)
        return rc

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


def pcscd_daemon(pcscd, name, readers, workdir, probe_minor):
    """pcscd (Debian's or a built one) in a private mount namespace whose
    /run/pcscd is <workdir>/run-<name>: its socket is <that>/pcscd.comm."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("no-namespace: running a pcscd beside others needs root and unshare (private mount namespace)")
    if os.environ.get("SCARDD_SANITIZED"):
        pytest.skip("sanitizer: a sanitizer-built ifd-virtual cannot load into pcscd")
    rundir = Path(workdir) / ("run-%s" % name.replace(" ", "_"))
    rundir.mkdir()
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mkdir -p /run/pcscd && mount --bind "$0" /run/pcscd && exec "$@"', str(rundir),
            str(pcscd), "-f", "-d", "-c", str(readers.confdir)]
    return RunningDaemon(name, argv, [rundir / "pcscd.comm"], probe_minor, workdir, readers)


def scardd_daemon(readers, workdir, sockets=None, name="scardd"):
    """scardd; sockets are --socket values (PATH[:OPTIONS]), default one socket."""
    if sockets is None:
        sockets = [str(Path(workdir) / "scardd.comm")]
    socket_args = [a for spec in sockets for a in ("--socket", spec)]
    argv = scardd_argv(SCARDD, "--foreground", "--debug", "--config-dir", readers.confdir, *socket_args)
    paths = [spec.split(":", 1)[0] for spec in sockets]
    d = RunningDaemon(name, argv, paths, 4, workdir, readers)
    d.must_exit_0 = True
    return d


# --- clients --------------------------------------------------------------------------
class LibClient(Peer):
    """A pyscard process (pcsc_peer.py) whose libpcsclite.so.1 comes from
    libdir, talking to the daemon socket `socket_path`. call() runs one
    operation and returns its result; start()/result() let a call block
    while the test does something else. Every wait is bounded. The process
    and its JSON lines are conftest.Peer's."""

    skip_non_json = True  # whatever else a library prints on stdout
    close_wait = 3.0

    def __init__(self, libdir, socket_path, logdir, name):
        self.libdir = Path(libdir)
        super().__init__(socket_path, logdir, name)

    def env(self, socket_path):
        env = super().env(socket_path)
        env["LD_LIBRARY_PATH"] = str(self.libdir)
        env.pop("LD_PRELOAD", None)
        env.pop("LIBPCSCLITE_DELEGATE", None)
        return env

    def result(self, rid, timeout=WAIT):
        """The result dict, or None if none came within timeout (blocked)."""
        return self.wait_result(rid, timeout)

    def call(self, op, *args, timeout=WAIT):
        r = self.result(self.start(op, *args), timeout)
        assert r is not None, "%s: %s%r gave no answer in %.0f s" % (self.name, op, args, timeout)
        return r

    def mapped_libs(self):
        with open("/proc/%d/maps" % self.proc.pid) as f:
            return sorted({line.split()[-1] for line in f if "libpcsclite" in line})


class Session:
    """Everything one test starts; stop() ends it all, by PID, and removes
    the temporary directory."""

    def __init__(self, request=None):
        self.dir = Path(tempfile.mkdtemp(prefix="real-pcsclite-"))
        self.daemons = []
        self.clients = []

    def readers(self):
        return VirtualReaders(self.dir / ("readers%d" % len(self.daemons)))

    def daemon(self, d):
        self.daemons.append(d)
        d.start()
        return d

    def client(self, libdir, socket_path, name):
        if os.environ.get("SCARDD_SANITIZED") and Path(libdir).resolve() == OUR_LIBDIR.resolve():
            pytest.skip("sanitizer: an instrumented libpcsclite cannot load into Debian's python")
        c = LibClient(libdir, socket_path, self.dir, name)
        self.clients.append(c)
        return c

    def stop(self):
        problems = []
        for c in self.clients:
            c.close()
        for d in self.daemons:
            if not d.started:
                d.stop()  # its start already failed the test
                continue
            crashed = d.proc.poll() is not None
            rc = d.stop()
            if crashed:
                problems.append("%s died during the test (exit %s):\n%s" % (d.name, rc, d.log_tail()))
            elif d.must_exit_0 and rc != 0:
                problems.append("%s exited %s on SIGTERM:\n%s" % (d.name, rc, d.log_tail()))
        keep = os.environ.get("SCARDD_TEST_LOGS")
        if keep:
            shutil.copytree(self.dir, Path(keep) / self.dir.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.comm", "*.sock"))
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


@pytest.fixture
def peer_run():
    """A Session for one test: stopped, and its directory removed, at teardown."""
    s = Session()
    try:
        yield s
    finally:
        problems = s.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --- the scenario every peer-vs-us pairing runs ----------------------------------------------
def basic_scenario(client, readers, daemon, insert_slot=1):
    """Establish; list readers; SCardGetStatusChange sees a card inserted
    into the empty reader `insert_slot`; connect T=1, transmit two APDUs with
    checked answers; status; disconnect; release. Returns what was seen."""
    seen = {}
    r = client.call("establish", SCARD_SCOPE_USER)
    assert r["hr"] == 0, "SCardEstablishContext: %s" % hx(r["hr"])
    ctx = r["ctx"]
    seen["libs"] = client.mapped_libs()

    r = client.call("list_readers", ctx)
    assert r["hr"] == 0, "SCardListReaders: %s" % hx(r["hr"])
    seen["readers"] = r["readers"]
    assert r["readers"] == readers.names(), r["readers"]

    reader = readers.reader(insert_slot)
    r = client.call("gsc", ctx, 0, [[reader, SCARD_STATE_UNAWARE]])
    assert r["hr"] == 0, "SCardGetStatusChange (unaware): %s" % hx(r["hr"])
    state = r["states"][0][1]
    assert state & SCARD_STATE_EMPTY and not state & SCARD_STATE_PRESENT, hx(state)

    wait = client.start("gsc", ctx, int(WAIT * 1000), [[reader, state & ~SCARD_STATE_CHANGED]])
    assert client.result(wait, timeout=0.5) is None, "SCardGetStatusChange returned before the insertion"
    readers.insert(insert_slot)
    r = client.result(wait, timeout=WAIT + 5)
    assert r is not None, "SCardGetStatusChange did not return after the insertion"
    assert r["hr"] == 0, "SCardGetStatusChange (insertion): %s" % hx(r["hr"])
    _, ev, atr = r["states"][0]
    assert ev & SCARD_STATE_CHANGED and ev & SCARD_STATE_PRESENT, hx(ev)
    assert bytes.fromhex(atr) == BUILTIN_ATR, atr
    assert (ev >> 16) > (state >> 16), "event counter did not move: %s -> %s" % (hx(state), hx(ev))

    r = client.call("connect", ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T1)
    assert r["hr"] == 0, "SCardConnect: %s" % hx(r["hr"])
    card = r["card"]
    assert r["proto"] == SCARD_PROTOCOL_T1
    r = client.call("transmit", card, SCARD_PROTOCOL_T1, SELECT_AID)
    assert r["hr"] == 0, "SCardTransmit: %s" % hx(r["hr"])
    assert r["resp"].upper() == SELECT_FCI
    r = client.call("transmit", card, SCARD_PROTOCOL_T1, READ_SFI1)
    assert r["hr"] == 0, "SCardTransmit: %s" % hx(r["hr"])
    assert r["resp"].upper() == READ_SFI1_ANSWER

    r = client.call("status", card)
    assert r["hr"] == 0, "SCardStatus: %s" % hx(r["hr"])
    assert r["reader"] == reader
    assert r["proto"] == SCARD_PROTOCOL_T1
    assert bytes.fromhex(r["atr"]) == BUILTIN_ATR
    assert r["state"] & 0xFFFF & SCARD_PRESENT, hx(r["state"])
    seen["status"] = r

    assert client.call("disconnect", card, SCARD_LEAVE_CARD)["hr"] == 0
    assert client.call("release", ctx)["hr"] == 0
    return seen


# How each release is named in the compatibility matrix, and its protocol.
#   id: (as a client, as a daemon, as the "against" of a client row, protocol)
LABELS = {
    "debian": ("pcsc-lite 1.9.9 libpcsclite (Debian 12)", "pcsc-lite 1.9.9 pcscd (Debian 12)",
               "pcscd 1.9.9 (Debian 12)", "4:4"),
    # built by tests/peers/build-pcsc-lite: the newest release of each
    # protocol range that Debian serves (peers.json names the version)
    "pcsc44": ("pcsc-lite 1.8.24-2.2 libpcsclite (built)", "pcsc-lite 1.8.24-2.2 pcscd (built)",
               "pcscd 1.8.24-2.2 (built)", "4:4"),
    "fedora48": ("pcsc-lite 1.8.24-2.2 libpcsclite, 48 readers (Fedora)",
                 "pcsc-lite 1.8.24-2.2 pcscd, 48 readers (Fedora)",
                 "pcscd 1.8.24-2.2, 48 readers (Fedora)", "4:4"),
    "pcsc45": ("pcsc-lite 2.3-2.4 libpcsclite", "pcsc-lite 2.3-2.4 pcscd", "pcscd 2.3-2.4", "4:5"),
    "pcsc46": ("pcsc-lite 2.5+ libpcsclite", "pcsc-lite 2.5+ pcscd", "pcscd 2.5+", "4:6"),
    "pcsc43": ("pcsc-lite 1.8.9-1.8.23 libpcsclite", "pcsc-lite 1.8.9-1.8.23 pcscd",
               "pcscd 1.8.9-1.8.23", "4:3"),
    "pcsc42": ("pcsc-lite 1.8.4-1.8.8 libpcsclite", "pcsc-lite 1.8.4-1.8.8 pcscd",
               "pcscd 1.8.4-1.8.8", "4:2"),
}


def compat(peer, role, against, protocol):
    """The compatibility-matrix marker (collected into the README by a plugin)."""
    return pytest.mark.compat(peer=peer, role=role, against=against, protocol=protocol,
                              order="little-endian", word="64-bit")
