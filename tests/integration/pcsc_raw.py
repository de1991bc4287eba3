"""pcsc-lite protocol 4:4 spoken over a raw AF_UNIX socket.

Struct layouts and command codes follow /work/shared/docs/wire-protocol.md
(Linux x86_64, little-endian, all wire fields 32-bit). Used by the bad-input
tests, by the fixtures to watch reader state without touching the in-process
libpcsclite, and for checks the WinSCard API cannot express.

Nothing here is clever on purpose: each request is packed by hand so a test
can also send it wrong.
"""
import errno
import os
import socket
import struct
import time

# --- command codes -----------------------------------------------------------
SCARD_ESTABLISH_CONTEXT = 0x01
SCARD_RELEASE_CONTEXT = 0x02
SCARD_LIST_READERS = 0x03
SCARD_CONNECT = 0x04
SCARD_RECONNECT = 0x05
SCARD_DISCONNECT = 0x06
SCARD_BEGIN_TRANSACTION = 0x07
SCARD_END_TRANSACTION = 0x08
SCARD_TRANSMIT = 0x09
SCARD_CONTROL = 0x0A
SCARD_STATUS = 0x0B
SCARD_GET_STATUS_CHANGE = 0x0C
SCARD_CANCEL = 0x0D
SCARD_CANCEL_TRANSACTION = 0x0E
SCARD_GET_ATTRIB = 0x0F
SCARD_SET_ATTRIB = 0x10
CMD_VERSION = 0x11
CMD_GET_READERS_STATE = 0x12
CMD_WAIT_READER_STATE_CHANGE = 0x13
CMD_STOP_WAITING_READER_STATE_CHANGE = 0x14
CMD_GET_READER_EVENTS = 0x15
CMD_GET_READERS_STATE_SIZE = 0x16   # 4:6
CMD_GET_READERS_STATE_ARRAY = 0x17  # 4:6

# --- sizes -------------------------------------------------------------------
MAX_READERNAME = 128
MAX_ATR_SIZE = 33
MAX_BUFFER_SIZE = 264
MAX_BUFFER_SIZE_EXTENDED = 4 + 3 + (1 << 16) + 3 + 2  # 65548
PCSCLITE_MAX_READERS_CONTEXTS = 16
READER_STATE_SIZE = 184
READERS_ARRAY_SIZE = PCSCLITE_MAX_READERS_CONTEXTS * READER_STATE_SIZE  # 2944

# struct formats (little-endian, no padding: every field is 32-bit)
FMT = {
    CMD_VERSION: "<iiI",                      # major, minor, rv
    SCARD_ESTABLISH_CONTEXT: "<III",          # dwScope, hContext, rv
    SCARD_RELEASE_CONTEXT: "<II",             # hContext, rv
    SCARD_CONNECT: "<I128sIIiII",             # hContext, szReader, share, prefproto, hCard, activeproto, rv
    SCARD_RECONNECT: "<iIIIII",               # hCard, share, prefproto, init, activeproto, rv
    SCARD_DISCONNECT: "<iII",                 # hCard, disposition, rv
    SCARD_BEGIN_TRANSACTION: "<iI",           # hCard, rv
    SCARD_END_TRANSACTION: "<iII",            # hCard, disposition, rv
    SCARD_CANCEL: "<iI",                      # hContext, rv
    SCARD_STATUS: "<iI",                      # hCard, rv
    SCARD_TRANSMIT: "<iIIIIIII",              # hCard, sendPciProto, sendPciLen, cbSend, recvPciProto, recvPciLen, pcbRecv, rv
    SCARD_CONTROL: "<iIIIII",                 # hCard, code, cbSend, cbRecv, bytesReturned, rv
    SCARD_GET_ATTRIB: "<iI264sII",            # hCard, attrId, attr, cbAttrLen, rv
    SCARD_SET_ATTRIB: "<iI264sII",
    CMD_STOP_WAITING_READER_STATE_CHANGE: "<II",  # timeout, rv
    CMD_GET_READER_EVENTS: "<iI",             # readerEvents, rv
}
SIZE = {cmd: struct.calcsize(fmt) for cmd, fmt in FMT.items()}
assert SIZE[SCARD_CONNECT] == 152 and SIZE[SCARD_GET_ATTRIB] == 280
assert SIZE[SCARD_TRANSMIT] == 32 and SIZE[SCARD_CONTROL] == 24

READER_STATE_FMT = "<128sIIi33s3xII"
assert struct.calcsize(READER_STATE_FMT) == READER_STATE_SIZE

# --- constants (WinSCard) ------------------------------------------------------
SCARD_S_SUCCESS = 0
SCARD_F_INTERNAL_ERROR = 0x80100001
SCARD_E_CANCELLED = 0x80100002
SCARD_E_INVALID_HANDLE = 0x80100003
SCARD_E_INVALID_PARAMETER = 0x80100004
SCARD_E_INSUFFICIENT_BUFFER = 0x80100008
SCARD_E_UNKNOWN_READER = 0x80100009
SCARD_E_TIMEOUT = 0x8010000A
SCARD_E_SHARING_VIOLATION = 0x8010000B
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_E_PROTO_MISMATCH = 0x8010000F
SCARD_E_INVALID_VALUE = 0x80100011
SCARD_E_NOT_TRANSACTED = 0x80100016
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_SERVICE_STOPPED = 0x8010001E
SCARD_E_UNSUPPORTED_FEATURE = 0x8010001F  # pcsc-lite's wire value (Windows: 0x80100022)
SCARD_W_RESET_CARD = 0x80100068
SCARD_W_REMOVED_CARD = 0x80100069

SCARD_SHARE_EXCLUSIVE, SCARD_SHARE_SHARED, SCARD_SHARE_DIRECT = 1, 2, 3
SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1, SCARD_PROTOCOL_RAW = 1, 2, 4
SCARD_LEAVE_CARD, SCARD_RESET_CARD, SCARD_UNPOWER_CARD, SCARD_EJECT_CARD = 0, 1, 2, 3

# readerState bits (daemon side)
SCARD_UNKNOWN, SCARD_ABSENT, SCARD_PRESENT = 0x01, 0x02, 0x04
SCARD_SWALLOWED, SCARD_POWERED, SCARD_NEGOTIABLE, SCARD_SPECIFIC = 0x08, 0x10, 0x20, 0x40

# dwEventState bits (client side, SCardGetStatusChange)
SCARD_STATE_UNAWARE, SCARD_STATE_CHANGED, SCARD_STATE_EMPTY, SCARD_STATE_PRESENT = 0, 0x2, 0x10, 0x20

SCARD_ATTR_ATR_STRING = 0x00090303
SCARD_ATTR_DEVICE_FRIENDLY_NAME = 0x7FFF0003
SCARD_ATTR_DEVICE_SYSTEM_NAME = 0x7FFF0004
SCARD_PROTOCOL_ANY_OLD = 0x1000  # what 1.8.x clients sent for "any"


class Closed(Exception):
    """The daemon closed the connection (EOF or reset)."""


class ReaderState:
    """One reader-state record; fmt is its layout (proto_client.Record
    passes those of other versions and byte orders)."""
    __slots__ = ("name", "event_counter", "state", "sharing", "atr", "atr_len", "protocol")

    def __init__(self, raw, fmt=READER_STATE_FMT):
        name, self.event_counter, self.state, self.sharing, atr, self.atr_len, self.protocol = \
            struct.unpack(fmt, raw)
        self.name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
        self.atr = atr[:min(self.atr_len, MAX_ATR_SIZE)]

    @property
    def present(self):
        return bool(self.state & SCARD_PRESENT)

    def __repr__(self):
        return "%s(%r, ev=%d, state=0x%x, sharing=%d, atr=%s, proto=%d)" % (
            type(self).__name__, self.name, self.event_counter, self.state, self.sharing,
            self.atr.hex(), self.protocol)


def parse_readers(blob):
    """Parse a 16-record array; only used slots (non-empty names) are returned."""
    out = []
    for i in range(0, len(blob) - READER_STATE_SIZE + 1, READER_STATE_SIZE):
        rs = ReaderState(blob[i:i + READER_STATE_SIZE])
        if rs.name:
            out.append(rs)
    return out


def header(cmd, size):
    return struct.pack("<II", size, cmd)


def pack(cmd, *fields):
    return struct.pack(FMT[cmd], *fields)


def message(cmd, *fields):
    body = pack(cmd, *fields)
    return header(cmd, len(body)) + body


class Connection:
    """One connection to the daemon: the socket, the byte level, and the
    requests whose layout is the same in every protocol version. Byte order
    and struct formats come from `e` and fmt(): this class packs the 4:4
    layouts little-endian; proto_client.ProtoClient overrides them for every
    version and both byte orders and inherits the rest. Methods mirror the
    daemon commands and return decoded replies; rv is returned as an unsigned
    32-bit number."""

    e = "<"        # byte order of every field, headers included
    quiet = 0.5    # how long nothing_received() waits by default

    def __init__(self, path, timeout=10.0, connect=True):
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if connect:
            # With a timeout set, Python's AF_UNIX connect is non-blocking and
            # fails with EAGAIN while the listen backlog is full (pcscd uses a
            # backlog of 1). libpcsclite connects blocking; so do we, in effect.
            deadline = time.monotonic() + timeout
            try:
                while True:
                    try:
                        self.sock.connect(path)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.005)
            except BaseException:
                self.sock.close()  # no socket left for the garbage collector to warn about
                raise

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, self.path)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- formats ------------------------------------------------------------
    def fmt(self, cmd):
        return FMT[cmd]

    def size(self, cmd):
        return struct.calcsize(self.fmt(cmd))

    def header(self, cmd, size):
        return struct.pack(self.e + "II", size, cmd)

    def message(self, cmd, *fields):
        body = struct.pack(self.fmt(cmd), *fields)
        return self.header(cmd, len(body)) + body

    # --- byte level ---------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                raise Closed("connection reset after %d of %d bytes" % (len(buf), n))
            except socket.timeout:
                raise TimeoutError("%r: %d of %d bytes after %.1fs" % (
                    self, len(buf), n, self.sock.gettimeout()))
            if not chunk:
                raise Closed("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def wait_closed(self, timeout=10.0):
        """True if the daemon closes the connection (EOF/RST) within timeout
        without sending anything else; False if it stays open. Raises if the
        daemon sends data."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return True
            raise
        if data:
            raise AssertionError("daemon sent %d unexpected bytes: %r" % (len(data), data[:32]))
        return True

    def nothing_received(self, timeout=None):
        """True if no byte (and no EOF) is waiting or arrives within timeout
        (default: `quiet`)."""
        self.sock.settimeout(self.quiet if timeout is None else timeout)
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # data or EOF: something arrived
        except socket.timeout:
            return True
        except OSError:
            return False
        return False

    def pending_bytes(self, timeout=0.3):
        """Everything that arrives within timeout, until EOF or silence."""
        self.sock.settimeout(timeout)
        out = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, OSError):
            pass
        return out

    def call(self, cmd, *fields, trailing=b""):
        self.send(self.message(cmd, *fields) + trailing)
        return struct.unpack(self.fmt(cmd), self.recv_exact(self.size(cmd)))

    # --- commands (one layout in every version) --------------------------------
    def establish(self, scope=0):
        _, ctx, rv = self.call(SCARD_ESTABLISH_CONTEXT, scope, 0, 0)
        return rv, ctx

    def release(self, ctx):
        return self.call(SCARD_RELEASE_CONTEXT, ctx, 0)[1]

    def reconnect(self, card, share, protocols, init):
        r = self.call(SCARD_RECONNECT, card, share, protocols, init, 0, 0)
        return r[5], r[4]

    def disconnect(self, card, disposition=SCARD_LEAVE_CARD):
        return self.call(SCARD_DISCONNECT, card, disposition, 0)[2]

    def begin(self, card):
        return self.call(SCARD_BEGIN_TRANSACTION, card, 0)[1]

    def end(self, card, disposition=SCARD_LEAVE_CARD):
        return self.call(SCARD_END_TRANSACTION, card, disposition, 0)[2]

    def status(self, card):
        return self.call(SCARD_STATUS, card, 0)[1]

    def cancel(self, ctx):
        return self.call(SCARD_CANCEL, ctx, 0)[1]

    def transmit(self, card, apdu, protocol=SCARD_PROTOCOL_T1, recv_len=MAX_BUFFER_SIZE_EXTENDED):
        self.send(self.message(SCARD_TRANSMIT, card, protocol, 16, len(apdu), 0, 16, recv_len, 0)
                  + bytes(apdu))
        r = struct.unpack(self.fmt(SCARD_TRANSMIT), self.recv_exact(self.size(SCARD_TRANSMIT)))
        rv, n = r[7], r[6]
        return rv, (self.recv_exact(n) if rv == 0 else b"")

    def control(self, card, code, data=b"", recv_len=MAX_BUFFER_SIZE_EXTENDED):
        self.send(self.message(SCARD_CONTROL, card, code, len(data), recv_len, 0, 0) + data)
        r = struct.unpack(self.fmt(SCARD_CONTROL), self.recv_exact(self.size(SCARD_CONTROL)))
        rv, n = r[5], r[4]
        return rv, (self.recv_exact(n) if rv == 0 else b"")

    def get_attrib(self, card, attr, length=MAX_BUFFER_SIZE):
        r = self.call(SCARD_GET_ATTRIB, card, attr, b"", length, 0)
        rv, n = r[4], r[3]
        return rv, (r[2][:n] if rv == 0 else b"")

    def set_attrib(self, card, attr, value):
        return self.call(SCARD_SET_ATTRIB, card, attr, value, len(value), 0)[4]


class RawClient(Connection):
    """Protocol 4:4, little-endian: the version, CONNECT with 128-byte
    names and the 16-record reader array of pcsc-lite 1.8.24 - 2.2.3."""

    def version(self, major=4, minor=4):
        return self.call(CMD_VERSION, major, minor, 0)  # (major, minor, rv)

    def connect(self, ctx, reader, share=SCARD_SHARE_SHARED,
                protocols=SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1):
        r = self.call(SCARD_CONNECT, ctx, reader.encode(), share, protocols, 0, 0, 0)
        return r[6], r[4], r[5]  # rv, hCard, activeProtocol

    def readers_state(self):
        self.send(header(CMD_GET_READERS_STATE, 0))
        return parse_readers(self.recv_exact(READERS_ARRAY_SIZE))

    def wait_reader_state_change(self):
        """Registers for events; returns the immediate 4:4 snapshot."""
        self.send(header(CMD_WAIT_READER_STATE_CHANGE, 0))
        return parse_readers(self.recv_exact(READERS_ARRAY_SIZE))

    def recv_event(self, timeout):
        """The later 8-byte event/cancel signal: returns its rv."""
        return struct.unpack("<II", self.recv_exact(8, timeout=timeout))[1]

    def stop_waiting(self):
        self.send(header(CMD_STOP_WAITING_READER_STATE_CHANGE, 0))

    def hello(self, scope=0):
        """CMD_VERSION 4:4 + ESTABLISH; returns hContext (asserts success)."""
        _, _, rv = self.version()
        assert rv == 0, "CMD_VERSION 4:4 rejected: 0x%08X" % rv
        rv, ctx = self.establish(scope)
        assert rv == 0, "ESTABLISH_CONTEXT failed: 0x%08X" % rv
        return ctx


def readers_state(path, timeout=5.0):
    """One-shot snapshot of the daemon's reader array."""
    with RawClient(path, timeout=timeout) as c:
        c.version()
        return c.readers_state()


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, Closed) as e:
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


def socket_alive(path):
    """True if something accepts connections on the unix socket path."""
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
