"""What scardd writes down about its clients: APDU logging (--apdu) that
leaves PINs out, and the audit log (--audit FILE). scardd with ifd-virtual's
built-in card (PIN 81 is "1234"); clients are `scard` and Debian's
libpcsclite under pyscard."""
import pytest

from conftest import IS_PCSCD
from virtual_env import VirtualDaemon

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
