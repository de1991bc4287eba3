"""scardd's command line: options, socket path rules, stale sockets, refusing
to start next to a live daemon, and pcscd's command line with pcscd's
meanings (every option of Debian's pcscd --help, Debian's pcscd.service
with scardd in pcscd's place, --auto-exit, --hotplug). scardd-only: pcscd
itself is only the reference these tests read (its --help, its unit)."""
import os
import re
import shlex
import signal
import socket
import subprocess
import time

import pcsc_raw as raw
import pytest

from conftest import (IS_PCSCD, READER0, READER1, free_port_pair, scardd_binary, spawn, stop_process,
                      write_vpcd_conf)
from scardd_argv import scardd_argv

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: command line of scardd")
WAIT = 30


def binary():
    b = scardd_binary()
    if not b.exists():
        pytest.fail("scardd not built: %s missing" % b, pytrace=False)
    return str(b)


def start_argv(*args):
    """A daemon start's command line; as root with `--user root` (scardd_argv.py)."""
    return scardd_argv(binary(), *args)


class Run:
    def __init__(self, test_dir, args, env=None, name="scardd", argv_prefix=()):
        self.log = test_dir / ("%s.log" % name)
        e = dict(os.environ)
        e.pop("PCSCLITE_CSOCK_NAME", None)
        e.update(env or {})
        with open(self.log, "ab") as f:
            self.proc = spawn(list(argv_prefix) + start_argv(*args), stdout=f, stderr=subprocess.STDOUT, env=e)

    def text(self):
        return self.log.read_text(errors="replace")

    def wait_socket(self, path, timeout=WAIT):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("scardd exited %s:\n%s" % (self.proc.returncode, self.text()[-3000:]))
            return raw.socket_alive(path)
        raw.wait_for(ready, timeout, what="socket %s" % path)

    def stop(self):
        rc = stop_process(self.proc, signal.SIGTERM, timeout=20)
        assert rc == 0, "scardd exit status %s on SIGTERM:\n%s" % (rc, self.text()[-3000:])


@pytest.fixture
def conf(test_dir):
    port = free_port_pair()
    return write_vpcd_conf(test_dir / "conf", port)


def serves(path):
    with raw.RawClient(path) as c:
        c.hello()
        return sorted(rs.name for rs in c.readers_state())


def test_help(test_dir):
    r = subprocess.run([binary(), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for opt in ("--foreground", "--socket", "--config-dir", "--drivers-dir", "--debug", "--apdu", "--version",
                "--max-card-handles", "--poll-ms", "--driver-timeout"):
        assert opt in out, "%s missing from --help" % opt


def test_version(test_dir):
    r = subprocess.run([binary(), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr)


def test_unknown_option_fails(test_dir):
    r = subprocess.run([binary(), "--no-such-option"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0


def test_socket_option_and_dir_creation(test_dir, conf):
    path = test_dir / "a" / "b" / "c" / "pcscd.comm"
    d = Run(test_dir, ["--foreground", "--socket", str(path), "--config-dir", str(conf)])
    d.wait_socket(str(path))
    assert serves(str(path)) == [READER0, READER1]
    d.stop()


def test_env_socket_name_honoured(test_dir, conf):
    path = test_dir / "env" / "pcscd.comm"
    d = Run(test_dir, ["--foreground", "--config-dir", str(conf)], env={"PCSCLITE_CSOCK_NAME": str(path)})
    d.wait_socket(str(path))
    assert serves(str(path)) == [READER0, READER1]
    d.stop()


def test_socket_option_beats_env(test_dir, conf):
    opt, env = test_dir / "opt.comm", test_dir / "env.comm"
    d = Run(test_dir, ["--foreground", "--socket", str(opt), "--config-dir", str(conf)],
            env={"PCSCLITE_CSOCK_NAME": str(env)})
    d.wait_socket(str(opt))
    assert not os.path.exists(env)
    d.stop()


def _private_run_ok():
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _private_run_ok(), reason="no-namespace: a private /run needs root and unshare")
def test_default_socket_path_and_run_dir_creation(test_dir, conf):
    # a private mount namespace where an empty dir of ours is /run: the
    # default /run/pcscd/pcscd.comm must be created there, dir included
    fake_run = test_dir / "fakerun"
    fake_run.mkdir()
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount --bind "$0" /run && exec "$@"', str(fake_run)]
    d = Run(test_dir, ["--foreground", "--config-dir", str(conf)], argv_prefix=prefix)
    path = fake_run / "pcscd" / "pcscd.comm"
    d.wait_socket(str(path))
    assert serves(str(path)) == [READER0, READER1]
    d.stop()


def test_stale_socket_is_replaced(test_dir, conf):
    path = str(test_dir / "stale.comm")
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk.bind(path)
    sk.close()  # the file stays, nobody listens: a dead daemon's leftover
    assert os.path.exists(path) and not raw.socket_alive(path)
    d = Run(test_dir, ["--foreground", "--socket", path, "--config-dir", str(conf)])
    d.wait_socket(path)
    assert serves(path) == [READER0, READER1]
    d.stop()


def test_stale_socket_from_killed_daemon(test_dir, conf):
    path = str(test_dir / "killed.comm")
    a = Run(test_dir, ["--foreground", "--socket", path, "--config-dir", str(conf)], name="first")
    a.wait_socket(path)
    stop_process(a.proc, signal.SIGKILL)
    b = Run(test_dir, ["--foreground", "--socket", path, "--config-dir", str(conf)], name="second")
    b.wait_socket(path)
    assert serves(path) == [READER0, READER1]
    b.stop()


def test_refuses_to_start_next_to_live_daemon(test_dir, conf):
    path = str(test_dir / "live.comm")
    a = Run(test_dir, ["--foreground", "--socket", path, "--config-dir", str(conf)], name="first")
    a.wait_socket(path)
    other = write_vpcd_conf(test_dir / "conf2", free_port_pair())
    b = Run(test_dir, ["--foreground", "--socket", path, "--config-dir", str(other)], name="second")
    try:
        rc = b.proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail("second scardd did not exit while another answers on the socket")
    assert rc != 0
    msg = b.text()
    assert msg.strip(), "a clear message is expected"
    assert path in msg or re.search(r"already|running|in use|another", msg, re.I), msg
    # the first daemon is untouched
    assert a.proc.poll() is None
    assert serves(path) == [READER0, READER1]
    a.stop()


def test_refuses_socket_held_by_other_program(test_dir, conf):
    path = str(test_dir / "other.comm")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(5)
    try:
        b = Run(test_dir, ["--foreground", "--socket", path, "--config-dir", str(conf)])
        try:
            rc = b.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail("scardd did not refuse a socket path someone listens on")
        assert rc != 0
        assert os.path.exists(path), "the other program's socket must not be removed"
    finally:
        listener.close()


def log_levels(text):
    """The levels of the daemon's log lines ("DATE TIME LEVEL message")."""
    return {m.group(1) for m in re.finditer(r"^\S+ \S+ (DEBUG|INFO|ERROR|CRITICAL) ", text, re.M)}


# what each option must let through, and what it must keep out
LEVELS = {"--debug": ({"DEBUG", "INFO", "ERROR"}, set()),
          "--info": ({"INFO", "ERROR"}, {"DEBUG"}),
          "--error": ({"ERROR"}, {"DEBUG", "INFO"})}


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_log_levels(test_dir, conf, level):
    """Each level logs its own lines and those above, and nothing below: a
    client served (debug), start-up and shutdown (info), a client sending an
    unknown command (an error naming the client's pid)."""
    path = str(test_dir / "lvl.comm")
    d = Run(test_dir, ["--foreground", level, "--socket", path, "--config-dir", str(conf)])
    d.wait_socket(path)
    assert serves(path) == [READER0, READER1]
    with raw.RawClient(path) as c:
        c.hello()
        c.send(raw.header(0x99, 0))
        assert c.wait_closed(), "an unknown command must close the connection"
    d.stop()
    text = d.text()
    seen = log_levels(text)
    want, never = LEVELS[level]
    assert want <= seen and not (never & seen), "%s logged levels %s:\n%s" % (level, sorted(seen), text[-3000:])
    errors = [ln for ln in text.splitlines() if " ERROR " in ln]
    assert any("pid %d" % os.getpid() in ln for ln in errors), errors


def test_empty_config_dir_has_no_readers(test_dir):
    empty = test_dir / "empty"
    empty.mkdir()
    path = str(test_dir / "empty.comm")
    d = Run(test_dir, ["--foreground", "--socket", path, "--config-dir", str(empty)])
    d.wait_socket(path)
    assert serves(path) == []
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=path)
    code = ("from smartcard import scard as s; h, c = s.SCardEstablishContext(0); "
            "print(h, s.SCardListReaders(c, [])[0])")
    r = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["0", str(0x8010002E)], r.stdout + r.stderr  # SCARD_E_NO_READERS_AVAILABLE
    d.stop()


CCID_BUNDLE = "/usr/lib/pcsc/drivers/ifd-ccid.bundle"


def bundles_line(text):
    m = re.search(r"(\d+) driver bundle\(s\) in (\S+) know (\d+) device\(s\)", text)
    assert m, "no line about driver bundles in the log:\n%s" % text[-3000:]
    return int(m.group(1)), m.group(2), int(m.group(3))


@pytest.mark.parametrize("content", ["empty", "ccid"])
def test_drivers_dir_option(test_dir, conf, content):
    """--drivers-dir replaces the default drivers directory: the USB driver
    bundles scardd knows are the ones found there (none in an empty one,
    Debian's CCID driver and its device list when that bundle is there)."""
    drivers = test_dir / "drivers"
    drivers.mkdir()
    if content == "ccid":
        if not os.path.exists(CCID_BUNDLE):
            pytest.skip("missing-peer: Debian's libccid (%s)" % CCID_BUNDLE)
        os.symlink(CCID_BUNDLE, drivers / "ifd-ccid.bundle")
    path = str(test_dir / "drv.comm")
    d = Run(test_dir, ["--foreground", "--info", "--socket", path, "--config-dir", str(conf),
                       "--drivers-dir", str(drivers)])
    d.wait_socket(path)
    assert serves(path) == [READER0, READER1]
    d.stop()
    n, where, devices = bundles_line(d.text())
    assert where == str(drivers), "bundles read from %s, not from --drivers-dir" % where
    if content == "empty":
        assert (n, devices) == (0, 0)
    else:
        assert n == 1 and devices > 100, (n, devices)  # libccid 1.5.2 lists 562


def test_apdu_logging(test_dir, conf):
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from scard_util import echo_apdu
    path = str(test_dir / "apdu.comm")
    d = Run(test_dir, ["--foreground", "--debug", "--apdu", "--socket", path, "--config-dir", str(conf)])
    d.wait_socket(path)
    from conftest import Card

    class D:  # the minimum Card needs
        pass
    fake = D()
    fake.port = int(re.search(r"CHANNELID\s+(\d+)", (conf / "vpcd").read_text()).group(1))
    fake.readers = [READER0, READER1]
    fake.dir = test_dir
    fake.readers_state = lambda: raw.readers_state(path)
    card = Card(fake, 0)
    card.insert()
    with raw.RawClient(path) as c:
        ctx = c.hello()
        rv, h, p = c.connect(ctx, READER0)
        assert rv == 0
        rv, data = c.transmit(h, echo_apdu(b"\xCA\xFE\xBA\xBE"), protocol=p)
        assert (rv, data) == (0, b"\xCA\xFE\xBA\xBE\x90\x00")
    card.remove(wait=False)
    d.stop()
    flat = re.sub(r"[\s:]", "", d.text()).upper()
    assert "CAFEBABE" in flat, "the APDU should appear in the --apdu log"


# --- pcscd's command line ---------------------------------------------------------

PCSCD = "/usr/sbin/pcscd"
PCSCD_UNIT = "/lib/systemd/system/pcscd.service"
PCSCD_DEFAULTS = "/etc/default/pcscd"
SCARD_E_NO_MEMORY = 0x80100006
# the options pcscd has and scardd accepts without acting on them (logged)
IGNORED = {"force-reader-polling", "color"}
# the options that exit at once (tested on their own below)
EXITING = {"help", "version", "hotplug"}


def pcscd_options():
    """(letter or None, long name) of each option Debian's `pcscd --help` lists."""
    if not os.path.exists(PCSCD):
        return []
    out = subprocess.run([PCSCD, "--help"], capture_output=True, text=True, timeout=30).stdout
    opts = []
    for line in out.splitlines():
        m = re.match(r"\s+(?:-(\w),?\s+)?--([\w-]+)", line)
        if m:
            opts.append((m.group(1), m.group(2)))
    return opts


PCSCD_OPTIONS = pcscd_options()


def option_value(name, conf):
    """A value for each pcscd option that takes one."""
    return {"config": [str(conf)], "max-thread": ["50"], "max-card-handle-per-thread": ["20"],
            "max-card-handle-per-reader": ["50"]}.get(name, [])


def need_pcscd():
    if not PCSCD_OPTIONS:
        pytest.skip("missing-peer: Debian's pcscd (%s), whose --help lists the options" % PCSCD)


def test_pcscd_help_lists_the_options_this_file_knows():
    """The list below is read from the real pcscd: it is not empty, and each
    option that takes a value has one here (a new pcscd option fails here)."""
    need_pcscd()
    names = {name for _, name in PCSCD_OPTIONS}
    assert {"auto-exit", "hotplug", "max-card-handle-per-thread", "foreground", "config"} <= names, names
    known = IGNORED | EXITING | {"apdu", "config", "foreground", "debug", "info", "error", "critical",
                                 "max-thread", "max-card-handle-per-thread", "max-card-handle-per-reader",
                                 "auto-exit", "reader-name-no-serial", "reader-name-no-interface"}
    assert names <= known, "pcscd options this test does not know: %s" % sorted(names - known)


def test_help_names_every_pcscd_option(test_dir):
    need_pcscd()
    out = subprocess.run([binary(), "--help"], capture_output=True, text=True, timeout=30).stdout
    for letter, name in PCSCD_OPTIONS:
        want = "-%s, --%s" % (letter, name) if letter else "--%s" % name
        assert want in out, "%r missing from scardd --help:\n%s" % (want, out)


def option_forms():
    """(long name, as given): each pcscd option by its letter and by its name."""
    forms = []
    for letter, name in PCSCD_OPTIONS:
        if name not in EXITING:
            forms += [(name, "-" + letter)] if letter else []
            forms.append((name, "--" + name))
    return forms or [("(pcscd missing)", "")]


@pytest.mark.parametrize("name,opt", option_forms(), ids=[o for _, o in option_forms()])
def test_every_pcscd_option_is_accepted(test_dir, conf, name, opt):
    """scardd started with each pcscd option (by its letter and by its long
    name) serves its readers; the options that do not apply say so in the
    log, the others do not."""
    need_pcscd()
    path = str(test_dir / "opt.comm")
    d = Run(test_dir, ["--foreground", "--info", "--socket", path, "--config-dir", str(conf), opt]
            + option_value(name, conf))
    d.wait_socket(path)
    assert serves(path) == [READER0, READER1]
    d.stop()
    ignored = re.findall(r"option --([\w-]+) ignored: (.+)", d.text())
    if name in IGNORED:
        assert [n for n, _ in ignored] == [name], d.text()[-3000:]
    else:
        assert ignored == [], d.text()[-3000:]


def test_unknown_pcscd_like_option_still_fails(test_dir):
    r = subprocess.run([binary(), "--max-threads", "3"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--max-threads" in r.stderr, r.stderr


def fault_card_conf(test_dir):
    """A reader.conf.d with one fault-driver reader holding a card."""
    from fault_driver import DRIVER, FaultReader
    if not DRIVER.exists():
        pytest.fail("fault driver not built: %s missing" % DRIVER, pytrace=False)
    r = FaultReader(test_dir, "Limit", cards=[0])
    confdir = test_dir / "fault.conf.d"
    confdir.mkdir()
    (confdir / "fault").write_text(r.stanza())
    return confdir, r.reader()


@pytest.mark.parametrize("opt", ["-s", "--max-card-handle-per-thread", "--max-card-handles"])
def test_s_is_the_handle_limit_not_a_socket(test_dir, opt):
    """`-s 10` is pcscd's card-handle limit per connection: the 11th connect
    on one context fails with SCARD_E_NO_MEMORY (another context still
    connects), and no socket named 10 appears."""
    confdir, reader = fault_card_conf(test_dir)
    cwd = test_dir / "cwd"
    cwd.mkdir()
    path = str(test_dir / "limit.comm")
    e = dict(os.environ)
    e.pop("PCSCLITE_CSOCK_NAME", None)
    log = test_dir / "scardd.log"
    with open(log, "ab") as f:
        proc = spawn(start_argv("--foreground", "--socket", path, "--config-dir", confdir, opt, "10"),
                     stdout=f, stderr=subprocess.STDOUT, env=e, cwd=str(cwd))
    try:
        raw.wait_for(lambda: proc.poll() is None and raw.socket_alive(path), WAIT, what="socket %s" % path)
        with raw.RawClient(path) as c:
            ctx = c.hello()
            for i in range(10):
                rv, _, _ = c.connect(ctx, reader)
                assert rv == 0, "connect #%d: 0x%08X" % (i + 1, rv)
            rv, _, _ = c.connect(ctx, reader)
            assert rv == SCARD_E_NO_MEMORY, "connect #11: 0x%08X" % rv
            with raw.RawClient(path) as other:
                rv, _, _ = other.connect(other.hello(), reader)
                assert rv == 0, "connect on another context: 0x%08X" % rv
        assert os.listdir(cwd) == [], "files made in the working directory: %s" % os.listdir(cwd)
        assert not os.path.exists(test_dir / "10")
    finally:
        rc = stop_process(proc, signal.SIGTERM, timeout=20)
    assert rc == 0, log.read_text()[-3000:]


def test_s_with_a_path_fails_and_points_at_socket(test_dir, conf):
    """scardd's old `-s PATH`: refused with a hint, no socket made."""
    path = test_dir / "old.comm"
    r = subprocess.run(start_argv("--foreground", "-s", path, "--config-dir", conf),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "--socket" in r.stderr, r.stderr
    assert not path.exists()


# --- -c -----------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["missing dir", "missing parent", "not readable"])
def test_config_that_cannot_be_read_stops_the_start(test_dir, what):
    """As pcscd: a -c path that does not exist (or cannot be read) is an
    error, printed, with a non-zero exit and no socket left behind (without
    --foreground: test_detached.py)."""
    if what == "missing dir":
        bad = test_dir / "no-such-dir"
    elif what == "missing parent":
        bad = test_dir / "nowhere" / "reader.conf.d"
    else:
        if os.geteuid() == 0:
            # root reads anything: a socket is a path that exists and cannot be opened
            bad = test_dir / "a-socket"
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(bad))
            s.close()
        else:
            bad = test_dir / "unreadable"
            bad.mkdir(mode=0)
    path = test_dir / "conf.comm"
    r = subprocess.run(start_argv("--foreground", "--socket", path, "-c", bad),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, "scardd -c %s exited 0" % bad
    assert str(bad) in r.stderr, "no message naming %s on stderr: %r" % (bad, r.stderr)
    assert not path.exists(), "a socket was made although the start failed"


def test_config_file_and_dev_null_are_accepted(test_dir, conf):
    """-c may name one file (pcscd's older form), or /dev/null for no readers."""
    for cfg, want in ((conf / "vpcd", [READER0, READER1]), ("/dev/null", [])):
        path = str(test_dir / "file.comm")
        d = Run(test_dir, ["--foreground", "--socket", path, "-c", str(cfg)])
        d.wait_socket(path)
        assert serves(path) == want
        d.stop()


# --- --hotplug and the pid file -----------------------------------------------------

def test_pid_file_and_hotplug(test_dir, conf):
    """The daemon writes <socket>.pid (.comm dropped), `scardd --hotplug`
    finds it through the socket and signals it (SIGUSR1): the daemon logs
    the request and goes on serving; the pid file goes when it stops."""
    path = str(test_dir / "hot.comm")
    pid_file = test_dir / "hot.pid"
    d = Run(test_dir, ["--foreground", "--info", "--socket", path, "--config-dir", str(conf)])
    d.wait_socket(path)
    raw.wait_for(pid_file.exists, WAIT, what=str(pid_file))
    assert pid_file.read_text().strip() == str(d.proc.pid)
    e = dict(os.environ)
    e.pop("PCSCLITE_CSOCK_NAME", None)
    for args, env in ((["--hotplug", "--socket", path], e), (["-H"], dict(e, PCSCLITE_CSOCK_NAME=path))):
        before = d.text().count("hotplug rescan requested")
        r = subprocess.run([binary()] + args, capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0, r.stderr
        raw.wait_for(lambda: d.text().count("hotplug rescan requested") > before, WAIT,
                     what="the daemon's hotplug log line")
        assert d.proc.poll() is None
        assert serves(path) == [READER0, READER1]
    d.stop()
    assert not pid_file.exists(), "the pid file outlived the daemon"


def test_hotplug_without_a_daemon_fails(test_dir):
    """Nothing answers on the socket: an error, even with a pid file left
    there, whose process is not signalled."""
    path = test_dir / "none.comm"
    r = subprocess.run([binary(), "--hotplug", "--socket", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and str(path) in r.stderr, r.stderr
    # a stale pid file naming a live process that SIGUSR1 would kill
    victim = spawn(["sleep", "600"])
    try:
        (test_dir / "none.pid").write_text("%d\n" % victim.pid)
        r = subprocess.run([binary(), "--hotplug", "--socket", str(path)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0, r.stderr
        time.sleep(0.2)  # not a timing assertion: a signal sent would have killed it by now
        assert victim.poll() is None, "--hotplug signalled the process a stale pid file names"
    finally:
        stop_process(victim, signal.SIGKILL)


# --- --auto-exit --------------------------------------------------------------------

AUTO_EXIT_MS = 2000  # SCARDD_TEST_AUTO_EXIT_MS: the test-only replacement of pcscd's 60 s


def connect_when_up(proc, path, text):
    """A client connected as soon as the socket accepts (no probe first, so
    that no client-less wait passes between start and this connection)."""
    def attempt():
        if proc.poll() is not None:
            raise AssertionError("scardd exited %s:\n%s" % (proc.returncode, text()[-3000:]))
        if not os.path.exists(path):
            return None
        c = raw.RawClient(path)
        return c
    return raw.wait_for(attempt, WAIT, interval=0.01, what="a connection to %s" % path)


def test_auto_exit_waits_for_the_last_client(test_dir):
    """-x: not while a client is connected (it stays, whatever the time it
    takes); after the last one leaves, the daemon exits 0 on its own and
    removes its socket and pid file."""
    confdir, reader = fault_card_conf(test_dir)
    path = str(test_dir / "auto.comm")
    d = Run(test_dir, ["--foreground", "--info", "--auto-exit", "--socket", path, "--config-dir", str(confdir)],
            env={"SCARDD_TEST_AUTO_EXIT_MS": str(AUTO_EXIT_MS)})
    c = connect_when_up(d.proc, path, d.text)
    try:
        ctx = c.hello()
        rv, card, proto = c.connect(ctx, reader)
        assert rv == 0, "connect: 0x%08X" % rv
        time.sleep(2 * AUTO_EXIT_MS / 1000)  # idle while connected, longer than the wait
        rv, resp = c.transmit(card, bytes.fromhex("00A4040000"), protocol=proto)
        assert rv == 0 and resp == bytes.fromhex("00A40400009000"), "transmit: 0x%08X" % rv
        assert d.proc.poll() is None, "scardd exited with a client connected:\n" + d.text()[-3000:]
    finally:
        c.close()
    try:
        rc = d.proc.wait(WAIT + AUTO_EXIT_MS / 1000)
    except subprocess.TimeoutExpired:
        pytest.fail("scardd -x still runs with no client:\n" + d.text()[-3000:])
    assert rc == 0, d.text()[-3000:]
    assert "(--auto-exit): exiting" in d.text()
    assert not os.path.exists(path) and not (test_dir / "auto.pid").exists()


def test_auto_exit_without_any_client(test_dir, conf):
    path = str(test_dir / "idle.comm")
    d = Run(test_dir, ["--foreground", "-x", "--socket", path, "--config-dir", str(conf)],
            env={"SCARDD_TEST_AUTO_EXIT_MS": str(AUTO_EXIT_MS)})
    try:
        rc = d.proc.wait(WAIT + AUTO_EXIT_MS / 1000)
    except subprocess.TimeoutExpired:
        pytest.fail("scardd -x never exited:\n" + d.text()[-3000:])
    assert rc == 0, d.text()[-3000:]
    assert not os.path.exists(path)


def test_no_auto_exit_without_x(test_dir, conf):
    """The test variable alone does nothing: only -x exits."""
    path = str(test_dir / "stay.comm")
    d = Run(test_dir, ["--foreground", "--socket", path, "--config-dir", str(conf)],
            env={"SCARDD_TEST_AUTO_EXIT_MS": "1"})
    d.wait_socket(path)
    time.sleep(0.5)  # a 1 ms auto-exit would have ended it many times over
    assert d.proc.poll() is None and serves(path) == [READER0, READER1]
    d.stop()


# --- Debian's pcscd.service with scardd in pcscd's place -------------------------------

def unit_commands():
    """ExecStart and ExecReload of Debian's pcscd.service, $PCSCD_ARGS from
    /etc/default/pcscd (absent on a stock Debian 12: then empty)."""
    if not os.path.exists(PCSCD_UNIT):
        pytest.skip("missing-package: pcscd (%s)" % PCSCD_UNIT)
    keys = {}
    for line in open(PCSCD_UNIT):
        k, sep, v = line.strip().partition("=")
        if sep and k in ("ExecStart", "ExecReload"):
            keys[k] = v.lstrip("-@")
    args = ""
    if os.path.exists(PCSCD_DEFAULTS):
        for line in open(PCSCD_DEFAULTS):
            m = re.match(r"\s*PCSCD_ARGS=(.*)", line)
            if m:
                args = " ".join(shlex.split(m.group(1)))
    assert "ExecStart" in keys and "ExecReload" in keys, keys
    return keys["ExecStart"], keys["ExecReload"], args


def in_private_run(fake_run, confdir, argv):
    """argv with fake_run as /run and confdir as /etc/reader.conf.d (the
    unit's defaults), in a private mount namespace; same pid."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /run && mount --bind "$1" /etc/reader.conf.d && shift && exec "$@"',
            str(fake_run), str(confdir)] + list(argv)


@pytest.mark.skipif(not _private_run_ok(), reason="no-namespace: a private /run needs root and unshare")
def test_debian_unit_command_lines(test_dir, conf):
    """Debian's ExecStart with scardd for /usr/sbin/pcscd (and --info added
    through $PCSCD_ARGS, as /etc/default/pcscd would, to see the log; Run adds
    `--user root` after it, as $PCSCD_ARGS could: the start as root becoming
    the pcscd account is test_systemd.py's) serves /run/pcscd/pcscd.comm;
    ExecReload, with scardd and with Debian's own pcscd binary, reaches it
    (SIGUSR1 through /run/pcscd/pcscd.pid)."""
    start, reload, args = unit_commands()
    assert "--auto-exit" in start and "--hotplug" in reload, (start, reload)
    # the unit gives no -c: scardd reads its compiled-in default, pcscd's only with --prefix=/usr
    help_text = subprocess.run([binary(), "--help"], capture_output=True, text=True, timeout=30).stdout
    if "(default /etc/reader.conf.d)" not in help_text:
        pytest.fail("this scardd's default reader.conf.d is not /etc/reader.conf.d: configure its build "
                    "with --prefix=/usr, as scripts/run-tests does", pytrace=False)
    if not os.path.isdir("/etc/reader.conf.d"):
        pytest.skip("missing-package: /etc/reader.conf.d (made by pcscd's package) to mount over")
    fake_run = test_dir / "fakerun"
    fake_run.mkdir()

    def command(line):
        argv = shlex.split(line.replace("$PCSCD_ARGS", (args + " --info").strip()))
        assert argv[0] == PCSCD, line
        return argv

    argv = command(start)
    d = Run(test_dir, argv[1:], argv_prefix=in_private_run(fake_run, conf, []))
    sock = fake_run / "pcscd" / "pcscd.comm"
    d.wait_socket(str(sock))
    assert serves(str(sock)) == [READER0, READER1]
    pid_file = fake_run / "pcscd" / "pcscd.pid"
    raw.wait_for(pid_file.exists, WAIT, what=str(pid_file))
    assert pid_file.read_text().strip() == str(d.proc.pid)

    reloads = [[binary()] + command(reload)[1:]]
    if os.path.exists(PCSCD):
        reloads.append(command(reload))  # a drop-in that replaced ExecStart only
    e = dict(os.environ)
    e.pop("PCSCLITE_CSOCK_NAME", None)
    for n, argv in enumerate(reloads, 1):
        r = subprocess.run(in_private_run(fake_run, conf, argv), capture_output=True, text=True, timeout=30,
                           env=e)
        assert r.returncode == 0, "%s: %s" % (argv, r.stdout + r.stderr)
        raw.wait_for(lambda: d.text().count("hotplug rescan requested") >= n, WAIT,
                     what="hotplug request #%d (%s) in the log" % (n, argv[0]))
        assert d.proc.poll() is None
    assert serves(str(sock)) == [READER0, READER1]
    d.stop()
    assert not sock.exists() and not pid_file.exists()
