#!/usr/bin/python3
"""A fake pcscd that speaks exactly one pcsc-lite release's protocol rules.

Written from shared/docs/wire-protocol.md (no pcsc-lite code). One thread per
connection, as pcscd. Little-endian (x86_64) only.

Releases (--release):

  name      protocol  accepts (CMD_VERSION)               rv on mismatch   array (0x12 / WAIT)   WAIT/STOP
  1.8.3     4:2       exactly 4:2                         NO_SERVICE       16 x 156 (100-byte    8-byte body; nothing at
                                                                           names), CONNECT 124   once; STOP always answered
  1.8.8     4:2       exactly 4:2                         NO_SERVICE       16 x 184              as 1.8.3
  1.8.23    4:3       exactly 4:3                         NO_SERVICE       16 x 184              8-byte body; nothing at once;
                                                                                                 STOP answered if registered
  2.2.3     4:4       exactly 4:4                         SERVICE_STOPPED  16 x 184              no body; array at once
  2.3.0     4:5       exactly 4:5                         SERVICE_STOPPED  16 x 184              as 2.2.3; + 0x15
  2.4.1     4:5       minor >= 4, any major               SERVICE_STOPPED  16 x 184              as 2.3.0
  2.5.1     4:6       4:6; 4:4 and 4:5 in backward mode   SERVICE_STOPPED  0x12: 16 x 184;       4:6: nothing at once;
                                                                           0x16/0x17: N x 184    backward: 16 records at once
  fedora    4:4       exactly 4:4 (2.2.3 with Fedora's     SERVICE_STOPPED  48 x 184              as 2.2.3
                      48-reader patch)

The reply to CMD_VERSION always carries the daemon's own version; a refused
version never closes the connection. Commands a release does not know, and
wrong struct sizes, close the connection without a reply. 2.5.1's capacity
(0x16) starts at 2 and grows by 2 whenever a reader finds no free slot; it
never shrinks.

The card (the same in every reader): ATR 3B 88 80 01 "fakepcsc" TCK, T=0 and
T=1. APDU behaviour: a command with a data field (short or extended Lc)
answers that data followed by 90 00; a command without data answers 90 00;
anything shorter than 4 bytes or with inconsistent lengths answers 67 00.
SCardControl and SetAttrib answer SCARD_E_UNSUPPORTED_FEATURE (0x8010001F);
GetAttrib knows ATR_STRING and the device friendly/system names.

Control socket (--control), one command per line, answered "ok ..." or
"error ...": "insert N", "remove N" (N = reader index in creation order),
"add NAME" (a new reader), "del N", "state" (a JSON line, then ok);
4:6 only: "early-signal" (the next WAIT is signalled at once, before the
client's 0x16) and "array-signal K" (the next 0x17 of a registered client
carries the signal in front of record K), pcsc-lite 2.5's races made certain.

Log (--log): one line per event; the handshake lines read
  conn 3 pid 1234 uid 0 exe /usr/bin/python3.11: CMD_VERSION 4:6 refused: rv 0x8010001E, reply 4:4
  conn 3 pid 1234 uid 0 exe /usr/bin/python3.11: CMD_VERSION 4:4 accepted: negotiated 4:4, serving 4:4
"""
import argparse
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pcsc_raw import (MAX_BUFFER_SIZE, MAX_BUFFER_SIZE_EXTENDED, SCARD_ABSENT, SCARD_ATTR_ATR_STRING,  # noqa: E402
                      SCARD_ATTR_DEVICE_FRIENDLY_NAME, SCARD_ATTR_DEVICE_SYSTEM_NAME,
                      SCARD_E_CANCELLED, SCARD_E_INSUFFICIENT_BUFFER, SCARD_E_INVALID_HANDLE,
                      SCARD_E_INVALID_VALUE, SCARD_E_NO_SERVICE, SCARD_E_NO_SMARTCARD,
                      SCARD_E_NOT_TRANSACTED, SCARD_E_PROTO_MISMATCH, SCARD_E_SERVICE_STOPPED,
                      SCARD_E_SHARING_VIOLATION, SCARD_E_UNKNOWN_READER,
                      SCARD_E_UNSUPPORTED_FEATURE, SCARD_F_INTERNAL_ERROR, SCARD_NEGOTIABLE,
                      SCARD_POWERED, SCARD_PRESENT, SCARD_PROTOCOL_ANY_OLD, SCARD_PROTOCOL_RAW,
                      SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1, SCARD_S_SUCCESS, SCARD_SHARE_DIRECT,
                      SCARD_SHARE_EXCLUSIVE, SCARD_SHARE_SHARED, SCARD_W_REMOVED_CARD)


def _atr():
    body = bytes([0x88, 0x80, 0x01]) + b"fakepcsc"
    tck = 0
    for b in body:
        tck ^= b
    return bytes([0x3B]) + body + bytes([tck])


ATR = _atr()


def apdu_answer(apdu):
    """The documented card behaviour: data field echoed + 90 00."""
    n = len(apdu)
    if n < 4:
        return b"\x67\x00"
    if n in (4, 5):
        return b"\x90\x00"  # case 1, case 2 short
    if apdu[4] != 0:
        lc = apdu[4]
        if n in (5 + lc, 6 + lc):
            return apdu[5:5 + lc] + b"\x90\x00"
        return b"\x67\x00"
    if n == 7:
        return b"\x90\x00"  # case 2 extended
    lc = (apdu[5] << 8) | apdu[6]
    if lc and n in (7 + lc, 9 + lc):
        return apdu[7:7 + lc] + b"\x90\x00"
    return b"\x67\x00"


class Release:
    def __init__(self, name, major, minor, accept, mismatch_rv, name_len=128, records=16,
                 wait_body=False, wait_array=False, stop_always=False, events=False, sized=False):
        self.name = name
        self.major = major
        self.minor = minor
        self.accept = accept            # (major, minor) -> None (refused) or "normal"/"backward"
        self.mismatch_rv = mismatch_rv
        self.name_len = name_len
        self.records = records          # records on 0x12 and on an array-sending WAIT
        self.wait_body = wait_body
        self.wait_array = wait_array
        self.stop_always = stop_always
        self.events = events
        self.sized = sized

    @property
    def version(self):
        return "%d:%d" % (self.major, self.minor)

    @property
    def record_size(self):
        return self.name_len + 56


def _exact(major, minor):
    return lambda a, b: "normal" if (a, b) == (major, minor) else None


def _tolerant_2_4_1(a, b):
    return "normal" if b >= 4 else None


def _accept_2_5(a, b):
    if (a, b) == (4, 6):
        return "normal"
    if a == 4 and b in (4, 5):
        return "backward"
    return None


RELEASES = {
    "1.8.3": Release("1.8.3", 4, 2, _exact(4, 2), SCARD_E_NO_SERVICE, name_len=100, wait_body=True,
                     stop_always=True),
    "1.8.8": Release("1.8.8", 4, 2, _exact(4, 2), SCARD_E_NO_SERVICE, wait_body=True, stop_always=True),
    "1.8.23": Release("1.8.23", 4, 3, _exact(4, 3), SCARD_E_NO_SERVICE, wait_body=True),
    "2.2.3": Release("2.2.3", 4, 4, _exact(4, 4), SCARD_E_SERVICE_STOPPED, wait_array=True),
    "2.3.0": Release("2.3.0", 4, 5, _exact(4, 5), SCARD_E_SERVICE_STOPPED, wait_array=True, events=True),
    "2.4.1": Release("2.4.1", 4, 5, _tolerant_2_4_1, SCARD_E_SERVICE_STOPPED, wait_array=True,
                     events=True),
    "2.5.1": Release("2.5.1", 4, 6, _accept_2_5, SCARD_E_SERVICE_STOPPED, events=True, sized=True),
    "fedora": Release("fedora", 4, 4, _exact(4, 4), SCARD_E_SERVICE_STOPPED, records=48,
                      wait_array=True),
}
# Protocol each release speaks, for tests and the compatibility matrix.
PROTOCOL = {"1.8.3": "4:2 (100-byte names)", "1.8.8": "4:2", "1.8.23": "4:3", "2.2.3": "4:4",
            "2.3.0": "4:5", "2.4.1": "4:5", "2.5.1": "4:6", "fedora": "4:4 (48 records)"}
DESCRIPTION = {"1.8.3": "pcsc-lite 1.8.3", "1.8.8": "pcsc-lite 1.8.8", "1.8.23": "pcsc-lite 1.8.23",
               "2.2.3": "pcsc-lite 2.2.3", "2.3.0": "pcsc-lite 2.3.0", "2.4.1": "pcsc-lite 2.4.1",
               "2.5.1": "pcsc-lite 2.5.1", "fedora": "Fedora-patched pcsc-lite 2.2.3 (48 readers)"}


class Reader:
    def __init__(self, name):
        self.name = name
        self.present = False
        self.event_counter = 0
        self.sharing = 0
        self.protocol = 0
        self.generation = 0  # bumped on every removal

    @property
    def state(self):
        return (SCARD_PRESENT | SCARD_POWERED | SCARD_NEGOTIABLE) if self.present else SCARD_ABSENT


class Handle:
    def __init__(self, reader, share, proto):
        self.reader = reader
        self.share = share
        self.proto = proto
        self.generation = reader.generation


class Closing(Exception):
    pass


class Conn:
    def __init__(self, daemon, sock, cid):
        self.d = daemon
        self.sock = sock
        self.id = cid
        self.send_lock = threading.Lock()
        self.ctx = None
        self.handles = {}
        self.mode = None  # None (no CMD_VERSION accepted), "normal", "backward"
        try:
            pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 12))
        except OSError:
            pid, uid = 0, -1
        self.pid, self.uid = pid, uid
        try:
            self.exe = os.readlink("/proc/%d/exe" % pid)
        except OSError:
            self.exe = "?"

    @property
    def who(self):
        return "conn %d pid %d uid %d exe %s" % (self.id, self.pid, self.uid, self.exe)

    def send(self, data):
        with self.send_lock:
            self.sock.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closing("EOF" if not buf else "EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return bytes(buf)


class FakeDaemon:
    def __init__(self, release, socket_path, log_path=None, control_path=None):
        self.r = RELEASES[release]
        self.socket_path = socket_path
        self.control_path = control_path
        self.logf = open(log_path, "a") if log_path else sys.stderr
        self.lock = threading.RLock()
        self.readers = []   # creation order
        self.slots = []     # array positions: Reader or None
        self.capacity = 2 if self.r.sized else self.r.records
        self.slots = [None] * self.capacity
        self.reader_events = 1
        self.registered = set()
        self.early_signals = 0  # control "early-signal": 4:6 WAITs signalled at once
        self.array_signals = []  # control "array-signal K": a signal inside the next 0x17
        self.conns = set()
        self.next_id = 0
        self.stopping = False

    # --- log ---------------------------------------------------------------------
    def log(self, msg):
        line = "%s %s\n" % (time.strftime("%H:%M:%S"), msg)
        with self.lock:
            self.logf.write(line)
            self.logf.flush()

    # --- readers -------------------------------------------------------------------
    def add_reader(self, name, position=None, quiet=False):
        with self.lock:
            if len(name.encode()) >= self.r.name_len:
                name = name.encode()[:self.r.name_len - 1].decode(errors="ignore")
            if position is None:
                free = [i for i, s in enumerate(self.slots) if s is None]
                if free:
                    position = free[0]
                elif self.r.sized:
                    position = self.capacity
                    self.capacity += 2
                    self.slots += [None, None]
                else:
                    self.log("reader %s not added: no free slot (%d)" % (name, self.capacity))
                    return None
            elif position >= len(self.slots) or self.slots[position] is not None:
                self.log("reader %s not added: slot %d not free" % (name, position))
                return None
            rd = Reader(name)
            self.slots[position] = rd
            self.readers.append(rd)
            self.bump_reader_events()
            self.log("reader added: %s (slot %d, capacity %d)" % (name, position, self.capacity))
            if not quiet:
                self.notify()
            return rd

    def del_reader(self, index):
        with self.lock:
            rd = self.readers.pop(index)
            self.slots[self.slots.index(rd)] = None
            rd.generation += 1
            self.bump_reader_events()
            self.log("reader removed: %s" % rd.name)
            self.notify()

    def bump_reader_events(self):
        self.reader_events = 1 if self.reader_events >= 0x7FFF else self.reader_events + 1

    def insert(self, index, quiet=False):
        with self.lock:
            rd = self.readers[index]
            if rd.present:
                return "already present"
            rd.present = True
            rd.protocol = 0
            rd.event_counter = (rd.event_counter + 1) & 0xFFFF
            self.log("card inserted into %s" % rd.name)
            if not quiet:
                self.notify()
            return "inserted"

    def remove(self, index):
        with self.lock:
            rd = self.readers[index]
            if not rd.present:
                return "already empty"
            rd.present = False
            rd.protocol = 0
            rd.generation += 1
            rd.event_counter = (rd.event_counter + 1) & 0xFFFF
            self.log("card removed from %s" % rd.name)
            self.notify()
            return "removed"

    def notify(self):
        """Any state change: {0, 0} to every registered connection, once."""
        with self.lock:
            waiting = list(self.registered)
            self.registered.clear()
            for c in waiting:
                self.log("conn %d: event signal" % c.id)
                try:
                    c.send(struct.pack("<II", 0, SCARD_S_SUCCESS))
                except OSError:
                    pass

    def record(self, rd):
        n = self.r.name_len
        if rd is None:
            return bytes(self.r.record_size)
        atr = ATR if rd.present else b""
        return struct.pack("<%dsIIi33s3xII" % n, rd.name.encode()[:n - 1], rd.event_counter, rd.state,
                           rd.sharing, atr, len(atr), rd.protocol)

    def array(self, count):
        with self.lock:
            slots = self.slots[:count] + [None] * max(0, count - len(self.slots))
            return b"".join(self.record(rd) for rd in slots)

    # --- serving -----------------------------------------------------------------------
    def body_size(self, cmd, conn):
        """Request struct size for cmd in this release; None = unknown command."""
        r = self.r
        sizes = {0x01: 12, 0x02: 8, 0x04: r.name_len + 24, 0x05: 24, 0x06: 12, 0x07: 8, 0x08: 12,
                 0x09: 32, 0x0A: 24, 0x0B: 8, 0x0D: 8, 0x0F: 280, 0x10: 280, 0x11: 12, 0x12: 0,
                 0x13: 8 if r.wait_body else 0, 0x14: 8 if r.wait_body else 0}
        if r.events:
            sizes[0x15] = 0
        if r.sized:
            sizes[0x16] = 0
            sizes[0x17] = 0
        return sizes.get(cmd)

    def serve(self, conn):
        try:
            while True:
                size, cmd = struct.unpack("<II", conn.recv_exact(8))
                want = self.body_size(cmd, conn)
                if want is None:
                    raise Closing("unknown command 0x%02X" % cmd)
                if want and size != want:
                    raise Closing("command 0x%02X with size %d, expected %d" % (cmd, size, want))
                body = conn.recv_exact(want) if want else b""
                self.dispatch(conn, cmd, body)
        except Closing as e:
            self.log("conn %d closed: %s" % (conn.id, e))
        except OSError as e:
            self.log("conn %d closed: %s" % (conn.id, e))
        finally:
            with self.lock:
                self.registered.discard(conn)
                for h in list(conn.handles):
                    self.drop_handle(conn, h)
                self.conns.discard(conn)
            try:
                conn.sock.close()
            except OSError:
                pass

    def new_id(self, used):
        while True:
            v = random.randrange(1, 0x7FFFFFFF)
            if v not in used:
                return v

    def find_reader(self, name):
        for rd in self.readers:
            if rd.name == name:
                return rd
        return None

    def drop_handle(self, conn, h):
        hd = conn.handles.pop(h)
        rd = hd.reader
        if hd.share == SCARD_SHARE_EXCLUSIVE:
            rd.sharing = 0
        elif rd.sharing > 0:
            rd.sharing -= 1

    def handle(self, conn, h):
        hd = conn.handles.get(h)
        if hd is None:
            # pcsc-lite sleeps 2 s, then closes; closing at once is enough here
            raise Closing("hCard 0x%X is not this connection's" % h)
        return hd

    def card_rv(self, hd):
        rd = hd.reader
        if rd not in self.readers or not rd.present or hd.generation != rd.generation:
            return SCARD_W_REMOVED_CARD
        return SCARD_S_SUCCESS

    def dispatch(self, conn, cmd, body):
        r = self.r
        if cmd == 0x11:
            major, minor, _ = struct.unpack("<iiI", body)
            mode = r.accept(major, minor)
            if mode is None:
                rv = r.mismatch_rv
                self.log("%s: CMD_VERSION %d:%d refused: rv 0x%08X, reply %s" % (
                    conn.who, major, minor, rv, r.version))
            else:
                rv = SCARD_S_SUCCESS
                conn.mode = mode
                serving = r.version + (" in backward mode (%d records)" % 16 if mode == "backward" else "")
                self.log("%s: CMD_VERSION %d:%d accepted: negotiated %d:%d, serving %s" % (
                    conn.who, major, minor, major, minor, serving))
            conn.send(struct.pack("<iiI", r.major, r.minor, rv))
        elif cmd == 0x01:
            scope, _, _ = struct.unpack("<III", body)
            if scope > 3:
                conn.send(struct.pack("<III", scope, 0, SCARD_E_INVALID_VALUE))
                return
            with self.lock:
                conn.ctx = self.new_id({c.ctx for c in self.conns})
            conn.send(struct.pack("<III", scope, conn.ctx, 0))
        elif cmd == 0x02:
            ctx, _ = struct.unpack("<II", body)
            with self.lock:
                if conn.ctx is None:
                    rv = SCARD_E_INVALID_HANDLE
                elif ctx != conn.ctx:
                    rv = SCARD_E_INVALID_VALUE
                else:
                    for h in list(conn.handles):
                        self.drop_handle(conn, h)
                    conn.ctx = None
                    rv = 0
            conn.send(struct.pack("<II", ctx, rv))
        elif cmd == 0x04:
            n = r.name_len
            fmt = "<I%dsIIiII" % n
            ctx, name, share, pref, _, _, _ = struct.unpack(fmt, body)
            name = name[:n - 1].split(b"\0", 1)[0].decode(errors="replace")
            h, proto, rv, changed = -1, 0, SCARD_S_SUCCESS, False
            with self.lock:
                rd = self.find_reader(name)
                if conn.ctx is None or ctx != conn.ctx:
                    rv = SCARD_E_INVALID_HANDLE
                elif rd is None:
                    rv = SCARD_E_UNKNOWN_READER
                elif share not in (SCARD_SHARE_EXCLUSIVE, SCARD_SHARE_SHARED, SCARD_SHARE_DIRECT):
                    rv = SCARD_E_INVALID_VALUE
                elif share != SCARD_SHARE_DIRECT and not rd.present:
                    rv = SCARD_E_NO_SMARTCARD
                elif share != SCARD_SHARE_DIRECT and not pref & (SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1 |
                                                                  SCARD_PROTOCOL_RAW | SCARD_PROTOCOL_ANY_OLD):
                    rv = SCARD_E_PROTO_MISMATCH
                elif rd.sharing == -1 or (share == SCARD_SHARE_EXCLUSIVE and rd.sharing > 0):
                    rv = SCARD_E_SHARING_VIOLATION
                else:
                    if share != SCARD_SHARE_DIRECT:
                        if pref & (SCARD_PROTOCOL_T1 | SCARD_PROTOCOL_ANY_OLD):
                            proto = SCARD_PROTOCOL_T1
                        elif pref & SCARD_PROTOCOL_T0:
                            proto = SCARD_PROTOCOL_T0
                        else:
                            proto = SCARD_PROTOCOL_RAW
                        rd.protocol = proto
                    h = self.new_id({k for c in self.conns for k in c.handles})
                    conn.handles[h] = Handle(rd, share, proto)
                    rd.sharing = -1 if share == SCARD_SHARE_EXCLUSIVE else rd.sharing + 1
                    changed = True
            conn.send(struct.pack(fmt, ctx, name.encode()[:n - 1], share, pref, h, proto, rv))
            if changed:
                self.notify()
        elif cmd == 0x05:
            h, share, pref, init, _, _ = struct.unpack("<iIIIII", body)
            hd = self.handle(conn, h)
            rv = SCARD_S_SUCCESS if hd.reader.present else SCARD_E_NO_SMARTCARD
            if rv == 0:
                hd.generation = hd.reader.generation
            conn.send(struct.pack("<iIIIII", h, share, pref, init, hd.proto, rv))
        elif cmd == 0x06:
            h, disp, _ = struct.unpack("<iII", body)
            with self.lock:
                self.handle(conn, h)
                self.drop_handle(conn, h)
            conn.send(struct.pack("<iII", h, disp, 0))
            self.notify()
        elif cmd in (0x07, 0x0B):
            h, _ = struct.unpack("<iI", body)
            conn.send(struct.pack("<iI", h, self.card_rv(self.handle(conn, h))))
        elif cmd == 0x08:
            h, disp, _ = struct.unpack("<iII", body)
            conn.send(struct.pack("<iII", h, disp, self.card_rv(self.handle(conn, h))))
        elif cmd == 0x09:
            h, sproto, spci, cb_send, _, _, cb_recv, _ = struct.unpack("<iIIIIIII", body)
            if cb_send > MAX_BUFFER_SIZE_EXTENDED:
                raise Closing("transmit of %d bytes" % cb_send)
            apdu = conn.recv_exact(cb_send)
            hd = self.handle(conn, h)
            rv = self.card_rv(hd)
            resp = apdu_answer(apdu) if rv == 0 else b""
            if rv == 0 and len(resp) > cb_recv:
                rv, resp = SCARD_E_INSUFFICIENT_BUFFER, b""
            conn.send(struct.pack("<iIIIIIII", h, sproto, spci, cb_send, sproto, spci,
                                  len(resp) if rv == 0 else cb_recv, rv) + resp)
        elif cmd == 0x0A:
            h, code, cb_send, cb_recv, _, _ = struct.unpack("<iIIIII", body)
            if cb_send > MAX_BUFFER_SIZE_EXTENDED:
                raise Closing("control of %d bytes" % cb_send)
            conn.recv_exact(cb_send)
            self.handle(conn, h)
            conn.send(struct.pack("<iIIIII", h, code, cb_send, cb_recv, 0, SCARD_E_UNSUPPORTED_FEATURE))
        elif cmd in (0x0F, 0x10):
            h, attr, buf, length, _ = struct.unpack("<iI264sII", body)
            if length > MAX_BUFFER_SIZE:
                raise Closing("attribute length %d" % length)
            hd = self.handle(conn, h)
            value, rv = b"", SCARD_E_UNSUPPORTED_FEATURE
            if cmd == 0x0F:
                if attr == SCARD_ATTR_ATR_STRING and hd.reader.present:
                    value, rv = ATR, 0
                elif attr in (SCARD_ATTR_DEVICE_FRIENDLY_NAME, SCARD_ATTR_DEVICE_SYSTEM_NAME):
                    value, rv = hd.reader.name.encode() + b"\0", 0
                if rv == 0 and len(value) > length:
                    value, rv = b"", SCARD_E_INSUFFICIENT_BUFFER
            conn.send(struct.pack("<iI264sII", h, attr, value if rv == 0 else buf,
                                  len(value) if rv == 0 else length, rv))
        elif cmd == 0x0D:
            ctx, _ = struct.unpack("<iI", body)
            with self.lock:
                target = [c for c in self.conns if c.ctx == ctx and c.ctx is not None]
                if not target:
                    rv = SCARD_E_INVALID_HANDLE
                else:
                    rv = 0
                    t = target[0]
                    if t in self.registered:
                        self.registered.discard(t)
                        self.log("conn %d: cancel signal (from conn %d)" % (t.id, conn.id))
                        try:
                            t.send(struct.pack("<II", 0, SCARD_E_CANCELLED))
                        except OSError as e:
                            rv = SCARD_E_NOT_TRANSACTED
                            self.log("conn %d: cancel signal failed: %s" % (t.id, e))
            conn.send(struct.pack("<iI", ctx, rv))
        elif cmd == 0x12:
            conn.send(self.array(r.records))
        elif cmd == 0x13:
            with self.lock:  # registration and snapshot are one step
                self.registered.add(conn)
                if r.wait_array:
                    conn.send(self.array(r.records))
                elif r.sized and conn.mode == "backward":
                    conn.send(self.array(16))
                elif r.sized and self.early_signals > 0:
                    # pcsc-lite 2.5's race made certain: an event right after
                    # the registration, before the client's 0x16
                    self.early_signals -= 1
                    self.registered.discard(conn)
                    self.log("conn %d: early signal" % conn.id)
                    conn.send(struct.pack("<II", 0, 0))
        elif cmd == 0x14:
            with self.lock:
                if conn in self.registered:
                    self.registered.discard(conn)
                    conn.send(struct.pack("<II", 0, 0))
                elif r.stop_always:
                    conn.send(struct.pack("<II", 0, SCARD_F_INTERNAL_ERROR))
        elif cmd == 0x15:
            conn.send(struct.pack("<iI", self.reader_events, 0))
        elif cmd == 0x16:
            conn.send(struct.pack("<i", self.capacity))
        elif cmd == 0x17:
            with self.lock:
                data = self.array(self.capacity)
                if conn in self.registered and self.array_signals:
                    # pcsc-lite 2.5 writes the array record by record; an
                    # event signal may land in front of any of them
                    k = min(self.array_signals.pop(0), self.capacity)
                    self.registered.discard(conn)
                    self.log("conn %d: signal in front of record %d" % (conn.id, k))
                    at = k * self.r.record_size
                    data = data[:at] + struct.pack("<II", 0, 0) + data[at:]
                conn.send(data)

    def accept_loop(self, lsock, accepted):
        """Calls accepted(socket) for each connection until the daemon stops."""
        while not self.stopping:
            try:
                s, _ = lsock.accept()
            except OSError:
                if self.stopping:
                    return
                continue
            accepted(s)

    def client_accepted(self, s):
        with self.lock:
            self.next_id += 1
            c = Conn(self, s, self.next_id)
            self.conns.add(c)
        self.log("%s: connected" % c.who)
        threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def control_accepted(self, s):
        threading.Thread(target=self.control_conn, args=(s,), daemon=True).start()

    # --- control channel -------------------------------------------------------------
    def control(self, line):
        words = line.split(None, 1)
        if not words:
            return "error empty command"
        cmd, arg = words[0], (words[1] if len(words) > 1 else "")
        try:
            if cmd == "insert":
                return "ok " + self.insert(int(arg))
            if cmd == "remove":
                return "ok " + self.remove(int(arg))
            if cmd == "add":
                rd = self.add_reader(arg)
                return ("ok added %s" % rd.name) if rd else "error no free slot"
            if cmd == "del":
                self.del_reader(int(arg))
                return "ok"
            if cmd == "early-signal":
                with self.lock:
                    self.early_signals += 1
                return "ok"
            if cmd == "array-signal":
                with self.lock:
                    self.array_signals.append(int(arg))
                return "ok"
            if cmd == "state":
                with self.lock:
                    st = {"release": self.r.name, "capacity": self.capacity,
                          "reader_events": self.reader_events,
                          "slots": [None if s is None else {"name": s.name, "present": s.present,
                                                            "sharing": s.sharing,
                                                            "event_counter": s.event_counter}
                                    for s in self.slots]}
                return json.dumps(st) + "\nok"
        except (ValueError, IndexError) as e:
            return "error %s" % e
        return "error unknown command %r" % cmd

    def control_conn(self, s):
        f = s.makefile("rwb")
        try:
            for raw in f:
                line = raw.decode(errors="replace").strip()
                self.log("control: %s" % line)
                f.write((self.control(line) + "\n").encode())
                f.flush()
        except OSError:
            pass
        finally:
            try:
                f.close()
                s.close()
            except OSError:
                pass

    # --- life cycle --------------------------------------------------------------------
    def listen(self, path):
        if os.path.exists(path):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, 0o666)
        s.listen(64)
        return s

    def run(self):
        lsock = self.listen(self.socket_path)
        threads = [threading.Thread(target=self.accept_loop, args=(lsock, self.client_accepted),
                                    daemon=True)]
        csock = None
        if self.control_path:
            csock = self.listen(self.control_path)
            threads.append(threading.Thread(target=self.accept_loop,
                                            args=(csock, self.control_accepted), daemon=True))
        self.log("fake %s (protocol %s, %d-byte names, %s) listening on %s" % (
            DESCRIPTION[self.r.name], self.r.version, self.r.name_len,
            "capacity %d" % self.capacity if self.r.sized else "%d records" % self.r.records,
            self.socket_path))
        for t in threads:
            t.start()
        done = threading.Event()

        def stop(signum, frame):
            done.set()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not done.wait(1.0):
            pass
        self.stopping = True
        self.log("stopping")
        for s, p in ((lsock, self.socket_path), (csock, self.control_path)):
            if s is not None:
                s.close()
                try:
                    os.unlink(p)
                except OSError:
                    pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--release", required=True, choices=sorted(RELEASES))
    ap.add_argument("--socket", required=True)
    ap.add_argument("--control")
    ap.add_argument("--log")
    ap.add_argument("--reader", action="append", default=[],
                    help="NAME or NAME@SLOT (an array position); default: two readers")
    ap.add_argument("--card", action="append", type=int, default=[],
                    help="reader index (creation order) holding a card at start")
    a = ap.parse_args(argv)
    d = FakeDaemon(a.release, a.socket, a.log, a.control)
    specs = a.reader or ["Fake Reader 00 00", "Fake Reader 01 00"]
    for spec in specs:
        name, _, pos = spec.rpartition("@") if "@" in spec else (spec, "", "")
        if d.add_reader(name, int(pos) if pos else None, quiet=True) is None:
            sys.exit("cannot place reader %r" % spec)
    for i in a.card:
        d.insert(i, quiet=True)
    d.run()


if __name__ == "__main__":
    main()
