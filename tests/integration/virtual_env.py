"""Helpers for the ifd-virtual and scard integration tests.

A VirtualDaemon runs scardd or Debian's pcscd with ifd-virtual readers built
from a temporary configuration, and offers the scard tool, pyscard (in child
processes, since libpcsclite reads PCSCLITE_CSOCK_NAME once per process) and
pcsc_scan against it.

Environment: SCARDD_BUILD is the meson build directory (default <repo>/build).
pcscd always binds /run/pcscd/pcscd.comm; as root it runs in a private mount
namespace (pcscd_ns), so other pcscd processes do not matter. Without one, a
pcscd run waits until no other pcscd runs. Only ever stops its own PID.
"""
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import pcscd_ns
from scardd_argv import scardd_argv

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = Path(os.environ.get("SCARDD_BUILD", REPO / "build")).resolve()
SCARDD = BUILD / "src" / "daemon" / "scardd"
DRIVER = BUILD / "src" / "drivers" / "virtual" / "libifd-virtual.so"
SCARD = BUILD / "src" / "tools" / "scard"
BUNDLE = BUILD / "src" / "drivers" / "virtual" / "ifd-virtual.bundle"
DEMO_CARD = REPO / "src" / "drivers" / "virtual" / "cards" / "demo.card"
PYTHON = "/usr/bin/python3"
PCSCD = "/usr/sbin/pcscd"
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
DEBIAN_LIBPCSCLITE = "/usr/lib/x86_64-linux-gnu/libpcsclite.so.1"
PCSCD_FREE_TIMEOUT = float(os.environ.get("SCARDD_TEST_PCSCD_WAIT", "300"))

# ATR of the built-in card (atr T=0,T=1): historical bytes "vcard-01".
BUILTIN_ATR = bytes.fromhex("3B88800176636172642D303147")
DAEMONS = ["scardd", "pcscd"]


def _die_with_parent():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


def stop_pid(proc, timeout=10, sig=signal.SIGTERM):
    """Stops one process we started, by its PID only."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def other_pcscd_pids():
    """Live pcscd processes (zombies waiting for their parent do not count)."""
    r = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True)
    pids = []
    for p in r.stdout.split():
        try:
            stat = Path("/proc/%s/stat" % p).read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            pids.append(int(p))
    return pids


_our_pcscd = set()  # pcscd processes this test process started and has not stopped


def wait_pcscd_free(timeout=PCSCD_FREE_TIMEOUT):
    ours = [p.pid for p in _our_pcscd if p.poll() is None]
    if ours:
        raise RuntimeError("this test process already runs pcscd %s: a second one cannot "
                           "bind its socket (test layout bug)" % ours)
    deadline = time.monotonic() + timeout
    while other_pcscd_pids():
        if time.monotonic() > deadline:
            pytest.skip("no-namespace: without a private mount namespace (root and unshare) pcscd "
                        "needs the real /run/pcscd, and another pcscd (pid %s) kept it for %.0f s"
                        % (other_pcscd_pids(), timeout))
        time.sleep(0.5)


def driver_is_sanitized():
    try:
        return b"__asan_init" in DRIVER.read_bytes()
    except OSError:
        return False


# --- ifd-virtual's configuration and control channel ------------------------------
# (also used by real_pcsclite.py and test_protocol_clients.py)
def virtual_conf(readers, control=None, cards=None, fast=None):
    """The text of one ifd-virtual configuration file: `readers` slots, the
    control socket path, {slot: card} inserted at start, fast (True/False;
    None leaves the driver's default)."""
    lines = ["readers = %d" % readers]
    if fast is not None:
        lines.append("fast = %s" % ("yes" if fast else "no"))
    if control:
        lines.append("control = %s" % control)
    lines += ["card.%d = %s" % (slot, card) for slot, card in (cards or {}).items()]
    return "\n".join(lines) + "\n"


def reader_stanza(friendly, device, libpath, channel=None):
    """One reader.conf stanza (pcscd's format, which scardd reads too)."""
    text = 'FRIENDLYNAME "%s"\nDEVICENAME %s\nLIBPATH %s\n' % (friendly, device, libpath)
    if channel is not None:
        text += "CHANNELID %d\n" % channel
    return text


def control_command(path, line, check=False, timeout=10):
    """Sends one command line to the ifd-virtual control socket at path and
    returns its answer, read up to the final "ok..." or "error..." line.
    check: assert the answer is ok."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.fspath(path))
        s.sendall(line.encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            last = data.decode(errors="replace").rstrip("\n").split("\n")[-1]
            if data.endswith(b"\n") and (last.startswith("ok") or last.startswith("error")):
                break
    finally:
        s.close()
    text = data.decode(errors="replace")
    if check:
        assert text.rstrip("\n").split("\n")[-1].startswith("ok"), "control %r: %s" % (line, text)
    return text


class VirtualDaemon:
    """One daemon (scardd or pcscd) with one or more ifd-virtual readers."""

    def __init__(self, kind, readers=2, cards=None, fast=False, friendly="Virtual Reader",
                 extra_instances=(), driver=DRIVER, poll_ms=None, args=()):
        if kind not in DAEMONS:
            raise ValueError(kind)
        self.kind = kind
        self.poll_ms = poll_ms  # scardd's --poll-ms (pcscd's period is fixed)
        self.args = list(args)  # more of scardd's options
        self.wrap = []  # scardd's argv runs behind this one (a namespace, say)
        self.driver = Path(driver)
        self.dir = Path(tempfile.mkdtemp(prefix="vt-%s-" % kind))
        self.confdir = self.dir / "reader.conf.d"
        self.confdir.mkdir()
        self.proc = None
        self.log_file = None
        self.instances = []
        self.add_instance(friendly, readers, cards if cards is not None else {0: "builtin"},
                          fast)
        for spec in extra_instances:
            self.add_instance(**spec)
        self.shared_run = kind == "pcscd" and not pcscd_ns.private_mount_ok()
        self.socket = PCSCD_SOCKET if self.shared_run else str(self.dir / "run" / "pcscd.comm")

    # -- configuration --
    def add_instance(self, friendly, readers=1, cards=None, fast=False, control=True,
                     write_stanza=True):
        idx = len(self.instances)
        conf = self.dir / ("virtual%d.conf" % idx)
        ctl = str(self.dir / ("ctl%d.sock" % idx)) if control else None
        conf.write_text(virtual_conf(readers, ctl, cards, fast=bool(fast)))
        inst = {"friendly": friendly, "readers": readers, "conf": conf, "control": ctl}
        self.instances.append(inst)
        if write_stanza:
            self.write_stanza(idx)
        return inst

    def write_stanza(self, idx):
        inst = self.instances[idx]
        (self.confdir / ("virtual%d" % idx)).write_text(
            reader_stanza(inst["friendly"], inst["conf"], self.driver))

    @property
    def control(self):
        return self.instances[0]["control"]

    def reader(self, slot, instance=0):
        return "%s 00 %02X" % (self.instances[instance]["friendly"], slot)

    def cpu_seconds(self):
        """User + system CPU time the daemon has used so far."""
        f = Path("/proc/%d/stat" % self.proc.pid).read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def log(self):
        return (self.dir / "daemon.log").read_text(errors="replace")

    # -- life cycle --
    def start(self, expect_readers=None):
        try:
            return self._start(expect_readers)
        except BaseException:
            self.cleanup()  # pytest.skip too: leave no process or directory behind
            raise

    def _start(self, expect_readers):
        if self.kind == "pcscd":
            if driver_is_sanitized():
                pytest.skip("sanitizer: a sanitizer-built driver cannot load into Debian's pcscd")
            argv = [PCSCD, "-f", "-d", "-c", str(self.confdir)]
            if self.shared_run:
                wait_pcscd_free()
            else:
                (self.dir / "run").mkdir(exist_ok=True)
                argv = pcscd_ns.in_private_run(self.dir / "run", argv)
        else:
            poll = ["--poll-ms", str(self.poll_ms)] if self.poll_ms else []
            argv = scardd_argv(SCARDD, "--foreground", "--debug", "--socket", self.socket,
                               "--config-dir", self.confdir, *poll, *self.args)
            argv = self.wrap + argv
        self.log_file = open(self.dir / "daemon.log", "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                     env=self.env())
        if self.kind == "pcscd":
            _our_pcscd.add(self.proc)
        want = expect_readers
        if want is None:
            want = sum(i["readers"] for i in self.instances)
        self.wait_readers(want)
        return self

    def wait_readers(self, count, timeout=20):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s):\n%s" % (self.kind, self.proc.returncode,
                                                           self.log[-4000:]))
            r = self.scard("list", json=True)
            last = r
            if r.returncode == 0 and len(json.loads(r.stdout)["readers"]) >= count:
                return
            time.sleep(0.2)
        raise RuntimeError("%s did not show %d readers: %r\n%s" % (self.kind, count, last,
                                                                   self.log[-4000:]))

    def stop(self, sig=signal.SIGTERM):
        stop_pid(self.proc, sig=sig)
        _our_pcscd.discard(self.proc)
        self.proc = None
        if self.log_file:
            self.log_file.close()
            self.log_file = None
            # a sanitizer build reports into the daemon's log: fail loudly
            log = self.log
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in log:
                    i = log.index(marker)
                    raise AssertionError("%s log:\n%s" % (self.kind, log[max(0, i - 200):i + 4000]))

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # -- clients --
    def env(self, client_lib=None):
        env = dict(os.environ)
        env["PCSCLITE_CSOCK_NAME"] = self.socket
        env.pop("SCARD_VIRTUAL_CONTROL", None)
        if client_lib == "debian":
            libdir = self.dir / "debian-lib"
            libdir.mkdir(exist_ok=True)
            link = libdir / "libpcsclite.so.1"
            if not link.exists():
                link.symlink_to(DEBIAN_LIBPCSCLITE)
            env["LD_LIBRARY_PATH"] = str(libdir)
        return env

    def scard(self, *args, json=False, timeout=30, client_lib=None, env=None, input=None):
        argv = [str(SCARD)] + (["--json"] if json else []) + [str(a) for a in args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=env or self.env(client_lib), input=input)

    def scard_json(self, *args, **kw):
        r = self.scard(*args, json=True, **kw)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)

    def control_cmd(self, line, instance=0):
        """Talks to the driver's control socket directly (no scard involved)."""
        return control_command(self.instances[instance]["control"], line)

    def reset_cards(self):
        """Reader 0: built-in card, reader 1 (if any): empty; nothing muted or fast."""
        inst = self.instances[0]
        for slot in range(inst["readers"]):
            self.control_cmd("unmute %d" % slot)
            self.control_cmd("fast %d off" % slot)
        r = self.scard("virtual", "insert", self.reader(0), "builtin")
        assert r.returncode == 0, (r.stdout, r.stderr)
        for slot in range(1, inst["readers"]):
            r = self.scard("virtual", "remove", self.reader(slot))
            assert r.returncode == 0, (r.stdout, r.stderr)

    def py(self, code, timeout=30, check=True):
        """Runs Python (pyscard) in a child process against this daemon."""
        r = subprocess.run([PYTHON, "-c", textwrap.dedent(code)], capture_output=True,
                           text=True, timeout=timeout, env=self.env())
        if check:
            assert r.returncode == 0, (r.stdout, r.stderr)
        return r

    def spawn_py(self, code):
        return subprocess.Popen([PYTHON, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(), preexec_fn=_die_with_parent)

    def hold(self, reader, share="EXCLUSIVE"):
        """A pyscard process holding reader (SHARED or EXCLUSIVE) until stopped."""
        p = self.spawn_py(HOLD % (reader, share))
        line = p.stdout.readline()
        assert line.strip() == "HELD 0x0", (line, p.stderr.read() if p.poll() else "")
        return p


class LineReader:
    """Collects a child's stdout lines on a thread so tests can wait for them."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out; lines so far:\n" + "".join(self.lines))
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("process ended; lines:\n" + "".join(self.lines))
            if predicate(line):
                return line


# pyscard snippet: wait for a state change on one reader and print how long it took.
WAIT_CHANGE = """
import sys, time
from smartcard.scard import *
reader = sys.argv[1] if len(sys.argv) > 1 else %r
hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
assert hr == 0, hr
hr, st = SCardGetStatusChange(ctx, 0, [(reader, SCARD_STATE_UNAWARE)])
assert hr == 0, hr
cur = st[0][1] & ~SCARD_STATE_CHANGED
print("READY", hex(cur), flush=True)
t0 = time.monotonic()
hr, st = SCardGetStatusChange(ctx, 15000, [(reader, cur)])
print("CHANGED", hr, hex(st[0][1]), bytes(st[0][2]).hex().upper(), "%%.3f" %% (time.monotonic() - t0), flush=True)
"""

HOLD = """
import sys
from smartcard.scard import *
hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
hr, h, p = SCardConnect(ctx, %r, SCARD_SHARE_%s, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
print("HELD", hex(hr & 0xFFFFFFFF), flush=True)
sys.stdin.read()
"""


# Fixtures shared by the virtual-driver suites: one daemon per module and
# daemon kind, with two readers and the built-in card in the first.
@pytest.fixture(scope="module", params=DAEMONS)
def vd(request):
    d = VirtualDaemon(request.param, readers=2, cards={0: "builtin"})
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def fresh(vd):
    vd.reset_cards()
    return vd
