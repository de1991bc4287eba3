"""Clients that are not root: the daemon runs as root, its socket must let
any user in (pcsc-lite makes it 0666, its directory 0755), and Debian's
libpcsclite under another uid (setpriv) must list readers and transmit.

Runs against scardd and, with SCARDD_TEST_DAEMON=pcscd, Debian's pcscd.
"""
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import pcsc_raw as raw
from conftest import IS_PCSCD, PYTHON, _die_with_parent, scardd_binary, spawn, stop_process
from fault_daemon import fault_daemon, fault_reader  # noqa: F401 (fixtures)
from scardd_argv import scardd_argv

NOBODY = 65534
AS_NOBODY = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups", "--"]
TIMEOUT = 30.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="environment: needs root and setpriv to run clients as another uid")

# Debian's libpcsclite through pyscard; prints one JSON object.
CLIENT = r'''
import json, os, sys
from smartcard import scard as s
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
out["establish"] = hr
if hr == 0 and len(sys.argv) > 1:
    hr, readers = s.SCardListReaders(ctx, [])
    out["list"], out["readers"] = hr, readers if hr == 0 else []
    hr, card, proto = s.SCardConnect(ctx, sys.argv[1], s.SCARD_SHARE_SHARED,
                                     s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
    out["connect"] = hr
    if hr == 0:
        hr, resp = s.SCardTransmit(card, proto, [0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00])
        out["transmit"], out["resp"] = hr, resp
print(json.dumps(out))
'''
APDU_ECHOED = [0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00, 0x90, 0x00]


def run_as_nobody(socket_path, argv, prefix=()):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(socket_path))
    res = subprocess.run(list(prefix) + AS_NOBODY + argv, env=env, capture_output=True,
                         timeout=TIMEOUT, cwd="/", preexec_fn=_die_with_parent)
    return res


def pyscard_as_nobody(socket_path, reader=None, prefix=()):
    res = run_as_nobody(socket_path, [PYTHON, "-c", CLIENT] + ([reader] if reader else []), prefix)
    assert res.returncode == 0, "client as uid %d failed (%d):\n%s" % (
        NOBODY, res.returncode, res.stderr.decode(errors="replace"))
    out = json.loads(res.stdout)
    assert (out["uid"], out["gid"], out["groups"]) == (NOBODY, NOBODY, []), out
    return out


@pytest.fixture
def public_dir():
    """A directory every user can traverse (the session's own is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="scardd-pub-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_socket_is_open_to_every_user(fault_daemon, fault_reader, public_dir):
    r = fault_reader("Fault", cards=[0])
    d = fault_daemon([r], socket_path=str(public_dir / "run" / "pcscd.comm"))
    st = os.stat(d.socket)
    assert stat.S_ISSOCK(st.st_mode), "%s is no socket" % d.socket
    assert stat.S_IMODE(st.st_mode) == 0o666, "socket mode %o, want 0666" % stat.S_IMODE(st.st_mode)
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_client_of_another_uid_lists_readers_and_transmits(fault_daemon, fault_reader, public_dir):
    r = fault_reader("Fault", cards=[0])
    d = fault_daemon([r], socket_path=str(public_dir / "run" / "pcscd.comm"))
    out = pyscard_as_nobody(d.socket, r.reader())
    assert out["establish"] == 0, "SCardEstablishContext as uid %d: 0x%08X" % (NOBODY, out["establish"])
    assert out["list"] == 0 and out["readers"] == [r.reader()], out
    assert out["connect"] == 0, "SCardConnect as uid %d: 0x%08X" % (NOBODY, out["connect"])
    assert out["transmit"] == 0 and out["resp"] == APDU_ECHOED, out
    assert r.calls("transmit") == 1
    if not IS_PCSCD:
        # the daemon knows who it serves
        assert "uid %d" % NOBODY in d.log.read_text(errors="replace")


def test_pcsc_scan_of_another_uid(fault_daemon, fault_reader, public_dir):
    r = fault_reader("Fault", cards=[0])
    d = fault_daemon([r], socket_path=str(public_dir / "run" / "pcscd.comm"))
    res = run_as_nobody(d.socket, ["pcsc_scan", "-r"])
    text = res.stdout.decode(errors="replace")
    assert res.returncode == 0, "pcsc_scan -r as uid %d: %d\n%s%s" % (
        NOBODY, res.returncode, text, res.stderr.decode(errors="replace"))
    assert r.reader() in text, text


# --- the directory the daemon creates for its socket ----------------------------

def nobody_reaches(socket_path, prefix=()):
    return pyscard_as_nobody(socket_path, prefix=prefix)["establish"]


def wait_socket(path, proc, log):
    def up():
        assert proc.poll() is None, "daemon exited %s:\n%s" % (proc.returncode, log())
        return raw.socket_alive(path)
    raw.wait_for(up, TIMEOUT, what="the daemon's socket %s" % path)


@pytest.mark.skipif(IS_PCSCD, reason="scardd-only: its --socket path")
def test_scardd_socket_directory_is_open_whatever_the_umask(public_dir):
    sock = public_dir / "a" / "b" / "pcscd.comm"
    logf = public_dir / "scardd.log"

    def strict_umask():
        os.umask(0o077)
        _die_with_parent()
    no_readers = public_dir / "none"
    no_readers.mkdir()
    with open(logf, "wb") as f:
        p = spawn(scardd_argv(scardd_binary(), "--foreground", "--socket", sock, "--config-dir", no_readers),
                  stdout=f, stderr=subprocess.STDOUT, preexec_fn=strict_umask)
    try:
        wait_socket(str(sock), p, logf.read_text)
        assert mode(sock) == 0o666
        dirs = (mode(public_dir / "a"), mode(public_dir / "a" / "b"))
        assert dirs == (0o755, 0o755), "directories made for the socket: %o %o, want 0755" % dirs
        assert nobody_reaches(sock) == 0
    finally:
        assert stop_process(p) == 0, logf.read_text()


@pytest.mark.skipif(not IS_PCSCD, reason="pcscd-only: the same check for Debian's pcscd")
def test_pcscd_socket_directory_is_open_whatever_the_umask(test_dir):
    # /run is a fresh tmpfs in pcscd's own mount namespace, so it creates
    # /run/pcscd itself; clients reach it through nsenter, then drop to nobody
    conf = test_dir / "conf"
    conf.mkdir()
    logf = test_dir / "pcscd.log"
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o mode=0755 scardd-test-run /run && umask 077 && exec "$@"', "sh",
            "pcscd", "-f", "-c", str(conf)]
    with open(logf, "wb") as f:
        p = spawn(argv, stdout=f, stderr=subprocess.STDOUT)
    inside = Path("/proc/%d/root/run/pcscd" % p.pid)
    try:
        wait_socket(str(inside / "pcscd.comm"), p, logf.read_text)
        assert mode(inside / "pcscd.comm") == 0o666
        assert mode(inside) == 0o755
        assert nobody_reaches("/run/pcscd/pcscd.comm",
                              prefix=["nsenter", "--target", str(p.pid), "--mount", "--"]) == 0
    finally:
        stop_process(p)
