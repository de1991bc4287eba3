"""scardd as systemd runs it, on a machine where systemd is not PID 1:

* socket activation by systemd-socket-activate (systemd's own tool: it
  binds the sockets, and on the first connection execs scardd in its place
  with LISTEN_FDS): Debian's pcsc_scan starts scardd; several sockets are
  matched to --socket options by path;
* readiness and stopping notifications on the test's own $NOTIFY_SOCKET;
* --auto-exit under socket activation, with socket_activator.py standing in
  for systemd (it keeps the sockets and starts the service again on the next
  connection, which systemd-socket-activate cannot show);
* the unit files, checked by systemd-analyze verify as installed;
* the command lines of Debian's pcscd.service and of scardd.service with
  scardd under systemd-socket-activate.

scardd-only: pcscd 1.9.9 is the reference only through its unit file."""
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import pcsc_raw as raw
from conftest import IS_PCSCD, REPO, spawn, stop_process
from scardd_argv import scardd_argv
from virtual_env import DEBIAN_LIBPCSCLITE, PCSCD, SCARDD, VirtualDaemon

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: scardd under systemd")

HERE = Path(__file__).resolve().parent
SYSUSERS = REPO / "systemd" / "scardd.sysusers.conf"
TMPFILES = REPO / "systemd" / "scardd.tmpfiles.conf"
BUILD = SCARDD.parents[2]
SOCKET_ACTIVATE = "/usr/bin/systemd-socket-activate"
SYSTEM_UNITS = Path("/lib/systemd/system")
PCSCD_SERVICE = SYSTEM_UNITS / "pcscd.service"
PCSCD_SOCKET = SYSTEM_UNITS / "pcscd.socket"
AUTO_EXIT_MS = 1500  # SCARDD_TEST_AUTO_EXIT_MS: the test-only replacement of pcscd's 60 s
WAIT = 30
# what a sanitizer build needs to find in scardd's environment
# (systemd-socket-activate passes only PATH, HOME, TERM and its -E variables)
FORWARDED = ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")


def need(path, kind, what):
    if not os.path.exists(path):
        pytest.skip("%s: %s (%s missing)" % (kind, what, path))


def wait_until(predicate, what, timeout=WAIT):
    """what: text, or a function giving it, for the failure message."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + (what() if callable(what) else what))
        time.sleep(0.05)


def exe(pid):
    return os.path.realpath("/proc/%d/exe" % pid)


@pytest.fixture
def vd():
    """Configuration of two ifd-virtual readers, a card in the first (the
    daemon is started by each test's activator, not by VirtualDaemon)."""
    d = VirtualDaemon("scardd", readers=2, cards={0: "builtin"})
    (d.dir / "run").mkdir()
    yield d
    d.cleanup()


class Activated:
    """systemd-socket-activate listening on `listen`, to exec scardd with
    `args` on the first connection: the pid stays the same throughout.
    As root (no run_as) with `--user root` unless keep_root is false."""

    def __init__(self, vd, listen, args, env=None, prefix=(), activate_opts=(), run_as=(), keep_root=True):
        need(SOCKET_ACTIVATE, "missing-package", "systemd's systemd-socket-activate")
        self.logfile = vd.dir / "activate.log"
        argv = list(prefix) + [SOCKET_ACTIVATE] + list(activate_opts)
        for path in listen:
            argv += ["-l", str(path)]
        for name in FORWARDED:
            if name in os.environ:
                argv += ["-E", name]
        # a path that must stay unused: the sockets are systemd's, and a
        # scardd that ignored them would bind this, not the host's /run/pcscd
        self.elsewhere = vd.dir / "elsewhere.comm"
        env = dict({"PCSCLITE_CSOCK_NAME": str(self.elsewhere)}, **(env or {}))
        for name, value in env.items():
            argv += ["-E", "%s=%s" % (name, value)]
        argv += list(run_as) + scardd_argv(SCARDD, *args, keep_root=keep_root and not run_as)
        with open(self.logfile, "ab") as f:
            self.proc = spawn(argv, stdout=f, stderr=subprocess.STDOUT)

    def log(self):
        return self.logfile.read_text(errors="replace")

    def wait_listening(self, count=1):
        """Until systemd-socket-activate listens (it logs after listen())."""
        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("exited %s:\n%s" % (self.proc.returncode, self.log()))
            return self.log().count("Listening on ") >= count
        wait_until(listening, lambda: "systemd-socket-activate to listen:\n" + self.log())

    def stop(self):
        rc = stop_process(self.proc, signal.SIGTERM, timeout=20)
        assert rc == 0, "exit status %s on SIGTERM:\n%s" % (rc, self.log()[-3000:])
        assert not self.elsewhere.exists(), "$PCSCLITE_CSOCK_NAME used instead of systemd's socket"
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in self.log(), self.log()[-6000:]


class Scan:
    """Debian's pcsc_scan -n with Debian's libpcsclite1, its output collected."""

    def __init__(self, vd, socket_path):
        need("/usr/bin/pcsc_scan", "missing-peer", "pcsc-tools' pcsc_scan")
        need(DEBIAN_LIBPCSCLITE, "missing-peer", "Debian's libpcsclite1")
        env = vd.env(client_lib="debian")
        env["PCSCLITE_CSOCK_NAME"] = str(socket_path)
        self.proc = spawn(["stdbuf", "-o0", "-e0", "pcsc_scan", "-n"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env)
        self.out = b""
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return
            self.out += chunk

    def text(self):
        return self.out.decode(errors="replace").replace("\r", "\n")

    def wait_for(self, pattern):
        rx = re.compile(pattern, re.S)

        def seen():
            if rx.search(self.text()):
                return True
            if self.proc.poll() is not None and not self.t.is_alive():
                raise AssertionError("pcsc_scan ended without %r:\n%s" % (pattern, self.text()[-3000:]))
            return False
        wait_until(seen, lambda: "%r in pcsc_scan's output:\n%s" % (pattern, self.text()[-3000:]))

    def stop(self):
        stop_process(self.proc, signal.SIGTERM, timeout=10)


def client_sees(path, vd, timeout=WAIT):
    """A raw 4:4 client's reader list, after checking the array had 16
    records exactly: a longer one would leave bytes that the next answer,
    a context id, would be read from (zeros)."""
    with raw.RawClient(str(path), timeout=timeout) as c:
        c.hello()
        names = sorted(r.name for r in c.readers_state() if r.name)
        rv, ctx = c.establish()
        assert rv == 0 and ctx != 0, "the reader array was longer than 16 records on %s" % path
    assert names == [vd.reader(0), vd.reader(1)], names
    return names


# --- socket activation -------------------------------------------------------------

def test_pcsc_scan_starts_scardd_on_its_first_connection(vd):
    """Nothing but systemd-socket-activate runs until Debian's pcsc_scan
    connects; then scardd serves it the virtual readers and card, on the
    inherited socket (which it leaves in place when it stops) with its pid
    file next to it."""
    sock = vd.dir / "run" / "pcscd.comm"
    pid_file = vd.dir / "run" / "pcscd.pid"
    a = Activated(vd, [sock], ["--foreground", "--info", "-c", vd.confdir])
    scan = None
    try:
        a.wait_listening()
        assert sock.exists()
        assert exe(a.proc.pid) == os.path.realpath(SOCKET_ACTIVATE), "started before any client"
        assert not pid_file.exists()
        scan = Scan(vd, sock)
        scan.wait_for(r"0: %s\s*\n\s*1: %s" % (re.escape(vd.reader(0)), re.escape(vd.reader(1))))
        scan.wait_for(r"Reader 0: %s\s+Event number: \d+\s+Card state: Card inserted,\s+ATR: 3B 88 80 01"
                      % re.escape(vd.reader(0)))
        assert exe(a.proc.pid) == str(SCARDD.resolve())
        assert pid_file.read_text().strip() == str(a.proc.pid)
        assert "socket %s from systemd (descriptor 3" % sock in a.log()
    finally:
        if scan:
            scan.stop()
        a.stop()
    assert sock.exists(), "scardd removed the socket systemd owns"
    assert not pid_file.exists()


# Debian's libpcsclite through pyscard; prints one JSON object.
PYSCARD_CLIENT = r'''
import json, sys
from smartcard import scard as s
out = {}
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
out["establish"] = hr
hr, out["readers"] = s.SCardListReaders(ctx, [])
hr, card, proto = s.SCardConnect(ctx, sys.argv[1], s.SCARD_SHARE_SHARED,
                                 s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
out["connect"] = hr
if hr == 0:
    hr, resp = s.SCardTransmit(card, proto, json.loads(sys.argv[2]))
    out["transmit"], out["sw"] = hr, resp[-2:]
print(json.dumps(out))
'''
# SELECT of ifd-virtual's built-in card application
SELECT = [0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 0x73, 0x63, 0x61, 0x72, 0x64, 0x64]


def pyscard_client(vd, sock, activated):
    """PYSCARD_CLIENT with Debian's libpcsclite on sock; its JSON output."""
    env = vd.env(client_lib="debian")
    env["PCSCLITE_CSOCK_NAME"] = str(sock)
    r = subprocess.run(["/usr/bin/python3", "-c", PYSCARD_CLIENT, vd.reader(0), json.dumps(SELECT)],
                       capture_output=True, text=True, timeout=WAIT * 2, env=env)
    assert r.returncode == 0, r.stdout + r.stderr + activated.log()[-3000:]
    return json.loads(r.stdout)


def test_pyscard_client_starts_scardd(vd):
    """Debian's libpcsclite under pyscard, as the first client: its
    connection starts scardd, which lists the readers and runs an APDU on
    the card for it."""
    need(DEBIAN_LIBPCSCLITE, "missing-peer", "Debian's libpcsclite1")
    sock = vd.dir / "run" / "pcscd.comm"
    a = Activated(vd, [sock], ["--foreground", "-c", vd.confdir])
    try:
        a.wait_listening()
        out = pyscard_client(vd, sock, a)
        assert out["establish"] == 0 and out["readers"] == [vd.reader(0), vd.reader(1)], out
        assert out["connect"] == 0 and out["transmit"] == 0 and out["sw"] == [0x90, 0x00], out
        assert exe(a.proc.pid) == str(SCARDD.resolve())
    finally:
        a.stop()
    assert sock.exists()


def test_slow_card_known_to_the_first_client(vd):
    """A card that takes 700 ms to answer its power-up: the client whose
    connection starts scardd still finds it in the reader, with its ATR
    (the readers are announced once their cards have been looked at)."""
    need(DEBIAN_LIBPCSCLITE, "missing-peer", "Debian's libpcsclite1")
    conf = vd.instances[0]["conf"]
    conf.write_text(conf.read_text() + "atr_delay.0 = 700\n")
    sock = vd.dir / "run" / "pcscd.comm"
    a = Activated(vd, [sock], ["--foreground", "--info", "-c", vd.confdir])
    try:
        a.wait_listening()
        out = pyscard_client(vd, sock, a)
        assert out["connect"] == 0 and out["transmit"] == 0 and out["sw"] == [0x90, 0x00], (out, a.log())
        log = a.log()
        assert log.index("card inserted into %s" % vd.reader(0)) < log.index("serving clients"), log
    finally:
        a.stop()


def test_several_inherited_sockets_matched_by_path(vd):
    """Three sockets from systemd; --socket names two of them, in another
    order than systemd's, one with readers=48: each socket gets the options
    of the --socket with its path, the third is served with default options
    (and a log line), and the pid file follows the first --socket."""
    run = vd.dir / "run"
    a_sock, b_sock, c_sock = run / "a.comm", run / "b.comm", run / "c.comm"
    a = Activated(vd, [a_sock, b_sock, c_sock],
                  ["--foreground", "--info", "--socket", "%s:readers=48" % b_sock, "--socket", a_sock,
                   "-c", vd.confdir])
    try:
        a.wait_listening(3)
        client_sees(a_sock, vd)
        with raw.RawClient(str(b_sock), timeout=WAIT) as c:
            c.hello()
            c.send(raw.header(raw.CMD_GET_READERS_STATE, 0))
            recs = raw.parse_readers(c.recv_exact(3 * raw.READERS_ARRAY_SIZE))  # 48 records
            assert sorted(r.name for r in recs if r.name) == [vd.reader(0), vd.reader(1)]
            rv, ctx = c.establish()
            assert rv == 0 and ctx != 0, "more than 48 records on %s" % b_sock
        client_sees(c_sock, vd)
        assert exe(a.proc.pid) == str(SCARDD.resolve())  # one daemon for the three
        assert "socket %s from systemd is named by no --socket: serving it with default options" \
            % c_sock in a.log()
        assert (run / "b.pid").read_text().strip() == str(a.proc.pid)
    finally:
        a.stop()
    assert a_sock.exists() and b_sock.exists() and c_sock.exists()
    assert not (run / "b.pid").exists()


def test_socket_not_passed_is_bound_by_scardd(vd):
    """A --socket systemd did not pass is bound by scardd itself, next to
    the one it did (and removed when scardd stops, unlike systemd's)."""
    run = vd.dir / "run"
    passed, own = run / "passed.comm", run / "own.comm"
    a = Activated(vd, [passed], ["--foreground", "--info", "--socket", passed, "--socket", own,
                                 "-c", vd.confdir])
    try:
        a.wait_listening()
        client_sees(passed, vd)
        client_sees(own, vd)
        assert "--socket %s is not among the sockets systemd passed" % own in a.log()
    finally:
        a.stop()
    assert passed.exists() and not own.exists()


def test_unusable_inherited_descriptor_is_an_error(vd):
    """A datagram socket from systemd is not something scardd can serve: it
    says so and exits non-zero, rather than serving nothing."""
    sock = vd.dir / "run" / "dgram.sock"
    a = Activated(vd, [sock], ["--foreground", "-c", vd.confdir], activate_opts=["--datagram"])
    try:
        a.wait_listening()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"x", str(sock))
        s.close()
        rc = a.proc.wait(WAIT)
    finally:
        stop_process(a.proc, signal.SIGKILL)
    assert rc == 1, a.log()
    assert "descriptor 3 from systemd" in a.log() and "is not a stream socket" in a.log(), a.log()


# --- readiness and stopping ------------------------------------------------------------

@pytest.fixture(params=["path", "abstract"])
def notify(request, vd):
    """The test's own $NOTIFY_SOCKET: (its value, the datagram socket)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        value = str(vd.dir / "notify")
        s.bind(value)
    else:
        name = "scardd-test-notify-%d-%s" % (os.getpid(), vd.dir.name)
        s.bind("\0" + name)
        value = "@" + name
    yield value, s
    s.close()


def recv_message(s, timeout=WAIT):
    s.settimeout(timeout)
    return dict(line.split("=", 1) for line in s.recv(4096).decode().split("\n") if line)


def test_ready_before_the_first_answer_and_stopping_on_sigterm(vd, notify):
    """READY=1 (with a STATUS line) reaches $NOTIFY_SOCKET before scardd
    answers its first client: a datagram is queued when sendto returns, so
    it must be waiting once the answer has come. SIGTERM brings STOPPING=1."""
    value, ns = notify
    sock = vd.dir / "run" / "pcscd.comm"
    a = Activated(vd, [sock], ["--foreground", "-c", vd.confdir], env={"NOTIFY_SOCKET": value})
    try:
        a.wait_listening()
        ns.setblocking(False)
        with pytest.raises(BlockingIOError):
            ns.recv(4096)  # nothing before the first connection: scardd is not running
        with raw.RawClient(str(sock), timeout=WAIT) as c:
            c.hello()
            ns.setblocking(False)
            msg = dict(line.split("=", 1) for line in ns.recv(4096).decode().split("\n") if line)
            assert msg.get("READY") == "1", msg
            assert msg.get("STATUS") == "Serving 2 reader(s) on 1 socket(s)", msg
            assert "MAINPID" not in msg  # in the foreground, scardd is the process started
        a.proc.send_signal(signal.SIGTERM)
        msg = recv_message(ns)
        assert msg.get("STOPPING") == "1", msg
        assert a.proc.wait(WAIT) == 0, a.log()
    finally:
        a.stop()


def test_detached_scardd_names_its_main_pid(vd, notify):
    """Without --foreground scardd detaches: its READY=1 carries MAINPID, the
    pid of the process that serves (the one in the pid file)."""
    value, ns = notify
    sock = vd.dir / "run" / "pcscd.comm"
    pid_file = vd.dir / "run" / "pcscd.pid"
    a = Activated(vd, [sock], ["-c", vd.confdir], env={"NOTIFY_SOCKET": value})
    main = None
    try:
        a.wait_listening()
        client_sees(sock, vd)
        msg = recv_message(ns)
        assert msg.get("READY") == "1", msg
        main = int(msg["MAINPID"])
        assert main != a.proc.pid and a.proc.wait(WAIT) == 0  # the parent left after daemon()
        assert exe(main) == str(SCARDD.resolve())
        wait_until(pid_file.exists, str(pid_file))
        assert pid_file.read_text().strip() == str(main)
        os.kill(main, signal.SIGTERM)
        assert recv_message(ns).get("STOPPING") == "1"
        wait_until(lambda: not os.path.exists("/proc/%d" % main), "scardd %d to exit" % main)
        main = None
    finally:
        if not main and pid_file.exists():  # detached, but READY=1 never said so
            main = int(pid_file.read_text())
        if main and exe(main) == str(SCARDD.resolve()):
            os.kill(main, signal.SIGKILL)
        a.stop()


# --- --auto-exit under socket activation ----------------------------------------------

class Activator:
    """socket_activator.py: the sockets stay with it, the service comes and goes."""

    def __init__(self, vd, listen, args, env=None):
        self.logfile = vd.dir / "service.log"
        argv = ["/usr/bin/python3", str(HERE / "socket_activator.py"), "--log", str(self.logfile)]
        for path in listen:
            argv += ["--listen", str(path)]
        argv += ["--"] + scardd_argv(SCARDD, *args)
        self.proc = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, **(env or {})))
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def next_event(self):
        try:
            ev = self.events.get(timeout=WAIT + AUTO_EXIT_MS / 1000)
        except queue.Empty:
            raise AssertionError("no event from the activator:\n" + self.log()[-3000:])
        assert ev is not None, "the activator ended:\n" + self.log()[-3000:]
        return ev

    def log(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self):
        stop_process(self.proc, signal.SIGTERM, timeout=30)


def test_auto_exit_leaves_the_socket_to_the_activator(vd):
    """--auto-exit under socket activation, twice: a client's connection
    starts scardd, which says READY=1 on $NOTIFY_SOCKET and has written its
    pid file by then; once the last client left it says STOPPING=1 and exits
    (status 0) with its pid file removed and the socket left to the
    activator (it is not scardd's), and the next connection starts a new
    scardd on it."""
    sock = vd.dir / "run" / "pcscd.comm"
    pid_file = vd.dir / "run" / "pcscd.pid"
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(str(vd.dir / "notify"))
    act = Activator(vd, [sock], ["--foreground", "--info", "--auto-exit", "-c", vd.confdir],
                    env={"SCARDD_TEST_AUTO_EXIT_MS": str(AUTO_EXIT_MS), "NOTIFY_SOCKET": str(vd.dir / "notify")})
    try:
        assert act.next_event() == {"listening": [str(sock)]}
        pids = []
        for n in (1, 2):
            with raw.RawClient(str(sock), timeout=WAIT) as held:
                held.hello()  # its connection starts scardd, and keeps it from leaving
                ev = act.next_event()
                assert "started" in ev, ev
                pids.append(ev["started"])
                msg = recv_message(ns)
                assert msg.get("READY") == "1", msg
                assert pid_file.read_text().strip() == str(pids[-1])
                client_sees(sock, vd)
            # the last client left: the idle wait, then the exit
            assert recv_message(ns, WAIT + AUTO_EXIT_MS / 1000).get("STOPPING") == "1"
            ev = act.next_event()
            assert ev == {"exited": pids[-1], "status": 0}, (ev, act.log()[-3000:])
            assert act.log().count("(--auto-exit): exiting") == n, act.log()[-3000:]
            assert sock.exists(), "scardd removed the socket the activator owns"
            assert not pid_file.exists()
        assert pids[0] != pids[1]
    finally:
        act.stop()
        ns.close()
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in act.log(), act.log()[-6000:]


# --- the unit files -------------------------------------------------------------------

def installed_units():
    """{unit name: (built file, where meson installs it)}, from meson itself."""
    meson = shutil.which("meson")
    if not meson:
        pytest.skip("missing-package: meson")
    r = subprocess.run([meson, "introspect", "--installed", str(BUILD)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    units = {Path(src).name: (Path(src), Path(dst)) for src, dst in json.loads(r.stdout).items()
             if Path(src).name in ("scardd.socket", "scardd.service")}
    if len(units) != 2:
        pytest.skip("not-built: the systemd units are not configured (-Dsystemd=disabled?): %s" % units)
    return units


def unit_keys(path):
    keys = {}
    for line in Path(path).read_text().splitlines():
        k, sep, v = line.strip().partition("=")
        if sep and not k.startswith("#"):
            keys.setdefault(k, []).append(v)
    return keys


def sysusers_account():
    """(user, group) the tree's sysusers.d entry creates: `u NAME ...` makes a
    group of the same name."""
    for line in SYSUSERS.read_text().splitlines():
        f = line.split()
        if f and f[0] == "u":
            return f[1], f[1]
    raise AssertionError("no user in %s" % SYSUSERS)


def test_units_say_what_they_should():
    """scardd.socket listens where pcscd.socket does, as openly; the service
    is pcscd.service's command line with readiness notification, run as the
    account the tree's sysusers.d entry creates, with the socket's directory
    given to it and kept when scardd leaves; both conflict with pcscd's
    units, so that either side stops the other."""
    units = installed_units()
    sock = unit_keys(units["scardd.socket"][0])
    pcscd_listen = (unit_keys(PCSCD_SOCKET)["ListenStream"] if PCSCD_SOCKET.exists()
                    else ["/run/pcscd/pcscd.comm"])
    assert sock["ListenStream"] == pcscd_listen and sock["SocketMode"] == ["0666"], sock
    assert "pcscd.socket" in sock["Conflicts"][0].split(), sock
    svc = unit_keys(units["scardd.service"][0])
    assert svc["Type"] == ["notify"], svc
    start = shlex.split(svc["ExecStart"][0])
    assert Path(start[0]).name == "scardd" and start[1:4] == ["--foreground", "--auto-exit", "$PCSCD_ARGS"]
    assert shlex.split(svc["ExecReload"][0])[1:] == ["--hotplug", "$SCARDD_ARGS"]
    assert "-/etc/default/pcscd" in svc["EnvironmentFile"], svc
    assert "pcscd.service" in svc["Conflicts"][0].split(), svc
    user, group = sysusers_account()
    assert svc["User"] == [user] and svc["Group"] == [group], svc
    run_dir = Path("/run") / svc["RuntimeDirectory"][0]
    assert run_dir == Path(sock["ListenStream"][0]).parent, svc
    assert svc["RuntimeDirectoryPreserve"] == ["yes"] and svc["RuntimeDirectoryMode"] == ["0755"], svc


def test_systemd_analyze_verify_is_clean(vd):
    """systemd-analyze verify on the units as meson installs them, in a root
    holding scardd where ExecStart says and the system's own units (the
    targets every unit depends on): no message at all. The same check with
    scardd missing fails, so it does look."""
    need("/usr/bin/systemd-analyze", "missing-package", "systemd's systemd-analyze")
    need(SYSTEM_UNITS / "sysinit.target", "missing-package", "systemd's units")
    units = installed_units()
    root = vd.dir / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    for src, dst in units.values():
        target = root / dst.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
    binary = Path(shlex.split(unit_keys(units["scardd.service"][0])["ExecStart"][0])[0])
    placed = root / binary.relative_to("/")
    placed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCARDD, placed)
    # --man=no: the man page is checked where it is installed, not here
    argv = ["systemd-analyze", "verify", "--man=no", "--root=%s" % root]
    argv += [str(dst) for _, dst in units.values()]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    placed.unlink()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "is not executable" in r.stdout + r.stderr, r.stdout + r.stderr


# --- the units' command lines under socket activation ----------------------------------

def _private_run_ok():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                          capture_output=True).returncode == 0


def in_private_run(fake_run, confdir, etc=None):
    """A prefix: fake_run as /run and confdir as /etc/reader.conf.d (the
    units' defaults), and etc's passwd and group when given, in a private
    mount namespace, keeping the pid."""
    binds = [(fake_run, "/run"), (confdir, "/etc/reader.conf.d")]
    if etc:
        binds += [(etc / "passwd", "/etc/passwd"), (etc / "group", "/etc/group")]
    script = " && ".join('mount --bind "$%d" %s' % (i, dst) for i, (_, dst) in enumerate(binds))
    script += " && shift %d && exec \"$@\"" % (len(binds) - 1)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script] + [str(src) for src, _ in binds]


@pytest.fixture(scope="module")
def accounts():
    """Copies of /etc/passwd and /etc/group with the tree's sysusers.d entry
    applied: the service's User= and Group= exist in the test's private
    mount namespaces only, never in the machine's database."""
    if not shutil.which("systemd-sysusers"):
        pytest.skip("missing-package: systemd (systemd-sysusers)")
    root = Path(tempfile.mkdtemp(prefix="scardd-sdacct-"))
    try:
        etc = root / "etc"
        etc.mkdir()
        for name in ("passwd", "group"):
            lines = Path("/etc", name).read_text().splitlines(keepends=True)
            (etc / name).write_text("".join(l for l in lines if not l.startswith("pcscd:")))
        r = subprocess.run(["systemd-sysusers", "--root", str(root), str(SYSUSERS)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "systemd-sysusers on %s: %s" % (SYSUSERS, r.stderr)
        yield etc
    finally:
        shutil.rmtree(root, ignore_errors=True)


def account_ids(etc, user, group):
    uid = [l.split(":")[2] for l in (etc / "passwd").read_text().splitlines() if l.split(":")[0] == user]
    gid = [l.split(":")[2] for l in (etc / "group").read_text().splitlines() if l.split(":")[0] == group]
    assert uid and gid, "no %s:%s in the sysusers.d accounts" % (user, group)
    return int(uid[0]), int(gid[0])


def unit_lines(kind):
    """The keys of Debian's pcscd units or ours: (socket's, service's)."""
    if kind == "debian":
        need(PCSCD_SERVICE, "missing-peer", "Debian's pcscd unit")
        need(PCSCD_SOCKET, "missing-peer", "Debian's pcscd socket unit")
        return unit_keys(PCSCD_SOCKET), unit_keys(PCSCD_SERVICE)
    units = installed_units()
    return unit_keys(units["scardd.socket"][0]), unit_keys(units["scardd.service"][0])


def ids_of(pid):
    status = dict(l.split(":", 1) for l in Path("/proc/%d/status" % pid).read_text().splitlines())
    return [int(x) for x in status["Uid"].split()], [int(x) for x in status["Gid"].split()]


def tmpfiles_dir():
    """(path, mode, user, group) of the tree's tmpfiles.d entry for /run/pcscd."""
    for line in TMPFILES.read_text().splitlines():
        f = line.split()
        if f and f[0] == "d":
            return f[1], int(f[2], 8), f[3], f[4]
    raise AssertionError("no directory in %s" % TMPFILES)


@pytest.mark.skipif(not _private_run_ok(), reason="no-namespace: a private /run needs root and unshare")
@pytest.mark.parametrize("kind", ["debian", "scardd"])
def test_unit_command_lines_under_socket_activation(vd, kind, accounts):
    """ExecStart of Debian's pcscd.service (scardd for /usr/sbin/pcscd), or
    of scardd.service, with $PCSCD_ARGS=--info, under systemd-socket-activate
    on the socket unit's ListenStream (/run/pcscd/pcscd.comm, in a private
    /run, the sysusers.d account in private copies of passwd and group), as
    systemd would run it: scardd.service as its User= and Group= (through
    setpriv) in its RuntimeDirectory=; Debian's as root, in the directory
    the tree's tmpfiles.d entry makes, where scardd becomes the account by
    itself. Either way scardd serves as the account, not root. The first
    client starts scardd; ExecReload (and Debian's own pcscd --hotplug)
    reaches it through /run/pcscd/pcscd.pid; --auto-exit (a test-only short
    wait) ends it with status 0 once the last client left, its pid file
    removed, the socket left to systemd, and not one error logged."""
    if not os.path.isdir("/etc/reader.conf.d"):
        pytest.skip("missing-peer: /etc/reader.conf.d (made by pcscd's package) to mount over")
    sock_keys, svc = unit_lines(kind)
    listen = sock_keys["ListenStream"][0]
    assert listen == "/run/pcscd/pcscd.comm", listen

    def command(line):
        line = line.lstrip("-@").replace("$PCSCD_ARGS", "--info").replace("$SCARDD_ARGS", "")
        argv = shlex.split(line)
        assert Path(argv[0]).name == ("pcscd" if kind == "debian" else "scardd"), line
        return argv

    fake_run = vd.dir / "fakerun"
    fake_run.mkdir()
    etc, run_as = accounts, []
    if kind == "scardd":  # systemd's User=, Group=, RuntimeDirectory=
        user, group = svc["User"][0], svc["Group"][0]
        run_as = ["setpriv", "--reuid=" + user, "--regid=" + group, "--init-groups", "--"]
        run_dir, mode = fake_run / svc["RuntimeDirectory"][0], int(svc["RuntimeDirectoryMode"][0], 8)
    else:  # root, and scardd's tmpfiles.d entry
        path, mode, user, group = tmpfiles_dir()
        run_dir = fake_run / Path(path).relative_to("/run")
    assert (user, group) == sysusers_account()
    uid, gid = account_ids(etc, user, group)
    run_dir.mkdir()
    run_dir.chmod(mode)
    os.chown(run_dir, uid, gid)
    # the readers' driver, running as the account, binds its control sockets here
    os.chown(vd.dir, uid, gid)
    prefix = in_private_run(fake_run, vd.confdir, etc)
    argv = command(svc["ExecStart"][0])
    assert argv[1:3] == ["--foreground", "--auto-exit"], argv
    a = Activated(vd, [listen], argv[1:], prefix=prefix, run_as=run_as, keep_root=False,
                  env={"SCARDD_TEST_AUTO_EXIT_MS": str(AUTO_EXIT_MS)})
    sock, pid_file = fake_run / "pcscd" / "pcscd.comm", fake_run / "pcscd" / "pcscd.pid"
    try:
        a.wait_listening()
        # SocketMode=, which systemd-socket-activate does not know (it follows the umask)
        sock.chmod(int(sock_keys["SocketMode"][0], 8))
        with raw.RawClient(str(sock), timeout=WAIT) as held:
            held.hello()  # starts scardd, and keeps it from leaving until the end
            client_sees(sock, vd)
            assert exe(a.proc.pid) == str(SCARDD.resolve())
            assert ids_of(a.proc.pid) == ([uid] * 4, [gid] * 4)
            wait_until(pid_file.exists, str(pid_file))
            assert pid_file.read_text().strip() == str(a.proc.pid)
            # written before the switch when scardd started as root
            assert pid_file.stat().st_uid == (uid if run_as else 0)
            reloads = [[str(SCARDD)] + command(svc["ExecReload"][0])[1:]]
            if kind == "debian" and os.path.exists(PCSCD):
                reloads.append(command(svc["ExecReload"][0]))  # a drop-in that replaced ExecStart only
            env = {k: v for k, v in os.environ.items() if k != "PCSCLITE_CSOCK_NAME"}
            for n, rargv in enumerate(reloads, 1):
                r = subprocess.run(prefix + run_as + rargv, capture_output=True, text=True, timeout=60,
                                   env=env)
                assert r.returncode == 0, "%s: %s" % (rargv, r.stdout + r.stderr)
                wait_until(lambda: a.log().count("hotplug rescan requested") >= n,
                           "hotplug request #%d (%s) in the log" % (n, rargv[0]))
                assert a.proc.poll() is None
            client_sees(sock, vd)
        # the last client left: --auto-exit
        assert a.proc.wait(WAIT + AUTO_EXIT_MS / 1000) == 0, a.log()[-3000:]
        assert "(--auto-exit): exiting" in a.log()
        errors = [l for l in a.log().splitlines() if re.search(r"\d (ERROR|CRITICAL) ", l)]
        assert not errors, errors
    finally:
        a.stop()
    assert sock.exists() and not pid_file.exists()
