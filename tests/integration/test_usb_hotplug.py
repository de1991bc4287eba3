"""USB readers through libudev, proven on emulated devices.

A umockdev testbed (usb_testbed.py) holds synthetic USB devices and sends
their uevents; ifd-virtual, installed as driver bundles under test ids
(usb_env.py), drives them. scardd and Debian's pcscd 1.9.9 run in the same
testbed with the same bundles, and pcscd is the reference: at every step
both list the same reader names in the same order, and clients holding
handles on an unplugged reader get the same answers from both.
"""
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import pcsc_raw
import usb_testbed
from conftest import IS_PCSCD
from proto_client import ProtoClient
from thread_state import wait_in_event_wait
from usb_env import SCARDD, TEST_VID, TIMEOUT, UsbDaemon, make_bundle, need_testbed, reader_conf, \
    wait_names
from virtual_env import LineReader, driver_is_sanitized

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: these tests run scardd and "
                                "pcscd side by side themselves")

# the emulated devices: (vid, pid, ifdFriendlyName) and their interfaces
TOKEN = (TEST_VID, 0x0001, "Test Token OTP+CCID")
TOKEN_IFS = [{"num": 0, "cls": 0x03, "name": "OTP"}, {"num": 1, "cls": 0x0B, "name": "CCID"}]
DUAL = (TEST_VID, 0x0002, "Test Dual Reader")
DUAL_IFS = [{"num": 0, "cls": 0x0B, "name": "Contact"},
            {"num": 1, "cls": 0x0B, "name": "Contactless \u00e9"}]  # two non-ASCII bytes
BROKEN = (TEST_VID, 0x0003, "Test Broken Reader")
NOLIB = (TEST_VID, 0x0004, "Test Reader Without Library")
FALLBACK = (TEST_VID, 0x0005, "Test Vendor Reader")
UNLISTED = (TEST_VID, 0x000F)
CCID_ONLY = [{"num": 0, "cls": 0x0B, "name": "CCID"}]

SELECT = bytes.fromhex("00A4040007F0736361726464")
SCARD_STATE_UNAVAILABLE = 0x8


@pytest.fixture
def testbed():
    need_testbed()
    tb = usb_testbed.UsbTestbed()
    try:
        yield tb
    finally:
        tb.close()


@pytest.fixture
def drivers():
    d = Path(tempfile.mkdtemp(prefix="usb-drivers-"))
    os.chmod(d, 0o755)
    yield d
    subprocess.run(["rm", "-rf", str(d)])


def standard_bundle(drivers, slow_slot=None):
    """The test bundle: TOKEN's CCID interface is a reader with a card; DUAL's
    first interface two slots (slot 1 slow if asked: its transmits last 30 s,
    or until the device is unplugged), its second one; BROKEN's configuration
    does not load."""
    dual0 = reader_conf(2, {0: "builtin"})
    if slow_slot is not None:
        dual0 += "delay.%d = %d\ncard.%d = builtin\n" % (slow_slot, 30000, slow_slot)
    make_bundle(drivers, "ifd-virtual-usb.bundle", [TOKEN, DUAL, BROKEN], configs={
        "%04x-%04x-1.conf" % TOKEN[:2]: reader_conf(1, {0: "builtin"}),
        "%04x-%04x-0.conf" % DUAL[:2]: dual0,
        "%04x-%04x-1.conf" % DUAL[:2]: reader_conf(1),
        "%04x-%04x-0.conf" % BROKEN[:2]: "readers = many\n",
    })


def plug(tb, address, model, interfaces, serial=None, mode=0o666):
    vid, pid = model[0], model[1]
    return tb.add_device(1, address, vid, pid, interfaces, serial=serial, mode=mode,
                         product=model[2] if len(model) > 2 else None)


def start_pair(tb, drivers, args=(), env=None):
    """pcscd, then scardd, on the testbed; each must have its own uevent
    socket. scardd is always last. In the sanitizer run pcscd cannot load the
    instrumented driver: scardd runs alone, checked by what the tests assert
    of it, its comparisons with pcscd made in the plain run."""
    ds = [UsbDaemon("scardd", tb, drivers, args=args, env=env)]
    if not driver_is_sanitized():
        ds.insert(0, UsbDaemon("pcscd", tb, drivers, args=args, env=env, extra_fds=24))
    try:
        for d in ds:
            d.start()
        # each binds its uevent socket a little after its client socket
        deadline = time.monotonic() + TIMEOUT
        while len(tb.listeners()) < len(ds) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tb.listeners()) == len(ds), \
            "%d daemons, uevent sockets %s: do two share one? (usb_testbed.py)" % (
                len(ds), tb.listeners())
    except BaseException:
        for d in ds:
            d.cleanup()
        raise
    return ds


def cleanup(ds):
    errors = []
    for d in ds:
        try:
            d.cleanup()
        except AssertionError as e:  # a sanitizer report: after the others are stopped
            errors.append(e)
    if errors:
        raise errors[0]


def wait_log(d, pattern, count=1, timeout=TIMEOUT):
    """Waits until d's log has `count` lines matching pattern; returns them."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        lines = [l for l in d.log.splitlines() if re.search(pattern, l)]
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    raise AssertionError("%s: %d lines matching %r, want %d; log tail:\n%s"
                         % (d.kind, len(lines), pattern, count, d.log[-3000:]))


def log_count(d, pattern):
    return len([l for l in d.log.splitlines() if re.search(pattern, l)])


def fd_targets(pid):
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            out.append("%s->%s" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd))))
        except OSError:
            pass
    return out


def pcscd_of(ds):
    return ds[0] if ds[0].kind == "pcscd" else None


def daemon_pid(d):
    """scardd's pid (the Popen's), or pcscd's below unshare/sh/umockdev-wrapper."""
    if d.kind == "scardd":
        return d.proc.pid
    out = subprocess.run(["pgrep", "-x", "pcscd", "-P", str(d.proc.pid)], capture_output=True,
                         text=True).stdout.split()
    return int(out[0]) if out else d.proc.pid


def test_names_as_pcscd_at_every_step(testbed, drivers):
    """Devices present at start, unplug, re-plug (the name comes back), a
    device no bundle lists, a device whose open fails, a second device of a
    model (XX numbering), a composite device with two reader interfaces and
    a two-slot one (YY): scardd lists exactly pcscd's names, in pcscd's order."""
    standard_bundle(drivers)
    plug(testbed, 2, TOKEN, TOKEN_IFS, serial="A1")
    plug(testbed, 3, DUAL, DUAL_IFS, serial="B2")
    ds = start_pair(testbed, drivers)
    try:
        names = wait_names(ds, 4, "devices present at start")
        a1 = [n for n in names if "(A1)" in n]
        assert len(a1) == 1 and a1[0].startswith("Test Token OTP+CCID [CCID] (A1) "), names
        assert any(n.startswith("Test Dual Reader [Contactless ..] (B2) ") for n in names), names

        testbed.remove_device(1, 2)
        names = wait_names(ds, 3, "the token unplugged")
        assert not [n for n in names if "(A1)" in n], names

        plug(testbed, 4, TOKEN, TOKEN_IFS, serial="A1")
        names = wait_names(ds, 4, "the token plugged again")
        assert a1[0] in names, "the re-plugged token's name changed: %r, was %r" % (names, a1)

        plug(testbed, 5, UNLISTED, CCID_ONLY, serial="U1")
        if pcscd_of(ds):
            wait_log(ds[0], r"Looking for a driver for VID: 0x1209, PID: 0x000F")
        wait_log(ds[-1], r"1209:000f at /dev/bus/usb/001/005 has a CCID interface but no "
                        r"driver bundle")
        wait_names(ds, 4, "a device no bundle lists")

        plug(testbed, 6, BROKEN, CCID_ONLY, serial="X1")
        if pcscd_of(ds):
            wait_log(ds[0], r"Test Broken Reader \[CCID\] \(X1\) init failed")
        line = wait_log(ds[-1], r"USB reader Test Broken Reader \[CCID\] \(X1\): .*could not "
                               r"open usb:1209/0003:libudev:0:/dev/bus/usb/001/006")
        assert "libifd-virtual.so" in line[0], line  # names the driver
        wait_names(ds, 4, "a device whose open fails")

        plug(testbed, 7, TOKEN, TOKEN_IFS, serial="A2")
        names = wait_names(ds, 5, "a second token")
        a2 = [n for n in names if "(A2)" in n]
        assert len(a2) == 1 and a2[0][:-6] == a1[0][:-6].replace("(A1)", "(A2)"), names
        assert a2[0][-6:] != a1[0][-6:], names  # its own "XX"

        testbed.remove_device(1, 3)
        wait_names(ds, 2, "the composite reader unplugged")
        plug(testbed, 8, DUAL, DUAL_IFS, serial="B2")
        wait_names(ds, 5, "the composite reader plugged again")
    finally:
        cleanup(ds)
    # one line for the device nobody knows, one for the broken one
    assert log_count(ds[-1], "has a CCID interface but no driver bundle") == 1
    assert log_count(ds[-1], r"ERROR USB reader Test Broken Reader") == 1


NAME_OPTIONS = [
    (["-S"], {}, 4),
    (["-I"], {}, 4),
    ([], {"PCSCLITE_FILTER_EXTEND_READER_NAMES": " on host1",
          "PCSCLITE_FILTER_IGNORE_READER_NAMES": "Contactless:absent"}, 3),
    (["-S", "-I"], {"PCSCLITE_FILTER_IGNORE_READER_NAMES": "Contactless"}, 4),
]


@pytest.mark.parametrize("args,env,count", NAME_OPTIONS,
                         ids=["-S", "-I", "extend+ignore", "-S-I+ignore"])
def test_name_options_as_pcscd(testbed, drivers, args, env, count):
    """-S, -I and pcscd's PCSCLITE_FILTER_EXTEND_READER_NAMES and
    PCSCLITE_FILTER_IGNORE_READER_NAMES give scardd pcscd's names (the ignore
    pattern matches the interface name, which -I leaves out)."""
    standard_bundle(drivers)
    plug(testbed, 2, TOKEN, TOKEN_IFS, serial="A1")
    plug(testbed, 3, DUAL, DUAL_IFS, serial="B2")
    ds = start_pair(testbed, drivers, args=args, env=env)
    try:
        names = wait_names(ds, count, "names with %s %s" % (args, env))
    finally:
        cleanup(ds)
    if "-S" in args:
        assert not [n for n in names if "(A1)" in n or "(B2)" in n], names
    if "-I" in args:
        assert not [n for n in names if "[" in n], names
    if "PCSCLITE_FILTER_EXTEND_READER_NAMES" in env:
        assert all(re.search(r" on host1 [0-9A-F]{2} [0-9A-F]{2}$", n) for n in names), names


# A client of one daemon: nine handles on slot 0 of the two-slot reader (one
# in a transaction), one on slot 1 (its transmit is slow and in the driver
# when the device is unplugged); after the unplug, every card command on
# the stale handles.
def stale_handle_codes(c, hs, ctx, name):
    return {
        "transmit": c.transmit(hs[0], SELECT, protocol=pcsc_raw.SCARD_PROTOCOL_T1)[0],
        "control": c.control(hs[1], 0x42000000 + 3400)[0],
        "status": c.status(hs[2]),
        "get_attrib": c.get_attrib(hs[3], 0x00090303)[0],
        "set_attrib": c.set_attrib(hs[4], 0x7FFF0000, b"x"),
        "reconnect": c.reconnect(hs[5], pcsc_raw.SCARD_SHARE_SHARED, 3, 0)[0],
        "begin": c.begin(hs[6]),
        "end (its transaction)": c.end(hs[8]),
        "end": c.end(hs[7]),
        "disconnect": c.disconnect(hs[0]),
        "connect": c.connect(ctx, name)[0],
    }


WAITER = r"""
import sys, threading
from smartcard.scard import *
out = threading.Lock()
def say(*words):
    with out:
        sys.stdout.write(" ".join(words) + "\n")
        sys.stdout.flush()
def wait(n):
    hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
    hr, st = SCardGetStatusChange(ctx, 0, [(n, SCARD_STATE_UNAWARE)])
    cur = st[0][1] & ~SCARD_STATE_CHANGED
    say("WAITING", str(threading.get_native_id()), n)
    hr, st = SCardGetStatusChange(ctx, 60000, [(n, cur)])
    say("WOKE", n, hex(hr & 0xFFFFFFFF), hex(st[0][1] & 0xFFFF))
ts = [threading.Thread(target=wait, args=(n,)) for n in (sys.argv[1], "\\\\?PnP?\\Notification")]
[t.start() for t in ts]
[t.join() for t in ts]
"""


def test_unplug_answers_as_pcscd(testbed, drivers):
    """A device unplugged while clients hold handles, one of them in a
    transaction and one in the middle of a slow transmit: every card command
    on a stale handle gets pcscd's answer, the in-flight transmit gets
    pcscd's, status waiters (a reader's and \\\\?PnP?\\Notification) wake as
    under pcscd, 4:5's reader-events counter moves, and the driver is told
    the device left and closes it once; under scardd after the transmit
    returned, on the reader's own thread (the one that opened it)."""
    standard_bundle(drivers, slow_slot=1)
    plug(testbed, 3, DUAL, DUAL_IFS[:1], serial="B2")
    ds = start_pair(testbed, drivers)
    try:
        names = wait_names(ds, 2, "a two-slot reader")
        slot0, slot1 = names
        clients, waiters, inflight = [], [], []
        for d in ds:
            c = pcsc_raw.RawClient(d.socket, timeout=30)
            ctx = c.hello()
            hs = []
            for _ in range(9):
                rv, h, _ = c.connect(ctx, slot0)
                assert rv == 0, (d.kind, hex(rv))
                hs.append(h)
            assert c.begin(hs[8]) == 0
            clients.append((c, ctx, hs))
            w = subprocess.Popen(["/usr/bin/python3", "-c", WAITER, slot0], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=dict(os.environ, PCSCLITE_CSOCK_NAME=d.socket))
            lines = LineReader(w)
            for _ in range(2):
                tid = int(lines.wait_for(lambda l: l.startswith("WAITING"),
                                         timeout=TIMEOUT).split()[1])
                # blocked in its wait: from here the unplug must end it
                assert wait_in_event_wait(tid, pid=w.pid), "a waiter never got to its wait"
            waiters.append((w, lines))
            # the slow transmit, on its own connection, in a thread
            slow = pcsc_raw.RawClient(d.socket, timeout=30)
            sctx = slow.hello()
            rv, sh, _ = slow.connect(sctx, slot1)
            assert rv == 0, (d.kind, hex(rv))
            result = {}
            t = threading.Thread(target=lambda: result.update(
                rv=slow.transmit(sh, SELECT, protocol=pcsc_raw.SCARD_PROTOCOL_T1)[0]))
            t.start()
            inflight.append((slow, t, result))
        scardd = ds[-1]
        with ProtoClient(scardd.socket, "4:5") as p:
            p.hello()
            events_before, _ = p.reader_events()
        # both transmits are in the driver now
        for d in ds:
            wait_log(d, r"reader 1: this transmit takes 30000 ms")
        testbed.remove_device(1, 3)
        wait_names(ds, 0, "unplugged")

        codes = [stale_handle_codes(c, hs, ctx, slot0) for c, ctx, hs in clients]
        for slow, t, result in inflight:
            t.join(TIMEOUT)
            assert not t.is_alive(), "a transmit in flight at the unplug never returned"
            slow.close()
        woke = []
        for w, lines in waiters:
            woke.append(sorted(lines.wait_for(lambda l: l.startswith("WOKE"), timeout=TIMEOUT)
                               .split()[-2:] for _ in range(2)))
            w.wait(TIMEOUT)
        with ProtoClient(scardd.socket, "4:5") as p:
            p.hello()
            events_after, _ = p.reader_events()
    finally:
        cleanup(ds)
    scardd_codes = codes[-1]
    assert all(v != 0 for k, v in scardd_codes.items() if k != "disconnect"), scardd_codes
    assert scardd_codes["disconnect"] == 0, scardd_codes
    assert inflight[-1][2]["rv"] != 0, "the transmit in flight succeeded: its device was gone"
    assert all(hr == "0x0" for hr, _ in woke[-1]), woke
    assert any(int(state, 16) & SCARD_STATE_UNAVAILABLE for _, state in woke[-1]), woke
    if pcscd_of(ds):
        assert scardd_codes == codes[0], "stale handles: scardd %s, pcscd %s" % (
            {k: hex(v) for k, v in scardd_codes.items()}, {k: hex(v) for k, v in codes[0].items()})
        assert inflight[1][2] == inflight[0][2], "the transmit in flight: scardd %r, pcscd %r" % (
            inflight[1][2], inflight[0][2])
        assert woke[1] == woke[0], "waiters: scardd %r, pcscd %r" % (woke[1], woke[0])
    assert events_after != events_before, "the reader-events counter did not move"
    for d in ds:
        device = r"usb:1209/0002:libudev:0:/dev/bus/usb/001/003"
        assert log_count(d, device + r": told the device was removed") == 1, d.log[-3000:]
        closes = [l for l in d.log.splitlines() if re.search(device + r": closed", l)]
        assert len(closes) == 1 and "(device removed)" in closes[0], (d.kind, closes)
    # scardd closed the channel once the slow transmit had returned (pcscd
    # closes slot 0 while slot 1's call is still in the driver)
    log = ds[-1].log
    assert log.index("the slow transmit is done") < log.index("closed (device removed)"), \
        log[-3000:]
    opened = wait_log(ds[-1], r"usb:1209/0002:libudev:0:.*: 2 readers")[0]
    closed = [l for l in ds[-1].log.splitlines() if "closed (device removed)" in l][0]
    thread = re.compile(r"\(thread (\d+)\)")
    assert thread.search(opened).group(1) == thread.search(closed).group(1), (opened, closed)


def test_unprivileged_open_failure_logged_once_with_the_fix(testbed, drivers):
    """scardd as nobody, a token whose node only root may open: one error
    line (for the device, not per interface) names the reader, the driver,
    the device and the fix (a udev rule); a "change" event retries quietly;
    once the node is opened up, the next event adds the reader. A second
    such device comes in with SIGUSR1's rescan (scardd --hotplug)."""
    standard_bundle(drivers)
    subprocess.run(["chmod", "-R", "a+rX", str(drivers)], check=True)
    plug(testbed, 2, TOKEN, TOKEN_IFS, serial="A1", mode=0o600)
    testbed.open_up()
    d = UsbDaemon("scardd", testbed, drivers, args=["--user", "nobody:nogroup"])
    try:
        d.start()
        errors = wait_log(d, r"ERROR USB device Test Token OTP\+CCID at /dev/bus/usb/001/002: ")
        text = errors[0]
        for part in ("libifd-virtual.so", "usb:1209/0001:libudev:", "nobody", "nogroup",
                     "mode 0600", "udev rule"):
            assert part in text, (part, text)
        assert d.names() == []

        testbed.uevent(1, 2, "change", interface=1)
        wait_log(d, r"still no access to /dev/bus/usb/001/002")
        testbed.node(1, 2).chmod(0o666)
        testbed.uevent(1, 2, "change", interface=1)
        wait_names([d], 1, "the token after its node was opened up")

        # one interface: once it has failed, only the rescan tries it again
        plug(testbed, 3, TOKEN, TOKEN_IFS[1:], serial="A2", mode=0o600)
        testbed.open_up()
        wait_log(d, r"ERROR USB device Test Token OTP\+CCID at /dev/bus/usb/001/003: ")
        testbed.node(1, 3).chmod(0o666)
        assert len(d.names()) == 1
        r = subprocess.run([str(SCARDD), "--hotplug", "--socket", d.socket], capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr
        wait_log(d, r"rescanning USB devices")
        names = wait_names([d], 2, "the second token after the rescan")
        assert any("(A2)" in n for n in names), names
        assert d.proc.poll() is None
        log = d.log
    finally:
        d.cleanup()
    assert len([l for l in log.splitlines() if "ERROR USB device" in l and "001/002" in l]) == 1


BAD_PLISTS = {
    "broken-xml.bundle": "<plist><dict><key>CFBundleExecutable</key><string>x.so",
    "mismatch.bundle": None,  # arrays of different lengths, made below
    "huge.bundle": "<plist><dict>" + "<key>pad</key><string>%s</string>" % ("x" * 4096) * 1100
                   + "</dict></plist>",
}


def test_bad_bundles_and_vanishing_devices(testbed, drivers):
    """Malformed, huge (over 4 MB) and inconsistent Info.plist files, a
    bundle whose library is missing, a device gone before its open: scardd
    serves the good bundle's readers and says each cause once. (pcscd is no
    reference here: one bundle with arrays of different lengths ends its
    bundle scan, keeping whichever bundles its readdir() returned first.)"""
    standard_bundle(drivers)
    for name, text in BAD_PLISTS.items():
        if text is None:
            text = (drivers / "ifd-virtual-usb.bundle/Contents/Info.plist").read_text()
            text = text.replace("<string>Test Token OTP+CCID</string>", "", 1)
        make_bundle(drivers, name, [], plist=text)
    nolib = make_bundle(drivers, "nolib.bundle", [NOLIB])
    (nolib / "Linux" / "libifd-virtual.so").unlink()
    plug(testbed, 2, TOKEN, TOKEN_IFS, serial="A1")
    d = UsbDaemon("scardd", testbed, drivers)
    try:
        d.start()
        wait_names([d], 1, "the token at start")
        for name in BAD_PLISTS:
            assert log_count(d, r"driver bundle .*%s/Contents/Info.plist: " % name) == 1, \
                d.log[-4000:]
        # a bundle without its library: said once, however often its device comes
        plug(testbed, 3, NOLIB, CCID_ONLY, serial="N3")
        wait_log(d, r"nolib.bundle cannot be used")
        testbed.remove_device(1, 3)
        plug(testbed, 4, NOLIB, CCID_ONLY, serial="N4")
        wait_log(d, r"nolib.bundle still cannot be used")
        # a device gone before its driver opens it: no reader, no error of scardd's
        plug(testbed, 5, TOKEN, TOKEN_IFS, serial="V1", mode=None)
        wait_log(d, r"USB device /dev/bus/usb/001/005 is gone")
        plug(testbed, 6, DUAL, DUAL_IFS, serial="B2")
        wait_names([d], 4, "the token and the composite reader")
        assert d.proc.poll() is None
    finally:
        d.cleanup()
    assert log_count(d, r"ERROR USB reader .*nolib.bundle cannot be used") == 1
    assert log_count(d, r"ERROR USB reader .*\(V1\)") == 0


def test_bursts_as_pcscd_and_nothing_left(testbed, drivers):
    """Plugs and unplugs without waiting for the daemons: scardd ends with
    pcscd's names, and once the devices are gone, with the threads and
    descriptors it had before them (every worker joined, every driver
    channel closed)."""
    standard_bundle(drivers)
    plug(testbed, 2, TOKEN, TOKEN_IFS, serial="A1")
    ds = start_pair(testbed, drivers)
    scardd = ds[-1]
    try:
        wait_names(ds, 1, "the token at start")
        pid = daemon_pid(scardd)

        def counts():
            # with a client of our own that has had an answer, every earlier
            # client's end has been seen (its EOF was ready first)
            with pcsc_raw.RawClient(scardd.socket) as c:
                c.version()
                return (len(os.listdir("/proc/%d/task" % pid)),
                        len(os.listdir("/proc/%d/fd" % pid)))
        before = counts()
        kept = []
        for i in range(12):
            plug(testbed, 10 + i, TOKEN, TOKEN_IFS, serial="T%d" % i)
            if i % 3:
                testbed.remove_device(1, 10 + i)
            else:
                kept.append(10 + i)
        plug(testbed, 30, DUAL, DUAL_IFS, serial="B2")
        testbed.remove_device(1, 30)
        plug(testbed, 31, DUAL, DUAL_IFS, serial="B2")
        kept.append(31)
        wait_names(ds, 1 + 4 + 3, "after the bursts")
        assert scardd.proc.poll() is None

        for address in kept:
            testbed.remove_device(1, address)
        wait_names(ds, 1, "every burst device unplugged")
        deadline = time.monotonic() + TIMEOUT
        while counts() != before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counts() == before, "(threads, descriptors): %s before, %s after: %s\n%s" % (
            before, counts(), fd_targets(pid),
            subprocess.run(["ss", "-xpa"], capture_output=True, text=True).stdout[-6000:])
    finally:
        cleanup(ds)


def test_class_driver_after_the_vendors_fails_as_pcscd(testbed, drivers):
    """A vendor's bundle and the class driver (CFBundleName CCIDCLASSDRIVER)
    both list a device; the vendor's driver cannot open it: both daemons try
    the class driver, which names the reader with the vendor's ifdFriendlyName."""
    make_bundle(drivers, "vendor.bundle", [FALLBACK],
                configs={"%04x-%04x-0.conf" % FALLBACK[:2]: "readers = 0\n"})
    make_bundle(drivers, "ccid-class.bundle", [(FALLBACK[0], FALLBACK[1], "Class Name")],
                name="CCIDCLASSDRIVER",
                configs={"%04x-%04x-0.conf" % FALLBACK[:2]: reader_conf(1, {0: "builtin"})})
    plug(testbed, 2, FALLBACK, CCID_ONLY, serial="F1")
    ds = start_pair(testbed, drivers)
    try:
        names = wait_names(ds, 1, "the class driver's reader")
        assert names[0].startswith("Test Vendor Reader [CCID] (F1) "), names
        wait_log(ds[-1], r"trying the class driver .*ccid-class.bundle")
    finally:
        cleanup(ds)
