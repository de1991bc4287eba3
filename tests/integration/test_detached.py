"""scardd started without --foreground: it detaches (daemon()) and logs
through syslog(3).

syslog(3) writes to /dev/log. Each test runs scardd in a private mount
namespace whose /dev is a fresh tmpfs holding the few device nodes a daemon
opens (bind-mounted from the real /dev) and, as /dev/log, a datagram socket
the test reads: the daemon's log lines arrive there, nowhere else. A child
subreaper (subreaper.py) adopts the detached daemon, so the test learns both
the exit status of the command it ran and the daemon's own.
"""
import json
import os
import queue
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import pcsc_raw as raw
from conftest import HERE, IS_PCSCD, PYTHON, Peer, scardd_binary, spawn, stop_process
from fault_driver import DRIVER
from proto_client import ProtoClient
from scardd_argv import scardd_argv

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: scardd's own start-up and log")

TIMEOUT = 30.0  # a bound on what should happen at once, never a measurement
LOG_DAEMON = 3 << 3
LOG_CRIT, LOG_ERR, LOG_INFO, LOG_DEBUG = 2, 3, 6, 7

# sh -c: private /dev with our socket as /dev/log, then exec the daemon ($@)
PRIVATE_DEV = r'''
set -e
mkdir -p "$0/realdev"
mount --rbind /dev "$0/realdev"
mount -t tmpfs -o mode=0755 scardd-test-dev /dev
for n in null zero full random urandom; do
    touch "/dev/$n"
    mount --bind "$0/realdev/$n" "/dev/$n"
done
touch /dev/log
mount --bind "$0/log.sock" /dev/log
umount -l "$0/realdev"
exec "$@"
'''

# "<PRI>Mmm dd hh:mm:ss ident[pid]: message", as glibc's syslog() sends it
SYSLOG_LINE = re.compile(r"<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d ([^\[:]+)\[(\d+)\]: (.*)", re.S)


class SyslogSocket:
    """The test's /dev/log: a datagram socket whose messages are parsed as
    (priority, ident, pid, text)."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.lines = []
        self.raw = []
        self._q = queue.Queue()
        self._stop = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            data = self.sock.recv(65536).decode(errors="replace")
            self.raw.append(data)
            m = SYSLOG_LINE.match(data)
            if m:
                self._q.put((int(m.group(1)), m.group(2), int(m.group(3)), m.group(4).rstrip("\n")))

    def wait(self, pattern, timeout=TIMEOUT):
        """The first line whose text matches pattern (a regex), with every
        line read so far kept in self.lines."""
        for line in self.lines:
            if re.search(pattern, line[3]):
                return line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no syslog line matching %r in %.0f s; got:\n%s"
                                     % (pattern, timeout, "\n".join(self.raw[-30:])))
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            self.lines.append(line)
            if re.search(pattern, line[3]):
                return line

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()


class Detached:
    """scardd run without --foreground under subreaper.py in a private /dev."""

    def __init__(self, workdir, args):
        self.dir = Path(workdir)
        self.stderr_path = self.dir / "scardd.stderr"
        self.syslog = SyslogSocket(self.dir / "log.sock")
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", PRIVATE_DEV,
                str(self.dir)] + scardd_argv(scardd_binary(), *args)
        self.reaper = spawn([PYTHON, str(HERE / "subreaper.py"), str(self.stderr_path), "--"] + argv,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.events = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.reaper.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def next_event(self, what):
        try:
            ev = self.events.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no %s within %.0f s" % (what, TIMEOUT)) from None
        assert ev is not None, "subreaper ended before %s" % what
        assert "error" not in ev, ev["error"]
        return ev

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def close(self):
        try:
            self.reaper.stdin.close()  # kills whatever is left
        except OSError:
            pass
        stop_process(self.reaper)
        self.syslog.close()


@pytest.fixture
def detached(test_dir):
    if not scardd_binary().exists():
        pytest.fail("scardd not built: %s" % scardd_binary(), pytrace=False)
    made = []

    def start(*args):
        d = Detached(test_dir, args)
        made.append(d)
        return d
    yield start
    for d in made:
        d.close()
        print("---- syslog ----\n" + "\n".join(d.syslog.raw))


def fault_conf(test_dir):
    """A reader.conf.d with one fault-driver reader holding a card."""
    ctl = test_dir / "reader"
    ctl.mkdir()
    (ctl / "card0").write_text("")
    conf = test_dir / "reader.conf.d"
    conf.mkdir()
    (conf / "fault").write_text('FRIENDLYNAME "Detached"\nDEVICENAME %s\nLIBPATH %s\n' % (ctl, DRIVER))
    return conf


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().split(b"\0")


def test_detached_daemon_serves_logs_to_syslog_and_stops_on_sigterm(detached, test_dir):
    sock = str(test_dir / "run" / "pcscd.comm")
    d = detached("--socket", sock, "--config-dir", str(fault_conf(test_dir)), "--debug")

    ev = d.next_event("the exit of the command that was run")
    assert ev["exit"] == 0, "scardd exited %s before serving; stderr:\n%s" % (ev["exit"], d.stderr())
    assert d.stderr() == "", "a detaching scardd wrote to stderr:\n" + d.stderr()

    pri, ident, pid, text = d.syslog.wait(r"^scardd .* listening on " + re.escape(sock))
    assert (ident, pri) == ("scardd", LOG_DAEMON | LOG_INFO)
    assert pid != ev["parent"], "the daemon did not detach: its log comes from the parent"
    argv = cmdline(pid)
    assert argv[0] == str(scardd_binary()).encode() and sock.encode() in argv
    with open("/proc/%d/stat" % pid) as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid == d.reaper.pid, "the daemon is not the detached child (parent %d)" % ppid
    assert os.getsid(pid) == pid, "the daemon is no session leader: daemon() did not setsid()"

    line = d.syslog.wait(r"^reader added: Detached 00 00$")
    assert line[:3] == (LOG_DAEMON | LOG_INFO, "scardd", pid)

    # a client: served, and its connection logged at debug level
    names = [rs.name for rs in raw.readers_state(sock)]
    assert names == ["Detached 00 00"]
    line = d.syslog.wait(r"^client \d+ connected: pid %d uid 0" % os.getpid())
    assert line[:3] == (LOG_DAEMON | LOG_DEBUG, "scardd", pid)
    with raw.RawClient(sock) as c:
        ctx = c.hello()
        rv, card, proto = c.connect(ctx, "Detached 00 00")
        assert rv == 0, "CONNECT: 0x%08X" % rv
        rv, resp = c.transmit(card, bytes.fromhex("00A4040000"), protocol=proto)
        assert rv == 0 and resp == bytes.fromhex("00A40400009000")

    # a client error, logged at LOG_ERR
    with raw.RawClient(sock) as c:
        c.send(raw.header(0x7F, 0))
        c.wait_closed()
    line = d.syslog.wait(r"^client \d+ \(pid %d\): unknown command 0x0000007F" % os.getpid())
    assert line[:3] == (LOG_DAEMON | LOG_ERR, "scardd", pid)

    # the pid file names the detached daemon, not the command that was run
    pid_file = test_dir / "run" / "pcscd.pid"
    assert pid_file.read_text().strip() == str(pid)

    os.kill(pid, signal.SIGTERM)
    ev = d.next_event("the daemon's exit after SIGTERM")
    assert ev == {"orphan": pid, "exit": 0}, ev
    assert not os.path.exists(sock), "the detached daemon left its socket behind"
    assert not pid_file.exists(), "the detached daemon left its pid file behind"
    line = d.syslog.wait(r"^scardd stopped$")
    assert line[:3] == (LOG_DAEMON | LOG_INFO, "scardd", pid)


def blocked_socket(test_dir):
    """A socket path whose parent directory is a regular file."""
    (test_dir / "not-a-dir").write_text("")
    return str(test_dir / "not-a-dir" / "pcscd.comm")


def test_detached_startup_error_fails_the_command_and_is_logged(detached, test_dir):
    sock = blocked_socket(test_dir)
    d = detached("--socket", sock, "--config-dir", str(test_dir))
    ev = d.next_event("the exit of the command that was run")
    assert ev["exit"] != 0, "scardd reported success although it cannot serve %s" % sock
    pri, ident, pid, text = d.syslog.wait(re.escape(sock))
    assert (ident, pri) == ("scardd", LOG_DAEMON | LOG_CRIT), (pri, ident, text)
    assert pid == ev["parent"], "the error came from another process than the one run"
    assert d.events.get(timeout=TIMEOUT) is None, "something was left running"


def test_detached_startup_error_reaches_stderr(detached, test_dir):
    sock = blocked_socket(test_dir)
    d = detached("--socket", sock, "--config-dir", str(test_dir))
    ev = d.next_event("the exit of the command that was run")
    assert ev["exit"] != 0
    err = d.stderr()
    assert sock in err and "Not a directory" in err, \
        "stderr of a failed detached start:\n%r" % err


def test_detached_missing_config_fails_on_stderr(detached, test_dir):
    """-c naming nothing stops the start as with pcscd (which says so in
    syslog only): the command exits non-zero, the reason on its stderr and
    in syslog, no socket made, nothing left running."""
    sock = str(test_dir / "run" / "pcscd.comm")
    missing = str(test_dir / "no-such-reader.conf.d")
    d = detached("--socket", sock, "-c", missing)
    ev = d.next_event("the exit of the command that was run")
    assert ev["exit"] != 0
    err = d.stderr()
    assert missing in err and "No such file or directory" in err, "stderr:\n%r" % err
    pri, ident, pid, text = d.syslog.wait(re.escape(missing))
    assert (ident, pri) == ("scardd", LOG_DAEMON | LOG_CRIT), (pri, ident, text)
    assert not os.path.exists(sock)
    assert d.events.get(timeout=TIMEOUT) is None, "something was left running"


def scard_status(sock, json_out=True):
    """Our `scard status` for the daemon on sock (our libpcsclite underneath)."""
    scard = scardd_binary().parents[1] / "tools" / "scard"
    argv = [str(scard)] + (["--json"] if json_out else []) + ["status"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                       env=dict(os.environ, PCSCLITE_CSOCK_NAME=sock))
    assert r.returncode == 0, "scard status exited %d:\n%s%s" % (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout) if json_out else r.stdout


def peer_pid(sock):
    """The pid SO_PEERCRED gives a client of sock: whoever last called listen() on it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock)
        pid, _uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid


def stop_if_left(pid, sock):
    """SIGKILL for the detached daemon of a test that failed before stopping it
    (it is nobody's child: only its pid names it, checked against its socket)."""
    try:
        if sock.encode() in cmdline(pid):
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def test_scard_status_after_a_detached_start(detached, test_dir):
    """scard status names the detached daemon (the pid /proc, the pid file and
    the socket's peer credentials agree on, not the pid of the command that
    was run), an uptime that does not go back, the sockets with their
    options, and each connected client with the protocol it is served in:
    Debian's libpcsclite 1.9.9 (4:4) and a raw big-endian 4:2 client on a
    readers=48 socket."""
    sock = str(test_dir / "run" / "pcscd.comm")
    sock48 = str(test_dir / "run" / "old.comm")
    d = detached("--socket", sock, "--socket", sock48 + ":readers=48,mode=0660",
                 "--config-dir", str(fault_conf(test_dir)), "--debug")
    ev = d.next_event("the exit of the command that was run")
    assert ev["exit"] == 0, "scardd exited %s before serving; stderr:\n%s" % (ev["exit"], d.stderr())
    pid = d.syslog.wait(r"^serving clients with")[2]
    try:
        assert pid != ev["parent"]
        assert (test_dir / "run" / "pcscd.pid").read_text().strip() == str(pid)
        assert cmdline(pid)[0] == str(scardd_binary()).encode()
        # bound by the parent before daemon(), the sockets still name the daemon as their peer
        assert peer_pid(sock) == pid and peer_pid(sock48) == pid

        debian = Peer(sock, test_dir, name="debian-client")
        old = None
        try:
            assert debian.call("establish")["hr"] == 0
            old = ProtoClient(sock48, version="4:2", order="big", readers=48)
            old.hello()

            first = scard_status(sock)
            st = scard_status(sock)
            human = scard_status(sock, json_out=False)
        finally:
            if old:
                old.close()
            debian.close()

        for doc in (first, st):
            assert doc["daemon"]["pid"] == pid and doc["scardd"]["pid"] == pid, doc
        report = st["scardd"]
        assert report["uid"] == 0
        assert st["scardd"]["uptime_ms"] >= first["scardd"]["uptime_ms"] >= 0
        assert [s["path"] for s in report["sockets"]] == [sock, sock48]
        assert (report["sockets"][0]["readers"], report["sockets"][0]["mode"]) == ("auto", "0666")
        assert (report["sockets"][1]["readers"], report["sockets"][1]["mode"]) == (48, "0660")

        by_pid = {c["pid"]: c for c in report["clients"]}
        deb = by_pid[debian.proc.pid]
        assert deb["program"] == os.path.realpath(PYTHON)
        assert (deb["socket"], deb["protocol"], deb["byte_order"], deb["arrays"]) == \
            (sock, "4:4", "little-endian", 16), deb
        assert deb["contexts"] == 1 and deb["uid"] == os.getuid()
        raw42 = by_pid[os.getpid()]
        assert (raw42["socket"], raw42["protocol"], raw42["byte_order"], raw42["arrays"]) == \
            (sock48, "4:2", "big-endian", 48), raw42
        assert len(report["clients"]) == 2, report["clients"]  # scard's own connections are not listed

        assert re.search(r"^daemon: +scardd, pid %d, uid 0$" % pid, human, re.M), human
        assert re.search(r"^uptime: +\S", human, re.M), human
        assert re.search(r"^  %s  \(readers=48, names=128, mode=0660\)$" % re.escape(sock48), human, re.M), human
        assert re.search(r"^  \d+: %s \(pid %d, uid %d\) on %s: protocol 4:4, little-endian, "
                         r"16-record reader arrays; context" % (re.escape(os.path.realpath(PYTHON)),
                                                                debian.proc.pid, os.getuid(), re.escape(sock)),
                         human, re.M), human

        os.kill(pid, signal.SIGTERM)
        assert d.next_event("the daemon's exit after SIGTERM") == {"orphan": pid, "exit": 0}
    finally:
        stop_if_left(pid, sock)
