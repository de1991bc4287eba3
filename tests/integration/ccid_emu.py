"""An emulated USB CCID reader in a umockdev testbed, for Debian's libccid.

The device is a "Generic EMV Smartcard Reader" (058C:9590, a model libccid's
Info.plist lists) with one CCID interface: its sysfs entries (with the binary
`descriptors` file libusb reads) live in a umockdev testbed, and the usbdevfs
ioctls libusb issues on /dev/bus/usb/001/002 are answered here, by a
UMockdev.IoctlBase handler: control requests (descriptors, CCID class
requests), and URBs on the bulk and interrupt endpoints, which carry CCID
messages (PC_to_RDR_* out, RDR_to_PC_* in; USB CCID 1.1, chapter 6).

The card behind the reader is ifd-virtual's card emulation: the built
libifd-virtual.so is loaded with ctypes and driven through its IFD handler
API (IFDHCreateChannelByName with a configuration holding the built-in card,
IFDHPowerICC for IccPowerOn, IFDHTransmitToICC for each XfrBlock). The reader
declares short-APDU exchanges, so every XfrBlock carries one whole APDU.

The ioctl handler must live in the process that owns the testbed, and that
process must run under umockdev's preload: so the emulator is a helper
process (this file run as `umockdev-wrapper python3 ccid_emu.py serve
DRIVER`), driven by one JSON command per line on stdin, one JSON answer per
line on stdout, as usb_testbed.py's helper is. CcidEmulator is the test's
side; it offers what usb_env.UsbDaemon needs of a testbed (root, listeners()).

Written for scardd's tests; no code from libccid, libusb or umockdev.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VID, PID = 0x058C, 0x9590  # "Generic EMV Smartcard Reader" in libccid's Info.plist
BUS, ADDRESS = 1, 2
DEVNODE = "/dev/bus/usb/%03d/%03d" % (BUS, ADDRESS)
MANUFACTURER, PRODUCT, SERIAL, INTERFACE = "EmuVendor", "Emu CCID Reader", "0001", \
    "Emu CCID Interface"
# the name pcscd (and scardd) give it: libccid's friendly name, the
# interface string, the serial number, then reader and slot numbers
READER_NAME = "Generic EMV Smartcard Reader [%s] (%s) 00 00" % (INTERFACE, SERIAL)

EP_BULK_OUT, EP_BULK_IN, EP_INTR = 0x01, 0x82, 0x83

# what the log says of an ioctl whose process went away before its answer
CLIENT_LEFT = "the process left before its answer"

# CCID message types
PC_TO_RDR = {0x62: "IccPowerOn", 0x63: "IccPowerOff", 0x65: "GetSlotStatus", 0x6F: "XfrBlock",
             0x6C: "GetParameters", 0x6D: "ResetParameters", 0x61: "SetParameters",
             0x6B: "Escape", 0x6E: "IccClock", 0x6A: "T0APDU", 0x69: "Secure",
             0x71: "Mechanical", 0x72: "Abort", 0x73: "SetDataRateAndClockFrequency"}
RDR_DATABLOCK, RDR_SLOTSTATUS, RDR_PARAMETERS, RDR_ESCAPE, RDR_RATECLOCK = \
    0x80, 0x81, 0x82, 0x83, 0x84

# IFD handler constants (include/PCSC/ifdhandler.h)
IFD_POWER_UP, IFD_POWER_DOWN = 500, 501

# usbdevfs ioctl requests on x86_64 (linux/usbdevice_fs.h: _IOR/_IOW/_IOWR('U', n, struct))
USBDEVFS = {0xC0185500: "CONTROL", 0xC0185502: "BULK", 0x80085504: "SETINTERFACE",
            0x80045505: "SETCONFIGURATION", 0x41045508: "GETDRIVER", 0x8038550A: "SUBMITURB",
            0x0000550B: "DISCARDURB", 0x4008550C: "REAPURB", 0x4008550D: "REAPURBNDELAY",
            0x8004550F: "CLAIMINTERFACE", 0x80045510: "RELEASEINTERFACE",
            0x40085511: "CONNECTINFO", 0xC0105512: "IOCTL", 0x00005514: "RESET",
            0x80045515: "CLEAR_HALT", 0x00005516: "DISCONNECT", 0x00005517: "CONNECT",
            0x8004551A: "GET_CAPABILITIES", 0x8108551B: "DISCONNECT_CLAIM",
            0x0000551F: "GET_SPEED", 0x80045518: "CLAIM_PORT", 0x80045519: "RELEASE_PORT",
            0x4004551E: "DROP_PRIVILEGES"}
URB_STRUCT_SIZE = 56  # struct usbdevfs_urb without iso frames, x86_64
URB_ISO, URB_INTERRUPT, URB_CONTROL, URB_BULK = 0, 1, 2, 3

WRAPPER = "/usr/bin/umockdev-wrapper"
PYTHON = "/usr/bin/python3"
TIMEOUT = 30


# --- the test's side ----------------------------------------------------------------

class CcidEmulator:
    """The helper process holding the testbed and the emulated reader."""

    def __init__(self, driver, env=None):
        self.logdir = Path(tempfile.mkdtemp(prefix="ccid-emu-"))
        self.log_path = self.logdir / "emu.log"
        self.stderr = open(self.logdir / "stderr", "wb")
        self.proc = subprocess.Popen(
            [WRAPPER, PYTHON, os.path.abspath(__file__), "serve", str(driver), str(self.log_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=dict(os.environ if env is None else env))
        try:
            hello = self._read()
        except BaseException:
            self.close()
            raise
        self.root = Path(hello["root"])
        self.card = hello["card"]  # {"atr": hex} as the driver powered it up

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the CCID emulator ended (exit %s): %s\n%s" % (
                self.proc.poll(), self.errors()[-3000:], self.log[-3000:]))
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError("CCID emulator: " + answer["error"])
        return answer

    def _ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def stats(self):
        """What the reader was asked: {"messages": {CCID message name: count},
        "xfr": [[APDU hex, answer hex], ...], "unanswered": n, "ioctls": n}."""
        return self._ask(op="stats")

    def unplug(self):
        """The device goes away: its ioctls fail as on a disconnected device,
        then "remove" for the interface and the device, as the kernel sends."""
        self._ask(op="unplug")

    def listeners(self):
        """The uevent sockets of the processes listening now (usb_testbed.py)."""
        return sorted(p.name for p in self.root.glob("event*"))

    @property
    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def errors(self):
        try:
            return (self.logdir / "stderr").read_text(errors="replace")
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        self.stderr.close()
        self.saved_errors = self.errors()
        self.saved_log = self.log
        root = getattr(self, "root", None)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        keep = os.environ.get("SCARDD_TEST_LOGS")
        if keep and self.log_path.exists():
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.log_path, Path(keep) / ("%s.log" % self.logdir.name))
        shutil.rmtree(self.logdir, ignore_errors=True)


# --- the helper process: the card ---------------------------------------------------

class VirtualCard:
    """ifd-virtual's built-in card, through the driver's IFD handler API."""

    def __init__(self, driver, workdir):
        import ctypes
        C = ctypes
        DWORD = C.c_ulong

        class IoHeader(C.Structure):
            _fields_ = [("Protocol", DWORD), ("Length", DWORD)]

        self.C, self.DWORD, self.IoHeader = C, DWORD, IoHeader
        lib = C.CDLL(str(driver))
        lib.IFDHCreateChannelByName.argtypes = [DWORD, C.c_char_p]
        lib.IFDHPowerICC.argtypes = [DWORD, DWORD, C.c_void_p, C.POINTER(DWORD)]
        lib.IFDHTransmitToICC.argtypes = [DWORD, IoHeader, C.c_char_p, DWORD, C.c_void_p,
                                          C.POINTER(DWORD), C.c_void_p]
        lib.IFDHCloseChannel.argtypes = [DWORD]
        for f in (lib.IFDHCreateChannelByName, lib.IFDHPowerICC, lib.IFDHTransmitToICC,
                  lib.IFDHCloseChannel):
            f.restype = C.c_long
        self.lib = lib
        self.lun = 0
        conf = Path(workdir) / "virtual.conf"
        conf.write_text("readers = 1\ncard.0 = builtin\n")
        rc = lib.IFDHCreateChannelByName(self.lun, str(conf).encode())
        if rc != 0:
            raise RuntimeError("IFDHCreateChannelByName(%s): %d" % (conf, rc))

    def power(self, up):
        buf = (self.C.c_ubyte * 64)()
        n = self.DWORD(len(buf))
        rc = self.lib.IFDHPowerICC(self.lun, IFD_POWER_UP if up else IFD_POWER_DOWN, buf,
                                   self.C.byref(n))
        return rc, bytes(buf[:n.value]) if rc == 0 and up else b""

    def transmit(self, protocol, apdu):
        rx = (self.C.c_ubyte * 65538)()
        n = self.DWORD(len(rx))
        rc = self.lib.IFDHTransmitToICC(self.lun, self.IoHeader(protocol, 8), apdu, len(apdu),
                                        rx, self.C.byref(n), None)
        return rc, bytes(rx[:n.value]) if rc == 0 else b""

    def close(self):
        self.lib.IFDHCloseChannel(self.lun)


# --- the helper process: the reader -------------------------------------------------

def descriptors():
    """The device descriptor and the configuration descriptor (with the
    interface, the CCID class descriptor and three endpoints)."""
    import struct
    device = struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0200, 0, 0, 0, 64, VID, PID, 0x0100,
                         1, 2, 3, 1)
    ccid = struct.pack(
        "<BBHBBIIIBIIBIIIIIBBHBB",
        54, 0x21, 0x0110,   # length, CCID functional descriptor, CCID 1.10
        0,                  # one slot
        0x07,               # 5 V, 3 V, 1.8 V
        0x00000003,         # T=0 and T=1
        3580, 3580, 0,      # clock (kHz): default, maximum, no list
        9600, 115200, 0,    # data rate: default, maximum, no list
        254,                # maximum IFSD
        0, 0,               # no synchronous protocols, no mechanics
        0x000200FE,         # automatic everything, short-APDU exchanges
        271,                # maximum CCID message length
        0xFF, 0xFF,         # GetResponse / Envelope class: echo the APDU's
        0, 0, 1)            # no LCD, no PIN pad, one busy slot at a time
    interface = struct.pack("<BBBBBBBBB", 9, 4, 0, 0, 3, 0x0B, 0, 0, 0)
    endpoints = (struct.pack("<BBBBHB", 7, 5, EP_BULK_OUT, 2, 64, 0)
                 + struct.pack("<BBBBHB", 7, 5, EP_BULK_IN, 2, 64, 0)
                 + struct.pack("<BBBBHB", 7, 5, EP_INTR, 3, 8, 16))
    body = interface + ccid + endpoints
    config = struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), 1, 1, 0, 0x80, 50) + body
    return device, config


STRINGS = {1: MANUFACTURER, 2: PRODUCT, 3: SERIAL}


class Reader:
    """The CCID side: one slot, the card behind it."""

    def __init__(self, card, log):
        self.card = card
        self.log = log
        self.powered = False
        self.protocol = 1
        self.messages = {}
        self.xfr = []
        self.unanswered = 0

    def status(self):
        return 0 if self.powered else 1  # bmICCStatus: active / present, inactive

    def message(self, msg):
        """One PC_to_RDR message in, its RDR_to_PC answer out."""
        import struct
        if len(msg) < 10:
            self.log("short CCID message %s" % msg.hex())
            self.unanswered += 1
            return None
        mtype, length, slot, seq = struct.unpack_from("<BIBB", msg)
        data = msg[10:10 + length]
        name = PC_TO_RDR.get(mtype, "0x%02X" % mtype)
        self.messages[name] = self.messages.get(name, 0) + 1

        def answer(rtype, payload=b"", failed=False, error=0, specific=0):
            status = self.status() | (0x40 if failed else 0)
            return struct.pack("<BIBBBBB", rtype, len(payload), slot, seq, status, error,
                               specific) + payload

        def parameters():
            if self.protocol == 1:  # Fi/Di, TCCKS, guard time, BWI/CWI, clock stop, IFSC, NAD
                return answer(RDR_PARAMETERS, bytes([0x11, 0x10, 0x00, 0x4D, 0x00, 0xFE, 0x00]),
                              specific=1)
            return answer(RDR_PARAMETERS, bytes([0x11, 0x00, 0x00, 0x0A, 0x00]))

        if slot != 0:
            r = answer(RDR_SLOTSTATUS, failed=True, error=5)  # bad slot
        elif mtype == 0x62:
            rc, atr = self.card.power(True)
            if rc == 0:
                self.powered = True
                r = answer(RDR_DATABLOCK, atr)
            else:
                r = answer(RDR_DATABLOCK, failed=True, error=0xFE)  # ICC mute
        elif mtype == 0x63:
            self.card.power(False)
            self.powered = False
            r = answer(RDR_SLOTSTATUS)
        elif mtype == 0x65:
            r = answer(RDR_SLOTSTATUS)
        elif mtype == 0x6F:
            if not self.powered:
                r = answer(RDR_DATABLOCK, failed=True, error=0xFE)
            else:
                rc, resp = self.card.transmit(self.protocol, data)
                self.xfr.append([data.hex().upper(), resp.hex().upper() if rc == 0 else
                                 "rc=%d" % rc])
                if rc == 0:
                    r = answer(RDR_DATABLOCK, resp)
                else:
                    r = answer(RDR_DATABLOCK, failed=True, error=0xFE)
        elif mtype in (0x6C, 0x6D):
            r = parameters()
        elif mtype == 0x61:
            self.protocol = msg[7]
            r = parameters()
        elif mtype == 0x6B:
            r = answer(RDR_ESCAPE)
        elif mtype == 0x73:
            r = answer(RDR_RATECLOCK, struct.pack("<II", 3580, 9600))
        else:
            r = answer(RDR_SLOTSTATUS, failed=True, error=0)  # command not supported
        self.log("CCID %s %s -> %s" % (name, msg.hex(), r.hex()))
        return r


class Urb:
    def __init__(self, addr, kind, endpoint, buflen, out):
        self.addr, self.kind, self.endpoint, self.buflen = addr, kind, endpoint, buflen
        self.out = out
        self.status = 0
        self.data = b""
        self.actual = 0


def make_handler(reader, log):
    """The usbdevfs side, as a UMockdev.IoctlBase subclass."""
    import collections
    import errno
    import struct
    import threading
    import traceback
    import gi
    gi.require_version("UMockdev", "1.0")
    from gi.repository import Gio, GLib, UMockdev

    device_desc, config_desc = descriptors()

    def client_left(e):
        """The ioctl's process ended (or closed the device) while its call
        was being answered: pcscd exits on SIGTERM with its card-event
        thread inside an ioctl, as a process may with a real device."""
        return isinstance(e, GLib.Error) and \
            e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CONNECTION_CLOSED)

    class UsbDevfs(UMockdev.IoctlBase):
        def __init__(self):
            super().__init__()
            self.lock = threading.Lock()
            self.pending = []                   # IN URBs waiting for data
            self.done = collections.deque()     # URBs to be reaped
            self.answers = collections.deque()  # CCID answers waiting for a bulk IN URB
            self.notified = False
            self.gone = False
            self.ioctls = 0

        def control(self, setup):
            rtype, req, value, index, length = struct.unpack("<BBHHH", setup)
            if rtype == 0x80 and req == 6:  # GET_DESCRIPTOR
                kind, idx = value >> 8, value & 0xFF
                if kind == 1:
                    return device_desc[:length]
                if kind == 2:
                    return config_desc[:length]
                if kind == 3:
                    if idx == 0:
                        return bytes([4, 3, 0x09, 0x04])[:length]  # US English
                    if idx in STRINGS:
                        s = STRINGS[idx].encode("utf-16-le")
                        return (bytes([2 + len(s), 3]) + s)[:length]
                return None
            if rtype == 0x80 and req == 0:  # GET_STATUS
                return b"\x00\x00"[:length]
            if rtype == 0x80 and req == 8:  # GET_CONFIGURATION
                return b"\x01"[:length]
            if rtype == 0xA1 and req == 0x02:  # CCID GET_CLOCK_FREQUENCIES
                return struct.pack("<I", 3580)[:length]
            if rtype == 0xA1 and req == 0x03:  # CCID GET_DATA_RATES
                return struct.pack("<I", 9600)[:length]
            if not rtype & 0x80:
                return b""  # OUT requests: accepted
            return None  # stall

        def submit(self, client):
            desc = client.get_arg().resolve(0, URB_STRUCT_SIZE)
            raw = bytes(desc.retrieve())
            kind, endpoint = raw[0], raw[1]
            buflen, = struct.unpack_from("<i", raw, 24)
            out = b""
            if buflen > 0 and (kind == URB_CONTROL or not endpoint & 0x80):
                out = bytes(desc.resolve(16, buflen).retrieve())
            u = Urb(desc.client_addr, kind, endpoint, buflen, out)
            with self.lock:
                if kind == URB_CONTROL:
                    r = self.control(out[:8])
                    if r is None:
                        u.status = -errno.EPIPE
                    elif out[0] & 0x80:
                        u.data, u.actual = r, len(r)
                    else:
                        u.actual = max(0, buflen - 8)
                    self.done.append(u)
                elif kind == URB_BULK and not endpoint & 0x80:
                    u.actual = buflen
                    self.done.append(u)
                    r = reader.message(out)
                    if r is not None:
                        self.answers.append(r)
                elif kind == URB_BULK:
                    self.pending.append(u)
                elif kind == URB_INTERRUPT and not self.notified:
                    # RDR_to_PC_NotifySlotChange: slot 0 has a card, changed
                    self.notified = True
                    u.data, u.actual = b"\x50\x03", 2
                    self.done.append(u)
                elif kind == URB_INTERRUPT:
                    self.pending.append(u)
                else:
                    u.status = -errno.EINVAL
                    self.done.append(u)
                while self.answers:
                    u = next((p for p in self.pending
                              if p.kind == URB_BULK and p.endpoint & 0x80), None)
                    if u is None:
                        break
                    self.pending.remove(u)
                    r = self.answers.popleft()
                    u.data = r[:u.buflen]
                    u.actual = len(u.data)
                    self.done.append(u)
            client.complete(0, 0)

        def reap(self, client):
            with self.lock:
                u = self.done.popleft() if self.done else None
            if u is None:
                # once the device is gone and its URBs are reaped: ENODEV, as
                # the kernel answers (it lets URBs be reaped after a disconnect)
                client.complete(-1, errno.ENODEV if self.gone else errno.EAGAIN)
                return
            slot = client.get_arg().resolve(0, 8)
            slot.update(0, list(struct.pack("<Q", u.addr)))
            desc = slot.resolve(0, URB_STRUCT_SIZE)
            desc.update(4, list(struct.pack("<i", u.status)))
            desc.update(28, list(struct.pack("<i", u.actual)))
            if u.data:
                buf = desc.resolve(16, u.buflen)
                buf.update(8 if u.kind == URB_CONTROL else 0, list(u.data))
            if u.status:
                log("reaped URB ep %02x status %d" % (u.endpoint, u.status))
            client.complete(0, 0)

        def discard(self, client):
            addr, = struct.unpack("<Q", bytes(client.get_arg().retrieve())[:8])
            with self.lock:
                u = next((p for p in self.pending if p.addr == addr), None)
                if u is None:
                    log("discard of a URB not in flight")
                    client.complete(-1, errno.EINVAL)
                    return
                self.pending.remove(u)
                u.status, u.actual = -errno.ENOENT, 0
                self.done.append(u)
            client.complete(0, 0)

        def disconnect(self):
            """The device left: URBs in flight end with ESHUTDOWN, as the
            kernel ends them (libusb learns of the disconnect from them: a
            umockdev descriptor never polls POLLERR as a usbfs one does)."""
            with self.lock:
                self.gone = True
                for u in self.pending:
                    u.status, u.actual = -errno.ESHUTDOWN, 0
                    self.done.append(u)
                self.pending = []

        def do_handle_ioctl(self, client):
            name = USBDEVFS.get(client.get_request(), hex(client.get_request()))
            self.ioctls += 1
            try:
                if self.gone and name not in ("REAPURBNDELAY", "REAPURB", "DISCARDURB"):
                    client.complete(-1, errno.ENODEV)  # a disconnected device
                elif name == "SUBMITURB":
                    self.submit(client)
                elif name in ("REAPURBNDELAY", "REAPURB"):
                    self.reap(client)
                elif name == "DISCARDURB":
                    self.discard(client)
                elif name == "GET_CAPABILITIES":
                    # zero-length packets, continuous bulk, no packet size limit
                    client.get_arg().resolve(0, 4).update(0, list(struct.pack("<I", 0x07)))
                    client.complete(0, 0)
                elif name == "CONNECTINFO":
                    client.get_arg().resolve(0, 8).update(
                        0, list(struct.pack("<IB3x", ADDRESS, 0)))
                    client.complete(0, 0)
                elif name == "GET_SPEED":
                    client.complete(2, 0)  # full speed
                elif name in ("GETDRIVER", "IOCTL"):
                    client.complete(-1, errno.ENODATA)  # no kernel driver bound
                elif name in ("CLAIMINTERFACE", "RELEASEINTERFACE", "SETINTERFACE",
                              "SETCONFIGURATION", "CLEAR_HALT", "RESET", "DISCONNECT_CLAIM",
                              "CONNECT", "DISCONNECT"):
                    log("ioctl %s" % name)
                    client.complete(0, 0)
                else:
                    log("ioctl %s: not emulated" % name)
                    client.complete(-1, errno.ENOTTY)
            except Exception as e:
                if client_left(e):
                    log("ioctl %s: %s (%s)" % (name, CLIENT_LEFT, e.message))
                    return True  # nobody to answer
                log("ioctl %s failed:\n%s" % (name, traceback.format_exc()))
                client.complete(-1, errno.EIO)
            return True

    return UsbDevfs()


def serve(driver, log_path):
    import threading
    import gi
    gi.require_version("UMockdev", "1.0")
    from gi.repository import GLib, UMockdev

    logf = open(log_path, "w", buffering=1)

    def log(text):
        logf.write("%.3f %s\n" % (time.monotonic(), text))

    def reply(**kw):
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    workdir = tempfile.mkdtemp(prefix="ccid-emu-card-")
    try:
        card = VirtualCard(driver, workdir)
        rc, atr = card.power(True)
        if rc != 0:
            raise RuntimeError("IFDHPowerICC: %d" % rc)
        card.power(False)
    except Exception as e:
        shutil.rmtree(workdir, ignore_errors=True)
        reply(error="the ifd-virtual card (%s): %s: %s" % (driver, type(e).__name__, e))
        return 1

    tb = UMockdev.Testbed.new()
    root = tb.get_root_dir()
    device_desc, config_desc = descriptors()
    minor = (BUS - 1) * 128 + ADDRESS - 1
    dev = tb.add_device(
        "usb", "usb%d/%d-1" % (BUS, BUS), None,
        ["idVendor", "%04x" % VID, "idProduct", "%04x" % PID, "bcdDevice", "0100",
         "bDeviceClass", "00", "bDeviceSubClass", "00", "bDeviceProtocol", "00",
         "bNumConfigurations", "1", "bConfigurationValue", "1", "bNumInterfaces", " 1",
         "bMaxPacketSize0", "64", "busnum", str(BUS), "devnum", str(ADDRESS), "speed", "12",
         "version", " 2.00", "maxchild", "0", "manufacturer", MANUFACTURER,
         "product", PRODUCT, "serial", SERIAL, "dev", "189:%d" % minor],
        ["DEVTYPE", "usb_device", "DEVNAME", DEVNODE, "BUSNUM", "%03d" % BUS,
         "DEVNUM", "%03d" % ADDRESS, "MAJOR", "189", "MINOR", str(minor),
         "PRODUCT", "%x/%x/100" % (VID, PID), "TYPE", "0/0/0", "DRIVER", "usb"])
    tb.set_attribute_binary(dev, "descriptors", list(device_desc + config_desc))
    itf = tb.add_device(
        "usb", "%d-1:1.0" % BUS, dev,
        ["bInterfaceNumber", "00", "bAlternateSetting", " 0", "bNumEndpoints", "03",
         "bInterfaceClass", "0b", "bInterfaceSubClass", "00", "bInterfaceProtocol", "00",
         "interface", INTERFACE],
        ["DEVTYPE", "usb_interface", "INTERFACE", "11/0/0", "PRODUCT", "%x/%x/100" % (VID, PID),
         "TYPE", "0/0/0",
         "MODALIAS", "usb:v%04Xp%04Xd0100dc00dsc00dp00ic0Bisc00ip00in00" % (VID, PID)])
    # the preload redirects opening /dev/bus/usb/... into the testbed and
    # connects the descriptor to the ioctl handler: the node is a plain file
    node = Path(root + DEVNODE)
    node.parent.mkdir(parents=True, exist_ok=True)
    node.write_bytes(b"")
    os.chmod(node, 0o666)

    reader = Reader(card, log)
    handler = make_handler(reader, log)
    tb.attach_ioctl(DEVNODE, handler)
    log("device %s, interface %s, card ATR %s" % (dev, itf, atr.hex()))

    loop = GLib.MainLoop()

    def on_main(fn):
        """Runs fn on the main loop's thread (the testbed's), returns its result."""
        box = {}
        done = threading.Event()

        def run():
            try:
                box["value"] = fn()
            except Exception as e:
                box["error"] = "%s: %s" % (type(e).__name__, e)
            done.set()
            return GLib.SOURCE_REMOVE
        GLib.idle_add(run)
        done.wait()
        return box

    def unplug():
        handler.disconnect()
        for path in (itf, dev):
            tb.uevent(path, "remove")
            tb.remove_device(path)
        log("unplugged")
        return True

    def commands():
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "stats":
                with handler.lock:
                    reply(messages=dict(reader.messages), xfr=list(reader.xfr),
                          unanswered=reader.unanswered, ioctls=handler.ioctls)
            elif op == "unplug":
                box = on_main(unplug)
                if "error" in box:
                    reply(error=box["error"])
                else:
                    reply(ok=True)
            else:
                reply(error="unknown op %r" % op)
        GLib.idle_add(loop.quit)

    threading.Thread(target=commands, daemon=True).start()
    reply(root=root, card={"atr": atr.hex().upper()})
    try:
        loop.run()
    finally:
        try:
            tb.detach_ioctl(DEVNODE)
        except Exception:
            pass
        card.close()
        shutil.rmtree(workdir, ignore_errors=True)
        log("done")
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    sys.exit(serve(sys.argv[2], sys.argv[3]))
