"""Debian's pcscd (and every pcsc-lite pcscd) binds the compiled-in
/run/pcscd/pcscd.comm, whatever PCSCLITE_CSOCK_NAME says. As root the tests
run each pcscd in a private mount namespace where a directory of the test's
own is bind-mounted on /run/pcscd: the socket appears at <that dir>/
pcscd.comm, and any number of pcscd runs (a system pcscd, other test runs)
coexist. Without root or unshare a pcscd has to share the real
/run/pcscd, one at a time."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_private = None


def private_mount_ok():
    """Whether pcscd can run in a private mount namespace here (probed once)."""
    global _private
    if _private is None:
        _private = False
        if os.geteuid() == 0 and shutil.which("unshare"):
            probe = Path(tempfile.mkdtemp(prefix="scardd-nsprobe-"))
            try:
                r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                    "mkdir -p /run/pcscd && mount --bind %s /run/pcscd && "
                                    "touch /run/pcscd/ok" % probe], capture_output=True, timeout=30)
                _private = r.returncode == 0 and (probe / "ok").exists()
            finally:
                shutil.rmtree(probe, ignore_errors=True)
    return _private


def in_private_run(rundir, argv):
    """argv run with rundir bind-mounted on /run/pcscd in a new mount
    namespace; the process keeps the PID the caller sees (unshare and sh exec)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mkdir -p /run/pcscd && mount --bind "$0" /run/pcscd && exec "$@"', str(rundir)] + list(argv)
