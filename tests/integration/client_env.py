"""Processes for the client-library tests: a daemon (scardd or Debian's pcscd)
with vpcd's two readers, vicc cards, and a way to run programs with our
libpcsclite.so.1 in place of Debian's.

Self-contained on purpose (the suite's conftest.py picks one daemon per run;
these tests compare both daemons in one run). Every process started here is
stopped by its PID; nothing is killed by name.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pcscd_ns
from scardd_argv import scardd_argv

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
DEBIAN_LIB = "/usr/lib/x86_64-linux-gnu/libpcsclite.so.1"
VPCD_LIB = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so.0.8"
VICC_BIN = "/usr/bin/vicc"
VICC_MODDIR = "/usr/lib/python3/site-packages/virtualsmartcard"
CRYPTODOME_DIR = "/usr/lib/python3/dist-packages/Cryptodome"
READER0 = "Virtual PCD 00 00"
READER1 = "Virtual PCD 00 01"
PCSCD_FREE_WAIT = float(os.environ.get("SCARDD_CLIENT_PCSCD_WAIT", "600"))

SCARD_PRESENT = 0x04
RECORD = 184
SLOTS = 16


def build_dir():
    b = Path(os.environ.get("SCARDD_BUILD", REPO / "build"))
    return b if b.is_absolute() else REPO / b


def client_lib_dir():
    return build_dir() / "src" / "client"


def our_lib():
    return client_lib_dir() / "libpcsclite.so.1"


def scardd_bin():
    return build_dir() / "src" / "daemon" / "scardd"


def stop_pid(proc, sig=signal.SIGTERM, timeout=10):
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    try:
        proc.send_signal(sig)
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


def port_pair_free(p):
    for port in (p, p + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port_pair():
    import random
    rnd = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(1000):
        p = rnd.randrange(30000, 60000, 2)
        if port_pair_free(p):
            return p
    raise RuntimeError("no free port pair")


def readers_state(sock_path, timeout=5.0):
    """The daemon's reader-state array over the raw 4:4 protocol:
    [(name, state, atr_bytes)] for the used slots."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(struct.pack("=II", 12, 0x11) + struct.pack("=iiI", 4, 4, 0))
        _recv(s, 12)
        s.sendall(struct.pack("=II", 0, 0x12))
        blob = _recv(s, RECORD * SLOTS)
    finally:
        s.close()
    out = []
    for i in range(SLOTS):
        rec = blob[i * RECORD:(i + 1) * RECORD]
        name = rec[:128].split(b"\0", 1)[0].decode(errors="replace")
        if not name:
            continue
        _, state, _ = struct.unpack_from("=IIi", rec, 128)
        atr_len = struct.unpack_from("=I", rec, 176)[0]
        out.append((name, state, rec[140:140 + min(atr_len, 33)]))
    return out


def _recv(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("daemon closed")
        buf += chunk
    return buf


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = pred()
            if r:
                return r
        except (OSError, ConnectionError) as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError("timed out waiting for %s (%s)" % (what, last))


def pcscd_running():
    return subprocess.run(["pgrep", "-x", "pcscd"], stdout=subprocess.DEVNULL).returncode == 0


class Daemon:
    """scardd on a private socket, or Debian's pcscd: in a private mount
    namespace where it can (pcscd_ns), else on its fixed socket."""

    def __init__(self, kind, workdir):
        self.kind = kind
        self.dir = Path(workdir)
        self.port = free_port_pair()
        self.conf = self.dir / "reader.conf.d"
        self.conf.mkdir(parents=True, exist_ok=True)
        (self.conf / "vpcd").write_text(
            'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:%d\nLIBPATH %s\nCHANNELID %d\n'
            % (self.port, VPCD_LIB, self.port))
        self.shared_run = kind == "pcscd" and not pcscd_ns.private_mount_ok()
        self.socket = PCSCD_SOCKET if self.shared_run else str(self.dir / "run" / "pcscd.comm")
        self.proc = None
        self.cards = []
        self.log = self.dir / ("%s.log" % kind)

    def argv(self):
        if self.kind == "pcscd":
            argv = ["pcscd", "-f", "-e", "-c", str(self.conf)]
            if self.shared_run:
                return argv
            (self.dir / "run").mkdir(parents=True, exist_ok=True)
            return pcscd_ns.in_private_run(self.dir / "run", argv)
        return scardd_argv(scardd_bin(), "--foreground", "--socket", self.socket,
                           "--config-dir", self.conf, "--error")

    def start(self, timeout=30):
        if self.shared_run:
            # Only one pcscd per machine (fixed socket); another suite may use it.
            wait_for(lambda: not pcscd_running(), PCSCD_FREE_WAIT, "no other pcscd running")
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s): %s" % (self.kind, self.proc.returncode,
                                                           self.log.read_text(errors="replace")[-2000:]))
            names = [n for n, _, _ in readers_state(self.socket)]
            return READER0 in names and READER1 in names
        wait_for(ready, timeout, "%s with the vpcd readers" % self.kind)
        return self

    def stop(self):
        for c in self.cards:
            c.remove()
        rc = stop_pid(self.proc)
        self.proc = None
        return rc

    def kill(self):
        rc = stop_pid(self.proc, signal.SIGKILL)
        self.proc = None
        return rc

    def env(self, ours=True):
        """Environment for a client program: our library (or Debian's) on this daemon."""
        env = dict(os.environ)
        env["PCSCLITE_CSOCK_NAME"] = self.socket
        env.pop("LD_PRELOAD", None)
        if ours:
            env["LD_LIBRARY_PATH"] = str(client_lib_dir())
        else:
            env.pop("LD_LIBRARY_PATH", None)
        return env

    def card(self, slot=0, kind="iso7816"):
        c = Card(self, slot, kind)
        self.cards.append(c)
        return c


class Card:
    def __init__(self, daemon, slot, kind):
        self.daemon = daemon
        self.slot = slot
        self.kind = kind
        self.reader = (READER0, READER1)[slot]
        self.proc = None
        self.log = daemon.dir / ("vicc%d.log" % slot)

    def env(self):
        shim = self.daemon.dir / "pyshim"
        if not (shim / "Crypto").exists():
            shim.mkdir(exist_ok=True)
            os.symlink(CRYPTODOME_DIR, shim / "Crypto")
        env = dict(os.environ)
        env["PYTHONPATH"] = "%s:%s" % (shim, VICC_MODDIR)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("LD_LIBRARY_PATH", None)
        return env

    def insert(self, timeout=30):
        deadline = time.monotonic() + timeout
        argv = [PYTHON, VICC_BIN, "-t", self.kind, "-P", str(self.daemon.port + self.slot)]
        while True:
            with open(self.log, "ab") as logf:
                self.proc = subprocess.Popen(argv, env=self.env(), stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=subprocess.STDOUT)
            try:
                self.proc.wait(0.5)  # exits at once if vpcd does not listen yet
            except subprocess.TimeoutExpired:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("vicc could not reach vpcd")
        wait_for(self.present, timeout, "card in %s" % self.reader)
        return self

    def present(self, atr_prefix=b""):
        for name, state, atr in readers_state(self.daemon.socket):
            if name == self.reader:
                return bool(state & SCARD_PRESENT) and len(atr) > 0 and atr.startswith(atr_prefix)
        return False

    def absent(self):
        for name, state, _ in readers_state(self.daemon.socket):
            if name == self.reader:
                return not state & SCARD_PRESENT
        return False

    def remove(self, wait=False):
        stop_pid(self.proc, signal.SIGKILL)
        self.proc = None
        if wait:
            wait_for(self.absent, 30, "no card in %s" % self.reader)


class Workdir:
    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="scardd-client-"))

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def run(argv, env, timeout=60, **kw):
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, **kw)


def loaded_libpcsclite(stderr_text):
    """The libpcsclite.so.1 paths the dynamic loader reported (LD_DEBUG=libs)."""
    found = set()
    for line in stderr_text.splitlines():
        if "calling init:" in line and "libpcsclite" in line:
            found.add(line.split("calling init:", 1)[1].strip())
    return found
