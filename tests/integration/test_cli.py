"""scardd's command line: options, socket path rules, stale sockets, refusing
to start next to a live daemon. scardd-only (pcscd has other options)."""
import os
import re
import signal
import socket
import subprocess
import time

import pcsc_raw as raw
import pytest

from conftest import (IS_PCSCD, READER0, READER1, free_port_pair, scardd_binary, spawn, stop_process,
                      write_vpcd_conf)

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: command line of scardd")
WAIT = 30


def binary():
    b = scardd_binary()
    if not b.exists():
        pytest.fail("scardd not built: %s missing" % b, pytrace=False)
    return str(b)


class Run:
    def __init__(self, test_dir, args, env=None, name="scardd", argv_prefix=()):
        self.log = test_dir / ("%s.log" % name)
        e = dict(os.environ)
        e.pop("PCSCLITE_CSOCK_NAME", None)
        e.update(env or {})
        with open(self.log, "ab") as f:
            self.proc = spawn(list(argv_prefix) + [binary()] + list(args), stdout=f, stderr=subprocess.STDOUT, env=e)

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
    for opt in ("--foreground", "--socket", "--config-dir", "--drivers-dir", "--debug", "--apdu", "--version"):
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
