#!/usr/bin/python3
"""PC/SC conversations for tests/fuzz/record_traffic: one scenario per run.

    traffic_pyscard.py SCENARIO

Runs under Debian's python (pyscard, and whatever libpcsclite it loads) with
PCSCLITE_CSOCK_NAME pointing at the recording proxy. The readers are
ifd-virtual's: "Virtual Reader NN 00" (the built-in card) and "... NN 01"
(empty), whose driver's control socket is VIRTUAL_CONTROL, for inserting and
removing cards while a client waits, and "Second Reader" (the demo card). The scenarios make calls, not
assertions: what the daemon answers is what gets recorded.
"""
import os
import socket
import sys
import threading
import time

from smartcard import scard as S
from smartcard.System import readers as system_readers

PNP = "\\\\?PnP?\\Notification"
FEATURE_REQUEST = S.SCARD_CTL_CODE(3400)

APDUS = [
    bytes.fromhex("00A4000C023F00"),              # SELECT MF
    bytes.fromhex("00A4040007F073636172646400"),  # SELECT the demo application
    bytes.fromhex("00B0810000"),                  # READ BINARY, SFI 1
    bytes.fromhex("00B0820000"),                  # READ BINARY, SFI 2 (PIN first)
    bytes.fromhex("0020008104" + "31323334"),     # VERIFY
    bytes.fromhex("00B0820000"),                  # ... now readable
    bytes.fromhex("00D6820003616263"),            # UPDATE BINARY
    bytes.fromhex("0084000008"),                  # GET CHALLENGE
    bytes.fromhex("00CA9F7F00"),                  # GET DATA
    bytes.fromhex("00C0000000"),                  # GET RESPONSE with nothing pending
    bytes.fromhex("00FF000000"),                  # unknown instruction
    bytes.fromhex("FFCA000000"),                  # reader-class GET UID
    bytes.fromhex("80"),                          # too short
    bytes.fromhex("00A4020C025001") + bytes(250), # long, odd body
]

ATTRS = [S.SCARD_ATTR_ATR_STRING, S.SCARD_ATTR_VENDOR_NAME, S.SCARD_ATTR_VENDOR_IFD_TYPE,
         S.SCARD_ATTR_ICC_PRESENCE, S.SCARD_ATTR_ICC_INTERFACE_STATUS,
         S.SCARD_ATTR_DEVICE_FRIENDLY_NAME, S.SCARD_ATTR_DEVICE_SYSTEM_NAME,
         S.SCARD_ATTR_CURRENT_PROTOCOL_TYPE, S.SCARD_ATTR_MAXINPUT, 0x0007A1F0, 0x7FFF0001]


def control(line):
    """One command on ifd-virtual's control socket (cards in and out)."""
    path = os.environ["VIRTUAL_CONTROL"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(line.encode() + b"\n")
    data = b""
    while not (data.endswith(b"\n") and (b"\nok" in b"\n" + data or b"\nerror" in b"\n" + data)):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()


def later(seconds, fn, *args):
    t = threading.Timer(seconds, fn, args)
    t.start()
    return t


def context():
    rv, ctx = S.SCardEstablishContext(S.SCARD_SCOPE_USER)
    return ctx


def reader_names(ctx):
    rv, names = S.SCardListReaders(ctx, [])
    return names if rv == 0 else []


def card_reader(names):
    """The reader VIRTUAL_CONTROL's slot 0 is (pcscd numbers drivers in the
    order it reads its configuration directory)."""
    return next(n for n in names if n.startswith("Virtual Reader") and n.endswith(" 00"))


def empty_reader(names):
    return next(n for n in names if n.startswith("Virtual Reader") and n.endswith(" 01"))


def card_session(ctx, reader, share=S.SCARD_SHARE_SHARED,
                 protocols=S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1):
    rv, card, proto = S.SCardConnect(ctx, reader, share, protocols)
    if rv != 0:
        return
    pci = proto if proto in (S.SCARD_PROTOCOL_T0, S.SCARD_PROTOCOL_T1) else S.SCARD_PROTOCOL_T1
    for apdu in APDUS:
        S.SCardTransmit(card, pci, list(apdu))
    S.SCardStatus(card)
    for attr in ATTRS:
        S.SCardGetAttrib(card, attr)
    S.SCardControl(card, FEATURE_REQUEST, [])
    S.SCardControl(card, S.SCARD_CTL_CODE(1), [1, 2, 3])
    for init in (S.SCARD_LEAVE_CARD, S.SCARD_RESET_CARD, S.SCARD_UNPOWER_CARD):
        S.SCardReconnect(card, S.SCARD_SHARE_SHARED, S.SCARD_PROTOCOL_T1, init)
        S.SCardTransmit(card, S.SCARD_PROTOCOL_T1, list(APDUS[0]))
    S.SCardDisconnect(card, S.SCARD_LEAVE_CARD)


def basic():
    ctx = context()
    S.SCardIsValidContext(ctx)
    S.SCardListReaderGroups(ctx)
    names = reader_names(ctx)
    for name in names:
        card_session(ctx, name)
    card_session(ctx, card_reader(names), protocols=S.SCARD_PROTOCOL_T0)
    # DIRECT: no card needed; attributes and control only
    rv, card, proto = S.SCardConnect(ctx, empty_reader(names), S.SCARD_SHARE_DIRECT, 0)
    if rv == 0:
        for attr in ATTRS:
            S.SCardGetAttrib(card, attr)
        S.SCardControl(card, FEATURE_REQUEST, [])
        S.SCardDisconnect(card, S.SCARD_LEAVE_CARD)
    S.SCardReleaseContext(ctx)


def status_change():
    ctx = context()
    names = reader_names(ctx)
    states = [(n, S.SCARD_STATE_UNAWARE) for n in names + [PNP]]
    rv, states = S.SCardGetStatusChange(ctx, 0, states)
    current = [(n, st & ~S.SCARD_STATE_CHANGED, atr) for n, st, atr in states]
    # a wait that times out
    S.SCardGetStatusChange(ctx, 300, current)
    # a wait a card insertion ends, then its removal
    later(0.5, control, "insert 1")
    rv, states = S.SCardGetStatusChange(ctx, 5000, current)
    current = [(n, st & ~S.SCARD_STATE_CHANGED, atr) for n, st, atr in states]
    later(0.5, control, "remove 1")
    rv, states = S.SCardGetStatusChange(ctx, 5000, current)
    current = [(n, st & ~S.SCARD_STATE_CHANGED, atr) for n, st, atr in states]
    # a wait SCardCancel ends (a second connection, without a version handshake)
    later(0.5, S.SCardCancel, ctx)
    S.SCardGetStatusChange(ctx, S.INFINITE, current)
    # an unknown reader answers at once
    S.SCardGetStatusChange(ctx, 1000, [("No Such Reader 00 00", S.SCARD_STATE_UNAWARE)])
    S.SCardReleaseContext(ctx)


def transactions():
    ctx1, ctx2 = context(), context()
    name = card_reader(reader_names(ctx1))
    proto = S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1
    rv, c1, p1 = S.SCardConnect(ctx1, name, S.SCARD_SHARE_SHARED, proto)
    rv, c2, p2 = S.SCardConnect(ctx2, name, S.SCARD_SHARE_SHARED, proto)
    S.SCardBeginTransaction(c1)
    S.SCardTransmit(c1, p1, list(APDUS[0]))
    done = []
    t = threading.Thread(target=lambda: done.append(S.SCardBeginTransaction(c2)))
    t.start()  # waits for c1's transaction
    time.sleep(0.3)
    S.SCardTransmit(c1, p1, list(APDUS[7]))
    S.SCardEndTransaction(c1, S.SCARD_LEAVE_CARD)
    t.join()
    S.SCardTransmit(c2, p2, list(APDUS[2]))
    S.SCardEndTransaction(c2, S.SCARD_RESET_CARD)
    # c1 learns of the reset
    S.SCardTransmit(c1, p1, list(APDUS[0]))
    S.SCardStatus(c1)
    S.SCardReconnect(c1, S.SCARD_SHARE_SHARED, proto, S.SCARD_LEAVE_CARD)
    # exclusive against shared, both ways
    S.SCardConnect(ctx2, name, S.SCARD_SHARE_EXCLUSIVE, proto)
    S.SCardDisconnect(c1, S.SCARD_LEAVE_CARD)
    S.SCardReconnect(c2, S.SCARD_SHARE_EXCLUSIVE, proto, S.SCARD_LEAVE_CARD)
    S.SCardConnect(ctx1, name, S.SCARD_SHARE_SHARED, proto)
    S.SCardBeginTransaction(c2)
    S.SCardEndTransaction(c2, S.SCARD_UNPOWER_CARD)
    S.SCardDisconnect(c2, S.SCARD_RESET_CARD)
    # a card pulled under a handle
    rv, c3, p3 = S.SCardConnect(ctx1, name, S.SCARD_SHARE_SHARED, proto)
    control("remove 0")
    time.sleep(0.3)
    S.SCardTransmit(c3, p3, list(APDUS[0]))
    S.SCardStatus(c3)
    control("insert 0")
    time.sleep(0.3)
    S.SCardReconnect(c3, S.SCARD_SHARE_SHARED, proto, S.SCARD_RESET_CARD)
    S.SCardDisconnect(c3, S.SCARD_EJECT_CARD)
    # the empty reader
    S.SCardConnect(ctx1, empty_reader(reader_names(ctx1)), S.SCARD_SHARE_SHARED, proto)
    S.SCardReleaseContext(ctx2)  # with a handle still open
    S.SCardReleaseContext(ctx1)


def high_level():
    """pyscard's object layer: readers(), connections, a card request."""
    from smartcard.CardRequest import CardRequest
    from smartcard.CardType import AnyCardType
    for r in system_readers():
        conn = r.createConnection()
        try:
            conn.connect()
            conn.transmit(list(APDUS[0]))
            conn.getATR()
            conn.disconnect()
        except Exception:
            pass
    try:
        CardRequest(timeout=1, cardType=AnyCardType()).waitforcard()
    except Exception:
        pass


SCENARIOS = {"basic": basic, "status_change": status_change, "transactions": transactions,
             "high_level": high_level}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
