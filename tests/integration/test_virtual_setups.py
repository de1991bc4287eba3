"""ifd-virtual set-ups that need a daemon of their own: several driver
instances, a bad configuration, the bundle layout, shutdown. Kept apart from
test_virtual_driver.py, whose module-wide daemons would otherwise hold pcscd's
fixed socket while these start their own."""
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scardd_argv import scardd_argv  # noqa: E402
from virtual_env import BUILTIN_ATR, BUNDLE, DAEMONS, SCARDD, VirtualDaemon  # noqa: E402


@pytest.mark.parametrize("kind", DAEMONS)
def test_two_instances_one_library(kind):
    """Two reader.conf.d stanzas, one driver library: separate readers, separate
    control sockets, separate state."""
    d = VirtualDaemon(kind, readers=1, cards={0: "builtin"}, friendly="Alpha",
                      extra_instances=[{"friendly": "Beta", "readers": 2, "cards": {}}])
    with d:
        names = [r["name"] for r in d.scard_json("list")["readers"]]
        assert len(names) == 3
        # "Name XX SS": XX counts readers of one library in the daemon's own order
        alpha = [n for n in names if n.startswith("Alpha ")]
        assert len(alpha) == 1 and re.fullmatch(r"Alpha [0-9A-F]{2} 00", alpha[0]), names
        alpha = alpha[0]
        beta = sorted(n for n in names if n.startswith("Beta "))
        assert len(beta) == 2 and beta[0].endswith(" 00") and beta[1].endswith(" 01")
        r = d.scard("virtual", "insert", beta[1], "builtin")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(beta[1] + ": inserted card in reader 1")
        cards = {r["name"]: r["card"] for r in d.scard_json("list")["readers"]}
        assert cards == {alpha: "present", beta[0]: "absent", beta[1]: "present"}
        assert "card=present" in d.control_cmd("status 1", instance=1)
        assert "card=present" in d.control_cmd("status 0", instance=0)


@pytest.mark.parametrize("kind", DAEMONS)
def test_bad_configuration_is_reported(kind):
    d = VirtualDaemon(kind, readers=1, friendly="Good")
    d.add_instance("Broken", readers=1)
    d.instances[1]["conf"].write_text("readers = 999\n")
    with d.start(expect_readers=1):
        names = [r["name"] for r in d.scard_json("list")["readers"]]
        assert names == ["Good 00 00"]
        assert "readers must be 1 to 128" in d.log


@pytest.mark.parametrize("kind", DAEMONS)
def test_orderly_shutdown_closes_the_driver(kind):
    """SIGINT: the daemon stops the driver's event waits, closes the channel
    (which removes the control socket) and exits promptly."""
    d = VirtualDaemon(kind, readers=2)
    try:
        d.start()
        ctl = Path(d.control)
        assert ctl.is_socket()
        proc = d.proc
        d.stop(sig=signal.SIGINT)
        # it exited by itself: stop() only kills one that does not (scardd
        # exits 0; pcscd 1.9.9 exits 1 after a SIGINT)
        assert proc.returncode == (0 if kind == "scardd" else 1), proc.returncode
        assert not ctl.exists()
    finally:
        d.cleanup()


@pytest.mark.parametrize("kind", DAEMONS)
def test_loads_from_bundle(kind):
    """The bundle layout (Info.plist + Contents/Linux/libifd-virtual.so), as
    installed under the drivers directory, with its library named by LIBPATH."""
    plist = (BUNDLE / "Contents" / "Info.plist").read_text()
    assert "<string>libifd-virtual.so</string>" in plist
    lib = BUNDLE / "Contents" / "Linux" / "libifd-virtual.so"
    with VirtualDaemon(kind, readers=1, driver=lib) as d:
        assert d.scard_json("list")["readers"][0]["atr"] == BUILTIN_ATR.hex().upper()


def test_scardd_reads_the_bundle(tmp_path):
    (tmp_path / "none").mkdir()  # no reader.conf.d readers: only the bundle matters
    p = subprocess.run(["timeout", "-s", "TERM", "2"] + scardd_argv(
                           SCARDD, "--foreground", "--info", "--socket", tmp_path / "b.comm", "--config-dir",
                           tmp_path / "none", "--drivers-dir", BUNDLE.parent),
                       capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert "1 driver bundle(s) in %s" % BUNDLE.parent in out, out
    assert "error" not in out.lower(), out
