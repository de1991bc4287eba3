"""Harness for tests that drive scardd with the fault-injection IFD handler.

The driver (tests/drivers/ifd_fault.c, built as
$SCARDD_BUILD/tests/drivers/libifd_fault.so) is steered through files in one
control directory per reader stanza: FaultReader wraps such a directory.
Rig owns everything a test starts (temp dir, daemons, client processes) and
tears it down, failed test or not.

Client code runs in subprocesses of /usr/bin/python3 with PCSCLITE_CSOCK_NAME
in their own environment: libpcsclite reads it once per process, so the pytest
process itself never talks PC/SC. Clients speak one JSON object per line on
stdout; long-lived ones take commands on stdin.

Self-contained on purpose: nothing here depends on conftest.py.
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import pcscd_ns
from scardd_argv import scardd_argv

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = Path(os.environ.get("SCARDD_BUILD", REPO / "build"))
SCARDD = BUILD / "src" / "daemon" / "scardd"
DRIVER = BUILD / "tests" / "drivers" / "libifd_fault.so"
PYTHON = "/usr/bin/python3"

TIMEOUT = 30.0          # generous bound on anything that should happen "now"
WAIT_MS = 30000         # a GetStatusChange that must be woken, not time out
SCARD_E_TIMEOUT = 0x8010000A
SCARD_E_UNSUPPORTED_FEATURE = 0x8010001F  # pcsc-lite's value, as Debian's pcscd sends it
SCARD_W_UNRESPONSIVE_CARD = 0x80100066
SCARD_W_UNPOWERED_CARD = 0x80100067
SCARD_STATE_CHANGED = 0x0002
SCARD_STATE_EMPTY = 0x0010
SCARD_STATE_PRESENT = 0x0020
SCARD_STATE_MUTE = 0x0200


def skip_unless_built():
    if os.environ.get("SCARDD_TEST_DAEMON", "scardd") != "scardd":
        pytest.skip("scardd-only: the fault-driver tests pass scardd --socket/--config-dir")
    if not SCARDD.exists():
        pytest.skip("not-built: scardd %s missing (set SCARDD_BUILD)" % SCARDD)
    if not DRIVER.exists():
        pytest.skip("not-built: fault driver %s missing (meson needs subdir('tests/drivers'))"
                    % DRIVER)


def hx(v):
    return "0x%08X" % (v & 0xFFFFFFFF)


def wait_for(check, timeout=TIMEOUT, what="condition", step=0.05):
    end = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


def _die_with_parent():
    # the child gets SIGKILL if pytest dies, so nothing outlives a crashed run
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# --- the reader's control directory ------------------------------------------

class FaultReader:
    """One reader stanza: its control directory and its reader names."""

    def __init__(self, root, name, slots=1, events=False, cards=(), fail_open=False):
        self.name = name
        self.slots = slots
        self.dir = Path(tempfile.mkdtemp(prefix="r-", dir=root))
        self.index = None  # "XX" in "Name XX YY", set by Rig.daemon
        self.fail_open = fail_open
        self.lib = DRIVER
        if slots != 1:
            (self.dir / "slots").write_text("%d\n" % slots)
        if events:
            (self.dir / "events").touch()
        if fail_open:
            (self.dir / "fail_open").touch()
        for slot in cards:
            self.insert(slot)

    def reader(self, slot=0, index=None):
        if index is None:
            index = self.index or 0
        return "%s %02X %02X" % (self.name, index, slot)

    def stanza(self):
        return ('FRIENDLYNAME "%s"\nDEVICENAME %s\nLIBPATH %s\nCHANNELID 0\n\n'
                % (self.name, self.dir, self.lib))

    def _flag(self, name, on):
        p = self.dir / name
        if on:
            p.touch()
        elif p.exists():
            p.unlink()

    def insert(self, slot=0, atr=None):
        # write then rename: the driver never reads a half-written ATR
        tmp = self.dir / (".card%d.tmp" % slot)
        tmp.write_text(atr.hex(" ") if atr else "")
        tmp.rename(self.dir / ("card%d" % slot))

    def remove(self, slot=0):
        self._flag("card%d" % slot, False)

    def mute(self, slot=0, on=True):
        self._flag("mute%d" % slot, on)

    def leak_on_close(self, on=True):
        self._flag("leak_on_close", on)

    def pps_fail(self, slot=0, on=True):
        self._flag("pps_fail%d" % slot, on)

    def hang(self, on=True):
        self._flag("hang", on)

    def hang_presence(self, on=True):
        self._flag("hang_presence", on)

    def hang_open(self, on=True):
        self._flag("hang_open", on)

    def calls(self, kind, slot=None):
        """How many times the driver entry point `kind` was called (per slot)."""
        try:
            lines = (self.dir / "calls").read_text().splitlines()
        except FileNotFoundError:
            return 0
        want = "%s %d" % (kind, slot) if slot is not None else None
        return sum(1 for ln in lines
                   if (ln == want if want else ln.split(" ", 1)[0] == kind))

    def release(self):
        """Unblock whatever the driver is stuck in (teardown)."""
        self.hang(False)
        self.hang_presence(False)
        self._flag("wait_hold", False)


# --- scardd ------------------------------------------------------------------

class LogFile:
    """log() and log_tail() of a process whose output goes to self.log_path
    (also test_protocol_clients.Scardd's)."""

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])


class Daemon(LogFile):
    """scardd, or (kind="pcscd") Debian's pcscd in a private mount namespace
    with its /run/pcscd in this daemon's directory, to check what pcsc-lite
    does with the same driver."""

    def __init__(self, rig, readers, extra_args=(), kind="scardd", env=None):
        self.rig = rig
        self.readers = readers
        self.kind = kind
        self.expected_rc = 0  # an exit status the test asked for (Rig.cleanup checks)
        self.dir = Path(tempfile.mkdtemp(prefix="d-", dir=rig.root))
        self.socket = str(self.dir / "pcscd.comm")
        self.confdir = self.dir / "reader.conf.d"
        self.confdir.mkdir()
        (self.confdir / "fault").write_text("".join(r.stanza() for r in readers))
        self.log_path = self.dir / ("%s.log" % kind)
        if kind == "pcscd":
            if os.environ.get("SCARDD_SANITIZED"):
                pytest.skip("sanitizer: a sanitizer-built fault driver cannot load into Debian's pcscd")
            if not pcscd_ns.private_mount_ok():
                pytest.skip("no-namespace: pcscd beside other daemons needs root and unshare")
            argv = pcscd_ns.in_private_run(self.dir, ["pcscd", "-f", "-d", "-c", str(self.confdir)])
        else:
            argv = scardd_argv(SCARDD, "--foreground", "--debug", "--socket", self.socket,
                               "--config-dir", self.confdir, *extra_args)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                     env=dict(os.environ, **(env or {})))

    @property
    def pid(self):
        return self.proc.pid

    def wait_readers(self, names=(), count=0, timeout=TIMEOUT):
        """Waits until the daemon lists every reader in names and at least count
        readers; returns its full list."""
        def ready():
            assert self.proc.poll() is None, \
                "scardd exited (rc %s):\n%s" % (self.proc.returncode, self.log_tail())
            if not os.path.exists(self.socket):
                return None
            res = self.rig.run(self, LIST_READERS, timeout=timeout)
            got = res[-1].get("readers") or []
            return got if set(names) <= set(got) and len(got) >= count else None
        return wait_for(ready, timeout, "readers %s (%d at least)" % (sorted(names), count),
                        step=0.2)

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


# --- clients -----------------------------------------------------------------

# Shared by every client script: JSON lines out, commands in, small waits.
CLIENT_PRELUDE = r'''
import json, sys, time
from smartcard import scard as s

def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def command():
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    return line.split()

def context():
    hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    if hr:
        out(error="SCardEstablishContext", hr=hr)
        sys.exit(1)
    return ctx

def state_of(ctx, name):
    hr, st = s.SCardGetStatusChange(ctx, 0, [(name, s.SCARD_STATE_UNAWARE)])
    return st[0][1] if hr == 0 else 0

def wait_bits(ctx, name, mask, timeout_ms=30000):
    """Blocks until the reader's state has every bit of mask; returns the state."""
    end = time.monotonic() + timeout_ms / 1000.0
    cur = state_of(ctx, name)
    while (cur & mask) != mask and time.monotonic() < end:
        hr, st = s.SCardGetStatusChange(ctx, 1000, [(name, cur & ~s.SCARD_STATE_CHANGED)])
        if hr == 0:
            cur = st[0][1]
    return cur

def connect(ctx, name, share=s.SCARD_SHARE_SHARED,
            proto=s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1):
    hr, card, active = s.SCardConnect(ctx, name, share, proto)
    return hr, card, active
'''

LIST_READERS = r'''
ctx = context()
hr, readers = s.SCardListReaders(ctx, [])
out(hr=hr, readers=readers if hr == 0 else [])
'''

# Watches the readers named in argv. Commands:
#   wait I       block in SCardGetStatusChange on reader I from its last state
#   until I M    wait until reader I's state has all bits of M (hex)
WATCHER = r'''
ctx = context()
names = sys.argv[1:]
hr, st = s.SCardGetStatusChange(ctx, 0, [(n, s.SCARD_STATE_UNAWARE) for n in names])
cur = dict((n, e) for n, e, a in st) if hr == 0 else {}
out(hr=hr, states=[cur.get(n, 0) for n in names])
while True:
    c = command()
    n = names[int(c[1])]
    if c[0] == "wait":
        out(waiting=n)
        hr, st = s.SCardGetStatusChange(ctx, 30000, [(n, cur[n] & ~s.SCARD_STATE_CHANGED)])
        if hr == 0:
            cur[n] = st[0][1]
        out(hr=hr, state=st[0][1] if hr == 0 else 0, atr=list(st[0][2]) if hr == 0 else [])
    elif c[0] == "until":
        cur[n] = wait_bits(ctx, n, int(c[2], 16))
        out(state=cur[n])
'''


class Client:
    """A client subprocess speaking JSON lines."""

    def __init__(self, rig, daemon, code, args=()):
        env = dict(os.environ, PCSCLITE_CSOCK_NAME=daemon.socket)
        self.stderr_path = Path(tempfile.mkstemp(prefix="client-", suffix=".err",
                                                 dir=rig.root)[1])
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([PYTHON, "-c", CLIENT_PRELUDE + code] + list(args),
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, preexec_fn=_die_with_parent)
        self.lines = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self):
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                self.lines.put({"garbage": raw.decode(errors="replace")})
        self.lines.put(None)  # EOF

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def send(self, *words):
        self.proc.stdin.write((" ".join(str(w) for w in words) + "\n").encode())
        self.proc.stdin.flush()

    def next(self, what="its next answer", timeout=TIMEOUT):
        """The next JSON line; fails on timeout or if the client ended first."""
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("client blocked: no %s in %.0f s; stderr:\n%s"
                                 % (what, timeout, self.stderr())) from None
        if msg is None:
            self.lines.put(None)
            raise AssertionError("client ended (rc %s) before %s; stderr:\n%s"
                                 % (self.proc.wait(10), what, self.stderr()))
        return msg

    def pending(self):
        """True if the client has written nothing not yet read."""
        return self.lines.empty()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._err.close()


# --- the rig -----------------------------------------------------------------

class Rig:
    def __init__(self):
        # short path: the socket must fit in sun_path (108 bytes)
        self.root = tempfile.mkdtemp(prefix="scardd-fault-")
        self.readers = []
        self.daemons = []
        self.clients = []

    def reader(self, name, **kw):
        r = FaultReader(self.root, name, **kw)
        if not r.fail_open:  # a daemon over all of the rig's readers names them so
            r.index = sum(1 for o in self.readers if not o.fail_open)
        self.readers.append(r)
        return r

    def daemon(self, readers, extra_args=(), wait=None, kind="scardd", env=None):
        """Starts scardd (or pcscd) over the stanzas of readers, with env added
        to the environment; waits for the reader names in wait."""
        # Like pcscd, "XX" numbers the opened readers of one driver library in order.
        per_lib = {}
        for r in readers:
            if not r.fail_open:
                r.index = per_lib.get(r.lib, 0)
                per_lib[r.lib] = r.index + 1
        d = Daemon(self, readers, extra_args, kind, env)
        self.daemons.append(d)
        if wait:
            d.wait_readers(wait)
        return d

    def client(self, daemon, code, args=()):
        c = Client(self, daemon, code, args)
        self.clients.append(c)
        return c

    def run(self, daemon, code, args=(), timeout=TIMEOUT):
        """Runs a client to its end; returns its JSON lines."""
        env = dict(os.environ, PCSCLITE_CSOCK_NAME=daemon.socket)
        try:
            res = subprocess.run([PYTHON, "-c", CLIENT_PRELUDE + code] + list(args), env=env,
                                 stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=timeout, preexec_fn=_die_with_parent)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("client did not finish in %.0f s; stderr:\n%s"
                                 % (timeout, (e.stderr or b"").decode(errors="replace")))
        assert res.returncode == 0, "client failed (rc %d):\n%s" % (
            res.returncode, res.stderr.decode(errors="replace"))
        return [json.loads(ln) for ln in res.stdout.decode().splitlines() if ln.strip()]

    def watcher(self, daemon, names):
        """A WATCHER client; returns (client, initial states)."""
        w = self.client(daemon, WATCHER, names)
        first = w.next()
        assert first["hr"] == 0, "initial SCardGetStatusChange: %s" % hx(first["hr"])
        return w, first["states"]

    def cleanup(self):
        for r in self.readers:
            r.release()
        for c in self.clients:
            c.close()
        bad = []
        for d in self.daemons:
            rc = d.stop()
            # shown by pytest only when the test failed
            print("---- %s %s (rc %s) log tail ----\n%s" % (d.kind, d.socket, rc, d.log_tail(80)))
            if d.kind == "scardd" and rc not in (0, d.expected_rc):
                bad.append("scardd %s exited %s on SIGTERM (a sanitizer report?):\n%s"
                           % (d.socket, rc, d.log_tail(40)))
        keep = os.environ.get("SCARDD_TEST_LOGS")
        if keep:
            dst = Path(keep) / ("fault-" + os.path.basename(self.root))
            shutil.copytree(self.root, dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.comm"))
        shutil.rmtree(self.root, ignore_errors=True)
        if bad:
            pytest.fail("\n".join(bad), pytrace=False)
