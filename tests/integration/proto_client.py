"""A raw-socket PC/SC client for every pcsc-lite protocol version.

ProtoClient speaks one version, in one byte order, expecting one
reader-array size, over an AF_UNIX socket, with every request packed by hand
from the facts in shared/docs/wire-protocol.md:

  version        layouts                                          WAIT / STOP
  "4:2-short"    pcsc-lite <= 1.8.3: 100-byte names, CONNECT 124,  8-byte body; nothing at once;
                 reader record 156                                 STOP always answered
  "4:2"          1.8.4 - 1.8.8: 128-byte names, CONNECT 152,       as above
                 record 184
  "4:3"          1.8.9 - 1.8.23                                    8-byte body; nothing at once;
                                                                   STOP answered only if registered
  "4:4"          1.8.24 - 2.2.3                                    no body; the array at once
  "4:5"          2.3.0 - 2.4.1 (+ 0x15 CMD_GET_READER_EVENTS)      as 4:4
  "4:6"          2.5.x (+ 0x16 size, 0x17 array of N records)      no body; nothing at once

Byte order is "little" or "big": every 32-bit field (headers included) is
written and read in that order, as a native client on such a machine would.
No field is word-size dependent, so one client stands for 32- and 64-bit
peers alike.

Nothing is clever on purpose: tests can also send things wrong.
"""
import struct

# what every version shares: the command codes, WinSCard's values, the socket
# and the requests laid out alike (pcsc_raw.Connection), the record's fields
# (ReaderState) and wait_for
from pcsc_raw import (  # noqa: F401  (the constants are this module's too)
    CMD_GET_READER_EVENTS, CMD_GET_READERS_STATE, CMD_GET_READERS_STATE_ARRAY,
    CMD_GET_READERS_STATE_SIZE, CMD_STOP_WAITING_READER_STATE_CHANGE, CMD_VERSION,
    CMD_WAIT_READER_STATE_CHANGE, MAX_ATR_SIZE, MAX_BUFFER_SIZE, MAX_BUFFER_SIZE_EXTENDED,
    SCARD_ABSENT, SCARD_ATTR_ATR_STRING, SCARD_ATTR_DEVICE_FRIENDLY_NAME, SCARD_BEGIN_TRANSACTION,
    SCARD_CANCEL, SCARD_CONNECT, SCARD_CONTROL, SCARD_DISCONNECT, SCARD_E_CANCELLED,
    SCARD_E_INSUFFICIENT_BUFFER, SCARD_E_INVALID_HANDLE, SCARD_E_INVALID_VALUE, SCARD_E_NO_SERVICE,
    SCARD_E_NO_SMARTCARD, SCARD_E_SERVICE_STOPPED, SCARD_E_UNKNOWN_READER,
    SCARD_E_UNSUPPORTED_FEATURE, SCARD_END_TRANSACTION, SCARD_ESTABLISH_CONTEXT,
    SCARD_F_INTERNAL_ERROR, SCARD_GET_ATTRIB, SCARD_LEAVE_CARD, SCARD_NEGOTIABLE, SCARD_POWERED,
    SCARD_PRESENT, SCARD_PROTOCOL_RAW, SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1, SCARD_RECONNECT,
    SCARD_RELEASE_CONTEXT, SCARD_RESET_CARD, SCARD_S_SUCCESS, SCARD_SET_ATTRIB,
    SCARD_SHARE_DIRECT, SCARD_SHARE_EXCLUSIVE, SCARD_SHARE_SHARED, SCARD_SPECIFIC, SCARD_STATUS,
    SCARD_TRANSMIT, SCARD_UNKNOWN, SCARD_UNPOWER_CARD, SCARD_W_REMOVED_CARD, Closed, Connection,
    ReaderState, wait_for)

LEGACY_SLOTS = 16


class Version:
    """What one protocol version looks like on the wire."""

    def __init__(self, name, major, minor, name_len=128, wait_body=False, wait_array=False,
                 stop_always=False, events=False, sized_array=False, releases=""):
        self.name = name
        self.major = major
        self.minor = minor
        self.name_len = name_len
        self.wait_body = wait_body          # WAIT/STOP carry the 8-byte struct (4:2, 4:3)
        self.wait_array = wait_array        # WAIT answers the array at once (4:4, 4:5)
        self.stop_always = stop_always      # STOP answered even when not registered (4:2)
        self.events = events                # 0x15 exists (4:5, 4:6)
        self.sized_array = sized_array      # 0x16/0x17 exist; WAIT sends nothing (4:6)
        self.releases = releases

    @property
    def number(self):
        return (self.major, self.minor)

    @property
    def label(self):
        return "%d:%d" % self.number + (" (100-byte names)" if self.name_len == 100 else "")

    @property
    def record_size(self):
        return self.name_len + 56  # 156 or 184

    @property
    def connect_size(self):
        return self.name_len + 24  # 124 or 152

    def __repr__(self):
        return "Version(%s)" % self.name


VERSIONS = {
    "4:2-short": Version("4:2-short", 4, 2, name_len=100, wait_body=True, stop_always=True,
                         releases="pcsc-lite <= 1.8.3"),
    "4:2": Version("4:2", 4, 2, wait_body=True, stop_always=True, releases="pcsc-lite 1.8.4 - 1.8.8"),
    "4:3": Version("4:3", 4, 3, wait_body=True, releases="pcsc-lite 1.8.9 - 1.8.23"),
    "4:4": Version("4:4", 4, 4, wait_array=True, releases="pcsc-lite 1.8.24 - 2.2.3"),
    "4:5": Version("4:5", 4, 5, wait_array=True, events=True, releases="pcsc-lite 2.3.0 - 2.4.1"),
    "4:6": Version("4:6", 4, 6, events=True, sized_array=True, releases="pcsc-lite 2.5.x"),
}
ORDERS = ("little", "big")
ORDER_LABEL = {"little": "little-endian", "big": "big-endian"}


class Record(ReaderState):
    """One reader-state record of `version` in `order` (its fields are
    pcsc_raw.ReaderState's; raw: its bytes)."""
    __slots__ = ("raw",)

    def __init__(self, raw, version, order):
        e = "<" if order == "little" else ">"
        fmt = "%s%dsIIi33s3xII" % (e, version.name_len)
        assert struct.calcsize(fmt) == version.record_size
        super().__init__(raw, fmt)
        self.raw = raw


def names(records):
    """Names of the used records, in array order."""
    return [r.name for r in records if r.name]


def hx(v):
    return "0x%08X" % (v & 0xFFFFFFFF)


class ProtoClient(Connection):
    """One connection speaking `version` in `order`; `readers` is the array
    size this client expects from 0x12 and from a 4:4/4:5 WAIT. The socket,
    the byte level and the requests every version lays out alike
    (establish, release, disconnect, transmit, ...) are pcsc_raw.Connection's,
    packed with this client's fmt() and byte order."""

    quiet = 0.3  # nothing_received()'s default wait

    def __init__(self, path, version="4:4", order="little", readers=LEGACY_SLOTS, timeout=10.0,
                 connect=True):
        self.v = VERSIONS[version] if isinstance(version, str) else version
        if order not in ORDERS:
            raise ValueError(order)
        self.order = order
        self.e = "<" if order == "little" else ">"
        self.readers = readers
        super().__init__(path, timeout, connect)

    def __repr__(self):
        return "ProtoClient(%s, %s, %d records)" % (self.v.name, self.order, self.readers)

    # --- formats -----------------------------------------------------------------
    def fmt(self, cmd):
        n = self.v.name_len
        f = {
            CMD_VERSION: "iiI",
            SCARD_ESTABLISH_CONTEXT: "III",
            SCARD_RELEASE_CONTEXT: "II",
            SCARD_CONNECT: "I%dsIIiII" % n,
            SCARD_RECONNECT: "iIIIII",
            SCARD_DISCONNECT: "iII",
            SCARD_BEGIN_TRANSACTION: "iI",
            SCARD_END_TRANSACTION: "iII",
            SCARD_CANCEL: "iI",
            SCARD_STATUS: "iI",
            SCARD_TRANSMIT: "iIIIIIII",
            SCARD_CONTROL: "iIIIII",
            SCARD_GET_ATTRIB: "iI264sII",
            SCARD_SET_ATTRIB: "iI264sII",
            CMD_WAIT_READER_STATE_CHANGE: "II",
            CMD_STOP_WAITING_READER_STATE_CHANGE: "II",
            CMD_GET_READER_EVENTS: "iI",
        }[cmd]
        return self.e + f

    # --- commands (the version-dependent ones) --------------------------------------
    def version(self, major=None, minor=None):
        """CMD_VERSION with our version (or the one given): (major, minor, rv)."""
        if major is None:
            major, minor = self.v.number
        return self.call(CMD_VERSION, major, minor, 0)

    def hello(self, scope=0):
        major, minor, rv = self.version()
        assert rv == 0, "%r: CMD_VERSION refused: %s (reply %d:%d)" % (self, hx(rv), major, minor)
        rv, ctx = self.establish(scope)
        assert rv == 0, "%r: ESTABLISH_CONTEXT: %s" % (self, hx(rv))
        return ctx

    def connect(self, ctx, reader, share=SCARD_SHARE_SHARED, protocols=SCARD_PROTOCOL_T1):
        r = self.call(SCARD_CONNECT, ctx, reader.encode()[:self.v.name_len - 1], share, protocols,
                      0, 0, 0)
        return r[6], r[4], r[5]  # rv, hCard, active protocol

    # --- reader state ----------------------------------------------------------------
    def parse_array(self, blob):
        rs = self.v.record_size
        assert len(blob) % rs == 0
        return [Record(blob[i:i + rs], self.v, self.order) for i in range(0, len(blob), rs)]

    def read_array(self, count, timeout=None):
        return self.parse_array(self.recv_exact(count * self.v.record_size, timeout))

    def readers_state(self):
        """0x12: all `readers` records (empty slots included)."""
        self.send(self.header(CMD_GET_READERS_STATE, 0))
        return self.read_array(self.readers)

    def state_size(self):
        """0x16 (4:6): the raw int32 count."""
        self.send(self.header(CMD_GET_READERS_STATE_SIZE, 0))
        return struct.unpack(self.e + "i", self.recv_exact(4))[0]

    def state_array(self, count):
        """0x17 (4:6): `count` records, as the client was told by 0x16."""
        self.send(self.header(CMD_GET_READERS_STATE_ARRAY, 0))
        return self.read_array(count)

    def snapshot(self):
        """The reader array the way a client of this version fetches it."""
        if self.v.sized_array:
            return self.state_array(self.state_size())
        return self.readers_state()

    def reader(self, name):
        for r in self.snapshot():
            if r.name == name:
                return r
        raise KeyError(name)

    def wait_request(self):
        if self.v.wait_body:
            return self.message(CMD_WAIT_READER_STATE_CHANGE, 0, 0)
        return self.header(CMD_WAIT_READER_STATE_CHANGE, 0)

    def stop_request(self):
        if self.v.wait_body:
            return self.message(CMD_STOP_WAITING_READER_STATE_CHANGE, 0, 0)
        return self.header(CMD_STOP_WAITING_READER_STATE_CHANGE, 0)

    def wait(self):
        """Sends WAIT; returns the immediate array for 4:4/4:5, else None
        (nothing is read)."""
        self.send(self.wait_request())
        if self.v.wait_array:
            return self.read_array(self.readers)
        return None

    def stop(self):
        """Sends STOP; reads nothing."""
        self.send(self.stop_request())

    def recv_signal(self, timeout=None):
        """An 8-byte wait struct (event signal, cancel signal or STOP answer)."""
        return struct.unpack(self.e + "II", self.recv_exact(8, timeout=timeout))

    def reader_events(self):
        self.send(self.header(CMD_GET_READER_EVENTS, 0))
        return struct.unpack(self.fmt(CMD_GET_READER_EVENTS), self.recv_exact(8))


# --- a whole session, per version ---------------------------------------------------
WAIT = 15.0  # bound for anything that should happen now


class Target:
    """What run_session needs to know about the daemon under test. Subclasses
    (scardd with ifd-virtual, a fake pcscd) fill these in."""
    atr = b""
    apdus = ()  # [(command, expected answer)] for the card in reader 0

    def client(self, version, order, socket=0):
        raise NotImplementedError

    def reader(self, slot):
        raise NotImplementedError

    def insert(self, slot):
        """Puts a card into the (empty) reader `slot`; returns at once."""
        raise NotImplementedError

    def wait_card(self, slot, present):
        raise NotImplementedError

    def reply_version(self, v):
        """(major, minor) the daemon answers a client of version v."""
        return v.number

    def capacity_ok(self, n):
        """Is n a plausible 0x16 answer? scardd: a multiple of 16, at least 16."""
        return n >= 16 and n % 16 == 0


def fetch_after_wait(c, target=None):
    """What a client does right after WAIT: 4:6 fetches the array with 0x16
    and 0x17; 4:4/4:5 already read it; 4:2/4:3 get nothing."""
    if c.v.sized_array:
        n = c.state_size()
        ok = target.capacity_ok(n) if target else (n >= 16 and n % 16 == 0)
        assert ok, "%r: 0x16 after 0x13 answered %d" % (c, n)
        return c.state_array(n)
    return None


def check_snapshot(c, target=None):
    """The reader array fetched the way this version does, with its size checked."""
    if c.v.sized_array:
        n = c.state_size()
        ok = target.capacity_ok(n) if target else (n >= 16 and n % 16 == 0)
        assert ok, "%r: 0x16 answered %d" % (c, n)
        recs = c.state_array(n)
        assert len(recs) == n
    else:
        recs = c.readers_state()
        assert len(recs) == c.readers
    assert c.nothing_received(), "%r: bytes after the array: %r" % (c, c.pending_bytes()[:64])
    return recs


def check_stop_unregistered(c):
    """STOP on a connection that is not registered: 4:2 answers
    F_INTERNAL_ERROR, later versions say nothing."""
    c.stop()
    if c.v.stop_always:
        _, rv = c.recv_signal(WAIT)
        assert rv == SCARD_F_INTERNAL_ERROR, "%r: STOP while not registered: rv %s" % (c, hx(rv))
    else:
        assert c.nothing_received(), "%r: STOP while not registered was answered: %r" % (
            c, c.pending_bytes()[:16])


def check_wait_now(c, target=None):
    """WAIT and its immediate answer: the array (4:4/4:5) or nothing (4:2,
    4:3, 4:6, which then fetches with 0x16/0x17)."""
    arr = c.wait()
    if c.v.wait_array:
        assert len(arr) == c.readers
        return arr
    assert c.nothing_received(), "%r: WAIT answered at once: %r" % (c, c.pending_bytes()[:16])
    return fetch_after_wait(c, target)


def run_session(target, version, order, socket=0):
    """One client of `version`: handshake, array, 0x15, STOP unregistered,
    WAIT+STOP, WAIT + card insertion in reader 1 ({0, 0}), WAIT + CANCEL from
    a fresh connection ({0, SCARD_E_CANCELLED}), connect/transmit/status/
    disconnect on reader 0, release. Reader 0 holds a card, reader 1 none."""
    c = target.client(version, order, socket)
    v = c.v
    r0, r1 = target.reader(0), target.reader(1)
    with c:
        major, minor, rv = c.version()
        assert (rv, (major, minor)) == (0, target.reply_version(v)), \
            "%r: CMD_VERSION answered %d:%d rv %s" % (c, major, minor, hx(rv))
        rv, ctx = c.establish()
        assert rv == 0, hx(rv)

        recs = check_snapshot(c, target)
        by = {r.name: r for r in recs if r.name}
        if v.name_len == 100:
            assert all(len(n.encode()) <= 99 for n in by), list(by)
        assert r0 in by and r1 in by, (r0, r1, list(by))
        assert by[r0].present and by[r0].atr == target.atr, by[r0]
        assert not by[r1].present and by[r1].state & SCARD_ABSENT, by[r1]

        if v.events:
            ev1, rv = c.reader_events()
            assert rv == 0 and ev1 >= 1, (ev1, hx(rv))
            ev2, rv = c.reader_events()
            assert rv == 0 and ev2 == ev1, (ev1, ev2)

        # STOP without WAIT
        check_stop_unregistered(c)
        # WAIT, then STOP: answered (registered)
        arr = check_wait_now(c, target)
        if arr is not None:
            assert r0 in names(arr)
        c.stop()
        _, rv = c.recv_signal(WAIT)
        assert rv == 0, "%r: STOP while registered: rv %s" % (c, hx(rv))
        assert c.nothing_received()

        # WAIT, then a card insertion: the 8-byte signal {0, 0}
        check_wait_now(c, target)
        target.insert(1)
        assert c.recv_signal(WAIT) == (0, 0)
        target.wait_card(1, True)
        check_stop_unregistered(c)  # the signal ended the registration
        after = {r.name: r for r in check_snapshot(c, target) if r.name}
        assert after[r1].present and after[r1].atr == target.atr, after[r1]
        assert after[r1].event_counter != by[r1].event_counter

        # WAIT, then SCARD_CANCEL from a fresh connection without CMD_VERSION
        check_wait_now(c, target)
        with target.client(version, order, socket) as k:
            assert k.cancel(ctx) == 0
        assert c.recv_signal(WAIT) == (0, SCARD_E_CANCELLED)
        check_stop_unregistered(c)

        # a card session
        rv, h, proto = c.connect(ctx, r0, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T1)
        assert rv == 0 and proto == SCARD_PROTOCOL_T1, (hx(rv), proto)
        for cmd, want in target.apdus:
            assert c.transmit(h, cmd) == (0, want), cmd.hex()
        assert c.status(h) == 0
        rec = [r for r in check_snapshot(c, target) if r.name == r0][0]
        assert rec.sharing == 1 and rec.protocol == SCARD_PROTOCOL_T1, rec
        assert c.disconnect(h) == 0
        assert c.release(ctx) == 0
        assert c.nothing_received()
