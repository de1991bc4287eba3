"""scardd and Debian's pcscd in one umockdev testbed (usb_testbed.py), with
ifd-virtual installed as USB driver bundles under test vendor/product ids.

A test bundle is a copy of ifd-virtual's library with an Info.plist listing
test ids (pid.codes' test vendor 0x1209, which libccid does not list) and,
in Contents/usb/, one ifd-virtual configuration per interface that is a
reader (src/drivers/virtual/vusb.h): "vvvv-pppp-IF.conf" for every device of
a model, "BBB-DDD-IF.conf" for one plugged device.

pcscd binds /run/pcscd/pcscd.comm and reads its bundles from the compiled-in
/usr/lib/pcsc/drivers: it runs in a private mount namespace with the test's
directories bind-mounted on both (pcscd_ns.py). Both daemons run under the
umockdev preload with the testbed's UMOCKDEV_DIR.
"""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import pcsc_raw
import pcscd_ns
import usb_testbed
from scardd_argv import scardd_argv
from virtual_env import DRIVER, PCSCD, SCARDD, _die_with_parent, driver_is_sanitized, stop_pid

TEST_VID = 0x1209  # pid.codes: its ids 0x0001-0x000F are for tests
TIMEOUT = 30

PLIST = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>CFBundleExecutable</key>
	<string>libifd-virtual.so</string>
	<key>CFBundleName</key>
	<string>%(name)s</string>
	<key>ifdCapabilities</key>
	<string>0x00000000</string>
	<key>ifdManufacturerString</key>
	<string>scardd tests</string>
	<key>ifdProductString</key>
	<string>ifd-virtual as a USB driver</string>
	<key>Copyright</key>
	<string>BSD-3-Clause</string>
	<key>ifdVendorID</key>
	<array>
%(vids)s
	</array>
	<key>ifdProductID</key>
	<array>
%(pids)s
	</array>
	<key>ifdFriendlyName</key>
	<array>
%(names)s
	</array>
</dict>
</plist>
"""


def need_testbed():
    missing = usb_testbed.available()
    if missing:
        pytest.fail("missing-package: %s" % missing, pytrace=False)


def make_bundle(drivers, bundle, devices, name="ifd-virtual-usb", configs=None, plist=None):
    """A bundle in drivers/: devices is [(vid, pid, friendly name)]; configs
    maps a Contents/usb file name to its text. plist replaces the Info.plist."""
    contents = Path(drivers) / bundle / "Contents"
    (contents / "Linux").mkdir(parents=True, exist_ok=True)
    (contents / "usb").mkdir(exist_ok=True)
    shutil.copy(DRIVER, contents / "Linux" / "libifd-virtual.so")
    row = "\t\t<string>%s</string>"
    if plist is None:
        plist = PLIST % {
            "name": name,
            "vids": "\n".join(row % ("0x%04X" % v) for v, _, _ in devices),
            "pids": "\n".join(row % ("0x%04X" % p) for _, p, _ in devices),
            "names": "\n".join(row % n for _, _, n in devices),
        }
    (contents / "Info.plist").write_text(plist)
    for fname, text in (configs or {}).items():
        (contents / "usb" / fname).write_text(text)
    return contents


def reader_conf(readers=1, cards=None, control=None):
    """An ifd-virtual configuration (src/drivers/virtual/CARD-FORMAT.md)."""
    lines = ["readers = %d" % readers]
    if control:
        lines.append("control = %s" % control)
    lines += ["card.%d = %s" % (slot, card) for slot, card in (cards or {}).items()]
    return "\n".join(lines) + "\n"


class UsbDaemon:
    """scardd or pcscd on the testbed, with drivers/ as its bundles."""

    def __init__(self, kind, testbed, drivers, args=(), env=None, extra_fds=0):
        self.kind = kind
        self.testbed = testbed
        self.drivers = Path(drivers)
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.extra_fds = extra_fds
        self.dir = Path(tempfile.mkdtemp(prefix="usb-%s-" % kind))
        os.chmod(self.dir, 0o755)
        self.confdir = self.dir / "reader.conf.d"
        self.confdir.mkdir()
        (self.dir / "run").mkdir()
        os.chmod(self.dir / "run", 0o777)
        self.socket = str(self.dir / "run" / "pcscd.comm")
        self.proc = None
        self.log_file = None
        self.saved_log = ""

    def argv(self):
        if self.kind == "pcscd":
            if not pcscd_ns.private_mount_ok():
                pytest.fail("no-namespace: pcscd beside scardd needs a private mount namespace "
                            "(root and unshare)", pytrace=False)
            if driver_is_sanitized():
                pytest.skip("sanitizer: a sanitizer-built driver cannot load into Debian's pcscd")
            inner = [usb_testbed.WRAPPER, PCSCD, "-f", "-d", "-c", str(self.confdir)] + self.args
            return ["unshare", "--mount", "--propagation", "private", "--net", "sh", "-c",
                    usb_testbed.ROOMY_UEVENTS + ' && mkdir -p /run/pcscd && '
                    'mount --bind "$0" /run/pcscd && '
                    'mount --bind "$1" /usr/lib/pcsc/drivers && shift && exec "$@"',
                    str(self.dir / "run"), str(self.drivers)] + inner
        argv = scardd_argv(SCARDD, "--foreground", "--debug", "--socket", self.socket,
                           "--config-dir", self.confdir, "--drivers-dir", self.drivers, *self.args)
        return ["unshare", "--net", "sh", "-c", usb_testbed.ROOMY_UEVENTS + ' && exec "$@"',
                "sh"] + argv

    def env(self):
        env = usb_testbed.preload_env(self.testbed.root)
        if self.kind == "pcscd":
            env.pop("LD_PRELOAD")  # umockdev-wrapper sets it for pcscd alone
        env.update(self.extra_env)
        return env

    @property
    def log(self):
        """The daemon's log so far (kept after cleanup)."""
        path = self.dir / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else self.saved_log

    def start(self):
        self.log_file = open(self.dir / "daemon.log", "wb")
        spare = usb_testbed.spare_fds(self.extra_fds)
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=self.log_file, stderr=subprocess.STDOUT,
                                         env=self.env(), preexec_fn=_die_with_parent,
                                         pass_fds=spare)
        finally:
            for fd in spare:
                os.close(fd)
        deadline = time.monotonic() + TIMEOUT
        while not pcsc_raw.socket_alive(self.socket):
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s):\n%s" % (self.kind, self.proc.returncode,
                                                           self.log[-4000:]))
            if time.monotonic() > deadline:
                raise RuntimeError("%s never served %s:\n%s" % (self.kind, self.socket,
                                                               self.log[-4000:]))
            time.sleep(0.1)
        return self

    def names(self):
        return [rs.name for rs in pcsc_raw.readers_state(self.socket)]

    def stop(self):
        """Stops the daemon; a daemon that does not end cleanly on SIGTERM
        (a crash, an abort on the way out) fails the test with its log."""
        proc, self.proc = self.proc, None
        running = proc is not None and proc.poll() is None
        stop_pid(proc)
        if self.log_file:
            self.log_file.close()
            self.log_file = None
            log = self.log
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in log:
                    i = log.index(marker)
                    raise AssertionError("%s log:\n%s" % (self.kind, log[max(0, i - 200):i + 4000]))
        if running and proc.returncode != 0:
            raise AssertionError("%s ended with status %s when stopped; log tail:\n%s"
                                 % (self.kind, proc.returncode, self.log[-4000:]))

    def cleanup(self):
        try:
            self.stop()
        finally:
            if (self.dir / "daemon.log").exists():
                self.saved_log = self.log
                keep = os.environ.get("SCARDD_TEST_LOGS")
                if keep:
                    Path(keep).mkdir(parents=True, exist_ok=True)
                    shutil.copy(self.dir / "daemon.log",
                                Path(keep) / ("%s-%s.log" % (self.dir.name, self.kind)))
            shutil.rmtree(self.dir, ignore_errors=True)


def wait_names(daemons, count, what, timeout=TIMEOUT):
    """Waits until every daemon lists `count` readers and all list the same
    names in the same order; returns them. Fails showing each daemon's list
    and log tail otherwise."""
    deadline = time.monotonic() + timeout
    lists = None
    while time.monotonic() < deadline:
        lists = [d.names() for d in daemons]
        if all(len(l) == count for l in lists) and all(l == lists[0] for l in lists):
            return lists[0]
        time.sleep(0.1)
    detail = "\n".join("%s: %r\n--- log tail:\n%s" % (d.kind, l, d.log[-2500:])
                       for d, l in zip(daemons, lists))
    raise AssertionError("%s: want %d readers named alike by every daemon:\n%s"
                         % (what, count, detail))
