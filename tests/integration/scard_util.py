"""Small helpers over pyscard's smartcard.scard (Debian's libpcsclite1)."""
import threading

from smartcard import scard as s

# not all of these are exported by pyscard 2.0.5
SCARD_W_RESET_CARD = 0x80100068
SCARD_W_REMOVED_CARD = 0x80100069
# What Debian's pcscd 1.9.9 puts on the wire and what pyscard (built against
# Debian's headers) calls SCARD_E_UNSUPPORTED_FEATURE: 0x8010001F, the same
# value as SCARD_E_UNEXPECTED. Windows uses 0x80100022.
SCARD_E_UNSUPPORTED_FEATURE = 0x8010001F
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_ATTR_ATR_STRING = 0x00090303
SCARD_ATTR_DEVICE_FRIENDLY_NAME = 0x7FFF0003
SCARD_ATTR_DEVICE_SYSTEM_NAME = 0x7FFF0004
SCARD_ATTR_VENDOR_NAME = 0x00010100
CM_IOCTL_GET_FEATURE_REQUEST = 0x42000D48

# card states from SCardStatus (low word)
SCARD_ABSENT, SCARD_PRESENT, SCARD_SWALLOWED = 0x02, 0x04, 0x08
SCARD_POWERED, SCARD_NEGOTIABLE, SCARD_SPECIFIC = 0x10, 0x20, 0x40

ECHO = 0xEE
WAIT_MS = 30000  # a "long" GetStatusChange: far beyond anything a test needs


def hx(v):
    return "0x%08X" % (v & 0xFFFFFFFF)


def name(hr):
    for k, v in vars(s).items():
        if (k.startswith("SCARD_E_") or k.startswith("SCARD_W_") or k.startswith("SCARD_F_")
                or k == "SCARD_S_SUCCESS") and v == hr:
            return k
    for k, v in globals().items():
        if k.startswith("SCARD_W_") and v == hr:
            return k
    return hx(hr)


def ok(hr, what="call"):
    assert hr == s.SCARD_S_SUCCESS, "%s failed: %s" % (what, name(hr))


def expect(hr, want, what="call"):
    assert hr == want, "%s: got %s, want %s" % (what, name(hr), name(want))


def context():
    hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    ok(hr, "SCardEstablishContext")
    return ctx


def connect(ctx, reader, share=s.SCARD_SHARE_SHARED, proto=s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1):
    hr, card, active = s.SCardConnect(ctx, reader, share, proto)
    ok(hr, "SCardConnect(%s, share=%d, proto=%d)" % (reader, share, proto))
    return card, active


def echo_apdu(data=b"", n=None):
    """Command for the test card's echo INS: echoes data, or returns n pattern bytes."""
    if n is not None:
        return bytes([0, ECHO, (n >> 8) & 0xFF, n & 0xFF, 0, 0, 0])
    if len(data) <= 255:
        return bytes([0, ECHO, 0, 0, len(data)]) + data + b"\x00"
    return bytes([0, ECHO, 0, 0, 0, len(data) >> 8, len(data) & 0xFF]) + data + b"\x00\x00"


def pattern(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def transmit(card, proto, apdu):
    hr, resp = s.SCardTransmit(card, proto, list(apdu))
    return hr, bytes(resp) if hr == 0 else b""


def echo(card, proto, data=b"\x01\x02\x03"):
    hr, resp = transmit(card, proto, echo_apdu(data))
    ok(hr, "SCardTransmit")
    assert resp == data + b"\x90\x00", resp.hex()
    return resp


def gsc(ctx, timeout, states):
    """SCardGetStatusChange; returns (hr, {reader: (eventstate, atr)})."""
    hr, out = s.SCardGetStatusChange(ctx, timeout, list(states))
    return hr, {r: (ev, bytes(atr)) for r, ev, atr in out} if hr == 0 else {}


def current_state(ctx, reader):
    hr, st = gsc(ctx, 0, [(reader, s.SCARD_STATE_UNAWARE)])
    ok(hr, "SCardGetStatusChange(UNAWARE)")
    return st[reader][0] & ~s.SCARD_STATE_CHANGED


class Call(threading.Thread):
    """Run a (possibly blocking) PC/SC call in a daemon thread."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result = None
        self.exc = None
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:  # noqa: B902
            self.exc = e

    def blocked(self, t=1.0):
        self.join(t)
        return self.is_alive()

    def get(self, timeout=30.0):
        self.join(timeout)
        assert not self.is_alive(), "call %s still blocked after %.0fs" % (getattr(self.fn, "__name__", self.fn), timeout)
        if self.exc:
            raise self.exc
        return self.result
