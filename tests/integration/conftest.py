"""Fixtures for the integration tests: real daemons, real vpcd, real vicc cards.

Environment:
  SCARDD_BUILD        meson build dir holding src/daemon/scardd (default <repo>/build)
  SCARDD_TEST_DAEMON  "scardd" (default) or "pcscd": run the same tests against
                      Debian's pcscd to check that they encode pcsc-lite's
                      behaviour. pcscd always binds /run/pcscd/pcscd.comm; as
                      root it runs in a private mount namespace with our dir
                      bind-mounted there, otherwise only one run at a time.
  SCARDD_TEST_LOGS    keep each test's daemon/vicc logs under this dir.
  SCARDD_TEST_WATCHDOG  seconds before a hung test's processes are killed (300).
  SCARDD_STRICT_SKIPS=1  a skip tests/skip_policy.py does not allow fails.
  SCARDD_SKIP_LOG     append every skip ("nodeid<TAB>reason") to this file.

The in-process libpcsclite (pyscard) reads PCSCLITE_CSOCK_NAME once per
process, so every daemon started by the `daemon` fixture binds the same
session-wide socket path, set below before anything can open a context.
"""
import faulthandler
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compat_matrix  # noqa: E402
import pcsc_raw  # noqa: E402
import pcscd_ns  # noqa: E402
import skip_plugin  # noqa: E402
from scardd_argv import scardd_argv  # noqa: E402


def pytest_configure(config):
    compat_matrix.pytest_configure(config)  # the compatibility matrix
    skip_plugin.pytest_configure(config)    # the skip policy (tests/skip_policy.py)
    config.addinivalue_line("markers", "watchdog(seconds): this test's own watchdog budget, for "
                            "the few that build and install whole systems (test_deb.py)")

REPO = HERE.parents[1]
DAEMON_KIND = os.environ.get("SCARDD_TEST_DAEMON", "scardd")
if DAEMON_KIND not in ("scardd", "pcscd"):
    raise SystemExit("SCARDD_TEST_DAEMON must be scardd or pcscd, not %r" % DAEMON_KIND)
IS_PCSCD = DAEMON_KIND == "pcscd"
# The ASan/UBSan run (scripts/run-tests --sanitize). ASan keeps freed memory
# in quarantine (up to 256 MB), so a daemon's RSS grows whatever it frees:
# RSS bounds mean nothing there, and LeakSanitizer's report when the daemon
# exits (any report fails the test that stopped it) is the leak check.
SANITIZED = bool(os.environ.get("SCARDD_SANITIZED"))


def rss_grew_within(grew_kb, bound_kb):
    """Whether an RSS growth is within its bound (always, under ASan: see SANITIZED)."""
    return SANITIZED or grew_kb < bound_kb
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
PYTHON = "/usr/bin/python3"
VPCD_LIB = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
VICC_BIN = "/usr/bin/vicc"
VICC_MODDIR = "/usr/lib/python3/site-packages/virtualsmartcard"
CRYPTODOME_DIR = "/usr/lib/python3/dist-packages/Cryptodome"
READER0 = "Virtual PCD 00 00"
READER1 = "Virtual PCD 00 01"
VICC_ATR = bytes.fromhex("3B95138101 8073FF01000B".replace(" ", ""))
START_TIMEOUT = float(os.environ.get("SCARDD_TEST_START_TIMEOUT", "30"))
TEST_WATCHDOG = float(os.environ.get("SCARDD_TEST_WATCHDOG", "300"))

SESSION_TMP = Path(tempfile.mkdtemp(prefix="scardd-it-"))


def _can_private_mount():
    """pcscd binds the compiled-in /run/pcscd/pcscd.comm: see pcscd_ns."""
    return pcscd_ns.private_mount_ok()


PCSCD_PRIVATE = IS_PCSCD and _can_private_mount()
if IS_PCSCD and not PCSCD_PRIVATE:
    SOCKET = PCSCD_SOCKET
else:
    SOCKET = str(SESSION_TMP / "run" / "pcscd.comm")
os.environ["PCSCLITE_CSOCK_NAME"] = SOCKET
# A scardd built with polkit asks the system bus: never the host's. The
# polkit tests bring their own bus and polkitd (polkit_env.py).
os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=%s" % (SESSION_TMP / "no-system-bus")

pcscd_only_xfail = pytest.mark.xfail  # re-exported for readability in tests


def scardd_only(reason):
    return pytest.mark.skipif(IS_PCSCD, reason="scardd-only: " + reason)


def xfail_pcscd(reason):
    return pytest.mark.xfail(IS_PCSCD, reason="pcscd: " + reason, strict=True)


# --- process hygiene -----------------------------------------------------------
_children = []  # every Popen we start; killed at session end whatever happens


def _die_with_parent():
    # the child gets SIGKILL if pytest itself dies (watchdog, ^C, crash)
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("preexec_fn", _die_with_parent)
    p = subprocess.Popen(argv, **kw)
    _children.append(p)
    return p


def stop_process(p, sig=signal.SIGTERM, timeout=10.0):
    """Stop a process we started; returns its exit status."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
    return p.returncode


def pytest_sessionfinish(session, exitstatus):
    for p in _children:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    if not os.environ.get("SCARDD_TEST_KEEP_TMP"):
        shutil.rmtree(SESSION_TMP, ignore_errors=True)


def _descendants(root):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Against hung tests (Debian 12 has no pytest-timeout by default): if a
    test, its fixtures included, runs TEST_WATCHDOG seconds, dump all stacks
    to a file and kill every process below pytest, which makes blocked
    libpcsclite calls return and the test fail. If even that does not help,
    faulthandler ends the whole run a little later."""
    dump = SESSION_TMP / "watchdog.txt"
    item._watchdog_fired = False
    marker = item.get_closest_marker("watchdog")
    budget = max(TEST_WATCHDOG, marker.args[0]) if marker else TEST_WATCHDOG
    item._watchdog_budget = budget

    def expire():
        item._watchdog_fired = True
        with open(dump, "a") as f:
            f.write("=== watchdog: %s still running after %.0fs\n" % (item.nodeid, budget))
            faulthandler.dump_traceback(file=f, all_threads=True)
        for p in _children:
            if p.poll() is None:
                p.kill()
        for pid in _descendants(os.getpid()):  # also what other fixtures started
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    t = threading.Timer(budget, expire)
    t.daemon = True
    t.start()
    faulthandler.dump_traceback_later(budget + 120, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        t.cancel()


@pytest.fixture(autouse=True)
def _watchdog(request):
    yield
    if getattr(request.node, "_watchdog_fired", False):
        dump = SESSION_TMP / "watchdog.txt"
        pytest.fail("watchdog: test hung for %.0fs; stacks:\n%s" % (request.node._watchdog_budget,
                                                                   dump.read_text()[-6000:]),
                    pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _client_lib_in_use():
    """SCARDD_TEST_CLIENT_LIB=DIR (with LD_LIBRARY_PATH=DIR): the run is meant
    to drive pyscard through that libpcsclite.so.1; prove it really does."""
    want = os.environ.get("SCARDD_TEST_CLIENT_LIB")
    if want:
        from smartcard import scard  # noqa: F401  (loads libpcsclite.so.1)
        loaded = {line.split()[-1] for line in open("/proc/self/maps") if "libpcsclite" in line}
        assert loaded and all(Path(p).resolve().parent == Path(want).resolve() for p in loaded), \
            "pyscard loaded %s, not the library in %s" % (sorted(loaded), want)
    yield


# --- ports -------------------------------------------------------------------
_used_ports = set()


def _port_free(port):
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port_pair():
    """A port p with p and p+1 free (vpcd: slot 0 on p, slot 1 on p+1)."""
    rnd = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(2000):
        p = rnd.randrange(20000, 60000, 2)
        if p in _used_ports or p + 1 in _used_ports:
            continue
        if _port_free(p) and _port_free(p + 1):
            _used_ports.update((p, p + 1))
            return p
    raise RuntimeError("no free port pair")


# --- vicc ----------------------------------------------------------------------
def vicc_env():
    """Environment that makes Debian's vicc importable: its modules are not on
    sys.path and it imports Crypto, which Debian ships as Cryptodome."""
    shim = SESSION_TMP / "pyshim"
    if not (shim / "Crypto").exists():
        shim.mkdir(parents=True, exist_ok=True)
        os.symlink(CRYPTODOME_DIR, shim / "Crypto")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(shim), VICC_MODDIR] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Card:
    """A vicc card for one vpcd slot. insert() starts vicc (vpcd sees a card),
    remove() kills it (vpcd sees the card go)."""

    def __init__(self, daemon, slot, atr=None, stock=False, verbose=True):
        self.daemon = daemon
        self.slot = slot
        self.port = daemon.port + slot
        self.reader = daemon.readers[slot]
        self.atr = atr
        self.stock = stock
        self.verbose = verbose
        self.proc = None
        self.inserted_count = 0

    @property
    def log(self):
        return self.daemon.dir / ("vicc%d.log" % self.slot)

    def argv(self):
        v = ["-vvv"] if self.verbose else []
        if self.stock:
            return [PYTHON, VICC_BIN, "-P", str(self.port), "-H", "127.0.0.1"] + v
        a = [PYTHON, str(HERE / "vicc_card.py"), "--port", str(self.port)] + v
        if self.atr:
            a += ["--atr", self.atr.hex()]
        return a

    def expected_atr(self):
        return self.atr or VICC_ATR

    def insert(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "card already inserted"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            logf = open(self.log, "ab")
            self.proc = spawn(self.argv(), env=vicc_env(), stdout=logf, stderr=subprocess.STDOUT)
            logf.close()
            # vicc exits at once if vpcd is not listening yet; retry then
            try:
                self.proc.wait(0.3)
            except subprocess.TimeoutExpired:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("vicc could not connect to vpcd on port %d; see %s" % (self.port, self.log))
            time.sleep(0.2)
        self.inserted_count += 1
        if wait:
            self.wait_state(present=True)

    def remove(self, wait=True):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)
            self.proc = None
        if wait:
            self.wait_state(present=False)

    def wait_state(self, present, timeout=START_TIMEOUT):
        def check():
            for rs in self.daemon.readers_state():
                if rs.name == self.reader:
                    if present:
                        return rs if (rs.present and rs.atr) else None
                    return rs if not rs.present else None
            return None
        return pcsc_raw.wait_for(check, timeout, what="%s %s" % (self.reader, "present" if present else "absent"))

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# --- daemon ---------------------------------------------------------------------
def scardd_binary():
    build = Path(os.environ.get("SCARDD_BUILD", REPO / "build"))
    if not build.is_absolute():
        build = REPO / build
    return build / "src" / "daemon" / "scardd"


def write_vpcd_conf(confdir, port, name="Virtual PCD"):
    confdir = Path(confdir)
    confdir.mkdir(parents=True, exist_ok=True)
    (confdir / "vpcd").write_text(
        'FRIENDLYNAME "%s"\nDEVICENAME   /dev/null:%d\nLIBPATH      %s\nCHANNELID    %d\n'
        % (name, port, VPCD_LIB, port))
    return confdir


class Daemon:
    """The session's daemon (DAEMON_KIND) on the session socket, or, with
    kind given, another one on its own socket (pcscd then needs a private
    mount namespace)."""

    def __init__(self, tmpdir, socket_path=None, log_level="debug", extra_args=(), kind=DAEMON_KIND):
        self.dir = Path(tmpdir)
        self.kind = kind
        if kind == DAEMON_KIND:
            self.private_run = PCSCD_PRIVATE
            self.socket = socket_path or SOCKET
        else:
            self.private_run = True
            self.socket = socket_path or str(self.dir / "run" / "pcscd.comm")
        self.port = free_port_pair()
        self.confdir = write_vpcd_conf(self.dir / "reader.conf.d", self.port)
        self.readers = [READER0, READER1]
        self.log = self.dir / ("%s.log" % self.kind)
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.proc = None
        self.cards = {}

    def argv(self):
        if self.kind == "pcscd":
            lvl = {"debug": "-d", "info": "-i", "error": "-e"}[self.log_level]
            argv = ["pcscd", "-f", lvl, "-c", str(self.confdir)] + self.extra_args
            if self.private_run:
                if not pcscd_ns.private_mount_ok():
                    pytest.skip("no-namespace: a pcscd beside the session's daemon needs a private "
                                "mount namespace (root and unshare)")
                assert os.path.basename(self.socket) == "pcscd.comm"
                argv = pcscd_ns.in_private_run(os.path.dirname(self.socket), argv)
            return argv
        binary = scardd_binary()
        if not binary.exists():
            pytest.fail("scardd not built: %s missing (run scripts/run-tests or set SCARDD_BUILD)" % binary,
                        pytrace=False)
        return scardd_argv(binary, "--foreground", "--socket", self.socket, "--config-dir", self.confdir,
                           "--" + self.log_level, *self.extra_args)

    def start(self):
        shared_run = self.kind == "pcscd" and not self.private_run
        if shared_run and pcsc_raw.socket_alive(PCSCD_SOCKET):
            pytest.fail("another daemon answers on %s; stop it first" % PCSCD_SOCKET, pytrace=False)
        if not shared_run:
            Path(self.socket).parent.mkdir(parents=True, exist_ok=True)
            if os.path.exists(self.socket) and not pcsc_raw.socket_alive(self.socket):
                os.unlink(self.socket)  # left by a previous test's daemon
        logf = open(self.log, "ab")
        self.proc = spawn(self.argv(), stdout=logf, stderr=subprocess.STDOUT)
        logf.close()

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s during start-up; log:\n%s"
                                   % (self.kind, self.proc.returncode, self.log_tail()))
            names = [rs.name for rs in pcsc_raw.readers_state(self.socket)]
            return all(r in names for r in self.readers)
        try:
            pcsc_raw.wait_for(ready, START_TIMEOUT, what="%s ready with readers %s" % (self.kind, self.readers))
        except TimeoutError as e:
            raise RuntimeError("%s; log:\n%s" % (e, self.log_tail()))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        for c in self.cards.values():
            c.remove(wait=False)
        if self.proc is None:
            return None
        rc = stop_process(self.proc, signal.SIGTERM, timeout=20)
        return rc

    def card(self, slot=0, **kw):
        if slot not in self.cards:
            self.cards[slot] = Card(self, slot, **kw)
        return self.cards[slot]

    def readers_state(self):
        return pcsc_raw.readers_state(self.socket)

    def reader_state(self, name):
        for rs in self.readers_state():
            if rs.name == name:
                return rs
        raise KeyError(name)

    def proc_status(self, key):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()
        return None

    def rss_kb(self):
        return int(self.proc_status("VmRSS").split()[0])

    def threads(self):
        return int(self.proc_status("Threads"))

    def open_fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def fd_targets(self):
        out = []
        for fd in sorted(os.listdir("/proc/%d/fd" % self.pid), key=int):
            try:
                out.append("%s->%s" % (fd, os.readlink("/proc/%d/fd/%s" % (self.pid, fd))))
            except OSError:
                pass
        return out

    def wait_fds(self, want, timeout=30.0, what="its clients left"):
        """Waits until the daemon holds no more than `want` open fds (it
        closes a gone client's socket when it notices; pcscd may first sleep
        2 s), and fails naming them if that does not happen within timeout.
        Fewer is fine: a count taken just after a client left may still
        include that client's socket (pcscd's client thread closes it a
        moment later); a leak shows as more."""
        try:
            pcsc_raw.wait_for(lambda: self.open_fds() <= want, timeout, what="fds back to %d" % want)
        except TimeoutError:
            have = self.fd_targets()
            raise AssertionError("%s holds %d fds after %s, %d before (a leaked descriptor?): %s"
                                 % (self.kind, len(have), what, want, have))

    def log_tail(self, n=60):
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def raw(self, timeout=10.0):
        return pcsc_raw.RawClient(self.socket, timeout=timeout)


def _keep_logs(d, request):
    keep = os.environ.get("SCARDD_TEST_LOGS")
    if keep:
        dst = Path(keep) / request.node.nodeid.replace("/", "_").replace("::", "__")
        shutil.copytree(d, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.comm"))


@pytest.fixture
def test_dir(request):
    d = Path(tempfile.mkdtemp(prefix="t-", dir=SESSION_TMP))
    yield d
    _keep_logs(d, request)
    shutil.rmtree(d, ignore_errors=True)


def _run_daemon(request, test_dir, **kw):
    d = Daemon(test_dir, **kw)
    d.start()
    try:
        yield d
    finally:
        crashed = not d.alive()
        rc = d.stop()
        if d.socket != PCSCD_SOCKET and os.path.exists(d.socket) and not pcsc_raw.socket_alive(d.socket):
            os.unlink(d.socket)
        if crashed:
            pytest.fail("%s died during the test (exit %s); log tail:\n%s" % (d.kind, rc, d.log_tail()),
                        pytrace=False)
        if d.kind == "scardd" and rc != 0:
            pytest.fail("scardd exited %s on SIGTERM (sanitizer report?); log tail:\n%s" % (rc, d.log_tail()),
                        pytrace=False)


@pytest.fixture
def daemon(request, test_dir):
    """A running daemon with vpcd's two readers and no card."""
    yield from _run_daemon(request, test_dir)


@pytest.fixture
def card(daemon):
    """vicc card (the stock ISO 7816 card + echo INS) inserted in slot 0."""
    c = daemon.card(0)
    c.insert()
    return c


@pytest.fixture
def quiet_daemon(request, test_dir):
    """Like `daemon`, logging errors only (for load tests)."""
    yield from _run_daemon(request, test_dir, log_level="error")


# --- pyscard helpers --------------------------------------------------------------
def hx(v):
    return "0x%08X" % (v & 0xFFFFFFFF)


# --- a PC/SC peer in another process ------------------------------------------------
class Peer:
    """Another process using libpcsclite (pyscard), driven by JSON lines.

    p.call(op, *args) runs one operation and returns its result dict;
    p.start(op, *args) returns an id; p.result(id) waits for it;
    p.pending(id, t) is True if no result arrived within t seconds.
    Each operation runs in its own thread in the peer, so a blocked call does
    not stop the next one (e.g. SCardCancel while SCardGetStatusChange waits).

    real_pcsclite.LibClient is one too, with its own environment (env()),
    lines that are not JSON skipped, a result() that returns None when
    nothing came, and shorter waits.
    """

    skip_non_json = False  # False: a line that is not JSON ends the reading thread
    close_wait = 5.0       # close(): how long the peer may take to exit before SIGKILL

    def __init__(self, socket_path, logdir, name="peer"):
        self.name = name
        self.stderr_path = Path(logdir) / ("%s.stderr" % name.replace(" ", "_"))
        self.stderr = open(self.stderr_path, "ab")
        self.proc = spawn([PYTHON, str(HERE / "pcsc_peer.py")], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=self.stderr, env=self.env(socket_path))
        self._next = 0
        self._results = {}
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def env(self, socket_path):
        env = dict(os.environ)
        env["PCSCLITE_CSOCK_NAME"] = str(socket_path)
        return env

    def _read(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                if self.skip_non_json:
                    continue
                raise
            with self._cv:
                self._results[msg["id"]] = msg
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def start(self, op, *args):
        self._next += 1
        rid = self._next
        self.proc.stdin.write((json.dumps({"id": rid, "op": op, "args": list(args)}) + "\n").encode())
        self.proc.stdin.flush()
        return rid

    def wait_result(self, rid, timeout):
        """The result dict of op `rid`, or None if none came within timeout.
        Raises RuntimeError if the peer died or the op failed."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while rid not in self._results:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError("%s died (exit %s): %s" % (self.name, self.proc.returncode,
                                                                  self.stderr_text()))
                self._cv.wait(min(left, 0.5))
            r = self._results.pop(rid)
        if "error" in r:
            raise RuntimeError("%s: op failed: %s" % (self.name, r["error"]))
        return r

    def result(self, rid, timeout=30.0):
        r = self.wait_result(rid, timeout)
        if r is None:
            raise TimeoutError("peer op %d gave no result in %.0fs" % (rid, timeout))
        return r

    def pending(self, rid, t):
        deadline = time.monotonic() + t
        with self._cv:
            while rid not in self._results:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._cv.wait(left)
        return False

    def call(self, op, *args, timeout=30.0):
        return self.result(self.start(op, *args), timeout)

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def kill(self):
        stop_process(self.proc, signal.SIGKILL)

    def close(self):
        """Ends the process: politely if it is idle, by SIGKILL if a call
        still blocks in it."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"id": 0, "op": "exit"}\n')
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(self.close_wait)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.proc, signal.SIGKILL)
        self.stderr.close()


@pytest.fixture
def peers(daemon, test_dir):
    made = []

    def make(name="peer%d" % len(made)):
        p = Peer(daemon.socket, test_dir, name="peer%d" % len(made))
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


@pytest.fixture
def new_ctx(daemon):
    """Factory of in-process PC/SC contexts (released at teardown)."""
    from smartcard import scard
    made = []

    def make():
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert hr == 0, "SCardEstablishContext: %s" % hx(hr)
        made.append(ctx)
        return ctx
    yield make
    # a call still blocked on a context (after a failed assertion) holds that
    # context's lock in libpcsclite: release from a side thread, never hang
    t = threading.Thread(target=lambda: [scard.SCardReleaseContext(c) for c in made], daemon=True)
    t.start()
    t.join(10)
