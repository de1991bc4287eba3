#!/usr/bin/python3
"""Calls the WinSCard API of one libpcsclite.so.1 through ctypes with edge-case
arguments and prints what came back, as JSON on stdout.

    client_probe.py LIBRARY READER_WITH_CARD READER_WITHOUT_CARD [--pcsclite]

The same program is run against Debian's library and against ours, on the
same daemon, and test_client_library.py compares the two outputs: every case
here is something an application can observe (return codes, lengths, data),
and none depends on handle values, which differ from run to run.

--pcsclite skips the cases that crash pcsc-lite's own library (it does not
check every pointer); ours must answer them with an error code.
"""
import ctypes as C
import json
import sys
import threading
import time

from thread_state import wait_in_event_wait

DWORD = C.c_ulong
LONG = C.c_long
AUTO = 0xFFFFFFFFFFFFFFFF  # SCARD_AUTOALLOCATE
INFINITE = 0xFFFFFFFF

SHARE_EXCLUSIVE, SHARE_SHARED, SHARE_DIRECT = 1, 2, 3
T0, T1, ANY = 1, 2, 3
STATE_IGNORE = 0x1
ATTR_ATR_STRING = 0x90303
ATTR_VENDOR_NAME = 0x10100
ATTR_FRIENDLY_NAME = 0x7FFF0003
PNP = b"\\\\?PnP?\\Notification"


class ReaderState(C.Structure):
    _fields_ = [("szReader", C.c_char_p), ("pvUserData", C.c_void_p),
                ("dwCurrentState", DWORD), ("dwEventState", DWORD),
                ("cbAtr", DWORD), ("rgbAtr", C.c_ubyte * 33)]


class IoRequest(C.Structure):
    _fields_ = [("dwProtocol", DWORD), ("cbPciLength", DWORD)]


def h(rv):
    return "0x%08X" % (rv & 0xFFFFFFFFFFFFFFFF)


class Probe:
    def __init__(self, libpath, reader, empty_reader, pcsclite=False):
        self.pcsclite = pcsclite
        self.lib = C.CDLL(libpath)
        self.reader = reader.encode()
        self.empty = empty_reader.encode()
        self.out = {}
        for name in ("SCardEstablishContext", "SCardReleaseContext", "SCardIsValidContext",
                     "SCardListReaders", "SCardListReaderGroups", "SCardFreeMemory",
                     "SCardConnect", "SCardReconnect", "SCardDisconnect",
                     "SCardBeginTransaction", "SCardEndTransaction", "SCardTransmit",
                     "SCardControl", "SCardStatus", "SCardGetStatusChange", "SCardCancel",
                     "SCardGetAttrib", "SCardSetAttrib"):
            getattr(self.lib, name).restype = LONG
        self.lib.pcsc_stringify_error.restype = C.c_char_p
        self.lib.pcsc_stringify_error.argtypes = [LONG]

    def rec(self, name, *values):
        self.out[name] = [h(v) if isinstance(v, int) and i == 0 else v for i, v in enumerate(values)]

    # --- helpers -------------------------------------------------------------
    def establish(self):
        ctx = LONG(0)
        rv = self.lib.SCardEstablishContext(DWORD(0), None, None, C.byref(ctx))
        assert rv == 0, h(rv)
        return ctx.value

    def connect(self, ctx, reader, share, proto=ANY):
        card, active = LONG(0), DWORD(0)
        rv = self.lib.SCardConnect(LONG(ctx), reader, DWORD(share), DWORD(proto),
                                   C.byref(card), C.byref(active))
        return rv, card.value, active.value

    def states(self, *entries):
        arr = (ReaderState * len(entries))()
        for i, (name, cur) in enumerate(entries):
            arr[i].szReader = name
            arr[i].dwCurrentState = cur
        return arr

    def gsc(self, ctx, timeout, arr, n=None):
        return self.lib.SCardGetStatusChange(LONG(ctx), DWORD(timeout), arr,
                                             DWORD(len(arr) if n is None else n))

    # --- cases ---------------------------------------------------------------
    def contexts(self):
        L = self.lib
        self.rec("establish_null", L.SCardEstablishContext(DWORD(0), None, None, None))
        ctx = LONG(0)
        self.rec("establish_bad_scope", L.SCardEstablishContext(DWORD(7), None, None, C.byref(ctx)))
        self.rec("valid_zero", L.SCardIsValidContext(LONG(0)))
        self.rec("valid_bogus", L.SCardIsValidContext(LONG(0x1234567)))
        self.rec("release_bogus", L.SCardReleaseContext(LONG(0x1234567)))
        self.rec("free_bogus", L.SCardFreeMemory(LONG(0x1234567), None))
        self.rec("cancel_bogus", L.SCardCancel(LONG(0x1234567)))
        c = self.establish()
        self.rec("valid_live", L.SCardIsValidContext(LONG(c)))
        self.rec("cancel_idle", L.SCardCancel(LONG(c)))
        self.rec("release_live", L.SCardReleaseContext(LONG(c)))
        self.rec("valid_released", L.SCardIsValidContext(LONG(c)))
        self.rec("release_twice", L.SCardReleaseContext(LONG(c)))

    def lists(self, ctx):
        L = self.lib
        n = DWORD(0)
        self.rec("list_null_len", L.SCardListReaders(LONG(ctx), None, None, None))
        self.rec("list_bogus_ctx", L.SCardListReaders(LONG(0x1234567), None, None, C.byref(n)))
        n = DWORD(0)
        rv = L.SCardListReaders(LONG(ctx), None, None, C.byref(n))
        self.rec("list_size", rv, n.value)
        need = n.value
        short = DWORD(5)
        buf = C.create_string_buffer(need)
        rv = L.SCardListReaders(LONG(ctx), None, buf, C.byref(short))
        self.rec("list_short", rv, short.value)
        exact = DWORD(need)
        rv = L.SCardListReaders(LONG(ctx), None, buf, C.byref(exact))
        self.rec("list_exact", rv, exact.value, buf.raw[:need].decode())
        auto = DWORD(AUTO)
        rv = L.SCardListReaders(LONG(ctx), None, None, C.byref(auto))
        self.rec("list_auto_null", rv, auto.value)
        auto = DWORD(AUTO)
        p = C.c_void_p(0)
        rv = L.SCardListReaders(LONG(ctx), None, C.byref(p), C.byref(auto))
        text = C.string_at(p.value, auto.value).decode() if rv == 0 else ""
        self.rec("list_auto", rv, auto.value, text,
                 h(L.SCardFreeMemory(LONG(ctx), p)) if rv == 0 else None)

        g = DWORD(0)
        if not self.pcsclite:  # pcsc-lite 1.9.9 dereferences the NULL length
            self.rec("groups_null_len", L.SCardListReaderGroups(LONG(ctx), None, None))
        self.rec("groups_bogus_ctx", L.SCardListReaderGroups(LONG(0x1234567), None, C.byref(g)))
        g = DWORD(0)
        rv = L.SCardListReaderGroups(LONG(ctx), None, C.byref(g))
        self.rec("groups_size", rv, g.value)
        g = DWORD(4)
        gb = C.create_string_buffer(64)
        rv = L.SCardListReaderGroups(LONG(ctx), gb, C.byref(g))
        self.rec("groups_short", rv, g.value)
        g = DWORD(64)
        rv = L.SCardListReaderGroups(LONG(ctx), gb, C.byref(g))
        self.rec("groups_ok", rv, g.value, gb.raw[:g.value].decode())
        g = DWORD(AUTO)
        p = C.c_void_p(0)
        rv = L.SCardListReaderGroups(LONG(ctx), C.byref(p), C.byref(g))
        self.rec("groups_auto", rv, g.value, C.string_at(p.value, g.value).decode() if rv == 0 else "",
                 h(L.SCardFreeMemory(LONG(ctx), p)) if rv == 0 else None)

    def connects(self, ctx):
        L = self.lib
        card, active = LONG(0), DWORD(0)
        self.rec("connect_null_card", L.SCardConnect(LONG(ctx), self.reader, DWORD(SHARE_SHARED),
                                                     DWORD(ANY), None, C.byref(active)))
        self.rec("connect_null_proto", L.SCardConnect(LONG(ctx), self.reader, DWORD(SHARE_SHARED),
                                                      DWORD(ANY), C.byref(card), None))
        self.rec("connect_null_reader", L.SCardConnect(LONG(ctx), None, DWORD(SHARE_SHARED),
                                                       DWORD(ANY), C.byref(card), C.byref(active)))
        self.rec("connect_long_reader", self.connect(ctx, b"x" * 200, SHARE_SHARED)[0])
        self.rec("connect_unknown_reader", self.connect(ctx, b"No Such Reader 00 00", SHARE_SHARED)[0])
        self.rec("connect_bogus_ctx", self.connect(0x1234567, self.reader, SHARE_SHARED)[0])
        self.rec("connect_no_card", self.connect(ctx, self.empty, SHARE_SHARED)[0])
        self.rec("connect_bad_proto", self.connect(ctx, self.reader, SHARE_SHARED, 0)[0])

    def card_bogus(self):
        L = self.lib
        bogus = LONG(0x1234567)
        n = DWORD(0)
        proto = DWORD(0)
        rbuf = (C.c_ubyte * 8)()
        rlen = DWORD(8)
        self.rec("reconnect_bogus", L.SCardReconnect(bogus, DWORD(2), DWORD(3), DWORD(0), C.byref(proto)))
        self.rec("reconnect_null_proto", L.SCardReconnect(bogus, DWORD(2), DWORD(3), DWORD(0), None))
        self.rec("disconnect_bogus", L.SCardDisconnect(bogus, DWORD(0)))
        self.rec("begin_bogus", L.SCardBeginTransaction(bogus))
        self.rec("end_bogus", L.SCardEndTransaction(bogus, DWORD(0)))
        self.rec("status_bogus", L.SCardStatus(bogus, None, C.byref(n), None, None, None, None))
        self.rec("transmit_null", L.SCardTransmit(bogus, None, rbuf, DWORD(4), None, rbuf, C.byref(rlen)))
        self.rec("transmit_bogus", L.SCardTransmit(bogus, C.byref(IoRequest(1, 16)), rbuf, DWORD(4),
                                                   None, rbuf, C.byref(rlen)))
        self.rec("control_bogus", L.SCardControl(bogus, DWORD(0x42000D48), None, DWORD(0), rbuf,
                                                 DWORD(8), C.byref(n)))
        self.rec("getattrib_null_len", L.SCardGetAttrib(bogus, DWORD(ATTR_ATR_STRING), None, None))
        self.rec("getattrib_bogus", L.SCardGetAttrib(bogus, DWORD(ATTR_ATR_STRING), None, C.byref(n)))
        self.rec("setattrib_null", L.SCardSetAttrib(bogus, DWORD(ATTR_ATR_STRING), None, DWORD(1)))
        self.rec("setattrib_zero", L.SCardSetAttrib(bogus, DWORD(ATTR_ATR_STRING), rbuf, DWORD(0)))
        self.rec("setattrib_bogus", L.SCardSetAttrib(bogus, DWORD(ATTR_ATR_STRING), rbuf, DWORD(1)))

    def direct(self, ctx):
        L = self.lib
        rv, card, active = self.connect(ctx, self.empty, SHARE_DIRECT, 0)
        self.rec("direct_connect", rv, active)
        if rv != 0:
            return
        hc = LONG(card)
        n, st, pr, al = DWORD(0), DWORD(99), DWORD(99), DWORD(0)
        rv = L.SCardStatus(hc, None, C.byref(n), C.byref(st), C.byref(pr), None, C.byref(al))
        self.rec("direct_status_size", rv, n.value, st.value & 0xFFFF, pr.value, al.value)
        n = DWORD(3)
        buf = C.create_string_buffer(128)
        rv = L.SCardStatus(hc, buf, C.byref(n), None, None, None, None)
        self.rec("direct_status_short", rv, n.value)
        n, a = DWORD(AUTO), DWORD(AUTO)
        p, q = C.c_void_p(0), C.c_void_p(0)
        rv = L.SCardStatus(hc, C.byref(p), C.byref(n), None, None, C.byref(q), C.byref(a))
        self.rec("direct_status_auto", rv, n.value, C.string_at(p.value).decode() if p.value else None,
                 a.value)
        for ptr in (p, q):
            if ptr.value:
                L.SCardFreeMemory(LONG(ctx), ptr)
        al = DWORD(0)
        rv = L.SCardGetAttrib(hc, DWORD(ATTR_FRIENDLY_NAME), None, C.byref(al))
        self.rec("direct_attr_size", rv, al.value)
        need = al.value
        al = DWORD(need)
        ab = (C.c_ubyte * 300)()
        rv = L.SCardGetAttrib(hc, DWORD(ATTR_FRIENDLY_NAME), ab, C.byref(al))
        self.rec("direct_attr_exact", rv, al.value, bytes(ab[:min(al.value, 40)]).hex())
        al = DWORD(AUTO)
        p = C.c_void_p(0)
        rv = L.SCardGetAttrib(hc, DWORD(ATTR_FRIENDLY_NAME), C.byref(p), C.byref(al))
        self.rec("direct_attr_auto", rv, al.value, C.string_at(p.value, al.value).hex() if rv == 0 else None)
        if rv == 0:
            L.SCardFreeMemory(LONG(ctx), p)
        al = DWORD(4)
        rv = L.SCardGetAttrib(hc, DWORD(ATTR_FRIENDLY_NAME), ab, C.byref(al))
        self.rec("direct_attr_short", rv, al.value)
        al = DWORD(AUTO)
        self.rec("direct_attr_auto_null", L.SCardGetAttrib(hc, DWORD(ATTR_FRIENDLY_NAME), None, C.byref(al)))
        al = DWORD(264)
        rv = L.SCardGetAttrib(hc, DWORD(0x7FFFFFF0), ab, C.byref(al))
        self.rec("direct_attr_unknown", rv)
        self.rec("direct_setattrib_long", L.SCardSetAttrib(hc, DWORD(ATTR_VENDOR_NAME), ab, DWORD(300)))
        self.rec("direct_end_without_begin", L.SCardEndTransaction(hc, DWORD(0)))
        rbuf = (C.c_ubyte * 300)()
        rlen = DWORD(300)
        self.rec("direct_transmit_huge", L.SCardTransmit(hc, C.byref(IoRequest(1, 16)), rbuf, DWORD(70000),
                                                         None, rbuf, C.byref(rlen)))
        n = DWORD(0)
        self.rec("direct_control_huge", L.SCardControl(hc, DWORD(0x42000D48), rbuf, DWORD(70000), rbuf,
                                                       DWORD(8), C.byref(n)), n.value)
        self.rec("direct_disconnect", L.SCardDisconnect(hc, DWORD(0)))
        self.rec("direct_disconnect_twice", L.SCardDisconnect(hc, DWORD(0)))

    def with_card(self, ctx):
        L = self.lib
        rv, card, active = self.connect(ctx, self.reader, SHARE_SHARED)
        self.rec("card_connect", rv, active)
        if rv != 0:
            return
        hc = LONG(card)
        pci = IoRequest(active, 16)
        apdu = (C.c_ubyte * 5)(0x00, 0xA4, 0x04, 0x0C, 0x00)  # SELECT, no FCI
        rbuf = (C.c_ubyte * 300)()
        rlen = DWORD(300)
        rpci = IoRequest(0, 16)
        rv = L.SCardTransmit(hc, C.byref(pci), apdu, DWORD(5), C.byref(rpci), rbuf, C.byref(rlen))
        self.rec("card_transmit", rv, rlen.value, bytes(rbuf[:rlen.value]).hex() if rv == 0 else None,
                 rpci.dwProtocol)
        rlen = DWORD(1)
        rv = L.SCardTransmit(hc, C.byref(pci), apdu, DWORD(5), None, rbuf, C.byref(rlen))
        self.rec("card_transmit_short", rv, rlen.value)
        challenge = (C.c_ubyte * 5)(0x00, 0x84, 0x00, 0x00, 0x08)  # GET CHALLENGE, 8 bytes
        rlen = DWORD(4)
        rv = L.SCardTransmit(hc, C.byref(pci), challenge, DWORD(5), None, rbuf, C.byref(rlen))
        self.rec("card_transmit_need_more", rv, rlen.value)
        rlen = DWORD(300)
        rv = L.SCardTransmit(hc, C.byref(pci), challenge, DWORD(5), None, rbuf, C.byref(rlen))
        self.rec("card_transmit_challenge", rv, rlen.value, bytes(rbuf[rlen.value - 2:rlen.value]).hex())
        n, st, pr, al = DWORD(0), DWORD(0), DWORD(0), DWORD(0)
        rv = L.SCardStatus(hc, None, C.byref(n), C.byref(st), C.byref(pr), None, C.byref(al))
        self.rec("card_status_size", rv, n.value, st.value & 0xFFFF, pr.value, al.value)
        atr = (C.c_ubyte * 33)()
        al = DWORD(4)
        rv = L.SCardStatus(hc, None, None, None, None, atr, C.byref(al))
        self.rec("card_status_short_atr", rv, al.value)
        al = DWORD(33)
        rv = L.SCardStatus(hc, None, None, None, None, atr, C.byref(al))
        self.rec("card_status_atr", rv, al.value, bytes(atr[:al.value]).hex())
        al = DWORD(0)
        rv = L.SCardGetAttrib(hc, DWORD(ATTR_ATR_STRING), None, C.byref(al))
        self.rec("card_attr_size", rv, al.value)
        self.rec("card_begin", L.SCardBeginTransaction(hc))
        self.rec("card_begin_nested", L.SCardBeginTransaction(hc))
        self.rec("card_end", L.SCardEndTransaction(hc, DWORD(0)))
        self.rec("card_end2", L.SCardEndTransaction(hc, DWORD(0)))
        self.rec("card_end3", L.SCardEndTransaction(hc, DWORD(0)))
        proto = DWORD(0)
        self.rec("card_reconnect", L.SCardReconnect(hc, DWORD(SHARE_SHARED), DWORD(ANY), DWORD(1),
                                                    C.byref(proto)), proto.value)
        self.rec("card_disconnect", L.SCardDisconnect(hc, DWORD(0)))

    def status_change(self, ctx):
        L = self.lib
        self.rec("gsc_null_array", self.gsc(ctx, 0, None, 1))
        self.rec("gsc_too_many", self.gsc(ctx, 0, self.states(*[(self.reader, 0)] * 17)))
        self.rec("gsc_null_name", self.gsc(ctx, 0, self.states((None, 0))))
        self.rec("gsc_zero_readers_bogus_ctx", self.gsc(0x1234567, 0, None, 0))
        self.rec("gsc_all_ignored_bogus_ctx", self.gsc(0x1234567, 0, self.states((self.reader, STATE_IGNORE))))
        self.rec("gsc_bogus_ctx", self.gsc(0x1234567, 0, self.states((self.reader, 0))))
        arr = self.states((b"No Such Reader 00 00", 0))
        self.rec("gsc_unknown_reader", self.gsc(ctx, 0, arr))
        arr = self.states((b"No Such Reader 00 00", STATE_IGNORE), (self.reader, 0))
        self.rec("gsc_unknown_ignored", self.gsc(ctx, 0, arr), arr[1].dwEventState & 0xFFFF)
        arr = self.states((self.reader, 0), (self.empty, 0))
        rv = self.gsc(ctx, 0, arr)
        self.rec("gsc_unaware", rv, arr[0].dwEventState & 0xFFFF, arr[1].dwEventState & 0xFFFF,
                 bytes(arr[0].rgbAtr[:arr[0].cbAtr]).hex(), arr[1].cbAtr)
        arr2 = self.states((self.reader, arr[0].dwEventState & ~2), (self.empty, arr[1].dwEventState & ~2))
        rv = self.gsc(ctx, 0, arr2)
        self.rec("gsc_known_timeout0", rv, arr2[0].dwEventState & 0xFFFF, arr2[1].dwEventState & 0xFFFF)
        stale = self.states((self.reader, (arr[0].dwEventState & 0xFFFF & ~2) | (0x7777 << 16)))
        self.rec("gsc_counter_differs", self.gsc(ctx, 0, stale), stale[0].dwEventState & 0xFFFF)
        pnp = self.states((PNP, 0))
        self.rec("gsc_pnp_timeout0", self.gsc(ctx, 0, pnp), pnp[0].dwEventState)
        arr3 = self.states((self.empty, arr[1].dwEventState & ~2))
        t0 = time.monotonic()
        rv = self.gsc(ctx, 300, arr3)
        dt = time.monotonic() - t0
        self.rec("gsc_timeout_300", rv, dt > 0.25)  # it waited (a lower bound)

        # SCardCancel from another thread while one waits (INFINITE)
        arr4 = self.states((self.empty, arr[1].dwEventState & ~2))
        result = {}

        def waiter():
            result["rv"] = self.gsc(ctx, INFINITE, arr4)
            result["t"] = time.monotonic()
        t = threading.Thread(target=waiter)
        t.start()
        still_waiting = wait_in_event_wait(t.native_id) and t.is_alive()
        t1 = time.monotonic()
        crv = L.SCardCancel(LONG(ctx))
        t.join(10)
        self.rec("gsc_cancel", h(result.get("rv", -1)), still_waiting, h(crv),
                 "t" in result and result["t"] - t1 < 2.0)
        self.rec("gsc_after_cancel", self.gsc(ctx, 0, self.states((self.empty, arr[1].dwEventState & ~2))))

    def strings(self):
        s = self.lib.pcsc_stringify_error
        self.rec("stringify_unknown", 0, s(LONG(0x12345)).decode())
        self.rec("stringify_distinct", 0, len({s(LONG(c)) for c in (0, 0x80100002, 0x8010001D, 0x80100069)}))

    def run(self):
        self.contexts()
        ctx = self.establish()
        self.lists(ctx)
        self.connects(ctx)
        self.card_bogus()
        self.direct(ctx)
        self.with_card(ctx)
        self.status_change(ctx)
        self.strings()
        self.rec("final_release", self.lib.SCardReleaseContext(LONG(ctx)))
        return self.out


def main():
    lib, reader, empty = sys.argv[1:4]
    probe = Probe(lib, reader, empty, pcsclite="--pcsclite" in sys.argv[4:])
    print(json.dumps(probe.run(), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
