"""What scardd writes down about its clients: APDU logging (--apdu) that
leaves PINs out, and the audit log (--audit FILE). scardd with ifd-virtual's
built-in card (PIN 81 is "1234"); clients are `scard` and Debian's
libpcsclite under pyscard."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import IS_PCSCD
from virtual_env import PYTHON, VirtualDaemon, _die_with_parent

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: scardd's own logs")

VERIFY = "00200081" + "04" + "31323334"        # VERIFY PIN 81 "1234"
CHANGE = "00240081" + "08" + "3132333435363738"  # CHANGE REFERENCE DATA "1234" -> "5678"
SELECT = "00A4040007F0736361726464"


def test_apdu_log_leaves_pins_out():
    with VirtualDaemon("scardd", readers=1, args=["--apdu"]) as d:
        r = d.scard("send", "--raw", d.reader(0), SELECT, VERIFY, CHANGE)
        assert r.returncode in (0, 7), (r.returncode, r.stdout, r.stderr)
        log = d.log
        assert "APDU: 00 A4 04 00 07 F0 73 63 61 72 64 64" in log, log[-3000:]
        assert "APDU (VERIFY, 4 data bytes not logged): 00 20 00 81 04\n" in log, log[-3000:]
        assert "APDU (CHANGE REFERENCE DATA, 8 data bytes not logged): 00 24 00 81 08\n" in log
        # the card's answer to VERIFY is logged; the PIN is nowhere
        assert "RAPDU: 90 00" in log
        assert "31 32 33 34" not in log and "31323334" not in log, log[-3000:]


# --- the audit log ---------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="environment: needs root and setpriv to run clients as other uids")
def test_audit_log_without_a_policy_names_the_program():
    """An audit log alone (no policy) still records who each client is: its
    /proc identity is read when it connects, as with a policy."""
    audit = Path(tempfile.mkdtemp(prefix="scardd-audit-"))
    try:
        d = VirtualDaemon("scardd", readers=1, args=["--audit", str(audit / "audit.log")])
        d.dir.chmod(0o755)
        with d:
            assert "no policy file" in d.log, d.log[-2000:]
            assert as_uid(d, 4002) == 0
            lines = audit_lines(audit / "audit.log")
            assert [e for e, _ in lines] == [
                "connect", "begin-transaction", "control", "end-transaction"], lines
            for _, f in lines:
                assert f["uid"] == "4002" and f["result"] == "SCARD_S_SUCCESS", f
                assert f["exe"] == '"%s"' % os.path.realpath(PYTHON), f
                assert f["sandbox"] == "none", f
    finally:
        shutil.rmtree(audit, ignore_errors=True)


SESSION = r'''
from smartcard import scard as s
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
if hr == 0:
    hr, card, proto = s.SCardConnect(ctx, "Virtual Reader 00 00", s.SCARD_SHARE_EXCLUSIVE,
                                     s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
    if hr == 0:
        s.SCardBeginTransaction(card)
        s.SCardControl(card, 0x42000D48, [])
        s.SCardTransmit(card, proto, [0x00, 0xA4, 0x04, 0x00, 0x00])
        s.SCardEndTransaction(card, s.SCARD_RESET_CARD)
        s.SCardDisconnect(card, s.SCARD_LEAVE_CARD)
print(hr & 0xFFFFFFFF)
'''


def as_uid(d, uid, code=SESSION):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=d.socket)
    env.pop("LD_LIBRARY_PATH", None)
    r = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", "--",
                        PYTHON, "-c", code], env=env, capture_output=True, text=True,
                       timeout=30, cwd="/", preexec_fn=_die_with_parent)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def audit_lines(path):
    """Each line as (event, {key: value}), the time stamp checked and left out."""
    out = []
    for line in path.read_text().splitlines():
        stamp, event, rest = line.split(" ", 2)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), line
        out.append((event, dict(re.findall(r'(\w+)=("[^"]*"|\S+)', rest))))
    return out


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="environment: needs root and setpriv to run clients as other uids")
def test_audit_log():
    audit = Path(tempfile.mkdtemp(prefix="scardd-audit-"))
    try:
        d = VirtualDaemon("scardd", readers=1, args=[
            "--policy", str(audit / "policy.conf"), "--audit", str(audit / "audit.log")])
        d.dir.chmod(0o755)
        (audit / "policy.conf").write_text("allow uid=0 list\nallow uid=4001 all\n"
                                           "allow uid=4003 list\n")
        with d:
            assert as_uid(d, 4001) == 0
            assert as_uid(d, 4003) == 0x8010006A  # its connect: denied
            assert as_uid(d, 4005) == 0x8010006A  # refused outright
            lines = audit_lines(audit / "audit.log")
            python = '"%s"' % os.path.realpath(PYTHON)
            got = [(e, f["uid"], f.get("reader"), f.get("mode"), f.get("code"),
                    f.get("disposition"), f["result"]) for e, f in lines]
            reader = '"%s"' % d.reader(0)
            assert got == [
                ("connect", "4001", reader, "exclusive", None, None, "SCARD_S_SUCCESS"),
                ("begin-transaction", "4001", reader, None, None, None, "SCARD_S_SUCCESS"),
                ("control", "4001", reader, None, "0x42000D48", None, "SCARD_S_SUCCESS"),
                ("end-transaction", "4001", reader, None, None, "reset", "SCARD_S_SUCCESS"),
                ("connect", "4003", reader, "exclusive", None, None,
                 "SCARD_W_SECURITY_VIOLATION"),
                ("refused", "4005", None, None, None, None, "SCARD_W_SECURITY_VIOLATION"),
            ], lines
            for _, f in lines:
                assert f["exe"] == python and f["sandbox"] == "none", f
                assert int(f["pid"]) > 0 and f["client"].isdigit(), f
            # rotation: moved away, SIGHUP, the next lines go to a new file
            os.rename(audit / "audit.log", audit / "audit.log.1")
            before = d.log.count("read again")
            d.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while d.log.count("read again") == before:
                assert time.monotonic() < deadline, d.log[-2000:]
                time.sleep(0.05)
            assert as_uid(d, 4001) == 0
            assert [e for e, _ in audit_lines(audit / "audit.log")] == [
                "connect", "begin-transaction", "control", "end-transaction"]
            assert len(audit_lines(audit / "audit.log.1")) == 6
    finally:
        shutil.rmtree(audit, ignore_errors=True)
