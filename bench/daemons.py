"""The daemons under test, both on the same readers: scardd from the build
directory and Debian's pcscd, each loading bench's ifd_instant driver from
one reader.conf.d.

pcscd 1.9.9 always binds /run/pcscd/pcscd.comm, so it runs in a private
mount namespace (needs root) where a directory of ours is mounted on
/run/pcscd. Every process is stopped by its PID.
"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import pcsc_raw  # noqa: E402
from scardd_argv import scardd_argv  # noqa: E402

READERS = 4
FRIENDLY = "Instant %d"


def build_dir():
    b = Path(os.environ.get("SCARDD_BUILD", REPO / "build"))
    return b if b.is_absolute() else REPO / b


def write_config(confdir, driver):
    """One single-slot reader per stanza, all on the same driver library."""
    confdir.mkdir(parents=True, exist_ok=True)
    text = "".join('FRIENDLYNAME "%s"\nDEVICENAME instant:slots=1\nLIBPATH %s\nCHANNELID %d\n\n'
                   % (FRIENDLY % i, driver, i) for i in range(READERS))
    (confdir / "instant.conf").write_text(text)


def stop_pid(proc, timeout=20):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Daemon:
    def __init__(self, kind, workdir, confdir):
        self.kind = kind
        self.dir = Path(workdir) / kind
        self.rundir = self.dir / "run"
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.rundir / ("pcscd.comm" if kind == "pcscd" else "scardd.comm"))
        self.confdir = confdir
        self.log = self.dir / ("%s.log" % kind)
        self.proc = None
        self.readers = []

    def argv(self):
        if self.kind == "scardd":
            # as root with --user root: drivers as root, as pcscd 1.9.9's beside it;
            # no polkit, as Debian's pcscd (accepted by a build without it too)
            return scardd_argv(build_dir() / "src" / "daemon" / "scardd", "--foreground",
                               "--socket", self.socket, "--config-dir", self.confdir, "--error",
                               "--disable-polkit")
        if os.geteuid() != 0 or not shutil.which("unshare"):
            raise SystemExit("pcscd binds /run/pcscd/pcscd.comm; run as root (with unshare) so "
                             "that it can run in a private mount namespace")
        # unshare and sh exec: the PID we hold is pcscd's own.
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mkdir -p /run/pcscd && mount --bind "$0" /run/pcscd && exec "$@"',
                str(self.rundir), "pcscd", "--foreground", "--error", "-c", str(self.confdir)]

    def start(self, timeout=30):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s during start-up; log:\n%s"
                                   % (self.kind, self.proc.returncode, self.log_tail()))
            states = pcsc_raw.readers_state(self.socket)
            present = [rs.name for rs in states if rs.present and rs.atr]
            return present if len(present) == READERS else None
        try:
            self.readers = pcsc_raw.wait_for(ready, timeout, what="%s with %d instant cards"
                                             % (self.kind, READERS))
        except TimeoutError as e:
            self.stop()
            raise RuntimeError("%s; log:\n%s" % (e, self.log_tail()))
        comm = Path("/proc/%d/comm" % self.pid).read_text().strip()
        if comm != self.kind:
            self.stop()
            raise RuntimeError("PID %d is %r, not %s" % (self.pid, comm, self.kind))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def status_field(self, name):
        for line in Path("/proc/%d/status" % self.pid).read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise RuntimeError("no %s in /proc/%d/status" % (name, self.pid))

    def rss_kb(self):
        return self.status_field("VmRSS")

    def threads(self):
        return self.status_field("Threads")

    def env(self):
        env = dict(os.environ)
        env["PCSCLITE_CSOCK_NAME"] = self.socket
        env.pop("LD_PRELOAD", None)
        env.pop("LD_LIBRARY_PATH", None)
        return env

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        stop_pid(self.proc)
        if self.proc is not None and self.proc.returncode not in (0, -signal.SIGTERM):
            print("note: %s exited with %s; log tail:\n%s"
                  % (self.kind, self.proc.returncode, self.log_tail()), file=sys.stderr)

    def log_tail(self, n=30):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"
