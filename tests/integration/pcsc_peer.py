#!/usr/bin/python3
"""A second PC/SC application for multi-process tests.

Reads JSON requests {"id", "op", "args"} on stdin, runs each in its own
thread through pyscard (Debian's libpcsclite1 underneath) and writes
{"id", "hr", ...} on stdout. Handles are plain integers the test passes back.
The socket comes from PCSCLITE_CSOCK_NAME in the environment.
"""
import json
import sys
import threading

from smartcard import scard as s

_out = threading.Lock()


def reply(msg):
    line = json.dumps(msg) + "\n"
    with _out:
        sys.stdout.write(line)
        sys.stdout.flush()


def op_establish(scope=s.SCARD_SCOPE_USER):
    hr, ctx = s.SCardEstablishContext(scope)
    return {"hr": hr, "ctx": ctx}


def op_release(ctx):
    return {"hr": s.SCardReleaseContext(ctx)}


def op_list_readers(ctx):
    hr, readers = s.SCardListReaders(ctx, [])
    return {"hr": hr, "readers": list(readers) if hr == 0 else []}


def op_connect(ctx, reader, share, proto):
    hr, card, active = s.SCardConnect(ctx, reader, share, proto)
    return {"hr": hr, "card": card, "proto": active}


def op_reconnect(card, share, proto, init):
    hr, active = s.SCardReconnect(card, share, proto, init)
    return {"hr": hr, "proto": active}


def op_disconnect(card, disp):
    return {"hr": s.SCardDisconnect(card, disp)}


def op_begin(card):
    return {"hr": s.SCardBeginTransaction(card)}


def op_end(card, disp):
    return {"hr": s.SCardEndTransaction(card, disp)}


def op_transmit(card, proto, apdu_hex):
    hr, resp = s.SCardTransmit(card, proto, list(bytes.fromhex(apdu_hex)))
    return {"hr": hr, "resp": bytes(resp).hex() if hr == 0 else ""}


def op_control(card, code, data_hex):
    hr, resp = s.SCardControl(card, code, list(bytes.fromhex(data_hex)))
    return {"hr": hr, "resp": bytes(resp).hex() if hr == 0 else ""}


def op_get_attrib(card, attr):
    hr, value = s.SCardGetAttrib(card, attr)
    return {"hr": hr, "value": bytes(value).hex() if hr == 0 else ""}


def op_status(card):
    hr, reader, state, proto, atr = s.SCardStatus(card)
    return {"hr": hr, "reader": reader, "state": state, "proto": proto,
            "atr": bytes(atr).hex() if hr == 0 else ""}


def op_gsc(ctx, timeout, states):
    hr, out = s.SCardGetStatusChange(ctx, timeout, [tuple(x) for x in states])
    return {"hr": hr, "states": [[r, ev, bytes(atr).hex()] for r, ev, atr in out] if hr == 0 else []}


def op_cancel(ctx):
    return {"hr": s.SCardCancel(ctx)}


def run(req):
    try:
        fn = globals()["op_" + req["op"]]
        res = fn(*req.get("args", []))
    except Exception as e:  # report, never hang the test
        res = {"error": "%s: %s" % (type(e).__name__, e)}
    res["id"] = req["id"]
    reply(res)


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req["op"] == "exit":
            break
        threading.Thread(target=run, args=(req,), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
