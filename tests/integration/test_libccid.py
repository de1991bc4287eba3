"""Debian's libccid driving an emulated CCID reader, under scardd and pcscd.

ccid_emu.py emulates a USB CCID reader ("Generic EMV Smartcard Reader",
a model libccid lists) in a umockdev testbed: it answers the USB
descriptors and the CCID bulk messages, with ifd-virtual's built-in card
behind it. scardd loads Debian's libccid from /usr/lib/pcsc/drivers (its
--drivers-dir, no reader.conf stanzas) and finds the reader through libudev
hotplug, as test_usb_hotplug.py runs it; Debian's pcscd 1.9.9 with the
same libccid, in its private mount namespace, is the reference. Debian's
pcsc_scan shows the card's ATR, APDUs round-trip through libccid (the
emulator's record of CCID XfrBlock messages proves libccid carried them),
and unplugging the device removes the reader.

The two daemons run one after the other, each with an emulator of its own:
both opening the one device would interleave their CCID messages.
"""
import os
import re
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest

import pcsc_raw
import usb_env
from ccid_emu import ADDRESS, BUS, CLIENT_LEFT, PID, READER_NAME, VID, CcidEmulator
from conftest import IS_PCSCD
from test_usb_hotplug import cleanup, wait_log
from usb_env import TIMEOUT, UsbDaemon, need_testbed, wait_names
from virtual_env import BUILTIN_ATR, DRIVER, driver_is_sanitized

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: these tests run scardd and "
                                "pcscd themselves, pcscd as the reference")

CCID_DRIVERS = Path("/usr/lib/pcsc/drivers")
CCID_BUNDLE = CCID_DRIVERS / "ifd-ccid.bundle"
PCSC_SCAN = "/usr/bin/pcsc_scan"

# the built-in card (src/drivers/virtual/vcard_builtin.c), T=1
SELECT_AID = bytes.fromhex("00A4040007F073636172646400")  # DF 5000 by name, FCI wanted
SELECT_FCI = bytes.fromhex("6F13820138830250008407F07363617264648A0105") + b"\x90\x00"
READ_SFI1 = bytes.fromhex("00B0810000")                   # READ BINARY of EF 5001 (SFI 1)
SFI1_DATA = b"Hello from ifd-virtual" + b"\x90\x00"
READ_LOCKED = bytes.fromhex("00B0820000")                 # EF 5002 wants PIN 81

KINDS = ["scardd", "pcscd"]
# what libccid logs when it opens a reader of its Info.plist
LIBCCID_OPENED = "Using: %s/Contents/Info.plist" % CCID_BUNDLE
# the device name the daemons give libccid (libudev hotplug)
DEVICE = "usb:%04x/%04x:libudev:0:/dev/bus/usb/%03d/%03d" % (VID, PID, BUS, ADDRESS)


def need_peers():
    need_testbed()
    if not (CCID_BUNDLE / "Contents" / "Info.plist").exists():
        pytest.fail("missing-peer: libccid not installed (%s)" % CCID_BUNDLE, pytrace=False)
    if not os.path.exists(PCSC_SCAN):
        pytest.fail("missing-peer: pcsc_scan not installed (Debian: pcsc-tools)", pytrace=False)
    if not DRIVER.exists():
        pytest.fail("not-built: ifd-virtual (%s), the card behind the emulated reader" % DRIVER,
                    pytrace=False)


def emulator_env():
    """The emulator loads ifd-virtual with ctypes: in the sanitizer run that
    library is instrumented, and wants ASan's runtime loaded first."""
    env = dict(os.environ)
    if driver_is_sanitized():
        ldd = subprocess.run(["ldd", str(DRIVER)], capture_output=True, text=True).stdout
        lib = re.search(r"libasan\.so\S* => (/\S+)", ldd)
        if not lib:
            pytest.fail("not-built: the sanitized ifd-virtual names no libasan:\n" + ldd,
                        pytrace=False)
        env["LD_PRELOAD"] = lib.group(1) + (":" + env["LD_PRELOAD"]
                                            if env.get("LD_PRELOAD") else "")
        # python's own allocations are not the driver's: no leak report
        opts = env.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + \
            "detect_leaks=0:verify_asan_link_order=0"
    return env


@pytest.fixture
def emu(request):
    need_peers()
    e = CcidEmulator(DRIVER, env=emulator_env())
    try:
        assert bytes.fromhex(e.card["atr"]) == BUILTIN_ATR, e.card
        yield e
    finally:
        e.close()
    check_emulator(e, request.node.callspec.params["kind"])


def check_emulator(e, kind):
    """The emulator ended cleanly: no sanitizer report from ifd-virtual (the
    sanitizer run loads the instrumented one into it), no handler error.
    pcscd exits on SIGTERM with its card-event thread inside an ioctl ("Direct
    suicide"); scardd ends its driver calls and closes the reader first."""
    for marker in ("ERROR: AddressSanitizer", "runtime error:", "Traceback"):
        assert marker not in e.saved_errors, e.saved_errors[-4000:]
    assert "failed:\n" not in e.saved_log, e.saved_log[-4000:]
    if kind == "scardd":
        assert CLIENT_LEFT not in e.saved_log, e.saved_log[-4000:]
    assert e.returncode == 0, (e.returncode, e.saved_errors[-2000:])


class CcidDaemon(UsbDaemon):
    """A UsbDaemon whose bundles are Debian's (libccid): pcscd runs in the
    sanitizer run too. UsbDaemon skips pcscd there because its bundles hold
    the instrumented ifd-virtual; here that library is loaded by the
    emulator alone, and pcscd loads nothing of this build."""

    def argv(self):
        with mock.patch.object(usb_env, "driver_is_sanitized", lambda: False):
            return super().argv()


def start(kind, emu):
    """kind on the emulator's testbed with Debian's libccid (libccid logs
    everything it does into the daemon's log)."""
    d = CcidDaemon(kind, emu, CCID_DRIVERS, env={"LIBCCID_ifdLogLevel": "0x000F"})
    try:
        d.start()
        deadline = time.monotonic() + TIMEOUT
        while not emu.listeners() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emu.listeners(), "%s never listened for uevents" % kind
    except BaseException:
        d.cleanup()
        raise
    return d


def card_state(d):
    """(name, ATR) of each reader whose card is present."""
    return [(rs.name, bytes(rs.atr)) for rs in pcsc_raw.readers_state(d.socket) if rs.present]


def wait_card(d, emu):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        cards = card_state(d)
        if cards:
            return cards
        time.sleep(0.1)
    raise AssertionError("%s: no card in %r\n--- daemon log tail:\n%s\n--- emulator:\n%s"
                         % (d.kind, d.names(), d.log[-3000:], emu.log[-2000:]))


def pcsc_scan(d):
    """Debian's pcsc_scan (with Debian's libpcsclite) against d: its output."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "LD_LIBRARY_PATH", "UMOCKDEV_DIR")}
    env["PCSCLITE_CSOCK_NAME"] = d.socket
    try:
        r = subprocess.run(["timeout", "-s", "INT", "10", PCSC_SCAN, "-n", "-t", "2"], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("pcsc_scan did not stop")
    return r.stdout.decode(errors="replace")


def apdus(d, name):
    """SELECT, READ BINARY and a READ BINARY the card refuses, through d."""
    c = pcsc_raw.RawClient(d.socket, timeout=30)
    try:
        ctx = c.hello()
        rv, h, proto = c.connect(ctx, name)
        assert rv == 0, "%s: connect %s: 0x%08X" % (d.kind, name, rv & 0xFFFFFFFF)
        out = {"protocol": proto}
        for key, apdu in (("select", SELECT_AID), ("read", READ_SFI1),
                          ("locked", READ_LOCKED)):
            rv, resp = c.transmit(h, apdu, protocol=pcsc_raw.SCARD_PROTOCOL_T1)[:2]
            assert rv == 0, "%s: transmit %s: 0x%08X" % (d.kind, apdu.hex(), rv & 0xFFFFFFFF)
            out[key] = bytes(resp)
        assert c.disconnect(h) == 0
    finally:
        c.close()
    return out


def observe(kind, emu):
    """Runs kind on emu: what a client sees of the reader and the card."""
    d = start(kind, emu)
    try:
        names = wait_names([d], 1, "the emulated CCID reader under %s" % kind)
        cards = wait_card(d, emu)
        scan = pcsc_scan(d)
        answers = apdus(d, names[0])
        stats = emu.stats()
        log = d.log
    finally:
        cleanup([d])
    return {"names": names, "cards": cards, "scan": scan, "answers": answers,
            "stats": stats, "log": log, "emu_log": emu.log}


def scan_atrs(scan):
    return [bytes.fromhex(m.replace(" ", ""))
            for m in re.findall(r"ATR: ((?:[0-9A-F]{2} ?)+)", scan)]


@pytest.mark.parametrize("kind", KINDS)
def test_card_through_libccid(emu, kind):
    """The reader appears under libccid's name for the model, pcsc_scan shows
    the card's ATR, and SELECT and READ BINARY get the card's answers: each
    one carried by a CCID XfrBlock the emulator answered from ifd-virtual."""
    o = observe(kind, emu)
    assert o["names"] == [READER_NAME], o["names"]
    assert o["cards"] == [(READER_NAME, BUILTIN_ATR)], o["cards"]
    assert READER_NAME in o["scan"], o["scan"]
    assert scan_atrs(o["scan"]) and set(scan_atrs(o["scan"])) == {BUILTIN_ATR}, o["scan"]
    a = o["answers"]
    assert a["protocol"] == pcsc_raw.SCARD_PROTOCOL_T1, a
    assert a["select"] == SELECT_FCI, a["select"].hex()
    assert a["read"] == SFI1_DATA, a["read"]
    assert a["locked"][-2:] == b"\x69\x82", a["locked"].hex()  # security status not satisfied
    # libccid carried every APDU in an XfrBlock, the card answered each
    xfr = o["stats"]["xfr"]
    assert o["stats"]["messages"].get("XfrBlock", 0) >= 3, o["stats"]
    assert o["stats"]["messages"].get("IccPowerOn", 0) >= 1, o["stats"]
    sent = [(bytes.fromhex(tx), bytes.fromhex(rx)) for tx, rx in xfr]
    assert (SELECT_AID, SELECT_FCI) in sent, xfr
    assert (READ_SFI1, SFI1_DATA) in sent, xfr
    # nothing but the client's APDUs went to the card, in order
    assert [tx for tx, _ in sent] == [SELECT_AID, READ_SFI1, READ_LOCKED], xfr
    # and it was Debian's libccid (its own log lines, in the daemon's log)
    assert LIBCCID_OPENED in o["log"], o["log"][-3000:]
    assert re.search(r"OpenUSBByName\(\) .*Device: %s$" % re.escape(DEVICE), o["log"], re.M), \
        o["log"][-3000:]
    if kind == "scardd":
        # stopped, scardd closed the reader through libccid before it exited
        # (pcscd exits without closing its readers)
        tail = o["emu_log"][o["emu_log"].rindex("CCID XfrBlock"):]
        assert "CCID IccPowerOff" in tail and "ioctl RELEASEINTERFACE" in tail, tail


def test_scardd_as_pcscd():
    """scardd and pcscd, each on an emulated reader of its own: the same
    reader name, ATR and APDU answers."""
    need_peers()
    seen = {}
    for kind in ("pcscd", "scardd"):
        e = CcidEmulator(DRIVER, env=emulator_env())
        try:
            seen[kind] = observe(kind, e)
        finally:
            e.close()
        check_emulator(e, kind)
    p, s = seen["pcscd"], seen["scardd"]
    assert s["names"] == p["names"], (s["names"], p["names"])
    assert s["cards"] == p["cards"], (s["cards"], p["cards"])
    assert scan_atrs(s["scan"]) == scan_atrs(p["scan"]), (s["scan"], p["scan"])
    assert s["answers"] == p["answers"], (s["answers"], p["answers"])
    assert s["stats"]["xfr"] == p["stats"]["xfr"], (s["stats"]["xfr"], p["stats"]["xfr"])


@pytest.mark.parametrize("kind", KINDS)
def test_unplug_removes_reader(emu, kind):
    """Unplugging the emulated device removes its reader; the daemon stays up
    and serves clients."""
    d = start(kind, emu)
    try:
        assert wait_names([d], 1, "the emulated CCID reader") == [READER_NAME]
        wait_card(d, emu)
        emu.unplug()
        wait_names([d], 0, "the emulated CCID reader unplugged")
        # libccid was told: its channel closed, once
        wait_log(d, r"IFDHCloseChannel\(\) %s " % re.escape(DEVICE))
        assert d.proc.poll() is None, "%s ended at the unplug" % kind
        assert pcsc_raw.socket_alive(d.socket)
        assert d.names() == []
        closes = [l for l in d.log.splitlines() if "IFDHCloseChannel()" in l]
    finally:
        cleanup([d])
    assert len(closes) == 1, closes
